#!/bin/sh
# Runs the bridge's test scripts with the bridge venv's python, one by one, prints each
# one's time and closes with the plain line "bridge: N passed, M failed".
# Usage: run.sh PYTHON SCRIPT...
py=$1
shift
pass=0
fail=0
log_dir=${SUITE_LOG_DIR:-build/test-logs/bridge}
mkdir -p "$log_dir"
for t in "$@"; do
    name=$(basename "$t" .py)
    log="$log_dir/$name.log"
    start=$(date +%s)
    if "$py" "$t" >"$log" 2>&1; then
        status=ok
        pass=$((pass + 1))
    else
        status=FAILED
        fail=$((fail + 1))
    fi
    printf '%-32s %-7s %5d s\n' "$name" "$status" "$(($(date +%s) - start))"
    if [ "$status" = FAILED ] || [ -n "$VERBOSE" ]; then
        tail -n 60 "$log" | sed 's/^/    | /'
    else
        grep '^agree' "$log" | sed 's/^/    /'
    fi
done
echo "bridge: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

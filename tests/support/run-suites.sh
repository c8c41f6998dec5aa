#!/bin/sh
# Runs test suites one by one, prints each suite's time, and closes with the plain line
# "suites: N passed, M failed". Usage: run-suites.sh LABEL:COMMAND ...
# Each argument is "label:command" run through sh; a suite passes when it exits 0.
pass=0
fail=0
failed=""
log_dir=${SUITE_LOG_DIR:-build/test-logs}
mkdir -p "$log_dir"
for spec in "$@"; do
    label=${spec%%:*}
    cmd=${spec#*:}
    log="$log_dir/$(echo "$label" | tr '/ ' '__').log"
    start=$(date +%s.%N)
    if sh -c "$cmd" >"$log" 2>&1; then
        status=ok
        pass=$((pass + 1))
    else
        status=FAILED
        fail=$((fail + 1))
        failed="$failed $label"
    fi
    end=$(date +%s.%N)
    secs=$(echo "$end - $start" | bc 2>/dev/null || awk "BEGIN{print $end - $start}")
    printf '%-40s %-7s %8.2f s\n' "$label" "$status" "$secs"
    if [ "$status" = FAILED ] || [ -n "$VERBOSE" ]; then
        sed 's/^/    | /' "$log" | tail -n 60
    fi
done
[ -n "$failed" ] && echo "failed suites:$failed"
echo "suites: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

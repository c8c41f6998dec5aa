#!/bin/sh
# systemd-analyze verify on copies of both unit files whose ExecStart points at the built
# binary (the template as etraced@test.service): exit 0 and nothing printed. A copy whose
# ExecStart names a missing binary must fail, so the check can fail. Usage:
# systemd-verify.sh BUILD
set -e
bin=$(cd "$1" && pwd)/etraced
dir=$(mktemp -d /tmp/etraced_units_XXXXXX)
trap 'rm -rf "$dir"' EXIT
point() { sed "s#^ExecStart=[^ ]*etraced #ExecStart=$2 #" "$1"; }
point systemd/etraced.service "$bin" > "$dir/etraced.service"
point systemd/etraced@.service "$bin" > "$dir/etraced@test.service"
for u in etraced.service etraced@test.service; do
    grep -q "^ExecStart=$bin " "$dir/$u" || { echo "systemd-verify: $u: ExecStart not rewritten"; exit 1; }
done
out=$(cd "$dir" && systemd-analyze verify --man=no "$dir/etraced.service" \
    "$dir/etraced@test.service" 2>&1) || { echo "$out"; echo "systemd-verify: failed"; exit 1; }
[ -z "$out" ] || { echo "$out"; echo "systemd-verify: warnings"; exit 1; }
echo "systemd-analyze verify etraced.service etraced@test.service: exit 0, nothing printed"
point systemd/etraced.service /nonexistent/etraced > "$dir/broken.service"
if (cd "$dir" && systemd-analyze verify --man=no "$dir/broken.service" >/dev/null 2>&1); then
    echo "systemd-verify: a unit with a missing binary passed"
    exit 1
fi
echo "a unit whose ExecStart is missing: refused"
systemd-analyze security --offline=true "$dir/etraced.service" 2>/dev/null | tail -n 1 || true

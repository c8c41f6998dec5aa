#!/bin/sh
# systemd-analyze verify on copies of both unit files whose ExecStart points at the built
# binary (the template as etraced@test.service): exit 0 and nothing printed. A copy whose
# ExecStart names a missing binary must fail, so the check can fail. Then the service's
# user (below). Usage: systemd-verify.sh BUILD
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
# The service's user: both units run as etraced (no DynamicUser), and the shipped
# sysusers.d and tmpfiles.d entries, applied to a private root, make the user and group
# etraced and its state and runtime directories, owned by it, mode 0700.
for u in etraced.service etraced@.service; do
    grep -q '^User=etraced$' "systemd/$u" && grep -q '^Group=etraced$' "systemd/$u" ||
        { echo "systemd-verify: $u does not run as etraced:etraced"; exit 1; }
    ! grep -q '^DynamicUser' "systemd/$u" || { echo "systemd-verify: $u uses DynamicUser"; exit 1; }
done
if [ "$(id -u)" = 0 ]; then
    r=$dir/root
    mkdir -p "$r/etc"
    systemd-sysusers --root="$r" "$PWD/systemd/etraced.sysusers" 2>/dev/null
    uid=$(awk -F: '$1 == "etraced" && $7 ~ /nologin$/ {print $3}' "$r/etc/passwd")
    gid=$(awk -F: '$1 == "etraced" {print $3}' "$r/etc/group")
    [ -n "$uid" ] && [ -n "$gid" ] || { echo "systemd-verify: sysusers made no user/group etraced"; exit 1; }
    systemd-tmpfiles --root="$r" --create "$PWD/systemd/etraced.tmpfiles"
    for d in var/lib/etraced run/etraced; do
        st=$(stat -c '%u %a' "$r/$d")
        [ "$st" = "$uid 700" ] || { echo "systemd-verify: /$d is $st, not $uid 700"; exit 1; }
    done
    echo "sysusers.d: user and group etraced (uid $uid in a private root); tmpfiles.d: /var/lib/etraced and /run/etraced theirs, 0700"
else
    echo "sysusers.d and tmpfiles.d not applied (needs root)"
fi

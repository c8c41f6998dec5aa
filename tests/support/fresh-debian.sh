#!/bin/sh
# The README's commands in a new Debian 12 root, as a new user on a fresh machine runs them:
# debootstrap (minbase) from Debian's archive, /proc /sys /dev /dev/pts /dev/shm mounted in
# it, the README's first step (apt-get install -y make git), a clone of this checkout's HEAD
# (committed work only) with SHARED beside it as ../shared, then `make deps`, `make run`
# (until the daemon it starts answers `etracectl status`, then Ctrl-C) and `make test`,
# each timed. `make run` right after `make deps` must compile nothing. Needs root;
# FRESH_SKIP_TEST=1 stops after make run; FRESH_DIR (default /var/tmp/etraced-fresh.PID) is
# removed at the end unless FRESH_KEEP=1. Usage: fresh-debian.sh SHARED
set -eu
shared=$(cd "${1:-../shared}" && pwd)
[ "$(id -u)" = 0 ] || { echo "fresh-debian: needs root (debootstrap, chroot, mounts)"; exit 1; }
command -v debootstrap >/dev/null || { echo "fresh-debian: no debootstrap (make deps installs it)"; exit 1; }
root=${FRESH_DIR:-/var/tmp/etraced-fresh.$$}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ ! -e "$root" ] || { echo "fresh-debian: $root exists"; exit 1; }
mounted=""
cleanup() {
    for m in $mounted; do umount "$m" 2>/dev/null || umount -l "$m" || true; done
    if grep -q " $root/" /proc/mounts; then
        echo "fresh-debian: something is still mounted under $root: not removing it"
    elif [ "${FRESH_KEEP:-0}" != 1 ]; then
        rm -rf "$root"
    fi
}
trap cleanup EXIT
step() { echo "== $*"; }
now() { date +%s; }

t0=$(now)
step "debootstrap --variant=minbase bookworm $root $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" > "$root.debootstrap.log" 2>&1 ||
    { tail -n 20 "$root.debootstrap.log"; exit 1; }
rm -f "$root.debootstrap.log"
echo "   $(($(now) - t0)) s"
# Mounted in this order, unmounted in the reverse one.
mount -t proc proc "$root/proc" && mounted="$root/proc $mounted"
mount --bind /sys "$root/sys" && mounted="$root/sys $mounted"
mount --bind /dev "$root/dev" && mounted="$root/dev $mounted"
mount --bind /dev/pts "$root/dev/pts" && mounted="$root/dev/pts $mounted"
mount --bind /dev/shm "$root/dev/shm" && mounted="$root/dev/shm $mounted"
cp /etc/resolv.conf "$root/etc/resolv.conf"
git bundle create -q "$root/root/etraced.bundle" HEAD
cp -r "$shared" "$root/root/shared"
echo "   the clone: $(git rev-parse --short HEAD) $(git log -1 --format=%s | cut -c1-60)"

in_root() { chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -c "$1"; }

t=$(now)
step "apt-get update && apt-get install -y make git   (the README's first step)"
in_root "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make git >/dev/null"
in_root "git clone -q /root/etraced.bundle /root/etraced"
echo "   $(($(now) - t)) s"

t=$(now)
step "make deps"
in_root "cd /root/etraced && make deps" > "$root/root/deps.log" 2>&1 ||
    { tail -n 40 "$root/root/deps.log"; echo "fresh-debian: make deps failed"; exit 1; }
protoc_runs=$(grep -c "PROTOC  proto/etrace.proto$" "$root/root/deps.log" || true)
echo "   $(($(now) - t)) s; protoc-c ran $protoc_runs time(s)"
[ "$protoc_runs" -eq 1 ] || { echo "fresh-debian: protoc-c ran $protoc_runs times"; exit 1; }

t=$(now)
step "make run   (the demo, then the daemon until it answers etracectl status; then Ctrl-C)"
in_root 'cd /root/etraced && { setsid make run > /root/run.log 2>&1 & p=$!; i=0;
    until build/etracectl status > /root/status.log 2>&1; do
        i=$((i + 1)); kill -0 $p 2>/dev/null || exit 1; [ $i -lt 600 ] || exit 1; sleep 0.5;
    done; kill -INT -$p; wait $p || true; }' ||
    { cat "$root/root/run.log"; echo "fresh-debian: make run failed"; exit 1; }
sed 's/^/   | /' "$root/root/run.log" | grep -E "loss|==" || true
sed 's/^/   | /' "$root/root/status.log" | head -n 3
compiled=$(grep -cE "^ *(CC|LD|PROTOC) " "$root/root/run.log" || true)
echo "   $(($(now) - t)) s; make run compiled or linked $compiled file(s)"
[ "$compiled" -eq 0 ] || { echo "fresh-debian: make run rebuilt after make deps"; exit 1; }
grep -q "loss, mean of the first" "$root/root/run.log" || { echo "fresh-debian: no demo loss"; exit 1; }

if [ "${FRESH_SKIP_TEST:-0}" = 1 ]; then
    echo "fresh-debian: make deps and make run passed (make test skipped: FRESH_SKIP_TEST=1)"
    exit 0
fi
t=$(now)
step "make test"
status=0
in_root "cd /root/etraced && make test" > "$root/root/test.log" 2>&1 || status=$?
grep -E "FAILED|^suites:|^failed suites" "$root/root/test.log" || true
echo "   $(($(now) - t)) s; make test exit status $status"
[ "$status" -eq 0 ] || { tail -n 80 "$root/root/test.log"; exit 1; }
echo "fresh-debian: make deps, make run and make test passed in a new Debian 12 root ($(($(now) - t0)) s in all)"

#!/bin/sh
# The Debian packages, installed into this machine and purged: `make deb`; lintian with no
# error; apt-get install of the four packages; their files, the conffile and the config's
# model; the system user etraced and its private state and runtime directories; the units
# pass systemd-analyze verify; etraced started by hand as the service user (no systemd as
# PID 1 here) with the installed config answers `etracectl status` and the Python client
# (imported from /) on the default endpoints; a program built through pkg-config links the
# shared library by its SONAME; `apt-get purge` leaves none of the packages' files and none
# of the directories the service made. Needs root (CI runs as root on a throwaway machine):
# skipped otherwise. Usage: deb-check.sh BUILD
set -eu
build=$1
if [ "$(id -u)" != 0 ]; then
    echo "deb-package: SKIPPED: installing packages into this machine needs root"
    exit 0
fi
pkgs="etraced libetrace-client0 libetrace-client-dev python3-etrace"
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 -qq "$@"; }
fail() { echo "deb-package: $*"; exit 1; }
tmp=$(mktemp -d /tmp/etraced_deb_XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    for p in $pkgs; do
        if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q installed; then
            apt_get purge -y $pkgs >/dev/null 2>&1 || true
            break
        fi
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
for p in $pkgs; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        fail "$p is already installed on this machine: purge it first"
    fi
done

make --no-print-directory -s BUILD="$build" deb >/dev/null
debs=""
for p in $pkgs; do
    f=$(ls "$build"/deb/${p}_*.deb)
    debs="$debs $(cd "$(dirname "$f")" && pwd)/$(basename "$f")"
done
echo "built:$(for f in $debs; do printf ' %s' "$(basename "$f")"; done)"

lintian --fail-on error --tag-display-limit 0 "$build"/deb/*.changes > "$tmp/lintian" 2>&1 ||
    { cat "$tmp/lintian"; fail "lintian reported errors"; }
grep -v "running with root privileges" "$tmp/lintian" || true
echo "lintian: $(grep -c '^E:' "$tmp/lintian" || true) errors, $(grep -c '^W:' "$tmp/lintian" || true) warnings"

apt_get install -y --no-install-recommends $debs >/dev/null
dpkg -L $pkgs | sort -u > "$tmp/files"

for f in /usr/bin/etraced /usr/bin/etracectl /etc/etraced/etraced.yaml \
    /lib/systemd/system/etraced.service /lib/systemd/system/etraced@.service \
    /usr/lib/sysusers.d/etraced.conf /usr/lib/tmpfiles.d/etraced.conf \
    /usr/share/etraced/models/default.yaml /usr/share/man/man8/etraced.8.gz \
    /usr/include/etrace/etrace_client.h /usr/include/etrace/etrace.pb-c.h \
    /usr/lib/python3/dist-packages/etrace/etrace_pb2.py; do
    [ -e "$f" ] || fail "missing $f"
done
dpkg-query -W -f='${Conffiles}\n' etraced | grep -q '^ /etc/etraced/etraced.yaml ' ||
    fail "/etc/etraced/etraced.yaml is not a conffile"
model=$(sed -n 's/^model: *\([^ ]*\).*/\1/p' /etc/etraced/etraced.yaml)
[ "$model" = /usr/share/etraced/models/default.yaml ] || fail "the config names model $model"
etraced compile "$model" >/dev/null
echo "files present; conffile /etc/etraced/etraced.yaml names $model (it compiles)"

getent passwd etraced >/dev/null || fail "no system user etraced"
getent group etraced >/dev/null || fail "no group etraced"
for d in /var/lib/etraced /run/etraced; do
    st=$(stat -c '%U:%G %a' "$d")
    [ "$st" = "etraced:etraced 700" ] || fail "$d is $st, not etraced:etraced 700"
done
grep -q '^DynamicUser' /lib/systemd/system/etraced.service && fail "the unit uses DynamicUser"
grep -q '^User=etraced$' /lib/systemd/system/etraced.service || fail "the unit has no User=etraced"
echo "user etraced (uid $(id -u etraced)); /var/lib/etraced and /run/etraced etraced:etraced 700"
out=$(systemd-analyze verify --man=no /lib/systemd/system/etraced.service 2>&1) ||
    { echo "$out"; fail "systemd-analyze verify etraced.service failed"; }
echo "systemd-analyze verify /lib/systemd/system/etraced.service: ok"

# As the service would run it: its user, its directories (systemd sets these variables).
# setpriv execs etraced itself, so $pid is the daemon and SIGTERM reaches it directly.
setpriv --reuid=etraced --regid=etraced --init-groups --inh-caps=-all -- \
    env RUNTIME_DIRECTORY=/run/etraced STATE_DIRECTORY=/var/lib/etraced \
    etraced --config /etc/etraced/etraced.yaml > "$tmp/daemon.log" 2>&1 &
pid=$!
i=0
until etracectl status > "$tmp/status" 2>&1; do
    i=$((i + 1))
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/daemon.log"; fail "etraced exited"; }
    [ "$i" -lt 100 ] || { cat "$tmp/status" "$tmp/daemon.log"; fail "no answer in 20 s"; }
    sleep 0.2
done
grep -q default "$tmp/status" || { cat "$tmp/status"; fail "status does not name the model"; }
echo "etraced as user etraced: etracectl status answers on ipc:///run/etraced/control:"
sed 's/^/    /' "$tmp/status" | head -n 4
[ "$(stat -c %U /run/etraced/control)" = etraced ] || fail "the control socket is not etraced's"
(cd / && /usr/bin/python3 -c "import etrace; print('python3 (from /): etrace from', etrace.__file__); \
c = etrace.Client(timeout_ms=5000); print('python3: status tick', c.status().tick); c.close()")
kill "$pid"
wait "$pid" || fail "etraced exited with $? on SIGTERM"
pid=

# A client program through pkg-config, run against the shared library.
cat > "$tmp/prog.c" <<'C'
#include <etrace/etrace_client.h>
int main(void) { char ep[256]; return etrace_default_endpoint("control", ep, sizeof ep) == 0 ? 0 : 1; }
C
cc -o "$tmp/prog" "$tmp/prog.c" $(pkg-config --cflags --libs etrace-client)
"$tmp/prog"
objdump -p "$tmp/prog" | grep -q 'NEEDED *libetrace-client.so.0$' || fail "prog does not need libetrace-client.so.0"
echo "a program built with pkg-config etrace-client runs, linked to libetrace-client.so.0"

apt_get purge -y $pkgs >/dev/null
left=""
while read -r f; do
    [ -d "$f" ] && continue # shared directories (/usr/bin, /lib, ...) stay
    [ -e "$f" ] || [ -L "$f" ] && left="$left $f"
done < "$tmp/files"
for d in /etc/etraced /var/lib/etraced /run/etraced /usr/share/etraced /usr/include/etrace \
    /usr/lib/python3/dist-packages/etrace /etc/systemd/system/multi-user.target.wants/etraced.service; do
    [ -e "$d" ] && left="$left $d"
done
[ -z "$left" ] || fail "left after purge:$left"
echo "purged: none of the $(wc -l < "$tmp/files") paths the packages listed is left, nor a directory the service made"
echo "deb-package: 1 passed, 0 failed"

#!/bin/sh
# make install / make uninstall into a private DESTDIR, PREFIX=/usr/local and PREFIX=/usr:
# every promised file is installed; the config in DESTDIR/etc/etraced names the PREFIX's
# default model (and compiles with it); the units start PREFIX/bin/etraced with that
# config as the user etraced; the shared library has the SONAME libetrace-client.so.0; a
# program including <etrace/etrace_client.h> links through the pkg-config file and runs;
# the installed Python package (with its generated wire module) imports from /; a second
# install keeps an edited config; uninstall keeps the edited config and otherwise leaves
# no file behind. Usage: install-check.sh BUILD
set -e
build=$1
dest=$(mktemp -d /tmp/etraced_install_XXXXXX)
trap 'rm -rf "$dest"' EXIT
fail() { echo "install: $*"; exit 1; }
for prefix in /usr/local /usr; do
    rm -rf "${dest:?}"/*
    make --no-print-directory -s BUILD="$build" install DESTDIR="$dest" PREFIX=$prefix >/dev/null
    root=$dest$prefix
    case $prefix in
    /usr) libdir=$root/lib pydir=$root/lib/python3/dist-packages ;;
    *) libdir=$root/lib pydir=$(echo "$root"/lib/python3.*/dist-packages) ;;
    esac
    for f in bin/etraced bin/etracectl lib/libetrace-client.a lib/libetrace-client.so \
        lib/libetrace-client.so.0 include/etrace/etrace_client.h include/etrace/etrace.pb-c.h \
        lib/pkgconfig/etrace-client.pc lib/systemd/system/etraced.service \
        lib/systemd/system/etraced@.service lib/sysusers.d/etraced.conf \
        lib/tmpfiles.d/etraced.conf share/etraced/models/default.yaml \
        share/man/man8/etraced.8 share/man/man1/etracectl.1; do
        [ -e "$root/$f" ] || fail "PREFIX=$prefix: missing $f"
    done
    [ -e "$pydir/etrace/etrace_pb2.py" ] || fail "PREFIX=$prefix: no etrace/etrace_pb2.py in $pydir"
    conf=$dest/etc/etraced/etraced.yaml
    [ -e "$conf" ] || fail "PREFIX=$prefix: no /etc/etraced/etraced.yaml"
    model=$(sed -n 's/^model: *\([^ ]*\).*/\1/p' "$conf")
    [ "$model" = "$prefix/share/etraced/models/default.yaml" ] ||
        fail "PREFIX=$prefix: the config names $model"
    "$root/bin/etraced" compile "$dest$model" >/dev/null
    unit=$root/lib/systemd/system/etraced.service
    grep -q "^ExecStart=$prefix/bin/etraced --config /etc/etraced/etraced.yaml$" "$unit" ||
        fail "PREFIX=$prefix: ExecStart is $(grep ^ExecStart "$unit")"
    grep -q '^User=etraced$' "$unit" || fail "PREFIX=$prefix: the unit has no User=etraced"
    objdump -p "$root/lib/libetrace-client.so" | grep -q 'SONAME *libetrace-client.so.0$' ||
        fail "PREFIX=$prefix: no SONAME libetrace-client.so.0"
    cat > "$dest/prog.c" <<'C'
#include <etrace/etrace_client.h>
int main(void) { char ep[256]; return etrace_default_endpoint("control", ep, sizeof ep) == 0 ? 0 : 1; }
C
    flags=$(PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_PATH=$libdir/pkgconfig pkg-config --cflags --libs etrace-client)
    cc -o "$dest/prog" "$dest/prog.c" $flags
    LD_LIBRARY_PATH=$libdir "$dest/prog"
    (cd / && env -u ETRACE_PB2_DIR PYTHONPATH="$pydir" /usr/bin/python3 -c \
        "import etrace, sys; assert etrace.__file__.startswith('$pydir'), etrace.__file__; \
assert sys.modules['etrace_pb2'].__file__.startswith('$pydir')") ||
        fail "PREFIX=$prefix: the installed etrace does not import"
    echo "# mine" >> "$conf"
    out=$(make --no-print-directory -s BUILD="$build" install DESTDIR="$dest" PREFIX=$prefix)
    tail -n 1 "$conf" | grep -q '^# mine$' || fail "PREFIX=$prefix: a second install overwrote the config"
    echo "$out" | grep -q "kept the existing" || fail "PREFIX=$prefix: install did not say it kept the config"
    n_before=$(find "$dest" -type f | wc -l)
    make --no-print-directory -s BUILD="$build" uninstall DESTDIR="$dest" PREFIX=$prefix >/dev/null
    [ -e "$conf" ] || fail "PREFIX=$prefix: uninstall removed an edited config"
    rm "$conf"
    left=$(find "$dest" -type f -o -type l | grep -v "/prog" | wc -l)
    echo "install PREFIX=$prefix: $n_before files installed (config names $model), SONAME libetrace-client.so.0, a program linked through pkg-config, etrace imported from /; an edited config kept; $left left after uninstall"
    [ "$left" -eq 0 ] || { find "$dest" -type f -o -type l; fail "files left"; }
done
echo "install: 1 passed, 0 failed"

#!/bin/sh
# make install / make uninstall into a private DESTDIR: every promised file is installed,
# the installed client library links a program through its pkg-config file, and uninstall
# leaves no file behind. Usage: install-check.sh BUILD
set -e
build=$1
dest=$(mktemp -d /tmp/etraced_install_XXXXXX)
trap 'rm -rf "$dest"' EXIT
make --no-print-directory -s BUILD="$build" install DESTDIR="$dest" PREFIX=/usr/local >/dev/null
root=$dest/usr/local
for f in bin/etraced bin/etracectl lib/libetrace-client.a lib/libetrace-client.so \
    include/etrace/etrace_client.h lib/pkgconfig/etrace-client.pc \
    lib/systemd/system/etraced.service lib/systemd/system/etraced@.service \
    share/etraced/etraced.yaml share/etraced/models/default.yaml \
    share/man/man8/etraced.8 share/man/man1/etracectl.1; do
    [ -e "$root/$f" ] || { echo "install: missing $f"; exit 1; }
done
"$root/bin/etraced" compile "$root/share/etraced/models/lif.yaml" >/dev/null
cat > "$dest/prog.c" <<'C'
#include <etrace_client.h>
int main(void) { char ep[256]; return etrace_default_endpoint("control", ep, sizeof ep) == 0 ? 0 : 1; }
C
flags=$(PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_PATH=$root/lib/pkgconfig pkg-config --cflags --libs etrace-client)
cc -o "$dest/prog" "$dest/prog.c" $flags
LD_LIBRARY_PATH=$root/lib "$dest/prog"
n_before=$(find "$dest" -type f | wc -l)
make --no-print-directory -s BUILD="$build" uninstall DESTDIR="$dest" PREFIX=/usr/local >/dev/null
left=$(find "$root" -type f | wc -l)
echo "install: $n_before files installed, a program linked through pkg-config, $left left after uninstall"
[ "$left" -eq 0 ]
echo "install: 1 passed, 0 failed"

#!/bin/sh
# The man pages: `mandoc -T lint` and `groff -ww` print nothing for each page, `man -l`
# renders it, and the pages name every etracectl command (from `etracectl --help`),
# every config key (daemon/config.c's table) and every key the model loader accepts
# (the .key entries of the schema tables of daemon/engine/model.c, mcell.c, mproj.c and
# mlearn.c). Usage:
# man-check.sh BUILD
set -e
build=$1
fail=0
n=0
for page in man/etraced.8 man/etracectl.1 man/etraced.yaml.5 man/etraced-model.5; do
    n=$((n + 1))
    out=$(mandoc -T lint "$page" 2>&1) || true
    [ -z "$out" ] || { echo "$out"; echo "man-check: $page: mandoc -T lint"; fail=1; }
    out=$(groff -ww -man -Tutf8 "$page" 2>&1 >/dev/null) || true
    [ -z "$out" ] || { echo "$out"; echo "man-check: $page: groff -ww"; fail=1; }
    MANWIDTH=80 man -l "$page" > /dev/null 2>&1 || { echo "man-check: $page: man -l failed"; fail=1; }
done
# Every command of etracectl --help is in etracectl(1).
for cmd in $("$build/etracectl" --help | sed -n 's/^  \([a-z][a-z]*\).*/\1/p'); do
    grep -q "^\.B[IR]* .*\b$cmd\b" man/etracectl.1 ||
        { echo "man-check: etracectl(1) lacks the command $cmd"; fail=1; }
done
# Every config key is in etraced.yaml(5).
for key in $(grep 'CYAML_FIELD' daemon/config.c | grep -o '"[a-z_]*"' | tr -d '"'); do
    grep -q "$key" man/etraced.yaml.5 || { echo "man-check: etraced.yaml(5) lacks $key"; fail=1; }
done
# Every key of the model loader's schema tables is in etraced-model(5).
for key in $(grep -ho '\.key = "[a-z_]*"' daemon/engine/model.c daemon/engine/mcell.c \
    daemon/engine/mproj.c daemon/engine/mlearn.c | sed 's/.*"\(.*\)"/\1/' | sort -u); do
    grep -q "\\b$key\\b" man/etraced-model.5 || { echo "man-check: etraced-model(5) lacks $key"; fail=1; }
done
[ $fail = 0 ] || exit 1
echo "man-check: $n pages lint-clean and rendered; commands, config and model keys documented"

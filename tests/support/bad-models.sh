#!/bin/sh
# Every malformed model and weight file through the real binary: `etraced compile` must
# exit 1 with "FILE:LINE:COL: FIELD: message" on stderr (the first line of each file says
# which, after "# expect: "), and never crash. Usage: bad-models.sh ETRACED DIR...
etraced=$1
shift
pass=0
fail=0
for dir in "$@"; do
    for f in "$dir"/*.yaml; do
        expect=$(sed -n '1s/^# expect: //p' "$f")
        name=$(basename "$f")
        err=$(cd "$dir" && "$etraced" compile "$name" 2>&1 >/dev/null)
        rc=$?
        case "$err" in
        *"$name:$expect"*) ok=1 ;;
        *) ok=0 ;;
        esac
        if [ "$rc" -eq 1 ] && [ "$ok" -eq 1 ]; then
            pass=$((pass + 1))
        else
            fail=$((fail + 1))
            echo "FAIL $f: exit $rc"
            echo "  expected: $name:$expect"
            echo "  got:      $err"
        fi
    done
done
echo "bad-models: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

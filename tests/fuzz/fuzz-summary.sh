#!/bin/sh
# One line per libFuzzer run for make fuzz: NAME LOG STATUS -> "fuzz NAME: N execs, R execs/s,
# C crashes"; on a crash, the report's tail. Exit status: the run's.
name=$1 log=$2 rc=$3
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
crashes=0
[ "$rc" -ne 0 ] && crashes=1
echo "fuzz $name: ${execs:-?} execs, ${rate:-?} execs/s, $crashes crashes"
if [ "$rc" -ne 0 ]; then
    tail -n 40 "$log"
    echo "(the whole log: $log; the input: crash-* or timeout-* in the current directory)"
fi
exit "$rc"

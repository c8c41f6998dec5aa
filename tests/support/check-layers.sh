#!/bin/sh
# DESIGN §1, one arrow only: clients -> proto <- daemon -> daemon/engine. The engine is C11
# + libm + libyaml: it includes no libuv, ZeroMQ, protobuf-c (nor the generated etrace.pb-c.h),
# systemd, libcyaml or pthread header, reads no clock, and includes no daemon or client
# header; its compiled objects (when BUILD is given and built) call nothing from those
# libraries and no clock. The daemon includes no client header, the clients no daemon or
# engine header. Usage: check-layers.sh [BUILD]
build=${1:-}
status=0
fail() { echo "check-layers: $1"; echo "$2"; status=1; }
bad=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](uv\.h|uv/|zmq|czmq|protobuf-c|[^">]*pb-c\.h|systemd/|cyaml|pthread\.h|\.\./)' daemon/engine/*.c daemon/engine/*.h)
[ -z "$bad" ] || fail "the engine includes a forbidden header:" "$bad"
clock=$(grep -nE '\b(clock_gettime|gettimeofday|clock_nanosleep|time\(|nanosleep|usleep)\b' daemon/engine/*.c)
[ -z "$clock" ] || fail "the engine reads a clock:" "$clock"
daemon_h=$(cd daemon && ls *.h | sed 's/\./\\./g' | tr '\n' '|' | sed 's/|$//')
up=$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*\"($daemon_h|etrace_client\.h)\"" daemon/engine/*.c daemon/engine/*.h)
[ -z "$up" ] || fail "the engine includes a daemon or client header:" "$up"
dc=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"etrace_client\.h"' daemon/*.c daemon/*.h)
[ -z "$dc" ] || fail "the daemon includes a client header:" "$dc"
engine_h=$(cd daemon/engine && ls *.h | sed 's/\./\\./g' | tr '\n' '|' | sed 's/|$//')
clients=$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]*/)?($engine_h|$daemon_h)\"" clients/*.c clients/*.h 2>/dev/null)
[ -z "$clients" ] || fail "a client includes an engine or daemon header:" "$clients"
checked=""
if [ -n "$build" ] && ls "$build"/obj/daemon/engine/*.o >/dev/null 2>&1; then
    syms=$(nm -u "$build"/obj/daemon/engine/*.o | awk '{print $2}' | sort -u |
        grep -E '^(zmq_|uv_|protobuf_c_|etrace__|sd_|cyaml_|pthread_|clock_gettime|clock_nanosleep|gettimeofday|time$|nanosleep|usleep)')
    [ -z "$syms" ] || fail "the engine's objects call a forbidden library or a clock:" "$syms"
    checked=", symbols of $build/obj/daemon/engine checked"
fi
[ $status -eq 0 ] && echo "check-layers: ok (engine: no libuv/ZeroMQ/protobuf-c/systemd/cyaml/pthread, no clock; daemon: no client header; clients: no daemon or engine header$checked)"
exit $status

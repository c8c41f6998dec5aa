#!/bin/sh
# DESIGN §1: the engine is C11 + libm + libyaml; it includes no libuv, ZeroMQ or protobuf-c
# header, reads no clock, and nothing in it includes a daemon or client header.
status=0
bad=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](uv\.h|uv/|zmq|czmq|protobuf-c|systemd/|cyaml|pthread\.h|\.\./)' daemon/engine/*.c daemon/engine/*.h)
if [ -n "$bad" ]; then
    echo "check-layers: the engine includes a forbidden header:"; echo "$bad"; status=1
fi
clock=$(grep -nE '\b(clock_gettime|gettimeofday|clock_nanosleep|time\(|nanosleep|usleep)\b' daemon/engine/*.c)
if [ -n "$clock" ]; then
    echo "check-layers: the engine reads a clock:"; echo "$clock"; status=1
fi
up=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"(daemon|etrace_client|loop|endpoint|control|stats|config)\.h"' daemon/engine/*.c daemon/engine/*.h)
if [ -n "$up" ]; then
    echo "check-layers: the engine includes a daemon or client header:"; echo "$up"; status=1
fi
clients=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"]*(engine\.h|expr\.h|model\.h|trace\.h)"' clients/*.c clients/*.h 2>/dev/null)
if [ -n "$clients" ]; then
    echo "check-layers: a client includes an engine header:"; echo "$clients"; status=1
fi
[ $status -eq 0 ] && echo "check-layers: ok (engine: no libuv/ZeroMQ/protobuf-c, no clock; clients: no engine)"
exit $status

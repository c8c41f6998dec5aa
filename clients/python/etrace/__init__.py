"""etrace: the Python client of etraced (DESIGN §7). Client layer: depends on the wire
protocol (etrace_pb2, generated at build time by protoc from proto/etrace.proto into
BUILD/python/) and on Debian's python3-zmq and python3-protobuf.

    from etrace import Client
    with Client() as c:                      # the daemon's default endpoints
        print(c.status().tick)
        c.send_frame("sensors", [0.1] * 8)
        for out in c.outputs(count=10):
            print(out.tick, list(out.values))

Every control command is one method; a daemon's Error reply raises EtraceError with the
daemon's message, no answer within the timeout raises EtraceTimeout. keygen() (also
Client.keygen()) makes a CURVE key pair locally, as `etracectl keygen`; Client(...,
curve_server=KEY, curve_keys=(public, secret) or FILE) talks to a daemon's CURVE endpoints.
"""
from ._pb2 import pb
from .client import (Client, EtraceError, EtraceTimeout, default_endpoint, keygen,
                     read_config_endpoints, read_keys)
from .daemon import Daemon

__all__ = ["Client", "EtraceError", "EtraceTimeout", "Daemon", "default_endpoint", "keygen",
           "read_config_endpoints", "read_keys", "pb"]

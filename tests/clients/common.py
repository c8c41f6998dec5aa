"""Shared set-up of the client tests and examples' tests: which build to use (ETRACE_BUILD,
default build), where etrace_pb2 is (BUILD/python), and the etrace package on sys.path.
Each test starts its own daemon (etrace.Daemon) on private ipc paths in a temp dir with
XDG_RUNTIME_DIR and XDG_STATE_HOME pointing there, and stops it."""
import os
import sys

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.path.join(REPO, os.environ.get("ETRACE_BUILD", "build"))
os.environ.setdefault("ETRACE_PB2_DIR", os.path.join(BUILD, "python"))
os.environ.setdefault("ETRACED", os.path.join(BUILD, "etraced"))
ETRACECTL = os.path.join(BUILD, "etracectl")
sys.path.insert(0, os.path.join(REPO, "clients", "python"))
sys.path.insert(0, os.path.join(REPO, "clients", "examples"))

# A small model with two projections, learning from targets (as models/default.yaml).
MODEL = """name: ctest
dt: 1.0e-3
seed: 5
inputs:
  - {name: sensors, size: 4}
cells:
  - {name: hidden, model: lif, size: 16, params: {tau: 10.0e-3}}
  - {name: out, model: leaky_readout, size: 2}
projections:
  - {name: w_in, from: [sensors, hidden], to: hidden.delta,
     weight: {init: kaiming_normal}, bias: {init: constant, value: 0.05}}
  - {name: w_out, from: hidden, to: out, weight: {init: kaiming_normal, scale: 0.5}}
readouts:
  - {name: action, cell: out}
learning:
  algorithm: es_d_rtrl
  decay_or_rank: 0.9
  optimizer: {kind: adam, lr: 1.0e-3}
"""


def free_tcp_ports(n):
    """n ports on 127.0.0.1 that were free a moment ago."""
    import socket
    socks = [socket.socket() for _ in range(n)]
    for so in socks:
        so.bind(("127.0.0.1", 0))
    ports = [so.getsockname()[1] for so in socks]
    for so in socks:
        so.close()
    return ports


def curve_daemon(etrace, tmp, **kw):
    """A timer daemon on tcp 127.0.0.1 with CURVE, one client key pair allowed: returns
    (daemon, server public key, allowed pair, its key file). Key files are written in tmp."""
    server, allowed = etrace.keygen(), etrace.keygen()
    key_file = os.path.join(tmp, "server.key")
    # The daemon refuses a secret key file others may read.
    with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write("public: %s\nsecret: %s\n" % server)
    client_file = os.path.join(tmp, "client.key")
    with open(client_file, "w") as f:
        f.write("public: %s\nsecret: %s\n" % allowed)
    eps = {k: "tcp://127.0.0.1:%d" % p for k, p in zip(etrace.client.SOCKETS, free_tcp_ports(4))}
    extra = "curve:\n  server_secret_file: %s\n  allow: [\"%s\"]\n" % (key_file, allowed[0])
    d = etrace.Daemon(MODEL, clock="timer", stats_period_ms=100, extra=extra, endpoints=eps,
                      curve={"server": server[0], "keys": allowed}, **kw)
    return d, server[0], allowed, client_file

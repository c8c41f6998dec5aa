"""etrace.Daemon: starts a private build/etraced for an example or a test — its model,
config, ipc sockets, runtime and state directories and log in a fresh temp dir — waits
until it answers `status`, and stops it and removes the directory on close()."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

from ._pb2 import REPO
from .client import SOCKETS, Client, EtraceError


def _default_etraced():
    """REPO/build/etraced in a checkout, else the etraced on PATH (an installed package)."""
    built = os.path.join(REPO, "build", "etraced")
    if os.path.exists(built):
        return built
    return shutil.which("etraced") or built


class Daemon:
    """Daemon(model_text, clock="timer", stats_period_ms=1000, etraced=None, extra="",
    files=None, dir=None, endpoints=None, curve=None): model_text is the model YAML;
    endpoints {socket: ep} replace the ipc defaults (tcp with CURVE, say; `extra` then
    holds the curve settings); files {name: bytes} are written
    beside it (weight .npy files it names); etraced defaults to $ETRACED, else
    REPO/build/etraced, else the etraced on PATH; dir, an existing directory to use (kept at close: a restarted daemon
    on the same endpoints). Use as a context manager."""

    def __init__(self, model_text, clock="timer", stats_period_ms=1000, etraced=None,
                 extra="", files=None, start_timeout_s=10.0, dir=None, endpoints=None,
                 curve=None):
        self.etraced = etraced or os.environ.get("ETRACED") or _default_etraced()
        self._own_dir = dir is None
        self.dir = dir or tempfile.mkdtemp(prefix="etraced-py-")
        self.endpoints = {k: (endpoints or {}).get(k) or "ipc://%s/%s" % (self.dir, k)
                          for k in SOCKETS}
        self.curve = curve  # {"server": public key, "keys": (public, secret)} for clients
        self.model_path = os.path.join(self.dir, "model.yaml")
        with open(self.model_path, "w") as f:
            f.write(model_text)
        for name, data in (files or {}).items():
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(data)
        self.config = os.path.join(self.dir, "etraced.yaml")
        with open(self.config, "w") as f:
            f.write("model: model.yaml\nclock: %s\nstats_period_ms: %d\nendpoints:\n"
                    % (clock, stats_period_ms))
            for k in SOCKETS:
                f.write("  %s: %s\n" % (k, self.endpoints[k]))
            f.write(extra)
        self.log_path = os.path.join(self.dir, "daemon.log")
        env = dict(os.environ, XDG_RUNTIME_DIR=self.dir, XDG_STATE_HOME=self.dir)
        env.pop("RUNTIME_DIRECTORY", None)
        env.pop("STATE_DIRECTORY", None)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([self.etraced, "--config", self.config], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.dir)
        self._wait_ready(start_timeout_s)

    def _wait_ready(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        with self.client(timeout_ms=300) as c:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("etraced exited with %d:\n%s" % (self.proc.returncode,
                                                                        self.log()))
                try:
                    c.status()
                    return
                except EtraceError:
                    if time.monotonic() > deadline:
                        self.close()
                        raise RuntimeError("etraced did not answer within %.0f s" % timeout_s)

    def client(self, timeout_ms=5000, curve=None):
        """A new Client on this daemon's endpoints (over CURVE with `curve`, by default the
        daemon's own `curve` argument: {"server": KEY, "keys": (public, secret)})."""
        curve = curve or self.curve or {}
        return Client(timeout_ms=timeout_ms, curve_server=curve.get("server"),
                      curve_keys=curve.get("keys"), **self.endpoints)

    def log(self):
        """The daemon's log so far."""
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def close(self):
        """Stops the daemon (SIGTERM, then SIGKILL after 5 s) and removes its directory."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if os.environ.get("ETRACE_KEEP_DIR") or not self._own_dir:
            return
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

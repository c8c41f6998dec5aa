"""etrace.Client: the control (DEALER) and input (PUSH) sockets of one etraced, and
subscriptions to its output and stats (SUB) sockets. One Client per thread."""
import itertools
import numbers
import operator
import os
import re
import time

import zmq

from ._pb2 import pb

SOCKETS = ("input", "output", "control", "stats")
RESET_WHAT = {"all": pb.Reset.ALL, "states": pb.Reset.STATES, "traces": pb.Reset.TRACES}


class EtraceError(Exception):
    """The daemon answered with an Error (code: its name, e.g. "BAD_ARGUMENT"; message:
    the daemon's text), or the arguments were invalid (code "INVALID")."""

    def __init__(self, message, code="INVALID"):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


class EtraceTimeout(EtraceError):
    """The daemon did not answer (or take a message) within the timeout."""

    def __init__(self, message):
        super().__init__(message, "TIMEOUT")


def default_endpoint(name):
    """The daemon's default endpoint for socket `name`, as etrace_default_endpoint in C:
    ipc://RUN/name with RUN = $RUNTIME_DIRECTORY, else $XDG_RUNTIME_DIR/etraced, else
    /run/etraced as root, else /tmp/etraced-UID."""
    rd, xdg = os.environ.get("RUNTIME_DIRECTORY"), os.environ.get("XDG_RUNTIME_DIR")
    if rd:
        return "ipc://%s/%s" % (rd, name)
    if xdg:
        return "ipc://%s/etraced/%s" % (xdg, name)
    if os.geteuid() == 0:
        return "ipc:///run/etraced/%s" % name
    return "ipc:///tmp/etraced-%d/%s" % (os.geteuid(), name)


def read_config_endpoints(path):
    """endpoints.{input,output,control,stats} of a daemon config (block or flow style),
    as a dict; the keys the file does not set are absent."""
    eps, block = {}, False
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].rstrip()
            m = re.match(r"endpoints:\s*(\{.*\})?\s*$", line)
            if m:
                block = m.group(1) is None
                if m.group(1):
                    for item in m.group(1).strip("{}").split(","):
                        if ":" in item:
                            k, v = item.split(":", 1)
                            eps[k.strip()] = v.strip().strip("'\"")
                continue
            if block:
                if line and not line[0].isspace():
                    block = False
                    continue
                if ":" in line:
                    k, v = line.strip().split(":", 1)
                    eps[k.strip()] = v.strip().strip("'\"")
    return {k: v for k, v in eps.items() if k in SOCKETS}


def _floats(values):
    """A list of floats from a sequence, a numpy array of any shape (row-major) or one
    number (a Python or numpy scalar)."""
    if isinstance(values, numbers.Real):
        return [float(values)]
    if hasattr(values, "ravel"):
        values = values.ravel()
    return [float(v) for v in values]


def _ints(values):
    """A list of ints from a sequence or a numpy integer array of any shape."""
    if hasattr(values, "ravel"):
        values = values.ravel()
    return [operator.index(v) for v in values]


def _class_index(value):
    """value as a Python int when it is an integer (int, numpy integer scalar or 0-d integer
    array: a class index), else None (a list of target values)."""
    if isinstance(value, bool):
        return int(value)
    try:
        return operator.index(value)
    except TypeError:
        return None


def keygen():
    r"""A new CURVE key pair, as `etracectl keygen` makes it: (public, secret), each the
    40-character Z85 text of a 32-byte key. Local: no daemon is involved. The key file
    `etracectl --curve-keys` reads is "public: %s\nsecret: %s\n" % keygen(); the public
    key goes in the daemon's curve.allow. Raises EtraceError (code "UNSUPPORTED") when
    this libzmq has no CURVE support."""
    if not zmq.has("curve"):
        raise EtraceError("this libzmq has no CURVE support", "UNSUPPORTED")
    public, secret = zmq.curve_keypair()
    return public.decode("ascii"), secret.decode("ascii")


def read_keys(path):
    """The (public, secret) pair of a key file as `etracectl keygen` writes it (lines
    "public: Z85" and "secret: Z85"), as `etracectl --curve-keys FILE` reads it."""
    keys = {}
    with open(path) as f:
        for line in f:
            name, _, value = line.partition(":")
            if name.strip() in ("public", "secret"):
                keys[name.strip()] = value.strip()
    if len(keys.get("public", "")) != 40 or len(keys.get("secret", "")) != 40:
        raise EtraceError("%s: no 40-character Z85 public and secret keys" % path)
    return keys["public"], keys["secret"]


class Client:
    """Client(control=None, input=None, output=None, stats=None, timeout_ms=5000,
    config=None, curve_server=None, curve_keys=None): endpoints default to those of the
    daemon config `config`, else the daemon's defaults. With curve_server (the daemon's
    public key, Z85) and curve_keys (this client's (public, secret) pair, or the path of a
    key file `etracectl keygen` wrote), every socket uses CURVE, as `etracectl
    --curve-server KEY --curve-keys FILE`. Use as a context manager, or call close()."""

    def __init__(self, control=None, input=None, output=None, stats=None, timeout_ms=5000,
                 config=None, curve_server=None, curve_keys=None):
        eps = read_config_endpoints(config) if config else {}
        given = {"control": control, "input": input, "output": output, "stats": stats}
        self.endpoints = {k: given[k] or eps.get(k) or default_endpoint(k) for k in SOCKETS}
        self.timeout_ms = int(timeout_ms)
        self._curve = None
        if curve_server or curve_keys:
            if not (curve_server and curve_keys):
                raise EtraceError("CURVE needs both curve_server and curve_keys")
            public, secret = read_keys(curve_keys) if isinstance(curve_keys, str) else curve_keys
            self._curve = (curve_server.encode(), public.encode(), secret.encode())
        self._ctx = zmq.Context()
        self._ctl = self._socket(zmq.DEALER)
        self._ctl.setsockopt(zmq.LINGER, 0)
        self._ctl.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        self._ctl.connect(self.endpoints["control"])
        self._in = None
        self._subs = []
        self._ids = itertools.count(((os.getpid() & 0xffffffff) << 32) |
                                    ((int(time.time()) & 0xffff) << 16))
        self._seq = itertools.count(1)
        self._layout = None   # a Status naming the model's inputs and readouts (cached)
        self._latest = {}     # readout topic -> its SUB socket, for latest_output()

    def _socket(self, kind):
        """A new socket of this client, with its CURVE keys when it has them."""
        sock = self._ctx.socket(kind)
        if self._curve:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self._curve
        return sock

    # ---- life cycle --------------------------------------------------------------------

    def close(self):
        """Closes every socket of this client (subscriptions included)."""
        for s in self._subs:
            s.close(0)
        self._subs = []
        for s in (self._ctl, self._in):
            if s is not None:
                s.close(0)
        self._ctl = self._in = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- control -----------------------------------------------------------------------

    def request(self, req, timeout_ms=None):
        """Sends a Request (its id is set here), returns the matching Reply; raises
        EtraceError on an Error reply, EtraceTimeout without an answer."""
        req.id = next(self._ids)
        try:
            self._ctl.send(req.SerializeToString())
        except zmq.Again:
            raise EtraceTimeout("cannot send the request: no daemon (timed out)") from None
        deadline = time.monotonic() + (timeout_ms or self.timeout_ms) / 1000.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._ctl.poll(max(1, int(left * 1000))):
                raise EtraceTimeout("no answer from the daemon within %d ms"
                                    % (timeout_ms or self.timeout_ms))
            body = self._ctl.recv_multipart()[-1]
            reply = pb.Reply()
            try:
                reply.ParseFromString(body)
            except Exception:
                raise EtraceError("the daemon's answer is not a Reply", "INTERNAL") from None
            if reply.id != req.id:
                continue  # an answer to a request we gave up on
            if reply.HasField("error") and reply.error.code != pb.Error.NONE:
                raise EtraceError(reply.error.message, pb.Error.Code.Name(reply.error.code))
            return reply

    def _simple(self, field):
        req = pb.Request()
        getattr(req, field).SetInParent()
        return self.request(req)

    def status(self):
        """Model name and hash, clock, period, tick, learning, lr, uptime: a Status."""
        return self._simple("status").status

    def stats(self):
        """The latest Stats."""
        return self._simple("stats").stats

    def pause(self):
        """Stops ticking (state kept); returns the Status."""
        return self._simple("pause").status

    def resume(self):
        """Restarts ticking; returns the Status."""
        return self._simple("resume").status

    def learn(self, on):
        """Switches learning on or off; returns the Status."""
        req = pb.Request()
        req.learn.on = bool(on)
        return self.request(req).status

    def lr(self, value):
        """Sets the learning rate; returns the Status."""
        req = pb.Request()
        req.lr.lr = float(value)
        return self.request(req).status

    def reset(self, what="all"):
        """Resets "states", "traces" or "all"; returns the Status."""
        if what not in RESET_WHAT:
            raise EtraceError("reset: %r is not states, traces or all" % (what,))
        req = pb.Request()
        req.reset.what = RESET_WHAT[what]
        return self.request(req).status

    def step(self, inputs=None, spikes=None, targets=None, reward=None, reset=False,
             terminal=False):
        """One lockstep tick (clock: lockstep): inputs {name: values}, spikes {name:
        indices}, targets {readout: values or class index}, reward (a number); terminal
        makes this tick its episode's last (with a reward of 0 when none is given); reset
        resets states and traces first. Returns {readout: Output}."""
        req = pb.Request()
        self._fill_input(req.step.input, inputs, spikes, targets, reward, terminal=terminal)
        req.step.reset_before = bool(reset)
        req.step.SetInParent()
        return {o.readout: o for o in self.request(req).step.outputs}

    def export(self, directory=None):
        """The weights as {tensor name: numpy array} (and the tick they are as of, in
        the attribute `tick` of the returned dict); with `directory`, also written as
        directory/params/<name>.npy like `etracectl export`."""
        import numpy as np

        res = self._simple("export").export
        out = _Tensors()
        out.tick = res.tick
        for t in res.tensors:
            if len(t.ints):
                a = np.array(t.ints, dtype=np.int64)
            elif len(t.values64):
                a = np.array(t.values64, dtype=np.float64)
            else:
                a = np.array(t.values, dtype=np.float32)
            out[t.name] = a.reshape(tuple(t.shape))
        if directory is not None:
            os.makedirs(os.path.join(directory, "params"), exist_ok=True)
            for name, a in out.items():
                np.save(os.path.join(directory, "params", name + ".npy"), a)
        return out

    # The operations commands (DESIGN §5.4), when the daemon's proto has them.

    @staticmethod
    def _ops_request():
        if not hasattr(pb, "OpResult"):
            raise EtraceError("this build's proto has no operations commands", "UNSUPPORTED")
        return pb.Request()

    def _op(self, req):
        return self.request(req).op

    def load_text(self, model_text, files=None, keep_weights=False, keep_state=False,
                  model_path="model.yaml"):
        """Hot swap (`load`): the model YAML text and {path: bytes} of the weight files it
        names; keep_weights carries parameters whose projection name and shape match,
        keep_state also states and traces. Returns the OpResult."""
        req = self._ops_request()
        req.load.model = model_text.encode() if isinstance(model_text, str) else model_text
        req.load.model_path = model_path
        req.load.keep_weights = bool(keep_weights or keep_state)
        req.load.keep_state = bool(keep_state)
        for path, data in (files or {}).items():
            req.load.files.add(path=path, data=data)
        return self._op(req)

    def load(self, path, keep_weights=False, keep_state=False):
        """`load FILE`: reads the model file and the weight files it names (file:,
        indices:, indptr:, rows:, cols:, values: keys, relative to the model) locally and
        sends them; as load_text."""
        with open(path, "rb") as f:
            text = f.read()
        base, files = os.path.dirname(os.path.abspath(path)), {}
        for m in re.finditer(rb"\b(?:file|indices|indptr|rows|cols|values)\s*:\s*"
                             rb"['\"]?([^\s,'\"}]+)", text):
            name = m.group(1).decode()
            full = os.path.join(base, name)
            if name not in files and os.path.isfile(full):
                with open(full, "rb") as f:
                    files[name] = f.read()
        return self.load_text(text, files, keep_weights, keep_state, model_path=path)

    def checkpoint(self, name=""):
        """Writes a checkpoint now (name: a bare file name in the daemon's state
        directory; "" lets the daemon choose). Returns the OpResult."""
        req = self._ops_request()
        req.checkpoint.name = name
        req.checkpoint.SetInParent()
        return self._op(req)

    def restore(self, name):
        """Restores the checkpoint `name` while running. Returns the OpResult."""
        req = self._ops_request()
        req.restore.name = name
        return self._op(req)

    def record_start(self, name):
        """Starts recording to `name` in the state directory. Returns the OpResult."""
        req = self._ops_request()
        req.record.start = True
        req.record.name = name
        return self._op(req)

    def record_stop(self):
        """Stops the recording. Returns the OpResult (bytes and events written)."""
        req = self._ops_request()
        req.record.start = False
        req.record.SetInParent()
        return self._op(req)

    def shutdown(self):
        """Stops the daemon; returns its last Status."""
        return self._simple("shutdown").status

    @staticmethod
    def keygen():
        """`etracectl keygen`: the module function keygen() (local; no daemon, no
        instance needed: Client.keygen() works)."""
        return keygen()

    # ---- input socket (fire and forget; rejections show in Stats) ---------------------

    @staticmethod
    def _fill_input(msg, inputs=None, spikes=None, targets=None, reward=None, seq=0,
                    terminal=False):
        for name, values in (inputs or {}).items():
            f = msg.frames.add(name=name, seq=seq)
            f.values.extend(_floats(values))
        for name, idx in (spikes or {}).items():
            f = msg.frames.add(name=name, seq=seq)
            f.spikes.extend(_ints(idx))
        for readout, value in (targets or {}).items():
            s = msg.signals.add(readout=readout)
            index = _class_index(value)
            if index is not None:
                s.class_index = index
            else:
                s.target.values.extend(_floats(value))
        if reward is not None or terminal:
            msg.signals.add(reward=float(reward or 0.0), terminal=bool(terminal))
        return msg

    def _misfit(self, status, msg):
        """Why msg does not fit the model `status` names, or None."""
        ins = {i.name: i for i in status.inputs}
        outs = {r.name: r for r in status.readouts}
        for f in msg.frames:
            i = ins.get(f.name)
            if i is None:
                return "the model %r has no input %r" % (status.model_name, f.name)
            if not f.values and not f.spikes:
                continue
            if i.spikes != (len(f.spikes) > 0 and not f.values):
                return "input %r is %s" % (f.name, "a spikes input: send spike indices"
                                           if i.spikes else "an analog input: send values")
            if not i.spikes and len(f.values) != i.size:
                return "input %r takes %d values, not %d" % (f.name, i.size, len(f.values))
        for g in msg.signals:
            kind = g.WhichOneof("kind")
            if kind == "reward":
                continue
            r = outs.get(g.readout)
            if r is None:
                return "the model %r has no readout %r" % (status.model_name, g.readout)
            if kind == "target" and len(g.target.values) != r.size:
                return "readout %r takes targets of %d values, not %d" % (
                    g.readout, r.size, len(g.target.values))
            if kind == "class_index" and not 0 <= g.class_index < r.size:
                return "readout %r has %d classes: index %d is out of range" % (
                    g.readout, r.size, g.class_index)
        return None

    def check_input(self, msg):
        """Checks an Input against the running model's inputs and readouts (names, kinds,
        sizes) as `status` reports them, cached after the first call and asked again once
        on a mismatch (the model may have been swapped). Raises EtraceError (code
        WRONG_SIZE or UNKNOWN_NAME) with the expected size; does nothing when the daemon
        does not answer (its own checks remain)."""
        for refresh in (False, True):
            if self._layout is None or refresh:
                try:
                    self._layout = self.status()
                except EtraceError:
                    self._layout = None
                    return
            if not self._layout.inputs:
                return  # a daemon that does not name them
            why = self._misfit(self._layout, msg)
            if why is None:
                return
        raise EtraceError(why, "UNKNOWN_NAME" if "has no" in why else "WRONG_SIZE")

    def send_input(self, inputs=None, spikes=None, targets=None, reward=None, seq=None,
                   check=True, terminal=False):
        """Sends one Input (frames and signals applied to the same tick). With check (the
        default) a frame or target that does not fit the model raises EtraceError here
        (check_input) instead of being sent and only counted as rejected. terminal flags
        its reward (0 when none is given): the tick that consumes it ends the episode."""
        msg = self._fill_input(pb.Input(), inputs, spikes, targets, reward,
                               next(self._seq) if seq is None else seq, terminal=terminal)
        if check:
            self.check_input(msg)
        self.send_raw(msg.SerializeToString())

    def send_raw(self, data):
        """Sends raw bytes on the input socket."""
        if self._in is None:
            self._in = self._socket(zmq.PUSH)
            self._in.setsockopt(zmq.LINGER, 1000)
            self._in.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
            self._in.connect(self.endpoints["input"])
        try:
            self._in.send(data)
        except zmq.Again:
            raise EtraceTimeout("cannot send: no daemon (timed out)") from None

    def send_frame(self, name, values, seq=None):
        """One analog frame for input `name`."""
        self.send_input(inputs={name: values}, seq=seq)

    def send_spikes(self, name, indices, seq=None):
        """One spikes frame: these indices spike at the next tick."""
        self.send_input(spikes={name: indices}, seq=seq)

    def send_target(self, readout, value):
        """A target for `readout`: a list or array of values (mse) or an integer class
        index (cross_entropy), numpy scalars and arrays included."""
        self.send_input(targets={readout: value})

    def send_reward(self, reward, terminal=False):
        """A reward, added to the next tick's sum; terminal: that tick ends the episode."""
        self.send_input(reward=reward, terminal=terminal)

    # ---- subscriptions -----------------------------------------------------------------

    def _subscribe(self, which, topic):
        s = self._socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SUBSCRIBE, topic.encode())
        s.connect(self.endpoints[which])
        self._subs.append(s)
        return s

    def _iterate(self, which, topic, cls, count, timeout_ms):
        s = self._subscribe(which, topic)
        try:
            n = 0
            while count is None or n < count:
                if not s.poll(timeout_ms if timeout_ms is not None else -1):
                    raise EtraceTimeout("no %s message within %d ms" % (which, timeout_ms))
                parts = s.recv_multipart()
                m = cls()
                try:
                    m.ParseFromString(parts[-1])
                except Exception:
                    continue
                n += 1
                yield m
        finally:
            if s in self._subs:
                self._subs.remove(s)
            s.close(0)

    def outputs(self, readout="", count=None, timeout_ms=None):
        """Iterates over the Outputs published (readout: a name, "" for all), up to
        `count`; raises EtraceTimeout after timeout_ms without one (None: wait forever).
        The subscription starts with the first next()."""
        return self._iterate("output", readout, pb.Output, count, timeout_ms)

    def latest_output(self, readout="", timeout_ms=None):
        """The newest Output published (readout: a name, "" for any), not the oldest
        queued: a conflated view of outputs(). The first call subscribes; each call drains
        what arrived since and returns the last, or waits up to timeout_ms (None: forever)
        for the next one when nothing arrived (EtraceTimeout then)."""
        s = self._latest.get(readout)
        if s is None:
            s = self._latest[readout] = self._subscribe("output", readout)
        newest = None
        while True:
            while s.poll(0):
                newest = s.recv_multipart()[-1]
            if newest is not None:
                m = pb.Output()
                m.ParseFromString(newest)
                return m
            if not s.poll(timeout_ms if timeout_ms is not None else -1):
                raise EtraceTimeout("no output within %d ms" % timeout_ms)

    def stats_stream(self, count=None, timeout_ms=None):
        """Iterates over the Stats published every stats period (as outputs())."""
        return self._iterate("stats", "stats", pb.Stats, count, timeout_ms)


class _Tensors(dict):
    """A dict of exported tensors with the tick they are as of."""

    tick = 0

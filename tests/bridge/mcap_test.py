"""`etraced recording export --format mcap` read back with the official `mcap` reader
(PyPI, tests/bridge/requirements.txt): a real lockstep daemon records 30 steps made with
etracectl; the MCAP file has one protobuf schema per message type whose data is a
FileDescriptorSet of proto/etrace.proto (the messages are decoded with classes built
from it, no generated code), a channel per input, signal and output stream, the frames
and targets as sent, and one Output per replayed tick, bitwise equal to what
`etraced run --replay` writes, each logged at tick x dt.
Usage: [ETRACE_BUILD=build] python tests/bridge/mcap_test.py (exit 0 when all pass)."""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from mcap.reader import make_reader

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.path.join(REPO, os.environ.get("ETRACE_BUILD", "build"))
ETRACED = os.environ.get("ETRACED", os.path.join(BUILD, "etraced"))
ETRACECTL = os.environ.get("ETRACECTL", os.path.join(BUILD, "etracectl"))

MODEL = """name: mcaptest
dt: 1.0e-3
seed: 5
inputs:
  - {name: sensors, size: 4}
  - {name: ev, size: 3, kind: spikes}
cells:
  - {name: hidden, model: lif, size: 8, params: {tau: 10.0e-3}}
  - {name: out, model: leaky_readout, size: 2}
projections:
  - {name: w_in, from: [sensors, ev, hidden], to: hidden.delta,
     weight: {init: kaiming_normal}, bias: {init: constant, value: 0.05}}
  - {name: w_out, from: hidden, to: out, weight: {init: kaiming_normal, scale: 0.5}}
readouts:
  - {name: action, cell: out}
learning:
  algorithm: es_d_rtrl
  decay_or_rank: 0.9
  optimizer: {kind: adam, lr: 1.0e-3}
"""

failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL: " + what)


def read_npy_f32(path):
    """A float32 .npy file's shape and values (format 1.0, C order), without numpy."""
    with open(path, "rb") as f:
        data = f.read()
    hlen = struct.unpack("<H", data[8:10])[0]
    header = data[10:10 + hlen].decode()
    assert "'<f4'" in header, header
    shape = eval(header.split("'shape':")[1].split(")")[0] + ")")
    body = data[10 + hlen:]
    return shape, list(struct.unpack("<%df" % (len(body) // 4), body))


def make_recording(tmp):
    with open(os.path.join(tmp, "model.yaml"), "w") as f:
        f.write(MODEL)
    cfg = os.path.join(tmp, "etraced.yaml")
    with open(cfg, "w") as f:
        f.write("model: model.yaml\nclock: lockstep\nendpoints:\n")
        for k in ("input", "output", "control", "stats"):
            f.write("  %s: ipc://%s/%s\n" % (k, tmp, k))
    env = dict(os.environ, XDG_RUNTIME_DIR=tmp, XDG_STATE_HOME=tmp)
    log = open(os.path.join(tmp, "daemon.log"), "w")
    proc = subprocess.Popen([ETRACED, "--config", cfg], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=tmp)
    ctl = [ETRACECTL, "--config", cfg, "--timeout", "5000"]

    def run(*args):
        return subprocess.run(ctl + list(args), capture_output=True, text=True, timeout=30)

    sent = []
    try:
        deadline = time.monotonic() + 10
        while run("status").returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("etraced did not start: see %s/daemon.log" % tmp)
            time.sleep(0.05)
        run("step")
        run("step")
        r = run("record", "start", "rec")
        assert r.returncode == 0, r.stderr
        for k in range(30):
            x = [0.5 * k, 0.25, -1.0, 0.125 * k]
            args = ["step", "--input", "sensors=" + ",".join(repr(v) for v in x)]
            y = None
            if k % 2 == 0:
                y = [1.0, -0.5 * k]
                args += ["--target", "action=" + ",".join(repr(v) for v in y),
                         "--spikes", "ev=%d" % (k % 3)]
            r = run(*args)
            assert r.returncode == 0, r.stderr
            sent.append((2 + k, x, y))
        r = run("record", "stop")
        assert r.returncode == 0, r.stderr
        run("shutdown")
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    state = os.path.join(tmp, "etraced")
    name = [n for n in os.listdir(state) if n.startswith("rec")][0]
    return os.path.join(state, name), sent


def message_classes(schema_data):
    fds = descriptor_pb2.FileDescriptorSet.FromString(schema_data)
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(n))
            for n in ("etrace.Frame", "etrace.Signal", "etrace.Output")}


def main():
    tmp = tempfile.mkdtemp(prefix="etrace-mcap-")
    try:
        rec, sent = make_recording(tmp)
        out = os.path.join(tmp, "mcap")
        p = subprocess.run([ETRACED, "recording", "export", rec, "--out", out, "--format",
                            "mcap"], capture_output=True, text=True, timeout=120)
        print(p.stdout.strip())
        check(p.returncode == 0, "export exit 0: " + p.stderr)
        replay = os.path.join(tmp, "replay")
        p = subprocess.run([ETRACED, "run", "--replay", rec, "--out", replay],
                           capture_output=True, text=True, timeout=120)
        check(p.returncode == 0, "run --replay exit 0: " + p.stderr)
        shape, ref = read_npy_f32(os.path.join(replay, "outputs", "action.npy"))

        with open(os.path.join(out, "recording.mcap"), "rb") as f:
            reader = make_reader(f)
            header = reader.get_header()
            check(header.library == "etraced", "header library: %r" % header.library)
            frames, targets, outputs, topics, schemas = [], [], [], set(), {}
            classes = None
            for schema, channel, message in reader.iter_messages():
                topics.add(channel.topic)
                check(schema.encoding == "protobuf", "schema encoding " + schema.encoding)
                check(channel.message_encoding == "protobuf", "message encoding")
                schemas[schema.name] = schema.id
                if classes is None:
                    classes = message_classes(schema.data)
                msg = classes[schema.name].FromString(message.data)
                if channel.topic == "/input/sensors":
                    frames.append((message.log_time, list(msg.values)))
                elif channel.topic == "/target/action":
                    targets.append((message.log_time, list(msg.target.values)))
                elif channel.topic == "/output/action":
                    outputs.append((message.log_time, msg.tick, list(msg.values)))
        check(topics == {"/input/sensors", "/input/ev", "/target/action", "/output/action"},
              "topics %s" % sorted(topics))
        check(set(schemas) == {"etrace.Frame", "etrace.Signal", "etrace.Output"},
              "schemas %s" % sorted(schemas))
        dt_ns = 1000000
        check([f[0] for f in frames] == [s[0] * dt_ns for s in sent], "frame log times")
        check(all(abs(a - b) == 0 for f, s in zip(frames, sent) for a, b in zip(f[1], s[1])),
              "frame values as sent")
        with_y = [s for s in sent if s[2] is not None]
        check([t[1] for t in targets] == [s[2] for s in with_y], "targets as sent")
        check([t[0] for t in targets] == [s[0] * dt_ns for s in with_y], "target log times")
        check(len(outputs) == shape[0], "one Output per replayed tick (%d, replay %d)"
              % (len(outputs), shape[0]))
        check([o[1] for o in outputs] == list(range(2, 2 + len(outputs))), "Output ticks")
        check(all(o[0] == o[1] * dt_ns for o in outputs), "Output log times = tick x dt")
        flat = [v for o in outputs for v in o[2]]
        check(flat == ref, "Outputs bitwise equal to etraced run --replay")
        print("mcap: %d frames, %d targets, %d outputs on %d channels"
              % (len(frames), len(targets), len(outputs), len(topics)))
    finally:
        shutil.rmtree(tmp)
    print("mcap_test: %d passed, %d failed" % (checks - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

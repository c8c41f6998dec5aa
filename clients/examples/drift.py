#!/usr/bin/python3
"""drift: watch a model's weights drift while another process streams to it.

The example starts a daemon on a small recurrent tanh network,
then a second process (this file with --stream) that streams sensor frames and targets
(a smooth function of the sensors, so the loss can fall). This process only subscribes
to the stats socket and records, per stats period, ||W - W0|| and ||delta W|| of every
projection and the loss average. Halfway through it hot-swaps the model for the same one
with the learning rate x 5, `load --keep-weights` (DESIGN §5.4; with --attach, an `lr`
change), marked as an event.
Passes when every projection's drift grew before and after the event, and the loss fell
before the event (the first eighth of the run against the eighth before the event).

Run (starts its own daemon in a temp dir; timer mode, 1 kHz, 30 s; lockstep: 10 s):
    /usr/bin/python3 clients/examples/drift.py
With --clock lockstep this process steps the daemon itself and takes its figures by tick
count (every 250 ticks: the weights exported, ||W - W0|| and ||delta W|| computed here, the
mean of the step replies' losses; the event at the middle tick), so the run is a pure
function of the model and the inputs: the same numbers on every machine, whatever its
speed (it prints a digest of them). --quick shortens it.
The plot's last panel is the learning rate: the event raises it 5x, which is why the loss
and ||delta W|| jump there; the swap itself keeps the weights.
Writes OUT/drift.png.
"""
import hashlib
import math
import subprocess
import sys
import time

import example_util as eu

MODEL = """name: drift-demo
dt: 1.0e-3
seed: 1
inputs:
  - {name: sensors, size: 8, kind: analog}
cells:
  - name: hidden
    model: rnn_tanh
    size: 64
  - name: out
    model: leaky_readout
    size: 2
    params: {tau: 10.0e-3}
projections:
  - name: w_rec
    from: [sensors, hidden]
    to: hidden
    weight: {init: kaiming_normal, scale: 0.5}
    bias: {init: zeros}
  - name: w_out
    from: hidden
    to: out
    weight: {init: kaiming_normal, scale: 0.5}
readouts:
  - {name: action, cell: out}
learning:
  algorithm: es_d_rtrl
  decay_or_rank: 0.5
  signal: target
  loss: mse
  optimizer: {kind: adam, lr: 1.0e-4}
"""
LR0, LR1 = 1.0e-4, 5.0e-4
LOCKSTEP_RATE = 3000.0  # steps per second of the lockstep streamer: 3x real time


def signal(k, attach):
    """Tick k's frame and target."""
    ph = 2 * math.pi * k * 1e-3 * 2.0  # 2 Hz at dt = 1 ms
    x = [0.5 + 0.5 * math.sin(ph + j * math.pi / 4) for j in range(8)]
    y = ([0.3 + 0.1 * math.sin(ph), 0.2 - 0.1 * math.sin(ph)] if attach else
         [0.5 * math.sin(ph), 0.5 * math.cos(2 * ph)])
    return x, y


def stream(args):
    """The streaming process: one frame and one target per tick, until killed."""
    import etrace
    with etrace.Client(control=args.control, input=args.input, timeout_ms=5000) as c:
        k = 0
        period = args.period_us / 1e6
        t_next = time.monotonic()
        while True:
            x, y = signal(k, args.attach)
            if args.clock == "lockstep":
                try:
                    c.step(inputs={"sensors": x}, targets={"action": y})
                except etrace.EtraceError as e:
                    if e.code != "BUSY":  # BUSY: a hot swap is being compiled; try again
                        raise
                    time.sleep(0.001)
                    continue
                # Paced at LOCKSTEP_RATE steps per second, so a run covers the same ticks
                # on a fast machine and a slow one (as fast as it goes if it cannot keep up).
                now = time.monotonic()
                t_next = max(t_next + 1.0 / LOCKSTEP_RATE, now)
                time.sleep(t_next - now)
            else:
                c.send_input(inputs={"sensors": x}, targets={"action": y})
                t_next += period
                time.sleep(max(0.0, t_next - time.monotonic()))
            k += 1


class _Attached:
    """The running daemon on the default endpoints, in place of a private one."""

    def __init__(self, etrace):
        self.endpoints = {k: etrace.default_endpoint(k) for k in etrace.client.SOCKETS}
        self.etrace = etrace

    def client(self, timeout_ms=5000):
        return self.etrace.Client(timeout_ms=timeout_ms, **self.endpoints)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def event(etrace, c, attached, lr_before):
    """The mid-run event: a hot swap to the same model with lr x 5, keeping the weights
    (`load --keep-weights`); a daemon without `load` gets an `lr` change instead."""
    if attached:
        c.lr(5 * lr_before)
        return "lr %g -> %g" % (lr_before, 5 * lr_before)
    try:
        c.load_text(MODEL.replace("lr: 1.0e-4", "lr: 5.0e-4"), keep_weights=True,
                    model_path="drift-lr5.yaml")
        return "load --keep-weights (lr %g -> %g)" % (LR0, LR1)
    except etrace.EtraceError as e:
        if e.code not in ("UNKNOWN_COMMAND", "UNSUPPORTED"):
            raise
    c.lr(LR1)
    return "lr %g -> %g (no load in this daemon)" % (LR0, LR1)


def projection_weights(tensors):
    """{projection: its weight and bias as one float64 vector} from an export."""
    import numpy as np
    out = {}
    for name in sorted(tensors):
        proj, kind = name.rsplit(".", 1)
        if kind in ("weight", "bias"):
            out.setdefault(proj, []).append(np.asarray(tensors[name], np.float64).ravel())
    return {p: np.concatenate(v) for p, v in out.items()}


def lockstep_rows(etrace, args, seconds):
    """--clock lockstep: steps the daemon from here and samples by tick count. Returns the
    rows (t, tick, loss, {projection: (||W - W0||, ||delta W||)}, lr) and the events."""
    import numpy as np
    every = 100 if args.quick else 250
    n_ticks = int(round(seconds * 1000))
    rows, events = [], []
    d = eu.start_daemon(etrace, args, MODEL, stats_period_ms=1000)
    with d, d.client() as c:
        w0 = projection_weights(c.export())
        prev = w0
        loss_sum, lr = 0.0, c.status().lr
        for k in range(n_ticks):
            if k == n_ticks // 2:
                label = event(etrace, c, False, lr)
                lr = c.status().lr
                events.append((k * 1e-3, label))
                print("  t %6.2f s  tick %7d  event: %s" % (k * 1e-3, k, label))
            x, y = signal(k, False)
            loss_sum += c.step(inputs={"sensors": x}, targets={"action": y})["action"].loss
            if (k + 1) % every == 0:
                w = projection_weights(c.export())
                rows.append(((k + 1) * 1e-3, k + 1, loss_sum / every,
                             {p: (float(np.linalg.norm(w[p] - w0[p])),
                                  float(np.linalg.norm(w[p] - prev[p]))) for p in w}, lr))
                prev, loss_sum = w, 0.0
                if len(rows) % 8 == 0:
                    r = rows[-1]
                    print("  t %6.2f s  tick %7d  loss %.5f  %s" % (r[0], r[1], r[2], "  ".join(
                        "%s |W-W0| %.4f |dW| %.5f" % (p, v[0], v[1]) for p, v in r[3].items())))
    digest = hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
    print("ROWS %d samples every %d ticks, sha256 %s" % (len(rows), every, digest))
    return rows, events


def main():
    ap = eu.options(__doc__.split("\n\n")[0], period_us=1000)
    ap.add_argument("--seconds", type=float, default=None, help="length of the run")
    ap.add_argument("--attach", action="store_true",
                    help="stream to the daemon already running on the default endpoints "
                         "(`make run`: models/default.yaml, same inputs) instead of starting "
                         "one; the event is then an lr change, undone at the end")
    ap.add_argument("--stream", action="store_true", help=__import__("argparse").SUPPRESS)
    ap.add_argument("--control", help=__import__("argparse").SUPPRESS)
    ap.add_argument("--input", help=__import__("argparse").SUPPRESS)
    args = ap.parse_args()
    etrace = eu.setup(args)
    if args.stream:
        try:
            stream(args)
        except KeyboardInterrupt:
            pass
        except etrace.EtraceError as e:
            print("drift streamer: %s" % e, file=sys.stderr)
            return 1
        return 0
    seconds = args.seconds or (4.0 if args.quick else 30.0 if args.clock == "timer" else 10.0)
    stats_ms = 100 if args.quick else 250
    rows, events = [], []
    if args.clock == "lockstep" and not args.attach:
        rows, events = lockstep_rows(etrace, args, seconds)
        return finish(args, rows, events, "lockstep, every %d ticks"
                      % (100 if args.quick else 250))
    if args.attach:
        args.clock = "timer"
        d = _Attached(etrace)
    else:
        d = eu.start_daemon(etrace, args, MODEL, stats_period_ms=stats_ms)
    with d, d.client() as c:
        lr_before = c.status().lr
        stats = c.stats_stream(timeout_ms=5000)
        first = next(stats)  # subscribed before the streamer starts
        streamer = subprocess.Popen([sys.executable, __file__, "--stream", "--clock",
                                     args.clock, "--period-us", str(args.period_us)]
                                    + (["--attach"] if args.attach else []) + [
                                     "--build", args.build, "--control",
                                     d.endpoints["control"], "--input", d.endpoints["input"]])
        try:
            t0 = first.time_ns
            changed = False
            for s in stats:
                t = (s.time_ns - t0) / 1e9
                rows.append((t, s.tick, s.loss_avg, {p.name: (p.drift_norm, p.delta_norm)
                                                    for p in s.projections}, s.lr))
                if not changed and t >= seconds / 2:
                    label = event(etrace, c, args.attach, lr_before)
                    events.append((t, label))
                    print("  t %6.2f s  tick %7d  event: %s" % (t, s.tick, label))
                    changed = True
                if len(rows) % max(1, int(2000 / stats_ms)) == 0:
                    print("  t %6.2f s  tick %7d  loss %.5f  %s" % (
                        t, s.tick, s.loss_avg, "  ".join(
                            "%s |W-W0| %.4f |dW| %.5f" % (p.name, p.drift_norm, p.delta_norm)
                            for p in s.projections)))
                if t >= seconds:
                    break
        finally:
            streamer.terminate()
            streamer.wait(5)
            if args.attach:
                c.lr(lr_before)
    rows = [r for r in rows if r[1] > 0]
    return finish(args, rows, events, "%s, stats every %d ms" % (args.clock, stats_ms))


def finish(args, rows, events, how):
    """Checks the run, prints the RESULT line and plots; returns the exit code."""
    names = list(rows[-1][3])
    q = max(1, len(rows) // 4)
    loss_first = sum(r[2] for r in rows[:q]) / q
    loss_last = sum(r[2] for r in rows[-q:]) / q
    # The drift grew before the event and after it (a swap may restart W0).
    ie = next((i for i, r in enumerate(rows) if events and r[0] >= events[0][0]), len(rows) - 1)
    ie = min(max(ie, 2), len(rows) - 2)
    drift_ok = all(rows[ie - 1][3][n][0] > rows[0][3][n][0] and
                   rows[-1][3][n][0] > rows[ie + 1][3][n][0] for n in names)
    # The loss fell before the event (what the event does to it is what the plot shows).
    qb = max(1, ie // 4)
    loss_before = sum(r[2] for r in rows[ie - qb:ie]) / qb
    loss_first = sum(r[2] for r in rows[:qb]) / qb
    ok = drift_ok and (args.attach or loss_before < loss_first) and len(events) == 1
    print("RESULT drift over %d stats (%d ticks): %s; loss first quarter %.5f -> before the "
          "event %.5f -> last quarter %.5f: %s" % (len(rows), rows[-1][1], ", ".join(
              "%s |W-W0| %.4f" % (n, rows[-1][3][n][0]) for n in names),
              loss_first, loss_before, loss_last, "PASS" if ok else "FAIL"))
    if not args.no_plot:
        ts = [r[0] for r in rows]
        eu.plot("%s/drift.png" % args.out, [
            ("||W - W0||", [(n, ts, [r[3][n][0] for r in rows]) for n in names], "s", events),
            ("||delta W|| per sample", [(n, ts, [r[3][n][1] for r in rows]) for n in names],
             "s", events),
            ("loss (period mean)", [("loss", ts, [r[2] for r in rows])], "s", events),
            ("learning rate", [("lr", ts, [r[4] for r in rows])], "s", events)],
            "drift (%s)\nthe event raises lr 5x: hence the jump; the swap keeps the weights"
            % how)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

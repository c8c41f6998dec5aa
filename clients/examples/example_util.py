"""Shared plumbing of the examples: command-line options, the package path, a private
daemon per run, and `Link`, one tick of the daemon per call in either clock mode.

    timer:    the daemon ticks on its own clock (period_us); tick() sends the Input with a
              sequence number and waits for the first Output of a tick that used it
              (Output.input_seq), so the plant and the daemon stay paired tick by tick.
    lockstep: tick() is one `step` request: deterministic, as fast as the machine goes.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))


def options(description, period_us):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--clock", choices=("timer", "lockstep"), default="timer",
                    help="timer (default: the daemon ticks every --period-us) or lockstep "
                         "(deterministic, as fast as possible; the tests use it)")
    ap.add_argument("--period-us", type=int, default=period_us,
                    help="tick period in timer mode (default %d)" % period_us)
    ap.add_argument("--build", default=os.path.join(REPO, "build"),
                    help="the build directory (etraced, python/etrace_pb2.py)")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "examples"),
                    help="where the PNG and the curve files go")
    ap.add_argument("--quick", action="store_true", help="a shortened run (the tests)")
    ap.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return ap


def setup(args):
    """Points the etrace package at this build; returns the etrace module."""
    args.build = os.path.abspath(args.build)
    os.environ.setdefault("ETRACE_PB2_DIR", os.path.join(args.build, "python"))
    os.environ.setdefault("ETRACED", os.path.join(args.build, "etraced"))
    os.makedirs(args.out, exist_ok=True)
    import etrace
    return etrace


def start_daemon(etrace, args, model_text, stats_period_ms=200, quiet=False):
    extra = "period_us: %d\n" % args.period_us if args.clock == "timer" else ""
    d = etrace.Daemon(model_text, clock=args.clock, stats_period_ms=stats_period_ms,
                      extra=extra)
    if not quiet:
        print("daemon pid %d in %s; watch it: %s/etracectl --stats %s top"
              % (d.proc.pid, d.dir, os.path.relpath(args.build), d.endpoints["stats"]),
              flush=True)
    return d


class Link:
    """One daemon tick per tick() call; returns the Output of `readout`."""

    def __init__(self, daemon, clock, readout):
        import zmq
        self.c = daemon.client(timeout_ms=5000)
        self.clock, self.readout = clock, readout
        self.seq = 0
        self.ticks = 0
        self.sub = None
        if clock == "timer":
            self.sub = self.c._ctx.socket(zmq.SUB)
            self.sub.setsockopt(zmq.LINGER, 0)
            self.sub.setsockopt(zmq.SUBSCRIBE, readout.encode())
            self.sub.connect(daemon.endpoints["output"])
            self._next(lambda o: True)  # the subscription is live once an Output arrives

    def _next(self, accept):
        from etrace import EtraceTimeout, pb
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if not self.sub.poll(100):
                continue
            o = pb.Output()
            o.ParseFromString(self.sub.recv_multipart()[-1])
            if accept(o):
                return o
        raise EtraceTimeout("no Output from the daemon")

    def tick(self, inputs, targets=None, reward=None, reset=False, terminal=False):
        """terminal: the reward ends its episode at this tick (DESIGN §4.3)."""
        self.ticks += 1
        if self.clock == "lockstep":
            return self.c.step(inputs=inputs, targets=targets, reward=reward, reset=reset,
                               terminal=terminal)[self.readout]
        if reset:
            self.c.reset("all")
        self.seq += 1
        self.c.send_input(inputs=inputs, targets=targets, reward=reward, seq=self.seq,
                          terminal=terminal)
        seq = self.seq
        return self._next(lambda o: o.input_seq >= seq)

    def close(self):
        if self.sub is not None:
            self.sub.close(0)
        self.c.close()


def plot(path, panels, title):
    """panels: [(ylabel, [(label, xs, ys), ...], xlabel, events)] -> one PNG, stacked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.3 * len(panels)), dpi=80,
                             squeeze=False)
    for ax, (ylabel, series, xlabel, events) in zip(axes[:, 0], panels):
        for label, xs, ys in series:
            ax.plot(xs, ys, label=label, linewidth=1.2)
        for x, label in events or []:
            ax.axvline(x, color="red", linestyle="--", linewidth=1)
            ax.text(x, ax.get_ylim()[1], " " + label, color="red", va="top", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=8)
    axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print("wrote %s" % path)

#!/usr/bin/env python3
"""braintrace_roundtrip: a model from JAX to the daemon and back.

The steps a braintrace user follows (README, "From braintrace to etraced and back"):
  1. build the Key Concepts page's LIF_Delta_Net in braintrace (100 LIF neurons reading
     20 input spike trains and their own spikes through one braintrace.nn.Linear);
  2. train it offline in JAX (BPTT with Adam through brainstate's for_loop) on mapping A:
     while input group k fires, output group k should spike, the other groups stay silent;
  3. export it with etrace.braintrace.export (model.yaml + .npy weights, learning: ES-D-RTRL);
  4. run it online in the daemon (lockstep) on a stream whose mapping drifts to B (input
     group k -> output group k+1) partway through, once with learning off and once with it
     on, from the same exported weights and the same stream;
  5. export the adapted weights from the daemon and write them back into the braintrace
     module with etrace.braintrace.load;
  6. check that braintrace's forward from a reset state equals the daemon's outputs on new
     inputs, and plot the error around the drift and the mapping before and after.

Run it with the bridge's virtualenv (`make bridge-deps`); it starts its own daemon (the float
build, build/etraced by default) in a temp dir:
    build/bridge-venv/bin/python clients/examples/braintrace_roundtrip.py
--quick trains and streams less (the bridge test runs it). Prints the figures and exits
non-zero unless online learning lowered the error after the drift below the error without
it and the imported forward matched the daemon to 1e-4 (the float build's tolerance in the
bridge's tests). Writes OUT/braintrace_roundtrip.png (OUT: clients/examples/plots).
"""
import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))

N_IN, N_REC, N_GROUPS = 20, 100, 4  # 4 input groups of 5 channels, 4 output groups of 25
SEGMENT = 20                         # ticks per input class
P_ON, P_OFF = 0.5, 0.02              # spike probability per tick of a channel on / off
LEARNING = {"algorithm": "es_d_rtrl", "decay_or_rank": 0.9, "signal": "target",
            "loss": "mse", "optimizer": {"kind": "adam", "lr": 0.002}}
TOL = 1e-4  # the float build against braintrace, as in tests/bridge


def options():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a shortened run (the bridge test)")
    ap.add_argument("--etraced", default=os.path.join(REPO, "build", "etraced"),
                    help="the daemon binary (default: build/etraced, the float build)")
    ap.add_argument("--out", default=os.path.join(HERE, "plots"),
                    help="where braintrace_roundtrip.png goes (default clients/examples/plots)")
    ap.add_argument("--no-plot", action="store_true", help="skip the PNG")
    ap.add_argument("--seed", type=int, default=1, help="weights and streams (default 1)")
    ap.add_argument("--lr", type=float, default=LEARNING["optimizer"]["lr"],
                    help="the daemon's Adam learning rate (default %(default)g)")
    return ap.parse_args()


def stream(rng, n_ticks, mapping):
    """Inputs [T, N_IN] (0/1 spikes), targets [T, N_REC] and the class of each tick: for a
    SEGMENT ticks, one input group fires at P_ON, and output group mapping[class] is the
    target (1 = spike every tick), every other neuron 0."""
    import numpy as np
    cls = np.repeat(rng.randint(N_GROUPS, size=n_ticks // SEGMENT + 1), SEGMENT)[:n_ticks]
    p = np.full((n_ticks, N_IN), P_OFF)
    ys = np.zeros((n_ticks, N_REC))
    gi, go = N_IN // N_GROUPS, N_REC // N_GROUPS
    for k in range(N_GROUPS):
        p[cls == k, k * gi:(k + 1) * gi] = P_ON
        m = mapping[k]
        ys[cls == k, m * go:(m + 1) * go] = 1.0
    return (rng.rand(n_ticks, N_IN) < p).astype(np.float64), ys, cls


def group_rates(outs, cls):
    """Mean spike rate of each output group [N_GROUPS] while each input class is on:
    rows input class, columns output group."""
    import numpy as np
    go = N_REC // N_GROUPS
    return np.array([[outs[cls == k][:, g * go:(g + 1) * go].mean() if np.any(cls == k) else 0
                      for g in range(N_GROUPS)] for k in range(N_GROUPS)])


def main():
    args = options()
    t_start = time.monotonic()
    import jax
    jax.config.update("jax_enable_x64", True)
    import brainpy
    import brainstate
    import braintools
    import braintrace
    import brainunit as u
    import jax.numpy as jnp
    import numpy as np

    import etrace.braintrace as ebt
    from etrace import Daemon

    brainstate.environ.set(precision=64)

    class LIF_Delta_Net(brainstate.nn.Module):
        """braintrace's Key Concepts page, section 2, as printed there."""

        def __init__(self, n_in, n_rec, tau_mem=5. * u.ms, V_th=1. * u.mV,
                     spk_fun=braintools.surrogate.ReluGrad(), spk_reset='soft',
                     rec_scale=1., ff_scale=1.):
            super().__init__()
            self.neu = brainpy.state.LIF(n_rec, tau=tau_mem, spk_fun=spk_fun,
                                         spk_reset=spk_reset, V_th=V_th)
            rec_init = braintools.init.KaimingNormal(rec_scale, unit=u.mV)
            ff_init = braintools.init.KaimingNormal(ff_scale, unit=u.mV)
            w_init = u.math.concatenate([ff_init([n_in, n_rec]), rec_init([n_rec, n_rec])],
                                        axis=0)
            self.syn = brainpy.state.DeltaProj(
                comm=braintrace.nn.Linear(n_in + n_rec, n_rec, w_init=w_init,
                                          b_init=braintools.init.ZeroInit(unit=u.mV)),
                post=self.neu)

        def update(self, spk):
            inp = u.math.concatenate([spk, self.neu.get_spike()], axis=-1)
            self.syn(inp)
            self.neu()
            return self.neu.get_spike()

    epochs, seq_len = (25, 200) if args.quick else (150, 200)
    pre, post = (300, 1000) if args.quick else (1000, 4000)  # online ticks before/after drift
    mapping_a = list(range(N_GROUPS))
    mapping_b = [(k + 1) % N_GROUPS for k in range(N_GROUPS)]
    rng = np.random.RandomState(args.seed)
    x0 = jnp.zeros(N_IN)

    with brainstate.environ.context(dt=0.1 * u.ms):
        # 1. the model, its weights in float64 (the initialisers give float32)
        brainstate.random.seed(args.seed)
        net = LIF_Delta_Net(N_IN, N_REC, rec_scale=0.5, ff_scale=2.)
        brainstate.nn.init_all_states(net)
        params = net.states(brainstate.ParamState)
        for st in params.values():
            st.value = jax.tree.map(lambda a: a.astype(jnp.float64), st.value)

        # 2. offline: BPTT over a sequence from a reset state, Adam on the weight and bias
        def loss_fn(xs, ys):
            outs = brainstate.transform.for_loop(net, xs)
            return jnp.mean((outs - ys) ** 2), outs

        @brainstate.transform.jit
        def bptt(xs, ys):
            brainstate.nn.reset_all_states(net)
            return brainstate.transform.grad(loss_fn, params, has_aux=True,
                                             return_value=True)(xs, ys)

        lin = net.syn.comm.weight
        moments = {}
        for ep in range(epochs):
            xs, ys, _ = stream(rng, seq_len, mapping_a)
            grads, loss, _ = bptt(jnp.asarray(xs), jnp.asarray(ys))
            value = dict(lin.value)
            for k, g in grads[("syn", "comm", "weight")].items():
                g = np.asarray(u.get_mantissa(g))
                m, v, _ = moments.get(k, (0.0, 0.0, 0))
                m, v, t = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g, ep + 1
                moments[k] = (m, v, t)
                step = 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
                value[k] = value[k] - u.Quantity(jnp.asarray(step), unit=u.mV)
            lin.value = value
            if ep == 0 or (ep + 1) % 25 == 0 or ep + 1 == epochs:
                print(f"offline epoch {ep + 1:3d}/{epochs}: error {float(loss):.4f}", flush=True)
        print(f"offline training done after {time.monotonic() - t_start:.0f} s", flush=True)

        # 3. export: model.yaml and the weights, with the online learning rule; the
        # hidden states as they are become the model's initial states, so reset them first
        brainstate.nn.reset_all_states(net)
        learning = dict(LEARNING, optimizer=dict(LEARNING["optimizer"], lr=args.lr))
        files = {}
        with tempfile.TemporaryDirectory(prefix="braintrace_roundtrip_") as export_dir:
            exported = ebt.export(net, x0, export_dir, learning=learning)
            for name in exported.files:
                with open(os.path.join(export_dir, name), "rb") as fh:
                    files[name] = fh.read()

        # the online stream: mapping A, then the drift to B
        xa, ya, ca = stream(rng, pre, mapping_a)
        xb, yb, cb = stream(rng, post, mapping_b)
        xs_on, ys_on = np.concatenate([xa, xb]), np.concatenate([ya, yb])
        xs_new, ys_new, cls_new = stream(rng, 400, mapping_b)  # the checks' new inputs

        # braintrace's forward with the offline weights, for the "before" panel
        @brainstate.transform.jit
        def run(xs):
            brainstate.nn.reset_all_states(net)
            return brainstate.transform.for_loop(net, xs)

        def forward(xs):
            return np.asarray(run(jnp.asarray(xs)), np.float64)

        before = forward(xs_new)

        # 4. the daemon, lockstep: the same stream with learning off, then on
        errors = {}
        with Daemon(exported.text, clock="lockstep", etraced=args.etraced, files=files) as d, \
                d.client() as c:
            for label, on in (("without online learning", False), ("with online learning", True)):
                c.learn(on)
                c.reset("all")
                err = np.empty(len(xs_on))
                for t, (x, y) in enumerate(zip(xs_on, ys_on)):
                    o = np.asarray(c.step(inputs={"x": x}, targets={"out": y})["out"].values)
                    err[t] = np.mean((o - y) ** 2)
                errors[label] = err
                print(f"daemon, {label}: {len(xs_on)} ticks "
                      f"({time.monotonic() - t_start:.0f} s)", flush=True)
            # 5. the adapted weights out of the daemon ...
            reply = c.export()
            c.learn(False)
            c.reset("all")
            daemon_out = np.array([list(c.step(inputs={"x": x})["out"].values)
                                   for x in xs_new], np.float64)
        # ... and into the braintrace module
        ebt.load(net, reply, x0)
        # 6. braintrace's forward from a reset state against the daemon's outputs
        after = forward(xs_new)

    window = post // 4
    print(f"error before the drift (ticks 0-{pre}): "
          + ", ".join(f"{k} {np.mean(e[:pre]):.4f}" for k, e in errors.items()))
    figures = {k: float(np.mean(e[-window:])) for k, e in errors.items()}
    print(f"error after the drift (the last {window} ticks): "
          + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
    diff = float(np.max(np.abs(after - daemon_out)))
    scale = max(float(np.max(np.abs(daemon_out))), 1e-12)
    print(f"braintrace with the imported weights vs the daemon on {len(xs_new)} new ticks: "
          f"max |difference| {diff:.3g} (rel {diff / scale:.2e}, tolerance {TOL:.0e}); "
          f"spikes {int(daemon_out.sum())} (daemon), {int(after.sum())} (braintrace)")
    print(f"the offline weights on the same new ticks: error {np.mean((before - ys_new) ** 2):.4f}"
          f"; the imported ones: {np.mean((after - ys_new) ** 2):.4f}")

    if not args.no_plot:
        plot(os.path.join(args.out, "braintrace_roundtrip.png"), errors, pre,
             group_rates(before, cls_new), group_rates(after, cls_new), mapping_b)

    ok = (figures["with online learning"] < figures["without online learning"]
          and diff / scale <= TOL)
    print(f"braintrace_roundtrip: {'ok' if ok else 'FAILED'} "
          f"({time.monotonic() - t_start:.0f} s)")
    return 0 if ok else 1


def plot(path, errors, drift_at, rates_before, rates_after, mapping):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig = plt.figure(figsize=(11, 3.6))
    ax = fig.add_axes([0.06, 0.15, 0.5, 0.72])
    k = 100
    for (label, e), col in zip(errors.items(), ("tab:gray", "tab:blue")):
        smooth = np.convolve(e, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(len(smooth)) + k - 1, smooth, color=col, label=label)
    ax.axvline(drift_at, color="k", ls=":", lw=1)
    ax.text(drift_at, ax.get_ylim()[1], " drift A -> B", va="top", fontsize=8)
    ax.set_xlabel("daemon tick (lockstep, dt 0.1 ms)")
    ax.set_ylabel(f"error, mean over {k} ticks")
    ax.set_title("exported LIF_Delta_Net in etraced", fontsize=10)
    ax.legend(fontsize=8, loc="center right")
    for i, (title, r) in enumerate((("braintrace, offline weights", rates_before),
                                    ("braintrace, weights from the daemon", rates_after))):
        a = fig.add_axes([0.64 + i * 0.18, 0.15, 0.15, 0.72])
        a.imshow(r, vmin=0, vmax=1, cmap="Greys")
        a.plot(mapping, range(len(mapping)), "o", mfc="none", mec="tab:red", ms=14)
        a.set_title(title, fontsize=8)
        a.set_xlabel("output group", fontsize=8)
        if i == 0:
            a.set_ylabel("input group firing", fontsize=8)
        a.set_xticks(range(len(mapping)))
        a.set_yticks(range(len(mapping)))
    fig.text(0.64, 0.02, "spike rate per group on new inputs; circles: mapping B's targets",
             fontsize=7)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"wrote {os.path.relpath(path)}")


if __name__ == "__main__":
    sys.exit(main())

"""Round trip: export -> the daemon (lockstep) learns -> its weights come back in an export
reply -> etrace.braintrace.load() writes them into the braintrace module -> from a reset
state, braintrace's forward equals the daemon's outputs on new inputs. Also load() from an
`etraced run --learn on` output directory. GRU_Net on the float daemon (1e-4),
LIF_Delta_Net on the double daemon and through `etraced run` (1e-10)."""
import io
import os
import subprocess
import tempfile

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from btcommon import (DT, ETRACED_DOUBLE, ETRACED_FLOAT, GRU_Net, LIF_Delta_Net, Checker,
                      ebt, rel_err, to_f64)
from etrace import Daemon

chk = Checker()
LEARN = {"algorithm": "es_d_rtrl", "decay_or_rank": 0.9, "signal": "target", "loss": "mse",
         "optimizer": {"kind": "sgd", "lr": 0.05}}


def npy_bytes(a):
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def bt_forward(net, xs):
    brainstate.nn.init_all_states(net)
    return np.stack([np.asarray(net(jnp.asarray(x)), np.float64) for x in xs])


def weights(net):
    return [np.asarray(getattr(leaf, "mantissa", leaf), np.float64).copy()
            for st in net.states(brainstate.ParamState).values()
            for leaf in jax.tree.leaves(st.value, is_leaf=lambda z: hasattr(z, "mantissa"))]


def daemon_roundtrip(label, factory, xs, ys, xs_new, etraced, tol):
    with brainstate.environ.context(dt=DT):
        brainstate.random.seed(7)
        net = factory()
        brainstate.nn.init_all_states(net)
        to_f64(net)
        text, files, _ = ebt.analyse(net, jnp.asarray(xs[0]), learning=LEARN)
        before = weights(net)
        with Daemon(text, clock="lockstep", etraced=etraced,
                    files={f: npy_bytes(a) for f, a in files.items()}) as d, d.client() as c:
            for x, y in zip(xs, ys):
                c.step(inputs={"x": x}, targets={"out": y})
            reply = c.export()
            c.learn(False)
            c.reset("all")
            daemon_out = np.array([list(c.step(inputs={"x": x})["out"].values) for x in xs_new])
        old_out = bt_forward(net, xs_new)
        ebt.load(net, reply, jnp.asarray(xs[0]))
        after = weights(net)
        moved = max(float(np.max(np.abs(a - b))) for a, b in zip(after, before))
        chk.expect(f"{label}: the daemon's learning moved the weights", moved > 1e-6,
                   f"(max change {moved:.2e})")
        new_out = bt_forward(net, xs_new)
    chk.expect(f"{label}: the old weights would not explain the daemon's outputs",
               rel_err(old_out, daemon_out) > 10 * tol)
    chk.check(f"{label} daemon round trip outputs", rel_err(new_out, daemon_out), tol)


def run_dir_roundtrip(label, factory, xs, ys, xs_new):
    with brainstate.environ.context(dt=DT):
        brainstate.random.seed(8)
        net = factory()
        brainstate.nn.init_all_states(net)
        to_f64(net)
        ex0 = jnp.asarray(xs[0])
        text, files, _ = ebt.analyse(net, ex0, learning=LEARN)
        with tempfile.TemporaryDirectory(prefix="etbridge_rt_") as tmp:
            with open(os.path.join(tmp, "model.yaml"), "w") as fh:
                fh.write(text)
            for f, a in files.items():
                np.save(os.path.join(tmp, f), a)
            np.save(os.path.join(tmp, "x.npy"), xs)
            np.save(os.path.join(tmp, "y.npy"), ys)
            np.save(os.path.join(tmp, "xn.npy"), xs_new)
            subprocess.run([ETRACED_DOUBLE, "run", "model.yaml", "--input", "x=x.npy",
                            "--target", "out=y.npy", "--learn", "on", "--out", "learned"],
                           cwd=tmp, check=True, capture_output=True, timeout=300)
            ebt.load(net, os.path.join(tmp, "learned"), ex0)
            # the engine's own forward with the learned weights, from the initial state
            text2, files2, _ = ebt.analyse(net, ex0)
            os.makedirs(os.path.join(tmp, "again"))
            with open(os.path.join(tmp, "again", "model.yaml"), "w") as fh:
                fh.write(text2)
            for f, a in files2.items():
                np.save(os.path.join(tmp, "again", f), a)
            learned = {f[:-4]: np.load(os.path.join(tmp, "learned", "params", f))
                       for f in os.listdir(os.path.join(tmp, "learned", "params"))}
            same = max(rel_err(files2[k + ".npy"], v) for k, v in learned.items())
            chk.check(f"{label} run-dir import == etraced's params", same, 1e-15)
            subprocess.run([ETRACED_DOUBLE, "run", "model.yaml", "--input", "x=../xn.npy",
                            "--learn", "off", "--out", "fwd"], cwd=os.path.join(tmp, "again"),
                           check=True, capture_output=True, timeout=300)
            eng = np.load(os.path.join(tmp, "again", "fwd", "outputs", "out.npy"))
        new_out = bt_forward(net, xs_new)
    chk.check(f"{label} run-dir round trip outputs", rel_err(new_out, eng), 1e-10)


rng = np.random.RandomState(21)
T = 150
daemon_roundtrip("GRU_Net", lambda: GRU_Net(3, 6, 2, 2), rng.randn(T, 3),
                 np.sin(np.arange(T)[:, None] / 5.0 + np.array([0.0, 1.0])), rng.randn(50, 3),
                 ETRACED_FLOAT, 1e-4)
sp = lambda n, p, t: (rng.rand(t, n) < p).astype(np.float64)  # noqa: E731
lif = lambda: LIF_Delta_Net(10, 10, rec_scale=3., ff_scale=6.)  # noqa: E731
daemon_roundtrip("LIF_Delta_Net", lif, sp(10, 0.2, T), sp(10, 0.2, T), sp(10, 0.2, 50),
                 ETRACED_DOUBLE, 1e-10)
run_dir_roundtrip("LIF_Delta_Net", lif, sp(10, 0.2, T), sp(10, 0.2, T), sp(10, 0.2, 50))
chk.done()

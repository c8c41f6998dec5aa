"""Shared by the bridge tests: the Key Concepts models, braintrace's own online gradients
(IODimVjpAlgorithm / ParamDimVjpAlgorithm) and outputs on a sequence, and the same sequence
through `etraced run --learn accumulate` on the exported model.

Every test is a plain script: it prints one `agree ...` line per comparison and exits
non-zero on any failure. ETRACE_BUILD (default build) is the float build; ETRACED_DOUBLE
(default BUILD/double/etraced) the double build."""
import os
import subprocess
import sys
import tempfile

import jax

jax.config.update("jax_enable_x64", True)

import brainpy  # noqa: E402
import brainstate  # noqa: E402
import braintools  # noqa: E402
import braintrace  # noqa: E402
import brainunit as u  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))
import etrace.braintrace as ebt  # noqa: E402

BUILD = os.path.abspath(os.environ.get("ETRACE_BUILD", os.path.join(REPO, "build")))
ETRACED_FLOAT = os.path.join(BUILD, "etraced")
ETRACED_DOUBLE = os.path.abspath(os.environ.get("ETRACED_DOUBLE",
                                                os.path.join(BUILD, "double", "etraced")))
DT = 0.1 * u.ms
# brainstate's own precision switch (it sets jax_enable_x64 itself; float32 otherwise)
brainstate.environ.set(precision=64)
# brainevent's sparse kernels default to numba, which the venv does not carry
import brainevent  # noqa: E402
brainevent.config.set_backend("cpu", "jax_raw")


class LIF_Delta_Net(brainstate.nn.Module):
    """braintrace's Key Concepts page, section 2, as printed there."""

    def __init__(self, n_in, n_rec, tau_mem=5. * u.ms, V_th=1. * u.mV,
                 spk_fun=braintools.surrogate.ReluGrad(), spk_reset='soft', rec_scale=1.,
                 ff_scale=1.):
        super().__init__()
        self.neu = brainpy.state.LIF(n_rec, tau=tau_mem, spk_fun=spk_fun,
                                     spk_reset=spk_reset, V_th=V_th)
        rec_init = braintools.init.KaimingNormal(rec_scale, unit=u.mV)
        ff_init = braintools.init.KaimingNormal(ff_scale, unit=u.mV)
        w_init = u.math.concatenate([ff_init([n_in, n_rec]), rec_init([n_rec, n_rec])], axis=0)
        self.syn = brainpy.state.DeltaProj(
            comm=braintrace.nn.Linear(n_in + n_rec, n_rec, w_init=w_init,
                                      b_init=braintools.init.ZeroInit(unit=u.mV)),
            post=self.neu)

    def update(self, spk):
        inp = u.math.concatenate([spk, self.neu.get_spike()], axis=-1)
        self.syn(inp)
        self.neu()
        return self.neu.get_spike()


class GRU_Net(brainstate.nn.Module):
    """braintrace's Key Concepts page, section 2, as printed there."""

    def __init__(self, n_in, n_rec, n_out, n_layer):
        super().__init__()
        self.layers = []
        for _ in range(n_layer - 1):
            self.layers.append(braintrace.nn.GRUCell(n_in, n_rec))
            n_in = n_rec
        self.layers.append(braintrace.nn.GRUCell(n_in, n_out))

    def update(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def to_f64(net):
    """Parameters in float64 (initialisers give float32 even with x64 on), so that the
    double build is compared with braintrace at the same precision."""
    for st in net.states(brainstate.ParamState).values():
        st.value = jax.tree.map(lambda a: a.astype(jnp.float64), st.value)


def bt_run(net, algo, decay, xs, ys):
    """Outputs [T, n] and the summed online gradients {ParamState path: value} of
    braintrace's own algorithm, loss mean((out - y)^2) every tick (etraced's mse)."""
    cls = {"es_d_rtrl": braintrace.IODimVjpAlgorithm,
           "d_rtrl": braintrace.ParamDimVjpAlgorithm}[algo]
    kw = {"decay_or_rank": decay} if algo == "es_d_rtrl" else {}
    learner = braintrace.compile(net, cls, jnp.asarray(xs[0]), **kw)

    def step(x, y):
        out = learner(x)
        return jnp.mean((out - y) ** 2), out

    grads, _, outs = learner.etrace_grad(jnp.asarray(xs), jnp.asarray(ys), step_fn=step,
                                         has_aux=True, return_value=True, reduction="sum")
    return np.asarray(outs, np.float64), grads


def bt_grad_of(grads, info):
    """braintrace's gradient of one exported projection as {'weight', 'bias'} arrays."""
    path = tuple(info["path"]) + (("W",) if info["readout"] else ("weight",))
    g = grads[path]
    if info["readout"]:
        return {"weight": np.asarray(u.get_mantissa(g), np.float64)}
    return {k: np.asarray(u.get_mantissa(v), np.float64) for k, v in g.items()}


def etraced_run(etraced, text, files, xs, ys, algo, decay, out):
    """`etraced run --learn accumulate` on the exported model; returns (outputs, grads)."""
    os.makedirs(out, exist_ok=True)
    learning = (f"learning: {{algorithm: {algo}"
                + (f", decay_or_rank: {decay!r}" if algo == "es_d_rtrl" else "")
                + ", signal: target, loss: mse}\n")
    with open(os.path.join(out, "model.yaml"), "w") as fh:
        fh.write(text + learning)
    for f, a in files.items():
        np.save(os.path.join(out, f), a)
    np.save(os.path.join(out, "in.npy"), np.asarray(xs, np.float64))
    np.save(os.path.join(out, "target.npy"), np.asarray(ys, np.float64))
    p = subprocess.run([etraced, "run", "model.yaml", "--input", "x=in.npy", "--target",
                        "out=target.npy", "--learn", "accumulate", "--out", "run"],
                       cwd=out, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"etraced run failed: {p.stderr.strip()}")
    outs = np.load(os.path.join(out, "run", "outputs", "out.npy")).astype(np.float64)
    grads = {}
    gdir = os.path.join(out, "run", "grads")
    for f in sorted(os.listdir(gdir)) if os.path.isdir(gdir) else []:
        proj, what, _ = f.rsplit(".", 2)
        grads.setdefault(proj, {})[what] = np.load(os.path.join(gdir, f))
    return outs, grads


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b), initial=0.0) / max(float(np.max(np.abs(b), initial=0.0)), 1e-12))


class Checker:
    def __init__(self):
        self.failed = 0

    def check(self, label, err, tol):
        ok = err <= tol
        self.failed += not ok
        print(f"agree {label}: rel err {err:.2e} (tol {tol:.0e}) {'ok' if ok else 'FAILED'}",
              flush=True)

    def expect(self, label, cond, detail=""):
        self.failed += not cond
        print(f"{'ok' if cond else 'FAILED'} {label} {detail}", flush=True)

    def done(self):
        sys.exit(1 if self.failed else 0)


def compare_module(chk, label, factory, xs, ys, algos=(("es_d_rtrl", 0.9), ("d_rtrl", None))):
    """For each algorithm: a fresh module from factory() (same seed -> same weights),
    exported, run by braintrace and by both etraced builds on (xs, ys). Every learning
    projection's braintrace gradient must be non-zero (so the comparison means something);
    frozen ones (braintrace leaves them out of ETP) must be zero in both."""
    for algo, decay in algos:
        with brainstate.environ.context(dt=DT):
            brainstate.random.seed(42)
            net = factory()
            brainstate.nn.init_all_states(net)
            to_f64(net)
            text, files, params = ebt.analyse(net, jnp.asarray(xs[0]))
            bt_out, bt_g = bt_run(net, algo, decay, xs, ys)
        chk.expect(f"{label} {algo} outputs vary", float(np.std(bt_out)) > 0,
                   f"(mean {np.mean(bt_out):.3f})")
        with tempfile.TemporaryDirectory(prefix="etbridge_") as tmp:
            for build, etraced, tol in (("double", ETRACED_DOUBLE, 1e-10),
                                        ("float", ETRACED_FLOAT, 1e-4)):
                outs, grads = etraced_run(etraced, text, files, xs, ys, algo, decay,
                                          os.path.join(tmp, build))
                chk.check(f"{label} {algo} {build} outputs", rel_err(outs, bt_out), tol)
                for pname, info in params.items():
                    ref = bt_grad_of(bt_g, info)
                    for what, r in ref.items():
                        mine = grads.get(pname, {}).get(what)
                        if mine is None:
                            mine = np.zeros_like(r)
                        if build == "double" and info["learn"] != "frozen":
                            chk.expect(f"{label} {algo} {pname}.{what} gradient non-zero",
                                       bool(np.any(r != 0)))
                        chk.check(f"{label} {algo} {build} grad {pname}.{what}",
                                  rel_err(mine, r), tol)

#!/usr/bin/python3
"""The offline command line of DESIGN §6 against the real binary.

Usage: offline-cli.py ETRACED [unittest args]

`etraced run`: --ticks, --learn on|off|accumulate, mse and cross_entropy targets,
--reward with a policy readout, the output files table (names, dtypes, shapes) and
the exit codes of the Conventions (1 invalid input naming the file, 64 usage).
`etraced compile`: --json's keys and types for every model in models/*.yaml,
elemwise rule d_rtrl, hybrid costs, the within-tick path warning and --expand.

Every model is written as text into a temporary directory, removed at the end.
Exits non-zero on any failure.
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

ETRACED = None
TMP = None
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "models")
REAL = None  # np.float32 or np.float64, from `compile --json`'s "real" (float by default)

EX_INVALID = 1
EX_USAGE = 64

# ---- model text ----------------------------------------------------------------------

# Every op and parameter kind: an elemwise gain with a bias, a dense projection with a
# bias, a sparse recurrent one, a frozen one, a dense readout with a bias. w_gain and
# w_out start from files, so their initial values are known independently of the binary.
BASE_MODEL = """\
name: offline_base
dt: 1.0e-3
seed: 3
inputs:
  - {name: x, size: 3, kind: analog}
cells:
  - name: gain
    model: linear
    size: 3
  - name: hidden
    model: rnn_tanh
    size: 5
  - name: out
    model: leaky_readout
    size: %(out_size)d
    params: {tau: 5.0e-3}
projections:
  - name: w_gain
    from: x
    to: gain
    op: elemwise
    weight: {file: w_gain.npy}
    bias: {init: zeros}
  - name: w_in
    from: [gain, hidden]
    to: hidden
    weight: {init: xavier_uniform}
    bias: {init: constant, value: 0.1}
  - name: w_rec
    from: hidden
    to: hidden
    op: sparse
    weight: {prob: 0.5, seed: 2, init: normal, mean: 0.0, std: 0.3}
  - name: w_fix
    from: x
    to: out
    weight: {init: normal, mean: 0.0, std: 0.1}
    learn: frozen
  - name: w_out
    from: hidden
    to: out
    weight: {file: w_out.npy}
    bias: {init: zeros}
readouts:
  - {name: y, cell: out}
%(learning)s"""

LEARN_MSE = """\
learning:
  algorithm: es_d_rtrl
  decay_or_rank: 0.9
  signal: target
  loss: mse
  optimizer: {kind: sgd, lr: 0.05}
"""

LEARN_CE = """\
learning:
  algorithm: d_rtrl
  signal: target
  loss: cross_entropy
  optimizer: {kind: sgd, lr: 0.05}
"""

LEARN_REWARD = """\
learning:
  algorithm: d_rtrl
  signal: reward
  policy: {readout: y, kind: %s, sigma: 0.2}
  tau_e: 0.05
  tau_baseline: 0.5
  optimizer: {kind: sgd, lr: 0.05}
"""

LEARN_NONE_SIGNAL = """\
learning:
  algorithm: d_rtrl
  signal: none
  optimizer: {kind: sgd, lr: 0.05}
"""

# No inputs at all: a self-driven cell (a bias and its own previous output).
NO_INPUT_MODEL = """\
name: offline_noinput
dt: 1.0e-3
cells:
  - {name: h, model: rnn_tanh, size: 2}
projections:
  - {name: w, from: h, to: h, weight: {init: normal}, bias: {init: constant, value: 0.5}}
readouts:
  - {name: y, cell: h}
"""

# `out` is evaluated before `hidden`, so w_out reads hidden's previous-tick output and
# w_in has no within-tick path to the loss (DESIGN §4.1): compile must warn about w_in.
NO_PATH_MODEL = """\
name: offline_nopath
dt: 1.0e-3
seed: 1
inputs:
  - {name: x, size: 3}
cells:
  - {name: out, model: linear, size: 2}
  - {name: hidden, model: rnn_tanh, size: 4}
projections:
  - {name: w_in, from: x, to: hidden, weight: {init: xavier_uniform}}
  - {name: w_out, from: hidden, to: out, weight: {init: xavier_uniform}}
readouts:
  - {name: y, cell: out}
learning:
  algorithm: d_rtrl
  signal: target
  optimizer: {kind: sgd, lr: 0.01}
"""

W_GAIN = np.array([1.0, -0.5, 2.0], dtype=np.float32)
W_OUT = (np.arange(15, dtype=np.float64).reshape(5, 3) - 7.0) / 10.0


def read_text(path):
    with open(path) as f:
        return f.read()


def run_etraced(*args, timeout=20):
    return subprocess.run([ETRACED] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout)


class Case(unittest.TestCase):
    """A fresh directory per test, under the suite's temporary directory."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix=self._testMethodName[:40] + "_", dir=TMP)
        self.n_out = 0

    def path(self, name):
        return os.path.join(self.dir, name)

    def write_text(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def write_npy(self, name, arr):
        p = self.path(name)
        np.save(p, arr)
        return p

    def base_model(self, learning=LEARN_MSE, out_size=2, name="base.yaml"):
        np.save(self.path("w_gain.npy"), W_GAIN)
        np.save(self.path("w_out.npy"), W_OUT[:, :out_size].copy())
        return self.write_text(name, BASE_MODEL % {"learning": learning, "out_size": out_size})

    def inputs(self, T, seed=0, name="x.npy"):
        rng = np.random.default_rng(seed)
        return self.write_npy(name, rng.uniform(0.0, 1.0, (T, 3)))

    def mse_targets(self, T, seed=1, name="t.npy", size=2):
        rng = np.random.default_rng(seed)
        return self.write_npy(name, rng.uniform(-1.0, 1.0, (T, size)))

    def new_out(self):
        self.n_out += 1
        return self.path("out%d" % self.n_out)

    def run_ok(self, *args):
        """Runs `etraced run ARGS --out NEW` and returns the out directory."""
        out = self.new_out()
        r = run_etraced("run", *args, "--out", out)
        self.assertEqual(r.returncode, 0, "etraced run %s failed (%d):\n%s%s" %
                         (" ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
        return out

    def run_fail(self, *args, rc=EX_INVALID, names=None):
        """Runs `etraced run ARGS --out NEW`, expects exit rc and stderr naming `names`."""
        out = self.new_out()
        r = run_etraced("run", *args, "--out", out)
        codes = rc if isinstance(rc, tuple) else (rc,)
        self.assertIn(r.returncode, codes, "etraced run %s: exit %d, expected %s; stderr:\n%s" %
                      (" ".join(map(str, args)), r.returncode, rc, r.stderr))
        self.assertTrue(r.stderr.strip(), "no message on stderr")
        if names is not None:
            self.assertIn(names, r.stderr, "stderr does not name %s:\n%s" % (names, r.stderr))
        return r

    def load(self, out, rel):
        p = os.path.join(out, rel)
        self.assertTrue(os.path.isfile(p), "%s was not written" % rel)
        return np.load(p, allow_pickle=False)

    def check_arr(self, out, rel, dtype, shape):
        a = self.load(out, rel)
        self.assertEqual(a.dtype, np.dtype(dtype), "%s: dtype %s, expected %s" %
                         (rel, a.dtype, np.dtype(dtype)))
        self.assertEqual(tuple(a.shape), tuple(shape), "%s: shape %s, expected %s" %
                         (rel, a.shape, tuple(shape)))
        self.assertTrue(a.flags.c_contiguous, "%s is not C order" % rel)
        return a

    def params(self, out):
        d = os.path.join(out, "params")
        self.assertTrue(os.path.isdir(d), "params/ was not written")
        return {f[:-4]: np.load(os.path.join(d, f)) for f in sorted(os.listdir(d))}

    def compile_json(self, model):
        r = run_etraced("compile", model, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)


def proj_info(case, model):
    return {p["name"]: p for p in case.compile_json(model)["projections"]}


# ---- etraced run: --ticks --------------------------------------------------------------


class RunTicks(Case):
    def test_ticks_takes_first_rows(self):
        m = self.base_model()
        x = self.inputs(20)
        full = self.run_ok(m, "--input", "x=" + x, "--learn", "off")
        part = self.run_ok(m, "--input", "x=" + x, "--learn", "off", "--ticks", 7)
        xs = self.write_npy("x7.npy", np.load(x)[:7])
        trunc = self.run_ok(m, "--input", "x=" + xs, "--learn", "off")
        o_full = self.load(full, "outputs/y.npy")
        o_part = self.load(part, "outputs/y.npy")
        self.assertEqual(o_full.shape[0], 20)
        self.assertEqual(o_part.shape[0], 7)
        self.assertEqual(self.load(part, "loss.npy").shape, (7,))
        np.testing.assert_array_equal(o_part, o_full[:7])
        np.testing.assert_array_equal(o_part, self.load(trunc, "outputs/y.npy"))

    def test_default_ticks_is_common_row_count(self):
        m = self.base_model()
        out = self.run_ok(m, "--input", "x=" + self.inputs(13), "--target",
                          "y=" + self.mse_targets(13))
        self.assertEqual(self.load(out, "outputs/y.npy").shape[0], 13)
        self.assertEqual(self.load(out, "loss.npy").shape, (13,))

    def test_ticks_more_than_input_rows_is_error_naming_file(self):
        m = self.base_model()
        x = self.inputs(20)
        self.run_fail(m, "--input", "x=" + x, "--ticks", 21, names=x)

    def test_ticks_more_than_target_rows_is_error_naming_file(self):
        m = self.base_model()
        t = self.mse_targets(10)
        self.run_fail(m, "--input", "x=" + self.inputs(20), "--target", "y=" + t, "--ticks", 15,
                      names=t)

    def test_ticks_more_than_reward_rows_is_error_naming_file(self):
        m = self.base_model(LEARN_REWARD % "softmax", out_size=3)
        rw = self.write_npy("r.npy", np.ones(5))
        self.run_fail(m, "--input", "x=" + self.inputs(20), "--reward", rw, "--ticks", 8,
                      names=rw)

    def test_differing_row_counts_need_ticks(self):
        m = self.base_model()
        x, t = self.inputs(20), self.mse_targets(15)
        r = self.run_fail(m, "--input", "x=" + x, "--target", "y=" + t, rc=(EX_INVALID, EX_USAGE))
        self.assertIn("--ticks", r.stderr)
        out = self.run_ok(m, "--input", "x=" + x, "--target", "y=" + t, "--ticks", 15)
        self.assertEqual(self.load(out, "loss.npy").shape, (15,))

    def test_no_files_need_ticks(self):
        m = self.write_text("noin.yaml", NO_INPUT_MODEL)
        r = self.run_fail(m, rc=(EX_INVALID, EX_USAGE))
        self.assertIn("--ticks", r.stderr)
        out = self.run_ok(m, "--ticks", 4)
        self.check_arr(out, "outputs/y.npy", REAL, (4, 2))
        self.check_arr(out, "loss.npy", np.float64, (4,))

    def test_missing_input_is_error(self):
        m = self.base_model()
        self.run_fail(m, "--ticks", 5, rc=(EX_INVALID, EX_USAGE))


# ---- etraced run: --learn ---------------------------------------------------------------


class RunLearn(Case):
    def setUp(self):
        super().setUp()
        self.model = self.base_model()
        self.x = self.inputs(40)
        self.t = self.mse_targets(40)
        self.initial = self.params(self.run_ok(self.model, "--input", "x=" + self.x,
                                               "--learn", "off", "--ticks", 0))

    def run_learn(self, mode, model=None):
        args = [model or self.model, "--input", "x=" + self.x, "--target", "y=" + self.t]
        if mode:
            args += ["--learn", mode]
        return self.run_ok(*args)

    def assert_params_equal(self, a, b, what):
        self.assertEqual(sorted(a), sorted(b), "%s: other parameter files" % what)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], "%s: %s differs" % (what, k))

    def test_initial_params_are_the_files(self):
        p = self.initial
        np.testing.assert_array_equal(p["w_gain.weight"], W_GAIN.astype(REAL))
        np.testing.assert_array_equal(p["w_out.weight"], W_OUT[:, :2].astype(REAL))
        np.testing.assert_array_equal(p["w_gain.bias"], np.zeros(3, REAL))
        np.testing.assert_array_equal(p["w_in.bias"], np.full(5, 0.1, REAL))

    def test_learn_off_keeps_params_and_writes_no_grads(self):
        out = self.run_learn("off")
        self.assert_params_equal(self.params(out), self.initial, "--learn off")
        self.assertFalse(os.path.exists(os.path.join(out, "grads")), "--learn off wrote grads/")
        self.assertTrue(np.all(self.load(out, "loss.npy") > 0), "a target tick had loss 0")

    def test_learn_on_changes_params(self):
        out = self.run_learn("on")
        p = self.params(out)
        for k in ("w_gain.weight", "w_gain.bias", "w_in.weight", "w_in.bias", "w_rec.weight",
                  "w_out.weight", "w_out.bias"):
            self.assertFalse(np.array_equal(p[k], self.initial[k]), "--learn on: %s unchanged" % k)
        np.testing.assert_array_equal(p["w_fix.weight"], self.initial["w_fix.weight"],
                                      "--learn on changed a frozen projection")
        np.testing.assert_array_equal(p["w_rec.indices"], self.initial["w_rec.indices"])
        np.testing.assert_array_equal(p["w_rec.indptr"], self.initial["w_rec.indptr"])
        self.assertTrue(os.path.isdir(os.path.join(out, "grads")), "--learn on wrote no grads/")

    def test_learn_default_is_on_with_learning(self):
        on = self.params(self.run_learn("on"))
        default = self.params(self.run_learn(None))
        self.assert_params_equal(default, on, "no --learn vs --learn on")

    def test_learn_accumulate_writes_grads_keeps_params(self):
        out = self.run_learn("accumulate")
        self.assert_params_equal(self.params(out), self.initial, "--learn accumulate")
        g = self.load(out, "grads/w_out.weight.npy")
        self.assertTrue(np.any(g != 0), "accumulated gradient of w_out is all zero")
        # accumulate does not change the weights, so the outputs and losses are --learn off's
        off = self.run_learn("off")
        np.testing.assert_array_equal(self.load(out, "outputs/y.npy"),
                                      self.load(off, "outputs/y.npy"))
        np.testing.assert_array_equal(self.load(out, "loss.npy"), self.load(off, "loss.npy"))

    def test_learn_without_learning_section_is_error(self):
        m = self.base_model(learning="", name="nolearn.yaml")
        for mode in ("on", "accumulate"):
            self.run_fail(m, "--input", "x=" + self.x, "--learn", mode, names=m)
        out = self.run_ok(m, "--input", "x=" + self.x, "--learn", "off")
        self.assert_params_equal(self.params(out), self.initial, "no learning:, --learn off")
        out = self.run_ok(m, "--input", "x=" + self.x)
        self.assert_params_equal(self.params(out), self.initial, "no learning:, default learn")
        self.assertFalse(os.path.exists(os.path.join(out, "grads")))

    def test_signal_none_writes_no_grads(self):
        m = self.base_model(learning=LEARN_NONE_SIGNAL, name="none.yaml")
        out = self.run_ok(m, "--input", "x=" + self.x, "--learn", "on")
        self.assertFalse(os.path.exists(os.path.join(out, "grads")), "signal: none wrote grads/")
        self.assert_params_equal(self.params(out), self.initial, "signal: none, --learn on")


# ---- etraced run: targets ---------------------------------------------------------------


class RunTargets(Case):
    def test_mse_all_nan_row_is_no_target(self):
        m = self.base_model()
        x = self.inputs(12)
        t = np.random.default_rng(5).uniform(-1, 1, (12, 2))
        t[[2, 5, 11]] = np.nan
        tp = self.write_npy("t.npy", t)
        out = self.run_ok(m, "--input", "x=" + x, "--target", "y=" + tp, "--learn", "accumulate")
        loss = self.check_arr(out, "loss.npy", np.float64, (12,))
        o = self.load(out, "outputs/y.npy").astype(np.float64)
        for i in range(12):
            if i in (2, 5, 11):
                self.assertEqual(loss[i], 0.0, "all-NaN row %d: loss %g" % (i, loss[i]))
            else:
                want = np.mean((o[i] - t[i]) ** 2)
                self.assertTrue(math.isclose(loss[i], want, rel_tol=1e-4, abs_tol=1e-7),
                                "tick %d: loss %g, mse of the outputs %g" % (i, loss[i], want))
        # all rows NaN: no target anywhere, so no gradient
        tp = self.write_npy("tn.npy", np.full((12, 2), np.nan))
        out = self.run_ok(m, "--input", "x=" + x, "--target", "y=" + tp, "--learn", "accumulate")
        np.testing.assert_array_equal(self.load(out, "loss.npy"), np.zeros(12))
        for f in sorted(os.listdir(os.path.join(out, "grads"))):
            g = np.load(os.path.join(out, "grads", f))
            self.assertTrue(np.all(g == 0), "no target at all, yet grads/%s is nonzero" % f)

    def test_mse_partly_nan_row_is_error_naming_file(self):
        m = self.base_model()
        t = np.random.default_rng(5).uniform(-1, 1, (12, 2))
        t[4, 1] = np.nan
        tp = self.write_npy("t.npy", t)
        self.run_fail(m, "--input", "x=" + self.inputs(12), "--target", "y=" + tp, names=tp)

    def test_mse_target_float32(self):
        m = self.base_model()
        x = self.inputs(6)
        t = np.random.default_rng(5).uniform(-1, 1, (6, 2))
        a = self.run_ok(m, "--input", "x=" + x, "--target", "y=" + self.write_npy("a.npy", t),
                        "--learn", "off")
        t32 = t.astype(np.float32)
        b = self.run_ok(m, "--input", "x=" + x, "--target", "y=" + self.write_npy("b.npy", t32),
                        "--learn", "off")
        self.assertTrue(np.all(self.load(b, "loss.npy") > 0))
        np.testing.assert_allclose(self.load(a, "loss.npy"), self.load(b, "loss.npy"), rtol=1e-4)

    def test_mse_target_wrong_width_is_error_naming_file(self):
        m = self.base_model()
        tp = self.write_npy("t.npy", np.zeros((6, 3)))
        self.run_fail(m, "--input", "x=" + self.inputs(6), "--target", "y=" + tp, names=tp)

    def ce_run(self, classes, learn="accumulate"):
        m = self.base_model(LEARN_CE, out_size=3)
        x = self.inputs(len(classes))
        cp = self.write_npy("c%d.npy" % self.n_out, classes)
        return self.run_ok(m, "--input", "x=" + x, "--target", "y=" + cp, "--learn", learn)

    def test_cross_entropy_class_indices_T_and_T1(self):
        c = np.array([0, 1, 2, -1, 2, 0, -1, 1, 1, -3], dtype=np.float64)
        a = self.ce_run(c)
        b = self.ce_run(c.reshape(-1, 1))
        la = self.check_arr(a, "loss.npy", np.float64, (10,))
        lb = self.check_arr(b, "loss.npy", np.float64, (10,))
        np.testing.assert_array_equal(la, lb, "[T] and [T, 1] class files differ")
        for k in os.listdir(os.path.join(a, "grads")):
            np.testing.assert_array_equal(np.load(os.path.join(a, "grads", k)),
                                          np.load(os.path.join(b, "grads", k)))
        o = self.load(a, "outputs/y.npy").astype(np.float64)
        for t, cls in enumerate(c):
            if cls < 0:
                self.assertEqual(la[t], 0.0, "negative class at tick %d: loss %g" % (t, la[t]))
            else:
                z = o[t] - o[t].max()
                want = -(z[int(cls)] - math.log(np.exp(z).sum()))
                self.assertTrue(math.isclose(la[t], want, rel_tol=1e-4, abs_tol=1e-6),
                                "tick %d class %d: loss %g, -log softmax %g" %
                                (t, cls, la[t], want))

    def test_cross_entropy_float32_classes(self):
        c = np.array([2, 0, -1, 1], dtype=np.float32)
        la = self.load(self.ce_run(c), "loss.npy")
        lb = self.load(self.ce_run(c.astype(np.float64)), "loss.npy")
        np.testing.assert_array_equal(la, lb)

    def test_cross_entropy_all_negative_is_no_target(self):
        out = self.ce_run(np.full(8, -1.0))
        np.testing.assert_array_equal(self.load(out, "loss.npy"), np.zeros(8))
        for f in sorted(os.listdir(os.path.join(out, "grads"))):
            g = np.load(os.path.join(out, "grads", f))
            self.assertTrue(np.all(g == 0), "no class at all, yet grads/%s is nonzero" % f)

    def test_cross_entropy_bad_class_is_error_naming_file(self):
        m = self.base_model(LEARN_CE, out_size=3)
        x = self.inputs(4)
        for bad in ([0, 1, 3, 0], [0, 1.5, 1, 0]):
            cp = self.write_npy("bad%d.npy" % self.n_out, np.array(bad, dtype=np.float64))
            self.run_fail(m, "--input", "x=" + x, "--target", "y=" + cp, names=cp)
        cp = self.write_npy("wide.npy", np.zeros((4, 3)))
        self.run_fail(m, "--input", "x=" + x, "--target", "y=" + cp, names=cp)


# ---- etraced run: --reward ---------------------------------------------------------------


class RunReward(Case):
    def reward_run(self, kind, learn="on", T=30):
        m = self.base_model(LEARN_REWARD % kind, out_size=3, name=kind + ".yaml")
        x = self.inputs(T)
        r = np.random.default_rng(9).normal(0.0, 1.0, T)
        r[::4] = 0.0
        rp = self.write_npy("r.npy", r)
        return r, self.run_ok(m, "--input", "x=" + x, "--reward", rp, "--learn", learn)

    def test_softmax_action_and_loss_is_reward(self):
        r, out = self.reward_run("softmax")
        T = len(r)
        o = self.check_arr(out, "outputs/y.npy", REAL, (T, 3))
        a = self.check_arr(out, "outputs/y.action.npy", REAL, (T,))
        self.assertTrue(np.all(np.isin(a, [0, 1, 2])), "softmax actions are not classes: %s" % a)
        loss = self.check_arr(out, "loss.npy", np.float64, (T,))
        np.testing.assert_array_equal(loss, r, "loss.npy is not r^t")
        self.assertEqual(o.shape, (T, 3))
        self.assertTrue(os.path.isfile(os.path.join(out, "grads", "w_out.weight.npy")))

    def test_gaussian_action_and_loss_is_reward(self):
        r, out = self.reward_run("gaussian")
        T = len(r)
        o = self.check_arr(out, "outputs/y.npy", REAL, (T, 3))
        a = self.check_arr(out, "outputs/y.action.npy", REAL, (T, 3))
        self.assertTrue(np.any(a != o), "gaussian actions with learning on equal the mean")
        loss = self.check_arr(out, "loss.npy", np.float64, (T,))
        np.testing.assert_array_equal(loss, r, "loss.npy is not r^t")

    def test_learn_off_actions_are_greedy(self):
        _, out = self.reward_run("softmax", learn="off")
        o = self.load(out, "outputs/y.npy")
        a = self.load(out, "outputs/y.action.npy")
        np.testing.assert_array_equal(a, np.argmax(o, axis=1).astype(a.dtype))
        _, out = self.reward_run("gaussian", learn="off")
        np.testing.assert_array_equal(self.load(out, "outputs/y.action.npy"),
                                      self.load(out, "outputs/y.npy"))

    def test_terminal_ends_the_episode(self):
        """--terminal F.npy: the flagged tick ends its episode (e and xi zeroed after it), so
        the actions match a run without flags up to that tick and differ after it."""
        m = self.base_model(LEARN_REWARD % "gaussian", out_size=3, name="term.yaml")
        T = 30
        x = self.inputs(T)
        rp = self.write_npy("r.npy", np.random.default_rng(9).normal(0.0, 1.0, T))
        flags = np.zeros(T)
        flags[12] = 1.0
        tp = self.write_npy("t.npy", flags)
        plain = self.run_ok(m, "--input", "x=" + x, "--reward", rp)
        term = self.run_ok(m, "--input", "x=" + x, "--reward", rp, "--terminal", tp)
        a0 = self.load(plain, "outputs/y.action.npy")
        a1 = self.load(term, "outputs/y.action.npy")
        np.testing.assert_array_equal(a0[:13], a1[:13])
        self.assertTrue(np.all(a0[13] != a1[13]), "xi was not zeroed after the terminal tick")
        self.run_fail(m, "--input", "x=" + x, "--reward", rp, "--terminal",
                      self.write_npy("t2.npy", np.zeros((T, 2))), names="t2.npy")
        mt = self.base_model(LEARN_MSE, name="target.yaml")
        self.run_fail(mt, "--input", "x=" + x, "--terminal", tp, names="signal: reward")

    def test_reward_wrong_shape_is_error_naming_file(self):
        m = self.base_model(LEARN_REWARD % "softmax", out_size=3)
        rp = self.write_npy("r2.npy", np.zeros((6, 2)))
        self.run_fail(m, "--input", "x=" + self.inputs(6), "--reward", rp, names=rp)


# ---- etraced run: the output files table -------------------------------------------------


class RunFiles(Case):
    def test_output_files_dtypes_and_shapes(self):
        m = self.base_model()
        T = 9
        info = proj_info(self, m)
        nnz = info["w_rec"]["nnz"]
        self.assertTrue(0 < nnz < 25, "w_rec nnz %d" % nnz)
        out = self.run_ok(m, "--input", "x=" + self.inputs(T), "--target",
                          "y=" + self.mse_targets(T), "--learn", "on")
        self.check_arr(out, "outputs/y.npy", REAL, (T, 2))
        self.check_arr(out, "loss.npy", np.float64, (T,))
        self.assertFalse(os.path.exists(os.path.join(out, "outputs", "y.action.npy")),
                         "an action file without signal: reward")
        shapes = {  # parameter -> shape
            "w_gain.weight": (3,), "w_gain.bias": (3,),
            "w_in.weight": (8, 5), "w_in.bias": (5,),
            "w_rec.weight": (nnz,),
            "w_fix.weight": (3, 2),
            "w_out.weight": (5, 2), "w_out.bias": (2,),
        }
        for k, s in shapes.items():
            self.check_arr(out, "params/%s.npy" % k, REAL, s)
            if not k.startswith("w_fix."):
                g = self.check_arr(out, "grads/%s.npy" % k, np.float64, s)
                self.assertTrue(np.all(np.isfinite(g)), "grads/%s is not finite" % k)
        self.assertFalse([f for f in os.listdir(os.path.join(out, "grads"))
                          if f.startswith("w_fix.")], "grads/ for a frozen projection")
        ind = self.check_arr(out, "params/w_rec.indices.npy", np.int64, (nnz,))
        ptr = self.check_arr(out, "params/w_rec.indptr.npy", np.int64, (5 + 1,))
        self.assertEqual(ptr[0], 0)
        self.assertEqual(ptr[-1], nnz)
        self.assertTrue(np.all(np.diff(ptr) >= 0), "indptr decreases")
        for i in range(5):
            row = ind[ptr[i]:ptr[i + 1]]
            self.assertTrue(np.all(np.diff(row) > 0), "row %d indices not increasing" % i)
            self.assertTrue(np.all((row >= 0) & (row < 5)), "row %d index out of range" % i)
        for p in info.values():
            self.assertIn(p["op"], ("dense", "sparse", "elemwise"))

    def test_params_reimport(self):
        """The written params/ (sparse in CSR form) load back as the model's weights."""
        m = self.base_model()
        x = self.inputs(10)
        out = self.run_ok(m, "--input", "x=" + x, "--target", "y=" + self.mse_targets(10))
        pd = os.path.join(out, "params")
        text = read_text(m)
        text = text.replace("weight: {prob: 0.5, seed: 2, init: normal, mean: 0.0, std: 0.3}",
                            "weight: {file: %s/w_rec.weight.npy, indices: %s/w_rec.indices.npy, "
                            "indptr: %s/w_rec.indptr.npy}" % (pd, pd, pd))
        text = text.replace("weight: {init: xavier_uniform}",
                            "weight: {file: %s/w_in.weight.npy}" % pd)
        text = text.replace("bias: {init: constant, value: 0.1}",
                            "bias: {file: %s/w_in.bias.npy}" % pd)
        text = text.replace("weight: {file: w_gain.npy}", "weight: {file: %s/w_gain.weight.npy}"
                            % pd).replace("weight: {file: w_out.npy}",
                                          "weight: {file: %s/w_out.weight.npy}" % pd)
        m2 = self.write_text("reimport.yaml", text)
        back = self.params(self.run_ok(m2, "--input", "x=" + x, "--learn", "off"))
        orig = self.params(out)
        for k in ("w_gain.weight", "w_in.weight", "w_in.bias", "w_rec.weight", "w_rec.indices",
                  "w_rec.indptr", "w_out.weight"):
            np.testing.assert_array_equal(back[k], orig[k], k)


# ---- etraced run: errors and usage -------------------------------------------------------


class RunErrors(Case):
    def test_input_wrong_shape_is_error_naming_file(self):
        m = self.base_model()
        for arr in (np.zeros((5, 4)), np.zeros(5), np.zeros((5, 3, 1))):
            p = self.write_npy("bad%d.npy" % self.n_out, arr)
            self.run_fail(m, "--input", "x=" + p, names=p)

    def test_input_wrong_dtype_is_error_naming_file(self):
        m = self.base_model()
        p = self.write_npy("int.npy", np.zeros((5, 3), dtype=np.int32))
        self.run_fail(m, "--input", "x=" + p, names=p)

    def test_input_not_npy_is_error_naming_file(self):
        m = self.base_model()
        p = self.write_text("junk.npy", "this is not an npy file\n")
        self.run_fail(m, "--input", "x=" + p, names=p)
        p = self.path("missing.npy")
        self.run_fail(m, "--input", "x=" + p, names=p)

    def test_unknown_input_name_is_error_naming_file(self):
        m = self.base_model()
        x = self.inputs(5)
        p = self.inputs(5, name="z.npy")
        self.run_fail(m, "--input", "x=" + x, "--input", "nosuch=" + p, names=p)

    def test_unknown_target_readout_is_error_naming_file(self):
        m = self.base_model()
        t = self.mse_targets(5)
        self.run_fail(m, "--input", "x=" + self.inputs(5), "--target", "nosuch=" + t, names=t)

    def test_bad_model_is_error_naming_file_line(self):
        m = self.write_text("bad.yaml", NO_INPUT_MODEL.replace("dt: 1.0e-3", "dt: 1.0e-3\nbogus: 1"))
        r = self.run_fail(m, "--ticks", 3, names=m)
        self.assertRegex(r.stderr, re.escape(m) + r":\d+:\d+:")
        r = run_etraced("compile", m)
        self.assertEqual(r.returncode, EX_INVALID)
        self.assertIn(m, r.stderr)
        missing = self.path("nosuch.yaml")
        self.run_fail(missing, "--ticks", 3, names=missing)

    def test_usage_errors_exit_64(self):
        m = self.base_model()
        x = self.inputs(5)
        self.run_fail(m, "--input", "x=" + x, "--bogus", rc=EX_USAGE)
        self.run_fail(m, "--input", "x=" + x, "--learn", "sometimes", rc=EX_USAGE)
        self.run_fail(m, "--input", "x=" + x, "--ticks", "many", rc=EX_USAGE)
        self.run_fail(m, "--input", "x=" + x, "--ticks", "-2", rc=EX_USAGE)
        self.run_fail(m, "--input", "x" + x, rc=EX_USAGE)
        self.run_fail("--input", "x=" + x, rc=EX_USAGE)  # no MODEL
        r = run_etraced("run", m, "--input", "x=" + x)  # no --out
        self.assertEqual(r.returncode, EX_USAGE, r.stderr)
        self.assertIn("--out", r.stderr)
        r = run_etraced("run", m, "--input", "x=" + x, "--out")  # --out without DIR
        self.assertEqual(r.returncode, EX_USAGE, r.stderr)
        r = run_etraced("compile", m, "--bogus")
        self.assertEqual(r.returncode, EX_USAGE, r.stderr)
        r = run_etraced("compile")
        self.assertEqual(r.returncode, EX_USAGE, r.stderr)


# ---- etraced compile ---------------------------------------------------------------------


class Compile(Case):
    RULES = ("frozen", "instant", "d_rtrl", "es_d_rtrl")

    def check_report(self, rep, where):
        for key, typ in (("model", str), ("dt", (int, float)), ("cells", list),
                         ("projections", list), ("resident_bytes", int)):
            self.assertIn(key, rep, "%s: no key %s" % (where, key))
            self.assertIsInstance(rep[key], typ, "%s: %s is %r" % (where, key, rep[key]))
        self.assertGreater(rep["dt"], 0)
        self.assertGreater(rep["resident_bytes"], 0)
        self.assertTrue(rep["cells"], "%s: no cells" % where)
        for p in rep["projections"]:
            self.assertIsInstance(p, dict)
            for key, typ in (("name", str), ("op", str), ("shape", list), ("nnz", int),
                             ("rule", str), ("trace_bytes", int), ("reaches_loss", bool)):
                self.assertIn(key, p, "%s: projection without %s: %s" % (where, key, p))
                self.assertIsInstance(p[key], typ, "%s: %s: %s is %r" %
                                      (where, p.get("name"), key, p[key]))
            self.assertIn(p["op"], ("dense", "sparse", "elemwise"))
            self.assertIn(p["rule"], self.RULES)
            self.assertEqual(len(p["shape"]), 2)
            self.assertTrue(all(isinstance(n, int) and n > 0 for n in p["shape"]))
            I, O = p["shape"]
            if p["op"] == "dense":
                self.assertEqual(p["nnz"], I * O, "%s: %s" % (where, p))
            elif p["op"] == "elemwise":
                self.assertEqual(p["nnz"], O, "%s: %s" % (where, p))
                self.assertEqual(p["rule"], "d_rtrl", "%s: elemwise %s" % (where, p))
            else:
                self.assertTrue(0 <= p["nnz"] <= I * O, "%s: %s" % (where, p))
            self.assertGreaterEqual(p["trace_bytes"], 0)

    def test_json_every_shipped_model(self):
        models = sorted(f for f in os.listdir(MODELS) if f.endswith(".yaml"))
        self.assertTrue(models, "no models/*.yaml")
        for f in models:
            r = run_etraced("compile", os.path.join(MODELS, f), "--json")
            self.assertEqual(r.returncode, 0, "%s: %s" % (f, r.stderr))
            rep = json.loads(r.stdout)  # one object, nothing else on stdout
            self.assertIsInstance(rep, dict)
            self.check_report(rep, f)
            m = re.search(r"^name:\s*(\S+)", read_text(os.path.join(MODELS, f)), re.M)
            self.assertEqual(rep["model"], m.group(1), f)
            self.assertGreater(len(rep["projections"]), 0, f)

    def test_json_base_model_rules(self):
        m = self.base_model()
        rep = self.compile_json(m)
        self.check_report(rep, "base")
        self.assertEqual(rep["model"], "offline_base")
        self.assertAlmostEqual(rep["dt"], 1.0e-3)
        self.assertEqual(len(rep["cells"]), 3)
        p = {q["name"]: q for q in rep["projections"]}
        self.assertEqual([q["name"] for q in rep["projections"]],
                         ["w_gain", "w_in", "w_rec", "w_fix", "w_out"])
        self.assertEqual(p["w_gain"]["rule"], "d_rtrl", "elemwise under es_d_rtrl")
        self.assertEqual(p["w_gain"]["op"], "elemwise")
        self.assertEqual(p["w_in"]["rule"], "es_d_rtrl")
        self.assertEqual(p["w_rec"]["op"], "sparse")
        self.assertEqual(p["w_fix"]["rule"], "frozen")
        self.assertEqual(p["w_fix"]["trace_bytes"], 0)
        self.assertEqual(p["w_in"]["shape"], [8, 5])
        self.assertEqual(p["w_gain"]["shape"], [3, 3])
        for q in ("w_gain", "w_in", "w_rec", "w_out"):
            self.assertTrue(p[q]["reaches_loss"], q)
        # the text report prints the same and no path warning
        r = run_etraced("compile", m)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("warning", (r.stdout + r.stderr).lower())
        for q in p:
            self.assertIn(q, r.stdout)

    def test_hybrid_shows_both_costs(self):
        m = os.path.join(MODELS, "lstm.yaml")
        rep = self.compile_json(m)
        budget = int(re.search(r"hybrid_budget:\s*(\d+)", read_text(m)).group(1))
        K = {c["name"]: c.get("K") for c in rep["cells"]}
        r = run_etraced("compile", m)
        self.assertEqual(r.returncode, 0, r.stderr)
        text = r.stdout
        blocks = {}
        cur = None
        for line in text.splitlines():
            words = line.split()
            if words and any(words[0] == p["name"] for p in rep["projections"]):
                cur = words[0]
                blocks[cur] = ""
            if cur:
                blocks[cur] += line + "\n"
        to_cell = {"w_gates": "hidden", "w_out": "out"}
        for p in rep["projections"]:
            I, O = p["shape"]
            k = K[to_cell[p["name"]]]
            self.assertIsNotNone(k, "cells carry no K")
            cost_d, cost_es = k * p["nnz"], budget * (I + k * O)
            blk = blocks.get(p["name"], "")
            self.assertIn(str(cost_d), blk, "%s: D-RTRL cost %d not in\n%s" %
                          (p["name"], cost_d, text))
            self.assertIn(str(cost_es), blk, "%s: ES cost %d not in\n%s" %
                          (p["name"], cost_es, text))
            self.assertEqual(p["rule"], "d_rtrl" if cost_d <= cost_es else "es_d_rtrl",
                             p["name"])
        # the shipped lstm is chosen so that the two projections get different rules
        self.assertEqual(sorted(p["rule"] for p in rep["projections"]), ["d_rtrl", "es_d_rtrl"])

    def test_no_within_tick_path_warns(self):
        m = self.write_text("nopath.yaml", NO_PATH_MODEL)
        rep = self.compile_json(m)
        p = {q["name"]: q for q in rep["projections"]}
        self.assertFalse(p["w_in"]["reaches_loss"], "w_in reaches the loss within the tick?")
        self.assertTrue(p["w_out"]["reaches_loss"])
        r = run_etraced("compile", m)
        self.assertEqual(r.returncode, 0, r.stderr)
        both = r.stdout + r.stderr
        self.assertIn("warning", both.lower(), "no warning:\n" + both)
        warn = [ln for ln in both.splitlines() if "warning" in ln.lower()]
        self.assertEqual(len(warn), 1, "expected one warning (w_in):\n" + both)
        # the warning belongs to w_in: it comes after w_in's line and before w_out's
        i_in, i_out = both.find("w_in"), both.find("w_out")
        i_w = both.lower().find("warning")
        self.assertTrue(0 <= i_in < i_w < i_out, "the warning is not w_in's:\n" + both)

    def test_expand_prints_equations(self):
        m = os.path.join(MODELS, "lif.yaml")
        plain = run_etraced("compile", m)
        r = run_etraced("compile", m, "--expand")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("exp(-dt / tau)", plain.stdout, "equations without --expand")
        self.assertIn("v_rest + r * i + (v_r - v_rest - r * i) * exp(-dt / tau) + delta",
                      r.stdout, "lif's update: not in\n" + r.stdout)
        self.assertIn("spike((v - v_th) / (v_th - v_reset))", r.stdout)
        self.assertIn("o * exp(-dt / tau) + y", r.stdout, "leaky_readout's update")
        # a custom cell's own text is printed too
        custom = NO_INPUT_MODEL.replace(
            "  - {name: h, model: rnn_tanh, size: 2}",
            "  - name: h\n    model: custom\n    size: 2\n    states: {q: 0.25}\n"
            "    slots: [y]\n    update: {q: q * 0.5 + tanh(y)}\n    output: q")
        cm = self.write_text("custom.yaml", custom)
        r = run_etraced("compile", cm, "--expand")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("q * 0.5 + tanh(y)", r.stdout)


def main():
    global ETRACED, TMP, REAL
    if len(sys.argv) < 2:
        print("usage: offline-cli.py ETRACED [unittest args]", file=sys.stderr)
        return 64
    ETRACED = os.path.abspath(sys.argv[1])
    if not os.access(ETRACED, os.X_OK):
        print("offline-cli: %s is not executable" % ETRACED, file=sys.stderr)
        return 1
    TMP = tempfile.mkdtemp(prefix="etraced_offline_cli_")
    try:
        r = run_etraced("compile", os.path.join(MODELS, "linear.yaml"), "--json")
        real = json.loads(r.stdout).get("real", "float") if r.returncode == 0 else "float"
        REAL = np.float64 if real == "double" else np.float32
        prog = unittest.main(argv=[sys.argv[0]] + sys.argv[2:], verbosity=2, exit=False)
        res = prog.result
        n_bad = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
        print("offline-cli: %d passed, %d failed" % (res.testsRun - n_bad, n_bad))
        return 0 if res.wasSuccessful() else 1
    finally:
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

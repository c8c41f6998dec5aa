#!/usr/bin/python3
"""robot: a simulated plant in closed loop with etraced (DESIGN: "robot controllers at a
fixed rate"). The plant streams its sensors to the daemon and applies the daemon's
output as its action, one daemon tick per control period (dt = 20 ms of plant time).

  phase 1  cart-pole, teacher drives: an LQR controller (with exploration noise) pushes
           the cart; its clean action is streamed as the target, and the daemon learns
           online (ES-D-RTRL, Adam) to imitate it.
  phase 2  cart-pole, the teacher stops: learning off, the learned model alone balances
           the pole. Score: seconds balanced out of 10 (|angle| < 12 deg, |x| < 2.4 m),
           averaged over a fixed set of seeds; the zero-output controller is the baseline.
  phase 3  a 1-D point mass reaching targets, from a fresh model, reward only
           (three-factor REINFORCE with eligibility traces, gaussian policy): the reward
           is dense and shaped (the progress toward the target each tick, minus an effort
           cost). Score: mean distance to the target over an episode (lower is better),
           averaged over a fixed set of seeds; baseline: zero output.

Run (starts its own daemon in a temp dir; timer mode at 10x real time, about 2 minutes):
    /usr/bin/python3 clients/examples/robot.py
--clock lockstep runs it deterministically as fast as possible; --quick shortens it.
Writes OUT/robot.png (learning curves) and prints the scores; exits 1 when a learned
controller does not beat the zero-output controller.
"""
import math
import sys

import numpy as np

import example_util as eu

DT = 0.02
EVAL_SEEDS = list(range(100, 108))

# ---- cart-pole (Barto, Sutton and Anderson 1983; continuous force) -------------------
G, M_CART, M_POLE, HALF_LEN, F_MAX = 9.8, 1.0, 0.1, 0.5, 10.0
X_LIM, TH_LIM = 2.4, 12 * math.pi / 180


def cp_step(s, force):
    x, xd, th, thd = s
    total, pml = M_CART + M_POLE, M_POLE * HALF_LEN
    c, sn = math.cos(th), math.sin(th)
    temp = (force + pml * thd * thd * sn) / total
    thacc = (G * sn - c * temp) / (HALF_LEN * (4.0 / 3.0 - M_POLE * c * c / total))
    xacc = temp - pml * thacc * c / total
    return np.array([x + DT * xd, xd + DT * xacc, th + DT * thd, thd + DT * thacc])


def cp_failed(s):
    return abs(s[0]) > X_LIM or abs(s[2]) > TH_LIM


def lqr_gain():
    """Discrete LQR on the cart-pole linearised (finite differences) at the upright."""
    eps = 1e-5
    z = np.zeros(4)
    a = np.stack([(cp_step(z + eps * e, 0.0) - cp_step(z - eps * e, 0.0)) / (2 * eps)
                  for e in np.eye(4)], axis=1)
    b = ((cp_step(z, eps) - cp_step(z, -eps)) / (2 * eps)).reshape(4, 1)
    q, r = np.diag([1.0, 1.0, 10.0, 1.0]), np.array([[0.1]])
    p = q.copy()
    for _ in range(2000):
        k = np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
        p = q + a.T @ p @ (a - b @ k)
    return k[0]


K_LQR = lqr_gain()


def teacher(s):
    """The LQR action as a normalised force in [-1, 1]."""
    return float(np.clip(-K_LQR @ s / F_MAX, -1.0, 1.0))


def sensors(s):
    return [s[0] / X_LIM, s[1] / 2.0, s[2] / TH_LIM, s[3] / 2.0]


def cp_initial(rng):
    return rng.uniform(-0.05, 0.05, 4) * np.array([1.0, 1.0, 1.0, 1.0])


CARTPOLE_MODEL = """name: robot-cartpole
dt: 2.0e-2
seed: 11
inputs:
  - {name: sensors, size: 4}
cells:
  - {name: hidden, model: rnn_tanh, size: 32}
  - {name: out, model: linear, size: 1}
projections:
  - name: w_in
    from: sensors
    to: hidden
    weight: {init: kaiming_normal, scale: 1.0}
    bias: {init: zeros}
  - name: w_out
    from: [sensors, hidden]
    to: out
    weight: {init: normal, std: 0.01}
readouts:
  - {name: force, cell: out}
learning:
  algorithm: es_d_rtrl
  decay_or_rank: 0.5
  signal: target
  loss: mse
  optimizer: {kind: adam, lr: 3.0e-3}
"""


def cp_episode(policy, seed, steps=500):
    """Seconds balanced by `policy(state) -> force in [-1, 1]` from the seed's start."""
    rng = np.random.default_rng(seed)
    s = cp_initial(rng)
    for t in range(steps):
        s = cp_step(s, F_MAX * float(np.clip(policy(s), -1, 1)))
        if cp_failed(s):
            return (t + 1) * DT
    return steps * DT


def phase12(etrace, args):
    n_train = 12 if args.quick else 20
    print("phase 1: cart-pole, the LQR teacher drives (noise std 0.3), the daemon learns "
          "its action online; %d episodes of up to 10 s" % n_train)
    curve = []
    with eu.start_daemon(etrace, args, CARTPOLE_MODEL) as d:
        link = eu.Link(d, args.clock, "force")

        def learned(s):
            return link.tick({"sensors": sensors(s)}).values[0]

        link.c.learn(False)
        untrained = np.mean([cp_episode(learned, sd) for sd in EVAL_SEEDS])
        print("  the untrained model alone balances %.2f s" % untrained)
        link.c.learn(True)
        link.ticks = 0
        rng = np.random.default_rng(1)
        for ep in range(n_train):
            s = rng.uniform(-0.15, 0.15, 4)
            err, n = 0.0, 0
            for t in range(500):
                u_t = teacher(s)
                o = link.tick({"sensors": sensors(s)}, targets={"force": [u_t]},
                              reset=(t == 0))
                err += (o.values[0] - u_t) ** 2
                n += 1
                s = cp_step(s, F_MAX * float(np.clip(u_t + rng.normal(0, 0.3), -1, 1)))
                if cp_failed(s):
                    s = rng.uniform(-0.15, 0.15, 4)
            curve.append((link.ticks, err / n))
            print("  episode %2d  ticks %5d  imitation mse %.5f" % (ep + 1, link.ticks, err / n))
        ticks_learned = link.ticks
        link.c.learn(False)
        print("phase 2: the teacher stops; the learned model alone (learning off)")
        scores = {
            "untrained": untrained,
            "zero output": np.mean([cp_episode(lambda s: 0.0, sd) for sd in EVAL_SEEDS]),
            "LQR teacher": np.mean([cp_episode(teacher, sd) for sd in EVAL_SEEDS]),
            "learned": np.mean([cp_episode(learned, sd) for sd in EVAL_SEEDS]),
        }
        link.close()
    for k, v in scores.items():
        print("  %-12s balanced %.2f s of 10 (mean over seeds %d..%d)"
              % (k, v, EVAL_SEEDS[0], EVAL_SEEDS[-1]))
    return curve, scores, ticks_learned


# ---- phase 3: 1-D point mass, reward only ------------------------------------------
PM_FMAX, PM_DAMP, PM_STEPS = 4.0, 2.0, 150

POINTMASS_MODEL = """name: robot-pointmass
dt: 2.0e-2
seed: 12
inputs:
  - {name: sensors, size: 2}
cells:
  - {name: out, model: linear, size: 1}
projections:
  - name: w
    from: sensors
    to: out
    weight: {init: zeros}
readouts:
  - {name: force, cell: out}
learning:
  algorithm: d_rtrl
  signal: reward
  policy: {readout: force, kind: gaussian, sigma: 0.5, tau_explore: 2.0e-2}
  tau_e: 2.0e-2
  tau_baseline: 0.2
  optimizer: {kind: adam, lr: 4.0e-3}
"""


def pm_step(x, v, a):
    v = v + DT * (PM_FMAX * float(np.clip(a, -1, 1)) - PM_DAMP * v)
    return x + DT * v, v


def pm_target(rng):
    return rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0)


def pm_episode(policy, seed):
    """Mean |x - target| over one episode from x = 0 at rest."""
    rng = np.random.default_rng(seed)
    x, v, tgt, dist = 0.0, 0.0, pm_target(rng), 0.0
    for t in range(PM_STEPS):
        x, v = pm_step(x, v, policy(x - tgt, v, t))
        dist += abs(x - tgt)
    return dist / PM_STEPS


def phase3(etrace, args):
    n_train = 60 if args.quick else 100
    print("phase 3: point mass, reward only (gaussian policy, progress reward), fresh "
          "model; %d episodes of %d ticks" % (n_train, PM_STEPS))
    curve = []
    with eu.start_daemon(etrace, args, POINTMASS_MODEL) as d:
        link = eu.Link(d, args.clock, "force")

        def learned(e, v, t):
            return link.tick({"sensors": [e, v]}, reset=(t == 0)).action[0]

        link.c.learn(False)
        untrained = np.mean([pm_episode(learned, sd) for sd in EVAL_SEEDS])
        print("  the untrained model: mean distance %.3f" % untrained)
        link.c.learn(True)
        link.ticks = 0
        rng = np.random.default_rng(2)
        for ep in range(n_train):
            x, v, tgt = 0.0, 0.0, pm_target(rng)
            reward, dist = None, 0.0
            for t in range(PM_STEPS):
                e = x - tgt
                o = link.tick({"sensors": [e, v]}, reward=reward, reset=(t == 0))
                a = o.action[0]
                x, v = pm_step(x, v, a)
                # Dense, shaped: the progress toward the target this tick, less effort.
                reward = 20.0 * (abs(e) - abs(x - tgt)) - 0.01 * a * a
                dist += abs(x - tgt)
            curve.append((link.ticks, dist / PM_STEPS))
            if (ep + 1) % 10 == 0:
                print("  episode %3d  ticks %5d  mean distance %.3f (last 10: %.3f)"
                      % (ep + 1, link.ticks, dist / PM_STEPS,
                         np.mean([c[1] for c in curve[-10:]])))
        ticks_learned = link.ticks
        link.c.learn(False)  # the action is then the mean output: no exploration
        scores = {"untrained": untrained,
                  "zero output": np.mean([pm_episode(lambda e, v, t: 0.0, sd)
                                          for sd in EVAL_SEEDS]),
                  "PD (hand-tuned)": np.mean([pm_episode(lambda e, v, t: -2 * e - 0.5 * v, sd)
                                              for sd in EVAL_SEEDS]),
                  "learned": np.mean([pm_episode(learned, sd) for sd in EVAL_SEEDS])}
        w = link.c.export()["w.weight"].ravel()
        link.close()
    for k, v in scores.items():
        print("  %-16s mean distance %.3f (mean over seeds %d..%d)"
              % (k, v, EVAL_SEEDS[0], EVAL_SEEDS[-1]))
    print("  learned weights: force = %.3f * error + %.3f * velocity" % (w[0], w[1]))
    return curve, scores, ticks_learned


def main():
    ap = eu.options(__doc__.split("\n\n")[0], period_us=2000)
    args = ap.parse_args()
    etrace = eu.setup(args)
    c12, s12, t12 = phase12(etrace, args)
    c3, s3, t3 = phase3(etrace, args)
    ok12 = s12["learned"] > s12["zero output"] + 2.0
    ok3 = s3["learned"] < 0.5 * s3["zero output"]
    print("RESULT cart-pole seconds balanced (of 10): untrained %.2f, zero output %.2f -> "
          "learned %.2f (teacher %.2f) after %d learning ticks: %s"
          % (s12["untrained"], s12["zero output"], s12["learned"], s12["LQR teacher"], t12,
             "PASS" if ok12 else "FAIL"))
    print("RESULT point mass mean distance: untrained %.3f, zero output %.3f -> learned %.3f "
          "after %d learning ticks: %s" % (s3["untrained"], s3["zero output"], s3["learned"],
                                           t3, "PASS" if ok3 else "FAIL"))
    if not args.no_plot:
        path = "%s/robot.png" % args.out
        eu.plot(path, [
            ("imitation mse", [("phase 1 (teacher drives)", [c[0] for c in c12],
                                [c[1] for c in c12])], "ticks", None),
            ("mean |x - target|", [("phase 3 (reward only)", [c[0] for c in c3],
                                    [c[1] for c in c3]),
                                   ("zero output", [c3[0][0], c3[-1][0]],
                                    [s3["zero output"]] * 2)], "ticks", None)],
            "robot: cart-pole (balances %.1f s, zero output %.1f s), point mass"
            % (s12["learned"], s12["zero output"]))
    return 0 if ok12 and ok3 else 1


if __name__ == "__main__":
    sys.exit(main())

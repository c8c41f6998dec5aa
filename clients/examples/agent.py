#!/usr/bin/python3
"""agent: a decision loop stepping the daemon once per observation and learning from
reward alone (DESIGN: "agent loops in lockstep").

The task is a contextual bandit: each observation is one of 4 contexts (one-hot); the
agent picks one of 4 arms with the daemon's softmax policy (the Output's action); the
arm that pays depends on the context (a fixed permutation). Reward +1 for the right arm,
-1 otherwise, delivered with the next observation (the daemon adds it to that tick's
sum: r for the action just taken). Episodes are 20 observations; at each episode
boundary the agent sends `reset states`. Chance is 25% correct (mean reward -0.5).
Passes when the last 10 episodes' online rate (actions sampled, still exploring) is at
least 80% and the greedy policy (learning off: argmax) is at least 95% correct.

Run (starts its own daemon in a temp dir; timer mode, period 1 ms, about 30 s):
    /usr/bin/python3 clients/examples/agent.py
--clock lockstep runs it deterministically as fast as possible; --quick shortens it.
Writes OUT/agent.png and prints the curve.
"""
import sys

import numpy as np

import example_util as eu

N_CTX, N_ARMS, EP_LEN = 4, 4, 20
PAYS = [2, 0, 3, 1]  # the arm that pays in each context
LR = 2.0e-3

MODEL = """name: agent-bandit
dt: 1.0e-3
seed: 31
inputs:
  - {name: context, size: 4}
cells:
  - {name: hidden, model: rnn_tanh, size: 16}
  - {name: out, model: linear, size: 4}
projections:
  - name: w_in
    from: context
    to: hidden
    weight: {init: kaiming_normal, scale: 1.0}
  - name: w_out
    from: hidden
    to: out
    weight: {init: normal, std: 0.01}
    bias: {init: zeros}
readouts:
  - {name: arm, cell: out}
learning:
  algorithm: es_d_rtrl
  decay_or_rank: 0.5
  signal: reward
  policy: {readout: arm, kind: softmax}
  tau_e: 2.0e-3
  tau_baseline: 5.0e-2
  optimizer: {kind: adam, lr: 2.0e-3}
"""


def one_hot(k):
    v = [0.0] * N_CTX
    v[k] = 1.0
    return v


def run_episodes(link, rng, n, greedy=False):
    """n episodes; returns the fraction correct and the mean reward per observation."""
    correct, total, rsum = 0, 0, 0.0
    reward = None
    for _ in range(n):
        link.c.reset("states")
        for _ in range(EP_LEN):
            ctx = int(rng.integers(N_CTX))
            o = link.tick({"context": one_hot(ctx)}, reward=reward)
            arm = int(np.argmax(o.values)) if greedy else int(o.action[0])
            reward = 1.0 if arm == PAYS[ctx] else -1.0
            correct += arm == PAYS[ctx]
            rsum += reward
            total += 1
    if reward is not None and not greedy:
        link.tick({"context": [0.0] * N_CTX}, reward=reward)  # the last action's reward
    return correct / total, rsum / total


def main():
    ap = eu.options(__doc__.split("\n\n")[0], period_us=1000)
    args = ap.parse_args()
    etrace = eu.setup(args)
    n_train = 100 if args.quick else 150
    curve = []
    with eu.start_daemon(etrace, args, MODEL) as d:
        link = eu.Link(d, args.clock, "arm")
        rng = np.random.default_rng(7)
        link.c.lr(0.0)  # learning on with lr 0: the untrained policy, sampled
        chance, chance_r = run_episodes(link, rng, 10)
        link.c.lr(LR)
        print("untrained (sampled): correct %.1f%%  mean reward %+.2f" % (100 * chance, chance_r))
        link.ticks = 0
        for ep in range(0, n_train, 5):
            acc, r = run_episodes(link, rng, 5)
            curve.append((ep + 5, link.ticks, acc, r))
            print("  episodes %3d  ticks %5d  correct %5.1f%%  mean reward %+.2f"
                  % (ep + 5, link.ticks, 100 * acc, r))
        ticks = link.ticks
        online = np.mean([c[2] for c in curve[-2:]])
        link.c.learn(False)
        greedy, greedy_r = run_episodes(link, np.random.default_rng(99), 10, greedy=True)
        link.close()
    ok = online >= 0.8 and greedy >= 0.95
    print("RESULT agent correct: chance %.1f%% -> online %.1f%% (last 10 episodes), greedy "
          "%.1f%% (mean reward %+.2f -> %+.2f) after %d episodes, %d ticks: %s"
          % (100 * chance, 100 * online, 100 * greedy, chance_r, greedy_r, n_train, ticks,
             "PASS" if ok else "FAIL"))
    if not args.no_plot:
        eu.plot("%s/agent.png" % args.out, [
            ("correct (sampled)", [("agent", [c[0] for c in curve], [c[2] for c in curve]),
                                   ("chance", [0, n_train], [0.25, 0.25])], "episodes", None),
            ("mean reward", [("agent", [c[0] for c in curve], [c[3] for c in curve])],
             "episodes", None)], "agent: contextual bandit from reward")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

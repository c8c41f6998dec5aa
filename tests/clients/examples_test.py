"""Each example's shortened lockstep run (deterministic: fixed seeds, clock: lockstep)
passes its stated threshold: the example exits 0 and prints its RESULT line(s) with PASS.
Run one: ETRACE_BUILD=build /usr/bin/python3 tests/clients/examples_test.py RobotTest"""
import os
import subprocess
import sys
import tempfile
import unittest

import common


def run_example(name, *extra, with_stdout=False, timeout=120):
    with tempfile.TemporaryDirectory() as out:
        p = subprocess.run([sys.executable, os.path.join(common.REPO, "clients", "examples",
                                                         name + ".py"),
                            "--clock", "lockstep", "--quick", "--build", common.BUILD,
                            "--out", out] + list(extra),
                           capture_output=True, text=True, timeout=timeout)
        pngs = sorted(f for f in os.listdir(out) if f.endswith(".png"))
    print(p.stdout)
    print(p.stderr, file=sys.stderr)
    results = [l for l in p.stdout.splitlines() if l.startswith("RESULT")]
    if with_stdout:
        return p.returncode, results, pngs, p.stdout
    return p.returncode, results, pngs


class RobotTest(unittest.TestCase):
    def test_robot(self):
        rc, results, pngs = run_example("robot")
        self.assertEqual(len(results), 2)
        self.assertTrue(all(r.endswith("PASS") for r in results), results)
        self.assertEqual(rc, 0)
        self.assertEqual(pngs, ["robot.png"])


class AgentTest(unittest.TestCase):
    def test_agent(self):
        rc, results, pngs = run_example("agent")
        self.assertEqual(len(results), 1)
        self.assertTrue(results[0].endswith("PASS"), results)
        self.assertEqual(rc, 0)
        self.assertEqual(pngs, ["agent.png"])


class RewardTest(unittest.TestCase):
    def test_reward(self):
        """Cart-pole from reward: actor-critic balances 8 of 10 evaluation episodes within
        10,000 lockstep ticks (one training seed); point mass: actor-critic at least as close
        as today's REINFORCE (robot.py's settings) in half its ticks (one seed)."""
        rc, results, pngs = run_example("reward", timeout=300)
        self.assertEqual(len(results), 2)
        self.assertTrue(all(r.endswith("PASS") for r in results), results)
        self.assertEqual(rc, 0)
        self.assertEqual(pngs, ["reward.png"])


class DriftTest(unittest.TestCase):
    def test_drift(self):
        """Passes its threshold, and under --clock lockstep is deterministic: two runs
        take the same figures (a digest of every sample) and print the same RESULT."""
        runs = []
        for _ in range(2):
            rc, results, pngs, out = run_example("drift", with_stdout=True)
            self.assertEqual(len(results), 1)
            self.assertTrue(results[0].endswith("PASS"), results)
            self.assertEqual(rc, 0)
            self.assertEqual(pngs, ["drift.png"])
            runs.append(([l for l in out.splitlines() if l.startswith("ROWS")], results))
        self.assertEqual(len(runs[0][0]), 1)
        self.assertEqual(runs[0], runs[1])


if __name__ == "__main__":
    unittest.main(verbosity=2)

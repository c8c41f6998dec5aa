"""`etraced recording info` and `etraced recording export --format npy` on a recording
made by a real lockstep daemon: the info names the model, its hash, the ticks and the
events by kind; the .npy streams read back with numpy hold exactly the frames, spikes,
targets and rewards that were sent, each row with the tick it was applied before."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

import common
import etrace

ETRACED = os.environ["ETRACED"]
MODEL = common.MODEL.replace(
    "  - {name: sensors, size: 4}\n",
    "  - {name: sensors, size: 4}\n  - {name: ev, size: 6, kind: spikes}\n").replace(
    "from: [sensors, hidden]", "from: [sensors, ev, hidden]")


class RecordingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="etrace-rec-")
        d = etrace.Daemon(MODEL, clock="lockstep")
        cls.sent = []
        try:
            with d.client() as c:
                for _ in range(3):
                    c.step()
                c.record_start("run1")
                cls.start_tick = c.status().tick
                cls.hash = c.status().model_hash
                for k in range(40):
                    tick = c.status().tick
                    x = [0.1 * k, 0.2, -0.3, 0.01 * k]
                    if k % 3 == 0:
                        c.step(inputs={"sensors": x}, spikes={"ev": [k % 6, 5]},
                               targets={"action": [1.0, -float(k)]}, reward=0.5 * k)
                        cls.sent.append((tick, x, [k % 6, 5], [1.0, -float(k)], 0.5 * k))
                    else:
                        c.step(inputs={"sensors": x})
                        cls.sent.append((tick, x, None, None, None))
                c.lr(2.0e-3)
                c.step()
                cls.end_tick = c.status().tick
                c.record_stop()
            state = os.path.join(d.dir, "etraced")
            name = [n for n in os.listdir(state) if n.startswith("run1")][0]
            cls.file = os.path.join(cls.tmp, name)
            shutil.copy(os.path.join(state, name), cls.file)
        finally:
            d.close()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def run_etraced(self, *args, want=0):
        p = subprocess.run([ETRACED] + list(args), capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, want, p.stdout + p.stderr)
        return p.stdout + p.stderr

    def test_info(self):
        out = self.run_etraced("recording", "info", self.file)
        print(out)
        self.assertIn("model      ctest (hash %016x)" % self.hash, out)
        self.assertIn("ticks      %d to %d (%d ticks)" % (
            self.start_tick, self.end_tick, self.end_tick - self.start_tick), out)
        self.assertIn("duration   %.6g s" % ((self.end_tick - self.start_tick) * 1e-3), out)
        m = re.search(r"events\s+(\d+): (.*)", out)
        kinds = dict(zip(m.group(2).split()[::2], map(int, m.group(2).split()[1::2])))
        self.assertEqual(kinds["snapshot"], 1)
        self.assertEqual(kinds["input"], 41)  # each step's Input, the last one empty
        self.assertEqual(kinds["lr"], 1)
        self.assertEqual(kinds["end"], 1)

    def test_export_npy(self):
        out_dir = os.path.join(self.tmp, "npy")
        print(self.run_etraced("recording", "export", self.file, "--out", out_dir))
        x = np.load(os.path.join(out_dir, "inputs", "sensors.npy"))
        xt = np.load(os.path.join(out_dir, "inputs", "sensors.ticks.npy"))
        self.assertEqual(x.dtype, np.float32)
        self.assertEqual(xt.dtype, np.int64)
        self.assertEqual(x.shape, (40, 4))
        np.testing.assert_array_equal(xt, [s[0] for s in self.sent])
        np.testing.assert_array_equal(x, np.array([s[1] for s in self.sent], np.float32))
        with_sig = [s for s in self.sent if s[2] is not None]
        sp = np.load(os.path.join(out_dir, "inputs", "ev.npy"))
        spt = np.load(os.path.join(out_dir, "inputs", "ev.ticks.npy"))
        self.assertEqual(sp.dtype, np.int32)
        np.testing.assert_array_equal(sp, [i for s in with_sig for i in s[2]])
        np.testing.assert_array_equal(spt, [s[0] for s in with_sig for _ in s[2]])
        y = np.load(os.path.join(out_dir, "targets", "action.npy"))
        yt = np.load(os.path.join(out_dir, "targets", "action.ticks.npy"))
        np.testing.assert_array_equal(y, np.array([s[3] for s in with_sig], np.float32))
        np.testing.assert_array_equal(yt, [s[0] for s in with_sig])
        r = np.load(os.path.join(out_dir, "rewards.npy"))
        np.testing.assert_array_equal(r, np.array([s[4] for s in with_sig], np.float32))
        np.testing.assert_array_equal(np.load(os.path.join(out_dir, "rewards.ticks.npy")),
                                      [s[0] for s in with_sig])

    def test_usage_errors(self):
        out = self.run_etraced("recording", "export", self.file, "--out", self.tmp,
                               "--format", "csv", want=64)
        self.assertEqual(len(out.strip().splitlines()), 1, out)
        self.assertIn("'csv'", out)
        out = self.run_etraced("recording", "info", os.path.join(self.tmp, "missing"), want=1)
        self.assertIn("missing", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)

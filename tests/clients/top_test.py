"""`etracectl top` driven in tmux (send-keys, capture-pane) against the real daemon, in an
80-column terminal: the header names the model and its uptime; the screen shows the tick
rate, the daemon's CPU and resident memory, a row per input (frames/s, staleness), per
spiking cell (firing rate) and per projection (drift); no line wraps; "waiting for
daemon" while the daemon is away and recovery when it returns; `q` quits with exit code 0.
A private tmux server (-S a socket in the temp dir) is used and killed at the end."""
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import common
import etrace


class TopTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="etrace-top-test-")
        self.tmux = ["tmux", "-S", os.path.join(self.dir, "tmux.sock")]
        self.d = None

    def tearDown(self):
        subprocess.run(self.tmux + ["kill-server"], stderr=subprocess.DEVNULL)
        if self.d:
            self.d.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def screen(self, joined=False):
        return subprocess.run(self.tmux + ["capture-pane", "-p", "-t", "top"] +
                              (["-J"] if joined else []),
                              capture_output=True, text=True).stdout

    def wait_screen(self, pattern, timeout_s=8.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            s = self.screen()
            if re.search(pattern, s, re.M):
                return s
            time.sleep(0.1)
        self.fail("pattern %r not on the screen:\n%s" % (pattern, self.screen()))

    def stream(self, stop):
        """Targets and frames so that the weights drift."""
        with self.d.client() as c:
            k = 0
            while not stop.is_set():
                c.send_input(inputs={"sensors": [0.2, 0.9, 0.4, 0.7]},
                             targets={"action": [1.0 if k % 2 else -1.0, 0.5]})
                k += 1
                time.sleep(0.002)

    def test_top(self):
        ddir = os.path.join(self.dir, "daemon")
        os.mkdir(ddir)
        self.d = etrace.Daemon(common.MODEL, clock="timer", stats_period_ms=200, dir=ddir)
        stop = threading.Event()
        th = threading.Thread(target=self.stream, args=(stop,))
        th.start()
        try:
            cmd = "LANG=C.UTF-8 %s --stats %s top; echo TOP-EXIT=$?; sleep 60" % (
                common.ETRACECTL, self.d.endpoints["stats"])
            subprocess.run(self.tmux + ["new-session", "-d", "-s", "top", "-x", "80", "-y",
                                        "40", cmd], check=True)
            s = self.wait_screen(r"tick rate\s+9\d\d\.\d|tick rate\s+10\d\d\.\d")
            rate = float(re.search(r"tick rate\s+([\d.]+)", s).group(1))
            self.assertGreater(rate, 900.0)
            self.assertLess(rate, 1100.0)
            # Every projection: a row with a non-zero |W-W0|.
            s = self.wait_screen(r"^w_out\s+[1-9]\.\d+e[-+]\d+")
            for name in ("w_in", "w_out"):
                m = re.search(r"^%s\s+(\S+)\s+(\S+)\s+(\S+)" % name, s, re.M)
                self.assertIsNotNone(m, s)
                self.assertGreater(float(m.group(1)), 0.0)
            for pat in ("tick time", "lateness", "p50", "p99", "max", "skipped",
                        "frames/s", "rejected", "loss avg", "reward avg"):
                self.assertIn(pat, s)
            # The header: the model and the daemon's uptime; its CPU and memory.
            self.assertRegex(s, r"etraced top\s+model ctest\s+up \d+m\d\ds\s+running")
            self.assertRegex(s, r"cpu (\d+\.\d%|-)\s+rss [1-9]\d*\.\d MiB")
            # A row per input: its frames/s (frames applied to a tick), its staleness.
            s = self.wait_screen(r"^sensors\s+[1-9]\d*\.\d\s+0\.0\s+\d+")
            m = re.search(r"^sensors\s+([\d.]+)\s+([\d.]+)\s+(\d+)", s, re.M)
            self.assertGreater(float(m.group(1)), 1.0)
            # A row per spiking cell, with its firing rate.
            self.assertRegex(s, r"(?m)^hidden\s+\d\.\d{4}$")
            # 80 columns: no line of the screen wraps.
            for line in self.screen(joined=True).splitlines():
                self.assertLessEqual(len(line), 80, line)
        finally:
            stop.set()
            th.join()
        # The daemon goes away, then comes back on the same endpoints.
        self.d.close()
        self.wait_screen(r"waiting for daemon")
        self.d = etrace.Daemon(common.MODEL, clock="timer", stats_period_ms=200, dir=ddir)
        s = self.wait_screen(r"\A(?!.*waiting for daemon)etraced top\s+model ctest.*\nstats #\d+\s+tick \d+", timeout_s=10)
        self.assertRegex(s, r"tick rate\s+(\d+\.\d|-)")
        subprocess.run(self.tmux + ["send-keys", "-t", "top", "q"], check=True)
        s = self.wait_screen(r"TOP-EXIT=\d+", timeout_s=3)
        self.assertIn("TOP-EXIT=0", s)


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""The Prometheus exporter (clients/python/etrace_exporter.py) scraped over HTTP on
127.0.0.1 while a real daemon learns: the metrics are there, with the conventional names
and labels, and their values change over time."""
import os
import re
import subprocess
import sys
import threading
import time
import unittest
import tempfile
import urllib.request

import common
import etrace
import zmq

EXPORTER = os.path.join(common.REPO, "clients", "python", "etrace_exporter.py")


def parse(text):
    """{'name{labels}': value} of an exposition text."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, val = line.rsplit(" ", 1)
            out[key] = float(val)
    return out


class ExporterTest(unittest.TestCase):
    def setUp(self):
        self.d = etrace.Daemon(common.MODEL, clock="timer", stats_period_ms=100)
        self.start_exporter([])

    def start_exporter(self, extra_args):
        self.proc = subprocess.Popen([sys.executable, EXPORTER, "--port", "0", "--stats",
                                      self.d.endpoints["stats"]] + extra_args,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        self.assertIsNotNone(m, line)
        self.url = "http://127.0.0.1:%s/metrics" % m.group(1)
        self.stop = threading.Event()
        self.th = threading.Thread(target=self.stream)
        self.th.start()

    def tearDown(self):
        self.stop.set()
        self.th.join()
        self.proc.terminate()
        self.proc.wait(5)
        self.proc.stdout.close()
        self.d.close()

    def stream(self):
        with self.d.client() as c:
            k = 0
            while not self.stop.is_set():
                c.send_input(inputs={"sensors": [0.2, 0.9, 0.4, 0.7]},
                             targets={"action": [1.0 if k % 2 else -1.0, 0.5]})
                k += 1
                time.sleep(0.002)

    def scrape(self):
        with urllib.request.urlopen(self.url, timeout=5) as r:
            self.assertEqual(r.status, 200)
            return parse(r.read().decode())

    def scrape_up(self, timeout_s=5.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = self.scrape()
            if m.get("etraced_up") == 1.0 and m.get("etraced_ticks_total", 0) > 0:
                return m
            time.sleep(0.1)
        self.fail("the exporter never showed etraced_up 1")

    def test_metrics_change(self):
        a = self.scrape_up()
        for key in ('etraced_tick_lateness_seconds{quantile="0.5"}',
                    'etraced_tick_lateness_seconds{quantile="0.99"}',
                    'etraced_tick_lateness_seconds_count', 'etraced_tick_lateness_seconds_sum',
                    'etraced_tick_duration_seconds{quantile="0.99"}',
                    'etraced_tick_duration_seconds_count', 'etraced_tick_duration_max_seconds',
                    'etraced_projection_drift_norm{projection="w_in"}',
                    'etraced_projection_drift_norm{projection="w_out"}',
                    'etraced_projection_grad_norm{projection="w_in"}',
                    'etraced_input_frames_total{input="sensors"}',
                    'etraced_readout_targets_total{readout="action"}',
                    'etraced_socket_rejected_total{reason="wrong_size",socket="input"}',
                    'etraced_build_info{version="0.1"}',
                    'etraced_model_info{hash="%016x",model="ctest"}' % self.model_hash(),
                    'etraced_skipped_periods_total', 'etraced_output_wakes_total',
                    'etraced_loss',
                    'etraced_learning_rate', 'etraced_period_seconds'):
            self.assertIn(key, a)
        self.assertEqual(a["etraced_period_seconds"], 1e-3)
        # No series that cannot be non-zero: the PUB sockets reject nothing, an analog
        # input never overflows.
        self.assertNotIn('etraced_socket_rejected_total{reason="undecodable",socket="output"}', a)
        self.assertNotIn('etraced_input_dropped_overflow_total{input="sensors"}', a)
        time.sleep(0.6)
        b = self.scrape()
        self.assertGreater(b["etraced_ticks_total"], a["etraced_ticks_total"])
        self.assertGreater(b["etraced_output_wakes_total"], a["etraced_output_wakes_total"])
        self.assertGreater(b["etraced_tick_duration_seconds_count"],
                           a["etraced_tick_duration_seconds_count"])
        self.assertGreater(b['etraced_input_frames_total{input="sensors"}'],
                           a['etraced_input_frames_total{input="sensors"}'])
        self.assertNotEqual(b['etraced_projection_drift_norm{projection="w_in"}'],
                            a['etraced_projection_drift_norm{projection="w_in"}'])
        self.assertGreater(b['etraced_projection_drift_norm{projection="w_in"}'], 0.0)

    def model_hash(self):
        with self.d.client() as c:
            return c.status().model_hash

    def test_promtool_check_metrics(self):
        """`promtool check metrics` (Debian's prometheus package) finds nothing to lint."""
        self.scrape_up()
        with urllib.request.urlopen(self.url, timeout=5) as r:
            text = r.read().decode()
        p = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout + p.stderr, "")

    def test_counters_survive_a_swap(self):
        """A load without keep_weights starts the model's own steps again; the _total
        counters carry on."""
        a = self.scrape_up()
        with self.d.client() as c:
            c.load_text(common.MODEL)
        deadline = time.monotonic() + 5
        b = self.scrape()
        while time.monotonic() < deadline and b["etraced_swaps_total"] < 1:
            time.sleep(0.1)
            b = self.scrape()
        self.assertEqual(b["etraced_swaps_total"], 1)
        self.assertLess(b["etraced_model_optimizer_steps"], a["etraced_optimizer_steps_total"])
        self.assertGreaterEqual(b["etraced_optimizer_steps_total"],
                                a["etraced_optimizer_steps_total"])
        self.assertGreaterEqual(b["etraced_ticks_total"], a["etraced_ticks_total"])

    def test_down_when_daemon_stops(self):
        self.scrape_up()
        self.stop.set()
        self.th.join()
        self.d.close()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and self.scrape().get("etraced_up") != 0.0:
            time.sleep(0.2)
        self.assertEqual(self.scrape()["etraced_up"], 0.0)


class ExporterUnitTest(unittest.TestCase):
    """systemd/etrace-exporter.service, pointed at this checkout's exporter, passes
    `systemd-analyze verify` with nothing printed, and names the documented port."""

    def test_unit_verifies(self):
        src = os.path.join(common.REPO, "systemd", "etrace-exporter.service")
        with open(src) as f:
            text = f.read()
        self.assertIn("--port 29464", text)
        with tempfile.TemporaryDirectory() as tmp:
            unit = os.path.join(tmp, "etrace-exporter.service")
            with open(unit, "w") as f:
                f.write(text.replace("/usr/local/share/etraced/python/etrace_exporter.py",
                                     EXPORTER))
            p = subprocess.run(["systemd-analyze", "verify", "--man=no", unit], cwd=tmp,
                               capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout + p.stderr, "")


class ExporterArgsTest(unittest.TestCase):
    """A daemon public key that begins with '-' (Z85 has it: one key in 85) is taken as the
    value of --curve-server, not as an option; this made the CURVE test fail now and then."""

    def test_key_beginning_with_dash(self):
        key = "-" + "a" * 39
        with tempfile.TemporaryDirectory() as tmp:
            keys = os.path.join(tmp, "client.key")
            with open(keys, "w") as f:
                f.write("public: %s\nsecret: %s\n" % ("b" * 40, "c" * 40))
            proc = subprocess.Popen([sys.executable, EXPORTER, "--curve-server", key,
                                     "--curve-keys", keys, "--port", "0", "--stats",
                                     "tcp://127.0.0.1:1"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                line = proc.stdout.readline()  # serving: the arguments were taken
            finally:
                proc.terminate()
                _, err = proc.communicate(timeout=10)
            self.assertIn("/metrics", line, err)
        import importlib.util
        spec = importlib.util.spec_from_file_location("etrace_exporter", EXPORTER)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        self.assertEqual(mod.glue_key_args(["--curve-server", key, "--port", "0"]),
                         ["--curve-server=" + key, "--port", "0"])
        self.assertEqual(mod.glue_key_args(["--curve-server"]), ["--curve-server"])


class ExporterCurveTest(ExporterTest):
    """The exporter on a daemon whose tcp endpoints use CURVE: with its key file on the
    allow-list it serves the metrics; without CURVE it never sees the daemon up."""

    test_metrics_change = None  # shown over ipc above
    test_down_when_daemon_stops = None
    test_promtool_check_metrics = None
    test_counters_survive_a_swap = None

    def setUp(self):
        if not zmq.has("curve"):
            self.skipTest("this libzmq has no CURVE support")
        self.tmp = tempfile.mkdtemp(prefix="etrace-curve-")
        self.d, server, _, client_file = common.curve_daemon(etrace, self.tmp)
        self.start_exporter(["--curve-server", server, "--curve-keys", client_file])

    def tearDown(self):
        super().tearDown()
        for name in os.listdir(self.tmp):
            os.unlink(os.path.join(self.tmp, name))
        os.rmdir(self.tmp)

    def test_curve(self):
        m = self.scrape_up()
        self.assertGreater(m["etraced_ticks_total"], 0)
        # Without CURVE an exporter gets nothing: etraced_up stays 0.
        plain = subprocess.Popen([sys.executable, EXPORTER, "--port", "0", "--stats",
                                  self.d.endpoints["stats"]], stdout=subprocess.PIPE, text=True)
        try:
            url = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", plain.stdout.readline())
            time.sleep(1.0)
            with urllib.request.urlopen("http://127.0.0.1:%s/metrics" % url.group(1),
                                        timeout=5) as r:
                self.assertEqual(parse(r.read().decode()).get("etraced_up"), 0.0)
        finally:
            plain.terminate()
            plain.wait(5)
            plain.stdout.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""Every method of the Python client (clients/python/etrace) against the real daemon,
error replies included. Run: ETRACE_BUILD=build /usr/bin/python3 tests/clients/client_test.py"""
import os
import tempfile
import time
import unittest

import common  # noqa: F401  (paths)
import etrace
import numpy as np
import zmq
import zmq.utils.z85


def wait_for(pred, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


class TimerDaemonTest(unittest.TestCase):
    """A timer-mode daemon (1 kHz, stats every 100 ms)."""

    @classmethod
    def setUpClass(cls):
        cls.d = etrace.Daemon(common.MODEL, clock="timer", stats_period_ms=100)
        cls.c = cls.d.client(timeout_ms=3000)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.d.close()

    def test_status(self):
        s = self.c.status()
        self.assertEqual(s.model_name, "ctest")
        self.assertEqual(s.clock, etrace.pb.Status.TIMER)
        self.assertEqual(s.period_ns, 1000000)
        self.assertTrue(s.has_learning)
        self.assertEqual(s.pid, self.d.proc.pid)

    def test_stats(self):
        s = wait_for(lambda: (lambda st: st if st.tick > 0 else None)(self.c.stats()))
        self.assertGreater(s.tick, 0)
        self.assertEqual([p.name for p in s.projections], ["w_in", "w_out"])

    def test_pause_resume(self):
        self.assertTrue(self.c.pause().paused)
        t0 = self.c.status().tick
        time.sleep(0.05)
        self.assertEqual(self.c.status().tick, t0)
        self.assertFalse(self.c.resume().paused)
        self.assertTrue(wait_for(lambda: self.c.status().tick > t0))

    def test_learn(self):
        self.assertFalse(self.c.learn(False).learning)
        self.assertTrue(self.c.learn(True).learning)

    def test_lr(self):
        self.assertAlmostEqual(self.c.lr(2e-3).lr, 2e-3)
        self.assertAlmostEqual(self.c.lr(1e-3).lr, 1e-3)
        with self.assertRaises(etrace.EtraceError) as cm:
            self.c.lr(-1.0)
        self.assertEqual(cm.exception.code, "BAD_ARGUMENT")
        self.assertIn("lr", cm.exception.message)
        with self.assertRaises(etrace.EtraceError) as cm:
            self.c.lr(float("nan"))
        self.assertEqual(cm.exception.code, "NON_FINITE")

    def test_reset(self):
        for what in ("states", "traces", "all"):
            self.assertEqual(self.c.reset(what).model_name, "ctest")
        with self.assertRaises(etrace.EtraceError) as cm:
            self.c.reset("everything")
        self.assertEqual(cm.exception.code, "INVALID")

    def test_step_in_timer_mode_is_an_error(self):
        with self.assertRaises(etrace.EtraceError) as cm:
            self.c.step(inputs={"sensors": [0, 0, 0, 0]})
        self.assertEqual(cm.exception.code, "WRONG_MODE")
        self.assertIn("lockstep", cm.exception.message)

    def test_send_frame_target_reward(self):
        before = self.c.stats()
        frames0 = before.inputs[0].frames + before.inputs[0].superseded
        targets0 = before.readouts[0].targets + before.readouts[0].superseded
        for k in range(20):
            self.c.send_frame("sensors", [0.1, 0.2, 0.3, 0.4])
            self.c.send_target("action", [0.5, -0.5])
            self.c.send_reward(1.0)
            time.sleep(0.003)
        # Refused here, with what the model expects...
        with self.assertRaises(etrace.EtraceError) as cm:
            self.c.send_frame("sensors", [1.0])
        self.assertEqual(cm.exception.code, "WRONG_SIZE")
        self.assertIn("input 'sensors' takes 4 values, not 1", cm.exception.message)
        with self.assertRaises(etrace.EtraceError) as cm:
            self.c.send_target("action", [1.0, 2.0, 3.0])
        self.assertIn("readout 'action' takes targets of 2 values, not 3", cm.exception.message)
        with self.assertRaises(etrace.EtraceError) as cm:
            self.c.send_frame("nosuch", [1.0])
        self.assertEqual(cm.exception.code, "UNKNOWN_NAME")
        # ... and, sent unchecked, rejected and counted by the daemon.
        self.c.send_input(spikes={"sensors": [0]}, check=False)  # an analog input
        self.c.send_input(inputs={"sensors": [1.0]}, check=False)  # wrong size
        self.c.send_input(inputs={"nosuch": [1.0]}, check=False)  # unknown name

        def done():
            s = self.c.stats()
            inp = [k for k in s.sockets if k.name == "input"][0]
            ok = (s.inputs[0].frames + s.inputs[0].superseded >= frames0 + 20 and
                  s.readouts[0].targets + s.readouts[0].superseded >= targets0 + 20 and
                  inp.wrong_size >= 2 and inp.unknown_name >= 1)
            return s if ok else None
        self.assertIsNotNone(wait_for(done))

    def test_latest_output(self):
        """latest_output returns the newest Output, not the oldest queued one: once the
        daemon has run 300 more ticks its tick is within a few of the daemon's, where the
        queue's next is ~300 ticks older."""
        queued = self.c.outputs(readout="action", timeout_ms=3000)
        first = next(queued)
        self.c.latest_output("action", timeout_ms=3000)  # subscribes
        deadline = time.monotonic() + 20
        while self.c.status().tick < first.tick + 300 and time.monotonic() < deadline:
            time.sleep(0.02)
        latest = self.c.latest_output("action", timeout_ms=3000)
        old = next(queued)
        tick = self.c.status().tick
        print("latest_output: tick %d, queue's next %d, daemon %d" % (latest.tick, old.tick,
                                                                        tick))
        self.assertEqual(latest.readout, "action")
        self.assertLess(old.tick, first.tick + 50)
        self.assertGreater(latest.tick, old.tick + 100)
        self.assertLessEqual(latest.tick, tick)

    def test_outputs_iterator(self):
        outs = list(self.c.outputs(readout="action", count=5, timeout_ms=3000))
        self.assertEqual(len(outs), 5)
        self.assertTrue(all(o.readout == "action" and len(o.values) == 2 for o in outs))
        ticks = [o.tick for o in outs]
        self.assertEqual(ticks, sorted(ticks))

    def test_stats_iterator(self):
        seqs = [s.seq for s in self.c.stats_stream(count=3, timeout_ms=3000)]
        self.assertEqual(len(seqs), 3)
        self.assertEqual(seqs, sorted(seqs))

    def test_export(self):
        with tempfile.TemporaryDirectory() as tmp:
            t = self.c.export(tmp)
            self.assertEqual(t["w_in.weight"].shape, (20, 16))
            self.assertEqual(t["w_in.bias"].shape, (16,))
            self.assertEqual(t["w_out.weight"].shape, (16, 2))
            self.assertGreater(t.tick, 0)
            a = np.load(os.path.join(tmp, "params", "w_out.weight.npy"))
            np.testing.assert_array_equal(a, t["w_out.weight"])

    def test_no_daemon_times_out(self):
        with etrace.Client(control="ipc://%s/nothing-here" % self.d.dir, timeout_ms=200) as c:
            with self.assertRaises(etrace.EtraceTimeout):
                c.status()


class LockstepDaemonTest(unittest.TestCase):
    """A lockstep daemon: step, and its errors."""

    def setUp(self):
        self.d = etrace.Daemon(common.MODEL, clock="lockstep", stats_period_ms=100)
        self.c = self.d.client(timeout_ms=3000)

    def tearDown(self):
        self.c.close()
        self.d.close()

    def test_step(self):
        o = self.c.step(inputs={"sensors": [0.5] * 4}, targets={"action": [0.1, 0.2]})
        self.assertEqual(o["action"].tick, 0)
        self.assertGreater(o["action"].loss, 0.0)
        o = self.c.step(inputs={"sensors": [0.5] * 4}, reward=1.0, reset=True)
        self.assertEqual(o["action"].tick, 1)
        self.assertEqual(self.c.status().tick, 2)

    def test_step_deterministic(self):
        outs = [self.c.step(inputs={"sensors": [0.3, 0.6, 0.9, 0.1]},
                            targets={"action": [1.0, -1.0]})["action"].values
                for _ in range(50)]
        d2 = etrace.Daemon(common.MODEL, clock="lockstep")
        with d2, d2.client() as c2:
            outs2 = [c2.step(inputs={"sensors": [0.3, 0.6, 0.9, 0.1]},
                             targets={"action": [1.0, -1.0]})["action"].values
                     for _ in range(50)]
        self.assertEqual([list(v) for v in outs], [list(v) for v in outs2])

    def test_stats_in_lockstep_are_as_of_the_last_step(self):
        """A stats request in lockstep answers the counters as of the last completed tick,
        not the last periodic Stats."""
        for i in range(1, 6):
            self.c.step(inputs={"sensors": [0.1 * i] * 4}, targets={"action": [0.1, 0.2]})
            s = self.c.stats()
            self.assertEqual(s.tick, i)
            self.assertEqual(s.period_index, i)
            self.assertEqual(s.optimizer_steps, i)
            self.assertEqual(sum(r.targets for r in s.readouts), i)

    def test_step_terminal(self):
        """The terminal flag of a reward (DESIGN §5.3), from the client and etracectl; on a
        target signal it is refused."""
        import subprocess
        self.c.step(inputs={"sensors": [0.5] * 4}, reward=0.5, terminal=True)
        self.c.step(inputs={"sensors": [0.5] * 4}, terminal=True)  # a reward of 0
        self.c.send_reward(1.0, terminal=True)
        ctl = [common.ETRACECTL, "--control", self.d.endpoints["control"],
               "--input", self.d.endpoints["input"]]
        r = subprocess.run(ctl + ["step", "--reward", "1.5", "--terminal"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run(ctl + ["reward", "2", "--terminal"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run(ctl + ["reward", "2", "--terminally"], capture_output=True,
                           text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(self.c.status().tick, 3)
        req = etrace.pb.Request()
        s = req.step.input.signals.add(readout="action", terminal=True)
        s.target.values.extend([0.1, 0.2])
        req.step.SetInParent()
        with self.assertRaises(etrace.EtraceError) as cm:
            self.c.request(req)
        self.assertEqual(cm.exception.code, "UNDECODABLE")
        self.assertIn("terminal", cm.exception.message)
        self.assertEqual(self.c.status().tick, 3)

    def test_step_errors(self):
        with self.assertRaises(etrace.EtraceError) as cm:
            self.c.step(inputs={"nosuch": [1.0]})
        self.assertEqual(cm.exception.code, "UNKNOWN_NAME")
        self.assertIn("nosuch", cm.exception.message)
        with self.assertRaises(etrace.EtraceError) as cm:
            self.c.step(inputs={"sensors": [1.0, 2.0]})
        self.assertEqual(cm.exception.code, "WRONG_SIZE")
        with self.assertRaises(etrace.EtraceError) as cm:
            self.c.step(inputs={"sensors": [float("inf")] * 4})
        self.assertEqual(cm.exception.code, "NON_FINITE")
        with self.assertRaises(etrace.EtraceError) as cm:
            self.c.step(targets={"action": [1.0, 2.0, 3.0]})
        self.assertEqual(cm.exception.code, "WRONG_SIZE")
        self.assertEqual(self.c.status().tick, 0)  # nothing ran

    def test_operations(self):
        """load, checkpoint, restore, record (issue 6), when this daemon has them."""
        try:
            op = self.c.checkpoint("a.ckpt")
        except etrace.EtraceError as e:
            if e.code in ("UNKNOWN_COMMAND", "UNSUPPORTED"):
                self.skipTest("no operations commands in this daemon: %s" % e)
            raise
        self.assertEqual(op.name, "a.ckpt")
        self.c.step(inputs={"sensors": [0.5] * 4}, targets={"action": [0.1, 0.2]})
        self.assertEqual(self.c.restore("a.ckpt").name, "a.ckpt")
        with self.assertRaises(etrace.EtraceError):
            self.c.restore("../a.ckpt")
        with self.assertRaises(etrace.EtraceError):
            self.c.restore("missing.ckpt")
        op = self.c.load_text(common.MODEL.replace("lr: 1.0e-3", "lr: 2.0e-3"),
                              keep_weights=True)
        self.assertEqual(op.model_name, "ctest")
        self.assertAlmostEqual(self.c.status().lr, 2e-3)
        with self.assertRaises(etrace.EtraceError):
            self.c.load_text("name: broken\n")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "m.yaml")
            with open(path, "w") as f:
                f.write(common.MODEL)
            self.assertEqual(self.c.load(path).model_name, "ctest")
        self.c.record_start("r.rec")
        for _ in range(5):
            self.c.step(inputs={"sensors": [0.5] * 4})
        self.assertGreaterEqual(self.c.record_stop().events, 1)

    def test_shutdown(self):
        s = self.c.shutdown()
        self.assertEqual(s.model_name, "ctest")
        self.assertEqual(self.d.proc.wait(5), 0)
        self.c.timeout_ms = 200
        with self.assertRaises(etrace.EtraceTimeout):
            self.c.status()


class KeygenTest(unittest.TestCase):
    """keygen (local, as `etracectl keygen`): no daemon."""

    Z85 = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
              ".-:+=^!/*?&<>()[]{}@%$#")

    def setUp(self):
        if not zmq.has("curve"):
            self.skipTest("this libzmq has no CURVE support")

    def test_keygen(self):
        public, secret = etrace.keygen()
        for key in (public, secret):
            self.assertIsInstance(key, str)
            self.assertEqual(len(key), 40)
            self.assertTrue(set(key) <= self.Z85, key)
            self.assertEqual(len(zmq.utils.z85.decode(key)), 32)
        self.assertEqual(zmq.curve_public(secret.encode()).decode(), public)
        public2, secret2 = etrace.Client.keygen()  # the same, as a method
        self.assertNotEqual(public, public2)
        self.assertNotEqual(secret, secret2)
        self.assertEqual(zmq.curve_public(secret2.encode()).decode(), public2)


def refused_once(ctx, endpoint, server=None, keys=None):
    """A DEALER on endpoint that connects once and never again (RECONNECT_IVL -1), over
    CURVE with the daemon's public key `server` and the pair `keys`, or without CURVE."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RECONNECT_IVL, -1)
    if server:
        s.curve_serverkey = server.encode()
        s.curve_publickey = keys[0].encode()
        s.curve_secretkey = keys[1].encode()
    s.connect(endpoint)
    return s


class CurveTest(unittest.TestCase):
    """A daemon on tcp 127.0.0.1 with CURVE and an allow-list: the client with an allowed
    key pair (given as a tuple, or as the key file `etracectl keygen` writes) gets replies
    and stats; another key, or no CURVE at all, gets nothing."""

    def setUp(self):
        if not zmq.has("curve"):
            self.skipTest("this libzmq has no CURVE support")

    def test_curve(self):
        tmp = tempfile.mkdtemp(prefix="etrace-curve-")
        other = etrace.keygen()
        d, server, allowed, client_file = common.curve_daemon(etrace, tmp)
        self.assertEqual(etrace.read_keys(client_file), allowed)
        with d:
            with d.client(timeout_ms=3000) as c:
                self.assertEqual(c.status().model_name, "ctest")
                st = next(c.stats_stream(timeout_ms=3000))
                self.assertGreater(st.tick, 0)
            with etrace.Client(curve_server=server, curve_keys=client_file, timeout_ms=3000,
                               **d.endpoints) as c:
                self.assertEqual(c.status().model_name, "ctest")
            # Another key, or no CURVE at all: one connection each, never retried, gets no
            # reply and is counted once on the control socket (by the ZAP handler, by the
            # socket monitor). A client library reconnects when the daemon noticed the
            # refusal first, and every such try counts again: hence RECONNECT_IVL -1 here.
            # The counts start from those once they settle (a client that hung up during
            # its handshake counts as refused: the daemon cannot tell it from a client
            # without CURVE that noticed the mismatch first and hung up).
            def counts(c):
                st = c.stats()
                return st, {so.name: so.curve_denied for so in st.sockets}

            ctx = zmq.Context()
            try:
                with d.client(timeout_ms=3000) as c:
                    st, base = counts(c)
                    deadline = time.monotonic() + 10.0
                    while time.monotonic() < deadline:
                        seq = st.seq
                        while c.stats().seq < seq + 3 and time.monotonic() < deadline:
                            time.sleep(0.05)
                        st, again = counts(c)
                        if again == base:
                            break
                        base = again
                    base_total = st.curve_denials
                    socks = [refused_once(ctx, d.endpoints["control"], server, other),
                             refused_once(ctx, d.endpoints["control"])]
                    req = etrace.pb.Request(id=1)
                    req.status.SetInParent()
                    for s in socks:
                        try:  # a DEALER whose one connection ended has no peer to queue for
                            s.send(req.SerializeToString(), zmq.NOBLOCK)
                        except zmq.Again:
                            pass
                        self.assertEqual(s.poll(500), 0)
                    deadline = time.monotonic() + 10.0
                    while True:
                        st, denied = counts(c)
                        denied = {k: v - base[k] for k, v in denied.items()}
                        if sum(denied.values()) >= 2 or time.monotonic() > deadline:
                            break
                        time.sleep(0.05)
                    self.assertEqual(denied, {"input": 0, "output": 0, "control": 2,
                                              "stats": 0})
                    self.assertEqual(st.curve_denials - base_total, 2)
                    # Still 2 three snapshots later: nothing was counted twice.
                    seq = st.seq
                    while c.stats().seq < seq + 3 and time.monotonic() < deadline:
                        time.sleep(0.05)
                    self.assertEqual(c.stats().curve_denials - base_total, 2)
            finally:
                ctx.destroy(linger=0)
            # The client library gets no reply either.
            with d.client(timeout_ms=500, curve={"server": server, "keys": other}) as c:
                with self.assertRaises(etrace.EtraceTimeout):
                    c.status()
            with etrace.Client(timeout_ms=500, **d.endpoints) as c:
                with self.assertRaises(etrace.EtraceTimeout):
                    c.status()
            with self.assertRaises(etrace.EtraceError):
                etrace.Client(curve_server=server, **d.endpoints)  # keys missing
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)


class ContextManagerTest(unittest.TestCase):
    def test_close(self):
        with etrace.Daemon(common.MODEL, clock="lockstep") as d:
            with d.client() as c:
                c.status()
                it = c.outputs(count=1, timeout_ms=100)
                with self.assertRaises(etrace.EtraceTimeout):
                    next(it)  # lockstep publishes nothing without steps
            self.assertIsNone(c._ctx)
            self.assertTrue(os.path.isdir(d.dir))
        self.assertFalse(os.path.exists(d.dir))

    def test_config_endpoints(self):
        with etrace.Daemon(common.MODEL, clock="lockstep") as d:
            with etrace.Client(config=d.config, timeout_ms=2000) as c:
                self.assertEqual(c.endpoints, d.endpoints)
                self.assertEqual(c.status().model_name, "ctest")


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""numpy scalars and arrays wherever the Python client takes a number or a list: the
messages it builds equal those built from Python numbers and lists, and a real lockstep
daemon computes the same outputs from either (a class index given as np.int64 included).
Run: ETRACE_BUILD=build /usr/bin/python3 tests/clients/numpy_test.py"""
import time
import unittest

import common
import etrace
import numpy as np

# common.MODEL with a cross-entropy loss: its target is a class index.
CLASS_MODEL = common.MODEL.replace("  algorithm: es_d_rtrl\n",
                                   "  algorithm: es_d_rtrl\n  loss: cross_entropy\n")


def built(**kw):
    return etrace.Client._fill_input(etrace.pb.Input(), **kw).SerializeToString()


class MessageTest(unittest.TestCase):
    """The Input a call builds, numpy against plain Python (no daemon involved)."""

    def test_frames_and_spikes(self):
        self.assertEqual(built(inputs={"s": np.array([0.25, 0.5, 1.0], np.float32)}),
                         built(inputs={"s": [0.25, 0.5, 1.0]}))
        self.assertEqual(built(inputs={"s": np.arange(6, dtype=np.float64).reshape(2, 3)}),
                         built(inputs={"s": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}))
        self.assertEqual(built(inputs={"s": [np.float32(0.5), np.float64(2.0), np.int32(3)]}),
                         built(inputs={"s": [0.5, 2.0, 3.0]}))
        self.assertEqual(built(spikes={"s": np.array([0, 3, 7], np.int64)}),
                         built(spikes={"s": [0, 3, 7]}))
        self.assertEqual(built(spikes={"s": [np.uint16(2), np.int8(5)]}),
                         built(spikes={"s": [2, 5]}))

    def test_targets_and_reward(self):
        for index in (np.int64(1), np.int32(1), np.uint8(1), np.array(1)):
            self.assertEqual(built(targets={"a": index}), built(targets={"a": 1}), repr(index))
        self.assertEqual(built(targets={"a": np.array([0.5, -0.5], np.float32)}),
                         built(targets={"a": [0.5, -0.5]}))
        self.assertEqual(built(targets={"a": np.float64(0.5)}), built(targets={"a": [0.5]}))
        self.assertEqual(built(reward=np.float32(0.5)), built(reward=0.5))

    def test_class_index_is_not_a_value_list(self):
        m = etrace.pb.Input()
        etrace.Client._fill_input(m, targets={"a": np.int64(3)})
        self.assertEqual(m.signals[0].class_index, 3)
        self.assertEqual(len(m.signals[0].target.values), 0)

    def test_float_spike_index_is_refused(self):
        with self.assertRaises(TypeError):
            built(spikes={"s": np.array([0.5])})


class LockstepTest(unittest.TestCase):
    """The same ticks from numpy and from Python values give the same outputs bitwise."""

    def run_steps(self, model, to_np):
        with etrace.Daemon(model, clock="lockstep") as d, d.client(timeout_ms=3000) as c:
            c.lr(to_np(1.0e-2))
            outs = []
            for k in range(30):
                x = [0.1 * ((k + i) % 7) for i in range(4)]
                target = k % 2 if model is CLASS_MODEL else [0.5, -0.5]
                o = c.step(inputs={"sensors": to_np(x)}, targets={"action": to_np(target)},
                           reward=to_np(0.25))
                outs.append((o["action"].tick, list(o["action"].values), o["action"].loss))
            return outs

    @staticmethod
    def numpy_of(v):
        if isinstance(v, int):
            return np.int64(v)
        if isinstance(v, float):
            return np.float64(v)
        return np.array(v, np.float32)

    def test_mse_model(self):
        plain = self.run_steps(common.MODEL, lambda v: v)
        self.assertEqual(self.run_steps(common.MODEL, self.numpy_of), plain)

    def test_class_model(self):
        plain = self.run_steps(CLASS_MODEL, lambda v: v)
        self.assertGreater(plain[-1][2], 0.0)
        self.assertEqual(self.run_steps(CLASS_MODEL, self.numpy_of), plain)


class TimerTest(unittest.TestCase):
    """send_target("action", np.int64(1)) reaches a cross-entropy readout and counts."""

    def test_send_target_np_int64(self):
        with etrace.Daemon(CLASS_MODEL, stats_period_ms=100) as d, d.client(timeout_ms=3000) as c:
            before = c.stats().readouts[0]
            n0 = before.targets + before.superseded
            for _ in range(10):
                c.send_frame("sensors", np.full(4, 0.5, np.float32))
                c.send_target("action", np.int64(1))
            deadline = 50
            while deadline:
                r = c.stats().readouts[0]
                if r.targets + r.superseded >= n0 + 10:
                    break
                deadline -= 1
                time.sleep(0.1)
            inp = [s for s in c.stats().sockets if s.name == "input"][0]
            self.assertGreaterEqual(r.targets + r.superseded, n0 + 10)
            self.assertEqual(inp.wrong_size, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)

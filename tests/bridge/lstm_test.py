"""LSTMCell: exported,
run by etraced (double and float) and by braintrace on the same inputs and targets;
outputs every tick and summed online gradients under ES-D-RTRL and D-RTRL agree."""
import braintrace
import numpy as np

from btcommon import Checker, compare_module

chk = Checker()
T = 80
rng = np.random.RandomState(11)


def spikes(n, p):
    return (rng.rand(T, n) < p).astype(np.float64)
compare_module(chk, "LSTMCell", lambda: braintrace.nn.LSTMCell(4, 7), rng.randn(T, 4),
               rng.randn(T, 7) * 0.3)
chk.done()

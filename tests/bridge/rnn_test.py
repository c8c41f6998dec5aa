"""ValinaRNNCell (relu, tanh) and Linear: exported,
run by etraced (double and float) and by braintrace on the same inputs and targets;
outputs every tick and summed online gradients under ES-D-RTRL and D-RTRL agree."""
import braintrace
import numpy as np

from btcommon import Checker, compare_module
from btmodels import RNNReadout

chk = Checker()
T = 80
rng = np.random.RandomState(11)


def spikes(n, p):
    return (rng.rand(T, n) < p).astype(np.float64)
compare_module(chk, "ValinaRNNCell-relu+Linear", lambda: RNNReadout(4, 8, 3, "relu"),
               rng.randn(T, 4), rng.randn(T, 3))
compare_module(chk, "ValinaRNNCell-tanh", lambda: braintrace.nn.ValinaRNNCell(4, 8, activation="tanh"),
               rng.randn(T, 4), rng.randn(T, 8) * 0.5)
chk.done()

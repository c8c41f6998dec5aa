"""SparseLinear and LeakyRateReadout: exported,
run by etraced (double and float) and by braintrace on the same inputs and targets;
outputs every tick and summed online gradients under ES-D-RTRL and D-RTRL agree."""
import numpy as np

from btcommon import Checker, compare_module
from btmodels import SparseLIF

chk = Checker()
T = 80
rng = np.random.RandomState(11)


def spikes(n, p):
    return (rng.rand(T, n) < p).astype(np.float64)
compare_module(chk, "SparseLinear+LeakyRateReadout", lambda: SparseLIF(5, 16, 3), spikes(5, 0.3),
               rng.rand(T, 3))
chk.done()

"""ALIF (soft and hard reset): exported,
run by etraced (double and float) and by braintrace on the same inputs and targets;
outputs every tick and summed online gradients under ES-D-RTRL and D-RTRL agree."""
import numpy as np

from btcommon import Checker, compare_module
from btmodels import ALIFNet

chk = Checker()
T = 80
rng = np.random.RandomState(11)


def spikes(n, p):
    return (rng.rand(T, n) < p).astype(np.float64)
compare_module(chk, "ALIF", lambda: ALIFNet(6, 12), spikes(6, 0.3), spikes(12, 0.1))
compare_module(chk, "ALIF-hard", lambda: ALIFNet(6, 12, "hard"), spikes(6, 0.3), spikes(12, 0.1))
chk.done()

"""The Key Concepts page's LIF_Delta_Net: exported, run by etraced (double and float) and by
braintrace on the same spikes and targets; outputs every tick and summed online gradients
under ES-D-RTRL and D-RTRL agree."""
import numpy as np

from btcommon import Checker, LIF_Delta_Net, compare_module

chk = Checker()
T, n_in, n_rec = 200, 10, 10
rng = np.random.RandomState(3)
xs = (rng.rand(T, n_in) < 0.2).astype(np.float64)
ys = (rng.rand(T, n_rec) < 0.1).astype(np.float64)
compare_module(chk, "LIF_Delta_Net", lambda: LIF_Delta_Net(n_in, n_rec, rec_scale=3., ff_scale=6.),
               xs, ys)
chk.done()

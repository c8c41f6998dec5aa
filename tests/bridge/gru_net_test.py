"""The Key Concepts page's GRU_Net (stacked braintrace.nn.GRUCell): exported (a custom GRU
cell with braintrace's equations, its reset gate as a gate cell), run by etraced and by
braintrace; outputs every tick and summed online gradients agree."""
import numpy as np

from btcommon import Checker, GRU_Net, compare_module

chk = Checker()
T, n_in = 100, 3
rng = np.random.RandomState(5)
xs = rng.randn(T, n_in)
ys = rng.randn(T, 2) * 0.5
compare_module(chk, "GRU_Net", lambda: GRU_Net(n_in, 6, 2, 3), xs, ys)
chk.done()

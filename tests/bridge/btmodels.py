"""The braintrace modules the bridge's agreement tests export: brainpy.state cells with
braintrace projections, as a user would write them. One copy, imported by each test."""
import brainevent
import brainpy
import brainstate
import braintools
import braintrace
import brainunit as u
import numpy as np


class ALIFNet(brainstate.nn.Module):
    """brainpy.state.ALIF with a DeltaProj over [input, recurrent spikes]."""

    def __init__(self, n_in, n_rec, reset="soft"):
        super().__init__()
        self.neu = brainpy.state.ALIF(n_rec, tau=5. * u.ms, tau_a=20. * u.ms, beta=0.3 * u.mV,
                                      spk_reset=reset,
                                      spk_fun=braintools.surrogate.ReluGrad(0.5, 1.5))
        w = braintools.init.KaimingNormal(4., unit=u.mV)([n_in + n_rec, n_rec])
        self.syn = brainpy.state.DeltaProj(
            comm=braintrace.nn.Linear(n_in + n_rec, n_rec, w_init=w,
                                      b_init=braintools.init.Constant(0.05 * u.mV)),
            post=self.neu)

    def update(self, x):
        self.syn(u.math.concatenate([x, self.neu.get_spike()], axis=-1))
        self.neu()
        return self.neu.get_spike()


class SparseLIF(brainstate.nn.Module):
    """brainpy.state.LIF (hard reset, sigmoid surrogate), its recurrence a SparseLinear
    (CSR) and its input a Linear, both DeltaProj; a LeakyRateReadout on its spikes."""

    def __init__(self, n_in, n_rec, n_out):
        super().__init__()
        # dimensionless voltages: brainevent's CSR keeps no unit through the ETP primitive
        self.neu = brainpy.state.LIF(n_rec, R=1., tau=4. * u.ms, V_th=1., V_reset=0., V_rest=0.,
                                     V_initializer=braintools.init.Constant(0.),
                                     spk_reset="hard", spk_fun=braintools.surrogate.Sigmoid(2.0))
        r = np.random.RandomState(2)
        mask = r.rand(n_rec, n_rec) < 0.3
        indptr = np.concatenate([[0], np.cumsum(mask.sum(1))])
        indices = np.nonzero(mask)[1]
        data = r.randn(len(indices)) * 1.5
        csr = brainevent.CSR(data, indices, indptr, shape=(n_rec, n_rec))
        self.rec = brainpy.state.DeltaProj(comm=braintrace.nn.SparseLinear(csr, in_size=(n_rec,)),
                                           post=self.neu)
        w = braintools.init.KaimingNormal(5.)([n_in, n_rec])
        self.inp = brainpy.state.DeltaProj(comm=braintrace.nn.Linear(n_in, n_rec, w_init=w, b_init=None),
                                           post=self.neu)
        self.out = braintrace.nn.LeakyRateReadout(n_rec, n_out, tau=2. * u.ms)

    def update(self, x):
        self.inp(x)
        self.rec(self.neu.get_spike())
        self.neu(0.)
        return self.out(self.neu.get_spike())


class RNNReadout(brainstate.nn.Module):
    """braintrace.nn.ValinaRNNCell then a braintrace.nn.Linear readout (memoryless)."""

    def __init__(self, n_in, n_rec, n_out, activation):
        super().__init__()
        self.rnn = braintrace.nn.ValinaRNNCell(n_in, n_rec, activation=activation)
        self.lin = braintrace.nn.Linear(n_rec, n_out)

    def update(self, x):
        return self.lin(self.rnn(x))

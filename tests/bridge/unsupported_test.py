"""Every construct etraced cannot express is refused by export() with an ExportError that
names the module and the reason, one case per kind."""
import tempfile

import brainpy
import brainstate
import braintools
import braintrace
import brainunit as u
import jax.numpy as jnp

from btcommon import DT, Checker, LIF_Delta_Net, ebt

chk = Checker()


class Wrap(brainstate.nn.Module):
    def __init__(self, inner, fn=None):
        super().__init__()
        self.inner = inner
        self.fn = fn

    def update(self, x):
        return self.inner(self.fn(x) if self.fn else x)


class Mixing(brainstate.nn.Module):
    """A hidden state whose update mixes neurons (a cumulative sum): not element-wise."""

    def __init__(self, n_in, n):
        super().__init__()
        self.w = braintrace.nn.Linear(n_in, n)
        self.n = n

    def init_state(self, *args, **kwargs):
        self.h = brainstate.HiddenState(jnp.zeros(self.n))

    def update(self, x):
        self.h.value = jnp.tanh(self.w(x) + jnp.cumsum(self.h.value))
        return self.h.value


class CurrentLIF(brainstate.nn.Module):
    """A current-based projection (brainpy.state.CurrentProj) into a LIF."""

    def __init__(self, n_in, n):
        super().__init__()
        self.neu = brainpy.state.LIF(n)
        self.syn = brainpy.state.CurrentProj(
            comm=braintrace.nn.Linear(n_in, n, w_init=braintools.init.KaimingNormal(unit=u.mS),
                                      b_init=None),
            out=brainpy.state.CUBA(), post=self.neu)

    def update(self, x):
        self.syn(x)
        self.neu()
        return self.neu.get_spike()


def expect_refused(label, factory, n_in, *words):
    with brainstate.environ.context(dt=DT):
        brainstate.random.seed(0)
        try:
            net = factory()
            brainstate.nn.init_all_states(net)
            with tempfile.TemporaryDirectory() as tmp:
                ebt.export(net, jnp.zeros(n_in), tmp)
        except ebt.ExportError as e:
            msg = str(e)
            ok = all(w.lower() in msg.lower() for w in words)
            chk.expect(f"refused {label}", ok, f"-- {msg}")
            return
        except Exception as e:  # noqa: BLE001 -- anything else is the failure reported
            chk.expect(f"refused {label}", False, f"-- not an ExportError: {type(e).__name__}: {e}")
            return
        chk.expect(f"refused {label}", False, "-- exported without error")


expect_refused("unknown module (MGUCell)", lambda: braintrace.nn.MGUCell(3, 4), 3,
               "MGUCell", "no etraced equations")
expect_refused("cross-neuron dynamics", lambda: Mixing(3, 4), 3, "Mixing", "neurons")
expect_refused("current-based projection", lambda: CurrentLIF(3, 4), 3, "syn_comm", "DeltaProj")
expect_refused("LoRA projection", lambda: Wrap(braintrace.nn.LoRA(3, 2, 4)), 3, "LoRA")
expect_refused("weight function (SignedWLinear)",
               lambda: Wrap(braintrace.nn.SignedWLinear(3, 4)), 3, "SignedWLinear", "weight")
expect_refused("surrogate without equivalent (Arctan)",
               lambda: LIF_Delta_Net(3, 4, spk_fun=braintools.surrogate.Arctan()), 3,
               "neu", "Arctan")
expect_refused("input transformed before the projection",
               lambda: Wrap(braintrace.nn.ValinaRNNCell(3, 4), lambda x: 2.0 * x), 3,
               "inner_W", "transforms the model input")
expect_refused("not a brainstate module", lambda: object(), 3, "object", "Module")
chk.done()

"""etrace.braintrace: the bridge between braintrace (JAX; brainstate, brainpy.state) and
etraced. Needs the bridge's virtualenv (`make bridge-deps`), never the robot's install.

    import etrace.braintrace as ebt
    with brainstate.environ.context(dt=0.1 * u.ms):
        ebt.export(net, example_input, "out/")        # out/model.yaml + .npy weights
    ...                                                # etraced learns online
    ebt.load(net, "run-dir/")                          # the adapted weights back into net

export() finds the model's structure through braintrace's own ETP compiler
(braintrace.extract_module_info, find_hidden_groups_from_minfo and
find_hidden_param_op_relations_from_minfo): every hidden group becomes a cell, every ETP
primitive (braintrace.nn.Linear, SparseLinear, LeakyRateReadout's matmul) a projection.
What each projection reads (model inputs, a cell's output of this tick or of the previous
one) is read off the jaxpr, by following the primitive's input back to the model's inputs
and hidden states. The cells' equations are those of the braintrace/brainpy module that
owns the hidden group, written in DESIGN §2.2's expression language: a built-in where the
module's equations are ours, a `custom` cell where they differ. Units: voltages in mV,
times in seconds (DESIGN), rate cells dimensionless. Anything else raises ExportError
naming the module and the reason.
"""
import contextvars
import math
import os
import warnings

import numpy as np

import brainstate
import braintools
import braintrace
import brainunit as u
import jax

__all__ = ["ExportError", "export", "load", "analyse", "Exported"]


class ExportError(Exception):
    """A module, projection or setting etraced cannot express; the message names it."""


# ---- helpers -------------------------------------------------------------------------

def _modname(m):
    return f"{type(m).__module__}.{type(m).__name__}"


def _get(root, path):
    m = root
    for p in path:
        m = m[p] if isinstance(p, int) else getattr(m, p)
    return m


def _pname(path):
    return "_".join(str(p) for p in path) or "model"


def _is_literal(v):
    return type(v).__name__ == "Literal"


def _num(x, unit=None, what="value"):
    """A scalar (every element equal) in `unit`'s scale, or in no unit."""
    if isinstance(x, u.Quantity):
        if unit is None:
            raise ExportError(f"{what}: expected a dimensionless value, got unit {x.unit}")
        try:
            x = x.to_decimal(unit)
        except Exception as e:  # noqa: BLE001 -- brainunit raises several kinds
            raise ExportError(f"{what}: unit {x.unit} is not convertible to {unit} ({e})")
    a = np.asarray(x, np.float64)
    if a.size == 0 or not np.all(a == a.flat[0]):
        raise ExportError(f"{what}: etraced parameters are scalars; per-neuron values differ")
    return float(a.flat[0])


def _arr(x, unit=None):
    if isinstance(x, u.Quantity):
        x = x.to_decimal(unit) if unit is not None else x.mantissa
    return np.asarray(x, np.float64)


def _surrogate(fn, owner):
    s = braintools.surrogate
    if isinstance(fn, s.ReluGrad):
        return {"kind": "relu", "alpha": float(fn.alpha), "width": float(fn.width)}
    if type(fn) is s.Sigmoid:
        return {"kind": "sigmoid", "alpha": float(fn.alpha)}
    if isinstance(fn, s.GaussianGrad) and float(fn.alpha) == 1.0:
        return {"kind": "gaussian", "sigma": float(fn.sigma)}
    if isinstance(fn, s.SlayerGrad) and float(fn.alpha) == 2.0:
        return {"kind": "slayer", "alpha": 2.0}
    raise ExportError(f"{owner}: surrogate {fn!r} has no etraced equivalent (etraced has "
                      "ReluGrad, Sigmoid, GaussianGrad with alpha=1, SlayerGrad with alpha=2)")


def _activation(fn, owner):
    table = {brainstate.nn.tanh: "tanh", brainstate.nn.relu: "relu",
             brainstate.nn.sigmoid: "sigmoid"}
    for f, name in table.items():
        if fn is f:
            return name
    if fn is getattr(brainstate.nn, "identity", None):
        return ""
    raise ExportError(f"{owner}: activation {fn!r} is not one of tanh, relu, sigmoid")


# load() reads the structure of a module that has run (its states differ per neuron);
# only export() needs the states as the cells' initial values.
_WANT_STATES = contextvars.ContextVar("_WANT_STATES", default=True)


def _init_state(state, unit, owner):
    if not _WANT_STATES.get():
        return 0.0
    return _num(state.value, unit, f"{owner}: initial state")


# ---- cell equations per module type (DESIGN §2.2 / §3) -----------------------------------

def _spiking_cell(mod, owner, adaptive):
    """brainpy.state.LIF / ALIF: voltages in mV, times in s. LIF is our `lif`; brainpy's
    ALIF resets by V_th - V_reset and decays (a + spike), so it is a `custom` cell."""
    mv = u.mV
    if _num(mod.R, u.ohm, f"{owner}.R") != 1.0:
        raise ExportError(f"{owner}: R != 1 ohm (current inputs) is not supported; "
                          "use DeltaProj")
    reset = mod.spk_reset
    if reset not in ("soft", "hard"):
        raise ExportError(f"{owner}: spk_reset {reset!r} is neither soft nor hard")
    p = {"tau": _num(mod.tau, u.second, f"{owner}.tau"),
         "v_th": _num(mod.V_th, mv, f"{owner}.V_th"),
         "v_reset": _num(mod.V_reset, mv, f"{owner}.V_reset"),
         "v_rest": _num(mod.V_rest, mv, f"{owner}.V_rest")}
    surr = _surrogate(mod.spk_fun, owner)
    v0 = _init_state(mod.V, mv, owner)
    if not adaptive:
        p["reset"] = reset
        return {"model": "lif", "params": p, "states": {"v": v0}, "surrogate": surr}, \
            {"delta": "delta"}
    p["tau_a"] = _num(mod.tau_a, u.second, f"{owner}.tau_a")
    p["beta"] = _num(mod.beta, mv, f"{owner}.beta")
    vr = ("v - (v_th - v_reset) * s_old" if reset == "soft"
          else "v - stop_gradient(v - v_reset) * s_old")
    cell = {"model": "custom", "states": {"v": v0, "a": _init_state(mod.a, None, owner)},
            "slots": ["delta"], "params": p,
            "define": {"s_old": "spike((v - v_th - beta * a) / (v_th - v_reset))", "v_r": vr},
            "update": {"v": "v_rest + (v_r - v_rest) * exp(-dt / tau) + delta",
                       "a": "(a + s_old) * exp(-dt / tau_a)"},
            "output": "spike((v - v_th - beta * a) / (v_th - v_reset))",
            "surrogate": surr}
    return cell, {"delta": "delta"}


def _rnn_cell(mod, owner):
    act = _activation(mod.activation, owner)
    h0 = _init_state(mod.h, None, owner)
    if act == "tanh":
        return {"model": "rnn_tanh", "states": {"h": h0}}, {"W": "y"}
    expr = f"{act}(y)" if act else "y"
    return {"model": "custom", "states": {"h": h0}, "slots": ["y"], "update": {"h": expr},
            "output": "h"}, {"W": "y"}


def _gru_cell(mod, owner):
    """braintrace's GRUCell: z = sigmoid(Wz [x,h]), r = sigmoid(Wr [x,h]),
    h = (1 - z) h + z act(Wh [x, r*h]): the reset gate multiplies h *before* Wh and z
    weights the candidate, unlike our `gru`. So a `custom` cell, fed by a gate cell
    `<name>_rh` (rh = sigmoid(r) * h of the previous tick) that Wh reads this tick."""
    act = _activation(mod.activation, owner)
    cand = f"{act}(nh)" if act else "nh"
    cell = {"model": "custom", "states": {"h": _init_state(mod.h, None, owner)},
            "slots": ["z", "nh"],
            "update": {"h": f"(1 - sigmoid(z)) * h + sigmoid(z) * {cand}"}, "output": "h"}
    return cell, {"Wz": "z", "Wh": "nh", "Wr": "r"}


def _lstm_cell(mod, owner):
    """braintrace's LSTMCell adds 1 to the forget gate: sigmoid(f + 1). Its compiler also
    gives the cell state c a learning signal of its own, dL/dh * dh/dc_new, besides h's
    (whose trace already carries c's path), so its gradients of Wi, Wf and Wg count the
    c path twice. The custom cell reproduces both: a third state og = sigmoid(o) lets the
    output, equal to h, carry that derivative on c (og * (tanh(c) - stop_gradient(...))
    is 0 forward)."""
    act = _activation(mod.activation, owner)
    if act != "tanh":
        raise ExportError(f"{owner}: LSTMCell with activation {act!r}: only tanh")
    c0, h0 = _init_state(mod.c, None, owner), _init_state(mod.h, None, owner)
    cell = {"model": "custom",
            "states": {"c": c0, "h": h0, "og": 0.0},
            "slots": ["i", "f", "g", "o"],
            "define": {"c_new": "sigmoid(f + 1) * c + sigmoid(i) * tanh(g)"},
            "update": {"c": "c_new", "h": "sigmoid(o) * tanh(c_new)", "og": "sigmoid(o)"},
            "output": "h + og * (tanh(c) - stop_gradient(tanh(c)))"}
    return cell, {"Wi": "i", "Wf": "f", "Wg": "g", "Wo": "o"}


def _readout_cell(mod, owner):
    dt = brainstate.environ.get_dt()
    tau = _num(mod.tau, u.second, f"{owner}.tau")
    del dt
    return {"model": "leaky_readout", "params": {"tau": tau},
            "states": {"o": _init_state(mod.r, None, owner)}}, {"W": "y"}


def _cell_for(mod, owner):
    import brainpy
    bs = brainpy.state
    nn = braintrace.nn
    if type(mod) is bs.LIF:
        return _spiking_cell(mod, owner, False)
    if type(mod) is bs.ALIF:
        return _spiking_cell(mod, owner, True)
    if type(mod) is nn.ValinaRNNCell:
        return _rnn_cell(mod, owner)
    if type(mod) is nn.GRUCell:
        return _gru_cell(mod, owner)
    if type(mod) is nn.LSTMCell:
        return _lstm_cell(mod, owner)
    if type(mod) is nn.LeakyRateReadout:
        return _readout_cell(mod, owner)
    raise ExportError(f"{owner} ({_modname(mod)}): no etraced equations for this module "
                      "(supported: brainpy.state LIF, ALIF; braintrace.nn ValinaRNNCell, "
                      "GRUCell, LSTMCell, LeakyRateReadout, Linear, SparseLinear)")


# ---- structure from braintrace's compiler ---------------------------------------------------

class _Graph:
    """The model's jaxpr with every var tagged: model input k, a hidden group's old or new
    value, the output of an ETP primitive."""

    def __init__(self, minfo):
        jaxpr = minfo.closed_jaxpr.jaxpr
        self.jaxpr = jaxpr
        self.defs = {}
        for e in jaxpr.eqns:
            for v in e.outvars:
                self.defs[v] = e
        state_invars = set(jax.tree.leaves(minfo.state_tree_invars))
        self.inputs = [v for v in jaxpr.invars if v not in state_invars]
        self.stop = {}
        for k, v in enumerate(self.inputs):
            self.stop[v] = ("in", k)

    def tags(self, var):
        out, stack, seen = set(), [var], set()
        while stack:
            v = stack.pop()
            if _is_literal(v) or v in seen:
                continue
            seen.add(v)
            if v in self.stop:
                out.add(self.stop[v])
                continue
            e = self.defs.get(v)
            if e is None:
                continue  # a parameter or constant
            stack.extend(e.invars)
        return out

    def chain(self, var):
        """Primitive names from var back to its sources (for checking plain copies)."""
        names, stack, seen = [], [var], set()
        while stack:
            v = stack.pop()
            if _is_literal(v) or v in seen or v in self.stop:
                continue
            seen.add(v)
            e = self.defs.get(v)
            if e is None:
                continue
            names.append(e.primitive.name)
            stack.extend(e.invars)
        return names


# Primitives that act element by element (or broadcast a scalar): a hidden group's
# transition made of these alone is what an etraced cell can express.
_ELEMENTWISE = {
    "add", "sub", "mul", "div", "neg", "exp", "exp2", "log", "log1p", "expm1", "tanh",
    "logistic", "max", "min", "abs", "sign", "select_n", "convert_element_type",
    "stop_gradient", "sqrt", "rsqrt", "pow", "integer_pow", "square", "broadcast_in_dim",
    "gt", "ge", "lt", "le", "eq", "ne", "and", "or", "not", "copy", "copy_p", "reshape",
    "squeeze", "expand_dims", "exprel", "heaviside_surrogate_gradient", "pjit", "jit",
    "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr", "closed_call", "erf",
    "sin", "cos", "clamp", "relu", "nextafter", "is_finite", "floor", "ceil", "round",
}


def _non_elementwise(jaxpr):
    """Names of the primitives in `jaxpr` (and its sub-jaxprs) that are not element-wise."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    bad = []
    for e in jaxpr.eqns:
        subs = [v for v in e.params.values() if hasattr(v, "eqns") or hasattr(v, "jaxpr")]
        for sub in subs:
            bad += _non_elementwise(sub)
        if not subs and e.primitive.name not in _ELEMENTWISE:
            bad.append(e.primitive.name)
    return sorted(set(bad))


def _etp_eqns(jaxpr):
    return [e for e in jaxpr.eqns if e.primitive.name.startswith("etp_")]


class Exported:
    """What export() wrote: the model text, the files, and the map between etraced's
    projection names and the module's ParamStates (load() uses it)."""

    def __init__(self, text, files, params, cells, readout):
        self.text, self.files, self.params = text, files, params
        self.cells, self.readout = cells, readout


def analyse(model, example_input, *, readout="out", learning=None, name=None):
    """The etraced model of `model` as (text, {file: array}, params map). Call inside
    brainstate.environ.context(dt=...). Raises ExportError for what etraced lacks."""
    if not isinstance(model, brainstate.nn.Module):
        raise ExportError(f"{type(model).__name__}: not a brainstate.nn.Module")
    dt = brainstate.environ.get_dt()
    dt_s = _num(dt, u.second, "dt")
    minfo = braintrace.extract_module_info(model, example_input)
    groups, path_to_group = braintrace.find_hidden_groups_from_minfo(minfo)
    with warnings.catch_warnings():
        # braintrace warns about weights it leaves out of ETP (a GRU's reset gate); the
        # exporter handles those itself, below
        warnings.simplefilter("ignore", UserWarning)
        rels = braintrace.find_hidden_param_op_relations_from_minfo(minfo, path_to_group)
    g = _Graph(minfo)
    if len(g.inputs) != 1:
        raise ExportError(f"{_modname(model)}: update() takes {len(g.inputs)} array inputs; "
                          "the exporter handles one input vector")
    in_size = int(np.prod(g.inputs[0].aval.shape))
    if len(g.inputs[0].aval.shape) != 1:
        raise ExportError(f"{_modname(model)}: input shape {g.inputs[0].aval.shape}: "
                          "one unbatched vector expected (init_all_states without batch)")

    # cells: one per hidden group, in the order the jaxpr computes them
    eqn_pos = {id(e): i for i, e in enumerate(g.jaxpr.eqns)}
    cells, group_cell = [], {}
    for gi, grp in enumerate(groups):
        owners = {tuple(p[:-1]) for p in grp.hidden_paths}
        if len(owners) != 1:
            raise ExportError(f"hidden states {grp.hidden_paths} interact element-wise across "
                              "modules; etraced's cells own their states")
        owner = owners.pop()
        mod = _get(model, owner)
        oname = _pname(owner)
        mixing = _non_elementwise(grp.transition_jaxpr)
        if not grp.is_diagonal_recurrence or mixing:
            raise ExportError(f"{oname} ({_modname(mod)}): its states mix across neurons "
                              f"({', '.join(mixing) or 'a cross-neuron operation'} in the "
                              "dynamics); etraced cells are element-wise")
        cell, slotmap = _cell_for(mod, oname)
        size = int(np.prod(grp.hidden_states[0].value.shape))
        for v in grp.hidden_invars:
            g.stop[v] = ("old", gi)
        last = max(eqn_pos.get(id(g.defs.get(v)), -1) for v in grp.hidden_outvars)
        cells.append({"gi": gi, "name": oname, "mod": mod, "owner": owner, "size": size,
                      "spec": cell, "slots": slotmap, "pos": last,
                      "outvars": list(grp.hidden_outvars)})
        group_cell[gi] = cells[-1]
    for c in cells:
        for v in c["outvars"]:
            g.stop[v] = ("new", c["gi"])
    etps = _etp_eqns(g.jaxpr)
    for k, e in enumerate(etps):
        g.stop[e.outvars[0]] = ("y", k)
    rel_by_y = {r.y_var: r for r in rels}
    w2path = {v: tuple(p) for v, p in minfo.invar_to_weight_path.items()}

    projections, params, extra_cells = [], {}, []

    def source_of(piece, proj):
        tags = g.tags(piece)
        n = int(np.prod(piece.aval.shape))
        kinds = {t[0] for t in tags}
        if kinds == {"in"}:
            bad = [p for p in g.chain(piece) if p not in ("convert_element_type", "copy",
                                                          "reshape", "copy_p")]
            if bad:
                raise ExportError(f"{proj}: transforms the model input ({', '.join(bad)}) "
                                  "before the projection; etraced projections read inputs "
                                  "as they are")
            if n != in_size:
                raise ExportError(f"{proj}: reads part of the input; etraced projections "
                                  "read whole inputs")
            return "x", None
        gis = {t[1] for t in tags if t[0] in ("old", "new")}
        if len(gis) == 1 and kinds <= {"old"}:
            c = group_cell[gis.pop()]
            return c["name"], "old"
        if len(gis) == 1 and "new" in kinds and "y" not in kinds:
            c = group_cell[gis.pop()]
            return c["name"], "new"
        if len(gis) == 1 and kinds == {"old", "y"}:
            c = group_cell[next(iter(gis))]
            if type(c["mod"]) is braintrace.nn.GRUCell:
                return c["name"] + "_rh", "gate"
        if not tags:
            raise ExportError(f"{proj}: reads a constant; etraced projections read inputs "
                              "and cells")
        raise ExportError(f"{proj}: its input mixes {sorted(kinds)} of several sources "
                          "(an element-wise product of a projection's output with a state "
                          "before a matrix is supported only as braintrace.nn.GRUCell's "
                          "reset gate)")

    for k, e in enumerate(etps):
        prim = e.primitive.name
        y = e.outvars[0]
        rel = rel_by_y.get(y)
        wpaths = {w2path[v] for v in e.invars if not _is_literal(v) and v in w2path}
        if len(wpaths) != 1:
            raise ExportError(f"ETP primitive {prim}: weights from {sorted(wpaths)}; one "
                              "parameter per projection expected")
        wpath = wpaths.pop()
        pmod_path = wpath[:-1]
        pmod = _get(model, pmod_path)
        pname = _pname(pmod_path)
        if prim not in ("etp_mv", "etp_mm", "etp_sp_mv", "etp_sp_mm"):
            raise ExportError(f"{pname} ({_modname(pmod)}): ETP primitive {prim} is not a "
                              "dense or sparse matrix product (conv, LoRA, element-wise and "
                              "embedding projections are not supported by etraced yet)")
        if e.params.get("weight_fn") is not None or e.params.get("bias_fn") is not None:
            raise ExportError(f"{pname} ({_modname(pmod)}): a weight function (mask, sign, "
                              "scaling) is applied to the weight; etraced stores plain "
                              "weights")
        x = e.invars[0]
        xdef = g.defs.get(x)
        while xdef is not None and xdef.primitive.name == "convert_element_type":
            x = xdef.invars[0]
            xdef = g.defs.get(x)
        pieces = list(xdef.invars) if xdef is not None and \
            xdef.primitive.name == "concatenate" else [x]
        srcs = []
        for piece in pieces:
            src, _ = source_of(piece, pname)
            srcs.append(src)
        # the target: a hidden group's slot, or the model output (a memoryless cell)
        if rel is not None and rel.hidden_groups:
            gis = {c_gi for c_gi, grp in enumerate(groups)
                   for hg in rel.hidden_groups if hg.index == grp.index}
            if len(gis) != 1:
                raise ExportError(f"{pname}: feeds several hidden groups; etraced "
                                  "projections feed one cell")
            c = group_cell[gis.pop()]
        else:
            c = None
            for cc in cells:
                if type(cc["mod"]) is braintrace.nn.GRUCell and \
                        pmod_path[:len(cc["owner"])] == cc["owner"] and \
                        pmod_path[-1] == "Wr":
                    c = cc
            if c is None:
                outs = g.jaxpr.outvars[:minfo.num_var_out]
                if any(("y", k) in g.tags(o) and g.tags(o) <= {("y", k), ("in", 0)}
                       for o in outs):
                    c = {"name": pname, "gi": None, "size": int(np.prod(y.aval.shape)),
                         "spec": {"model": "linear"}, "slots": None,
                         "pos": eqn_pos[id(e)], "mod": pmod, "owner": pmod_path}
                    extra_cells.append(c)
                else:
                    raise ExportError(f"{pname} ({_modname(pmod)}): its output reaches no "
                                      "hidden state and is not the model's output")
        if c["slots"] is None:
            to = c["name"]
        else:
            attr = pmod_path[len(c["owner"]):]
            key = attr[0] if attr else "W"  # the cell module's own weight (a readout)
            if key in c["slots"]:
                slot = c["slots"][key]
            else:
                parent = _get(model, pmod_path[:-1]) if pmod_path else None
                import brainpy
                if isinstance(parent, brainpy.state.DeltaProj) and "delta" in c["slots"]:
                    slot = "delta"
                else:
                    raise ExportError(f"{pname} ({_modname(pmod)}) into {c['name']}: only "
                                      "brainpy.state.DeltaProj projections into spiking "
                                      "cells are supported (current-based and conductance "
                                      "projections are not)")
            to = (c["name"] + "_rh.r") if slot == "r" else f"{c['name']}.{slot}"
            if c["spec"]["model"] in ("rnn_tanh", "leaky_readout", "linear", "lif") and \
                    slot not in ("delta",):
                to = c["name"]
        # weights
        val = pmod.weight.value if hasattr(pmod, "weight") else None
        if type(pmod) is braintrace.nn.LeakyRateReadout:
            W, b = pmod.W.value, None
            wunit = None
        else:
            if not isinstance(val, dict):
                raise ExportError(f"{pname} ({_modname(pmod)}): parameters not in the "
                                  "{weight, bias} form of braintrace.nn.Linear")
            W, b = val["weight"], val.get("bias")
            wunit = u.mV if (c["spec"].get("model") == "lif" or
                             c["spec"].get("slots") == ["delta"]) else None
        # braintrace's compiler leaves out of ETP a weight whose output reaches a hidden
        # state only through another ETP primitive (a GRU's reset gate, its warning says
        # so) or reaches none (a Linear readout): its online rules never train it, so
        # neither does the exported model (`learn: instant` would let etraced train it)
        proj = {"name": pname, "from": srcs if len(srcs) > 1 else srcs[0], "to": to,
                "learn": "trace" if rel is not None else "frozen"}
        files = {}
        if type(pmod) is braintrace.nn.SparseLinear:
            sm = pmod.spar_mat
            csr = _csr_of(sm, pname)
            data = _arr(W, wunit)
            proj["op"] = "sparse"
            proj["weight"] = {"file": f"{pname}.weight.npy",
                              "indices": f"{pname}.indices.npy",
                              "indptr": f"{pname}.indptr.npy"}
            files[f"{pname}.weight.npy"] = data.reshape(-1)
            files[f"{pname}.indices.npy"] = np.asarray(csr[0], np.int64)
            files[f"{pname}.indptr.npy"] = np.asarray(csr[1], np.int64)
            kind = "sparse"
        else:
            proj["op"] = "dense"
            proj["weight"] = {"file": f"{pname}.weight.npy"}
            files[f"{pname}.weight.npy"] = _arr(W, wunit)
            kind = "dense"
        if b is not None:
            proj["bias"] = {"file": f"{pname}.bias.npy"}
            files[f"{pname}.bias.npy"] = _arr(b, wunit).reshape(-1)
        proj["_files"] = files
        proj["_pos"] = eqn_pos[id(e)]
        projections.append(proj)
        params[pname] = {"path": pmod_path, "kind": kind, "unit": wunit,
                         "readout": type(pmod) is braintrace.nn.LeakyRateReadout,
                         "learn": proj["learn"]}

    # GRU reset-gate cells, and the element-wise copy of h they multiply
    gates = []
    for c in cells:
        if type(c["mod"]) is braintrace.nn.GRUCell:
            gname = c["name"] + "_rh"
            gates.append({"name": gname, "size": c["size"], "pos": c["pos"] - 0.5,
                          "spec": {"model": "custom", "states": {"rh": 0.0},
                                   "slots": ["r", "hp"], "update": {"rh": "sigmoid(r) * hp"},
                                   "output": "rh"}})
            projections.append({"name": gname + "_h", "from": c["name"], "to": gname + ".hp",
                                "op": "elemwise", "weight": {"init": "ones"},
                                "learn": "frozen", "_files": {}, "_pos": -1})
    # the model output: one readout
    outs = g.jaxpr.outvars[:minfo.num_var_out]
    if len(outs) != 1:
        raise ExportError(f"{_modname(model)}: update() returns {len(outs)} arrays; one "
                          "readout expected")
    otags = g.tags(outs[0])
    ocell = None
    for c in extra_cells:
        if any(t == ("y", k) for k, e in enumerate(etps) for t in otags
               if _pname(w2path.get(e.invars[1], ())[:-1]) == c["name"]):
            ocell = c
    if ocell is None:
        gis = {t[1] for t in otags if t[0] == "new"}
        if len(gis) != 1:
            raise ExportError(f"{_modname(model)}: the output is not one cell's output "
                              f"of this tick ({sorted(otags)})")
        ocell = group_cell[gis.pop()]

    # order: the jaxpr's order; a GRU's gate before its cell
    allcells = sorted(cells + extra_cells + gates, key=lambda c: c["pos"])
    lines = [f"name: {name or type(model).__name__}",
             f"dt: {dt_s!r}", "inputs:", f"  - {{name: x, size: {in_size}, kind: analog}}",
             "cells:"]
    for c in allcells:
        lines.append(f"  - name: {c['name']}")
        spec = dict(c["spec"])
        lines.append(f"    model: {spec.pop('model')}")
        lines.append(f"    size: {c['size']}")
        for key in ("states", "slots", "params", "define", "update", "output", "surrogate"):
            if key in spec:
                lines.append(f"    {key}: {_yaml(spec[key])}")
    lines.append("projections:")
    files = {}
    for p in projections:
        files.update(p["_files"])
        lines.append(f"  - name: {p['name']}")
        for key in ("from", "to", "op", "weight", "bias", "learn"):
            if key in p:
                lines.append(f"    {key}: {_yaml(p[key])}")
    lines.append("readouts:")
    lines.append(f"  - {{name: {readout}, cell: {ocell['name']}}}")
    if learning:
        lines.append(f"learning: {_yaml(learning)}")
    text = "\n".join(lines) + "\n"
    return text, files, params


def _csr_of(sm, pname):
    for a, bname in (("indices", "indptr"),):
        if hasattr(sm, a) and hasattr(sm, bname):
            return np.asarray(sm.indices), np.asarray(sm.indptr)
    raise ExportError(f"{pname}: sparse matrix {type(sm).__name__} is not CSR")


def _yaml(v):
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yaml(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ExportError(f"non-finite number {v}")
        r = repr(v)
        return r if ("." in r or "e" in r) else r + ".0"
    return str(v)


def export(model, example_input, path, *, readout="out", learning=None, name=None):
    """Writes `model` as PATH/model.yaml plus its .npy weights (the module's current
    parameters, its current hidden states as initial states). Call inside
    brainstate.environ.context(dt=...). Returns an Exported."""
    text, files, params = analyse(model, example_input, readout=readout, learning=learning,
                                  name=name)
    os.makedirs(path, exist_ok=True)
    for f, a in files.items():
        np.save(os.path.join(path, f), a)
    with open(os.path.join(path, "model.yaml"), "w") as fh:
        fh.write(text)
    return Exported(text, files, params, None, readout)


# ---- import back ----------------------------------------------------------------------

def _read_params(source):
    """{projection: {'weight': array, 'bias': array, 'indices', 'indptr'}} from an export
    reply (a dict of arrays, as Client.export returns), an `etraced run --out` directory or
    `etraced export-checkpoint` output (both hold params/), or a params/ directory."""
    out = {}
    if isinstance(source, dict):
        items = source.items()
    else:
        d = source
        if os.path.isdir(os.path.join(d, "params")):
            d = os.path.join(d, "params")
        if not os.path.isdir(d):
            raise ExportError(f"{source}: no params/ directory")
        items = [(f[:-4], np.load(os.path.join(d, f))) for f in sorted(os.listdir(d))
                 if f.endswith(".npy")]
    for key, arr in items:
        proj, _, what = str(key).rpartition(".")
        if what in ("npy",):
            proj, _, what = proj.rpartition(".")
        if not proj:
            continue
        out.setdefault(proj, {})[what] = np.asarray(arr)
    return out


def load(model, source, example_input=None):
    """Writes etraced's weights from `source` into `model`'s parameters (same structure as
    export() found). Needs the dt context and an example input of the model."""
    if example_input is None:
        raise ExportError("load: example_input is needed to find the model's structure")
    token = _WANT_STATES.set(False)
    try:
        _, _, params = analyse(model, example_input)
    finally:
        _WANT_STATES.reset(token)
    got = _read_params(source)
    for pname, info in params.items():
        if pname not in got:
            raise ExportError(f"load: {source!r} has no parameters for projection {pname}")
        vals = got[pname]
        pmod = _get(model, info["path"])
        if info["readout"]:
            old = pmod.W.value
            pmod.W.value = _like(old, vals["weight"])
            continue
        old = dict(pmod.weight.value)
        w = vals["weight"]
        if info["kind"] == "sparse":
            w = w.reshape(np.shape(old["weight"]))
        old["weight"] = _like(old["weight"], w)
        if "bias" in old and old["bias"] is not None:
            old["bias"] = _like(old["bias"], vals["bias"])
        pmod.weight.value = old


def _like(old, new):
    new = np.asarray(new).reshape(np.shape(old))
    if isinstance(old, u.Quantity):
        return u.Quantity(jax.numpy.asarray(new, old.mantissa.dtype), unit=old.unit)
    return jax.numpy.asarray(new, np.asarray(old).dtype)

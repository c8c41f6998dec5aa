"""etrace-bt: the braintrace bridge on the command line (run by the bridge's virtualenv).

    etrace-bt export SCRIPT:FACTORY --out DIR [--dt-ms 0.1] [--algorithm es_d_rtrl
        --decay-or-rank 0.99 --optimizer adam --lr 1e-3]

SCRIPT is a Python file; FACTORY a function in it, called with no arguments inside
brainstate.environ.context(dt=...), returning (module, example_input) or a module with
an `example_input` attribute. Its states are initialised (init_all_states) if it has none.
Writes DIR/model.yaml and the .npy weights (etrace.braintrace.export). Exit 0 ok, 1 a
model etraced cannot express (the message names the module), 64 usage."""
import argparse
import importlib.util
import os
import sys


def _load_factory(spec):
    script, sep, fname = spec.rpartition(":")
    if not sep or not script or not fname:
        raise SystemExit(f"etrace-bt: {spec!r}: expected SCRIPT:FACTORY")
    if not os.path.isfile(script):
        raise SystemExit(f"etrace-bt: {script}: no such file")
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    mspec = importlib.util.spec_from_file_location("_etrace_bt_user", script)
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    fn = getattr(mod, fname, None)
    if not callable(fn):
        raise SystemExit(f"etrace-bt: {script} has no function {fname}")
    return fn


def main(argv=None):
    ap = argparse.ArgumentParser(prog="etrace-bt", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="a braintrace module -> an etraced model directory")
    ex.add_argument("factory", metavar="SCRIPT:FACTORY")
    ex.add_argument("--out", required=True, metavar="DIR")
    ex.add_argument("--dt-ms", type=float, default=0.1, help="dt in ms (default 0.1)")
    ex.add_argument("--readout", default="out")
    ex.add_argument("--algorithm", choices=["es_d_rtrl", "d_rtrl", "hybrid"])
    ex.add_argument("--decay-or-rank", default="0.99")
    ex.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], default="sgd")
    ex.add_argument("--lr", type=float, default=1e-3)
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 64 if e.code else 0
    import brainstate
    import brainunit as u
    import etrace.braintrace as ebt

    try:
        factory = _load_factory(args.factory)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 64
    learning = None
    if args.algorithm:
        learning = {"algorithm": args.algorithm, "signal": "target", "loss": "mse",
                    "optimizer": {"kind": args.optimizer, "lr": args.lr}}
        if args.algorithm != "d_rtrl":
            dr = args.decay_or_rank
            learning["decay_or_rank"] = int(dr) if dr.isdigit() else float(dr)
    with brainstate.environ.context(dt=args.dt_ms * u.ms):
        made = factory()
        if isinstance(made, tuple):
            model, example = made
        else:
            model, example = made, getattr(made, "example_input", None)
        if example is None:
            print("etrace-bt: the factory must return (module, example_input)", file=sys.stderr)
            return 64
        if not model.states(brainstate.HiddenState):
            brainstate.nn.init_all_states(model)
        try:
            ebt.export(model, example, args.out, readout=args.readout, learning=learning)
        except ebt.ExportError as e:
            print(f"etrace-bt: {e}", file=sys.stderr)
            return 1
    print(f"wrote {os.path.join(args.out, 'model.yaml')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Finds etrace_pb2, the module protoc generates from proto/etrace.proto at build time
(`make` writes BUILD/python/etrace_pb2.py; it is never committed; `make install`, the
python3-etrace package and `pip install clients/python` ship it inside this package).

Search order: the directory in $ETRACE_PB2_DIR; the copy installed inside this package; an
etrace_pb2 already importable; then REPO/build/python, REPO being the checkout this package
lives in."""
import importlib
import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(_here, "..", "..", ".."))


def _load():
    env = os.environ.get("ETRACE_PB2_DIR")
    if not env and "etrace_pb2" not in sys.modules and \
            os.path.exists(os.path.join(_here, "etrace_pb2.py")):
        # Loaded under its own top-level name (as protoc's code expects) without putting
        # this package's directory on sys.path.
        spec = importlib.util.spec_from_file_location("etrace_pb2",
                                                      os.path.join(_here, "etrace_pb2.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["etrace_pb2"] = module
        spec.loader.exec_module(module)
        return module
    candidates = [env] if env else []
    candidates.append(None)  # whatever sys.path already finds
    candidates.append(os.path.join(REPO, "build", "python"))
    for d in candidates:
        if d is not None:
            if not os.path.exists(os.path.join(d, "etrace_pb2.py")):
                continue
            if d not in sys.path:
                sys.path.insert(0, d)
        try:
            return importlib.import_module("etrace_pb2")
        except ImportError:
            continue
    raise ImportError("etrace_pb2 not found: run `make` (it generates BUILD/python/etrace_pb2.py "
                      "with protoc) and set ETRACE_PB2_DIR=BUILD/python for a BUILD other "
                      "than build")


pb = _load()

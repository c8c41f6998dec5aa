"""clients/examples/braintrace_roundtrip.py --quick on the float daemon: it trains the Key
Concepts page's LIF_Delta_Net in JAX, exports it, lets the daemon learn through a drift of
the task, and imports the weights back. Checks the figures it prints: online learning
lowered the error after the drift below the error without it, and braintrace's forward with
the imported weights equals the daemon's outputs on new inputs (1e-4, the float build's
tolerance in these tests)."""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.path.abspath(os.environ.get("ETRACE_BUILD", os.path.join(REPO, "build")))

p = subprocess.run([sys.executable, os.path.join(REPO, "clients", "examples",
                                                 "braintrace_roundtrip.py"),
                    "--quick", "--no-plot", "--etraced", os.path.join(BUILD, "etraced")],
                   capture_output=True, text=True, timeout=600)
print(p.stdout + p.stderr, flush=True)
failed = 0


def expect(label, cond, detail):
    global failed
    failed += not cond
    print(f"agree {label}: {detail} {'ok' if cond else 'FAILED'}", flush=True)


after = re.search(r"^error after the drift .*: without online learning ([0-9.]+), "
                  r"with online learning ([0-9.]+)$", p.stdout, re.M)
expect("example: error after the drift lower with online learning",
       after is not None and float(after.group(2)) < float(after.group(1)),
       f"(with {after.group(2)}, without {after.group(1)})" if after else "(no figures)")
rel = re.search(r"^braintrace with the imported weights vs the daemon .* \(rel ([0-9.e+-]+),",
                p.stdout, re.M)
expect("example: imported forward == the daemon's outputs",
       rel is not None and float(rel.group(1)) <= 1e-4,
       f"rel err {rel.group(1)} (tol 1e-04)" if rel else "(no figure)")
expect("example: exit status 0", p.returncode == 0, f"({p.returncode})")
sys.exit(1 if failed else 0)

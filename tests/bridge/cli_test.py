"""etrace-bt export SCRIPT:FACTORY --out DIR: writes a model `etraced compile` accepts;
an unsupported module exits 1 naming it; a bad spec exits 64."""
import os
import subprocess
import tempfile

from btcommon import ETRACED_FLOAT, REPO, Checker

chk = Checker()
CLI = os.path.join(REPO, "clients", "python", "etrace-bt")
SCRIPT = '''
import brainstate, braintrace, jax.numpy as jnp
from btcommon import LIF_Delta_Net
def lif():
    return LIF_Delta_Net(10, 10), jnp.zeros(10)
def mgu():
    return braintrace.nn.MGUCell(3, 4), jnp.zeros(3)
'''
env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
with tempfile.TemporaryDirectory(prefix="etbridge_cli_") as tmp:
    script = os.path.join(tmp, "nets.py")
    with open(script, "w") as fh:
        fh.write(SCRIPT)
    out = os.path.join(tmp, "lif")
    p = subprocess.run([CLI, "export", f"{script}:lif", "--out", out, "--algorithm",
                        "es_d_rtrl", "--lr", "0.01"], capture_output=True, text=True, env=env,
                       timeout=300)
    chk.expect("export exits 0", p.returncode == 0, p.stderr[-500:])
    q = subprocess.run([ETRACED_FLOAT, "compile", os.path.join(out, "model.yaml")],
                       capture_output=True, text=True, timeout=60)
    chk.expect("etraced compile accepts it", q.returncode == 0 and "es_d_rtrl" in q.stdout,
               (q.stdout + q.stderr)[-500:])
    p = subprocess.run([CLI, "export", f"{script}:mgu", "--out", os.path.join(tmp, "m")],
                       capture_output=True, text=True, env=env, timeout=300)
    chk.expect("unsupported module exits 1 naming it",
               p.returncode == 1 and "MGUCell" in p.stderr, p.stderr[-300:])
    p = subprocess.run([CLI, "export", "nocolon", "--out", tmp], capture_output=True,
                       text=True, env=env, timeout=120)
    chk.expect("bad SCRIPT:FACTORY exits 64", p.returncode == 64, p.stderr[-300:])
chk.done()

#!/usr/bin/python3
"""The engine's BPTT (etraced run --align) against the independent reference's exact
gradients: for every reference case with expected_bptt/, run with --align and compare
grads_bptt/ with expected_bptt/grads/ (relative error of DESIGN Conventions, tolerance
1e-4 in float, 1e-9 in double). Closes with 'align: N passed, M failed'."""
import glob
import json
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np

etraced = os.path.abspath(sys.argv[1])
cases = sys.argv[2]
tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
ok = bad = 0
for case in sorted(glob.glob(os.path.join(cases, '*', 'expected_bptt'))):
    d = os.path.dirname(case)
    name = os.path.basename(d)
    args = shlex.split(open(os.path.join(d, 'cmd')).read())
    if '--learn' not in args or args[args.index('--learn') + 1] != 'accumulate':
        continue
    with tempfile.TemporaryDirectory() as out:
        p = subprocess.run([etraced, 'run'] + args + ['--align', '--out', out], cwd=d,
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            print(f'FAIL {name}: exit {p.returncode}: {p.stderr.strip()[-300:]}')
            bad += 1
            continue
        worst = 0.0
        for f in sorted(glob.glob(os.path.join(case, 'grads', '*.npy'))):
            b = np.load(f)
            mine = os.path.join(out, 'grads_bptt', os.path.basename(f))
            if not os.path.exists(mine):
                worst = float('inf') if np.any(b) else worst
                continue
            a = np.load(mine)
            worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12)))
        cos = json.load(open(os.path.join(out, 'align.json')))
        cs = ', '.join(f'{k} {v["cosine"]:.4f}' for k, v in cos.items())
        good = worst <= tol and all(v['cosine'] > 0 for v in cos.values())
        print(f'{"PASS" if good else "FAIL"} {name}: bptt rel err {worst:.1e}; cosines {cs}')
        ok += good
        bad += not good
print(f'align: {ok} passed, {bad} failed')
sys.exit(1 if bad or not ok else 0)

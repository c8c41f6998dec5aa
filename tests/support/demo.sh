#!/bin/sh
# make run: the shipped demo (DESIGN §1). Runs `etraced run` on lif-delta-demo with its
# shipped input and target, then starts the daemon on models/default.yaml when it exists.
set -e
build=${1:-build}
out=$build/demo
rm -rf "$out"
echo "== $build/etraced compile models/lif-delta-demo.yaml"
"$build/etraced" compile models/lif-delta-demo.yaml
echo
echo "== $build/etraced run models/lif-delta-demo.yaml (learning online from the shipped target)"
"$build/etraced" run models/lif-delta-demo.yaml --input sensors=models/lif-delta-demo.input.npy \
    --target action=models/lif-delta-demo.target.npy --out "$out"
/usr/bin/python3 - "$out" <<'PY' || true
import sys, numpy as np
out = sys.argv[1]
loss = np.load(out + "/loss.npy")
n = len(loss) // 10 or 1
print(f"  loss, mean of the first {n} ticks: {loss[:n].mean():.5f}; of the last {n}: {loss[-n:].mean():.5f}")
PY
if "$build/etraced" --help 2>&1 | grep -q -- '--model'; then
    echo
    echo "== $build/etraced --model models/default.yaml (Ctrl-C stops it)"
    exec "$build/etraced" --model models/default.yaml
fi

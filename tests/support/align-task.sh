#!/bin/sh
# Issue 4: `etraced run --align` on the recurrent ALIF task writes align.json; print the
# cosines and require each to be positive (the online rule points the way BPTT does).
set -e
etraced=$1
out=$(mktemp -d /tmp/etraced_align_XXXXXX)
trap 'rm -rf "$out"' EXIT
"$etraced" run models/alif-evidence.yaml --input cue=models/alif-evidence.cue.npy \
    --target decision=models/alif-evidence.target.npy --learn accumulate --align --out "$out"
/usr/bin/python3 - "$out/align.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
for name, v in a.items():
    print(f"{name}: cosine {v['cosine']:.4f}, norm_ratio {v['norm_ratio']:.4f}")
bad = [n for n, v in a.items() if not v["cosine"] > 0]
print("align-task: %d passed, %d failed" % (len(a) - len(bad), len(bad)))
sys.exit(1 if bad or not a else 0)
PY

#!/usr/bin/env python3
"""Writes the shipped input and target of models/lif-delta-demo.yaml:

  models/lif-delta-demo.input.npy   [1000, 10] float32: 10 positive analog channels in
                                    [0, 1], each a slow sinusoid plus noise
  models/lif-delta-demo.target.npy  [1000, 2] float32: two smooth curves

Repeatable: numpy's PCG64 with a fixed seed. With this input the demo's hidden LIF
layer (tau 5 ms, input and recurrence into the `delta` slot, kaiming weights from the
model's seed 7) fires on about 15% of its neuron-ticks (0 to 30% per tick), as measured
once with a numpy re-implementation of the engine's equations and initialisation.

Usage: /usr/bin/python3 models/make_demo_inputs.py [OUT_DIR]   (OUT_DIR: default, this script's directory)
"""
import os
import sys

import numpy as np

SEED = 20240924
T, N_IN, N_OUT = 1000, 10, 2
DT_S = 1.0e-3


def make_input(rng):
    t = np.arange(T) * DT_S
    freq_hz = rng.uniform(0.5, 4.0, size=N_IN)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=N_IN)
    slow = 0.5 + 0.35 * np.sin(2.0 * np.pi * freq_hz[None, :] * t[:, None] + phase[None, :])
    noise = rng.uniform(-0.15, 0.15, size=(T, N_IN))
    return np.clip(slow + noise, 0.0, 1.0).astype(np.float32)


def make_target():
    t = np.arange(T) * DT_S
    y0 = 0.5 * np.sin(2.0 * np.pi * 2.0 * t)
    y1 = 0.3 * np.cos(2.0 * np.pi * 1.0 * t) + 0.2 * np.sin(2.0 * np.pi * 5.0 * t)
    return np.stack([y0, y1], axis=1).astype(np.float32)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    rng = np.random.default_rng(SEED)
    x = make_input(rng)
    y = make_target()
    np.save(os.path.join(out_dir, "lif-delta-demo.input.npy"), x)
    np.save(os.path.join(out_dir, "lif-delta-demo.target.npy"), y)
    print(f"input {x.shape} in [{x.min():.3f}, {x.max():.3f}], mean {x.mean():.3f}; "
          f"target {y.shape} in [{y.min():.3f}, {y.max():.3f}]")


if __name__ == "__main__":
    main()

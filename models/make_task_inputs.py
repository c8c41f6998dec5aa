#!/usr/bin/env python3
"""Writes the input and target of models/alif-evidence.yaml for `etraced run`:

  models/alif-evidence.cue.npy     [T, 20] float32, 0/1 spikes: in each 60-tick trial,
                                   50 ticks of evidence (the class's 10 neurons fire with
                                   probability 0.05 per tick, the other 10 with 0.025),
                                   then 10 silent ticks
  models/alif-evidence.target.npy  [T] float32 class indices: the class in the last 10
                                   ticks of each trial, -1 (no target) elsewhere

T = 60 * 40 trials. Repeatable: numpy's PCG64 with a fixed seed.
Usage: /usr/bin/python3 models/make_task_inputs.py [OUT_DIR]   (OUT_DIR: default, this script's directory)
"""
import os
import sys

import numpy as np

SEED, TRIALS, CUE, DECIDE, PER_CH = 20261123, 40, 50, 10, 10
HI, LO = 0.05, 0.025


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    rng = np.random.Generator(np.random.PCG64(SEED))
    trial = CUE + DECIDE
    cue = np.zeros((TRIALS * trial, 2 * PER_CH), np.float32)
    target = np.full(TRIALS * trial, -1.0, np.float32)
    for k in range(TRIALS):
        cls = int(rng.integers(2))
        rates = np.where(np.arange(2 * PER_CH) // PER_CH == cls, HI, LO)
        t0 = k * trial
        cue[t0:t0 + CUE] = rng.random((CUE, 2 * PER_CH)) < rates
        target[t0 + CUE:t0 + trial] = cls
    np.save(os.path.join(out, 'alif-evidence.cue.npy'), cue)
    np.save(os.path.join(out, 'alif-evidence.target.npy'), target)


if __name__ == '__main__':
    main()

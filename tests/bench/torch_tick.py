#!/usr/bin/python3
"""The PyTorch-eager baseline of learn_bench's tick_dense_es: the same dense recurrent LIF
network (inputs = N, hidden LIF N reading [x, its own spikes] into slot i, a linear readout
of 2), the same ES-D-RTRL rule (decay 0.9 on both sides, the warm-up correction) and sgd
every tick, written as one would in PyTorch eager, float32, one thread (the engine is
single-threaded too).

Usage: torch_tick.py N [TICKS]   prints one JSON object {"n", "torch_us_p50", "torch_us_p99"}
Needs python3-torch (make bench-deps installs it with OpenBLAS)."""
import json
import math
import sys
import time

import torch


def main():
    n = int(sys.argv[1])
    ticks = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dt, tau, v_th, v_reset, lam, lr = 1e-3, 2e-2, 1.0, 0.0, 0.9, 1e-5
    alpha = math.exp(-dt / tau)
    with torch.no_grad():
        w = torch.randn(2 * n, n) * math.sqrt(2.0 / (2 * n))
        b = torch.full((n,), 0.9)
        w_out = torch.randn(n, 2) * math.sqrt(2.0 / n)
        b_out = torch.zeros(2)
        v = torch.zeros(n)
        s = torch.zeros(n)
        ex, ef = torch.zeros(2 * n), torch.zeros(n)
        ex_o, ef_o = torch.zeros(n), torch.zeros(2)
        times = []
        for t in range(ticks):
            x = torch.rand(n)
            target = torch.rand(2)
            t0 = time.perf_counter()
            pre = torch.cat([x, s])
            i = pre @ w + b
            u_old = (v - v_th) / (v_th - v_reset)
            s_old = (u_old > 0).float()
            v_r = v - (v_th - v_reset) * s_old
            v = i + (v_r - i) * alpha
            u = (v - v_th) / (v_th - v_reset)
            s = (u > 0).float()
            surr_old = 0.3 * torch.clamp(1.0 - u_old.abs(), min=0.0)
            surr = 0.3 * torch.clamp(1.0 - u.abs(), min=0.0)
            d = alpha * (1.0 - surr_old)  # d v_new / d v_old
            f = torch.full_like(v, 1.0 - alpha)  # d v_new / d i
            out = s @ w_out + b_out
            dl_out = (out - target)  # d/d out of mean (out - target)^2 over 2 elements
            g = surr / (v_th - v_reset) * (w_out @ dl_out)
            c = 1.0 - lam ** (t + 1) if t < 1000 else 1.0
            ex = lam * ex + pre
            ef = lam * d * ef + (1.0 - lam) * f
            q = g * ef / c
            ex_o = lam * ex_o + s
            ef_o = (1.0 - lam) * torch.ones(2) + lam * 0.0 * ef_o
            q_o = dl_out * ef_o / c
            w -= lr * torch.outer(ex, q)
            b -= lr * q
            w_out -= lr * torch.outer(ex_o, q_o)
            b_out -= lr * q_o
            times.append(time.perf_counter() - t0)
    times = sorted(times[ticks // 5:])
    p50 = times[len(times) // 2] * 1e6
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))] * 1e6
    print(json.dumps({"n": n, "torch_us_p50": p50, "torch_us_p99": p99}))


if __name__ == '__main__':
    main()

#!/usr/bin/python3
"""The PyTorch-eager baseline of learn_bench's tick_dense_es: the same dense recurrent LIF
network (inputs = N firing with probability `rate`, hidden LIF N reading [x, its own
spikes] into slot i, a linear readout of 2), the same ES-D-RTRL rule (decay 0.9 on both
sides, the warm-up correction) and sgd every tick, float32.

Written as a careful PyTorch user would, so that the comparison is fair: every buffer is
allocated once before the loop, the matrix-vector products write into them (out=), and the
rank-one step is the in-place `addr_` (BLAS ger), never an N x 2N outer-product temporary.

Usage: torch_tick.py N [TICKS] [THREADS] [RATE]
prints one JSON object {"n", "threads", "blas", "torch_us_p50", "torch_us_p99"}.
Needs python3-torch; with libopenblas0-openmp installed Debian's torch uses OpenBLAS
(make bench-deps installs both)."""
import json
import math
import sys
import time

import torch


def blas_name():
    cfg = torch.__config__.show().lower()
    try:
        with open('/proc/self/maps') as f:
            maps = f.read().lower()
    except OSError:
        maps = ''
    if 'openblas' in maps:
        return 'openblas'
    if 'mkl' in maps or 'mkl' in cfg:
        return 'mkl'
    if 'blas' in maps:
        return 'reference-or-other'
    return 'unknown'


def main():
    n = int(sys.argv[1])
    ticks = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 0.07
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dt, tau, v_th, v_reset, lam, lr = 1e-3, 2e-2, 1.0, 0.0, 0.9, 1e-5
    alpha = math.exp(-dt / tau)
    with torch.no_grad():
        w = torch.randn(2 * n, n) * math.sqrt(2.0 / (2 * n))
        b = torch.full((n,), 0.9)
        w_out = torch.randn(n, 2) * math.sqrt(2.0 / n)
        b_out = torch.zeros(2)
        v = torch.zeros(n)
        pre = torch.zeros(2 * n)  # [x, s]: s is the hidden's previous spikes
        i = torch.empty(n)
        u_old, u, s_old, surr, surr_old, d, g = (torch.empty(n) for _ in range(7))
        f = torch.full((n,), 1.0 - alpha)  # d v_new / d i
        ex, ef, q = torch.zeros(2 * n), torch.zeros(n), torch.empty(n)
        ex_o = torch.zeros(n)
        out, dl_out, q_o, hid = torch.empty(2), torch.empty(2), torch.empty(2), torch.empty(n)
        xs = [(torch.rand(n) < rate).float() for _ in range(64)]
        targets = [torch.rand(2) for _ in range(64)]
        times = []
        for t in range(ticks):
            x, target = xs[t % 64], targets[t % 64]
            t0 = time.perf_counter()
            pre[:n].copy_(x)
            torch.mv(w.t(), pre, out=i)
            i.add_(b)
            torch.sub(v, v_th, out=u_old).div_(v_th - v_reset)
            torch.gt(u_old, 0, out=s_old)
            # v = i + (v - (v_th - v_reset) s_old - i) alpha
            v.sub_(s_old, alpha=v_th - v_reset).sub_(i).mul_(alpha).add_(i)
            torch.sub(v, v_th, out=u).div_(v_th - v_reset)
            torch.gt(u, 0, out=pre[n:])
            s = pre[n:]
            torch.abs(u_old, out=surr_old).neg_().add_(1.0).clamp_(min=0.0).mul_(0.3)
            torch.abs(u, out=surr).neg_().add_(1.0).clamp_(min=0.0).mul_(0.3)
            torch.neg(surr_old, out=d).add_(1.0).mul_(alpha)  # d v_new / d v_old
            torch.mv(w_out.t(), s, out=out)
            out.add_(b_out)
            torch.sub(out, target, out=dl_out)
            torch.mv(w_out, dl_out, out=hid)
            torch.mul(surr, hid, out=g).div_(v_th - v_reset)
            c = 1.0 - lam ** (t + 1) if t < 1000 else 1.0
            ex.mul_(lam).add_(pre)
            ef.mul_(d).mul_(lam).add_(f, alpha=1.0 - lam)
            torch.mul(g, ef, out=q).div_(c)
            ex_o.mul_(lam).add_(s)
            torch.mul(dl_out, (1.0 - lam) / c, out=q_o)
            w.addr_(ex, q, alpha=-lr)
            b.add_(q, alpha=-lr)
            w_out.addr_(ex_o, q_o, alpha=-lr)
            b_out.add_(q_o, alpha=-lr)
            times.append(time.perf_counter() - t0)
    times = sorted(times[ticks // 5:])
    p50 = times[len(times) // 2] * 1e6
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))] * 1e6
    print(json.dumps({"n": n, "threads": threads, "blas": blas_name(), "torch_us_p50": p50,
                      "torch_us_p99": p99}))


if __name__ == '__main__':
    main()

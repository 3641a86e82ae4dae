"""Time one training step of an amp twin on one process and on several (dsp.parallel).

A step is what the fitter's per-capture and joint stages do: ``rows`` random segments
of ``segment`` seconds (plus the 40 ms warm-up) rendered by the topology at 2x
oversampling, the loss of each row, and the backward pass to the rows' controls and the
topology's shared parameters. The topology has the MetalHead twin's sections on (drive
section, output low-pass, output FIR); its controls are the defaults with some scatter
per row. Timings are medians over ``--steps`` steps after two warm-up steps; the helper
processes are started (and warmed up) before timing. It also checks that the split
steps' losses and gradients equal the serial ones, and prints how far they are apart::

    python benchmarks/parallel_step.py                 # 16 rows, 1 and 2 processes
    python benchmarks/parallel_step.py --rows 8 --processes 1 2 3

It asserts nothing. Measured: see benchmarks/README.md, session 24.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=16, help="rows a step (FitConfig.max_items_per_step: 16)")
    p.add_argument("--segment", type=float, default=0.5, help="seconds a row, after the warm-up (0.5)")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads of this process (the fit uses 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from dsp.fit import loss_rows
    from dsp.parallel import RowPool, usable_cores
    from dsp.topologies import make_topology

    sr = 48000.0
    topo = make_topology("amp", sr, 2)
    with torch.no_grad():
        for k in ("drive_section", "output_lp", "output_fir"):
            topo.shared[k].fill_(1.0)
    g = torch.Generator().manual_seed(0)
    n, warm = args.rows, int(0.04 * sr)
    T = warm + int(args.segment * sr)
    X = 0.3 * torch.randn(n, T, generator=g)
    Y = 0.1 * torch.randn(n, T, generator=g)
    P = torch.full((n,), 0.01)
    raw0 = topo.default_raw().expand(n, -1) + 0.2 * torch.randn(n, topo.default_raw().shape[-1], generator=g)

    def step(fn):
        topo.zero_grad(set_to_none=True)
        raw = raw0.clone().requires_grad_(True)
        l = fn(raw)
        l.mean().backward()
        return l.detach(), raw.grad

    print(f"amp twin, {n} rows of {args.segment:g} s + 40 ms warm-up at {sr:g} Hz, 2x oversampling; "
          f"{usable_cores()} usable cores, {args.threads} torch thread(s) a process")
    ref = None
    for k in args.processes:
        pool = RowPool("amp", sr, 2, k) if k > 1 else None
        try:
            fn = ((lambda r: pool.loss_rows(topo, X, r, Y, P, warm)) if pool
                  else (lambda r: loss_rows(topo(X, r), Y, warm, P)))
            for _ in range(2):
                out = step(fn)
            times = []
            for _ in range(args.steps):
                t = time.perf_counter()
                out = step(fn)
                times.append(time.perf_counter() - t)
            if ref is None:
                ref = out
            dl = float((out[0] - ref[0]).abs().max() / ref[0].abs().max())
            dg = float((out[1] - ref[1]).abs().max() / ref[1].abs().max())
            fails = pool.failures if pool else []
            print(f"  {k} process(es): {statistics.median(times):.3f} s a step (min {min(times):.3f}, "
                  f"max {max(times):.3f}); vs the first row: losses {dl:.1e}, control gradients {dg:.1e}"
                  + (f"; helper failures: {fails}" if fails else ""))
        finally:
            if pool:
                pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

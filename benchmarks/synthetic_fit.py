"""Held-out ESR and fit time for a synthetic drive and amp (ground truth = our own
topologies), with a UNIT-1-like plan: single sweeps (5 values per sweep knob) plus chaos
presets varying every knob; every 10th chaos preset (and extra random settings) held out.

python benchmarks/synthetic_fit.py [drive|amp|all] [n_chaos] [seconds] [hints]
  hints: all (default) | unit1 | none
"""
import sys, time, resource
import numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent / "synthetic"))
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from synth import *
from dsp.twin import TrainItem, fit_block, FitConfig


def run(block, n_chaos=20, seconds=2.0, seed=0, cfg=None, hints="all", n_extra_hold=5):
    sr = 48000
    x = guitar_like(seconds, sr, seed=7)
    if block == "drive":
        knobs, fn = drive_knobs(hints), drive_truth
        tr, ho = unit1_plan(knobs, ("Drive", "Attack", "Bright"), n_chaos)
    else:
        knobs, fn = amp_knobs(hints), amp_truth
        tr, ho = unit1_plan(knobs, AMP_SWEEP, n_chaos, chaos_limits=AMP_CHAOS_LIMITS)
    _, extra = unit1_plan(knobs, (), n_extra_hold, holdout_every=1, seed=99)
    ho = ho + extra
    t = time.time()
    ytr = render_truth(block, fn, tr, x); yho = render_truth(block, fn, ho, x)
    items = [TrainItem(f"tr{i}", s, x, ytr[i], sr) for i, s in enumerate(tr)] + \
            [TrainItem(f"ho{i}", s, x, yho[i], sr, holdout=True) for i, s in enumerate(ho)]
    print(f"{block}: {len(tr)} train / {len(ho)} held-out items of {seconds}s, hints={hints}; "
          f"rendered in {time.time()-t:.1f}s", flush=True)
    last = [0.0]
    def prog(p):
        if time.time() - last[0] > 15 or p.step == p.total:
            last[0] = time.time()
            print(f"  [{p.elapsed_s:6.1f}s] {p.stage:12s} {p.step}/{p.total} loss={p.loss} "
                  f"train={p.train_esr} ho={p.holdout_esr}", flush=True)
    t = time.time()
    fb = fit_block(block, knobs, items, seed=seed, on_progress=prog, config=cfg)
    dt = time.time() - t
    r = fb.report()
    tre = [it["esr"] for it in r["items"] if not it["holdout"]]
    hoe = sorted((it["esr"], it["name"]) for it in r["items"] if it["holdout"])
    print(f"{block}: fit {dt:.1f}s; train ESR median {np.median(tre):.5f} worst {np.max(tre):.5f}; "
          f"held-out ESR median {r['holdout']['median']:.5f} mean {r['holdout']['mean']:.5f} "
          f"worst {r['holdout']['worst']:.5f} ({hoe[-1][1]}); "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f} MB", flush=True)
    return fb, r


if __name__ == "__main__":
    blocks = sys.argv[1:2] or ["drive", "amp"]
    if blocks == ["all"]: blocks = ["drive", "amp"]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    s = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    h = sys.argv[4] if len(sys.argv) > 4 else "all"
    for b in blocks:
        run(b, n, s, hints=h)

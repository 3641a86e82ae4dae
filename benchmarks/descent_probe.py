"""How far plain descent takes the product's amp on ONE capture (no knobs, no search).

The fitter's init explains the reference capture by search where a candidate is cheap,
and by descent where it is not (the amp's band chain: ``Topology.descent_init``). This
probe runs the descent alone on one capture of a fidelity project and prints the whole
capture's ESR (after its first 0.5 s) every ``--every`` steps: Adam (controls at
``lr_controls``, the topology's shared values at ``lr_shared``) on ``--rows`` random
0.5 s segments per step, the fitter's training loss, at ``--oversample`` (default 1,
Guitarix's base rate). The start is the fitter's small-signal fit (``--base lin``,
as ``Fitter._init_descent``) or the declared defaults with the small-signal fit's
all-pass (``--base default``); the output level is set by least squares first, and its
sign sets the polarity. ``--set`` sets a structural option or a control (physical
value)::

    python benchmarks/fidelity.py --plugin studiopre --minutes 4          # makes the project
    python benchmarks/descent_probe.py studiopre Master_10p0 --set band_chain=1 --set tonestack_position=1
    python benchmarks/descent_probe.py studiopre Master_10p0 --set tonestack_position=1      # one chain
    python benchmarks/descent_probe.py studiopre Master_10p0 --set band_chain=1 --base default

Each report prints the test signal's segments' own ESR on a line before the whole
capture's.

Measured (session 19, Master 10, 400 steps, two runs sharing the 2 cores): the band
chain from the small-signal fit 0.999 -> 0.129 (426 s); one chain from it 0.299 (138
s); the band chain from the defaults 0.396. Session 22 (with ``--set shaper_tables=1``):
0.117 after 500 steps and 0.11 after 1,500, the guitar phrases at 0.01-0.015 and the
loud noise at 0.2-0.5, its error above 16 kHz; with the interstage low-passes free to
open past 20 kHz, 0.020 after 200 more steps (noise 0.03-0.05). It asserts nothing.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("key", help="fidelity project (studiopre, metalhead, ds1)")
    ap.add_argument("capture", help="a substring of the capture's name, e.g. Master_10p0")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a structural option (band_chain=1) or a control's physical value; repeatable")
    ap.add_argument("--base", choices=("lin", "default"), default="lin")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--oversample", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "unit-fidelity"))
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from dsp.fit import FitConfig, Fitter
    from unit_tui.project import Project
    from unit_tui.training import load_items

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    root = Path(args.work) / args.key
    if not (root / "input.wav").is_file():
        ap.error(f"no project at {root}: run benchmarks/fidelity.py --plugin {args.key} first")
    try:
        sets = {k: float(v) for k, v in (s.split("=", 1) for s in args.set)}
    except ValueError:
        ap.error("--set takes NAME=VALUE with a number, e.g. band_chain=1")
    project = Project.open(root)
    loaded = load_items(project, project.rig.blocks[0].id)
    found = [it for it in loaded.items if args.capture in it.name]
    if not found:
        ap.error(f"no capture matching {args.capture!r} in {root}")
    it = found[0]
    cfg = FitConfig(oversample=args.oversample)
    item = dict(name=it.name, knobs={}, input=it.input, target=it.target,
                sample_rate=project.rig.sample_rate, latency_samples=None, holdout=False)
    f = Fitter(loaded.block.topology, [], [item], seed=args.seed, config=cfg)
    f._prepare()
    f._output_dc_init()
    topo = f.topo
    names = topo.control_names()
    unknown = [k for k in sets if k not in topo.shared and k not in names]
    if unknown:
        ap.error(f"unknown option or control {unknown}; options: {sorted(topo.VARIANTS)}")
    with torch.no_grad():
        for k, v in sets.items():
            if k in topo.shared:
                topo.shared[k].fill_(v)
    lin = f._linear_init(0)  # with the options set: the band chain's split is in its phase
    raw = lin.clone() if args.base == "lin" else topo.default_raw()
    if args.base == "default" and topo.ALLPASS:
        apc = [names.index(k) for k in topo.allpass_controls()]
        raw[apc] = lin[apc]
    for k, v in sets.items():
        if k in names:
            raw[names.index(k)] = topo.spec(k).to_raw(v).float()

    sr = f.sr
    x = torch.from_numpy(np.asarray(f.x[0], np.float32))[None]
    y = torch.from_numpy(f._target(0, 0, len(f.x[0])))[None]
    skip = int(0.5 * sr)

    def render(r):
        with torch.no_grad():
            return topo(x, r.detach()[None])

    gi = names.index(topo.OUTPUT_GAIN)
    with torch.no_grad():  # the output level by least squares; its sign is the polarity
        yh = render(raw)
        g = float((yh[:, skip:] * y[:, skip:]).sum() / (yh[:, skip:].pow(2).sum() + 1e-12))
        if g < 0:
            f.polarity, y, g = -f.polarity, -y, -g
        spec = topo.spec(topo.OUTPUT_GAIN)
        raw[gi] = spec.to_raw(spec.to_physical(raw[gi]) + 20 * math.log10(max(g, 1e-6))).float()

    layout = project.layout()
    segs = [(g.name, int(g.start_s * sr), int(g.end_s * sr)) for g in layout.segments
            if g.kind in ("sweep", "noise", "guitar", "repeat")]

    def esr(r):
        """The whole capture's ESR; the test signal's segments' own on a line before it
        (session 22: the loud noise's error was all above 16 kHz)."""
        yh = render(r)
        parts = [f"{name} {float((yh[:, a:b] - y[:, a:b]).pow(2).sum() / (y[:, a:b].pow(2).sum() + 1e-12)):.3f}"
                 for name, a, b in segs]
        if parts:
            print("    " + ", ".join(parts), flush=True)
        e = yh[:, skip:] - y[:, skip:]
        return float(e.pow(2).sum() / y[:, skip:].pow(2).sum())

    print(f"{it.name}: {len(f.x[0]) / sr:.1f} s, base {args.base}, set {sets}, oversample {args.oversample}, "
          f"polarity {f.polarity:+.0f}", flush=True)
    raw = raw.clone().requires_grad_(True)
    shared = [p for p in topo.shared.parameters() if p.requires_grad]
    opt = torch.optim.Adam([{"params": [raw], "lr": cfg.lr_controls}, {"params": shared, "lr": cfg.lr_shared}])
    warm = int(cfg.warmup_s * sr)
    seg = warm + int(cfg.segment_s * sr)
    power = torch.full((args.rows,), float(f.power[0]))
    t0 = time.time()
    print(f"step     0  ESR {esr(raw):.4f}", flush=True)
    for s in range(1, args.steps + 1):
        X, Y = f._segments([0] * args.rows, seg)
        loss = f._loss_rows(topo(X, raw[None].expand(args.rows, -1)), Y, warm, power).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if s % args.every == 0 or s == args.steps:
            print(f"step {s:5d}  ESR {esr(raw):.4f}  ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

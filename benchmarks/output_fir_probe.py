"""What a fixed output FIR buys a trained twin, measured after the fact.

For a trained project: render the twin at every ready capture's setting, solve ONE
least-squares FIR (``dsp.filters.fir_least_squares``, causal) from the twin's output to
the captures on the training captures, and print each capture's ESR without and with
it, the held-out captures (the trainer's) scored with the FIR they did not help solve.
Nothing is retrained, so the "with" column is what a shared linear filter at the output
can fix at most with everything else as it is (a fit that has the FIR from the start
can do better).

    python benchmarks/output_fir_probe.py WORK/metalhead [--taps 128 256 1024]

Measured on Guitarix's MetalHead (session 12's 20-minute twin, held-out median): 0.228
without; with 128 / 256 / 1024 taps 0.107 / 0.103 / 0.094. It prints figures and
asserts nothing; it writes nothing into the project.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", help="a trained project folder")
    ap.add_argument("--block", help="block id (default: the first block with a model)")
    ap.add_argument("--taps", type=int, nargs="+", default=[128, 256, 1024])
    ap.add_argument("--skip-s", type=float, default=0.5, help="seconds left out at the start")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(2)
    from dsp.filters import fir_least_squares
    from dsp.fit import shift_signal
    from unit_tui.audio_io import read_capture
    from unit_tui.project import Project
    from unit_tui.training import load_model

    project = Project.open(Path(args.project))
    blocks = [b for b in project.rig.blocks if args.block in (None, b.id)]
    if not blocks:
        print(f"no block {args.block!r} in {args.project}")
        return 1
    block = blocks[0]
    model = load_model(project, block.id)
    if model.output_fir is not None:
        print("note: this twin already has an output FIR; the probe solves one more after it")
    x = project.load_input().audio
    sr = project.rig.sample_rate
    lat = model.latency_samples or 0.0
    holdout = {it["name"] for it in model.report().get("items", []) if it.get("holdout")}
    names = [k.name for k in block.modelled_knobs]
    start = int(args.skip_s * sr)
    rows = []
    for s in project.scan().states:
        if s.capture is None or s.capture.block_id != block.id or s.status.value != "ready":
            continue
        name = s.capture.filename.removesuffix(".wav")
        y = shift_signal(np.asarray(read_capture(project.path(s.relpath)).audio[: x.size], np.float64), lat)
        stop = y.size - int(math.ceil(max(lat, 0.0))) - 1
        yh = model.render({k: s.capture.setting[k] for k in names}, x, sr).astype(np.float64)
        rows.append((name, name in holdout, y[start:stop], yh[start:stop]))
    if not rows:
        print("no ready captures")
        return 1
    train = [r for r in rows if not r[1]]
    w = [1.0 / np.sum(r[2] ** 2) for r in train]  # ESR weighting: each capture counts the same

    def esr(y, yh):
        return float(np.sum((y - yh) ** 2) / np.sum(y * y))

    base = {r[0]: esr(r[2], r[3]) for r in rows}
    results = {}
    for n in args.taps:
        h = fir_least_squares(np.stack([r[3] for r in train]), np.stack([r[2] for r in train]), n, w)
        results[n] = {r[0]: esr(r[2], np.convolve(r[3], h)[: r[3].size]) for r in rows}
    print(f"{block.id}: {len(train)} training captures, {len(rows) - len(train)} held out; "
          f"ESR without -> with a shared FIR of {', '.join(map(str, args.taps))} taps")
    for name, ho, _, _ in rows:
        cells = "  ".join(f"{results[n][name]:.4f}" for n in args.taps)
        print(f"  {name:34s} {'held out' if ho else '        '} {base[name]:.4f} -> {cells}")
    for label, sel in (("training", [r[0] for r in rows if not r[1]]), ("held-out", [r[0] for r in rows if r[1]])):
        if not sel:
            continue
        med = lambda d: float(np.median([d[k] for k in sel]))  # noqa: E731
        worst = lambda d: float(np.max([d[k] for k in sel]))  # noqa: E731
        cells = "  ".join(f"{n} taps {med(results[n]):.4f} / {worst(results[n]):.4f}" for n in args.taps)
        print(f"{label} median / worst: without {med(base):.4f} / {worst(base):.4f};  {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What a topology can do at ONE setting: fit one capture of a fidelity project, no knobs.

The fidelity benchmark asks for a knob map that generalises; this asks the simpler
question underneath it: can the topology explain the plugin at one setting at all?
It prints the fit's ESR on that capture, the latency and the structural choices the
fitter made (output low-pass, output all-pass, the amp's tone-stack position)::

    python benchmarks/fidelity.py --plugin metalhead --minutes 4   # makes the project
    python benchmarks/single_capture.py metalhead Tone_7p5 [--steps 600]

WORK defaults to the fidelity benchmark's ($TMPDIR/unit-fidelity).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("key", help="fidelity project (ds1, studiopre, metalhead)")
    ap.add_argument("capture", help="a substring of the capture's name, e.g. Tone_7p5")
    ap.add_argument("--steps", type=int, default=600, help="per-capture Adam steps (default 600)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "unit-fidelity"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from dsp.fit import FitConfig
    from dsp.twin import fit_block
    from unit_tui.project import Project
    from unit_tui.training import load_items

    root = Path(args.work) / args.key
    if not root.exists():
        ap.error(f"no project at {root}: run benchmarks/fidelity.py --plugin {args.key} first")
    project = Project.open(root)
    loaded = load_items(project, project.rig.blocks[0].id)
    items = [it for it in loaded.items if args.capture in it.name][:1]
    if not items:
        ap.error(f"no capture matching {args.capture!r} in {root}")
    it = items[0]
    it.holdout, it.knobs = False, {}
    cfg = FitConfig(per_capture_steps=args.steps, curve_steps=10, joint_steps=args.steps // 2)
    t = time.time()
    block = fit_block(loaded.block.topology, [], [it], config=cfg)
    rep = block.report()
    shared = block.to_dict()["shared_physical"]
    choices = {k: int(shared[k]) for k in ("output_lp", "allpass", "tonestack_position") if k in shared}
    print(f"{args.key} {it.name}: ESR {rep['train']['median']:.4f} ({rep['train']['verdict']}), "
          f"latency {rep['items'][0]['latency_samples']:.2f} samples, {choices}, "
          f"{time.time() - t:.0f} s ({args.steps} steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

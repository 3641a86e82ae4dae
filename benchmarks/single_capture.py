"""What a topology can do at ONE setting: fit one capture of a fidelity project, no knobs.

The fidelity benchmark asks for a knob map that generalises; this asks the simpler
question underneath it: can the topology explain the plugin at one setting at all?
It prints the fit's ESR on that capture, the latency and the structural choices the
fitter made (output low-pass, output all-pass, the amp's tone-stack position, whether
its output keeps DC and whether its first stage splits into bands)::

    python benchmarks/fidelity.py --plugin metalhead --minutes 4   # makes the project
    python benchmarks/single_capture.py metalhead Tone_7p5 [--steps 600]
    python benchmarks/single_capture.py metalhead Chaos_Full_14 --variant band_split=1
    python benchmarks/single_capture.py studiopre Master_10p0 --bands guitarix

It also prints where the error is: its share of the error power and the ESR within
each frequency band. ``--bands`` fits the experimental multiband amp
(``benchmarks/experiments/amp_multiband.py``) instead of the product's; ``--oversample``
changes the twin's oversampling factor (the product's is 2).

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
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("key", help="fidelity project (ds1, studiopre, metalhead)")
    ap.add_argument("capture", help="a substring of the capture's name, e.g. Tone_7p5")
    ap.add_argument("--steps", type=int, default=600, help="per-capture Adam steps (default 600)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "unit-fidelity"))
    ap.add_argument("--bands", choices=("off", "guitarix", "generic"), default="off",
                    help="experimental multiband amp: crossovers at Guitarix's 86/210/1200/6531 Hz "
                         "or at 100/300/1000/3000 Hz, learnable either way (default off)")
    ap.add_argument("--variant", action="append", metavar="NAME=VALUE",
                    help="set a structural variant instead of trying it (FitConfig.variants), e.g. "
                         "drive_section=1; repeatable")
    ap.add_argument("--oversample", type=int, default=2, help="the twin's oversampling (default 2)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from dsp.fit import FitConfig
    from fidelity import parse_variants
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
    experimental = args.bands != "off"
    if experimental:
        if loaded.block.topology != "amp":
            ap.error("--bands applies to amp blocks only")
        from experiments import amp_multiband

        amp_multiband.install({"guitarix": amp_multiband.GUITARIX_CROSSOVERS_HZ,
                               "generic": amp_multiband.GENERIC_CROSSOVERS_HZ}[args.bands])
    cfg = FitConfig(per_capture_steps=args.steps, curve_steps=10, joint_steps=args.steps // 2,
                    oversample=args.oversample,
                    variants=parse_variants(args.variant))
    t = time.time()
    block = fit_block(loaded.block.topology, [], [it], config=cfg)
    rep = block.report()
    shared = block.to_dict()["shared_physical"]
    choices = {k: int(shared[k]) for k in ("output_lp", "allpass", "tonestack_position", "output_dc", "band_split",
                                          "drive_section")
               if k in shared}
    print(f"{args.key} {it.name}: ESR {rep['train']['median']:.4f} ({rep['train']['verdict']}), "
          f"latency {rep['items'][0]['latency_samples']:.2f} samples, {choices}, "
          f"{time.time() - t:.0f} s ({args.steps} steps, bands {args.bands}, oversample {args.oversample})")
    if experimental:
        xo = {k: round(v, 3) for k, v in shared.items() if k.startswith("xo")}
        print(f"  crossovers after the fit: {xo}")
    print("  " + error_by_band(block, it, project.rig.sample_rate))
    return 0


EDGES_HZ = (0, 40, 160, 640, 2560, 5120, 10240, 15000, 24001)


def error_by_band(block, item, sample_rate) -> str:
    """Share of the error power / ESR within each frequency band, after the first 0.5 s."""
    import numpy as np

    from dsp.fit import shift_signal

    sr = int(sample_rate)
    y = shift_signal(np.asarray(item.target, np.float64), block.report()["items"][0]["latency_samples"])
    yh = block.render({}, np.asarray(item.input, np.float64), sr)[: len(y)].astype(np.float64)
    skip = sr // 2
    Y = np.abs(np.fft.rfft(y[skip:])) ** 2
    E = np.abs(np.fft.rfft((y - yh)[skip:])) ** 2
    f = np.fft.rfftfreq(len(y) - skip, 1 / sr)
    parts = []
    for a, b in zip(EDGES_HZ[:-1], EDGES_HZ[1:]):
        m = (f >= a) & (f < min(b, sr / 2 + 1))
        parts.append(f"{a}-{b} Hz {E[m].sum() / E.sum():.2f}/{E[m].sum() / (Y[m].sum() + 1e-30):.2f}")
    return "error share/ESR by band: " + ", ".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())

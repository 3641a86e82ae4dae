"""Structural facts about a benchmark plugin, measured from its output (no source read).

    python benchmarks/structure_probe.py [ds1|studiopre|metalhead ...]

For each plugin, at its rig's reference setting (every knob at ``reference``), through
the same ``lv2file`` path as the fidelity benchmark (``benchmarks/lv2_render.py``):

* **Superposition across bands.** y(a + b) - y(a) - y(b), as dB re y(a + b), for two
  sines far apart in frequency (110 Hz and 3.1 kHz) and for two sines close together
  (2.9 and 3.1 kHz). Any nonlinearity that sees both tones at once (one clipper, or
  a chain of them) leaves a residual of the order of its distortion in both cases; a
  multiband design (split, clip each band, sum) leaves almost none for the far pair.
  Our ``amp`` and ``drive`` topologies are single-band: their own figure is printed too
  (an untrained ``amp`` twin at matched drive), so the comparison is like for like.
* **Distortion against level.** THD of a 1 kHz sine at -26 and -6 dBFS. A clipper
  that is smooth at the origin distorts less at low level (about 20 dB less per
  20 dB for the 3rd harmonic); a kink or a coarse table keeps its distortion.
* **Aliasing.** Power of the components of a 4.1 kHz sine (-6 dBFS) that are folded
  harmonics (above Nyquist before folding), dB re the output: a plugin that runs its
  nonlinearity at the base rate without oversampling aliases; a 2x-oversampled twin
  removes most of it, which caps the ESR it can reach.

Prints one table per plugin; ``--json PATH`` writes the figures. Needs ``lv2file`` and
``guitarix-lv2`` (apt-get install lv2file guitarix-lv2).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lv2_render  # noqa: E402

SR = 48000
SECONDS = 1.5


def _tone(f_hz: float, dbfs: float) -> np.ndarray:
    t = np.arange(int(SECONDS * SR)) / SR
    return (10 ** (dbfs / 20) * np.sin(2 * math.pi * f_hz * t)).astype(np.float64)


def _steady(y: np.ndarray) -> np.ndarray:
    """The last second (transients of the start gone), Blackman-windowed later."""
    return np.asarray(y, np.float64)[-SR:]


def superposition_db(render, f_a: float, f_b: float, dbfs: float) -> float:
    """10 log10 of |y(a+b) - y(a) - y(b)|^2 / |y(a+b)|^2 over the steady part."""
    a, b = _tone(f_a, dbfs), _tone(f_b, dbfs)
    yab, ya, yb = (_steady(render(s)) for s in (a + b, a, b))
    r = yab - ya - yb
    return 10 * math.log10(float(np.sum(r ** 2)) / float(np.sum(yab ** 2)) + 1e-30)


def _spectrum(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = _steady(y)
    return np.abs(np.fft.rfft(y * np.blackman(len(y)))) ** 2, np.fft.rfftfreq(len(y), 1 / SR)


def _power_at(P: np.ndarray, f: np.ndarray, hz: float, half_width: float = 8.0) -> float:
    return float(P[(f >= hz - half_width) & (f <= hz + half_width)].sum())


def thd_db(render, f0: float, dbfs: float, harmonics: int = 11) -> float:
    P, f = _spectrum(render(_tone(f0, dbfs)))
    fund = _power_at(P, f, f0)
    hs = [k * f0 for k in range(2, harmonics + 1) if k * f0 < SR / 2 - 50]
    return 10 * math.log10(sum(_power_at(P, f, h) for h in hs) / fund + 1e-30)


def aliasing_db(render, f0: float, dbfs: float, harmonics: int = 40) -> float:
    """Power of the folded harmonics (k f0 > Nyquist) re the output's total power."""
    P, f = _spectrum(render(_tone(f0, dbfs)))
    folded = set()
    for k in range(2, harmonics + 1):
        fk = (k * f0) % SR
        fk = min(fk, SR - fk)
        if k * f0 > SR / 2 and all(abs(fk - j * f0) > 50 for j in range(1, harmonics + 1) if j * f0 < SR / 2):
            folded.add(round(fk))
    return 10 * math.log10(sum(_power_at(P, f, h) for h in folded) / float(P.sum()) + 1e-30)


def probe(render) -> dict[str, float]:
    return {
        "superposition_far_db": superposition_db(render, 110.0, 3100.0, -12.0),
        "superposition_near_db": superposition_db(render, 2900.0, 3100.0, -12.0),
        "thd_minus26_db": thd_db(render, 1000.0, -26.0),
        "thd_minus6_db": thd_db(render, 1000.0, -6.0),
        "aliasing_db": aliasing_db(render, 4100.0, -6.0),
    }


def plugin_render(key: str):
    from unit_tui.rig import load_rig

    spec = lv2_render.load_spec(key)
    rig = load_rig(lv2_render.rig_path(key))
    setting = rig.blocks[0].reference_setting()
    return (lambda x: lv2_render.render(spec, x, SR, setting)), setting


def twin_render(topology: str, drive_db: float):
    """An untrained single-band twin (declared defaults) with its input gain at ``drive_db``."""
    import torch

    from dsp.topologies import make_topology

    torch.set_num_threads(1)
    topo = make_topology(topology, SR, 2)
    gain = "pre_gain_db"
    raw = topo.raw_from_physical({gain: drive_db})

    def render(x):
        with torch.no_grad():
            return topo(torch.from_numpy(np.asarray(x, np.float64))[None], raw, exact=True)[0].numpy()
    return render


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("keys", nargs="*", default=list(lv2_render.PLUGIN_KEYS))
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    rows = {}
    for key in args.keys:
        render, setting = plugin_render(key)
        rows[key] = {"setting": setting, **probe(render)}
    for name, topology, drive in (("twin:amp", "amp", 20.0), ("twin:drive", "drive", 30.0)):
        rows[name] = {"setting": {"pre_gain_db": drive}, **probe(twin_render(topology, drive))}
    print("structure probe (reference settings; dB re the output; see the module docstring)")
    print(f"  {'block':<12} {'superpos far':>13} {'superpos near':>14} {'THD -26':>8} {'THD -6':>8} {'aliasing':>9}")
    for key, r in rows.items():
        print(f"  {key:<12} {r['superposition_far_db']:13.1f} {r['superposition_near_db']:14.1f} "
              f"{r['thd_minus26_db']:8.1f} {r['thd_minus6_db']:8.1f} {r['aliasing_db']:9.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
        print(f"  figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

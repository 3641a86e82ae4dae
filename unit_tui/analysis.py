"""What the results screen shows, computed from a trained twin (no UI here).

* :func:`knob_curves` — per knob, the learned curve: the knob swept over its range with
  every other knob at its reference, through :meth:`FittedBlock.controls`, and which DSP
  controls it moves (by how much of each control's range);
* :func:`frequency_response` — the magnitude of the block's linear part, H1 = Pxy / Pxx
  (Welch), smoothed on a log-frequency grid; :func:`capture_response` compares the twin's
  with the capture's at one captured setting;
* :func:`accuracy_text` — the held-out accuracy in plain words.

numpy/scipy/torch are imported inside the functions: call them from a thread worker.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .jobs import verdict

CURVE_POINTS = 21
RESPONSE_POINTS = 72
MOVED_FRACTION = 0.005  # a control "moves" when the knob changes it by 0.5 % of its range


@dataclass
class KnobCurve:
    knob: str
    xs: list[float]
    values: dict[str, list[float]]            # control -> value at each x
    moved: list[tuple[str, float]]            # (control, fraction of its range), most moved first
    units: dict[str, str] = field(default_factory=dict)

    def describe(self, limit: int = 4) -> str:
        if not self.moved:
            return f"{self.knob}: moves no DSP control (the twin ignores it)"
        parts = []
        for name, _frac in self.moved[:limit]:
            v = self.values[name]
            unit = self.units.get(name, "")
            parts.append(f"{name} {min(v):.3g}…{max(v):.3g}{(' ' + unit) if unit else ''}")
        more = f" (+{len(self.moved) - limit} more)" if len(self.moved) > limit else ""
        return f"{self.knob} drives " + ", ".join(parts) + more


def _fraction(values: list[float], spec: dict | None) -> float:
    lo, hi = min(values), max(values)
    if spec is None:
        scale = max(abs(lo), abs(hi), 1e-9)
        return (hi - lo) / scale
    if spec.get("scale") == "log" and lo > 0 and spec.get("minimum", 0) > 0:
        return math.log(hi / lo) / max(1e-9, math.log(spec["maximum"] / spec["minimum"]))
    return (hi - lo) / max(1e-9, spec.get("maximum", 1.0) - spec.get("minimum", 0.0))


def knob_curves(model, block, points: int = CURVE_POINTS) -> list[KnobCurve]:
    """The learned knob -> control curves of ``model`` (a FittedBlock) for ``block``'s knobs."""
    from dsp.twin import topology_controls

    specs = {c["name"]: c for c in topology_controls(model.topology)}
    reference = {k.name: float(k.held_value) for k in block.modelled_knobs}
    out = []
    for knob in block.modelled_knobs:
        if knob.name not in model.knob_names:
            continue
        if knob.kind == "switch":
            xs = [float(p) for p in knob.positions]
        else:
            xs = [knob.minimum + (knob.maximum - knob.minimum) * i / (points - 1) for i in range(points)]
        rows = [model.controls({**reference, knob.name: x}) for x in xs]
        values = {name: [float(r[name]) for r in rows] for name in rows[0]}
        moved = [(name, _fraction(v, specs.get(name))) for name, v in values.items()]
        moved = sorted([m for m in moved if m[1] > MOVED_FRACTION], key=lambda m: -m[1])
        out.append(KnobCurve(knob.name, xs, values, moved, {n: specs[n]["unit"] for n in specs}))
    return out


def frequency_response(x, y, sample_rate: float, points: int = RESPONSE_POINTS,
                       f_lo: float = 30.0, f_hi: float | None = None):
    """``(freqs_hz, magnitude_db)`` of y's linear part relative to x (Welch H1 estimate),
    averaged in log-spaced bands (about 1/6 octave at 72 points)."""
    import numpy as np
    from scipy.signal import csd, welch

    n = min(len(x), len(y))
    x = np.asarray(x[:n], dtype=np.float64)
    y = np.asarray(y[:n], dtype=np.float64)
    nper = int(min(8192, max(256, 2 ** int(np.log2(max(256, n // 8))))))
    f, pxy = csd(x, y, fs=sample_rate, nperseg=nper)
    _, pxx = welch(x, fs=sample_rate, nperseg=nper)
    h = np.abs(pxy) / np.maximum(pxx, 1e-30)
    f_hi = f_hi or min(20000.0, 0.45 * sample_rate)
    edges = np.geomspace(f_lo, f_hi, points + 1)
    freqs, mags = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (f >= lo) & (f < hi)
        if not sel.any():
            continue
        freqs.append(float(np.sqrt(lo * hi)))
        mags.append(float(20 * np.log10(max(np.sqrt(np.mean(h[sel] ** 2)), 1e-9))))
    return freqs, mags


def capture_response(project, model, block_id: str, capture_name: str) -> dict:
    """The twin's and the capture's response at a captured setting (whole test signal)."""
    from .audio_io import read_capture

    block = project.rig.block(block_id)
    cap = next(c for c in project.plan().for_block(block_id) if c.filename.removesuffix(".wav") == capture_name)
    loaded = project.load_input()
    x, sr = loaded.audio, loaded.sample_rate
    y_cap = read_capture(project.path(cap.relpath)).audio
    modelled = {k.name for k in block.modelled_knobs}
    knobs = {k: v for k, v in cap.setting.items() if k in modelled}
    y_twin = model.render(knobs, x, sr)
    f, cap_db = frequency_response(x, y_cap, sr)
    f2, twin_db = frequency_response(x, y_twin, sr)
    return {"capture": capture_name, "freqs": f, "capture_db": cap_db, "twin_freqs": f2, "twin_db": twin_db,
            "setting": knobs}


def accuracy_text(report: dict | None) -> str:
    """Held-out accuracy stated plainly (one or two sentences)."""
    if not report:
        return "No report: train the block first."
    hold, train = report.get("holdout"), report.get("train")
    parts = []
    if hold:
        n = hold.get("count", 0)
        parts.append(
            f"At {n} setting{'s' if n != 1 else ''} the twin never trained on, its error (ESR) is "
            f"{hold['median']:.4f} median ({verdict(hold['median'])}), worst {hold['worst']:.4f} "
            f"({verdict(hold['worst'])}).")
    else:
        parts.append("No held-out captures, so accuracy at unseen settings is unknown: add chaos presets "
                     "(n: next captures) and train again.")
    if train:
        parts.append(f"On its {train.get('count', 0)} training captures: median {train['median']:.4f} "
                     f"({verdict(train['median'])}).")
    g_hold, g_train = report.get("holdout_guitar"), report.get("train_guitar")
    if g_hold or g_train:
        g = g_hold or g_train
        where = "held out" if g_hold else "training captures"
        parts.append(f"On the guitar phrases alone (what a player hears; {where}): median {g['median']:.4f} "
                     f"({verdict(g['median'])}), worst {g['worst']:.4f}.")
    if report.get("structure"):
        on = [k for k, v in report["structure"].items() if v]
        parts.append(f"Structure: {', '.join(on) if on else 'none of ' + ', '.join(report['structure'])} on "
                     "(the rig's structure = {...} sets them).")
    if report.get("sections"):
        on = [k for k, v in report["sections"].items() if v]
        parts.append(f"Output sections decided from the captures: {', '.join(on) if on else 'none'}.")
    return " ".join(parts)


__all__ = ["KnobCurve", "knob_curves", "frequency_response", "capture_response", "accuracy_text"]

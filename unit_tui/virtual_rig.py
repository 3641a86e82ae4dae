"""A built-in virtual rig: a drive pedal and an amp in plain numpy/scipy, with knobs.

It stands in for Logic + Helix in the demo and in tests, so the whole workflow runs
without hardware. It is NOT the trained twin (that is ``dsp``): it is written
independently, as an outside "device" whose knobs the trainer has to learn.

Use it from the shell through ``capture --command``::

    unit-trainer capture DIR --command 'python -m unit_tui.virtual_rig {block} {input} {output} {setting_json}'

Knobs are read by name; unknown knobs are ignored, missing ones sit at 5.
"""
from __future__ import annotations

import json
import sys

import numpy as np


def _biquad(kind: str, fs: float, f0: float, q: float = 0.7071, gain_db: float = 0.0):
    """RBJ cookbook biquad coefficients (b, a)."""
    f0 = min(max(f0, 10.0), 0.45 * fs)
    w = 2 * np.pi * f0 / fs
    cw, sw = np.cos(w), np.sin(w)
    alpha = sw / (2 * q)
    A = 10 ** (gain_db / 40)
    if kind == "lowpass":
        b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "highpass":
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "peak":
        b = [1 + alpha * A, -2 * cw, 1 - alpha * A]
        a = [1 + alpha / A, -2 * cw, 1 - alpha / A]
    elif kind in ("lowshelf", "highshelf"):
        s = 1 if kind == "lowshelf" else -1
        sq = 2 * np.sqrt(A) * alpha
        b = [A * ((A + 1) - s * (A - 1) * cw + sq), s * 2 * A * ((A - 1) - s * (A + 1) * cw),
             A * ((A + 1) - s * (A - 1) * cw - sq)]
        a = [(A + 1) + s * (A - 1) * cw + sq, -s * 2 * ((A - 1) + s * (A + 1) * cw),
             (A + 1) + s * (A - 1) * cw - sq]
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    b, a = np.asarray(b), np.asarray(a)
    return b / a[0], a / a[0]


def _filt(x, kind, fs, f0, q=0.7071, gain_db=0.0):
    from scipy.signal import lfilter

    b, a = _biquad(kind, fs, f0, q, gain_db)
    return lfilter(b, a, x)


def _k(setting: dict, name: str, default: float = 5.0) -> float:
    return float(setting.get(name, default)) / 10.0


def drive_pedal(x: np.ndarray, fs: float, setting: dict) -> np.ndarray:
    """A Tube-Screamer-like pedal: dry + clipped, band-limited gain path; tone; level."""
    attack = float(setting.get("Attack", 3))  # switch 1-6: brighter input high-pass as it rises
    drive = _k(setting, "Drive")
    bright = _k(setting, "Bright")
    level = _k(setting, "Level")
    hp = 80.0 * 2 ** ((attack - 1) * 0.6)  # 80 Hz .. ~640 Hz
    band = _filt(_filt(x, "highpass", fs, hp), "lowpass", fs, 5000.0)
    gain = 10 ** ((6 + 36 * drive) / 20)
    wet = np.tanh(gain * band + 0.05) - np.tanh(0.05)
    y = 0.5 * x + 0.5 * wet
    y = _filt(y, "lowpass", fs, 1500.0 * 2 ** (bright * 3.0), 0.6)
    return y * 10 ** ((-12 + 18 * level) / 20)


def amp(x: np.ndarray, fs: float, setting: dict) -> np.ndarray:
    """A high-gain amp: two asymmetric preamp stages, 3-band tone, power amp with sag."""
    pre = _k(setting, "Pre_Gain")
    y = _filt(x, "highpass", fs, 30.0)
    y = np.tanh(10 ** ((6 + 30 * pre) / 20) * y + 0.2) - np.tanh(0.2)
    y = _filt(y, "highpass", fs, 120.0)
    y = np.tanh(4.0 * y - 0.1) + np.tanh(0.1)
    y = _filt(y, "lowpass", fs, 6500.0)
    y = _filt(y, "lowshelf", fs, 120.0, 0.7, (_k(setting, "Bass") - 0.5) * 20)
    y = _filt(y, "peak", fs, 650.0, 0.8, (_k(setting, "Mid") - 0.5) * 18)
    y = _filt(y, "highshelf", fs, 2500.0, 0.7, (_k(setting, "Treble") - 0.5) * 20)
    y = y * 10 ** ((-18 + 24 * _k(setting, "Post_Gain")) / 20)
    y = np.tanh(1.5 * y + 0.1) / 1.5 - np.tanh(0.1) / 1.5  # phase inverter: Post_Gain drives it, Master does not
    master = _k(setting, "Master")
    drive = 10 ** ((-6 + 24 * master) / 20)
    sag = _k(setting, "Sag", 0.0)
    from scipy.signal import lfilter

    alpha = np.exp(-1.0 / (0.05 * fs))
    env = np.sqrt(lfilter([1 - alpha], [1, -alpha], (drive * y) ** 2) + 1e-12)
    g = drive / (1.0 + 2.0 * sag * env)
    bias = (_k(setting, "Bias") - 0.5) * 0.3
    y = np.tanh(g * y + bias) - np.tanh(bias)
    y = _filt(y, "highshelf", fs, 3000.0, 0.7, (_k(setting, "Presence") - 0.5) * 12)
    y = _filt(y, "peak", fs, 90.0, 1.0, (_k(setting, "Depth") - 0.5) * 12)
    return 0.5 * y


def render_block(block_id: str, x: np.ndarray, fs: float, setting: dict) -> np.ndarray:
    """Render ``x`` through the virtual block whose id contains 'amp' or else the pedal."""
    fn = amp if "amp" in block_id.lower() else drive_pedal
    y = fn(np.asarray(x, dtype=np.float64), fs, setting)
    return np.clip(y, -0.98, 0.98).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    import soundfile as sf

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4:
        print("usage: python -m unit_tui.virtual_rig BLOCK INPUT OUTPUT SETTING_JSON", file=sys.stderr)
        return 2
    block, inp, out, setting = argv
    x, fs = sf.read(inp, dtype="float32", always_2d=True)
    y = render_block(block, x.mean(axis=1), fs, json.loads(setting))
    sf.write(out, y, fs, subtype="PCM_24")
    return 0


if __name__ == "__main__":
    sys.exit(main())

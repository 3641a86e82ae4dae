"""How far from minimum-phase the fidelity benchmark's plugins are (prints its figures).

A grey-box twin made of analog-prototype filters and memoryless shapers has, at small
signal, a minimum-phase response (times a pure delay, which the latency removes). If
the device's response is not minimum-phase, such a twin cannot match it even with the
exact magnitude. This script measures that ceiling on each plugin, at its rig's
reference setting::

    python benchmarks/min_phase.py [--plugin ds1 --plugin studiopre --plugin metalhead]

For each plugin it renders the UNIT test signal (``benchmarks/lv2_render.py``), takes
the white-noise segment at -20 dBFS (20.8-21.45 s), and fits a causal 512-tap FIR from
input to output by least squares (``causal FIR``: how linear that segment is). Then the
minimum-phase filter with the FIR's exact magnitude (real cepstrum), at the best whole
delay 0..48 and the best gain: its ESR is what a minimum-phase twin cannot go below.
It also prints the latency the fitter would use (:func:`dsp.fit.excess_delay`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import lv2_render  # noqa: E402

SR = 48000
TAPS = 512
SEGMENT_S = (20.8, 21.45)  # white noise at -20 dBFS in the UNIT test signal


def min_phase(h: np.ndarray, n: int = 8192) -> np.ndarray:
    """The minimum-phase filter with the magnitude of ``h`` (folded real cepstrum)."""
    c = np.fft.ifft(np.log(np.abs(np.fft.fft(h, n)) + 1e-9)).real
    fold = np.zeros(n)
    fold[0], fold[1:n // 2], fold[n // 2] = 1.0, 2.0, 1.0
    return np.fft.ifft(np.exp(np.fft.fft(c * fold))).real[: len(h)]


def measure(key: str) -> dict:
    from dsp.fit import excess_delay
    from dsp.testsignal import generate_test_signal
    from unit_tui.rig import load_rig

    x, _ = generate_test_signal(SR, duration_s=32.0)
    rig = load_rig(lv2_render.rig_path(key))
    setting = rig.blocks[0].reference_setting()
    y = lv2_render.render(lv2_render.load_spec(key), x.astype(np.float32), SR, setting).astype(np.float64)
    lat = excess_delay(x, y, SR, int(0.05 * SR))[0]
    a, b = int(SEGMENT_S[0] * SR), int(SEGMENT_S[1] * SR)
    idx = np.arange(a, b)
    A = np.stack([x[idx - k] for k in range(TAPS)], 1)
    t = y[idx]
    h, *_ = np.linalg.lstsq(A, t, rcond=None)
    fir = float(np.sum((t - A @ h) ** 2) / np.sum(t ** 2))
    hm = min_phase(h)
    best = (np.inf, 0)
    for d in range(0, 49):
        yh = A @ np.concatenate([np.zeros(d), hm])[:TAPS]
        g = float(yh @ t) / max(float(yh @ yh), 1e-30)
        e = float(np.sum((t - g * yh) ** 2) / np.sum(t ** 2))
        best = min(best, (e, d))
    return {"plugin": key, "setting": setting, "latency": lat, "causal_fir_esr": fir,
            "min_phase_esr": best[0], "min_phase_delay": best[1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plugin", action="append", choices=lv2_render.PLUGIN_KEYS)
    args = ap.parse_args(argv)
    print(f"{'plugin':10} {'latency':>8} {'causal FIR ESR':>15} {'min-phase ESR':>14} {'at delay':>9}")
    for key in args.plugin or lv2_render.PLUGIN_KEYS:
        r = measure(key)
        print(f"{key:10} {r['latency']:8.2f} {r['causal_fir_esr']:15.4f} {r['min_phase_esr']:14.3f} "
              f"{r['min_phase_delay']:9d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

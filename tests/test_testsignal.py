"""dsp.testsignal: the generated signal, input recognition, latency and repeatability."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from dsp.testsignal import (
    NAM_V3_BLIPS_S,
    Segment,
    SignalLayout,
    analyse_input,
    generate_test_signal,
    log_sweep,
    measure_latency,
    repeatability_esr,
)


def _lowpass(x: np.ndarray, fc: float, sr: int, order: int = 2) -> np.ndarray:
    from scipy.signal import butter, lfilter

    b, a = butter(order, fc / (sr / 2))
    return lfilter(b, a, x)


def _delay(x: np.ndarray, d: int) -> np.ndarray:
    return np.concatenate([np.zeros(d, dtype=x.dtype), x])


def nam_v3_like(seed: int = 0, sr: int = 48000) -> np.ndarray:
    """A stand-in for the NAM trainer's input v3 with the same landmarks (see _V3_DATA_INFO)."""
    rng = np.random.default_rng(seed)
    n = 190 * sr
    x = np.zeros(n, np.float32)
    val = (0.3 * rng.standard_normal(9 * sr) * np.sin(np.linspace(0.3, 40, 9 * sr)) ** 2).astype(np.float32)
    x[: 9 * sr] = val  # 0-9 s validation
    x[504_000] = 0.9  # blips at 10.5 s and 11.5 s
    x[552_000] = 0.9
    x[12 * sr:15 * sr] = log_sweep(sr, 3.0, level_dbfs=-6)
    x[15 * sr:17 * sr] = 0.2 * rng.standard_normal(2 * sr)
    m = int(163.5 * sr)
    x[17 * sr:17 * sr + m] = 0.2 * rng.standard_normal(m) * np.sin(np.linspace(0, 300, m)) ** 2
    x[181 * sr:] = val  # 181-190 s validation again
    return x


# ---------------------------------------------------------------------------- generation


@pytest.mark.parametrize("sr", [44100, 48000])
def test_generated_signal_is_deterministic_peak_limited_and_laid_out_in_seconds(sr):
    x, layout = generate_test_signal(sr, seed=3)
    x2, layout2 = generate_test_signal(sr, seed=3)
    assert x.dtype == np.float32 and x.ndim == 1
    assert np.array_equal(x, x2) and layout == layout2
    assert x.size == 60 * sr and layout.n_frames == x.size and layout.duration_s == pytest.approx(60.0)
    assert float(np.max(np.abs(x))) <= 10 ** (-1 / 20)
    assert layout.kind == "unit" and layout.blips_s == (5.0, 5.4, 6.0)
    a, b, length = layout.repeat
    ia, ib, m = round(a * sr), round(b * sr), round(length * sr)
    assert np.array_equal(x[ia:ia + m], x[ib:ib + m]) and np.max(np.abs(x[ia:ia + m])) > 0.3
    # each level-tagged segment peaks at its level; silences are silent
    for seg in layout.segments:
        part = x[round(seg.start_s * sr):round(seg.end_s * sr)]
        if seg.kind == "silence":
            assert np.max(np.abs(part)) == 0.0, seg
        elif seg.level_dbfs is not None:
            assert 20 * np.log10(np.max(np.abs(part))) == pytest.approx(seg.level_dbfs, abs=0.1), seg
    kinds = {s.kind for s in layout.segments}
    assert {"blips", "sweep", "noise", "guitar", "repeat", "silence"} <= kinds
    assert sorted(s.level_dbfs for s in layout.segments if s.kind == "sweep") == [-40, -20, -6]
    # each blip is an isolated click
    for t in layout.blips_s:
        i = round(t * sr)
        assert abs(x[i]) > 0.8 and np.max(np.abs(x[i - sr // 10:i])) == 0 and np.max(np.abs(x[i + 1:i + sr // 10])) == 0


def test_seed_changes_the_music_not_the_landmarks():
    x0, l0 = generate_test_signal(48000, seed=0)
    x1, l1 = generate_test_signal(48000, seed=1)
    assert l0 == l1 and not np.array_equal(x0, x1)
    assert np.array_equal(x0[round(4.5 * 48000):round(16.5 * 48000)], x1[round(4.5 * 48000):round(16.5 * 48000)])


def test_other_durations_stretch_only_the_guitar():
    x, layout = generate_test_signal(48000, duration_s=40.0)
    assert x.size == 40 * 48000 and layout.repeat == (0.5, 36.0, 3.0)
    assert layout.segment("sweep_-6").start_s == 13.5
    with pytest.raises(ValueError):
        generate_test_signal(48000, duration_s=10.0)


def test_layout_round_trips_through_json():
    _, layout = generate_test_signal(44100)
    again = SignalLayout.from_dict(json.loads(json.dumps(layout.to_dict())))
    assert again == layout and isinstance(again.segments[0], Segment)
    empty = SignalLayout("unknown", 48000, 10)
    assert SignalLayout.from_dict(json.loads(json.dumps(empty.to_dict()))) == empty


# ---------------------------------------------------------------------------- analyse_input


@pytest.mark.parametrize("sr", [44100, 48000])
def test_analyse_recognises_our_signal(sr):
    x, layout = generate_test_signal(sr, seed=5)
    found = analyse_input(x, sr)
    assert found.kind == "unit"
    assert found.blips_s == layout.blips_s and found.repeat == layout.repeat
    assert found.segments == layout.segments and found.n_frames == x.size
    assert any("repeats" in n for n in found.notes)
    # after 24-bit quantisation too
    q = (np.round(x.astype(np.float64) * 2 ** 23) / 2 ** 23).astype(np.float32)
    assert analyse_input(q, sr).kind == "unit"


def test_analyse_notices_an_edited_copy_of_our_signal():
    x, _ = generate_test_signal(48000)
    x = x.copy()
    x[round(56.5 * 48000):round(57 * 48000)] *= 0.5
    found = analyse_input(x, 48000)
    assert found.kind == "unit" and found.repeat is None
    assert any("does not match" in n for n in found.notes)


def test_analyse_recognises_nam_v3_landmarks_fast():
    x = nam_v3_like()
    t0 = time.perf_counter()
    layout = analyse_input(x, 48000)
    assert time.perf_counter() - t0 < 1.0
    assert layout.kind == "nam_v3"
    assert layout.blips_s == NAM_V3_BLIPS_S == (10.5, 11.5)
    assert layout.repeat == (0.0, 181.0, 9.0)
    assert layout.segment("validation_2").start_s == 181.0


def test_unknown_signal_with_blips_and_repeat_is_analysed_generically_and_fast():
    x = np.concatenate([np.zeros(24000, np.float32), nam_v3_like(seed=2)])  # shifted: no longer v3
    t0 = time.perf_counter()
    layout = analyse_input(x, 48000)
    assert time.perf_counter() - t0 < 1.0
    assert layout.kind == "unknown"
    assert layout.blips_s == pytest.approx((11.0, 12.0), abs=1e-4)
    a, b, length = layout.repeat
    assert b - a == pytest.approx(181.0, abs=1e-4) and length == pytest.approx(9.0, abs=0.02)
    assert any("found 2 latency blips" in n for n in layout.notes)
    assert any("found a repeated segment" in n for n in layout.notes)


def test_unknown_noise_notes_say_what_was_not_found():
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(10 * 44100)).astype(np.float32)
    layout = analyse_input(x, 44100)
    assert layout.kind == "unknown" and layout.blips_s == () and layout.repeat is None
    text = " ".join(layout.notes)
    assert "no latency blips found" in text and "no repeated segment found" in text
    assert analyse_input(np.zeros(0, np.float32), 48000).notes


# ---------------------------------------------------------------------------- latency


@pytest.fixture(scope="module")
def sig48():
    return generate_test_signal(48000)


@pytest.mark.parametrize("fc,drive,invert", [(1000, 4.0, False), (2500, 10.0, True), (6000, 1.0, False)])
def test_latency_from_blips_through_lowpass_and_tanh(sig48, fc, drive, invert):
    x, layout = sig48
    y = np.tanh(drive * _lowpass(_delay(x, 37), fc, 48000))
    if invert:
        y = -y
    lat = measure_latency(y.astype(np.float32), x, layout, 48000)
    assert lat is not None and abs(lat - 37) <= 1


def test_latency_heavily_lowpassed_block_is_close(sig48):
    x, layout = sig48
    y = 0.5 * np.tanh(3 * _lowpass(_delay(x, 37), 300, 48000))
    lat = measure_latency(y, x, layout, 48000)
    assert lat is not None and 37 <= lat <= 40


def test_latency_zero_and_with_hum(sig48):
    x, layout = sig48
    assert measure_latency(x, x, layout, 48000) == 0
    t = np.arange(x.size + 64) / 48000
    y = 0.7 * _delay(x, 64) + 0.003 * np.sin(2 * np.pi * 60 * t)
    assert measure_latency(y, x, layout, 48000) == 64


def test_latency_without_blips_falls_back_to_cross_correlation(sig48):
    x, _ = sig48
    g = x[23 * 48000:33 * 48000]  # guitar only
    unknown = SignalLayout("unknown", 48000, g.size)
    y = np.tanh(3 * _lowpass(_delay(g, 37), 6000, 48000))
    lat = measure_latency(y, g, unknown, 48000)
    assert lat is not None and abs(lat - 37) <= 2


def test_latency_none_for_silence_and_beyond_max(sig48):
    x, layout = sig48
    assert measure_latency(np.zeros_like(x), x, layout, 48000) is None
    assert measure_latency(_delay(x, 48000), x, layout, 48000) is None  # a second late (> 50 ms)


def test_nam_blips_give_latency():
    x = nam_v3_like()
    layout = analyse_input(x, 48000)
    y = np.tanh(5 * _lowpass(_delay(x, 100), 3000, 48000))[: x.size]
    lat = measure_latency(y, x, layout, 48000)
    assert lat is not None and abs(lat - 100) <= 1


# ---------------------------------------------------------------------------- repeatability


def test_repeatability_esr(sig48):
    x, layout = sig48
    y = np.tanh(3 * _delay(x, 20))
    assert repeatability_esr(y, layout, 48000, 20) == pytest.approx(0.0, abs=1e-12)
    noisy = y + 0.01 * np.random.default_rng(0).standard_normal(y.size)
    esr = repeatability_esr(noisy, layout, 48000, 20)
    assert 1e-4 < esr < 0.1
    assert repeatability_esr(y, SignalLayout("unknown", 48000, x.size), 48000, 0) is None
    assert repeatability_esr(y[: 30 * 48000], layout, 48000, 20) is None  # too short


def test_guitar_spans_are_the_phrases_in_samples():
    """The report's second ESR covers the guitar phrases and the repeated phrase, in
    time order, in samples at the layout's rate, cut where a capture stops; the NAM
    signal (no such segments) has none."""
    from dsp.testsignal import GUITAR_KINDS

    x, layout = generate_test_signal(44100, duration_s=40.0)
    spans = layout.guitar_spans()
    want = sorted((round(g.start_s * 44100), round(g.end_s * 44100)) for g in layout.segments
                  if g.kind in GUITAR_KINDS)
    assert spans == tuple(want) and len(spans) == 6 and spans[-1][1] <= x.size
    assert {g.kind for g in layout.segments if g.kind not in GUITAR_KINDS} >= {"sweep", "noise", "blips"}
    a, b = spans[2]
    assert layout.guitar_spans(stop=(a + b) // 2) == spans[:2] + ((a, (a + b) // 2),)
    assert analyse_input(nam_v3_like(), 48000).guitar_spans() == ()

"""unit_tui.checks and unit_tui.audio_io: every capture check on small synthetic WAVs."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dsp.testsignal import SignalLayout, pluck
from unit_tui.audio_io import (
    CaptureReadError,
    atomic_write_bytes,
    read_capture,
    riff_header_state,
    write_wav_atomic,
)
from unit_tui.checks import (
    CheckContext,
    CheckResult,
    ReadinessTracker,
    Status,
    check_capture,
    closest_name,
    find_duplicates,
)

SR = 48000
BLIPS = (0.25, 0.40, 0.60)


def make_input(sr: int = SR, seconds: float = 2.0, seed: int = 0) -> tuple[np.ndarray, SignalLayout]:
    """A 2 s test signal: blips after silence, plucked notes and noise, one repeated phrase."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    x = np.zeros(n)
    for t in BLIPS:
        x[round(t * sr)] = 0.89
    i0 = round(0.7 * sr)
    for k, f in enumerate((110.0, 146.8, 196.0, 82.4)):
        s = i0 + k * sr // 8
        x[s:s + sr // 2] += 0.25 * pluck(f, sr // 2, sr, rng, t60=0.8)
    x[round(1.2 * sr):round(1.45 * sr)] += 0.15 * rng.standard_normal(round(0.25 * sr))
    a, b, m = round(0.75 * sr), round(1.55 * sr), round(0.3 * sr)
    x[b:b + m] = x[a:a + m]
    x = (x / np.max(np.abs(x)) * 0.89).astype(np.float32)
    x[: round(0.2 * sr)] = 0.0
    layout = SignalLayout("unknown", sr, n, blips_s=BLIPS, repeat=(0.75, 1.55, 0.3))
    return x, layout


@pytest.fixture(scope="module")
def sig():
    return make_input()


@pytest.fixture
def ctx(sig) -> CheckContext:
    x, layout = sig
    return CheckContext(input_audio=x, sample_rate=SR, layout=layout)


def block(x: np.ndarray, latency: int = 0, tail_s: float = 0.25, drive: float = 4.0, level: float = 0.5) -> np.ndarray:
    """A stand-in for a drive block: delay, one-pole low-pass, tanh, output level; plus a tail."""
    from scipy.signal import lfilter

    y = np.concatenate([np.zeros(latency), x, np.zeros(int(tail_s * SR) - latency)])
    a = np.exp(-2 * np.pi * 3000 / SR)
    y = lfilter([1 - a], [1, -a], y)
    return (level * np.tanh(drive * y)).astype(np.float32)


def write(path: Path, y: np.ndarray, sr: int = SR, subtype: str = "PCM_24", **kw) -> Path:
    sf.write(str(path), y, sr, subtype=subtype, **kw)
    return path


def assert_one_sentence_with_fix(problem: str) -> None:
    body = problem.rstrip(".")
    assert ". " not in body, problem  # one sentence
    assert ":" in problem, problem  # "what is wrong: how to fix it"


# ---------------------------------------------------------------------------- ready and notes


def test_good_capture_is_ready_with_latency_note_and_fingerprint(tmp_path, ctx, sig):
    x, _ = sig
    p = write(tmp_path / "Drive_5p0.wav", block(x, latency=64))
    r = check_capture(p, ctx, now=time.time() + 60)
    assert r.status == Status.READY, r.problems
    assert r.problems == [] and "latency 64 samples (1.33 ms)" in r.notes
    assert r.latency_samples == 64 and r.sample_rate == SR and r.channels == 1 and r.frames == x.size + SR // 4
    assert any("tail after the test signal (accepted)" in n for n in r.notes)
    assert any(n.startswith("repeatable") for n in r.notes)
    assert r.fingerprint is not None and r.fingerprint.ndim == 1 and 1000 < r.fingerprint.size < 5000
    assert r.summary == r.notes[0]


def test_missing_file(tmp_path, ctx):
    r = check_capture(tmp_path / "nope.wav", ctx)
    assert r.status == Status.MISSING


def test_sixteen_bit_accepted_with_note_float_accepted(tmp_path, ctx, sig):
    x, _ = sig
    r16 = check_capture(write(tmp_path / "a.wav", block(x), subtype="PCM_16"), ctx, now=time.time() + 60)
    assert r16.status == Status.READY and any("16-bit" in n and "24-bit" in n for n in r16.notes)
    rf = check_capture(write(tmp_path / "b.wav", block(x), subtype="FLOAT"), ctx, now=time.time() + 60)
    assert rf.status == Status.READY and not any("16-bit" in n for n in rf.notes)


def test_float_file_above_full_scale_is_not_clipping(tmp_path, ctx, sig):
    x, _ = sig
    y = block(x, level=1.6)
    r = check_capture(write(tmp_path / "hot.wav", y, subtype="FLOAT"), ctx, now=time.time() + 60)
    assert r.status == Status.READY, r.problems
    assert any("float file is not clipped" in n for n in r.notes)


# ---------------------------------------------------------------------------- problems


def test_wrong_sample_rate(tmp_path, ctx, sig):
    x, _ = sig
    r = check_capture(write(tmp_path / "a.wav", block(x), sr=44100), ctx, now=time.time() + 60)
    assert r.status == Status.INVALID
    assert "44.1 kHz" in r.problems[0] and "re-bounce at 48 kHz" in r.problems[0]
    assert_one_sentence_with_fix(r.problems[0])


def test_too_short(tmp_path, ctx, sig):
    x, _ = sig
    y = block(x, tail_s=0)[: x.size - SR // 2]
    r = check_capture(write(tmp_path / "a.wav", y), ctx, now=time.time() + 60)
    assert r.status == Status.INVALID
    assert "0.50 s shorter than the test signal" in r.problems[0] and "bounce the whole input.wav" in r.problems[0]
    assert_one_sentence_with_fix(r.problems[0])


def test_too_long_and_tail_within_limit(tmp_path, ctx, sig):
    x, _ = sig
    r = check_capture(write(tmp_path / "long.wav", block(x, tail_s=5.0)), ctx, now=time.time() + 60)
    assert r.status == Status.INVALID and "5.00 s longer than the test signal" in r.problems[0]
    assert_one_sentence_with_fix(r.problems[0])
    ok = check_capture(write(tmp_path / "ok.wav", block(x, tail_s=2.5)), ctx, now=time.time() + 60)
    assert ok.status == Status.READY and any("2.50 s of tail" in n for n in ok.notes)


@pytest.mark.parametrize("kind,expect", [
    ("same", "identical channels: using the left channel"),
    ("different", "using the mean of both channels"),
    ("left_silent", "silent left channel: using the right channel"),
])
def test_stereo_accepted_with_note(tmp_path, ctx, sig, kind, expect):
    x, _ = sig
    y = block(x)
    if kind == "same":
        st = np.stack([y, y], axis=1)
    elif kind == "different":
        st = np.stack([y, 0.8 * block(x, drive=6.0)], axis=1)
    else:
        st = np.stack([np.zeros_like(y), y], axis=1)
    r = check_capture(write(tmp_path / "st.wav", st), ctx, now=time.time() + 60)
    assert r.status == Status.READY, r.problems
    assert r.channels == 2 and any(expect in n for n in r.notes)


def test_silent(tmp_path, ctx, sig):
    x, _ = sig
    y = np.zeros(x.size, np.float32)
    y[100] = 1e-5  # -100 dBFS
    r = check_capture(write(tmp_path / "a.wav", y), ctx, now=time.time() + 60)
    assert r.status == Status.INVALID and "silent" in r.problems[0] and "muted" in r.problems[0]
    assert_one_sentence_with_fix(r.problems[0])


def test_clipped_pcm(tmp_path, ctx, sig):
    x, _ = sig
    y = np.clip(3.0 * block(x, tail_s=0, level=1.0), -1, 1)
    r = check_capture(write(tmp_path / "a.wav", y), ctx, now=time.time() + 60)
    assert r.status == Status.INVALID
    p = next(p for p in r.problems if p.startswith("clipped"))
    assert "turn the block's output level down" in p and "do not normalise" in p
    assert_one_sentence_with_fix(p)


def test_clipped_flat_top_below_full_scale(tmp_path, ctx, sig):
    x, _ = sig
    y = np.clip(8.0 * block(x, tail_s=0, level=1.0, drive=1.0), -0.9, 0.9)  # limited, then a float file
    r = check_capture(write(tmp_path / "a.wav", y, subtype="FLOAT"), ctx, now=time.time() + 60)
    assert r.status == Status.INVALID and any("flat at the same maximum" in p for p in r.problems)


def test_identical_to_input_is_bypassed(tmp_path, ctx, sig):
    x, _ = sig
    y = np.concatenate([np.zeros(32, np.float32), -0.5 * x])
    r = check_capture(write(tmp_path / "a.wav", y), ctx, now=time.time() + 60)
    assert r.status == Status.INVALID
    p = next(p for p in r.problems if "bypassed" in p)
    assert "identical to the test signal" in p and "switch it on" in p
    assert_one_sentence_with_fix(p)
    assert r.latency_samples == 32


def test_bounce_started_early_blips_not_found(tmp_path, ctx, sig):
    x, _ = sig
    y = np.concatenate([np.zeros(SR // 2, np.float32), block(x, tail_s=0)])  # half a second of lead-in
    r = check_capture(write(tmp_path / "a.wav", y), ctx, now=time.time() + 60)
    assert r.status == Status.INVALID and r.latency_samples is None
    assert any("no response to the latency blips" in p for p in r.problems)


def test_not_audio_and_corrupt(tmp_path, ctx):
    txt = tmp_path / "a.wav"
    txt.write_text("these are my lyrics, not audio\n" * 20)
    r = check_capture(txt, ctx, now=time.time() + 60)
    assert r.status == Status.INVALID and "not a readable audio file" in r.problems[0]
    with pytest.raises(CaptureReadError):
        read_capture(txt)
    garbage = tmp_path / "b.wav"
    garbage.write_bytes(b"RIFF" + struct.pack("<I", 4 + 2000) + b"WAVE" + os.urandom(2000))
    r2 = check_capture(garbage, ctx, now=time.time() + 60)
    assert r2.status == Status.INVALID and r2.problems


def test_flac_named_wav_is_accepted_with_note(tmp_path, ctx, sig):
    x, _ = sig
    p = tmp_path / "a.wav"
    sf.write(str(p), block(x), SR, format="FLAC", subtype="PCM_24")
    assert riff_header_state(p) == (False, "not a WAV file")
    r = check_capture(p, ctx, now=time.time() + 60)
    assert r.status == Status.READY and any("not WAV" in n for n in r.notes)


# ---------------------------------------------------------------------------- half-written files


def test_truncated_wav_is_writing_then_interrupted(tmp_path, ctx, sig):
    x, _ = sig
    p = write(tmp_path / "a.wav", block(x))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    ok, reason = riff_header_state(p)
    assert not ok and reason.startswith("header says") and "still being written or the bounce was interrupted" in reason
    mtime = p.stat().st_mtime
    assert check_capture(p, ctx, now=mtime + 1).status == Status.WRITING
    r = check_capture(p, ctx, now=mtime + 60)
    assert r.status == Status.INVALID and "the file ends early" in r.problems[0] and "bounce it again" in r.problems[0]
    assert_one_sentence_with_fix(r.problems[0])


def _wav_header(n_data: int, riff_size: int | None = None, data_size: int | None = None, channels: int = 1,
                bits: int = 24, sr: int = SR) -> bytes:
    ba = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, sr, sr * ba, ba, bits)
    ds = n_data if data_size is None else data_size
    rs = (4 + 8 + len(fmt) + 8 + n_data + (n_data & 1)) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", rs) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + \
        struct.pack("<I", ds)


def test_header_written_first_then_data_appended(tmp_path, ctx):
    p = tmp_path / "a.wav"
    p.write_bytes(_wav_header(0))  # what a writer puts down before any audio
    assert riff_header_state(p)[0] is True
    mtime = p.stat().st_mtime
    assert check_capture(p, ctx, now=mtime + 1).status == Status.WRITING  # no frames yet
    assert check_capture(p, ctx, now=mtime + 60).status == Status.INVALID
    with open(p, "ab") as f:
        f.write(b"\x01\x00\x00" * 4800)  # audio arrives; sizes not updated yet
    ok, reason = riff_header_state(p)
    assert not ok and "header says" in reason and "never finalised" in reason
    mtime = p.stat().st_mtime
    assert check_capture(p, ctx, now=mtime + 1).status == Status.WRITING
    r = check_capture(p, ctx, now=mtime + 60)
    assert r.status == Status.INVALID and "never finished" in r.problems[0]


def test_riff_header_states(tmp_path):
    good = write(tmp_path / "good.wav", np.zeros(1000, np.float32))
    assert riff_header_state(good) == (True, "header consistent with the file length")
    rf64 = tmp_path / "big.wav"
    sf.write(str(rf64), np.zeros(1000, np.float32), SR, format="RF64", subtype="PCM_24")
    assert riff_header_state(rf64)[0] is True
    # odd data size: pad byte present (counted) or missing -- both fine
    odd = tmp_path / "odd.wav"
    odd.write_bytes(_wav_header(3, bits=8) + b"\x80\x80\x80" + b"\x00")
    assert riff_header_state(odd)[0] is True
    odd.write_bytes(_wav_header(3, bits=8) + b"\x80\x80\x80")
    assert riff_header_state(odd)[0] is True
    # junk after the declared end
    junk = tmp_path / "junk.wav"
    junk.write_bytes(good.read_bytes() + b"\x00" * 5000)
    assert riff_header_state(junk)[0] is False
    # data chunk promising more than the file holds (RIFF size consistent)
    data = good.read_bytes()
    short = tmp_path / "short.wav"
    hdr = _wav_header(3000, riff_size=4 + 8 + 16 + 8 + 1500, data_size=3000)
    short.write_bytes(hdr + b"\x00" * 1500)
    ok, reason = riff_header_state(short)
    assert not ok and "file has" in reason
    assert riff_header_state(tmp_path / "none.wav")[0] is False  # missing file
    notwav = tmp_path / "x.wav"
    notwav.write_bytes(b"ID3\x03" + b"\x00" * 100)
    assert riff_header_state(notwav) == (False, "not a WAV file")
    empty = tmp_path / "e.wav"
    empty.write_bytes(b"")
    assert riff_header_state(empty)[0] is False
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:44] + b"\x00" * 100)  # header of a 3 kB file, 144 bytes on disk
    ok, reason = riff_header_state(cut)
    assert not ok and reason.startswith("header says 3.0 kB, file has 0.1 kB")


def test_riff_reason_uses_megabytes(tmp_path):
    p = write(tmp_path / "a.wav", np.zeros(400_000, np.float32))  # 1.2 MB at 24-bit
    p.write_bytes(p.read_bytes()[:600_000])
    ok, reason = riff_header_state(p)
    assert reason == "header says 1.2 MB, file has 0.6 MB: still being written or the bounce was interrupted"


# ---------------------------------------------------------------------------- readiness tracker


def test_readiness_tracker(tmp_path, sig):
    x, _ = sig
    tr = ReadinessTracker()
    p = tmp_path / "a.wav"
    assert tr.observe(p, 0.0) == Status.MISSING
    write(p, x)
    assert tr.observe(p, 10.0) == Status.WRITING  # first sight
    assert tr.observe(p, 10.2) == Status.WRITING  # unchanged, but not for 0.4 s yet
    assert tr.observe(p, 10.5) == Status.READY
    with open(p, "ab") as f:  # grows again: the header no longer matches
        f.write(b"\x00" * 300)
    assert tr.observe(p, 11.0) == Status.WRITING
    assert tr.observe(p, 11.5) == Status.WRITING  # stable, but the header disagrees
    assert tr.observe(p, 20.0) == Status.READY  # stable for settle_s: hand it to check_capture (INVALID)
    p.unlink()
    assert tr.observe(p, 21.0) == Status.MISSING
    p.write_bytes(_wav_header(0))  # header only, no frames
    assert tr.observe(p, 30.0) == Status.WRITING
    assert tr.observe(p, 31.0) == Status.WRITING


# ---------------------------------------------------------------------------- duplicates and names


def test_find_duplicates_flags_both_only_when_settings_differ(tmp_path, ctx, sig):
    x, _ = sig
    y = block(x, latency=10)
    fa = check_capture(write(tmp_path / "a.wav", y), ctx, now=time.time() + 60).fingerprint
    fb = check_capture(write(tmp_path / "b.wav", y), ctx, now=time.time() + 60).fingerprint
    fc = check_capture(write(tmp_path / "c.wav", block(x, latency=10, drive=4.2)), ctx, now=time.time() + 60).fingerprint
    assert np.array_equal(fa, fb)
    ref = {"Drive": 5.0, "Bright": 5.0}
    items = {
        "Blk/01_Single_Sweeps/Drive_5p0.wav": (fa, ref),
        "Blk/01_Single_Sweeps/Bright_5p0.wav": (fb, dict(ref)),  # same setting: fine
        "Blk/02_Chaos_Mode/Chaos_Full_07.wav": (fb, {"Drive": 7.3, "Bright": 1.1}),
        "Blk/02_Chaos_Mode/Chaos_Full_08.wav": (fc, {"Drive": 7.4, "Bright": 1.1}),
        "Blk/02_Chaos_Mode/Chaos_Full_09.wav": (None, {"Drive": 1.0, "Bright": 1.0}),
    }
    d = find_duplicates(items)
    assert set(d) == {"Blk/01_Single_Sweeps/Drive_5p0.wav", "Blk/01_Single_Sweeps/Bright_5p0.wav",
                      "Blk/02_Chaos_Mode/Chaos_Full_07.wav"}
    assert d["Blk/01_Single_Sweeps/Drive_5p0.wav"] == \
        "identical to Chaos_Full_07.wav although the settings differ: was the knob turned?"
    assert d["Blk/02_Chaos_Mode/Chaos_Full_07.wav"].startswith("identical to Bright_5p0.wav")
    assert find_duplicates({"a": (fa, ref), "b": (fb, ref)}) == {}


def test_find_duplicates_is_fast_for_150_captures():
    rng = np.random.default_rng(0)
    base = rng.normal(-30, 10, size=(150, 2080)).astype(np.float32)
    items = {f"Chaos_Full_{i:03d}.wav": (base[i], {"Drive": i / 10}) for i in range(150)}
    items["Chaos_Full_149.wav"] = (base[3].copy(), {"Drive": 14.9})
    t0 = time.perf_counter()
    d = find_duplicates(items)
    assert time.perf_counter() - t0 < 1.0
    assert set(d) == {"Chaos_Full_003.wav", "Chaos_Full_149.wav"}


def test_with_problem_returns_a_copy():
    r = CheckResult(Status.READY, notes=["latency 3 samples (0.06 ms)"])
    r2 = r.with_problem("identical to X.wav although the settings differ: was the knob turned?")
    assert r.status == Status.READY and r.problems == []
    assert r2.status == Status.INVALID and r2.summary.startswith("identical to X.wav")
    assert CheckResult(Status.READY).summary == "ok"


def test_closest_name():
    expected = ["01_Horizon_Pedal_Drive_0p0.wav", "01_Horizon_Pedal_Drive_5p0.wav", "01_Horizon_Pedal_Attack_3.wav"]
    assert closest_name("01_horizon_pedal_drive_5.0.wav", expected) == "01_Horizon_Pedal_Drive_5p0.wav"
    assert closest_name("01_Horizon_Pedal_Drive_5p0 (1).wav", expected) == "01_Horizon_Pedal_Drive_5p0.wav"
    assert closest_name("01_Horizon_Pedal_Atack_3.wav", expected) == "01_Horizon_Pedal_Attack_3.wav"
    assert closest_name("vocals_take2.wav", expected) is None
    assert closest_name("x.wav", []) is None


# ---------------------------------------------------------------------------- audio_io


def test_read_capture_stereo_mean_and_note(tmp_path):
    a = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    p = write(tmp_path / "s.wav", np.stack([a, 0.2 * a[::-1]], axis=1), subtype="FLOAT")
    loaded = read_capture(p)
    assert loaded.channels == 2 and loaded.frames == 1000 and loaded.subtype == "FLOAT"
    assert loaded.note == "stereo file: using the mean of both channels"
    assert np.allclose(loaded.audio, 0.5 * (a + 0.2 * a[::-1]), atol=1e-6) and loaded.audio.dtype == np.float32
    with pytest.raises(CaptureReadError, match="does not exist"):
        read_capture(tmp_path / "missing.wav")
    (tmp_path / "e.wav").write_bytes(b"")
    with pytest.raises(CaptureReadError, match="empty"):
        read_capture(tmp_path / "e.wav")


def test_atomic_writes_never_leave_partial_files(tmp_path):
    p = tmp_path / "input.wav"
    write_wav_atomic(p, np.zeros(480, np.float32), SR)
    assert sf.info(str(p)).subtype == "PCM_24"
    before = p.read_bytes()
    with pytest.raises(Exception):
        write_wav_atomic(p, np.zeros(480, np.float32), SR, subtype="NOT_A_SUBTYPE")
    assert p.read_bytes() == before
    atomic_write_bytes(tmp_path / "state.json", b"{}")
    atomic_write_bytes(tmp_path / "state.json", b'{"a": 1}')
    assert (tmp_path / "state.json").read_bytes() == b'{"a": 1}'
    assert sorted(q.name for q in tmp_path.iterdir()) == ["input.wav", "state.json"]


# ---------------------------------------------------------------------------- a real renderer


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
def test_sox_render_is_ready(tmp_path, ctx, sig):
    x, _ = sig
    inp = write(tmp_path / "input.wav", x)
    out = tmp_path / "Drive_10p0.wav"
    subprocess.run(["sox", str(inp), str(out), "gain", "-3", "overdrive", "10"], check=True,
                   capture_output=True)
    assert riff_header_state(out)[0] is True
    r = check_capture(out, ctx, now=time.time() + 60)
    assert r.status == Status.READY, r.problems
    assert r.latency_samples is not None and abs(r.latency_samples) <= 1

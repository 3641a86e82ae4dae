"""Capture checks: is a bounce complete, the right file, and usable for training?

Every problem is one sentence that says what is wrong and how to fix it. Nothing the
user made is ever modified: these functions only read.

* :func:`check_capture` runs every check on one file against the test signal.
* :func:`find_duplicates` flags captures that are identical although their knob
  settings differ (a knob that was not turned).
* :func:`closest_name` suggests the expected name for a stray file.
* :class:`ReadinessTracker` decides, while watching a folder live, when a file that
  is being bounced is finished and can be checked.

numpy + soundfile only (scipy is not needed).
"""
from __future__ import annotations

import difflib
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsp.testsignal import SignalLayout, measure_latency, repeatability_esr

from .audio_io import CaptureReadError, read_capture, read_riff_info
from .status import CheckResult, Status  # noqa: F401  (re-exported: the checks' vocabulary)

__all__ = [
    "Status",
    "CheckResult",
    "CheckContext",
    "check_capture",
    "capture_fingerprint",
    "find_duplicates",
    "closest_name",
    "ReadinessTracker",
]


@dataclass
class CheckContext:
    """What captures are checked against: the test signal and the thresholds."""

    input_audio: np.ndarray  # mono float32
    sample_rate: int
    layout: SignalLayout
    max_tail_s: float = 3.0
    clip_threshold: float = 0.999
    silence_dbfs: float = -70.0


# ---------------------------------------------------------------------------- helpers


def _khz(sr: int) -> str:
    k = sr / 1000.0
    return f"{k:g} kHz"


def _dur(seconds: float) -> str:
    s = abs(seconds)
    if s < 0.1:
        return f"{s * 1000:.1f} ms"
    if s < 10:
        return f"{s:.2f} s"
    return f"{s:.1f} s"


def _dbfs(x: float) -> str:
    return f"{20 * math.log10(x):.1f} dBFS" if x > 0 else "-inf dBFS"


_ACCEPTED = {"PCM_24", "PCM_32", "FLOAT", "DOUBLE"}


def _subtype_check(subtype: str) -> tuple[str | None, str | None]:
    """(problem, note) for the file's sample format."""
    st = subtype.upper()
    if st in _ACCEPTED:
        return None, None
    if st == "PCM_16":
        return None, "16-bit file: accepted, but 24-bit or 32-bit float is preferred for the next bounces"
    if st in ("PCM_S8", "PCM_U8"):
        return "8-bit audio is too coarse for training: bounce it again as 24-bit PCM.", None
    return (f"{subtype} is a compressed or unusual sample format: bounce it again as 24-bit PCM "
            "or 32-bit float WAV."), None


def _clipping(y: np.ndarray, threshold: float, is_float: bool) -> str | None:
    """Describe the clipping found, or None.

    Clipped: a run of >= 3 consecutive samples at |y| >= threshold (in a float file,
    where values above full scale are not clipped, the run must also be flat), or a
    flat top: many samples sitting exactly at the file's maximum in runs, at a peak
    above -6 dBFS (a limiter, or a clipped file normalised afterwards).
    """
    if y.size < 3:
        return None
    a = np.abs(y)
    peak = float(a.max())
    hot = a >= threshold
    run3 = hot[:-2] & hot[1:-1] & hot[2:]
    if is_float:
        run3 &= (y[:-2] == y[1:-1]) & (y[1:-1] == y[2:])
    n_runs = int(np.count_nonzero(run3 & ~np.concatenate(([False], run3[:-1]))))
    if n_runs:
        return f"{n_runs} run{'s' if n_runs > 1 else ''} of full-scale samples (peak {_dbfs(peak)})"
    if peak >= 0.5:
        at = a == peak
        n_at = int(np.count_nonzero(at))
        if n_at >= 16:
            flat = at[:-2] & at[1:-1] & at[2:]
            n_flat = int(np.count_nonzero(flat & ~np.concatenate(([False], flat[:-1]))))
            if n_flat >= 4:
                return f"{n_at} samples flat at the same maximum, {_dbfs(peak)}"
    return None


def _bypass_residual_db(x: np.ndarray, y: np.ndarray, latency: int) -> float | None:
    """Residual (dB) of the capture after removing the latency-aligned input at its best gain."""
    n = x.size
    if latency >= 0:
        xs, ys = x[: max(0, min(n, y.size - latency))], y[latency:latency + n]
    else:
        xs, ys = x[-latency:], y[: n + latency]
    m = min(xs.size, ys.size)
    if m < 16:
        return None
    xs = xs[:m].astype(np.float64)
    ys = ys[:m].astype(np.float64)
    exx = float(xs @ xs)
    eyy = float(ys @ ys)
    if exx <= 0 or eyy <= 0:
        return None
    g = float(xs @ ys) / exx
    res = max(eyy - g * g * exx, 0.0)  # = |y - g x|^2 at the optimal g
    # recompute directly when the closed form is at rounding level
    if res < 1e-9 * eyy:
        r = ys - g * xs
        res = float(r @ r)
    return 10 * math.log10(max(res / eyy, 1e-30))


def capture_fingerprint(audio: np.ndarray, n_ref: int, sample_rate: int, n_blocks: int = 2048,
                        n_bands: int = 32) -> np.ndarray:
    """A small vector for duplicate detection: block RMS (dB) over the first ``n_ref`` samples
    plus a coarse long-term spectrum (dB, ``n_bands`` log-spaced bands 20 Hz - 20 kHz).
    Floors at -90 dB so that silence and dither compare equal."""
    y = np.asarray(audio, dtype=np.float32)
    L = max(1, n_ref // n_blocks)
    seg = np.zeros(L * n_blocks, dtype=np.float32)
    m = min(seg.size, y.size)
    seg[:m] = y[:m]
    v = seg.reshape(n_blocks, L).astype(np.float64)
    rms = np.sqrt(np.einsum("ij,ij->i", v, v) / L)
    part1 = 20 * np.log10(np.maximum(rms, 10 ** (-90 / 20)))
    nfft = 4096
    if y.size >= nfft:
        starts = np.linspace(0, y.size - nfft, 48).astype(int)
        frames = np.stack([y[s:s + nfft] for s in starts]).astype(np.float64) * np.hanning(nfft)
        power = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0) / nfft
    else:
        power = np.abs(np.fft.rfft(y.astype(np.float64), nfft)) ** 2 / nfft
    f = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    edges = np.geomspace(20.0, min(20000.0, sample_rate / 2), n_bands + 1)
    idx = np.clip(np.searchsorted(f, edges), 0, f.size)
    bands = np.array([power[idx[i]:max(idx[i + 1], idx[i] + 1)].sum() for i in range(n_bands)])
    part2 = 10 * np.log10(np.maximum(bands, 1e-9))
    return np.concatenate([part1, part2]).astype(np.float32)


# ---------------------------------------------------------------------------- the check


def check_capture(path, ctx: CheckContext, *, now: float | None = None, settle_s: float = 5.0) -> CheckResult:
    """Check one capture file against the test signal. Never modifies the file.

    Order: missing; half-written (WAV header sizes disagree with the file: WRITING when
    the file changed within ``settle_s`` of ``now``, else INVALID); unreadable;
    sample format; sample rate; length (shorter than the input, or longer than the
    input plus ``ctx.max_tail_s``); silent; clipped; identical to the input (the block
    was bypassed); latency (from the blips, reported in a note); repeatability (note).
    Problems make the result INVALID; notes never do.
    """
    path = Path(path)
    now = time.time() if now is None else float(now)
    try:
        st = path.stat()
    except FileNotFoundError:
        return CheckResult.missing()
    except OSError as exc:
        return CheckResult(Status.INVALID, problems=[f"cannot be opened ({exc.strerror or exc}): check the file's "
                                                     "permissions."])
    recent = (now - st.st_mtime) < settle_s
    info = read_riff_info(path)
    notes: list[str] = []
    if info.state == "incomplete":
        if recent:
            return CheckResult.writing(f"still being written ({info.reason})")
        if info.file_size < 12:
            return CheckResult(Status.INVALID, problems=[
                f"the file is empty ({info.file_size} bytes): the bounce was interrupted or never started; "
                "bounce it again."])
        if info.declared_size is not None and info.declared_size < info.file_size and "finalised" in info.reason:
            return CheckResult(Status.INVALID, problems=[
                f"the WAV header was never finished ({info.reason.split(':')[0]}): the bounce was interrupted; "
                "bounce it again."])
        detail = info.reason.split(":")[0]
        return CheckResult(Status.INVALID, problems=[
            f"the file ends early ({detail}): the bounce was interrupted; bounce it again."])
    if info.state == "ok" and info.frames == 0:
        if recent:
            return CheckResult.writing("still being written (no audio yet)")
        return CheckResult(Status.INVALID, problems=["the file holds no audio (0 samples): bounce it again."])

    try:
        loaded = read_capture(path)
    except CaptureReadError as exc:
        return CheckResult(Status.INVALID, problems=[str(exc)])
    if info.state == "not_wav":
        notes.append(f"a {loaded.format} file, not WAV (it reads fine, so it is accepted)")

    res = CheckResult(Status.READY, problems=[], notes=notes, sample_rate=loaded.sample_rate,
                      frames=loaded.frames, channels=loaded.channels)
    if loaded.note:
        notes.append(loaded.note)
    problem, note = _subtype_check(loaded.subtype)
    if problem:
        res.problems.append(problem)
    if note:
        notes.append(note)

    sr = ctx.sample_rate
    if loaded.sample_rate != sr:
        res.problems.insert(0, f"recorded at {_khz(loaded.sample_rate)} but the test signal is {_khz(sr)}: "
                               f"re-bounce at {_khz(sr)}.")
        res.status = Status.INVALID
        return res

    y = loaded.audio
    x = np.asarray(ctx.input_audio, dtype=np.float32)
    n_in = x.size
    if loaded.frames == 0:
        res.problems.insert(0, "the file holds no audio (0 samples): bounce it again.")
        res.status = Status.INVALID
        return res

    # length
    extra = loaded.frames - n_in
    if extra < 0:
        res.problems.append(
            f"{_dur(-extra / sr)} shorter than the test signal ({loaded.frames / sr:.2f} s instead of "
            f"{n_in / sr:.2f} s): bounce the whole input.wav, from its first sample to its end.")
    elif extra > ctx.max_tail_s * sr:
        res.problems.append(
            f"{_dur(extra / sr)} longer than the test signal ({loaded.frames / sr:.2f} s for a {n_in / sr:.2f} s "
            f"input; up to {ctx.max_tail_s:g} s of tail is fine): bounce only the length of input.wav, "
            "starting at its first sample.")
    elif extra > 0:
        notes.append(f"{_dur(extra / sr)} of tail after the test signal (accepted)")

    # silence
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak <= 10 ** (ctx.silence_dbfs / 20):
        res.problems.append(
            f"the capture is silent (peak {_dbfs(peak)}): the block is bypassed into nothing or its output is "
            "muted; fix that and bounce again.")
        res.status = Status.INVALID
        return res

    # clipping
    is_float = loaded.subtype.upper() in ("FLOAT", "DOUBLE")
    clip = _clipping(y, ctx.clip_threshold, is_float)
    if clip:
        res.problems.append(f"clipped ({clip}): turn the block's output level down and bounce again; "
                            "do not normalise.")
    elif is_float and peak > 1.0:
        notes.append(f"peaks at {_dbfs(peak)} (above full scale, but a float file is not clipped)")

    # latency
    lat = measure_latency(y, x, ctx.layout, sr)
    res.latency_samples = lat
    if lat is None:
        if ctx.layout.blips_s:
            res.problems.append(
                "no response to the latency blips within 50 ms: make the bounce start exactly at the start of "
                "input.wav and switch off any noise gate in the chain, then bounce again.")
        else:
            notes.append("latency not measurable (no blips in the test signal, and cross-correlation found no "
                         "clear delay)")
    else:
        notes.append(f"latency {lat:g} samples ({lat / sr * 1000:.2f} ms)")

    # bypassed
    resid = _bypass_residual_db(x, y, int(round(lat or 0.0)))
    if resid is not None and resid < -50.0:
        res.problems.append(
            f"identical to the test signal apart from level (residual {resid:.0f} dB): the block looks "
            "bypassed; switch it on and bounce again.")

    # repeatability (a note, not a problem: modulation or hum make it imperfect)
    esr = repeatability_esr(y, ctx.layout, sr, lat)
    if esr is not None:
        esr_db = 10 * math.log10(max(esr, 1e-12))
        if esr > 0.05:
            notes.append(f"the repeated segment differs between its two copies (ESR {esr:.3f}, {esr_db:.0f} dB): "
                         "something in the chain changes over time (modulation, a gate, noise)")
        else:
            notes.append(f"repeatable: the two copies of the repeated segment agree to {esr_db:.0f} dB")

    res.fingerprint = capture_fingerprint(y, n_in, sr)
    res.notes = notes
    res.status = Status.INVALID if res.problems else Status.READY
    return res


# ---------------------------------------------------------------------------- duplicates


def _setting_key(setting) -> tuple | None:
    if setting is None:
        return None
    if isinstance(setting, dict):
        out = []
        for k in sorted(setting):
            v = setting[k]
            try:
                v = round(float(v), 6)
            except (TypeError, ValueError):
                v = str(v)
            out.append((str(k), v))
        return tuple(out)
    return (repr(setting),)


def _short(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def find_duplicates(items: dict, *, tol_db: float = 0.02) -> dict[str, str]:
    """Captures whose audio is identical although their knob settings differ.

    ``items`` maps a capture name (e.g. its relative path) to (fingerprint, setting).
    Two fingerprints are identical when no element differs by more than ``tol_db``.
    Both captures of such a pair are flagged: {name: "identical to Chaos_Full_07.wav
    although the settings differ: was the knob turned?"}. Captures with equal
    settings (e.g. the reference setting reached by two sweeps) are never flagged.
    """
    names = []
    fps = []
    keys = []
    for name, (fp, setting) in items.items():
        if fp is None:
            continue
        names.append(name)
        fps.append(np.asarray(fp, dtype=np.float32).ravel())
        keys.append(_setting_key(setting))
    out: dict[str, str] = {}
    if len(names) < 2:
        return out
    chosen: dict[str, str] = {}
    by_len: dict[int, list[int]] = {}
    for i, f in enumerate(fps):
        by_len.setdefault(f.size, []).append(i)
    for idxs in by_len.values():
        if len(idxs) < 2:
            continue
        F = np.stack([fps[i] for i in idxs])
        means = F.mean(axis=1)
        order = np.argsort(means)
        for a_pos in range(len(order)):
            ia = int(order[a_pos])
            for b_pos in range(a_pos + 1, len(order)):
                ib = int(order[b_pos])
                if means[ib] - means[ia] > tol_db:
                    break  # sorted by mean: nothing further can be within tolerance
                if float(np.max(np.abs(F[ia] - F[ib]))) > tol_db:
                    continue
                na, nb = names[idxs[ia]], names[idxs[ib]]
                ka, kb = keys[idxs[ia]], keys[idxs[ib]]
                if ka is None or kb is None or ka == kb:
                    continue
                for me, other in ((na, nb), (nb, na)):
                    if me not in chosen or _short(other) < chosen[me]:
                        chosen[me] = _short(other)
    for me, other in chosen.items():
        out[me] = f"identical to {other} although the settings differ: was the knob turned?"
    return out


# ---------------------------------------------------------------------------- names


def _norm_name(name: str) -> str:
    s = name.strip().lower()
    if s.endswith(".wav"):
        s = s[:-4]
    s = re.sub(r"(\d)\.(\d)", r"\1p\2", s)
    s = re.sub(r"[\s\-]+", "_", s)
    return s


def closest_name(name: str, expected: list[str]) -> str | None:
    """The expected file name that ``name`` most likely meant (difflib), or None.

    Case, ".wav", "5.0" vs "5p0" and spaces vs underscores are ignored.
    """
    if not expected:
        return None
    normed: dict[str, str] = {}
    for e in expected:
        normed.setdefault(_norm_name(e), e)
    key = _norm_name(name)
    if key in normed:
        return normed[key]
    best = difflib.get_close_matches(key, list(normed), n=1, cutoff=0.6)
    return normed[best[0]] if best else None


# ---------------------------------------------------------------------------- live watching


class ReadinessTracker:
    """Decides when a file that is being bounced is finished, for live folder watching.

    Why: a WAV being bounced by Logic opens fine with soundfile while it is still half
    written (libsndfile trusts or repairs the header's sizes), so "it opens" proves
    nothing. :meth:`observe` returns ``Status.WRITING`` until

    * the file's (size, mtime_ns) has been the same on two observations at least
      ``stable_s`` (0.4 s) apart, and
    * its RIFF header agrees with the file's length (:func:`riff_header_state`), and
    * the header counts at least one frame;

    then ``Status.READY``, meaning "finished: run :func:`check_capture` now" (the
    check itself decides READY or INVALID). A file that stays unchanged for
    ``settle_s`` although its header never becomes consistent (an interrupted bounce),
    or that is not a WAV at all, is also handed over as READY so that the check can
    report it as INVALID instead of it showing "writing" forever. A file that is gone
    gives ``Status.MISSING``. Any change of size or mtime starts over.
    """

    def __init__(self, stable_s: float = 0.4, settle_s: float = 5.0):
        self.stable_s = stable_s
        self.settle_s = settle_s
        self._seen: dict[str, tuple[tuple[int, int], float]] = {}

    def forget(self, path) -> None:
        self._seen.pop(str(path), None)

    def observe(self, path, now: float | None = None) -> Status:
        now = time.time() if now is None else float(now)
        key = str(path)
        try:
            st = Path(path).stat()
        except OSError:
            self._seen.pop(key, None)
            return Status.MISSING
        stat = (st.st_size, st.st_mtime_ns)
        prev = self._seen.get(key)
        if prev is None or prev[0] != stat:
            self._seen[key] = (stat, now)
            return Status.WRITING
        stable_for = now - prev[1]
        if stable_for < self.stable_s:
            return Status.WRITING
        info = read_riff_info(path)
        if info.state == "ok" and (info.frames or 0) > 0:
            return Status.READY
        if info.state == "not_wav" or stable_for >= self.settle_s:
            return Status.READY
        return Status.WRITING

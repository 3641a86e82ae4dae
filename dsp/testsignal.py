"""The test signal the user bounces through each block, and how to read captures of it.

Pure numpy (no scipy, no torch). Three jobs:

* :func:`generate_test_signal` makes UNIT Trainer's own test signal (deterministic
  from ``seed``; same layout in seconds at 44.1 kHz and 48 kHz).
* :func:`analyse_input` looks at any test signal (ours, the NAM trainer's standard
  input v3, or anything else) and returns its :class:`SignalLayout`: where the
  latency blips are, which segment appears twice, and notes on what was found.
* :func:`measure_latency` and :func:`repeatability_esr` read a capture (a bounce of
  the test signal through a block) against that layout.

Layout of the generated signal (``duration_s`` = 60 s; every time is in seconds and
the same at any sample rate; "level" is the segment's peak level in dBFS)::

    start   end     name            kind      level   content
    0.00    0.50    pre_silence     silence     -     digital silence
    0.50    3.50    repeat_a        repeat     -4     guitar phrase (notes, a chord, palm mutes)
    3.50    4.50    gap             silence     -     lets the phrase's tail die away
    4.50    6.50    blips           blips      -1     one-sample impulses at 5.00, 5.40, 6.00
    6.50    7.00    gap             silence     -
    7.00    10.00   sweep_-40       sweep     -40     log sine sweep 20 Hz - 20 kHz (small signal)
    10.25   13.25   sweep_-20       sweep     -20     log sine sweep 20 Hz - 20 kHz
    13.50   16.50   sweep_-6        sweep      -6     log sine sweep 20 Hz - 20 kHz
    16.75   17.50   pink_-30        noise     -30     pink noise burst (0.25 s gap after each burst)
    17.75   18.50   pink_-18        noise     -18     pink noise burst
    18.75   19.50   pink_-9         noise      -9     pink noise burst
    19.75   20.50   pink_-3         noise      -3     pink noise burst
    20.75   21.50   white_-20       noise     -20     white noise burst
    21.75   22.50   white_-6        noise      -6     white noise burst
    23.00   31.00   single_notes    guitar     -6     Karplus-Strong single-note lines
    31.00   40.00   chords          guitar     -3     strummed open and barre chords, let ring
    40.00   47.00   palm_mutes      guitar     -4.5   chugged power chords, short damped notes
    47.00   55.50   riff            guitar     -5     notes, power chords and mutes mixed
    55.50   56.00   gap             silence     -
    56.00   59.00   repeat_b        repeat     -4     repeat_a again, sample for sample
    59.00   60.00   post_silence    silence     -     room for the block's tail

With another ``duration_s`` (>= 32 s) only the four guitar sections (23 s to
``duration_s - 4.5``) stretch or shrink, proportionally; the repeat copy always sits
at ``duration_s - 4.0``. The blips and sweeps (4.5-16.5 s) do not depend on the seed,
which is how :func:`analyse_input` recognises the signal without the seed.
The overall peak is the blips' -1 dBFS.

NAM trainer standard input v3 (constants from ``_V3_DATA_INFO`` in
``nam/train/core.py`` of sdatkinson/neural-amp-modeler): 48 kHz, 190 s; 0-9 s
validation segment, 9-10 s silence, blips at 10.5 s and 11.5 s (samples 504000 and
552000, first_blips_start 480000, t_blips 96000, silence 492000-498000 used as
noise floor), 12-15 s chirps, 15-17 s noise, 17-180.5 s training data, 180.5-181 s
silence, 181-190 s validation again (the last 432000 samples).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "GUITAR_KINDS",
    "Segment",
    "SignalLayout",
    "generate_test_signal",
    "analyse_input",
    "measure_latency",
    "repeatability_esr",
]


# ---------------------------------------------------------------------------- layout types

#: the segments a player hears: the guitar phrases (single notes, chords, palm mutes, a
#: riff) and the repeated phrase at both ends. The sweeps and the loud noise hold most of
#: a whole capture's error energy (benchmarks/README.md, "session 21"), so the report
#: scores these on their own too.
GUITAR_KINDS = ("guitar", "repeat")


@dataclass(frozen=True)
class Segment:
    """A named stretch of the test signal (times in seconds)."""

    name: str
    kind: str  # silence | blips | sweep | noise | guitar | repeat | training | validation
    start_s: float
    end_s: float
    level_dbfs: float | None = None  # peak level, where the segment has one

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "start_s": self.start_s, "end_s": self.end_s,
                "level_dbfs": self.level_dbfs}

    @classmethod
    def from_dict(cls, d: dict) -> "Segment":
        lvl = d.get("level_dbfs")
        return cls(str(d["name"]), str(d["kind"]), float(d["start_s"]), float(d["end_s"]),
                   None if lvl is None else float(lvl))


@dataclass(frozen=True)
class SignalLayout:
    """What a test signal holds: blips for latency, a repeated segment, named segments.

    ``kind`` is "unit" (generated here), "nam_v3" (the NAM trainer's input v3) or
    "unknown". ``repeat`` is (start_a_s, start_b_s, length_s): a segment that appears
    twice, identically, so a capture can show whether the chain is repeatable.
    ``notes`` are sentences for the user: what was found and what was not.
    """

    kind: str
    sample_rate: int
    n_frames: int
    blips_s: tuple[float, ...] = ()
    repeat: tuple[float, float, float] | None = None
    segments: tuple[Segment, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def duration_s(self) -> float:
        return self.n_frames / float(self.sample_rate) if self.sample_rate else 0.0

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "sample_rate": int(self.sample_rate),
            "n_frames": int(self.n_frames),
            "blips_s": [float(b) for b in self.blips_s],
            "repeat": None if self.repeat is None else [float(v) for v in self.repeat],
            "segments": [s.to_dict() for s in self.segments],
            "notes": [str(n) for n in self.notes],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SignalLayout":
        rep = d.get("repeat")
        return cls(
            kind=str(d["kind"]),
            sample_rate=int(d["sample_rate"]),
            n_frames=int(d["n_frames"]),
            blips_s=tuple(float(b) for b in d.get("blips_s", ())),
            repeat=None if rep is None else (float(rep[0]), float(rep[1]), float(rep[2])),
            segments=tuple(Segment.from_dict(s) for s in d.get("segments", ())),
            notes=tuple(str(n) for n in d.get("notes", ())),
        )

    def segment(self, name: str) -> Segment | None:
        for s in self.segments:
            if s.name == name:
                return s
        return None

    def guitar_spans(self, stop: int | None = None) -> tuple[tuple[int, int], ...]:
        """Sample ranges ``(start, end)`` of the guitar segments (``GUITAR_KINDS``) at the
        layout's own rate, in time order, cut at ``stop`` samples; () for any signal but
        UNIT's own (in the NAM signal or an unknown one a repeated stretch is not known
        to be guitar)."""
        if self.kind != "unit":
            return ()
        stop = self.n_frames if stop is None else min(int(stop), self.n_frames)
        spans = []
        for g in sorted(self.segments, key=lambda g: g.start_s):
            if g.kind in GUITAR_KINDS:
                a = int(round(g.start_s * self.sample_rate))
                b = min(int(round(g.end_s * self.sample_rate)), stop)
                if b > a:
                    spans.append((a, b))
        return tuple(spans)


# ---------------------------------------------------------------------------- small helpers


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else float("-inf")


def _amp(db: float) -> float:
    return 10.0 ** (db / 20.0)


def _idx(t: float, sr: int) -> int:
    return int(round(t * sr))


def _fade(x: np.ndarray, n_in: int, n_out: int) -> np.ndarray:
    """Raised-cosine fade in/out, in place."""
    n_in = min(n_in, x.size)
    n_out = min(n_out, x.size)
    if n_in > 0:
        x[:n_in] *= 0.5 - 0.5 * np.cos(np.pi * (np.arange(n_in) + 0.5) / n_in)
    if n_out > 0:
        x[x.size - n_out:] *= 0.5 + 0.5 * np.cos(np.pi * (np.arange(n_out) + 0.5) / n_out)
    return x


def _normalise_peak(x: np.ndarray, level_db: float) -> np.ndarray:
    p = float(np.max(np.abs(x))) if x.size else 0.0
    return x * (_amp(level_db) / p) if p > 0 else x


def _mono(audio) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim == 2:
        a = a.mean(axis=1) if a.shape[1] <= 8 else a.mean(axis=0)
    return np.ascontiguousarray(a, dtype=np.float32)


# ---------------------------------------------------------------------------- sound sources


def log_sweep(sample_rate: int, duration_s: float, f0: float = 20.0, f1: float = 20000.0,
              level_dbfs: float = -6.0, fade_s: float = 0.01) -> np.ndarray:
    """Exponential sine sweep f0 -> f1 with short raised-cosine fades, peak at ``level_dbfs``."""
    f1 = min(f1, 0.45 * sample_rate)
    n = _idx(duration_s, sample_rate)
    t = np.arange(n) / sample_rate
    k = math.log(f1 / f0)
    phase = 2 * np.pi * f0 * duration_s / k * (np.exp(t / duration_s * k) - 1.0)
    x = np.sin(phase) * _amp(level_dbfs)
    return _fade(x, _idx(fade_s, sample_rate), _idx(fade_s, sample_rate))


def pink_noise(n: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Pink (1/f power) noise by spectral shaping of white noise, zero mean, unit peak."""
    w = rng.standard_normal(n)
    spec = np.fft.rfft(w)
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    shape = 1.0 / np.sqrt(np.maximum(f, 20.0))
    shape[0] = 0.0
    x = np.fft.irfft(spec * shape, n)
    return x / max(float(np.max(np.abs(x))), 1e-12)


def _pickup(x: np.ndarray, sample_rate: int, fc: float = 3300.0, q: float = 1.3) -> np.ndarray:
    """A guitar pickup's resonant low-pass (2nd order, applied in the frequency domain)."""
    n = x.size
    if n == 0:
        return x
    nfft = 1 << (n - 1).bit_length()
    f = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    s = 1j * f / fc
    h = 1.0 / (s * s + s / q + 1.0)
    # gentle high-pass at 60 Hz (no DC from the strings)
    s2 = 1j * f / 60.0
    h *= (s2 * s2) / (s2 * s2 + s2 / 0.707 + 1.0)
    return np.fft.irfft(np.fft.rfft(x, nfft) * h, nfft)[:n]


def pluck(freq: float, n: int, sample_rate: int, rng: np.random.Generator, *, t60: float = 2.0,
          smooth: int = 1, pick_pos: float = 0.13) -> np.ndarray:
    """One plucked string (Karplus-Strong), ``n`` samples, excitation RMS ~ 1.

    The loop ``y[n] = g (y[n-N] + y[n-N-1]) / 2`` is computed one period at a time
    (each period depends only on the previous one), so it is vectorised per period.
    ``smooth`` > 1 darkens the pick (palm mutes, neck pickup); ``t60`` is the decay.
    """
    N = max(2, int(round(sample_rate / freq - 0.5)))
    exc = rng.standard_normal(N)
    if smooth > 1:
        exc = np.convolve(exc, np.ones(smooth) / smooth, mode="same")
    p = max(1, int(round(pick_pos * N)))
    exc = exc - np.roll(exc, p)  # pick position comb
    exc -= exc.mean()
    exc /= max(float(np.sqrt(np.mean(exc * exc))), 1e-12)
    g = 10.0 ** (-3.0 * (N / sample_rate) / max(t60, 1e-3))
    chunks = n // N + 2
    y = np.zeros(chunks * N)
    y[:N] = exc
    prev_last = 0.0
    for k in range(1, chunks):
        prev = y[(k - 1) * N:k * N]
        cur = y[k * N:(k + 1) * N]
        cur[0] = prev[0] + prev_last
        cur[1:] = prev[1:] + prev[:-1]
        cur *= 0.5 * g
        prev_last = prev[-1]
    return y[:n]


# Standard tuning, low E to high e (Hz).
_STRINGS = (82.41, 110.0, 146.83, 196.0, 246.94, 329.63)
_CHORDS = (  # fret per string, -1 = not played
    (0, 2, 2, 1, 0, 0),     # E
    (-1, 0, 2, 2, 2, 0),    # A
    (-1, -1, 0, 2, 3, 2),   # D
    (3, 2, 0, 0, 0, 3),     # G
    (-1, 3, 2, 0, 1, 0),    # C
    (2, 4, 4, 2, 2, 2),     # F#m barre
    (0, 2, 2, 0, 0, 0),     # Em
    (-1, 0, 2, 2, 1, 0),    # Am
    (0, 2, 2, -1, -1, -1),  # E5
    (-1, 0, 2, 2, -1, -1),  # A5
    (3, 5, 5, -1, -1, -1),  # G5
)
_POWER = ((0, 2, 2, -1, -1, -1), (3, 5, 5, -1, -1, -1), (5, 7, 7, -1, -1, -1), (-1, 0, 2, 2, -1, -1),
          (1, 3, 3, -1, -1, -1), (-1, 3, 5, 5, -1, -1))


def _fret(string: int, fret: int) -> float:
    return _STRINGS[string] * 2.0 ** (fret / 12.0)


class _Phrase:
    """A buffer that plucked notes are added into; notes can be damped (ended) early."""

    def __init__(self, n: int, sr: int, rng: np.random.Generator):
        self.buf = np.zeros(n)
        self.sr = sr
        self.rng = rng

    def note(self, t: float, freq: float, dur: float, vel: float, *, t60: float = 2.5, smooth: int = 1,
             damp: bool = True) -> None:
        i0 = _idx(t, self.sr)
        n = min(_idx(dur, self.sr), self.buf.size - i0)
        if n <= 0:
            return
        y = pluck(freq, n, self.sr, self.rng, t60=t60, smooth=smooth,
                  pick_pos=float(self.rng.uniform(0.08, 0.2)))
        _fade(y, _idx(0.0015, self.sr), _idx(0.02, self.sr) if damp else _idx(0.005, self.sr))
        self.buf[i0:i0 + n] += vel * y

    def chord(self, t: float, frets, dur: float, vel: float, *, up: bool = False, spread: float = 0.012,
              t60: float = 3.0, smooth: int = 2) -> None:
        strings = [s for s in range(6) if frets[s] >= 0]
        if up:
            strings = strings[::-1]
        for k, s in enumerate(strings):
            dt = k * spread * float(self.rng.uniform(0.7, 1.3))
            v = vel * float(self.rng.uniform(0.75, 1.0))
            self.note(t + dt, _fret(s, frets[s]), dur - dt, v, t60=t60, smooth=smooth)


def _single_notes(ph: _Phrase, t0: float, t1: float) -> None:
    rng = ph.rng
    t = t0
    string, fret = 2, 5
    while t < t1 - 0.3:
        dur = float(rng.choice([0.15, 0.25, 0.25, 0.375, 0.5, 0.75, 1.0]))
        dur = min(dur, t1 - t)
        string = int(np.clip(string + rng.integers(-1, 2), 0, 5))
        fret = int(np.clip(fret + rng.integers(-3, 4), 0, 15))
        ring = dur >= 0.75
        ph.note(t, _fret(string, fret), dur + (0.3 if ring else 0.0), float(rng.uniform(0.45, 1.0)),
                t60=float(rng.uniform(1.5, 3.5)), smooth=int(rng.integers(1, 4)))
        t += dur


def _chords(ph: _Phrase, t0: float, t1: float) -> None:
    rng = ph.rng
    t = t0
    while t < t1 - 0.4:
        dur = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
        dur = min(dur, t1 - t)
        frets = _CHORDS[int(rng.integers(len(_CHORDS)))]
        if dur <= 0.5 and rng.random() < 0.5:  # down-up strum
            ph.chord(t, frets, dur / 2, float(rng.uniform(0.6, 1.0)))
            ph.chord(t + dur / 2, frets, dur / 2, float(rng.uniform(0.4, 0.7)), up=True, spread=0.008)
        else:
            ph.chord(t, frets, dur, float(rng.uniform(0.6, 1.0)), spread=float(rng.uniform(0.006, 0.02)))
        t += dur


def _palm_mutes(ph: _Phrase, t0: float, t1: float) -> None:
    rng = ph.rng
    t = t0
    step = 0.125
    frets = _POWER[0]
    while t < t1 - step:
        if rng.random() < 0.15:
            frets = _POWER[int(rng.integers(len(_POWER)))]
        if rng.random() < 0.85:
            ph.chord(t, frets, float(rng.uniform(0.08, 0.14)), float(rng.uniform(0.6, 1.0)), spread=0.003,
                     t60=float(rng.uniform(0.1, 0.25)), smooth=int(rng.integers(6, 13)))
        t += step if rng.random() < 0.7 else step / 2


def _riff(ph: _Phrase, t0: float, t1: float) -> None:
    rng = ph.rng
    t = t0
    while t < t1 - 0.6:
        r = rng.random()
        seg = min(float(rng.choice([0.5, 1.0, 1.5])), t1 - t)
        if r < 0.35:
            _palm_mutes(ph, t, t + seg)
        elif r < 0.65:
            _single_notes(ph, t, t + seg)
        else:
            ph.chord(t, _POWER[int(rng.integers(len(_POWER)))], seg, float(rng.uniform(0.6, 1.0)), spread=0.005)
        t += seg


def _guitar_section(kind: str, length_s: float, sample_rate: int, seed: int, level_db: float,
                    stream: int) -> np.ndarray:
    rng = np.random.default_rng([seed, stream])
    ph = _Phrase(_idx(length_s, sample_rate), sample_rate, rng)
    {"single_notes": _single_notes, "chords": _chords, "palm_mutes": _palm_mutes, "riff": _riff}[kind](
        ph, 0.0, length_s)
    x = _pickup(ph.buf, sample_rate)
    _fade(x, _idx(0.002, sample_rate), _idx(0.15, sample_rate))
    return _normalise_peak(x, level_db)


def _repeat_phrase(length_s: float, sample_rate: int, seed: int, level_db: float) -> np.ndarray:
    rng = np.random.default_rng([seed, 99])
    ph = _Phrase(_idx(length_s, sample_rate), sample_rate, rng)
    _single_notes(ph, 0.0, 1.0)
    ph.chord(1.0, _CHORDS[int(rng.integers(len(_CHORDS)))], 1.0, 0.9)
    _palm_mutes(ph, 2.0, length_s - 0.25)
    x = _pickup(ph.buf, sample_rate)
    _fade(x, _idx(0.002, sample_rate), _idx(0.3, sample_rate))
    return _normalise_peak(x, level_db)


# ---------------------------------------------------------------------------- the generated signal

_BLIPS = (5.0, 5.4, 6.0)  # uneven spacing: a late capture cannot match a majority
_BLIP_DB = -1.0
_BLIP_AMP = 0.89  # just under -1 dBFS, also after float32 rounding
_SWEEPS = ((7.0, 10.0, -40.0), (10.25, 13.25, -20.0), (13.5, 16.5, -6.0))
_NOISE = (("pink", -30.0), ("pink", -18.0), ("pink", -9.0), ("pink", -3.0), ("white", -20.0), ("white", -6.0))
_NOISE_START, _NOISE_LEN, _NOISE_STEP = 16.75, 0.75, 1.0
_REPEAT_A, _REPEAT_LEN, _REPEAT_DB = 0.5, 3.0, -4.0
_GUITAR_START = 23.0
_GUITAR = (("single_notes", 8.0, -6.0), ("chords", 9.0, -3.0), ("palm_mutes", 7.0, -4.5), ("riff", 8.5, -5.0))
_FIXED_SPAN = (4.5, 16.5)  # seed-independent part (blips and sweeps)
MIN_DURATION_S = 32.0


def _layout_unit(sample_rate: int, duration_s: float, notes: tuple[str, ...] = ()) -> SignalLayout:
    segs: list[Segment] = [
        Segment("pre_silence", "silence", 0.0, _REPEAT_A),
        Segment("repeat_a", "repeat", _REPEAT_A, _REPEAT_A + _REPEAT_LEN, _REPEAT_DB),
        Segment("gap", "silence", _REPEAT_A + _REPEAT_LEN, 4.5),
        Segment("blips", "blips", 4.5, 6.5, _BLIP_DB),
        Segment("gap", "silence", 6.5, 7.0),
    ]
    for a, b, lvl in _SWEEPS:
        segs.append(Segment(f"sweep_{lvl:g}", "sweep", a, b, lvl))
    for k, (color, lvl) in enumerate(_NOISE):
        a = _NOISE_START + k * _NOISE_STEP
        segs.append(Segment(f"{color}_{lvl:g}", "noise", a, a + _NOISE_LEN, lvl))
    g_end = duration_s - 4.5
    scale = (g_end - _GUITAR_START) / sum(d for _, d, _ in _GUITAR)
    t = _GUITAR_START
    for name, d, lvl in _GUITAR:
        segs.append(Segment(name, "guitar", round(t, 6), round(t + d * scale, 6), lvl))
        t += d * scale
    b = duration_s - 4.0
    segs += [
        Segment("gap", "silence", g_end, b),
        Segment("repeat_b", "repeat", b, b + _REPEAT_LEN, _REPEAT_DB),
        Segment("post_silence", "silence", b + _REPEAT_LEN, duration_s),
    ]
    return SignalLayout(
        kind="unit", sample_rate=int(sample_rate), n_frames=_idx(duration_s, sample_rate),
        blips_s=_BLIPS, repeat=(_REPEAT_A, b, _REPEAT_LEN), segments=tuple(segs), notes=notes,
    )


def _fixed_parts(sample_rate: int) -> list[tuple[int, np.ndarray]]:
    """The seed-independent pieces: (start sample, samples)."""
    parts = [(_idx(t, sample_rate), np.array([_BLIP_AMP])) for t in _BLIPS]
    for a, b, lvl in _SWEEPS:
        parts.append((_idx(a, sample_rate), log_sweep(sample_rate, b - a, level_dbfs=lvl)))
    return parts


@functools.lru_cache(maxsize=4)
def _generate_cached(sample_rate: int, seed: int, duration_s: float) -> tuple[np.ndarray, SignalLayout]:
    n = _idx(duration_s, sample_rate)
    x = np.zeros(n)
    for i0, part in _fixed_parts(sample_rate):
        x[i0:i0 + part.size] += part
    for k, (color, lvl) in enumerate(_NOISE):
        rng = np.random.default_rng([seed, 10 + k])
        m = _idx(_NOISE_LEN, sample_rate)
        burst = pink_noise(m, rng, sample_rate) if color == "pink" else rng.standard_normal(m)
        burst = _normalise_peak(_fade(burst, _idx(0.005, sample_rate), _idx(0.005, sample_rate)), lvl)
        i0 = _idx(_NOISE_START + k * _NOISE_STEP, sample_rate)
        x[i0:i0 + m] += burst
    rep = _repeat_phrase(_REPEAT_LEN, sample_rate, seed, _REPEAT_DB)
    layout = _layout_unit(sample_rate, duration_s)
    for name in ("repeat_a", "repeat_b"):
        i0 = _idx(layout.segment(name).start_s, sample_rate)
        x[i0:i0 + rep.size] = rep
    for k, (name, _, lvl) in enumerate(_GUITAR):
        seg = layout.segment(name)
        sec = _guitar_section(name, seg.end_s - seg.start_s, sample_rate, seed, lvl, stream=20 + k)
        i0 = _idx(seg.start_s, sample_rate)
        x[i0:i0 + sec.size] += sec[: n - i0]
    out = x.astype(np.float32)
    notes = (
        f"UNIT Trainer test signal: {duration_s:.1f} s at {sample_rate} Hz.",
        "latency blips at " + ", ".join(f"{b:.2f}" for b in _BLIPS) + " s.",
        f"a {_REPEAT_LEN:.1f} s guitar phrase at {_REPEAT_A:.2f} s repeats at {duration_s - 4.0:.2f} s"
        " (repeatability check).",
    )
    layout = _layout_unit(sample_rate, duration_s, notes)
    out.setflags(write=False)
    return out, layout


def generate_test_signal(sample_rate: int = 48000, seed: int = 0,
                         duration_s: float = 60.0) -> tuple[np.ndarray, SignalLayout]:
    """UNIT Trainer's test signal (float32 mono, peak -1 dBFS) and its layout.

    Deterministic: the same (sample_rate, seed, duration_s) always gives the same
    samples. See the module docstring for the layout.
    """
    sample_rate = int(sample_rate)
    if sample_rate < 22050:
        raise ValueError(f"sample rate {sample_rate} Hz is too low for a 20 Hz - 20 kHz test signal.")
    if duration_s < MIN_DURATION_S:
        raise ValueError(f"duration_s must be at least {MIN_DURATION_S:g} s, got {duration_s:g}.")
    x, layout = _generate_cached(sample_rate, int(seed), float(duration_s))
    return x.copy(), layout


# ---------------------------------------------------------------------------- recognising inputs

# NAM standard input v3 (nam/train/core.py, _V3_DATA_INFO): sample positions at 48 kHz.
NAM_V3_RATE = 48000
NAM_V3_DURATION_S = 190.0
NAM_V3_BLIPS_S = (504_000 / 48000, 552_000 / 48000)  # 10.5, 11.5
NAM_V3_VALIDATE_S = 432_000 / 48000  # 9.0: first 9 s, repeated as the last 9 s
NAM_V3_NOISE_S = (492_000 / 48000, 498_000 / 48000)  # silence before the first blip


def _block_env(x: np.ndarray, block: int, kind: str = "rms") -> np.ndarray:
    nb = x.size // block
    if nb == 0:
        return np.zeros(0)
    v = x[: nb * block].reshape(nb, block)
    if kind == "max":
        return np.maximum(v.max(axis=1), -v.min(axis=1)).astype(np.float64)
    v64 = v.astype(np.float64)
    return np.sqrt(np.einsum("ij,ij->i", v64, v64) / block)


def _same(a: np.ndarray, b: np.ndarray, tol: float = 1e-3, stride: int = 1) -> bool:
    if a.size != b.size or a.size == 0:
        return False
    return float(np.max(np.abs(a[::stride] - b[::stride]))) <= tol


def _recognise_unit(x: np.ndarray, sr: int) -> SignalLayout | None:
    n = x.size
    duration = n / sr
    if duration < MIN_DURATION_S - 1e-9:
        return None
    for i0, part in _fixed_parts(sr):
        seg = x[i0:i0 + part.size]
        if seg.size != part.size or not _same(seg, part.astype(np.float32), tol=2e-3, stride=3 if part.size > 10 else 1):
            return None
    dur = round(duration, 3)
    base = _layout_unit(sr, dur)
    a, b, length = base.repeat
    ia, ib, m = _idx(a, sr), _idx(b, sr), _idx(length, sr)
    notes = [f"UNIT Trainer test signal ({dur:.1f} s at {sr} Hz): latency blips at "
             + ", ".join(f"{t:.2f}" for t in _BLIPS) + " s."]
    repeat = base.repeat
    if ib + m <= n and _same(x[ia:ia + m], x[ib:ib + m], tol=1e-4, stride=2):
        notes.append(f"the {length:.1f} s guitar phrase at {a:.2f} s repeats at {b:.2f} s (repeatability check).")
    else:
        repeat = None
        notes.append("the guitar phrase that should repeat at the end does not match the one at the start: "
                     "the file was trimmed or edited, so the repeatability check is skipped.")
    return SignalLayout(kind="unit", sample_rate=sr, n_frames=n, blips_s=base.blips_s, repeat=repeat,
                        segments=base.segments, notes=tuple(notes))


def _recognise_nam_v3(x: np.ndarray, sr: int) -> SignalLayout | None:
    n = x.size
    duration = n / sr
    if abs(duration - NAM_V3_DURATION_S) > 1.0:
        return None
    n0, n1 = _idx(NAM_V3_NOISE_S[0], sr), _idx(NAM_V3_NOISE_S[1], sr)
    floor = float(np.max(np.abs(x[n0:n1]))) if n1 > n0 else 1.0
    w = _idx(0.002, sr)
    for t in NAM_V3_BLIPS_S:
        b = _idx(t, sr)
        p = float(np.max(np.abs(x[b - w:b + w + 1])))
        if p < 0.05 or p < 100 * floor:
            return None
        # silence before the blip (from 9.2 s for the first, from the first + 10 ms for the second)
        pre = x[b - _idx(0.25, sr):b - w]
        if float(np.max(np.abs(pre))) > 0.01 * p:
            return None
    notes = [f"NAM trainer standard input v3 ({duration:.1f} s at {sr} Hz): latency blips at 10.50 s and 11.50 s."]
    if sr != NAM_V3_RATE:
        notes.append(f"this copy is at {sr} Hz; the NAM trainer itself only accepts the 48 kHz original.")
    m = _idx(NAM_V3_VALIDATE_S, sr)
    repeat = None
    start_b = (n - m) / sr
    if n >= 2 * m and _same(x[:m], x[n - m:], tol=1e-4, stride=7):
        repeat = (0.0, start_b, NAM_V3_VALIDATE_S)
        notes.append(f"the 9 s validation segment at 0 s repeats at {start_b:.2f} s (repeatability check).")
    else:
        notes.append("the 9 s validation segment at 0 s does not reappear at the end: the file was edited, "
                     "so the repeatability check is skipped.")
    segs = (
        Segment("validation_1", "repeat", 0.0, 9.0),
        Segment("gap", "silence", 9.0, 10.0),
        Segment("blips", "blips", 10.0, 12.0),
        Segment("chirps", "sweep", 12.0, 15.0),
        Segment("noise", "noise", 15.0, 17.0),
        Segment("training", "training", 17.0, start_b - 0.5),
        Segment("gap", "silence", start_b - 0.5, start_b),
        Segment("validation_2", "repeat", start_b, start_b + 9.0),
    )
    return SignalLayout(kind="nam_v3", sample_rate=sr, n_frames=n, blips_s=NAM_V3_BLIPS_S, repeat=repeat,
                        segments=segs, notes=tuple(notes))


def _find_blips(x: np.ndarray, sr: int, max_blips: int = 8) -> list[float]:
    """Isolated clicks: <= 10 ms of sound with >= 100 ms of silence before and >= 50 ms after."""
    block = max(1, _idx(0.001, sr))
    env = _block_env(x, block, "max")
    if env.size == 0:
        return []
    peak = float(env.max())
    if peak <= 0:
        return []
    loud = env > peak * 1e-3
    # runs of loud blocks
    d = np.diff(np.concatenate(([0], loud.astype(np.int8), [0])))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)  # exclusive
    if starts.size == 0:
        return []
    prev_end = np.concatenate(([-10**9], ends[:-1]))
    next_start = np.concatenate((starts[1:], [env.size + 10**9]))
    ok = ((ends - starts) <= 10) & (starts - prev_end >= 100) & (next_start - ends >= 50) & (starts >= 100)
    out = []
    for s, e in zip(starts[ok], ends[ok]):
        seg = x[s * block:e * block]
        i = int(np.argmax(np.abs(seg)))
        if abs(seg[i]) < 0.1 * peak:
            continue
        out.append(float(int(s) * block + i) / sr)
        if len(out) >= max_blips:
            break
    return out


def _sliding_pearson(env: np.ndarray, tpl: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``tpl`` with every window of ``env`` (valid positions)."""
    m = tpl.size
    k = env.size - m + 1
    if k <= 0:
        return np.zeros(0)
    t = tpl - tpl.mean()
    tn = float(np.sqrt(np.sum(t * t)))
    if tn == 0:
        return np.zeros(k)
    nfft = 1 << (env.size + m - 1).bit_length()
    num = np.fft.irfft(np.fft.rfft(env, nfft) * np.conj(np.fft.rfft(t, nfft)), nfft)[:k]
    c1 = np.concatenate(([0.0], np.cumsum(env)))
    c2 = np.concatenate(([0.0], np.cumsum(env * env)))
    s1 = c1[m:] - c1[:-m]
    s2 = c2[m:] - c2[:-m]
    var = np.maximum(s2 - s1 * s1 / m, 0.0)
    return num / (tn * np.sqrt(var) + 1e-12)


def _xcorr_lag(a: np.ndarray, b: np.ndarray, max_shift: int) -> int:
    """Shift s in [-max_shift, max_shift] maximising sum a[n] b[n+max_shift+s] (b is longer)."""
    nfft = 1 << (b.size + a.size).bit_length()
    r = np.fft.irfft(np.fft.rfft(b.astype(np.float64), nfft) * np.conj(np.fft.rfft(a.astype(np.float64), nfft)), nfft)
    r = r[: 2 * max_shift + 1]
    return int(np.argmax(r)) - max_shift


def _find_repeat(x: np.ndarray, sr: int) -> tuple[float, float, float] | None:
    """The first seconds of sound, found again later (exactly); (start_a, start_b, length)."""
    block = max(1, _idx(0.001, sr))
    env = _block_env(x, block, "rms")
    if env.size < 1000:
        return None
    peak = float(env.max())
    if peak <= 0:
        return None
    active = np.flatnonzero(env > peak * 1e-3)
    if active.size == 0:
        return None
    t0 = int(active[0])
    m = min(3000, (env.size - t0) // 3)
    if m < 250:
        return None
    tpl = env[t0:t0 + m]
    r0 = t0 + m
    region = env[r0:]
    rho = _sliding_pearson(region, tpl)
    if rho.size == 0:
        return None
    a0 = t0 * block
    L = m * block
    xa = x[a0:a0 + L].astype(np.float64)
    ea = float(np.sum(xa * xa))
    if ea <= 0:
        return None
    order = np.argsort(rho)[::-1]
    tried: list[int] = []
    for k in order[:50]:
        if rho[k] < 0.9:
            break
        if any(abs(int(k) - j) < 20 for j in tried):
            continue
        tried.append(int(k))
        if len(tried) > 4:
            break
        guess = (r0 + int(k)) * block
        sh = 2 * block
        lo = guess - sh
        if lo < 0 or lo + L + 2 * sh > x.size:
            continue
        s = _xcorr_lag(xa, x[lo:lo + L + 2 * sh], sh)
        b0 = guess + s
        xb = x[b0:b0 + L].astype(np.float64)
        if xb.size != L:
            continue
        if float(np.sum((xa - xb) ** 2)) / ea < 1e-4:
            quiet = (peak * 1e-3) ** 2

            def agree(i: int, j: int, m: int) -> bool:
                ca = x[i:i + m].astype(np.float64)
                cb = x[j:j + m].astype(np.float64)
                e = float(np.sum(ca * ca))
                return e > quiet * m and float(np.sum((ca - cb) ** 2)) <= 1e-4 * e

            # extend the match while both copies have sound and agree: forward, then backward,
            # in steps of 100 ms, 10 ms, 1 ms and 1 sample
            length = L
            for step in (_idx(0.1, sr), _idx(0.01, sr), _idx(0.001, sr), 1):
                step = max(1, step)
                while (b0 + length + step <= x.size and a0 + length + step <= b0
                       and agree(a0 + length, b0 + length, step)):
                    length += step
            for step in (_idx(0.1, sr), _idx(0.01, sr), _idx(0.001, sr), 1):
                step = max(1, step)
                while a0 - step >= 0 and agree(a0 - step, b0 - step, step):
                    a0, b0, length = a0 - step, b0 - step, length + step
            return (float(a0) / sr, float(b0) / sr, float(length) / sr)
    return None


def analyse_input(audio, sample_rate: int) -> SignalLayout:
    """Recognise a test signal and return its layout (see the module docstring).

    Tries, in order: UNIT Trainer's own signal (its seed-independent blips and sweeps
    compared with a regeneration), the NAM trainer's standard input v3 (duration,
    blips at 10.5/11.5 s after silence, the 9 s validation segment at both ends),
    and otherwise looks for isolated blips after silence and for the first seconds of
    sound reappearing later. ``notes`` say what was and was not found.
    """
    x = _mono(audio)
    sr = int(sample_rate)
    n = x.size
    if n == 0:
        return SignalLayout("unknown", sr, 0, notes=("the test signal is empty.",))
    for recognise in (_recognise_unit, _recognise_nam_v3):
        layout = recognise(x, sr)
        if layout is not None:
            return layout
    notes = [f"not a known test signal (neither UNIT Trainer's nor the NAM trainer's input v3): "
             f"{n / sr:.1f} s at {sr} Hz, analysed for landmarks."]
    segs: list[Segment] = []
    blips = _find_blips(x, sr)
    if blips:
        notes.append(f"found {len(blips)} latency blip{'s' if len(blips) > 1 else ''} (a click after silence) at "
                     + ", ".join(f"{b:.3f}" for b in blips) + " s.")
        segs.append(Segment("blips", "blips", max(0.0, blips[0] - 0.1), min(n / sr, blips[-1] + 0.1)))
    else:
        notes.append("no latency blips found (a click after at least 100 ms of silence): latency will be "
                     "estimated by cross-correlation, which is less exact.")
    repeat = _find_repeat(x, sr)
    if repeat is not None:
        a, b, length = repeat
        notes.append(f"found a repeated segment: {length:.1f} s at {a:.2f} s reappears at {b:.2f} s "
                     "(repeatability check).")
        segs += [Segment("repeat_a", "repeat", a, a + length), Segment("repeat_b", "repeat", b, b + length)]
    else:
        notes.append("no repeated segment found (the first seconds of sound do not reappear later): the "
                     "repeatability check is skipped.")
    segs.sort(key=lambda s: s.start_s)
    return SignalLayout("unknown", sr, n, tuple(blips), repeat, tuple(segs), tuple(notes))


# ---------------------------------------------------------------------------- reading captures


def _window(y: np.ndarray, start: int, length: int) -> np.ndarray:
    """y[start:start+length] as float64, zero-padded where it runs off either end."""
    out = np.zeros(length)
    a, b = max(0, start), min(y.size, start + length)
    if b > a:
        out[a - start:b - start] = y[a:b]
    return out


def _impulse_response(xw: np.ndarray, yw: np.ndarray, eps_rel: float) -> tuple[np.ndarray, int]:
    """Regularised deconvolution of yw by xw (both starting at the same sample).

    Returns (h, nfft); h[k] is the response at lag k (negative lags at nfft - |k|).
    """
    nfft = 1 << (xw.size + yw.size).bit_length()
    X = np.fft.rfft(xw, nfft)
    Y = np.fft.rfft(yw, nfft)
    p = (X * np.conj(X)).real
    eps = eps_rel * float(np.mean(p)) + 1e-30
    return np.fft.irfft(Y * np.conj(X) / (p + eps), nfft), nfft


def _lags(h: np.ndarray, nfft: int, lo: int, hi: int) -> np.ndarray:
    """h at lags lo..hi inclusive (lo may be negative)."""
    return h[np.arange(lo, hi + 1) % nfft]


def _blip_latency(x: np.ndarray, y: np.ndarray, b: int, sr: int, max_lag: int, neg: int) -> float | None:
    pre = max(_idx(0.05, sr), 4 * neg)
    post = _idx(0.005, sr)
    if b - pre < 0 or b + post > x.size or b >= y.size:
        return None
    xw = x[b - pre:b + post].astype(np.float64)
    yw = _window(y, b - pre, pre + post + max_lag)
    h, nfft = _impulse_response(xw, yw, 1e-6)
    resp = np.abs(_lags(h, nfft, -pre, max_lag))  # index i <-> lag i - pre
    region = resp[pre - neg:]
    noise = resp[: pre - neg - 1]
    peak = float(region.max())
    sigma = float(np.sqrt(np.mean(noise * noise))) if noise.size else 0.0
    if peak <= 0 or peak < 8 * sigma:
        return None
    thr = max(0.05 * peak, 6 * sigma)
    first = int(np.flatnonzero(region >= thr)[0])
    return float(first - neg)


ONSET_REL_XCORR = 0.2


def _xcorr_latency(x: np.ndarray, y: np.ndarray, sr: int, max_lag: int, neg: int) -> float | None:
    """Latency from the strongest arrival in the regularised cross-correlation of loud excerpts."""
    L = 1 << 14
    if x.size < L + 2 * max_lag or y.size < L + max_lag:
        L = 1 << max(8, int(math.log2(max(256, min(x.size, y.size) // 2))))
    nb = (min(x.size, y.size) - max_lag) // L
    if nb <= 0:
        return None
    env = _block_env(x[: nb * L], L, "rms")
    if env.size == 0 or env.max() <= 0:
        return None
    # Prefer broadband excerpts (noise, strums): a sweep or a single note gives an
    # ambiguous, periodic correlation. Score = spectral flatness within 100 Hz - 10 kHz.
    cand = np.flatnonzero(env >= 0.1 * env.max())
    if cand.size > 64:
        cand = cand[np.argsort(env[cand])[::-1][:64]]
    blocks = np.stack([x[int(k) * L:(int(k) + 1) * L] for k in cand]).astype(np.float64)
    P = np.abs(np.fft.rfft(blocks * np.hanning(L), axis=1)) ** 2
    f = np.fft.rfftfreq(L, 1.0 / sr)
    band = (f >= 100) & (f <= min(10000.0, 0.45 * sr))
    Pb = P[:, band] + 1e-20
    flat = np.exp(np.mean(np.log(Pb), axis=1)) / np.mean(Pb, axis=1)
    ests = []
    pad = 512
    for k in cand[np.argsort(flat)[::-1][:3]]:
        s0 = int(k) * L
        xw = np.concatenate((np.zeros(pad), x[s0:s0 + L].astype(np.float64)))
        yw = _window(y, s0 - pad, pad + L + max_lag)
        h, nfft = _impulse_response(xw, yw, 1e-2)
        resp = np.abs(_lags(h, nfft, -pad, max_lag))  # index i <-> lag i - pad
        noise = resp[: pad - 64]
        region = resp[pad - neg:]
        peak = float(region.max())
        sigma = float(np.sqrt(np.mean(noise * noise)))
        if peak <= 0 or peak < 10 * sigma:
            continue
        thr = max(ONSET_REL_XCORR * peak, 4 * sigma)
        ests.append(float(int(np.flatnonzero(region >= thr)[0]) - neg))
    # Trust it only when the excerpts agree (periodic music can fake a single peak).
    need = min(2, len(cand))
    ests.sort()
    best = None
    for i in range(len(ests)):
        group = [e for e in ests if abs(e - ests[i]) <= 2]
        if len(group) >= need and (best is None or len(group) > len(best)):
            best = group
    if not best:
        return None
    return float(min(best))


def measure_latency(capture, input_audio, layout: SignalLayout, sample_rate: int,
                    max_latency_s: float = 0.05) -> float | None:
    """The capture's delay against the input, in samples, or None when it cannot be found.

    From the blips when the layout has them: the response to each blip is taken by
    deconvolution of a window around it, and the latency is the first lag at which
    its magnitude reaches 5 % of its peak (and 6x the noise before it), so filtered,
    distorted or inverted outputs give the onset, not the filter's group delay. The
    blips' estimates are combined (the smallest when they agree within 2 samples, else
    the median); more than half of the blips must answer, so a capture that is late by
    a blip spacing is not mistaken for an early one. Without usable blips: the
    regularised cross-correlation (an impulse-response estimate) of the most broadband
    loud excerpts, taking the first lag that reaches 20 % of its peak; less exact for
    strongly filtered blocks (it then lands a few samples late). Latencies from -32
    samples (look-ahead) to ``max_latency_s`` are searched.
    """
    sr = int(sample_rate)
    x = _mono(input_audio)
    y = _mono(capture)
    if x.size == 0 or y.size == 0:
        return None
    max_lag = max(1, _idx(max_latency_s, sr))
    neg = min(32, max_lag)
    ests = []
    blips = layout.blips_s[:8]
    for t in blips:
        e = _blip_latency(x, y, _idx(t, sr), sr, max_lag, neg)
        if e is not None:
            ests.append(e)
    # A majority must answer: a capture that is late by a blip spacing would otherwise
    # match one blip's response to the previous blip.
    if ests and 2 * len(ests) > len(blips):
        ests.sort()
        if ests[-1] - ests[0] <= 2:
            return ests[0]
        return float(np.median(ests))
    return _xcorr_latency(x, y, sr, max_lag, neg)


def repeatability_esr(capture, layout: SignalLayout, sample_rate: int, latency: float | None) -> float | None:
    """ESR between the capture's two copies of the layout's repeated segment.

    ESR = sum((a - b)^2) / sum(a^2); 0 for a perfectly repeatable chain. None when the
    layout has no repeat, or the capture is too short or silent there.
    """
    if layout.repeat is None:
        return None
    y = _mono(capture)
    sr = int(sample_rate)
    a_s, b_s, length = layout.repeat
    lat = int(round(latency or 0.0))
    ia, ib, m = _idx(a_s, sr) + lat, _idx(b_s, sr) + lat, _idx(length, sr)
    if ia < 0 or ib < 0 or m <= 0 or ia + m > y.size or ib + m > y.size:
        return None
    a = y[ia:ia + m].astype(np.float64)
    b = y[ib:ib + m].astype(np.float64)
    ea = float(np.sum(a * a))
    if ea <= 0:
        return None
    return float(np.sum((a - b) ** 2) / ea)

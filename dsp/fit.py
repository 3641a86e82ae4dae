"""The staged, robust fitter behind :func:`dsp.twin.fit_block`.

Stages (``STAGES``; progress events name them):

``latency``      per item: given, or measured: one latency for the block, the median
                 over the training items of the excess-phase delay (the pure delay
                 beyond what a causal, minimum-phase twin explains; fractional, see
                 :func:`excess_delay`); the polarity by a vote. The target is read
                 advanced by it (fractional part: FFT phase ramp per window).
``init``         initialisation from the data: the small-signal response (quietest
                 windows) fitted by the filters from random starts, then a coarse
                 multi-start search over the topology's non-convex controls (``Topology.SEARCH``) on the item
                 nearest the reference setting, each candidate scored after solving the
                 output gain (and its sign: the polarity) in closed form, on excerpts at
                 four input levels; the best few are refined by Adam -> the knob map's
                 base. Knobs without "affects" hints are narrowed to the controls they
                 drive: a search of each of the topology's ``KNOB_CONTROLS`` (1-D) and
                 ``KNOB_GROUPS`` (their controls one after the other) on the
                 knob's two extreme sweep items (a chaos-only knob: the topology's
                 ``NAME_HINTS``). Then every single sweep gets a 1-D grid search of its
                 knob's controls (no gain solved: a level knob must show it) and the
                 knob curves are regressed through those values.
``per_capture``  Adam on the captures, tied through the map (identifiability): item
                 i's controls are ``map.additive(knobs_i) + delta_i``; ``delta_i`` may
                 move only the controls its off-reference knobs affect and is pulled to
                 0 (``delta_l2``); controls no knob moves are one shared value. Base,
                 curves, deltas and the topology's shared parameters are optimised
                 together on random segments of ``segment_s`` (after a ``warmup_s`` the
                 loss ignores) of up to ``max_items_per_step`` items per step.
``curves``       regression of the knob->control map (curves + interaction MLP) on
                 the per-item control values (raw domain): absorbs the deltas.
``joint``        Adam on the map and the shared parameters through the audio, all items.
Every Adam stage keeps its best state on fixed validation excerpts of the training
items (``val_items``) and ends on it: a stage never leaves the fit worse than it found it.
``report``       exact-path render of every item (recursive filters): ESR per item,
                 equal weight per item, held-out items separately. Items longer than
                 ``report_max_s`` are scored on evenly spread windows of that total.
                 Items with ``guitar_spans`` get a second ESR over those alone.

Memory: no audio is copied (inputs shared by identity, targets read through a latency
offset), so a UNIT-1-size plan costs its targets once (~1 GB for 90 x 60 s).

Determinism: one ``torch.Generator`` (seeded) draws every random choice; its state,
the optimiser state and the step are checkpointed, so resume continues bit-for-bit.

Processes: with ``FitConfig.processes`` > 1 (the default where two cores are usable)
the rows of each step, validation, search and report window are split between this
process and helpers (:mod:`dsp.parallel`); every random choice is still drawn here, so
the fit is the same up to float rounding, and bit-for-bit for a given process count.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import scipy.fft
import torch

from dsp import losses
from dsp.parallel import RowPool, default_processes
from dsp.controls import KnobControlMap, KnobDef
from dsp.structure import check_structure
from dsp.topologies import OUTPUT_LP_CONTROLS, Topology, make_topology

__all__ = ["FitConfig", "Fitter", "measure_latency", "excess_delay", "shift_signal", "STAGES", "CHECKPOINT_VERSION"]

STAGES = ("latency", "init", "per_capture", "curves", "joint", "report")
#: 5: the amp's interstage low-pass ranges widened (session 22): a fit checkpointed
#: before holds raw values that the new ranges squash to other cut-offs, so it starts
#: afresh (the job runner does so on a mismatch) rather than resume with them
CHECKPOINT_VERSION = 5


@dataclass
class FitConfig:
    """Knobs of the fitter (defaults measured on 2 CPU cores; see scratch/bench_synthetic.py)."""

    oversample: int = 2             # training oversampling (render uses the same)
    search_oversample: int = 1      # oversampling during the coarse search
    segment_s: float = 0.5          # random training segment (loss part)
    warmup_s: float = 0.04          # filter warm-up before each segment, not in the loss
    max_items_per_step: int = 16    # items drawn per step (all when fewer)
    search_candidates: int = 48     # random candidates per item in the coarse search
    search_excerpt_s: float = 0.25  # excerpt length for the search
    refine_starts: int = 3          # best candidates refined per item
    refine_steps: int = 40
    # the reference capture's init by descent (topologies whose Topology.descent_init()
    # is true: the amp's band chain): Adam from the small-signal fit on random segments
    # of that capture, ``descent_rows`` per step; each structural variant tried gets
    # ``descent_variant_steps``, the winner goes on to ``descent_steps`` in all
    descent_steps: int = 300
    descent_variant_steps: int = 100
    descent_rows: int = 8
    # structural options set rather than tried at init ({name: 0 or 1}, names from
    # ``dsp.structure.STRUCTURE``, e.g. {"drive_section": 1, "band_split": 1}; a rig's
    # block sets them with ``structure = {...}``); the rest are decided as usual
    variants: dict | None = None
    per_capture_steps: int = 200
    # with a time budget, the per-capture stage ends at this fraction of it (the joint
    # fit at 0.9): the rest before the joint fit's end is the joint fit's
    per_capture_frac: float = 0.5
    curve_steps: int = 300
    joint_steps: int = 200
    lr_controls: float = 0.05
    lr_shared: float = 0.01
    lr_map: float = 0.02
    delta_l2: float = 1e-2          # pull of per-item deviations from the knob map to 0
    line_search_points: int = 9     # grid of the init stage's 1-D search per sweep control
    stft_weight: float = 0.0        # MR-STFT weight in the training loss
    eval_every: int = 25            # validation / held-out evaluation interval (steps)
    val_items: int = 12             # training items in the fixed validation set (keep-best)
    eval_excerpt_s: float = 2.0
    report_max_s: float = 16.0      # longer items are scored on evenly spread windows
    report_window_s: float = 2.0
    max_latency_s: float = 0.05
    # the output FIR (topologies with OUTPUT_FIR): solved in closed form and kept where it
    # takes the training items' ESR down by Fitter.OUTPUT_FIR_MIN_GAIN; False: never
    output_fir: bool = True
    # joint-fit steps between re-solves of the output FIR (the map moves under it; each
    # new solve is kept only if the validation excerpts improve); 0: only at the start
    # and the end of the joint fit
    output_fir_every: int = 100
    checkpoint_interval_s: float = 30.0
    # processes the Adam steps, validations and report windows split their rows over
    # (:class:`dsp.parallel.RowPool`, one torch thread each); 0: ``UNIT_FIT_PROCESSES``
    # or two where two cores are usable (:func:`dsp.parallel.default_processes`). The
    # result is the same up to float rounding, so it is not part of the checkpoint's
    # fingerprint: a fit resumes on a machine with another core count
    processes: int = 0
    n_knots: int = 5
    hidden: int = 16


# --------------------------------------------------------------------------------------
# latency
# --------------------------------------------------------------------------------------


def measure_latency(x: np.ndarray, y: np.ndarray, max_lag: int) -> tuple[float, float]:
    """Delay of ``y`` behind ``x`` in samples (fractional) and the peak's sign.

    Cross-correlation by FFT over lags ``0..max_lag``; parabolic interpolation of
    ``|r|`` around the peak.
    """
    n = min(len(x), len(y), 48000 * 20)
    a, b = np.asarray(x[:n], np.float64), np.asarray(y[:n], np.float64)
    nf = 1 << int(2 * n - 1).bit_length()
    r = np.fft.irfft(np.fft.rfft(b, nf) * np.conj(np.fft.rfft(a, nf)), nf)[: max_lag + 1]
    k = int(np.argmax(np.abs(r)))
    frac = 0.0
    if 0 < k < max_lag:
        y0, y1, y2 = np.abs(r[k - 1]), np.abs(r[k]), np.abs(r[k + 1])
        den = y0 - 2 * y1 + y2
        if den != 0:
            frac = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
    return k + frac, float(np.sign(r[k]) or 1.0)


def shift_signal(y: np.ndarray, delay: float, pad: bool = True) -> np.ndarray:
    """``y`` advanced by ``delay`` samples (``out[t] = y[t + delay]``), same length,
    zero-filled at the end; fractional part by an FFT phase ramp.

    ``pad=False``: the phase ramp runs over the signal's own length (the next fast FFT
    size) instead of twice it, so its two ends ring into each other: for a window read
    with a margin on each side that is then cut off (:meth:`Fitter._target`), at a
    third of the cost (0.6 ms against 2.0 ms for a 0.6 s window)."""
    d_int = int(math.floor(delay))
    frac = delay - d_int
    out = np.zeros_like(y, dtype=np.float64)
    if d_int > 0:
        out[: len(y) - d_int] = y[d_int:]
    else:
        out[:] = y
    if frac > 1e-6 and not pad:
        n = scipy.fft.next_fast_len(len(y), real=True)
        w = 2 * np.pi * np.fft.rfftfreq(n)
        out = scipy.fft.irfft(scipy.fft.rfft(out, n) * np.exp(1j * w * frac), n)[: len(y)]
    elif frac > 1e-6:
        n = 1 << int(2 * len(y)).bit_length()
        Y = np.fft.rfft(out, n)
        w = 2 * np.pi * np.fft.rfftfreq(n)
        out = np.fft.irfft(Y * np.exp(1j * w * frac), n)[: len(y)]
    return out


def _cross_spectra(x: np.ndarray, y: np.ndarray, n: int, starts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch cross-spectra of ``x`` and ``y`` over Hann windows of ``n`` samples at
    ``starts`` (a window running past the end is zero-padded): ``(Sxx, Syy, Sxy)``."""
    w = np.hanning(n)
    sxy = np.zeros(n // 2 + 1, complex)
    sxx = np.zeros(n // 2 + 1)
    syy = np.zeros(n // 2 + 1)
    for s0 in starts:
        xs = np.zeros(n)
        ys = np.zeros(n)
        xs[: len(x[s0:s0 + n])] = x[s0:s0 + n]
        ys[: len(y[s0:s0 + n])] = y[s0:s0 + n]
        X = np.fft.rfft(xs * w)
        Y = np.fft.rfft(ys * w)
        sxy += np.conj(X) * Y
        sxx += np.abs(X) ** 2
        syy += np.abs(Y) ** 2
    return sxx, syy, sxy


#: the excess-phase delay is refused when the measured impulse response holds more than
#: ``CAUSAL_REFUSE`` of its (local) energy just before it; the delay is then the last lag
#: before which it holds at most ``CAUSAL_ENERGY`` (see :func:`excess_delay`)
CAUSAL_REFUSE = 0.25
CAUSAL_ENERGY = 0.02


def excess_delay(x: np.ndarray, y: np.ndarray, sample_rate: float, max_lag: int,
                 n: int = 8192) -> tuple[float, float, float]:
    """The pure delay of ``y`` behind ``x``: the linear part of the excess phase,
    bounded by where the measured impulse response starts.

    A causal twin is minimum-phase-like; whatever delay the device adds beyond that
    (interface latency, a plugin's linear-phase resampler) must be removed from the
    target. From the cross-spectra over Hann windows of ``n`` samples (windows whose
    input RMS is above -70 dBFS): H = Sxy/Sxx and the coherence; the minimum phase of
    |H| (real cepstrum, folded) is divided out, and the delay tau and sign maximise the
    coherence-weighted phase alignment |sum_k w_k exp(j(phi_ex,k + 2 pi f_k tau))| over
    150 Hz - 0.4 fs (whole samples 0..max_lag, then hundredths). No unwrapping, so a
    noisy (distorted) phase still gives the delay; the magnitude's shape cannot move it,
    unlike the correlation peak or a model fitted at a guessed delay.

    A device that is not minimum-phase (a passive tone stack can have zeros outside the
    unit circle) has excess phase that is not delay. The impulse response h = IFFT(H)
    says how much of it the delay would cut off: when the 8 lags before the delay hold
    more than ``CAUSAL_REFUSE`` (25 %) of the energy of those and the 64 lags after it,
    the delay becomes the last lag where that share is at most ``CAUSAL_ENERGY`` (2 %).
    Measured on Guitarix's Studio Preamp: the excess phase said 3.3 samples, where the
    share is 50-80 % (its response starts at lag 0, share 0-2 %). Guitarix's DS1 has
    under 1 % at its 31 samples.

    Returns ``(delay in samples, sign (+1, or -1 for an inverting block), quality)``;
    quality in [0, 1] is the normalised alignment (about 1: a clean delay).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    m = min(len(x), len(y))
    x, y = x[:m], y[:m]
    n = int(min(n, 1 << int(math.log2(max(m, 256)))))
    starts = [s0 for s0 in np.arange(0, max(1, m - n + 1), n // 2)
              if len(x[s0:s0 + n]) == n and np.mean(x[s0:s0 + n] ** 2) >= 1e-7]
    sxx, syy, sxy = _cross_spectra(x, y, n, starts)
    if not sxx.any() or not syy.any():
        return 0.0, 1.0, 0.0
    H = sxy / (sxx + 1e-30)
    coh = np.abs(sxy) ** 2 / (sxx * syy + 1e-30)
    logmag = np.log(np.abs(H) + 1e-12 * np.abs(H).max())
    c = np.fft.irfft(logmag, n)
    fold = np.zeros(n)
    fold[0] = 1.0
    fold[1:n // 2] = 2.0
    fold[n // 2] = 1.0
    phimin = np.imag(np.fft.rfft(c * fold, n))
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    sel = (f >= 150.0) & (f <= 0.4 * sample_rate) & (coh > 0.05)
    if sel.sum() < 16:
        return 0.0, 1.0, 0.0
    z = coh[sel] * np.exp(1j * (np.angle(H[sel]) - phimin[sel]))
    wk = 2 * np.pi * f[sel] / sample_rate
    total = float(np.sum(coh[sel]))

    def align(taus):  # in blocks of 256 delays: a few MB at any sample rate
        return np.concatenate([np.abs(np.exp(1j * np.outer(taus[k:k + 256], wk)) @ z)
                               for k in range(0, len(taus), 256)])

    taus = np.arange(0, max_lag + 1, dtype=np.float64)
    best = float(taus[int(np.argmax(align(taus)))])
    fine = np.arange(max(0.0, best - 1.0), best + 1.0 + 1e-9, 0.01)
    a = align(fine)
    best = float(fine[int(np.argmax(a))])
    quality = float(a.max() / total)
    # causal check: the share of h's energy in the 8 lags before a delay d, against
    # the 8 before and the 64 from d on (local, so the estimate's noise floor, spread
    # over all lags, does not count); bins without input energy are left out
    h2 = np.roll(np.fft.irfft(np.where(sxx > 1e-12 * sxx.max(), H, 0.0), n), n // 2) ** 2

    def cut(d: int) -> float:
        i = n // 2 + d
        pre, post = float(h2[max(0, i - 8):i].sum()), float(h2[i:i + 64].sum())
        return pre / max(pre + post, 1e-300)

    if best + 1 < n // 2 - 64 and cut(int(round(best))) > CAUSAL_REFUSE:
        ok = [d for d in range(0, int(round(best)) + 1) if cut(d) <= CAUSAL_ENERGY]
        best = float(ok[-1]) if ok else 0.0
    phase = float(np.angle(np.exp(1j * wk * best) @ z))
    sign = 1.0 if abs(phase) <= math.pi / 2 else -1.0
    return best, sign, quality


# --------------------------------------------------------------------------------------
# the fitter
# --------------------------------------------------------------------------------------


def loss_rows(y_hat, y, warm: int, power=None, stft_weight: float = 0.0) -> torch.Tensor:
    """Per-row training loss after the ``warm`` samples of warm-up: ESR plus
    pre-emphasised ESR (+ ``stft_weight`` * MR-STFT), each with an energy floor from the
    row's item ``power`` (mean square; None: no floor), so a quiet stretch of a loud
    capture does not dominate."""
    a, b = y_hat[..., warm:], y[..., warm:]
    floor = 0.0 if power is None else 0.05 * b.shape[-1] * power
    den = b.pow(2).sum(-1) + floor + 1e-9
    pa, pb = losses.pre_emphasis(a), losses.pre_emphasis(b)
    denp = pb.pow(2).sum(-1) + (0.0 if power is None else 0.05 * floor) + 1e-9
    loss = (b - a).pow(2).sum(-1) / den + (pb - pa).pow(2).sum(-1) / denp
    if stft_weight > 0:
        loss = loss + stft_weight * losses.mr_stft(a, b)
    return loss


class Cancelled(Exception):
    """Raised inside a stage when ``should_stop`` says so (caught by :meth:`Fitter.run`)."""


class Fitter:
    """Holds the data and the whole fitting state; :meth:`run` executes the stages.

    Args:
        topology: topology name.
        knobs: modelled knobs (:class:`dsp.controls.KnobDef`).
        items: list of dicts with ``name, knobs, input, target, sample_rate,
            latency_samples, holdout`` (see :class:`dsp.twin.TrainItem`).
        seed: seeds every random choice.
        config: :class:`FitConfig`.
    """

    def __init__(self, topology: str, knobs: list[KnobDef], items: list[dict], seed: int = 0,
                 config: FitConfig | None = None):
        if not items:
            raise ValueError("no items to fit")
        srs = {float(it["sample_rate"]) for it in items}
        if len(srs) != 1:
            raise ValueError(f"all items must share one sample rate, got {sorted(srs)}")
        self.cfg = config or FitConfig()
        if int(self.cfg.processes) < 0:
            raise ValueError(f"processes must be 0 (automatic) or a count of 1 or more, got {self.cfg.processes}")
        self.sr = srs.pop()
        self.topology_name = topology
        self.variants = self._set_variants()  # a misspelt option stops here, before any work
        self._linear_cache: dict = {}  # _linear_init's fits
        self.knobs = list(knobs)
        self.items = items
        self.seed = int(seed)
        torch.manual_seed(self.seed)
        self.topo: Topology = make_topology(topology, self.sr, self.cfg.oversample)
        self.C = len(self.topo.CONTROLS)
        self.gen = torch.Generator().manual_seed(self.seed)
        self.stage = 0
        self.step = 0
        self.opt_state = None
        self.best = None  # best state of the running stage (see _optimise)
        self.stage_total = None  # the running stage's step count when the budget set it
        self.elapsed = 0.0
        self.polarity = 1.0
        self.latencies: list[float] = []
        self.item_raw = self.topo.default_raw().expand(len(items), -1).clone()
        self.item_delta = torch.zeros(len(items), self.C)
        self.map = KnobControlMap(self.knobs, list(self.topo.CONTROLS), self.cfg.n_knots, self.cfg.hidden)
        # knobs without hints may drive only the topology's knob controls; the init stage
        # narrows that down from their sweeps (or a name prior for chaos-only knobs)
        self.unhinted = [k for k, kd in enumerate(self.knobs) if kd.affects is None]
        if self.topo.KNOB_CONTROLS:
            for k in self.unhinted:
                self.map.set_affects(k, self.topo.KNOB_CONTROLS)
        self.per_item_mask = (self.map.mask.sum(0) > 0)  # controls some knob may move
        self.last_item_esr: dict[str, float] = {}
        self.holdout_esr: float | None = None
        self.train_esr: float | None = None
        self.report: dict | None = None
        # the report stage's per-item figures so far ({"esr": {name: ESR}, "guitar":
        # {name: ESR}}), checkpointed: a report cut by a cancel resumes where it stopped
        # and still scores every item
        self.report_partial: dict[str, dict[str, float]] = {"esr": {}, "guitar": {}}
        self.cancelled = False
        self.fingerprint = self._fingerprint()
        self.x: list[np.ndarray] = []
        self.y: list[np.ndarray] = []
        self._prepared = False
        self._pool = None  # the run's RowPool when it computes on several processes
        self._begin_run()  # no callbacks, budget or checkpoint until run() sets them

    #: FitConfig fields that change how fast a fit runs, not what it computes (beyond
    #: float rounding): left out of the checkpoint's fingerprint
    RUNTIME_FIELDS = ("processes",)

    # -- bookkeeping -----------------------------------------------------------------
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(self.topology_name.encode())
        for it in self.items:
            h.update(it["name"].encode())
            h.update(repr(sorted(it["knobs"].items())).encode())
            h.update(np.ascontiguousarray(it["input"][:4096], np.float32).tobytes())
            h.update(np.ascontiguousarray(it["target"][:4096], np.float32).tobytes())
            h.update(str(len(it["target"])).encode())
        h.update(repr(sorted((k, v) for k, v in asdict(self.cfg).items() if k not in self.RUNTIME_FIELDS)).encode())
        h.update(str(self.seed).encode())
        return h.hexdigest()[:16]

    @property
    def train_idx(self) -> list[int]:
        return [i for i, it in enumerate(self.items) if not it.get("holdout")]

    @property
    def holdout_idx(self) -> list[int]:
        return [i for i, it in enumerate(self.items) if it.get("holdout")]

    def state_dict(self) -> dict:
        return {
            "version": CHECKPOINT_VERSION, "fingerprint": self.fingerprint,
            "stage": self.stage, "step": self.step, "opt_state": self.opt_state, "best": self.best, "stage_total": self.stage_total,
            "elapsed": self.elapsed, "polarity": self.polarity, "latencies": self.latencies,
            "item_raw": self.item_raw, "item_delta": self.item_delta, "topo": self.topo.state_dict(), "map": self.map.state_dict(),
            "affects": [kd.affects for kd in self.map.knobs],
            "gen": self.gen.get_state(), "last_item_esr": self.last_item_esr,
            "holdout_esr": self.holdout_esr, "train_esr": self.train_esr, "report": self.report,
            "report_partial": self.report_partial,
        }

    def load_state_dict(self, s: dict) -> None:
        if s.get("version") != CHECKPOINT_VERSION:
            raise ValueError("checkpoint version mismatch")
        if s["fingerprint"] != self.fingerprint:
            raise ValueError("checkpoint was made with other items, settings or seed")
        self.stage, self.step, self.opt_state = s["stage"], s["step"], s["opt_state"]
        self.best = s.get("best")
        self.stage_total = s.get("stage_total")
        self.elapsed, self.polarity, self.latencies = s["elapsed"], s["polarity"], s["latencies"]
        self.item_raw = s["item_raw"].clone()
        self.item_delta = s["item_delta"].clone()
        self.topo.load_state_dict(s["topo"])
        for k, aff in enumerate(s["affects"]):
            if aff is not None:
                self.map.set_affects(k, aff)
        self.map.load_state_dict(s["map"])
        self.per_item_mask = (self.map.mask.sum(0) > 0)
        self.gen.set_state(s["gen"])
        self.last_item_esr, self.holdout_esr = s["last_item_esr"], s["holdout_esr"]
        self.train_esr, self.report = s["train_esr"], s["report"]
        part = s.get("report_partial") or {}
        self.report_partial = {"esr": dict(part.get("esr", {})), "guitar": dict(part.get("guitar", {}))}

    def save_checkpoint(self, path: str) -> None:
        tmp = f"{path}.tmp{os.getpid()}"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: str) -> None:
        self.load_state_dict(torch.load(path, weights_only=False))

    # -- data --------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Align every item (latency) and set the polarity; cheap, redone on resume.

        No audio is copied: inputs and targets stay the caller's float32 arrays (a
        UNIT-1-size plan is ~1 GB of targets); an integer latency is an offset applied
        when a window is read (:meth:`_target`), the polarity a sign."""
        if self._prepared:
            return
        max_lag = int(self.cfg.max_latency_s * self.sr)
        xs, ys = [], []
        for it in self.items:
            x = np.asarray(it["input"], np.float32).reshape(-1)
            y = np.asarray(it["target"]).reshape(-1)
            if y.dtype not in (np.float16, np.float32):  # float16 targets stay so (memory)
                y = y.astype(np.float32)
            n = min(len(x), len(y))
            xs.append(x[:n])
            ys.append(y[:n])
        # The device's latency is one number: measured items get the median over the
        # training items of their excess-phase delay (:func:`excess_delay`, fractional;
        # measured spread on Guitarix plugins: 0.2 samples), and the polarity by a
        # vote. Its estimate does not depend on the block's filters, unlike the
        # correlation peak (measured 250 samples off on a distorted amp) or an onset
        # (a plugin's linear-phase resampler rings before it). When the phase says
        # nothing (quality < 0.3: no coherent output), the checks' onset hints, else
        # the correlation peak. Given latencies are used as given.
        if not self.latencies:  # fresh fit (a resumed one keeps its chosen latencies)
            tr = [k for k, it in enumerate(self.items) if not it.get("holdout")] or list(range(len(self.items)))
            n_est = int(20 * self.sr)  # 20 s of each item is plenty
            measured = any(it.get("latency_samples") is None for it in self.items)
            est = [excess_delay(xs[k][:n_est], ys[k][:n_est], self.sr, max_lag) for k in tr] if measured else []
            good = [e for e in est if e[2] >= 0.3]
            hints = [float(self.items[k]["latency_hint"]) for k in tr
                     if self.items[k].get("latency_hint") is not None]
            if good:
                d = float(np.median([e[0] for e in good]))
                # within 0.15 of a whole sample: that sample (DAW round trips and plugins
                # report whole samples; the estimate's own scatter is about 0.05, which
                # alone would cap a perfect twin at ESR ~1e-3 from 5 kHz up)
                self._block_latency = float(round(d)) if abs(d - round(d)) <= 0.15 else d
                signs = [e[1] * e[2] for e in good]
            elif not measured:  # every latency is given: only the polarity is voted
                self._block_latency = 0.0
                signs = [measure_latency(xs[k], ys[k], max_lag)[1] for k in tr]
            elif hints:
                self._block_latency = float(max(0.0, np.median(hints)))
                signs = [measure_latency(xs[k], ys[k], max_lag)[1] for k in tr]
            else:
                corr = [measure_latency(xs[k], ys[k], max_lag) for k in tr]
                self._block_latency = float(np.round(np.median([c[0] for c in corr])))
                signs = [c[1] for c in corr]
            if os.environ.get("UNIT_FIT_DEBUG"):
                print("latency", self._block_latency, "from", [tuple(round(v, 2) for v in e) for e in est[:8]], flush=True)
            self.polarity = 1.0 if sum(signs) >= 0 else -1.0
            self.latencies = [self._block_latency if it.get("latency_samples") is None
                              else float(it["latency_samples"]) for it in self.items]
        self.x = xs
        self._y_raw = ys
        self._align(self.latencies)
        self._prepared = True

    def _align(self, latencies: list[float]) -> None:
        """Set the items' latencies: whole samples become a read offset, the fraction a
        phase ramp applied to each window as it is read (no copy of the targets)."""
        self.latencies = list(latencies)
        self.y = self._y_raw
        self._shift = [int(math.floor(d + 1e-9)) for d in self.latencies]
        self._frac = [d - k if d - k > 1e-6 else 0.0 for d, k in zip(self.latencies, self._shift)]
        # each item's mean square over its aligned span, read at the whole-sample offset:
        # a fractional delay is an all-pass and leaves the energy as it is, and reading
        # through it (an FFT per window, _target) took 14 of the 25 s this took on
        # Guitarix's MetalHead (40 x 32 s at a latency of 2.2 samples)
        self.power = []
        for i in range(len(self.items)):
            n = len(self.x[i])
            y, d = self.y[i], self._shift[i]
            acc = 0.0
            for s in range(0, n, 1 << 20):  # chunked: no float64 copy of a long capture
                lo, hi = max(s + d, 0), min(s + d + min(1 << 20, n - s), len(y))
                if hi > lo:
                    acc += float(np.sum(y[lo:hi].astype(np.float64) ** 2))
            self.power.append(acc / max(1, n) + 1e-12)

    #: samples read on each side of a window for a fractional latency (FFT phase ramp)
    FRAC_MARGIN = 1024

    def _target(self, i: int, start: int, length: int) -> np.ndarray:
        """Aligned target window of item ``i`` (latency removed, polarity applied,
        zero beyond the end), float32. A fractional latency is applied to the window
        read with ``FRAC_MARGIN`` samples on each side (``shift_signal``)."""
        y, d, frac = self.y[i], self._shift[i], self._frac[i]
        n = len(self.x[i])
        length = max(0, min(length, n - start))
        m = self.FRAC_MARGIN if frac else 0
        a = start + d - m
        span = length + 2 * m
        out = np.zeros(span, np.float32)
        lo, hi = max(a, 0), min(a + span, len(y))
        if hi > lo:
            out[lo - a:hi - a] = y[lo:hi]
        if frac:
            out = shift_signal(out.astype(np.float64), frac, pad=False)[m:m + length].astype(np.float32)
        return out if self.polarity > 0 else -out

    def _segments(self, idx: list[int], seg: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random segments (one per item in ``idx``) of ``seg`` samples."""
        xs, ys = [], []
        for i in idx:
            n = len(self.x[i])
            L = min(seg, n)
            off = int(torch.randint(0, n - L + 1, (1,), generator=self.gen))
            xs.append(self.x[i][off: off + L])
            ys.append(self._target(i, off, L))
        L = min(len(a) for a in xs)
        return (torch.from_numpy(np.stack([a[:L] for a in xs])),
                torch.from_numpy(np.stack([a[:L] for a in ys])))

    def _excerpts(self, i: int, length: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Windows of item ``i`` at four input levels (see :meth:`_excerpt_starts`)."""
        x = self.x[i]
        if len(x) <= length:
            return [(x, self._target(i, 0, len(x)))]
        return [(x[s0: s0 + length], self._target(i, s0, length)) for s0 in self._excerpt_starts(i, length)]

    def _loss_rows(self, y_hat, y, warm, power=None) -> torch.Tensor:
        return loss_rows(y_hat, y, warm, power, self.cfg.stft_weight)

    def _rows_loss(self, X, raw, Y, P, warm) -> torch.Tensor:
        """Per-row training losses of ``self.topo(X, raw)`` (:func:`loss_rows`), the rows
        split over the run's processes when it has several (:class:`dsp.parallel.RowPool`);
        differentiable as the serial render is."""
        if self._pool is None:
            return self._loss_rows(self.topo(X, raw), Y, warm, P)
        return self._pool.loss_rows(self.topo, X, raw, Y, P, warm, self.cfg.stft_weight)

    def _render(self, X, raw, exact: bool = False) -> torch.Tensor:
        """``self.topo(X, raw, exact=exact)`` without gradients, the rows split over the
        run's processes when it has several."""
        if self._pool is None:
            with torch.no_grad():
                return self.topo(X, raw, exact=exact)
        return self._pool.render(self.topo, X, raw, exact)

    def _raw_for_items(self, idx, item_raw=None, shared=None):
        r = (self.item_raw if item_raw is None else item_raw)[idx]
        if shared is not None:
            r = torch.where(self.per_item_mask[None], r, shared[None].expand_as(r))
        return r

    # -- driving -------------------------------------------------------------------------
    def run(self, on_event=None, should_stop=None, time_budget_s=None, checkpoint_path=None) -> bool:
        """Run the remaining stages. Returns ``False`` when cancelled (state kept)."""
        self._begin_run(on_event, should_stop, time_budget_s, checkpoint_path)
        torch.manual_seed(self.seed)
        self._prepare()
        n_proc = self.cfg.processes or default_processes()
        self._pool = RowPool(self.topology_name, self.sr, self.cfg.oversample, n_proc) if n_proc > 1 else None
        try:
            while self.stage < len(STAGES):
                getattr(self, f"_stage_{STAGES[self.stage]}")()
                self.stage += 1
                self.step = 0
                self.opt_state = None
                self._tick(force_ckpt=True)
        except Cancelled:
            self.cancelled = True
            self._tick(force_ckpt=True)
            return False
        finally:
            if self._pool is not None:
                for f in self._pool.failures:
                    print(f"note: a helper process failed; its rows were computed in this one ({f.splitlines()[-1]})",
                          file=sys.stderr, flush=True)
                self._pool.close()
                self._pool = None
        return True

    def _begin_run(self, on_event=None, should_stop=None, time_budget_s=None, checkpoint_path=None) -> None:
        """The run's callbacks, budget, checkpoint path and clocks (a stage needs them)."""
        self._on_event = on_event or (lambda ev: None)
        self._should_stop = should_stop or (lambda: False)
        self._budget = time_budget_s
        self._ckpt = checkpoint_path
        self._t0 = time.monotonic() - self.elapsed
        self._last_ckpt = time.monotonic()

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _tick(self, force_ckpt=False, opt=None):
        self.elapsed = self._now()
        if opt is not None:
            self.opt_state = opt.state_dict()
        if self._ckpt and (force_ckpt or time.monotonic() - self._last_ckpt >= self.cfg.checkpoint_interval_s):
            self.save_checkpoint(self._ckpt)
            self._last_ckpt = time.monotonic()

    def _check_stop(self, opt=None):
        if self._should_stop():
            if opt is not None:
                self.opt_state = opt.state_dict()
            raise Cancelled()

    def _over_budget(self, frac: float) -> bool:
        return self._budget is not None and self._now() > frac * self._budget

    def _note(self, detail: str) -> None:
        """A progress event inside a long step (the init's descents and knob searches
        take minutes with the band chain): the stage's step and total as they stand,
        and what is being done now. A cancel asked for is honoured here, so it takes
        effect within one search or descent step, not at the end of the init."""
        self._emit(self._stage_totals()[STAGES[self.stage]], detail=detail)
        self._check_stop()

    def _emit(self, total, loss=None, per_item=None, detail=""):
        steps_left = total - self.step
        el = self._now()
        rate = el / max(1, self._global_step()) if self._global_step() else None
        if STAGES[self.stage] in ("latency", "init"):
            rate = None  # an init step (minutes with the band chain) says nothing of an Adam step's time
        eta = None if rate is None else rate * (steps_left + self._steps_after())
        if self._budget is not None:  # stages fill the budget
            left = max(self._budget - el, 0.0)
            eta = min(eta, left) if STAGES[self.stage] == "report" and eta is not None else left
        self._on_event(dict(stage=STAGES[self.stage], step=self.step, total=total, loss=loss,
                            train_esr=self.train_esr, holdout_esr=self.holdout_esr,
                            per_item_esr=dict(per_item or self.last_item_esr), eta_s=eta,
                            elapsed_s=el, detail=detail))

    def _stage_totals(self):
        c = self.cfg
        t = {"latency": 1, "init": 1 + len(self._sweep_items()), "per_capture": c.per_capture_steps,
             "curves": c.curve_steps, "joint": c.joint_steps, "report": len(self.items)}
        if self.stage_total is not None and self.stage < len(STAGES):
            t[STAGES[self.stage]] = self.stage_total
        return t

    def _global_step(self):
        t = self._stage_totals()
        return sum(t[s] for s in STAGES[: self.stage]) + self.step

    def _steps_after(self):
        t = self._stage_totals()
        return sum(t[s] for s in STAGES[self.stage + 1:])

    def _optimise(self, total, params_groups, step_fn, stop_frac=None, validate=None, tracked=()):
        """Generic Adam loop with checkpoint/resume, cosine LR decay and cancellation.

        ``validate``: a callable scoring the current state on fixed training excerpts
        (lower is better). It runs every ``eval_every`` steps and at the end; the stage
        ends on the best state seen (kept in the checkpoint), so a stage can never leave
        the fit worse than it found it: random-segment Adam steps are noisy, and on real
        captures they were measured to wander from an init at ESR 0.5 to silence (1.0).
        ``tracked``: tensors outside the optimiser that the stage may change between
        steps (the output FIR's taps); the best state keeps and restores them too."""
        opt = torch.optim.Adam(params_groups)
        base_lrs = [g["lr"] for g in opt.param_groups]
        tensors = [p for g in params_groups for p in g["params"]] + list(tracked)
        # With a time budget a stage fills its share of it: after a few timed steps the
        # step count grows (up to 20x the configured one) to end at ``stop_frac`` of the
        # budget; the count is kept in the checkpoint so a resumed stage keeps its
        # learning-rate schedule.
        if self.stage_total is not None:
            total = self.stage_total
        calib_from = (self.step, time.monotonic())
        if self.opt_state is not None:
            opt.load_state_dict(self.opt_state)
        if validate is not None and self.best is None:
            with torch.no_grad():
                self.best = {"score": float(validate()), "step": self.step,
                             "values": [t.detach().clone() for t in tensors]}
            if os.environ.get("UNIT_FIT_DEBUG"):
                print(f"{STAGES[self.stage]}: validation at start {self.best['score']:.4f}", flush=True)

        def check_best():
            with torch.no_grad():
                v = float(validate())
                if not math.isfinite(v):
                    return
                if v < self.best["score"]:
                    self.best = {"score": v, "step": self.step,
                                 "values": [t.detach().clone() for t in tensors]}

        while self.step < total:
            self._check_stop(opt)
            # a stage always takes a few steps, so a budget too small for the init still
            # leaves every stage its say (and its progress events)
            if stop_frac is not None and self._over_budget(stop_frac) and self.step >= min(total, 5):
                break
            f = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * self.step / max(1, total)))
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * f
            opt.zero_grad(set_to_none=True)
            loss, per_item = step_fn()
            loss.backward()
            opt.step()
            self.step += 1
            if (self.stage_total is None and stop_frac is not None and self._budget is not None
                    and self.step - calib_from[0] == 8):
                per_step = (time.monotonic() - calib_from[1]) / 8
                left = stop_frac * self._budget - self._now()
                total = int(min(20 * total, max(total, self.step + 0.95 * left / max(per_step, 1e-6))))
                self.stage_total = total
            self.last_item_esr.update(per_item)
            self.train_esr = float(np.mean(list(self.last_item_esr.values()))) if self.last_item_esr else None
            if validate is not None and self.step % self.cfg.eval_every == 0:
                check_best()
            self._after_step(total)
            self._emit(total, float(loss.detach()))
            self._tick(opt=opt)
        if validate is not None:
            check_best()
            if os.environ.get("UNIT_FIT_DEBUG"):
                print(f"{STAGES[self.stage]}: best validation {self.best['score']:.4f} at step "
                      f"{self.best['step']} of {self.step}", flush=True)
            with torch.no_grad():
                for t, v in zip(tensors, self.best["values"]):
                    t.copy_(v)
            self.best = None
        self.opt_state = None
        self.stage_total = None

    def _val_set(self) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fixed validation excerpts of up to ``val_items`` training items (spread evenly):
        the loudest and a median-level window each, ``warmup_s + segment_s`` long."""
        if getattr(self, "_val", None) is None:
            c = self.cfg
            tr = self.train_idx
            n = min(len(tr), c.val_items)
            pick = [tr[int(k)] for k in np.linspace(0, len(tr) - 1, n).round().astype(int)]
            pick = sorted(set(pick))
            warm = int(c.warmup_s * self.sr)
            L = warm + int(c.segment_s * self.sr)
            L = min([L] + [len(self.x[i]) for i in pick])
            rows, xs, ys = self._level_excerpts(pick, L)
            self._val = (rows, torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)),
                         torch.tensor([self.power[i] for i in rows]))
        return self._val

    def _level_excerpts(self, idx: list[int], length: int) -> tuple[list[int], list, list]:
        """Windows of ``length`` samples of each item in ``idx`` at its four input levels
        (:meth:`_excerpt_starts`): the item of each row, the inputs and the aligned
        targets."""
        rows, xs, ys = [], [], []
        for i in idx:
            for s0 in self._excerpt_starts(i, length):
                rows.append(i)
                xs.append(self.x[i][s0:s0 + length])
                ys.append(self._target(i, s0, length))
        return rows, xs, ys

    @torch.no_grad()
    def _validate(self, raw_fn) -> float:
        """Mean training loss of the fixed validation excerpts; ``raw_fn(idx)`` gives the
        raw controls of items ``idx``."""
        rows, X, Y, P = self._val_set()
        warm = int(self.cfg.warmup_s * self.sr)
        return float(self._rows_loss(X, raw_fn(rows), Y, P, warm).mean())

    def _after_step(self, total):
        pass

    # -- stages --------------------------------------------------------------------------
    def _stage_latency(self):
        self._emit(1)
        self.step = 1

    def _response_db(self, i: int, n: int = 4096, quiet: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Measured best linear approximation of item ``i``: ``(freqs_hz, |H| in dB,
        usable bins)``; see :meth:`_response`."""
        f, H, usable = self._response(i, n, quiet)
        return f, 20 * np.log10(np.abs(H) + 1e-9), usable

    def _response(self, i: int, n: int = 4096, quiet: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Measured best linear approximation of item ``i`` (cross-spectra over Hann
        windows of ``n`` samples): ``(freqs_hz, complex H, usable bins)``.

        ``quiet``: only the quietest third of the active windows (input RMS above
        -70 dBFS), i.e. the small-signal response of a nonlinear block (the test
        signal's -40 dBFS sweep and quiet noise); all windows otherwise."""
        x = self.x[i].astype(np.float64)
        y = self._target(i, 0, len(x)).astype(np.float64)
        if len(x) < n:
            n = 1 << max(6, int(math.log2(max(len(x), 64))))
        hop = n // 2
        starts = np.arange(0, max(1, len(x) - n + 1), hop)
        c = np.concatenate([[0.0], np.cumsum(x ** 2)])
        e = (c[np.minimum(starts + n, len(x))] - c[starts]) / n
        sel = e > 1e-7
        if quiet and sel.sum() >= 6:
            sel &= e <= np.quantile(e[sel], 1 / 3)
        if not sel.any():
            sel = e >= 0
        sxx, _, sxy = _cross_spectra(x, y, n, starts[sel])
        f = np.fft.rfftfreq(n, 1 / self.sr)
        usable = sxx > 1e-4 * np.median(sxx[sxx > 0]) if (sxx > 0).any() else sxx >= 0
        return f, sxy / (sxx + 1e-30), usable

    def _linear_init(self, i: int) -> torch.Tensor:
        """Fit the controls to the measured response (log-magnitude on a log-frequency
        grid, 20 Hz - 0.45 fs) from random starts; the model's response is the FFT of
        its impulse response. Linear topologies: the whole capture. Nonlinear ones: the
        small-signal response (quietest windows; the model's impulse at 1e-4 of full
        scale, where its stages are linear), which sets the filters and tone stack that
        a gain/bias search alone cannot find."""
        topo = self.topo
        # the variants that only reorder linear filters (the amp's tone-stack position)
        # leave the small-signal response as it is: one fit serves them all
        key = (i, tuple(float(topo.shared[k]) for k in topo.VARIANTS if k not in topo.SMALL_SIGNAL_INVARIANT))
        cache = self._linear_cache
        if key in cache:
            raw, switches = cache[key]
            with torch.no_grad():
                for k, v in switches.items():
                    topo.shared[k].fill_(v)
            return raw.clone()
        raw = self._linear_fit(i)
        cache[key] = (raw.clone(), {k: float(topo.shared[k]) for k in topo.switches()})
        return raw

    def _linear_fit(self, i: int) -> torch.Tensor:
        """:meth:`_linear_init`'s fit (it sets the output sections' switches)."""
        c, topo = self.cfg, self.topo
        n = 4096
        f, H, usable = self._response(i, n, quiet=not topo.LINEAR)
        mag = 20 * np.log10(np.abs(H) + 1e-9)
        grid = np.unique(np.round(np.geomspace(max(20.0, f[1]), 0.45 * self.sr, 200) / f[1]).astype(int))
        grid = grid[usable[grid]]
        if len(grid) < 8:
            return topo.default_raw()
        sel = grid
        target = torch.tensor(mag[sel], dtype=torch.float64)
        amp = 1.0 if topo.LINEAR else 1e-4
        imp = torch.zeros(1, n, dtype=torch.float64)
        imp[0, 0] = amp
        K = c.search_candidates
        names = topo.control_names()
        free = [names.index(n) for n in topo.SMALL_SIGNAL] if topo.SMALL_SIGNAL else list(range(self.C))
        inert = set(topo.inert_controls())  # a section that is off: nothing to draw
        free = [k for k in free if names[k] not in inert]
        # small-signal controls the topology starts at given values (its init_values) are
        # not drawn: the fit shapes the other filters around them
        base = topo.default_raw()
        for k, v in topo.init_values().items():
            if names.index(k) in free:
                free.remove(names.index(k))
                base[names.index(k)] = topo.spec(k).to_raw(v).float()

        def dist(raw):
            h = topo(imp.expand(raw.shape[0], -1), raw) / amp
            m = 20 * torch.log10(torch.fft.rfft(h, n).abs()[:, sel] + 1e-9)
            off = (target[None] - m).mean(-1, keepdim=True)  # output gain in closed form
            return (target[None] - m - off).pow(2).mean(-1), off[:, 0]

        def magnitude_fit(free, gen):
            u = torch.rand(K - 1, len(free), generator=gen) * 0.9 + 0.05
            cand = base[None].repeat(K, 1)
            cand[1:, free] = (torch.log(u) - torch.log1p(-u)).to(cand.dtype)
            fmask = torch.zeros(self.C)
            fmask[free] = 1.0
            with torch.no_grad():
                d, _ = dist(cand)
            start = cand[torch.argsort(d)[: c.refine_starts]].clone().requires_grad_(True)
            opt = torch.optim.Adam([start], lr=0.1)
            for _ in range(150):
                opt.zero_grad()
                dist(start)[0].sum().backward()
                start.grad *= fmask  # only the filters move
                opt.step()
            with torch.no_grad():
                d, off = dist(start)
                k = int(torch.argmin(d))
            return start[k].detach().clone(), float(d[k]), float(off[k])

        if topo.OUTPUT_LP:  # the first fit is without it (a previous init may have set it)
            with torch.no_grad():
                topo.shared["output_lp"].fill_(0.0)
        # the magnitude is the same with the topology's magnitude values (one chain for
        # the band chain's five: the split sums to an all-pass); the phase is not, so the
        # all-pass init below runs with the values as they are
        with self._magnitude_values():
            best, err, off = magnitude_fit(free, self.gen)
        if topo.OUTPUT_LP:
            # the output low-pass stays on when it takes a quarter off the dB error (and
            # that was above 1 dB rms); its own generator: nothing drawn from the fit's
            flag = topo.shared["output_lp"]
            with torch.no_grad():
                flag.fill_(1.0)
            lp = [names.index(k) for k in OUTPUT_LP_CONTROLS]
            with self._magnitude_values():
                best_on, err_on, off_on = magnitude_fit(free + lp, torch.Generator().manual_seed(self.seed + 2))
            use = err > 1.0 and err_on < 0.75 ** 2 * err
            if os.environ.get("UNIT_FIT_DEBUG"):
                print(f"output low-pass: dB rms error off {err ** 0.5:.2f}, on {err_on ** 0.5:.2f} -> "
                      f"{'on' if use else 'off'}", flush=True)
            with torch.no_grad():
                flag.fill_(1.0 if use else 0.0)
            if use:
                best, err, off = best_on, err_on, off_on
        if topo.LINEAR:  # a nonlinear block's output gain is solved at full level later
            gi = names.index(topo.OUTPUT_GAIN)
            spec = topo.CONTROLS[gi]
            best[gi] = spec.to_raw(float(spec.to_physical(best[gi])) + off).float()
        if os.environ.get("UNIT_FIT_DEBUG"):
            print("linear init: dB rms error", err ** 0.5, flush=True)
        if topo.ALLPASS:
            best = self._allpass_init(best.float(), H[sel], sel, imp, amp)
        return best.float()

    #: the output all-pass is turned on when it takes a quarter off the phase's part of
    #: the small-signal complex error, and that part is above this (:meth:`_allpass_init`;
    #: the DS1's is 0.03: turned on there it fitted narrow phase wiggles at 56 Hz and
    #: 17.7 kHz and the held-out ESR got worse)
    ALLPASS_MIN_ERROR = 0.1

    def _allpass_init(self, raw: torch.Tensor, H: np.ndarray, sel, imp, amp) -> torch.Tensor:
        """Decide the topology's output all-pass (``Topology.ALLPASS``) from the phase.

        The magnitude fit leaves the filters' (minimum) phase; the measured response
        ``H`` (complex, on the grid ``sel``) may have more. The complex error
        ``sum |g Hm - H|^2 / sum |H|^2`` (``g`` real: the gain and polarity in closed
        form) is computed with the all-pass off, then with its controls fitted (two
        sections, four on the amp; random starts, then Adam; the rest held). Only the
        part of it above the magnitude's own floor (the error with every phase matched)
        is the phase's: the all-pass stays on when it takes at least a quarter off that
        part (and that part was above ``ALLPASS_MIN_ERROR``). Measured on Guitarix with
        two sections (floor about 0.05): 0.99 off, 0.24 on for the Studio Preamp; 0.998
        off, 0.645 on for the MetalHead (its 4-band crossover has more phase than two
        sections make); with four the Studio Preamp's went to 0.13 (floor 0.03). The
        all-pass controls are set either way."""
        c, topo = self.cfg, self.topo
        names = topo.control_names()
        free = [names.index(k) for k in topo.allpass_controls()]
        Ht = torch.tensor(H, dtype=torch.complex128)
        n = imp.shape[-1]

        def cerr(r):
            h = topo(imp.expand(r.shape[0], -1), r) / amp
            Hm = torch.fft.rfft(h.to(torch.float64), n)[:, sel]
            g = (Hm.conj() * Ht[None]).real.sum(-1) / (Hm.abs().pow(2).sum(-1) + 1e-30)
            return (g[:, None] * Hm - Ht[None]).abs().pow(2).sum(-1) / (Ht.abs().pow(2).sum() + 1e-30)

        flags = [topo.shared[k] for k in ("allpass", "allpass2") if k in topo.shared]
        with torch.no_grad():
            for flag in flags:
                flag.fill_(0.0)
            off = float(cerr(raw[None])[0])
            # the magnitude's floor: the error if every phase matched
            am = torch.fft.rfft((topo(imp, raw[None]) / amp).to(torch.float64), n)[0, sel].abs()
            at = Ht.abs()
            g = float((am * at).sum() / (am.pow(2).sum() + 1e-30))
            floor = float((g * am - at).pow(2).sum() / (at.pow(2).sum() + 1e-30))
            for flag in flags:
                flag.fill_(1.0)
            K = c.search_candidates
            cand = raw[None].repeat(K, 1)
            # own generator: the search draws nothing from the fit's stream
            g = torch.Generator().manual_seed(self.seed + 1)
            u = torch.rand(K, len(free), generator=g) * 0.9 + 0.05
            cand[:, free] = (torch.log(u) - torch.log1p(-u)).to(cand.dtype)
            e = cerr(cand)
        start = cand[torch.argsort(e)[: c.refine_starts]].clone().requires_grad_(True)
        fmask = torch.zeros(raw.shape[0])
        fmask[free] = 1.0
        opt = torch.optim.Adam([start], lr=0.1)
        for _ in range(150):
            opt.zero_grad()
            cerr(start).sum().backward()
            start.grad *= fmask
            opt.step()
        with torch.no_grad():
            e = cerr(start)
            k = int(torch.argmin(e))
            on = float(e[k])
            use = off - floor > self.ALLPASS_MIN_ERROR and on - floor < 0.75 * (off - floor)
            for flag in flags:
                flag.fill_(1.0 if use else 0.0)
            out = raw.clone()
            out[free] = start[k, free].detach().to(out.dtype)
        if os.environ.get("UNIT_FIT_DEBUG"):
            print(f"all-pass init: complex error off {off:.4f}, on {on:.4f}, magnitude floor {floor:.4f} -> "
                  f"{'on' if use else 'off'}",
                  {names[j]: round(float(topo.CONTROLS[j].to_physical(out[j])), 1) for j in free}, flush=True)
        return out

    #: the output keeps its DC (``Topology.OUTPUT_DC``) when the training targets' power
    #: below ``OUTPUT_DC_HZ``, median over the items, is at least this share of their
    #: power and ten times the inputs' (measured: Guitarix's Studio Preamp 0.05, its
    #: MetalHead 1.5e-9, its DS1 1.2e-5, the benchmark's input 1e-4)
    OUTPUT_DC_MIN_SHARE = 1e-3
    OUTPUT_DC_HZ = 2.0

    @staticmethod
    def _low_share(a: np.ndarray, sample_rate: float, below_hz: float) -> float:
        """Share of ``a``'s power below ``below_hz`` (its whole length, one FFT)."""
        a = np.asarray(a, np.float64)
        p = np.abs(np.fft.rfft(a)) ** 2
        f = np.fft.rfftfreq(len(a), 1.0 / sample_rate)
        return float(p[f < below_hz].sum() / (p.sum() + 1e-30))

    def _output_dc_init(self) -> None:
        """Set the shared ``output_dc`` from the captures: a device whose output carries
        DC that its input does not (a digital amp with no DC blocker after an asymmetric
        clipper) keeps the twin's DC; AC-coupled hardware leaves the output high-pass on.
        Read from the first 20 s of each training item."""
        topo = self.topo
        if not topo.OUTPUT_DC:
            return
        n = int(20 * self.sr)
        idx = self.train_idx or list(range(len(self.items)))
        ys = float(np.median([self._low_share(self.y[i][:n], self.sr, self.OUTPUT_DC_HZ) for i in idx]))
        # the items usually share one test signal: each distinct input is measured once
        keys = {i: (id(self.items[i]["input"]), min(n, len(self.x[i]))) for i in idx}
        share: dict[tuple[int, int], float] = {}
        for i in idx:
            if keys[i] not in share:
                share[keys[i]] = self._low_share(self.x[i][:n], self.sr, self.OUTPUT_DC_HZ)
        xs = float(np.median([share[keys[i]] for i in idx]))
        use = ys >= self.OUTPUT_DC_MIN_SHARE and ys >= 10.0 * xs
        with torch.no_grad():
            topo.shared["output_dc"].fill_(1.0 if use else 0.0)
        if os.environ.get("UNIT_FIT_DEBUG"):
            print(f"output DC: targets' share below {self.OUTPUT_DC_HZ} Hz {ys:.3g}, inputs' {xs:.3g} -> "
                  f"{'kept' if use else 'blocked'}", flush=True)

    #: the output FIR is kept when its least-squares solve takes the plain ESR of the
    #: training excerpts down by at least this fraction (:meth:`_output_fir_solve`).
    #: Measured at that first solve: Guitarix's MetalHead (a cabinet IR at its end)
    #: 25-30 %, and the FIR then halved its held-out median; its Studio Preamp (no
    #: cabinet) 16 %, and a fit with the FIR scored worse than one without (held-out
    #: median 0.335 against 0.279): a tenth let that one in
    OUTPUT_FIR_MIN_GAIN = 0.2
    #: ... and by at least this much ESR (a filter that buys less is not worth its CPU)
    OUTPUT_FIR_MIN_ESR = 1e-3

    @torch.no_grad()
    def _output_fir_solve(self, raw_fn, decide: bool = False) -> None:
        """Solve the topology's output FIR (``OUTPUT_FIR``) in closed form: the least-
        squares FIR from the twin's output without it to the targets
        (:func:`dsp.filters.fir_least_squares`), on four excerpts of every training item
        (one per input level, ``segment_s`` long after the warm-up), each row weighted as
        the training loss weighs it. With ``decide`` the shared ``output_fir`` is set: on
        when the solve takes the excerpts' weighted ESR down by ``OUTPUT_FIR_MIN_GAIN``
        of itself and by ``OUTPUT_FIR_MIN_ESR`` (and ``FitConfig.output_fir``), else off with the taps left as a unit impulse.
        Without ``decide`` a twin with the switch off is left alone. ``raw_fn(idx)``: the
        raw controls of items ``idx``."""
        from dsp.filters import fir_least_squares

        topo = self.topo
        if not topo.OUTPUT_FIR:
            return
        flag = topo.shared["output_fir"]
        if not decide and float(flag) < 0.5:
            return
        if decide and not self.cfg.output_fir:
            flag.fill_(0.0)
            return
        c = self.cfg
        warm = int(c.warmup_s * self.sr)
        tr = self.train_idx or list(range(len(self.items)))
        L = min([warm + int(c.segment_s * self.sr)] + [len(self.x[i]) for i in tr])
        rows, xs, ys = self._level_excerpts(tr, L)
        Y = np.stack(ys)[:, warm:].astype(np.float64)
        saved = float(flag)
        flag.fill_(0.0)
        try:
            yh = []
            for a in range(0, len(rows), 16):
                X = torch.from_numpy(np.stack(xs[a:a + 16]))
                yh.append(self._render(X, raw_fn(rows[a:a + 16])).double().numpy())
        finally:
            flag.fill_(saved)
        Yh = np.concatenate(yh)[:, warm:]
        P = np.array([self.power[i] for i in rows])
        w = 1.0 / ((Y * Y).sum(-1) + 0.05 * Y.shape[-1] * P + 1e-9)
        h = fir_least_squares(Yh, Y, len(topo.output_fir_taps), w)
        d0 = Y - Yh
        e0 = float((w * (d0 * d0).sum(-1)).sum())
        Yf = np.stack([np.convolve(r, h)[: r.size] for r in Yh])
        d1 = Y - Yf
        e1 = float((w * (d1 * d1).sum(-1)).sum())
        gain = (e0 - e1) / len(rows)  # in ESR, mean over the excerpts
        keep = (gain >= self.OUTPUT_FIR_MIN_GAIN * e0 / len(rows) and gain >= self.OUTPUT_FIR_MIN_ESR
                if decide else True)
        if keep:
            topo.set_output_fir(h)
            flag.fill_(1.0)
        elif decide:
            unit = np.zeros(len(topo.output_fir_taps))
            unit[0] = 1.0
            topo.set_output_fir(unit)
            flag.fill_(0.0)
        if os.environ.get("UNIT_FIT_DEBUG"):
            print(f"output FIR ({len(h)} taps, {len(rows)} excerpts): weighted ESR {e0 / len(rows):.4f} -> "
                  f"{e1 / len(rows):.4f}: {'on' if keep else 'off'}", flush=True)

    # -- knob bookkeeping ----------------------------------------------------------------
    def _off_reference(self, i: int) -> list[int]:
        """Indices of the knobs that item ``i`` sets away from their reference."""
        kn = self.items[i]["knobs"]
        return [k for k, kd in enumerate(self.knobs)
                if abs(float(kn.get(kd.name, kd.reference)) - float(kd.reference)) > 1e-9]

    def _delta_mask(self) -> torch.Tensor:
        """``(N, C)``: the controls an item's own deviation may move (those its
        off-reference knobs may affect). An item at the reference setting gets none: it
        defines the map's base, shared by every item."""
        m = torch.zeros(len(self.items), self.C)
        for i in range(len(self.items)):
            for k in self._off_reference(i):
                m[i] = torch.maximum(m[i], self.map.mask[k])
        return m

    def _reference_item(self) -> int:
        """The training item nearest to the reference setting (normalised knobs)."""
        tr = self.train_idx
        kv = self._knob_tensor(tr)
        ref = torch.tensor([[kd.reference for kd in self.knobs]], dtype=torch.float32)
        span = torch.tensor([(kd.maximum - kd.minimum) or 1.0 for kd in self.knobs])
        d = ((kv - ref) / span).pow(2).sum(-1) if self.knobs else torch.zeros(len(tr))
        return tr[int(torch.argmin(d))]

    def _sweep_items(self) -> list[tuple[int, int]]:
        """(item, knob) for training items that move exactly one knob with hints (a
        single sweep): their hinted controls get a 1-D search in the init stage."""
        out = []
        for i in self.train_idx:
            off = self._off_reference(i)
            if len(off) == 1 and self.map.knobs[off[0]].affects:
                out.append((i, off[0]))
        return out

    # -- stages --------------------------------------------------------------------------
    def _stage_init(self):
        """Multi-start search on the reference item (-> the map's base), then a 1-D grid
        search of each single sweep's hinted controls (-> the knob curves' starting
        points, by regression). Chaos presets are not searched: the map explains them."""
        c = self.cfg
        topo = self.topo
        saved_os = topo.oversample
        topo.oversample = c.search_oversample
        sweeps = self._sweep_items()
        total = 1 + len(sweeps)
        try:
            if self.step == 0:
                self._output_dc_init()
                r = self._reference_item()
                raw, loss = self._init_variants(r)
                self._check_stop()
                with torch.no_grad():
                    self.map.base.copy_(raw)
                    self.item_raw[:] = raw
                self.last_item_esr[self.items[r]["name"]] = loss / 2
                self._infer_affects()
                self.step = 1
                self._emit(total, loss)
                self._tick()
            for n_done, (i, k) in enumerate(sweeps):
                if n_done + 1 < self.step:
                    continue
                self._check_stop()
                self._note(f"the sweep capture {self.items[i]['name']}: grid search of its knob's controls")
                raw, loss = self._line_search(i, k)
                self.item_raw[i] = raw
                self.last_item_esr[self.items[i]["name"]] = loss / 2
                self.step = n_done + 2
                self._emit(total, loss)
                self._tick()
        finally:
            topo.oversample = saved_os
        if sweeps:  # curves through the searched values (regression, no audio)
            idx = [i for i, _ in sweeps]
            m = torch.zeros(len(idx), self.C)
            for j, (i, k) in enumerate(sweeps):
                m[j] = self.map.mask[k]
            target = self.item_raw[idx].clone()
            kv = self._knob_tensor(idx)
            params = [p for p in self.map.curves]
            opt = torch.optim.Adam(params, lr=0.1)
            for _ in range(200):
                opt.zero_grad()
                pred = self.map.additive(kv)
                l = ((pred - target).pow(2) * m).sum() / max(1.0, float(m.sum())) + self.map.regularizer()
                l.backward()
                opt.step()
        with torch.no_grad():
            self.item_raw[:] = self.map.additive(self._knob_tensor(range(len(self.items))))

    @contextlib.contextmanager
    def _magnitude_values(self):
        """The topology's shared values set to its :meth:`Topology.magnitude_values` for
        the duration (the small-signal magnitude fits), and back after."""
        over = self.topo.magnitude_values()
        saved = {k: self.topo.shared[k].detach().clone() for k in over}
        with torch.no_grad():
            for k, v in over.items():
                self.topo.shared[k].fill_(v)
        try:
            yield
        finally:
            with torch.no_grad():
                for k, v in saved.items():
                    self.topo.shared[k].copy_(v)

    def _name_prior(self, knob_name: str) -> tuple[str, ...]:
        low = knob_name.lower()
        for keys, ctrls in self.topo.NAME_HINTS:
            if any(w in low for w in keys):
                return tuple(ctrls)
        return ()

    #: the most candidates (a control, or one of the topology's ``KNOB_GROUPS``)
    #: :meth:`_infer_affects` gives one knob
    MAX_INFERRED_CONTROLS = 3
    #: where a candidate is dear (:meth:`Topology.descent_init`), the candidates with the
    #: lowest coarse-grid loss that :meth:`_infer_affects` also searches on the fine grid
    AFFECTS_REFINED = 3

    def _infer_affects(self) -> None:
        """Knobs without hints: pick the controls they drive. A swept knob: on its sweep's
        two extreme items, a search of each candidate (losses summed) is scored; the best
        one is kept (the name prior's wins a near-tie, within 15 %), then more, up to
        ``MAX_INFERRED_CONTROLS``, each only when it halves the remaining loss (lowers it
        5 % when it is the name prior's). A candidate is one control (a 1-D search) or one
        of the topology's ``KNOB_GROUPS`` (its controls searched one after the other), so
        that a knob that tilts the spectrum can win as the tone stack it needs, where no
        single control of it beats a plain gain. A candidate that shares a control with
        another knob (its hints, or chosen before it) must beat the best one that does
        not clearly (:meth:`_pick`): a knob is a pot of its own. Where a candidate is
        dear (:meth:`Topology.descent_init`: the band chain runs five chains), each is
        searched on the coarse grid and only the ``AFFECTS_REFINED`` best (with the
        best that shares no control and the name prior's) on the fine grid too: the
        Studio Preamp's six knobs took 14 minutes searched on both. A knob with no sweep
        (chaos only): the topology's name prior, else unchanged. After the per-capture
        fit, a swept knob may also get the output level (:meth:`_level_companions`).

        Measured: Guitarix's DS1, whose Tone is an LP/HP blend: with Tone on tone_lp_hz
        alone its sweep captures were the worst fitted, ESR 0.21-0.53, against 0.06-0.18
        for the Drive sweep's. Guitarix's MetalHead, whose Tone tilts the spectrum (Tone
        10: -18 dB at 100 Hz, +6 dB above 800 Hz against Tone 5): the best single
        control was a gain (pa_bias, summed loss 2.39; level_db 2.41; the treble alone
        5.1), the tone stack searched as a group 1.10."""
        names = self.topo.control_names()
        inert = {names.index(n) for n in self.topo.inert_controls()}
        screen = self.topo.descent_init()
        # every unhinted knob starts from all its candidates (as __init__ set them): an
        # init cancelled half-way (its checkpoint holds the knobs decided so far) is run
        # again from the start
        if self.topo.KNOB_CONTROLS:
            for k in self.unhinted:
                self.map.set_affects(k, self.topo.KNOB_CONTROLS)
        # controls other knobs already drive (their hints, or chosen here before): a knob
        # is a pot of its own, so a candidate that shares one must win clearly
        claimed = {k: {int(cc) for cc in torch.nonzero(self.map.mask[k]).flatten()}
                   for k in range(len(self.knobs)) if k not in self.unhinted}
        label = lambda u: "+".join(names[cc] for cc in u)  # noqa: E731
        for n_knob, k in enumerate(self.unhinted, 1):
            kd = self.knobs[k]
            sweeps = [i for i in self.train_idx if self._off_reference(i) == [k]]
            if not sweeps:
                prior_controls = self._name_prior(kd.name)
                if prior_controls:
                    self.map.set_affects(k, prior_controls)
                    claimed[k] = {names.index(n) for n in prior_controls}
                continue
            # the sweep's two extremes (lowest and highest setting) score each candidate
            val = lambda j: float(self.items[j]["knobs"].get(kd.name, kd.reference))  # noqa: E731
            ends = sorted({min(sweeps, key=val), max(sweeps, key=val)})
            cands = [cc for cc in torch.nonzero(self.map.mask[k]).flatten().tolist() if cc not in inert]
            units = [(cc,) for cc in cands]
            for group in self.topo.KNOB_GROUPS:
                g = tuple(names.index(n) for n in group)
                if all(cc in cands for cc in g):
                    units.append(g)
            starts = {i: self.map.additive(self._knob_tensor([i]))[0].detach() for i in ends}

            n_done = [0]

            def search(base_raws, unit, grids="both"):
                n_done[0] += 1
                self._note(f"which controls {kd.name} drives ({n_knob} of {len(self.unhinted)}): "
                           f"{label(unit)}, search {n_done[0]}")
                res = {i: self._line_search(i, k, base_raws[i], list(unit), grids) for i in ends}
                return {i: r[0] for i, r in res.items()}, sum(r[1] for r in res.values())

            others = set().union(*[v for j, v in claimed.items() if j != k])
            pn = tuple(names.index(n) for n in self._name_prior(kd.name))
            prior = [pn] if pn in units else [(cc,) for cc in pn if (cc,) in units]

            def score_all(base_raws, cands):
                """Each candidate's search from ``base_raws``: both grids, or where a
                candidate is dear (the topology's descent init: five chains), the coarse
                grid for all, then the fine grid for the AFFECTS_REFINED best, the best
                one that shares no control with another knob, and the name prior's."""
                if not screen:
                    return {u: search(base_raws, u) for u in cands}
                out = {u: search(base_raws, u, "coarse") for u in cands}
                keep = sorted(out, key=lambda u: out[u][1])[: self.AFFECTS_REFINED]
                free = [u for u in out if not set(u) & others]
                keep += [u for u in prior if u in out] + ([min(free, key=lambda u: out[u][1])] if free else [])
                for u in dict.fromkeys(keep):
                    out[u] = search(out[u][0], u, "fine")
                return out

            scores = score_all(starts, units)
            u1 = self._pick(scores, others)
            # near-ties (e.g. Master vs Post_Gain with sag off): the name prior decides
            prior = [u for u in prior if not set(u) & others or set(u1) & others]
            if prior and scores[prior[0]][1] <= 1.15 * scores[u1][1]:
                u1 = prior[0]
            chosen = [u1]
            raw1, l1 = scores[u1]
            second: dict = {}
            while len(chosen) < self.MAX_INFERRED_CONTROLS:
                taken = {cc for u in chosen for cc in u}
                more = score_all(raw1, [u for u in units if not set(u) <= taken])
                if not more:
                    break
                if len(chosen) == 1:
                    second = more
                u2 = self._pick(more, others)
                p2 = [u for u in prior if u in more]
                if p2 and more[p2[0]][1] <= 1.15 * more[u2][1]:
                    u2 = p2[0]
                # another candidate must halve the loss left; the name prior's must lower it 5 %
                if more[u2][1] >= (0.95 if u2 in prior else 0.5) * l1:
                    break
                chosen.append(u2)
                raw1, l1 = more[u2]
            if os.environ.get("UNIT_FIT_DEBUG"):
                print(kd.name, "first", {label(u): round(v[1], 5) for u, v in scores.items()},
                      "second", {label(u): round(v[1], 5) for u, v in second.items()},
                      "chosen", [label(u) for u in chosen], flush=True)
            affects: list[str] = []
            for u in chosen:
                affects += [names[cc] for cc in u if names[cc] not in affects]
            self.map.set_affects(k, affects)
            claimed[k] = {names.index(n) for n in affects}
        self.per_item_mask = (self.map.mask.sum(0) > 0)

    #: a candidate that shares a control with another knob is taken over the best one
    #: that does not only when its loss is below this share of that one's
    SHARED_CONTROL_MARGIN = 0.8

    def _pick(self, scores: dict, others: set) -> tuple:
        """The best candidate of ``scores`` ({unit: (raws, loss)}), preferring one that
        shares no control with ``others`` (the controls other knobs drive).

        Measured on Guitarix's MetalHead with the drive section: Drive took the drive
        group (mix and drive); Pregain then scored the drive alone best (1.20, summed over
        its sweep's ends), post-gain 1.32. Sharing the drive with Drive, the 10-minute
        fit's held-out median / worst was 0.298 / 0.940 (the worst at Drive 9.8, Pregain
        2, where the two knobs disagree); with Pregain on post-gain, 0.245 / 0.554."""
        best = min(scores, key=lambda u: scores[u][1])
        free = [u for u in scores if not set(u) & others]
        if not free or not set(best) & others:
            return best
        alt = min(free, key=lambda u: scores[u][1])
        return best if scores[best][1] < self.SHARED_CONTROL_MARGIN * scores[alt][1] else alt

    def _line_search(self, i: int, k: int, start: torch.Tensor | None = None,
                     controls: list[int] | None = None, grids: str = "both") -> tuple[torch.Tensor, float]:
        """Item ``i`` sweeps knob ``k``: each control the knob affects is searched on a
        grid over its range (coordinate-wise), then on a finer grid around the best
        point (``grids``: "both", or "coarse" or "fine" alone), the others at the map's
        current values. No output gain is solved: a knob that changes the level must
        show it."""
        c = self.cfg
        topo = self.topo
        warm = int(c.warmup_s * self.sr)
        L = warm + int(c.search_excerpt_s * self.sr)
        ex = self._excerpts(i, L)
        X = torch.from_numpy(np.stack([e[0] for e in ex]))
        Y = torch.from_numpy(np.stack([e[1] for e in ex]))
        E = X.shape[0]
        P = torch.tensor(self.power[i])
        with torch.no_grad():
            if start is None:
                start = self.map.additive(self._knob_tensor([i]))[0]
            best = start.detach().clone()
            if controls is None:
                controls = torch.nonzero(self.map.mask[k]).flatten().tolist()
            G = c.line_search_points
            u = torch.linspace(0.03, 0.97, G)
            grid = torch.log(u) - torch.log1p(-u)
            best_loss = None
            h = float(grid[1] - grid[0]) if G > 1 else 1.0
            fine_pts = h * torch.linspace(-0.75, 0.75, 7)
            passes = {"both": 2, "coarse": 1, "fine": 1}[grids]
            for cc in controls:
                # coarse grid over the range, then a finer one around the best point
                pts = best[cc] + fine_pts if grids == "fine" else torch.cat([best[cc:cc + 1], grid])
                for _ in range(passes):
                    cand = best.expand(len(pts), -1).clone()
                    cand[:, cc] = pts
                    score = self._rows_loss(X.repeat(len(pts), 1), cand.repeat_interleave(E, 0),
                                            Y.repeat(len(pts), 1), P, warm).view(len(pts), E).mean(-1)
                    j = int(torch.argmin(score))
                    best = cand[j].clone()
                    best_loss = float(score[j])
                    pts = best[cc] + fine_pts
        return best, (best_loss if best_loss is not None else float("nan"))

    def _excerpt_starts(self, i: int, length: int) -> list[int]:
        """Starts of windows of item ``i`` at four input levels (loudest, 75th, 50th
        and 25th percentile of the active windows' energy)."""
        x = self.x[i]
        if len(x) <= length:
            return [0]
        hop = max(1, length // 2)
        starts = np.arange(0, len(x) - length + 1, hop)
        c = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
        e = (c[starts + length] - c[starts]) / length
        order = np.argsort(e)
        alive = order[e[order] > 1e-3 * e.max()]
        if not len(alive):
            return [int(starts[order[-1]])]
        # the loudest window and three more at the 75th, 50th and 25th percentile of
        # the active windows' energy: a 25-control amp fitted on two short excerpts was
        # measured to explain them at ESR 0.3 and the rest of the capture at 1.0
        picks = [alive[-1]] + [alive[int(q * (len(alive) - 1))] for q in (0.75, 0.5, 0.25)]
        return sorted({int(starts[k]) for k in picks})

    def _init_variants(self, i: int) -> tuple[torch.Tensor, float]:
        """:meth:`_init_item` once per structural variant of the topology
        (``Topology.VARIANTS``, e.g. where the amp's tone stack sits, whether it has a
        drive section); the variant with the lowest loss stays set in the topology's
        shared values, with its polarity and the output-section switches its own
        small-signal init chose. The variants are decided one after the other, in their
        declared order, each with the ones before it at their winners (n values each:
        1 + sum(n - 1) searches, not the product's)."""
        variants = dict(self.topo.VARIANTS)
        for k, v in self.variants.items():
            variants[k] = (v,)
        names = list(variants)
        if not names:
            return self._init_item(i)
        # a run leaves the winner's shared values set: its variant's, and the output
        # sections' switches its small-signal init decided (they belong to its controls)
        polarity, best = self.polarity, None
        chosen = {n: variants[n][0] for n in names}
        tried = []
        n_tries = 1 + sum(len(variants[n]) - 1 for n in names)
        what = f"the reference capture {self.items[i]['name']}"
        shared0 = self._shared_state()  # every variant starts from the same shared values
        for n in names:
            for v in variants[n]:
                combo = dict(chosen, **{n: v})
                if combo in tried:
                    continue
                tried.append(combo)
                label = (f"{what}, structure {len(tried)} of {n_tries} ("
                         + ", ".join(f"{k}={val:g}" for k, val in combo.items()) + ")")
                self._note(label)
                self._restore_shared(shared0)
                with torch.no_grad():
                    for k, val in combo.items():
                        self.topo.shared[k].fill_(val)
                self.polarity = polarity
                raw, loss = self._init_item(i, label)
                if os.environ.get("UNIT_FIT_DEBUG"):
                    print("init variant", combo, "loss", round(loss, 4), flush=True)
                # an option this combination turns on, off in the best so far, must win
                # clearly (VARIANT_MARGIN)
                margin = 0.0 if best is None else max(
                    (self.topo.VARIANT_MARGIN.get(k, 0.0) for k, val in combo.items()
                     if val > 0.5 and best[3].get(k, 0.0) < 0.5), default=0.0)
                if best is None or loss < (1.0 - margin) * best[1]:
                    best = (raw, loss, self.polarity, combo, self._shared_state())
                self._check_stop()
            chosen = dict(best[3])
        raw, loss, self.polarity, _, shared = best
        self._restore_shared(shared)
        more = self.cfg.descent_steps - self.cfg.descent_variant_steps
        if self.topo.descent_init() and more > 0:  # the winner goes on
            raw, loss = self._init_descent(i, more, start=raw, what=f"{what}, the chosen structure")
        return raw, loss

    def _set_variants(self) -> dict[str, float]:
        """``FitConfig.variants``, checked against the topology's structural options
        (``self.variants``)."""
        try:
            return check_structure(self.topology_name, self.cfg.variants or {})
        except ValueError as exc:
            raise ValueError(f"FitConfig.variants: {exc}") from None

    def _shared_state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.topo.shared.items()}

    def _restore_shared(self, state: dict) -> None:
        with torch.no_grad():
            for k, v in state.items():
                self.topo.shared[k].copy_(v)

    def _init_item(self, i: int, what: str = "") -> tuple[torch.Tensor, float]:
        """Multi-start search + refinement for item ``i``: (raw controls, loss); by
        descent instead where the topology asks for it (:meth:`_init_descent`; ``what``
        names the try in its progress notes)."""
        if self.topo.descent_init():
            return self._init_descent(i, self.cfg.descent_variant_steps, what=what)
        c = self.cfg
        topo = self.topo
        names = topo.control_names()
        search = [names.index(n) for n in topo.SEARCH]
        gain_i = names.index(topo.OUTPUT_GAIN) if topo.OUTPUT_GAIN in names else None
        gspec = topo.CONTROLS[gain_i] if gain_i is not None else None
        warm = int(c.warmup_s * self.sr)
        L = warm + int(c.search_excerpt_s * self.sr)
        # the starting points: the declared defaults and the small-signal fit (which is
        # only as good as the capture's quiet parts are linear), half the candidates each
        lin = self._linear_init(i)
        dflt = topo.default_raw()
        if topo.ALLPASS:  # the all-pass (phase only) comes from the small-signal fit
            ap = [topo.control_names().index(k) for k in topo.allpass_controls()]
            dflt[ap] = lin[ap]
        bases = [lin] if topo.LINEAR else [dflt, lin]
        fixed = topo.init_values()
        for b in bases:
            for k, v in fixed.items():
                b[names.index(k)] = topo.spec(k).to_raw(v).float()
        search = [k for k in search if names[k] not in fixed]
        ex = self._excerpts(i, L)
        X = torch.from_numpy(np.stack([e[0] for e in ex]))
        Y = torch.from_numpy(np.stack([e[1] for e in ex]))
        E = X.shape[0]
        P = torch.tensor(self.power[i])
        # candidates
        K = max(c.search_candidates, len(bases)) if search else len(bases)
        cand = torch.stack([bases[k % len(bases)] for k in range(K)])
        if search:
            u = torch.rand(K - len(bases), len(search), generator=self.gen) * 0.94 + 0.03
            cand[len(bases):, search] = torch.log(u) - torch.log1p(-u)
        with torch.no_grad():
            raw = cand.repeat_interleave(E, 0)
            yh = self._render(X.repeat(K, 1), raw)
            Yr = Y.repeat(K, 1)
            if gain_i is not None:
                a, b = yh[:, warm:], Yr[:, warm:]
                g = (a * b).sum(-1).view(K, E).sum(-1) / (a.pow(2).sum(-1).view(K, E).sum(-1) + 1e-12)
                sgn = torch.where(g < 0, -1.0, 1.0).to(g.dtype)
                g = g.abs().clamp_min(1e-6)
                phys = gspec.to_physical(cand[:, gain_i]) + 20 * torch.log10(g)
                cand[:, gain_i] = gspec.to_raw(phys.clamp(gspec.minimum + 1e-3, gspec.maximum - 1e-3)).float()
                yh = yh * (g * sgn).repeat_interleave(E)[:, None]
            else:
                sgn = torch.ones(K)
            score = self._loss_rows(yh, Yr, warm, P).view(K, E).mean(-1)
        best = torch.argsort(score)[: c.refine_starts]
        if sgn[best[0]] < 0:
            # The polarity by the phase (a small-signal vote) is not the one the model
            # explains at full level (measured on a Guitarix preamp: loss 0.73 against
            # 1.18): the best candidate decides, with its output gain's sign.
            self.polarity = -self.polarity
            Y = -Y
            if os.environ.get("UNIT_FIT_DEBUG"):
                print("init: polarity flipped to", self.polarity, flush=True)
        start = cand[best].clone().requires_grad_(True)
        opt = torch.optim.Adam([start], lr=c.lr_controls * 2)
        M = start.shape[0]
        for _ in range(c.refine_steps):
            opt.zero_grad()
            l = self._rows_loss(X.repeat(M, 1), start.repeat_interleave(E, 0), Y.repeat(M, 1), P, warm)
            l.view(M, E).mean(-1).sum().backward()
            opt.step()
        with torch.no_grad():
            l = self._rows_loss(X.repeat(M, 1), start.repeat_interleave(E, 0), Y.repeat(M, 1), P, warm)
            l = l.view(M, E).mean(-1)
        k = int(torch.argmin(l))
        return start[k].detach(), float(l[k])

    def _init_descent(self, i: int, steps: int, start: torch.Tensor | None = None, what: str = ""
                      ) -> tuple[torch.Tensor, float]:
        """Item ``i``'s controls by ``steps`` Adam steps (with the topology's shared
        values) on random segments of it, ``descent_rows`` per step: (raw controls,
        loss on the search's level excerpts, as :meth:`_init_item` scores). Without a
        ``start``, from the small-signal fit, its polarity and output gain set by least
        squares on those excerpts. The state with the lowest excerpt loss (checked every
        ``eval_every`` steps) is kept. ``what`` names the descent in its progress notes
        (one a step)."""
        c, topo = self.cfg, self.topo
        names = topo.control_names()
        warm = int(c.warmup_s * self.sr)
        ex = self._excerpts(i, warm + int(c.search_excerpt_s * self.sr))
        X = torch.from_numpy(np.stack([e[0] for e in ex]))
        Y = torch.from_numpy(np.stack([e[1] for e in ex]))
        E = X.shape[0]
        P = torch.tensor(self.power[i])

        def score(r):
            with torch.no_grad():
                return float(self._rows_loss(X, r.detach().expand(E, -1), Y, P, warm).mean())

        if start is None:
            start = self._linear_init(i)
            for k, v in topo.init_values().items():
                start[names.index(k)] = topo.spec(k).to_raw(v).float()
            if topo.OUTPUT_GAIN in names:  # the output gain, and its sign the polarity
                gi = names.index(topo.OUTPUT_GAIN)
                gspec = topo.CONTROLS[gi]
                with torch.no_grad():
                    a, b = self._render(X, start.expand(E, -1))[:, warm:], Y[:, warm:]
                    g = float((a * b).sum() / (a.pow(2).sum() + 1e-12))
                if g < 0:
                    self.polarity = -self.polarity
                    Y = -Y
                    if os.environ.get("UNIT_FIT_DEBUG"):
                        print("init: polarity flipped to", self.polarity, flush=True)
                phys = gspec.to_physical(start[gi]) + 20 * math.log10(max(abs(g), 1e-6))
                start[gi] = gspec.to_raw(phys.clamp(gspec.minimum + 1e-3, gspec.maximum - 1e-3)).float()
        raw = start.detach().clone().requires_grad_(True)
        shared = [p for p in topo.shared.parameters() if p.requires_grad]
        groups = [{"params": [raw], "lr": c.lr_controls}]
        if shared:
            groups.append({"params": shared, "lr": c.lr_shared})
        opt = torch.optim.Adam(groups)
        rows = max(1, c.descent_rows)
        seg = warm + int(c.segment_s * self.sr)
        Pr = torch.full((rows,), float(self.power[i]))
        best = (score(raw), raw.detach().clone(), self._shared_state())
        what = what or f"the capture {self.items[i]['name']}"
        for s in range(1, steps + 1):
            self._note(f"{what}: descent step {s} of {steps}")  # and a cancel is honoured
            Xs, Ys = self._segments([i] * rows, seg)
            loss = self._rows_loss(Xs, raw.expand(rows, -1), Ys, Pr, warm).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if s % c.eval_every == 0 or s == steps:
                v = score(raw)
                if math.isfinite(v) and v < best[0]:
                    best = (v, raw.detach().clone(), self._shared_state())
        if os.environ.get("UNIT_FIT_DEBUG"):
            print(f"init: descent {steps} steps, excerpt loss {best[0]:.4f}", flush=True)
        self._restore_shared(best[2])
        return best[1], best[0]

    def _stage_per_capture(self):
        """Per-capture fit, tied through the map: item i's controls are
        ``map.additive(knobs_i) + delta_i``, where ``delta_i`` may only move the controls
        its off-reference knobs affect and is pulled to 0 (``delta_l2``). Controls no
        knob moves are one shared value (the base), so gain-staging trade-offs cannot
        land on a different compromise per capture; the knob curves, the base, the
        deltas and the topology's shared parameters are optimised together through the
        audio of all training items."""
        c = self.cfg
        tr = self.train_idx
        warm = int(c.warmup_s * self.sr)
        seg = warm + int(c.segment_s * self.sr)
        dmask = self._delta_mask()
        delta = torch.nn.Parameter(self.item_delta.clone())
        add_params = [self.map.base, *self.map.curves]

        def step_fn():
            idx = self._draw_items(tr)
            X, Y = self._segments(idx, seg)
            raw = self.map.additive(self._knob_tensor(idx)) + delta[idx] * dmask[idx]
            P = torch.tensor([self.power[i] for i in idx])
            l = self._rows_loss(X, raw, Y, P, warm)
            reg = c.delta_l2 * (delta[idx] * dmask[idx]).pow(2).sum(-1).mean()
            per = {self.items[i]["name"]: float(v) / 2 for i, v in zip(idx, l.detach())}
            return l.mean() + reg + self.map.regularizer(), per

        if self.step == 0:  # not on resume: the checkpoint holds the solved FIR
            self._output_fir_solve(lambda idx: self.item_raw[idx], decide=True)
        groups = [{"params": add_params + [delta], "lr": c.lr_controls}]
        sp = list(self.topo.shared.parameters())
        if sp:
            groups.append({"params": sp, "lr": c.lr_shared})

        def after(total):
            with torch.no_grad():
                self.item_delta.copy_(delta * dmask)
                self.item_raw.copy_(self.map.additive(self._knob_tensor(range(len(self.items))))
                                    + self.item_delta)

        self._after_step = after
        try:
            self._optimise(c.per_capture_steps, groups, step_fn, stop_frac=c.per_capture_frac,
                           validate=lambda: self._validate(
                               lambda idx: self.map.additive(self._knob_tensor(idx)) + delta[idx] * dmask[idx]))
            after(c.per_capture_steps)  # the kept best state -> item_delta, item_raw
        finally:
            self._after_step = lambda total: None
        self._level_companions()

    #: a swept knob whose captures, each fitted, are left with least-squares gains that
    #: span more than this (dB, over its sweep and the reference capture) also drives
    #: the output level (:meth:`_level_companions`). Spans measured after the
    #: per-capture stage: Guitarix's MetalHead Drive 9.3 / 10.3 / 22.9, Tone 5.4 / 7.5 /
    #: 4.9 (three seeds; its output trim follows them), Pregain 0.8 / 1.1 / 2.6; DS1 1.0 and 0.9; Studio
    #: Preamp Bass 3.7, the others 1.4 at most; the synthetic UNIT-1-size amp, whose
    #: truth moves no level with any knob (captures not yet fitted, not a trim): Master
    #: 4.0 and Depth 4.0 in one run (at 3 dB it took both, held-out worst 0.066 against
    #: 0.019 before), Master 9.3 (its Master 0 capture), Post_Gain 4.46 and Depth 4.2
    #: in another (at 4.5 dB it took Master: 0.0029 / 0.016, as before). The gap
    #: between 4.46 and 4.9 is narrow: a threshold, not a law
    LEVEL_COMPANION_SPAN_DB = 4.5

    @torch.no_grad()
    def _item_gains_db(self, idx: list[int]) -> dict[int, float]:
        """The least-squares gain (dB) that would take each item's render (its own
        controls, ``item_raw``) to its target, over its four level excerpts."""
        c = self.cfg
        warm = int(c.warmup_s * self.sr)
        L = warm + int(c.segment_s * self.sr)
        out = {}
        for i in idx:
            ex = self._excerpts(i, L)
            X = torch.from_numpy(np.stack([e[0] for e in ex]))
            Y = torch.from_numpy(np.stack([e[1] for e in ex])).to(torch.float64)
            yh = self._render(X, self.item_raw[i].expand(len(ex), -1)).to(torch.float64)
            a, b = yh[:, warm:], Y[:, warm:]
            g = float((a * b).sum() / ((a * a).sum() + 1e-12))
            out[i] = 20 * math.log10(max(abs(g), 1e-6))
        return out

    def _level_companions(self) -> None:
        """After the per-capture fit: a swept knob without hints whose captures are left
        with gains that span more than ``LEVEL_COMPANION_SPAN_DB`` (each capture's
        least-squares gain, over the knob's sweep and the reference capture) also drives
        the output level (``OUTPUT_GAIN``), and every training capture's level takes
        its gain, for the curves stage to follow.

        Knob inference scores the sweep ends at init, while the chosen controls still
        carry the level; a level the device sets after everything else shows only once
        those controls are fitted to the sound. Measured on Guitarix's MetalHead, which
        trims its output by up to 10 dB with Drive: without the level its 10-minute
        twin was 3.8 dB loud at Drive 10 (ESR 0.35; 0.075 with one gain) and 5.5 dB
        quiet at Drive 0.2 (0.27; 0.060). Given to every knob, the level took the DS1's
        held-out median from 0.0089 to 0.0121 (train 0.019 to 0.012); decided so, it
        stays off there (spans in ``LEVEL_COMPANION_SPAN_DB``)."""
        gain = self.topo.OUTPUT_GAIN
        names = self.topo.control_names()
        if not gain or gain not in names or gain in self.topo.inert_controls():
            return
        g = names.index(gain)
        ref = self._reference_item()
        sweeps = {k: [i for i in self.train_idx if self._off_reference(i) == [k]] for k in self.unhinted}
        sweeps = {k: v for k, v in sweeps.items() if v and self.map.mask[k, g] < 0.5}
        if not sweeps:
            return
        gains = self._item_gains_db(sorted({ref, *[i for v in sweeps.values() for i in v]}))
        added = []
        for k, idx in sweeps.items():
            vals = [gains[i] for i in idx] + [gains[ref]]
            if max(vals) - min(vals) > self.LEVEL_COMPANION_SPAN_DB:
                self.map.set_affects(k, [*self.map.knobs[k].affects, gain])
                added.append(k)
            if os.environ.get("UNIT_FIT_DEBUG"):
                print(f"level companion {self.knobs[k].name}: gains "
                      f"{[round(gains[i], 2) for i in idx]} dB, reference {gains[ref]:.2f} dB -> "
                      f"{'on' if k in added else 'off'}", flush=True)
        if not added:
            return
        rest = [i for i in self.train_idx if i not in gains]
        gains.update(self._item_gains_db(rest))
        spec = self.topo.spec(gain)
        with torch.no_grad():
            for i, gdb in gains.items():
                v = float(spec.to_physical(self.item_raw[i, g])) + gdb
                self.item_raw[i, g] = spec.to_raw(min(max(v, spec.minimum + 1e-3), spec.maximum - 1e-3)).float()
        self.per_item_mask = (self.map.mask.sum(0) > 0)

    def _draw_items(self, idx: list[int]) -> list[int]:
        """The items of one Adam step, one random segment each: ``max_items_per_step`` of
        them drawn without repeats, or, from fewer items, each item as many times as fit
        in that many rows (one capture: 16 segments of it; five: three each). A step of
        a small plan then sees about as much audio as a step of a large one: with one
        0.5 s segment per step, a single capture's steps were too noisy to improve on
        its init (the keep-best validation ended every stage on its start)."""
        m = self.cfg.max_items_per_step
        if len(idx) > m:
            perm = torch.randperm(len(idx), generator=self.gen)[:m]
            return sorted(idx[int(j)] for j in perm)
        return sorted(list(idx) * max(1, m // max(1, len(idx))))

    def _knob_tensor(self, idx):
        return self.map.knob_tensor([self.items[i]["knobs"] for i in idx])

    def _stage_curves(self):
        c = self.cfg
        tr = self.train_idx
        target = self.item_raw[tr].detach()
        kv = self._knob_tensor(tr)
        # the map already holds the per-capture stage's curves; this absorbs the items'
        # deltas (curves and interaction MLP)
        w = self.per_item_mask.float()[None] + 1.0

        def step_fn():
            pred = self.map(kv)
            loss = ((pred - target).pow(2) * w).sum(-1).mean() + self.map.regularizer()
            return loss, {}

        self._optimise(c.curve_steps, [{"params": list(self.map.parameters()), "lr": 0.02}], step_fn)
        self._eval_holdout()

    def _stage_joint(self):
        c = self.cfg
        tr = self.train_idx
        warm = int(c.warmup_s * self.sr)
        seg = warm + int(c.segment_s * self.sr)

        def step_fn():
            idx = self._draw_items(tr)
            X, Y = self._segments(idx, seg)
            raw = self.map(self._knob_tensor(idx))
            P = torch.tensor([self.power[i] for i in idx])
            l = self._rows_loss(X, raw, Y, P, warm)
            per = {self.items[i]["name"]: float(v) / 2 for i, v in zip(idx, l.detach())}
            return l.mean() + self.map.regularizer(), per

        def after(total):
            if (c.output_fir_every and self.step % c.output_fir_every == 0 and self.step < total
                    and not self._over_budget(0.9)):
                self._refit_output_fir(mapped)
            if self.step % c.eval_every == 0 or self.step == total:
                self._eval_holdout()

        mapped = lambda idx: self.map(self._knob_tensor(idx))  # noqa: E731
        if self.step == 0:
            if self._output_fir_off():
                self._output_fir_second_chance(mapped)
            else:
                self._output_fir_solve(mapped)
        groups = [{"params": list(self.map.parameters()), "lr": c.lr_map}]
        sp = list(self.topo.shared.parameters())
        if sp:
            groups.append({"params": sp, "lr": c.lr_shared})
        self._after_step = after
        try:
            tracked = [self.topo.output_fir_taps] if self.topo.OUTPUT_FIR else []
            self._optimise(c.joint_steps, groups, step_fn, stop_frac=0.9,
                           validate=lambda: self._validate(mapped), tracked=tracked)
            self._refit_output_fir(mapped)
            self._eval_holdout()  # of the kept best state
        finally:
            self._after_step = lambda total: None

    def _output_fir_off(self) -> bool:
        return bool(self.topo.OUTPUT_FIR) and float(self.topo.shared["output_fir"]) < 0.5

    @torch.no_grad()
    def _output_fir_second_chance(self, raw_fn) -> None:
        """At the start of the joint fit, an output FIR the per-capture stage left off is
        decided again (:meth:`_output_fir_solve` with ``decide``) on the map as fitted,
        and kept only if the validation excerpts score better with it too.

        The first decision is made on the init's controls, far from the fit: measured on
        Guitarix's MetalHead (a cabinet IR at its end), the same captures gave a 19 %
        gain there in one run (off, under the 20 % asked) and 27 % in another; at the
        joint fit's start the gain was 42 %."""
        if not self.cfg.output_fir:
            return
        topo = self.topo
        old = topo.output_fir_taps.clone()
        self._output_fir_solve(raw_fn, decide=True)
        if self._output_fir_off():
            return
        flag = topo.shared["output_fir"]
        after = self._validate(raw_fn)
        flag.fill_(0.0)
        before = self._validate(raw_fn)
        if after < before:
            flag.fill_(1.0)
        else:
            topo.set_output_fir(old)
        if os.environ.get("UNIT_FIT_DEBUG"):
            print(f"output FIR decided again at the joint fit's start: validation {before:.4f} -> "
                  f"{after:.4f}{'' if after < before else ' (left off)'}", flush=True)

    def _refit_output_fir(self, raw_fn) -> None:
        """During and after the joint fit: solve the output FIR again for the map as it
        stands, and keep the new taps only if the validation excerpts score better with
        them."""
        topo = self.topo
        if not topo.OUTPUT_FIR or float(topo.shared["output_fir"]) < 0.5:
            return
        old = topo.output_fir_taps.clone()
        before = self._validate(raw_fn)
        self._output_fir_solve(raw_fn)
        after = self._validate(raw_fn)
        if not after < before:
            topo.set_output_fir(old)
        if os.environ.get("UNIT_FIT_DEBUG"):
            print(f"output FIR re-solved at joint step {self.step}: validation {before:.4f} -> {after:.4f}"
                  f"{'' if after < before else ' (kept the old taps)'}", flush=True)

    @torch.no_grad()
    def _eval_holdout(self):
        ho = self.holdout_idx
        if not ho:
            return
        warm = int(self.cfg.warmup_s * self.sr)
        L = warm + int(self.cfg.eval_excerpt_s * self.sr)
        vals = []
        for i in ho:
            x = torch.from_numpy(self.x[i][:L])[None]
            y = torch.from_numpy(self._target(i, 0, L))[None]
            yh = self.topo(x, self.map(self._knob_tensor([i])))
            vals.append(float(losses.esr(yh[:, warm:], y[:, warm:])[0]))
        self.holdout_esr = float(np.mean(vals))

    def _guitar_spans(self, i: int) -> list[tuple[int, int]]:
        """Item ``i``'s ``guitar_spans`` cut to its input (empty ones dropped)."""
        n = len(self.x[i])
        spans = [(max(0, int(a)), min(int(b), n)) for a, b in self.items[i].get("guitar_spans") or ()]
        return [(a, b) for a, b in spans if b > a]

    @torch.no_grad()
    def _report_esr(self, i: int) -> tuple[float, float | None]:
        """ESR of item ``i`` on the exact path, and over its guitar spans alone (None
        without spans). Items up to ``report_max_s`` are rendered whole, once for both
        figures; longer ones in ``report_max_s / report_window_s`` windows spread evenly
        over the capture, each after its own warm-up of at least 0.25 s (errors and
        energies summed over the windows), so the report costs the same for a 60 s
        capture, and their guitar spans by :meth:`_report_guitar_esr`."""
        c = self.cfg
        raw = self.map(self._knob_tensor([i]))
        n = len(self.x[i])
        if n <= int(c.report_max_s * self.sr):
            yh = self.topo(torch.from_numpy(self.x[i])[None], raw, exact=True)[0].numpy()
            y = self._target(i, 0, n)
            spans = self._guitar_spans(i)
            guitar = None
            if spans:
                yg, yhg = (np.concatenate([v[a:b] for a, b in spans]).astype(np.float64) for v in (y, yh))
                guitar = float(np.sum((yhg - yg) ** 2) / (np.sum(yg ** 2) + losses.EPS))
            return losses.esr_numpy(yh, y), guitar
        warm = int(max(c.warmup_s, 0.25) * self.sr)  # the 5 Hz DC blocker settles (tau 32 ms)
        w = int(c.report_window_s * self.sr)
        k = max(1, int(round(c.report_max_s / c.report_window_s)))
        starts = np.linspace(warm, n - w, k).astype(int)
        X = np.stack([self.x[i][s - warm: s + w] for s in starts])
        Y = np.stack([self._target(i, s - warm, w + warm) for s in starts])
        yh = self._render(torch.from_numpy(X), raw.expand(k, -1), exact=True).numpy()
        err = np.sum((yh[:, warm:] - Y[:, warm:].astype(np.float64)) ** 2)
        return float(err / (np.sum(Y[:, warm:].astype(np.float64) ** 2) + losses.EPS)), self._report_guitar_esr(i, raw)

    @torch.no_grad()
    def _report_guitar_esr(self, i: int, raw: torch.Tensor) -> float | None:
        """ESR of a long item ``i`` (raw controls ``raw``) on the exact path over its
        ``guitar_spans`` alone (error and energy summed over them); None without spans.
        Each span is rendered from at least 0.25 s before it (its own warm-up). Spans
        longer in all than ``report_max_s`` are scored on ``report_max_s /
        report_window_s`` windows spread evenly over them (a 60 s UNIT signal holds 38.5
        s of guitar), so this costs at most what the item's own windows cost."""
        c = self.cfg
        spans = self._guitar_spans(i)
        if not spans:
            return None
        total = sum(b - a for a, b in spans)
        if total > int(c.report_max_s * self.sr):
            w = int(c.report_window_s * self.sr)
            k = max(1, int(round(c.report_max_s / c.report_window_s)))
            ends = np.cumsum([b - a for a, b in spans])
            windows = []
            for u in np.linspace(0, total - w, k).astype(int):  # positions along the spans laid end to end
                j = int(np.searchsorted(ends, u, side="right"))
                a = spans[j][0] + int(u - (ends[j - 1] if j else 0))
                windows.append((a, min(a + w, spans[j][1])))
            spans = windows
        warm_n = int(max(c.warmup_s, 0.25) * self.sr)
        # one batch: each span from its warm-up start, zero-padded at the end to the
        # longest (the twin is causal and the exact path ends a render in zeros, so the
        # padding changes nothing before the span's end), its rows split over the
        # run's processes
        starts = [max(0, a - warm_n) for a, _ in spans]
        width = max(b - s0 for (_, b), s0 in zip(spans, starts))
        X = np.zeros((len(spans), width), np.float32)
        for r, ((_, b), s0) in enumerate(zip(spans, starts)):
            X[r, :b - s0] = self.x[i][s0:b]
        yh_all = self._render(torch.from_numpy(X), raw.expand(len(spans), -1), exact=True).numpy()
        err = energy = 0.0
        for r, ((a, b), s0) in enumerate(zip(spans, starts)):
            yh = yh_all[r, a - s0:b - s0]
            y = self._target(i, a, b - a).astype(np.float64)
            err += float(np.sum((yh - y) ** 2))
            energy += float(np.sum(y ** 2))
        return err / (energy + losses.EPS)

    @torch.no_grad()
    def _stage_report(self):
        if self.step == 0:  # a fresh report (a resumed one keeps what it scored)
            self.report_partial = {"esr": {}, "guitar": {}}
        per, per_guitar = self.report_partial["esr"], self.report_partial["guitar"]
        for i, it in enumerate(self.items):
            if it["name"] in per:  # scored before a cancel; an item the checkpoint
                continue           # lacks is scored whatever the step says
            self._check_stop()
            e, g = self._report_esr(i)
            per[it["name"]] = e
            if g is not None:
                per_guitar[it["name"]] = g
            self.step = max(self.step, i + 1)
            self._tick()
            self._emit(len(self.items))
        # also the per-capture (pre-map) fit quality is in last_item_esr
        tr = [self.items[i]["name"] for i in self.train_idx]
        ho = [self.items[i]["name"] for i in self.holdout_idx]
        rows = []
        for i, it in enumerate(self.items):
            e = per.get(it["name"])
            rows.append({"name": it["name"], "holdout": bool(it.get("holdout")), "esr": e,
                         "guitar_esr": per_guitar.get(it["name"]),
                         "verdict": losses.verdict(e) if e is not None else None,
                         "latency_samples": self.latencies[i], "knobs": dict(it["knobs"])})
        def stats(names, per=per):
            v = [per[n] for n in names if n in per]
            if not v:
                return None
            return {"mean": float(np.mean(v)), "median": float(np.median(v)), "worst": float(np.max(v)),
                    "count": len(v), "verdict": losses.verdict(float(np.median(v)))}
        warnings = []
        for kd in self.knobs:
            used = {float(self.items[i]["knobs"].get(kd.name, kd.reference)) for i in self.train_idx}
            if kd.kind == "switch":
                missing = [p for p in kd.positions if float(p) not in used]
                if missing:
                    warnings.append(f"{kd.name}: positions {missing} were never captured; "
                                    "they render as the reference position")
            elif len(used) < 2:
                warnings.append(f"{kd.name}: never varied in the training captures")
        self.report = {"items": rows, "train": stats(tr), "holdout": stats(ho), "warnings": warnings,
                       "train_guitar": stats(tr, per_guitar), "holdout_guitar": stats(ho, per_guitar),
                       "polarity": self.polarity, "fit_seconds": self._now(),
                       "topology": self.topology_name}
        self.train_esr = self.report["train"]["mean"] if self.report["train"] else None
        if self.report["holdout"]:
            self.holdout_esr = self.report["holdout"]["mean"]
        self.last_item_esr = dict(per)

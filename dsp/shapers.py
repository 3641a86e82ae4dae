"""Waveshapers (memoryless nonlinearities) and oversampling.

Every shaper maps a signal x of shape (..., T) sample by sample; its parameters are
numbers or tensors that broadcast against x's batch dimensions (shape (), (B,) or
(B, 1) for x of shape (B, T); a parameter with as many dimensions as x may also vary
in time, shape (B, T)). All are differentiable w.r.t. x and every parameter, work in
float32 and float64, and are written with +, −, ×, ÷, sqrt/hypot, pow and comparisons
only, so a C++ engine reproduces them from the formulas in the docstrings. Amplitudes (levels,
bias, crossover) are in the units of x (full scale = 1.0).

Oversampling (``upsample`` / ``downsample`` / ``oversampled``) uses one fixed windowed-
sinc FIR per factor (an L-th-band Kaiser design), defined in ``oversampling_fir``; the
filtering is zero-phase (centred), so a causal C++ implementation reproduces it with a
latency of 2·OVERSAMPLE_ZEROS samples at the base rate, exactly on inputs that start
and end in silence (see ``upsample``).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.fft
import torch

from dsp.filters import align_param

__all__ = [
    "SOFT_CLIP_SATURATED",
    "MIN_CORNER",
    "asym_soft_clip",
    "hard_clip",
    "cubic_clip",
    "tube_stage",
    "push_pull",
    "table_shaper",
    "OVERSAMPLE_ZEROS",
    "OVERSAMPLE_KAISER_BETA",
    "oversampling_fir",
    "upsample",
    "downsample",
    "oversampled",
]


def _as_signal(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    if not x.dtype.is_floating_point:
        x = x.to(torch.get_default_dtype())
    return x


def _safe_pow(a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """a**p for a >= 0 with 0**p = 0 and finite gradients at a = 0 (p > 0)."""
    pos = a > 0
    a_safe = torch.where(pos, a, torch.ones_like(a))
    return torch.where(pos, a_safe ** p, torch.zeros_like(a_safe))


# ------------------------------------------------------------------------- shapers
#: |x/L| beyond which asym_soft_clip returns exactly ±L (also guards float32 overflow).
SOFT_CLIP_SATURATED = 1e12
#: Smallest corner radius (units of x) used by hard_clip and push_pull: a smoothness or
#: crossover of exactly 0 becomes hypot(0, MIN_CORNER) = 1e-12, so gradients stay finite.
MIN_CORNER = 1e-12

def asym_soft_clip(x: torch.Tensor, pos_level, neg_level, knee=1.0) -> torch.Tensor:
    """Asymmetric smooth saturation with separate positive and negative ceilings.

    Definition, with L = pos_level for x >= 0 and L = neg_level for x < 0 (both > 0),
    p = 2·knee (knee >= 0.5):

        y = x / (1 + |x/L|^p)^(1/p)

    so y(0) = 0, dy/dx(0) = 1, y → +pos_level as x → +∞ and y → −neg_level as
    x → −∞. knee = 1 gives the algebraic sigmoid x/sqrt(1 + (x/L)²); larger knee makes
    the corner harder (knee → ∞: hard clip at the levels), smaller softer. Numerically
    evaluated as y = x / (M·(M^-p + (|x/L|/M)^p)^(1/p)) with M = max(1, |x/L|), which
    is the same function without overflow; for |x/L| > SOFT_CLIP_SATURATED (1e12) the
    output is exactly ±L (the formula differs from it by < 1e-12 there).

    Args:
        x: (..., T). pos_level, neg_level: ceilings (> 0, units of x). knee: >= 0.5.
    Returns:
        y, same shape as the broadcast of x and the parameters.
    """
    x = _as_signal(x)
    pos_level = align_param(pos_level, x)
    neg_level = align_param(neg_level, x)
    knee = align_param(knee, x)
    level = torch.where(x >= 0, pos_level, neg_level)
    a = torch.abs(x) / level
    p = 2.0 * knee
    a_c = torch.clamp(a, max=SOFT_CLIP_SATURATED)   # keeps the unused branch finite
    big = torch.clamp(a_c, min=1.0)
    denom = big * (big ** (-p) + _safe_pow(a_c / big, p)) ** (1.0 / p)
    return torch.where(a > SOFT_CLIP_SATURATED, level * torch.sign(x), x / denom)


def hard_clip(x: torch.Tensor, level, smoothness) -> torch.Tensor:
    """Smooth approximation of clamp(x, −level, level).

    Definition (a smoothed 0.5·(|x + L| − |x − L|), written without cancellation):

        s' = hypot(smoothness, MIN_CORNER)          (= sqrt(s² + 1e-24))
        y  = L·x / ( 0.5·hypot(x + L, s') + 0.5·hypot(x − L, s') ),   L = level

    with hypot(u, v) = sqrt(u² + v²) (std::hypot: no overflow for huge x).

    Odd, y(0) = 0, |y| < L, y → ±L as x → ±∞; s = 0 is the clamp to within 1e-12
    (gradients stay finite). The slope at 0 is L/sqrt(L² + s'²) and
    y(±L) = ±2L²/(sqrt(4L² + s'²) + s').

    Args:
        x: (..., T). level: ceiling (> 0). smoothness: corner radius s (>= 0), units of x.
    """
    x = _as_signal(x)
    level = align_param(level, x)
    s = torch.hypot(align_param(smoothness, x), torch.tensor(MIN_CORNER, dtype=x.dtype, device=x.device))
    return level * x / (0.5 * torch.hypot(x + level, s) + 0.5 * torch.hypot(x - level, s))


def cubic_clip(x: torch.Tensor) -> torch.Tensor:
    """The cubic soft clipper: z - z³/3 with z = clamp(x, −1, 1).

    Odd, slope 1 at 0, and it meets its ceiling ±2/3 at x = ±1 with slope 0 (continuous
    first derivative: no corner, unlike a hard clip); beyond ±1 the output is exactly
    ±2/3 and the gradient 0. Guitarix's MetalHead clips its drive bands with it.
    """
    z = _as_signal(x).clamp(-1.0, 1.0)
    return z - z * z * z / 3.0


def tube_stage(x: torch.Tensor, bias, pos_level, neg_level, knee=1.0) -> torch.Tensor:
    """Asymmetric tube-like stage whose operating point moves with ``bias``.

    Definition, with g = asym_soft_clip(·, pos_level, neg_level, knee):

        y = g(x + bias) − g(bias)

    The constant g(bias) is the DC of the operating point, removed so that y(0) = 0.
    bias > 0 moves the idle point towards the positive ceiling (the positive half
    clips first, small-signal gain g'(bias) < 1), bias < 0 towards the negative one.

    Args:
        x: (..., T). bias: operating-point offset (units of x). pos_level, neg_level:
        ceilings of the shaper before the DC removal (> 0). knee: see asym_soft_clip.
    """
    x = _as_signal(x)
    bias = align_param(bias, x)
    return asym_soft_clip(x + bias, pos_level, neg_level, knee) - asym_soft_clip(
        torch.zeros_like(x) + bias, pos_level, neg_level, knee)


def push_pull(x: torch.Tensor, bias, crossover, level, imbalance=0.0) -> torch.Tensor:
    """Class-AB push-pull power stage with crossover distortion.

    Each output tube conducts one polarity: the push half sees (x + bias), the pull
    half (−x + bias). A tube turns on smoothly (a smoothed ReLU whose corner width is
    ``crossover``) and saturates at 2·level:

        on(u)   = 0.5·(u + sqrt(u² + crossover² + MIN_CORNER²))      (turn-on)
        half(u) = on(u) / sqrt(1 + (on(u) / (2·level))²)             (saturation)
        y = 0.5·[ (1 + imbalance)·half(x + bias) − (1 − imbalance)·half(−x + bias) ]
            − imbalance·half(bias)

      computed as 0.5·[(p − q) + imbalance·((p − r) + (q − r))] with p = half(x + bias),
      q = half(bias − x), r = half(bias): silence in is exactly 0 out (p = q = r bitwise),
      which hosts test for (pedalboard re-creates a plugin whose output after a reset is
      not silent, and its latency compensation then fails), and imbalance 0 gives
      0.5·(p − q) exactly.

    * bias > 0 (hot, class-AB/A): both halves conduct around 0, small-signal gain → 1.
    * bias < 0 (cold): neither half conducts for |x| < −bias: a dead zone around zero,
      i.e. crossover distortion; ``crossover`` sets how abrupt its edges are (small =
      hard notch, large = gentle). bias = 0: class B, gain 0.5 at zero.
    * Output ceilings +level·(1 + imbalance) and −level·(1 − imbalance); imbalance = 0
      (balanced halves) gives an odd, symmetric transfer curve. y(0) = 0 always.

    Args:
        x: (..., T). bias, crossover (>= 0), level (> 0): units of x.
        imbalance: mismatch of the two halves' gains, in (−1, 1).
    """
    x = _as_signal(x)
    bias = align_param(bias, x)
    cross2 = align_param(crossover, x) ** 2 + MIN_CORNER ** 2
    level2 = 2.0 * align_param(level, x)
    imbalance = align_param(imbalance, x)

    def half(u):
        on = 0.5 * (u + torch.sqrt(u * u + cross2))
        return on / torch.sqrt(1.0 + (on / level2) ** 2)

    push = half(x + bias)
    pull = half(bias - x)
    rest = half(torch.zeros_like(x) + bias)
    return 0.5 * ((push - pull) + imbalance * ((push - rest) + (pull - rest)))


def table_shaper(x: torch.Tensor, values: torch.Tensor, x_range: float) -> torch.Tensor:
    """A learnable curve: linear interpolation in a table on a uniform grid.

    Definition, with K = len(values) knots x_j = -R + j·h, h = 2R / (K - 1), R = x_range:

        u = (clamp(x, -R, R) + R) / h,   j = min(floor(u), K - 2),   f = u - j
        y = (1 - f)·values[j] + f·values[j + 1]

    so y(x_j) = values[j], straight lines between the knots, and the end values beyond
    ±R. Guitarix's tube stages are such tables (its ``tubestage`` runs x through a
    table of the circuit's response); a curve of this kind may bend at the origin,
    which the smooth clippers above cannot (a distortion whose THD does not fall with
    the level). The gradient reaches ``values`` (the two knots around each sample) and
    ``x`` (the segment's slope; 0 beyond ±R).

    Args:
        x: (..., T). values: (K,), K >= 2. x_range: R > 0.
    """
    x = _as_signal(x)
    k = values.shape[-1]
    h = 2.0 * x_range / (k - 1)
    u = (x.clamp(-x_range, x_range) + x_range) / h
    j = u.detach().floor().clamp(0, k - 2)
    f = u - j
    j = j.long()
    v = values.to(x.dtype)
    return v[j] + f * (v[j + 1] - v[j])


# --------------------------------------------------------------------- oversampling
#: Zero crossings of the sinc on each side, in base-rate samples: the FIR spans
#: 2·OVERSAMPLE_ZEROS base-rate samples (its half-length, the engine's latency per
#: resampling pass, is OVERSAMPLE_ZEROS base-rate samples).
OVERSAMPLE_ZEROS = 10
#: Kaiser window shape β of the oversampling FIR (larger: more stopband rejection,
#: wider transition band).
OVERSAMPLE_KAISER_BETA = 7.75


def oversampling_fir(factor: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """The FIR h[0..N-1] used by ``upsample``/``downsample`` for an integer factor L
    (L = 1: the unit impulse, unused: factor 1 resamples nothing).

    An L-th-band (for L = 2: half-band) Kaiser-windowed sinc with its cut-off (−6 dB)
    exactly at the base rate's Nyquist frequency. Definition (N = 2·Z·L + 1, centre
    c = Z·L, Z = OVERSAMPLE_ZEROS, β = OVERSAMPLE_KAISER_BETA, computed in float64):

        g[n] = sin(π(n − c)/L) / (π(n − c))  for n − c not a multiple of L,
        g[c] = 1/L,   g[n] = 0  for n ≠ c with n − c a multiple of L (exact zeros)
        w[n] = I0(β·sqrt(1 − (2n/(N−1) − 1)²)) / I0(β)               (Kaiser)
        h[n] = g[n]·w[n] / (L · Σ_{k ≡ n mod L} g[k]·w[k])

    i.e. each polyphase component h[p], h[p + L], h[p + 2L], ... is scaled to sum to
    exactly 1/L. Hence: the DC gain Σ h = 1; h[c] = 1/L and every other tap of c's
    phase is 0, so in the up-sampler that phase is a plain delay (L·h[c] = 1) and the
    decimator skips the zero taps (L = 2: 2·Z + 1 non-zero taps of N = 4·Z + 1);
    a constant input up-samples to a constant (no image of DC). h is symmetric
    (linear phase, delay c samples at the high rate).

    Measured for L = 2 (Z = 10, β = 7.75: 41 taps, 21 non-zero), at 48 kHz
    (``tests/test_dsp_shapers.py`` checks these bounds from the taps):

    * passband: within ±0.0013 dB from 0 to 18 kHz (0.75 × Nyquist), −0.04 dB at
      19 kHz, −6.02 dB at 24 kHz;
    * stopband: ≤ −76 dB from 30 kHz (48 − 18) to 48 kHz, so images of, and aliases
      into, 0–18 kHz are at least 76 dB down (per pass; 44.1 kHz: the same figures at
      0.75 × and 1.25 × its Nyquist frequency, 16.5 and 27.6 kHz).
      Between 18 and 30 kHz lies the transition band: content at 24–30 kHz aliases to
      18–24 kHz with less rejection.

    References:
        Kaiser, "Nonrecursive digital filter design using the I0-sinh window function",
        Proc. IEEE ISCAS 1974. Mintzer, "On half-band, third-band, and Nth-band FIR
        filters and their design", IEEE Trans. ASSP 30(5), 1982.
    """
    factor = int(factor)
    if factor < 1:
        raise ValueError("factor must be a positive integer")
    z = OVERSAMPLE_ZEROS
    n_taps = 2 * z * factor + 1
    c = z * factor
    k = np.arange(n_taps) - c                     # offset from the centre (integers)
    on_grid = k % factor == 0
    g = np.zeros(n_taps, dtype=np.float64)
    g[~on_grid] = np.sin(np.pi * k[~on_grid] / factor) / (np.pi * k[~on_grid])
    g[c] = 1.0 / factor
    # 2n/(N−1) − 1 = k/c: written in k so that w (and h) are exactly symmetric
    beta = OVERSAMPLE_KAISER_BETA
    w = np.i0(beta * np.sqrt(1.0 - (k / c) ** 2)) / np.i0(beta)
    h = g * w
    for p in range(factor):                       # fsum: exact, order-free phase sums
        h[p::factor] /= factor * math.fsum(h[p::factor])
    return torch.as_tensor(h, dtype=dtype, device=device)


def _centred_fir(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """out[m] = Σ_j h[j]·u[m + j − c] (c = (len(h) − 1)/2, u zero outside), by FFT.

    h is symmetric, so this is the linear convolution u * h advanced by c samples.
    The FFT only changes rounding (~1e-16 relative in float64), not the definition.
    """
    m = u.shape[-1]
    n_taps = h.shape[-1]
    c = (n_taps - 1) // 2
    n_fft = scipy.fft.next_fast_len(m + n_taps - 1, real=True)
    y = torch.fft.irfft(torch.fft.rfft(u, n=n_fft) * torch.fft.rfft(h, n=n_fft), n=n_fft)
    return y[..., c:c + m]


def upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Raise the sample rate by an integer factor L: (..., T) -> (..., T·L).

    Definition (h = oversampling_fir(L), c = OVERSAMPLE_ZEROS·L, x zero outside [0, T)):

        y[m] = L · Σ_i x[i] · h[m − i·L + c],   m = 0 .. T·L − 1

    i.e. zero-stuffing, gain L, and the centred (zero-phase) low-pass h. factor 1 returns
    x unchanged.

    Zero-phase versus causal: this sees x as zero outside [0, T) and returns only
    m in [0, T·L). A causal implementation (the C++ engine) computes the same sums
    delayed by c high-rate samples, but it also keeps the FIR's ringing before m = 0
    and after the end, which this drops. The two are equal (up to the delay) only on
    inputs of finite support that start and end in silence: x[i] = 0 for the first and
    last OVERSAMPLE_ZEROS samples (the FIR's half-length at the base rate), so there is
    no ringing to drop. That is why the golden vectors and parity tests pad their inputs
    with silence (``dsp.export.golden_input``, ``EDGE_SILENCE``), and leave out the end
    of the output where a recursive filter's tail has not died away.
    """
    x = _as_signal(x)
    factor = int(factor)
    if factor < 1:
        raise ValueError("factor must be a positive integer")
    if factor == 1:
        return x
    t = x.shape[-1]
    v = torch.zeros(*x.shape[:-1], t, factor, dtype=x.dtype, device=x.device)
    v = torch.cat([x.unsqueeze(-1) * factor, v[..., 1:]], dim=-1).reshape(*x.shape[:-1], t * factor)
    y = _centred_fir(v, oversampling_fir(factor, dtype=x.dtype, device=x.device))
    return y


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Lower the sample rate by an integer factor L: (..., M) -> (..., ceil(M/L)).

    Definition (h = oversampling_fir(L), c = OVERSAMPLE_ZEROS·L, u zero outside [0, M)):

        y[k] = Σ_j h[j] · u[k·L + j − c]

    i.e. the centred low-pass h, then every L-th sample starting at 0. factor 1 returns
    x unchanged. Like ``upsample``, it equals a causal (delayed) implementation only on
    inputs that start and end in silence (OVERSAMPLE_ZEROS·L samples here).
    """
    x = _as_signal(x)
    factor = int(factor)
    if factor < 1:
        raise ValueError("factor must be a positive integer")
    if factor == 1:
        return x
    y = _centred_fir(x, oversampling_fir(factor, dtype=x.dtype, device=x.device))
    y = y[..., ::factor]
    return y


def oversampled(fn: Callable[..., torch.Tensor], x: torch.Tensor, factor: int, *args,
                **kwargs) -> torch.Tensor:
    """downsample(fn(upsample(x, L), *args, **kwargs), L): run ``fn`` at L times the rate.

    ``fn`` must keep the time length; its parameters must not vary in time (they are
    passed unchanged and broadcast against the batch dims). For a time-invariant,
    memoryless fn with fn(0) = 0 this equals the causal C++ result delayed by
    2·OVERSAMPLE_ZEROS base-rate samples (over this output's range 0 .. T − 1) only when
    x has finite support, starting and ending with at least OVERSAMPLE_ZEROS samples of
    silence: the zero-phase resampler drops the FIR's ringing outside [0, T) that a
    causal one keeps (see ``upsample``), which is why the goldens pad their inputs with
    silence. factor 1 = fn(x, *args, **kwargs). If fn has memory and a sample rate, pass
    it the oversampled rate yourself.
    """
    factor = int(factor)
    if factor == 1:
        return fn(x, *args, **kwargs)
    return downsample(fn(upsample(x, factor), *args, **kwargs), factor)

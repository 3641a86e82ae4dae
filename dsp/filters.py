"""Linear filters: coefficient design, exact recursive filtering and its FFT twin.

Every filter here is an exact discrete-time system that a C++ engine reproduces sample
for sample: the coefficient formulas and the difference equation are written in each
docstring, and the reference implementation runs in float64.

Conventions (shared by the whole ``dsp`` package)
-------------------------------------------------
* Signals have shape ``(..., time)``.
* Physical units in every name: ``sample_rate`` and ``cutoff_hz`` in Hz, ``gain_db`` in
  dB, ``q`` dimensionless, ``time_s`` in seconds.
* Parameters are python numbers or torch tensors. A parameter tensor is matched against
  the *batch* dimensions of the signal (``x.shape[:-1]``), right-aligned: with ``x`` of
  shape ``(B, T)`` a parameter may have shape ``()``, ``(B,)`` or ``(B, 1)``. (A
  parameter with as many dimensions as ``x`` is read as ``(..., 1)``: its last dimension
  is the time axis and must be 1 for filters.)
* Coefficient functions return ``(b, a)`` of shape ``(*param_batch, n)``: numerator and
  denominator of ``H(z) = (b[0] + b[1] z^-1 + ...) / (a[0] + a[1] z^-1 + ...)`` with
  ``a[..., 0] == 1``.
* Everything works in float32 and float64 and is differentiable w.r.t. every tensor
  parameter. Python-number parameters become tensors of the default dtype (or of the
  dtype of the other tensor parameters) in the coefficient functions, and float64 in
  the signal-level helpers (``biquad``, ``onepole``, ...).
* Filtering returns x's dtype but always runs in float64. PRECISION: direct-form
  coefficients of poles near z = 1 (low cut-offs, high sample rates, the tone stack)
  are ill-conditioned, so *design coefficients in float64* (pass float64 parameter
  tensors; gradients flow back to float32 parameters through ``.double()``). Rounding
  the coefficients to float32 moves a 20 Hz low-pass at 96 kHz by ~5 % in magnitude and
  the tone stack by up to ~7 %; the float32 audio itself costs nothing.

Filtering paths
---------------
``iir_filter`` is the exact recursion (transposed direct form II, zero initial state,
float64 accumulation). Its forward pass is ``scipy.signal.lfilter`` on float64 copies;
its backward pass is exact too (the adjoint of an IIR filter is the same filter run
backwards in time, see ``_IIRFilter``), so it is both fast and differentiable, and the
result is identical with or without gradients. ``iir_filter_loop`` is a plain python
loop of the same difference equation, used as an independent reference in the tests.
``iir_filter_fft`` evaluates the same filter in the frequency domain (any device, pure
torch autograd) with a documented truncation error bound.

References:
    R. Bristow-Johnson, "Cookbook formulae for audio EQ biquad filter coefficients".
    J. O. Smith, "Introduction to Digital Filters", CCRMA (bilinear transform, TDF-II).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.signal
import torch

__all__ = [
    "BIQUAD_KINDS",
    "as_tensors",
    "align_param",
    "bilinear_transform",
    "biquad_coeffs",
    "blend_coeffs",
    "onepole_coeffs",
    "dc_blocker_coeffs",
    "iir_filter",
    "iir_filter_loop",
    "iir_filter_fft",
    "fft_length",
    "sos_filter",
    "sos_filter_fft",
    "poly_mul",
    "freq_response",
    "biquad",
    "onepole",
    "dc_blocker",
    "fir_filter",
    "fir_least_squares",
    "resample_fir",
]

BIQUAD_KINDS = ("lowpass", "highpass", "lowshelf", "highshelf", "peak", "bandpass", "allpass")
ONEPOLE_KINDS = ("lowpass", "highpass")

#: Default tail tolerance of ``iir_filter_fft``: the FFT length is chosen so that the
#: slowest pole has decayed to this fraction of its start before the signal wraps.
FFT_TAIL_TOL = 1e-12
#: Largest FFT length ``iir_filter_fft`` chooses by itself (2**24 samples, ~6 min @48k).
FFT_MAX_LEN = 1 << 24


# --------------------------------------------------------------------------- helpers
def as_tensors(*params, dtype: torch.dtype | None = None, device=None) -> list[torch.Tensor]:
    """Convert parameters (numbers or tensors) to tensors of one floating dtype.

    The dtype is ``dtype`` if given, else the promoted dtype of the tensor parameters
    (at least floating), else ``torch.get_default_dtype()``. No broadcasting is done.
    """
    tensors = [p for p in params if isinstance(p, torch.Tensor)]
    if dtype is None:
        dtype = torch.get_default_dtype()
        if tensors:
            dtype = tensors[0].dtype
            for p in tensors[1:]:
                dtype = torch.promote_types(dtype, p.dtype)
            if not dtype.is_floating_point:
                dtype = torch.get_default_dtype()
    if device is None and tensors:
        device = tensors[0].device
    return [torch.as_tensor(p, dtype=dtype, device=device) for p in params]


def align_param(p, x: torch.Tensor) -> torch.Tensor:
    """Shape a parameter so that it broadcasts against a signal ``x`` of shape (..., T).

    A parameter with fewer dimensions than ``x`` is matched against the batch
    dimensions ``x.shape[:-1]`` (a trailing time axis of length 1 is appended); one with
    as many dimensions as ``x`` is used as is (last axis: 1 or T, i.e. time-varying).
    Returns a tensor in ``x``'s dtype promoted with the parameter's.
    """
    if not isinstance(p, torch.Tensor):
        return torch.as_tensor(p, dtype=x.dtype, device=x.device)
    if not p.dtype.is_floating_point:
        p = p.to(x.dtype)
    if p.dim() < x.dim():
        p = p.unsqueeze(-1)
    return p


def _broadcast_shapes(*shapes) -> torch.Size:
    """numpy broadcasting of shapes (torch.broadcast_shapes imports torch._refs: ~1 s)."""
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for shape in shapes:
        for i, n in enumerate(shape, start=ndim - len(shape)):
            if n != 1:
                if out[i] not in (1, n):
                    raise ValueError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
                out[i] = n
    return torch.Size(out)


def _coef_batch(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Drop a time-aligned singleton axis of coefficients made from (B, 1) parameters."""
    if c.dim() == x.dim() + 1 and c.shape[-2] == 1:
        c = c.squeeze(-2)
    elif c.dim() > x.dim() + 1:
        raise ValueError(
            f"coefficients of shape {tuple(c.shape)} have more batch dimensions than the "
            f"signal of shape {tuple(x.shape)}")
    return c


def bilinear_transform(b_analog: torch.Tensor, a_analog: torch.Tensor, sample_rate: float,
                       prewarp_hz: float | torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Discretise an analog transfer function with the bilinear transform.

    Args:
        b_analog, a_analog: analog polynomial coefficients in ASCENDING powers of s,
            shape (..., N+1) (same N for both; pad with zeros), H(s) = B(s)/A(s).
        sample_rate: Hz.
        prewarp_hz: if given, the frequency (Hz) mapped exactly; else c = 2·sample_rate.

    Definition: s = c·(1 - z^-1)/(1 + z^-1) with c = 2·fs, or with pre-warping
    c = 2π·f0 / tan(π·f0/fs). Multiplying by (1 + z^-1)^N gives

        b_d[j] = Σ_k b_analog[k] · c^k · M[k, j],   a_d[j] likewise,
        M[k, j] = coefficient of z^-j in (1 - z^-1)^k · (1 + z^-1)^(N-k),

    then both are divided by a_d[0]. Returns (b, a) of shape (..., N+1), a[..., 0] == 1.
    """
    b_analog, a_analog = torch.broadcast_tensors(*as_tensors(b_analog, a_analog))
    n = b_analog.shape[-1] - 1
    dtype, device = b_analog.dtype, b_analog.device
    if prewarp_hz is None:
        c = torch.as_tensor(2.0 * sample_rate, dtype=dtype, device=device)
    else:
        f0 = torch.as_tensor(prewarp_hz, dtype=dtype, device=device)
        c = 2.0 * math.pi * f0 / torch.tan(math.pi * f0 / sample_rate)
    c = c.unsqueeze(-1)
    mat = np.zeros((n + 1, n + 1))
    for k in range(n + 1):
        poly = np.array([1.0])
        for _ in range(k):
            poly = np.convolve(poly, [1.0, -1.0])
        for _ in range(n - k):
            poly = np.convolve(poly, [1.0, 1.0])
        mat[k] = poly
    m = torch.as_tensor(mat, dtype=dtype, device=device)
    powers = c ** torch.arange(n + 1, dtype=dtype, device=device)
    bd = (b_analog * powers) @ m
    ad = (a_analog * powers) @ m
    a0 = ad[..., :1]
    return bd / a0, ad / a0


# ------------------------------------------------------------------ coefficient design
def _bilinear_biquad(num, den, k):
    """Bilinear transform of a normalised analog biquad, s_norm = (1/K)(1-z^-1)/(1+z^-1).

    num = (B0, B1, B2), den = (A0, A1, A2): ascending powers of s/ω0.
    """
    b0, b1, b2 = num
    a0, a1, a2 = den
    k2 = k * k
    nb = (b2 + b1 * k + b0 * k2, 2.0 * (b0 * k2 - b2), b2 - b1 * k + b0 * k2)
    na = (a2 + a1 * k + a0 * k2, 2.0 * (a0 * k2 - a2), a2 - a1 * k + a0 * k2)
    norm = na[0]
    one = torch.ones_like(norm)
    b = torch.stack(torch.broadcast_tensors(*(v / norm for v in nb)), dim=-1)
    a = torch.stack(torch.broadcast_tensors(one, na[1] / norm, na[2] / norm), dim=-1)
    return b, a


def biquad_coeffs(kind: str, sample_rate: float, cutoff_hz, q=0.7071, gain_db=0.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Second-order filter coefficients (RBJ cookbook), bilinear transform pre-warped.

    Args:
        kind: "lowpass", "highpass", "lowshelf", "highshelf", "peak", "bandpass" or
            "allpass".
        sample_rate: Hz.
        cutoff_hz: cut-off / centre / shelf mid-point frequency in Hz, 0 < f < fs/2.
        q: quality factor (> 0). 0.7071 = Butterworth for low/high-pass.
        gain_db: gain in dB for "lowshelf", "highshelf", "peak" (ignored otherwise).

    Returns:
        (b, a), each of shape (*broadcast(cutoff_hz, q, gain_db).shape, 3), a[..., 0] = 1.

    Definition. With A = 10^(gain_db/40), K = tan(π·cutoff_hz/sample_rate) and the
    analog prototype in normalised frequency s (s = jω/ω0), written
    H(s) = (B0 + B1 s + B2 s²)/(A0 + A1 s + A2 s²):

        lowpass   : 1 / (1 + s/Q + s²)                         (-3 dB at f0 for Q=1/√2)
        highpass  : s² / (1 + s/Q + s²)
        bandpass  : (s/Q) / (1 + s/Q + s²)                      (0 dB at f0)
        allpass   : (1 - s/Q + s²) / (1 + s/Q + s²)               (|H| = 1, -180° at f0)
        peak      : (1 + (A/Q) s + s²) / (1 + s/(A·Q) + s²)       (gain_db at f0)
        lowshelf  : A·(A + (√A/Q) s + s²) / (1 + (√A/Q) s + A s²)   (gain_db at DC)
        highshelf : A·(1 + (√A/Q) s + A s²) / (A + (√A/Q) s + s²)   (gain_db at fs/2)

    and the bilinear transform s = (1/K)(1 - z^-1)/(1 + z^-1), which maps f0 exactly:

        b0 = (B2 + B1 K + B0 K²)/D,  b1 = 2 (B0 K² - B2)/D,  b2 = (B2 - B1 K + B0 K²)/D
        a0 = 1,  a1 = 2 (A0 K² - A2)/D,  a2 = (A2 - A1 K + A0 K²)/D,
        D  = A2 + A1 K + A0 K².

    These equal the RBJ cookbook coefficients (the shelves with the cookbook's Q form;
    the shelf gain at f0 is half the dB gain).
    """
    if kind not in BIQUAD_KINDS:
        raise ValueError(f"unknown biquad kind {kind!r}; expected one of {BIQUAD_KINDS}")
    cutoff_hz, q, gain_db = torch.broadcast_tensors(*as_tensors(cutoff_hz, q, gain_db))
    k = torch.tan(math.pi * cutoff_hz / sample_rate)
    one = torch.ones_like(k)
    zero = torch.zeros_like(k)
    if kind == "lowpass":
        num, den = (one, zero, zero), (one, 1.0 / q, one)
    elif kind == "highpass":
        num, den = (zero, zero, one), (one, 1.0 / q, one)
    elif kind == "bandpass":
        num, den = (zero, 1.0 / q, zero), (one, 1.0 / q, one)
    elif kind == "allpass":
        num, den = (one, -1.0 / q, one), (one, 1.0 / q, one)
    else:
        amp = torch.pow(10.0, gain_db / 40.0)
        if kind == "peak":
            num, den = (one, amp / q, one), (one, 1.0 / (amp * q), one)
        else:
            sq = torch.sqrt(amp) / q
            if kind == "lowshelf":
                num, den = (amp * amp, amp * sq, amp), (one, sq, amp)
            else:  # highshelf
                num, den = (amp, amp * sq, amp * amp), (amp, sq, one)
    return _bilinear_biquad(num, den, k)


#: the highest cut-off of a one-pole, as a fraction of its sample rate (:func:`onepole_coeffs`)
ONEPOLE_MAX_FRACTION = 0.498


def onepole_coeffs(kind: str, sample_rate: float, cutoff_hz) -> tuple[torch.Tensor, torch.Tensor]:
    """First-order low/high-pass by the pre-warped bilinear transform (-3 dB at cut-off).

    Args:
        kind: "lowpass" (analog 1/(1 + s/ω0)) or "highpass" ((s/ω0)/(1 + s/ω0)).
        sample_rate: Hz. cutoff_hz: Hz, > 0. A cut-off above ``ONEPOLE_MAX_FRACTION``
            x fs (0.498: 23.9 kHz at 48 kHz) is taken as that: a low-pass there is
            flat within 0.1 dB to 23 kHz, so a low-pass whose range reaches past the
            rate's Nyquist can open fully (the bilinear transform puts every
            low-pass's zero at Nyquist: at 20 kHz it takes 13 dB off 23 kHz and turns
            the phase there by tens of degrees, which a plugin flat to Nyquist does not).

    Returns (b, a) of shape (*cutoff_hz.shape, 2). With K = tan(π·cutoff_hz/fs):

        lowpass : b = [K, K]/(1+K),  a = [1, (K-1)/(K+1)]
        highpass: b = [1, -1]/(1+K), a = [1, (K-1)/(K+1)]

    i.e. y[n] = b0 x[n] + b1 x[n-1] - a1 y[n-1].
    """
    if kind not in ONEPOLE_KINDS:
        raise ValueError(f"unknown one-pole kind {kind!r}; expected one of {ONEPOLE_KINDS}")
    (cutoff_hz,) = as_tensors(cutoff_hz)
    k = torch.tan(math.pi * cutoff_hz.clamp(max=ONEPOLE_MAX_FRACTION * sample_rate) / sample_rate)
    norm = 1.0 + k
    a = torch.stack([torch.ones_like(k), (k - 1.0) / norm], dim=-1)
    if kind == "lowpass":
        b = torch.stack([k / norm, k / norm], dim=-1)
    else:
        b = torch.stack([1.0 / norm, -1.0 / norm], dim=-1)
    return b, a


def blend_coeffs(sample_rate: float, blend, lp_hz, hp_hz) -> tuple[torch.Tensor, torch.Tensor]:
    """The blend tone ``(1 - t) LP1(lp_hz) + t HP1(hp_hz)`` (one pot crossfading a
    first-order low-pass and high-pass: the Big Muff's and the DS-1's Tone) as one
    second-order section: the two one-poles (:func:`onepole_coeffs`) over their common
    denominator, the same filter as the sum of the two.

    Args:
        sample_rate: Hz. blend: ``t`` in [0, 1]. lp_hz, hp_hz: the cut-offs in Hz.
    Returns:
        (b, a) of shape (*broadcast shape, 3), a[..., 0] = 1.

    With equal cut-offs and ``t`` = 0.5 it is a gain of 0.5 (LP1 + HP1 = 1).
    """
    blend, lp_hz, hp_hz = as_tensors(blend, lp_hz, hp_hz)
    bl, al = onepole_coeffs("lowpass", sample_rate, lp_hz)
    bh, ah = onepole_coeffs("highpass", sample_rate, hp_hz)
    t = blend
    u = 1.0 - t
    b = torch.stack([u * bl[..., 0] + t * bh[..., 0],
                     u * (bl[..., 1] + bl[..., 0] * ah[..., 1]) + t * (bh[..., 1] + bh[..., 0] * al[..., 1]),
                     u * bl[..., 1] * ah[..., 1] + t * bh[..., 1] * al[..., 1]], dim=-1)
    a = torch.stack([torch.ones_like(t * al[..., 1]), al[..., 1] + ah[..., 1], al[..., 1] * ah[..., 1]], dim=-1)
    return b, a


def dc_blocker_coeffs(sample_rate: float, cutoff_hz=10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """DC blocker: the bilinear one-pole high-pass of ``onepole_coeffs`` (default 10 Hz).

    Exact zero at DC (b = [1, -1]/(1+K)), -3 dB at ``cutoff_hz``.
    """
    return onepole_coeffs("highpass", sample_rate, cutoff_hz)


def poly_mul(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Product of polynomials in z^-1 (coefficients (..., n) and (..., m) -> (..., n+m-1))."""
    p, q = as_tensors(p, q)
    n, m = p.shape[-1], q.shape[-1]
    batch = _broadcast_shapes(p.shape[:-1], q.shape[:-1])
    out = torch.zeros(*batch, n + m - 1, dtype=p.dtype, device=p.device)
    for i in range(n):
        out = out + torch.nn.functional.pad(p[..., i:i + 1] * q, (i, n - 1 - i))
    return out


# ------------------------------------------------------------------ exact recursion
def _lfilter_rows(b: np.ndarray, a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """lfilter each row of x (N, T) with coefficient rows (Nc, K), Nc in {1, N}."""
    if b.shape[0] == 1:
        return scipy.signal.lfilter(b[0], a[0], x, axis=-1)
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = scipy.signal.lfilter(b[i], a[i], x[i])
    return out


def _lagged_dots(u: np.ndarray, v: np.ndarray, n_lags: int) -> np.ndarray:
    """out[:, k] = Σ_n u[:, n] · v[:, n-k] for k < n_lags (rows (N, T))."""
    t = u.shape[-1]
    out = np.zeros((u.shape[0], n_lags))
    for k in range(min(n_lags, t)):
        out[:, k] = np.einsum("ij,ij->i", u[:, k:], v[:, :t - k])
    return out


class _IIRFilter(torch.autograd.Function):
    """y = lfilter(b, a, x) row by row, float64, with an exact backward pass.

    For A(z)·Y = B(z)·X and an output gradient g, let u = (1/A)ᵀ g, i.e. g filtered by
    1/A(z) backwards in time. Then
        dL/dx      = (B/A)ᵀ g = Bᵀ u,  i.e. Σ_k b[k] · u[n+k],
        dL/db[k]   =  Σ_n u[n] · x[n-k],
        dL/da[k]   = -Σ_n u[n] · y[n-k]   (all k, a[0] included).
    """

    @staticmethod
    def forward(ctx, x, b, a):  # x (N, T), b (Nc, Kb), a (Nc, Ka)
        xd = x.detach().to("cpu", torch.float64).numpy()
        bd = b.detach().to("cpu", torch.float64).numpy()
        ad = a.detach().to("cpu", torch.float64).numpy()
        yd = _lfilter_rows(bd, ad, xd)
        ctx.save_for_backward(x, b, a)
        ctx.arrays = (xd, bd, ad, yd)
        return torch.from_numpy(yd).to(device=x.device, dtype=x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        x, b, a = ctx.saved_tensors
        xd, bd, ad, yd = ctx.arrays
        g = grad_y.detach().to("cpu", torch.float64).numpy()
        grad_x = grad_b = grad_a = None
        if not any(ctx.needs_input_grad[:3]):
            return grad_x, grad_b, grad_a
        # one recursive pass: u = (1/A)ᵀ g; then (B/A)ᵀ g = Bᵀ u, a correlation with b's
        # few taps, instead of a second pass of g through B/A (a biquad per row on 16 x
        # 108,000 samples, forward and backward: 48-52 ms against 60-63 ms)
        ones = np.ones((ad.shape[0], 1))
        u = np.ascontiguousarray(_lfilter_rows(ones, ad, np.ascontiguousarray(g[:, ::-1]))[:, ::-1])
        if ctx.needs_input_grad[0]:
            t = u.shape[-1]
            gx = bd[:, :1] * u
            for k in range(1, min(bd.shape[1], t + 1)):
                gx[:, : t - k] += bd[:, k:k + 1] * u[:, k:]
            grad_x = torch.from_numpy(gx).to(x.device, x.dtype)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            per_coef_rows = bd.shape[0] == xd.shape[0] and bd.shape[0] > 1
            if ctx.needs_input_grad[1]:
                gb = _lagged_dots(u, xd, bd.shape[1])
                if not per_coef_rows:
                    gb = gb.sum(axis=0, keepdims=True)
                grad_b = torch.from_numpy(gb).to(b.device, b.dtype)
            if ctx.needs_input_grad[2]:
                ga = -_lagged_dots(u, yd, ad.shape[1])
                if not per_coef_rows:
                    ga = ga.sum(axis=0, keepdims=True)
                grad_a = torch.from_numpy(ga).to(a.device, a.dtype)
        return grad_x, grad_b, grad_a


def _broadcast_filter_args(x, b, a):
    """Common dtype and broadcast of x (..., T) with coefficients (..., Kb), (..., Ka)."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    if not x.dtype.is_floating_point:
        x = x.to(torch.get_default_dtype())
    b, a = as_tensors(b, a, dtype=None if isinstance(b, torch.Tensor) or isinstance(a, torch.Tensor)
                      else x.dtype, device=x.device)
    b = _coef_batch(b, x)
    a = _coef_batch(a, x)
    batch = _broadcast_shapes(x.shape[:-1], b.shape[:-1], a.shape[:-1])
    return x, b, a, batch


def iir_filter(x: torch.Tensor, b, a) -> torch.Tensor:
    """Exact recursive IIR filter (transposed direct form II, zero initial state).

    Args:
        x: signal, shape (..., T).
        b: numerator, shape (..., Kb); a: denominator, shape (..., Ka). Their batch
            dimensions broadcast against ``x.shape[:-1]`` (see module docstring).
    Returns:
        y of shape (*broadcast batch, T), in x's dtype (computed in float64 whatever the
        dtypes; gradients come back in each input's dtype).

    Definition (after dividing b and a by a[0]; M = max(Kb, Ka) - 1, missing
    coefficients are 0; states s_1..s_M start at 0; accumulation in float64):

        y[n]      = b0·x[n] + s_1[n-1]
        s_i[n]    = b_i·x[n] - a_i·y[n] + s_{i+1}[n-1]     (i = 1..M-1)
        s_M[n]    = b_M·x[n] - a_M·y[n]

    i.e. Σ_k a_k y[n-k] = Σ_k b_k x[n-k]. This is ``scipy.signal.lfilter``, used for the
    forward pass in every case; gradients w.r.t. x, b and a come from the exact adjoint
    recursion (see ``_IIRFilter``), so the result does not depend on requires_grad.
    """
    x, b, a, batch = _broadcast_filter_args(x, b, a)
    t = x.shape[-1]
    coef_batch = _broadcast_shapes(b.shape[:-1], a.shape[:-1])
    if math.prod(coef_batch) == 1:
        b2 = b.reshape(1, b.shape[-1])
        a2 = a.reshape(1, a.shape[-1])
        x2 = x.expand(*batch, t).reshape(-1, t)
    else:
        b2 = b.expand(*batch, b.shape[-1]).reshape(-1, b.shape[-1])
        a2 = a.expand(*batch, a.shape[-1]).reshape(-1, a.shape[-1])
        x2 = x.expand(*batch, t).reshape(-1, t)
    if x2.shape[0] == 0 or t == 0:
        return torch.zeros(*batch, t, dtype=x.dtype, device=x.device)
    y = _IIRFilter.apply(x2, b2, a2)
    return y.reshape(*batch, t)


def iir_filter_loop(x: torch.Tensor, b, a) -> torch.Tensor:
    """The recursion of ``iir_filter`` as a plain per-sample python loop (reference).

    Pure torch, differentiable by autograd, slow: meant for tests on short signals.
    Same definition and broadcasting as ``iir_filter``; computed in the promoted dtype
    of x, b, a and returned in x's dtype.
    """
    x, b, a, batch = _broadcast_filter_args(x, b, a)
    x_dtype = x.dtype
    dtype = torch.promote_types(torch.promote_types(x.dtype, b.dtype), a.dtype)
    x, b, a = x.to(dtype), b.to(dtype), a.to(dtype)
    order = max(b.shape[-1], a.shape[-1]) - 1
    b = torch.nn.functional.pad(b, (0, order + 1 - b.shape[-1]))
    a = torch.nn.functional.pad(a, (0, order + 1 - a.shape[-1]))
    a0 = a[..., :1]
    b = (b / a0).expand(*batch, order + 1)
    a = (a / a0).expand(*batch, order + 1)
    x = x.expand(*batch, x.shape[-1])
    state = [torch.zeros(batch, dtype=dtype, device=x.device) for _ in range(order)]
    out = []
    for n in range(x.shape[-1]):
        xn = x[..., n]
        yn = b[..., 0] * xn + (state[0] if order else 0.0)
        for i in range(1, order + 1):
            nxt = state[i] if i < order else 0.0
            state[i - 1] = b[..., i] * xn - a[..., i] * yn + nxt
        out.append(yn)
    return torch.stack(out, dim=-1).to(x_dtype)


# --------------------------------------------------------------- frequency domain
def _max_pole_radius(a: torch.Tensor) -> float:
    """Largest pole radius over all denominators (..., Ka) (detached, float64)."""
    ad = a.detach().to("cpu", torch.float64).reshape(-1, a.shape[-1]).numpy()
    ad = ad / ad[:, :1]
    order = ad.shape[-1] - 1
    # trailing zero coefficients are poles at z = 0; the companion handles them.
    if order == 0:
        return 0.0
    comp = np.zeros((ad.shape[0], order, order))
    comp[:, 0, :] = -ad[:, 1:]
    if order > 1:
        comp[:, np.arange(1, order), np.arange(order - 1)] = 1.0
    roots = np.linalg.eigvals(comp)
    return float(np.abs(roots).max())


def fft_length(n_samples: int, a, tail_tol: float = FFT_TAIL_TOL) -> int:
    """FFT length used by ``iir_filter_fft`` for a signal of n_samples and denominators a.

    n_fft = next_fast_len(n_samples + L + 16), L = ceil(ln(tail_tol)/ln(r)·(1 + (order-1)/2)),
    r = largest pole radius (the factor covers the n^(m-1)·r^n growth of repeated poles).
    Raises ValueError for unstable filters (r >= 1) or if n_fft > FFT_MAX_LEN.
    """
    (a,) = as_tensors(a)
    r = _max_pole_radius(a)
    order = a.shape[-1] - 1
    if r >= 1.0:
        raise ValueError(f"iir_filter_fft needs a stable filter (largest pole radius {r:.6g})")
    if r <= 1e-300:
        tail = 0
    else:
        tail = math.ceil(math.log(tail_tol) / math.log(r) * (1.0 + 0.5 * max(order - 1, 0)))
    n_fft = scipy.fft.next_fast_len(n_samples + tail + 16, real=True)
    if n_fft > FFT_MAX_LEN:
        raise ValueError(f"iir_filter_fft would need n_fft={n_fft} (pole radius {r:.9f}); "
                         "use iir_filter or pass n_fft")
    return n_fft


def iir_filter_fft(x: torch.Tensor, b, a, n_fft: int | None = None,
                   tail_tol: float = FFT_TAIL_TOL) -> torch.Tensor:
    """The filter of ``iir_filter`` evaluated in the frequency domain (training speed).

    y = irfft( rfft(x, N) · B_N / A_N , N )[..., :T], where B_N, A_N are the N-point
    DFTs of the zero-padded coefficients, i.e. H(e^{j2πk/N}) on the FFT grid. Pure
    torch: differentiable w.r.t. x, b and a by autograd, works on any device, computed
    in the promoted dtype of x, b, a and returned in x's dtype.

    Error bound: with h the exact impulse response, the FFT result is the circular
    convolution with the time-aliased h, so for 0 <= n < T

        |y_fft[n] - y[n]| <= max|x| · Σ_{j >= N - T + 1} |h[j]|.

    With N from ``fft_length`` (default) the slowest pole has decayed by ``tail_tol``
    (1e-12) over the padding, so the error is ~1e-12 relative to the response's scale
    in float64 (float32: FFT round-off, ~1e-6 relative). Requires a stable filter.

    Args:
        x: (..., T); b: (..., Kb); a: (..., Ka) (batch dims broadcast as in iir_filter).
        n_fft: FFT length N >= T (default: ``fft_length(T, a, tail_tol)``).
    """
    x, b, a, batch = _broadcast_filter_args(x, b, a)
    x_dtype = x.dtype
    dtype = torch.promote_types(torch.promote_types(x.dtype, b.dtype), a.dtype)
    x, b, a = x.to(dtype), b.to(dtype), a.to(dtype)
    t = x.shape[-1]
    if n_fft is None:
        n_fft = fft_length(t, a, tail_tol)
    if n_fft < t:
        raise ValueError(f"n_fft={n_fft} is shorter than the signal ({t})")
    xf = torch.fft.rfft(x, n=n_fft)
    h = torch.fft.rfft(b, n=n_fft) / torch.fft.rfft(a, n=n_fft)
    y = torch.fft.irfft(xf * h, n=n_fft)[..., :t]
    return y.expand(*batch, t).to(x_dtype)


# --------------------------------------------------------------- cascades, response
def sos_filter(x: torch.Tensor, sos: torch.Tensor, method: str = "recursive") -> torch.Tensor:
    """Cascade of biquads. sos: (..., S, 6) rows [b0, b1, b2, a0, a1, a2] (scipy layout).

    Definition: the sections applied in order, each with ``iir_filter`` (method
    "recursive", exact) or the whole cascade's product response with ``iir_filter_fft``
    (method "fft").
    """
    (sos,) = as_tensors(sos)
    if method == "fft":
        b = sos[..., 0, :3]
        a = sos[..., 0, 3:]
        for i in range(1, sos.shape[-2]):
            b = poly_mul(b, sos[..., i, :3])
            a = poly_mul(a, sos[..., i, 3:])
        return iir_filter_fft(x, b, a)
    if method != "recursive":
        raise ValueError(f"unknown method {method!r}")
    y = x
    for i in range(sos.shape[-2]):
        y = iir_filter(y, sos[..., i, :3], sos[..., i, 3:])
    return y


def sos_filter_fft(x: torch.Tensor, sos: torch.Tensor) -> torch.Tensor:
    """``sos_filter(x, sos, method="fft")``."""
    return sos_filter(x, sos, method="fft")


def freq_response(b, a, freqs_hz, sample_rate: float) -> torch.Tensor:
    """Complex frequency response H(e^{jω}) = B(e^{-jω}) / A(e^{-jω}), ω = 2π f / fs.

    Args:
        b: (..., Kb), a: (..., Ka); freqs_hz: (F,) in Hz; sample_rate: Hz.
    Returns:
        complex tensor of shape (*broadcast batch of b and a, F).
    """
    b, a, freqs_hz = as_tensors(b, a, freqs_hz)
    w = 2.0 * math.pi * freqs_hz / sample_rate

    def poly(c: torch.Tensor) -> torch.Tensor:
        k = torch.arange(c.shape[-1], dtype=c.dtype, device=c.device)
        zk = torch.polar(torch.ones_like(w[..., None] * k), -w[..., None] * k)  # (F, K)
        return (c[..., None, :].to(zk.dtype) * zk).sum(-1)

    return poly(b) / poly(a)


# ------------------------------------------------------------ signal-level blocks
def _run(x, b, a, method: str) -> torch.Tensor:
    if method == "recursive":
        return iir_filter(x, b, a)
    if method == "fft":
        return iir_filter_fft(x, b, a)
    raise ValueError(f"unknown method {method!r}; expected 'recursive' or 'fft'")


def biquad(x: torch.Tensor, sample_rate: float, kind: str, cutoff_hz, q=0.7071, gain_db=0.0,
           method: str = "recursive") -> torch.Tensor:
    """Filter x (..., T) with ``biquad_coeffs(kind, sample_rate, cutoff_hz, q, gain_db)``."""
    b, a = biquad_coeffs(kind, sample_rate, *as_tensors(cutoff_hz, q, gain_db,
                                                        dtype=_param_dtype(x, cutoff_hz, q, gain_db)))
    return _run(x, b, a, method)


def onepole(x: torch.Tensor, sample_rate: float, kind: str, cutoff_hz,
            method: str = "recursive") -> torch.Tensor:
    """Filter x (..., T) with ``onepole_coeffs(kind, sample_rate, cutoff_hz)``."""
    (cutoff_hz,) = as_tensors(cutoff_hz, dtype=_param_dtype(x, cutoff_hz))
    b, a = onepole_coeffs(kind, sample_rate, cutoff_hz)
    return _run(x, b, a, method)


def dc_blocker(x: torch.Tensor, sample_rate: float, cutoff_hz=10.0,
               method: str = "recursive") -> torch.Tensor:
    """Filter x (..., T) with ``dc_blocker_coeffs(sample_rate, cutoff_hz)``."""
    return onepole(x, sample_rate, "highpass", cutoff_hz, method=method)


def _param_dtype(x, *params) -> torch.dtype:
    """dtype for coefficient design in the signal-level helpers.

    The promoted dtype of the tensor parameters; float64 when all are python numbers
    (direct-form coefficients of low-frequency poles need it, see module docstring).
    """
    tensors = [p for p in params if isinstance(p, torch.Tensor) and p.dtype.is_floating_point]
    if not tensors:
        return torch.float64
    dtype = tensors[0].dtype
    for p in tensors[1:]:
        dtype = torch.promote_types(dtype, p.dtype)
    return dtype


# ------------------------------------------------------------------- FIR (output filter)
#: half-width of :func:`resample_fir`'s interpolation kernel, in samples of the lower
#: of the two rates
FIR_RESAMPLE_HALF_WIDTH = 16


def fir_filter(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Causal FIR: ``y[n] = sum_k taps[k] x[n - k]`` (zero initial state), one set of
    taps for every row of ``x`` ``(..., T)``. Evaluated as an FFT convolution (float64),
    which equals the direct sum to rounding (``tests/test_filters.py``); differentiable
    w.r.t. ``x`` and ``taps``. Returns x's dtype."""
    taps = torch.as_tensor(taps, dtype=torch.float64, device=x.device)
    T, N = x.shape[-1], taps.shape[-1]
    n = scipy.fft.next_fast_len(T + N - 1, real=True)
    y = torch.fft.irfft(torch.fft.rfft(x.double(), n=n) * torch.fft.rfft(taps, n=n), n=n)[..., :T]
    return y.to(x.dtype)


def fir_least_squares(x: np.ndarray, y: np.ndarray, n_taps: int, weights=None) -> np.ndarray:
    """The causal FIR ``h`` (``n_taps``) minimising ``sum_r w_r ||y_r - h * x_r||^2``
    over rows ``r`` of ``x``, ``y`` ``(R, T)`` (each row filtered from zero state,
    compared over its whole length): the normal equations, Toeplitz in the rows'
    summed autocorrelation (exactly so for signals that start and end in silence;
    otherwise the usual autocorrelation-method approximation), solved by Levinson
    recursion. A tiny diagonal load (1e-9 of the energy) keeps it solvable on a
    band-limited signal."""
    from scipy.linalg import solve_toeplitz

    x = np.atleast_2d(np.asarray(x, np.float64))
    y = np.atleast_2d(np.asarray(y, np.float64))
    w = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64)
    T = x.shape[-1]
    n = scipy.fft.next_fast_len(T + n_taps, real=True)
    X = np.fft.rfft(x, n)
    Y = np.fft.rfft(y, n)
    r = (w[:, None] * np.fft.irfft(X * np.conj(X), n)[:, :n_taps]).sum(0)
    p = (w[:, None] * np.fft.irfft(Y * np.conj(X), n)[:, :n_taps]).sum(0)
    r[0] += 1e-9 * r[0] + 1e-30
    return solve_toeplitz(r, p)


def resample_fir(taps, from_rate: float, to_rate: float) -> np.ndarray:
    """FIR taps designed at ``from_rate`` (Hz) carried to ``to_rate``: the same
    frequency response below both Nyquists, ``ceil(N to/from)`` taps.

    Definition (C++ computes the same in ``unit_engine.h`` ``dsp::resampleFir``), with
    ``r = to_rate / from_rate``, ``c = min(1, r)``, ``W = FIR_RESAMPLE_HALF_WIDTH / c``::

        h'[n] = (c / r) sum_k h[k] sinc(c (n / r - k)) w((n / r - k) / W)
        sinc(u) = sin(pi u) / (pi u),  w(u) = (1 + cos(pi u)) / 2 for |u| < 1, else 0

    At ``r`` = 1 it returns the taps unchanged (to rounding)."""
    h = np.asarray(taps, np.float64)
    if from_rate == to_rate:
        return h.copy()
    r = float(to_rate) / float(from_rate)
    c = min(1.0, r)
    W = FIR_RESAMPLE_HALF_WIDTH / c
    m = int(math.ceil(len(h) * r))
    out = np.zeros(m)
    k = np.arange(len(h))
    for i in range(m):
        u = i / r - k
        win = np.where(np.abs(u) < W, 0.5 * (1.0 + np.cos(np.pi * u / W)), 0.0)
        out[i] = (c / r) * np.sum(h * np.sinc(c * u) * win)
    return out

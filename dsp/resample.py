"""Sample-rate conversion of captured audio to the model rate (not differentiable).

Uses ``scipy.signal.resample_poly`` (polyphase FIR, Kaiser window β = 5.0, the scipy
default) along the last axis. Works on numpy arrays and on torch tensors (returned as
tensors of the same dtype and device); this module never imports torch itself.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import scipy.signal

__all__ = ["resample", "resample_ratio"]

#: Largest numerator/denominator accepted for the rational rate ratio.
MAX_RATIO_TERM = 10_000


def resample_ratio(from_hz: float, to_hz: float) -> tuple[int, int]:
    """(up, down) with to_hz/from_hz = up/down in lowest terms (e.g. 44.1k->48k: 160, 147)."""
    if from_hz <= 0 or to_hz <= 0:
        raise ValueError("sample rates must be positive")
    ratio = Fraction(to_hz).limit_denominator(MAX_RATIO_TERM * 100) / Fraction(
        from_hz).limit_denominator(MAX_RATIO_TERM * 100)
    ratio = ratio.limit_denominator(MAX_RATIO_TERM)
    return ratio.numerator, ratio.denominator


def resample(x, from_hz: float, to_hz: float):
    """Resample x (..., T) from ``from_hz`` to ``to_hz`` (Hz) along the last axis.

    Output length ceil(T·up/down) (scipy's resample_poly); equal rates return x
    unchanged. Computed in float64, returned in x's floating dtype (float32 for
    integer input). numpy in -> numpy out; torch in -> torch out (no gradient).
    """
    up, down = resample_ratio(from_hz, to_hz)
    if up == down:
        return x
    is_torch = type(x).__module__.split(".")[0] == "torch"
    if is_torch:
        device, dtype = x.device, x.dtype
        arr = x.detach().cpu().numpy()
    else:
        arr = np.asarray(x)
        dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float32)
    y = scipy.signal.resample_poly(arr.astype(np.float64), up, down, axis=-1)
    if is_torch:
        import torch  # local: only when the caller already uses torch

        out_dtype = dtype if dtype.is_floating_point else torch.get_default_dtype()
        return torch.from_numpy(np.ascontiguousarray(y)).to(device=device, dtype=out_dtype)
    return y.astype(dtype)

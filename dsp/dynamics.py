"""Level detection and supply-sag gain.

Signals have shape (..., time); parameters broadcast against the batch dimensions as
described in ``dsp.filters``. The RMS envelope is a linear filter of x², so it runs
through the same exact recursive (``iir_filter``) or FFT (``iir_filter_fft``) paths as
the other filters and is fast to train.
"""
from __future__ import annotations

import torch

from dsp.filters import align_param, as_tensors, iir_filter, iir_filter_fft

__all__ = [
    "ENVELOPE_EPS",
    "envelope_coeffs",
    "envelope_rms",
    "sag_gain",
    "sag",
]

#: Added to the mean square before the square root (amplitude² units): keeps the
#: gradient of sqrt finite in silence. RMS of silence = 1e-6 (-120 dBFS).
ENVELOPE_EPS = 1e-12


def envelope_coeffs(sample_rate: float, time_s) -> tuple[torch.Tensor, torch.Tensor]:
    """One-pole smoother coefficients: b = [1 − α], a = [1, −α], α = exp(−1/(time_s·fs)).

    time_s is the time constant in seconds (the step response reaches 1 − 1/e after
    time_s). Shapes (*time_s.shape, 1) and (*time_s.shape, 2).
    """
    (time_s,) = as_tensors(time_s)
    alpha = torch.exp(-1.0 / (time_s * sample_rate))
    b = (1.0 - alpha).unsqueeze(-1)
    a = torch.stack([torch.ones_like(alpha), -alpha], dim=-1)
    return b, a


def envelope_rms(x: torch.Tensor, sample_rate: float, time_s, eps: float = ENVELOPE_EPS,
                 method: str = "recursive") -> torch.Tensor:
    """Running RMS level of x (..., T) with a one-pole smoother on x².

    Definition (zero initial state, float64 accumulation on the recursive path):

        α    = exp(−1 / (time_s · sample_rate))
        e[n] = (1 − α)·x[n]² + α·e[n−1],   e[−1] = 0
        env[n] = sqrt(max(e[n], 0) + eps)

    Args:
        x: (..., T). sample_rate: Hz. time_s: time constant in seconds (> 0), tensor
            broadcast against x's batch dims. eps: see ENVELOPE_EPS.
        method: "recursive" (exact ``iir_filter``) or "fft" (``iir_filter_fft``).
    Returns:
        env, shape (*batch, T), units of x, x's dtype.
    """
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    if not (isinstance(time_s, torch.Tensor) and time_s.dtype.is_floating_point):
        (time_s,) = as_tensors(time_s, dtype=torch.float64)  # numbers: design in float64
    b, a = envelope_coeffs(sample_rate, time_s)
    sq = x * x
    if method == "recursive":
        e = iir_filter(sq, b, a)
    elif method == "fft":
        e = iir_filter_fft(sq, b, a)
    else:
        raise ValueError(f"unknown method {method!r}; expected 'recursive' or 'fft'")
    return torch.sqrt(torch.clamp(e, min=0.0) + eps)


def sag_gain(envelope: torch.Tensor, depth, threshold, knee=0.05) -> torch.Tensor:
    """Smooth gain reduction in (0, 1] driven by an envelope (power-supply sag).

    Definition (θ = threshold, k = knee, all in envelope units; depth >= 0 in 1/units):

        on(u)  = 0.5·(u + sqrt(u² + k² + 1e-24))         (smooth max(u, 0))
        over   = on(env − θ) − on(−θ)                    (0 at env = 0, increasing)
        g      = 1 / (1 + depth · over)

    g = 1 at zero envelope, decreases monotonically as the envelope grows, mostly above
    the threshold; for a large envelope env·g tends to 1/depth (strong compression).

    Args:
        envelope: (..., T), >= 0 (e.g. ``envelope_rms``). depth, threshold, knee:
            tensors broadcast against the envelope's batch dims.
    Returns:
        gain, same shape as envelope.
    """
    if not isinstance(envelope, torch.Tensor):
        envelope = torch.as_tensor(envelope, dtype=torch.get_default_dtype())
    depth = align_param(depth, envelope)
    threshold = align_param(threshold, envelope)
    knee2 = align_param(knee, envelope) ** 2 + 1e-24   # finite gradients when knee = 0

    def on(u):
        return 0.5 * (u + torch.sqrt(u * u + knee2))

    over = on(envelope - threshold) - on(torch.zeros_like(envelope) - threshold)
    return 1.0 / (1.0 + depth * over)


def sag(x: torch.Tensor, sample_rate: float, time_s, depth, threshold, knee=0.05,
        method: str = "recursive") -> torch.Tensor:
    """x · sag_gain(envelope_rms(x, sample_rate, time_s), depth, threshold, knee)."""
    env = envelope_rms(x, sample_rate, time_s, method=method)
    return x * sag_gain(env, depth, threshold, knee)


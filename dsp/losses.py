"""Training losses and the reported error-to-signal ratio.

All functions take ``(..., time)`` tensors and return one value per leading item
(``(...,)``) so callers can weight captures equally (never pool audio across captures).

References:
    Wright & Välimäki, "Perceptual loss function for neural modelling of audio
    systems", ICASSP 2020 (ESR with pre-emphasis 1 - 0.85 z^-1).
    Yamamoto et al., "Parallel WaveGAN", ICASSP 2020 (multi-resolution STFT loss).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["esr", "pre_emphasis", "esr_pre", "mr_stft", "training_loss", "esr_numpy", "verdict"]

EPS = 1e-10


def esr(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Error-to-signal ratio ``sum((y - y_hat)^2) / sum(y^2)`` over the last axis."""
    return (y - y_hat).pow(2).sum(-1) / (y.pow(2).sum(-1) + EPS)


def pre_emphasis(x: torch.Tensor, coeff: float = 0.85) -> torch.Tensor:
    """First-order pre-emphasis ``x[n] - coeff * x[n-1]`` (first sample kept)."""
    return torch.cat([x[..., :1], x[..., 1:] - coeff * x[..., :-1]], -1)


def esr_pre(y_hat: torch.Tensor, y: torch.Tensor, coeff: float = 0.85) -> torch.Tensor:
    """ESR of the pre-emphasised signals (weights highs, as NAM's training loss)."""
    return esr(pre_emphasis(y_hat, coeff), pre_emphasis(y, coeff))


def mr_stft(y_hat: torch.Tensor, y: torch.Tensor, fft_sizes=(256, 1024, 2048)) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, mean over
    resolutions (Hann window, hop = size / 4)."""
    lead = y.shape[:-1]
    a, b = y_hat.reshape(-1, y.shape[-1]), y.reshape(-1, y.shape[-1])
    total = 0.0
    for n in fft_sizes:
        w = torch.hann_window(n, dtype=y.dtype)
        A = torch.stft(a, n, n // 4, window=w, return_complex=True).abs()
        Bm = torch.stft(b, n, n // 4, window=w, return_complex=True).abs()
        sc = (Bm - A).pow(2).sum((-2, -1)).sqrt() / (Bm.pow(2).sum((-2, -1)).sqrt() + EPS)
        lm = (torch.log(Bm + 1e-5) - torch.log(A + 1e-5)).abs().mean((-2, -1))
        total = total + sc + lm
    return (total / len(fft_sizes)).reshape(lead)


def training_loss(y_hat: torch.Tensor, y: torch.Tensor, stft_weight: float = 0.0) -> torch.Tensor:
    """Per-item training loss: ESR + pre-emphasised ESR (+ ``stft_weight`` * MR-STFT)."""
    loss = esr(y_hat, y) + esr_pre(y_hat, y)
    if stft_weight > 0:
        loss = loss + stft_weight * mr_stft(y_hat, y)
    return loss


def esr_numpy(y_hat: np.ndarray, y: np.ndarray) -> float:
    """ESR in float64 (no pre-emphasis), as NAM reports it."""
    y = np.asarray(y, dtype=np.float64)
    return float(np.sum((y - np.asarray(y_hat, dtype=np.float64)) ** 2) / (np.sum(y ** 2) + EPS))


def verdict(e: float) -> str:
    """NAM's verdicts: < 0.01 great, < 0.035 not bad, < 0.1 may sound OK, else poor."""
    if e < 0.01:
        return "great"
    if e < 0.035:
        return "not bad"
    if e < 0.1:
        return "may sound OK"
    return "poor"

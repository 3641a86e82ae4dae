"""dsp.dynamics: RMS envelope (both paths) and sag gain."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dsp import dynamics as D

SAMPLE_RATES = (44100, 48000, 96000)
LOOP_ATOL = 1e-12           # vs a python loop of the documented recursion
FFT_REL_TOL = 1e-6
RMS_RTOL = 1e-3             # steady-state RMS of a sine vs A/√2 (ripple at 1 kHz, 50 ms)
GRAD_EPS, GRAD_ATOL = 1e-6, 1e-6


def t64(v):
    return torch.tensor(v, dtype=torch.float64)


def envelope_loop(x: np.ndarray, fs: float, time_s: float, eps=D.ENVELOPE_EPS) -> np.ndarray:
    alpha = math.exp(-1.0 / (time_s * fs))
    e, out = 0.0, np.empty_like(x)
    for n, v in enumerate(x):
        e = (1 - alpha) * v * v + alpha * e
        out[n] = math.sqrt(e + eps)
    return out


def test_envelope_matches_documented_recursion():
    x = np.random.default_rng(0).standard_normal(2000)
    for fs in SAMPLE_RATES:
        env = D.envelope_rms(torch.from_numpy(x), fs, 0.002).numpy()
        np.testing.assert_allclose(env, envelope_loop(x, fs, 0.002), atol=LOOP_ATOL)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_envelope_of_a_sine_and_time_constant(fs):
    t = torch.arange(fs // 2, dtype=torch.float64) / fs
    sine = 0.6 * torch.sin(2 * torch.pi * 1000.0 * t)
    env = D.envelope_rms(sine, fs, 0.05)
    assert float(env[-1]) == pytest.approx(0.6 / math.sqrt(2), rel=RMS_RTOL)
    # step in x² of 1: e reaches 1 - 1/e after time_s
    step = torch.ones(fs // 10, dtype=torch.float64)
    e = D.envelope_rms(step, fs, 0.01) ** 2
    assert float(e[round(0.01 * fs) - 1]) == pytest.approx(1 - math.exp(-1), abs=1e-4)


def test_envelope_fft_path_batch_and_params():
    x = torch.randn(3, 5000, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    time_s = t64([0.001, 0.01, 0.05])
    for shape in [(3,), (3, 1)]:
        rec = D.envelope_rms(x, 48000, time_s.reshape(shape))
        fft = D.envelope_rms(x, 48000, time_s.reshape(shape), method="fft")
        assert rec.shape == fft.shape == (3, 5000)
        assert float((rec - fft).norm() / rec.norm()) < FFT_REL_TOL
        for i in range(3):
            torch.testing.assert_close(rec[i], D.envelope_rms(x[i], 48000, time_s[i]), rtol=0, atol=1e-13)
    env32 = D.envelope_rms(x.float(), 48000, 0.01)
    assert env32.dtype == torch.float32
    assert float((env32.double() - D.envelope_rms(x, 48000, 0.01)).abs().max()) < 1e-5


def test_envelope_gradcheck():
    x = torch.randn(2, 20, dtype=torch.float64, requires_grad=True)
    time_s = t64([0.3, 1.0]).requires_grad_()      # in ms below: a well-scaled gradcheck

    for method in ("recursive", "fft"):
        def fn(x, time_ms, method=method):
            return D.envelope_rms(x, 48000, time_ms / 1000.0, method=method)
        assert torch.autograd.gradcheck(fn, (x, time_s), eps=GRAD_EPS, atol=GRAD_ATOL)
    silent = torch.zeros(1, 10, dtype=torch.float64, requires_grad=True)
    D.envelope_rms(silent, 48000, 0.01).sum().backward()
    assert torch.all(torch.isfinite(silent.grad))


def test_sag_gain():
    env = torch.linspace(0, 2, 201, dtype=torch.float64)
    g = D.sag_gain(env, 2.0, 0.3)
    assert float(g[0]) == 1.0
    assert torch.all(g > 0) and torch.all(g <= 1)
    assert torch.all(torch.diff(g) < 0)                               # decreasing
    assert float(g[10]) > 0.95 and float(g[-1]) < 0.4                 # mostly above threshold
    assert torch.all(D.sag_gain(env, 0.0, 0.3) == 1)                 # depth 0: no sag
    # formula
    on = lambda u: 0.5 * (u + np.sqrt(u * u + 0.05**2 + 1e-24))               # noqa: E731
    e = env.numpy()
    np.testing.assert_allclose(g.numpy(), 1 / (1 + 2.0 * (on(e - 0.3) - on(-0.3))), rtol=1e-12)
    args = (t64([0.0, 0.2, 0.5, 1.0]).requires_grad_(), t64(1.5).requires_grad_(),
            t64(0.3).requires_grad_(), t64(0.1).requires_grad_())
    assert torch.autograd.gradcheck(D.sag_gain, args, eps=GRAD_EPS, atol=GRAD_ATOL)
    # knee 0 exactly at the threshold: finite gradients
    e0, k0 = t64([0.0, 0.3]).requires_grad_(), t64(0.0).requires_grad_()
    D.sag_gain(e0, 1.0, 0.3, k0).sum().backward()
    assert torch.all(torch.isfinite(e0.grad)) and torch.isfinite(k0.grad)
    # batched parameters, (B,) and (B, 1)
    envb = env.expand(2, -1)
    depth = t64([0.5, 3.0])
    for shape in [(2,), (2, 1)]:
        gb = D.sag_gain(envb, depth.reshape(shape), 0.3)
        torch.testing.assert_close(gb[1], D.sag_gain(env, depth[1], 0.3))


def test_sag_compresses_loud_parts():
    fs = 48000
    t = torch.arange(fs // 4, dtype=torch.float64) / fs
    x = torch.sin(2 * torch.pi * 220 * t) * torch.where(t < 0.125, 0.1, 1.0)
    y = D.sag(x, fs, 0.01, depth=2.0, threshold=0.2)
    quiet = float(y[1000:5000].abs().max() / x[1000:5000].abs().max())
    loud = float(y[-4000:].abs().max() / x[-4000:].abs().max())
    assert quiet > 0.97 and loud < 0.7

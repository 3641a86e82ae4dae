"""dsp.shapers: formulas, bounds, asymmetry, crossover, gradients, oversampling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dsp import shapers as S

GRAD_EPS, GRAD_ATOL = 1e-6, 1e-6
FORMULA_RTOL = 1e-12         # float64 vs the docstring formula written out in numpy
FLOAT32_ATOL = 1e-6
ALIAS_GAIN_2X_DB = 8.0       # 2x oversampling must cut aliasing energy by at least this
ALIAS_GAIN_4X_DB = 20.0      # ... and 4x by at least this (measured: ~11 dB and ~25 dB)
PASSBAND_ATOL = 1e-3         # up->down round trip of a 1 and a 15 kHz sine
# oversampling_fir's response (its docstring), measured from the taps: L = 2, 3, 4 give
# ripple within -0.0007/+0.0014 dB up to 0.75 x Nyquist, stopbands -76.8, -77.8, -78.1 dB
FIR_PASSBAND_EDGE = 0.75     # x the base rate's Nyquist frequency (18 kHz at 48 kHz)
FIR_RIPPLE_DB = 0.0015       # |gain| in dB, 0 .. FIR_PASSBAND_EDGE
FIR_STOPBAND_EDGE = 1.25     # x Nyquist: images of / aliases into the passband start here
FIR_STOPBAND_DB = -76.0      # the largest gain from FIR_STOPBAND_EDGE to L x Nyquist


def t64(v):
    return torch.tensor(v, dtype=torch.float64)


def grid(lo=-6.0, hi=6.0, n=241):
    return torch.linspace(lo, hi, n, dtype=torch.float64)


def slope_at_zero(fn, *args):
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    fn(x, *args).sum().backward()
    return float(x.grad)


# ----------------------------------------------------------------- asym_soft_clip
def test_asym_soft_clip_formula_and_shape():
    x = grid()
    for knee in (0.5, 1.0, 3.0):
        y = S.asym_soft_clip(x, 0.8, 0.3, knee).numpy()
        xn = x.numpy()
        lvl = np.where(xn >= 0, 0.8, 0.3)
        ref = xn / (1 + np.abs(xn / lvl) ** (2 * knee)) ** (1 / (2 * knee))
        np.testing.assert_allclose(y, ref, rtol=FORMULA_RTOL, atol=1e-15)
    y = S.asym_soft_clip(grid(-1e6, 1e6, 11), 0.8, 0.3)
    assert float(y.max()) < 0.8 and float(y.max()) > 0.8 - 1e-6        # positive ceiling
    assert float(y.min()) > -0.3 and float(y.min()) < -0.3 + 1e-6      # negative ceiling
    assert float(S.asym_soft_clip(t64(0.0), 0.8, 0.3)) == 0.0
    assert slope_at_zero(S.asym_soft_clip, 0.8, 0.3) == pytest.approx(1.0, abs=1e-12)
    assert torch.all(torch.diff(S.asym_soft_clip(grid(), 0.8, 0.3)) > 0)  # monotonic
    # harder knee -> closer to a hard clip
    x = t64([0.8])
    soft, hard = S.asym_soft_clip(x, 1.0, 1.0, 1.0), S.asym_soft_clip(x, 1.0, 1.0, 8.0)
    assert float(hard) > float(soft) and float(hard) == pytest.approx(0.8, abs=2e-3)


def test_asym_soft_clip_no_overflow_float32():
    x = torch.tensor([-3e38, -1e20, -1.0, 0.0, 1e-30, 1.0, 1e20, 3e38])
    y = S.asym_soft_clip(x, 0.5, 0.25, 2.0)
    assert y.dtype == torch.float32 and torch.all(torch.isfinite(y))
    assert float(y[-1]) == pytest.approx(0.5) and float(y[0]) == pytest.approx(-0.25)
    ref = S.asym_soft_clip(x.double(), 0.5, 0.25, 2.0)
    assert float((y.double() - ref).abs().max()) < FLOAT32_ATOL


def test_asym_soft_clip_gradcheck_including_zero():
    x = t64([-2.0, -0.3, 0.0, 0.2, 1.5]).requires_grad_()
    args = (x, t64(0.7).requires_grad_(), t64(0.4).requires_grad_(), t64(1.3).requires_grad_())
    assert torch.autograd.gradcheck(S.asym_soft_clip, args, eps=GRAD_EPS, atol=GRAD_ATOL)
    y = S.asym_soft_clip(*args)
    y.sum().backward()
    for a in args:
        assert torch.all(torch.isfinite(a.grad))


# ----------------------------------------------------------------------- hard_clip
def test_hard_clip():
    x = grid()
    y = S.hard_clip(x, 0.5, 0.05).numpy()
    xn = x.numpy()
    ref = 0.5 * (np.sqrt((xn + 0.5) ** 2 + 0.05**2) - np.sqrt((xn - 0.5) ** 2 + 0.05**2))
    np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-12)
    assert np.all(np.abs(y) < 0.5)
    np.testing.assert_allclose(y, -y[::-1], atol=1e-15)                     # odd
    exact = S.hard_clip(x, 0.5, 0.0)
    torch.testing.assert_close(exact, x.clamp(-0.5, 0.5), rtol=0, atol=1e-11)
    assert slope_at_zero(S.hard_clip, 0.5, 0.05) == pytest.approx(0.5 / np.hypot(0.5, 0.05))
    big = S.hard_clip(t64([1e300, -1e300]), 0.5, 0.05)                       # no overflow
    torch.testing.assert_close(big, t64([0.5, -0.5]))
    big32 = S.hard_clip(torch.tensor([1e30, -3e38]), 0.5, 0.05)
    torch.testing.assert_close(big32, torch.tensor([0.5, -0.5]))
    args = (t64([-1.0, -0.5, 0.0, 0.49, 2.0]).requires_grad_(), t64(0.5).requires_grad_(),
            t64(0.1).requires_grad_())
    assert torch.autograd.gradcheck(S.hard_clip, args, eps=GRAD_EPS, atol=GRAD_ATOL)


def test_zero_smoothness_keeps_gradients_finite():
    """Corner parameters at exactly 0, evaluated exactly at the corners."""
    for fn, corner_args in [(S.hard_clip, (t64(0.5), t64(0.0))),
                            (S.push_pull, (t64(0.0), t64(0.0), t64(1.0))),
                            (S.push_pull, (t64(-0.5), t64(0.0), t64(1.0)))]:
        x = t64([-0.5, 0.0, 0.5]).requires_grad_()
        params = [p.clone().requires_grad_() for p in corner_args]
        fn(x, *params).sum().backward()
        for v in [x, *params]:
            assert torch.all(torch.isfinite(v.grad)), fn


# ---------------------------------------------------------------------- tube_stage
def test_tube_stage():
    x = grid(-3, 3, 121)
    y = S.tube_stage(x, 0.3, 1.0, 0.6)
    assert float(S.tube_stage(t64(0.0), 0.3, 1.0, 0.6)) == 0.0
    ref = S.asym_soft_clip(x + 0.3, 1.0, 0.6) - S.asym_soft_clip(t64(0.3), 1.0, 0.6)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-15)
    # bias moves the operating point: the positive half now clips earlier than the negative
    assert float(y.max()) == pytest.approx(1.0 - float(S.asym_soft_clip(t64(0.3), 1.0, 0.6)), abs=0.05)
    # a sine gets even harmonics (asymmetry); with zero bias and equal levels it does not
    n = 4096
    sine = torch.sin(2 * torch.pi * 8 * torch.arange(n, dtype=torch.float64) / n) * 2.0
    spec = torch.fft.rfft(S.tube_stage(sine, 0.3, 1.0, 0.6)).abs()
    spec0 = torch.fft.rfft(S.tube_stage(sine, 0.0, 1.0, 1.0)).abs()
    assert float(spec[16] / spec[8]) > 0.01 and float(spec0[16] / spec0[8]) < 1e-10
    args = (t64([-1.0, 0.0, 0.4]).requires_grad_(), t64(0.2).requires_grad_(),
            t64(0.9).requires_grad_(), t64(0.5).requires_grad_())
    assert torch.autograd.gradcheck(S.tube_stage, args, eps=GRAD_EPS, atol=GRAD_ATOL)


# ----------------------------------------------------------------------- push_pull
def small_signal_gain(bias, crossover, level=1.0):
    return slope_at_zero(S.push_pull, bias, crossover, level)


def test_push_pull_crossover_dead_zone_when_cold():
    hot, cold = small_signal_gain(0.3, 0.02), small_signal_gain(-0.2, 0.02)
    assert hot > 0.9                      # class AB, both halves conduct: unit gain
    assert cold < 0.01                    # dead zone around zero
    assert small_signal_gain(0.0, 0.02) == pytest.approx(0.5, abs=1e-3)   # class B edge
    # inside the dead zone almost nothing passes, outside the signal comes back
    x = t64([0.05, 0.1, 0.15, 0.4, 0.6])
    y = S.push_pull(x, -0.2, 0.02, 1.0)
    assert torch.all(y[:3].abs() < 0.01) and float(y[-1]) > 0.15   # 0.5·(0.6 − 0.2)
    # a softer crossover (larger knee) lets more through in the notch
    assert small_signal_gain(-0.2, 0.2) > 10 * small_signal_gain(-0.2, 0.02)


def test_push_pull_symmetry_ceiling_and_imbalance():
    x = grid(-50, 50, 401)
    y = S.push_pull(x, 0.1, 0.05, 0.8)
    torch.testing.assert_close(y, -y.flip(-1), rtol=0, atol=1e-14)          # balanced: odd
    assert float(S.push_pull(t64(0.0), -0.3, 0.05, 0.8)) == 0.0
    assert float(y.max()) < 0.8 and float(y.max()) > 0.75                   # ceiling = level
    yi = S.push_pull(x, 0.1, 0.05, 0.8, 0.25)
    assert float(S.push_pull(t64(0.0), 0.1, 0.05, 0.8, 0.25).abs()) < 1e-15
    assert float(yi.max()) > 0.9 and float(-yi.min()) < 0.65                # asymmetric
    args = (t64([-1.0, -0.1, 0.0, 0.05, 0.7]).requires_grad_(), t64(-0.1).requires_grad_(),
            t64(0.05).requires_grad_(), t64(0.8).requires_grad_(), t64(0.1).requires_grad_())
    assert torch.autograd.gradcheck(S.push_pull, args, eps=GRAD_EPS, atol=GRAD_ATOL)


def test_table_shaper_interpolates_like_numpy_and_holds_its_ends():
    """Against numpy.interp (an independent linear interpolation), beyond the grid the
    end values, and a kink at the origin survives (the smooth clippers cannot make one)."""
    g = torch.Generator().manual_seed(3)
    values = torch.randn(9, generator=g, dtype=torch.float64)
    x = torch.linspace(-5.0, 5.0, 2001, dtype=torch.float64)
    y = S.table_shaper(x, values, 2.0)
    ref = np.interp(x.numpy(), np.linspace(-2.0, 2.0, 9), values.numpy())
    np.testing.assert_allclose(y.numpy(), ref, rtol=0, atol=1e-12)
    assert float(y[0]) == float(values[0]) and float(y[-1]) == float(values[-1])
    # |x| with a table: slope -1 left of 0, +1 right of it, exactly
    v = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64).abs()
    d = 1e-6
    left = (S.table_shaper(torch.tensor([0.0], dtype=torch.float64), v, 2.0)
            - S.table_shaper(torch.tensor([-d], dtype=torch.float64), v, 2.0)) / d
    right = (S.table_shaper(torch.tensor([d], dtype=torch.float64), v, 2.0)
             - S.table_shaper(torch.tensor([0.0], dtype=torch.float64), v, 2.0)) / d
    assert float(left) == pytest.approx(-1.0) and float(right) == pytest.approx(1.0)


def test_table_shaper_gradcheck():
    """float64 gradcheck through the values and the input (samples away from the knots,
    where the curve has no derivative)."""
    g = torch.Generator().manual_seed(4)
    values = torch.randn(7, generator=g, dtype=torch.float64, requires_grad=True)
    x = (torch.rand(2, 20, generator=g, dtype=torch.float64) * 4.0 - 2.0)
    x = torch.where((x * 2.0 - (x * 2.0).round()).abs() < 0.05, x + 0.1, x).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, v: S.table_shaper(a, v, 1.5), (x, values))


def test_parameters_broadcast_against_batch():
    x = torch.randn(3, 50, dtype=torch.float64)
    bias = t64([0.2, 0.0, -0.2])
    for fn, args in [(S.push_pull, (bias, 0.05, 1.0)), (S.tube_stage, (bias, 1.0, 0.5)),
                     (S.asym_soft_clip, (bias.abs() + 0.5, 0.4)), (S.hard_clip, (bias.abs() + 0.1, 0.01))]:
        for shape in [(3,), (3, 1)]:
            y = fn(x, args[0].reshape(shape), *args[1:])
            assert y.shape == (3, 50)
            for i in range(3):
                torch.testing.assert_close(y[i], fn(x[i], args[0][i], *args[1:]), rtol=0, atol=1e-15)


# --------------------------------------------------------------------- oversampling
def _fir_from_docstring(factor: int) -> np.ndarray:
    """oversampling_fir's definition written out independently (np.kaiser, a loop)."""
    z, beta = S.OVERSAMPLE_ZEROS, S.OVERSAMPLE_KAISER_BETA
    n_taps = 2 * z * factor + 1
    c = z * factor
    g = np.zeros(n_taps)
    for n in range(n_taps):
        k = n - c
        if k == 0:
            g[n] = 1.0 / factor
        elif k % factor:
            g[n] = np.sin(np.pi * k / factor) / (np.pi * k)
    h = g * np.kaiser(n_taps, beta)
    for p in range(factor):
        h[p::factor] /= factor * h[p::factor].sum()
    return h


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_oversampling_fir_definition_and_lth_band_property(factor):
    h = S.oversampling_fir(factor).numpy()
    z = S.OVERSAMPLE_ZEROS
    c = z * factor
    assert h.shape == (2 * z * factor + 1,)
    np.testing.assert_allclose(h, _fir_from_docstring(factor), rtol=1e-12, atol=1e-17)
    np.testing.assert_array_equal(h, h[::-1])                    # exactly symmetric: linear phase
    assert h.sum() == pytest.approx(1.0, abs=1e-15)              # DC gain 1
    # L-th band: the centre is 1/L, every other tap of its phase exactly 0
    assert h[c] == 1.0 / factor
    assert np.all(h[c % factor::factor][np.arange(c % factor, len(h), factor) != c] == 0.0)
    for p in range(factor):                                      # each phase sums to 1/L
        assert h[p::factor].sum() == pytest.approx(1.0 / factor, abs=1e-15)
    # ... so the up-sampled constant is constant (no image of DC) away from the edges
    up = S.upsample(torch.ones(1, 100, dtype=torch.float64), factor)[0, 2 * c:-2 * c].numpy()
    np.testing.assert_allclose(up, 1.0, atol=1e-14)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_oversampling_fir_passband_and_stopband(factor):
    """The bounds the docstring claims, from the taps' FFT; frequencies in units of the
    base rate's Nyquist frequency (the high rate's Nyquist is L)."""
    h = S.oversampling_fir(factor).numpy()
    n_fft = 1 << 18
    gain_db = 20 * np.log10(np.maximum(np.abs(np.fft.rfft(h, n_fft)), 1e-300))
    f = np.arange(gain_db.size) * 2.0 * factor / n_fft
    passband = gain_db[f <= FIR_PASSBAND_EDGE]
    assert np.abs(passband).max() < FIR_RIPPLE_DB
    assert gain_db[f >= FIR_STOPBAND_EDGE].max() < FIR_STOPBAND_DB
    if factor == 2:   # half-band: exactly -6.02 dB (gain 1/2) at the base Nyquist frequency
        assert abs(np.abs(np.sum(h * np.exp(-1j * np.pi / 2 * np.arange(len(h))))) - 0.5) < 1e-12


@pytest.mark.parametrize("factor", [2, 3])
def test_zero_phase_equals_causal_only_with_silent_edges(factor):
    """oversampled(fn) against a causal implementation (the C++ engine's: full
    convolutions, no centring), delayed by 2·OVERSAMPLE_ZEROS base-rate samples, over
    the twin's output range: equal when the input starts and ends with
    OVERSAMPLE_ZEROS samples of silence, not when it starts with signal (the zero-phase
    resampler drops the FIR's pre-ringing)."""
    h = S.oversampling_fir(factor).numpy()
    z = S.OVERSAMPLE_ZEROS
    rng = np.random.default_rng(factor)

    def causal(x):
        xp = np.concatenate([x, np.zeros(2 * z)])
        u0 = np.zeros(len(xp) * factor)
        u0[::factor] = factor * xp
        w = S.hard_clip(torch.from_numpy(np.convolve(u0, h)[:len(u0)]), 0.5, 0.05).numpy()
        return np.convolve(w, h)[:len(w)][::factor]

    body = rng.standard_normal(60)
    x = np.concatenate([np.zeros(z), body, np.zeros(z)])
    twin = S.oversampled(S.hard_clip, torch.from_numpy(x), factor, 0.5, 0.05).numpy()
    np.testing.assert_allclose(causal(x)[2 * z:2 * z + len(x)], twin, atol=1e-13)
    x_loud = np.concatenate([body, np.zeros(2 * z)])              # signal from the first sample
    twin = S.oversampled(S.hard_clip, torch.from_numpy(x_loud), factor, 0.5, 0.05).numpy()
    assert np.abs(causal(x_loud)[2 * z:2 * z + len(x_loud)] - twin).max() > 1e-3


@pytest.mark.parametrize("factor", [2, 4])
def test_resampling_filters_follow_their_definition(factor):
    rng = np.random.default_rng(factor)
    x = rng.standard_normal((2, 40))
    h = S.oversampling_fir(factor).numpy()
    c = S.OVERSAMPLE_ZEROS * factor
    # upsample: y[m] = L Σ_i x[i] h[m - iL + c]
    up = S.upsample(torch.from_numpy(x), factor).numpy()
    ref = np.zeros((2, 40 * factor))
    for m in range(40 * factor):
        for i in range(40):
            j = m - i * factor + c
            if 0 <= j < len(h):
                ref[:, m] += factor * x[:, i] * h[j]
    np.testing.assert_allclose(up, ref, atol=1e-13)
    # downsample: y[k] = Σ_j h[j] u[kL + j - c], M not a multiple of L
    u = rng.standard_normal((2, 40 * factor + 1))
    dn = S.downsample(torch.from_numpy(u), factor).numpy()
    assert dn.shape == (2, 41)
    ref = np.zeros((2, 41))
    for k in range(41):
        for j in range(len(h)):
            n = k * factor + j - c
            if 0 <= n < u.shape[-1]:
                ref[:, k] += h[j] * u[:, n]
    np.testing.assert_allclose(dn, ref, atol=1e-13)


def test_oversampling_identity_and_passband():
    x = torch.randn(2, 100, dtype=torch.float64)
    assert S.upsample(x, 1) is x and S.downsample(x, 1) is x
    torch.testing.assert_close(S.oversampled(S.hard_clip, x, 1, 0.5, 0.01), S.hard_clip(x, 0.5, 0.01))
    fs, n = 48000, 4800
    t = torch.arange(n, dtype=torch.float64) / fs
    for f in (1000.0, 15000.0):
        sine = torch.sin(2 * torch.pi * f * t)
        for factor in (2, 4):
            back = S.downsample(S.upsample(sine, factor), factor)
            mid = slice(200, n - 200)
            assert float((back[mid] - sine[mid]).abs().max()) < PASSBAND_ATOL
    y32 = S.upsample(x.float(), 2)
    assert y32.dtype == torch.float32 and y32.shape == (2, 200)


def test_oversampling_gradcheck():
    x = torch.randn(1, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: S.upsample(v, 2), (x,), eps=GRAD_EPS, atol=GRAD_ATOL)
    assert torch.autograd.gradcheck(lambda v: S.downsample(v, 2), (x,), eps=GRAD_EPS, atol=GRAD_ATOL)
    lvl = t64(0.3).requires_grad_()
    assert torch.autograd.gradcheck(lambda v, l: S.oversampled(S.hard_clip, v, 2, l, 0.05),
                                    (x, lvl), eps=GRAD_EPS, atol=GRAD_ATOL)


def _alias_db(y: np.ndarray, bin0: int, fs: float) -> float:
    """Energy outside the harmonics of bin0 (0-20 kHz), relative to the harmonics', in dB."""
    n = y.shape[-1]
    power = np.abs(np.fft.rfft(y * np.hanning(n))) ** 2
    freqs = np.arange(power.shape[-1]) * fs / n
    harmonic = np.zeros(power.shape[-1], bool)
    for k in range(bin0, power.shape[-1], bin0):
        harmonic[max(k - 4, 0):k + 5] = True
    alias = ~harmonic & (freqs < 20000) & (np.arange(power.shape[-1]) > 4)
    return 10 * np.log10(power[alias].sum() / power[harmonic].sum())


def test_oversampling_reduces_aliasing_of_a_hard_clipper():
    fs, n, bin0 = 48000, 1 << 14, 1733            # 5077 Hz, a prime bin: aliases fall off-harmonic
    t = torch.arange(n, dtype=torch.float64) / fs
    x = 3.0 * torch.sin(2 * torch.pi * bin0 * fs / n * t)
    alias = {factor: _alias_db(S.oversampled(S.hard_clip, x, factor, 1.0, 0.0).numpy(), bin0, fs)
             for factor in (1, 2, 4)}
    assert alias[1] > -35.0                        # the plain clipper aliases audibly
    assert alias[2] < alias[1] - ALIAS_GAIN_2X_DB
    assert alias[4] < alias[1] - ALIAS_GAIN_4X_DB

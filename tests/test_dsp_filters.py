"""dsp.filters (and dsp.resample): references, gradients, batching, audible behaviour."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from dsp import filters as F
from dsp import resample as R

SAMPLE_RATES = (44100, 48000, 96000)
COEF_RTOL = 1e-9          # float64 coefficients vs an independent formula
FILTER_ATOL = 1e-12       # float64 filtering vs scipy / python loop (|x| ~ 1)
FFT_REL_TOL = 1e-6        # iir_filter_fft vs iir_filter, float64 (required by the spec)
FLOAT32_ATOL = 1e-5       # float32 signal vs float64 reference
DB_TOL = 0.01             # measured gain in dB vs the documented value
GRAD_EPS, GRAD_ATOL = 1e-6, 1e-6


def db(h) -> float:
    return 20.0 * math.log10(abs(complex(h)))


def t64(v):
    return torch.tensor(v, dtype=torch.float64)


def rbj_reference(kind, fs, f0, q, gain_db):
    """RBJ cookbook, literally (cos/sin form), as an independent reference."""
    w0 = 2 * math.pi * f0 / fs
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / (2 * q)
    A = 10 ** (gain_db / 40)
    if kind == "lowpass":
        b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "highpass":
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "bandpass":
        b = [alpha, 0.0, -alpha]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "allpass":
        b = [1 - alpha, -2 * cw, 1 + alpha]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "peak":
        b = [1 + alpha * A, -2 * cw, 1 - alpha * A]
        a = [1 + alpha / A, -2 * cw, 1 - alpha / A]
    elif kind == "lowshelf":
        sa = 2 * math.sqrt(A) * alpha
        b = [A * ((A + 1) - (A - 1) * cw + sa), 2 * A * ((A - 1) - (A + 1) * cw),
             A * ((A + 1) - (A - 1) * cw - sa)]
        a = [(A + 1) + (A - 1) * cw + sa, -2 * ((A - 1) + (A + 1) * cw),
             (A + 1) + (A - 1) * cw - sa]
    else:  # highshelf
        sa = 2 * math.sqrt(A) * alpha
        b = [A * ((A + 1) + (A - 1) * cw + sa), -2 * A * ((A - 1) + (A + 1) * cw),
             A * ((A + 1) + (A - 1) * cw - sa)]
        a = [(A + 1) - (A - 1) * cw + sa, 2 * ((A - 1) - (A + 1) * cw),
             (A + 1) - (A - 1) * cw - sa]
    b, a = np.array(b), np.array(a)
    return b / a[0], a / a[0]


# ------------------------------------------------------------------ coefficients
@pytest.mark.parametrize("kind", F.BIQUAD_KINDS)
@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_biquad_matches_rbj_cookbook(kind, fs):
    for f0, q, g in [(80.0, 0.7071, 6.0), (1000.0, 2.0, -9.0), (12000.0, 0.5, 3.0)]:
        b, a = F.biquad_coeffs(kind, fs, t64(f0), t64(q), t64(g))
        rb, ra = rbj_reference(kind, fs, f0, q, g)
        np.testing.assert_allclose(b.numpy(), rb, rtol=COEF_RTOL, atol=1e-12)
        np.testing.assert_allclose(a.numpy(), ra, rtol=COEF_RTOL, atol=1e-12)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_biquad_matches_scipy_prewarped_bilinear(fs):
    """Analog prototype at the pre-warped ω0, through scipy.signal.bilinear."""
    f0, q = 700.0, 1.3
    wa = 2 * fs * math.tan(math.pi * f0 / fs)
    protos = {"lowpass": ([1.0], [1 / wa**2, 1 / (q * wa), 1.0]),
              "highpass": ([1 / wa**2, 0, 0], [1 / wa**2, 1 / (q * wa), 1.0]),
              "bandpass": ([1 / (q * wa), 0], [1 / wa**2, 1 / (q * wa), 1.0])}
    for kind, (bs, as_) in protos.items():
        rb, ra = scipy.signal.bilinear(bs, as_, fs)
        b, a = F.biquad_coeffs(kind, fs, t64(f0), t64(q))
        np.testing.assert_allclose(b.numpy(), np.pad(rb, (0, 3 - len(rb))), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(a.numpy(), ra, rtol=1e-8)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_butterworth_and_onepole_match_scipy_butter(fs):
    b, a = F.biquad_coeffs("lowpass", fs, t64(2500.0), t64(1 / math.sqrt(2)))
    rb, ra = scipy.signal.butter(2, 2500.0, "low", fs=fs)
    np.testing.assert_allclose(b.numpy(), rb, rtol=COEF_RTOL)
    np.testing.assert_allclose(a.numpy(), ra, rtol=COEF_RTOL)
    for kind, btype in [("lowpass", "low"), ("highpass", "high")]:
        b, a = F.onepole_coeffs(kind, fs, t64(300.0))
        rb, ra = scipy.signal.butter(1, 300.0, btype, fs=fs)
        np.testing.assert_allclose(b.numpy(), rb, rtol=COEF_RTOL)
        np.testing.assert_allclose(a.numpy(), ra, rtol=COEF_RTOL)


def test_bilinear_transform_matches_scipy():
    rng = np.random.default_rng(1)
    for fs in SAMPLE_RATES:
        b_an = rng.uniform(0.1, 1, 4) * np.array([1, 1e-3, 1e-7, 1e-11])
        a_an = np.array([1.0, 2e-3, 1.5e-6, 4e-10])
        b, a = F.bilinear_transform(t64(b_an), t64(a_an), fs)
        rb, ra = scipy.signal.bilinear(b_an[::-1], a_an[::-1], fs)
        np.testing.assert_allclose(b.numpy(), rb, rtol=1e-8, atol=1e-14)
        np.testing.assert_allclose(a.numpy(), ra, rtol=1e-8)


def test_freq_response_matches_scipy_freqz():
    b, a = F.biquad_coeffs("peak", 48000, t64([200.0, 3000.0]), t64(0.9), t64(5.0))
    f = t64([0.0, 50.0, 200.0, 1000.0, 3000.0, 20000.0])
    h = F.freq_response(b, a, f, 48000)
    assert h.shape == (2, 6) and h.is_complex()
    for i in range(2):
        _, ref = scipy.signal.freqz(b[i].numpy(), a[i].numpy(), worN=f.numpy(), fs=48000)
        np.testing.assert_allclose(h[i].numpy(), ref, rtol=1e-10)


# ------------------------------------------------------------ audible behaviour
@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("kind", ["lowpass", "highpass"])
def test_minus_3db_at_cutoff(fs, kind):
    for f0 in (50.0, 1000.0, 15000.0):
        b, a = F.biquad_coeffs(kind, fs, t64(f0), t64(0.7071))
        assert db(F.freq_response(b, a, t64([f0]), fs)[0]) == pytest.approx(-3.0103, abs=DB_TOL)
        # pass band exactly 0 dB (DC for low-pass, Nyquist for high-pass), stop band falls
        pass_f, stop_f = (0.0, f0 * 1.5) if kind == "lowpass" else (fs / 2, f0 / 1.5)
        h = F.freq_response(b, a, t64([pass_f, stop_f]), fs)
        assert abs(db(h[0])) < 1e-9 and db(h[1]) < -3.0103
        b, a = F.onepole_coeffs(kind, fs, t64(f0))
        h = F.freq_response(b, a, t64([f0, pass_f, stop_f]), fs)
        assert db(h[0]) == pytest.approx(-3.0103, abs=DB_TOL)
        assert abs(db(h[1])) < 1e-9 and db(h[2]) < -3.0103


@pytest.mark.parametrize("fs", [44100.0, 48000.0, 96000.0])
def test_a_onepole_lowpass_past_nyquist_opens_fully(fs):
    """A one-pole low-pass whose cut-off is at or past 0.498 fs is taken as there: flat
    within 0.05 dB to 0.48 fs (23 kHz at 48 kHz), where one at 20 kHz takes 13 dB off 23
    kHz at 48 kHz; the same coefficients for every cut-off past the limit, and the same
    response as before below it."""
    f = t64([0.48 * fs])
    for cut in (0.498 * fs, 0.6 * fs, 96000.0, 1e6):
        b, a = F.onepole_coeffs("lowpass", fs, t64(cut))
        assert db(F.freq_response(b, a, f, fs)[0]) > -0.05
        b0, a0 = F.onepole_coeffs("lowpass", fs, t64(0.498 * fs))
        assert torch.equal(b, b0) and torch.equal(a, a0)
    if fs == 48000.0:
        b, a = F.onepole_coeffs("lowpass", fs, t64(20000.0))
        assert db(F.freq_response(b, a, t64([23000.0]), fs)[0]) < -12.0
    k = math.tan(math.pi * 0.3)  # below the limit: K = tan(pi f / fs) as ever
    b, a = F.onepole_coeffs("lowpass", fs, t64(0.3 * fs))
    assert float(b[0]) == pytest.approx(k / (1 + k), rel=1e-12)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_shelf_peak_and_bandpass_gains(fs):
    for g in (-12.0, 6.0):
        b, a = F.biquad_coeffs("lowshelf", fs, t64(200.0), t64(0.7071), t64(g))
        h = F.freq_response(b, a, t64([0.0, fs / 2, 200.0]), fs)
        assert db(h[0]) == pytest.approx(g, abs=DB_TOL)
        assert db(h[1]) == pytest.approx(0.0, abs=DB_TOL)
        assert db(h[2]) == pytest.approx(g / 2, abs=DB_TOL)
        b, a = F.biquad_coeffs("highshelf", fs, t64(4000.0), t64(0.7071), t64(g))
        h = F.freq_response(b, a, t64([0.0, fs / 2, 4000.0]), fs)
        assert db(h[0]) == pytest.approx(0.0, abs=DB_TOL)
        assert db(h[1]) == pytest.approx(g, abs=DB_TOL)
        assert db(h[2]) == pytest.approx(g / 2, abs=DB_TOL)
        b, a = F.biquad_coeffs("peak", fs, t64(1000.0), t64(1.5), t64(g))
        h = F.freq_response(b, a, t64([1000.0, 0.0, fs / 2]), fs)
        assert db(h[0]) == pytest.approx(g, abs=DB_TOL)
        assert abs(db(h[1])) < DB_TOL and abs(db(h[2])) < DB_TOL
    b, a = F.biquad_coeffs("bandpass", fs, t64(1000.0), t64(3.0))
    h = F.freq_response(b, a, t64([1000.0, 0.0, fs / 2]), fs)
    assert db(h[0]) == pytest.approx(0.0, abs=DB_TOL)
    assert abs(h[1]) < 1e-12 and abs(h[2]) < 1e-12


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_dc_blocker_removes_dc(fs):
    x = torch.ones(fs, dtype=torch.float64) * 0.5          # 1 s of DC
    y = F.dc_blocker(x, fs)
    assert abs(float(y[-1])) < 1e-6
    b, a = F.dc_blocker_coeffs(fs)
    h = F.freq_response(b, a, t64([0.0, 10.0, 1000.0]), fs)
    assert abs(h[0]) < 1e-15
    assert db(h[1]) == pytest.approx(-3.0103, abs=DB_TOL)
    assert abs(db(h[2])) < DB_TOL


# --------------------------------------------------------------- exact recursion
def _random_filters():
    b1, a1 = F.biquad_coeffs("peak", 48000, t64(150.0), t64(2.0), t64(9.0))
    b2, a2 = F.onepole_coeffs("highpass", 48000, t64(20.0))
    b3 = t64([0.2, -0.1, 0.05, 0.3])
    a3 = t64([1.0, -1.2, 0.5, -0.1])                     # third order, stable
    b4 = t64([0.5, 0.25])                                  # FIR (a = [1])
    a4 = t64([1.0])
    return [(b1, a1), (b2, a2), (b3, a3), (b4, a4)]


def test_iir_filter_matches_lfilter_and_python_loop():
    x = torch.randn(2, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for b, a in _random_filters():
        y = F.iir_filter(x, b, a)
        ref = scipy.signal.lfilter(b.numpy(), a.numpy(), x.numpy(), axis=-1)
        np.testing.assert_allclose(y.numpy(), ref, atol=FILTER_ATOL)
        loop = F.iir_filter_loop(x[:, :60], b, a)
        np.testing.assert_allclose(loop.numpy(), ref[:, :60], atol=FILTER_ATOL)
    # a[0] != 1 is normalised the same way by all paths
    b, a = t64([0.4, 0.2]), t64([2.0, -1.0])
    np.testing.assert_allclose(F.iir_filter(x, b, a).numpy(),
                               scipy.signal.lfilter(b.numpy(), a.numpy(), x.numpy()), atol=FILTER_ATOL)
    np.testing.assert_allclose(F.iir_filter_loop(x[:, :40], b, a).numpy(),
                               scipy.signal.lfilter(b.numpy(), a.numpy(), x[:, :40].numpy()),
                               atol=FILTER_ATOL)


def test_iir_filter_same_result_with_and_without_grad():
    x = torch.randn(3, 200, dtype=torch.float64)
    b, a = F.biquad_coeffs("lowpass", 48000, t64(500.0), t64(0.9))
    y0 = F.iir_filter(x, b, a)
    y1 = F.iir_filter(x.clone().requires_grad_(), b.clone().requires_grad_(), a.clone().requires_grad_())
    assert torch.equal(y0, y1.detach())


def test_iir_filter_gradcheck():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 24, dtype=torch.float64, generator=gen, requires_grad=True)
    for b, a in _random_filters():
        b = b.clone().requires_grad_()
        a = a.clone().requires_grad_()
        assert torch.autograd.gradcheck(F.iir_filter, (x, b, a), eps=GRAD_EPS, atol=GRAD_ATOL)
    # per-row coefficients
    b, a = F.biquad_coeffs("peak", 48000, t64([300.0, 5000.0]), t64(1.0), t64(4.0))
    assert torch.autograd.gradcheck(F.iir_filter, (x, b.requires_grad_(), a.requires_grad_()),
                                    eps=GRAD_EPS, atol=GRAD_ATOL)


def test_iir_filter_gradient_equals_loop_autograd():
    x = torch.randn(2, 40, dtype=torch.float64, requires_grad=True)
    f0 = torch.tensor([200.0, 2000.0], dtype=torch.float64, requires_grad=True)
    grads = []
    for fn in (F.iir_filter, F.iir_filter_loop):
        b, a = F.biquad_coeffs("highshelf", 48000, f0, t64(0.8), t64(-6.0))
        (fn(x, b, a) ** 2).sum().backward()
        grads.append((x.grad.clone(), f0.grad.clone()))
        x.grad = None
        f0.grad = None
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_biquad_coeffs_gradcheck(fs):
    for kind in F.BIQUAD_KINDS:
        def fn(f0, q, g, kind=kind):
            return F.biquad_coeffs(kind, fs, f0 * 1000.0, q, g)
        args = (t64([0.3, 2.0]).requires_grad_(), t64([0.7, 1.5]).requires_grad_(),
                t64([-3.0, 6.0]).requires_grad_())
        assert torch.autograd.gradcheck(fn, args, eps=GRAD_EPS, atol=GRAD_ATOL)
    assert torch.autograd.gradcheck(lambda f: F.onepole_coeffs("lowpass", fs, f * 1000.0),
                                    (t64([0.05, 3.0]).requires_grad_(),), eps=GRAD_EPS, atol=GRAD_ATOL)


def test_batched_equals_one_by_one_and_param_shapes():
    x = torch.randn(3, 500, dtype=torch.float64)
    f0 = t64([100.0, 1000.0, 8000.0])
    for shape in [(3,), (3, 1)]:
        b, a = F.biquad_coeffs("lowpass", 48000, f0.reshape(shape), t64(0.7071))
        for fn in (F.iir_filter, F.iir_filter_fft):
            y = fn(x, b, a)
            assert y.shape == x.shape
            for i in range(3):
                bi, ai = F.biquad_coeffs("lowpass", 48000, f0[i], t64(0.7071))
                torch.testing.assert_close(y[i], fn(x[i], bi, ai), rtol=0, atol=1e-12)
    # the coefficient batch is the broadcast of all parameters, used or not
    b, a = F.biquad_coeffs("lowpass", 48000, t64(300.0), t64(0.7071), t64([0.0, 1.0]))
    assert b.shape == (2, 3) and a.shape == (2, 3)
    # one coefficient set broadcast over the batch; one signal through many filters
    b, a = F.biquad_coeffs("lowpass", 48000, t64(300.0), t64(0.7071))
    assert F.iir_filter(x, b, a).shape == (3, 500)
    b, a = F.biquad_coeffs("lowpass", 48000, f0, t64(0.7071))
    y = F.iir_filter(x[0], b, a)
    assert y.shape == (3, 500)
    torch.testing.assert_close(y[2], F.iir_filter(x[0], b[2], a[2]))
    # a 3-D batch: (2, 3, T) signal, (3,) parameters
    x3 = torch.randn(2, 3, 100, dtype=torch.float64)
    y3 = F.biquad(x3, 48000, "peak", f0, 1.0, 6.0)
    assert y3.shape == (2, 3, 100)
    torch.testing.assert_close(y3[1, 2], F.biquad(x3[1, 2], 48000, "peak", f0[2], 1.0, 6.0))


# ------------------------------------------------------------------- FFT path
def test_iir_filter_fft_equals_iir_filter():
    x = torch.randn(2, 4000, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    filters = _random_filters()
    filters.append(F.dc_blocker_coeffs(48000))                                  # pole 0.9987
    filters.append(F.biquad_coeffs("lowpass", 96000, t64(20.0), t64(0.5)))      # double pole
    filters.append(F.biquad_coeffs("peak", 44100, t64(100.0), t64(8.0), t64(12.0)))
    for b, a in filters:
        y = F.iir_filter(x, b, a)
        y_fft = F.iir_filter_fft(x, b, a)
        rel = float((y - y_fft).norm() / y.norm())
        assert rel < FFT_REL_TOL, (b, a, rel)


def test_iir_filter_fft_gradcheck_and_float32():
    x = torch.randn(2, 30, dtype=torch.float64, requires_grad=True)
    b, a = F.biquad_coeffs("bandpass", 48000, t64(3000.0), t64(1.0))
    assert torch.autograd.gradcheck(F.iir_filter_fft, (x, b.requires_grad_(), a.requires_grad_()),
                                    eps=GRAD_EPS, atol=GRAD_ATOL)
    x32 = torch.randn(2, 2000)
    y32 = F.iir_filter_fft(x32, b.detach(), a.detach())
    assert y32.dtype == torch.float32
    ref = F.iir_filter(x32.double(), b.detach(), a.detach())
    assert float((y32.double() - ref).abs().max()) < FLOAT32_ATOL


def test_iir_filter_fft_error_bound_and_unstable():
    b, a = F.onepole_coeffs("lowpass", 48000, t64(5.0))
    n = F.fft_length(1000, a)
    assert n >= 1000
    x = torch.randn(1000, dtype=torch.float64)
    # a deliberately short FFT gives an error within the documented bound
    n_short = 1200
    y, y_fft = F.iir_filter(x, b, a), F.iir_filter_fft(x, b, a, n_fft=n_short)
    impulse = torch.zeros(200000, dtype=torch.float64)
    impulse[0] = 1.0
    h = F.iir_filter(impulse, b, a)
    bound = float(x.abs().max() * h[n_short - 1000 + 1:].abs().sum())
    assert 0 < float((y - y_fft).abs().max()) <= bound * (1 + 1e-9)
    with pytest.raises(ValueError):
        F.iir_filter_fft(x, t64([1.0]), t64([1.0, -1.0]))


def test_float32_signals():
    x32 = torch.randn(2, 3000)
    b, a = F.biquad_coeffs("lowpass", 48000, t64(800.0), t64(0.7071))
    y = F.iir_filter(x32, b, a)
    assert y.dtype == torch.float32
    ref = F.iir_filter(x32.double(), b, a)
    assert float((y.double() - ref).abs().max()) < FLOAT32_ATOL
    # float32 parameters: float32 coefficients, gradients in float32
    f0 = torch.tensor(800.0, requires_grad=True)
    b32, a32 = F.biquad_coeffs("lowpass", 48000, f0, torch.tensor(0.7071))
    assert b32.dtype == torch.float32
    y = F.iir_filter(x32, b32, a32)
    y.square().sum().backward()
    assert f0.grad.dtype == torch.float32 and torch.isfinite(f0.grad)
    assert float((y.detach().double() - ref).abs().max()) < 1e-3


def test_sos_filter_matches_scipy_sosfilt():
    sos = scipy.signal.butter(6, 1200.0, "low", fs=48000, output="sos")
    x = torch.randn(2, 3000, dtype=torch.float64)
    ref = scipy.signal.sosfilt(sos, x.numpy(), axis=-1)
    np.testing.assert_allclose(F.sos_filter(x, t64(sos)).numpy(), ref, atol=FILTER_ATOL)
    assert float((F.sos_filter_fft(x, t64(sos)) - t64(ref)).norm() / np.linalg.norm(ref)) < FFT_REL_TOL


def test_poly_mul():
    p, q = t64([1.0, 2.0, 3.0]), t64([[0.5, -1.0], [2.0, 0.0]])
    np.testing.assert_allclose(F.poly_mul(p, q).numpy(),
                               np.stack([np.convolve(p, q[0]), np.convolve(p, q[1])]))


# ------------------------------------------------------------------- resample
def test_resample_numpy_and_torch():
    fs_in, fs_out = 44100, 48000
    t = np.arange(fs_in) / fs_in
    x = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
    y = R.resample(x, fs_in, fs_out)
    assert y.dtype == np.float32 and y.shape == (fs_out,)
    ref = np.sin(2 * np.pi * 1000.0 * np.arange(fs_out) / fs_out)
    assert np.abs(y[1000:-1000] - ref[1000:-1000]).max() < 1e-3
    yt = R.resample(torch.from_numpy(np.stack([x, x])), fs_in, fs_out)
    assert isinstance(yt, torch.Tensor) and yt.shape == (2, fs_out) and yt.dtype == torch.float32
    assert R.resample(x, 48000, 48000) is x
    assert R.resample_ratio(48000, 96000) == (2, 1)


# ------------------------------------------------------------------- output FIR
def _cab_like(n=240, seed=0):
    """A unit impulse plus decaying noise: a short cabinet-like coloration."""
    rng = np.random.default_rng(seed)
    h = 0.3 * rng.standard_normal(n) * np.exp(-np.arange(n) / 40.0)
    h[0] += 1.0
    return h


def test_fir_filter_is_the_direct_sum_and_differentiable():
    """``fir_filter`` (an FFT convolution) equals scipy's direct-form FIR on every row,
    in float32 and float64, and passes float64 gradcheck w.r.t. signal and taps."""
    rng = np.random.default_rng(1)
    h = _cab_like()
    x = rng.standard_normal((3, 5000))
    ref = scipy.signal.lfilter(h, [1.0], x, axis=-1)
    y = F.fir_filter(torch.from_numpy(x), torch.from_numpy(h))
    assert y.dtype == torch.float64
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)
    y32 = F.fir_filter(torch.from_numpy(x).float(), h)
    assert y32.dtype == torch.float32
    np.testing.assert_allclose(y32.numpy(), ref, atol=1e-5)
    xs = torch.randn(2, 40, dtype=torch.float64, requires_grad=True)
    hs = torch.randn(7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(F.fir_filter, (xs, hs))


def test_fir_least_squares_recovers_a_known_filter():
    """Rows that start and end in silence: the normal equations are exact, so the
    solve returns the filter that made the targets; rows weighted by the loss's
    weights give the same answer (one filter explains all of them)."""
    rng = np.random.default_rng(2)
    h = _cab_like(seed=3)
    x = np.zeros((4, 12000))
    x[:, 300:11000] = rng.standard_normal((4, 10700)) * np.array([[1.0], [0.1], [0.5], [2.0]])
    y = scipy.signal.lfilter(h, [1.0], x, axis=-1)
    np.testing.assert_allclose(F.fir_least_squares(x, y, 240), h, atol=1e-6)
    np.testing.assert_allclose(F.fir_least_squares(x, y, 240, weights=[1, 100, 4, 0.25]), h, atol=1e-6)
    # too short a filter: the best 60-tap fit, which leaves an error
    short = F.fir_least_squares(x, y, 60)
    assert short.shape == (60,)
    assert np.sum((scipy.signal.lfilter(short, [1.0], x, axis=-1) - y) ** 2) > 1e-3 * np.sum(y ** 2)


@pytest.mark.parametrize("rate", [44100.0, 96000.0, 88200.0])
def test_resample_fir_keeps_the_frequency_response(rate):
    """Taps carried from 48 kHz to another rate keep their response below 18 kHz to
    0.1 dB and a few degrees (a smooth, cabinet-like filter), have ceil(N rate / 48k)
    taps, and the same rate returns the taps unchanged."""
    h = scipy.signal.firwin2(241, [0, 100, 400, 2500, 5000, 8000, 24000],
                             [0.3, 1.0, 1.4, 2.0, 1.0, 0.2, 0.0], fs=48000.0)
    np.testing.assert_array_equal(F.resample_fir(h, 48000.0, 48000.0), h)
    g = F.resample_fir(h, 48000.0, rate)
    assert len(g) == math.ceil(241 * rate / 48000.0)
    f = np.array([50.0, 200.0, 1000.0, 3000.0, 6000.0, 10000.0, 15000.0])
    a = F.freq_response(t64(h), t64([1.0]), t64(f), 48000.0).numpy()
    b = F.freq_response(t64(g), t64([1.0]), t64(f), rate).numpy()
    np.testing.assert_allclose(20 * np.log10(np.abs(b)), 20 * np.log10(np.abs(a)), atol=0.1)
    np.testing.assert_allclose(np.angle(b / a), 0.0, atol=0.05)


def test_blend_coeffs_is_the_crossfade_of_a_lowpass_and_a_highpass():
    """One second-order section equals (1 - t) LP1 + t HP1 run side by side (two
    one-poles, scipy), at two rates; it passes gradcheck in float64; with equal cut-offs
    and t = 0.5 it is a gain of 0.5."""
    import scipy.signal

    from dsp.filters import blend_coeffs, iir_filter, onepole_coeffs

    rng = np.random.default_rng(3)
    x = rng.standard_normal(3000)
    for fs in (48000.0, 96000.0):
        for t, lp, hp in ((0.0, 400.0, 1900.0), (0.3, 408.0, 1856.0), (1.0, 300.0, 3000.0)):
            b, a = blend_coeffs(fs, torch.tensor(t, dtype=torch.float64), torch.tensor(lp, dtype=torch.float64),
                                torch.tensor(hp, dtype=torch.float64))
            y = iir_filter(torch.from_numpy(x)[None], b[None], a[None])[0].numpy()
            bl, al = (v.numpy() for v in onepole_coeffs("lowpass", fs, torch.tensor(lp, dtype=torch.float64)))
            bh, ah = (v.numpy() for v in onepole_coeffs("highpass", fs, torch.tensor(hp, dtype=torch.float64)))
            ref = (1 - t) * scipy.signal.lfilter(bl, al, x) + t * scipy.signal.lfilter(bh, ah, x)
            np.testing.assert_allclose(y, ref, atol=1e-10)
    b, a = blend_coeffs(48000.0, torch.tensor(0.5), torch.tensor(700.0), torch.tensor(700.0))
    w, h = scipy.signal.freqz(b.numpy(), a.numpy(), worN=64)
    np.testing.assert_allclose(np.abs(h), 0.5, atol=1e-5)
    params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (0.3, 500.0, 2000.0)]
    xs = torch.from_numpy(x[:200])[None]
    assert torch.autograd.gradcheck(
        lambda t, lp, hp: iir_filter(xs, *(c[None] for c in blend_coeffs(48000.0, t, lp, hp))), params)

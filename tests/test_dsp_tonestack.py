"""dsp.tonestack: Yeh & Smith formulas vs an independent nodal analysis, and behaviour."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from dsp import filters as F
from dsp import tonestack as TS

MNA_RTOL = 1e-9           # analog formula vs nodal analysis (machine precision ~1e-15)
BILINEAR_RTOL = 1e-9      # discrete response vs analog response at the warped frequency
FFT_REL_TOL = 1e-6
TEST_FREQS_HZ = (20.0, 60.0, 150.0, 400.0, 800.0, 1500.0, 3000.0, 6000.0, 12000.0, 20000.0)
POT_END_GAP = 1e-4        # pots at 0 or 1 are compared at 1e-4 / 1 - 1e-4 (finite MNA)


def t64(v):
    return torch.tensor(v, dtype=torch.float64)


def mna_response(freqs_hz, t, m, l, r1_ohm, r2_ohm, r3_ohm, r4_ohm, c1_farad, c2_farad, c3_farad):
    """H(jω) of the TMB stack by modified nodal analysis (numpy complex, independent).

    Nodes: in (ideal source, 1 V), n1, n2, n3, n4, n5, out; ground implicit.
    """
    def res(r):
        return 1.0 / r

    out = []
    for f in freqs_hz:
        s = 2j * math.pi * f
        names = ["in", "n1", "n2", "n3", "n4", "n5", "out"]
        elements = [("in", "n1", s * c1_farad),            # treble cap
                    ("in", "n3", res(r4_ohm)),             # slope resistor
                    ("n3", "n2", s * c2_farad),            # bass cap
                    ("n3", "n5", s * c3_farad),            # mid cap -> mid wiper
                    ("n1", "out", res((1 - t) * r1_ohm)),  # treble pot, upper part
                    ("out", "n2", res(t * r1_ohm)),        # treble pot, lower part
                    ("n2", "n4", res(l * r2_ohm)),         # bass pot (rheostat)
                    ("n4", "n5", res((1 - m) * r3_ohm)),   # mid pot, upper part
                    ("n5", None, res(m * r3_ohm))]         # mid pot, wiper to ground
        idx = {n: i for i, n in enumerate(names)}
        y = np.zeros((7, 7), complex)
        for a, b, adm in elements:
            i = idx[a]
            y[i, i] += adm
            if b is not None:
                j = idx[b]
                y[j, j] += adm
                y[i, j] -= adm
                y[j, i] -= adm
        v = np.linalg.solve(y[1:, 1:], -y[1:, 0])        # V_in = 1
        out.append(v[idx["out"] - 1])
    return np.array(out)


def analog_response(big_b, big_a, freqs_hz):
    s = 2j * math.pi * np.asarray(freqs_hz)
    bb, aa = big_b.detach().numpy(), big_a.detach().numpy()
    return np.polyval(bb[::-1], s) / np.polyval(aa[::-1], s)


POT_SETTINGS = [(0.5, 0.5, 0.5), (0.1, 0.9, 0.3), (0.9, 0.1, 0.8), (0.3, 0.7, 0.05),
                (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.5), (0.0, 1.0, 1.0)]


@pytest.mark.parametrize("preset", sorted(TS.TONESTACK_PRESETS))
def test_formulas_match_nodal_analysis(preset):
    comp = TS.TONESTACK_PRESETS[preset]
    rng = np.random.default_rng(7)
    settings = POT_SETTINGS + [tuple(rng.uniform(0, 1, 3)) for _ in range(10)]
    for setting in settings:
        # a pot at its very end is a 0-ohm branch: compare just inside the end instead
        t, m, l = np.clip(setting, POT_END_GAP, 1.0 - POT_END_GAP)
        big_b, big_a = TS.tonestack_analog(t64(t), t64(m), t64(l), *comp.values())
        h = analog_response(big_b, big_a, TEST_FREQS_HZ)
        ref = mna_response(TEST_FREQS_HZ, t, m, l, *comp.values())
        np.testing.assert_allclose(np.abs(h), np.abs(ref), rtol=MNA_RTOL)
        np.testing.assert_allclose(h, ref, rtol=MNA_RTOL)


def test_analog_form_and_component_order():
    big_b, big_a = TS.tonestack_analog(t64([0.2, 0.8]), t64(0.5), t64(0.5),
                                       **TS.TONESTACK_PRESETS["marshall_jcm800"])
    assert big_b.shape == (2, 4) and big_a.shape == (2, 4)
    assert torch.all(big_b[..., 0] == 0) and torch.all(big_a[..., 0] == 1)
    assert tuple(TS.TONESTACK_PRESETS["fender_bassman_5f6a"]) == TS.COMPONENT_NAMES


@pytest.mark.parametrize("fs", (44100, 48000, 96000))
def test_bilinear_discretisation(fs):
    comp = TS.TONESTACK_PRESETS["fender_bassman_5f6a"]
    t, m, l = t64([0.5, 0.2]), t64([0.5, 0.9]), t64([0.5, 0.1])
    b, a = TS.tonestack_coeffs(fs, t, m, l, **comp)
    assert b.shape == (2, 4) and torch.all(a[..., 0] == 1)
    big_b, big_a = TS.tonestack_analog(t, m, l, *comp.values())
    f = np.array([30.0, 300.0, 3000.0, 15000.0])
    h = F.freq_response(b, a, t64(f), fs).numpy()
    for i in range(2):
        # the bilinear transform maps f_d to the analog frequency (2fs/2π)·tan(π f_d/fs)
        f_warp = 2 * fs * np.tan(np.pi * f / fs) / (2 * np.pi)
        np.testing.assert_allclose(h[i], analog_response(big_b[i], big_a[i], f_warp), rtol=BILINEAR_RTOL)
        rb, ra = scipy.signal.bilinear(big_b[i].numpy()[::-1], big_a[i].numpy()[::-1], fs)
        np.testing.assert_allclose(b[i].numpy(), rb, rtol=1e-8, atol=1e-14)
        np.testing.assert_allclose(a[i].numpy(), ra, rtol=1e-8)
    # pre-warping maps the chosen frequency exactly
    b, a = TS.tonestack_coeffs(fs, t, m, l, prewarp_hz=1000.0, **comp)
    hp = F.freq_response(b, a, t64([1000.0]), fs).numpy()[:, 0]
    for i in range(2):
        np.testing.assert_allclose(hp[i], analog_response(big_b[i], big_a[i], [1000.0])[0],
                                   rtol=BILINEAR_RTOL)


def _db(b, a, freqs, fs=48000):
    return 20 * torch.log10(F.freq_response(b, a, t64(freqs), fs).abs())


def test_bassman_mid_scoop_at_noon():
    b, a = TS.tonestack_coeffs(48000, t64(0.5), t64(0.5), t64(0.5),
                               **TS.TONESTACK_PRESETS["fender_bassman_5f6a"])
    grid = np.geomspace(20, 20000, 400)
    resp = _db(b, a, grid).numpy()
    notch = grid[np.argmin(resp)]
    assert 300.0 < notch < 1200.0                       # the classic scoop, ~500-700 Hz
    lows, highs = resp[grid < 80], resp[(grid > 4000) & (grid < 10000)]
    assert lows.min() > resp.min() + 8.0 and highs.min() > resp.min() + 5.0
    assert resp.max() < 0.5                             # passive: no gain


@pytest.mark.parametrize("preset", sorted(TS.TONESTACK_PRESETS))
def test_knobs_do_what_they_say(preset):
    comp = TS.TONESTACK_PRESETS[preset]

    def level(t, m, l, f):
        b, a = TS.tonestack_coeffs(48000, t64(t), t64(m), t64(l), **comp)
        return float(_db(b, a, [f])[0])

    assert level(1.0, 0.5, 0.5, 6000) > level(0.0, 0.5, 0.5, 6000) + 6    # treble
    assert level(0.5, 0.5, 1.0, 60) > level(0.5, 0.5, 0.0, 60) + 6        # bass
    assert level(0.5, 1.0, 0.5, 600) > level(0.5, 0.0, 0.5, 600) + 3      # mid
    # Marshall stacks are brighter/less scooped than the Bassman at noon
    if preset == "marshall_jcm800":
        bass = TS.TONESTACK_PRESETS["fender_bassman_5f6a"]
        b, a = TS.tonestack_coeffs(48000, t64(0.5), t64(0.5), t64(0.5), **bass)
        assert level(0.5, 0.5, 0.5, 600) > float(_db(b, a, [600])[0])


def test_log_taper():
    torch.testing.assert_close(TS.log_taper(t64([1.0, 0.0, 0.5])),
                               t64([1.0, math.exp(-3.4), math.exp(-1.7)]))
    k = t64(2.0).requires_grad_()
    assert torch.autograd.gradcheck(TS.log_taper, (t64([0.1, 0.7]).requires_grad_(), k))


def test_tonestack_coeffs_gradcheck():
    comp = TS.TONESTACK_PRESETS["marshall_jcm2000"]
    names = list(comp)

    def fn(t, m, l, scales):     # components as relative multipliers: well-scaled gradcheck
        kw = {n: comp[n] * scales[i] for i, n in enumerate(names)}
        return TS.tonestack_coeffs(48000, t, m, l, **kw)

    args = (t64([0.2, 0.8]).requires_grad_(), t64([0.6, 0.3]).requires_grad_(),
            t64([0.4, 0.9]).requires_grad_(), t64([1.0, 1.1, 0.9, 1.2, 0.8, 1.0, 1.05]).requires_grad_())
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-6)


def test_tonestack_signal_paths_batch_and_float32():
    x = torch.randn(3, 6000, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    t = t64([0.1, 0.5, 0.9])
    y = TS.tonestack(x, 48000, t, 0.5, 0.5)
    y_fft = TS.tonestack(x, 48000, t, 0.5, 0.5, method="fft")
    assert float((y - y_fft).norm() / y.norm()) < FFT_REL_TOL
    for i in range(3):
        torch.testing.assert_close(y[i], TS.tonestack(x[i], 48000, t[i], 0.5, 0.5), rtol=0, atol=1e-12)
    y_col = TS.tonestack(x, 48000, t.reshape(3, 1), 0.5, 0.5)      # (B, 1) parameters
    torch.testing.assert_close(y_col, y)
    y32 = TS.tonestack(x.float(), 48000, 0.3, 0.5, 0.7, **TS.TONESTACK_PRESETS["marshall_jcm800"])
    ref = TS.tonestack(x, 48000, 0.3, 0.5, 0.7, **TS.TONESTACK_PRESETS["marshall_jcm800"])
    assert y32.dtype == torch.float32
    assert float((y32.double() - ref).abs().max()) < 1e-5
    # gradient reaches the pots through the fast recursive path
    tg = t64(0.4).requires_grad_()
    TS.tonestack(x, 48000, tg, 0.5, 0.5).square().mean().backward()
    assert torch.isfinite(tg.grad) and tg.grad != 0

"""Topologies: shapes, finiteness, gradients, exact vs frequency-domain path, batching,
raw <-> physical mapping, and audible behaviour (oversampling, clipping)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import butter, lfilter

from dsp.topologies import TOPOLOGIES, ControlSpec, make_topology

torch.set_num_threads(1)
SR = 48000
NAMES = sorted(TOPOLOGIES)


def _bandlimited_noise(rows, n, seed=0, level=0.3):
    """White noise low-passed at 8 kHz (a guitar-like band)."""
    rng = np.random.default_rng(seed)
    b, a = butter(4, 8000 / (SR / 2))
    return torch.tensor(lfilter(b, a, rng.standard_normal((rows, n))) * level, dtype=torch.float32)


def _random_raw(topo, rows, seed=0, spread=0.5):
    g = torch.Generator().manual_seed(seed)
    return topo.default_raw().expand(rows, -1) + spread * torch.randn(rows, len(topo.CONTROLS), generator=g)


def _esr(a, b):
    return float(((a - b) ** 2).sum() / (b ** 2).sum())


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_finite_and_gradients(name):
    """Every optional section on: every control and every learnable shared value gets a
    finite gradient. The amp's band chain runs without the first stage's band split, so
    it is checked on its own: with it on, the split's values are the unused ones."""
    topo = make_topology(name, SR, oversample=2)
    switches = list(topo.VARIANTS) + topo.switches()
    chained = [0.0, 1.0] if "band_chain" in topo.VARIANTS else [0.0]
    for chain in chained:
        with torch.no_grad():  # the optional sections' controls act only when they are on
            for k in topo.switches():
                topo.shared[k].fill_(1.0)
            for k in topo.VARIANTS:  # 0/1 structural choices; the amp's drive section is one
                topo.shared[k].fill_(1.0)
            if "band_chain" in topo.VARIANTS:
                topo.shared["band_chain"].fill_(chain)
        unused = (("band_split",) if chain else ("band_chain",))
        unused_values = {k for k in topo.shared if (k.startswith(("band1_", "band2_", "band3_", "band4_", "log_xo"))
                                                     if chain else k.startswith("log_cxo"))}
        assert not topo.inert_controls()
        topo.zero_grad()
        raw = _random_raw(topo, 3).requires_grad_(True)
        x = _bandlimited_noise(3, 4800)
        y = topo(x, raw)
        assert y.shape == (3, 4800)
        assert torch.isfinite(y).all()
        y.pow(2).mean().backward()
        assert torch.isfinite(raw.grad).all()
        # every control moves the output (no dead control at a generic setting)
        dead = [c.name for c, g in zip(topo.CONTROLS, raw.grad.abs().sum(0)) if g == 0]
        assert not dead, dead
        for k, p in topo.shared.items():
            if k in switches:  # structural switches: chosen by the fitter, never trained
                assert not p.requires_grad and p.grad is None
            elif k in unused_values:  # the section that is not used in this arrangement
                assert p.grad is None or float(p.grad.abs().sum()) == 0.0, (unused, k)
            else:
                assert p.grad is not None and torch.isfinite(p.grad).all(), k


@pytest.mark.parametrize("name", NAMES)
def test_one_dimensional_input_broadcasts_over_controls(name):
    topo = make_topology(name, SR, oversample=1)
    raw = _random_raw(topo, 2)
    x = _bandlimited_noise(1, 2048)[0]
    y = topo(x, raw)
    assert y.shape == (2, 2048)


# Exact path (float64 render) against the training path (float32 signal): both are the
# recursive filters and the FIR resampler, so they differ only by float32 rounding of
# the signal between sections (measured ~1e-13 ESR).
TOL = {("drive", 1): 1e-9, ("drive", 2): 1e-9, ("amp", 1): 1e-9, ("amp", 2): 1e-9,
       ("eq_match", 1): 1e-9}


@pytest.mark.parametrize("name,factor", sorted(TOL))
def test_exact_path_agrees_with_training_path(name, factor):
    topo = make_topology(name, SR, oversample=factor)
    raw = _random_raw(topo, 3, seed=1, spread=0.3)
    x = _bandlimited_noise(3, 24000, seed=2)
    with torch.no_grad():
        y_train = topo(x, raw).double()
        y_exact = topo(x, raw, exact=True)
    assert y_exact.dtype == torch.float64
    assert _esr(y_train, y_exact) < TOL[(name, factor)]


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_one_by_one(name):
    topo = make_topology(name, SR, oversample=2)
    raw = _random_raw(topo, 3, seed=3)
    x = _bandlimited_noise(3, 4096, seed=4)
    with torch.no_grad():
        yb = topo(x, raw)
        ys = torch.cat([topo(x[i: i + 1], raw[i: i + 1]) for i in range(3)])
    for i in range(3):  # float32 FFT rounding differs with the batch size only
        assert _esr(yb[i], ys[i]) < 1e-9


def test_control_spec_raw_physical_round_trip():
    for spec in (ControlSpec("f_hz", "Hz", 20.0, 20000.0, 1000.0, "log"),
                 ControlSpec("g_db", "dB", -24.0, 24.0, 0.0)):
        span = spec.maximum - spec.minimum
        v = torch.tensor([spec.minimum + 0.01 * span, spec.default, spec.maximum - 0.01 * span])
        back = spec.to_physical(spec.to_raw(v))
        torch.testing.assert_close(back, v.double(), rtol=1e-6, atol=1e-6)
        lo = float(spec.to_physical(torch.tensor(-50.0, dtype=torch.float64)))
        hi = float(spec.to_physical(torch.tensor(50.0, dtype=torch.float64)))
        assert lo >= spec.minimum - 1e-9 * span and hi <= spec.maximum + 1e-9 * span


def test_get_controls_maps_in_physical_units():
    topo = make_topology("drive", SR)
    raw = topo.raw_from_physical({"pre_gain_db": 33.0, "input_hp_hz": 720.0}, batch=2)
    c = topo.get_controls(raw)
    assert abs(float(c["pre_gain_db"][0]) - 33.0) < 1e-3
    assert abs(float(c["input_hp_hz"][1]) - 720.0) < 0.1
    assert abs(float(c["dry_mix"][0]) - topo.spec("dry_mix").default) < 1e-4


def _drive(values, factor, x):
    """The drive's core chain (the blend tone off: these tests are about the clipper)."""
    topo = make_topology("drive", SR, oversample=factor)
    with torch.no_grad():
        topo.shared["blend_tone"].fill_(0.0)
        return topo(x, topo.raw_from_physical(values), exact=True)[0].numpy()


def test_oversampling_reduces_aliasing():
    """A 5 kHz sine through a hard, high-gain clipper: energy off the harmonic grid
    (aliases) drops with oversampling."""
    n = 48000
    t = np.arange(n) / SR
    f0 = 4999.0
    x = torch.tensor(0.5 * np.sin(2 * np.pi * f0 * t))[None]
    v = dict(pre_gain_db=40.0, clip_knee=10.0, dry_mix=0.0, input_hp_hz=20.0, gain_lp_hz=20000.0,
             tone_lp_hz=20000.0)

    def alias_ratio(y):
        Y = np.abs(np.fft.rfft(y[4800:] * np.hanning(n - 4800))) ** 2
        f = np.fft.rfftfreq(n - 4800, 1 / SR)
        harm = np.zeros_like(Y, dtype=bool)
        for k in range(1, int(24000 / f0) + 1):
            harm |= np.abs(f - k * f0) < 30
        return Y[~harm].sum() / Y[harm].sum()

    r1, r4 = alias_ratio(_drive(v, 1, x)), alias_ratio(_drive(v, 4, x))
    assert r4 < 0.1 * r1


def test_series_hard_clipper_is_bounded_and_ts_dry_path_passes_small_signals():
    x = torch.tensor(np.sin(2 * np.pi * 440 * np.arange(24000) / SR))[None]
    hard = _drive(dict(pre_gain_db=40.0, clip_knee=12.0, clip_asym=0.0, dry_mix=0.0,
                       tone_lp_hz=20000.0, level_db=0.0), 2, x)
    # a +-1 square wave (level 0 dB), band-limited: RMS ~ 1, Gibbs overshoot only
    assert 0.93 < np.sqrt(np.mean(hard[4800:] ** 2)) < 1.03
    assert np.abs(hard[4800:]).max() < 1.35
    # TS style at low drive, tiny input: y ~ (dry_mix + G) x in the pass band
    small = _drive(dict(pre_gain_db=0.0, dry_mix=1.0, input_hp_hz=20.0, gain_lp_hz=20000.0,
                        tone_lp_hz=20000.0, level_db=0.0), 1, 1e-3 * x)
    gain = np.abs(small[4800:]).max() / 1e-3
    assert 1.8 < gain < 2.1


def test_gradcheck_float64_drive():
    topo = make_topology("drive", SR, oversample=1).double()
    x = _bandlimited_noise(1, 256, seed=5).double()
    raw0 = _random_raw(topo, 1, seed=6, spread=0.2).double()
    assert torch.autograd.gradcheck(lambda r: topo(x, r)[:, ::16], (raw0.requires_grad_(True),),
                                    eps=1e-6, atol=1e-5, rtol=1e-3)


def _amp_drive_topo(oversample=2):
    topo = make_topology("amp", SR, oversample=oversample).double()
    with torch.no_grad():
        topo.shared["drive_section"].fill_(1.0)
    return topo


def test_amp_drive_section_at_mix_0_is_the_plain_amp():
    """With the drive section on and its mix at 0 the amp computes what it computes
    without the section (the pre-gain moves after the upsampler: rounding only); with
    the section off its controls are inert, and the fitter is told so."""
    topo = _amp_drive_topo()
    raw = _random_raw(topo, 2, seed=7, spread=0.3).double()
    x = _bandlimited_noise(2, 9600, seed=8).double()
    with torch.no_grad():
        c = topo.get_controls(raw)
        c["drive_mix"] = torch.zeros(2, dtype=torch.float64)
        y_on = topo.get_signal(x, c, exact=True)
        c["drive_mix"] = torch.full((2,), 0.7, dtype=torch.float64)
        y_mixed = topo.get_signal(x, c, exact=True)
        topo.shared["drive_section"].fill_(0.0)
        c = topo.get_controls(raw)
        y_off = topo.get_signal(x, c, exact=True)
        c["drive_mix"], c["drive_db"] = torch.full((2,), 0.7).double(), torch.full((2,), 40.0).double()
        y_off_moved = topo.get_signal(x, c, exact=True)
    assert _esr(y_on, y_off) < 1e-20  # float64 rounding (measured ~1e-23)
    assert _esr(y_mixed, y_off) > 1e-3
    assert torch.equal(y_off, y_off_moved)
    assert set(topo.inert_controls()) == {"drive_mix", "drive_db", "tone_blend", "blend_lp_hz", "blend_hp_hz"}
    topo.shared["blend_tone"].data.fill_(1.0)  # the blend tone's controls are inert only while it is off
    assert set(topo.inert_controls()) == {"drive_mix", "drive_db"}


@pytest.mark.parametrize("v2", [1.0, 0.0])
def test_amp_drive_section_passes_small_signals_and_clips_loud_ones(v2):
    """All wet (mix 1), band levels 0 dB: a quiet sine comes out ``drive_db`` louder (the
    four bands sum to an all-pass, each band's clipper is linear near 0), less what the
    second form's band limits (a one-pole low-pass and high-pass, before the split and
    again after the sum) take at its frequency; a loud one is bounded by the sum of the
    band clippers' ceilings (2/3 each in the second form, 1 in the first)."""
    from dsp.filters import onepole_coeffs
    from dsp.topologies import _Path

    topo = _amp_drive_topo()
    with torch.no_grad():
        topo.shared["drive_section_v2"].fill_(v2)
    n = 24000
    rs = SR * 2  # the section runs at the oversampled rate
    t = np.arange(n * 2) / rs
    c = {k: v.double() for k, v in topo.get_controls(topo.default_raw()[None].double()).items()}
    c["drive_mix"] = torch.ones(1, dtype=torch.float64)
    c["drive_db"] = torch.full((1,), 20.0, dtype=torch.float64)
    p = _Path(True, n, SR, 2)
    limits = [onepole_coeffs(kind, rs, c[k]) for kind, k in (("lowpass", "dlp_hz"), ("highpass", "dhp_hz"))]
    for f in (150.0, 700.0, 2000.0, 6000.0):  # one in each band
        quiet = torch.tensor(1e-4 * np.sin(2 * np.pi * f * t))[None]
        with torch.no_grad():
            y = topo._drive(quiet, c, p)[0, 12000:].numpy()
        gain_db = 20 * np.log10(np.sqrt(2 * np.mean(y ** 2)) / 1e-4)
        want = 20.0
        if v2:
            for b, a in limits:
                zi = np.exp(-2j * np.pi * f / rs)  # z^-1 on the unit circle
                h = np.polyval(b.detach().numpy().reshape(-1)[::-1], zi) / np.polyval(a.detach().numpy().reshape(-1)[::-1], zi)
                want += 2 * 20 * np.log10(abs(h))
        assert abs(gain_db - want) < 0.05, (f, gain_db, want)
    ceiling = 4 * (2 / 3 if v2 else 1.0)
    loud = torch.tensor(3.0 * np.sin(2 * np.pi * 700.0 * t))[None]
    with torch.no_grad():
        y = topo._drive(loud, c, p)[0, 12000:].numpy()
    assert 0.5 < np.abs(y).max() <= 1.05 * ceiling, np.abs(y).max()


def test_amp_drive_section_v2_keeps_the_dry_signal_to_the_middle_of_the_mix():
    """Second form: up to a mix of 0.5 the dry signal is at full level and the wet one
    comes in (0.5 is dry + wet), then the dry one fades out; at 0 it is the dry signal,
    at 1 the wet one. Each band's drive follows ``drive_db`` times its own slope."""
    from dsp.topologies import _Path

    topo = _amp_drive_topo()
    assert float(topo.shared["drive_section_v2"]) == 1.0  # on in a new topology
    n = 4800
    p = _Path(True, n, SR, 2)
    v = _bandlimited_noise(1, 2 * n, seed=11).double() * 0.3
    c = {k: x.double() for k, x in topo.get_controls(topo.default_raw()[None].double()).items()}
    c["drive_db"] = torch.full((1,), 18.0, dtype=torch.float64)

    def at(mix):
        c["drive_mix"] = torch.full((1,), mix, dtype=torch.float64)
        with torch.no_grad():
            return topo._drive(v, c, p)

    wet = at(1.0)
    assert torch.equal(at(0.0), v)
    assert torch.allclose(at(0.5), v + wet, atol=1e-15)
    assert torch.allclose(at(0.25), v + 0.5 * wet, atol=1e-15)
    assert torch.allclose(at(0.75), 0.5 * v + wet, atol=1e-15)
    c["drive_db"] = torch.full((1,), 30.0, dtype=torch.float64)
    assert _esr(at(1.0), wet) > 1e-3  # the bands' drive follows drive_db ...
    with torch.no_grad():  # ... times their slopes: at 0, drive_db moves nothing
        for k in range(4):
            topo.shared[f"drive_band{k + 1}_slope"].fill_(0.0)
    c.update({k: x.double() for k, x in topo.get_controls(topo.default_raw()[None].double()).items()
              if k.startswith("drive_band")})
    flat = at(1.0)
    c["drive_db"] = torch.full((1,), 18.0, dtype=torch.float64)
    assert torch.equal(at(1.0), flat)


def test_gradcheck_float64_amp_with_the_drive_section():
    topo = _amp_drive_topo(oversample=1)
    x = _bandlimited_noise(1, 256, seed=9).double()
    raw0 = _random_raw(topo, 1, seed=10, spread=0.2).double()
    assert torch.autograd.gradcheck(lambda r: topo(x, r)[:, ::16], (raw0.requires_grad_(True),),
                                    eps=1e-6, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_structural_options_are_the_topologys_variants_and_off_by_default(name):
    """The rig file is checked against ``dsp.structure`` (no torch); each option is a
    variant of the topology with a shared value that starts at 0 and maps to 0/1."""
    from dsp.structure import STRUCTURE

    topo = make_topology(name, SR)
    assert {o.name: o.tried for o in STRUCTURE[name]} == topo.VARIANTS
    for k in topo.VARIANTS:
        assert float(topo.shared[k]) == 0.0 and not topo.shared[k].requires_grad
        with torch.no_grad():
            topo.shared[k].fill_(0.7)
        assert float(topo.shared_physical()[k]) == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_small_signal_invariant_variants_leave_the_small_signal_response(name):
    """The fitter fits the small-signal response once for the variants declared
    ``SMALL_SIGNAL_INVARIANT`` (the amp's tone-stack position): at 1e-5 of full scale
    the impulse response is the same at every value, and at full level it is not."""
    topo = make_topology(name, SR, oversample=2)
    raw = _random_raw(topo, 2, seed=4)
    for k in topo.SMALL_SIGNAL_INVARIANT:
        out = {}
        for amp in (1e-5, 0.5):
            x = torch.zeros(2, 2048, dtype=torch.float64)
            x[:, 10] = amp
            h = []
            for v in topo.VARIANTS[k]:
                with torch.no_grad():
                    topo.shared[k].fill_(v)
                    h.append(topo(x, raw) / amp)
            out[amp] = _esr(h[0], h[1])
        assert out[1e-5] < 1e-6 and out[0.5] > 1e-3, (k, out)
    assert name != "amp" or topo.SMALL_SIGNAL_INVARIANT == ("tonestack_position",)


def test_amp_band_chain_runs_the_chain_once_per_band():
    """With the shared ``band_chain`` the amp's output is the sum of its chain run on
    each of five bands (``cxo1_hz``..``cxo4_hz``), each band with its own filter and
    sag states: at small signal that is one chain after the split's all-pass; loud, two
    tones far apart (110 Hz + 3.1 kHz, -12 dBFS each) intermodulate far less than in one
    chain (residual y(a + b) - y(a) - y(b): -16.7 dB against -1.9 dB, measured), while two
    close tones (2.9 + 3.1 kHz) still do in both (Guitarix's multiband amps; the
    structure probe's superposition measure)."""
    from dsp.topologies import CHAIN_BANDS, _Path, split_bands

    topo = make_topology("amp", SR, oversample=2)
    raw = topo.default_raw()[None].double()
    n = 9600
    t = np.arange(n) / SR

    def residual_db(f1, f2, chain):
        with torch.no_grad():
            topo.shared["band_chain"].fill_(chain)
            c = topo.get_controls(raw)
            y = lambda s: topo.get_signal(s, c, exact=True)[0, 2400:]  # noqa: E731
            a, b = (torch.tensor(0.25 * np.sin(2 * np.pi * f * t))[None] for f in (f1, f2))
            r = y(a + b) - y(a) - y(b)
            return 10 * np.log10(float((r ** 2).sum() / (y(a + b) ** 2).sum()))

    one = residual_db(110.0, 3100.0, 0.0), residual_db(2900.0, 3100.0, 0.0)
    per_band = residual_db(110.0, 3100.0, 1.0), residual_db(2900.0, 3100.0, 1.0)
    assert per_band[0] < one[0] - 10.0, (one, per_band)
    assert per_band[1] > -6.0 and one[1] > -6.0, (one, per_band)

    # the definition, at the oversampled rate: chain on each band, summed; small
    # signals: one chain after the all-pass (the bands' sum)
    p = _Path(True, 2 * n, SR, 2)
    with torch.no_grad():
        topo.shared["band_chain"].fill_(1.0)
        c = topo.get_controls(raw)
        u = torch.tensor(np.random.default_rng(3).standard_normal((1, 2 * n)) * 0.3)
        bands = split_bands(u, 2 * SR, [c[f"cxo{i + 1}_hz"].expand(1) for i in range(CHAIN_BANDS - 1)], p)
        assert bands.shape == (1, CHAIN_BANDS, 2 * n)
        want = sum(topo._chain(bands[:, k], c, p) for k in range(CHAIN_BANDS))
        assert _esr(topo._band_chain(u, c, p), want) < 1e-24
        small = u * 1e-6
        allpassed = split_bands(small, 2 * SR, [c[f"cxo{i + 1}_hz"].expand(1) for i in range(CHAIN_BANDS - 1)], p).sum(1)
        assert _esr(topo._band_chain(small, c, p), topo._chain(allpassed, c, p)) < 1e-10

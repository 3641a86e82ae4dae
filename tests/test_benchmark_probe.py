"""The structure probe (benchmarks/structure_probe.py) and the experimental multiband
split (benchmarks/experiments/amp_multiband.py) measure what they claim, on systems
whose structure is known."""
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import structure_probe as sp  # noqa: E402


def _one_clipper(x):
    return np.tanh(4.0 * x)


def _two_bands(x):
    """An ideal split at 1 kHz, the same clipper on each band, summed."""
    X = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / sp.SR)
    lo = np.fft.irfft(np.where(f < 1000, X, 0), len(x))
    return _one_clipper(lo) + _one_clipper(x - lo)


def test_superposition_tells_a_band_split_from_one_clipper():
    far1, near1 = sp.superposition_db(_one_clipper, 110.0, 3100.0, -12.0), sp.superposition_db(_one_clipper, 2900.0, 3100.0, -12.0)
    far2, near2 = sp.superposition_db(_two_bands, 110.0, 3100.0, -12.0), sp.superposition_db(_two_bands, 2900.0, 3100.0, -12.0)
    assert abs(far1 - near1) < 3.0 and near1 > -20.0  # one clipper: both pairs interact
    assert far2 < -100.0 and near2 > -20.0            # split: the far pair superposes exactly


def test_thd_falls_with_level_only_for_a_shaper_smooth_at_the_origin():
    smooth = sp.thd_db(np.tanh, 1000.0, -26.0), sp.thd_db(np.tanh, 1000.0, -6.0)
    kinked = (lambda x: np.sign(x) * np.abs(x) ** 0.7)
    kink = sp.thd_db(kinked, 1000.0, -26.0), sp.thd_db(kinked, 1000.0, -6.0)
    assert smooth[1] - smooth[0] > 30.0
    assert abs(kink[1] - kink[0]) < 1.0


def test_folded_harmonics_are_found_and_a_linear_system_has_none():
    assert sp.aliasing_db(lambda x: x, 4100.0, -6.0) < -100.0
    assert sp.aliasing_db(lambda x: np.clip(4 * x, -0.5, 0.5), 4100.0, -6.0) > -40.0


def test_the_experimental_multiband_split_sums_to_an_allpass_and_install_is_scoped():
    torch = pytest.importorskip("torch")
    from dsp import topologies as T
    from experiments import amp_multiband as mb

    before = T.TOPOLOGIES["amp"]
    p = T._Path(False, 4096, 48000.0, 1)
    x = torch.zeros(1, 4096, dtype=torch.float64)
    x[0, 0] = 1.0
    xo = [torch.tensor([f], dtype=torch.float64) for f in (150.0, 2000.0)]
    bands = T.split_bands(x, 48000.0, xo, p)
    assert bands.shape == (1, 3, 4096)
    mag = torch.fft.rfft(bands.sum(1)[0]).abs()
    assert float((mag - 1).abs().max()) < 1e-6
    # each band is a band: the top one holds little below the lower crossover
    B = torch.fft.rfft(bands[0, 0]).abs()
    f = torch.fft.rfftfreq(4096, 1 / 48000.0)
    assert float(B[(f > 20) & (f < 100)].max()) < 0.05
    try:
        cls = mb.install(mb.GUITARIX_CROSSOVERS_HZ)
        topo = T.make_topology("amp", 48000.0, 2)
        assert isinstance(topo, cls) and "xo4_hz" in topo.shared_physical()
        y = topo(torch.randn(1, 2048, dtype=torch.float64) * 0.1, topo.default_raw()[None])
        assert y.shape == (1, 2048) and bool(torch.isfinite(y).all())
        # with no crossovers the experiment is the product amp, sample for sample
        one = mb.install(())(48000.0, 2)
        prod = before(48000.0, 2)
        xin = torch.randn(2, 2048, dtype=torch.float64) * 0.3
        raw = prod.default_raw().expand(2, -1)
        assert torch.allclose(one(xin, raw, exact=True), prod(xin, raw, exact=True), atol=1e-12)
    finally:
        T.TOPOLOGIES["amp"] = before

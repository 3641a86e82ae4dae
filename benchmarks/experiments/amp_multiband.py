"""Experiment: a multiband ``amp`` (split, run the nonlinear chain per band, sum).

Guitarix's Studio Preamp does not superpose like one clipper (``python
benchmarks/structure_probe.py``): two tones far apart distort far less together than
two tones close together, the signature of a band split in front of the nonlinearity.
This experiment asks how much of the Studio Preamp's ESR such a split would remove:

    u = G · HP1(in_hp_hz) x                            (as in the amp, oversampled)
    bands = delay-equalised Butterworth-3 crossover tree at xo1 < xo2 < ... (shared,
            learnable, log domain): the top band is HP3(xo_top) u, the rest LP3(xo_top) u
            is split again; every band is then passed through the all-passes
            (HP3 + LP3 = 2nd-order all-pass, Q = 1) of the crossovers below it, so the
            bands sum to an all-pass of u
    y = post( Σ_bands chain(band) )                    front, chain, post: the product
                                                       amp's own stages (AmpTopology's
                                                       _front/_chain/_post), the controls
                                                       shared by every band

The product amp now keeps its output DC itself where the captures carry it (a
learnable push-pull imbalance, the output high-pass behind the shared ``output_dc``;
the fitter decides from the captures), so this experiment no longer has its own.
With no crossovers the split is the identity: the product's amp. (The product amp has
its own, cheaper band split, in front of its first tube stage only: the shared
``band_split``, and since session 18 the whole chain per band as an option, the shared
``band_chain``, five bands from Guitarix's crossovers; this experiment runs the same
per-band chain, ``AmpTopology._chain_per_band``, at any crossovers it is given, with
the product's split held off.)

``install(crossovers_hz)`` swaps :class:`MultibandAmp` in for the ``amp`` topology in
this process only (the fitter makes topologies by name). Training costs about 3.5x the
single-band amp with 5 bands.
"""
from __future__ import annotations

import math

import torch

from dsp import topologies as T

GUITARIX_CROSSOVERS_HZ = (86.0, 210.0, 1200.0, 6531.0)  # gx_studiopre.dsp's fi.filterbank
GENERIC_CROSSOVERS_HZ = (100.0, 300.0, 1000.0, 3000.0)


def make_class(crossovers_hz: tuple[float, ...]):
    n = len(crossovers_hz)

    class MultibandAmp(T.AmpTopology):
        def _shared_init(self):
            d = super()._shared_init()
            d.update({f"log_xo{i + 1}_hz": math.log(f) for i, f in enumerate(crossovers_hz)})
            return d

        def _shared_physical(self):
            out = super()._shared_physical()
            for i in range(n):
                out[f"xo{i + 1}_hz"] = torch.exp(self.shared[f"log_xo{i + 1}_hz"]).clamp(20.0, 15000.0)
            return out

        def _signal(self, x, c, p):
            c = dict(c, band_split=torch.zeros_like(c["band_split"]))
            # the product amp's own stages, with the band split between front and chain
            # (the product's band chain, at this experiment's crossovers)
            u = self._front(x, c, p)
            if n:
                B = x.shape[0]
                bands = T.split_bands(u, p.sr * p.os, [c[f"xo{i + 1}_hz"].expand(B) for i in range(n)], p)
                y = self._chain_per_band(bands, c, p)
            else:
                y = self._chain(u, c, p)
            return self._post(y, c, p)

    return MultibandAmp


def install(crossovers_hz: tuple[float, ...]) -> type:
    """Make ``make_topology("amp")`` build the multiband amp in this process."""
    cls = make_class(tuple(crossovers_hz))
    _self_check(cls)
    T.TOPOLOGIES["amp"] = cls
    return cls


def _self_check(cls) -> None:
    """The split must sum to an all-pass (|H| = 1 within 1e-6), or the experiment lies."""
    p = T._Path(False, 8192, 48000.0, 1)
    x = torch.zeros(1, 8192, dtype=torch.float64)
    x[0, 0] = 1.0
    xo = [torch.tensor([f], dtype=torch.float64) for f in GUITARIX_CROSSOVERS_HZ]
    mag = torch.fft.rfft(T.split_bands(x, 48000.0, xo, p).sum(1)[0]).abs()
    assert float((mag - 1).abs().max()) < 1e-6, "multiband split is not all-pass"

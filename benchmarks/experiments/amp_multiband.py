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
    y = post( Σ_bands chain(band) )                    chain: the amp from tube 1 to the
                                                       push-pull stage, one copy of its
                                                       controls for every band

With ``output_dc`` the output keeps its DC: the push-pull stage gets a learnable
imbalance (shared, ``pa_imbalance``; balanced push-pull is odd-symmetric and makes no
DC or even harmonics) and the fixed 5 Hz output high-pass is left out. Guitarix's
Studio Preamp has no DC blocker after its last (asymmetric) clipper: its output's mean
follows the signal's level (up to a third of the RMS at Master 10).
With no crossovers the split is the identity: the product's amp, plus ``output_dc``.

``install(crossovers_hz, output_dc)`` swaps :class:`MultibandAmp` in for the ``amp`` topology in
this process only (the fitter makes topologies by name). Training costs about 3.5x the
single-band amp with 5 bands.
"""
from __future__ import annotations

import math

import torch

from dsp import topologies as T
from dsp.dynamics import envelope_rms, sag_gain
from dsp.filters import biquad_coeffs, onepole_coeffs
from dsp.shapers import push_pull, tube_stage
from dsp.tonestack import tonestack_coeffs

GUITARIX_CROSSOVERS_HZ = (86.0, 210.0, 1200.0, 6531.0)  # gx_studiopre.dsp's fi.filterbank
GENERIC_CROSSOVERS_HZ = (100.0, 300.0, 1000.0, 3000.0)


def split(u: torch.Tensor, rate: float, crossovers: list[torch.Tensor], path) -> torch.Tensor:
    """``u`` (B, T) -> (B, len(crossovers) + 1, T), top band first; the bands sum to an
    all-pass of ``u`` (checked in :func:`_self_check`)."""
    order = sorted(range(len(crossovers)), key=lambda i: -float(crossovers[i].detach().reshape(-1)[0]))
    bands, rest = [], u
    for i in order:
        f = crossovers[i]
        bands.append(path.lin(rest, [onepole_coeffs("highpass", rate, f), biquad_coeffs("highpass", rate, f, 1.0)]))
        rest = path.lin(rest, [onepole_coeffs("lowpass", rate, f), biquad_coeffs("lowpass", rate, f, 1.0)])
    bands.append(rest)
    out = []
    for k, b in enumerate(bands):
        lower = order[k + 1:]
        if lower:
            b = path.lin(b, [biquad_coeffs("allpass", rate, crossovers[i], 1.0) for i in lower])
        out.append(b)
    return torch.stack(out, 1)


def make_class(crossovers_hz: tuple[float, ...], output_dc: bool = False):
    n = len(crossovers_hz)

    class MultibandAmp(T.AmpTopology):
        def _shared_init(self):
            d = super()._shared_init()
            d.update({f"log_xo{i + 1}_hz": math.log(f) for i, f in enumerate(crossovers_hz)})
            if output_dc:
                d["pa_imbalance"] = 0.0
            return d

        def _shared_physical(self):
            out = super()._shared_physical()
            for i in range(n):
                out[f"xo{i + 1}_hz"] = torch.exp(self.shared[f"log_xo{i + 1}_hz"]).clamp(20.0, 15000.0)
            if output_dc:
                out["pa_imbalance"] = torch.tanh(self.shared["pa_imbalance"])
            return out

        def _signal(self, x, c, p):
            sr, os_ = p.sr, p.os
            rs = sr * os_
            B = x.shape[0]
            u = p.lin(x, [onepole_coeffs("highpass", sr, c["in_hp_hz"])], gain=T._db(c["pre_gain_db"]), up=os_)
            bands = split(u, rs, [c[f"xo{i + 1}_hz"].expand(B) for i in range(n)], p)
            nb = bands.shape[1]
            u = bands.reshape(B * nb, -1)
            cb = {k: (v.repeat_interleave(nb, 0) if v.dim() >= 1 and v.shape[0] == B else v) for k, v in c.items()}
            col = lambda k: cb[k][:, None].to(x.dtype)  # noqa: E731
            one = torch.ones_like(u[:, :1])
            u = tube_stage(u, col("tube1_bias"), one, one)
            dt = torch.float64
            comp = {k: cb[k].to(dt).expand(B * nb) for k in T.AMP_TONESTACK_INIT}
            ts = tonestack_coeffs(rs, T._taper(cb["tonestack_treble"], cb["taper_treble"].to(dt)),
                                  T._taper(cb["tonestack_mid"], cb["taper_mid"].to(dt)),
                                  T._taper(cb["tonestack_bass"], cb["taper_bass"].to(dt)), **comp)
            between = bool(cb["tonestack_position"].reshape(-1)[0] > 0.5)
            inter1 = [onepole_coeffs("highpass", rs, cb["inter1_hp_hz"]), onepole_coeffs("lowpass", rs, cb["inter1_lp_hz"])]
            inter2 = [onepole_coeffs("highpass", rs, cb["inter2_hp_hz"]), onepole_coeffs("lowpass", rs, cb["inter2_lp_hz"])]
            u = p.lin(u, inter1 + ([ts] if between else []), gain=T._db(cb["stage2_gain_db"]))
            u = tube_stage(u, col("tube2_bias"), one, one)
            u = p.lin(u, inter2 + ([] if between else [ts]), gain=T._db(cb["post_gain_db"]))
            g = sag_gain(envelope_rms(u, rs, cb["sag_time_s"]), col("sag_depth"), col("sag_threshold")).to(x.dtype)
            imb = cb["pa_imbalance"].to(x.dtype) if output_dc else 0.0
            u = push_pull(u * g * T._db(col("master_db")), col("pa_bias"), col("pa_crossover"), col("pa_level"), imb)
            u = u.reshape(B, nb, -1).sum(1)
            post = [biquad_coeffs("highshelf", rs, c["presence_hz"], 0.7071, c["presence_db"]),
                    biquad_coeffs("peak", rs, c["depth_hz"], 0.9, c["depth_db"])]
            if not output_dc:
                post.append(onepole_coeffs("highpass", rs, torch.full_like(c["depth_hz"], 5.0)))
            return p.lin(u, post, gain=T._db(c["level_db"]), down=os_)

    return MultibandAmp


def install(crossovers_hz: tuple[float, ...], output_dc: bool = False) -> type:
    """Make ``make_topology("amp")`` build the multiband amp in this process."""
    cls = make_class(tuple(crossovers_hz), output_dc)
    _self_check(cls)
    T.TOPOLOGIES["amp"] = cls
    return cls


def _self_check(cls) -> None:
    """The split must sum to an all-pass (|H| = 1 within 1e-6), or the experiment lies."""
    p = T._Path(False, 8192, 48000.0, 1)
    x = torch.zeros(1, 8192, dtype=torch.float64)
    x[0, 0] = 1.0
    xo = [torch.tensor([f], dtype=torch.float64) for f in GUITARIX_CROSSOVERS_HZ]
    mag = torch.fft.rfft(split(x, 48000.0, xo, p).sum(1)[0]).abs()
    assert float((mag - 1).abs().max()) < 1e-6, "multiband split is not all-pass"

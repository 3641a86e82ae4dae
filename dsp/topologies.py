"""Grey-box topologies: differentiable DSP chains with physical controls.

Each topology is a ``torch.nn.Module`` in the DDSP style:

* it declares its DSP controls (:class:`ControlSpec`: name, unit, physical range,
  default) in ``CONTROLS``;
* it receives RAW, unbounded control values ``raw`` of shape ``(B, C)`` (one row per
  batch item, so a batch can hold different knob settings) and maps them in ONE place,
  :meth:`Topology.get_controls`, to physical values (Hz, dB, fractions), a dict of
  ``(B,)`` tensors;
* :meth:`Topology.get_signal` makes the audio from ``x`` of shape ``(B, T)`` and the
  physical controls;
* it owns a few *shared* parameters that no knob moves (tone-stack component values,
  pot tapers, tube-stage knee), also raw and mapped in ``get_controls``.

One signal path for training and render: every linear section between two
nonlinearities is the exact recursion :func:`dsp.filters.iir_filter` (float64
accumulation, exact adjoint gradients: measured faster than frequency-domain filtering
on CPU, and what C++ runs), oversampling is the windowed-sinc FIR of
:func:`dsp.shapers.upsample` / :func:`dsp.shapers.downsample`. ``exact=True`` renders in
float64 with detached controls; training runs the float32 signal through the same
definition (agreement ~1e-13 ESR, see tests/test_dsp_topologies.py). Filter
coefficients are always designed in float64 (``get_signal`` promotes the controls).

DSP blocks come from :mod:`dsp.filters`, :mod:`dsp.tonestack`, :mod:`dsp.shapers` and
:mod:`dsp.dynamics`: this module only wires them and owns the parameters.

References:
    Engel et al., "DDSP: Differentiable Digital Signal Processing", ICLR 2020.
    Yeh & Smith, "Discretization of the '59 Fender Bassman tone stack", DAFx 2006.
    R. Bristow-Johnson, "Audio EQ Cookbook" (biquad prototypes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from dsp.dynamics import envelope_rms, sag_gain
from dsp.filters import biquad_coeffs, blend_coeffs, fir_filter, iir_filter, onepole_coeffs, resample_fir
from dsp.shapers import asym_soft_clip, cubic_clip, downsample, push_pull, table_shaper, tube_stage, upsample
from dsp.tonestack import tonestack_coeffs
from dsp.structure import STRUCTURE

__all__ = [
    "ControlSpec",
    "Topology",
    "DriveTopology",
    "AmpTopology",
    "EqMatchTopology",
    "TOPOLOGIES",
    "make_topology",
]

# --------------------------------------------------------------------------------------
# DSP blocks: the library in dsp.filters / dsp.tonestack / dsp.shapers. push_pull's
# meaning (bias > 0 warm, < 0 cold dead zone; crossover = turn-on corner width) is the
# library's, see dsp.shapers.push_pull.
# --------------------------------------------------------------------------------------


def _q(x, ref):
    return torch.as_tensor(x, dtype=ref.dtype if torch.is_tensor(ref) else torch.float32)


def _taper(position, k):
    """Pot taper ``expm1(k p) / expm1(k)``: k -> 0 linear, k ~ 3.4 audio (log) taper."""
    k = k.clamp_min(1e-3) if torch.is_tensor(k) else max(k, 1e-3)
    return torch.expm1(k * position) / torch.expm1(torch.as_tensor(k))


# --------------------------------------------------------------------------------------
# Linear sections: one path for training and render (recursive filters, FIR resampler).
# --------------------------------------------------------------------------------------


class _Path:
    """The computation path of a chain, for one call of ``get_signal``.

    Every linear section is the exact recursion :func:`dsp.filters.iir_filter` (float64
    accumulation, exact adjoint gradients) and resampling is the windowed-sinc FIR of
    :func:`dsp.shapers.upsample` / :func:`dsp.shapers.downsample`, in training and in
    render alike: what C++ runs is what was trained (measured on 2 CPU cores it is also
    faster than the frequency-domain path it replaced). ``exact=True`` only means a
    float64 signal and detached controls.
    """

    def __init__(self, exact: bool, length: int, sample_rate: float, oversample: int):
        self.exact = exact
        self.T = length
        self.sr = float(sample_rate)
        self.os = int(oversample)

    def lin(self, x, coeffs, gain=None, up=1, down=1):
        """``y = resample(gain * H(z) x)``; ``x`` at the base or the oversampled rate.

        ``coeffs``: list of ``(b, a)`` sections, each ``(B, order + 1)`` (float64)."""
        y = x
        for b, a in coeffs:
            y = iir_filter(y, b, a)
        if gain is not None:
            y = y * gain[:, None].to(y.dtype)
        if up > 1:
            y = upsample(y, up)
        if down > 1:
            y = downsample(y, down)
        return y


# --------------------------------------------------------------------------------------
# Controls
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlSpec:
    """One DSP control of a topology.

    Attributes:
        name: identifier with its unit in the name where it has one (``tone_lp_hz``).
        unit: "Hz", "dB", "s", "" (dimensionless) or "fraction".
        minimum, maximum: the physical range; raw values map into it by a sigmoid.
        default: the physical starting value.
        scale: "lin" or "log" (the sigmoid is linear in ``log(value)`` for "log").
        doc: what the control does.
    """

    name: str
    unit: str
    minimum: float
    maximum: float
    default: float
    scale: str = "lin"
    doc: str = ""

    def _lohi(self):
        if self.scale == "log":
            return math.log(self.minimum), math.log(self.maximum)
        return self.minimum, self.maximum

    def to_physical(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw (unbounded) -> physical: ``lo + (hi - lo) * sigmoid(raw)`` (log for "log")."""
        lo, hi = self._lohi()
        v = lo + (hi - lo) * torch.sigmoid(raw)
        return torch.exp(v) if self.scale == "log" else v

    def to_raw(self, value) -> torch.Tensor:
        """Physical -> raw, clamped 1e-4 inside the range."""
        lo, hi = self._lohi()
        v = torch.as_tensor(value, dtype=torch.float64)
        if self.scale == "log":
            v = torch.log(v)
        u = ((v - lo) / (hi - lo)).clamp(1e-4, 1 - 1e-4)
        return torch.log(u) - torch.log1p(-u)

    def to_dict(self) -> dict:
        return {"name": self.name, "unit": self.unit, "minimum": self.minimum,
                "maximum": self.maximum, "default": self.default, "scale": self.scale}


#: the optional output sections' controls (see ``Topology.ALLPASS`` / ``OUTPUT_LP``),
#: appended to a topology's ``CONTROLS``
ALLPASS_SPECS = (
        ControlSpec("ap1_hz", "Hz", 50.0, 20000.0, 1500.0, "log", "output all-pass 1 centre (-180 degrees)"),
        ControlSpec("ap1_q", "", 0.1, 5.0, 0.7, "log", "output all-pass 1 Q"),
        ControlSpec("ap2_hz", "Hz", 50.0, 20000.0, 8000.0, "log", "output all-pass 2 centre"),
        ControlSpec("ap2_q", "", 0.1, 5.0, 0.7, "log", "output all-pass 2 Q"),
)
OUTPUT_LP_SPECS = (
        ControlSpec("out_lp1_hz", "Hz", 1000.0, 20000.0, 12000.0, "log", "output low-pass 1 cut-off"),
        ControlSpec("out_lp1_q", "", 0.3, 3.0, 0.7, "log", "output low-pass 1 Q"),
        ControlSpec("out_lp2_hz", "Hz", 1000.0, 20000.0, 12000.0, "log", "output low-pass 2 cut-off"),
        ControlSpec("out_lp2_q", "", 0.3, 3.0, 0.7, "log", "output low-pass 2 Q"),
)
#: the amp's second all-pass pair (``Topology.ALLPASS_SECTIONS`` = 4), appended last
ALLPASS2_SPECS = (
        ControlSpec("ap3_hz", "Hz", 50.0, 20000.0, 400.0, "log", "output all-pass 3 centre"),
        ControlSpec("ap3_q", "", 0.1, 5.0, 0.7, "log", "output all-pass 3 Q"),
        ControlSpec("ap4_hz", "Hz", 50.0, 20000.0, 4000.0, "log", "output all-pass 4 centre"),
        ControlSpec("ap4_q", "", 0.1, 5.0, 0.7, "log", "output all-pass 4 Q"),
)
ALLPASS_CONTROLS = tuple(c.name for c in ALLPASS_SPECS)
ALLPASS2_CONTROLS = tuple(c.name for c in ALLPASS2_SPECS)
OUTPUT_LP_CONTROLS = tuple(c.name for c in OUTPUT_LP_SPECS)


class Topology(nn.Module):
    """Base class. Subclasses define ``NAME``, ``CONTROLS``, ``_shared_init`` and
    ``_signal``.

    Args:
        sample_rate: default sample rate (Hz) when ``get_signal`` is given none.
        oversample: integer oversampling factor of the nonlinear part (default 2).
    """

    NAME = "base"
    #: a linear topology is initialised from the measured frequency response
    LINEAR = False
    CONTROLS: tuple[ControlSpec, ...] = ()
    #: controls worth a coarse multi-start search (non-convex in the loss)
    SEARCH: tuple[str, ...] = ()
    #: the control that is a pure output gain in dB (solved in closed form in searches)
    OUTPUT_GAIN = "level_db"
    #: controls a front-panel knob may drive: a knob without "affects" hints is
    #: restricted to these (the fitter then picks among them from its sweep); empty = all
    KNOB_CONTROLS: tuple[str, ...] = ()
    #: controls the fitter may give a knob together, as one candidate searched one
    #: control after the other (:meth:`dsp.fit.Fitter._infer_affects`): a tone control
    #: that tilts the spectrum needs several filter controls at once
    KNOB_GROUPS: tuple[tuple[str, ...], ...] = ()
    #: the filter controls the small-signal init fits to the capture's quiet response
    #: (gain staging and shaper controls stay at their defaults there); empty = all
    SMALL_SIGNAL: tuple[str, ...] = ()
    #: name prior for knobs with neither hints nor sweeps (chaos-only knobs):
    #: (keywords, controls); the first keyword found in the lower-cased knob name wins
    NAME_HINTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()
    #: structural choices: shared values (no gradient) the fitter tries at init,
    #: {name: (value, ...)}, from :data:`dsp.structure.STRUCTURE`; see AmpTopology
    VARIANTS: dict[str, tuple[float, ...]] = {}
    #: {variant: share}: turning the variant on must lower the init's loss by this share
    #: of the best loss without it (a section more must win clearly)
    VARIANT_MARGIN: dict[str, float] = {}
    #: the variants that only reorder linear filters, so the small-signal response is the
    #: same at every value (the fitter's small-signal init runs once for them)
    SMALL_SIGNAL_INVARIANT: tuple[str, ...] = ()
    #: the topology ends in an optional output all-pass (two 2nd-order sections, controls
    #: ``ap1_hz ap1_q ap2_hz ap2_q``), on when the shared value ``allpass`` is 1. It
    #: changes the phase only: a device that is not minimum-phase (Guitarix's amps carry
    #: all-pass lattices and crossover filter banks) cannot be matched by minimum-phase
    #: filters alone (``benchmarks/min_phase.py``: with the exact magnitude, ESR >= 0.69
    #: on its Studio Preamp, 0.51 on its MetalHead, at any delay). The fitter turns it on
    #: from the measured small-signal phase (:meth:`dsp.fit.Fitter._allpass_init`).
    ALLPASS = False
    #: 4: a second pair of all-pass sections (``ap3_* ap4_*``, shared switch ``allpass2``,
    #: set with ``allpass``): measured on Guitarix's Studio Preamp, the small-signal
    #: complex error went from 0.24 with two sections to 0.13 with four (floor 0.03)
    ALLPASS_SECTIONS = 2
    #: the topology's output runs through an optional steep low-pass (two 2nd-order
    #: sections, controls ``out_lp1_hz out_lp1_q out_lp2_hz out_lp2_q``) before the
    #: all-pass, on when the shared value ``output_lp`` is 1: a band limit steeper than
    #: the chain's own filters (measured on Guitarix's MetalHead: 67 dB between 4 and
    #: 12 kHz; without it the small-signal magnitude fit was 11 dB rms off). The fitter
    #: turns it on from the measured small-signal magnitude.
    OUTPUT_LP = False
    #: the topology's output may keep its DC: with the shared switch ``output_dc`` at 1
    #: the fixed 5 Hz high-pass at its end is left out. Real hardware recorded through
    #: an interface is AC-coupled; a digital device need not be (measured: 5 % of
    #: Guitarix's Studio Preamp's output power lies below 2 Hz, its median capture, up to
    #: 20 %; its last clipper is asymmetric and nothing blocks the DC after it). The
    #: fitter sets it from the captures (:meth:`dsp.fit.Fitter._output_dc_init`).
    OUTPUT_DC = False
    #: sections that are always on in a new fit, behind a shared switch only so that a
    #: twin saved before the section existed (no such shared value: off) renders as it did
    SWITCHES_ON: tuple[str, ...] = ()
    #: the topology's output may run through a fixed FIR (``output_fir_taps``, a buffer
    #: at the topology's ``sample_rate``; shared switch ``output_fir``), after every other
    #: section: the linear colouring no knob moves that the parametric filters cannot
    #: follow (a load box or a speaker-emulating output, a cabinet the device will not
    #: switch off). Measured on Guitarix's MetalHead, which ends in a 4x12 cabinet
    #: impulse response: a least-squares FIR after a fitted twin took the held-out ESR
    #: from 0.23 to 0.094 (1024 taps), 0.103 (256), 0.107 (128). The fitter solves it in
    #: closed form (:meth:`dsp.fit.Fitter._output_fir_solve`) and keeps it only where it
    #: helps; at another sample rate the taps are carried over by
    #: :func:`dsp.filters.resample_fir`.
    OUTPUT_FIR = False
    #: the output FIR's length in seconds (taps = round(OUTPUT_FIR_S * sample_rate))
    OUTPUT_FIR_S = 0.005

    def __init__(self, sample_rate: float = 48000.0, oversample: int = 2):
        super().__init__()
        self.sample_rate = float(sample_rate)
        self.oversample = int(oversample)
        init = dict(self._shared_init())
        init.update({k: 0.0 for k in self.VARIANTS})  # structural options start off
        init.update({k: float(k in self.SWITCHES_ON) for k in self.switches()})
        self.shared = nn.ParameterDict(
            {k: nn.Parameter(torch.tensor(float(v))) for k, v in init.items()})
        for k in list(self.VARIANTS) + self.switches():
            self.shared[k].requires_grad_(False)
        if self.OUTPUT_FIR:
            taps = torch.zeros(max(1, round(self.OUTPUT_FIR_S * self.sample_rate)), dtype=torch.float64)
            taps[0] = 1.0
            self.register_buffer("output_fir_taps", taps)

    def set_output_fir(self, taps) -> None:
        """Replace the output FIR's taps (at ``sample_rate``; any length). Taps of the
        same length are copied into the buffer in place, so a reference to it (the
        fitter's best-state tracking) stays valid."""
        new = torch.as_tensor(taps, dtype=torch.float64).detach()
        if new.shape == self.output_fir_taps.shape:
            with torch.no_grad():
                self.output_fir_taps.copy_(new)
        else:
            self.output_fir_taps = new.clone()

    def output_fir_at(self, sample_rate: float) -> torch.Tensor:
        """The output FIR's taps at ``sample_rate`` (:func:`dsp.filters.resample_fir`)."""
        if float(sample_rate) == self.sample_rate:
            return self.output_fir_taps
        return torch.from_numpy(resample_fir(self.output_fir_taps.cpu().numpy(), self.sample_rate,
                                             float(sample_rate)))

    @classmethod
    def switches(cls) -> list[str]:
        """The shared on/off values of the optional sections (no gradient)."""
        return ((["output_lp"] if cls.OUTPUT_LP else []) + (["allpass"] if cls.ALLPASS else [])
                + (["allpass2"] if cls.ALLPASS and cls.ALLPASS_SECTIONS == 4 else [])
                + (["output_dc"] if cls.OUTPUT_DC else []) + (["output_fir"] if cls.OUTPUT_FIR else [])
                + list(cls.SWITCHES_ON))

    def init_values(self) -> dict[str, float]:
        """Physical control values the fitter's init starts every candidate from (and does
        not search), given the shared switches as they are now."""
        return {}

    def inert_controls(self) -> tuple[str, ...]:
        """Controls that change nothing with the shared switches as they are now (a
        section that is off): the fitter does not offer them to a knob."""
        return ()

    def magnitude_values(self) -> dict[str, float]:
        """Shared values under which the small-signal magnitude response is the one the
        current values give, and cheaper to compute: the fitter's magnitude fits
        (:meth:`dsp.fit.Fitter._linear_fit`) run with them. Not the phase."""
        return {}

    def descent_init(self) -> bool:
        """With the shared switches as they are now, the fitter's init explains the
        reference capture by descent from the small-signal fit rather than by random
        search (:meth:`dsp.fit.Fitter._init_descent`): where one candidate costs several
        chains, the search is slow and lands worse than a few hundred Adam steps."""
        return False

    @classmethod
    def allpass_controls(cls) -> tuple[str, ...]:
        """The controls of the output all-pass sections (empty without them)."""
        if not cls.ALLPASS:
            return ()
        return ALLPASS_CONTROLS + (ALLPASS2_CONTROLS if cls.ALLPASS_SECTIONS == 4 else ())

    # -- declared controls ---------------------------------------------------------
    @classmethod
    def control_names(cls) -> list[str]:
        return [c.name for c in cls.CONTROLS]

    @classmethod
    def spec(cls, name: str) -> ControlSpec:
        for c in cls.CONTROLS:
            if c.name == name:
                return c
        raise KeyError(name)

    @classmethod
    def default_raw(cls) -> torch.Tensor:
        """``(C,)`` raw values of the declared defaults (float32)."""
        return torch.stack([c.to_raw(c.default) for c in cls.CONTROLS]).float()

    @classmethod
    def raw_from_physical(cls, values: dict[str, float], batch: int = 1) -> torch.Tensor:
        """``(batch, C)`` raw values; controls missing from ``values`` take the default."""
        row = torch.stack([c.to_raw(values.get(c.name, c.default)) for c in cls.CONTROLS]).float()
        return row.expand(batch, -1).clone()

    def _shared_init(self) -> dict[str, float]:
        return {}

    # -- the one raw -> physical map ------------------------------------------------
    #: the specs whose ranges squash raw controls: the class's ``CONTROLS`` unless an
    #: instance is given a fitted twin's own (:meth:`use_control_ranges`)
    control_specs: tuple[ControlSpec, ...] | None = None

    @classmethod
    def check_fitted_controls(cls, controls: list[dict], fix: str = "fit it again") -> None:
        """Raise ValueError unless a knob map's ``controls`` name the class's controls,
        in its order (a twin fitted before a control was renamed or added); ``fix`` ends
        the message."""
        if [c["name"] for c in controls] != cls.control_names():
            raise ValueError(f"this {cls.NAME} twin was fitted with other controls "
                             f"({[c['name'] for c in controls]}); {fix}")

    def use_control_ranges(self, controls: list[dict]) -> None:
        """Squash raw controls with these ranges (a knob map's ``controls``: the ranges
        its twin was fitted with) instead of the class's, so a twin renders as it was
        fitted after a control's range changed. Names and order must be the class's."""
        self.check_fitted_controls(controls)
        self.control_specs = tuple(
            replace(spec, minimum=float(c["minimum"]), maximum=float(c["maximum"]), scale=str(c["scale"]))
            for spec, c in zip(self.CONTROLS, controls))

    def get_controls(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Map raw ``(B, C)`` to physical controls ``{name: (B,)}`` plus shared values."""
        specs = self.control_specs or self.CONTROLS
        out = {c.name: c.to_physical(raw[:, i]) for i, c in enumerate(specs)}
        out.update(self.shared_physical())
        return out

    def shared_physical(self) -> dict[str, torch.Tensor]:
        """The shared values in physical units (the subclass's, plus the structural
        options and the switches, 0/1)."""
        out = self._shared_physical()
        for k in [*self.VARIANTS, *self.switches()]:
            out[k] = (self.shared[k] > 0.5).to(self.shared[k].dtype)
        return out

    def _shared_physical(self) -> dict[str, torch.Tensor]:
        return {}

    def get_signal(self, x: torch.Tensor, controls: dict[str, torch.Tensor],
                   sample_rate: float | None = None, exact: bool = False) -> torch.Tensor:
        """Make the output ``(B, T)`` from ``x`` ``(B, T)`` (or ``(T,)``, broadcast)."""
        sr = float(sample_rate or self.sample_rate)
        B = next(iter(controls.values())).shape[0]
        if x.dim() == 1:
            x = x.expand(B, -1)
        path = _Path(exact, x.shape[-1], sr, self.oversample)
        # Controls in float64: filter coefficients at low cut-offs lose accuracy in float32
        # (1 - cos(w0) cancels); the signal stays in its own dtype (float32 to train).
        controls = {k: v.double() for k, v in controls.items()}
        if exact:
            controls = {k: v.detach() for k, v in controls.items()}
            x = x.detach().double()
        y = self._signal(x, controls, path)
        c = controls
        if self.OUTPUT_LP and _on(c, "output_lp"):
            y = path.lin(y, [biquad_coeffs("lowpass", sr, c["out_lp1_hz"], c["out_lp1_q"]),
                             biquad_coeffs("lowpass", sr, c["out_lp2_hz"], c["out_lp2_q"])])
        if self.ALLPASS and _on(c, "allpass"):
            y = path.lin(y, [biquad_coeffs("allpass", sr, c["ap1_hz"], c["ap1_q"]),
                             biquad_coeffs("allpass", sr, c["ap2_hz"], c["ap2_q"])])
        if "allpass2" in c and _on(c, "allpass2"):
            y = path.lin(y, [biquad_coeffs("allpass", sr, c["ap3_hz"], c["ap3_q"]),
                             biquad_coeffs("allpass", sr, c["ap4_hz"], c["ap4_q"])])
        if self.OUTPUT_FIR and _on(c, "output_fir"):
            y = fir_filter(y, self.output_fir_at(sr))
        return y

    def forward(self, x: torch.Tensor, raw: torch.Tensor, sample_rate: float | None = None,
                exact: bool = False) -> torch.Tensor:
        return self.get_signal(x, self.get_controls(raw), sample_rate, exact)

    def _signal(self, x, c, path: _Path):  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        """Plain description: controls and current shared physical values."""
        with torch.no_grad():
            shared = {k: float(v) for k, v in self.shared_physical().items()}
        return {"topology": self.NAME, "oversample": self.oversample,
                "controls": [c.to_dict() for c in self.CONTROLS], "shared": shared}


def _db(g):
    return 10 ** (g / 20)


def _on(c: dict, switch: str) -> bool:
    """A shared on/off value (0/1, the same in every row of the batch) is on."""
    return bool(c[switch].reshape(-1)[0] > 0.5)


def split_bands(u: torch.Tensor, rate: float, crossovers: list[torch.Tensor], path: _Path) -> torch.Tensor:
    """Delay-equalised crossover tree: ``u`` (B, T) -> (B, len(crossovers) + 1, T), the top
    band first. At each crossover f (highest first) the band above is HP3(f) (a
    one-pole and a Q = 1 biquad high-pass, Butterworth-3), the rest LP3(f), which is split
    again; each band then runs through the 2nd-order all-passes (Q = 1) of the crossovers
    below it, so the bands sum to an all-pass of ``u`` (HP3 + LP3 is one).
    ``crossovers``: (B,) tensors in Hz, in any order (sorted here by their first row)."""
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


# --------------------------------------------------------------------------------------
# drive
# --------------------------------------------------------------------------------------


class DriveTopology(Topology):
    """Drive pedal: dry path plus a band-limited, clipped gain path, then tone and level.

    Signal flow (all filters bilinear, see ``CONTROLS`` for units)::

        u = G * HP2(input_hp2_hz, input_hp2_q) LP1(gain_lp_hz) HP1(input_hp_hz) x   G = 10^(pre_gain_db/20)
        z = dry_mix * x + clip(u; pos = e^a, neg = e^-a, knee)   a = clip_asym
        w = 10^(level_db/20) * PK(tone_mid_hz, tone_mid_q, tone_mid_db) HS(tone_shelf_hz, tone_shelf_db) LP2(tone_lp_hz, tone_lp_q) DC(z)
        y = (1 - t) LP1(blend_lp_hz) w + t HP1(blend_hp_hz) w          t = tone_blend

    ``dry_mix`` ~ 1: Tube-Screamer family (op-amp feedback clipping, y ~ x + clip(Gx));
    ``dry_mix`` ~ 0: series clipping (RAT, DS-1); a large ``clip_knee`` is a hard
    clipper. The clipper runs ``oversample`` times faster. The clip levels' geometric
    mean is fixed at 1 (``level_db`` sets loudness) so no two controls do the same.

    ``HP2`` (a second-order high-pass with its own Q, on with the shared switch
    ``input_hp2``) gives the low end the slope and the bump of a pedal's several
    coupling capacitors. Measured on Guitarix's DS1: without it, half the error of a
    fitted capture lay below 80 Hz (its -6 dBFS sweep).

    The blend tone (on with the shared switch ``blend_tone``) is the passive tone of
    the DS-1 and the Big Muff: a pot crossfades a low-pass and a high-pass, so one knob
    moves one control, ``tone_blend``, and the mid scoop between the two cut-offs comes
    with it. With ``t`` = 0.5 and equal cut-offs it is a plain gain of 0.5 (LP1 + HP1
    = 1), so a pedal without such a tone loses nothing. On Guitarix's DS1 the held-out
    median ESR went from 0.047 to 0.008 with it (two seeds, ``benchmarks/README.md``).
    """

    NAME = "drive"
    CONTROLS = (
        ControlSpec("input_hp_hz", "Hz", 10.0, 3000.0, 300.0, "log",
                    "first-order high-pass before the clipper (Attack)"),
        ControlSpec("pre_gain_db", "dB", -20.0, 70.0, 20.0, "lin", "gain into the clipper (Drive)"),
        ControlSpec("gain_lp_hz", "Hz", 500.0, 20000.0, 8000.0, "log",
                    "first-order low-pass of the gain path (op-amp feedback cap)"),
        ControlSpec("clip_asym", "", -1.5, 1.5, 0.0, "lin",
                    "clip levels pos = e^a, neg = e^-a (asymmetry)"),
        ControlSpec("clip_knee", "", 0.5, 12.0, 2.0, "log", "clip knee: 1 soft ... 12 hard"),
        ControlSpec("dry_mix", "", 0.0, 2.0, 0.5, "lin",
                    "dry path gain beside the clipped path (TS ~ 1, series clipper 0)"),
        ControlSpec("tone_lp_hz", "Hz", 300.0, 20000.0, 6000.0, "log", "tone low-pass (Bright)"),
        ControlSpec("tone_shelf_hz", "Hz", 300.0, 12000.0, 2000.0, "log", "tone high-shelf corner"),
        ControlSpec("tone_shelf_db", "dB", -24.0, 24.0, 0.0, "lin", "tone high-shelf gain (Bright)"),
        ControlSpec("tone_mid_hz", "Hz", 150.0, 6000.0, 800.0, "log", "tone mid peak/notch centre"),
        ControlSpec("tone_mid_db", "dB", -24.0, 24.0, 0.0, "lin",
                    "tone mid gain (a blend tone's scoop, DS-1 / Big Muff; a TS's hump)"),
        ControlSpec("tone_mid_q", "", 0.3, 4.0, 0.7, "log", "tone mid Q"),
        ControlSpec("level_db", "dB", -60.0, 40.0, 0.0, "lin", "output level"),
        *ALLPASS_SPECS,
        ControlSpec("tone_lp_q", "", 0.3, 2.0, 0.7071, "log",
                    "tone low-pass Q (0.7071 Butterworth; lower: a gentler knee)"),
        ControlSpec("input_hp2_hz", "Hz", 10.0, 1000.0, 20.0, "log",
                    "second-order high-pass before the clipper (coupling caps: the low end's "
                    "slope and bump), on with the shared ``input_hp2``"),
        ControlSpec("input_hp2_q", "", 0.3, 3.0, 0.5, "log", "its Q (0.7071 Butterworth; > 1 a bump)"),
        ControlSpec("tone_blend", "fraction", 0.0, 1.0, 0.5, "lin",
                    "blend tone: 0 all low-pass, 1 all high-pass (DS-1 / Big Muff Tone), on with "
                    "the shared ``blend_tone``"),
        ControlSpec("blend_lp_hz", "Hz", 50.0, 5000.0, 400.0, "log", "blend tone: the low-pass's cut-off"),
        ControlSpec("blend_hp_hz", "Hz", 100.0, 10000.0, 1000.0, "log", "blend tone: the high-pass's cut-off"),
    )
    ALLPASS = True
    #: the second input high-pass and the blend tone are on (shared switches = 1) in every
    #: new fit; a twin saved before they existed loads with them off and renders what it
    #: rendered
    SWITCHES_ON = ("input_hp2", "blend_tone")
    SEARCH = ("pre_gain_db", "dry_mix", "clip_knee", "clip_asym", "input_hp_hz", "tone_lp_hz")
    KNOB_CONTROLS = ("input_hp_hz", "pre_gain_db", "gain_lp_hz", "dry_mix", "tone_lp_hz",
                     "tone_shelf_hz", "tone_shelf_db", "tone_mid_db", "level_db", "tone_blend")
    SMALL_SIGNAL = ("input_hp_hz", "gain_lp_hz", "tone_lp_hz", "tone_lp_q", "tone_shelf_hz",
                    "tone_shelf_db", "tone_mid_hz", "tone_mid_db", "tone_mid_q", "input_hp2_hz",
                    "input_hp2_q", "tone_blend", "blend_lp_hz", "blend_hp_hz")
    NAME_HINTS = ((("attack", "bass", "low"), ("input_hp_hz",)),
                  (("drive", "gain", "dist"), ("pre_gain_db",)),
                  (("tone",), ("tone_blend", "tone_lp_hz", "tone_mid_db")),
                  (("bright", "treble", "high"), ("tone_lp_hz", "tone_shelf_db")),
                  (("level", "volume", "output"), ("level_db",)))

    def _signal(self, x, c, p: _Path):
        sr = p.sr
        pre = [onepole_coeffs("highpass", sr, c["input_hp_hz"]),
               onepole_coeffs("lowpass", sr, c["gain_lp_hz"])]
        if _on(c, "input_hp2"):
            pre.append(biquad_coeffs("highpass", sr, c["input_hp2_hz"], c["input_hp2_q"]))
        u = p.lin(x, pre, gain=_db(c["pre_gain_db"]), up=p.os)
        a = c["clip_asym"][:, None].to(x.dtype)
        clipped = asym_soft_clip(u, torch.exp(a), torch.exp(-a), c["clip_knee"][:, None].to(x.dtype))
        if p.os > 1:
            clipped = p.lin(clipped, [], down=p.os)
        z = clipped + c["dry_mix"][:, None].to(x.dtype) * x
        post = [onepole_coeffs("highpass", sr, torch.full_like(c["level_db"], 5.0)),
                biquad_coeffs("lowpass", sr, c["tone_lp_hz"], c["tone_lp_q"]),
                biquad_coeffs("highshelf", sr, c["tone_shelf_hz"], 0.7071, c["tone_shelf_db"]),
                biquad_coeffs("peak", sr, c["tone_mid_hz"], c["tone_mid_q"], c["tone_mid_db"])]
        y = p.lin(z, post, gain=_db(c["level_db"]))
        if _on(c, "blend_tone"):
            dt = torch.float64
            y = p.lin(y, [blend_coeffs(sr, c["tone_blend"].to(dt), c["blend_lp_hz"].to(dt), c["blend_hp_hz"].to(dt))])
        return y


# --------------------------------------------------------------------------------------
# amp
# --------------------------------------------------------------------------------------

#: the amp's optional band split in front of its first tube stage (shared ``band_split``)
#: and its optional drive section (shared ``drive_section``): four bands each, the
#: crossovers' starting points (learnable, shared; each section has its own)
AMP_BANDS = 4
AMP_CROSSOVERS_HZ = (300.0, 1200.0, 3200.0)
#: the drive section's wet path is band-limited (``drive_section_v2``): high-pass, low-pass
#: start (Hz), the MetalHead's 120 Hz and 6.5 kHz
AMP_DRIVE_BAND_LIMITS_HZ = (120.0, 6500.0)
#: the amp's optional band chain (shared ``band_chain``): five bands, each through its
#: own copy of the nonlinear chain; the crossovers' starting points (learnable, shared)
#: are the filter bank of Guitarix's multiband amps (``fi.filterbank(3, (86, 210, 1200,
#: 6531))`` in front of five copies of the amp: its Studio Preamp, Big Chump, ...)
CHAIN_BANDS = 5
CHAIN_CROSSOVERS_HZ = (86.0, 210.0, 1200.0, 6531.0)
#: the interstage low-passes' top: past the Nyquist of any rate the twin runs at, so a
#: low-pass can open fully (:func:`dsp.filters.onepole_coeffs` takes 0.498 fs at most).
#: Their top was 20 kHz, where the bilinear low-pass still takes 13 dB off 23 kHz at
#: 48 kHz; every Studio Preamp fit pinned both there, and its loud noise missed above
#: 16 kHz (benchmarks/README.md, "session 22"). A twin fitted with the old range keeps
#: it (the knob map's own ranges squash its controls, ``Topology.control_specs``).
INTER_LP_MAX_HZ = 96000.0
#: Marshall JCM800-like starting point (Yeh & Smith table; Peavey values are disputed)
AMP_TONESTACK_INIT = dict(r1_ohm=220e3, r2_ohm=1e6, r3_ohm=22e3, r4_ohm=33e3,
                          c1_farad=470e-12, c2_farad=22e-9, c3_farad=22e-9)
#: the learnable corrections of the amp's three shapers (structural option ``shaper_tables``):
#: tables of SHAPER_KNOTS values on a uniform grid over ±SHAPER_RANGE
#: (:func:`dsp.shapers.table_shaper`), named ``shape{s}_{j:02d}`` (s = 1, 2: the tube
#: stages; 3: the push-pull stage), all 0 at the start (the plain shapers)
SHAPER_KNOTS = 49
SHAPER_RANGE = 3.0
SHAPER_TABLES = tuple(tuple(f"shape{s}_{j:02d}" for j in range(SHAPER_KNOTS)) for s in (1, 2, 3))
SHAPER_NAMES = tuple(n for table in SHAPER_TABLES for n in table)


class AmpTopology(Topology):
    """Guitar amp: coupling, two preamp tube stages, TMB stack, power amp, feedback EQ.

    Signal flow (the part from the first tube stage on runs ``oversample`` x)::

        x -> HP(in_hp_hz) [-> drive section (drive_mix, drive_db), with ``drive_section``]
          -> * pre_gain_db -> tube(bias1) -> HP(inter1_hp_hz) LP(inter1_lp_hz)
          -> * stage2_gain_db -> tube(bias2) -> HP(inter2_hp_hz) LP(inter2_lp_hz)
          -> TMB(tonestack_treble/mid/bass; R1..R4, C1..C3 shared, learnable tapers)
          [-> (1 - tone_blend) LP1(blend_lp_hz) + tone_blend HP1(blend_hp_hz), with ``blend_tone``]
          -> * post_gain_db

    (with the shared ``tonestack_position`` = 1 the TMB stack moves to the end of the
    interstage-1 filters, before ``stage2_gain_db``: the Fender arrangement)::

          ... tube(bias1) -> HP LP (inter1) -> TMB -> * stage2_gain_db -> tube(bias2)
          -> HP LP (inter2) -> * post_gain_db -> sag: e = sqrt(LP1(sag_time_s) u^2), u *= 1/(1 + sag_depth*relu(e - sag_threshold))
          -> * master_db -> push_pull(pa_bias, pa_crossover, pa_level, pa_imbalance)
          -> HS(presence_hz, presence_db) -> peak(depth_hz, depth_db) [-> DC block, unless
          ``output_dc``] -> * level_db
          [-> LP2(out_lp1) LP2(out_lp2) with ``output_lp``] [-> all-pass x2 with ``allpass``]
          [-> all-pass x2 (ap3, ap4) with ``allpass2``] [-> FIR (output_fir_taps) with ``output_fir``]

    With the shared ``band_chain`` (off unless set) the part from the first tube stage
    to the push-pull stage runs once per band: ``u`` after the pre-gain is split into
    five bands and ``y = sum_k chain(band_k(u))`` goes on to the presence shelf
    (:meth:`_band_chain`).

    Tube stages: ``tube_stage(x, bias, 1, 1)``; power stage ``push_pull(x, pa_bias,
    pa_crossover, pa_level, pa_imbalance)`` (dsp.shapers): ``pa_bias`` (Bias) is the
    operating point (> 0 hot class AB, < 0 cold: a dead zone, crossover distortion),
    ``pa_crossover`` (Bias_X) the sharpness of the tubes' turn-on corner,
    ``pa_imbalance`` the mismatch of its two halves (even harmonics, and DC that follows
    the level, which the output keeps when the shared ``output_dc`` is 1; a twin saved
    before these existed loads with both at 0 and renders as it did). With the
    structural option ``shaper_tables`` (off unless set) each of the three curves has
    a learnable table T_s added (``tube(x) + T_1(x + bias1) - T_1(bias1)``, and so on;
    ``push_pull(u) + T_3(u) - T_3(0)``; :meth:`_correction`). Tone-stack
    components are shared, learnable in the log domain from a Marshall-like preset;
    each pot has a learnable taper ``expm1(k p)/expm1(k)``.
    """

    NAME = "amp"
    CONTROLS = (
        ControlSpec("in_hp_hz", "Hz", 10.0, 1000.0, 40.0, "log", "input coupling high-pass"),
        ControlSpec("pre_gain_db", "dB", -20.0, 60.0, 20.0, "lin", "gain into tube stage 1 (Pre_Gain)"),
        ControlSpec("tube1_bias", "", -0.8, 0.8, 0.2, "lin", "stage 1 operating point"),
        ControlSpec("inter1_hp_hz", "Hz", 10.0, 2000.0, 100.0, "log", "interstage 1 high-pass"),
        ControlSpec("inter1_lp_hz", "Hz", 1000.0, INTER_LP_MAX_HZ, 10000.0, "log", "interstage 1 low-pass"),
        ControlSpec("stage2_gain_db", "dB", -20.0, 50.0, 10.0, "lin", "gain into tube stage 2"),
        ControlSpec("tube2_bias", "", -0.8, 0.8, 0.2, "lin", "stage 2 operating point"),
        ControlSpec("inter2_hp_hz", "Hz", 10.0, 2000.0, 60.0, "log", "interstage 2 high-pass"),
        ControlSpec("inter2_lp_hz", "Hz", 1000.0, INTER_LP_MAX_HZ, 8000.0, "log", "interstage 2 low-pass"),
        ControlSpec("tonestack_treble", "fraction", 0.0, 1.0, 0.5, "lin", "treble pot (Treble)"),
        ControlSpec("tonestack_mid", "fraction", 0.0, 1.0, 0.5, "lin", "mid pot (Mid)"),
        ControlSpec("tonestack_bass", "fraction", 0.0, 1.0, 0.5, "lin", "bass pot (Bass)"),
        ControlSpec("post_gain_db", "dB", -40.0, 40.0, 0.0, "lin", "preamp output level (Post_Gain)"),
        ControlSpec("sag_depth", "", 0.0, 20.0, 0.5, "lin", "sag compression depth (Sag)"),
        ControlSpec("sag_threshold", "", 0.0, 2.0, 0.3, "lin", "envelope level where sag starts"),
        ControlSpec("sag_time_s", "s", 0.002, 0.2, 0.03, "log", "sag envelope time constant"),
        ControlSpec("master_db", "dB", -30.0, 40.0, 6.0, "lin", "power-amp drive (Master)"),
        ControlSpec("pa_bias", "", -0.5, 0.6, 0.2, "lin",
                    "power-tube operating point (Bias): > 0 warm class AB (gain ~1), 0 class B "
                    "edge, < 0 cold (dead zone of width -pa_bias)"),
        ControlSpec("pa_crossover", "", 0.0, 0.5, 0.1, "lin", "push-pull turn-on corner width (Bias_X)"),
        ControlSpec("pa_level", "", 0.1, 4.0, 1.0, "log", "power-amp saturation level"),
        ControlSpec("presence_hz", "Hz", 1000.0, 10000.0, 3000.0, "log", "presence shelf corner"),
        ControlSpec("presence_db", "dB", -18.0, 18.0, 0.0, "lin", "presence shelf gain (Presence)"),
        ControlSpec("depth_hz", "Hz", 40.0, 300.0, 100.0, "log", "depth resonance"),
        ControlSpec("depth_db", "dB", -18.0, 18.0, 0.0, "lin", "depth resonance gain (Depth)"),
        ControlSpec("level_db", "dB", -60.0, 40.0, 0.0, "lin", "output level"),
        *ALLPASS_SPECS,
        *OUTPUT_LP_SPECS,
        *ALLPASS2_SPECS,
        ControlSpec("pa_imbalance", "", -0.9, 0.9, 0.0, "lin",
                    "gain mismatch of the push-pull halves: even harmonics, and DC that follows "
                    "the level (kept at the output with the shared ``output_dc``)"),
        ControlSpec("drive_mix", "fraction", 0.0, 1.0, 0.5, "lin",
                    "drive section: 0 dry (the plain amp), 0.5 dry and clipped bands both at full "
                    "level, 1 all clipped bands; on with the shared ``drive_section``"),
        ControlSpec("drive_db", "dB", -12.0, 48.0, 18.0, "lin",
                    "drive section: gain into the band clippers (each band adds its shared offset)"),
        # the blend tone's defaults are equal cut-offs, where (1 - t) LP1 + t HP1 is a plain
        # gain; a fit with it on starts at AmpTopology.BLEND_TONE_INIT instead
        ControlSpec("tone_blend", "fraction", 0.0, 1.0, 0.5, "lin",
                    "blend tone after the TMB stack: 0 all low-pass, 1 all high-pass (a Big Muff "
                    "Tone, Guitarix's MetalHead); on with the shared ``blend_tone``"),
        ControlSpec("blend_lp_hz", "Hz", 50.0, 5000.0, 700.0, "log", "blend tone: the low-pass's cut-off"),
        ControlSpec("blend_hp_hz", "Hz", 100.0, 10000.0, 700.0, "log", "blend tone: the high-pass's cut-off"),
    )
    ALLPASS = True
    ALLPASS_SECTIONS = 4
    OUTPUT_LP = True
    OUTPUT_DC = True
    OUTPUT_FIR = True
    #: the drive section's second form (:meth:`_drive`); a twin saved before it renders
    #: the first
    SWITCHES_ON = ("drive_section_v2",)
    SEARCH = ("pre_gain_db", "stage2_gain_db", "post_gain_db", "master_db", "tube1_bias",
              "tube2_bias")
    SMALL_SIGNAL = ("in_hp_hz", "inter1_hp_hz", "inter1_lp_hz", "inter2_hp_hz", "inter2_lp_hz",
                    "tonestack_treble", "tonestack_mid", "tonestack_bass", "presence_hz",
                    "presence_db", "depth_hz", "depth_db", "tone_blend", "blend_lp_hz", "blend_hp_hz")
    KNOB_CONTROLS = ("pre_gain_db", "inter1_lp_hz", "stage2_gain_db", "tonestack_treble", "tonestack_mid",
                     "tonestack_bass", "post_gain_db", "sag_depth", "master_db", "pa_bias",
                     "pa_crossover", "presence_db", "depth_db", "level_db", "drive_mix", "drive_db",
                     "tone_blend")
    #: Guitarix's MetalHead Tone tilts the spectrum, bass down as treble goes up; its
    #: Drive fades the drive section in (dry out) and raises the bands' gains together
    KNOB_GROUPS = (("tonestack_treble", "tonestack_bass", "tonestack_mid"), ("drive_mix", "drive_db"))
    NAME_HINTS = ((("bias_x", "biasx", "crossover"), ("pa_crossover",)),
                  (("bias",), ("pa_bias",)),
                  (("sag",), ("sag_depth",)),
                  (("presence",), ("presence_db",)),
                  (("depth", "resonance"), ("depth_db",)),
                  (("master",), ("master_db",)),
                  (("post",), ("post_gain_db",)),
                  (("bass", "low"), ("tonestack_bass",)),
                  (("mid",), ("tonestack_mid",)),
                  (("treble", "high"), ("tonestack_treble",)),
                  (("tone",), ("tonestack_treble", "tonestack_bass", "tonestack_mid")),
                  (("bright",), ("inter1_lp_hz",)),
                  (("pre", "gain", "drive"), ("pre_gain_db",)),
                  (("volume", "level", "output"), ("level_db",)))

    #: structural choices (shared values no gradient moves; :data:`dsp.structure.STRUCTURE`
    #: lists them for the rig file, which may set them: ``structure = {drive_section = 1}``):
    #: - ``tonestack_position``, tried at init: the tone stack after both tube stages (0,
    #:   Marshall-like: the stack follows the preamp) or between them (1, Fender-like:
    #:   V1A -> stack -> volume -> V1B). Where it sits decides which frequencies the
    #:   second stage clips first (measured on Guitarix's Studio Preamp: at noon, 5 kHz
    #:   compresses from -56 dBFS, 1 kHz from -40).
    #: - ``drive_section`` (:meth:`_drive`), off unless set. The init cannot decide it
    #:   yet: on the MetalHead's reference capture (Drive 5) it scored worse at init (0.45
    #:   against 0.27) and no better after a short fit of that capture; set by the rig,
    #:   it takes the held-out median / worst from 0.40 / 0.55 to 0.245 / 0.554
    #:   (benchmarks/README.md, "session 10"); its second form (``drive_section_v2``,
    #:   session 12) fits the MetalHead's low-Drive captures, which the first could not.
    #:   Gradient from a fit without it does not find it ("session 8").
    #: - ``band_split`` (:meth:`_tube1`), off unless set: from equal band drives the
    #:   split scores worse at init than the plain stage (MetalHead: 0.44 against 0.27)
    #:   and better after training (one capture, 600 steps: 0.22 against 0.40).
    #: - ``blend_tone``, tried at init after the position (with the position that won): a
    #:   blend tone after the TMB stack, wherever the stack sits (one pot crossfading a
    #:   low-pass and a high-pass, as one second-order section,
    #:   :func:`dsp.filters.blend_coeffs`: the Big Muff's Tone, which Guitarix's MetalHead
    #:   has between its stages), its cut-offs starting at the Big Muff's
    #:   (``BLEND_TONE_INIT``). The MetalHead's init scores it 0.16 against 0.29 and its
    #:   held-out median goes from 0.154 to 0.086 (benchmarks/README.md, "session 14");
    #:   the Studio Preamp's scores it 0.197 against 0.211, short of ``VARIANT_MARGIN``,
    #:   and leaves it off. Started from
    #:   equal cut-offs (a plain gain), the MetalHead's fit put the low-pass at 4 kHz and
    #:   scored worse than without it.
    #: - ``shaper_tables`` (:meth:`_correction`), off unless set: a learnable table added
    #:   to each of the three shapers' curves, which lets a curve bend where the smooth
    #:   clippers cannot (Guitarix's tube stages are tables with a knee at small
    #:   amplitude). The init cannot decide it (the tables start at 0: the same loss
    #:   either way), and on the Guitarix amps it gained nothing beyond the runs'
    #:   scatter: MetalHead (10 min) 0.057 / 0.140, 0.065 / 0.155, 0.088 / 0.204 at seeds
    #:   0-2 against 0.066 / 0.147, 0.066 / 0.165, 0.082 / 0.130 without; Studio Preamp
    #:   0.299 / 0.645 (4 min) against 0.279-0.293 / 0.706-0.919 (benchmarks/README.md,
    #:   "session 17"), so a new fit keeps the plain curves and their plugin's CPU.
    #: - ``band_chain`` (:meth:`_band_chain`), off unless set: the whole chain once per
    #:   band, five bands from Guitarix's filter bank (86, 210, 1200, 6531 Hz; learnable),
    #:   as Guitarix's multiband amps are built (its Studio Preamp: ``fi.filterbank``
    #:   into five copies of one amp, summed). Two tones far apart then intermodulate far
    #:   less than two close together, which ``benchmarks/structure_probe.py`` measured
    #:   on the Studio Preamp (-23.7 against -14.0 dB) and no single chain does. It costs
    #:   five chains in training and in the plugin (benchmarks/README.md, "session 18").
    VARIANTS = {o.name: o.tried for o in STRUCTURE["amp"]}
    #: the blend tone, tried at init, is kept only when its init loss is this share below
    #: the best without it: a section more must win clearly (the MetalHead's: 45 % lower;
    #: the Studio Preamp's, which has none: 7 %, and its fit scored worse with it, held-out
    #: median / worst 0.328 / 3.77 against 0.279 / 0.706 with it off)
    VARIANT_MARGIN = {"blend_tone": 0.15}
    #: at small signal the tube stages are gains and every filter commutes
    SMALL_SIGNAL_INVARIANT = ("tonestack_position",)

    def _shared_init(self):
        d = {f"log_{k}": math.log(v) for k, v in AMP_TONESTACK_INIT.items()}
        d.update(taper_treble=0.5, taper_mid=0.5, taper_bass=3.4)
        d.update({f"log_xo{i + 1}_hz": math.log(f) for i, f in enumerate(AMP_CROSSOVERS_HZ)})
        d.update({f"band{k + 1}_drive_db": 0.0 for k in range(AMP_BANDS)})
        d.update({f"log_dxo{i + 1}_hz": math.log(f) for i, f in enumerate(AMP_CROSSOVERS_HZ)})
        d.update({f"drive_band{k + 1}_db": 0.0 for k in range(AMP_BANDS)})
        d.update({f"drive_band{k + 1}_level_db": 0.0 for k in range(AMP_BANDS)})
        d.update({f"drive_band{k + 1}_slope": 1.0 for k in range(AMP_BANDS)})
        d.update(log_dlp_hz=math.log(AMP_DRIVE_BAND_LIMITS_HZ[1]), log_dhp_hz=math.log(AMP_DRIVE_BAND_LIMITS_HZ[0]))
        d.update({k: 0.0 for k in SHAPER_NAMES})
        d.update({f"log_cxo{i + 1}_hz": math.log(f) for i, f in enumerate(CHAIN_CROSSOVERS_HZ)})
        return d

    #: the blend tone's start when it is set: the Big Muff's tone network (low-pass
    #: 39 kOhm / 10 nF, high-pass 22 kOhm / 4 nF); a start from equal cut-offs (a plain
    #: gain) let the small-signal fit put the low-pass at 4 kHz, where the knob that
    #: crossfades them has little to move (benchmarks/README.md, "session 14")
    BLEND_TONE_INIT = {"blend_lp_hz": 1.0 / (2 * math.pi * 39e3 * 10e-9),
                       "blend_hp_hz": 1.0 / (2 * math.pi * 22e3 * 4e-9)}

    def init_values(self) -> dict[str, float]:
        """With the drive section on, the init starts it all wet at +24 dB into every band
        (not searched): started from a random mix, 600 steps on the MetalHead's Drive 7.5
        ended at ESR 0.266, started all wet at 0.148 (the plain amp: 0.258). With the
        blend tone on, its cut-offs start at ``BLEND_TONE_INIT``."""
        out = {}
        if float(self.shared["drive_section"]) > 0.5:
            out.update(drive_mix=1.0, drive_db=24.0)
        if float(self.shared["blend_tone"]) > 0.5:
            out.update(self.BLEND_TONE_INIT)
        return out

    def magnitude_values(self) -> dict[str, float]:
        """One chain for the band chain's five: at small signal the split sums to an
        all-pass, so only the phase differs."""
        return {"band_chain": 0.0} if float(self.shared["band_chain"]) > 0.5 else {}

    def descent_init(self) -> bool:
        """With the band chain (five chains per candidate) the init descends: on the
        Studio Preamp's Master 10 capture (benchmarks/README.md, "session 19") 400 steps
        from the small-signal fit reached ESR 0.13, where the search and its refinement
        took 820 s to start training at 0.29."""
        return float(self.shared["band_chain"]) > 0.5

    def inert_controls(self) -> tuple[str, ...]:
        out = super().inert_controls()
        if float(self.shared["drive_section"]) <= 0.5:
            out += ("drive_mix", "drive_db")
        if float(self.shared["blend_tone"]) <= 0.5:
            out += ("tone_blend", "blend_lp_hz", "blend_hp_hz")
        return out

    def _shared_physical(self):
        s = self.shared
        out = {k[4:]: torch.exp(v) for k, v in s.items() if k.startswith("log_")}
        out.update({k: v.abs() + 1e-3 for k, v in s.items() if k.startswith("taper_")})
        for i in range(AMP_BANDS - 1):
            for xo in (f"xo{i + 1}_hz", f"dxo{i + 1}_hz"):
                out[xo] = out[xo].clamp(40.0, 12000.0)
        for k in range(AMP_BANDS):
            out[f"band{k + 1}_drive_db"] = s[f"band{k + 1}_drive_db"].clamp(-24.0, 24.0)
            out[f"drive_band{k + 1}_db"] = s[f"drive_band{k + 1}_db"].clamp(-24.0, 24.0)
            out[f"drive_band{k + 1}_level_db"] = s[f"drive_band{k + 1}_level_db"].clamp(-40.0, 24.0)
            out[f"drive_band{k + 1}_slope"] = s[f"drive_band{k + 1}_slope"].clamp(0.0, 3.0)
        for i in range(CHAIN_BANDS - 1):
            out[f"cxo{i + 1}_hz"] = out[f"cxo{i + 1}_hz"].clamp(20.0, 15000.0)
        out["dlp_hz"] = out["dlp_hz"].clamp(1000.0, 20000.0)
        out["dhp_hz"] = out["dhp_hz"].clamp(10.0, 1000.0)
        out.update({k: s[k] for k in SHAPER_NAMES})
        return out

    @staticmethod
    def _correction(c, stage: int, x, at=None):
        """The shaper ``stage``'s learnable correction T_s(x) - T_s(at) (0 with the
        structural option ``shaper_tables`` off: a rig that sets it to 0, or a twin saved
        before it existed)."""
        if not _on(c, "shaper_tables"):
            return 0.0
        v = torch.stack([c[n] for n in SHAPER_TABLES[stage - 1]])
        rest = table_shaper(torch.zeros_like(x[..., :1]) + (0.0 if at is None else at), v, SHAPER_RANGE)
        return table_shaper(x + (0.0 if at is None else at), v, SHAPER_RANGE) - rest

    # The signal path in three stages: the front, the nonlinear chain (once, or once per
    # band with the shared ``band_chain``) and the output sections.
    def _signal(self, x, c, p: _Path):
        u = self._front(x, c, p)
        if not _on(c, "band_chain"):
            return self._post(self._chain(u, c, p), c, p)
        return self._post(self._band_chain(u, c, p), c, p)

    def _band_chain(self, u, c, p: _Path):
        """With the shared ``band_chain``: the front's output is split into
        ``CHAIN_BANDS`` bands (:func:`split_bands` at ``cxo1_hz``..``cxo4_hz``) and each
        band runs through its own copy of the whole nonlinear chain (:meth:`_chain`:
        both tube stages and their filters, the tone stack, sag with its own envelope,
        Master and the push-pull stage; every control and shaper the same in each), and
        the chains' outputs are summed::

            y = sum_k chain(band_k(u))

        Small signals pass as through one chain (the split sums to an all-pass); loud
        ones distort each band on its own, so two tones far apart intermodulate far less
        than two close together (Guitarix's multiband amps, measured on its Studio
        Preamp by ``benchmarks/structure_probe.py``). The band split of the first tube
        stage (``band_split``) is not used inside a band chain."""
        B = u.shape[0]
        bands = split_bands(u, p.sr * p.os, [c[f"cxo{i + 1}_hz"].expand(B) for i in range(CHAIN_BANDS - 1)], p)
        return self._chain_per_band(bands, c, p)

    def _chain_per_band(self, bands, c, p: _Path):
        """``bands`` (B, nb, T) -> (B, T): :meth:`_chain` on every band (one row of the
        controls ``c`` per row of ``bands``, repeated for its bands; the first stage's band
        split not used), the bands' outputs summed."""
        B, nb = bands.shape[:2]
        controls = set(self.control_names())
        cb = {k: (v.repeat_interleave(nb, 0) if k in controls else v) for k, v in c.items()}
        cb["band_split"] = torch.zeros_like(c["band_split"])
        return self._chain(bands.reshape(B * nb, -1), cb, p).reshape(B, nb, -1).sum(1)

    def _front(self, x, c, p: _Path):
        """Input coupling and pre-gain, then up to the oversampled rate; with the shared
        ``drive_section`` the drive section (:meth:`_drive`) runs between the upsampler
        and the pre-gain."""
        hp = [onepole_coeffs("highpass", p.sr, c["in_hp_hz"])]
        if not _on(c, "drive_section"):
            return p.lin(x, hp, gain=_db(c["pre_gain_db"]), up=p.os)
        u = self._drive(p.lin(x, hp, up=p.os), c, p)
        return u * _db(c["pre_gain_db"])[:, None].to(u.dtype)

    def _drive(self, v, c, p: _Path):
        """The drive section at the input's level and the oversampled rate: the signal is
        split into four bands (:func:`split_bands` at ``dxo1_hz``..``dxo3_hz``), band k
        (top band first) is driven by g_k dB into a clipper and weighted by
        ``drive_band{k}_level_db``, and the bands' sum is mixed with the dry signal.

        With the shared ``drive_section_v2`` (on in every new fit)::

            BL = LP1(dlp_hz) HP1(dhp_hz)           (one-pole each)
            b = split(BL v),  g_k = drive_db * drive_band{k}_slope + drive_band{k}_db
            w = BL sum_k L_k c(g_k b_k),  c(z) = z - z^3/3 for z = clamp(x, -1, 1)
            y = min(1, 2 (1 - drive_mix)) v + min(1, 2 drive_mix) w

        so the dry signal stays at full level while the wet one comes in (mix 0..0.5) and
        then fades out (0.5..1), the bands' gains part with the drive (their slopes), and
        each clipper saturates smoothly at 2/3. That is Guitarix's MetalHead section as
        its source has it (benchmarks/README.md, "session 12": in whole fits with the
        source's knob map as hints, its Drive sweep trains to 0.08-0.18, where the first
        form left Drive 0 and 2.5 at 0.56-1.00). A twin saved before it (no such switch)
        computes the first form: no band limits, slopes 1, x / sqrt(1 + x^2), and a
        crossfade ``(1 - drive_mix) v + drive_mix w``. At ``drive_mix`` = 0 either form is
        the dry signal."""
        B = v.shape[0]
        rs = p.sr * p.os
        v2 = _on(c, "drive_section_v2")
        limits = [onepole_coeffs("lowpass", rs, c["dlp_hz"].expand(B)),
                  onepole_coeffs("highpass", rs, c["dhp_hz"].expand(B))] if v2 else []
        xo = [c[f"dxo{i + 1}_hz"].expand(B) for i in range(AMP_BANDS - 1)]
        bands = split_bands(p.lin(v, limits) if v2 else v, rs, xo, p)
        w = 0
        for k in range(AMP_BANDS):
            gain_db = c["drive_db"] * (c[f"drive_band{k + 1}_slope"] if v2 else 1.0) + c[f"drive_band{k + 1}_db"]
            g = _db(gain_db)[:, None].to(v.dtype)
            lv = _db(c[f"drive_band{k + 1}_level_db"]).expand(B)[:, None].to(v.dtype)
            w = w + lv * (cubic_clip(g * bands[:, k]) if v2 else asym_soft_clip(g * bands[:, k], 1.0, 1.0, 1.0))
        m = c["drive_mix"][:, None].to(v.dtype)
        if not v2:
            return (1 - m) * v + m * w
        return (2 * (1 - m)).clamp(max=1.0) * v + (2 * m).clamp(max=1.0) * p.lin(w, limits)

    def _chain(self, u, c, p: _Path):
        """The nonlinear chain at the oversampled rate: both tube stages, their
        interstage filters and the tone stack, sag, Master and the push-pull stage.
        One row of controls ``c`` per row of ``u``."""
        B = u.shape[0]
        rs = p.sr * p.os
        col = lambda k: c[k][:, None].to(u.dtype)  # noqa: E731
        one = torch.ones_like(u[:, :1])
        u = self._tube1(u, c, p)
        dt = torch.float64
        comp = {k: c[k].to(dt).expand(B) for k in AMP_TONESTACK_INIT}
        t = _taper(c["tonestack_treble"], c["taper_treble"].to(dt))
        m = _taper(c["tonestack_mid"], c["taper_mid"].to(dt))
        l = _taper(c["tonestack_bass"], c["taper_bass"].to(dt))
        ts = tonestack_coeffs(rs, t, m, l, **comp)
        between = _on(c, "tonestack_position")
        inter1 = [onepole_coeffs("highpass", rs, c["inter1_hp_hz"]),
                  onepole_coeffs("lowpass", rs, c["inter1_lp_hz"])]
        inter2 = [onepole_coeffs("highpass", rs, c["inter2_hp_hz"]),
                  onepole_coeffs("lowpass", rs, c["inter2_lp_hz"])]
        tone = [ts]
        if _on(c, "blend_tone"):
            tone.append(blend_coeffs(rs, c["tone_blend"].to(dt), c["blend_lp_hz"].to(dt), c["blend_hp_hz"].to(dt)))
        u = p.lin(u, inter1 + (tone if between else []), gain=_db(c["stage2_gain_db"]))
        u = tube_stage(u, col("tube2_bias"), one, one) + self._correction(c, 2, u, col("tube2_bias"))
        u = p.lin(u, inter2 + ([] if between else tone), gain=_db(c["post_gain_db"]))
        # sag: feed-forward RMS envelope of the power-amp input (dsp.dynamics)
        env = envelope_rms(u, rs, c["sag_time_s"])
        g = sag_gain(env, col("sag_depth"), col("sag_threshold")).to(u.dtype)
        u = u * g * _db(col("master_db"))
        return (push_pull(u, col("pa_bias"), col("pa_crossover"), col("pa_level"), col("pa_imbalance"))
                + self._correction(c, 3, u))

    def _tube1(self, u, c, p: _Path):
        """The first tube stage; with the shared ``band_split`` the signal is first split
        into bands (:func:`split_bands` at ``xo1_hz``..``xo3_hz``), each band k (top band
        first) driven by ``band{k}_drive_db`` into the stage and scaled back by the same
        gain after it, and the bands summed: y = sum_k tube_stage(g_k b_k) / g_k. Small
        signals pass as through the plain stage (up to the split's all-pass); loud ones
        distort each band on its own (Guitarix's MetalHead: four bands at about 300,
        1200, 3200 Hz, each distorted by a different amount)."""
        bias = c["tube1_bias"][:, None].to(u.dtype)
        if not _on(c, "band_split"):
            return tube_stage(u, bias, 1.0, 1.0) + self._correction(c, 1, u, bias)
        B = u.shape[0]
        xo = [c[f"xo{i + 1}_hz"].expand(B) for i in range(AMP_BANDS - 1)]
        bands = split_bands(u, p.sr * p.os, xo, p)
        y = 0
        for k in range(AMP_BANDS):
            g = _db(c[f"band{k + 1}_drive_db"]).expand(B)[:, None].to(u.dtype)
            gb = g * bands[:, k]
            y = y + (tube_stage(gb, bias, 1.0, 1.0) + self._correction(c, 1, gb, bias)) / g
        return y

    def _post(self, u, c, p: _Path):
        """Presence, depth, the output high-pass (left out with ``output_dc``) and level,
        then down to the base rate."""
        rs = p.sr * p.os
        post = [biquad_coeffs("highshelf", rs, c["presence_hz"], 0.7071, c["presence_db"]),
                biquad_coeffs("peak", rs, c["depth_hz"], 0.9, c["depth_db"])]
        if not _on(c, "output_dc"):
            post.append(onepole_coeffs("highpass", rs, torch.full_like(c["depth_hz"], 5.0)))
        return p.lin(u, post, gain=_db(c["level_db"]), down=p.os)


# --------------------------------------------------------------------------------------
# eq_match
# --------------------------------------------------------------------------------------


class EqMatchTopology(Topology):
    """Linear matching EQ (e.g. DI matching): HP -> low shelf -> 4 peaks -> high shelf
    -> LP -> gain. No nonlinearity, no oversampling."""

    NAME = "eq_match"
    N_PEAKS = 4
    CONTROLS = (
        ControlSpec("hp_hz", "Hz", 5.0, 500.0, 10.0, "log", "high-pass (2nd order)"),
        ControlSpec("low_shelf_hz", "Hz", 40.0, 1000.0, 150.0, "log", "low shelf corner"),
        ControlSpec("low_shelf_db", "dB", -24.0, 24.0, 0.0, "lin", "low shelf gain"),
        *[s for i in range(4) for s in (
            ControlSpec(f"peak{i + 1}_hz", "Hz", 40.0, 16000.0, float(200 * 3 ** i), "log", "peak centre"),
            ControlSpec(f"peak{i + 1}_db", "dB", -24.0, 24.0, 0.0, "lin", "peak gain"),
            ControlSpec(f"peak{i + 1}_q", "", 0.2, 8.0, 1.0, "log", "peak Q"))],
        ControlSpec("high_shelf_hz", "Hz", 1000.0, 16000.0, 5000.0, "log", "high shelf corner"),
        ControlSpec("high_shelf_db", "dB", -24.0, 24.0, 0.0, "lin", "high shelf gain"),
        ControlSpec("lp_hz", "Hz", 1000.0, 23000.0, 22000.0, "log", "low-pass (2nd order)"),
        ControlSpec("level_db", "dB", -60.0, 40.0, 0.0, "lin", "output gain"),
    )
    SEARCH = ()
    LINEAR = True

    def __init__(self, sample_rate: float = 48000.0, oversample: int = 1):
        super().__init__(sample_rate, 1)

    def _signal(self, x, c, p: _Path):
        sr = p.sr
        co = [biquad_coeffs("highpass", sr, c["hp_hz"], 0.7071),
              biquad_coeffs("lowshelf", sr, c["low_shelf_hz"], 0.7071, c["low_shelf_db"])]
        for i in range(self.N_PEAKS):
            co.append(biquad_coeffs("peak", sr, c[f"peak{i + 1}_hz"], c[f"peak{i + 1}_q"], c[f"peak{i + 1}_db"]))
        co += [biquad_coeffs("highshelf", sr, c["high_shelf_hz"], 0.7071, c["high_shelf_db"]),
               biquad_coeffs("lowpass", sr, c["lp_hz"], 0.7071)]
        return p.lin(x, co, gain=_db(c["level_db"]))


TOPOLOGIES: dict[str, type[Topology]] = {
    "drive": DriveTopology,
    "amp": AmpTopology,
    "eq_match": EqMatchTopology,
}


def make_topology(name: str, sample_rate: float = 48000.0, oversample: int = 2) -> Topology:
    """Instantiate a topology by name (``drive``, ``amp``, ``eq_match``)."""
    try:
        cls = TOPOLOGIES[name]
    except KeyError:
        raise ValueError(f"unknown topology {name!r}; known: {sorted(TOPOLOGIES)}") from None
    return cls(sample_rate=sample_rate, oversample=oversample)

"""The passive treble/mid/bass (TMB) tone stack of Fender and Marshall amps.

Model: D. T. Yeh and J. O. Smith, "Discretization of the '59 Fender Bassman tone
stack", DAFx 2006: a third-order analog transfer function whose coefficients are
polynomials in the pot positions and the component values, discretised with the
bilinear transform.

Circuit (ideal voltage source at the input, unloaded output), node names as in the
nodal-analysis test (tests/test_dsp_tonestack.py):

    in --C1-- n1 --(1-t)·R1-- out --t·R1-- n2        treble pot R1, wiper = output
    in --R4-- n3                                      slope resistor
    n3 --C2-- n2                                      bass cap
    n3 --C3-- n5                                      mid cap to the mid-pot wiper
    n2 --l·R2-- n4                                    bass pot (variable resistor)
    n4 --(1-m)·R3-- n5 --m·R3-- ground                mid pot R3, wiper n5

Pot positions t (treble), m (mid), l (bass) are fractions in [0, 1] (1 = full up);
t is the fraction of R1 between the wiper and the bass end, m the fraction of R3
between the wiper and ground, l the fraction of R2 in circuit.

Analog transfer function (C123 = C1·C2·C3):

    H(s) = (b1 s + b2 s² + b3 s³) / (1 + a1 s + a2 s² + a3 s³)

    b1 = t·C1·R1 + m·C3·R3 + l·(C1 + C2)·R2 + (C1 + C2)·R3
    b2 = t·(C1·C2 + C1·C3)·R1·R4 − m²·(C1 + C2)·C3·R3² + m·(C1·C3·R1·R3 + (C1 + C2)·C3·R3²)
         + l·(C1·C2·R1·R2 + C1·C2·R2·R4 + C1·C3·R2·R4) + l·m·(C1 + C2)·C3·R2·R3
         + (C1·C2·R1·R3 + C1·C2·R3·R4 + C1·C3·R3·R4)
    b3 = C123·[ l·m·(R1 + R4)·R2·R3 − m²·(R1 + R4)·R3² + m·(R1 + R4)·R3² + t·R1·R3·R4
               − t·m·R1·R3·R4 + t·l·R1·R2·R4 ]
    a1 = (C1·R1 + C1·R3 + C2·R3 + C2·R4 + C3·R4) + m·C3·R3 + l·(C1 + C2)·R2
    a2 = m·(C1·C3·R1·R3 − C2·C3·R3·R4 + (C1 + C2)·C3·R3²) + l·m·(C1 + C2)·C3·R2·R3
         − m²·(C1 + C2)·C3·R3² + l·(C1·C2·R2·R4 + C1·C2·R1·R2 + C1·C3·R2·R4 + C2·C3·R2·R4)
         + (C1·C2·R1·R4 + C1·C3·R1·R4 + C1·C2·R3·R4 + C1·C2·R1·R3 + C1·C3·R3·R4 + C2·C3·R3·R4)
    a3 = C123·[ l·m·(R1 + R4)·R2·R3 − m²·(R1 + R4)·R3² + m·(R3²·R4 + R1·R3² − R1·R3·R4)
               + l·R1·R2·R4 + R1·R3·R4 ]

Verification: these are the formulas of /work/shared/DSP-NOTES.md. An independent
nodal (MNA) analysis of the circuit above, solved with complex arithmetic, agrees with
them to machine precision (relative error ~1e-15 in H(jω)) for random pot positions and
every preset; the test suite repeats that check. No correction to the notes was needed;
what the notes leave implicit is the wiring above (mid cap C3 to the mid-pot wiper, m
measured wiper-to-ground), which is what makes the m² terms appear.

Discretisation: bilinear transform s = c·(1 − z⁻¹)/(1 + z⁻¹), c = 2·fs (or pre-warped
at ``prewarp_hz``: c = 2π·f0/tan(π·f0/fs)); see ``dsp.filters.bilinear_transform`` for
the exact coefficient mapping. Result: a third-order IIR filter (b, a), a[0] = 1.
"""
from __future__ import annotations

import torch

from dsp.filters import as_tensors, bilinear_transform, iir_filter, iir_filter_fft

__all__ = [
    "TONESTACK_PRESETS",
    "COMPONENT_NAMES",
    "log_taper",
    "tonestack_analog",
    "tonestack_coeffs",
    "tonestack",
]

#: Component names, in the order of ``tonestack_analog``'s arguments.
COMPONENT_NAMES = ("r1_ohm", "r2_ohm", "r3_ohm", "r4_ohm", "c1_farad", "c2_farad", "c3_farad")

#: Typical component values (R1 treble pot, R2 bass pot, R3 mid pot, R4 slope resistor).
TONESTACK_PRESETS: dict[str, dict[str, float]] = {
    "fender_bassman_5f6a": dict(r1_ohm=250e3, r2_ohm=1e6, r3_ohm=25e3, r4_ohm=56e3,
                                c1_farad=250e-12, c2_farad=20e-9, c3_farad=20e-9),
    "marshall_jcm800": dict(r1_ohm=220e3, r2_ohm=1e6, r3_ohm=22e3, r4_ohm=33e3,
                            c1_farad=470e-12, c2_farad=22e-9, c3_farad=22e-9),
    "marshall_jcm2000": dict(r1_ohm=250e3, r2_ohm=1e6, r3_ohm=25e3, r4_ohm=56e3,
                             c1_farad=500e-12, c2_farad=22e-9, c3_farad=22e-9),
}

_DEFAULT = TONESTACK_PRESETS["fender_bassman_5f6a"]


def log_taper(position, k=3.4) -> torch.Tensor:
    """Audio-taper approximation of a pot: fraction = exp((position − 1)·k).

    Args:
        position: knob position in [0, 1] (tensor or number).
        k: taper steepness (learnable tensor allowed); 3.4 is the classic bass-pot value.
    Returns:
        fraction in (0, 1]: 1 at position 1, exp(−k) (0.033 for k = 3.4) at position 0.
    """
    position, k = as_tensors(position, k)
    return torch.exp((position - 1.0) * k)


def tonestack_analog(treble, mid, bass, r1_ohm, r2_ohm, r3_ohm, r4_ohm,
                     c1_farad, c2_farad, c3_farad) -> tuple[torch.Tensor, torch.Tensor]:
    """Analog TMB tone-stack polynomials (Yeh & Smith 2006), see the module docstring.

    Args:
        treble, mid, bass: pot fractions t, m, l in [0, 1] (tensors broadcast together).
        r1_ohm..r4_ohm: treble pot, bass pot, mid pot, slope resistor (ohm).
        c1_farad..c3_farad: treble, bass, mid capacitors (farad).
    Returns:
        (B, A), each (..., 4), ascending powers of s: B = [0, b1, b2, b3],
        A = [1, a1, a2, a3].
    """
    t, m, l, r1, r2, r3, r4, c1, c2, c3 = as_tensors(
        treble, mid, bass, r1_ohm, r2_ohm, r3_ohm, r4_ohm, c1_farad, c2_farad, c3_farad)
    c123 = c1 * c2 * c3
    c12 = c1 + c2
    m2 = m * m
    b1 = t * c1 * r1 + m * c3 * r3 + l * c12 * r2 + c12 * r3
    b2 = (t * (c1 * c2 + c1 * c3) * r1 * r4
          - m2 * c12 * c3 * r3 * r3
          + m * (c1 * c3 * r1 * r3 + c12 * c3 * r3 * r3)
          + l * (c1 * c2 * r1 * r2 + c1 * c2 * r2 * r4 + c1 * c3 * r2 * r4)
          + l * m * c12 * c3 * r2 * r3
          + (c1 * c2 * r1 * r3 + c1 * c2 * r3 * r4 + c1 * c3 * r3 * r4))
    b3 = c123 * (l * m * (r1 + r4) * r2 * r3
                 - m2 * (r1 + r4) * r3 * r3
                 + m * (r1 + r4) * r3 * r3
                 + t * r1 * r3 * r4
                 - t * m * r1 * r3 * r4
                 + t * l * r1 * r2 * r4)
    a1 = (c1 * r1 + c1 * r3 + c2 * r3 + c2 * r4 + c3 * r4) + m * c3 * r3 + l * c12 * r2
    a2 = (m * (c1 * c3 * r1 * r3 - c2 * c3 * r3 * r4 + c12 * c3 * r3 * r3)
          + l * m * c12 * c3 * r2 * r3
          - m2 * c12 * c3 * r3 * r3
          + l * (c1 * c2 * r2 * r4 + c1 * c2 * r1 * r2 + c1 * c3 * r2 * r4 + c2 * c3 * r2 * r4)
          + (c1 * c2 * r1 * r4 + c1 * c3 * r1 * r4 + c1 * c2 * r3 * r4 + c1 * c2 * r1 * r3
             + c1 * c3 * r3 * r4 + c2 * c3 * r3 * r4))
    a3 = c123 * (l * m * (r1 + r4) * r2 * r3
                 - m2 * (r1 + r4) * r3 * r3
                 + m * (r3 * r3 * r4 + r1 * r3 * r3 - r1 * r3 * r4)
                 + l * r1 * r2 * r4
                 + r1 * r3 * r4)
    b1, b2, b3, a1, a2, a3 = torch.broadcast_tensors(b1, b2, b3, a1, a2, a3)
    big_b = torch.stack([torch.zeros_like(b1), b1, b2, b3], dim=-1)
    big_a = torch.stack([torch.ones_like(a1), a1, a2, a3], dim=-1)
    return big_b, big_a


def tonestack_coeffs(sample_rate: float, treble, mid, bass, *,
                     r1_ohm=_DEFAULT["r1_ohm"], r2_ohm=_DEFAULT["r2_ohm"],
                     r3_ohm=_DEFAULT["r3_ohm"], r4_ohm=_DEFAULT["r4_ohm"],
                     c1_farad=_DEFAULT["c1_farad"], c2_farad=_DEFAULT["c2_farad"],
                     c3_farad=_DEFAULT["c3_farad"], prewarp_hz=None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Discrete TMB tone stack: ``tonestack_analog`` + bilinear transform (c = 2·fs).

    Args:
        sample_rate: Hz. treble, mid, bass: pot fractions in [0, 1].
        r1_ohm..c3_farad: components (default: Fender Bassman 5F6-A; pass
            ``**TONESTACK_PRESETS[name]`` for another amp).
        prewarp_hz: optional frequency (Hz) mapped exactly by the bilinear transform.
    Returns:
        (b, a) of shape (..., 4), a[..., 0] = 1: y[n] = Σ b_k x[n-k] − Σ_{k≥1} a_k y[n-k].

    Design in float64 (float64 pot/component tensors): the direct-form coefficients of
    this filter are ill-conditioned, and merely rounding them to float32 changes |H| by
    up to ~0.5 % at 48 kHz and ~7 % at 96 kHz. The signal may stay float32.
    """
    big_b, big_a = tonestack_analog(treble, mid, bass, r1_ohm, r2_ohm, r3_ohm, r4_ohm,
                                    c1_farad, c2_farad, c3_farad)
    return bilinear_transform(big_b, big_a, sample_rate, prewarp_hz=prewarp_hz)


def tonestack(x: torch.Tensor, sample_rate: float, treble, mid, bass, *,
              method: str = "recursive", **components) -> torch.Tensor:
    """Filter x (..., T) through the tone stack (``tonestack_coeffs``).

    method: "recursive" (exact, ``iir_filter``) or "fft" (``iir_filter_fft``).
    Pot and component tensors broadcast against x's batch dims (see dsp.filters); when
    all are python numbers the coefficients are designed in float64. Returns x's dtype.
    """
    params = [treble, mid, bass]
    if not any(isinstance(p, torch.Tensor) for p in list(params) + list(components.values())):
        params = as_tensors(*params, dtype=torch.float64)  # numbers: design in float64
    b, a = tonestack_coeffs(sample_rate, *params, **components)
    if method == "recursive":
        return iir_filter(x, b, a)
    if method == "fft":
        return iir_filter_fft(x, b, a)
    raise ValueError(f"unknown method {method!r}; expected 'recursive' or 'fft'")

"""The topologies' structural options, without torch (the rig file is checked against
them when a project opens, long before a fit imports torch).

A structural option is a shared 0/1 value of a topology that no gradient moves: which
of two arrangements the circuit has, or whether it has a section at all. The fitter
decides each one at init from the reference capture by trying the values listed here
(:meth:`dsp.fit.Fitter._init_variants`); an option listed with a single value is
not decided from the captures (the measurements that say why are in
:class:`dsp.topologies.AmpTopology`): it takes that value (0: off, 1: on) unless the
rig's block sets it (``structure = { drive_section = 1 }``) or
:class:`dsp.fit.FitConfig` ``variants`` does.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StructureOption", "STRUCTURE", "check_structure"]


@dataclass(frozen=True)
class StructureOption:
    name: str
    tried: tuple[float, ...]  # the values the fitter tries at init (one: not decided)
    meaning: str              # what 1 means, for the rig file's reader (every option is 0 or 1)


STRUCTURE: dict[str, tuple[StructureOption, ...]] = {
    "drive": (),
    "amp": (
        StructureOption("tonestack_position", (0.0, 1.0),
                        "the tone stack between the two tube stages (Fender); 0: after them (Marshall)"),
        StructureOption("drive_section", (0.0,),
                        "a four-band clipper in front of the preamp, mixed with the dry signal "
                        "(a built-in boost or drive channel)"),
        StructureOption("band_split", (0.0,),
                        "the first tube stage split into four bands, each driven on its own"),
        StructureOption("blend_tone", (0.0, 1.0),
                        "a blend tone after the TMB stack: one pot crossfading a low-pass and a "
                        "high-pass (a Big Muff Tone, Guitarix's MetalHead)"),
        StructureOption("shaper_tables", (0.0,),
                        "learnable tables that correct the three shapers' curves; left out, "
                        "the plain smooth curves"),
        StructureOption("band_chain", (0.0,),
                        "the whole preamp and power amp run once per band: the signal split "
                        "into five bands, each through its own copy of the chain, summed "
                        "(Guitarix's multiband amps)"),
    ),
    "eq_match": (),
}


def check_structure(topology: str, values: dict) -> dict[str, float]:
    """``values`` ({name: 0/1}) checked against ``topology``'s options: the same as
    floats, or ``ValueError`` with a message that names what is wrong and what is
    allowed."""
    options = {o.name: o for o in STRUCTURE.get(topology, ())}
    out = {}
    for name, v in values.items():
        if name not in options:
            have = f"its options: {', '.join(options)}, each 0 or 1" if options else "it has none"
            raise ValueError(f"{name!r} is not a structural option of the {topology} topology ({have})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) not in (0.0, 1.0):
            raise ValueError(f"{name} = {v!r}: write 0 or 1 (1: {options[name].meaning})")
        out[name] = float(v)
    return out

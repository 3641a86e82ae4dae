"""Export fitted twins for the C++ engine: ``model.json`` ("unit-model" v1), the engine
header, an embedded-model header and golden vectors.

The document (``MODEL_FORMAT``/``MODEL_VERSION``, independent of the package version)::

    {
      "format": "unit-model", "version": 1,
      "generator": {"package": "unit-trainer", "package_version": ..., "twin_format": 1,
                    "knob_map_format": 1},
      "rig": {...} | null,                  # the rig file as a dict (provenance)
      "chain": ["01_DS1", "02_Amp"],        # block names, processing order (in series)
      "knobs": [                            # every knob of the rig, modelled or fixed
        {"id": "Drive", "name": "Drive", "block": "01_DS1", "kind": "continuous"|"switch",
         "minimum": 0.0, "maximum": 10.0, "reference": 5.0, "positions": [],
         "modelled": true, "fixed": null}, ...],
      "blocks": [
        {"name": "01_DS1", "topology": "drive", "oversample": 2, "polarity": 1.0,
         "fit_sample_rate": 48000.0,
         "controls": [{"name", "unit", "minimum", "maximum", "default", "scale", "doc"}],
         "shared": {physical shared values: ohms, farads, taper constants,
                    structural switches: allpass, output_lp, input_hp2, blend_tone,
                    tonestack_position, band_split, drive_section, drive_section_v2 (0/1)},
         "reference_controls": {control: physical value at the reference setting},
         "knob_map": {unit-knob-map v1: knobs, controls, base_raw, curves (knots + values
                      per control: "pwl" curves, "table" switch tables), mlp (W1, b1,
                      W2, input_mask, enabled), squash},
         "resampler": {"kind": "kaiser-windowed-sinc, L-th band", "factor": 2,
                       "taps": [...], "twin": "zero-phase", "engine": "causal, latency (len-1)/factor"}
                      | null,
         "output_fir": {"sample_rate": 48000.0, "taps": [...]} | absent,   # on when shared
                      # "output_fir" is 1: a causal FIR after everything else, its taps at
                      # sample_rate, carried to the running rate by dsp.filters.resample_fir
         "twin": {"shared_raw": {...}, "status": ..., "report": {...}}}   # re-import
      ]
    }

Every number the engine needs is in physical units or is the knob map's own
parameters; coefficients are NOT exported: the engine designs them from the physical
controls at its running sample rate (44.1 to 96 kHz). Knob ids are the knob names,
or ``"<block>/<name>"`` where two blocks share a name.

Export -> :func:`read_model` -> :func:`blocks_from_model` -> export gives identical
bytes (JSON with sorted keys, ``repr`` floats, no timestamps).

References:
    NAM (sdatkinson/neural-amp-modeler): versioned export, golden input/output vectors.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CPP_DIR",
    "EDGE_SILENCE",
    "GOLDEN_FORMAT",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "blocks_from_model",
    "dumps_model",
    "engine_latency_samples",
    "export_project_models",
    "golden_input",
    "golden_vectors",
    "model_document",
    "read_model",
    "render_chain",
    "synthetic_block",
]

MODEL_FORMAT = "unit-model"
MODEL_VERSION = 1
GOLDEN_FORMAT = "unit-golden"


def _cpp_dir() -> Path:
    """The C++ engine sources: ``export/cpp`` of this repository, or the installed
    ``unit_export`` data package (pyproject maps ``export/`` to it) in a wheel install."""
    here = Path(__file__).resolve().parent.parent / "export" / "cpp"
    if (here / "unit_engine.h").is_file():
        return here
    try:
        import unit_export

        return Path(unit_export.__file__).resolve().parent / "cpp"
    except ImportError:
        return here


#: where the C++ engine sources live (the JUCE templates are in ``CPP_DIR/../juce``)
CPP_DIR = _cpp_dir()
#: MSVC caps one string literal at ~16 KB: the embedded model is split in pieces
_EMBED_CHUNK = 12000


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("unit-trainer")
    except Exception:  # noqa: BLE001
        return "unknown"


def _plain(v: Any) -> Any:
    """JSON-normalise: tuples -> lists, numpy scalars -> Python, NaN/inf -> None."""
    def fix(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {str(k): fix(x) for k, x in o.items()}
        if isinstance(o, (list, tuple)):
            return [fix(x) for x in o]
        return o
    return fix(json.loads(json.dumps(v, default=lambda o: o.item() if hasattr(o, "item") else str(o))))


def _rig_dict(rig_info) -> dict | None:
    if rig_info is None:
        return None
    if hasattr(rig_info, "to_toml_dict"):
        rig_info = rig_info.to_toml_dict()
    return _plain(dict(rig_info))


def _fixed_knobs(rig: dict | None, block_name: str, modelled: set[str]) -> list[dict]:
    """Fixed (not modelled) knobs of ``block_name`` in a rig dict (rig.toml layout)."""
    out = []
    for b in (rig or {}).get("blocks", []) or []:
        if str(b.get("id", b.get("name"))) != block_name:
            continue
        for k in b.get("knobs", []) or []:
            if k.get("role") == "fixed" and k.get("name") not in modelled:
                lo, hi = float(k.get("minimum", 0.0)), float(k.get("maximum", 10.0))
                val = float(k.get("fixed", 5.0))
                out.append({"name": str(k["name"]), "kind": "continuous", "minimum": lo,
                            "maximum": hi, "reference": val, "positions": [],
                            "modelled": False, "fixed": val})
    return out


def _resampler(block) -> dict | None:
    if block.oversample <= 1:
        return None
    from dsp.shapers import oversampling_fir  # upsample/downsample's FIR

    taps = oversampling_fir(block.oversample).numpy()  # symmetric, odd length, L-th band
    return {"kind": "kaiser-windowed-sinc, L-th band", "factor": block.oversample,
            "taps": [float(t) for t in taps],
            "twin": "zero-phase (delay removed)",
            "engine": "causal polyphase; latency (len(taps)-1)/factor base-rate samples per block"}


def _checked_knob_map(block) -> dict:
    """The block's knob map, checked against the topology's controls.

    ``FittedBlock.render`` squashes raw controls with the ranges the map carries (those
    of its fit, ``Topology.use_control_ranges``), so the export keeps them: a model
    fitted before a range changed plays in the plugin as it renders. Other controls (a
    renamed or added one) cannot be exported: fit again."""
    from dsp.topologies import TOPOLOGIES

    km = block.knob_map
    TOPOLOGIES[block.topology].check_fitted_controls(km["controls"], "fit it again to export it")
    return km


def _block_entry(name: str, block) -> dict:
    from dsp.controls import evaluate_dict
    from dsp.twin import topology_controls

    km = _checked_knob_map(block)
    ref = {k["name"]: k["reference"] for k in km["knobs"]}
    return {
        "name": name,
        "topology": block.topology,
        "oversample": block.oversample,
        "polarity": block.polarity,
        "fit_sample_rate": block.sample_rate,
        "controls": topology_controls(block.topology),
        "shared": block._shared_physical(),
        "reference_controls": evaluate_dict(km, ref),
        "knob_map": km,
        "resampler": _resampler(block),
        **({"output_fir": {"sample_rate": block.sample_rate, "taps": list(block.output_fir)}}
           if block.output_fir is not None else {}),
        "twin": {"shared_raw": block.shared_raw, "status": block.status,
                 "report": block._report},
    }


def model_document(models: Mapping[str, Any], rig_info=None) -> dict:
    """The "unit-model" document for ``models`` (``{block name: FittedBlock}``, in
    processing order) and the rig (a ``unit_tui.rig.Rig``, its ``to_toml_dict()`` or
    ``None``)."""
    rig = _rig_dict(rig_info)
    blocks = [_block_entry(str(n), b) for n, b in models.items()]
    knobs = []
    for b in blocks:
        names = set()
        for k in b["knob_map"]["knobs"]:
            names.add(k["name"])
            knobs.append({"name": k["name"], "block": b["name"], "kind": k["kind"],
                          "minimum": k["minimum"], "maximum": k["maximum"],
                          "reference": k["reference"], "positions": list(k.get("positions", [])),
                          "modelled": True, "fixed": None})
        for fk in _fixed_knobs(rig, b["name"], names):
            knobs.append(dict(fk, block=b["name"]))
    counts: dict[str, int] = {}
    for k in knobs:
        counts[k["name"]] = counts.get(k["name"], 0) + 1
    for k in knobs:
        k["id"] = k["name"] if counts[k["name"]] == 1 else f"{k['block']}/{k['name']}"
    doc = {"format": MODEL_FORMAT, "version": MODEL_VERSION,
           "generator": {"package": "unit-trainer", "package_version": _package_version(),
                         "twin_format": 1, "knob_map_format": 1},
           "rig": rig, "chain": [b["name"] for b in blocks], "knobs": knobs, "blocks": blocks}
    return _plain(doc)


def dumps_model(doc: dict) -> str:
    """Canonical text: sorted keys, one-space indent, ``repr`` floats, trailing newline."""
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n"


def read_model(path_or_text: str | os.PathLike) -> dict:
    """Parse and check a "unit-model" document (a path, or the JSON text itself)."""
    s = os.fspath(path_or_text)
    text = s if s.lstrip().startswith("{") else Path(s).read_text(encoding="utf-8")
    doc = json.loads(text)
    if doc.get("format") != MODEL_FORMAT:
        raise ValueError(f"not a {MODEL_FORMAT} document (format={doc.get('format')!r})")
    if doc.get("version") != MODEL_VERSION:
        raise ValueError(f"{MODEL_FORMAT} version {doc.get('version')!r} is not supported "
                         f"(this reader: {MODEL_VERSION})")
    return doc


def blocks_from_model(doc: dict) -> dict:
    """``{block name: FittedBlock}`` back from a document (for re-export and checks)."""
    from dsp.twin import FittedBlock

    out = {}
    for b in doc["blocks"]:
        t = b["twin"]
        out[b["name"]] = FittedBlock(b["topology"], b["fit_sample_rate"], b["oversample"],
                                     t["shared_raw"], b["knob_map"], b["polarity"],
                                     t.get("report"), t.get("status", "complete"),
                                     (b.get("output_fir") or {}).get("taps"))
    return out


def engine_latency_samples(doc: dict) -> int:
    """The C++ engine's delay behind the twin (base-rate samples): causal resampling."""
    lat = 0
    for b in doc["blocks"]:
        r = b.get("resampler")
        if r:
            lat += (len(r["taps"]) - 1) // r["factor"]
    return lat


# -------------------------------------------------------------------------- rendering
def _split_setting(doc: dict, setting: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Knob ids/names -> per-block ``{knob name: value}`` (modelled knobs only)."""
    per: dict[str, dict[str, float]] = {b["name"]: {} for b in doc["blocks"]}
    for key, v in setting.items():
        hits = [k for k in doc["knobs"] if k["id"] == key] or [k for k in doc["knobs"] if k["name"] == key]
        if len(hits) != 1:
            raise KeyError(f"knob {key!r} is unknown or ambiguous; ids: {[k['id'] for k in doc['knobs']]}")
        k = hits[0]
        if k["modelled"]:
            per[k["block"]][k["name"]] = float(v)
    return per


def render_chain(doc: dict, blocks: Mapping[str, Any], setting: Mapping[str, float],
                 audio: np.ndarray, sample_rate: float) -> np.ndarray:
    """The twin's output of the whole chain (blocks in series), float64 ``(T,)``."""
    per = _split_setting(doc, setting)
    y = np.asarray(audio, dtype=np.float64)
    for name in doc["chain"]:
        y = np.asarray(blocks[name].render(per[name], y, sample_rate), dtype=np.float64)
    return y


def golden_input(sample_rate: int = 48000, seconds: float = 0.1, seed: int = 7) -> np.ndarray:
    """A short guitar-like input: plucked notes, then silence (float32 ``(T,)``).

    It starts and ends with silence (``EDGE_SILENCE`` samples): the twin's zero-phase
    resampler drops the pre-ringing before t = 0 (and after the end), which a causal
    engine keeps; with silence at the edges there is none and both compute the same.
    """
    from dsp.testsignal import pluck

    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    e = EDGE_SILENCE
    body = np.zeros(max(n - 2 * e, 16))
    m = len(body)
    for i, (f, vel) in enumerate(((82.41, 0.5), (196.0, 0.3), (329.63, 0.25), (110.0, 0.4))):
        start = int(i * m / 6)
        body[start:] += vel * pluck(f, m - start, sample_rate, rng, t60=1.0)
    k = int(0.8 * m)
    body[k:] *= np.linspace(1.0, 0.0, m - k)
    body *= 0.5 / max(1e-9, float(np.max(np.abs(body))))
    return np.concatenate([np.zeros(e), body, np.zeros(e)]).astype(np.float32)


#: silence at both ends of parity-test inputs (base-rate samples, > the FIR half-length)
EDGE_SILENCE = 256


def _f32(values) -> list[float]:
    """Shortest decimals that round-trip to float32 (keeps the golden file small)."""
    return [float(str(v)) for v in np.asarray(values, dtype=np.float32)]


def golden_settings(doc: dict, n_random: int = 2, seed: int = 0) -> list[dict[str, float]]:
    """Reference, each modelled knob at its extremes, and random combinations."""
    rng = np.random.default_rng(seed)
    mk = [k for k in doc["knobs"] if k["modelled"]]
    out: list[dict[str, float]] = [{}]
    for k in mk[:3]:
        lo = min(k["positions"]) if k["kind"] == "switch" else k["minimum"]
        hi = max(k["positions"]) if k["kind"] == "switch" else k["maximum"]
        out += [{k["id"]: float(lo)}, {k["id"]: float(hi)}]
    for _ in range(n_random):
        s = {}
        for k in mk:
            if k["kind"] == "switch":
                s[k["id"]] = float(rng.choice(k["positions"]))
            else:
                s[k["id"]] = float(np.round(rng.uniform(k["minimum"], k["maximum"]), 3))
        out.append(s)
    return out


def golden_vectors(doc: dict, blocks: Mapping[str, Any] | None = None,
                   sample_rates: tuple[int, ...] = (48000, 44100), seconds: float = 0.1) -> dict:
    """Golden input/outputs of the twin for the engine's self-check (``unit-golden`` v1).

    One set per sample rate (the engine redesigns its filters at each): the first rate
    has every :func:`golden_settings` case, the others the reference and the last two.
    Layout: ``{"format", "version", "max_esr", "sets": [{"sample_rate",
    "latency_samples", "tail_samples", "input", "cases": [{"knobs", "output"}],
    "skipped_not_finite": [knobs, ...]}]}`` (settings where the twin's own output is
    not finite, e.g. a cut-off above Nyquist at 44.1 kHz, are left out).

    The engine's output is the twin's delayed by ``latency_samples``; the check compares
    ``engine[latency : latency + T - tail]`` with ``output[: T - tail]``: the twin's
    zero-phase resampler sees no signal beyond the end, so the last ``tail`` samples
    are left out.
    """
    blocks = blocks if blocks is not None else blocks_from_model(doc)
    settings = golden_settings(doc)
    sets = []
    for i, sr in enumerate(sample_rates):
        x = golden_input(sr, seconds)
        cases, skipped = [], []
        for s in settings if i == 0 else settings[:1] + settings[-2:]:
            with np.errstate(over="ignore", invalid="ignore"):
                y = render_chain(doc, blocks, s, x, sr)
            if not np.all(np.isfinite(y)) or np.max(np.abs(y)) > 1e6:
                # the twin itself is undefined there (e.g. a cut-off above this rate's
                # Nyquist frequency): no reference to check against
                skipped.append(s)
                continue
            cases.append({"knobs": s, "output": _f32(y)})
        sets.append({"sample_rate": sr, "latency_samples": engine_latency_samples(doc),
                     "tail_samples": 2 * engine_latency_samples(doc), "input": _f32(x), "cases": cases,
                     "skipped_not_finite": skipped})
    return {"format": GOLDEN_FORMAT, "version": 1, "max_esr": 1e-8, "sets": sets}


def synthetic_block(topology: str, knobs, *, seed: int = 0, oversample: int = 2, polarity: float = -1.0,
                    base: dict | None = None, shared: dict | None = None, output_fir=None):
    """A FittedBlock with a non-trivial random knob map, for parity tests and benchmarks
    (the point is parity, not accuracy).

    ``knobs``: :class:`dsp.controls.KnobDef` list.

    ``base``: physical values some controls take at the reference setting (the rest are
    the declared defaults plus noise). ``shared``: raw shared values to set as given
    (structural switches: ``{"allpass": 1.0, "tonestack_position": 1.0}``). With the
    shared ``output_fir`` on, ``output_fir`` gives its taps at 48 kHz (default: a unit
    impulse plus a seeded decaying noise, 240 taps, like a cabinet's coloration)."""
    import torch

    from dsp.controls import KnobControlMap
    from dsp.topologies import SHAPER_NAMES, TOPOLOGIES
    from dsp.twin import FittedBlock

    g = torch.Generator().manual_seed(seed)
    m = KnobControlMap(knobs, list(TOPOLOGIES[topology].CONTROLS), n_knots=5, hidden=8)
    with torch.no_grad():
        m.base.add_(0.5 * torch.randn(m.base.shape, generator=g))
        for cv in m.curves:
            cv.copy_(0.8 * torch.randn(cv.shape, generator=g))
        m.W2.copy_(0.3 * torch.randn(m.W2.shape, generator=g))
        for name, v in (base or {}).items():
            i = [c.name for c in m.controls].index(name)
            m.base[i] = m.controls[i].to_raw(v)
    topo = TOPOLOGIES[topology](48000.0, oversample)
    values = {k: float(v.detach()) * (1.0 + 0.05 * float(torch.randn(1, generator=g)))
              for k, v in topo.shared.items()}
    # the amp's shaper tables start at 0 (the plain shapers): give them a random curve
    for k in SHAPER_NAMES:
        if k in values:
            values[k] = 0.05 * float(torch.randn(1, generator=g))
    values.update({k: float(v) for k, v in (shared or {}).items()})
    if values.get("output_fir", 0.0) > 0.5 and output_fir is None:
        n = torch.arange(240, dtype=torch.float64)
        output_fir = 0.3 * torch.randn(240, generator=g, dtype=torch.float64) * torch.exp(-n / 40.0)
        output_fir[0] += 1.0
        output_fir = output_fir.tolist()
    elif values.get("output_fir", 0.0) <= 0.5:
        output_fir = None
    return FittedBlock(topology, 48000.0, topo.oversample, values, m.to_dict(), polarity,
                       output_fir=output_fir)


# ---------------------------------------------------------------------------- writing
def _embedded_header(text: str) -> str:
    pieces = [text[i:i + _EMBED_CHUNK] for i in range(0, len(text), _EMBED_CHUNK)]
    lit = ",\n".join(f'R"unitjson({p})unitjson"' for p in pieces)
    return ("// Generated by dsp/export.py: model.json embedded for unit::Engine::fromJson.\n"
            "// Do not edit; re-export instead.\n#pragma once\n#include <string>\n\n"
            "namespace unit_model {\n"
            f"static const char* const kPieces[] = {{\n{lit}\n}};\n"
            "inline std::string json() {\n    std::string s;\n"
            "    for (const char* p : kPieces) s += p;\n    return s;\n}\n"
            "}  // namespace unit_model\n")


def _write(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data.encode("utf-8"))
    os.replace(tmp, path)


def export_project_models(models: Mapping[str, Any], rig_info, out_dir: str | os.PathLike,
                          *, golden: bool = True) -> dict[str, Path]:
    """Write the export folder for ``models`` (``{block id: FittedBlock}``, chain order).

    Layout::

        OUT/model.json                 the "unit-model" v1 document
        OUT/cpp/unit_engine.h          the engine (C++17, standard library only)
        OUT/cpp/unit_model_data.h      model.json embedded (no file needed at run time)
        OUT/cpp/golden_test.cpp        checks the engine against the golden vectors
        OUT/cpp/tools/unit_render.cpp  command-line renderer (raw float32 in/out)
        OUT/golden/golden.json         twin input/outputs ("unit-golden" v1)
        OUT/juce/                      JUCE plugin project (CMake; VST3, AU on macOS,
                                       Standalone) using cpp/; generic over the model
        OUT/README.md                  how to use and check it

    Returns the written paths by role.
    """
    if not (CPP_DIR / "unit_engine.h").is_file():
        raise FileNotFoundError(f"the C++ engine sources are missing ({CPP_DIR}); "
                                "export needs the repository's export/ folder (editable install)")
    out = Path(out_dir)
    doc = model_document(models, rig_info)
    text = dumps_model(doc)
    paths = {"model": out / "model.json", "engine": out / "cpp" / "unit_engine.h",
             "embedded": out / "cpp" / "unit_model_data.h",
             "golden_test": out / "cpp" / "golden_test.cpp",
             "render_tool": out / "cpp" / "tools" / "unit_render.cpp"}
    _write(paths["model"], text)
    _write(paths["embedded"], _embedded_header(text))
    paths.update({"readme": out / "README.md", "juce_cmake": out / "juce" / "CMakeLists.txt",
                  "juce_processor_h": out / "juce" / "Source" / "PluginProcessor.h",
                  "juce_processor_cpp": out / "juce" / "Source" / "PluginProcessor.cpp",
                  "juce_editor_h": out / "juce" / "Source" / "PluginEditor.h",
                  "juce_editor_cpp": out / "juce" / "Source" / "PluginEditor.cpp"})
    for role, src in (("engine", "unit_engine.h"), ("golden_test", "golden_test.cpp"),
                      ("render_tool", "tools/unit_render.cpp"), ("readme", "README.md"),
                      ("juce_cmake", "../juce/CMakeLists.txt"),
                      ("juce_processor_h", "../juce/Source/PluginProcessor.h"),
                      ("juce_processor_cpp", "../juce/Source/PluginProcessor.cpp"),
                      ("juce_editor_h", "../juce/Source/PluginEditor.h"),
                      ("juce_editor_cpp", "../juce/Source/PluginEditor.cpp")):
        paths[role].parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CPP_DIR / src, paths[role])
    if golden:
        paths["golden"] = out / "golden" / "golden.json"
        g = golden_vectors(doc, dict(models))
        _write(paths["golden"], json.dumps(g, separators=(",", ":"), sort_keys=True) + "\n")
    return paths

"""Export: model.json round trip, and parity of the C++ engine with the twin.

The C++ side is compiled here (g++ -O2 -std=c++17, in a temporary folder) and run on
the test signal; both sides are computed from the CURRENT code (topologies, knob map),
so a change on either side that the other lacks fails these tests.

Parity tolerance: ESR <= 1e-8 (error 80 dB below the signal; issue 5). The engine is
causal: its output is the twin's delayed by ``latencySamples()`` (the oversampling FIR,
which the twin applies zero-phase); inputs start and end with silence (see
:func:`dsp.export.golden_input`) and the last ``2 * latency`` samples are left out
(the twin's resampler sees nothing past the end).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import amp_knobs, drive_knobs  # one definition, shared with the JUCE build fixture
from dsp import export
from dsp.topologies import TOPOLOGIES

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")

MAX_ESR = 1e-8
CPP = export.CPP_DIR
CXX = ["g++", "-O2", "-std=c++17", "-Wall", "-Wextra", "-Werror"]


# ----------------------------------------------------------------------------- helpers
def random_block(topology: str, knobs, seed: int = 0, oversample: int = 2, polarity: float = -1.0,
                 base: dict | None = None, shared: dict | None = None):
    return export.synthetic_block(topology, knobs, seed=seed, oversample=oversample, polarity=polarity,
                                  base=base, shared=shared)


def eq_knobs():
    from dsp.controls import KnobDef

    return [KnobDef("Level", affects=("level_db", "high_shelf_db")),
            KnobDef("Bright", kind="switch", minimum=0, maximum=1, positions=(0.0, 1.0),
                    reference=0.0, affects=("peak3_db", "peak3_hz", "lp_hz"))]


def parity_signal(sample_rate: int) -> np.ndarray:
    """~1.8 s of the UNIT test signal (silence, guitar phrase, a loud sweep), silent ends."""
    from dsp.testsignal import generate_test_signal

    x, _ = generate_test_signal(sample_rate, duration_s=32.0)
    sr = sample_rate
    parts = [x[: int(1.5 * sr)], x[int(13.5 * sr): int(13.8 * sr)], np.zeros(export.EDGE_SILENCE)]
    return np.concatenate(parts).astype(np.float32)


def esr(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sum((y - ref) ** 2) / max(np.sum(ref ** 2), 1e-30))


def esr_against(doc, models, plain) -> float:
    """ESR between the chain of ``doc`` / ``models`` and the same chain built from
    ``plain`` (a section off), rendered in Python at 48 kHz: how much the section
    changes what the block does (a parity test of it is then not one of the plain block)."""
    x = parity_signal(48000)
    a = export.render_chain(doc, models, {}, x, 48000)
    b = export.render_chain(export.model_document(plain, None), plain, {}, x, 48000)
    return esr(a, b)


@pytest.fixture(scope="module")
def render_bin(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cpp") / "unit_render"
    subprocess.run([*CXX, "-o", str(out), str(CPP / "tools" / "unit_render.cpp")], check=True)
    return out


def run_engine(render_bin: Path, model: Path, x: np.ndarray, sample_rate: int, setting: dict,
               extra=()) -> tuple[np.ndarray, int]:
    """Engine output aligned with the twin's (latency removed), and the latency."""
    d = model.parent
    (d / "in.f32").write_bytes(np.asarray(x, np.float32).tobytes())
    args = [str(render_bin), str(model), str(d / "in.f32"), str(d / "out.f32"), str(sample_rate),
            *extra, *[f"{k}={v!r}" for k, v in setting.items()]]
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    lat = int(r.stdout.split()[1])
    y = np.fromfile(d / "out.f32", np.float32).astype(np.float64)
    return y[lat: lat + len(x)], lat


def write_model(tmp_path: Path, models: dict, rig=None) -> tuple[Path, dict]:
    doc = export.model_document(models, rig)
    p = tmp_path / "model.json"
    p.write_text(export.dumps_model(doc), encoding="utf-8")
    return p, doc


def settings_for(doc: dict, n_random: int, seed: int) -> list[dict]:
    """Reference, "captured" sweep points (one knob moved), and random settings."""
    rng = np.random.default_rng(seed)
    mk = [k for k in doc["knobs"] if k["modelled"]]
    out = [{}]
    for k in mk:
        vals = k["positions"] if k["kind"] == "switch" else [k["minimum"], 2.5, 7.5, k["maximum"]]
        out += [{k["id"]: float(v)} for v in vals if v != k["reference"]][:2]
    for _ in range(n_random):
        out.append({k["id"]: float(rng.choice(k["positions"])) if k["kind"] == "switch"
                    else float(rng.uniform(k["minimum"], k["maximum"])) for k in mk})
    return out


def check_section_parity(render_bin, out: Path, shared: dict, switch: str, seed: int, label: str):
    """A random amp with the shared values ``shared`` (its section ``switch`` on): the
    engine matches the twin at 48 and 96 kHz on the reference and two random settings,
    and the section changes what the amp does (the parity is not the plain amp's, which
    has ``switch`` at 0). Returns (doc, settings, plain models)."""
    models = {"01_Amp": random_block("amp", amp_knobs(), seed=seed, shared=shared)}
    model, doc = write_model(out, models)
    settings = settings_for(doc, 2, seed=seed + 1)
    for rate in (48000, 96000):
        worst = check_parity(render_bin, model, doc, models, rate, settings[:1] + settings[-2:])
        print(f"amp, {label}, {rate} Hz: worst ESR {worst:.2e}")
    plain = {"01_Amp": random_block("amp", amp_knobs(), seed=seed, shared=dict(shared, **{switch: 0.0}))}
    assert esr_against(doc, models, plain) > 1e-3
    return doc, settings, plain


def check_old_model_parity(render_bin, tmp_path: Path, models: dict, switch: str, settings) -> None:
    """A model.json written before the shared ``switch`` existed (the key absent) renders
    as the twin with it off (``models`` have it at 0), at 48 kHz."""
    doc = export.model_document(models, None)
    old = json.loads(export.dumps_model(doc))
    for b in old["blocks"]:
        del b["shared"][switch]
    (tmp_path / "old").mkdir()
    old_model = tmp_path / "old" / "model.json"
    old_model.write_text(json.dumps(old))
    check_parity(render_bin, old_model, doc, models, 48000, settings)


def check_parity(render_bin, model, doc, models, sample_rate, settings, extra=()):
    x = parity_signal(sample_rate)
    tail = 2 * export.engine_latency_samples(doc)
    worst = 0.0
    for s in settings:
        ref = export.render_chain(doc, models, s, x, sample_rate)
        y, lat = run_engine(render_bin, model, x, sample_rate, s, extra)
        assert lat == export.engine_latency_samples(doc)
        e = esr(y[: len(x) - tail], ref[: len(x) - tail])
        assert np.sum(ref ** 2) > 1e-9, "silent reference: the test would prove nothing"
        assert e <= MAX_ESR, f"{sample_rate} Hz, setting {s}: ESR {e:.3e} > {MAX_ESR:g}"
        worst = max(worst, e)
    return worst


# ------------------------------------------------------------------------- the format
def rig_dict():
    return {"format": 1, "project": "Bench", "sample_rate": 48000, "blocks": [
        {"id": "01_Drive", "topology": "drive", "knobs": [
            {"name": "Drive", "role": "sweep"}, {"name": "Out", "role": "fixed", "fixed": 6.0}]},
        {"id": "02_EQ", "topology": "eq_match", "knobs": [
            {"name": "Gate", "role": "fixed", "fixed": 0.0, "minimum": 0.0, "maximum": 1.0}]}]}


def test_round_trip_gives_identical_bytes(tmp_path):
    models = {"01_Drive": random_block("drive", drive_knobs(), seed=1),
              "02_EQ": random_block("eq_match", eq_knobs(), seed=2, oversample=1)}
    text = export.dumps_model(export.model_document(models, rig_dict()))
    doc = export.read_model(text)
    again = export.dumps_model(export.model_document(export.blocks_from_model(doc), doc["rig"]))
    assert again == text
    p = tmp_path / "m.json"
    p.write_text(text)
    assert export.read_model(p) == doc


def test_document_contents():
    from dsp.controls import evaluate_dict

    models = {"01_Drive": random_block("drive", drive_knobs(), seed=1),
              "02_EQ": random_block("eq_match", eq_knobs(), seed=2, oversample=1)}
    doc = export.model_document(models, rig_dict())
    assert (doc["format"], doc["version"]) == ("unit-model", 1)
    assert doc["chain"] == ["01_Drive", "02_EQ"]
    ids = [k["id"] for k in doc["knobs"]]
    assert len(set(ids)) == len(ids)
    assert "01_Drive/Level" in ids and "02_EQ/Level" in ids and "Drive" in ids  # clash -> qualified
    fixed = {k["id"]: k for k in doc["knobs"] if not k["modelled"]}
    assert fixed["Out"]["fixed"] == 6.0 and fixed["Gate"]["maximum"] == 1.0
    drive = doc["blocks"][0]
    from dsp.shapers import oversampling_fir

    assert drive["resampler"]["factor"] == 2
    assert drive["resampler"]["taps"] == [float(t) for t in oversampling_fir(2).numpy()]  # the twin's FIR
    assert export.engine_latency_samples(doc) == (len(drive["resampler"]["taps"]) - 1) // 2
    assert doc["blocks"][1]["resampler"] is None
    ref = {k["name"]: k["reference"] for k in drive["knob_map"]["knobs"]}
    phys = models["01_Drive"].controls(ref)
    for name, v in drive["reference_controls"].items():
        assert v == pytest.approx(phys[name], rel=1e-5)
        spec = next(c for c in drive["controls"] if c["name"] == name)
        assert spec["minimum"] <= v <= spec["maximum"]
    assert drive["reference_controls"] == evaluate_dict(drive["knob_map"], ref)


def test_rejects_other_versions():
    with pytest.raises(ValueError, match="version"):
        export.read_model(json.dumps({"format": "unit-model", "version": 99}))
    with pytest.raises(ValueError, match="not a unit-model"):
        export.read_model(json.dumps({"format": "unit-twin", "version": 1}))


# --------------------------------------------------------------------------- parity
@pytest.mark.parametrize("sample_rate", [48000, 44100])
def test_drive_parity(render_bin, tmp_path, sample_rate):
    """With the output all-pass and the second input high-pass on (the high-rate test
    below has them off)."""
    models = {"01_Drive": random_block("drive", drive_knobs(), seed=3, shared={"allpass": 1.0})}
    model, doc = write_model(tmp_path, models)
    assert doc["blocks"][0]["shared"]["allpass"] == 1.0 and doc["blocks"][0]["shared"]["input_hp2"] == 1.0
    settings = settings_for(doc, 3, seed=5)
    # the tone section is exercised: a strong mid peak among the settings (engine by name)
    mids = [models["01_Drive"].controls(s)["tone_mid_db"] for s in settings]
    assert max(abs(m) for m in mids) > 12.0
    worst = check_parity(render_bin, model, doc, models, sample_rate, settings)
    print(f"drive {sample_rate} Hz: worst ESR {worst:.2e}")


@pytest.mark.parametrize("sample_rate", [88200, 96000])
def test_drive_parity_high_rates(render_bin, tmp_path, sample_rate):
    models = {"01_Drive": random_block("drive", drive_knobs(), seed=4, shared={"input_hp2": 0.0})}
    model, doc = write_model(tmp_path, models)
    assert doc["blocks"][0]["shared"]["input_hp2"] == 0.0
    check_parity(render_bin, model, doc, models, sample_rate, settings_for(doc, 1, seed=6)[::3])


@pytest.mark.parametrize("sample_rate", [48000, 44100])
def test_amp_parity(render_bin, tmp_path, sample_rate):
    """Tone stack between the tube stages, output low-pass and all-pass on, the output's
    DC kept and the push-pull imbalanced (the tests below have them off)."""
    models = {"01_Amp": random_block("amp", amp_knobs(), seed=12,
                                     shared={"allpass": 1.0, "allpass2": 1.0, "tonestack_position": 1.0,
                                             "output_lp": 1.0, "output_dc": 1.0},
                                     base={"pa_imbalance": 0.4})}
    model, doc = write_model(tmp_path, models)
    sh = doc["blocks"][0]["shared"]
    assert sh["allpass"] == sh["allpass2"] == sh["tonestack_position"] == sh["output_lp"] == sh["output_dc"] == 1.0
    settings = settings_for(doc, 3, seed=13)
    assert min(abs(models["01_Amp"].controls(s)["pa_imbalance"]) for s in settings) > 0.1
    worst = check_parity(render_bin, model, doc, models, sample_rate, settings[:1] + settings[-4:])
    print(f"amp {sample_rate} Hz: worst ESR {worst:.2e}")


def test_amp_parity_with_the_band_split(render_bin, tmp_path):
    """The first tube stage split into four bands, each driven by its own gain: the
    crossovers given out of order (the engine sorts them as torch does), drives that
    differ by up to 24 dB, at 48 kHz and (a different design of every crossover
    section) 96 kHz."""
    import math

    shared = {"band_split": 1.0, "log_xo1_hz": math.log(2500.0), "log_xo2_hz": math.log(180.0),
              "log_xo3_hz": math.log(900.0), "band1_drive_db": 12.0, "band2_drive_db": -6.0,
              "band3_drive_db": 0.0, "band4_drive_db": 18.0}
    # the split changes what the amp does (the parity is not of the plain amp)
    doc, _, _ = check_section_parity(render_bin, tmp_path, shared, "band_split", 21, "band split")
    sh = doc["blocks"][0]["shared"]
    assert sh["band_split"] == 1.0 and sh["xo2_hz"] == pytest.approx(180.0)


def test_amp_parity_with_the_shaper_tables(render_bin, tmp_path):
    """The three shapers' learnable corrections (tables), with a kink at the origin and
    curves that move the ceilings, with and without the band split of the first stage,
    at 48 and 96 kHz; a model without the switch (saved before it existed) renders the
    plain shapers whatever its tables hold."""
    import math

    from dsp.topologies import SHAPER_KNOTS, SHAPER_RANGE

    grid = [-SHAPER_RANGE + 2 * SHAPER_RANGE * j / (SHAPER_KNOTS - 1) for j in range(SHAPER_KNOTS)]
    tables = {}
    for j, xj in enumerate(grid):
        tables[f"shape1_{j:02d}"] = -0.3 * abs(xj) / (1 + abs(xj))          # a kink at 0
        tables[f"shape2_{j:02d}"] = 0.2 * math.tanh(2 * xj) - 0.1 * xj * xj / 9  # asymmetric
        tables[f"shape3_{j:02d}"] = 0.1 * math.sin(3 * xj)
    for split in (0.0, 1.0):
        shared = dict(tables, shaper_tables=1.0, band_split=split, band1_drive_db=6.0, band4_drive_db=-6.0)
        out = tmp_path / f"split{int(split)}"
        out.mkdir()
        # the tables change what the amp does (the parity is not of the plain amp)
        doc, settings, plain = check_section_parity(render_bin, out, shared, "shaper_tables", 41,
                                                    f"shaper tables, split {split}")
        sh = doc["blocks"][0]["shared"]
        assert sh["shaper_tables"] == 1.0 and sh["shape2_30"] == pytest.approx(tables["shape2_30"])
    # an old model: no switch in its shared values; the engine keeps the plain shapers
    check_old_model_parity(render_bin, tmp_path, plain, "shaper_tables", settings[:1])


def test_amp_parity_with_the_band_chain(render_bin, tmp_path):
    """The whole chain once per band (five bands, crossovers given out of order), each
    band with its own filter and sag states, with the tone stack in either place, the
    shaper tables on and the band split of the first stage set (which a band chain does
    not use, in C++ as in torch), at 48 and 96 kHz; a model saved before the option
    existed (no switch) renders the single chain."""
    import math

    from dsp.topologies import SHAPER_KNOTS, SHAPER_RANGE

    grid = [-SHAPER_RANGE + 2 * SHAPER_RANGE * j / (SHAPER_KNOTS - 1) for j in range(SHAPER_KNOTS)]
    tables = {f"shape{s}_{j:02d}": 0.1 * s * math.tanh(xj) * abs(xj) / 3 for s in (1, 2, 3)
              for j, xj in enumerate(grid)}
    crossovers = {"log_cxo1_hz": math.log(1500.0), "log_cxo2_hz": math.log(90.0),
                  "log_cxo3_hz": math.log(7000.0), "log_cxo4_hz": math.log(300.0)}
    for position in (0.0, 1.0):
        shared = dict(tables, **crossovers, band_chain=1.0, shaper_tables=1.0, band_split=1.0,
                      tonestack_position=position, band1_drive_db=12.0)
        out = tmp_path / f"position{int(position)}"
        out.mkdir()
        # the chain per band changes what the amp does (this is not the plain amp's parity)
        doc, settings, plain = check_section_parity(render_bin, out, shared, "band_chain", 51,
                                                    f"band chain, position {position}")
        sh = doc["blocks"][0]["shared"]
        assert sh["band_chain"] == 1.0 and sh["cxo2_hz"] == pytest.approx(90.0)
    # an old model: no switch in its shared values; the engine runs one chain
    check_old_model_parity(render_bin, tmp_path, plain, "band_chain", settings[:1])


@pytest.mark.parametrize("v2", [1.0, 0.0])
def test_amp_parity_with_the_drive_section(render_bin, tmp_path, v2):
    """The drive section in front of the preamp: four bands (crossovers given out of
    order), each clipped at its own drive and weighted by its own level, mixed with the
    dry signal by a knob-mapped mix, at 48 kHz and 96 kHz. The pre-gain runs after it
    at the high rate in C++ as in torch. Both forms: the second (``drive_section_v2``,
    every new fit: band limits, per-band drive slopes, cubic clippers, the dry signal
    full to mid-mix) and the first, which a model saved before it still computes."""
    import math

    shared = {"drive_section": 1.0, "log_dxo1_hz": math.log(2800.0), "log_dxo2_hz": math.log(250.0),
              "log_dxo3_hz": math.log(1100.0), "drive_band1_db": 6.0, "drive_band2_db": -3.0,
              "drive_band3_db": 0.0, "drive_band4_db": 9.0, "drive_band1_level_db": -6.0,
              "drive_band2_level_db": 3.0, "drive_band3_level_db": 0.0, "drive_band4_level_db": -2.0,
              "drive_section_v2": v2, "drive_band1_slope": 0.75, "drive_band2_slope": 1.2,
              "drive_band3_slope": 1.0, "drive_band4_slope": 0.5, "log_dlp_hz": math.log(5000.0),
              "log_dhp_hz": math.log(150.0)}
    from dsp.controls import KnobDef

    knobs = amp_knobs() + [KnobDef("Drive", affects=("drive_mix", "drive_db"))]
    base = {"drive_mix": 0.6, "drive_db": 24.0, "pre_gain_db": 6.0}
    models = {"01_Amp": random_block("amp", knobs, seed=31, shared=shared, base=base)}
    model, doc = write_model(tmp_path, models)
    sh = doc["blocks"][0]["shared"]
    assert sh["drive_section"] == 1.0 and sh["dxo2_hz"] == pytest.approx(250.0)
    assert sh["drive_section_v2"] == v2 and sh["dlp_hz"] == pytest.approx(5000.0)
    assert sh["drive_band4_db"] == pytest.approx(9.0) and sh["drive_band2_level_db"] == pytest.approx(3.0)
    settings = settings_for(doc, 2, seed=32)
    mixes = [models["01_Amp"].controls(s)["drive_mix"] for s in settings]
    assert max(mixes) > 0.3 and max(mixes) - min(mixes) > 0.1  # in the signal, moved by Drive
    for rate in (48000, 96000):
        worst = check_parity(render_bin, model, doc, models, rate, settings[:1] + settings[-2:])
        print(f"amp, drive section, {rate} Hz: worst ESR {worst:.2e}")
    # without oversampling the engine takes its other path (no resampler)
    base_rate = {"01_Amp": random_block("amp", knobs, seed=31, oversample=1, shared=shared, base=base)}
    (tmp_path / "os1").mkdir()
    model1, doc1 = write_model(tmp_path / "os1", base_rate)
    worst = check_parity(render_bin, model1, doc1, base_rate, 48000, settings[:1] + settings[-2:])
    print(f"amp, drive section, no oversampling: worst ESR {worst:.2e}")
    # the section changes what the amp does (the parity above is not of the plain amp)
    plain = {"01_Amp": random_block("amp", knobs, seed=31, shared=dict(shared, drive_section=0.0), base=base)}
    assert esr_against(doc, models, plain) > 1e-2


@pytest.mark.parametrize("position", [0.0, 1.0])
def test_amp_parity_with_the_blend_tone(render_bin, tmp_path, position):
    """The blend tone after the TMB stack, with its cut-offs apart and a knob moving
    the crossfade, in either place of the stack: the engine computes it as one
    second-order section (dsp::blend), torch as ``dsp.filters.blend_coeffs``; and it
    changes what the amp does."""
    from dsp.controls import KnobDef

    knobs = amp_knobs() + [KnobDef("Tone", affects=("tone_blend",))]
    base = {"blend_lp_hz": 400.0, "blend_hp_hz": 1900.0}
    shared = {"blend_tone": 1.0, "tonestack_position": position}
    models = {"01_Amp": random_block("amp", knobs, seed=43, shared=shared, base=base)}
    model, doc = write_model(tmp_path, models)
    assert doc["blocks"][0]["shared"]["blend_tone"] == 1.0
    settings = settings_for(doc, 2, seed=44)
    blends = [models["01_Amp"].controls(s)["tone_blend"] for s in settings]
    assert max(blends) - min(blends) > 0.2, blends
    worst = check_parity(render_bin, model, doc, models, 48000, settings[:1] + settings[-2:])
    print(f"amp, blend tone, position {position}: worst ESR {worst:.2e}")
    plain = {"01_Amp": random_block("amp", knobs, seed=43, shared=dict(shared, blend_tone=0.0), base=base)}
    assert esr_against(doc, models, plain) > 1e-2


def test_amp_parity_with_the_output_fir(render_bin, tmp_path):
    """The output FIR (240 taps at 48 kHz) after every other section: the engine runs
    it at 48 kHz as given, and at 44.1 and 96 kHz carries the taps over as
    ``dsp.filters.resample_fir`` does (same formula, computed in C++). The FIR is on
    the model's page with its rate, and it changes what the amp does."""
    models = {"01_Amp": random_block("amp", amp_knobs(), seed=41,
                                     shared={"output_fir": 1.0, "allpass": 1.0, "allpass2": 1.0})}
    model, doc = write_model(tmp_path, models)
    b = doc["blocks"][0]
    assert b["shared"]["output_fir"] == 1.0
    assert b["output_fir"]["sample_rate"] == 48000.0 and len(b["output_fir"]["taps"]) == 240
    assert export.blocks_from_model(doc)["01_Amp"].output_fir == models["01_Amp"].output_fir
    settings = settings_for(doc, 2, seed=42)
    for rate in (48000, 44100, 96000):
        worst = check_parity(render_bin, model, doc, models, rate, settings[:1] + settings[-2:])
        print(f"amp, output FIR, {rate} Hz: worst ESR {worst:.2e}")
    plain = {"01_Amp": random_block("amp", amp_knobs(), seed=41,
                                    shared={"output_fir": 0.0, "allpass": 1.0, "allpass2": 1.0})}
    assert "output_fir" not in export.model_document(plain, None)["blocks"][0]
    assert esr_against(doc, models, plain) > 1e-2


def test_a_model_with_its_output_fir_on_but_no_taps_is_refused(render_bin, tmp_path):
    models = {"01_Amp": random_block("amp", amp_knobs(), seed=41, shared={"output_fir": 1.0})}
    model, doc = write_model(tmp_path, models)
    del doc["blocks"][0]["output_fir"]
    model.write_text(export.dumps_model(doc), encoding="utf-8")
    r = subprocess.run([str(render_bin), str(model), "/dev/null", str(tmp_path / "o.f32"), "48000"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "output FIR on but no taps" in r.stderr
    from dsp.twin import FittedBlock

    with pytest.raises(ValueError, match="output FIR on"):
        FittedBlock.from_dict(dict(models["01_Amp"].to_dict(), output_fir=None))


def test_silence_in_is_exact_silence_out(render_bin, tmp_path):
    """Digital silence through an amp with an imbalanced push-pull stage (which has DC
    when driven) stays exactly 0 in torch and in C++. Hosts test for it: pedalboard
    re-creates a plugin whose output after a reset is not silent (measured: 5e-18 out
    of the engine was enough), and its latency compensation then failed."""
    for output_dc in (0.0, 1.0):
        models = {"01_Amp": random_block("amp", amp_knobs(), seed=12, shared={"output_dc": output_dc},
                                         base={"pa_imbalance": 0.4})}
        model, doc = write_model(tmp_path, models)
        x = np.zeros(48000, np.float32)
        for s in settings_for(doc, 2, seed=3)[-3:]:
            assert abs(models["01_Amp"].controls(s)["pa_imbalance"]) > 0.1
            y, _ = run_engine(render_bin, model, x, 48000, s)
            assert not np.any(y), (output_dc, s, float(np.abs(y).max()))
            ref = export.render_chain(doc, models, s, x, 48000)
            assert not np.any(ref), (output_dc, s, float(np.abs(ref).max()))


def test_amp_parity_96k_and_without_oversampling(render_bin, tmp_path):
    models = {"01_Amp": random_block("amp", amp_knobs(), seed=14)}
    model, doc = write_model(tmp_path, models)
    check_parity(render_bin, model, doc, models, 96000, settings_for(doc, 1, seed=15)[-1:])
    models = {"01_Amp": random_block("amp", amp_knobs(), seed=16, oversample=1)}
    model, doc = write_model(tmp_path, models)
    check_parity(render_bin, model, doc, models, 48000, settings_for(doc, 1, seed=17)[-1:])


def test_a_model_older_than_the_engine_is_refused_with_a_clear_message(render_bin, tmp_path):
    """A model.json written before the amp gained its last controls (the blend tone's
    tone_blend, blend_lp_hz and blend_hp_hz), run by this engine: the engine refuses it
    and says what to do, instead of misreading it."""
    models = {"01_Amp": random_block("amp", amp_knobs(), seed=12)}
    model, doc = write_model(tmp_path, models)
    km = doc["blocks"][0]["knob_map"]
    n = len(km["controls"])
    last = ["tone_blend", "blend_lp_hz", "blend_hp_hz"]
    assert [c["name"] for c in km["controls"][-3:]] == last
    for key in ("controls", "base_raw"):
        km[key] = km[key][:-3]
    for key in ("W2", "enabled", "input_mask"):
        km["mlp"][key] = km["mlp"][key][:-3]
    for cv in km["curves"]:
        for name in last:
            cv.get("values", {}).pop(name, None)
    model.write_text(export.dumps_model(doc), encoding="utf-8")
    (tmp_path / "in.f32").write_bytes(np.zeros(256, np.float32).tobytes())
    r = subprocess.run([str(render_bin), str(model), str(tmp_path / "in.f32"), str(tmp_path / "o.f32"), "48000"],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert f"has {n - 3} controls, this engine expects {n}" in r.stderr and "unit-trainer export" in r.stderr, r.stderr


def test_stale_control_ranges_follow_render(render_bin, tmp_path):
    """A map saved before a control's range changed (here: the interstage low-passes'
    old 20 kHz top, and a wider Bias range): render squashes with the ranges the map
    carries, the export keeps them, and the plugin plays what render computes."""
    block = random_block("amp", amp_knobs(), seed=18)
    stale = {c["name"]: c for c in block.knob_map["controls"]}
    stale["pa_bias"]["maximum"] += 0.3
    stale["inter1_lp_hz"]["maximum"] = stale["inter2_lp_hz"]["maximum"] = 20000.0
    models = {"01_Amp": block}
    model, doc = write_model(tmp_path, models)
    spec = {c["name"]: c for c in doc["blocks"][0]["knob_map"]["controls"]}
    assert spec["pa_bias"]["maximum"] == stale["pa_bias"]["maximum"]
    assert spec["inter1_lp_hz"]["maximum"] == 20000.0 < TOPOLOGIES["amp"].spec("inter1_lp_hz").maximum
    check_parity(render_bin, model, doc, models, 48000, [{}])
    bad = random_block("drive", drive_knobs(), seed=1)
    bad.knob_map["controls"][0]["name"] = "renamed_hz"
    with pytest.raises(ValueError, match="fit it again"):
        export.model_document({"x": bad})


def test_other_oversampling_factors(render_bin, tmp_path):
    """3x and 4x (the FIR is the twin's for that factor; the latency, 2 * OVERSAMPLE_ZEROS
    base-rate samples, does not depend on the factor)."""
    from dsp.shapers import OVERSAMPLE_ZEROS

    for topology, knobs, factor in (("drive", drive_knobs(), 4), ("amp", amp_knobs(), 3)):
        models = {"b": random_block(topology, knobs, seed=5, oversample=factor)}
        model, doc = write_model(tmp_path, models)
        assert export.engine_latency_samples(doc) == 2 * OVERSAMPLE_ZEROS
        check_parity(render_bin, model, doc, models, 44100, settings_for(doc, 1, seed=2)[-1:])


def _blackman_fir(factor: int, zeros: int = 32, cutoff: float = 0.9):
    """The FIR models exported before the half-band design carry (129 taps at 2x, no
    zero taps): a Blackman-windowed sinc, cut-off 0.9 x Nyquist, DC gain 1."""
    import torch

    n_taps = 2 * zeros * factor + 1
    n = np.arange(n_taps, dtype=np.float64)
    c = zeros * factor
    g = (cutoff / factor) * np.sinc(cutoff * (n - c) / factor)
    w = 0.42 - 0.5 * np.cos(2 * np.pi * n / (n_taps - 1)) + 0.08 * np.cos(4 * np.pi * n / (n_taps - 1))
    h = g * w
    h = 0.5 * (h + h[::-1])
    return lambda f, dtype=torch.float64, device=None: torch.as_tensor(h / h.sum(), dtype=dtype, device=device)


def test_engine_runs_any_symmetric_fir_from_the_model(render_bin, tmp_path, monkeypatch):
    """The engine takes the resampler's taps from model.json: a FIR without zero taps
    (the older 129-tap design, every polyphase component a full dot product) also gives
    parity and latency (len - 1) / factor; an asymmetric one is refused."""
    import dsp.shapers

    monkeypatch.setattr(dsp.shapers, "oversampling_fir", _blackman_fir(2))
    for topology, knobs in (("drive", drive_knobs()), ("amp", amp_knobs())):
        models = {"b": random_block(topology, knobs, seed=8)}
        model, doc = write_model(tmp_path, models)
        assert len(doc["blocks"][0]["resampler"]["taps"]) == 129
        assert export.engine_latency_samples(doc) == 64
        check_parity(render_bin, model, doc, models, 48000, settings_for(doc, 1, seed=9)[-1:])
    doc["blocks"][0]["resampler"]["taps"][3] *= 1.5
    model.write_text(export.dumps_model(doc), encoding="utf-8")
    r = subprocess.run([str(render_bin), str(model), "--bench", "0", "48000"], capture_output=True, text=True)
    assert r.returncode != 0 and "not symmetric" in r.stderr


def test_drive_parity_without_oversampling(render_bin, tmp_path):
    models = {"01_Drive": random_block("drive", drive_knobs(), seed=5, oversample=1)}
    model, doc = write_model(tmp_path, models)
    assert export.engine_latency_samples(doc) == 0
    check_parity(render_bin, model, doc, models, 48000, settings_for(doc, 2, seed=7)[::2])


def test_chain_parity_and_host_block_sizes(render_bin, tmp_path):
    """drive -> eq_match in series, odd host block sizes, a knob id shared by two blocks."""
    models = {"01_Drive": random_block("drive", drive_knobs(), seed=6),
              "02_EQ": random_block("eq_match", eq_knobs(), seed=7, oversample=1)}
    model, doc = write_model(tmp_path, models, rig_dict())
    settings = settings_for(doc, 2, seed=8)[-3:]
    for block in ("1", "77", "4096"):
        check_parity(render_bin, model, doc, models, 48000, settings[:1] if block != "77" else settings,
                     extra=("--block", block))


def test_eq_match_parity_and_cutoffs_above_nyquist(render_bin, tmp_path):
    """eq_match at 44.1 kHz. lp_hz may reach 23 kHz > 22.05 kHz: the twin's bilinear
    design is unstable there (NaN/inf); the engine clamps at 0.4999 fs and stays finite."""
    knobs = eq_knobs()[:1]
    models = {"02_EQ": random_block("eq_match", knobs, seed=11, oversample=1, base={"lp_hz": 12000.0})}
    model, doc = write_model(tmp_path, models)
    check_parity(render_bin, model, doc, models, 44100, settings_for(doc, 2, seed=9))
    high = {"02_EQ": random_block("eq_match", knobs, seed=11, oversample=1, base={"lp_hz": 22900.0})}
    model, doc = write_model(tmp_path, high)
    assert high["02_EQ"].controls({})["lp_hz"] > 22050
    y, _ = run_engine(render_bin, model, parity_signal(44100), 44100, {})
    assert np.all(np.isfinite(y)) and 1e-6 < np.max(np.abs(y)) < 100


def test_knobs_are_clamped_and_unknown_knobs_rejected(render_bin, tmp_path):
    models = {"01_Drive": random_block("drive", drive_knobs(), seed=3)}
    model, _doc = write_model(tmp_path, models)
    x = parity_signal(48000)[:24000]
    a, _ = run_engine(render_bin, model, x, 48000, {"Drive": 25.0})
    b, _ = run_engine(render_bin, model, x, 48000, {"Drive": 10.0})
    assert np.array_equal(a, b)
    (tmp_path / "in.f32").write_bytes(x.tobytes())
    r = subprocess.run([str(render_bin), str(model), str(tmp_path / "in.f32"), str(tmp_path / "o.f32"),
                        "48000", "Nope=1"], check=False, capture_output=True, text=True)
    assert r.returncode != 0 and "unknown knob" in r.stderr


# ------------------------------------------------------------ real-time behaviour
RT_PROGRAM = r"""
#include "unit_engine.h"
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
static std::atomic<long> g_allocs{0};
static bool g_count = false;
void* operator new(std::size_t n) { if (g_count) ++g_allocs; void* p = std::malloc(n ? n : 1); if (!p) throw std::bad_alloc(); return p; }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
int main(int argc, char** argv) {
    unit::Engine e = unit::Engine::fromFile(argv[1]);
    const double sr = 48000;
    e.prepare(sr, 512);
    std::vector<float> buf(512);
    int knob = e.knobIndex("Drive");
    // 1) allocation count during process() with smoothing and knob moves
    g_count = true;
    double phase = 0;
    float maxStep = 0, prev = 0;
    for (int b = 0; b < 400; ++b) {
        if (b == 100) e.setKnob(knob, 0.0);
        if (b == 200) e.setKnob(knob, 10.0);
        for (auto& v : buf) { v = (float)(0.3 * std::sin(phase)); phase += 2 * 3.14159265358979 * 220 / sr; }
        e.process(buf.data(), 512);
        if (b > 20) for (float v : buf) { maxStep = std::max(maxStep, std::fabs(v - prev)); prev = v; }
        else prev = buf.back();
    }
    g_count = false;
    // 2) silence after sound: the output decays to exact zeros (denormal protection)
    for (int b = 0; b < 1000; ++b) { std::fill(buf.begin(), buf.end(), 0.0f); e.process(buf.data(), 512); }
    int nonzero = 0;
    for (float v : buf) nonzero += v != 0.0f;
    // 3) reset() clears the state
    e.reset();
    std::fill(buf.begin(), buf.end(), 0.0f);
    e.process(buf.data(), 512);
    for (float v : buf) nonzero += v != 0.0f;
    std::printf("allocs %ld nonzero %d maxstep %.6f\n", g_allocs.load(), nonzero, maxStep);
    return 0;
}
"""


def test_realtime_rules(tmp_path):
    """No allocation in process() (operator new counted), exact zeros after silence
    (flush-to-zero + state flushing), reset() clears the state."""
    models = {"01_Drive": random_block("drive", drive_knobs(), seed=3)}
    model, _ = write_model(tmp_path, models)
    src = tmp_path / "rt.cpp"
    src.write_text(RT_PROGRAM)
    exe = tmp_path / "rt"
    subprocess.run(["g++", "-O2", "-std=c++17", "-I", str(CPP), "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe), str(model)], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "allocs" and int(out[1]) == 0
    assert int(out[3]) == 0


FASTMATH_PROGRAM = r"""
#include "unit_engine.h"
#include <cstdio>
int main() {
    double worst = 0;
    for (int i = -4000; i <= 4000; ++i) {
        const double x = std::sinh(i / 200.0) * 1e-3;
        for (double p : {1.0, 1.7, 4.0, 13.0, 24.0}) {
            const double L = x >= 0 ? 1.3 : 1 / 1.3, a = std::fabs(x) / L;
            double ref = a <= 1 ? x / std::pow(1 + std::pow(a, p), 1 / p) : x / (a * std::pow(std::pow(a, -p) + 1, 1 / p));
            double y = unit::dsp::softClip(x, 1.3, 1 / 1.3, p, 1 / p);
            if (ref != 0) worst = std::max(worst, std::fabs(y - ref) / std::fabs(ref));
#if defined(UNIT_ENGINE_VEC2)
            double pair[2] = {x, -x};
            unit::dsp::v2::softClip(pair, 1.3, 1 / 1.3, p, 1 / p);
            if (ref != 0) worst = std::max(worst, std::fabs(pair[0] - ref) / std::fabs(ref));
#endif
        }
    }
    std::printf("%g\n", worst);
}
"""


def test_fast_soft_clip_accuracy(tmp_path):
    """The engine's soft clip (polynomial log2/exp2; scalar and two-lane) against
    std::pow, |x| up to 1e10, knees 0.5 .. 12: relative error < 1e-6 (-120 dB)."""
    src = tmp_path / "fm.cpp"
    src.write_text(FASTMATH_PROGRAM)
    subprocess.run([*CXX, "-I", str(CPP), "-o", str(tmp_path / "fm"), str(src)], check=True)
    worst = float(subprocess.run([str(tmp_path / "fm")], capture_output=True, text=True, check=True).stdout)
    assert worst < 1e-6


def test_smoothing_removes_the_click(render_bin, tmp_path):
    """A volume knob jumped 0 -> 10 on a sine: unsmoothed, the output steps (a click: the
    largest sample-to-sample change is many times the sine's own); smoothed, it glides
    and the largest change stays near the sine's. Both settle on the same output."""
    from dsp.controls import KnobDef

    block = random_block("eq_match", [KnobDef("Vol", affects=("level_db",))], seed=3, oversample=1,
                         base={"lp_hz": 15000.0, "level_db": 0.0})
    block.knob_map["curves"][0]["values"]["level_db"] = [-0.5, -0.25, 0.0, 0.25, 0.5]  # ~ -12..+12 dB
    model, _ = write_model(tmp_path, {"01_EQ": block})
    sr = 48000
    t = np.arange(sr) / sr
    x = (0.1 * np.sin(2 * np.pi * 110 * t)).astype(np.float32)
    y0, _ = run_engine(render_bin, model, x, sr, {"Vol": 0.0})
    half = sr // 2
    jump = half + int(np.argmax(np.abs(y0[half: half + 440])))  # at a peak of the output

    def run(extra):
        y, _ = run_engine(render_bin, model, x, sr, {"Vol": 0.0}, ("--at", str(jump), "Vol=10.0", *extra))
        d2 = np.abs(np.diff(y, 2))  # a sine's second difference is tiny; a step's is the step
        return d2[jump - 40: jump + 40].max(), d2[sr - 4000:].max(), y

    hard, steady, y_hard = run(())
    soft, steady_soft, y_soft = run(("--smooth",))
    assert hard > 20 * steady
    assert soft < 2 * steady_soft
    assert np.allclose(y_hard[-2000:], y_soft[-2000:], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ the export folder
def test_export_folder_and_golden_self_check(tmp_path):
    """pedal -> amp -> EQ: the export folder's own golden test passes, from model.json
    and from the embedded header."""
    models = {"01_Drive": random_block("drive", drive_knobs(), seed=1),
              "02_Amp": random_block("amp", amp_knobs(), seed=19),
              "02_EQ": random_block("eq_match", eq_knobs(), seed=2, oversample=1)}
    paths = export.export_project_models(models, rig_dict(), tmp_path / "out")
    for p in paths.values():
        assert p.is_file(), p
    cpp = tmp_path / "out" / "cpp"
    exe = cpp / "golden_test"
    subprocess.run([*CXX, "-DUNIT_EMBEDDED_MODEL", "-I", str(cpp), "-o", str(exe), str(cpp / "golden_test.cpp")],
                   check=True)
    r = subprocess.run([str(exe), "--embedded", str(paths["golden"])], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all cases pass" in r.stdout
    # the same check from model.json on disk
    r = subprocess.run([str(exe), str(paths["model"]), str(paths["golden"])], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    if shutil.which("clang++"):  # Xcode's compiler family
        exe_clang = cpp / "golden_test_clang"
        subprocess.run(["clang++", "-O2", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-DUNIT_EMBEDDED_MODEL",
                        "-I", str(cpp), "-o", str(exe_clang), str(cpp / "golden_test.cpp")], check=True)
        r = subprocess.run([str(exe_clang), "--embedded", str(paths["golden"])], check=False,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    g = json.loads(paths["golden"].read_text())
    assert g["format"] == "unit-golden" and [st["sample_rate"] for st in g["sets"]] == [48000, 44100]
    assert len(g["sets"][0]["cases"]) >= 5 and len(g["sets"][1]["cases"]) >= 2
    assert r.stdout.count(" ok") == sum(len(st["cases"]) for st in g["sets"])
    # exporting twice gives the same files
    again = export.export_project_models(export.blocks_from_model(export.read_model(paths["model"])),
                                         rig_dict(), tmp_path / "again")
    for role in ("model", "embedded", "golden"):
        assert again[role].read_bytes() == paths[role].read_bytes(), role


@pytest.mark.slow
def test_fitted_drive_parity(render_bin, tmp_path):
    """A tiny real fit (synthetic target), exported: the engine follows the twin."""
    from dsp.fit import FitConfig
    from dsp.twin import KnobSpec, TrainItem, fit_block

    sr = 48000
    x = parity_signal(sr)
    knobs = [KnobSpec("Drive", affects=("pre_gain_db",)), KnobSpec("Tone", affects=("tone_lp_hz",))]
    items = []
    for d in (0.0, 5.0, 10.0):
        y = np.tanh((1 + d) * 3 * x) * 0.5
        items.append(TrainItem(f"Drive_{d}", {"Drive": d}, x, y.astype(np.float32), sr, latency_samples=0.0))
    import dataclasses

    small = {"search_candidates": 4, "refine_starts": 1, "refine_steps": 3, "per_capture_steps": 5,
             "curve_steps": 5, "joint_steps": 5, "eval_every": 5}
    names = {f.name for f in dataclasses.fields(FitConfig)}
    cfg = FitConfig(**{k: v for k, v in small.items() if k in names})  # the fitter is evolving
    block = fit_block("drive", knobs, items, seed=0, config=cfg)
    models = {"01_Drive": block}
    model, doc = write_model(tmp_path, models)
    check_parity(render_bin, model, doc, models, sr, settings_for(doc, 2, seed=1))


def _juce_available() -> bool:
    import glob

    return bool(glob.glob("/usr/lib/*/cmake/JUCE-*/JUCEConfig.cmake") or glob.glob("/usr/lib/cmake/JUCE-*"))


@pytest.mark.slow
def test_juce_project_builds(juce_build):
    """The exported JUCE project (a drive and an amp block) configures against Debian's
    JUCE and the Standalone and VST3 targets compile and link. The build is the
    session's ``juce_build`` fixture (tests/conftest.py), shared with the capture
    --plugin tests: about 4 minutes on 2 cores, once."""
    assert juce_build.standalone.is_file()
    assert juce_build.vst3_binaries and all(p.stat().st_size > 0 for p in juce_build.vst3_binaries)


@pytest.mark.slow
def test_export_works_from_an_installed_wheel(tmp_path):
    """`export/` is package data (the unit_export package): from a wheel, outside this
    repository, the exporter finds the engine and the JUCE templates and writes them."""
    import zipfile

    repo = Path(__file__).resolve().parent.parent
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    str(repo), "-w", str(wheels)], check=True, capture_output=True, text=True, timeout=600)
    site = tmp_path / "site"
    with zipfile.ZipFile(next(wheels.glob("*.whl"))) as z:
        z.extractall(site)
    code = (
        "import sys, pathlib\n"
        "from dsp import export\n"
        "from dsp.controls import KnobDef\n"
        f"assert str(export.CPP_DIR).startswith({str(site)!r}), export.CPP_DIR\n"
        "m = {'01_Drive': export.synthetic_block('drive', [KnobDef('Drive')], seed=1)}\n"
        "rig = {'format': 1, 'project': 'W', 'sample_rate': 48000, 'blocks': [{'id': '01_Drive', 'topology': 'drive', 'knobs': [{'name': 'Drive', 'role': 'sweep'}]}]}\n"
        "p = export.export_project_models(m, rig, pathlib.Path(sys.argv[1]), golden=False)\n"
        "print(sorted(str(v.relative_to(sys.argv[1])) for v in p.values()))\n")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(site))
    r = subprocess.run([sys.executable, "-c", code, str(out)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for rel in ("model.json", "cpp/unit_engine.h", "juce/CMakeLists.txt", "juce/Source/PluginEditor.cpp"):
        assert (out / rel).is_file(), rel
    assert (out / "cpp" / "unit_engine.h").read_bytes() == (repo / "export" / "cpp" / "unit_engine.h").read_bytes()

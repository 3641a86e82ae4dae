"""The fidelity benchmark's rigs and its LV2 renderer (benchmarks/; the benchmark itself is not a test).

Fast: the rigs parse and plan, the knob -> port mapping is linear from the port's
minimum to its maximum, the mapped port symbols and ranges are the plugins' own
(``lv2info``), and one second of signal renders through the DS1 unclipped.
Tests that need ``lv2file`` / ``lv2info`` and the Guitarix plugins skip without them.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import lv2_render  # noqa: E402

from unit_tui.plan import build_plan  # noqa: E402
from unit_tui.rig import load_rig  # noqa: E402

KEYS = lv2_render.PLUGIN_KEYS
TOPOLOGY = {"ds1": "drive", "studiopre": "amp", "metalhead": "amp"}


def _has_plugin(uri: str) -> bool:
    if shutil.which("lv2info") is None or shutil.which("lv2file") is None:
        return False
    return subprocess.run(["lv2info", uri], capture_output=True).returncode == 0


@pytest.mark.parametrize("key", KEYS)
def test_rig_parses_and_plans(key):
    rig = load_rig(lv2_render.rig_path(key))
    assert len(rig.blocks) == 1
    block = rig.blocks[0]
    assert block.topology == TOPOLOGY[key]
    assert 20 <= block.chaos_count <= 30
    plan = build_plan(rig, {})
    caps = [c for c in plan.captures if c.block_id == block.id]
    assert 20 < len(caps) <= 60  # a moderate number of captures
    assert sum(c.kind == "chaos" for c in caps) == block.chaos_count
    assert len({c.filename for c in caps}) == len(caps)
    # every rig knob has exactly one port, and every mapped knob is a rig knob
    spec = lv2_render.load_spec(key)
    assert sorted(k.name for k in block.knobs) == sorted(pm.knob for pm in spec.knobs)
    # every setting of the plan maps onto the ports (fixed ports included)
    for c in caps:
        ports = lv2_render.port_values(spec, c.setting)
        assert set(ports) == set(spec.symbols)


@pytest.mark.parametrize("key", KEYS)
def test_knob_range_maps_to_port_range(key):
    spec = lv2_render.load_spec(key)
    block = load_rig(lv2_render.rig_path(key)).blocks[0]
    for pm in spec.knobs:
        knob = block.knob(pm.knob)
        assert (pm.knob_min, pm.knob_max) == (knob.minimum, knob.maximum)
        assert lv2_render.port_value(pm, knob.minimum) == pytest.approx(pm.port_min)
        assert lv2_render.port_value(pm, knob.maximum) == pytest.approx(pm.port_max)
        mid = (knob.minimum + knob.maximum) / 2
        assert lv2_render.port_value(pm, mid) == pytest.approx((pm.port_min + pm.port_max) / 2)


def test_mapping_examples():
    ds1 = lv2_render.load_spec("ds1")
    assert lv2_render.port_value(ds1.knob("Level"), 0.0) == pytest.approx(-20.0)
    assert lv2_render.port_value(ds1.knob("Level"), 10.0) == pytest.approx(12.0)
    assert lv2_render.port_value(ds1.knob("Drive"), 2.5) == pytest.approx(0.25)
    ports = lv2_render.port_values(ds1, {"Drive": 0.0, "Tone": 10.0, "Level": 5.0})
    assert ports == pytest.approx({"DRIVE": 0.0, "TONE": 1.0, "LEVEL": -4.0, "BYPASS": 1.0})
    metal = lv2_render.load_spec("metalhead")
    assert lv2_render.port_value(metal.knob("Pregain"), 0.0) == pytest.approx(-20.0)
    assert lv2_render.port_value(metal.knob("Pregain"), 10.0) == pytest.approx(20.0)
    pre = lv2_render.load_spec("studiopre")
    assert lv2_render.port_value(pre.knob("Bright"), 1.0) == pytest.approx(1.0)  # a 0/1 switch
    with pytest.raises(KeyError):
        lv2_render.port_values(ds1, {"Drive": 1.0})


def _lv2info_ports(uri: str) -> dict[str, dict[str, float]]:
    text = subprocess.run(["lv2info", uri], capture_output=True, text=True, check=True).stdout
    ports = {}
    for chunk in re.split(r"\n\s*Port \d+:\n", text)[1:]:
        sym = re.search(r"Symbol:\s+(\S+)", chunk)
        if not sym:
            continue
        info = {}
        for field in ("Minimum", "Maximum"):
            m = re.search(rf"{field}:\s+(-?[\d.]+)", chunk)
            if m:
                info[field] = float(m.group(1))
        ports[sym.group(1)] = info
    return ports


@pytest.mark.parametrize("key", KEYS)
def test_port_symbols_and_ranges_match_lv2info(key):
    spec = lv2_render.load_spec(key)
    if not _has_plugin(spec.uri):
        pytest.skip(f"{spec.uri} (guitarix-lv2) or lv2info/lv2file not installed")
    ports = _lv2info_ports(spec.uri)
    for pm in spec.knobs:
        assert pm.symbol in ports, f"{key}: no port {pm.symbol!r}; the plugin has {sorted(ports)}"
        assert ports[pm.symbol].get("Minimum") == pytest.approx(pm.port_min)
        assert ports[pm.symbol].get("Maximum") == pytest.approx(pm.port_max)
    for sym, value in spec.fixed_ports.items():
        assert sym in ports
        assert ports[sym]["Minimum"] <= value <= ports[sym]["Maximum"]


def test_ds1_renders_one_second(tmp_path):
    spec = lv2_render.load_spec("ds1")
    if not _has_plugin(spec.uri):
        pytest.skip("GxBoss DS1 (guitarix-lv2) or lv2file not installed")
    sr = 48000
    t = np.arange(sr) / sr
    x = (0.7 * np.sin(2 * np.pi * 110 * t) * (t > 0.25)).astype(np.float32)  # quiet start: the plugin fades in
    inp, out = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(inp, x, sr, subtype="PCM_24")
    setting = {"Drive": 10.0, "Tone": 5.0, "Level": 5.0}
    assert lv2_render.main(["ds1", str(inp), str(out), json.dumps(setting)]) == 0
    y, sr_out = sf.read(out, always_2d=True)
    info = sf.info(out)
    assert sr_out == sr and y.shape == (sr, 1)
    assert info.subtype in ("FLOAT", "PCM_24")
    y = y[:, 0]
    peak = np.max(np.abs(y))
    assert 10 ** (-40 / 20) < peak < 0.999  # not silent, not clipped
    assert np.sqrt(np.mean(y[sr // 2:] ** 2)) > 1e-3
    assert not np.allclose(y, x, atol=1e-3)  # processed, not bypassed
    # full drive distorts: a 110 Hz sine gains strong harmonics
    spec_y = np.abs(np.fft.rfft(y[sr // 2:] * np.hanning(sr // 2)))
    f = np.fft.rfftfreq(sr // 2, 1 / sr)
    fund = spec_y[np.argmin(np.abs(f - 110))]
    third = spec_y[np.argmin(np.abs(f - 330))]
    assert third > 0.05 * fund


def test_bad_arguments_exit_nonzero(tmp_path, capsys):
    assert lv2_render.main(["ds1"]) == 2
    assert lv2_render.main(["ds1", "in.wav", "out.wav", "{not json"]) == 2


def test_random_settings_are_never_captured():
    import fidelity

    rig = load_rig(lv2_render.rig_path("studiopre"))
    block = rig.blocks[0]
    captured = [c.setting for c in build_plan(rig, {}).captures]
    settings = fidelity.random_settings(block, 12, 0, "studiopre", captured)
    assert len(settings) == 12
    assert settings == fidelity.random_settings(block, 12, 0, "studiopre", captured)  # seeded
    for s in settings:
        assert s not in captured
        for k in block.knobs:
            if k.modelled:
                lo, hi = k.chaos_limits
                assert lo <= s[k.name] <= hi
            else:
                assert s[k.name] == k.fixed
    assert fidelity.knob_distance(block, settings[0], settings[0]) == 0.0
    assert fidelity.verdict(0.005) == "great" and fidelity.verdict(0.02) == "not bad"
    assert fidelity.verdict(0.05) == "may sound OK" and fidelity.verdict(0.5) == "poor"


def test_fidelity_scores_the_guitar_segments_on_their_own():
    """The benchmark's second figure: one ESR over the test signal's guitar segments
    (the phrases and the repeated phrase), what a player hears. An error in the loud
    sweep counts in the whole signal's ESR and not there; an error in a guitar phrase
    counts there as its energy over the guitar segments' energy."""
    import fidelity
    from dsp.testsignal import _layout_unit

    sr = 8000
    layout = _layout_unit(sr, 32.0)
    spans = fidelity.guitar_spans(layout, sr, 32 * sr)
    assert spans == [(round(g.start_s * sr), round(g.end_s * sr)) for g in layout.segments
                     if g.kind in ("guitar", "repeat")]
    assert len(spans) >= 3 and {g.kind for g in layout.segments} >= {"guitar", "repeat", "sweep", "noise"}
    rng = np.random.default_rng(0)
    y = rng.standard_normal(32 * sr)
    sweep = next(g for g in layout.segments if g.name == "sweep_-6")
    a, b = int(sweep.start_s * sr), int(sweep.end_s * sr)
    off = y.copy()
    off[a:b] += 1.0
    assert fidelity.esr(y, off, 0, y.size) > 0.05 and fidelity.esr_spans(y, off, spans) == 0.0
    g0, g1 = spans[0]
    off = y.copy()
    off[g0:g1] *= 0.5
    expected = 0.25 * np.sum(y[g0:g1] ** 2) / sum(np.sum(y[p:q] ** 2) for p, q in spans)
    assert fidelity.esr_spans(y, off, spans) == pytest.approx(expected)
    mid = (g0 + g1) // 2
    assert fidelity.guitar_spans(layout, sr, mid) == [(g0, mid)]  # cut where the render stops
    assert fidelity.esr_spans(y, off, []) is None


def test_fidelity_fit_options_parse_and_default_to_the_fitters():
    """``--output-fir-every`` and ``--no-output-fir`` parse, and the benchmark's default
    for the first is the fitter's (written out in fidelity.py so that the parent does
    not import torch)."""
    import fidelity

    from dsp.fit import FitConfig

    assert fidelity.FIR_EVERY == FitConfig().output_fir_every
    args = fidelity.build_parser().parse_args(["--output-fir-every", "0", "--no-output-fir"])
    assert args.output_fir_every == 0 and args.no_output_fir
    assert fidelity.build_parser().parse_args([]).output_fir_every == FitConfig().output_fir_every


def test_fidelity_fit_fields_parse_with_their_types_and_unknown_ones_are_refused():
    """``--fit FIELD=VALUE`` sets FitConfig fields for a development run: an int field
    stays an int, a float a float, and a field the fitter does not have is refused with
    a message naming the option."""
    import fidelity

    from dsp.fit import FitConfig

    got = fidelity.parse_fit(["per_capture_frac=0.35", "joint_steps=300"])
    assert got == {"per_capture_frac": 0.35, "joint_steps": 300}
    assert isinstance(got["joint_steps"], int)
    assert FitConfig(**got).per_capture_frac == 0.35
    assert fidelity.build_parser().parse_args(["--fit", "joint_steps=3"]).fit == ["joint_steps=3"]
    for bad in (["no_such_field=1"], ["joint_steps"], ["joint_steps=many"]):
        with pytest.raises(SystemExit, match="--fit"):
            fidelity.parse_fit(bad)

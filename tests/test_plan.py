"""The UNIT 1 plan (golden), rig validation and chaos maps."""
from __future__ import annotations

import csv
import io
import re

import pytest

from unit_tui import plan as planmod
from unit_tui.plan import PlanError, build_plan, chaos_csv_text, parse_chaos_map
from unit_tui.rig import RigError, format_value, load_template, parse_rig, template_text

RIG_FOLDER = "UNIT - 1 - #1 Pedal (Horizon) - #1 Amp (Invective)"
PEDAL_KNOBS = ["Drive", "Attack", "Bright", "Gate", "Gate Range", "Level"]
AMP_KNOBS = ["Pre_Gain", "Bass", "Mid", "Treble", "Post_Gain", "Master", "Presence", "Depth",
             "Sag", "Bias", "Bias_X", "Ch_Vol", "Hum", "Ripple"]


@pytest.fixture(scope="module")
def unit1():
    rig = load_template("unit1")
    return rig, build_plan(rig, {})


def test_unit1_rig_matches_spec(unit1):
    rig, _ = unit1
    assert rig.project == "UNIT 1 - Trainer"
    assert rig.rig_folder == RIG_FOLDER
    pedal, amp = rig.blocks
    assert (pedal.id, pedal.topology) == ("01_Horizon_Pedal", "drive")
    assert (amp.id, amp.topology) == ("02_Invective_Amp", "amp")
    assert [k.name for k in pedal.knobs] == PEDAL_KNOBS
    assert [k.name for k in amp.knobs] == AMP_KNOBS
    roles = {k.name: k.role for k in pedal.knobs + amp.knobs}
    assert {n for n, r in roles.items() if r == "fixed"} == {"Gate", "Gate Range", "Level", "Ch_Vol", "Hum", "Ripple"}
    assert {n for n, r in roles.items() if r == "chaos"} == {"Sag", "Bias", "Bias_X"}
    attack = pedal.knob("Attack")
    assert attack.kind == "switch" and attack.positions == (1, 2, 3, 4, 5, 6)
    assert amp.knob("Master").chaos_limits == (2.0, 8.0)
    assert amp.knob("Sag").chaos_limits == (0.0, 8.0)
    assert amp.knob("Post_Gain").chaos_limits == (1.0, 9.0)
    assert amp.knob("Bass").chaos_limits == (0.0, 10.0)
    assert amp.chaos_count == 50


def test_unit1_plan_names_and_counts(unit1):
    rig, plan = unit1
    pedal = plan.for_block("01_Horizon_Pedal")
    amp = plan.for_block("02_Invective_Amp")
    assert len(pedal) == 16 and all(c.kind == "sweep" for c in pedal)  # 5 Drive + 6 Attack + 5 Bright
    assert sum(c.kind == "sweep" for c in amp) == 40  # 8 knobs x 5
    assert sum(c.kind == "chaos" for c in amp) == 50
    assert len(plan.captures) == 106
    names = [c.filename for c in pedal]
    assert names[:5] == [f"01_Horizon_Pedal_Drive_{v}.wav" for v in ("0p0", "2p5", "5p0", "7p5", "10p0")]
    assert names[5:11] == [f"01_Horizon_Pedal_Attack_{i}.wav" for i in range(1, 7)]
    assert names[11] == "01_Horizon_Pedal_Bright_0p0.wav"
    assert amp[0].filename == "02_Invective_Amp_Pre_Gain_0p0.wav"
    assert {c.folder for c in pedal} == {f"{RIG_FOLDER}/01_Horizon_Pedal/01_Single_Sweeps"}
    chaos = [c for c in amp if c.kind == "chaos"]
    assert [c.filename for c in chaos] == [f"Chaos_Full_{i:02d}.wav" for i in range(1, 51)]
    assert {c.folder for c in chaos} == {f"{RIG_FOLDER}/02_Invective_Amp/02_Chaos_Mode"}
    # no Sag/Bias/Bias_X sweeps: chaos only
    assert not any(c.knob in ("Sag", "Bias", "Bias_X") for c in amp)


def test_every_capture_lists_the_full_setting(unit1):
    rig, plan = unit1
    for c in plan.captures:
        block = rig.block(c.block_id)
        assert list(c.setting) == [k.name for k in block.knobs]
    drive_0 = plan.captures[0]
    assert drive_0.setting == {"Drive": 0.0, "Attack": 3.0, "Bright": 5.0, "Gate": 0.0, "Gate Range": 0.0, "Level": 5.0}
    sweeps = [c for c in plan.captures if c.kind == "sweep" and c.block_id == "02_Invective_Amp"]
    for c in sweeps:  # chaos-only knobs held at reference, fixed ones at their value
        assert c.setting["Sag"] == 5.0 and c.setting["Hum"] == 0.0 and c.setting["Ch_Vol"] == 5.0


def test_chaos_presets_respect_limits_and_rounding(unit1):
    rig, plan = unit1
    amp = rig.block("02_Invective_Amp")
    chaos = [c for c in plan.captures if c.kind == "chaos"]
    for c in chaos:
        for knob in amp.knobs:
            v = c.setting[knob.name]
            if knob.role == "fixed":
                assert v == knob.fixed
            else:
                lo, hi = knob.chaos_limits
                assert lo <= v <= hi, (c.filename, knob.name, v)
                assert round(v, 1) == v
    masters = [c.setting["Master"] for c in chaos]
    assert min(masters) >= 2.0 and max(masters) <= 8.0 and len(set(masters)) > 20  # really random


def test_chaos_csv_header_and_determinism(unit1):
    rig, plan = unit1
    amp = rig.block("02_Invective_Amp")
    rows = planmod.new_chaos_rows(amp, 1, 50)
    text = chaos_csv_text(amp, rows)
    header = next(csv.reader(io.StringIO(text)))
    assert header == ["Filename", *AMP_KNOBS]
    # Drawing 50 then 10 more gives exactly the first 60 of drawing 60 at once.
    assert planmod.new_chaos_rows(amp, 1, 60)[:50] == rows
    assert planmod.new_chaos_rows(amp, 51, 10) == planmod.new_chaos_rows(amp, 1, 60)[50:]
    parsed = parse_chaos_map(text, amp)
    assert parsed.rows == rows and parsed.next_index == 51


def test_format_value():
    assert [format_value(v) for v in (0, 2.5, 5, 7.5, 10)] == ["0p0", "2p5", "5p0", "7p5", "10p0"]
    assert format_value(3.25) == "3p25" and format_value(-3) == "m3p0"
    assert format_value(4, "switch") == "4"


# ---------------------------------------------------------------------------- rig errors


def test_rig_error_names_line_and_fix():
    text = template_text("unit1").replace('name = "Bright"\n  role = "sweep"', 'name = "Bright"\n  role = "swep"')
    with pytest.raises(RigError) as err:
        parse_rig(text, source="rig.toml")
    msg = str(err.value)
    line = text.splitlines().index('  name = "Bright"') + 1
    assert f"rig.toml line {line}" in msg and "role must be one of sweep, chaos, fixed" in msg and "'swep'" in msg


AMP_RIG = """
format = 1
project = "Amp"
rig_folder = "Amp Rig"
[[blocks]]
id = "02_Amp"
topology = "amp"
structure = { drive_section = 1, band_split = 0 }
  [[blocks.knobs]]
  name = "Gain"
"""


def test_rig_structure_parses_round_trips_and_is_optional():
    """A block's ``structure`` (what the user knows of the circuit) reaches the Block as
    numbers, survives the setup screen's to_toml, and is absent unless written."""
    rig = parse_rig(AMP_RIG)
    assert rig.blocks[0].structure == (("drive_section", 1.0), ("band_split", 0.0))
    assert parse_rig(rig.to_toml()) == rig
    plain = parse_rig(AMP_RIG.replace("structure = { drive_section = 1, band_split = 0 }\n", ""))
    assert plain.blocks[0].structure == () and "structure" not in plain.to_toml()


@pytest.mark.parametrize("topology,bad,words", [
    ("amp", "structure = { drive = 1 }", "'drive' is not a structural option of the amp topology (its "
                                         "options: tonestack_position, drive_section, band_split, blend_tone, "
                                         "shaper_tables, band_chain, each 0 or 1)"),
    ("amp", "structure = { drive_section = 2 }", "drive_section = 2: write 0 or 1 (1: a four-band clipper"),
    ("amp", "structure = { drive_section = true }", "drive_section = True: write 0 or 1"),
    ("amp", "structure = \"drive_section\"", "structure must be a table of 0/1 values"),
    ("drive", "structure = { band_split = 1 }", "'band_split' is not a structural option of the drive "
                                                "topology (it has none)"),
])
def test_rig_structure_errors_name_the_line_and_the_options(topology, bad, words):
    text = (AMP_RIG.replace("structure = { drive_section = 1, band_split = 0 }", bad)
            .replace('topology = "amp"', f'topology = "{topology}"'))
    with pytest.raises(RigError) as err:
        parse_rig(text, source="rig.toml")
    msg = str(err.value)
    line = text.splitlines().index(bad) + 1
    assert msg.startswith(f"rig.toml line {line}: block 02_Amp: structure"), msg
    assert words in msg, msg


def test_rig_bad_toml_gives_line():
    with pytest.raises(RigError, match=r"not valid TOML.*line 3"):
        parse_rig('format = 1\nproject = "x"\nrig_folder = = 2\n')


@pytest.mark.parametrize("folder", ["../escape", "/abs/path", "a/b", ".."])
def test_rig_refuses_paths_as_folder_names(folder):
    text = template_text("unit1").replace(f'rig_folder = "{RIG_FOLDER}"', f'rig_folder = "{folder}"')
    with pytest.raises(RigError, match="not a plain folder name"):
        parse_rig(text)


def test_custom_rig_with_any_knob_names():
    text = """
format = 1
project = "My Rig"
rig_folder = "Fuzz and Twin"
[[blocks]]
id = "01_Fuzz"
topology = "drive"
chaos_count = 3
  [[blocks.knobs]]
  name = "Sustain Amount"
  sweep = [0, 5, 10]
  [[blocks.knobs]]
  name = "Tone"
  minimum = -12
  maximum = 12
  reference = 0
  [[blocks.knobs]]
  name = "Volume"
  role = "fixed"
  fixed = 7
"""
    rig = parse_rig(text)
    plan = build_plan(rig, {})
    names = [c.filename for c in plan.captures]
    assert names[:3] == ["01_Fuzz_Sustain_Amount_0p0.wav", "01_Fuzz_Sustain_Amount_5p0.wav", "01_Fuzz_Sustain_Amount_10p0.wav"]
    assert names[3:8] == ["01_Fuzz_Tone_m12p0.wav", "01_Fuzz_Tone_m6p0.wav", "01_Fuzz_Tone_0p0.wav", "01_Fuzz_Tone_6p0.wav", "01_Fuzz_Tone_12p0.wav"]
    assert names[8:] == ["Chaos_Full_01.wav", "Chaos_Full_02.wav", "Chaos_Full_03.wav"]
    assert all(c.setting["Volume"] == 7 for c in plan.captures)
    assert all(-12 <= c.setting["Tone"] <= 12 for c in plan.captures)


# ---------------------------------------------------------------------------- chaos map errors


@pytest.mark.parametrize("name", ["../../etc/passwd.wav", "/tmp/Chaos_Full_01.wav", "sub/Chaos_Full_01.wav",
                                  "..\\Chaos_Full_01.wav", "C:\\x\\Chaos_Full_01.wav"])
def test_chaos_map_refuses_paths_outside_project(unit1, name):
    rig, _ = unit1
    amp = rig.block("02_Invective_Amp")
    text = chaos_csv_text(amp, planmod.new_chaos_rows(amp, 1, 2))
    bad = text.replace("Chaos_Full_02.wav", name)
    with pytest.raises(PlanError, match=r"line 3: file name .* points outside|line 3: file name .*not of the form"):
        parse_chaos_map(bad, amp, source="chaos_map.csv")


def test_chaos_map_hand_edit_errors_have_lines(unit1):
    rig, _ = unit1
    amp = rig.block("02_Invective_Amp")
    text = chaos_csv_text(amp, planmod.new_chaos_rows(amp, 1, 3))
    lines = text.splitlines()
    lines[2] = re.sub(r"^(Chaos_Full_02\.wav,)[^,]+", r"\1loud", lines[2])
    with pytest.raises(PlanError, match=r"chaos_map.csv line 3: Pre_Gain = 'loud' is not a number"):
        parse_chaos_map("\n".join(lines), amp, source="chaos_map.csv")
    lines = text.splitlines()
    lines[3] = lines[3].replace("Chaos_Full_03.wav,", "Chaos_Full_03.wav,11,", 1)
    with pytest.raises(PlanError, match=r"line 4: 16 fields, the header has 15"):
        parse_chaos_map("\n".join(lines), amp, source="chaos_map.csv")
    with pytest.raises(PlanError, match="first column must be 'Filename'"):
        parse_chaos_map("Name,Bass\nChaos_Full_01.wav,3\n", amp)

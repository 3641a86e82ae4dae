"""capture --plugin: rig mapping fields, the knob -> plugin value mapping, the host's
errors, the whole run with a stand-in plugin (fast), and end to end with the VST3 built
from an exported JUCE project, hosted by pedalboard (slow).

The fast tests use a stand-in for pedalboard's plugin object (the same attribute
interface: ``parameters``, parameters as attributes, ``process``), so they need no
compiler; the pedalboard-specific ones skip when pedalboard is not installed.
"""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from unit_tui import cli, plugin_host
from unit_tui.capture import capture_missing_with_plugin, missing_captures
from unit_tui.checks import Status
from unit_tui.plugin_host import Assignment, HostedPlugin, PluginError, block_assignments, plugin_value
from unit_tui.project import Project
from unit_tui.rig import RigError, parse_rig

ROOT = Path(__file__).resolve().parent.parent

RIG = """\
format = 1
project = "Plug"
rig_folder = "Rig"
sample_rate = 48000

[[blocks]]
id = "01_Drive"
topology = "drive"
chaos_count = 2
chaos_seed = 7
plugin = "fake.vst3"
plugin_tail = 0.5
plugin_params = { "Gate" = false, "Amp Type" = "Plexi", "Mix" = 100.0 }

  [[blocks.knobs]]
  name = "Drive"
  plugin_param = "Drive"

  [[blocks.knobs]]
  name = "Tone"
  role = "chaos"
  minimum = 0.0
  maximum = 1.0
  plugin_param = "tone_hz"
  plugin_range = [200, 5000]

  [[blocks.knobs]]
  name = "Mode"
  positions = [1, 2, 3]
  plugin_param = "Mode"
  plugin_values = ["Low", "Mid", "High"]

  [[blocks.knobs]]
  name = "Level"
  role = "fixed"
  fixed = 4.0
  plugin_param = "Level"
  plugin_range = [-20, 20]

  [[blocks.knobs]]
  name = "Out"
  role = "fixed"
  fixed = 6.0
"""


def line_of(text: str, needle: str, nth: int = 1) -> int:
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[nth - 1]


# ------------------------------------------------------------------------------ the rig
def test_rig_plugin_fields_parse_and_round_trip():
    rig = parse_rig(RIG)
    b = rig.blocks[0]
    assert b.plugin == "fake.vst3" and b.plugin_tail == 0.5 and b.plugin_name is None
    assert b.plugin_params == (("Gate", False), ("Amp Type", "Plexi"), ("Mix", 100.0))
    k = {k.name: k for k in b.knobs}
    assert k["Drive"].plugin_param == "Drive" and k["Drive"].plugin_range is None
    assert k["Tone"].plugin_range == (200.0, 5000.0)
    assert k["Mode"].plugin_values == ("Low", "Mid", "High")
    assert k["Out"].plugin_param is None
    again = parse_rig(rig.to_toml())  # the setup screen / `new` write rig files with to_toml
    assert again == rig
    # a rig without the fields is unchanged (defaults, nothing written)
    plain = parse_rig(RIG.split("plugin =")[0] + "\n  [[blocks.knobs]]\n  name = \"Drive\"\n")
    assert plain.blocks[0].plugin is None and plain.blocks[0].plugin_tail == 1.0
    assert "plugin" not in plain.to_toml()


BAD = [
    # (replace this, with this, the line the error names (its needle), words in the message)
    ('plugin_range = [200, 5000]', 'plugin_range = [200]', "plugin_range = [200]", "[value at minimum, value at maximum]"),
    ('plugin_range = [200, 5000]', 'plugin_range = [7, 7]', "plugin_range = [7, 7]", "one value"),
    ('plugin_range = [200, 5000]', 'plugin_range = ["a", 5]', "plugin_range =", "must be a number"),
    ('plugin_values = ["Low", "Mid", "High"]', 'plugin_values = ["Low", "Mid"]', "plugin_values =",
     "one plugin value per switch position"),
    ('plugin_values = ["Low", "Mid", "High"]', 'plugin_values = ["Low", "", "High"]', "plugin_values =",
     "empty text"),
    ('  plugin_param = "tone_hz"\n', '', "plugin_range = [200, 5000]", "needs plugin_param"),
    ('plugin_param = "tone_hz"', 'plugin_param = 3', "plugin_param = 3", "parameter's name as text"),
    ('plugin_param = "tone_hz"', 'plugin_param = "Drive"', ('plugin_param = "Drive"', 2),  # Tone's line
     "already turned by knob 'Drive'"),
    ('plugin_range = [200, 5000]', 'plugin_values = [1, 2]', "plugin_values =", "plugin_values is for switches"),
    ('"Mix" = 100.0', '"Mix" = [1, 2]', "plugin_params =", "not a plugin value"),
    ('"Mix" = 100.0', '"Drive" = 3.0', "plugin_params =", "which knob 'Drive' turns"),
    ('plugin_tail = 0.5', 'plugin_tail = 4', "plugin_tail = 4", "0-3 seconds"),
    ('plugin = "fake.vst3"', 'plugin = ""', 'plugin = ""', "path of a .vst3"),
    ('plugin = "fake.vst3"', 'plugin_name = 5', "plugin_name = 5", "plugin_name must be text"),
    ('plugin = "fake.vst3"', 'plugin_paramz = 5', None, "unknown field(s) plugin_paramz"),
]


@pytest.mark.parametrize("old,new,needle,words", BAD, ids=[b[3][:28] for b in BAD])
def test_rig_plugin_field_errors_name_their_line(old, new, needle, words):
    text = RIG.replace(old, new)
    assert text != RIG
    with pytest.raises(RigError) as err:
        parse_rig(text, source="rig.toml")
    msg = str(err.value)
    assert words in msg, msg
    if needle is not None:
        needle, nth = needle if isinstance(needle, tuple) else (needle, 1)
        assert msg.startswith(f"rig.toml line {line_of(text, needle, nth)}:"), msg


def test_plugin_params_as_a_subtable_names_its_header_line():
    text = RIG.replace('plugin_params = { "Gate" = false, "Amp Type" = "Plexi", "Mix" = 100.0 }\n', "")
    text += '\n[blocks.plugin_params]\n"Drive" = 1.0\n'
    with pytest.raises(RigError, match="which knob 'Drive' turns") as err:
        parse_rig(text, source="rig.toml")
    assert str(err.value).startswith(f"rig.toml line {line_of(text, '[blocks.plugin_params]')}:")


# ---------------------------------------------------------------------- value mapping
def test_knob_to_plugin_value_mapping():
    b = parse_rig(RIG).blocks[0]
    k = {k.name: k for k in b.knobs}
    assert plugin_value(k["Drive"], 2.5) == 2.5  # no plugin_range: the knob's own numbers
    assert plugin_value(k["Tone"], 0.0) == 200.0 and plugin_value(k["Tone"], 1.0) == 5000.0
    assert plugin_value(k["Tone"], 0.25) == 1400.0  # linear
    assert plugin_value(k["Mode"], 1) == "Low" and plugin_value(k["Mode"], 3.0) == "High"
    assert plugin_value(k["Level"], 5.0) == 0.0 and plugin_value(k["Level"], 7.5) == 10.0
    with pytest.raises(PluginError, match="not one of its positions"):
        plugin_value(k["Mode"], 4)
    # a reversed range (the plugin counts down) and a switch mapped linearly
    rev = parse_rig(RIG.replace("plugin_range = [200, 5000]", "plugin_range = [1, 0]")).blocks[0].knob("Tone")
    assert plugin_value(rev, 0.2) == 0.8
    lin = parse_rig(RIG.replace('plugin_values = ["Low", "Mid", "High"]', "plugin_range = [0, 1]")).blocks[0]
    assert [plugin_value(lin.knob("Mode"), p) for p in (1, 2, 3)] == [0.0, 0.5, 1.0]
    assert plugin_value(k["Tone"], 0.1) == 680.0  # 200 + 0.1 * 4800, no 679.9999999


def test_block_assignments_fixed_params_first_then_every_mapped_knob():
    b = parse_rig(RIG).blocks[0]
    setting = {"Drive": 7.5, "Tone": 0.5, "Mode": 2.0, "Level": 4.0, "Out": 6.0}
    got = [(a.param, a.value) for a in block_assignments(b, setting)]
    assert got == [("Gate", False), ("Amp Type", "Plexi"), ("Mix", 100.0), ("Drive", 7.5), ("tone_hz", 2600.0),
                   ("Mode", "Mid"), ("Level", -4.0)]  # Out has no plugin_param: left alone
    where = block_assignments(b, setting)[4].where
    assert "knob 'Tone' of block 01_Drive at 0.5" in where and "plugin_param 'tone_hz'" in where


# ------------------------------------------------------------- a stand-in for pedalboard
class FakeParam:
    def __init__(self, name, type_=float, lo=None, hi=None, step=None, values=None, label=None):
        self.name, self.type, self.min_value, self.max_value = name, type_, lo, hi
        self.step_size, self.approximate_step_size = step, (None if step else 0.01)
        self.valid_values = values or ([False, True] if type_ is bool else [])
        self.label = label


class FakePlugin:
    """pedalboard's attribute interface. Output: tanh(gain * x) * level, gain from Drive
    and the 'Mode' choice (which adds asymmetry too); ``quantize``: the plugin rounds Drive to whole
    numbers (it 'did not take' 2.5); ``stereo_only``: 1-channel input is refused."""

    name = "Fake Drive"
    is_effect, is_instrument = True, False

    def __init__(self, quantize=False, stereo_only=False, interrupt_on=None):
        specs = [FakeParam("Drive", float, 0.0, 10.0), FakeParam("Tone", float, 200.0, 5000.0, label="Hz"),
                 FakeParam("Mode", str, values=["Low", "Mid", "High"]), FakeParam("Level", float, -20.0, 20.0),
                 FakeParam("Gate", bool), FakeParam("Amp Type", str, values=["Plexi", "Lead"]),
                 FakeParam("Mix", float, 0.0, 100.0, step=1.0)]
        keys = ["drive", "tone_hz", "mode", "level", "gate", "amp_type", "mix"]
        object.__setattr__(self, "_p", dict(zip(keys, specs)))
        object.__setattr__(self, "_v", {"drive": 5.0, "tone_hz": 1000.0, "mode": "Mid", "level": 0.0,
                                        "gate": True, "amp_type": "Lead", "mix": 50.0})
        object.__setattr__(self, "_opts", (quantize, stereo_only, interrupt_on))
        object.__setattr__(self, "calls", [])

    @property
    def parameters(self):
        return dict(self._p)

    def __getattr__(self, key):
        v = self.__dict__["_v"]
        if key in v:
            return v[key]
        raise AttributeError(key)

    def __setattr__(self, key, value):
        if key not in self._v:
            raise AttributeError(key)
        p = self._p[key]
        if p.type is float:
            value = float(value)
            if not p.min_value <= value <= p.max_value:
                raise ValueError(f"Value received for parameter '{key}' ({value}) is out of range")
            if key == "drive" and self._opts[0]:
                value = float(round(value))
        elif p.type is str and value not in p.valid_values:
            raise ValueError(f"not in list of valid values: {p.valid_values}")
        self._v[key] = value

    def process(self, audio, sample_rate, buffer_size=8192, reset=True):
        audio = np.asarray(audio, np.float32)
        if audio.shape[0] == 1 and self._opts[1]:
            raise ValueError("Plugin 'Fake Drive' does not support 1-channel input.")
        self.calls.append(dict(self._v))
        n_real = sum(1 for c in self.calls)
        if self._opts[2] is not None and n_real == self._opts[2]:
            raise KeyboardInterrupt
        g = (1.0 + self._v["drive"]) * {"Low": 0.5, "Mid": 1.0, "High": 2.0}[self._v["mode"]]
        asym = {"Low": 0.0, "Mid": 0.1, "High": 0.3}[self._v["mode"]]
        y = np.tanh(g * audio + asym * audio ** 2) * (10 ** (self._v["level"] / 20)) * 0.5
        if self._opts[1]:
            y = np.stack([y[0], 0.5 * y[1] + 0.1 * np.roll(y[1], 3)])
        return y.astype(np.float32)


def fake_loader(**opts):
    made = []

    def load(path, plugin_name):
        made.append(FakePlugin(**opts))
        return made[-1]

    load.made = made
    return load


@pytest.fixture(scope="module")
def fake_project_template(tmp_path_factory):
    """A 32 s project of the RIG above (10 captures of 01_Drive), made once."""
    root = tmp_path_factory.mktemp("tpl") / "proj"
    Project.create(root, RIG, signal_seconds=32)
    (root / "fake.vst3").mkdir()  # the plugin path must exist; the loader is the stand-in
    return root


@pytest.fixture
def fake_project(fake_project_template, tmp_path):
    import shutil

    root = tmp_path / "proj"
    shutil.copytree(fake_project_template, root)
    return Project.open(root)


def test_whole_block_through_a_stand_in_plugin(fake_project):
    project = fake_project
    loader = fake_loader()
    lines = []
    outcomes = capture_missing_with_plugin(project, None, loader=loader, log=lines.append)
    assert len(outcomes) == 10 and all(o.ok for o in outcomes), [o.message for o in outcomes]
    assert "01_Drive: 10 captures through Fake Drive" in lines[0] and "mono in" in lines[0]
    assert "0.5 s tail" in lines[0] and "not set in the plugin (no plugin_param): Out" in lines[0]
    assert not missing_captures(project)
    status = project.scan()
    assert status.ready == 10
    plugin = loader.made[0]
    # every capture set the whole mapped setting (plugin_params too), with the mapped values
    renders = plugin.calls[1:]  # the first call is the layout probe
    by_name = dict(zip([o.capture.filename for o in outcomes], renders))
    mode3 = by_name["01_Drive_Mode_3.wav"]
    assert mode3["mode"] == "High" and mode3["drive"] == 5.0 and mode3["level"] == -4.0
    assert (mode3["gate"], mode3["amp_type"], mode3["mix"]) == (False, "Plexi", 100.0)
    chaos = next(o.capture for o in outcomes if o.capture.filename == "Chaos_Full_01.wav")
    assert by_name["Chaos_Full_01.wav"]["tone_hz"] == pytest.approx(200 + 4800 * chaos.setting["Tone"])
    # the file: float WAV at the project's rate, the input plus the tail, the plugin's output as rendered
    import soundfile as sf

    y, sr = sf.read(project.path(outcomes[0].capture.relpath), dtype="float32")
    info = sf.info(str(project.path(outcomes[0].capture.relpath)))
    x = project.load_input().audio
    assert sr == 48000 and info.subtype == "FLOAT" and y.ndim == 1
    assert len(y) == len(x) + 24000
    ref = np.tanh(1.0 * x + 0.1 * x ** 2) * 10 ** (-4 / 20) * 0.5  # Drive 0, Mode at "Mid", Level -4 dB
    assert np.allclose(y[: len(x)], ref, atol=1e-6)
    assert np.all(y[len(x):] == 0)
    # nothing left in the temp folder; a second run has nothing to do
    assert not any((project.state_dir / "tmp").iterdir())
    assert capture_missing_with_plugin(project, None, loader=fake_loader()) == []


def test_existing_files_are_never_touched_and_limit_block(fake_project):
    project = fake_project
    first = missing_captures(project)[0]
    target = project.path(first.relpath)
    target.write_bytes(b"mine")  # the user's file (not even audio)
    todo = missing_captures(project, "01_Drive")
    assert first not in todo  # an invalid file is not missing: it is the user's to fix
    outcomes = capture_missing_with_plugin(project, None, block_id="01_Drive", limit=3, loader=fake_loader())
    assert [o.capture.filename for o in outcomes] == [c.filename for c in todo[:3]]
    assert all(o.ok for o in outcomes)
    assert target.read_bytes() == b"mine"
    with pytest.raises(Exception, match="no block 'Nope'"):
        capture_missing_with_plugin(project, None, block_id="Nope", loader=fake_loader())


def test_unknown_parameter_lists_the_plugins_names(fake_project):
    project = fake_project
    text = project.rig_path.read_text().replace('plugin_param = "tone_hz"', 'plugin_param = "Tone Freq"')
    project.rig_path.write_text(text)
    project = Project.open(project.root)
    with pytest.raises(PluginError) as err:
        capture_missing_with_plugin(project, None, loader=fake_loader())
    msg = str(err.value)
    assert "knob 'Tone' of block 01_Drive" in msg and "Fake Drive has no parameter 'Tone Freq'" in msg
    assert "Its parameters: drive, tone_hz (\"Tone\"), mode, level, gate, amp_type, mix" in msg
    assert "--list-params" in msg
    line = line_of(text, 'plugin_param = "Tone Freq"')
    assert msg.startswith(f"rig.toml line {line}: ")
    assert not any(project.path(c.relpath).exists() for c in project.plan().captures)  # nothing rendered


def test_names_match_pedalboards_or_the_plugins_own():
    host = HostedPlugin(ROOT, loader=lambda p, n: FakePlugin())
    assert host.find("tone_hz", "x") == "tone_hz"
    assert host.find("Tone", "x") == "tone_hz"  # the plugin's own name
    assert host.find("amp type", "x") == "amp_type"  # ignoring case
    assert host.find("Amp-Type", "x") == "amp_type"  # pedalboard's spelling rules
    with pytest.raises(PluginError, match="Did you mean 'drive'"):
        host.find("driv", "x")


def test_values_outside_the_plugin_or_not_taken_are_errors(fake_project):
    host = HostedPlugin(ROOT, loader=lambda p, n: FakePlugin())
    with pytest.raises(PluginError, match=r"12 is outside the range of \"Drive\" \(0 to 10\)"):
        host.check([Assignment("Drive", 12.0, "knob 'Drive'")])
    with pytest.raises(PluginError, match="'Ultra' is not a value of \"Mode\"; it takes one of: \"Low\", \"Mid\""):
        host.check([Assignment("Mode", "Ultra", "knob 'Mode'")])
    with pytest.raises(PluginError, match="on/off parameter"):
        host.check([Assignment("Gate", 0.5, "plugin_params 'Gate'")])
    with pytest.raises(PluginError, match="takes numbers"):
        host.check([Assignment("Mix", "lots", "plugin_params 'Mix'")])
    assert host.check([Assignment("Mode", "mid", "w")])[0][1] == "Mid"
    # the plugin rounds Drive: 2.5 read back as 2 (or 3) is caught, not captured
    quant = HostedPlugin(ROOT, loader=lambda p, n: FakePlugin(quantize=True))
    quant.apply([Assignment("Drive", 3.0, "w")])
    with pytest.raises(PluginError, match=r"set \"Drive\" to 2.5 but the plugin reports 2 .*did not take"):
        quant.apply([Assignment("Drive", 2.5, "knob 'Drive' of block 01_Drive at 2.5")])
    # in a run: checked before anything is rendered (a chaos value out of the plugin's range)
    project = fake_project
    project.rig_path.write_text(project.rig_path.read_text().replace("plugin_range = [200, 5000]",
                                                                     "plugin_range = [6000, 9000]"))
    with pytest.raises(PluginError, match=r"outside the range of \"Tone\".*\(capture 01_Drive_Drive_0p0.wav\)"):
        capture_missing_with_plugin(Project.open(project.root), None, loader=fake_loader())


def test_unmapped_knob_and_missing_plugin_are_errors(fake_project):
    project = fake_project
    text = project.rig_path.read_text()
    project.rig_path.write_text(text.replace('  plugin_param = "Drive"\n', ""))
    with pytest.raises(PluginError, match="knob\\(s\\) 'Drive' have no plugin_param"):
        capture_missing_with_plugin(Project.open(project.root), None, loader=fake_loader())
    project.rig_path.write_text(text.replace('plugin = "fake.vst3"\n', ""))
    with pytest.raises(PluginError, match="names no plugin: give --plugin PATH"):
        capture_missing_with_plugin(Project.open(project.root), None, loader=fake_loader())
    # --plugin PATH overrides the block's (a relative path is the project's)
    outcomes = capture_missing_with_plugin(Project.open(project.root), "fake.vst3", limit=1, loader=fake_loader())
    assert outcomes[0].ok


def test_stereo_only_plugin_gets_both_inputs_and_a_mono_capture(fake_project):
    lines = []
    outcomes = capture_missing_with_plugin(fake_project, None, limit=2, loader=fake_loader(stereo_only=True),
                                           log=lines.append)
    assert all(o.ok for o in outcomes), [o.message for o in outcomes]
    assert "stereo in (the test signal on both inputs)" in lines[0]
    assert "stereo output: using the mean of both channels" in outcomes[0].message
    import soundfile as sf

    assert sf.info(str(fake_project.path(outcomes[0].capture.relpath))).channels == 1


def test_ctrl_c_leaves_no_partial_capture(fake_project):
    project = fake_project
    todo = missing_captures(project)
    with pytest.raises(KeyboardInterrupt):  # the probe is call 1: the 3rd capture is call 4
        capture_missing_with_plugin(project, None, loader=fake_loader(interrupt_on=4))
    done = [c for c in todo if project.path(c.relpath).exists()]
    assert [c.filename for c in done] == [c.filename for c in todo[:2]]
    assert not any((project.state_dir / "tmp").iterdir())
    assert all(project.check(c.relpath).status == Status.READY for c in done)


def test_cli_capture_plugin_with_stand_in(fake_project, monkeypatch, capsys):
    monkeypatch.setattr(plugin_host, "_default_loader", fake_loader())
    rc = cli.main(["capture", str(fake_project.root), "--plugin", "--limit", "2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "01_Drive: 2 captures through Fake Drive" in out
    assert "[  1/2] 01_Drive_Drive_0p0.wav: ok (" in out and "2/2 captures rendered and ready." in out
    rc = cli.main(["capture", str(fake_project.root), "--plugin", "--list-params"])
    out = capsys.readouterr().out
    assert rc == 0 and "Fake Drive" in out and "tone_hz" in out and "\"Tone\"  200 to 5000 Hz" in out
    assert "one of \"Low\", \"Mid\", \"High\"" in out
    # Ctrl-C: exit 130, one line saying nothing half-written was left
    monkeypatch.setattr(plugin_host, "_default_loader", fake_loader(interrupt_on=2))
    rc = cli.main(["capture", str(fake_project.root), "--plugin"])
    err = capsys.readouterr().err
    assert rc == 130 and "stopped: the capture being rendered was discarded" in err
    # an unknown parameter: exit 2, one line
    fake_project.rig_path.write_text(fake_project.rig_path.read_text().replace('plugin_param = "Drive"',
                                                                               'plugin_param = "Gain"'))
    monkeypatch.setattr(plugin_host, "_default_loader", fake_loader())
    rc = cli.main(["capture", str(fake_project.root), "--plugin"])
    err = capsys.readouterr().err
    line = line_of(fake_project.rig_path.read_text(), 'plugin_param = "Gain"')
    assert rc == 2 and err.startswith(f"unit-trainer: error: rig.toml line {line}: knob 'Drive' of block 01_Drive")
    assert "has no parameter 'Gain'" in err and len(err.strip().splitlines()) == 1


def test_cli_reports_captures_identical_at_different_settings(fake_project, monkeypatch, capsys):
    """A knob whose parameter does nothing audible (here: Mode mapped to the plugin's
    'Amp Type', which the stand-in ignores) gives identical captures: the run says so."""
    text = fake_project.rig_path.read_text()
    text = text.replace('plugin_params = { "Gate" = false, "Amp Type" = "Plexi", "Mix" = 100.0 }',
                        'plugin_params = { "Gate" = false, "Mix" = 100.0 }')
    text = text.replace('plugin_param = "Mode"\n  plugin_values = ["Low", "Mid", "High"]',
                        'plugin_param = "Amp Type"\n  plugin_values = ["Plexi", "Lead", "Plexi"]')
    fake_project.rig_path.write_text(text)
    monkeypatch.setattr(plugin_host, "_default_loader", fake_loader())
    rc = cli.main(["capture", str(fake_project.root), "--plugin"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "  invalid  01_Drive_Mode_1.wav: identical to" in out and "was the knob turned?" in out
    assert "6/10 captures rendered and ready." in out  # Mode 1, 2, 3 and the same-sounding Drive 5


def test_cli_plugin_and_command_are_mutually_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as ex:
        cli.main(["capture", str(tmp_path), "--command", "cp {input} {output}", "--plugin", "x.vst3"])
    assert ex.value.code == 2
    assert "argument --plugin: not allowed with argument --command" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ex:
        cli.main(["capture", str(tmp_path)])
    assert ex.value.code == 2 and "one of the arguments --command --plugin is required" in capsys.readouterr().err


def test_list_params_needs_plugin(fake_project, capsys):
    assert cli.main(["capture", str(fake_project.root), "--command", "true {output}", "--list-params"]) == 2
    assert "use it with --plugin PATH" in capsys.readouterr().err


# --------------------------------------------------------------- pedalboard, real loads
def test_pedalboard_is_imported_only_on_the_plugin_path():
    code = ("import sys, unit_tui.cli, unit_tui.capture, unit_tui.plugin_host, unit_tui.rig;"
            "print('pedalboard' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_clear_errors_when_pedalboard_cannot_load_the_path(fake_project, tmp_path, capsys):
    pytest.importorskip("pedalboard")
    with pytest.raises(PluginError, match=r"no such plugin\. Give the path of the plugin's \.vst3 bundle"):
        HostedPlugin(tmp_path / "Nope.vst3")
    not_plugin = tmp_path / "Not A Plugin.vst3"
    not_plugin.write_text("hello")
    with pytest.raises(PluginError) as err:
        HostedPlugin(not_plugin)
    msg = str(err.value)
    assert msg.startswith(f"{not_plugin} could not be loaded as a plugin (") and "a VST3 bundle (.vst3)" in msg
    folder = tmp_path / "Empty.vst3"
    folder.mkdir()
    with pytest.raises(PluginError, match="could not be loaded as a plugin"):
        HostedPlugin(folder)
    # through the CLI: one line, exit 2, nothing rendered
    rc = cli.main(["capture", str(fake_project.root), "--plugin", str(not_plugin)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("unit-trainer: error: ") and len(err.strip().splitlines()) == 1
    assert "could not be loaded as a plugin" in err
    assert missing_captures(fake_project) == missing_captures(Project.open(fake_project.root))
    rc = cli.main(["capture", str(fake_project.root), "--plugin", str(tmp_path / "Nope.vst3")])
    assert rc == 2 and "no such plugin" in capsys.readouterr().err


# ------------------------------------------------------------- end to end, the real VST3
def e2e_rig(vst3: Path) -> str:
    """A drive block captured through the exported UNIT Rig plugin (drive -> amp): its
    knobs on the plugin's drive parameters, the amp and the hand-added blocks held by
    plugin_params (gate off, no reverb, no cabinet)."""
    return f"""\
format = 1
project = "Plug"
rig_folder = "Rig"
sample_rate = 48000

[[blocks]]
id = "01_Drive"
topology = "drive"
chaos_count = 2
chaos_seed = 3
plugin = {json.dumps(str(vst3))}
plugin_tail = 0.5

  [blocks.plugin_params]   # the amp at Gain 3, Bright on; the hand-added blocks neutral
  "Gate threshold (dB)" = -100.0
  "02_Amp: Gain" = 3.0
  02_amp_bright = 1
  "Reverb mix" = 0.0
  "Cabinet IR on" = false

  [[blocks.knobs]]
  name = "Drive"
  plugin_param = "01_Drive: Drive"

  [[blocks.knobs]]
  name = "Tone"
  role = "chaos"
  minimum = 0.0
  maximum = 1.0
  plugin_param = "01_drive_tone"
  plugin_range = [0, 10]

  [[blocks.knobs]]
  name = "Mode"
  positions = [1, 2, 3]
  plugin_param = "01_Drive: Mode"

  [[blocks.knobs]]
  name = "Level"
  role = "fixed"
  fixed = 4.0
  plugin_param = "01_drive_level"
  plugin_range = [2, 6]

  [[blocks.knobs]]
  name = "Out"
  role = "fixed"
  fixed = 6.0
"""


def engine_setting(setting: dict) -> dict:
    """The exported engine's knob values for a capture's setting, worked out by hand from
    the rig above (not with the code under test)."""
    return {"Drive": setting["Drive"], "Tone": 10.0 * setting["Tone"], "Mode": setting["Mode"],
            "Level": 2.0 + 4.0 * setting["Level"] / 10.0, "Gain": 3.0, "Bright": 1.0}


@pytest.mark.slow
def test_capture_a_whole_block_from_the_exported_vst3(juce_build, tmp_path):
    """The VST3 built from an exported JUCE project, hosted by pedalboard: `capture
    --plugin` renders every planned capture of the block; each passes the project's
    checks and equals the exported twin's render at its setting (ESR <= 1e-8 after
    latency alignment)."""
    pytest.importorskip("pedalboard")
    from dsp import export

    assert juce_build.vst3_binaries and juce_build.standalone.is_file()
    root = tmp_path / "proj"
    Project.create(root, e2e_rig(juce_build.vst3), signal_seconds=32)
    project = Project.open(root)
    planned = project.plan().for_block("01_Drive")
    assert len(planned) == 10

    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "unit_tui.cli", "capture", str(root), "--plugin", "--block", "01_Drive"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert "01_Drive: 10 captures through UNIT Rig" in r.stdout and "mono in" in r.stdout
    assert r.stdout.count(": ok (") == 10 and "10/10 captures rendered and ready." in r.stdout
    print(f"\ncapture --plugin: 10 captures of 32 s in {seconds:.1f} s (incl. Python start-up)")

    project = Project.open(root)
    x = project.load_input().audio
    sr = 48000
    tail = int(0.5 * sr)
    xin = np.concatenate([x, np.zeros(tail, np.float32)])
    import soundfile as sf

    worst = 0.0
    for cap in planned:
        path = project.path(cap.relpath)
        assert path.is_file(), cap.relpath
        res = project.check(cap.relpath)
        assert res.status == Status.READY, (cap.relpath, res.problems)
        y, file_sr = sf.read(path, dtype="float64")
        assert file_sr == sr and y.ndim == 1 and len(y) == len(xin)
        ref = export.render_chain(juce_build.doc, juce_build.models, engine_setting(cap.setting), xin, sr)
        # latency alignment: pedalboard removes the latency the plugin reports; find any rest
        seg = slice(int(0.5 * sr), int(4 * sr))
        lags = range(-64, 65)
        lag = max(lags, key=lambda k: float(np.dot(np.roll(y, -k)[seg], ref[seg])))
        y_al = np.roll(y, -lag)
        n = len(xin) - 256
        e = float(np.sum((y_al[:n] - ref[:n]) ** 2) / np.sum(ref[:n] ** 2))
        # a (near-)silent reference would prove nothing: the untrained fixture twin plays
        # around -60 dBFS; float32 files carry ~-140 dB of rounding, so -80 dBFS is ample
        ref_dbfs = 10 * np.log10(np.mean(ref ** 2) + 1e-30)
        assert ref_dbfs > -80.0, f"{cap.filename}: reference at {ref_dbfs:.1f} dBFS"
        assert lag == 0 and e <= 1e-8, f"{cap.filename}: lag {lag}, ESR {e:.3e}"
        worst = max(worst, e)
    print(f"worst ESR against the twin: {worst:.2e}")
    # the settings really differ between captures (the mapping reached the plugin)
    a = sf.read(project.path(planned[0].relpath))[0]
    b = sf.read(project.path(planned[4].relpath))[0]
    assert np.sum((a - b) ** 2) / np.sum(a ** 2) > 1e-3


@pytest.mark.slow
def test_ctrl_c_in_a_real_plugin_run_then_resume(juce_build, tmp_path):
    """SIGINT (Ctrl-C) in the middle of a run through the real VST3: exit 130, every file
    under a planned name is a complete capture (the one being rendered is discarded), no
    temp file is left; the same command again renders the rest."""
    pytest.importorskip("pedalboard")
    import signal

    root = tmp_path / "proj"
    Project.create(root, e2e_rig(juce_build.vst3), signal_seconds=32)
    cmd = [sys.executable, "-m", "unit_tui.cli", "capture", str(root), "--plugin"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    while not (seen and seen[-1].startswith("[  2/")):
        line = proc.stdout.readline()
        assert line, "the run ended before the interrupt"
        seen.append(line)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "stopped: the capture being rendered was discarded" in err
    project = Project.open(root)
    present = [c for c in project.plan().captures if project.path(c.relpath).exists()]
    reported = [ln.split("] ")[1].split(":")[0] for ln in seen + out.splitlines() if ln.startswith("[")]
    assert [c.filename for c in present] == reported and 2 <= len(present) < 10
    assert all(project.check(c.relpath).status == Status.READY for c in present)
    assert not any((root / ".unit" / "tmp").iterdir())
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and f"{10 - len(present)}/{10 - len(present)} captures rendered and ready." in r.stdout
    assert Project.open(root).scan().ready == 10


# ------------------------------------------------ the IR slot's state (path saved, loaded)
_JUCE_B64 = ".ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+"


def juce_b64_decode(text: str) -> bytes:
    """juce::MemoryBlock::fromBase64Encoding: "<size>." then 6-bit groups, LSB first."""
    size, _, chars = text.strip().partition(".")
    n = sum(_JUCE_B64.index(c) << (6 * i) for i, c in enumerate(chars))
    return (n & ((1 << (8 * int(size))) - 1)).to_bytes(int(size), "little")


def juce_b64_encode(data: bytes) -> str:
    n = int.from_bytes(data, "little")
    count = (len(data) * 8) // 6 + 3
    return f"{len(data)}." + "".join(_JUCE_B64[(n >> (6 * i)) & 63] for i in range(count))


def xml_from_binary(blob: bytes) -> tuple[str, bytes]:
    """juce::AudioProcessor::getXmlFromBinary: 'VC2!', uint32 length, the XML; returns the
    XML and whatever follows it (the VST3 wrapper's private data)."""
    import struct

    assert blob[:4] == b"VC2!", blob[:16]
    (n,) = struct.unpack("<I", blob[4:8])
    return blob[8:8 + n].decode("utf-8"), blob[8 + n + 1:]


def xml_to_binary(xml: str, rest: bytes = b"") -> bytes:
    import struct

    data = xml.encode("utf-8")
    return b"VC2!" + struct.pack("<I", len(data)) + data + b"\0" + rest


def plugin_state_xml(plugin) -> tuple[str, str, bytes]:
    """(the host's VST3PluginState XML, the plugin's own state XML, the wrapper's rest)."""
    outer, _ = xml_from_binary(plugin.raw_state)
    comp = re.search(r"<IComponent>([^<]*)</IComponent>", outer).group(1)
    inner, rest = xml_from_binary(juce_b64_decode(comp))
    return outer, inner, rest


def set_ir_path(plugin, path: str) -> None:
    """Restore the plugin's state with ``ir_path`` set, as a DAW reopening a session does."""
    from xml.sax.saxutils import quoteattr

    outer, inner, rest = plugin_state_xml(plugin)
    inner = re.sub(r'\sir_path="[^"]*"', "", inner)
    inner = re.sub(r"<UNIT\b", f"<UNIT ir_path={quoteattr(path)}", inner, count=1)
    comp = juce_b64_encode(xml_to_binary(inner, rest))
    outer = re.sub(r"<IComponent>[^<]*</IComponent>", f"<IComponent>{comp}</IComponent>", outer)
    plugin.raw_state = xml_to_binary(outer)


@pytest.mark.slow
def test_ir_path_is_saved_in_the_state_and_loaded_on_restore(juce_build, tmp_path):
    """The exported plugin's IR slot: a state with ir_path loads that IR (the cabinet then
    convolves: an IR of two impulses 100 ms apart gives the dry signal plus half of it
    100 ms later), the path is saved in the state again, and a missing file leaves the
    slot empty (dry) while keeping the path."""
    pedalboard = pytest.importorskip("pedalboard")
    import soundfile as sf

    sr = 48000
    assert juce_b64_decode(juce_b64_encode(b"\x00\x01abc\xff")) == b"\x00\x01abc\xff"
    ir = np.zeros(sr // 5, np.float32)
    ir[0], ir[sr // 10] = 0.8, 0.4
    ir_path = tmp_path / "two taps.wav"
    sf.write(ir_path, ir, sr, subtype="FLOAT")

    plugin = pedalboard.load_plugin(str(juce_build.vst3))
    plugin.gate_threshold_db = -100.0
    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros(2400), rng.standard_normal(sr // 2) * 0.1, np.zeros(sr // 2)]).astype(np.float32)
    dry = plugin.process(x[None, :], sr, reset=True)[0].astype(np.float64)
    assert 'ir_path=""' in plugin_state_xml(plugin)[1]

    set_ir_path(plugin, str(ir_path))
    assert f'ir_path="{ir_path}"' in plugin_state_xml(plugin)[1]  # saved again as it was restored
    assert bool(plugin.cabinet_ir_on)
    wet = plugin.process(x[None, :], sr, reset=True)[0].astype(np.float64)
    late = np.concatenate([np.zeros(sr // 10), dry[: -(sr // 10)]])
    (a, b), *_ = np.linalg.lstsq(np.stack([dry, late], 1), wet, rcond=None)
    resid = wet - a * dry - b * late
    assert b / a == pytest.approx(0.5, abs=1e-3), (a, b)
    assert np.sum(resid ** 2) / np.sum(wet ** 2) < 1e-6

    plugin.cabinet_ir_on = False  # the switch bypasses the slot
    assert np.allclose(plugin.process(x[None, :], sr, reset=True)[0], dry, atol=1e-7)
    plugin.cabinet_ir_on = True

    gone = str(tmp_path / "moved away.wav")
    set_ir_path(plugin, gone)
    assert f'ir_path="{gone}"' in plugin_state_xml(plugin)[1]  # kept, so the session still names it
    assert np.allclose(plugin.process(x[None, :], sr, reset=True)[0], dry, atol=1e-7)


EDITOR_HARNESS = r"""
#include "PluginProcessor.h"
#include "PluginEditor.h"
#include <cstdio>
#include <functional>

juce::AudioProcessor* JUCE_CALLTYPE createPluginFilter();

template <typename T>
static T* child(juce::Component& parent, std::function<bool(T&)> match) {
    for (auto* c : parent.getChildren())
        if (auto* t = dynamic_cast<T*>(c))
            if (match(*t)) return t;
    return nullptr;
}

int main(int, char** argv) {
    juce::ScopedJuceInitialiser_GUI gui;  // no display needed: the editor is never put on screen
    std::unique_ptr<juce::AudioProcessor> p(createPluginFilter());
    auto& proc = dynamic_cast<UnitRigProcessor&>(*p);
    proc.prepareToPlay(48000, 512);
    std::printf("loaded %d\n", (int)proc.loadImpulseResponse(juce::File(juce::String(argv[1]))));
    std::unique_ptr<juce::AudioProcessorEditor> ed(p->createEditorIfNeeded());
    ed->setSize(640, 480);
    auto* load = child<juce::TextButton>(*ed, [](juce::TextButton& b) { return b.getButtonText() == "Load IR..."; });
    auto* clear = child<juce::TextButton>(*ed, [](juce::TextButton& b) { return b.getButtonText() == "Clear IR"; });
    auto* label = child<juce::Label>(*ed, [](juce::Label&) { return true; });
    auto* generic = child<juce::GenericAudioProcessorEditor>(*ed, [](juce::GenericAudioProcessorEditor&) { return true; });
    std::printf("parts %d %d %d %d\n", load != nullptr, clear != nullptr, label != nullptr, generic != nullptr);
    if (!load || !clear || !label || !generic) return 1;
    std::printf("label %s\n", label->getText().toRawUTF8());
    std::printf("bar %d generic %d %d %d %d\n", load->getBottom() <= generic->getY(), generic->getX(), generic->getY(),
                generic->getWidth(), generic->getBottom());
    const bool bad = proc.loadImpulseResponse(juce::File("/nonexistent/other.wav"));
    std::printf("bad %d %s\n", (int)bad, proc.impulseResponseStatus().toRawUTF8());
    std::printf("clear_enabled %d\n", (int)clear->isEnabled());
    clear->onClick();
    std::printf("cleared '%s' %d %s\n", proc.impulseResponsePath().toRawUTF8(), (int)clear->isEnabled(),
                label->getText().toRawUTF8());
    ed.reset();
    return 0;
}
"""


@pytest.mark.slow
def test_editor_has_the_load_ir_bar_above_the_generic_editor(juce_build, tmp_path):
    """The exported plugin's editor, built headless against the plugin's shared code: a
    "Load IR..." and a "Clear IR" button and the IR's status above JUCE's generic
    parameter editor; a bad file keeps the loaded IR and says so; Clear empties the slot.
    (The file dialog itself needs a display: not run here.)"""
    import shutil
    import soundfile as sf

    flags = juce_build.build_dir / "CMakeFiles" / "UnitRig.dir" / "flags.make"
    lib = juce_build.artefacts / "libUNIT Rig_SharedCode.a"
    if not flags.is_file() or not lib.is_file() or not shutil.which("g++"):
        pytest.skip("needs the Makefile build's flags.make, the shared-code library and g++")
    text = flags.read_text()
    defs, incs = (re.search(rf"^{k} = (.*)$", text, re.M).group(1) for k in ("CXX_DEFINES", "CXX_INCLUDES"))
    src = tmp_path / "harness.cpp"
    src.write_text(EDITOR_HARNESS)
    exe = tmp_path / "harness"
    cmd = (f"g++ -std=gnu++17 -O1 {defs} {incs} -I{shlex_q(juce_build.export_dir / 'juce' / 'Source')} "
           f"{shlex_q(src)} -o {shlex_q(exe)} {shlex_q(lib)} -lpng16 -ljpeg -lfreetype -lasound -lz -lrt -ldl -lpthread")
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ir = np.zeros(9600, np.float32)
    ir[0], ir[4800] = 0.8, 0.4
    sf.write(tmp_path / "two taps.wav", ir, 48000, subtype="FLOAT")
    r = subprocess.run([str(exe), str(tmp_path / "two taps.wav")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "loaded 1" and out[1] == "parts 1 1 1 1"
    assert out[2] == "label IR: two taps.wav (0.20 s)"
    assert out[3].startswith("bar 1 generic 0 36 640 480")  # the bar on top, the generic editor below
    assert out[4] == ("bad 0 IR not loaded: /nonexistent/other.wav does not exist; choose the file again; "
                      "still using two taps.wav")
    assert out[5] == "clear_enabled 1"
    assert out[6] == "cleared '' 0 No IR loaded (the cabinet slot passes the signal through)"


def shlex_q(p) -> str:
    import shlex

    return shlex.quote(str(p))

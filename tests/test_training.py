"""train / render / report from the CLI on a real (tiny) project rendered by the virtual rig."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from unit_tui.cli import main
from unit_tui.training import checkpoint_path, model_path

from conftest import render_tiny_project

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    project = render_tiny_project(tmp, "Train", seconds=2.5, freqs=(110, 147, 196, 82.4, 220), first_onset=0.2)
    assert main(["train", str(project.root), "--minutes", "0.6", "--every", "5"]) == 0
    return project


def test_train_writes_the_model_and_reports_held_out(trained, capsys):
    assert model_path(trained, "01_Pedal").is_file()
    assert main(["report", str(trained.root), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["01_Pedal"]
    names = {it["name"]: it for it in rep["items"]}
    assert len(names) == 9  # 6 sweeps + 3 chaos
    assert names["Chaos_Full_03"]["holdout"] is True  # fewer than 10 presets: the last is held out
    assert sum(it["holdout"] for it in rep["items"]) == 1
    assert all(np.isfinite(it["esr"]) for it in rep["items"])
    assert rep["holdout"]["median"] == names["Chaos_Full_03"]["esr"]
    assert main(["report", str(trained.root)]) == 0
    text = capsys.readouterr().out
    assert "held-out ESR" in text and "Chaos_Full_03" in text


def test_render_any_setting_and_never_overwrite(trained, tmp_path, capsys):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    args = ["render", str(trained.root), "--block", "01_Pedal", "--input", str(trained.input_path)]
    assert main([*args, "--set", "Drive=3.3", "--set", "Bright=7", "--output", str(a)]) == 0
    assert main([*args, "--set", "Drive=9.1", "--output", str(b)]) == 0
    ya, yb = sf.read(a)[0], sf.read(b)[0]
    x = sf.read(trained.input_path)[0]
    assert ya.shape == x.shape and np.abs(ya - yb).max() > 1e-3  # the knobs reach the twin
    before = a.read_bytes()
    assert main([*args, "--set", "Drive=1", "--output", str(a)]) == 2
    assert "already exists" in capsys.readouterr().err and a.read_bytes() == before
    assert main([*args, "--set", "Gain=1", "--output", str(tmp_path / "c.wav")]) == 2
    assert "has no knob 'Gain'" in capsys.readouterr().err
    assert main([*args, "--set", "Drive=11", "--output", str(tmp_path / "c.wav")]) == 2
    assert "outside Drive's range 0-10" in capsys.readouterr().err


def _helpers_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` running ``dsp.parallel`` (a fit's helpers)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"dsp.parallel" in cmd:
            out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_stops_after_a_checkpoint_and_train_resumes(trained):
    # on two processes, as the product fits where two cores are usable: the helper is
    # there while it trains and gone once Ctrl-C has stopped the fit
    env = {**os.environ, "PYTHONPATH": str(REPO), "UNIT_FIT_PROCESSES": "2"}
    cmd = [sys.executable, "-m", "unit_tui.cli", "train", str(trained.root), "--fresh", "--every", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # wait until the fit is under way
        lines.append(line)
        if "per_capture" in line or "joint" in line or time.monotonic() > deadline:
            break
    helpers = _helpers_of(proc.pid)
    assert len(helpers) == 1, "".join(lines)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(lines) + out
    assert "stopped" in out
    assert checkpoint_path(trained, "01_Pedal").is_file()
    assert not _alive(helpers[0])  # ended with the fit, not left running
    done = subprocess.run([*cmd[:-3], "--minutes", "0.3", "--every", "5"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resumed from the last checkpoint" in done.stdout


def test_export_cli_writes_the_plugin_folder_and_never_overwrites(trained, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(trained.root), "--out", str(out)]) == 0
    assert "Exported 01_Pedal" in capsys.readouterr().out
    model = json.loads((out / "model.json").read_text())
    assert [b["name"] for b in model["blocks"]] == ["01_Pedal"]
    assert {k["name"] for k in model["knobs"]} == {"Drive", "Bright", "Level"}
    assert (out / "cpp" / "unit_engine.h").is_file() and (out / "juce" / "CMakeLists.txt").is_file()
    before = (out / "model.json").read_bytes()
    assert main(["export", str(trained.root), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "model.json").read_bytes() == before


def test_the_rig_structure_reaches_the_fit(tmp_path, monkeypatch, capsys):
    """An amp block whose rig says ``structure = { drive_section = 1 }`` is fitted with
    its drive section on (the init leaves it off otherwise); the saved twin renders with
    it."""
    from conftest import strummed_input

    from unit_tui.audio_io import write_wav_atomic
    from unit_tui.capture import missing_captures, run_captures
    from unit_tui.project import Project
    from dsp.fit import FitConfig
    from unit_tui.training import load_model, train_block

    rig = """
format = 1
project = "Boosted"
rig_folder = "Boosted Rig"
[[blocks]]
id = "02_Amp"
topology = "amp"
structure = { drive_section = 1 }
  [[blocks.knobs]]
  name = "Gain"
  sweep = [0, 10]
"""
    sf.write(tmp_path / "in.wav", strummed_input(1.5), 48000, subtype="PCM_24")
    project = Project.create(tmp_path / "proj", rig, input_wav=tmp_path / "in.wav")

    def render(project, capture, output):
        x = project.load_input().audio
        g = 2.0 + capture.setting["Gain"]
        write_wav_atomic(output, 0.5 * np.tanh(g * x), 48000, subtype="PCM_24")

    assert all(o.ok for o in run_captures(project, missing_captures(project), render))
    tiny = dict(oversample=1, search_candidates=4, search_excerpt_s=0.1, refine_steps=2, per_capture_steps=5,
                curve_steps=5, joint_steps=5, line_search_points=3, val_items=2)
    twin, _ = train_block(project, "02_Amp", fresh=True, config=FitConfig(**tiny))
    assert twin.shared_raw["drive_section"] == 1.0 and twin.shared_raw["band_split"] == 0.0
    assert load_model(project, "02_Amp").shared_raw == twin.shared_raw
    assert main(["report", str(project.root), "--json"]) == 0  # the report says what the fit used
    rep = json.loads(capsys.readouterr().out)["02_Amp"]
    structure = rep["structure"]
    assert structure["drive_section"] == 1 and structure["band_split"] == 0
    # the options the init tries are the fit's choice: the report says which it made
    assert {k: structure[k] for k in ("tonestack_position", "blend_tone")} == \
        {k: int(twin.shared_raw[k] > 0.5) for k in ("tonestack_position", "blend_tone")}
    assert set(structure) == {"tonestack_position", "drive_section", "band_split", "blend_tone", "shaper_tables",
                              "band_chain"}
    # the shaper tables and the band chain stay off when the rig does not set them
    assert structure["shaper_tables"] == 0 and structure["band_chain"] == 0
    # and which output sections the fit decided from the captures, the output FIR among them
    sections = rep["sections"]
    assert set(sections) == {"output_lp", "allpass", "allpass2", "output_dc", "output_fir"}
    assert sections == {k: int(twin.shared_raw[k] > 0.5) for k in sections}
    # and the controls each knob drives (inferred here: the rig gives no affects)
    assert rep["affects"] == {k["name"]: list(k["affects"]) for k in twin.knob_map["knobs"]}
    assert rep["affects"]["Gain"] and set(rep["affects"]["Gain"]) <= {c["name"] for c in twin.knob_map["controls"]}
    assert main(["report", str(project.root)]) == 0
    out = capsys.readouterr().out
    assert "structure: tonestack_position" in out
    assert f"knobs drive: Gain -> {', '.join(rep['affects']['Gain'])} (the rig's affects" in out
    on = [k for k, v in sections.items() if v]
    line = next(ln for ln in out.splitlines() if "output sections decided from the captures" in ln)
    assert line.split(": ", 1)[1].split(" on")[0] == (", ".join(on) if on else "none")
    from unit_tui.analysis import accuracy_text  # the results screen's summary

    on = accuracy_text(twin.report()).split("Structure: ")[1].split(" on (")[0].split(", ")
    assert "drive_section" in on and "band_split" not in on
    text = accuracy_text(twin.report()).split("Output sections decided from the captures: ")[1]
    assert text.rstrip(".") == (", ".join(k for k, v in sections.items() if v) or "none")
    # a config that names the option wins over the rig (the benchmarks' --variant)
    import dsp.twin

    seen = []

    def spy(*args, config=None, **kw):
        seen.append(config.variants)
        raise KeyboardInterrupt  # stop before any work

    monkeypatch.setattr(dsp.twin, "fit_block", spy)
    with pytest.raises(KeyboardInterrupt):
        train_block(project, "02_Amp", fresh=True, config=FitConfig(variants={"drive_section": 0, "band_split": 1}))
    assert seen == [{"drive_section": 0, "band_split": 1}]
    from dsp.twin import FittedBlock

    off = FittedBlock.from_dict(dict(twin.to_dict(), shared_raw=dict(twin.shared_raw, drive_section=0.0)))
    x = project.load_input().audio
    y_on, y_off = twin.render({"Gain": 5.0}, x, 48000), off.render({"Gain": 5.0}, x, 48000)
    assert np.abs(y_on - y_off).max() > 1e-3  # the section is in the rendered path


def test_the_report_scores_the_guitar_phrases_of_the_unit_signal(tmp_path, capsys, trained):
    """A project on UNIT's own test signal: every capture carries the signal's guitar
    segments (``SignalLayout.guitar_spans``), and the report gives each capture's ESR on
    them and their held-out / train summary, in the JSON and in the text; a project on
    some other input (the tiny one's strummed notes) has no such figure."""
    from unit_tui.audio_io import write_wav_atomic
    from unit_tui.capture import missing_captures, run_captures
    from unit_tui.project import Project
    from dsp.fit import FitConfig
    from unit_tui.training import load_items, train_block

    from conftest import tiny_drive_rig

    project = Project.create(tmp_path / "proj", tiny_drive_rig("Phrases"), signal_seconds=32.0)

    def render(project, capture, output):
        x = project.load_input().audio
        g = 1.0 + 0.4 * capture.setting.get("Drive", 5.0)
        write_wav_atomic(output, 0.5 * np.tanh(g * x), 48000, subtype="PCM_24")

    assert all(o.ok for o in run_captures(project, missing_captures(project), render))
    loaded = load_items(project, "01_Pedal")
    spans = project.layout().guitar_spans()
    assert len(spans) >= 3 and all(it.guitar_spans == spans for it in loaded.items)
    assert sum(b - a for a, b in spans) > 8 * 48000  # the phrases and the repeated phrase
    assert all(it.guitar_spans == () for it in load_items(trained, "01_Pedal").items)

    tiny = dict(oversample=1, search_candidates=4, search_excerpt_s=0.1, refine_steps=2, per_capture_steps=5,
                curve_steps=5, joint_steps=5, line_search_points=3, val_items=2)
    train_block(project, "01_Pedal", fresh=True, config=FitConfig(**tiny))
    assert main(["report", str(project.root), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["01_Pedal"]
    assert all(np.isfinite(it["guitar_esr"]) for it in rep["items"])
    assert rep["holdout_guitar"]["count"] == sum(it["holdout"] for it in rep["items"]) >= 1
    held = [it["guitar_esr"] for it in rep["items"] if it["holdout"]]
    assert rep["holdout_guitar"]["median"] == pytest.approx(float(np.median(held)))
    assert main(["report", str(project.root)]) == 0
    text = capsys.readouterr().out
    assert "guitar segments alone" in text and f"guitar {rep['items'][0]['guitar_esr']:.4f}" in text
    from unit_tui.analysis import accuracy_text  # the results screen's summary
    from unit_tui.training import load_model

    g = rep["holdout_guitar"]
    summary = accuracy_text(load_model(project, "01_Pedal").report())
    assert f"On the guitar phrases alone (what a player hears; held out): median {g['median']:.4f}" in summary
    assert main(["report", str(trained.root)]) == 0
    assert "guitar" not in capsys.readouterr().out
    assert "guitar" not in accuracy_text(load_model(trained, "01_Pedal").report())


def test_a_bad_process_count_in_the_environment_is_refused_before_training(trained, monkeypatch, capsys):
    monkeypatch.setenv("UNIT_FIT_PROCESSES", "two")
    before = model_path(trained, "01_Pedal").read_bytes()
    assert main(["train", str(trained.root), "--minutes", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "UNIT_FIT_PROCESSES='two' is not a whole number" in err and "Traceback" not in err
    assert model_path(trained, "01_Pedal").read_bytes() == before  # nothing trained or written

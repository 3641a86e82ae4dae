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


def test_ctrl_c_stops_after_a_checkpoint_and_train_resumes(trained):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "unit_tui.cli", "train", str(trained.root), "--fresh", "--every", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # wait until the fit is under way
        lines.append(line)
        if "per_capture" in line or "joint" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(lines) + out
    assert "stopped" in out
    assert checkpoint_path(trained, "01_Pedal").is_file()
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

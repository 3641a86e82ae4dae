"""Project folders, chaos maps on disk, extras, and the CLI on real files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from unit_tui.checks import Status
from unit_tui.cli import main
from unit_tui.project import Project
from unit_tui.rig import template_text

SR = 48000
TINY_RIG = """
format = 1
project = "Tiny"
rig_folder = "Tiny Rig"
sample_rate = 48000
[[blocks]]
id = "01_Fuzz"
topology = "drive"
chaos_count = 2
chaos_seed = 7
  [[blocks.knobs]]
  name = "Drive"
  sweep = [0, 5, 10]
  [[blocks.knobs]]
  name = "Tone"
  role = "chaos"
  [[blocks.knobs]]
  name = "Level"
  role = "fixed"
  fixed = 6
"""


def make_input(path: Path, seconds: float = 2.0, sr: int = SR) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-((t % 0.5) * 4)) + 0.02 * rng.standard_normal(t.size)
    x[: sr // 10] = 0.0
    x = x.astype(np.float32)
    sf.write(path, x, sr, subtype="PCM_24")
    return x


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() + ("/" if p.is_dir() else "") for p in root.rglob("*")
                  if ".unit" not in p.relative_to(root).parts)


@pytest.fixture
def tiny(tmp_path) -> Project:
    inp = tmp_path / "my_input.wav"
    make_input(inp)
    return Project.create(tmp_path / "Tiny", TINY_RIG, source="tiny.toml", input_wav=inp)


def render(project: Project, relpath: str, fn=lambda x: np.tanh(4 * x)) -> Path:
    x, sr = sf.read(project.input_path, dtype="float32")
    path = project.path(relpath)
    sf.write(path, fn(x).astype(np.float32) * 0.8, sr, subtype="PCM_24")
    return path


def test_new_unit1_creates_the_spec_tree(tmp_path):
    root = tmp_path / "UNIT 1 - Trainer"
    assert main(["new", str(root), "--template", "unit1"]) == 0
    rig_folder = "UNIT - 1 - #1 Pedal (Horizon) - #1 Amp (Invective)"
    assert tree(root) == sorted([
        "input.wav", "rig.toml", f"{rig_folder}/",
        f"{rig_folder}/01_Horizon_Pedal/", f"{rig_folder}/01_Horizon_Pedal/01_Single_Sweeps/",
        f"{rig_folder}/02_Invective_Amp/", f"{rig_folder}/02_Invective_Amp/01_Single_Sweeps/",
        f"{rig_folder}/02_Invective_Amp/02_Chaos_Mode/", f"{rig_folder}/02_Invective_Amp/02_Chaos_Mode/chaos_map.csv",
    ])
    assert (root / "rig.toml").read_text() == template_text("unit1")
    info = sf.info(str(root / "input.wav"))
    assert info.samplerate == 48000 and info.channels == 1 and info.duration > 30
    csv_lines = (root / rig_folder / "02_Invective_Amp/02_Chaos_Mode/chaos_map.csv").read_text().splitlines()
    assert csv_lines[0].startswith("Filename,Pre_Gain,Bass,Mid,Treble,Post_Gain,Master")
    assert len(csv_lines) == 51


def test_new_refuses_a_non_empty_folder_and_changes_nothing(tmp_path, capsys):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "song.txt").write_text("my lyrics")
    assert main(["new", str(root), "--template", "unit1"]) == 2
    err = capsys.readouterr().err
    assert "already exists and is not empty" in err and "Traceback" not in err
    assert [p.name for p in root.iterdir()] == ["song.txt"] and (root / "song.txt").read_text() == "my lyrics"


def test_new_copies_input_byte_for_byte_and_adopts_its_rate(tmp_path):
    inp = tmp_path / "nam_input.wav"
    make_input(inp, sr=44100)
    project = Project.create(tmp_path / "P", TINY_RIG, input_wav=inp)
    assert project.input_path.read_bytes() == inp.read_bytes()
    assert project.rig.sample_rate == 44100
    assert Project.open(tmp_path / "P").rig.sample_rate == 44100
    assert any("44100" in m for m in project.messages)


def test_new_rejects_unreadable_input(tmp_path, capsys):
    bad = tmp_path / "input.wav"
    bad.write_text("not audio")
    rig = tmp_path / "rig.toml"
    rig.write_text(TINY_RIG)
    assert main(["new", str(tmp_path / "P"), "--rig", str(rig), "--input", str(bad)]) == 2
    assert "--input" in capsys.readouterr().err
    assert not (tmp_path / "P").exists()


def test_add_chaos_appends_and_never_changes_old_rows(tiny):
    path = tiny.root / "Tiny Rig/01_Fuzz/02_Chaos_Mode/chaos_map.csv"
    before = path.read_bytes()
    added = tiny.add_chaos("01_Fuzz", 3)
    assert [c.filename for c in added] == ["Chaos_Full_03.wav", "Chaos_Full_04.wav", "Chaos_Full_05.wav"]
    after = path.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 3
    assert len(tiny.plan().captures) == 3 + 5


def test_add_chaos_cli_unknown_block(tiny, capsys):
    assert main(["add-chaos", str(tiny.root), "--block", "nope", "--count", "2"]) == 2
    assert "no block 'nope'" in capsys.readouterr().err


def test_status_ready_missing_and_extra_files_untouched(tiny):
    render(tiny, "Tiny Rig/01_Fuzz/01_Single_Sweeps/01_Fuzz_Drive_0p0.wav")
    stray = render(tiny, "Tiny Rig/01_Fuzz/01_Single_Sweeps/01_Fuzz_Drive_2p5.wav")
    st_before = stray.stat()
    status = tiny.scan()
    by_path = {s.relpath: s for s in status.states}
    assert by_path["Tiny Rig/01_Fuzz/01_Single_Sweeps/01_Fuzz_Drive_0p0.wav"].status == Status.READY
    assert by_path["Tiny Rig/01_Fuzz/01_Single_Sweeps/01_Fuzz_Drive_5p0.wav"].status == Status.MISSING
    assert [e.relpath for e in status.extras] == ["Tiny Rig/01_Fuzz/01_Single_Sweeps/01_Fuzz_Drive_2p5.wav"]
    assert "did you mean 01_Fuzz_Drive_" in status.extras[0].reason
    assert stray.stat().st_mtime_ns == st_before.st_mtime_ns and stray.stat().st_size == st_before.st_size


def test_capture_in_wrong_folder_is_pointed_home(tiny):
    render(tiny, "Tiny Rig/01_Fuzz/02_Chaos_Mode/01_Fuzz_Drive_5p0.wav")
    extras = tiny.scan().extras
    assert len(extras) == 1 and "belongs in Tiny Rig/01_Fuzz/01_Single_Sweeps/" in extras[0].reason


def test_rig_change_after_captures_never_renames(tiny):
    f = render(tiny, "Tiny Rig/01_Fuzz/01_Single_Sweeps/01_Fuzz_Drive_10p0.wav")
    data = f.read_bytes()
    rig = tiny.rig_path.read_text().replace("sweep = [0, 5, 10]", "sweep = [0, 2.5, 5, 7.5]")
    tiny.rig_path.write_text(rig)
    status = Project.open(tiny.root).scan()
    assert [e.relpath for e in status.extras] == ["Tiny Rig/01_Fuzz/01_Single_Sweeps/01_Fuzz_Drive_10p0.wav"]
    assert f.read_bytes() == data


def test_hand_edited_chaos_map_is_an_error_with_line_not_traceback(tiny, capsys):
    path = tiny.root / "Tiny Rig/01_Fuzz/02_Chaos_Mode/chaos_map.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("Chaos_Full_02.wav", "../../../evil.wav")
    path.write_text("\n".join(lines) + "\n")
    assert main(["status", str(tiny.root)]) == 2
    err = capsys.readouterr().err
    assert "chaos_map.csv line 3" in err and "points outside" in err and "Traceback" not in err


def test_corrupt_rig_file_is_an_error_with_line(tiny, capsys):
    tiny.rig_path.write_text(tiny.rig_path.read_text().replace('topology = "drive"', 'topology = "fuzzbox"'))
    assert main(["plan", str(tiny.root)]) == 2
    err = capsys.readouterr().err
    assert "rig.toml line" in err and "topology must be one of drive, amp, eq_match" in err


def test_plan_and_status_json(tiny, capsys):
    assert main(["plan", str(tiny.root), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [c["filename"] for c in plan["captures"]] == [
        "01_Fuzz_Drive_0p0.wav", "01_Fuzz_Drive_5p0.wav", "01_Fuzz_Drive_10p0.wav", "Chaos_Full_01.wav", "Chaos_Full_02.wav"]
    assert plan["captures"][0]["setting"] == {"Drive": 0, "Tone": 5, "Level": 6}
    render(tiny, "Tiny Rig/01_Fuzz/01_Single_Sweeps/01_Fuzz_Drive_0p0.wav")
    assert main(["status", str(tiny.root), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["ready"] == 1 and st["total"] == 5 and st["counts"]["missing"] == 4


# ---------------------------------------------------------------------------- capture --command


def test_capture_command_with_sox_renders_missing_and_never_overwrites(tiny, capsys):
    mine = render(tiny, "Tiny Rig/01_Fuzz/01_Single_Sweeps/01_Fuzz_Drive_0p0.wav", fn=lambda x: 0.5 * np.tanh(9 * x))
    mine_bytes = mine.read_bytes()
    cmd = "sox {input} -b 24 {output} gain -6 overdrive {Drive:.1f} {Tone} gain -n -3"
    rc = main(["capture", str(tiny.root), "--command", cmd])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "4/4 captures rendered and ready" in out
    status = tiny.scan()
    assert status.ready == 5
    assert mine.read_bytes() == mine_bytes  # the user's own capture was left as it was
    # Different Drive values really reached sox: the renders differ.
    a = sf.read(tiny.path("Tiny Rig/01_Fuzz/01_Single_Sweeps/01_Fuzz_Drive_5p0.wav"))[0]
    b = sf.read(tiny.path("Tiny Rig/01_Fuzz/01_Single_Sweeps/01_Fuzz_Drive_10p0.wav"))[0]
    assert np.abs(a - b).max() > 1e-3
    assert not any((tiny.state_dir / "tmp").iterdir())  # temp files cleaned up


def test_capture_command_env_and_json(tiny, tmp_path):
    log = tmp_path / "log.jsonl"
    script = tmp_path / "render.py"
    script.write_text(
        "import json, os, sys, soundfile as sf\n"
        "x, sr = sf.read(os.environ['UNIT_INPUT'])\n"
        "s = json.loads(sys.argv[1])\n"
        "open(sys.argv[2], 'a').write(json.dumps({'s': s, 'tone': os.environ['UNIT_KNOB_TONE'], 'name': os.environ['UNIT_NAME']}) + '\\n')\n"
        "sf.write(os.environ['UNIT_OUTPUT'], 0.5 * __import__('numpy').tanh(x * (1 + s['Drive'])), sr, subtype='PCM_24')\n"
    )
    cmd = f"{sys.executable} {script} {{setting_json}} {log}"
    assert main(["capture", str(tiny.root), "--command", cmd, "--limit", "2"]) == 0
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["name"] for r in rows] == ["01_Fuzz_Drive_0p0.wav", "01_Fuzz_Drive_5p0.wav"]
    assert rows[1]["s"] == {"Drive": 5, "Tone": 5, "Level": 6} and rows[1]["tone"] == "5"


def test_capture_command_unknown_placeholder_runs_nothing(tiny, capsys):
    assert main(["capture", str(tiny.root), "--command", "sox {input} {output} overdrive {Drvie}"]) == 2
    err = capsys.readouterr().err
    assert "unknown placeholder 'Drvie'" in err and "{Drive}" in err
    assert tiny.scan().ready == 0


def test_capture_command_failure_is_reported(tiny, capsys):
    assert main(["capture", str(tiny.root), "--command", "echo broken >&2; exit 3 # {output}", "--limit", "1"]) == 1
    out = capsys.readouterr().out
    assert "failed: the command exited with 3: broken" in out
    assert tiny.scan().ready == 0


def test_cli_runs_as_a_console_script_without_torch(tiny):
    code = ("import sys, runpy; sys.argv=['unit-trainer','status',%r];"
            "import unit_tui.cli as c; rc=c.main(sys.argv[1:]); assert 'torch' not in sys.modules; sys.exit(rc)") % str(tiny.root)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert "0/5 ready" in proc.stdout


def test_check_results_are_cached_on_disk_and_invalidated_by_changes(tiny, monkeypatch):
    rel = "Tiny Rig/01_Fuzz/01_Single_Sweeps/01_Fuzz_Drive_0p0.wav"
    render(tiny, rel)
    first = tiny.scan()
    assert first.ready == 1
    import unit_tui.project as projmod

    def boom(*a, **k):
        raise AssertionError("re-checked a file that did not change")

    monkeypatch.setattr(projmod, "check_capture", boom)
    again = Project.open(tiny.root).scan()  # a fresh process would read the cache too
    assert again.ready == 1 and again.states[0].result.latency_samples == first.states[0].result.latency_samples
    calls = []
    monkeypatch.setattr(projmod, "check_capture", lambda path, ctx, now=None: calls.append(path) or projmod.CheckResult.missing())
    render(tiny, rel, fn=lambda x: np.tanh(9 * x))  # the user re-bounces: size/mtime change
    os.utime(tiny.path(rel), ns=(1, 1))
    Project.open(tiny.root).scan()
    assert calls == [tiny.path(rel)]

"""Training jobs: the protocol (job.json, lock, progress.jsonl), the detached runner,
cancel, resume after kill -9, previews, next captures, and the CLI's view of a job.

The fast tests fabricate job files; the slow ones run the real training process on a
tiny rig (one drive block, two knobs, 2 s input, 9 captures; budgets of 15-30 s).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from unit_tui.jobs import (JobInfo, JobLock, JobRunning, JobView, ProgressTail, cancel_job, fmt_eta, jobs_dir,
                           lock_held, read_job, running_job, start_job, verdict, write_job)
from unit_tui.project import Project

from conftest import TINY_BLOCK, TINY_SR, copy_project, tiny_drive_rig
from conftest import strummed_input as make_input

SR = TINY_SR
BLOCK = TINY_BLOCK
JOB_TIMEOUT_S = 150.0

RIG = tiny_drive_rig("Jobs")


# ---------------------------------------------------------------------------- helpers
# (the tiny rig, its input and the session's rendered_project come from tests/conftest.py)


@pytest.fixture
def project(rendered_project, tmp_path) -> Project:
    return copy_project(rendered_project, tmp_path / "proj")


def wait_until(pred, timeout: float = JOB_TIMEOUT_S, every: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def events(root: Path) -> list[dict]:
    path = jobs_dir(root) / "progress.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


def wait_for_training(root: Path, steps: int = 1) -> None:
    """Until the job has reported ``steps`` optimiser steps with a training ESR."""
    wait_until(lambda: sum(1 for e in events(root) if e.get("type") == "progress" and e.get("train_esr"))
               >= steps, what="training progress")


def wait_job_end(root: Path) -> JobInfo:
    return wait_until(lambda: (i := read_job(root)) is not None and not i.alive and i, what="the job to end")


# ---------------------------------------------------------------------------- fast: protocol


def test_verdicts_match_the_twin_api():
    from dsp.losses import verdict as dsp_verdict

    for esr in (0.0, 0.005, 0.0099, 0.01, 0.02, 0.0349, 0.035, 0.09, 0.1, 0.5, 3.0):
        assert verdict(esr) == dsp_verdict(esr)
    assert verdict(None) == "—"


def test_job_view_folds_events_worst_first():
    view = JobView()
    view.apply_all([
        {"type": "job", "blocks": ["A"], "resumed": True, "message": "Resumed from the last checkpoint (A)."},
        {"type": "block", "block": "A", "holdout": ["Chaos_Full_03"]},
        {"type": "progress", "block": "A", "stage": "per_capture", "step": 3, "total": 10, "train_esr": 0.5,
         "holdout_esr": None, "elapsed_s": 6.0, "eta_s": 30, "per_item": {"a": 0.2, "Chaos_Full_03": 0.05}},
        {"type": "progress", "block": "A", "stage": "joint", "step": 5, "total": 10, "train_esr": 0.1,
         "holdout_esr": 0.2, "elapsed_s": 12.0, "per_item": {"b": 0.001}},
    ])
    bv = view.blocks["A"]
    assert view.resumed and view.current == "A" and bv.stage == "joint"
    assert bv.train_series == [(0.1, 0.5), (0.2, 0.1)] and bv.holdout_series == [(0.2, 0.2)]
    assert bv.rows() == [("a", False, 0.2, "poor"), ("Chaos_Full_03", True, 0.05, "may sound OK"),
                         ("b", False, 0.001, "great")]
    view.apply({"type": "result", "block": "A", "status": "complete",
                "report": {"items": [{"name": "a", "esr": 0.02, "holdout": False}]}})
    assert bv.status == "complete" and bv.rows() == [("a", False, 0.02, "not bad")]
    view.apply({"type": "end", "state": "complete"})
    assert view.state == "complete"
    assert fmt_eta(None) == "ETA —" and fmt_eta(42) == "ETA 42 s" and fmt_eta(600) == "ETA 10.0 min"


def test_progress_tail_reads_whole_lines_and_sees_a_new_file(tmp_path):
    d = jobs_dir(tmp_path)
    d.mkdir(parents=True)
    path = d / "progress.jsonl"
    tail = ProgressTail(tmp_path)
    assert tail.read() == (False, [])
    path.write_text('{"type": "job"}\n{"type": "blo')
    assert tail.read() == (False, [{"type": "job"}])
    with open(path, "a") as f:
        f.write('ck", "block": "A"}\nnot json\n')
    assert tail.read() == (False, [{"type": "block", "block": "A"}])
    path.unlink()
    path.write_text('{"type": "job", "n": 2}\n')
    reset, evs = tail.read()
    assert reset and evs == [{"type": "job", "n": 2}]


def test_lock_and_an_interrupted_job(tmp_path):
    assert running_job(tmp_path) is None and not lock_held(tmp_path)
    lock = JobLock(tmp_path)
    assert lock.acquire()
    try:
        assert lock_held(tmp_path)
        assert not JobLock(tmp_path).acquire()  # one job per project
        write_job(tmp_path, JobInfo(pid=os.getpid(), started=time.time(), blocks=["A"]))
        info = running_job(tmp_path)
        assert info is not None and info.alive and info.display_state == "running"
        with pytest.raises(JobRunning) as err:
            start_job(tmp_path)
        assert err.value.info.pid == os.getpid()
        assert "already running" in str(err.value)
    finally:
        lock.release()
    assert not lock_held(tmp_path)
    # job.json still says running, but nobody holds the lock: the process died (kill -9).
    info = read_job(tmp_path)
    assert info.interrupted and info.display_state == "interrupted"
    assert running_job(tmp_path) is None and cancel_job(tmp_path) is False


def test_add_chaos_settings_appends_and_keeps_existing_rows(project):
    block = project.rig.block(BLOCK)
    path = project.root / "Jobs Rig" / BLOCK / "02_Chaos_Mode" / "chaos_map.csv"
    before = path.read_bytes()
    added = project.add_chaos_settings(BLOCK, [{"Drive": 7.3, "Bright": 1.0}, {"Drive": 2.0}])
    after = path.read_bytes()
    assert after.startswith(before) and after != before
    assert [c.filename for c in added] == ["Chaos_Full_04.wav", "Chaos_Full_05.wav"]
    assert added[0].setting == {"Drive": 7.3, "Bright": 1.0, "Level": 5.0}
    assert added[1].setting["Bright"] == block.reference_setting()["Bright"]
    assert after.decode().splitlines()[-1] == "Chaos_Full_05.wav,2,5,5"
    with pytest.raises(Exception, match="outside"):
        project.add_chaos_settings(BLOCK, [{"Drive": 11.0}])
    with pytest.raises(Exception, match="no knob"):
        project.add_chaos_settings(BLOCK, [{"Gain": 1.0}])
    assert path.read_bytes() == after


def test_next_captures_are_new_in_range_and_near_the_worst(project):
    from unit_tui.suggest import suggest_captures

    block = project.rig.block(BLOCK)
    existing = [c.setting for c in project.plan().for_block(BLOCK)]
    items = [{"name": c.filename[:-4], "esr": 0.001, "holdout": False, "knobs": dict(c.setting)}
             for c in project.plan().for_block(BLOCK)]
    items[0]["esr"] = 0.3  # the worst: Drive 0
    sugg = suggest_captures(block, items, existing, n=4, seed=1)
    assert len(sugg) == 4
    assert sugg == suggest_captures(block, items, existing, n=4, seed=1)  # deterministic
    keys = {tuple(sorted(s.setting.items())) for s in sugg}
    assert len(keys) == 4 and not keys & {tuple(sorted(e.items())) for e in existing}
    for s in sugg:
        assert set(s.setting) == {"Drive", "Bright", "Level"} and s.setting["Level"] == 5
        assert 0 <= s.setting["Drive"] <= 10 and 0 <= s.setting["Bright"] <= 10
        assert round(s.setting["Drive"], 1) == s.setting["Drive"]
    assert "near " + items[0]["name"] in sugg[0].reason
    assert any(s.reason.startswith("coverage") for s in sugg)


def test_previews_never_overwrite_user_files(project):
    from unit_tui.previews import write_previews

    class HalfTwin:  # stands in for a FittedBlock: render() is all previews need
        def render(self, knobs, audio, sr):
            return 0.5 * np.asarray(audio, dtype=np.float32)

    folder = project.root / "previews" / BLOCK
    folder.mkdir(parents=True)
    mine = folder / "01_Pedal_Drive_0p0_AB.wav"
    mine.write_bytes(b"my own file")
    res = write_previews(project, BLOCK, HalfTwin())
    assert mine.read_bytes() == b"my own file"
    assert any("Drive_0p0" in s and "left alone" in s for s in res.skipped)
    assert len(res.written) == 2 * 8  # 9 captures, one skipped (both of its files)
    x = sf.read(project.input_path, dtype="float32")[0]
    twin, sr = sf.read(folder / "01_Pedal_Drive_5p0_twin.wav", dtype="float32")
    ab = sf.read(folder / "01_Pedal_Drive_5p0_AB.wav", dtype="float32")[0]
    cap = sf.read(next(project.path(c.relpath) for c in project.plan().captures
                       if c.filename == "01_Pedal_Drive_5p0.wav"), dtype="float32")[0]
    assert sr == SR and np.allclose(twin, 0.5 * x, atol=1e-6)
    assert ab.size == cap.size + SR // 2 + twin.size
    assert np.allclose(ab[: cap.size], cap, atol=1e-6) and np.allclose(ab[-twin.size:], twin)
    again = write_previews(project, BLOCK, HalfTwin())  # our own files may be replaced
    assert len(again.written) == 16
    os.utime(folder / "01_Pedal_Drive_5p0_twin.wav", ns=(1, 1))  # touched by the user: left alone
    assert any("Drive_5p0_twin" in s for s in write_previews(project, BLOCK, HalfTwin()).skipped)


def test_monitor_lines_prints_a_finished_job(project, capsys):
    from unit_tui.cli import main

    assert main(["monitor", str(project.root), "--lines", "--once"]) == 1
    assert "No training job" in capsys.readouterr().out
    d = jobs_dir(project.root)
    d.mkdir(parents=True, exist_ok=True)
    write_job(project.root, JobInfo(pid=999999, started=time.time(), blocks=[BLOCK], state="running"))
    (d / "progress.jsonl").write_text("\n".join(json.dumps(e) for e in [
        {"type": "job", "pid": 999999, "message": "Started."},
        {"type": "block", "block": BLOCK},
        {"type": "progress", "block": BLOCK, "stage": "joint", "step": 10, "total": 10, "train_esr": 0.02},
    ]) + "\n")
    assert main(["monitor", str(project.root), "--lines"]) == 0
    out = capsys.readouterr().out
    assert "job pid 999999" in out and "train ESR 0.0200" in out and "job interrupted" in out


async def test_line_plot_survives_repeated_renders_log_scales_and_flat_lines():
    from textual.app import App

    from unit_tui.widgets.plots import Figure, LinePlot, Series

    class PlotApp(App):
        def compose(self):
            yield LinePlot()

    app = PlotApp()
    async with app.run_test(size=(80, 17)) as pilot:
        plot = app.query_one(LinePlot)
        figures = [
            Figure("esr", [Series("train", [0.1, 0.2, 0.3], [0.5, 0.05, 0.005]),
                           Series("held-out", [0.2], [0.1])], yscale="log"),
            Figure("response", [Series("capture", [30.0, 300.0, 3000.0], [-3.0, 0.0, -6.0])], xscale="log"),
            Figure("flat", [Series("knob", [0.0, 5.0, 10.0], [2.0, 2.0, 2.0])]),
            Figure("empty", [Series("train", [], [])], yscale="log"),
        ]
        for fig in figures:
            plot.show(fig)
            for _ in range(4):  # plotext logs its data in place when it builds: render again and again
                plot.refresh()
                await pilot.pause(0.02)
                plot.render()
            assert plot.render_error is None, (fig.title, plot.render_error)
        assert plot.draws == len(figures)


# ---------------------------------------------------------------------------- slow: real jobs


@pytest.mark.slow
def test_a_detached_job_runs_to_the_end_and_a_second_start_is_refused(project):
    root = project.root
    info = start_job(root, minutes=0.3)
    assert info.alive and info.pid != os.getpid() and info.blocks == [BLOCK]
    assert os.getsid(info.pid) != os.getsid(0)  # its own session: closing the terminal does not stop it
    with pytest.raises(JobRunning) as err:
        start_job(root, minutes=0.3)
    assert err.value.info.pid == info.pid
    end = wait_job_end(root)
    assert end.state == "complete", (end, (jobs_dir(root) / "job.log").read_text())
    assert end.done_blocks == [BLOCK] and not end.resumed
    kinds = [e["type"] for e in events(root)]
    assert kinds[0] == "job" and kinds[1] == "block" and kinds[-2:] == ["result", "end"]
    prog = [e for e in events(root) if e["type"] == "progress"]
    assert {"latency", "per_capture"} <= {e["stage"] for e in prog}
    assert any("per_item" in e for e in prog)
    span = prog[-1]["t"] - prog[0]["t"]
    assert len(prog) <= 6 * span + 20  # throttled (about 5 a second plus stage changes)
    result = next(e for e in events(root) if e["type"] == "result")
    assert result["report"]["holdout"] is not None and len(result["report"]["items"]) == 9
    assert (root / ".unit" / "models" / f"{BLOCK}.twin.json").is_file()


@pytest.mark.slow
def test_kill_9_then_the_next_start_resumes_and_says_so_then_cancel(project):
    root = project.root
    ckpt = root / ".unit" / "jobs" / f"{BLOCK}.ckpt"
    info = start_job(root, minutes=5)
    wait_for_training(root, steps=2)
    wait_until(ckpt.exists, what="a checkpoint (written at each stage end)")
    os.kill(info.pid, signal.SIGKILL)
    dead = wait_until(lambda: (i := read_job(root)) is not None and not i.alive and i, what="the kill")
    assert dead.interrupted and dead.state == "running"

    again = start_job(root, minutes=5)
    assert again.resumed and again.pid != info.pid
    assert "stopped unexpectedly" in again.message and "Resumed from the last checkpoint" in again.message
    first_job = [e for e in events(root) if e["type"] == "job"]
    assert len(first_job) == 2 and first_job[1]["resumed"]  # appended: the graph continues
    wait_for_training(root, steps=len([e for e in events(root) if e.get("train_esr")]) + 1)
    assert cancel_job(root)
    end = wait_job_end(root)
    assert end.state == "cancelled", (jobs_dir(root) / "job.log").read_text()
    assert ckpt.is_file() and events(root)[-1]["type"] == "end"


def test_a_start_with_nothing_to_train_says_why(tmp_path):
    from unit_tui.jobs import JobError

    sf.write(tmp_path / "in.wav", make_input(), SR, subtype="PCM_24")
    empty = Project.create(tmp_path / "proj", RIG, input_wav=tmp_path / "in.wav")
    with pytest.raises(JobError, match="nothing to train yet"):
        start_job(empty.root, minutes=0.1)
    assert not lock_held(empty.root) and read_job(empty.root) is None


TWO_BLOCKS = RIG + """
[[blocks]]
id = "02_Amp"
topology = "amp"
  [[blocks.knobs]]
  name = "Gain"
  sweep = [0, 10]
"""


def test_resume_policy_of_run_training(tmp_path, monkeypatch):
    """Which blocks resume, which start afresh, which are skipped (training faked)."""
    import unit_tui.training as training
    from unit_tui.jobrunner import run_training

    sf.write(tmp_path / "in.wav", make_input(), SR, subtype="PCM_24")
    proj = Project.create(tmp_path / "proj", TWO_BLOCKS, input_wav=tmp_path / "in.wav")
    calls: list[tuple[str, bool]] = []
    crash = {"at": None}

    class Fitted:
        status = "complete"

        def report(self):
            return {"items": [], "train": None, "holdout": None}

    def fake_train(project, block_id, *, minutes=None, seed=0, fresh=False, on_progress=None, should_stop=None):
        calls.append((block_id, fresh))
        training.checkpoint_path(project, block_id).write_bytes(b"ckpt")
        if crash["at"] == block_id:
            raise RuntimeError("boom")
        return Fitted(), {"resumed": not fresh}

    monkeypatch.setattr(training, "train_block", fake_train)
    both = ["01_Pedal", "02_Amp"]

    info = run_training(proj, both)  # nothing before: fresh starts
    assert info.state == "complete" and calls == [("01_Pedal", True), ("02_Amp", True)]
    assert not info.resumed and info.done_blocks == both

    calls.clear()  # the last job completed both: train again afresh
    info = run_training(proj, both)
    assert calls == [("01_Pedal", True), ("02_Amp", True)] and not info.resumed

    calls.clear()  # the amp fails half-way: the next start skips the pedal and resumes the amp
    crash["at"] = "02_Amp"
    with pytest.raises(RuntimeError):
        run_training(proj, both)
    assert read_job(proj.root).state == "failed" and read_job(proj.root).done_blocks == ["01_Pedal"]
    crash["at"] = None
    calls.clear()
    info = run_training(proj, both)
    assert calls == [("02_Amp", False)] and info.resumed
    start = [e for e in events(proj.root) if e["type"] == "job"][-1]
    assert start["resumed"] and start["message"].startswith("The previous job failed. Resumed")
    assert "already trained: 01_Pedal" in start["message"]

    calls.clear()  # a job that died (job.json says running, nobody holds the lock)
    dead = read_job(proj.root)
    dead.state, dead.done_blocks = "running", []
    write_job(proj.root, dead)
    info = run_training(proj, both)
    assert calls == [("01_Pedal", False), ("02_Amp", False)]
    start = [e for e in events(proj.root) if e["type"] == "job"][-1]
    assert start["message"].startswith("The previous job (pid") and "stopped unexpectedly" in start["message"]

    calls.clear()  # fresh=False (the CLI's train): every checkpoint resumes
    info = run_training(proj, ["02_Amp"], fresh=False)
    assert calls == [("02_Amp", False)]


def test_demo_trains_unless_only_the_project_is_asked_for(monkeypatch, tmp_path):
    import unit_tui.app as app_mod
    import unit_tui.demo as demo
    from unit_tui.cli import main

    started, ran = [], []
    monkeypatch.setattr(demo, "make_demo", lambda root, log=print: root)
    monkeypatch.setattr(demo, "start_demo_training", lambda root, minutes, log=print: started.append(minutes) or True)
    monkeypatch.setattr(app_mod, "run_app", lambda root, **kw: ran.append(kw))
    assert main(["demo", str(tmp_path / "d"), "--no-tui"]) == 0
    assert started == [] and ran == []  # scripts and benchmarks: the project only
    assert main(["demo", str(tmp_path / "d"), "--no-tui", "--minutes", "2"]) == 0
    assert started == [2.0] and ran == []
    assert main(["demo", str(tmp_path / "d")]) == 0
    assert started[-1] == 1.5 and ran[-1]["start"] == "training" and ran[-1]["auto_results"]


def test_cli_train_refuses_while_a_job_runs(project, capsys):
    from unit_tui.cli import main

    lock = JobLock(project.root)
    assert lock.acquire()
    try:
        assert main(["train", str(project.root), "--minutes", "0.1"]) == 2
        err = capsys.readouterr().err
        assert "already running" in err and "unit-trainer monitor" in err
    finally:
        lock.release()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))

"""The training and results screens, driven with Pilot against real jobs on a tiny rig.

80×24 throughout (the smallest terminal we promise). The training job is the real
detached process; the screens only read what it writes.
"""
from __future__ import annotations

import os
import time

import pytest

from unit_tui.app import create_app
from unit_tui.jobrunner import run_training
from unit_tui.jobs import jobs_dir, read_job, running_job
from unit_tui.screens.checklist import ChecklistScreen
from unit_tui.screens.results import NextCapturesScreen, ResultsScreen
from unit_tui.screens.training import TrainingScreen

from conftest import copy_project
from test_jobs import BLOCK, wait_job_end
from test_tui import wait_for

pytestmark = pytest.mark.slow
SIZE = (80, 24)
JOB_WAIT_S = 120.0


def notes(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


def rows_of(screen: TrainingScreen) -> list:
    return screen.table_rows()


@pytest.fixture(scope="module")
def trained_root(rendered_project, tmp_path_factory):
    """A project whose block was trained (in this process, short budget)."""
    project = copy_project(rendered_project, tmp_path_factory.mktemp("trained") / "proj")
    info = run_training(project, minutes=0.3)
    assert info.state == "complete"
    return project.root


async def test_train_watch_attach_from_a_second_app_and_cancel(rendered_project, tmp_path):
    project = copy_project(rendered_project, tmp_path / "proj")
    root = project.root
    app = create_app(root, start="training", train_minutes=5)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen))
            screen = app.screen
            await wait_for(pilot, lambda: screen.updates >= 1)
            assert "No training job yet" in screen.job_line()
            await pilot.press("s")
            await wait_for(pilot, lambda: screen.info is not None and screen.info.alive, timeout=30)
            assert "Job running" in screen.job_line()
            # The plot and the table follow the job.
            await wait_for(pilot, lambda: screen.plot.figure.points >= 3 and len(rows_of(screen)) >= 5,
                           timeout=JOB_WAIT_S)
            draws = screen.plot.draws
            esrs = [r[2] for r in rows_of(screen) if r[2] is not None]
            assert esrs == sorted(esrs, reverse=True)  # worst first
            assert {r[3] for r in rows_of(screen)} <= {"great", "not bad", "may sound OK", "poor", "—"}
            await wait_for(pilot, lambda: screen.plot.draws > draws, timeout=JOB_WAIT_S)
            assert screen.plot.figure.yscale == "log"
            screen.plot.render()
            assert screen.plot.render_error is None
            assert screen.plot.region.height >= 6 and screen.query_one("#esr-table").region.height >= 3
            assert screen.stage_line().startswith(BLOCK)
            await pilot.press("q")  # quitting the app does not stop the job
        assert running_job(root) is not None

        second = create_app(root, start="training")
        async with second.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(second.screen, TrainingScreen))
            screen = second.screen
            await wait_for(pilot, lambda: screen.info is not None and screen.view.events > 3, timeout=10)
            assert screen.info.alive and len(rows_of(screen)) >= 5  # attached: sees the progress so far
            seen = screen.view.events
            await wait_for(pilot, lambda: screen.view.events > seen, timeout=JOB_WAIT_S)
            await pilot.press("s")  # a second start says a job is running
            await wait_for(pilot, lambda: any("already running" in n for n in notes(second)))
            await pilot.press("x")
            await pilot.pause(0.1)
            assert read_job(root).alive  # one x only arms the cancel
            await pilot.press("x")
            await wait_for(pilot, lambda: screen.info is not None and screen.info.state == "cancelled",
                           timeout=JOB_WAIT_S)
            assert "cancelled" in screen.job_line()
            await wait_for(pilot, lambda: any("Cancelled" in n for n in notes(second)))
        end = wait_job_end(root)
        assert end.state == "cancelled"
        assert (jobs_dir(root) / f"{BLOCK}.ckpt").is_file()
    finally:
        info = running_job(root)
        if info is not None and info.pid:  # never leave a job behind
            import os
            import signal

            os.kill(info.pid, signal.SIGKILL)


async def test_checklist_key_opens_training_on_a_finished_job_and_results(trained_root):
    app = create_app(trained_root)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ChecklistScreen))
        await pilot.press("T")
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.view.state == "complete")
        assert "Job complete" in screen.job_line()
        rows = rows_of(screen)
        assert len(rows) == 9 and sum(r[1] for r in rows) == 1  # one held-out capture
        assert "done" in screen.stage_line()
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ChecklistScreen))


async def test_results_curves_response_previews_and_next_captures(trained_root):
    chaos_map = next(trained_root.rglob("chaos_map.csv"))
    before = chaos_map.read_bytes()
    app = create_app(trained_root, start="results")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.model is not None, timeout=30)
        assert "never trained on" in screen.summary_text()
        # Knob curves: Drive first, then Bright.
        assert screen.plot.figure.title.startswith("Drive → ")
        assert len(screen.plot.figure.series[0].xs) == 21
        await pilot.press("k")
        assert screen.plot.figure.title.startswith("Bright → ")
        # Frequency response at the worst capture: twin vs capture.
        await pilot.press("f")
        await wait_for(pilot, lambda: screen.response is not None, timeout=30)
        labels = [s.label for s in screen.plot.figure.series]
        assert labels == ["capture", "twin"] and screen.plot.figure.xscale == "log"
        assert len(screen.plot.figure.series[0].xs) > 20
        screen.plot.render()
        assert screen.plot.render_error is None
        # Previews, written by a worker.
        await pilot.press("p")
        await wait_for(pilot, lambda: screen.last_previews is not None, timeout=60)
        written, skipped = screen.last_previews
        assert len(written) == 18 and not skipped
        assert (trained_root / "previews" / BLOCK / "Chaos_Full_03_AB.wav").is_file()
        # Next captures: proposals, accepted into the chaos map.
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NextCapturesScreen), timeout=10)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen))
    after = chaos_map.read_bytes()
    assert after.startswith(before)
    new_rows = after[len(before):].decode().splitlines()
    assert [r.split(",")[0] for r in new_rows] == [f"Chaos_Full_0{i}.wav" for i in range(4, 8)]


async def test_demo_style_start_opens_results_when_the_job_completes(rendered_project, tmp_path):
    from unit_tui.jobs import start_job

    project = copy_project(rendered_project, tmp_path / "proj")
    start_job(project.root, minutes=0.25)
    app = create_app(project.root, start="training", auto_results=True)
    started = time.monotonic()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ResultsScreen), timeout=JOB_WAIT_S)
        await wait_for(pilot, lambda: app.screen.model is not None, timeout=30)
    assert time.monotonic() - started < JOB_WAIT_S
    assert read_job(project.root).state == "complete"


async def test_a_long_steps_detail_shows_under_the_stage_line(rendered_project, tmp_path):
    """The init's descent and knob searches run for minutes inside one step (the band
    chain): their progress events carry a ``detail``, which the recorder writes and the
    training screen, tailing the job's progress file, shows on the stage line's second
    line as plain text (a user's knob name with brackets is not markup); the next event
    without one clears it."""
    from types import SimpleNamespace

    from unit_tui.jobrunner import PROGRESS_MIN_INTERVAL_S, Recorder
    from unit_tui.jobs import JobInfo

    project = copy_project(rendered_project, tmp_path / "proj")
    rec = Recorder(project.root, JobInfo(pid=os.getpid(), started=time.time(), blocks=[BLOCK]), append=False)
    rec.start()
    rec.block_start(BLOCK, [], False)
    detail = "which controls Tone [x] drives (1 of 3): tonestack_treble, search 4"
    ev = dict(stage="init", step=0, total=9, loss=None, train_esr=None, holdout_esr=None, eta_s=None,
              elapsed_s=3.0, per_item_esr={})
    rec.progress(SimpleNamespace(**ev, detail=detail))

    def stage_lines():
        return str(app.screen.query_one("#job-stage").render()).splitlines()

    app = create_app(project.root, start="training")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, TrainingScreen))
        await wait_for(pilot, lambda: len(stage_lines()) == 2)
        first, second = stage_lines()
        assert first.startswith(f"{BLOCK}: init 0/9") and second == detail
        time.sleep(PROGRESS_MIN_INTERVAL_S + 0.05)
        rec.progress(SimpleNamespace(**dict(ev, step=1), detail=""))
        await wait_for(pilot, lambda: len(stage_lines()) == 1)
        assert stage_lines()[0].startswith(f"{BLOCK}: init 1/9")
        # the block's result: its held-out figures, the guitar phrases' too
        report = {"train": {"median": 0.02}, "holdout": {"median": 0.031},
                  "holdout_guitar": {"median": 0.0123, "worst": 0.02}}
        rec.block_done(BLOCK, "complete", report)
        await wait_for(pilot, lambda: "done" in stage_lines()[0])
        assert stage_lines() == [f"{BLOCK}: done (complete) · train ESR 0.0200 · held-out ESR 0.0310"
                                 " · on the guitar 0.0123"]

"""The real app in an 80×24 tmux terminal trains a tiny project end to end.

``unit-trainer tui DIR`` → ``T`` (training screen) → ``-`` to a 30 s budget → ``s``
starts the detached job → the screen shows it running, then complete → ``r`` opens the
results → ``q`` quits; the job's files say complete and the model exists.
"""
from __future__ import annotations

import shutil

import pytest

from unit_tui.jobs import read_job

from conftest import TINY_BLOCK as BLOCK, copy_project

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def test_train_in_a_real_terminal_end_to_end(tmp_path, rendered_project, tmux):
    project = copy_project(rendered_project, tmp_path / "proj")
    tmux.start_tui(project.root, 80, 24)
    tmux.wait_for("9/9 ready", timeout=15)
    tmux.keys("T")
    tmux.wait_for("No training job yet", timeout=10)
    for _ in range(4):  # 10 -> 5 -> 2 -> 1 -> 0.5 min
        tmux.keys("-")
    tmux.wait_for("(0.5 min budget", timeout=5)
    tmux.keys("s")
    tmux.wait_for("Job running", timeout=30)
    tmux.wait_for("per_capture", timeout=90)  # the stage line
    screen = tmux.screen()
    assert "ESR" in screen and "verdict" in screen, screen  # the table header at 80×24
    tmux.wait_for("Job complete", timeout=120)
    tmux.wait_for("held-out", timeout=10)
    tmux.keys("r")
    tmux.wait_for("fitted in", timeout=30)
    tmux.wait_for("Drive →", timeout=10)  # the first knob curve's title
    tmux.quit_app()
    tmux.kill()
    info = read_job(project.root)
    assert info.state == "complete" and info.done_blocks == [BLOCK]
    assert (project.root / ".unit" / "models" / f"{BLOCK}.twin.json").is_file()

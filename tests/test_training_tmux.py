"""The real app in an 80×24 tmux terminal trains a tiny project end to end.

``unit-trainer tui DIR`` → ``T`` (training screen) → ``-`` to a 30 s budget → ``s``
starts the detached job → the screen shows it running, then complete → ``r`` opens the
results → ``q`` quits; the job's files say complete and the model exists.
"""
from __future__ import annotations

import os
import shutil
import sys
import time

import pytest

from unit_tui.jobs import read_job

from test_jobs import BLOCK, copy_project, rendered_project  # noqa: F401 (fixture)
from test_tui_tmux import REPO, Tmux, _q

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def test_train_in_a_real_terminal_end_to_end(tmp_path, rendered_project):  # noqa: F811
    project = copy_project(rendered_project, tmp_path / "proj")
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE", "SSH_CONNECTION", "SSH_TTY")}
    env.update({
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "UNIT_TRAINER_NO_SYSTEM_CLIPBOARD": "1",
        "TERM": "xterm-256color",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    })
    tmux = Tmux(tmp_path, env)
    command = f"cd {_q(REPO)} && exec {_q(sys.executable)} -m unit_tui.cli tui {_q(project.root)}"
    try:
        tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", "ui", command)
        tmux.wait_for("9/9 ready", timeout=15)
        tmux("send-keys", "-t", "ui", "T")
        tmux.wait_for("No training job yet", timeout=10)
        for _ in range(4):  # 10 -> 5 -> 2 -> 1 -> 0.5 min
            tmux("send-keys", "-t", "ui", "-")
        tmux.wait_for("(0.5 min budget", timeout=5)
        tmux("send-keys", "-t", "ui", "s")
        tmux.wait_for("Job running", timeout=30)
        tmux.wait_for("per_capture", timeout=90)  # the stage line
        screen = tmux.screen()
        assert "ESR" in screen and "verdict" in screen, screen  # the table header at 80×24
        tmux.wait_for("Job complete", timeout=120)
        tmux.wait_for("held-out", timeout=10)
        tmux("send-keys", "-t", "ui", "r")
        tmux.wait_for("fitted in", timeout=30)
        tmux.wait_for("Drive →", timeout=10)  # the first knob curve's title
        tmux("send-keys", "-t", "ui", "q")
        deadline = time.monotonic() + 8
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not tmux.alive(), "the app did not quit on q"
    finally:
        tmux.kill()
    info = read_job(project.root)
    assert info.state == "complete" and info.done_blocks == [BLOCK]
    assert (project.root / ".unit" / "models" / f"{BLOCK}.twin.json").is_file()

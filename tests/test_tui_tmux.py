"""The real app in a real terminal: tmux runs ``unit-trainer tui DIR``; the test types
keys with ``send-keys`` and reads the screen with ``capture-pane``.

It checks what Pilot cannot: the CLI entry point, the first frame in a real terminal,
OSC 52 reaching the terminal (tmux with ``set-clipboard on`` keeps what the app copied
as its paste buffer), the watcher thread in a separate process, and a clean quit.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from unit_tui.project import Project

from test_tui import FIRST, SR, TINY_RIG, make_input

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

REPO = Path(__file__).resolve().parents[1]
FIRST_FRAME_S = 10.0  # bound for the test; the product target (0.5 s) is reported, not asserted


class Tmux:
    """A private tmux server (its own socket) running one session."""

    def __init__(self, tmp_path: Path, env: dict[str, str]):
        self.socket = f"unit-trainer-test-{os.getpid()}-{tmp_path.name}"
        self.env = env

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], env=self.env,
                              capture_output=True, text=True, timeout=20, check=check)

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "ui").stdout

    def wait_for(self, text: str, timeout: float = 8.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if text in self.screen():
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not on screen within {timeout} s; screen:\n{self.screen()}")

    def alive(self) -> bool:
        return self("has-session", "-t", "ui", check=False).returncode == 0

    def kill(self) -> None:
        self("kill-server", check=False)


@pytest.fixture
def project(tmp_path) -> Project:
    src = tmp_path / "input_src.wav"
    sf.write(str(src), make_input(), SR, subtype="PCM_24")
    return Project.create(tmp_path / "proj", TINY_RIG, source="test rig", input_wav=src)


def test_real_app_in_tmux(tmp_path, project):
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
        started = time.monotonic()
        tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", "ui", command)
        tmux("set-option", "-g", "set-clipboard", "on")
        first_frame = tmux.wait_for("0/7 ready", timeout=FIRST_FRAME_S)
        print(f"first frame with progress header after {first_frame:.2f} s (tmux start {time.monotonic() - started:.2f} s)")
        rows = tmux.wait_for(FIRST, timeout=FIRST_FRAME_S)  # the rows follow the header
        print(f"table rows on screen after {rows:.2f} s")

        # c: the name on screen and, through OSC 52, on tmux's clipboard.
        tmux("send-keys", "-t", "ui", "c")
        tmux.wait_for(f"Copied: {FIRST}")
        deadline = time.monotonic() + 5
        buffer = ""
        while time.monotonic() < deadline:
            buffer = tmux("show-buffer", check=False).stdout
            if buffer == FIRST:
                break
            time.sleep(0.05)
        assert buffer == FIRST, f"tmux buffer holds {buffer!r}"

        # A bounce lands: its row turns ready with no key pressed.
        x = sf.read(str(project.input_path), dtype="float32")[0]
        path = next(project.path(c.relpath) for c in project.plan().captures if c.filename == FIRST)
        sf.write(str(path), np.tanh(3.0 * x) * 0.7, SR, subtype="PCM_24")
        wrote = time.monotonic()
        tmux.wait_for("1/7 ready", timeout=8)
        print(f"row ready {time.monotonic() - wrote:.2f} s after the file was written")
        line = next(ln for ln in tmux.screen().splitlines() if FIRST in ln and "Copied" not in ln and "→" not in ln)
        assert "ready" in line, line

        # q: the app quits and the session ends.
        tmux("send-keys", "-t", "ui", "q")
        deadline = time.monotonic() + 8
        while tmux.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not tmux.alive(), "the app did not quit on q"
    finally:
        tmux.kill()


def _q(value) -> str:
    import shlex

    return shlex.quote(str(value))

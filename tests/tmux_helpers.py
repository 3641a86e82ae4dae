"""Driving the real app in a real terminal: a private tmux server runs ``unit-trainer tui
DIR``; a test types keys with ``send-keys`` and reads the screen with ``capture-pane``.

Used by tests/test_tui_tmux.py and tests/test_training_tmux.py, through the ``tmux``
fixture (tests/conftest.py), which kills the server when the test ends.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def q(value) -> str:
    """``value`` quoted for a shell command line."""
    return shlex.quote(str(value))


def app_env(tmp_path: Path) -> dict[str, str]:
    """This process's environment for the app: outside any outer tmux or ssh session, its
    config under ``tmp_path``, no system clipboard, a 256-colour terminal, the repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE", "SSH_CONNECTION", "SSH_TTY")}
    env.update({
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "UNIT_TRAINER_NO_SYSTEM_CLIPBOARD": "1",
        "TERM": "xterm-256color",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    })
    return env


class Tmux:
    """A private tmux server (its own socket) running one session, ``ui``."""

    def __init__(self, tmp_path: Path, env: dict[str, str] | None = None):
        self.socket = f"unit-trainer-test-{os.getpid()}-{tmp_path.name}"
        self.env = app_env(tmp_path) if env is None else env

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], env=self.env,
                              capture_output=True, text=True, timeout=20, check=check)

    def start_tui(self, project_root: Path, width: int, height: int) -> None:
        """Session ``ui`` (``width``×``height``) running ``unit-trainer tui project_root``."""
        command = f"cd {q(REPO)} && exec {q(sys.executable)} -m unit_tui.cli tui {q(project_root)}"
        self("new-session", "-d", "-x", str(width), "-y", str(height), "-s", "ui", command)

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "ui", *keys)

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

    def quit_app(self, timeout: float = 8.0) -> None:
        """``q``: the app quits and the session ends within ``timeout`` s."""
        self.keys("q")
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not self.alive(), "the app did not quit on q"

    def kill(self) -> None:
        self("kill-server", check=False)

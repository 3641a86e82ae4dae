"""The real app in a real terminal: tmux runs ``unit-trainer tui DIR``; the test types
keys with ``send-keys`` and reads the screen with ``capture-pane`` (tests/tmux_helpers.py,
the ``tmux`` fixture in tests/conftest.py).

It checks what Pilot cannot: the CLI entry point, the first frame in a real terminal,
OSC 52 reaching the terminal (tmux with ``set-clipboard on`` keeps what the app copied
as its paste buffer), the watcher thread in a separate process, and a clean quit.
"""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import soundfile as sf

from unit_tui.project import Project

from test_tui import FIRST, SR, TINY_RIG, make_input

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

FIRST_FRAME_S = 10.0  # bound for the test; the product target (0.5 s) is reported, not asserted


@pytest.fixture
def project(tmp_path) -> Project:
    src = tmp_path / "input_src.wav"
    sf.write(str(src), make_input(), SR, subtype="PCM_24")
    return Project.create(tmp_path / "proj", TINY_RIG, source="test rig", input_wav=src)


def test_real_app_in_tmux(tmux, project):
    started = time.monotonic()
    tmux.start_tui(project.root, 120, 40)
    tmux("set-option", "-g", "set-clipboard", "on")
    first_frame = tmux.wait_for("0/7 ready", timeout=FIRST_FRAME_S)
    print(f"first frame with progress header after {first_frame:.2f} s (tmux start {time.monotonic() - started:.2f} s)")
    rows = tmux.wait_for(FIRST, timeout=FIRST_FRAME_S)  # the rows follow the header
    print(f"table rows on screen after {rows:.2f} s")

    # c: the name on screen and, through OSC 52, on tmux's clipboard.
    tmux.keys("c")
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
    tmux.quit_app()

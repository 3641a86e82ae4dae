"""``unit-trainer demo``: a complete project that needs no Logic and no hardware.

The UNIT 1 rig with a short generated test signal (so the demo stays small: about
100 MB) and 12 amp chaos presets instead of 50. The built-in virtual rig
(:mod:`unit_tui.virtual_rig`) renders every capture but the last few chaos presets,
so the checklist opens part-way through, as it would mid-session. Then a short training
starts as the project's background job (:func:`start_demo_training`): the TUI opens on
the training screen and shows the results when it completes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

DEMO_SIGNAL_SECONDS = 32.0
DEMO_AMP_CHAOS = 12
DEMO_LEFT_MISSING = 4


def demo_rig_text() -> str:
    import tomllib

    from .project import _dumps
    from .rig import template_text

    data = tomllib.loads(template_text("unit1"))
    data["project"] = "UNIT 1 - Demo"
    for block in data["blocks"]:
        if block["topology"] == "amp":
            block["chaos_count"] = DEMO_AMP_CHAOS
    return _dumps(data)


def virtual_renderer(project, capture, output: Path) -> None:
    from .audio_io import write_wav_atomic
    from .virtual_rig import render_block

    loaded = project.load_input()
    y = render_block(capture.block_id, loaded.audio, loaded.sample_rate, capture.setting)
    write_wav_atomic(output, y, loaded.sample_rate, subtype="PCM_24")


def make_demo(root: Path, log: Callable[[str], None] = print, left_missing: int = DEMO_LEFT_MISSING) -> Path:
    """Create (or reuse) the demo project at ``root`` and render its captures."""
    from .capture import missing_captures, run_captures
    from .project import Project, RIG_FILE

    root = Path(root)
    if (root / RIG_FILE).is_file():
        project = Project.open(root)
        log(f"Using the existing demo project {root}")
    else:
        project = Project.create(root, demo_rig_text(), source="demo rig", signal_seconds=DEMO_SIGNAL_SECONDS)
        log(f"Created demo project {root}")
    todo = missing_captures(project)
    todo = todo[: max(0, len(todo) - left_missing)] if len(todo) > left_missing else []
    if todo:
        log(f"Rendering {len(todo)} captures through the virtual rig...")

        def progress(i, n, outcome):
            if i % 10 == 0 or i == n:
                log(f"  {i}/{n}")

        run_captures(project, todo, virtual_renderer, progress)
    return root


def start_demo_training(root: Path, minutes: float, log: Callable[[str], None] = print) -> bool:
    """Start the demo's training as a background job (or attach to one that runs)."""
    from .jobs import JobError, JobRunning, start_job

    try:
        info = start_job(root, minutes=minutes)
    except JobRunning as exc:
        log(f"{exc} Watching it.")
        return True
    except JobError as exc:
        log(f"Could not start the demo training: {exc}")
        return False
    log(f"Training in the background for about {minutes:g} min (pid {info.pid}); {info.message}")
    return True

"""``unit-trainer demo``: a complete project that needs no Logic and no hardware.

The UNIT 1 rig with a short generated test signal (so the demo stays small: about
100 MB) and 12 amp chaos presets instead of 50. The built-in virtual rig
(:mod:`unit_tui.virtual_rig`) renders every capture but the last few chaos presets,
so the checklist opens part-way through, as it would mid-session.
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

"""Messages between the app's threads and widgets.

Workers and the file watcher run off the UI thread; they never touch widgets. They
report through these messages (``post_message`` is thread-safe) and the screen that
owns them reacts on the UI thread. Frequent messages override ``can_replace`` so a
flood of them collapses into one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from textual.message import Message

from .plan import Plan
from .project import Project, ProjectStatus


@dataclass
class FilesChanged(Message, bubble=False):
    """Something changed under the watched project folder (sent by the watcher thread).

    ``paths`` are the paths of the events collapsed into this message (best effort:
    when messages are replaced, only the newest event's paths remain).
    """

    paths: tuple[str, ...] = ()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FilesChanged)


@dataclass
class WatchFailed(Message, bubble=False):
    """The file watcher could not start or stopped; the screen falls back to polling."""

    error: str


@dataclass
class PlanReady(Message, bubble=False):
    """The capture plan was (re)read; ``present`` are the capture files on disk."""

    plan: Plan
    present: frozenset[str] = field(default_factory=frozenset)
    minutes_per_capture: float = 1.25


@dataclass
class ScanProgress(Message, bubble=False):
    """Results of the first, file-by-file pass over a project (newest files first).

    ``results`` maps relative paths to their :class:`~unit_tui.checks.CheckResult`;
    ``done`` of ``total`` files on disk are checked so far.
    """

    results: dict
    done: int
    total: int


@dataclass
class ScanFinished(Message, bubble=False):
    """A scan of the project finished: the status of every capture and extra file."""

    status: ProjectStatus
    minutes_per_capture: float

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ScanFinished)


@dataclass
class ScanFailed(Message, bubble=False):
    """A scan could not run (e.g. input.wav missing or a chaos map hand-edited badly)."""

    error: str


@dataclass
class ProjectReloaded(Message, bubble=False):
    """``rig.toml`` changed on disk and still reads: the checklist switches to ``project``.

    Files that no longer belong to the plan then show as extra; none is touched.
    """

    project: Project


@dataclass
class ClipboardResult(Message, bubble=False):
    """What happened when a file name was sent to the system clipboard (pyperclip)."""

    text: str
    system: bool
    detail: str = ""


__all__ = [
    "ClipboardResult", "FilesChanged", "PlanReady", "ProjectReloaded", "ScanFailed", "ScanFinished", "ScanProgress", "WatchFailed",
]

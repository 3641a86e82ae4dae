"""The progress header: "37/106 ready — about 69 min of bouncing left"."""
from __future__ import annotations

import math

from textual.content import Content
from textual.events import Resize
from textual.widgets import Static

BAR_WIDTH = 12


def progress_text(ready: int, total: int, left: int, minutes_per_capture: float) -> str:
    """The header's words, e.g. '37/106 ready — about 69 min of bouncing left'."""
    if total == 0:
        return "no captures planned"
    if left == 0:
        return f"{ready}/{total} ready — every capture is bounced"
    minutes = max(1, math.ceil(left * minutes_per_capture))
    if minutes >= 120:
        when = f"about {minutes // 60} h {minutes % 60:02d} min"
    else:
        when = f"about {minutes} min"
    return f"{ready}/{total} ready — {when} of bouncing left"


def bar(fraction: float, width: int) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "█" * filled + "░" * (width - filled)


class ProgressHeader(Static):
    """One line: project name, a bar and the progress words. When the terminal is
    narrow the bar goes first, then the project name, so the words always show."""

    DEFAULT_CSS = """
    ProgressHeader { height: 1; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._parts: tuple[str, str, float | None, str, bool] | None = None

    def show_progress(self, project: str, ready: int, total: int, left: int, minutes_per_capture: float,
                      writing: int = 0, checking: tuple[int, int] | None = None) -> None:
        words = progress_text(ready, total, left, minutes_per_capture)
        extra = f" · {writing} being written" if writing else ""
        if checking is not None and checking[0] < checking[1]:
            extra += f" · checking files {checking[0]}/{checking[1]}…"
        self._parts = (project, words, ready / total if total else 0.0, extra, False)
        self._render_parts()

    def show_message(self, project: str, message: str, error: bool = False) -> None:
        self._parts = (project, message, None, "", error)
        self._render_parts()

    def on_resize(self, _event: Resize) -> None:
        self._render_parts()

    def _render_parts(self) -> None:
        if self._parts is None:
            return
        project, words, fraction, extra, error = self._parts
        width = self.size.width or 10_000
        show_bar = fraction is not None and len(project) + len(words) + BAR_WIDTH + 4 <= width
        show_project = len(project) + len(words) + 2 <= width
        style = "b $error" if error else ("b" if fraction is not None else "dim")
        markup = ""
        if show_project:
            markup += "[b $accent]$project[/]  "
        if show_bar:
            markup += "[$status-ready]$bar[/]  "
        markup += f"[{style}]$words[/]$extra"
        self.update(Content.from_markup(
            markup, project=project, bar=bar(fraction or 0.0, BAR_WIDTH), words=words, extra=extra))


__all__ = ["ProgressHeader", "bar", "progress_text"]

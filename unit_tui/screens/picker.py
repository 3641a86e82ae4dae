"""`unit-trainer` alone: pick a recent project or start a new one.

Recent projects are kept in ``$XDG_CONFIG_HOME/unit-trainer/recent.json`` (default
``~/.config/unit-trainer/recent.json``), written atomically; a damaged file is
ignored (and rewritten on the next open), never a crash.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from ..fsutil import atomic_write_bytes
from ..project import RIG_FILE

RECENT_LIMIT = 20
NEW_ID = "__new__"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".config") / "unit-trainer"


def recent_path() -> Path:
    return config_dir() / "recent.json"


def load_recent() -> list[Path]:
    """Recent project folders, most recent first (a missing or damaged file: none)."""
    try:
        data = json.loads(recent_path().read_text("utf-8"))
        entries = data.get("projects", []) if isinstance(data, dict) else []
        return [Path(e["path"]) for e in entries if isinstance(e, dict) and isinstance(e.get("path"), str)]
    except (OSError, ValueError):
        return []


def _write_recent(paths: list[Path]) -> None:
    path = recent_path()
    data = {"version": 1, "projects": [{"path": str(p), "opened": time.time()} for p in paths[:RECENT_LIMIT]]}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(data, indent=1).encode("utf-8"))


def remember_project(root: Path) -> None:
    """Put ``root`` first in the recent list (best effort: a read-only home is no error)."""
    root = Path(root).expanduser().resolve()
    paths = [root, *(p for p in load_recent() if p != root)]
    try:
        _write_recent(paths)
    except OSError:
        pass


def forget_project(root: Path) -> None:
    try:
        _write_recent([p for p in load_recent() if p != Path(root)])
    except OSError:
        pass


class PickerScreen(Screen[Path | None]):
    """Choose a project: recent ones, a typed folder, or a new one."""

    BINDINGS = [
        Binding("n", "new", "New project"),
        Binding("x", "forget", "Forget"),
        Binding("escape", "cancel", "Back"),
    ]

    def __init__(self, can_cancel: bool = False, error: str | None = None) -> None:
        super().__init__()
        self.can_cancel = can_cancel
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Static(Content.from_markup("[b $accent]UNIT Trainer[/] — open a project or start a new one"),
                         id="picker-title")
            yield OptionList(id="projects")
            yield Input(placeholder="…or type a project folder and press Enter", id="open-path")
            yield Static(id="picker-error")
        yield Footer()

    def on_mount(self) -> None:
        self._fill()
        if self.error:
            self.show_error(self.error)
        self.query_one("#projects", OptionList).focus()

    def _fill(self) -> None:
        options = self.query_one("#projects", OptionList)
        options.clear_options()
        options.add_option(Option(Content.from_markup("[b $accent]+ New project…[/]"), id=NEW_ID))
        for path in load_recent():
            ok = (path / RIG_FILE).is_file()
            prompt = Content.from_markup(
                "[b]$name[/]  [dim]$parent[/]" + ("" if ok else "  [$error](not found)[/]"),
                name=path.name, parent=str(path.parent),
            )
            options.add_option(Option(prompt, id=str(path)))
        options.highlighted = 1 if options.option_count > 1 else 0

    def show_error(self, message: str) -> None:
        self.query_one("#picker-error", Static).update(Content.styled(message, "$error"))

    @on(OptionList.OptionSelected, "#projects")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == NEW_ID:
            self.action_new()
        elif event.option.id:
            self._open(Path(event.option.id))

    @on(Input.Submitted, "#open-path")
    def _typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self._open(Path(event.value.strip()).expanduser())

    def _open(self, path: Path) -> None:
        error = self.app.check_project(path)
        if error:
            self.show_error(error)
            return
        self.dismiss(path)

    def action_new(self) -> None:
        from .setup import SetupScreen

        def created(path: Path | None) -> None:
            if path is not None:
                self.dismiss(path)

        self.app.push_screen(SetupScreen(), created)

    def action_forget(self) -> None:
        options = self.query_one("#projects", OptionList)
        if options.highlighted is None:
            return
        option = options.get_option_at_index(options.highlighted)
        if option.id and option.id != NEW_ID:
            forget_project(Path(option.id))
            self._fill()

    def action_cancel(self) -> None:
        if self.can_cancel:
            self.dismiss(None)


__all__ = ["PickerScreen", "forget_project", "load_recent", "recent_path", "remember_project"]

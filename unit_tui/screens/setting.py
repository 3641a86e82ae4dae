"""A modal with the full knob setting of one capture (``enter`` / ``d`` on the checklist)."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from ..plan import Capture
from ..project import CaptureState
from ..rig import Rig
from ..widgets.detail import STATUS_WORDS, setting_items


class SettingScreen(ModalScreen[None]):
    """Every knob of the capture with its value: what to dial in before bouncing."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("d", "close", "Close", show=False),
        Binding("enter", "close", "Close", show=False),
        Binding("c", "copy", "Copy name"),
    ]

    def __init__(self, rig: Rig, state: CaptureState | None, capture: Capture | None, status: str) -> None:
        super().__init__()
        self.rig = rig
        self.state = state
        self.capture = capture
        self.status = status

    def compose(self) -> ComposeResult:
        with Vertical(id="setting-dialog"):
            yield Static(id="setting-title")
            yield Static(id="setting-status")
            yield VerticalScroll(Static(id="setting-table"), id="setting-scroll")

    def on_mount(self) -> None:
        dialog = self.query_one("#setting-dialog")
        dialog.border_subtitle = "esc close · c copy the name"
        title = self.query_one("#setting-title", Static)
        table = self.query_one("#setting-table", Static)
        status = self.query_one("#setting-status", Static)
        if self.capture is None:
            relpath = self.state.relpath if self.state else ""
            folder, _, name = relpath.rpartition("/")
            dialog.border_title = "Extra file"
            title.update(Content.from_markup("[b]$name[/]\n[dim]in[/] $folder/", name=name, folder=folder))
            self.query_one("#setting-scroll").display = False
            status.update(Content.from_markup("[b $status-extra]extra:[/] $reason",
                                              reason=self.state.reason if self.state else ""))
            return
        cap = self.capture
        block = next((b for b in self.rig.blocks if b.id == cap.block_id), None)
        dialog.border_title = f"{block.name if block and block.name else cap.block_id} — {cap.label}"
        title.update(Content.from_markup("[b]$file[/]\n[dim]→[/] $folder/", file=cap.filename, folder=cap.folder))
        items = setting_items(cap, block)
        width = max((len(n) for n, _, _ in items), default=4) + 2
        lines = []
        for name, value, kind in items:
            padded, val = name.ljust(width), value.rjust(5)
            if kind == "moved":
                note = "◀ set this" if cap.kind == "sweep" else ""
                lines.append(Content.from_markup("[b $setting-moved]$n$v  $note[/]", n=padded, v=val, note=note))
            elif kind == "fixed":
                lines.append(Content.from_markup("[$setting-fixed]$n$v  fixed (not modelled)[/]", n=padded, v=val))
            else:
                lines.append(Content.from_markup("$n$v  [dim]reference[/]", n=padded, v=val))
        table.update(Content("\n").join(lines))
        word = STATUS_WORDS.get(self.status, self.status)
        line = Content.from_markup(f"[b $status-{self.status}]$w[/]", w=word)
        if self.state is not None and self.state.result.problems:
            line = Content.assemble(line, ": ", "; ".join(self.state.result.problems))
        if self.state is not None and self.state.result.notes and self.status not in ("missing", "checking"):
            line = Content.assemble(line, "\n", Content.styled("; ".join(self.state.result.notes), "dim"))
        status.update(line)
        self.query_one("#setting-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        if self.capture is None:
            return
        screen = self.app.screen_stack[-2] if len(self.app.screen_stack) > 1 else None
        if screen is not None and hasattr(screen, "copy_name"):
            screen.copy_name(self.capture.filename, self.capture.folder)
        else:
            self.app.copy_to_clipboard(self.capture.filename)
            self.notify(self.capture.filename, title="Copied to the clipboard", markup=False)


__all__ = ["SettingScreen"]

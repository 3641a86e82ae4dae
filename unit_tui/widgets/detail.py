"""The detail pane: the full knob setting of the selected capture, its file and status."""
from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from ..plan import Capture
from ..project import CaptureState
from ..rig import Block, Rig

STATUS_WORDS = {
    "ready": "ready",
    "missing": "not bounced yet",
    "writing": "being written…",
    "invalid": "invalid",
    "extra": "extra file",
    "checking": "checking…",
}


def _value(value: float, knob=None) -> str:
    if knob is not None and knob.kind == "switch":
        return str(int(round(value)))
    return f"{value:.1f}" if abs(value - round(value, 1)) < 1e-9 else f"{value:g}"


def setting_items(capture: Capture, block: Block | None) -> list[tuple[str, str, str]]:
    """(knob, value, kind) for every knob of the capture, kind 'moved' / 'fixed' / 'held'."""
    items = []
    knobs = {k.name: k for k in block.knobs} if block is not None else {}
    for name, value in capture.setting.items():
        knob = knobs.get(name)
        if capture.kind == "sweep" and name == capture.knob:
            kind = "moved"
        elif knob is not None and knob.role == "fixed":
            kind = "fixed"
        elif capture.kind == "chaos":
            kind = "moved"
        else:
            kind = "held"
        items.append((name, _value(value, knob), kind))
    return items


def setting_content(capture: Capture, block: Block | None) -> Content:
    """The setting as one wrapped line of 'Knob value' pairs; the moved knob(s) stand out."""
    parts: list[Content] = []
    for name, value, kind in setting_items(capture, block):
        if kind == "moved":
            cell = Content.from_markup("[b $setting-moved]$name $value[/]", name=name, value=value)
        elif kind == "fixed":
            cell = Content.from_markup("[$setting-fixed]$name $value (fixed)[/]", name=name, value=value)
        else:
            cell = Content.from_markup("$name $value", name=name, value=value)
        parts.append(cell)
    return Content("  ").join(parts)


class CaptureDetail(Static):
    """Shows one capture: what to dial in, where the file goes, and what the check said."""

    DEFAULT_CSS = """
    CaptureDetail { height: auto; padding: 0 1; }
    """

    def show_state(self, rig: Rig | None, state: CaptureState | None, capture: Capture | None = None,
                   status: str | None = None) -> None:
        capture = capture or (state.capture if state is not None else None)
        if state is None and capture is None:
            self.update("Nothing selected.")
            return
        lines: list[Content] = []
        if capture is None:  # an extra file
            folder, _, name = state.relpath.rpartition("/")
            lines.append(Content.from_markup("[b]$name[/]  [dim]in[/] $folder/", name=name, folder=folder))
            lines.append(Content.from_markup("[b $status-extra]extra file:[/] $reason", reason=state.reason))
            self.update(Content("\n").join(lines))
            return
        block = None
        if rig is not None:
            block = next((b for b in rig.blocks if b.id == capture.block_id), None)
        block_name = block.name if block is not None and block.name else capture.block_id
        what = (f"single sweep — set {capture.knob} to {_value(capture.value or 0.0, block.knob(capture.knob) if block else None)}"
                if capture.kind == "sweep" else f"chaos preset {capture.index:02d} — set every knob below")
        lines.append(Content.from_markup(
            "[b]$file[/]  [dim]→[/] $folder/", file=capture.filename, folder=capture.folder))
        lines.append(Content.from_markup("$block [dim]($bid)[/] · $what", block=block_name, bid=capture.block_id, what=what))
        lines.append(Content.assemble("Setting: ", setting_content(capture, block)))
        status = status or (state.status.value if state is not None else "checking")
        word = STATUS_WORDS.get(status, status)
        if state is not None and status not in ("missing", "checking"):
            reason = "; ".join(state.result.problems) if state.result.problems else ""
            notes = "; ".join(state.result.notes) if state.result.notes else ""
            line = Content.from_markup(f"[b $status-{status}]$word[/]", word=word)
            if reason:
                line = Content.assemble(line, ": ", reason)
            lines.append(line)
            if notes:
                lines.append(Content.from_markup("[dim]$notes[/]", notes=notes))
        else:
            lines.append(Content.from_markup(f"[$status-{status}]$word[/]", word=word))
        self.update(Content("\n").join(lines))


__all__ = ["CaptureDetail", "setting_content", "setting_items"]

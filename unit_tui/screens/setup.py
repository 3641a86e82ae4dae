"""New project: a rig (template or file), where it goes, its test signal, and which
knobs are modelled.

The screen edits a copy of the rig: each knob's checkbox switches it between its
modelled role (the rig's own ``sweep`` / ``chaos``, or ``sweep`` for a knob the rig
holds fixed) and ``fixed``. "Create" writes ``Rig.to_toml()`` of the edited rig with
:meth:`Project.create` in a worker thread. Every error is shown in the screen.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, SelectionList, Static
from textual.widgets.selection_list import Selection
from textual.worker import Worker, WorkerState

from ..project import Project, ProjectError
from ..rig import TEMPLATES, Block, Knob, Rig, RigError, load_rig, load_template, parse_rig


def modelled_role(knob: Knob) -> str:
    """The role a knob takes when the user ticks it: its own if modelled, else sweep."""
    return knob.role if knob.role in ("sweep", "chaos") else "sweep"


def role_words(knob: Knob, modelled: bool) -> str:
    if not modelled:
        value = f"{int(knob.fixed)}" if knob.kind == "switch" else f"{knob.fixed:g}"
        return f"fixed at {value}"
    role = modelled_role(knob)
    what = "switch" if knob.kind == "switch" else "knob"
    return f"{'sweep + chaos' if role == 'sweep' else 'chaos only'} ({what})"


def knob_prompt(knob: Knob, modelled: bool, width: int) -> Content:
    words = role_words(knob, modelled)
    style = "$text" if modelled else "$setting-fixed"
    return Content.from_markup(f"[{style}]$name[/]  [dim]$words[/]", name=knob.name.ljust(width), words=words)


def count_captures(block: Block) -> tuple[int, int]:
    """(single sweeps, chaos presets) a block gives."""
    sweeps = sum(len(k.sweep) for k in block.knobs if k.role == "sweep")
    return sweeps, block.chaos_count if block.chaos_knobs else 0


class BlockKnobs(SelectionList[str]):
    """The knobs of one block; a ticked knob is modelled."""

    def __init__(self, block: Block) -> None:
        self.block = block
        self.width = max(len(k.name) for k in block.knobs)
        super().__init__(
            *(Selection(knob_prompt(k, k.modelled, self.width), k.name, k.modelled) for k in block.knobs),
            id=f"knobs-{block.id}",
        )
        self.border_title = f"{block.name or block.id}  ({block.id}, {block.topology})"

    def edited_block(self) -> Block:
        chosen = set(self.selected)
        knobs = tuple(
            replace(k, role=modelled_role(k) if k.name in chosen else "fixed") for k in self.block.knobs
        )
        return replace(self.block, knobs=knobs)

    def refresh_prompts(self) -> None:
        chosen = set(self.selected)
        for i, k in enumerate(self.block.knobs):
            self.replace_option_prompt_at_index(i, knob_prompt(k, k.name in chosen, self.width))
        sweeps, chaos = count_captures(self.edited_block())
        self.border_subtitle = f"{sweeps} sweeps + {chaos} chaos = {sweeps + chaos} captures"


class SetupScreen(Screen[Path | None]):
    """Create a trainer project; dismisses with the new project's folder."""

    BINDINGS = [
        Binding("ctrl+s", "create", "Create"),
        Binding("escape", "cancel", "Back"),
    ]

    def __init__(self, rig_source: str = "unit1", parent: Path | None = None) -> None:
        super().__init__()
        self.rig_source = rig_source
        self.parent_dir = parent if parent is not None else Path.cwd()
        self.rig: Rig | None = None
        self.creating = False

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="setup"):
            yield Static(Content.from_markup("[b $accent]New trainer project[/]"), id="setup-title")
            with Horizontal(classes="field"):
                yield Label("Rig", classes="field-label")
                yield Input(value=self.rig_source, id="rig", compact=True,
                            placeholder="a template (" + ", ".join(TEMPLATES) + ") or a rig file path; Enter loads it")
                yield Button("Load", id="load", compact=True)
            with Horizontal(classes="field"):
                yield Label("Project name", classes="field-label")
                yield Input(id="name", compact=True)
            with Horizontal(classes="field"):
                yield Label("Parent folder", classes="field-label")
                yield Input(value=str(self.parent_dir), id="parent", compact=True)
            yield Static(id="target", classes="field-help")
            with Horizontal(classes="field"):
                yield Label("Input WAV", classes="field-label")
                yield Input(id="input-wav", compact=True,
                            placeholder="optional: e.g. the NAM trainer's input.wav (empty: generate one)")
            yield Static(Content.from_markup("[b]Modelled knobs[/]  [dim]space toggles: ticked = modelled,"
                                             " unticked = held fixed[/]"), id="knobs-title")
            yield Vertical(id="blocks")
            yield Static(id="setup-summary")
            yield Static(id="setup-error")
            with Horizontal(id="setup-buttons"):
                yield Button("Create project", id="create", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.load_rig_source(self.rig_source)

    # ------------------------------------------------------------------ rig
    def load_rig_source(self, source: str) -> None:
        source = source.strip()
        try:
            if source in TEMPLATES:
                rig = load_template(source)
            else:
                rig = load_rig(Path(source).expanduser())
        except RigError as exc:
            self.show_error(str(exc))
            return
        except OSError as exc:
            self.show_error(f"{source}: cannot read it ({exc.strerror or exc}).")
            return
        self.rig_source = source
        self.rig = rig
        self.show_error("")
        self.query_one("#name", Input).value = rig.project
        blocks = self.query_one("#blocks", Vertical)
        blocks.remove_children()
        lists = [BlockKnobs(b) for b in rig.blocks]
        blocks.mount_all(lists)
        for lst in lists:
            lst.refresh_prompts()
        self._update_summary()

    def block_lists(self) -> list[BlockKnobs]:
        return list(self.query(BlockKnobs))

    def edited_rig(self) -> Rig:
        """The rig with the user's knob choices and project name (validated)."""
        if self.rig is None:
            raise RigError("load a rig first (a template name such as unit1, or a rig file path).")
        blocks = {lst.block.id: lst.edited_block() for lst in self.block_lists()}
        rig = replace(self.rig, blocks=tuple(blocks.get(b.id, b) for b in self.rig.blocks),
                      project=self.query_one("#name", Input).value.strip())
        text = rig.to_toml()
        return parse_rig(text, source="the new rig")

    def target(self) -> Path | None:
        name = self.query_one("#name", Input).value.strip()
        parent = self.query_one("#parent", Input).value.strip()
        if not name or not parent:
            return None
        return Path(parent).expanduser() / name

    def _update_summary(self) -> None:
        target = self.target()
        self.query_one("#target", Static).update(
            Content.from_markup("[dim]→ project folder[/] [b]$t[/]", t=str(target)) if target else
            Content.from_markup("[dim]→ give a project name and a parent folder[/]"))
        total = 0
        for lst in self.block_lists():
            sweeps, chaos = count_captures(lst.edited_block())
            total += sweeps + chaos
        self.query_one("#setup-summary", Static).update(
            Content.from_markup("[b]$n[/] captures to bounce", n=str(total)) if self.rig else "")

    # ------------------------------------------------------------------ events
    @on(Button.Pressed, "#load")
    def _load_pressed(self) -> None:
        self.load_rig_source(self.query_one("#rig", Input).value)

    @on(Input.Submitted, "#rig")
    def _rig_submitted(self, event: Input.Submitted) -> None:
        self.load_rig_source(event.value)

    @on(Input.Changed, "#name")
    @on(Input.Changed, "#parent")
    def _changed(self) -> None:
        self._update_summary()

    @on(SelectionList.SelectedChanged)
    def _toggled(self, event: SelectionList.SelectedChanged) -> None:
        if isinstance(event.selection_list, BlockKnobs):
            event.selection_list.refresh_prompts()
            self._update_summary()

    @on(Button.Pressed, "#create")
    def _create_pressed(self) -> None:
        self.action_create()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def show_error(self, message: str) -> None:
        widget = self.query_one("#setup-error", Static)
        widget.update(Content.styled(message, "$error") if message else "")
        widget.set_class(bool(message), "-error")

    # ------------------------------------------------------------------ create
    def action_create(self) -> None:
        if self.creating:
            return
        try:
            rig = self.edited_rig()
        except RigError as exc:
            self.show_error(f"The rig cannot be used: {exc}")
            return
        parent = self.query_one("#parent", Input).value.strip()
        if not parent:
            self.show_error("Choose the parent folder the project folder goes in.")
            return
        root = Path(parent).expanduser() / rig.project
        wav_text = self.query_one("#input-wav", Input).value.strip()
        input_wav = Path(wav_text).expanduser() if wav_text else None
        if input_wav is not None and not input_wav.is_file():
            self.show_error(f"Input WAV {input_wav}: no such file.")
            return
        self.creating = True
        self.show_error("")
        self.query_one("#setup-summary", Static).update(
            Content.from_markup("Creating [b]$root[/]…", root=str(root)))
        self.create_project(root, rig.to_toml(), self.rig_source, input_wav)

    @work(thread=True, exclusive=True, group="create", exit_on_error=False)
    def create_project(self, root: Path, rig_text: str, source: str, input_wav: Path | None) -> tuple[Path, list[str]]:
        try:
            project = Project.create(root, rig_text, source=source, input_wav=input_wav)
        except (ProjectError, RigError) as exc:
            raise _CreateFailed(str(exc)) from None
        except OSError as exc:
            raise _CreateFailed(f"could not write {exc.filename or root}: {exc.strerror or exc}.") from None
        return project.root, list(project.messages)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "create":
            return
        if event.state == WorkerState.SUCCESS:
            root, messages = event.worker.result
            for message in messages:
                self.notify(message, title="New project", timeout=8)
            self.dismiss(root)
        elif event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self.creating = False
            error = event.worker.error
            text = str(error) if isinstance(error, _CreateFailed) else f"{type(error).__name__}: {error}"
            self.show_error(f"The project was not created: {text}")
            self._update_summary()

    def action_cancel(self) -> None:
        if not self.creating:
            self.dismiss(None)


class _CreateFailed(Exception):
    """A reason the project could not be created, worded for the user."""


__all__ = ["BlockKnobs", "SetupScreen", "count_captures", "modelled_role"]

"""The results screen: what the twin learned and how good it is.

* the held-out accuracy in plain words (settings the twin never trained on);
* ``k``: per knob, the learned curve (knob position -> each DSP control it drives;
  ``c`` steps through the controls it moves);
* ``f``: the twin's frequency response against the capture's at a captured setting
  (worst capture first; ``f`` again for the next);
* ``p``: preview renders into ``previews/<block>/`` (twin and A/B per capture);
* ``n``: next captures — proposed chaos presets where the twin is worst or least sure;
  accepting appends them to the chaos map, so they appear in the checklist.

Loading the model imports torch (about a second) and rendering takes a while: all of
it runs in thread workers that post messages back.
"""
from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState, get_current_worker

from ..jobs import verdict
from ..project import Project, ProjectError
from ..widgets.plots import Figure, LinePlot, Series

SUGGEST_COUNT = 4


class ResultsScreen(Screen):
    """Results of one block's twin (``b`` moves to the next trained block)."""

    BINDINGS = [
        Binding("k", "next_knob", "Knob curve"),
        Binding("c", "next_control", "Control", show=False),
        Binding("f", "next_response", "Freq. response"),
        Binding("p", "previews", "Previews"),
        Binding("n", "next_captures", "Next captures"),
        Binding("b", "next_block", "Block"),
        Binding("escape", "back", "Back"),
    ]

    @dataclass
    class Loaded(Message):
        block_id: str
        model: object | None
        report: dict | None
        curves: list
        error: str | None = None

    @dataclass
    class ResponseReady(Message):
        block_id: str
        response: dict | None
        error: str | None = None

    @dataclass
    class PreviewProgress(Message):
        done: int
        total: int
        name: str

        def can_replace(self, message: Message) -> bool:  # a flood collapses into one
            return isinstance(message, ResultsScreen.PreviewProgress)

    @dataclass
    class PreviewDone(Message):
        written: list[str]
        skipped: list[str]
        error: str | None = None

    @dataclass
    class Suggested(Message):
        block_id: str
        suggestions: list
        error: str | None = None

    def __init__(self, project: Project, block_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.block_id = block_id
        self.model = None
        self.report: dict | None = None
        self.curves: list = []
        self.knob_index = 0
        self.control_index = 0
        self.response_index = -1
        self.mode = "knob"
        self.response: dict | None = None
        self.previews_running = False
        self.last_previews: tuple[list[str], list[str]] | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="results-summary")
        yield Static(id="results-info")
        yield LinePlot(id="results-plot")
        yield Static(id="results-status")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"results · {self.project.root}"
        self._show_loading()
        self.load()

    @property
    def plot(self) -> LinePlot:
        return self.query_one("#results-plot", LinePlot)

    def _say(self, text: str | Content) -> None:
        self.query_one("#results-status", Static).update(text)

    def _show_loading(self) -> None:
        self.query_one("#results-summary", Static).update(f"{self.block_id}: loading the twin…")
        self.query_one("#results-info", Static).update("")
        self.plot.show(Figure(title=self.block_id, empty_note="loading"))

    # ------------------------------------------------------------------ loading
    @work(thread=True, exclusive=True, group="load", exit_on_error=False, name="load-model")
    def load(self) -> None:
        from ..analysis import knob_curves
        from ..training import load_model

        import torch  # here, in the worker: about a second, never at app start

        torch.set_num_threads(1)  # a shared 2-core machine: more threads only contend
        block_id = self.block_id
        try:
            model = load_model(self.project, block_id)
            curves = knob_curves(model, self.project.rig.block(block_id))
        except (ProjectError, KeyError, ValueError) as exc:
            self.post_message(self.Loaded(block_id, None, None, [], str(exc)))
            return
        self.post_message(self.Loaded(block_id, model, model.report(), curves))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        if event.block_id != self.block_id:
            return
        if event.error:
            self.query_one("#results-summary", Static).update(Content.styled(event.error, "$status-invalid"))
            return
        from ..analysis import accuracy_text

        self.model, self.report, self.curves = event.model, event.report, event.curves
        rep = self.report or {}
        block = self.project.rig.block(self.block_id)
        head = f"{block.name or block.id} ({block.topology}) · twin {rep.get('status', '?')}"
        if rep.get("fit_seconds"):
            head += f" · fitted in {rep['fit_seconds']:.0f} s"
        summary = Content.assemble(Content.styled(head, "bold $accent"), "\n", accuracy_text(rep))
        warnings = rep.get("warnings") or []
        if warnings:
            summary = Content.assemble(summary, "\n", Content.styled("note: " + warnings[0], "$status-writing"))
        self.query_one("#results-summary", Static).update(summary)
        self.mode = "knob"
        self._draw()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """One place where a worker's unexpected failure becomes a message on screen."""
        if event.state == WorkerState.ERROR:
            if event.worker.group == "previews":
                self.previews_running = False
            self.notify(f"{event.worker.name} failed: {event.worker.error}", title="Error", severity="error",
                        timeout=12, markup=False)

    # ------------------------------------------------------------------ drawing
    def summary_text(self) -> str:
        return str(self.query_one("#results-summary", Static).render())

    def _draw(self) -> None:
        info = self.query_one("#results-info", Static)
        if self.mode == "knob":
            if not self.curves:
                info.update("No modelled knobs.")
                self.plot.show(Figure(title="knob curves", empty_note="no knobs"))
                return
            curve = self.curves[self.knob_index % len(self.curves)]
            info.update(curve.describe() + "  (k: next knob · c: next control)")
            names = [m[0] for m in curve.moved] or list(curve.values)[:1]
            name = names[self.control_index % len(names)]
            unit = curve.units.get(name, "")
            self.plot.show(Figure(
                title=f"{curve.knob} → {name}" + (f" ({unit})" if unit else ""),
                series=[Series(name, curve.xs, curve.values[name])], xlabel=curve.knob,
                empty_note="flat"))
        elif self.mode == "response":
            r = self.response
            if r is None:
                info.update("Rendering the twin for the frequency response…")
                self.plot.show(Figure(title="frequency response", empty_note="rendering"))
                return
            item = next((it for it in (self.report or {}).get("items", []) if it["name"] == r["capture"]), {})
            esr = item.get("esr")
            setting = "  ".join(f"{k}={v:g}" for k, v in r["setting"].items())
            extra = f" · ESR {esr:.4f} ({verdict(esr)})" if esr is not None else ""
            if item.get("guitar_esr") is not None:
                extra += f" · guitar {item['guitar_esr']:.4f}"
            held = " · held out" if item.get("holdout") else ""
            info.update(f"{r['capture']}{held}{extra} · {setting}  (f: next capture)")
            self.plot.show(Figure(
                title=f"response at {r['capture']} (dB; linear part)",
                series=[Series("capture", r["freqs"], r["capture_db"]),
                        Series("twin", r["twin_freqs"], r["twin_db"])],
                xlabel="Hz", xscale="log"))

    # ------------------------------------------------------------------ actions
    def action_next_knob(self) -> None:
        if self.mode == "knob":
            self.knob_index += 1
        self.mode, self.control_index = "knob", 0
        self._draw()

    def action_next_control(self) -> None:
        self.mode = "knob"
        self.control_index += 1
        self._draw()

    def _worst_first(self) -> list[str]:
        items = [it for it in (self.report or {}).get("items", []) if it.get("esr") is not None]
        items.sort(key=lambda it: -it["esr"])
        return [it["name"] for it in items]

    def action_next_response(self) -> None:
        names = self._worst_first()
        if self.model is None or not names:
            self.notify("No captures to compare yet.", title="Frequency response")
            return
        self.response_index = (self.response_index + 1) % len(names)
        self.mode, self.response = "response", None
        self._draw()
        self.compute_response(names[self.response_index])

    @work(thread=True, exclusive=True, group="response", exit_on_error=False, name="response")
    def compute_response(self, capture: str) -> None:
        from ..analysis import capture_response

        try:
            r = capture_response(self.project, self.model, self.block_id, capture)
        except Exception as exc:  # noqa: BLE001 - shown on screen
            self.post_message(self.ResponseReady(self.block_id, None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(self.ResponseReady(self.block_id, r))

    @on(ResponseReady)
    def _response_ready(self, event: ResponseReady) -> None:
        if event.block_id != self.block_id or self.mode != "response":
            return
        if event.error:
            self.query_one("#results-info", Static).update(Content.styled(event.error, "$status-invalid"))
            return
        self.response = event.response
        self._draw()

    def action_previews(self) -> None:
        if self.model is None:
            self.notify("The twin is still loading.", title="Previews")
            return
        if self.previews_running:
            self.notify("Preview renders are already being written.", title="Previews")
            return
        self.previews_running = True
        self._say(f"Writing previews to previews/{self.block_id}/ …")
        self.write_previews()

    @work(thread=True, exclusive=True, group="previews", exit_on_error=False, name="previews")
    def write_previews(self) -> None:
        from ..previews import write_previews

        worker = get_current_worker()
        try:
            res = write_previews(self.project, self.block_id, self.model,
                                 on_progress=lambda i, n, name: self.post_message(self.PreviewProgress(i, n, name)),
                                 should_stop=lambda: worker.is_cancelled)
        except Exception as exc:  # noqa: BLE001 - shown on screen
            self.post_message(self.PreviewDone([], [], f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(self.PreviewDone(res.written, res.skipped))

    @on(PreviewProgress)
    def _preview_progress(self, event: PreviewProgress) -> None:
        if self.previews_running:
            self._say(f"Writing previews: {event.done}/{event.total} {event.name}")

    @on(PreviewDone)
    def _preview_done(self, event: PreviewDone) -> None:
        self.previews_running = False
        if event.error:
            self._say(Content.styled(f"Previews failed: {event.error}", "$status-invalid"))
            return
        self.last_previews = (event.written, event.skipped)
        folder = self.project.root / "previews" / self.block_id
        text = f"Wrote {len(event.written)} preview files (capture_twin.wav, capture_AB.wav) to {folder}"
        if event.skipped:
            text += f"; left {len(event.skipped)} alone ({event.skipped[0]})"
        self._say(text)
        self.notify(text, title="Previews", timeout=8, markup=False)

    def action_next_captures(self) -> None:
        self._say("Looking for the settings where the twin is worst or least sure…")
        self.suggest()

    @work(thread=True, exclusive=True, group="suggest", exit_on_error=False, name="suggest")
    def suggest(self) -> None:
        from ..suggest import suggest_for_project

        try:
            sugg = suggest_for_project(self.project, self.block_id, n=SUGGEST_COUNT)
        except Exception as exc:  # noqa: BLE001 - shown on screen
            self.post_message(self.Suggested(self.block_id, [], f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(self.Suggested(self.block_id, sugg))

    @on(Suggested)
    def _suggested(self, event: Suggested) -> None:
        if event.error or not event.suggestions:
            self._say(event.error or "No proposal: this block has no knob to vary.")
            return
        self._say("")

        def done(added) -> None:
            if added:
                self._say(f"Added {len(added)} chaos presets to the checklist: {added[0]} … {added[-1]}."
                          " Bounce them, then train again.")

        self.app.push_screen(NextCapturesScreen(self.project, self.block_id, event.suggestions), done)

    def action_next_block(self) -> None:
        from ..training import model_path

        trained = [b.id for b in self.project.rig.blocks if model_path(self.project, b.id).is_file()]
        if len(trained) < 2:
            self.notify("Only one block is trained.", title="Results")
            return
        i = trained.index(self.block_id) if self.block_id in trained else -1
        self.block_id = trained[(i + 1) % len(trained)]
        self.model, self.report, self.curves, self.response = None, None, [], None
        self.knob_index = self.control_index = 0
        self.response_index = -1
        self._show_loading()
        self.load()

    def action_back(self) -> None:
        self.app.pop_screen()


class NextCapturesScreen(ModalScreen[list]):
    """Proposed chaos presets; ``a``/enter appends them to the chaos map, esc declines."""

    BINDINGS = [
        Binding("a,enter", "accept", "Add to checklist"),
        Binding("escape", "decline", "Not now"),
    ]

    def __init__(self, project: Project, block_id: str, suggestions: list, **kwargs) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.block_id = block_id
        self.suggestions = suggestions

    def compose(self) -> ComposeResult:
        with Vertical(id="next-dialog"):
            yield Static(f"Next captures for {self.block_id}: where the twin is worst or least sure",
                         id="next-title")
            yield DataTable(id="next-table", cursor_type="row")
            yield Static("a / enter: add them to the checklist (chaos map rows appended) · esc: not now",
                         id="next-hint")

    def on_mount(self) -> None:
        block = self.project.rig.block(self.block_id)
        table = self.query_one("#next-table", DataTable)
        knobs = [k.name for k in block.chaos_knobs]
        table.add_columns("#", *knobs, "why")
        for i, s in enumerate(self.suggestions, 1):
            table.add_row(str(i), *(f"{s.setting[k]:g}" for k in knobs), s.reason)
        table.focus()

    @on(DataTable.RowSelected, "#next-table")
    def _row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_accept()

    def action_accept(self) -> None:
        try:
            added = self.project.add_chaos_settings(self.block_id, [s.setting for s in self.suggestions])
        except ProjectError as exc:
            self.notify(str(exc), title="Cannot add", severity="error")
            return
        names = [c.filename for c in added]
        self.notify(f"Added {len(names)} presets: {', '.join(names)}", title="Next captures", timeout=8)
        self.dismiss(names)

    def action_decline(self) -> None:
        self.dismiss([])


__all__ = ["ResultsScreen", "NextCapturesScreen"]

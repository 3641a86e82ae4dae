"""The training screen: watch (and start, cancel, resume) the project's training job.

The job is a separate process (:mod:`unit_tui.jobrunner`); this screen only reads what
it writes. One thread worker (:meth:`TrainingScreen.tail`) polls ``progress.jsonl`` and
``job.json`` and posts :class:`TrainingScreen.JobUpdate` messages; the screen folds the
events into a :class:`~unit_tui.jobs.JobView` and redraws: the loss graph (train and
held-out ESR, log scale) of the block shown, the stage with its progress and ETA, and
the per-capture ESR table with NAM verdicts, worst first. Starting a job runs in a
thread worker too (the process takes a moment to take the lock).

Leaving the screen or quitting the app never stops the job: any TUI attaches later.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState, get_current_worker

from ..jobs import (BlockView, JobError, JobInfo, JobRunning, JobView, ProgressTail, cancel_job, fmt_eta, read_job,
                    start_job)
from ..project import Project
from ..widgets.plots import Figure, LinePlot, Series

POLL_S = 0.3
PLOT_MIN_INTERVAL_S = 0.5
DEFAULT_MINUTES = 10.0
MINUTE_STEPS = (0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240)
CANCEL_CONFIRM_S = 3.0
VERDICT_STYLE = {"great": "$status-ready", "not bad": "$accent", "may sound OK": "$status-writing",
                 "poor": "$status-invalid"}


class TrainingScreen(Screen):
    """Live view of the project's training job."""

    BINDINGS = [
        Binding("s", "start", "Start/resume"),
        Binding("x", "cancel_job", "Cancel job"),
        Binding("b", "next_block", "Block"),
        Binding("r", "results", "Results"),
        Binding("plus,equals_sign", "more_minutes", "+time", show=False),
        Binding("minus", "less_minutes", "-time", show=False),
        Binding("f", "start_fresh", "Start over", show=False),
        Binding("escape", "back", "Back"),
    ]

    @dataclass
    class JobUpdate(Message):
        """New events and the current job.json (posted by the tail worker)."""

        reset: bool
        events: list[dict]
        info: JobInfo | None

    @dataclass
    class StartDone(Message):
        """A start attempt ended: ``info`` of the job that runs now, and what to say."""

        info: JobInfo | None
        text: str
        severity: str = "information"

    def __init__(self, project: Project, minutes: float | None = None, auto_results: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.minutes = float(minutes) if minutes is not None else DEFAULT_MINUTES
        self.auto_results = auto_results
        self.view = JobView()
        self.info: JobInfo | None = None
        self.shown_block: str | None = None
        self.starting = False
        self._cancel_armed = 0.0
        self._last_plot = 0.0
        self._plot_dirty = False
        self._ended_seen: str | None = None
        self._results_opened = False
        self._table_key = None
        self.updates = 0

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Static(id="job-status")
        yield Static(id="job-stage", markup=False)  # knob and capture names are the user's
        yield LinePlot(id="loss-plot")
        yield DataTable(id="esr-table", cursor_type="row", zebra_stripes=False)
        yield Static(id="job-hint")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"training · {self.project.root}"
        table = self.query_one("#esr-table", DataTable)
        # Fixed widths: rows are replaced as the job goes, the columns must not jump.
        table.add_column("capture", key="capture", width=26)
        table.add_column("set", key="set", width=8)
        table.add_column("ESR", key="esr", width=7)
        table.add_column("verdict", key="verdict", width=12)
        self._refresh_all()
        self.set_interval(PLOT_MIN_INTERVAL_S, self._flush_plot, name="plot-flush")
        self.tail()

    @property
    def plot(self) -> LinePlot:
        return self.query_one("#loss-plot", LinePlot)

    # ------------------------------------------------------------------ watching
    @work(thread=True, exclusive=True, group="tail", exit_on_error=False, name="tail")
    def tail(self) -> None:
        """Poll progress.jsonl and job.json; post what changed (runs for the screen's life)."""
        worker = get_current_worker()
        tail = ProgressTail(self.project.root)
        last_key = None
        first = True
        while not worker.is_cancelled:
            try:
                reset, events = tail.read()
                info = read_job(self.project.root)
            except OSError:  # e.g. a new job replaced progress.jsonl between stat and open
                time.sleep(POLL_S)
                continue
            key = None if info is None else (info.pid, info.state, info.alive, info.current,
                                             tuple(info.done_blocks), info.message)
            if first or reset or events or key != last_key:
                self.post_message(self.JobUpdate(reset, events, info))
                last_key = key
                first = False
            time.sleep(POLL_S)

    @on(JobUpdate)
    def _job_update(self, event: JobUpdate) -> None:
        self.updates += 1
        if event.reset:
            self.view.reset()
        self.view.apply_all(event.events)
        self.info = event.info
        if self.shown_block is None or self.shown_block not in self.view.blocks:
            self.shown_block = self.view.current or (self.view.order[0] if self.view.order else None)
        elif self.view.current and any(e.get("type") == "block" for e in event.events):
            self.shown_block = self.view.current  # follow the job to its next block
        if any(e.get("type") in ("progress", "result", "block") for e in event.events) or event.reset:
            self._plot_dirty = True
        self._refresh_status()
        self._refresh_table()
        if self._plot_dirty and time.monotonic() - self._last_plot >= PLOT_MIN_INTERVAL_S:
            self._flush_plot()
        ended = self._ended_state()
        if self.updates == 1:
            self._ended_seen = ended  # attaching to a finished job: nothing to announce
        elif ended != self._ended_seen:
            self._ended_seen = ended
            if ended:
                self._announce_end(ended)

    def _ended_state(self) -> str | None:
        info = self.info
        if info is None:
            return None
        if info.interrupted:
            return "interrupted"
        return info.state if info.state != "running" else None

    def _announce_end(self, state: str) -> None:
        if state == "complete":
            self.notify("Training complete. Press r for the results.", title="Training", timeout=8)
            if self.auto_results and not self._results_opened:
                self._results_opened = True
                self.action_results()
        elif state == "cancelled":
            self.notify("Cancelled: the checkpoint is saved; press s to resume.", title="Training", timeout=8)
        elif state == "failed":
            self.notify(f"The job failed: {self.info.error if self.info else ''}. See .unit/jobs/job.log.",
                        title="Training", severity="error", timeout=12)
        elif state == "interrupted":
            self.notify("The training process stopped unexpectedly; press s to resume from the checkpoint.",
                        title="Training", severity="warning", timeout=12)

    # ------------------------------------------------------------------ drawing
    def _bv(self) -> BlockView | None:
        return self.view.blocks.get(self.shown_block) if self.shown_block else None

    def _refresh_all(self) -> None:
        self._refresh_status()
        self._refresh_table()
        self._flush_plot(force=True)

    def job_line(self) -> str:
        """The first status line as plain text (what the user reads first)."""
        info = self.info
        if self.starting and not (info is not None and info.alive):
            # the job file can show the new job alive before the start worker reports
            return "Starting the training job…"
        if info is None:
            return f"No training job yet. Press s to train every block ({self.minutes:g} min budget; +/- to change)."
        state = info.display_state
        blocks = f"{len(info.done_blocks)}/{len(info.blocks)} blocks done"
        if state == "running":
            text = f"Job running (pid {info.pid}) · {blocks}"
            if info.resumed:
                text += " · resumed"
        elif state == "interrupted":
            text = f"Job interrupted (pid {info.pid} is gone) · {blocks} · press s to resume from the checkpoint"
        elif state == "complete":
            text = f"Job complete · {blocks} · r: results · s: train again ({self.minutes:g} min)"
        elif state == "cancelled":
            text = f"Job cancelled · {blocks} · s: resume from the checkpoint"
        else:
            text = f"Job failed: {info.error or 'see .unit/jobs/job.log'} · s: try again"
        return text

    def _refresh_status(self) -> None:
        style = {"running": "$status-ready", "interrupted": "$status-invalid", "failed": "$status-invalid",
                 "cancelled": "$status-writing", "complete": "$accent"}
        state = self.info.display_state if self.info else None
        line = Content.styled(self.job_line(), style.get(state or "", "$foreground"))
        message = self.view.message or (self.info.message if self.info else "")
        if message and state in ("running", "complete"):
            line = Content.assemble(line, Content.styled(f"  {message}", "$text-muted"))
        self.query_one("#job-status", Static).update(line)
        self.query_one("#job-stage", Static).update(self.stage_line())
        hint = "x x: cancel · +/-: budget · f: start over · the job runs on when you quit"
        self.query_one("#job-hint", Static).update(Content.styled(hint, "$text-muted"))

    def stage_line(self) -> str:
        bv = self._bv()
        if bv is None:
            return ""
        n = len(self.view.order)
        idx = self.view.order.index(bv.block) + 1 if bv.block in self.view.order else 1
        head = f"{bv.block} ({idx}/{n})" if n > 1 else bv.block
        if bv.status is not None:
            rep = bv.report or {}
            ho = (rep.get("holdout") or {}).get("median")
            tr = (rep.get("train") or {}).get("median")
            parts = [f"{head}: done ({bv.status})"]
            if tr is not None:
                parts.append(f"train ESR {tr:.4f}")
            if ho is not None:
                parts.append(f"held-out ESR {ho:.4f}")
            gho = (rep.get("holdout_guitar") or {}).get("median")
            if gho is not None:
                parts.append(f"on the guitar {gho:.4f}")
            return " · ".join(parts)
        frac = bv.step / bv.total if bv.total else 0.0
        width = 16
        filled = int(round(frac * width))
        bar = "█" * filled + "░" * (width - filled)
        parts = [f"{head}: {bv.stage} {bv.step}/{bv.total} {bar}", fmt_eta(bv.eta_s)]
        if bv.train_esr is not None:
            parts.append(f"train {bv.train_esr:.4f}")
        if bv.holdout_esr is not None:
            parts.append(f"held-out {bv.holdout_esr:.4f}")
        line = " · ".join(parts)
        # a long step (the init's descent, its knob searches: minutes with the band
        # chain) says what it is doing on a second line
        return f"{line}\n{bv.detail}" if bv.detail else line

    def figure(self) -> Figure:
        bv = self._bv()
        if bv is None:
            return Figure(title="ESR (log)", empty_note="no training yet")
        series = [Series("train", [p[0] for p in bv.train_series], [p[1] for p in bv.train_series])]
        if bv.holdout_series:
            series.append(Series("held-out", [p[0] for p in bv.holdout_series], [p[1] for p in bv.holdout_series]))
        return Figure(title=f"{bv.block}: ESR (log) vs minutes", series=series, xlabel="", ylabel="",
                      yscale="log", empty_note="waiting for the first ESR")

    def _flush_plot(self, force: bool = False) -> None:
        if not (self._plot_dirty or force):
            return
        self._plot_dirty = False
        self._last_plot = time.monotonic()
        self.plot.show(self.figure())

    def table_rows(self) -> list[tuple[str, bool, float | None, str]]:
        bv = self._bv()
        return bv.rows() if bv is not None else []

    def _refresh_table(self) -> None:
        table = self.query_one("#esr-table", DataTable)
        rows = self.table_rows()
        key = (self.shown_block, tuple(rows))
        if key == self._table_key:
            return  # unchanged: keep the cursor where the user put it
        self._table_key = key
        cursor = table.cursor_row
        table.clear()
        for name, held, esr, verdict in rows:
            short = name.removeprefix(f"{self.shown_block}_") if self.shown_block else name
            table.add_row(
                short, Content.styled("held-out", "$accent") if held else "train",
                "—" if esr is None else f"{esr:.4f}",
                Content.styled(verdict, VERDICT_STYLE.get(verdict, "$foreground")), key=name)
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """One place where a worker's unexpected failure becomes a message on screen."""
        if event.state == WorkerState.ERROR:
            if event.worker.group == "start":
                self.starting = False
            self.notify(f"{event.worker.name} failed: {event.worker.error}", title="Error", severity="error",
                        timeout=12, markup=False)

    # ------------------------------------------------------------------ actions
    def action_start(self, fresh: bool = False) -> None:
        if self.starting:
            return
        if self.info is not None and self.info.alive:
            self.notify(f"A training job is already running (pid {self.info.pid}); showing its progress.",
                        title="Training", severity="warning")
            return
        self.starting = True
        self._ended_seen = None
        self._refresh_status()
        self._start_worker(fresh)

    def action_start_fresh(self) -> None:
        self.action_start(fresh=True)

    @work(thread=True, group="start", exit_on_error=False, name="start-job")
    def _start_worker(self, fresh: bool) -> None:
        try:
            info = start_job(self.project.root, minutes=self.minutes, fresh=fresh)
        except JobRunning as exc:
            self.post_message(self.StartDone(exc.info, f"{exc} Showing its progress.", "warning"))
            return
        except (JobError, OSError) as exc:
            self.post_message(self.StartDone(None, f"Could not start training: {exc}", "error"))
            return
        text = info.message or "Training started."
        self.post_message(self.StartDone(info, f"{text} It keeps running if you close the app.",
                                         "warning" if "unexpectedly" in text else "information"))

    @on(StartDone)
    def _start_done(self, event: StartDone) -> None:
        self.starting = False
        if event.info is not None:
            self.info = event.info
        self.notify(event.text, title="Training", severity=event.severity, timeout=8)
        self._refresh_status()

    def action_cancel_job(self) -> None:
        if self.info is None or not self.info.alive:
            self.notify("No training job is running.", title="Training")
            return
        now = time.monotonic()
        if now - self._cancel_armed > CANCEL_CONFIRM_S:
            self._cancel_armed = now
            self.notify("Press x again to cancel the job (the checkpoint is kept; s resumes).", title="Cancel?")
            return
        self._cancel_armed = 0.0
        if cancel_job(self.project.root):
            self.notify("Cancelling: the job stops after writing its checkpoint…", title="Training")

    def action_next_block(self) -> None:
        order = self.view.order
        if not order:
            return
        i = order.index(self.shown_block) if self.shown_block in order else -1
        self.shown_block = order[(i + 1) % len(order)]
        self._refresh_all()

    def _change_minutes(self, direction: int) -> None:
        steps = MINUTE_STEPS
        if direction > 0:
            self.minutes = next((m for m in steps if m > self.minutes + 1e-9), steps[-1])
        else:
            self.minutes = next((m for m in reversed(steps) if m < self.minutes - 1e-9), steps[0])
        self._refresh_status()  # the status line shows the budget

    def action_more_minutes(self) -> None:
        self._change_minutes(+1)

    def action_less_minutes(self) -> None:
        self._change_minutes(-1)

    def action_results(self) -> None:
        from ..training import model_path
        from .results import ResultsScreen

        blocks = [b.id for b in self.project.rig.blocks if model_path(self.project, b.id).is_file()]
        if not blocks:
            self.notify("No trained model yet: wait for the job (or press s to start one).", title="Results")
            return
        first = self.shown_block if self.shown_block in blocks else blocks[0]
        self.app.push_screen(ResultsScreen(self.project, first))

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            from .checklist import ChecklistScreen

            self.app.switch_screen(ChecklistScreen(self.project))


__all__ = ["TrainingScreen"]

"""The checklist: every capture of the project, live.

Threads and messages:

* a watchdog observer (:class:`~unit_tui.watch.ProjectWatcher`) posts
  :class:`~unit_tui.messages.FilesChanged` to this screen from its own thread;
* the screen debounces those (``DEBOUNCE_S``) and runs :meth:`ChecklistScreen.scan`, a
  thread worker that posts :class:`PlanReady` / :class:`ScanProgress` /
  :class:`ScanFinished` / :class:`ScanFailed` / :class:`ProjectReloaded`. Only one scan
  runs at a time; a request that arrives during a scan runs right after it (so a long
  scan never starves and two scans never share the project's caches);
* the first scan checks the files already on disk one by one, newest first, and posts
  results as it goes; files the watcher reports meanwhile (its thread-safe
  :class:`~unit_tui.watch.ChangeSet`) jump the queue, so a fresh bounce turns green
  even while a big project is still being checked;
* while any file is being written, a 0.5 s timer keeps scanning so the
  :class:`~unit_tui.checks.ReadinessTracker` sees the file hold still and the row turns
  ready (or invalid) without a key press; a slow timer re-scans every few seconds in
  case the file system sends no events (network shares).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState, get_current_worker

from ..fsutil import stat_key as _stat_key
from ..status import CheckResult, Status
from ..clipboard import copy_with_pyperclip, over_ssh, tmux_clipboard_hint, use_system_clipboard
from ..messages import (ClipboardResult, FilesChanged, PlanReady, ProjectReloaded, ScanFailed, ScanFinished,
                        ScanProgress, WatchFailed)
from ..plan import Capture, Plan
from ..project import CaptureState, Project, ProjectError, ProjectStatus
from ..watch import ChangeSet, ProjectWatcher
from ..widgets.capture_table import CaptureTable, Row
from ..widgets.detail import CaptureDetail
from ..widgets.progress import ProgressHeader

DEBOUNCE_S = 0.15
WRITING_POLL_S = 0.5
FALLBACK_POLL_S = 3.0
STATUS_FILTERS = ("all", "missing", "ready", "invalid", "writing", "extra")
TO_BOUNCE = ("missing", "invalid")


def open_folder_command(path: Path, environ=None, platform: str | None = None) -> list[str] | None:
    """The command that opens ``path`` in the desktop's file manager, or None when there
    is no desktop to open it on (over SSH, no display, no opener installed)."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if over_ssh(env):
        return None
    if platform == "darwin":
        return ["open", str(path)]
    if platform.startswith("linux") or "bsd" in platform:
        if (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")) and shutil.which("xdg-open"):
            return ["xdg-open", str(path)]
    return None


class ChecklistScreen(Screen):
    """The live capture checklist of one project."""

    BINDINGS = [
        Binding("c", "copy_next", "Copy name"),
        Binding("n", "next_missing", "Next missing"),
        Binding("b", "cycle_block", "Block"),
        Binding("s", "cycle_status", "Status"),
        Binding("d", "show_detail", "Detail"),
        Binding("o", "open_folder", "Open folder"),
        Binding("T", "training", "Train"),
        Binding("p", "projects", "Projects"),
        Binding("ctrl+n", "new_project", "New project", show=False),
    ]

    def __init__(self, project: Project, **kwargs) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.rig = project.rig
        self.plan: Plan | None = None
        self.present: frozenset[str] = frozenset()
        self.status: ProjectStatus | None = None
        self.states: dict[str, CaptureState] = {}
        self.minutes_per_capture = 1.25
        self.block_filter: str | None = None
        self.status_filter = "all"
        self.scan_error: str | None = None
        self.scans_done = 0
        self.checked: tuple[int, int] | None = None  # first pass: (files checked, files on disk)
        self._tracker_obj = None  # made in the scan thread: checks import numpy, not needed for frame one
        self._scan_running = False
        self._scan_again = False
        self._debounce: Timer | None = None
        self._poll: Timer | None = None
        self._watcher: ProjectWatcher | None = None
        self._notices_shown: set[str] = set()
        self._tmux_checked = False
        self._last_plan: Plan | None = None  # only touched by the scan worker
        self._warm = False  # the first file-by-file pass is done (scan worker only)
        self._rig_key: tuple[int, int] | None = None  # rig.toml's (size, mtime) (scan worker only)
        self._changes = ChangeSet()

    # ------------------------------------------------------------------ layout
    @property
    def _tracker(self):
        """The readiness tracker (created on first use, in the scan thread)."""
        if self._tracker_obj is None:
            from ..checks import ReadinessTracker

            self._tracker_obj = ReadinessTracker()
        return self._tracker_obj

    def compose(self) -> ComposeResult:
        yield ProgressHeader(id="progress")
        yield Static(id="filters")
        yield CaptureTable(id="captures")
        yield CaptureDetail(id="detail")
        yield Static(id="status-line")
        yield Footer(compact=True, show_command_palette=False)

    @property
    def table(self) -> CaptureTable:
        return self.query_one("#captures", CaptureTable)

    def on_mount(self) -> None:
        self.sub_title = str(self.project.root)
        self.query_one(ProgressHeader).show_message(self.rig.project, "reading the plan…")
        self._say("")
        # The plan is cheap (a few ms): show its rows in the first frame. The scan
        # worker has not started yet, so the project is not shared with a thread here.
        try:
            plan = self.project.plan()
            ready = PlanReady(plan, frozenset(self.project.capture_files()), self.project.minutes_per_capture())
        except ProjectError as exc:
            self._show_filters()
            self._show_error(str(exc))
        else:
            self._last_plan = plan
            self._plan_ready(ready)
        # Draw the first frame before any work starts (the scan thread competes for the GIL).
        self.call_after_refresh(self._start_live)

    def _start_live(self) -> None:
        from ..jobs import running_job

        job = running_job(self.project.root)
        if job is not None:
            self.notify(f"A training job is running (pid {job.pid}); T shows its progress.", title="Training",
                        timeout=6)
        self._poll = self.set_interval(WRITING_POLL_S, self.request_scan, pause=True, name="writing-poll")
        self.set_interval(FALLBACK_POLL_S, self.request_scan, name="fallback-poll")
        self.request_scan()
        self._watcher = ProjectWatcher(self.project.root, self.post_message, self._changes)
        try:
            self._watcher.start()
        except Exception as exc:  # noqa: BLE001 - e.g. inotify limit reached: poll instead
            self._watcher = None
            self.post_message(WatchFailed(str(exc)))

    def on_unmount(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    # ------------------------------------------------------------------ scanning
    def request_scan(self) -> None:
        """Scan now, or right after the scan that is running."""
        if self._scan_running:
            self._scan_again = True
            return
        self._scan_running = True
        self._scan_again = False
        self.scan()

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False, name="scan")
    def scan(self) -> None:
        """Re-read the plan and check every capture (runs in a thread; posts results)."""
        worker = get_current_worker()
        try:
            if self._rig_changed():
                return
            plan = self.project.plan()
            if plan is not self._last_plan:
                self._last_plan = plan
                self.post_message(PlanReady(plan, frozenset(self.project.capture_files()),
                                            self.project.minutes_per_capture()))
            if worker.is_cancelled:
                return
            if not self._warm:
                self._first_pass(plan, worker)
                self._warm = True
                if worker.is_cancelled:
                    return
            self._changes.take()  # the full scan below sees every change
            status = self.project.scan(tracker=self._tracker)
            minutes = self.project.minutes_per_capture()
        except ProjectError as exc:
            self.post_message(ScanFailed(str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - shown on screen, never a traceback
            self.post_message(ScanFailed(f"checking the captures failed: {type(exc).__name__}: {exc}"))
            return
        self.post_message(ScanFinished(status, minutes))

    def _rig_changed(self) -> bool:
        """Re-open the project when rig.toml changed on disk (scan worker only). True when
        a :class:`ProjectReloaded` was posted and this scan should stop."""
        key = _stat_key(self.project.rig_path)
        if self._rig_key is None or key == self._rig_key:
            self._rig_key = key
            return False
        self._rig_key = key
        try:
            project = Project.open(self.project.root)
        except ProjectError as exc:
            self.post_message(ScanFailed(f"rig.toml changed and cannot be used (the old plan is kept): {exc}"))
            return False
        self.post_message(ProjectReloaded(project))
        return True

    def _first_pass(self, plan: Plan, worker) -> None:
        """Check the files already on disk one by one, newest first, posting results as
        they come: a big project shows progress at once instead of after a long scan.

        Files that change meanwhile (the watcher's :class:`ChangeSet`) go first; a file
        still being written is looked at again every ``WRITING_POLL_S`` until the
        tracker says it is finished. Runs in the scan worker thread.
        """
        planned = {c.relpath for c in plan.captures}
        mtimes: dict[str, float] = {}
        for rel in self.project.capture_files():
            if rel not in planned:
                continue
            try:
                mtimes[rel] = self.project.path(rel).stat().st_mtime
            except OSError:
                continue
            # The file has been as it is since its modification time: a finished file
            # is checked at once, one still growing shows "writing".
            self._tracker.observe(self.project.path(rel), now=mtimes[rel])
        todo = sorted(mtimes, key=mtimes.__getitem__)  # pop() takes the newest first
        total = len(todo)
        writing: dict[str, float] = {}  # relpath -> when it was last looked at
        results: dict = {}
        last_post = time.monotonic()

        def look(rel: str) -> None:
            now = time.time()
            seen = self._tracker.observe(self.project.path(rel), now)
            if seen == Status.WRITING:
                writing[rel] = time.monotonic()
                results[rel] = CheckResult.writing()
                return
            writing.pop(rel, None)
            results[rel] = CheckResult.missing() if seen == Status.MISSING else self.project.check(rel, now=now)

        while (todo or writing) and not worker.is_cancelled:
            hot = [rel for rel in self._changes.take() if rel in planned]
            hot += [rel for rel, t in writing.items() if time.monotonic() - t >= WRITING_POLL_S and rel not in hot]
            for rel in hot:
                if rel in todo:
                    todo.remove(rel)
                look(rel)
            if todo:
                look(todo.pop())
            elif writing and not hot:
                time.sleep(0.05)
            if results and (time.monotonic() - last_post > 0.25 or hot or not todo):
                self.post_message(ScanProgress(dict(results), total - len(todo), total))
                results = {}
                last_post = time.monotonic()
        if results:
            self.post_message(ScanProgress(dict(results), total - len(todo), total))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "scan":
            return
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self._scan_running = False
            if event.state == WorkerState.ERROR:
                self._show_error(f"checking the captures failed: {event.worker.error}")
            if self._scan_again:
                self.request_scan()

    @on(FilesChanged)
    def _files_changed(self, _event: FilesChanged) -> None:
        if self._debounce is None:
            self._debounce = self.set_timer(DEBOUNCE_S, self._debounced, name="debounce")

    def _debounced(self) -> None:
        self._debounce = None
        self.request_scan()

    @on(WatchFailed)
    def _watch_failed(self, event: WatchFailed) -> None:
        self.notify(f"Cannot watch the folder ({event.error}); checking every {FALLBACK_POLL_S:g} s instead.",
                    severity="warning")

    @on(PlanReady)
    def _plan_ready(self, event: PlanReady) -> None:
        self.plan = event.plan
        self.present = event.present
        self.minutes_per_capture = event.minutes_per_capture
        self._refresh_rows()
        if self.status is None:
            files = sum(1 for c in event.plan.captures if c.relpath in event.present)
            self.checked = (0, files)
        self._refresh_header()

    @on(ProjectReloaded)
    def _project_reloaded(self, event: ProjectReloaded) -> None:
        # No scan is running: the worker that posted this stopped right after.
        self.project = event.project
        self.rig = event.project.rig
        self.plan = None
        self.status = None
        self.states = {}
        self.checked = None
        self.block_filter = None
        self._tracker_obj = None
        self._warm = False
        self._last_plan = None
        self.notify("rig.toml changed: the plan was read again. Files that no longer belong show as extra.",
                    title="Rig reloaded", timeout=8)
        self.request_scan()

    @on(ScanProgress)
    def _scan_progress(self, event: ScanProgress) -> None:
        captures = {c.relpath: c for c in self.captures()}
        for rel, result in event.results.items():
            if rel in captures:
                self.states[rel] = CaptureState(rel, result, captures[rel])
        self.checked = (event.done, event.total)
        self._refresh_rows()
        self._refresh_header()

    @on(ScanFinished)
    def _scan_finished(self, event: ScanFinished) -> None:
        self.scans_done += 1
        self.scan_error = None
        self.status = event.status
        self.minutes_per_capture = event.minutes_per_capture
        self.states = {s.relpath: s for s in (*event.status.states, *event.status.extras)}
        self._refresh_rows()
        self._refresh_header()
        writing = any(s.status == Status.WRITING for s in event.status.states)
        if self._poll is not None:
            if writing:
                self._poll.resume()
            else:
                self._poll.pause()
        for notice in event.status.notices:
            if notice not in self._notices_shown:
                self._notices_shown.add(notice)
                self.notify(notice, title="Plan", severity="warning", timeout=10)

    @on(ScanFailed)
    def _scan_failed(self, event: ScanFailed) -> None:
        self._show_error(event.error)

    def _show_error(self, message: str) -> None:
        if message != self.scan_error:
            self.scan_error = message
            self.notify(message, title="Cannot check captures", severity="error", timeout=10)
        self.query_one(ProgressHeader).show_message(self.rig.project, message, error=True)

    # ------------------------------------------------------------------ rows
    def _block_label(self, block_id: str) -> str:
        for b in self.rig.blocks:
            if b.id == block_id:
                return b.name or b.id
        return block_id

    def _folder_label(self, folder: str) -> str:
        prefix = self.rig.rig_folder + "/"
        return folder[len(prefix):] if folder.startswith(prefix) else folder

    def row_status(self, relpath: str) -> str:
        state = self.states.get(relpath)
        if state is not None:
            return state.status.value
        return "checking" if relpath in self.present else "missing"

    def _capture_row(self, cap: Capture) -> Row:
        return Row(
            key=cap.relpath, status=self.row_status(cap.relpath), block=self._block_label(cap.block_id),
            kind=cap.kind, moved=cap.label, file=cap.filename, folder=self._folder_label(cap.folder),
            block_id=cap.block_id,
        )

    def _extra_row(self, state: CaptureState) -> Row:
        folder, _, name = state.relpath.rpartition("/")
        label = self._folder_label(folder)
        block_id = label.split("/", 1)[0]
        return Row(key=state.relpath, status="extra", block=self._block_label(block_id), kind="—", moved="—",
                   file=name, folder=label, block_id=block_id)

    def captures(self) -> list[Capture]:
        if self.status is not None:
            return [s.capture for s in self.status.states if s.capture is not None]
        return list(self.plan.captures) if self.plan is not None else []

    def all_rows(self) -> list[Row]:
        rows = [self._capture_row(c) for c in self.captures()]
        if self.status is not None:
            rows += [self._extra_row(s) for s in self.status.extras]
        return rows

    def visible_rows(self) -> list[Row]:
        rows = self.all_rows()
        if self.block_filter is not None:
            rows = [r for r in rows if r.block_id == self.block_filter]
        if self.status_filter != "all":
            rows = [r for r in rows if r.status == self.status_filter]
        return rows

    def _refresh_rows(self) -> None:
        rows = self.visible_rows()
        self.table.show(rows)
        self._show_filters(len(rows))
        self._refresh_detail()

    def _refresh_header(self) -> None:
        counts = self.counts()
        total = sum(counts.values())
        left = counts.get("missing", 0) + counts.get("invalid", 0)
        checking = self.checked if self.status is None else None
        self.query_one(ProgressHeader).show_progress(
            self.rig.project, counts.get("ready", 0), total, left, self.minutes_per_capture,
            writing=counts.get("writing", 0), checking=checking)

    def counts(self) -> dict[str, int]:
        """How many planned captures have each status (as shown)."""
        out: dict[str, int] = {}
        for cap in self.captures():
            st = self.row_status(cap.relpath)
            out[st] = out.get(st, 0) + 1
        return out

    def _show_filters(self, shown: int | None = None) -> None:
        block = self._block_label(self.block_filter) if self.block_filter else "all"
        total = len(self.all_rows())
        shown = total if shown is None else shown
        c = self.counts()
        parts = [f"{c.get('missing', 0)} missing", f"{c.get('invalid', 0)} invalid"]
        if c.get("writing"):
            parts.append(f"{c['writing']} writing")
        if self.status is not None and self.status.extras:
            parts.append(f"{len(self.status.extras)} extra")
        counts = " · " + ", ".join(parts)
        self.query_one("#filters", Static).update(Content.from_markup(
            "[dim]block[/] [b]$block[/] [dim](b)[/]  [dim]status[/] [b]$status[/] [dim](s)[/]"
            "  [dim]showing[/] $shown/$total$counts",
            block=block, status=self.status_filter, shown=str(shown), total=str(total), counts=counts,
        ))

    def selected_key(self) -> str | None:
        return self.table.cursor_key

    def selected_state(self) -> tuple[CaptureState | None, Capture | None]:
        key = self.selected_key()
        if key is None:
            return None, None
        state = self.states.get(key)
        capture = state.capture if state is not None else None
        if capture is None and state is None:
            capture = next((c for c in self.captures() if c.relpath == key), None)
        return state, capture

    def _refresh_detail(self) -> None:
        state, capture = self.selected_state()
        key = self.selected_key()
        self.query_one(CaptureDetail).show_state(
            self.rig, state, capture, status=self.row_status(key) if key else None)

    @on(DataTable.RowHighlighted, "#captures")
    def _row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._refresh_detail()

    @on(DataTable.RowSelected, "#captures")
    def _row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_show_detail()

    def _say(self, text: str | Content) -> None:
        self.query_one("#status-line", Static).update(text)

    # ------------------------------------------------------------------ actions
    def _next_to_bounce(self, include_current: bool) -> Capture | None:
        """The next missing/invalid capture from the cursor (wrapping): among the rows on
        screen first, then among all captures."""
        visible = {r.key for r in self.table_rows() if r.status in TO_BOUNCE}
        by_key = {c.relpath: c for c in self.captures()}
        keys = self.table.keys
        cursor = self.table.cursor_row if keys else -1
        ordered = keys[cursor:] + keys[:cursor] if include_current else keys[cursor + 1:] + keys[:cursor + 1]
        for key in ordered:
            if key in visible and key in by_key:
                return by_key[key]
        for cap in self.captures():
            if self.row_status(cap.relpath) in TO_BOUNCE:
                return cap
        return None

    def table_rows(self) -> list[Row]:
        return [r for k in self.table.keys if (r := self.table.row(k)) is not None]

    def action_copy_next(self) -> None:
        capture = self._next_to_bounce(include_current=True)
        if capture is None:
            self._say(Content.styled("Every capture is ready — nothing left to bounce.", "$status-ready"))
            self.notify("Every capture is ready — nothing left to bounce.")
            return
        self.table.move_to(capture.relpath)
        self.copy_name(capture.filename, capture.folder)

    def copy_name(self, name: str, folder: str) -> None:
        """Put ``name`` on the clipboard (OSC 52 + pyperclip when local) and on screen."""
        self.app.copy_to_clipboard(name)
        self._say(Content.from_markup(
            "[b $copied]Copied:[/] [b]$name[/] [dim]→[/] $folder/", name=name, folder=self._folder_label(folder)))
        self.notify(name, title="Copied to the clipboard", markup=False)
        self._copy_to_system(name)

    @work(thread=True, group="clipboard", exit_on_error=False)
    def _copy_to_system(self, name: str) -> None:
        if not self._tmux_checked:
            self._tmux_checked = True
            hint = tmux_clipboard_hint()
            if hint:
                self.post_message(ClipboardResult(name, False, hint))
        if not use_system_clipboard():
            return
        ok, detail = copy_with_pyperclip(name)
        self.post_message(ClipboardResult(name, ok, detail))

    @on(ClipboardResult)
    def _clipboard_result(self, event: ClipboardResult) -> None:
        if event.detail.startswith("tmux"):
            self.notify(event.detail, title="Clipboard", severity="warning", timeout=8)

    def action_next_missing(self) -> None:
        rows = self.table_rows()
        keys = [r.key for r in rows]
        if not keys:
            self._say("No rows to move through.")
            return
        cursor = self.table.cursor_row
        for key in keys[cursor + 1:] + keys[:cursor + 1]:
            row = self.table.row(key)
            if row is not None and row.status in TO_BOUNCE:
                self.table.move_to(key)
                self._say(Content.from_markup("Next to bounce: [b]$name[/]", name=row.file))
                return
        if any(self.row_status(c.relpath) in TO_BOUNCE for c in self.captures()):
            self._say("No missing or invalid capture among the rows shown; press b / s to widen the filter.")
        else:
            self._say(Content.styled("Every capture is ready — nothing left to bounce.", "$status-ready"))

    def action_cycle_block(self) -> None:
        ids = [None, *(b.id for b in self.rig.blocks)]
        self.block_filter = ids[(ids.index(self.block_filter) + 1) % len(ids)]
        self._refresh_rows()

    def action_cycle_status(self) -> None:
        i = STATUS_FILTERS.index(self.status_filter)
        self.status_filter = STATUS_FILTERS[(i + 1) % len(STATUS_FILTERS)]
        self._refresh_rows()

    def action_show_detail(self) -> None:
        from .setting import SettingScreen

        state, capture = self.selected_state()
        if state is None and capture is None:
            return
        key = self.selected_key()
        self.app.push_screen(SettingScreen(self.rig, state, capture, self.row_status(key) if key else "missing"))

    def action_open_folder(self) -> None:
        key = self.selected_key()
        folder = self.project.root / (key.rpartition("/")[0] if key else self.rig.rig_folder)
        command = open_folder_command(folder)
        if command is not None:
            try:
                subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            except OSError:
                command = None
            else:
                self._say(Content.from_markup("Opened [b]$folder[/]", folder=str(folder)))
                return
        why = "over SSH" if over_ssh() else "no desktop to open it on"
        self._say(Content.from_markup("Folder ($why): [b]$folder[/]", why=why, folder=str(folder)))
        self.notify(str(folder), title="Folder", markup=False)

    def action_training(self) -> None:
        """The training screen: attaches to a running job, or offers to start one."""
        self.app.show_training(self.project)

    def action_projects(self) -> None:
        self.app.show_picker(can_cancel=True)

    def action_new_project(self) -> None:
        self.app.show_setup()


__all__ = ["ChecklistScreen", "STATUS_FILTERS", "open_folder_command"]

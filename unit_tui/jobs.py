"""Training jobs: one detached training process per project, and how a TUI watches it.

A job is ``python -m unit_tui.jobrunner DIR`` started in its own session (closing the
TUI or losing SSH does not stop it). Everything about it lives in the project::

    .unit/jobs/job.json        {pid, started, finished, blocks, done_blocks, current, state,
                                resumed, minutes, message, error}   (atomic writes)
    .unit/jobs/job.lock        held (fcntl.flock) by the training process while it runs:
                               the kernel drops it when the process dies, even on kill -9
    .unit/jobs/progress.jsonl  one JSON event a line, appended by the job (see below)
    .unit/jobs/job.log         the job's stdout/stderr (tracebacks land here)
    .unit/jobs/cancel          present = please stop (the job also stops on SIGINT/SIGTERM)

States: ``running`` -> ``complete`` | ``cancelled`` | ``failed``. A job.json that says
``running`` while nobody holds the lock is an *interrupted* job (crash, kill -9, reboot):
the next start resumes from the checkpoints and says so.

Events in progress.jsonl (``type``): ``job`` (a job started or resumed: blocks, resumed,
message), ``block`` (training of a block begins: holdout names, resumed), ``progress``
(stage, step, total, loss, train_esr, holdout_esr, eta_s, elapsed_s and, now and then,
``per_item``; ``detail`` inside a long step: what it is doing), ``result`` (a block finished: status and its report), ``end`` (state,
error). Every event carries ``t`` (Unix time).

Nothing here imports torch, numpy or Textual: the app imports it at start.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .fsutil import atomic_write_bytes

JOBS_DIR = ".unit/jobs"
JOB_FILE = "job.json"
LOCK_FILE = "job.lock"
PROGRESS_FILE = "progress.jsonl"
LOG_FILE = "job.log"
CANCEL_FILE = "cancel"
RUNNER_MODULE = "unit_tui.jobrunner"
EXIT_JOB_RUNNING = 3
STATES = ("running", "complete", "cancelled", "failed")
FINISHED = ("complete", "cancelled", "failed")


class JobError(Exception):
    """A job could not be started (the reason is user-facing)."""


class JobRunning(JobError):
    """Another job is already training this project."""

    def __init__(self, info: "JobInfo | None"):
        self.info = info
        pid = f" (pid {info.pid})" if info is not None else ""
        super().__init__(f"A training job is already running for this project{pid}.")


def jobs_dir(root: str | os.PathLike) -> Path:
    return Path(root) / JOBS_DIR


def verdict(esr: float | None) -> str:
    """NAM's verdicts (as ``dsp.losses.verdict``, without importing torch)."""
    if esr is None:
        return "—"
    if esr < 0.01:
        return "great"
    if esr < 0.035:
        return "not bad"
    if esr < 0.1:
        return "may sound OK"
    return "poor"


# ---------------------------------------------------------------------------- job.json


@dataclass
class JobInfo:
    pid: int
    started: float
    blocks: list[str]
    state: str = "running"
    resumed: bool = False
    minutes: float | None = None
    finished: float | None = None
    done_blocks: list[str] = field(default_factory=list)
    current: str | None = None
    message: str = ""
    error: str | None = None
    alive: bool = False  # not stored: whether the process holds the lock now

    @property
    def interrupted(self) -> bool:
        """The file says running but the process is gone (crash, kill -9)."""
        return self.state == "running" and not self.alive

    @property
    def display_state(self) -> str:
        return "interrupted" if self.interrupted else self.state

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("alive")
        return d

    @classmethod
    def from_json(cls, d: dict) -> "JobInfo":
        known = {f for f in cls.__dataclass_fields__ if f != "alive"}
        return cls(**{k: v for k, v in d.items() if k in known})


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))


def write_job(root, info: JobInfo) -> None:
    _atomic_write_text(jobs_dir(root) / JOB_FILE, json.dumps(info.to_json(), indent=1))


def read_job(root) -> JobInfo | None:
    """The project's last job (None when there never was one), with ``alive`` filled in."""
    try:
        d = json.loads((jobs_dir(root) / JOB_FILE).read_text("utf-8"))
        info = JobInfo.from_json(d)
    except (OSError, ValueError, TypeError):
        return None
    info.alive = lock_held(root) and pid_alive(info.pid)
    return info


# ---------------------------------------------------------------------------- lock, pid


def pid_alive(pid: int | None) -> bool:
    """``os.kill(pid, 0)``, and not a zombie (a finished child not yet reaped)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class JobLock:
    """The project's training lock (``fcntl.flock`` on job.lock), held while training."""

    def __init__(self, root):
        self.path = jobs_dir(root) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, retry_s: float = 0.5) -> bool:
        """Take the lock; False when another process trains the project. Watchers probe
        it with a shared lock for a few microseconds, so a busy lock is retried briefly."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + retry_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.02)
        os.set_inheritable(fd, False)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def lock_held(root) -> bool:
    """Whether some process holds the project's training lock right now."""
    import fcntl

    path = jobs_dir(root) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        # Shared: probes from several TUIs never see each other, only a training process.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also releases our probe lock
    return False


def running_job(root) -> JobInfo | None:
    """The job training this project now, or None."""
    info = read_job(root)
    if lock_held(root):
        if info is None:  # the lock is taken but job.json not written yet
            info = JobInfo(pid=0, started=time.time(), blocks=[], message="starting")
        info.alive = True
        return info
    return None


# ---------------------------------------------------------------------------- start, cancel


def runner_command(root, blocks: list[str] | None = None, minutes: float | None = None,
                   fresh: bool = False, seed: int = 0) -> list[str]:
    cmd = [sys.executable, "-m", RUNNER_MODULE, str(Path(root).resolve())]
    for b in blocks or []:
        cmd += ["--block", b]
    if minutes is not None:
        cmd += ["--minutes", repr(float(minutes))]
    if fresh:
        cmd.append("--fresh")
    if seed:
        cmd += ["--seed", str(seed)]
    return cmd


def start_job(root, blocks: list[str] | None = None, minutes: float | None = None, *, fresh: bool = False,
              seed: int = 0, wait_s: float = 30.0) -> JobInfo:
    """Start the detached training process and wait until it has taken the lock.

    Raises :class:`JobRunning` when a job already trains the project (its info attached),
    :class:`JobError` when the process could not start (with the end of its log).
    Blocking for up to a second or two: call it from a thread worker in the UI.
    """
    root = Path(root).resolve()
    if lock_held(root):
        raise JobRunning(read_job(root))
    d = jobs_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    before = read_job(root)
    env = dict(os.environ)
    pkg_parent = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    with open(d / LOG_FILE, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start\n".encode())
        log.flush()
        proc = subprocess.Popen(runner_command(root, blocks, minutes, fresh, seed), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                cwd=str(root), close_fds=True)
    # Reap it when it ends (so a finished job is no zombie while this process lives).
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        info = read_job(root)
        if info is not None and info.pid == proc.pid and (before is None or info.started != before.started
                                                           or info.pid != before.pid):
            info.alive = info.state == "running"
            return info
        code = proc.poll()
        if code is not None:
            if code == EXIT_JOB_RUNNING:
                raise JobRunning(read_job(root))
            raise JobError(f"the training process ended at once: {log_tail(root, 1)}")
        time.sleep(0.05)
    raise JobError(f"the training process did not start within {wait_s:g} s: {log_tail(root)}")


def cancel_job(root) -> bool:
    """Ask the running job to stop (it writes its checkpoint, then exits). False: no job."""
    info = running_job(root)
    if info is None:
        return False
    _atomic_write_text(jobs_dir(root) / CANCEL_FILE, f"{time.time()}\n")
    if info.pid and pid_alive(info.pid):
        try:
            os.kill(info.pid, signal.SIGINT)
        except OSError:
            pass
    return True


def log_tail(root, lines: int = 6) -> str:
    try:
        text = (jobs_dir(root) / LOG_FILE).read_text("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = [ln for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(tail) or "(empty log)"


# ---------------------------------------------------------------------------- watching


class ProgressTail:
    """Reads the events appended to progress.jsonl since the last call."""

    def __init__(self, root):
        self.path = jobs_dir(root) / PROGRESS_FILE
        self.offset = 0
        self._ino: int | None = None
        self._partial = b""

    def read(self) -> tuple[bool, list[dict]]:
        """``(reset, events)``: ``reset`` when the file was replaced (a new job started)."""
        try:
            st = self.path.stat()
        except OSError:
            return False, []
        reset = False
        if self._ino is not None and (st.st_ino != self._ino or st.st_size < self.offset):
            self.offset, self._partial, reset = 0, b"", True
        self._ino = st.st_ino
        if st.st_size == self.offset:
            return reset, []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        events = []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                events.append(ev)
        return reset, events


@dataclass
class BlockView:
    """What a screen shows of one block's training."""

    block: str
    stage: str = "waiting"
    step: int = 0
    total: int = 0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    loss: float | None = None
    train_esr: float | None = None
    holdout_esr: float | None = None
    train_series: list[tuple[float, float]] = field(default_factory=list)   # (minutes, ESR)
    holdout_series: list[tuple[float, float]] = field(default_factory=list)
    per_item: dict[str, float] = field(default_factory=dict)
    holdout: set[str] = field(default_factory=set)
    status: str | None = None  # complete / cancelled / budget once finished
    report: dict | None = None
    resumed: bool = False
    budget_s: float | None = None  # the block's share of the job's time budget
    events: int = 0
    detail: str = ""  # what a long step is doing now (the init's descents, knob searches)

    def rows(self) -> list[tuple[str, bool, float | None, str]]:
        """(capture, held out, ESR, verdict), worst first."""
        if self.report and self.report.get("items"):
            items = [(it["name"], bool(it.get("holdout")), it.get("esr")) for it in self.report["items"]]
        else:
            items = [(n, n in self.holdout, e) for n, e in self.per_item.items()]
        items.sort(key=lambda r: (r[2] is None, -(r[2] or 0.0)))
        return [(n, h, e, verdict(e)) for n, h, e in items]


class JobView:
    """The state of a job rebuilt from its events (pure; tested without a UI)."""

    MAX_POINTS = 2000

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.blocks: dict[str, BlockView] = {}
        self.order: list[str] = []
        self.current: str | None = None
        self.state: str | None = None
        self.resumed = False
        self.message = ""
        self.error: str | None = None
        self.events = 0

    def block(self, block_id: str) -> BlockView:
        if block_id not in self.blocks:
            self.blocks[block_id] = BlockView(block_id)
            self.order.append(block_id)
        return self.blocks[block_id]

    def apply(self, ev: dict) -> None:
        self.events += 1
        kind = ev.get("type")
        if kind == "job":
            self.state = "running"
            self.resumed = bool(ev.get("resumed"))
            self.message = ev.get("message") or ""
            self.error = None
            for b in ev.get("blocks") or []:
                self.block(b)
        elif kind == "block":
            bv = self.block(ev["block"])
            self.current = bv.block
            bv.holdout = set(ev.get("holdout") or [])
            bv.resumed = bool(ev.get("resumed"))
            bv.budget_s = ev.get("budget_s")
            bv.status, bv.report = None, None
            bv.stage = "starting"
        elif kind == "progress":
            bv = self.block(ev["block"])
            self.current = bv.block
            bv.events += 1
            bv.stage, bv.step, bv.total = ev.get("stage", bv.stage), ev.get("step", 0), ev.get("total", 0)
            bv.eta_s, bv.elapsed_s, bv.loss = ev.get("eta_s"), ev.get("elapsed_s") or 0.0, ev.get("loss")
            bv.train_esr, bv.holdout_esr = ev.get("train_esr"), ev.get("holdout_esr")
            bv.detail = ev.get("detail") or ""
            if bv.budget_s is not None:  # the fitter cuts its stages short to meet the budget
                left = max(0.0, bv.budget_s - bv.elapsed_s)
                bv.eta_s = left if bv.eta_s is None else min(bv.eta_s, left)
            x = bv.elapsed_s / 60.0
            if _positive(bv.train_esr):
                _append(bv.train_series, (x, bv.train_esr), self.MAX_POINTS)
            if _positive(bv.holdout_esr):
                _append(bv.holdout_series, (x, bv.holdout_esr), self.MAX_POINTS)
            if ev.get("per_item"):
                bv.per_item.update({k: v for k, v in ev["per_item"].items() if v is not None})
        elif kind == "result":
            bv = self.block(ev["block"])
            bv.status = ev.get("status")
            bv.report = ev.get("report")
            bv.stage = "done"
            bv.eta_s = 0.0
        elif kind == "end":
            self.state = ev.get("state")
            self.error = ev.get("error")
            if ev.get("message"):
                self.message = ev["message"]

    def apply_all(self, events: list[dict]) -> None:
        for ev in events:
            self.apply(ev)


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and v > 0 and v == v and v != float("inf")


def _append(series: list, point, limit: int) -> None:
    series.append(point)
    if len(series) > limit:  # keep every other old point: the curve's shape stays
        del series[: limit // 2: 2]


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA —"
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"ETA {seconds:.0f} s"
    if seconds < 5400:
        return f"ETA {seconds / 60:.1f} min"
    return f"ETA {seconds / 3600:.1f} h"


__all__ = ["JobInfo", "JobLock", "JobView", "BlockView", "JobError", "JobRunning", "ProgressTail",
           "start_job", "cancel_job", "read_job", "write_job", "running_job", "lock_held", "pid_alive",
           "jobs_dir", "verdict", "fmt_eta", "log_tail"]

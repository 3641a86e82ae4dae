"""The training process: ``python -m unit_tui.jobrunner DIR [--block ID] [--minutes N]``.

Started detached by :func:`unit_tui.jobs.start_job` (its own session, no terminal), or
run in the foreground by ``unit-trainer train``: both go through :func:`run_training`,
which takes the project's lock, writes ``job.json`` and appends progress events to
``progress.jsonl`` (see :mod:`unit_tui.jobs` for the protocol).

Stopping: SIGINT, SIGTERM or a ``cancel`` file -> the fitter stops after writing its
checkpoint, the twin as it stands is saved, the job ends ``cancelled``; the next start
resumes. After a crash or kill -9 the next start finds job.json saying ``running`` with
nobody holding the lock, resumes from the checkpoints and says so.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from .jobs import (CANCEL_FILE, EXIT_JOB_RUNNING, PROGRESS_FILE, JobInfo, JobLock, JobRunning, jobs_dir,
                   read_job, write_job)

PROGRESS_MIN_INTERVAL_S = 0.2   # at most 5 progress events a second (plus every stage change)
PER_ITEM_INTERVAL_S = 2.0       # per-capture ESR snapshots
CANCEL_POLL_S = 0.25


class Recorder:
    """Writes job.json and progress.jsonl for one run (the only writer of both)."""

    def __init__(self, root: Path, info: JobInfo, append: bool):
        self.root = root
        self.info = info
        d = jobs_dir(root)
        d.mkdir(parents=True, exist_ok=True)
        path = d / PROGRESS_FILE
        if not append and path.exists():
            path.unlink()  # a new inode: watchers see the reset
        self._f = open(path, "a", encoding="utf-8")
        self._last = 0.0
        self._last_items = 0.0
        self._stage: tuple[str, str] | None = None
        self.block: str | None = None

    def event(self, kind: str, **data) -> None:
        data = {"type": kind, "t": time.time(), **data}
        self._f.write(json.dumps(data, default=_jsonable) + "\n")
        self._f.flush()

    def save(self) -> None:
        write_job(self.root, self.info)

    def start(self) -> None:
        self.save()
        self.event("job", pid=self.info.pid, blocks=self.info.blocks, resumed=self.info.resumed,
                   message=self.info.message, minutes=self.info.minutes)

    def block_start(self, block_id: str, holdout: list[str], resumed: bool, budget_s: float | None = None) -> None:
        self.block = block_id
        self.info.current = block_id
        self.save()
        self.event("block", block=block_id, holdout=holdout, resumed=resumed, budget_s=budget_s)
        self._stage = None

    def progress(self, ev) -> None:
        """``on_progress`` for the fitter: throttled, every stage change kept."""
        now = time.monotonic()
        key = (self.block or "", ev.stage)
        changed = key != self._stage
        last = ev.step >= ev.total
        if not (changed or last or now - self._last >= PROGRESS_MIN_INTERVAL_S):
            return
        self._stage = key
        self._last = now
        data = dict(block=self.block, stage=ev.stage, step=ev.step, total=ev.total, loss=ev.loss,
                    train_esr=ev.train_esr, holdout_esr=ev.holdout_esr, eta_s=ev.eta_s, elapsed_s=ev.elapsed_s)
        if ev.detail:
            data["detail"] = ev.detail
        if ev.per_item_esr and (changed or last or now - self._last_items >= PER_ITEM_INTERVAL_S):
            self._last_items = now
            data["per_item"] = {k: float(v) for k, v in ev.per_item_esr.items()}
        self.event("progress", **data)

    def block_done(self, block_id: str, status: str, report: dict) -> None:
        if status != "cancelled" and block_id not in self.info.done_blocks:
            self.info.done_blocks.append(block_id)
        self.save()
        self.event("result", block=block_id, status=status, report=report)

    def end(self, state: str, error: str | None = None, message: str = "") -> None:
        self.info.state = state
        self.info.finished = time.time()
        self.info.error = error
        self.info.current = None
        if message:
            self.info.message = message
        self.save()
        self.event("end", state=state, error=error, message=message)
        self._f.close()


def _jsonable(o):
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def holdout_names(project, block_id: str) -> list[str]:
    """The held-out captures of a block (as :func:`unit_tui.training.load_items` picks them)."""
    from .training import holdout_indices

    caps = [c for c in project.plan().for_block(block_id)]
    held = holdout_indices([c.index for c in caps if c.kind == "chaos"])
    return [c.filename.removesuffix(".wav") for c in caps if c.kind == "chaos" and c.index in held]


def trainable_blocks(project) -> list[str]:
    """The blocks with at least one ready capture (a job started from the TUI trains these)."""
    from .checks import Status
    from .project import ProjectError

    status = project.scan()
    ready = {s.capture.block_id for s in status.states if s.capture is not None and s.status == Status.READY}
    blocks = [b.id for b in project.rig.blocks if b.id in ready]
    if not blocks:
        raise ProjectError("nothing to train yet: no block has a ready capture. Bounce some first.")
    return blocks


def run_training(project, block_ids: list[str] | None = None, *, minutes: float | None = None, seed: int = 0,
                 fresh: bool | None = None, should_stop: Callable[[], bool] = lambda: False,
                 on_progress: Callable | None = None, on_block: Callable | None = None,
                 on_result: Callable | None = None) -> JobInfo:
    """Train the blocks as this project's one job; returns the final :class:`JobInfo`.

    ``fresh``: True starts over, False resumes any checkpoint (the CLI's ``train``), None
    decides: resume what an unfinished job left (cancelled, failed, interrupted), start a
    block afresh when the last job completed it. Raises :class:`JobRunning` when another
    process trains the project. Exceptions from training end the job ``failed`` and
    propagate. ``on_*`` callbacks let the CLI print as it goes.
    """
    from .training import checkpoint_path, train_block

    root = project.root
    lock = JobLock(root)
    if not lock.acquire():
        raise JobRunning(read_job(root))
    try:
        if block_ids:
            blocks = list(block_ids)
            for b in blocks:
                project.rig.block(b)  # a clear error for an unknown id
        else:
            blocks = trainable_blocks(project)
        prev = read_job(root)  # we hold the lock: a "running" one was interrupted
        unfinished = prev is not None and prev.state != "complete" and prev.blocks == blocks
        skip = [b for b in (prev.done_blocks if unfinished else []) if b in blocks]
        notes = []
        if prev is not None and prev.state == "running":
            notes.append(f"the previous job (pid {prev.pid}) stopped unexpectedly")
        elif prev is not None and prev.state in ("cancelled", "failed") and unfinished:
            notes.append("the previous job failed" if prev.state == "failed" else "the previous job was cancelled")
        per_block_fresh = {}
        for b in blocks:
            if fresh is not None:
                per_block_fresh[b] = fresh
            else:
                done_before = prev is not None and prev.state == "complete" and b in prev.done_blocks
                per_block_fresh[b] = done_before
        resuming = [b for b in blocks if b not in skip and not per_block_fresh[b]
                    and checkpoint_path(project, b).exists()]
        resumed = bool(resuming or skip)
        if resumed:
            what = ", ".join(resuming) if resuming else "the remaining blocks"
            msg = f"Resumed from the last checkpoint ({what})"
            if skip:
                msg += f"; already trained: {', '.join(skip)}"
            if notes:
                msg = notes[0][0].upper() + notes[0][1:] + ". " + msg
            message = msg + "."
        else:
            message = "Started afresh." if any(checkpoint_path(project, b).exists() for b in blocks) else "Started."
        for b in blocks:
            if per_block_fresh[b] and b not in skip:
                try:
                    checkpoint_path(project, b).unlink()
                except OSError:
                    pass
        try:
            (jobs_dir(root) / CANCEL_FILE).unlink()
        except OSError:
            pass
        info = JobInfo(pid=os.getpid(), started=time.time(), blocks=blocks, state="running", resumed=resumed,
                       minutes=minutes, done_blocks=list(skip), message=message)
        rec = Recorder(root, info, append=resumed)
        rec.start()
        cancel_file = jobs_dir(root) / CANCEL_FILE
        polled = {"t": 0.0, "stop": False}

        def stop() -> bool:
            if polled["stop"] or should_stop():
                polled["stop"] = True
                return True
            now = time.monotonic()
            if now - polled["t"] >= CANCEL_POLL_S:
                polled["t"] = now
                polled["stop"] = cancel_file.exists()
            return polled["stop"]

        def progress(ev) -> None:
            rec.progress(ev)
            if on_progress is not None:
                on_progress(ev)

        todo = [b for b in blocks if b not in skip]
        budget = None if minutes is None else minutes / max(1, len(todo))
        try:
            for b in todo:
                will_resume = b in resuming
                rec.block_start(b, holdout_names(project, b), will_resume,
                                None if budget is None else budget * 60.0)
                if on_block is not None:
                    on_block(b)
                try:
                    fitted, meta = train_block(project, b, minutes=budget, seed=seed, fresh=not will_resume,
                                               on_progress=progress, should_stop=stop)
                except Exception as exc:  # noqa: BLE001 - e.g. captures changed since the checkpoint
                    if not will_resume or stop():
                        raise
                    rec.event("note", block=b, message=f"{b}: the checkpoint no longer fits the captures"
                                                       f" ({type(exc).__name__}); this block starts afresh")
                    fitted, meta = train_block(project, b, minutes=budget, seed=seed, fresh=True,
                                               on_progress=progress, should_stop=stop)
                rep = fitted.report()
                rec.block_done(b, fitted.status, rep)
                if on_result is not None:
                    on_result(b, fitted, meta)
                if stop():
                    rec.end("cancelled", message="Cancelled: the checkpoint is saved; start again to resume.")
                    return info
        except BaseException as exc:
            state = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
            rec.end(state, error=f"{type(exc).__name__}: {exc}")
            raise
        rec.end("complete", message="Training complete.")
        return info
    finally:
        lock.release()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m unit_tui.jobrunner", description=__doc__.splitlines()[0])
    p.add_argument("dir")
    p.add_argument("--block", action="append", help="a block to train (repeat); all blocks when left out")
    p.add_argument("--minutes", type=float, help="wall-clock budget for the whole job")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="ignore checkpoints and start over")
    args = p.parse_args(argv)

    import torch  # noqa: F401  (before the handlers: its import is the slow part)

    torch.set_num_threads(1)
    from .project import Project, ProjectError

    flag = {"stop": False}

    def on_signal(signum, frame):
        flag["stop"] = True
        print(f"signal {signum}: stopping after the next checkpoint", flush=True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        project = Project.open(Path(args.dir))
    except ProjectError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    print(f"{time.strftime('%H:%M:%S')} job pid {os.getpid()} on {project.root}", flush=True)
    try:
        info = run_training(project, args.block, minutes=args.minutes, seed=args.seed,
                            fresh=True if args.fresh else None, should_stop=lambda: flag["stop"],
                            on_block=lambda b: print(f"{time.strftime('%H:%M:%S')} training {b}", flush=True),
                            on_result=lambda b, f, m: print(f"{time.strftime('%H:%M:%S')} {b}: {f.status}",
                                                            flush=True))
    except JobRunning as exc:
        print(str(exc), flush=True)
        return EXIT_JOB_RUNNING
    except ProjectError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    except Exception:  # noqa: BLE001 - recorded as failed; the traceback goes to job.log
        traceback.print_exc()
        return 1
    print(f"{time.strftime('%H:%M:%S')} {info.message}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

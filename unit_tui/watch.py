"""Watching a project folder for bounced files.

A watchdog ``Observer`` runs in its own thread. Its handler does nothing but hand a
:class:`~unit_tui.messages.FilesChanged` to a thread-safe callback (the screen's
``post_message``); the screen debounces and runs the actual scan in a worker thread.

Events the trainer causes itself are ignored, or reading a capture to check it would
trigger another scan forever: file *opened* / *closed without writing*, anything under
the project's ``.unit/`` state folder, and temporary files of our own atomic writes.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from textual.message import Message
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from .messages import FilesChanged

#: Event types that can change what a scan sees.
RELEVANT_EVENTS = frozenset({"created", "modified", "deleted", "moved", "closed"})


def is_relevant(root: Path, event: FileSystemEvent) -> bool:
    """Whether ``event`` could change the checklist."""
    if event.event_type not in RELEVANT_EVENTS:
        return False
    for raw in (event.src_path, getattr(event, "dest_path", "") or ""):
        if not raw:
            continue
        path = Path(raw.decode() if isinstance(raw, bytes) else raw)
        try:
            parts = path.relative_to(root).parts
        except ValueError:
            continue
        if not parts or parts[0] == ".unit":
            continue
        if event.is_directory and event.event_type == "modified":
            continue  # a directory's mtime: the file event itself follows
        return True
    return False


class ChangeSet:
    """Paths (relative to the project, POSIX) that changed since the last :meth:`take`.

    Filled by the watcher thread, emptied by the scan worker: unlike messages, which
    collapse into one, no path is lost.
    """

    def __init__(self) -> None:
        self._paths: set[str] = set()
        self._lock = threading.Lock()

    def add(self, relpath: str) -> None:
        with self._lock:
            self._paths.add(relpath)

    def take(self) -> set[str]:
        with self._lock:
            paths, self._paths = self._paths, set()
        return paths


def _relpaths(root: Path, event: FileSystemEvent) -> list[str]:
    out = []
    for raw in (event.src_path, getattr(event, "dest_path", "") or ""):
        if raw:
            path = Path(raw.decode() if isinstance(raw, bytes) else raw)
            try:
                out.append(path.relative_to(root).as_posix())
            except ValueError:
                pass
    return out


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, notify: Callable[[Message], object], changes: ChangeSet):
        self.root = root
        self.notify = notify
        self.changes = changes

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not is_relevant(self.root, event):
            return
        paths = _relpaths(self.root, event)
        for rel in paths:
            self.changes.add(rel)
        try:
            self.notify(FilesChanged(tuple(paths)))
        except Exception:  # noqa: BLE001 - the app may be closing; never kill the observer
            pass


class ProjectWatcher:
    """Watch ``root`` recursively; call ``notify(FilesChanged(...))`` from the observer thread
    and add the changed paths to ``changes``.

    ``notify`` must be thread-safe: pass a widget's ``post_message``.
    """

    def __init__(self, root: Path, notify: Callable[[Message], object], changes: ChangeSet | None = None):
        self.root = Path(root).resolve()
        self.notify = notify
        self.changes = changes if changes is not None else ChangeSet()
        self._observer = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    def start(self) -> None:
        """Start watching. Raises OSError (e.g. inotify limits) for the caller to report."""
        from watchdog.observers import Observer

        with self._lock:
            if self._observer is not None:
                return
            observer = Observer(timeout=0.1)
            observer.daemon = True
            observer.schedule(_Handler(self.root, self.notify, self.changes), str(self.root), recursive=True)
            observer.start()
            self._observer = observer

    def stop(self) -> None:
        with self._lock:
            observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=2)


__all__ = ["ChangeSet", "ProjectWatcher", "RELEVANT_EVENTS", "is_relevant"]

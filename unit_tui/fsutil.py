"""Atomic file writes (temp file in the same folder + ``os.replace``) and file stat keys.

Standard library only, so anything may import it without slowing the app's start-up.
The final name only ever holds the old content or the complete new content.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def stat_key(path) -> tuple[int, int]:
    """(size, mtime_ns) of ``path``, or (-1, -1) when it cannot be read: a file changed
    when its key did."""
    try:
        st = Path(path).stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def _temp_beside(path: Path) -> tuple[int, str]:
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))


def _finish(tmp: str, path: Path) -> None:
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_file(path):
    """Open a temp file beside ``path`` for binary writing; on success it replaces
    ``path`` in one step (``os.replace``), on any error it is removed. The final name
    only ever holds the old content or the complete new content."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _finish(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_copy(src, path) -> None:
    """Copy the file ``src`` to ``path`` byte for byte, atomically."""
    with open(src, "rb") as fin, atomic_file(path) as f:
        shutil.copyfileobj(fin, f, 1 << 20)

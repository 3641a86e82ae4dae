"""Preview renders to listen to in Logic: the twin at every captured setting.

For each ready capture of a block, in ``previews/<block id>/``:

    <capture>_twin.wav   the test signal through the twin at the capture's setting
    <capture>_AB.wav     the capture, half a second of silence, then the twin (A/B)

32-bit float WAVs at the project's rate, written atomically. Files are never
overwritten unless this module wrote them and they are unchanged since: what it wrote
is remembered (size + mtime) in ``.unit/previews.json``; any other file in the way is
left alone and reported.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

PREVIEWS_DIR = "previews"
MANIFEST = "previews.json"
GAP_S = 0.5


@dataclass
class PreviewResult:
    written: list[str] = field(default_factory=list)   # project-relative paths
    skipped: list[str] = field(default_factory=list)   # "path: why"
    cancelled: bool = False

    @property
    def folder(self) -> str:
        return PREVIEWS_DIR


def _manifest_path(project) -> Path:
    return project.state_dir / MANIFEST


def _load_manifest(project) -> dict[str, list[int]]:
    try:
        data = json.loads(_manifest_path(project).read_text("utf-8"))
        return {k: list(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _save_manifest(project, manifest: dict) -> None:
    from .fsutil import atomic_write_bytes

    _manifest_path(project).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(_manifest_path(project), json.dumps(manifest, indent=1, sort_keys=True).encode())


def _ours(path: Path, rel: str, manifest: dict) -> bool:
    """May ``path`` be replaced: absent, or written by us and unchanged since."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return True
    return manifest.get(rel) == [st.st_size, st.st_mtime_ns]


def write_previews(project, block_id: str, model=None, *, on_progress: Callable[[int, int, str], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> PreviewResult:
    """Render the twin at every ready capture of ``block_id`` (see the module doc)."""
    import numpy as np

    from .audio_io import CaptureReadError, read_capture, write_wav_atomic
    from .checks import Status
    from .training import load_model

    model = model or load_model(project, block_id)
    block = project.rig.block(block_id)
    modelled = {k.name for k in block.modelled_knobs}
    status = project.scan()
    states = [s for s in status.states
              if s.capture is not None and s.capture.block_id == block_id and s.status == Status.READY]
    loaded = project.load_input()
    x, sr = loaded.audio, loaded.sample_rate
    out_dir = project.root / PREVIEWS_DIR / block_id
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _load_manifest(project)
    result = PreviewResult()
    gap = np.zeros(int(GAP_S * sr), dtype=np.float32)
    for i, s in enumerate(states):
        if should_stop is not None and should_stop():
            result.cancelled = True
            break
        name = s.capture.filename.removesuffix(".wav")
        if on_progress is not None:
            on_progress(i, len(states), name)
        targets = {kind: out_dir / f"{name}_{kind}.wav" for kind in ("twin", "AB")}
        rels = {kind: p.relative_to(project.root).as_posix() for kind, p in targets.items()}
        blocked = [rels[k] for k in targets if not _ours(targets[k], rels[k], manifest)]
        if blocked:
            result.skipped += [f"{r}: a file that UNIT Trainer did not write is there; left alone" for r in blocked]
            continue
        try:
            y_cap = read_capture(project.path(s.relpath)).audio
        except CaptureReadError as exc:
            result.skipped.append(f"{s.relpath}: {exc}")
            continue
        knobs = {k: v for k, v in s.capture.setting.items() if k in modelled}
        y_twin = np.asarray(model.render(knobs, x, sr), dtype=np.float32)
        ab = np.concatenate([np.asarray(y_cap, dtype=np.float32), gap, y_twin])
        for kind, audio in (("twin", y_twin), ("AB", ab)):
            write_wav_atomic(targets[kind], audio, sr, subtype="FLOAT")
            st = targets[kind].stat()
            manifest[rels[kind]] = [st.st_size, st.st_mtime_ns]
            result.written.append(rels[kind])
        _save_manifest(project, manifest)
    if on_progress is not None and not result.cancelled:
        on_progress(len(states), len(states), "")
    return result


def previews_folder(project, block_id: str) -> Path:
    return project.root / PREVIEWS_DIR / block_id


__all__ = ["PreviewResult", "write_previews", "previews_folder", "PREVIEWS_DIR"]

"""A trainer project on disk: its rig, test signal, capture folders and their status.

Layout (DIR is the trainer project folder, e.g. ``UNIT 1 - Trainer``)::

    DIR/
      rig.toml                     the rig (copied from the template or the user's file)
      input.wav                    the test signal every capture is a bounce of
      .unit/                       trainer state (input layout, models, jobs, temp files)
      <rig_folder>/<block id>/01_Single_Sweeps/*.wav
      <rig_folder>/<block id>/02_Chaos_Mode/chaos_map.csv + Chaos_Full_NN.wav

The user's files are never modified, renamed or deleted: the project only creates
folders, writes its own files atomically (temp file + rename), and appends rows to a
chaos map by writing a new file with the old rows unchanged plus the new ones.

Pure Python + numpy (no Textual, no torch).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from . import plan as planmod
from .plan import Capture, ChaosMap, Plan, PlanError
from .rig import Rig, RigError, parse_rig
from .fsutil import atomic_write_bytes
from .fsutil import stat_key as _stat_key
from .status import CheckResult, Status

if TYPE_CHECKING:  # numpy/soundfile are imported when a file is first checked, not at start-up
    from .checks import CheckContext, ReadinessTracker


def read_capture(path):
    from .audio_io import read_capture as _read

    return _read(path)


def check_capture(path, ctx, now=None):
    from .checks import check_capture as _check

    return _check(path, ctx, now=now)



RIG_FILE = "rig.toml"
STATE_DIR = ".unit"
LAYOUT_FILE = "input_layout.json"
CHECK_CACHE_FILE = "check_cache.json"
CHECK_CACHE_VERSION = 1  # bump when check_capture's verdicts change


class ProjectError(Exception):
    """Something about a project folder that the user must fix; the message says how."""


@dataclass
class CaptureState:
    """The status of one planned capture (or of an extra file that matches none)."""

    relpath: str
    result: CheckResult
    capture: Capture | None = None
    suggestion: str | None = None  # for extra files: the closest expected name

    @property
    def status(self) -> Status:
        return self.result.status

    @property
    def reason(self) -> str:
        if self.status == Status.EXTRA:
            return self.suggestion or "matches no capture of the plan"
        return self.result.summary


@dataclass
class ProjectStatus:
    states: list[CaptureState]
    extras: list[CaptureState] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for s in self.states if s.status == status)

    @property
    def total(self) -> int:
        return len(self.states)

    @property
    def ready(self) -> int:
        return self.count(Status.READY)

    def next_missing(self, after: int = -1) -> CaptureState | None:
        """The first capture after index ``after`` (wrapping) that is not ready."""
        n = len(self.states)
        for k in range(n):
            s = self.states[(after + 1 + k) % n]
            if s.status in (Status.MISSING, Status.INVALID):
                return s
        return None

    def to_json(self) -> dict:
        def one(s: CaptureState) -> dict:
            return {
                "path": s.relpath, "status": s.status.value,
                "block": s.capture.block_id if s.capture else None,
                "problems": s.result.problems, "notes": s.result.notes,
                "latency_samples": s.result.latency_samples, "suggestion": s.suggestion,
            }
        return {
            "ready": self.ready, "total": self.total,
            "counts": {st.value: self.count(st) for st in Status if st != Status.EXTRA},
            "captures": [one(s) for s in self.states],
            "extra": [one(s) for s in self.extras],
            "notices": self.notices,
        }


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ProjectError(f"{path}: missing. {what}") from None
    except UnicodeDecodeError:
        raise ProjectError(f"{path}: not a UTF-8 text file.") from None


class Project:
    """A trainer project folder. Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, root: Path, rig: Rig):
        self.root = Path(root)
        self.rig = rig
        self._plan: Plan | None = None
        self._plan_key: tuple | None = None
        self._ctx: CheckContext | None = None
        self._cache: dict[str, tuple[int, int, CheckResult]] | None = None  # loaded lazily from disk
        self._cache_dirty = False
        self.messages: list[str] = []  # what `create` found worth telling the user

    # ------------------------------------------------------------------ open / create
    @classmethod
    def open(cls, root: str | Path) -> "Project":
        root = Path(root).expanduser()
        if not root.is_dir():
            raise ProjectError(f"{root}: no such folder. Create a project with `unit-trainer new {root} --template unit1`.")
        rig_path = root / RIG_FILE
        if not rig_path.is_file():
            raise ProjectError(f"{root}: not a trainer project (no {RIG_FILE}). Create one with `unit-trainer new`.")
        try:
            rig = parse_rig(_read_text(rig_path, ""), source=str(rig_path))
        except RigError as exc:
            raise ProjectError(str(exc)) from None
        return cls(root, rig)

    @classmethod
    def create(cls, root: str | Path, rig_text: str, *, source: str = "rig", input_wav: str | Path | None = None,
               seed: int = 0, signal_seconds: float | None = None) -> "Project":
        """Make a new project folder: rig file, test signal, folder tree, chaos maps.

        ``root`` must not exist or be an empty folder. ``input_wav`` is copied byte for
        byte (e.g. the NAM trainer's input.wav); without it a test signal is generated.
        """
        from dsp.testsignal import analyse_input, generate_test_signal

        root = Path(root).expanduser()
        try:
            rig = parse_rig(rig_text, source=source)
        except RigError as exc:
            raise ProjectError(str(exc)) from None
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ProjectError(
                f"{root} already exists and is not empty; nothing was changed. Choose a new folder,"
                f" e.g. {root / rig.project}."
            )
        from .audio_io import CaptureReadError, write_wav_atomic
        from .fsutil import atomic_copy

        loaded = None
        if input_wav is not None:
            input_wav = Path(input_wav).expanduser()
            try:
                loaded = read_capture(input_wav)
            except CaptureReadError as exc:
                raise ProjectError(f"--input {input_wav}: {exc}") from None
            if loaded.sample_rate not in (44100, 48000, 88200, 96000):
                raise ProjectError(
                    f"--input {input_wav}: {loaded.sample_rate} Hz; use a 48 kHz (preferred) or 44.1 kHz test signal."
                )
            if loaded.frames < loaded.sample_rate:
                raise ProjectError(f"--input {input_wav}: only {loaded.frames / loaded.sample_rate:.2f} s long; use at least a few seconds (about a minute is typical).")
        messages = []
        if loaded is not None and loaded.sample_rate != rig.sample_rate:
            messages.append(f"the rig said {rig.sample_rate} Hz; using the input's {loaded.sample_rate} Hz.")
            data = rig.to_toml_dict()
            data["sample_rate"] = loaded.sample_rate
            rig_text = _dumps(data)
            rig = parse_rig(rig_text, source=source)

        if loaded is not None:
            layout = analyse_input(loaded.audio, loaded.sample_rate)
            audio = None
        else:
            kwargs = {} if signal_seconds is None else {"duration_s": signal_seconds}
            try:
                audio, layout = generate_test_signal(rig.sample_rate, seed=seed, **kwargs)
            except ValueError as exc:
                raise ProjectError(f"cannot generate the test signal: {exc}") from None

        # Everything is decided: write. rig.toml goes last, so a folder only becomes a
        # project once complete; a failure removes the folder again if we made it.
        made_root = not root.exists()
        try:
            root.mkdir(parents=True, exist_ok=True)
            state = root / STATE_DIR
            state.mkdir(exist_ok=True)
            input_path = root / rig.test_signal
            if audio is None:
                atomic_copy(input_wav, input_path)
            else:
                write_wav_atomic(input_path, audio, rig.sample_rate, subtype="PCM_24")
            layout_data = {**layout.to_dict(), "_input_key": list(_stat_key(input_path))}
            atomic_write_bytes(state / LAYOUT_FILE, json.dumps(layout_data, indent=1).encode())
            for block in rig.blocks:
                (root / planmod.sweep_folder(rig, block)).mkdir(parents=True, exist_ok=True)
                if block.chaos_count:
                    (root / planmod.chaos_folder(rig, block)).mkdir(parents=True, exist_ok=True)
                    rows = planmod.new_chaos_rows(block, 1, block.chaos_count)
                    atomic_write_bytes(root / planmod.chaos_map_relpath(rig, block),
                                       planmod.chaos_csv_text(block, rows).encode())
            atomic_write_bytes(root / RIG_FILE, rig_text.encode("utf-8"))
        except BaseException:
            if made_root:
                shutil.rmtree(root, ignore_errors=True)
            raise
        project = cls(root, rig)
        project.messages = messages + list(layout.notes)
        return project

    # ------------------------------------------------------------------ paths
    @property
    def rig_path(self) -> Path:
        return self.root / RIG_FILE

    @property
    def input_path(self) -> Path:
        return self.root / self.rig.test_signal

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    # ------------------------------------------------------------------ plan
    def _chaos_map_path(self, block) -> Path:
        return self.root / planmod.chaos_map_relpath(self.rig, block)

    def chaos_map(self, block) -> ChaosMap | None:
        path = self._chaos_map_path(block)
        if not path.exists():
            return None
        try:
            return planmod.parse_chaos_map(_read_text(path, ""), block, source=str(path))
        except PlanError as exc:
            raise ProjectError(str(exc)) from None

    def plan(self) -> Plan:
        """The plan, re-read when a chaos map changes on disk."""
        key = tuple(_stat_key(self._chaos_map_path(b)) for b in self.rig.blocks)
        if self._plan is None or key != self._plan_key:
            maps = {b.id: self.chaos_map(b) for b in self.rig.blocks}
            self._plan = planmod.build_plan(self.rig, maps)
            self._plan_key = key
        return self._plan

    def add_chaos(self, block_id: str, count: int) -> list[Capture]:
        """Append ``count`` presets to the block's chaos map (existing rows unchanged)."""
        if count < 1 or count > 999:
            self._chaos_block(block_id)
            raise ProjectError(f"--count must be between 1 and 999, got {count}.")
        return self._append_chaos(block_id, lambda block, start: planmod.new_chaos_rows(block, start, count))

    def add_chaos_settings(self, block_id: str, settings: list[dict[str, float]]) -> list[Capture]:
        """Append chaos presets with the GIVEN settings (e.g. the trainer's proposals),
        numbered after the last row; knobs left out sit at their reference/fixed value.
        Existing rows are unchanged, byte for byte."""
        if not settings:
            raise ProjectError("no settings to add.")

        def rows(block, start):
            out = []
            for i, setting in enumerate(settings):
                unknown = set(setting) - {k.name for k in block.knobs}
                if unknown:
                    raise ProjectError(f"{block_id}: no knob {sorted(unknown)[0]!r}.")
                full = {**block.reference_setting(), **{k: float(v) for k, v in setting.items()}}
                for knob in block.knobs:
                    v = full[knob.name]
                    if not knob.minimum <= v <= knob.maximum:
                        raise ProjectError(f"{knob.name}={v:g} is outside {knob.minimum:g}-{knob.maximum:g}.")
                out.append((planmod.chaos_filename(start + i), full))
            return out

        return self._append_chaos(block_id, rows)

    def _chaos_block(self, block_id: str):
        try:
            block = self.rig.block(block_id)
        except RigError as exc:
            raise ProjectError(str(exc)) from None
        return block

    def _append_chaos(self, block_id: str, make_rows) -> list[Capture]:
        block = self._chaos_block(block_id)
        if not block.chaos_knobs:
            raise ProjectError(f"{block_id}: no knob has role sweep or chaos, so there is nothing to randomise.")
        path = self._chaos_map_path(block)
        path.parent.mkdir(parents=True, exist_ok=True)
        existing = self.chaos_map(block)
        if existing is None:
            start, old_text, columns = 1, "", None
        else:
            start = existing.next_index
            old_text = _read_text(path, "")
            if old_text and not old_text.endswith("\n"):
                old_text += "\n"
            columns = existing.columns
        rows = make_rows(block, start)
        if columns is not None:
            # Keep the file's own columns; a knob the file lacks cannot be added to old rows.
            rows = [(n, {**block.reference_setting(), **s}) for n, s in rows]
            cols = [c for c in columns if c in {k.name for k in block.knobs}]
            if cols != columns:
                raise ProjectError(
                    f"{path}: its columns ({', '.join(columns)}) no longer match the knobs of {block_id};"
                    " appending would mix layouts. Move the file aside to start a new chaos map."
                )
            new_text = old_text + planmod.chaos_csv_text(block, rows, columns=columns, header=False)
        else:
            new_text = planmod.chaos_csv_text(block, rows)
        atomic_write_bytes(path, new_text.encode())
        self._plan = None
        return [c for c in self.plan().for_block(block_id) if c.kind == "chaos" and c.index >= start]

    # ------------------------------------------------------------------ checking
    def layout(self):
        from dsp.testsignal import SignalLayout, analyse_input

        path = self.state_dir / LAYOUT_FILE
        key = _stat_key(self.input_path)
        try:
            data = json.loads(path.read_text())
            if data.get("_input_key") == list(key):
                data.pop("_input_key", None)
                return SignalLayout.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        loaded = self.load_input()
        layout = analyse_input(loaded.audio, loaded.sample_rate)
        self.state_dir.mkdir(exist_ok=True)
        atomic_write_bytes(path, json.dumps({**layout.to_dict(), "_input_key": list(key)}, indent=1).encode())
        return layout

    def load_input(self):
        from .audio_io import CaptureReadError

        if not self.input_path.is_file():
            raise ProjectError(
                f"{self.input_path}: the test signal is missing. Put the input.wav you bounce into this folder."
            )
        try:
            return read_capture(self.input_path)
        except CaptureReadError as exc:
            raise ProjectError(f"{self.input_path}: {exc}") from None

    def context(self) -> "CheckContext":
        from .checks import CheckContext

        if self._ctx is None:
            loaded = self.load_input()
            self._ctx = CheckContext(input_audio=loaded.audio, sample_rate=loaded.sample_rate, layout=self.layout())
        return self._ctx

    def check(self, relpath: str, now: float | None = None) -> CheckResult:
        """Check one capture file, cached (in memory and in ``.unit/check_cache.json``) on
        its size and modification time, so re-opening a project does not re-read audio."""
        cache = self._load_check_cache()
        path = self.path(relpath)
        key = _stat_key(path)
        cached = cache.get(relpath)
        if cached is not None and cached[:2] == key and cached[2].status != Status.WRITING:
            return cached[2]
        result = check_capture(path, self.context(), now=now)
        if result.status in (Status.READY, Status.INVALID):
            cache[relpath] = (*key, result)
            self._cache_dirty = True
        return result

    def _check_cache_path(self) -> Path:
        return self.state_dir / CHECK_CACHE_FILE

    def _load_check_cache(self) -> dict[str, tuple[int, int, CheckResult]]:
        if self._cache is not None:
            return self._cache
        self._cache = {}
        try:
            data = json.loads(self._check_cache_path().read_text())
            if data.get("version") != CHECK_CACHE_VERSION or data.get("input_key") != list(_stat_key(self.input_path)):
                return self._cache
            import numpy as np

            for rel, e in data["entries"].items():
                fp = None if e.get("fingerprint") is None else np.asarray(e["fingerprint"], dtype=np.float32)
                self._cache[rel] = (int(e["size"]), int(e["mtime_ns"]), CheckResult.from_dict(e["result"], fp))
        except (OSError, ValueError, KeyError, TypeError):
            self._cache = {}  # no cache, or a damaged one: check again
        return self._cache

    def save_check_cache(self) -> None:
        """Write the check cache if it changed (atomic; the project's own state file)."""
        if not self._cache_dirty or self._cache is None:
            return
        entries = {
            rel: {"size": size, "mtime_ns": mtime, "result": res.to_dict(),
                  "fingerprint": None if res.fingerprint is None else [round(float(v), 2) for v in res.fingerprint]}
            for rel, (size, mtime, res) in self._cache.items()
        }
        data = {"version": CHECK_CACHE_VERSION, "input_key": list(_stat_key(self.input_path)), "entries": entries}
        try:
            self.state_dir.mkdir(exist_ok=True)
            atomic_write_bytes(self._check_cache_path(), json.dumps(data, separators=(",", ":")).encode())
            self._cache_dirty = False
        except OSError:
            pass  # a cache only: a read-only project still works

    def check_file(self, path: str | Path) -> CheckResult:
        """Check any WAV against this project's test signal (not cached)."""
        return check_capture(Path(path), self.context())

    def capture_files(self) -> list[str]:
        """Every .wav under the rig folder (relative POSIX paths), hidden files skipped."""
        base = self.root / self.rig.rig_folder
        out = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or not name.lower().endswith(".wav"):
                    continue
                out.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return out

    def scan(self, now: float | None = None, tracker: "ReadinessTracker | None" = None) -> ProjectStatus:
        """The status of every planned capture, plus the extra files.

        With a ``tracker`` (live watching), a file is only checked once its size and
        modification time have held still over two polls and its WAV header is final;
        until then it shows as writing.
        """
        now = time.time() if now is None else now
        plan = self.plan()
        expected = plan.by_relpath()
        present = set(self.capture_files())
        states: list[CaptureState] = []
        for cap in plan.captures:
            if cap.relpath not in present:
                if self._load_check_cache().pop(cap.relpath, None) is not None:
                    self._cache_dirty = True
                states.append(CaptureState(cap.relpath, CheckResult.missing(), cap))
                continue
            if tracker is not None and tracker.observe(self.path(cap.relpath), now) == Status.WRITING:
                states.append(CaptureState(cap.relpath, CheckResult.writing(), cap))
                continue
            states.append(CaptureState(cap.relpath, self.check(cap.relpath, now=now), cap))

        from .checks import closest_name, find_duplicates

        # Identical audio at different settings: a knob was not turned.
        items = {
            s.relpath: (s.result.fingerprint, s.capture.setting)
            for s in states if s.status == Status.READY and s.result.fingerprint is not None
        }
        dupes = find_duplicates(items)
        for s in states:
            if s.relpath in dupes:
                s.result = s.result.with_problem(dupes[s.relpath])

        by_name: dict[str, list[str]] = {}
        for rel in expected:
            by_name.setdefault(rel.rsplit("/", 1)[1], []).append(rel)
        extras = []
        for rel in sorted(present - set(expected)):
            name = rel.rsplit("/", 1)[1]
            if name in by_name:
                hint = f"this name belongs in {by_name[name][0].rsplit('/', 1)[0]}/: move it there"
            else:
                folder = rel.rsplit("/", 1)[0]
                names = [r.rsplit("/", 1)[1] for r in expected if r.rsplit("/", 1)[0] == folder]
                close = closest_name(name, names or [r.rsplit("/", 1)[1] for r in expected])
                hint = f"matches no capture; did you mean {close}?" if close else "matches no capture of the plan"
            extras.append(CaptureState(rel, CheckResult.extra(hint), None, hint))
        self.save_check_cache()
        return ProjectStatus(states=states, extras=extras, notices=list(plan.notices))

    # ------------------------------------------------------------------ estimates
    def minutes_per_capture(self) -> float:
        """Bouncing time per capture: the test signal's length plus ~15 s to dial the knobs."""
        try:
            info = read_capture_info(self.input_path)
            return (info + 15.0) / 60.0
        except Exception:  # noqa: BLE001 - an estimate only
            return 1.25


def read_capture_info(path: Path) -> float:
    import soundfile as sf

    return float(sf.info(str(path)).duration)


def _dumps(data: dict) -> str:
    import tomli_w

    return "# UNIT Trainer rig file (format 1). Fields: see README.md, 'Rig files'.\n" + tomli_w.dumps(data)


__all__ = ["CaptureState", "Project", "ProjectError", "ProjectStatus", "RIG_FILE", "STATE_DIR"]

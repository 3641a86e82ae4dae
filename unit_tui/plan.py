"""The capture plan: every capture a rig needs, with its full knob setting and file name.

The plan is deterministic from the rig and the block's ``chaos_map.csv``:

* single sweeps: each ``sweep`` knob at each of its sweep values, every other knob at
  its reference (modelled) or fixed (not modelled) value;
* chaos presets: rows of ``chaos_map.csv``. Preset *n* of a block is drawn from
  ``numpy.random.default_rng([chaos_seed, n])``: uniform within each knob's chaos
  limits, rounded to 0.1 (switches: a uniform position within the limits). Because
  each preset has its own stream, drawing 50 now and 10 more later gives exactly the
  presets that drawing 60 at once would. Once written, the CSV is the truth: rows are
  only ever appended, never rewritten.

Pure Python + numpy (no Textual, no torch).
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import math

from .rig import Block, Knob, Rig

SWEEP_FOLDER = "01_Single_Sweeps"
CHAOS_FOLDER = "02_Chaos_Mode"
CHAOS_MAP = "chaos_map.csv"
CHAOS_NAME = re.compile(r"^Chaos_Full_(\d{2,4})\.wav$")


class PlanError(ValueError):
    """A chaos map (or other plan input) that cannot be used, with file and line."""


@dataclass(frozen=True)
class Capture:
    """One bounce the user makes: a block at one full knob setting, saved under one name."""

    block_id: str
    kind: str  # "sweep" or "chaos"
    filename: str
    folder: str  # relative to the project root, POSIX separators
    setting: dict[str, float] = field(hash=False, compare=True)
    knob: str | None = None  # the swept knob (sweeps)
    value: float | None = None  # its value (sweeps)
    index: int | None = None  # preset number (chaos)

    @property
    def relpath(self) -> str:
        return f"{self.folder}/{self.filename}"

    @property
    def label(self) -> str:
        """What is being moved: 'Drive 2.5', 'Attack 4' or 'chaos #07'."""
        if self.kind == "chaos":
            return f"chaos #{self.index:02d}"
        return f"{self.knob} {_show(self.value)}"


def _show(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:g}" if value == int(value) else f"{value:.3f}".rstrip("0")


def block_folder(rig: Rig, block: Block) -> str:
    return f"{rig.rig_folder}/{block.id}"


def sweep_folder(rig: Rig, block: Block) -> str:
    return f"{block_folder(rig, block)}/{SWEEP_FOLDER}"


def chaos_folder(rig: Rig, block: Block) -> str:
    return f"{block_folder(rig, block)}/{CHAOS_FOLDER}"


def chaos_map_relpath(rig: Rig, block: Block) -> str:
    return f"{chaos_folder(rig, block)}/{CHAOS_MAP}"


def sweep_captures(rig: Rig, block: Block) -> list[Capture]:
    out = []
    folder = sweep_folder(rig, block)
    for knob in block.sweep_knobs:
        for value in knob.sweep:
            setting = block.reference_setting()
            setting[knob.name] = float(value)
            out.append(Capture(
                block_id=block.id, kind="sweep",
                filename=f"{block.id}_{knob.token}_{knob.fmt(value)}.wav",
                folder=folder, setting=setting, knob=knob.name, value=float(value),
            ))
    return out


def chaos_filename(index: int) -> str:
    return f"Chaos_Full_{index:02d}.wav"


def draw_chaos_value(knob: Knob, rng) -> float:
    lo, hi = knob.chaos_limits
    if knob.kind == "switch":
        choices = [p for p in knob.positions if lo <= p <= hi]
        return float(choices[int(rng.integers(len(choices)))])
    return round(float(rng.uniform(lo, hi)), 1)


def draw_chaos_setting(block: Block, index: int) -> dict[str, float]:
    """Preset ``index`` (1-based) of ``block``: the same numbers whenever it is drawn."""
    import numpy as np  # only when presets are drawn

    rng = np.random.default_rng([block.chaos_seed, index])
    setting = {}
    for knob in block.knobs:
        # Draw for every chaos knob in rig order; fixed knobs take no draw.
        setting[knob.name] = draw_chaos_value(knob, rng) if knob.role in ("sweep", "chaos") else float(knob.fixed)
    return setting


# ---------------------------------------------------------------------------- chaos map


@dataclass
class ChaosMap:
    """The parsed ``chaos_map.csv`` of one block: ordered rows of (filename, setting)."""

    columns: list[str]
    rows: list[tuple[str, dict[str, float]]]
    notices: list[str] = field(default_factory=list)

    @property
    def next_index(self) -> int:
        indices = [int(CHAOS_NAME.match(name).group(1)) for name, _ in self.rows]  # type: ignore[union-attr]
        return max(indices, default=0) + 1


def _fmt_csv(value: float) -> str:
    return f"{value:g}" if value == int(value) else repr(round(value, 6))


def chaos_csv_text(block: Block, rows: list[tuple[str, dict[str, float]]], columns: list[str] | None = None,
                   header: bool = True) -> str:
    cols = columns if columns is not None else [k.name for k in block.knobs]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(["Filename", *cols])
    for name, setting in rows:
        writer.writerow([name, *(_fmt_csv(setting[c]) for c in cols)])
    return buf.getvalue()


def parse_chaos_map(text: str, block: Block, source: str = CHAOS_MAP) -> ChaosMap:
    """Parse and validate a chaos map. Errors name the line; file names are checked to be
    plain ``Chaos_Full_NN.wav`` names (never a path out of the project)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise PlanError(f"{source}: the file is empty; it should start with 'Filename,<knob>,...'.") from None
    except csv.Error as exc:
        raise PlanError(f"{source} line 1: not a CSV header ({exc}).") from None
    header = [h.strip() for h in header]
    if not header or header[0] != "Filename":
        raise PlanError(f"{source} line 1: the first column must be 'Filename', found {header[:1]}.")
    columns = header[1:]
    if len(set(columns)) != len(columns):
        raise PlanError(f"{source} line 1: a knob column appears twice.")
    known = {k.name: k for k in block.knobs}
    notices = []
    unknown = [c for c in columns if c not in known]
    if unknown:
        notices.append(f"{source}: column(s) {', '.join(unknown)} are not knobs of {block.id} any more; ignored.")
    missing = [k for k in block.knobs if k.name not in columns]
    for k in missing:
        notices.append(
            f"{source}: no column for {k.name}; its presets are taken at {k.name} = {k.held_value:g}"
            " (the value it is held at)."
        )
    rows: list[tuple[str, dict[str, float]]] = []
    seen: set[str] = set()
    try:
        for lineno, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            where = f"{source} line {lineno}"
            if len(row) != len(header):
                raise PlanError(f"{where}: {len(row)} fields, the header has {len(header)}.")
            name = row[0].strip()
            path = PurePosixPath(name.replace("\\", "/"))
            if path.is_absolute() or ".." in path.parts or len(path.parts) != 1 or re.match(r"^[A-Za-z]:", name):
                raise PlanError(f"{where}: file name {name!r} points outside the chaos folder; only plain names such as Chaos_Full_01.wav are allowed.")
            if not CHAOS_NAME.match(name):
                raise PlanError(f"{where}: file name {name!r} is not of the form Chaos_Full_NN.wav.")
            if name in seen:
                raise PlanError(f"{where}: {name} appears twice.")
            seen.add(name)
            setting = {k.name: float(k.held_value) for k in block.knobs}
            for col, cell in zip(columns, row[1:]):
                if col not in known:
                    continue
                knob = known[col]
                try:
                    value = float(cell)
                except ValueError:
                    raise PlanError(f"{where}: {col} = {cell!r} is not a number.") from None
                if not math.isfinite(value) or not knob.minimum <= value <= knob.maximum:
                    raise PlanError(f"{where}: {col} = {cell} is outside the knob's range {knob.minimum:g}-{knob.maximum:g}.")
                if knob.kind == "switch" and (value != int(value) or int(value) not in knob.positions):
                    raise PlanError(f"{where}: {col} = {cell} is not a switch position {list(knob.positions)}.")
                setting[col] = value
            rows.append((name, setting))
    except csv.Error as exc:
        raise PlanError(f"{source} line {reader.line_num}: unreadable CSV ({exc}).") from None
    return ChaosMap(columns=columns, rows=rows, notices=notices)


def new_chaos_rows(block: Block, start: int, count: int) -> list[tuple[str, dict[str, float]]]:
    return [(chaos_filename(i), draw_chaos_setting(block, i)) for i in range(start, start + count)]


# ---------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """Every capture of the rig in checklist order, plus notices about the inputs."""

    captures: list[Capture]
    notices: list[str] = field(default_factory=list)

    def for_block(self, block_id: str) -> list[Capture]:
        return [c for c in self.captures if c.block_id == block_id]

    def by_relpath(self) -> dict[str, Capture]:
        return {c.relpath: c for c in self.captures}


def build_plan(rig: Rig, chaos_maps: dict[str, ChaosMap | None]) -> Plan:
    """The full plan. ``chaos_maps[block_id]`` is the block's parsed CSV, or None when the
    block has none yet (its presets are then drawn from the seed, as ``new`` would)."""
    captures: list[Capture] = []
    notices: list[str] = []
    for block in rig.blocks:
        captures.extend(sweep_captures(rig, block))
        cmap = chaos_maps.get(block.id)
        if cmap is None:
            rows = new_chaos_rows(block, 1, block.chaos_count)
        else:
            rows = cmap.rows
            notices.extend(cmap.notices)
            if len(rows) < block.chaos_count:
                notices.append(
                    f"{block.id}: the rig asks for {block.chaos_count} chaos presets and chaos_map.csv has"
                    f" {len(rows)}; run `unit-trainer add-chaos DIR --block {block.id} --count"
                    f" {block.chaos_count - len(rows)}` to draw the rest."
                )
        folder = chaos_folder(rig, block)
        for name, setting in rows:
            index = int(CHAOS_NAME.match(name).group(1))  # type: ignore[union-attr]
            captures.append(Capture(block_id=block.id, kind="chaos", filename=name, folder=folder,
                                    setting=setting, index=index))
    return Plan(captures=captures, notices=notices)


def plan_json(plan: Plan) -> list[dict]:
    return [
        {
            "block": c.block_id, "kind": c.kind, "path": c.relpath, "filename": c.filename,
            "folder": c.folder, "knob": c.knob, "value": c.value, "index": c.index,
            "setting": dict(c.setting),
        }
        for c in plan.captures
    ]


__all__ = [
    "CHAOS_FOLDER", "CHAOS_MAP", "Capture", "ChaosMap", "Plan", "PlanError", "SWEEP_FOLDER",
    "build_plan", "chaos_csv_text", "chaos_map_relpath", "draw_chaos_setting", "new_chaos_rows",
    "parse_chaos_map", "plan_json",
]


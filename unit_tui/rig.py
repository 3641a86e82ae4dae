"""Rig files: which blocks the user captures and which of their knobs are modelled.

A rig file is TOML (format 1). Its fields are documented in README.md ("Rig files");
``unit_tui/templates/unit1.toml`` is the built-in UNIT 1 template. Loading never
raises a traceback at the user: every problem becomes a :class:`RigError` whose
message names the file, the line where it can be found, and how to fix it.

This module is pure Python (no Textual, no torch).
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

RIG_FORMAT = 1
TOPOLOGIES = ("drive", "amp", "eq_match")
ROLES = ("sweep", "chaos", "fixed")
KINDS = ("continuous", "switch")
TEMPLATES = ("unit1",)
DEFAULT_SWEEP_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: seconds of silence rendered after the test signal by ``capture --plugin`` (the checks
#: accept up to 3 s of tail)
DEFAULT_PLUGIN_TAIL_S = 1.0
MAX_PLUGIN_TAIL_S = 3.0

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_BAD_NAME_CHARS = re.compile(r"[/\\:\x00-\x1f]")


class RigError(ValueError):
    """A rig file (or rig built in the UI) that cannot be used, with a readable reason."""


def file_token(name: str) -> str:
    """The part of a file name that stands for a knob: 'Gate Range' -> 'Gate_Range'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def format_value(value: float, kind: str = "continuous") -> str:
    """A knob value as written in file names: 2.5 -> '2p5', 10 -> '10p0', switch 3 -> '3'.

    Continuous values keep at least one decimal and at most three; a minus sign is
    written 'm' (-3.0 -> 'm3p0') so names stay portable.
    """
    if kind == "switch":
        return str(int(round(value)))
    text = f"{value:.3f}".rstrip("0")
    if text.endswith("."):
        text += "0"
    if text in ("-0.0",):
        text = "0.0"
    return text.replace("-", "m").replace(".", "p")


def safe_folder_name(name: str, what: str) -> str:
    """Check that ``name`` is a single folder name (never a path). Returns it unchanged."""
    if not isinstance(name, str) or not name.strip():
        raise RigError(f"{what} is empty: give it a name such as 'UNIT 1 - Trainer'.")
    if name != name.strip():
        raise RigError(f"{what} {name!r} starts or ends with a space: remove it.")
    if name in (".", "..") or _BAD_NAME_CHARS.search(name):
        raise RigError(
            f"{what} {name!r} is not a plain folder name: it may not contain '/', '\\', ':'"
            " or be '.' or '..'."
        )
    return name


@dataclass(frozen=True)
class Knob:
    """One knob (or switch) of a block.

    ``role``: ``sweep`` (single sweep + chaos), ``chaos`` (chaos presets only, held at
    ``reference`` in single sweeps) or ``fixed`` (not modelled, held at ``fixed``).
    """

    name: str
    role: str = "sweep"
    kind: str = "continuous"
    minimum: float = 0.0
    maximum: float = 10.0
    positions: tuple[int, ...] = ()
    reference: float = 5.0
    sweep: tuple[float, ...] = ()
    chaos_limits: tuple[float, float] = (0.0, 10.0)
    fixed: float = 5.0
    affects: tuple[str, ...] | None = None
    # capture --plugin: the plugin parameter this knob turns, and how its values map
    plugin_param: str | None = None
    plugin_range: tuple[float, float] | None = None  # plugin values at minimum, maximum (linear)
    plugin_values: tuple[float | str | bool, ...] | None = None  # switches: one per position

    @property
    def token(self) -> str:
        return file_token(self.name)

    @property
    def modelled(self) -> bool:
        return self.role != "fixed"

    @property
    def held_value(self) -> float:
        """The value this knob sits at while another knob is swept."""
        return self.fixed if self.role == "fixed" else self.reference

    def fmt(self, value: float) -> str:
        return format_value(value, self.kind)

    def to_toml_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "role": self.role}
        if self.kind == "switch":
            out["kind"] = "switch"
            out["positions"] = list(self.positions)
        else:
            out["minimum"] = self.minimum
            out["maximum"] = self.maximum
        out["reference"] = self.reference
        if self.role == "sweep":
            out["sweep"] = list(self.sweep)
        if self.role in ("sweep", "chaos"):
            out["chaos_limits"] = list(self.chaos_limits)
        if self.role == "fixed":
            out["fixed"] = self.fixed
        if self.affects is not None:
            out["affects"] = list(self.affects)
        if self.plugin_param is not None:
            out["plugin_param"] = self.plugin_param
        if self.plugin_range is not None:
            out["plugin_range"] = list(self.plugin_range)
        if self.plugin_values is not None:
            out["plugin_values"] = list(self.plugin_values)
        return out


@dataclass(frozen=True)
class Block:
    """A block captured on its own (a pedal, an amp) and fitted with one topology."""

    id: str
    topology: str
    knobs: tuple[Knob, ...]
    name: str = ""
    chaos_count: int = 0
    chaos_seed: int = 0
    # capture --plugin: the plugin, its fixed parameters, the tail rendered after the signal
    plugin: str | None = None
    plugin_name: str | None = None  # which plugin of a file that holds several
    plugin_params: tuple[tuple[str, float | str | bool], ...] = ()
    plugin_tail: float = DEFAULT_PLUGIN_TAIL_S
    # structural options the fit takes as given instead of deciding them
    # (dsp.structure.STRUCTURE; e.g. (("drive_section", 1.0),) for an amp with a boost)
    structure: tuple[tuple[str, float], ...] = ()

    @property
    def modelled_knobs(self) -> tuple[Knob, ...]:
        return tuple(k for k in self.knobs if k.modelled)

    @property
    def sweep_knobs(self) -> tuple[Knob, ...]:
        return tuple(k for k in self.knobs if k.role == "sweep")

    @property
    def chaos_knobs(self) -> tuple[Knob, ...]:
        return tuple(k for k in self.knobs if k.role in ("sweep", "chaos"))

    def knob(self, name: str) -> Knob:
        for k in self.knobs:
            if k.name == name or k.token == name:
                return k
        raise KeyError(name)

    def reference_setting(self) -> dict[str, float]:
        return {k.name: float(k.held_value) for k in self.knobs}

    def to_toml_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "topology": self.topology,
            "chaos_count": self.chaos_count,
            "chaos_seed": self.chaos_seed,
            **({"plugin": self.plugin} if self.plugin is not None else {}),
            **({"plugin_name": self.plugin_name} if self.plugin_name is not None else {}),
            **({"plugin_params": dict(self.plugin_params)} if self.plugin_params else {}),
            **({"plugin_tail": self.plugin_tail} if self.plugin_tail != DEFAULT_PLUGIN_TAIL_S else {}),
            **({"structure": {k: int(v) for k, v in self.structure}} if self.structure else {}),
            "knobs": [k.to_toml_dict() for k in self.knobs],
        }


@dataclass(frozen=True)
class Rig:
    """A whole rig file: the trainer project, its rig folder and the blocks."""

    project: str
    rig_folder: str
    blocks: tuple[Block, ...]
    sample_rate: int = 48000
    test_signal: str = "input.wav"
    format: int = RIG_FORMAT

    def block(self, block_id: str) -> Block:
        for b in self.blocks:
            if b.id == block_id:
                return b
        known = ", ".join(b.id for b in self.blocks)
        raise RigError(f"no block {block_id!r} in this rig; blocks are: {known}.")

    def with_block(self, block: Block) -> "Rig":
        return replace(self, blocks=tuple(block if b.id == block.id else b for b in self.blocks))

    def to_toml_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "project": self.project,
            "rig_folder": self.rig_folder,
            "sample_rate": self.sample_rate,
            "test_signal": self.test_signal,
            "blocks": [b.to_toml_dict() for b in self.blocks],
        }

    def to_toml(self) -> str:
        import tomli_w

        header = "# UNIT Trainer rig file (format 1). Fields: see README.md, 'Rig files'.\n"
        return header + tomli_w.dumps(self.to_toml_dict())


# ---------------------------------------------------------------------------- parsing


class _Where:
    """Finds the line of a block or knob in the rig text, for error messages."""

    def __init__(self, text: str, source: str):
        self.lines = text.splitlines()
        self.source = source

    def line_of(self, *needles: str, after: int = 0) -> int | None:
        for needle in needles:
            for i in range(after, len(self.lines)):
                if needle in self.lines[i]:
                    return i + 1
        return None

    def at(self, line: int | None) -> str:
        return f"{self.source} line {line}" if line else self.source


def _num(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RigError(f"{what} must be a number, got {value!r}.")
    return float(value)


def _numlist(value: Any, what: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise RigError(f"{what} must be a non-empty list of numbers, got {value!r}.")
    return tuple(_num(v, what) for v in value)


_KNOB_FIELDS = {
    "name", "role", "kind", "minimum", "maximum", "positions", "reference", "sweep",
    "chaos_limits", "fixed", "affects", "plugin_param", "plugin_range", "plugin_values",
}
_BLOCK_FIELDS = {"id", "name", "topology", "chaos_count", "chaos_seed", "knobs",
                 "plugin", "plugin_name", "plugin_params", "plugin_tail", "structure"}
#: fields an error points at by their own line (capture --plugin's, the block's structure)
LINE_FIELDS = ("plugin_params", "plugin_param", "plugin_range", "plugin_values", "plugin_tail",
               "plugin_name", "plugin", "structure")


def _plugin_value(v: Any, what: str) -> float | str | bool:
    """A value a plugin parameter can take: a number, true/false or the text of a choice."""
    if isinstance(v, bool) or isinstance(v, str):
        if isinstance(v, str) and not v.strip():
            raise RigError(f"{what}: an empty text is not a plugin value; write a number, true/false or the "
                           "choice's text as the plugin shows it.")
        return v
    if isinstance(v, (int, float)):
        return float(v)
    raise RigError(f"{what}: {v!r} is not a plugin value; write a number, true/false or the choice's text.")


def _parse_knob_plugin(raw: dict, where: str, kind: str, positions: tuple[int, ...]):
    """The knob's plugin_param / plugin_range / plugin_values (capture --plugin)."""
    param = raw.get("plugin_param")
    if param is not None and (not isinstance(param, str) or not param.strip()):
        raise RigError(f"{where}: plugin_param must be the plugin parameter's name as text, e.g. "
                       f"plugin_param = \"Drive\", got {param!r}.")
    prange = raw.get("plugin_range")
    pvalues = raw.get("plugin_values")
    if param is None and (prange is not None or pvalues is not None):
        field = "plugin_range" if prange is not None else "plugin_values"
        raise RigError(f"{where}: {field} needs plugin_param (the plugin parameter it applies to).")
    if prange is not None and pvalues is not None:
        raise RigError(f"{where}: plugin_range and plugin_values both given; keep one (plugin_values lists "
                       "a value per switch position, plugin_range maps the range linearly).")
    if prange is not None:
        if not isinstance(prange, list) or len(prange) != 2:
            raise RigError(f"{where}: plugin_range must be [value at minimum, value at maximum] in the plugin's "
                           f"units, e.g. plugin_range = [0, 100], got {prange!r}.")
        lo, hi = (_num(v, f"{where}: plugin_range") for v in prange)
        if lo == hi:
            raise RigError(f"{where}: plugin_range [{lo:g}, {hi:g}] maps the whole knob to one value; "
                           "give the plugin values at the knob's minimum and maximum.")
        prange = (lo, hi)
    if pvalues is not None:
        if kind != "switch":
            raise RigError(f"{where}: plugin_values is for switches (one plugin value per position); "
                           "a continuous knob uses plugin_range = [at minimum, at maximum].")
        if not isinstance(pvalues, list) or len(pvalues) != len(positions):
            raise RigError(f"{where}: plugin_values must list one plugin value per switch position "
                           f"({len(positions)} for positions {list(positions)}), got {pvalues!r}.")
        pvalues = tuple(_plugin_value(v, f"{where}: plugin_values") for v in pvalues)
    return (param.strip() if param is not None else None), prange, pvalues


def _parse_block_plugin(raw: dict, bid: str, knobs: tuple["Knob", ...]):
    """The block's plugin / plugin_name / plugin_params / plugin_tail (capture --plugin)."""
    where = f"block {bid}"
    plugin = raw.get("plugin")
    if plugin is not None and (not isinstance(plugin, str) or not plugin.strip()):
        raise RigError(f"{where}: plugin must be the path of a .vst3 (or, on macOS, .component) as text, "
                       f"got {plugin!r}.")
    name = raw.get("plugin_name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise RigError(f"{where}: plugin_name must be text (the plugin's name in a file that holds several).")
    params_raw = raw.get("plugin_params", {})
    if not isinstance(params_raw, dict):
        raise RigError(f"{where}: plugin_params must be a table of plugin parameter = value, e.g. "
                       "plugin_params = { \"Mix\" = 100.0, \"Gate\" = false }.")
    params = []
    for key, value in params_raw.items():
        if not key.strip():
            raise RigError(f"{where}: plugin_params has an empty parameter name.")
        if isinstance(value, dict):
            raise RigError(f"{where}: plugin_params: {key!r} = a table; write plugin_params as "
                           "\"Parameter name\" = value (quote names with spaces or dots).")
        params.append((key, _plugin_value(value, f"{where}: plugin_params {key!r}")))
    tail = raw.get("plugin_tail", DEFAULT_PLUGIN_TAIL_S)
    tail = _num(tail, f"{where}: plugin_tail")
    if not 0.0 <= tail <= MAX_PLUGIN_TAIL_S:
        raise RigError(f"{where}: plugin_tail must be 0-{MAX_PLUGIN_TAIL_S:g} seconds (the checks accept up to "
                       f"{MAX_PLUGIN_TAIL_S:g} s after the test signal), got {tail:g}.")
    # one plugin parameter, one owner
    owners: dict[str, str] = {}
    for k in knobs:
        if k.plugin_param is None:
            continue
        key = k.plugin_param.lower()
        if key in owners:
            raise RigError(f"knob {k.name!r} of block {bid}: plugin_param {k.plugin_param!r} is already turned by "
                           f"knob {owners[key]!r}; a plugin parameter can follow one knob only.")
        owners[key] = k.name
    for key, _ in params:
        if key.strip().lower() in owners:
            raise RigError(f"{where}: plugin_params sets {key!r}, which knob {owners[key.strip().lower()]!r} "
                           "turns (plugin_param); remove it from plugin_params.")
    return (plugin.strip() if plugin is not None else None,
            name.strip() if name is not None else None, tuple(params), tail)
_RIG_FIELDS = {"format", "project", "rig_folder", "sample_rate", "test_signal", "blocks"}


def _parse_knob(raw: Any, block_id: str, index: int) -> Knob:
    if not isinstance(raw, dict):
        raise RigError(f"knob #{index + 1} of block {block_id} is not a table.")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or not file_token(name):
        raise RigError(f"knob #{index + 1} of block {block_id} needs a name with letters or digits.")
    where = f"knob {name!r} of block {block_id}"
    unknown = set(raw) - _KNOB_FIELDS
    if unknown:
        raise RigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_KNOB_FIELDS))}.")
    role = raw.get("role", "sweep")
    if role not in ROLES:
        raise RigError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}.")
    kind = raw.get("kind", "switch" if "positions" in raw else "continuous")
    if kind not in KINDS:
        raise RigError(f"{where}: kind must be 'continuous' or 'switch', got {kind!r}.")

    if kind == "switch":
        positions_raw = raw.get("positions")
        if not isinstance(positions_raw, list) or len(positions_raw) < 2 or not all(
            isinstance(p, int) and not isinstance(p, bool) for p in positions_raw
        ):
            raise RigError(f"{where}: a switch needs positions = [1, 2, ...] (two or more integers).")
        if len(set(positions_raw)) != len(positions_raw):
            raise RigError(f"{where}: switch positions repeat a value.")
        positions = tuple(int(p) for p in positions_raw)
        minimum, maximum = float(min(positions)), float(max(positions))
        reference = _num(raw.get("reference", positions[len(positions) // 2]), f"{where}: reference")
        if int(reference) not in positions or reference != int(reference):
            raise RigError(f"{where}: reference {reference:g} is not one of the positions {list(positions)}.")
        sweep = tuple(float(p) for p in positions)
        if "sweep" in raw:
            sweep = _numlist(raw["sweep"], f"{where}: sweep")
            bad = [v for v in sweep if v != int(v) or int(v) not in positions]
            if bad:
                raise RigError(f"{where}: sweep values {bad} are not switch positions {list(positions)}.")
        limits = (minimum, maximum)
        if "chaos_limits" in raw:
            limits = _numlist(raw["chaos_limits"], f"{where}: chaos_limits")  # type: ignore[assignment]
    else:
        positions = ()
        minimum = _num(raw.get("minimum", 0.0), f"{where}: minimum")
        maximum = _num(raw.get("maximum", 10.0), f"{where}: maximum")
        if not maximum > minimum:
            raise RigError(f"{where}: maximum ({maximum:g}) must be above minimum ({minimum:g}).")
        reference = _num(raw.get("reference", (minimum + maximum) / 2), f"{where}: reference")
        span = maximum - minimum
        sweep = tuple(round(minimum + f * span, 3) for f in DEFAULT_SWEEP_FRACTIONS)
        if "sweep" in raw:
            sweep = _numlist(raw["sweep"], f"{where}: sweep")
        limits = (minimum, maximum)
        if "chaos_limits" in raw:
            limits = _numlist(raw["chaos_limits"], f"{where}: chaos_limits")  # type: ignore[assignment]

    if not minimum <= reference <= maximum:
        raise RigError(f"{where}: reference {reference:g} is outside the range {minimum:g}-{maximum:g}.")
    for v in sweep:
        if not minimum <= v <= maximum:
            raise RigError(f"{where}: sweep value {v:g} is outside the range {minimum:g}-{maximum:g}.")
    if len(set(sweep)) != len(sweep):
        raise RigError(f"{where}: sweep values repeat; each value gives one capture.")
    if len(limits) != 2 or not (minimum <= limits[0] < limits[1] <= maximum):
        raise RigError(
            f"{where}: chaos_limits must be [low, high] with {minimum:g} <= low < high <= {maximum:g}, got {list(limits)}."
        )
    fixed = _num(raw.get("fixed", reference), f"{where}: fixed")
    if not minimum <= fixed <= maximum:
        raise RigError(f"{where}: fixed value {fixed:g} is outside the range {minimum:g}-{maximum:g}.")
    if kind == "switch" and int(fixed) not in positions:
        raise RigError(f"{where}: fixed value {fixed:g} is not a switch position.")
    affects = raw.get("affects")
    if affects is not None:
        if not isinstance(affects, list) or not all(isinstance(a, str) and a for a in affects):
            raise RigError(f"{where}: affects must be a list of DSP control names, e.g. [\"pre_gain_db\"].")
        affects = tuple(affects)
    plugin_param, plugin_range, plugin_values = _parse_knob_plugin(raw, where, kind, positions)
    return Knob(
        name=name, role=role, kind=kind, minimum=minimum, maximum=maximum, positions=positions,
        reference=reference, sweep=tuple(float(v) for v in sweep),
        chaos_limits=(float(limits[0]), float(limits[1])), fixed=fixed, affects=affects,
        plugin_param=plugin_param, plugin_range=plugin_range, plugin_values=plugin_values,
    )


def _parse_block(raw: Any, index: int) -> Block:
    if not isinstance(raw, dict):
        raise RigError(f"block #{index + 1} is not a table ([[blocks]]).")
    bid = raw.get("id")
    if not isinstance(bid, str) or not _SAFE_ID.match(bid):
        raise RigError(
            f"block #{index + 1}: id must be a folder-safe name of letters, digits, '_' and '-'"
            f" such as '01_Horizon_Pedal', got {bid!r}."
        )
    unknown = set(raw) - _BLOCK_FIELDS
    if unknown:
        raise RigError(f"block {bid}: unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_BLOCK_FIELDS))}.")
    topology = raw.get("topology")
    if topology not in TOPOLOGIES:
        raise RigError(f"block {bid}: topology must be one of {', '.join(TOPOLOGIES)}, got {topology!r}.")
    chaos_count = raw.get("chaos_count", 0)
    if isinstance(chaos_count, bool) or not isinstance(chaos_count, int) or not 0 <= chaos_count <= 999:
        raise RigError(f"block {bid}: chaos_count must be a whole number 0-999, got {chaos_count!r}.")
    seed = raw.get("chaos_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RigError(f"block {bid}: chaos_seed must be a whole number >= 0, got {seed!r}.")
    knobs_raw = raw.get("knobs")
    if not isinstance(knobs_raw, list) or not knobs_raw:
        raise RigError(f"block {bid}: it has no knobs; add [[blocks.knobs]] tables.")
    knobs = tuple(_parse_knob(k, bid, i) for i, k in enumerate(knobs_raw))
    tokens = [k.token.lower() for k in knobs]
    dupes = sorted({t for t in tokens if tokens.count(t) > 1})
    if dupes:
        raise RigError(f"block {bid}: two knobs have the same name in file names ({', '.join(dupes)}).")
    if not any(k.modelled for k in knobs):
        raise RigError(f"block {bid}: no knob is modelled; give at least one knob role 'sweep' or 'chaos'.")
    if chaos_count and not any(k.role in ("sweep", "chaos") for k in knobs):
        raise RigError(f"block {bid}: chaos presets need at least one knob with role sweep or chaos.")
    name = raw.get("name", bid)
    if not isinstance(name, str):
        raise RigError(f"block {bid}: name must be text.")
    plugin, plugin_name, plugin_params, plugin_tail = _parse_block_plugin(raw, bid, knobs)
    return Block(id=bid, name=name, topology=topology, knobs=knobs, chaos_count=chaos_count, chaos_seed=seed,
                 plugin=plugin, plugin_name=plugin_name, plugin_params=plugin_params, plugin_tail=plugin_tail,
                 structure=_parse_structure(raw.get("structure"), bid, topology))


def _parse_structure(raw: Any, bid: str, topology: str) -> tuple[tuple[str, float], ...]:
    """The block's ``structure = { drive_section = 1 }``: what the user knows of the
    circuit, which the fit then takes as given (dsp.structure lists the options)."""
    from dsp.structure import STRUCTURE, check_structure  # no torch

    if raw is None:
        return ()
    if not isinstance(raw, dict):
        options = ", ".join(o.name for o in STRUCTURE.get(topology, ())) or "none"
        raise RigError(f"block {bid}: structure must be a table of 0/1 values, e.g. "
                       f"structure = {{ drive_section = 1 }} (the {topology} topology's options: {options}).")
    try:
        values = check_structure(topology, raw)
    except ValueError as exc:
        raise RigError(f"block {bid}: structure: {exc}.") from None
    return tuple(values.items())


def rig_from_dict(data: dict[str, Any]) -> Rig:
    """Validate a parsed rig (from TOML or built by the setup screen)."""
    unknown = set(data) - _RIG_FIELDS
    if unknown:
        raise RigError(f"unknown top-level field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_RIG_FIELDS))}.")
    fmt = data.get("format", RIG_FORMAT)
    if fmt != RIG_FORMAT:
        raise RigError(f"format = {fmt!r}: this trainer reads rig files of format {RIG_FORMAT}.")
    project = safe_folder_name(data.get("project", ""), "project")
    rig_folder = safe_folder_name(data.get("rig_folder", ""), "rig_folder")
    sr = data.get("sample_rate", 48000)
    if sr not in (44100, 48000, 88200, 96000):
        raise RigError(f"sample_rate must be 48000 (preferred) or 44100, 88200, 96000; got {sr!r}.")
    test_signal = data.get("test_signal", "input.wav")
    if not isinstance(test_signal, str) or not test_signal.lower().endswith(".wav"):
        raise RigError(f"test_signal must be a .wav file name, got {test_signal!r}.")
    safe_folder_name(test_signal, "test_signal")
    blocks_raw = data.get("blocks")
    if not isinstance(blocks_raw, list) or not blocks_raw:
        raise RigError("the rig has no blocks; add at least one [[blocks]] table.")
    blocks = tuple(_parse_block(b, i) for i, b in enumerate(blocks_raw))
    ids = [b.id for b in blocks]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise RigError(f"block id(s) used twice: {', '.join(dupes)}.")
    return Rig(project=project, rig_folder=rig_folder, blocks=blocks, sample_rate=sr, test_signal=test_signal)


def parse_rig(text: str, source: str = "rig.toml") -> Rig:
    """Parse rig TOML text. Errors carry the file name and line."""
    where = _Where(text, source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RigError(f"{source}: not valid TOML: {exc}. Fix that line and try again.") from None
    try:
        return rig_from_dict(data)
    except RigError as exc:
        msg = str(exc)
        # Point at the line of the block / knob the message names.
        m = re.search(r"knob '([^']+)' of block (\S+?):", msg) or re.search(r"block (\S+?):", msg)
        line = None
        if m and m.re.pattern.startswith("knob"):
            start = where.line_of(f'"{m.group(2)}"') or 0
            line = where.line_of(f'"{m.group(1)}"', after=start)
        elif m:
            line = where.line_of(f'"{m.group(1)}"')
        if m:
            # a capture --plugin field or the structure: point at its own line (after the block / knob)
            after = msg[m.end():].lstrip()
            head = f" {after.split(';')[0]} "
            field = (next((f for f in LINE_FIELDS if after.startswith(f)), None)
                     or next((f for f in LINE_FIELDS if f" {f} " in head), None))
            if field and line:
                knob_level = m.re.pattern.startswith("knob")
                end = where.line_of("[[blocks" if knob_level else "[[blocks]]", after=line) or len(where.lines) + 1
                at = where.line_of(f"{field} =", f"{field}=", f"{field}]", after=line - 1)
                if at and at < end:
                    line = at
        else:
            field_m = re.match(r"(\w+)", msg)
            if field_m:
                line = where.line_of(f"{field_m.group(1)} =", f"{field_m.group(1)}=")
        raise RigError(f"{where.at(line)}: {msg}") from None


def load_rig(path: str | Path) -> Rig:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RigError(f"{path}: no such rig file.") from None
    except OSError as exc:
        raise RigError(f"{path}: cannot read it ({exc.strerror}).") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RigError(f"{path}: not a text file (expected UTF-8 TOML).") from None
    return parse_rig(text, source=str(path))


def template_text(name: str) -> str:
    if name not in TEMPLATES:
        raise RigError(f"unknown template {name!r}; templates: {', '.join(TEMPLATES)}.")
    return resources.files("unit_tui").joinpath("templates", f"{name}.toml").read_text("utf-8")


def load_template(name: str) -> Rig:
    return parse_rig(template_text(name), source=f"template {name}")


__all__ = [
    "Block", "Knob", "Rig", "RigError", "TEMPLATES", "TOPOLOGIES", "file_token", "format_value",
    "load_rig", "load_template", "parse_rig", "rig_from_dict", "template_text",
]


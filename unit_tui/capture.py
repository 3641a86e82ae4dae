"""Automatic capture: render every missing capture with an external command (or a callable).

``unit-trainer capture DIR --command TEMPLATE`` runs TEMPLATE once per missing capture
through ``/bin/sh``. Placeholders (Python format syntax) are replaced by shell-quoted
values; numbers stay numbers, so a format spec works (``{Drive:.3f}``):

=====================  =================================================================
``{input}``            the project's test signal (absolute path)
``{output}``           where the command must write the capture (a temporary path; the
                       trainer moves it into place afterwards)
``{block}``            the block id, e.g. ``01_Horizon_Pedal``
``{name}``             the capture's file name, e.g. ``01_Horizon_Pedal_Drive_2p5.wav``
``{setting_json}``     the whole setting as JSON: ``{"Drive": 2.5, "Attack": 3, ...}``
``{Drive}``            each knob's value by its file-name token (``Gate Range`` ->
                       ``{Gate_Range}``); also ``{knob[Gate Range]}`` by exact name
=====================  =================================================================

The same values are passed as environment variables: ``UNIT_INPUT``, ``UNIT_OUTPUT``,
``UNIT_BLOCK``, ``UNIT_NAME``, ``UNIT_SETTING_JSON`` and ``UNIT_KNOB_<TOKEN>`` (upper
case, e.g. ``UNIT_KNOB_GATE_RANGE``).

``unit-trainer capture DIR --plugin [PATH]`` renders the same captures through a VST3
(or AU) plugin hosted in-process with pedalboard: the rig file maps each knob to a
plugin parameter (see :mod:`unit_tui.plugin_host`); every capture sets the plugin to
its setting, checks the values took, and renders the whole test signal.

A capture is only ever added, never overwritten: the command (or the plugin host)
writes to a temporary file inside the project's ``.unit/tmp`` and the result is
hard-linked under its final name only if no file of that name exists by then. An
interrupted run (Ctrl-C) leaves nothing under a capture's name.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import string
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .checks import Status
from .plan import Capture
from .project import Project, ProjectError


class CaptureCommandError(ValueError):
    """The --command template cannot be used (unknown placeholder, bad syntax)."""


@dataclass
class CaptureOutcome:
    capture: Capture
    ok: bool
    message: str
    seconds: float


class _Quoted(str):
    """A string that formats as its shell-quoted self (format specs apply to the raw text)."""

    def __format__(self, spec: str) -> str:
        return shlex.quote(format(str(self), spec))


def _values(project: Project, capture: Capture, output: Path) -> tuple[dict, dict[str, str]]:
    block = project.rig.block(capture.block_id)
    setting_json = json.dumps({k: _num(v) for k, v in capture.setting.items()})
    fields: dict = {
        "input": _Quoted(str(project.input_path.resolve())),
        "output": _Quoted(str(output)),
        "block": _Quoted(capture.block_id),
        "name": _Quoted(capture.filename),
        "setting_json": _Quoted(setting_json),
        "knob": {k: _num(v) for k, v in capture.setting.items()},
    }
    env = {
        "UNIT_INPUT": str(project.input_path.resolve()),
        "UNIT_OUTPUT": str(output),
        "UNIT_BLOCK": capture.block_id,
        "UNIT_NAME": capture.filename,
        "UNIT_SETTING_JSON": setting_json,
    }
    for knob in block.knobs:
        value = _num(capture.setting[knob.name])
        fields[knob.token] = value
        env[f"UNIT_KNOB_{knob.token.upper()}"] = str(value)
    return fields, env


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else float(v)


def validate_template(project: Project, template: str, captures: Iterable[Capture]) -> None:
    """Fail before running anything if the template names an unknown placeholder."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise CaptureCommandError(f"--command is not a valid template ({exc}); write literal braces as {{{{ and }}}}.") from None
    if not any(f for _, f, _, _ in parsed if f is not None):
        raise CaptureCommandError("--command has no {output} placeholder: the command must write the capture to {output}.")
    for cap in list(captures)[:1] or []:
        fields, _ = _values(project, cap, Path("/tmp/out.wav"))
        try:
            template.format(**fields)
        except (KeyError, IndexError, AttributeError) as exc:
            known = ", ".join("{" + k + "}" for k in fields if k != "knob")
            raise CaptureCommandError(
                f"--command uses an unknown placeholder {exc}; available: {known}, {{knob[Exact Name]}}."
            ) from None
        except ValueError as exc:
            raise CaptureCommandError(f"--command: {exc}.") from None


def command_renderer(template: str, timeout_s: float = 600.0) -> Callable[[Project, Capture, Path], None]:
    """A renderer that runs ``template`` through the shell for one capture."""

    def render(project: Project, capture: Capture, output: Path) -> None:
        fields, env = _values(project, capture, output)
        cmd = template.format(**fields)
        proc = subprocess.run(
            cmd, shell=True, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout_s,
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"the command exited with {proc.returncode}: {' / '.join(tail) or '(no output)'}")

    return render


def missing_captures(project: Project, block_id: str | None = None) -> list[Capture]:
    status = project.scan()
    out = []
    for s in status.states:
        if s.capture is None or (block_id and s.capture.block_id != block_id):
            continue
        if s.status == Status.MISSING:
            out.append(s.capture)
    return out


def _render_one(project: Project, cap: Capture, render, tmpdir: Path) -> CaptureOutcome:
    t0 = time.monotonic()
    final = project.path(cap.relpath)
    tmpdir.mkdir()
    out = tmpdir / cap.filename
    try:
        if final.exists():
            return CaptureOutcome(cap, False, "already exists: left as it is", 0.0)
        try:
            note = render(project, cap, out)
        except subprocess.TimeoutExpired:
            raise RuntimeError("the command timed out") from None
        if not out.is_file() or out.stat().st_size == 0:
            raise RuntimeError(f"the command wrote nothing to {{output}} ({out})")
        result = project.check_file(out)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(out, final)  # only if the name is still free; never a partial file
        except FileExistsError:
            return CaptureOutcome(cap, False, "appeared while rendering: left as it is", time.monotonic() - t0)
        msg = "ok" if result.status == Status.READY else f"{result.status.value}: {result.summary}"
        if note:
            msg += f" ({note})"
        return CaptureOutcome(cap, result.status == Status.READY, msg, time.monotonic() - t0)
    except Exception as exc:  # noqa: BLE001 - reported per capture, the run goes on
        return CaptureOutcome(cap, False, f"failed: {exc}", time.monotonic() - t0)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def run_captures(
    project: Project,
    captures: list[Capture],
    render: Callable[[Project, Capture, Path], str | None],
    on_progress: Callable[[int, int, CaptureOutcome], None] | None = None,
) -> list[CaptureOutcome]:
    """Render each capture to a temp file, check it, and link it into place if still absent.

    ``render`` writes the file; it may return a note (how channels were handled...) that
    is added to the capture's message."""
    tmp_root = project.state_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    outcomes = []
    run_dir = None
    try:  # one temp folder for the run, removed however it ends (Ctrl-C included)
        run_dir = Path(tempfile.mkdtemp(dir=tmp_root))
        for i, cap in enumerate(captures, start=1):
            outcome = _render_one(project, cap, render, run_dir / f"{i:04d}")
            outcomes.append(outcome)
            if on_progress:
                on_progress(i, len(captures), outcome)
    finally:
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
    return outcomes


def capture_missing(project: Project, template: str, *, block_id: str | None = None, limit: int | None = None,
                    timeout_s: float = 600.0, on_progress=None) -> list[CaptureOutcome]:
    if block_id:
        try:
            project.rig.block(block_id)
        except Exception as exc:  # RigError
            raise ProjectError(str(exc)) from None
    todo = missing_captures(project, block_id)
    if limit is not None:
        todo = todo[:limit]
    validate_template(project, template, todo)
    return run_captures(project, todo, command_renderer(template, timeout_s), on_progress)


# ----------------------------------------------------------------- capture --plugin


@dataclass
class PluginBlock:
    """A block captured through a plugin: its own instance (each block starts from the
    plugin's defaults), the path, and what the run will leave alone."""

    block: object  # rig.Block
    host: object  # plugin_host.HostedPlugin
    path: Path
    unmapped_fixed: list[str]

    def header(self, sample_rate: int, n: int) -> str:
        b = self.block
        ch = {1: "mono in", 2: "stereo in (the test signal on both inputs)"}.get(self.host.input_channels, "")
        parts = [f"{b.id}: {n} capture{'s' if n != 1 else ''} through {self.host.name} ({self.path})",
                 f"{sample_rate / 1000:g} kHz" + (f", {ch}" if ch else ""), f"{b.plugin_tail:g} s tail"]
        line = ", ".join(parts)
        if self.unmapped_fixed:
            line += (f"; not set in the plugin (no plugin_param): {', '.join(self.unmapped_fixed)}")
        return line


def prepare_plugin_blocks(project: Project, captures: list[Capture], plugin_path: str | None = None,
                          loader=None, sample_rate: int | None = None) -> dict[str, PluginBlock]:
    """Load the plugin for every block that has captures to do and check, before
    anything is rendered, that every value of every capture can be set.

    ``plugin_path``: the command line's --plugin PATH (every block); None: each block's
    ``plugin`` from the rig file. Raises PluginError with what to fix.
    """
    from .plugin_host import HostedPlugin, PluginError, block_assignments, resolve_plugin_path, unmapped_knobs

    out: dict[str, PluginBlock] = {}
    rig_file = project.rig_path.name
    for block_id in dict.fromkeys(c.block_id for c in captures):
        block = project.rig.block(block_id)
        modelled, fixed = unmapped_knobs(block)
        if modelled:
            which = ", ".join(repr(m) for m in modelled)
            raise PluginError(
                f"{rig_file}: block {block.id}: knob(s) {which} have no plugin_param, so the plugin captures could "
                "not turn them; add plugin_param = \"<the plugin's parameter>\" to each"
                + (", or capture another block with --block" if len(project.rig.blocks) > 1 else "") + ".")
        spec = plugin_path or block.plugin
        if not spec:
            raise PluginError(
                f"{rig_file}: block {block.id} names no plugin: give --plugin PATH, or add plugin = \"/path/to/"
                "Plugin.vst3\" to the block.")
        path = resolve_plugin_path(spec, project.root)
        host = HostedPlugin(path, block.plugin_name, loader=loader)
        for cap in captures:
            if cap.block_id == block_id:
                try:
                    host.check(block_assignments(block, cap.setting))
                except PluginError as exc:
                    where = _rig_line(project, block_id, exc.param)
                    raise PluginError(f"{where}: {exc} (capture {cap.filename})") from None
        host.probe(sample_rate or project.rig.sample_rate)
        out[block_id] = PluginBlock(block, host, path, fixed)
    return out


def _rig_line(project: Project, block_id: str, param: str | None) -> str:
    """'rig.toml line N' where the block names ``param`` (else 'rig.toml')."""
    name = project.rig_path.name
    if not param:
        return name
    try:
        lines = project.rig_path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return name
    start = next((i for i, line in enumerate(lines) if f'"{block_id}"' in line), 0)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() == "[[blocks]]"), len(lines))
    for needle in (f'"{param}"', f"{param} =", f"{param}="):
        for i in range(start, end):
            if needle in lines[i]:
                return f"{name} line {i + 1}"
    return name


def plugin_renderer(blocks: dict[str, PluginBlock], input_audio, sample_rate: int):
    """A renderer that sets the capture's block plugin to its setting and renders the test
    signal (32-bit float WAV: the plugin's output as it is, never clipped by the file)."""
    from .audio_io import write_wav_atomic
    from .plugin_host import block_assignments

    def render(project: Project, capture: Capture, output: Path) -> str | None:
        pb = blocks[capture.block_id]
        pb.host.apply(block_assignments(pb.block, capture.setting))
        y, note = pb.host.render(input_audio, sample_rate, pb.block.plugin_tail)
        write_wav_atomic(output, y, sample_rate, subtype="FLOAT")
        return note

    return render


def capture_missing_with_plugin(project: Project, plugin_path: str | None = None, *, block_id: str | None = None,
                                limit: int | None = None, on_progress=None, log=None,
                                loader=None) -> list[CaptureOutcome]:
    """``capture --plugin``: every missing capture (of ``block_id``; at most ``limit``)
    rendered through the plugin. Raises PluginError before rendering anything when the
    plugin or the rig's mapping cannot work."""
    if block_id:
        try:
            project.rig.block(block_id)
        except Exception as exc:  # RigError
            raise ProjectError(str(exc)) from None
    if plugin_path:
        from .plugin_host import PluginError, resolve_plugin_path

        if not resolve_plugin_path(plugin_path, project.root).exists():  # said even with nothing to do
            raise PluginError(f"--plugin {plugin_path}: no such plugin. Give the path of the plugin's .vst3 bundle "
                              "(or, on macOS, its .component).")
    todo = missing_captures(project, block_id)
    if limit is not None:
        todo = todo[:limit]
    if not todo:
        return []
    loaded = project.load_input()
    blocks = prepare_plugin_blocks(project, todo, plugin_path, loader=loader, sample_rate=loaded.sample_rate)
    render = plugin_renderer(blocks, loaded.audio, loaded.sample_rate)
    announced: set[str] = set()

    def render_and_announce(project_: Project, cap: Capture, out: Path) -> str | None:
        if log and cap.block_id not in announced:
            announced.add(cap.block_id)
            n = sum(1 for c in todo if c.block_id == cap.block_id)
            log(blocks[cap.block_id].header(loaded.sample_rate, n))
        return render(project_, cap, out)

    return run_captures(project, todo, render_and_announce, on_progress)


__all__ = ["CaptureCommandError", "CaptureOutcome", "PluginBlock", "capture_missing", "capture_missing_with_plugin",
           "command_renderer", "missing_captures", "plugin_renderer", "prepare_plugin_blocks", "run_captures",
           "validate_template"]

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

A capture is only ever added, never overwritten: the command writes to a temporary
file inside the project's ``.unit/tmp`` and the result is hard-linked under its final
name only if no file of that name exists by then.
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


def run_captures(
    project: Project,
    captures: list[Capture],
    render: Callable[[Project, Capture, Path], None],
    on_progress: Callable[[int, int, CaptureOutcome], None] | None = None,
) -> list[CaptureOutcome]:
    """Render each capture to a temp file, check it, and link it into place if still absent."""
    tmp_root = project.state_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for i, cap in enumerate(captures, start=1):
        t0 = time.monotonic()
        final = project.path(cap.relpath)
        tmpdir = Path(tempfile.mkdtemp(dir=tmp_root))
        out = tmpdir / cap.filename
        try:
            if final.exists():
                outcome = CaptureOutcome(cap, False, "already exists: left as it is", 0.0)
            else:
                try:
                    render(project, cap, out)
                except subprocess.TimeoutExpired:
                    raise RuntimeError("the command timed out") from None
                if not out.is_file() or out.stat().st_size == 0:
                    raise RuntimeError(f"the command wrote nothing to {{output}} ({out})")
                result = project.check_file(out)
                final.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(out, final)
                except FileExistsError:
                    outcome = CaptureOutcome(cap, False, "appeared while rendering: left as it is", time.monotonic() - t0)
                else:
                    msg = "ok" if result.status == Status.READY else f"{result.status.value}: {result.summary}"
                    outcome = CaptureOutcome(cap, result.status == Status.READY, msg, time.monotonic() - t0)
        except Exception as exc:  # noqa: BLE001 - reported per capture, the run goes on
            outcome = CaptureOutcome(cap, False, f"failed: {exc}", time.monotonic() - t0)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        outcomes.append(outcome)
        if on_progress:
            on_progress(i, len(captures), outcome)
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


__all__ = ["CaptureCommandError", "CaptureOutcome", "capture_missing", "command_renderer", "missing_captures",
           "run_captures", "validate_template"]

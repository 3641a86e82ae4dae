"""Between the project on disk and the twin in ``dsp``: load captures, fit, save, render.

``dsp`` knows nothing of folders; this module turns a project's ready captures into
:class:`dsp.twin.TrainItem` lists, runs :func:`dsp.twin.fit_block`, and keeps the
results in the project:

    .unit/models/<block id>.twin.json     the fitted twin (atomic write)
    .unit/jobs/<block id>.ckpt            the fit's checkpoint (resume after a crash)

Held-out captures: every chaos preset whose number is a multiple of
``HOLDOUT_EVERY`` (10, 20, ... — 5 of the amp's 50) is kept out of training and only
scored, so the report states accuracy at settings the model never saw. A block with
fewer than ``HOLDOUT_EVERY`` chaos presets holds out its last one if it has three or
more; with none, there is no held-out score and the report says so.

torch is imported only when a fit or a render runs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .audio_io import CaptureReadError, read_capture
from .checks import Status
from .project import Project, ProjectError
from .rig import Block

HOLDOUT_EVERY = 10
MODELS_DIR = "models"
JOBS_DIR = "jobs"


def model_path(project: Project, block_id: str) -> Path:
    return project.state_dir / MODELS_DIR / f"{block_id}.twin.json"


def checkpoint_path(project: Project, block_id: str) -> Path:
    return project.state_dir / JOBS_DIR / f"{block_id}.ckpt"


def knob_specs(block: Block):
    from dsp.twin import KnobSpec

    return [
        KnobSpec(k.name, kind=k.kind, minimum=k.minimum, maximum=k.maximum,
                 positions=tuple(float(p) for p in k.positions), reference=k.reference, affects=k.affects)
        for k in block.modelled_knobs
    ]


def holdout_indices(chaos_indices: list[int]) -> set[int]:
    held = {i for i in chaos_indices if i % HOLDOUT_EVERY == 0}
    if not held and len(chaos_indices) >= 3:
        held = {max(chaos_indices)}
    return held


@dataclass
class LoadedBlock:
    block: Block
    items: list  # list[dsp.twin.TrainItem]
    skipped: list[str]  # captures not ready, with the reason


def guitar_spans(project: Project) -> tuple[tuple[int, int], ...]:
    """The test signal's guitar segments in samples (the report's second ESR), or ()
    when its layout is not known (an input other than UNIT's own signal) or is at
    another rate than the rig's."""
    try:
        layout = project.layout()
    except ProjectError:
        return ()
    if int(layout.sample_rate) != int(project.rig.sample_rate):
        return ()
    return layout.guitar_spans()


def load_items(project: Project, block_id: str) -> LoadedBlock:
    """The ready captures of one block as TrainItems (one shared input array)."""
    from dsp.twin import TrainItem

    try:
        block = project.rig.block(block_id)
    except Exception as exc:  # RigError
        raise ProjectError(str(exc)) from None
    status = project.scan()
    states = [s for s in status.states if s.capture is not None and s.capture.block_id == block_id]
    held = holdout_indices([s.capture.index for s in states if s.capture.kind == "chaos"])
    x = project.load_input().audio
    spans = guitar_spans(project)
    modelled = {k.name for k in block.modelled_knobs}
    items, skipped = [], []
    for s in states:
        if s.status != Status.READY:
            skipped.append(f"{s.capture.filename}: {s.status.value}")
            continue
        try:
            # float16: half the memory of a UNIT-1 plan's targets (about 0.6 GB instead of
            # 1.2 GB for 100 captures of 60 s); its rounding is 66 dB below every sample,
            # an ESR floor of about 1e-7, far below anything the twin reaches
            y = read_capture(project.path(s.relpath)).audio.astype("float16")
        except CaptureReadError as exc:
            skipped.append(f"{s.capture.filename}: {exc}")
            continue
        items.append(TrainItem(
            name=s.capture.filename.removesuffix(".wav"),
            knobs={k: v for k, v in s.capture.setting.items() if k in modelled},
            input=x, target=y, sample_rate=project.rig.sample_rate,
            # One latency per block, found by the fitter (the median over its captures):
            # the checks' per-file onset moves a few samples with the block's filters.
            latency_samples=None,
            latency_hint=s.result.latency_samples if s.result is not None else None,
            holdout=s.capture.kind == "chaos" and s.capture.index in held,
            guitar_spans=spans,
        ))
    return LoadedBlock(block, items, skipped)


def train_block(project: Project, block_id: str, *, minutes: float | None = None, seed: int = 0,
                fresh: bool = False, on_progress: Callable | None = None,
                should_stop: Callable[[], bool] | None = None, config=None):
    """Fit one block and save its twin. Resumes from the checkpoint unless ``fresh``.
    ``config``: a :class:`dsp.fit.FitConfig` (the defaults otherwise). The rig's
    ``structure`` for the block is set in it (its own ``variants`` win where both name
    an option)."""
    from dataclasses import replace

    from dsp.fit import FitConfig
    from dsp.twin import fit_block

    from .fsutil import atomic_write_bytes

    loaded = load_items(project, block_id)
    train = [it for it in loaded.items if not it.holdout]
    if not train:
        raise ProjectError(
            f"{block_id}: no ready captures to train on. Bounce some (see `unit-trainer status`)."
        )
    ckpt = checkpoint_path(project, block_id)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    resumed = ckpt.exists() and not fresh
    if loaded.block.structure:
        config = config or FitConfig()
        config = replace(config, variants={**dict(loaded.block.structure), **(config.variants or {})})
    fitted = fit_block(
        loaded.block.topology, knob_specs(loaded.block), loaded.items, seed=seed,
        time_budget_s=None if minutes is None else minutes * 60.0,
        on_progress=on_progress, should_stop=should_stop,
        checkpoint_path=ckpt, resume=resumed, config=config,
    )
    out = model_path(project, block_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    fitted.save(out)
    meta = {"block": block_id, "status": fitted.status, "resumed": resumed, "skipped": loaded.skipped,
            "holdout": [it.name for it in loaded.items if it.holdout]}
    atomic_write_bytes(out.with_suffix(".meta.json"), json.dumps(meta, indent=1).encode())
    return fitted, meta


def load_model(project: Project, block_id: str):
    from dsp.twin import FittedBlock

    path = model_path(project, block_id)
    if not path.is_file():
        raise ProjectError(f"{block_id}: no trained model yet. Run `unit-trainer train {project.root} --block {block_id}`.")
    try:
        return FittedBlock.load(path)
    except (OSError, ValueError, KeyError) as exc:
        raise ProjectError(f"{path}: cannot read the model ({exc}). Train again.") from None


def parse_settings(block: Block, pairs: list[str]) -> dict[str, float]:
    """``["Drive=6.5", "Attack=2"]`` -> a full setting (others at reference/fixed)."""
    setting = block.reference_setting()
    for pair in pairs:
        if "=" not in pair:
            raise ProjectError(f"--set {pair!r}: write Knob=value, e.g. --set Drive=6.5.")
        name, _, raw = pair.partition("=")
        try:
            knob = block.knob(name.strip())
        except KeyError:
            names = ", ".join(k.name for k in block.knobs)
            raise ProjectError(f"--set {pair!r}: {block.id} has no knob {name.strip()!r}; knobs: {names}.") from None
        try:
            value = float(raw)
        except ValueError:
            raise ProjectError(f"--set {pair!r}: {raw!r} is not a number.") from None
        if not knob.minimum <= value <= knob.maximum:
            raise ProjectError(f"--set {pair!r}: outside {knob.name}'s range {knob.minimum:g}-{knob.maximum:g}.")
        if knob.kind == "switch" and (value != int(value) or int(value) not in knob.positions):
            raise ProjectError(f"--set {pair!r}: {knob.name} is a switch with positions {list(knob.positions)}.")
        setting[knob.name] = value
    return setting


def render_file(project: Project, block_id: str, setting: dict[str, float], input_wav: Path, output_wav: Path) -> None:
    """Render ``input_wav`` through the twin at ``setting``; never overwrites ``output_wav``."""
    from .audio_io import write_wav_atomic

    output_wav = Path(output_wav)
    if output_wav.exists():
        raise ProjectError(f"--output {output_wav} already exists; choose a new name (nothing was overwritten).")
    try:
        loaded = read_capture(input_wav)
    except CaptureReadError as exc:
        raise ProjectError(f"--input {input_wav}: {exc}") from None
    model = load_model(project, block_id)
    block = project.rig.block(block_id)
    modelled = {k.name for k in block.modelled_knobs}
    y = model.render({k: v for k, v in setting.items() if k in modelled}, loaded.audio, loaded.sample_rate)
    write_wav_atomic(output_wav, y, loaded.sample_rate, subtype="FLOAT")


def project_report(project: Project) -> dict:
    """Per-block, per-capture and held-out ESR of the saved models."""
    out = {}
    for block in project.rig.blocks:
        path = model_path(project, block.id)
        if not path.is_file():
            out[block.id] = None
            continue
        out[block.id] = load_model(project, block.id).report()
    return out

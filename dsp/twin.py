"""The differentiable twin: the small, stable API the UI and the CLI call.

Nothing here knows about project folders or the UI: it takes numpy arrays and knob
settings, and returns numbers.

Typical use::

    from dsp.twin import KnobSpec, TrainItem, fit_block, FittedBlock

    knobs = [KnobSpec("Drive", affects=("pre_gain_db",)),
             KnobSpec("Attack", kind="switch", positions=(1, 2, 3, 4, 5, 6), reference=3)]
    items = [TrainItem("Drive_0p0", {"Drive": 0.0, "Attack": 3}, x, y, 48000), ...]
    block = fit_block("drive", knobs, items, seed=0, on_progress=print,
                      checkpoint_path="drive.ckpt")
    block.report()["holdout"]["median"]
    y = block.render({"Drive": 6.3, "Attack": 2}, guitar, 48000)
    block.save("drive.twin.json"); FittedBlock.load("drive.twin.json")

Stability: field names and signatures here are a contract with unit_tui; the saved
file has its own ``format``/``version`` (``TWIN_FORMAT_VERSION``), independent of the
package version.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["KnobSpec", "TrainItem", "Progress", "FittedBlock", "fit_block", "FitConfig",
           "TOPOLOGY_NAMES", "topology_controls", "TWIN_FORMAT_VERSION", "verdict"]

TWIN_FORMAT_VERSION = 1
TOPOLOGY_NAMES = ("drive", "amp", "eq_match")

from dsp.fit import FitConfig  # noqa: E402  (dataclass only; torch is imported by fit)
from dsp.losses import verdict  # noqa: E402


@dataclass(frozen=True)
class KnobSpec:
    """A modelled knob.

    Attributes:
        name: as in the rig file ("Drive", "Bias_X").
        kind: "continuous" or "switch".
        minimum, maximum: the knob's range (a switch: its lowest/highest position).
        positions: a switch's positions (e.g. (1, 2, 3, 4, 5, 6)); empty otherwise.
        reference: the value while other knobs are swept (noon = 5.0 by default).
        affects: DSP control names this knob may move (``topology_controls(name)``);
            ``None``: unknown, it may move any control (regularised).
    """

    name: str
    kind: str = "continuous"
    minimum: float = 0.0
    maximum: float = 10.0
    positions: tuple[float, ...] = ()
    reference: float = 5.0
    affects: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.kind not in ("continuous", "switch"):
            raise ValueError(f"knob {self.name!r}: kind must be 'continuous' or 'switch'")
        if self.kind == "switch":
            if len(self.positions) < 2:
                raise ValueError(f"knob {self.name!r}: a switch needs two or more positions")
            object.__setattr__(self, "positions", tuple(float(p) for p in self.positions))
            object.__setattr__(self, "minimum", float(min(self.positions)))
            object.__setattr__(self, "maximum", float(max(self.positions)))
        if self.affects is not None:
            object.__setattr__(self, "affects", tuple(self.affects))

    def _def(self):
        from dsp.controls import KnobDef

        return KnobDef(self.name, self.kind, float(self.minimum), float(self.maximum),
                       tuple(self.positions), float(self.reference), self.affects)


@dataclass
class TrainItem:
    """One capture: the test signal, the block's output, and the knob setting.

    Attributes:
        name: capture name (file stem).
        knobs: ``{knob name: value}`` for the modelled knobs (missing -> reference).
        input, target: mono float arrays ``(T,)`` at ``sample_rate`` (target is the
            bounce through the real block; lengths may differ, the shorter wins).
        latency_samples: the target's delay behind the input; ``None``: found by the
            fitter (one latency for the whole block: the median excess-phase delay, see
            :func:`dsp.fit.excess_delay`).
        latency_hint: a measured onset of the target (e.g. from the test signal's
            blips), used only when the excess phase says nothing (no coherent output);
            ``None``: then the cross-correlation peak.
        holdout: ``True`` keeps the item out of training; it is scored only.
        guitar_spans: sample ranges ``(start, end)`` of the input where it plays guitar
            (``SignalLayout.guitar_spans``); the report scores them on their own too
            (``guitar_esr``), since a whole capture's error is mostly its loud sweeps
            and noise. () scores the whole capture only.
    """

    name: str
    knobs: dict[str, float]
    input: np.ndarray
    target: np.ndarray
    sample_rate: float
    latency_samples: float | None = None
    holdout: bool = False
    latency_hint: float | None = None
    guitar_spans: tuple[tuple[int, int], ...] = ()


@dataclass
class Progress:
    """A progress event (``on_progress`` gets one per optimiser step or item).

    ``stage``: one of "latency", "init", "per_capture", "curves", "joint", "report";
    ``step``/``total`` within the stage; ``loss`` the step's training loss;
    ``train_esr`` mean ESR over the training items seen lately (equal weight);
    ``holdout_esr`` mean ESR over held-out items (``None`` until the knob map exists);
    ``per_item_esr`` latest ESR per item name; ``eta_s`` estimated seconds left;
    ``detail`` what a long step is doing now (the init's descent, its knob searches),
    empty where the step and total say it all.
    """

    stage: str
    step: int
    total: int
    loss: float | None
    train_esr: float | None
    holdout_esr: float | None
    per_item_esr: dict[str, float] = field(default_factory=dict)
    eta_s: float | None = None
    elapsed_s: float = 0.0
    detail: str = ""


def topology_controls(topology: str) -> list[dict]:
    """The DSP controls a topology declares (name, unit, range, default, doc)."""
    from dsp.topologies import TOPOLOGIES

    return [dict(c.to_dict(), doc=c.doc) for c in TOPOLOGIES[topology].CONTROLS]


def _upgrade_knob_map(d: dict, topology: str) -> dict:
    """A knob map saved before its topology gained trailing controls (the output
    sections', the drive's ``tone_lp_q``, second input high-pass and blend tone, the
    amp's second all-pass pair and drive section; the sections are off in such a twin, see
    :func:`_upgrade_shared`) gets them at their defaults, constant (no curve, no MLP
    weight): the twin computes what it computed. Other mismatches are left to fail."""
    from dsp.topologies import TOPOLOGIES

    specs = TOPOLOGIES[topology].CONTROLS
    have = [c["name"] for c in d.get("controls", [])]
    want = [c.name for c in specs]
    if have == want or have != want[: len(have)]:
        return d
    d = json.loads(json.dumps(d))
    extra = specs[len(have):]
    d["controls"] += [c.to_dict() for c in extra]
    d["base_raw"] += [float(c.to_raw(c.default)) for c in extra]
    hidden = d["mlp"]["hidden"]
    d["mlp"]["W2"] += [[0.0] * hidden for _ in extra]
    d["mlp"]["enabled"] = list(d["mlp"].get("enabled", [])) + [0.0] * len(extra)
    d["mlp"]["input_mask"] = list(d["mlp"].get("input_mask", [])) + [[0.0] * len(d["knobs"]) for _ in extra]
    return d


def _upgrade_shared(shared: dict, topology: str) -> dict:
    """Shared values saved before the topology gained a section switch or structural
    option: it is off (0), so the twin computes what it computed (a new fit sets every
    one)."""
    from dsp.topologies import TOPOLOGIES

    topo = TOPOLOGIES[topology]
    for k in [*topo.VARIANTS, *topo.switches()]:
        shared.setdefault(k, 0.0)
    return shared


class FittedBlock:
    """A fitted twin: topology + shared parameters + the knob->control map.

    Build with :func:`fit_block` or :meth:`load`/:meth:`from_dict`.
    """

    def __init__(self, topology: str, sample_rate: float, oversample: int, shared_raw: dict,
                 knob_map: dict, polarity: float = 1.0, report: dict | None = None,
                 status: str = "complete", output_fir: list[float] | None = None):
        self.topology = topology
        self.sample_rate = float(sample_rate)
        self.oversample = int(oversample)
        self.shared_raw = _upgrade_shared({k: float(v) for k, v in shared_raw.items()}, topology)
        self.knob_map = _upgrade_knob_map(knob_map, topology)
        self.polarity = float(polarity)
        self._report = report or {}
        self.status = status
        #: the output FIR's taps at ``sample_rate`` (topologies with ``OUTPUT_FIR``, when
        #: the shared ``output_fir`` is on), else None
        self.output_fir = None if output_fir is None else [float(v) for v in output_fir]
        if self.shared_raw.get("output_fir", 0.0) > 0.5 and not self.output_fir:
            raise ValueError("this twin has its output FIR on (shared output_fir = 1) but no taps "
                             "(\"output_fir\"): the file is damaged; train the block again")
        self._topo = None
        self._map = None

    # -- evaluation ----------------------------------------------------------------------
    def _modules(self):
        if self._topo is None:
            import torch

            from dsp.controls import KnobControlMap
            from dsp.topologies import make_topology

            topo = make_topology(self.topology, self.sample_rate, self.oversample)
            with torch.no_grad():
                for k, v in self.shared_raw.items():
                    topo.shared[k].fill_(v)
            if self.output_fir is not None:
                topo.set_output_fir(self.output_fir)
            # its controls squash with the ranges it was fitted with (a range widened
            # since, e.g. the amp's interstage low-passes, leaves it as it was)
            topo.use_control_ranges(self.knob_map["controls"])
            self._topo, self._map = topo, KnobControlMap.from_dict(self.knob_map)
        return self._topo, self._map

    @property
    def knob_names(self) -> list[str]:
        return [k["name"] for k in self.knob_map["knobs"]]

    def controls(self, knobs: dict[str, float]) -> dict[str, float]:
        """Physical DSP control values at a knob setting (missing knobs -> reference)."""
        _, m = self._modules()
        return m.physical([knobs])[0]

    def render(self, knobs: dict[str, float], audio: np.ndarray, sample_rate: float) -> np.ndarray:
        """The twin's output at ANY knob setting (captured or not).

        Args:
            knobs: ``{knob: value}``; knobs left out sit at their reference.
            audio: ``(T,)`` or ``(B, T)`` float array.
            sample_rate: of ``audio`` (Hz); controls are physical, so any rate works.
        Returns:
            float32 array of the same shape, via the exact (recursive-filter) path.
        """
        import torch

        unknown = set(knobs) - set(self.knob_names)
        if unknown:
            raise KeyError(f"unknown knobs {sorted(unknown)}; this block models {self.knob_names}")
        topo, m = self._modules()
        a = np.asarray(audio, dtype=np.float64)
        x = torch.from_numpy(np.atleast_2d(a))
        with torch.no_grad():
            raw = m(m.knob_tensor([knobs])).expand(x.shape[0], -1)
            y = topo(x, raw, sample_rate=float(sample_rate), exact=True).numpy() * self.polarity
        return y.reshape(a.shape).astype(np.float32)

    @property
    def latency_samples(self) -> float | None:
        """The delay of the captures behind the twin's output (samples at the training
        rate; the median over the fitted items): the device's latency as the fit found
        it. Compare a new render of the real block with :meth:`render` after advancing
        it by this much."""
        lats = [it.get("latency_samples") for it in self._report.get("items", [])
                if it.get("latency_samples") is not None]
        return float(np.median(lats)) if lats else None

    def report(self) -> dict:
        """Per-item ESR (exact path), held-out and training summaries, NAM verdicts.

        ``{"items": [{name, holdout, esr, guitar_esr, verdict, latency_samples, knobs}],
        "train": {mean, median, worst, count, verdict} | None, "holdout": ... | None,
        "train_guitar" / "holdout_guitar": the same over the items' ``guitar_esr`` (the
        test signal's guitar segments alone) | None,
        "status": "complete" | "cancelled" | "budget", "structure": {option: 0 | 1},
        "sections": {switch: 0 | 1}, "fit_seconds", ...}`` (``structure``: the
        topology's structural options as this twin has them, ``dsp.structure``;
        ``sections``: the optional sections the fitter decided from the captures, e.g.
        ``output_fir``, ``allpass``, ``output_dc``; ``affects``: ``{knob: [controls]}``,
        the controls each knob drives, from the rig's hints or inferred by the fit)"""
        from dsp.structure import STRUCTURE
        from dsp.topologies import TOPOLOGIES

        on = lambda k: int(self.shared_raw.get(k, 0.0) > 0.5)  # noqa: E731
        structure = {o.name: on(o.name) for o in STRUCTURE[self.topology]}
        cls = TOPOLOGIES[self.topology]
        sections = {k: on(k) for k in cls.switches() if k not in cls.SWITCHES_ON}
        affects = {k["name"]: list(k.get("affects") or [c["name"] for c in self.knob_map["controls"]])
                   for k in self.knob_map["knobs"]}
        return dict(self._report, status=self.status, structure=structure, sections=sections, affects=affects)

    # -- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": "unit-twin", "version": TWIN_FORMAT_VERSION, "topology": self.topology,
                "sample_rate": self.sample_rate, "oversample": self.oversample,
                "polarity": self.polarity, "shared_raw": self.shared_raw,
                "shared_physical": self._shared_physical(), "knob_map": self.knob_map,
                "report": self._report, "status": self.status,
                **({"output_fir": self.output_fir} if self.output_fir is not None else {})}

    def _shared_physical(self) -> dict:
        topo, _ = self._modules()
        return topo.describe()["shared"]

    @classmethod
    def from_dict(cls, d: dict) -> "FittedBlock":
        if d.get("format") != "unit-twin" or d.get("version") != TWIN_FORMAT_VERSION:
            raise ValueError(f"not a unit-twin v{TWIN_FORMAT_VERSION} document")
        return cls(d["topology"], d["sample_rate"], d["oversample"], d["shared_raw"],
                   d["knob_map"], d.get("polarity", 1.0), d.get("report"), d.get("status", "complete"),
                   d.get("output_fir"))

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (temp file in the same folder + ``os.replace``)."""
        path = os.fspath(path)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FittedBlock":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


def fit_block(topology: str, knobs: list[KnobSpec], items: list[TrainItem], *, seed: int = 0,
              time_budget_s: float | None = None,
              on_progress: Callable[[Progress], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              checkpoint_path: str | os.PathLike | None = None, resume: bool = False,
              config: FitConfig | None = None) -> FittedBlock:
    """Fit a twin of ``topology`` to ``items`` (see :mod:`dsp.fit` for the stages).

    Args:
        topology: "drive", "amp" or "eq_match".
        knobs: the modelled knobs.
        items: captures; ``holdout=True`` ones are only scored.
        seed: every random choice derives from it (same seed + data -> same result).
        time_budget_s: wall-clock budget; stages are cut short to meet it.
        on_progress: called with :class:`Progress` events (from this thread).
        should_stop: polled every step; ``True`` stops early and returns the block as it
            stands (``status == "cancelled"``), checkpoint written first.
        checkpoint_path: where the fit state is saved every
            ``config.checkpoint_interval_s`` seconds, at each stage end, and on stop.
        resume: continue from ``checkpoint_path`` if it exists (same items/seed/config).
        config: :class:`dsp.fit.FitConfig` (defaults otherwise).
    """
    import torch

    from dsp.fit import Fitter

    if topology not in TOPOLOGY_NAMES:
        raise ValueError(f"unknown topology {topology!r}; known: {TOPOLOGY_NAMES}")
    if not [it for it in items if not it.holdout]:
        raise ValueError("every item is held out: nothing to train on")
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        names = {k.name for k in knobs}
        its = [dict(name=it.name, knobs={k: float(v) for k, v in it.knobs.items() if k in names},
                    input=it.input, target=it.target, sample_rate=it.sample_rate,
                    latency_samples=it.latency_samples, latency_hint=it.latency_hint,
                    holdout=it.holdout, guitar_spans=tuple(it.guitar_spans)) for it in items]
        fitter = Fitter(topology, [k._def() for k in knobs], its, seed=seed, config=config)
        ckpt = os.fspath(checkpoint_path) if checkpoint_path else None
        if resume and ckpt and os.path.exists(ckpt):
            fitter.load_checkpoint(ckpt)
        cb = None
        if on_progress is not None:
            cb = lambda ev: on_progress(Progress(**ev))  # noqa: E731
        done = fitter.run(cb, should_stop, time_budget_s, ckpt)
        status = "complete" if done else "cancelled"
        if not done and fitter.stage < 1:  # stopped before the init stage set the map:
            with torch.no_grad():          # render the median per-capture controls
                fitter.map.base.copy_(fitter.item_raw[fitter.train_idx].median(0).values)
        if done and time_budget_s is not None and fitter.elapsed > 0.9 * time_budget_s:
            status = "budget"
        rep = fitter.report or {"items": [], "train": None, "holdout": None,
                                "topology": topology, "polarity": fitter.polarity}
        rep = dict(rep, steps={"stage": fitter.stage, "step": fitter.step})
        topo = fitter.topo
        fir = (topo.output_fir_taps.tolist()
               if topo.OUTPUT_FIR and float(topo.shared["output_fir"]) > 0.5 else None)
        return FittedBlock(topology, fitter.sr, fitter.cfg.oversample,
                           {k: float(v.detach()) for k, v in topo.shared.items()},
                           fitter.map.to_dict(), fitter.polarity, rep, status, fir)
    finally:
        torch.set_num_threads(prev_threads)

"""Knob -> DSP-control mapping (the small network that lives in the trainer).

For each DSP control ``c`` of a topology (raw, unbounded value; the topology squashes
it into the physical range with :meth:`dsp.topologies.ControlSpec.to_physical`)::

    raw_c(knobs) = base_c
                 + sum_k mask[k, c] * curve_{k,c}(knob_k)            (per-knob curves)
                 + mlp_mask[c] * head_c . tanh(W1 (knobs_norm * in_mask[c]) + b1)   (interactions)

* continuous knob: ``curve`` is piecewise linear through ``n_knots`` equally spaced
  knots over the knob's range, shifted so that it is 0 at the knob's reference setting
  (``base`` is then the control's value at the reference setting of every knob);
* switch knob: ``curve`` is a table with one value per position, 0 at the reference;
* the MLP sees the knobs normalised to [-1, 1], masked per control to the knobs that
  may affect it; it is only used for controls that two or more knobs affect; its output
  heads start at zero, so the network starts as the additive model.

"affects" hints (knob -> list of control names) fix every other knob->control curve at
zero; a knob without hints may affect every control (then :meth:`regularizer` keeps the
curves small and smooth).

Everything serialises to plain numbers (:meth:`KnobControlMap.to_dict`), and
:func:`evaluate_dict` evaluates that dict with numpy only: the reference the C++
export reproduces.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from dsp.topologies import ControlSpec

__all__ = ["KnobDef", "KnobControlMap", "evaluate_dict", "FORMAT_VERSION"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class KnobDef:
    """What the mapping needs to know of a knob (a subset of :class:`dsp.twin.KnobSpec`)."""

    name: str
    kind: str = "continuous"  # or "switch"
    minimum: float = 0.0
    maximum: float = 10.0
    positions: tuple[float, ...] = ()
    reference: float = 5.0
    affects: tuple[str, ...] | None = None

    def normalise(self, v):
        span = (self.maximum - self.minimum) or 1.0
        return 2.0 * (v - self.minimum) / span - 1.0

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "minimum": float(self.minimum),
                "maximum": float(self.maximum), "positions": [float(p) for p in self.positions],
                "reference": float(self.reference),
                "affects": None if self.affects is None else list(self.affects)}

    @classmethod
    def from_dict(cls, d: dict) -> "KnobDef":
        return cls(d["name"], d.get("kind", "continuous"), float(d["minimum"]), float(d["maximum"]),
                   tuple(float(p) for p in d.get("positions", ())), float(d["reference"]),
                   None if d.get("affects") is None else tuple(d["affects"]))


def _pwl_weights(v: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Hat-function weights ``(B, K)`` of linear interpolation at ``v`` (clamped)."""
    K = knots.shape[0]
    v = v.clamp(float(knots[0]), float(knots[-1]))
    h = (knots[-1] - knots[0]) / (K - 1)
    pos = (v - knots[0]) / h
    i0 = pos.floor().clamp(0, K - 2).long()
    frac = pos - i0
    w = torch.zeros(v.shape[0], K, dtype=v.dtype)
    w.scatter_(1, i0[:, None], (1 - frac)[:, None])
    w.scatter_add_(1, (i0 + 1)[:, None], frac[:, None])
    return w


class KnobControlMap(nn.Module):
    """Knob settings ``(B, n_knobs)`` (knob units) -> raw controls ``(B, C)``.

    Args:
        knobs: the modelled knobs (order = column order of the input).
        controls: the topology's control specs.
        n_knots: knots per continuous knob (equally spaced over its range).
        hidden: MLP width.
        base_raw: optional ``(C,)`` starting raw values (defaults otherwise).
    """

    def __init__(self, knobs: list[KnobDef], controls: list[ControlSpec], n_knots: int = 5,
                 hidden: int = 16, base_raw: torch.Tensor | None = None):
        super().__init__()
        self.knobs = list(knobs)
        self.controls = list(controls)
        self.n_knots = int(n_knots)
        self.hidden = int(hidden)
        C, K = len(self.controls), len(self.knobs)
        names = [c.name for c in self.controls]
        mask = torch.zeros(K, C)
        for k, kd in enumerate(self.knobs):
            if kd.affects is None:
                mask[k] = 1.0
            else:
                unknown = set(kd.affects) - set(names)
                if unknown:
                    raise ValueError(f"knob {kd.name!r} affects unknown controls {sorted(unknown)}; "
                                     f"known: {names}")
                for n in kd.affects:
                    mask[k, names.index(n)] = 1.0
        self.register_buffer("mask", mask)
        self.register_buffer("mlp_mask", (mask.sum(0) >= 2).float())
        if base_raw is None:
            base_raw = torch.stack([c.to_raw(c.default) for c in self.controls]).float()
        self.base = nn.Parameter(base_raw.clone().float())
        self.curves = nn.ParameterList()
        for kd in self.knobs:
            n = len(kd.positions) if kd.kind == "switch" else self.n_knots
            self.curves.append(nn.Parameter(torch.zeros(C, n)))
        g = torch.Generator().manual_seed(1234)
        self.W1 = nn.Parameter(torch.randn(self.hidden, max(K, 1), generator=g) / math.sqrt(max(K, 1)))
        self.b1 = nn.Parameter(0.1 * torch.randn(self.hidden, generator=g))
        self.W2 = nn.Parameter(torch.zeros(C, self.hidden))

    def set_affects(self, k: int, names) -> None:
        """Restrict knob ``k`` to the controls ``names`` (e.g. inferred by the fitter
        where the rig gives no hint); its other curves are zeroed. Saved in ``to_dict``
        as the knob's ``affects``, so a loaded map is the same function."""
        from dataclasses import replace

        cnames = [c.name for c in self.controls]
        self.knobs[k] = replace(self.knobs[k], affects=tuple(names))
        with torch.no_grad():
            self.mask[k] = 0.0
            for n in names:
                self.mask[k, cnames.index(n)] = 1.0
            self.mlp_mask.copy_((self.mask.sum(0) >= 2).float())
            self.curves[k].mul_(self.mask[k][:, None])

    # -- helpers ---------------------------------------------------------------------
    def knots(self, k: int) -> torch.Tensor:
        kd = self.knobs[k]
        if kd.kind == "switch":
            return torch.tensor(kd.positions, dtype=torch.float32)
        return torch.linspace(kd.minimum, kd.maximum, self.n_knots)

    def _basis(self, k: int, v: torch.Tensor) -> torch.Tensor:
        """``(B, n)`` weights of knob ``k``'s curve values at settings ``v`` ``(B,)``."""
        kd = self.knobs[k]
        if kd.kind == "switch":
            pos = torch.tensor(kd.positions, dtype=v.dtype)
            idx = (v[:, None] - pos[None]).abs().argmin(-1)
            return torch.nn.functional.one_hot(idx, len(kd.positions)).to(v.dtype)
        return _pwl_weights(v, self.knots(k).to(v.dtype))

    def knob_tensor(self, settings: list[dict[str, float]]) -> torch.Tensor:
        """``(B, n_knobs)`` from a list of ``{knob: value}`` (missing -> reference)."""
        return torch.tensor([[float(s.get(kd.name, kd.reference)) for kd in self.knobs]
                             for s in settings], dtype=torch.float32)

    def additive(self, kv: torch.Tensor) -> torch.Tensor:
        """Base + per-knob curves, ``(B, C)``."""
        out = self.base[None].expand(kv.shape[0], -1)
        for k, kd in enumerate(self.knobs):
            w = self._basis(k, kv[:, k]) - self._basis(k, torch.full_like(kv[:, k], kd.reference))
            out = out + (w @ self.curves[k].T) * self.mask[k][None]
        return out

    def interactions(self, kv: torch.Tensor) -> torch.Tensor:
        if not self.knobs:
            return torch.zeros(kv.shape[0], len(self.controls))
        xn = torch.stack([kd.normalise(kv[:, k]) for k, kd in enumerate(self.knobs)], -1)
        xin = xn[:, None, :] * self.mask.T[None]                       # (B, C, K)
        h = torch.tanh(xin @ self.W1.T + self.b1)                      # (B, C, H)
        return (h * self.W2[None]).sum(-1) * self.mlp_mask[None]

    def forward(self, kv: torch.Tensor) -> torch.Tensor:
        return self.additive(kv) + self.interactions(kv)

    def regularizer(self, curve_l2: float = 1e-4, smooth: float = 1e-3, mlp_l2: float = 1e-4,
                    free_l2: float = 1e-3) -> torch.Tensor:
        """Smoothness (second differences) of the curves, small MLP heads, and small
        curves where no hint restricts a knob (``free_l2``)."""
        r = self.W2.pow(2).sum() * mlp_l2
        for k, kd in enumerate(self.knobs):
            cv = self.curves[k] * self.mask[k][:, None]
            r = r + curve_l2 * cv.pow(2).sum()
            if kd.kind != "switch" and cv.shape[1] >= 3:
                r = r + smooth * (cv[:, 2:] - 2 * cv[:, 1:-1] + cv[:, :-2]).pow(2).sum()
            if kd.affects is None:
                r = r + free_l2 * cv.pow(2).sum()
        return r

    # -- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain numbers: knobs, controls (ranges/scales), base, curves, MLP weights."""
        names = [c.name for c in self.controls]
        curves = []
        for k, kd in enumerate(self.knobs):
            vals = {names[c]: [float(v) for v in self.curves[k][c].detach()]
                    for c in range(len(names)) if self.mask[k, c] > 0}
            curves.append({"knob": kd.name,
                           "kind": "table" if kd.kind == "switch" else "pwl",
                           "knots": [float(v) for v in self.knots(k)],
                           "values": vals})
        return {
            "format": "unit-knob-map", "version": FORMAT_VERSION,
            "knobs": [kd.to_dict() for kd in self.knobs],
            "controls": [c.to_dict() for c in self.controls],
            "base_raw": [float(v) for v in self.base.detach()],
            "curves": curves,
            "mlp": {"activation": "tanh", "hidden": self.hidden,
                    "input": "2*(v-min)/(max-min)-1 per knob, times input_mask[control]",
                    "input_mask": self.mask.T.tolist(),
                    "enabled": [float(v) for v in self.mlp_mask],
                    "W1": self.W1.detach().tolist(), "b1": self.b1.detach().tolist(),
                    "W2": self.W2.detach().tolist()},
            "squash": "physical = lo + (hi-lo)*sigmoid(raw); log scale: exp of that in log(lo), log(hi)",
        }

    @classmethod
    def from_dict(cls, d: dict) -> "KnobControlMap":
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported knob-map version {d.get('version')!r}")
        knobs = [KnobDef.from_dict(k) for k in d["knobs"]]
        controls = [ControlSpec(c["name"], c["unit"], c["minimum"], c["maximum"], c["default"],
                                c["scale"]) for c in d["controls"]]
        pwl = [c for c in d["curves"] if c["kind"] == "pwl"]
        n_knots = len(pwl[0]["knots"]) if pwl else 5
        m = cls(knobs, controls, n_knots=n_knots, hidden=d["mlp"]["hidden"],
                base_raw=torch.tensor(d["base_raw"]))
        names = [c.name for c in controls]
        with torch.no_grad():
            for k, cv in enumerate(d["curves"]):
                for cname, vals in cv["values"].items():
                    m.curves[k][names.index(cname)] = torch.tensor(vals)
            m.W1.copy_(torch.tensor(d["mlp"]["W1"]))
            m.b1.copy_(torch.tensor(d["mlp"]["b1"]))
            m.W2.copy_(torch.tensor(d["mlp"]["W2"]))
        return m

    def physical(self, settings: list[dict[str, float]]) -> list[dict[str, float]]:
        """Physical control values for knob settings (convenience, no grad)."""
        with torch.no_grad():
            raw = self(self.knob_tensor(settings))
        return [{c.name: float(c.to_physical(raw[i, j])) for j, c in enumerate(self.controls)}
                for i in range(raw.shape[0])]


def evaluate_dict(d: dict, setting: dict[str, float]) -> dict[str, float]:
    """Evaluate a :meth:`KnobControlMap.to_dict` with numpy only (the C++ reference).

    Returns physical control values ``{name: value}`` for one knob ``setting``.
    """
    knobs = d["knobs"]
    ctrls = d["controls"]
    names = [c["name"] for c in ctrls]
    raw = np.array(d["base_raw"], dtype=np.float64)
    for kd, cv in zip(knobs, d["curves"]):
        v = float(setting.get(kd["name"], kd["reference"]))
        knots = np.array(cv["knots"], dtype=np.float64)
        for cname, vals in cv["values"].items():
            vals = np.array(vals, dtype=np.float64)
            if cv["kind"] == "table":
                f = lambda s: vals[int(np.argmin(np.abs(knots - s)))]  # noqa: E731
            else:
                f = lambda s: np.interp(np.clip(s, knots[0], knots[-1]), knots, vals)  # noqa: E731
            raw[names.index(cname)] += f(v) - f(float(kd["reference"]))
    mlp = d["mlp"]
    xn = np.array([2.0 * (float(setting.get(k["name"], k["reference"])) - k["minimum"])
                   / ((k["maximum"] - k["minimum"]) or 1.0) - 1.0 for k in knobs])
    W1, b1, W2 = (np.array(mlp[k], dtype=np.float64) for k in ("W1", "b1", "W2"))
    for c in range(len(names)):
        if mlp["enabled"][c] > 0 and len(knobs):
            h = np.tanh(W1 @ (xn * np.array(mlp["input_mask"][c])) + b1)
            raw[c] += float(W2[c] @ h)
    out = {}
    for c, r in zip(ctrls, raw):
        lo, hi = c["minimum"], c["maximum"]
        if c["scale"] == "log":
            lo, hi = math.log(lo), math.log(hi)
        v = lo + (hi - lo) / (1.0 + math.exp(-r))
        out[c["name"]] = math.exp(v) if c["scale"] == "log" else v
    return out

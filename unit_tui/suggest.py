"""Next captures: extra chaos presets where the twin is worst or least sure.

Two kinds of proposal, each with its reason:

* **near the worst captures** — settings close to (but not on) the captures with the
  highest ESR, held-out ones first: more data where the model struggles;
* **coverage** — settings far from every capture so far (in knob space scaled to each
  knob's chaos limits): where the knob map is only interpolating.

Candidates are drawn deterministically (``seed``), scored, and picked greedily so two
proposals are never next to each other. Values are rounded like ``add-chaos`` (0.1;
switches to a position). Accepting them is :meth:`Project.add_chaos_settings`.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

NEAR_RADIUS = 0.15     # fraction of each knob's range
MIN_SPACING = 0.08     # no two proposals (or a proposal and a capture) closer than this


@dataclass
class Suggestion:
    setting: dict[str, float]   # a full setting: every knob of the block (fixed ones held)
    reason: str
    score: float


def _norm(knob, v: float) -> float:
    lo, hi = knob.chaos_limits
    return 0.0 if hi <= lo else (float(v) - lo) / (hi - lo)


def _denorm(knob, u: float) -> float:
    lo, hi = knob.chaos_limits
    u = min(1.0, max(0.0, u))
    if knob.kind == "switch":
        choices = [p for p in knob.positions if lo <= p <= hi] or list(knob.positions)
        target = lo + u * (hi - lo)
        return float(min(choices, key=lambda p: abs(p - target)))
    return round(lo + u * (hi - lo), 1)


def _dist(a: list[float], b: list[float]) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)) / max(1, len(a)))


def suggest_captures(block, report_items: list[dict], existing: list[dict[str, float]], n: int = 4,
                     seed: int = 0) -> list[Suggestion]:
    """``n`` new chaos settings for ``block``.

    Args:
        report_items: the twin's report items (``name``, ``esr``, ``holdout``, ``knobs``).
        existing: the settings already planned (captured or not), so none is repeated.
    """
    knobs = list(block.chaos_knobs)
    if not knobs or n <= 0:
        return []
    rng = random.Random(seed)
    ref = {k.name: float(k.held_value) for k in block.knobs}

    def vec(setting: dict) -> list[float]:
        return [_norm(k, setting.get(k.name, ref[k.name])) for k in knobs]

    taken = [vec(s) for s in existing]
    scored = [it for it in report_items if it.get("esr") is not None and it.get("knobs") is not None]
    scored.sort(key=lambda it: (-(it["esr"] * (2.0 if it.get("holdout") else 1.0))))
    esr_ref = sorted(it["esr"] for it in scored)[len(scored) // 2] if scored else 0.01
    near: list[tuple[float, list[float], str]] = []
    for it in scored[: max(2, n)]:
        centre = vec({**ref, **it["knobs"]})
        tag = "held-out" if it.get("holdout") else "training"
        weight = it["esr"] * (2.0 if it.get("holdout") else 1.0)
        why = f"near {it['name']} ({tag}, ESR {it['esr']:.3f})"
        for _ in range(24):
            near.append((weight, [min(1.0, max(0.0, u + rng.uniform(-NEAR_RADIUS, NEAR_RADIUS))) for u in centre], why))
    coverage = [(esr_ref, [rng.random() for _ in knobs], "coverage: far from every capture")
                for _ in range(96)]
    n_cover = max(1, n // 4) if n >= 2 and near else (n if not near else 0)
    picked: list[Suggestion] = []
    picked_vecs: list[list[float]] = []

    def pick(pool, count: int, weighted: bool) -> None:
        pool = list(pool)
        goal = len(picked) + count
        while len(picked) < goal and pool:
            best = None
            for cand in pool:
                weight, c, why = cand
                d = min((_dist(c, o) for o in taken + picked_vecs), default=1.0)
                if d < MIN_SPACING:
                    continue
                score = weight * (0.5 + d) if weighted else weight * 2.0 * d
                if best is None or score > best[0]:
                    best = (score, cand)
            if best is None:
                return
            score, cand = best
            pool.remove(cand)
            setting = dict(ref)
            for k, u in zip(knobs, cand[1]):
                setting[k.name] = _denorm(k, u)
            v = vec(setting)
            if any(_dist(v, o) < 1e-9 for o in taken + picked_vecs):
                continue  # rounding landed on a planned setting
            picked.append(Suggestion(setting, cand[2], float(score)))
            picked_vecs.append(v)

    pick(near, n - n_cover, True)
    pick(coverage, n - len(picked), False)
    return picked


def suggest_for_project(project, block_id: str, n: int = 4, seed: int = 0) -> list[Suggestion]:
    """Proposals for a trained block of ``project`` (reads its saved model report)."""
    import json

    from .training import model_path

    block = project.rig.block(block_id)
    try:
        report = json.loads(model_path(project, block_id).read_text("utf-8")).get("report") or {}
    except (OSError, ValueError):
        report = {}
    existing = [c.setting for c in project.plan().for_block(block_id)]
    return suggest_captures(block, report.get("items") or [], existing, n=n, seed=seed)


__all__ = ["Suggestion", "suggest_captures", "suggest_for_project"]

"""The vocabulary of capture checks: a status and a result (no numpy, no audio I/O).

Kept apart from :mod:`unit_tui.checks` so that the app can show a project's checklist
without importing numpy or soundfile first (the first frame must be fast).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any


class Status(str, Enum):
    MISSING = "missing"
    WRITING = "writing"
    READY = "ready"
    INVALID = "invalid"
    EXTRA = "extra"


@dataclass
class CheckResult:
    """The outcome of checking one capture file."""

    status: Status
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sample_rate: int | None = None
    frames: int | None = None
    channels: int | None = None
    latency_samples: float | None = None
    fingerprint: Any | None = field(default=None, compare=False, repr=False)

    @property
    def summary(self) -> str:
        if self.problems:
            return self.problems[0]
        if self.notes:
            return self.notes[0]
        return "ok"

    @classmethod
    def missing(cls) -> "CheckResult":
        return cls(Status.MISSING, notes=["not bounced yet"])

    @classmethod
    def writing(cls, reason: str = "still being written") -> "CheckResult":
        return cls(Status.WRITING, notes=[reason])

    @classmethod
    def extra(cls, hint: str) -> "CheckResult":
        return cls(Status.EXTRA, notes=[hint])

    def with_problem(self, problem: str) -> "CheckResult":
        """A copy with one more problem (and status INVALID); this result is unchanged."""
        return replace(self, status=Status.INVALID, problems=[*self.problems, problem], notes=list(self.notes))

    def to_dict(self) -> dict:
        return {"status": self.status.value, "problems": list(self.problems), "notes": list(self.notes),
                "sample_rate": self.sample_rate, "frames": self.frames, "channels": self.channels,
                "latency_samples": self.latency_samples}

    @classmethod
    def from_dict(cls, d: dict, fingerprint: Any | None = None) -> "CheckResult":
        """The inverse of :meth:`to_dict` (the fingerprint travels separately)."""
        return cls(Status(d["status"]), list(d["problems"]), list(d["notes"]), d.get("sample_rate"),
                   d.get("frames"), d.get("channels"), d.get("latency_samples"), fingerprint)



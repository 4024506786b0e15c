"""Settled steps, kept compact: a finished step the engine only reads again is held as its JSON
and the few fields the engine reads, not as a pydantic model.

A step is *settled* once it is finished (Succeeded or Failed) and expanded, or Skipped: nothing
in a run changes it again (a resume starts from a status read back from the store). What the
engine still reads of it (a child's path and the parent's note, the fan-in's answers, a report's
inputs, the index when it is rebuilt) are attributes here; anything else is read from its JSON
(a model made for the read and dropped). A 10,000-step run held a model per step (with a model
per proposal, 20 for a traversal at fan-out 10): about 20 KiB a step; settled, about 2 KiB.

An executor that keeps its steps' JSON anyway (the kube executor's ``StepDumps``) hands it in, so
that the same bytes serve both.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional

from ..api import SearchRunStatus, StepStatus
from .index import index_of
from .types import P_FAILED, P_SKIPPED, P_SUCCEEDED

_SLOTS = ("id", "type", "phase", "depth", "doc", "parents", "attempts", "expanded", "found", "output",
          "tokens", "costUSD", "tokenAllowance", "via", "why", "note")


class SettledStep:
    """A read-only view of one settled step (see the module docstring)."""

    __slots__ = _SLOTS + ("json",)

    def __init__(self, step: StepStatus, raw: bytes):
        for k in _SLOTS:
            object.__setattr__(self, k, getattr(step, k))
        object.__setattr__(self, "parents", tuple(step.parents))
        object.__setattr__(self, "json", raw)

    def model(self) -> StepStatus:
        """The step as a model, made for this read."""
        return StepStatus.model_validate_json(self.json)

    def __getattr__(self, name: str) -> Any:  # a field not kept as an attribute
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.model(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"step {self.id} is settled (read-only): cannot set {name}")

    def model_dump(self, **kwargs) -> dict:
        if kwargs.get("mode") == "json" and kwargs.get("exclude_none") and not kwargs.get("exclude_defaults"):
            return json.loads(self.json)  # how the JSON was made
        return self.model().model_dump(**kwargs)

    def __repr__(self) -> str:
        return f"SettledStep(id={self.id!r}, type={self.type!r}, phase={self.phase!r})"


def is_settled(s, held: Iterable[str] = ()) -> bool:
    if isinstance(s, SettledStep):
        return True
    return (s.phase == P_SKIPPED or (s.phase in (P_SUCCEEDED, P_FAILED) and s.expanded)) and s.id not in held


def settle(status: SearchRunStatus, positions: Iterable[int], raw_of) -> list[int]:
    """Replace the settled steps at ``positions`` of ``status.steps`` (in the engine's index too) by
    compact views; ``raw_of(i)`` is step ``i``'s JSON (``model_dump(mode="json", exclude_none=True)``,
    serialized) or None to keep it as it is. Returns the positions settled now."""
    idx = index_of(status)
    steps = status.steps
    done = []
    for i in positions:
        s = steps[i]
        if isinstance(s, SettledStep) or not is_settled(s, idx.held) or s.id in idx.dirty:
            continue
        raw: Optional[bytes] = raw_of(i)
        if raw is None:
            continue
        v = SettledStep(s, raw)
        steps[i] = v
        if idx.by_id.get(s.id) is s:
            idx.by_id[s.id] = v
        done.append(i)
    return done

"""Finished steps, kept compact: a step that has finished is held as its JSON and the few fields
the engine reads of it on every pass, not as a pydantic model.

A step is *settled* while it is Queued (a wave plans thousands at once), and once it is
Succeeded, Failed or Skipped and either expanded or held for its wave (``planner.expand_waves``). The fields the engine reads of every such step (a child's path
and the parent's note, the fan-in's answers, a report's inputs, the wave's depths, the index when
it is rebuilt) are attributes of ``SettledStep``; other fields are read from its JSON (a model
made for the read and dropped: a held traversal's proposals, when its wave expands it). A write
to one of those attributes (``expanded``, when the wave expands it) is kept beside the JSON; a
write to any other field *thaws* it: the view holds the model and forwards to it. Either way the
executor sees the step changed and settles it again with its new JSON, and every reader and
writer keeps seeing one object, as with models.

A 10,000-step run held a model per step, with a model per proposal (20 per traversal at fan-out
10): about 20 KiB a step. Settled: its JSON (about 1.2 KiB) and the view.

An executor that keeps the steps' JSON anyway (the kube executor's ``StepDumps``) hands it in,
so that the same bytes serve both.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Optional

from ..api import SearchRunStatus, StepStatus
from .index import index_of
from .types import P_FAILED, P_QUEUED, P_SKIPPED, P_SUCCEEDED

# What the engine reads of finished steps on every pass (kept as attributes; the rest thaws).
HOT = ("id", "type", "phase", "depth", "doc", "parents", "attempts", "expanded", "found", "score", "output",
       "tokens", "costUSD", "tokenAllowance", "via", "why", "note")
_TERMINAL = (P_SUCCEEDED, P_FAILED, P_SKIPPED)


class SettledStep:
    """One settled step: ``json`` and the ``HOT`` fields (see the module docstring)."""

    __slots__ = HOT + ("json", "thawed", "patched")

    def __init__(self, step: StepStatus, raw: bytes):
        object.__setattr__(self, "thawed", None)
        self._freeze(step, raw)

    def _freeze(self, step, raw: bytes) -> None:
        if step is not self:
            for k in HOT:
                object.__setattr__(self, k, getattr(step, k))
        object.__setattr__(self, "json", raw)
        object.__setattr__(self, "thawed", None)
        object.__setattr__(self, "patched", None)

    def model(self) -> StepStatus:
        """The step as a model: the thawed one, else one made for this read (and dropped)."""
        if self.thawed is not None:
            return self.thawed
        m = StepStatus.model_validate_json(self.json)
        for k in self.patched or ():
            setattr(m, k, getattr(self, k))
        return m

    def thaw(self) -> StepStatus:
        if self.thawed is None:
            object.__setattr__(self, "thawed", self.model())
        return self.thawed

    def __getattr__(self, name: str) -> Any:  # only for names that are not slots: read from the JSON
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.model(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if self.thawed is None and name in HOT:  # e.g. ``expanded`` when its wave expands it
            object.__setattr__(self, name, value)
            object.__setattr__(self, "patched", (self.patched or frozenset()) | {name})
            return
        m = self.thaw()
        setattr(m, name, value)
        if name in HOT:
            object.__setattr__(self, name, getattr(m, name))

    def model_dump(self, **kwargs) -> dict:
        if self.thawed is None and kwargs.get("mode") == "json" and kwargs.get("exclude_none") \
                and not kwargs.get("exclude_defaults") and len(kwargs) <= 3:
            d = json.loads(self.json)  # how the JSON was made
            for k in self.patched or ():
                v = getattr(self, k)
                if v is None:
                    d.pop(k, None)
                else:
                    d[k] = list(v) if isinstance(v, (list, tuple)) else getattr(v, "value", v)
            return d
        return self.model().model_dump(**kwargs)

    def __repr__(self) -> str:
        return f"SettledStep(id={self.id!r}, type={self.type!r}, phase={self.phase!r})"


def is_settled(s, held: Iterable[str] = ()) -> bool:
    """Finished (expanded, or held for its wave), or Queued: not in flight. A wave plans thousands
    of Queued steps at once; launching one thaws it (its Job name), for its flight."""
    return s.phase == P_QUEUED or (s.phase in _TERMINAL and (s.expanded or s.phase == P_SKIPPED or s.id in held))


def changed_since_settled(s) -> bool:
    """A settled step written since its JSON was made."""
    return isinstance(s, SettledStep) and (s.thawed is not None or s.patched is not None)


def settle(status: SearchRunStatus, positions: Iterable[int], raw_of: Callable[[int], Optional[bytes]]) -> list[int]:
    """Hold the settled steps at ``positions`` of ``status.steps`` compact (in the engine's index
    too); ``raw_of(i)`` is step ``i``'s JSON now (``model_dump(mode="json", exclude_none=True)``,
    serialized), or None to leave it as it is. Returns the positions settled (again) now."""
    idx = index_of(status)
    steps = status.steps
    done = []
    for i in positions:
        s = steps[i]
        if isinstance(s, SettledStep) and not changed_since_settled(s):
            continue
        if not is_settled(s, idx.held):
            continue
        raw = raw_of(i)
        if raw is None:
            continue
        if isinstance(s, SettledStep):
            s._freeze(s.thawed if s.thawed is not None else s, raw)
        else:
            v = SettledStep(s, raw)
            steps[i] = v
            if idx.by_id.get(s.id) is s:
                idx.by_id[s.id] = v
        done.append(i)
    return done

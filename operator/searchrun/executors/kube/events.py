"""A run's Kubernetes Events: where they go, and one per reason and pass."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the reconciler posts through an EventSink
    from .reconciler import RunReconciler

log = logging.getLogger("searchrun.reconciler")


class EventSink:
    """Where a run's Kubernetes Events go (kopf's poster in the operator)."""

    def post(self, run: "RunReconciler", type: str, reason: str, message: str) -> None:
        log.info("%s/%s %s %s: %s", run.namespace, run.name, type, reason, message)


def merge_events(events) -> list[tuple[str, str, str]]:
    """One Kubernetes Event per (type, reason) and pass: 40 steps finishing in one pass post one
    StepSucceeded event naming them, not 40 (each Event is an API request)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for e in events:
        groups.setdefault((e.type, e.reason), []).append(e.message)
    out = []
    for (type_, reason), msgs in groups.items():
        msg = msgs[0] if len(msgs) == 1 else f"{len(msgs)} times: " + "; ".join(msgs)
        out.append((type_, reason, msg[:1000]))
    return out

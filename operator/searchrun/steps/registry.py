"""The step types: one line each. Metrics, the report and the engine take their lists from here.

A new type is a module under ``steps/`` with a ``StepKind`` subclass and ``KIND``, plus one
line below. Extra types can also be registered at start-up from modules named in
``SEARCHRUN_STEP_MODULES`` (comma-separated; each calls ``register``), so that a Job or a
local step process knows the same types as the engine that decided them.
"""

from __future__ import annotations

import importlib
import os

from . import aggregate_results, create_report, detect_intent, plan_search, simple_search, traverse_node
from .kind import StepKind

STEP_MODULES_ENV = "SEARCHRUN_STEP_MODULES"

STEP_KINDS: dict[str, StepKind] = {}


def register(kind: StepKind) -> StepKind:
    if not kind.type or not kind.type.replace("_", "").isalnum() or not kind.type.islower():
        raise ValueError(f"step type {kind.type!r}: lowercase letters, digits and _ only")
    STEP_KINDS[kind.type] = kind
    return kind


for _module in (detect_intent, plan_search, traverse_node, simple_search, aggregate_results, create_report):
    register(_module.KIND)


def known(step_type: object) -> bool:
    return isinstance(step_type, str) and step_type in STEP_KINDS


def kind_of(step_type: str) -> StepKind:
    try:
        return STEP_KINDS[step_type]
    except KeyError:
        raise ValueError(f"unknown step type {step_type!r} (known: {', '.join(STEP_KINDS)})") from None


def step_types() -> tuple[str, ...]:
    return tuple(STEP_KINDS)


def load_step_modules(env=os.environ) -> None:
    for name in filter(None, (x.strip() for x in env.get(STEP_MODULES_ENV, "").split(","))):
        importlib.import_module(name)


load_step_modules()

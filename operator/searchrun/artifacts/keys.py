"""Object keys: built from validated ids by ``run_prefix``, ``run_key``, ``step_key`` and
``result_key``, and checked again by ``validate_key`` on every store call."""

from __future__ import annotations

import re
from typing import Any


_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_ATTEMPT = 100
MAX_KEY_LEN = 900  # S3 allows 1024 bytes including the store prefix


def _describe(value: Any) -> str:
    """A short, safe rendering of a rejected value for error messages."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_id(component: str, value: Any) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise ValueError(f"invalid {component} {_describe(value)}: must match {_ID_RE.pattern}")
    return value


def _check_name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"invalid name {_describe(value)}: must match {_NAME_RE.pattern}")
    return value


def _check_attempt(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPT:
        raise ValueError(f"invalid attempt {_describe(value)}: must be an int in 1..{MAX_ATTEMPT}")
    return value


def run_prefix(run_uid: str) -> str:
    """``runs/<run_uid>/`` (with the trailing slash, so one run's prefix never matches another's)."""
    return f"runs/{_check_id('run_uid', run_uid)}/"


def run_key(run_uid: str, name: str) -> str:
    """``runs/<run_uid>/<name>``: run-level artifacts (lineage, report, answers)."""
    return run_prefix(run_uid) + _check_name(name)


def step_key(run_uid: str, step_id: str, attempt: int, name: str) -> str:
    """``runs/<run_uid>/steps/<step_id>/a<attempt>/<name>``."""
    return (
        f"{run_prefix(run_uid)}steps/{_check_id('step_id', step_id)}/"
        f"a{_check_attempt(attempt)}/{_check_name(name)}"
    )


def result_key(run_uid: str, step_id: str, attempt: int) -> str:
    """A step attempt's ``result.json``: its commit, written last by the step, read by the executors."""
    return step_key(run_uid, step_id, attempt, "result.json")


def validate_key(key: Any) -> str:
    """Check that ``key`` is a safe relative object key; return it or raise ValueError."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"invalid key {_describe(key)}: must be a non-empty string")
    if len(key) > MAX_KEY_LEN:
        raise ValueError(f"invalid key {_describe(key)}: longer than {MAX_KEY_LEN} characters")
    for seg in key.split("/"):
        if not _SEGMENT_RE.fullmatch(seg) or seg in (".", ".."):
            raise ValueError(
                f"invalid key {_describe(key)}: segment {_describe(seg)} must match {_SEGMENT_RE.pattern}"
            )
    return key


def _validate_prefix(prefix: Any, *, allow_empty: bool) -> str:
    """A listing prefix: '' (if allowed), a key, or a key followed by '/'."""
    if not isinstance(prefix, str):
        raise ValueError(f"invalid prefix {_describe(prefix)}: must be a string")
    if prefix == "":
        if allow_empty:
            return prefix
        raise ValueError("invalid prefix '': refusing to operate on the whole store")
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix

"""The API's constants, shared checks and the base model."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..corpus import BUILTIN_CORPORA


GROUP = "searchrun.dev"
VERSION = "v1alpha1"
KIND = "SearchRun"
PLURAL = "searchruns"
SINGULAR = "searchrun"
SHORT_NAMES = ["sr"]
API_VERSION = f"{GROUP}/{VERSION}"

MAX_QUERY_CHARS = 2000
MAX_NOTE_CHARS = 800       # the note a traversal step passes down (agent.maxContextChars is at most this)
MAX_RELATION_CHARS = 63    # a relationship kind of the corpus, as followed by a traversal
MAX_REASON_CHARS = 160     # why a parent proposed a child
BUILTIN_NAMES = tuple(sorted(BUILTIN_CORPORA))
# builtin:NAME (a shipped corpus), s3://bucket/key (no '.', '..' or empty key segment; a trailing
# '/' for a prefix), file://..., or a path (no "scheme:" before its first '/': builtin:../x is no path)
_S3_SEGMENT = r"([^\s/.][^\s/]*|\.[^\s/.][^\s/]*|\.\.[^\s/]+)"
CORPUS_URI_PATTERN = (rf"^(builtin:({'|'.join(BUILTIN_NAMES)})|s3://[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9]/{_S3_SEGMENT}(/{_S3_SEGMENT})*/?"
                      r"|file://[^\s]+|[^:\s]*/[^\s]*|[^:\s]+)$")
# control characters a query may not hold: C0 and C1 but newline and tab (the CRD has the same rule)
QUERY_CONTROL = "[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]"
_INVISIBLE = {"Cc", "Cf", "Zs", "Zl", "Zp"}


def query_problem(q: str) -> Optional[str]:
    """Why ``q`` is not a query (the CEL rules of the CRD say the same), or None."""
    for i, ch in enumerate(q):
        if unicodedata.category(ch) == "Cc" and ch not in "\n\t":
            return f"spec.query must not hold control characters other than newline and tab (U+{ord(ch):04X} at position {i})"
    if all(ch.isspace() or unicodedata.category(ch) in _INVISIBLE for ch in q):
        return "spec.query must not be blank (it holds only spaces, invisible or control characters)"
    return None


def corpus_uri_problem(uri: str) -> Optional[str]:
    """Why no step can read the corpus ``uri``, named for the user, or None (the pattern then
    checks the rest)."""
    if not isinstance(uri, str):
        return None
    if uri.startswith("builtin:"):
        name = uri[len("builtin:"):]
        if name not in BUILTIN_CORPORA:
            shipped = ", ".join("builtin:" + n for n in BUILTIN_NAMES)
            return f"{uri[:80]!r} is not a shipped builtin corpus (available: {shipped})"
    elif uri.startswith("s3://"):
        _, _, key = uri[len("s3://"):].partition("/")
        if any(seg in (".", "..") for seg in key.split("/")) or "//" in key:
            return f"the key of {uri[:80]!r} has a '.', '..' or empty segment: it must name an object under the bucket"
    elif ":" in uri.split("/", 1)[0] and not uri.startswith("file://"):
        return f"{uri[:80]!r} has an unsupported scheme (use builtin:NAME, s3://bucket/key, file:///path or a path)"
    return None
DEFAULT_IMAGE = "localhost/searchrun:0.1.0"


class Model(BaseModel):
    """Base: camelCase on the wire, unknown fields rejected, enums as values."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=True)


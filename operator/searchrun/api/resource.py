"""The SearchRun object and its metadata, checked as the API server checks them."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..corpus import BUILTIN_CORPORA
from .base import KIND, API_VERSION, Model
from .spec import SearchRunSpec
from .status import SearchRunStatus


DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_ANNOTATIONS_BYTES = 256 * 1024  # the API server's limit on all annotations together


def _key_problem(key: str) -> Optional[str]:
    """Why ``key`` is not a label or annotation key (``[prefix/]name``), as the API server says it."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not re.match(DNS_SUBDOMAIN, prefix)):
        return "its prefix must be a DNS subdomain of at most 253 characters"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return "its name must be at most 63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
    return None


class ObjectMeta(BaseModel):
    """The metadata the API server would accept (the local runner checks it the same way)."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(default="searchrun", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN,
                      description="a DNS subdomain: lower-case alphanumerics, '-' and '.'")
    namespace: Optional[str] = Field(default=None, min_length=1, max_length=63, pattern=DNS_LABEL)
    uid: Optional[str] = None
    labels: Optional[dict[str, str]] = None
    annotations: Optional[dict[str, str]] = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: Optional[dict[str, str]]) -> Optional[dict[str, str]]:
        for key, value in (v or {}).items():
            why = _key_problem(key)
            if why:
                raise ValueError(f"label key {key[:80]!r}: {why}")
            if len(value) > 63 or not _LABEL_VALUE.match(value):
                raise ValueError(f"label {key!r}: a value must be at most 63 characters of alphanumerics, '-', '_' or '.', "
                                 "starting and ending with an alphanumeric")
        return v

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: Optional[dict[str, str]]) -> Optional[dict[str, str]]:
        total = 0
        for key, value in (v or {}).items():
            why = _key_problem(key)
            if why:
                raise ValueError(f"annotation key {key[:80]!r}: {why}")
            total += len(key.encode()) + len(value.encode())
        if total > MAX_ANNOTATIONS_BYTES:
            raise ValueError(f"annotations: must be at most {MAX_ANNOTATIONS_BYTES} bytes in total (got {total})")
        return v


class SearchRun(Model):
    apiVersion: Literal["searchrun.dev/v1alpha1"] = API_VERSION
    kind: Literal["SearchRun"] = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: SearchRunSpec
    status: Optional[SearchRunStatus] = None


def parse_manifest(data: Any) -> SearchRun:
    """Validate a manifest dict; raises pydantic.ValidationError naming the field."""
    return SearchRun.model_validate(data)


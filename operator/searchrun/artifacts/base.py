"""The store contract every artifact store implements, its errors, and the helpers the stores
share (deterministic JSON bytes, credentials scrubbed from messages)."""

from __future__ import annotations

import abc
import json
import re
from typing import Any


class ArtifactError(RuntimeError):
    """An artifact could not be read or written (the message names the operation and key)."""


class ArtifactExists(ArtifactError):
    """A write-once key already holds different bytes."""


class ArtifactNotFound(ArtifactError):
    """The key does not exist."""


def dump_json(obj: Any) -> bytes:
    # Deterministic bytes, so an idempotent rerun writes identical content.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


_USERINFO_RE = re.compile(r"//[^/@\s]*@")


def _scrub(text: str) -> str:
    """Remove any user:password@ part of URLs embedded in a message."""
    return _USERINFO_RE.sub("//***@", text)


class ArtifactStore(abc.ABC):
    """Base class. Keys are relative to ``uri``; see the module docstring."""

    uri: str

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str = "application/json", overwrite: bool = False) -> str:
        """Write ``data`` at ``key``; return the object's URI (write-once unless ``overwrite``)."""

    def put_parts(self, key: str, parts: list, content_type: str = "application/json", overwrite: bool = False) -> tuple[str, int]:
        """Write the concatenation of ``parts`` (bytes) at ``key``; the URI and its size. A store that
        can write in parts overrides this, so a large document is not joined into one buffer first."""
        data = b"".join(parts)
        return self.put_bytes(key, data, content_type, overwrite=overwrite), len(data)

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read ``key``; ArtifactNotFound (an ArtifactError) if it does not exist."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix`` (a plain string prefix), sorted."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix`` (non-empty); return how many were deleted."""

    @abc.abstractmethod
    def uri_for(self, key: str) -> str: ...

    def put_json(self, key: str, obj: Any, **kw: Any) -> str:
        kw.setdefault("content_type", "application/json")
        return self.put_bytes(key, dump_json(obj), **kw)

    def get_json(self, key: str) -> Any:
        data = self.get_bytes(key)
        try:
            return json.loads(data)
        except ValueError as e:
            raise ArtifactError(f"artifact {self.uri_for(key)} is not valid JSON: {e}") from e

    def _check_data(self, data: Any) -> bytes:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

"""Artifact URIs: open the store a URI names, or read one object by its full URI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .base import ArtifactError, ArtifactNotFound, ArtifactStore
from .file_store import FileStore
from .keys import validate_key
from .s3 import _BUCKET_RE, S3Store


def _split_uri(uri: Any) -> tuple[str, str, str]:
    """(scheme, netloc, path) of an artifact URI; errors never echo the URI itself."""
    if not isinstance(uri, str) or not uri:
        raise ValueError("artifact URI must be a non-empty string")
    if any(c.isspace() for c in uri):
        raise ValueError("artifact URI must not contain whitespace")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in ("s3", "file"):
        shown = re.sub(r"[^a-z0-9+.-]", "?", scheme[:20]) if scheme else "(none)"
        raise ValueError(f"unsupported artifact URI scheme {shown!r}: use s3://bucket/prefix or file:///dir")
    if "@" in parts.netloc:
        raise ValueError(f"{scheme}:// URIs must not contain credentials; configure them in the environment")
    if parts.query or parts.fragment:
        raise ValueError(f"{scheme}:// artifact URIs must not have a query or fragment")
    return scheme, parts.netloc, parts.path


def _file_path(netloc: str, path: str) -> Path:
    if netloc not in ("", "localhost"):
        raise ValueError("file:// URIs must be local and absolute: file:///abs/dir")
    p = unquote(path)
    if not p.startswith("/"):
        raise ValueError("file:// URIs must be absolute: file:///abs/dir")
    if "\x00" in p:
        raise ValueError("file:// URI contains a NUL byte")
    return Path(p)


def open_store(uri: str, client: Any = None) -> ArtifactStore:
    """Open ``s3://bucket[/prefix]`` or ``file:///abs/dir``."""
    scheme, netloc, path = _split_uri(uri)
    if scheme == "file":
        return FileStore(_file_path(netloc, path))
    if not _BUCKET_RE.fullmatch(netloc):
        raise ValueError("s3:// URI has an invalid bucket name")
    prefix = path.strip("/")
    if prefix:
        try:
            validate_key(prefix)
        except ValueError:
            raise ValueError("s3:// URI prefix must be segments of [A-Za-z0-9._-] (no '.' or '..')") from None
    return S3Store(netloc, prefix, client=client)


def read_uri(uri: str, client: Any = None) -> bytes:
    """Read one object given its full URI: ``s3://bucket/key`` or ``file:///path``."""
    scheme, netloc, path = _split_uri(uri)
    if scheme == "file":
        p = _file_path(netloc, path)
        try:
            return p.read_bytes()
        except FileNotFoundError as e:
            raise ArtifactNotFound(f"file not found: {p}") from e
        except OSError as e:
            raise ArtifactError(f"file read failed for {p}: {e.strerror or e}") from e
    if not _BUCKET_RE.fullmatch(netloc):
        raise ValueError("s3:// URI has an invalid bucket name")
    key = path.lstrip("/")  # S3 URIs are not percent-encoded (as with the AWS CLI)
    if not key or key.endswith("/"):
        raise ValueError("s3:// URI must name an object: s3://bucket/key")
    return S3Store(netloc, "", client=client)._get_object(key)

"""Artifact store for step outputs: ``file:///abs/dir`` and ``s3://bucket/prefix``.

Keys are relative to the store's base URI and are always built by the helpers below
(``run_prefix``, ``step_key``, ``run_key``) from validated ids, never from user text::

    runs/<run_uid>/                              run_prefix(run_uid)
    runs/<run_uid>/<name>                        run_key(run_uid, name)
    runs/<run_uid>/steps/<step_id>/a<n>/<name>   step_key(run_uid, step_id, n, name)

Every store method validates its key again (defence in depth): a key is one or more
``/``-separated segments of ``[A-Za-z0-9._-]`` that start with a letter or digit, so no key
can be absolute, empty, contain ``.``/``..`` segments or escape the store's base.

Writes are write-once by default: writing the same bytes again returns the URI (an idempotent
rerun of a step), writing different bytes raises ``ArtifactExists``. Pass ``overwrite=True``
to replace.

S3 configuration comes from the environment (see ``s3_client_from_env``):
``SEARCHRUN_S3_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL``), ``AWS_REGION`` / ``AWS_DEFAULT_REGION``
(default ``us-east-1``) and the standard AWS credential variables (or any other source in
boto3's default credential chain). Path-style addressing is used so that any S3-compatible
server (MinIO, moto, Ceph, ...) works.
"""

from __future__ import annotations

import abc
import json
import logging
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "ArtifactError",
    "ArtifactExists",
    "ArtifactNotFound",
    "ArtifactStore",
    "FileStore",
    "S3Store",
    "open_store",
    "read_uri",
    "run_prefix",
    "run_key",
    "step_key",
    "validate_key",
    "s3_client_from_env",
    "ENDPOINT_ENV",
]

ENDPOINT_ENV = "SEARCHRUN_S3_ENDPOINT_URL"


class ArtifactError(RuntimeError):
    """An artifact could not be read or written (the message names the operation and key)."""


class ArtifactExists(ArtifactError):
    """A write-once key already holds different bytes."""


class ArtifactNotFound(ArtifactError):
    """The key does not exist."""


# ------------------------------------------------------------------ keys

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


def dump_json(obj: Any) -> bytes:
    # Deterministic bytes, so an idempotent rerun writes identical content.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


_USERINFO_RE = re.compile(r"//[^/@\s]*@")


def _scrub(text: str) -> str:
    """Remove any user:password@ part of URLs embedded in a message."""
    return _USERINFO_RE.sub("//***@", text)


# ------------------------------------------------------------------ stores


class ArtifactStore(abc.ABC):
    """Base class. Keys are relative to ``uri``; see the module docstring."""

    uri: str

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str = "application/json", overwrite: bool = False) -> str:
        """Write ``data`` at ``key``; return the object's URI (write-once unless ``overwrite``)."""

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


class FileStore(ArtifactStore):
    """Artifacts as files under ``root``. Writes go to a temp file in the same directory,
    then are moved into place atomically (a hard link for write-once, ``os.replace`` for
    overwrite), so readers never see a partial file."""

    _TMP_PREFIX = ".tmp-"

    def __init__(self, root: Path | str):
        self.root = Path(root).absolute()
        self.uri = "file://" + quote(self.root.as_posix())

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def uri_for(self, key: str) -> str:
        return "file://" + quote(self._path(key).as_posix())

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/json", overwrite: bool = False) -> str:
        data = self._check_data(data)
        path = self._path(key)
        uri = self.uri_for(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not overwrite and path.exists():
                return self._same_or_raise(key, path, data, uri)
            fd, tmp = tempfile.mkstemp(prefix=self._TMP_PREFIX, dir=path.parent)
            try:
                os.fchmod(fd, 0o644)  # mkstemp makes 0600; artifacts are meant to be shared
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                if overwrite:
                    os.replace(tmp, path)
                    tmp = None
                else:
                    try:
                        # Atomic create-if-absent: link fails if the target exists.
                        os.link(tmp, path)
                    except FileExistsError:
                        return self._same_or_raise(key, path, data, uri)
                    except OSError:
                        # Filesystem without hard links: check-then-replace (racy, best effort).
                        if path.exists():
                            return self._same_or_raise(key, path, data, uri)
                        os.replace(tmp, path)
                        tmp = None
            finally:
                if tmp is not None:
                    try:
                        os.unlink(tmp)
                    except FileNotFoundError:
                        pass
        except ArtifactError:
            raise
        except OSError as e:
            raise ArtifactError(f"file put failed for {uri}: {e.strerror or e}") from e
        return uri

    def _same_or_raise(self, key: str, path: Path, data: bytes, uri: str) -> str:
        try:
            existing = path.read_bytes()
        except OSError as e:
            raise ArtifactError(f"file get failed for {uri}: {e.strerror or e}") from e
        if existing == data:
            return uri
        raise ArtifactExists(f"artifact {key} already exists at {uri} with different content")

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as e:
            raise ArtifactNotFound(f"artifact {key} not found in {self.uri}") from e
        except IsADirectoryError as e:
            raise ArtifactNotFound(f"artifact {key} not found in {self.uri} (it is a directory)") from e
        except OSError as e:
            raise ArtifactError(f"file get failed for {self.uri_for(key)}: {e.strerror or e}") from e

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        prefix = _validate_prefix(prefix, allow_empty=True)
        # Walk only the deepest directory the prefix pins down.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*head.split("/")) if head else self.root
        if not start.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = [d for d in dirnames if (rel_dir + d + "/").startswith(prefix) or prefix.startswith(rel_dir + d + "/")]
            for name in filenames:
                key = rel_dir + name
                if name.startswith(self._TMP_PREFIX) or not key.startswith(prefix):
                    continue
                try:
                    validate_key(key)
                except ValueError:
                    continue  # not something this store wrote
                keys.append(key)
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        prefix = _validate_prefix(prefix, allow_empty=False)
        count = 0
        deleted = []
        for key in self.list(prefix):
            try:
                self._path(key).unlink()
                deleted.append(key)
                count += 1
            except FileNotFoundError:
                pass
            except OSError as e:
                raise ArtifactError(f"file delete failed for {self.uri_for(key)}: {e.strerror or e}") from e
        # Remove directories left empty (deepest first), never the root itself.
        dirs = {self._path(k).parent for k in deleted}
        for d in sorted(dirs, key=lambda p: -len(p.parts)):
            while d != self.root and self.root in d.parents:
                try:
                    d.rmdir()
                except OSError:
                    break
                d = d.parent
        return count


def s3_client_from_env(**overrides: Any):
    """A boto3 S3 client configured from the environment (path-style, bounded retries)."""
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get(ENDPOINT_ENV) or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config_kw: dict[str, Any] = dict(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=32,  # one client serves every thread of a process (the operator has ~24)
    )
    try:
        # botocore >= 1.36 adds CRC checksums to every PUT by default; many S3-compatible
        # servers reject them, so only send checksums where the API requires them.
        config = Config(request_checksum_calculation="when_required", response_checksum_validation="when_required", **config_kw)
    except TypeError:  # older botocore
        config = Config(**config_kw)
    kw: dict[str, Any] = dict(region_name=region, config=config)
    if endpoint:
        kw["endpoint_url"] = endpoint
    kw.update(overrides)
    return boto3.session.Session().client("s3", **kw)


_shared_client: Any = None
_shared_client_key: Any = None
_shared_client_lock = threading.Lock()


def shared_s3_client():
    """One client per process for the current environment: creating a boto3 client costs
    ~100 ms and ~15 MiB, and clients are thread-safe."""
    global _shared_client, _shared_client_key
    key = tuple(os.environ.get(k) for k in (ENDPOINT_ENV, "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
                                            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"))
    with _shared_client_lock:  # threads that start at once would each build a client
        if _shared_client is None or key != _shared_client_key:
            _shared_client, _shared_client_key = s3_client_from_env(), key
        return _shared_client


def _forget_shared_client() -> None:
    """A forked child (a warm local step) opens its own client: a boto3 client, its sockets and
    this lock are never shared across processes."""
    global _shared_client, _shared_client_key, _shared_client_lock
    _shared_client = _shared_client_key = None
    _shared_client_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_shared_client)


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def _error_code(e: Exception) -> str:
    resp = getattr(e, "response", None) or {}
    return str((resp.get("Error") or {}).get("Code") or "")


def _http_status(e: Exception) -> int:
    resp = getattr(e, "response", None) or {}
    try:
        return int((resp.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    except (TypeError, ValueError):
        return 0


_LOG = logging.getLogger(__name__)
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._:+=/-]{1,64}$")


def s3_error_summary(e: Exception) -> str:
    """What an S3 error may say where users read it (status, events, metrics): the error code,
    the HTTP status and the request id. Never the server's message: it is text from the
    response body (or, from a server that is not S3, the body itself)."""
    from botocore.exceptions import ConnectionError as BotoConnectionError, HTTPClientError, NoCredentialsError

    resp = getattr(e, "response", None)
    if isinstance(resp, dict):
        code, status = _error_code(e), _http_status(e)
        meta = resp.get("ResponseMetadata") or {}
        rid = str(meta.get("RequestId") or (meta.get("HTTPHeaders") or {}).get("x-amz-request-id") or "")
        parts = [code if _TOKEN_RE.fullmatch(code) else "error"]
        if status:
            parts.append(f"HTTP {status}")
        if _TOKEN_RE.fullmatch(rid):
            parts.append(f"request id {rid}")
        return ", ".join(parts)
    if isinstance(e, (BotoConnectionError, HTTPClientError, NoCredentialsError)):
        return f"{type(e).__name__}: {e}"[:300]  # about the connection, not the reply
    return type(e).__name__  # e.g. a reply that is not XML: its message quotes the body


class S3Store(ArtifactStore):
    """Artifacts in ``s3://bucket/prefix`` on any S3-compatible server.

    Write-once on S3: ``put_bytes`` first HEADs the key (existing → compare bytes), then PUTs
    with ``If-None-Match: *`` so the server rejects the write if another writer created the key
    in between. Servers that do not support conditional writes get a plain PUT instead, and then
    there is a small race between the HEAD and the PUT in which a concurrent writer's object can
    be replaced. Step keys include the attempt number and are written by one Job at a time, so
    the race is harmless in practice.
    """

    def __init__(self, bucket: str, prefix: str = "", client: Any = None):
        if not isinstance(bucket, str) or not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"invalid S3 bucket name {_describe(bucket)}")
        prefix = (prefix or "").strip("/")
        if prefix:
            validate_key(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._client = client
        self._conditional_put = True  # cleared if the server rejects If-None-Match

    @property
    def client(self):
        if self._client is None:
            self._client = shared_s3_client()
        return self._client

    def _full(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def _wrap(self, op: str, key: str, e: Exception) -> ArtifactError:
        code = _error_code(e)
        cls = ArtifactNotFound if code in _NOT_FOUND_CODES else ArtifactError
        where = f"s3 {op} failed for bucket {self.bucket!r} key {key!r}"
        _LOG.debug("%s: %s", where, _scrub(str(e))[:300])  # the server's text: debug log only
        return cls(_scrub(f"{where}: {s3_error_summary(e)}"))

    def _errors(self):
        from botocore.exceptions import BotoCoreError, ClientError

        return (ClientError, BotoCoreError)

    # -- raw operations on full object keys (not validated: used by read_uri too)

    def _get_object(self, full_key: str) -> bytes:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=full_key)
            return resp["Body"].read()
        except self._errors() as e:
            err = self._wrap("get_object", full_key, e)
            if isinstance(err, ArtifactNotFound):
                err = ArtifactNotFound(f"artifact {full_key} not found in s3://{self.bucket} ({s3_error_summary(e)})")
            raise err from None

    def _head(self, full_key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=full_key)
            return True
        except self._errors() as e:
            if _error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._wrap("head_object", full_key, e) from None

    # -- the store API

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/json", overwrite: bool = False) -> str:
        data = self._check_data(data)
        full = self._full(key)
        uri = f"s3://{self.bucket}/{full}"
        if not overwrite and self._head(full):
            return self._same_or_raise(key, full, data, uri)
        kw: dict[str, Any] = dict(Bucket=self.bucket, Key=full, Body=data, ContentType=content_type)
        if not overwrite and self._conditional_put:
            try:
                self.client.put_object(IfNoneMatch="*", **kw)
                return uri
            except self._errors() as e:
                code, status = _error_code(e), _http_status(e)
                if code == "PreconditionFailed" or status == 412:
                    return self._same_or_raise(key, full, data, uri)  # lost the race
                if code == "ConditionalRequestConflict" or status == 409:
                    if self._head(full):
                        return self._same_or_raise(key, full, data, uri)
                elif code in ("NotImplemented", "InvalidArgument", "InvalidRequest") or status == 501:
                    self._conditional_put = False  # server without conditional writes
                else:
                    raise self._wrap("put_object", full, e) from None
        try:
            self.client.put_object(**kw)
        except self._errors() as e:
            raise self._wrap("put_object", full, e) from None
        return uri

    def _same_or_raise(self, key: str, full: str, data: bytes, uri: str) -> str:
        if self._get_object(full) == data:
            return uri
        raise ArtifactExists(f"artifact {key} already exists at {uri} with different content")

    def get_bytes(self, key: str) -> bytes:
        return self._get_object(self._full(key))

    def exists(self, key: str) -> bool:
        return self._head(self._full(key))

    def _list_full(self, prefix: str) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        full_prefix = base + prefix
        keys: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for obj in page.get("Contents") or []:
                    keys.append(obj["Key"])
        except self._errors() as e:
            raise self._wrap("list_objects_v2", full_prefix, e) from None
        return keys

    def list(self, prefix: str = "") -> list[str]:
        prefix = _validate_prefix(prefix, allow_empty=True)
        base_len = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[base_len:] for k in self._list_full(prefix))

    def delete_prefix(self, prefix: str) -> int:
        prefix = _validate_prefix(prefix, allow_empty=False)
        full_keys = self._list_full(prefix)
        count = 0
        for i in range(0, len(full_keys), 1000):
            batch = full_keys[i : i + 1000]
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except self._errors() as e:
                raise self._wrap("delete_objects", prefix, e) from None
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                code = str(first.get("Code") or "")
                raise ArtifactError(
                    f"s3 delete_objects failed for bucket {self.bucket!r} key {first.get('Key')!r}: "
                    f"{code if _TOKEN_RE.fullmatch(code) else 'error'} ({len(errors)} errors)"
                )
            count += len(batch)
        return count

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (tests, the local runner)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except self._errors() as e:
            if _error_code(e) not in ("404", "NoSuchBucket", "NotFound"):
                raise self._wrap("head_bucket", "", e) from None
        kw: dict[str, Any] = {"Bucket": self.bucket}
        region = self.client.meta.region_name
        if region and region != "us-east-1":
            kw["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**kw)
        except self._errors() as e:
            if _error_code(e) not in ("BucketAlreadyOwnedByYou",):
                raise self._wrap("create_bucket", "", e) from None


# ------------------------------------------------------------------ URIs


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

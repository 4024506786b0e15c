"""``s3://bucket/prefix``: the S3 store, and the boto3 client it uses (one per process,
configured from the environment)."""

from __future__ import annotations

import bisect
import io
import logging
import os
import re
import threading
from typing import Any

from .base import ArtifactError, ArtifactExists, ArtifactNotFound, ArtifactStore, _scrub
from .keys import _describe, _validate_prefix, validate_key


ENDPOINT_ENV = "SEARCHRUN_S3_ENDPOINT_URL"


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

    def put_parts(self, key: str, parts: list, content_type: str = "application/json", overwrite: bool = False) -> tuple[str, int]:
        """An overwrite (the lineage snapshot and journal) streams the parts as the request body,
        so a 12 MB lineage is not joined into one buffer first; a write-once put compares with what
        is there and joins them as ``put_bytes`` does."""
        if not overwrite:
            return super().put_parts(key, parts, content_type, overwrite=False)
        body = PartsReader([self._check_data(p) for p in parts])
        full = self._full(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=body, ContentType=content_type,
                                   ContentLength=body.size)
        except self._errors() as e:
            raise self._wrap("put_object", full, e) from None
        return f"s3://{self.bucket}/{full}", body.size

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


class PartsReader(io.RawIOBase):
    """A seekable, read-only file over a list of byte strings, without joining them: botocore
    reads the body in blocks, and seeks back to the start to retry a request."""

    def __init__(self, parts: list[bytes]):
        self._parts = [p for p in parts if p]
        self._starts = []
        n = 0
        for p in self._parts:
            self._starts.append(n)
            n += len(p)
        self.size = n
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        done = 0
        i = bisect.bisect_right(self._starts, self._pos) - 1
        while done < len(view) and 0 <= i < len(self._parts) and self._pos < self.size:
            part, at = self._parts[i], self._pos - self._starts[i]
            n = min(len(part) - at, len(view) - done)
            view[done:done + n] = part[at:at + n]
            done += n
            self._pos += n
            i += 1
        return done

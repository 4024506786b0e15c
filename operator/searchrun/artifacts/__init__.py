"""Artifact store for step outputs: ``file:///abs/dir`` and ``s3://bucket/prefix``.

Keys are relative to the store's base URI and are always built by the helpers in ``keys``
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
server (SeaweedFS, MinIO, moto, Ceph, ...) works.
"""

from __future__ import annotations

# The package's names, and the helpers other modules import from here. The S3 client cache
# (_shared_client and its lock) is state of .s3 and is deliberately not copied here.
from .base import ArtifactError, ArtifactExists, ArtifactNotFound, ArtifactStore, _scrub, dump_json
from .file_store import FileStore
from .keys import result_key, run_key, run_prefix, step_key, validate_key
from .s3 import ENDPOINT_ENV, S3Store, _forget_shared_client, s3_client_from_env, shared_s3_client
from .uris import open_store, read_uri

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

"""What all runs of one operator process share: the store clients and the threads for a pass's requests."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from ...artifacts import ArtifactStore, open_store

IO_THREADS = 8

_lock = threading.Lock()
_STORES: dict[str, ArtifactStore] = {}
_IO: Optional[ThreadPoolExecutor] = None


def io_pool() -> ThreadPoolExecutor:
    """Threads for a pass's independent requests: the results of the steps that finished, the
    Jobs it starts (one pass may see 100 steps finish and start as many)."""
    global _IO
    with _lock:
        if _IO is None:
            _IO = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="searchrun-io")
        return _IO


def shared_store(uri: str) -> ArtifactStore:
    """One store (and one boto3 client, ~15 MiB) per URI for all runs, not one per run."""
    with _lock:
        if uri not in _STORES:
            _STORES[uri] = open_store(uri)
        return _STORES[uri]

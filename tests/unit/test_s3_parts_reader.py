"""The body the S3 store streams a lineage snapshot from (the real-server test is in
tests/integration/test_artifacts_s3.py)."""

from __future__ import annotations

import io

from searchrun.artifacts.s3 import PartsReader


def test_parts_reader_reads_and_seeks_like_the_joined_bytes():
    parts = [b"ab", b"", b"cde", b"f" * 1000, b"g"]
    whole = b"".join(parts)
    r = PartsReader(parts)
    assert r.size == len(whole) and io.BufferedReader(r, 7).read() == whole
    r.seek(3)
    assert r.read(4) == whole[3:7]
    r.seek(0)
    assert r.read() == whole and r.read(1) == b""

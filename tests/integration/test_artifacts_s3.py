"""S3Store against a real S3-compatible server (SeaweedFS, or moto as the fallback) over HTTP."""

from __future__ import annotations

import threading

import pytest

from searchrun.artifacts import (
    ArtifactError,
    ArtifactExists,
    ArtifactNotFound,
    S3Store,
    open_store,
    read_uri,
    run_key,
    run_prefix,
    s3_client_from_env,
    step_key,
)

pytestmark = pytest.mark.s3

RUN = "3f2a9c1e-0b7d-4e55-9a0c-1d2e3f405162"


@pytest.fixture
def store(s3_bucket) -> S3Store:
    s = open_store(s3_bucket)
    assert isinstance(s, S3Store)
    return s


def test_open_store_parses(s3_bucket):
    s = open_store(s3_bucket)
    bucket = s3_bucket.split("/")[2]
    assert (s.bucket, s.prefix, s.uri) == (bucket, "prefix", f"s3://{bucket}/prefix")
    root = open_store(f"s3://{bucket}")
    assert (root.bucket, root.prefix, root.uri) == (bucket, "", f"s3://{bucket}")
    deep = open_store(f"s3://{bucket}/a/b/")
    assert deep.prefix == "a/b"


def test_client_from_env_uses_endpoint(s3_server, s3_bucket):
    client = s3_client_from_env()
    assert client.meta.endpoint_url == s3_server.endpoint_url
    assert client.meta.region_name == "us-east-1"
    assert client.meta.config.s3["addressing_style"] == "path"


def test_put_get_roundtrip(store, s3_server):
    key = step_key(RUN, "t0", 1, "output.json")
    uri = store.put_bytes(key, b'{"a":1}')
    assert uri == f"s3://{store.bucket}/prefix/{key}" == store.uri_for(key)
    assert store.get_bytes(key) == b'{"a":1}'
    assert store.exists(key)
    assert not store.exists(step_key(RUN, "t0", 2, "output.json"))
    obj = s3_server.client().get_object(Bucket=store.bucket, Key=f"prefix/{key}")
    assert obj["ContentType"] == "application/json"
    assert obj["Body"].read() == b'{"a":1}'


def test_content_type(store, s3_server):
    key = run_key(RUN, "report.html")
    store.put_bytes(key, b"<html></html>", content_type="text/html; charset=utf-8")
    obj = s3_server.client().head_object(Bucket=store.bucket, Key=f"prefix/{key}")
    assert obj["ContentType"].startswith("text/html")


def test_json_helpers(store):
    key = run_key(RUN, "answers.json")
    obj = {"b": [1, 2.5, None], "a": "ünï"}
    store.put_json(key, obj)
    assert store.get_json(key) == obj
    store.put_json(key, dict(reversed(list(obj.items()))))  # same object, other order: idempotent
    with pytest.raises(ArtifactExists):
        store.put_json(key, {"a": "changed"})


def test_write_once(store):
    key = step_key(RUN, "t0", 1, "output.json")
    u1 = store.put_bytes(key, b"one")
    assert store.put_bytes(key, b"one") == u1
    with pytest.raises(ArtifactExists, match="output.json"):
        store.put_bytes(key, b"two")
    assert store.get_bytes(key) == b"one"
    assert store.put_bytes(key, b"two", overwrite=True) == u1
    assert store.get_bytes(key) == b"two"


def test_conditional_put_loses_race(store, s3_server):
    """Another writer creates the key between our HEAD and PUT: If-None-Match catches it."""
    key = run_key(RUN, "race.json")
    full = f"prefix/{key}"
    real_head = store._head

    def head_then_someone_writes(k):
        result = real_head(k)
        s3_server.client().put_object(Bucket=store.bucket, Key=full, Body=b"theirs")
        return result

    store._head = head_then_someone_writes  # type: ignore[method-assign]
    with pytest.raises(ArtifactExists):
        store.put_bytes(key, b"mine")
    assert store.get_bytes(key) == b"theirs"
    assert store._conditional_put  # SeaweedFS (and moto) support If-None-Match


def test_concurrent_writers_one_wins(store):
    key = run_key(RUN, "race2.json")
    results: list[object] = []

    def write(i: int) -> None:
        try:
            results.append(store.put_bytes(key, f"writer-{i}".encode()))
        except ArtifactExists as e:
            results.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([r for r in results if isinstance(r, str)]) == 1


def test_missing_key_names_the_key(store):
    with pytest.raises(ArtifactNotFound, match="missing.json"):
        store.get_bytes(run_key(RUN, "missing.json"))


def test_list_and_delete_prefix(store, s3_server):
    keys = [
        step_key(RUN, "t0", 1, "output.json"),
        step_key(RUN, "t0", 2, "output.json"),
        step_key(RUN, "t0-1", 1, "output.json"),
        run_key(RUN, "lineage.json"),
        run_key("other-run", "lineage.json"),
        run_key(RUN + "0", "lineage.json"),
    ]
    for k in keys:
        store.put_bytes(k, b"{}")
    # an object outside the store's prefix is invisible to it
    s3_server.client().put_object(Bucket=store.bucket, Key="elsewhere/x", Body=b"x")
    mine = sorted(k for k in keys if k.startswith(run_prefix(RUN)))
    assert store.list(run_prefix(RUN)) == mine
    assert store.list(f"{run_prefix(RUN)}steps/t0/") == sorted(keys[:2])
    assert store.list() == sorted(keys)
    assert store.delete_prefix(run_prefix(RUN)) == len(mine)
    assert store.list() == sorted(k for k in keys if k not in mine)
    assert store.delete_prefix(run_prefix(RUN)) == 0
    assert s3_server.client().get_object(Bucket=store.bucket, Key="elsewhere/x")["Body"].read() == b"x"


@pytest.mark.slow
def test_list_and_delete_many(store):
    """More than one page (1000 keys) of listing and deleting."""
    from concurrent.futures import ThreadPoolExecutor

    def put(i: int) -> None:
        store.client.put_object(Bucket=store.bucket, Key=f"prefix/runs/big/k{i:05d}", Body=b"")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(1105)))
    keys = store.list("runs/big/")
    assert len(keys) == 1105 and keys == sorted(keys)
    assert store.delete_prefix("runs/big/") == 1105
    assert store.list("runs/big/") == []


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "runs/../../x", "a//b", ""])
def test_store_methods_validate_keys(store, bad):
    with pytest.raises(ValueError):
        store.put_bytes(bad, b"x")
    with pytest.raises(ValueError):
        store.get_bytes(bad)
    with pytest.raises(ValueError):
        store.delete_prefix(bad)


def test_read_uri_s3(store, s3_server):
    uri = store.put_bytes(run_key(RUN, "corpus.json"), b'{"documents":{}}')
    assert read_uri(uri) == b'{"documents":{}}'
    # arbitrary object keys (e.g. a corpus uploaded by hand) are readable too
    s3_server.client().put_object(Bucket=store.bucket, Key="corpora/My_Corpus+v1.json", Body=b"{}")
    assert read_uri(f"s3://{store.bucket}/corpora/My_Corpus+v1.json") == b"{}"
    with pytest.raises(ArtifactNotFound, match="nope.json"):
        read_uri(f"s3://{store.bucket}/nope.json")
    with pytest.raises(ValueError, match="object"):
        read_uri(f"s3://{store.bucket}/")


def test_missing_bucket_and_ensure_bucket(s3_bucket):
    s = S3Store("searchrun-not-yet-created-x1", "p")
    with pytest.raises(ArtifactError, match="searchrun-not-yet-created-x1"):
        s.put_bytes(run_key(RUN, "x"), b"x")
    s.ensure_bucket()
    s.ensure_bucket()  # idempotent
    assert s.put_bytes(run_key(RUN, "x"), b"x").startswith("s3://searchrun-not-yet-created-x1/p/")


def test_bad_credentials_not_echoed(s3_bucket, s3_server, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "super-secret-value")
    s = open_store(s3_bucket)
    if not s3_server.persistent:  # moto accepts any credentials
        s.put_bytes(run_key(RUN, "x"), b"x")
        return
    with pytest.raises(ArtifactError, match="SignatureDoesNotMatch|AccessDenied|HTTP 403") as ei:
        s.put_bytes(run_key(RUN, "x"), b"x")  # SeaweedFS checks the signature
    assert "super-secret-value" not in str(ei.value)


def test_server_down_is_artifact_error(s3_bucket, s3_server, monkeypatch):
    """A connection failure surfaces as ArtifactError naming operation, bucket and key."""
    monkeypatch.setenv("SEARCHRUN_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: refused
    s = open_store(s3_bucket)
    with pytest.raises(ArtifactError) as ei:
        s.get_bytes(run_key(RUN, "x.json"))
    msg = str(ei.value)
    assert "head_object" in msg or "get_object" in msg
    assert s.bucket in msg and "x.json" in msg
    assert s3_server.secret_key not in msg


@pytest.mark.slow
def test_stop_start_same_port(s3_server):
    """A restart serves the same endpoint. SeaweedFS keeps buckets and objects on disk; moto
    loses them (its state is in memory)."""
    endpoint = s3_server.endpoint_url
    s3_server.client().create_bucket(Bucket="searchrun-restart-check")
    s3_server.client().put_object(Bucket="searchrun-restart-check", Key="k", Body=b"kept")
    s3_server.stop()
    assert not s3_server.running
    s3_server.start()
    assert s3_server.endpoint_url == endpoint
    names = [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert ("searchrun-restart-check" in names) == s3_server.persistent
    if s3_server.persistent:
        assert s3_server.client().get_object(Bucket="searchrun-restart-check", Key="k")["Body"].read() == b"kept"


def test_put_parts_streams_an_overwrite(store, s3_server):
    # the lineage snapshot is written in parts; the object is exactly their concatenation, and a
    # second overwrite replaces it (botocore seeks the body back on a retry, so it must be seekable)
    key = run_key(RUN, "lineage.json")
    parts = [b'{"steps":[', b"", b'{"id":"t0"}', b",", b'{"id":"t1"}' * 5000, b"]}"]
    uri, size = store.put_parts(key, parts, overwrite=True)
    assert (uri, size) == (store.uri_for(key), len(b"".join(parts)))
    obj = s3_server.client().get_object(Bucket=store.bucket, Key=f"prefix/{key}")
    assert obj["ContentLength"] == size and obj["ContentType"] == "application/json"
    assert obj["Body"].read() == b"".join(parts)
    store.put_parts(key, [b"{}"], overwrite=True)
    assert store.get_bytes(key) == b"{}"


def test_put_parts_write_once_compares(store):
    key = run_key(RUN, "once.json")
    store.put_parts(key, [b"a", b"b"])
    assert store.put_parts(key, [b"ab"]) == (store.uri_for(key), 2)  # the same bytes: no error
    with pytest.raises(ArtifactExists):
        store.put_parts(key, [b"a", b"c"])

"""FileStore and the key helpers (no network)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from searchrun.artifacts import (
    ArtifactError,
    ArtifactExists,
    ArtifactNotFound,
    FileStore,
    open_store,
    read_uri,
    run_key,
    run_prefix,
    step_key,
    validate_key,
)

RUN = "3f2a9c1e-0b7d-4e55-9a0c-1d2e3f405162"


# ------------------------------------------------------------------ keys


def test_key_shapes():
    assert run_prefix(RUN) == f"runs/{RUN}/"
    assert run_key(RUN, "lineage.json") == f"runs/{RUN}/lineage.json"
    assert step_key(RUN, "t0-1", 2, "output.json") == f"runs/{RUN}/steps/t0-1/a2/output.json"
    assert step_key("r", "s", 1, "n") == "runs/r/steps/s/a1/n"
    assert step_key("r", "s", 100, "n").endswith("/a100/n")


HOSTILE = [
    "",
    ".",
    "..",
    "../",
    "../../etc/passwd",
    "/",
    "/abs",
    "a/b",
    "a\\b",
    "%2e%2e",
    "%2e%2e%2f",
    "a b",
    "a\x00b",
    "a\n",
    "Ü",
    "ａ",  # fullwidth a
    "ﬁle",  # ligature
    "a" * 64,
    "x" * 10_000,
    "-leading-dash",
    "UPPER",
    None,
    5,
    b"bytes",
]


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_run_uid(bad):
    with pytest.raises(ValueError, match="run_uid"):
        run_prefix(bad)
    with pytest.raises(ValueError, match="run_uid"):
        run_key(bad, "x.json")
    with pytest.raises(ValueError, match="run_uid"):
        step_key(bad, "t0", 1, "x.json")


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_step_id(bad):
    with pytest.raises(ValueError, match="step_id"):
        step_key(RUN, bad, 1, "x.json")


@pytest.mark.parametrize("bad", HOSTILE + [".hidden", "a..", "name.json/"])
def test_hostile_name(bad):
    if bad == "a..":
        # dots inside a name are fine: "a.." is one segment, not a parent reference
        assert run_key(RUN, bad).endswith("/a..")
        return
    with pytest.raises(ValueError, match="name"):
        run_key(RUN, bad)
    with pytest.raises(ValueError, match="name"):
        step_key(RUN, "t0", 1, bad)


@pytest.mark.parametrize("bad", [0, -1, 101, 1.0, "1", True, None])
def test_bad_attempt(bad):
    with pytest.raises(ValueError, match="attempt"):
        step_key(RUN, "t0", bad, "x.json")


def _assert_safe(key: str, run_uid: str) -> None:
    assert key.startswith(run_prefix(run_uid))
    segments = key.split("/")
    assert ".." not in segments and "." not in segments and "" not in segments
    assert validate_key(key) == key


@settings(max_examples=300, deadline=None)
@given(run_uid=st.text(max_size=80), step_id=st.text(max_size=80), attempt=st.integers(-5, 200), name=st.text(max_size=80))
def test_random_text_never_escapes(run_uid, step_id, attempt, name):
    try:
        key = step_key(run_uid, step_id, attempt, name)
    except ValueError:
        return
    _assert_safe(key, run_uid)


@settings(max_examples=300, deadline=None)
@given(
    run_uid=st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}", fullmatch=True),
    name=st.text(alphabet=st.sampled_from("a./-%2e\\\x00Z_"), max_size=20),
)
def test_random_names_from_dangerous_alphabet(run_uid, name):
    try:
        key = run_key(run_uid, name)
    except ValueError:
        return
    _assert_safe(key, run_uid)
    assert "/" not in name


@pytest.mark.parametrize("bad", ["", "/a", "a/", "a//b", "../a", "a/../b", "a/./b", ".a", "a b", "é", "a\\..\\b"])
def test_validate_key_rejects(bad):
    with pytest.raises(ValueError):
        validate_key(bad)


# ------------------------------------------------------------------ FileStore


@pytest.fixture
def store(tmp_path) -> FileStore:
    return FileStore(tmp_path / "artifacts")


def test_put_get_roundtrip(store, tmp_path):
    key = step_key(RUN, "t0", 1, "output.json")
    uri = store.put_bytes(key, b'{"a":1}')
    assert uri == store.uri_for(key)
    assert uri.startswith("file://") and uri.endswith(key)
    assert store.get_bytes(key) == b'{"a":1}'
    assert store.exists(key)
    assert not store.exists(step_key(RUN, "t0", 2, "output.json"))
    assert read_uri(uri) == b'{"a":1}'
    assert (tmp_path / "artifacts" / key).read_bytes() == b'{"a":1}'


def test_json_helpers(store):
    key = run_key(RUN, "answers.json")
    obj = {"b": [1, 2.5, None], "a": "ünï"}
    store.put_json(key, obj)
    assert store.get_json(key) == obj
    # deterministic serialisation: the same object again is an idempotent rewrite
    store.put_json(key, {"a": "ünï", "b": [1, 2.5, None]})
    with pytest.raises(ArtifactExists):
        store.put_json(key, {"a": "changed"})
    store.put_json(key, {"a": "changed"}, overwrite=True)
    assert store.get_json(key) == {"a": "changed"}


def test_get_json_invalid(store):
    key = run_key(RUN, "bad.json")
    store.put_bytes(key, b"not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        store.get_json(key)


def test_missing_key_names_the_key(store):
    key = run_key(RUN, "missing.json")
    with pytest.raises(ArtifactNotFound, match="missing.json") as ei:
        store.get_bytes(key)
    assert isinstance(ei.value, ArtifactError)


def test_write_once(store):
    key = step_key(RUN, "t0", 1, "output.json")
    u1 = store.put_bytes(key, b"one")
    assert store.put_bytes(key, b"one") == u1  # idempotent rerun
    with pytest.raises(ArtifactExists, match="output.json"):
        store.put_bytes(key, b"two")
    assert store.get_bytes(key) == b"one"
    assert store.put_bytes(key, b"two", overwrite=True) == u1
    assert store.get_bytes(key) == b"two"


def test_put_rejects_non_bytes(store):
    with pytest.raises(TypeError):
        store.put_bytes(run_key(RUN, "x"), "text")  # type: ignore[arg-type]
    assert store.put_bytes(run_key(RUN, "y"), bytearray(b"ok"))


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_atomic_no_temp_files_left(store):
    key = step_key(RUN, "t0", 1, "output.json")
    store.put_bytes(key, b"x" * 100_000)
    store.put_bytes(key, b"x" * 100_000)
    with pytest.raises(ArtifactExists):
        store.put_bytes(key, b"y")
    store.put_bytes(key, b"z", overwrite=True)
    assert _all_files(store.root) == [key]


def test_concurrent_writers_one_wins(store):
    key = run_key(RUN, "race.json")
    results: list[object] = []

    def write(i: int) -> None:
        try:
            results.append(store.put_bytes(key, f"writer-{i}".encode()))
        except ArtifactExists as e:
            results.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [r for r in results if isinstance(r, str)]
    assert len(wins) == 1
    assert store.get_bytes(key).startswith(b"writer-")
    assert _all_files(store.root) == [key]


def test_list_and_delete_prefix(store):
    other = "aaaa-other"
    keys = [
        step_key(RUN, "t0", 1, "output.json"),
        step_key(RUN, "t0", 2, "output.json"),
        step_key(RUN, "t0-1", 1, "output.json"),
        run_key(RUN, "lineage.json"),
        run_key(other, "lineage.json"),
        run_key(RUN + "0", "lineage.json"),  # a run uid that extends RUN: must not match RUN's prefix
    ]
    for k in keys:
        store.put_bytes(k, b"{}")
    mine = sorted(k for k in keys if k.startswith(run_prefix(RUN)))
    assert store.list(run_prefix(RUN)) == mine
    assert store.list(f"{run_prefix(RUN)}steps/t0/") == sorted(keys[:2])
    assert store.list(f"{run_prefix(RUN)}steps/t0") == sorted(keys[:3])  # plain string prefix
    assert store.list() == sorted(keys)
    assert store.list("runs/nothing-here/") == []

    assert store.delete_prefix(run_prefix(RUN)) == len(mine)
    assert store.list() == sorted(k for k in keys if k not in mine)
    assert not (store.root / "runs" / RUN).exists()  # empty directories are removed
    assert store.delete_prefix(run_prefix(RUN)) == 0
    assert store.root.is_dir()


def test_list_empty_store(tmp_path):
    assert FileStore(tmp_path / "nope").list() == []


@pytest.mark.parametrize("bad", ["", "../", "/", "runs/../", "runs//x"])
def test_delete_prefix_rejects(store, bad):
    with pytest.raises(ValueError):
        store.delete_prefix(bad)


def test_list_ignores_foreign_and_temp_files(store):
    key = run_key(RUN, "ok.json")
    store.put_bytes(key, b"1")
    d = store.root / "runs" / RUN
    (d / ".tmp-leftover").write_bytes(b"x")
    (d / "has space").write_bytes(b"x")
    assert store.list() == [key]


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "runs/../../x", "a//b", ""])
def test_store_methods_validate_keys(store, bad):
    for call in (
        lambda: store.put_bytes(bad, b"x"),
        lambda: store.get_bytes(bad),
        lambda: store.exists(bad),
        lambda: store.uri_for(bad),
    ):
        with pytest.raises(ValueError):
            call()
    assert not any(store.root.parent.rglob("x"))


def test_unwritable_root_is_artifact_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    store = FileStore(blocker / "sub")
    with pytest.raises(ArtifactError, match="file put failed"):
        store.put_bytes(run_key(RUN, "x"), b"x")


# ------------------------------------------------------------------ URIs


def test_open_store_file(tmp_path):
    s = open_store(f"file://{tmp_path}/a")
    assert isinstance(s, FileStore) and s.root == tmp_path / "a"
    uri = s.put_bytes(run_key(RUN, "x.json"), b"1")
    assert read_uri(uri) == b"1"
    assert isinstance(open_store(f"file://localhost{tmp_path}"), FileStore)


def test_file_uri_with_space_roundtrips(tmp_path):
    s = FileStore(tmp_path / "with space")
    uri = s.put_bytes(run_key(RUN, "x.json"), b"1")
    assert " " not in uri
    assert read_uri(uri) == b"1"
    assert open_store(s.uri).root == s.root


@pytest.mark.parametrize(
    "uri,match",
    [
        ("http://user:hunter2@example.com/x", "'http'"),
        ("ftp://x/y", "'ftp'"),
        ("/abs/path", "none"),
        ("", "non-empty"),
        ("file://relative/dir", "local and absolute"),
        ("file:relative", "absolute"),
        ("s3://user:hunter2@bucket/x", "credentials"),
        ("s3://B/x", "bucket"),
        ("s3://bucket/../x", "prefix"),
        ("s3://bucket/x?y=1", "query"),
    ],
)
def test_open_store_bad_uri(uri, match):
    with pytest.raises(ValueError, match=match) as ei:
        open_store(uri)
    assert "hunter2" not in str(ei.value)


def test_read_uri_missing(tmp_path):
    with pytest.raises(ArtifactNotFound):
        read_uri(f"file://{tmp_path}/nope.json")
    with pytest.raises(ValueError, match="'gopher'"):
        read_uri("gopher://x/y")


def test_relative_root_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = FileStore("rel")
    assert s.root == tmp_path / "rel"
    assert s.uri.startswith("file:///")
    assert os.path.isabs(s.root)

"""The step cache: keys, entries (corrupt, concurrent) and whole local runs served from it."""

from __future__ import annotations

import json
import multiprocessing
import re
from pathlib import Path

import pytest
import yaml

from searchrun.api import AgentSpec, SearchRunSpec
from searchrun.artifacts import FileStore, step_key
from searchrun.cache import StepCache, cache_key, corpus_digest, entry_key
from searchrun.corpus import load_corpus
from searchrun.engine.types import Observation, StartStep, StepResult

from test_local_runner import searchrun, write_manifest

QUERY = "How can quantum computing speed up machine learning, and what limits it?"
SAMPLE = Path(__file__).resolve().parents[2] / "operator" / "searchrun" / "data" / "sample-corpus.json"


def traverse_input(**over) -> dict:
    base = {"stepId": "t0-1", "type": "traverse_node", "attempt": 1, "parents": ["t0"], "depth": 2, "doc": "d1",
            "k": 2, "tokenAllowance": 3333, "inputs": ["file:///x/runs/a/steps/t0/a1/output.json"],
            "path": [{"doc": "d0", "via": ""}], "via": "related", "why": "w", "note": "n"}
    base.update(over)
    return base


def key(inp=None, query="q", corpus="c" * 64, agent=None) -> str:
    return cache_key("traverse_node", inp or traverse_input(), query, corpus, agent or AgentSpec())


# -- the key


def test_the_key_ignores_the_run_and_attempt_but_not_what_the_step_reads():
    k = key()
    same = [traverse_input(stepId="t9", attempt=3, parents=["t4"], inputs=[]),
            traverse_input()]
    assert all(key(i) == k for i in same)
    assert key(agent=AgentSpec(apiKeyEnv="OTHER_KEY", requestTimeoutSeconds=99)) == k  # never the key's whereabouts
    changed = [key(traverse_input(doc="d2")), key(traverse_input(note="other")), key(traverse_input(via="cites")),
               key(traverse_input(path=[])), key(traverse_input(tokenAllowance=3000)), key(traverse_input(k=3)),
               key(query="q2"), key(corpus="d" * 64), key(agent=AgentSpec(relevanceThreshold=0.5)),
               key(agent=AgentSpec(maxContextChars=100))]
    assert len({k, *changed}) == len(changed) + 1


def test_the_corpus_digest_is_of_the_content_not_the_uri(tmp_path):
    copy = tmp_path / "copy.json"
    copy.write_bytes(SAMPLE.read_bytes())
    a = corpus_digest(load_corpus("builtin:sample", "json"))
    assert corpus_digest(load_corpus(f"file://{copy}", "json")) == a
    data = json.loads(SAMPLE.read_text())
    first = next(iter(data["documents"]))
    data["documents"][first]["content"] += " One more sentence."
    copy.write_text(json.dumps(data))
    assert corpus_digest(load_corpus(f"file://{copy}", "json")) != a


def test_entry_keys_are_derived_never_user_text():
    assert entry_key("team-a", "traverse_node", "a" * 64) == f"cache/team-a/traverse_node/{'a' * 64}/entry.json"
    for ns, t, d in [("../x", "traverse_node", "a" * 64), ("ns", "create_report", "a" * 64), ("ns", "traverse_node", "../../x")]:
        with pytest.raises(ValueError):
            entry_key(ns, t, d)


# -- entries


def _cache(root: Path, run_uid: str, mode: str = "ReadWrite") -> StepCache:
    spec = SearchRunSpec(query="q", cache={"mode": mode})
    return StepCache(FileStore(root), spec, "local", run_uid, "c" * 64)


def _action(step_id: str = "t0-1", attempt: int = 1) -> StartStep:
    inp = traverse_input(stepId=step_id, attempt=attempt, doc=f"doc-{step_id}")
    return StartStep(step_id, "traverse_node", attempt, step_id, inp, 60, 0)


def _commit(cache: StepCache, a: StartStep, marker: str, tokens: int = 100) -> Observation:
    """What a step would have committed: its output, and the observation of its result."""
    uri = cache.store.put_json(step_key(cache.run_uid, a.step_id, a.attempt, "output.json"),
                               {"stepId": a.step_id, "marker": marker}, overwrite=True)
    r = StepResult(tokens=tokens, output=uri, decision=marker, found=True)
    return Observation(a.step_id, a.attempt, "succeeded", result=r)


def test_a_hit_is_written_into_the_new_run_and_spends_no_tokens(tmp_path):
    first, second = _cache(tmp_path, "run1"), _cache(tmp_path, "run2")
    a = _action()
    assert second.lookup(a) is None
    assert first.fill(a, _commit(first, a, "from-run1", tokens=120))
    hit = second.lookup(_action(attempt=2))
    assert hit is not None and hit.state == "succeeded" and hit.result.tokens == 0
    assert hit.reused.how == "cache" and (hit.reused.run, hit.reused.step, hit.reused.tokens_saved) == ("run1", "t0-1", 120)
    out = json.loads(Path(hit.result.output[len("file://"):]).read_text())
    assert out["marker"] == "from-run1" and out["attempt"] == 2  # this run's step, the cached content
    assert (tmp_path / "runs" / "run2" / "steps" / "t0-1" / "a2" / "result.json").is_file()
    assert _cache(tmp_path, "run3", mode="Off").lookup(a) is None


def test_read_only_uses_entries_and_adds_none(tmp_path):
    ro = _cache(tmp_path, "run1", mode="ReadOnly")
    a = _action()
    assert not ro.fill(a, _commit(ro, a, "x"))
    assert not list(tmp_path.glob("cache/**/entry.json"))


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"v": 1}', b"[1,2]", "wrong-key", "expired"])
def test_a_corrupt_or_expired_entry_is_a_miss_and_is_replaced(tmp_path, damage):
    c = _cache(tmp_path, "run1")
    a = _action()
    assert c.fill(a, _commit(c, a, "good"))
    path = tmp_path / c.key(a)
    if damage == "wrong-key":
        e = json.loads(path.read_text())
        e["key"] = entry_key("local", "traverse_node", "b" * 64)
        path.write_text(json.dumps(e))
    elif damage == "expired":
        e = json.loads(path.read_text())
        e["createdAt"] -= 8 * 86400
        path.write_text(json.dumps(e))
    else:
        path.write_bytes(damage)
    reader = _cache(tmp_path, "run2")
    assert reader.lookup(a) is None  # a miss, not an error
    writer = _cache(tmp_path, "run3")
    assert writer.fill(a, _commit(writer, a, "fresh"))
    hit = _cache(tmp_path, "run4").lookup(a)
    assert hit is not None and hit.result.decision == "fresh"


def _fill_many(root: str, run_uid: str, n: int, barrier, results) -> None:
    c = _cache(Path(root), run_uid)
    actions = [_action(f"t{i}") for i in range(n)]
    obs = [_commit(c, a, f"{run_uid}:{a.step_id}") for a in actions]
    barrier.wait()
    results.put(sum(c.fill(a, o) for a, o in zip(actions, obs)))


def test_two_runs_filling_the_same_keys_at_once_leave_whole_entries(tmp_path):
    n = 40
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_fill_many, args=(str(tmp_path), run, n, barrier, results)) for run in ("runa", "runb")]
    for p in procs:
        p.start()
    won = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    assert sum(won) == n  # each key written once
    reader = _cache(tmp_path, "runc")
    for i in range(n):
        hit = reader.lookup(_action(f"t{i}"))
        assert hit is not None
        writer = hit.reused.run
        out = json.loads(Path(hit.result.output[len("file://"):]).read_text())
        # the result and the output come from the same writer
        assert hit.result.decision == out["marker"] == f"{writer}:t{i}"


# -- whole runs


def _run(tmp_path: Path, name: str, spec: dict, env=None):
    r = searchrun("run", str(write_manifest(tmp_path, spec, name)), cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    uid = re.search(r"\(uid ([0-9a-f]+)\)", r.stdout).group(1)
    run_dir = tmp_path / "searchrun-runs" / "runs" / uid
    return r.stdout, json.loads((run_dir / "lineage.json").read_text())["status"], json.loads((run_dir / "report.json").read_text())


def _answers(report: dict) -> list:
    return [(a["docId"], a.get("score")) for a in report["answers"]]


def _spec(corpus: str = "builtin:sample", **budget) -> dict:
    b = {"maxAgents": 2, "maxDepth": 2, "maxFanoutPerNode": 2, "maxSteps": 30, "maxParallel": 4}
    b.update(budget)
    return {"query": QUERY, "corpus": {"uri": corpus}, "budget": b, "cache": {"mode": "ReadWrite"}}


def test_an_identical_second_run_starts_no_search_process_and_gives_the_same_answers(tmp_path):
    out1, st1, rep1 = _run(tmp_path, "first", _spec())
    out2, st2, rep2 = _run(tmp_path, "second", _spec())
    assert "▶ t0" in out1
    started = re.findall(r"▶ (\S+)", out2)
    assert started == ["aggregate", "report"], out2  # no detect, plan or traverse process
    assert _answers(rep2) == _answers(rep1) and rep1["answers"]
    trav = [s for s in st2["steps"] if s["type"] == "traverse_node"]
    assert trav and all(s["cachedFrom"]["step"] == s["id"] and s["tokens"] == 0 and s["tokensSaved"] > 0 for s in trav)
    assert st2["tokens"] == 0 and st1["tokens"] > 0
    assert st2["budgetUsed"]["steps"] == st1["budgetUsed"]["steps"]  # a hit counts as a step
    assert [s["id"] for s in st2["steps"]] == [s["id"] for s in st1["steps"]]


def test_only_the_steps_whose_key_changed_run_again(tmp_path):
    corpus = tmp_path / "corpus.json"
    corpus.write_bytes(SAMPLE.read_bytes())
    _, st1, _ = _run(tmp_path, "first", _spec(str(corpus)))
    # A deeper budget: every step of the first run has the same key; only the new depth runs.
    out2, st2, _ = _run(tmp_path, "deeper", _spec(str(corpus), maxDepth=3))
    ran = set(re.findall(r"▶ (\S+)", out2))
    old = {s["id"] for s in st1["steps"] if s["type"] != "create_report" and s["type"] != "aggregate_results"}
    assert not ran & old, out2
    assert {s["id"] for s in st2["steps"] if s["depth"] == 3} and ran - {"aggregate", "report"} == \
        {s["id"] for s in st2["steps"] if s["depth"] == 3 and s["phase"] == "Succeeded"}
    # One changed document changes the corpus digest, which every corpus-reading step's key holds
    # (BM25's document frequencies are corpus-wide): nothing stale is served.
    data = json.loads(corpus.read_text())
    doc = next(s["doc"] for s in st1["steps"] if s["type"] == "traverse_node")
    data["documents"][doc]["content"] += " Quantum kernels are one more idea."
    corpus.write_text(json.dumps(data))
    _, st3, _ = _run(tmp_path, "changed", _spec(str(corpus)))
    assert not [s["id"] for s in st3["steps"] if s.get("cachedFrom")]
    assert st3["tokens"] > 0

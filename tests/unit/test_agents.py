"""The offline BM25 agent and the OpenAI-compatible agent (against a local HTTP server)."""

from __future__ import annotations

import json
import math
import random
import re
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from searchrun.agents import AgentError, Hit, TraverseDecision, Usage, make_agent
from searchrun.agents.base import Agent
from searchrun.agents.offline import PEEK_WORDS, OfflineAgent, estimate_tokens, query_terms
from searchrun.agents.openai_compat import OpenAICompatAgent, first_json_object
from searchrun.api import AgentSpec
from searchrun.corpus import Corpus, load_corpus, parse_corpus

SIMPLE_Q = "What is BM25?"
DEEP_Q = "How can quantum computing speed up machine learning, and what limits it?"


@pytest.fixture(scope="module")
def sample() -> Corpus:
    return load_corpus("builtin:sample")


@pytest.fixture(scope="module")
def agent(sample) -> OfflineAgent:
    return OfflineAgent(sample, 0.35)


# ------------------------------------------------------------------ offline


def test_intent_of_the_example_queries(agent):
    intent, reason, usage = agent.detect_intent(SIMPLE_Q, 1000)
    assert intent == "simple" and "bm25" in reason and usage.tokens == estimate_tokens(3)
    intent, reason, usage = agent.detect_intent(DEEP_Q, 1000)
    assert intent == "deep" and "and what" in reason and usage.tokens > 0
    assert agent.detect_intent("Compare Raft and Paxos", 100)[0] == "deep"
    assert agent.detect_intent("exponential backoff retries", 100)[0] == "simple"
    assert agent.detect_intent("quantum kernel feature map circuits", 100)[0] == "deep"  # > 3 content terms


def test_simple_example_finds_the_bm25_document(agent):
    hits, usage = agent.simple_search(SIMPLE_Q, 3, 5000)
    assert hits and hits[0].doc_id == "bm25" and hits[0].score >= 0.35
    assert all(isinstance(h, Hit) and 0 < len(h.snippet) <= 300 for h in hits)
    assert "BM25" in hits[0].snippet
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert 0 < usage.tokens <= 5000


def run_deep(agent: OfflineAgent, query: str, seeds_k=3, depth=2, fanout=2, allowance=5000):
    """A miniature of the engine's deep search: seeds at depth 1, children at depth+1, visited per run."""
    seeds, _ = agent.plan_seeds(query, seeds_k, allowance)
    visited = set(seeds)
    frontier = [(s, 1) for s in seeds]
    found: dict[int, list[str]] = {}
    while frontier:
        doc, d = frontier.pop(0)
        dec = agent.traverse(query, doc, fanout, allowance)
        if dec.found:
            found.setdefault(d, []).append(doc)
        if d < depth:
            kids = [n for n in dec.next if n not in visited][:fanout]
            visited.update(kids)
            frontier += [(k, d + 1) for k in kids]
    return seeds, found


def test_deep_example_finds_answers_at_depth_one_and_two(agent):
    intent, _, _ = agent.detect_intent(DEEP_Q, 1000)
    assert intent == "deep"
    seeds, found = run_deep(agent, DEEP_Q)
    assert seeds[0] == "quantum-machine-learning-overview"
    assert set(seeds) <= {"quantum-machine-learning-overview", "quantum-advantage-limits", "hhl-algorithm", "dequantization"}
    assert len(found.get(1, [])) >= 2
    assert len(found.get(2, [])) >= 2
    assert "dequantization" in found[2] or "quantum-data-loading-and-qram" in found[2]


def test_threshold_separates_on_topic_from_off_topic(agent):
    def score(q, doc):
        return agent.traverse(q, doc, 0, 5000).score

    for on in ["quantum-machine-learning-overview", "quantum-advantage-limits", "hhl-algorithm", "dequantization"]:
        assert score(DEEP_Q, on) >= 0.35, on
    for off in ["cap-theorem", "bm25", "consensus-and-raft", "tf-idf", "object-storage-and-s3", "search-evaluation-metrics"]:
        assert score(DEEP_Q, off) < 0.2, off  # one incidental word of six
    assert score(SIMPLE_Q, "bm25") >= 0.9
    for off in ["qubits-and-superposition", "etcd", "neural-networks"]:
        assert score(SIMPLE_Q, off) == 0.0
    dec = agent.traverse(SIMPLE_Q, "entanglement", 2, 5000)
    assert not dec.found and dec.score < 0.1 and "< threshold" in dec.reason


def test_traverse_decision_shape(agent, sample):
    dec = agent.traverse(DEEP_Q, "quantum-machine-learning-overview", 2, 5000)
    assert isinstance(dec, TraverseDecision) and dec.found and 0.35 <= dec.score <= 1
    doc = sample.get("quantum-machine-learning-overview")
    assert 0 < len(dec.snippet) <= 300 and dec.snippet.rstrip("…") in " ".join(doc.content.split())
    assert 0 < len(dec.next) <= 4 and set(dec.next) <= set(sample.children(doc.id))
    # tokens: the query, the document, each child's title and first words, and the note written
    read_words = len(re.findall(r"\w+", DEEP_Q)) + len(re.findall(r"\w+", doc.title + " " + doc.content))
    for child in sample.children(doc.id):
        c = sample.get(child)
        read_words += len(re.findall(r"\w+", c.title)) + min(PEEK_WORDS, len(re.findall(r"\w+", c.content)))
    read_words += len(re.findall(r"\w+", dec.note))
    assert dec.note and dec.usage.tokens == math.ceil(read_words * 1.3)
    # k bounds the proposals; k=0 proposes nothing
    assert len(agent.traverse(DEEP_Q, doc.id, 1, 5000).next) <= 2
    assert agent.traverse(DEEP_Q, doc.id, 0, 5000).next == []
    # children are ranked by relevance: the quantum machine learning children come first
    assert dec.next[0] in {"quantum-advantage-limits", "hhl-algorithm", "dequantization"}
    assert "machine-learning-overview" not in dec.next[:3]
    # unknown document: not found, no work
    dec = agent.traverse(DEEP_Q, "no-such-doc", 2, 5000)
    assert not dec.found and dec.usage.tokens == 0 and dec.next == []


def test_dead_end_has_no_next():
    c = parse_corpus(json.dumps({"documents": {"a": {"content": "quantum things", "relationships": {"r": ["ghost", "a"]}}}}).encode(), "m")
    dec = OfflineAgent(c).traverse("quantum", "a", 2, 100)
    assert dec.next == [] and dec.found


def test_zero_overlap_children_are_ranked_last_never_dropped():
    docs = {
        "root": {"content": "start", "relationships": {"r": ["x", "y", "z"]}},
        "x": {"content": "nothing relevant"},
        "y": {"content": "quantum quantum"},
        "z": {"content": "also nothing"},
        "lonely": {"content": "start", "relationships": {"r": ["x", "z"]}},
    }
    a = OfflineAgent(parse_corpus(json.dumps({"documents": docs}).encode(), "m"))
    assert a.traverse("quantum", "root", 2, 1000).next == ["y", "x", "z"]
    assert a.traverse("quantum", "lonely", 2, 1000).next == ["x", "z"]  # corpus order when nothing matches


@pytest.mark.parametrize("allowance", [0, 1, 2, 5, 13, 40, 100, 250, 10_000])
def test_allowance_is_respected(agent, allowance):
    intent, _, u = agent.detect_intent(DEEP_Q, allowance)
    assert u.tokens <= allowance
    seeds, u = agent.plan_seeds(DEEP_Q, 3, allowance)
    assert u.tokens <= allowance and len(seeds) <= 3
    hits, u = agent.simple_search(DEEP_Q, 5, allowance)
    assert u.tokens <= allowance and len(hits) <= 5
    dec = agent.traverse(DEEP_Q, "quantum-machine-learning-overview", 2, allowance)
    assert dec.usage.tokens <= allowance
    if allowance == 0:
        assert (seeds, hits, dec.found, dec.next, dec.snippet, dec.usage) == ([], [], False, [], "", Usage())
        assert intent == "simple"


@settings(max_examples=60, deadline=None)
@given(allowance=st.integers(0, 400), doc=st.integers(0, 53), k=st.integers(0, 4))
def test_allowance_property(agent, sample, allowance, doc, k):
    doc_id = sample.ids()[doc % len(sample)]
    dec = agent.traverse(DEEP_Q, doc_id, k, allowance)
    assert 0 <= dec.usage.tokens <= allowance
    assert len(dec.next) <= 2 * k and len(dec.snippet) <= 300
    hits, u = agent.simple_search(SIMPLE_Q, k, allowance)
    assert u.tokens <= allowance


def test_small_allowance_reads_a_prefix(agent):
    dec = agent.traverse(DEEP_Q, "quantum-machine-learning-overview", 2, 60)
    assert "read the first" in dec.reason and dec.usage.tokens <= 60
    assert dec.score <= agent.traverse(DEEP_Q, "quantum-machine-learning-overview", 2, 5000).score + 1e-9


def test_cost_and_determinism(sample):
    a = OfflineAgent(sample, 0.35, cost_per_1k=2.0)
    dec = a.traverse(DEEP_Q, "hhl-algorithm", 2, 5000)
    assert math.isclose(dec.usage.cost_usd, dec.usage.tokens / 1000 * 2.0)
    b = OfflineAgent(load_corpus("builtin:sample"), 0.35, cost_per_1k=2.0)  # a fresh corpus and index
    assert b.traverse(DEEP_Q, "hhl-algorithm", 2, 5000) == dec
    assert a.plan_seeds(DEEP_Q, 3, 5000) == b.plan_seeds(DEEP_Q, 3, 5000)
    assert a.simple_search(SIMPLE_Q, 5, 5000) == b.simple_search(SIMPLE_Q, 5, 5000)
    assert a.detect_intent(DEEP_Q, 100) == b.detect_intent(DEEP_Q, 100)


def test_make_agent_offline(sample):
    a = make_agent(AgentSpec(relevanceThreshold=0.5, costPer1kTokensUSD=1.0), sample, {})
    assert isinstance(a, OfflineAgent) and isinstance(a, Agent) and a.threshold == 0.5


def _synthetic(n: int, seed: int = 3) -> Corpus:
    rnd = random.Random(seed)
    vocab = [f"w{i}" for i in range(5000)] + "quantum computing machine learning speed limits".split()
    docs = {
        f"d{i}": {
            "title": " ".join(rnd.choices(vocab, k=4)),
            "content": " ".join(rnd.choices(vocab, k=150)),
            "relationships": {"related": [f"d{rnd.randrange(n)}" for _ in range(4)]},
        }
        for i in range(n)
    }
    return parse_corpus(json.dumps({"documents": docs}).encode(), "synthetic")


def test_offline_agent_on_5000_documents_is_deterministic_and_bounded():
    """Speed is measured in bench/bench_local.py, not asserted here."""
    c = _synthetic(5000)
    a, b = OfflineAgent(c), OfflineAgent(c)
    for i in range(20):
        da = a.traverse(DEEP_Q, f"d{i}", 2, 5000)
        db = b.traverse(DEEP_Q, f"d{i}", 2, 5000)
        assert (da.found, da.score, da.next) == (db.found, db.score, db.next)
        assert 0 < da.usage.tokens <= 5000
        assert set(da.next) <= set(c.children(f"d{i}")) and len(da.next) <= 4


# ----------------------------------------------------------- openai server

API_KEY = "sk-test-SECRET-0123456789"


class FakeOpenAI:
    """A ThreadingHTTPServer on 127.0.0.1:0 that replays scripted responses and records requests."""

    def __init__(self):
        self.script: list[tuple[int, dict, object]] = []
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                status, headers, payload = outer.script.pop(0) if outer.script else (500, {}, {"error": "script empty"})
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def reply(self, content, total_tokens=123, status=200, headers=None):
        text = content if isinstance(content, str) else json.dumps(content)
        self.script.append(
            (status, headers or {}, {"choices": [{"message": {"role": "assistant", "content": text}}],
                                     "usage": {"prompt_tokens": total_tokens - 7, "completion_tokens": 7, "total_tokens": total_tokens}})
        )

    def fail(self, status, headers=None, payload=None):
        self.script.append((status, headers or {}, payload or {"error": {"message": "nope"}}))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    s = FakeOpenAI()
    yield s
    s.close()


def oa(server, sample, key=API_KEY, **kw):
    spec = AgentSpec(type="openai", baseURL=server.url, model="test-model", costPer1kTokensUSD=0.5, requestTimeoutSeconds=5)
    sleeps: list[float] = []
    agent = OpenAICompatAgent(spec, sample, key, sleep=sleeps.append, **kw)
    return agent, sleeps


def test_request_shape_usage_and_cost(server, sample):
    agent, _ = oa(server, sample)
    server.reply({"intent": "deep", "reason": "spans two fields"}, total_tokens=321)
    intent, reason, usage = agent.detect_intent(DEEP_Q, 2000)
    assert (intent, reason) == ("deep", "spans two fields")
    assert usage.tokens == 321 and math.isclose(usage.cost_usd, 321 / 1000 * 0.5)
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {API_KEY}"
    body = req["body"]
    assert body["model"] == "test-model" and body["temperature"] == 0
    assert body["response_format"] == {"type": "json_object"}
    assert 0 < body["max_tokens"] <= 2000
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert DEEP_Q in body["messages"][1]["content"]


def test_no_key_no_auth_header_and_make_agent_reads_env(server, sample):
    spec = AgentSpec(type="openai", baseURL=server.url + "/", model="m", apiKeyEnv="MY_KEY")
    agent = make_agent(spec, sample, {})
    assert isinstance(agent, OpenAICompatAgent)
    server.reply({"intent": "simple", "reason": "lookup"})
    assert agent.detect_intent(SIMPLE_Q, 500)[0] == "simple"
    assert "Authorization" not in server.requests[-1]["headers"]
    agent = make_agent(spec, sample, {"MY_KEY": "k-from-env"})
    server.reply({"intent": "simple", "reason": "lookup"})
    agent.detect_intent(SIMPLE_Q, 500)
    assert server.requests[-1]["headers"]["Authorization"] == "Bearer k-from-env"
    assert "k-from-env" not in repr(agent)


def test_retries_429_then_succeeds_honouring_retry_after(server, sample):
    agent, sleeps = oa(server, sample)
    server.fail(429, {"Retry-After": "2"})
    server.fail(503)
    server.reply({"intent": "simple", "reason": "ok"}, total_tokens=50)
    intent, _, usage = agent.detect_intent(SIMPLE_Q, 500)
    assert intent == "simple" and usage.tokens == 50
    assert len(server.requests) == 3
    assert sleeps == [2.0, 2.0]  # Retry-After, then exponential backoff (1s * 2^1)


def test_500_four_times_raises_without_leaking_the_key(server, sample):
    agent, sleeps = oa(server, sample)
    for _ in range(4):
        server.fail(500, payload={"error": f"bad key {API_KEY} upstream"})  # a server echoing the key
    with pytest.raises(AgentError) as ei:
        agent.traverse(DEEP_Q, "hhl-algorithm", 2, 3000)
    msg = str(ei.value)
    assert "HTTP 500" in msg and "4 attempts" in msg
    assert API_KEY not in msg and API_KEY not in "".join(traceback.format_exception(ei.value))
    assert len(server.requests) == 4 and sleeps == [1.0, 2.0, 4.0]


def test_client_errors_and_redirects_are_not_retried(server, sample):
    agent, _ = oa(server, sample)
    server.fail(401, payload={"error": f"invalid key {API_KEY}"})
    with pytest.raises(AgentError) as ei:
        agent.detect_intent(SIMPLE_Q, 500)
    assert "HTTP 401 (Unauthorized)" in str(ei.value) and "invalid key" not in str(ei.value)  # never the body
    assert API_KEY not in "".join(traceback.format_exception(ei.value))
    assert len(server.requests) == 1
    server.fail(302, {"Location": "http://127.0.0.1:1/elsewhere"})
    with pytest.raises(AgentError, match="redirected"):
        agent.detect_intent(SIMPLE_Q, 500)
    assert len(server.requests) == 2


def test_connection_errors_are_retried_then_fail(sample):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    spec = AgentSpec(type="openai", baseURL=f"http://127.0.0.1:{port}/v1", model="m", requestTimeoutSeconds=2)
    sleeps: list[float] = []
    agent = OpenAICompatAgent(spec, sample, API_KEY, sleep=sleeps.append)
    with pytest.raises(AgentError) as ei:
        agent.detect_intent(SIMPLE_Q, 500)
    assert "cannot reach" in str(ei.value) and API_KEY not in str(ei.value)
    assert len(sleeps) == 3


def test_json_is_found_inside_prose_and_bad_answers_are_retried(server, sample):
    agent, _ = oa(server, sample)
    server.reply("I think there is no JSON here", total_tokens=10)
    server.reply('Sure! ```json\n{"intent": "deep", "reason": "two topics"}\n``` hope that helps', total_tokens=20)
    intent, reason, usage = agent.detect_intent(DEEP_Q, 500)
    assert (intent, reason) == ("deep", "two topics") and usage.tokens == 30  # both attempts were paid for
    assert first_json_object('x {"a": {"b": 1}} y {"c": 2}') == {"a": {"b": 1}}
    assert first_json_object("[1, 2] {bad} ") is None


def test_traverse_parses_and_filters_the_answer(server, sample):
    agent, _ = oa(server, sample)
    kids = sample.children("hhl-algorithm")
    server.reply({"found": True, "score": 1, "note": "HHL: exponential speedup, if the input can be loaded.",
                  "proposals": [{"doc": d, "relation": "r", "reason": "w"} for d in [kids[1], "not-a-child", kids[1], kids[0], kids[2]]],
                  "reason": "explains the speedup"}, total_tokens=777)
    dec = agent.traverse(DEEP_Q, "hhl-algorithm", 1, 4000)
    assert dec.found and dec.score == 1.0 and 0 < len(dec.snippet) <= 300
    assert dec.next == [kids[1], kids[0]]  # valid children only, deduplicated, at most 2*k
    assert dec.note == "HHL: exponential speedup, if the input can be loaded."
    assert dec.usage.tokens == 777 and dec.reason == "explains the speedup"
    prompt = server.requests[-1]["body"]["messages"][1]["content"]
    assert "hhl-algorithm" in prompt and kids[0] in prompt


def test_openai_allowance_bounds_the_request(server, sample):
    agent, _ = oa(server, sample)
    dec = agent.traverse(DEEP_Q, "hhl-algorithm", 2, 0)
    assert (dec.found, dec.snippet, dec.next, dec.usage) == (False, "", [], Usage())
    assert agent.simple_search(DEEP_Q, 3, 0) == ([], Usage())
    assert agent.plan_seeds(DEEP_Q, 3, 0) == ([], Usage())
    assert agent.detect_intent(DEEP_Q, 0)[2] == Usage()
    assert agent.traverse(DEEP_Q, "hhl-algorithm", 2, 20).usage == Usage()  # too small to ask at all
    assert server.requests == []
    server.reply({"found": False, "score": 0.1, "note": "", "proposals": [], "reason": ""}, total_tokens=200)
    agent.traverse(DEEP_Q, "hhl-algorithm", 2, 700)  # the path, the links and the reply's schema take ~600
    body = server.requests[-1]["body"]
    prompt_chars = sum(len(m["content"]) for m in body["messages"])
    assert prompt_chars / 3 + body["max_tokens"] <= 700  # the conservative estimate fits the allowance
    assert "[truncated]" in body["messages"][1]["content"]


def test_plan_seeds_and_simple_search_use_bm25_candidates(server, sample):
    agent, _ = oa(server, sample)
    server.reply({"ids": ["dequantization", "bogus", "hhl-algorithm"], "reason": "r"}, total_tokens=90)
    seeds, usage = agent.plan_seeds(DEEP_Q, 2, 5000)
    assert seeds == ["dequantization", "hhl-algorithm"] and usage.tokens == 90
    server.reply({"results": [{"id": "tf-idf", "relevant": False, "score": 0.2},
                              {"id": "bm25", "relevant": True, "score": 0.9, "answer": "BM25 is a ranking function."}]}, total_tokens=60)
    hits, usage = agent.simple_search(SIMPLE_Q, 3, 5000)
    assert hits == [Hit("bm25", 0.9, "BM25 is a ranking function.")] and usage.tokens == 60
    assert "bm25" in server.requests[-1]["body"]["messages"][1]["content"]

"""The openai agent's traverse question: path context in the prompt, a JSON-schema reply that is
validated, bad replies retried then a dead end that says why; end to end against the scripted
local server (tests/integration/test_model_server.py does it against a real llama.cpp server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from searchrun.agents.base import Hop, PathContext, Proposal
from searchrun.agents.openai_compat import OpenAICompatAgent
from searchrun.agents.openai_schema import (BadReply, MAX_PATH_HOPS, REPLY_ATTEMPTS, parse_traverse_reply, path_block,
                                            traverse_schema)
from searchrun.api import AgentSpec, CorpusRef
from searchrun.corpus import parse_corpus
from searchrun.steps import STEP_ENV, StepContext
from support.fake_openai import FakeOpenAI, traverse_facts

QUERY = "Which team is on call for the service that sends password-reset emails?"
NOTE = "Password-reset emails are sent by the mailer service, owned by the identity team; open: who is on call for it."


def _doc(title: str, content: str, **rels: list[str]) -> dict:
    return {"title": title, "content": content, "type": "doc", "relationships": rels}


# No single document covers the question: the mailer sends the emails, its owner's document says
# nothing about emails, and a decoy team matches "team" and "on call" word for word.
CORPUS = {"documents": {
    "mailer": _doc("Mailer service", "The mailer service sends password-reset emails, receipts and weekly digests.",
                   owned_by=["identity-team"], depends_on=["smtp-relay"]),
    "identity-team": _doc("Identity team", "The identity team keeps login and accounts running; its rota is in the pager.",
                          runbook=["identity-runbook"]),
    "smtp-relay": _doc("SMTP relay", "The SMTP relay forwards outgoing mail.", owned_by=["platform-team"]),
    "platform-team": _doc("Platform team", "The platform team is on call for shared infrastructure."),
    "billing-team": _doc("Billing team", "The billing team is on call for invoices and payments."),
    "identity-runbook": _doc("Identity runbook", "Restart the login service; page the identity rota."),
}}
LINKS = {"identity-team": "owned_by", "smtp-relay": "depends_on"}


def ok(**over) -> dict:
    reply = {"found": False, "score": 0.2, "note": "", "proposals": [], "reason": "r"}
    reply.update(over)
    return reply


def two_hop_model(prompt: str):
    """A scripted model: the team answers only when the parent's note (which names it) reached its prompt."""
    if "Classify this search query" in prompt:
        return {"intent": "deep", "reason": "a relation across two documents"}
    if "best places to start searching" in prompt:
        return {"ids": ["mailer"], "reason": "it sends the emails"}
    f = traverse_facts(prompt)
    if f["doc"] == "mailer":
        return ok(note=NOTE[: f["max_note"]], reason="the service, not the team",
                  proposals=[{"doc": c, "relation": "x", "reason": "its owner"} for c in ("identity-team", "smtp-relay")])
    if f["doc"] == "identity-team":
        knows = "owned by the identity team" in f["note"]
        return ok(found=knows, score=0.9 if knows else 0.1, reason="the note says it owns the mailer" if knows else "a team")
    if f["doc"] is not None:
        return ok(score=0.0, reason="unrelated")
    return None


@pytest.fixture
def corpus():
    return parse_corpus(json.dumps(CORPUS).encode(), "two-hop.json")


@pytest.fixture
def server():
    s = FakeOpenAI("127.0.0.1")
    yield s
    s.close()


def agent(server, corpus) -> OpenAICompatAgent:
    spec = AgentSpec(type="openai", baseURL=server.base_url, model="m", requestTimeoutSeconds=5)
    return OpenAICompatAgent(spec, corpus, None, sleep=lambda s: None)


def user_prompt(server, i: int = -1) -> str:
    return server.requests[i]["prompt"]


# ------------------------------------------------------------- reply validation (pure)


def parse(reply, links=LINKS, most=4, max_note=400):
    text = reply if isinstance(reply, str) else json.dumps(reply)
    return parse_traverse_reply(text, links, most, max_note)


def test_a_valid_reply_keeps_children_only_with_the_corpus_relation():
    r = parse(ok(found=True, score=1, note="n", proposals=[
        {"doc": "smtp-relay", "relation": "made-up", "reason": "  relays\nmail "},
        {"doc": "no-such-doc", "relation": "owned_by", "reason": "guess"},
        {"doc": "billing-team", "relation": "owned_by", "reason": "a document, but not a child"},
        {"doc": "smtp-relay", "relation": "depends_on", "reason": "twice"},
        {"doc": "identity-team", "relation": "owned_by", "reason": "owner"}]))
    assert (r.found, r.score, r.note) == (True, 1.0, "n")
    assert r.proposals == (Proposal("smtp-relay", "depends_on", "relays mail"), Proposal("identity-team", "owned_by", "owner"))
    assert parse(ok(proposals=[{"doc": c, "relation": "", "reason": ""} for c in LINKS]), most=1).proposals == (
        Proposal("identity-team", "owned_by", ""),)  # at most 2k: the rest are dropped


def test_a_reply_in_prose_or_a_fence_is_read():
    assert parse("Sure:\n```json\n" + json.dumps(ok(found=True, score=0.7)) + "\n```").score == 0.7


@pytest.mark.parametrize("text,message", [
    ("", "the reply is empty"),
    ("I cannot answer that.", "not JSON"),
    ('{"found": true, "score": 0.9, "note": "cut off by max_tok', "not JSON"),
    ("[1, 2, 3]", "a JSON array, expected an object"),
    ('"found"', "a JSON string, expected an object"),
])
def test_malformed_json_is_a_bad_reply(text, message):
    with pytest.raises(BadReply, match=message):
        parse(text)


@pytest.mark.parametrize("change,message", [
    ({"found": "true"}, "found: expected true or false, got string"),
    ({"found": None}, "found: expected true or false, got null"),
    ({"score": 1.7}, r"score: must be from 0 to 1 \(got 1.7\)"),
    ({"score": -0.1}, "score: must be from 0 to 1"),
    ({"score": "0.5"}, "score: expected a number from 0 to 1, got string"),
    ({"score": True}, "score: expected a number from 0 to 1, got boolean"),
    ({"note": 3}, "note: expected a string, got number"),
    ({"reason": ["a"]}, "reason: expected a string, got array"),
    ({"proposals": {"doc": "smtp-relay"}}, "proposals: expected an array, got object"),
    ({"proposals": ["smtp-relay"]}, r"proposals\[0\]: expected an object, got string"),
    ({"proposals": [{"doc": "smtp-relay", "reason": "r"}]}, r"proposals\[0\]: missing field\(s\) relation"),
    ({"proposals": [{"doc": 7, "relation": "", "reason": ""}]}, r"proposals\[0\].doc: expected a string, got number"),
    ({"proposals": [{"doc": "smtp-relay", "relation": "", "reason": "", "why": ""}]}, r"proposals\[0\]: unknown field\(s\) why"),
    ({"answer": "a quote"}, r"reply: unknown field\(s\) answer"),
])
def test_off_schema_replies_name_the_field(change, message):
    with pytest.raises(BadReply, match=message):
        parse(ok(**change))


def test_missing_fields_and_nan_are_refused():
    with pytest.raises(BadReply, match=r"reply: missing field\(s\) note, proposals"):
        parse({"found": True, "score": 0.5, "reason": "r"})
    with pytest.raises(BadReply, match="score: must be from 0 to 1"):
        parse('{"found": true, "score": NaN, "note": "", "proposals": [], "reason": ""}')


def test_an_oversized_note_is_refused_naming_the_limit():
    assert parse(ok(note="x" * 400)).note == "x" * 400
    with pytest.raises(BadReply, match=r"note: 401 characters, at most 400 allowed \(agent.maxContextChars\)"):
        parse(ok(note="x" * 401))
    with pytest.raises(BadReply, match="note: 1 characters, at most 0"):
        parse(ok(note="x"), max_note=0)


def test_the_schema_is_json_schema_and_agrees_with_the_validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = traverse_schema(list(LINKS), 4, 400)
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    good = ok(proposals=[{"doc": "smtp-relay", "relation": "depends_on", "reason": "r"}])
    assert v.is_valid(good) and parse(good).proposals
    for bad in (ok(found="yes"), ok(score=2), ok(extra=1), {"found": True}, ok(proposals=[{"doc": "smtp-relay"}]),
                ok(proposals=[{"doc": "elsewhere", "relation": "", "reason": ""}])):
        assert not v.is_valid(bad)
    leaf = traverse_schema([], 0, 0)  # no children, no fan-out left, no context budget
    jsonschema.Draft202012Validator.check_schema(leaf)
    assert jsonschema.Draft202012Validator(leaf).is_valid(ok()) and parse(ok(), links={}, most=0, max_note=0).proposals == ()


def test_the_path_block_names_ancestors_relations_and_a_bounded_note():
    hops = (Hop("mailer", "Mailer\nservice"), Hop("smtp-relay", "SMTP relay", "depends_on"))
    text = path_block(PathContext(hops, "owned_by", "established: A. open: B " + "y" * 500), 60)
    assert "1. [mailer] Mailer service\n2. [smtp-relay] SMTP relay (reached via depends_on)" in text  # a title cannot add lines
    assert "reached from the last one via owned_by" in text
    note = text.split("<<<")[1].split(">>>")[0]
    assert note.startswith("established: A. open: B") and len(note) <= 60
    assert "<<<" not in path_block(PathContext(hops, "owned_by", "a note"), 0)  # no context budget: no note
    long = path_block(PathContext(tuple(Hop(f"d{i}", f"t{i}") for i in range(20))), 100)
    assert f"[d{20 - MAX_PATH_HOPS}]" in long and "[d11]" not in long and "12 earlier documents" in long
    assert "is a seed" in path_block(None, 100)


# ------------------------------------------------------------- the agent against the local server


def test_the_prompt_carries_the_path_and_note_and_the_request_a_schema(server, corpus):
    server.model = two_hop_model
    path = PathContext((Hop("mailer", "Mailer service"),), "owned_by", NOTE)
    d = agent(server, corpus).traverse(QUERY, "identity-team", 2, 4000, path=path, max_note_chars=400)
    assert d.found and d.score == 0.9 and d.usage.tokens == 60  # the server's usage.total_tokens
    prompt = user_prompt(server)
    assert "1. [mailer] Mailer service" in prompt and "via owned_by" in prompt and f"<<<{NOTE}>>>" in prompt
    assert "- identity-runbook | runbook | Identity runbook" in prompt
    assert server.formats == ["json_schema"]


def test_without_the_note_the_child_is_not_an_answer(server, corpus):
    server.model = two_hop_model
    path = PathContext((Hop("mailer", "Mailer service"),), "owned_by", "")
    assert not agent(server, corpus).traverse(QUERY, "identity-team", 2, 4000, path=path).found


def test_the_request_sends_the_schema_with_the_children_as_the_ids(server, corpus):
    seen = []
    server.model = lambda p: seen.append(p) or ok(proposals=[{"doc": "identity-team", "relation": "owned_by", "reason": "owner"}])
    a = agent(server, corpus)
    bodies = []
    real = a._post
    a._post = lambda body: bodies.append(json.loads(body)) or real(body)
    d = a.traverse(QUERY, "mailer", 1, 4000)
    assert d.next == ["identity-team"] and d.proposals == (Proposal("identity-team", "owned_by", "owner"),)
    fmt = bodies[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["proposals"]["items"]["properties"]["doc"]["enum"] == ["identity-team", "smtp-relay"]
    assert schema["properties"]["proposals"]["maxItems"] == 2


def test_a_server_without_json_schema_gets_a_json_object_request(server, corpus):
    server.json_schema = False
    server.model = lambda p: ok() if traverse_facts(p)["doc"] else None
    a = agent(server, corpus)
    assert a.traverse(QUERY, "mailer", 2, 4000).usage.tokens == 60  # the refused request reported no usage
    a.traverse(QUERY, "smtp-relay", 2, 4000)
    assert server.formats == ["json_schema", "json_object+schema", "json_object+schema"]  # asked once, then remembered


def test_a_malformed_reply_is_asked_again_with_the_reason(server, corpus):
    replies = iter(["not json at all", json.dumps(ok(note="z" * 50)), json.dumps(ok(found=True, score=0.6))])
    server.model = lambda p: next(replies)
    d = agent(server, corpus).traverse(QUERY, "mailer", 2, 4000, max_note_chars=40)
    assert d.found and d.score == 0.6 and d.usage.tokens == 3 * 60  # every attempt is paid for
    assert "rejected: the reply is not JSON" in user_prompt(server, 1)
    assert "rejected: note: 50 characters, at most 40 allowed" in user_prompt(server, 2)
    assert "reply 3" in d.reason


def test_bad_replies_are_retried_a_bounded_number_of_times_then_a_dead_end(server, corpus):
    server.model = lambda p: ok(score=3, proposals=[{"doc": "identity-team", "relation": "owned_by", "reason": "r"}]) \
        if traverse_facts(p)["doc"] else None
    d = agent(server, corpus).traverse(QUERY, "mailer", 2, 4000)
    assert len(server.requests) == REPLY_ATTEMPTS
    assert not d.found and d.next == [] and d.proposals == ()  # nothing of a refused reply is followed
    assert d.rejected == f"the model's reply was rejected {REPLY_ATTEMPTS} times; last: score: must be from 0 to 1 (got 3)"
    assert d.reason == f"dead end: {d.rejected}"
    assert d.usage.tokens == REPLY_ATTEMPTS * 60  # every refused reply is paid for


def test_retries_stay_within_the_allowance(server, corpus):
    server.model = lambda p: "{oops"
    server.total_tokens = 700  # what the first attempt cost: no room is left for a second
    d = agent(server, corpus).traverse(QUERY, "mailer", 2, 1000)
    assert len(server.requests) == 1
    assert d.next == [] and d.usage.tokens == 700
    assert d.rejected.startswith("the model's reply was rejected 1 time; last: the reply is not JSON")
    assert d.rejected.endswith("the step's token allowance (1000) leaves no room to ask again")


def test_a_server_refusing_json_schema_and_schema_in_json_object_gets_plain_json_object(server, corpus):
    server.json_schema = False
    server.schema_in_json_object = False
    server.model = lambda p: ok() if traverse_facts(p)["doc"] else None
    a = agent(server, corpus)
    a.traverse(QUERY, "mailer", 2, 4000)
    a.traverse(QUERY, "smtp-relay", 2, 4000)
    assert server.formats == ["json_schema", "json_object+schema", "json_object", "json_object"]


def test_a_refusal_by_http_500_that_names_response_format_is_not_retried(server, corpus):
    """llama-cpp-python's server answers a json_schema response_format with HTTP 500 (its
    validation error names response_format): that is a refusal, asked in the next form at once."""
    server.json_schema, server.json_schema_status = False, 500
    server.model = lambda p: ok() if traverse_facts(p)["doc"] else None
    d = agent(server, corpus).traverse(QUERY, "mailer", 2, 4000)
    assert server.formats == ["json_schema", "json_object+schema"] and d.usage.tokens == 60


def test_a_server_taking_a_schema_in_json_object_gets_it_from_then_on(server, corpus):
    server.json_schema = False
    server.model = lambda p: ok() if traverse_facts(p)["doc"] else None
    a = agent(server, corpus)
    a.traverse(QUERY, "mailer", 2, 4000)
    a.traverse(QUERY, "smtp-relay", 2, 4000)
    assert server.formats == ["json_schema", "json_object+schema", "json_object+schema"]
    sent = json.loads(server.bodies[-1])["response_format"]["schema"]
    assert sent["required"] == ["found", "score", "note", "proposals", "reason"]


# ------------------------------------------------------------- a step, and a run, through the executors


def _step(tmp_path, server, doc="mailer"):
    corpus_path = tmp_path / "two-hop.json"
    corpus_path.write_text(json.dumps(CORPUS))
    ctx = StepContext(run_uid="run1", run_name="r", query=QUERY, corpus=CorpusRef(uri=f"file://{corpus_path}"),
                      agent=AgentSpec(type="openai", baseURL=server.base_url, model="m", requestTimeoutSeconds=5),
                      store_uri=f"file://{tmp_path}/store",
                      step={"stepId": "t0", "type": "traverse_node", "attempt": 1, "parents": ["plan"], "depth": 1,
                            "doc": doc, "k": 2, "tokenAllowance": 5000, "inputs": [], "path": [], "note": ""})
    out = tmp_path / "termination-log"
    p = subprocess.run([sys.executable, "-m", "searchrun", "step", "--result-file", str(out)],
                       env=dict(os.environ, **{STEP_ENV: ctx.to_json()}), capture_output=True, text=True, timeout=60)
    return p, json.loads(out.read_text())


def test_a_malformed_reply_makes_the_step_a_dead_end_that_says_why(tmp_path, server):
    server.model = lambda p: "I'd rather chat about the weather." if traverse_facts(p)["doc"] else None
    p, result = _step(tmp_path, server)
    assert p.returncode == 0, p.stderr  # not retried as a Job: the same model would be asked the same again
    assert result["decision"].startswith(f"dead end: the model's reply was rejected {REPLY_ATTEMPTS} times")
    assert "not JSON" in result["decision"] and "weather" not in json.dumps(result)  # our message, never the reply
    assert not result.get("next") and not result["found"] and result["tokens"] == REPLY_ATTEMPTS * 60
    assert "Traceback" not in p.stderr
    assert len(server.requests) == REPLY_ATTEMPTS
    out = json.loads((tmp_path / "store/runs/run1/steps/t0/a1/output.json").read_text())
    assert out["rejected"].startswith("the model's reply was rejected") and out["next"] == []


def searchrun_run(tmp_path: Path, server, **spec_over):
    (tmp_path / "two-hop.json").write_text(json.dumps(CORPUS))
    spec = {"query": QUERY, "corpus": {"uri": "two-hop.json"},
            "agent": {"type": "openai", "baseURL": server.base_url, "model": "m", "requestTimeoutSeconds": 10},
            "budget": {"maxDepth": 3, "maxFanoutPerNode": 2}, "steps": {"retries": 1, "backoffSeconds": 0.1}}
    for k, v in spec_over.items():
        spec[k] = {**spec.get(k, {}), **v}
    m = tmp_path / "run.yaml"
    m.write_text(yaml.safe_dump({"apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun",
                                 "metadata": {"name": "two-hop"}, "spec": spec}))
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    r = subprocess.run([sys.executable, "-m", "searchrun", "run", str(m)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    (run_dir,) = list((tmp_path / "searchrun-runs" / "runs").iterdir())
    status = json.loads((run_dir / "lineage.json").read_text())["status"]
    report = json.loads((run_dir / "report.json").read_text()) if (run_dir / "report.json").exists() else {}
    return r, status, report


@pytest.mark.slow
def test_two_hop_answer_end_to_end_only_with_the_note(tmp_path, server):
    server.model = two_hop_model
    r, st, report = searchrun_run(tmp_path, server)
    assert r.returncode == 0, r.stdout + r.stderr
    assert st["phase"] == "Succeeded" and st["intent"] == "deep"
    answers = report["answers"]
    assert [a["docId"] for a in answers] == ["identity-team"]
    assert answers[0]["depth"] == 2 and [h["doc"] for h in answers[0]["path"]] == ["mailer", "identity-team"]
    assert answers[0]["path"][1]["via"] == "owned_by"
    child = next(s for s in st["steps"] if s.get("doc") == "identity-team")
    assert child["phase"] == "Succeeded"
    prompts = [q["prompt"] for q in server.requests if traverse_facts(q["prompt"])["doc"] == "identity-team"]
    assert len(prompts) == 1 and f"<<<{NOTE}>>>" in prompts[0]  # the note the mailer's step wrote
    assert "1. [mailer] Mailer service" in prompts[0] and "reached from the last one via owned_by" in prompts[0]
    assert sum(s.get("tokens", 0) for s in st["steps"]) == 60 * len(server.requests)

    # the same run with no context budget: the note is not passed down, and the answer is missed
    server.requests.clear()
    (tmp_path / "no-note").mkdir()
    r, st, report = searchrun_run(tmp_path / "no-note", server, agent={"maxContextChars": 0})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "identity-team" not in [a["docId"] for a in report.get("answers", [])]
    assert any(traverse_facts(q["prompt"])["doc"] == "identity-team" for q in server.requests)  # visited, not found


@pytest.mark.slow
def test_malformed_replies_end_to_end_are_visible_dead_ends(tmp_path, server):
    def model(prompt):
        if traverse_facts(prompt)["doc"]:
            return '{"found": "maybe"'
        return two_hop_model(prompt)

    server.model = model
    r, st, report = searchrun_run(tmp_path, server)
    assert "Traceback" not in r.stdout + r.stderr
    (t0,) = [s for s in st["steps"] if s["type"] == "traverse_node"]
    assert t0["phase"] == "Succeeded" and t0["attempts"] == 1  # a dead end, not a failed step retried
    assert t0["decision"].startswith(f"dead end: the model's reply was rejected {REPLY_ATTEMPTS} times")
    assert "not JSON" in t0["decision"] and not t0.get("next")
    assert len([q for q in server.requests if traverse_facts(q["prompt"])["doc"]]) == REPLY_ATTEMPTS
    assert sum(s.get("tokens", 0) for s in st["steps"]) == 60 * len(server.requests)  # refused replies are paid for
    assert [s["deadEnd"] for s in report["steps"] if s["type"] == "traverse_node"] == [True]

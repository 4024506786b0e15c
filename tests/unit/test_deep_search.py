"""Deep search as the executors carry it out: the path and the parent's note reach each child,
a two-hop answer is found, a child sharing no query word is still visited, and the same
manifest gives the same lineage at any parallelism."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from searchrun.api import SearchRunSpec
from searchrun.cli_run import run_manifest
from searchrun.engine import Observation, StepResult, reconcile
from searchrun.executors import step_context
from searchrun.executors.kube.config import OperatorConfig
from searchrun.executors.kube.jobs import build_job, job_name
from datetime import datetime, timezone
import sys

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "unit"))
from test_offline_multihop import ARCHIVE, CAMERA_Q, ORG, TEAM_Q  # noqa: E402  (the agent's own two-hop corpora)
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _corpus_file(tmp_path: Path, docs: dict) -> Path:
    p = tmp_path / "corpus.json"
    p.write_text(json.dumps({"documents": {k: {"id": k, **v} for k, v in docs.items()}}))
    return p


def _run(tmp_path: Path, spec: dict, name: str = "t") -> tuple[int, str, dict, Path]:
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun",
                                        "metadata": {"name": name}, "spec": spec}))
    out = io.StringIO()
    store = tmp_path / f"store-{name}"
    rc = run_manifest(str(manifest), store=f"file://{store}", out=out)
    run_dir = next((store / "runs").iterdir())
    return rc, out.getvalue(), json.loads((run_dir / "lineage.json").read_text()), run_dir


def _outputs(run_dir: Path) -> dict[str, dict]:
    return {p.parent.parent.name: json.loads(p.read_text()) for p in run_dir.glob("steps/*/a*/output.json")}


def test_a_two_hop_answer_is_found_through_its_path(tmp_path):
    """No single document answers "which team is on call for the service that sends password-reset
    emails": the mailer names the service, the identity team (one link away) is on call."""
    corpus = _corpus_file(tmp_path, ORG)
    rc, out, lineage, run_dir = _run(tmp_path, {"query": TEAM_Q, "corpus": {"uri": str(corpus)}})
    assert rc == 0, out
    report = json.loads((run_dir / "report.json").read_text())
    answers = {a["docId"]: a for a in report["answers"]}
    assert "identity-team" in answers, out
    team = answers["identity-team"]
    assert team["depth"] >= 2 and [h["doc"] for h in team["path"]][-1] == "identity-team"
    assert "mailer" not in answers, "the mailer names the service but is not the team"
    assert "path: " in out and "—owned_by→ identity-team" in out


def test_the_path_and_the_note_reach_each_child_in_the_local_executor(tmp_path):
    corpus = _corpus_file(tmp_path, ORG)
    rc, out, lineage, run_dir = _run(tmp_path, {"query": TEAM_Q, "corpus": {"uri": str(corpus)}})
    assert rc == 0, out
    steps = {s["id"]: s for s in lineage["status"]["steps"]}
    outs = _outputs(run_dir)
    children = [s for s in steps.values() if s["type"] == "traverse_node" and s["depth"] >= 2]
    assert children
    for child in children:
        parent = steps[child["parents"][0]]
        assert parent["note"] and child["via"], child
        # what the child's agent was given: the parent on its path, and the link followed
        hops = outs[child["id"]]["path"]
        assert [h["doc"] for h in hops][-2:] == [parent["doc"], child["doc"]] and len(hops) == child["depth"]
        assert hops[-1]["via"] == child["via"]
        assert child["via"] in {p["via"] for p in parent["proposals"] if p["doc"] == child["doc"]}


def test_the_path_and_the_note_reach_each_child_in_the_kube_executor():
    """The engine's input for a child (what both executors hand the step) carries the path and
    the note; the Job passes it to the pod unchanged."""
    spec = SearchRunSpec(query="q", budget=dict(maxAgents=1, maxDepth=3, maxFanoutPerNode=1))
    d = reconcile(spec, None, {}, T0, "uid", job_namer=job_name)
    steps = [("detect", StepResult(intent="deep")), ("plan", StepResult(seeds=("a",))),
             ("t0", StepResult(found=False, note="established: x; open: y", proposals=(("b", "owned_by", "may cover y"),)))]
    for sid, r in steps:
        d = reconcile(spec, d.status, {sid: Observation(sid, 1, "succeeded", result=r)}, T0, "uid", job_namer=job_name)
    start = {a.step_id: a for a in d.start}["t0-0"]
    assert start.input["path"] == [{"doc": "a", "via": ""}]
    assert start.input["via"] == "owned_by" and start.input["why"] == "may cover y"
    assert start.input["note"] == "established: x; open: y"
    ctx = step_context(spec, "uid", "run", "s3://b/p", start)
    job = build_job(start, "run", "ns", "uid", spec, ctx.to_json(), OperatorConfig())
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    step = json.loads(env["SEARCHRUN_STEP"])["step"]
    assert step["note"] == "established: x; open: y" and step["path"] == [{"doc": "a", "via": ""}]


def test_the_context_budget_bounds_the_note(tmp_path):
    corpus = _corpus_file(tmp_path, ORG)
    rc, out, lineage, run_dir = _run(tmp_path, {"query": TEAM_Q, "corpus": {"uri": str(corpus)},
                                                "agent": {"type": "offline", "maxContextChars": 40}})
    assert rc == 0, out
    notes = [s.get("note") for s in lineage["status"]["steps"] if s["type"] == "traverse_node"]
    assert any(notes) and all(len(n or "") <= 40 for n in notes)
    assert all(len(o.get("note", "")) <= 40 for o in _outputs(run_dir).values())


def test_a_child_sharing_no_query_word_is_visited_when_it_is_the_only_way_on(tmp_path):
    docs = {
        "alpha": {"title": "Payments gateway", "type": "service",
                  "content": "The payments gateway charges cards for the shop.", "relationships": {"next": ["beta"]}},
        "beta": {"title": "Beta", "type": "note", "content": "Nothing in common here at all.",
                 "relationships": {"next": ["gamma"]}},
        "gamma": {"title": "Gamma", "type": "note", "content": "Still nothing in common.", "relationships": {}},
    }
    corpus = _corpus_file(tmp_path, docs)
    rc, out, lineage, _ = _run(tmp_path, {"query": "Which gateway charges cards for the shop and who runs it?",
                                          "corpus": {"uri": str(corpus)},
                                          "budget": {"maxAgents": 1, "maxDepth": 3, "maxSteps": 20}})
    assert rc == 0, out
    visited = [s["doc"] for s in lineage["status"]["steps"] if s["type"] == "traverse_node"]
    assert visited[:2] == ["alpha", "beta"], visited


def _shape(lineage: dict) -> list:
    keep = ("id", "type", "parents", "depth", "doc", "phase", "found", "decision", "tokens", "next", "via", "note",
            "tokenAllowance", "attempts")
    return [{k: s.get(k) for k in keep} for s in lineage["status"]["steps"]]


def test_the_same_manifest_gives_the_same_lineage_at_any_parallelism(tmp_path):
    example = yaml.safe_load((REPO / "examples" / "searchrun.yaml").read_text())
    shapes, answers = [], []
    for parallel in (1, 4, 8):
        spec = dict(example["spec"], budget=dict(example["spec"]["budget"], maxParallel=parallel))
        spec.pop("artifacts", None)
        rc, out, lineage, run_dir = _run(tmp_path, spec, name=f"p{parallel}")
        assert rc == 0, out
        shapes.append(_shape(lineage))
        answers.append(json.loads((run_dir / "report.json").read_text())["answers"])
    assert shapes[0] == shapes[1] == shapes[2]
    assert answers[0] == answers[1] == answers[2]


@pytest.mark.parametrize("bad", [{"note": 5}, {"note": "x" * 801}, {"proposals": "b"}, {"proposals": [{"doc": ""}]},
                                 {"proposals": [{"doc": "b", "via": "v" * 64}]}, {"proposals": [{"doc": "b", "why": 3}]}])
def test_a_malformed_or_oversized_note_or_proposal_is_rejected_naming_the_field(bad):
    field = next(iter(bad))
    with pytest.raises(ValueError, match=f"'{field}'"):
        StepResult.from_dict(bad)


def test_default_budgets_reach_an_answer_two_links_past_a_seed(tmp_path):
    """seed → middle → answer: the answer is at depth 3, inside the default maxDepth."""
    docs = {
        "mailer": {"title": "Mailer service", "type": "service",
                   "content": "The mailer sends password-reset emails to customers.", "relationships": {"owned_by": ["identity-team"]}},
        "identity-team": {"title": "Identity team", "type": "team", "content": "Engineers of the identity platform.",
                          "relationships": {"managed_by": ["dana"]}},
        "dana": {"title": "Dana Okafor", "type": "person", "content": "Engineering manager; approves on-call swaps.",
                 "relationships": {}},
        # better lexical matches than the team and the person: the seeds besides the mailer
        "newsletter": {"title": "Newsletter service", "type": "service",
                       "content": "Sends marketing emails; the service owns its own templates.", "relationships": {}},
        "password-policy": {"title": "Password reset policy", "type": "policy",
                            "content": "Password-reset emails expire after an hour; the service that sends them logs each one.",
                            "relationships": {}},
    }
    corpus = _corpus_file(tmp_path, docs)
    assert SearchRunSpec(query="q").budget.maxDepth >= 3
    rc, out, lineage, _ = _run(tmp_path, {"query": "Who manages the team that owns the service sending password-reset emails?",
                                          "corpus": {"uri": str(corpus)}})
    assert rc == 0, out
    depth = {s["doc"]: s["depth"] for s in lineage["status"]["steps"] if s["type"] == "traverse_node"}
    assert depth.get("dana") == 3, depth


def test_a_seed_answer_keeps_the_link_that_explains_it(tmp_path):
    """With seeds only (maxDepth 1, four of them), the identity team is a seed: judged as reached from the
    mailer, which links to it, it answers, and its evidence path starts at the mailer."""
    corpus = _corpus_file(tmp_path, ORG)
    spec = {"query": TEAM_Q, "corpus": {"uri": str(corpus)}, "budget": {"maxDepth": 1, "maxAgents": 4}}
    rc, out, lineage, run_dir = _run(tmp_path, spec)
    assert rc == 0, out
    answers = {a["docId"]: a for a in json.loads((run_dir / "report.json").read_text())["answers"]}
    assert "identity-team" in answers, out
    team = answers["identity-team"]
    assert team["depth"] == 1
    assert [(h["doc"], h["via"]) for h in team["path"]] == [("mailer", ""), ("identity-team", "owned_by")]


def test_a_seed_two_links_past_the_best_match_answers_with_the_path_that_leads_to_it(tmp_path):
    """The vendor is a seed, and the traversal from the archive reaches it again through the rig:
    no document is traversed twice, so the seed step judges it as reached by that path, and its
    evidence path is the whole of it."""
    corpus = _corpus_file(tmp_path, ARCHIVE)
    rc, out, lineage, run_dir = _run(tmp_path, {"query": CAMERA_Q, "corpus": {"uri": str(corpus)}})
    assert rc == 0, out
    docs = [s["doc"] for s in lineage["status"]["steps"] if s["type"] == "traverse_node"]
    assert len(docs) == len(set(docs)) and "optika" in docs
    answers = {a["docId"]: a for a in json.loads((run_dir / "report.json").read_text())["answers"]}
    assert list(answers) == ["optika"], out
    assert [(h["doc"], h["via"]) for h in answers["optika"]["path"]] == [
        ("map-archive", ""), ("imaging-rig", "photographed_by"), ("optika", "supplied_by")]
    assert "map-archive —photographed_by→ imaging-rig —supplied_by→ optika" in out

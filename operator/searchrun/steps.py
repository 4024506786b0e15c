"""The step entrypoint: what one Job (or one local subprocess) runs.

A step reads its context (the run's settings and the engine's input for this
step) from the ``SEARCHRUN_STEP`` environment variable, does its one job, writes
its output once to the artifact store, and hands the engine a small result: in
``--result-file`` (a Job's termination message) and as ``result.json`` beside
its output. Exit code 0 means the step succeeded.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from .api import AgentSpec, CorpusRef, StepType
from .engine import StepResult

STEP_ENV = "SEARCHRUN_STEP"
LINEAGE_NAME = "lineage.json"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
RESULT_LIMIT = 4000  # bytes: a termination message holds 4096


class StepError(RuntimeError):
    """A step failed in a way worth telling the user in one line."""


@dataclass
class StepContext:
    run_uid: str
    run_name: str
    query: str
    corpus: CorpusRef
    agent: AgentSpec
    store_uri: str
    step: dict[str, Any]

    @classmethod
    def from_json(cls, text: str) -> "StepContext":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise StepError(f"{STEP_ENV} is not valid JSON: {e}") from None
        try:
            run = data["run"]
            return cls(
                run_uid=str(run["uid"]),
                run_name=str(run.get("name", "")),
                query=str(run["query"]),
                corpus=CorpusRef.model_validate(run.get("corpus", {})),
                agent=AgentSpec.model_validate(run.get("agent", {})),
                store_uri=str(run["store"]),
                step=dict(data["step"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise StepError(f"{STEP_ENV} is missing or has a bad field: {e}") from None

    def to_json(self) -> str:
        return json.dumps(
            {
                "run": {
                    "uid": self.run_uid,
                    "name": self.run_name,
                    "query": self.query,
                    "corpus": self.corpus.model_dump(mode="json"),
                    "agent": self.agent.model_dump(mode="json", exclude_none=True),
                    "store": self.store_uri,
                },
                "step": self.step,
            },
            separators=(",", ":"),
        )


def _store(ctx: StepContext):
    from .artifacts import open_store

    return open_store(ctx.store_uri)


def _corpus(ctx: StepContext):
    from .artifacts import read_uri
    from .corpus import load_corpus

    return load_corpus(ctx.corpus.uri, ctx.corpus.format, base_dir=Path.cwd(), read_uri=read_uri)


def _agent(ctx: StepContext, corpus):
    from .agents import make_agent

    return make_agent(ctx.agent, corpus, os.environ)


def _cost(ctx: StepContext, usage) -> float:
    return float(getattr(usage, "cost_usd", 0.0) or 0.0)


def _doc_brief(corpus, doc_id: str) -> dict:
    d = corpus.get(doc_id)
    return {"id": doc_id, "title": getattr(d, "title", "") if d else ""}


def run_step(ctx: StepContext) -> StepResult:
    """Run one step and write its output; returns the result for the engine."""
    from .artifacts import read_uri, run_key, step_key

    s = ctx.step
    step_type, step_id, attempt = s["type"], s["stepId"], int(s["attempt"])
    allowance = int(s.get("tokenAllowance", 0))
    k = int(s.get("k", 2))
    store = _store(ctx)
    out_key = step_key(ctx.run_uid, step_id, attempt, "output.json")
    base = {"stepId": step_id, "type": step_type, "attempt": attempt, "parents": s.get("parents", []), "depth": s.get("depth", 0)}

    if step_type == StepType.detect_intent.value:
        agent = _agent(ctx, _corpus(ctx))
        intent, reason, usage = agent.detect_intent(ctx.query, allowance)
        uri = _put_output(store, out_key, {**base, "intent": intent, "reason": reason, "tokens": usage.tokens})
        return StepResult(tokens=usage.tokens, costUSD=_cost(ctx, usage), output=uri, intent=intent, decision=reason[:120])

    if step_type == StepType.plan_search.value:
        corpus = _corpus(ctx)
        seeds, usage = _agent(ctx, corpus).plan_seeds(ctx.query, k, allowance)
        uri = _put_output(store, out_key, {**base, "seeds": [_doc_brief(corpus, d) for d in seeds], "tokens": usage.tokens})
        return StepResult(tokens=usage.tokens, costUSD=_cost(ctx, usage), output=uri, seeds=tuple(seeds),
                          decision=f"{len(seeds)} seed(s)")

    if step_type == StepType.traverse_node.value:
        corpus = _corpus(ctx)
        doc = s.get("doc")
        if not doc or corpus.get(doc) is None:
            raise StepError(f"traverse_node: document {doc!r} is not in the corpus")
        d = _agent(ctx, corpus).traverse(ctx.query, doc, k, allowance)
        nxt = [c for c in d.next if corpus.get(c) is not None][: 2 * k]
        title = corpus.get(doc).title
        uri = _put_output(store, out_key, {**base, "doc": doc, "title": title, "found": d.found, "score": round(d.score, 4),
                                       "snippet": d.snippet, "next": nxt, "reason": d.reason, "tokens": d.usage.tokens})
        if d.found:
            decision = f"found ({d.score:.2f})"
        elif nxt:
            decision = f"not relevant ({d.score:.2f})"
        else:
            decision = "dead end"
        return StepResult(tokens=d.usage.tokens, costUSD=_cost(ctx, d.usage), output=uri, found=d.found, next=tuple(nxt), decision=decision)

    if step_type == StepType.simple_search.value:
        corpus = _corpus(ctx)
        hits, usage = _agent(ctx, corpus).simple_search(ctx.query, 5, allowance)
        answers = [{"docId": h.doc_id, "title": corpus.get(h.doc_id).title if corpus.get(h.doc_id) else "",
                    "score": round(h.score, 4), "snippet": h.snippet, "stepId": step_id, "depth": 0} for h in hits]
        uri = _put_output(store, out_key, {**base, "answers": answers, "tokens": usage.tokens})
        return StepResult(tokens=usage.tokens, costUSD=_cost(ctx, usage), output=uri, found=bool(answers),
                          answers=len(answers), decision=f"{len(answers)} answer(s)")

    if step_type == StepType.aggregate_results.value:
        best: dict[str, dict] = {}
        for parent_uri in s.get("inputs", []):
            out = _read_json(read_uri, parent_uri)
            if not out.get("found"):
                continue
            a = {"docId": out["doc"], "title": out.get("title", ""), "score": out.get("score", 0.0),
                 "snippet": out.get("snippet", ""), "stepId": out.get("stepId"), "depth": out.get("depth", 0)}
            if a["docId"] not in best or a["score"] > best[a["docId"]]["score"]:
                best[a["docId"]] = a
        answers = sorted(best.values(), key=lambda a: (-a["score"], a["docId"]))
        uri = _put_output(store, out_key, {**base, "answers": answers})
        return StepResult(output=uri, found=bool(answers), answers=len(answers), decision=f"{len(answers)} answer(s)")

    if step_type == StepType.create_report.value:
        from .report import render_report

        lineage = store.get_json(run_key(ctx.run_uid, LINEAGE_NAME))
        answers: list = []
        for parent_uri in s.get("inputs", []):
            answers.extend(_read_json(read_uri, parent_uri).get("answers", []))
        corpus = _corpus(ctx)
        data = report_data(lineage, answers, corpus)
        store.put_json(run_key(ctx.run_uid, REPORT_JSON), data, overwrite=True)
        uri = store.put_bytes(run_key(ctx.run_uid, REPORT_HTML), render_report(data).encode(), content_type="text/html", overwrite=True)
        _put_output(store, out_key, {**base, "report": uri, "answers": len(answers)})
        return StepResult(output=uri, answers=len(answers), decision=f"report with {len(answers)} answer(s)")

    raise StepError(f"unknown step type {step_type!r}")


def _put_output(store, key: str, obj: dict) -> str:
    """A step's output may be rewritten by a retried pod of the same Job; its result.json,
    written last and once, is the commit that the engine reads."""
    return store.put_json(key, obj, overwrite=True)


def _read_json(read_uri, uri: str) -> dict:
    try:
        data = json.loads(read_uri(uri))
    except ValueError as e:
        raise StepError(f"step output {uri} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise StepError(f"step output {uri} is not a JSON object")
    return data


def report_data(lineage: Mapping, answers: list, corpus=None) -> dict:
    """Shape the lineage and answers for the HTML report."""
    run, status = lineage.get("run", {}), lineage.get("status", {})
    # The report is the run's last step: while it is written the run is finishing, not running.
    phase = "Succeeded" if status.get("phase") == "Running" else status.get("phase")
    steps = status.get("steps", [])
    has_children = {p for st in steps for p in st.get("parents", []) if st.get("type") == StepType.traverse_node.value}
    out_steps = []
    for st in steps:
        doc = st.get("doc")
        title = ""
        if doc and corpus is not None and corpus.get(doc) is not None:
            title = corpus.get(doc).title
        is_traverse = st.get("type") == StepType.traverse_node.value
        out_steps.append({
            "id": st["id"], "type": st["type"], "parents": st.get("parents", []), "depth": st.get("depth", 0),
            "doc": doc, "docTitle": title, "phase": st.get("phase"), "found": st.get("found"),
            "deadEnd": bool(is_traverse and st.get("phase") == "Succeeded" and not st.get("found") and st["id"] not in has_children),
            "tokens": st.get("tokens", 0), "costUSD": st.get("costUSD", 0.0), "attempts": st.get("attempts", 0),
            "decision": st.get("decision") or st.get("message") or "",
        })
    return {
        "run": {"name": run.get("name"), "uid": run.get("uid"), "query": run.get("query"), "intent": status.get("intent"),
                "phase": phase, "stoppedBy": status.get("stoppedBy"), "limitsHit": status.get("limitsHit", []),
                "fallback": status.get("fallback"), "startedAt": status.get("startedAt"), "finishedAt": status.get("finishedAt")},
        "answers": answers,
        "steps": out_steps,
        "budget": {"used": status.get("budgetUsed", {}), "limits": run.get("budget", {})},
    }


def _write_result(path: Optional[str], payload: dict) -> None:
    if not path:
        return
    text = json.dumps(payload, separators=(",", ":"))
    if len(text.encode()) > RESULT_LIMIT:
        # Keep the decision, drop the long tail of proposals.
        payload = {**payload, "next": payload.get("next", [])[:4], "seeds": payload.get("seeds", [])[:4]}
        text = json.dumps(payload, separators=(",", ":"))[:RESULT_LIMIT]
    try:
        Path(path).write_text(text)
    except OSError:
        pass


def _result_key(ctx: StepContext) -> str:
    from .artifacts import result_key

    return result_key(ctx.run_uid, ctx.step["stepId"], int(ctx.step["attempt"]))


def _committed_result(ctx: StepContext) -> Optional[dict]:
    from .artifacts import ArtifactNotFound

    try:
        return _store(ctx).get_json(_result_key(ctx))
    except ArtifactNotFound:
        return None


def main(argv: list[str]) -> int:
    """``searchrun step [--result-file PATH]``: run the step described in $SEARCHRUN_STEP."""
    import argparse

    ap = argparse.ArgumentParser(prog="searchrun step", description="run one step (what a Job runs)")
    default_result = "/dev/termination-log" if Path("/dev/termination-log").exists() else None
    ap.add_argument("--result-file", default=default_result, help="where to write the small result for the engine")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        text = os.environ.get(STEP_ENV)
        if not text:
            raise StepError(f"{STEP_ENV} is not set: this command is run by the executors, not by hand")
        ctx = StepContext.from_json(text)
        done = _committed_result(ctx)
        if done is not None:  # an earlier pod of this Job finished the step and died before exiting
            _write_result(args.result_file, done)
            print(json.dumps(done, separators=(",", ":")))
            return 0
        forced = os.environ.get("SEARCHRUN_FAIL_STEPS", "")
        if forced and ctx.step.get("stepId") in forced.split(","):
            raise StepError(f"forced failure of step {ctx.step.get('stepId')} (SEARCHRUN_FAIL_STEPS)")
        result = run_step(ctx)
        payload = result.to_dict()
        payload["seconds"] = round(time.monotonic() - t0, 4)
        # result.json is the step's commit: the operator reads nothing else. A step that cannot
        # store it has not finished; it fails (and is retried) rather than exit 0 without it.
        _store(ctx).put_json(_result_key(ctx), payload)
        _write_result(args.result_file, payload)
        print(json.dumps(payload, separators=(",", ":")))
        return 0
    except Exception as e:  # one line for the user; the engine records it
        msg = f"{type(e).__name__}: {e}"[:1000]
        print(f"step failed: {msg}", file=sys.stderr)
        _write_result(args.result_file, {"error": msg})
        return 1

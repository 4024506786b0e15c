"""create_report: the run's HTML report and its data, from the lineage and the answers."""

from __future__ import annotations

from typing import Mapping

from ..api import Phase
from ..artifacts import run_key
from ..engine.types import StepResult
from .. import report  # the module: it imports the step registry, which imports this one
from . import registry
from .context import LINEAGE_NAME, REPORT_HTML, REPORT_JSON
from .kind import StepKind


class CreateReport(StepKind):
    type = "create_report"
    needs_lineage = True
    report_row = (2, 1, "report")

    def record(self, run, step, result):
        run.st.reportURI = result.output

    def expand(self, run, step, ok):
        if ok:
            run.finish(Phase.Succeeded, run.summary_message())
        else:
            run.finish(Phase.Failed, f"create_report failed: {step.message}")

    def run(self, ctx, io):
        store = io.store
        lineage = store.get_json(run_key(ctx.run_uid, LINEAGE_NAME))
        answers: list = []
        for parent_uri in ctx.step.get("inputs", []):
            answers.extend(io.read_json(parent_uri).get("answers", []))
        data = report_data(lineage, answers, io.corpus)
        store.put_json(run_key(ctx.run_uid, REPORT_JSON), data, overwrite=True)
        uri = store.put_bytes(run_key(ctx.run_uid, REPORT_HTML), report.render_report(data).encode(), content_type="text/html",
                              overwrite=True)
        io.put_output({**io.base, "report": uri, "answers": len(answers)})
        return StepResult(output=uri, answers=len(answers), decision=_decision(len(answers)))


KIND = CreateReport()
FAN_IN = "aggregate_results"


def _decision(answers: int) -> str:
    return f"report with {answers} answer(s)"


def report_data(lineage: Mapping, answers: list, corpus=None) -> dict:
    """Shape the lineage and answers for the HTML report."""
    run, status = lineage.get("run", {}), lineage.get("status", {})
    # The report is the run's last step: while it is written the run is finishing, not running.
    phase = "Succeeded" if status.get("phase") == "Running" else status.get("phase")
    steps = status.get("steps", [])
    kinds = {t: registry.kind_of(t) for t in {st.get("type") for st in steps} if registry.known(t)}
    has_children = {p for st in steps if st.get("type") in kinds and kinds[st["type"]].search for p in st.get("parents", [])}
    out_steps = []
    for st in steps:
        doc = st.get("doc")
        title = ""
        if doc and corpus is not None and corpus.get(doc) is not None:
            title = corpus.get(doc).title
        kind = kinds.get(st.get("type"))
        search = bool(kind and kind.search)
        row = kind.report_row if kind and kind.report_row else None
        # A fan-in repeats its parents' answers: only the steps that found one count as finders.
        found = None if st.get("type") == FAN_IN else st.get("found")
        step_phase, decision = st.get("phase"), st.get("decision") or st.get("message") or ""
        if st.get("type") == CreateReport.type and step_phase in ("Running", "Pending"):
            # This very step, while it writes the report: show what it is about to record.
            step_phase, decision = "Succeeded", decision or _decision(len(answers))
        out_steps.append({
            "id": st["id"], "type": st["type"], "parents": st.get("parents", []), "depth": st.get("depth", 0),
            "doc": doc, "docTitle": title, "phase": step_phase, "found": found,
            "deadEnd": bool(search and st.get("phase") == "Succeeded" and not st.get("found") and st["id"] not in has_children),
            "tokens": st.get("tokens", 0), "costUSD": st.get("costUSD", 0.0), "attempts": st.get("attempts", 0),
            "decision": decision,
            **({"row": [row[0], row[1]], "rowLabel": row[2]} if row else {}),
        })
    return {
        "run": {"name": run.get("name"), "uid": run.get("uid"), "query": run.get("query"), "intent": status.get("intent"),
                "phase": phase, "stoppedBy": status.get("stoppedBy"), "limitsHit": status.get("limitsHit", []),
                "fallback": status.get("fallback"), "escalated": status.get("escalated"), "startedAt": status.get("startedAt"), "finishedAt": status.get("finishedAt")},
        "answers": answers,
        "steps": out_steps,
        "budget": {"used": status.get("budgetUsed", {}), "limits": run.get("budget", {})},
    }

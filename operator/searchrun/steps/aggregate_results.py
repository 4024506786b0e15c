"""aggregate_results: the fan-in over the traversal steps that found an answer.

Answers are ranked by their path-aware score (what the document covers of the question
together with the path that led to it); a document found twice keeps its best finding; of an
answer and a later one whose evidence path went through it, the later one is kept when its path
names more of the question's relations (``support``) and it does not cover clearly less
(``KEEP_RATIO``), or when it gives an open term itself and scores about as well
(``PASSED_RATIO``): "who leads the team that ..." is the lead, not the team; a later one the agent marks ``pastAnswer`` (only the next thing along the path) is
dropped otherwise, and the earlier one kept; answers
that cover clearly less of the question than the best one are dropped, and so are those, of
about the same score, whose evidence path names fewer of the question's relations than another's
(the agent's ``support``, see ``agents/link_support.py``). Each keeps its evidence path (seed → …
→ answer).
"""

from __future__ import annotations

from ..engine.types import StepResult
from .kind import StepKind
from .simple_search import SimpleSearch

# An answer scoring below this share of the best answer's score covers clearly less of the
# question: it is dropped (the lineage keeps the step that found it).
KEEP_RATIO = 0.85
MAX_ANSWERS = 5
# An answer that a later answer's evidence path went through is dropped when the later one, not
# marked pastAnswer, scores at least this share of it: the path went on from it and covered more.
PASSED_RATIO = 0.95


class AggregateResults(StepKind):
    type = "aggregate_results"
    report_row = (2, 0, "fan-in")
    record = SimpleSearch.record
    expand = SimpleSearch.expand

    def run(self, ctx, io):
        best: dict[str, dict] = {}
        for parent_uri in ctx.step.get("inputs", []):
            out = io.read_json(parent_uri)
            if not out.get("found"):
                continue
            a = {"docId": out["doc"], "title": out.get("title", ""), "score": out.get("score", 0.0),
                 "snippet": out.get("snippet", ""), "stepId": out.get("stepId"), "depth": out.get("depth", 0),
                 "path": out.get("path") or [{"doc": out["doc"], "title": out.get("title", ""), "via": ""}],
                 "support": int(out.get("support") or 0), "pastAnswer": bool(out.get("pastAnswer"))}
            if a["docId"] not in best or _rank(a) < _rank(best[a["docId"]]):
                best[a["docId"]] = a
        ranked = sorted(best.values(), key=_rank)
        answers = [{k: v for k, v in a.items() if k not in ("support", "pastAnswer")} for a in select(ranked)]
        kept = {a["docId"] for a in answers}
        dropped = len(ranked) - len(answers)
        uri = io.put_output({**io.base, "answers": answers, "dropped": [a["docId"] for a in ranked if a["docId"] not in kept]})
        decision = f"{len(answers)} answer(s)" + (f"; {dropped} weaker dropped" if dropped else "")
        return StepResult(output=uri, found=bool(answers), answers=len(answers), decision=decision)


def select(found: list[dict]) -> list[dict]:
    """The answers worth reporting, best first, from the findings (one per document)."""
    ranked = sorted(found, key=_rank)
    by_doc = {a["docId"]: a for a in ranked}
    drop = set()
    for b in ranked:  # b's evidence path went through a, another answer
        for h in (b.get("path") or [])[:-1]:
            a = by_doc.get(h.get("doc")) if isinstance(h, dict) else None
            if a is None or a is b:
                continue
            sa, sb = int(a.get("support") or 0), int(b.get("support") or 0)
            if (sb > sa and _score(b) >= KEEP_RATIO * _score(a)) or (
                    not b.get("pastAnswer") and _score(b) >= PASSED_RATIO * _score(a)):
                drop.add(a["docId"])  # the path went on from a and covered the relation asked
            elif b.get("pastAnswer"):
                drop.add(b["docId"])  # only the next thing past a, through a link the question does not name
    ranked = [a for a in ranked if a["docId"] not in drop] or ranked[:1]
    top = _score(ranked[0]) if ranked else 0.0
    band = [a for a in ranked if _score(a) >= KEEP_RATIO * top]
    # of answers about as good, those whose evidence path names more of the question's relations
    # (the agent's ``support``; 0 when it does not say, which changes nothing)
    most = max((int(a.get("support") or 0) for a in band), default=0)
    return [a for a in band if int(a.get("support") or 0) >= most][:MAX_ANSWERS]


def _score(a: dict) -> float:
    return float(a.get("score") or 0.0)


def _rank(a: dict) -> tuple:
    """Best first: higher score, then the shorter path, then the step and document ids."""
    return (-_score(a), int(a.get("depth") or 0), str(a.get("stepId") or ""), a["docId"])


KIND = AggregateResults()

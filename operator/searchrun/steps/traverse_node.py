"""traverse_node: one agent looks at one document, with the path that led to it: does it (with
that path) answer, and where next? Only the parent's note travels down to a child, and only
the answer (with its evidence path) travels up to the fan-in: sub-agents keep their own context."""

from __future__ import annotations

from ..agents.base import Hop, PathContext
from ..api import Proposal
from ..clip import clip
from ..engine.types import StepResult
from .context import PermanentStepError, StepError
from .kind import StepKind

# The most ancestors a step is told about (a path is at most maxDepth - 1 long, and maxDepth <= 5).
MAX_PATH = 8


class TraverseNode(StepKind):
    type = "traverse_node"
    search = True

    def k(self, budget):
        return budget.maxFanoutPerNode

    def extra_input(self, run, step):
        """The path from the seed (ancestors first to last, each with the link followed into it)
        and the parent's note."""
        path, note = [], ""
        parent = run.idx.by_id.get(step.parents[0]) if step.parents else None
        if parent is not None and parent.type == self.type:
            note = parent.note or ""
            p = parent
            while p is not None and p.type == self.type and len(path) < MAX_PATH:
                path.append({"doc": p.doc, "via": p.via or ""})
                p = run.idx.by_id.get(p.parents[0]) if p.parents else None
            path.reverse()
        return {"path": path, "via": step.via or "", "why": step.why or "", "note": note}

    def record(self, run, step, result):
        limit = 2 * run.b.maxFanoutPerNode
        proposals = list(result.proposals) or [(d, "", "") for d in result.next]
        step.proposals = [Proposal(doc=d, via=v, why=w) for d, v, w in proposals[:limit]]
        step.next = [p.doc for p in step.proposals]
        step.note = result.note[: run.spec.agent.maxContextChars] or None
        step.score = result.score
        run.idx.note_score(step)

    def expand(self, run, step, ok):
        if not (ok and step.proposals):
            return
        seen: set[str] = set()
        fresh = []
        for p in step.proposals:
            if p.doc not in run.idx.visited and p.doc not in seen:
                seen.add(p.doc)
                fresh.append((p.doc, p.via, p.why))
        if not fresh:
            return
        if step.depth + 1 > run.b.maxDepth:
            run.note_limit("maxDepth")
            return
        added = run.spawn(step, fresh, run.b.maxFanoutPerNode, "maxFanoutPerNode", lambda j: f"{step.id}-{j}",
                          depth=step.depth + 1)
        if added:
            step.decision = (step.decision + "; " if step.decision else "") + f"deeper: {added}"
            run.touch(step)
            run.event("FanOut", f"fan-out of {added} from {step.id} at depth {step.depth}")

    def run(self, ctx, io):
        s = ctx.step
        doc = s.get("doc")
        corpus = io.corpus
        if not doc or corpus.get(doc) is None:
            raise PermanentStepError(f"traverse_node: document {doc!r} is not in the corpus")
        hops = tuple(Hop(h["doc"], io.title(h["doc"]), h.get("via") or None) for h in s.get("path", []) if h.get("doc"))
        path = PathContext(hops=hops, relation=s.get("via") or None, note=s.get("note", ""))
        k, limit = ctx.k, ctx.agent.maxContextChars
        d = io.agent.traverse(ctx.query, doc, k, ctx.allowance, path=path, max_note_chars=limit)
        if len(d.note) > limit:
            raise StepError(f"the agent's note has {len(d.note)} characters; agent.maxContextChars is {limit}")
        proposals = [p for p in (d.proposals or ()) if corpus.get(p.doc_id) is not None][: 2 * k]
        if not proposals:  # an agent without proposals: its ranked ids
            proposals = [_Plain(c) for c in d.next if corpus.get(c) is not None][: 2 * k]
        title = corpus.get(doc).title
        evidence = [{"doc": h.doc_id, "title": h.title, "via": h.relation or ""} for h in hops]
        implied = () if hops else tuple(getattr(d, "implied", ()) or ())  # a seed judged as reached by a link
        into = [""] + [h.relation or "" for h in implied[:-1]]  # each implied hop names the link out of it
        evidence += [{"doc": h.doc_id, "title": h.title, "via": v} for h, v in zip(implied, into)]
        evidence.append({"doc": doc, "title": title, "via": path.relation or (implied[-1].relation if implied else "") or ""})
        uri = io.put_output({**io.base, "doc": doc, "title": title, "found": d.found,
                             "score": round(d.score, 4), "snippet": d.snippet, "reason": d.reason, "note": d.note,
                             "path": evidence, "next": [p.doc_id for p in proposals], "rejected": d.rejected,
                             "proposals": [{"doc": p.doc_id, "via": p.relation, "why": p.reason} for p in proposals],
                             "tokens": d.usage.tokens, "support": int(getattr(d, "support", 0) or 0),
                             "pastAnswer": bool(getattr(d, "past_answer", False))})
        if d.rejected:  # the model never gave a valid reply: a dead end that says why
            decision = clip(f"dead end: {d.rejected}", 200)
        elif d.found:
            decision = f"found ({d.score:.2f})"
        elif proposals:
            decision = f"not an answer ({d.score:.2f})"
        else:
            decision = "dead end"
        return StepResult(tokens=d.usage.tokens, costUSD=d.usage.cost_usd, output=uri, found=d.found,
                          next=tuple(p.doc_id for p in proposals), note=d.note,
                          proposals=tuple((p.doc_id, p.relation[:63], clip(p.reason, 160)) for p in proposals),
                          decision=decision, score=min(1.0, max(0.0, round(float(d.score), 4))))


class _Plain:
    """A proposal from an agent that only ranks ids."""

    def __init__(self, doc_id: str):
        self.doc_id, self.relation, self.reason = doc_id, "", ""


KIND = TraverseNode()

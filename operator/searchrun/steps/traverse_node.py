"""traverse_node: one agent looks at one document: does it answer, and where next?"""

from __future__ import annotations

from ..engine.types import StepResult
from .context import StepError
from .kind import StepKind


class TraverseNode(StepKind):
    type = "traverse_node"
    search = True

    def k(self, budget):
        return budget.maxFanoutPerNode

    def record(self, run, step, result):
        step.next = list(result.next)[: 2 * run.b.maxFanoutPerNode]

    def expand(self, run, step, ok):
        if not (ok and step.next):
            return
        fresh = [d for d in dict.fromkeys(step.next) if d not in run.idx.visited]
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
        doc = ctx.step.get("doc")
        corpus = io.corpus
        if not doc or corpus.get(doc) is None:
            raise StepError(f"traverse_node: document {doc!r} is not in the corpus")
        k = ctx.k
        d = io.agent.traverse(ctx.query, doc, k, ctx.allowance)
        nxt = [c for c in d.next if corpus.get(c) is not None][: 2 * k]
        uri = io.put_output({**io.base, "doc": doc, "title": corpus.get(doc).title, "found": d.found,
                             "score": round(d.score, 4), "snippet": d.snippet, "next": nxt, "reason": d.reason,
                             "tokens": d.usage.tokens})
        if d.found:
            decision = f"found ({d.score:.2f})"
        elif nxt:
            decision = f"not relevant ({d.score:.2f})"
        else:
            decision = "dead end"
        return StepResult(tokens=d.usage.tokens, costUSD=d.usage.cost_usd, output=uri, found=d.found, next=tuple(nxt),
                          decision=decision)


KIND = TraverseNode()

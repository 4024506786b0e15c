"""Search-quality benchmark (issue 11). Prints a table per corpus; not a test.

    .venv/bin/python bench/bench_search.py                     # every question set
    .venv/bin/python bench/bench_search.py --corpus org --question org-h2-1
    .venv/bin/python bench/bench_search.py --set dev           # only the dev set (bench/search/dev/)
    .venv/bin/python bench/bench_search.py --budget maxDepth=3 --agent relevanceThreshold=0.3 --json
    .venv/bin/python bench/bench_search.py --check             # the question sets themselves, no runs

Question sets are ``bench/search/<set>/<name>.questions.yaml`` (set = heldout, dev or sample);
each names its corpus. ``bench/search/heldout/`` is for measuring only: do not tune an agent on it.

Every question is a real run: a SearchRun manifest (default budgets unless ``--budget``,
``agent: {type: offline}``, the corpus as a file path) run with ``searchrun run --store
file://TMP --quiet``, one store per question. The answers are read from the run's
``report.json`` (``answers``: docId, score, depth, and ``path`` when the agent gives one;
other fields are ignored), steps and tokens from its ``budget.used``, the intent from ``run``.

For comparison, computed here from the project's own BM25 (``BM25Index.rank``):
single-shot BM25 top-1 / top-3, and BM25 + personalized PageRank over the corpus's links
(the personalization vector is the normalised BM25 scores of the top ``--ppr-seeds``
documents; alpha 0.85, 50 power iterations, dangling mass back to the seeds).

hit = any correct answer among the run's answers; precision = correct answers / answers
returned (0 when there are none); "deep@>=2" = of the multi-hop questions hit, the share
with a correct answer found at depth 2 or deeper (seeds are depth 1, simple search 0);
"visited" = a traverse step read a correct document (whether or not it was judged an answer),
which tells "never reached" from "reached and rejected".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

ROOT = Path(__file__).resolve().parent.parent
SETS_DIR = ROOT / "bench" / "search"
SET_ORDER = ("heldout", "dev", "sample")
MULTI_HOP = ("hop1", "hop2")


# ------------------------------------------------------------------ question sets


@dataclass
class Question:
    id: str
    query: str
    answers: list[str]
    kind: str
    path: list[str] = field(default_factory=list)


@dataclass
class QuestionSet:
    name: str
    set: str
    corpus_uri: str  # what the manifest gets: an absolute path or builtin:...
    questions: list[Question]
    source: Path


def load_sets(only_set: Optional[str] = None) -> list[QuestionSet]:
    out = []
    for s in SET_ORDER:
        if only_set and s != only_set:
            continue
        for f in sorted((SETS_DIR / s).glob("*.questions.yaml")):
            data = yaml.safe_load(f.read_text())
            corpus = str(data["corpus"])
            uri = corpus if corpus.startswith("builtin:") else str((f.parent / corpus).resolve())
            qs = [Question(str(q["id"]), str(q["query"]), [str(a) for a in q["answers"]], str(q["kind"]),
                           [str(p) for p in q.get("path", [])]) for q in data["questions"]]
            out.append(QuestionSet(f.name[: -len(".questions.yaml")], s, uri, qs, f))
    return out


def load_corpus(uri: str):
    from searchrun.corpus import load_corpus as _load

    return _load(uri if uri.startswith("builtin:") else f"file://{uri}")


# ------------------------------------------------------------------ baselines


class Baselines:
    """BM25 top-k and BM25 + personalized PageRank, with the project's own BM25."""

    def __init__(self, corpus, ppr_seeds: int = 5, alpha: float = 0.85, iterations: int = 50):
        from searchrun.agents.offline import BM25Index

        self.corpus = corpus
        self.index = BM25Index(corpus)
        self.ppr_seeds, self.alpha, self.iterations = ppr_seeds, alpha, iterations
        self.ids = list(corpus.documents)
        self.out = {d: list(corpus.children(d)) for d in self.ids}

    def terms(self, query: str) -> list[str]:
        try:
            from searchrun.agents.offline import query_terms
        except ImportError:  # the agent's internals moved: a plain tokenisation still ranks
            return list(dict.fromkeys(re.findall(r"\w+", query.lower())))
        return query_terms(query)

    def bm25(self, query: str) -> list[tuple[str, float]]:
        return list(self.index.rank(self.terms(query)))

    def ppr(self, query: str) -> list[str]:
        ranked = self.bm25(query)
        seeds = [(d, s) for d, s in ranked[: self.ppr_seeds] if s > 0]
        if not seeds:
            return []
        total = sum(s for _, s in seeds)
        p = {d: s / total for d, s in seeds}
        r = dict(p)
        a = self.alpha
        for _ in range(self.iterations):
            nxt = {d: (1 - a) * w for d, w in p.items()}
            dangling = 0.0
            for u, mass in r.items():
                kids = self.out.get(u) or []
                if not kids:
                    dangling += mass
                    continue
                share = a * mass / len(kids)
                for v in kids:
                    nxt[v] = nxt.get(v, 0.0) + share
            for d, w in p.items():
                nxt[d] += a * dangling * w
            r = nxt
        order = {d: i for i, (d, _) in enumerate(ranked)}
        n = len(self.ids)
        pos = {d: i for i, d in enumerate(self.ids)}
        return [d for d, _ in sorted(r.items(), key=lambda x: (-x[1], order.get(x[0], n), pos.get(x[0], n)))]


# ------------------------------------------------------------------ one run


def parse_overrides(items: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--{what} {item!r}: expected key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def manifest_for(q: Question, corpus_uri: str, budget: dict, agent: dict) -> dict:
    name = re.sub(r"[^a-z0-9-]+", "-", q.id.lower()).strip("-")[:50] or "q"
    spec: dict[str, Any] = {"query": q.query, "corpus": {"uri": corpus_uri}, "agent": {"type": "offline", **agent}}
    if budget:
        spec["budget"] = dict(budget)
    return {"apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun", "metadata": {"name": name}, "spec": spec}


def run_question(q: Question, corpus_uri: str, budget: dict, agent: dict, keep: Optional[Path] = None) -> dict:
    """One ``searchrun run``; returns what the report says (or the error)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-search-", dir=keep)) if keep else Path(tempfile.mkdtemp(prefix="bench-search-"))
    mpath = tmp / "searchrun.yaml"
    mpath.write_text(yaml.safe_dump(manifest_for(q, corpus_uri, budget, agent), sort_keys=False))
    store = tmp / "store"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "searchrun", "run", str(mpath), "--store", f"file://{store}", "--quiet"],
                          capture_output=True, text=True, cwd=str(tmp), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.monotonic() - t0
    out: dict[str, Any] = {"wall": round(wall, 2), "rc": proc.returncode}
    reports = sorted(store.glob("runs/*/report.json"))
    if not reports:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        out["error"] = " | ".join(tail) or f"exit code {proc.returncode}, no report.json"
        out.update(answers=[], visited=[], steps=None, tokens=None, intent=None)
        _cleanup(tmp, keep)
        return out
    rep = json.loads(reports[-1].read_text())
    run = rep.get("run") or {}
    used = (rep.get("budget") or {}).get("used") or {}
    answers = []
    for a in rep.get("answers") or []:
        if not isinstance(a, dict) or "docId" not in a:
            continue
        ans = {"docId": str(a["docId"]), "score": a.get("score"), "depth": a.get("depth")}
        if a.get("path") is not None:
            ans["path"] = a["path"]
        answers.append(ans)
    visited = [str(st["doc"]) for st in rep.get("steps") or [] if isinstance(st, dict) and st.get("doc")]
    out.update(answers=answers, visited=visited, steps=used.get("steps"), tokens=used.get("tokens"), intent=run.get("intent"),
               phase=run.get("phase"), stoppedBy=run.get("stoppedBy"))
    if keep:
        out["store"] = str(store)
    _cleanup(tmp, keep)
    return out


def _cleanup(tmp: Path, keep: Optional[Path]) -> None:
    if keep:
        return
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


def _path_ids(path: Any) -> list[str]:
    """An answer's evidence path as document ids, whatever its shape (ids, or dicts with an id)."""
    if not isinstance(path, list):
        return []
    out = []
    for p in path:
        if isinstance(p, dict):
            p = p.get("docId") or p.get("doc") or p.get("id")
        if p is not None:
            out.append(str(p))
    return out


def score_row(q: Question, res: dict, base: Baselines) -> dict:
    correct = set(q.answers)
    answers = res.get("answers", [])
    got = [a for a in answers if a["docId"] in correct]
    ranked = [d for d, _ in base.bm25(q.query)]
    ppr = base.ppr(q.query)
    return {
        "id": q.id, "kind": q.kind, "query": q.query, "expected": q.answers,
        "hit": bool(got), "precision": (len(got) / len(answers)) if answers else 0.0,
        "visited": bool(correct & set(res.get("visited") or [])),
        "answers": answers, "correctDepths": [a.get("depth") for a in got],
        "steps": res.get("steps"), "tokens": res.get("tokens"), "intent": res.get("intent"),
        "phase": res.get("phase"), "error": res.get("error"), "wall": res.get("wall"),
        "bm25Top1": bool(set(ranked[:1]) & correct), "bm25Top3": bool(set(ranked[:3]) & correct),
        "pprTop1": bool(set(ppr[:1]) & correct), "pprTop3": bool(set(ppr[:3]) & correct),
        "bm25Top3Ids": ranked[:3], "pprTop3Ids": ppr[:3],
        **({"store": res["store"]} if res.get("store") else {}),
    }


def summarise(rows: list[dict]) -> dict:
    n = len(rows) or 1
    multi = [r for r in rows if r["kind"] in MULTI_HOP]
    multi_hits = [r for r in multi if r["hit"]]
    deep = [r for r in multi_hits if any(isinstance(d, int) and d >= 2 for d in r["correctDepths"])]
    lookups = [r for r in rows if r["kind"] == "lookup"]

    def rate(key, rs=rows):
        return sum(1 for r in rs if r[key]) / (len(rs) or 1)

    by_kind = {}
    for kind in ("lookup", "hop1", "hop2", "broad"):
        rs = [r for r in rows if r["kind"] == kind]
        if rs:
            by_kind[kind] = {"n": len(rs), "hit": rate("hit", rs), "bm25Top3": rate("bm25Top3", rs), "pprTop3": rate("pprTop3", rs)}
    steps = [r["steps"] for r in rows if isinstance(r["steps"], int)]
    tokens = [r["tokens"] for r in rows if isinstance(r["tokens"], int)]
    return {
        "questions": len(rows), "hitRate": rate("hit"), "meanPrecision": sum(r["precision"] for r in rows) / n,
        "multiHop": len(multi), "multiHopHits": len(multi_hits), "multiHopVisited": sum(1 for r in multi if r["visited"]),
        "multiHopHitsDeep": (len(deep) / len(multi_hits)) if multi_hits else 0.0,
        "lookupsSimple": sum(1 for r in lookups if r["intent"] == "simple"), "lookups": len(lookups),
        "bm25Top1": rate("bm25Top1"), "bm25Top3": rate("bm25Top3"), "pprTop1": rate("pprTop1"), "pprTop3": rate("pprTop3"),
        "meanSteps": (sum(steps) / len(steps)) if steps else None, "meanTokens": (sum(tokens) / len(tokens)) if tokens else None,
        "byKind": by_kind, "errors": sum(1 for r in rows if r["error"]),
    }


# ------------------------------------------------------------------ printing


def _short(doc_id: str, width: int = 26) -> str:
    return doc_id if len(doc_id) <= width else doc_id[: width - 1] + "…"


def print_table(qs: QuestionSet, rows: list[dict], summ: dict, out=sys.stdout) -> None:
    p = lambda s="": print(s, file=out)  # noqa: E731
    p(f"## {qs.name} ({qs.set}, {len(qs.questions)} questions, corpus {Path(qs.corpus_uri).name})")
    p()
    p("| id | kind | hit | prec | correct@depth | answers (docId:depth; * = correct) | visited | steps | tokens | intent | BM25 t1/t3 | PPR t1/t3 |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|")
    yn = lambda b: "y" if b else "."  # noqa: E731
    for r in rows:
        correct = set(r["expected"])
        ans = ", ".join(f"{'*' if a['docId'] in correct else ''}{_short(a['docId'])}:{a.get('depth')}" for a in r["answers"]) or "-"
        if r["error"]:
            ans = f"ERROR {r['error'][:80]}"
        depths = ",".join(str(d) for d in r["correctDepths"]) or "-"
        p(f"| {r['id']} | {r['kind']} | {'HIT' if r['hit'] else 'miss'} | {r['precision']:.2f} | {depths} | {ans} | {yn(r['visited'])} | "
          f"{r['steps'] if r['steps'] is not None else '-'} | {r['tokens'] if r['tokens'] is not None else '-'} | "
          f"{r['intent'] or '-'} | {yn(r['bm25Top1'])}/{yn(r['bm25Top3'])} | {yn(r['pprTop1'])}/{yn(r['pprTop3'])} |")
        for a in r["answers"]:
            ids = _path_ids(a.get("path"))
            if ids:
                p(f"|  |  |  |  |  | path of {_short(a['docId'])}: {' → '.join(ids)} |  |  |  |  |  |  |")
    p()
    s = summ
    pct = lambda x: f"{100 * x:.0f}%"  # noqa: E731
    p("| summary | deep run | BM25 top-1 | BM25 top-3 | BM25+PPR top-1 | BM25+PPR top-3 |")
    p("|---|---|---|---|---|---|")
    p(f"| hit rate | {pct(s['hitRate'])} | {pct(s['bm25Top1'])} | {pct(s['bm25Top3'])} | {pct(s['pprTop1'])} | {pct(s['pprTop3'])} |")
    for kind, k in s["byKind"].items():
        p(f"| hit rate, {kind} ({k['n']}) | {pct(k['hit'])} | | {pct(k['bm25Top3'])} | | {pct(k['pprTop3'])} |")
    p(f"| mean precision | {s['meanPrecision']:.2f} | | | | |")
    p(f"| multi-hop hits with a correct answer at depth >= 2 | {s['multiHopHitsDeep'] and pct(s['multiHopHitsDeep']) or '0%'} "
      f"({s['multiHopHits']} hits of {s['multiHop']}) | | | | |")
    p(f"| lookups sent to simple search | {s['lookupsSimple']}/{s['lookups']} | | | | |")
    p(f"| multi-hop questions whose answer a traverse step visited | {s['multiHopVisited']}/{s['multiHop']} | | | | |")
    ms = f"{s['meanSteps']:.1f}" if s["meanSteps"] is not None else "-"
    mt = f"{s['meanTokens']:.0f}" if s["meanTokens"] is not None else "-"
    p(f"| mean steps / tokens per question | {ms} / {mt} | | | | |")
    if s["errors"]:
        p(f"| runs that failed | {s['errors']} | | | | |")
    p()


# ------------------------------------------------------------------ --check


def check_set(qs: QuestionSet, base: Baselines, out=sys.stdout) -> int:
    """Validate a question set against its corpus and show where BM25 puts the answers."""
    corpus = base.corpus
    problems = 0
    print(f"## check {qs.name}: {len(corpus)} documents, {len(qs.questions)} questions", file=out)
    kinds: dict[str, int] = {}
    hidden = 0
    for q in qs.questions:
        kinds[q.kind] = kinds.get(q.kind, 0) + 1
        errs = [f"unknown answer {a}" for a in q.answers if a not in corpus.documents]
        errs += [f"unknown path doc {d}" for d in q.path if d not in corpus.documents]
        for u, v in zip(q.path, q.path[1:]):
            if v not in corpus.children(u):
                errs.append(f"no link {u} -> {v}")
        hops = {"lookup": 0, "hop1": 1, "hop2": 2}.get(q.kind)  # "broad": several linked answers, not checked
        if q.path and hops is not None and len(q.path) - 1 != hops:
            errs.append(f"path has {len(q.path) - 1} links, kind says {hops}")
        if q.path and q.path[-1] not in q.answers:
            errs.append("path does not end at an answer")
        ranked = [d for d, _ in base.bm25(q.query)]
        rank = lambda d: (ranked.index(d) + 1) if d in ranked else None  # noqa: E731
        ans_rank = min((r for r in map(rank, q.answers) if r), default=None)
        if q.kind in MULTI_HOP and (ans_rank is None or ans_rank > 3):
            hidden += 1
        dist = _distance(corpus, ranked[0], set(q.answers)) if ranked else None
        if hops is not None and dist != hops:
            errs.append(f"the nearest answer is {dist} link(s) from the BM25 top-1 document, kind says {hops}")
        problems += len(errs)
        print(f"  {q.id:<10} {q.kind:<6} answer@bm25 {ans_rank or '-':>3}  path[0]@bm25 {rank(q.path[0]) if q.path else '-'}"
              f"  top3 {ranked[:3]}" + (f"  PROBLEMS: {'; '.join(errs)}" if errs else ""), file=out)
    multi = sum(kinds.get(k, 0) for k in MULTI_HOP)
    print(f"  kinds {kinds}; multi-hop answers outside BM25 top-3: {hidden}/{multi}; problems: {problems}", file=out)
    return problems


def _distance(corpus, start: str, targets: set[str], limit: int = 4) -> Optional[int]:
    """Links from ``start`` to the nearest of ``targets`` (breadth first, outgoing links), or None."""
    frontier, seen = [start], {start}
    for depth in range(limit + 1):
        if any(d in targets for d in frontier):
            return depth
        nxt = []
        for d in frontier:
            for c in corpus.children(d):
                if c not in seen:
                    seen.add(c)
                    nxt.append(c)
        frontier = nxt
    return None


# ------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", action="append", help="question set name (org, uni, city, sample); repeatable")
    ap.add_argument("--set", choices=SET_ORDER, help="only the question sets under bench/search/SET/")
    ap.add_argument("--question", action="append", help="question id; repeatable")
    ap.add_argument("--budget", action="append", metavar="K=V", help="budget override, e.g. maxDepth=3; repeatable")
    ap.add_argument("--agent", action="append", metavar="K=V", help="agent field override, e.g. relevanceThreshold=0.3")
    ap.add_argument("--jobs", type=int, default=1, help="questions run at once (each run has its own maxParallel)")
    ap.add_argument("--ppr-seeds", type=int, default=5, help="BM25 top-k that personalise PageRank")
    ap.add_argument("--ppr-alpha", type=float, default=0.85, help="PageRank's probability of following a link")
    ap.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    ap.add_argument("--save", metavar="FILE", help="also write the machine-readable JSON to FILE")
    ap.add_argument("--keep", metavar="DIR", help="keep each run's manifest and store under DIR")
    ap.add_argument("--check", action="store_true", help="check the question sets against their corpora; run nothing")
    args = ap.parse_args(argv)
    budget = parse_overrides(args.budget, "budget")
    agent = parse_overrides(args.agent, "agent")
    keep = Path(args.keep).resolve() if args.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)

    sets = load_sets(args.set)
    if args.corpus:
        sets = [s for s in sets if s.name in args.corpus]
    if not sets:
        print("no question set matches", file=sys.stderr)
        return 2
    if args.check:
        return 1 if sum(check_set(s, Baselines(load_corpus(s.corpus_uri), args.ppr_seeds, args.ppr_alpha)) for s in sets) else 0

    results = []
    for qs in sets:
        questions = [q for q in qs.questions if not args.question or q.id in args.question]
        if not questions:
            continue
        base = Baselines(load_corpus(qs.corpus_uri), args.ppr_seeds, args.ppr_alpha)
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            runs = list(pool.map(lambda q: run_question(q, qs.corpus_uri, budget, agent, keep), questions))
        rows = [score_row(q, r, base) for q, r in zip(questions, runs)]
        summ = summarise(rows)
        results.append({"name": qs.name, "set": qs.set, "corpus": qs.corpus_uri, "rows": rows, "summary": summ})
        if not args.json:
            qs_view = QuestionSet(qs.name, qs.set, qs.corpus_uri, questions, qs.source)
            print_table(qs_view, rows, summ)
            sys.stdout.flush()
    doc = {"budget": budget, "agent": {"type": "offline", **agent}, "pprSeeds": args.ppr_seeds, "pprAlpha": args.ppr_alpha,
           "corpora": results}
    if args.save:
        Path(args.save).write_text(json.dumps(doc, indent=1))
    if args.json:
        print(json.dumps(doc, indent=1))
    elif not results:
        print("no question matches", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

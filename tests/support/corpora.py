"""Corpora that are hard to read or to walk (cycles, self-links, missing links, huge documents,
invalid UTF-8, ...), shared by tests/reliability/test_bad_corpora.py (local runs) and
test_fuzz_admission.py (the same bytes read from s3:// by step Jobs)."""

from __future__ import annotations

import json

QUERY = "How can quantum computing speed up machine learning, and what limits it?"

TOPIC = ("Quantum computing can speed up machine learning: quantum kernels and variational circuits, "
         "amplitude encoding of data, and the limits that noise, decoherence and data loading put on it. ")


def doc(i: str, links: list[str], content: str = TOPIC, kind: str = "related") -> dict:
    return {"id": i, "title": f"Quantum machine learning {i}", "content": content, "type": "article",
            "relationships": {kind: links}, "metadata": {}}


def graph(*docs: dict) -> bytes:
    return json.dumps({"documents": {d["id"]: d for d in docs}}).encode()


CORPORA: dict[str, tuple[bytes, str]] = {
    # name: (corpus bytes, expected outcome: "ok" or a fragment of the error)
    "cycle": (graph(doc("a", ["b"]), doc("b", ["c"]), doc("c", ["a"])), "ok"),
    "self-links": (graph(doc("a", ["a", "b"]), doc("b", ["b"]), doc("c", ["c", "a"])), "ok"),
    "missing-links": (graph(doc("a", ["nowhere", "b"]), doc("b", ["gone", "also-gone"]), doc("c", ["x" * 200])), "ok"),
    "all-links-missing": (graph(doc("a", ["n1"]), doc("b", ["n2"])), "ok"),
    "huge-document": (graph(doc("a", ["b"], content=(TOPIC * 6000)[:950_000]), doc("b", ["a"])), "ok"),  # 950,000 characters (limit 1,000,000)
    "over-the-document-limit": (graph(doc("a", ["b"], content="q" * 1_000_001), doc("b", [])), "limit 1000000"),
    "invalid-utf8": (b'{"documents": {"a": {"id": "a", "title": "\xff\xfe broken", "content": "quantum"}}}', "not valid UTF-8"),
    "truncated-json": (b'{"documents": {"a": {"id": "a", "title": ', "invalid JSON"),
    "no-documents": (b'{"documents": {}}', "has no documents"),
    "not-a-graph": (b'["quantum", "machine", "learning"]', "expected an object"),
    "nested-too-deep": (b'{"documents": ' + b"[" * 100000 + b"]" * 100000 + b"}", "nested too deeply"),
}

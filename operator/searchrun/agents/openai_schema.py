"""The traverse question to an OpenAI-compatible model: how the prompt asks it, the JSON schema
of the reply, and the reply's validation.

The model is told the path from the seed (each ancestor's id and title, the relationship kind
followed into it), the kind of the link that led to this document and the parent's note, all
bounded; it replies ``{found, score, note, proposals: [{doc, relation, reason}], reason}``.

The schema is sent as ``response_format`` (``json_schema``, or a form the server takes:
:func:`response_formats`) for servers that constrain their output to it, but a reply is always
validated here too, since many servers ignore it or follow it loosely. Limits a server's schema
support may not enforce (the note's length) live in the field descriptions and in
:func:`parse_traverse_reply`. A reply that is not a JSON object, has
missing, extra or mistyped fields, a score outside 0..1 or a note over the limit is a
:class:`BadReply` (its message names the field and the limit, never quotes the reply). Proposed
ids that are not children of the document are dropped, not refused: a model guessing a link is
not malformed, and the step must never follow a link the corpus does not have. The relationship
recorded for a proposal is the corpus' kind, not the model's.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from .base import PathContext, Proposal

SCHEMA_NAME = "traverse_decision"
REPLY_ATTEMPTS = 3  # a bad reply is asked again at most twice, then the traversal is a dead end
REASON_CHARS = 300
PROPOSAL_REASON_CHARS = 160
TITLE_CHARS = 120
ID_CHARS = 200
MAX_PATH_HOPS = 8
MAX_CHILDREN_SHOWN = 50
MIN_REPLY_TOKENS = 96  # the least room a reply is given: a shorter one would be cut off, then rejected
_FORMAT_REFUSED = re.compile(r"returned HTTP (400|422)\b")
TOP_KEYS = ("found", "score", "note", "proposals", "reason")
PROPOSAL_KEYS = ("doc", "relation", "reason")


class BadReply(ValueError):
    """The model's reply does not follow the schema; the message names the field."""


@dataclass(frozen=True)
class TraverseReply:
    found: bool
    score: float
    note: str
    proposals: tuple[Proposal, ...]
    reason: str


# ---------------------------------------------------------------- schema


def traverse_schema(children: list[str], max_proposals: int, max_note_chars: int) -> dict:
    """The reply's JSON schema (strict mode: every field required, no others)."""
    item = {
        "type": "object",
        "additionalProperties": False,
        "required": list(PROPOSAL_KEYS),
        "properties": {
            "doc": {"type": "string", "description": "the id of a linked document"},
            "relation": {"type": "string", "description": "the relationship kind of the link"},
            "reason": {"type": "string", "description": "why it may answer what is still open"},
        },
    }
    if children:
        item["properties"]["doc"]["enum"] = list(children)
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(TOP_KEYS),
        "properties": {
            "found": {"type": "boolean", "description": "this document, with the path and the note, answers the query"},
            "score": {"type": "number", "minimum": 0, "maximum": 1, "description": "how fully it answers"},
            "note": {"type": "string", "description": f"for the next steps, at most {max_note_chars} characters: "
                                                      "what is established and what is still open"},
            "proposals": {"type": "array", "maxItems": max(0, max_proposals), "items": item,
                          "description": "linked documents worth reading next, best first"},
            "reason": {"type": "string", "description": "one sentence"},
        },
    }


def response_format(schema: dict) -> dict:
    """The chat completions ``response_format`` that asks for ``schema``."""
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": schema}}


def response_formats(schema: dict) -> list[dict]:
    """The ways to ask for ``schema``, most standard first; the agent steps down one when a
    server refuses a request (HTTP 400/422) and remembers where it got: ``json_schema``
    (OpenAI, vLLM, llama.cpp's llama-server, Ollama), ``json_object`` with a ``schema``
    (llama-cpp-python's server, which constrains its output to it with a grammar), then a
    plain ``json_object``."""
    return [response_format(schema), {"type": "json_object", "schema": schema}, {"type": "json_object"}]


def format_refused(error: str) -> bool:
    """Whether an agent error says the server refused the request (as one without json_schema support does)."""
    return bool(_FORMAT_REFUSED.search(error))


def answer_tokens(max_note_chars: int, max_proposals: int, chars_per_token: int) -> int:
    """Room for a full reply: the fields, the note and the proposals with their reasons."""
    return 96 + math.ceil(max(0, max_note_chars) / chars_per_token) + 48 * max(0, max_proposals)


# ---------------------------------------------------------------- prompt


def _line(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters: a title cannot forge the prompt's lines."""
    t = " ".join(str(text).split())
    return t if len(t) <= limit else t[: limit - 1].rstrip() + "…"


def path_block(path: Optional[PathContext], max_note_chars: int) -> str:
    """How the run got here: the ancestors (seed first), the link followed and the parent's note."""
    if path is None or not path.hops:
        return "This document is a seed: the search starts here.\n"
    lines = ["Path from the seed to this document (seed first):"]
    hops = path.hops[-MAX_PATH_HOPS:]
    if len(path.hops) > len(hops):
        lines.append(f"(… {len(path.hops) - len(hops)} earlier documents)")
    for i, h in enumerate(hops, 1):
        via = f" (reached via {_line(h.relation, 60)})" if h.relation else ""
        lines.append(f"{i}. [{_line(h.doc_id, ID_CHARS)}] {_line(h.title, TITLE_CHARS)}{via}")
    if path.relation:
        lines.append(f"This document was reached from the last one via {_line(path.relation, 60)}.")
    note = _line(path.note or "", max(0, max_note_chars)) if max_note_chars > 0 else ""
    if note:
        lines.append("Note from the previous step (what is established, what is still open):")
        lines.append(f"<<<{note}>>>")
    return "\n".join(lines) + "\n"


def children_block(links: list[tuple[str, str]], titles: Mapping[str, str]) -> str:
    shown = links[:MAX_CHILDREN_SHOWN]
    if not shown:
        return "Linked documents: (none)\n"
    rows = [f"- {_line(c, ID_CHARS)} | {_line(kind, 60)} | {_line(titles.get(c, ''), TITLE_CHARS)}" for kind, c in shown]
    more = f"\n(… {len(links) - len(shown)} more links not shown)" if len(links) > len(shown) else ""
    return "Linked documents (id | relationship | title):\n" + "\n".join(rows) + more + "\n"


def instructions(max_proposals: int, max_note_chars: int) -> str:
    note = (f'"note": what is established so far and what is still open, for the steps that read the documents you '
            f"propose (at most {max_note_chars} characters)" if max_note_chars > 0
            else '"note": "" (no note is passed on)')
    props = (f'"proposals": at most {max_proposals} linked documents worth reading next, best first, only ids from the list above '
             "(none if no link looks useful)" if max_proposals > 0 else '"proposals": [] (the search goes no deeper)')
    return (
        "Does this document, together with the path and the note that led here, answer the query (fully or in part)?\n"
        f"- {note};\n- {props};\n"
        '- "found": true or false; "score": 0.0 to 1.0; "reason": one sentence.\n'
        'Reply with only this JSON object: {"found": false, "score": 0.0, "note": "...", '
        '"proposals": [{"doc": "id", "relation": "kind", "reason": "..."}], "reason": "..."}'
    )


def rejected(problem: str) -> str:
    """What a retry is told about the previous reply (our own message, never the reply)."""
    return f"\n\nYour previous reply was rejected: {problem}. Reply again with only the JSON object."


# ---------------------------------------------------------------- validation


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object" if isinstance(v, dict) else type(v).__name__


def decode_object(text: str) -> dict:
    """The reply's JSON object: the whole text, or the first object in it (some models wrap it in
    prose or a code fence when the server does not constrain them)."""
    if not isinstance(text, str) or not text.strip():
        raise BadReply("the reply is empty")
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        obj = None
        dec = json.JSONDecoder()
        i = text.find("{")
        while i >= 0 and obj is None:
            try:
                cand, _ = dec.raw_decode(text, i)
            except (json.JSONDecodeError, RecursionError):
                cand = None
            if isinstance(cand, dict):
                obj = cand
            else:
                i = text.find("{", i + 1)
        if obj is None:
            raise BadReply("the reply is not JSON (no JSON object in it)") from None
    if not isinstance(obj, dict):
        raise BadReply(f"the reply is a JSON {_json_type(obj)}, expected an object")
    return obj


def _keys(obj: dict, want: tuple[str, ...], where: str) -> None:
    missing = [k for k in want if k not in obj]
    extra = sorted(str(k)[:40] for k in obj if k not in want)
    if missing:
        raise BadReply(f"{where}: missing field(s) {', '.join(missing)}")
    if extra:
        raise BadReply(f"{where}: unknown field(s) {', '.join(extra[:5])} (expected only {', '.join(want)})")


def _string(v: Any, field: str) -> str:
    if not isinstance(v, str):
        raise BadReply(f"{field}: expected a string, got {_json_type(v)}")
    return v


def parse_traverse_reply(text: str, links: Mapping[str, str], max_proposals: int, max_note_chars: int) -> TraverseReply:
    """Validate the model's reply; ``links`` maps each child of the document to its relationship kind."""
    obj = decode_object(text)
    _keys(obj, TOP_KEYS, "reply")
    found = obj["found"]
    if not isinstance(found, bool):
        raise BadReply(f"found: expected true or false, got {_json_type(found)}")
    score = obj["score"]
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise BadReply(f"score: expected a number from 0 to 1, got {_json_type(score)}")
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise BadReply(f"score: must be from 0 to 1 (got {score:.4g})")
    note = _string(obj["note"], "note")
    if len(note) > max(0, max_note_chars):
        raise BadReply(f"note: {len(note)} characters, at most {max(0, max_note_chars)} allowed (agent.maxContextChars)")
    reason = _string(obj["reason"], "reason")
    raw = obj["proposals"]
    if not isinstance(raw, list):
        raise BadReply(f"proposals: expected an array, got {_json_type(raw)}")
    proposals: list[Proposal] = []
    seen: set[str] = set()
    for i, p in enumerate(raw):
        if not isinstance(p, dict):
            raise BadReply(f"proposals[{i}]: expected an object, got {_json_type(p)}")
        _keys(p, PROPOSAL_KEYS, f"proposals[{i}]")
        doc = _string(p["doc"], f"proposals[{i}].doc")
        _string(p["relation"], f"proposals[{i}].relation")
        why = _string(p["reason"], f"proposals[{i}].reason")
        if doc not in links or doc in seen or len(proposals) >= max_proposals:
            continue  # not a child (or already proposed, or one too many): dropped
        seen.add(doc)
        proposals.append(Proposal(doc, links[doc], _line(why, PROPOSAL_REASON_CHARS)))
    return TraverseReply(found, round(float(score), 4), note, tuple(proposals), _line(reason, REASON_CHARS))

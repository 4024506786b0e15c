"""An agent backed by any OpenAI-compatible chat completions endpoint.

Each question is one ``POST {baseURL}/chat/completions`` with ``temperature`` 0
and a request for a JSON object; the reply's first JSON object is parsed out of
the message content (``response_format`` is asked for but not relied on).
Candidates for ``plan_seeds`` and ``simple_search`` come from the offline BM25
ranking and the model judges them. ``traverse`` tells the model the path that led
to the document and the parent's note, asks for a reply in a JSON schema and
validates it (:mod:`.openai_schema`): a bad reply is asked again, within the
step's allowance, at most ``REPLY_ATTEMPTS`` times, then the traversal is a dead end that
says why (``TraverseDecision.rejected``): asking the same model the same question in a
retried Job would only spend the tokens again.

Token use: the prompt is sized from a conservative estimate (``chars / 3``) so
that prompt plus ``max_tokens`` fits the step's allowance; documents are
truncated to make it fit, and with too small an allowance no request is made.
The tokens reported are the server's ``usage.total_tokens`` (summed over
attempts), so what the budget is charged is what was really spent.

Failures: 429, 5xx, timeouts and connection errors are retried with
exponential backoff (``Retry-After`` seconds honoured), at most
``MAX_ATTEMPTS`` attempts; other HTTP errors, redirects and running out of
attempts raise :class:`AgentError`. The API key is only ever put in the
``Authorization`` header. Errors name the HTTP status, its reason phrase and the
``x-request-id``, never the body (anyone's page may come back, and errors reach
the run's status); the body is logged at debug level only. Where it may connect:
``endpoint_policy`` (on a cluster the operator's ``policy.agentEndpoints``),
checked at start and, by ``guarded_http``, at every connection.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Optional

from ..corpus import Corpus
from ..endpoint_policy import AgentEndpointPolicy, step_policy, url_problem
from .guarded_http import EndpointRefused, guarded_opener, request_id
from .base import SNIPPET_CHARS, AgentError, AgentReplyError, Hit, TraverseDecision, Usage, usage
from .offline import OfflineAgent, index_for, query_terms, snippet
from . import openai_schema as schema
from .base import DEFAULT_MAX_NOTE_CHARS, PathContext

MAX_ATTEMPTS = 4
CHARS_PER_TOKEN = 3  # conservative: real tokenizers average about 4 characters per English token
MESSAGE_OVERHEAD_TOKENS = 8
MIN_ANSWER_TOKENS = 48
ANSWER_TOKENS = {"intent": 96, "seeds": 192, "search": 384, "traverse": 320}
MAX_DOC_CHARS = 12_000
MAX_RETRY_AFTER_SECONDS = 60.0
LOG = logging.getLogger(__name__)

SYSTEM = (
    "You are a careful research assistant that helps search a graph of documents. "
    "Answer with a single JSON object and nothing else."
)


def _estimate(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _prompt_tokens(messages: list[dict[str, str]]) -> int:
    return sum(_estimate(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages) + 3


def first_json_object(text: str) -> Optional[dict]:
    """The first JSON object in ``text`` (models sometimes wrap JSON in prose or fences)."""
    dec = json.JSONDecoder()
    i = text.find("{")
    while i >= 0:
        try:
            obj, _ = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict):
            return obj
        i = text.find("{", i + 1)
    return None


class FormatRefused(AgentError):
    """The server refused the request's ``response_format`` (its error names it): not retried."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: Optional[float] = None):
        super().__init__(message)
        self.retry_after = retry_after


def _clamp01(x: Any, default: float = 0.0) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    if math.isnan(v):
        return default
    return min(1.0, max(0.0, v))


def _truthy(x: Any) -> bool:
    if isinstance(x, str):
        return x.strip().lower() in ("true", "yes", "1")
    return bool(x)


class OpenAICompatAgent:
    # which of schema.response_formats() this server takes: the first one it did not refuse
    # (_format_known: it answered one already, so a later refusal is an error, not a step down)
    _format_level: int = 0
    _format_known: bool = False

    def __init__(
        self,
        spec: Any,
        corpus: Corpus,
        api_key: Optional[str],
        *,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        policy: Optional[AgentEndpointPolicy] = None,
    ):
        if not spec.baseURL or not spec.model:
            raise AgentError("agent.baseURL and agent.model are required for the openai agent")
        self.policy = policy if policy is not None else step_policy(os.environ)
        why = url_problem(spec.baseURL, self.policy, field="agent.baseURL")
        if why:
            raise EndpointRefused(why)
        self.url = spec.baseURL.rstrip("/") + "/chat/completions"
        self.model = spec.model
        self.timeout = float(spec.requestTimeoutSeconds)
        self.cost_per_1k = float(spec.costPer1kTokensUSD)
        self.threshold = float(spec.relevanceThreshold)
        self.corpus = corpus
        self._key = api_key or None
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._sleep = sleep
        self._opener = guarded_opener(self.policy)
        self._offline = OfflineAgent(corpus, self.threshold)
        self._index = index_for(corpus)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAICompatAgent(url={self.url!r}, model={self.model!r}, key={'set' if self._key else 'unset'})"

    # ------------------------------------------------------------ transport

    def _redact(self, text: str) -> str:
        if self._key:
            text = text.replace(self._key, "***")
        return text

    def _post(self, body: bytes) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            rid = request_id(e.headers)
            where = f"{self.url} returned HTTP {e.code} ({http.client.responses.get(e.code, 'error')})"
            where += f", request id {rid}" if rid else ""
            try:
                page = e.read(4096)
            except Exception:
                page = b""
            if LOG.isEnabledFor(logging.DEBUG):  # the body may be anyone's page: debug log only, never the message
                body = page[:500].decode("utf-8", "replace")
                LOG.debug("%s; body (truncated): %s", where, self._redact(" ".join(body.split()))[:200])
            if e.code in (400, 422, 500) and b"response_format" in page:
                # the server refuses the form we asked the answer in (llama-cpp-python says so with a
                # 500): asking again would get the same; the caller may ask in another form
                raise FormatRefused(f"{where}: it refused the response_format") from None
            if e.code == 429 or 500 <= e.code <= 599:
                retry_after = None
                ra = e.headers.get("Retry-After") if e.headers else None
                if ra:
                    try:
                        retry_after = max(0.0, float(ra))
                    except ValueError:
                        retry_after = None
                raise _Retryable(where, retry_after) from None
            if 300 <= e.code <= 399:
                raise AgentError(f"{self.url} redirected (HTTP {e.code}); set agent.baseURL to the final URL") from None
            raise AgentError(where) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            # a malformed reply (http.client.HTTPException) quotes what the server sent: name it only
            shown = type(reason).__name__ if isinstance(reason, http.client.HTTPException) else self._redact(str(reason))[:200]
            raise _Retryable(f"cannot reach {self.url}: {shown}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _Retryable(f"{self.url} returned a response that is not JSON") from None
        if not isinstance(data, dict):
            raise _Retryable(f"{self.url} returned a response that is not a JSON object")
        return data

    def _chat(self, messages: list[dict[str, str]], max_tokens: int, response_format: Optional[dict] = None,
              parse: Callable[[str], Any] = first_json_object) -> tuple[Any, int]:
        """(the answer as ``parse`` reads it, by default its JSON object; tokens used over all attempts)."""
        body = json.dumps(
            {
                "model": self.model,
                "messages": messages,
                "max_tokens": int(max_tokens),
                "temperature": 0,
                "response_format": response_format or {"type": "json_object"},
            }
        ).encode("utf-8")
        tokens = 0
        last = ""
        malformed = False  # the last attempt got an answer, but no JSON object in it
        for attempt in range(1, MAX_ATTEMPTS + 1):
            delay: Optional[float] = None
            try:
                data = self._post(body)
                tokens += self._usage_of(data, messages)
                content = self._content_of(data)
                obj = parse(content) if content is not None else None
                if obj is not None:
                    return obj, tokens
                last, malformed = f"{self.url}: the model's answer holds no JSON object", True
            except _Retryable as e:
                last, malformed = str(e), False
                delay = e.retry_after
            if attempt < MAX_ATTEMPTS:
                if delay is None:
                    delay = min(self.backoff_seconds * (2 ** (attempt - 1)), self.max_backoff_seconds)
                else:
                    delay = min(delay, MAX_RETRY_AFTER_SECONDS)  # the server's Retry-After, bounded
                self._sleep(max(0.0, delay))
        raise (AgentReplyError if malformed else AgentError)(f"{last} (gave up after {MAX_ATTEMPTS} attempts)")

    @staticmethod
    def _content_of(data: dict) -> Optional[str]:
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return None
        return content if isinstance(content, str) else None

    @staticmethod
    def _usage_of(data: dict, messages: list[dict[str, str]]) -> int:
        u = data.get("usage")
        if isinstance(u, dict):
            total = u.get("total_tokens")
            if isinstance(total, (int, float)) and total >= 0:
                return int(total)
            parts = [u.get("prompt_tokens"), u.get("completion_tokens")]
            if all(isinstance(p, (int, float)) for p in parts):
                return int(sum(parts))
        # no usage reported: fall back to the estimate
        content = OpenAICompatAgent._content_of(data) or ""
        return _prompt_tokens(messages) + _estimate(content)

    def _u(self, tokens: int) -> Usage:
        return usage(tokens, self.cost_per_1k)

    # -------------------------------------------------------------- prompts

    @staticmethod
    def _messages(user: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    def _fit(self, build: Callable[[int], str], want_answer: int, allowance: int, doc_chars: int) -> Optional[tuple[list[dict[str, str]], int]]:
        """Messages and max_tokens that fit ``allowance``, shrinking the document text
        (``build(chars)``) as needed; None when even the smallest prompt does not fit."""
        chars = doc_chars
        while True:
            msgs = self._messages(build(chars))
            room = allowance - _prompt_tokens(msgs)
            if room >= MIN_ANSWER_TOKENS:
                return msgs, min(want_answer, room)
            if chars <= 0:
                return None
            over = (MIN_ANSWER_TOKENS - room + 4) * CHARS_PER_TOKEN
            chars = max(0, chars - over)

    @staticmethod
    def _doc_block(doc_id: str, title: str, content: str, chars: int) -> str:
        body = content if len(content) <= chars else content[:chars].rstrip() + " [truncated]"
        return f"[{doc_id}] {title}\n{body}"

    # ------------------------------------------------------------ questions

    def detect_intent(self, query: str, allowance: int) -> tuple[str, str, Usage]:
        if allowance <= 0:
            return "simple", "no token allowance: did not ask the model, assuming simple", Usage()

        def build(chars: int) -> str:
            q = query[: max(chars, 1)]
            return (
                "Classify this search query. 'simple' means a short factual lookup one document can "
                "answer; 'deep' means it asks about relations, explanations or trade-offs across topics, "
                "so several linked documents must be read.\n"
                f"Query: {q}\n"
                # no valid answer in the template: a model that only copies it gets the offline heuristic
                'Reply as JSON: {"intent": "<simple or deep>", "reason": "<one sentence>"}'
            )

        fit = self._fit(build, ANSWER_TOKENS["intent"], allowance, len(query))
        if fit is None:
            return "simple", "token allowance too small to ask the model, assuming simple", Usage()
        obj, tokens = self._chat(*fit)
        intent = str(obj.get("intent", "")).strip().lower()
        reason = str(obj.get("reason", "")).strip()[:300]
        if intent not in ("simple", "deep"):
            fallback, why, _ = self._offline.detect_intent(query, 10**6)
            return fallback, f"model gave no valid intent ({intent[:20]!r}); offline heuristic: {why}", self._u(tokens)
        return intent, reason or f"model says {intent}", self._u(tokens)

    def _candidates(self, query: str, n: int) -> list[str]:
        return [d for d, _ in self._index.rank(query_terms(query))[:n]]

    def plan_seeds(self, query: str, k: int, allowance: int) -> tuple[list[str], Usage]:
        if allowance <= 0 or k <= 0:
            return [], Usage()
        cands = self._candidates(query, max(2 * k, 5))
        if not cands:
            return [], Usage()
        docs = self.corpus.documents

        def build(chars: int) -> str:
            per = chars // len(cands)
            lines = [f"- {c}: {docs[c].title} — {' '.join(docs[c].content[:per].split())}" for c in cands]
            return (
                f"Query: {query}\n\nCandidate documents (id: title — start of text):\n" + "\n".join(lines) + "\n\n"
                f"Pick at most {k} documents that are the best places to start searching for the answer, best first. "
                'Reply as JSON: {"ids": ["id", ...], "reason": "one sentence"}'
            )

        fit = self._fit(build, ANSWER_TOKENS["seeds"], allowance, 200 * len(cands))
        if fit is None:
            return [], Usage()
        obj, tokens = self._chat(*fit)
        picked = obj.get("ids") or obj.get("seeds") or []
        seeds: list[str] = []
        if isinstance(picked, list):
            for p in picked:
                if isinstance(p, str) and p in cands and p not in seeds:
                    seeds.append(p)
        if not seeds:
            seeds = cands[:k]
        return seeds[:k], self._u(tokens)

    def simple_search(self, query: str, k: int, allowance: int) -> tuple[list[Hit], Usage]:
        if allowance <= 0 or k <= 0:
            return [], Usage()
        cands = self._candidates(query, k)
        if not cands:
            return [], Usage()
        docs = self.corpus.documents
        total = sum(len(docs[c].content) for c in cands)

        def build(chars: int) -> str:
            per = chars // len(cands)
            blocks = "\n\n".join(self._doc_block(c, docs[c].title, docs[c].content, per) for c in cands)
            return (
                f"Query: {query}\n\nDocuments:\n{blocks}\n\n"
                "For each document say whether it answers the query. Reply as JSON: "
                '{"results": [{"id": "...", "relevant": true or false, "score": 0.0 to 1.0, '
                f'"answer": "a short quote (at most {SNIPPET_CHARS} characters) from the document that answers the query"}}]}}'
            )

        fit = self._fit(build, ANSWER_TOKENS["search"], allowance, min(total, MAX_DOC_CHARS))
        if fit is None:
            return [], Usage()
        obj, tokens = self._chat(*fit)
        results = obj.get("results")
        hits: list[Hit] = []
        seen: set[str] = set()
        if isinstance(results, list):
            terms = query_terms(query)
            for r in results:
                if not isinstance(r, dict):
                    continue
                d = r.get("id")
                if not isinstance(d, str) or d not in cands or d in seen or not _truthy(r.get("relevant")):
                    continue
                seen.add(d)
                answer = " ".join(str(r.get("answer") or "").split())[:SNIPPET_CHARS]
                hits.append(Hit(d, _clamp01(r.get("score"), 0.5), answer or snippet(docs[d].content, terms, self._index.idf)))
        hits.sort(key=lambda h: (-h.score, cands.index(h.doc_id)))
        return hits[:k], self._u(tokens)


    def traverse(self, query: str, doc_id: str, k: int, allowance: int, path: Optional[PathContext] = None,
                 max_note_chars: int = DEFAULT_MAX_NOTE_CHARS) -> TraverseDecision:
        if allowance <= 0:
            return TraverseDecision(False, 0.0, "", [], "no token allowance: did not read the document", Usage())
        doc = self.corpus.get(doc_id)
        if doc is None:
            return TraverseDecision(False, 0.0, "", [], f"document {doc_id!r} is not in the corpus", Usage())
        docs = self.corpus.documents
        links = self.corpus.links(doc_id)[: schema.MAX_CHILDREN_SHOWN]
        kinds = {c: kind for kind, c in links}
        most = 2 * k if k > 0 else 0
        head = f"Query: {query}\n\n{schema.path_block(path, max_note_chars)}\n"
        kids = schema.children_block(links, {c: docs[c].title for _, c in links})
        ask = schema.instructions(most, max_note_chars)
        fmts = schema.response_formats(schema.traverse_schema([c for _, c in links], most, max_note_chars))
        want = schema.answer_tokens(max_note_chars, most, CHARS_PER_TOKEN)
        spent, problem, feedback = 0, "", ""
        for attempt in range(1, schema.REPLY_ATTEMPTS + 1):
            def build(chars: int, feedback: str = feedback) -> str:
                return f"{head}Document:\n{self._doc_block(doc_id, doc.title, doc.content, chars)}\n\n{kids}\n{ask}{feedback}"

            fit = self._fit_reply(build, want, allowance - spent, min(len(doc.content), MAX_DOC_CHARS))
            if fit is None:
                if attempt == 1:
                    return TraverseDecision(False, 0.0, "", [], "token allowance too small to ask the model", Usage())
                return self._rejected(f"{problem}; the step's token allowance ({allowance}) leaves no room to ask again",
                                      attempt - 1, spent)
            content, tokens = self._chat_schema(*fit, fmts)
            spent += tokens
            try:
                reply = schema.parse_traverse_reply(content, kinds, most, max_note_chars)
            except schema.BadReply as e:
                problem, feedback = str(e), schema.rejected(str(e))
                continue
            snip = snippet(doc.content or doc.title, query_terms(query), self._index.idf) if reply.found else ""
            why = reply.reason or ("model: answers" if reply.found else "model: not an answer")
            if attempt > 1:
                why += f" (reply {attempt}; earlier: {problem})"[:200]
            return TraverseDecision(reply.found, reply.score, snip, [p.doc_id for p in reply.proposals], why,
                                    self._u(spent), note=reply.note, proposals=reply.proposals)
        return self._rejected(problem, schema.REPLY_ATTEMPTS, spent)

    def _rejected(self, problem: str, replies: int, spent: int) -> TraverseDecision:
        """A dead end: the model's replies were refused (our message names the field, never quotes the reply)."""
        why = f"the model's reply was rejected {replies} time{'s' if replies != 1 else ''}; last: {problem}"
        LOG.warning("%s: %s", self.url, why)
        return TraverseDecision(False, 0.0, "", [], f"dead end: {why}"[:300], self._u(spent), rejected=why[:300])

    def _fit_reply(self, build: Callable[[int], str], want: int, allowance: int, doc_chars: int):
        """``_fit``, but with room for at least a short reply (``MIN_REPLY_TOKENS``), not just ``MIN_ANSWER_TOKENS``."""
        extra = max(0, schema.MIN_REPLY_TOKENS - MIN_ANSWER_TOKENS)
        fit = self._fit(build, max(want - extra, MIN_ANSWER_TOKENS), allowance - extra, doc_chars)
        return None if fit is None else (fit[0], fit[1] + extra)

    def _chat_schema(self, messages: list[dict[str, str]], max_tokens: int, fmts: list[dict]) -> tuple[str, int]:
        """(the reply's text, tokens), asking in the first of ``fmts`` this server takes: on its
        first refusals (HTTP 400 or 422) the next one is tried, and the one it took is remembered."""
        while True:
            level = min(self._format_level, len(fmts) - 1)
            try:
                content, tokens = self._chat(messages, max_tokens, fmts[level], parse=str)
            except AgentError as e:
                refused = isinstance(e, FormatRefused) or schema.format_refused(str(e))
                if self._format_known or level == len(fmts) - 1 or not refused:
                    raise
                LOG.info("%s refused response_format %s; asking in the next form", self.url, fmts[level].get("type"))
                self._format_level = level + 1
                continue
            self._format_known = True
            return content, tokens

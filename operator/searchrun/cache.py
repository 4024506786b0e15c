"""The step cache: a step's result reused across runs when everything that determines it is the same.

The key is a sha256 of the step type and its input (the path context included; not the attempt,
the step id, the parents or the URIs of the parents' outputs), the query, a digest of the corpus's
content (not its URI), the agent's kind and settings (never the API key) and the version of the
step code. Steps that read other steps' outputs or the lineage (aggregate, report) are not cached:
their inputs are this run's artifacts, and they spend no tokens.

An entry is one write-once object, ``cache/<namespace>/<type>/<digest>/entry.json`` (the result
and the output together, so two runs filling a key at once cannot mix their halves); it is read
by ``StepCache.lookup`` and written by ``StepCache.fill``. Anything wrong with an entry (missing,
corrupt, expired, another key's) makes a miss, never a failure.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any, Callable, Optional

from . import __version__
from .api import AgentSpec, CacheMode, SearchRunSpec
from .artifacts import ArtifactError, ArtifactExists, ArtifactNotFound, ArtifactStore, result_key, step_key
from .engine.types import Observation, Reuse, StartStep, StepResult

# Bump when a step's code changes what it outputs for the same input.
STEP_CODE_VERSION = 1
CACHEABLE = frozenset({"detect_intent", "plan_search", "traverse_node", "simple_search"})
ENTRY_NAME = "entry.json"
ENTRY_VERSION = 1
LOCAL_NAMESPACE = "local"
# Input fields that name this run's step, not what it computes.
NOT_IN_KEY = frozenset({"stepId", "attempt", "parents", "inputs"})
# Agent settings that do not change what a step outputs (and the API key's whereabouts).
AGENT_NOT_IN_KEY = {"apiKeySecretRef", "apiKeyEnv", "requestTimeoutSeconds"}
BASE_FIELDS = ("stepId", "attempt", "parents", "depth")
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def corpus_digest(corpus) -> str:
    """sha256 of the loaded corpus's canonical JSON: the same documents give the same digest
    wherever they are stored, and one changed document changes it."""
    return hashlib.sha256(canonical_json(corpus.to_json())).hexdigest()


def agent_settings(agent: AgentSpec) -> dict:
    return agent.model_dump(mode="json", exclude=AGENT_NOT_IN_KEY)


def cache_key(step_type: str, step_input: dict, query: str, corpus: str, agent: AgentSpec) -> str:
    material = {
        "type": step_type,
        "input": {k: v for k, v in step_input.items() if k not in NOT_IN_KEY},
        "query": query,
        "corpus": corpus,
        "agent": agent_settings(agent),
        "code": [__version__, STEP_CODE_VERSION],
    }
    return hashlib.sha256(canonical_json(material)).hexdigest()


def entry_key(namespace: str, step_type: str, digest: str) -> str:
    """Derived from checked parts only: a namespace name, a known step type and a hex digest."""
    if not _NAMESPACE_RE.fullmatch(namespace or ""):
        raise ValueError(f"invalid cache namespace {namespace!r}")
    if step_type not in CACHEABLE:
        raise ValueError(f"step type {step_type!r} is not cached")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError("invalid cache digest")
    return f"cache/{namespace}/{step_type}/{digest}/{ENTRY_NAME}"


class StepCache:
    """The cache of one run: ``lookup`` before a step starts, ``fill`` after it succeeded."""

    def __init__(self, store: ArtifactStore, spec: SearchRunSpec, namespace: str, run_uid: str, corpus: str,
                 clock: Callable[[], float] = time.time):
        self.store, self.spec, self.namespace, self.run_uid, self.corpus = store, spec, namespace, run_uid, corpus
        self.mode = spec.cache.mode
        self.clock = clock
        self.hits = 0
        self.tokens_saved = 0

    def key(self, action: StartStep) -> Optional[str]:
        if self.mode == CacheMode.Off.value or action.step_type not in CACHEABLE:
            return None
        digest = cache_key(action.step_type, action.input, self.spec.query, self.corpus, self.spec.agent)
        return entry_key(self.namespace, action.step_type, digest)

    def _entry(self, key: str) -> Optional[dict]:
        """The entry at ``key`` if it is whole, this key's and not expired; else None (a miss)."""
        try:
            e = json.loads(self.store.get_bytes(key))
        except (ArtifactError, ValueError):
            return None
        try:
            ok = (e["v"] == ENTRY_VERSION and e["key"] == key and isinstance(e["result"], dict)
                  and isinstance(e["output"], (dict, type(None))) and isinstance(e["from"], dict)
                  and self.clock() - float(e["createdAt"]) <= self.spec.cache.ttlSeconds)
            StepResult.from_dict(e["result"])
        except (KeyError, TypeError, ValueError):
            return None
        return e if ok else None

    def lookup(self, action: StartStep) -> Optional[Observation]:
        """A cache hit as the observation of ``action``'s step (its output and result.json are
        written into this run first, so the run stands on its own); None on a miss."""
        key = self.key(action)
        entry = self._entry(key) if key else None
        if entry is None:
            return None
        try:
            result = dict(entry["result"])
            if entry["output"] is not None:
                output = {**entry["output"], **{f: action.input.get(f) for f in BASE_FIELDS}}
                okey = step_key(self.run_uid, action.step_id, action.attempt, "output.json")
                result["output"] = self.store.put_json(okey, output, overwrite=True)
            saved = int(result.get("tokens", 0))
            src = entry["from"]
            result.update(tokens=0, costUSD=0.0, cachedFrom=src, tokensSaved=saved)
            self.store.put_json(result_key(self.run_uid, action.step_id, action.attempt), result)
            reuse = Reuse("cache", str(src["run"]), str(src["step"]), int(src.get("attempt", 1)), saved)
            obs = Observation(action.step_id, action.attempt, "succeeded", result=StepResult.from_dict(result), reused=reuse)
        except (ArtifactError, KeyError, TypeError, ValueError):
            return None  # e.g. this attempt already committed something else: run it
        self.hits += 1
        self.tokens_saved += saved
        _count_hit(action.step_type, saved)
        return obs

    def fill(self, action: StartStep, obs: Observation) -> bool:
        """Add the step's committed result and output (ReadWrite only). Write-once: when two runs
        fill a key at once, the first entry stays and both runs see a whole one."""
        key = self.key(action) if self.mode == CacheMode.ReadWrite.value else None
        if key is None or obs.state != "succeeded" or obs.reused is not None or obs.result is None:
            return False
        try:
            output = None
            if obs.result.output:
                output = self.store.get_json(step_key(self.run_uid, action.step_id, action.attempt, "output.json"))
            result = obs.result.to_dict()
            result.pop("output", None)
            entry = {"v": ENTRY_VERSION, "key": key, "createdAt": self.clock(), "result": result, "output": output,
                     "from": {"run": self.run_uid, "step": action.step_id, "attempt": action.attempt}}
            try:
                self.store.put_json(key, entry)
            except ArtifactExists:
                if self._entry(key) is not None:
                    return False  # another run's entry: keep it
                self.store.put_json(key, entry, overwrite=True)  # a corrupt or expired one: replace it
        except (ArtifactError, ArtifactNotFound, ValueError, TypeError):
            return False  # the cache is an optimisation: the step has succeeded all the same
        return True


def _count_hit(step_type: str, tokens: int) -> None:
    from .metrics import CACHE_HITS, CACHE_TOKENS_SAVED

    CACHE_HITS.labels(step_type=step_type).inc()
    CACHE_TOKENS_SAVED.inc(tokens)


def make_cache(store: ArtifactStore, spec: SearchRunSpec, namespace: str, run_uid: str, corpus_loader) -> Optional[StepCache]:
    """The run's cache, or None when ``spec.cache.mode`` is Off; ``corpus_loader()`` gives the loaded
    corpus (called once, only when the cache is on)."""
    if spec.cache.mode == CacheMode.Off.value:
        return None
    return StepCache(store, spec, namespace, run_uid, corpus_digest(corpus_loader()))

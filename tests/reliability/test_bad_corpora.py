"""Bad corpora and malformed step outputs: a run finishes, or fails with a reason that says
what is wrong; never a hang or a traceback.

Local runs (``searchrun run``, every step a subprocess of the same step entrypoint a Job runs)
cover the corpus shapes; one corpus is also read from s3:// by step Jobs on the cluster
(test_fuzz_admission.py::test_corpora_from_s3_on_the_cluster_finish_or_fail_clearly). Malformed step
results are fed to the operator's reader (``observe_job``) with hypothesis, and on the cluster
in test_fuzz_admission.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from searchrun.executors.kube.jobs import observe_job
from support.corpora import CORPORA, QUERY


def run_local(tmp_path: Path, corpus: bytes, name: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    cpath = tmp_path / f"{name}.json"
    cpath.write_bytes(corpus)
    m = {"apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun", "metadata": {"name": name},
         "spec": {"query": QUERY, "corpus": {"uri": str(cpath)},
                  "budget": {"maxAgents": 1, "maxDepth": 5, "maxFanoutPerNode": 3, "maxSteps": 30, "maxParallel": 4},
                  "steps": {"retries": 0, "timeoutSeconds": 120}}}
    mpath = tmp_path / f"{name}.yaml"
    mpath.write_text(yaml.safe_dump(m))
    store = tmp_path / f"store-{name}"
    proc = subprocess.run([sys.executable, "-m", "searchrun", "run", str(mpath), "--store", f"file://{store}"],
                          capture_output=True, text=True, timeout=300)
    lineage = next(store.glob("runs/*/lineage.json"), None) if store.exists() else None
    return proc, (json.loads(lineage.read_text()) if lineage else None)


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_bad_corpus_runs_or_fails_clearly(tmp_path, name):
    corpus, expect = CORPORA[name]
    proc, lineage = run_local(tmp_path, corpus, name)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out[-3000:]
    if expect == "ok":
        assert proc.returncode == 0, out[-3000:]
        st_ = lineage["status"]
        assert st_["phase"] == "Succeeded"
        docs = [s["doc"] for s in st_["steps"] if s["type"] == "traverse_node"]
        assert len(docs) == len(set(docs)), "no document traversed twice (cycles, self-links)"
        known = set(json.loads(corpus)["documents"])
        assert set(docs) <= known, "missing links are never traversed"
        if name == "cycle":  # one seed walks the ring a -> b -> c and stops where it closes (c -> a)
            assert sorted(docs) == ["a", "b", "c"] and st_["maxDepthReached"] == 3, st_["steps"]
    else:
        # a corpus that cannot be read is bad input: refused before anything runs, with the reason
        assert proc.returncode in (1, 2), out[-3000:]
        assert expect in out, out[-3000:]
        assert lineage is None or lineage["status"]["phase"] == "Failed"


# ------------------------------------------------------------------ malformed step results

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=12)
RESULT_FIELDS = ["tokens", "costUSD", "output", "decision", "intent", "seeds", "found", "next", "answers"]
RESULTS = st.one_of(
    JSON,
    st.dictionaries(st.sampled_from(RESULT_FIELDS), JSON, max_size=6),
    # what the reconciler passes: the bytes it read from the store
    st.dictionaries(st.sampled_from(RESULT_FIELDS), JSON, max_size=6).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=60),
)


def _job(state: str) -> dict:
    cond = {"succeeded": "Complete", "failed": "Failed"}[state]
    return {"metadata": {"name": "sr-0123456789-detect", "labels": {"searchrun.dev/step-id": "detect"},
                         "annotations": {"searchrun.dev/attempt": "1"}},
            "status": {"conditions": [{"type": cond, "status": "True"}], "succeeded": 1}}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(result=RESULTS)
def test_any_step_result_is_accepted_or_fails_the_step_clearly(result):
    """Whatever a step leaves as its result, the operator's reader neither raises nor
    accepts a result outside the shape: it fails the step with 'malformed step result'."""
    obs = observe_job(_job("succeeded"), result)
    if obs.state == "failed":
        assert obs.final and obs.message.startswith("malformed step result:"), obs.message
    else:
        assert obs.state == "succeeded"
        r = obs.result
        assert isinstance(r.tokens, int) and r.tokens >= 0 and r.costUSD >= 0
        assert all(isinstance(x, str) and 0 < len(x) <= 256 for x in r.next + r.seeds)
        assert r.intent in (None, "simple", "deep")

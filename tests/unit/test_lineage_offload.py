"""Past a size threshold the lineage moves to the artifact store and status keeps a summary."""

import json

from searchrun.api import SearchRunSpec
from searchrun.artifacts import open_store, read_uri
from searchrun.engine import Decision
from searchrun.executors.kube.config import OperatorConfig
from searchrun.executors.kube.lineage_store import restore_status
from searchrun.executors.kube.reconciler import RunReconciler
from support.simulation import SyntheticGraph, graph_outcome, simulate


class _NoCache:
    def jobs(self, uid):
        return []


def test_big_lineage_is_offloaded_and_read_back(tmp_path):
    spec = SearchRunSpec(query="q", budget=dict(maxAgents=10, maxDepth=5, maxFanoutPerNode=10, maxSteps=2000,
                                                maxParallel=20, maxTokens=10_000_000, deadlineSeconds=86400))
    status = simulate(spec, graph_outcome(SyntheticGraph(20000, branching=12)), run_uid="abc").status
    assert len(status.steps) == 2000
    r = RunReconciler(None, _NoCache(), OperatorConfig(lineageOffloadBytes=65536, artifacts=f"file://{tmp_path}"),
                      "ns", "big", "abc", events=None)
    r.spec, r.store, r.store_uri = spec, open_store(f"file://{tmp_path}"), f"file://{tmp_path}"
    body = r._status_body(Decision(status=status))["status"]
    assert len(json.dumps(body)) < 65536, "status stays small"
    assert body["lineageSummary"]["steps"] == 2000
    assert body["lineageSummary"]["byType"]["traverse_node"] > 1900
    doc = json.loads(read_uri(body["lineageURI"]))
    assert len(doc["status"]["steps"]) == 2000 and doc["run"]["uid"] == "abc"


def test_small_lineage_stays_in_status(tmp_path):
    spec = SearchRunSpec(query="q")
    status = simulate(spec, graph_outcome(SyntheticGraph(50)), run_uid="abc").status
    r = RunReconciler(None, _NoCache(), OperatorConfig(artifacts=f"file://{tmp_path}"), "ns", "small", "abc", events=None)
    r.spec, r.store = spec, open_store(f"file://{tmp_path}")
    body = r._status_body(Decision(status=status))["status"]
    assert len(body["steps"]) == len(status.steps) and body["lineageURI"] is None


def test_a_restarted_operator_reads_the_offloaded_lineage(tmp_path):
    """The stored lineage wins over the trimmed status."""
    spec = SearchRunSpec(query="q", budget=dict(maxAgents=10, maxDepth=5, maxFanoutPerNode=10, maxSteps=600,
                                                maxParallel=20, maxTokens=10_000_000, deadlineSeconds=86400))
    status = simulate(spec, graph_outcome(SyntheticGraph(5000, branching=12)), run_uid="abc").status
    cfg = OperatorConfig(lineageOffloadBytes=8192, artifacts=f"file://{tmp_path}")
    r = RunReconciler(None, _NoCache(), cfg, "ns", "big", "abc", events=None)
    r.spec, r.store, r.store_uri = spec, open_store(f"file://{tmp_path}"), f"file://{tmp_path}"
    body = r._status_body(Decision(status=status))["status"]

    restored, offloaded = restore_status(body, read_uri)
    assert offloaded and len(restored.steps) == 600
    assert [x.id for x in restored.steps] == [x.id for x in status.steps]
    # without a store to read, the trimmed status is all there is
    trimmed, offloaded = restore_status(body, None)
    assert not offloaded and len(trimmed.steps) < 600

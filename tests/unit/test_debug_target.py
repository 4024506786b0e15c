"""Which run `searchrun get|logs|rerun-step` reads (a store's or a cluster's), and where a cluster
run's store is. Against a real cluster: tests/integration/test_debug_cluster.py."""

from __future__ import annotations

from searchrun.api import SearchRunStatus
from searchrun.cli_cluster import store_uri_of
from searchrun.cli_debug import Cluster, on_cluster


def test_the_cluster_is_read_when_asked_or_when_nothing_local_is_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert on_cluster("quantum-ml", None, Cluster())  # no store, no ./searchrun-runs, a kubeconfig
    assert not on_cluster("quantum-ml", "file:///x", Cluster())  # --store: a store's run
    assert on_cluster("quantum-ml", "s3://b", Cluster(namespace="team-a"))  # -n: the cluster (the store for its lineage)
    assert on_cluster("quantum-ml", None, Cluster(context="kind"))
    assert not on_cluster("quantum-ml", None, None)
    (tmp_path / "searchrun-runs").mkdir()
    assert not on_cluster("0123456789abcdef", None, Cluster())  # local runs here
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    (tmp_path / "searchrun-runs").rmdir()
    assert not on_cluster("quantum-ml", None, Cluster())  # no kubeconfig: a local run (the error says so)


def test_a_cluster_runs_store_comes_from_the_flag_the_spec_or_the_status():
    obj = {"metadata": {"uid": "u1"}, "spec": {}}
    st = SearchRunStatus.model_validate({"reportURI": "s3://bucket/team/runs/u1/report.html"})
    assert store_uri_of(obj, st, "file:///copy") == "file:///copy"
    assert store_uri_of({**obj, "spec": {"artifacts": {"uri": "s3://other"}}}, st, None) == "s3://other"
    assert store_uri_of(obj, st, None) == "s3://bucket/team"
    lineage = SearchRunStatus.model_validate({"lineageURI": "s3://bucket/runs/u1/lineage.json"})
    assert store_uri_of(obj, lineage, None) == "s3://bucket"
    out = SearchRunStatus.model_validate({"steps": [{"id": "detect", "type": "detect_intent", "output": "s3://b/runs/u1/steps/detect/a1/output.json"}]})
    assert store_uri_of(obj, out, None) == "s3://b"
    assert store_uri_of(obj, SearchRunStatus.model_validate({"reportURI": "s3://b/runs/u2/report.html"}), None) is None

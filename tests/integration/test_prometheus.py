"""Prometheus against the operator's metrics, the chart's alert rules and its Grafana dashboard.

* ``promtool check rules`` on the PrometheusRule the chart renders, and on the dashboard's
  queries (as recording rules: PromQL syntax and functions).
* ``promtool test rules``: each alert fires on synthetic series that should fire it, and the
  stuck-steps alert stays quiet while steps finish.
* On the cluster: the chart installed in a ``srhelm-prom-*`` namespace; Debian's real
  Prometheus (127.0.0.1, random port, temporary storage) scrapes the operator pod as the
  ServiceMonitor would, with the rendered rules loaded. After runs that succeed, fail, hit a
  budget, get rejected and get stuck, every dashboard query and every alert expression returns
  data through Prometheus's HTTP API, every alert fires, and ``promtool check metrics`` passes
  on the operator's /metrics.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from support.s3server import free_port
from test_chart import BUCKET, CHART, HACK, HelmRelease, by_kind, example, one, render

DASHBOARD = CHART / "files" / "dashboard.json"
# What Grafana substitutes in the dashboard's queries, for running them against Prometheus.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "15s", "$__range": "10m"}
# Queries that may be all NaN (data, but no observation in the window) for a known reason.
# searchrun_step_duration_seconds: the operator takes a step's end from the Job's completionTime,
# but Kubernetes >= 1.31 marks a Job SuccessCriteriaMet (which the operator already counts as
# success) before it sets Complete and completionTime, so most durations are never observed.
# Fix in operator/searchrun/executors/kube/run_metrics.py:job_duration (see the chart's report).
MAY_BE_NAN: tuple[str, ...] = ()  # every dashboard query must return a finite value


def prometheus_dir() -> Path:
    r = subprocess.run([str(HACK / "prometheus" / "install.sh")], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"hack/prometheus/install.sh failed: {r.stderr[-2000:]}")
        pytest.skip(f"Prometheus not available: {r.stderr[-500:]}")
    return Path(r.stdout.strip().splitlines()[-1])


def promtool(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(prometheus_dir() / "promtool"), *args], input=input, capture_output=True, text=True, timeout=120)


def rule_groups(values: dict | None = None) -> dict:
    """The PrometheusRule's groups, as a Prometheus rules file."""
    v = {"metrics": {"prometheusRule": {"enabled": True}}}
    if values:
        v["metrics"]["prometheusRule"].update(values)
    (rule,) = by_kind(render(v), "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def alert_rules(groups: dict) -> list[dict]:
    return [r for g in groups["groups"] for r in g["rules"] if "alert" in r]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, Grafana's variables substituted."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            expr = t["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"{p['title']}: unknown variable in {expr}"
            out.append((f"{p['title']} [{t['refId']}]", expr))
    return out


# ------------------------------------------------------------------ offline: promtool


def test_promtool_check_rules_on_the_rendered_prometheusrule(tmp_path):
    f = tmp_path / "rules.yaml"
    f.write_text(yaml.safe_dump(rule_groups()))
    r = promtool("check", "rules", str(f))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 5 rules found" in r.stdout, r.stdout
    names = [a["alert"] for a in alert_rules(rule_groups())]
    assert names == ["SearchRunsFailing", "SearchRunStepsFailing", "SearchRunBudgetExhaustion", "SearchRunStepsStuck",
                     "SearchRunStepsWaitOnCluster"]
    for a in alert_rules(rule_groups()):
        assert a["labels"]["severity"] and a["annotations"]["summary"] and a["annotations"]["description"]


def test_dashboard_has_the_panels_and_its_queries_are_valid_promql(tmp_path):
    dash = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in dash["panels"]]
    for want in ("Fan-out per node", "Active step Jobs", "Depth reached", "Step duration by type (p50, p95)",
                 "Tokens by namespace", "Cost by namespace", "Admission rejections by reason", "Runs by phase",
                 "Steps waiting on the cluster vs the operator (p50)"):
        assert want in titles
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    assert all(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for p in dash["panels"])
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource"]
    text = json.dumps(dash)
    for metric in ("searchrun_fanout_per_node_bucket", "searchrun_active_jobs", "searchrun_depth_reached_bucket",
                   "searchrun_step_duration_seconds_bucket", "searchrun_tokens_total", "searchrun_cost_usd_total",
                   "searchrun_admission_rejections_total", "searchrun_runs", "searchrun_step_queue_seconds_bucket",
                   "searchrun_step_handoff_seconds_bucket"):
        assert metric in text
    # every query as a recording rule: promtool parses and type-checks the PromQL
    rules = [{"record": f"dashboard:q{i}", "expr": expr} for i, (_, expr) in enumerate(dashboard_queries())]
    f = tmp_path / "dashboard-queries.yaml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = promtool("check", "rules", str(f))
    assert r.returncode == 0, r.stdout + r.stderr


def _queue_series(queue_s: float, handoff_s: float) -> list[dict]:
    """Histogram series of searchrun_step_queue_seconds{phase=pod_running} and of
    searchrun_step_handoff_seconds: 10 observations a minute, each of the given value."""
    from searchrun import metrics

    def hist(name: str, buckets, value: float, labels: str) -> list[dict]:
        out = [{"series": f'{name}_bucket{{{labels}le="{le}"}}', "values": f"0+{10 if value <= le else 0}x40"}
               for le in buckets]
        out.append({"series": f'{name}_bucket{{{labels}le="+Inf"}}', "values": "0+10x40"})
        return out

    return (hist("searchrun_step_queue_seconds", metrics.STEP_QUEUE._upper_bounds[:-1], queue_s, 'phase="pod_running",')
            + hist("searchrun_step_handoff_seconds", metrics.STEP_HANDOFF._upper_bounds[:-1], handoff_s, ""))


def test_alerts_fire_on_synthetic_series(tmp_path):
    """promtool's rule unit tests: the default thresholds and windows of values.yaml."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups()))
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {   # one run fails: runs Failed 0 -> 1
                "interval": "1m",
                "input_series": [{"series": 'searchrun_runs{phase="Failed"}', "values": "0 0 0 1 1 1"}],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "SearchRunsFailing", "exp_alerts": []},
                    {"eval_time": "5m", "alertname": "SearchRunsFailing",
                     "exp_alerts": [{"exp_labels": {"severity": "warning"}, "exp_annotations": {
                         "summary": "SearchRuns are failing",
                         "description": "1 SearchRun(s) failed in the last 15m. `kubectl describe searchrun` names the step and its error."}}]},
                ],
            },
            {   # half the steps fail for 20 minutes
                "interval": "1m",
                "input_series": [
                    {"series": 'searchrun_steps_finished_total{step_type="traverse_node",outcome="succeeded"}', "values": "0+2x40"},
                    {"series": 'searchrun_steps_finished_total{step_type="traverse_node",outcome="failed"}', "values": "0+2x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": "SearchRunStepsFailing",
                     "exp_alerts": [{"exp_labels": {"severity": "warning"}, "exp_annotations": {
                         "summary": "Many SearchRun steps fail",
                         "description": "50% of the steps that finished in the last 15m failed (after their retries)."}}]},
                    {"eval_time": "30m", "alertname": "SearchRunStepsStuck", "exp_alerts": []},
                ],
            },
            {   # maxSteps stops a run every 3 minutes
                "interval": "1m",
                "input_series": [{"series": 'searchrun_budget_exhaustions_total{budget="maxSteps"}', "values": "0+0.34x60"}],
                "alert_rule_test": [
                    {"eval_time": "40m", "alertname": "SearchRunBudgetExhaustion",
                     "exp_alerts": [{"exp_labels": {"severity": "info", "budget": "maxSteps"}, "exp_annotations": {
                         "summary": "SearchRuns keep hitting a budget",
                         "description": "10.2 run(s) were stopped by budget maxSteps in the last 30m: "
                                        "the budgets may be too small for the queries."}}]},
                ],
            },
            {   # two Jobs active, no step finishes for 30 minutes (and none ever: no series at all)
                "interval": "1m",
                "input_series": [{"series": "searchrun_active_jobs", "values": "2x40"}],
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "SearchRunStepsStuck", "exp_alerts": []},   # for: 5m
                    {"eval_time": "30m", "alertname": "SearchRunStepsStuck",
                     "exp_alerts": [{"exp_labels": {"severity": "warning"}, "exp_annotations": {
                         "summary": "SearchRun steps are stuck",
                         "description": "2 step Job(s) are active but no step finished in the last 15m: "
                                        "look for pods that cannot start (image, quota, scheduling)."}}]},
                ],
            },
            {   # the Job controller is throttled: a step waits 30 s for its pod, the operator hands off in 50 ms
                "interval": "1m",
                "input_series": _queue_series(queue_s=30, handoff_s=0.05),
                "alert_rule_test": [
                    {"eval_time": "8m", "alertname": "SearchRunStepsWaitOnCluster", "exp_alerts": []},  # for: 10m
                    {"eval_time": "30m", "alertname": "SearchRunStepsWaitOnCluster",
                     "exp_alerts": [{"exp_labels": {"severity": "info"}, "exp_annotations": {
                         "summary": "SearchRun steps wait on the cluster, not on the operator",
                         "description": "The median step Job waited 25s for its pod over the last 15m, more than 10 times "
                                        "the operator's median hand-off: look at the kube-controller-manager's client limits "
                                        "(--kube-api-qps, --kube-api-burst, --concurrent-job-syncs), API Priority and "
                                        "Fairness, quotas or Kueue admission."}}]},
                ],
            },
            {   # pods start in 1.5 s: below minSeconds, however quick the operator
                "interval": "1m",
                "input_series": _queue_series(queue_s=1.5, handoff_s=0.01),
                "alert_rule_test": [{"eval_time": "30m", "alertname": "SearchRunStepsWaitOnCluster", "exp_alerts": []}],
            },
            {   # the operator is slow too (a starved operator): its hand-off is not 10 times quicker
                "interval": "1m",
                "input_series": _queue_series(queue_s=30, handoff_s=5),
                "alert_rule_test": [{"eval_time": "30m", "alertname": "SearchRunStepsWaitOnCluster", "exp_alerts": []}],
            },
            {   # steps finish now and then: not stuck
                "interval": "1m",
                "input_series": [
                    {"series": "searchrun_active_jobs", "values": "2x40"},
                    {"series": 'searchrun_steps_finished_total{step_type="traverse_node",outcome="succeeded"}', "values": "0+1x40"},
                ],
                "alert_rule_test": [{"eval_time": "30m", "alertname": "SearchRunStepsStuck", "exp_alerts": []}],
            },
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    r = subprocess.run([str(prometheus_dir() / "promtool"), "test", "rules", "tests.yaml"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


# ------------------------------------------------------------------ live: Prometheus scrapes the operator


class Prometheus:
    """Debian's prometheus on 127.0.0.1 with a random port and a temporary storage folder."""

    def __init__(self, workdir: Path, target: str, rules: dict):
        self.workdir = workdir
        self.port = free_port("127.0.0.1")
        (workdir / "rules.yaml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(workdir / "rules.yaml")],
            # as the chart's ServiceMonitor: the metrics Service's endpoint, /metrics, honor_labels
            "scrape_configs": [{"job_name": "searchrun-operator", "metrics_path": "/metrics", "honor_labels": True,
                                "static_configs": [{"targets": [target]}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(prometheus_dir() / "prometheus"), f"--config.file={self.workdir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--storage.tsdb.retention.time=1h"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited: {self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"prometheus not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def api(self, path: str, **params) -> dict:
        url = f"{self.url}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def value(self, expr: str) -> float | None:
        res = self.query(expr)
        return float(res[0]["value"][1]) if res else None


STUCK_WINDOW = 20  # seconds: the stuck-steps alert's window in this test

PROM_TEST_VALUES = {
    "policy": {"mode": "reject", "clamp": ["maxParallel"], "caps": {"maxAgents": 4, "maxParallel": 3}},
    "metrics": {"prometheusRule": {
        "runsFailing": {"threshold": 0, "window": "10m", "for": "0m"},
        "stepsFailing": {"ratio": 0, "window": "10m", "for": "0m"},
        "budgetExhaustion": {"threshold": 0, "window": "10m", "for": "0m"},
        "stepsStuck": {"window": f"{STUCK_WINDOW}s", "for": "0m"},
        # real pods on the one kubelet start in a second or more, the operator hands off in ms
        "stepsWaitOnCluster": {"ratio": 1, "minSeconds": 0, "window": "10m", "for": "0m"},
    }},
}


@pytest.fixture
def prom_release(cluster):
    rel = HelmRelease(cluster, "srhelm-prom", PROM_TEST_VALUES, install_crd=False)
    try:
        yield rel
    finally:
        rel.teardown()


def _wait_all(rel: HelmRelease, names: list[str]) -> dict[str, dict]:
    return {n: rel.wait_finished(n, timeout=240) for n in names}


@pytest.mark.cluster
@pytest.mark.s3
def test_prometheus_scrapes_the_operator_and_every_query_and_alert_has_data(cluster, prom_release, tmp_path):
    t0 = time.monotonic()
    rel = prom_release.setup()
    bad_corpus = f"corpora/{uuid.uuid4().hex}.json"
    rel.s3.client().put_object(Bucket=BUCKET, Key=bad_corpus, Body=b'{"documents": {"a": ')  # truncated JSON

    # Prometheus scrapes the pod behind the chart's metrics Service, as the ServiceMonitor would
    slices = json.loads(rel.kubectl("get", "endpointslices", "-l", f"kubernetes.io/service-name={rel.fullname}-metrics",
                                    "-o", "json").stdout)["items"]
    (ip,) = [a for s in slices for ep in s.get("endpoints") or [] for a in ep["addresses"]]
    (port,) = [p["port"] for s in slices for p in s["ports"]]
    rules = {"groups": one(render(dict(PROM_TEST_VALUES, metrics={"prometheusRule": dict(
        PROM_TEST_VALUES["metrics"]["prometheusRule"], enabled=True)})), "PrometheusRule")["spec"]["groups"]}
    prom = Prometheus(tmp_path, f"{ip}:{port}", rules)
    prom.start()
    try:
        deadline = time.monotonic() + 30
        while prom.value('up{job="searchrun-operator"}') != 1.0:
            assert time.monotonic() < deadline, prom.api("targets")
            time.sleep(0.5)

        # Two waves, so that every labelled counter is seen before and after it grows (a series
        # is born at its first increment; rate() and increase() need two samples of it).
        def wave(i: int) -> list[str]:
            names = [f"budget-{i}", f"broken-{i}"]
            rel.apply(example(names[0], budget__maxSteps=7, budget__maxParallel=3))
            rel.apply(example(names[1], "searchrun-simple.yaml", corpus__uri=f"s3://{BUCKET}/{bad_corpus}", steps__retries=0))
            r = rel.apply(example(f"too-many-{i}", budget__maxAgents=9), check=False)
            assert "exceeds the cluster's limit of 4" in r.stderr, r.stderr
            return names

        runs = _wait_all(rel, wave(1))
        time.sleep(3)
        runs.update(_wait_all(rel, wave(2)))
        assert runs["budget-1"]["status"]["limitsHit"], runs["budget-1"]["status"]
        assert runs["broken-1"]["status"]["phase"] == "Failed"
        t_waves = time.monotonic() - t0

        # a run whose first step can never start: its Job stays active, no step finishes
        rel.apply(example("stuck", "searchrun-simple.yaml", steps__image="localhost/searchrun-absent:0.0.0",
                          steps__imagePullPolicy="Never"))
        deadline = time.monotonic() + 120
        while not prom.query("ALERTS{alertname=\"SearchRunStepsStuck\",alertstate=\"firing\"}"):
            assert time.monotonic() < deadline, (prom.query("searchrun_active_jobs"), rel.logs())
            time.sleep(1)

        # every dashboard query has data, with at least one real number
        empty, nan_only = [], []
        for title, expr in dashboard_queries():
            res = prom.query(expr)
            if not res:
                empty.append(f"{title}: {expr}")
            elif not any(math.isfinite(float(s["value"][1])) for s in res) and not any(m in expr for m in MAY_BE_NAN):
                nan_only.append(f"{title}: {expr} -> {res}")
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
        assert not nan_only, "dashboard queries with only NaN:\n" + "\n".join(nan_only)
        ns = {s["metric"].get("namespace") for s in prom.query("sum by (namespace) (rate(searchrun_tokens_total[5m]))")}
        assert ns == {rel.namespace}, "tokens are labelled with the run's namespace (honor_labels)"

        # every alert expression returns data, and every alert fires
        for rule in alert_rules(rules):
            assert prom.query(rule["expr"]), f"{rule['alert']}: no data for {rule['expr']}"
        health = {r["name"]: (r["health"], r.get("lastError")) for g in prom.api("rules")["groups"] for r in g["rules"]}
        assert all(h == "ok" for h, _ in health.values()), health
        firing = {a["labels"]["alertname"] for a in prom.api("alerts")["alerts"] if a["state"] == "firing"}
        assert firing == {r["alert"] for r in alert_rules(rules)}, firing

        # the operator's exposition passes promtool's lint
        text = rel.metrics_text()
        r = promtool("check", "metrics", input=text)
        assert r.returncode == 0, r.stdout + r.stderr
        for name in ("searchrun_runs", "searchrun_active_jobs", "searchrun_fanout_per_node_bucket",
                     "searchrun_budget_exhaustions_total", "searchrun_admission_rejections_total",
                     "searchrun_step_queue_seconds_bucket", "searchrun_step_handoff_seconds_bucket"):
            assert re.search(rf"^{name}\{{", text, re.M) or re.search(rf"^{name} ", text, re.M), name
    finally:
        prom.stop()
    sys.stderr.write(f"\n[prometheus] install {rel.install_seconds:.0f} s, runs {t_waves:.0f} s, "
                     f"whole test {time.monotonic() - t0:.0f} s\n")

"""Fan-out at scale, measured against the limit (issue 7). Prints a table; not a test.

    hack/local-cluster.sh up                      # else the bench brings it up (and leaves it up); kwok: hack/kwok.sh
    flock /tmp/searchrun-cluster.lock .venv/bin/python bench/bench_scale.py --mode jobs   # limit,wide,deep,many,big
    flock /tmp/searchrun-cluster.lock .venv/bin/python bench/bench_scale.py --mode pods --only limit,wide,deep,many

No step program runs and only orchestration is measured. Two ways to finish a step Job:

``--mode pods``: Kubernetes' own Job controller runs the Jobs; their pods run on a *simulated* node
(kwok, built from its Go module by hack/kwok.sh). The node carries the taint
``kwok.x-k8s.io/node=fake:NoSchedule``, so nothing else lands there, and the operator places step pods
there through its ``stepPodTemplate`` (nodeSelector + toleration). kwok's stages take a pod to Running,
then (after ``--pod-ms``) to Succeeded. This is the whole real pipeline, and on this cluster it is
bounded by kube-controller-manager's own client rate limit (``--kube-api-qps`` 20 by default).

``--mode jobs``: the operator hands its Jobs to another Job controller (``stepJobManagedBy``, the
``spec.managedBy`` field that MultiKueue uses): Kubernetes' Job controller leaves them alone and no pod
is created; this process completes each Job itself (one status write, after ``--job-ms``). Only the
operator, the API server and etcd are in the loop: the operator's own limit.

In both modes a *fake step driver* in this process stands in for the step program: it watches the step
Jobs and, as soon as a Job is ADDED, writes the step's ``result.json`` to S3 (where the operator reads
it), drawn from a synthetic document graph (``tests/support/simulation.py``: ``SyntheticGraph``). In pods mode the
result is written long before the pod can complete (the Job controller, scheduler and kwok come first,
then ``--pod-ms``); in jobs mode the Job is completed only after its result is written. The bench counts
results that were late anyway ("late results" must be 0).

The same watch times every Job: ADDED, and the first event where it has succeeded (the Job condition
SuccessCriteriaMet or Complete, whichever comes first: what the operator acts on). The operator runs as
a process (``tests/support/operator_process.py``) under its own ServiceAccount, and a FlowSchema
(priority level ``exempt``, so nothing is throttled) attributes its API requests: the API server's
``apiserver_flowcontrol_dispatched_requests_total{flow_schema="searchrun-bench-operator"}``. All
requests of all clients (``apiserver_request_total``) are counted too. Operator CPU from
/proc/<pid>/stat, peak RSS = VmHWM (one fresh operator process per scenario).
"""

from __future__ import annotations

import argparse
import base64
import bisect
import heapq
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.operator_process import Operator  # noqa: E402
from support.s3server import S3Server, free_port  # noqa: E402
from support.simulation import SyntheticGraph  # noqa: E402

from searchrun.artifacts import S3Store, result_key  # noqa: E402
from searchrun.engine import StepResult  # noqa: E402
from searchrun.executors.kube.fanout import members, parse_indexes  # noqa: E402
from searchrun.executors.kube.jobs import job_state  # noqa: E402
from searchrun.steps import STEP_ENV, StepContext  # noqa: E402
from searchrun.steps.context import INDEX_ENV, STEPS_URI_ENV, indexed_context  # noqa: E402

KWOK_NODE = "srbench-kwok-0"
KWOK_LABEL = ("searchrun.dev/bench", "kwok")
TAINT = {"key": "kwok.x-k8s.io/node", "operator": "Equal", "value": "fake", "effect": "NoSchedule"}
POD_TEMPLATE = {"nodeSelector": {KWOK_LABEL[0]: KWOK_LABEL[1]}, "tolerations": [TAINT]}
OP_SA, OP_NS, FLOW_SCHEMA = "searchrun-bench-operator", "srbench-system", "searchrun-bench-operator"
JOB_SELECTOR = "app.kubernetes.io/managed-by=searchrun"
MANAGED_BY = "searchrun.dev/bench-driver"  # jobs mode: the Jobs' spec.managedBy (this process completes them)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# ------------------------------------------------------------------ the cluster


# The operator's requests whose server-side time the bench reports: what a hand-off waits on.
LATENCY_OF = {("apiserver", "POST", "jobs", ""): "POST jobs", ("apiserver", "PATCH", "searchruns", "status"): "PATCH searchruns/status",
              ("etcd", "create", "jobs", ""): "etcd create jobs", ("etcd", "update", "searchruns", ""): "etcd update searchruns"}


def metric_labels(text: str) -> dict[str, str]:
    """The labels of a /metrics line, between its braces (no commas inside values here)."""
    return {k: v.strip('"') for k, v in (kv.split("=", 1) for kv in text.split(",") if "=" in kv)}


def latency_key(line: str) -> Optional[tuple[str, str]]:
    """(LATENCY_OF's name, "sum" or "count") of a request-duration line of /metrics, if it is one of those."""
    metric, rest = line.split("{", 1) if "{" in line else (line.split(" ", 1)[0], "")
    part = metric.rsplit("_", 1)[-1]
    if part not in ("sum", "count") or not rest:
        return None
    lab = metric_labels(rest.rsplit("}", 1)[0])
    if metric.startswith("apiserver_"):
        if lab.get("dry_run"):
            return None
        name = LATENCY_OF.get(("apiserver", lab.get("verb"), lab.get("resource"), lab.get("subresource", "")))
    else:
        name = LATENCY_OF.get(("etcd", lab.get("operation"), lab.get("resource"), ""))
    return (name, part) if name else None


class Cluster:
    def __init__(self):
        script = str(REPO / "hack/local-cluster.sh")
        if subprocess.run([script, "status"], capture_output=True).returncode:
            # as a test session does; left up for whoever comes next (SEARCHRUN_KEEP_CLUSTER)
            log("the local cluster is not up: hack/local-cluster.sh up")
            subprocess.run([script, "up"], capture_output=True, check=True)
        out = subprocess.run([script, "env"], capture_output=True, text=True, check=True).stdout
        env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        self.kubeconfig, self.kubectl_path, self.host_ip = env["KUBECONFIG"], env["KUBECTL"], env["HOST_IP"]
        from kubernetes import config

        self.config = config
        self.api = config.new_client_from_config(self.kubeconfig)

    def new_api(self):
        return self.config.new_client_from_config(self.kubeconfig)

    def kubectl(self, *args, input=None, check=True):
        p = subprocess.run([self.kubectl_path, "--kubeconfig", self.kubeconfig, *args], input=input, capture_output=True, text=True)
        if check and p.returncode:
            raise RuntimeError(f"kubectl {' '.join(args[:3])}: {p.stderr}")
        return p

    def apply(self, *docs: dict) -> None:
        self.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in docs))

    def version(self) -> str:
        v = json.loads(self.kubectl("version", "-o", "json").stdout)
        return v.get("serverVersion", {}).get("gitVersion", "?")

    def api_counts(self) -> tuple[float, float, dict]:
        """(all requests, the operator's requests, operator-relevant breakdown) from the API server's /metrics."""
        text = self.kubectl("get", "--raw", "/metrics").stdout
        total = op = 0.0
        by: dict[str, float] = {}
        self.last_by_client = clients = {}  # flow schema -> requests dispatched: who sent them (see CLIENTS)
        self.last_latency = latency = {}  # the operator's requests, as served: key -> [seconds, count]
        for line in text.splitlines():
            if line.startswith(("apiserver_request_duration_seconds_", "etcd_request_duration_seconds_")):
                key = latency_key(line)
                if key:
                    latency.setdefault(key[0], [0.0, 0.0])[key[1] == "count"] += float(line.rsplit(" ", 1)[1])
                continue
            if line.startswith("apiserver_request_total{"):
                labels, value = line.rsplit(" ", 1)
                total += float(value)
                lab = metric_labels(labels[len("apiserver_request_total{"):-1])
                key = f"{lab.get('verb')} {lab.get('resource')}" + (f"/{lab['subresource']}" if lab.get("subresource") else "")
                by[key] = by.get(key, 0.0) + float(value)
            elif line.startswith("apiserver_flowcontrol_dispatched_requests_total{"):
                fs = line.split('flow_schema="', 1)[1].split('"', 1)[0]
                clients[fs] = clients.get(fs, 0.0) + float(line.rsplit(" ", 1)[1])
                if fs == FLOW_SCHEMA:
                    op += float(line.rsplit(" ", 1)[1])
        return total, op, by

    def controller_manager_limits(self) -> str:
        """The running kube-controller-manager's client limits (its command line; stock if absent)."""
        try:
            pid = int(Path(self.kubeconfig).parent.joinpath("pids", "kube-controller-manager.pid").read_text())
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError):
            return "?"
        flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
        return (f"--kube-api-qps {flags.get('kube-api-qps', '20')} --kube-api-burst {flags.get('kube-api-burst', '30')} "
                f"--concurrent-job-syncs {flags.get('concurrent-job-syncs', '5')}")

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of the control plane's processes (their pid files)."""
        out = {}
        for name in ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler"):
            try:
                out[name] = proc_cpu(int(Path(self.kubeconfig).parent.joinpath("pids", f"{name}.pid").read_text()))
            except (OSError, ValueError):
                pass
        return out

    def wait_namespace_gone(self, ns: str, timeout: float = 900) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.kubectl("get", "namespace", ns, check=False).returncode:
                return time.monotonic() - t0
            time.sleep(1)
        log(f"namespace {ns} still there after {timeout:.0f}s")
        return time.monotonic() - t0


class OperatorIdentity:
    """A ServiceAccount for the operator, matched by a FlowSchema at priority level exempt: its API
    requests are counted apart from every other client's and never throttled."""

    def __init__(self, cluster: Cluster, workdir: Path):
        self.cluster = cluster
        self.kubectl = cluster.kubectl  # Operator() calls cluster.kubectl for its webhook checks
        self.host_ip = cluster.host_ip
        cluster.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OP_NS}},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": OP_SA, "namespace": OP_NS}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": OP_SA},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
             "subjects": [{"kind": "ServiceAccount", "name": OP_SA, "namespace": OP_NS}]},
            {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": FLOW_SCHEMA},
             "spec": {"matchingPrecedence": 50, "priorityLevelConfiguration": {"name": "exempt"},
                      "rules": [{"subjects": [{"kind": "ServiceAccount", "serviceAccount": {"name": OP_SA, "namespace": OP_NS}}],
                                 "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": True,
                                                    "namespaces": ["*"]}],
                                 "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}},
        )
        token = cluster.kubectl("-n", OP_NS, "create", "token", OP_SA, "--duration=24h").stdout.strip()
        admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
        ctx = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
        server = next(c for c in admin["clusters"] if c["name"] == ctx["cluster"])["cluster"]
        if "certificate-authority" in server and "certificate-authority-data" not in server:
            server = dict(server, **{"certificate-authority-data": base64.b64encode(Path(server.pop("certificate-authority")).read_bytes()).decode()})
        self.kubeconfig = str(workdir / "operator.kubeconfig")
        Path(self.kubeconfig).write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "op",
            "clusters": [{"name": "c", "cluster": server}],
            "users": [{"name": "op", "user": {"token": token}}],
            "contexts": [{"name": "op", "context": {"cluster": "c", "user": "op"}}]}))

    def cleanup(self) -> None:
        self.cluster.kubectl("delete", "flowschema", FLOW_SCHEMA, "--ignore-not-found", check=False)
        self.cluster.kubectl("delete", "clusterrolebinding", OP_SA, "--ignore-not-found", check=False)
        self.cluster.kubectl("delete", "namespace", OP_NS, "--ignore-not-found", "--wait=false", check=False)


# ------------------------------------------------------------------ kwok


def kwok_stages(pod_ms: int) -> str:
    """Pods on kwok's nodes: Pending -> Running at once, Running -> Succeeded after pod_ms (Job pods),
    deleted when asked. (Node stages: kwok's own, copied by hack/kwok.sh.)"""
    ready = """\
kind: Stage
apiVersion: kwok.x-k8s.io/v1alpha1
metadata: {name: bench-pod-running}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: 'DoesNotExist'}
    - {key: '.status.phase', operator: 'In', values: ['Pending']}
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {lastTransitionTime: {{ $now }}, status: "True", type: Initialized}
      - {lastTransitionTime: {{ $now }}, status: "True", type: Ready}
      - {lastTransitionTime: {{ $now }}, status: "True", type: ContainersReady}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image }}
        name: {{ .name }}
        ready: true
        restartCount: 0
        state: {running: {startedAt: {{ $now }}}}
      {{ end }}
      phase: Running
      startTime: {{ $now }}
"""
    complete = f"""\
kind: Stage
apiVersion: kwok.x-k8s.io/v1alpha1
metadata: {{name: bench-job-pod-succeeded}}
spec:
  resourceRef: {{apiGroup: v1, kind: Pod}}
  selector:
    matchExpressions:
    - {{key: '.metadata.deletionTimestamp', operator: 'DoesNotExist'}}
    - {{key: '.status.phase', operator: 'In', values: ['Running']}}
    - {{key: '.metadata.ownerReferences.[].kind', operator: 'In', values: ['Job']}}
  delay: {{durationMilliseconds: {pod_ms}}}
  next:
    statusTemplate: |
      {{{{ $now := Now }}}}
      containerStatuses:
      {{{{ range .spec.containers }}}}
      - image: {{{{ .image }}}}
        name: {{{{ .name }}}}
        ready: false
        restartCount: 0
        started: false
        state: {{terminated: {{exitCode: 0, reason: Completed, startedAt: '{{{{ $now }}}}', finishedAt: '{{{{ $now }}}}'}}}}
      {{{{ end }}}}
      phase: Succeeded
"""
    delete = """\
kind: Stage
apiVersion: kwok.x-k8s.io/v1alpha1
metadata: {name: bench-pod-delete}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: 'Exists'}
  next:
    finalizers: {empty: true}
    delete: true
"""
    return "---\n".join([ready, complete, delete])


class Kwok:
    def __init__(self, cluster: Cluster, workdir: Path, pod_ms: int):
        self.cluster, self.workdir, self.pod_ms = cluster, workdir, pod_ms
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        binary = subprocess.run([str(REPO / "hack/kwok.sh")], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        cfg = self.workdir / "kwok-stages.yaml"
        node_stages = [f.read_text() for f in sorted((Path(binary).parent / "stages").glob("node-*.yaml"))]  # kwok's own
        cfg.write_text("---\n".join(node_stages + [kwok_stages(self.pod_ms)]))
        self.cluster.apply({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": KWOK_NODE,
                         "labels": {KWOK_LABEL[0]: KWOK_LABEL[1], "type": "kwok", "kubernetes.io/hostname": KWOK_NODE,
                                    "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
                         "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"taints": [{k: v for k, v in TAINT.items() if k != "operator"}]},
            "status": {"allocatable": {"cpu": "1000", "memory": "1Ti", "pods": "1000000"},
                       "capacity": {"cpu": "1000", "memory": "1Ti", "pods": "1000000"}},
        })
        with open(self.workdir / "kwok.log", "ab") as logf:
            self.proc = subprocess.Popen([binary, "--kubeconfig", self.cluster.kubeconfig, "--config", str(cfg),
                                          "--manage-nodes-with-label-selector", "=".join(KWOK_LABEL),
                                          "--node-lease-duration-seconds", "40"],
                                         stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.workdir / "kwok.log").read_text()[-2000:]
            node = json.loads(self.cluster.kubectl("get", "node", KWOK_NODE, "-o", "json").stdout)
            if any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", [])):
                return
            time.sleep(0.5)
        raise RuntimeError("the kwok node did not become Ready")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.cluster.kubectl("delete", "node", KWOK_NODE, "--ignore-not-found", check=False)


# ------------------------------------------------------------------ the fake step driver + the measuring watch


def fake_result(step: dict, graph: SyntheticGraph, store_uri: str) -> StepResult:
    """What the step would have said, drawn from the synthetic graph (as tests/support/simulation.py does)."""
    t, k, allowance = step["type"], int(step.get("k", 2)), int(step.get("tokenAllowance", 0))
    if t == "detect_intent":
        return StepResult(tokens=min(20, allowance), intent="deep")
    if t == "plan_search":
        return StepResult(tokens=min(50, allowance), seeds=tuple(f"d{i}" for i in range(2 * k)))
    if t == "traverse_node":
        doc = step["doc"]
        return StepResult(tokens=min(300, allowance), found=doc in graph.answers, next=tuple(graph.children.get(doc, []))[: 2 * k])
    if t == "simple_search":
        return StepResult(tokens=min(100, allowance), found=True, answers=1)
    if t == "aggregate_results":
        return StepResult(found=True, answers=len(step.get("parents", [])))
    return StepResult(output=f"{store_uri}/bench-report.html")


class Driver:
    """One label-selected Job watch per namespace: writes each new step's result.json (a thread pool),
    completes the Job itself when ``complete_after`` is set (jobs mode), and records when each Job was
    ADDED and first seen succeeded."""

    def __init__(self, cluster: Cluster, s3: S3Server, graph: SyntheticGraph, complete_after: Optional[float] = None):
        self.cluster, self.graph, self.complete_after = cluster, graph, complete_after
        self.local = threading.local()
        self.due: list = []  # (when, name, job): Jobs to complete (jobs mode, complete_after > 0)
        self.due_lock = threading.Condition()
        self.s3client = s3.client()
        self.pool = ThreadPoolExecutor(8, thread_name_prefix="driver")
        self.jobs: dict[str, dict] = {}  # job name -> {added, complete, run, step, written, n}
        self.steps: dict[str, dict] = {}  # job name (#index for an Indexed Job) -> {added, complete, run, step, written}
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self.write_results = True

    def watch(self, ns: str) -> None:
        t = threading.Thread(target=self._watch, args=(ns,), daemon=True)
        t.start()
        self.threads.append(t)
        if self.complete_after and not any(t.name == "driver-timer" for t in self.threads):
            t = threading.Thread(target=self._timer, name="driver-timer", daemon=True)
            t.start()
            self.threads.append(t)

    def _write(self, name: str, job: dict) -> None:
        try:
            env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0].get("env", [])}
            n = len(members(job))
            keys = [f"{name}#{i}" for i in range(n)] if n else [name]
            group = None
            if n:  # an Indexed Job (PerFanout): its steps by index, in the store (one read for the Job)
                uri = env[STEPS_URI_ENV]
                raw = self.s3client.get_object(Bucket=uri.split("/")[2], Key=uri.split("/", 3)[3])["Body"].read()
                group = raw.decode()
            for i, key in enumerate(keys):  # each index's step, as its pod would find it
                ctx = StepContext.from_json(indexed_context({**env, INDEX_ENV: str(i)}, lambda _u: group) if n else env[STEP_ENV])
                store = S3Store(ctx.store_uri.split("/")[2], "/".join(ctx.store_uri.split("/")[3:]), client=self.s3client)
                r = fake_result(ctx.step, self.graph, ctx.store_uri)
                store.put_json(result_key(ctx.run_uid, ctx.step["stepId"], int(ctx.step["attempt"])), r.to_dict(), overwrite=True)
                with self.lock:
                    self.steps[key]["written"] = time.monotonic()
            if self.complete_after is not None:
                if self.complete_after > 0:  # later, without holding a pool thread
                    with self.due_lock:
                        heapq.heappush(self.due, (time.monotonic() + self.complete_after, name, job))
                        self.due_lock.notify()
                else:
                    self._complete(job)
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"{name}: {type(e).__name__}: {e}")

    def _timer(self) -> None:
        while not self.stop_ev.is_set():
            with self.due_lock:
                wait = (self.due[0][0] - time.monotonic()) if self.due else 0.2
                if wait > 0:
                    self.due_lock.wait(min(wait, 0.2))
                    continue
                _, name, job = heapq.heappop(self.due)
            self.pool.submit(self._complete_logged, name, job)

    def _complete_logged(self, name: str, job: dict) -> None:
        try:
            self._complete(job)
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"{name}: {type(e).__name__}: {e}")

    def _complete(self, job: dict) -> None:
        """What a Job controller writes when the Job's one pod succeeded (jobs mode)."""
        from kubernetes import client

        if not hasattr(self.local, "api"):
            self.local.api = client.BatchV1Api(self.cluster.new_api())
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        cond = {"status": "True", "lastProbeTime": now, "lastTransitionTime": now}
        n = len(members(job))
        status = {"startTime": now, "completionTime": now, "succeeded": max(1, n),
                  "conditions": [dict(cond, type="SuccessCriteriaMet"), dict(cond, type="Complete")]}
        if n:
            status["completedIndexes"] = "0" if n == 1 else f"0-{n - 1}"
        self.local.api.patch_namespaced_job_status(
            job["metadata"]["name"], job["metadata"]["namespace"], {"status": status},
            _content_type="application/merge-patch+json", _preload_content=False)

    def _watch(self, ns: str) -> None:
        from kubernetes import client, watch

        api = client.BatchV1Api(self.cluster.new_api())
        rv = None
        while not self.stop_ev.is_set():
            w = watch.Watch()
            try:
                kw = {"label_selector": JOB_SELECTOR, "timeout_seconds": 60, "allow_watch_bookmarks": True}
                if rv:
                    kw["resource_version"] = rv
                for ev in w.stream(api.list_namespaced_job, ns, **kw):
                    now = time.monotonic()
                    if ev["type"] == "ERROR":
                        rv = None
                        break
                    obj = ev["raw_object"]
                    rv = obj["metadata"].get("resourceVersion") or rv
                    if ev["type"] == "BOOKMARK":
                        continue
                    meta = obj["metadata"]
                    name = meta["name"]
                    group = members(obj)  # PerFanout: an Indexed Job's steps by index
                    with self.lock:
                        rec = self.jobs.get(name)
                        new = rec is None
                        if new:
                            labels = meta.get("labels") or {}
                            run = labels.get("searchrun.dev/run-uid")
                            rec = self.jobs[name] = {"added": now, "run": run, "step": labels.get("searchrun.dev/step-id"),
                                                     "n": len(group) or 1}
                            if group:
                                for i, (sid, _) in enumerate(group):
                                    self.steps[f"{name}#{i}"] = {"added": now, "run": run, "step": sid}
                            else:
                                self.steps[name] = rec
                        if "complete" not in rec and job_state(obj) == "succeeded":  # as the operator sees it
                            rec["complete"] = now
                        if group:  # a step of an Indexed Job is complete when its index is (what the operator acts on)
                            for i in parse_indexes((obj.get("status") or {}).get("completedIndexes")):
                                self.steps.get(f"{name}#{i}", {}).setdefault("complete", now)
                    if new and self.write_results and rec["run"]:
                        self.pool.submit(self._write, name, obj)
                    if self.stop_ev.is_set():
                        w.stop()
                        return
            except Exception as e:  # noqa: BLE001
                if not self.stop_ev.is_set():
                    log(f"driver watch {ns}: {type(e).__name__}: {e}; again")
                    time.sleep(0.5)

    def stop(self) -> None:
        self.stop_ev.set()
        self.pool.shutdown(wait=True)

    def snapshot(self) -> tuple[dict[str, dict], dict[str, dict]]:
        """(the Jobs, the steps): the same records under one Job per step."""
        with self.lock:
            return {k: dict(v) for k, v in self.jobs.items()}, {k: dict(v) for k, v in self.steps.items()}


# ------------------------------------------------------------------ hand-off latency


def handoffs(jobs: dict[str, dict], lineages: dict[str, dict]):
    """Hand-off latency, per run, from one watch (so watch delays cancel out); "complete" is when
    the watch first saw the Job succeeded, as the operator sees it.

    (a) startable → created: for the m-th Job of a run (in creation order), the moment it could
    start is the later of (1) its step becoming ready: its last parent completing (for the fan-in
    step: the last traverse step completing) and (2) a slot under maxParallel P: the (m-P)-th
    completion of the run. The time from then to the Job's ADDED is what orchestration adds.
    (b) parent complete → first child created: includes waiting for a slot under maxParallel.
    Also counts results written after their Job completed ("late", must be 0)."""
    ready_lat, child = [], []
    late = 0
    by_run: dict[str, dict[str, dict]] = {}
    for rec in jobs.values():
        if rec.get("run") and rec.get("step"):
            by_run.setdefault(rec["run"], {})[rec["step"]] = rec
            if "complete" in rec and "written" in rec and rec["written"] > rec["complete"]:
                late += 1
    for run, steps in by_run.items():
        lin = lineages.get(run)
        if not lin:
            continue
        P, types, parents = lin["P"], lin["types"], lin["parents"]
        completes = sorted(r["complete"] for r in steps.values() if "complete" in r)
        order = sorted(steps, key=lambda sid: steps[sid]["added"])
        children: dict[str, list[str]] = {}
        for sid, ps in parents.items():
            for p in ps:
                children.setdefault(p, []).append(sid)
        for m, sid in enumerate(order):  # m: 0-based
            added = steps[sid]["added"]
            if types.get(sid) in ("aggregate_results", "simple_search"):  # fan-in: after every earlier step
                before = [steps[x].get("complete") for x in order[:m]]
            else:
                before = [steps[p].get("complete") for p in parents.get(sid, []) if p in steps]
            if any(t is None for t in before) or (not before and m > 0):
                continue
            ready = max(before) if before else None
            if m >= P:
                if m - P >= len(completes):
                    continue
                slot = completes[m - P]
                ready = slot if ready is None else max(ready, slot)
            if ready is not None:
                ready_lat.append(added - ready)
        for sid, rec in steps.items():
            kids = [steps[k]["added"] for k in children.get(sid, []) if k in steps]
            if kids and "complete" in rec:
                child.append(min(kids) - rec["complete"])
    return ready_lat, child, late


# ------------------------------------------------------------------ scenarios


BENCH_POLICY = {"caps": {"maxAgents": 10, "maxDepth": 5, "maxFanoutPerNode": 10, "maxSteps": 10000, "maxParallel": 100,
                         "maxTokens": 100_000_000, "maxCostUSD": 10000, "deadlineSeconds": 86400}}


def row_key(tag: str, grouping: str) -> str:
    """A scenario's row: its shape, and ``-fanout`` under PerFanout (PerStep rows keep the shape's name)."""
    return tag if grouping == "PerStep" else f"{tag}-fanout"


def searchrun(name: str, ns: str, budget: dict, grouping: str = "PerStep") -> dict:
    return {"apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun", "metadata": {"name": name, "namespace": ns},
            "spec": {"query": "synthetic fan-out benchmark", "corpus": {"uri": "builtin:sample"}, "agent": {"type": "offline"},
                     "budget": dict({"maxTokens": 100_000_000, "maxCostUSD": 10000, "deadlineSeconds": 86400}, **budget),
                     "steps": {"retries": 0, "timeoutSeconds": 3600, "image": "localhost/searchrun:0.1.0", "jobGrouping": grouping},
                     "artifacts": {"uri": "s3://searchrun/runs"}}}


class Bench:
    def __init__(self, args):
        self.args = args
        self.cluster = Cluster()
        self.work = Path(tempfile.mkdtemp(prefix="searchrun-bench-scale-"))
        self.s3 = S3Server(self.cluster.host_ip, free_port(self.cluster.host_ip), self.work / "s3-server.log")
        self.kwok = Kwok(self.cluster, self.work, args.pod_ms) if args.mode == "pods" else None
        self.identity: Optional[OperatorIdentity] = None
        self.graph = SyntheticGraph(n_docs=args.docs, branching=20, answer_rate=0.2, seed=7)
        self.managed_by = MANAGED_BY if args.mode == "jobs" else None
        self.rows: dict[str, dict] = {}

    def setup(self) -> None:
        log(f"workdir {self.work}")
        self.s3.start()
        self.s3.client().create_bucket(Bucket="searchrun")
        self.cluster.kubectl("apply", "-f", str(REPO / "crds"))
        self.identity = OperatorIdentity(self.cluster, self.work)
        if self.kwok:
            self.kwok.start()

    def teardown(self) -> None:
        if self.kwok:
            self.kwok.stop()
        if self.identity:
            self.identity.cleanup()
        self.s3.stop()

    def step_ms(self, tag: str) -> int:
        """jobs mode: how long a step Job runs (--job-ms, else the scenario's own)."""
        return self.args.job_ms if self.args.job_ms is not None else STEP_MS.get(tag, 0)

    def other_cpu(self) -> dict[str, float]:
        """CPU seconds of everything else on the machine that the bench touches."""
        out = self.cluster.cpu_seconds()
        out["S3 server"] = proc_cpu(self.s3.proc.pid)
        out["bench (driver, watch)"] = proc_cpu(os.getpid())
        if self.kwok and self.kwok.proc:
            out["kwok"] = proc_cpu(self.kwok.proc.pid)
        return out

    def namespace(self, tag: str) -> str:
        ns = f"srbench-{tag}-{uuid.uuid4().hex[:5]}"
        self.cluster.kubectl("create", "namespace", ns)
        return ns

    def delete_namespace(self, ns: str) -> float:
        self.cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        return self.cluster.wait_namespace_gone(ns)

    # -- 1. the physical limit

    def limit(self) -> None:
        from kubernetes import client

        from searchrun.api import SearchRunSpec
        from searchrun.engine import StartStep
        from searchrun.executors.kube.config import OperatorConfig
        from searchrun.executors.kube.jobs import build_job

        from searchrun.executors import step_context

        ns = self.namespace("limit")
        spec = SearchRunSpec.model_validate(searchrun("x", ns, {})["spec"])
        cfg = OperatorConfig(stepS3EndpointURL=self.s3.endpoint_url, stepPodTemplate=POD_TEMPLATE, stepJobManagedBy=self.managed_by)
        run_uid = str(uuid.uuid4())
        loaded = False  # phase 2: Jobs the driver sees (and, in jobs mode, completes), as in an operator run

        def body(i: int) -> dict:
            a = StartStep(step_id=f"t{i}", step_type="traverse_node", attempt=1, job=f"limit-{i:05d}",
                          input={"stepId": f"t{i}", "type": "traverse_node", "attempt": 1, "doc": f"d{i}", "k": 10,
                                 "tokenAllowance": 1000, "parents": [], "depth": 1},
                          timeout_seconds=3600, retries=0)
            ctx = step_context(spec, run_uid, "limit", "s3://searchrun/runs", a).to_json()
            job = build_job(a, "limit", ns, run_uid, spec, ctx, cfg)
            del job["metadata"]["ownerReferences"]  # no owner: the garbage collector would delete the Job
            if not loaded:  # not for the driver's eyes
                job["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "searchrun-bench-limit"
                job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "searchrun-bench-limit"
            return job

        def create(api, i: int) -> float:
            t = time.perf_counter()
            api.create_namespaced_job(ns, body(i), _preload_content=False)
            return time.perf_counter() - t

        one = client.BatchV1Api(self.cluster.new_api())
        for i in range(10):  # warm up connections and the API server's caches
            create(one, 100000 + i)
        n1 = self.args.limit_sequential
        t0 = time.perf_counter()
        lat = [create(one, i) for i in range(n1)]
        rate1 = n1 / (time.perf_counter() - t0)
        threads, n = self.args.limit_threads, self.args.limit_jobs
        apis = [client.BatchV1Api(self.cluster.new_api()) for _ in range(threads)]

        def burst(first: int, count: int) -> tuple[float, list[float]]:
            barrier = threading.Barrier(threads + 1)
            lats: list[float] = []

            def worker(k: int) -> None:
                barrier.wait()
                for i in range(first + k, first + count, threads):
                    lats.append(create(apis[k], i))

            ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
            for t in ts:
                t.start()
            barrier.wait()
            t0 = time.perf_counter()
            for t in ts:
                t.join()
            return count / (time.perf_counter() - t0), lats

        rate, lats = burst(n1, n - n1)
        self.rows["limit"] = {"create_p50_ms": pct(lat, 0.5) * 1000, "create_p99_ms": pct(lat, 0.99) * 1000, "rate_1": rate1,
                              "rate_n": rate, "threads": threads, "jobs": n + 10, "conc_p50_ms": pct(lats, 0.5) * 1000}
        log(f"limit: 1 thread {rate1:.1f} Jobs/s (create p50 {pct(lat, .5)*1000:.1f} ms, p99 {pct(lat, .99)*1000:.1f} ms); "
            f"{threads} threads {rate:.1f} Jobs/s")
        if self.managed_by:
            # phase 2: the same, while the driver writes each Job's result and completes it (what an operator run carries)
            loaded = True
            driver = Driver(self.cluster, self.s3, self.graph, complete_after=self.step_ms("limit") / 1000)
            driver.watch(ns)
            time.sleep(1.0)
            t0 = time.monotonic()
            rate_l, lats_l = burst(n, n - n1)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and sum(1 for r in driver.snapshot().values() if "complete" in r) < n - n1:
                time.sleep(0.1)
            done = [r["complete"] for r in driver.snapshot().values() if "complete" in r]
            driver.stop()
            self.rows["limit"].update({"rate_loaded": rate_l, "loaded_p50_ms": pct(lats_l, 0.5) * 1000,
                                       "loaded_done_per_s": len(done) / (max(done) - t0) if done else float("nan")})
            log(f"limit: {threads} threads while the driver completes them: {rate_l:.1f} Jobs/s created, "
                f"{self.rows['limit']['loaded_done_per_s']:.1f} Jobs/s completed")
        log("limit: deleting its namespace")
        self.rows["limit"]["cleanup_s"] = self.delete_namespace(ns)

    # -- 2-4. the operator

    def run_operator(self, tag: str, docs: list[dict], timeout: float, profile: bool = False, step_tag: str = "") -> dict:
        ns = docs[0]["metadata"]["namespace"]
        opconf = {"resyncSeconds": 30, "stepPodTemplate": POD_TEMPLATE, "policy": BENCH_POLICY}
        if self.managed_by:
            opconf["stepJobManagedBy"] = self.managed_by
        opconf.update(self.args.operator_config or {})
        (self.work / tag).mkdir()
        op = Operator(self.identity, self.s3, opconf, self.work / tag, namespaces=ns)
        res: dict = {"runs": len(docs)}
        step_tag = step_tag or tag
        driver = Driver(self.cluster, self.s3, self.graph, complete_after=self.step_ms(step_tag) / 1000 if self.managed_by else None)
        res["step_ms"] = self.step_ms(step_tag) if self.managed_by else None
        res["grouping"] = docs[0]["spec"]["steps"].get("jobGrouping", "PerStep")
        res["kcm"] = self.cluster.controller_manager_limits()
        from kubernetes import client

        custom = client.CustomObjectsApi(self.cluster.new_api())
        spy = None
        try:
            op.start()
            driver.watch(ns)
            time.sleep(1.0)
            cpu0 = op.cpu_seconds()
            others0 = self.other_cpu()
            total0, op0, by0 = self.cluster.api_counts()
            clients0 = dict(self.cluster.last_by_client)
            latency0 = dict(self.cluster.last_latency)
            if profile:
                out = self.work / f"{tag}.speedscope.json"
                spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(op.proc.pid),
                                        "-o", str(out), "-f", "speedscope", "-r", "100", "--nonblocking", *self.args.profile_args.split()],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                log(f"{tag}: py-spy -> {out}")
            rss0 = op.status_kib("VmRSS")
            t0 = time.monotonic()
            self.cluster.apply(*docs)
            created = {}
            polls = 0
            rss_trace: list[tuple[float, int]] = []  # (seconds into the run, VmRSS KiB): where the peak came
            done: dict[str, dict] = {}
            while time.monotonic() - t0 < timeout:
                items = custom.list_namespaced_custom_object("searchrun.dev", "v1alpha1", ns, "searchruns")["items"]
                polls += 1
                now = time.monotonic()
                rss_trace.append((now - t0, op.status_kib("VmRSS")))
                for r in items:
                    name = r["metadata"]["name"]
                    created.setdefault(name, t0)
                    if (r.get("status") or {}).get("phase") in ("Succeeded", "Failed") and name not in done:
                        done[name] = {"at": now, "obj": r}
                if len(done) == len(docs):
                    break
                time.sleep(0.25)
            wall = time.monotonic() - t0
            cpu = op.cpu_seconds() - cpu0
            others1 = self.other_cpu()
            total1, op1, by1 = self.cluster.api_counts()
            clients1 = dict(self.cluster.last_by_client)
            latency1 = dict(self.cluster.last_latency)
            if spy:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
                spy.wait(60)
            passes = {}
            for line in op.metrics().splitlines():
                for m in ("searchrun_reconcile_seconds_sum", "searchrun_reconcile_seconds_count",
                          "searchrun_engine_decision_seconds_sum", "searchrun_engine_decision_seconds_count",
                          "searchrun_step_handoff_seconds_sum", "searchrun_step_handoff_seconds_count"):
                    if line.startswith(m + " "):
                        passes[m] = float(line.split()[1])
            hwm = op.status_kib("VmHWM")
            peak_at, peak_rss = max(rss_trace, key=lambda x: x[1]) if rss_trace else (float("nan"), 0)
            time.sleep(2.0)  # the last Jobs' completions reach the watch
            jobs, step_recs = driver.snapshot()
            lineages, status_bytes, steps_total, phases, offloaded, lineage_bytes = {}, [], 0, [], 0, []
            durations = [done[n]["at"] - t0 for n in done]
            for name, d in done.items():
                st = d["obj"]["status"]
                uid = d["obj"]["metadata"]["uid"]
                phases.append(st["phase"])
                status_bytes.append(len(json.dumps(st, separators=(",", ":"))))
                steps = st.get("steps") or []
                if st.get("lineageURI"):
                    offloaded += 1
                    key = st["lineageURI"].split("/", 3)[3]
                    raw = self.s3.client().get_object(Bucket="searchrun", Key=key)["Body"].read()
                    lineage_bytes.append(len(json.dumps(json.loads(raw)["status"]["steps"], separators=(",", ":"))))
                    steps = json.loads(raw)["status"]["steps"]
                else:
                    lineage_bytes.append(len(json.dumps(steps, separators=(",", ":"))))
                steps_total += len(steps)
                lineages[uid] = {"P": d["obj"]["spec"]["budget"]["maxParallel"],
                                 "types": {x["id"]: x["type"] for x in steps},
                                 "parents": {x["id"]: x.get("parents", []) for x in steps}}
            nxt, child, late = handoffs(step_recs, lineages)
            life = [r["complete"] - r["added"] for r in jobs.values() if "complete" in r]
            step_life = [r["complete"] - r["added"] for r in step_recs.values() if "complete" in r]
            n_steps = len(step_recs)
            adds = sorted(r["added"] for r in jobs.values())
            # Jobs/s: overall (all Jobs over the time from the first to the last ADDED), and the best 1-s window
            def busiest(window: float) -> float:
                best = j = 0
                for i in range(len(adds)):
                    while adds[i] - adds[j] > window:
                        j += 1
                    best = max(best, i - j + 1)
                return best / window
            n_jobs = len(jobs)
            api_all = total1 - total0 - polls - 2  # minus this bench's own SearchRun polls and the /metrics reads
            res.update({
                "ns": ns, "wall_s": wall, "phases": phases, "jobs": n_jobs, "steps": steps_total,
                "jobs_per_s": n_jobs / max(1e-9, adds[-1] - adds[0]) if len(adds) > 1 else float("nan"),
                "jobs_per_s_wall": n_jobs / wall, "jobs_per_s_best_1s": busiest(1.0), "jobs_per_s_best_10s": busiest(10.0),
                "handoff_p50_ms": pct(nxt, .5) * 1000, "handoff_p99_ms": pct(nxt, .99) * 1000, "handoff_n": len(nxt),
                "handoff_child_p50_ms": pct(child, .5) * 1000, "handoff_child_p99_ms": pct(child, .99) * 1000, "handoff_child_n": len(child),
                "job_life_p50_s": pct(life, .5), "job_life_p99_s": pct(life, .99),
                "step_life_p50_s": pct(step_life, .5), "step_life_p99_s": pct(step_life, .99), "steps_started": n_steps,
                "steps_per_s_wall": n_steps / wall,
                "api_by_client_per_step": dict(sorted(((k, (clients1[k] - clients0.get(k, 0)) / max(1, n_steps)) for k in clients1
                                                       if clients1[k] - clients0.get(k, 0) > 0), key=lambda kv: -kv[1])),
                "late_results": late, "driver_errors": len(driver.errors),
                "api_all_per_step": api_all / max(1, n_steps), "api_op_per_step": (op1 - op0) / max(1, n_steps),
                "api_by": {k: by1.get(k, 0) - by0.get(k, 0) for k in ("PATCH searchruns/status", "POST jobs", "POST events")},
                "api_server_ms": {k: 1000 * (v[0] - latency0.get(k, [0, 0])[0]) / (v[1] - latency0.get(k, [0, 0])[1])
                                  for k, v in latency1.items() if v[1] > latency0.get(k, [0, 0])[1]},
                "api_all_by": dict(sorted(((k, by1[k] - by0.get(k, 0)) for k in by1 if by1[k] - by0.get(k, 0) > 0), key=lambda kv: -kv[1])[:15]),
                "cpu_s": cpu, "rss_peak_mib": hwm / 1024,
                "rss_start_mib": rss0 / 1024, "rss_peak_at_s": peak_at, "rss_sampled_peak_mib": peak_rss / 1024,
                "passes": passes.get("searchrun_reconcile_seconds_count", 0),
                "pass_ms": 1000 * passes.get("searchrun_reconcile_seconds_sum", 0) / max(1, passes.get("searchrun_reconcile_seconds_count", 0)),
                "op_handoff_ms": 1000 * passes.get("searchrun_step_handoff_seconds_sum", 0) / max(1, passes.get("searchrun_step_handoff_seconds_count", 0)),
                "op_handoff_n": passes.get("searchrun_step_handoff_seconds_count", 0),
                "decision_ms": 1000 * passes.get("searchrun_engine_decision_seconds_sum", 0) / max(1, passes.get("searchrun_engine_decision_seconds_count", 0)),
                "cpu_others_s": {k: others1[k] - others0[k] for k in others1 if k in others0}, "status_bytes_max": max(status_bytes) if status_bytes else 0,
                "status_bytes_per_step": statistics.mean(b / max(1, len(lineages[u]["types"])) for b, u in zip(status_bytes, lineages)) if status_bytes else 0,
                "lineage_bytes_per_step": sum(lineage_bytes) / max(1, steps_total), "offloaded": offloaded,
                "run_p50_s": pct(durations, .5), "run_p99_s": pct(durations, .99), "polls": polls,
            })
            if driver.errors:
                log(f"{tag}: driver errors: {driver.errors[:3]}")
            return res
        finally:
            driver.stop()
            if op.proc and op.proc.poll() is None:
                self.cluster.kubectl("-n", ns, "delete", "searchruns", "--all", "--wait=true", "--timeout=300s", check=False)
            op.stop()
            op.delete_webhook_configurations()
            log(f"{tag}: deleting its namespace")
            res["cleanup_s"] = self.delete_namespace(ns)

    def shape(self, tag: str, budget: dict, timeout: float = 1800, grouping: str = "PerStep") -> None:
        key = row_key(tag, grouping)
        ns = self.namespace(tag)
        log(f"{key}: one run, budget {budget}, jobGrouping {grouping}")
        r = self.run_operator(key, [searchrun(f"{tag}-0", ns, budget, grouping)], self.args.timeout or timeout,
                              profile=self.args.profile == tag, step_tag=tag)
        self.rows[key] = r
        log(f"{key}: {json.dumps(r, default=str)[:1500]}")

    def many(self, runs: int, budget: dict, timeout: float = 1800, grouping: str = "PerStep") -> None:
        key = row_key("many", grouping)
        ns = self.namespace("many")
        log(f"{key}: {runs} runs at once, budget {budget}, jobGrouping {grouping}")
        r = self.run_operator(key, [searchrun(f"run-{i:03d}", ns, budget, grouping) for i in range(runs)], self.args.timeout or timeout,
                              profile=self.args.profile == "many", step_tag="many")
        self.rows[key] = r
        log(f"{key}: {json.dumps(r, default=str)[:1500]}")


SHAPES = {
    # 1,000 traverse steps + detect, plan, aggregate, report = 1,004 Jobs
    "wide": {"maxAgents": 10, "maxFanoutPerNode": 10, "maxDepth": 3, "maxSteps": 1004, "maxParallel": 100},
    "deep": {"maxAgents": 2, "maxFanoutPerNode": 5, "maxDepth": 5, "maxSteps": 1004, "maxParallel": 10},
    # 10,000 steps (the most a run may have): 9,996 traverse steps
    "big": {"maxAgents": 10, "maxFanoutPerNode": 10, "maxDepth": 5, "maxSteps": 10000, "maxParallel": 100},
}
# jobs mode: how long a step runs. 0: as fast as the bench can complete them (throughput); deep
# paces its steps (500 ms) so that the machine is not saturated and the hand-off is orchestration's.
STEP_MS = {"wide": 0, "deep": 500, "many": 0, "big": 0, "limit": 0}
SMALL = {"maxAgents": 3, "maxFanoutPerNode": 2, "maxDepth": 2, "maxSteps": 30, "maxParallel": 4}


def table(b: Bench, args) -> str:
    out = []
    lim = b.rows.get("limit")
    if lim:
        out += ["## 1. The physical limit (plain kubernetes client, the operator's Job bodies)", "",
                "| | |", "|---|---|",
                f"| one create, 1 thread (n={args.limit_sequential}) | p50 {lim['create_p50_ms']:.1f} ms, p99 {lim['create_p99_ms']:.1f} ms |",
                f"| Jobs/s, 1 thread | {lim['rate_1']:.0f} |",
                f"| Jobs/s, {lim['threads']} threads (n={args.limit_jobs - args.limit_sequential}) | **{lim['rate_n']:.0f}** (create p50 {lim['conc_p50_ms']:.1f} ms) |"]
        if "rate_loaded" in lim:
            out += [f"| Jobs/s, {lim['threads']} threads, while the bench writes each Job's result and completes it (as in the runs below) "
                    f"| **{lim['rate_loaded']:.0f}** created (create p50 {lim['loaded_p50_ms']:.1f} ms), {lim['loaded_done_per_s']:.0f} completed |"]
        out += [""]
    cols = [k for k in b.rows if k != "limit"]
    if cols:
        base = {c: c.removesuffix("-fanout") for c in cols}
        names = {"wide": "wide (1 run)", "deep": "deep (1 run)", "big": "10,000 steps (1 run)", "many": f"{args.runs} small runs"}
        budgets = {"wide": SHAPES["wide"], "deep": SHAPES["deep"], "big": SHAPES["big"], "many": SMALL}
        out += ["## 2-4. The operator", "", "| | " + " | ".join(names[base[c]] + (", PerFanout" if c != base[c] else "") for c in cols) + " |",
                "|---|" + "---|" * len(cols)]

        def row(label, f):
            vals = []
            for c in cols:
                try:
                    vals.append(f(b.rows[c]))
                except (KeyError, TypeError, ValueError, ZeroDivisionError):
                    vals.append("–")
            out.append(f"| {label} | " + " | ".join(vals) + " |")

        row("budget (agents/fan-out/depth/steps/parallel)", lambda r: "")
        out[-1] = "| budget (agents / fan-out / depth / maxSteps / maxParallel) | " + " | ".join(
            "{maxAgents}/{maxFanoutPerNode}/{maxDepth}/{maxSteps}/{maxParallel}".format(**budgets[base[c]]) for c in cols) + " |"
        row("jobGrouping", lambda r: r.get("grouping", "PerStep"))
        row("kube-controller-manager client limits", lambda r: r.get("kcm", "?"))
        row("step time (jobs mode: the bench completes a Job this long after its result)", lambda r: f"{r['step_ms']} ms" if r.get("step_ms") is not None else f"pods on kwok, Running {args.pod_ms} ms")
        row("runs: phase", lambda r: ", ".join(f"{p} {r['phases'].count(p)}" for p in sorted(set(r["phases"])))
            + (f", unfinished {r['runs'] - len(r['phases'])}" if len(r["phases"]) < r["runs"] else ""))
        row("Jobs (steps)", lambda r: f"{r['jobs']} ({r['steps']})")
        row("total wall time", lambda r: f"{r['wall_s']:.1f} s")
        row("Jobs created/s (first to last Job)", lambda r: f"{r['jobs_per_s']:.1f}")
        row("steps started/s over the wall time (Jobs/s under PerStep)", lambda r: f"{r['steps_per_s_wall']:.1f}")
        row("Jobs created/s, busiest 10 s / busiest 1 s", lambda r: f"**{r['jobs_per_s_best_10s']:.1f}** / {r['jobs_per_s_best_1s']:.0f}")
        row("hand-off: a Job could start → it is created, p50 / p99", lambda r: f"**{r['handoff_p50_ms']:.0f}** / {r['handoff_p99_ms']:.0f} ms (n={r['handoff_n']})")
        row("hand-off as the operator times it (searchrun_step_handoff_seconds: its watch saw a step end → the pass's creates done), mean",
            lambda r: f"{r['op_handoff_ms']:.0f} ms (n={r['op_handoff_n']:.0f})")
        row("parent complete → first child created (incl. waiting for a slot), p50 / p99", lambda r: f"{r['handoff_child_p50_ms']:.0f} / {r['handoff_child_p99_ms']:.0f} ms")
        row("run duration p50 / p99", lambda r: f"{r['run_p50_s']:.1f} / {r['run_p99_s']:.1f} s")
        row("a Job's life: created → succeeded (cluster + kwok), p50 / p99", lambda r: f"{r['job_life_p50_s']:.2f} / {r['job_life_p99_s']:.2f} s")
        row("a step's life: its Job created → its index complete (= the Job's under PerStep), p50 / p99",
            lambda r: f"{r['step_life_p50_s']:.2f} / {r['step_life_p99_s']:.2f} s")
        row("API requests per step: operator", lambda r: f"{r['api_op_per_step']:.2f}")
        row("… of which status patches / Job creates (all Events, any client)", lambda r: "{:.2f} / {:.2f} ({:.2f})".format(
            *(r["api_by"][k] / max(1, r.get("steps_started", r["jobs"])) for k in ("PATCH searchruns/status", "POST jobs", "POST events"))))
        row("the operator's requests as served, mean: API server POST jobs / PATCH searchruns/status; etcd create jobs / update searchruns",
            lambda r: " / ".join(f"{r['api_server_ms'][k]:.0f}" if k in r["api_server_ms"] else "–" for k in LATENCY_OF.values()) + " ms")
        row("API requests per step: all clients", lambda r: f"{r['api_all_per_step']:.1f}")
        row("API requests per step by client (API server flow schema; see CLIENTS)", lambda r: ", ".join(
            f"{CLIENTS.get(k, k)} {v:.2f}" for k, v in list(r["api_by_client_per_step"].items())[:7]))
        row("operator passes (reconciles): count, mean time (of which the engine's decision)",
            lambda r: f"{r['passes']:.0f}, {r['pass_ms']:.0f} ms ({r['decision_ms']:.1f} ms)")
        row("operator CPU", lambda r: f"{r['cpu_s']:.1f} s ({r['cpu_s'] / max(1, r.get('steps_started', r['jobs'])) * 1000:.1f} ms/step)")
        row("operator peak RSS", lambda r: f"{r['rss_peak_mib']:.0f} MiB")
        row("operator RSS before the runs; highest sampled RSS, and when (s into the run)",
            lambda r: f"{r.get('rss_start_mib', float('nan')):.0f} MiB; {r.get('rss_sampled_peak_mib', float('nan')):.0f} MiB at "
                      f"{r.get('rss_peak_at_s', float('nan')):.1f} of {r['wall_s']:.1f} s")
        row("CPU by component: operator / API server / etcd / KCM / scheduler / kwok / S3 / bench", lambda r: " / ".join(
            [f"{r['cpu_s']:.0f}"] + [f"{r['cpu_others_s'].get(k, float('nan')):.0f}" for k in (
                "kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok", "S3 server", "bench (driver, watch)")]) + " s")
        row("status bytes per step (largest status)", lambda r: f"{r['status_bytes_per_step']:.0f} ({r['status_bytes_max'] / 1024:.1f} KiB)")
        row("lineage bytes per step (full lineage)", lambda r: f"{r['lineage_bytes_per_step']:.0f}")
        row("runs with the lineage offloaded", lambda r: f"{r['offloaded']}/{r['runs']}")
        row("late results (must be 0)", lambda r: f"{r['late_results']}")
        out.append("")
    return "\n".join(out)


# Who a flow schema's requests come from, on this cluster (hack/local-cluster.sh: the controllers of
# kube-controller-manager use their own ServiceAccounts, --use-service-account-credentials).
CLIENTS = {FLOW_SCHEMA: "operator", "kube-system-service-accounts": "KCM controllers", "kube-controller-manager": "KCM",
           "kube-scheduler": "scheduler", "system-nodes": "kubelet/kwok nodes", "exempt": "admin (bench driver, kwok, kubectl)",
           "system-node-high": "node leases", "global-default": "other", "service-accounts": "other SAs",
           "probes": "probes", "system-leader-election": "leader election", "endpoint-controller": "endpoint controller"}

COMPARE_ROWS = [
    ("total wall time (s)", lambda r: f"{r['wall_s']:.1f}"),
    ("Jobs created/s, busiest 10 s", lambda r: f"{r['jobs_per_s_best_10s']:.1f}"),
    ("hand-off p50 / p99 (ms)", lambda r: f"{r['handoff_p50_ms']:.0f} / {r['handoff_p99_ms']:.0f}"),
    ("API requests per step: operator / all", lambda r: f"{r['api_op_per_step']:.2f} / {r['api_all_per_step']:.1f}"),
    ("served mean (ms): POST jobs / PATCH status / etcd create jobs / etcd update searchruns", lambda r: " / ".join(
        f"{r['api_server_ms'][k]:.0f}" if k in r["api_server_ms"] else "–" for k in LATENCY_OF.values())),
    ("status patches per step", lambda r: f"{r['api_by']['PATCH searchruns/status'] / max(1, r.get('steps_started', r['jobs'])):.2f}"),
    ("operator CPU per step (ms)", lambda r: f"{r['cpu_s'] / max(1, r.get('steps_started', r['jobs'])) * 1000:.1f}"),
    ("operator peak RSS (MiB)", lambda r: f"{r['rss_peak_mib']:.0f}"),
    ("passes, mean pass time (ms)", lambda r: f"{r['passes']:.0f}, {r['pass_ms']:.0f}"),
]


def compare(paths: list[str]) -> str:
    """Side by side figures of several --json files (e.g. before and after a change)."""
    data = [json.loads(Path(x).read_text()) for x in paths]
    out = []
    tags = list(dict.fromkeys(k for d in data for k in d if k != "limit"))
    for tag in tags:
        have = [d.get(tag) for d in data]
        if not any(have):
            continue
        out += [f"### {tag}", "", "| | " + " | ".join(Path(x).stem for x in paths) + " |", "|---|" + "---|" * len(paths)]
        for label, f in COMPARE_ROWS:
            vals = []
            for r in have:
                try:
                    vals.append(f(r) if r else "–")
                except (KeyError, TypeError, ValueError, ZeroDivisionError):
                    vals.append("–")
            out.append(f"| {label} | " + " | ".join(vals) + " |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="limit,wide,deep,big,many", help="comma-separated: limit, wide, deep, big, many")
    ap.add_argument("--runs", type=int, default=100, help="concurrent small runs (many)")
    ap.add_argument("--mode", choices=("jobs", "pods"), default="jobs",
                    help="jobs: this process completes the Jobs (spec.managedBy); pods: Kubernetes' Job controller, pods on kwok")
    ap.add_argument("--pod-ms", type=int, default=200, help="pods mode: a Job pod is Running this long before it Succeeds")
    ap.add_argument("--job-ms", type=int, default=None,
                    help="jobs mode: a Job succeeds this long after its result is written (default: per scenario, STEP_MS)")
    ap.add_argument("--docs", type=int, default=60000, help="documents in the synthetic graph")
    ap.add_argument("--limit-jobs", type=int, default=600)
    ap.add_argument("--limit-sequential", type=int, default=100)
    ap.add_argument("--limit-threads", type=int, default=4)
    ap.add_argument("--profile", default="", help="py-spy record the operator during this scenario (speedscope JSON in the workdir)")
    ap.add_argument("--profile-args", default="", help="more py-spy record arguments, e.g. --gil (only samples holding the GIL: CPU)")
    ap.add_argument("--operator-config", type=json.loads, default=None, help="JSON merged into the operator's config")
    ap.add_argument("--timeout", type=float, default=None, help="give up on a scenario's runs after this many seconds")
    ap.add_argument("--grouping", default="PerStep", help="comma-separated spec.steps.jobGrouping values to run each shape with: "
                    "PerStep, PerFanout")
    ap.add_argument("--json", help="also write the raw figures here")
    ap.add_argument("--compare", nargs="+", metavar="JSON", help="print the figures of these --json files side by side, and exit")
    args = ap.parse_args()
    if args.compare:
        print(compare(args.compare))
        return 0
    only = args.only.split(",")
    b = Bench(args)
    try:
        b.setup()
        if "limit" in only:
            b.limit()
        for grouping in args.grouping.split(","):
            for tag in ("wide", "deep"):
                if tag in only:
                    b.shape(tag, SHAPES[tag], grouping=grouping)
            if "many" in only:
                b.many(args.runs, SMALL, grouping=grouping)
            if "big" in only:
                b.shape("big", SHAPES["big"], timeout=3600, grouping=grouping)
    finally:
        b.teardown()
        if args.json:
            Path(args.json).write_text(json.dumps(b.rows, indent=1, default=str))
    how = (f"pods mode (Kubernetes' Job controller, pods on kwok, Running for {args.pod_ms} ms)" if args.mode == "pods" else
           "jobs mode (spec.managedBy: the bench completes each Job once its result is written)")
    print(f"# bench_scale, {how}: {os.cpu_count()} cores, kernel {os.uname().release}, Kubernetes {b.cluster.version()}, "
          f"kube-controller-manager {b.cluster.controller_manager_limits()}, workdir {b.work}\n")
    print(table(b, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

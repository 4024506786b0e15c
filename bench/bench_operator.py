"""Operator benchmark (issue 4): hand-off latency and memory. Prints figures; not a test.

    hack/local-cluster.sh up && hack/build-images.sh
    .venv/bin/python bench/bench_operator.py [--runs 20]

It starts an S3 server on the cluster bridge and the operator as a process (as the
integration tests do), creates N deep SearchRuns at once, and watches Jobs itself:
hand-off = when the watch saw a successor Job ADDED minus when it saw the last of its
parents' Jobs complete (both through the same watch, so watch delay cancels out).
The operator's RSS is sampled every 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.operator_process import Operator  # noqa: E402
from support.s3server import S3Server, free_port  # noqa: E402


class Cluster:
    def __init__(self):
        out = subprocess.run([str(REPO / "hack/local-cluster.sh"), "env"], capture_output=True, text=True, check=True).stdout
        env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        self.kubeconfig, self.kubectl_path, self.host_ip = env["KUBECONFIG"], env["KUBECTL"], env["HOST_IP"]

    def kubectl(self, *args, input=None, check=True):
        p = subprocess.run([self.kubectl_path, "--kubeconfig", self.kubeconfig, *args], input=input, capture_output=True, text=True)
        if check and p.returncode:
            raise RuntimeError(p.stderr)
        return p


def watch_jobs(cluster: Cluster, ns: str, seen: dict, stop: threading.Event) -> None:
    from kubernetes import client, config, watch

    api = client.BatchV1Api(config.new_client_from_config(cluster.kubeconfig))
    w = watch.Watch()
    for ev in w.stream(api.list_namespaced_job, ns, label_selector="app.kubernetes.io/managed-by=searchrun", timeout_seconds=900):
        now = time.monotonic()
        job = ev["object"]
        rec = seen.setdefault(job.metadata.name, {"labels": job.metadata.labels})
        rec.setdefault("added", now)
        if any(c.type == "Complete" and c.status == "True" for c in (job.status.conditions or [])):
            rec.setdefault("complete", now)
        if stop.is_set():
            w.stop()
            return


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    cluster = Cluster()
    work = Path(tempfile.mkdtemp(prefix="searchrun-bench-op-"))
    s3 = S3Server(cluster.host_ip, free_port(cluster.host_ip), work / "s3-server.log")
    s3.start()
    s3.client().create_bucket(Bucket="searchrun")
    ns = f"srbench-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("-n", ns, "create", "secret", "generic", "searchrun-s3", "--from-literal=AWS_ACCESS_KEY_ID=testing",
                    "--from-literal=AWS_SECRET_ACCESS_KEY=testing")
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    op = Operator(cluster, s3, {"resyncSeconds": 10}, work, namespaces="srbench-*")
    seen: dict = {}
    stop = threading.Event()
    rss: list[int] = []
    try:
        op.start()
        threading.Thread(target=watch_jobs, args=(cluster, ns, seen, stop), daemon=True).start()
        base = yaml.safe_load((REPO / "examples/searchrun.yaml").read_text())
        docs = []
        for i in range(args.runs):
            d = json.loads(json.dumps(base))
            d["metadata"] = {"name": f"bench-{i:03d}", "namespace": ns}
            d["spec"]["budget"]["maxParallel"] = 2
            docs.append(d)
        cpu0 = op.cpu_seconds()
        t0 = time.monotonic()
        cluster.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in docs))
        runs = {}
        while time.monotonic() - t0 < 1800:
            rss.append(op.rss_kib())
            items = json.loads(cluster.kubectl("-n", ns, "get", "sr", "-o", "json").stdout)["items"]
            runs = {r["metadata"]["name"]: r for r in items}
            if len(runs) == args.runs and all((r.get("status") or {}).get("phase") in ("Succeeded", "Failed") for r in runs.values()):
                break
            time.sleep(0.5)
        wall = time.monotonic() - t0
        cpu = op.cpu_seconds() - cpu0
        handoffs = []
        for r in runs.values():
            steps = {s["id"]: s for s in r["status"]["steps"]}
            for s in steps.values():
                job = seen.get(s.get("job") or "")
                parents = [seen.get(steps[p].get("job") or "", {}).get("complete") for p in s["parents"] if p in steps]
                if job and parents and all(parents):
                    handoffs.append(job["added"] - max(parents))
        handoffs.sort()
        phases = [r["status"]["phase"] for r in runs.values()]
        n_jobs = len(seen)
        print(f"{args.runs} concurrent deep runs (maxParallel 2 each): {phases.count('Succeeded')} succeeded, {phases.count('Failed')} failed, "
              f"{n_jobs} Jobs in {wall:.1f} s")
        if handoffs:
            p99 = handoffs[min(len(handoffs) - 1, int(0.99 * len(handoffs)))]
            print(f"hand-off (a Job completes -> its successor's Job is created), n={len(handoffs)}: "
                  f"median {statistics.median(handoffs)*1000:.0f} ms, p99 {p99*1000:.0f} ms, max {handoffs[-1]*1000:.0f} ms")
        print(f"operator: peak RSS {max(rss)/1024:.0f} MiB, final {rss[-1]/1024:.0f} MiB, CPU {cpu:.1f} s for {n_jobs} Jobs")
    finally:
        stop.set()
        op.stop()
        op.delete_webhook_configurations()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        s3.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

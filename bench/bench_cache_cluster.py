"""The step cache on a cluster (issue 12): a deep run, then the identical run again with
``spec.cache.mode: ReadWrite``. Prints the wall time and the Jobs (by step type) of each; not a test.

    hack/local-cluster.sh up && hack/build-images.sh
    .venv/bin/python bench/bench_cache_cluster.py [--max-depth 2] [--max-steps 30] [--repeat 1]

As bench_operator.py: an S3 server on the cluster bridge and the operator as a process. Wall time
is from ``kubectl apply`` to the first poll (every 0.2 s) that sees the run finished; Jobs are
counted by the run's label.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from bench_operator import Cluster  # noqa: E402
from support.operator_process import Operator  # noqa: E402
from support.s3server import S3Server, free_port  # noqa: E402


def _run(cluster: Cluster, ns: str, doc: dict) -> tuple[float, dict]:
    t0 = time.monotonic()
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(doc))
    while time.monotonic() - t0 < 900:
        run = json.loads(cluster.kubectl("-n", ns, "get", "sr", doc["metadata"]["name"], "-o", "json").stdout)
        if (run.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return time.monotonic() - t0, run
        time.sleep(0.2)
    raise RuntimeError(f"{doc['metadata']['name']} did not finish in 900 s")


def _jobs(cluster: Cluster, ns: str, uid: str) -> Counter:
    items = json.loads(cluster.kubectl("-n", ns, "get", "jobs", "-l", f"searchrun.dev/run-uid={uid}", "-o", "json").stdout)["items"]
    return Counter(j["metadata"]["labels"]["searchrun.dev/step-type"] for j in items)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-depth", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=1, help="pairs of runs, each pair in a fresh namespace (an empty cache)")
    args = ap.parse_args()
    cluster = Cluster()
    work = Path(tempfile.mkdtemp(prefix="searchrun-bench-cache-"))
    s3 = S3Server(cluster.host_ip, free_port(cluster.host_ip), work / "moto.log")
    s3.start()
    s3.client().create_bucket(Bucket="searchrun")
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    op = Operator(cluster, s3, {"resyncSeconds": 10}, work, namespaces="srbench-*")
    namespaces = []
    try:
        op.start()
        base = yaml.safe_load((REPO / "examples/searchrun.yaml").read_text())
        base["spec"]["budget"].update(maxDepth=args.max_depth, maxSteps=args.max_steps)
        base["spec"]["cache"] = {"mode": "ReadWrite"}
        print(f"deep run: examples/searchrun.yaml, maxDepth {args.max_depth}, maxSteps {args.max_steps}, cache ReadWrite")
        print(f"{'pair':<6}{'run':<8}{'wall s':>8}{'steps':>7}{'Jobs':>6}  Jobs by step type; answers")
        for i in range(args.repeat):
            ns = f"srbench-{uuid.uuid4().hex[:6]}"
            namespaces.append(ns)
            cluster.kubectl("create", "namespace", ns)
            cluster.kubectl("-n", ns, "create", "secret", "generic", "searchrun-s3", f"--from-literal=AWS_ACCESS_KEY_ID={s3.access_key}",
                            f"--from-literal=AWS_SECRET_ACCESS_KEY={s3.secret_key}")
            answers = []
            for label in ("first", "second"):
                doc = json.loads(json.dumps(base))
                doc["metadata"] = {"name": f"cache-{label}"}
                wall, run = _run(cluster, ns, doc)
                jobs = _jobs(cluster, ns, run["metadata"]["uid"])
                st = run["status"]
                answers.append(sorted((s["id"], s.get("found")) for s in st["steps"]))
                cached = sum(1 for s in st["steps"] if s.get("cachedFrom"))
                print(f"{i + 1:<6}{label:<8}{wall:>8.1f}{len(st['steps']):>7}{sum(jobs.values()):>6}  "
                      f"{dict(sorted(jobs.items()))}; {st['answers']} answers, {cached} cached, {st['tokens']} tokens, {st['phase']}")
            print(f"{'':<6}same answers and steps: {answers[0] == answers[1]}")
    finally:
        op.stop()
        op.delete_webhook_configurations()
        for ns in namespaces:
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        s3.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

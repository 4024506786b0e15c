"""The CPU of one small S3 GET in the operator's process: what a pass pays per finished step's
``result.json`` (BENCHMARKS.md, "Where a hand-off goes").

Against a local SeaweedFS (the tests' S3 server), 300 objects of 400 bytes, best of 3 rounds:
boto3 as ``artifacts/s3.py`` configures it, the same with parameter validation off, and a GET
signed with botocore's SigV4 and sent with urllib3 (what a lighter client could save).

    .venv/bin/python bench/bench_s3_get.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "operator"))

from support.s3server import S3Server, free_port  # noqa: E402

from searchrun.artifacts.s3 import s3_client_from_env  # noqa: E402

N, ROUNDS, BUCKET = 300, 3, "bench-get"


def cpu_ms_per_get(get) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        c0 = time.thread_time()
        for i in range(N):
            get(i)
        best = min(best, (time.thread_time() - c0) / N * 1000)
    return best


def main() -> None:
    import urllib3
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config

    srv = S3Server("127.0.0.1", free_port("127.0.0.1"), Path(tempfile.mkdtemp()) / "s3.log")
    srv.start()
    try:
        os.environ.update(srv.env())
        client = s3_client_from_env()
        client.create_bucket(Bucket=BUCKET)
        for i in range(N):
            client.put_object(Bucket=BUCKET, Key=f"k{i}", Body=b"x" * 400)
        loose = s3_client_from_env(config=client.meta.config.merge(Config(parameter_validation=False)))
        creds, region, pool = client._request_signer._credentials, client.meta.region_name, urllib3.PoolManager()

        def by_hand(i: int) -> bytes:
            req = AWSRequest(method="GET", url=f"{srv.endpoint_url}/{BUCKET}/k{i}")
            S3SigV4Auth(creds, "s3", region).add_auth(req)
            return pool.request("GET", req.url, headers=dict(req.headers)).data

        rows = [("boto3, as artifacts/s3.py configures it", lambda i: client.get_object(Bucket=BUCKET, Key=f"k{i}")["Body"].read()),
                ("boto3, parameter_validation=False", lambda i: loose.get_object(Bucket=BUCKET, Key=f"k{i}")["Body"].read()),
                ("urllib3, signed with botocore's SigV4", by_hand)]
        print(f"CPU of one GET of a {400}-byte object, this thread, best of {ROUNDS} x {N}:")
        for label, get in rows:
            print(f"  {cpu_ms_per_get(get):5.2f} ms  {label}")
    finally:
        srv.stop()


if __name__ == "__main__":
    main()

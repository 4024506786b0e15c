"""Fixtures for the reliability suite: the same ``cluster`` as the integration tests, an S3
server behind a proxy that a test can cut, the operator as a process, and namespaces.

S3: the S3 server (SeaweedFS, or moto as the fallback: ``support.s3server``) listens on loopback;
step pods and the operator reach it only through a ``TcpProxy`` on the cluster bridge.
``rel_s3.proxy.down()`` makes S3 unreachable for them (connections refused, open ones reset) while
the server keeps every bucket and object: the tests check what an outage does to a run, not what
losing the data does. The tests read S3 directly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from integration.conftest import Cluster, cluster, cluster_to_itself  # noqa: F401  (the session's cluster fixtures)
from support.reliability import FIGURES, ProxiedS3, delete_namespace, make_namespace, running_operator
from support.runs import BUCKET
from support.s3server import S3Server, free_port
from support.tcpproxy import TcpProxy


@pytest.fixture(scope="session")
def rel_s3(cluster):
    host = cluster.host_ip or "127.0.0.1"
    logdir = Path(tempfile.mkdtemp(prefix="searchrun-rel-s3-"))
    server = S3Server("127.0.0.1", free_port("127.0.0.1"), logdir / "s3-server.log")
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    proxy = TcpProxy(host, ("127.0.0.1", server.port))
    proxy.up()
    try:
        yield ProxiedS3(server, proxy)
    finally:
        proxy.down()
        server.close()


@pytest.fixture(scope="module")
def operator(cluster, rel_s3, tmp_path_factory):
    with running_operator(cluster, rel_s3, tmp_path_factory.mktemp("operator")) as op:
        yield op


@pytest.fixture
def run_ns(cluster, rel_s3):
    ns = make_namespace(cluster, rel_s3)
    yield ns
    delete_namespace(cluster, ns)


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("reliability figures")
        for name, value in FIGURES:
            terminalreporter.write_line(f"{name}: {value}")

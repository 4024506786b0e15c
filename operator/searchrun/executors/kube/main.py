"""``searchrun operator``: start the kopf operator."""

from __future__ import annotations

import argparse
import ctypes
import os
import sys

M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(n: int = 2) -> None:
    """glibc gives threads that allocate at once arenas of their own (up to 8 a core), whose free
    memory the others do not reuse: with the operator's threads (kopf's executor, the Job watch,
    the write pool) a 10,000-step run peaked at 155-157 MiB RSS, at 148-152 MiB with two arenas
    (BENCHMARKS.md). Called before any thread starts. ``MALLOC_ARENA_MAX`` in the environment wins; not glibc: nothing to do."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, n)
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="searchrun operator", description="run the SearchRun operator (kopf)")
    ap.add_argument("--config", help="operator configuration YAML (policy caps, artifacts, webhook, ...)")
    ap.add_argument("-n", "--namespace", action="append", dest="namespaces", help="watch this namespace (repeatable); default: all")
    ap.add_argument("--artifacts", help="default artifact store, e.g. s3://searchrun")
    ap.add_argument("--step-s3-endpoint-url", help="S3 endpoint as step pods reach it")
    ap.add_argument("--step-s3-secret", help="Secret (in each run's namespace) with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    ap.add_argument("--metrics-port", type=int)
    ap.add_argument("--metrics-addr")
    ap.add_argument("--webhook-port", type=int)
    ap.add_argument("--webhook-addr")
    ap.add_argument("--webhook-host", help="host the API server calls (self-managed webhook configuration)")
    ap.add_argument("--webhook-cert-dir", help="directory with tls.crt, tls.key (and ca.crt)")
    ap.add_argument("--webhook-managed", action="store_true", default=None, help="create the webhook configurations (development)")
    ap.add_argument("--no-webhooks", action="store_true", help="serve no admission webhooks")
    ap.add_argument("--liveness", default="http://0.0.0.0:8081/healthz", help="kopf liveness endpoint")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    limit_malloc_arenas()

    import kopf

    from .config import OperatorConfig
    from . import handlers, retry_handlers  # noqa: F401  (retry_handlers registers the retry handler)

    try:
        cfg = OperatorConfig.load(
            args.config,
            namespaces=args.namespaces,
            artifacts=args.artifacts,
            stepS3EndpointURL=args.step_s3_endpoint_url,
            stepS3Secret=args.step_s3_secret,
            metricsPort=args.metrics_port,
            metricsAddr=args.metrics_addr,
            webhookPort=args.webhook_port,
            webhookAddr=args.webhook_addr,
            webhookHost=args.webhook_host,
            webhookCertDir=args.webhook_cert_dir,
            webhookManaged=args.webhook_managed,
            webhooks=False if args.no_webhooks else None,
        )
    except Exception as e:
        print(f"error: operator configuration: {e}", file=sys.stderr)
        return 2
    handlers.configure(cfg)
    if cfg.webhooks:
        from . import webhooks  # noqa: F401  (registers the admission handlers)
    # kopf.configure() puts its own handler on the root logger (searchrun.* loggers included);
    # a logging.basicConfig() handler beside it would print every line twice.
    kopf.configure(verbose=args.verbose)
    kopf.run(standalone=True, clusterwide=not cfg.namespaces, namespaces=cfg.namespaces or (),
             liveness_endpoint=args.liveness or None)
    return 0

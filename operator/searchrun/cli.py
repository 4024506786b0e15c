"""``searchrun``: run a SearchRun locally, run one step, print the CRD, import a corpus, run the operator, retry a cluster run."""

from __future__ import annotations

import argparse
import sys

from . import __version__


DEBUG_HELP = (
    "A run on this machine is read from its store (--store, default ./searchrun-runs). A run on a cluster is "
    "read when -n, --kubeconfig or --context is given, or when neither --store nor ./searchrun-runs is there "
    "and a kubeconfig is: RUN is then the SearchRun's name, its tree comes from the status, or from the "
    "offloaded lineage in the store when the status says so, and a step's log from its pod while the pod "
    "lives, else from the copy in the store. The store is --store, else the run's own (its spec or status "
    "names it); S3 is read with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and SEARCHRUN_S3_ENDPOINT_URL.")


def _build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="searchrun", description=__doc__)
    ap.add_argument("--version", action="version", version=f"searchrun {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a SearchRun manifest on this machine (no cluster)")
    run.add_argument("manifest", nargs="?", help="a SearchRun YAML file")
    run.add_argument("--resume", metavar="RUN_DIR_OR_UID",
                     help="resume a run that Failed or was stopped by a budget or deadline (its steps that succeeded are kept)")
    run.add_argument("--budget", action="append", metavar="FIELD=VALUE",
                     help="with --resume: raise a budget, e.g. --budget maxSteps=60 (repeatable)")
    run.add_argument("--store", help="artifact store URI (file:///dir or s3://bucket/prefix); default ./searchrun-runs")
    run.add_argument("--quiet", action="store_true", help="print only the outcome")
    run.add_argument("--isolation", choices=("fork", "process"), default=None,
                     help="fork: each step forked from a warm worker that has the code and corpus loaded "
                          "(default on Linux); process: a fresh interpreter per step (slower, for parity checks)")

    sub.add_parser("step", help="run one step (the entrypoint of a step Job)", add_help=False)

    crd = sub.add_parser("crd", help="print the SearchRun CustomResourceDefinition (generated from the models)")
    crd.add_argument("-o", "--output", help="write to this file instead of stdout")

    val = sub.add_parser("validate", help="check a SearchRun manifest without running it")
    val.add_argument("manifest")

    corpus = sub.add_parser("corpus", help="work with document graphs")
    csub = corpus.add_subparsers(dest="corpus_command", metavar="SUBCOMMAND")
    imp = csub.add_parser("import", help="build a JSON document graph from a Markdown folder (or check a JSON graph)")
    imp.add_argument("path")
    imp.add_argument("-o", "--output", help="write the JSON graph here instead of stdout")

    get = sub.add_parser("get", help="print a run as a tree of its steps (like argo get)", description=DEBUG_HELP)
    get.add_argument("run", metavar="RUN", help="a local run's uid or folder <store>/runs/<uid>; on a cluster, the SearchRun's name")
    get.add_argument("-o", "--output", choices=["json", "yaml"], help="print the lineage instead")
    logs = sub.add_parser("logs", help="print a step's log (its live pod's, else the copy kept in the store)",
                          description=DEBUG_HELP)
    logs.add_argument("run", metavar="RUN")
    logs.add_argument("step", metavar="STEP", help="step id, e.g. t0-1")
    logs.add_argument("--attempt", type=int, help="an earlier attempt (default: the last)")
    rerun = sub.add_parser("rerun-step", help="run one step again with its recorded input, into a scratch store, "
                                              "and print its decision next to the recorded one", description=DEBUG_HELP)
    rerun.add_argument("run", metavar="RUN")
    rerun.add_argument("step", metavar="STEP")
    for p in (get, logs, rerun):
        p.add_argument("--store", help="the run's artifact store (file:///dir or s3://bucket/prefix); default ./searchrun-runs; "
                                       "on a cluster: where the offloaded lineage and the logs of finished pods are read "
                                       "(default: the run's own store, named by its spec or status)")
        p.add_argument("-n", "--namespace", help="the SearchRun's namespace on the cluster (default: the kubeconfig context's)")
        p.add_argument("--kubeconfig", help="the cluster's kubeconfig (default: $KUBECONFIG, ~/.kube/config)")
        p.add_argument("--context", help="a context of the kubeconfig")

    retry = sub.add_parser("retry", help="on a cluster: resume a run that Failed or was stopped by a budget or deadline "
                                         "(its steps that succeeded are kept)")
    retry.add_argument("run", metavar="NAME", help="the SearchRun's name")
    retry.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's)")
    retry.add_argument("--budget", action="append", metavar="FIELD=VALUE",
                       help="raise a budget, e.g. --budget maxSteps=60 (repeatable; within the cluster's caps)")
    retry.add_argument("--kubeconfig", help="the kubeconfig to use (default: $KUBECONFIG or ~/.kube/config)")
    retry.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                       help="wait this long for the operator's answer (0: do not wait)")

    op = sub.add_parser("operator", help="run the Kubernetes operator (kopf)", add_help=False)
    op.set_defaults(passthrough=True)
    return ap


def main(argv=None) -> int:
    # Each command imports what it needs when it runs: ``searchrun step`` starts every step,
    # and must not pay for kopf and the Kubernetes client (``operator``) or the local executor.
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "step":
        from .steps import main as step_main
        from .steps.logcopy import run_with_log_copy

        return run_with_log_copy(step_main, argv[1:])
    if argv and argv[0] == "step-worker":  # the local executor's warm step worker (executors.local_workers)
        from .executors.local_workers import main as worker_main

        return worker_main(argv[1:])
    if argv and argv[0] == "operator":
        from .executors.kube.main import main as operator_main

        return operator_main(argv[1:])
    ap = _build_parser()
    args = ap.parse_args(argv)
    if args.command == "run":
        from .cli_run import resume_run, run_manifest

        if args.resume:
            if args.manifest:
                ap.error("run: give a manifest or --resume RUN, not both")
            return resume_run(args.resume, store=args.store, budget=args.budget, quiet=args.quiet,
                              isolation=args.isolation)
        if not args.manifest or args.budget:
            ap.error("run: a manifest is required (--budget goes with --resume)")
        return run_manifest(args.manifest, store=args.store, quiet=args.quiet, isolation=args.isolation)
    if args.command in ("get", "logs", "rerun-step"):
        from . import cli_debug

        cluster = cli_debug.Cluster(args.namespace, args.kubeconfig, args.context)
        if args.command == "get":
            return cli_debug.get_command(args.run, args.store, args.output, cluster=cluster)
        if args.command == "logs":
            return cli_debug.logs_command(args.run, args.step, args.store, args.attempt, cluster=cluster)
        return cli_debug.rerun_command(args.run, args.step, args.store, cluster=cluster)
    if args.command == "retry":
        from .cli_retry import retry_command

        return retry_command(args.run, args.namespace, args.budget, args.kubeconfig, args.wait)
    if args.command == "crd":
        from .crd import crd_yaml

        text = crd_yaml()
        if args.output:
            with open(args.output, "w") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
        return 0
    if args.command == "validate":
        from .manifest import ManifestError, load_manifest

        try:
            run = load_manifest(args.manifest)
        except ManifestError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{args.manifest}: valid SearchRun {run.metadata.name!r}")
        return 0
    if args.command == "corpus" and args.corpus_command == "import":
        from .corpus_markdown import import_command

        return import_command(args.path, args.output)
    ap.print_help(sys.stderr)
    return 2


def kubectl_main() -> int:
    """``kubectl searchrun ...`` (the ``kubectl-searchrun`` console script): the same commands."""
    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

"""A run on a cluster, for ``searchrun get|logs|rerun-step``: the SearchRun from the API server, its
lineage from the status (or from the store once the status says it is offloaded), and a step's log
from its pod while the pod lives.

The store is ``--store``, else the run's ``spec.artifacts.uri``, else where the status' URIs
(lineage, report, outputs) point. S3 is reached with the usual environment: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``SEARCHRUN_S3_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL``), ``AWS_REGION``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from .api import GROUP, PLURAL, VERSION, SearchRunSpec, SearchRunStatus, StepStatus
from .artifacts import read_uri
from .executors.base import lineage_document, lineage_key
from .executors.kube.jobs import L_RUN, L_STEP  # pure: the labels of a step's Job and pods
from .executors.kube.lineage_store import restore_lineage


class ClusterError(ValueError):
    """The cluster cannot be reached, or holds no such run."""


def kubeconfig_available(kubeconfig: Optional[str] = None) -> bool:
    if kubeconfig or os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    paths = os.environ.get("KUBECONFIG", "").split(os.pathsep) if os.environ.get("KUBECONFIG") else [str(Path.home() / ".kube" / "config")]
    return any(p and Path(p).is_file() for p in paths)


def api_client(kubeconfig: Optional[str], context: Optional[str]):
    """(a client of the cluster, the namespace of the kubeconfig's context)."""
    from kubernetes import config  # only these commands, against a cluster, pay for the client

    if not kubeconfig and not os.environ.get("KUBECONFIG") and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        ns = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        from kubernetes import client

        return client.ApiClient(), ns.read_text().strip() if ns.is_file() else "default"
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        chosen = next((c for c in contexts if c["name"] == context), None) if context else active
        if context and chosen is None:
            raise ClusterError(f"--context {context}: not in the kubeconfig (contexts: {', '.join(c['name'] for c in contexts)})")
        ns = ((chosen or {}).get("context") or {}).get("namespace") or "default"
        return config.new_client_from_config(config_file=kubeconfig, context=context), ns
    except (config.ConfigException, OSError) as e:
        raise ClusterError(f"no usable kubeconfig ({kubeconfig or os.environ.get('KUBECONFIG') or '~/.kube/config'}): {e}; "
                           "for a run on this machine give --store") from None


def get_run(api, namespace: str, name: str) -> dict:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as e:
        if e.status == 404:
            raise ClusterError(f"no SearchRun {name!r} in namespace {namespace} (kubectl get searchruns -n {namespace})") from None
        raise ClusterError(f"cannot read SearchRun {namespace}/{name}: {e.status} {e.reason}") from None
    except OSError as e:  # the API server is not reachable
        raise ClusterError(f"cannot reach the cluster: {e}") from None


def store_uri_of(obj: dict, status: SearchRunStatus, explicit: Optional[str]) -> Optional[str]:
    """The run's artifact store: ``explicit``, the spec's, or the prefix of a URI in the status."""
    if explicit:
        return explicit
    uri = ((obj.get("spec") or {}).get("artifacts") or {}).get("uri")
    if uri:
        return uri
    uid = obj["metadata"]["uid"]
    for u in [status.lineageURI, status.reportURI, *(s.output for s in status.steps)]:
        m = re.match(rf"^(.*)/runs/{re.escape(uid)}/", u or "")
        if m:
            return m.group(1)
    return None


def load_run(name: str, namespace: Optional[str], kubeconfig: Optional[str], context: Optional[str],
             store: Optional[str]) -> tuple[str, dict, SearchRunStatus, Optional[str], str]:
    """(namespace, the lineage document, the full status, the store URI or None, where it came from)."""
    api, default_ns = api_client(kubeconfig, context)
    ns = namespace or default_ns
    obj = get_run(api, ns, name)
    raw = obj.get("status") or {}
    uid = obj["metadata"]["uid"]
    status = SearchRunStatus.model_validate({k: v for k, v in raw.items() if k in SearchRunStatus.model_fields})
    store_uri = store_uri_of(obj, status, store)
    source = "the SearchRun's status"
    if status.lineageURI:  # the status shows the frontier; the store holds the lineage
        from .artifacts import open_store

        uri = open_store(store).uri_for(lineage_key(uid)) if store else status.lineageURI
        try:
            status, _, _ = restore_lineage({**raw, "lineageURI": uri}, read_uri)
        except Exception as e:  # noqa: BLE001 - say where and how to reach it
            raise ClusterError(f"the lineage of {ns}/{name} is offloaded to {uri} and cannot be read: {str(e)[:300]} "
                               "(give --store, or set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "
                               "SEARCHRUN_S3_ENDPOINT_URL)") from None
        source = f"the offloaded lineage {uri}"
    spec = SearchRunSpec.model_validate(obj.get("spec") or {})
    doc = lineage_document(name, uid, ns, spec, status)
    return ns, doc, status, store_uri, source


def live_log(kubeconfig: Optional[str], context: Optional[str], namespace: str, run_uid: str, s: StepStatus) -> Optional[tuple[str, str]]:
    """(pod name, its log) of the step's newest pod that has started, or None when none is left."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api, _ = api_client(kubeconfig, context)
    core = client.CoreV1Api(api)
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=f"{L_RUN}={run_uid},{L_STEP}={s.id}").items
    except (ApiException, OSError):
        return None
    started = [p for p in pods if (p.status.phase or "") not in ("Pending", "Unknown")]
    if not started:
        return None
    pod = max(started, key=lambda p: p.metadata.creation_timestamp)
    try:
        # raw bytes: with its content preloaded, the client parses a log that looks like JSON and
        # hands back the Python repr of it
        resp = core.read_namespaced_pod_log(pod.metadata.name, namespace, _preload_content=False)
        return pod.metadata.name, resp.data.decode("utf-8", "replace")
    except ApiException:
        return None  # gone between the list and the read

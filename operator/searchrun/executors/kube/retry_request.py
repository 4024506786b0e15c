"""The API calls of ``searchrun retry``: read a SearchRun, ask for its retry (annotation and budget
in one merge patch, so admission judges both at once), and read the operator's answer."""

from __future__ import annotations

from typing import Optional

from kubernetes import client, config as kconfig

from ...api import GROUP, PLURAL, VERSION
from ...retry import RETRY_ANNOTATION
from .client import KubeClient

FIELD_MANAGER = "searchrun-retry"


class RetryClient:
    def __init__(self, kubeconfig: Optional[str] = None):
        try:
            api = kconfig.new_client_from_config(config_file=kubeconfig)
            _, active = kconfig.list_kube_config_contexts(config_file=kubeconfig)
            self.default_namespace = (active or {}).get("context", {}).get("namespace") or "default"
        except (kconfig.ConfigException, OSError) as e:
            if kubeconfig:
                raise ValueError(f"--kubeconfig {kubeconfig}: {e}") from None
            kconfig.load_incluster_config()
            api = client.ApiClient()
            self.default_namespace = "default"
        self._kube = KubeClient(api)  # the operator's client layer: the same read of a SearchRun
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    def get(self, namespace: str, name: str) -> Optional[dict]:
        return self._kube.get_run(namespace, name)

    def ask(self, namespace: str, name: str, token: str, budget: dict, resource_version: str) -> dict:
        """Set the retry token (and raise the budget fields in ``budget``) if the run is still at
        ``resource_version``: a run that changed since it was read answers 409."""
        body: dict = {"metadata": {"annotations": {RETRY_ANNOTATION: token}, "resourceVersion": resource_version}}
        if budget:
            body["spec"] = {"budget": budget}
        return self._custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body,
                                                           field_manager=FIELD_MANAGER)

    def refusals(self, namespace: str, uid: str) -> list[str]:
        """The messages of the operator's RetryRefused events for the run."""
        events = self._core.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={uid},reason=RetryRefused")
        return [e.message or "" for e in events.items]

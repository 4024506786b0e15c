"""The Kubernetes API verbs the operator uses, on one API client.

Built once at start-up and passed to every run's reconciler and to the Job
watch, so that tests hand them a stand-in instead of patching attributes.
Jobs and pods come back as plain JSON (``_preload_content=False``), never as
client models: a 10,000-step run's Jobs as models hold several times the memory
and cost a deserialisation each. Errors are the client's ``ApiException``.
"""

from __future__ import annotations

import json
from typing import Iterator, Optional

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from ...api import GROUP, PLURAL, VERSION

WATCH_SECONDS = 300  # the API server ends a Job watch after this; the watcher then watches again


class KubeClient:
    def __init__(self, api_client: client.ApiClient):
        self.api_client = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)

    # -- SearchRuns

    def get_run(self, namespace: str, name: str) -> Optional[dict]:
        """The SearchRun, or None when it is gone."""
        try:
            return self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def patch_run_status(self, namespace: str, name: str, body: dict) -> None:
        self._custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, body)

    # -- Jobs

    def create_job(self, namespace: str, body: dict) -> dict:
        """The created Job; AlreadyExists is an ``ApiException`` with status 409."""
        resp = self._batch.create_namespaced_job(namespace, body, _preload_content=False)
        return json.loads(resp.data)

    def list_jobs(self, namespace: Optional[str], label_selector: str) -> tuple[list[dict], str]:
        """The Jobs in ``namespace`` (None: all namespaces) and the list's resourceVersion to watch from."""
        kw = {"label_selector": label_selector, "_preload_content": False}
        resp = self._batch.list_namespaced_job(namespace, **kw) if namespace else self._batch.list_job_for_all_namespaces(**kw)
        data = json.loads(resp.data)
        return data.get("items", []), data["metadata"]["resourceVersion"]

    def watch_jobs(self, namespace: Optional[str], label_selector: str, resource_version: str) -> Iterator[dict]:
        """Job events after ``resource_version`` (``{"type", "object"}``, the object plain JSON), until
        the server ends the watch; leaving the loop closes the connection."""
        fn = self._batch.list_namespaced_job if namespace else self._batch.list_job_for_all_namespaces
        args = (namespace,) if namespace else ()
        return watch.Watch().stream(fn, *args, label_selector=label_selector, resource_version=resource_version,
                                    deserialize=False, timeout_seconds=WATCH_SECONDS, allow_watch_bookmarks=True,
                                    _request_timeout=WATCH_SECONDS + 30)

    # -- pods

    def job_pods(self, namespace: str, job: str) -> list[dict]:
        """The pods of Job ``job`` (the Job controller labels them ``job-name``)."""
        resp = self._core.list_namespaced_pod(namespace, label_selector=f"job-name={job}", _preload_content=False)
        return json.loads(resp.data).get("items", [])

"""The operator imports the Kubernetes client without its generated API groups and models
(executors/kube/slim_kubernetes.py): every name of the client that searchrun's code uses still
resolves, to the same object as with the full import, without loading the rest."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

OPERATOR = Path(__file__).resolve().parents[2] / "operator"


def run(code: str) -> list:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(OPERATOR), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def names_used() -> set[tuple[str, str]]:
    """(module, name) for every ``from kubernetes... import name`` in searchrun, and every
    ``alias.Name`` read of a module imported that way (``client.BatchV1Api``)."""
    used: set[tuple[str, str]] = set()
    for path in (OPERATOR / "searchrun").rglob("*.py"):
        tree = ast.parse(path.read_text())
        modules: dict[str, str] = {}  # local alias -> kubernetes module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "kubernetes":
                for a in node.names:
                    used.add((node.module, a.name))
                    modules[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "kubernetes":
                        modules[a.asname or a.name] = a.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
                used.add((modules[node.value.id], node.attr))
    return used


RESOLVE = """
import importlib, json, sys, types
{setup}
out = []
for module, name in {names!r}:
    obj = getattr(importlib.import_module(module), name)
    where = obj.__name__ if isinstance(obj, types.ModuleType) else obj.__module__
    out.append([module, name, where, getattr(obj, "__qualname__", "")])
out.append(len([m for m in sys.modules if m.startswith("kubernetes.client.")]))
print(json.dumps(out))
"""


def test_every_name_searchrun_uses_resolves_as_with_the_full_import():
    names = sorted(names_used())
    assert ("kubernetes.client", "BatchV1Api") in names and ("kubernetes.client.rest", "ApiException") in names
    slim = run(RESOLVE.format(setup="import searchrun.executors.kube", names=names))
    full = run(RESOLVE.format(setup="import kubernetes", names=names))
    assert slim[:-1] == full[:-1]
    assert slim[-1] < 100 < full[-1], (slim[-1], full[-1])  # no name fell back to the whole client (~1,300 modules)


def test_the_operator_imports_only_the_client_modules_it_uses():
    got = run("import json, sys\n"
              "from searchrun.executors.kube import main\n"  # as ``searchrun operator`` starts: then kopf, the handlers
              "import kopf\n"
              "from searchrun.executors.kube import handlers, retry_handlers, webhooks\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.startswith('kubernetes.client.'))))")
    assert "kubernetes.client.api_client" in got  # the APIs themselves: when the first client is made
    assert "kubernetes.client.api.apps_v1_api" not in got  # an API group the operator never calls
    assert "kubernetes.client.models.v1_pod" not in got
    assert len(got) < 100, len(got)


def test_a_name_it_cannot_place_loads_the_real_package():
    got = run("import json\n"
              "import searchrun.executors.kube\n"
              "from kubernetes import client, config, watch\n"
              "import kubernetes.client.models as models\n"
              "names = [client.CoreV1Api, client.V1Pod, models.V1PodList, client.V1APIService, config.load_kube_config,\n"
              "         watch.Watch]\n"
              "pods = client.ApiClient()._ApiClient__deserialize({'items': [{'metadata': {'name': 'p'}}]}, 'V1PodList')\n"
              "print(json.dumps([n.__module__ for n in names] + [pods.items[0].metadata.name]))")
    assert got[0] == "kubernetes.client.api.core_v1_api" and got[1] == "kubernetes.client.models.v1_pod"
    assert got[3] == "kubernetes.client.models.v1_api_service"  # not derived from its name: the real package loaded
    assert got[-1] == "p"  # a typed response still deserialises


def test_threads_naming_classes_at_once_all_get_them():
    got = run("import json, threading\n"
              "import searchrun.executors.kube\n"
              "from kubernetes import client\n"
              "names = ['BatchV1Api', 'CoreV1Api', 'V1Job', 'V1APIService', 'CustomObjectsApi', 'V1Pod'] * 4\n"
              "got = {}\n"
              "def read(i, n):\n"
              "    got[i] = getattr(client, n).__name__\n"
              "ts = [threading.Thread(target=read, args=(i, n)) for i, n in enumerate(names)]\n"
              "[t.start() for t in ts]; [t.join() for t in ts]\n"
              "print(json.dumps([got.get(i) for i in range(len(names))] + [names]))")
    assert got[:-1] == got[-1]

"""The Helm chart (charts/searchrun-operator): lint, render, validate, install.

* Without a cluster: the CRD the chart ships is the generated one; values.schema.json covers
  every value and refuses unknown ones; ``helm lint --strict``; the rendered operator
  configuration is what ``OperatorConfig`` accepts; RBAC, webhooks and the Deployment have the
  shape the design asks for.
* kubeconform (strict) validates the rendered manifests and examples/*.yaml against JSON
  schemas generated from the REAL API server's OpenAPI v3 (no internet): SearchRun from its
  CRD; ServiceMonitor, PrometheusRule, Certificate and Issuer from the minimal CRDs in
  hack/prometheus/crds/ (no such CRD is installed on the test cluster). Nothing is skipped.
* On the cluster: ``helm install`` into a fresh ``srhelm-*`` namespace (watching only that
  namespace), an S3 server on the cluster bridge; the example SearchRun completes through the
  installed operator, the installed webhooks reject and clamp; upgrade keeps the certificate;
  uninstall leaves no webhook configuration behind and keeps the CRD.

The helpers here (``helm_bin``, ``render``, ``HelmRelease``) are shared with test_prometheus.py.
"""

from __future__ import annotations

import base64
import json
import sys
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.runs import manifest
from support.s3server import S3Server, free_port

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "searchrun-operator"
ALL_OPTIONS = CHART / "ci" / "all-options-values.yaml"
GLOBS = CHART / "ci" / "globs-values.yaml"
MINIMAL = CHART / "ci" / "minimal-values.yaml"
HACK = REPO / "hack"
CACHE = Path(os.environ.get("SEARCHRUN_CACHE", Path.home() / ".cache" / "searchrun"))
CRD_NAME = "searchruns.searchrun.dev"
BUCKET = "searchrun"

# Values files rendered and validated (each is also linted).
VALUES_CASES = {"default": None, "all-options": ALL_OPTIONS, "globs": GLOBS, "minimal": MINIMAL}


# ------------------------------------------------------------------ tools


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _versions() -> dict[str, str]:
    out = {}
    for line in (HACK / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip().strip('"')
    return out


def helm_bin() -> str:
    """helm: $SEARCHRUN_HELM, the cached build (hack/build-binaries.sh helm), or PATH."""
    if os.environ.get("SEARCHRUN_HELM"):
        return os.environ["SEARCHRUN_HELM"]
    cached = CACHE / "bin" / f"helm-{_versions().get('HELM_VERSION')}" / "helm"
    if not cached.exists() and shutil.which("go") and not shutil.which("helm"):
        subprocess.run([str(HACK / "build-binaries.sh"), "helm"], capture_output=True, timeout=1800)
    if cached.exists():
        return str(cached)
    if shutil.which("helm"):
        return shutil.which("helm")
    _unavailable("helm not found (hack/build-binaries.sh helm builds it; needs go)")


def kubeconform_bin() -> str:
    r = subprocess.run([str(HACK / "kubeconform.sh")], capture_output=True, text=True, timeout=1200)
    if r.returncode != 0:
        _unavailable(f"hack/kubeconform.sh failed: {r.stderr[-2000:]}")
    return r.stdout.strip().splitlines()[-1]


def helm(*args: str, check: bool = True, kubeconfig: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [helm_bin()] + (["--kubeconfig", kubeconfig] if kubeconfig else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({r.returncode}):\n{r.stderr}{r.stdout}")
    return r


def render(values: Path | dict | None = None, namespace: str = "srhelm-render", release: str = "sr",
           extra: tuple[str, ...] = ()) -> list[dict]:
    """``helm template`` the chart; the documents, parsed."""
    return yaml_docs(render_text(values, namespace, release, extra))


def render_text(values: Path | dict | None = None, namespace: str = "srhelm-render", release: str = "sr",
                extra: tuple[str, ...] = ()) -> str:
    args = ["template", release, str(CHART), "--namespace", namespace]
    tmp = None
    if isinstance(values, dict):
        tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        yaml.safe_dump(values, tmp)
        tmp.close()
        values = Path(tmp.name)
    if values is not None:
        args += ["-f", str(values)]
    try:
        return helm(*args, *extra).stdout
    finally:
        if tmp:
            os.unlink(tmp.name)


def yaml_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


AGGREGATE_LABELS = ("rbac.authorization.k8s.io/aggregate-to-edit", "rbac.authorization.k8s.io/aggregate-to-view")


def operator_cluster_roles(docs: list[dict]) -> list[dict]:
    """The operator's ClusterRoles (not the ones aggregated to the built-in edit and view roles)."""
    return [d for d in by_kind(docs, "ClusterRole") if not set(AGGREGATE_LABELS) & set(d["metadata"].get("labels") or {})]


def one(docs: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def operator_config(docs: list[dict]) -> dict:
    cms = [d for d in by_kind(docs, "ConfigMap") if "config.yaml" in (d.get("data") or {})]
    assert len(cms) == 1
    return yaml.safe_load(cms[0]["data"]["config.yaml"])


# ------------------------------------------------------------------ the CRD file


def test_chart_crd_is_the_generated_crd():
    from searchrun.crd import crd_yaml

    generated = crd_yaml()
    assert (CHART / "files" / "crd.yaml").read_text() == generated, (
        "charts/searchrun-operator/files/crd.yaml is stale: run "
        "`searchrun crd -o charts/searchrun-operator/files/crd.yaml`")
    assert (REPO / "crds" / "searchrun.dev_searchruns.yaml").read_text() == generated

    docs = render()
    crd = one(docs, "CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    want = yaml.safe_load(generated)
    got = dict(crd, metadata={"name": crd["metadata"]["name"]})
    assert got == want, "the chart's CRD differs from the generated one beyond its metadata"

    assert not by_kind(render({"crds": {"install": False}}), "CustomResourceDefinition")
    unkept = one(render({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "annotations" not in unkept["metadata"]


# ------------------------------------------------------------------ values and schema


def _schema_walk(schema: dict, path: str = ""):
    yield path, schema
    for k, sub in (schema.get("properties") or {}).items():
        yield from _schema_walk(sub, f"{path}.{k}" if path else k)
    if isinstance(schema.get("items"), dict):
        yield from _schema_walk(schema["items"], path + "[]")


def _value_paths(values: Any, schema: dict, path: str = ""):
    """Every key path of a values tree, checked against the schema as it goes."""
    if isinstance(values, dict) and "properties" in schema:
        for k, v in values.items():
            assert k in schema["properties"], f"value {path}.{k} is not in values.schema.json"
            sub = f"{path}.{k}" if path else k
            yield sub
            yield from _value_paths(v, schema["properties"][k], sub)


def test_values_schema_covers_every_value_and_is_closed():
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    all_options = yaml.safe_load(ALL_OPTIONS.read_text())

    default_paths = set(_value_paths(defaults, schema))
    option_paths = set(_value_paths(all_options, schema))
    schema_paths = {p for p, _ in _schema_walk(schema) if p and "[]" not in p} - {"global"}
    # every value in the schema is a default or set by the all-options file, and vice versa
    assert schema_paths == default_paths | option_paths, (
        f"in the schema only: {sorted(schema_paths - default_paths - option_paths)}; "
        f"in values only: {sorted((default_paths | option_paths) - schema_paths)}")
    assert not default_paths - option_paths, (
        f"ci/all-options-values.yaml leaves out: {sorted(default_paths - option_paths)}")

    for path, node in _schema_walk(schema):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '<root>'}: additionalProperties must be false"
        assert "description" in node or "type" in node or "oneOf" in node or "enum" in node, path


@pytest.mark.parametrize("bad, message", [
    ({"replicas": 2}, "additional properties 'replicas' not allowed"),
    ({"policy": {"mode": "sometimes"}}, "/policy/mode"),
    ({"policy": {"caps": {"maxAgnts": 3}}}, "'maxAgnts' not allowed"),
    ({"policy": {"caps": {"maxSteps": 2}}}, "/policy/caps/maxSteps"),
    ({"policy": {"clamp": ["maxWidgets"]}}, "/policy/clamp/0"),
    ({"policy": {"caps": {"maxTokens": "lots"}}}, "/policy/caps/maxTokens"),
    ({"webhook": {"timeoutSeconds": 60}}, "/webhook/timeoutSeconds"),
    ({"metrics": {"prometheusRule": {"stepsStuck": {"window": "ten minutes"}}}}, "/metrics/prometheusRule/stepsStuck/window"),
    ({"watchNamespaces": ["Team A"]}, "/watchNamespaces/0"),
    ({"s3": {"endpointUrl": "http://x"}}, "'endpointUrl' not allowed"),
    ({"policy": {"agentEndpoints": {"cidrs": ["ten"]}}}, "/policy/agentEndpoints/cidrs/0"),
    ({"policy": {"agentEndpoints": {"allow": ["http://user@host"]}}}, "/policy/agentEndpoints/allow/0"),
    ({"networkPolicy": {"egress": []}}, "'egress' not allowed"),
    ({"networkPolicy": {"s3": {"ports": [0]}}}, "/networkPolicy/s3/ports/0"),
])
def test_values_schema_refuses_unknown_or_wrong_values(bad, message):
    tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    yaml.safe_dump(bad, tmp)
    tmp.close()
    try:
        r = helm("template", "sr", str(CHART), "-f", tmp.name, check=False)
    finally:
        os.unlink(tmp.name)
    assert r.returncode != 0, f"{bad} was accepted"
    assert "values don't meet the specifications of the schema" in r.stderr and message in r.stderr, r.stderr


@pytest.mark.parametrize("case", list(VALUES_CASES))
def test_helm_lint_strict(case):
    values = VALUES_CASES[case]
    r = helm("lint", "--strict", str(CHART), *(["-f", str(values)] if values else []))
    assert "1 chart(s) linted, 0 chart(s) failed" in r.stdout, r.stdout


# ------------------------------------------------------------------ what the chart renders


@pytest.mark.parametrize("case", list(VALUES_CASES))
def test_rendered_config_is_what_the_operator_accepts(case):
    from searchrun.executors.kube.config import OperatorConfig

    values_file = VALUES_CASES[case]
    values = yaml.safe_load(values_file.read_text()) if values_file else {}
    docs = render(values_file, namespace="srhelm-render")
    raw = operator_config(docs)
    cfg = OperatorConfig.model_validate(raw)  # extra="forbid": only OperatorConfig's field names
    policy = values.get("policy", {})
    caps = dict(yaml.safe_load((CHART / "values.yaml").read_text())["policy"]["caps"], **policy.get("caps", {}))
    assert cfg.policy.caps.model_dump() == caps
    for k, v in caps.items():
        assert type(raw["policy"]["caps"][k]) is type(v), f"{k} rendered as {raw['policy']['caps'][k]!r}"
    assert cfg.policy.mode == policy.get("mode", "reject")
    endpoints = dict(yaml.safe_load((CHART / "values.yaml").read_text())["policy"]["agentEndpoints"], **policy.get("agentEndpoints", {}))
    assert cfg.policy.agentEndpoints.model_dump() == endpoints
    assert cfg.webhookCertDir == "/tls" and cfg.webhookManaged is False
    assert cfg.webhooks == values.get("webhook", {}).get("enabled", True)
    s3 = values.get("s3", {})
    assert cfg.stepS3EndpointURL == (s3.get("stepEndpointURL") or s3.get("endpointURL") or None)
    assert cfg.stepS3Secret == (s3.get("existingSecret", "searchrun-s3") or None)

    # every OperatorConfig field comes from a value, except those the chart sets otherwise:
    # namespaces (as -n flags) and webhookHost (only for kopf's self-managed configurations)
    dev_only = {"webhookManagedName", "webhookNamespaceSelector"}  # managed webhooks: never in the chart (webhookManaged false)
    assert set(OperatorConfig.model_fields) - set(raw) <= {"namespaces", "webhookHost", "stepImage", "stepPodTemplate", "stepJobManagedBy",
                                                          "stepServiceAccount", "stepS3EndpointURL", *dev_only}, (
        f"OperatorConfig fields the chart doesn't set: {set(OperatorConfig.model_fields) - set(raw)}")
    if case == "all-options":
        assert set(OperatorConfig.model_fields) - set(raw) == {"namespaces", "webhookHost", *dev_only}
        assert cfg.stepPodTemplate.model_dump() == values["operator"]["stepPodTemplate"]
        assert cfg.stepJobManagedBy == values["operator"]["stepJobManagedBy"]

    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    args = c["args"]
    assert args[:5] == ["operator", "--config", "/etc/searchrun/config.yaml", "--webhook-cert-dir", "/tls"]
    watched = values.get("watchNamespaces", [])
    assert [args[i + 1] for i, a in enumerate(args) if a == "-n"] == watched
    assert dep["spec"]["strategy"] == {"type": "Recreate"} and dep["spec"]["replicas"] == 1
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert "--liveness" in args and args[args.index("--liveness") + 1].endswith(":8081/healthz")
    assert c["readinessProbe"] and c["resources"]["requests"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts == {"/etc/searchrun": "config", "/tls": "tls", "/tmp": "tmp"}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in vols["tmp"]
    env = {e["name"]: e for e in c["env"]}
    if s3.get("existingSecret", "searchrun-s3"):
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == s3.get("existingSecret", "searchrun-s3")
    else:
        assert "AWS_ACCESS_KEY_ID" not in env
    override = values.get("apiServerOverride", {})
    assert ("KUBERNETES_SERVICE_HOST" in env) == bool(override.get("host"))
    image = values.get("image", {})
    assert c["image"] == f"{image.get('repository', 'localhost/searchrun')}:{image.get('tag') or '0.1.0'}"
    assert c["imagePullPolicy"] == image.get("pullPolicy", "IfNotPresent")

    metrics = one(docs, "Service", "-metrics")
    assert metrics["spec"]["ports"][0]["port"] == 8080 and metrics["spec"]["ports"][0]["targetPort"] == "metrics"


def test_step_pods_get_a_network_policy_in_each_watched_namespace():
    """No ingress; egress to DNS, the S3 endpoint and policy.agentEndpoints.cidrs only."""
    from searchrun.executors.kube.jobs import L_NAME

    def policies(values):
        return {d["metadata"]["namespace"]: d for d in by_kind(render(values), "NetworkPolicy")}

    nps = policies({"watchNamespaces": ["team-a", "team-b"]})
    assert sorted(nps) == ["team-a", "team-b"]
    spec = nps["team-a"]["spec"]
    assert spec["podSelector"] == {"matchLabels": {L_NAME: "searchrun-step"}}  # the label build_job puts on step pods
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
    dns, s3 = spec["egress"]  # no agent CIDRs: no rule for them
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    (public,) = s3["to"]  # no S3 address given: public addresses only, never private, link-local or loopback
    assert public["ipBlock"]["cidr"] == "0.0.0.0/0" and {"169.254.0.0/16", "10.0.0.0/8", "127.0.0.0/8"} <= set(public["ipBlock"]["except"])
    assert s3["ports"] == [{"protocol": "TCP", "port": 443}]

    nps = policies({"watchNamespaces": ["team-a"], "networkPolicy": {"s3": {"cidrs": ["10.244.0.1/32"], "ports": [9000]}},
                    "policy": {"agentEndpoints": {"cidrs": ["10.244.0.1/32", "203.0.113.0/24"]}}})
    dns, s3, agents = nps["team-a"]["spec"]["egress"]
    assert s3 == {"to": [{"ipBlock": {"cidr": "10.244.0.1/32"}}], "ports": [{"protocol": "TCP", "port": 9000}]}
    assert agents == {"to": [{"ipBlock": {"cidr": "10.244.0.1/32"}}, {"ipBlock": {"cidr": "203.0.113.0/24"}}]}

    assert policies({"watchNamespaces": ["team-a"], "networkPolicy": {"enabled": False}}) == {}
    assert policies(None) == {}, "cluster-wide the chart cannot know the namespaces ..."
    assert sorted(policies({"networkPolicy": {"namespaces": ["ns-x", "ns-y"]}})) == ["ns-x", "ns-y"], "... unless they are listed"
    all_opts = policies(ALL_OPTIONS)
    assert sorted(all_opts) == ["team-a", "team-b", "team-c"]
    egress = all_opts["team-a"]["spec"]["egress"]
    assert egress[2]["ports"] == [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 11434}]
    assert egress[3] == {"to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}], "ports": [{"protocol": "TCP", "port": 8443}]}


def test_rbac_is_least_privilege_and_scoped_to_the_watched_namespaces():
    # cluster-wide: one ClusterRole with everything; no namespace rules; no secrets anywhere
    docs = render()
    (cr,) = operator_cluster_roles(docs)
    assert not by_kind(docs, "Role")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in cr["rules"]}
    assert rules == {
        (("apiextensions.k8s.io",), ("customresourcedefinitions",)): {"get", "list", "watch"},
        (("searchrun.dev",), ("searchruns",)): {"get", "list", "watch", "patch"},
        (("searchrun.dev",), ("searchruns/status",)): {"get", "patch"},
        (("batch",), ("jobs",)): {"create", "get", "list", "watch"},
        (("",), ("pods",)): {"get", "list"},
        (("",), ("events",)): {"create", "patch"},
    }
    (crb,) = by_kind(docs, "ClusterRoleBinding")
    assert crb["subjects"][0]["name"] == one(docs, "ServiceAccount")["metadata"]["name"]
    # cluster-wide: step pods can't get a chart-made ServiceAccount in every namespace
    assert "stepServiceAccount" not in operator_config(docs)
    # the webhooks judge SearchRuns everywhere
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        assert "namespaceSelector" not in one(docs, kind)["webhooks"][0]

    # named namespaces: a Role per namespace, only CRDs cluster-wide, step ServiceAccounts made
    docs = render(ALL_OPTIONS)
    (cr,) = operator_cluster_roles(docs)
    assert [(r["resources"], r["verbs"]) for r in cr["rules"]] == [
        (["customresourcedefinitions"], ["get", "list", "watch"]), (["namespaces"], ["list", "watch"])]
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")) == ["team-a", "team-b"]
    for r in roles:
        assert {x for rule in r["rules"] for x in rule["resources"]} == {"searchruns", "searchruns/status", "jobs", "pods", "events"}
    steps = [sa for sa in by_kind(docs, "ServiceAccount") if sa["metadata"]["name"] == "searchrun-step"]
    assert sorted(sa["metadata"]["namespace"] for sa in steps) == ["team-a", "team-b"]
    assert all(sa["automountServiceAccountToken"] is False for sa in steps)
    assert operator_config(docs)["stepServiceAccount"] == "searchrun-step"
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        sel = one(docs, kind)["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]
        assert sel == {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}

    # patterns: cluster-wide rules, plus namespaces list/watch for kopf
    docs = render(GLOBS)
    (cr,) = operator_cluster_roles(docs)
    res = {x for rule in cr["rules"] for x in rule["resources"]}
    assert {"namespaces", "searchruns", "jobs"} <= res and not by_kind(docs, "Role")

    for d in render(ALL_OPTIONS) + render() + render(GLOBS):
        for rule in d.get("rules") or []:
            assert "secrets" not in rule["resources"] and "*" not in rule["verbs"] and "*" not in rule["resources"]


def test_webhooks_point_at_the_chart_service_with_its_ca():
    docs = render()
    secret = one(docs, "Secret", "-webhook-tls")
    ca = secret["data"]["ca.crt"]
    svc = one(docs, "Service", "-webhook")
    assert svc["spec"]["ports"][0]["targetPort"] == "webhook"
    paths = {}
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        (wh,) = one(docs, kind)["webhooks"]
        cc = wh["clientConfig"]
        assert cc["caBundle"] == ca
        assert cc["service"]["name"] == svc["metadata"]["name"] and cc["service"]["namespace"] == "srhelm-render"
        assert cc["service"]["port"] == 443
        assert wh["failurePolicy"] == "Fail" and wh["sideEffects"] == "None"
        assert wh["admissionReviewVersions"] == ["v1"] and wh["timeoutSeconds"] == 10
        (rule,) = wh["rules"]
        assert (rule["apiGroups"], rule["apiVersions"], rule["resources"]) == (["searchrun.dev"], ["v1alpha1"], ["searchruns"])
        paths[kind] = (cc["service"]["path"], rule["operations"])
    # kopf serves a handler at /<handler id>: webhooks.py registers id="validate" and id="defaults"
    assert paths == {"ValidatingWebhookConfiguration": ("/validate", ["CREATE", "UPDATE"]),
                     "MutatingWebhookConfiguration": ("/defaults", ["CREATE"])}
    kube = "".join(p.read_text() for p in (REPO / "operator" / "searchrun" / "executors" / "kube").glob("*.py"))
    assert re.search(r'@kopf\.on\.validate\([^)]*id="validate"', kube) and re.search(r'@kopf\.on\.mutate\([^)]*id="defaults"', kube)

    # the serving certificate is signed by that CA, for the Service's DNS names
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca_cert = x509.load_pem_x509_certificate(base64.b64decode(ca))
    assert cert.issuer == ca_cert.subject
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"{svc['metadata']['name']}.srhelm-render.svc" in sans

    # cert-manager: no Secret from the chart; the CA is injected from the Certificate
    docs = render(ALL_OPTIONS)
    assert not [d for d in by_kind(docs, "Secret")]
    cert = one(docs, "Certificate")
    assert cert["spec"]["secretName"] == "searchrun-all-webhook-tls"
    assert cert["spec"]["issuerRef"] == {"name": "cluster-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        d = one(docs, kind)
        assert d["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "srhelm-render/searchrun-all-webhook"
        assert "caBundle" not in d["webhooks"][0]["clientConfig"]
    docs = render({"certManager": {"enabled": True}})
    issuer = one(docs, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    assert one(docs, "Certificate")["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]

    # webhooks off: nothing registered, nothing served
    docs = render(MINIMAL)
    assert not by_kind(docs, "ValidatingWebhookConfiguration") and not by_kind(docs, "MutatingWebhookConfiguration")
    assert "--no-webhooks" in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]


def test_monitoring_objects():
    docs = render(ALL_OPTIONS)
    sm = one(docs, "ServiceMonitor")
    metrics = one(docs, "Service", "-metrics")
    assert all(metrics["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == metrics["spec"]["ports"][0]["name"] and ep["path"] == "/metrics" and ep["honorLabels"] is True
    rule = one(docs, "PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert alerts == ["SearchRunsFailing", "SearchRunStepsFailing", "SearchRunBudgetExhaustion", "SearchRunStepsStuck",
                      "SearchRunStepsWaitOnCluster"]
    (wait,) = [r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "SearchRunStepsWaitOnCluster"]
    assert "searchrun_step_queue_seconds_bucket" in wait["expr"] and "searchrun_step_handoff_seconds_bucket" in wait["expr"]
    assert "> 10)" in wait["expr"] and "> 20 * histogram_quantile" in wait["expr"] and "[30m]" in wait["expr"]
    assert wait["for"] == "15m" and wait["labels"]["severity"] == "warning"
    dash = one(docs, "ConfigMap", "-dashboard")
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1" and dash["metadata"]["namespace"] == "monitoring"
    assert json.loads(dash["data"]["searchrun.json"]) == json.loads((CHART / "files" / "dashboard.json").read_text())
    default = render()
    assert not by_kind(default, "ServiceMonitor") and not by_kind(default, "PrometheusRule")
    assert one(default, "ConfigMap", "-dashboard")


# ------------------------------------------------------------------ kubeconform


@pytest.fixture(scope="session")
def k8s_schemas(cluster) -> Path:
    """JSON schemas from the real API server's OpenAPI v3, the SearchRun CRD and hack/prometheus/crds/."""
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    out = Path(tempfile.mkdtemp(prefix="srhelm-schemas-"))
    crds = [CHART / "files" / "crd.yaml"] + sorted((HACK / "prometheus" / "crds").glob("*.yaml"))
    cmd = [sys.executable, str(HACK / "prometheus" / "openapi2schemas.py"), "--out", str(out),
           "--kubectl", cluster.kubectl_path, "--kubeconfig", cluster.kubeconfig]
    for c in crds:
        cmd += ["--crd", str(c)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "deployment-apps-v1.json").exists() and (out / "searchrun-searchrun-v1alpha1.json").exists()
    sys.stderr.write(f"\n[kubeconform] {r.stdout.strip()} schemas from {version}\n")
    yield out
    shutil.rmtree(out, ignore_errors=True)


def kubeconform(schemas: Path, *files_or_stdin: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [kubeconform_bin(), "-strict", "-summary", "-output", "json",
         "-schema-location", str(schemas) + "/{{ .ResourceKind }}{{ .KindSuffix }}.json", *files_or_stdin],
        input=stdin, capture_output=True, text=True, timeout=300)


@pytest.mark.cluster
@pytest.mark.parametrize("case", list(VALUES_CASES))
def test_kubeconform_strict_on_rendered_chart(k8s_schemas, case):
    text = render_text(VALUES_CASES[case])
    r = kubeconform(k8s_schemas, "-", stdin=text)
    report = json.loads(r.stdout)
    assert r.returncode == 0, json.dumps(report["resources"], indent=1)[:6000]
    summary = report["summary"]
    assert summary["invalid"] == 0 and summary["errors"] == 0 and summary["skipped"] == 0, summary
    assert summary["valid"] == len(yaml_docs(text))


@pytest.mark.cluster
def test_kubeconform_strict_on_examples_and_catches_mistakes(k8s_schemas):
    examples = sorted(str(p) for p in (REPO / "examples").glob("*.yaml"))
    r = kubeconform(k8s_schemas, *examples)
    assert r.returncode == 0, r.stdout
    assert json.loads(r.stdout)["summary"]["valid"] == len(examples)

    # the schemas are strict and real: a misspelt field, a value over the CRD's bound, a wrong type
    bad_run = (REPO / "examples" / "searchrun.yaml").read_text().replace("maxDepth: 2 ", "maxDepth: 9 ").replace(
        "  query:", "  querry: typo\n  query:")
    r = kubeconform(k8s_schemas, "-", stdin=bad_run)
    assert r.returncode != 0 and "maxDepth" in r.stdout and "querry" in r.stdout, r.stdout
    text = render_text().replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: \"yes\"", 1)
    r = kubeconform(k8s_schemas, "-", stdin=text)
    assert r.returncode != 0 and "readOnlyRootFilesystem" in r.stdout, r.stdout
    text = render_text().replace("failurePolicy: Fail", "failurePolicy: Sometimes", 1)
    assert kubeconform(k8s_schemas, "-", stdin=text).returncode != 0


# ------------------------------------------------------------------ install on the cluster


class HelmRelease:
    """A release of the chart in its own srhelm-* namespace, watching that namespace only, with
    an S3 server on the cluster bridge and the Secret step pods and the operator read."""

    def __init__(self, cluster, prefix: str, values: dict, install_crd: bool = True):
        self.cluster = cluster
        self.name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.namespace = self.name
        self.fullname = f"{self.name}-searchrun-operator"
        self.values = values
        self.install_crd = install_crd
        self.s3: S3Server | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.installed = False

    # -- lifecycle
    def setup(self, timeout: float = 240) -> "HelmRelease":
        c = self.cluster
        host = c.host_ip or "127.0.0.1"
        self.s3 = S3Server(host, free_port(host), self.workdir / "s3-server.log")
        self.s3.start()
        self.s3.client().create_bucket(Bucket=BUCKET)
        c.kubectl("create", "namespace", self.namespace)
        c.kubectl("-n", self.namespace, "create", "secret", "generic", "searchrun-s3",
                  f"--from-literal=AWS_ACCESS_KEY_ID={self.s3.access_key}",
                  f"--from-literal=AWS_SECRET_ACCESS_KEY={self.s3.secret_key}")
        repo, _, tag = c.image.rpartition(":")
        values = {
            "image": {"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"},
            "watchNamespaces": [self.namespace],
            "crds": {"install": self.install_crd},
            "artifacts": {"uri": f"s3://{BUCKET}"},
            "s3": {"endpointURL": self.s3.endpoint_url, "region": self.s3.region, "existingSecret": "searchrun-s3"},
            "operator": {"resyncSeconds": 5},
            # step pods reach S3 on the bridge (where a CNI enforces NetworkPolicies)
            "networkPolicy": {"s3": {"cidrs": [f"{host}/32"], "ports": [int(self.s3.endpoint_url.rsplit(":", 1)[1])]}},
        }
        _merge(values, self.values)
        self.values_file = self.workdir / "values.yaml"
        self.values_file.write_text(yaml.safe_dump(values))
        if self.install_crd:
            self._adopt_crd()
        else:
            c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "files" / "crd.yaml"))
        c.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s", check=False)
        t0 = time.monotonic()
        self.installed = True
        self.install_output = self.helm("install", self.name, str(CHART), "--namespace", self.namespace,
                                        "-f", str(self.values_file), "--wait", "--timeout", f"{int(timeout)}s",
                                        timeout=timeout + 30).stdout
        self.install_seconds = time.monotonic() - t0
        return self

    def _adopt_crd(self) -> None:
        """The CRD may exist (other tests apply crds/, an earlier release kept it): let this
        release adopt it, as Helm does for objects annotated with its name and namespace."""
        c = self.cluster
        if c.kubectl("get", "crd", CRD_NAME, check=False).returncode != 0:
            return
        c.kubectl("annotate", "--overwrite", "crd", CRD_NAME, f"meta.helm.sh/release-name={self.name}",
                  f"meta.helm.sh/release-namespace={self.namespace}")
        c.kubectl("label", "--overwrite", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm")

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return helm(*args, check=check, kubeconfig=self.cluster.kubeconfig, timeout=timeout)

    def teardown(self) -> list[str]:
        """Delete the runs (the operator removes its finalizers), uninstall, delete the
        namespace, stop S3. Returns the webhook configurations of this release still present."""
        c = self.cluster
        if self.installed:
            c.kubectl("-n", self.namespace, "delete", "searchruns", "--all", "--wait=true", "--timeout=60s", check=False)
            self.helm("uninstall", self.name, "--namespace", self.namespace, "--wait", "--timeout", "120s", check=False)
        left = self.webhook_configurations()
        for kind, name in left:  # never leave a failurePolicy Fail webhook behind
            c.kubectl("delete", kind, name, "--ignore-not-found", check=False)
        # runs left with the kopf finalizer would keep the namespace terminating forever
        for name in c.kubectl("-n", self.namespace, "get", "searchruns", "-o", "name", check=False).stdout.split():
            c.kubectl("-n", self.namespace, "patch", name, "--type", "merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
        c.kubectl("delete", "namespace", self.namespace, "--wait=false", "--ignore-not-found", check=False)
        if self.s3:
            self.s3.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return left

    def webhook_configurations(self) -> list[tuple[str, str]]:
        out = []
        for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
            r = self.cluster.kubectl("get", kind, "-l", f"app.kubernetes.io/instance={self.name}", "-o", "name", check=False)
            out += [(kind, n.split("/", 1)[1]) for n in r.stdout.split()]
        return out

    # -- helpers
    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.cluster.kubectl("-n", self.namespace, *args, **kw)

    def apply(self, doc: dict, check: bool = True) -> subprocess.CompletedProcess:
        return self.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc), check=check)

    def run(self, name: str) -> dict:
        return json.loads(self.kubectl("get", "searchrun", name, "-o", "json").stdout)

    def wait_finished(self, name: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(name)
            if (run.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return run
            time.sleep(1)
        jobs = self.kubectl("get", "jobs,pods", "-o", "wide", check=False).stdout
        raise AssertionError(f"{name} not finished in {timeout}s: {json.dumps(run.get('status'))[:3000]}\n{jobs}\n{self.logs()}")

    def operator_pod(self) -> dict:
        pods = json.loads(self.kubectl("get", "pods", "-l", "app.kubernetes.io/component=operator",
                                       "-l", f"app.kubernetes.io/instance={self.name}", "-o", "json").stdout)["items"]
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        return pods[0]

    def logs(self, tail: int = 200) -> str:
        return self.kubectl("logs", f"deployment/{self.fullname}", f"--tail={tail}", check=False).stdout

    def metrics_text(self) -> str:
        """/metrics through the API server's proxy to the chart's metrics Service."""
        return self.cluster.kubectl(
            "get", "--raw", f"/api/v1/namespaces/{self.namespace}/services/http:{self.fullname}-metrics:http-metrics/proxy/metrics").stdout


def _merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def example(name: str | None = None, path: str = "searchrun.yaml", **spec) -> dict:
    doc = manifest(REPO / "examples" / path, **spec)
    if name:
        doc["metadata"]["name"] = name
    return doc


# Caps that differ from any other operator's (tests/integration/test_operator.py runs one with
# cluster-wide webhooks): a message naming these limits can only come from this release.
CHART_TEST_POLICY = {"policy": {"mode": "reject", "clamp": ["maxParallel"],
                                "caps": {"maxAgents": 4, "maxParallel": 3, "maxDepth": 3, "maxSteps": 50}}}


@pytest.fixture
def release(cluster):
    rel = HelmRelease(cluster, "srhelm", CHART_TEST_POLICY)
    try:
        yield rel
    finally:
        rel.teardown()


@pytest.mark.cluster
@pytest.mark.s3
def test_helm_install_runs_the_example_through_operator_and_webhooks(cluster, release):
    rel = release
    t0 = time.monotonic()
    rel.setup()
    notes = rel.install_output.split("NOTES:", 1)[1]  # NOTES.txt: how to run a first SearchRun
    assert "kubectl -n <namespace> apply -f examples/searchrun.yaml" in notes and "get sr -w" in notes
    assert f"watching: {rel.namespace}" in notes and "create secret generic searchrun-s3" in notes
    pod = rel.operator_pod()
    assert pod["spec"]["serviceAccountName"] == rel.fullname
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    status = {c["name"]: c for c in pod["status"]["containerStatuses"]}["operator"]
    assert status["ready"] and status["restartCount"] == 0, rel.logs()

    # the webhook Service has the operator pod behind it
    eps = json.loads(rel.kubectl("get", "endpointslices", "-l", f"kubernetes.io/service-name={rel.fullname}-webhook",
                                 "-o", "json").stdout)["items"]
    assert [a for e in eps for ep in e.get("endpoints") or [] for a in ep["addresses"]] == [pod["status"]["podIP"]]

    # validating webhook: a budget over this release's cap is refused, the field and limit named
    r = rel.apply(example("too-many-agents", budget__maxAgents=5), check=False)
    assert r.returncode != 0, r.stdout
    assert 'admission webhook "validate.searchrun.dev" denied the request' in r.stderr, r.stderr
    assert "spec.budget.maxAgents: 5 exceeds the cluster's limit of 4" in r.stderr, r.stderr
    # mutating webhook: maxParallel may be clamped (policy.clamp), with a warning about the value the
    # user wrote (a value equal to the default is filled at the cap silently: the API server has
    # already filled the defaults, so the webhook cannot tell a written default from a filled one)
    r = rel.apply(example(budget__maxParallel=6))
    assert "spec.budget.maxParallel clamped from 6 to 3" in r.stderr, r.stderr
    assert rel.run("quantum-ml")["spec"]["budget"]["maxParallel"] == 3

    run = rel.wait_finished("quantum-ml")
    st = run["status"]
    assert st["phase"] == "Succeeded", st.get("message")
    assert st["intent"] == "deep" and any(s["type"] == "traverse_node" for s in st["steps"])
    html = rel.s3.client().get_object(Bucket=BUCKET, Key=st["reportURI"].split(f"s3://{BUCKET}/", 1)[1])["Body"].read()
    assert b"<svg" in html
    jobs = json.loads(rel.kubectl("get", "jobs", "-l", f"searchrun.dev/run-uid={run['metadata']['uid']}", "-o", "json").stdout)["items"]
    assert len(jobs) == len([s for s in st["steps"] if s["phase"] != "Skipped"])
    for j in jobs:  # step pods: the chart's step ServiceAccount, no token
        spec = j["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == f"{rel.fullname}-step" and spec["automountServiceAccountToken"] is False

    # it was this release's operator (not another one watching the cluster) that ran it
    m = rel.metrics_text()
    assert f'searchrun_tokens_total{{namespace="{rel.namespace}"}}' in m
    assert 'searchrun_admission_rejections_total{reason="cap"} 1.0' in m
    assert "searchrun_admission_clamps_total 1.0" in m
    logs = rel.logs(tail=2000)
    assert "run Succeeded" in logs, logs[-4000:]
    assert "Forbidden" not in logs and " 403" not in logs, "least-privilege RBAC is missing something:\n" + logs[-4000:]

    # upgrade: the chart keeps its certificate (lookup), the operator keeps running
    secret = f"{rel.fullname}-webhook-tls"
    before = json.loads(rel.kubectl("get", "secret", secret, "-o", "json").stdout)["data"]
    rel.helm("upgrade", rel.name, str(CHART), "--namespace", rel.namespace, "--reuse-values", "--wait", "--timeout", "120s")
    after = json.loads(rel.kubectl("get", "secret", secret, "-o", "json").stdout)["data"]
    assert after == before
    vwc = json.loads(cluster.kubectl("get", "validatingwebhookconfiguration", rel.fullname, "-o", "json").stdout)
    assert vwc["webhooks"][0]["clientConfig"]["caBundle"] == before["ca.crt"]
    assert rel.operator_pod()["metadata"]["name"] == pod["metadata"]["name"]
    r = rel.apply(example("still-guarded", budget__maxAgents=5), check=False)
    assert "exceeds the cluster's limit of 4" in r.stderr

    # uninstall: no webhook configuration left behind, the CRD (and so every SearchRun) kept
    left = rel.teardown()
    rel.installed = False
    assert left == [], f"left behind: {left}"
    assert cluster.kubectl("get", "crd", CRD_NAME, check=False).returncode == 0, "helm.sh/resource-policy: keep"
    sys.stderr.write(f"\n[chart] install {rel.install_seconds:.0f} s, whole test {time.monotonic() - t0:.0f} s\n")


def test_aggregated_roles_let_editors_manage_searchruns_but_never_write_their_status():
    """What users of an operator's chart expect: `edit` (and `admin`) may create and delete
    SearchRuns, `view` may read them; no aggregated role may write searchruns/status."""
    docs = render()
    agg = {d["metadata"]["name"]: d for d in by_kind(docs, "ClusterRole") if d not in operator_cluster_roles(docs)}
    assert sorted(agg) == ["sr-searchrun-operator-edit", "sr-searchrun-operator-view"]
    edit, view = agg["sr-searchrun-operator-edit"], agg["sr-searchrun-operator-view"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert [(r["resources"], set(r["verbs"])) for r in edit["rules"]] == [
        (["searchruns"], {"create", "delete", "deletecollection", "get", "list", "watch", "update", "patch"})]
    assert [(r["resources"], set(r["verbs"])) for r in view["rules"]] == [(["searchruns", "searchruns/status"], {"get", "list", "watch"})]
    for role in agg.values():
        assert not [r for r in role["rules"] if "searchruns/status" in r["resources"] and set(r["verbs"]) - {"get", "list", "watch"}]
    docs = render({"rbac": {"aggregateToDefaultRoles": False}})
    assert by_kind(docs, "ClusterRole") == operator_cluster_roles(docs)

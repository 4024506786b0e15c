"""The managed (development) webhook configurations judge only the operator's namespaces."""

from __future__ import annotations

import kopf
import pytest
from kopf._core.engines import admission as kopf_admission
from kopf._core.intents import registries
from pydantic import ValidationError

from searchrun.api import GROUP, PLURAL, VERSION
from searchrun.executors.kube import managed_webhooks
from searchrun.executors.kube.config import OperatorConfig
from searchrun.executors.kube.managed_webhooks import namespace_selector, scope_managed_webhooks

SEARCHRUNS = kopf_admission.references.Resource(GROUP, VERSION, PLURAL)


@pytest.fixture
def registry():
    reg = registries.OperatorRegistry()

    @kopf.on.validate(GROUP, VERSION, PLURAL, id="validate", registry=reg)
    def validate(**_):
        pass

    yield reg
    scope_managed_webhooks(None)


def built(reg) -> list[dict]:
    """What kopf's configuration manager writes: it calls the module's ``build_webhooks``."""
    return kopf_admission.build_webhooks(reg._webhooks.get_all_handlers(), resources=[SEARCHRUNS],
                                         name_suffix="searchrun.dev", client_config={"url": "https://127.0.0.1:9443"})


def test_kopf_manager_builds_its_configuration_through_the_wrapped_name():
    manager = kopf_admission.configuration_manager
    assert manager.__globals__ is vars(kopf_admission)
    assert "build_webhooks" in manager.__code__.co_names, "kopf changed how it builds its webhooks: the scope is lost"


def test_a_selector_reaches_every_webhook_and_none_restores_kopf(registry):
    assert "namespaceSelector" not in built(registry)[0]
    sel = {"matchLabels": {"searchrun.dev/test-session": "a"}}
    scope_managed_webhooks(sel)
    hooks = built(registry)
    assert hooks and all(h["namespaceSelector"] == sel for h in hooks)
    assert hooks[0]["failurePolicy"] == "Fail" and hooks[0]["clientConfig"]["url"].endswith("/validate")
    scope_managed_webhooks(None)
    assert kopf_admission.build_webhooks is managed_webhooks._KOPF_BUILD_WEBHOOKS
    assert "namespaceSelector" not in built(registry)[0]


@pytest.mark.parametrize("namespaces, explicit, expected", [
    (["team-b", "team-a"], None,
     {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}]}),
    (["team-*"], None, None),      # a pattern: no selector can say it
    ([], None, None),              # cluster-wide
    (["team-*"], {"matchLabels": {"x": "y"}}, {"matchLabels": {"x": "y"}}),
])
def test_the_selector_follows_the_watched_namespaces_unless_configured(namespaces, explicit, expected):
    assert namespace_selector(namespaces, explicit) == expected


def test_a_bad_selector_or_name_is_refused_naming_the_field():
    with pytest.raises(ValidationError, match="webhookNamespaceSelector.matchExpressions.0.operator"):
        OperatorConfig.model_validate({"webhookNamespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Equals"}]}})
    with pytest.raises(ValidationError, match="webhookManagedName"):
        OperatorConfig.model_validate({"webhookManagedName": "Not A Name"})
    cfg = OperatorConfig.model_validate({"webhookNamespaceSelector": {"matchLabels": {"a": "b"}}})
    assert cfg.webhookNamespaceSelector.model_dump(exclude_defaults=True) == {"matchLabels": {"a": "b"}}

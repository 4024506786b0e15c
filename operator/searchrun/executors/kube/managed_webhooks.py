"""Development mode (``webhookManaged``): kopf writes the webhook configurations itself, and they
cover every namespace. With failurePolicy Fail, a development operator that watches ``team-a``
would then judge, or when it is down block, SearchRuns in every other namespace, and two such
operators on one cluster would judge each other's runs. The namespaceSelector below limits the
webhooks to the namespaces this operator serves, as the chart's own configurations do.

kopf has no setting for a namespaceSelector: its builder of the configurations is wrapped (kopf
is pinned; tests/unit/test_managed_webhooks.py checks that kopf's manager calls the wrapper)."""

from __future__ import annotations

from typing import Any, Optional

from kopf._core.engines import admission as _kopf_admission

_KOPF_BUILD_WEBHOOKS = _kopf_admission.build_webhooks
_GLOB = set("*?[!")


def namespace_selector(namespaces: list[str], explicit: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The selector of the managed webhooks: the configured one; else, for exact namespace names,
    those names (as the chart does); else (all namespaces, or patterns) none: every namespace."""
    if explicit is not None:
        return explicit
    if namespaces and not any(ch in _GLOB for ns in namespaces for ch in ns):
        return {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(namespaces)}]}
    return None


def scope_managed_webhooks(selector: Optional[dict[str, Any]]) -> None:
    """Every webhook kopf writes from now on carries ``selector`` (None: kopf's own, unscoped)."""
    if selector is None:
        _kopf_admission.build_webhooks = _KOPF_BUILD_WEBHOOKS
        return

    def build_webhooks(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [{**hook, "namespaceSelector": selector} for hook in _KOPF_BUILD_WEBHOOKS(*args, **kwargs)]

    _kopf_admission.build_webhooks = build_webhooks

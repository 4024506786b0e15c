"""One test session's share of the cluster, so that two sessions can use it at once
(hack/test.sh runs the cluster tests as two sessions): ``SEARCHRUN_TEST_SESSION`` names the
session (default ``solo``). Each session's operators watch namespaces with its own prefix, and
their managed webhooks have their own name and judge only the namespaces labelled with the
session, so that one session's operator (killed, restarted, stopped) never admits or refuses the
other's SearchRuns."""

from __future__ import annotations

import os
import re

SESSION = os.environ.get("SEARCHRUN_TEST_SESSION") or "solo"
if not re.fullmatch(r"[a-z0-9]{1,8}", SESSION):
    raise ValueError(f"SEARCHRUN_TEST_SESSION={SESSION!r}: 1-8 lower-case letters or digits")
SESSION_LABEL = ("searchrun.dev/test-session", SESSION)
WEBHOOK_CONFIG = f"searchrun.dev-test-{SESSION}"  # the managed webhook configurations' name


def namespace_prefix(kind: str) -> str:
    """``srop`` -> ``srop-solo-``: the watched namespaces of this session's operators of that kind."""
    return f"{kind}-{SESSION}-"


def operator_webhook_config() -> dict:
    """The operator configuration that scopes its managed webhooks to this session."""
    key, value = SESSION_LABEL
    return {"webhookManagedName": WEBHOOK_CONFIG, "webhookNamespaceSelector": {"matchLabels": {key: value}}}


def label_args() -> list[str]:
    """``kubectl label namespace NS`` arguments that put a namespace in this session."""
    return [f"{SESSION_LABEL[0]}={SESSION_LABEL[1]}"]

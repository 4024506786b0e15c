"""An urllib opener that connects only where the agent endpoint policy allows.

The check runs inside the connection, after resolving the host and before any byte is
sent, and the socket connects to the very address that was checked: a name that resolves
elsewhere the second time (DNS rebinding) cannot slip through. Environment proxies are
not used, because through a proxy the check would see the proxy, not the peer.
"""

from __future__ import annotations

import functools
import http.client
import re
import socket
import urllib.request
from typing import Optional

from ..endpoint_policy import AgentEndpointPolicy, connect_problem
from .base import AgentError

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:+=/-]{1,64}$")


class EndpointRefused(AgentError):
    """The endpoint policy refuses the address: not retried."""


def _guarded_create_connection(policy: AgentEndpointPolicy, address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT,
                               source_address=None):
    """socket.create_connection, but only to addresses the policy allows, checked after
    resolving: the socket connects to the very address that was checked."""
    host, port = address
    why, infos = connect_problem(host, port, policy)
    if why:
        raise EndpointRefused(why)
    last: Optional[OSError] = None
    for family, type_, proto, _, sockaddr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as e:
            last = e
            sock.close()
    raise last or OSError(f"no address to connect to for {host}")


class _Guarded:
    def __init__(self, *args, policy: AgentEndpointPolicy, **kw):
        super().__init__(*args, **kw)
        self._create_connection = functools.partial(_guarded_create_connection, policy)


class _GuardedHTTPConnection(_Guarded, http.client.HTTPConnection):
    pass


class _GuardedHTTPSConnection(_Guarded, http.client.HTTPSConnection):
    pass


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, policy: AgentEndpointPolicy):
        super().__init__()
        self._policy = policy

    def http_open(self, req):
        return self.do_open(functools.partial(_GuardedHTTPConnection, policy=self._policy), req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, policy: AgentEndpointPolicy):
        super().__init__()
        self._policy = policy

    def https_open(self, req):
        return self.do_open(functools.partial(_GuardedHTTPSConnection, policy=self._policy), req, context=self._context)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow redirects: that would forward the Authorization header to another URL."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        return None


def guarded_opener(policy: AgentEndpointPolicy) -> urllib.request.OpenerDirector:
    """An opener that connects only where ``policy`` allows, uses no proxy and follows no redirect."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect,
                                       _GuardedHTTPHandler(policy), _GuardedHTTPSHandler(policy))


def request_id(headers) -> str:
    """The response's ``x-request-id``, when it looks like one (it goes into error messages)."""
    rid = (headers.get("x-request-id") or "").strip() if headers else ""
    return rid if _REQUEST_ID_RE.fullmatch(rid) else ""

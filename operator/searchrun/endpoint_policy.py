"""Where an openai agent may send requests: the cluster's agent endpoint policy. Pure.

A SearchRun names ``spec.agent.baseURL`` and its step pods POST there, so without a policy
any user who can create a SearchRun makes the cluster's pods fetch any address (the cloud
metadata service, the API server's ClusterIP, services on the node). Two checks, same rules:

* ``url_problem`` (admission, and the agent when it starts): the scheme is http or https,
  the URL has no user part, and an ``allow`` entry names its host (or a literal IP lies in one
  of ``cidrs``); a literal IP, in whatever spelling (``2852039166``, ``0251.0376.0251.0376``,
  ``[::ffff:169.254.169.254]``), is checked as an address.
* ``address_problem`` (the agent, for every address the host resolves to, just before it
  connects, so that DNS cannot point an allowed name somewhere else).

Always refused unless a CIDR in ``cidrs`` contains the address: unspecified, loopback,
link-local (169.254.0.0/16 with the metadata service, fe80::/10), the metadata services'
other addresses (fd00:ec2::254, 100.100.100.200), multicast, reserved and broadcast, and
the cluster's service and pod ranges. The default policy allows nothing.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from typing import ClassVar, Iterable, Mapping, Optional, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
POLICY_ENV = "SEARCHRUN_AGENT_ENDPOINTS"  # the operator puts the policy (JSON) in every openai step Job
WHERE = "the cluster's agent endpoint policy (policy.agentEndpoints)"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
# cloud metadata services outside link-local: AWS over IPv6, Alibaba Cloud
_METADATA = [ipaddress.ip_network("fd00:ec2::254/128"), ipaddress.ip_network("100.100.100.200/32")]
_HOST_RE = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


class AgentEndpointPolicy(BaseModel):
    """Which agent endpoints step pods may reach (operator configuration: policy.agentEndpoints)."""

    model_config = ConfigDict(extra="forbid")
    where: ClassVar[str] = WHERE  # how error messages name the policy
    allow: list[str] = Field(default_factory=list, description=(
        "hosts (llm.example.com, *.example.com, host:port), URL prefixes (https://llm.example.com/v1) "
        "or '*' (any host); empty: no openai endpoint is allowed"))
    cidrs: list[str] = Field(default_factory=list, description=(
        "address ranges agents may reach: a literal IP URL in one is allowed, and an address in one "
        "is allowed even in a range that is otherwise refused (loopback, link-local, service, pod)"))
    serviceCIDRs: list[str] = Field(default_factory=lambda: ["10.96.0.0/12"], description="the cluster's Service ClusterIP ranges (refused)")
    podCIDRs: list[str] = Field(default_factory=lambda: ["10.244.0.0/16"], description="the cluster's pod ranges (refused)")

    @field_validator("allow")
    @classmethod
    def _entries(cls, v: list[str]) -> list[str]:
        for i, entry in enumerate(v):
            if _parse_entry(entry) is None:
                raise ValueError(f"allow[{i}] {entry[:80]!r}: expected a host, host:port, *.domain, "
                                 "an http(s):// URL prefix or '*'")
        return v

    @field_validator("cidrs", "serviceCIDRs", "podCIDRs")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for i, cidr in enumerate(v):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"[{i}] {cidr[:80]!r} is not a CIDR (e.g. 10.0.0.0/8)") from None
        return v


class LocalEndpointPolicy(AgentEndpointPolicy):
    where: ClassVar[str] = "the local runs' agent endpoint policy"


def local_policy() -> AgentEndpointPolicy:
    """Local runs (``searchrun run``, no operator): the user points at their own machine or
    network (a llama.cpp on localhost), so any host and loopback are fine; link-local (the
    metadata service), multicast and unspecified addresses are still refused."""
    return LocalEndpointPolicy(allow=["*"], cidrs=["127.0.0.0/8", "::1/128"], serviceCIDRs=[], podCIDRs=[])


def step_policy(env: Mapping[str, str]) -> AgentEndpointPolicy:
    """The policy a step runs under: what the operator put in ``SEARCHRUN_AGENT_ENDPOINTS``; in
    a pod without it (a Job the operator did not build) nothing; elsewhere ``local_policy()``."""
    text = env.get(POLICY_ENV)
    if text:
        return AgentEndpointPolicy.model_validate(json.loads(text))
    if env.get("KUBERNETES_SERVICE_HOST"):
        return AgentEndpointPolicy()
    return local_policy()


# ------------------------------------------------------------------ parsing


def literal_ip(host: str) -> Optional[IPAddress]:
    """The address ``host`` spells, if it is one: dotted, decimal, octal and hex IPv4 forms
    as the C resolver reads them (``2852039166``, ``0xa9fea9fe``, ``0251.0376.0251.0376``)
    and IPv6 (with brackets or a zone)."""
    h = host.strip("[]").lower()
    if ":" in h:
        try:
            return ipaddress.IPv6Address(h.split("%", 1)[0])
        except ValueError:
            return None
    if not h or not re.fullmatch(r"[0-9a-fx.]+", h) or not h[0].isdigit():
        return None
    parts = h.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    nums = []
    for p in parts:
        try:
            nums.append(int(p, 16) if p.startswith("0x") else int(p, 8) if len(p) > 1 and p.startswith("0") else int(p, 10))
        except ValueError:
            return None
    # a.b.c.d; a.b.c (c: 16 bits); a.b (b: 24 bits); a (32 bits)
    widths = {1: [32], 2: [8, 24], 3: [8, 8, 16], 4: [8, 8, 8, 8]}[len(nums)]
    value = 0
    for n, w in zip(nums, widths):
        if n >= 1 << w:
            return None
        value = (value << w) | n
    return ipaddress.IPv4Address(value)


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries to (mapped ::ffff:a.b.c.d, compatible ::a.b.c.d, NAT64)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if int(ip) >> 32 == 0 and int(ip) > 1:
            return ipaddress.IPv4Address(int(ip))
    return ip


def _normal_host(host: str) -> str:
    return host.lower().rstrip(".")


def _parse_entry(entry: str) -> Optional[tuple[Optional[str], str, Optional[int], str]]:
    """(scheme or None, host, port or None, path prefix) of an allow entry; None if malformed."""
    if not isinstance(entry, str) or not entry or any(c.isspace() for c in entry) or "@" in entry or "\\" in entry:
        return None
    if entry == "*":
        return None, "*", None, ""
    if "://" in entry:
        parts = urlsplit(entry)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.query or parts.fragment:
            return None
        try:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
        except ValueError:
            return None
        return parts.scheme, _normal_host(parts.hostname), port, parts.path.rstrip("/")
    host, port = entry, None
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
    elif entry.count(":") == 1:
        host, p = entry.split(":")
        if not p.isdigit():
            return None
        port = int(p)
    host = _normal_host(host)
    if literal_ip(host) is None and not _HOST_RE.fullmatch(host):
        return None
    return None, host, port, ""


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    a, b = literal_ip(pattern), literal_ip(host)
    if a is not None or b is not None:
        return a is not None and b is not None and _unwrap(a) == _unwrap(b)
    return pattern == host


def _allowed(scheme: Optional[str], host: str, port: int, path: Optional[str], policy: AgentEndpointPolicy) -> bool:
    """Does an allow entry name this endpoint, or is it a literal IP in ``cidrs``?
    ``path``/``scheme`` None: any (the connect-time check)."""
    ip = literal_ip(host)
    if ip is not None and (_in_cidrs(ip, policy.cidrs) or _in_cidrs(_unwrap(ip), policy.cidrs)):
        return True
    for entry in policy.allow:
        e_scheme, e_host, e_port, e_path = _parse_entry(entry)  # validated by the model
        if not _host_matches(e_host, host) or (e_port is not None and e_port != port):
            continue
        if e_scheme is not None and scheme is not None and e_scheme != scheme:
            continue
        if e_path and path is not None and not (path.rstrip("/") + "/").startswith(e_path + "/"):
            continue
        return True
    return False


def _in_cidrs(ip: IPAddress, cidrs: Iterable[str]) -> Optional[str]:
    for c in cidrs:
        net = ipaddress.ip_network(c, strict=False)
        if ip.version == net.version and ip in net:
            return c
    return None


# ------------------------------------------------------------------ the checks


def address_problem(ip: Union[str, IPAddress], policy: AgentEndpointPolicy, field: str = "spec.agent.baseURL",
                    host: Optional[str] = None) -> Optional[str]:
    """Why the agent may not connect to ``ip`` (an address ``host`` resolved to), or None."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.split("%", 1)[0])
    real = _unwrap(ip)
    if _in_cidrs(ip, policy.cidrs) or _in_cidrs(real, policy.cidrs):
        return None
    what, hint = None, ""
    if real.is_unspecified or (real.version == 4 and real in _THIS_NETWORK):
        what = "unspecified"
    elif real.is_loopback:
        what, hint = "loopback", "cidrs"
    elif real.is_link_local:
        what = "link-local"
    elif any(real in net for net in _METADATA if net.version == real.version):
        what = "a cloud metadata address"
    elif real.is_multicast:
        what = "multicast"
    elif (svc := _in_cidrs(real, policy.serviceCIDRs)):
        what, hint = f"in the cluster's service range {svc}", "cidrs"
    elif (pod := _in_cidrs(real, policy.podCIDRs)):
        what, hint = f"in the cluster's pod range {pod}", "cidrs"
    elif real.version == 4 and (real.is_reserved or real == ipaddress.IPv4Address("255.255.255.255")):
        what = "reserved"
    if what is None:
        return None
    if host and literal_ip(host) is None:
        shown = f"host {host} resolves to {ip}" + (f" ({real})" if real != ip else "") + ", which"
    else:
        written = host or str(ip)
        shown = f"host {written}" + (f" ({real})" if str(real) != written else "")
    hint = "; list a range that holds it in policy.agentEndpoints.cidrs to allow it" if hint else ""
    return f"{field}: {shown} is {what}, refused by {policy.where}{hint}"


def url_problem(url: str, policy: AgentEndpointPolicy, field: str = "spec.agent.baseURL") -> Optional[str]:
    """Why ``url`` may not be an agent's base URL under ``policy``, or None (the static check)."""
    if not isinstance(url, str) or any(c.isspace() or ord(c) < 32 for c in url) or "\\" in url:
        return f"{field}: must be an http(s) URL without spaces or backslashes"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{field}: not a valid URL"
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return f"{field}: scheme must be http or https"
    if "@" in parts.netloc:
        return f"{field}: must not contain a user or password (the key comes from apiKeySecretRef)"
    if not parts.hostname:
        return f"{field}: has no host"
    host = _normal_host(parts.hostname)
    port = port or _DEFAULT_PORTS[scheme]
    ip = literal_ip(host)
    if ip is not None and (why := address_problem(ip, policy, field, host=host)):
        return why
    if not _allowed(scheme, host, port, parts.path or "/", policy):
        if not policy.allow and not policy.cidrs:
            return f"{field}: host {host} is not allowed by {policy.where}, which allows no endpoint (allow and cidrs are empty)"
        return f"{field}: host {host} (port {port}, path {parts.path or '/'}) is not allowed by {policy.where}"
    return None


def connect_problem(host: str, port: int, policy: AgentEndpointPolicy, field: str = "agent.baseURL",
                    resolve=None) -> tuple[Optional[str], list[tuple]]:
    """(why the agent may not connect to ``host:port``, or None; the checked getaddrinfo
    entries to connect to). Every address the host resolves to must pass."""
    host = _normal_host(host)
    ip = literal_ip(host)
    if not _allowed(None, host, port, None, policy):
        return f"{field}: host {host} (port {port}) is not allowed by {policy.where}", []
    try:
        infos = (resolve or socket.getaddrinfo)(str(ip) if ip is not None else host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise OSError(f"cannot resolve {host}: {getattr(e, 'strerror', None) or type(e).__name__}") from None
    for info in infos:
        why = address_problem(info[4][0], policy, field, host=host)
        if why:
            return why, []
    return None, infos


__all__ = ["AgentEndpointPolicy", "POLICY_ENV", "address_problem", "connect_problem", "literal_ip", "local_policy",
           "step_policy", "url_problem"]

"""The agent endpoint policy (issue 15, item 1): where an openai agent's step may connect.

Pure logic (URL and address rules; getaddrinfo replaced where a name must resolve to a given
address), admission, the step Job's environment, and the agent itself against a local server
(it connects only to an address it checked)."""

from __future__ import annotations

import json
import socket

import pytest

from searchrun.admission import Policy, review
from searchrun.agents.base import AgentError
from searchrun.agents.openai_compat import OpenAICompatAgent
from searchrun.api import AgentSpec
from searchrun.corpus import load_corpus
from searchrun.endpoint_policy import (POLICY_ENV, AgentEndpointPolicy, address_problem, connect_problem, literal_ip,
                                       local_policy, step_policy, url_problem)
from support.fake_openai import FakeOpenAI

METADATA = "http://169.254.169.254/latest/meta-data"
ANY_HOST = AgentEndpointPolicy(allow=["*"])  # even a policy that allows every host refuses these addresses

REFUSED = [
    (METADATA, "host 169.254.169.254 is link-local"),
    ("http://2852039166/", "host 2852039166 (169.254.169.254) is link-local"),            # decimal
    ("http://0251.0376.0251.0376/", "(169.254.169.254) is link-local"),                  # octal
    ("http://0xa9fea9fe/latest", "(169.254.169.254) is link-local"),                     # hex
    ("http://169.254.43518/", "(169.254.169.254) is link-local"),                        # a.b.c with a 16-bit c
    ("http://[::ffff:169.254.169.254]/", "(169.254.169.254) is link-local"),             # IPv4-mapped IPv6
    ("http://[64:ff9b::a9fe:a9fe]/", "(169.254.169.254) is link-local"),                 # NAT64
    ("http://[fe80::1]/v1", "host fe80::1 is link-local"),
    ("http://[fd00:ec2::254]/latest/meta-data", "host fd00:ec2::254 is a cloud metadata address"),  # AWS, IPv6
    ("http://100.100.100.200/latest/meta-data", "host 100.100.100.200 is a cloud metadata address"),  # Alibaba
    ("http://[fe80::1%25eth0]/v1", "is link-local"),
    ("http://127.0.0.1:8000/v1", "host 127.0.0.1 is loopback"),
    ("http://0177.0.0.1/", "(127.0.0.1) is loopback"),
    ("http://[::1]:8000/v1", "host ::1 is loopback"),
    ("http://0.0.0.0:80/", "is unspecified"),
    ("http://0/", "host 0 (0.0.0.0) is unspecified"),
    ("http://[::]/", "is unspecified"),
    ("http://224.0.0.251/", "is multicast"),
    ("https://10.96.0.1:443/", "host 10.96.0.1 is in the cluster's service range 10.96.0.0/12"),
    ("http://10.244.0.1:9000/v1", "host 10.244.0.1 is in the cluster's pod range 10.244.0.0/16"),
]


@pytest.mark.parametrize("url,why", REFUSED)
def test_refused_addresses_in_any_spelling(url, why):
    for policy in (ANY_HOST, AgentEndpointPolicy(allow=[url])):  # naming it in allow is not enough
        msg = url_problem(url, policy)
        assert msg is not None and msg.startswith("spec.agent.baseURL: ") and why in msg, msg
        assert "refused by the cluster's agent endpoint policy (policy.agentEndpoints)" in msg


def test_the_metadata_message_names_the_field_and_the_rule():
    assert url_problem(METADATA, AgentEndpointPolicy()) == (
        "spec.agent.baseURL: host 169.254.169.254 is link-local, refused by the cluster's agent endpoint policy "
        "(policy.agentEndpoints)")


def test_a_cidr_listed_explicitly_allows_a_refused_range():
    policy = AgentEndpointPolicy(cidrs=["10.244.0.1/32"])
    assert url_problem("http://10.244.0.1:9000/v1", policy) is None
    assert "pod range" in url_problem("http://10.244.0.2:9000/v1", policy)
    assert url_problem("http://[::ffff:10.244.0.1]:9000/v1", policy) is None  # the same address, spelled as IPv6
    assert url_problem(METADATA, AgentEndpointPolicy(allow=["*"], cidrs=["169.254.169.254/32"])) is None


def test_the_default_policy_allows_nothing():
    msg = url_problem("https://api.openai.com/v1", AgentEndpointPolicy())
    assert msg == ("spec.agent.baseURL: host api.openai.com is not allowed by the cluster's agent endpoint policy "
                   "(policy.agentEndpoints), which allows no endpoint (allow and cidrs are empty)")
    assert Policy().agentEndpoints == AgentEndpointPolicy()


@pytest.mark.parametrize("url,ok", [
    ("https://llm.example.com/v1", True),
    ("https://llm.example.com/v1/", True),
    ("https://LLM.example.com./v1", True),
    ("https://llm.example.com:443/v1/deployments/x", True),
    ("https://llm.example.com/v2", False),
    ("https://llm.example.com/v1x", False),
    ("https://llm.example.com/", False),
    ("http://llm.example.com/v1", False),                 # another scheme
    ("https://llm.example.com:8443/v1", False),           # another port
    ("https://llm.example.com.evil.test/v1", False),
    ("https://evil.test/llm.example.com/v1", False),
    ("https://llm.example.com@169.254.169.254/v1", False),
    ("https://evil.test\\@llm.example.com/v1", False),
    ("http://ollama.internal:11434/v1", True),            # host:port entry
    ("http://ollama.internal:11435/v1", False),
    ("http://a.models.test/v1", True),                     # *.models.test
    ("http://models.test/v1", False),
    ("ftp://llm.example.com/v1", False),
])
def test_allowed_hosts_and_prefixes(url, ok):
    policy = AgentEndpointPolicy(allow=["https://llm.example.com/v1", "ollama.internal:11434", "*.models.test"])
    assert (url_problem(url, policy) is None) == ok, url_problem(url, policy)


def test_malformed_policies_are_refused_naming_the_entry():
    with pytest.raises(ValueError, match=r"allow\[1\] 'http://a@b'"):
        AgentEndpointPolicy(allow=["ok.example.com", "http://a@b"])
    with pytest.raises(ValueError, match="'10.0.0.0/33' is not a CIDR"):
        AgentEndpointPolicy(cidrs=["10.0.0.0/33"])
    with pytest.raises(ValueError, match="agentEndpoints"):
        Policy.model_validate({"agentEndpoints": {"allow": ["x"], "hosts": []}})


def test_literal_ip_reads_what_the_resolver_reads():
    for spelled in ("2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "169.254.43518", "169.16689662", "0xa9.0xfe.0xa9.0xfe"):
        assert str(literal_ip(spelled)) == "169.254.169.254"
        assert socket.inet_aton(spelled) == socket.inet_aton("169.254.169.254")  # as the C library reads it
    assert literal_ip("llm.example.com") is None and literal_ip("4294967296") is None and literal_ip("08") is None


def fake_resolver(table):
    def resolve(host, port, type=0):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in table[host]]
    return resolve


def test_a_hostname_that_resolves_to_a_refused_address_is_refused():
    policy = AgentEndpointPolicy(allow=["llm.example.com"])
    assert url_problem("http://llm.example.com/v1", policy) is None  # the name is allowed ...
    why, infos = connect_problem("llm.example.com", 80, policy, resolve=fake_resolver({"llm.example.com": ["169.254.169.254"]}))
    assert why == ("agent.baseURL: host llm.example.com resolves to 169.254.169.254, which is link-local, refused by the "
                   "cluster's agent endpoint policy (policy.agentEndpoints)") and infos == []  # ... its address is not
    # one bad address among good ones is enough to refuse
    why, _ = connect_problem("llm.example.com", 80, policy,
                             resolve=fake_resolver({"llm.example.com": ["203.0.113.7", "::ffff:10.96.0.10"]}))
    assert "resolves to ::ffff:a60:a (10.96.0.10), which is in the cluster's service range 10.96.0.0/12" in why
    why, infos = connect_problem("llm.example.com", 80, policy, resolve=fake_resolver({"llm.example.com": ["203.0.113.7"]}))
    assert why is None and [i[4][0] for i in infos] == ["203.0.113.7"]
    why, _ = connect_problem("other.example.com", 80, policy, resolve=fake_resolver({}))
    assert "host other.example.com (port 80) is not allowed" in why


def test_address_problem():
    p = AgentEndpointPolicy(cidrs=["127.0.0.1/32"])
    assert address_problem("127.0.0.1", p) is None and "loopback" in address_problem("127.0.0.2", p)
    assert address_problem("203.0.113.7", p) is None and address_problem("2001:db8::1", p) is None
    assert "link-local" in address_problem("fe80::abcd", p)


def test_step_policy_from_the_environment():
    cluster = AgentEndpointPolicy(allow=["llm.example.com"], cidrs=["10.0.0.0/8"])
    assert step_policy({POLICY_ENV: cluster.model_dump_json()}) == cluster
    assert step_policy({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}) == AgentEndpointPolicy()  # a pod without it: nothing
    local = step_policy({})
    assert local == local_policy()
    assert url_problem("http://127.0.0.1:8080/v1", local) is None and url_problem("http://localhost:8080/v1", local) is None
    assert url_problem("http://llama.lan:8080/v1", local) is None
    assert url_problem(METADATA, local) == ("spec.agent.baseURL: host 169.254.169.254 is link-local, refused by the "
                                            "local runs' agent endpoint policy")


# ------------------------------------------------------------------ admission


def test_admission_rejects_the_metadata_address_naming_the_field_and_rule():
    spec = {"query": "q", "agent": {"type": "openai", "baseURL": METADATA, "model": "m"}}
    for policy in (Policy(), Policy.model_validate({"agentEndpoints": {"allow": ["*"]}})):
        v = review(spec, policy)
        assert not v.allowed and v.reason == "agent"
        assert v.message == ("spec.agent.baseURL: host 169.254.169.254 is link-local, refused by the cluster's agent "
                             "endpoint policy (policy.agentEndpoints)")
    ok = Policy.model_validate({"agentEndpoints": {"allow": ["https://llm.example.com/v1"]}})
    assert review({**spec, "agent": {**spec["agent"], "baseURL": "https://llm.example.com/v1"}}, ok).allowed
    v = review({**spec, "agent": {**spec["agent"], "baseURL": "https://llm.example.com/v2"}}, ok)
    assert not v.allowed and "host llm.example.com (port 443, path /v2) is not allowed" in v.message
    assert review({"query": "q"}, Policy()).allowed, "the offline agent needs no endpoint"


def test_the_operator_config_carries_the_policy(tmp_path):
    from searchrun.executors.kube.config import OperatorConfig

    f = tmp_path / "c.yaml"
    f.write_text("policy:\n  agentEndpoints:\n    allow: [llm.example.com]\n    serviceCIDRs: [10.43.0.0/16]\n")
    cfg = OperatorConfig.load(str(f))
    assert cfg.policy.agentEndpoints.allow == ["llm.example.com"]
    assert cfg.policy.agentEndpoints.serviceCIDRs == ["10.43.0.0/16"] and cfg.policy.agentEndpoints.podCIDRs == ["10.244.0.0/16"]
    f.write_text("policy:\n  agentEndpoints:\n    cidrs: [nope]\n")
    with pytest.raises(ValueError, match="cidrs"):
        OperatorConfig.load(str(f))


def test_the_step_job_carries_the_policy_and_a_user_cannot_override_it():
    from searchrun.engine import StartStep
    from searchrun.executors.kube.config import OperatorConfig
    from searchrun.executors.kube.jobs import build_job
    from searchrun.api import SearchRunSpec

    cfg = OperatorConfig.model_validate({"policy": {"agentEndpoints": {"allow": ["llm.example.com"]}}})
    action = StartStep(step_id="intent", step_type="detect_intent", job="sr-x-intent", attempt=1, input={},
                       timeout_seconds=60, retries=0)
    # a user who names the policy's variable as the key's: the operator's value comes last, and wins
    spec = SearchRunSpec(query="q", agent={"type": "openai", "baseURL": "http://llm.example.com/v1", "model": "m",
                                           "apiKeySecretRef": {"name": "s", "key": "k"}, "apiKeyEnv": POLICY_ENV})
    env = build_job(action, "r", "ns", "uid", spec, "{}", cfg)["spec"]["template"]["spec"]["containers"][0]["env"]
    last = [e for e in env if e["name"] == POLICY_ENV][-1]
    assert env[-1] is last and AgentEndpointPolicy.model_validate(json.loads(last["value"])) == cfg.policy.agentEndpoints
    offline = build_job(action, "r", "ns", "uid", SearchRunSpec(query="q"), "{}", cfg)
    assert POLICY_ENV not in {e["name"] for e in offline["spec"]["template"]["spec"]["containers"][0]["env"]}


# ------------------------------------------------------------------ the agent checks before it connects


@pytest.fixture(scope="module")
def sample():
    return load_corpus("builtin:sample")


@pytest.fixture
def llm():
    server = FakeOpenAI("127.0.0.1")
    yield server
    server.close()


def agent_for(url, sample, policy):
    spec = AgentSpec(type="openai", baseURL=url, model="m", requestTimeoutSeconds=5)
    return OpenAICompatAgent(spec, sample, None, sleep=lambda s: None, policy=policy)


def test_the_agent_refuses_a_refused_url_before_any_request(sample):
    with pytest.raises(AgentError, match="agent.baseURL: host 169.254.169.254 is link-local"):
        agent_for(METADATA, sample, local_policy())
    with pytest.raises(AgentError, match="which allows no endpoint"):
        agent_for("http://llm.example.com/v1", sample, AgentEndpointPolicy())


def test_dns_cannot_bypass_the_policy(sample, llm, monkeypatch):
    """An allowed name that resolves to a refused address (here: loopback, where the server
    listens) is refused when the agent connects, and nothing reaches the server; once the
    address is allowed, the agent connects to the address it checked."""
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda host, *a, **kw: real("127.0.0.1" if host == "llm.example.com" else host, *a, **kw))
    url = f"http://llm.example.com:{llm.port}/v1"
    agent = agent_for(url, sample, AgentEndpointPolicy(allow=["llm.example.com"]))
    with pytest.raises(AgentError, match="host llm.example.com resolves to 127.0.0.1, which is loopback"):
        agent.detect_intent("What is BM25?", 500)
    assert llm.requests == [], "refused before anything was sent"
    agent = agent_for(url, sample, AgentEndpointPolicy(allow=["llm.example.com"], cidrs=["127.0.0.1/32"]))
    assert agent.detect_intent("What is BM25?", 500)[0] == "simple"
    assert len(llm.requests) == 1


def test_environment_proxies_are_not_used(sample, llm, monkeypatch):
    """Through a proxy the check would see the proxy, not the peer."""
    monkeypatch.setenv("http_proxy", "http://169.254.169.254:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://169.254.169.254:3128")
    agent = agent_for(llm.base_url, sample, local_policy())
    assert agent.detect_intent("What is BM25?", 500)[0] == "simple" and len(llm.requests) == 1


def test_https_through_the_guard_checks_the_certificate_against_the_name(sample, monkeypatch, tmp_path):
    """The socket goes to the checked address, and TLS still verifies the certificate for the
    host name of the URL (here: a self-signed one for localhost, trusted through SSL_CERT_FILE)."""
    import shutil
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from searchrun.executors.kube.tls import self_signed
    from support.fake_openai import answer

    cert, key = self_signed("localhost")
    shutil.copy(cert, tmp_path / "cert.pem")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            content = json.dumps(answer("\n".join(m["content"] for m in body["messages"])))
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}],
                               "usage": {"total_tokens": 10}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))
        policy = AgentEndpointPolicy(allow=["localhost"], cidrs=["127.0.0.1/32", "::1/128"])
        assert agent_for(f"https://localhost:{port}/v1", sample, policy).detect_intent("What is BM25?", 500)[0] == "simple"
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-ca.pem"))  # now untrusted: refused by TLS
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            agent_for(f"https://localhost:{port}/v1", sample, policy)._post(b"{}")
    finally:
        server.shutdown()
        server.server_close()


def test_make_agent_takes_the_policy_from_the_step_environment(sample):
    from searchrun.agents import make_agent

    spec = AgentSpec(type="openai", baseURL="http://127.0.0.1:8000/v1", model="m")
    assert isinstance(make_agent(spec, sample, {}), OpenAICompatAgent)  # local: loopback is fine
    with pytest.raises(AgentError, match="host 127.0.0.1 is loopback, refused by the cluster's"):
        make_agent(spec, sample, {POLICY_ENV: AgentEndpointPolicy().model_dump_json()})  # what a default operator passes

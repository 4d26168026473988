"""The DAG of test_airflow_hook.py: one task calls a protected API through the gateway with
:class:`identity_dispatcher.airflow_hook.GatewayHook`, as the identity of the connection named by
``params.connection`` (set by the test in each run's ``conf``). Nothing secret is in this file:
the connections come from ``AIRFLOW_CONN_*`` variables.

The task retries twice (1 s apart): a retryable refusal uses them, a 403 must not.
"""

from __future__ import annotations

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

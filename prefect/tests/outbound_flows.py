"""Flows served for test_outbound.py: they call a protected API through the real gateway with
their own identity, configured only by a GatewayCredentials block (by name: no token, no secret
in parameters, code or environment).

``python outbound_flows.py`` (with PREFECT_API_URL) serves ``calls/calls``,
``refusals/refusals`` and ``unreachable/unreachable``.
"""

from __future__ import annotations

import logging
import os
import time

from prefect import flow, get_run_logger, serve, task

from identity_devkit.jwk import b64url
from identity_dispatcher.client import GatewayClient, GatewayError, retry_on_retryable
from identity_dispatcher.prefect_gateway import GatewayCredentials, run_trace_headers, secret_block_token
from identity_dispatcher.tokens import TokenCache, TokenUnavailable


@task
def call(block: str, path: str) -> dict:
    """One call; returns what the upstream saw, without the token."""
    credentials = GatewayCredentials.load(block)
    with credentials.client() as gateway:
        seen = gateway.get(path).json()["headers"]
    _record_dpop_key(credentials)
    return {"sub": seen.get("x-identity-subject"), "request_id": seen.get("x-request-id"),
            "flow_run_id": seen.get("x-prefect-flow-run-id"), "task_run_id": seen.get("x-prefect-task-run-id")}


def _record_dpop_key(credentials: GatewayCredentials) -> None:
    """For the test only, outside Prefect: the private scalar of the DPoP key in use, appended to
    the file ``OUTBOUND_DPOP_KEYS`` names, so the test can search Prefect's data for it."""
    record = os.environ.get("OUTBOUND_DPOP_KEYS")
    key = credentials.token_cache().get().dpop_key if credentials.dpop else None
    if record and key is not None:
        private = key._key.private_numbers().private_value  # noqa: SLF001
        with open(record, "a", encoding="ascii") as out:
            out.write(b64url(private.to_bytes(32, "big")) + "\n")


@flow(log_prints=True)
def calls(block: str, path: str = "/api/reports", rounds: int = 1, parallel: int = 1,
          interval: float = 0.0, secret: str | None = None) -> int:
    """``rounds`` times: ``parallel`` calls at once (threads of one worker, one shared token),
    then wait ``interval`` seconds. Any failed call fails the run. With ``secret`` (the name of
    a Secret block holding a token), one more call first, with that token
    (:func:`secret_block_token`) to the block's gateway."""
    credentials = GatewayCredentials.load(block)
    if secret is not None:
        with GatewayClient(credentials.gateway_url, TokenCache(secret_block_token(secret)),
                           trace_headers=run_trace_headers) as legacy:
            legacy.get(path)
    cache = credentials.token_cache()
    # What a careless flow might print or log: none of it may show the token.
    print(f"credentials: {credentials!r}; cache: {cache!r}")
    get_run_logger().info("token %r from %s", cache.get(), credentials.client())
    if cache.get().dpop_key is not None:
        print(f"DPoP key {cache.get().dpop_key!r}")
    logging.getLogger("identity_dispatcher.tokens").setLevel(logging.INFO)
    done = 0
    for round_ in range(rounds):
        futures = [call.submit(block, path) for _ in range(parallel)]
        results = [f.result() for f in futures]
        done += len(results)
        if round_ + 1 < rounds:
            time.sleep(interval)
    print(f"{done} calls, last token {cache.get()}")
    return done


@task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_on_retryable)
def refused_call(block: str, path: str) -> dict:
    with GatewayCredentials.load(block).client() as gateway:
        return gateway.get(path).json()


@flow
def refusals(block: str, cold_block: str) -> dict:
    """A call without the needed scope (403 insufficient_scope: never retried) and a call whose
    issuer's keys the gateway cannot fetch (503 keys_unavailable: retried twice)."""
    out = {}
    for name, (which, path) in {"scope": (block, "/api/admin"), "keys": (cold_block, "/api/reports")}.items():
        state = refused_call.with_options(name=f"refused-{name}")(which, path, return_state=True)
        try:
            state.result()
            out[name] = "passed"
        except GatewayError as error:
            out[name] = f"{error.status} {error.reason}"
    return out


@flow
def unreachable(block: str) -> str:
    """A call with a block whose IdP is down: no token can be had (TokenUnavailable, retryable),
    so the task runs three times, then fails. The run completes when that is the error."""
    state = refused_call.with_options(name="idp-down")(block, "/api/reports", return_state=True)
    try:
        state.result()
    except TokenUnavailable as error:
        return f"TokenUnavailable: {error}"
    return "passed"


if __name__ == "__main__":
    serve(calls.to_deployment(name="calls"), refusals.to_deployment(name="refusals"),
          unreachable.to_deployment(name="unreachable"))

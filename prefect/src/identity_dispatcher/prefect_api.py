"""The few Prefect REST calls the dispatcher makes, with retries of transient failures.

Prefect's server on SQLite answers 503 when the database is locked under load; 429, 502 and 504
are as transient, and so is a connection that fails. Those are retried with exponential back-off
(a run is created with an idempotency key, so retrying a create is safe). Everything else is
returned or raised at once.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import httpx

from .http_api import RetryingApi
from .http_api import detail as _detail


class PrefectUnavailable(Exception):
    """Prefect could not be reached, or kept answering with a transient error."""


class PrefectRejected(Exception):
    """Prefect answered with a client or server error that is not transient."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"Prefect answered {status}: {detail}")
        self.status = status
        self.detail = detail


class PrefectApi(RetryingApi):
    unavailable = PrefectUnavailable

    def __init__(
        self,
        base_url: str,
        *,
        auth_string: str | None = None,
        api_key: str | None = None,
        attempts: int = 5,
        backoff_seconds: float = 0.2,
        timeout_seconds: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {}
        if auth_string:
            headers["authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()
        elif api_key:
            headers["authorization"] = f"Bearer {api_key}"
        super().__init__(
            base_url,
            headers=headers,
            attempts=attempts,
            backoff_seconds=backoff_seconds,
            timeout_seconds=timeout_seconds,
            transport=transport,
        )

    async def read_deployment(self, flow: str, deployment: str) -> dict[str, Any] | None:
        path = f"deployments/name/{quote(flow, safe='')}/{quote(deployment, safe='')}"
        response = await self._send("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise PrefectRejected(response.status_code, _detail(response))
        return response.json()

    async def create_flow_run(
        self,
        deployment_id: str,
        *,
        parameters: dict[str, Any],
        tags: list[str],
        labels: dict[str, str],
        idempotency_key: str,
    ) -> tuple[dict[str, Any], bool]:
        """Create (or, for a known idempotency key, find) a run; ``True`` when it is new.

        Only these fields are sent: never ``job_variables``, ``work_queue_name``,
        ``enforce_parameter_schema`` or ``context``, whatever the caller asked for.
        """
        body = {
            "parameters": parameters,
            "tags": tags,
            "labels": labels,
            "idempotency_key": idempotency_key,
        }
        response = await self._send(
            "POST", f"deployments/{quote(deployment_id, safe='')}/create_flow_run", json=body
        )
        if response.status_code not in (200, 201):
            raise PrefectRejected(response.status_code, _detail(response))
        return response.json(), response.status_code == 201

    async def read_flow_run(self, run_id: str) -> dict[str, Any] | None:
        response = await self._send("GET", f"flow_runs/{quote(run_id, safe='')}")
        if response.status_code in (404, 422):
            return None
        if response.status_code != 200:
            raise PrefectRejected(response.status_code, _detail(response))
        return response.json()

    async def post_events(self, events: list[dict[str, Any]]) -> None:
        """Record events (``POST /api/events``, the events pipeline of ``prefect.events``)."""
        response = await self._send("POST", "events", json=events)
        if response.status_code not in (200, 201, 204):
            raise PrefectRejected(response.status_code, _detail(response))

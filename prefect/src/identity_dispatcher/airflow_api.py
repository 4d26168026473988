"""The few Airflow REST API v2 calls the dispatcher's Airflow backend makes, as its own service
account, with retries of transient failures.

Authentication: a token from the auth manager's ``POST /auth/token`` (``{"username",
"password"}`` → ``{"access_token"}``; the simple auth manager and the FAB auth manager both serve
it), kept until the API answers 401, then fetched once more. Or a token given in the settings
(``DISPATCHER_AIRFLOW_TOKEN``), used as it is. The caller's token never reaches Airflow: the
gateway strips it, and the dispatcher forwards no request header.

429, 502, 503, 504 and a failed connection are retried with exponential back-off (a DAG run is
created with a ``dag_run_id`` derived from the request, so retrying a create is safe: a second
create of the same id answers 409 and the run is read back).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx

from .http_api import RetryingApi
from .http_api import detail as _detail


class AirflowUnavailable(Exception):
    """Airflow could not be reached, or kept answering with a transient error."""


class AirflowRejected(Exception):
    """Airflow answered with an error that is not transient."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"Airflow answered {status}: {detail}")
        self.status = status
        self.detail = detail


def _q(value: str) -> str:
    return quote(value, safe="")


class AirflowApi(RetryingApi):
    unavailable = AirflowUnavailable

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        attempts: int = 5,
        backoff_seconds: float = 0.2,
        timeout_seconds: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            attempts=attempts,
            backoff_seconds=backoff_seconds,
            timeout_seconds=timeout_seconds,
            transport=transport,
        )
        self._username = username
        self._password = password
        self._fixed_token = token
        self._token: str | None = token
        self._login_lock = asyncio.Lock()
        #: Number of logins so far (for tests).
        self.logins = 0

    async def _login(self, stale: str | None) -> str:
        async with self._login_lock:
            if self._token is not None and self._token != stale:
                return self._token  # another request logged in meanwhile
            if self._fixed_token is not None or not (self._username and self._password):
                raise AirflowRejected(401, "the configured Airflow token was refused")
            response = await self._send(
                "POST", "auth/token", json={"username": self._username, "password": self._password}
            )
            if response.status_code not in (200, 201):
                raise AirflowRejected(response.status_code, "login: " + _detail(response))
            token = response.json().get("access_token")
            if not isinstance(token, str) or not token:
                raise AirflowRejected(response.status_code, "login: no access_token in the answer")
            self.logins += 1
            self._token = token
            return token

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A REST API v2 call (``path`` below ``/api/v2/``) with the service token."""
        token = self._token or await self._login(None)
        response = await self._send(method, f"api/v2/{path}", headers={"authorization": f"Bearer {token}"},
                                    **kwargs)
        if response.status_code == 401:
            token = await self._login(token)
            response = await self._send(method, f"api/v2/{path}",
                                        headers={"authorization": f"Bearer {token}"}, **kwargs)
        if response.status_code in (401, 403):
            raise AirflowRejected(response.status_code, "the dispatcher's Airflow account: " + _detail(response))
        return response

    async def read_dag(self, dag_id: str) -> dict[str, Any] | None:
        response = await self._request("GET", f"dags/{_q(dag_id)}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise AirflowRejected(response.status_code, _detail(response))
        return response.json()

    async def trigger_dag_run(
        self, dag_id: str, *, dag_run_id: str, conf: dict[str, Any], note: str
    ) -> tuple[dict[str, Any], bool]:
        """Create the run ``dag_run_id``, or read it back when it exists; ``True`` when new.

        Only these fields are sent: ``dag_run_id``, ``logical_date`` (none: a manual run),
        ``conf`` and ``note``.
        """
        # Read first: a retried request finds its run without a failing insert (on SQLite, a
        # duplicate insert holds the API server's database connection for seconds).
        existing = await self.read_dag_run(dag_id, dag_run_id)
        if existing is not None:
            return existing, False
        body = {"dag_run_id": dag_run_id, "logical_date": None, "conf": conf, "note": note}
        response = await self._request("POST", f"dags/{_q(dag_id)}/dagRuns", json=body)
        if response.status_code in (200, 201):
            return response.json(), True
        if response.status_code == 409:
            existing = await self.read_dag_run(dag_id, dag_run_id)
            if existing is not None:
                return existing, False
        raise AirflowRejected(response.status_code, _detail(response))

    async def read_dag_run(self, dag_id: str, dag_run_id: str) -> dict[str, Any] | None:
        response = await self._request("GET", f"dags/{_q(dag_id)}/dagRuns/{_q(dag_run_id)}")
        if response.status_code in (404, 422):
            return None
        if response.status_code != 200:
            raise AirflowRejected(response.status_code, _detail(response))
        return response.json()

"""What the dispatcher's orchestrator clients (Prefect's and Airflow's REST APIs) share: one
HTTP client, retries of transient answers with jittered exponential backoff, and the short
error detail of an answer. Plain httpx: neither orchestrator's package is imported."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

#: Answers worth another attempt: rate limited, or the server or its proxy briefly unavailable.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


def detail(response: httpx.Response) -> str:
    """The answer's error detail (FastAPI's ``detail``, else the body), at most 300 characters."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:300]
    return str(body)[:300]


class RetryingApi:
    """An API client whose requests are retried on transport errors and :data:`RETRY_STATUSES`;
    when every attempt failed, :attr:`unavailable` (the subclass's exception) is raised."""

    unavailable: type[Exception] = Exception

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        attempts: int,
        backoff_seconds: float,
        timeout_seconds: float,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=timeout_seconds,
            transport=transport,
        )
        self._attempts = attempts
        self._backoff = backoff_seconds
        #: Number of retried attempts so far (for tests and metrics).
        self.retries = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        last = ""
        for attempt in range(self._attempts):
            if attempt:
                self.retries += 1
                delay = self._backoff * (2 ** (attempt - 1))
                await asyncio.sleep(min(delay, 5.0) * random.uniform(0.8, 1.2))
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                last = f"{type(error).__name__}: {error}"
                continue
            if response.status_code in RETRY_STATUSES:
                last = f"HTTP {response.status_code}: {detail(response)}"
                continue
            return response
        raise self.unavailable(f"{method} {path} failed {self._attempts} times; last: {last}")

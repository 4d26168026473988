"""An Airflow 3 hook for calling APIs through the identity gateway with the task's own
short-lived identity (connection type ``identity_gateway``).

The connection holds one identity; the secrets live in the connection (Airflow's metadata
database, a secrets backend or an ``AIRFLOW_CONN_*`` variable), never in DAG code:

- ``host``: the gateway's base URL (``https://gateway.example.com``; without a scheme,
  ``https://`` and ``port`` are used);
- ``login`` + ``password``: client id and secret, the client-credentials grant with
  ``client_secret_basic``;
- ``login`` + extra ``private_key_file`` (a PEM file on the worker) or ``private_key`` (PEM
  text), with optional ``key_id``: ``private_key_jwt`` (RFC 7523), no shared secret;
- extra ``token_file``: instead, a Kubernetes projected service-account token file, read again
  when the kubelet rotates it;
- extra ``issuer`` (or ``discovery_url`` / ``token_endpoint``), ``scopes`` (list or
  space-separated), ``resource``, ``audience``, ``timeout`` (seconds, default 10);
- extra ``dpop`` (``true``; default false): DPoP-bound tokens (RFC 9449), each bound to a key
  pair made for it in the task's memory, every call with a fresh proof (client credentials only).

Refusals follow Airflow's retry semantics: a retryable one (``503 keys_unavailable``, the IdP
unreachable, a transport error) is raised as it is, so the task's ``retries`` apply; any other
(``403 forbidden`` / ``insufficient_scope``, ``401``, the IdP refusing the client) raises
:class:`GatewayTaskFailed`, an ``AirflowFailException``: the task fails at once, without its
retries. Each call carries ``x-request-id`` =
``<dag id>/<run id>/<task id>[<map index>]/<try number>/<12 random hex>`` and the plain headers
``x-airflow-dag-id``, ``x-airflow-dag-run-id``, ``x-airflow-task-id``, ``x-airflow-try-number``.
Tokens are masked in task logs and never logged by the hook.

The connection type is registered through the ``apache_airflow_provider`` entry point
(:func:`identity_dispatcher.airflow_provider.get_provider_info`, a module that imports no
Airflow, since the providers manager calls it while Airflow is being imported).
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping

import httpx
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException

from .airflow_provider import CONN_TYPE, get_provider_info
from .client import GatewayClient, GatewayError, is_retryable
from .tokens import (
    AccessToken,
    ClientCredentials,
    ProjectedTokenFile,
    TokenCache,
    TokenError,
    secret_fingerprint,
    shared_cache,
)

REQUEST_ID_HEADER = "x-request-id"
DAG_ID_HEADER = "x-airflow-dag-id"
DAG_RUN_ID_HEADER = "x-airflow-dag-run-id"
TASK_ID_HEADER = "x-airflow-task-id"
TRY_NUMBER_HEADER = "x-airflow-try-number"


class GatewayTaskFailed(AirflowFailException):
    """A refusal that retrying cannot change: the task fails without its retries. ``error`` is
    the :class:`~identity_dispatcher.client.GatewayError` or
    :class:`~identity_dispatcher.tokens.TokenError`; ``status``, ``reason`` and ``rule`` are
    copied from it (``None`` for a token error)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.status = getattr(error, "status", None)
        self.reason = getattr(error, "reason", None)
        self.rule = getattr(error, "rule", None)
        super().__init__(f"the gateway call cannot succeed on retry: {error}")


def task_trace_headers() -> dict[str, str]:
    """The headers tying a call to the task instance making it (empty outside a task, except a
    random request id)."""
    suffix = uuid.uuid4().hex[:12]
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
    except Exception:  # not in a running task (a test, a script): no run ids to send
        return {REQUEST_ID_HEADER: f"none/{suffix}"}
    map_index = getattr(ti, "map_index", -1)
    task = ti.task_id if map_index is None or map_index < 0 else f"{ti.task_id}[{map_index}]"
    return {
        REQUEST_ID_HEADER: f"{ti.dag_id}/{ti.run_id}/{task}/{ti.try_number}/{suffix}",
        DAG_ID_HEADER: ti.dag_id,
        DAG_RUN_ID_HEADER: ti.run_id,
        TASK_ID_HEADER: task,
        TRY_NUMBER_HEADER: str(ti.try_number),
    }


def _mask(value: str) -> None:
    from airflow.sdk.log import mask_secret

    mask_secret(value)


class _MaskedSource:
    """A token source whose tokens are added to Airflow's log masker as they arrive; anything
    else (``changed`` of a token file, ``close``) is the wrapped source's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def describe(self) -> str:
        return self.inner.describe()

    def __repr__(self) -> str:
        return repr(self.inner)

    def fetch(self) -> AccessToken:
        token = self.inner.fetch()
        _mask(token.value)
        return token


def _flag(value: Any, name: str) -> bool:
    """A boolean extra: JSON true/false, or the strings true/false/1/0/yes/no."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ValueError(f"extra {name} must be true or false, not {value!r}")


def _scopes(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value]


class GatewayHook(BaseHook):
    """Calls through the identity gateway as the connection's identity; see the module doc.

    ``hook.get("/api/reports")`` / ``hook.request("POST", path, json=...)`` return the
    ``httpx.Response``; ``hook.get_conn()`` the underlying
    :class:`~identity_dispatcher.client.GatewayClient` (one per hook)."""

    conn_name_attr = "gateway_conn_id"
    default_conn_name = "identity_gateway_default"
    conn_type = CONN_TYPE
    hook_name = "Identity gateway"

    def __init__(self, gateway_conn_id: str = default_conn_name, *, timeout: float | None = None,
                 transport: httpx.BaseTransport | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gateway_conn_id = gateway_conn_id
        self._timeout = timeout
        self._transport = transport
        self._client: GatewayClient | None = None
        self._cache: TokenCache | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema"],
            "relabeling": {"host": "Gateway URL", "login": "Client ID", "password": "Client secret"},
            "placeholders": {
                "host": "https://gateway.example.com",
                "login": "reports-job",
                "password": "client secret (client_secret_basic); empty for private_key_jwt",
                "extra": '{"issuer": "https://idp.example.com/realms/main", "scopes": "reports:read", '
                         '"resource": "https://api.example.com/reports"}',
            },
        }

    # -- configuration ---------------------------------------------------------------------------

    def _base_url(self, conn: Any) -> str:
        host = (conn.host or "").strip()
        if not host:
            raise ValueError(f"connection {self.gateway_conn_id}: host (the gateway URL) is required")
        if "://" in host:
            return host.rstrip("/")
        port = f":{conn.port}" if conn.port else ""
        return f"https://{host}{port}"

    def token_cache(self, conn: Any | None = None) -> TokenCache:
        """The connection's token cache, shared by every hook of this process with the same
        connection settings (one token, one refresh at a time)."""
        conn = conn or self.get_connection(self.gateway_conn_id)
        extra: Mapping[str, Any] = conn.extra_dejson or {}
        timeout = float(extra.get("timeout", 10.0))
        token_file = extra.get("token_file")
        dpop = _flag(extra.get("dpop"), "dpop")
        if token_file and dpop:
            raise ValueError(f"connection {self.gateway_conn_id}: extra dpop needs client credentials, "
                             "not a token_file")
        if token_file:
            return shared_cache(("airflow", self.gateway_conn_id, "file", str(token_file)),
                                lambda: _MaskedSource(ProjectedTokenFile(token_file)))
        if not conn.login:
            raise ValueError(f"connection {self.gateway_conn_id}: login (the client id) or extra "
                             "token_file is required")
        key_file, key_pem = extra.get("private_key_file"), extra.get("private_key")
        secret = conn.password or None
        options: dict[str, Any] = {
            "issuer": extra.get("issuer"), "discovery_url": extra.get("discovery_url"),
            "token_endpoint": extra.get("token_endpoint"), "scopes": _scopes(extra.get("scopes")),
            "resource": extra.get("resource"), "audience": extra.get("audience"), "timeout": timeout,
            "dpop": dpop,
        }
        if key_file or key_pem:
            options.update(private_key=str(key_file) if key_file else str(key_pem).encode(),
                           key_id=extra.get("key_id"))
            proof = secret_fingerprint(str(key_file) if key_file else str(key_pem))
        else:
            if secret is None:
                raise ValueError(f"connection {self.gateway_conn_id}: password (the client secret) or "
                                 "extra private_key_file / private_key is required")
            options["client_secret"] = secret
            proof = secret_fingerprint(secret)
        key = ("airflow", self.gateway_conn_id, conn.login, proof,
               tuple(sorted((k, repr(v)) for k, v in options.items()
                            if k not in ("client_secret", "private_key"))))
        return shared_cache(key, lambda: _MaskedSource(ClientCredentials(conn.login, **options)))

    def get_conn(self) -> GatewayClient:
        if self._client is None:
            conn = self.get_connection(self.gateway_conn_id)
            timeout = self._timeout or float((conn.extra_dejson or {}).get("timeout", 10.0))
            self._cache = self.token_cache(conn)
            self._client = GatewayClient(self._base_url(conn), self._cache, timeout=timeout,
                                         transport=self._transport, trace_headers=task_trace_headers)
        return self._client

    # -- calls -----------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call through the gateway. Raises :class:`GatewayTaskFailed` for refusals no retry
        can change; retryable refusals and transport errors are raised as they are."""
        client = self.get_conn()
        try:
            response = client.request(method, path, **kwargs)
        except (GatewayError, TokenError) as error:
            if is_retryable(error):
                self.log.warning("%s %s through the gateway: %s (retryable)", method, path, error)
                raise
            self.log.error("%s %s through the gateway: %s (not retried)", method, path, error)
            raise GatewayTaskFailed(error) from error
        self.log.info("%s %s through the gateway as %s: %s (request id %s)", method, path,
                      self._cache.describe() if self._cache else "?",
                      response.status_code, response.request.headers.get(REQUEST_ID_HEADER))
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> "GatewayHook":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def test_connection(self) -> tuple[bool, str]:
        """Gets a token (the UI's "Test" button): proves the identity, calls no API."""
        try:
            self.token_cache().get()
        except Exception as error:  # shown in the UI; names the source, never a secret
            return False, str(error)
        return True, "token obtained"


__all__ = ["CONN_TYPE", "GatewayHook", "GatewayTaskFailed", "get_provider_info", "task_trace_headers"]

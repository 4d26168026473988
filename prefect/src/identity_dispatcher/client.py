"""For flows that call APIs through the gateway: refusals become typed errors with reason codes.

The identity filter (and the dispatcher behind it) answers a refusal with a reason header,
``x-identity-reason: <code>`` or ``<code>; rule=<name>``, and usually a JSON body
``{"error": <code>, "status": <n>}``. :func:`raise_for_identity` turns 401, 403 and 503 answers
(and a 500 ``config_invalid``) into :class:`GatewayError` subclasses carrying that code, the
rule, ``Retry-After`` and a :attr:`GatewayError.retryable` flag, so a Prefect task retries only
what is worth retrying::

    from prefect import task
    from identity_dispatcher.client import GatewayClient, retry_on_retryable

    @task(retries=3, retry_delay_seconds=[2, 5, 10], retry_condition_fn=retry_on_retryable)
    def fetch_report(token: str) -> dict:
        with GatewayClient("http://127.0.0.1:10000", token=token) as gateway:
            return gateway.get("/reports/today").json()

With the flow's own short-lived identity instead of a token string (see
:mod:`identity_dispatcher.prefect_gateway` and :mod:`identity_dispatcher.tokens`)::

    with GatewayClient.from_block("reports-gateway") as gateway: ...

``keys_unavailable`` (the filter cannot get the issuer's keys yet) and ``prefect_unavailable``
are retried; ``forbidden``, ``insufficient_scope`` and every token error are not: retrying
cannot change the answer. A 502/503/504 with no reason code at all (the gateway could not reach
the upstream) is retryable too.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import httpx

from .tokens import (
    DPOP_NONCE_HEADER,
    AccessToken,
    TokenCache,
    TokenError,
    dpop_headers,
    nonce_challenge,
)

DEFAULT_REASON_HEADER = "x-identity-reason"

#: Reason codes worth retrying: the answer may change without the caller changing anything.
RETRYABLE_REASONS = frozenset({"keys_unavailable", "prefect_unavailable"})

#: Statuses that are refusals by the identity layer.
IDENTITY_STATUSES = frozenset({401, 403, 503})


def parse_reason(value: str | None) -> tuple[str | None, str | None]:
    """``"forbidden; rule=runs"`` → ``("forbidden", "runs")``; ``"token_expired"`` →
    ``("token_expired", None)``. Unknown parameters are ignored; empty → ``(None, None)``."""
    if not value or not value.strip():
        return None, None
    parts = [p.strip() for p in value.split(";")]
    code = parts[0] or None
    rule = None
    for part in parts[1:]:
        name, _, val = part.partition("=")
        if name.strip().lower() == "rule" and val.strip():
            rule = val.strip().strip('"')
    return code, rule


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP-date: not worth parsing here
    return seconds if seconds >= 0 else None


class GatewayError(Exception):
    """The gateway (or the service behind it) refused the request for an identity reason."""

    def __init__(
        self,
        status: int,
        reason: str | None,
        rule: str | None = None,
        *,
        retry_after: float | None = None,
        body: Any = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        self.status = status
        #: The stable reason code (``forbidden``, ``token_expired``, ``keys_unavailable``, ...).
        self.reason = reason
        #: The policy rule that denied, when one did.
        self.rule = rule
        #: Seconds to wait before retrying, from ``Retry-After``.
        self.retry_after = retry_after
        self.body = body
        self.method = method
        self.url = url
        where = f" ({method} {url})" if method and url else ""
        rule_text = f", rule {rule}" if rule else ""
        super().__init__(f"HTTP {status}: {reason or 'no reason code'}{rule_text}{where}")

    @property
    def retryable(self) -> bool:
        if self.reason in RETRYABLE_REASONS:
            return True
        return self.reason is None and self.status in (502, 503, 504)

    def __reduce__(self):  # keep the fields when Prefect pickles the exception into a state
        return (
            _rebuild,
            (type(self), self.status, self.reason, self.rule, self.retry_after, self.body,
             self.method, self.url),
        )


def _rebuild(cls, status, reason, rule, retry_after, body, method, url):
    return cls(status, reason, rule, retry_after=retry_after, body=body, method=method, url=url)


class Unauthenticated(GatewayError):
    """401: the token (or assertion) is missing or not acceptable."""


class Forbidden(GatewayError):
    """403: the caller is known but not allowed (``forbidden``, ``insufficient_scope``, ...)."""


class Unavailable(GatewayError):
    """503: keys or the upstream are unavailable for now."""


class Misconfigured(GatewayError):
    """500 ``config_invalid``: the filter's configuration is broken."""


_CLASSES: Mapping[int, type[GatewayError]] = {401: Unauthenticated, 403: Forbidden, 503: Unavailable}


def error_from_response(
    response: httpx.Response, reason_header: str = DEFAULT_REASON_HEADER
) -> GatewayError | None:
    """The typed error a response stands for, or ``None`` when it is no identity refusal."""
    status = response.status_code
    code, rule = parse_reason(response.headers.get(reason_header))
    body: Any = None
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        if code is None and isinstance(body.get("error"), str):
            code = body["error"]
        if rule is None and isinstance(body.get("rule"), str):
            rule = body["rule"]
    if status in _CLASSES:
        cls = _CLASSES[status]
    elif status == 500 and code == "config_invalid":
        cls = Misconfigured
    else:
        return None
    try:
        request: httpx.Request | None = response.request
    except RuntimeError:  # a response built by hand has no request
        request = None
    return cls(
        status,
        code,
        rule,
        retry_after=_retry_after(response.headers.get("retry-after")),
        body=body,
        method=request.method if request else None,
        url=str(request.url) if request else None,
    )


def raise_for_identity(response: httpx.Response, reason_header: str = DEFAULT_REASON_HEADER) -> httpx.Response:
    """Raise the :class:`GatewayError` a response stands for; return the response otherwise."""
    error = error_from_response(response, reason_header)
    if error is not None:
        raise error
    return response


def is_retryable(error: BaseException | None) -> bool:
    """True for a retryable :class:`GatewayError`, for :class:`~.tokens.TokenUnavailable` (no
    token while the IdP is unreachable) and for transport failures (connection refused,
    timeouts); False for everything else."""
    if isinstance(error, (GatewayError, TokenError)):
        return error.retryable
    return isinstance(error, (httpx.ConnectError, httpx.TimeoutException))


def retry_on_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """A Prefect ``retry_condition_fn``: retry only when the failure is worth retrying."""
    error = getattr(state, "data", None)
    if not isinstance(error, BaseException):
        try:
            error = state.result(raise_on_failure=False)
        except Exception:  # a result that cannot be read is no reason to retry
            return False
    return is_retryable(error if isinstance(error, BaseException) else None)


#: The refusal after which a call is retried once with a renewed token.
TOKEN_EXPIRED = "token_expired"


class GatewayClient:
    """A small ``httpx.Client`` wrapper: sends the token, raises :class:`GatewayError`.

    ``token`` is a string, a callable returning one, or a :class:`~.tokens.TokenCache`. With a
    cache, a ``401 token_expired`` answer makes the client renew the token once and send the
    call once more (same headers, same request id); any other refusal is raised at once.
    A DPoP-bound token (from ``ClientCredentials(dpop=True)``) is sent as ``Authorization: DPoP
    <token>`` with a ``DPoP`` proof signed for this very request (method, URL without query,
    ``ath``) and made anew for every send, the retries included. A ``401`` asking for a DPoP
    nonce (``WWW-Authenticate: DPoP error="use_dpop_nonce"`` with ``DPoP-Nonce``) is sent once
    more with a proof carrying it; the last nonce the gateway gave is used from then on.
    ``trace_headers`` is called per call and its headers are added (e.g. the Prefect run ids,
    :func:`identity_dispatcher.prefect_gateway.run_trace_headers`); they are the same for the
    retried call. The client's ``repr`` never shows the token.
    """

    def __init__(
        self,
        base_url: str,
        token: str | Callable[[], str] | TokenCache | None = None,
        *,
        reason_header: str = DEFAULT_REASON_HEADER,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        trace_headers: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self._token = token
        self._dpop_nonce: str | None = None
        self._reason_header = reason_header
        self._trace_headers = trace_headers
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, headers=dict(headers or {}), transport=transport
        )

    @classmethod
    def from_block(cls, block: Any, **options: Any) -> "GatewayClient":
        """A client configured by a Prefect ``GatewayCredentials`` block (an instance or the
        name of a saved one). Needs Prefect; see :mod:`identity_dispatcher.prefect_gateway`."""
        from .prefect_gateway import GatewayCredentials

        if isinstance(block, str):
            block = GatewayCredentials.load(block)
        return block.client(**options)

    def __repr__(self) -> str:
        source = self._token.describe() if isinstance(self._token, TokenCache) else (
            "a token" if self._token else "no token")
        return f"GatewayClient({self.base_url!r}, {source})"

    def _current_token(self) -> AccessToken | str | None:
        if isinstance(self._token, TokenCache):
            return self._token.get()
        return self._token() if callable(self._token) else self._token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if self._trace_headers is not None:
            headers = {**self._trace_headers(), **headers}
        token = self._current_token()
        response = self._send(method, path, headers, token, kwargs)
        if isinstance(token, AccessToken) and token.dpop_key is not None \
                and nonce_challenge(response) is not None:
            response = self._send(method, path, headers, token, kwargs)  # with the nonce now
        if isinstance(token, AccessToken) and response.status_code == 401 \
                and isinstance(self._token, TokenCache):
            code, _ = parse_reason(response.headers.get(self._reason_header))
            if code == TOKEN_EXPIRED:
                renewed = self._token.refresh(stale=token)
                response = self._send(method, path, headers, renewed, kwargs)
        return raise_for_identity(response, self._reason_header)

    def _send(self, method: str, path: str, headers: dict[str, str], token: AccessToken | str | None,
              kwargs: dict[str, Any]) -> httpx.Response:
        """One send; a DPoP proof is made for it here, so no two sends share one."""
        options = dict(kwargs)
        send_options = {name: options.pop(name) for name in ("auth", "follow_redirects") if name in options}
        request = self._http.build_request(method, path, headers=headers, **options)
        if isinstance(token, AccessToken):
            request.headers.update(dpop_headers(token, request.method, request.url, nonce=self._dpop_nonce))
        elif token:
            request.headers["authorization"] = f"Bearer {token}"
        response = self._http.send(request, **send_options)
        if response.headers.get(DPOP_NONCE_HEADER):
            self._dpop_nonce = response.headers[DPOP_NONCE_HEADER]
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "GatewayClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

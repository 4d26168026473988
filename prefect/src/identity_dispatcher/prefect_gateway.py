"""Prefect's side of calls through the gateway: the ``GatewayCredentials`` block and the run
ids every call carries. (The token sources and the cache are in :mod:`.tokens`, which needs no
Prefect; this module is the only one of them that imports it.)

    from prefect.blocks.system import Secret
    from identity_dispatcher.prefect_gateway import GatewayCredentials

    GatewayCredentials(
        gateway_url="https://gateway.example.com",
        issuer="https://idp.example.com/realms/main",
        client_id="reports-flow",
        client_secret=Secret.load("reports-flow-secret"),   # a reference, not a copy
        scopes=["reports:read"],
        resource="https://api.example.com/reports",
    ).save("reports-gateway")

    @task(retries=3, retry_delay_seconds=[2, 5, 10], retry_condition_fn=retry_on_retryable)
    def fetch_report() -> dict:
        with GatewayCredentials.load("reports-gateway").client() as gateway:
            return gateway.get("/reports/today").json()

The block holds no token, and no secret of its own: the client secret is a reference to a
saved ``Secret`` block (or a private key file path, for ``private_key_jwt``), read when a token
is requested. Tokens live in this process's memory only (:func:`.tokens.shared_cache`: every
task of a worker using the same credentials shares one token and one refresh).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Mapping, Optional

from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from pydantic import Field, model_validator

from .client import GatewayClient
from .tokens import (
    ClientCredentials,
    ProjectedTokenFile,
    StaticToken,
    TokenCache,
    TokenSource,
    secret_fingerprint,
    shared_cache,
)

#: Headers every call carries: the flow run and task run that made it.
FLOW_RUN_HEADER = "x-prefect-flow-run-id"
TASK_RUN_HEADER = "x-prefect-task-run-id"
REQUEST_ID_HEADER = "x-request-id"


def current_run_ids() -> tuple[str | None, str | None]:
    """The flow run id and task run id of the calling code (None outside a run)."""
    from prefect.context import FlowRunContext, TaskRunContext

    flow_ctx = FlowRunContext.get()
    task_ctx = TaskRunContext.get()
    flow_run_id = str(flow_ctx.flow_run.id) if flow_ctx and flow_ctx.flow_run else None
    task_run_id = str(task_ctx.task_run.id) if task_ctx and task_ctx.task_run else None
    if flow_run_id is None and task_ctx is not None and task_ctx.task_run.flow_run_id:
        flow_run_id = str(task_ctx.task_run.flow_run_id)
    if flow_run_id is None:
        from prefect.runtime import flow_run

        flow_run_id = flow_run.get_id()
    return flow_run_id, task_run_id


def run_trace_headers() -> dict[str, str]:
    """Headers tying a call to the run that made it: ``x-prefect-flow-run-id``,
    ``x-prefect-task-run-id`` (inside a task) and ``x-request-id`` =
    ``<flow run id>.<task run id or "flow">.<12 random hex>`` (unique per call; the filter binds
    it into its assertion and the gateway logs it, so searching for a flow run id finds every
    call of the run)."""
    flow_run_id, task_run_id = current_run_ids()
    headers: dict[str, str] = {}
    if flow_run_id:
        headers[FLOW_RUN_HEADER] = flow_run_id
    if task_run_id:
        headers[TASK_RUN_HEADER] = task_run_id
    suffix = uuid.uuid4().hex[:12]
    headers[REQUEST_ID_HEADER] = f"{flow_run_id or 'none'}.{task_run_id or 'flow'}.{suffix}"
    return headers


class GatewayCredentials(Block):
    """How a flow calls APIs through the identity gateway with its own short-lived identity.

    One identity per block: the OAuth client-credentials grant (``client_id`` with
    ``client_secret`` or ``private_key_file``), a Kubernetes projected service-account token
    (``token_file``) or, for legacy APIs, a fixed token in a Secret block (``static_token``).
    """

    _block_type_name = "Gateway Credentials"
    _block_type_slug = "gateway-credentials"
    _description = ("Short-lived identity of a flow calling APIs through the identity gateway: "
                    "the IdP, the client and where its secret or key is, scopes and the gateway URL.")

    gateway_url: str = Field(description="Base URL of the gateway, e.g. https://gateway.example.com")
    issuer: Optional[str] = Field(
        default=None, description="The IdP's issuer; its discovery document is read from "
                                  "<issuer>/.well-known/openid-configuration.")
    discovery_url: Optional[str] = Field(
        default=None, description="The IdP's OpenID discovery URL, when not under the issuer.")
    client_id: Optional[str] = Field(default=None, description="OAuth client id of the flow.")
    client_secret: Optional[Secret] = Field(
        default=None, description="client_secret_basic: a saved Secret block holding the secret.")
    private_key_file: Optional[str] = Field(
        default=None, description="private_key_jwt (RFC 7523): path of the client's PEM private key "
                                  "on the worker (read at each token request).")
    key_id: Optional[str] = Field(default=None, description="kid of the private key, when the IdP needs it.")
    scopes: list[str] = Field(default_factory=list, description="Scopes to request.")
    resource: Optional[str] = Field(default=None, description="RFC 8707 resource indicator to request.")
    audience: Optional[str] = Field(default=None, description="audience parameter, for IdPs that use it.")
    token_file: Optional[str] = Field(
        default=None, description="A projected service-account token file (Kubernetes), re-read "
                                  "when rotated; instead of client credentials.")
    static_token: Optional[Secret] = Field(
        default=None, description="Legacy: a fixed token in a saved Secret block.")
    dpop: bool = Field(
        default=False, description="Ask the IdP for DPoP-bound tokens (RFC 9449): each token is bound "
                                   "to a key pair made for it in the worker's memory, and every call "
                                   "carries a fresh proof signed with it. Client credentials only.")
    timeout_seconds: float = Field(default=10.0, gt=0, le=300, description="Per HTTP request.")

    @model_validator(mode="after")
    def _one_identity(self) -> "GatewayCredentials":
        kinds = [k for k, on in (("client credentials", self.client_id is not None),
                                 ("token_file", self.token_file is not None),
                                 ("static_token", self.static_token is not None)) if on]
        if len(kinds) != 1:
            raise ValueError("set exactly one of client_id (client credentials), token_file and "
                             f"static_token; got {kinds or 'none'}")
        if self.client_id is not None:
            if (self.client_secret is None) == (self.private_key_file is None):
                raise ValueError("client credentials need exactly one of client_secret and private_key_file")
            if not (self.issuer or self.discovery_url):
                raise ValueError("client credentials need issuer or discovery_url")
        elif self.dpop:
            raise ValueError("dpop needs client credentials: a token file or a static token cannot "
                             "be bound to a key of this worker")
        return self

    def _secret_value(self) -> str:
        assert self.client_secret is not None
        value = self.client_secret.get()
        if not isinstance(value, str):
            raise ValueError("the client secret block must hold a string")
        return value

    def token_source(self) -> TokenSource:
        """A new token source for these credentials (prefer :meth:`token_cache`)."""
        if self.token_file is not None:
            return ProjectedTokenFile(self.token_file)
        if self.static_token is not None:
            static = self.static_token
            return StaticToken(lambda: str(static.get()),
                               name=f"static token of block {self._block_document_name or 'unsaved'}")
        assert self.client_id is not None
        return ClientCredentials(
            self.client_id, issuer=self.issuer, discovery_url=self.discovery_url,
            client_secret=self._secret_value if self.client_secret is not None else None,
            private_key=Path(self.private_key_file) if self.private_key_file else None,
            key_id=self.key_id, scopes=self.scopes, resource=self.resource, audience=self.audience,
            dpop=self.dpop, timeout=self.timeout_seconds,
        )

    def _cache_key(self) -> tuple[Any, ...]:
        secret = None
        if self.client_secret is not None:
            secret = secret_fingerprint(self._secret_value())
        elif self.static_token is not None:
            secret = secret_fingerprint(str(self.static_token.get()))
        return ("gateway-credentials", self.issuer, self.discovery_url, self.client_id, secret,
                self.private_key_file, self.key_id, tuple(self.scopes), self.resource, self.audience,
                self.token_file, self.dpop)

    def token_cache(self) -> TokenCache:
        """The process-wide cache of these credentials (shared by every task of the worker)."""
        return shared_cache(self._cache_key(), self.token_source)

    def client(self, *, trace: bool = True, **options: Any) -> GatewayClient:
        """A :class:`GatewayClient` for :attr:`gateway_url` with these credentials' token;
        each call carries the run ids (:func:`run_trace_headers`) unless ``trace=False``."""
        return GatewayClient(self.gateway_url, self.token_cache(),
                             timeout=options.pop("timeout", self.timeout_seconds),
                             trace_headers=run_trace_headers if trace else None, **options)


def secret_block_token(name: str) -> StaticToken:
    """Legacy: the token stored in the Secret block ``name``, read at use."""
    return StaticToken(lambda: str(Secret.load(name).get()), name=f"Secret block {name}")


def gateway_client(block: str | GatewayCredentials, **options: Any) -> GatewayClient:
    """``GatewayCredentials.load(block).client()`` for a block name, or ``block.client()``."""
    return GatewayClient.from_block(block, **options)


__all__ = [
    "FLOW_RUN_HEADER", "TASK_RUN_HEADER", "REQUEST_ID_HEADER", "GatewayCredentials",
    "current_run_ids", "gateway_client", "run_trace_headers", "secret_block_token",
]

"""The dispatcher: an ASGI service behind the gateway that starts Prefect flow runs.

``POST /runs/{flow}/{deployment}``  body: JSON object of flow parameters
    401 no valid assertion · 403 policy · 400/413 body · 404 deployment · 409 idempotency
    conflict · 422 Prefect refused the parameters · 503 keys or Prefect unavailable
    201 run created · 200 the run this request id already created
``GET /runs/{flow_run_id}``  the run's state, for its creator (or tenant, if the policy shares it)
    404 ``run_not_found`` for a run that does not exist *and* for one the caller may not see,
    so that nobody learns which runs exist.
``GET /healthz``  liveness, no identity needed.

With ``DISPATCHER_BACKEND=airflow`` the run endpoints are Airflow's DAG runs instead
(:mod:`.airflow_backend`); everything else here is shared.

Every refusal carries ``x-identity-reason: <code>[; rule=<name>]`` and a JSON body
``{"error", "status", "message", "rule"?}``; every decision is one JSON log line on stdout.
"""

from __future__ import annotations

import json
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from . import events
from .assertion import Identity, read_header, verify_assertion
from .config import Settings, load_settings
from .decisions import DecisionLog
from .keys import KeyStore, KeysUnavailable, VerificationKey, load_jwks_file
from .policy import Policy, load_policy
from .prefect_api import PrefectApi, PrefectRejected, PrefectUnavailable
from .reasons import Refusal
from .runs import (
    check_body,
    idempotency_key,
    labels_caller,
    may_read,
    requested_by_value,
    run_labels,
    run_tags,
    same_owner,
)


class Dispatcher:
    """Everything a request needs, built once from the settings."""

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        keys: KeyStore,
        prefect: PrefectApi | None,
        log: DecisionLog,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.keys = keys
        self.prefect = prefect
        self.events = events.EventSender(prefect.post_events if prefect else None,
                                         enabled=settings.prefect_events and prefect is not None)
        self.log = log

    # -- identity -------------------------------------------------------------------------------

    def bound_path(self, request: Request) -> str:
        """The path the filter saw: the raw request path (no query), behind the gateway's prefix."""
        raw = request.scope.get("raw_path")
        path = raw.decode("latin-1") if raw else request.url.path
        return self.settings.path_prefix + path.split("?", 1)[0]

    async def authenticate(self, request: Request) -> Identity:
        values = request.headers.getlist(self.settings.assertion_header)
        if not values or not values[0].strip():
            raise Refusal("assertion_missing")
        if len(values) > 1:
            raise Refusal("assertion_invalid", detail="more than one assertion header")
        token = values[0].strip()
        header = read_header(token)
        try:
            key = await self.keys.find(header.kid, header.algorithm)
        except KeysUnavailable as error:
            raise Refusal("keys_unavailable", detail=str(error)) from None
        if key is None:
            raise Refusal(
                "assertion_invalid", detail=f"no {header.algorithm} key with kid {header.kid!r}"
            )
        return verify_assertion(
            token,
            key,
            audience=self.settings.audience,
            issuer=self.settings.assertion_issuer,
            method=request.method,
            path=self.bound_path(request),
            leeway_seconds=self.settings.leeway_seconds,
            max_lifetime_seconds=self.settings.max_lifetime_seconds,
        )

    # -- answers --------------------------------------------------------------------------------

    def refuse(
        self,
        request: Request,
        refusal: Refusal,
        identity: Identity | None,
        deployment: str | None = None,
        flow_run_id: str | None = None,
    ) -> JSONResponse:
        self.log.emit(
            decision="deny",
            status=refusal.status,
            reason=refusal.code,
            rule=refusal.rule,
            detail=refusal.detail,
            identity=identity.log_fields() if identity else None,
            deployment=deployment,
            flow_run_id=flow_run_id,
            method=request.method,
            path=request.url.path,
            request_id=identity.request_id if identity else None,
        )
        self.events.send(events.run_refused(
            identity, code=refusal.code, status=refusal.status, rule=refusal.rule,
            method=request.method, path=request.url.path, deployment=deployment,
            flow_run_id=flow_run_id))
        return JSONResponse(
            refusal.body(),
            status_code=refusal.status,
            headers=refusal.headers(self.settings.reason_header),
        )

    async def read_body(self, request: Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise Refusal("body_too_large", detail=f"limit {self.settings.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def parse_body(raw: bytes) -> Any:
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as error:
            raise Refusal("body_invalid", detail=f"not JSON: {error}") from None

    # -- endpoints ------------------------------------------------------------------------------

    async def start_run(self, request: Request, flow: str, deployment: str) -> JSONResponse:
        name = f"{flow}/{deployment}"
        identity: Identity | None = None
        try:
            raw = await self.read_body(request)
            identity = await self.authenticate(request)
            rule = self.policy.decide(identity, name)
            parameters = check_body(self.parse_body(raw))
            self.policy.check_parameters(rule, parameters)
            try:
                found = await self.prefect.read_deployment(flow, deployment)
                if found is None:
                    raise Refusal("deployment_not_found", detail=name)
                parameters = dict(parameters)
                requested_by = requested_by_value(found.get("parameter_openapi_schema"), identity)
                if requested_by is not None:
                    parameters["requested_by"] = requested_by
                run, created = await self.prefect.create_flow_run(
                    str(found["id"]),
                    parameters=parameters,
                    tags=run_tags(identity),
                    labels=run_labels(identity, rule.name),
                    idempotency_key=idempotency_key(identity, name),
                )
            except PrefectUnavailable as error:
                raise Refusal("prefect_unavailable", detail=str(error)) from None
            except PrefectRejected as error:
                if error.status in (409, 422, 400):
                    raise Refusal("parameters_invalid", detail=error.detail) from None
                raise Refusal("prefect_error", detail=str(error)) from None
            if not created:
                expected = {**(found.get("parameters") or {}), **parameters}
                if not same_owner(identity, run.get("labels") or {}) or run.get("parameters") != expected:
                    raise Refusal(
                        "idempotency_conflict",
                        detail=f"request id {identity.request_id!r} was used with other parameters",
                    )
        except Refusal as refusal:
            return self.refuse(request, refusal, identity, deployment=name)

        self.log.emit(
            decision="allow",
            status=201 if created else 200,
            reason="run_created" if created else "run_exists",
            rule=rule.name,
            identity=identity.log_fields(),
            deployment=name,
            flow_run_id=str(run["id"]),
            method=request.method,
            path=request.url.path,
            request_id=identity.request_id,
        )
        self.events.send(events.run_started(identity, run, found, name, rule.name,
                                            "run_created" if created else "run_exists"))
        return JSONResponse(
            {
                "flow_run_id": str(run["id"]),
                "flow_run_name": run.get("name"),
                "deployment": name,
                "deployment_id": str(found["id"]),
                "created": created,
                "rule": rule.name,
                "state": _state(run),
                "tags": run.get("tags", []),
                "parameters": run.get("parameters", {}),
            },
            status_code=201 if created else 200,
            headers={"cache-control": "no-store", "location": f"{self.settings.path_prefix}/runs/{run['id']}"},
        )

    async def read_run(self, request: Request, flow_run_id: str) -> JSONResponse:
        identity: Identity | None = None
        try:
            identity = await self.authenticate(request)
            try:
                run_id = str(uuid.UUID(flow_run_id))
            except ValueError:
                raise Refusal("run_not_found", detail="not a flow run id") from None
            try:
                run = await self.prefect.read_flow_run(run_id)
            except PrefectUnavailable as error:
                raise Refusal("prefect_unavailable", detail=str(error)) from None
            except PrefectRejected as error:
                raise Refusal("prefect_error", detail=str(error)) from None
            if run is None:
                raise Refusal("run_not_found", detail="no such run")
            labels = run.get("labels") or {}
            if not may_read(identity, labels, self.policy):
                # Same answer as for a missing run: existence is not disclosed.
                raise Refusal("run_not_found", detail="run belongs to another identity")
        except Refusal as refusal:
            return self.refuse(request, refusal, identity, flow_run_id=flow_run_id)

        self.log.emit(
            decision="allow",
            status=200,
            reason="run_read",
            identity=identity.log_fields(),
            flow_run_id=run_id,
            method=request.method,
            path=request.url.path,
            request_id=identity.request_id,
        )
        return JSONResponse(
            {
                "flow_run_id": run_id,
                "flow_run_name": run.get("name"),
                "deployment_id": run.get("deployment_id"),
                "state": _state(run),
                "tags": run.get("tags", []),
                "parameters": run.get("parameters", {}),
                "created": run.get("created"),
                "start_time": run.get("start_time"),
                "end_time": run.get("end_time"),
                "requested_by": labels_caller(labels),
            },
            headers={"cache-control": "no-store"},
        )


def _state(run: dict[str, Any]) -> dict[str, Any]:
    state = run.get("state") or {}
    return {
        "type": state.get("type") or run.get("state_type"),
        "name": state.get("name") or run.get("state_name"),
        "message": state.get("message"),
    }


def build_dispatcher(settings: Settings, jwks_http: httpx.AsyncClient | None = None) -> Dispatcher:
    """Load the policy and keys (raising on any error) and build the dispatcher."""
    policy = load_policy(settings.policy_file)
    static: list[VerificationKey] = []
    if settings.hs256_secret is not None:
        static.append(VerificationKey(kid=settings.hs256_kid, algorithm="HS256", key=settings.hs256_secret))
    if settings.jwks_file:
        static.extend(load_jwks_file(settings.jwks_file))
    keys = KeyStore(
        static,
        jwks_url=settings.jwks_url,
        http=jwks_http,
        cache_seconds=settings.jwks_cache_seconds,
        min_refetch_seconds=settings.jwks_min_refetch_seconds,
    )
    if settings.backend != "prefect":
        return Dispatcher(settings, policy, keys, None, DecisionLog())
    prefect = PrefectApi(
        settings.prefect_api_url,
        auth_string=settings.prefect_api_auth_string,
        attempts=settings.prefect_attempts,
        backoff_seconds=settings.prefect_backoff_seconds,
        timeout_seconds=settings.prefect_timeout_seconds,
    )
    return Dispatcher(settings, policy, keys, prefect, DecisionLog())


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app. Settings default to the environment; invalid settings raise at once."""
    settings = settings or load_settings()
    jwks_http = httpx.AsyncClient() if settings.jwks_url else None
    dispatcher = build_dispatcher(settings, jwks_http)
    backend_api: Any = dispatcher.prefect
    if settings.backend == "airflow":
        from . import airflow_backend

        backend_api = airflow_backend.build_api(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await dispatcher.events.drain()
        await backend_api.aclose()
        if jwks_http is not None:
            await jwks_http.aclose()

    app = FastAPI(
        title="identity dispatcher",
        description=f"Starts {settings.backend.title()} runs for callers identified by the gateway's signed assertion.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.dispatcher = dispatcher
    if settings.backend == "airflow":
        airflow_backend.add_routes(app, dispatcher, backend_api)
    else:
        _add_prefect_routes(app, dispatcher)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _add_prefect_routes(app: FastAPI, dispatcher: Dispatcher) -> None:
    @app.post("/runs/{flow}/{deployment}")
    async def start_run(request: Request, flow: str, deployment: str) -> JSONResponse:
        try:
            return await dispatcher.start_run(request, flow, deployment)
        except Exception as error:  # a bug must still answer with a code and leave a log line
            return dispatcher.refuse(request, Refusal("internal_error", detail=repr(error)), None,
                                     deployment=f"{flow}/{deployment}")

    @app.get("/runs/{flow_run_id}")
    async def read_run(request: Request, flow_run_id: str) -> JSONResponse:
        try:
            return await dispatcher.read_run(request, flow_run_id)
        except Exception as error:
            return dispatcher.refuse(request, Refusal("internal_error", detail=repr(error)), None,
                                     flow_run_id=flow_run_id)

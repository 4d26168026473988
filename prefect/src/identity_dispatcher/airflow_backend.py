"""The dispatcher's Airflow backend (``DISPATCHER_BACKEND=airflow``): DAG runs for callers
identified only by the filter's signed assertion, under the same policy as Prefect's runs.

``POST /dags/{dag_id}/runs``  body: ``{"conf": {...}}`` (or ``{}``)
    401 no valid assertion · 403 policy (the rule's ``dags``; its ``parameters`` are the ``conf``
    keys the caller may set) · 400/413 body · 404 DAG · 409 idempotency conflict · 503 keys or
    Airflow unavailable · 201 run created · 200 the run this request id already created
``GET /dags/{dag_id}/runs/{dag_run_id}``  the run, for its creator (or tenant, if the policy
    shares it); ``404 run_not_found`` both for a run that does not exist and for one the caller
    may not see.

What a run records: ``conf["requested_by"]`` = ``{"sub", "issuer", "tenant"?, "provider"?,
"rule", "request_id"}``, a ``note`` naming the caller, and a ``dag_run_id`` derived from the
idempotency key (``gw__<hash>``: the caller's issuer and sub, the DAG and the request id), so
the same gateway request retried finds the same run, and a read checks that the run id is the
one this owner's request would have created. Airflow is called with the dispatcher's own service
account; no request header is forwarded.

Shares everything but the orchestrator calls with the Prefect endpoints in :mod:`.app`
(assertion, keys, policy, reason codes, decision log).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .airflow_api import AirflowApi, AirflowRejected, AirflowUnavailable
from .assertion import Identity
from .reasons import Refusal
from .runs import (LABEL_ISSUER, LABEL_RULE, LABEL_SUB, LABEL_TENANT, REQUESTED_BY, caller_record,
                   may_read)

if TYPE_CHECKING:
    from .app import Dispatcher
    from .config import Settings

#: Prefix of every DAG run id the dispatcher creates.
RUN_ID_PREFIX = "gw__"
#: A DAG id as Airflow allows it (``airflow.utils.helpers.KEY_REGEX``).
DAG_ID = re.compile(r"^[\w.-]{1,250}$")
#: Top-level fields of a trigger request: only ``conf``. Never ``dag_run_id``, ``logical_date``,
#: data intervals, ``note`` or ``run_after``: the dispatcher sets what it records itself.
BODY_FIELDS = frozenset({"conf"})


def build_api(settings: "Settings") -> AirflowApi:
    return AirflowApi(
        settings.airflow_api_url,
        username=settings.airflow_username,
        password=settings.airflow_password,
        token=settings.airflow_token,
        attempts=settings.airflow_attempts,
        backoff_seconds=settings.airflow_backoff_seconds,
        timeout_seconds=settings.airflow_timeout_seconds,
    )


def dag_run_id(identity: Identity, dag_id: str) -> str:
    """One run per gateway request id, per caller (the same ``req.id`` from someone else gives
    another run id); the assertion's ``jti`` when it has no request id."""
    request = identity.request_id or f"jti:{identity.jti}"
    material = json.dumps([identity.idp, identity.sub, "dag", dag_id, request], separators=(",", ":"))
    return RUN_ID_PREFIX + hashlib.sha256(material.encode()).hexdigest()[:40]


def requested_by(identity: Identity, rule: str) -> dict[str, Any]:
    value = caller_record(identity.sub, identity.idp, identity.tenant, identity.provider)
    value["rule"] = rule
    value["request_id"] = identity.request_id or f"jti:{identity.jti}"
    return value


def run_note(identity: Identity, rule: str) -> str:
    tenant = f", tenant {identity.tenant}" if identity.tenant is not None else ""
    return (f"Requested by {identity.sub} ({identity.idp}{tenant}) through the gateway; "
            f"rule {rule}, request {identity.request_id or identity.jti}")


def check_trigger_body(body: Any) -> dict[str, Any]:
    """The caller's ``conf``, after the refusals that apply whatever the policy says."""
    if not isinstance(body, dict):
        raise Refusal("body_invalid", detail='expected a JSON object {"conf": {...}}')
    extra = sorted(set(body) - BODY_FIELDS)
    if extra:
        raise Refusal("body_invalid", detail="only conf may be sent, not: " + ", ".join(extra))
    conf = body.get("conf", {})
    if conf is None:
        conf = {}
    if not isinstance(conf, dict):
        raise Refusal("body_invalid", detail="conf must be a JSON object")
    if REQUESTED_BY in conf:
        raise Refusal("parameter_reserved", detail=f"{REQUESTED_BY!r} is set from the assertion")
    return conf


def owner_labels(run: dict[str, Any]) -> dict[str, str]:
    """The run's owner as :func:`.runs.may_read` expects it (Prefect's label names), from
    ``conf["requested_by"]``; empty for a run the dispatcher did not create."""
    owner = (run.get("conf") or {}).get(REQUESTED_BY)
    if not isinstance(owner, dict) or not str(run.get("dag_run_id", "")).startswith(RUN_ID_PREFIX):
        return {}
    labels = {LABEL_SUB: owner.get("sub"), LABEL_ISSUER: owner.get("issuer"), LABEL_RULE: owner.get("rule")}
    if owner.get("tenant") is not None:
        labels[LABEL_TENANT] = owner["tenant"]
    return {k: v for k, v in labels.items() if isinstance(v, str)}


def _created_by_dispatcher(run: dict[str, Any], dag_id: str) -> bool:
    """The run id is the one its recorded owner's request gives: a run triggered in Airflow with
    a forged ``requested_by`` conf does not pass."""
    owner = (run.get("conf") or {}).get(REQUESTED_BY) or {}
    try:
        identity = Identity(sub=owner["sub"], idp=owner["issuer"], request_id=owner["request_id"])
    except (KeyError, TypeError):
        return False
    return dag_run_id(identity, dag_id) == run.get("dag_run_id")


def _run_view(run: dict[str, Any], dag_id: str) -> dict[str, Any]:
    conf = dict(run.get("conf") or {})
    owner = conf.get(REQUESTED_BY) or {}
    return {
        "dag_id": run.get("dag_id", dag_id),
        "dag_run_id": run.get("dag_run_id"),
        "state": run.get("state"),
        "conf": conf,
        "note": run.get("note"),
        "run_type": run.get("run_type"),
        "queued_at": run.get("queued_at"),
        "start_date": run.get("start_date"),
        "end_date": run.get("end_date"),
        "requested_by": caller_record(owner.get("sub"), owner.get("issuer"), owner.get("tenant"),
                                      owner.get("provider")),
    }


class AirflowRuns:
    """The DAG-run endpoints, on the shared :class:`.app.Dispatcher` (identity, policy, answers)."""

    def __init__(self, dispatcher: "Dispatcher", api: AirflowApi) -> None:
        self.dispatcher = dispatcher
        self.api = api

    async def start_run(self, request: Request, dag_id: str) -> JSONResponse:
        d = self.dispatcher
        identity: Identity | None = None
        try:
            raw = await d.read_body(request)
            identity = await d.authenticate(request)
            if not DAG_ID.match(dag_id):
                raise Refusal("forbidden", rule="default", detail="not a DAG id")
            rule = d.policy.decide(identity, dag_id, kind="dag")
            conf = check_trigger_body(d.parse_body(raw))
            d.policy.check_parameters(rule, conf)
            run_id = dag_run_id(identity, dag_id)
            sent = {**conf, REQUESTED_BY: requested_by(identity, rule.name)}
            try:
                if await self.api.read_dag(dag_id) is None:
                    raise Refusal("dag_not_found", detail=dag_id)
                run, created = await self.api.trigger_dag_run(
                    dag_id, dag_run_id=run_id, conf=sent, note=run_note(identity, rule.name)
                )
            except AirflowUnavailable as error:
                raise Refusal("airflow_unavailable", detail=str(error)) from None
            except AirflowRejected as error:
                if error.status in (400, 422):
                    raise Refusal("body_invalid", detail=error.detail) from None
                raise Refusal("airflow_error", detail=str(error)) from None
            if not created and (run.get("conf") or {}) != sent:
                raise Refusal(
                    "idempotency_conflict",
                    detail=f"request id {identity.request_id!r} was used with another conf",
                )
        except Refusal as refusal:
            return d.refuse(request, refusal, identity, deployment=f"dag:{dag_id}")

        d.log.emit(
            decision="allow",
            status=201 if created else 200,
            reason="run_created" if created else "run_exists",
            rule=rule.name,
            identity=identity.log_fields(),
            deployment=f"dag:{dag_id}",
            dag_run_id=run_id,
            method=request.method,
            path=request.url.path,
            request_id=identity.request_id,
        )
        body = {**_run_view(run, dag_id), "created": created, "rule": rule.name}
        return JSONResponse(
            body,
            status_code=201 if created else 200,
            headers={"cache-control": "no-store",
                     "location": f"{d.settings.path_prefix}/dags/{dag_id}/runs/{run_id}"},
        )

    async def read_run(self, request: Request, dag_id: str, run_id: str) -> JSONResponse:
        d = self.dispatcher
        identity: Identity | None = None
        try:
            identity = await d.authenticate(request)
            if not DAG_ID.match(dag_id) or not run_id.startswith(RUN_ID_PREFIX):
                raise Refusal("run_not_found", detail="not a run id the dispatcher creates")
            try:
                run = await self.api.read_dag_run(dag_id, run_id)
            except AirflowUnavailable as error:
                raise Refusal("airflow_unavailable", detail=str(error)) from None
            except AirflowRejected as error:
                raise Refusal("airflow_error", detail=str(error)) from None
            if run is None:
                raise Refusal("run_not_found", detail="no such run")
            if not _created_by_dispatcher(run, dag_id) or not may_read(identity, owner_labels(run), d.policy):
                # Same answer as for a missing run: existence is not disclosed.
                raise Refusal("run_not_found", detail="run belongs to another identity")
        except Refusal as refusal:
            return d.refuse(request, refusal, identity, deployment=f"dag:{dag_id}", flow_run_id=run_id)

        d.log.emit(
            decision="allow",
            status=200,
            reason="run_read",
            identity=identity.log_fields(),
            deployment=f"dag:{dag_id}",
            dag_run_id=run_id,
            method=request.method,
            path=request.url.path,
            request_id=identity.request_id,
        )
        return JSONResponse(_run_view(run, dag_id), headers={"cache-control": "no-store"})


def add_routes(app: FastAPI, dispatcher: "Dispatcher", api: AirflowApi) -> None:
    runs = AirflowRuns(dispatcher, api)

    @app.post("/dags/{dag_id}/runs")
    async def start_run(request: Request, dag_id: str) -> JSONResponse:
        try:
            return await runs.start_run(request, dag_id)
        except Exception as error:  # a bug must still answer with a code and leave a log line
            return dispatcher.refuse(request, Refusal("internal_error", detail=repr(error)), None,
                                     deployment=f"dag:{dag_id}")

    @app.get("/dags/{dag_id}/runs/{run_id}")
    async def read_run(request: Request, dag_id: str, run_id: str) -> JSONResponse:
        try:
            return await runs.read_run(request, dag_id, run_id)
        except Exception as error:
            return dispatcher.refuse(request, Refusal("internal_error", detail=repr(error)), None,
                                     deployment=f"dag:{dag_id}", flow_run_id=run_id)

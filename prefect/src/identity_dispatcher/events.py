"""Prefect events for the dispatcher's decisions, so Prefect's event feed and automations see
who started which run and who was refused (not only the decision log).

Sent with Prefect's REST API (``POST /api/events``, the endpoint ``prefect.events`` clients
write to as well), in the background: an event that cannot be sent is logged and never delays
or changes an answer. Nothing secret is in them: no token, no assertion.

- ``identity-dispatcher.run.started``: resource ``prefect.flow-run.<id>``; related: the
  deployment (role ``deployment``) and the caller (role ``caller``); payload: ``rule``,
  ``reason`` (``run_created`` / ``run_exists``), ``request_id``.
- ``identity-dispatcher.run.refused``: resource ``identity-dispatcher.deployment.<flow>/<deployment>``
  (or ``identity-dispatcher.flow-run.<id>`` for a refused read); related: the caller, when the
  assertion identified one; payload: ``reason``, ``status``, ``rule``, ``method``, ``path``,
  ``request_id``.

The caller is the resource ``identity.caller.<sub>@<idp>`` with labels ``identity.sub``,
``identity.issuer``, ``identity.tenant`` and ``identity.provider`` (when known), so an
automation can match ``related: {"prefect.resource.role": "caller", "identity.sub": "alice"}``.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from typing import Any

from .assertion import Identity

log = logging.getLogger(__name__)

STARTED = "identity-dispatcher.run.started"
REFUSED = "identity-dispatcher.run.refused"


def caller_resource(identity: Identity) -> dict[str, str]:
    resource = {
        "prefect.resource.id": f"identity.caller.{identity.sub}@{identity.idp}",
        "prefect.resource.role": "caller",
        "prefect.resource.name": identity.sub,
        "identity.sub": identity.sub,
        "identity.issuer": identity.idp,
    }
    if identity.tenant is not None:
        resource["identity.tenant"] = identity.tenant
    if identity.provider is not None:
        resource["identity.provider"] = identity.provider
    return resource


def _event(name: str, resource: dict[str, str], related: list[dict[str, str]],
           payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "occurred": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "event": name,
        "resource": resource,
        "related": related,
        "payload": {k: v for k, v in payload.items() if v is not None},
    }


def run_started(identity: Identity, run: dict[str, Any], deployment: dict[str, Any], name: str,
                rule: str, reason: str) -> dict[str, Any]:
    return _event(
        STARTED,
        {"prefect.resource.id": f"prefect.flow-run.{run['id']}",
         "prefect.resource.name": str(run.get("name") or run["id"])},
        [{"prefect.resource.id": f"prefect.deployment.{deployment['id']}",
          "prefect.resource.role": "deployment", "prefect.resource.name": name},
         caller_resource(identity)],
        {"rule": rule, "reason": reason, "request_id": identity.request_id, "deployment": name},
    )


def run_refused(identity: Identity | None, *, code: str, status: int, rule: str | None,
                method: str, path: str, deployment: str | None = None,
                flow_run_id: str | None = None) -> dict[str, Any]:
    if deployment is not None:
        resource = {"prefect.resource.id": f"identity-dispatcher.deployment.{deployment}",
                    "prefect.resource.name": deployment}
    else:
        resource = {"prefect.resource.id": f"identity-dispatcher.flow-run.{flow_run_id}",
                    "prefect.resource.name": str(flow_run_id)}
    return _event(
        REFUSED, resource, [caller_resource(identity)] if identity is not None else [],
        {"reason": code, "status": status, "rule": rule, "method": method, "path": path,
         "request_id": identity.request_id if identity else None},
    )


class EventSender:
    """Sends events in background tasks (kept referenced until done)."""

    def __init__(self, post: Any, enabled: bool = True) -> None:
        self._post = post
        self.enabled = enabled
        self._tasks: set[asyncio.Task[None]] = set()
        #: Events sent / failed so far.
        self.sent = 0
        self.failed = 0

    def send(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        task = asyncio.get_running_loop().create_task(self._send(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, event: dict[str, Any]) -> None:
        try:
            await self._post([event])
            self.sent += 1
        except Exception as error:  # never let an event break a decision
            self.failed += 1
            log.warning("could not send Prefect event %s: %s", event["event"], error)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

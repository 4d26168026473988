"""What a run records about its caller, and who may see it again.

Pure functions: the tags, labels, ``requested_by`` value and idempotency key of a run created for
an identity, the checks on caller-supplied parameters, and the visibility rule for reads.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from .assertion import Identity
from .policy import Policy
from .reasons import Refusal

#: The parameter the dispatcher fills with the caller's identity when the flow declares it.
REQUESTED_BY = "requested_by"

#: Labels recorded on every run the dispatcher creates (Prefect flow-run labels).
LABEL_SUB = "identity.sub"
LABEL_ISSUER = "identity.issuer"
LABEL_TENANT = "identity.tenant"
LABEL_PROVIDER = "identity.provider"
LABEL_RULE = "identity.rule"
LABEL_REQUEST_ID = "identity.request_id"
#: How the caller's token was bound to its sender (``none``, ``dpop``, ``mtls``).
LABEL_BINDING = "identity.binding"


def check_body(body: Any) -> dict[str, Any]:
    """The caller's parameters, after the refusals that apply whatever the policy says."""
    if not isinstance(body, dict):
        raise Refusal("body_invalid", detail="expected a JSON object of flow parameters")
    if "job_variables" in body:
        raise Refusal(
            "job_variables_refused",
            detail="job_variables are never passed to Prefect (they configure the worker)",
        )
    if REQUESTED_BY in body:
        raise Refusal("parameter_reserved", detail=f"{REQUESTED_BY!r} is set from the assertion")
    path = _find_template(body, "$")
    if path is not None:
        raise Refusal("parameter_template_refused", detail=f"Prefect template object at {path}")
    return body


def _find_template(value: Any, path: str) -> str | None:
    """Where a ``{"__prefect_kind": ...}`` object hides: Prefect would hydrate it server-side
    (workspace variables, Jinja), so a caller could read variables through a parameter."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.startswith("__prefect"):
                return path
            found = _find_template(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_template(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _schema_types(schema: Any, definitions: Mapping[str, Any], depth: int = 0) -> set[str]:
    """The JSON types a (sub)schema accepts; ``{"any"}`` when it does not say."""
    if not isinstance(schema, dict) or depth > 8:
        return {"any"}
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return _schema_types(definitions.get(name), definitions, depth + 1)
    types: set[str] = set()
    if "type" in schema:
        declared = schema["type"]
        types.update(declared if isinstance(declared, list) else [declared])
    for combinator in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(combinator, []) or []:
            types |= _schema_types(option, definitions, depth + 1)
    return types or {"any"}


def requested_by_value(schema: Any, identity: Identity) -> Any:
    """The ``requested_by`` parameter for a deployment's parameter schema, or ``None`` when the
    flow does not declare it. An object-typed parameter gets a small dict, any other the sub."""
    if not isinstance(schema, dict):
        return None
    properties = schema.get("properties") or {}
    if REQUESTED_BY not in properties:
        return None
    definitions = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    types = _schema_types(properties[REQUESTED_BY], definitions)
    if "object" in types:
        return caller_record(identity.sub, identity.idp, identity.tenant, identity.provider)
    return identity.sub


def caller_record(sub: Any, issuer: Any, tenant: Any = None, provider: Any = None) -> dict[str, Any]:
    """The one shape of ``requested_by`` wherever a run shows who started it (the flow's
    parameter, ``GET /runs/{id}``): ``sub`` and ``issuer``, plus ``tenant`` and ``provider`` when
    the caller has them."""
    value = {"sub": sub, "issuer": issuer}
    if tenant is not None:
        value["tenant"] = tenant
    if provider is not None:
        value["provider"] = provider
    return value


def labels_caller(labels: dict[str, Any]) -> dict[str, Any]:
    """:func:`caller_record` read back from a run's labels (:func:`run_labels`)."""
    return caller_record(labels.get(LABEL_SUB), labels.get(LABEL_ISSUER), labels.get(LABEL_TENANT),
                         labels.get(LABEL_PROVIDER))


def run_tags(identity: Identity) -> list[str]:
    tags = [f"identity:{identity.sub}", f"issuer:{identity.idp_host}"]
    if identity.tenant is not None:
        tags.append(f"tenant:{identity.tenant}")
    return tags


def run_labels(identity: Identity, rule_name: str) -> dict[str, str]:
    labels = {LABEL_SUB: identity.sub, LABEL_ISSUER: identity.idp, LABEL_RULE: rule_name}
    if identity.tenant is not None:
        labels[LABEL_TENANT] = identity.tenant
    if identity.provider is not None:
        labels[LABEL_PROVIDER] = identity.provider
    if identity.request_id is not None:
        labels[LABEL_REQUEST_ID] = identity.request_id
    labels[LABEL_BINDING] = identity.binding
    return labels


def idempotency_key(identity: Identity, deployment: str) -> str:
    """One run per gateway request id, per caller: the same ``req.id`` from another identity
    gives another key, so nobody can obtain someone else's run by guessing a request id. When
    the assertion has no request id, its ``jti`` is used (a replay then finds the same run)."""
    request = identity.request_id or f"jti:{identity.jti}"
    material = json.dumps([identity.idp, identity.sub, deployment, request], separators=(",", ":"))
    return "identity-dispatcher:" + hashlib.sha256(material.encode()).hexdigest()


def same_owner(identity: Identity, labels: Mapping[str, Any]) -> bool:
    return labels.get(LABEL_SUB) == identity.sub and labels.get(LABEL_ISSUER) == identity.idp


def may_read(identity: Identity, labels: Mapping[str, Any], policy: Policy) -> bool:
    """The creator may read a run; so may its tenant (same issuer and tenant) when the rule that
    allowed the run, as the policy says *now*, has ``read: tenant``. Runs not created through
    the dispatcher carry no identity labels and are visible to nobody here."""
    if LABEL_SUB not in labels:
        return False
    if same_owner(identity, labels):
        return True
    rule = policy.rule(str(labels.get(LABEL_RULE, "")))
    return (
        rule is not None
        and rule.read == "tenant"
        and identity.tenant is not None
        and labels.get(LABEL_TENANT) == identity.tenant
        and labels.get(LABEL_ISSUER) == identity.idp
    )

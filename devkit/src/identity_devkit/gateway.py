"""The identity filter's configuration in front of the dispatcher (a plain JSON document).

Used by the gateway tests and by ``make run-prefect`` (``tools/run_prefect.py``); it is also the
reference for a production gateway. What the filter does with it (see the repository's
``docs/configuration.md``):

- ``POST /runs/{flow}/{deployment}`` (rule ``runs-start``): a valid token of a listed provider
  with one of ``run_roles``; ``GET /runs/{flow_run_id}`` (rule ``runs-read``): any valid token.
  Everything else is refused (``default: deny``). The dispatcher applies its own, finer policy
  after this coarse one.
- Prefect's ``Prefect-Automation-ID`` / ``Prefect-Automation-Name`` headers (which make Prefect
  record an object as created by an automation) are always stripped, as are the assertion
  header and the token.
- The signed assertion (``x-identity-assertion``, audience ``prefect-dispatcher``): HS256 with a
  shared secret, or EdDSA with the public JWKS served by the filter at :data:`JWKS_PATH`, which
  the dispatcher fetches through the gateway (``DISPATCHER_JWKS_URL``).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .jwk import b64url, public_jwk

#: Where the filter serves its public assertion keys (EdDSA).
JWKS_PATH = "/.well-known/identity-jwks"

#: The headers Prefect's server reads to record an object as created by an automation
#: (``prefect.server.api.dependencies.get_created_by``); a caller must never set them.
PREFECT_AUTOMATION_HEADERS = ("Prefect-Automation-ID", "Prefect-Automation-Name")

#: Roles the gateway requires to start a run (the dispatcher's policy decides which deployment).
DEFAULT_RUN_ROLES = ("flow-runner", "flow-admin")

#: An Envoy access log line per request with what ties a call to the run that made it.
TRACE_LOG_FORMAT = ("ACCESS %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% reason=%RESP(X-IDENTITY-REASON)% "
                    "request_id=%REQ(X-REQUEST-ID)% flow_run=%REQ(X-PREFECT-FLOW-RUN-ID)% "
                    "task_run=%REQ(X-PREFECT-TASK-RUN-ID)%\n")


def trace_access_log(line_format: str = TRACE_LOG_FORMAT) -> list[dict[str, Any]]:
    """The HTTP connection manager's ``access_log`` (Envoy's stdout logger) writing
    :data:`TRACE_LOG_FORMAT`: searching the log for a flow run id finds every call of the run."""
    return [{"name": "envoy.access_loggers.stdout", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        "log_format": {"text_format_source": {"inline_string": line_format}}}}]


START_RULE = "runs-start"
READ_RULE = "runs-read"

#: The Airflow backend's endpoints: roles that may start a DAG run, and the rule names.
DEFAULT_DAG_RUN_ROLES = ("dag-runner", "dag-admin")
DAG_START_RULE = "dag-runs-start"
DAG_READ_RULE = "dag-runs-read"


def ed25519_private_jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    """The ``private_jwk`` of an assertion key (``headers.assertion.keys[].private_jwk``)."""
    private = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return {"kty": "OKP", "crv": "Ed25519", "x": public_jwk(key)["x"], "d": b64url(private)}


def provider(name: str, issuer: str, *, jwks: Mapping[str, Any] | None = None,
             audiences: Sequence[str] = (), roles: Sequence[str] = ("roles",),
             groups: Sequence[str] = ("groups",), scopes: Sequence[str] = ("scope", "scp"),
             tenant: Sequence[str] = ("tenant",), **extra: Any) -> dict[str, Any]:
    """A ``providers[]`` entry: inline ``jwks`` (or ``jwks_uri`` + ``upstream`` in ``extra``)."""
    entry: dict[str, Any] = {"name": name, "issuer": issuer, "audiences": list(audiences)}
    if jwks is not None:
        entry["jwks"] = dict(jwks)
    entry.update(extra)
    entry["identity"] = {"roles": list(roles), "groups": list(groups), "scopes": list(scopes),
                         "tenant": list(tenant)}
    return entry


def hs256_key(kid: str, secret: str) -> dict[str, str]:
    """An HS256 assertion key: the dispatcher gets the same ``secret`` (UTF-8, ≥ 32 bytes)."""
    if len(secret.encode()) < 32:
        raise ValueError("the filter needs an HS256 secret of at least 32 bytes")
    return {"kid": kid, "secret": secret}


def eddsa_key(kid: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    return {"kid": kid, "private_jwk": ed25519_private_jwk(key)}


def filter_config(providers: Iterable[Mapping[str, Any]], assertion_keys: Sequence[Mapping[str, Any]],
                  *, audience: str = "prefect-dispatcher", issuer: str = "identity-filter",
                  run_roles: Sequence[str] = DEFAULT_RUN_ROLES, lifetime_seconds: int = 60,
                  jwks_path: str | None = JWKS_PATH,
                  strip: Sequence[str] = PREFECT_AUTOMATION_HEADERS,
                  rules: Sequence[Mapping[str, Any]] | None = None,
                  extra_rules: Sequence[Mapping[str, Any]] = (),
                  claim_headers: Sequence[Mapping[str, str]] = ()) -> dict[str, Any]:
    """The plugin configuration of the filter in front of the dispatcher.

    ``rules`` replaces the Prefect endpoints' rules (e.g. :func:`airflow_rules`).

    ``jwks_path`` is used only when the signing key is EdDSA (the filter refuses it otherwise).
    ``extra_rules`` follow the run rules (e.g. an API the flows call back through the same
    gateway); ``claim_headers`` are ``headers.claims`` entries (``{"identity": "subject",
    "header": "x-identity-subject"}``), informational headers for such APIs.
    """
    assertion: dict[str, Any] = {
        "audience": audience,
        "issuer": issuer,
        "lifetime_seconds": lifetime_seconds,
        "keys": [dict(k) for k in assertion_keys],
    }
    if jwks_path and any("private_jwk" in k for k in assertion_keys):
        assertion["jwks_path"] = jwks_path
    return {
        "providers": [dict(p) for p in providers],
        "rules": [
            *([dict(r) for r in rules] if rules is not None else [
                {"name": START_RULE,
                 "match": {"path_template": "/runs/{flow}/{deployment}", "methods": ["POST"]},
                 "require": {"roles": {"any_of": list(run_roles)}}},
                {"name": READ_RULE, "match": {"path_template": "/runs/{flow_run_id}", "methods": ["GET"]}},
            ]),
            *[dict(rule) for rule in extra_rules],
        ],
        "default": "deny",
        "headers": {"strip": list(strip), "assertion": assertion,
                    **({"claims": [dict(c) for c in claim_headers]} if claim_headers else {})},
        "errors": {"detail": "reason"},
    }


def airflow_rules(run_roles: Sequence[str] = DEFAULT_DAG_RUN_ROLES) -> list[dict[str, Any]]:
    """The filter's rules in front of the Airflow backend: ``POST /dags/{dag_id}/runs`` (rule
    ``dag-runs-start``) needs one of ``run_roles``; ``GET /dags/{dag_id}/runs/{dag_run_id}``
    (rule ``dag-runs-read``) any valid token; the dispatcher's policy decides per DAG."""
    return [
        {"name": DAG_START_RULE,
         "match": {"path_template": "/dags/{dag_id}/runs", "methods": ["POST"]},
         "require": {"roles": {"any_of": list(run_roles)}}},
        {"name": DAG_READ_RULE,
         "match": {"path_template": "/dags/{dag_id}/runs/{dag_run_id}", "methods": ["GET"]}},
    ]

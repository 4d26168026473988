"""Settings of the dispatcher, read once from the environment.

Every variable is documented in README.md ("Configuration"). A bad value stops the dispatcher at
start with a message that names the variable; nothing is guessed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


#: The orchestrators the dispatcher can start runs in (``DISPATCHER_BACKEND``).
BACKENDS = ("prefect", "airflow")


@dataclass(frozen=True)
class Settings:
    #: Policy file (YAML or JSON). Required.
    policy_file: str
    #: Base URL of the Prefect API, e.g. ``http://127.0.0.1:4200/api`` (the prefect backend).
    prefect_api_url: str = ""
    #: ``prefect`` (flow runs) or ``airflow`` (DAG runs).
    backend: str = "prefect"
    #: Root URL of the Airflow API server, e.g. ``http://127.0.0.1:8080`` (the airflow backend).
    airflow_api_url: str = ""
    #: The dispatcher's own Airflow account (simple auth manager / ``POST /auth/token``).
    airflow_username: str | None = None
    airflow_password: str | None = None
    #: A ready API token instead (e.g. issued by the auth manager in use); no login then.
    airflow_token: str | None = None
    #: Attempts, first back-off and timeout of one Airflow call (as the Prefect ones).
    airflow_attempts: int = 5
    airflow_backoff_seconds: float = 0.2
    airflow_timeout_seconds: float = 30.0
    #: Optional ``user:password`` for a Prefect server started with basic auth.
    prefect_api_auth_string: str | None = None
    #: Expected ``aud`` of the assertion: the name the filter gives this service.
    audience: str = "prefect-dispatcher"
    #: Expected ``iss`` of the assertion: the filter's assertion issuer.
    assertion_issuer: str = "identity-filter"
    #: Request header carrying the assertion.
    assertion_header: str = "x-identity-assertion"
    #: Response header carrying the reason code of every refusal.
    reason_header: str = "x-identity-reason"
    #: HS256 shared secret (UTF-8 bytes of the value), inline or from a file.
    hs256_secret: bytes | None = None
    #: ``kid`` the HS256 secret answers to; ``None`` accepts any kid for it.
    hs256_kid: str | None = None
    #: A JWKS file (Ed25519 ``OKP`` and/or ``oct`` keys).
    jwks_file: str | None = None
    #: A JWKS URL, e.g. the filter's JWKS path served through the gateway.
    jwks_url: str | None = None
    #: How long fetched keys are used before they are fetched again.
    jwks_cache_seconds: float = 300.0
    #: Minimum time between two fetches caused by an unknown ``kid``.
    jwks_min_refetch_seconds: float = 10.0
    #: Allowed clock difference for ``iat`` and ``exp``.
    leeway_seconds: int = 5
    #: Longest ``exp - iat`` accepted; the filter's default lifetime is 60 s.
    max_lifetime_seconds: int = 300
    #: The path prefix the gateway removes before forwarding (``req.path`` is the client's path).
    path_prefix: str = ""
    #: Attempts for one Prefect call answered 502/503/504/429 or not reached at all.
    prefect_attempts: int = 5
    #: First back-off between attempts, doubled each time.
    prefect_backoff_seconds: float = 0.2
    #: Timeout of one Prefect call.
    prefect_timeout_seconds: float = 10.0
    #: Send a Prefect event for each start decision and each refusal.
    prefect_events: bool = True
    #: Largest accepted request body.
    max_body_bytes: int = 65536

    @property
    def has_keys(self) -> bool:
        return bool(self.hs256_secret or self.jwks_file or self.jwks_url)


def _number(env: Mapping[str, str], name: str, default, kind=float, minimum=0):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a {kind.__name__}, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {raw!r}")
    return value


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {env.get(name)!r}")


def _header_name(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name) or default
    if not value or any(not (c.isalnum() or c in "-_") for c in value):
        raise ConfigError(f"{name}: not a header name: {value!r}")
    return value.lower()


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``env`` (default: ``os.environ``)."""
    env = os.environ if env is None else env

    policy_file = env.get("DISPATCHER_POLICY_FILE")
    if not policy_file:
        raise ConfigError("DISPATCHER_POLICY_FILE: required (a YAML or JSON policy file)")

    backend = env.get("DISPATCHER_BACKEND") or "prefect"
    if backend not in BACKENDS:
        raise ConfigError(f"DISPATCHER_BACKEND: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    api_url = env.get("PREFECT_API_URL") or ""
    if backend == "prefect" and not api_url:
        raise ConfigError("PREFECT_API_URL: required, e.g. http://127.0.0.1:4200/api")
    airflow = _airflow_settings(env) if backend == "airflow" else {}

    secret: bytes | None = None
    if env.get("DISPATCHER_HS256_SECRET") and env.get("DISPATCHER_HS256_SECRET_FILE"):
        raise ConfigError("DISPATCHER_HS256_SECRET and DISPATCHER_HS256_SECRET_FILE: set only one")
    if env.get("DISPATCHER_HS256_SECRET"):
        secret = env["DISPATCHER_HS256_SECRET"].encode()
    elif env.get("DISPATCHER_HS256_SECRET_FILE"):
        path = env["DISPATCHER_HS256_SECRET_FILE"]
        try:
            with open(path, "rb") as handle:
                secret = handle.read().rstrip(b"\r\n")
        except OSError as error:
            raise ConfigError(f"DISPATCHER_HS256_SECRET_FILE: cannot read {path}: {error}") from None
    if secret is not None and len(secret) < 32:
        raise ConfigError("DISPATCHER_HS256_SECRET: must be at least 32 bytes")

    jwks_url = env.get("DISPATCHER_JWKS_URL") or None
    if jwks_url and not jwks_url.startswith(("http://", "https://")):
        raise ConfigError(f"DISPATCHER_JWKS_URL: not an http(s) URL: {jwks_url!r}")

    prefix = env.get("DISPATCHER_PATH_PREFIX", "").rstrip("/")
    if prefix and not prefix.startswith("/"):
        raise ConfigError(f"DISPATCHER_PATH_PREFIX: must start with '/': {prefix!r}")

    settings = Settings(
        policy_file=policy_file,
        prefect_api_url=api_url.rstrip("/"),
        prefect_api_auth_string=env.get("PREFECT_API_AUTH_STRING") or None,
        backend=backend,
        **airflow,
        audience=env.get("DISPATCHER_AUDIENCE") or f"{backend}-dispatcher",
        assertion_issuer=env.get("DISPATCHER_ASSERTION_ISSUER") or "identity-filter",
        assertion_header=_header_name(env, "DISPATCHER_ASSERTION_HEADER", "x-identity-assertion"),
        reason_header=_header_name(env, "DISPATCHER_REASON_HEADER", "x-identity-reason"),
        hs256_secret=secret,
        hs256_kid=env.get("DISPATCHER_HS256_KID") or None,
        jwks_file=env.get("DISPATCHER_JWKS_FILE") or None,
        jwks_url=jwks_url,
        jwks_cache_seconds=_number(env, "DISPATCHER_JWKS_CACHE_SECONDS", 300.0),
        jwks_min_refetch_seconds=_number(env, "DISPATCHER_JWKS_MIN_REFETCH_SECONDS", 10.0),
        leeway_seconds=_number(env, "DISPATCHER_LEEWAY_SECONDS", 5, int),
        max_lifetime_seconds=_number(env, "DISPATCHER_MAX_LIFETIME_SECONDS", 300, int, 1),
        path_prefix=prefix,
        prefect_attempts=_number(env, "DISPATCHER_PREFECT_ATTEMPTS", 5, int, 1),
        prefect_backoff_seconds=_number(env, "DISPATCHER_PREFECT_BACKOFF_SECONDS", 0.2),
        prefect_timeout_seconds=_number(env, "DISPATCHER_PREFECT_TIMEOUT_SECONDS", 10.0),
        prefect_events=_boolean(env, "DISPATCHER_PREFECT_EVENTS", True),
        max_body_bytes=_number(env, "DISPATCHER_MAX_BODY_BYTES", 65536, int, 2),
    )
    if not settings.has_keys:
        raise ConfigError(
            "no verification key: set DISPATCHER_HS256_SECRET(_FILE), DISPATCHER_JWKS_FILE "
            "or DISPATCHER_JWKS_URL"
        )
    return settings


def _airflow_settings(env: Mapping[str, str]) -> dict:
    url = (env.get("AIRFLOW_API_URL") or "").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError("AIRFLOW_API_URL: required with DISPATCHER_BACKEND=airflow, the API "
                          f"server's root URL, e.g. http://127.0.0.1:8080 (got {url!r})")
    if url.endswith("/api/v2"):
        url = url[: -len("/api/v2")]
    password = env.get("DISPATCHER_AIRFLOW_PASSWORD") or None
    password_file = env.get("DISPATCHER_AIRFLOW_PASSWORD_FILE")
    if password and password_file:
        raise ConfigError("DISPATCHER_AIRFLOW_PASSWORD and DISPATCHER_AIRFLOW_PASSWORD_FILE: set only one")
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as handle:
                password = handle.read().rstrip("\r\n")
        except OSError as error:
            raise ConfigError(f"DISPATCHER_AIRFLOW_PASSWORD_FILE: cannot read {password_file}: {error}") from None
    username = env.get("DISPATCHER_AIRFLOW_USERNAME") or None
    token = env.get("DISPATCHER_AIRFLOW_TOKEN") or None
    if token is None and not (username and password):
        raise ConfigError("DISPATCHER_AIRFLOW_USERNAME and DISPATCHER_AIRFLOW_PASSWORD(_FILE): "
                          "required with DISPATCHER_BACKEND=airflow (or DISPATCHER_AIRFLOW_TOKEN)")
    return {"airflow_api_url": url, "airflow_username": username, "airflow_password": password,
            "airflow_token": token,
            "airflow_attempts": _number(env, "DISPATCHER_AIRFLOW_ATTEMPTS", 5, int, 1),
            "airflow_backoff_seconds": _number(env, "DISPATCHER_AIRFLOW_BACKOFF_SECONDS", 0.2),
            "airflow_timeout_seconds": _number(env, "DISPATCHER_AIRFLOW_TIMEOUT_SECONDS", 30.0)}

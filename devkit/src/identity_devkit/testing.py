"""Real components for tests and local demos: a Prefect server on SQLite, the example flows
served with ``flow.serve()``, a dispatcher process, and an assertion minter that signs exactly
what the gateway filter signs.

Every process is a :class:`~identity_devkit.supervised.Supervised` in its own session (process
group), stopped with its children: SIGTERM, then SIGKILL after a grace period; one still running
when the interpreter exits is stopped then. Nothing binds anything but 127.0.0.1.

Used by :mod:`identity_devkit.pytest_plugin` (fixtures) and :mod:`identity_devkit.chain`
(``python -m identity_devkit.chain``).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .issuer import SigningKey, merged
from .supervised import Supervised

EXAMPLES = Path(__file__).resolve().parent / "examples"
EXAMPLE_FLOWS = EXAMPLES / "flows.py"
EXAMPLE_POLICY = EXAMPLES / "policy.yaml"

#: Deployments served by the example flows.
EXAMPLE_DEPLOYMENTS = ("hello/hello", "echo/echo", "report/report")

#: Final Prefect state types.
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prefect_env(home: Path, api_url: str | None = None, **extra: str) -> dict[str, str]:
    """A clean environment for Prefect processes: no inherited PREFECT_* settings, a private
    PREFECT_HOME, no telemetry, fast runner polling."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_UI_ENABLED="false",
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        PREFECT_LOGGING_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


class Process(Supervised):
    """A child process started now, in its own process group and stopped with its children
    (SIGTERM to the group, then SIGKILL after a grace period), appending to ``log_path``."""

    stop_group = True
    stop_timeout = 5.0

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path,
                 cwd: Path | None = None) -> None:
        super().__init__(name, log_path.parent, log_path.parent)
        self._workdir_for_start()
        self._spawn(argv, log_name=log_path.name, cwd=cwd, env=env, append=True)

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        assert self.proc is not None
        return self.proc

    @property
    def pid(self) -> int:
        return self.popen.pid


def wait_http(url: str, process: Process | None, timeout: float, what: str) -> httpx.Response:
    """Poll ``url`` until it answers 200; fail early (with the log) if ``process`` exits."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process is not None and not process.running:
            raise RuntimeError(f"{what} exited with {process.popen.returncode}:\n{process.log_tail()}")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return response
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            last = type(error).__name__
        time.sleep(0.25)
    tail = process.log_tail() if process else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s ({last}):\n{tail}")


# -- Prefect --------------------------------------------------------------------------------------


class PrefectServer:
    """``prefect server start`` on SQLite in a private PREFECT_HOME."""

    def __init__(self, workdir: Path, port: int | None = None, start_timeout: float = 90.0) -> None:
        self.home = workdir / "prefect-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        prefect = str(Path(sys.executable).with_name("prefect"))
        # Services a served flow does not need; fewer background writers to the SQLite file.
        quiet = {
            f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false"
            for name in ("SCHEDULER", "LATE_RUNS", "FOREMAN", "TRIGGERS", "REPOSSESSOR",
                         "PAUSE_EXPIRATIONS", "CANCELLATION_CLEANUP")
        }
        self.process = Process(
            "prefect-server",
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port), "--no-ui"],
            prefect_env(self.home, **quiet),
            workdir / "prefect-server.log",
        )
        try:
            wait_http(f"{self.api_url}/health", self.process, start_timeout, "prefect server")
        except BaseException:
            self.process.stop()
            raise

    def stop(self) -> None:
        self.process.stop()


class ServedFlows:
    """The example flows served with ``serve()`` (no work pool), runs polled every second."""

    def __init__(self, workdir: Path, server: PrefectServer,
                 deployments: Sequence[str] = EXAMPLE_DEPLOYMENTS,
                 flows_file: Path = EXAMPLE_FLOWS, start_timeout: float = 60.0,
                 env: Mapping[str, str] | None = None) -> None:
        self.api_url = server.api_url
        self.process = Process(
            "served-flows",
            [sys.executable, str(flows_file)],
            prefect_env(server.home, server.api_url, **dict(env or {})),
            workdir / "served-flows.log",
            cwd=flows_file.parent,
        )
        try:
            for name in deployments:
                wait_http(f"{self.api_url}/deployments/name/{name}", self.process, start_timeout,
                          f"deployment {name}")
        except BaseException:
            self.process.stop()
            raise

    def stop(self) -> None:
        self.process.stop()


def read_run(api_url: str, run_id: str) -> dict[str, Any]:
    response = httpx.get(f"{api_url}/flow_runs/{run_id}", timeout=10.0)
    response.raise_for_status()
    return response.json()


def wait_for_run(api_url: str, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the Prefect API until the run reaches a final state; return the run."""
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = read_run(api_url, run_id)
        if (run.get("state") or {}).get("type") in FINAL_STATES:
            return run
        time.sleep(0.5)
    raise TimeoutError(f"run {run_id} still {(run.get('state') or {}).get('type')} after {timeout} s")


# -- assertions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallerIdentity:
    """A caller as the filter would describe it after verifying the caller's token."""

    sub: str
    idp: str = "https://idp.example.com/realms/main"
    provider: str = "main"
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    tenant: str | None = None
    #: How the caller's token was bound to its sender: ``none``, ``dpop`` or ``mtls``.
    binding: str = "none"


@dataclass
class AssertionMinter:
    """Signs assertions exactly as the identity filter does (HS256 or EdDSA, with a ``kid``)."""

    issuer: str = "identity-filter"
    audience: str = "prefect-dispatcher"
    lifetime_seconds: int = 60
    #: The shared secret; its UTF-8 bytes are the HMAC key, as for DISPATCHER_HS256_SECRET.
    hs256_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    hs256_kid: str = "hs-1"
    ed25519_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    ed25519_kid: str = "ed-1"

    def claims(self, identity: CallerIdentity, method: str, path: str,
               request_id: str | None = None, now: int | None = None) -> dict[str, Any]:
        now = int(time.time()) if now is None else now
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.lifetime_seconds,
            "jti": uuid.uuid4().hex,
            "v": 1,
            "sub": identity.sub,
            "idp": identity.idp,
            "provider": identity.provider,
            "roles": list(identity.roles),
            "groups": list(identity.groups),
            "scopes": list(identity.scopes),
            "req": {"method": method, "path": path.split("?", 1)[0],
                    "id": request_id or str(uuid.uuid4())},
            "binding": identity.binding,
        }
        if identity.tenant is not None:
            claims["tenant"] = identity.tenant
        return claims

    def sign(self, claims: Mapping[str, Any], algorithm: str = "EdDSA", kid: str | None = None,
             key: Any = None) -> str:
        if algorithm == "HS256":
            signing_key = key if key is not None else self.hs256_secret.encode()
            kid = kid or self.hs256_kid
        elif algorithm == "EdDSA":
            signing_key = key if key is not None else self.ed25519_key
            kid = kid or self.ed25519_kid
        else:
            raise ValueError(f"the filter signs with HS256 or EdDSA, not {algorithm}")
        return SigningKey(signing_key, kid, algorithm).token(claims, typ="JWT")

    def mint(self, identity: CallerIdentity, method: str, path: str, *, algorithm: str = "EdDSA",
             request_id: str | None = None, **overrides: Any) -> str:
        """An assertion for ``method path``; ``overrides`` replace claims (``None`` removes one)."""
        return self.sign(merged(self.claims(identity, method, path, request_id), overrides), algorithm)

    def public_jwks(self) -> dict[str, Any]:
        return SigningKey(self.ed25519_key, self.ed25519_kid, "EdDSA").jwks()

    def dispatcher_env(self, workdir: Path) -> dict[str, str]:
        """Dispatcher settings trusting this minter: its HS256 secret and its EdDSA JWKS file."""
        jwks_file = workdir / "assertion-jwks.json"
        jwks_file.write_text(json.dumps(self.public_jwks()))
        return {
            "DISPATCHER_HS256_SECRET": self.hs256_secret,
            "DISPATCHER_HS256_KID": self.hs256_kid,
            "DISPATCHER_JWKS_FILE": str(jwks_file),
            "DISPATCHER_ASSERTION_ISSUER": self.issuer,
            "DISPATCHER_AUDIENCE": self.audience,
        }


# -- dispatcher -----------------------------------------------------------------------------------


class DispatcherProcess:
    """``python -m identity_dispatcher`` with the given settings; decisions logged to a file."""

    def __init__(self, workdir: Path, api_url: str, policy_file: Path, env: Mapping[str, str],
                 name: str = "dispatcher", port: int | None = None, start_timeout: float = 30.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("PREFECT_", "DISPATCHER_"))}
        full_env.update(PREFECT_API_URL=api_url, DISPATCHER_POLICY_FILE=str(policy_file),
                        PYTHONUNBUFFERED="1")
        full_env.update(env)
        self.process = Process(
            name,
            [sys.executable, "-m", "identity_dispatcher", "--host", "127.0.0.1", "--port", str(self.port)],
            full_env,
            self.log_path,
        )
        try:
            wait_http(f"{self.url}/healthz", self.process, start_timeout, name)
        except BaseException:
            self.process.stop()
            raise

    def decisions(self) -> list[dict[str, Any]]:
        """The decision lines logged so far."""
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == "decision":
                    lines.append(record)
        return lines

    def stop(self) -> None:
        self.process.stop(timeout=3.0)


class DirectCaller:
    """Reaches the dispatcher directly, carrying an assertion minted like the filter's.

    The same interface can be implemented by a caller that goes through the real gateway
    (sending the caller's token; the filter then mints the assertion): tests written against
    ``caller.request(...)`` run unchanged both ways.
    """

    name = "direct"
    #: The refusal of a request sent without identity.
    unauthenticated_reason = "assertion_missing"

    def __init__(self, base_url: str, minter: AssertionMinter, algorithm: str = "EdDSA",
                 assertion_header: str = "x-identity-assertion") -> None:
        self.base_url = base_url
        self.minter = minter
        self.algorithm = algorithm
        self.assertion_header = assertion_header
        self.http = httpx.Client(base_url=base_url, timeout=30.0)

    def request(self, method: str, path: str, *, identity: CallerIdentity | None,
                json: Any = None, headers: Mapping[str, str] | None = None,
                request_id: str | None = None) -> httpx.Response:
        sent = dict(headers or {})
        if identity is not None:
            sent[self.assertion_header] = self.minter.mint(
                identity, method, path, algorithm=self.algorithm, request_id=request_id
            )
        return self.http.request(method, path, json=json, headers=sent)

    def close(self) -> None:
        self.http.close()


@dataclass
class TokenIssuer:
    """A test identity provider: an Ed25519 signing key, its JWKS (inline in the filter's
    configuration), and tokens describing a :class:`CallerIdentity` (``iss`` = its ``idp``).

    Claims: ``sub``, ``roles``, ``groups``, ``scope`` (space-separated), ``tenant`` (when set),
    ``aud``, ``iat``, ``exp``, ``jti``; map them with
    :func:`identity_devkit.gateway.provider`'s defaults.
    """

    audience: str = "prefect-gateway"
    kid: str = "idp-1"
    lifetime_seconds: int = 300
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.key, self.kid, "EdDSA")

    def jwks(self) -> dict[str, Any]:
        return self.signing_key.jwks()

    def claims(self, identity: CallerIdentity, now: int | None = None) -> dict[str, Any]:
        now = int(time.time()) if now is None else now
        claims: dict[str, Any] = {
            "iss": identity.idp, "aud": self.audience, "sub": identity.sub,
            "iat": now, "exp": now + self.lifetime_seconds, "jti": uuid.uuid4().hex,
            "roles": list(identity.roles), "groups": list(identity.groups),
            "scope": " ".join(identity.scopes),
        }
        if identity.tenant is not None:
            claims["tenant"] = identity.tenant
        return claims

    def token(self, identity: CallerIdentity, **overrides: Any) -> str:
        """A token for ``identity``; ``overrides`` replace claims (``None`` removes one)."""
        return self.signing_key.token(merged(self.claims(identity), overrides), typ="JWT")


class GatewayCaller:
    """Reaches the dispatcher through the real gateway (Envoy with the identity filter): sends
    the caller's token, signed by a :class:`TokenIssuer`; the filter verifies it and mints the
    assertion. Same interface as :class:`DirectCaller`.

    ``gateways`` maps an assertion algorithm to the base URL of a gateway signing with it
    (``{"EdDSA": ..., "HS256": ...}``); :attr:`algorithm` picks the one used. ``request_id`` is
    sent as ``x-request-id``, which the filter binds into the assertion (``req.id``).
    """

    name = "envoy"
    unauthenticated_reason = "token_missing"

    def __init__(self, gateways: Mapping[str, str], issuer: TokenIssuer, algorithm: str = "EdDSA",
                 request_id_header: str = "x-request-id") -> None:
        if algorithm not in gateways:
            raise ValueError(f"no gateway signs with {algorithm}")
        self.gateways = dict(gateways)
        self.issuer = issuer
        self.algorithm = algorithm
        self.request_id_header = request_id_header
        self.http = httpx.Client(timeout=30.0)

    @property
    def base_url(self) -> str:
        return self.gateways[self.algorithm]

    def token(self, identity: CallerIdentity) -> str:
        return self.issuer.token(identity)

    def request(self, method: str, path: str, *, identity: CallerIdentity | None,
                json: Any = None, headers: Mapping[str, str] | None = None,
                request_id: str | None = None) -> httpx.Response:
        sent = dict(headers or {})
        if identity is not None:
            sent["authorization"] = f"Bearer {self.token(identity)}"
        if request_id is not None:
            sent[self.request_id_header] = request_id
        return self.http.request(method, self.base_url + path, json=json, headers=sent)

    def close(self) -> None:
        self.http.close()


class Chain:
    """Prefect server + served example flows + dispatcher, started in order, stopped in reverse."""

    def __init__(self, workdir: Path, policy_file: Path = EXAMPLE_POLICY,
                 dispatcher_env: Mapping[str, str] | None = None,
                 minter: AssertionMinter | None = None, dispatcher_port: int | None = None,
                 prefect_port: int | None = None) -> None:
        self.workdir = workdir
        self.minter = minter or AssertionMinter()
        self.prefect: PrefectServer | None = None
        self.flows: ServedFlows | None = None
        self.dispatcher: DispatcherProcess | None = None
        try:
            self.prefect = PrefectServer(workdir, port=prefect_port)
            self.flows = ServedFlows(workdir, self.prefect)
            env = dict(dispatcher_env) if dispatcher_env is not None else self.minter.dispatcher_env(workdir)
            self.dispatcher = DispatcherProcess(workdir, self.prefect.api_url, policy_file, env,
                                                port=dispatcher_port)
        except BaseException:
            self.stop()
            raise

    @property
    def api_url(self) -> str:
        assert self.prefect is not None
        return self.prefect.api_url

    def stop(self) -> None:
        for part in (self.dispatcher, self.flows, self.prefect):
            if part is not None:
                part.stop()

    def __enter__(self) -> "Chain":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

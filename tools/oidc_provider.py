"""A real OpenID provider for tests: oidc-provider (Node, tools/oidc-provider/, installed by
``make oidc-provider``) on 127.0.0.1, started as a subprocess and driven from Python.

    from oidc_provider import Client, OidcProvider
    api = "api://orders"
    reader = Client.basic("reader", scope="orders:read")          # client_secret_basic
    robot = Client.private_key_jwt("robot", scope="orders:read orders:write")   # RFC 7523
    with OidcProvider(clients=[reader, robot], resources={api: "orders:read orders:write"}) as op:
        op.issuer                    # http://127.0.0.1:<port>; op.discovery_url, op.jwks_url
        op.token(robot, scope="orders:write", resource=api)   # a JWT access token, aud = api
        kid = op.rotate_publish()    # a new key in the JWKS, tokens still signed with the old one
        op.rotate_sign(kid)          # tokens signed with the new key
        op.rotate_drop(old_kid)      # the old key leaves the JWKS

Access tokens are JWTs (``typ: at+jwt``) with ``iss``, ``sub`` = ``client_id`` = the client,
``aud`` = the resource's audience (the resource indicator unless set), ``scope`` (the requested
scopes the resource has), ``iat``, ``exp``, ``jti``, plus the client's ``extra_claims``.
A client may request only scopes in its ``scope`` (``OidcError`` ``invalid_scope`` otherwise).

The server's configuration, control endpoints and log format are described at the top of
tools/oidc-provider/server.mjs. Its configuration (config.json) and log (server.log, stderr)
are in a fresh work directory under .work/oidc-provider/. The server exits when this process
does (its stdin closes). Needs node on PATH (or ``$NODE``); PyJWT and cryptography for
private_key_jwt (both in requirements.txt).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import devkit_path  # noqa: F401  (identity_devkit on sys.path)
from identity_devkit import supervised

REPO = Path(__file__).resolve().parent.parent
#: Starts tried before giving up (see ``OidcProvider.start``).
START_ATTEMPTS = 3
SERVER_DIR = REPO / "tools" / "oidc-provider"
SERVER = SERVER_DIR / "server.mjs"
DEFAULT_WORK = REPO / ".work" / "oidc-provider"
CONTROL = "/_control"
INSTALL_HINT = "run `make oidc-provider` (npm ci in tools/oidc-provider)"


class OidcProviderError(RuntimeError):
    """The server is not installed, did not start, or a control call failed."""


class OidcError(Exception):
    """The provider refused a token request (RFC 6749 section 5.2 error response)."""

    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body
        self.error = body.get("error") if isinstance(body, dict) else None
        self.description = body.get("error_description") if isinstance(body, dict) else None
        super().__init__(f"{status} {self.error}: {self.description}")


def installed() -> bool:
    """True when ``make oidc-provider`` has installed the server's packages."""
    return (SERVER_DIR / "node_modules" / "oidc-provider" / "package.json").is_file()


def find_node() -> str:
    node = os.environ.get("NODE") or shutil.which("node")
    if not node:
        raise OidcProviderError("node not found on PATH (or set $NODE): the OpenID provider runs on Node.js")
    return node


# ---------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------

@dataclass
class Client:
    """A client of the provider. ``secret``: client_secret_basic; ``key`` (a private key of the
    cryptography package): private_key_jwt, its public key registered as the client's JWKS.
    ``scope``: the scopes it may request (space-separated; ``None``: any). ``extra_claims``:
    added to its access tokens (nested objects and dotted names allowed).
    ``certificate_bound``: its tokens are bound to the client certificate it sends in the
    ``x-client-cert`` header (URL-encoded PEM), RFC 8705 ``cnf["x5t#S256"]``. DPoP-bound tokens
    (RFC 9449 ``cnf.jkt``) need nothing here: a token request with a ``DPoP`` proof gets one."""

    client_id: str
    secret: str | None = None
    key: Any = None
    key_alg: str = "RS256"
    key_id: str | None = None
    scope: str | None = None
    extra_claims: dict[str, Any] | None = None
    auth_method: str | None = None
    certificate_bound: bool = False

    @classmethod
    def basic(cls, client_id: str, *, scope: str | None = None, secret: str | None = None,
              extra_claims: dict[str, Any] | None = None) -> "Client":
        """A client authenticating with client_secret_basic (a random secret unless given)."""
        return cls(client_id, secret=secret or secrets.token_urlsafe(24), scope=scope,
                   extra_claims=extra_claims)

    @classmethod
    def private_key_jwt(cls, client_id: str, *, scope: str | None = None, key: Any = None,
                        alg: str = "RS256", extra_claims: dict[str, Any] | None = None) -> "Client":
        """A client authenticating with a JWT signed by its own key (RFC 7523); a fresh RSA-2048
        (RS256/PS256) or P-256 (ES256) key unless given."""
        if key is None:
            from cryptography.hazmat.primitives.asymmetric import ec, rsa
            key = (ec.generate_private_key(ec.SECP256R1()) if alg == "ES256"
                   else rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return cls(client_id, key=key, key_alg=alg, key_id=f"{client_id}-key", scope=scope,
                   extra_claims=extra_claims)

    @property
    def method(self) -> str:
        if self.auth_method:
            return self.auth_method
        return "private_key_jwt" if self.key is not None else "client_secret_basic"

    def public_jwks(self) -> dict[str, Any]:
        import jwt  # PyJWT
        from cryptography.hazmat.primitives.asymmetric import ec
        algorithm = jwt.algorithms.ECAlgorithm if isinstance(self.key, ec.EllipticCurvePrivateKey) \
            else jwt.algorithms.RSAAlgorithm
        public = algorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.key_id, "alg": self.key_alg, "use": "sig"}]}

    def metadata(self) -> dict[str, Any]:
        """This client in the server's configuration."""
        out: dict[str, Any] = {"client_id": self.client_id, "token_endpoint_auth_method": self.method}
        if self.secret is not None:
            out["client_secret"] = self.secret
        if self.key is not None:
            out["jwks"] = self.public_jwks()
            out["token_endpoint_auth_signing_alg"] = self.key_alg
        if self.scope is not None:
            out["scope"] = self.scope
        if self.extra_claims is not None:
            out["extra_claims"] = self.extra_claims
        if self.certificate_bound:
            out["tls_client_certificate_bound_access_tokens"] = True
        return out

    def assertion(self, audience: str, *, lifetime: int = 60) -> str:
        """A client assertion (RFC 7523 section 3) for ``audience`` (the token endpoint)."""
        import jwt  # PyJWT
        if self.key is None:
            raise ValueError(f"client {self.client_id} has no key")
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience,
                  "jti": uuid.uuid4().hex, "iat": now, "exp": now + lifetime}
        return jwt.encode(claims, self.key, algorithm=self.key_alg, headers={"kid": self.key_id})


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------

def _resource_entry(value: str | Mapping[str, Any]) -> dict[str, Any]:
    return {"scope": value} if isinstance(value, str) else dict(value)


class OidcProvider(supervised.Supervised):
    """oidc-provider on 127.0.0.1 (``start()`` / ``stop()`` / context manager).

    Arguments:
        clients: ``Client`` objects (or raw client dicts of the server's configuration).
        resources: ``{resource indicator: "scope1 scope2"}`` or ``{indicator: {"scope": ...,
            "audience": ..., "access_token_ttl": seconds}}`` (default TTL 300 s).
        alg: the access tokens' signing algorithm (RS256, PS256, ES256, ES384, EdDSA).
        jwks_max_age: ``Cache-Control: public, max-age`` of the JWKS (``None``: no header).
        default_resource: the resource of a token request that names none.
        port: 0 for a free port. name, workdir: where config.json and server.log go.
    """

    error = OidcProviderError
    stop_timeout = 5.0

    def __init__(self, *, clients: Any = (), resources: Mapping[str, Any] | None = None,
                 alg: str = "RS256", jwks_max_age: int | None = None,
                 default_resource: str | None = None, port: int = 0, name: str = "oidc",
                 workdir: str | os.PathLike[str] | None = None, startup_timeout: float = 30.0):
        self.clients: dict[str, Client] = {}
        raw_clients: list[dict[str, Any]] = []
        for client in clients:
            if isinstance(client, Client):
                self.clients[client.client_id] = client
                raw_clients.append(client.metadata())
            else:
                raw_clients.append(dict(client))
        self.config: dict[str, Any] = {
            "port": port,
            "alg": alg,
            "jwks_max_age": jwks_max_age,
            "resources": {k: _resource_entry(v) for k, v in (resources or {}).items()},
            "clients": raw_clients,
            "exit_with_stdin": True,
        }
        if default_resource is not None:
            self.config["default_resource"] = default_resource
        super().__init__(name, workdir, DEFAULT_WORK)
        self.startup_timeout = startup_timeout
        self.port = 0
        self.issuer = ""

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "OidcProvider":
        """Start the server and wait for its ready line. Raises OidcProviderError (naming
        ``make oidc-provider`` when the packages are missing, with the log tail otherwise)."""
        if not installed():
            raise OidcProviderError(f"oidc-provider is not installed in {SERVER_DIR}: {INSTALL_HINT}")
        node = find_node()
        workdir = self._workdir_for_start()
        config_path = workdir / "config.json"
        config_path.write_text(json.dumps(self.config, indent=2))
        # oidc-provider on this node (it asks for 22; the machine's may be older) has, rarely,
        # stalled before listening, with no error: such a start is stopped and made again, up
        # to START_ATTEMPTS times, each with ``startup_timeout``; the last failure is raised.
        for attempt in range(1, START_ATTEMPTS + 1):
            self._spawn([node, str(SERVER), str(config_path)], log_name="server.log",
                        cwd=SERVER_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        append=attempt > 1)
            try:
                ready = self._read_ready_line()
                break
            except OidcProviderError:
                self.stop()
                if attempt == START_ATTEMPTS or self.proc is None or self.proc.returncode not in (
                        -signal.SIGTERM, -signal.SIGKILL):
                    raise
            except BaseException:
                self.stop()
                raise
        self.port = int(ready["port"])
        self.issuer = ready["issuer"]
        return self

    def _read_ready_line(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        fd = self.proc.stdout.fileno()
        buffer = b""
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OidcProviderError(f"no ready line after {self.startup_timeout}s{self._tail_note()}")
            readable, _, _ = select.select([fd], [], [], min(left, 0.2))
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.proc.wait(timeout=5)
                    raise OidcProviderError(f"the server exited with status {self.proc.returncode}"
                                            f"{self._tail_note()}")
                buffer += chunk
        line = buffer.split(b"\n", 1)[0]
        try:
            ready = json.loads(line)
        except ValueError as error:
            raise OidcProviderError(f"unexpected first line {line!r}{self._tail_note()}") from error
        if not ready.get("ready"):
            raise OidcProviderError(f"unexpected first line {line!r}")
        return ready

    def __enter__(self) -> "OidcProvider":
        return self.start()

    def count(self, path: str, method: str = "GET") -> int:
        """How many ``method path`` requests the server answered so far (from its log)."""
        needle = f" {method} {path} "
        return sum(1 for line in self.log_text().splitlines() if needle in line and " control " not in line)

    def wait_for_count(self, path: str, at_least: int, *, method: str = "GET", timeout: float = 10.0) -> int:
        """Wait until ``method path`` was answered ``at_least`` times; returns the count."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.count(path, method)
            if seen >= at_least:
                return seen
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} {path} answered {seen} times, wanted {at_least}")
            time.sleep(0.05)

    def __repr__(self) -> str:
        return f"OidcProvider({self.issuer or 'not started'}, log={self.log_path})"

    # -- endpoints ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    def _http(self, method: str, path: str, *, body: bytes | None = None,
              headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.base_url + path, data=body, method=method,
                                         headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()

    def get_json(self, path: str) -> Any:
        status, _, body = self._http("GET", path)
        if status != 200:
            raise OidcProviderError(f"GET {path}: {status} {body[:300]!r}")
        return json.loads(body)

    def discovery(self) -> dict[str, Any]:
        return self.get_json("/.well-known/openid-configuration")

    def jwks(self) -> dict[str, Any]:
        return self.get_json("/jwks")

    def jwks_headers(self) -> dict[str, str]:
        status, headers, _ = self._http("GET", "/jwks")
        if status != 200:
            raise OidcProviderError(f"GET /jwks: {status}")
        return headers

    # -- tokens ---------------------------------------------------------------------------------

    def _client(self, client: Client | str) -> Client:
        if isinstance(client, Client):
            return client
        try:
            return self.clients[client]
        except KeyError:
            raise KeyError(f"unknown client {client!r} (known: {sorted(self.clients)})") from None

    def token_response(self, client: Client | str, *, scope: str | None = None,
                       resource: str | None = None, method: str | None = None) -> dict[str, Any]:
        """The token endpoint's JSON answer to a client-credentials request. ``method``
        overrides the client's authentication method (``client_secret_basic``,
        ``client_secret_post``, ``private_key_jwt``). Raises OidcError when refused."""
        c = self._client(client)
        method = method or c.method
        form: dict[str, str] = {"grant_type": "client_credentials"}
        if scope is not None:
            form["scope"] = scope
        if resource is not None:
            form["resource"] = resource
        headers = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
        if method == "client_secret_basic":
            # RFC 6749 section 2.3.1: id and secret are form-encoded before Basic encoding.
            pair = f"{urllib.parse.quote(c.client_id, safe='')}:{urllib.parse.quote(c.secret or '', safe='')}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif method == "client_secret_post":
            form.update(client_id=c.client_id, client_secret=c.secret or "")
        elif method == "private_key_jwt":
            form.update(client_id=c.client_id,
                        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        client_assertion=c.assertion(self.token_url))
        else:
            raise ValueError(f"unknown client authentication method {method!r}")
        status, _, body = self._http("POST", "/token", body=urllib.parse.urlencode(form).encode(),
                                     headers=headers)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {"error": "not_json", "error_description": body[:300].decode(errors="replace")}
        if status != 200:
            raise OidcError(status, answer)
        return answer

    def token(self, client: Client | str, *, scope: str | None = None, resource: str | None = None,
              method: str | None = None) -> str:
        """A JWT access token for ``client`` (client credentials grant) for ``resource``."""
        return self.token_response(client, scope=scope, resource=resource, method=method)["access_token"]

    # -- control --------------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        status, _, answer = self._http(method, CONTROL + path, body=data,
                                       headers={"content-type": "application/json"})
        if status != 200:
            raise OidcProviderError(f"{method} {CONTROL}{path}: {status} {answer[:300]!r}")
        return json.loads(answer)

    def state(self) -> dict[str, Any]:
        """``{"issuer", "alg", "signing_kid", "kids", "jwks_max_age"}``."""
        return self._control("GET", "/state")

    @property
    def signing_kid(self) -> str:
        return self.state()["signing_kid"]

    def kids(self) -> list[str]:
        """The kids of the JWKS, the signing key's first."""
        return self.state()["kids"]

    def rotate_publish(self, kid: str | None = None, alg: str | None = None) -> str:
        """Rotation step 1: a new key joins the JWKS; tokens are still signed with the current
        one. Returns the new kid."""
        body: dict[str, Any] = {}
        if kid is not None:
            body["kid"] = kid
        if alg is not None:
            body["alg"] = alg
        return self._control("POST", "/keys", body)["kid"]

    def rotate_sign(self, kid: str) -> None:
        """Rotation step 2: tokens are signed with ``kid`` from now on."""
        self._control("POST", f"/keys/{urllib.parse.quote(kid, safe='')}/sign")

    def rotate_drop(self, kid: str) -> None:
        """Rotation step 3: ``kid`` leaves the JWKS (the signing key cannot)."""
        self._control("DELETE", f"/keys/{urllib.parse.quote(kid, safe='')}")

    def set_jwks_max_age(self, seconds: int | None) -> None:
        """``Cache-Control: public, max-age=<seconds>`` on the JWKS from now on (``None``: none)."""
        self._control("PUT", "/jwks-max-age", {"seconds": seconds})

    def set_extra_claims(self, client: Client | str, claims: dict[str, Any]) -> None:
        """The claims added to ``client``'s access tokens from now on."""
        client_id = client.client_id if isinstance(client, Client) else client
        self._control("PUT", f"/clients/{urllib.parse.quote(client_id, safe='')}/extra-claims", claims)

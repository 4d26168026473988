"""Short-lived tokens for calls through the gateway: where they come from, and a cache that
keeps one valid at all times.

This module imports only the standard library, httpx, PyJWT and cryptography (never Prefect),
so any Python worker can use it (see README.md, "Flows calling through the gateway").

Token sources, each returning an :class:`AccessToken` (the token and its expiry):

- :class:`ClientCredentials`: the OAuth 2.0 client-credentials grant (RFC 6749 section 4.4)
  at the token endpoint named by the IdP's OpenID discovery document, the client
  authenticating with ``client_secret_basic`` (a secret) or ``private_key_jwt`` (RFC 7523: a JWT
  signed by its own key, no shared secret); requested scopes, resource (RFC 8707) and audience.
  With ``dpop=True`` it asks for DPoP-bound tokens (RFC 9449): each token comes with its own
  :class:`DpopKey`, a P-256 key pair made for it in memory, and every request with the token
  carries a fresh proof signed by that key (:func:`dpop_headers`).
- :class:`ProjectedTokenFile`: a Kubernetes projected service-account token, read from its file
  again whenever the kubelet rotates it.
- :class:`StaticToken`: a fixed token (legacy APIs).

:class:`TokenCache` holds the current token in memory only and renews it in the background of
use: the first call after about 80 % of the token's lifetime (with jitter) starts one refresh
while callers keep using the current token; only one refresh runs at a time per cache, however
many threads ask. When the IdP cannot be reached, the current token is used until it really
expires; then :class:`TokenUnavailable` (retryable) is raised.

Tokens never appear in ``repr``/``str`` of these objects, in log messages or in exceptions, and
an :class:`AccessToken` refuses to be pickled (so it cannot end up in stored task results).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence
from urllib.parse import quote, urlencode

import httpx
import jwt  # PyJWT

log = logging.getLogger(__name__)

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: Token endpoint answers worth trying again later (the IdP is overloaded or restarting).
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


# -- errors ---------------------------------------------------------------------------------------


class TokenError(Exception):
    """No token could be obtained. ``retryable``: whether trying again later may help."""

    retryable = False

    def __init__(self, message: str, *, source: str | None = None, error: str | None = None) -> None:
        #: What the source is (``client credentials for flow-robot at http://...``), no secrets.
        self.source = source
        #: The OAuth error code of a refusal (``invalid_client``, ``invalid_scope``, ...).
        self.error = error
        super().__init__(f"{message} ({source})" if source else message)

    def __reduce__(self):  # keep the fields when Prefect pickles the exception into a state
        return (_rebuild_error, (type(self), self.args[0], self.source, self.error))


def _rebuild_error(cls, message, source, error):
    out = cls.__new__(cls)
    Exception.__init__(out, message)
    out.source, out.error = source, error
    return out


class TokenUnavailable(TokenError):
    """The IdP (or the token file) cannot be reached and no unexpired token is left. Retryable."""

    retryable = True


class TokenRefused(TokenError):
    """The IdP refused the request (bad client, secret, key or scope). Not retryable."""


# -- the token --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AccessToken:
    """An access token and when it expires (Unix seconds). ``repr``/``str`` never show it."""

    value: str = field(repr=False)
    expires_at: float
    obtained_at: float = field(default_factory=time.time)
    #: The key the token is bound to (a DPoP-bound token, ``token_type: DPoP``), or None (a
    #: bearer token). It lives and dies with the token: never stored, never pickled.
    dpop_key: "DpopKey | None" = field(default=None, repr=False, compare=False)

    @property
    def token_type(self) -> str:
        """``DPoP`` for a DPoP-bound token, else ``Bearer``: the ``Authorization`` scheme."""
        return "DPoP" if self.dpop_key is not None else "Bearer"

    @property
    def lifetime(self) -> float:
        return max(0.0, self.expires_at - self.obtained_at)

    def expires_in(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)

    @property
    def fingerprint(self) -> str:
        """A short hash to tell tokens apart in logs (not the token, not reversible)."""
        return hashlib.sha256(self.value.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        left = self.expires_in()
        bound = f", DPoP-bound to {self.dpop_key.thumbprint[:12]}" if self.dpop_key is not None else ""
        return f"AccessToken(<redacted {self.fingerprint}>{bound}, expires in {left:.0f} s)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("an AccessToken is never pickled (it would be stored with results)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AccessToken) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it (the gateway verifies), or None."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


# -- DPoP (RFC 9449) ----------------------------------------------------------------------------------

#: The only proof algorithm used here: ECDSA on P-256 with SHA-256.
DPOP_ALGORITHM = "ES256"
#: The header carrying a proof, and the one a server sends a nonce in.
DPOP_HEADER = "dpop"
DPOP_NONCE_HEADER = "dpop-nonce"
#: The error with which a server asks for a proof with its nonce.
USE_DPOP_NONCE = "use_dpop_nonce"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def dpop_htu(url: str | httpx.URL) -> str:
    """The ``htu`` of a proof: the request's URL without query and fragment (scheme and host
    lower-cased, a default port left out, as httpx normalizes them)."""
    return str(httpx.URL(str(url)).copy_with(query=None, fragment=None))


def access_token_hash(token: str) -> str:
    """``ath``: base64url of the SHA-256 of the access token (RFC 9449 section 4.2)."""
    return _b64url(hashlib.sha256(token.encode("ascii")).digest())


class DpopKey:
    """A DPoP key pair (ES256, P-256), generated in memory; the private key never leaves this
    object (no export, no pickling, ``repr`` shows the public thumbprint only).

    :meth:`proof` signs a proof JWT: header ``{"typ": "dpop+jwt", "alg": "ES256", "jwk": <the
    public key>}``, claims ``htm``, ``htu``, ``iat``, a random ``jti`` and, with an access
    token, ``ath``; ``nonce`` when the server asked for one."""

    algorithm = DPOP_ALGORITHM

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self._key = ec.generate_private_key(ec.SECP256R1())
        numbers = self._key.public_key().public_numbers()
        self._jwk = {"kty": "EC", "crv": "P-256", "x": _b64url(numbers.x.to_bytes(32, "big")),
                     "y": _b64url(numbers.y.to_bytes(32, "big"))}
        canonical = json.dumps({k: self._jwk[k] for k in ("crv", "kty", "x", "y")},
                               separators=(",", ":"), sort_keys=True)
        #: RFC 7638 JWK SHA-256 thumbprint (base64url): the token's ``cnf.jkt``.
        self.thumbprint = _b64url(hashlib.sha256(canonical.encode()).digest())

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (``kty``, ``crv``, ``x``, ``y``): no private member."""
        return dict(self._jwk)

    def proof(self, method: str, url: str | httpx.URL, *, access_token: str | None = None,
              nonce: str | None = None, now: float | None = None) -> str:
        """A new proof for one request (a new ``jti`` each time: never reuse one)."""
        claims: dict[str, Any] = {"htm": method.upper(), "htu": dpop_htu(url),
                                  "iat": int(time.time() if now is None else now),
                                  "jti": _b64url(os.urandom(16))}
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        return jwt.encode(claims, self._key, algorithm=DPOP_ALGORITHM,
                          headers={"typ": "dpop+jwt", "jwk": self.public_jwk})

    def __repr__(self) -> str:
        return f"DpopKey(ES256, jkt {self.thumbprint})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a DPoP key is never pickled (it would leave the worker's memory)")


def dpop_headers(token: AccessToken, method: str, url: str | httpx.URL,
                 nonce: str | None = None) -> dict[str, str]:
    """The headers of one request with ``token``: ``Authorization: DPoP <token>`` and a fresh
    ``DPoP`` proof for ``method`` and ``url`` (with ``ath``) when the token is DPoP-bound,
    ``Authorization: Bearer <token>`` otherwise. Call it again for every request, retries
    included: a proof is good for one request only."""
    if token.dpop_key is None:
        return {"authorization": f"Bearer {token.value}"}
    return {"authorization": f"DPoP {token.value}",
            DPOP_HEADER: token.dpop_key.proof(method, url, access_token=token.value, nonce=nonce)}


def nonce_challenge(response: httpx.Response) -> str | None:
    """The nonce a server asks the next proof to carry (RFC 9449 section 8/9): a ``DPoP-Nonce``
    header on a ``400 use_dpop_nonce`` from a token endpoint or a ``401`` whose
    ``WWW-Authenticate`` names ``use_dpop_nonce``; else None."""
    nonce = response.headers.get(DPOP_NONCE_HEADER)
    if not nonce:
        return None
    if response.status_code == 401:
        return nonce if USE_DPOP_NONCE in response.headers.get("www-authenticate", "") else None
    if response.status_code == 400:
        try:
            body = response.json()
        except ValueError:
            return None
        return nonce if isinstance(body, dict) and body.get("error") == USE_DPOP_NONCE else None
    return None


class TokenSource(Protocol):
    """Anything that can get a fresh token. ``describe()`` names it without secrets."""

    def fetch(self) -> AccessToken: ...

    def describe(self) -> str: ...


# -- client credentials ---------------------------------------------------------------------------


def load_private_key(pem: bytes | str | os.PathLike[str], password: bytes | None = None) -> Any:
    """A PEM private key (bytes, or a path to a PEM file) as a cryptography key object."""
    from cryptography.hazmat.primitives import serialization

    data = pem if isinstance(pem, bytes) else Path(pem).read_bytes()
    return serialization.load_pem_private_key(data, password=password)


def signing_algorithm(key: Any) -> str:
    """The JWS algorithm for a private key: RS256 (RSA), ES256/ES384/ES512 (EC), EdDSA."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}.get(key.curve.key_size, "ES256")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise TypeError(f"unsupported private key type {type(key).__name__}")


class ClientCredentials:
    """The OAuth 2.0 client-credentials grant (RFC 6749 section 4.4).

    Arguments:
        client_id: the client.
        issuer: the IdP; its discovery document is ``<issuer>/.well-known/openid-configuration``
            and must name the same ``issuer``. Or give ``discovery_url`` (or ``token_endpoint``).
        client_secret: ``client_secret_basic`` (a string, or a callable returning it, read at
            each request: e.g. a secret store lookup).
        private_key: ``private_key_jwt`` (RFC 7523): a cryptography private key, PEM bytes or a
            PEM file path (read at each request, so a rotated key file is picked up). The client
            signs a short assertion with it (``iss`` = ``sub`` = client id, ``aud`` = the token
            endpoint, ``jti``, 60 s), header ``kid`` = ``key_id`` when given.
        scopes: requested scopes (``scope``, space-separated). resource: RFC 8707 resource
            indicator(s). audience: the ``audience`` parameter some IdPs use instead.
        dpop: ask for DPoP-bound tokens (RFC 9449). Each token request makes a new
            :class:`DpopKey` and sends a proof of it (``htm`` POST, ``htu`` the token endpoint);
            the IdP binds the token to that key (``cnf.jkt``) and must answer ``token_type:
            DPoP`` (a bearer token instead is refused: :class:`TokenRefused`). The key is
            returned with the token (:attr:`AccessToken.dpop_key`) and dies with it. A token
            endpoint asking for a nonce (``400 use_dpop_nonce`` with ``DPoP-Nonce``) gets the
            request once more with it; the nonce is kept for the next requests.
        timeout: seconds per HTTP request. transport: an httpx transport (tests).
    """

    def __init__(self, client_id: str, *, issuer: str | None = None, discovery_url: str | None = None,
                 token_endpoint: str | None = None,
                 client_secret: str | Callable[[], str] | None = None,
                 private_key: Any = None, key_id: str | None = None,
                 signing_alg: str | None = None, scopes: Sequence[str] = (),
                 resource: str | Sequence[str] | None = None, audience: str | None = None,
                 dpop: bool = False,
                 timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        if not client_id:
            raise ValueError("client_id is required")
        if (client_secret is None) == (private_key is None):
            raise ValueError("give exactly one of client_secret (client_secret_basic) and "
                             "private_key (private_key_jwt)")
        if not (issuer or discovery_url or token_endpoint):
            raise ValueError("give issuer, discovery_url or token_endpoint")
        self.client_id = client_id
        self.issuer = issuer.rstrip("/") if issuer else None
        self.discovery_url = discovery_url or (
            f"{self.issuer}/.well-known/openid-configuration" if self.issuer else None)
        self._token_endpoint = token_endpoint
        self._secret = client_secret
        self._key = private_key
        self.key_id = key_id
        self.signing_alg = signing_alg
        self.scopes = tuple(scopes)
        self.resources = (resource,) if isinstance(resource, str) else tuple(resource or ())
        self.audience = audience
        self.dpop = dpop
        self._dpop_nonce: str | None = None
        self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)
        self._lock = threading.Lock()
        #: Token requests sent (answered or not).
        self.requests = 0

    @property
    def auth_method(self) -> str:
        return "private_key_jwt" if self._key is not None else "client_secret_basic"

    def describe(self) -> str:
        where = self.issuer or self.discovery_url or self._token_endpoint
        bound = ", DPoP" if self.dpop else ""
        return f"client credentials of {self.client_id} ({self.auth_method}{bound}) at {where}"

    def __repr__(self) -> str:
        return f"ClientCredentials({self.describe()}, scopes={list(self.scopes)})"

    def token_endpoint(self) -> str:
        """From the discovery document (fetched once; again after a failure)."""
        with self._lock:
            if self._token_endpoint:
                return self._token_endpoint
        try:
            answer = self._http.get(self.discovery_url, headers={"accept": "application/json"})
        except httpx.HTTPError as error:
            raise TokenUnavailable(f"discovery failed: {type(error).__name__}", source=self.describe()) from None
        if answer.status_code != 200:
            cls = TokenUnavailable if answer.status_code in TRANSIENT_STATUSES else TokenRefused
            raise cls(f"discovery answered {answer.status_code}", source=self.describe())
        try:
            document = answer.json()
        except ValueError:
            raise TokenRefused("the discovery document is not JSON", source=self.describe()) from None
        endpoint = document.get("token_endpoint") if isinstance(document, dict) else None
        if not isinstance(endpoint, str) or not endpoint:
            raise TokenRefused("the discovery document names no token_endpoint", source=self.describe())
        if self.issuer and str(document.get("issuer", "")).rstrip("/") != self.issuer:
            raise TokenRefused(f"the discovery document is for issuer {document.get('issuer')!r}",
                               source=self.describe())
        with self._lock:
            self._token_endpoint = endpoint
        return endpoint

    def _private_key(self) -> Any:
        if isinstance(self._key, (bytes, str, os.PathLike)):
            return load_private_key(self._key)
        return self._key

    def client_assertion(self, audience: str, lifetime: int = 60) -> str:
        key = self._private_key()
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience,
                  "jti": uuid.uuid4().hex, "iat": now, "exp": now + lifetime}
        headers = {"kid": self.key_id} if self.key_id else None
        return jwt.encode(claims, key, algorithm=self.signing_alg or signing_algorithm(key), headers=headers)

    def fetch(self) -> AccessToken:
        endpoint = self.token_endpoint()
        form: list[tuple[str, str]] = [("grant_type", "client_credentials")]
        if self.scopes:
            form.append(("scope", " ".join(self.scopes)))
        form.extend(("resource", r) for r in self.resources)
        if self.audience:
            form.append(("audience", self.audience))
        key = DpopKey() if self.dpop else None
        sent_at = time.time()
        answer = self._post_token(endpoint, form, key)
        if key is not None:
            nonce = nonce_challenge(answer)
            if nonce is not None:  # the IdP wants its nonce in the proof: once more with it
                self._dpop_nonce = nonce
                answer = self._post_token(endpoint, form, key)
            if answer.headers.get(DPOP_NONCE_HEADER):
                self._dpop_nonce = answer.headers[DPOP_NONCE_HEADER]
        try:
            body = answer.json()
        except ValueError:
            body = None
        if answer.status_code != 200:
            code = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None
            cls = TokenUnavailable if answer.status_code in TRANSIENT_STATUSES else TokenRefused
            raise cls(f"the token endpoint answered {answer.status_code} {code or ''}".rstrip(),
                      source=self.describe(), error=code)
        value = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise TokenRefused("the token endpoint sent no access_token", source=self.describe())
        if key is not None and str(body.get("token_type", "")).lower() != "dpop":
            raise TokenRefused(f"asked for a DPoP-bound token, the token endpoint issued token_type "
                               f"{body.get('token_type')!r}", source=self.describe())
        expires_in = body.get("expires_in")
        if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and expires_in > 0:
            expires_at = sent_at + float(expires_in)  # counted from the request: never too late
        else:
            expires_at = jwt_expiry(value) or 0.0
            if expires_at <= sent_at:
                raise TokenRefused("the token has no expiry (expires_in or exp)", source=self.describe())
        return AccessToken(value, expires_at, sent_at, dpop_key=key)

    def _post_token(self, endpoint: str, form: list[tuple[str, str]], key: DpopKey | None) -> httpx.Response:
        """One token request (a new client assertion and a new proof each time)."""
        form = list(form)
        headers = {"accept": "application/json", "content-type": "application/x-www-form-urlencoded"}
        if self._key is not None:
            form += [("client_id", self.client_id), ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                     ("client_assertion", self.client_assertion(endpoint))]
        else:
            secret = self._secret() if callable(self._secret) else self._secret
            # RFC 6749 section 2.3.1: both are form-encoded before the Basic encoding.
            pair = f"{quote(self.client_id, safe='')}:{quote(secret or '', safe='')}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        if key is not None:
            headers[DPOP_HEADER] = key.proof("POST", endpoint, nonce=self._dpop_nonce)
        self.requests += 1
        try:
            return self._http.post(endpoint, content=urlencode(form), headers=headers)
        except httpx.HTTPError as error:
            raise TokenUnavailable(f"token request failed: {type(error).__name__}", source=self.describe()) from None

    def close(self) -> None:
        self._http.close()


# -- files and fixed tokens -------------------------------------------------------------------------


class ProjectedTokenFile:
    """A token the platform writes to a file and rotates, such as a Kubernetes projected
    service-account token (``/var/run/secrets/tokens/<name>``). The kubelet replaces the file
    (an atomic symlink swap) at 80 % of its lifetime; :meth:`changed` notices it, so a cache reads
    it again at once. The expiry is the token's ``exp`` claim (``default_lifetime`` after reading
    it when the token is no JWT)."""

    def __init__(self, path: str | os.PathLike[str], *, default_lifetime: float = 300.0) -> None:
        self.path = Path(path)
        self.default_lifetime = default_lifetime
        self._seen: tuple[int, int, int] | None = None
        #: Times the file was read.
        self.requests = 0

    def describe(self) -> str:
        return f"token file {self.path}"

    def __repr__(self) -> str:
        return f"ProjectedTokenFile({str(self.path)!r})"

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()  # follows the symlink the kubelet swaps
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def changed(self) -> bool:
        """True when the file differs from the one last read."""
        signature = self._signature()
        return signature is not None and signature != self._seen

    def fetch(self) -> AccessToken:
        self.requests += 1
        signature = self._signature()
        try:
            value = self.path.read_text().strip()
        except OSError as error:
            raise TokenUnavailable(f"cannot read the token file: {error.strerror}", source=self.describe()) from None
        if not value:
            raise TokenUnavailable("the token file is empty", source=self.describe())
        self._seen = signature
        now = time.time()
        return AccessToken(value, jwt_expiry(value) or now + self.default_lifetime, now)


class StaticToken:
    """A fixed token (for legacy APIs): never refreshed. Its expiry is its ``exp`` claim when it
    is a JWT, else none (``math.inf``)."""

    def __init__(self, value: str | Callable[[], str], *, name: str = "static token") -> None:
        self._value = value
        self.name = name
        self.requests = 0

    def describe(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"StaticToken({self.name!r})"

    def fetch(self) -> AccessToken:
        self.requests += 1
        value = self._value() if callable(self._value) else self._value
        if not value:
            raise TokenRefused("the static token is empty", source=self.describe())
        return AccessToken(value, jwt_expiry(value) or math.inf)


# -- the cache ---------------------------------------------------------------------------------------


class _Flight:
    """One refresh in progress: the others wait for its result."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.token: AccessToken | None = None
        self.error: TokenError | None = None


class TokenCache:
    """Keeps a valid token of ``source`` in memory and renews it before it expires.

    - :meth:`get` returns the current token. After ``refresh_ratio`` of its lifetime (0.8, minus
      up to ``jitter`` of the lifetime chosen at random per token, so many workers do not all
      refresh at once) the first call starts a refresh in a background thread and still gets the
      current token. Without a token, or with an expired one, the caller waits for the refresh.
    - One refresh at a time: callers arriving while one runs wait for (or keep using) its result.
    - A failed background refresh is tried again after a back-off (1 s doubling, at most 30 s,
      never beyond the token's expiry), while the current token keeps being used until
      ``expires_at - expiry_margin``. Then :meth:`get` raises :class:`TokenUnavailable`
      (retryable), or :class:`TokenRefused` when the IdP refused the client.
    - :meth:`refresh` (``stale=`` the token the gateway called expired) renews once, unless
      another caller has already replaced that token.
    """

    def __init__(self, source: TokenSource, *, refresh_ratio: float = 0.8, jitter: float = 0.05,
                 expiry_margin: float = 1.0, wait_timeout: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not 0.1 <= refresh_ratio <= 0.95:
            raise ValueError("refresh_ratio must be within 0.1..0.95")
        if not 0.0 <= jitter < refresh_ratio:
            raise ValueError("jitter must be within 0..refresh_ratio")
        self.source = source
        self.refresh_ratio = refresh_ratio
        self.jitter = jitter
        self.expiry_margin = expiry_margin
        self.wait_timeout = wait_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self._refresh_at = 0.0
        self._next_attempt = 0.0
        self._backoff = 1.0
        self._flight: _Flight | None = None
        self._last_error: TokenError | None = None
        #: Refreshes started (each one token request to the source).
        self.refreshes = 0

    def describe(self) -> str:
        return self.source.describe()

    def __repr__(self) -> str:
        token = self._token
        state = f"token expires in {token.expires_in(self._clock()):.0f} s" if token else "no token yet"
        return f"TokenCache({self.describe()}, {state})"

    # -- public ---------------------------------------------------------------------------------

    def get(self) -> AccessToken:
        """A token valid for at least ``expiry_margin`` seconds more (or an error)."""
        now = self._clock()
        start_background = False
        with self._lock:
            token = self._token
            changed = getattr(self.source, "changed", None)
            if token is not None and self._usable(token, now) and not (changed and changed()):
                if now >= self._refresh_at and now >= self._next_attempt and self._flight is None:
                    self._flight = _Flight()
                    start_background = True
                flight = self._flight if start_background else None
            else:
                token = None
        if start_background:
            assert flight is not None
            threading.Thread(target=self._run_flight, args=(flight,), daemon=True,
                             name="token-refresh").start()
        if token is not None:
            return token
        return self._refresh_now(stale=self._token)

    def refresh(self, stale: AccessToken | None = None) -> AccessToken:
        """Renew now (e.g. the gateway answered ``token_expired`` for ``stale``). When the
        current token is already another one, that one is returned without a new request."""
        with self._lock:
            current = self._token
            if stale is not None and current is not None and current != stale \
                    and self._usable(current, self._clock()):
                return current
        return self._refresh_now(stale=stale, force=True)

    def token_value(self) -> str:
        """The token string, for an ``Authorization`` header: use it, never store it."""
        return self.get().value

    def clear(self) -> None:
        """Forget the token (e.g. the credentials changed)."""
        with self._lock:
            self._token = None
            self._refresh_at = 0.0

    # -- internals ------------------------------------------------------------------------------

    def _usable(self, token: AccessToken, now: float) -> bool:
        return now < token.expires_at - self.expiry_margin

    def _refresh_now(self, stale: AccessToken | None, force: bool = False) -> AccessToken:
        with self._lock:
            current = self._token
            if not force and current is not None and current is not stale and self._usable(current, self._clock()):
                return current
            flight = self._flight
            leader = flight is None
            if leader:
                flight = self._flight = _Flight()
        assert flight is not None
        if leader:
            self._run_flight(flight)
        elif not flight.done.wait(self.wait_timeout):
            raise TokenUnavailable("timed out waiting for a token refresh", source=self.describe())
        if flight.token is not None:
            return flight.token
        # The refresh failed: an unexpired token still serves (the IdP may be down only briefly).
        with self._lock:
            current = self._token
            if current is not None and not force and self._usable(current, self._clock()):
                return current
        assert flight.error is not None
        raise flight.error

    def _run_flight(self, flight: _Flight) -> None:
        """Fetch one token; publish it (or the error) to the cache and to the waiting callers."""
        self.refreshes += 1
        try:
            token = self.source.fetch()
        except TokenError as error:
            flight.error = error
        except Exception as error:  # a bug in a source must not leave waiters hanging
            flight.error = TokenUnavailable(f"token source failed: {type(error).__name__}",
                                            source=self.describe())
        else:
            flight.token = token
        now = self._clock()
        with self._lock:
            if flight.token is not None:
                token = flight.token
                lifetime = max(0.0, token.expires_at - now)
                ratio = self.refresh_ratio - random.uniform(0.0, self.jitter)
                self._token = token
                self._refresh_at = now + lifetime * ratio if math.isfinite(lifetime) else math.inf
                self._next_attempt = 0.0
                self._backoff = 1.0
                self._last_error = None
                log.info("token obtained: %s, valid %.0f s, refresh in %.0f s",
                         self.describe(), lifetime, self._refresh_at - now)
            else:
                self._last_error = flight.error
                delay = self._backoff
                self._backoff = min(self._backoff * 2, 30.0)
                if self._token is not None:
                    delay = min(delay, max(0.2, self._token.expires_at - self.expiry_margin - now))
                self._next_attempt = now + delay
                log.warning("token refresh failed: %s; %s", flight.error,
                            "the current token is still used" if self._token is not None
                            and self._usable(self._token, now) else "no valid token left")
            self._flight = None
        flight.done.set()


# -- sharing caches within a process ----------------------------------------------------------------

_SHARED: dict[Any, TokenCache] = {}
_SHARED_LOCK = threading.Lock()


def shared_cache(key: Any, factory: Callable[[], TokenSource], **cache_options: Any) -> TokenCache:
    """One :class:`TokenCache` per ``key`` in this process, so every task and thread of a
    worker that uses the same credentials shares one token and one refresh. ``key`` must not
    contain secrets as such: hash them (:func:`secret_fingerprint`)."""
    with _SHARED_LOCK:
        cache = _SHARED.get(key)
        if cache is None:
            cache = _SHARED[key] = TokenCache(factory(), **cache_options)
        return cache


def secret_fingerprint(value: str | bytes | None) -> str | None:
    """A hash of a secret, for cache keys: the same secret gives the same key."""
    if value is None:
        return None
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()


def bearer(cache_or_token: TokenCache | AccessToken | str) -> Mapping[str, str]:
    """``{"authorization": "Bearer ..."}`` for a cache, a token or a string. A DPoP-bound token
    needs a proof per request instead: :func:`dpop_headers` (this raises ``ValueError``)."""
    if isinstance(cache_or_token, TokenCache):
        cache_or_token = cache_or_token.get()
    if isinstance(cache_or_token, AccessToken):
        if cache_or_token.dpop_key is not None:
            raise ValueError("a DPoP-bound token is sent with a proof per request: use dpop_headers()")
        value = cache_or_token.value
    else:
        value = cache_or_token
    return {"authorization": f"Bearer {value}"}

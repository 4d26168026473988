"""Verify the identity filter's signed assertion and turn it into an :class:`Identity`.

The assertion is a compact JWT minted by the gateway filter for each allowed request. Only its
verified claims are trusted; the plain ``x-identity-*`` headers beside it are informational.
Verification is plain PyJWT (README.md shows the same calls standalone):

1. read the JOSE header (``alg``, ``kid``) without trusting it, and choose the key by ``kid``
   among keys of that algorithm (the key decides the algorithm, see :mod:`.keys`);
2. ``jwt.decode`` with that one algorithm, the expected ``aud`` and ``iss``, a small leeway,
   and ``exp``/``iat``/``iss``/``aud``/``sub``/``jti`` required;
3. check the contract version ``v``, the lifetime, the claim types, and the binding: the
   assertion's ``req.method`` and ``req.path`` must be this request's method and path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt

from .keys import SUPPORTED_ALGORITHMS, VerificationKey
from .reasons import Refusal

#: The version of the identity contract this code understands (claim ``v``).
CONTRACT_VERSION = 1

REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]


@dataclass(frozen=True)
class Identity:
    """The caller, as the filter verified it."""

    sub: str
    #: The ``iss`` of the caller's original token (the identity provider).
    idp: str
    #: The filter's provider name for that issuer.
    provider: str | None = None
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    tenant: str | None = None
    #: The gateway's request id (``req.id``); the idempotency key of a run.
    request_id: str | None = None
    #: The assertion's unique id.
    jti: str | None = None
    #: How the caller's token was bound to its sender, as the filter verified it (claim
    #: ``binding``): ``none``, ``dpop`` (RFC 9449) or ``mtls`` (RFC 8705). An assertion without
    #: the claim (a filter from before it existed) is ``none``.
    binding: str = "none"
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def idp_host(self) -> str:
        """The host of the identity provider, for tags; the whole ``idp`` when it is no URL."""
        host = urlsplit(self.idp).hostname if "://" in self.idp else None
        return host or self.idp

    def log_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"sub": self.sub, "idp": self.idp}
        if self.tenant is not None:
            fields["tenant"] = self.tenant
        if self.provider is not None:
            fields["provider"] = self.provider
        fields["binding"] = self.binding
        return fields


@dataclass(frozen=True)
class TokenHeader:
    algorithm: str
    kid: str | None


def read_header(token: str) -> TokenHeader:
    """The unverified JOSE header, only to choose a key. Refuses algorithms outside the contract."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.exceptions.DecodeError as error:
        raise Refusal("assertion_invalid", detail=f"malformed: {error}") from None
    algorithm = header.get("alg")
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise Refusal("assertion_invalid", detail=f"algorithm {algorithm!r} is not accepted")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise Refusal("assertion_invalid", detail="kid is not a string")
    return TokenHeader(algorithm=algorithm, kid=kid)


def verify_assertion(
    token: str,
    key: VerificationKey,
    *,
    audience: str,
    issuer: str,
    method: str,
    path: str,
    leeway_seconds: int = 5,
    max_lifetime_seconds: int = 300,
) -> Identity:
    """Verify ``token`` with ``key`` for a request ``method path``; raise :class:`Refusal` if bad."""
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm],
            audience=audience,
            issuer=issuer,
            leeway=leeway_seconds,
            options={"require": REQUIRED_CLAIMS, "strict_aud": False},
        )
    except jwt.exceptions.ExpiredSignatureError:
        raise Refusal("assertion_expired") from None
    except jwt.exceptions.ImmatureSignatureError:
        raise Refusal("assertion_not_yet_valid") from None
    except jwt.exceptions.InvalidAudienceError as error:
        raise Refusal("assertion_audience", detail=str(error)) from None
    except jwt.exceptions.InvalidIssuerError as error:
        raise Refusal("assertion_issuer", detail=str(error)) from None
    except jwt.exceptions.InvalidTokenError as error:
        raise Refusal("assertion_invalid", detail=f"{type(error).__name__}: {error}") from None

    if claims.get("v") != CONTRACT_VERSION:
        raise Refusal("assertion_version", detail=f"v={claims.get('v')!r}")
    if claims["exp"] - claims["iat"] > max_lifetime_seconds:
        raise Refusal("assertion_too_long", detail=f"lifetime {claims['exp'] - claims['iat']} s")

    identity = identity_from_claims(claims)

    req = claims["req"]
    if req.get("method") != method or req.get("path") != path:
        raise Refusal(
            "assertion_binding",
            detail=f"issued for {req.get('method')} {req.get('path')}, used for {method} {path}",
        )
    return identity


def _string(claims: dict[str, Any], name: str, required: bool) -> str | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise Refusal("assertion_invalid", detail=f"claim {name!r} must be a non-empty string")
    return value


def _strings(claims: dict[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Refusal("assertion_invalid", detail=f"claim {name!r} must be a list of strings")
    return tuple(value)


def identity_from_claims(claims: dict[str, Any]) -> Identity:
    """Check the types of the contract's claims and build the identity."""
    req = claims.get("req")
    if not isinstance(req, dict):
        raise Refusal("assertion_invalid", detail="claim 'req' must be an object")
    for name in ("method", "path"):
        if not isinstance(req.get(name), str):
            raise Refusal("assertion_invalid", detail=f"claim 'req.{name}' must be a string")
    request_id = req.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise Refusal("assertion_invalid", detail="claim 'req.id' must be a string")
    return Identity(
        sub=_string(claims, "sub", True) or "",
        idp=_string(claims, "idp", True) or "",
        provider=_string(claims, "provider", False),
        roles=_strings(claims, "roles"),
        groups=_strings(claims, "groups"),
        scopes=_strings(claims, "scopes"),
        tenant=_string(claims, "tenant", False),
        request_id=request_id or None,
        jti=claims.get("jti") if isinstance(claims.get("jti"), str) else None,
        binding=_string(claims, "binding", False) or "none",
        claims=claims,
    )

"""Keys, tokens and configurations for the integration tests.

Every key is generated per test session (nothing secret is stored); tokens are signed in the
tests from claims the test shows. Normal tokens are signed by the dev kit's issuer
(``identity_devkit.issuer``, PyJWT); hostile ones (``alg: none``, algorithm confusion, ``crit``)
with ``jwk.encode``, which refuses nothing.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization

from identity_devkit import jwk
from identity_devkit.issuer import SigningKey, generate, merged

ISSUER = "https://issuer.test"
PARTNER_ISSUER = "https://partner.test"
AUDIENCE = "api://identity-tests"
PARTNER_AUDIENCE = "api://partner"
REALM = "identity-tests"

ASYMMETRIC = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]

# Every header the filter may set in these tests' configurations.
IDENTITY_HEADERS = {
    "sub": "x-identity-subject",
    "iss": "x-identity-issuer",
    "realm_access.roles": "x-identity-roles",
    "scope": "x-identity-scope",
    "tenant_id": "x-identity-tenant",
    "email_verified": "x-identity-email-verified",
    "address": "x-identity-address",
    "note": "x-identity-note",
}
STRIPPED = "x-internal-user"


@dataclass
class Keys:
    """The session's signing keys. ``stranger`` is in no JWKS."""

    rsa: Any = field(default_factory=lambda: generate("RS256"))
    rsa2: Any = field(default_factory=lambda: generate("RS256"))
    ec256: Any = field(default_factory=lambda: generate("ES256"))
    ec384: Any = field(default_factory=lambda: generate("ES384"))
    ed: Any = field(default_factory=lambda: generate("EdDSA"))
    hmac: bytes = field(default_factory=lambda: generate("HS256"))
    partner: Any = field(default_factory=lambda: generate("RS256"))
    partner_hmac: bytes = field(default_factory=lambda: generate("HS256"))
    stranger: Any = field(default_factory=lambda: generate("RS256"))

    def primary_jwks(self) -> dict[str, Any]:
        """RSA keys carry no ``alg``: one key serves RS* and PS*."""
        return jwk.jwks(
            jwk.public_jwk(self.rsa, kid="rsa-1"),
            jwk.public_jwk(self.rsa2, kid="rsa-2"),
            jwk.public_jwk(self.ec256, kid="ec-p256", alg="ES256"),
            jwk.public_jwk(self.ec384, kid="ec-p384", alg="ES384"),
            jwk.public_jwk(self.ed, kid="ed-1", alg="EdDSA"),
            jwk.oct_jwk(self.hmac, kid="hmac-1"),
        )

    def partner_jwks(self) -> dict[str, Any]:
        return jwk.jwks(jwk.public_jwk(self.partner, kid="partner-1", alg="RS256"),
                        jwk.oct_jwk(self.partner_hmac, kid="partner-hmac"))

    def for_alg(self, alg: str) -> tuple[Any, str]:
        """The primary provider's (signing key, kid) for an algorithm."""
        if alg[:2] in ("RS", "PS"):
            return self.rsa, "rsa-1"
        return {
            "ES256": (self.ec256, "ec-p256"),
            "ES384": (self.ec384, "ec-p384"),
            "EdDSA": (self.ed, "ed-1"),
        }.get(alg, (self.hmac, "hmac-1"))

    def rsa_public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)


def settled(read: Any, tick: float = 0.1) -> Any:
    """`read()` once counts of earlier requests have surely reached the host (two timer ticks,
    `remote_keys.tick_ms` = `tick` seconds): the value to compare a later count against."""
    time.sleep(2 * tick + 0.05)
    return read()


def counted(read: Any, want: Any, timeout: float = 3.0) -> Any:
    """`read()` once it equals `want`, or its last value after `timeout` seconds. The filter
    hands its request counters to the host on its timer (`remote_keys.tick_ms`), not per
    request: a counter read just after a request may lag by one tick."""
    deadline = time.monotonic() + timeout
    value = read()
    while value != want and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


def now() -> int:
    return int(time.time())


def claims(**overrides: Any) -> dict[str, Any]:
    """Claims of a good primary-issuer token for "alice"; ``name=None`` removes a claim."""
    t = now()
    return merged({
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "iat": t,
        "exp": t + 300,
        "realm_access": {"roles": ["user", "admin"]},
        "scope": "runs:read runs:write",
    }, overrides)


def partner_claims(**overrides: Any) -> dict[str, Any]:
    return claims(**{"iss": PARTNER_ISSUER, "aud": PARTNER_AUDIENCE, "sub": "bob", **overrides})


def token(keys: Keys, claims_: dict[str, Any] | None = None, alg: str = "RS256", *,
          kid: str | None | bool = True, key: Any = None, headers: dict[str, Any] | None = None) -> str:
    """A token signed with PyJWT. ``kid=True``: the kid of the algorithm's key; ``kid=None``:
    no kid; a string: that kid. ``key`` overrides the signing key."""
    default_key, default_kid = keys.for_alg(alg)
    signer = SigningKey(default_key if key is None else key, default_kid, alg)
    return signer.token(claims() if claims_ is None else claims_, kid=kid, headers=headers)


def raw_token(header: dict[str, Any], claims_: dict[str, Any], key: Any) -> str:
    """A token with exactly this header, signed without any library checks."""
    return jwk.encode(header, claims_, key)


def bearer(tok: str) -> dict[str, str]:
    return {"authorization": f"Bearer {tok}"}


# ----------------------------------------------------------------------------------------------
# Configurations (one Envoy each, shared by every test that uses the same one)
# ----------------------------------------------------------------------------------------------

def main_config(keys: Keys) -> dict[str, Any]:
    """Two providers, route rules with default deny, identity headers, CORS preflight."""
    return {
        "providers": [
            {
                "name": "primary",
                "issuer": ISSUER,
                "audiences": [AUDIENCE, "api://other"],
                "jwks": keys.primary_jwks(),
                "algorithms": ASYMMETRIC + ["HS256"],
                "max_lifetime_seconds": 3600,
                "require_claims": ["sub"],
            },
            {
                "name": "partner",
                "issuer": PARTNER_ISSUER,
                "audiences": [PARTNER_AUDIENCE],
                "jwks": keys.partner_jwks(),
                "require_claims": ["sub", "realm_access.roles"],
            },
        ],
        "rules": [
            {"name": "health", "match": {"path": "/health"}, "allow_anonymous": True},
            {"name": "public", "match": {"path_prefix": "/public"}, "allow_anonymous": True},
            {"name": "docs", "match": {"path_prefix": "/api/docs", "methods": ["GET"]}, "allow_anonymous": True},
            {"name": "admin-read", "match": {"path_prefix": "/admin", "methods": ["GET", "HEAD"]}},
            {"name": "api", "match": {"path_prefix": "/api"}},
        ],
        "default": "deny",
        "cors_preflight": True,
        "headers": {
            "claims": [{"claim": c, "header": h} for c, h in IDENTITY_HEADERS.items()],
            "strip": [STRIPPED],
        },
    }


def sources_config(keys: Keys, forward_token: bool = False) -> dict[str, Any]:
    """Every kind of token source; any path needs a valid token."""
    return {
        "providers": [{"name": "primary", "issuer": ISSUER, "audiences": [AUDIENCE],
                       "jwks": keys.primary_jwks()}],
        "token_sources": [
            {"header": "authorization", "prefix": "Bearer "},
            {"header": "x-api-token"},
            {"query": "access_token"},
            {"cookie": "session"},
        ],
        "default": "authenticated",
        "headers": {"claims": [{"claim": "sub", "header": "x-identity-subject"}],
                    "forward_token": forward_token},
    }


def verbose_config(keys: Keys) -> dict[str, Any]:
    """Denials with messages, a realm and a custom reason header."""
    config = main_config(keys)
    config["errors"] = {"detail": "message", "realm": REALM, "reason_header": "x-auth-reason"}
    return config


def quiet_config(keys: Keys) -> dict[str, Any]:
    """No body on denials, no decision logs, no metrics, no CORS pass; default anonymous."""
    return {
        "providers": [{"name": "primary", "issuer": ISSUER, "audiences": [AUDIENCE],
                       "jwks": keys.primary_jwks()}],
        "default": "anonymous",
        "rules": [{"name": "api", "match": {"path_prefix": "/api"}}],
        "headers": {"claims": [{"claim": "sub", "header": "x-identity-subject"}]},
        "errors": {"detail": "none"},
        "log": {"decisions": False},
        "metrics": {"enabled": False},
    }


def with_change(config: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    """A deep copy of ``config`` with the item at ``path`` set to ``value``."""
    out = copy.deepcopy(config)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return out


# ----------------------------------------------------------------------------------------------
# Assertions
# ----------------------------------------------------------------------------------------------

STATUS = {
    "token_missing": 401, "token_malformed": 401, "token_too_large": 401, "token_ambiguous": 401,
    "token_expired": 401, "token_not_yet_valid": 401, "token_too_old": 401,
    "algorithm_not_allowed": 401, "key_not_found": 401, "signature_invalid": 401,
    "issuer_unknown": 401, "audience_mismatch": 401, "claim_missing": 401,
    "forbidden": 403, "insufficient_scope": 403, "keys_unavailable": 503, "config_invalid": 500,
    "identity_header_spoofed": 400,
    "path_not_canonical": 400,
    "certificate_missing": 401, "certificate_mismatch": 401, "certificate_required": 401,
    "certificate_unavailable": 500,
    "dpop_proof_missing": 401, "dpop_proof_invalid": 401, "dpop_proof_replayed": 401,
    "dpop_key_mismatch": 401, "dpop_ath_mismatch": 401, "dpop_required": 401,
}


def assert_denied(reply: Any, reason: str, *, rule: str | None = None,
                  reason_header: str = "x-identity-reason") -> None:
    """The request was answered by the filter (never reached the upstream) with the status of
    ``reason``, the reason header (``<code>`` or ``<code>; rule=<name>``) and ``no-store``."""
    assert not reply.from_upstream, f"request reached the upstream: {reply!r}"
    assert reply.status == STATUS[reason], reply
    expected = reason if rule is None else f"{reason}; rule={rule}"
    assert reply.header(reason_header) == expected, reply
    assert reply.header("cache-control") == "no-store", reply


def assert_reason_body(reply: Any, reason: str) -> None:
    """``errors.detail: reason`` (the default): exactly ``{"error": code, "status": n}``."""
    assert reply.header("content-type") == "application/json", reply
    assert reply.json() == {"error": reason, "status": STATUS[reason]}


def assert_invalid_token(reply: Any, reason: str) -> None:
    """A 401 for a token that was sent: RFC 6750 ``invalid_token`` challenge, JSON body."""
    assert_denied(reply, reason)
    assert reply.header("www-authenticate") == 'Bearer error="invalid_token"', reply
    assert_reason_body(reply, reason)


def assert_allowed(reply: Any) -> dict[str, Any]:
    """The request reached the echo upstream; returns what the upstream received."""
    assert reply.status == 200 and reply.from_upstream, reply
    return reply.upstream

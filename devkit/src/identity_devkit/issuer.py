"""The one token issuer of the dev kit: a signing key with its ``kid`` and algorithm, its public
JWK (and JWK Set), and the tokens it signs (PyJWT).

Built on it: the development issuer of `make run` (``tools/devissuer.py``, RS256 with a key kept
on disk), the Envoy tests' keys (``tests/support.py``, one key per algorithm family), the
dispatcher tests' identity provider (:class:`identity_devkit.testing.TokenIssuer`, EdDSA), the
assertion minter's public keys and the benchmark's keys. Hostile tokens (``alg: none``, odd
headers) are :func:`identity_devkit.jwk.encode`'s job.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

import jwt  # PyJWT
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from . import jwk as _jwk

#: ``kid=True`` in :meth:`SigningKey.token`: the key's own kid.
OWN_KID = True


def merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``overrides``; an override whose value is ``None`` removes the claim."""
    out = dict(base)
    for name, value in overrides.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def generate(alg: str) -> Any:
    """A fresh private key for ``alg`` (RSA 2048 for RS*/PS*, P-256/P-384 for ES256/ES384,
    Ed25519 for EdDSA, 64 random bytes for HS*)."""
    if alg[:2] in ("RS", "PS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg[:2] == "HS":
        return os.urandom(64)
    raise ValueError(f"no key type for {alg}")


def thumbprint(public_jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url) of a public RSA, EC, OKP or oct JWK."""
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"),
               "oct": ("k", "kty")}[public_jwk["kty"]]
    canonical = json.dumps({m: public_jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _jwk.b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass
class SigningKey:
    """A private key (bytes for HS*), the ``kid`` its tokens carry and the algorithm it signs
    with. ``jwk_alg``: whether its JWK names the algorithm (leave it out when one RSA key serves
    RS* and PS*)."""

    key: Any
    kid: str | None
    alg: str
    jwk_alg: bool = True

    @classmethod
    def generate(cls, alg: str, kid: str | None = None, jwk_alg: bool = True) -> "SigningKey":
        """A fresh key for ``alg``; ``kid`` defaults to its RFC 7638 thumbprint."""
        made = cls(generate(alg), kid, alg, jwk_alg)
        if kid is None:
            made.kid = thumbprint(made.public_jwk())
        return made

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK (the secret itself for HS*: an ``oct`` JWK)."""
        alg = self.alg if self.jwk_alg else None
        if isinstance(self.key, (bytes, bytearray)):
            return _jwk.oct_jwk(bytes(self.key), kid=self.kid, alg=alg)
        return _jwk.public_jwk(self.key, kid=self.kid, alg=alg)

    def jwks(self) -> dict[str, Any]:
        """A JWK Set with this key alone."""
        return _jwk.jwks(self.public_jwk())

    def token(self, claims: Mapping[str, Any], *, alg: str | None = None, kid: str | None | bool = OWN_KID,
              headers: Mapping[str, Any] | None = None, typ: str | None = None) -> str:
        """``claims`` signed with this key (PyJWT). ``alg``: another algorithm of the same key
        (PS256 with an RS256 key, say); ``kid``: ``True`` its own, ``None`` none, or that
        string; ``headers``: more header parameters; ``typ``: the ``typ`` header."""
        header: dict[str, Any] = dict(headers or {})
        if kid is True:
            if self.kid is not None:
                header["kid"] = self.kid
        elif isinstance(kid, str):
            header["kid"] = kid
        if typ is not None:
            header["typ"] = typ
        return jwt.encode(dict(claims), self.key, algorithm=alg or self.alg, headers=header or None)

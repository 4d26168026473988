"""Keys as JSON Web Keys (RFC 7517, RFC 8037), and raw JWS signing for tests that need tokens
no well-behaved library would produce (``alg: none``, algorithm confusion, odd headers).

Standard library plus ``cryptography``. Used by ``devissuer.py`` and the integration tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int, length: int | None = None) -> str:
    if length is None:
        length = max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(length, "big"))


def public_jwk(key: Any, kid: str | None = None, alg: str | None = None) -> dict[str, Any]:
    """The public JWK of a private or public RSA, EC (P-256/P-384) or Ed25519 key.

    ``alg`` is optional in a JWK; leave it out when one key serves several algorithms
    (one RSA key for RS256 and PS512, say).
    """
    if hasattr(key, "public_key"):
        key = key.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        jwk: dict[str, Any] = {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": ("P-256", 32), "secp384r1": ("P-384", 48)}.get(key.curve.name)
        if curve is None:
            raise ValueError(f"unsupported EC curve {key.curve.name}")
        numbers = key.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": curve[0],
            "x": _uint(numbers.x, curve[1]),
            "y": _uint(numbers.y, curve[1]),
        }
    elif isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    else:
        raise ValueError(f"unsupported key type {type(key).__name__}")
    jwk["use"] = "sig"
    if kid is not None:
        jwk["kid"] = kid
    if alg is not None:
        jwk["alg"] = alg
    return jwk


def oct_jwk(secret: bytes, kid: str | None = None, alg: str | None = None) -> dict[str, Any]:
    """A symmetric (HMAC) JWK."""
    jwk: dict[str, Any] = {"kty": "oct", "k": b64url(secret), "use": "sig"}
    if kid is not None:
        jwk["kid"] = kid
    if alg is not None:
        jwk["alg"] = alg
    return jwk


def jwks(*keys: dict[str, Any]) -> dict[str, Any]:
    """A JWK Set from JWKs."""
    return {"keys": list(keys)}


_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def sign(alg: str, key: Any, signing_input: bytes) -> bytes:
    """A raw JWS signature over ``signing_input`` (RFC 7518). ``key`` is a private key, or
    bytes for HS*. ``none`` gives an empty signature."""
    if alg == "none":
        return b""
    family, bits = alg[:2], alg[2:]
    if family == "HS":
        digest = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}[bits]
        return hmac.new(key, signing_input, digest).digest()
    if alg == "EdDSA":
        return key.sign(signing_input)
    if family == "RS":
        return key.sign(signing_input, padding.PKCS1v15(), _HASHES[bits]())
    if family == "PS":
        digest = _HASHES[bits]()
        return key.sign(
            signing_input,
            padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size),
            digest,
        )
    if family == "ES":
        der = key.sign(signing_input, ec.ECDSA(_HASHES[bits]()))
        r, s = decode_dss_signature(der)
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise ValueError(f"unsupported algorithm {alg}")


def encode(header: dict[str, Any], claims: dict[str, Any], key: Any) -> str:
    """A compact JWS with exactly the given header (``alg`` included) and claims. Unlike a JWT
    library it refuses nothing, so tests can build hostile tokens."""
    alg = header["alg"]
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{head}.{body}".encode("ascii")
    return f"{head}.{body}.{b64url(sign(alg, key, signing_input))}"

"""Verify the identity filter's signed assertion in a downstream service (PyJWT).

This file is quoted in docs/identity-contract.md and run by tests/test_assertion.py against
assertions minted by the filter in a real Envoy.
"""

import jwt  # PyJWT


class AssertionError_(Exception):
    """The assertion is missing, invalid, or not bound to this request."""


def verify_assertion(token, key, *, audience, method, path, issuer="identity-filter", leeway=5):
    """Return the assertion's claims if it is valid for this request, else raise.

    key: the shared HS256 secret (str/bytes) or an Ed25519 public key
    (for example ``jwt.PyJWK(jwk_dict).key`` from the filter's published JWKS).
    method, path: of the request as this service received it (path without query string).
    """
    if not token:
        raise AssertionError_("assertion_missing")
    # The key decides the algorithm, never the token's header.
    algorithms = ["HS256"] if isinstance(key, (str, bytes)) else ["EdDSA"]
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": ["exp", "iat", "iss", "aud", "req", "v"]},
        )
    except jwt.ExpiredSignatureError as e:
        raise AssertionError_("assertion_expired") from e
    except jwt.InvalidAudienceError as e:
        raise AssertionError_("assertion_audience") from e
    except jwt.PyJWTError as e:
        raise AssertionError_("assertion_invalid") from e
    if claims.get("v") != 1:
        raise AssertionError_("assertion_version")
    req = claims.get("req") or {}
    if req.get("method") != method or req.get("path") != path:
        raise AssertionError_("assertion_binding")
    return claims

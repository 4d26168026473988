"""DPoP (RFC 9449) in real Envoy: sender-constrained tokens and their proofs.

Tokens come from the real OpenID provider (tools/oidc_provider.py: a token request with a DPoP
proof gets a token bound to the proof's key, ``cnf.jkt``) and, for the edge cases, from the dev
issuer of the tests (tests/support.py) with a ``cnf.jkt`` of our choosing. Proofs are built here
with PyJWT and cryptography. Every refusal is checked with its status, reason code and ``DPoP``
challenge; every success with what the upstream saw (``x-identity-binding`` and the assertion's
``binding``).

Envoy runs the filter with the request's own scheme and host (``http://127.0.0.1:<port>``), so
the proofs name that ``htu``, except where ``dpop.public_base_url`` is set.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.parse
import uuid
from typing import Any

import jwt  # PyJWT
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from identity_devkit.jwk import b64url as b64

import support
from oidc_provider import Client, OidcProvider
from support import AUDIENCE, ISSUER, assert_allowed, assert_denied, claims, token

SECRET = "dpop-tests-assertion-secret-0123456789"
SERVICE = "orders-service"
ALGS = "ES256 EdDSA PS256"


def public_jwk(key: Any) -> dict[str, Any]:
    """The public JWK of an EC P-256 or Ed25519 private key (no private members)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    jwk_ = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {k: jwk_[k] for k in ("kty", "crv", "x", "y")}


def thumbprint(jwk_: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace."""
    required = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
    members = {k: jwk_[k] for k in required[jwk_["kty"]]}
    return b64(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())


def ath(access_token: str) -> str:
    return b64(hashlib.sha256(access_token.encode()).digest())


def proof(key: Any, method: str, url: str, access_token: str | None = None, *,
          alg: str = "ES256", jwk_: dict[str, Any] | None = None, **changes: Any) -> str:
    """A DPoP proof signed with ``key``; ``changes`` set (or, with None, remove) claims."""
    payload: dict[str, Any] = {"jti": str(uuid.uuid4()), "htm": method, "htu": url, "iat": int(time.time())}
    if access_token is not None:
        payload["ath"] = ath(access_token)
    for name, value in changes.items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    header = {"typ": "dpop+jwt", "jwk": public_jwk(key) if jwk_ is None else jwk_}
    return jwt.encode(payload, key, algorithm=alg, headers=header)


def dpop(access_token: str, *proofs: str) -> list[tuple[str, str]]:
    return [("authorization", f"DPoP {access_token}")] + [("dpop", p) for p in proofs]


def assert_dpop_denied(reply: Any, reason: str, error: str = "invalid_dpop_proof") -> None:
    assert_denied(reply, reason)
    assert reply.header("www-authenticate") == f'DPoP error="{error}", algs="{ALGS}"', reply


def config(keys: support.Keys, mode: str = "allowed", **dpop_top: Any) -> dict[str, Any]:
    return {
        "providers": [{
            "name": "dev", "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": keys.primary_jwks(),
            "dpop": {"mode": mode, "algorithms": ALGS.split(), "max_age_seconds": 60},
        }],
        "default": "authenticated",
        "dpop": dpop_top,
        "headers": {
            "claims": [{"identity": "subject", "header": "x-identity-subject"},
                       {"identity": "binding", "header": "x-identity-binding"}],
            "assertion": {"audience": SERVICE, "keys": [{"kid": "a1", "secret": SECRET}]},
        },
    }


@pytest.fixture(scope="module")
def client_key() -> Any:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def gateway(envoy_with, keys):
    return envoy_with(config(keys), name="dpop")


def url(envoy: Any, path: str) -> str:
    return f"http://127.0.0.1:{envoy.port}{path}"


def bound(keys: support.Keys, key: Any) -> str:
    """A dev-issuer token bound to ``key``."""
    return token(keys, claims(cnf={"jkt": thumbprint(public_jwk(key))}), "ES256")


def assertion_of(seen: dict[str, Any]) -> dict[str, Any]:
    return jwt.decode(seen["headers"]["x-identity-assertion"], SECRET, algorithms=["HS256"],
                      audience=SERVICE)


# -------------------------------------------------------------------------------------------
# Success
# -------------------------------------------------------------------------------------------

def test_a_bound_token_with_its_proof_reaches_the_upstream_as_dpop(gateway, keys, client_key):
    access = bound(keys, client_key)
    reply = gateway.get("/orders/7?page=2",
                        headers=dpop(access, proof(client_key, "GET", url(gateway, "/orders/7"), access)))
    seen = assert_allowed(reply)
    assert seen["headers"]["x-identity-binding"] == "dpop"
    assert seen["headers"]["x-identity-subject"] == "alice"
    assert assertion_of(seen)["binding"] == "dpop"
    assert "authorization" not in seen["headers"]


def test_a_plain_bearer_token_still_works_in_allowed_mode(gateway, keys):
    seen = assert_allowed(gateway.get("/orders", headers=support.bearer(token(keys))))
    assert seen["headers"]["x-identity-binding"] == "none"
    assert assertion_of(seen)["binding"] == "none"


def test_every_request_of_a_cached_token_needs_a_fresh_proof(gateway, keys, client_key):
    access = bound(keys, client_key)
    for _ in range(3):
        assert_allowed(gateway.get("/orders", headers=dpop(access, proof(client_key, "GET", url(gateway, "/orders"),
                                                                         access))))
    assert_dpop_denied(gateway.get("/orders", headers=dpop(access)), "dpop_proof_missing")


def test_an_eddsa_proof_key_works_too(gateway, keys):
    key = ed25519.Ed25519PrivateKey.generate()
    access = bound(keys, key)
    reply = gateway.get("/orders", headers=dpop(access, proof(key, "GET", url(gateway, "/orders"), access,
                                                              alg="EdDSA")))
    assert assert_allowed(reply)["headers"]["x-identity-binding"] == "dpop"


# -------------------------------------------------------------------------------------------
# Refusals, each with its reason
# -------------------------------------------------------------------------------------------

def test_dpop_proof_replayed_the_same_proof_twice(gateway, keys, client_key):
    access = bound(keys, client_key)
    once = proof(client_key, "GET", url(gateway, "/orders"), access)
    assert_allowed(gateway.get("/orders", headers=dpop(access, once)))
    assert_dpop_denied(gateway.get("/orders", headers=dpop(access, once)), "dpop_proof_replayed")


def test_dpop_proof_invalid_wrong_htm(gateway, keys, client_key):
    access = bound(keys, client_key)
    reply = gateway.get("/orders", headers=dpop(access, proof(client_key, "POST", url(gateway, "/orders"), access)))
    assert_dpop_denied(reply, "dpop_proof_invalid")


def test_dpop_proof_invalid_wrong_htu(gateway, keys, client_key):
    access = bound(keys, client_key)
    for wrong in (url(gateway, "/orders/other"), "http://elsewhere.test/orders",
                  f"https://127.0.0.1:{gateway.port}/orders"):
        reply = gateway.get("/orders", headers=dpop(access, proof(client_key, "GET", wrong, access)))
        assert_dpop_denied(reply, "dpop_proof_invalid")


def test_dpop_proof_invalid_stale_and_future_iat(gateway, keys, client_key):
    access = bound(keys, client_key)
    now = int(time.time())
    for iat in (now - 120, now + 600):  # max_age_seconds 60; clock_skew_seconds 60
        reply = gateway.get("/orders", headers=dpop(access, proof(client_key, "GET", url(gateway, "/orders"),
                                                                  access, iat=iat)))
        assert_dpop_denied(reply, "dpop_proof_invalid")


def test_dpop_ath_mismatch_proof_for_another_token(gateway, keys, client_key):
    access = bound(keys, client_key)
    reply = gateway.get("/orders", headers=dpop(access, proof(client_key, "GET", url(gateway, "/orders"),
                                                              access + "x")))
    assert_dpop_denied(reply, "dpop_ath_mismatch")


def test_dpop_key_mismatch_proof_by_another_key(gateway, keys, client_key):
    access = bound(keys, client_key)
    other = ec.generate_private_key(ec.SECP256R1())
    reply = gateway.get("/orders", headers=dpop(access, proof(other, "GET", url(gateway, "/orders"), access)))
    assert_dpop_denied(reply, "dpop_key_mismatch", "invalid_token")


def test_dpop_proof_invalid_two_dpop_headers(gateway, keys, client_key):
    access = bound(keys, client_key)
    at = url(gateway, "/orders")
    reply = gateway.get("/orders", headers=dpop(access, proof(client_key, "GET", at, access),
                                                proof(client_key, "GET", at, access)))
    assert_dpop_denied(reply, "dpop_proof_invalid")


def test_dpop_proof_invalid_private_key_in_the_jwk(gateway, keys, client_key):
    access = bound(keys, client_key)
    private = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(client_key))
    assert "d" in private
    reply = gateway.get("/orders", headers=dpop(access, proof(client_key, "GET", url(gateway, "/orders"), access,
                                                              jwk_=private)))
    assert_dpop_denied(reply, "dpop_proof_invalid")


def test_dpop_proof_invalid_hmac_and_none_proofs(gateway, keys, client_key):
    access = bound(keys, client_key)
    at = url(gateway, "/orders")
    hmac = proof(b"a-shared-secret-of-thirty-two-bytes!", "GET", at, access, alg="HS256",
                 jwk_={"kty": "oct", "k": b64(b"a-shared-secret-of-thirty-two-bytes!")})
    assert_dpop_denied(gateway.get("/orders", headers=dpop(access, hmac)), "dpop_proof_invalid")
    signed = proof(client_key, "GET", at, access)
    header = json.loads(base64.urlsafe_b64decode(signed.split(".")[0] + "=="))
    header["alg"] = "none"
    unsigned = b64(json.dumps(header).encode()) + "." + signed.split(".")[1] + "."
    assert_dpop_denied(gateway.get("/orders", headers=dpop(access, unsigned)), "dpop_proof_invalid")


def test_dpop_required_bound_token_sent_as_bearer(gateway, keys, client_key):
    access = bound(keys, client_key)
    at = url(gateway, "/orders")
    assert_dpop_denied(gateway.get("/orders", headers=support.bearer(access)), "dpop_required", "invalid_token")
    with_proof = [("authorization", f"Bearer {access}"), ("dpop", proof(client_key, "GET", at, access))]
    assert_dpop_denied(gateway.get("/orders", headers=with_proof), "dpop_required", "invalid_token")


def test_dpop_proof_missing_bound_token_without_proof(gateway, keys, client_key):
    assert_dpop_denied(gateway.get("/orders", headers=dpop(bound(keys, client_key))), "dpop_proof_missing")


def test_dpop_required_mode_refuses_a_plain_bearer_token(envoy_with, keys, client_key):
    envoy = envoy_with(config(keys, mode="required"), name="dpop-required")
    assert_dpop_denied(envoy.get("/orders", headers=support.bearer(token(keys))), "dpop_required", "invalid_token")
    access = bound(keys, client_key)
    reply = envoy.get("/orders", headers=dpop(access, proof(client_key, "GET", url(envoy, "/orders"), access)))
    assert assert_allowed(reply)["headers"]["x-identity-binding"] == "dpop"


def test_the_public_base_url_is_the_htu_behind_a_balancer(envoy_with, keys, client_key):
    envoy = envoy_with(config(keys, public_base_url="https://api.example.com"), name="dpop-public")
    access = bound(keys, client_key)
    local = proof(client_key, "GET", url(envoy, "/orders"), access)
    assert_dpop_denied(envoy.get("/orders", headers=dpop(access, local)), "dpop_proof_invalid")
    public = proof(client_key, "GET", "https://api.example.com/orders", access)
    assert_allowed(envoy.get("/orders", headers=dpop(access, public)))


def test_dpop_refusals_are_counted_by_reason(gateway, keys, client_key):
    before = support.settled(
        lambda: gateway.stats().get("wasmcustom.identity_filter.denied.dpop_proof_missing", 0))
    assert_dpop_denied(gateway.get("/orders", headers=dpop(bound(keys, client_key))), "dpop_proof_missing")
    after = support.counted(
        lambda: gateway.stats().get("wasmcustom.identity_filter.denied.dpop_proof_missing", 0),
        before + 1)
    assert after == before + 1


# -------------------------------------------------------------------------------------------
# Tokens from the real OpenID provider
# -------------------------------------------------------------------------------------------

ORDERS = "api://orders"


def dpop_token(op: OidcProvider, client: Client, key: Any, scope: str) -> dict[str, Any]:
    """The token endpoint's answer to a client-credentials request with a DPoP proof."""
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": scope, "resource": ORDERS,
                                   "client_id": client.client_id, "client_secret": client.secret or ""})
    headers = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json",
               "dpop": proof(key, "POST", op.token_url)}
    status, _, body = op._http("POST", "/token", body=form.encode(), headers=headers)
    assert status == 200, body
    return json.loads(body)


def test_tokens_the_provider_binds_pass_with_proofs_and_fail_without(wasm, echo, oidc_provider_with, client_key):
    from envoy_runner import Envoy

    client = Client.basic("svc", scope="orders:read")
    op = oidc_provider_with(clients=[client], resources={ORDERS: "orders:read"}, alg="ES256")
    answer = dpop_token(op, client, client_key, "orders:read")
    assert answer["token_type"] == "DPoP"
    access = answer["access_token"]
    assert jwt.decode(access, options={"verify_signature": False})["cnf"] == {"jkt": thumbprint(public_jwk(client_key))}
    filter_config = {
        "providers": [{"name": "op", "issuer": op.issuer, "audiences": [ORDERS], "discovery": True,
                       "upstream": "idp", "cold_start_wait_ms": 3000,
                       "dpop": {"mode": "required", "algorithms": ALGS.split()}}],
        "default": "authenticated",
        "remote_keys": {"tick_ms": 50},
        "headers": {"claims": [{"identity": "subject", "header": "x-identity-subject"},
                               {"identity": "binding", "header": "x-identity-binding"}]},
    }
    with Envoy(wasm, filter_config, upstream_port=echo.port, extra_clusters=[{"name": "idp", "port": op.port}],
               name="dpop-oidc") as envoy:
        seen = assert_allowed(envoy.get("/orders", headers=dpop(access, proof(client_key, "GET",
                                                                             url(envoy, "/orders"), access))))
        assert seen["headers"]["x-identity-binding"] == "dpop"
        assert seen["headers"]["x-identity-subject"] == "svc"
        assert_dpop_denied(envoy.get("/orders", headers=support.bearer(access)), "dpop_required", "invalid_token")
        stolen = ec.generate_private_key(ec.SECP256R1())
        assert_dpop_denied(envoy.get("/orders", headers=dpop(access, proof(stolen, "GET", url(envoy, "/orders"),
                                                                           access))),
                           "dpop_key_mismatch", "invalid_token")
        plain = op.token(client, scope="orders:read", resource=ORDERS)
        assert_dpop_denied(envoy.get("/orders", headers=support.bearer(plain)), "dpop_required", "invalid_token")

"""The signed identity assertion in real Envoy (docs/identity-contract.md), HS256 and EdDSA.

Every check of an assertion runs ``docs/examples/verify_assertion.py`` unchanged: the contract's
verified example is this code, given the method and path the upstream saw. With EdDSA the key is
the one the filter serves at ``jwks_path`` through Envoy (``jwt.PyJWK``).
"""

from __future__ import annotations

import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jwt  # PyJWT
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from identity_devkit import jwk
import support
from envoy_runner import Envoy
from support import AUDIENCE, ISSUER, assert_allowed, assert_denied, bearer, claims, token

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs" / "examples"))
from verify_assertion import AssertionError_, verify_assertion  # noqa: E402

SERVICE = "orders-service"
JWKS_PATH = "/.well-known/identity-jwks.json"
HS_LIFETIME = 30
ED_ISSUER = "https://gateway.test"
HS_SECRET = secrets.token_hex(24)  # 48 bytes, per session
ED_CURRENT = ed25519.Ed25519PrivateKey.generate()
ED_NEXT = ed25519.Ed25519PrivateKey.generate()


def private_jwk(key: ed25519.Ed25519PrivateKey) -> dict[str, str]:
    d = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                          serialization.NoEncryption())
    x = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": jwk.b64url(x), "d": jwk.b64url(d)}


def assertion_config(keys: support.Keys, assertion: dict[str, Any]) -> dict[str, Any]:
    return {
        "providers": [{
            "name": "primary",
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "jwks": keys.primary_jwks(),
            "identity": {"roles": ["realm_access.roles"], "groups": ["groups"], "tenant": ["tenant_id"]},
        }],
        "rules": [
            {"name": "public", "match": {"path_prefix": "/public"}, "allow_anonymous": True},
            {"name": "admin", "match": {"path_prefix": "/admin"}, "require": {"roles": {"any_of": ["root"]}}},
            {"name": "api", "match": {"path_prefix": "/api"}},
        ],
        "default": "deny",
        "headers": {
            "claims": [{"claim": "sub", "header": "x-identity-subject"}],
            "assertion": assertion,
        },
    }


def hs256_config(keys: support.Keys) -> dict[str, Any]:
    return assertion_config(keys, {"audience": SERVICE, "lifetime_seconds": HS_LIFETIME,
                                   "keys": [{"kid": "hs-1", "secret": HS_SECRET}]})


def eddsa_config(keys: support.Keys) -> dict[str, Any]:
    """The first key signs; both are published (the next one ahead of a rotation)."""
    return assertion_config(keys, {
        "audience": SERVICE,
        "issuer": ED_ISSUER,
        "jwks_path": JWKS_PATH,
        "keys": [{"kid": "ed-current", "private_jwk": private_jwk(ED_CURRENT)},
                 {"kid": "ed-next", "private_jwk": private_jwk(ED_NEXT)}],
    })


@dataclass
class Signed:
    """An Envoy minting assertions, and how a downstream service verifies them."""

    alg: str
    envoy: Any
    issuer: str
    lifetime: int
    key_for: Callable[[str], Any]  # assertion → verification key

    def verify(self, assertion: str, *, method: str, path: str, audience: str = SERVICE) -> dict[str, Any]:
        return verify_assertion(assertion, self.key_for(assertion), audience=audience, method=method,
                                path=path, issuer=self.issuer)


def served_key(envoy, assertion: str) -> Any:
    """The public key for the assertion's ``kid``, from the JWKS the filter serves through Envoy."""
    kid = jwt.get_unverified_header(assertion)["kid"]
    document = envoy.get(JWKS_PATH).json()
    (match,) = [k for k in document["keys"] if k.get("kid") == kid]
    return jwt.PyJWK(match).key


@pytest.fixture(scope="module")
def hs256(envoy_with, keys) -> Signed:
    envoy = envoy_with(hs256_config(keys), "assert-hs256")
    return Signed("HS256", envoy, "identity-filter", HS_LIFETIME, lambda _: HS_SECRET)


@pytest.fixture(scope="module")
def eddsa(envoy_with, keys) -> Signed:
    envoy = envoy_with(eddsa_config(keys), "assert-eddsa")
    return Signed("EdDSA", envoy, ED_ISSUER, 60, lambda a: served_key(envoy, a))


@pytest.fixture(params=["hs256", "eddsa"])
def signed(request) -> Signed:
    return request.getfixturevalue(request.param)


def send(signed: Signed, keys, method: str = "GET", path: str = "/api/items",
         headers: dict[str, str] | None = None, claims_: dict[str, Any] | None = None,
         body: str | None = None) -> tuple[str, dict[str, Any]]:
    """One request with a valid token: (the assertion the upstream got, what the upstream saw)."""
    reply = signed.envoy.request(method, path, {**(headers or {}), **bearer(token(keys, claims_))}, body)
    seen = assert_allowed(reply)
    assertion = seen["headers"].get("x-identity-assertion")
    assert assertion, seen
    return assertion, seen


def path_only(seen: dict[str, Any]) -> str:
    return seen["path"].split("?", 1)[0]


def verify_as_upstream(signed: Signed, assertion: str, seen: dict[str, Any]) -> dict[str, Any]:
    """What the downstream service does: verify against the method and path it received."""
    return signed.verify(assertion, method=seen["method"], path=path_only(seen))


# ----------------------------------------------------------------------------------------------
# Verifying with the contract's example
# ----------------------------------------------------------------------------------------------

def test_assertion_verifies_for_the_request_the_upstream_saw(signed, keys):
    assertion, seen = send(signed, keys, path="/api/items/42?expand=all")
    verified = verify_as_upstream(signed, assertion, seen)
    assert verified["req"]["method"] == "GET"
    assert verified["req"]["path"] == "/api/items/42"


def test_assertion_binds_a_post_with_a_body(signed, keys):
    assertion, seen = send(signed, keys, "POST", "/api/runs", body='{"flow": "etl"}')
    assert seen["body"] == '{"flow": "etl"}'
    assert verify_as_upstream(signed, assertion, seen)["req"]["method"] == "POST"


def test_other_method_fails_the_binding(signed, keys):
    assertion, seen = send(signed, keys, "GET", "/api/items")
    with pytest.raises(AssertionError_, match="^assertion_binding$"):
        signed.verify(assertion, method="DELETE", path=path_only(seen))


def test_other_path_fails_the_binding(signed, keys):
    assertion, seen = send(signed, keys, "GET", "/api/items/1")
    with pytest.raises(AssertionError_, match="^assertion_binding$"):
        signed.verify(assertion, method=seen["method"], path="/api/items/2")


def test_path_with_its_query_string_fails_the_binding(signed, keys):
    # req.path has no query string; a service must compare the path alone.
    assertion, seen = send(signed, keys, "GET", "/api/items?page=2")
    assert seen["path"] == "/api/items?page=2"
    with pytest.raises(AssertionError_, match="^assertion_binding$"):
        signed.verify(assertion, method="GET", path=seen["path"])


def test_other_audience_fails(signed, keys):
    assertion, seen = send(signed, keys)
    with pytest.raises(AssertionError_, match="^assertion_audience$"):
        signed.verify(assertion, method=seen["method"], path=path_only(seen), audience="billing-service")


def test_other_issuer_fails(signed, keys):
    assertion, seen = send(signed, keys)
    with pytest.raises(AssertionError_, match="^assertion_invalid$"):
        verify_assertion(assertion, signed.key_for(assertion), audience=SERVICE, method=seen["method"],
                         path=path_only(seen), issuer="someone-else")


def test_other_key_fails(signed, keys):
    assertion, seen = send(signed, keys)
    wrong = secrets.token_hex(24) if signed.alg == "HS256" else ED_NEXT.public_key()
    with pytest.raises(AssertionError_, match="^assertion_invalid$"):
        verify_assertion(assertion, wrong, audience=SERVICE, method=seen["method"], path=path_only(seen),
                         issuer=signed.issuer)


def test_tampered_claims_fail(signed, keys):
    assertion, seen = send(signed, keys)
    header, payload, signature = assertion.split(".")
    forged = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b'"alice"', b'"admin"')).decode()
    assert forged != payload
    with pytest.raises(AssertionError_, match="^assertion_invalid$"):
        verify_as_upstream(signed, f"{header}.{forged}.{signature}", seen)


def forge(assertion: str, alg: str, key: Any) -> str:
    """The assertion's own claims, re-signed by someone else with ``alg``."""
    payload = jwt.decode(assertion, options={"verify_signature": False})
    header = {"alg": alg, "typ": "JWT", "kid": jwt.get_unverified_header(assertion)["kid"]}
    return jwk.encode(header, payload, key)


def test_forged_with_another_algorithm_is_invalid(signed, keys):
    # The key decides the algorithm: an EdDSA service is not fooled by an HS256 assertion keyed
    # with its public key bytes, an HS256 service not by an attacker's EdDSA assertion.
    assertion, seen = send(signed, keys)
    if signed.alg == "EdDSA":
        forged = forge(assertion, "HS256", ED_CURRENT.public_key().public_bytes_raw())
    else:
        forged = forge(assertion, "EdDSA", ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(AssertionError_, match="^assertion_invalid$"):
        verify_as_upstream(signed, forged, seen)


def test_unsigned_assertion_is_invalid(signed, keys):
    assertion, seen = send(signed, keys)
    with pytest.raises(AssertionError_, match="^assertion_invalid$"):
        verify_as_upstream(signed, forge(assertion, "none", None), seen)


def test_missing_assertion_is_refused_by_the_example():
    with pytest.raises(AssertionError_, match="^assertion_missing$"):
        verify_assertion(None, b"k" * 32, audience=SERVICE, method="GET", path="/")


# ----------------------------------------------------------------------------------------------
# What the assertion carries
# ----------------------------------------------------------------------------------------------

def test_header_names_the_algorithm_and_the_signing_kid(signed, keys):
    assertion, _ = send(signed, keys)
    header = jwt.get_unverified_header(assertion)
    assert header == {"alg": signed.alg, "typ": "JWT",
                      "kid": "hs-1" if signed.alg == "HS256" else "ed-current"}


def test_claims_carry_the_normalized_identity(signed, keys):
    tok_claims = claims(sub="carol", realm_access={"roles": ["user", "admin"]}, groups=["eng"],
                        scope="runs:read runs:write", tenant_id="acme")
    assertion, seen = send(signed, keys, claims_=tok_claims)
    verified = verify_as_upstream(signed, assertion, seen)
    assert verified["sub"] == "carol" == seen["headers"]["x-identity-subject"]
    assert verified["iss"] == signed.issuer
    assert verified["aud"] == SERVICE
    assert verified["v"] == 1
    assert verified["idp"] == ISSUER
    assert verified["provider"] == "primary"
    assert verified["roles"] == ["user", "admin"]
    assert verified["groups"] == ["eng"]
    assert verified["scopes"] == ["runs:read", "runs:write"]
    assert verified["tenant"] == "acme"
    assert "nbf" not in verified


def test_empty_lists_are_present_and_an_absent_tenant_is_left_out(signed, keys):
    assertion, seen = send(signed, keys, claims_=claims(realm_access=None, scope=None))
    verified = verify_as_upstream(signed, assertion, seen)
    assert (verified["roles"], verified["groups"], verified["scopes"]) == ([], [], [])
    assert "tenant" not in verified


def test_lifetime_is_short_and_starts_now(signed, keys):
    before = int(time.time())
    assertion, seen = send(signed, keys)
    verified = verify_as_upstream(signed, assertion, seen)
    assert verified["exp"] - verified["iat"] == signed.lifetime
    assert before - 1 <= verified["iat"] <= int(time.time()) + 1


def test_each_request_gets_its_own_jti_and_request_id(signed, keys):
    first = verify_as_upstream(signed, *send(signed, keys))
    second = verify_as_upstream(signed, *send(signed, keys))
    for verified in (first, second):
        assert len(verified["jti"]) == 32 and int(verified["jti"], 16) >= 0
    assert first["jti"] != second["jti"]
    assert first["req"]["id"] != second["req"]["id"]


def test_request_id_is_the_one_envoy_generated_and_the_upstream_saw(signed, keys):
    assertion, seen = send(signed, keys)
    request_id = seen["headers"]["x-request-id"]
    # Envoy's HCM generates a UUID before any filter runs, so the filter never needs its own.
    assert len(request_id) == 36 and request_id.count("-") == 4
    assert verify_as_upstream(signed, assertion, seen)["req"]["id"] == request_id


def test_client_sent_request_id_is_kept_by_envoy_and_bound(signed, keys):
    # What actually happens: with the HCM defaults (use_remote_address: false) Envoy treats the
    # request as not coming from the edge and keeps a client-sent x-request-id; the filter binds
    # the assertion to the id the upstream receives, whichever it is. (With use_remote_address:
    # true Envoy replaces it: see the next test.) So req.id may be chosen by the client: it is
    # correlation, not a secret (docs/identity-contract.md).
    assertion, seen = send(signed, keys, headers={"x-request-id": "client-chosen-id"})
    assert seen["headers"]["x-request-id"] == "client-chosen-id"
    assert [n for n, _ in seen["header_list"]].count("x-request-id") == 1
    assert verify_as_upstream(signed, assertion, seen)["req"]["id"] == "client-chosen-id"


@pytest.fixture(scope="module")
def edge(wasm, echo, keys, request):
    """The HS256 configuration behind an Envoy that treats clients as external
    (``use_remote_address: true``), as an edge proxy should."""
    envoy = Envoy(wasm, hs256_config(keys), upstream_port=echo.port, name="assert-edge")
    hcm = envoy.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    hcm["typed_config"]["use_remote_address"] = True
    envoy.start()
    yield Signed("HS256", envoy, "identity-filter", HS_LIFETIME, lambda _: HS_SECRET)
    envoy.stop()
    if request.session.testsfailed == 0:
        envoy.remove_workdir()


def test_edge_envoy_replaces_a_client_sent_request_id_and_the_assertion_binds_its_own(edge, keys):
    assertion, seen = send(edge, keys, headers={"x-request-id": "client-chosen-id"})
    request_id = seen["headers"]["x-request-id"]
    assert request_id != "client-chosen-id" and len(request_id) == 36
    assert verify_as_upstream(edge, assertion, seen)["req"]["id"] == request_id


def test_filter_generates_the_request_id_when_its_header_is_missing(envoy_with, keys):
    # With another request_id_header Envoy sets nothing, so the filter generates the id, sets
    # the header for the upstream and binds the assertion to it.
    config = hs256_config(keys)
    config["headers"]["assertion"]["request_id_header"] = "X-Correlation-Id"
    signed = Signed("HS256", envoy_with(config, "assert-corr"), "identity-filter", HS_LIFETIME,
                    lambda _: HS_SECRET)
    assertion, seen = send(signed, keys)
    generated = seen["headers"]["x-correlation-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert verify_as_upstream(signed, assertion, seen)["req"]["id"] == generated
    assertion, seen = send(signed, keys, headers={"x-correlation-id": "corr-7"})
    assert seen["headers"]["x-correlation-id"] == "corr-7"
    assert verify_as_upstream(signed, assertion, seen)["req"]["id"] == "corr-7"


# ----------------------------------------------------------------------------------------------
# When there is one, and spoofing
# ----------------------------------------------------------------------------------------------

def test_anonymous_request_gets_no_assertion(signed):
    seen = assert_allowed(signed.envoy.get("/public/page"))
    assert "x-identity-assertion" not in seen["headers"]


def test_anonymous_route_with_a_valid_token_gets_an_assertion(signed, keys):
    assertion, seen = send(signed, keys, path="/public/page")
    assert verify_as_upstream(signed, assertion, seen)["sub"] == "alice"


def test_spoofed_assertion_on_an_anonymous_route_never_reaches_the_upstream(signed):
    forged = jwt.encode(claims(), HS_SECRET, algorithm="HS256")
    seen = assert_allowed(signed.envoy.get("/public/page", {"x-identity-assertion": forged}))
    assert "x-identity-assertion" not in seen["headers"]


def test_spoofed_assertion_on_an_authenticated_route_is_replaced(signed, keys):
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
    assertion, seen = send(signed, keys, headers={"X-Identity-Assertion": forged,
                                                   "x-identity-subject": "admin"})
    assert [n for n, _ in seen["header_list"]].count("x-identity-assertion") == 1
    assert assertion != forged
    assert verify_as_upstream(signed, assertion, seen)["sub"] == "alice"
    assert seen["headers"]["x-identity-subject"] == "alice"


def test_denied_request_mints_nothing_and_reaches_no_upstream(signed, keys):
    reply = signed.envoy.get("/admin/users", {"x-identity-assertion": "forged", **bearer(token(keys))})
    assert_denied(reply, "forbidden", rule="admin")
    assert reply.header("x-identity-assertion") is None


def test_token_is_not_forwarded_next_to_the_assertion(signed, keys):
    _, seen = send(signed, keys)
    assert "authorization" not in seen["headers"]


# ----------------------------------------------------------------------------------------------
# EdDSA: the filter's JWKS, served through Envoy
# ----------------------------------------------------------------------------------------------

class TestServedJwks:
    def test_jwks_is_served_by_the_filter_without_a_token(self, eddsa):
        reply = eddsa.envoy.get(JWKS_PATH)
        assert reply.status == 200 and not reply.from_upstream, reply
        assert reply.header("content-type") == "application/json"
        assert [k["kid"] for k in reply.json()["keys"]] == ["ed-current", "ed-next"]

    def test_jwks_publishes_public_keys_only(self, eddsa):
        reply = eddsa.envoy.get(JWKS_PATH)
        for key in reply.json()["keys"]:
            assert key["kty"] == "OKP" and key["crv"] == "Ed25519"
            assert "d" not in key
        for private in (ED_CURRENT, ED_NEXT):
            d = private_jwk(private)["d"]
            assert d not in reply.text
        served_x = [k["x"] for k in reply.json()["keys"]]
        assert served_x == [private_jwk(ED_CURRENT)["x"], private_jwk(ED_NEXT)["x"]]

    def test_jwks_ignores_a_query_string(self, eddsa):
        reply = eddsa.envoy.get(JWKS_PATH + "?v=1")
        assert reply.status == 200 and not reply.from_upstream, reply

    def test_jwks_path_is_only_answered_to_get_and_head(self, eddsa):
        assert_denied(eddsa.envoy.request("POST", JWKS_PATH, body="{}"), "forbidden", rule="default")
        head = eddsa.envoy.request("HEAD", JWKS_PATH)
        assert head.status == 200 and not head.from_upstream

    def test_assertion_verifies_with_the_served_key_chosen_by_kid(self, eddsa, keys):
        assertion, seen = send(eddsa, keys)
        key = served_key(eddsa.envoy, assertion)
        verified = verify_assertion(assertion, key, audience=SERVICE, method=seen["method"],
                                    path=path_only(seen), issuer=ED_ISSUER)
        assert verified["sub"] == "alice"

    def test_assertion_does_not_verify_with_the_published_next_key(self, eddsa, keys):
        assertion, seen = send(eddsa, keys)
        document = eddsa.envoy.get(JWKS_PATH).json()
        nxt = jwt.PyJWK([k for k in document["keys"] if k["kid"] == "ed-next"][0]).key
        with pytest.raises(AssertionError_, match="^assertion_invalid$"):
            verify_assertion(assertion, nxt, audience=SERVICE, method=seen["method"],
                             path=path_only(seen), issuer=ED_ISSUER)

    def test_hs256_configuration_serves_no_jwks(self, hs256):
        # No jwks_path: the path is an ordinary request (default deny here).
        assert_denied(hs256.envoy.get(JWKS_PATH), "forbidden", rule="default")

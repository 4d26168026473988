"""A real OpenID provider (oidc-provider, tools/oidc_provider.py) behind real Envoy.

First the provider itself (no Envoy): its access tokens verify against its own JWKS, for both
client authentication methods, and its key rotation steps show in the JWKS and the tokens.

Then the filter in Envoy with ``discovery: true``: it finds the provider's JWKS through
``<issuer>/.well-known/openid-configuration``, fetched through the Envoy cluster ``idp`` that
points at the provider, and checks tokens the provider issued with the client-credentials grant
(JWT access tokens for a resource indicator, RFC 8707 / RFC 9068): identity headers, the
audience, scopes against rules, expiry, a foreign issuer, and a key rotation while requests keep
flowing. Each test starts its own provider and Envoy (about 2 s), with short refresh intervals.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import jwt  # PyJWT
import pytest

import oidc_provider
from envoy_runner import Envoy
from oidc_provider import Client, OidcError, OidcProvider
from support import assert_allowed, assert_denied, assert_invalid_token, bearer

ORDERS = "api://orders"
ORDERS_SCOPES = "orders:read orders:write"


def verified(op: OidcProvider, token: str, audience: str = ORDERS) -> dict:
    """The token's claims, checked by PyJWT against the provider's published JWKS."""
    keys = jwt.PyJWKSet.from_dict(op.jwks())
    header = jwt.get_unverified_header(token)
    return jwt.decode(token, keys[header["kid"]].key, algorithms=[header["alg"]],
                      audience=audience, issuer=op.issuer)


# -------------------------------------------------------------------------------------------
# The provider itself
# -------------------------------------------------------------------------------------------

def test_provider_issues_jwt_access_tokens_for_both_client_auth_methods(oidc_provider_with):
    basic = Client.basic("reader", scope="orders:read", extra_claims={"org": {"team": "blue"}})
    signed = Client.private_key_jwt("robot", scope=ORDERS_SCOPES)
    op = oidc_provider_with(clients=[basic, signed], resources={ORDERS: ORDERS_SCOPES})
    assert op.discovery()["issuer"] == op.issuer == f"http://127.0.0.1:{op.port}"
    assert op.discovery()["jwks_uri"] == op.jwks_url

    token = op.token(basic, scope="orders:read", resource=ORDERS)
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    claims = verified(op, token)
    assert (claims["sub"], claims["client_id"], claims["scope"]) == ("reader", "reader", "orders:read")
    assert claims["org"] == {"team": "blue"}

    claims = verified(op, op.token(signed, scope=ORDERS_SCOPES, resource=ORDERS))
    assert (claims["sub"], claims["scope"], claims["aud"]) == ("robot", ORDERS_SCOPES, ORDERS)


def test_provider_refuses_a_scope_the_client_may_not_have_and_an_unknown_resource(oidc_provider_with):
    op = oidc_provider_with(clients=[Client.basic("reader", scope="orders:read")],
                            resources={ORDERS: ORDERS_SCOPES})
    with pytest.raises(OidcError) as refused:
        op.token("reader", scope="orders:write", resource=ORDERS)
    assert (refused.value.status, refused.value.error) == (400, "invalid_scope")
    with pytest.raises(OidcError) as refused:
        op.token("reader", scope="orders:read", resource="api://elsewhere")
    assert (refused.value.status, refused.value.error) == (400, "invalid_target")
    with pytest.raises(OidcError) as refused:
        op.token(Client.basic("reader", secret="wrong"), scope="orders:read", resource=ORDERS)
    assert (refused.value.status, refused.value.error) == (401, "invalid_client")


def test_provider_rotation_steps_show_in_the_jwks_and_the_tokens(oidc_provider_with):
    op = oidc_provider_with(clients=[Client.basic("reader")], resources={ORDERS: ORDERS_SCOPES},
                            jwks_max_age=30)
    old = op.signing_kid
    assert op.jwks_headers()["cache-control"] == "public, max-age=30"

    new = op.rotate_publish()
    assert [k["kid"] for k in op.jwks()["keys"]] == [old, new]
    assert jwt.get_unverified_header(op.token("reader", resource=ORDERS))["kid"] == old

    op.rotate_sign(new)
    token = op.token("reader", resource=ORDERS)
    assert jwt.get_unverified_header(token)["kid"] == new
    verified(op, token)

    op.rotate_drop(old)
    assert [k["kid"] for k in op.jwks()["keys"]] == [new]
    with pytest.raises(oidc_provider.OidcProviderError):
        op.rotate_drop(new)  # the signing key stays
    op.set_jwks_max_age(None)
    assert "cache-control" not in op.jwks_headers()


def test_harness_names_the_make_target_when_the_provider_is_not_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(oidc_provider, "SERVER_DIR", tmp_path)
    with pytest.raises(oidc_provider.OidcProviderError, match="make oidc-provider"):
        OidcProvider().start()


# -------------------------------------------------------------------------------------------
# The filter in Envoy, keys found by discovery
# -------------------------------------------------------------------------------------------

BILLING = "api://billing"
SHORT = "api://orders-short"  # the orders API with one-second tokens
VMS = 2  # root contexts that fetch keys: Envoy's main thread and its one worker
HEADERS = [
    {"identity": "subject", "header": "x-identity-subject"},
    {"claim": "client_id", "header": "x-identity-client"},
    {"identity": "scopes", "header": "x-identity-scopes"},
    {"claim": "org.team", "header": "x-identity-team"},        # nested objects
    {"claim": "acme.tier", "header": "x-identity-tier"},       # a claim whose name has a dot
]


def resources() -> dict[str, Any]:
    return {ORDERS: ORDERS_SCOPES, BILLING: "billing:read",
            SHORT: {"scope": ORDERS_SCOPES, "audience": ORDERS, "access_token_ttl": 1}}


def filter_config(op: OidcProvider, remote_keys: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """One provider found by discovery (short intervals; ``overrides`` change its fields);
    writes need ``orders:write``."""
    provider: dict[str, Any] = {
        "name": "op",
        "issuer": op.issuer,
        "audiences": [ORDERS],
        "discovery": True,
        "upstream": "idp",
        "fetch_timeout_ms": 1000,
        "min_refresh_seconds": 1,
        "max_refresh_seconds": 60,
        "refetch_min_interval_seconds": 1,
        "max_stale_seconds": 60,
        "cold_start_wait_ms": 3000,
        **overrides,
    }
    return {
        "providers": [provider],
        "rules": [{"name": "orders-write", "match": {"path_prefix": "/orders", "methods": ["POST"]},
                   "require": {"scopes": {"all_of": ["orders:write"]}}}],
        "default": "authenticated",
        "remote_keys": remote_keys or {"tick_ms": 50},
        "headers": {"claims": HEADERS},
    }


@contextmanager
def gateway(wasm, echo, op: OidcProvider, **overrides: Any) -> Iterator[Envoy]:
    envoy = Envoy(wasm, filter_config(op, **overrides), upstream_port=echo.port,
                  extra_clusters=[{"name": "idp", "port": op.port}], name="oidc-provider")
    with envoy:
        yield envoy


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def test_real_tokens_pass_with_identity_headers_for_both_client_auth_methods(wasm, echo, oidc_provider_with):
    reader = Client.basic("reader", scope="orders:read",
                          extra_claims={"org": {"team": "blue"}, "acme.tier": "gold"})
    robot = Client.private_key_jwt("robot", scope=ORDERS_SCOPES)
    op = oidc_provider_with(clients=[reader, robot], resources=resources())
    with gateway(wasm, echo, op) as envoy:
        seen = assert_allowed(envoy.get("/orders", headers=bearer(op.token(reader, scope="orders:read",
                                                                               resource=ORDERS))))
        headers = seen["headers"]
        assert headers["x-identity-subject"] == "reader"
        assert headers["x-identity-client"] == "reader"
        assert headers["x-identity-scopes"] == "orders:read"
        assert headers["x-identity-team"] == "blue"
        assert headers["x-identity-tier"] == "gold"
        assert "authorization" not in headers

        token = op.token(robot, scope=ORDERS_SCOPES, resource=ORDERS)
        seen = assert_allowed(envoy.request("POST", "/orders", headers=bearer(token), body=b"{}"))
        assert seen["headers"]["x-identity-subject"] == "robot"
        assert seen["headers"]["x-identity-scopes"] == "orders:read,orders:write"
        assert "x-identity-team" not in seen["headers"]
        # The keys came from the provider itself: discovery, then its jwks_uri.
        assert 1 <= op.count("/.well-known/openid-configuration") <= VMS + 1
        assert op.count("/jwks") >= 1


@pytest.mark.parametrize("alg", ["PS256", "ES256", "ES384", "EdDSA"])
def test_real_tokens_signed_with_other_algorithms_pass(wasm, echo, oidc_provider_with, alg):
    op = oidc_provider_with(clients=[Client.basic("svc", scope="orders:read")], resources=resources(), alg=alg)
    with gateway(wasm, echo, op) as envoy:
        token = op.token("svc", scope="orders:read", resource=ORDERS)
        assert jwt.get_unverified_header(token)["alg"] == alg
        assert assert_allowed(envoy.get("/orders", headers=bearer(token)))["headers"]["x-identity-subject"] == "svc"


def test_token_for_another_resource_is_audience_mismatch(wasm, echo, oidc_provider_with):
    op = oidc_provider_with(clients=[Client.basic("svc", scope="orders:read billing:read")],
                            resources=resources())
    with gateway(wasm, echo, op) as envoy:
        assert_allowed(envoy.get("/orders", headers=bearer(op.token("svc", scope="orders:read",
                                                                        resource=ORDERS))))
        billing = op.token("svc", scope="billing:read", resource=BILLING)
        assert jwt.decode(billing, options={"verify_signature": False})["aud"] == BILLING
        assert_invalid_token(envoy.get("/orders", headers=bearer(billing)), "audience_mismatch")


def test_rule_needing_a_scope_the_client_lacks_is_403_insufficient_scope(wasm, echo, oidc_provider_with):
    reader = Client.basic("reader", scope="orders:read")
    writer = Client.private_key_jwt("writer", scope=ORDERS_SCOPES)
    op = oidc_provider_with(clients=[reader, writer], resources=resources())
    with gateway(wasm, echo, op) as envoy:
        token = op.token(reader, scope="orders:read", resource=ORDERS)
        assert_allowed(envoy.get("/orders", headers=bearer(token)))
        denied = envoy.request("POST", "/orders", headers=bearer(token), body=b"{}")
        assert_denied(denied, "insufficient_scope", rule="orders-write")
        assert denied.header("www-authenticate") == 'Bearer error="insufficient_scope", scope="orders:write"'
        # The writer was granted the scope; a token it requested without it is refused too.
        assert_allowed(envoy.request("POST", "/orders", body=b"{}", headers=bearer(
            op.token(writer, scope=ORDERS_SCOPES, resource=ORDERS))))
        assert_denied(envoy.request("POST", "/orders", body=b"{}", headers=bearer(
            op.token(writer, scope="orders:read", resource=ORDERS))), "insufficient_scope", rule="orders-write")


def test_expired_token_and_foreign_issuer_are_refused(wasm, echo, oidc_provider_with):
    op = oidc_provider_with(clients=[Client.basic("svc", scope="orders:read")], resources=resources())
    other = oidc_provider_with(clients=[Client.basic("svc", scope="orders:read")], resources=resources())
    with gateway(wasm, echo, op, clock_skew_seconds=0) as envoy:
        short = op.token("svc", scope="orders:read", resource=SHORT)
        claims = jwt.decode(short, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 1
        assert_allowed(envoy.get("/orders", headers=bearer(op.token("svc", scope="orders:read",
                                                                        resource=ORDERS))))
        # A token of another (real) issuer with the same client, resource and kid.
        foreign = other.token("svc", scope="orders:read", resource=ORDERS)
        assert kid_of(foreign) == op.signing_kid
        assert_invalid_token(envoy.get("/orders", headers=bearer(foreign)), "issuer_unknown")
        while time.time() < claims["exp"] + 1:
            time.sleep(0.1)
        assert_invalid_token(envoy.get("/orders", headers=bearer(short)), "token_expired")


@dataclass
class Sent:
    kid: str
    status: int
    reason: str | None


def send_continuously(envoy: Envoy, op: OidcProvider, client: Client, stop: threading.Event,
                      sent: list[Sent], errors: list[BaseException]) -> None:
    """Until ``stop``: a fresh token from the provider, then a request through Envoy."""
    try:
        while not stop.is_set():
            token = op.token(client, scope="orders:read", resource=ORDERS)
            reply = envoy.get("/orders", headers=bearer(token))
            sent.append(Sent(kid_of(token), reply.status, reply.header("x-identity-reason")))
    except BaseException as error:  # noqa: BLE001 - reported by the test
        errors.append(error)


# `waiting: none` answers a token with an unknown kid 401 at once (the refetch runs in the
# background): there the rotation passes only because the gateway had the new key from its
# regular refresh (the JWKS's max-age: 1 s) before the first token signed with it arrived.
@pytest.mark.parametrize("waiting", ["auto", "none"])
def test_key_rotation_mid_run_without_a_single_failed_request(wasm, echo, oidc_provider_with, waiting):
    client = Client.private_key_jwt("robot", scope="orders:read")
    op = oidc_provider_with(clients=[client], resources=resources(), jwks_max_age=1)
    old = op.signing_kid
    old_token = op.token(client, scope="orders:read", resource=ORDERS)
    with gateway(wasm, echo, op, remote_keys={"tick_ms": 50, "waiting": waiting}) as envoy:
        op.wait_for_count("/jwks", VMS)  # `none` does not wait for the first keys either
        deadline = time.monotonic() + 5
        while envoy.get("/orders", headers=bearer(old_token)).status == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert_allowed(envoy.get("/orders", headers=bearer(old_token)))
        stop = threading.Event()
        sent: list[Sent] = []
        errors: list[BaseException] = []
        sender = threading.Thread(target=send_continuously, args=(envoy, op, client, stop, sent, errors))
        sender.start()
        try:
            def refreshed() -> None:
                """Both of Envoy's root contexts fetched the JWKS since now (max-age 1 s)."""
                op.wait_for_count("/jwks", op.count("/jwks") + VMS, timeout=10)

            time.sleep(0.5)
            new = op.rotate_publish()      # 1. the new key is published beside the old one
            refreshed()
            op.rotate_sign(new)            # 2. tokens are signed with the new key
            refreshed()
            op.rotate_drop(old)            # 3. the old key leaves the JWKS
            refreshed()
            time.sleep(0.3)
        finally:
            stop.set()
            sender.join(timeout=10)
        assert not errors, errors
        failed = [s for s in sent if s.status != 200]
        assert not failed, f"{len(failed)} of {len(sent)} requests failed: {failed[:5]}"
        kids = [s.kid for s in sent]
        assert kids[0] == old and kids[-1] == new, (kids[0], kids[-1])
        assert kids.count(old) >= 5 and kids.count(new) >= 5, (kids.count(old), kids.count(new))
        assert op.kids() == [new]
        # The gateway followed the drop: a token signed with the old key is no longer accepted.
        assert_invalid_token(envoy.get("/orders", headers=bearer(old_token)), "key_not_found")


def test_a_start_that_stalls_is_made_again_then_refused(tmp_path, monkeypatch):
    """A provider process that never says it is ready is stopped and started again, up to
    START_ATTEMPTS times; then the start fails with the log's tail."""
    stall = tmp_path / "stall.mjs"
    stall.write_text("process.stderr.write('started\\n');\nsetTimeout(() => {}, 100000);\n")
    monkeypatch.setattr(oidc_provider, "SERVER", stall)
    provider = OidcProvider(startup_timeout=0.5, workdir=tmp_path / "work")
    started = time.monotonic()
    with pytest.raises(oidc_provider.OidcProviderError, match="no ready line"):
        provider.start()
    assert time.monotonic() - started >= oidc_provider.START_ATTEMPTS * 0.5
    assert (tmp_path / "work" / "server.log").read_text().count("started") == oidc_provider.START_ATTEMPTS
    assert not provider.running

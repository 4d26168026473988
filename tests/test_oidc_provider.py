"""A real OpenID provider (oidc-provider, tools/oidc_provider.py) in front of real Envoy.

First the provider itself (no Envoy): its access tokens verify against its own JWKS, for both
client authentication methods, and its key rotation steps show in the JWKS and the tokens.
"""

from __future__ import annotations

import jwt  # PyJWT
import pytest

import oidc_provider
from oidc_provider import Client, OidcError, OidcProvider

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

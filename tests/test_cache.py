"""The verified-token cache (``cache.max_entries``) in real Envoy: a hit skips the signature check
only, so a cached token is still refused once it expires, and still meets each route's policy.
The provider allows no clock skew, so expiry is observable within about two seconds."""

from __future__ import annotations

import time
from typing import Any

import pytest

import support
from support import AUDIENCE, ISSUER, assert_allowed, assert_denied, assert_invalid_token, bearer, claims, token


def cache_config(keys: support.Keys) -> dict[str, Any]:
    return {
        "providers": [{"name": "primary", "issuer": ISSUER, "audiences": [AUDIENCE],
                       "jwks": keys.primary_jwks(), "clock_skew_seconds": 0,
                       "identity": {"roles": ["realm_access.roles"]}}],
        "rules": [
            {"name": "open", "match": {"path_prefix": "/open"}},
            {"name": "admin", "match": {"path_prefix": "/admin"}, "require": {"roles": {"any_of": ["root"]}}},
            {"name": "partners", "match": {"path_prefix": "/partners"}, "require": {"issuers": [support.PARTNER_ISSUER]}},
            {"name": "writers", "match": {"path_prefix": "/write"}, "require": {"scopes": {"all_of": ["runs:admin"]}}},
        ],
        "default": "deny",
        "cache": {"max_entries": 16},
        "headers": {"claims": [{"claim": "sub", "header": "x-identity-subject"},
                               {"identity": "roles", "header": "x-identity-roles"}]},
    }


@pytest.fixture(scope="module")
def cached(envoy_with, keys):
    return envoy_with(cache_config(keys), "cache")


def subject(reply) -> str:
    return assert_allowed(reply)["headers"]["x-identity-subject"]


def test_same_token_twice_is_accepted_with_the_same_identity(cached, keys):
    tok = token(keys, claims(sub="dana"))
    first = assert_allowed(cached.get("/open/a", bearer(tok)))["headers"]
    second = assert_allowed(cached.get("/open/b", bearer(tok)))["headers"]
    assert first["x-identity-subject"] == second["x-identity-subject"] == "dana"
    assert first["x-identity-roles"] == second["x-identity-roles"] == "user,admin"
    assert "authorization" not in second


def test_token_expiring_after_it_was_cached_is_refused(cached, keys):
    t = support.now()
    tok = token(keys, claims(sub="erin", iat=t, exp=t + 1))
    assert subject(cached.get("/open/x", bearer(tok))) == "erin"
    while time.time() < t + 2:  # now > exp with no skew: at most ~2 s
        time.sleep(0.05)
    assert_invalid_token(cached.get("/open/x", bearer(tok)), "token_expired")


def test_cached_token_is_refused_by_a_rule_whose_roles_it_lacks(cached, keys):
    tok = token(keys, claims(sub="frank"))
    assert subject(cached.get("/open/x", bearer(tok))) == "frank"
    assert_denied(cached.get("/admin/x", bearer(tok)), "forbidden", rule="admin")
    assert subject(cached.get("/open/y", bearer(tok))) == "frank"


def test_cached_token_is_refused_by_a_rule_for_another_issuer(cached, keys):
    tok = token(keys)
    assert_allowed(cached.get("/open/x", bearer(tok)))
    assert_denied(cached.get("/partners/x", bearer(tok)), "forbidden", rule="partners")


def test_cached_token_missing_a_scope_is_insufficient_scope(cached, keys):
    tok = token(keys)
    assert_allowed(cached.get("/open/x", bearer(tok)))
    reply = cached.get("/write/x", bearer(tok))
    assert_denied(reply, "insufficient_scope", rule="writers")
    assert reply.header("www-authenticate") == 'Bearer error="insufficient_scope", scope="runs:admin"'


def test_cached_token_meeting_a_stricter_rule_is_allowed(cached, keys):
    tok = token(keys, claims(realm_access={"roles": ["root"]}))
    assert_allowed(cached.get("/open/x", bearer(tok)))
    assert_allowed(cached.get("/admin/x", bearer(tok)))


def test_tampered_copy_of_a_cached_token_is_not_a_hit(cached, keys):
    tok = token(keys)
    assert_allowed(cached.get("/open/x", bearer(tok)))
    header, payload, signature = tok.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert_invalid_token(cached.get("/open/x", bearer(f"{header}.{payload}.{flipped}")), "signature_invalid")
    assert_allowed(cached.get("/open/x", bearer(tok)))


def test_refused_token_is_not_remembered_as_good(cached, keys):
    t = support.now()
    tok = token(keys, claims(nbf=t + 600))
    for _ in range(2):
        assert_invalid_token(cached.get("/open/x", bearer(tok)), "token_not_yet_valid")

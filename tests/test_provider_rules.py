"""Rules per issuer in real Envoy: one route, two IdPs with different requirements. "okta" (the
primary issuer) grants scopes; "ci" (the partner issuer, shaped like GitHub Actions) proves a
repository claim. A third issuer, "third", has no rule of its own on the route.

With `match.providers` the token is verified before the rule is chosen: no token (or a bad one)
is the normal 401, never a later rule meant for someone else; a verified token takes the first
fitting rule gated to its provider (or not gated at all), else the default. In an `any_of` whose
branches are gated by issuer, a denial names what the caller's own branch lacked.
"""

from __future__ import annotations

from typing import Any

import pytest

from identity_devkit import jwk
from support import (AUDIENCE, ISSUER, PARTNER_ISSUER, assert_allowed, assert_denied, bearer, claims, partner_claims,
                     token)

THIRD_ISSUER = "https://third.test"


def config(keys) -> dict[str, Any]:
    return {
        "providers": [
            {"name": "okta", "issuer": ISSUER, "audiences": [AUDIENCE], "jwks": keys.primary_jwks()},
            {"name": "ci", "issuer": PARTNER_ISSUER, "jwks": keys.partner_jwks()},
            {"name": "third", "issuer": THIRD_ISSUER, "jwks": jwk.jwks(jwk.public_jwk(keys.stranger, kid="third-1"))},
        ],
        "rules": [
            {"name": "okta-deploy", "match": {"path_prefix": "/deploy", "providers": ["okta"]},
             "require": {"scopes": {"all_of": ["deploy:write"]}}},
            {"name": "ci-deploy", "match": {"path_prefix": "/deploy", "providers": ["ci"]},
             "require": {"claims": [{"claim": "repository", "equals": "acme/etl"}]}},
            {"name": "open-deploy", "match": {"path_prefix": "/deploy", "methods": ["GET"]}, "allow_anonymous": True},
            {"name": "either", "match": {"path_prefix": "/either"}, "require": {"any_of": [
                {"issuers": [ISSUER], "scopes": {"all_of": ["deploy:write"]}},
                {"providers": ["ci"], "claims": [{"claim": "repository", "equals": "acme/etl"}]},
            ]}},
        ],
        "default": "deny",
        "headers": {"claims": [{"identity": "provider", "header": "x-identity-provider"}]},
    }


@pytest.fixture(scope="module")
def envoy(envoy_with, keys):
    return envoy_with(config(keys), name="provider-rules")


def okta(keys, scope: str) -> dict[str, str]:
    return bearer(token(keys, claims(scope=scope)))


def ci(keys, repository: str) -> dict[str, str]:
    return bearer(token(keys, partner_claims(repository=repository), kid="partner-1", key=keys.partner))


def third(keys) -> dict[str, str]:
    return bearer(token(keys, claims(iss=THIRD_ISSUER), kid="third-1", key=keys.stranger))


def test_without_a_token_a_gated_route_is_401_not_the_later_anonymous_rule(envoy):
    for method in ("GET", "POST"):
        reply = envoy.request(method, "/deploy/1")
        assert_denied(reply, "token_missing")
        assert reply.header("www-authenticate") == "Bearer"


def test_a_bad_token_on_a_gated_route_is_its_own_401(envoy, keys):
    assert_denied(envoy.get("/deploy/1", bearer("not-a-jwt")), "token_malformed")
    expired = token(keys, claims(exp=1, iat=0))
    assert_denied(envoy.get("/deploy/1", bearer(expired)), "token_expired")


def test_the_scope_issuer_gets_its_rule_and_insufficient_scope(envoy, keys):
    upstream = assert_allowed(envoy.request("POST", "/deploy/1", okta(keys, "deploy:write")))
    assert upstream["headers"]["x-identity-provider"] == "okta"
    reply = envoy.request("POST", "/deploy/1", okta(keys, "deploy:read"))
    assert_denied(reply, "insufficient_scope", rule="okta-deploy")
    assert reply.header("www-authenticate") == 'Bearer error="insufficient_scope", scope="deploy:write"'


def test_the_ci_issuer_gets_its_rule_and_forbidden(envoy, keys):
    upstream = assert_allowed(envoy.request("POST", "/deploy/1", ci(keys, "acme/etl")))
    assert upstream["headers"]["x-identity-provider"] == "ci"
    assert_denied(envoy.request("POST", "/deploy/1", ci(keys, "acme/web")), "forbidden", rule="ci-deploy")


def test_an_issuer_without_a_rule_goes_on_to_the_next_rule_or_the_default(envoy, keys):
    upstream = assert_allowed(envoy.get("/deploy/1", third(keys)))
    assert upstream["headers"]["x-identity-provider"] == "third"
    assert_denied(envoy.request("POST", "/deploy/1", third(keys)), "forbidden", rule="default")


def test_any_of_gated_by_issuer_names_the_scope_the_callers_branch_lacks(envoy, keys):
    reply = envoy.get("/either", okta(keys, "deploy:read"))
    assert_denied(reply, "insufficient_scope", rule="either")
    assert reply.header("www-authenticate") == 'Bearer error="insufficient_scope", scope="deploy:write"'
    assert_denied(envoy.get("/either", ci(keys, "acme/web")), "forbidden", rule="either")
    assert_denied(envoy.get("/either", third(keys)), "forbidden", rule="either")
    assert_allowed(envoy.get("/either", okta(keys, "deploy:write")))
    assert_allowed(envoy.get("/either", ci(keys, "acme/etl")))

"""Claim paths, audience claims and per-provider claim headers in a real Envoy.

- Claim names with dots at any depth: a dotted path is resolved longest claim name first at
  every level; an array of names is taken literally (headers, identity mapping, rule conditions,
  required claims).
- `audience_claims`: a Cognito-style access token carries its client id in `client_id`, no `aud`.
- `providers[].claim_headers` replace `headers.claims` for that provider's tokens; every header
  named anywhere is stripped from every request (or refused, with `spoofed_headers: reject`).
"""

from __future__ import annotations

from typing import Any

import pytest

import support
from support import (AUDIENCE, ISSUER, PARTNER_ISSUER, assert_allowed, assert_denied, assert_invalid_token,
                     bearer, claims, partner_claims, token)

ROLES_CLAIM = "https://example.com/roles"
CLIENT_ID = "6f1q7cognito0client"


def config(keys: support.Keys, spoofed: str = "strip") -> dict[str, Any]:
    return {
        "providers": [
            {
                "name": "primary",
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "jwks": keys.primary_jwks(),
                "require_claims": ["sub", "org.https://example.com/tenant.id"],
                "identity": {"roles": [ROLES_CLAIM], "tenant": ["org.https://example.com/tenant.id"]},
            },
            {
                "name": "cognito",
                "issuer": PARTNER_ISSUER,
                "audiences": [CLIENT_ID],
                "audience_claims": ["aud", "client_id"],
                "jwks": keys.partner_jwks(),
                "identity": {"groups": ["cognito:groups"]},
                "claim_headers": [
                    {"identity": "subject", "header": "x-identity-subject"},
                    {"claim": "client_id", "header": "x-client-id"},
                    {"identity": "groups", "header": "x-cognito-groups"},
                ],
            },
        ],
        "rules": [
            {"name": "public", "match": {"path_prefix": "/public"}, "allow_anonymous": True},
            {"name": "admin", "match": {"path_prefix": "/admin"},
             "require": {"roles": {"any_of": ["admin"]}}},
            {"name": "flows", "match": {"path_template": "/t/{tenant}/flows"},
             "require": {"tenant_from_path": "tenant", "claims": [
                 {"claim": "kubernetes.io.namespace", "equals": "flows"},
                 {"claim": ["kubernetes.io", "serviceaccount", "name"], "equals": "worker"},
             ]}},
            {"name": "api", "match": {"path_prefix": "/api"}},
        ],
        "default": "deny",
        "headers": {
            "claims": [
                {"claim": "sub", "header": "x-identity-subject"},
                {"claim": ROLES_CLAIM, "header": "x-roles"},
                {"claim": "kubernetes.io.namespace", "header": "x-namespace"},
                {"claim": "a.b", "header": "x-ab-dotted"},
                {"claim": ["a.b"], "header": "x-ab-one-name"},
                {"claim": ["a", "b"], "header": "x-ab-nested"},
            ],
            "spoofed_headers": spoofed,
        },
    }


@pytest.fixture(scope="module")
def envoy(envoy_with, keys):
    return envoy_with(config(keys), "claim-paths")


@pytest.fixture(scope="module")
def rejecting(envoy_with, keys):
    return envoy_with(config(keys, spoofed="reject"), "claim-paths-reject")


ORG = {"https://example.com/tenant": {"id": "acme"}}


def primary(**overrides: Any) -> dict[str, Any]:
    return claims(**{"org": ORG, **overrides})


def cognito_access(**overrides: Any) -> dict[str, Any]:
    """A Cognito access token: `client_id`, `token_use`, `username`, no `aud`."""
    base = partner_claims(aud=None, client_id=CLIENT_ID, token_use="access", username="bob",
                          scope="aws.cognito.signin.user.admin", **{"cognito:groups": ["ops"]})
    base.pop("realm_access", None)
    for name, value in overrides.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def partner_token(keys, claims_: dict[str, Any]) -> str:
    return token(keys, claims_, "RS256", key=keys.partner, kid="partner-1")


# -- A. claim names with dots ------------------------------------------------------------------

def test_a_namespaced_claim_name_becomes_a_header_and_the_callers_roles(envoy, keys):
    tok = token(keys, primary(**{ROLES_CLAIM: ["admin", "ops"]}))
    seen = assert_allowed(envoy.get("/admin/users", bearer(tok)))
    assert seen["headers"]["x-roles"] == "admin,ops"


def test_without_the_namespaced_role_the_admin_rule_refuses(envoy, keys):
    tok = token(keys, primary(**{ROLES_CLAIM: ["ops"]}))
    assert_denied(envoy.get("/admin/users", bearer(tok)), "forbidden", rule="admin")


def test_the_longest_claim_name_wins_and_an_array_reaches_the_nested_one(envoy, keys):
    tok = token(keys, primary(**{"a.b": "top", "a": {"b": "nested"}}))
    seen = assert_allowed(envoy.get("/api/items", bearer(tok)))
    assert seen["headers"]["x-ab-dotted"] == "top"
    assert seen["headers"]["x-ab-one-name"] == "top"
    assert seen["headers"]["x-ab-nested"] == "nested"


def test_a_dotted_path_falls_back_when_the_longer_name_is_absent(envoy, keys):
    seen = assert_allowed(envoy.get("/api/items", bearer(token(keys, primary(a={"b": "nested"})))))
    assert seen["headers"]["x-ab-dotted"] == "nested"
    assert "x-ab-one-name" not in seen["headers"]


def test_rule_conditions_and_tenant_read_names_with_dots(envoy, keys):
    k8s = {"namespace": "flows", "serviceaccount": {"name": "worker"}}
    tok = token(keys, primary(**{"kubernetes.io": k8s}))
    seen = assert_allowed(envoy.get("/t/acme/flows", bearer(tok)))
    assert seen["headers"]["x-namespace"] == "flows"
    # The tenant comes from org.https://example.com/tenant.id: another tenant's path is refused.
    assert_denied(envoy.get("/t/other/flows", bearer(tok)), "forbidden", rule="flows")
    other = token(keys, primary(**{"kubernetes.io": {**k8s, "serviceaccount": {"name": "builder"}}}))
    assert_denied(envoy.get("/t/acme/flows", bearer(other)), "forbidden", rule="flows")


def test_a_required_claim_with_dots_in_its_names_must_be_present(envoy, keys):
    tok = token(keys, primary(org={"https://example.com/tenant": {}}))
    assert_invalid_token(envoy.get("/api/items", bearer(tok)), "claim_missing")


# -- B. audience outside `aud` -----------------------------------------------------------------

def test_an_access_token_with_the_client_id_and_no_aud_is_accepted(envoy, keys):
    tok = partner_token(keys, cognito_access())
    for _ in range(2):  # the second request is a cache hit: the audience is checked again
        seen = assert_allowed(envoy.get("/api/items", bearer(tok)))
        assert seen["headers"]["x-client-id"] == CLIENT_ID


def test_an_id_token_with_the_client_id_in_aud_is_accepted(envoy, keys):
    tok = partner_token(keys, cognito_access(aud=CLIENT_ID, client_id=None, token_use="id"))
    assert_allowed(envoy.get("/api/items", bearer(tok)))


def test_another_clients_token_is_an_audience_mismatch(envoy, keys):
    tok = partner_token(keys, cognito_access(client_id="another-client"))
    for _ in range(2):
        assert_invalid_token(envoy.get("/api/items", bearer(tok)), "audience_mismatch")


def test_the_client_id_does_not_count_for_a_provider_that_reads_only_aud(envoy, keys):
    tok = token(keys, primary(aud=None, client_id=AUDIENCE))
    assert_invalid_token(envoy.get("/api/items", bearer(tok)), "audience_mismatch")


# -- C. claim headers per provider -------------------------------------------------------------

def test_a_providers_own_claim_headers_replace_the_global_ones(envoy, keys):
    tok = partner_token(keys, cognito_access(**{"kubernetes.io": {"namespace": "flows"},
                                                ROLES_CLAIM: ["admin"]}))
    seen = assert_allowed(envoy.get("/api/items", bearer(tok)))
    assert seen["headers"]["x-identity-subject"] == "bob"
    assert seen["headers"]["x-client-id"] == CLIENT_ID
    assert seen["headers"]["x-cognito-groups"] == "ops"
    for global_only in ("x-namespace", "x-roles"):
        assert global_only not in seen["headers"], global_only


def test_the_global_claim_headers_never_include_another_providers(envoy, keys):
    tok = token(keys, primary(client_id=CLIENT_ID, **{"cognito:groups": ["ops"]}))
    seen = assert_allowed(envoy.get("/api/items", bearer(tok)))
    assert "x-client-id" not in seen["headers"]
    assert "x-cognito-groups" not in seen["headers"]


SPOOFED = {"x-client-id": CLIENT_ID, "x-cognito-groups": "admins", "x-namespace": "kube-system",
           "x-ab-nested": "1"}


def test_every_providers_claim_headers_are_stripped_on_an_anonymous_route(envoy):
    seen = assert_allowed(envoy.get("/public/page", SPOOFED))
    for header in SPOOFED:
        assert header not in seen["headers"], header


def test_another_providers_claim_headers_are_stripped_for_a_verified_caller(envoy, keys):
    seen = assert_allowed(envoy.get("/api/items", {**SPOOFED, **bearer(token(keys, primary()))}))
    for header in ("x-client-id", "x-cognito-groups", "x-namespace", "x-ab-nested"):
        assert header not in seen["headers"], header


@pytest.mark.parametrize("header", ["x-client-id", "X-Cognito-Groups"])
def test_a_providers_claim_header_sent_by_the_client_is_refused_when_rejecting(rejecting, keys, header):
    assert_denied(rejecting.get("/public/page", {header: "forged"}), "identity_header_spoofed")
    reply = rejecting.get("/api/items", {header: "forged", **bearer(partner_token(keys, cognito_access()))})
    assert_denied(reply, "identity_header_spoofed")


def test_in_report_only_mode_a_would_be_refused_request_loses_every_claim_header_too(envoy_with, keys):
    report_only = envoy_with({**config(keys), "report_only": True}, "claim-paths-report-only")
    tok = partner_token(keys, cognito_access(client_id="another-client"))
    seen = assert_allowed(report_only.get("/nowhere", {**SPOOFED, **bearer(tok)}))
    assert seen["headers"]["x-identity-report"] == "deny; reason=forbidden; rule=default"
    for header in SPOOFED:
        assert header not in seen["headers"], header

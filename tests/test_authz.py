"""Claims-based authorization in real Envoy: the per-provider identity mapping (Keycloak- and
Cognito-style claims, ``scp`` vs ``scope``, a nested tenant) shown through identity headers; every
rule match form (path, prefix, template with captures, methods, hosts) and every condition
(roles, groups, scopes any_of/all_of, issuers, tenants, tenant_from_path, claims equals / in /
equals_segment, nested any_of/all_of), each allowed and denied; first match wins; default deny.

Denials by a rule: ``403``, ``x-identity-reason: forbidden; rule=<name>`` and
``WWW-Authenticate: Bearer error="insufficient_scope"``; when only scopes are missing
``insufficient_scope; rule=<name>`` and the challenge names the scopes that would do.
"""

from __future__ import annotations

from typing import Any

import pytest

import support
from support import ISSUER, PARTNER_ISSUER, assert_allowed, assert_denied, assert_reason_body, bearer, now

KEYCLOAK_AUDIENCE = "api://orders"
COGNITO_ISSUER = PARTNER_ISSUER
COGNITO_CLIENT = "cognito-client-id"

# Normalized identity fields → the headers the echo upstream shows.
IDENTITY_FIELDS = ["subject", "issuer", "provider", "roles", "groups", "scopes", "tenant"]
HEADER = {field: f"x-id-{field}" for field in IDENTITY_FIELDS}


def authz_config(keys: support.Keys) -> dict[str, Any]:
    return {
        "providers": [
            {
                "name": "keycloak",
                "issuer": ISSUER,
                "audiences": [KEYCLOAK_AUDIENCE],
                "jwks": keys.primary_jwks(),
                "identity": {
                    "roles": ["realm_access.roles", "resource_access.orders.roles"],
                    "groups": ["groups"],
                    "tenant": ["org.tenant"],
                },
            },
            {
                "name": "cognito",
                "issuer": COGNITO_ISSUER,
                "audiences": [COGNITO_CLIENT],
                "jwks": keys.partner_jwks(),
                "identity": {
                    "subject": "username",
                    "roles": [],
                    "groups": ["cognito:groups"],
                    "scopes": ["scope"],
                    "tenant": ["custom:tenant"],
                },
            },
        ],
        "rules": [
            {"name": "whoami", "match": {"path": "/whoami"}},
            {"name": "health", "match": {"path": "/health"}, "allow_anonymous": True},
            {"name": "docs", "match": {"path_prefix": "/docs", "methods": ["GET", "HEAD"]},
             "allow_anonymous": True},
            {"name": "reports-read", "match": {"path_prefix": "/reports", "methods": ["GET"]}},
            {"name": "host-api", "match": {"path_prefix": "/hosted", "hosts": ["api.example.com"]},
             "allow_anonymous": True},
            {"name": "host-tenants", "match": {"path_prefix": "/hosted", "hosts": ["*.example.com"]},
             "require": {"roles": {"any_of": ["admin"]}}},
            {"name": "tenant-projects", "match": {"path_template": "/t/{tenant}/projects/{project}"},
             "require": {"tenant_from_path": "tenant"}},
            {"name": "team-board", "match": {"path_template": "/teams/{team}/board"},
             "require": {"claims": [{"claim": "teams", "equals_segment": "team"}]}},
            {"name": "roles-any", "match": {"path": "/roles/any"},
             "require": {"roles": {"any_of": ["admin", "ops"]}}},
            {"name": "roles-all", "match": {"path": "/roles/all"},
             "require": {"roles": {"all_of": ["user", "admin"]}}},
            {"name": "groups-any", "match": {"path": "/groups/any"},
             "require": {"groups": {"any_of": ["eng", "sre"]}}},
            {"name": "groups-all", "match": {"path": "/groups/all"},
             "require": {"groups": {"all_of": ["eng", "oncall"]}}},
            {"name": "scopes-any", "match": {"path": "/scopes/any"},
             "require": {"scopes": {"any_of": ["runs:read", "runs:admin"]}}},
            {"name": "scopes-all", "match": {"path": "/scopes/all"},
             "require": {"scopes": {"all_of": ["runs:read", "runs:write"]}}},
            {"name": "issuers", "match": {"path": "/issuers"},
             "require": {"issuers": [COGNITO_ISSUER]}},
            {"name": "tenants", "match": {"path": "/tenants"},
             "require": {"tenants": ["acme", "globex"]}},
            {"name": "claims-equals", "match": {"path": "/claims/equals"},
             "require": {"claims": [{"claim": "org.plan", "equals": "pro"}]}},
            {"name": "claims-number", "match": {"path": "/claims/number"},
             "require": {"claims": [{"claim": "level", "equals": 3}]}},
            {"name": "claims-in", "match": {"path": "/claims/in"},
             "require": {"claims": [{"claim": "org.plan", "in": ["pro", "enterprise"]}]}},
            {"name": "nested", "match": {"path": "/nested"},
             "require": {"any_of": [
                 {"roles": {"any_of": ["admin"]}},
                 {"all_of": [{"groups": {"any_of": ["eng"]}}, {"scopes": {"all_of": ["deploy"]}}]},
             ]}},
            {"name": "scope-alternatives", "match": {"path": "/scope-alternatives"},
             "require": {"any_of": [{"scopes": {"any_of": ["a:read"]}}, {"scopes": {"any_of": ["b:read"]}}]}},
            {"name": "scope-overlap", "match": {"path": "/scope-overlap"},
             "require": {"any_of": [{"scopes": {"all_of": ["runs:read", "runs:write"]}},
                                    {"scopes": {"all_of": ["runs:read", "runs:admin"]}}]}},
            {"name": "role-and-scope", "match": {"path": "/role-and-scope"},
             "require": {"roles": {"any_of": ["admin"]}, "scopes": {"all_of": ["runs:write"]}}},
            {"name": "strict", "match": {"path": "/order/strict"},
             "require": {"roles": {"any_of": ["root"]}}},
            {"name": "order", "match": {"path_prefix": "/order"}, "allow_anonymous": True},
        ],
        "default": "deny",
        "headers": {"claims": [{"identity": f, "header": h} for f, h in HEADER.items()]},
    }


@pytest.fixture(scope="module")
def authz(envoy_with, keys):
    return envoy_with(authz_config(keys), "authz")


def keycloak(keys: support.Keys, **overrides: Any) -> str:
    """A Keycloak-style token: realm roles user+viewer, client roles, groups eng, tenant acme."""
    t = now()
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": KEYCLOAK_AUDIENCE,
        "sub": "alice",
        "iat": t,
        "exp": t + 300,
        "realm_access": {"roles": ["user", "viewer"]},
        "resource_access": {"orders": {"roles": ["orders-reader"]}},
        "groups": ["eng"],
        "scope": "runs:read",
        "org": {"tenant": "acme", "plan": "pro"},
    }
    for name, value in overrides.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return support.token(keys, body)


def cognito(keys: support.Keys, **overrides: Any) -> str:
    """A Cognito-style access token: ``cognito:groups``, ``username``, ``custom:tenant``."""
    t = now()
    body: dict[str, Any] = {
        "iss": COGNITO_ISSUER,
        "aud": COGNITO_CLIENT,
        "sub": "5f1c-uuid",
        "username": "bob",
        "iat": t,
        "exp": t + 300,
        "cognito:groups": ["admins", "eng"],
        "scope": "openid orders/read",
        "custom:tenant": "globex",
    }
    body.update(overrides)
    return support.token(keys, body, kid="partner-1", key=keys.partner)


def as_seen(reply) -> dict[str, str]:
    """The identity headers the upstream received."""
    headers = assert_allowed(reply)["headers"]
    return {field: headers.get(HEADER[field]) for field in IDENTITY_FIELDS}


def assert_forbidden(reply, rule: str) -> None:
    assert_denied(reply, "forbidden", rule=rule)
    assert reply.header("www-authenticate") == 'Bearer error="insufficient_scope"', reply
    assert_reason_body(reply, "forbidden")


def assert_insufficient_scope(reply, rule: str, scopes: str) -> None:
    assert_denied(reply, "insufficient_scope", rule=rule)
    assert reply.header("www-authenticate") == f'Bearer error="insufficient_scope", scope="{scopes}"', reply
    assert_reason_body(reply, "insufficient_scope")


# ----------------------------------------------------------------------------------------------
# Identity mapping, seen through {"identity": ...} header mappings
# ----------------------------------------------------------------------------------------------

class TestIdentityMapping:
    def test_keycloak_realm_and_client_roles_are_merged(self, authz, keys):
        seen = as_seen(authz.get("/whoami", bearer(keycloak(keys))))
        assert seen["roles"] == "user,viewer,orders-reader"
        assert seen["subject"] == "alice"
        assert seen["issuer"] == ISSUER
        assert seen["provider"] == "keycloak"

    def test_duplicate_roles_appear_once(self, authz, keys):
        tok = keycloak(keys, resource_access={"orders": {"roles": ["viewer", "orders-admin"]}})
        assert as_seen(authz.get("/whoami", bearer(tok)))["roles"] == "user,viewer,orders-admin"

    def test_tenant_from_a_nested_claim(self, authz, keys):
        assert as_seen(authz.get("/whoami", bearer(keycloak(keys))))["tenant"] == "acme"

    def test_numeric_nested_tenant_becomes_text(self, authz, keys):
        tok = keycloak(keys, org={"tenant": 4711})
        assert as_seen(authz.get("/whoami", bearer(tok)))["tenant"] == "4711"

    def test_no_tenant_claim_sets_no_tenant_header(self, authz, keys):
        assert as_seen(authz.get("/whoami", bearer(keycloak(keys, org=None))))["tenant"] is None

    def test_space_delimited_scope_string_becomes_a_list(self, authz, keys):
        tok = keycloak(keys, scope="openid runs:read  runs:write")
        assert as_seen(authz.get("/whoami", bearer(tok)))["scopes"] == "openid,runs:read,runs:write"

    def test_scp_array_is_read_as_scopes(self, authz, keys):
        tok = keycloak(keys, scope=None, scp=["runs:read", "runs:write"])
        assert as_seen(authz.get("/whoami", bearer(tok)))["scopes"] == "runs:read,runs:write"

    def test_scope_string_and_scp_array_are_merged(self, authz, keys):
        tok = keycloak(keys, scope="openid runs:read", scp=["runs:read", "runs:write"])
        assert as_seen(authz.get("/whoami", bearer(tok)))["scopes"] == "openid,runs:read,runs:write"

    def test_cognito_groups_claim_with_a_colon(self, authz, keys):
        seen = as_seen(authz.get("/whoami", bearer(cognito(keys))))
        assert seen["groups"] == "admins,eng"
        assert seen["provider"] == "cognito"
        assert seen["issuer"] == COGNITO_ISSUER

    def test_cognito_subject_and_tenant_from_configured_claims(self, authz, keys):
        seen = as_seen(authz.get("/whoami", bearer(cognito(keys))))
        assert seen["subject"] == "bob"
        assert seen["tenant"] == "globex"
        assert seen["scopes"] == "openid,orders/read"

    def test_mapping_is_per_provider(self, authz, keys):
        # The keycloak mapping reads "groups", not "cognito:groups"; cognito maps no roles.
        kc = as_seen(authz.get("/whoami", bearer(keycloak(keys, **{"cognito:groups": ["admins"]}))))
        assert kc["groups"] == "eng"
        cg = as_seen(authz.get("/whoami", bearer(cognito(keys, roles=["admin"]))))
        assert cg["roles"] == ""

    def test_spoofed_identity_headers_never_reach_the_upstream(self, authz, keys):
        spoofed = {h: "spoofed" for h in HEADER.values()}
        seen = assert_allowed(authz.get("/health", spoofed))["headers"]
        assert not [h for h in HEADER.values() if h in seen]
        seen = assert_allowed(authz.get("/whoami", {**spoofed, **bearer(keycloak(keys, org=None))}))
        assert seen["headers"]["x-id-subject"] == "alice"
        assert HEADER["tenant"] not in seen["headers"]
        assert [n for n, _ in seen["header_list"]].count(HEADER["subject"]) == 1


# ----------------------------------------------------------------------------------------------
# Match forms
# ----------------------------------------------------------------------------------------------

class TestMatch:
    def test_exact_path_allows(self, authz):
        assert_allowed(authz.get("/health"))

    def test_exact_path_does_not_cover_a_longer_path(self, authz):
        assert_denied(authz.get("/health/x"), "forbidden", rule="default")

    def test_prefix_allows_below_it(self, authz):
        assert_allowed(authz.get("/docs/guide/intro"))

    def test_prefix_does_not_cover_a_longer_segment(self, authz):
        assert_denied(authz.get("/docsx"), "forbidden", rule="default")

    def test_listed_method_matches(self, authz, keys):
        assert_allowed(authz.request("HEAD", "/docs/guide"))
        assert_allowed(authz.get("/reports/q1", bearer(keycloak(keys))))

    def test_unlisted_method_falls_through_to_the_default(self, authz, keys):
        assert_forbidden(authz.request("POST", "/docs/guide", body="{}"), "default")
        assert_forbidden(authz.request("DELETE", "/reports/q1", bearer(keycloak(keys))), "default")

    def test_exact_host_matches_without_port_and_case(self, authz):
        assert_allowed(authz.get("/hosted/x", {"host": "API.Example.com:8443"}))

    def test_wildcard_host_matches_a_subdomain(self, authz, keys):
        # api.example.com is taken by the anonymous rule before; others need admin.
        assert_forbidden(authz.get("/hosted/x", {"host": "acme.example.com", **bearer(keycloak(keys))}),
                         "host-tenants")
        admin = keycloak(keys, realm_access={"roles": ["admin"]})
        assert_allowed(authz.get("/hosted/x", {"host": "acme.example.com", **bearer(admin)}))
        assert_allowed(authz.get("/hosted/x", {"host": "a.b.example.com", **bearer(admin)}))

    def test_wildcard_host_needs_a_token(self, authz):
        assert_denied(authz.get("/hosted/x", {"host": "acme.example.com"}), "token_missing")

    def test_wildcard_host_does_not_match_the_bare_domain_or_lookalikes(self, authz, keys):
        admin = keycloak(keys, realm_access={"roles": ["admin"]})
        for host in ("example.com", "badexample.com", "acme.example.com.evil.test"):
            assert_forbidden(authz.get("/hosted/x", {"host": host, **bearer(admin)}), "default")

    def test_template_matches_one_segment_per_capture(self, authz, keys):
        assert_allowed(authz.get("/t/acme/projects/etl", bearer(keycloak(keys))))
        assert_forbidden(authz.get("/t/acme/projects/etl/extra", bearer(keycloak(keys))), "default")
        assert_forbidden(authz.get("/t/acme/projects/", bearer(keycloak(keys))), "default")
        assert_forbidden(authz.get("/t//projects/etl", bearer(keycloak(keys))), "default")

    def test_template_ignores_the_query_string(self, authz, keys):
        assert_allowed(authz.get("/t/acme/projects/etl?page=2", bearer(keycloak(keys))))

    def test_first_matching_rule_wins_even_when_a_later_one_would_allow(self, authz, keys):
        assert_forbidden(authz.get("/order/strict", bearer(keycloak(keys))), "strict")
        assert_allowed(authz.get("/order/strict", bearer(keycloak(keys, realm_access={"roles": ["root"]}))))
        assert_allowed(authz.get("/order/other"))

    def test_default_deny_refuses_a_valid_caller(self, authz, keys):
        admin = keycloak(keys, realm_access={"roles": ["admin"]})
        assert_forbidden(authz.get("/unlisted", bearer(admin)), "default")

    def test_default_deny_refuses_without_a_token(self, authz):
        assert_forbidden(authz.get("/unlisted"), "default")


# ----------------------------------------------------------------------------------------------
# Conditions
# ----------------------------------------------------------------------------------------------

class TestConditions:
    def test_authenticated_rule_without_token(self, authz):
        reply = authz.get("/roles/any")
        assert_denied(reply, "token_missing")
        assert reply.header("www-authenticate") == "Bearer"

    def test_roles_any_of_allows_one_of_them(self, authz, keys):
        assert_allowed(authz.get("/roles/any", bearer(keycloak(keys, realm_access={"roles": ["ops"]}))))

    def test_roles_any_of_denies_none_of_them(self, authz, keys):
        assert_forbidden(authz.get("/roles/any", bearer(keycloak(keys))), "roles-any")

    def test_roles_from_the_client_roles_path_count(self, authz, keys):
        tok = keycloak(keys, resource_access={"orders": {"roles": ["ops"]}})
        assert_allowed(authz.get("/roles/any", bearer(tok)))

    def test_roles_all_of_allows_every_one(self, authz, keys):
        tok = keycloak(keys, realm_access={"roles": ["admin", "user", "x"]})
        assert_allowed(authz.get("/roles/all", bearer(tok)))

    def test_roles_all_of_denies_a_missing_one(self, authz, keys):
        tok = keycloak(keys, realm_access={"roles": ["user"]})
        assert_forbidden(authz.get("/roles/all", bearer(tok)), "roles-all")

    def test_groups_any_of_allows(self, authz, keys):
        assert_allowed(authz.get("/groups/any", bearer(keycloak(keys, groups=["sre"]))))
        assert_allowed(authz.get("/groups/any", bearer(cognito(keys))))

    def test_groups_any_of_denies(self, authz, keys):
        assert_forbidden(authz.get("/groups/any", bearer(keycloak(keys, groups=["sales"]))), "groups-any")

    def test_groups_all_of_allows(self, authz, keys):
        assert_allowed(authz.get("/groups/all", bearer(keycloak(keys, groups=["oncall", "eng"]))))

    def test_groups_all_of_denies(self, authz, keys):
        assert_forbidden(authz.get("/groups/all", bearer(cognito(keys))), "groups-all")

    def test_groups_must_be_mapped_to_count(self, authz, keys):
        # "cognito:groups" in a keycloak token is not mapped: only "groups" counts.
        tok = keycloak(keys, groups=None, **{"cognito:groups": ["eng"]})
        assert_forbidden(authz.get("/groups/any", bearer(tok)), "groups-any")

    def test_scopes_any_of_allows(self, authz, keys):
        assert_allowed(authz.get("/scopes/any", bearer(keycloak(keys, scope=None, scp=["runs:admin"]))))

    def test_scopes_any_of_denies_with_insufficient_scope(self, authz, keys):
        reply = authz.get("/scopes/any", bearer(keycloak(keys, scope="openid")))
        assert_insufficient_scope(reply, "scopes-any", "runs:read runs:admin")

    def test_scopes_all_of_allows(self, authz, keys):
        assert_allowed(authz.get("/scopes/all", bearer(keycloak(keys, scope="runs:write runs:read"))))

    def test_scopes_all_of_names_only_the_missing_scope(self, authz, keys):
        reply = authz.get("/scopes/all", bearer(keycloak(keys, scope="runs:read")))
        assert_insufficient_scope(reply, "scopes-all", "runs:write")

    def test_scopes_all_of_with_no_scopes_names_every_one(self, authz, keys):
        reply = authz.get("/scopes/all", bearer(keycloak(keys, scope=None)))
        assert_insufficient_scope(reply, "scopes-all", "runs:read runs:write")

    def test_issuers_allows_a_listed_issuer(self, authz, keys):
        assert_allowed(authz.get("/issuers", bearer(cognito(keys))))

    def test_issuers_denies_another_trusted_issuer(self, authz, keys):
        assert_forbidden(authz.get("/issuers", bearer(keycloak(keys))), "issuers")

    def test_tenants_allows_a_listed_tenant(self, authz, keys):
        assert_allowed(authz.get("/tenants", bearer(keycloak(keys))))
        assert_allowed(authz.get("/tenants", bearer(cognito(keys))))

    def test_tenants_denies_another_tenant(self, authz, keys):
        tok = keycloak(keys, org={"tenant": "initech"})
        assert_forbidden(authz.get("/tenants", bearer(tok)), "tenants")

    def test_tenants_denies_a_caller_without_tenant(self, authz, keys):
        assert_forbidden(authz.get("/tenants", bearer(keycloak(keys, org=None))), "tenants")

    def test_tenant_from_path_allows_the_own_tenant(self, authz, keys):
        assert_allowed(authz.get("/t/acme/projects/etl", bearer(keycloak(keys))))
        assert_allowed(authz.get("/t/globex/projects/etl", bearer(cognito(keys))))

    def test_tenant_from_path_denies_another_tenant(self, authz, keys):
        assert_forbidden(authz.get("/t/globex/projects/etl", bearer(keycloak(keys))), "tenant-projects")

    def test_tenant_from_path_denies_a_caller_without_tenant(self, authz, keys):
        assert_forbidden(authz.get("/t/acme/projects/etl", bearer(keycloak(keys, org=None))),
                         "tenant-projects")

    def test_tenant_from_path_compares_the_decoded_segment(self, authz, keys):
        tok = keycloak(keys, org={"tenant": "acme corp"})
        assert_allowed(authz.get("/t/acme%20corp/projects/etl", bearer(tok)))
        assert_forbidden(authz.get("/t/acme/projects/etl", bearer(tok)), "tenant-projects")

    def test_tenant_from_path_is_case_sensitive(self, authz, keys):
        assert_forbidden(authz.get("/t/ACME/projects/etl", bearer(keycloak(keys))), "tenant-projects")

    def test_claim_equals_allows(self, authz, keys):
        assert_allowed(authz.get("/claims/equals", bearer(keycloak(keys))))

    def test_claim_equals_denies_another_value(self, authz, keys):
        tok = keycloak(keys, org={"tenant": "acme", "plan": "free"})
        assert_forbidden(authz.get("/claims/equals", bearer(tok)), "claims-equals")

    def test_claim_equals_denies_an_absent_claim(self, authz, keys):
        assert_forbidden(authz.get("/claims/equals", bearer(keycloak(keys, org=None))), "claims-equals")

    def test_claim_equals_compares_json_types(self, authz, keys):
        assert_allowed(authz.get("/claims/number", bearer(keycloak(keys, level=3))))
        assert_forbidden(authz.get("/claims/number", bearer(keycloak(keys, level="3"))), "claims-number")

    def test_claim_in_allows_any_listed_value(self, authz, keys):
        tok = keycloak(keys, org={"plan": "enterprise"})
        assert_allowed(authz.get("/claims/in", bearer(tok)))

    def test_claim_in_denies_an_unlisted_value(self, authz, keys):
        tok = keycloak(keys, org={"plan": "free"})
        assert_forbidden(authz.get("/claims/in", bearer(tok)), "claims-in")

    def test_claim_equals_segment_with_an_array_claim(self, authz, keys):
        tok = keycloak(keys, teams=["payments", "ledger"])
        assert_allowed(authz.get("/teams/ledger/board", bearer(tok)))

    def test_claim_equals_segment_denies_another_segment(self, authz, keys):
        tok = keycloak(keys, teams=["payments", "ledger"])
        assert_forbidden(authz.get("/teams/risk/board", bearer(tok)), "team-board")

    def test_claim_equals_segment_with_a_string_claim(self, authz, keys):
        assert_allowed(authz.get("/teams/risk/board", bearer(keycloak(keys, teams="risk"))))

    def test_nested_any_of_first_branch(self, authz, keys):
        tok = keycloak(keys, realm_access={"roles": ["admin"]}, groups=[], scope="")
        assert_allowed(authz.get("/nested", bearer(tok)))

    def test_nested_any_of_second_branch_needs_all_of_it(self, authz, keys):
        assert_allowed(authz.get("/nested", bearer(keycloak(keys, scope="deploy"))))

    def test_nested_denies_when_no_branch_holds(self, authz, keys):
        # groups eng holds, scope deploy does not, no admin role: a mixed failure is "forbidden".
        assert_forbidden(authz.get("/nested", bearer(keycloak(keys))), "nested")

    def test_any_of_scope_alternatives_name_every_alternative(self, authz, keys):
        reply = authz.get("/scope-alternatives", bearer(keycloak(keys)))
        assert_insufficient_scope(reply, "scope-alternatives", "a:read b:read")
        assert_allowed(authz.get("/scope-alternatives", bearer(keycloak(keys, scope="b:read"))))

    def test_scope_shared_by_alternatives_is_named_once(self, authz, keys):
        reply = authz.get("/scope-overlap", bearer(keycloak(keys, scope="openid")))
        assert_insufficient_scope(reply, "scope-overlap", "runs:read runs:write runs:admin")
        assert_allowed(authz.get("/scope-overlap", bearer(keycloak(keys, scope="runs:admin runs:read"))))

    def test_missing_role_and_scope_is_forbidden_not_insufficient_scope(self, authz, keys):
        assert_forbidden(authz.get("/role-and-scope", bearer(keycloak(keys))), "role-and-scope")

    def test_only_scope_missing_is_insufficient_scope(self, authz, keys):
        tok = keycloak(keys, realm_access={"roles": ["admin"]})
        assert_insufficient_scope(authz.get("/role-and-scope", bearer(tok)), "role-and-scope", "runs:write")

    def test_role_and_scope_present_allows(self, authz, keys):
        tok = keycloak(keys, realm_access={"roles": ["admin"]}, scope="runs:write")
        assert_allowed(authz.get("/role-and-scope", bearer(tok)))

    def test_invalid_token_is_401_before_any_condition(self, authz, keys):
        tok = keycloak(keys, aud="api://elsewhere", realm_access={"roles": ["admin"]})
        support.assert_invalid_token(authz.get("/roles/any", bearer(tok)), "audience_mismatch")


# ----------------------------------------------------------------------------------------------
# Paths with dot segments
# ----------------------------------------------------------------------------------------------

class TestDotSegments:
    """Rules match the path as sent, and this Envoy does not normalize it (``normalize_path`` is
    off by default), so ``/docs/../roles/any`` would match the anonymous ``/docs`` prefix while an
    upstream that resolves dot segments serves ``/roles/any``. Such paths match no rule: they are
    refused by the pseudo-rule ``path_dot_segments``, whatever the caller sends."""

    @pytest.mark.parametrize("path", [
        "/docs/../roles/any",
        "/docs/%2e%2e/roles/any",
        "/docs/%2E%2e/roles/any",
        "/docs%2f..%2froles/any",
        "/docs/..;/roles/any",
        "/docs/..%5croles/any",
        "/docs/./guide",
        "/docs/guide/..?x=1",
    ])
    def test_dot_segments_are_refused(self, authz, path):
        assert_forbidden(authz.get(path), "path_dot_segments")

    def test_dot_segments_are_refused_even_for_an_allowed_caller(self, authz, keys):
        admin = keycloak(keys, realm_access={"roles": ["admin"]})
        assert_forbidden(authz.get("/roles/../roles/any", bearer(admin)), "path_dot_segments")

    def test_dots_inside_a_segment_are_ordinary(self, authz):
        for path in ("/docs/guide/v1.2/intro.html", "/docs/.well-known/x", "/docs/a..b/...", "/docs?next=/../x"):
            assert_allowed(authz.get(path))

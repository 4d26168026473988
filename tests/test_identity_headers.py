"""Identity headers: claim → header with dotted paths and value formatting; client-sent identity
headers never reach the upstream, on any route, allowed or not."""

import json

import support
from support import IDENTITY_HEADERS, STRIPPED, assert_allowed, assert_invalid_token, bearer, claims, token

SPOOFED = {**{h: "spoofed" for h in IDENTITY_HEADERS.values()}, STRIPPED: "spoofed"}


def upstream_via(main, keys, path="/api/items", **claim_overrides):
    return assert_allowed(main.get(path, bearer(token(keys, claims(**claim_overrides)))))


def test_string_claims_are_copied_as_they_are(main, keys):
    seen = upstream_via(main, keys, sub="alice@example.test", scope="runs:read runs:write")
    assert seen["headers"]["x-identity-subject"] == "alice@example.test"
    assert seen["headers"]["x-identity-issuer"] == support.ISSUER
    assert seen["headers"]["x-identity-scope"] == "runs:read runs:write"


def test_nested_array_claim_is_joined_with_commas(main, keys):
    seen = upstream_via(main, keys, realm_access={"roles": ["user", "admin", "ops"]})
    assert seen["headers"]["x-identity-roles"] == "user,admin,ops"


def test_numbers_and_booleans_become_text(main, keys):
    seen = upstream_via(main, keys, tenant_id=42, email_verified=True)
    assert seen["headers"]["x-identity-tenant"] == "42"
    assert seen["headers"]["x-identity-email-verified"] == "true"


def test_object_claim_is_compact_json(main, keys):
    address = {"city": "Delft", "country": "NL"}
    value = upstream_via(main, keys, address=address)["headers"]["x-identity-address"]
    assert json.loads(value) == address
    assert " " not in value and "\n" not in value


def test_claim_with_control_characters_is_not_written(main, keys):
    seen = upstream_via(main, keys, note="first line\r\nx-identity-subject: admin")
    assert "x-identity-note" not in seen["headers"]
    assert seen["headers"]["x-identity-subject"] == "alice"


def test_claim_with_a_tab_is_not_written(main, keys):
    assert "x-identity-note" not in upstream_via(main, keys, note="a\tb")["headers"]


def test_absent_claim_sets_no_header(main, keys):
    seen = upstream_via(main, keys)
    for header in ("x-identity-tenant", "x-identity-address", "x-identity-note"):
        assert header not in seen["headers"]


def test_spoofed_identity_headers_are_removed_on_an_anonymous_route(main):
    seen = assert_allowed(main.get("/public/page", SPOOFED))
    for header in SPOOFED:
        assert header not in seen["headers"], header


def test_spoofed_identity_headers_are_replaced_on_an_authenticated_route(main, keys):
    seen = assert_allowed(main.get("/api/items", {**SPOOFED, **bearer(token(keys))}))
    names = [name for name, _ in seen["header_list"]]
    assert seen["headers"]["x-identity-subject"] == "alice"
    assert names.count("x-identity-subject") == 1
    assert seen["headers"]["x-identity-roles"] == "user,admin"
    for header in ("x-identity-tenant", "x-identity-address", "x-identity-note", STRIPPED):
        assert header not in seen["headers"], header


def test_spoofed_header_sent_twice_is_removed(main):
    seen = assert_allowed(main.get("/public/page", [("x-identity-subject", "a"), ("X-Identity-Subject", "b")]))
    assert "x-identity-subject" not in seen["headers"]


def test_spoofed_headers_with_a_cors_preflight_are_removed(main):
    headers = {**SPOOFED, "origin": "https://app.test", "access-control-request-method": "POST"}
    seen = assert_allowed(main.request("OPTIONS", "/api/items", headers))
    assert "x-identity-subject" not in seen["headers"]


def test_every_header_under_the_reserved_prefix_is_removed_though_not_configured(main):
    # main_config has no assertion and no `x-identity-anything` claim header: the prefix covers them.
    unconfigured = {"x-identity-assertion": "forged.jwt.x", "X-Identity-Tenant": "acme",
                    "x-identity-report": "allow; rule=admin", "x-identity-anything": "1"}
    seen = assert_allowed(main.get("/public/page", {**unconfigured, "x-other": "kept"}))
    for header in unconfigured:
        assert header.lower() not in seen["headers"], header
    assert seen["headers"]["x-other"] == "kept"


def test_an_empty_reserved_prefix_strips_only_configured_headers(envoy_with, keys):
    config = support.with_change(support.main_config(keys), ["headers", "reserved_prefix"], "")
    envoy = envoy_with(config, "no-reserved-prefix")
    seen = assert_allowed(envoy.get("/public/page", {"x-identity-anything": "1", **SPOOFED}))
    assert seen["headers"]["x-identity-anything"] == "1"
    for header in SPOOFED:
        assert header not in seen["headers"], header


def test_anonymous_route_with_a_valid_token_gets_identity(main, keys):
    seen = assert_allowed(main.get("/public/page", bearer(token(keys))))
    assert seen["headers"]["x-identity-subject"] == "alice"


def test_anonymous_route_with_an_invalid_token_is_refused(main, keys):
    t = support.now()
    reply = main.get("/public/page", bearer(token(keys, claims(iat=t - 600, exp=t - 300))))
    assert_invalid_token(reply, "token_expired")


def test_anonymous_route_without_token_gets_no_identity(main):
    seen = assert_allowed(main.get("/public/page"))
    assert not any(name.startswith("x-identity-") for name in seen["headers"])

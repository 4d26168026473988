"""Rules match one canonical form of the path, in Envoy with its default settings and with its
own normalization on (``normalize_path`` and ``merge_slashes``).

A rule requires role ``admin`` on prefix ``/admin``; the default is ``authenticated``. Every
spelling of ``/admin/users`` found to reach the upstream with a token lacking the role is now
either matched by that rule (403) or refused as a path that cannot be matched safely (400
``path_not_canonical``). An allowed request goes upstream on the canonical path, which the
identity assertion binds.
"""

from __future__ import annotations

from typing import Any

import jwt
import pytest

import support
from envoy_runner import NORMALIZING_HCM
from support import assert_allowed, assert_denied, bearer, claims, token

SECRET = "paths-assertion-secret-of-32-bytes!!"
SERVICE = "api://paths-service"


def paths_config(keys: support.Keys, **paths: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "providers": [{"name": "primary", "issuer": support.ISSUER, "audiences": [support.AUDIENCE],
                       "jwks": keys.primary_jwks(),
                       "identity": {"roles": ["realm_access.roles"], "tenant": ["tenant_id"]}}],
        "rules": [
            {"name": "admin", "match": {"path_prefix": "/admin"},
             "require": {"roles": {"any_of": ["admin"]}}},
            {"name": "runs", "match": {"path_template": "/t/{tenant}/runs"},
             "require": {"claims": [{"claim": "tenant_id", "equals_segment": "tenant"}]}},
        ],
        "default": "authenticated",
        "headers": {"assertion": {"audience": SERVICE, "keys": [{"kid": "p1", "secret": SECRET}]}},
    }
    if paths:
        config["paths"] = paths
    return config


@pytest.fixture(scope="module", params=["envoy-defaults", "envoy-normalizing"])
def gateway(request, envoy_with, keys):
    """The same filter configuration in Envoy as configured by default, and with Envoy's own
    path normalization on."""
    hcm = NORMALIZING_HCM if request.param == "envoy-normalizing" else None
    return envoy_with(paths_config(keys), f"paths-{request.param}", hcm_options=hcm)


@pytest.fixture(scope="module")
def lenient(envoy_with, keys):
    """Case-sensitive rules and `;` parameters accepted."""
    return envoy_with(paths_config(keys, ignore_case=False, allow_parameters=True), "paths-lenient")


def user(keys) -> dict[str, str]:
    return bearer(token(keys, claims(realm_access={"roles": ["user"]}, tenant_id="acme")))


def admin(keys) -> dict[str, str]:
    return bearer(token(keys, claims(realm_access={"roles": ["admin"]}, tenant_id="acme")))


def bound_path(seen: dict[str, Any]) -> str:
    assertion = seen["headers"]["x-identity-assertion"]
    payload = jwt.decode(assertion, SECRET, algorithms=["HS256"], audience=SERVICE)
    return payload["req"]["path"]


# -- every spelling that slipped past the rule ---------------------------------------------------

@pytest.mark.parametrize("path", ["/%61dmin/users", "//admin/users", "/ADMIN/users", "/Admin/Users"])
def test_a_spelling_of_a_ruled_path_meets_the_rule(gateway, keys, path):
    assert_denied(gateway.get(path, user(keys)), "forbidden", rule="admin")


@pytest.mark.parametrize("path", ["/admin;x/users", "/admin%2fusers", "/admin%2Fusers",
                                  "/%2561dmin/users", "/admin%5cusers"])
def test_a_path_without_a_safe_canonical_form_is_400_path_not_canonical(gateway, keys, path):
    reply = gateway.get(path, admin(keys))
    assert_denied(reply, "path_not_canonical")
    assert reply.header("www-authenticate") is None
    assert reply.json() == {"error": "path_not_canonical", "status": 400}


def test_the_canonical_spelling_still_needs_the_role(gateway, keys):
    assert_denied(gateway.get("/admin/users", user(keys)), "forbidden", rule="admin")


# -- what goes upstream ------------------------------------------------------------------------

def test_an_encoded_unreserved_character_reaches_the_upstream_decoded(gateway, keys):
    seen = assert_allowed(gateway.get("/%61dmin/users?page=2", admin(keys)))
    assert seen["path"] == "/admin/users?page=2"


def test_repeated_slashes_reach_the_upstream_merged(gateway, keys):
    seen = assert_allowed(gateway.get("/admin//users", admin(keys)))
    assert seen["path"] == "/admin/users"


def test_a_canonical_path_reaches_the_upstream_unchanged(gateway, keys):
    seen = assert_allowed(gateway.get("/admin/a%20b?x=%2F", admin(keys)))
    assert seen["path"] == "/admin/a%20b?x=%2F"


def test_the_assertion_binds_the_path_the_upstream_receives(gateway, keys):
    seen = assert_allowed(gateway.get("/%61dmin//users?page=2", admin(keys)))
    assert bound_path(seen) == "/admin/users" == seen["path"].split("?")[0]


# -- templates ---------------------------------------------------------------------------------

def test_a_template_captures_from_the_canonical_path(gateway, keys):
    seen = assert_allowed(gateway.get("/t/%61cme/runs", user(keys)))
    assert seen["path"] == "/t/acme/runs"


def test_a_template_refuses_another_tenant_in_any_spelling(gateway, keys):
    assert_denied(gateway.get("/t/%67lobex/runs", user(keys)), "forbidden", rule="runs")


def test_captured_segments_keep_their_case(gateway, keys):
    # Literal segments ignore case; the tenant `ACME` is not the caller's `acme`.
    assert_denied(gateway.get("/T/ACME/runs", user(keys)), "forbidden", rule="runs")


# -- the operator's choices --------------------------------------------------------------------

def test_case_sensitive_rules_let_other_cases_fall_to_the_default(lenient, keys):
    # The documented risk of `ignore_case: false` in front of a case-insensitive upstream.
    seen = assert_allowed(lenient.get("/ADMIN/users", user(keys)))
    assert seen["path"] == "/ADMIN/users"


def test_allowed_parameters_are_ignored_by_the_rule(lenient, keys):
    assert_denied(lenient.get("/admin;x/users", user(keys)), "forbidden", rule="admin")


def test_allowed_parameters_reach_the_upstream(lenient, keys):
    seen = assert_allowed(lenient.get("/admin;jsessionid=1/users", admin(keys)))
    assert seen["path"] == "/admin;jsessionid=1/users"
    assert bound_path(seen) == "/admin;jsessionid=1/users"


def test_an_encoded_slash_is_refused_even_when_parameters_are_allowed(lenient, keys):
    assert_denied(lenient.get("/admin%2fusers", admin(keys)), "path_not_canonical")

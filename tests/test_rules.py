"""Route rules: exact path (query ignored), segment-wise prefix, methods, first match wins,
the default action, CORS preflight."""

import pytest

from support import assert_allowed, assert_denied, bearer, token


@pytest.mark.parametrize("path", ["/health", "/health?probe=1"])
def test_exact_path_ignores_the_query_string(main, path):
    assert_allowed(main.get(path))


def test_exact_path_does_not_cover_sub_paths(main):
    assert_denied(main.get("/health/deep"), "forbidden", rule="default")


@pytest.mark.parametrize("path", ["/public", "/public/", "/public/a/b", "/public?x=1"])
def test_prefix_covers_the_path_and_below(main, path):
    assert_allowed(main.get(path))


@pytest.mark.parametrize("path", ["/publicity", "/public-not", "/apix"])
def test_prefix_is_matched_segment_wise(main, path):
    assert_denied(main.get(path), "forbidden", rule="default")


def test_rule_requiring_a_token(main, keys):
    assert_denied(main.get("/api/items"), "token_missing")
    assert_allowed(main.get("/api/items", bearer(token(keys))))


def test_first_matching_rule_wins(main):
    # "docs" (anonymous, GET) comes before "api" (token required).
    assert_allowed(main.get("/api/docs/index.html"))


def test_methods_limit_a_rule(main, keys):
    # "docs" is GET only, so a POST falls through to "api".
    assert_denied(main.request("POST", "/api/docs/index.html", body="{}"), "token_missing")
    assert_allowed(main.request("HEAD", "/admin/users", bearer(token(keys))))


def test_default_deny_refuses_unmatched_requests_with_a_valid_token(main, keys):
    reply = main.get("/elsewhere", bearer(token(keys)))
    assert_denied(reply, "forbidden", rule="default")


def test_default_authenticated(sources, keys):
    assert_denied(sources.get("/anything"), "token_missing")
    assert_allowed(sources.get("/anything", bearer(token(keys))))


def test_default_anonymous(quiet, keys):
    assert_allowed(quiet.get("/anything"))
    seen = assert_allowed(quiet.get("/anything", bearer(token(keys))))
    assert seen["headers"]["x-identity-subject"] == "alice"


class TestCorsPreflight:
    PREFLIGHT = {"origin": "https://app.test", "access-control-request-method": "POST"}

    def test_preflight_passes_without_token(self, main):
        seen = assert_allowed(main.request("OPTIONS", "/api/items", self.PREFLIGHT))
        assert seen["method"] == "OPTIONS"

    def test_options_without_request_method_is_not_a_preflight(self, main):
        assert_denied(main.request("OPTIONS", "/api/items", {"origin": "https://app.test"}), "token_missing")

    def test_options_without_origin_is_not_a_preflight(self, main):
        reply = main.request("OPTIONS", "/api/items", {"access-control-request-method": "POST"})
        assert_denied(reply, "token_missing")

    def test_preflight_needs_cors_preflight_enabled(self, quiet):
        # quiet: cors_preflight off, /api requires a token.
        reply = quiet.request("OPTIONS", "/api/items", self.PREFLIGHT)
        assert reply.status == 401 and reply.header("x-identity-reason") == "token_missing"

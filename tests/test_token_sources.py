"""Where tokens come from: Authorization (scheme case-insensitive), a custom header, a query
parameter, a cookie; what reaches the upstream with forward_token off (default) and on."""

import pytest

from support import assert_allowed, assert_denied, assert_invalid_token, bearer, claims, token


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(main, keys, scheme):
    assert_allowed(main.get("/api/items", {"authorization": f"{scheme} {token(keys)}"}))


def test_authorization_without_the_prefix_counts_as_no_token(main):
    reply = main.get("/api/items", {"authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert_denied(reply, "token_missing")
    assert reply.header("www-authenticate") == "Bearer"


def test_empty_bearer_is_not_a_valid_token(main):
    reply = main.get("/api/items", {"authorization": "Bearer "})
    assert reply.status == 401 and not reply.from_upstream, reply
    assert reply.header("x-identity-reason") in ("token_missing", "token_malformed")


def test_authorization_sent_twice_with_one_token_is_that_token(main, keys):
    """Envoy joins a repeated header into one value (`Bearer t,Bearer t`); Kong passes two:
    either way the filter sees the same token twice, which is one token."""
    tok = token(keys)
    seen = assert_allowed(main.get("/api/items", [("authorization", f"Bearer {tok}"),
                                                  ("authorization", f"Bearer {tok}")]))
    assert "authorization" not in seen["headers"]


def test_authorization_sent_twice_with_two_tokens_says_so(main, keys):
    reply = main.get("/api/items", [("authorization", f"Bearer {token(keys)}"),
                                    ("authorization", f"Bearer {token(keys, claims(sub='b'))}")])
    assert_invalid_token(reply, "token_ambiguous")


def test_token_in_the_default_header_is_removed_before_the_upstream(main, keys):
    seen = assert_allowed(main.get("/api/items", bearer(token(keys))))
    assert "authorization" not in seen["headers"]


class TestSources:
    def test_authorization_header(self, sources, keys):
        seen = assert_allowed(sources.get("/any", bearer(token(keys))))
        assert seen["headers"]["x-identity-subject"] == "alice"
        assert "authorization" not in seen["headers"]

    def test_custom_header_without_prefix(self, sources, keys):
        seen = assert_allowed(sources.get("/any", {"x-api-token": token(keys)}))
        assert seen["headers"]["x-identity-subject"] == "alice"
        assert "x-api-token" not in seen["headers"]

    def test_query_parameter_is_removed_and_other_parameters_kept(self, sources, keys):
        seen = assert_allowed(sources.get(f"/any/path?a=1&access_token={token(keys)}&b=two"))
        assert seen["headers"]["x-identity-subject"] == "alice"
        assert seen["path"] == "/any/path?a=1&b=two"

    def test_query_parameter_alone_leaves_a_clean_path(self, sources, keys):
        seen = assert_allowed(sources.get(f"/any/path?access_token={token(keys)}"))
        assert seen["path"] in ("/any/path", "/any/path?")

    def test_cookie_is_removed_and_other_cookies_kept(self, sources, keys):
        seen = assert_allowed(sources.get("/any", {"cookie": f"theme=dark; session={token(keys)}; lang=nl"}))
        assert seen["headers"]["x-identity-subject"] == "alice"
        cookies = [c.strip() for c in seen["headers"]["cookie"].split(";")]
        assert cookies == ["theme=dark", "lang=nl"]

    def test_cookie_alone_removes_the_cookie_header(self, sources, keys):
        seen = assert_allowed(sources.get("/any", {"cookie": f"session={token(keys)}"}))
        assert seen["headers"].get("cookie", "") == ""

    def test_same_token_in_two_sources_is_not_ambiguous(self, sources, keys):
        tok = token(keys)
        assert_allowed(sources.get(f"/any?access_token={tok}", bearer(tok)))

    def test_different_tokens_in_header_and_cookie_are_ambiguous(self, sources, keys):
        reply = sources.get("/any", {"x-api-token": token(keys, claims(sub="a")),
                                     "cookie": f"session={token(keys, claims(sub='b'))}"})
        assert_invalid_token(reply, "token_ambiguous")

    def test_no_token_anywhere(self, sources):
        assert_denied(sources.get("/any?a=1", {"cookie": "theme=dark"}), "token_missing")

    def test_size_limit_applies_to_every_source(self, sources):
        assert_invalid_token(sources.get("/any", {"x-api-token": "b" * 9000}), "token_too_large")
        assert_invalid_token(sources.get("/any?access_token=" + "c" * 9000), "token_too_large")


class TestForwardToken:
    def test_authorization_is_forwarded(self, forwarding, keys):
        tok = token(keys)
        seen = assert_allowed(forwarding.get("/any", bearer(tok)))
        assert seen["headers"]["authorization"] == f"Bearer {tok}"
        assert seen["headers"]["x-identity-subject"] == "alice"

    def test_query_parameter_is_forwarded(self, forwarding, keys):
        tok = token(keys)
        seen = assert_allowed(forwarding.get(f"/any?access_token={tok}&a=1"))
        assert seen["path"] == f"/any?access_token={tok}&a=1"

    def test_cookie_is_forwarded(self, forwarding, keys):
        tok = token(keys)
        seen = assert_allowed(forwarding.get("/any", {"cookie": f"session={tok}; theme=dark"}))
        assert f"session={tok}" in seen["headers"]["cookie"]

"""How denials look to the client per errors.detail and errors.realm."""

import support
from support import assert_denied, assert_reason_body, bearer, claims, token


def test_reason_detail_is_the_default(main):
    reply = main.get("/api/items", bearer("x.y"))
    assert_denied(reply, "token_malformed")
    assert_reason_body(reply, "token_malformed")


class TestMessageDetail:
    def test_body_adds_a_fixed_message(self, verbose, keys):
        t = support.now()
        reply = verbose.get("/api/items", bearer(token(keys, claims(iat=t - 600, exp=t - 300))))
        assert_denied(reply, "token_expired", reason_header="x-auth-reason")
        assert reply.header("x-identity-reason") is None
        body = reply.json()
        assert body["error"] == "token_expired" and body["status"] == 401
        assert isinstance(body["message"], str) and body["message"]
        assert "rule" not in body

    def test_rule_denial_names_the_rule(self, verbose):
        reply = verbose.get("/elsewhere")
        assert_denied(reply, "forbidden", rule="default", reason_header="x-auth-reason")
        body = reply.json()
        assert body["rule"] == "default" and body["error"] == "forbidden" and body["status"] == 403
        assert body["message"]

    def test_message_never_echoes_the_token(self, verbose, keys):
        tok = token(keys, claims(aud="api://elsewhere"))
        reply = verbose.get("/api/items", bearer(tok))
        assert reply.status == 401
        assert tok not in reply.text and tok.split(".")[1] not in reply.text

    def test_realm_with_missing_token(self, verbose):
        reply = verbose.get("/api/items")
        assert reply.header("www-authenticate") == f'Bearer realm="{support.REALM}"'

    def test_realm_with_invalid_token(self, verbose):
        challenge = verbose.get("/api/items", bearer("garbage")).header("www-authenticate")
        assert challenge.startswith(f'Bearer realm="{support.REALM}", error="invalid_token"')


class TestNoDetail:
    def test_body_is_empty_and_reason_header_stays(self, quiet):
        reply = quiet.get("/api/items")
        assert_denied(reply, "token_missing")
        assert reply.body == b""
        assert reply.header("content-type") in (None, "text/plain")

    def test_invalid_token_with_no_detail(self, quiet):
        reply = quiet.get("/api/items", bearer("garbage"))
        assert_denied(reply, "token_malformed")
        assert reply.header("www-authenticate") == 'Bearer error="invalid_token"'
        assert reply.body == b""

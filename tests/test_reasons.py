"""One test per reason code: status, reason header, WWW-Authenticate, body, no upstream call.

(insufficient_scope and keys_unavailable come with later features: scopes in rules, fetched
key sets.)
"""

import support
from support import assert_denied, assert_invalid_token, assert_reason_body, bearer, claims, partner_claims, token


def test_token_missing_gets_a_bare_bearer_challenge(main):
    reply = main.get("/api/items")
    assert_denied(reply, "token_missing")
    assert reply.header("www-authenticate") == "Bearer"
    assert_reason_body(reply, "token_missing")


def test_token_malformed(main):
    assert_invalid_token(main.get("/api/items", bearer("not-a-jwt")), "token_malformed")


def test_token_too_large_is_checked_before_parsing(main):
    # 9000 bytes of garbage: refused for its size, not for being malformed.
    assert_invalid_token(main.get("/api/items", bearer("a" * 9000)), "token_too_large")


def test_token_ambiguous_when_two_sources_hold_different_tokens(sources, keys):
    first, second = token(keys, claims(sub="alice")), token(keys, claims(sub="mallory"))
    reply = sources.get(f"/api/items?access_token={second}", bearer(first))
    assert_invalid_token(reply, "token_ambiguous")


def test_token_expired(main, keys):
    t = support.now()
    assert_invalid_token(main.get("/api/items", bearer(token(keys, claims(iat=t - 600, exp=t - 120)))),
                         "token_expired")


def test_token_not_yet_valid(main, keys):
    t = support.now()
    assert_invalid_token(main.get("/api/items", bearer(token(keys, claims(nbf=t + 120)))),
                         "token_not_yet_valid")


def test_token_too_old_when_lifetime_exceeds_max(main, keys):
    # primary allows 3600 s between iat and exp.
    t = support.now()
    assert_invalid_token(main.get("/api/items", bearer(token(keys, claims(iat=t - 10, exp=t + 7200)))),
                         "token_too_old")


def test_algorithm_not_allowed_hs256_not_listed(main, keys):
    # partner has an oct key but lists no algorithms: the default allows asymmetric ones only.
    tok = token(keys, partner_claims(), "HS256", kid="partner-hmac", key=keys.partner_hmac)
    assert_invalid_token(main.get("/api/items", bearer(tok)), "algorithm_not_allowed")


def test_key_not_found_for_unknown_kid(main, keys):
    assert_invalid_token(main.get("/api/items", bearer(token(keys, kid="rsa-9"))), "key_not_found")


def test_signature_invalid_for_a_key_not_in_the_jwks(main, keys):
    # Signed by a stranger who claims the issuer's kid.
    tok = token(keys, kid="rsa-1", key=keys.stranger)
    assert_invalid_token(main.get("/api/items", bearer(tok)), "signature_invalid")


def test_issuer_unknown(main, keys):
    tok = token(keys, claims(iss="https://stranger.test"))
    assert_invalid_token(main.get("/api/items", bearer(tok)), "issuer_unknown")


def test_audience_mismatch(main, keys):
    tok = token(keys, claims(aud="api://elsewhere"))
    assert_invalid_token(main.get("/api/items", bearer(tok)), "audience_mismatch")


def test_claim_missing_for_nested_required_claim(main, keys):
    # partner requires realm_access.roles.
    tok = token(keys, partner_claims(realm_access={"groups": ["x"]}), kid="partner-1", key=keys.partner)
    assert_invalid_token(main.get("/api/items", bearer(tok)), "claim_missing")


def test_forbidden_by_default_deny_names_the_rule(main, keys):
    # POST /admin matches no rule (admin-read is GET/HEAD only): default deny, even with a token.
    reply = main.request("POST", "/admin/users", bearer(token(keys)))
    assert_denied(reply, "forbidden", rule="default")
    assert reply.header("www-authenticate") == 'Bearer error="insufficient_scope"'
    assert_reason_body(reply, "forbidden")


def test_config_invalid_answers_every_request_with_500(envoy_with, keys):
    config = support.with_change(support.main_config(keys), ["providers", 0, "audience"], "api://x")
    envoy = envoy_with(config, "invalid-unknown-field")
    for path in ("/api/items", "/health"):
        reply = envoy.get(path, bearer(token(keys)))
        assert_denied(reply, "config_invalid")
        assert reply.header("www-authenticate") is None
        assert_reason_body(reply, "config_invalid")


def test_identity_header_spoofed_with_spoofed_headers_reject(envoy_with, keys):
    # What `auto` does in Kong's host (which cannot remove a client's header), chosen here.
    config = support.with_change(support.main_config(keys), ["headers", "spoofed_headers"], "reject")
    envoy = envoy_with(config, "spoofed-reject")
    for path, header in (("/health", "x-identity-subject"), ("/api/items", "X-Identity-Assertion"),
                         ("/public/x", "x-identity-anything")):
        reply = envoy.get(path, {**bearer(token(keys)), header: "forged"})
        assert_denied(reply, "identity_header_spoofed")
        assert reply.header("www-authenticate") == 'Bearer error="invalid_request"'
        assert_reason_body(reply, "identity_header_spoofed")
    assert envoy.get("/health").status == 200


def test_path_not_canonical_for_an_encoded_slash(main, keys):
    # One segment to the filter, two to many upstreams: no rule can be matched safely.
    reply = main.get("/api%2Fitems", bearer(token(keys)))
    assert_denied(reply, "path_not_canonical")
    assert reply.header("www-authenticate") is None
    assert_reason_body(reply, "path_not_canonical")

def test_certificate_missing_for_a_bound_token_over_plain_http(main, keys):
    # More in test_mtls.py, over TLS with client certificates.
    bound = claims(cnf={"x5t#S256": "B0VuscBtyQaTvX9C3SgqG5VGes50joI2FSnOg8S7vQA"})
    reply = main.get("/api/items", bearer(token(keys, bound)))
    assert_invalid_token(reply, "certificate_missing")


def test_certificate_mismatch_for_a_thumbprint_that_is_no_sha256(main, keys):
    reply = main.get("/api/items", bearer(token(keys, claims(cnf={"x5t#S256": "short"}))))
    assert_invalid_token(reply, "certificate_mismatch")


def test_certificate_required_for_a_bearer_token_of_a_provider_that_requires_binding(envoy_with, keys):
    config = support.with_change(support.main_config(keys), ["providers", 1, "certificate_bound"], "required")
    envoy = envoy_with(config, "certificate-required")
    reply = envoy.get("/api/items", bearer(token(keys, partner_claims(), kid="partner-1", key=keys.partner)))
    assert_invalid_token(reply, "certificate_required")
    assert envoy.get("/api/items", bearer(token(keys))).status == 200

# ----------------------------------------------------------------------------------------------
# The list above stays complete.

# certificate_unavailable: only where the host cannot give the connection's certificate (Kong's),
# tested against that host's behaviour in src/filter/tests.rs.
LATER = {"insufficient_scope", "keys_unavailable", "certificate_unavailable"}


def filter_reason_codes():
    """The codes src/reason.rs defines (`Reason::X => "code"` in `fn code`)."""
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / "src" / "reason.rs").read_text()
    body = source[source.index("pub fn code"):]
    body = body[:body.index("\n    }\n")]
    return set(re.findall(r'=> "([a-z_]+)"', body))


def test_every_reason_code_of_the_filter_has_a_status_here():
    assert filter_reason_codes() == set(support.STATUS)


def test_every_reason_code_has_its_own_test():
    import re
    from pathlib import Path

    names = [n for n in globals() if n.startswith("test_")]
    # DPoP refusals need proofs and bound tokens: their tests live in test_dpop.py.
    dpop = (Path(__file__).resolve().parent / "test_dpop.py").read_text()
    names += re.findall(r"^def (test_dpop_\w+)", dpop, re.M)
    for code in set(support.STATUS) - LATER:
        assert any(n.startswith(f"test_{code}") for n in names), f"no test_{code}*"

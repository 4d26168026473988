"""Registered claims: exp and nbf with clock skew, lifetime, audiences (any of), required claims."""

import support
from support import assert_allowed, assert_invalid_token, bearer, claims, token


def test_expired_within_clock_skew_is_accepted(main, keys):
    t = support.now()
    assert_allowed(main.get("/api/items", bearer(token(keys, claims(iat=t - 300, exp=t - 30)))))


def test_not_before_within_clock_skew_is_accepted(main, keys):
    t = support.now()
    assert_allowed(main.get("/api/items", bearer(token(keys, claims(nbf=t + 30)))))


def test_expiration_is_required(main, keys):
    assert_invalid_token(main.get("/api/items", bearer(token(keys, claims(exp=None)))), "claim_missing")


def test_lifetime_at_the_maximum_is_accepted(main, keys):
    t = support.now()
    assert_allowed(main.get("/api/items", bearer(token(keys, claims(iat=t, exp=t + 3600)))))


def test_any_listed_audience_is_accepted(main, keys):
    assert_allowed(main.get("/api/items", bearer(token(keys, claims(aud="api://other")))))


def test_audience_list_with_one_listed_value_is_accepted(main, keys):
    tok = token(keys, claims(aud=["api://elsewhere", support.AUDIENCE]))
    assert_allowed(main.get("/api/items", bearer(tok)))


def test_audience_list_with_no_listed_value_is_refused(main, keys):
    tok = token(keys, claims(aud=["api://elsewhere", "api://nowhere"]))
    assert_invalid_token(main.get("/api/items", bearer(tok)), "audience_mismatch")


def test_missing_audience_is_refused_when_audiences_are_configured(main, keys):
    assert_invalid_token(main.get("/api/items", bearer(token(keys, claims(aud=None)))), "audience_mismatch")


def test_required_top_level_claim(main, keys):
    # primary requires sub.
    assert_invalid_token(main.get("/api/items", bearer(token(keys, claims(sub=None)))), "claim_missing")

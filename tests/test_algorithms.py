"""Signatures: every supported algorithm is accepted; the algorithm never comes from the token
alone; keys are chosen by kid among keys of a fitting type."""

import base64

import pytest

from identity_devkit.jwk import b64url

import support
from support import assert_allowed, assert_invalid_token, bearer, claims, partner_claims, raw_token, token


@pytest.mark.parametrize("alg", support.ASYMMETRIC + ["HS256"])
def test_algorithm_is_accepted(main, keys, alg):
    seen = assert_allowed(main.get("/api/items", bearer(token(keys, claims(sub=f"user-{alg}"), alg))))
    assert seen["headers"]["x-identity-subject"] == f"user-{alg}"


def test_hmac_algorithm_not_in_the_allow_list_is_refused(main, keys):
    # primary lists HS256 only; the same oct key used with HS512 is refused.
    assert_invalid_token(main.get("/api/items", bearer(token(keys, alg="HS512"))), "algorithm_not_allowed")


@pytest.fixture(scope="module")
def every_hmac(envoy_with, keys):
    """The primary provider with HS256, HS384 and HS512 allowed (its `oct` key has 64 bytes,
    long enough for all three)."""
    config = support.main_config(keys)
    config["providers"][0]["algorithms"] = ["HS256", "HS384", "HS512"]
    return envoy_with(config, "every-hmac")


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_every_hmac_algorithm_verifies_when_allowed(every_hmac, keys, alg):
    # Tags made by PyJWT; the tag with one bit changed, or one byte short, fails the signature.
    seen = assert_allowed(every_hmac.get("/api/items", bearer(token(keys, claims(sub=f"user-{alg}"), alg))))
    assert seen["headers"]["x-identity-subject"] == f"user-{alg}"
    signing_input, _, tag = token(keys, alg=alg).rpartition(".")
    tag_bytes = base64.urlsafe_b64decode(tag + "=" * (-len(tag) % 4))
    flipped = tag_bytes[:-1] + bytes([tag_bytes[-1] ^ 1])
    for bad in [flipped, tag_bytes[:-1]]:
        reply = every_hmac.get("/api/items", bearer(f"{signing_input}.{b64url(bad)}"))
        assert_invalid_token(reply, "signature_invalid")


def test_alg_none_is_refused(main, keys):
    tok = raw_token({"alg": "none", "typ": "JWT"}, claims(), None)
    assert tok.endswith(".")
    assert_invalid_token(main.get("/api/items", bearer(tok)), "algorithm_not_allowed")


def test_alg_none_with_a_kid_is_refused(main, keys):
    tok = raw_token({"alg": "none", "kid": "rsa-1"}, claims(), None)
    assert_invalid_token(main.get("/api/items", bearer(tok)), "algorithm_not_allowed")


def test_algorithm_confusion_rsa_public_key_as_hmac_secret_is_refused(main, keys):
    # primary allows HS256 and has an oct key, but rsa-1 is an RSA key: an HS256 token naming it
    # finds no key of a fitting type.
    tok = raw_token({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(), keys.rsa_public_pem())
    assert_invalid_token(main.get("/api/items", bearer(tok)), "key_not_found")


def test_algorithm_confusion_without_kid_fails_the_signature(main, keys):
    # Without a kid the oct keys are tried, and none verifies a MAC made with the RSA public key.
    tok = raw_token({"alg": "HS256", "typ": "JWT"}, claims(), keys.rsa_public_pem())
    assert_invalid_token(main.get("/api/items", bearer(tok)), "signature_invalid")


def test_unknown_crit_header_is_refused(main, keys):
    key, kid = keys.for_alg("RS256")
    tok = raw_token({"alg": "RS256", "kid": kid, "crit": ["x-unknown"], "x-unknown": True}, claims(), key)
    assert_invalid_token(main.get("/api/items", bearer(tok)), "token_malformed")


def test_ec_token_claiming_rsa_kid_is_refused(main, keys):
    # ES256 token naming an RSA key: the kid exists but its type does not fit the algorithm.
    tok = token(keys, alg="ES256", kid="rsa-1")
    assert_invalid_token(main.get("/api/items", bearer(tok)), "key_not_found")


def test_tampered_payload_fails_the_signature(main, keys):
    head, _, sig = token(keys).split(".")
    forged = token(keys, claims(sub="admin")).split(".")[1]
    assert_invalid_token(main.get("/api/items", bearer(f"{head}.{forged}.{sig}")), "signature_invalid")


class TestKidSelection:
    def test_second_key_is_chosen_by_its_kid(self, main, keys):
        seen = assert_allowed(main.get("/api/items", bearer(token(keys, kid="rsa-2", key=keys.rsa2))))
        assert seen["headers"]["x-identity-subject"] == "alice"

    def test_kid_of_the_other_key_fails_the_signature(self, main, keys):
        tok = token(keys, kid="rsa-1", key=keys.rsa2)
        assert_invalid_token(main.get("/api/items", bearer(tok)), "signature_invalid")

    def test_without_kid_the_compatible_keys_are_tried(self, main, keys):
        assert_allowed(main.get("/api/items", bearer(token(keys, kid=None, key=keys.rsa2))))
        assert_allowed(main.get("/api/items", bearer(token(keys, alg="ES384", kid=None))))


class TestProviderByIssuer:
    def test_partner_token_is_verified_with_partner_keys(self, main, keys):
        tok = token(keys, partner_claims(), kid="partner-1", key=keys.partner)
        seen = assert_allowed(main.get("/api/items", bearer(tok)))
        assert seen["headers"]["x-identity-subject"] == "bob"
        assert seen["headers"]["x-identity-issuer"] == support.PARTNER_ISSUER

    def test_partner_token_signed_with_a_primary_key_is_refused(self, main, keys):
        # rsa-1 belongs to primary; the partner's key set has no such kid.
        tok = token(keys, partner_claims(), kid="rsa-1", key=keys.rsa)
        assert_invalid_token(main.get("/api/items", bearer(tok)), "key_not_found")

    def test_primary_token_signed_with_the_partner_key_is_refused(self, main, keys):
        tok = token(keys, claims(), kid="partner-1", key=keys.partner)
        assert_invalid_token(main.get("/api/items", bearer(tok)), "key_not_found")

    def test_audience_is_checked_against_the_chosen_provider(self, main, keys):
        # A partner token carrying primary's audience.
        tok = token(keys, partner_claims(aud=support.AUDIENCE), kid="partner-1", key=keys.partner)
        assert_invalid_token(main.get("/api/items", bearer(tok)), "audience_mismatch")

"""Verifying the filter's assertion: each rule of the contract, one test each."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity_dispatcher.assertion import Identity, read_header, verify_assertion
from identity_dispatcher.keys import VerificationKey, choose, keys_from_jwks
from identity_dispatcher.reasons import Refusal
from identity_devkit.testing import AssertionMinter
from people import ALICE, ADMIN

MINTER = AssertionMinter()
ED_KEY = keys_from_jwks(MINTER.public_jwks())[0]
HS_KEY = VerificationKey(kid="hs-1", algorithm="HS256", key=MINTER.hs256_secret.encode())
PATH = "/runs/hello/hello"


def verify(token: str, key: VerificationKey = ED_KEY, method: str = "POST", path: str = PATH, **kw) -> Identity:
    return verify_assertion(token, key, audience="prefect-dispatcher", issuer="identity-filter",
                            method=method, path=path, **kw)


def refused(token: str, **kw) -> Refusal:
    with pytest.raises(Refusal) as caught:
        verify(token, **kw)
    assert caught.value.status == 401
    return caught.value


@pytest.mark.parametrize("algorithm,key", [("EdDSA", ED_KEY), ("HS256", HS_KEY)])
def test_valid_assertion_gives_the_identity(algorithm, key):
    token = MINTER.mint(ALICE, "POST", PATH, algorithm=algorithm, request_id="req-1")
    identity = verify(token, key)
    assert identity.sub == "alice"
    assert identity.idp == "https://idp.test/realms/main"
    assert identity.idp_host == "idp.test"
    assert identity.roles == ("flow-runner",)
    assert identity.scopes == ("runs:write",)
    assert identity.groups == ("staff",)
    assert identity.tenant == "acme"
    assert identity.provider == "test"
    assert identity.request_id == "req-1"


def test_tenant_is_optional():
    identity = verify(MINTER.mint(ADMIN, "POST", PATH))
    assert identity.tenant is None


def test_expired_assertion_is_refused():
    now = int(time.time())
    token = MINTER.mint(ALICE, "POST", PATH, iat=now - 120, exp=now - 60)
    assert refused(token).code == "assertion_expired"


def test_expiry_within_leeway_is_accepted():
    now = int(time.time())
    token = MINTER.mint(ALICE, "POST", PATH, iat=now - 62, exp=now - 2)
    identity = verify(token, leeway_seconds=5)
    assert (identity.sub, identity.idp) == ("alice", "https://idp.test/realms/main")
    # The same assertion without the leeway is expired.
    assert refused(token, leeway_seconds=0).code == "assertion_expired"


def test_assertion_issued_in_the_future_is_refused():
    now = int(time.time())
    token = MINTER.mint(ALICE, "POST", PATH, iat=now + 60, exp=now + 120)
    assert refused(token).code == "assertion_not_yet_valid"


def test_too_long_lifetime_is_refused():
    now = int(time.time())
    token = MINTER.mint(ALICE, "POST", PATH, iat=now, exp=now + 3600)
    assert refused(token).code == "assertion_too_long"


def test_other_audience_is_refused():
    token = MINTER.mint(ALICE, "POST", PATH, aud="billing-service")
    assert refused(token).code == "assertion_audience"


def test_other_issuer_is_refused():
    token = MINTER.mint(ALICE, "POST", PATH, iss="someone-else")
    assert refused(token).code == "assertion_issuer"


def test_other_path_is_refused():
    token = MINTER.mint(ALICE, "POST", "/runs/echo/echo")
    assert refused(token).code == "assertion_binding"


def test_other_method_is_refused():
    token = MINTER.mint(ALICE, "GET", PATH)
    assert refused(token).code == "assertion_binding"


def test_query_string_is_not_part_of_the_binding():
    # The filter binds the path without its query; the dispatcher compares paths only.
    identity = verify(MINTER.mint(ALICE, "POST", PATH + "?x=1"), path=PATH)
    assert (identity.sub, identity.idp) == ("alice", "https://idp.test/realms/main")
    # The path is still bound: the same query on another path is refused.
    assert refused(MINTER.mint(ALICE, "POST", "/runs/echo/echo?x=1"), path=PATH).code == "assertion_binding"


def test_unknown_contract_version_is_refused():
    assert refused(MINTER.mint(ALICE, "POST", PATH, v=2)).code == "assertion_version"
    assert refused(MINTER.mint(ALICE, "POST", PATH, v=None)).code == "assertion_version"


@pytest.mark.parametrize("claim", ["sub", "jti", "exp", "iat", "aud", "iss"])
def test_missing_registered_claim_is_refused(claim):
    code = refused(MINTER.mint(ALICE, "POST", PATH, **{claim: None})).code
    assert code in {"assertion_invalid", "assertion_audience", "assertion_issuer"}


@pytest.mark.parametrize(
    "overrides",
    [
        {"idp": None},
        {"req": None},
        {"req": {"method": "POST"}},
        {"roles": "flow-runner"},
        {"scopes": [1, 2]},
        {"tenant": 7},
        {"sub": ""},
    ],
)
def test_mistyped_contract_claims_are_refused(overrides):
    assert refused(MINTER.mint(ALICE, "POST", PATH, **overrides)).code == "assertion_invalid"


def test_signature_by_another_key_is_refused():
    claims = MINTER.claims(ALICE, "POST", PATH)
    token = MINTER.sign(claims, "EdDSA", key=Ed25519PrivateKey.generate())
    assert refused(token).code == "assertion_invalid"


def test_hs256_token_is_not_verified_with_the_public_key_bytes():
    """Algorithm confusion: a token saying HS256, signed with the EdDSA public key's bytes,
    never meets the EdDSA key: the key's own algorithm is the only one tried."""
    claims = MINTER.claims(ALICE, "POST", PATH)
    token = jwt.encode(claims, b"x" * 32, algorithm="HS256", headers={"kid": "ed-1"})
    assert read_header(token).algorithm == "HS256"
    assert choose([ED_KEY], "ed-1", "HS256") is None
    assert refused(token, key=ED_KEY).code == "assertion_invalid"


@pytest.mark.parametrize("algorithm", ["none", "RS256", "ES256", "HS512"])
def test_algorithms_outside_the_contract_are_refused(algorithm):
    header = jwt.utils.base64url_encode(f'{{"alg":"{algorithm}","kid":"ed-1"}}'.encode()).decode()
    with pytest.raises(Refusal) as caught:
        read_header(f"{header}.e30.")
    assert caught.value.code == "assertion_invalid"


def test_garbage_is_refused():
    with pytest.raises(Refusal) as caught:
        read_header("not-a-jwt")
    assert caught.value.code == "assertion_invalid"


def test_key_is_chosen_by_kid_among_keys_of_the_algorithm():
    other = VerificationKey(kid="ed-2", algorithm="EdDSA", key=object())
    assert choose([ED_KEY, other], "ed-2", "EdDSA") is other
    assert choose([ED_KEY, other], "ed-9", "EdDSA") is None
    # Without a kid, only an unambiguous key is used.
    assert choose([ED_KEY, other], None, "EdDSA") is None
    assert choose([ED_KEY], None, "EdDSA") is ED_KEY
    # A secret configured without kid answers any kid.
    secret = VerificationKey(kid=None, algorithm="HS256", key=b"s" * 32)
    assert choose([secret], "hs-7", "HS256") is secret

"""The development tools themselves: the dev issuer's tokens verify against its JWKS; the echo
upstream reports what it received. (No Envoy needed.)"""

import json
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from identity_devkit import jwk
from identity_devkit.issuer import SigningKey, merged, thumbprint
from devissuer import DevIssuer
from envoy_runner import http_request

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def issuer(tmp_path):
    dev = DevIssuer(tmp_path / "issuer")
    assert dev.init() is True
    return dev


def verify(dev, token):
    key = jwt.PyJWKSet.from_dict(dev.jwks())[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=dev.info()["audience"],
                      issuer=dev.info()["issuer"])


def test_dev_issuer_init_is_idempotent(issuer):
    kid = issuer.info()["kid"]
    assert issuer.init() is False
    assert issuer.info()["kid"] == kid
    assert (issuer.dir / "key.pem").stat().st_mode & 0o077 == 0


def test_dev_token_verifies_against_dev_jwks(issuer):
    claims = verify(issuer, issuer.token())
    assert claims["sub"] == "dev-user" and claims["aud"] == "dev-api"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["realm_access"]["roles"] and claims["scope"]


def test_dev_token_cli_merges_and_removes_claims(issuer):
    done = subprocess.run([sys.executable, str(REPO / "tools" / "devissuer.py"), "--dir", str(issuer.dir),
                           "token", "--claims", '{"sub": "bob", "scope": null}', "--ttl", "60"],
                          capture_output=True, text=True, timeout=30, check=True)
    claims = verify(issuer, done.stdout.strip())
    assert claims["sub"] == "bob" and "scope" not in claims
    assert claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize("given, roles", [
    ({"roles": ["admin"]}, {"roles": ["admin"]}),
    ({"realm_access": {"roles": ["admin"]}}, {"realm_access": {"roles": ["admin"]}}),
    ({"sub": "bob"}, {"realm_access": {"roles": ["user", "developer"]}}),
])
def test_dev_token_roles_given_replace_the_default_roles(issuer, given, roles):
    claims = verify(issuer, issuer.token(given))
    assert {k: claims[k] for k in ("roles", "realm_access") if k in claims} == roles


def test_dev_jwks_cli_prints_public_keys_only(issuer):
    done = subprocess.run([sys.executable, str(REPO / "tools" / "devissuer.py"), "--dir", str(issuer.dir),
                           "jwks"], capture_output=True, text=True, timeout=30, check=True)
    (key,) = json.loads(done.stdout)["keys"]
    assert key["kty"] == "RSA" and key["kid"] == issuer.info()["kid"] and "d" not in key


def test_echo_upstream_reports_method_path_and_headers(echo):
    reply = http_request(echo.port, "POST", "/a/b?c=1", [("X-One", "1"), ("x-two", "a"), ("x-two", "b")],
                         body="hello")
    seen = reply.upstream
    assert seen["method"] == "POST" and seen["path"] == "/a/b?c=1" and seen["body"] == "hello"
    assert seen["headers"]["x-one"] == "1"
    assert seen["headers"]["x-two"] == "a, b"
    assert ["x-two", "b"] in seen["header_list"]


def test_raw_signer_matches_pyjwt_verification(keys):
    for alg in ["RS256", "PS384", "ES256", "ES384", "EdDSA", "HS256"]:
        key, kid = keys.for_alg(alg)
        token = jwk.encode({"alg": alg, "kid": kid}, {"sub": "x"}, key)
        public = key if isinstance(key, bytes) else key.public_key()
        assert jwt.decode(token, public, algorithms=[alg])["sub"] == "x"


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256"])
def test_signing_key_tokens_verify_against_its_jwks_by_kid(alg):
    signer = SigningKey.generate(alg)
    token = signer.token({"sub": "x"})
    header = jwt.get_unverified_header(token)
    assert header["kid"] == signer.kid == thumbprint(signer.public_jwk()) and header["alg"] == alg
    key = jwt.PyJWKSet.from_dict(signer.jwks())[header["kid"]]
    assert jwt.decode(token, key.key, algorithms=[alg])["sub"] == "x"
    other = SigningKey.generate(alg)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(other.token({"sub": "x"}, kid=signer.kid), key.key, algorithms=[alg])


def test_signing_key_header_choices():
    signer = SigningKey.generate("RS256", kid="rsa-1", jwk_alg=False)
    assert "alg" not in signer.public_jwk() and "d" not in signer.public_jwk()
    assert "kid" not in jwt.get_unverified_header(signer.token({}, kid=None))
    ps = jwt.get_unverified_header(signer.token({}, alg="PS256", kid="other", headers={"cty": "x"}))
    assert ps["alg"] == "PS256" and ps["kid"] == "other" and ps["cty"] == "x"


def test_merged_overrides_and_removes():
    assert merged({"a": 1, "b": 2}, {"b": None, "c": 3}) == {"a": 1, "c": 3}


def test_thumbprint_is_rfc7638():
    # RFC 7638 section 3.1: the example RSA key and its thumbprint.
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRX"
         "jBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAt"
         "aSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XP"
         "ksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
    assert thumbprint({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}) == \
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

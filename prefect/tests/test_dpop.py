"""DPoP-bound tokens for flows (RFC 9449), no Prefect: ClientCredentials(dpop=True) against a
real OpenID provider (oidc-provider issues a token bound to the proof's key, ``cnf.jkt``), and
GatewayClient's proofs checked by an API that verifies them like a resource server would
(httpx mock transport). The gateway's own verification is test_outbound.py's."""

from __future__ import annotations

import hashlib
import pickle
import time

import httpx
import jwt
import pytest

from identity_devkit.issuer import thumbprint
from identity_devkit.jwk import b64url
from identity_dispatcher.client import GatewayClient, Unauthenticated
from identity_dispatcher.tokens import (
    AccessToken,
    ClientCredentials,
    DpopKey,
    TokenCache,
    TokenRefused,
    bearer,
    dpop_headers,
)
from local_http import Recording

API = "api://reports"


@pytest.fixture(scope="module")
def idp(oidc_providers):
    from oidc_provider import Client

    reader = Client.basic("dpop-reader", scope="reports:read")
    keyed = Client.private_key_jwt("dpop-keyed", scope="reports:read")
    provider = oidc_providers(clients=[reader, keyed], name="dpop",
                              resources={API: {"scope": "reports:read", "access_token_ttl": 20}})
    provider.reader, provider.keyed = reader, keyed
    return provider


def claims_of(idp, token: str) -> dict:
    (key,) = [k for k in idp.jwks()["keys"] if k["kid"] == jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(token, jwt.PyJWK(key).key, algorithms=[key["alg"]], audience=API, issuer=idp.issuer)


def verify_proof(proof: str, method: str, url: str, token: str | None) -> tuple[dict, dict]:
    """What a resource server checks (RFC 9449 section 4.3): typ, alg, a public jwk without
    private members, the signature by that jwk, htm, htu, a recent iat, a jti, ath."""
    header = jwt.get_unverified_header(proof)
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    jwk = header["jwk"]
    assert set(jwk) == {"kty", "crv", "x", "y"} and (jwk["kty"], jwk["crv"]) == ("EC", "P-256")
    claims = jwt.decode(proof, jwt.PyJWK(jwk, algorithm="ES256").key, algorithms=["ES256"])
    assert claims["htm"] == method and claims["htu"] == url
    assert abs(claims["iat"] - time.time()) < 10 and len(claims["jti"]) >= 16
    if token is None:
        assert "ath" not in claims
    else:
        digest = hashlib.sha256(token.encode()).digest()
        assert claims["ath"] == b64url(digest)
    return header, claims


@pytest.mark.parametrize("auth", ["client_secret_basic", "private_key_jwt"])
def test_the_provider_binds_each_token_to_a_new_key_of_the_worker(idp, auth):
    recording = Recording()
    if auth == "client_secret_basic":
        source = ClientCredentials("dpop-reader", issuer=idp.issuer, client_secret=idp.reader.secret,
                                   scopes=["reports:read"], resource=API, dpop=True, transport=recording)
    else:
        source = ClientCredentials("dpop-keyed", issuer=idp.issuer, private_key=idp.keyed.key,
                                   key_id=idp.keyed.key_id, scopes=["reports:read"], resource=API,
                                   dpop=True, transport=recording)
    first, second = source.fetch(), source.fetch()
    endpoint = source.token_endpoint()
    token_requests = [r for r in recording.sent if r.method == "POST"]
    assert len(token_requests) == 2
    jtis = set()
    for token, request in zip((first, second), token_requests):
        assert token.token_type == "DPoP" and token.dpop_key is not None
        claims = claims_of(idp, token.value)
        assert claims["cnf"] == {"jkt": token.dpop_key.thumbprint}
        header, proof = verify_proof(request.headers["dpop"], "POST", endpoint, None)
        assert thumbprint(header["jwk"]) == token.dpop_key.thumbprint
        jtis.add(proof["jti"])
    # Rotation: a new key pair with each new token, never the old one again.
    assert first.dpop_key.thumbprint != second.dpop_key.thumbprint and len(jtis) == 2


def test_every_request_gets_a_fresh_proof_for_its_method_url_and_token(idp):
    """Through GatewayClient, with a real DPoP-bound token: each send has a new proof that
    verifies, names its method and URL (no query) and the token's hash, by the token's key; a
    ``401 token_expired`` renews the token (a new key) and the retry has a new proof too."""
    source = ClientCredentials("dpop-reader", issuer=idp.issuer, client_secret=idp.reader.secret,
                               scopes=["reports:read"], resource=API, dpop=True)
    cache = TokenCache(source)
    seen: list[httpx.Request] = []
    expire_once = {"/base/expired"}

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path in expire_once:
            expire_once.clear()
            return httpx.Response(401, headers={"x-identity-reason": "token_expired"})
        return httpx.Response(200, json={})

    with GatewayClient("http://gw.test:10000/base", cache, transport=httpx.MockTransport(api)) as client:
        client.get("/api/reports?day=today#top")
        client.get("/api/reports?day=today")
        client.post("/api/reports", json={"x": 1})
        client.get("/expired")
    assert len(seen) == 5
    expected = [("GET", "http://gw.test:10000/base/api/reports")] * 2 + [
        ("POST", "http://gw.test:10000/base/api/reports"), ("GET", "http://gw.test:10000/base/expired"),
        ("GET", "http://gw.test:10000/base/expired")]
    jtis, keys = set(), []
    for request, (method, url) in zip(seen, expected):
        scheme, token = request.headers["authorization"].split(" ", 1)
        assert scheme == "DPoP"
        header, proof = verify_proof(request.headers["dpop"], method, url, token)
        assert claims_of(idp, token)["cnf"]["jkt"] == thumbprint(header["jwk"])
        jtis.add(proof["jti"])
        keys.append(thumbprint(header["jwk"]))
    assert len(jtis) == 5  # never the same proof twice, the retry included
    assert len(set(keys[:4])) == 1 and keys[4] != keys[3]  # the renewed token came with a new key
    assert source.requests == 2


def test_a_nonce_asked_for_is_used_once_more_at_the_token_endpoint_and_at_the_api():
    """No test provider uses nonces; a scripted token endpoint and API do (RFC 9449 sections 8
    and 9): the request is sent once more with a proof carrying the nonce, and only once."""
    key_of_token: dict[str, str] = {}
    token_proofs: list[dict] = []

    def idp(request: httpx.Request) -> httpx.Response:
        _, proof = verify_proof(request.headers["dpop"], "POST", "https://idp.test/token", None)
        token_proofs.append(proof)
        if proof.get("nonce") != "n-1":
            return httpx.Response(400, headers={"dpop-nonce": "n-1"},
                                  json={"error": "use_dpop_nonce", "error_description": "nonce"})
        value = f"token-{len(token_proofs)}"
        key_of_token[value] = thumbprint(jwt.get_unverified_header(request.headers["dpop"])["jwk"])
        return httpx.Response(200, json={"access_token": value, "token_type": "DPoP", "expires_in": 60})

    source = ClientCredentials("c", token_endpoint="https://idp.test/token", client_secret="s", dpop=True,
                               transport=httpx.MockTransport(idp))
    token = source.fetch()
    assert [p.get("nonce") for p in token_proofs] == [None, "n-1"]
    assert token_proofs[0]["jti"] != token_proofs[1]["jti"] and source.requests == 2
    assert key_of_token[token.value] == token.dpop_key.thumbprint
    source.fetch()  # the nonce is kept: one request this time
    assert [p.get("nonce") for p in token_proofs][2:] == ["n-1"]

    api_proofs: list[dict] = []

    def api(request: httpx.Request) -> httpx.Response:
        _, proof = verify_proof(request.headers["dpop"], "GET", "https://gw.test/r", token.value)
        api_proofs.append(proof)
        if request.url.path == "/never" or proof.get("nonce") != "a-1":
            return httpx.Response(401, headers={
                "www-authenticate": 'DPoP error="use_dpop_nonce", error_description="nonce"',
                "dpop-nonce": "a-1", "x-identity-reason": "dpop_nonce_required"})
        return httpx.Response(200)

    static = TokenCache(_Fixed(token))
    with GatewayClient("https://gw.test", static, transport=httpx.MockTransport(api)) as client:
        assert client.get("/r").status_code == 200
        assert client.get("/r").status_code == 200  # the nonce kept: sent once
    assert [p.get("nonce") for p in api_proofs] == [None, "a-1", "a-1"]
    assert len({p["jti"] for p in api_proofs}) == 3


class _Fixed:
    def __init__(self, token: AccessToken) -> None:
        self.token = token

    def describe(self) -> str:
        return "fixed"

    def fetch(self) -> AccessToken:
        return self.token


def test_a_nonce_asked_for_twice_or_a_bearer_token_is_a_refusal():
    def always_nonce(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, headers={"dpop-nonce": f"n-{time.time()}"}, json={"error": "use_dpop_nonce"})

    looping = ClientCredentials("c", token_endpoint="https://idp.test/token", client_secret="s", dpop=True,
                                transport=httpx.MockTransport(always_nonce))
    with pytest.raises(TokenRefused) as refused:
        looping.fetch()
    assert refused.value.error == "use_dpop_nonce" and looping.requests == 2  # no loop

    def bearer_only(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "plain", "token_type": "Bearer", "expires_in": 60})

    downgraded = ClientCredentials("c", token_endpoint="https://idp.test/token", client_secret="s", dpop=True,
                                   transport=httpx.MockTransport(bearer_only))
    with pytest.raises(TokenRefused) as bearer_refused:
        downgraded.fetch()
    assert "token_type 'Bearer'" in str(bearer_refused.value) and not bearer_refused.value.retryable

    # And an API answering a plain 401 with a nonce but no use_dpop_nonce: no second send.
    sent: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(401, headers={"dpop-nonce": "x", "x-identity-reason": "dpop_proof_invalid"})

    token = AccessToken("t", time.time() + 60, dpop_key=DpopKey())
    with GatewayClient("https://gw.test", TokenCache(_Fixed(token)), transport=httpx.MockTransport(api)) as client:
        with pytest.raises(Unauthenticated) as error:
            client.get("/r")
    assert error.value.reason == "dpop_proof_invalid" and len(sent) == 1


def test_the_dpop_key_never_shows_and_never_leaves_memory():
    key = DpopKey()
    token = AccessToken("secret-token-value", time.time() + 60, dpop_key=key)
    private = key._key.private_numbers().private_value  # noqa: SLF001 (the test looks inside)
    d = b64url(private.to_bytes(32, "big"))
    texts = [repr(key), str(key), repr(token), str(token), repr([token]), str(key.public_jwk),
             str(jwt.get_unverified_header(key.proof("GET", "https://x.test/")))]
    for text in texts:
        assert "secret-token-value" not in text and d not in text and str(private) not in text
    assert key.thumbprint in repr(key) and "DPoP-bound" in repr(token)
    for thing in (key, token):
        with pytest.raises(TypeError):
            pickle.dumps(thing)
    # A bound token has no bearer form; dpop_headers gives the scheme and a proof.
    with pytest.raises(ValueError):
        bearer(token)
    headers = dpop_headers(token, "GET", "https://x.test/a?b=c")
    assert headers["authorization"] == "DPoP secret-token-value"
    verify_proof(headers["dpop"], "GET", "https://x.test/a", "secret-token-value")
    assert dpop_headers(AccessToken("b", time.time() + 60), "GET", "https://x.test/") == {
        "authorization": "Bearer b"}

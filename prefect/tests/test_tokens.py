"""Token sources and the token cache (identity_dispatcher.tokens) against a real OpenID provider
(oidc-provider, tools/oidc_provider.py): client credentials with client_secret_basic and
private_key_jwt, scopes, resource and audience in the token request, one refresh at a time for
many threads, the projected token file, and that no token shows in repr, str, pickles or
errors. No Prefect here: the module must work without it (an Airflow worker has none)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import time
from urllib.parse import parse_qsl

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from identity_dispatcher.client import GatewayClient, is_retryable
from identity_dispatcher.tokens import (
    AccessToken,
    ClientCredentials,
    ProjectedTokenFile,
    StaticToken,
    TokenCache,
    TokenRefused,
    TokenUnavailable,
)
from local_http import Recording

API = "api://reports"
SHORT = "api://reports-short"


@pytest.fixture(scope="module")
def idp(oidc_providers):
    from oidc_provider import Client

    reader = Client.basic("reader", scope="reports:read")
    keyed = Client.private_key_jwt("keyed", scope="reports:read reports:admin")
    provider = oidc_providers(clients=[reader, keyed], name="tokens",
                              resources={API: {"scope": "reports:read reports:admin", "access_token_ttl": 20},
                                         SHORT: {"scope": "reports:read", "access_token_ttl": 4}})
    provider.reader, provider.keyed = reader, keyed
    return provider


def verified(idp, token: str, audience: str, *, expired_ok: bool = False) -> dict:
    (key,) = [k for k in idp.jwks()["keys"] if k["kid"] == jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(token, jwt.PyJWK(key).key, algorithms=[key["alg"]], audience=audience,
                      issuer=idp.issuer, options={"verify_exp": not expired_ok})


def token_requests(idp) -> int:
    return sum(1 for line in idp.log_text().splitlines() if " POST /token 200" in line)


def test_client_secret_basic_gets_a_token_for_the_resource_and_scopes(idp):
    source = ClientCredentials("reader", issuer=idp.issuer, client_secret=idp.reader.secret,
                               scopes=["reports:read"], resource=API)
    before = time.time()
    token = source.fetch()
    claims = verified(idp, token.value, API)
    assert claims["sub"] == "reader" and claims["scope"] == "reports:read"
    assert before + 19 <= token.expires_at <= time.time() + 20
    assert source.token_endpoint() == idp.discovery()["token_endpoint"]


def test_resource_and_audience_reach_the_token_request(idp):
    """What the token endpoint receives: the grant, the scopes, every resource (RFC 8707) and
    the ``audience`` parameter (which some IdPs use instead of ``resource``; oidc-provider
    ignores it, so the token's ``aud`` still comes from the resource)."""
    recording = Recording()
    source = ClientCredentials("reader", issuer=idp.issuer, client_secret=idp.reader.secret,
                               scopes=["reports:read"], resource=API, audience="reports-api",
                               transport=recording)
    token = source.fetch()
    (request,) = [r for r in recording.sent if r.method == "POST"]
    assert str(request.url) == source.token_endpoint() == idp.discovery()["token_endpoint"]
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qsl(request.content.decode(), strict_parsing=True) == [
        ("grant_type", "client_credentials"), ("scope", "reports:read"), ("resource", API),
        ("audience", "reports-api")]
    claims = verified(idp, token.value, API)
    assert (claims["sub"], claims["aud"]) == ("reader", API)

    # Two resources are two ``resource`` parameters, and no audience is sent unless asked for:
    # this provider grants one resource per client-credentials token, so it refuses the pair.
    both = ClientCredentials("reader", issuer=idp.issuer, client_secret=idp.reader.secret,
                             resource=[API, SHORT], transport=recording)
    with pytest.raises(TokenRefused) as refused:
        both.fetch()
    assert refused.value.error == "invalid_target" and not is_retryable(refused.value)
    last = [r for r in recording.sent if r.method == "POST"][-1]
    assert parse_qsl(last.content.decode(), strict_parsing=True) == [
        ("grant_type", "client_credentials"), ("resource", API), ("resource", SHORT)]


def test_private_key_jwt_needs_no_shared_secret(idp, tmp_path):
    key_file = tmp_path / "keyed.pem"
    key_file.write_bytes(idp.keyed.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (registered,) = [c for c in idp.config["clients"] if c["client_id"] == "keyed"]
    assert "client_secret" not in registered and registered["token_endpoint_auth_method"] == "private_key_jwt"
    source = ClientCredentials("keyed", issuer=idp.issuer, private_key=key_file, key_id=idp.keyed.key_id,
                               scopes=["reports:admin"], resource=API)
    claims = verified(idp, source.fetch().value, API)
    assert (claims["sub"], claims["scope"]) == ("keyed", "reports:admin")
    # Another key of the same client id is refused: the key is the credential.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(TokenRefused) as refused:
        ClientCredentials("keyed", issuer=idp.issuer, private_key=other, key_id=idp.keyed.key_id,
                          resource=API).fetch()
    assert refused.value.error == "invalid_client" and not is_retryable(refused.value)


def test_a_refused_client_is_not_retryable_and_the_secret_never_shows(idp):
    wrong = "wrong-secret-" + "x" * 20
    source = ClientCredentials("reader", issuer=idp.issuer, client_secret=wrong, resource=API)
    cache = TokenCache(source)
    with pytest.raises(TokenRefused) as refused:
        cache.get()
    assert refused.value.error == "invalid_client" and refused.value.retryable is False
    assert not is_retryable(refused.value)
    for text in (str(refused.value), repr(refused.value), repr(source), repr(cache)):
        assert wrong not in text
    # A scope the client may not ask for is a refusal too.
    with pytest.raises(TokenRefused) as scope:
        ClientCredentials("reader", issuer=idp.issuer, client_secret=idp.reader.secret,
                          scopes=["reports:admin"], resource=API).fetch()
    assert scope.value.error == "invalid_scope"


def test_many_threads_share_one_token_and_one_refresh(idp):
    """16 threads ask for the token for 5.5 s; tokens live 4 s: one request at the start, one
    refresh at about 80 % (3.0-3.2 s; the threads keep the current token meanwhile), and none
    other: no stampede, and no thread ever gets an expired token."""
    source = ClientCredentials("reader", issuer=idp.issuer, client_secret=idp.reader.secret,
                               resource=SHORT)
    cache = TokenCache(source)
    before = token_requests(idp)
    seen: set[str] = set()
    problems: list[str] = []
    start = threading.Barrier(16)
    deadline = time.time() + 5.5

    def use() -> None:
        start.wait()
        while time.time() < deadline:
            token = cache.get()
            if token.expires_at - time.time() < 0.5:
                problems.append(f"a token {token.expires_at - time.time():.1f} s from expiry")
            seen.add(token.value)
            time.sleep(0.01)

    threads = [threading.Thread(target=use) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not problems, problems[:3]
    assert len(seen) == 2 and source.requests == 2 and cache.refreshes == 2
    assert token_requests(idp) - before == 2  # counted at the provider too
    iats = sorted(verified(idp, t, SHORT, expired_ok=True)["iat"] for t in seen)
    assert 2 <= iats[1] - iats[0] <= 4  # refreshed before expiry, not at once


def test_projected_token_file_is_read_again_when_rotated(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def sa_token(n: int) -> str:
        now = int(time.time())
        return jwt.encode({"iss": "https://kubernetes.default.svc", "sub": f"system:serviceaccount:flows:runner-{n}",
                           "aud": ["gateway"], "iat": now, "exp": now + 3600}, key, algorithm="RS256")

    data = tmp_path / "..data"
    data.mkdir()
    (data / "token").write_text(sa_token(1))
    path = tmp_path / "token"
    path.symlink_to(data / "token")
    source = ProjectedTokenFile(path)
    cache = TokenCache(source)
    first = cache.get()
    assert cache.get() is first and source.requests == 1
    assert first.expires_at == jwt.decode(first.value, options={"verify_signature": False})["exp"]
    # The kubelet's rotation: a new file, then an atomic swap of the link.
    (data / "token.new").write_text(sa_token(2))
    os.replace(data / "token.new", data / "token")
    second = cache.get()
    assert second != first and source.requests == 2
    assert "runner-2" in jwt.decode(second.value, options={"verify_signature": False})["sub"]


def test_static_token_and_redaction():
    token_text = jwt.encode({"sub": "legacy", "exp": int(time.time()) + 600}, "k" * 32, algorithm="HS256")
    cache = TokenCache(StaticToken(token_text, name="legacy token"))
    token = cache.get()
    assert token.value == token_text and abs(token.expires_in() - 600) < 5
    client = GatewayClient("http://127.0.0.1:9", cache)
    for text in (repr(token), str(token), repr(cache), str(cache), repr(client), f"{token}"):
        assert token_text not in text
    assert token.fingerprint in repr(token)
    with pytest.raises(TypeError):
        pickle.dumps(token)
    plain = AccessToken("opaque-token-value", time.time() + 30)
    assert "opaque-token-value" not in repr([plain, {"t": plain}])
    client.close()


def test_token_modules_work_without_prefect(tmp_path):
    """tokens and client import nothing from Prefect (an Airflow worker has none)."""
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'prefect' or name.startswith('prefect.'):\n"
        "            raise ImportError('prefect is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import identity_dispatcher.tokens, identity_dispatcher.client\n"
        "assert not any(m == 'prefect' or m.startswith('prefect.') for m in sys.modules)\n"
        "try:\n"
        "    import identity_dispatcher.prefect_gateway\n"
        "except ImportError:\n"
        "    print('blocked ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "blocked ok"


def test_token_errors_keep_their_kind_through_pickling():
    """Prefect pickles a task's exception into its state; retry_on_retryable reads it back."""
    for error in (TokenUnavailable("the token endpoint answered 503", source="client credentials of c"),
                  TokenRefused("the token endpoint answered 401 invalid_client", source="s", error="invalid_client")):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
        assert (back.source, back.error, back.retryable) == (error.source, error.error, error.retryable)
        assert is_retryable(back) == isinstance(error, TokenUnavailable)

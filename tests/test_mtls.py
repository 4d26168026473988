"""Certificate-bound access tokens (RFC 8705) in a real Envoy with a TLS listener.

A test PKI (made here with ``cryptography``): a CA, a server certificate for 127.0.0.1, and two
client certificates, ``a`` and ``b``. Envoy asks for a client certificate (optional) and
validates it against the CA. Tokens come from the real oidc-provider for a client with
``certificate_bound`` (it binds them to the certificate sent URL-encoded in ``x-client-cert`` at
the token endpoint) and, for edge cases, from the dev issuer with ``cnf["x5t#S256"]`` set here.

The certificate reaches the filter three ways (``client_certificate.source``): ``connection``
(Envoy's attribute ``connection.sha256_peer_certificate_digest``), ``xfcc`` (Envoy's connection
manager sets ``x-forwarded-client-cert`` from the real connection: ``SANITIZE_SET``), ``header``
(a TLS-terminating Envoy in front sets ``x-ssl-client-cert`` from ``%DOWNSTREAM_PEER_CERT%``).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import ssl
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from identity_devkit.jwk import b64url

import oidc_provider
import support
from envoy_runner import Envoy, downstream_tls
from support import PARTNER_AUDIENCE, bearer, claims, partner_claims, token

API = "https://api.mtls.test"
ASSERTION_SECRET = "mtls-assertion-secret-0123456789abcdef"
PEM_HEADER = "x-ssl-client-cert"


# ---------------------------------------------------------------------------------------------
# A test PKI
# ---------------------------------------------------------------------------------------------

@dataclass
class Pair:
    cert: Path
    key: Path
    pem: str
    x5t: str  # base64url SHA-256 of the DER: the cnf["x5t#S256"] of tokens bound to it
    hex: str


@dataclass
class Pki:
    ca: Path
    server: Pair
    a: Pair
    b: Pair


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(directory: Path, name: str, subject: str, ca_key: Any, issuer: x509.Name, *,
           ca: bool = False, ip: str | None = None, key: Any = None) -> tuple[Pair, Any]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    cert = builder.sign(ca_key or key, hashes.SHA256())
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_text(pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    digest = hashlib.sha256(der).digest()
    x5t = b64url(digest)
    return Pair(cert_path, key_path, pem, x5t, digest.hex()), cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca, ca_cert = _issue(d, "ca", "identity-tests CA", None, _name("identity-tests CA"), ca=True,
                         key=ca_key)
    server, _ = _issue(d, "server", "127.0.0.1", ca_key, ca_cert.subject, ip="127.0.0.1")
    a, _ = _issue(d, "client-a", "client a", ca_key, ca_cert.subject)
    b, _ = _issue(d, "client-b", "client b", ca_key, ca_cert.subject)
    return Pki(ca.cert, server, a, b)


# ---------------------------------------------------------------------------------------------
# The OpenID provider, configurations, Envoys
# ---------------------------------------------------------------------------------------------

BOUND = oidc_provider.Client("bound-client", secret="bound-secret-0123456789",
                             scope="api:read", certificate_bound=True)


@pytest.fixture(scope="module")
def idp(request: pytest.FixtureRequest) -> oidc_provider.OidcProvider:
    if not oidc_provider.installed():
        pytest.fail(f"oidc-provider is not installed: {oidc_provider.INSTALL_HINT}", pytrace=False)
    provider = oidc_provider.OidcProvider(clients=[BOUND], resources={API: "api:read"},
                                          name="oidc-mtls").start()
    request.node.oidc_providers = [provider]
    yield provider
    provider.stop()


def bound_token(idp: oidc_provider.OidcProvider, pair: Pair) -> str:
    """A client-credentials token of the certificate-bound client, bound to ``pair``."""
    form = {"grant_type": "client_credentials", "scope": "api:read", "resource": API}
    reply = httpx.post(idp.token_url, data=form, auth=(BOUND.client_id, BOUND.secret or ""),
                       headers={"x-client-cert": urllib.parse.quote(pair.pem, safe="")})
    assert reply.status_code == 200, reply.text
    return reply.json()["access_token"]


def payload(tok: str) -> dict[str, Any]:
    part = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def filter_config(keys: support.Keys, idp: oidc_provider.OidcProvider,
                  client_certificate: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dev issuer (bound tokens allowed), the partner issuer (bound tokens required) and
    the OpenID provider; the binding as a claim header and in the assertion."""
    config: dict[str, Any] = {
        "providers": [
            {"name": "primary", "issuer": support.ISSUER, "audiences": [support.AUDIENCE],
             "jwks": keys.primary_jwks()},
            {"name": "partner", "issuer": support.PARTNER_ISSUER, "audiences": [PARTNER_AUDIENCE],
             "jwks": keys.partner_jwks(), "certificate_bound": "required"},
            {"name": "oidc", "issuer": idp.issuer, "audiences": [API], "jwks": idp.jwks()},
        ],
        "default": "authenticated",
        "headers": {
            "claims": [{"claim": "sub", "header": "x-identity-subject"},
                       {"identity": "binding", "header": "x-identity-binding"}],
            "assertion": {"audience": "svc", "keys": [{"kid": "a1", "secret": ASSERTION_SECRET}]},
        },
    }
    if client_certificate is not None:
        config["client_certificate"] = client_certificate
    return config


@pytest.fixture(scope="module")
def start(request: pytest.FixtureRequest, wasm: Path, echo: Any, pki: Pki) -> Callable[..., Envoy]:
    """``start(key, config=..., hcm_options=..., tls=True, upstream_port=..., edit=...)``: an
    Envoy for this module, started once per key. ``tls``: the listener asks for an optional
    client certificate, validated against the test CA."""
    running: dict[str, Envoy] = {}

    def get(key: str, *, config: Any = None, hcm_options: dict[str, Any] | None = None,
            tls: bool = True, upstream_port: int | None = None,
            http_filters: list[Any] | None = None,
            edit: Callable[[dict[str, Any]], None] | None = None) -> Envoy:
        if key in running and running[key].running:
            return running[key]
        listener_tls = downstream_tls(pki.server.cert, pki.server.key, client_ca=pki.ca) if tls else None
        envoy = Envoy(wasm, config, upstream_port=upstream_port or echo.port, name=f"mtls-{key}",
                      hcm_options=hcm_options, tls=listener_tls, http_filters=http_filters)
        if edit:
            edit(envoy.bootstrap)
        running[key] = envoy.start()
        return running[key]

    yield get
    for envoy in running.values():
        envoy.stop()
    if request.session.testsfailed == 0:
        for envoy in running.values():
            envoy.remove_workdir()


@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def from_upstream(self) -> bool:
        return self.headers.get("x-echo-upstream") == "1"

    @property
    def upstream(self) -> dict[str, Any] | None:
        return json.loads(self.body) if self.from_upstream else None

    def json(self) -> Any:
        return json.loads(self.body)


def call(envoy: Envoy, pki: Pki, cert: Pair | None, headers: dict[str, str] | None = None,
         path: str = "/api/things") -> Answer:
    """GET over TLS (verifying Envoy's certificate against the test CA), with ``cert`` as the
    client certificate, or none."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert:
        context.load_cert_chain(str(cert.cert), str(cert.key))
    with httpx.Client(verify=context, timeout=10.0) as client:
        reply = client.get(f"https://127.0.0.1:{envoy.port}{path}", headers=headers or {})
    return Answer(reply.status_code, reply.headers, reply.content)


def assert_refused(reply: Answer, reason: str) -> None:
    """401 ``invalid_token`` (RFC 8705 section 3) with the reason, never upstream."""
    assert not reply.from_upstream, reply
    assert reply.status == 401, reply
    assert reply.header("x-identity-reason") == reason, reply
    assert reply.header("www-authenticate") == 'Bearer error="invalid_token"', reply
    assert reply.json() == {"error": reason, "status": 401}


def assert_bound(reply: Answer, subject: str) -> dict[str, Any]:
    """Allowed as a certificate-bound caller: the binding header and the assertion's claim."""
    assert reply.status == 200 and reply.from_upstream, reply
    upstream = reply.upstream or {}
    seen = upstream["headers"]
    assert seen["x-identity-binding"] == "mtls"
    assert seen["x-identity-subject"] == subject
    assert payload(seen["x-identity-assertion"])["binding"] == "mtls"
    return seen


@pytest.fixture(scope="module")
def connection(start, keys, idp) -> Envoy:
    return start("connection", config=filter_config(keys, idp))


# ---------------------------------------------------------------------------------------------
# source: connection (the default)
# ---------------------------------------------------------------------------------------------

def test_a_token_bound_by_the_oidc_provider_passes_with_its_certificate(connection, pki, idp):
    tok = bound_token(idp, pki.a)
    assert payload(tok)["cnf"] == {"x5t#S256": pki.a.x5t}
    seen = assert_bound(call(connection, pki, pki.a, bearer(tok)), "bound-client")
    assert "authorization" not in seen


def test_a_bound_token_with_another_certificate_is_certificate_mismatch(connection, pki, idp):
    tok = bound_token(idp, pki.a)
    assert_refused(call(connection, pki, pki.b, bearer(tok)), "certificate_mismatch")


def test_a_bound_token_without_a_certificate_is_certificate_missing(connection, pki, idp):
    tok = bound_token(idp, pki.a)
    assert_refused(call(connection, pki, None, bearer(tok)), "certificate_missing")


def test_the_certificate_is_checked_on_every_request_of_a_cached_token(connection, pki, keys):
    tok = token(keys, claims(sub="cached", cnf={"x5t#S256": pki.b.x5t}))
    assert_bound(call(connection, pki, pki.b, bearer(tok)), "cached")
    assert_refused(call(connection, pki, pki.a, bearer(tok)), "certificate_mismatch")
    assert_refused(call(connection, pki, None, bearer(tok)), "certificate_missing")
    assert_bound(call(connection, pki, pki.b, bearer(tok)), "cached")


def test_an_unbound_token_is_a_bearer_token_with_or_without_a_certificate(connection, pki, keys):
    tok = token(keys, claims(sub="plain"))
    for cert in (pki.a, None):
        reply = call(connection, pki, cert, bearer(tok))
        assert reply.status == 200, reply
        seen = (reply.upstream or {})["headers"]
        assert seen["x-identity-binding"] == "none"
        assert payload(seen["x-identity-assertion"])["binding"] == "none"


def test_a_thumbprint_that_is_no_sha256_matches_no_certificate(connection, pki, keys):
    for odd in ["not-a-thumbprint", pki.a.x5t[:-2], 42]:
        tok = token(keys, claims(cnf={"x5t#S256": odd}))
        assert_refused(call(connection, pki, pki.a, bearer(tok)), "certificate_mismatch")


def test_a_provider_that_requires_bound_tokens_refuses_a_bearer_token(connection, pki, keys):
    plain = token(keys, partner_claims(), kid="partner-1", key=keys.partner)
    assert_refused(call(connection, pki, pki.a, bearer(plain)), "certificate_required")
    bound = token(keys, partner_claims(cnf={"x5t#S256": pki.a.x5t}), kid="partner-1",
                  key=keys.partner)
    assert_bound(call(connection, pki, pki.a, bearer(bound)), "bob")


def test_a_spoofed_xfcc_is_not_trusted_with_source_connection(connection, pki, idp):
    tok = bound_token(idp, pki.a)
    spoof = {"x-forwarded-client-cert": f"By=spiffe://x;Hash={pki.a.hex}", **bearer(tok)}
    assert_refused(call(connection, pki, None, spoof), "certificate_missing")
    assert_refused(call(connection, pki, pki.b, spoof), "certificate_mismatch")


# ---------------------------------------------------------------------------------------------
# source: xfcc (Envoy's connection manager sets it from the real connection)
# ---------------------------------------------------------------------------------------------

SANITIZE_SET = {"forward_client_cert_details": "SANITIZE_SET"}


@pytest.fixture(scope="module")
def xfcc(start, keys, idp) -> Envoy:
    return start("xfcc", config=filter_config(keys, idp, {"source": "xfcc"}),
                 hcm_options=SANITIZE_SET)


def test_xfcc_set_by_envoy_binds_the_token_and_stays_at_the_gateway(xfcc, pki, idp):
    tok = bound_token(idp, pki.a)
    seen = assert_bound(call(xfcc, pki, pki.a, bearer(tok)), "bound-client")
    assert "x-forwarded-client-cert" not in seen


def test_a_client_sent_xfcc_is_replaced_or_removed_by_envoy_before_the_filter(xfcc, pki, idp):
    tok = bound_token(idp, pki.a)
    spoof = {"x-forwarded-client-cert": f"Hash={pki.a.hex}", **bearer(tok)}
    # No certificate: SANITIZE_SET removes the client's header.
    assert_refused(call(xfcc, pki, None, spoof), "certificate_missing")
    # Another certificate: SANITIZE_SET replaces it with that certificate's hash.
    assert_refused(call(xfcc, pki, pki.b, spoof), "certificate_mismatch")
    # Appended after the real element: the real (last) one counts, and it is b's.
    spoof["x-forwarded-client-cert"] = f"Hash={pki.b.hex},Hash={pki.a.hex}"
    assert_refused(call(xfcc, pki, pki.b, spoof), "certificate_mismatch")


def test_with_reject_the_trusted_xfcc_is_not_a_spoofed_header(start, keys, idp, pki):
    config = filter_config(keys, idp, {"source": "xfcc"})
    config["headers"]["spoofed_headers"] = "reject"
    envoy = start("xfcc-reject", config=config, hcm_options=SANITIZE_SET)
    tok = bound_token(idp, pki.a)
    assert_bound(call(envoy, pki, pki.a, bearer(tok)), "bound-client")
    reply = call(envoy, pki, pki.a, {"x-identity-binding": "mtls", **bearer(tok)})
    assert reply.status == 400 and reply.header("x-identity-reason") == "identity_header_spoofed"


# ---------------------------------------------------------------------------------------------
# source: header (a TLS terminator in front sets a URL-encoded PEM header)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def terminated(start, keys, idp) -> Envoy:
    """A plain-HTTP Envoy with the filter (source ``header``) behind a TLS-terminating Envoy
    that sets ``x-ssl-client-cert`` to ``%DOWNSTREAM_PEER_CERT%`` (URL-encoded PEM), after
    removing any client-sent copy. Returns the terminator."""
    inner = start("pem-inner", tls=False,
                  config=filter_config(keys, idp, {"source": "header", "header": PEM_HEADER}))

    def set_header(bootstrap: dict[str, Any]) -> None:
        listener = bootstrap["static_resources"]["listeners"][0]
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        host = hcm["route_config"]["virtual_hosts"][0]
        host["request_headers_to_remove"] = [PEM_HEADER]
        host["request_headers_to_add"] = [{
            "header": {"key": PEM_HEADER, "value": "%DOWNSTREAM_PEER_CERT%"},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }]

    return start("pem-front", http_filters=[], upstream_port=inner.port, edit=set_header)


def test_a_pem_header_from_a_trusted_terminator_binds_the_token(terminated, pki, idp):
    tok = bound_token(idp, pki.a)
    seen = assert_bound(call(terminated, pki, pki.a, bearer(tok)), "bound-client")
    assert PEM_HEADER not in seen
    assert_refused(call(terminated, pki, pki.b, bearer(tok)), "certificate_mismatch")


def test_a_client_sent_pem_header_does_not_pass_the_terminator(terminated, pki, idp):
    tok = bound_token(idp, pki.a)
    spoof = {PEM_HEADER: urllib.parse.quote(pki.a.pem, safe=""), **bearer(tok)}
    assert_refused(call(terminated, pki, None, spoof), "certificate_missing")
    assert_refused(call(terminated, pki, pki.b, spoof), "certificate_mismatch")

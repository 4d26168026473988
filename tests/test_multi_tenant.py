"""Multi-tenant issuers in real Envoy: one provider for every listed tenant of an issuer whose
`iss` names the tenant (Entra ID: `https://login.microsoftonline.com/{tenant}/v2.0`, one key set
for all tenants). The tenant in `iss` is the caller's tenant; a tenant not on the list is 401
`issuer_unknown`; keys come inline, from `jwks_uri`, or by discovery of the first listed tenant's
document (Entra's `common` document names the literal `{tenantid}` template, which proves nothing).
"""

from __future__ import annotations

from typing import Any

import pytest

from identity_devkit import jwk
from envoy_runner import Envoy
from jwks_server import JwksServer
from support import assert_allowed, assert_denied, assert_invalid_token, bearer, claims, token
from test_remote_keys import IDP_AUTHORITY, idp, wait_until  # noqa: F401

PATTERN = "https://login.idp.test/{tenant}/v2.0"
ACME = "3f2c9a0e-1b7d-4c55-9a3e-2d1f0c8b7a61"
GLOBEX = "9b1e4d2a-6c3f-4e8a-b5d7-0a2c4e6f8b1d"
INITECH = "0d8c6a4e-2f1b-4d3c-a5e7-9b8f6d4c2a1e"


def issuer_of(tenant: str) -> str:
    return PATTERN.replace("{tenant}", tenant)


def entra(keys, **source: Any) -> dict[str, Any]:
    provider = {"name": "entra", "issuer": PATTERN, "tenants": [ACME, GLOBEX], "audiences": ["api://runs"],
                "identity": {"tenant": ["tid"]}}
    provider.update(source or {"jwks": jwk.jwks(jwk.public_jwk(keys.rsa, kid="rsa-1", alg="RS256"))})
    return {
        "providers": [provider],
        "rules": [
            {"name": "tenant-runs", "match": {"path_template": "/t/{tenant}/runs"},
             "require": {"tenant_from_path": "tenant"}},
            {"name": "acme-admin", "match": {"path": "/admin"}, "require": {"tenants": [ACME]}},
        ],
        "default": "authenticated",
        "remote_keys": {"tick_ms": 50},
        "headers": {"claims": [{"identity": "tenant", "header": "x-identity-tenant"},
                               {"identity": "issuer", "header": "x-identity-issuer"},
                               {"identity": "provider", "header": "x-identity-provider"}]},
    }


def of(keys, tenant: str, **extra: Any) -> dict[str, str]:
    body = claims(iss=issuer_of(tenant), aud="api://runs", tid=tenant, **extra)
    return bearer(token(keys, body))


@pytest.fixture(scope="module")
def envoy(envoy_with, keys):
    return envoy_with(entra(keys), name="multi-tenant")


def test_a_listed_tenant_is_the_callers_tenant(envoy, keys):
    upstream = assert_allowed(envoy.get(f"/t/{ACME}/runs", of(keys, ACME)))
    assert upstream["headers"]["x-identity-tenant"] == ACME
    assert upstream["headers"]["x-identity-issuer"] == issuer_of(ACME)
    assert upstream["headers"]["x-identity-provider"] == "entra"
    assert_allowed(envoy.get(f"/t/{GLOBEX}/runs", of(keys, GLOBEX)))


def test_the_issuers_tenant_drives_tenant_rules(envoy, keys):
    assert_denied(envoy.get(f"/t/{ACME}/runs", of(keys, GLOBEX)), "forbidden", rule="tenant-runs")
    assert_allowed(envoy.get("/admin", of(keys, ACME)))
    assert_denied(envoy.get("/admin", of(keys, GLOBEX)), "forbidden", rule="acme-admin")


def test_a_tenant_not_on_the_list_is_issuer_unknown(envoy, keys):
    assert_invalid_token(envoy.get(f"/t/{INITECH}/runs", of(keys, INITECH)), "issuer_unknown")
    # The pattern itself, or Entra's template, is no tenant.
    for iss in (PATTERN, "https://login.idp.test/{tenantid}/v2.0"):
        reply = envoy.get("/x", bearer(token(keys, claims(iss=iss, aud="api://runs"))))
        assert_invalid_token(reply, "issuer_unknown")


def test_a_tenant_claim_that_contradicts_the_issuer_is_refused(envoy, keys):
    body = claims(iss=issuer_of(ACME), aud="api://runs", tid=GLOBEX)
    assert_invalid_token(envoy.get(f"/t/{GLOBEX}/runs", bearer(token(keys, body))), "issuer_unknown")
    # Without a tenant claim, the issuer's tenant is taken.
    body = claims(iss=issuer_of(GLOBEX), aud="api://runs")
    upstream = assert_allowed(envoy.get(f"/t/{GLOBEX}/runs", bearer(token(keys, body))))
    assert upstream["headers"]["x-identity-tenant"] == GLOBEX


def remote(wasm, echo, idp: JwksServer, config: dict[str, Any]) -> Envoy:
    return Envoy(wasm, config, upstream_port=echo.port, extra_clusters=[{"name": "idp", "port": idp.port}],
                 name="multi-tenant-remote")


def test_keys_from_a_jwks_uri_serve_every_listed_tenant(wasm, echo, idp, keys):
    idp.serve_json("/common/discovery/v2.0/keys", jwk.jwks(jwk.public_jwk(keys.rsa, kid="rsa-1", alg="RS256")))
    source = {"jwks_uri": f"http://{IDP_AUTHORITY}/common/discovery/v2.0/keys", "upstream": "idp"}
    with remote(wasm, echo, idp, entra(keys, **source)) as envoy:
        assert_allowed(envoy.get(f"/t/{ACME}/runs", of(keys, ACME)))
        assert_allowed(envoy.get(f"/t/{GLOBEX}/runs", of(keys, GLOBEX)))
        assert_invalid_token(envoy.get(f"/t/{INITECH}/runs", of(keys, INITECH)), "issuer_unknown")


def test_discovery_reads_the_first_tenants_document(wasm, echo, idp, keys):
    path = idp.serve_discovery(issuer_of(ACME), jwks_uri=f"http://{IDP_AUTHORITY}/{ACME}/discovery/v2.0/keys")
    assert path == f"/{ACME}/v2.0/.well-known/openid-configuration"
    idp.serve_json(f"/{ACME}/discovery/v2.0/keys", jwk.jwks(jwk.public_jwk(keys.rsa, kid="rsa-1", alg="RS256")))
    with remote(wasm, echo, idp, entra(keys, discovery=True, upstream="idp")) as envoy:
        assert_allowed(envoy.get(f"/t/{GLOBEX}/runs", of(keys, GLOBEX)))
        assert idp.count(path) >= 1


def test_discovery_refuses_a_document_that_names_the_template(wasm, echo, idp, keys):
    path = idp.serve_discovery(issuer_of(ACME), jwks_uri=f"http://{IDP_AUTHORITY}/common/discovery/v2.0/keys",
                               claimed_issuer="https://login.idp.test/{tenantid}/v2.0")
    idp.serve_json("/common/discovery/v2.0/keys", jwk.jwks(jwk.public_jwk(keys.rsa, kid="rsa-1", alg="RS256")))
    config = entra(keys, discovery=True, upstream="idp", cold_start_wait_ms=300)
    with remote(wasm, echo, idp, config) as envoy:
        assert_denied(envoy.get(f"/t/{ACME}/runs", of(keys, ACME)), "keys_unavailable")
        assert idp.count(path) >= 1
        assert idp.count("/common/discovery/v2.0/keys") == 0
        assert envoy.wait_for_log("issuer_mismatch")

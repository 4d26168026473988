"""The per-provider examples of docs/configuration.md ("Examples by identity provider"): each is
a configuration the filter's parser and Kong's schema accept, and, with its key source replaced
by a test key, it judges tokens shaped like that provider's access tokens in a real Envoy:
the provider's caller is let through with the documented identity headers, and the case each
example guards against is refused with its reason."""

from __future__ import annotations

import copy
import json
import re
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from identity_devkit import jwk
import support
from config_check import parser_verdicts, schema_errors
from support import assert_allowed, assert_denied, assert_invalid_token, bearer

# The first test may build the native schema tool (tools/schema-gen).
pytestmark = pytest.mark.timeout(900)

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
EXAMPLE = re.compile(r"<!-- provider-example: ([a-z0-9-]+) -->\s*```json\n(.*?)\n```", re.S)
KID = "example-key-1"


def examples() -> dict[str, dict[str, Any]]:
    found = {name: json.loads(body) for name, body in EXAMPLE.findall(DOC.read_text())}
    return found


def test_every_provider_named_by_the_docs_has_an_example():
    assert set(examples()) == {"okta", "entra", "keycloak", "cognito", "auth0", "kubernetes"}


def test_the_examples_pass_the_filters_parser_and_kongs_schema():
    names = sorted(examples())
    verdicts = parser_verdicts([examples()[n] for n in names])
    for name, verdict in zip(names, verdicts):
        assert verdict.ok, f"{name}: {verdict.path}: {verdict.message}"
        assert schema_errors(examples()[name]) == [], name


def with_test_key(config: dict[str, Any], keys: support.Keys) -> dict[str, Any]:
    """The example with its key source (discovery, jwks_uri) replaced by the test RSA key."""
    config = copy.deepcopy(config)
    [provider] = config["providers"]
    for field in ("discovery", "jwks_uri", "upstream"):
        provider.pop(field, None)
    provider["jwks"] = jwk.jwks(jwk.public_jwk(keys.rsa, kid=KID))
    return config


def sign(keys: support.Keys, claims: dict[str, Any]) -> str:
    return support.token(keys, claims, "RS256", kid=KID)


def lifetime(claims: dict[str, Any], seconds: int = 600) -> dict[str, Any]:
    t = support.now()
    return {"iat": t, "nbf": t, "exp": t + seconds, **claims}


@pytest.fixture(scope="module")
def example_envoy(envoy_with, keys) -> Callable[[str], Any]:
    def start(name: str):
        return envoy_with(with_test_key(examples()[name], keys), f"example-{name}")
    return start


def call(envoy, keys, claims: dict[str, Any], method: str = "POST") -> Any:
    return envoy.request(method, "/runs", bearer(sign(keys, lifetime(claims))))


# --- Okta -------------------------------------------------------------------------------

def okta(**overrides: Any) -> dict[str, Any]:
    return {
        "ver": 1, "jti": "AT." + uuid.uuid4().hex, "iss": "https://acme.okta.com/oauth2/default",
        "aud": "api://default", "cid": "0oa1runner2client", "uid": "00u1alice",
        "sub": "alice@example.com", "scp": ["runs:write", "runs:read"], "groups": ["Everyone", "etl"],
        **overrides,
    }


def test_okta(example_envoy, keys):
    envoy = example_envoy("okta")
    seen = assert_allowed(call(envoy, keys, okta()))["headers"]
    assert seen["x-identity-subject"] == "alice@example.com"
    assert seen["x-identity-client"] == "0oa1runner2client"
    assert seen["x-identity-scopes"] == "runs:write,runs:read"
    reply = call(envoy, keys, okta(scp=["runs:read"]))
    assert_denied(reply, "insufficient_scope", rule="start-runs")
    assert 'scope="runs:write"' in reply.header("www-authenticate")
    assert_allowed(call(envoy, keys, okta(scp=["runs:read"]), "GET"))
    assert_invalid_token(call(envoy, keys, okta(aud="api://other")), "audience_mismatch")


# --- Entra ID ---------------------------------------------------------------------------

TENANT = "3f2c9a0e-1b7d-4c55-9a3e-2d1f0c8b7a61"
APP = "6e74172b-be56-4843-9ff4-e66a39bb12e3"


def entra(tenant: str = TENANT, **overrides: Any) -> dict[str, Any]:
    return {
        "ver": "2.0", "iss": f"https://login.microsoftonline.com/{tenant}/v2.0", "aud": APP,
        "azp": "c7a8e5f0-0d2b-4b39-8a55-1f3b9e2d4c6a", "azpacr": "1", "tid": tenant,
        "oid": "a1b2c3d4-0000-4000-8000-00000000a11c", "sub": "pairwise-subject-of-alice",
        "roles": ["Runs.Write"], "uti": uuid.uuid4().hex, **overrides,
    }


def test_entra_id(example_envoy, keys):
    envoy = example_envoy("entra")
    seen = assert_allowed(call(envoy, keys, entra()))["headers"]
    assert seen["x-identity-subject"] == "a1b2c3d4-0000-4000-8000-00000000a11c"
    assert seen["x-identity-tenant"] == TENANT
    assert seen["x-identity-roles"] == "Runs.Write"
    assert_denied(call(envoy, keys, entra(roles=["Runs.Read"])), "forbidden", rule="start-runs")
    stranger = "0d0d0d0d-1111-4222-8333-444444444444"
    assert_invalid_token(call(envoy, keys, entra(stranger)), "issuer_unknown")
    # A token whose tid contradicts its iss.
    assert_invalid_token(call(envoy, keys, entra(tid="9b1e4d2a-6c3f-4e8a-b5d7-0a2c4e6f8b1d")), "issuer_unknown")


# --- Keycloak ---------------------------------------------------------------------------

def keycloak(**overrides: Any) -> dict[str, Any]:
    return {
        "iss": "https://sso.example.com/realms/main", "aud": ["orders-api", "account"],
        "sub": "f3b0a1c2-5d6e-4f70-8a9b-0c1d2e3f4a5b", "typ": "Bearer", "azp": "runner-cli",
        "preferred_username": "alice", "scope": "openid profile email",
        "realm_access": {"roles": ["default-roles-main", "offline_access"]},
        "resource_access": {"orders-api": {"roles": ["flow-runner"]}, "account": {"roles": ["view-profile"]}},
        **overrides,
    }


def test_keycloak(example_envoy, keys):
    envoy = example_envoy("keycloak")
    seen = assert_allowed(call(envoy, keys, keycloak()))["headers"]
    assert seen["x-identity-username"] == "alice"
    assert seen["x-identity-roles"] == "default-roles-main,offline_access,flow-runner"
    no_role = keycloak(resource_access={"account": {"roles": ["view-profile"]}})
    assert_denied(call(envoy, keys, no_role), "forbidden", rule="start-runs")
    assert_allowed(call(envoy, keys, no_role, "GET"))


# --- Cognito ----------------------------------------------------------------------------

COGNITO = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Example"


def cognito_access(**overrides: Any) -> dict[str, Any]:
    return {
        "sub": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "cognito:groups": ["runners"], "iss": COGNITO,
        "version": 2, "client_id": "6f1q7cognito0client", "origin_jti": str(uuid.uuid4()),
        "token_use": "access", "scope": "runs/write openid", "auth_time": support.now(),
        "jti": str(uuid.uuid4()), "username": "alice", **overrides,
    }


def test_cognito(example_envoy, keys):
    envoy = example_envoy("cognito")
    seen = assert_allowed(call(envoy, keys, cognito_access()))["headers"]
    assert seen["x-identity-username"] == "alice"
    assert seen["x-identity-groups"] == "runners"
    assert_invalid_token(call(envoy, keys, cognito_access(client_id="another-client")), "audience_mismatch")
    # The pool's ID token: `aud` is the client, but it is not an access token.
    id_token = cognito_access(token_use="id", client_id=None, aud="6f1q7cognito0client", scope=None)
    id_token = {k: v for k, v in id_token.items() if v is not None}
    assert_denied(call(envoy, keys, id_token, "GET"), "forbidden", rule="read")
    assert_denied(call(envoy, keys, cognito_access(scope="openid")), "insufficient_scope", rule="start-runs")


# --- Auth0 ------------------------------------------------------------------------------

def auth0(**overrides: Any) -> dict[str, Any]:
    return {
        "https://example.com/roles": ["flow-runner"], "iss": "https://acme.eu.auth0.com/",
        "sub": "auth0|64f1c0ffee", "aud": ["https://api.example.com", "https://acme.eu.auth0.com/userinfo"],
        "azp": "Xy7runnerClientId", "scope": "openid profile", "permissions": ["read:runs", "write:runs"],
        **overrides,
    }


def test_auth0(example_envoy, keys):
    envoy = example_envoy("auth0")
    seen = assert_allowed(call(envoy, keys, auth0()))["headers"]
    assert seen["x-identity-subject"] == "auth0|64f1c0ffee"
    assert seen["x-identity-roles"] == "flow-runner"
    reply = call(envoy, keys, auth0(permissions=["read:runs"]))
    assert_denied(reply, "insufficient_scope", rule="start-runs")
    assert_invalid_token(call(envoy, keys, auth0(aud="https://acme.eu.auth0.com/userinfo")), "audience_mismatch")


# --- Kubernetes -------------------------------------------------------------------------

def service_account(namespace: str = "flows", account: str = "prefect-worker", **overrides: Any) -> dict[str, Any]:
    return {
        "aud": ["prefect-dispatcher"], "iss": "https://kubernetes.default.svc.cluster.local",
        "jti": str(uuid.uuid4()), "sub": f"system:serviceaccount:{namespace}:{account}",
        "kubernetes.io": {
            "namespace": namespace,
            "node": {"name": "node-a", "uid": str(uuid.uuid4())},
            "pod": {"name": f"{account}-5d9f8-abcde", "uid": str(uuid.uuid4())},
            "serviceaccount": {"name": account, "uid": str(uuid.uuid4())},
        },
        **overrides,
    }


def test_kubernetes_service_accounts(example_envoy, keys):
    envoy = example_envoy("kubernetes")
    seen = assert_allowed(call(envoy, keys, service_account()))["headers"]
    assert seen["x-identity-namespace"] == "flows"
    assert seen["x-identity-service-account"] == "prefect-worker"
    assert seen["x-identity-subject"] == "system:serviceaccount:flows:prefect-worker"
    assert_denied(call(envoy, keys, service_account("flows", "builder")), "forbidden", rule="start-runs")
    assert_allowed(call(envoy, keys, service_account("flows", "builder"), "GET"))
    assert_denied(call(envoy, keys, service_account("default"), "GET"), "forbidden", rule="read")
    assert_invalid_token(call(envoy, keys, service_account(aud=["https://kubernetes.default.svc"])),
                         "audience_mismatch")

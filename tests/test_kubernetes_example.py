"""The Kubernetes example (envoy/istio/kubernetes-serviceaccounts.yaml) in a real Envoy: its
pluginConfig, with the test issuer's key in place of the cluster's, judges tokens shaped like
projected service-account tokens; and the example's Deployment agrees with its rules."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from identity_devkit import jwk
import support
from support import assert_allowed, assert_denied, assert_invalid_token, bearer

EXAMPLE = Path(__file__).resolve().parent.parent / "envoy" / "istio" / "kubernetes-serviceaccounts.yaml"
KID = "cluster-sa-1"


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]


def one(kind: str) -> dict[str, Any]:
    [found] = [d for d in documents() if d["kind"] == kind]
    return found


def plugin_config() -> dict[str, Any]:
    return one("WasmPlugin")["spec"]["pluginConfig"]


def projected_token_volume() -> dict[str, Any]:
    pod = one("Deployment")["spec"]["template"]["spec"]
    [source] = [s["serviceAccountToken"] for v in pod["volumes"] for s in v["projected"]["sources"]
                if "serviceAccountToken" in s]
    return source


CLUSTER = plugin_config()["providers"][0]["issuer"]
AUDIENCE = projected_token_volume()["audience"]


@pytest.fixture(scope="module")
def cluster(envoy_with, keys):
    config = plugin_config()
    config["providers"][0]["jwks"] = jwk.jwks(jwk.public_jwk(keys.rsa, kid=KID, alg="RS256"))
    return envoy_with(config, "kubernetes-example")


def sa_claims(namespace: str = "flows", account: str = "prefect-worker", *,
              audience: list[str] | None = None, **overrides: Any) -> dict[str, Any]:
    """The claims of a projected service-account token as the API server issues them (1.30+:
    with `jti` and the node)."""
    t = support.now()
    pod = f"{account}-7d9f8b6c5-x2x4q"
    claims: dict[str, Any] = {
        "aud": [AUDIENCE] if audience is None else audience,
        "exp": t + projected_token_volume()["expirationSeconds"],
        "iat": t,
        "nbf": t,
        "iss": CLUSTER,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {
            "namespace": namespace,
            "node": {"name": "node-a", "uid": str(uuid.uuid4())},
            "pod": {"name": pod, "uid": str(uuid.uuid4())},
            "serviceaccount": {"name": account, "uid": str(uuid.uuid4())},
        },
        "sub": f"system:serviceaccount:{namespace}:{account}",
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def sa_token(keys, claims: dict[str, Any]) -> str:
    return support.token(keys, claims, "RS256", kid=KID)


def start_run(cluster, keys, claims: dict[str, Any]):
    return cluster.request("POST", "/api/deployments/etl/runs", bearer(sa_token(keys, claims)))


def test_the_worker_deployment_matches_the_rules():
    deployment = one("Deployment")
    rule = next(r for r in plugin_config()["rules"] if r["name"] == "worker-runs")
    wanted = {c["claim"]: c["equals"] for c in rule["require"]["claims"]}
    assert wanted == {
        "kubernetes.io.namespace": deployment["metadata"]["namespace"],
        "kubernetes.io.serviceaccount.name": deployment["spec"]["template"]["spec"]["serviceAccountName"],
    }
    assert plugin_config()["providers"][0]["audiences"] == [AUDIENCE]
    assert projected_token_volume()["expirationSeconds"] <= plugin_config()["providers"][0]["max_lifetime_seconds"]


def test_the_workers_service_account_may_start_runs(cluster, keys):
    seen = assert_allowed(start_run(cluster, keys, sa_claims()))
    assert seen["headers"]["x-identity-subject"] == "system:serviceaccount:flows:prefect-worker"
    assert seen["headers"]["x-identity-namespace"] == "flows"
    assert seen["headers"]["x-identity-service-account"] == "prefect-worker"
    assert "authorization" not in seen["headers"]


def test_the_same_service_account_in_another_namespace_is_forbidden(cluster, keys):
    assert_denied(start_run(cluster, keys, sa_claims("default")), "forbidden", rule="worker-runs")


def test_another_service_account_in_the_namespace_is_forbidden(cluster, keys):
    assert_denied(start_run(cluster, keys, sa_claims("flows", "builder")), "forbidden", rule="worker-runs")


def test_reading_needs_a_caller_of_the_namespace(cluster, keys):
    assert_allowed(cluster.get("/api/flows", bearer(sa_token(keys, sa_claims("flows", "builder")))))
    reply = cluster.get("/api/flows", bearer(sa_token(keys, sa_claims("default", "builder"))))
    assert_denied(reply, "forbidden", rule="read-api")


def test_the_pods_default_token_for_the_api_server_is_refused(cluster, keys):
    claims = sa_claims(audience=[CLUSTER])
    assert_invalid_token(start_run(cluster, keys, claims), "audience_mismatch")


def test_a_token_without_the_kubernetes_claims_is_refused(cluster, keys):
    claims = sa_claims(**{"kubernetes.io": {"namespace": "flows"}})
    assert_invalid_token(start_run(cluster, keys, claims), "claim_missing")


def test_a_legacy_secret_token_is_refused(cluster, keys):
    legacy = {
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": "flows",
        "kubernetes.io/serviceaccount/service-account.name": "prefect-worker",
        "sub": "system:serviceaccount:flows:prefect-worker",
    }
    assert_invalid_token(start_run(cluster, keys, legacy), "issuer_unknown")


def test_client_sent_kubernetes_headers_never_reach_the_upstream(cluster):
    spoofed = {"x-identity-namespace": "flows", "x-identity-service-account": "prefect-worker"}
    seen = assert_allowed(cluster.get("/health", spoofed))
    for header in spoofed:
        assert header not in seen["headers"]

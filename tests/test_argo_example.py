"""The Argo Workflows example in docs/examples/argo/ (docs/argo-workflows.md): the gateway's
pluginConfig is a configuration the filter's own parser accepts, and it verifies what the
WorkflowTemplate sends (the projected token's audience, the namespace and service account the
rules name, the paths the steps call)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from config_check import parser_verdict, schema_errors

# The first test builds the native tool (tools/*, a few minutes on a fresh machine).
pytestmark = pytest.mark.timeout(900)

ARGO = Path(__file__).resolve().parent.parent / "docs" / "examples" / "argo"


def one(path: Path, kind: str) -> dict[str, Any]:
    found = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == kind]
    assert len(found) == 1, f"{path.name}: {len(found)} {kind}"
    return found[0]


PLUGIN = one(ARGO / "gateway.yaml", "WasmPlugin")["spec"]
CONFIG = PLUGIN["pluginConfig"]
TEMPLATE = one(ARGO / "workflowtemplate.yaml", "WorkflowTemplate")
ACCOUNT = one(ARGO / "workflowtemplate.yaml", "ServiceAccount")


def test_gateway_config_is_accepted_by_the_filters_parser():
    verdict = parser_verdict(CONFIG)
    assert verdict.ok, f"{verdict.path}: {verdict.message}"
    assert schema_errors(CONFIG) == []
    assert (PLUGIN["phase"], PLUGIN["failStrategy"]) == ("AUTHN", "FAIL_CLOSE")


def test_the_projected_token_is_for_the_gateways_audience_and_short_lived():
    (volume,) = [v for v in TEMPLATE["spec"]["volumes"] if v["name"] == "gateway-token"]
    (source,) = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    (provider,) = CONFIG["providers"]
    assert provider["audiences"] == [token["audience"]]
    assert token["expirationSeconds"] <= provider["max_lifetime_seconds"]
    step = next(t for t in TEMPLATE["spec"]["templates"] if t["name"] == "call-gateway")
    (mount,) = step["container"]["volumeMounts"]
    env = {e["name"]: e["value"] for e in step["container"]["env"]}
    assert env["TOKEN_FILE"] == f"{mount['mountPath']}/{token['path']}"
    assert "$(cat \"$TOKEN_FILE\")" in step["container"]["args"][0], "read at each call (rotation)"
    # Only temporary failures are retried (the script's exit code 75).
    assert step["retryStrategy"]["expression"] == "asInt(lastRetry.exitCode) == 75"


def test_the_rules_allow_this_namespace_and_service_account_for_the_paths_the_steps_call():
    namespace = TEMPLATE["metadata"]["namespace"]
    account = TEMPLATE["spec"]["serviceAccountName"]
    assert (ACCOUNT["metadata"]["name"], ACCOUNT["metadata"]["namespace"]) == (account, namespace)
    (provider,) = CONFIG["providers"]
    rules = {r["name"]: r for r in CONFIG["rules"]}
    build = rules["reports-build"]
    claims = {c["claim"]: c for c in build["require"]["claims"]}
    assert claims["kubernetes.io.namespace"]["equals"] == namespace
    assert account in claims["kubernetes.io.serviceaccount.name"]["in"]
    assert build["require"]["issuers"] == [provider["issuer"]]
    assert provider["identity"]["tenant"] == ["kubernetes.io.namespace"]
    assert CONFIG["default"] == "deny"

    calls = [s[0]["arguments"]["parameters"] for s in TEMPLATE["spec"]["templates"][0]["steps"]]
    for parameters in calls:
        args = {p["name"]: p["value"] for p in parameters}
        matching = [r for r in CONFIG["rules"] if args["method"] in r["match"]["methods"]
                    and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", r["match"]["path_template"]),
                                     args["path"])]
        assert matching, f"no rule for {args}"
        claim_rules = {c["claim"]: c for c in matching[0]["require"]["claims"]}
        namespace_rule = claim_rules["kubernetes.io.namespace"]
        assert namespace == namespace_rule.get("equals") or namespace in namespace_rule.get("in", [])


# -- the same configuration in real Envoy, with the session's keys in place of the cluster's ----

import support  # noqa: E402


def k8s_claims(namespace: str, account: str, audience: str = "reports-gateway") -> dict[str, Any]:
    (provider,) = CONFIG["providers"]
    t = support.now()
    return {
        "iss": provider["issuer"], "aud": [audience], "iat": t, "nbf": t, "exp": t + 600,
        "sub": f"system:serviceaccount:{namespace}:{account}",
        "kubernetes.io": {"namespace": namespace,
                          "serviceaccount": {"name": account, "uid": "0b6c6f8e-1"},
                          "pod": {"name": "build-daily-report-x7k2p-1", "uid": "5d1e-2"}},
    }


@pytest.fixture(scope="module")
def argo_gateway(envoy_with, keys):
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    (provider,) = config["providers"]
    for field in ("jwks_uri", "upstream"):
        provider.pop(field)
    provider["jwks"] = keys.primary_jwks()
    return envoy_with(config, "argo")


def test_the_gateway_decides_by_namespace_and_service_account(argo_gateway, keys):
    def call(method: str, claims_: dict[str, Any]) -> Any:
        return argo_gateway.request(method, "/reports/daily",
                                    headers=support.bearer(support.token(keys, claims_)))

    seen = support.assert_allowed(call("POST", k8s_claims("data-pipelines", "report-builder")))
    assert seen["headers"]["x-identity-namespace"] == "data-pipelines"
    assert seen["headers"]["x-identity-subject"] == "system:serviceaccount:data-pipelines:report-builder"
    support.assert_denied(call("POST", k8s_claims("data-pipelines", "default")), "forbidden",
                          rule="reports-build")
    support.assert_denied(call("POST", k8s_claims("reporting", "report-builder")), "forbidden",
                          rule="reports-build")
    support.assert_allowed(call("GET", k8s_claims("reporting", "viewer")))
    support.assert_denied(call("GET", k8s_claims("default", "viewer")), "forbidden", rule="reports-read")
    support.assert_invalid_token(call("POST", k8s_claims("data-pipelines", "report-builder",
                                                         audience="https://kubernetes.default.svc")),
                                 "audience_mismatch")

"""The Istio examples in envoy/istio/: the WasmPlugins' pluginConfig is a configuration the
filter accepts (Istio passes it to the filter as JSON), the fetch upstream is the cluster the
ServiceEntry creates, and the migration example keeps the policy of the Istio resources it
replaces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from config_check import parser_verdict, schema_errors

# The first test builds the native tool (tools/*, a few minutes on a fresh machine).
pytestmark = pytest.mark.timeout(900)

ISTIO = Path(__file__).resolve().parent.parent / "envoy" / "istio"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def one(path: Path, kind: str) -> dict[str, Any]:
    found = [d for d in docs(path) if d["kind"] == kind]
    assert len(found) == 1, f"{path.name}: {len(found)} {kind}"
    return found[0]


WASM_PLUGINS = [ISTIO / "wasmplugin.yaml", ISTIO / "migration" / "after.yaml",
                ISTIO / "kubernetes-serviceaccounts.yaml"]


@pytest.mark.parametrize("path", WASM_PLUGINS, ids=lambda p: p.relative_to(ISTIO).as_posix())
def test_plugin_config_is_accepted_by_the_filters_parser(path):
    config = one(path, "WasmPlugin")["spec"]["pluginConfig"]
    verdict = parser_verdict(config)
    assert verdict.ok, f"{verdict.path}: {verdict.message}"
    assert schema_errors(config) == []


@pytest.mark.parametrize("path", WASM_PLUGINS, ids=lambda p: p.relative_to(ISTIO).as_posix())
def test_wasm_plugin_fails_closed_in_the_authn_phase(path):
    plugin = one(path, "WasmPlugin")
    assert plugin["apiVersion"] == "extensions.istio.io/v1alpha1"
    spec = plugin["spec"]
    assert spec["phase"] == "AUTHN"
    assert spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["selector"]["matchLabels"]
    assert spec["url"].startswith("oci://")
    assert isinstance(spec["pluginConfig"], dict), "pluginConfig is a YAML object, not a string"


def cluster_for(service_entry: dict[str, Any], port: int) -> str:
    return f"outbound|{port}||{service_entry['spec']['hosts'][0]}"


def test_fetch_upstream_is_the_cluster_the_service_entry_creates():
    entry = one(ISTIO / "serviceentry.yaml", "ServiceEntry")
    rule = one(ISTIO / "serviceentry.yaml", "DestinationRule")
    host = entry["spec"]["hosts"][0]
    ports = {p["number"] for p in entry["spec"]["ports"]}
    for path in WASM_PLUGINS:
        for provider in one(path, "WasmPlugin")["spec"]["pluginConfig"]["providers"]:
            if "jwks_uri" not in provider and not provider.get("discovery"):
                continue
            upstream = provider["upstream"]
            assert upstream in {cluster_for(entry, p) for p in ports}, upstream
            assert provider.get("jwks_uri", provider["issuer"]).startswith(f"https://{host}/")
            port = int(upstream.split("|")[1])
            tls = [s["tls"] for s in rule["spec"]["trafficPolicy"]["portLevelSettings"]
                   if s["port"]["number"] == port]
            assert tls and tls[0]["mode"] == "SIMPLE", "the sidecar must originate TLS to the IdP"
            assert tls[0]["sni"] == host


def test_migration_keeps_the_request_authentication_settings():
    before = one(ISTIO / "migration" / "before.yaml", "RequestAuthentication")["spec"]
    after = one(ISTIO / "migration" / "after.yaml", "WasmPlugin")["spec"]
    config = after["pluginConfig"]
    assert after["selector"] == before["selector"]
    jwt = before["jwtRules"]
    assert [(r["issuer"], r["jwksUri"], r["audiences"]) for r in jwt] == \
        [(p["issuer"], p["jwks_uri"], p["audiences"]) for p in config["providers"]]
    assert [{"header": h["name"], "prefix": h["prefix"]} for h in jwt[0]["fromHeaders"]] == \
        config["token_sources"]
    assert [{"claim": c["claim"], "header": c["header"]} for c in jwt[0]["outputClaimToHeaders"]] == \
        config["headers"]["claims"]
    assert jwt[0]["forwardOriginalToken"] == config["headers"]["forward_token"]


def test_migration_keeps_the_authorization_rules():
    policy = one(ISTIO / "migration" / "before.yaml", "AuthorizationPolicy")["spec"]
    config = one(ISTIO / "migration" / "after.yaml", "WasmPlugin")["spec"]["pluginConfig"]
    assert policy["action"] == "ALLOW" and config["default"] == "deny"
    assert len(policy["rules"]) == len(config["rules"])
    for istio, ours in zip(policy["rules"], config["rules"]):
        op = istio["to"][0]["operation"]
        path = op["paths"][0]
        if path.endswith("/*"):
            assert ours["match"]["path_prefix"] == path[:-2]
        else:
            assert ours["match"]["path"] == path
        assert ours["match"]["methods"] == op["methods"]
        needs_token = "from" in istio
        assert ours.get("allow_anonymous", False) is not needs_token
        for cond in istio.get("when", []):
            claim = cond["key"].removeprefix("request.auth.claims[").removesuffix("]")
            wanted = [c for c in ours["require"]["claims"] if c["claim"] == claim]
            assert [c["equals"] for c in wanted] == cond["values"]

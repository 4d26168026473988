"""Report-only mode in real Envoy, per rule and global: nothing is refused; the decision the rule
would have taken reaches the upstream in ``x-identity-report`` (``allow; rule=r`` or ``deny;
reason=<code>; rule=r``), is logged with ``"report_only":true`` and, for would-be denials, counted
in ``identity_filter.report_only.would_deny``. A verified caller still gets identity headers and
the assertion. Client-sent report, assertion and claim headers never reach the upstream."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import support
from envoy_runner import wasm_log_json
from support import ISSUER, AUDIENCE, assert_allowed, assert_denied, bearer, claims, token

SECRET = uuid.uuid4().hex + uuid.uuid4().hex
REPORT = "x-identity-report"
IDENTITY = ["x-identity-subject", "x-identity-roles", "x-identity-assertion"]
SPOOFED = {REPORT: "allow; rule=spoofed", "x-identity-subject": "root",
           "x-identity-roles": "root", "x-identity-assertion": "forged.assertion.value"}
WOULD_DENY = "identity_filter.report_only.would_deny"


def report_config(keys: support.Keys, *, global_report_only: bool) -> dict[str, Any]:
    rules = [
        {"name": "public", "match": {"path_prefix": "/public"}, "allow_anonymous": True},
        {"name": "enforced", "match": {"path_prefix": "/enforced"},
         "require": {"roles": {"any_of": ["root"]}}},
    ]
    if not global_report_only:
        rules += [
            {"name": "trial", "match": {"path_prefix": "/trial"}, "report_only": True,
             "require": {"roles": {"any_of": ["root"]}}},
            {"name": "trial-scope", "match": {"path": "/scoped"}, "report_only": True,
             "require": {"scopes": {"all_of": ["runs:admin"]}}},
            {"name": "trial-open", "match": {"path_prefix": "/open"}, "report_only": True},
        ]
    sources = [{"header": "authorization", "prefix": "Bearer "}]
    if global_report_only:
        sources.append({"cookie": "session"})
    return {
        "token_sources": sources,
        "providers": [{"name": "primary", "issuer": ISSUER, "audiences": [AUDIENCE],
                       "jwks": keys.primary_jwks(), "identity": {"roles": ["realm_access.roles"]}}],
        "rules": rules,
        "default": "deny",
        "report_only": global_report_only,
        "headers": {
            "claims": [{"claim": "sub", "header": "x-identity-subject"},
                       {"identity": "roles", "header": "x-identity-roles"}],
            "assertion": {"audience": "svc", "keys": [{"kid": "a1", "secret": SECRET}]},
        },
    }


@pytest.fixture(scope="module")
def per_rule(envoy_with, keys):
    return envoy_with(report_config(keys, global_report_only=False), "report-rule")


@pytest.fixture(scope="module")
def everywhere(envoy_with, keys):
    return envoy_with(report_config(keys, global_report_only=True), "report-global")


def root_token(keys) -> str:
    return token(keys, claims(realm_access={"roles": ["root"]}))


def unique(prefix: str) -> str:
    return f"{prefix}/ro-{uuid.uuid4().hex[:12]}"


def decision(envoy, path: str, since: int) -> dict[str, Any]:
    line = envoy.wait_for_log(lambda l: '"decision"' in l and f'"path":"{path}"' in l, since=since)
    entry = wasm_log_json(line)
    assert entry is not None, line
    return entry


def passed(reply, report: str | None) -> dict[str, Any]:
    """The request reached the upstream with exactly this report header (None: without one)."""
    seen = assert_allowed(reply)
    values = [v for n, v in seen["header_list"] if n == REPORT]
    assert values == ([] if report is None else [report]), seen
    return seen["headers"]


def assert_identity(headers: dict[str, str], sub: str = "alice") -> None:
    assert headers["x-identity-subject"] == sub
    assert headers["x-identity-assertion"].count(".") == 2
    assert "authorization" not in headers


def assert_no_identity(headers: dict[str, str]) -> None:
    for name in IDENTITY:
        assert name not in headers, name


# ----------------------------------------------------------------------------------------------
# Per rule
# ----------------------------------------------------------------------------------------------

class TestPerRule:
    def test_would_be_denial_passes_with_the_reason_and_rule(self, per_rule, keys):
        headers = passed(per_rule.get("/trial/x", bearer(token(keys))), "deny; reason=forbidden; rule=trial")
        assert_identity(headers)
        assert headers["x-identity-roles"] == "user,admin"

    def test_would_be_scope_denial_reports_insufficient_scope(self, per_rule, keys):
        headers = passed(per_rule.get("/scoped", bearer(token(keys))),
                         "deny; reason=insufficient_scope; rule=trial-scope")
        assert_identity(headers)

    def test_allowed_caller_is_reported_as_allow(self, per_rule, keys):
        headers = passed(per_rule.get("/trial/x", bearer(root_token(keys))), "allow; rule=trial")
        assert_identity(headers)

    def test_missing_token_passes_without_identity(self, per_rule):
        headers = passed(per_rule.get("/open/x"), "deny; reason=token_missing; rule=trial-open")
        assert_no_identity(headers)

    def test_invalid_token_passes_without_identity_and_without_the_token(self, per_rule, keys):
        t = support.now()
        expired = token(keys, claims(iat=t - 900, exp=t - 600))
        headers = passed(per_rule.get("/trial/x", bearer(expired)), "deny; reason=token_expired; rule=trial")
        assert_no_identity(headers)
        assert "authorization" not in headers

    def test_two_authorization_headers_pass_without_either_token(self, per_rule, keys):
        # Envoy joins a repeated Authorization header into one value ("Bearer a,Bearer b"); the
        # filter reads each credential of it, as Kong's two values, and two tokens are ambiguous.
        pairs = [("authorization", f"Bearer {token(keys)}"), ("authorization", f"Bearer {root_token(keys)}")]
        headers = passed(per_rule.get("/trial/x", pairs), "deny; reason=token_ambiguous; rule=trial")
        assert_no_identity(headers)
        assert "authorization" not in headers

    def test_oversized_token_passes_without_the_token(self, per_rule):
        headers = passed(per_rule.get("/trial/x", bearer("x" * 9000)), "deny; reason=token_too_large; rule=trial")
        assert "authorization" not in headers

    def test_other_rules_are_still_enforced(self, per_rule, keys):
        reply = per_rule.get("/enforced/x", {**bearer(token(keys)), **SPOOFED})
        assert_denied(reply, "forbidden", rule="enforced")
        assert reply.header(REPORT) is None
        assert_denied(per_rule.get("/elsewhere", bearer(token(keys))), "forbidden", rule="default")

    def test_enforced_rules_send_no_report(self, per_rule, keys):
        passed(per_rule.get("/enforced/x", bearer(root_token(keys))), None)
        passed(per_rule.get("/public/x"), None)

    def test_decision_log_marks_a_would_be_denial(self, per_rule, keys):
        path, mark = unique("/trial"), per_rule.log_mark()
        passed(per_rule.get(path, bearer(token(keys))), "deny; reason=forbidden; rule=trial")
        entry = decision(per_rule, path, mark)
        assert entry["report_only"] is True
        assert entry["decision"] == "allow"
        assert entry["reason"] == "forbidden"
        assert entry["rule"] == "trial"
        assert entry["sub"] == "alice"

    def test_decision_log_marks_a_report_only_allow(self, per_rule, keys):
        path, mark = unique("/trial"), per_rule.log_mark()
        passed(per_rule.get(path, bearer(root_token(keys))), "allow; rule=trial")
        entry = decision(per_rule, path, mark)
        assert entry["report_only"] is True and entry["decision"] == "allow"
        assert "reason" not in entry

    def test_enforced_decision_log_has_no_report_only_field(self, per_rule, keys):
        path, mark = unique("/enforced"), per_rule.log_mark()
        passed(per_rule.get(path, bearer(root_token(keys))), None)
        assert "report_only" not in decision(per_rule, path, mark)

    def test_would_deny_counter_counts_would_be_denials_only(self, per_rule, keys):
        before, allowed_before = support.settled(
            lambda: (per_rule.counter(WOULD_DENY), per_rule.counter("identity_filter.allowed")))
        passed(per_rule.get("/trial/x", bearer(token(keys))), "deny; reason=forbidden; rule=trial")
        assert support.counted(lambda: per_rule.counter(WOULD_DENY), before + 1) == before + 1
        passed(per_rule.get("/trial/x", bearer(root_token(keys))), "allow; rule=trial")
        assert_denied(per_rule.get("/enforced/x", bearer(token(keys))), "forbidden", rule="enforced")
        # Counters reach the host together (one timer tick): once `allowed` shows both
        # requests, `would_deny` shows whatever they added.
        allowed = support.counted(lambda: per_rule.counter("identity_filter.allowed"),
                                  allowed_before + 2)
        assert allowed == allowed_before + 2
        assert per_rule.counter(WOULD_DENY) == before + 1


# ----------------------------------------------------------------------------------------------
# Global
# ----------------------------------------------------------------------------------------------

class TestGlobal:
    def test_rule_denial_passes_with_a_report(self, everywhere, keys):
        headers = passed(everywhere.get("/enforced/x", bearer(token(keys))),
                         "deny; reason=forbidden; rule=enforced")
        assert_identity(headers)

    def test_rule_allow_is_reported(self, everywhere, keys):
        assert_identity(passed(everywhere.get("/enforced/x", bearer(root_token(keys))), "allow; rule=enforced"))

    def test_anonymous_rule_is_reported_as_allow(self, everywhere):
        assert_no_identity(passed(everywhere.get("/public/x"), "allow; rule=public"))

    def test_missing_token_is_reported(self, everywhere):
        headers = passed(everywhere.get("/enforced/x"), "deny; reason=token_missing; rule=enforced")
        assert_no_identity(headers)

    def test_default_deny_is_reported(self, everywhere):
        assert_no_identity(passed(everywhere.get("/elsewhere"), "deny; reason=forbidden; rule=default"))

    def test_default_deny_still_identifies_a_verified_caller(self, everywhere, keys):
        # The request reaches the upstream, so it must not carry the raw token, and a verified
        # caller is identified exactly as on any other route.
        headers = passed(everywhere.get("/elsewhere", bearer(token(keys))), "deny; reason=forbidden; rule=default")
        assert_identity(headers)

    def test_default_deny_with_an_invalid_token_passes_without_it(self, everywhere, keys):
        bad = token(keys, claims(aud="api://elsewhere"))
        headers = passed(everywhere.get("/elsewhere", bearer(bad)), "deny; reason=forbidden; rule=default")
        assert_no_identity(headers)
        assert "authorization" not in headers

    def test_path_with_dot_segments_is_reported(self, everywhere, keys):
        headers = passed(everywhere.get("/public/../enforced/x", bearer(root_token(keys))),
                         "deny; reason=forbidden; rule=path_dot_segments")
        assert_identity(headers)

    def test_different_tokens_in_two_places_pass_without_either(self, everywhere, keys):
        headers = {**bearer(token(keys)), "cookie": f"theme=dark; session={root_token(keys)}"}
        seen = passed(everywhere.get("/enforced/x", headers), "deny; reason=token_ambiguous; rule=enforced")
        assert_no_identity(seen)
        assert "authorization" not in seen
        assert seen["cookie"] == "theme=dark"

    def test_decision_log_and_counter(self, everywhere, keys):
        before = support.settled(lambda: everywhere.counter(WOULD_DENY))
        path, mark = unique("/enforced"), everywhere.log_mark()
        passed(everywhere.get(path), "deny; reason=token_missing; rule=enforced")
        entry = decision(everywhere, path, mark)
        assert entry["report_only"] is True and entry["reason"] == "token_missing"
        assert support.counted(lambda: everywhere.counter(WOULD_DENY), before + 1) == before + 1


# ----------------------------------------------------------------------------------------------
# Spoofing
# ----------------------------------------------------------------------------------------------

class TestSpoofing:
    def test_on_an_anonymous_route(self, per_rule):
        headers = passed(per_rule.get("/public/x", SPOOFED), None)
        assert_no_identity(headers)

    def test_on_an_authenticated_route(self, per_rule, keys):
        seen = assert_allowed(per_rule.get("/enforced/x", {**SPOOFED, **bearer(root_token(keys))}))
        assert REPORT not in seen["headers"]
        assert seen["headers"]["x-identity-subject"] == "alice"
        assert seen["headers"]["x-identity-roles"] == "root"
        assert seen["headers"]["x-identity-assertion"] != SPOOFED["x-identity-assertion"]
        names = [n for n, _ in seen["header_list"]]
        assert all(names.count(h) == 1 for h in IDENTITY)

    def test_on_a_route_denied_in_report_only(self, per_rule, keys):
        seen = assert_allowed(per_rule.get("/trial/x", {**SPOOFED, **bearer(token(keys))}))
        names = [n for n, _ in seen["header_list"]]
        assert names.count(REPORT) == 1
        assert seen["headers"][REPORT] == "deny; reason=forbidden; rule=trial"
        assert seen["headers"]["x-identity-subject"] == "alice"
        assert seen["headers"]["x-identity-roles"] == "user,admin"
        assert seen["headers"]["x-identity-assertion"] != SPOOFED["x-identity-assertion"]
        assert all(names.count(h) == 1 for h in IDENTITY)

    def test_on_a_report_only_route_without_a_token(self, per_rule):
        headers = passed(per_rule.get("/open/x", SPOOFED), "deny; reason=token_missing; rule=trial-open")
        assert_no_identity(headers)

    def test_globally_on_the_default_rule(self, everywhere):
        headers = passed(everywhere.get("/elsewhere", SPOOFED), "deny; reason=forbidden; rule=default")
        assert_no_identity(headers)

"""One JSON log line per decision; counters by outcome and reason; both switchable off."""

import time
import uuid

import support
from envoy_runner import wasm_log_json
from support import assert_allowed, assert_denied, assert_invalid_token, bearer, claims, partner_claims, token


def decision_line(envoy, path, since):
    """The decision log entry for ``path`` (logged after byte offset ``since``)."""
    line = envoy.wait_for_log(lambda l: '"decision"' in l and path in l, since=since, timeout=5)
    entry = wasm_log_json(line)
    assert entry is not None, line
    return entry


def unique(prefix):
    return f"{prefix}/obs-{uuid.uuid4().hex[:12]}"


class TestDecisionLog:
    def test_allow_names_who_and_where(self, main, keys):
        path, mark = unique("/api"), main.log_mark()
        assert_allowed(main.get(path, bearer(token(keys, claims(sub="carol")))))
        entry = decision_line(main, path, mark)
        assert entry["decision"] == "allow"
        assert entry["sub"] == "carol"
        assert entry["provider"] == "primary"
        assert entry["rule"] == "api"
        assert entry["method"] == "GET"
        assert entry["path"] == path
        assert entry.get("reason") is None

    def test_allow_names_the_provider_chosen_by_issuer(self, main, keys):
        path, mark = unique("/api"), main.log_mark()
        assert_allowed(main.get(path, bearer(token(keys, partner_claims(), kid="partner-1", key=keys.partner))))
        entry = decision_line(main, path, mark)
        assert entry["provider"] == "partner" and entry["sub"] == "bob"

    def test_deny_names_the_reason(self, main):
        path, mark = unique("/api"), main.log_mark()
        assert_denied(main.request("DELETE", path), "token_missing")
        entry = decision_line(main, path, mark)
        assert entry["decision"] == "deny"
        assert entry["reason"] == "token_missing"
        assert entry["method"] == "DELETE"
        assert entry["rule"] == "api"

    def test_rule_denial_names_the_default_rule(self, main):
        path, mark = unique("/nowhere"), main.log_mark()
        assert_denied(main.get(path), "forbidden", rule="default")
        entry = decision_line(main, path, mark)
        assert entry["decision"] == "deny" and entry["reason"] == "forbidden" and entry["rule"] == "default"

    def test_anonymous_allow_has_no_subject(self, main):
        path, mark = unique("/public"), main.log_mark()
        assert_allowed(main.get(path))
        entry = decision_line(main, path, mark)
        assert entry["decision"] == "allow" and entry.get("sub") is None

    def test_tokens_never_reach_the_log(self, main, keys):
        tok = token(keys)
        bad = token(keys, claims(aud="api://elsewhere"))
        path, mark = unique("/api"), main.log_mark()
        assert_allowed(main.get(path, bearer(tok)))
        assert_invalid_token(main.get(path, bearer(bad)), "audience_mismatch")
        # Both decisions are in the log before it is read.
        assert decision_line(main, path, mark)["decision"] == "allow"
        denial = main.wait_for_log(lambda l: '"decision"' in l and path in l and "audience_mismatch" in l,
                                   since=mark, timeout=5)
        assert wasm_log_json(denial)["decision"] == "deny"
        text = "\n".join(main.log_lines(mark))
        for t in (tok, bad):
            assert t.split(".")[1] not in text and t.split(".")[2] not in text

    def test_decisions_can_be_switched_off(self, quiet, keys):
        mark = quiet.log_mark()
        assert_allowed(quiet.get("/api/x", bearer(token(keys))))
        assert_denied(quiet.get("/api/x"), "token_missing")
        time.sleep(0.5)
        assert not [l for l in quiet.log_lines(mark) if '"decision"' in l]


class TestCounters:
    def counters(self, envoy):
        return {"allowed": envoy.counter("identity_filter.allowed") or 0,
                "denied": envoy.counter("identity_filter.denied") or 0,
                "token_expired": envoy.counter("identity_filter.denied.token_expired") or 0,
                "token_missing": envoy.counter("identity_filter.denied.token_missing") or 0}

    def test_outcomes_and_reasons_are_counted(self, main, keys):
        before = support.settled(lambda: self.counters(main))
        assert_allowed(main.get("/api/items", bearer(token(keys))))
        assert_allowed(main.get("/api/items", bearer(token(keys))))
        assert_denied(main.get("/api/items"), "token_missing")
        t = support.now()
        expired = token(keys, claims(iat=t - 600, exp=t - 300))
        assert_denied(main.get("/api/items", bearer(expired)), "token_expired")
        want = {"allowed": before["allowed"] + 2, "denied": before["denied"] + 2,
                "token_missing": before["token_missing"] + 1,
                "token_expired": before["token_expired"] + 1}
        after = support.counted(lambda: self.counters(main), want)
        assert after["allowed"] - before["allowed"] == 2
        assert after["denied"] - before["denied"] == 2
        assert after["token_missing"] - before["token_missing"] == 1
        assert after["token_expired"] - before["token_expired"] == 1

    def test_counter_names(self, main):
        names = main.stats("identity_filter.")
        assert any(n.endswith("identity_filter.allowed") for n in names), names
        assert any(n.endswith("identity_filter.denied") for n in names), names

    def test_metrics_can_be_switched_off(self, quiet, keys):
        assert_allowed(quiet.get("/api/x", bearer(token(keys))))
        assert_denied(quiet.get("/api/x"), "token_missing")
        assert quiet.stats("identity_filter") == {}

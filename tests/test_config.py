"""An invalid configuration: Envoy still serves, every request gets 500 config_invalid, and the
log names the offending field's path."""

import pytest

import support
from support import assert_denied, assert_reason_body, bearer, token

CASES = {
    # name: (change to the main configuration, text the log must contain)
    "unknown-field": (["providers", 0, "audience"], "api://x", ["providers[0].audience"]),
    "wrong-type": (["providers", 0, "clock_skew_seconds"], "60", ["providers[0].clock_skew_seconds"]),
    "bad-rule": (["rules", 0, "match"], {"path_prefix": "no-slash"}, ["rules[0].match.path_prefix"]),
    # Found in the field: this aborted on_configure (the cache preallocated) and Envoy exited.
    "huge-cache": (["cache"], {"max_entries": 4000000000}, ["cache.max_entries", "between 0 and 100000"]),
    "u64-max": (["providers", 0, "max_response_bytes"], 2**64 - 1, ["providers[0].max_response_bytes"]),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def invalid(request, envoy_with, keys):
    path, value, expected = CASES[request.param]
    config = support.with_change(support.main_config(keys), path, value)
    if request.param == "unknown-field":
        name = "invalid-unknown-field"
    else:
        name = f"invalid-{request.param}"
    return envoy_with(config, name), expected


def test_every_request_is_answered_500_config_invalid(invalid, keys, echo):
    envoy, _ = invalid
    before = len(echo.received)
    for method, path, headers in [("GET", "/health", {}), ("GET", "/api/items", bearer(token(keys))),
                                  ("POST", "/public/x", {}), ("OPTIONS", "/api/items",
                                  {"origin": "https://a.test", "access-control-request-method": "GET"})]:
        reply = envoy.request(method, path, headers)
        assert_denied(reply, "config_invalid")
        assert_reason_body(reply, "config_invalid")
    assert len(echo.received) == before


def test_log_names_the_field(invalid):
    envoy, expected = invalid
    line = envoy.wait_for_log(lambda l: all(text in l for text in expected), timeout=5)
    assert "[critical]" in line or "[error]" in line or "[warning]" in line, line


def test_malformed_json_is_config_invalid(envoy_with):
    envoy = envoy_with('{"providers": [', "invalid-json")
    assert_denied(envoy.get("/health"), "config_invalid")
    line = envoy.wait_for_log("invalid configuration", timeout=5)
    assert "EOF while parsing a list (line 1, column 15)" in line, line


def test_empty_configuration_is_config_invalid(envoy_with):
    envoy = envoy_with("", "invalid-empty")
    assert_denied(envoy.get("/health"), "config_invalid")

"""Remote keys in real Envoy: JWKS URI and OIDC discovery through `dispatch_http_call` to a
JWKS server on 127.0.0.1 that each test controls (tools/jwks_server.py).

Envoy runs one root context per worker plus one on the main thread, and each fetches on its
own unless `remote_keys.shared_data` is on: with `--concurrency 1` that is two fetches per
cycle (``VMS``).

Every test starts its own IdP and Envoy (short intervals keep the suite fast): key rotation
without a failed request, IdP outages (stale keys, then 503 after `max_stale_seconds`), cold
starts with a slow IdP, bad answers that never replace good keys, junk-kid floods, discovery
with a mismatched issuer, and two issuers at once.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
import yaml

import envoy_runner
from identity_devkit import jwk
from envoy_runner import Envoy
from jwks_server import JwksServer
from support import (AUDIENCE, ISSUER, PARTNER_AUDIENCE, PARTNER_ISSUER, assert_allowed, assert_denied, bearer,
                     claims, partner_claims, token)

KEYS_PATH = "/keys"
VMS = 2  # root contexts that fetch: Envoy's main thread and its one worker
IDP_AUTHORITY = "idp.test"


def provider(name: str = "primary", issuer: str = ISSUER, audience: str = AUDIENCE, **overrides: Any) -> dict[str, Any]:
    """A remote-JWKS provider with short intervals (seconds) for tests."""
    p: dict[str, Any] = {
        "name": name,
        "issuer": issuer,
        "audiences": [audience],
        "jwks_uri": f"http://{IDP_AUTHORITY}{KEYS_PATH}",
        "upstream": "idp",
        "fetch_timeout_ms": 1000,
        "min_refresh_seconds": 1,
        "max_refresh_seconds": 60,
        "refetch_min_interval_seconds": 1,
        "max_stale_seconds": 60,
        "cold_start_wait_ms": 3000,
    }
    for key, value in overrides.items():
        if value is None:
            p.pop(key, None)
        else:
            p[key] = value
    return p


@contextmanager
def filter_with(wasm, echo, idp: JwksServer, *providers: dict[str, Any], **top: Any) -> Iterator[Envoy]:
    config = {"providers": list(providers), "default": "authenticated",
              "remote_keys": {"tick_ms": 50}, **top}
    envoy = Envoy(wasm, config, upstream_port=echo.port, extra_clusters=[{"name": "idp", "port": idp.port}],
                  name="remote-keys")
    with envoy:
        yield envoy


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


def jwks_of(*pairs: tuple[Any, str]) -> dict[str, Any]:
    return jwk.jwks(*(jwk.public_jwk(k, kid=kid, alg="RS256") for k, kid in pairs))


def good(keys, kid: str = "rsa-1", key: Any = None) -> dict[str, str]:
    return bearer(token(keys, claims(), kid=kid, key=key))


def get(envoy: Envoy, headers: dict[str, str]):
    return envoy.get("/api/x", headers=headers)


def parallel(envoy: Envoy, headers: list[dict[str, str]]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(headers)) as pool:
        return list(pool.map(lambda h: get(envoy, h), headers))


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def counter(envoy: Envoy, name: str) -> int:
    return envoy.stats().get(f"wasmcustom.identity_filter.keys.{name}", 0)


# -------------------------------------------------------------------------------------------
# Fetching and cold start
# -------------------------------------------------------------------------------------------

def test_keys_are_fetched_through_the_upstream_with_the_uri_authority(wasm, echo, idp, keys):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")))
    with filter_with(wasm, echo, idp, provider()) as envoy:
        assert_allowed(get(envoy, good(keys)))
        assert 1 <= idp.count(KEYS_PATH) <= VMS
        _, path, headers = idp.requests[0]
        assert path == KEYS_PATH
        assert {k.lower(): v for k, v in headers.items()}["host"] == IDP_AUTHORITY
        wait_until(lambda: counter(envoy, "primary.fetch_ok") >= 1)
        assert envoy.wait_for_log("keys empty -> fresh")


def test_cold_start_requests_wait_for_a_slow_jwks_and_all_pass(wasm, echo, idp, keys):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), delay=1.5)
    with filter_with(wasm, echo, idp, provider(fetch_timeout_ms=5000)) as envoy:
        replies = parallel(envoy, [good(keys) for _ in range(8)])
        for reply in replies:
            assert_allowed(reply)
        assert idp.count(KEYS_PATH) <= VMS, "waiting requests share one fetch"


def test_cold_start_wait_runs_out_with_503_keys_unavailable(wasm, echo, idp, keys):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), delay=3.0)
    with filter_with(wasm, echo, idp, provider(cold_start_wait_ms=400, fetch_timeout_ms=5000)) as envoy:
        started = time.monotonic()
        replies = parallel(envoy, [good(keys) for _ in range(3)])
        elapsed = time.monotonic() - started
        for reply in replies:
            assert_denied(reply, "keys_unavailable")
        assert 0.3 < elapsed < 2.5, elapsed
        # Once the slow answer lands, requests pass.
        wait_until(lambda: get(envoy, good(keys)).status == 200, timeout=10)


def test_cold_start_with_waiting_none_answers_at_once(wasm, echo, idp, keys):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), delay=2.0)
    with filter_with(wasm, echo, idp, provider(), remote_keys={"tick_ms": 50, "waiting": "none"}) as envoy:
        started = time.monotonic()
        assert_denied(get(envoy, good(keys)), "keys_unavailable")
        assert time.monotonic() - started < 1.0


def test_cold_start_with_idp_down_is_503_and_recovers(wasm, echo, idp, keys):
    idp.serve(KEYS_PATH, status=503)
    with filter_with(wasm, echo, idp, provider(cold_start_wait_ms=300, max_refresh_seconds=2)) as envoy:
        assert_denied(get(envoy, good(keys)), "keys_unavailable")
        idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")))
        # Backoff is capped by max_refresh_seconds (2 s).
        wait_until(lambda: get(envoy, good(keys)).status == 200, timeout=10)
        assert envoy.wait_for_log("keys unavailable -> fresh")


# -------------------------------------------------------------------------------------------
# Rotation and unknown kids
# -------------------------------------------------------------------------------------------

def test_rotation_without_a_single_failed_request(wasm, echo, idp, keys):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), max_age=3600)
    with filter_with(wasm, echo, idp, provider(min_refresh_seconds=60, max_refresh_seconds=3600)) as envoy:
        assert_allowed(get(envoy, good(keys)))
        idp.wait_for_count(KEYS_PATH, VMS)
        before = idp.count(KEYS_PATH)
        # The IdP rotates: the new key is published, and tokens signed with it arrive at once.
        idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1"), (keys.rsa2, "rsa-2")), max_age=3600)
        burst = [good(keys, "rsa-2", keys.rsa2) for _ in range(6)] + [good(keys) for _ in range(2)]
        for reply in parallel(envoy, burst):
            assert_allowed(reply)
        # Old and new tokens keep passing; nothing failed along the way.
        for _ in range(10):
            assert_allowed(get(envoy, good(keys, "rsa-2", keys.rsa2)))
            assert_allowed(get(envoy, good(keys)))
        assert idp.count(KEYS_PATH) - before == 1, "one refetch for the rotation"


def test_junk_kid_flood_causes_at_most_one_fetch_per_interval(wasm, echo, idp, keys):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), max_age=3600)
    p = provider(refetch_min_interval_seconds=2, min_refresh_seconds=60, max_refresh_seconds=3600)
    with filter_with(wasm, echo, idp, p) as envoy:
        assert_allowed(get(envoy, good(keys)))
        idp.wait_for_count(KEYS_PATH, VMS)
        before = idp.count(KEYS_PATH)
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < 3.0:
            junk = bearer(token(keys, claims(), kid=f"junk-{uuid.uuid4().hex}", key=keys.stranger))
            for reply in parallel(envoy, [junk] * 4):
                assert_denied(reply, "key_not_found")
            sent += 4
        elapsed = time.monotonic() - started
        fetches = idp.count(KEYS_PATH) - before
        assert sent >= 40
        # At most one refetch per 2 s interval (the first at once).
        assert 1 <= fetches <= int(elapsed // 2) + 1, (fetches, elapsed)
        assert_allowed(get(envoy, good(keys)))


# -------------------------------------------------------------------------------------------
# Outages and bad answers
# -------------------------------------------------------------------------------------------

def test_idp_down_keeps_stale_keys_then_503_after_max_stale(wasm, echo, idp, keys):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), max_age=1)
    p = provider(min_refresh_seconds=1, max_refresh_seconds=1, max_stale_seconds=3)
    with filter_with(wasm, echo, idp, p) as envoy:
        assert_allowed(get(envoy, good(keys)))
        fetched_at = time.monotonic()
        idp.serve(KEYS_PATH, drop=True)  # connections are cut: the IdP is down
        # The refresh comes due after 1 s and fails; the stale keys serve for 3 s more.
        idp.wait_for_count(KEYS_PATH, 2, timeout=5)
        assert envoy.wait_for_log("keys fresh -> stale")
        while time.monotonic() - fetched_at < 3.5:
            assert_allowed(get(envoy, good(keys)))
            time.sleep(0.2)
        wait_until(lambda: get(envoy, good(keys)).status == 503, timeout=5)
        assert time.monotonic() - fetched_at >= 3.9
        assert_denied(get(envoy, good(keys)), "keys_unavailable")
        assert envoy.wait_for_log("keys stale -> unavailable")
        # The IdP comes back: keys again (backoff capped by max_refresh_seconds).
        idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), max_age=1)
        wait_until(lambda: get(envoy, good(keys)).status == 200, timeout=10)


BAD_ANSWERS = {
    "status": dict(status=500, body=b'{"error":"boom"}'),
    "not_json": dict(body=b"<html>down for maintenance</html>", headers={"content-type": "text/html"}),
    "too_large": dict(body=b'{"keys":[],"pad":"' + b"x" * 8192 + b'"}'),
    "no_usable_keys": dict(body=b'{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"rsa-1"}]}'),
    # Envoy answers a dispatched call whose connection fails with its own local 503 (and one
    # that times out with a 504), so both count as `status`; Kong reports them as `network`.
    "network": dict(drop=True),
}
COUNTED_AS = {"network": "status", "timeout": "status"}


@pytest.mark.parametrize("kind", list(BAD_ANSWERS) + ["timeout"])
def test_bad_answer_never_replaces_good_keys(wasm, echo, idp, keys, kind):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), max_age=1)
    p = provider(min_refresh_seconds=1, max_refresh_seconds=1, max_response_bytes=4096, fetch_timeout_ms=300)
    with filter_with(wasm, echo, idp, p) as envoy:
        assert_allowed(get(envoy, good(keys)))
        if kind == "timeout":
            idp.serve_json(KEYS_PATH, jwks_of((keys.rsa2, "rsa-2")), delay=1.0)
        else:
            idp.serve(KEYS_PATH, **BAD_ANSWERS[kind])
        code = COUNTED_AS.get(kind, kind)
        idp.wait_for_count(KEYS_PATH, 3, timeout=10)
        wait_until(lambda: counter(envoy, f"primary.fetch_failed.{code}") >= 1, timeout=5)
        for _ in range(5):
            assert_allowed(get(envoy, good(keys)))
        assert envoy.wait_for_log("keys fresh -> stale")


def test_cold_start_with_a_bad_answer_is_503(wasm, echo, idp, keys):
    idp.serve(KEYS_PATH, body=b"garbage")
    with filter_with(wasm, echo, idp, provider(cold_start_wait_ms=300)) as envoy:
        assert_denied(get(envoy, good(keys)), "keys_unavailable")
        assert envoy.wait_for_log("keys empty -> unavailable")


# -------------------------------------------------------------------------------------------
# Discovery and several issuers
# -------------------------------------------------------------------------------------------

def test_discovery_finds_the_jwks(wasm, echo, idp, keys):
    path = idp.serve_discovery(ISSUER, jwks_uri=f"http://{IDP_AUTHORITY}/discovered/keys")
    idp.serve_json("/discovered/keys", jwks_of((keys.rsa, "rsa-1")))
    with filter_with(wasm, echo, idp, provider(jwks_uri=None, discovery=True)) as envoy:
        assert_allowed(get(envoy, good(keys)))
        assert 1 <= idp.count(path) <= VMS
        assert 1 <= idp.count("/discovered/keys") <= VMS


def test_discovery_with_a_mismatched_issuer_is_refused(wasm, echo, idp, keys):
    path = idp.serve_discovery(ISSUER, jwks_uri=f"http://{IDP_AUTHORITY}/discovered/keys",
                               claimed_issuer="https://evil.test")
    idp.serve_json("/discovered/keys", jwks_of((keys.rsa, "rsa-1")))
    with filter_with(wasm, echo, idp, provider(jwks_uri=None, discovery=True, cold_start_wait_ms=300)) as envoy:
        assert_denied(get(envoy, good(keys)), "keys_unavailable")
        assert idp.count(path) >= 1
        assert idp.count("/discovered/keys") == 0, "the jwks_uri of a foreign issuer is never fetched"
        assert envoy.wait_for_log("issuer_mismatch")
        wait_until(lambda: counter(envoy, "primary.fetch_failed.issuer_mismatch") >= 1, timeout=5)


def test_two_issuers_at_once(wasm, echo, idp, keys):
    idp.serve_json("/primary/keys", jwks_of((keys.rsa, "rsa-1")), delay=0.5)
    idp.serve_discovery(PARTNER_ISSUER, jwks_uri=f"http://{IDP_AUTHORITY}/partner/keys")
    idp.serve_json("/partner/keys", jwks_of((keys.partner, "partner-1")), delay=0.5)
    primary = provider(jwks_uri=f"http://{IDP_AUTHORITY}/primary/keys")
    partner = provider("partner", PARTNER_ISSUER, PARTNER_AUDIENCE, jwks_uri=None, discovery=True)
    with filter_with(wasm, echo, idp, primary, partner) as envoy:
        burst = [good(keys)] * 3 + [bearer(token(keys, partner_claims(), kid="partner-1", key=keys.partner))] * 3
        replies = parallel(envoy, burst)
        for reply in replies:
            assert_allowed(reply)
        subjects = sorted(r.upstream["headers"].get("x-identity-subject", "") for r in replies)
        assert idp.count("/primary/keys") <= VMS and idp.count("/partner/keys") <= VMS
        # A token of one issuer signed with the other's key still fails.
        crossed = bearer(token(keys, partner_claims(), kid="rsa-1", key=keys.rsa))
        assert_denied(get(envoy, crossed), "key_not_found")
        del subjects


def test_stats_count_fetches_and_key_age(wasm, echo, idp, keys):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), max_age=1)
    with filter_with(wasm, echo, idp, provider(max_refresh_seconds=1)) as envoy:
        idp.wait_for_count(KEYS_PATH, 2, timeout=5)
        idp.serve(KEYS_PATH, status=500)
        wait_until(lambda: counter(envoy, "primary.fetch_failed.status") >= 1, timeout=5)
        stats = envoy.stats()
        assert stats.get("wasmcustom.identity_filter.keys.primary.fetch_ok", 0) >= 2
        assert stats.get("wasmcustom.identity_filter.keys.primary.fetch_failed", 0) >= 1
        assert "wasmcustom.identity_filter.keys.primary.age_seconds" in stats


def test_shared_data_lets_one_root_context_fetch_for_all(wasm, echo, idp, keys):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), delay=0.3)
    with filter_with(wasm, echo, idp, provider(), remote_keys={"tick_ms": 50, "shared_data": True}) as envoy:
        assert_allowed(get(envoy, good(keys)))
        time.sleep(0.5)
        assert idp.count(KEYS_PATH) == 1, "the others adopt the shared key set"
        assert_allowed(get(envoy, good(keys)))


# -------------------------------------------------------------------------------------------
# `waiting: own_fetch` (the Kong mode: each waiting request fetches for itself)
# -------------------------------------------------------------------------------------------

OWN = {"tick_ms": 50, "waiting": "own_fetch"}
MAX_OWN_FETCHES = 4


def test_own_fetch_cold_start_requests_wait_on_their_own_fetch(wasm, echo, idp, keys):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), delay=1.0)
    with filter_with(wasm, echo, idp, provider(fetch_timeout_ms=5000), remote_keys=OWN) as envoy:
        replies = parallel(envoy, [good(keys) for _ in range(3)])
        for reply in replies:
            assert_allowed(reply)
        # The root contexts' fetches (one per VM) plus at most one per waiting request.
        assert idp.count(KEYS_PATH) <= VMS + 3


def test_own_fetch_rotation_without_a_failed_request(wasm, echo, idp, keys):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), max_age=3600)
    p = provider(min_refresh_seconds=60, max_refresh_seconds=3600)
    with filter_with(wasm, echo, idp, p, remote_keys=OWN) as envoy:
        assert_allowed(get(envoy, good(keys)))
        idp.wait_for_count(KEYS_PATH, VMS)
        before = idp.count(KEYS_PATH)
        idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1"), (keys.rsa2, "rsa-2")), max_age=3600)
        for reply in parallel(envoy, [good(keys, "rsa-2", keys.rsa2) for _ in range(3)]):
            assert_allowed(reply)
        for _ in range(5):
            assert_allowed(get(envoy, good(keys, "rsa-2", keys.rsa2)))
        assert 1 <= idp.count(KEYS_PATH) - before <= 3


def test_own_fetch_junk_kid_flood_is_bounded_per_interval(wasm, echo, idp, keys):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), max_age=3600)
    p = provider(refetch_min_interval_seconds=2, min_refresh_seconds=60, max_refresh_seconds=3600)
    with filter_with(wasm, echo, idp, p, remote_keys=OWN) as envoy:
        assert_allowed(get(envoy, good(keys)))
        idp.wait_for_count(KEYS_PATH, VMS)
        before = idp.count(KEYS_PATH)
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            junk = bearer(token(keys, claims(), kid=f"junk-{uuid.uuid4().hex}", key=keys.stranger))
            for reply in parallel(envoy, [junk] * 4):
                assert_denied(reply, "key_not_found")
        elapsed = time.monotonic() - started
        fetches = idp.count(KEYS_PATH) - before
        assert 1 <= fetches <= (int(elapsed // 2) + 1) * MAX_OWN_FETCHES, (fetches, elapsed)


def test_own_fetch_discovery_mismatch_is_refused(wasm, echo, idp, keys):
    idp.serve_discovery(ISSUER, jwks_uri=f"http://{IDP_AUTHORITY}/discovered/keys", claimed_issuer="https://evil.test")
    idp.serve_json("/discovered/keys", jwks_of((keys.rsa, "rsa-1")))
    p = provider(jwks_uri=None, discovery=True, cold_start_wait_ms=300)
    with filter_with(wasm, echo, idp, p, remote_keys=OWN) as envoy:
        assert_denied(get(envoy, good(keys)), "keys_unavailable")
        assert idp.count("/discovered/keys") == 0


# -------------------------------------------------------------------------------------------
# The shipped example (envoy/remote-keys.yaml)
# -------------------------------------------------------------------------------------------

EXAMPLE = envoy_runner.REPO / "envoy" / "remote-keys.yaml"


def example_plugin_config() -> dict[str, Any]:
    bootstrap = yaml.safe_load(EXAMPLE.read_text())
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return json.loads(hcm["http_filters"][0]["typed_config"]["config"]["configuration"]["value"])


def test_remote_keys_example_validates_in_envoy(wasm, tmp_path):
    bootstrap = tmp_path / "envoy.yaml"
    bootstrap.write_text(EXAMPLE.read_text().replace("IDENTITY_FILTER_WASM", str(wasm)))
    done = subprocess.run([envoy_runner.find_envoy(), "--mode", "validate", "-c", str(bootstrap),
                           "--disable-hot-restart", "--log-level", "warn"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_remote_keys_example_configuration_works_against_an_idp(wasm, echo, idp, keys):
    config = example_plugin_config()
    corp, partner = config["providers"]
    idp.serve_json("/.well-known/jwks.json", jwks_of((keys.rsa, "rsa-1")))
    idp.serve_discovery(partner["issuer"], jwks_uri="https://issuer.example.com/realms/partner/keys")
    idp.serve_json("/realms/partner/keys", jwks_of((keys.partner, "partner-1")))
    envoy = Envoy(wasm, config, upstream_port=echo.port, extra_clusters=[{"name": "idp", "port": idp.port}],
                  name="remote-keys-example")
    with envoy:
        for issuer, key, kid in [(corp["issuer"], keys.rsa, "rsa-1"), (partner["issuer"], keys.partner, "partner-1")]:
            tok = token(keys, claims(iss=issuer, aud="prefect"), kid=kid, key=key)
            assert_allowed(envoy.get("/api/x", headers=bearer(tok)))
        assert_allowed(envoy.get("/health"))

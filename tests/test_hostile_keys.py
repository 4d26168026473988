"""Hostile key sets in real Envoy: what an IdP (or whoever answers in its place) sends cannot
stall a worker. A set has at most 100 keys, a fetched document at most 10,000 JSON values and
escapes, and fetched keys are prepared when a token first needs them.

Found in the field: a 250 KB JWKS of 1,300 P-384 keys took about 1.1 s to read, and with
refreshes request latency went from 0.3 ms to about 1 s.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from identity_devkit import jwk
from support import assert_allowed, assert_denied, bearer, claims, token
from test_remote_keys import KEYS_PATH, counter, filter_with, good, idp, jwks_of, provider, wait_until  # noqa: F401


def p384_jwk(kid: str, key: Any = None) -> dict[str, Any]:
    public = (key or ec.generate_private_key(ec.SECP384R1())).public_key().public_numbers()
    x, y = (jwk.b64url(n.to_bytes(48, "big")) for n in (public.x, public.y))
    return {"kty": "EC", "crv": "P-384", "kid": kid, "x": x, "y": y}


def test_the_reported_set_of_1300_p384_keys_never_stalls_requests(wasm, echo, idp, keys):
    idp.serve_json(KEYS_PATH, jwks_of((keys.rsa, "rsa-1")), max_age=1)
    p = provider(min_refresh_seconds=1, max_refresh_seconds=1)
    with filter_with(wasm, echo, idp, p) as envoy:
        assert_allowed(envoy.get("/api/x", good(keys)))
        hostile = json.dumps({"keys": [p384_jwk(f"k{i}") for i in range(1300)]}, separators=(",", ":"))
        assert len(hostile) < 256 * 1024  # within the default max_response_bytes
        idp.serve(KEYS_PATH, body=hostile, headers={"cache-control": "public, max-age=1"})
        slowest = 0.0
        deadline = time.monotonic() + 3.5  # three refreshes
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert_allowed(envoy.get("/api/x", good(keys)))  # the last good keys stay in use
            slowest = max(slowest, time.monotonic() - started)
        assert counter(envoy, "primary.fetch_failed.no_usable_keys") >= 1
        assert envoy.wait_for_log("has 1300 keys; at most 100 are accepted")
        assert slowest < 0.25, f"a request took {slowest * 1000:.0f} ms"


def test_a_set_of_more_than_100_keys_is_a_failed_fetch(wasm, echo, idp, keys):
    many = [jwk.public_jwk(keys.rsa, kid=f"rsa-{i}", alg="RS256") for i in range(101)]
    idp.serve_json(KEYS_PATH, {"keys": many})
    with filter_with(wasm, echo, idp, provider(cold_start_wait_ms=500)) as envoy:
        assert_denied(envoy.get("/api/x", good(keys)), "keys_unavailable")
        wait_until(lambda: counter(envoy, "primary.fetch_failed.no_usable_keys") >= 1)
        assert envoy.wait_for_log("at most 100 are accepted")


def test_a_document_with_too_many_json_values_is_a_failed_fetch(wasm, echo, idp, keys):
    document = {**jwks_of((keys.rsa, "rsa-1")), "pad": [0] * 10_001}
    idp.serve_json(KEYS_PATH, document)
    with filter_with(wasm, echo, idp, provider(cold_start_wait_ms=500)) as envoy:
        assert_denied(envoy.get("/api/x", good(keys)), "keys_unavailable")
        wait_until(lambda: counter(envoy, "primary.fetch_failed.too_complex") >= 1)


def test_a_set_of_100_p384_keys_verifies_a_token_of_its_last_key(wasm, echo, idp, keys):
    # Each key is prepared (its point tables built) when a token first needs it.
    idp.serve_json(KEYS_PATH, {"keys": [p384_jwk(f"k{i}") for i in range(99)]
                               + [p384_jwk("k99", keys.ec384)]})
    with filter_with(wasm, echo, idp, provider()) as envoy:
        seen = assert_allowed(envoy.get("/api/x", bearer(token(keys, claims(), alg="ES384", kid="k99"))))
        assert seen["path"] == "/api/x"
        forged = token(keys, claims(), alg="ES384", kid="k98")  # signed by another key
        reply = envoy.get("/api/x", bearer(forged))
        assert reply.status == 401 and reply.header("x-identity-reason") == "signature_invalid", reply

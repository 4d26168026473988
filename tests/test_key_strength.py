"""Key strength, one policy for inline and fetched key sets: an RSA key shorter than the
provider's `min_rsa_bits` (default 2048) is skipped with one log line and a count in
`identity_filter.keys.weak_skipped`; tokens it signed get 401 `key_not_found`, and the other keys
of the set keep working.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from identity_devkit import jwk
from envoy_runner import Envoy
from support import ISSUER, assert_allowed, assert_denied, bearer, claims, token
from test_remote_keys import KEYS_PATH, filter_with, idp, provider, wait_until  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore:The RSA key is 1024 bits")

WEAK_COUNTER = "wasmcustom.identity_filter.keys.weak_skipped"


@pytest.fixture(scope="module")
def weak() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def weak_and_good(keys, weak) -> dict[str, Any]:
    return jwk.jwks(jwk.public_jwk(weak, kid="weak-1", alg="RS256"),
                    jwk.public_jwk(keys.rsa, kid="rsa-1", alg="RS256"))


def signed_by(keys, key: Any, kid: str) -> dict[str, str]:
    return bearer(token(keys, claims(), kid=kid, key=key))


def inline_config(keys, weak, **extra: Any) -> dict[str, Any]:
    return {"providers": [{"name": "primary", "issuer": ISSUER, "jwks": weak_and_good(keys, weak), **extra}],
            "default": "authenticated"}


def test_a_weak_inline_key_is_skipped_and_the_rest_of_the_set_works(wasm, echo, keys, weak):
    with Envoy(wasm, inline_config(keys, weak), upstream_port=echo.port, name="weak-inline") as envoy:
        assert_allowed(envoy.get("/x", signed_by(keys, keys.rsa, "rsa-1")))
        assert_denied(envoy.get("/x", signed_by(keys, weak, "weak-1")), "key_not_found")
        assert envoy.wait_for_log('provider "primary" key keys[0] (kid "weak-1"): RSA modulus has 1024 bits')
        assert envoy.stats().get(WEAK_COUNTER, 0) >= 1


def test_min_rsa_bits_1024_admits_the_inline_key(wasm, echo, keys, weak):
    config = inline_config(keys, weak, min_rsa_bits=1024)
    with Envoy(wasm, config, upstream_port=echo.port, name="weak-admitted") as envoy:
        assert_allowed(envoy.get("/x", signed_by(keys, weak, "weak-1")))
        assert_allowed(envoy.get("/x", signed_by(keys, keys.rsa, "rsa-1")))
        assert envoy.stats().get(WEAK_COUNTER, 0) == 0


def test_min_rsa_bits_3072_skips_a_2048_bit_key(wasm, echo, keys, weak):
    config = inline_config(keys, weak, min_rsa_bits=3072)
    with Envoy(wasm, config, upstream_port=echo.port, name="weak-3072") as envoy:
        assert_denied(envoy.get("/x", signed_by(keys, keys.rsa, "rsa-1")), "key_not_found")
        assert envoy.wait_for_log('kid "rsa-1"): RSA modulus has 2048 bits (min_rsa_bits 3072)')


def test_a_weak_fetched_key_is_skipped_and_the_rest_of_the_set_works(wasm, echo, idp, keys, weak):
    idp.serve_json(KEYS_PATH, weak_and_good(keys, weak))
    with filter_with(wasm, echo, idp, provider(refetch_min_interval_seconds=60)) as envoy:
        assert_allowed(envoy.get("/api/x", signed_by(keys, keys.rsa, "rsa-1")))
        assert_denied(envoy.get("/api/x", signed_by(keys, weak, "weak-1")), "key_not_found")
        assert envoy.wait_for_log('provider "primary" key keys[0] (kid "weak-1"): RSA modulus has 1024 bits')
        wait_until(lambda: envoy.stats().get(WEAK_COUNTER, 0) >= 1)


def test_a_fetched_set_of_only_weak_keys_is_a_failed_fetch(wasm, echo, idp, keys, weak):
    idp.serve_json(KEYS_PATH, jwk.jwks(jwk.public_jwk(weak, kid="weak-1", alg="RS256")))
    with filter_with(wasm, echo, idp, provider(cold_start_wait_ms=500)) as envoy:
        assert_denied(envoy.get("/api/x", signed_by(keys, weak, "weak-1")), "keys_unavailable")
        assert envoy.wait_for_log("shorter than min_rsa_bits 2048 skipped")

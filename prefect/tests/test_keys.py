"""Verification keys: JWKS parsing, the JWKS URL cache, rotation and unavailability."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from identity_dispatcher.keys import (
    JwksError,
    KeyStore,
    KeysUnavailable,
    keys_from_jwks,
    load_jwks_file,
)
from identity_devkit.jwk import b64url
from identity_devkit.testing import AssertionMinter
from local_http import ScriptedServer, json_answer


def run(coroutine):
    return asyncio.run(coroutine)


def oct_jwk(secret: bytes, kid: str) -> dict:
    return {"kty": "oct", "k": b64url(secret), "kid": kid}


def kid_and_alg(key) -> tuple[str | None, str] | None:
    return None if key is None else (key.kid, key.algorithm)


def test_jwks_keeps_ed25519_and_oct_keys_only():
    minter = AssertionMinter()
    document = minter.public_jwks()
    document["keys"] += [
        oct_jwk(b"s" * 32, "hs-1"),
        {"kty": "RSA", "n": "xx", "e": "AQAB", "kid": "rsa"},
        {"kty": "OKP", "crv": "X25519", "x": "abc", "kid": "ecdh"},
        {**oct_jwk(b"e" * 32, "enc"), "use": "enc"},
        {**oct_jwk(b"h" * 32, "hs512"), "alg": "HS512"},
    ]
    keys = keys_from_jwks(document)
    assert [(k.kid, k.algorithm) for k in keys] == [("ed-1", "EdDSA"), ("hs-1", "HS256")]
    assert keys[1].key == b"s" * 32


@pytest.mark.parametrize("document", [[], {"keys": "x"}, {"keys": [1]},
                                      {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "!!"}]}])
def test_broken_jwks_is_an_error(document):
    with pytest.raises(JwksError):
        keys_from_jwks(document)


def test_jwks_file_without_usable_key_is_an_error(tmp_path):
    file = tmp_path / "jwks.json"
    file.write_text(json.dumps({"keys": []}))
    with pytest.raises(JwksError, match="no Ed25519 or oct"):
        load_jwks_file(str(file))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store_for(url: str, clock: Clock) -> tuple[KeyStore, httpx.AsyncClient]:
    http = httpx.AsyncClient()
    return KeyStore(jwks_url=url, http=http, cache_seconds=300, min_refetch_seconds=10, clock=clock), http


def test_jwks_url_is_fetched_once_and_cached():
    minter = AssertionMinter()
    with ScriptedServer({"/jwks": json_answer(200, minter.public_jwks())}) as server:
        clock = Clock()

        async def scenario():
            store, http = store_for(server.url + "/jwks", clock)
            async with http:
                first = await store.find("ed-1", "EdDSA")
                second = await store.find("ed-1", "EdDSA")
                return first, second

        first, second = run(scenario())
        assert first is not None and first == second
        assert server.hits["/jwks"] == 1


def test_unknown_kid_refetches_at_most_once_per_interval():
    old, new = AssertionMinter(ed25519_kid="ed-1"), AssertionMinter(ed25519_kid="ed-2")
    document = {"value": old.public_jwks()}
    with ScriptedServer({"/jwks": lambda: json_answer(200, document["value"])}) as server:
        clock = Clock()

        async def scenario():
            store, http = store_for(server.url + "/jwks", clock)
            async with http:
                assert kid_and_alg(await store.find("ed-1", "EdDSA")) == ("ed-1", "EdDSA")
                document["value"] = new.public_jwks()  # the filter rotated its key
                clock.now += 1
                assert await store.find("ed-2", "EdDSA") is None  # too soon to refetch
                clock.now += 10
                assert kid_and_alg(await store.find("ed-2", "EdDSA")) == ("ed-2", "EdDSA")
                assert await store.find("ed-1", "EdDSA") is None  # rotated out

        run(scenario())
        assert server.hits["/jwks"] == 2


def test_unreachable_jwks_url_without_keys_is_unavailable():
    with ScriptedServer({"/jwks": json_answer(500, {"error": "down"})}) as server:
        clock = Clock()

        async def scenario():
            store, http = store_for(server.url + "/jwks", clock)
            async with http:
                with pytest.raises(KeysUnavailable):
                    await store.find("ed-1", "EdDSA")

        run(scenario())


def test_failed_refresh_keeps_the_last_good_keys():
    minter = AssertionMinter()
    state = {"up": True}

    def answer():
        return json_answer(200, minter.public_jwks()) if state["up"] else json_answer(503, None)

    with ScriptedServer({"/jwks": answer}) as server:
        clock = Clock()

        async def scenario():
            store, http = store_for(server.url + "/jwks", clock)
            async with http:
                first = await store.find("ed-1", "EdDSA")
                assert kid_and_alg(first) == ("ed-1", "EdDSA") and store.last_error is None
                state["up"] = False
                clock.now += 301  # cache expired, refresh fails
                assert await store.find("ed-1", "EdDSA") == first
                assert store.last_error is not None and store.last_error.startswith(
                    f"JWKS fetch from {server.url}/jwks failed: "), store.last_error

        run(scenario())
        assert server.hits["/jwks"] == 2


def test_static_keys_still_work_while_the_jwks_url_is_down():
    minter = AssertionMinter()
    static = keys_from_jwks(minter.public_jwks())
    with ScriptedServer({}) as server:
        clock = Clock()

        async def scenario():
            async with httpx.AsyncClient() as http:
                store = KeyStore(static, jwks_url=server.url + "/jwks", http=http, clock=clock)
                found = await store.find("ed-1", "EdDSA")
                assert kid_and_alg(found) == ("ed-1", "EdDSA") and found in static
                with pytest.raises(KeysUnavailable):  # maybe a key of the URL: retry later
                    await store.find("ed-9", "EdDSA")

        run(scenario())

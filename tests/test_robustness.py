"""No input may panic the module (a panic aborts the VM: every later request would fail).
Hostile tokens get a 401 and the very next good request still passes."""

import json

import pytest

from identity_devkit.jwk import b64url
from support import assert_allowed, bearer, token


def b64(value) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return b64url(raw)


# Nested deeper than any JSON parser's recursion limit.
DEEP = (b'{"x":' + b'[' * 300 + b'1' + b']' * 300 + b'}')

HOSTILE = [
    ".",
    "..",
    "...",
    "a.b.c",
    "a.b.c.d.e",
    "====.====.====",
    f"{b64({'alg': 'RS256'})}..",
    f"{b64({'alg': 'RS256'})}.{b64({'sub': 'x'})}.",
    f"{b64(b'not json')}.{b64({'sub': 'x'})}.c2ln",
    f"{b64([1, 2, 3])}.{b64({'sub': 'x'})}.c2ln",
    f"{b64({'alg': 'RS256'})}.{b64(b'[]')}.c2ln",
    f"{b64({'alg': 'RS256'})}.{b64('a string')}.c2ln",
    f"{b64({'alg': 'RS256', 'kid': 7})}.{b64({'iss': 5, 'exp': 'soon'})}.c2ln",
    f"{b64({'alg': 'RS256', 'kid': 'rsa-1'})}.{b64({'iss': 'https://issuer.test', 'exp': 1e308})}.c2ln",
    f"{b64({'alg': 'RS256', 'kid': 'rsa-1'})}.{b64({'iss': 'https://issuer.test', 'exp': -1})}.c2ln",
    f"{b64({'alg': 'ES256', 'kid': 'ec-p256'})}.{b64({'iss': 'https://issuer.test'})}.AAAA",
    f"{b64({'alg': 'EdDSA', 'kid': 'ed-1'})}.{b64({'iss': 'https://issuer.test'})}.{b64(b'x' * 200)}",
    f"{b64({'alg': 'HS256', 'kid': 'hmac-1'})}.{b64({'iss': 'https://issuer.test'})}.",
    f"{b64({'alg': 'RS256', 'crit': 'x'})}.{b64({'iss': 'https://issuer.test'})}.c2ln",
    f"{b64({'alg': None})}.{b64({'iss': None, 'aud': {'x': 1}})}.c2ln",
    f"{b64({'a' * 2000: 1})}.{b64({})}.c2ln",
    f"{b64({'alg': 'RS256'})}.{b64(DEEP)}.c2ln",
    "\u00ff\u00fe.\u00fd.\u00fc",
]


@pytest.mark.parametrize("bad", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_token_is_refused_without_harm(main, keys, bad):
    reply = main.get("/api/items", {"authorization": f"Bearer {bad}"})
    assert reply.status == 401 and not reply.from_upstream, reply
    assert reply.header("x-identity-reason") not in (None, "")
    assert_allowed(main.get("/api/items", bearer(token(keys))))


def test_many_headers_and_long_path(main, keys):
    headers = [(f"x-filler-{i}", "v" * 100) for i in range(80)] + list(bearer(token(keys)).items())
    seen = assert_allowed(main.get("/api/" + "p" * 2000 + "?q=" + "x" * 2000, headers))
    assert seen["headers"]["x-identity-subject"] == "alice"

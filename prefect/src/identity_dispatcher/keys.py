"""The keys that verify the filter's assertion: an HS256 secret, a JWKS file, a JWKS URL.

The algorithm of a key comes from the key itself (``oct`` → HS256, ``OKP``/``Ed25519`` → EdDSA),
never from the token: a token whose header names another algorithm than its key's is refused.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import httpx
import jwt

#: The algorithms of the identity contract.
SUPPORTED_ALGORITHMS = ("EdDSA", "HS256")


class KeysUnavailable(Exception):
    """The JWKS URL could not be fetched and no keys are known: answer 503, retry later."""


class JwksError(ValueError):
    """A JWKS document is not usable."""


@dataclass(frozen=True)
class VerificationKey:
    kid: str | None
    algorithm: str
    key: Any

    def matches(self, kid: str | None, algorithm: str) -> bool:
        return self.algorithm == algorithm and (self.kid is None or self.kid == kid)


def keys_from_jwks(document: Any) -> list[VerificationKey]:
    """Parse a JWKS document, keeping the keys of the contract's algorithms.

    Keys of other types (RSA, EC, ...), other ``alg`` values or ``use`` other than ``sig`` are
    skipped; a document that is not a JWKS at all raises :class:`JwksError`.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError('not a JWKS: expected an object with a "keys" list')
    keys: list[VerificationKey] = []
    for index, entry in enumerate(document["keys"]):
        if not isinstance(entry, dict):
            raise JwksError(f"keys[{index}]: not an object")
        if entry.get("use", "sig") != "sig":
            continue
        kty, crv = entry.get("kty"), entry.get("crv")
        if kty == "OKP" and crv == "Ed25519":
            algorithm = "EdDSA"
        elif kty == "oct":
            algorithm = "HS256"
        else:
            continue
        if entry.get("alg", algorithm) != algorithm:
            continue
        try:
            parsed = jwt.PyJWK(entry, algorithm=algorithm)
        except (jwt.exceptions.PyJWKError, jwt.exceptions.InvalidKeyError, ValueError) as error:
            raise JwksError(f"keys[{index}]: {error}") from None
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise JwksError(f"keys[{index}].kid: not a string")
        keys.append(VerificationKey(kid=kid, algorithm=algorithm, key=parsed.key))
    return keys


def load_jwks_file(path: str) -> list[VerificationKey]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as error:
        raise JwksError(f"{path}: {error}") from None
    keys = keys_from_jwks(document)
    if not keys:
        raise JwksError(f"{path}: no Ed25519 or oct signing key")
    return keys


def choose(keys: Iterable[VerificationKey], kid: str | None, algorithm: str) -> VerificationKey | None:
    """The key for a token header: same algorithm, and the same ``kid`` when both have one.

    A token without ``kid`` is accepted only when exactly one key of its algorithm exists.
    """
    candidates = [k for k in keys if k.algorithm == algorithm]
    if kid is None:
        return candidates[0] if len(candidates) == 1 else None
    exact = [k for k in candidates if k.kid == kid]
    if exact:
        return exact[0]
    anonymous = [k for k in candidates if k.kid is None]
    return anonymous[0] if len(anonymous) == 1 else None


class KeyStore:
    """Static keys plus, optionally, keys fetched from a JWKS URL and cached.

    Fetched keys are refreshed after ``cache_seconds``; an unknown ``kid`` triggers a refetch at
    most once per ``min_refetch_seconds`` (key rotation). When a refresh fails, the keys already
    fetched are kept (last known good). When no static key matches and the URL has never been
    fetched successfully, :class:`KeysUnavailable` is raised (a 503: retry later).
    """

    def __init__(
        self,
        static: Iterable[VerificationKey] = (),
        jwks_url: str | None = None,
        http: httpx.AsyncClient | None = None,
        cache_seconds: float = 300.0,
        min_refetch_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._static = list(static)
        self._url = jwks_url
        self._http = http
        self._cache_seconds = cache_seconds
        self._min_refetch = min_refetch_seconds
        self._clock = clock
        self._fetched: list[VerificationKey] | None = None
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.last_error: str | None = None

    async def find(self, kid: str | None, algorithm: str) -> VerificationKey | None:
        if self._url is None:
            return choose(self._static, kid, algorithm)
        now = self._clock()
        if self._fetched is None or now - (self._fetched_at or 0) >= self._cache_seconds:
            await self._refresh()
        key = choose(self._static + (self._fetched or []), kid, algorithm)
        if key is None:  # maybe a rotated key: refetch (rate-limited)
            await self._refresh()
            key = choose(self._static + (self._fetched or []), kid, algorithm)
        if key is None and self._fetched is None:
            # The key may well be in the JWKS we cannot get: "retry later", not "invalid".
            raise KeysUnavailable(self.last_error or "the JWKS URL could not be fetched")
        return key

    async def _refresh(self) -> None:
        async with self._lock:
            now = self._clock()
            # At most one fetch per min_refetch_seconds, also when another request fetched
            # while this one waited for the lock, and while the URL keeps failing.
            if self._attempted_at is not None and now - self._attempted_at < self._min_refetch:
                return
            self._attempted_at = now
            if self._http is None or self._url is None:
                return
            try:
                response = await self._http.get(self._url, timeout=5.0)
                response.raise_for_status()
                keys = keys_from_jwks(response.json())
            except (httpx.HTTPError, ValueError, JwksError) as error:
                self.last_error = f"JWKS fetch from {self._url} failed: {error}"
                return
            self._fetched = keys
            self._fetched_at = now
            self.last_error = None

#!/usr/bin/env python3
"""A local development token issuer: one RSA-2048 signing key, its JWKS, and fresh RS256 tokens.

    python3 tools/devissuer.py init                      # create .dev/issuer/ (idempotent)
    python3 tools/devissuer.py token [--claims JSON] [--ttl SECONDS]
    python3 tools/devissuer.py jwks                      # the public JWK Set
    python3 tools/devissuer.py info                      # issuer, audience, kid, paths

Everything lives under the git-ignored ``.dev/issuer/`` of the repository (``--dir`` to move it):
``key.pem`` (private key, PKCS#8), ``jwks.json`` (public keys) and ``issuer.json`` (issuer URL,
audience, kid). Never use this key outside development.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.hazmat.primitives import serialization  # noqa: E402

import devkit_path  # noqa: F401,E402  (identity_devkit on sys.path)
from identity_devkit.issuer import SigningKey, merged  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / ".dev" / "issuer"
ISSUER = "http://127.0.0.1/dev-issuer"
AUDIENCE = "dev-api"
SUBJECT = "dev-user"
DEFAULT_TTL = 3600
#: The claims that carry the dev token's roles (envoy/dev-config.json reads both): a token
#: request that names either replaces the default roles, wherever they were.
ROLE_CLAIMS = ("roles", "realm_access")


class DevIssuer:
    """The development issuer stored in ``directory``."""

    def __init__(self, directory: Path | str = DEFAULT_DIR):
        self.dir = Path(directory)
        self.key_path = self.dir / "key.pem"
        self.jwks_path = self.dir / "jwks.json"
        self.info_path = self.dir / "issuer.json"

    def exists(self) -> bool:
        return self.key_path.exists() and self.jwks_path.exists() and self.info_path.exists()

    def init(self, force: bool = False) -> bool:
        """Create the key, JWKS and issuer.json unless they exist. Returns True if created."""
        if self.exists() and not force:
            return False
        self.dir.mkdir(parents=True, exist_ok=True)
        signer = SigningKey.generate("RS256")  # kid: the key's RFC 7638 thumbprint
        pem = signer.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        self.jwks_path.write_text(json.dumps(signer.jwks(), indent=2) + "\n")
        info = {"issuer": ISSUER, "audience": AUDIENCE, "kid": signer.kid, "algorithm": signer.alg}
        self.info_path.write_text(json.dumps(info, indent=2) + "\n")
        return True

    def info(self) -> dict[str, Any]:
        return json.loads(self.info_path.read_text())

    def jwks(self) -> dict[str, Any]:
        return json.loads(self.jwks_path.read_text())

    def default_claims(self, ttl: int = DEFAULT_TTL, now: int | None = None) -> dict[str, Any]:
        now = int(time.time()) if now is None else now
        return {
            "iss": self.info()["issuer"],
            "sub": SUBJECT,
            "aud": self.info()["audience"],
            "iat": now,
            "exp": now + ttl,
            "name": "Dev User",
            "email": "dev-user@example.test",
            "realm_access": {"roles": ["user", "developer"]},
            "scope": "runs:read runs:write",
        }

    def token(self, claims: dict[str, Any] | None = None, ttl: int = DEFAULT_TTL) -> str:
        """A fresh RS256 token: the default claims, updated with ``claims`` (a key whose
        value is None is removed). Roles given as ``roles`` or ``realm_access`` replace the
        default roles (``realm_access.roles``) instead of adding to them."""
        claims = claims or {}
        defaults = self.default_claims(ttl)
        if any(name in claims for name in ROLE_CLAIMS):
            for name in ROLE_CLAIMS:
                defaults.pop(name, None)
        return self.signing_key().token(merged(defaults, claims))

    def signing_key(self) -> SigningKey:
        """The stored key, with its kid and algorithm."""
        info = self.info()
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        return SigningKey(key, info["kid"], info.get("algorithm", "RS256"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="issuer directory (default .dev/issuer)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_init = sub.add_parser("init", help="create the signing key and JWKS (idempotent)")
    p_init.add_argument("--force", action="store_true", help="replace an existing key")
    p_token = sub.add_parser("token", help="print a freshly signed RS256 token")
    p_token.add_argument("--claims", default="", help='JSON object merged over the defaults, e.g. \'{"sub":"bob","roles":["admin"]}\' '
                         '(roles given as "roles" or "realm_access" replace the default roles); null removes a claim')
    p_token.add_argument("--ttl", type=int, default=DEFAULT_TTL, help=f"lifetime in seconds (default {DEFAULT_TTL})")
    sub.add_parser("jwks", help="print the public JWK Set")
    sub.add_parser("info", help="print issuer, audience, kid")
    args = parser.parse_args(argv)

    issuer = DevIssuer(args.dir)
    if args.command == "init":
        created = issuer.init(force=args.force)
        print(f"{'created' if created else 'exists'}: {issuer.dir}", file=sys.stderr)
        print(json.dumps(issuer.info(), indent=2))
        return 0
    if issuer.init():
        print(f"created development issuer in {issuer.dir}", file=sys.stderr)
    if args.command == "token":
        try:
            claims = json.loads(args.claims) if args.claims.strip() else {}
        except json.JSONDecodeError as e:
            parser.error(f"--claims is not JSON: {e}")
        if not isinstance(claims, dict):
            parser.error("--claims must be a JSON object")
        print(issuer.token(claims, ttl=args.ttl))
    elif args.command == "jwks":
        print(json.dumps(issuer.jwks(), indent=2))
    elif args.command == "info":
        print(json.dumps({**issuer.info(), "dir": str(issuer.dir)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

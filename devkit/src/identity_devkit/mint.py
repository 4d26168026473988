"""Mint an assertion like the filter's, with a local development key (debugging only).

    python -m identity_devkit.mint --key DIR/dev-assertion-key.pem --sub alice \\
        --roles flow-runner --scopes runs:write --tenant acme --method POST --path /runs/hello/hello

prints a compact JWT valid for 60 s. ``python -m identity_devkit.chain`` writes such a key
and prints a ready ``curl``. A dispatcher trusts this key only when told to (``--dev-key`` of the
chain, or the key's JWKS in ``DISPATCHER_JWKS_FILE``): in front of a gateway, it should not.
"""

from __future__ import annotations

import argparse
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .testing import AssertionMinter, CallerIdentity


def _list(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.replace(",", " ").split() if v)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m identity_devkit.mint", description=__doc__.splitlines()[0])
    parser.add_argument("--key", required=True, help="Ed25519 private key (PEM)")
    parser.add_argument("--kid", default="dev-1")
    parser.add_argument("--sub", required=True)
    parser.add_argument("--idp", default="https://idp.example.com/realms/main")
    parser.add_argument("--provider", default="main")
    parser.add_argument("--roles", default="", help="comma- or space-separated")
    parser.add_argument("--groups", default="")
    parser.add_argument("--scopes", default="")
    parser.add_argument("--tenant")
    parser.add_argument("--method", default="POST")
    parser.add_argument("--path", required=True)
    parser.add_argument("--request-id")
    parser.add_argument("--issuer", default="identity-filter")
    parser.add_argument("--audience", default="prefect-dispatcher")
    args = parser.parse_args(argv)

    with open(args.key, "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        print("--key: not an Ed25519 private key", file=sys.stderr)
        return 2
    minter = AssertionMinter(issuer=args.issuer, audience=args.audience, ed25519_key=key,
                             ed25519_kid=args.kid)
    identity = CallerIdentity(sub=args.sub, idp=args.idp, provider=args.provider,
                              roles=_list(args.roles), groups=_list(args.groups),
                              scopes=_list(args.scopes), tenant=args.tenant)
    print(minter.mint(identity, args.method.upper(), args.path, request_id=args.request_id))
    return 0


if __name__ == "__main__":
    sys.exit(main())

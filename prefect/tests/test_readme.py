"""The PyJWT example in README.md works as written, and agrees with the dispatcher."""

from __future__ import annotations

import re
from pathlib import Path

import jwt
import pytest

from identity_devkit.testing import AssertionMinter
from people import ALICE

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def example() -> dict:
    match = re.search(r"<!-- example: verify -->\s*```python\n(.*?)```", README, re.S)
    assert match, "README lost its verify example"
    namespace: dict = {}
    exec(compile(match.group(1), "README.md", "exec"), namespace)
    return namespace


EXAMPLE = example()
MINTER = AssertionMinter()
ARGS = dict(audience="prefect-dispatcher", issuer="identity-filter", method="POST", path="/runs/hello/hello")


def test_readme_example_verifies_an_eddsa_assertion():
    token = MINTER.mint(ALICE, "POST", "/runs/hello/hello")
    kid = jwt.get_unverified_header(token)["kid"]
    key = EXAMPLE["key_from_jwks"](MINTER.public_jwks(), kid)
    claims = EXAMPLE["verify_identity_assertion"](token, key, "EdDSA", **ARGS)
    assert claims["sub"] == "alice" and claims["req"]["path"] == "/runs/hello/hello"


def test_readme_example_verifies_an_hs256_assertion():
    token = MINTER.mint(ALICE, "POST", "/runs/hello/hello", algorithm="HS256")
    claims = EXAMPLE["verify_identity_assertion"](token, MINTER.hs256_secret.encode(), "HS256", **ARGS)
    assert claims["roles"] == ["flow-runner"]


@pytest.mark.parametrize("overrides", [{"aud": "other"}, {"v": 2}, {"req": {"method": "POST", "path": "/x"}}])
def test_readme_example_refuses_what_the_dispatcher_refuses(overrides):
    token = MINTER.mint(ALICE, "POST", "/runs/hello/hello", **overrides)
    key = EXAMPLE["key_from_jwks"](MINTER.public_jwks(), "ed-1")
    with pytest.raises(jwt.InvalidTokenError):
        EXAMPLE["verify_identity_assertion"](token, key, "EdDSA", **ARGS)

"""Settings and start-up: a bad setting or policy stops the dispatcher, naming the field."""

from __future__ import annotations

import subprocess
import sys

import pytest

from identity_dispatcher.config import ConfigError, load_settings
from identity_devkit.testing import EXAMPLE_POLICY

BASE = {
    "DISPATCHER_POLICY_FILE": str(EXAMPLE_POLICY),
    "PREFECT_API_URL": "http://127.0.0.1:4200/api/",
    "DISPATCHER_HS256_SECRET": "s" * 32,
}


def test_defaults():
    settings = load_settings(BASE)
    assert settings.audience == "prefect-dispatcher"
    assert settings.assertion_issuer == "identity-filter"
    assert settings.assertion_header == "x-identity-assertion"
    assert settings.reason_header == "x-identity-reason"
    assert settings.prefect_api_url == "http://127.0.0.1:4200/api"
    assert settings.hs256_secret == b"s" * 32
    assert settings.leeway_seconds == 5


@pytest.mark.parametrize(
    "change,variable",
    [
        ({"DISPATCHER_POLICY_FILE": ""}, "DISPATCHER_POLICY_FILE"),
        ({"PREFECT_API_URL": ""}, "PREFECT_API_URL"),
        ({"DISPATCHER_HS256_SECRET": ""}, "no verification key"),
        ({"DISPATCHER_HS256_SECRET": "short"}, "DISPATCHER_HS256_SECRET"),
        ({"DISPATCHER_HS256_SECRET_FILE": "/x"}, "set only one"),
        ({"DISPATCHER_LEEWAY_SECONDS": "soon"}, "DISPATCHER_LEEWAY_SECONDS"),
        ({"DISPATCHER_JWKS_URL": "file:///etc/passwd"}, "DISPATCHER_JWKS_URL"),
        ({"DISPATCHER_PATH_PREFIX": "prefect"}, "DISPATCHER_PATH_PREFIX"),
        ({"DISPATCHER_ASSERTION_HEADER": "x bad"}, "DISPATCHER_ASSERTION_HEADER"),
    ],
)
def test_invalid_setting_names_the_variable(change, variable):
    with pytest.raises(ConfigError, match=variable):
        load_settings({**BASE, **change})


def test_secret_from_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("f" * 40 + "\n")
    env = {**BASE, "DISPATCHER_HS256_SECRET": "", "DISPATCHER_HS256_SECRET_FILE": str(secret)}
    assert load_settings(env).hs256_secret == b"f" * 40


def check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "identity_dispatcher", "--check"], env=env,
                          capture_output=True, text=True, timeout=60)


def test_check_accepts_the_example(tmp_path):
    done = check({**BASE, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr


def test_bad_policy_stops_start_up_naming_the_field(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - name: r\n    deployments: [a/b]\n    rolez: [x]\n")
    done = check({**BASE, "DISPATCHER_POLICY_FILE": str(policy), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "rules[0].rolez" in done.stderr


def test_mint_cli_signs_what_the_dispatcher_accepts(tmp_path):
    from cryptography.hazmat.primitives import serialization

    from identity_dispatcher.assertion import verify_assertion
    from identity_dispatcher.keys import keys_from_jwks
    from identity_devkit.testing import AssertionMinter

    minter = AssertionMinter(ed25519_kid="dev-1")
    key = tmp_path / "key.pem"
    key.write_bytes(minter.ed25519_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    done = subprocess.run(
        [sys.executable, "-m", "identity_devkit.mint", "--key", str(key), "--sub", "alice",
         "--roles", "a,b", "--tenant", "acme", "--method", "post", "--path", "/runs/hello/hello"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    identity = verify_assertion(done.stdout.strip(), keys_from_jwks(minter.public_jwks())[0],
                                audience="prefect-dispatcher", issuer="identity-filter",
                                method="POST", path="/runs/hello/hello")
    assert (identity.sub, identity.roles, identity.tenant) == ("alice", ("a", "b"), "acme")

"""Test setup: the real-chain fixtures from identity_dispatcher.pytest_plugin with the test
policy. The callers are in people.py."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["identity_dispatcher.pytest_plugin"]

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def dispatcher_policy_file() -> Path:
    return HERE / "policy.yaml"

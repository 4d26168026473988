"""Pytest fixtures for a real chain: Prefect server (once per session), served example flows,
a dispatcher, and callers. Load it from a ``conftest.py``::

    pytest_plugins = ["identity_devkit.pytest_plugin"]

Override these fixtures to adapt the chain:

``dispatcher_policy_file`` (session)
    The policy the dispatcher loads (default: the example policy).
``dispatcher_port`` (session)
    The dispatcher's port (default: a free one, chosen before anything starts, so a gateway
    can be configured with it and started before the dispatcher).
``dispatcher_env`` (session)
    Extra dispatcher settings; by default it trusts ``assertion_minter``'s HS256 secret and
    EdDSA JWKS file. A gateway test adds the filter's key, e.g. ``DISPATCHER_JWKS_URL`` pointing
    at the filter's JWKS path on the gateway, or its HS256 secret.
``caller`` (function)
    How requests reach the dispatcher. Default: ``params=["direct"]`` — a
    :class:`~identity_devkit.testing.DirectCaller` minting assertions itself. A gateway test
    overrides it with more params (e.g. ``["direct", "envoy"]``) and returns an object with the
    same ``request(method, path, *, identity, json=None, headers=None, request_id=None)``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from .testing import (
    EXAMPLE_POLICY,
    AssertionMinter,
    DirectCaller,
    DispatcherProcess,
    PrefectServer,
    ServedFlows,
    free_port,
)


@pytest.fixture(scope="session")
def chain_workdir() -> Iterator[Path]:
    """Logs and the Prefect home of the session. Its own temporary directory (not pytest's
    rotating basetemp, which a concurrent pytest run may prune); removed at the end unless
    ``IDENTITY_CHAIN_KEEP=1``, in which case its path is printed."""
    workdir = Path(tempfile.mkdtemp(prefix="identity-chain-"))
    try:
        yield workdir
    finally:
        if os.environ.get("IDENTITY_CHAIN_KEEP") == "1":
            print(f"\nidentity chain logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def assertion_minter() -> AssertionMinter:
    return AssertionMinter()


@pytest.fixture(scope="session")
def prefect_server(chain_workdir: Path) -> Iterator[PrefectServer]:
    server = PrefectServer(chain_workdir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def served_flows(chain_workdir: Path, prefect_server: PrefectServer) -> Iterator[ServedFlows]:
    flows = ServedFlows(chain_workdir, prefect_server)
    try:
        yield flows
    finally:
        flows.stop()


@pytest.fixture(scope="session")
def dispatcher_policy_file() -> Path:
    return EXAMPLE_POLICY


@pytest.fixture(scope="session")
def dispatcher_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def dispatcher_env(chain_workdir: Path, assertion_minter: AssertionMinter) -> dict[str, str]:
    return assertion_minter.dispatcher_env(chain_workdir)


@pytest.fixture(scope="session")
def dispatcher(
    chain_workdir: Path,
    prefect_server: PrefectServer,
    served_flows: ServedFlows,
    dispatcher_policy_file: Path,
    dispatcher_env: dict[str, str],
    dispatcher_port: int,
) -> Iterator[DispatcherProcess]:
    process = DispatcherProcess(chain_workdir, prefect_server.api_url, dispatcher_policy_file, dispatcher_env,
                                port=dispatcher_port)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(params=["direct"])
def caller(request: pytest.FixtureRequest, dispatcher: DispatcherProcess,
           assertion_minter: AssertionMinter) -> Iterator[DirectCaller]:
    client = DirectCaller(dispatcher.url, assertion_minter)
    try:
        yield client
    finally:
        client.close()

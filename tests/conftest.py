"""Fixtures for the integration tests: the built module in a real Envoy on 127.0.0.1.

- ``keys``: the session's signing keys (see support.py).
- ``echo``: one echo upstream for the session (tools/echo_upstream.py).
- ``envoy_with(config, name, hcm_options=None)``: an Envoy running the module with that plugin
  configuration (and those HTTP connection manager options, e.g. ``NORMALIZING_HCM``),
  started on first use and shared by every test asking for the same configuration; all are
  stopped at the end of the session. Their work directories (.work/envoy/<name>-*/,
  with envoy.json and envoy.log) are removed after a session without failures, kept otherwise.
- ``main``, ``sources``, ``forwarding``, ``verbose``, ``quiet``: the shared configurations.
- ``oidc_provider_with(clients=..., resources=..., ...)``: a real OpenID provider (oidc-provider,
  tools/oidc_provider.py) for the test, stopped after it; its log (.work/oidc-provider/) is kept
  when a test of the session failed, and its tail is added to a failing test's report.

The module is ``$IDENTITY_WASM`` or target/wasm32-wasip1/release/identity_filter.wasm (``make
wasm``); Envoy is ``$ENVOY_BIN`` or .venv/bin/envoy (``make venv``). When a test fails, the tail
of the log of each Envoy it used is added to the report.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))

import devkit_path  # noqa: E402,F401  (identity_devkit on sys.path)
import oidc_provider  # noqa: E402
from identity_devkit import supervised  # noqa: E402
from echo_upstream import EchoServer, start_echo_upstream  # noqa: E402
from envoy_runner import DEFAULT_WASM, Envoy  # noqa: E402

import support  # noqa: E402

WASM = Path(os.environ.get("IDENTITY_WASM", DEFAULT_WASM))


@pytest.fixture(scope="session")
def wasm() -> Path:
    if not WASM.exists():
        pytest.fail(f"no module at {WASM}: run `make wasm` (or `make integration`)", pytrace=False)
    return WASM


@pytest.fixture(scope="session")
def keys() -> support.Keys:
    return support.Keys()


@pytest.fixture(scope="session")
def echo() -> EchoServer:
    server = start_echo_upstream()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def envoy_with(wasm: Path, echo: EchoServer) -> Callable[..., Envoy]:
    running: dict[str, Envoy] = {}

    def get(config: Any, name: str = "envoy", hcm_options: dict[str, Any] | None = None) -> Envoy:
        key = config if isinstance(config, str) else json.dumps(config, sort_keys=True)
        if hcm_options:
            key += json.dumps(hcm_options, sort_keys=True)
        envoy = running.get(key)
        if envoy is None or not envoy.running:
            envoy = Envoy(wasm, config, upstream_port=echo.port, name=name,
                          hcm_options=hcm_options).start()
            running[key] = envoy
        return envoy

    yield get
    for envoy in running.values():
        envoy.stop()


@pytest.fixture(scope="session", autouse=True)
def _envoy_workdirs(request: pytest.FixtureRequest):
    """Every work directory the session's processes made (Envoys of the shared fixtures and of
    the tests' own runners, OpenID providers) is removed after a session without failures, kept
    for reading otherwise."""
    first = len(supervised.CREATED_WORKDIRS)
    yield
    supervised.stop_all()
    if request.session.testsfailed == 0:
        for workdir in supervised.CREATED_WORKDIRS[first:]:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def main(envoy_with, keys) -> Envoy:
    return envoy_with(support.main_config(keys), "main")


@pytest.fixture(scope="session")
def sources(envoy_with, keys) -> Envoy:
    return envoy_with(support.sources_config(keys), "sources")


@pytest.fixture(scope="session")
def forwarding(envoy_with, keys) -> Envoy:
    return envoy_with(support.sources_config(keys, forward_token=True), "forwarding")


@pytest.fixture(scope="session")
def verbose(envoy_with, keys) -> Envoy:
    return envoy_with(support.verbose_config(keys), "verbose")


@pytest.fixture(scope="session")
def quiet(envoy_with, keys) -> Envoy:
    return envoy_with(support.quiet_config(keys), "quiet")


@pytest.fixture(scope="session")
def _oidc_providers(request: pytest.FixtureRequest) -> list[oidc_provider.OidcProvider]:
    started: list[oidc_provider.OidcProvider] = []
    yield started
    for provider in started:
        provider.stop()
    if request.session.testsfailed == 0:
        for provider in started:
            provider.remove_workdir()


@pytest.fixture
def oidc_provider_with(request: pytest.FixtureRequest,
                       _oidc_providers: list[oidc_provider.OidcProvider]) -> Callable[..., oidc_provider.OidcProvider]:
    """Start a real OpenID provider for this test: ``oidc_provider_with(clients=[...],
    resources={...})`` takes ``OidcProvider``'s arguments; it is stopped after the test."""
    if not oidc_provider.installed():
        pytest.fail(f"oidc-provider is not installed: {oidc_provider.INSTALL_HINT}", pytrace=False)
    mine: list[oidc_provider.OidcProvider] = []
    request.node.oidc_providers = mine

    def start(**kwargs: Any) -> oidc_provider.OidcProvider:
        provider = oidc_provider.OidcProvider(**kwargs)
        _oidc_providers.append(provider)
        mine.append(provider)
        return provider.start()

    yield start
    for provider in mine:
        provider.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, Envoy):
                report.sections.append((f"envoy log: {name} ({value.log_path})", value.log_tail(25)))
        for provider in getattr(item, "oidc_providers", []):
            report.sections.append((f"oidc-provider log ({provider.log_path})", provider.log_tail(25)))

"""The Airflow backend of the dispatcher against real components, started once per test module
(only test_airflow_dispatcher.py uses them; test_airflow_hook.py and test_run_airflow.py start
their own, after these are stopped):

- Airflow 3 on SQLite (:class:`identity_devkit.airflow_testing.AirflowServer`: api-server,
  scheduler, dag-processor) with the DAGs of ``airflow/dags``, and a service account for the
  dispatcher (simple auth manager);
- the dispatcher (``python -m identity_dispatcher``, ``DISPATCHER_BACKEND=airflow``) with this
  venv's Python, which has no Prefect;
- Envoy with the identity filter's release module in front of it (``tools/envoy_runner.py``,
  configured by :func:`identity_devkit.gateway.filter_config` with
  :func:`~identity_devkit.gateway.airflow_rules`), a test identity provider whose Ed25519
  key is generated here, and an EdDSA assertion key whose public JWKS the dispatcher fetches
  through the gateway.

Without the module or Envoy the gateway tests are skipped, unless ``IDENTITY_GATEWAY_REQUIRED=1``
(``make airflow-test`` sets it): then they fail.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity_devkit import gateway as gw
from identity_devkit.airflow_testing import AirflowServer
from identity_devkit.testing import (
    AssertionMinter,
    CallerIdentity,
    DirectCaller,
    DispatcherProcess,
    GatewayCaller,
    TokenIssuer,
    free_port,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TOOLS = REPO / "tools"
DAGS = REPO / "airflow" / "dags"
GATEWAY_REQUIRED = os.environ.get("IDENTITY_GATEWAY_REQUIRED") == "1"
IDP = "https://idp.test/realms/main"
AUDIENCE = "airflow-dispatcher"
GATEWAY_ED_KID = "gateway-ed-1"


def person(sub: str, *roles: str, tenant: str | None = "acme") -> CallerIdentity:
    return CallerIdentity(sub=sub, idp=IDP, provider="test", roles=tuple(roles), tenant=tenant)


ALICE = person("alice", "dag-runner")
BOB = person("bob", "dag-runner")
MALLORY = person("mallory")
BLOCKED = person("blocky", "dag-runner", tenant="blocked")


def envoy_runner() -> Any:
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    import envoy_runner

    return envoy_runner


def gateway_unavailable() -> str | None:
    runner = envoy_runner()
    wasm = Path(os.environ.get("IDENTITY_WASM", runner.DEFAULT_WASM))
    if not wasm.exists():
        return f"no filter module at {wasm}: run `make wasm`"
    try:
        runner.find_envoy()
    except runner.EnvoyError as error:
        return str(error)
    return None


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="airflow-chain-"))
    yield path
    if os.environ.get("IDENTITY_CHAIN_KEEP") != "1":
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def airflow(workdir: Path) -> Iterator[AirflowServer]:
    server = AirflowServer(workdir, DAGS)
    try:
        server.wait_for_dags(["hello", "report"])
        print(f"\nAirflow started in {server.startup_seconds:.1f} s", file=sys.stderr)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def minter() -> AssertionMinter:
    return AssertionMinter(audience=AUDIENCE)


@pytest.fixture(scope="module")
def token_issuer() -> TokenIssuer:
    return TokenIssuer(audience="airflow-gateway")


@pytest.fixture(scope="module")
def dispatcher_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def gateway(workdir: Path, token_issuer: TokenIssuer, minter: AssertionMinter,
            dispatcher_port: int) -> Iterator[Any]:
    """Envoy + filter in front of the dispatcher (started first: the dispatcher fetches the
    filter's JWKS through it). None when it cannot run here."""
    why = gateway_unavailable()
    if why is not None:
        if GATEWAY_REQUIRED:
            pytest.fail(f"the gateway tests cannot run: {why}", pytrace=False)
        yield None
        return
    runner = envoy_runner()
    providers = [gw.provider("test", IDP, jwks=token_issuer.jwks(), audiences=[token_issuer.audience],
                             algorithms=["EdDSA"])]
    config = gw.filter_config(providers, [gw.eddsa_key(GATEWAY_ED_KID, Ed25519PrivateKey.generate())],
                              audience=AUDIENCE, issuer=minter.issuer, strip=(),
                              rules=gw.airflow_rules())
    envoy = runner.Envoy(Path(os.environ.get("IDENTITY_WASM", runner.DEFAULT_WASM)), config,
                         upstream_port=dispatcher_port, name="gateway-airflow",
                         workdir=workdir / "envoy").start()
    try:
        yield envoy
    finally:
        envoy.stop()


@pytest.fixture(scope="module")
def dispatcher(workdir: Path, airflow: AirflowServer, minter: AssertionMinter, gateway: Any,
               dispatcher_port: int) -> Iterator[DispatcherProcess]:
    env = {**minter.dispatcher_env(workdir), **airflow.dispatcher_env()}
    if gateway is not None:
        env["DISPATCHER_JWKS_URL"] = gateway.base_url + gw.JWKS_PATH
    process = DispatcherProcess(workdir, "", HERE / "policy.yaml", env, port=dispatcher_port,
                                name="dispatcher-airflow")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def direct(dispatcher: DispatcherProcess, minter: AssertionMinter) -> Iterator[DirectCaller]:
    caller = DirectCaller(dispatcher.url, minter)
    yield caller
    caller.close()


@pytest.fixture
def through_gateway(dispatcher: DispatcherProcess, gateway: Any,
                    token_issuer: TokenIssuer) -> Iterator[GatewayCaller]:
    if gateway is None:
        pytest.skip(f"no gateway: {gateway_unavailable()}")
    caller = GatewayCaller({"EdDSA": gateway.base_url}, token_issuer)
    yield caller
    caller.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """A failed test reports the tails of the dispatcher and Airflow logs."""
    outcome = yield
    report = outcome.get_result()
    if not (report.failed and report.when in ("setup", "call")):
        return
    args = getattr(item, "funcargs", {})
    dispatcher = args.get("dispatcher")
    if isinstance(dispatcher, DispatcherProcess):
        report.sections.append((f"dispatcher log ({dispatcher.log_path})", dispatcher.process.log_tail(20)))
    airflow = args.get("airflow")
    if isinstance(airflow, AirflowServer):
        report.sections.append(("airflow logs", airflow.log_tails(10)))

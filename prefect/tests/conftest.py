"""Test setup: the real-chain fixtures from identity_devkit.pytest_plugin with the test
policy, and the real gateway in front of the dispatcher. The callers are in people.py.

The gateway: two Envoys (``tools/envoy_runner.py``) running the identity filter's release module
(``target/wasm32-wasip1/release/identity_filter.wasm``, or ``$IDENTITY_WASM``), configured by
:func:`identity_devkit.gateway.filter_config` with a test identity provider (keys generated
here, inline JWKS). One signs the assertion with HS256 (the dispatcher gets the secret), the
other with EdDSA (the dispatcher fetches the filter's JWKS through that gateway:
``DISPATCHER_JWKS_URL``). Both forward to a recording proxy in front of the dispatcher, so tests
see exactly what reaches the dispatcher.

The ``caller`` fixture runs each test that uses it twice: ``direct`` (assertions minted by the
test) and ``envoy`` (tokens sent through the gateway). Without the module or Envoy the ``envoy``
runs are skipped, unless ``IDENTITY_GATEWAY_REQUIRED=1`` (``make test`` sets it): then they fail.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity_devkit import gateway as gw
from identity_devkit.testing import (
    AssertionMinter,
    DirectCaller,
    DispatcherProcess,
    GatewayCaller,
    TokenIssuer,
    free_port,
)
from local_http import RecordingProxy
from people import DOWN_IDP, IDP

pytest_plugins = ["identity_devkit.pytest_plugin"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TOOLS = REPO / "tools"
GATEWAY_REQUIRED = os.environ.get("IDENTITY_GATEWAY_REQUIRED") == "1"

#: The gateway's own EdDSA assertion key id (published at gw.JWKS_PATH).
GATEWAY_ED_KID = "gateway-ed-1"
#: Roles the gateway lets start a run (the dispatcher's policy then decides which deployment).
RUN_ROLES = ("flow-runner", "flow-admin", "echoer")


@pytest.fixture(scope="session")
def dispatcher_policy_file() -> Path:
    return HERE / "policy.yaml"


def envoy_runner() -> Any:
    """The repository's tools/envoy_runner.py (standard library only)."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    import envoy_runner

    return envoy_runner


def gateway_unavailable() -> str | None:
    """Why the real gateway cannot run here, or None."""
    if not (TOOLS / "envoy_runner.py").exists():
        return f"no {TOOLS / 'envoy_runner.py'}"
    runner = envoy_runner()
    wasm = Path(os.environ.get("IDENTITY_WASM", runner.DEFAULT_WASM))
    if not wasm.exists():
        return f"no filter module at {wasm}: run `make wasm`"
    try:
        runner.find_envoy()
    except runner.EnvoyError as error:
        return str(error)
    return None


@dataclass
class Gateways:
    """The running gateways: ``envoys`` and ``urls`` by assertion algorithm."""

    envoys: dict[str, Any]
    issuer: TokenIssuer
    recorder: RecordingProxy
    config: dict[str, dict[str, Any]]

    @property
    def urls(self) -> dict[str, str]:
        return {alg: envoy.base_url for alg, envoy in self.envoys.items()}

    @property
    def jwks_url(self) -> str:
        return self.envoys["EdDSA"].base_url + gw.JWKS_PATH


@pytest.fixture(scope="session")
def token_issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture(scope="session")
def upstream_recorder(dispatcher_port: int) -> Iterator[RecordingProxy]:
    """Between the gateways and the dispatcher: records every request that reaches it."""
    with RecordingProxy(f"http://127.0.0.1:{dispatcher_port}") as proxy:
        yield proxy


@pytest.fixture(scope="session")
def gateways(request: pytest.FixtureRequest, chain_workdir: Path, token_issuer: TokenIssuer,
             assertion_minter: AssertionMinter,
             upstream_recorder: RecordingProxy) -> Iterator[Gateways | None]:
    """Started before the dispatcher (whose port is chosen in advance), since the dispatcher
    fetches the EdDSA gateway's JWKS through it. None when the gateway cannot run here."""
    why = gateway_unavailable()
    if why is not None:
        if GATEWAY_REQUIRED:
            pytest.fail(f"the gateway tests cannot run: {why}", pytrace=False)
        yield None
        return
    runner = envoy_runner()
    wasm = Path(os.environ.get("IDENTITY_WASM", runner.DEFAULT_WASM))
    down_port = free_port()  # nothing listens there: the "down" issuer's JWKS cannot be fetched
    providers = [
        gw.provider("test", IDP, jwks=token_issuer.jwks(), audiences=[token_issuer.audience],
                    algorithms=["EdDSA"]),
        gw.provider("down", DOWN_IDP, audiences=[token_issuer.audience], algorithms=["EdDSA"],
                    jwks_uri="http://idp-down.test/jwks", upstream="idp-down",
                    fetch_timeout_ms=1000, cold_start_wait_ms=0),
    ]
    keys = {
        "HS256": [gw.hs256_key(assertion_minter.hs256_kid, assertion_minter.hs256_secret)],
        "EdDSA": [gw.eddsa_key(GATEWAY_ED_KID, Ed25519PrivateKey.generate())],
    }
    configs = {alg: gw.filter_config(providers, k, audience=assertion_minter.audience,
                                     issuer=assertion_minter.issuer, run_roles=RUN_ROLES)
               for alg, k in keys.items()}
    envoys: dict[str, Any] = {}
    try:
        for alg, config in configs.items():
            envoys[alg] = runner.Envoy(
                wasm, config, upstream_port=int(upstream_recorder.url.rsplit(":", 1)[1]),
                extra_clusters=[{"name": "idp-down", "port": down_port}],
                name=f"gateway-{alg.lower()}", workdir=chain_workdir / f"envoy-{alg.lower()}",
            ).start()
        yield Gateways(envoys, token_issuer, upstream_recorder, configs)
    finally:
        for envoy in envoys.values():
            envoy.stop()


@pytest.fixture(scope="session")
def dispatcher_env(chain_workdir: Path, assertion_minter: AssertionMinter,
                   gateways: Gateways | None) -> dict[str, str]:
    """Trusts the minter's keys (direct tests), which include the HS256 gateway's secret, and
    the EdDSA gateway's keys fetched through that gateway."""
    env = assertion_minter.dispatcher_env(chain_workdir)
    if gateways is not None:
        env["DISPATCHER_JWKS_URL"] = gateways.jwks_url
    return env


@pytest.fixture(params=["direct", "envoy"])
def caller(request: pytest.FixtureRequest, dispatcher: DispatcherProcess,
           assertion_minter: AssertionMinter, gateways: Gateways | None,
           token_issuer: TokenIssuer) -> Iterator[DirectCaller | GatewayCaller]:
    client: DirectCaller | GatewayCaller
    if request.param == "direct":
        client = DirectCaller(dispatcher.url, assertion_minter)
    else:
        if gateways is None:
            pytest.skip(f"no gateway: {gateway_unavailable()}")
        client = GatewayCaller(gateways.urls, token_issuer)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def gateway(gateways: Gateways | None) -> Gateways:
    """The gateways, for tests that need them (skipped, or failed when required, without)."""
    if gateways is None:
        pytest.skip(f"no gateway: {gateway_unavailable()}")
    return gateways


def oidc_module() -> Any:
    """The repository's tools/oidc_provider.py: a real OpenID provider (oidc-provider on Node)."""
    envoy_runner()  # puts tools/ on sys.path
    import oidc_provider

    return oidc_provider


@pytest.fixture(scope="module")
def oidc_providers(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Start real OpenID providers for a test module: ``oidc_providers(clients=[...],
    resources={...})`` takes ``OidcProvider``'s arguments; all are stopped after the module.
    Fails when ``make oidc-provider`` has not installed it."""
    oidc = oidc_module()
    if not oidc.installed():
        pytest.fail(f"oidc-provider is not installed: {oidc.INSTALL_HINT}", pytrace=False)
    started: list[Any] = []

    def start(**kwargs: Any) -> Any:
        provider = oidc.OidcProvider(**kwargs)
        started.append(provider)
        return provider.start()

    start.started = started  # type: ignore[attr-defined]
    yield start
    for provider in started:
        provider.stop()
    if request.session.testsfailed == 0:
        for provider in started:
            provider.remove_workdir()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """A failed gateway test reports the tails of the Envoy and dispatcher logs."""
    outcome = yield
    report = outcome.get_result()
    if not (report.failed and report.when in ("setup", "call")):
        return
    args = getattr(item, "funcargs", {})  # every fixture of the test, the ones it uses indirectly too
    through_gateway = "gateway" in args or getattr(args.get("caller"), "name", None) == "envoy"
    gateways = args.get("gateways")
    if through_gateway and gateways is not None:
        for alg, envoy in gateways.envoys.items():
            report.sections.append((f"envoy log: gateway {alg} ({envoy.log_path})", envoy.log_tail(20)))
    for provider in getattr(args.get("oidc_providers"), "started", []):
        report.sections.append((f"oidc-provider log ({provider.log_path})", provider.log_tail(15)))
    dispatcher = args.get("dispatcher")
    if isinstance(dispatcher, DispatcherProcess):
        report.sections.append((f"dispatcher log ({dispatcher.log_path})", dispatcher.process.log_tail(20)))

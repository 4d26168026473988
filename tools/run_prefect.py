#!/usr/bin/env python3
"""`make run-prefect`: the whole chain on 127.0.0.1 with the local development issuer — Envoy with
the identity filter, the Prefect dispatcher behind it (prefect/), a Prefect server on SQLite and
the example flows served — plus the other direction: an OpenID provider (oidc-provider,
tools/oidc_provider.py) that gives the example flow ``report/report`` its own short-lived
client-credentials identity, and a protected API (an echo server) behind the same gateway at
``/api/reports``, which the flow calls. Prints a ready curl that starts a run through the
gateway and how to read it back; Ctrl-C stops everything.

    .venv/bin/python tools/run_prefect.py [--port 10000] [--admin-port 9901] [--dispatcher-port 8081]
        [--prefect-port 0] [--check]

The filter's configuration is identity_devkit.gateway.filter_config (rules ``runs-start``:
POST /runs/{flow}/{deployment} with role flow-runner or flow-admin; ``runs-read``: GET
/runs/{flow_run_id}) with the dev issuer (roles from ``realm_access.roles``) as provider, and a
fresh Ed25519 assertion key whose JWKS the dispatcher fetches through the gateway. The
dispatcher's policy is devkit/src/identity_devkit/examples/policy.yaml. The flow's identity:
client ``report-flow`` (client_secret_basic; its secret in the Prefect Secret block
``report-flow-secret``, referenced by the GatewayCredentials block ``report-gateway``), scope
``reports:read``, tokens of 60 s; the gateway's rule ``reports-api`` requires that scope. Logs, the Prefect
home and the generated configuration go to .work/prefect-dev/ (emptied at each start).
``--check`` starts everything, runs a flow through the gateway and checks the refusals, stops,
and exits non-zero if anything misbehaved. Needs the Python packages of `make venv`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import devrun  # noqa: E402
from devissuer import DevIssuer  # noqa: E402
from echo_upstream import EchoServer, start_echo_upstream  # noqa: E402
from envoy_runner import Envoy, EnvoyError, static_cluster  # noqa: E402
from oidc_provider import INSTALL_HINT, Client, OidcProvider, OidcProviderError, installed  # noqa: E402

try:
    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from identity_devkit import gateway as gw
    from identity_devkit.testing import (
        EXAMPLE_POLICY,
        FINAL_STATES,
        DispatcherProcess,
        PrefectServer,
        ServedFlows,
        free_port,
        prefect_env,
    )
except ImportError as missing:  # pragma: no cover - depends on the interpreter
    sys.exit(f"{missing}: run this with the project venv (`make run-prefect`, or `make venv` first)")

RUN_PATH = "/runs/hello/hello"
REPORT_RUN_PATH = "/runs/report/report"
RUNNER_ROLES = {"realm_access": {"roles": ["flow-runner"]}}
#: The protected API behind the gateway, and the flow's identity for it.
API_PREFIX = "/api/reports"
API_RESOURCE = "api://reports"
FLOW_CLIENT = "report-flow"
FLOW_SCOPE = "reports:read"
FLOW_TOKEN_SECONDS = 60
CREDENTIALS_BLOCK = "report-gateway"
SECRET_BLOCK = "report-flow-secret"


def gateway_config(issuer: DevIssuer, assertion_key: Ed25519PrivateKey, flows_issuer: str) -> dict[str, Any]:
    """The dispatcher's rules for developers' tokens (provider ``dev``), and rule
    ``reports-api`` for the API the flows call with their own tokens (provider ``flows``: the
    OpenID provider, keys by discovery through the cluster ``idp-flows``)."""
    info = issuer.info()
    provider = gw.provider("dev", info["issuer"], jwks=issuer.jwks(), audiences=[info["audience"]],
                           algorithms=["RS256"], roles=["realm_access.roles"], require_claims=["sub"])
    flows = gw.provider("flows", flows_issuer, audiences=[API_RESOURCE], algorithms=["RS256"],
                        discovery=True, upstream="idp-flows")
    api_rule = {"name": "reports-api", "match": {"path_prefix": API_PREFIX, "methods": ["GET"]},
                "require": {"issuers": [flows_issuer], "scopes": {"all_of": [FLOW_SCOPE]}}}
    return gw.filter_config([provider, flows], [gw.eddsa_key("dev-gateway-1", assertion_key)],
                            extra_rules=[api_rule],
                            claim_headers=[{"identity": "subject", "header": "x-identity-subject"},
                                           {"identity": "provider", "header": "x-identity-provider"}])


def route_prefix(envoy: Envoy, prefix: str, cluster: str, port: int) -> None:
    """Send ``prefix`` to another cluster (before the default route to the dispatcher)."""
    resources = envoy.bootstrap["static_resources"]
    hcm = resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    routes.insert(0, {"match": {"prefix": prefix}, "route": {"cluster": cluster, "timeout": "15s"}})
    resources["clusters"].append(static_cluster(cluster, port))


SAVE_BLOCKS = """
import json, sys
from prefect.blocks.system import Secret
from identity_dispatcher.prefect_gateway import GatewayCredentials
spec = json.loads(sys.stdin.read())
GatewayCredentials.register_type_and_schema()
Secret(value=spec.pop("secret")).save(spec.pop("secret_block"), overwrite=True)
name = spec.pop("block")
GatewayCredentials(client_secret=Secret.load(spec.pop("secret_ref")), **spec).save(name, overwrite=True)
"""


def save_flow_credentials(server: Any, gateway_url: str, idp: OidcProvider, client: Client) -> None:
    """The Secret block with the client secret, and the GatewayCredentials block referencing it
    (a separate process, with the Prefect settings of the served flows)."""
    spec = {"secret": client.secret, "secret_block": SECRET_BLOCK, "secret_ref": SECRET_BLOCK,
            "block": CREDENTIALS_BLOCK, "gateway_url": gateway_url, "issuer": idp.issuer,
            "client_id": client.client_id, "scopes": [FLOW_SCOPE], "resource": API_RESOURCE}
    done = subprocess.run([sys.executable, "-c", SAVE_BLOCKS], input=json.dumps(spec), text=True,
                          capture_output=True, env=prefect_env(server.home, server.api_url), timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"saving the GatewayCredentials block failed:\n{done.stderr[-2000:]}")


#: Flow runs started at RUN_PATH, read at /runs/{id}.
PREFECT = devrun.Backend(
    run_path=RUN_PATH, body=lambda name: {"name": name}, run_id="flow_run_id",
    read_path=lambda run_id: f"/runs/{run_id}", state=lambda run: run["state"]["type"],
    final=frozenset(FINAL_STATES), success="COMPLETED", start_rule="runs-start", role="flow-runner",
    poll=0.5)


def report_check(gateway_url: str, issuer: DevIssuer, api: EchoServer, envoy: Envoy,
                 timeout: float = 90.0) -> list[str]:
    """The report flow, started through the gateway by the developer's token, calls the API back
    through the gateway with its own token: both identities and the run id, as the API saw them."""
    runner = {"authorization": f"Bearer {issuer.token(RUNNER_ROLES, ttl=600)}"}
    with httpx.Client(timeout=30.0) as http:
        started = http.post(gateway_url + REPORT_RUN_PATH, json={}, headers=runner)
        if started.status_code != 201:
            return [f"starting the report run: {started.status_code} "
                    f"{started.headers.get('x-identity-reason')} {started.text[:300]}"]
        run_id = started.json()["flow_run_id"]
        state = PREFECT.wait_final(http, gateway_url, run_id, runner, timeout)
    if "error" in state:
        return [state["error"]]
    if state.get("state", {}).get("type") != "COMPLETED":
        return [f"report run {run_id} ended {state.get('state')}"]
    calls = [r for r in list(api.received) if r["headers"].get("x-prefect-flow-run-id") == run_id]
    if not calls:
        return [f"the API saw no call of run {run_id}"]
    seen = calls[-1]["headers"]
    print(f"  ok: run {run_id} (report/report) started by {state['requested_by']['sub']} "
          f"(developer token, provider dev)")
    print(f"  ok: the API at {API_PREFIX} saw {calls[-1]['method']} {calls[-1]['path']} "
          f"from {seen.get('x-identity-subject')} (the flow's own token, provider "
          f"{seen.get('x-identity-provider')}), x-prefect-flow-run-id={seen.get('x-prefect-flow-run-id')}, "
          f"x-request-id={seen.get('x-request-id')}")
    deadline = time.monotonic() + 15  # Envoy writes its access log in the background
    logged: list[str] = []
    while not logged and time.monotonic() < deadline:
        logged = [line for line in envoy.log_text().splitlines() if f"flow_run={run_id}" in line]
        time.sleep(0.2)
    for line in logged:
        print(f"  ok: the gateway's log, searched for the run id: {line[line.index('ACCESS '):]}")
    problems = [] if logged else [f"no line of the gateway's log names run {run_id}"]
    if seen.get("x-identity-subject") != FLOW_CLIENT or seen.get("x-identity-provider") != "flows":
        problems.append(f"the API saw {seen.get('x-identity-subject')!r} via {seen.get('x-identity-provider')!r}")
    if not str(seen.get("x-request-id", "")).startswith(run_id + "."):
        problems.append(f"request id {seen.get('x-request-id')!r} does not name run {run_id}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = devrun.parser(__doc__, workdir='prefect-dev', workdir_help='logs, Prefect home, configuration (emptied first; default .work/prefect-dev)')
    parser.add_argument("--dispatcher-port", type=int, default=8081, help="dispatcher port (0: any free)")
    parser.add_argument("--prefect-port", type=int, default=0, help="Prefect server port (0: any free)")
    parser.add_argument("--policy", default=str(EXAMPLE_POLICY), help="the dispatcher's policy")
    args = parser.parse_args(argv)

    started = devrun.fresh_workdir(args)
    if started is None:
        return 2
    issuer, workdir, _lock = started
    if not installed():
        print(f"the OpenID provider for the flows is not installed: {INSTALL_HINT}", file=sys.stderr)
        return 2
    flow_client = Client.basic(FLOW_CLIENT, scope=FLOW_SCOPE)
    idp = OidcProvider(clients=[flow_client], name="prefect-dev", workdir=workdir / "oidc-provider",
                       resources={API_RESOURCE: {"scope": FLOW_SCOPE, "access_token_ttl": FLOW_TOKEN_SECONDS}})
    api: EchoServer | None = None
    dispatcher_port = args.dispatcher_port or free_port()

    # Ctrl-C and SIGTERM both end the wait below; cleanup is in the finally block.
    devrun.stop_on_sigterm()
    parts: list[Any] = []
    envoy: Envoy | None = None
    try:
        print("starting the flows' OpenID provider and the protected API ...", flush=True)
        idp.start()
        api = start_echo_upstream()
        config = gateway_config(issuer, Ed25519PrivateKey.generate(), idp.issuer)
        (workdir / "envoy-config.json").write_text(json.dumps(config, indent=2) + "\n")
        envoy = Envoy(args.wasm, config, upstream_port=dispatcher_port, listener_port=args.port,
                      admin_port=args.admin_port, name="prefect-dev", workdir=workdir / "envoy",
                      extra_clusters=[{"name": "idp-flows", "port": idp.port}],
                      hcm_options={"access_log": gw.trace_access_log()},
                      # Envoy flushes its access log every 10 s by default; a developer (and the
                      # self-check) searching it for a run id should not wait that long.
                      extra_args=["--file-flush-interval-msec", "250"])
        route_prefix(envoy, API_PREFIX, "reports-api", api.port)
        print("starting the Prefect server (SQLite; 10-30 s) ...", flush=True)
        server = PrefectServer(workdir, port=args.prefect_port or None)
        parts.append(server)
        print("serving the example flows hello/hello, echo/echo and report/report ...", flush=True)
        parts.append(ServedFlows(workdir, server))
        print("starting Envoy with the identity filter ...", flush=True)
        envoy.start()
        jwks_url = envoy.base_url + gw.JWKS_PATH
        print("starting the dispatcher ...", flush=True)
        dispatcher = DispatcherProcess(workdir, server.api_url, Path(args.policy),
                                       {"DISPATCHER_JWKS_URL": jwks_url}, port=dispatcher_port)
        parts.append(dispatcher)
        save_flow_credentials(server, envoy.base_url, idp, flow_client)

        url = envoy.base_url
        token = issuer.token(RUNNER_ROLES)
        print(f"""
The Prefect chain is up:
  gateway:    {url}  (Envoy + identity filter; admin http://127.0.0.1:{envoy.admin_port})
  dispatcher: {dispatcher.url}  (trusts only the filter's assertion; keys from {jwks_url})
  Prefect:    {server.api_url}  (SQLite; flows hello/hello, echo/echo and report/report served)
  logs:       {workdir}  (envoy/envoy.log, dispatcher.log: one JSON line per decision)
  policy:     {args.policy}

Start a run through the gateway (dev token: sub "dev-user", role flow-runner, valid 1 h):

  TOKEN='{token}'
  curl -sS -X POST {url}{RUN_PATH} -H "Authorization: Bearer $TOKEN" \\
       -H 'content-type: application/json' -d '{{"name": "Ada"}}'

Read it back with the flow_run_id of the answer (its creator, and with `read: tenant` its tenant, may):

  curl -sS {url}/runs/FLOW_RUN_ID -H "Authorization: Bearer $TOKEN"

Refused: without a token (401 token_missing); with a token lacking the role, 403 forbidden; rule=runs-start:

  curl -si -X POST {url}{RUN_PATH} -H "Authorization: Bearer $(make -s token)"

Other callers: make token CLAIMS='{{"sub":"bob","realm_access":{{"roles":["flow-runner"]}}}}'

The flow report/report calls {url}{API_PREFIX}/today with its own identity (client {FLOW_CLIENT}
of the OpenID provider {idp.issuer}, tokens of {FLOW_TOKEN_SECONDS} s, GatewayCredentials block
"{CREDENTIALS_BLOCK}"):

  curl -sS -X POST {url}{REPORT_RUN_PATH} -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{{}}'
""", flush=True)
        print("self-check:", flush=True)
        problems = PREFECT.self_check(url, dispatcher.url, issuer, RUNNER_ROLES, timeout=60.0, describe=lambda run: (
            f"tags {run['tags']}, requested_by {json.dumps(run['requested_by'])}"))
        problems += report_check(url, issuer, api, envoy)
        return devrun.serve(problems, args.check, lambda: [p.process.name for p in parts if not p.process.running]
                            + ([] if envoy.running else ["envoy"]) + ([] if idp.running else ["oidc-provider"]),
                            workdir)
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    except (EnvoyError, OidcProviderError, RuntimeError, TimeoutError) as error:
        print(f"could not start the chain: {error}", file=sys.stderr)
        return 1
    finally:
        devrun.stop_all([idp, api, *parts, envoy])


if __name__ == "__main__":
    sys.exit(main())

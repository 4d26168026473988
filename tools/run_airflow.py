#!/usr/bin/env python3
"""`make run-airflow`: the Airflow chain on 127.0.0.1 with the local development issuer — Envoy
with the identity filter, the dispatcher with its Airflow backend behind it, and Airflow 3 on
SQLite (api-server, scheduler, dag-processor) with the DAGs of airflow/dags. Prints a ready curl
that starts a DAG run through the gateway and how to read it back; Ctrl-C stops everything.

    .venv-airflow/bin/python tools/run_airflow.py [--port 10000] [--admin-port 9901]
        [--dispatcher-port 8082] [--airflow-port 0] [--check]

The filter's configuration is identity_devkit.gateway.filter_config with airflow_rules()
(``dag-runs-start``: POST /dags/{dag_id}/runs with role dag-runner or dag-admin;
``dag-runs-read``: GET /dags/{dag_id}/runs/{dag_run_id}), the dev issuer (roles from
``realm_access.roles``) as provider, and a fresh Ed25519 assertion key whose JWKS the dispatcher
fetches through the gateway. The dispatcher's policy is airflow/policy.yaml. Logs, the Airflow
home and the generated configuration go to .work/airflow-dev/ (emptied at each start).
``--check`` starts everything, runs the hello DAG through the gateway and checks the refusals,
stops, and exits non-zero if anything misbehaved. Needs the venv of `make airflow-venv`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import devrun  # noqa: E402
from devissuer import DevIssuer  # noqa: E402
from envoy_runner import REPO, Envoy, EnvoyError  # noqa: E402

try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from identity_devkit import gateway as gw
    from identity_devkit.airflow_testing import FINAL_DAG_RUN_STATES, AirflowServer
    from identity_devkit.testing import DispatcherProcess, free_port
except ImportError as missing:  # pragma: no cover - depends on the interpreter
    sys.exit(f"{missing}: run this with the Airflow venv (`make run-airflow`, or `make airflow-venv` first)")

RUN_PATH = "/dags/hello/runs"
RUNNER_ROLES = {"realm_access": {"roles": ["dag-runner"]}}
DAGS = REPO / "airflow" / "dags"
POLICY = REPO / "airflow" / "policy.yaml"
#: DAG runs started at RUN_PATH, read at RUN_PATH/{id}.
AIRFLOW = devrun.Backend(
    run_path=RUN_PATH, body=lambda name: {"conf": {"name": name}}, run_id="dag_run_id",
    read_path=lambda run_id: f"{RUN_PATH}/{run_id}", state=lambda run: run["state"],
    final=frozenset(FINAL_DAG_RUN_STATES), success="success", start_rule="dag-runs-start",
    role="dag-runner", poll=1.0)


def gateway_config(issuer: DevIssuer, assertion_key: Ed25519PrivateKey) -> dict[str, Any]:
    info = issuer.info()
    provider = gw.provider("dev", info["issuer"], jwks=issuer.jwks(), audiences=[info["audience"]],
                           algorithms=["RS256"], roles=["realm_access.roles"], require_claims=["sub"])
    return gw.filter_config([provider], [gw.eddsa_key("dev-gateway-1", assertion_key)],
                            audience="airflow-dispatcher", strip=(), rules=gw.airflow_rules())


def main(argv: list[str] | None = None) -> int:
    parser = devrun.parser(__doc__, workdir="airflow-dev",
                           workdir_help="logs, Airflow home, configuration (emptied first; default .work/airflow-dev)")
    parser.add_argument("--dispatcher-port", type=int, default=8082, help="dispatcher port (0: any free)")
    parser.add_argument("--airflow-port", type=int, default=0, help="Airflow API server port (0: any free)")
    parser.add_argument("--policy", default=str(POLICY), help="the dispatcher's policy")
    args = parser.parse_args(argv)

    started = devrun.fresh_workdir(args)
    if started is None:
        return 2
    issuer, workdir, _lock = started
    config = gateway_config(issuer, Ed25519PrivateKey.generate())
    (workdir / "envoy-config.json").write_text(json.dumps(config, indent=2) + "\n")
    dispatcher_port = args.dispatcher_port or free_port()

    devrun.stop_on_sigterm()
    parts: list[Any] = []
    envoy = Envoy(args.wasm, config, upstream_port=dispatcher_port, listener_port=args.port,
                  admin_port=args.admin_port, name="airflow-dev", workdir=workdir / "envoy")
    try:
        print("starting Airflow (SQLite: db migrate, api-server, scheduler, dag-processor; 30-60 s) ...",
              flush=True)
        airflow = AirflowServer(workdir, DAGS, port=args.airflow_port or None)
        parts.append(airflow)
        airflow.wait_for_dags(["hello", "report"])
        print("starting Envoy with the identity filter ...", flush=True)
        envoy.start()
        jwks_url = envoy.base_url + gw.JWKS_PATH
        print("starting the dispatcher (Airflow backend) ...", flush=True)
        dispatcher = DispatcherProcess(workdir, "", Path(args.policy),
                                       {**airflow.dispatcher_env(), "DISPATCHER_JWKS_URL": jwks_url},
                                       port=dispatcher_port)
        parts.append(dispatcher)

        url = envoy.base_url
        token = issuer.token(RUNNER_ROLES)
        print(f"""
The Airflow chain is up:
  gateway:    {url}  (Envoy + identity filter; admin http://127.0.0.1:{envoy.admin_port})
  dispatcher: {dispatcher.url}  (trusts only the filter's assertion; keys from {jwks_url})
  Airflow:    {airflow.url}  (SQLite; DAGs hello and report; the dispatcher's account {airflow.user!r})
  logs:       {workdir}  (envoy/envoy.log, dispatcher.log: one JSON line per decision, airflow-*.log)
  policy:     {args.policy}

Start a DAG run through the gateway (dev token: sub "dev-user", role dag-runner, valid 1 h):

  TOKEN='{token}'
  curl -sS -X POST {url}{RUN_PATH} -H "Authorization: Bearer $TOKEN" \\
       -H 'content-type: application/json' -d '{{"conf": {{"name": "Ada"}}}}'

Read it back with the dag_run_id of the answer (only its creator may):

  curl -sS {url}{RUN_PATH}/DAG_RUN_ID -H "Authorization: Bearer $TOKEN"

Refused: a conf key the policy does not list (403 parameter_forbidden; rule=hello-runners):

  curl -si -X POST {url}{RUN_PATH} -H "Authorization: Bearer $TOKEN" -d '{{"conf": {{"debug": true}}}}'

and a token lacking the role (403 forbidden; rule=dag-runs-start):

  curl -si -X POST {url}{RUN_PATH} -H "Authorization: Bearer $(make -s token)"
""", flush=True)
        print("self-check:", flush=True)
        problems = AIRFLOW.self_check(url, dispatcher.url, issuer, RUNNER_ROLES, timeout=180.0, describe=lambda run: (
            f"requested_by {json.dumps(run['requested_by'])}, note {run['note']!r}"))
        processes = [p for p in airflow.processes] + [dispatcher.process]
        return devrun.serve(problems, args.check, lambda: [p.name for p in processes if not p.running]
                            + ([] if envoy.running else ["envoy"]), workdir)
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    except (EnvoyError, RuntimeError, TimeoutError) as error:
        print(f"could not start the chain: {error}", file=sys.stderr)
        return 1
    finally:
        devrun.stop_all([*parts, envoy])


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""`make run-prefect`: the whole chain on 127.0.0.1 with the local development issuer — Envoy with
the identity filter, the Prefect dispatcher behind it (prefect/), a Prefect server on SQLite and
the example flows served. Prints a ready curl that starts a run through the gateway and how to
read it back; Ctrl-C stops everything.

    .venv/bin/python tools/run_prefect.py [--port 10000] [--admin-port 9901] [--dispatcher-port 8081]
        [--prefect-port 0] [--check]

The filter's configuration is identity_dispatcher.gateway.filter_config (rules ``runs-start``:
POST /runs/{flow}/{deployment} with role flow-runner or flow-admin; ``runs-read``: GET
/runs/{flow_run_id}) with the dev issuer (roles from ``realm_access.roles``) as provider, and a
fresh Ed25519 assertion key whose JWKS the dispatcher fetches through the gateway. The
dispatcher's policy is prefect/src/identity_dispatcher/examples/policy.yaml. Logs, the Prefect
home and the generated configuration go to .work/prefect-dev/ (emptied at each start).
``--check`` starts everything, runs a flow through the gateway and checks the refusals, stops,
and exits non-zero if anything misbehaved. Needs the Python packages of `make venv`.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import devrun  # noqa: E402
from devissuer import DevIssuer  # noqa: E402
from envoy_runner import Envoy, EnvoyError  # noqa: E402

try:
    import httpx
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from identity_dispatcher import gateway as gw
    from identity_dispatcher.testing import (
        EXAMPLE_POLICY,
        FINAL_STATES,
        DispatcherProcess,
        PrefectServer,
        ServedFlows,
        free_port,
    )
except ImportError as missing:  # pragma: no cover - depends on the interpreter
    sys.exit(f"{missing}: run this with the project venv (`make run-prefect`, or `make venv` first)")

RUN_PATH = "/runs/hello/hello"
RUNNER_ROLES = {"realm_access": {"roles": ["flow-runner"]}}


def gateway_config(issuer: DevIssuer, assertion_key: Ed25519PrivateKey) -> dict[str, Any]:
    info = issuer.info()
    provider = gw.provider("dev", info["issuer"], jwks=issuer.jwks(), audiences=[info["audience"]],
                           algorithms=["RS256"], roles=["realm_access.roles"], require_claims=["sub"])
    return gw.filter_config([provider], [gw.eddsa_key("dev-gateway-1", assertion_key)])


def self_check(gateway_url: str, dispatcher_url: str, issuer: DevIssuer, timeout: float = 60.0) -> list[str]:
    """Problems seen starting and reading a run through the gateway, and with three refusals."""
    problems: list[str] = []
    runner = {"authorization": f"Bearer {issuer.token(RUNNER_ROLES, ttl=600)}"}
    with httpx.Client(timeout=30.0) as http:
        started = http.post(gateway_url + RUN_PATH, json={"name": "self-check"}, headers=runner)
        if started.status_code != 201:
            problems.append(f"starting a run: {started.status_code} "
                            f"{started.headers.get('x-identity-reason')} {started.text[:300]}")
        else:
            run_id = started.json()["flow_run_id"]
            deadline = time.monotonic() + timeout
            state: dict[str, Any] = {}
            while time.monotonic() < deadline:
                read = http.get(f"{gateway_url}/runs/{run_id}", headers=runner)
                if read.status_code != 200:
                    problems.append(f"reading run {run_id}: {read.status_code} {read.text[:300]}")
                    break
                state = read.json()
                if state["state"]["type"] in FINAL_STATES:
                    break
                time.sleep(0.5)
            if not problems:
                if state.get("state", {}).get("type") != "COMPLETED":
                    problems.append(f"run {run_id} ended {state.get('state')}")
                else:
                    print(f"  ok: run {run_id} COMPLETED, tags {state['tags']}, "
                          f"requested_by {json.dumps(state['requested_by'])}")
        expected = [
            ("no token", gateway_url, {}, 401, "token_missing"),
            ("a token without the flow-runner role", gateway_url,
             {"authorization": f"Bearer {issuer.token(ttl=600)}"}, 403, "forbidden; rule=runs-start"),
            ("the token sent around the gateway", dispatcher_url, runner, 401, "assertion_missing"),
        ]
        for what, base, headers, status, reason in expected:
            answer = http.post(base + RUN_PATH, json={"name": "x"}, headers=headers)
            got = (answer.status_code, answer.headers.get("x-identity-reason"))
            if got != (status, reason):
                problems.append(f"with {what}: {got}, expected {(status, reason)}")
            else:
                print(f"  ok: with {what}: {status} {reason}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = devrun.parser(__doc__, workdir='prefect-dev', workdir_help='logs, Prefect home, configuration (emptied first; default .work/prefect-dev)')
    parser.add_argument("--dispatcher-port", type=int, default=8081, help="dispatcher port (0: any free)")
    parser.add_argument("--prefect-port", type=int, default=0, help="Prefect server port (0: any free)")
    parser.add_argument("--policy", default=str(EXAMPLE_POLICY), help="the dispatcher's policy")
    args = parser.parse_args(argv)

    issuer = devrun.dev_issuer(args)
    if issuer is None:
        return 2
    workdir = Path(args.workdir).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    config = gateway_config(issuer, Ed25519PrivateKey.generate())
    (workdir / "envoy-config.json").write_text(json.dumps(config, indent=2) + "\n")
    dispatcher_port = args.dispatcher_port or free_port()

    # Ctrl-C and SIGTERM both end the wait below; cleanup is in the finally block.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    parts: list[Any] = []
    envoy = Envoy(args.wasm, config, upstream_port=dispatcher_port, listener_port=args.port,
                  admin_port=args.admin_port, name="prefect-dev", workdir=workdir / "envoy")
    try:
        print("starting the Prefect server (SQLite; 10-30 s) ...", flush=True)
        server = PrefectServer(workdir, port=args.prefect_port or None)
        parts.append(server)
        print("serving the example flows hello/hello and echo/echo ...", flush=True)
        parts.append(ServedFlows(workdir, server))
        print("starting Envoy with the identity filter ...", flush=True)
        envoy.start()
        jwks_url = envoy.base_url + gw.JWKS_PATH
        print("starting the dispatcher ...", flush=True)
        dispatcher = DispatcherProcess(workdir, server.api_url, Path(args.policy),
                                       {"DISPATCHER_JWKS_URL": jwks_url}, port=dispatcher_port)
        parts.append(dispatcher)

        url = envoy.base_url
        token = issuer.token(RUNNER_ROLES)
        print(f"""
The Prefect chain is up:
  gateway:    {url}  (Envoy + identity filter; admin http://127.0.0.1:{envoy.admin_port})
  dispatcher: {dispatcher.url}  (trusts only the filter's assertion; keys from {jwks_url})
  Prefect:    {server.api_url}  (SQLite; flows hello/hello and echo/echo served)
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
""", flush=True)
        print("self-check:", flush=True)
        problems = self_check(url, dispatcher.url, issuer)
        for problem in problems:
            print(f"  PROBLEM {problem}", flush=True)
        if args.check:
            return 1 if problems else 0
        print("\nPress Ctrl-C to stop.", flush=True)
        while envoy.running and all(part.process.running() for part in parts):
            time.sleep(0.5)
        stopped = [p.process.name for p in parts if not p.process.running()] + ([] if envoy.running else ["envoy"])
        print(f"{', '.join(stopped)} exited; see the logs in {workdir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    except (EnvoyError, RuntimeError, TimeoutError) as error:
        print(f"could not start the chain: {error}", file=sys.stderr)
        return 1
    finally:
        # Ignore a second Ctrl-C / SIGTERM while stopping: every part must be stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        envoy.stop()
        for part in reversed(parts):
            part.stop()


if __name__ == "__main__":
    sys.exit(main())

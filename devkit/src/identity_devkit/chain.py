"""Bring up the Prefect side locally: a Prefect server on SQLite, the example flows served, and
the dispatcher; print how to start a run; stop everything on Ctrl-C (or SIGTERM).

    python -m identity_devkit.chain --dispatcher-port 8081 [--prefect-port 4200]
        [--policy FILE] [--dev-key] [--gateway-url http://127.0.0.1:10000]

Which assertion keys the dispatcher trusts:

- the filter's, when ``DISPATCHER_HS256_SECRET`` / ``DISPATCHER_HS256_SECRET_FILE`` /
  ``DISPATCHER_JWKS_FILE`` / ``DISPATCHER_JWKS_URL`` are set in the environment (e.g. the
  JWKS path the filter serves through the gateway) — this is the real chain;
- a development key written to the work directory, when none of those is set or with
  ``--dev-key`` (then a printed ``curl`` can reach the dispatcher directly, minting its own
  assertion with ``python -m identity_devkit.mint``).

Other ``DISPATCHER_*`` variables (audience, issuer, header names, path prefix) pass through.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import tempfile
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from .testing import (
    EXAMPLE_POLICY,
    AssertionMinter,
    DispatcherProcess,
    PrefectServer,
    ServedFlows,
)

KEY_VARIABLES = ("DISPATCHER_HS256_SECRET", "DISPATCHER_HS256_SECRET_FILE", "DISPATCHER_JWKS_FILE",
                 "DISPATCHER_JWKS_URL")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m identity_devkit.chain",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="logs and Prefect home (default: a new temporary directory)")
    parser.add_argument("--prefect-port", type=int, help="default: a free port")
    parser.add_argument("--dispatcher-port", type=int, default=8081)
    parser.add_argument("--policy", default=str(EXAMPLE_POLICY))
    parser.add_argument("--dev-key", action="store_true",
                        help="also trust a development key (direct curl without the gateway)")
    parser.add_argument("--gateway-url", help="print the curl for the gateway too")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="identity-chain-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    env = {k: v for k, v in os.environ.items() if k.startswith("DISPATCHER_")}
    filter_keys = any(env.get(k) for k in KEY_VARIABLES)
    dev_key = args.dev_key or not filter_keys
    key_file = workdir / "dev-assertion-key.pem"
    minter = AssertionMinter(ed25519_kid="dev-1")
    if dev_key:
        key_file.write_bytes(minter.ed25519_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        key_file.chmod(0o600)
        if env.get("DISPATCHER_JWKS_FILE"):
            print("--dev-key cannot be combined with DISPATCHER_JWKS_FILE", file=sys.stderr)
            return 2
        dev_jwks = workdir / "dev-assertion-jwks.json"
        dev_jwks.write_text(json.dumps(minter.public_jwks()))
        env["DISPATCHER_JWKS_FILE"] = str(dev_jwks)

    print(f"work directory (logs, Prefect home): {workdir}", flush=True)
    parts: list = []
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        print("starting Prefect server ...", flush=True)
        server = PrefectServer(workdir, port=args.prefect_port)
        parts.append(server)
        print(f"  PREFECT_API_URL={server.api_url}", flush=True)
        print("serving the example flows (hello/hello, echo/echo, report/report) ...", flush=True)
        parts.append(ServedFlows(workdir, server))
        print("starting the dispatcher ...", flush=True)
        dispatcher = DispatcherProcess(workdir, server.api_url, Path(args.policy), env,
                                       port=args.dispatcher_port)
        parts.append(dispatcher)
        print(f"  dispatcher: {dispatcher.url}  (decisions: {dispatcher.log_path})", flush=True)
        print(f"  policy: {args.policy}", flush=True)
        print("\nready. Start a run:", flush=True)
        if args.gateway_url:
            print(f"  through the gateway (TOKEN = a token of your identity provider):\n"
                  f"    curl -sS -X POST {args.gateway_url}/runs/hello/hello "
                  f"-H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' "
                  f"-d '{{\"name\": \"Ada\"}}'", flush=True)
        if dev_key:
            mint = (f"{shlex.quote(sys.executable)} -m identity_devkit.mint --key {shlex.quote(str(key_file))} "
                    "--sub alice --roles flow-runner --scopes runs:write --tenant acme "
                    "--method POST --path /runs/hello/hello")
            print(f"  directly, with a development assertion:\n"
                  f"    curl -sS -X POST {dispatcher.url}/runs/hello/hello "
                  f"-H \"x-identity-assertion: $({mint})\" -H 'content-type: application/json' "
                  f"-d '{{\"name\": \"Ada\"}}'", flush=True)
        print("  then: GET <same base>/runs/<flow_run_id> with an assertion for that path.\n"
              "Ctrl-C stops everything.", flush=True)
        while not stop.wait(1.0):
            for part in parts:
                if not part.process.running:
                    print(f"{part.process.name} exited:\n{part.process.log_tail()}", file=sys.stderr)
                    return 1
        return 0
    finally:
        for part in reversed(parts):
            part.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())

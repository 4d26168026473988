#!/usr/bin/env python3
"""`make run`: the identity filter in a real Envoy on 127.0.0.1, in front of an echo upstream,
with a local development issuer. Prints ready-to-paste curl commands; Ctrl-C stops everything.

    python3 tools/run_dev.py [--port 10000] [--admin-port 9901] [--check]

The plugin configuration is envoy/dev-config.json with the dev issuer's JWKS filled in (the
result is written to .dev/envoy-config.json). ``--check`` starts everything, sends one request
with and one without a token, reports, stops, and exits non-zero if the filter misbehaved.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import devrun  # noqa: E402
from devissuer import DevIssuer  # noqa: E402
from echo_upstream import start_echo_upstream  # noqa: E402
from envoy_runner import REPO, Envoy, EnvoyError  # noqa: E402

DEV_CONFIG = REPO / "envoy" / "dev-config.json"


def dev_config(issuer: DevIssuer) -> dict[str, Any]:
    """envoy/dev-config.json with the dev issuer's URL, audience and JWKS."""
    config = json.loads(DEV_CONFIG.read_text())
    provider = config["providers"][0]
    info = issuer.info()
    provider["issuer"] = info["issuer"]
    provider["audiences"] = [info["audience"]]
    provider["jwks"] = issuer.jwks()
    return config


def self_check(envoy: Envoy, token: str) -> list[str]:
    """Problems seen with one request with a token and one without; empty when all is well."""
    problems = []
    with_token = envoy.get("/api/hello", {"authorization": f"Bearer {token}"})
    seen = with_token.upstream or {}
    identity = {k: v for k, v in seen.get("headers", {}).items() if k.startswith("x-identity-")}
    if with_token.status != 200 or not identity:
        problems.append(f"with a token: status {with_token.status}, identity headers {identity or 'none'}"
                        f" (reason: {with_token.header('x-identity-reason')})")
    else:
        print("  upstream received: " + ", ".join(f"{k}: {v}" for k, v in sorted(identity.items())))
    without = envoy.get("/api/hello")
    if without.status != 401 or without.header("x-identity-reason") != "token_missing":
        problems.append(f"without a token: status {without.status}, reason "
                        f"{without.header('x-identity-reason')} (expected 401 token_missing)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = devrun.parser(__doc__, workdir='dev', workdir_help="where Envoy's bootstrap and log go (default .work/dev)")
    parser.add_argument("--upstream-port", type=int, default=0, help="echo upstream port (0: any free)")
    args = parser.parse_args(argv)

    issuer = devrun.dev_issuer(args)
    if issuer is None:
        return 2
    config = dev_config(issuer)
    (issuer.dir.parent / "envoy-config.json").write_text(json.dumps(config, indent=2) + "\n")

    # Ctrl-C and SIGTERM both end the wait below; cleanup is in the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    echo = start_echo_upstream(args.upstream_port)
    envoy = Envoy(args.wasm, config, upstream_port=echo.port, listener_port=args.port,
                  admin_port=args.admin_port, name="dev", workdir=args.workdir)
    try:
        try:
            envoy.start()
        except EnvoyError as e:
            print(f"Envoy did not start: {e}", file=sys.stderr)
            return 1
        token = issuer.token()
        url = envoy.base_url
        print(f"""
Envoy with the identity filter is listening on {url}
  admin:    http://127.0.0.1:{envoy.admin_port}/stats?filter=identity_filter
  log:      {envoy.log_path}
  upstream: echo server on 127.0.0.1:{echo.port} (answers with the headers it received)
  config:   {issuer.dir.parent / 'envoy-config.json'}

With a fresh development token (sub "dev-user", valid 1 h); the answer shows the x-identity-* headers:

  curl -s {url}/api/hello -H "Authorization: Bearer {token}"

Without a token (401, reason token_missing):

  curl -si {url}/api/hello

Other claims: make token CLAIMS='{{"sub":"bob"}}'   The dev JWKS: make jwks
""")
        print("self-check:")
        problems = self_check(envoy, token)
        for problem in problems:
            print(f"  PROBLEM {problem}")
        if not problems:
            print("  ok: identity headers injected with a token, 401 token_missing without one")
        if args.check:
            return 1 if problems else 0
        print("\nPress Ctrl-C to stop.", flush=True)
        while envoy.running:
            time.sleep(0.5)
        print(f"Envoy exited with status {envoy.proc.returncode if envoy.proc else '?'}; see {envoy.log_path}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        envoy.stop()
        echo.stop()


if __name__ == "__main__":
    sys.exit(main())

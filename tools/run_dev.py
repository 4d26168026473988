#!/usr/bin/env python3
"""`make run`: the identity filter in a real Envoy on 127.0.0.1, in front of an echo upstream,
with a local development issuer. Prints ready-to-paste curl commands; Ctrl-C stops everything.

    python3 tools/run_dev.py [--port 10000] [--admin-port 9901] [--config FILE] [--check]

The plugin configuration is envoy/dev-config.json with the dev issuer filled into its first
provider (issuer, audience, JWKS), or with ``--config FILE`` (``make run CONFIG=FILE``) the
user's own file, where only a provider whose issuer is the dev issuer and that names no keys gets
the dev JWKS. What was filled in is printed; the result is written to .dev/envoy-config.json.
``--check`` starts everything, sends one request with and one without a token, reports, stops,
and exits non-zero if the filter misbehaved.
"""

from __future__ import annotations

import base64
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


#: What a provider may name its keys with; one without any of them gets the dev JWKS.
KEY_SOURCES = ("jwks", "jwks_uri", "discovery")


class ConfigProblem(Exception):
    """The configuration file cannot be used; the message says where and why."""


def load_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except OSError as e:
        raise ConfigProblem(f"{path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ConfigProblem(f"{path}:{e.lineno}:{e.colno}: not JSON: {e.msg}") from None
    if not isinstance(config, dict) or not isinstance(config.get("providers"), list) \
            or not config["providers"] or not all(isinstance(p, dict) for p in config["providers"]):
        raise ConfigProblem(f"{path}: needs a non-empty \"providers\" list of objects "
                            "(docs/configuration.md)")
    return config


def dev_config(issuer: DevIssuer, own: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """The configuration to run and what was filled in: envoy/dev-config.json with the dev
    issuer's URL, audience and JWKS in its first provider; or the user's file ``own`` with the
    dev JWKS only in providers of the dev issuer that name no keys."""
    info = issuer.info()
    config = load_config(own or DEV_CONFIG)
    filled: list[str] = []
    if own is None:
        provider = config["providers"][0]
        provider["issuer"] = info["issuer"]
        provider["audiences"] = [info["audience"]]
        provider["jwks"] = issuer.jwks()
        filled.append(f"providers[0] ({provider.get('name')}): the dev issuer {info['issuer']}, "
                      f"audience {info['audience']} and its JWKS")
        return config, filled
    for i, provider in enumerate(config["providers"]):
        if provider.get("issuer") == info["issuer"] and not any(k in provider for k in KEY_SOURCES):
            provider["jwks"] = issuer.jwks()
            filled.append(f"providers[{i}] ({provider.get('name')}): the dev issuer's JWKS")
    if not any(p.get("issuer") == info["issuer"] for p in config["providers"]):
        filled.append(f"nothing: no provider has the dev issuer {info['issuer']}, so tokens from "
                      "`make token` are refused (token_issuer_unknown)")
    return config, filled


def config_error(envoy: Envoy) -> str | None:
    """The filter's own words when it refused its configuration (it logs them at start-up)."""
    for line in envoy.log_text().splitlines():
        if "identity filter: " in line and "config_invalid" in line:
            return line[line.index("identity filter: ") + len("identity filter: "):]
    return None


def decoded_assertion(token: str) -> str:
    """The assertion's payload as compact JSON (unverified: shown, not trusted)."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return f"(not a JWS: {token[:60]})"
    return json.dumps(data, separators=(", ", ": "))


def self_check(envoy: Envoy, token: str) -> list[str]:
    """Problems seen with one request with a token and one without; empty when all is well."""
    problems = []
    with_token = envoy.get("/api/hello", {"authorization": f"Bearer {token}"})
    seen = with_token.upstream or {}
    identity = {k: v for k, v in seen.get("headers", {}).items() if k.startswith("x-identity-")}
    assertion = identity.pop("x-identity-assertion", None)
    if with_token.header("x-identity-reason") == "config_invalid":
        problems.append(f"the filter refused its configuration: {config_error(envoy) or 'see ' + str(envoy.log_path)}")
    elif with_token.status != 200 or not identity:
        problems.append(f"with a token: status {with_token.status}, identity headers {identity or 'none'}"
                        f" (reason: {with_token.header('x-identity-reason')})")
    else:
        print("  upstream received: " + ", ".join(f"{k}: {v}" for k, v in sorted(identity.items())))
        if assertion:
            print(f"  and the signed assertion x-identity-assertion, decoded: {decoded_assertion(assertion)}")
    without = envoy.get("/api/hello")
    if with_token.header("x-identity-reason") == "config_invalid":
        return problems
    if without.status != 401 or without.header("x-identity-reason") != "token_missing":
        problems.append(f"without a token: status {without.status}, reason "
                        f"{without.header('x-identity-reason')} (expected 401 token_missing)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = devrun.parser(__doc__, workdir='dev', workdir_help="where Envoy's bootstrap and log go (default .work/dev)")
    parser.add_argument("--upstream-port", type=int, default=0, help="echo upstream port (0: any free)")
    parser.add_argument("--config", type=Path, default=None,
                        help="your own plugin configuration (default: envoy/dev-config.json)")
    args = parser.parse_args(argv)

    issuer = devrun.dev_issuer(args)
    if issuer is None:
        return 2
    try:
        config, filled = dev_config(issuer, args.config)
    except ConfigProblem as e:
        print(f"the configuration cannot be used: {e}", file=sys.stderr)
        return 2
    lock = devrun.lock_workdir(args.workdir)
    if lock is None:
        return 2
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
  config:   {issuer.dir.parent / 'envoy-config.json'} ({args.config or DEV_CONFIG}; filled in: {'; '.join(filled)})

With a fresh development token (sub "dev-user", valid 1 h); the answer shows the x-identity-* headers:

  curl -s {url}/api/hello -H "Authorization: Bearer {token}"

Without a token (401, reason token_missing):

  curl -si {url}/api/hello

Other claims (merged over the defaults; a top-level claim replaces the default one, and roles given
as "roles" or "realm_access" replace the default roles):
  make token CLAIMS='{{"sub":"bob","roles":["admin"]}}'   The dev JWKS: make jwks
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

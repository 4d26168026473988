"""Run the dispatcher: ``python -m identity_dispatcher --host 127.0.0.1 --port 8081``.

Settings come from the environment (README.md, "Configuration"); an invalid setting or policy
stops it at once with exit code 2 and a message naming the field.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from .config import ConfigError
from .keys import JwksError
from .policy import PolicyError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="identity-dispatcher", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--access-log", action="store_true", help="also log every request (stderr)")
    parser.add_argument("--check", action="store_true", help="validate settings and policy, then exit")
    args = parser.parse_args(argv)

    from .app import create_app

    try:
        app = create_app()
    except (ConfigError, PolicyError, JwksError) as error:
        print(f"identity-dispatcher: {error}", file=sys.stderr)
        return 2
    if args.check:
        print("identity-dispatcher: settings and policy are valid")
        return 0
    uvicorn.run(app, host=args.host, port=args.port, access_log=args.access_log, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())

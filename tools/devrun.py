"""What `make run` and `make run-prefect` share: their common command-line options and the
start-up checks (the module is built, the development issuer exists)."""
from __future__ import annotations

import argparse
import fcntl
import sys
from pathlib import Path
from typing import IO

from devissuer import DEFAULT_DIR, DevIssuer
from envoy_runner import DEFAULT_WASM, REPO


def parser(doc: str, *, workdir: str, workdir_help: str) -> argparse.ArgumentParser:
    """An argument parser with the options both dev stacks take; add the rest to it."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--port", type=int, default=10000, help="Envoy listener port (0: any free)")
    p.add_argument("--admin-port", type=int, default=9901, help="Envoy admin port (0: any free)")
    p.add_argument("--wasm", default=str(DEFAULT_WASM), help="the module to load")
    p.add_argument("--issuer-dir", default=str(DEFAULT_DIR), help="dev issuer directory")
    p.add_argument("--workdir", default=str(REPO / ".work" / workdir), help=workdir_help)
    p.add_argument("--check", action="store_true", help="self-check, then stop (exit 1 on failure)")
    return p


def dev_issuer(args: argparse.Namespace) -> DevIssuer | None:
    """The development issuer, created on first use; None (after saying why) when the module
    has not been built."""
    if not Path(args.wasm).exists():
        print(f"no module at {args.wasm}: run `make wasm` first", file=sys.stderr)
        return None
    issuer = DevIssuer(args.issuer_dir)
    if issuer.init():
        print(f"created a development issuer in {issuer.dir}")
    return issuer


def lock_workdir(workdir: str | Path) -> IO[str] | None:
    """Hold ``<workdir>.lock`` for as long as this process runs (the returned file must be kept);
    None, after saying why, when another run holds it: a second `make run` would otherwise
    truncate or delete the logs of the one that is running."""
    path = Path(workdir).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path.with_name(path.name + ".lock"), "w")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        print(f"another run is using {path} (its logs are there): stop it first, or pass "
              "--workdir (and --port/--admin-port) to run a second one", file=sys.stderr)
        return None
    return lock

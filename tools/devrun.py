"""What `make run` and `make run-prefect` share: their common command-line options and the
start-up checks (the module is built, the development issuer exists)."""
from __future__ import annotations

import argparse
import fcntl
import shutil
import signal
import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterable

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


def fresh_workdir(args: argparse.Namespace) -> tuple[DevIssuer, Path, IO[str]] | None:
    """What a chain (`make run-prefect`, `make run-airflow`) starts from: the development issuer,
    its work directory emptied, and the lock that keeps a second run out of it. None, after
    saying why, when one of them is not available."""
    issuer = dev_issuer(args)
    if issuer is None:
        return None
    workdir = Path(args.workdir).resolve()
    lock = lock_workdir(workdir)
    if lock is None:
        return None
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    return issuer, workdir, lock


def stop_on_sigterm() -> None:
    """SIGTERM ends a chain as Ctrl-C does (a KeyboardInterrupt), so its cleanup runs."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))


def serve(problems: list[str], check: bool, stopped: Callable[[], list[str]], workdir: Path) -> int:
    """Report the self-check; with ``check``, its verdict is the exit status. Otherwise run until
    one part stops (``stopped()`` names the parts that did) and say which."""
    for problem in problems:
        print(f"  PROBLEM {problem}", flush=True)
    if check:
        return 1 if problems else 0
    print("\nPress Ctrl-C to stop.", flush=True)
    while not (names := stopped()):
        time.sleep(0.5)
    print(f"{', '.join(names)} exited; see the logs in {workdir}", file=sys.stderr)
    return 1


def stop_all(parts: Iterable[Any]) -> None:
    """Stop every part (each has ``stop()``; None is skipped), last started first, ignoring a
    second Ctrl-C or SIGTERM meanwhile: every part must be stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for part in reversed(list(parts)):
        if part is not None:
            part.stop()


@dataclass(frozen=True)
class Backend:
    """How a chain's dispatcher backend (Prefect flow runs, Airflow DAG runs) is driven by its
    self-check: where runs start, what a start sends, and how a run's state reads."""

    run_path: str  # POST here starts a run
    body: Callable[[str], dict[str, Any]]  # the start request's JSON for a given name
    run_id: str  # the answer's run id field
    read_path: Callable[[str], str]  # GET path of a run
    state: Callable[[dict[str, Any]], str]  # a run's state name
    final: frozenset[str]
    success: str
    start_rule: str  # the gateway rule that refuses a caller without the role
    role: str
    poll: float  # seconds between reads

    def wait_final(self, http: Any, gateway_url: str, run_id: str, headers: dict[str, str],
                   timeout: float) -> dict[str, Any]:
        """The run as read through the gateway once its state is final (or at ``timeout``);
        ``{"error": ...}`` when reading it fails."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            read = http.get(gateway_url + self.read_path(run_id), headers=headers)
            if read.status_code in (502, 503, 504) and time.monotonic() < deadline:
                time.sleep(self.poll)  # a backend slower than the gateway's route timeout
                continue
            if read.status_code != 200:
                return {"error": f"reading run {run_id}: {read.status_code} {read.text[:300]}"}
            state = read.json()
            if self.state(state) in self.final:
                break
            time.sleep(self.poll)
        return state

    def self_check(self, gateway_url: str, dispatcher_url: str, issuer: DevIssuer,
                   runner_claims: dict[str, Any], describe: Callable[[dict[str, Any]], str],
                   timeout: float) -> list[str]:
        """Problems seen starting a run through the gateway and reading it to its end, and with
        three refusals (no token, no role, the token sent around the gateway)."""
        import httpx

        problems: list[str] = []
        runner = {"authorization": f"Bearer {issuer.token(runner_claims, ttl=600)}"}
        with httpx.Client(timeout=60.0) as http:
            started = http.post(gateway_url + self.run_path, json=self.body("self-check"), headers=runner)
            if started.status_code != 201:
                problems.append(f"starting a run: {started.status_code} "
                                f"{started.headers.get('x-identity-reason')} {started.text[:300]}")
            else:
                run_id = started.json()[self.run_id]
                state = self.wait_final(http, gateway_url, run_id, runner, timeout)
                if "error" in state:
                    problems.append(state["error"])
                elif state and self.state(state) != self.success:
                    problems.append(f"run {run_id} ended {self.state(state)}")
                else:
                    print(f"  ok: run {run_id} {self.success}, {describe(state)}")
            expected = [
                ("no token", gateway_url, {}, 401, "token_missing"),
                (f"a token without the {self.role} role", gateway_url,
                 {"authorization": f"Bearer {issuer.token(ttl=600)}"}, 403, f"forbidden; rule={self.start_rule}"),
                ("the token sent around the gateway", dispatcher_url, runner, 401, "assertion_missing"),
            ]
            for what, base, headers, status, reason in expected:
                answer = http.post(base + self.run_path, json=self.body("x"), headers=headers)
                got = (answer.status_code, answer.headers.get("x-identity-reason"))
                if got != (status, reason):
                    problems.append(f"with {what}: {got}, expected {(status, reason)}")
                else:
                    print(f"  ok: with {what}: {status} {reason}")
        return problems

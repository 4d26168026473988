"""A real Airflow 3 for tests and local demos: SQLite, a private AIRFLOW_HOME, the components a
DAG run needs (api-server, scheduler, dag-processor; no triggerer: the test DAGs do not defer),
and a service account for the dispatcher in Airflow's simple auth manager.

The service account is ``[core] simple_auth_manager_users`` (``<name>:user``: may read DAGs and
trigger and read DAG runs) with its password written beforehand into the file the simple auth
manager reads (``[core] simple_auth_manager_passwords_file``); its API token comes from
``POST /auth/token`` (:class:`identity_dispatcher.airflow_api.AirflowApi` does the same). All
components share one JWT secret (``[api_auth] jwt_secret``): the scheduler's task tokens are
checked by the api-server's execution API.

Runs with the ``airflow`` executable next to ``sys.executable`` (the Airflow venv); imports no
Airflow module itself.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import httpx

from .testing import Process, free_port, wait_http

#: Final DAG run states.
FINAL_DAG_RUN_STATES = frozenset({"success", "failed"})

#: The components a DAG run needs (the triggerer only serves deferred tasks).
COMPONENTS = ("api-server", "scheduler", "dag-processor")


def airflow_env(home: Path, port: int, dags_folder: Path, jwt_secret: str, user: str,
                passwords_file: Path, **extra: str) -> dict[str, str]:
    """A clean environment for Airflow processes: no inherited AIRFLOW_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    base = f"http://127.0.0.1:{port}"
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{base}/execution/",
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{user}:user",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords_file),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=base,
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API_AUTH__JWT_SECRET=jwt_secret,
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="5",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class AirflowServer:
    """``airflow db migrate``, then the api-server, scheduler and dag-processor on SQLite.

    ``.api_url`` is the stable REST API (``http://127.0.0.1:<port>/api/v2``), ``.url`` the
    server's root, ``.user``/``.password`` the dispatcher's service account. ``env`` is added to
    every component's environment (e.g. ``AIRFLOW_CONN_*`` connections for the tasks).
    """

    def __init__(self, workdir: Path, dags_folder: Path, port: int | None = None,
                 user: str = "dispatcher", start_timeout: float = 120.0,
                 components: Sequence[str] = COMPONENTS, env: Mapping[str, str] | None = None) -> None:
        self.home = workdir / "airflow-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api/v2"
        self.user = user
        self.password = secrets.token_urlsafe(24)
        self.passwords_file = self.home / "passwords.json"
        self.passwords_file.write_text(json.dumps({user: self.password}))
        self.passwords_file.chmod(0o600)
        self.env = airflow_env(self.home, self.port, dags_folder, secrets.token_urlsafe(32), user,
                               self.passwords_file, **(env or {}))
        self.processes: list[Process] = []
        airflow = str(Path(sys.executable).with_name("airflow"))
        started = time.monotonic()
        try:
            migrate = Process("airflow-db-migrate", [airflow, "db", "migrate"], self.env,
                              workdir / "airflow-db-migrate.log")
            if migrate.popen.wait(timeout=start_timeout) != 0:
                raise RuntimeError(f"airflow db migrate failed:\n{migrate.log_tail()}")
            migrate.stop()
            for component in components:
                self.processes.append(Process(f"airflow-{component}", [airflow, component], self.env,
                                              workdir / f"airflow-{component}.log"))
            remaining = start_timeout - (time.monotonic() - started)
            wait_http(f"{self.api_url}/monitor/health", self.processes[0], remaining, "airflow api-server")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        self._token: str | None = None

    def token(self) -> str:
        """An API token for the service account (``POST /auth/token``)."""
        if self._token is None:
            response = httpx.post(f"{self.url}/auth/token", timeout=30.0,
                                  json={"username": self.user, "password": self.password})
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call of the REST API v2 as the service account (tests, waiting for DAGs)."""
        headers = {"authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.api_url}/{path.lstrip('/')}", headers=headers,
                             timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def wait_for_dags(self, dag_ids: Sequence[str], timeout: float = 90.0) -> None:
        """Until the dag-processor has parsed every DAG in ``dag_ids`` (the API knows them)."""
        deadline = time.monotonic() + timeout
        missing = list(dag_ids)
        while time.monotonic() < deadline:
            self.check_running()
            missing = [d for d in missing if self.api("GET", f"dags/{d}").status_code != 200]
            if not missing:
                return
            time.sleep(1.0)
        raise TimeoutError(f"DAGs {missing} not parsed after {timeout:.0f} s:\n{self.log_tails()}")

    def check_running(self) -> None:
        for process in self.processes:
            if not process.running:
                raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")

    def log_tails(self, lines: int = 15) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path})\n{p.log_tail(lines)}" for p in self.processes)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Poll the API until the DAG run reaches a final state; return the run."""
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")
            response.raise_for_status()
            run = response.json()
            if run.get("state") in FINAL_DAG_RUN_STATES:
                return run
            time.sleep(1.0)
        raise TimeoutError(f"DAG run {run_id} still {run.get('state')} after {timeout:.0f} s:\n"
                           f"{self.log_tails()}")

    def dispatcher_env(self) -> dict[str, str]:
        """The dispatcher's settings for this Airflow (its service account, never a caller's)."""
        return {
            "DISPATCHER_BACKEND": "airflow",
            "AIRFLOW_API_URL": self.url,
            "DISPATCHER_AIRFLOW_USERNAME": self.user,
            "DISPATCHER_AIRFLOW_PASSWORD": self.password,
        }

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def process_env_without(prefixes: Sequence[str], extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(prefixes))}
    env.update(extra)
    return env

"""Airflow tasks calling through the gateway with their own identity (GatewayHook), against real
components started once for the module: an OpenID provider (tools/oidc_provider.py), Envoy with
the identity filter in front of an echo upstream (the "protected API"), and Airflow 3 on SQLite
running ``gateway_dags/`` with the connections as ``AIRFLOW_CONN_*`` variables.

The gateway: provider ``flows`` (the OpenID provider, keys by discovery) and ``cold`` (keys
that cannot be fetched: ``503 keys_unavailable``); rule ``reports`` (``/api/reports``, scope
``reports:read``) and ``admin`` (``/api/admin``, scope ``reports:admin``, which no client has).
The token is forwarded to the echo upstream only so the tests know the tokens the tasks used and
can look for them in Airflow's logs. Envoy logs each request with its request id and run ids.
Tokens for ``api://reports`` live 60 s, for ``api://reports-rotating`` (connection
``gateway_rotating``) 15 s.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from conftest import GATEWAY_REQUIRED, HERE, REPO, envoy_runner, gateway_unavailable
from identity_devkit import gateway as gw
from identity_devkit.airflow_testing import AirflowServer
from identity_devkit.issuer import thumbprint
from identity_devkit.jwk import b64url
from identity_devkit.testing import free_port

API = "api://reports"
ROTATING = "api://reports-rotating"
ROTATING_TTL = 15
ASSERTION_SECRET = "airflow-hook-assertion-secret-0123456789"
DAG = "gateway_call"
ROTATION_DAG = "gateway_rotation"

#: An Envoy access log line per request with what ties a call to the task that made it.
TRACE_LOG_FORMAT = ("ACCESS %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% reason=%RESP(X-IDENTITY-REASON)% "
                    "request_id=%REQ(X-REQUEST-ID)% dag_run=%REQ(X-AIRFLOW-DAG-RUN-ID)% "
                    "task=%REQ(X-AIRFLOW-TASK-ID)%\n")


def oidc_module() -> Any:
    envoy_runner()  # puts tools/ on sys.path
    import oidc_provider

    return oidc_provider


class Chain:
    def __init__(self, **parts: Any) -> None:
        self.__dict__.update(parts)

    def run(self, connection: str, path: str = "/api/reports", dag: str = DAG, **conf: Any) -> str:
        answer = self.airflow.api("POST", f"dags/{dag}/dagRuns", json={
            "logical_date": None, "conf": {"connection": connection, "path": path, **conf}})
        assert answer.status_code in (200, 201), answer.text
        return answer.json()["dag_run_id"]

    def task(self, run_id: str, dag: str = DAG, task: str = "call") -> dict[str, Any]:
        answer = self.airflow.api("GET", f"dags/{dag}/dagRuns/{run_id}/taskInstances/{task}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def logs(self) -> str:
        """Everything Airflow logged: the task logs and the components' own logs."""
        return "".join(p.read_text(errors="replace") for p in self.airflow.home.rglob("*.log")
                       if p.is_file()) + "".join(p.read_text(errors="replace")
                                                 for p in self.workdir.glob("airflow-*.log"))

    def token_requests(self) -> int:
        """Tokens the OpenID provider issued so far (one ``POST /token 200`` each)."""
        return sum(1 for line in self.idp.log_text().splitlines() if " POST /token 200" in line)

    def logged(self, needle: str, count: int, timeout: float = 10.0) -> list[str]:
        """Envoy's access log lines containing ``needle``, once there are ``count`` (Envoy writes
        its access log in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.envoy.log_text().splitlines()
                     if line.startswith("ACCESS ") and needle in line]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.2)

    def seen_by_upstream(self, run_id: str) -> list[dict[str, Any]]:
        return [r for r in list(self.echo.received)
                if r["headers"].get("x-airflow-dag-run-id") == run_id]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    why = gateway_unavailable()
    if why is not None:
        (pytest.fail if GATEWAY_REQUIRED else pytest.skip)(f"no gateway: {why}")
    oidc = oidc_module()
    if not oidc.installed():
        pytest.fail(f"oidc-provider is not installed: {oidc.INSTALL_HINT}", pytrace=False)
    workdir = tmp_path_factory.mktemp("airflow-hook")
    robot = oidc.Client.basic("reports-job", scope="reports:read")
    keyed = oidc.Client.private_key_jwt("reports-keyed-job", scope="reports:read")
    pod = oidc.Client.basic("reports-pod", scope="reports:read")  # stands in for the kubelet
    rotating = oidc.Client.basic("reports-rotating-job", scope="reports:read")
    idp = oidc.OidcProvider(clients=[robot, keyed, pod, rotating], name="airflow-hook-idp",
                            resources={API: {"scope": "reports:read reports:admin", "access_token_ttl": 60},
                                       ROTATING: {"scope": "reports:read", "access_token_ttl": ROTATING_TTL}})
    from echo_upstream import start_echo_upstream

    runner = envoy_runner()
    cold_client = oidc.Client.basic("cold-job", scope="reports:read")
    cold = oidc.OidcProvider(clients=[cold_client], name="airflow-hook-cold",
                             resources={API: {"scope": "reports:read", "access_token_ttl": 60}})
    echo = envoy = airflow = None
    try:
        idp.start()
        cold.start()
        echo = start_echo_upstream()
        config = {
            "providers": [
                gw.provider("flows", idp.issuer, audiences=[API, ROTATING], algorithms=["RS256"],
                            discovery=True, upstream="idp"),
                gw.provider("cold", cold.issuer, audiences=[API], algorithms=["RS256"],
                            jwks_uri="http://idp-cold.test/jwks", upstream="idp-cold",
                            fetch_timeout_ms=1000, cold_start_wait_ms=0),
            ],
            "rules": [
                {"name": "reports", "match": {"path_prefix": "/api/reports"},
                 "require": {"scopes": {"all_of": ["reports:read"]}}},
                {"name": "admin", "match": {"path_prefix": "/api/admin"},
                 "require": {"scopes": {"all_of": ["reports:admin"]}}},
            ],
            "default": "deny",
            "headers": {
                "claims": [{"identity": "subject", "header": "x-identity-subject"}],
                "forward_token": True,
                "assertion": {"audience": "reports-api", "keys": [gw.hs256_key("reports-1", ASSERTION_SECRET)]},
            },
            "errors": {"detail": "reason"},
        }
        envoy = runner.Envoy(Path(os.environ.get("IDENTITY_WASM", runner.DEFAULT_WASM)), config,
                             upstream_port=echo.port, name="gateway-airflow-hook", workdir=workdir / "envoy",
                             extra_clusters=[{"name": "idp", "port": idp.port},
                                             {"name": "idp-cold", "port": free_port()}],
                             hcm_options={"access_log": gw.trace_access_log(TRACE_LOG_FORMAT)}).start()
        key_file = workdir / "reports-keyed.pem"
        key_file.write_bytes(keyed.key.private_bytes(serialization.Encoding.PEM,
                                                     serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
        key_file.chmod(0o600)
        token_file = workdir / "projected-token"
        token_file.write_text(idp.token(pod, scope="reports:read", resource=API))
        common = {"issuer": idp.issuer, "scopes": "reports:read", "resource": API}
        connections = {
            "gateway_basic": {"login": robot.client_id, "password": robot.secret, "extra": common},
            "gateway_keyed": {"login": keyed.client_id,
                              "extra": {**common, "private_key_file": str(key_file), "key_id": keyed.key_id}},
            "gateway_file": {"extra": {"token_file": str(token_file)}},
            "gateway_cold": {"login": cold_client.client_id, "password": cold_client.secret,
                             "extra": {**common, "issuer": cold.issuer}},
            "gateway_rotating": {"login": rotating.client_id, "password": rotating.secret,
                                 "extra": {**common, "resource": ROTATING}},
        }
        env = {f"AIRFLOW_CONN_{name.upper()}": json.dumps({"conn_type": "identity_gateway",
                                                            "host": envoy.base_url, **conn})
               for name, conn in connections.items()}
        airflow = AirflowServer(workdir, HERE / "gateway_dags", env=env)
        airflow.wait_for_dags([DAG, ROTATION_DAG])
        print(f"\nAirflow started in {airflow.startup_seconds:.1f} s", file=sys.stderr)
        yield Chain(idp=idp, echo=echo, envoy=envoy, airflow=airflow, robot=robot, keyed=keyed, pod=pod,
                    rotating=rotating, workdir=workdir)
    finally:
        for part in (airflow, envoy, echo):
            if part is not None:
                part.stop()
        idp.stop()
        cold.stop()


def assertion_claims(headers: dict[str, str]) -> dict[str, Any]:
    return jwt.decode(headers["x-identity-assertion"], ASSERTION_SECRET.encode(), algorithms=["HS256"],
                      audience="reports-api", issuer="identity-filter")


def test_tasks_call_through_the_gateway_as_themselves_and_refusals_follow_retry_semantics(chain):
    """All runs are started at once (one Airflow, runs in parallel), then checked one by one."""
    runs = {
        "basic": chain.run("gateway_basic"),
        "keyed": chain.run("gateway_keyed"),
        "file": chain.run("gateway_file"),
        "forbidden": chain.run("gateway_basic", "/api/admin"),
    }
    finals = {name: chain.airflow.wait_for_run(DAG, run_id, timeout=150) for name, run_id in runs.items()}

    # Allowed: each with its own identity, first try; the upstream sees who and which task.
    for name, client in (("basic", chain.robot), ("keyed", chain.keyed), ("file", chain.pod)):
        run_id = runs[name]
        assert finals[name]["state"] == "success", (name, chain.airflow.log_tails())
        ti = chain.task(run_id)
        assert (ti["state"], ti["try_number"]) == ("success", 1)
        (seen,) = chain.seen_by_upstream(run_id)
        headers = seen["headers"]
        assert seen["path"] == "/api/reports" and headers["x-identity-subject"] == client.client_id
        dag_id, dag_run_id, task_id, try_number, suffix = headers["x-request-id"].split("/")
        assert (dag_id, dag_run_id, task_id, try_number) == (DAG, run_id, "call", "1") and len(suffix) == 12
        assert (headers["x-airflow-task-id"], headers["x-airflow-try-number"]) == ("call", "1")
        claims = assertion_claims(headers)
        assert (claims["sub"], claims["idp"]) == (client.client_id, chain.idp.issuer)
        assert claims["req"]["id"] == headers["x-request-id"]
        xcom = chain.airflow.api("GET", f"dags/{DAG}/dagRuns/{run_id}/taskInstances/call/xcomEntries/return_value")
        assert xcom.json()["value"] == {"sub": client.client_id, "request_id": headers["x-request-id"]}

    # private_key_jwt: the provider holds only the client's public key.
    (registered,) = [c for c in chain.idp.config["clients"] if c["client_id"] == chain.keyed.client_id]
    assert "client_secret" not in registered and registered["token_endpoint_auth_method"] == "private_key_jwt"

    # 403 insufficient_scope: failed on the first try although the task has 2 retries.
    assert finals["forbidden"]["state"] == "failed"
    ti = chain.task(runs["forbidden"])
    assert (ti["state"], ti["try_number"], ti["max_tries"]) == ("failed", 1, 2)
    assert chain.seen_by_upstream(runs["forbidden"]) == []

    # No token text anywhere in Airflow's logs (the task printed one on purpose), nor a secret.
    tokens = {r["headers"]["authorization"].split(" ", 1)[1]
              for name in ("basic", "keyed", "file") for r in chain.seen_by_upstream(runs[name])}
    assert len(tokens) == 3
    logs = chain.logs()
    printed = re.findall(r"token text (\S+?)[\",]", logs)  # the careless print happened, masked
    assert len(printed) == len(runs) and all(p.endswith("***") for p in printed), printed
    for secret in (*tokens, chain.robot.secret):
        assert secret not in logs


def test_a_retryable_refusal_is_retried(chain):
    """503 keys_unavailable (the gateway cannot fetch the provider's keys) uses the retries."""
    run_id = chain.run("gateway_cold")
    final = chain.airflow.wait_for_run(DAG, run_id, timeout=150)
    assert final["state"] == "failed"
    ti = chain.task(run_id)
    assert (ti["state"], ti["try_number"]) == ("failed", 3)


def test_a_task_renews_its_token_in_the_background_across_a_long_run_without_a_failed_call(chain):
    """Tokens of ``gateway_rotating`` live 15 s; one task, one hook, calls every 2 s for 20 s.
    Every call passes on the task's first try, at the gateway's first attempt (a token the
    gateway found expired would show as a refused request in Envoy's log). The token is renewed
    in the background after ~80 % of its lifetime, before it expires, and only once: the tokens
    the provider issued are exactly the tokens used. Each call names its DAG run and task."""
    calls = 11
    before = chain.token_requests()
    run_id = chain.run("gateway_rotating", dag=ROTATION_DAG, calls=calls, interval=2.0)
    final = chain.airflow.wait_for_run(ROTATION_DAG, run_id, timeout=150)
    assert final["state"] == "success", chain.airflow.log_tails()
    ti = chain.task(run_id, dag=ROTATION_DAG, task="calls")
    assert (ti["state"], ti["try_number"]) == ("success", 1)
    issued = chain.token_requests() - before

    seen = chain.seen_by_upstream(run_id)
    assert len(seen) == calls
    for request in seen:
        headers = request["headers"]
        assert headers["x-identity-subject"] == chain.rotating.client_id
        dag_id, dag_run_id, task_id, try_number, suffix = headers["x-request-id"].split("/")
        assert (dag_id, dag_run_id, task_id, try_number) == (ROTATION_DAG, run_id, "calls", "1")
        assert len(suffix) == 12
        assert assertion_claims(headers)["req"]["id"] == headers["x-request-id"]
    request_ids = [r["headers"]["x-request-id"] for r in seen]
    assert len(set(request_ids)) == calls
    xcom = chain.airflow.api(
        "GET", f"dags/{ROTATION_DAG}/dagRuns/{run_id}/taskInstances/calls/xcomEntries/return_value")
    answers = xcom.json()["value"]
    assert [(a["status"], a["request_id"]) for a in answers] == [(200, rid) for rid in request_ids]

    # Envoy: each call once, let through at the first attempt.
    lines = chain.logged(f"dag_run={run_id} ", calls)
    assert len(lines) == calls and all(" /api/reports 200 reason=- " in line for line in lines), lines
    assert sorted(line.split("request_id=")[1].split()[0] for line in lines) == sorted(request_ids)

    # One token after the other, each renewed before it expired, none requested and left unused.
    used = [r["headers"]["authorization"].removeprefix("Bearer ") for r in seen]
    tokens = list(dict.fromkeys(used))
    assert len(tokens) >= 2 and used == sorted(used, key=tokens.index)
    assert issued == len(tokens)
    claims = [jwt.decode(t, options={"verify_signature": False}) for t in tokens]
    assert len({c["jti"] for c in claims}) == len(tokens)
    assert all(c["exp"] - c["iat"] == ROTATING_TTL for c in claims)
    gaps = [b["iat"] - a["iat"] for a, b in zip(claims, claims[1:])]
    assert all(0.75 * ROTATING_TTL - 1 <= gap < ROTATING_TTL for gap in gaps), gaps
    assert answers[-1]["at"] > claims[0]["exp"]  # the calls outlived the first token

    # The task printed each token; the renewed ones, fetched in a background thread, are masked too.
    logs = chain.logs()
    printed = re.findall(r"call \d+ with bearer (\S+?)[\",]", logs)
    assert len(printed) == calls and all(p.endswith("***") for p in printed), printed
    for token in tokens:
        assert token not in logs


PROVIDERS_PROBE = textwrap.dedent(
    """
    import json
    from airflow.providers_manager import ProvidersManager
    manager = ProvidersManager()
    hook = manager.hooks.get("identity_gateway")
    print(json.dumps({"provider": "identity-dispatcher" in manager.providers,
                      "hook": hook.hook_class_name if hook else None,
                      "name": hook.hook_name if hook else None}))
    """
)


def test_the_connection_type_is_registered_through_the_provider_entry_point(tmp_path):
    dist = metadata.distribution("identity-dispatcher")
    path = [str(REPO / "prefect" / "src")]
    if not any(ep.group == "apache_airflow_provider" for ep in dist.entry_points):
        # This venv's install predates the entry point (`make airflow-venv` reinstalls when
        # pyproject.toml changes): the metadata pip writes from pyproject.toml, in front of it.
        project = tomllib.loads((REPO / "prefect" / "pyproject.toml").read_text())["project"]
        info = tmp_path / f"identity_dispatcher-{project['version']}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\n"
                                       f"Version: {project['version']}\n")
        points = project["entry-points"]["apache_airflow_provider"]
        (info / "entry_points.txt").write_text(
            "[apache_airflow_provider]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
        path.insert(0, str(tmp_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(PYTHONPATH=os.pathsep.join(path), AIRFLOW_HOME=str(tmp_path / "home"))
    done = subprocess.run([sys.executable, "-c", PROVIDERS_PROBE], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"provider": True, "hook": "identity_dispatcher.airflow_hook.GatewayHook",
                     "name": "Identity gateway"}, done.stderr[-3000:]


def test_the_hook_maps_refusals_to_airflow_retries_and_reads_a_rotated_token_file(monkeypatch, tmp_path):
    """The hook alone, outside a task: a connection from an ``AIRFLOW_CONN_*`` variable with a
    token file, a gateway answering 200, 403, 401 and 503 (httpx mock transport)."""
    import httpx

    from identity_dispatcher.airflow_hook import GatewayHook, GatewayTaskFailed
    from identity_dispatcher.client import Unavailable

    token = jwt.encode({"sub": "pod", "exp": int(time.time()) + 300}, "k" * 32)
    (tmp_path / "token").write_text(token)
    monkeypatch.setenv("AIRFLOW_CONN_GW_UNIT", json.dumps({
        "conn_type": "identity_gateway", "host": "gw.test", "port": 8443,
        "extra": {"token_file": str(tmp_path / "token")}}))
    answers = {
        "/deny": httpx.Response(403, headers={"x-identity-reason": "insufficient_scope; rule=admin"},
                                json={"error": "insufficient_scope"}),
        "/who": httpx.Response(401, headers={"x-identity-reason": "issuer_unknown"}),
        "/later": httpx.Response(503, headers={"x-identity-reason": "keys_unavailable", "retry-after": "5"}),
    }
    sent: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers.get(request.url.path, httpx.Response(200, json={}))

    with GatewayHook("gw_unit", transport=httpx.MockTransport(gateway)) as hook:
        assert hook.get("/ok").status_code == 200
        with pytest.raises(GatewayTaskFailed) as denied:
            hook.get("/deny")
        assert (denied.value.status, denied.value.reason, denied.value.rule) == (403, "insufficient_scope", "admin")
        with pytest.raises(GatewayTaskFailed) as unknown:
            hook.get("/who")
        assert (unknown.value.status, unknown.value.reason) == (401, "issuer_unknown")
        with pytest.raises(Unavailable) as later:  # not an AirflowFailException: the retries apply
            hook.get("/later")
        assert later.value.retryable and later.value.retry_after == 5
        assert not isinstance(later.value, GatewayTaskFailed)
        assert token not in repr(hook.get_conn()) and hook.test_connection() == (True, "token obtained")
    assert str(sent[0].url) == "https://gw.test:8443/ok"
    assert sent[0].headers["authorization"] == f"Bearer {token}"
    assert sent[0].headers["x-request-id"].startswith("none/")  # outside a task: no run ids

    # The kubelet rotates the file: the next hook of this process (same shared cache) sends the new one.
    rotated = jwt.encode({"sub": "pod-rotated", "exp": int(time.time()) + 600}, "k" * 32)
    (tmp_path / "token").write_text(rotated)
    with GatewayHook("gw_unit", transport=httpx.MockTransport(gateway)) as hook:
        hook.get("/ok")
    assert sent[-1].headers["authorization"] == f"Bearer {rotated}"


def test_a_dpop_connection_gets_bound_tokens_and_signs_a_proof_per_call(monkeypatch):
    """The hook alone, outside a task: extra ``dpop: true`` asks the real OpenID provider for a
    DPoP-bound token (``cnf.jkt`` of a key made in this process) and every call carries
    ``Authorization: DPoP`` and a fresh proof for its method and URL (httpx mock gateway)."""
    import hashlib

    import httpx

    from identity_dispatcher.airflow_hook import GatewayHook

    oidc = oidc_module()
    if not oidc.installed():
        pytest.fail(f"oidc-provider is not installed: {oidc.INSTALL_HINT}", pytrace=False)
    robot = oidc.Client.basic("dpop-job", scope="reports:read")
    idp = oidc.OidcProvider(clients=[robot], name="airflow-hook-dpop",
                            resources={API: {"scope": "reports:read", "access_token_ttl": 60}})
    sent: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    try:
        idp.start()
        extra = {"issuer": idp.issuer, "scopes": "reports:read", "resource": API}
        for conn_id, dpop in (("gw_dpop", True), ("gw_dpop_text", "true")):
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
                "conn_type": "identity_gateway", "host": "gw.test", "login": robot.client_id,
                "password": robot.secret, "extra": {**extra, "dpop": dpop}}))
        with GatewayHook("gw_dpop", transport=httpx.MockTransport(gateway)) as hook:
            hook.get("/api/reports?day=1")
            hook.post("/api/reports", json={})
        with GatewayHook("gw_dpop_text", transport=httpx.MockTransport(gateway)) as hook:
            hook.get("/api/reports")
    finally:
        idp.stop()
    proofs = []
    for request in sent:
        scheme, token = request.headers["authorization"].split(" ", 1)
        assert scheme == "DPoP"
        header = jwt.get_unverified_header(request.headers["dpop"])
        assert (header["typ"], header["alg"], set(header["jwk"])) == ("dpop+jwt", "ES256", {"kty", "crv", "x", "y"})
        proof = jwt.decode(request.headers["dpop"], jwt.PyJWK(header["jwk"], algorithm="ES256").key,
                           algorithms=["ES256"])
        assert (proof["htm"], proof["htu"]) == (request.method, "https://gw.test/api/reports")
        assert proof["ath"] == b64url(hashlib.sha256(token.encode()).digest())
        jkt = thumbprint(header["jwk"])  # RFC 7638, the dev kit's (not the code under test)
        assert jwt.decode(token, options={"verify_signature": False})["cnf"] == {"jkt": jkt}
        proofs.append(proof["jti"])
    assert len(sent) == 3 and len(set(proofs)) == 3

    # dpop needs client credentials; a value that is no boolean is an error, not "off".
    monkeypatch.setenv("AIRFLOW_CONN_GW_DPOP_FILE", json.dumps({
        "conn_type": "identity_gateway", "host": "gw.test", "extra": {"token_file": "/nowhere", "dpop": True}}))
    monkeypatch.setenv("AIRFLOW_CONN_GW_DPOP_BAD", json.dumps({
        "conn_type": "identity_gateway", "host": "gw.test", "login": "x", "password": "y",
        "extra": {"issuer": "https://idp.test", "dpop": "sometimes"}}))
    for conn_id, message in (("gw_dpop_file", "dpop needs client credentials"), ("gw_dpop_bad", "true or false")):
        with pytest.raises(ValueError, match=message):
            GatewayHook(conn_id).token_cache()

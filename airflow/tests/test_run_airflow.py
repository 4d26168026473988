"""`make run-airflow` (tools/run_airflow.py) brings the Airflow chain up and a DAG run through the
gateway completes: its own --check, with every port chosen by the kernel."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import GATEWAY_REQUIRED, REPO, gateway_unavailable


@pytest.mark.timeout(420)
def test_make_run_airflow_starts_a_dag_run_through_the_gateway(tmp_path):
    why = gateway_unavailable()
    if why is not None:
        (pytest.fail if GATEWAY_REQUIRED else pytest.skip)(f"no gateway: {why}")
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "run_airflow.py"), "--check", "--port", "0",
         "--admin-port", "0", "--dispatcher-port", "0", "--issuer-dir", str(tmp_path / "issuer"),
         "--workdir", str(tmp_path / "chain")],
        capture_output=True, text=True, timeout=400, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "curl -sS -X POST http://127.0.0.1:" in done.stdout, output
    assert "success, requested_by {\"sub\": \"dev-user\"" in done.stdout, output
    for refusal in ("401 token_missing", "403 forbidden; rule=dag-runs-start", "401 assertion_missing"):
        assert refusal in done.stdout, output
    assert "PROBLEM" not in done.stdout, output

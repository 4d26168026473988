"""`make run-prefect` (tools/run_prefect.py) brings the whole chain up and a run through the
gateway completes, and the report flow, started with a developer's token, calls the API behind
the gateway with its own client-credentials token: its own --check, with every port chosen by
the kernel."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import GATEWAY_REQUIRED, REPO, gateway_unavailable


@pytest.mark.timeout(240)
def test_make_run_prefect_starts_a_run_through_the_gateway(tmp_path):
    why = gateway_unavailable()
    if why is not None:
        (pytest.fail if GATEWAY_REQUIRED else pytest.skip)(f"no gateway: {why}")
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "run_prefect.py"), "--check", "--port", "0",
         "--admin-port", "0", "--dispatcher-port", "0", "--issuer-dir", str(tmp_path / "issuer"),
         "--workdir", str(tmp_path / "chain")],
        capture_output=True, text=True, timeout=200, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "curl -sS -X POST http://127.0.0.1:" in done.stdout, output
    assert "COMPLETED" in done.stdout and "'identity:dev-user'" in done.stdout, output
    for refusal in ("401 token_missing", "403 forbidden; rule=runs-start", "401 assertion_missing"):
        assert refusal in done.stdout, output
    assert "PROBLEM" not in done.stdout, output
    started = re.search(r"ok: run ([0-9a-f-]{36}) \(report/report\) started by dev-user", done.stdout)
    assert started, output
    run_id = started.group(1)
    assert f"from report-flow (the flow's own token, provider flows), x-prefect-flow-run-id={run_id}, " \
           f"x-request-id={run_id}." in done.stdout, output

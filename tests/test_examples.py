"""The shipped examples work: envoy/envoy.yaml validates in Envoy and matches what
tools/envoy_runner.py generates; `make run` (tools/run_dev.py) serves identity end to end."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import envoy_runner

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "envoy" / "envoy.yaml"
DEV_CONFIG = REPO / "envoy" / "dev-config.json"

# Values that differ on purpose between the example and a generated bootstrap.
VARYING = {"port_value", "filename", "value"}


def shape(node):
    """The structure of a bootstrap with the deliberately varying values blanked out."""
    if isinstance(node, dict):
        return {k: ("*" if k in VARYING else shape(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [shape(v) for v in node]
    return str(node)


def example():
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_has_the_shape_the_runner_generates(wasm):
    generated = envoy_runner.bootstrap(
        upstream_port=8081,
        http_filters=[envoy_runner.wasm_filter(wasm, json.loads(DEV_CONFIG.read_text()))])
    assert shape(example()) == shape(generated)


def test_example_plugin_configuration_is_a_json_document():
    hcm = example()["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    config = hcm["http_filters"][0]["typed_config"]["config"]["configuration"]["value"]
    assert json.loads(config)["providers"][0]["issuer"]


def test_example_validates_in_envoy(wasm, tmp_path):
    bootstrap = tmp_path / "envoy.yaml"
    bootstrap.write_text(EXAMPLE.read_text().replace("IDENTITY_FILTER_WASM", str(wasm)))
    done = subprocess.run([envoy_runner.find_envoy(), "--mode", "validate", "-c", str(bootstrap),
                           "--disable-hot-restart", "--log-level", "warn"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def run_dev(wasm, tmp_path, *args):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "run_dev.py"), "--check", "--port", "0", "--admin-port", "0",
         "--wasm", str(wasm), "--issuer-dir", str(tmp_path / "issuer"), "--workdir", str(tmp_path / "envoy"),
         *args],
        capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)


def test_make_run_serves_identity_end_to_end(wasm, tmp_path):
    done = run_dev(wasm, tmp_path)
    assert "curl -s http://127.0.0.1:" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert "x-identity-subject: dev-user" in done.stdout
    assert "x-identity-roles: user,developer" in done.stdout
    decoded = done.stdout.split("x-identity-assertion, decoded: ", 1)[1].splitlines()[0]
    assertion = json.loads(decoded)
    assert assertion["sub"] == "dev-user" and assertion["roles"] == ["user", "developer"]
    assert assertion["req"]["path"] == "/api/hello" and assertion["binding"] == "none"


@pytest.mark.parametrize("claims", ['{"sub":"bob","roles":["admin"]}',
                                    '{"sub":"bob","realm_access":{"roles":["admin"]}}'])
def test_make_token_roles_reach_make_runs_roles_header(wasm, echo, tmp_path, claims):
    """`make token CLAIMS=...` with roles, through `make run`'s configuration: the roles header
    says the roles given, not the dev defaults."""
    import run_dev
    from devissuer import DevIssuer

    issuer = DevIssuer(tmp_path / "issuer")
    issuer.init()
    minted = subprocess.run([sys.executable, str(REPO / "tools" / "devissuer.py"), "--dir", str(issuer.dir),
                             "token", "--claims", claims], capture_output=True, text=True, timeout=30, check=True)
    config, _ = run_dev.dev_config(issuer)
    with envoy_runner.Envoy(wasm, config, upstream_port=echo.port, name="dev-roles") as envoy:
        reply = envoy.get("/api/hello", {"authorization": f"Bearer {minted.stdout.strip()}"})
    assert reply.status == 200, reply.header("x-identity-reason")
    assert reply.upstream["headers"]["x-identity-subject"] == "bob"
    assert reply.upstream["headers"]["x-identity-roles"] == "admin"


def test_make_run_with_own_config_says_what_it_filled_in(wasm, tmp_path):
    own = json.loads(DEV_CONFIG.read_text())
    own["providers"][0]["audiences"] = ["dev-api"]
    del own["providers"][0]["jwks"]
    (tmp_path / "own.json").write_text(json.dumps(own))
    done = run_dev(wasm, tmp_path, "--config", str(tmp_path / "own.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "filled in: providers[0] (dev): the dev issuer's JWKS)" in done.stdout


def test_make_run_prints_the_configuration_error(wasm, tmp_path):
    own = json.loads(DEV_CONFIG.read_text())
    own["rules"][0]["match"]["path"] = "health"
    (tmp_path / "own.json").write_text(json.dumps(own))
    done = run_dev(wasm, tmp_path, "--config", str(tmp_path / "own.json"))
    assert done.returncode == 1
    assert "the filter refused its configuration: invalid configuration at rules[0].match.path: " \
           "must start with `/`" in done.stdout, done.stdout


@pytest.mark.parametrize("text, says", [
    ('{\n  "providers": [\n    {"name": "x",}\n  ]\n}', "own.json:3:18: not JSON: "),
    ('{"providers": []}', 'needs a non-empty "providers" list'),
])
def test_make_run_refuses_an_unusable_file_without_a_traceback(wasm, tmp_path, text, says):
    (tmp_path / "own.json").write_text(text)
    done = run_dev(wasm, tmp_path, "--config", str(tmp_path / "own.json"))
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_second_make_run_leaves_the_running_ones_work_dir_alone(wasm, tmp_path):
    import devrun

    running = devrun.lock_workdir(tmp_path / "envoy")  # what the first `make run` holds
    assert running is not None and running.name == str(tmp_path / "envoy.lock")
    (tmp_path / "envoy").mkdir()
    (tmp_path / "envoy" / "envoy.log").write_text("the running one's log\n")
    second = run_dev(wasm, tmp_path)
    assert second.returncode == 2 and "another run is using" in second.stderr, second.stderr
    assert (tmp_path / "envoy" / "envoy.log").read_text() == "the running one's log\n"
    running.close()
    assert run_dev(wasm, tmp_path).returncode == 0

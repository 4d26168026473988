"""The shipped examples work: envoy/envoy.yaml validates in Envoy and matches what
tools/envoy_runner.py generates; `make run` (tools/run_dev.py) serves identity end to end."""

import json
import subprocess
import sys
from pathlib import Path

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


def test_make_run_serves_identity_end_to_end(wasm, tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "run_dev.py"), "--check", "--port", "0", "--admin-port", "0",
         "--wasm", str(wasm), "--issuer-dir", str(tmp_path / "issuer"), "--workdir", str(tmp_path / "envoy")],
        capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert "curl -s http://127.0.0.1:" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert "x-identity-subject: dev-user" in done.stdout

"""`make oci`: the module as a Wasm OCI image (compat variant) in an OCI image-layout archive.

Checked here independently of the generator (tools/oci-image, built on the oci-spec crate):
the archive holds exactly the image layout, every digest and size matches its blob, and the
single layer holds exactly the built module as `plugin.wasm`, the layout Istio's image fetcher
extracts (pkg/wasm/imagefetcher.go: compat variant, one tar+gzip layer).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from functools import lru_cache
from pathlib import Path

import pytest

from config_check import REPO, SCHEMA_GEN_TARGET

# The first test builds the native tool (tools/*, a few minutes on a fresh machine).
pytestmark = pytest.mark.timeout(900)

OCI_DIR = REPO / "tools" / "oci-image"
LAYOUT_FILES = {"oci-layout", "index.json", "blobs", "blobs/sha256"}


@lru_cache(maxsize=1)
def oci_image() -> Path:
    subprocess.run(["cargo", "build", "--quiet", "--manifest-path", str(OCI_DIR / "Cargo.toml"),
                    "--target-dir", str(SCHEMA_GEN_TARGET)], check=True, cwd=REPO, timeout=900)
    return SCHEMA_GEN_TARGET / "debug" / "oci-image"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def image(wasm, tmp_path_factory):
    out = tmp_path_factory.mktemp("oci") / "identity_filter.oci.tar"
    run = subprocess.run([str(oci_image()), str(wasm), str(out), "9.9.9"], capture_output=True,
                         text=True, check=True, timeout=120)
    with tarfile.open(out) as tar:
        members = {m.name.rstrip("/"): m for m in tar.getmembers()}
        files = {name: tar.extractfile(m).read() for name, m in members.items() if m.isfile()}
    return {"path": out, "stdout": run.stdout, "members": members, "files": files,
            "wasm": wasm.read_bytes()}


def blob(image, digest: str) -> bytes:
    algorithm, hexdigest = digest.split(":")
    data = image["files"][f"blobs/{algorithm}/{hexdigest}"]
    assert sha256(data) == digest, f"blob {digest} does not hash to its name"
    return data


def manifest(image) -> dict:
    index = json.loads(image["files"]["index.json"])
    assert index["schemaVersion"] == 2
    [entry] = index["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "9.9.9"
    data = blob(image, entry["digest"])
    assert entry["size"] == len(data)
    return json.loads(data)


def test_archive_holds_exactly_an_image_layout(image):
    names = set(image["members"])
    blobs = {n for n in names if n.startswith("blobs/sha256/") and n != "blobs/sha256"}
    assert names == LAYOUT_FILES | blobs
    assert len(blobs) == 3, "config, layer, manifest"
    assert json.loads(image["files"]["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name in blobs:
        assert sha256(image["files"][name]) == "sha256:" + name.rsplit("/", 1)[1]


def test_manifest_is_the_compat_variant_istio_extracts(image):
    m = manifest(image)
    assert m["schemaVersion"] == 2
    assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert m["annotations"] == {"module.wasm.image/variant": "compat"}
    assert m["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    [layer] = m["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    for descriptor in [m["config"], layer]:
        assert descriptor["size"] == len(blob(image, descriptor["digest"]))


def test_the_only_layer_contains_exactly_the_built_module(image):
    m = manifest(image)
    layer_tar = gzip.decompress(blob(image, m["layers"][0]["digest"]))
    with tarfile.open(fileobj=io.BytesIO(layer_tar)) as tar:
        [member] = tar.getmembers()
        assert member.name == "plugin.wasm" and member.isfile()
        assert tar.extractfile(member).read() == image["wasm"]
    config = json.loads(blob(image, m["config"]["digest"]))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha256(layer_tar)]}
    assert (config["architecture"], config["os"]) == ("wasm", "wasip1")


def test_printed_digests_match_the_archive(image):
    out = image["stdout"]
    index = json.loads(image["files"]["index.json"])
    assert f"manifest  {index['manifests'][0]['digest']}" in out
    assert f"module    {sha256(image['wasm'])}" in out
    assert f"archive   {sha256(image['path'].read_bytes())}" in out


def test_the_same_module_gives_the_same_image(image, tmp_path):
    """A WasmPlugin's `sha256` pins the manifest digest: rebuilding must not change it."""
    module = tmp_path / "module.wasm"
    module.write_bytes(image["wasm"])
    again = tmp_path / "again.tar"
    subprocess.run([str(oci_image()), str(module), str(again), "9.9.9"], capture_output=True,
                   check=True, timeout=120)
    assert again.read_bytes() == image["path"].read_bytes()


def test_a_non_wasm_file_is_refused(tmp_path):
    bogus = tmp_path / "bogus.wasm"
    bogus.write_bytes(b"not wasm")
    result = subprocess.run([str(oci_image()), str(bogus), str(tmp_path / "x.tar")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "not a WebAssembly module" in result.stderr
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed (optional)")
def test_skopeo_reads_the_archive(image):
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{image['path']}:9.9.9"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert json.loads(raw) == manifest(image)

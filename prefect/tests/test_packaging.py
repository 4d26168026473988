"""The runtime distribution (prefect/pyproject.toml) ships the dispatcher only: no dev minter, no
pytest plugin, no test harness, no examples. Those are the dev kit's (devkit/, identity_devkit).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

PREFECT = Path(__file__).resolve().parents[1]
REPO = PREFECT.parent
PYPROJECT = tomllib.loads((PREFECT / "pyproject.toml").read_text())

#: Module names of the dev kit that once lived in the runtime package.
DEV_MODULES = {"testing", "pytest_plugin", "chain", "mint", "gateway", "airflow_testing", "examples"}
#: Imports a runtime module must not make.
DEV_IMPORTS = {"pytest", "identity_devkit", "_pytest"}


def runtime_files() -> list[str]:
    """The files setuptools puts in the wheel, from the same configuration: every module of the
    packages ``packages.find`` finds under ``where``, plus ``package-data``."""
    from setuptools import find_packages

    setuptools_config = PYPROJECT["tool"]["setuptools"]
    (where,) = setuptools_config["packages"]["find"]["where"]
    root = PREFECT / where
    files = []
    for package in find_packages(where=str(root)):
        directory = root.joinpath(*package.split("."))
        files += [str(p.relative_to(root)) for p in directory.glob("*.py")]
        for pattern in setuptools_config.get("package-data", {}).get(package, []):
            files += [str(p.relative_to(root)) for p in directory.glob(pattern)]
    return sorted(files)


def dev_names(names: list[str]) -> list[str]:
    found = []
    for name in names:
        parts = Path(name).with_suffix("").parts
        if parts and parts[0] == "identity_dispatcher" and DEV_MODULES & set(parts[1:]):
            found.append(name)
        if parts and parts[0] == "identity_devkit":
            found.append(name)
    return found


def test_the_runtime_package_lists_no_dev_module():
    files = runtime_files()
    assert "identity_dispatcher/app.py" in files and "identity_dispatcher/assertion.py" in files
    assert not dev_names(files), dev_names(files)
    assert not [f for f in files if not f.endswith(".py")], "the runtime package carries data files"


def test_the_check_sees_a_dev_module():
    assert dev_names(["identity_dispatcher/testing.py", "identity_dispatcher/examples/flows.py",
                      "identity_devkit/jwk.py", "identity_dispatcher/app.py"]) == [
        "identity_dispatcher/testing.py", "identity_dispatcher/examples/flows.py", "identity_devkit/jwk.py"]


def test_no_runtime_module_imports_pytest_or_the_dev_kit():
    offenders = []
    for name in runtime_files():
        tree = ast.parse((PREFECT / "src" / name).read_text(), name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            offenders += [f"{name}: {m}" for m in modules if m.split(".")[0] in DEV_IMPORTS]
    assert not offenders, offenders


def test_the_dev_kit_has_what_left_the_runtime_package():
    devkit = REPO / "devkit" / "src" / "identity_devkit"
    assert {p.stem for p in devkit.iterdir()} >= DEV_MODULES


def _setuptools_builds_this_pyproject() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    major = int(setuptools.__version__.split(".")[0])
    minimum = PYPROJECT["build-system"]["requires"][0].split(">=")[1]
    return major >= int(minimum.split(".")[0])


@pytest.mark.skipif(not _setuptools_builds_this_pyproject(),
                    reason="this venv's setuptools is older than the build-system's requirement")
def test_the_built_wheel_contains_no_dev_module(tmp_path):
    source = tmp_path / "prefect"
    shutil.copytree(PREFECT, source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info",
                                                                  "__pycache__", ".venv"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "-w", str(tmp_path / "out"), str(source)],
                   check=True, timeout=300)
    (wheel,) = (tmp_path / "out").glob("identity_dispatcher-*.whl")
    names = [n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n]
    assert "identity_dispatcher/app.py" in names
    assert not dev_names(names), dev_names(names)
    assert sorted(names) == runtime_files()

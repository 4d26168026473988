"""The filter's own config parser and the Kong meta.json schema, side by side, for the Kong and
Istio tests.

- ``parser_verdicts(docs)``: each document through ``Engine::from_json`` (the code
  ``on_configure`` runs), via ``tools/schema-gen check-lines`` (built once per session).
- ``schema_errors(doc)``: draft-4 errors of ``doc`` against ``kong/identity_filter.meta.json``.
- ``kong_examples()``: every filter config in ``kong/*.yml`` with its file, form and the oldest
  Kong version the file targets (its ``# kong: >=X.Y`` line).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parent.parent
META = REPO / "kong" / "identity_filter.meta.json"
FILTER = "identity_filter"  # identity_filter.wasm → filter name
SCHEMA_GEN_DIR = REPO / "tools" / "schema-gen"
# Its own target dir: never contends with the wasm or unit-test builds for cargo's lock.
SCHEMA_GEN_TARGET = REPO / "target" / "tools"


@lru_cache(maxsize=1)
def schema_gen() -> Path:
    """Build (or reuse) the native `schema-gen` binary."""
    env_bin = os.environ.get("SCHEMA_GEN_BIN")
    if env_bin:
        return Path(env_bin)
    subprocess.run(
        ["cargo", "build", "--quiet", "--manifest-path", str(SCHEMA_GEN_DIR / "Cargo.toml"),
         "--target-dir", str(SCHEMA_GEN_TARGET)],
        check=True, cwd=REPO, timeout=900,
    )
    return SCHEMA_GEN_TARGET / "debug" / "schema-gen"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    path: str = ""
    message: str = ""


def parser_verdicts(docs: list[Any]) -> list[Verdict]:
    """``Engine::from_json`` on each document (objects are serialized as compact JSON; strings
    are passed as they are, like Kong's string form)."""
    lines = [d if isinstance(d, str) else json.dumps(d, separators=(",", ":")) for d in docs]
    assert all("\n" not in line for line in lines), "check-lines takes one document per line"
    out = subprocess.run(
        [str(schema_gen()), "check-lines"], input="".join(line + "\n" for line in lines),
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.splitlines()
    assert len(out) == len(docs), out
    return [Verdict(**json.loads(v)) for v in out]


def parser_verdict(doc: Any) -> Verdict:
    return parser_verdicts([doc])[0]


@lru_cache(maxsize=1)
def meta() -> dict[str, Any]:
    return json.loads(META.read_text())


@lru_cache(maxsize=1)
def validator() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(meta()["config_schema"])


def schema_errors(doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator().iter_errors(doc)]


@dataclass(frozen=True)
class KongExample:
    file: str
    form: str            # "filter_chains/route", "filter_chains/service", "plugins/route", ...
    min_kong: tuple[int, int]
    raw: Any             # as written: an object, or a JSON string (the 3.4 form)

    @property
    def config(self) -> Any:
        return json.loads(self.raw) if isinstance(self.raw, str) else self.raw


def _min_kong(text: str, file: str) -> tuple[int, int]:
    m = re.search(r"^# kong: >=(\d+)\.(\d+)\s*$", text, re.M)
    assert m, f"{file}: no '# kong: >=X.Y' line naming the oldest Kong it targets"
    return int(m.group(1)), int(m.group(2))


def kong_examples() -> list[KongExample]:
    found = []
    for path in sorted((REPO / "kong").glob("*.yml")):
        text = path.read_text()
        doc = yaml.safe_load(text)
        min_kong = _min_kong(text, path.name)
        for service in doc.get("services", []):
            owners = [("service", service)] + [("route", r) for r in service.get("routes", [])]
            for kind, owner in owners:
                for chain in owner.get("filter_chains", []):
                    for f in chain["filters"]:
                        if f["name"] == FILTER:
                            found.append(KongExample(path.name, f"filter_chains/{kind}", min_kong,
                                                     f.get("config")))
                for plugin in owner.get("plugins", []):
                    if plugin["name"] == FILTER:
                        found.append(KongExample(path.name, f"plugins/{kind}", min_kong,
                                                 plugin.get("config")))
    return found

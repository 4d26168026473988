"""Kong's view of the filter: kong/identity_filter.meta.json and the kong/*.yml examples.

Kong validates a filter's `config` against `config_schema` (draft-4) at admin time; the filter's
parser (`Engine::from_json`, the code `on_configure` runs) decides at load time. A config the
schema accepts but the parser refuses is an outage on Kong (every request answered 500
`config_invalid`), so the two must agree, and where they cannot (checks draft-4 cannot express),
the difference is listed in SEMANTIC_ONLY and in docs/kong.md.
"""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any, Iterator

import jsonschema
import pytest

from config_check import (META, REPO, SCHEMA_GEN_DIR, SCHEMA_GEN_TARGET, kong_examples, meta,
                          parser_verdict, parser_verdicts, schema_errors, schema_gen)

# The first test builds the native tool (tools/*, a few minutes on a fresh machine).
pytestmark = pytest.mark.timeout(900)

DRAFT4_ID = "http://json-schema.org/draft-04/schema#"

# Everything a draft-4 schema object may hold. Kong's validator (lua-resty-ljsonschema) is
# draft-4; anything else is at best ignored, at worst a load failure.
DRAFT4_KEYWORDS = {
    "$schema", "id", "$ref", "title", "description", "default", "multipleOf", "maximum",
    "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern",
    "additionalItems", "items", "maxItems", "minItems", "uniqueItems", "maxProperties",
    "minProperties", "required", "additionalProperties", "definitions", "properties",
    "patternProperties", "dependencies", "enum", "type", "format", "allOf", "anyOf", "oneOf", "not",
}
# Keys whose values are maps of names to subschemas (the names are not keywords).
SCHEMA_MAPS = {"properties", "patternProperties", "definitions", "dependencies"}


def minimal() -> dict[str, Any]:
    return {"providers": [{"name": "dev", "issuer": "https://issuer.test", "jwks": {"keys": []}}]}


def changed(path: list[Any], value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(base if base is not None else minimal())
    node = doc
    for step in path[:-1]:
        node = node.setdefault(step, {}) if isinstance(step, str) else node[step]
    node[path[-1]] = value
    return doc


def removed(path: list[Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(base if base is not None else minimal())
    node = doc
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return doc


# ---------------------------------------------------------------------------------------------
# meta.json itself


def test_meta_json_is_what_the_config_types_generate():
    """`make schema` output is committed: a fresh generation equals kong/identity_filter.meta.json."""
    result = subprocess.run([str(schema_gen()), "diff", str(META)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + "\nrun `make schema` and commit the result"


def test_meta_json_has_the_shape_kong_loads():
    """Kong checks the file against {config_schema: <draft-4 metaschema>} and then sets `$schema`."""
    doc = meta()
    assert list(doc) == ["config_schema"]
    schema = doc["config_schema"]
    assert schema["$schema"] == DRAFT4_ID
    jsonschema.Draft4Validator.check_schema(schema)
    kong_filter_meta_schema = {
        "type": "object",
        "properties": {"config_schema": jsonschema.Draft4Validator.META_SCHEMA},
    }
    jsonschema.Draft4Validator(kong_filter_meta_schema).validate(doc)
    assert schema["type"] == "object" and schema["additionalProperties"] is False


def schema_nodes(node: Any, at: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object in the document, with a JSON-pointer-like location."""
    if not isinstance(node, dict):
        return
    yield at, node
    for key, value in node.items():
        if key in SCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                yield from schema_nodes(sub, f"{at}/{key}/{name}")
        elif key in ("items", "additionalItems", "additionalProperties", "not"):
            if isinstance(value, list):
                for i, sub in enumerate(value):
                    yield from schema_nodes(sub, f"{at}/{key}/{i}")
            else:
                yield from schema_nodes(value, f"{at}/{key}")
        elif key in ("allOf", "anyOf", "oneOf"):
            for i, sub in enumerate(value):
                yield from schema_nodes(sub, f"{at}/{key}/{i}")


def test_meta_json_uses_only_draft4_keywords():
    schema = meta()["config_schema"]
    for at, node in schema_nodes(schema):
        unknown = set(node) - DRAFT4_KEYWORDS
        assert not unknown, f"{at or '/'}: non-draft-4 keywords {unknown}"
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(bound, False), bool), f"{at}: draft-4 {bound} is a boolean"
        if "$ref" in node:
            assert node["$ref"].startswith("#/definitions/"), f"{at}: non-local $ref"
            assert len(node) == 1, f"{at}: $ref with siblings is ignored by draft-4 validators"
        assert node.get("required", [None]), f"{at}: an empty `required` is invalid in draft-4"


def test_every_field_has_a_description_and_every_optional_field_a_default():
    """So `GET /schemas/filters/identity_filter` documents the filter in Kong."""
    schema = meta()["config_schema"]
    for at, node in schema_nodes(schema):
        required = set(node.get("required", []))
        for name, prop in node.get("properties", {}).items():
            assert prop.get("description", "").strip(), f"{at}/properties/{name}: no description"
            if name not in required:
                assert "default" in prop, f"{at}/properties/{name}: optional without a default"


# ---------------------------------------------------------------------------------------------
# The kong/ examples

EXAMPLES = kong_examples()


def test_every_kong_form_has_an_example():
    files = {e.file for e in EXAMPLES}
    forms = {e.form for e in EXAMPLES}
    assert {"filter_chains/route", "filter_chains/service", "plugins/route"} <= forms
    assert any(isinstance(e.raw, str) for e in EXAMPLES), "the Kong 3.4 string form"
    assert any(e.min_kong == (3, 4) for e in EXAMPLES)
    assert (REPO / "kong" / "kong.conf").exists()
    assert len(files) >= 4


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.file}:{e.form}")
def test_kong_example_validates_against_the_meta_json_schema(example):
    assert schema_errors(example.config) == []


def test_kong_examples_are_accepted_by_the_filters_parser():
    verdicts = parser_verdicts([e.raw for e in EXAMPLES])
    for example, verdict in zip(EXAMPLES, verdicts):
        assert verdict.ok, f"{example.file}: {verdict.path}: {verdict.message}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.file}:{e.form}")
def test_kong_examples_older_than_3_8_turn_metrics_off(example):
    """Kong 3.4–3.7 trap on metric host calls; metrics default to on."""
    metrics_on = example.config.get("metrics", {}).get("enabled", True)
    if example.min_kong < (3, 8):
        assert metrics_on is False, f"{example.file} targets Kong {example.min_kong}: metrics must be off"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.file}:{e.form}")
def test_kong_string_form_is_only_json_text(example):
    """The 3.4 form: `config` is a JSON string that Kong hands to the filter as it is."""
    if isinstance(example.raw, str):
        assert isinstance(json.loads(example.raw), dict)
    else:
        assert example.min_kong >= (3, 5), "an object config needs Kong 3.5+ and the meta.json"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.file}:{e.form}")
def test_kong_examples_use_host_port_upstreams(example):
    """Under Kong, `dispatch_http_call` takes host:port or an IP, never an Envoy cluster name."""
    for provider in example.config["providers"]:
        upstream = provider.get("upstream")
        if upstream is not None:
            assert "|" not in upstream and ":" in upstream, f"{example.file}: upstream {upstream!r}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.file}:{e.form}")
def test_kong_examples_never_wait_through_set_effective_context(example):
    """Kong ignores `proxy_set_effective_context`, and resuming a request from the root context
    crashes its worker: `waiting: resume` must never reach Kong (`auto` is `own_fetch` there)."""
    waiting = example.config.get("remote_keys", {}).get("waiting", "auto")
    assert waiting in ("auto", "own_fetch", "none"), f"{example.file}: waiting {waiting!r}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.file}:{e.form}")
def test_kong_examples_refuse_client_sent_identity(example):
    """Kong forwards a request header the filter removes: the examples say `reject`."""
    assert example.config.get("headers", {}).get("spoofed_headers") == "reject", example.file


def test_kongs_schema_refuses_waiting_resume_and_defaults_to_reject():
    """The filter accepts `resume` (Envoy's mode); Kong's meta.json does not, since in Kong's host
    it would crash the worker. Client-sent identity is refused by default there."""
    doc = changed(["remote_keys"], {"waiting": "resume"})
    assert schema_errors(doc), "Kong's schema accepts waiting: resume"
    assert parser_verdict(doc).ok, "the filter itself accepts resume (it runs it as own_fetch in Kong)"
    for mode in ("auto", "own_fetch", "none"):
        assert not schema_errors(changed(["remote_keys"], {"waiting": mode})), mode
    spoofed = meta()["config_schema"]["properties"]["headers"]["properties"]["spoofed_headers"]
    assert spoofed["default"] == "reject"


# ---------------------------------------------------------------------------------------------
# Schema and parser agree

# (name, document, both accept?)
AGREEMENT = [
    ("minimal", minimal(), True),
    ("unknown top-level field", changed(["provider"], []), False),
    ("unknown provider field", changed(["providers", 0, "audience"], "x"), False),
    ("unknown nested field", changed(["headers", "claim"], []), False),
    ("unknown metrics field", changed(["metrics", "on"], True), False),
    ("missing providers", {}, False),
    ("missing provider name", removed(["providers", 0, "name"]), False),
    ("missing provider issuer", removed(["providers", 0, "issuer"]), False),
    ("missing claim header target", changed(["headers", "claims"], [{"claim": "sub"}]), False),
    ("providers not a list", changed(["providers"], {"name": "x"}), False),
    ("empty providers", changed(["providers"], []), False),
    ("empty token sources", changed(["token_sources"], []), False),
    ("zero max_token_bytes", changed(["max_token_bytes"], 0), False),
    ("negative clock skew", changed(["providers", 0, "clock_skew_seconds"], -1), False),
    ("clock skew as string", changed(["providers", 0, "clock_skew_seconds"], "60"), False),
    ("clock skew as float", changed(["providers", 0, "clock_skew_seconds"], 1.5), False),
    ("audiences as string", changed(["providers", 0, "audiences"], "api"), False),
    ("boolean as string", changed(["cors_preflight"], "true"), False),
    ("metrics as boolean", changed(["metrics"], False), False),
    ("bad algorithm", changed(["providers", 0, "algorithms"], ["none"]), False),
    ("lower-case algorithm", changed(["providers", 0, "algorithms"], ["rs256"]), False),
    ("bad default action", changed(["default"], "allow"), False),
    ("bad errors.detail", changed(["errors", "detail"], "full"), False),
    ("null provider name", changed(["providers", 0, "name"], None), False),
    ("all algorithms", changed(["providers", 0, "algorithms"],
                               ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
                                "ES384", "EdDSA"]), True),
    ("default authenticated", changed(["default"], "authenticated"), True),
    ("default anonymous", changed(["default"], "anonymous"), True),
    ("detail none", changed(["errors", "detail"], "none"), True),
    ("detail message", changed(["errors", "detail"], "message"), True),
    ("explicit nulls for optional fields",
     changed(["errors", "realm"], None, changed(["providers", 0, "max_lifetime_seconds"], None)), True),
    ("metrics off", changed(["metrics"], {"enabled": False}), True),
    ("query token source", changed(["token_sources"], [{"query": "access_token"}]), True),
    ("cookie token source", changed(["token_sources"], [{"cookie": "session"}]), True),
    ("empty sections", {**minimal(), "headers": {}, "errors": {}, "metrics": {}, "log": {},
                        "rules": []}, True),
    ("rule with an empty match", changed(["rules"], [{"match": {}}]), True),
    ("tick out of range", changed(["remote_keys", "tick_ms"], 5), False),
    ("cache larger than its bound", changed(["cache"], {"max_entries": 4000000000}), False),
    ("cache at its bound", changed(["cache"], {"max_entries": 100000}), True),
    ("clock skew past its bound", changed(["providers", 0, "clock_skew_seconds"], 3601), False),
    ("paths options", changed(["paths"], {"ignore_case": False, "allow_parameters": True}), True),
    ("case per rule", changed(["rules"], [{"match": {"path_prefix": "/a", "ignore_case": False}}]), True),
]


@pytest.mark.parametrize("name,doc,accepted", AGREEMENT, ids=[c[0] for c in AGREEMENT])
def test_schema_and_parser_agree(name, doc, accepted):
    errors = schema_errors(doc)
    verdict = parser_verdict(doc)
    assert (not errors) == accepted, f"schema: {errors or 'accepted'}"
    assert verdict.ok == accepted, f"parser: {verdict}"


# Checks draft-4 cannot express (or that the schema leaves to the parser): the schema accepts
# these, the parser refuses them, naming the field. Kong accepts such a config at admin time
# and the filter then answers every request 500 `config_invalid` (and logs the path), so
# docs/kong.md lists them. (name, document, path in the parser's error)
SEMANTIC_ONLY = [
    ("token source with two locations", changed(["token_sources"], [{"header": "a", "query": "b"}]),
     "token_sources[0]"),
    ("token source with no location", changed(["token_sources"], [{}]), "token_sources[0]"),
    ("prefix without header", changed(["token_sources"], [{"query": "t", "prefix": "x"}]),
     "token_sources[0].prefix"),
    ("blank provider name", changed(["providers", 0, "name"], " "), "providers[0].name"),
    ("empty issuer", changed(["providers", 0, "issuer"], ""), "providers[0].issuer"),
    ("duplicate provider issuer",
     changed(["providers"], [minimal()["providers"][0], {**minimal()["providers"][0], "name": "b"}]),
     "providers[1].issuer"),
    ("invalid header name", changed(["headers", "claims"], [{"claim": "sub", "header": "x sub"}]),
     "headers.claims[0].header"),
    ("forbidden header name", changed(["headers", "strip"], ["Host"]), "headers.strip[0]"),
    ("empty claim path segment", changed(["providers", 0, "require_claims"], ["a..b"]),
     "providers[0].require_claims[0]"),
    ("claim path names longer than 256 bytes together",
     changed(["providers", 0, "require_claims"], [["a" * 200, "b" * 200]]),
     "providers[0].require_claims[0]"),
    ("no audience claim", changed(["providers", 0, "audience_claims"], []), "providers[0].audience_claims"),
    ("provider claim header with claim and identity",
     changed(["providers", 0, "claim_headers"], [{"claim": "sub", "identity": "subject", "header": "x-a"}]),
     "providers[0].claim_headers[0]"),
    ("path and path_prefix together", changed(["rules"], [{"match": {"path": "/a", "path_prefix": "/b"}}]),
     "rules[0].match"),
    ("relative path prefix", changed(["rules"], [{"match": {"path_prefix": "api"}}]),
     "rules[0].match.path_prefix"),
    ("lower-case method", changed(["rules"], [{"match": {"methods": ["get"]}}]),
     "rules[0].match.methods[0]"),
    ("jwks that is not a key set", changed(["providers", 0, "jwks"], {"keys": "none"}),
     "providers[0].jwks"),
    ("no key source", removed(["providers", 0, "jwks"]), "providers[0]"),
    ("two key sources", changed(["providers", 0, "jwks_uri"], "https://issuer.test/keys"), "providers[0]"),
    ("jwks_uri without upstream",
     changed(["providers", 0, "jwks_uri"], "https://issuer.test/keys", removed(["providers", 0, "jwks"])),
     "providers[0].upstream"),
    ("claim and identity together",
     changed(["headers", "claims"], [{"claim": "sub", "identity": "subject", "header": "x-a"}]),
     "headers.claims[0]"),
    ("assertion without keys", changed(["headers", "assertion"], {"audience": "d", "keys": []}),
     "headers.assertion.keys"),
    ("assertion secret too short",
     changed(["headers", "assertion"], {"audience": "d", "keys": [{"kid": "a", "secret": "short"}]}),
     "headers.assertion.keys[0].secret"),
    ("empty requirement", changed(["rules"], [{"require": {}}]), "rules[0].require"),
    ("requirement on an anonymous rule",
     changed(["rules"], [{"require": {"roles": {"any_of": ["a"]}}, "allow_anonymous": True}]),
     "rules[0].require"),
    ("claim condition with two tests",
     changed(["rules"], [{"require": {"claims": [{"claim": "a", "equals": 1, "in": [1]}]}}]),
     "rules[0].require.claims[0]"),
    ("host with a port", changed(["rules"], [{"match": {"hosts": ["a:80"]}}]), "rules[0].match.hosts[0]"),
    ("rule path not in canonical form", changed(["rules"], [{"match": {"path_prefix": "/%61dmin"}}]),
     "rules[0].match.path_prefix"),
]


@pytest.mark.parametrize("name,doc,path", SEMANTIC_ONLY, ids=[c[0] for c in SEMANTIC_ONLY])
def test_semantic_checks_are_parser_only(name, doc, path):
    assert schema_errors(doc) == [], "the schema now expresses this check: move it to AGREEMENT"
    verdict = parser_verdict(doc)
    assert not verdict.ok
    assert verdict.path == path or verdict.path.startswith(path + "."), verdict


def test_semantic_checks_are_documented_for_kong_users():
    doc = (REPO / "docs" / "kong.md").read_text()
    for name, _, path in SEMANTIC_ONLY:
        field = path.split("[")[0].split(".")[0]
        assert f"`{field}" in doc, f"docs/kong.md does not mention `{field}` ({name})"


# ---------------------------------------------------------------------------------------------
# Mutations of every example: schema and parser judge each the same way

OPEN_OBJECTS = ("jwks", "private_jwk", "equals", "in")  # RFC 7517 documents / any JSON value


def mutants(doc: Any, at: tuple = ()) -> Iterator[tuple[str, Any]]:
    """(description, mutated copy): an unknown field in every object, a wrong type at every
    leaf and list, and every field dropped."""
    def put(path: tuple, value: Any, drop: bool = False) -> Any:
        out = copy.deepcopy(doc_root)
        node = out
        for step in path[:-1]:
            node = node[step]
        if drop:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return out

    doc_root = doc

    def walk(node: Any, path: tuple) -> Iterator[tuple[str, Any]]:
        if path and path[-1] in OPEN_OBJECTS:
            return
        where = "/".join(map(str, path)) or "(root)"
        if isinstance(node, dict):
            yield f"{where}: unknown field", put(path + ("x_unknown",), 1) if path else {**node, "x_unknown": 1}
            for k, v in node.items():
                yield f"{where}/{k}: dropped", put(path + (k,), None, drop=True)
                yield from walk(v, path + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from walk(v, path + (i,))
        if path:
            wrong = {str: 12345, bool: "yes", int: "7", float: "7", list: "x", dict: "x"}.get(type(node))
            if wrong is not None:
                yield f"{where}: wrong type", put(path, wrong)
            if isinstance(node, (list, dict)):
                yield f"{where}: number instead", put(path, 3)

    yield from walk(doc, at)


def object_examples() -> list[tuple[str, Any]]:
    return [(f"{e.file}:{e.form}", e.config) for e in EXAMPLES]


@pytest.mark.parametrize("name,config", object_examples(), ids=[n for n, _ in object_examples()])
def test_mutated_examples_are_judged_alike_by_schema_and_parser(name, config):
    cases = list(mutants(config))
    assert len(cases) > 20
    verdicts = parser_verdicts([doc for _, doc in cases])
    disagreements = []
    for (what, doc), verdict in zip(cases, verdicts):
        schema_ok = not schema_errors(doc)
        if schema_ok != verdict.ok and not semantic(verdict):
            disagreements.append(f"{what}: schema {'accepts' if schema_ok else 'refuses'}, parser "
                                 f"{'accepts' if verdict.ok else f'refuses ({verdict.path}: {verdict.message})'}")
    assert not disagreements, "\n".join(disagreements)


def semantic(verdict) -> bool:
    """A parser refusal of the SEMANTIC_ONLY kinds (dropping a field can produce them, e.g. a
    token source left with no location, or a rule whose `require` loses its only condition)."""
    messages = ("set exactly one of", "must not be empty", "only allowed with", "set at most one",
                "must start with", "an empty requirement", "set `any_of` or `all_of`",
                "is required with", "at least one", "must be between", "cannot be combined",
                "without port")
    return not verdict.ok and any(m in verdict.message for m in messages)

"""Kong-safe by construction: checks on the built module and on the host glue's source.

Kong cannot run here (see docs/kong.md), so what its Wasm host (ngx_wasm_module) does
differently is guarded by what can be checked:

- The module's import section (parsed here, no tool needed): every import is a host function
  ngx_wasm_module links, so the module instantiates on Kong at all; and `proxy_get_log_level`
  is not even imported, so it can never be called.
- The proxy-wasm Rust SDK imports every host function its traits can reach (gRPC, queues,
  `proxy_done`, foreign functions, metrics) because its context traits are used as trait
  objects. ngx_wasm_module links those as stubs that trap when called, so for them the guarantee
  is in the source: the glue (src/filter/) never calls the SDK APIs that reach them, metric calls
  live in one file behind `metrics.enabled`, shared data behind `remote_keys.shared_data`.
- Properties are read in one place, from an HTTP context (Kong 3.9 and older can crash the
  worker on a read in the root context), and `on_configure` only ever returns `true`.
The measured behaviour of Kong's host (../shared/HOSTS.md) is tested natively against a host
that behaves like ngx_wasm_module, beside one that behaves like Envoy: src/filter/tests.rs. The
core's side (content-type on local responses, config errors instead of panics, metrics switch,
host:port upstreams, `:dispatch_status`) is tested natively too: tools/schema-gen/tests/
kong_safe.rs and src/fetch.rs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GLUE = REPO / "src" / "filter"

# Host functions ngx_wasm_module links (src/common/proxy_wasm/ngx_proxy_wasm_host.c, Kong
# 3.4–3.10), working or as trapping stubs. An import outside this set fails instantiation.
KONG_PROXY_WASM = {
    "proxy_log", "proxy_get_log_level", "proxy_set_effective_context", "proxy_context_finalize",
    "proxy_done", "proxy_resume_stream", "proxy_continue_stream", "proxy_close_stream",
    "proxy_send_http_response", "proxy_send_local_response", "proxy_resume_http_stream",
    "proxy_continue_request", "proxy_continue_response", "proxy_get_buffer",
    "proxy_get_buffer_bytes", "proxy_set_buffer", "proxy_set_buffer_bytes",
    "proxy_get_map_values", "proxy_get_header_map_pairs", "proxy_get_header_map_value",
    "proxy_set_map_values", "proxy_set_header_map_pairs", "proxy_add_header_map_value",
    "proxy_replace_header_map_value", "proxy_remove_header_map_value",
    "proxy_open_shared_kvstore", "proxy_get_shared_kvstore_key_values", "proxy_get_shared_data",
    "proxy_set_shared_kvstore_key_values", "proxy_set_shared_data",
    "proxy_add_shared_kvstore_key_values", "proxy_remove_shared_kvstore_key",
    "proxy_delete_shared_kvstore", "proxy_open_shared_queue", "proxy_register_shared_queue",
    "proxy_dequeue_shared_queue_item", "proxy_dequeue_shared_queue",
    "proxy_enqueue_shared_queue_item", "proxy_enqueue_shared_queue", "proxy_delete_shared_queue",
    "proxy_create_timer", "proxy_delete_timer", "proxy_create_metric", "proxy_define_metric",
    "proxy_get_metric_value", "proxy_get_metric", "proxy_set_metric_value", "proxy_record_metric",
    "proxy_increment_metric_value", "proxy_increment_metric", "proxy_delete_metric",
    "proxy_remove_metric", "proxy_dispatch_http_call", "proxy_http_call",
    "proxy_dispatch_grpc_call", "proxy_grpc_call", "proxy_open_grpc_stream", "proxy_grpc_stream",
    "proxy_send_grpc_stream_message", "proxy_grpc_send", "proxy_cancel_grpc_call",
    "proxy_grpc_cancel", "proxy_close_grpc_call", "proxy_grpc_close", "proxy_get_status",
    "proxy_call_custom_function", "proxy_call_foreign_function",
    "proxy_set_tick_period_milliseconds", "proxy_get_current_time_nanoseconds",
    "proxy_get_configuration", "proxy_resolve_shared_queue", "proxy_clear_route_cache",
    "proxy_get_property", "proxy_set_property",
}
# ngx_wasm_module's WASI preview1 (src/wasm/wasi/ngx_wasi_preview1_host.c).
KONG_WASI = {
    "args_get", "args_sizes_get", "clock_time_get", "environ_get", "environ_sizes_get",
    "fd_close", "fd_fdstat_get", "fd_prestat_get", "fd_prestat_dir_name", "fd_read", "fd_seek",
    "fd_write", "path_open", "proc_exit", "random_get",
}
# Imported but never to be called on Kong: stubs that trap (or, for metrics, trap on 3.4–3.7).
# The glue must not use the SDK APIs that reach them (checked below in the source).
TRAPS_ON_KONG = {
    "get_log_level": "proxy_get_log_level",
    "dispatch_grpc_call": "proxy_grpc_call",
    "open_grpc_stream": "proxy_grpc_stream",
    "send_grpc_stream_message": "proxy_grpc_send",
    "cancel_grpc_call": "proxy_grpc_cancel",
    "cancel_grpc_stream": "proxy_grpc_cancel",
    "close_grpc_stream": "proxy_grpc_close",
    "get_grpc_status": "proxy_get_status",
    "register_shared_queue": "proxy_register_shared_queue (queues are disallowed)",
    "resolve_shared_queue": "proxy_resolve_shared_queue",
    "dequeue_shared_queue": "proxy_dequeue_shared_queue (queues are disallowed)",
    "enqueue_shared_queue": "proxy_enqueue_shared_queue (queues are disallowed)",
    "call_foreign_function": "proxy_call_foreign_function (before Kong 3.10)",
    "done": "proxy_done",
    "resume_http_response": "proxy_continue_stream(response): no yielding in response phases",
    "close_http_stream": "proxy_close_stream",
    "reset_http_response": "proxy_close_stream",
}


def read_leb(data: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i


def wasm_imports(path: Path) -> list[tuple[str, str, int]]:
    """(module, name, kind) of every import (kind 0 = function), from the binary's section 2."""
    data = path.read_bytes()
    assert data[:4] == b"\0asm", f"{path} is not a wasm module"
    imports, i = [], 8
    while i < len(data):
        section, i = data[i], i + 1
        size, i = read_leb(data, i)
        end = i + size
        if section == 2:
            count, i = read_leb(data, i)
            for _ in range(count):
                n, i = read_leb(data, i)
                module, i = data[i:i + n].decode(), i + n
                n, i = read_leb(data, i)
                name, i = data[i:i + n].decode(), i + n
                kind, i = data[i], i + 1
                if kind == 0:      # function: type index
                    _, i = read_leb(data, i)
                elif kind == 1:    # table: reftype + limits
                    i += 1
                    flags, i = data[i], i + 1
                    _, i = read_leb(data, i)
                    if flags & 1:
                        _, i = read_leb(data, i)
                elif kind == 2:    # memory: limits
                    flags, i = data[i], i + 1
                    _, i = read_leb(data, i)
                    if flags & 1:
                        _, i = read_leb(data, i)
                elif kind == 3:    # global: valtype + mutability
                    i += 2
                else:
                    raise AssertionError(f"unknown import kind {kind}")
                imports.append((module, name, kind))
        i = end
    return imports


def test_every_import_is_linked_by_kongs_wasm_host(wasm):
    """Kong instantiates the module only when each import exists in ngx_wasm_module."""
    imports = wasm_imports(wasm)
    assert imports, "no imports parsed"
    unknown = [(m, n) for m, n, kind in imports
               if kind != 0 or (m, n) not in {("env", f) for f in KONG_PROXY_WASM}
               | {("wasi_snapshot_preview1", f) for f in KONG_WASI}]
    assert not unknown, f"imports Kong's host does not provide: {unknown}"


def test_proxy_get_log_level_is_not_even_imported(wasm):
    """Kong has no `proxy_get_log_level`; the module cannot reach it at all."""
    names = {n for _, n, _ in wasm_imports(wasm)}
    assert "proxy_get_log_level" not in names
    assert "proxy_log" in names and "proxy_http_call" in names  # the parser sees real imports


def rust_code(path: Path) -> str:
    """Source without comments, strings and char literals (kept as blanks), for brace matching."""
    text = path.read_text()
    text = re.sub(r'r(#*)".*?"\1', '""', text, flags=re.S)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text, flags=re.S)
    text = re.sub(r"'(?:\\.|[^\\'])'", "' '", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return text


def blocks(code: str, header: str) -> list[tuple[str, str]]:
    """(header line, body) of every item whose header matches the regex `header`."""
    found = []
    for m in re.finditer(header, code):
        start = code.index("{", m.end() - 1) if code[m.end() - 1] != "{" else m.end() - 1
        depth, i = 0, start
        while True:
            if code[i] == "{":
                depth += 1
            elif code[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        found.append((m.group(0), code[start + 1:i]))
    return found


GLUE_FILES = sorted(GLUE.glob("*.rs"))


def glue_code() -> dict[str, str]:
    return {p.name: rust_code(p) for p in GLUE_FILES}


def test_only_the_filter_folder_talks_to_the_host():
    outside = [p for p in (REPO / "src").rglob("*.rs")
               if GLUE not in p.parents and "proxy_wasm" in rust_code(p)]
    assert not outside, f"host calls outside src/filter/: {outside}"


@pytest.mark.parametrize("api,host_function", sorted(TRAPS_ON_KONG.items()))
def test_the_glue_never_calls_what_traps_on_kong(api, host_function):
    for name, code in glue_code().items():
        assert not re.search(rf"\b{api}\s*\(", code), f"src/filter/{name} calls {api} → {host_function}"


def test_metrics_are_defined_only_behind_the_switch():
    """Kong 3.4–3.7 trap on metric calls; with `metrics.enabled: false` none may happen. Metric
    ids are `Option`s that stay `None` when disabled, so increments and records are no-ops:
    every file that defines metrics (calls `.define_metric(` on the host) returns early on a
    negated `enabled` flag, and every increment/record takes an id bound by `Some(id)`."""
    users = 0
    for name, code in glue_code().items():
        if re.search(r"\.define_metric\s*\(", code):
            users += 1
            assert re.search(r"if\s+!\s*\w*enabled\b", code), \
                f"src/filter/{name} defines metrics without a `!enabled` guard"
        for call in re.finditer(r"\.(increment_metric|record_metric)\s*\(\s*(\w+)", code):
            assert call.group(2) == "id" and "Some(id)" in code, \
                f"src/filter/{name}: {call.group(1)} must take an `id` bound by `Some(id)`"
    assert users >= 2
    metrics = glue_code()["metrics.rs"]
    define = [body for head, body in blocks(metrics, r"pub fn define\s*\([^)]*\)[^{]*\{")]
    assert define, "metrics.rs: no `pub fn define(.., enabled: bool)`"
    before_first_call = define[0].split("counter(")[0]
    assert re.search(r"if\s+!\s*enabled\s*\{[^}]*return", before_first_call), \
        "Metrics::define must return before defining anything when disabled"


def test_shared_data_is_only_used_behind_its_switch():
    """Without an shm_kv zone (Kong < 3.7, or none configured) shared-data calls trap. When and
    where they may happen is tested natively (src/filter/tests.rs); here: only the files that
    read a shared-data switch call them: remote keys (`remote_keys.shared_data`) and DPoP replay
    records (`dpop.shared_replay`, and only in Envoy)."""
    switches = {
        "remote_keys.rs": [r"remote_keys\s*\.\s*shared_data"],
        "replay.rs": [r"dpop\s*\.\s*shared_replay", r"kind\s*==\s*HostKind::Envoy"],
    }
    users = set()
    for name, code in glue_code().items():
        if re.search(r"\.(get_shared|set_shared)\s*\(", code):
            users.add(name)
            assert name in switches, f"src/filter/{name} uses shared data behind no known switch"
            for switch in switches[name]:
                assert re.search(switch, code), f"src/filter/{name} uses shared data without {switch}"
    assert users == set(switches)


def test_properties_are_read_only_through_the_profile():
    """Kong 3.9 and older can crash the worker on a property read in the root context
    (`on_configure`, `on_tick`). Properties are read in two places, `State::profile` and what it
    calls (host detection, the shm_kv zone), and `peer_certificate` (Envoy's client-certificate
    attribute, read only for a certificate-bound token), which only `Request::on_request_headers`
    calls; the native
    tests check every scenario for a root-context read (`Mock::assert_healthy`)."""
    code = glue_code()
    readers = {name for name, c in code.items() if re.search(r"\.property\s*\(", c)}
    assert "mod.rs" in readers and readers <= {"host.rs", "mod.rs"}, readers
    callers = re.findall(r"\.profile\s*\(\s*host\b", code["mod.rs"])
    assert len(callers) == 1
    request_headers = blocks(code["mod.rs"], r"pub fn on_request_headers\s*\([^)]*\)[^{]*\{")
    assert request_headers and re.search(r"\.profile\s*\(\s*host\b", request_headers[0][1])
    calls = lambda name, text: re.findall(rf"(?<!fn )\b{name}\s*\(\s*host\b", text)  # noqa: E731
    assert len(calls("facts", code["mod.rs"])) == 1 and calls("facts", request_headers[0][1])
    # The certificate is read lazily (only for a certificate-bound token), by a closure made
    # in on_request_headers: the one call is there.
    assert len(calls("peer_certificate", code["mod.rs"])) == 1
    assert calls("peer_certificate", request_headers[0][1])


def test_on_configure_only_ever_returns_true():
    """Returning false breaks Kong's whole filter-chain rebuild on that worker. The glue's
    `Root::on_configure` ends with `true` and returns nothing else; the proxy-wasm binding only
    hands over to it (and the native tests call it with good and bad configurations)."""
    bodies = [body for code in glue_code().values()
              for _, body in blocks(code, r"fn\s+on_configure\s*\([^)]*\)\s*->\s*bool\s*\{")]
    assert len(bodies) == 2
    glue = [b for b in bodies if "Engine::from_json" in b]
    assert len(glue) == 1
    returns = re.findall(r"\breturn\b\s*([^;]*);", glue[0])
    assert all(r.strip() == "true" for r in returns), returns
    assert re.search(r"\btrue\s*$", glue[0].strip()), "on_configure must end with `true`"
    binding = [b for b in bodies if b not in glue]
    assert re.search(r"self\.root\.on_configure\([^)]*\)\s*$", binding[0].strip()), binding

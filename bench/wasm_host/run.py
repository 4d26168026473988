#!/usr/bin/env python3
"""Where a request's time goes inside the filter, under Wasmtime 26 (Kong's runtime) and V8
(Envoy's): the module in an emulated proxy-wasm 0.2.1 host, no proxy around it.

    .venv/bin/python bench/wasm_host/run.py [--no-build] [--no-v8] [--batches 9] [--batch-ms 100]
                                            [--only NAME,NAME] [--json OUT] [--profile NAME]
                                            [--also LABEL=MODULE.wasm]

Loads target/wasm32-wasip1/release/identity_filter.wasm and bench/noop-filter's module (the
floor) into an emulated host that implements every import of the module (what the request path
uses for real, the rest as counted stubs answering Unimplemented), configures the filter like
bench/bench.py (inline RS256 key set, `sub` copied into a header; switches per variant) and
drives requests through the real callbacks (proxy_on_context_create, proxy_on_request_headers,
proxy_on_log, proxy_on_done, proxy_on_delete) with one valid RS256 token, so every request
after the first is a cache hit. The request loop itself runs in wasm (driver.wat): a batch is
one call into the guest. Every host call is counted and timed inside the host, and what one
guest→host call costs around that is calibrated with an empty import, so per request

    total = guest + host (emulated functions and the calls into them) + harness (header reset)

and `guest` — the module's own work — does not depend on how fast the emulated host is.

Two hosts, one design and one JSON output: src/main.rs (Rust, the `wasmtime` 26 crate, the
version Kong 3.x's ngx_wasm_module embeds) and host_v8.mjs (JavaScript, node's V8, the engine
Envoy embeds). This script writes the scenario (keys, token, configurations, headers), builds
and runs both, checks that every variant did what it should (allowed with the identity header,
or 401), and prints the table. Each variant: warmup (~0.5 s), then --batches batches of about
--batch-ms; median per request and the spread (min–max of the batches). Batch times: thread
CPU time (Wasmtime), process CPU time (V8: node has no thread clock); inside host functions:
wall clock. (The `wasmtime` PyPI package is not the host: one call from wasm into Python costs
~32 µs there, which buries a ~10 µs guest; it only assembles driver.wat.)

--profile NAME: `perf record` of the Wasmtime host running that variant (Wasmtime's perf map)
with a copy of the module that keeps its function names (target/wasm-names/, relinked without
`strip`; same code), then the guest's functions ranked by self and by inclusive time.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(1, str(REPO / "tests"))  # test_dpop's proof helpers
import devkit_path  # noqa: F401,E402  (identity_devkit on sys.path)

FILTER = REPO / "target" / "wasm32-wasip1" / "release" / "identity_filter.wasm"
NOOP_DIR = REPO / "bench" / "noop-filter"
NOOP = REPO / "target" / "wasm32-wasip1" / "release" / "noop_filter.wasm"
NAMES_DIR = REPO / "target" / "wasm-names"
# Built with the workspace's `wasm-host` profile (cargo's default release; see Cargo.toml).
HOST_BIN = REPO / "target" / "wasm-host" / "wasm-host"

ISSUER = "https://issuer.bench.test"
AUDIENCE = "api://bench"
SUBJECT = "bench-user"
SUBJECT_HEADER = "x-identity-subject"
ASSERTION_HEADER = "x-identity-assertion"
DPOP_BASE_URL = "https://api.bench.test"


class HarnessError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------
# The scenario: keys, token, configurations, variants (shared with host_v8.mjs through JSON)
# ---------------------------------------------------------------------------------------------

def scenario(proof_count: int = 0) -> dict[str, Any]:
    """The variants; ``proof_count`` DPoP proofs for dpop-es256 (one per request it makes)."""
    import jwt  # PyJWT, in .venv
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    import test_dpop  # tests/test_dpop.py: the proof helpers the integration tests use

    from identity_devkit import jwk

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())

    def token(**extra: Any) -> str:
        claims = {"iss": ISSUER, "sub": SUBJECT, "aud": AUDIENCE, "iat": now,
                  "exp": now + 3 * 3600, **extra}
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "rsa-1"})

    ed = ed25519.Ed25519PrivateKey.generate()
    ed_d = ed.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    ed_x = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ed_jwk = {"kty": "OKP", "crv": "Ed25519", "x": jwk.b64url(ed_x), "d": jwk.b64url(ed_d)}

    ec_key = ec.generate_private_key(ec.SECP256R1())

    def config(*, log: bool = False, claims: bool = True, metrics: bool = True,
               cache: bool = True, assertion: dict[str, Any] | None = None,
               es256: bool = False, dpop: bool = False) -> str:
        # bench/bench.py's filter_config, with the switches below (es256: the provider's key is
        # P-256; dpop: it requires DPoP as bench.py's DPoP variant does).
        c: dict[str, Any] = {
            "providers": [{"name": "bench", "issuer": ISSUER, "audiences": [AUDIENCE],
                           "jwks": jwk.jwks(jwk.public_jwk(ec_key, kid="ec-1") if es256 else
                                            jwk.public_jwk(key, kid="rsa-1")),
                           "algorithms": ["ES256" if es256 else "RS256"]}],
            "default": "authenticated",
            "headers": {"claims": [{"claim": "sub", "header": SUBJECT_HEADER}] if claims else []},
            "log": {"decisions": log},
            "metrics": {"enabled": metrics},
        }
        if assertion:
            c["headers"]["assertion"] = {"audience": "svc", **assertion}
        if not cache:
            c["cache"] = {"max_entries": 0}
        if dpop:
            c["providers"][0]["dpop"] = {"mode": "required", "algorithms": ["ES256"],
                                         "max_age_seconds": 3600}
            c["dpop"] = {"public_base_url": DPOP_BASE_URL}
        return json.dumps(c)

    hs = {"keys": [{"kid": "hs-1", "secret": "bench-assertion-secret-0123456789abcdef"}]}
    ed_a = {"keys": [{"kid": "ed-1", "private_jwk": ed_jwk}]}

    def headers(tok: str | None) -> list[list[str]]:
        # What a proxy shows the filter for `wrk -H 'authorization: Bearer …'` (Envoy adds the
        # last two; Kong shows the request as received plus the pseudo-headers).
        h = [[":authority", "bench.test"], [":path", "/api/bench"], [":method", "GET"],
             [":scheme", "http"], ["user-agent", "wrk"], ["accept", "*/*"]]
        if tok:
            h.append(["authorization", "Bearer " + tok])
        h += [["x-forwarded-proto", "http"],
              ["x-request-id", "4f7c2a9e-1b3d-4c5e-8f60-718293a4b5c6"]]
        return h

    tok = token()
    long_tok = token(pad="x" * 2048)

    def es256_token(**extra: Any) -> str:
        claims = {"iss": ISSUER, "sub": SUBJECT, "aud": AUDIENCE, "iat": now,
                  "exp": now + 3 * 3600, **extra}
        return jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "ec-1"})

    # DPoP (bench/bench.py's DPoP row): a token bound to a client key, and a fresh proof of
    # that key per request (each sent once: the host hands them out in order).
    client = ec.generate_private_key(ec.SECP256R1())
    client_jwk = test_dpop.public_jwk(client)
    es_tok, bound_tok = es256_token(), es256_token(cnf={"jkt": test_dpop.thumbprint(client_jwk)})
    proofs = [test_dpop.proof(client, "GET", DPOP_BASE_URL + "/api/bench", bound_tok,
                              jwk_=client_jwk) for _ in range(proof_count)]
    dpop_headers = headers(None) + [["authorization", "DPoP " + bound_tok]]
    allow = {"action": 0, "status": None, "set": {SUBJECT_HEADER: SUBJECT}, "gone": ["authorization"]}

    def v(name: str, what: str, module: Path, cfg: str | None, hdrs: list[list[str]],
          expect: dict[str, Any], weight: float = 1.0) -> dict[str, Any]:
        return {"name": name, "what": what, "module": str(module), "config": cfg or "",
                "headers": hdrs, "expect": expect, "weight": weight}

    variants = [
        v("noop", "no-op proxy-wasm filter (the floor)", NOOP, None, headers(tok),
          {"action": 0, "status": None}),
        v("cached", "cached RS256, logs off, no assertion (make bench's config)", FILTER,
          config(), headers(tok), allow),
        v("cached+log", "… + decision log (the default)", FILTER, config(log=True), headers(tok),
          {**allow, "logs": 1}),
        v("cached+hs256", "… + HS256 assertion", FILTER, config(assertion=hs), headers(tok),
          {**allow, "set": {SUBJECT_HEADER: SUBJECT, ASSERTION_HEADER: None}}),
        v("cached+eddsa", "… + EdDSA assertion", FILTER, config(assertion=ed_a), headers(tok),
          {**allow, "set": {SUBJECT_HEADER: SUBJECT, ASSERTION_HEADER: None}}),
        v("cached+log+eddsa", "… + decision log + EdDSA assertion", FILTER,
          config(log=True, assertion=ed_a), headers(tok),
          {**allow, "logs": 1, "set": {SUBJECT_HEADER: SUBJECT, ASSERTION_HEADER: None}}),
        v("cached-claims", "ablation: no claim header", FILTER, config(claims=False),
          headers(tok), {"action": 0, "status": None, "gone": ["authorization"]}),
        v("cached-metrics", "ablation: metrics off", FILTER, config(metrics=False), headers(tok),
          allow),
        v("cached+2KiB", "ablation: token 2 KiB longer", FILTER, config(), headers(long_tok),
          allow),
        v("missing-401", "no token: 401", FILTER, config(), headers(None),
          {"action": 1, "status": 401}),
        v("uncached", "cache off: full RS256 verification", FILTER, config(cache=False),
          headers(tok), allow, weight=0.3),
        v("es256-cached", "cached ES256 (DPoP's bearer reference)", FILTER, config(es256=True),
          headers(es_tok), allow),
        v("es256-uncached", "cache off: full ES256 verification", FILTER,
          config(es256=True, cache=False), headers(es_tok), allow, weight=0.3),
        # The same verification over many signatures (its cost depends on the scalars).
        {**v("es256-uncached-many", "… a different ES256 token each request", FILTER,
             config(es256=True, cache=False), headers(None), allow, weight=0.3),
         "rotate": {"header": "authorization",
                    "values": ["Bearer " + es256_token(jti=str(i)) for i in range(proof_count)]}},
        {**v("dpop-es256", "DPoP-bound ES256, cached, a fresh ES256 proof each", FILTER,
             config(es256=True, dpop=True), dpop_headers, allow, weight=0.3),
         "rotate": {"header": "dpop", "values": proofs}},
    ]
    return {"variants": variants, "token_bytes": len(tok)}


def check(variant: dict[str, Any], actions: int, status: int | None, headers: dict[str, str],
          logs: list[str], engine: str) -> None:
    """A request did what the variant expects (else the numbers mean nothing)."""
    e, name = variant["expect"], f"{engine}, {variant['name']}"
    problems = []
    if actions != e["action"]:
        problems.append(f"action {actions}, expected {e['action']}")
    if status != e["status"]:
        problems.append(f"local response {status}, expected {e['status']}")
    for k, want in e.get("set", {}).items():
        if k not in headers or (want is not None and headers[k] != want):
            problems.append(f"header {k}={headers.get(k)!r}, expected {want!r}")
    for k in e.get("gone", []):
        if k in headers:
            problems.append(f"header {k} still sent upstream")
    # Decision lines only: the filter also logs, once per configuration, what host it found.
    decisions = [line for line in logs if line.startswith("{")]
    if "logs" in e and len(decisions) != e["logs"]:
        problems.append(f"{len(decisions)} decision log lines, expected {e['logs']}")
    if problems:
        raise HarnessError(f"{name}: {'; '.join(problems)} (logs: {logs[-3:]})")


# ---------------------------------------------------------------------------------------------
# Measurement: the Rust host (Wasmtime 26) and the JavaScript host (V8), same JSON out
# ---------------------------------------------------------------------------------------------

def run_json(cmd: list[str], what: str, timeout: float = 900) -> dict[str, Any]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"{what}: no answer within {timeout:.0f} s") from e
    if p.returncode != 0:
        raise HarnessError(f"{what} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout)


def measure_wasmtime(sc_path: Path, driver_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    return run_json([str(HOST_BIN), str(sc_path), str(driver_path), str(args.batches),
                     str(args.batch_ms)], "bench/wasm_host (Wasmtime)")


def measure_v8(sc_path: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    node = shutil.which("node")
    if not node:
        print("bench-wasmtime: node not found, V8 skipped", file=sys.stderr)
        return None
    # --no-liftoff: TurboFan only, as Envoy sets it (proxy-wasm-cpp-host, v8.cc)
    return run_json([node, "--no-warnings", "--no-liftoff", str(HERE / "host_v8.mjs"), str(sc_path),
                     str(args.batches), str(args.batch_ms)], "bench/wasm_host/host_v8.mjs")


def check_all(sc: dict[str, Any], res: dict[str, Any]) -> None:
    """Every variant's first request did what it should, and every batch too (actions)."""
    for v in sc["variants"]:
        r = res["variants"].get(v["name"])
        if r is None:
            continue
        f = r["first"]
        check(v, f["action"], f["status"], dict(f["headers"]), f["logs"], res["engine"])
        if r.get("reused"):
            raise HarnessError(f"{res['engine']}, {v['name']}: {r['reused']} requests sent a "
                               f"used header value again (more --proofs needed)")
        for b in r["batches"]:
            if b["actions"] != v["expect"]["action"] * b["n"]:
                raise HarnessError(f"{res['engine']}, {v['name']}: actions {b['actions']} "
                                   f"for {b['n']} requests")


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

def summarize(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per variant, µs per request (median over batches, and min–max): total (CPU), guest,
    host (emulated functions and the calls into them), harness; host calls per request.

    Host functions are timed by wall clock (no cheap CPU clock inside them); in a batch where
    the process ran a fraction f = cpu/wall of the time (other load on the machine), their CPU
    share is taken as f times their wall time, and guest = cpu − f·(host + harness)."""
    call_ns = res["call_ns"]
    out = {}
    for name, r in res["variants"].items():
        rows = []
        for b in r["batches"]:
            n, host = b["n"], b["host"]
            f = min(1.0, b["cpu_ns"] / b["wall_ns"]) if b["wall_ns"] else 1.0
            cost = {k: (c * call_ns + ns) * f for k, (c, ns) in host.items()}
            harness = sum(v for k, v in cost.items() if k.startswith("("))
            real = {k: v for k, v in cost.items() if not k.startswith("(")}
            host_ns = sum(real.values())
            total = b["cpu_ns"]
            rows.append({"total": total / n / 1e3, "guest": (total - host_ns - harness) / n / 1e3,
                         "host": host_ns / n / 1e3, "harness": harness / n / 1e3,
                         "calls": {k: host[k][0] / n for k in real},
                         "call_us": {k: v / n / 1e3 for k, v in real.items()}})
        med = {k: statistics.median(row[k] for row in rows)
               for k in ("total", "guest", "host", "harness")}
        spread = {k: (min(row[k] for row in rows), max(row[k] for row in rows))
                  for k in ("total", "guest")}
        out[name] = {**med, "spread": spread, "calls": rows[0]["calls"],
                     "call_us": {k: statistics.median(row["call_us"].get(k, 0) for row in rows)
                                 for k in rows[0]["call_us"]},
                     "n": r["batches"][0]["n"]}
    return out


def table(sc: dict[str, Any], wt: dict[str, Any], v8: dict[str, Any] | None) -> str:
    sw = summarize(wt)
    s8 = summarize(v8) if v8 else {}
    lines = [f"µs per request, median of {len(next(iter(wt['variants'].values()))['batches'])} "
             f"batches [min–max]; token {sc['token_bytes']} bytes. guest = total − host − harness.",
             f"Wasmtime: {wt['engine']}, one guest→host call = {wt['call_ns']:.0f} ns here"
             + (f"; V8: {v8['engine']}, one call = {v8['call_ns']:.0f} ns" if v8 else ""), ""]
    head = "| variant | host calls/req | Wasmtime guest | Wasmtime host+harness |"
    sep = "| --- | ---: | ---: | ---: |"
    if v8:
        head += " V8 guest | V8 host+harness | Wasmtime/V8 guest | guest − noop: Wasmtime / V8 |"
        sep += " ---: | ---: | ---: | ---: |"
    lines += [head, sep]
    noop_w = sw.get("noop", {}).get("guest")
    noop_8 = s8.get("noop", {}).get("guest")
    for v in sc["variants"]:
        name = v["name"]
        w = sw.get(name)
        if not w:
            continue
        g = w["guest"]
        cell = f"{g:.2f} [{w['spread']['guest'][0]:.2f}–{w['spread']['guest'][1]:.2f}]"
        row = (f"| {name} | {sum(w['calls'].values()):.0f} | {cell} | "
               f"{w['host']:.1f}+{w['harness']:.1f} |")
        if v8 and name in s8:
            e = s8[name]
            ecell = f"{e['guest']:.2f} [{e['spread']['guest'][0]:.2f}–{e['spread']['guest'][1]:.2f}]"
            extra = "—"
            if noop_w is not None and noop_8 is not None and name != "noop":
                extra = f"{g - noop_w:.2f} / {e['guest'] - noop_8:.2f}"
            row += (f" {ecell} | {e['host']:.1f}+{e['harness']:.1f} | {g / e['guest']:.2f}x |"
                    f" {extra} |")
        lines.append(row)
    for engine, res in (("Wasmtime", sw), ("V8", s8)):
        d, b, u = (res.get(k, {}).get("guest") for k in ("dpop-es256", "es256-cached",
                                                          "es256-uncached-many"))
        if d is not None and b is not None and u is not None:
            lines.append(f"\nDPoP, {engine}: the proof check (dpop-es256 − es256-cached) "
                         f"{d - b:.1f} µs against one ES256 verification of a new signature "
                         f"(es256-uncached-many − es256-cached) {u - b:.1f} µs + 5 = "
                         f"{u - b + 5:.1f} µs: {(d - b) / (u - b + 5):.2f}x of the limit.")
    lines += ["", "Host calls per request (Wasmtime run; the same in V8):", ""]
    for v in sc["variants"]:
        w = sw.get(v["name"])
        if w:
            calls = ", ".join(f"{k.replace('proxy_', '')} {c:g}" for k, c in sorted(w["calls"].items()))
            lines.append(f"- {v['name']}: {calls}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Profiling (perf + Wasmtime's perfmap, on a build with function names)
# ---------------------------------------------------------------------------------------------

REQUEST_EXPORTS = ("proxy_on_context_create", "proxy_on_request_headers", "proxy_on_log",
                   "proxy_on_done", "proxy_on_delete")


def profile(sc_path: Path, driver_path: Path, args: argparse.Namespace) -> None:
    """perf record of the Wasmtime host running one variant with the named module; the
    functions under the request path's callbacks, ranked by inclusive time, in µs per request
    (their share of the five callbacks' samples times the measured CPU time per request)."""
    if not shutil.which("perf"):
        raise HarnessError("--profile needs perf")
    data = sc_path.parent / "perf.data"
    cmd = [str(HOST_BIN), str(sc_path), str(driver_path), str(args.batches), str(args.batch_ms),
           "--only", args.profile, "--perfmap"]
    try:
        rec = subprocess.run(["perf", "record", "-q", "-F", "9999", "-g", "-o", str(data), "--",
                              *cmd], check=True, timeout=600, capture_output=True, text=True)
        res = json.loads(rec.stdout)
        rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", "dso,sym",
                              "-g", "none", "--percent-limit", "0.05", "--children"],
                             capture_output=True, text=True, timeout=300, check=True)
    except subprocess.CalledProcessError as e:
        raise HarnessError(f"perf failed: {(e.stderr or '')[-2000:]}") from e
    finally:
        data.unlink(missing_ok=True)
    batches_ = res["variants"][args.profile]["batches"]
    per_req = statistics.median(b["cpu_ns"] / b["n"] for b in batches_) / 1e3
    rows = []  # (inclusive %, self %, name) of the guest's functions (Wasmtime's perf map)
    for line in rep.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+(.+?)\s+\[[.k]\]\s+(.*)", line)
        if m and ("perf-" in m.group(3) or "JIT" in m.group(3)):
            name = re.sub(r"::h[0-9a-f]{16}$", "", m.group(4).strip())
            rows.append((float(m.group(1)), float(m.group(2)), name))
    total = sum(c for c, _, n in rows if n in REQUEST_EXPORTS)
    if not total:
        raise HarnessError("no samples in the request callbacks (perf map missing?)\n"
                           + rep.stdout[-2000:])
    guest_self = sum(s_ for c, s_, n in rows if c <= total * 1.001)
    us = per_req / total
    print(f"perf, variant {args.profile}, Wasmtime 26: {per_req:.2f} µs CPU per request with "
          f"the harness (perf adds some); the five callbacks = {total:.1f}% of the samples, "
          f"of which guest code {guest_self * us:.2f} µs and host functions (emulated host, "
          f"calls, timing) {(total - guest_self) * us:.2f} µs.\n")
    print("| guest function | inclusive µs | self µs |\n| --- | ---: | ---: |")
    shown = 0
    for c, s_, name in sorted(rows, key=lambda r: -r[0]):
        if c > total * 1.001 or name.startswith("wasm["):
            continue  # the driver (calls the callbacks) and unnamed trampolines
        print(f"| `{name[:110]}` | {c * us:.2f} | {s_ * us:.2f} |")
        shown += 1
        if shown >= args.top:
            break


# ---------------------------------------------------------------------------------------------

def build(names: bool) -> None:
    env = dict(os.environ)
    env.setdefault("CARGO_BUILD_JOBS", "1")
    for manifest in (REPO / "Cargo.toml", NOOP_DIR / "Cargo.toml"):
        cargo(["build", "--target", "wasm32-wasip1", "--manifest-path", str(manifest)], env)
    cargo(["build", "--profile", "wasm-host", "-p", "wasm-host",
           "--manifest-path", str(REPO / "Cargo.toml")], env)
    if names:
        # The same module with its name section (a custom section: the code is identical),
        # relinked in a copy of target/ so the release build stays as it is.
        if not (NAMES_DIR / "wasm32-wasip1").exists():
            shutil.copytree(REPO / "target" / "wasm32-wasip1", NAMES_DIR / "wasm32-wasip1")
            shutil.copytree(REPO / "target" / "release", NAMES_DIR / "release")
        cargo(["rustc", "--target", "wasm32-wasip1", "--lib", "--crate-type", "cdylib",
               "-p", "identity-filter", "--manifest-path", str(REPO / "Cargo.toml")],
              dict(env, CARGO_TARGET_DIR=str(NAMES_DIR), CARGO_PROFILE_RELEASE_STRIP="none"))


def cargo(args: list[str], env: dict[str, str]) -> None:
    profile = [] if "--profile" in args else ["--release"]
    cmd = ["cargo", args[0], *profile, "--quiet", *args[1:]]
    try:
        subprocess.run(cmd, env=env, check=True, timeout=1800)
    except subprocess.CalledProcessError as e:
        raise HarnessError(f"{' '.join(cmd)} failed ({e.returncode})") from e
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"{' '.join(cmd)}: no end within 30 min") from e


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-v8", action="store_true")
    ap.add_argument("--batches", type=int, default=9)
    ap.add_argument("--batch-ms", type=float, default=100)
    ap.add_argument("--only", help="comma-separated variant names (noop is always run)")
    ap.add_argument("--json", help="write the raw batches here")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=MODULE",
                    help="another build of the filter: its cached and cached+2KiB variants are "
                         "added as cached@LABEL, cached+2KiB@LABEL")
    ap.add_argument("--profile", metavar="NAME")
    ap.add_argument("--top", type=int, default=45, help="--profile: functions shown")
    args = ap.parse_args()
    if not args.no_build:
        build(names=bool(args.profile))
    for path in (FILTER, NOOP, HOST_BIN):
        if not path.exists():
            raise HarnessError(f"{path} is missing (run without --no-build)")
    try:
        import wasmtime  # only to assemble driver.wat (bench/requirements.txt)
    except ImportError as e:
        raise HarnessError("needs the wasmtime Python package: "
                           "pip install -r bench/requirements.txt") from e
    driver = bytes(wasmtime.wat2wasm((HERE / "driver.wat").read_text()))
    rotating = {"dpop-es256", "es256-uncached-many"}
    wants_dpop = (not args.only or bool(rotating & set(args.only.split(","))) or
                  args.profile in rotating)
    # dpop-es256 runs at most ~25k requests in its batches of this size (2 hosts, each its own).
    sc = scenario(int(25_000 * max(1.0, args.batches * args.batch_ms / 900)) if wants_dpop else 0)
    for also in args.also:
        label, _, path = also.partition("=")
        if not Path(path).is_file():
            raise HarnessError(f"--also {also}: no such module")
        sc["variants"] += [dict(v, name=f"{v['name']}@{label}", module=str(Path(path).resolve()),
                                what=f"{v['what']} ({label} build)")
                           for v in list(sc["variants"]) if v["name"] in ("cached", "cached+2KiB")]
    if args.only:
        keep = set(args.only.split(","))
        sc["variants"] = [v for v in sc["variants"] if v["name"] in keep or v["name"] == "noop"]
    with tempfile.TemporaryDirectory(prefix="wasm-host-") as tmp:
        sc_path, driver_path = Path(tmp) / "scenario.json", Path(tmp) / "driver.wasm"
        driver_path.write_bytes(driver)
        if args.profile:
            named = NAMES_DIR / "wasm32-wasip1" / "release" / "identity_filter.wasm"
            sc_path.write_text(json.dumps({**sc, "variants": [
                dict(v, module=str(named) if v["module"] == str(FILTER) else v["module"])
                for v in sc["variants"]]}))
            profile(sc_path, driver_path, args)
            return 0
        sc_path.write_text(json.dumps({**sc, "driver": base64.b64encode(driver).decode()}))
        wt = measure_wasmtime(sc_path, driver_path, args)
        check_all(sc, wt)
        v8 = None if args.no_v8 else measure_v8(sc_path, args)
        if v8:
            check_all(sc, v8)
    print(table(sc, wt, v8))
    if args.json:
        Path(args.json).write_text(json.dumps({"scenario": sc, "wasmtime": wt, "v8": v8},
                                              indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HarnessError as e:
        print(f"bench-wasmtime: {e}", file=sys.stderr)
        sys.exit(1)

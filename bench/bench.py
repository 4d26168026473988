#!/usr/bin/env python3
"""`make bench`: the identity filter against no auth and Envoy's native jwt_authn, in real Envoy.

    python3 bench/bench.py [--smoke] [--rounds 5] [--duration 1] [--warmup 1] [--connections 16]
                           [--only KEY,KEY] [--no-memory] [--no-crypto] [--no-perf] [--list]

Every variant runs in its own Envoy (``--concurrency 1``) in front of the same upstream: a second
Envoy that answers every request itself (``direct_response``), so the upstream costs little and
is the same for all. Each variant gets the same load from ``wrk`` (fixed connections, a warmup,
then a fixed duration) with the same token. Measured per variant: throughput, p50/p99 latency
(wrk's own histogram) and — the primary metric — the Envoy process's CPU time per request
(the run time of all its threads from ``/proc/<pid>/task/*/schedstat``, i.e. utime+stime in
nanoseconds, before and after, divided by the requests Envoy completed in between). All
variants' Envoys run side by side; several rounds visit each in turn and a variant's figure is
the lowest of its rounds (the least disturbed). Every figure is reported as a ratio to the
no-auth run and to the native jwt_authn run of the same kind, measured in the same run (this
machine is shared and noisy).

References besides no auth and jwt_authn: a no-op proxy-wasm filter (bench/noop-filter, the
floor under any Wasm filter), and the same filter making exactly the host calls this filter makes
on a cached hit (``wasm-noop-calls``) and on a missing token (``wasm-noop-deny``) and nothing
else, which prices the host's side of those calls. Also: where the CPU goes (perf, when installed), the Wasm VM's
memory while 100k distinct tokens go through the filter (1M requests), the module size, the VM
start time, and crypto-bench/run.py's Wasmtime vs native table.

DPoP (``wasm-dpop-es256``): a DPoP-bound ES256 token with a fresh proof per request (minted
ahead with tests/test_dpop.py's helpers, each sent once) against the same token as bearer
(``wasm-es256-cache``); the difference is judged against one ES256 verification (this run's
``wasm-es256`` minus ``wasm-es256-cache``) + 5 µs. Then a flood of distinct proofs (120k in all)
and the memory of its Wasm VMs and Envoy, against the bearer variant's.

Writes docs/benchmarks.md and docs/benchmarks.png (``--smoke``: .work/bench/smoke/ instead), the
raw results as JSON next to the work files (.work/bench/results.json). A section of
docs/benchmarks.md between ``<!-- profile:begin -->`` and ``<!-- profile:end -->`` is written by
hand and kept when the report is regenerated.

Needs: the release module (``make wasm``), ``.venv`` (``make venv``), bench/requirements.txt
(matplotlib, wasmtime) and wrk (installed with apt-get when missing and running as root; oha from
cargo is the fallback load generator, without the memory test). Every subprocess has a timeout;
every Envoy is stopped on exit, on failure and on SIGINT/SIGTERM.

Exit status: 0; 1 when a measurement failed or is suspect (the report's notes say which); 2 when
a target is missed. A smoke run judges no target (its verdicts read "not judged (smoke run)"),
so it exits 0 unless a measurement failed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(1, str(REPO / "tests"))  # test_dpop's proof helpers (imported when needed)

import devkit_path  # noqa: F401,E402  (identity_devkit on sys.path)
from identity_devkit import jwk  # noqa: E402
from envoy_runner import (DEFAULT_WASM, Envoy, EnvoyError, find_envoy,  # noqa: E402
                          wasm_filter)

WORK = REPO / ".work" / "bench"
DOCS = REPO / "docs"
PROFILE_BEGIN = "<!-- profile:begin -->"
PROFILE_END = "<!-- profile:end -->"

ISSUER = "https://issuer.bench.test"
AUDIENCE = "api://bench"
SUBJECT = "bench-user"
PATH = "/api/bench"
SUBJECT_HEADER = "x-identity-subject"
ALGS = ["RS256", "PS256", "ES256", "EdDSA", "HS256"]
KIDS = {"RS256": "rsa-1", "PS256": "rsa-1", "ES256": "ec-1", "EdDSA": "ed-1", "HS256": "hmac-1"}
JWT_AUTHN_TYPE = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
            ".v3.HttpConnectionManager")
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TOKEN_LIFETIME = 3 * 3600  # longer than any run, so no token expires mid-run
# DPoP: the proofs name this htu (the filter is told it with `dpop.public_base_url`, so the
# proofs can be minted before the Envoys have ports); their iat must stay inside the provider's
# window for the whole run, so the window is the largest the configuration accepts.
DPOP_BASE_URL = "https://api.bench.test"
DPOP_HTU = DPOP_BASE_URL + PATH
DPOP_MAX_AGE = 3600
DPOP_REPLAY_ENTRIES = 10_000  # dpop.replay_cache_entries (its default)


class BenchError(RuntimeError):
    """A step failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Subprocesses: bounded, and killed with us
# ---------------------------------------------------------------------------------------------

try:
    import ctypes

    _LIBC: Any = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # pragma: no cover
    _LIBC = None


def _die_with_parent() -> None:
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin every thread of a process to ``cpus`` (None: leave it alone)."""
    if not cpus:
        return
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass  # a thread that just ended


def run(cmd: Sequence[str], *, timeout: float, what: str, check: bool = True,
        cpus: set[int] | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command with a timeout (it is killed at the timeout); BenchError on failure.
    ``cpus``: the CPUs it may run on."""

    def child_setup() -> None:
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)

    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                              preexec_fn=child_setup, stdin=subprocess.DEVNULL, **kwargs)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{what}: no answer within {timeout:.0f}s ({' '.join(cmd)})") from e
    except FileNotFoundError as e:
        raise BenchError(f"{what}: {e}") from e
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        raise BenchError(f"{what} failed with status {proc.returncode}: {' '.join(cmd)}\n{tail}")
    return proc


# ---------------------------------------------------------------------------------------------
# Load generators
# ---------------------------------------------------------------------------------------------

WRK_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %.1f, "p90_us": %.1f, ' ..
    '"p99_us": %.1f, "mean_us": %.1f, "max_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max))
end
"""

# Rotates through a file of tokens, one per line (args: file, first index). One wrk thread, so
# one counter: request n carries token (first + n) mod count.
WRK_TOKENS = r"""
local tokens = {}
local index = 0
function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
  end
  index = tonumber(args[2] or "0") or 0
end
function request()
  local t = tokens[(index % #tokens) + 1]
  index = index + 1
  return wrk.format(nil, nil, {["authorization"] = t})
end
""" + WRK_DONE


# DPoP: the same token on every request (``authorization: DPoP <token>``, args[3]) and a fresh
# proof from a file of proofs, one per line (args: file, first line, how many lines it may use).
# A proof is never sent twice (its jti would be a replay): at the end of its share the thread
# stops, and any request still asked for goes without a proof (a 401, counted as such).
WRK_DPOP = r"""
local proofs = {}
local index = 0
local auth = ""
function init(args)
  local first = tonumber(args[2] or "0") or 0
  local count = tonumber(args[3] or "0") or 0
  auth = "DPoP " .. args[4]
  local n = 0
  for line in io.lines(args[1]) do
    if n >= first and #proofs < count and #line > 0 then proofs[#proofs + 1] = line end
    n = n + 1
    if #proofs >= count then break end
  end
end
function request()
  index = index + 1
  local p = proofs[index]
  if p == nil then
    wrk.thread:stop()
    return wrk.format(nil, nil, {["authorization"] = auth})
  end
  return wrk.format(nil, nil, {["authorization"] = auth, ["dpop"] = p})
end
""" + WRK_DONE


@dataclass
class Load:
    """What one load run measured (from the load generator's point of view)."""

    requests: int
    duration_s: float
    rps: float
    p50_us: float
    p99_us: float
    status_errors: int  # responses that were not 2xx/3xx
    socket_errors: int


class LoadGen:
    """wrk (preferred) or oha. ``run`` sends ``connections`` keep-alive connections' worth of
    requests for ``seconds`` and returns the summary."""

    def __init__(self, connections: int, cpus: set[int] | None = None):
        self.connections = connections
        self.cpus = cpus
        self.kind, self.binary = ensure_load_generator()
        self.done_lua = WORK / "wrk-done.lua"
        self.tokens_lua = WORK / "wrk-tokens.lua"
        self.dpop_lua = WORK / "wrk-dpop.lua"

    def version(self) -> str:
        if self.kind == "wrk":
            out = run([self.binary, "-v"], timeout=10, what="wrk -v", check=False)
            text = (out.stdout + out.stderr).strip().splitlines()
            return text[0].split(" Copyright")[0] if text else "wrk"
        out = run([self.binary, "--version"], timeout=10, what="oha --version", check=False)
        return out.stdout.strip() or "oha"

    @property
    def rotates_tokens(self) -> bool:
        return self.kind == "wrk"

    def run(self, url: str, seconds: int, headers: dict[str, str],
            token_file: Path | None = None, first_token: int = 0,
            dpop: tuple[Path, int, int, str] | None = None) -> Load:
        """``dpop``: (proof file, first line, lines it may use, token): a DPoP request with a
        fresh proof each (wrk only)."""
        seconds = max(1, int(seconds))
        if self.kind == "wrk":
            return self._wrk(url, seconds, headers, token_file, first_token, dpop)
        if token_file is not None or dpop is not None:
            raise BenchError("rotating tokens or proofs needs wrk (oha cannot vary a header per "
                             "request)")
        return self._oha(url, seconds, headers)

    def _wrk(self, url: str, seconds: int, headers: dict[str, str], token_file: Path | None,
             first_token: int, dpop: tuple[Path, int, int, str] | None = None) -> Load:
        script, text = ((self.dpop_lua, WRK_DPOP) if dpop else
                        (self.tokens_lua, WRK_TOKENS) if token_file else (self.done_lua, WRK_DONE))
        # Written before every run: a concurrent `make clean` may have removed .work/.
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(text)
        cmd = [self.binary, "-t1", f"-c{self.connections}", f"-d{seconds}s", "--timeout", "10s",
               "-s", str(script)]
        for name, value in headers.items():
            cmd += ["-H", f"{name}: {value}"]
        cmd.append(url)
        if dpop:
            cmd += ["--", str(dpop[0]), str(dpop[1]), str(dpop[2]), dpop[3]]
        elif token_file:
            cmd += ["--", str(token_file), str(first_token)]
        out = run(cmd, timeout=seconds + 60, what="wrk", cpus=self.cpus)
        match = re.search(r"^WRK_RESULT (\{.*\})$", out.stdout, re.M)
        if not match:
            raise BenchError(f"wrk printed no summary:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        r = json.loads(match.group(1))
        duration = r["duration_us"] / 1e6
        return Load(requests=r["requests"], duration_s=duration,
                    rps=r["requests"] / duration if duration else 0.0,
                    p50_us=r["p50_us"], p99_us=r["p99_us"], status_errors=r["status_errors"],
                    socket_errors=r["connect_errors"] + r["read_errors"] + r["write_errors"]
                    + r["timeouts"])

    def _oha(self, url: str, seconds: int, headers: dict[str, str]) -> Load:
        cmd = [self.binary, "-z", f"{seconds}s", "-c", str(self.connections), "--no-tui",
               "--output-format", "json"]
        for name, value in headers.items():
            cmd += ["-H", f"{name}: {value}"]
        cmd.append(url)
        out = run(cmd, timeout=seconds + 60, what="oha", cpus=self.cpus)
        r = json.loads(out.stdout)
        summary, pct = r.get("summary", {}), r.get("latencyPercentiles", {})
        codes = {int(k): v for k, v in (r.get("statusCodeDistribution") or {}).items()}
        total = sum(codes.values())
        duration = float(summary.get("total", seconds))
        return Load(requests=total, duration_s=duration, rps=total / duration if duration else 0.0,
                    p50_us=float(pct.get("p50") or 0) * 1e6, p99_us=float(pct.get("p99") or 0) * 1e6,
                    status_errors=sum(v for k, v in codes.items() if not 200 <= k < 400),
                    socket_errors=sum((r.get("errorDistribution") or {}).values()))


def ensure_load_generator() -> tuple[str, str]:
    """wrk from PATH, else ``apt-get install wrk`` (root only; ``apt-get update`` and a retry
    when the first attempt fails), else oha from PATH or ``cargo install oha``."""
    found = shutil.which("wrk")
    if found:
        return "wrk", found
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "wrk"]
        log("wrk not found: apt-get install wrk")
        first = run(install, timeout=600, what="apt-get install wrk", check=False, env=env)
        if first.returncode != 0:
            log("apt-get install failed; apt-get update, then again")
            run(["apt-get", "update", "-q"], timeout=600, what="apt-get update", check=False, env=env)
            run(install, timeout=600, what="apt-get install wrk", check=False, env=env)
        found = shutil.which("wrk")
        if found:
            return "wrk", found
    oha = shutil.which("oha") or str(Path.home() / ".cargo" / "bin" / "oha")
    if not Path(oha).exists() and shutil.which("cargo"):
        log("no wrk: cargo install oha (a few minutes)")
        run(["cargo", "install", "--locked", "oha"], timeout=1800, what="cargo install oha")
    if Path(oha).exists():
        return "oha", oha
    raise BenchError("no load generator: install wrk (apt-get install wrk) or oha (cargo install oha)")


# ---------------------------------------------------------------------------------------------
# Keys, tokens, configurations
# ---------------------------------------------------------------------------------------------

class Keys:
    """Signing keys made for this run: one per algorithm family."""

    def __init__(self) -> None:
        from identity_devkit.issuer import generate

        self.rsa = generate("RS256")
        self.ec = generate("ES256")
        self.ed = generate("EdDSA")
        self.hmac = os.urandom(32)

    def signing_key(self, alg: str) -> Any:
        return {"RS256": self.rsa, "PS256": self.rsa, "ES256": self.ec, "EdDSA": self.ed,
                "HS256": self.hmac}[alg]

    def jwks(self) -> dict[str, Any]:
        """One key set for every variant, native and Wasm: the token's ``kid`` picks the key."""
        return jwk.jwks(jwk.public_jwk(self.rsa, kid=KIDS["RS256"]),
                        jwk.public_jwk(self.ec, kid=KIDS["ES256"], alg="ES256"),
                        jwk.public_jwk(self.ed, kid=KIDS["EdDSA"], alg="EdDSA"),
                        jwk.oct_jwk(self.hmac, kid=KIDS["HS256"], alg="HS256"))

    def token(self, alg: str, **extra: Any) -> str:
        from identity_devkit.issuer import SigningKey

        now = int(time.time())
        claims = {"iss": ISSUER, "sub": SUBJECT, "aud": AUDIENCE, "iat": now,
                  "exp": now + TOKEN_LIFETIME, **extra}
        return SigningKey(self.signing_key(alg), KIDS[alg], alg).token(claims)


def filter_config(keys: Keys, *, cached: bool, default: str = "authenticated",
                  dpop: bool = False, dpop_shared: bool = True) -> dict[str, Any]:
    """This filter's configuration: one provider with the inline key set, every request needs a
    valid token, ``sub`` copied into a header. Decision logs are off (jwt_authn logs nothing
    per request either); metrics stay on, as in production. ``dpop``: the provider requires
    DPoP (ES256 proofs, the widest ``iat`` window), proofs name ``DPOP_HTU``, and the replay
    cache has its default size and, unless ``dpop_shared`` is false, shared-data buckets (the
    rest is unchanged, so a bearer request takes the same path under both)."""
    config: dict[str, Any] = {
        "providers": [{"name": "bench", "issuer": ISSUER, "audiences": [AUDIENCE],
                       "jwks": keys.jwks(), "algorithms": list(ALGS)}],
        "default": default,
        "headers": {"claims": [{"claim": "sub", "header": SUBJECT_HEADER}]},
        "log": {"decisions": False},
    }
    if not cached:
        config["cache"] = {"max_entries": 0}
    if dpop:
        config["providers"][0]["dpop"] = {"mode": "required", "algorithms": ["ES256"],
                                          "max_age_seconds": DPOP_MAX_AGE}
        config["dpop"] = {"public_base_url": DPOP_BASE_URL,
                          "replay_cache_entries": DPOP_REPLAY_ENTRIES,
                          "shared_replay": dpop_shared}
    return config


class ProofPool:
    """DPoP proofs for one client key (P-256) and its bound token, minted ahead of the load by
    tests/test_dpop.py's ``proof`` (a fresh uuid4 ``jti``, ``iat`` now, ``htm`` GET, ``htu``
    ``DPOP_HTU``, ``ath`` of the token, ES256): each is sent at most once, or the filter would
    refuse it as a replay. ``share`` writes the next unsent ones to a file for wrk; ``sent``
    drops the ones a load may have used (those it completed, and one in flight per connection
    more)."""

    def __init__(self, keys: Keys, connections: int) -> None:
        import test_dpop  # tests/test_dpop.py: the proof helpers the integration tests use
        from cryptography.hazmat.primitives.asymmetric import ec

        self._proof = test_dpop.proof
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.jwk = test_dpop.public_jwk(self.key)
        self.thumbprint = test_dpop.thumbprint(self.jwk)
        self.token = keys.token("ES256", cnf={"jkt": self.thumbprint})
        self.connections = connections
        self.unsent: list[str] = []
        self.minted = 0
        self.mint_s = 0.0
        self.file = WORK / "dpop-proofs.txt"

    def one(self) -> str:
        """A proof for a single request (not from the pool)."""
        self.minted += 1
        return self._proof(self.key, "GET", DPOP_HTU, self.token, jwk_=self.jwk)

    def share(self, count: int) -> tuple[Path, int, int, str]:
        """At least ``count`` unsent proofs in a file: wrk's ``dpop`` argument."""
        if len(self.unsent) < count:
            t0 = time.monotonic()
            self.unsent += [self.one() for _ in range(count - len(self.unsent))]
            self.mint_s += time.monotonic() - t0
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.file, "w") as f:
            f.write("\n".join(self.unsent[:count]) + "\n")
        return self.file, 0, count, self.token

    def sent(self, count: int, completed: int) -> None:
        """A load of a ``count`` share completed ``completed`` requests: forget the proofs it
        may have sent (wrk asks for a request per connection beyond those it completes)."""
        del self.unsent[:min(count, completed + 2 * self.connections + 16)]


def native_filter(keys: Keys, *, cached: bool) -> dict[str, Any]:
    """Envoy's jwt_authn with the same key set inline (``local_jwks``), the same issuer,
    audience and ``sub`` header. Without ``jwt_cache_config`` it has no token cache (the run
    checks its ``jwt_cache_hit`` counter stays 0)."""
    provider: dict[str, Any] = {
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "local_jwks": {"inline_string": json.dumps(keys.jwks())},
        "claim_to_headers": [{"header_name": SUBJECT_HEADER, "claim_name": "sub"}],
    }
    if cached:
        provider["jwt_cache_config"] = {"jwt_cache_size": 1024}
    return {"name": "envoy.filters.http.jwt_authn",
            "typed_config": {"@type": JWT_AUTHN_TYPE, "providers": {"bench": provider},
                             "rules": [{"match": {"prefix": "/"},
                                        "requires": {"provider_name": "bench"}}]}}


def answering_route() -> dict[str, Any]:
    """A route that answers 200 itself. It echoes the identity header and the first 8
    characters of the Authorization header it received (as the filters left them) as response
    headers, so the sanity check can see that the filter under test injected the one and
    stripped the other (only 8: echoing the whole token would make every response ~1 KB larger
    for the variants that forward it)."""
    return {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
        "response_headers_to_add": [
            {"header": {"key": "x-seen-subject", "value": f"%REQ({SUBJECT_HEADER})%"}},
            {"header": {"key": "x-seen-authorization", "value": "%REQ(authorization):8%"}},
        ],
    }


def answer_directly(bootstrap: dict[str, Any]) -> dict[str, Any]:
    """The Envoy under test answers every request itself (`direct_response`) instead of routing
    it to the upstream: the "direct" mode."""
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"] = [answering_route()]
    return bootstrap


def responder_bootstrap() -> dict[str, Any]:
    """The upstream: an Envoy that answers 200 itself (:func:`answering_route`)."""
    route = answering_route()
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": [{
            "name": "ingress",  # envoy_runner reads this listener's port
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HCM_TYPE,
                    "stat_prefix": "responder",
                    "route_config": {"name": "local", "virtual_hosts": [
                        {"name": "all", "domains": ["*"], "routes": [route]}]},
                    "http_filters": [{"name": "envoy.filters.http.router",
                                      "typed_config": {"@type": ROUTER_TYPE}}],
                },
            }]}],
        }]},
    }


# ---------------------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    kind: str  # "none" | "native" | "wasm" | "noop" (bench/noop-filter)
    alg: str | None = None  # the token's algorithm; None: no token sent
    cached: bool = False
    default: str = "authenticated"  # the Wasm filter's `default`
    expect: int = 200
    ref_native: str | None = None  # the native variant this one is compared with
    # "proxied": the Envoy under test routes to the upstream Envoy; "direct": it answers itself
    # (`direct_response`), the smallest base under every variant (see own_cost_section).
    mode: str = "proxied"
    dpop: bool = False  # a DPoP-bound token with a fresh proof per request (filter_config dpop)
    dpop_shared: bool = True  # the DPoP replay cache also in shared data (`shared_replay`)
    many: bool = False  # a different token on every request (MANY_TOKENS distinct, in turn)
    # bench/noop-filter's configuration: "{}" does nothing; NOOP_CALLS makes a cached hit's host
    # calls, NOOP_DENY a missing token's (see that filter's src/lib.rs)
    noop_config: str = "{}"

    @property
    def group(self) -> str:
        if self.kind == "none":
            return "no auth"
        if self.dpop:
            return "filter DPoP"
        if self.kind == "noop":
            return "no-op Wasm filter"
        if self.expect != 200:
            return "denial"
        if self.kind == "native":
            return "native cached" if self.cached else "native"
        if self.alg is None:
            return "filter, no token"
        return "filter cached" if self.cached else "filter uncached"


# The host's side of the filter's own host calls, priced by the no-op filter making the same
# calls and doing nothing else: the floor under a cached hit and under a missing-token 401.
NOOP_CALLS_KEY, NOOP_DENY_KEY = "wasm-noop-calls", "wasm-noop-deny"
NOOP_CALLS, NOOP_DENY = f"hostcalls {SUBJECT_HEADER}={SUBJECT}", "deny"


def all_variants() -> list[Variant]:
    """Every variant, in run order: each filter variant runs next to its native reference; no
    auth runs twice, first and last, in two identical Envoys (their difference shows how noisy
    the run was)."""
    out = [Variant("noauth", "no auth (no filter)", "none", alg="RS256"),
           Variant("wasm-noop", "no-op proxy-wasm filter (the Wasm floor)", "noop", alg="RS256"),
           Variant(NOOP_CALLS_KEY, "no-op filter making a cached hit's host calls (header map, "
                   "clock, token removed, claim header set)", "noop", alg="RS256",
                   noop_config=NOOP_CALLS),
           Variant("native-rs256-cache", "native jwt_authn RS256, cache on", "native", "RS256",
                   cached=True)]
    for alg in ALGS:
        low = alg.lower()
        out.append(Variant(f"native-{low}", f"native jwt_authn {alg}, cache off", "native", alg))
        out.append(Variant(f"wasm-{low}", f"filter {alg}, uncached", "wasm", alg,
                           ref_native=f"native-{low}"))
        if alg == "ES256":  # prices one ES256 verification for the DPoP row (es256_verify)
            out.append(Variant(ES256_MANY_KEY, "filter ES256, uncached, a different token each "
                               "request", "wasm", alg, many=True))
        out.append(Variant(f"wasm-{low}-cache", f"filter {alg}, cached", "wasm", alg, cached=True,
                           ref_native="native-rs256-cache"))
        if alg == "ES256":  # compared with wasm-es256-cache, the same token as bearer
            out.append(Variant("wasm-dpop-es256", "filter ES256, DPoP-bound + fresh ES256 proof, "
                               "cached", "wasm", alg, cached=True, dpop=True,
                               ref_native="native-rs256-cache"))
            out.append(Variant(DPOP_LOCAL_KEY, "filter ES256, DPoP as above, replay cache in the "
                               "worker only (`shared_replay: false`)", "wasm", alg, cached=True,
                               dpop=True, dpop_shared=False, ref_native="native-rs256-cache"))
    out += [Variant("native-deny", "native jwt_authn, missing token (401)", "native", None,
                    expect=401),
            Variant("wasm-deny", "filter, missing token (401)", "wasm", None, cached=True,
                    expect=401, ref_native="native-deny"),
            Variant(NOOP_DENY_KEY, "no-op filter answering a 401 itself (header map, local "
                    "response)", "noop", None, expect=401, noop_config=NOOP_DENY),
            Variant("wasm-anon", "filter, no token, anonymous route", "wasm", None, cached=True,
                    default="anonymous"),
            Variant("noauth-2", "no auth (a second, identical Envoy)", "none", alg="RS256")]
    by_key = {v.key: v for v in out}
    return out + [direct(by_key[k]) for k in DIRECT_KEYS]


# The variants run again in `direct_response` mode (key prefix "direct-"): the own-cost table's
# second mode, where the base is smallest and the ratios hardest.
DIRECT_KEYS = ["noauth", "wasm-noop", "wasm-noop-calls", "native-rs256-cache", "wasm-rs256-cache",
               *[f"{kind}-{alg.lower()}" for alg in ("RS256", "PS256", "ES256", "EdDSA")
                 for kind in ("native", "wasm")],
               "native-deny", "wasm-deny", "wasm-noop-deny", "wasm-anon"]


def direct(v: Variant) -> Variant:
    return dataclasses.replace(v, key=f"direct-{v.key}", label=f"{v.label}, direct_response",
                               mode="direct",
                               ref_native=f"direct-{v.ref_native}" if v.ref_native else None)


SMOKE_KEYS = ["noauth", "native-rs256", "wasm-rs256-cache", "wasm-es256-cache", "wasm-dpop-es256",
              "wasm-es256-many", "direct-noauth", "direct-wasm-noop", "direct-wasm-rs256-cache"]
# The DPoP row: the DPoP variant, the same token as bearer, and the pair that prices an ES256
# verification in this run (ES256_MANY_KEY − DPOP_BEARER_KEY).
DPOP_KEY, DPOP_BEARER_KEY = "wasm-dpop-es256", "wasm-es256-cache"
# The DPoP variant without the shared-data replay bucket: prices its host calls.
DPOP_LOCAL_KEY = "wasm-dpop-es256-local"
# ES256 uncached over MANY_TOKENS distinct tokens: what one verification of a new signature
# costs (a proof's signature is new on every request; see es256_verify).
ES256_MANY_KEY, MANY_TOKENS = "wasm-es256-many", 20_000
# Profiled with perf (--perf): where their CPU goes.
PERF_KEYS = ["noauth", "wasm-noop", NOOP_CALLS_KEY, "wasm-anon", "wasm-rs256-cache", "wasm-rs256", "wasm-es256",
             "wasm-eddsa"]


@dataclass
class Slice:
    """One round's measurement of one variant."""

    cpu_s: float
    requests: int  # completed by Envoy (its downstream_rq_completed counter)
    load: Load
    stats: dict[str, int]  # counter deltas: downstream_rq_2xx, jwt_cache_hit, ...

    @property
    def cpu_us_per_req(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else math.inf


@dataclass
class Result:
    """A variant's figures over all rounds. CPU µs/request is the lowest of the rounds': on this
    shared machine other work can only add to a round's CPU time per request (contention for
    the cores and caches), never take from it, so the least disturbed round is the best
    estimate; the median is kept alongside."""

    variant: Variant
    ready_s: float  # process start → admin /ready LIVE
    init_ms: float | None  # from Envoy's log: "initializing epoch 0" → "starting main dispatch loop"
    slices: list[Slice]
    notes: list[str] = field(default_factory=list)
    profile: dict[str, float] | None = None  # share of CPU samples by where they ran (perf)
    start_cpu_ms: float | None = None  # CPU time the process had used when it was ready

    @property
    def cpu_us_per_req(self) -> float:
        return min(s.cpu_us_per_req for s in self.slices)

    @property
    def median_us_per_req(self) -> float:
        return statistics.median(s.cpu_us_per_req for s in self.slices)

    @property
    def spread(self) -> float:
        """(max − min) / median of the rounds' CPU µs/request."""
        xs = [s.cpu_us_per_req for s in self.slices]
        return (max(xs) - min(xs)) / statistics.median(xs) if xs else 0.0

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.slices)

    @property
    def load(self) -> Load:
        """The load generator's view, all rounds together (latency: median of the rounds')."""
        ls = [s.load for s in self.slices]
        duration = sum(x.duration_s for x in ls)
        requests = sum(x.requests for x in ls)
        return Load(requests=requests, duration_s=duration,
                    rps=requests / duration if duration else 0.0,
                    p50_us=statistics.median(x.p50_us for x in ls),
                    p99_us=statistics.median(x.p99_us for x in ls),
                    status_errors=sum(x.status_errors for x in ls),
                    socket_errors=sum(x.socket_errors for x in ls))

    @property
    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.slices:
            for k, n in s.stats.items():
                out[k] = out.get(k, 0) + n
        return out

    @property
    def extra_stats(self) -> dict[str, int]:
        return {k: n for k, n in self.stats.items() if k.startswith("jwt_cache")}

    def check(self) -> None:
        """Notes on anything that makes the figures suspect."""
        v, stats = self.variant, self.stats
        expected = f"downstream_rq_{v.expect // 100}xx"
        wrong = sum(n for k, n in stats.items()
                    if re.fullmatch(r"downstream_rq_\dxx", k) and k != expected)
        if wrong:
            self.notes.append(f"{wrong} responses were not {v.expect // 100}xx")
        if self.load.socket_errors:
            self.notes.append(f"{self.load.socket_errors} socket errors/timeouts")
        if v.kind == "native" and v.alg and v.expect == 200:
            hits = stats.get("jwt_cache_hit", 0)
            if not v.cached and hits:
                self.notes.append(f"jwt_authn reported {hits} cache hits with the cache off")
            if v.cached and not hits:
                self.notes.append("jwt_authn reported no cache hit with the cache on")


@dataclass
class Running:
    """A started variant: its Envoy, ready for load."""

    variant: Variant
    envoy: Envoy
    pid: int
    url: str
    ready_s: float
    init_ms: float | None
    slices: list[Slice] = field(default_factory=list)
    profile: dict[str, float] | None = None
    start_cpu_ms: float | None = None  # CPU time the process had used when it was ready
    rate: float = 0.0  # the last load's requests per second (sizes the next share of proofs)
    sent: int = 0  # requests sent so far by loads of a `many` variant (where its tokens resume)
    memory_start: dict[str, Any] | None = None  # memory_snapshot() when it was ready
    refused_start: int = 0  # non-2xx answers before the load (a DPoP variant's replay check)


# ---------------------------------------------------------------------------------------------
# Measuring an Envoy
# ---------------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """CPU time of the whole process (all threads), in seconds: the sum of the threads'
    ``/proc/<pid>/task/<tid>/schedstat`` run times (nanoseconds), or utime+stime from
    ``/proc/<pid>/stat`` (clock ticks) where schedstat is missing. Envoy's threads live as long as
    the process, so the sum does not lose a thread between two readings."""
    total_ns = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total_ns += int(f.read().split()[0])
        return total_ns / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def check_is_envoy(pid: int) -> None:
    """The pid measured must be Envoy itself (.venv/bin/envoy is a Python script that execs the
    binary: same pid, but make sure, or the CPU times would be the wrapper's)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError as e:
        raise BenchError(f"cannot read /proc/{pid}/comm: {e}") from e
    if comm != "envoy":
        raise BenchError(f"process {pid} is {comm!r}, not envoy: CPU time would be wrong")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def wasm_memories(pid: int) -> list[dict[str, int]]:
    """The linear memory of each V8 Wasm instance in the process: V8 reserves 8 GiB (+guard,
    PROT_NONE) per memory and makes its first ``memory.size`` bytes read-write, so the memory is
    the read-write mapping that ends where such a reservation begins. ``size`` is the VM's
    memory.size, ``rss`` the part of it that is resident."""
    maps: list[dict[str, Any]] = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+)", line)
            if m:
                maps.append({"start": int(m[1], 16), "end": int(m[2], 16), "perm": m[3], "rss": 0})
            elif line.startswith("Rss:") and maps:
                maps[-1]["rss"] = int(line.split()[1]) * 1024
    out = []
    for prev, cur in zip(maps, maps[1:]):
        if (cur["perm"] == "---p" and cur["end"] - cur["start"] >= 4 << 30
                and prev["end"] == cur["start"] and prev["perm"].startswith("rw")):
            out.append({"size": prev["end"] - prev["start"], "rss": prev["rss"]})
    return sorted(out, key=lambda m: -m["size"])


def memory_snapshot(envoy: Envoy, pid: int) -> dict[str, Any]:
    """The Wasm VMs' linear memories, the process's RSS and tcmalloc's figures (admin
    ``/memory``) now."""
    mem = json.loads(envoy.admin("/memory"))
    vms = wasm_memories(pid)
    return {"vms": vms,
            "vm_size_max": max((m["size"] for m in vms), default=0),
            "vm_rss_max": max((m["rss"] for m in vms), default=0),
            "envoy_rss": rss_bytes(pid),
            "tcmalloc_allocated": int(mem.get("allocated", 0)),
            "tcmalloc_heap": int(mem.get("heap_size", 0))}


def envoy_stats(envoy: Envoy, pattern: str) -> dict[str, int]:
    """Counters and gauges whose name matches the regex ``pattern`` (admin /stats?filter=)."""
    from urllib.parse import quote

    out: dict[str, int] = {}
    for line in envoy.admin(f"/stats?filter={quote(pattern)}").splitlines():
        name, sep, value = line.partition(": ")
        if sep and value.strip().lstrip("-").isdigit():
            out[name.strip()] = int(value)
    return out


RQ_STATS = r"^http\.ingress\.(downstream_rq_(completed|[1-5]xx)|jwt_authn\.jwt_cache_(hit|miss))$"


def log_time(line: str) -> float | None:
    m = re.match(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\]", line)
    if not m:
        return None
    return dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()


def init_ms(envoy: Envoy) -> float | None:
    """Envoy's own start-up time from its log: the first line to "starting main dispatch loop".
    With the Wasm filter this includes compiling and starting the VMs."""
    first = ready = None
    for line in envoy.log_lines():
        t = log_time(line)
        if t is None:
            continue
        first = t if first is None else first
        if "starting main dispatch loop" in line:
            ready = t
            break
    return (ready - first) * 1e3 if first is not None and ready is not None else None


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.wasm = Path(args.wasm)
        if not self.wasm.exists():
            raise BenchError(f"no module at {self.wasm}: run `make wasm`")
        self.keys = Keys()
        self.tokens = {alg: self.keys.token(alg) for alg in ALGS}
        # --pin: the Envoy under test alone on the last CPU, load generator and upstream on the
        # others, so they do not take turns on the same core.
        ncpu = os.cpu_count() or 1
        self.sut_cpus = {ncpu - 1} if args.pin and ncpu >= 2 else None
        self.other_cpus = set(range(ncpu - 1)) if self.sut_cpus else None
        self.loadgen = LoadGen(args.connections, self.other_cpus)
        self.upstream_port = 0
        self._noop: Path | None = None
        self._pool: ProofPool | None = None
        self._many: dict[str, Path] = {}
        self.envoys: list[Envoy] = []  # every Envoy started, for removing their work dirs

    def many_tokens(self, alg: str) -> Path:
        """A file of MANY_TOKENS distinct valid ``alg`` tokens (a `many` variant's load), made
        when first needed."""
        if alg not in self._many:
            t0 = time.monotonic()
            path = WORK / f"tokens-{alg.lower()}-many.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(self.keys.token(alg, jti=f"m{i}") + "\n"
                                    for i in range(MANY_TOKENS)))
            log(f"{ES256_MANY_KEY}: minted {MANY_TOKENS} {alg} tokens in "
                f"{time.monotonic() - t0:.1f}s")
            self._many[alg] = path
        return self._many[alg]

    @property
    def pool(self) -> ProofPool:
        """The DPoP client: its key, bound token and proofs (made when first needed)."""
        if self._pool is None:
            self._pool = ProofPool(self.keys, self.args.connections)
        return self._pool

    def http_filters(self, v: Variant) -> list[dict[str, Any]]:
        if v.kind == "none":
            return []
        if v.kind == "noop":
            return [wasm_filter(self.noop_wasm(), v.noop_config, name="noop", root_id="noop")]
        if v.kind == "native":
            return [native_filter(self.keys, cached=v.cached)]
        return [wasm_filter(self.wasm, filter_config(self.keys, cached=v.cached, default=v.default,
                                                     dpop=v.dpop, dpop_shared=v.dpop_shared))]

    def headers(self, v: Variant) -> dict[str, str]:
        """The request's headers for a load generator that sends the same ones every time
        (a DPoP variant's proof comes from ``load``)."""
        if v.dpop:
            return {"authorization": f"DPoP {self.pool.token}"}
        return {"authorization": f"Bearer {self.tokens[v.alg]}"} if v.alg else {}

    def load(self, r: Running, seconds: int) -> Load:
        """``seconds`` of load on a started variant; a DPoP variant's requests each carry a proof
        of their own, enough of them for 1.5 times the last load's rate (or 10k/s at first)."""
        v = r.variant
        if v.many and v.alg:
            tokens = self.many_tokens(v.alg)
            load = self.loadgen.run(r.url, seconds, {}, token_file=tokens,
                                    first_token=r.sent % MANY_TOKENS)
            r.sent += load.requests
            return load
        if not v.dpop:
            return self.loadgen.run(r.url, seconds, self.headers(v))
        count = int((r.rate or 10_000) * seconds * 1.5) + 4 * self.args.connections
        share = self.pool.share(count)
        load = self.loadgen.run(r.url, seconds, {}, dpop=share)
        self.pool.sent(count, load.requests)
        r.rate = load.rps
        return load

    def check(self, envoy: Envoy, v: Variant) -> None:
        """One request before the load: the status must be the expected one, and a valid token
        must reach the upstream as the identity header, without the token. A DPoP variant: the
        same proof again must be refused as a replay."""
        headers = self.headers(v)
        proof = self.pool.one() if v.dpop else None
        if proof:
            headers["dpop"] = proof
        reply = envoy.request("GET", PATH, headers)
        if reply.status != v.expect:
            raise BenchError(f"{v.key}: expected status {v.expect}, got {reply.status} "
                             f"(x-identity-reason: {reply.header('x-identity-reason')}, "
                             f"body: {reply.text[:200]!r})")
        if v.expect == 200 and v.alg and (v.kind in ("native", "wasm")
                                          or v.noop_config == NOOP_CALLS):
            if reply.header("x-seen-subject") != SUBJECT:
                raise BenchError(f"{v.key}: the upstream did not get {SUBJECT_HEADER}: {reply!r}")
            if reply.header("x-seen-authorization"):
                raise BenchError(f"{v.key}: the token was forwarded upstream: {reply!r}")
        if proof:
            again = envoy.request("GET", PATH, headers)
            reason = again.header("x-identity-reason")
            if again.status != 401 or reason != "dpop_proof_replayed":
                raise BenchError(f"{v.key}: a replayed proof got {again.status} ({reason}), "
                                 f"not 401 dpop_proof_replayed")

    def start(self, v: Variant, stack: contextlib.ExitStack) -> Running:
        """Start the variant's Envoy (stopped when ``stack`` closes), check one request, warm up."""
        t0 = time.monotonic()
        envoy = Envoy(http_filters=self.http_filters(v), upstream_port=self.upstream_port,
                      name=f"bench-{v.key}", log_level="info", startup_timeout=120)
        if v.mode == "direct":
            envoy.bootstrap = answer_directly(envoy.bootstrap)
        self.envoys.append(envoy)
        stack.enter_context(envoy)
        ready_s = time.monotonic() - t0
        assert envoy.proc is not None
        pid = envoy.proc.pid
        check_is_envoy(pid)
        start_cpu_ms = cpu_seconds(pid) * 1e3
        pin(pid, self.sut_cpus)
        self.check(envoy, v)
        running = Running(v, envoy, pid, f"{envoy.base_url}{PATH}", ready_s, init_ms(envoy),
                          start_cpu_ms=start_cpu_ms)
        if v.kind == "wasm":
            running.memory_start = memory_snapshot(envoy, pid)
            running.refused_start = sum(envoy_stats(envoy, r"^http\.ingress\.downstream_rq_[345]xx$")
                                        .values())
        if self.args.warmup > 0:
            self.load(running, self.args.warmup)
        return running

    def profile(self, r: Running, seconds: int = 2) -> dict[str, float] | None:
        """Where the Envoy process spends its CPU under load, by code region, from ``perf record``
        (samples of all its threads) grouped by DSO: V8's JIT code (the Wasm module, compiled),
        the envoy binary (Envoy itself and the V8 runtime, including the proxy-wasm host calls),
        the kernel (network), libc. None when perf is missing or not permitted."""
        perf = shutil.which("perf")
        if not perf or self.loadgen.kind != "wrk" or r.variant.dpop:  # dpop: proofs from a file
            return None
        data = WORK / f"perf-{r.variant.key}.data"
        cmd = [self.loadgen.binary, "-t1", f"-c{self.args.connections}", f"-d{seconds + 2}s"]
        for name, value in self.headers(r.variant).items():
            cmd += ["-H", f"{name}: {value}"]
        cmd.append(r.url)
        load = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        try:
            time.sleep(1)
            rec = run([perf, "record", "-q", "-F", "999", "-o", str(data), "-p", str(r.pid), "--",
                       "sleep", str(seconds)], timeout=seconds + 60, what="perf record", check=False)
            if rec.returncode != 0:
                return None
            rep = run([perf, "report", "-i", str(data), "--sort", "dso", "--stdio", "-q"],
                      timeout=120, what="perf report", check=False)
        finally:
            try:
                load.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                load.kill()
                load.wait()
        shares: dict[str, float] = {}
        for line in rep.stdout.splitlines():
            m = re.match(r"^\s*([\d.]+)%\s+(.+?)\s*$", line)
            if not m:
                continue
            dso = m.group(2)
            group = ("wasm (V8 JIT)" if dso.startswith("[JIT]") else
                     "envoy binary (Envoy, V8 runtime, host calls)" if dso == "envoy" else
                     "kernel" if dso.startswith("[kernel") else "libc, vdso, other")
            shares[group] = shares.get(group, 0.0) + float(m.group(1))
        data.unlink(missing_ok=True)
        return shares or None

    def measure(self, r: Running, seconds: int) -> Slice:
        """One slice of load on a started variant: CPU time and completed requests around it.
        (Admin calls are made outside the CPU window: stats before CPU, CPU before stats.)"""
        before = envoy_stats(r.envoy, RQ_STATS)
        cpu0 = cpu_seconds(r.pid)
        load = self.load(r, seconds)
        cpu1 = cpu_seconds(r.pid)
        after = envoy_stats(r.envoy, RQ_STATS)
        if not r.envoy.running:
            raise BenchError(f"{r.variant.key}: Envoy died during the load{r.envoy._tail_note()}")
        delta = {k.rsplit(".", 1)[1]: after.get(k, 0) - before.get(k, 0) for k in after}
        requests = delta.get("downstream_rq_completed", 0)
        if requests <= 0:
            raise BenchError(f"{r.variant.key}: Envoy completed no request during the load")
        return Slice(cpu_s=cpu1 - cpu0, requests=requests, load=load,
                     stats={k: n for k, n in delta.items() if n and k != "downstream_rq_completed"})

    def noop_wasm(self) -> Path:
        """bench/noop-filter, built once (a workspace member: the root's lock file and target directory)."""
        if self._noop is None:
            manifest = REPO / "bench" / "noop-filter" / "Cargo.toml"
            log("building bench/noop-filter (the no-op proxy-wasm filter)")
            run(["cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip1",
                 "--manifest-path", str(manifest)], timeout=900, what="cargo build noop-filter")
            self._noop = REPO / "target" / "wasm32-wasip1" / "release" / "noop_filter.wasm"
            if not self._noop.exists():
                raise BenchError(f"cargo built no {self._noop}")
        return self._noop

    # -- the upstream -----------------------------------------------------------------------------

    def responder(self) -> Envoy:
        """The shared upstream Envoy. envoy_runner builds its own bootstrap from the arguments;
        this one is replaced before start by the responder's (its listener is still named
        ``ingress``, so the runner finds the port)."""
        envoy = Envoy(http_filters=[], upstream_port=1, name="bench-responder", log_level="warning")
        envoy.bootstrap = responder_bootstrap()
        self.envoys.append(envoy)
        return envoy

    # -- the memory test ---------------------------------------------------------------------------

    def memory(self) -> dict[str, Any]:
        """Drive the cached filter with ``mem_requests`` requests rotating over ``mem_tokens``
        distinct valid tokens (HS256: minting 100k is quick; the cache does not care how a token
        was signed) and record the Wasm VMs' linear memory along the way."""
        a = self.args
        alg = "HS256"
        t0 = time.monotonic()
        token_file = WORK / f"tokens-{a.mem_tokens}.txt"
        with open(token_file, "w") as f:
            for i in range(a.mem_tokens):
                f.write(self.keys.token(alg, jti=f"t{i}") + "\n")
        mint_s = time.monotonic() - t0
        log(f"memory: minted {a.mem_tokens} {alg} tokens in {mint_s:.1f}s")
        v = Variant("memory", "filter HS256, cached, rotating tokens", "wasm", alg, cached=True)
        config = filter_config(self.keys, cached=True)
        checkpoints: list[dict[str, Any]] = []
        envoy = Envoy(http_filters=[wasm_filter(self.wasm, config)],
                      upstream_port=self.upstream_port, name="bench-memory", log_level="info",
                      startup_timeout=120)
        self.envoys.append(envoy)
        with envoy:
            assert envoy.proc is not None
            pid = envoy.proc.pid
            check_is_envoy(pid)
            pin(pid, self.sut_cpus)
            self.check(envoy, v)
            url = f"{envoy.base_url}{PATH}"

            def checkpoint(sent: int) -> None:
                checkpoints.append({"requests": sent, **memory_snapshot(envoy, pid)})

            checkpoint(0)
            sent = statuses_bad = socket_errors = 0
            deadline = time.monotonic() + a.mem_budget
            rate = 0.0
            while sent < a.mem_requests and time.monotonic() < deadline:
                left = a.mem_requests - sent
                # The first chunk is short, so a checkpoint shows the memory while the cache fills.
                seconds = 1 if rate <= 0 else min(a.mem_chunk, math.ceil(left / rate))
                seconds = max(1, min(seconds, int(deadline - time.monotonic()) or 1))
                load = self.loadgen.run(url, seconds, {}, token_file=token_file,
                                        first_token=sent % a.mem_tokens)
                if not envoy.running:
                    raise BenchError(f"memory: Envoy died{envoy._tail_note()}")
                sent += load.requests
                statuses_bad += load.status_errors
                socket_errors += load.socket_errors
                rate = load.rps
                checkpoint(sent)
                log(f"memory: {sent:,} requests, largest VM memory "
                    f"{checkpoints[-1]['vm_size_max'] / 2**20:.2f} MiB")
            vm_count = envoy_stats(envoy, r"^wasm\.wasm_vm_count$")
        # Bounded: after the cache has filled (the first checkpoint past 10x its size), the
        # largest VM's memory must not grow by more than one 64 KiB page per 100k requests.
        filled = next((c for c in checkpoints if c["requests"] >= 10 * 1024), checkpoints[-1])
        last = checkpoints[-1]
        growth = last["vm_size_max"] - filled["vm_size_max"]
        allowance = 65536 * max(1, math.ceil((last["requests"] - filled["requests"]) / 100_000))
        return {"alg": alg, "tokens": a.mem_tokens, "target_requests": a.mem_requests,
                "requests": sent, "status_errors": statuses_bad, "socket_errors": socket_errors,
                "mint_s": mint_s, "checkpoints": checkpoints, "filled_at": filled["requests"],
                "growth_after_fill": growth, "bounded": growth <= allowance,
                "vm_count": sum(vm_count.values()), "seconds": time.monotonic() - t0}

    # -- the DPoP flood ------------------------------------------------------------------------------

    def dpop_flood(self, r: Running, bearer: Running | None) -> dict[str, Any]:
        """After its rounds, keep the DPoP variant's Envoy busy until it has accepted
        ``dpop_flood`` distinct proofs in all (each a new entry for the replay cache, well past
        its ``replay_cache_entries``), within ``mem_budget`` seconds, recording its memory along
        the way; then the bearer variant's (the same token as bearer: no proofs) for
        comparison. Bounded: over the second half of the proofs (from the first checkpoint past
        half of them, and past twice ``replay_cache_entries``) the largest VM's memory may grow
        by one 64 KiB page per 100k proofs, as in the token memory test. Not from the moment the
        cache is full: the LRU's hash table still grows once after that (deleted slots fill it
        up under churn and it is resized a last time), then stays."""
        a = self.args
        t0 = time.monotonic()
        checkpoints: list[dict[str, Any]] = []
        counters = r"^http\.ingress\.downstream_rq_[2-5]xx$"  # the 2xx: one per proof

        def checkpoint() -> None:
            st = envoy_stats(r.envoy, counters)
            checkpoints.append({"proofs": st.get("http.ingress.downstream_rq_2xx", 0),
                                "refused": sum(n for k, n in st.items() if not k.endswith("2xx"))
                                - r.refused_start,
                                **memory_snapshot(r.envoy, r.pid)})

        checkpoint()
        deadline = time.monotonic() + a.mem_budget
        while checkpoints[-1]["proofs"] < a.dpop_flood and time.monotonic() < deadline:
            left = a.dpop_flood - checkpoints[-1]["proofs"]
            seconds = 1 if r.rate <= 0 else min(a.mem_chunk, math.ceil(left / r.rate))
            seconds = max(1, min(seconds, int(deadline - time.monotonic()) or 1))
            self.load(r, seconds)
            if not r.envoy.running:
                raise BenchError(f"dpop flood: Envoy died{r.envoy._tail_note()}")
            checkpoint()
            log(f"dpop flood: {checkpoints[-1]['proofs']:,} proofs accepted, largest VM memory "
                f"{checkpoints[-1]['vm_size_max'] / 2**20:.2f} MiB, Envoy RSS "
                f"{checkpoints[-1]['envoy_rss'] / 2**20:.1f} MiB")
        last = checkpoints[-1]
        fill = max(2 * DPOP_REPLAY_ENTRIES, last["proofs"] // 2)
        filled = next((c for c in checkpoints if c["proofs"] >= fill), None)
        out: dict[str, Any] = {
            "target_proofs": a.dpop_flood, "proofs": last["proofs"], "refused": last["refused"],
            "replay_cache_entries": DPOP_REPLAY_ENTRIES, "start": r.memory_start,
            "checkpoints": checkpoints, "minted": self.pool.minted, "mint_s": self.pool.mint_s,
            "proof_bytes": len(self.pool.one()),
            "bearer": memory_snapshot(bearer.envoy, bearer.pid) if bearer else None,
            "bearer_start": bearer.memory_start if bearer else None,
            "seconds": time.monotonic() - t0}
        if filled is None or filled is last or last["proofs"] < 4 * DPOP_REPLAY_ENTRIES:
            out.update(filled_at=None, bounded=None)  # too few proofs to judge
            return out
        growth = last["vm_size_max"] - filled["vm_size_max"]
        allowance = 65536 * max(1, math.ceil((last["proofs"] - filled["proofs"]) / 100_000))
        out.update(filled_at=filled["proofs"], growth_after_fill=growth, allowance=allowance,
                   rss_growth_after_fill=last["envoy_rss"] - filled["envoy_rss"],
                   allocated_growth_after_fill=(last["tcmalloc_allocated"]
                                                - filled["tcmalloc_allocated"]),
                   bounded=growth <= allowance)
        return out


# ---------------------------------------------------------------------------------------------
# crypto-bench (Wasmtime vs native), machine facts
# ---------------------------------------------------------------------------------------------

def crypto_bench(quick: bool) -> dict[str, Any]:
    """crypto-bench/run.py (owned by the crypto work): its Markdown table and JSON."""
    out_json = WORK / "crypto-bench.json"
    out_json.unlink(missing_ok=True)
    cmd = [sys.executable, str(REPO / "crypto-bench" / "run.py"), "--json", str(out_json)]
    if quick:
        cmd.append("--quick")
    t0 = time.monotonic()
    proc = run(cmd, timeout=1200, what="crypto-bench/run.py", check=False, cwd=REPO)
    data = json.loads(out_json.read_text()) if out_json.exists() else {}
    table = proc.stdout.strip()
    return {"ok": proc.returncode == 0, "status": proc.returncode, "table": table, "data": data,
            "stderr": proc.stderr.strip()[-1500:], "seconds": time.monotonic() - t0,
            "command": " ".join(["python3", "crypto-bench/run.py"] + (["--quick"] if quick else []))}


def wasm_host_bench() -> dict[str, Any]:
    """bench/wasm_host/run.py: the module alone in an emulated host, under Wasmtime (Kong's
    runtime) and node's V8 (Envoy's engine): guest µs per request and host calls."""
    out_json = WORK / "wasm-host.json"
    out_json.unlink(missing_ok=True)
    t0 = time.monotonic()
    proc = run([sys.executable, str(REPO / "bench" / "wasm_host" / "run.py"), "--json", str(out_json)],
               timeout=1800, what="bench/wasm_host/run.py", check=False, cwd=REPO,
               env={**os.environ, "CARGO_BUILD_JOBS": os.environ.get("CARGO_BUILD_JOBS", "1")})
    return {"ok": proc.returncode == 0, "status": proc.returncode, "table": proc.stdout.strip(),
            "stderr": proc.stderr.strip()[-1500:], "seconds": time.monotonic() - t0}


def machine_facts(envoy_bin: str, loadgen: LoadGen) -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, AttributeError):
        pass
    envoy_version = run([envoy_bin, "--version"], timeout=30, what="envoy --version",
                        check=False).stdout.strip()
    m = re.search(r"version: \S+/([\d.]+)/(\S+)/(\S+)", envoy_version)
    git = run(["git", "rev-parse", "--short", "HEAD"], timeout=10, what="git", check=False,
              cwd=REPO).stdout.strip() or "?"
    dirty = run(["git", "status", "--porcelain", "--untracked-files=no"], timeout=10, what="git",
                check=False, cwd=REPO).stdout.strip()
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "envoy": f"{m.group(1)} ({m.group(3)})" if m else envoy_version.splitlines()[-1:][0] if envoy_version else "?",
        "loadgen": loadgen.version(),
        "commit": git + (" + uncommitted changes" if dirty else ""),
    }


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

def fmt_us(us: float) -> str:
    if us >= 10_000:
        return f"{us / 1000:,.0f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def ratio(x: float | None, ref: float | None) -> str:
    if x is None or not ref:
        return "—"
    return f"{x / ref:.2f}x"


class Target(NamedTuple):
    name: str
    what: str  # how the value was computed
    value: float | None
    limit: float
    verdict: str
    unit: str = "x"  # "x": a ratio; otherwise a quantity, e.g. "µs"
    detail: str = ""  # what the ratio is made of, when it helps


class Report:
    def __init__(self, results: list[Result], *, args: argparse.Namespace, facts: dict[str, str],
                 wasm: Path, memory: dict[str, Any] | None, crypto: dict[str, Any] | None,
                 wasm_host: dict[str, Any] | None = None,
                 elapsed_s: float, png_name: str, dpop_memory: dict[str, Any] | None = None):
        self.r = {res.variant.key: res for res in results}
        self.results = results
        self.args = args
        self.facts = facts
        self.wasm = wasm
        self.memory = memory
        self.dpop_memory = dpop_memory
        self.crypto = crypto
        self.wasm_host = wasm_host
        self.elapsed_s = elapsed_s
        self.png_name = png_name

    # -- references ------------------------------------------------------------------------------

    def noauth(self) -> Result | None:
        """The no-auth reference: of its runs (first and last), the one with the lower CPU per
        request — the least disturbed, which makes every ratio against it the stricter one."""
        runs = [self.r[k] for k in ("noauth", "noauth-2") if k in self.r]
        return min(runs, key=lambda x: x.cpu_us_per_req) if runs else None

    def native_ref(self, res: Result) -> Result | None:
        v = res.variant
        return self.r.get(v.ref_native) if v.ref_native else None

    def cpu(self, key: str) -> float | None:
        return self.r[key].cpu_us_per_req if key in self.r else None

    def med(self, key: str) -> float | None:
        return self.r[key].median_us_per_req if key in self.r else None

    # -- own cost ------------------------------------------------------------------------------------

    def own_base(self, mode: str, stat: Callable[[Result], float]) -> float | None:
        """No auth in ``mode`` (proxied: the lower of its two runs)."""
        keys = ("noauth", "noauth-2") if mode == "proxied" else ("direct-noauth",)
        runs = [stat(self.r[k]) for k in keys if k in self.r]
        return min(runs) if runs else None

    def own(self, key: str, mode: str, stat: Callable[[Result], float] | None = None) -> float | None:
        """A variant's own cost in ``mode``: its CPU µs/request over no auth's (medians unless
        ``stat`` says otherwise)."""
        stat = stat or (lambda r: r.median_us_per_req)
        full = f"direct-{key}" if mode == "direct" else key
        base = self.own_base(mode, stat)
        return stat(self.r[full]) - base if full in self.r and base is not None else None

    def own_rows(self) -> list[tuple[str, str, str | None]]:
        """(what, filter variant, native variant) of the own-cost table."""
        rows: list[tuple[str, str, str | None]] = [
            ("no-op Wasm filter (the floor)", "wasm-noop", None),
            ("no-op filter making a cached hit's host calls", NOOP_CALLS_KEY, None),
            ("cached RS256", "wasm-rs256-cache", "native-rs256-cache")]
        rows += [(f"uncached {alg}", f"wasm-{alg.lower()}", f"native-{alg.lower()}")
                 for alg in ("RS256", "PS256", "ES256", "EdDSA")]
        rows += [("no-op filter answering a 401 itself", NOOP_DENY_KEY, None),
                 ("missing token (401)", "wasm-deny", "native-deny"),
                 ("no token, anonymous route", "wasm-anon", None)]
        return rows

    # -- targets ----------------------------------------------------------------------------------

    def es256_verify(self) -> tuple[float | None, str]:
        """What one ES256 verification costs the filter in Envoy, µs, and where the figure comes
        from: this run's uncached ES256 over distinct tokens minus cached ES256 (the same V8,
        machine and moment as the DPoP row; it includes parsing the JWS, as the proof check must
        too). Distinct tokens, because every proof is a new signature: the verification's time
        depends on the signature (its scalar recoding and field inversion branch on the data),
        and a CPU that sees one signature over and over predicts those branches, so
        `wasm-es256` (one token) prices a verification below what a new one costs. Without that
        variant: `wasm-es256` − cached, else crypto-bench's ES256 under Wasmtime (another
        engine: a stand-in only)."""
        c = self.cpu("wasm-es256-cache")
        for key in (ES256_MANY_KEY, "wasm-es256"):
            u = self.cpu(key)
            if u is not None and c is not None:
                return u - c, f"`{key}` − `wasm-es256-cache` of this run (V8)"
        d = (self.crypto or {}).get("data", {}).get("results", {}).get("ES256 new")
        if d and "wasm32" in d:
            return (float(d["wasm32"][1]), "crypto-bench's ES256 under Wasmtime (`wasm-es256` "
                    "did not run: another engine, a stand-in only)")
        return None, "not measured (`wasm-es256` and `wasm-es256-cache` did not both run)"

    def targets(self) -> list[Target]:
        """Each target: what was measured, the measured value (a ratio, or µs), the limit and
        the verdict."""
        out: list[Target] = []
        base = self.noauth()
        native_cache = self.cpu("native-rs256-cache")

        def add(name: str, what: str, value: float | None, limit: float, unit: str = "x",
                detail: str = "") -> None:
            if value is None:
                verdict = "not measured"
            elif self.args.smoke:  # seconds per variant on a shared machine: a number, no verdict
                verdict = "not judged (smoke run)"
            elif value <= limit:
                verdict = "met"
            elif unit == "x":
                verdict = f"missed by {value / limit:.2f}x"
            else:
                verdict = f"missed by {value - limit:.1f} {unit}"
            out.append(Target(name, what, value, limit, verdict, unit, detail))

        for alg in ALGS:
            key = f"wasm-{alg.lower()}-cache"
            x = self.cpu(key)
            add(f"cached {alg} ≤ 1.1x no auth", f"{key} / noauth",
                x / base.cpu_us_per_req if x and base else None, 1.1)
            add(f"cached {alg} ≤ native with cache", f"{key} / native-rs256-cache",
                x / native_cache if x and native_cache else None, 1.0)
        for alg, limit in (("RS256", 1.5), ("PS256", 2.0), ("ES256", 2.0), ("EdDSA", 2.0)):
            low = alg.lower()
            x, n = self.cpu(f"wasm-{low}"), self.cpu(f"native-{low}")
            add(f"uncached {alg} ≤ {limit:g}x native", f"wasm-{low} / native-{low}",
                x / n if x and n else None, limit)
        # The filter's own cost (medians, over no auth), in the direct_response mode: the
        # smallest base, so the hardest ratio (own_cost_section).
        floor = self.own("wasm-noop", "direct")
        for key, what, same, same_what in (
                ("wasm-rs256-cache", "a cached RS256 request", NOOP_CALLS_KEY,
                 "the no-op filter making the same host calls"),
                ("wasm-deny", "a missing-token 401", NOOP_DENY_KEY,
                 "the no-op filter answering the same 401")):
            x = self.own(key, "direct")
            add(f"direct: {what} ≤ the no-op filter + 3 µs",
                f"direct-{key} − direct-wasm-noop, medians",
                x - floor if x is not None and floor is not None else None, 3.0, "µs")
            # The same, over the floor that makes the filter's host calls: the filter's own work
            # in the module, with the host's side of those calls taken out.
            s = self.own(same, "direct")
            add(f"direct: {what} ≤ {same_what} + 3 µs",
                f"direct-{key} − direct-{same}, medians",
                x - s if x is not None and s is not None else None, 3.0, "µs")
        for alg in ("RS256", "PS256", "ES256", "EdDSA"):
            low = alg.lower()
            x, n = self.own(f"wasm-{low}", "direct"), self.own(f"native-{low}", "direct")
            add(f"direct: uncached {alg}, own cost ≤ 1.5x native's own",
                f"(direct-wasm-{low} − direct-noauth) / (direct-native-{low} − direct-noauth)",
                x / n if x is not None and n else None, 1.5)
        d, b = self.cpu(DPOP_KEY), self.cpu(DPOP_BEARER_KEY)
        es, _ = self.es256_verify()
        if d is not None and b is not None and es is not None:
            add("DPoP proof check ≤ one ES256 verify + 5 µs",
                f"({DPOP_KEY} − {DPOP_BEARER_KEY}) / (ES256 verify + 5 µs)",
                (d - b) / (es + 5), 1.0, detail=f"{d - b:.1f} µs of {es + 5:.1f} µs")
        else:
            add("DPoP proof check ≤ one ES256 verify + 5 µs",
                f"({DPOP_KEY} − {DPOP_BEARER_KEY}) / (ES256 verify + 5 µs)", None, 1.0)
        m = self.dpop_memory or {}
        if m.get("bounded") is not None:
            add("DPoP replay cache: VM memory bounded under a proof flood",
                "VM memory growth over the flood's second half / allowance",
                m["growth_after_fill"] / m["allowance"], 1.0,
                detail=f"{m['growth_after_fill'] / 1024:+.0f} KiB, allowed {m['allowance'] / 1024:.0f} KiB")
        else:
            add("DPoP replay cache: VM memory bounded under a proof flood",
                "VM memory growth over the flood's second half / allowance", None, 1.0)
        return out

    # -- sections ----------------------------------------------------------------------------------

    def table(self) -> str:
        base = self.noauth()
        lines = [
            "| variant | CPU µs/req | × no auth | × native | median, spread "
            "| req/s (× no auth, × native) | p50 (× no auth, × native) "
            "| p99 (× no auth, × native) | requests | notes |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for res in self.results:
            if res.variant.mode != "proxied":  # the direct mode is in own_cost_section
                continue
            ref = self.native_ref(res)
            b = base

            def both(get: Callable[[Result], float], text: str) -> str:
                parts = [ratio(get(res), get(b)) if b else "—",
                         ratio(get(res), get(ref)) if ref else "—"]
                return f"{text} ({', '.join(parts)})"

            notes = list(res.notes)
            if res.extra_stats:
                notes.append(", ".join(f"{k} {n:,}" for k, n in sorted(res.extra_stats.items())))
            if ref:
                notes.insert(0, f"native = {ref.variant.key}")
            lines.append(
                f"| {res.variant.label} (`{res.variant.key}`) | **{res.cpu_us_per_req:.1f}** "
                f"| {ratio(res.cpu_us_per_req, b.cpu_us_per_req) if b else '—'} "
                f"| {ratio(res.cpu_us_per_req, ref.cpu_us_per_req) if ref else '—'} "
                f"| {res.median_us_per_req:.1f}, {res.spread * 100:.0f}% "
                f"| {both(lambda x: x.load.rps, f'{res.load.rps:,.0f}')} "
                f"| {both(lambda x: x.load.p50_us, fmt_us(res.load.p50_us))} "
                f"| {both(lambda x: x.load.p99_us, fmt_us(res.load.p99_us))} "
                f"| {res.requests:,} | {'; '.join(notes)} |")
        return "\n".join(lines)

    def own_cost_section(self) -> str:
        """The filter's own cost per request (its CPU µs/request over no auth's) against
        native jwt_authn's own cost, in both modes, from the medians of the rounds."""
        low = lambda r: r.cpu_us_per_req  # noqa: E731
        out = []
        for mode, title in (("proxied", "Proxied to the upstream Envoy"),
                            ("direct", "`direct_response`: the Envoy under test answers itself")):
            base = self.own_base(mode, lambda r: r.median_us_per_req)
            if base is None:
                out.append(f"**{title}:** not run (no `{'direct-' if mode == 'direct' else ''}noauth`).")
                continue
            floor = self.own("wasm-noop", mode)
            lines = [f"**{title}** — no auth: {base:.1f} µs/request (median).", "",
                     "| | filter: median µs/req (spread) | own cost (− no auth) | over the floor "
                     "| native: median µs/req (spread) | native's own cost | own ÷ native's own "
                     "| same, lowest rounds |",
                     "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for what, key, native in self.own_rows():
                full = f"direct-{key}" if mode == "direct" else key
                res = self.r.get(full)
                if res is None:
                    continue
                own = self.own(key, mode)
                cells = [what, f"{res.median_us_per_req:.1f} ({res.spread * 100:.0f}%)",
                         f"**{own:+.1f}**" if own is not None else "—",
                         f"{own - floor:+.1f}" if own is not None and floor is not None
                         and key != "wasm-noop" else "—"]
                nres = self.r.get(f"direct-{native}" if mode == "direct" else native) if native else None
                n_own = self.own(native, mode) if native else None
                if nres is not None and n_own is not None and own is not None:
                    n_low, f_low = self.own(native, mode, low), self.own(key, mode, low)
                    # A ratio to a native cost within the noise (≤ 0) would mean nothing.
                    cells += [f"{nres.median_us_per_req:.1f} ({nres.spread * 100:.0f}%)",
                              f"{n_own:+.1f}", f"**{ratio(own, n_own)}**" if n_own > 0 else "—",
                              ratio(f_low, n_low) if f_low is not None and n_low and n_low > 0
                              else "—"]
                else:
                    cells += ["—"] * 4
                lines.append("| " + " | ".join(cells) + " |")
            out.append("\n".join(lines))
        return "\n\n".join(out)

    def decomposition(self) -> str:
        """Where the time goes, per algorithm, from differences between runs."""
        base = self.noauth()
        anon = self.cpu("wasm-anon")
        rows = []
        data = (self.crypto or {}).get("data", {}).get("results", {})

        def crypto_cell(case: str) -> str:
            d = data.get(case)
            if not d or "wasm32" not in d:
                return "—"
            return f"{d['wasm32'][1]:.0f} / {d['native'][1]:.0f}" if "native" in d else f"{d['wasm32'][1]:.0f} / —"

        for alg in ALGS:
            low = alg.lower()
            c, u = self.cpu(f"wasm-{low}-cache"), self.cpu(f"wasm-{low}")
            n, nc = self.cpu(f"native-{low}"), self.cpu("native-rs256-cache")
            if c is None and u is None:
                continue
            cells = [alg,
                     f"{c - base.cpu_us_per_req:.1f}" if c is not None and base else "—",
                     f"{u - c:.1f}" if u is not None and c is not None else "—",
                     f"{n - nc:.1f}" if n is not None and nc is not None else "—",
                     crypto_cell(f"{alg} new"),
                     crypto_cell(f"{alg} old (jwt-simple verify_token)")]
            rows.append("| " + " | ".join(cells) + " |")
        if not rows:
            return ""
        head = ("| alg | filter, cached − no auth | filter, uncached − cached (≈ verify in V8) "
                "| native uncached − native cached (≈ verify in C++) "
                "| crypto-bench new path, Wasmtime / native | crypto-bench jwt-simple, Wasmtime / native |\n"
                "| --- | ---: | ---: | ---: | ---: | ---: |")
        extra = []
        noop = self.cpu("wasm-noop")
        if noop is not None and base:
            extra.append(f"A proxy-wasm filter that does nothing (bench/noop-filter: the Rust SDK, "
                         f"an HTTP context per request that returns `Continue`) costs "
                         f"{noop - base.cpu_us_per_req:.1f} µs more than no auth: the floor under "
                         f"any Wasm filter in Envoy's V8, before it does any work.")
        calls = self.cpu(NOOP_CALLS_KEY)
        cached = self.cpu("wasm-rs256-cache")
        if noop is not None and calls is not None and cached is not None:
            extra.append(f"The same no-op filter making a cached hit's host calls and nothing "
                         f"else (`{NOOP_CALLS_KEY}`) costs {calls - noop:.1f} µs more than the "
                         f"empty one: Envoy's side of reading the header map, the clock, removing "
                         f"the token's header and setting the claim header (each request-header "
                         f"change through proxy-wasm also clears Envoy's route cache, so the route "
                         f"is matched again). A cached RS256 hit costs {cached - calls:+.1f} µs "
                         f"over it: the module's own work.")
        if anon is not None and base:
            extra.append(f"This filter with no token on an anonymous route (headers read and "
                         f"stripped, nothing verified) costs {anon - base.cpu_us_per_req:.1f} µs "
                         f"more than no auth"
                         + (f", {anon - noop:.1f} µs more than the no-op filter: the filter's own "
                            f"fixed work per request." if noop is not None else "."))
        extra_text = "".join("\n\n" + e for e in extra)
        return head + "\n" + "\n".join(rows) + extra_text

    def perf_section(self) -> str:
        rows = [r for r in self.results if r.profile]
        if not rows:
            return ("Not profiled (`--no-perf`, or `perf` is not installed or not permitted: "
                    "`apt-get install linux-perf`).")
        groups = ["wasm (V8 JIT)", "envoy binary (Envoy, V8 runtime, host calls)", "kernel",
                  "libc, vdso, other"]
        lines = ["| variant | " + " | ".join(groups) + " |",
                 "| --- |" + " ---: |" * len(groups)]
        for r in rows:
            assert r.profile is not None
            cells = [f"{r.profile.get(g, 0.0):.0f}% ≈ {r.profile.get(g, 0.0) / 100 * r.cpu_us_per_req:.1f} µs"
                     for g in groups]
            lines.append(f"| {r.variant.label} (`{r.variant.key}`) | " + " | ".join(cells) + " |")
        return ("`perf record` of the whole Envoy process for 2 s under the same load, samples "
                "grouped by where the code lives; µs = share × the variant's CPU µs/request. "
                "The Envoy binary is stripped, so the split stops there; Wasm code is JIT-compiled "
                "by V8 and shows as anonymous memory.\n\n" + "\n".join(lines))

    def memory_section(self) -> str:
        m = self.memory
        if not m:
            return "Not run (`--no-memory`)."
        if "error" in m:
            return f"**Failed:** {m['error']}"
        cps = m["checkpoints"]
        mib = lambda b: f"{b / 2**20:.2f} MiB"  # noqa: E731
        step = max(1, math.ceil((len(cps) - 3) / 8))
        shown = cps if len(cps) <= 12 else cps[:2] + cps[2:-1][::step] + cps[-1:]
        lines = ["| requests | largest VM: memory.size | largest VM: resident | all VMs: memory.size "
                 "| Envoy RSS | tcmalloc allocated | tcmalloc heap |",
                 "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for c in shown:
            lines.append(f"| {c['requests']:,} | {mib(c['vm_size_max'])} | {mib(c['vm_rss_max'])} "
                         f"| {mib(sum(v['size'] for v in c['vms']))} | {mib(c['envoy_rss'])} "
                         f"| {mib(c['tcmalloc_allocated'])} | {mib(c['tcmalloc_heap'])} |")
        short = ""
        if m["requests"] < m["target_requests"]:
            short = (f" **Only {m['requests']:,} of the {m['target_requests']:,} requests were sent "
                     f"within the time budget ({self.args.mem_budget} s).**")
        verdict = ("**bounded**" if m["bounded"] else "**NOT bounded**")
        return (
            f"{m['requests']:,} requests rotating over {m['tokens']:,} distinct valid {m['alg']} "
            f"tokens (each token comes back only after all the others, so with the default "
            f"`cache.max_entries` of 1024 every request is a miss that verifies, inserts and "
            f"evicts: the worst case for the cache's memory), through the filter with its "
            f"default cache.{short} Non-2xx answers: {m['status_errors']:,}; socket errors: "
            f"{m['socket_errors']:,}. Envoy runs {m['vm_count']} V8 VMs for the filter (the "
            f"worker's is the largest); a VM's memory is its linear memory (`memory.size`, read "
            f"from the process's mappings: V8 gives each Wasm memory its own reservation).\n\n"
            + "\n".join(lines)
            + f"\n\nVerdict: {verdict} — the largest VM's memory changed by "
            f"{m['growth_after_fill'] / 1024:+.0f} KiB between {m['filled_at']:,} requests (cache "
            f"full) and the end (allowed: one 64 KiB page per 100k requests). Wasm memory never "
            f"shrinks, so this is the high-water mark.")

    def dpop_section(self) -> str:
        """The DPoP row: the proof check's CPU against one ES256 verification + 5 µs, and the
        memory after a flood of distinct proofs against the bearer variant's."""
        d, b = self.r.get(DPOP_KEY), self.r.get(DPOP_BEARER_KEY)
        if d is None:
            return f"Not run (`{DPOP_KEY}` was not among the variants)."
        es, source = self.es256_verify()
        lines = ["| | CPU µs/req | median |", "| --- | ---: | ---: |"]
        if b:
            lines.append(f"| the same token as bearer (`{DPOP_BEARER_KEY}`) | {b.cpu_us_per_req:.1f} "
                         f"| {b.median_us_per_req:.1f} |")
        lines.append(f"| DPoP-bound token + a fresh proof (`{DPOP_KEY}`) | {d.cpu_us_per_req:.1f} "
                     f"| {d.median_us_per_req:.1f} |")
        local = self.r.get(DPOP_LOCAL_KEY)
        if local:
            lines.append(f"| the same, replay cache in the worker only (`{DPOP_LOCAL_KEY}`) "
                         f"| {local.cpu_us_per_req:.1f} | {local.median_us_per_req:.1f} |")
            lines.append(f"| the shared-data replay bucket (`{DPOP_KEY}` − `{DPOP_LOCAL_KEY}`) "
                         f"| {d.cpu_us_per_req - local.cpu_us_per_req:+.1f} "
                         f"| {d.median_us_per_req - local.median_us_per_req:+.1f} |")
        verdict = next((t for t in self.targets() if t.name.startswith("DPoP proof check")), None)
        if b:
            diff = d.cpu_us_per_req - b.cpu_us_per_req
            lines.append(f"| **the proof check** (difference) | **{diff:.1f}** "
                         f"| {d.median_us_per_req - b.median_us_per_req:.1f} |")
        if es is not None:
            lines.append(f"| one ES256 verification: {source} | {es:.1f} | |")
            lines.append(f"| limit: one ES256 verification + 5 µs | {es + 5:.1f} | |")
        if verdict and verdict[2] is not None:
            lines.append(f"| verdict | {verdict[2]:.2f}x of the limit | {verdict[4]} |")
        crypto = (self.crypto or {}).get("data", {}).get("results", {})
        key_load = (crypto.get("ES256 key-load new") or {}).get("wasm32")
        verify = (crypto.get("ES256 new") or {}).get("wasm32")
        if key_load and verify:
            lines.append(f"| for reference, crypto-bench (Wasmtime): ES256 key preparation + "
                         f"verification | {key_load[1]:.0f} + {verify[1]:.0f} | |")
        text = [
            f"`{DPOP_KEY}`: every request carries a token bound to the client's P-256 key "
            f"(`cnf.jkt`) with `authorization: DPoP <token>` and a proof of its own in `dpop` "
            f"(ES256, a fresh `jti`, `htm` GET, `htu` `{DPOP_HTU}`, `ath`), minted ahead by "
            f"tests/test_dpop.py's `proof` and sent once each (wrk reads them from a file). The "
            f"provider requires DPoP (`dpop.algorithms: [ES256]`, `max_age_seconds: "
            f"{DPOP_MAX_AGE}` so no proof ages out during the run); `dpop.public_base_url: "
            f"{DPOP_BASE_URL}` fixes the `htu`; `replay_cache_entries: {DPOP_REPLAY_ENTRIES}`, "
            f"`shared_replay: true`; the token cache is on, so the token itself is verified once "
            f"and every request's cost over the bearer row is the proof: reading the header, one "
            f"ES256 verification of the proof, its claims, the key's thumbprint against "
            f"`cnf.jkt`, `ath` (against the token's SHA-256, kept with its cached identity) and "
            f"the replay caches (the worker's LRU and the shared-data bucket, whose host calls "
            f"`{DPOP_LOCAL_KEY}` prices by leaving them out), plus Envoy reading the longer "
            f"request (a "
            f"{(self.dpop_memory or {}).get('proof_bytes', '~530')}-byte `dpop` header). `{DPOP_BEARER_KEY}` is the reference: the same configuration "
            f"without the `dpop` settings (which a bearer request never reaches), the same kind "
            f"of token without `cnf`, as `Bearer`.",
            "",
            "\n".join(lines),
            "",
            f"The ES256 verification is priced by {source}: measured in the same V8, on the same "
            f"machine, minutes apart, and like the proof it includes parsing a JWS. "
            f"`{ES256_MANY_KEY}` sends a different token on every request ({MANY_TOKENS:,} in "
            f"turn), as every proof is a new signature: the verification branches on its "
            f"signature's data (scalar recoding, field inversion), and a CPU that sees one "
            f"signature over and over learns those branches, so `wasm-es256`'s single token "
            f"prices a verification lower{self.many_gap()}. Both sides "
            f"of the comparison are differences of this run's noisy figures (see the no-auth "
            f"pair above), so a verdict within a few µs means little on this machine. A proof "
            f"brings its key in its header; a token's key is prepared once, when its key set "
            f"loads (the point checked and its tables of odd multiples built: crypto-bench's "
            f"\"ES256 key-load\", more than a verification). The filter keeps a returning "
            f"client's prepared key by its proof header (`ProofKeys` in src/dpop.rs), so only "
            f"the first proof of a client pays for that; what is left over one verification is "
            f"the proof's claims, `ath`, the `htu`, the replay key (SHA-256 of the key's "
            f"thumbprint and the `jti`), the replay caches and Envoy reading the longer request.",
        ]
        text += ["", self.dpop_memory_section(), "",
                 "`make bench-wasmtime` (bench/wasm_host) has the same comparison without Envoy: "
                 "`dpop-es256` (a new proof per request, handed out in turn by the host) against "
                 "`es256-uncached-many` and `es256-cached`, in guest µs under Wasmtime and V8."]
        return "\n".join(text)

    def many_gap(self) -> str:
        """`wasm-es256` against `wasm-es256-many`, as said in the DPoP section."""
        one, many = self.cpu("wasm-es256"), self.cpu(ES256_MANY_KEY)
        if one is None or many is None:
            return ""
        return f" (this run: {one:.1f} µs with one token, {many:.1f} µs with many)"

    def dpop_memory_section(self) -> str:
        m = self.dpop_memory
        if not m:
            return "Memory: not measured (`--no-dpop-flood`, or the DPoP variant did not run)."
        if "error" in m:
            return f"Memory: **failed:** {m['error']}"
        mib = lambda b: f"{b / 2**20:.2f} MiB"  # noqa: E731
        head = ["| | proofs accepted | largest VM: memory.size | largest VM: resident "
                "| Envoy RSS | tcmalloc allocated |", "| --- | ---: | ---: | ---: | ---: | ---: |"]

        def row(name: str, c: dict[str, Any] | None, proofs: str) -> None:
            if c:
                head.append(f"| {name} | {proofs} | {mib(c['vm_size_max'])} | {mib(c['vm_rss_max'])} "
                            f"| {mib(c['envoy_rss'])} | {mib(c['tcmalloc_allocated'])} |")

        cps = m["checkpoints"]
        row(f"`{DPOP_KEY}` when started", m.get("start"), "0")
        step = max(1, math.ceil((len(cps) - 2) / 8))
        shown = cps if len(cps) <= 10 else cps[:1] + cps[1:-1][::step] + cps[-1:]
        for i, c in enumerate(shown):
            label = "after its rounds" if i == 0 else "flood" if c is not cps[-1] else "**end**"
            row(f"`{DPOP_KEY}`, {label}", c, f"{c['proofs']:,}")
        row(f"`{DPOP_BEARER_KEY}` (bearer) when started", m.get("bearer_start"), "—")
        row(f"`{DPOP_BEARER_KEY}` (bearer) at the end", m.get("bearer"), "—")
        short = ""
        if m["proofs"] < m["target_proofs"]:
            short = (f" **Only {m['proofs']:,} of the {m['target_proofs']:,} proofs were accepted "
                     f"within the time budget ({self.args.mem_budget} s).**")
        start, end = m.get("start"), cps[-1]
        grew = ""
        if start and m.get("bounded") is not None:
            grew = (f" From start to end the largest VM grew by "
                    f"{(end['vm_size_max'] - start['vm_size_max']) / 2**20:.2f} MiB "
                    f"(the documented ~100 bytes × {m['replay_cache_entries']:,} entries: "
                    f"~{m['replay_cache_entries'] * 100 / 2**20:.2f} MiB).")
        if m.get("bounded") is None:
            verdict = (f"Verdict: not judged — fewer than {4 * m['replay_cache_entries']:,} proofs "
                       f"(four times `replay_cache_entries`) went through: the second half of "
                       f"them would not start with a full cache.")
        else:
            verdict = (f"Verdict: {'**bounded**' if m['bounded'] else '**NOT bounded**'} — the "
                       f"largest VM's memory changed by {m['growth_after_fill'] / 1024:+.0f} KiB "
                       f"over the second half of the flood, from {m['filled_at']:,} proofs to the "
                       f"end (allowed: one 64 KiB page per 100k proofs; the LRU fills at "
                       f"{m['replay_cache_entries']:,} proofs, and its hash table is resized once "
                       f"more under the churn that follows, so the first half is not judged); "
                       f"over the same stretch Envoy's RSS changed by "
                       f"{m['rss_growth_after_fill'] / 2**20:+.2f} MiB and tcmalloc's allocated "
                       f"bytes (which hold the shared data) by "
                       f"{m['allocated_growth_after_fill'] / 2**20:+.2f} MiB.{grew}")
        return (
            f"Memory under a flood of distinct proofs: after its rounds, `{DPOP_KEY}`'s Envoy got "
            f"more requests, each with a new proof, until it had accepted {m['proofs']:,} in all "
            f"({m['proofs'] / m['replay_cache_entries']:.1f}x `replay_cache_entries`; every "
            f"proof is a new replay-cache entry, kept {DPOP_MAX_AGE} s, so the LRU is always "
            f"full and forgets its oldest). {m['minted']:,} proofs were minted in "
            f"{m['mint_s']:.0f} s; refused requests: {m['refused']:,}.{short} The documented "
            f"bound: about 100 bytes per entry in each worker's VM (~"
            f"{m['replay_cache_entries'] * 100 / 2**20:.1f} MiB) and "
            f"{math.ceil(m['replay_cache_entries'] / 16)} shared-data buckets of at most 16 × 24 "
            f"bytes in Envoy (~{math.ceil(m['replay_cache_entries'] / 16) * 16 * 24 / 2**20:.2f} "
            f"MiB).\n\n" + "\n".join(head) + "\n\n" + verdict)

    def startup_section(self) -> str:
        wasm = [r for r in self.results if r.variant.kind == "wasm"]
        plain = [r for r in self.results if r.variant.kind in ("none", "native")]
        noop = self.r.get("wasm-noop")
        vms = (self.memory or {}).get("vm_count")
        if not wasm or not plain:
            return "Not enough variants ran to compare."

        def med(xs: list[float | None]) -> float | None:
            ys = [x for x in xs if x is not None]
            return statistics.median(ys) if ys else None

        w_init, p_init = med([r.init_ms for r in wasm]), med([r.init_ms for r in plain])
        w_ready, p_ready = med([r.ready_s * 1e3 for r in wasm]), med([r.ready_s * 1e3 for r in plain])
        size = self.wasm.stat().st_size
        noop_path = REPO / "target" / "wasm32-wasip1" / "release" / "noop_filter.wasm"
        noop_size = noop_path.stat().st_size if noop_path.exists() else 0
        digest = hashlib.sha256(self.wasm.read_bytes()).hexdigest()[:16]
        lines = [f"- Module: `{self.wasm.relative_to(REPO) if self.wasm.is_relative_to(REPO) else self.wasm}`, "
                 f"**{size:,} bytes ({size / 2**20:.2f} MiB)**, sha256 {digest}…; its budget is 1 MiB "
                 f"({2**20 - size:+,} bytes left; tests/test_module.py holds it, `make size` shows "
                 f"where the bytes go)"]
        if w_init is not None and p_init is not None:
            lines.append(f"- VM start: **{w_init - p_init:.0f} ms** — Envoy's start-up (its log, "
                         f"first line to \"starting main dispatch loop\") takes {w_init:.0f} ms with "
                         f"the filter and {p_init:.0f} ms without (medians over {len(wasm)} and "
                         f"{len(plain)} starts). Most of it is V8 compiling the module, for "
                         f"each VM Envoy runs for the filter"
                         + (f" ({vms} with one worker: `wasm.wasm_vm_count`)." if vms else ".")
                         + (f" The no-op filter ({noop_size / 1024:.0f} KiB) starts in "
                            f"{noop.init_ms - p_init:.0f} ms." if noop and noop.init_ms is not None
                            and noop_size else ""))
        w_cpu, p_cpu = med([r.start_cpu_ms for r in wasm]), med([r.start_cpu_ms for r in plain])
        if w_cpu is not None and p_cpu is not None:
            lines.append(f"- CPU time Envoy had used when ready (less sensitive to other load on "
                         f"the machine than the wall-clock times): {w_cpu:.0f} ms with the filter, "
                         f"{p_cpu:.0f} ms without: **{w_cpu - p_cpu:.0f} ms of CPU** to start the "
                         f"filter's VMs"
                         + (f" (the no-op filter: {noop.start_cpu_ms - p_cpu:.0f} ms)."
                            if noop and noop.start_cpu_ms is not None else "."))
        if w_ready is not None and p_ready is not None:
            lines.append(f"- From process start to admin `/ready` = LIVE (polled every 50 ms): "
                         f"{w_ready:.0f} ms with the filter, {p_ready:.0f} ms without.")
        return "\n".join(lines)

    def wasm_host_section(self) -> str:
        w = self.wasm_host
        if not w:
            return "Not run (`--no-wasmtime`, or a smoke run): `make bench-wasmtime` runs it alone."
        status = "" if w["ok"] else (f"\n\n**bench/wasm_host/run.py exited with status "
                                     f"{w['status']}**:\n\n```\n{w['stderr']}\n```")
        return ("`bench/wasm_host/run.py` (" f"{w['seconds']:.0f} s; `make bench-wasmtime` runs it "
                "alone): the module with no proxy around it, in an emulated proxy-wasm host, under "
                "Wasmtime 26 (the runtime Kong embeds) and node's V8 (the engine Envoy embeds). "
                "`guest` is the module's own work per request, which does not depend on how fast "
                "the emulated host is; the host calls are counted. The same request path as the "
                "rows above (a cached RS256 request, a missing-token 401, an uncached RS256 "
                "request, beside the no-op filter), so the filter's own cost in Kong's runtime "
                "sits next to V8's. Details: docs/benchmarks-wasmtime.md.\n\n"
                f"{w['table']}{status}")

    def crypto_section(self) -> str:
        c = self.crypto
        if not c:
            return "Not run (`--no-crypto`)."
        status = "" if c["ok"] else (f"\n\n**crypto-bench exited with status {c['status']}**:\n\n"
                                     f"```\n{c['stderr']}\n```")
        return (f"`{c['command']}` ({c['seconds']:.0f} s): the signature primitives of "
                f"`crates/crypto` (\"new\") and jwt-simple's verification (\"old\"), compiled natively "
                f"and to wasm32-wasip1, the latter run by Wasmtime (Kong's runtime). Thread CPU "
                f"time per call.\n\n{c['table']}{status}")

    def targets_section(self) -> str:
        lines = ["| target | measured | limit | verdict |", "| --- | ---: | ---: | --- |"]
        missing = 0
        for t in self.targets():
            if t.value is None:
                missing += 1
                continue
            mark = "✅" if t.verdict == "met" else "❌"
            shown = (f"{t.value:.2f}x" if t.unit == "x" else f"{t.value:+.1f} {t.unit}") \
                + (f" ({t.detail})" if t.detail else "")
            limit = f"{t.limit:g}x" if t.unit == "x" else f"{t.limit:g} {t.unit}"
            lines.append(f"| {t.name} (`{t.what}`) | {shown} | {limit} | {mark} {t.verdict} |")
        if missing:
            lines.append(f"\n{missing} target(s) not measured: their variants did not run.")
        return "\n".join(lines)

    def render(self, profile: str) -> str:
        a, f = self.args, self.facts
        base = self.noauth()
        drift = ""
        if "noauth" in self.r and "noauth-2" in self.r:
            x, y = self.r["noauth"].cpu_us_per_req, self.r["noauth-2"].cpu_us_per_req
            drift = (f" No auth runs in two identical Envoys: {x:.1f} and {y:.1f} µs/request "
                     f"({abs(y - x) / min(x, y) * 100:.0f}% apart — a measure of this run's noise); "
                     f"the lower is the reference, which makes every ratio to it the stricter one.")
        today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        mode = " (**smoke run**: tiny durations, proves the script works; numbers mean little)" if a.smoke else ""
        return f"""# Benchmarks

Generated by `make bench` (`bench/bench.py`){mode} on {today}, commit {f['commit']}; the run took
{self.elapsed_s / 60:.1f} minutes. Only the "Profile" section is written by hand.

Machine: {f['cpus']} CPUs ({f['cpu']}), {f['memory']}, Linux {f['kernel']}, load average at start
{f['load']}. Envoy {f['envoy']}, `--concurrency 1`, V8. Load: {f['loadgen']}, {a.connections}
connections, `GET {PATH}` with the same token for every variant. All variants' Envoys run side
by side (idle but one); each gets {a.warmup} s of warmup, then {a.rounds} rounds visit every
variant in turn ({a.duration} s of load each, odd rounds in reverse order), so a burst of other
work on this shared, noisy machine hits one round of several variants instead of all of one.
Read the ratios, not the absolute numbers.

## Results

The primary figure is **Envoy's CPU time per request** (user+system time of all the Envoy
process's threads, from `/proc/<pid>/task/*/schedstat`, across a round's load, over the requests it completed), **the lowest of the rounds**: other work on this
machine can only add CPU time per request (contention for the cores and caches), so the least
disturbed round is the best estimate. The median and the spread ((max − min) / median) of the
rounds are shown beside it. Every figure is also given as a ratio to
no auth and to the native jwt_authn run it should be compared with (same algorithm with the cache
off; RS256 with its cache on for the cached rows; its own denial for the denial). Throughput and
latency depend on the load generator and the upstream sharing the machine's {f['cpus']} CPUs; CPU
per request does not.{drift}

{self.table()}

![CPU µs per request per variant]({self.png_name})

## The filter's own cost, in two modes

What the filter itself adds to a request, whatever the base: each variant's CPU µs/request **over
no auth's** (the median of its rounds; the spread is (max − min) / median), against what native
jwt_authn adds on the same request. Two modes, the same variants: **proxied** (each Envoy routes
to the upstream Envoy, as in the table above) and **`direct_response`** (the Envoy under test
answers the request itself, so no upstream work sits under either side: the smallest base, and
the hardest ratio). "Over the floor" is the cost over the no-op Wasm filter's, in the same mode.
The last column takes each variant's lowest round instead of the median. Two more no-op rows make
the host calls this filter makes and do no work of their own (bench/noop-filter with a
configuration): a cached hit's (the header map read, the clock, the token's header removed, the
claim header set) and a missing token's (the header map read, a local 401 of the same shape).
The filter's row minus that row is what the module itself adds; the rest is the proxy carrying
out the calls.

{self.own_cost_section()}

![Own cost per request, filter vs native, both modes]({Path(self.png_name).stem}-own.png)

## Targets

Ratios of CPU µs/request measured in this run (the first rows: lowest rounds, proxied; the DPoP
rows: see "DPoP" below); then the own-cost targets, from the medians of the direct_response mode.

{self.targets_section()}

## Where the time goes

Differences of CPU µs/request between runs of this table, and crypto-bench's times (fastest
batch, µs per verification) for the same algorithm:

{self.decomposition()}

### Samples by code region (perf)

{self.perf_section()}

## Memory: 100k distinct tokens

{self.memory_section()}

## DPoP: a bound ES256 token with its proof vs the same token as bearer

{self.dpop_section()}

## Module size and VM start

{self.startup_section()}

## Wasmtime (Kong's runtime) beside V8: the module alone, per request

{self.wasm_host_section()}

## Wasmtime (Kong's runtime) vs native: crypto-bench

{self.crypto_section()}

## Profile

{PROFILE_BEGIN}
{profile.strip()}
{PROFILE_END}

## Setup and how to reproduce

```
make bench          # this report: builds the module, .venv, installs wrk; ~{max(1, round(self.elapsed_s / 60))} minutes; exit 2 if a target is missed
make bench-smoke    # a few seconds per variant, 5 variants (DPoP among them), tiny memory tests: proves the script works (targets not judged: exit 0 unless a measurement failed)
.venv/bin/python bench/bench.py --help                  # durations, connections, --only KEY,KEY
.venv/bin/python bench/bench.py --only noauth,native-rs256,wasm-rs256 --no-memory --no-crypto
```

- Each variant: its own Envoy (`.venv/bin/envoy`, `--concurrency 1`), started by
  `tools/envoy_runner.py`, in front of the same upstream: a second Envoy that answers 200 itself
  (`direct_response`), so no Python server limits or disturbs the measurement.
- Before the load, one request checks the answer (200 with the identity header reaching the
  upstream and the token removed; 401 for the denials).
- Tokens and keys are made for the run (RSA-2048, P-256, Ed25519, a 256-bit HMAC secret); one
  inline JWKS serves every variant, native and Wasm. The filter's configuration: one provider
  with issuer, audience and the five algorithms, `default: authenticated`, `sub` copied into
  `{SUBJECT_HEADER}`, decision logs off, metrics on; uncached = `"cache": {{"max_entries": 0}}`.
  jwt_authn: the same issuer, audience, JWKS (`local_jwks`) and header (`claim_to_headers`);
  cached = `jwt_cache_config` (1024 entries). Its `jwt_cache_hit`/`jwt_cache_miss` counters are
  shown in the notes: with the cache off they stay 0 (every request is verified).
- DPoP (`{DPOP_KEY}`): a P-256 client key made for the run, the ES256 token with its
  thumbprint in `cnf.jkt`, and proofs minted ahead with tests/test_dpop.py's `proof` (1.5 times
  the last load's rate per load), handed to wrk in a file and sent once each
  (`.work/bench/wrk-dpop.lua`); the one check request before the load is sent twice, and the
  second must be refused as `dpop_proof_replayed`. `--dpop-flood N` (120k; 6k with `--smoke`)
  sets the distinct proofs for the memory reading, `--no-dpop-flood` skips it.
- Raw results: `.work/bench/results.json`; Envoy logs: `.work/envoy/bench-*`, kept when a run
  fails.
"""


def plot(results: list[Result], path: Path, base: Result | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"no auth": "#9e9e9e", "native": "#1f77b4", "native cached": "#6baed6",
              "filter uncached": "#ff7f0e", "filter cached": "#2ca02c", "denial": "#9467bd",
              "filter, no token": "#8c564b", "no-op Wasm filter": "#bcbd22",
              "filter DPoP": "#e377c2"}
    labels = [r.variant.label for r in results]
    values = [r.cpu_us_per_req for r in results]
    fig, ax = plt.subplots(figsize=(12, 0.38 * len(results) + 2.0))
    y = list(range(len(results)))[::-1]
    ax.barh(y, values, color=[colors.get(r.variant.group, "#333333") for r in results])
    ax.set_yticks(y, labels, fontsize=8)
    spread = max(values) / max(min(values), 1e-9)
    if spread > 30:
        ax.set_xscale("log")
    for yi, r in zip(y, results):
        text = f"{r.cpu_us_per_req:.1f}"
        if base:
            text += f"  ({r.cpu_us_per_req / base.cpu_us_per_req:.2f}x no auth)"
        ax.text(r.cpu_us_per_req, yi, "  " + text, va="center", fontsize=7)
    refs = [("no auth", base.cpu_us_per_req if base else None, "#555555", ":"),
            *[(r.variant.label, r.cpu_us_per_req, "#1f77b4", "--" if r.variant.cached else "-.")
              for r in results if r.variant.key in ("native-rs256", "native-rs256-cache")]]
    for name, x, color, style in refs:
        if x:
            ax.axvline(x, color=color, linestyle=style, linewidth=1.0, label=f"{name}: {x:.1f} µs")
    from matplotlib.patches import Patch

    groups = list(dict.fromkeys(r.variant.group for r in results))
    handles, _ = ax.get_legend_handles_labels()
    handles += [Patch(color=colors.get(g, "#333333"), label=g) for g in groups]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("Envoy CPU µs per request (lower is better)" + (", log scale" if spread > 30 else ""))
    ax.set_title("Identity filter vs no auth and Envoy's native jwt_authn (Envoy 1 worker, V8)",
                 fontsize=10)
    ax.set_xlim(right=max(values) * (4 if spread > 30 else 1.35))
    if spread > 30:
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        lo, hi = ax.get_xlim()
        ax.set_xticks([t for t in (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
                       if lo <= t <= hi])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_own_cost(report: Report, path: Path) -> None:
    """Own cost per request (over no auth, medians): the filter's bar beside native's, one
    panel per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.own_rows()
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.5 * len(rows) + 2.0), sharey=True)
    for ax, mode, title in zip(axes, ("proxied", "direct"),
                               ("proxied to an upstream", "direct_response")):
        y = list(range(len(rows)))[::-1]
        filt = [report.own(key, mode) or 0.0 for _, key, _ in rows]
        nat = [(report.own(native, mode) or 0.0) if native else 0.0 for _, _, native in rows]
        ax.barh([v + 0.2 for v in y], filt, height=0.4, color="#ff7f0e", label="filter")
        ax.barh([v - 0.2 for v in y], nat, height=0.4, color="#1f77b4", label="native jwt_authn")
        for yi, f, n in zip(y, filt, nat):
            ax.text(max(f, 0), yi + 0.2, f" {f:.1f}", va="center", fontsize=7)
            if n:
                ax.text(max(n, 0), yi - 0.2, f" {n:.1f}", va="center", fontsize=7)
        ax.set_yticks(y, [what for what, _, _ in rows], fontsize=8)
        ax.set_title(f"{title}", fontsize=9)
        ax.set_xlabel("CPU µs per request over no auth (median)")
        ax.axvline(0, color="#555555", linewidth=0.8)
        ax.set_xlim(right=max(filt + nat + [1.0]) * 1.25)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("The filter's own cost vs native jwt_authn's (Envoy 1 worker, V8)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


DEFAULT_PROFILE = """(Written by hand: where the filter's time goes, measured with a profiler or with timing
inside the VM. Keep it between the markers; `make bench` keeps this section when it rewrites the
rest of the file.)"""


def existing_profile(path: Path) -> str:
    if not path.exists():
        return DEFAULT_PROFILE
    text = path.read_text()
    if PROFILE_BEGIN in text and PROFILE_END in text:
        return text.split(PROFILE_BEGIN, 1)[1].split(PROFILE_END, 1)[0]
    return DEFAULT_PROFILE


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny durations, 5 variants, a small memory test and DPoP flood, no "
                         "crypto-bench; writes .work/bench/smoke/ instead of docs/")
    ap.add_argument("--duration", type=int, default=None,
                    help="seconds of measured load per variant and round (3; --smoke: 1)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds over all variants; a variant's figure is the lowest, its own "
                         "cost the median (3)")
    ap.add_argument("--warmup", type=int, default=None, help="seconds of warmup per variant (1)")
    ap.add_argument("--connections", type=int, default=16, help="keep-alive connections (16)")
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=False,
                    help="pin the Envoy under test to the last CPU, wrk and the upstream to the "
                         "others (default off: on this shared 2-CPU machine it made the figures "
                         "noisier, as the pinned Envoy cannot move away from other work)")
    ap.add_argument("--only", default=None, help="comma-separated variant keys (see --list)")
    ap.add_argument("--list", action="store_true", help="list the variants and exit")
    ap.add_argument("--no-memory", action="store_true", help="skip the 100k-token memory test")
    ap.add_argument("--mem-tokens", type=int, default=None, help="distinct tokens (100000)")
    ap.add_argument("--mem-requests", type=int, default=None, help="requests (1000000)")
    ap.add_argument("--mem-budget", type=int, default=None,
                    help="most seconds of load for the memory test (240); fewer requests are sent "
                         "if it runs out, and the report says so")
    ap.add_argument("--mem-chunk", type=int, default=None, help="seconds per memory checkpoint (10)")
    ap.add_argument("--dpop-flood", type=int, default=None,
                    help="distinct DPoP proofs the DPoP variant's Envoy must have accepted in all "
                         "(its rounds, then a flood within --mem-budget s) before its memory is "
                         "read (120000; --smoke 6000)")
    ap.add_argument("--no-dpop-flood", action="store_true",
                    help="skip the DPoP proof flood (the DPoP row's memory)")
    ap.add_argument("--no-crypto", action="store_true", help="skip crypto-bench/run.py")
    ap.add_argument("--no-wasmtime", action="store_true",
                    help="skip bench/wasm_host/run.py (the module under Wasmtime and V8, alone)")
    ap.add_argument("--perf", action=argparse.BooleanOptionalAction, default=None,
                    help="profile a few variants with perf record, when perf is installed "
                         "(default: on, off with --smoke)")
    ap.add_argument("--crypto-full", action="store_true", help="crypto-bench without --quick")
    ap.add_argument("--wasm", default=str(DEFAULT_WASM), help="the module to measure")
    ap.add_argument("--out", default=None, help="the Markdown report (docs/benchmarks.md)")
    args = ap.parse_args(argv)
    smoke = args.smoke
    defaults = {"duration": 1 if smoke else 3, "rounds": 1 if smoke else 3, "warmup": 1,
                "mem_tokens": 2000 if smoke else 100_000, "mem_requests": 10_000 if smoke else 1_000_000,
                "mem_budget": 20 if smoke else 240, "mem_chunk": 2 if smoke else 10,
                "dpop_flood": 6000 if smoke else 120_000}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.perf is None:
        args.perf = not smoke
    if smoke:
        args.no_crypto = True
        args.no_wasmtime = True
        if args.only is None:
            args.only = ",".join(SMOKE_KEYS)
    if args.out is None:
        args.out = str((WORK / "smoke" / "benchmarks.md") if smoke else (DOCS / "benchmarks.md"))
    return args


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    variants = all_variants()
    if args.list:
        for v in variants:
            print(f"{v.key:22} {v.label}")
        return 0
    if args.only:
        wanted = [k.strip() for k in args.only.split(",") if k.strip()]
        unknown = set(wanted) - {v.key for v in variants}
        if unknown:
            print(f"unknown variant(s): {', '.join(sorted(unknown))}; see --list", file=sys.stderr)
            return 2
        variants = [v for v in variants if v.key in wanted]
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)

    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    png = out.with_suffix(".png")
    try:
        bench = Bench(args)
        facts = machine_facts(find_envoy(), bench.loadgen)
        log(f"{len(variants)} variants, {args.warmup} s warmup, {args.rounds} rounds of "
            f"{args.duration} s each, {args.connections} connections, {facts['loadgen']}, "
            f"Envoy {facts['envoy']}")
        results: list[Result] = []
        memory: dict[str, Any] | None = None
        dpop_memory: dict[str, Any] | None = None
        with bench.responder() as responder:
            bench.upstream_port = responder.port
            assert responder.proc is not None
            pin(responder.proc.pid, bench.other_cpus)
            with contextlib.ExitStack() as stack:
                running = []
                for i, v in enumerate(variants, 1):
                    r = bench.start(v, stack)
                    running.append(r)
                    log(f"started {v.key} [{i}/{len(variants)}]: ready in {r.ready_s * 1e3:.0f} ms")
                for rnd in range(args.rounds):
                    # Every round visits every variant; odd rounds go backwards, so no variant
                    # always follows the same neighbour.
                    for r in (running if rnd % 2 == 0 else running[::-1]):
                        sl = bench.measure(r, args.duration)
                        r.slices.append(sl)
                        log(f"round {rnd + 1}/{args.rounds} {r.variant.key:20} "
                            f"{sl.cpu_us_per_req:8.1f} µs/req {sl.load.rps:9,.0f} req/s  "
                            f"p50 {fmt_us(sl.load.p50_us):>7} p99 {fmt_us(sl.load.p99_us):>7}")
                    if not responder.running:
                        raise BenchError(f"the upstream Envoy died{responder._tail_note()}")
                if args.perf:
                    for r in running:
                        if r.variant.key in PERF_KEYS:
                            r.profile = bench.profile(r)
                            log(f"perf {r.variant.key}: " + (", ".join(
                                f"{k} {v:.0f}%" for k, v in r.profile.items()) if r.profile
                                else "not available"))
                by_key = {r.variant.key: r for r in running}
                if DPOP_KEY in by_key and not args.no_dpop_flood:
                    try:
                        dpop_memory = bench.dpop_flood(by_key[DPOP_KEY], by_key.get(DPOP_BEARER_KEY))
                    except BenchError as e:
                        dpop_memory = {"error": str(e)}
                        log(f"dpop flood failed: {e}")
            for r in running:
                res = Result(r.variant, r.ready_s, r.init_ms, r.slices, profile=r.profile,
                             start_cpu_ms=r.start_cpu_ms)
                res.check()
                results.append(res)
                log(f"{r.variant.key:20} {res.cpu_us_per_req:8.1f} µs/req (lowest of {len(r.slices)}"
                    f"; median {res.median_us_per_req:.1f}, spread {res.spread * 100:.0f}%)  "
                    f"{'; '.join(res.notes)}")
            if not args.no_memory:
                if bench.loadgen.rotates_tokens:
                    try:
                        memory = bench.memory()
                    except BenchError as e:
                        memory = {"error": str(e)}
                        log(f"memory test failed: {e}")
                else:
                    memory = {"error": "needs wrk (oha cannot rotate tokens)"}
        crypto = None
        if not args.no_crypto:
            log("crypto-bench/run.py" + ("" if args.crypto_full else " --quick"))
            crypto = crypto_bench(quick=not args.crypto_full)
            if not crypto["ok"]:
                log(f"crypto-bench failed (status {crypto['status']}): {crypto['stderr'][-300:]}")
        wasm_host = None
        if not args.no_wasmtime:
            log("bench/wasm_host/run.py (Wasmtime and V8, the module alone)")
            wasm_host = wasm_host_bench()
            if not wasm_host["ok"]:
                log(f"bench/wasm_host/run.py failed (status {wasm_host['status']}): "
                    f"{wasm_host['stderr'][-300:]}")
        elapsed = time.monotonic() - started
        report = Report(results, args=args, facts=facts, wasm=Path(args.wasm), memory=memory,
                        crypto=crypto, wasm_host=wasm_host, elapsed_s=elapsed, png_name=png.name,
                        dpop_memory=dpop_memory)
        out.parent.mkdir(parents=True, exist_ok=True)
        plot([r for r in results if r.variant.mode == "proxied"], png, report.noauth())
        plot_own_cost(report, out.with_name(out.stem + "-own.png"))
        out.write_text(report.render(existing_profile(out)))
        raw = WORK / ("results-smoke.json" if args.smoke else "results.json")
        raw.write_text(json.dumps({
            "facts": facts, "args": vars(args), "elapsed_s": elapsed,
            "results": [{**dataclasses.asdict(r), "variant": dataclasses.asdict(r.variant),
                         "cpu_us_per_req": r.cpu_us_per_req, "median_us_per_req": r.median_us_per_req,
                         "spread": r.spread}
                        for r in results],
            "memory": memory, "dpop_memory": dpop_memory, "crypto": crypto and {k: v for k, v in crypto.items() if k != "table"},
        }, indent=1, default=str))
        log(f"wrote {out} and {png} in {elapsed / 60:.1f} minutes")
        print()
        print(report.targets_section())
        failed = [r for r in results if r.notes and any("were not" in n or "died" in n for n in r.notes)]
        if failed or (memory and ("error" in memory or not memory.get("bounded", True))) \
                or (dpop_memory and ("error" in dpop_memory or dpop_memory["refused"])) \
                or (crypto and not crypto["ok"]) or (wasm_host and not wasm_host["ok"]):
            log("some measurements are suspect or failed: see the report's notes; Envoy logs "
                "kept in .work/envoy/bench-*")
            return 1
        for envoy in bench.envoys:  # all went well: their logs are not needed
            if not envoy.running:
                envoy.remove_workdir()
        missed = [t.name for t in report.targets() if t.verdict.startswith("missed")]
        if missed:  # the report is written; the exit status says it did not meet its targets
            log(f"{len(missed)} target(s) missed: {'; '.join(missed)}")
            return 2
        return 0
    except (BenchError, EnvoyError) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; Envoys stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

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
floor under any Wasm filter). Also: where the CPU goes (perf, when installed), the Wasm VM's
memory while 100k distinct tokens go through the filter (1M requests), the module size, the VM
start time, and crypto-bench/run.py's Wasmtime vs native table.

Writes docs/benchmarks.md and docs/benchmarks.png (``--smoke``: .work/bench/smoke/ instead), the
raw results as JSON next to the work files (.work/bench/results.json). A section of
docs/benchmarks.md between ``<!-- profile:begin -->`` and ``<!-- profile:end -->`` is written by
hand and kept when the report is regenerated.

Needs: the release module (``make wasm``), ``.venv`` (``make venv``), bench/requirements.txt
(matplotlib, wasmtime) and wrk (installed with apt-get when missing and running as root; oha from
cargo is the fallback load generator, without the memory test). Every subprocess has a timeout;
every Envoy is stopped on exit, on failure and on SIGINT/SIGTERM.
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
from typing import Any, Callable, Iterator, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

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
            token_file: Path | None = None, first_token: int = 0) -> Load:
        seconds = max(1, int(seconds))
        if self.kind == "wrk":
            return self._wrk(url, seconds, headers, token_file, first_token)
        if token_file is not None:
            raise BenchError("rotating tokens needs wrk (oha cannot vary a header per request)")
        return self._oha(url, seconds, headers)

    def _wrk(self, url: str, seconds: int, headers: dict[str, str], token_file: Path | None,
             first_token: int) -> Load:
        script = self.tokens_lua if token_file else self.done_lua
        # Written before every run: a concurrent `make clean` may have removed .work/.
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(WRK_TOKENS if token_file else WRK_DONE)
        cmd = [self.binary, "-t1", f"-c{self.connections}", f"-d{seconds}s", "--timeout", "10s",
               "-s", str(script)]
        for name, value in headers.items():
            cmd += ["-H", f"{name}: {value}"]
        cmd.append(url)
        if token_file:
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


def filter_config(keys: Keys, *, cached: bool, default: str = "authenticated") -> dict[str, Any]:
    """This filter's configuration: one provider with the inline key set, every request needs a
    valid token, ``sub`` copied into a header. Decision logs are off (jwt_authn logs nothing
    per request either); metrics stay on, as in production."""
    config: dict[str, Any] = {
        "providers": [{"name": "bench", "issuer": ISSUER, "audiences": [AUDIENCE],
                       "jwks": keys.jwks(), "algorithms": list(ALGS)}],
        "default": default,
        "headers": {"claims": [{"claim": "sub", "header": SUBJECT_HEADER}]},
        "log": {"decisions": False},
    }
    if not cached:
        config["cache"] = {"max_entries": 0}
    return config


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


def responder_bootstrap() -> dict[str, Any]:
    """The upstream: an Envoy that answers 200 itself. It echoes the identity header and the
    first 8 characters of the Authorization header it received as response headers, so the
    sanity check can see that the filter under test injected the one and stripped the other
    (only 8: echoing the whole token would make every response ~1 KB larger for the variants
    that forward it)."""
    route = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
        "response_headers_to_add": [
            {"header": {"key": "x-seen-subject", "value": f"%REQ({SUBJECT_HEADER})%"}},
            {"header": {"key": "x-seen-authorization", "value": "%REQ(authorization):8%"}},
        ],
    }
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

    @property
    def group(self) -> str:
        if self.kind == "none":
            return "no auth"
        if self.kind == "noop":
            return "no-op Wasm filter"
        if self.expect != 200:
            return "denial"
        if self.kind == "native":
            return "native cached" if self.cached else "native"
        if self.alg is None:
            return "filter, no token"
        return "filter cached" if self.cached else "filter uncached"


def all_variants() -> list[Variant]:
    """Every variant, in run order: each filter variant runs next to its native reference; no
    auth runs twice, first and last, in two identical Envoys (their difference shows how noisy
    the run was)."""
    out = [Variant("noauth", "no auth (no filter)", "none", alg="RS256"),
           Variant("wasm-noop", "no-op proxy-wasm filter (the Wasm floor)", "noop", alg="RS256"),
           Variant("native-rs256-cache", "native jwt_authn RS256, cache on", "native", "RS256",
                   cached=True)]
    for alg in ALGS:
        low = alg.lower()
        out.append(Variant(f"native-{low}", f"native jwt_authn {alg}, cache off", "native", alg))
        out.append(Variant(f"wasm-{low}", f"filter {alg}, uncached", "wasm", alg,
                           ref_native=f"native-{low}"))
        out.append(Variant(f"wasm-{low}-cache", f"filter {alg}, cached", "wasm", alg, cached=True,
                           ref_native="native-rs256-cache"))
    out += [Variant("native-deny", "native jwt_authn, missing token (401)", "native", None,
                    expect=401),
            Variant("wasm-deny", "filter, missing token (401)", "wasm", None, cached=True,
                    expect=401, ref_native="native-deny"),
            Variant("wasm-anon", "filter, no token, anonymous route", "wasm", None, cached=True,
                    default="anonymous"),
            Variant("noauth-2", "no auth (a second, identical Envoy)", "none", alg="RS256")]
    return out


SMOKE_KEYS = ["noauth", "native-rs256", "wasm-rs256-cache"]
# Profiled with perf (--perf): where their CPU goes.
PERF_KEYS = ["noauth", "wasm-noop", "wasm-anon", "wasm-rs256-cache", "wasm-rs256", "wasm-es256",
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
        self.envoys: list[Envoy] = []  # every Envoy started, for removing their work dirs

    def http_filters(self, v: Variant) -> list[dict[str, Any]]:
        if v.kind == "none":
            return []
        if v.kind == "noop":
            return [wasm_filter(self.noop_wasm(), "{}", name="noop", root_id="noop")]
        if v.kind == "native":
            return [native_filter(self.keys, cached=v.cached)]
        return [wasm_filter(self.wasm, filter_config(self.keys, cached=v.cached, default=v.default))]

    def headers(self, v: Variant) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[v.alg]}"} if v.alg else {}

    def check(self, envoy: Envoy, v: Variant) -> None:
        """One request before the load: the status must be the expected one, and a valid token
        must reach the upstream as the identity header, without the token."""
        reply = envoy.request("GET", PATH, self.headers(v))
        if reply.status != v.expect:
            raise BenchError(f"{v.key}: expected status {v.expect}, got {reply.status} "
                             f"(x-identity-reason: {reply.header('x-identity-reason')}, "
                             f"body: {reply.text[:200]!r})")
        if v.expect == 200 and v.kind in ("native", "wasm") and v.alg:
            if reply.header("x-seen-subject") != SUBJECT:
                raise BenchError(f"{v.key}: the upstream did not get {SUBJECT_HEADER}: {reply!r}")
            if reply.header("x-seen-authorization"):
                raise BenchError(f"{v.key}: the token was forwarded upstream: {reply!r}")

    def start(self, v: Variant, stack: contextlib.ExitStack) -> Running:
        """Start the variant's Envoy (stopped when ``stack`` closes), check one request, warm up."""
        t0 = time.monotonic()
        envoy = Envoy(http_filters=self.http_filters(v), upstream_port=self.upstream_port,
                      name=f"bench-{v.key}", log_level="info", startup_timeout=120)
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
        if self.args.warmup > 0:
            self.loadgen.run(running.url, self.args.warmup, self.headers(v))
        return running

    def profile(self, r: Running, seconds: int = 2) -> dict[str, float] | None:
        """Where the Envoy process spends its CPU under load, by code region, from ``perf record``
        (samples of all its threads) grouped by DSO: V8's JIT code (the Wasm module, compiled),
        the envoy binary (Envoy itself and the V8 runtime, including the proxy-wasm host calls),
        the kernel (network), libc. None when perf is missing or not permitted."""
        perf = shutil.which("perf")
        if not perf or self.loadgen.kind != "wrk":
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
        load = self.loadgen.run(r.url, seconds, self.headers(r.variant))
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
        """bench/noop-filter, built once (its own crate, lock file and target directory)."""
        if self._noop is None:
            manifest = REPO / "bench" / "noop-filter" / "Cargo.toml"
            log("building bench/noop-filter (the no-op proxy-wasm filter)")
            run(["cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip1",
                 "--manifest-path", str(manifest)], timeout=900, what="cargo build noop-filter")
            self._noop = manifest.parent / "target" / "wasm32-wasip1" / "release" / "noop_filter.wasm"
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
                mem = json.loads(envoy.admin("/memory"))
                vms = wasm_memories(pid)
                checkpoints.append({
                    "requests": sent, "vms": vms,
                    "vm_size_max": max((m["size"] for m in vms), default=0),
                    "vm_rss_max": max((m["rss"] for m in vms), default=0),
                    "envoy_rss": rss_bytes(pid),
                    "tcmalloc_allocated": int(mem.get("allocated", 0)),
                    "tcmalloc_heap": int(mem.get("heap_size", 0)),
                })

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


class Report:
    def __init__(self, results: list[Result], *, args: argparse.Namespace, facts: dict[str, str],
                 wasm: Path, memory: dict[str, Any] | None, crypto: dict[str, Any] | None,
                 elapsed_s: float, png_name: str):
        self.r = {res.variant.key: res for res in results}
        self.results = results
        self.args = args
        self.facts = facts
        self.wasm = wasm
        self.memory = memory
        self.crypto = crypto
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

    # -- targets ----------------------------------------------------------------------------------

    def targets(self) -> list[tuple[str, str, float | None, float, str]]:
        """(target, what was measured, measured ratio, limit, verdict) for each target."""
        out = []
        base = self.noauth()
        native_cache = self.cpu("native-rs256-cache")

        def add(name: str, what: str, value: float | None, limit: float) -> None:
            if value is None:
                out.append((name, what, None, limit, "not measured"))
            elif self.args.smoke:  # seconds per variant on a shared machine: a number, no verdict
                out.append((name, what, value, limit, "not judged (smoke run)"))
            elif value <= limit:
                out.append((name, what, value, limit, "met"))
            else:
                out.append((name, what, value, limit, f"missed by {value / limit:.2f}x"))

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
        noop_path = REPO / "bench" / "noop-filter" / "target" / "wasm32-wasip1" / "release" / "noop_filter.wasm"
        noop_size = noop_path.stat().st_size if noop_path.exists() else 0
        digest = hashlib.sha256(self.wasm.read_bytes()).hexdigest()[:16]
        lines = [f"- Module: `{self.wasm.relative_to(REPO) if self.wasm.is_relative_to(REPO) else self.wasm}`, "
                 f"**{size:,} bytes ({size / 2**20:.2f} MiB)**, sha256 {digest}…"]
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

    def crypto_section(self) -> str:
        c = self.crypto
        if not c:
            return "Not run (`--no-crypto`)."
        status = "" if c["ok"] else (f"\n\n**crypto-bench exited with status {c['status']}**:\n\n"
                                     f"```\n{c['stderr']}\n```")
        return (f"`{c['command']}` ({c['seconds']:.0f} s): the signature primitives of "
                f"`src/crypto` (\"new\") and jwt-simple's verification (\"old\"), compiled natively "
                f"and to wasm32-wasip1, the latter run by Wasmtime (Kong's runtime). Thread CPU "
                f"time per call.\n\n{c['table']}{status}")

    def targets_section(self) -> str:
        lines = ["| target | measured | limit | verdict |", "| --- | ---: | ---: | --- |"]
        missing = 0
        for name, what, value, limit, verdict in self.targets():
            if value is None:
                missing += 1
                continue
            mark = "✅" if verdict == "met" else "❌"
            lines.append(f"| {name} (`{what}`) | {value:.2f}x | {limit:g}x | {mark} {verdict} |")
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

## Targets

From issue 6; ratios of CPU µs/request measured in this run.

{self.targets_section()}

## Where the time goes

Differences of CPU µs/request between runs of this table, and crypto-bench's times (fastest
batch, µs per verification) for the same algorithm:

{self.decomposition()}

### Samples by code region (perf)

{self.perf_section()}

## Memory: 100k distinct tokens

{self.memory_section()}

## Module size and VM start

{self.startup_section()}

## Wasmtime (Kong's runtime) vs native: crypto-bench

{self.crypto_section()}

## Profile

{PROFILE_BEGIN}
{profile.strip()}
{PROFILE_END}

## Setup and how to reproduce

```
make bench          # this report: builds the module, .venv, installs wrk; ~{max(1, round(self.elapsed_s / 60))} minutes; exit 2 if a target is missed
make bench-smoke    # a few seconds per variant, 3 variants, tiny memory test: proves the script works (targets not judged)
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
- Raw results: `.work/bench/results.json`; Envoy logs: `.work/envoy/bench-*`, kept when a run
  fails.
"""


def plot(results: list[Result], path: Path, base: Result | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"no auth": "#9e9e9e", "native": "#1f77b4", "native cached": "#6baed6",
              "filter uncached": "#ff7f0e", "filter cached": "#2ca02c", "denial": "#9467bd",
              "filter, no token": "#8c564b", "no-op Wasm filter": "#bcbd22"}
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
                    help="tiny durations, 3 variants, a small memory test, no crypto-bench; "
                         "writes .work/bench/smoke/ instead of docs/")
    ap.add_argument("--duration", type=int, default=None,
                    help="seconds of measured load per variant and round (1)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds over all variants; a variant's figure is the lowest (5)")
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
    ap.add_argument("--no-crypto", action="store_true", help="skip crypto-bench/run.py")
    ap.add_argument("--perf", action=argparse.BooleanOptionalAction, default=None,
                    help="profile a few variants with perf record, when perf is installed "
                         "(default: on, off with --smoke)")
    ap.add_argument("--crypto-full", action="store_true", help="crypto-bench without --quick")
    ap.add_argument("--wasm", default=str(DEFAULT_WASM), help="the module to measure")
    ap.add_argument("--out", default=None, help="the Markdown report (docs/benchmarks.md)")
    args = ap.parse_args(argv)
    smoke = args.smoke
    defaults = {"duration": 1, "rounds": 1 if smoke else 5, "warmup": 1,
                "mem_tokens": 2000 if smoke else 100_000, "mem_requests": 10_000 if smoke else 1_000_000,
                "mem_budget": 20 if smoke else 240, "mem_chunk": 2 if smoke else 10}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.perf is None:
        args.perf = not smoke
    if smoke:
        args.no_crypto = True
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
        elapsed = time.monotonic() - started
        report = Report(results, args=args, facts=facts, wasm=Path(args.wasm), memory=memory,
                        crypto=crypto, elapsed_s=elapsed, png_name=png.name)
        out.parent.mkdir(parents=True, exist_ok=True)
        plot(results, png, report.noauth())
        out.write_text(report.render(existing_profile(out)))
        raw = WORK / ("results-smoke.json" if args.smoke else "results.json")
        raw.write_text(json.dumps({
            "facts": facts, "args": vars(args), "elapsed_s": elapsed,
            "results": [{**dataclasses.asdict(r), "variant": dataclasses.asdict(r.variant),
                         "cpu_us_per_req": r.cpu_us_per_req, "median_us_per_req": r.median_us_per_req,
                         "spread": r.spread}
                        for r in results],
            "memory": memory, "crypto": crypto and {k: v for k, v in crypto.items() if k != "table"},
        }, indent=1, default=str))
        log(f"wrote {out} and {png} in {elapsed / 60:.1f} minutes")
        print()
        print(report.targets_section())
        failed = [r for r in results if r.notes and any("were not" in n or "died" in n for n in r.notes)]
        if failed or (memory and ("error" in memory or not memory.get("bounded", True))) \
                or (crypto and not crypto["ok"]):
            log("some measurements are suspect or failed: see the report's notes; Envoy logs "
                "kept in .work/envoy/bench-*")
            return 1
        for envoy in bench.envoys:  # all went well: their logs are not needed
            if not envoy.running:
                envoy.remove_workdir()
        missed = [name for name, _, _, _, verdict in report.targets() if verdict.startswith("missed")]
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

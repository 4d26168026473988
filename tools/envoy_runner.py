"""Start a real Envoy with the identity filter on 127.0.0.1, talk to it, stop it.

Used by the integration tests, ``make run`` and the benchmarks. Standard library only.

    from envoy_runner import Envoy
    with Envoy(wasm="target/wasm32-wasip1/release/identity_filter.wasm",
               config={"providers": [...]}, upstream_port=echo.port) as envoy:
        reply = envoy.request("GET", "/api/x", headers={"authorization": "Bearer ..."})
        reply.status, reply.header("x-identity-reason"), reply.upstream   # upstream: echo JSON
        envoy.stats()                        # {"wasmcustom.identity_filter.allowed": 3, ...}
        envoy.wait_for_log('"decision"')     # a line of Envoy's log

What it does: writes a bootstrap (``bootstrap()``: a listener whose HTTP connection manager runs
``envoy.filters.http.wasm`` with the plugin configuration as a JSON ``StringValue``, then the
router to the cluster ``upstream``; with ``tls=downstream_tls(...)`` the listener speaks TLS and
may ask for client certificates) as JSON into a fresh work directory, starts
``.venv/bin/envoy --concurrency 1 --disable-hot-restart`` with listener and admin on port 0 (the
kernel picks free ports: no races), waits until admin ``/ready`` answers ``LIVE``, and reads the
real listener port from admin ``/listeners``. Envoy's stdout and stderr go to ``envoy.log`` in the
work directory (kept after stop, for post-mortems; ``make clean`` removes ``.work/``).
Every wait has a timeout. The process itself is supervised (``supervised.Supervised``): on Linux
Envoy is killed if the Python process that started it dies (when started from the main thread),
and an ``atexit`` hook stops any Envoy still running.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import devkit_path  # noqa: F401  (identity_devkit on sys.path)
from identity_devkit import supervised

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "identity_filter.wasm"
DEFAULT_WORK = REPO / ".work" / "envoy"
WASM_FILTER_NAME = "envoy.filters.http.wasm"
WASM_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE_TYPE = "type.googleapis.com/google.protobuf.StringValue"
HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
            ".v3.HttpConnectionManager")
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
DOWNSTREAM_TLS_TYPE = ("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
                       ".DownstreamTlsContext")
ECHO_HEADER = "x-echo-upstream"

Headers = Union[Mapping[str, str], Sequence[tuple[str, str]], None]


# Envoy's own path normalization (Istio's default): RFC 3986 normalization and merged slashes
# before any filter sees the path.
NORMALIZING_HCM = {"normalize_path": True, "merge_slashes": True}


class EnvoyError(RuntimeError):
    """Envoy did not start, died, or did not answer in time. The message ends with the log tail."""


def find_envoy() -> str:
    """The Envoy binary: ``$ENVOY_BIN``, else the project venv's ``.venv/bin/envoy``."""
    explicit = os.environ.get("ENVOY_BIN")
    if explicit:
        return explicit
    candidate = REPO / ".venv" / "bin" / "envoy"
    if candidate.exists():
        return str(candidate)
    raise EnvoyError(f"no Envoy binary: run `make venv` (expected {candidate}) or set ENVOY_BIN")


# ---------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------

def plugin_config_json(config: Any) -> str:
    """The plugin configuration as the JSON string Envoy hands to the filter. A ``str`` is
    passed through unchanged (to test malformed documents)."""
    return config if isinstance(config, str) else json.dumps(config, separators=(",", ":"))


def wasm_filter(wasm: str | os.PathLike[str], config: Any, *, name: str = "identity",
                root_id: str = "identity", fail_open: bool = False) -> dict[str, Any]:
    """The ``envoy.filters.http.wasm`` HTTP filter entry that loads the module with ``config``."""
    return {
        "name": WASM_FILTER_NAME,
        "typed_config": {
            "@type": WASM_FILTER_TYPE,
            "config": {
                "name": name,
                "root_id": root_id,
                "fail_open": fail_open,
                "configuration": {"@type": STRING_VALUE_TYPE, "value": plugin_config_json(config)},
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(Path(wasm).resolve())}},
                },
            },
        },
    }


def static_cluster(name: str, port: int, host: str = "127.0.0.1",
                   connect_timeout: str = "2s") -> dict[str, Any]:
    """A plain-HTTP/1.1 STATIC cluster with one endpoint."""
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": host, "port_value": port}}}}]}],
        },
    }


def downstream_tls(certificate_chain: str | os.PathLike[str], private_key: str | os.PathLike[str],
                   *, client_ca: str | os.PathLike[str] | None = None,
                   require_client_certificate: bool = False) -> dict[str, Any]:
    """A TLS transport socket for the listener: the server certificate (PEM files) and, with
    ``client_ca``, a request for a client certificate, validated against that CA (a client may
    send none unless ``require_client_certificate``; one that does not validate ends the
    handshake)."""
    common: dict[str, Any] = {"tls_certificates": [{
        "certificate_chain": {"filename": str(Path(certificate_chain).resolve())},
        "private_key": {"filename": str(Path(private_key).resolve())},
    }]}
    if client_ca is not None:
        common["validation_context"] = {"trusted_ca": {"filename": str(Path(client_ca).resolve())}}
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": DOWNSTREAM_TLS_TYPE,
            "require_client_certificate": require_client_certificate,
            "common_tls_context": common,
        },
    }


def bootstrap(*, upstream_port: int, http_filters: Sequence[Mapping[str, Any]],
              extra_clusters: Iterable[Mapping[str, Any]] = (), listener_port: int = 0,
              admin_port: int = 0, route_timeout: str = "15s",
              hcm_options: Mapping[str, Any] | None = None,
              tls: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An Envoy bootstrap: listener ``ingress`` on 127.0.0.1:``listener_port`` running
    ``http_filters`` then the router to cluster ``upstream`` (127.0.0.1:``upstream_port``);
    admin on 127.0.0.1:``admin_port``. Port 0 lets the kernel choose. ``hcm_options`` are
    added to the HTTP connection manager's config, e.g. ``NORMALIZING_HCM``. ``tls``: the
    listener's transport socket (``downstream_tls(...)``); plain HTTP without it."""
    chain_tls = {"transport_socket": dict(tls)} if tls else {}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": HCM_TYPE,
                        "stat_prefix": "ingress",
                        "route_config": {
                            "name": "local",
                            "virtual_hosts": [{
                                "name": "all",
                                "domains": ["*"],
                                "routes": [{"match": {"prefix": "/"},
                                            "route": {"cluster": "upstream", "timeout": route_timeout}}],
                            }],
                        },
                        "http_filters": [*http_filters,
                                         {"name": "envoy.filters.http.router",
                                          "typed_config": {"@type": ROUTER_TYPE}}],
                        **(hcm_options or {}),
                    },
                }], **chain_tls}],
            }],
            "clusters": [static_cluster("upstream", upstream_port),
                         *[_cluster(c) for c in extra_clusters]],
        },
    }


def _cluster(spec: Mapping[str, Any]) -> dict[str, Any]:
    """An extra cluster: a full Envoy cluster dict, or the short form ``{"name", "port"[, "host"]}``."""
    if "port" in spec and "load_assignment" not in spec:
        return static_cluster(spec["name"], int(spec["port"]), spec.get("host", "127.0.0.1"))
    return dict(spec)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

@dataclass
class Reply:
    """An HTTP answer. ``headers`` keeps every (lower-cased name, value) pair in order."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of a header (several values joined with ", "), or None."""
        values = self.header_values(name)
        return ", ".join(values) if values else None

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self.headers if n == name]

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def from_upstream(self) -> bool:
        """True when the echo upstream answered (the request passed the proxy)."""
        return self.header(ECHO_HEADER) == "1"

    @property
    def upstream(self) -> dict[str, Any] | None:
        """What the echo upstream received (method, path, headers), or None if it did not answer.
        An answer without a body (to HEAD) gives {}."""
        if not self.from_upstream:
            return None
        return self.json() if self.body else {}

    def __repr__(self) -> str:
        return f"Reply(status={self.status}, headers={self.headers!r}, body={self.body[:300]!r})"


def http_request(port: int, method: str, path: str, headers: Headers = None,
                 body: bytes | str | None = None, *, host: str = "127.0.0.1",
                 timeout: float = 10.0) -> Reply:
    """One HTTP/1.1 request on a fresh connection. ``headers`` may be a mapping or a list of
    pairs (to send a header twice). Nothing is added but ``Host`` (unless given),
    ``Content-Length`` (with a body) and ``Connection: close``."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        names = {n.lower() for n, _ in pairs}
        conn.putrequest(method, path, skip_host="host" in names, skip_accept_encoding=True)
        for name, value in pairs:
            conn.putheader(name, value)
        if body is not None and "content-length" not in names:
            conn.putheader("Content-Length", str(len(body)))
        if "connection" not in names:
            conn.putheader("Connection", "close")
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, [(n.lower(), v) for n, v in resp.getheaders()], data)
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# The process
# ---------------------------------------------------------------------------------------------

class Envoy(supervised.Supervised):
    """One Envoy process with the identity filter (or any ``http_filters``) in front of
    ``upstream_port``.

    Arguments:
        wasm: the module (default: the release build). Ignored when ``http_filters`` is given.
        config: the plugin configuration (dict → JSON; a str is passed as is).
        upstream_port: the port of the upstream (e.g. the echo server) on 127.0.0.1.
        http_filters: the HTTP filters before the router; default ``[wasm_filter(wasm, config)]``.
            Benchmarks pass ``[]`` (no auth) or a jwt_authn filter as references.
        extra_clusters: more clusters, full dicts or ``{"name", "port"[, "host"]}`` (for
            ``dispatch_http_call`` targets such as a JWKS server).
        hcm_options: more fields of the HTTP connection manager (``NORMALIZING_HCM``).
        tls: a TLS listener (``downstream_tls(...)``: server certificate, optional or required
            client certificates); ``request()`` speaks plain HTTP, so talk to it over TLS
            yourself (``https://127.0.0.1:<port>``).
        listener_port, admin_port: 0 (default) for free ports chosen by the kernel.
        log_level: Envoy's ``--log-level``; ``extra_args``: more command-line flags.
        name: used in the work directory's name. ``workdir``: where config and log go.
        startup_timeout: seconds to wait for ``/ready`` = LIVE.
    """

    error = EnvoyError

    def __init__(self, wasm: str | os.PathLike[str] | None = None, config: Any = None, *,
                 upstream_port: int, http_filters: Sequence[Mapping[str, Any]] | None = None,
                 extra_clusters: Iterable[Mapping[str, Any]] = (), listener_port: int = 0,
                 admin_port: int = 0, log_level: str = "info", extra_args: Sequence[str] = (),
                 name: str = "envoy", workdir: str | os.PathLike[str] | None = None,
                 envoy_bin: str | None = None, startup_timeout: float = 30.0,
                 hcm_options: Mapping[str, Any] | None = None,
                 tls: Mapping[str, Any] | None = None):
        if http_filters is None:
            if config is None:
                raise ValueError("config is required unless http_filters is given")
            wasm_path = Path(wasm) if wasm is not None else DEFAULT_WASM
            if not wasm_path.exists():
                raise EnvoyError(f"no module at {wasm_path}: run `make wasm`")
            http_filters = [wasm_filter(wasm_path, config)]
        self.bootstrap = bootstrap(upstream_port=upstream_port, http_filters=http_filters,
                                   extra_clusters=extra_clusters, listener_port=listener_port,
                                   admin_port=admin_port, hcm_options=hcm_options, tls=tls)
        super().__init__(name, workdir, DEFAULT_WORK)
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.envoy_bin = envoy_bin
        self.startup_timeout = startup_timeout
        self.config_path: Path | None = None
        self.port = 0
        self.admin_port = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "Envoy":
        """Write the bootstrap, start Envoy, wait until it is LIVE. Raises EnvoyError (with the
        log tail) if it exits or is not ready within ``startup_timeout``."""
        workdir = self._workdir_for_start()
        # Envoy reads a JSON bootstrap as it reads YAML (envoy/envoy.yaml is the annotated form).
        self.config_path = workdir / "envoy.json"
        self.config_path.write_text(json.dumps(self.bootstrap, indent=2) + "\n")
        admin_address_path = workdir / "admin-address"
        admin_address_path.unlink(missing_ok=True)
        self._spawn([self.envoy_bin or find_envoy(), "--concurrency", "1", "-c", str(self.config_path),
                     "--log-level", self.log_level, "--disable-hot-restart",
                     "--admin-address-path", str(admin_address_path), *self.extra_args],
                    log_name="envoy.log", cwd=workdir)
        try:
            self._wait_ready(admin_address_path)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, admin_address_path: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            text = admin_address_path.read_text().strip() if admin_address_path.exists() else ""
            if text:
                self.admin_port = int(text.rsplit(":", 1)[1])
                try:
                    if self.admin("/ready", timeout=1.0).strip() == "LIVE":
                        self.port = self._listener_port()
                        if self.port:
                            return
                except (OSError, http.client.HTTPException, EnvoyError):
                    pass
            time.sleep(0.05)
        raise EnvoyError(f"Envoy not ready after {self.startup_timeout}s{self._tail_note()}")

    def _listener_port(self) -> int:
        data = json.loads(self.admin("/listeners?format=json", timeout=2.0))
        for status in data.get("listener_statuses", []):
            if status.get("name") == "ingress":
                return int(status["local_address"]["socket_address"]["port_value"])
        return 0

    def _check_alive(self) -> None:
        if self.proc is None:
            raise EnvoyError("not started")
        code = self.proc.poll()
        if code is not None:
            raise EnvoyError(f"Envoy exited with status {code}{self._tail_note()}")

    def __enter__(self) -> "Envoy":
        return self.start()

    # -- talking to it --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, headers: Headers = None,
                body: bytes | str | None = None, timeout: float = 10.0) -> Reply:
        """Send one request through Envoy's listener."""
        self._check_alive()
        return http_request(self.port, method, path, headers, body, timeout=timeout)

    def get(self, path: str, headers: Headers = None, **kwargs: Any) -> Reply:
        return self.request("GET", path, headers, **kwargs)

    def admin(self, path: str, method: str = "GET", timeout: float = 5.0) -> str:
        """The text of an admin endpoint, e.g. ``/stats`` or ``/ready``."""
        if not self.admin_port:
            raise EnvoyError("admin port unknown")
        reply = http_request(self.admin_port, method, path, timeout=timeout)
        return reply.text

    def stats(self, contains: str = "identity_filter.") -> dict[str, int]:
        """Counters and gauges whose name contains ``contains``, from admin ``/stats``.
        Envoy prefixes Wasm-defined metrics (``wasmcustom.``), so match on a substring."""
        out: dict[str, int] = {}
        for line in self.admin("/stats").splitlines():
            name, sep, value = line.partition(": ")
            if sep and contains in name and value.strip().lstrip("-").isdigit():
                out[name.strip()] = int(value)
        return out

    def counter(self, suffix: str) -> int | None:
        """The value of the one stat whose name ends with ``suffix`` (e.g.
        ``identity_filter.allowed``), or None if there is none."""
        matches = {n: v for n, v in self.stats(suffix).items() if n.endswith(suffix)}
        if not matches:
            return None
        if len(matches) > 1:
            raise EnvoyError(f"several stats end with {suffix}: {sorted(matches)}")
        return next(iter(matches.values()))

    # -- its log --------------------------------------------------------------------------------

    def log_mark(self) -> int:
        """The log's current size; pass it to ``log_lines(since=...)`` to see only newer lines."""
        return self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0

    def log_lines(self, since: int = 0) -> list[str]:
        if not self.log_path or not self.log_path.exists():
            return []
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace").splitlines()

    def wait_for_log(self, match: str | Callable[[str], bool], *, since: int = 0,
                     timeout: float = 5.0) -> str:
        """The first log line (after byte offset ``since``) containing ``match`` (or for which
        ``match(line)`` is true); EnvoyError after ``timeout`` seconds."""
        test = match if callable(match) else (lambda line: match in line)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines(since):
                if test(line):
                    return line
            if time.monotonic() >= deadline:
                raise EnvoyError(f"no log line matching {match!r} within {timeout}s{self._tail_note()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log, without the start-up listing of extensions and header maps."""
        kept = [l for l in self.log_text().splitlines() if "]   " not in l]
        return "\n".join(kept[-lines:])

    def __repr__(self) -> str:
        return f"Envoy(name={self.name!r}, port={self.port}, admin={self.admin_port}, log={self.log_path})"


def wasm_log_json(line: str) -> dict[str, Any] | None:
    """The JSON object a Wasm log line carries (Envoy prefixes it with its own fields), or None."""
    start = line.find("{")
    if start < 0:
        return None
    try:
        value = json.loads(line[start:])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None

#!/usr/bin/env python3
"""A JWKS / OIDC discovery server on 127.0.0.1 that tests control: what each path answers
(a JSON document, a status, garbage, a huge body, a delay, a dropped connection), and how
often each path was asked.

    from jwks_server import JwksServer
    with JwksServer() as idp:
        idp.serve_json("/keys", {"keys": [...]}, max_age=60)
        idp.serve_discovery("https://idp.test", jwks_uri="http://idp.test/keys")
        idp.serve("/keys", status=500)              # or body=b"garbage", delay=3.0, drop=True
        idp.count("/keys"); idp.wait_for_count("/keys", 2)

    python3 tools/jwks_server.py --jwks FILE [--port 0]   # serve FILE at /keys until Ctrl-C

Unknown paths answer 404. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DISCOVERY_PATH = "/.well-known/openid-configuration"


@dataclass
class Route:
    """How one path answers."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        route = owner._hit(path, dict(self.headers.items()))
        if route is None:
            route = Route(status=404, body=b'{"error":"not found"}')
        if route.delay:
            time.sleep(route.delay)
        if route.drop:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True
            return
        self.send_response(route.status)
        headers = {"content-type": "application/json", **route.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(route.body)))
        self.end_headers()
        try:
            self.wfile.write(route.body)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: "JwksServer"


class JwksServer:
    """The server; ``port`` is chosen by the kernel. Thread-safe."""

    def __init__(self, port: int = 0):
        self._lock = threading.Condition()
        self._routes: dict[str, Route] = {}
        self._counts: dict[str, int] = {}
        self.requests: list[tuple[float, str, dict[str, str]]] = []
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="jwks-server", daemon=True)
        self._thread.start()

    def __enter__(self) -> "JwksServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- behaviour --------------------------------------------------------------------------

    def serve(self, path: str, *, status: int = 200, body: bytes | str = b"", headers: dict[str, str] | None = None,
              delay: float = 0.0, drop: bool = False) -> None:
        """Set how ``path`` answers (replacing what it did before)."""
        raw = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._routes[path] = Route(status, raw, dict(headers or {}), delay, drop)

    def serve_json(self, path: str, document: Any, *, max_age: int | None = None, delay: float = 0.0,
                   status: int = 200) -> None:
        """Answer ``path`` with a JSON document (and ``Cache-Control: max-age`` if given)."""
        headers = {} if max_age is None else {"cache-control": f"public, max-age={max_age}"}
        self.serve(path, status=status, body=json.dumps(document), headers=headers, delay=delay)

    def serve_discovery(self, issuer: str, *, jwks_uri: str, claimed_issuer: str | None = None,
                        delay: float = 0.0) -> str:
        """Answer ``<issuer path>/.well-known/openid-configuration``. ``claimed_issuer`` makes
        the document name another issuer. Returns the path."""
        after_host = issuer.split("://", 1)[-1]
        base = "/" + after_host.split("/", 1)[1] if "/" in after_host else ""
        path = base.rstrip("/") + DISCOVERY_PATH
        doc = {"issuer": claimed_issuer or issuer, "jwks_uri": jwks_uri,
               "id_token_signing_alg_values_supported": ["RS256"]}
        self.serve_json(path, doc, delay=delay)
        return path

    def remove(self, path: str) -> None:
        with self._lock:
            self._routes.pop(path, None)

    # -- observation ------------------------------------------------------------------------

    def _hit(self, path: str, headers: dict[str, str]) -> Route | None:
        with self._lock:
            self._counts[path] = self._counts.get(path, 0) + 1
            self.requests.append((time.monotonic(), path, headers))
            self._lock.notify_all()
            return self._routes.get(path)

    def count(self, path: str) -> int:
        with self._lock:
            return self._counts.get(path, 0)

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()
            self.requests.clear()

    def wait_for_count(self, path: str, at_least: int, timeout: float = 10.0) -> int:
        """Wait until ``path`` was asked ``at_least`` times; returns the count (raises on timeout)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._counts.get(path, 0) < at_least:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{path} asked {self._counts.get(path, 0)} times, wanted {at_least}")
                self._lock.wait(left)
            return self._counts[path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--jwks", required=True, help="a JWKS file served at /keys")
    args = parser.parse_args(argv)
    server = JwksServer(args.port)
    server.serve_json("/keys", json.loads(Path(args.jwks).read_text()), max_age=300)
    print(f"listening on 127.0.0.1:{server.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

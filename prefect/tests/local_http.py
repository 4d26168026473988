"""Tiny HTTP servers on 127.0.0.1 for tests: scripted answers, a fault-injecting proxy, and a
recording proxy (what the gateway really forwards to the dispatcher), and an httpx transport
that records what it sends."""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

Answer = tuple[int, dict[str, str], bytes]


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    data = b"" if body is None else json.dumps(body).encode()
    sent = {"content-type": "application/json"} if data else {}
    sent.update(headers or {})
    return status, sent, data


class _Server:
    def __init__(self, handler_cls: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ScriptedServer(_Server):
    """Answers each path with a fixed :data:`Answer`, or a callable returning one; counts hits."""

    def __init__(self, routes: dict[str, Answer | Callable[[], Answer]]) -> None:
        self.routes = routes
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                path = self.path.split("?", 1)[0]
                server.hits[path] = server.hits.get(path, 0) + 1
                route = server.routes.get(path)
                if route is None:
                    status, headers, body = 404, {}, b""
                else:
                    status, headers, body = route() if callable(route) else route
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        super().__init__(Handler)


@dataclass(frozen=True)
class Forwarded:
    """One request a proxy received: header names lower-cased, every pair in order."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]

    def header_values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]


class FaultProxy(_Server):
    """Forwards to ``target``; answers 503 to the first ``fail_first`` requests whose path
    contains ``match`` (as Prefect does when SQLite is locked), or to all of them if
    ``fail_first`` is ``None``."""

    def __init__(self, target: str, match: str, fail_first: int | None) -> None:
        self.match = match
        self.fail_first = fail_first
        self.failed = 0
        self.forwarded = 0
        #: Every request received, in order (also the ones answered 503).
        self.received: list[Forwarded] = []
        upstream = urlsplit(target)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.received.append(Forwarded(self.command, self.path,
                                                tuple((k.lower(), v) for k, v in self.headers.items())))
                if proxy.match in self.path and (proxy.fail_first is None or proxy.failed < proxy.fail_first):
                    proxy.failed += 1
                    data = b'{"exception_message":"database is locked"}'
                    self.send_response(503)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                proxy.forwarded += 1
                conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

        super().__init__(Handler)


class RecordingProxy(FaultProxy):
    """Forwards everything to ``target`` and records what it received (:attr:`received`)."""

    def __init__(self, target: str) -> None:
        super().__init__(target, match="", fail_first=0)

    def with_request_id(self, request_id: str) -> list[Forwarded]:
        return [r for r in self.received if r.header_values("x-request-id") == [request_id]]


class Recording(httpx.HTTPTransport):
    """The real transport, keeping the requests sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return super().handle_request(request)

#!/usr/bin/env python3
"""A tiny threaded HTTP/1.1 server that answers every request with what it received, as JSON:

    {"method": "GET", "path": "/api/x?y=1",
     "headers": {"host": "...", "x-identity-subject": "alice", ...},
     "header_list": [["host", "..."], ["x-identity-subject", "alice"], ...],
     "body": "..."}

``headers`` maps each lower-cased name to its value; a header received several times has its
values joined with ", " (``cookie`` with "; "), as RFC 9110 §5.3 allows. ``header_list`` keeps
every (name, value) pair in the order received, for tests that care about duplicates.
Every answer carries ``x-echo-upstream: 1`` so a client can tell the upstream answered (and not
the proxy). The request is also recorded in ``server.received`` (the last 1000).

    python3 tools/echo_upstream.py [--port 0]     # prints "listening on 127.0.0.1:PORT"

Standard library only.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ECHO_HEADER = "x-echo-upstream"
MAX_BODY = 1 << 20


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        return b"".join(chunks)
    length = int(handler.headers.get("content-length") or 0)
    return handler.rfile.read(min(length, MAX_BODY)) if length else b""


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo-upstream"
    sys_version = ""

    def _echo(self) -> None:
        body = _read_body(self)
        pairs = [(name.lower(), value) for name, value in self.headers.items()]
        joined: dict[str, str] = {}
        for name, value in pairs:
            if name in joined:
                joined[name] += ("; " if name == "cookie" else ", ") + value
            else:
                joined[name] = value
        record: dict[str, Any] = {
            "method": self.command,
            "path": self.path,
            "headers": joined,
            "header_list": [list(p) for p in pairs],
            "body": body.decode("utf-8", "replace"),
        }
        self.server.received.append(record)  # type: ignore[attr-defined]
        payload = json.dumps(record, indent=1).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.send_header(ECHO_HEADER, "1")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler dispatches to do_<METHOD>; answer every method.
        if name.startswith("do_"):
            return self._echo
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:  # type: ignore[attr-defined]
            sys.stderr.write("echo-upstream: " + (format % args) + "\n")


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        super().__init__((host, port), EchoHandler)
        self.verbose = verbose
        self.received: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> "EchoServer":
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"echo-upstream-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()

    def __enter__(self) -> "EchoServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_echo_upstream(port: int = 0, verbose: bool = False) -> EchoServer:
    """Start an echo server on 127.0.0.1 (port 0: a free one) in a background thread."""
    return EchoServer("127.0.0.1", port, verbose).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP server that echoes requests as JSON")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    server = EchoServer("127.0.0.1", args.port, verbose=not args.quiet)
    print(f"listening on 127.0.0.1:{server.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

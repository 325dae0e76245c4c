"""A loopback HTTP proxy in front of the moto S3 server that breaks object downloads on cue.

Every request is passed through to the upstream server, except GETs of `.parquet` objects
(or of another suffix given to `inject`) while faults are queued: each such GET consumes one
fault. Faults:

- `500`: HTTP 500 with an S3 `InternalError` body,
- `503`: HTTP 503 with an S3 `SlowDown` body (what S3 says when throttling),
- `reset`: the real status and headers, a quarter of the body, then a TCP reset,
- `short`: the real status and headers (full Content-Length), half the body, then a close,
- `refuse`: a TCP reset before any response.

`deny_list_bucket` answers every ListObjects with 403 AccessDenied, as for a vendor key that
has no `s3:ListBucket` (Crypto Lake's `contents.json.gz` exists for those).

Ranged GETs (the footer read ahead of a download) are not downloads: they pass through, are
counted in `range_gets`, and fail with 500 only while `fail_ranges` is set.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("500", "503", "reset", "short", "refuse")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "trailer", "upgrade", "content-length"}
_ERROR_BODIES = {
    "500": ("InternalError", "We encountered an internal error. Please try again."),
    "503": ("SlowDown", "Please reduce your request rate."),
}


class FaultyProxy:
    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlparse(upstream)
        self.upstream_host, self.upstream_port = parsed.hostname, parsed.port
        self._lock = threading.Lock()
        self._faults: list[tuple[str, str]] = []  # (fault, path suffix it applies to)
        self.deny_list_bucket = False
        self.persistent: str | None = None  # a fault applied to every object GET
        self.object_gets = 0  # GETs of .parquet objects seen (faulty or not), not ranged
        self.range_gets = 0  # ranged GETs of .parquet objects
        self.fail_ranges = False
        self.injected: list[str] = []  # faults actually applied, in order
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

            def finish(self) -> None:
                try:
                    super().finish()
                except OSError:  # the socket was closed on purpose by a fault
                    pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:  # faults raise here
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultyProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def inject(self, *faults: str, suffix: str = ".parquet") -> None:
        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}")
        with self._lock:
            self._faults.extend((fault, suffix) for fault in faults)

    def _next_fault(self, handler: BaseHTTPRequestHandler) -> str | None:
        path = urllib.parse.urlparse(handler.path).path
        if handler.command != "GET":
            return None
        if handler.headers.get("Range") and path.endswith(".parquet"):
            with self._lock:
                self.range_gets += 1
            return "500" if self.fail_ranges else None
        with self._lock:
            if self._faults and path.endswith(self._faults[0][1]):
                fault = self._faults.pop(0)[0]
            elif path.endswith(".parquet"):
                fault = self.persistent
            else:
                return None
            self.object_gets += path.endswith(".parquet")
            if fault:
                self.injected.append(fault)
            return fault

    def _upstream(self, handler: BaseHTTPRequestHandler) -> tuple[int, str, list, bytes]:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            conn.request(handler.command, handler.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheaders(), data
        finally:
            conn.close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(handler.path).query)
        if self.deny_list_bucket and handler.command == "GET" and (
                "list-type" in query or "prefix" in query):
            _send_error(handler, 403, "AccessDenied", "Access Denied")
            return
        fault = self._next_fault(handler)
        if fault == "refuse":
            _reset(handler)
            return
        if fault in _ERROR_BODIES:
            _send_error(handler, int(fault), *_ERROR_BODIES[fault])
            return
        status, reason, headers, data = self._upstream(handler)
        handler.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                handler.send_header(name, value)
        # HEAD answers carry the object's length but no body.
        length = next((v for k, v in headers if k.lower() == "content-length"), None)
        handler.send_header("Content-Length",
                            length if handler.command == "HEAD" and length else str(len(data)))
        handler.end_headers()
        if handler.command == "HEAD":
            return
        if fault == "reset":
            handler.wfile.write(data[: len(data) // 4])
            handler.wfile.flush()
            _reset(handler)
        elif fault == "short":
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
        else:
            handler.wfile.write(data)


def _send_error(handler: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>proxy</RequestId></Error>").encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/xml")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _reset(handler: BaseHTTPRequestHandler) -> None:
    """Close the client's socket with a TCP RST (SO_LINGER 0) instead of a clean FIN."""
    handler.close_connection = True
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()


@contextmanager
def faulty_proxy(upstream: str) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()

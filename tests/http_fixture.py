"""A local HTTP server on 127.0.0.1 that serves a folder the way the upstream hosts do.

It answers GET and HEAD with Content-Length, honours `Range: bytes=N-` with 206 Partial
Content, logs every request, and can misbehave on purpose: cut a transfer after N bytes
(`cut_after`, once; `close_after`, every time), answer 503 a number of times
(`fail_times`), serve other bytes for a path (`override`), ignore Range headers
(`ignore_range`), answer without a Content-Length and close the connection to end the
body (`no_length`; a 206 then says `bytes N-M/*`), send the body in chunked encoding
(`chunked`; with a cut, the terminating chunk never comes) or answer slowly (`delay`,
with `max_in_flight` counting concurrent requests).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "upstream"
RANGE = re.compile(r"bytes=(\d+)-$")


@dataclass
class Behaviour:
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before dropping (once)
    fail_times: dict[str, int] = field(default_factory=dict)  # path -> number of 503 answers first
    override: dict[str, bytes] = field(default_factory=dict)  # path -> body served instead of the file
    ignore_range: set[str] = field(default_factory=set)  # paths answered 200 with the whole body
    close_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before closing (every request)
    no_length: set[str] = field(default_factory=set)  # paths answered without Content-Length (body ends at close)
    chunked: set[str] = field(default_factory=set)  # paths answered with Transfer-Encoding: chunked
    delay: float = 0.0  # seconds each request waits before it is answered
    in_flight: int = 0
    max_in_flight: int = 0  # the most requests served at the same time
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)


class UpstreamServer:
    """`with UpstreamServer() as server: server.url` -> http://127.0.0.1:PORT serving `root`."""

    def __init__(self, root: Path = FIXTURES):
        self.root = Path(root)
        self.behaviour = Behaviour()
        self._lock = threading.Lock()
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def requests_for(self, path: str) -> list[tuple[str, str, str | None]]:
        return [r for r in self.behaviour.requests if r[1] == path]

    def __enter__(self) -> "UpstreamServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _make_handler(server: UpstreamServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_HEAD(self) -> None:
            self._serve(send_body=False)

        def do_GET(self) -> None:
            self._serve(send_body=True)

        def _serve(self, send_body: bool) -> None:
            behaviour = server.behaviour
            with server._lock:
                behaviour.in_flight += 1
                behaviour.max_in_flight = max(behaviour.max_in_flight, behaviour.in_flight)
            try:
                time.sleep(behaviour.delay)
                self._answer(send_body)
            finally:
                with server._lock:
                    behaviour.in_flight -= 1

        def _answer(self, send_body: bool) -> None:
            path = self.path.split("?", 1)[0]
            behaviour = server.behaviour
            with server._lock:
                behaviour.requests.append((self.command, path, self.headers.get("Range")))
                failing = behaviour.fail_times.get(path, 0) > 0 and send_body
                if failing:
                    behaviour.fail_times[path] -= 1
                cut = behaviour.cut_after.pop(path, None) if send_body else None
                if cut is None and send_body:
                    cut = behaviour.close_after.get(path)
            if failing:
                return self._empty(503, "Service Unavailable")
            body = behaviour.override.get(path)
            if body is None:
                file = (server.root / path.lstrip("/")).resolve()
                if server.root.resolve() not in file.parents or not file.is_file():
                    return self._empty(404, "Not Found")
                body = file.read_bytes()
            no_length, chunked = path in behaviour.no_length, path in behaviour.chunked
            self._send(
                body, send_body, cut, ranges=path not in behaviour.ignore_range, length=not no_length, chunked=chunked
            )

        def _send(
            self,
            body: bytes,
            send_body: bool,
            cut: int | None,
            ranges: bool,
            length: bool = True,
            chunked: bool = False,
        ) -> None:
            start = 0
            match = RANGE.match(self.headers.get("Range", "")) if ranges else None
            if match:
                start = int(match.group(1))
                if start >= len(body):
                    return self._empty(416, "Range Not Satisfiable", {"Content-Range": f"bytes */{len(body)}"})
                self.send_response(206)
                total = len(body) if length else "*"
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{total}")
            else:
                self.send_response(200)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            elif length:
                self.send_header("Content-Length", str(len(body) - start))
            else:  # the end of the body is the end of the connection
                self.send_header("Connection", "close")
                self.close_connection = True
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if not send_body:
                return
            payload = body[start:] if cut is None else body[start : start + cut]
            if chunked:
                for at in range(0, len(payload), 4096):
                    piece = payload[at : at + 4096]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                if cut is None:
                    self.wfile.write(b"0\r\n\r\n")
            else:
                self.wfile.write(payload)
            if cut is not None:  # drop the connection mid-transfer
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)

        def _empty(self, code: int, reason: str, headers: dict | None = None) -> None:
            self.send_response(code, reason)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler

"""A tiny HTTP proxy (standard library, 127.0.0.1) in front of a sandbox that can garble answers.

The sandbox always answers valid JSON of the documented shapes; the proxy forwards each request
to it and lets a test rewrite the answer on the way back, byte for byte: truncated or invalid
JSON, a different shape, a field removed, nulled or added. Point ``LANGSMITH_ENDPOINT`` (or a
client) at ``proxy.url``.

    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = lambda answer: answer.replace(body=answer.body[:10]) if answer.path == X else answer
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

FORWARDED_RESPONSE_HEADERS = ("Content-Type", "X-Pagination-Total", "Retry-After",
                              "X-Members-List-All-Workspaces")


@dataclass(frozen=True)
class Answer:
    method: str
    path: str
    query: dict[str, list[str]]
    tenant_id: str | None
    status: int
    headers: dict[str, str]
    body: bytes

    def replace(self, **changes) -> "Answer":
        return replace(self, **changes)

    def json(self) -> Any:
        return json.loads(self.body)

    def with_json(self, value: Any) -> "Answer":
        return replace(self, body=json.dumps(value).encode())


class TamperingProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.tamper: Callable[[Answer], Answer] = lambda answer: answer
        self.tampered: list[Answer] = []  # answers the tamper function changed
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> "TamperingProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler_for(proxy: TamperingProxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request_body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            try:
                upstream.request(self.command, self.path, body=request_body, headers=headers)
                response = upstream.getresponse()
                body = response.read()
                answer = Answer(
                    method=self.command,
                    path=urlsplit(self.path).path,
                    query=parse_qs(urlsplit(self.path).query),
                    tenant_id=self.headers.get("X-Tenant-Id"),
                    status=response.status,
                    headers={k: response.headers[k] for k in FORWARDED_RESPONSE_HEADERS if k in response.headers},
                    body=body,
                )
            finally:
                upstream.close()
            changed = proxy.tamper(answer)
            if changed != answer:
                proxy.tampered.append(changed)
            self.send_response(changed.status)
            for name, value in changed.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(changed.body)))
            self.end_headers()
            self.wfile.write(changed.body)

        do_POST = do_PATCH = do_DELETE = do_GET

        def log_message(self, format, *args) -> None:
            pass

    return Handler

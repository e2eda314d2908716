"""A real webhook receiver on 127.0.0.1 for the notification tests.

It records every POST (path, headers, JSON body) and answers with the status the test sets
(with a ``Location`` header when ``location`` is set), after ``delay_seconds`` (a slow receiver), or one byte of its answer every ``trickle_seconds``
(a receiver that never quite times out a read), or, with ``close_without_answer``, reads each POST
and closes the connection without a word (a receiver or proxy that drops it). A GET (a redirect
followed) is recorded in ``gets``.
``peak_in_flight`` is the most POSTs it was answering at once; with ``hold_until_in_flight`` = N, each
POST waits (a minute at most) until N have been in at once before its delay: senders that
post side by side are seen to, whatever a busy machine does to their timing. With ``hold_answers``
(an event) set, each POST it accepted waits for that event (a minute at most) before it is answered:
a sender killed meanwhile, once ``wait_until_received`` says the POST is in, was killed after the
receiver accepted and before it heard so.

Its port is bound from the moment it is made and refuses connections until ``start()``: a
receiver that is down for a while, then up on that port (bound all along, no other process can
take the port meanwhile). Once stopped, it stays down.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    content_type: str | None
    body: dict
    authorization: str | None = None
    idempotency_key: str | None = None


class WebhookReceiver:
    def __init__(self, path: str = "/hooks/T000/B000/s3cr3t-token"):
        self.path = path
        self.status = 200
        self.delay_seconds = 0.0
        self.trickle_seconds = 0.0
        self.location: str | None = None
        self.retry_after: str | None = None  # a Retry-After header on its answers
        self.close_without_answer = False  # read a POST, then close the connection answering nothing
        self.posts = 0  # every POST it answered, refused ones included
        self.received: list[Received] = []
        self.gets: list[tuple[str, str | None]] = []  # (path, Authorization)
        self.hold_until_in_flight: int | None = None
        self.hold_answers: threading.Event | None = None
        self.in_flight = self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        # Bound, not listening: connections are refused until start() listens. Without
        # SO_REUSEADDR, which would let another socket bind the port while it does not listen.
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(), bind_and_activate=False)
        self._server.allow_reuse_address = False
        self._server.server_bind()
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> WebhookReceiver:
        self._server.server_activate()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                if receiver.close_without_answer:  # not accepted: not in ``received``
                    with receiver._lock:
                        receiver.posts += 1
                    self.close_connection = True
                    return
                with receiver._arrived:
                    status, delay, trickle = receiver.status, receiver.delay_seconds, receiver.trickle_seconds
                    receiver.posts += 1
                    if status < 300:  # what a receiver accepted is what it received
                        receiver.received.append(Received(self.path, self.headers.get("Content-Type"), body,
                                                          self.headers.get("Authorization"),
                                                          self.headers.get("Idempotency-Key")))
                    receiver.in_flight += 1
                    receiver.peak_in_flight = max(receiver.peak_in_flight, receiver.in_flight)
                    receiver._arrived.notify_all()
                    if receiver.hold_until_in_flight is not None:
                        wanted = receiver.hold_until_in_flight
                        receiver._arrived.wait_for(lambda: receiver.peak_in_flight >= wanted, timeout=60)
                    hold = receiver.hold_answers if status < 300 else None
                if hold is not None:
                    hold.wait(60)
                try:
                    self._answer(status, delay, trickle)
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1

            def _answer(self, status: int, delay: float, trickle: float) -> None:
                time.sleep(delay)
                if trickle:
                    answer = f"HTTP/1.1 {status} OK\r\nContent-Length: 0\r\n\r\n".encode()
                    try:
                        for i in range(len(answer)):
                            self.wfile.write(answer[i:i + 1])
                            self.wfile.flush()
                            time.sleep(trickle)
                    except OSError:  # the client gave up
                        pass
                    self.close_connection = True
                    return
                self.send_response(status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                if receiver.retry_after is not None:
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                with receiver._lock:
                    receiver.gets.append((self.path, self.headers.get("Authorization")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        return Handler

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def wait_until_received(self, count: int, timeout: float = 60) -> bool:
        """Whether ``count`` POSTs were accepted within ``timeout`` seconds."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.received) >= count, timeout)

    def bodies(self) -> list[dict]:
        with self._lock:
            return [r.body for r in self.received]

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

"""A real HTTP server that behaves like LangSmith's administration API (DESIGN.md section 6).

    with SandboxServer(generate_org(seed=7, members=30)) as sandbox:
        requests.get(f"{sandbox.url}/api/v1/orgs/current/info",
                     headers={"X-API-Key": sandbox.api_key,
                              "X-Organization-Id": sandbox.organization_id})

It runs on the standard library's ``ThreadingHTTPServer`` in a background thread, speaks
HTTP/1.1 with keep-alive, injects the faults of a ``FaultConfig`` and logs every request (never
the API key). What each route answers is in api.py.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import math
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, urlsplit

import orjson

from langsmith_access.sandbox.access_api import ROUTED_SECTIONS
from langsmith_access.sandbox.api import DEPLOYMENTS, KEY_ROLES, PLANS, SandboxApi
from langsmith_access.sandbox.faults import RATE_LIMIT_MODES, FaultConfig, RandomFault
from langsmith_access.sandbox.generator import generate_org
from langsmith_access.sandbox.org_state import OrgState
from langsmith_access.sandbox.routing import NO_BODY, ApiRequest, ApiResponse, HtmlPage
from langsmith_access.settings import SettingsError, check_api_key, shown

logger = logging.getLogger(__name__)

WORKSPACE_ROUTES_PREFIX = "/api/v1/workspaces/current/"

class _Drop(enum.Enum):
    CONNECTION = "close the connection without an answer"


# Returned instead of a response when the connection must be closed without one.
DROP_CONNECTION: Final = _Drop.CONNECTION


@dataclass(frozen=True)
class LoggedRequest:
    """One request the sandbox received. ``status`` is None when it closed the connection
    without answering. Header values are as sent (None when absent); the API key is never kept,
    only whether one was sent."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int | None
    tenant_id: str | None
    organization_id: str | None
    has_api_key: bool
    # When the sandbox finished handling it (time.time()): when a write "reached LangSmith".
    at: float = field(default_factory=time.time)


class RequestLog:
    """A thread-safe, append-only list of ``LoggedRequest``; iterating gives a snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def append(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def snapshot(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def __iter__(self):
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __getitem__(self, index):
        with self._lock:
            return self._entries[index]


def generate_api_key() -> str:
    """A random organization-scoped service key, shaped like LangSmith's."""
    return f"lsv2_sk_{secrets.token_hex(16)}_{secrets.token_hex(5)}"


class SandboxServer:
    """The LangSmith-compatible sandbox: an ``OrgState`` served over HTTP on ``host:port``.

    - ``org``: the live ``OrgState`` (default: ``generate_org(plan=plan)``); change it between
      requests.
    - ``api_key``: the accepted organization-scoped key (default: a generated ``lsv2_sk_`` key).
    - ``organization_id``: must match ``org`` when both are given.
    - ``faults``: the live ``FaultConfig`` (replace it or change its fields at any time).
    - ``enriched_route``, ``workspace_scoped_key``, ``delete_response``, and the deployment it
      plays (``deployment``, ``key_role``, ``plan``, ``anonymity_restricted``,
      ``missing_sections``, ``pagination_totals``): see ``SandboxApi``. The rate-limit mode is part of ``faults``
      (``FaultConfig``). Generate the org with the same ``plan`` (``generate_org(plan=...)``)
      for a consistent picture.
    - ``url``: ``http://host:port`` once started; ``request_log``: every request received.

    Use it as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        org: OrgState | None = None,
        *,
        api_key: str | None = None,
        organization_id: str | None = None,
        faults: FaultConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        enriched_route: bool = True,
        workspace_scoped_key: str | None = None,
        delete_response: str = "json_object",
        deployment: str = "cloud",
        key_role: str = "org-admin",
        plan: str = "enterprise",
        anonymity_restricted: bool = False,
        missing_sections: tuple[str, ...] = (),
        pagination_totals: str = "all",
    ) -> None:
        if organization_id is not None:
            organization_id = str(uuid.UUID(organization_id))
        if org is None:
            org = generate_org(organization_id=organization_id, plan=plan)
        elif organization_id is not None and organization_id != org.organization_id:
            raise ValueError("organization_id does not match the org's organization_id")
        self.org = org
        self.organization_id = org.organization_id
        self.api_key = api_key or generate_api_key()
        self.faults = faults or FaultConfig()
        self.host = host
        self.port = port
        self._url: str | None = None
        self.request_log = RequestLog()
        self.api = SandboxApi(
            org,
            api_key=self.api_key,
            workspace_scoped_key=workspace_scoped_key,
            enriched_route=enriched_route,
            delete_response=delete_response,
            deployment=deployment,
            key_role=key_role,
            plan=plan,
            anonymity_restricted=anonymity_restricted,
            missing_sections=missing_sections,
            pagination_totals=pagination_totals,
        )
        self._stopping = threading.Event()
        self._http_server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """The sandbox's base URL, known once it was started (and kept after it stops)."""
        if self._url is None:
            raise RuntimeError("the sandbox server has no URL until start() bound its port")
        return self._url

    def start(self) -> SandboxServer:
        if self._http_server is not None:
            raise RuntimeError("the sandbox server is already running")
        self._stopping.clear()
        self._http_server = _HttpServer((self.host, self.port), self)
        self.port = self._http_server.server_address[1]
        self._url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._http_server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"langsmith-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging or sleeping requests end at once, without an answer."""
        if self._http_server is None:
            return
        self._stopping.set()
        self._http_server.shutdown()
        self._http_server.close_open_connections()
        # Requests cut short (a hang, a latency sleep) are logged by their own threads: wait for
        # them, so that once stop() returns every request the sandbox received is in its log.
        self._http_server.wait_for_requests_in_flight(timeout=5)
        self._http_server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http_server = None
        self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def environment(self, duckdb_path: Path | str) -> dict[str, str]:
        """The variables that point langsmith-access at this sandbox and at ``duckdb_path``."""
        return {
            "LANGSMITH_API_KEY": self.api_key,
            "LANGSMITH_ORGANIZATION_ID": self.organization_id,
            "LANGSMITH_ENDPOINT": self.url,
            "LANGSMITH_ACCESS_DUCKDB": str(duckdb_path),
        }

    # -------------------------------------------------------------- request log

    def requests_matching(
        self, method: str | None = None, path_prefix: str | None = None
    ) -> list[LoggedRequest]:
        return [
            entry
            for entry in self.request_log
            if (method is None or entry.method == method.upper())
            and (path_prefix is None or entry.path.startswith(path_prefix))
        ]

    def reset_log(self) -> None:
        self.request_log.clear()

    # -------------------------------------------------------------- one request

    def respond(self, request: ApiRequest) -> ApiResponse | _Drop:
        """Faults first (as a proxy in front of LangSmith), then the API itself."""
        faults = self.faults
        if faults.latency_ms and self._stopping.wait(faults.latency_ms / 1000):
            return DROP_CONNECTION

        api_key = request.headers.get("X-API-Key") or ""
        key_fingerprint = hashlib.sha256(api_key.encode()).hexdigest()
        wait_seconds = faults.seconds_until_rate_limit_resets(key_fingerprint)
        if wait_seconds is not None:
            if faults.rate_limit_mode == "fixed-window":
                # LangSmith's load balancer: 429 until the window ends, and no Retry-After.
                return ApiResponse(429, {"detail": "Rate limit exceeded"})
            return _too_many_requests(faults, wait_seconds)

        random_fault = faults.draw_random_fault()
        if random_fault is RandomFault.THROTTLE:
            return _too_many_requests(faults, faults.retry_after_seconds)
        if random_fault is RandomFault.DROP:
            return DROP_CONNECTION
        if random_fault is RandomFault.HANG and self._stopping.wait(faults.hang_seconds):
            return DROP_CONNECTION
        if random_fault is RandomFault.ERROR:
            return _server_error(faults.random_error_status())

        if faults.route_fails(request.path):
            return _server_error(500)
        if request.path.startswith(WORKSPACE_ROUTES_PREFIX) and faults.workspace_fails(
            request.headers.get("X-Tenant-Id")
        ):
            return _server_error(500)

        try:
            return self.api.handle(request, faults)
        except Exception:
            # A bug in the sandbox: answer like a crashed service would, and say why in the log.
            logger.exception("sandbox failed on %s %s", request.method, request.path)
            return _server_error(500)


def _too_many_requests(faults: FaultConfig, seconds: int) -> ApiResponse:
    return ApiResponse(
        429,
        {"detail": "Rate limit exceeded"},
        {"Retry-After": faults.retry_after_header(seconds)},
    )


def _server_error(status: int) -> ApiResponse:
    return ApiResponse(status, {"detail": HTTPStatus(status).phrase})


class _HttpServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` that knows its sandbox and can cut its open connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self._open_connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._in_flight = 0  # requests read and not yet logged and answered
        self._in_flight_changed = threading.Condition()
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall on a broken resolver.
        socketserver.TCPServer.server_bind(self)
        # server_address as TCPServer.server_bind just stored it: (host, port) of an AF_INET socket.
        self.server_name, self.server_port = self.socket.getsockname()[:2]

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._open_connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive connections so they exit."""
        with self._connections_lock:
            connections = list(self._open_connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def request_started(self) -> None:
        with self._in_flight_changed:
            self._in_flight += 1

    def request_finished(self) -> None:
        with self._in_flight_changed:
            self._in_flight -= 1
            self._in_flight_changed.notify_all()

    def wait_for_requests_in_flight(self, timeout: float) -> bool:
        """Wait until no request is being handled; False if some still are after ``timeout``."""
        with self._in_flight_changed:
            return self._in_flight_changed.wait_for(lambda: self._in_flight == 0, timeout)

    def handle_error(self, request, client_address) -> None:
        # A client that went away (or a stop() that cut it) is normal here, not worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _UnreadableBody(Exception):
    """A request whose body cannot be framed (its Content-Length or a chunk size is no number)."""


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response sends Content-Length
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    timeout = 60  # idle keep-alive connections close after this long
    server: _HttpServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_GET

    def _serve(self) -> None:
        self.server.request_started()
        try:
            self._handle()
        finally:
            self.server.request_finished()

    def _handle(self) -> None:
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except _UnreadableBody:
            # What uvicorn answers a request it cannot frame; the API never sees it.
            self.close_connection = True
            self._write(ApiResponse(400, HtmlPage("Invalid HTTP request received.", "text/plain")))
            return
        if body is None:
            # The client went away before its body arrived (killed mid-send): a real server never
            # hands such a request to the API, so nothing answers, logs or applies it.
            self.close_connection = True
            return
        request = ApiRequest(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            client_ip=self.client_address[0],
        )
        outcome = self.server.sandbox.respond(request)
        response = None if outcome is DROP_CONNECTION else outcome
        # Logged before answering, so a client that got its answer also finds the log entry.
        self.server.sandbox.request_log.append(
            LoggedRequest(
                method=request.method,
                path=request.path,
                query=request.query,
                status=None if response is None else response.status,
                tenant_id=self.headers.get("X-Tenant-Id"),
                organization_id=self.headers.get("X-Organization-Id"),
                has_api_key=bool(self.headers.get("X-API-Key")),
            )
        )
        if response is None:
            self.close_connection = True
        else:
            self._write(response)

    def _read_body(self) -> bytes | None:
        """The request's body, by Content-Length or in chunks (``Transfer-Encoding: chunked``,
        which takes precedence, RFC 9112 6.3); None when it did not arrive whole.
        ``_UnreadableBody`` when its length or a chunk's size is no number."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                if not size_line.endswith(b"\n"):
                    return None  # cut short
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _UnreadableBody from None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailer fields: nothing here reads them
                    return b"".join(chunks)
                chunk = self.rfile.read(size)
                if len(chunk) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    return None
                chunks.append(chunk)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise _UnreadableBody from None
        body = self.rfile.read(length) if length > 0 else b""
        return body if len(body) == length or length < 0 else None

    def _write(self, response: ApiResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.body is NO_BODY:
            self.end_headers()
            return
        if isinstance(response.body, HtmlPage):
            payload = response.body.text.encode()
            content_type = response.body.content_type
        else:
            payload = orjson.dumps(response.body)  # UTF-8, like json.dumps(ensure_ascii=False)
            content_type = "application/json"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args) -> None:
        # request_log records requests; stderr stays quiet.
        pass


# ------------------------------------------------------------------ command line


def serve_from_cli(args) -> int:
    """``langsmith-access sandbox``: serve a generated org until SIGTERM or SIGINT.

    Prints one JSON line ``{"url", "organization_id", "api_key"}`` first. Exit 2 on bad arguments.
    """

    def refuse(message: str) -> int:
        print(f"langsmith-access sandbox: {message}", file=sys.stderr)
        return 2

    if not args.host.strip():
        # Python would listen on every interface, and the first line's url would be http://:PORT.
        return refuse("--host is empty: give the address to listen on, e.g. 127.0.0.1 (0.0.0.0: every interface)")
    organization_id = args.organization_id
    if organization_id is not None:
        try:
            organization_id = str(uuid.UUID(organization_id))
        except ValueError:
            return refuse(f"--organization-id must be a UUID, got {shown(organization_id)}")
    if args.api_key is not None:
        # The first line's api_key goes into LANGSMITH_API_KEY: refuse what that variable would
        # refuse (the same check, whose messages never echo the key).
        try:
            check_api_key(args.api_key, "--api-key")
        except SettingsError as error:
            return refuse(str(error))
    if args.members < 0 or args.workspaces < 0:
        return refuse("--members and --workspaces must not be negative")
    if not 0 <= args.fault_rate <= 1:
        return refuse("--fault-rate must be between 0 and 1")
    if not 0 <= args.port <= 65535:
        return refuse(f"--port must be between 0 and 65535 (0: any free port), got {args.port}")
    # nan passes every comparison and inf overflows the server's sleep: a finite number only.
    if not (math.isfinite(args.latency_ms) and args.latency_ms >= 0):
        return refuse(f"--latency-ms must be a number of milliseconds, 0 or more, got {args.latency_ms}")
    # Namespaces built by older callers may lack the newer options.
    pending_invites = getattr(args, "pending_invites", None)
    rate_limit_per_minute = getattr(args, "rate_limit_per_minute", None)
    if pending_invites is not None and pending_invites < 0:
        return refuse("--pending-invites must not be negative")
    if rate_limit_per_minute is not None and rate_limit_per_minute <= 0:
        return refuse("--rate-limit-per-minute must be positive")
    rate_limit_per_10_seconds = getattr(args, "rate_limit_per_10_seconds", None)
    if rate_limit_per_10_seconds is not None and rate_limit_per_10_seconds <= 0:
        return refuse("--rate-limit-per-10-seconds must be positive")
    deployment = getattr(args, "deployment", "cloud")
    key_role = getattr(args, "key_role", "org-admin")
    plan = getattr(args, "plan", "enterprise")
    rate_limit_mode = getattr(args, "rate_limit_mode", "rolling")
    rate_limit_window_seconds = getattr(args, "rate_limit_window_seconds", None)
    if rate_limit_window_seconds is None:  # not `or 60`: a 0 given is refused below, not made 60
        rate_limit_window_seconds = 60.0
    for flag, value, allowed in (
        ("--deployment", deployment, DEPLOYMENTS),
        ("--key-role", key_role, KEY_ROLES),
        ("--plan", plan, PLANS),
        ("--rate-limit-mode", rate_limit_mode, RATE_LIMIT_MODES),
    ):
        if value not in allowed:
            return refuse(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")
    if not (math.isfinite(rate_limit_window_seconds) and rate_limit_window_seconds > 0):
        return refuse(f"--rate-limit-window-seconds must be a positive number of seconds, got "
                      f"{rate_limit_window_seconds}")
    if key_role == "member-manager" and plan != "enterprise":
        # Its key holds a custom workspace role: custom roles are an Enterprise feature.
        return refuse("--key-role member-manager needs --plan enterprise (custom roles are Enterprise only)")
    missing_sections = tuple(
        name.strip() for name in (getattr(args, "missing_sections", "") or "").split(",") if name.strip()
    )
    unknown = sorted(set(missing_sections) - set(ROUTED_SECTIONS))
    if unknown:
        return refuse(
            f"--missing-sections: unknown section {', '.join(unknown)} "
            f"(known: {', '.join(ROUTED_SECTIONS)})"
        )

    org = generate_org(
        seed=args.seed,
        members=args.members,
        workspaces=args.workspaces,
        organization_id=organization_id,
        pending_invites=pending_invites,
        plan=plan,
        # Activity (logins, key use, the audit log) is placed around the time it starts.
        now=int(time.time()),
    )
    faults = FaultConfig(
        latency_ms=args.latency_ms,
        error_rate=args.fault_rate / 2,
        throttle_rate=args.fault_rate / 2,
        rate_limit_per_minute=rate_limit_per_minute,
        rate_limit_per_10_seconds=rate_limit_per_10_seconds,
        rate_limit_mode=rate_limit_mode,
        rate_limit_window_seconds=rate_limit_window_seconds,
        leak_full_keys=bool(getattr(args, "leak_full_keys", False)),
    )
    stop_requested = threading.Event()
    previous_handlers = {
        signum: signal.signal(signum, lambda *_: stop_requested.set())
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        sandbox = SandboxServer(
            org,
            api_key=args.api_key,
            faults=faults,
            host=args.host,
            port=args.port,
            deployment=deployment,
            key_role=key_role,
            plan=plan,
            anonymity_restricted=bool(getattr(args, "anonymity_restricted", False)),
            missing_sections=missing_sections,
            pagination_totals=getattr(args, "pagination_totals", "all"),
        )
        try:
            sandbox.start()
        except OSError as error:  # the port is taken, the host is not this machine's, ...
            return refuse(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}; "
                          "choose another --port (0: any free port) or --host")
        try:
            line = {
                "url": sandbox.url,
                "organization_id": sandbox.organization_id,
                "api_key": sandbox.api_key,
            }
            print(json.dumps(line), flush=True)
            # Wake up now and then: signal handlers run between waits.
            while not stop_requested.wait(0.2):
                pass
        finally:
            sandbox.stop()
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
    return 0

"""A redirect is never followed: not by the client's reads and writes, not by the doctor's probe.

An install behind a proxy that sends plain http to https (LangSmith's self-hosted chart does, with
TLS on) answers every request with a 301. Followed, a POST arrives as a GET (requests turns it
into one) and the ``X-API-Key`` header goes wherever the ``Location`` points. Here a redirector
on 127.0.0.1 answers every request with a redirect to a second server that records whatever
reaches it: nothing may.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from langsmith_access.doctor import CHECK_NAMES, _in_the_clear, run_checks
from langsmith_access.langsmith import EndpointRedirectError, LangSmithClient
from langsmith_access.langsmith.client import _shown_location
from langsmith_access.settings import ClientSettings, Secret

ORG_ID = "00000000-0000-4000-8000-000000000001"
WORKSPACE_ID = "00000000-0000-4000-8000-0000000000aa"
KEY = "lsv2_sk_" + "r" * 32


class _Server:
    """A server on 127.0.0.1 that answers every request with ``answer(handler)``."""

    def __init__(self, answer) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                answer(self)

            do_POST = do_PATCH = do_DELETE = do_GET

            def log_message(self, format, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def redirected(request) -> Iterator[tuple[_Server, str, list[tuple[str, str, str | None]]]]:
    """(redirector, target URL, what reached the target): every request to the redirector gets a
    ``request.param`` redirect to the target, which records (method, path, X-API-Key)."""
    reached: list[tuple[str, str, str | None]] = []

    def record(handler: BaseHTTPRequestHandler) -> None:
        reached.append((handler.command, handler.path, handler.headers.get("X-API-Key")))
        body = b"[]"
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    target = _Server(record)

    def redirect(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(request.param)
        handler.send_header("Location", f"{target.url}{handler.path}?session=s3cr3t")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    redirector = _Server(redirect)
    yield redirector, target.url, reached
    redirector.stop()
    target.stop()


def _client(endpoint: str) -> LangSmithClient:
    return LangSmithClient(ClientSettings(
        api_key=Secret(KEY), organization_id=ORG_ID, endpoint=endpoint, requests_per_minute=60_000,
        max_concurrency=2, connect_timeout_seconds=2.0, read_timeout_seconds=2.0, max_retries=2,
    ))


# Every 3xx, 300 Multiple Choices and 303 See Other included.
@pytest.mark.parametrize("redirected", [300, 301, 302, 303, 307, 308], indirect=True)
def test_reads_and_writes_stop_at_a_redirect_and_nothing_reaches_its_target(redirected):
    redirector, target_url, reached = redirected
    with _client(redirector.url) as client:
        calls = {
            "a read": lambda: client.list_workspaces(),
            "a paged read": lambda: list(client.list_org_members()),
            "a write": lambda: client.add_workspace_member(WORKSPACE_ID, org_identity_id=ORG_ID,
                                                           role_id=ORG_ID),
            "a delete": lambda: client.remove_workspace_member(WORKSPACE_ID, ORG_ID),
        }
        for what, call in calls.items():
            with pytest.raises(EndpointRedirectError) as raised:
                call()
            error = raised.value
            assert error.location.startswith(target_url + "/api/v1/"), (what, error.location)
            assert error.location in str(error) and "LANGSMITH_ENDPOINT" in str(error), what
            assert "s3cr3t" not in str(error) and KEY not in str(error), what
        assert client.stats.snapshot()["retries"] == 0  # a configuration error: not retried
    assert reached == []


@pytest.mark.parametrize("redirected", [301], indirect=True)
def test_the_doctor_fails_the_endpoint_at_a_redirect_with_the_fix(redirected):
    redirector, target_url, reached = redirected
    diagnosis = run_checks({"LANGSMITH_API_KEY": KEY, "LANGSMITH_ORGANIZATION_ID": ORG_ID,
                            "LANGSMITH_ENDPOINT": redirector.url})
    statuses = {check.name: check.status for check in diagnosis.checks}
    assert statuses == {name: "ok" if name == "configuration" else "fail" if name == "endpoint"
                        else "skip" for name in CHECK_NAMES}
    endpoint = next(check for check in diagnosis.checks if check.name == "endpoint")
    assert f"redirect to {target_url}/api/v1/orgs/current/info" in endpoint.detail, endpoint
    assert "s3cr3t" not in endpoint.detail
    assert endpoint.fix == EndpointRedirectError.fix
    assert reached == []


@pytest.mark.parametrize("endpoint, in_the_clear", [
    ("http://langsmith.internal:1984", True),
    ("http://10.0.0.7/api/v1", True),
    ("https://langsmith.internal", False),
    ("https://api.smith.langchain.com", False),
    ("http://127.0.0.1:8765", False),
    ("http://127.1.2.3", False),
    ("http://localhost:1984", False),
    ("http://[::1]:1984", False),
])
def test_plain_http_is_pointed_out_unless_it_stays_on_this_machine(endpoint, in_the_clear):
    # The doctor's endpoint check warns where this is true (the sandbox, on 127.0.0.1, stays ok).
    assert _in_the_clear(endpoint) is in_the_clear


@pytest.mark.parametrize("location, shown", [
    ("https://langsmith.example.com/api/v1/x?token=s3cr3t", "https://langsmith.example.com/api/v1/x"),
    ("http://[::1]:8443/api", "http://[::1]:8443/api"),  # IPv6 in brackets: a usable endpoint
    ("https://h.example.com:99999/api", "https://h.example.com/api"),  # a port that is no port
    ("https://h.example.com:abc/api", "https://h.example.com/api"),
    ("/elsewhere", "http://127.0.0.1:1984/elsewhere"),  # relative to the request
])
def test_where_a_redirect_points_is_shown_without_query_and_never_raises(location, shown):
    assert _shown_location("http://127.0.0.1:1984/api/v1/workspaces", location) == shown

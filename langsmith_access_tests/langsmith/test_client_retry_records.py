"""What the client's retries leave behind, and the one retry a write may make without an answer.

- ``take_retried_attempts``: each retried attempt, oldest first, with its status (None: no
  answer), its problem and the wait before the next attempt; taken once (the provisioning audit
  records them with the write's event).
- The backoff's jitter spans the upper half of each ceiling: half fixed, half random.
- A read that got no connection says why (refused, DNS, TLS, proxy: each has its own fix).
- A write whose connection timed out before it was made was never sent: it is retried, and
  applied once. Any other write that got no answer may have been applied and is never resent
  (``test_a_write_that_fails_in_transit_is_not_resent``).

Over real HTTP against the sandbox; waits recorded by a fake sleep.
"""

from __future__ import annotations

import random
import socket
from dataclasses import replace

import pytest

from langsmith_access.langsmith import ConnectionFailedError, LangSmithClient, TransientError
from langsmith_access.langsmith import client as client_module
from langsmith_access.langsmith.pacing import RateLimiter
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.sandbox.api import ApiResponse
from langsmith_access.settings import ClientSettings, Secret
from langsmith_access_tests.langsmith.sandbox_client_support import (
    ACTIVE,
    ROLES,
    WS_ACTIVE,
    WS_MEMBERS,
    RecordingSleep,
    client_for,
    expect_error,
    heal_after,
    wrap_respond,
)
from langsmith_access_tests.langsmith.test_redirects import _Server


def org_with_an_outsider():
    """A small org, its first shared workspace, an active member not in it, and the Viewer role."""
    org = generate_org(seed=7, members=40, workspaces=5)
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships)
    return org, workspace, outsider, org.role_by_name("WORKSPACE_VIEWER")


def test_each_retried_attempt_is_recorded_once_with_its_status_problem_and_wait():
    with SandboxServer(generate_org(seed=7, members=40, workspaces=5)) as sandbox:
        answers = [
            ApiResponse(429, {"detail": "Too many requests"}, {"Retry-After": "2"}),
            ApiResponse(503, {"detail": "Service Unavailable"}, {"Retry-After": "3"}),
        ]

        def refuse_twice(respond, request):
            return answers.pop(0) if answers else respond(request)

        wrap_respond(sandbox, refuse_twice)
        with client_for(sandbox, sleep=RecordingSleep()) as client:
            assert client.take_retried_attempts() == []
            assert client.list_roles()
            assert client.take_retried_attempts() == [
                {"method": "GET", "path": ROLES, "status_code": 429, "problem": "rate limited (429)",
                 "waited_seconds": 2.0},
                {"method": "GET", "path": ROLES, "status_code": 503,
                 "problem": "server error 503: Service Unavailable", "waited_seconds": 3.0},
            ]
            # Taken: the next request that needs no retry has none to tell.
            assert client.list_roles()
            assert client.take_retried_attempts() == []


def test_the_retries_of_pages_and_workspaces_read_in_pool_threads_are_the_callers():
    """A listing's later pages are read ahead, and each workspace's members read, in pool
    threads: their retries belong to the call that started them (the audit of a provisioning
    request records every attempt its reads made), not to threads that are gone."""
    org = generate_org(seed=7, members=1200, workspaces=3)
    with SandboxServer(org) as sandbox:
        refused: set[str] = set()

        def refuse_once_each(respond, request):
            offset = request.query.get("offset", ["0"])[0]
            key = request.path if request.path == WS_ACTIVE else f"{request.path}@{offset}"
            if key in (f"{ACTIVE}@500", f"{ACTIVE}@1000", WS_ACTIVE) and key not in refused:
                refused.add(key)
                return ApiResponse(503, {"detail": "Service Unavailable"}, {"Retry-After": "1"})
            return respond(request)

        wrap_respond(sandbox, refuse_once_each)
        with client_for(sandbox, sleep=RecordingSleep(), max_concurrency=4) as client:
            assert len(client.list_org_members().items) == len(org.active_members())
            retried = client.take_retried_attempts()
            assert [(r["path"], r["status_code"]) for r in retried] == [(ACTIVE, 503), (ACTIVE, 503)]
            assert client.take_retried_attempts() == []
            client.list_members_of_workspaces([w.id for w in org.shared_workspaces()[:2]])
            assert [(r["path"], r["status_code"]) for r in client.take_retried_attempts()] == [(WS_ACTIVE, 503)]


def test_an_attempt_that_got_no_answer_is_recorded_without_a_status():
    with SandboxServer(generate_org(seed=7, members=40, workspaces=5)) as sandbox:
        sandbox.faults.drop_rate = 1.0
        sleep = heal_after(sandbox, 1, drop_rate=0.0)
        with client_for(sandbox, sleep=sleep) as client:
            assert client.list_roles()
            [retried] = client.take_retried_attempts()
    assert retried["status_code"] is None and retried["path"] == ROLES
    assert retried["problem"].startswith("the connection dropped")
    assert retried["waited_seconds"] == round(sleep.waits[0], 3) > 0


def a_port_that_accepts_no_connection() -> tuple[socket.socket, socket.socket, int]:
    """A listener on 127.0.0.1 whose accept queue is full (one connection queued, never
    accepted): a connection to its port times out before anything is sent, as when a firewall
    drops the SYN. Returns the listener, the queued connection (close both to free the port) and
    the port."""
    jammed = socket.socket()
    jammed.bind(("127.0.0.1", 0))
    jammed.listen(0)
    port = jammed.getsockname()[1]
    return jammed, socket.create_connection(("127.0.0.1", port)), port


def test_a_write_whose_connection_timed_out_is_retried_and_applied_once():
    """The endpoint's accept queue is full, so the first attempt's connection is never made (a
    connect timeout: nothing was sent); then the sandbox starts on that port and the retry
    reaches it."""
    org, workspace, outsider, role = org_with_an_outsider()
    jammed, queued, port = a_port_that_accepts_no_connection()
    sandbox = SandboxServer(org, port=port)

    def open_the_endpoint(waits: int) -> None:
        queued.close()
        jammed.close()
        sandbox.start()

    sleep = RecordingSleep(heal=open_the_endpoint)
    settings = ClientSettings(
        api_key=Secret(sandbox.api_key), organization_id=sandbox.organization_id,
        endpoint=f"http://127.0.0.1:{port}", requests_per_minute=60_000, connect_timeout_seconds=0.3,
        read_timeout_seconds=5.0, max_retries=1,
    )
    try:
        with LangSmithClient(settings, sleep=sleep) as client:
            created = client.add_workspace_member(workspace.id, org_identity_id=outsider.id, role_id=role.id)
            assert client.stats.connection_errors == 1 and client.stats.retries == 1
            [retried] = client.take_retried_attempts()
    finally:
        queued.close()
        jammed.close()
        sandbox.stop()
    assert len(sleep.waits) == 1
    assert retried["status_code"] is None and retried["problem"].startswith("connection timed out")
    assert [e.status for e in sandbox.requests_matching("POST", WS_MEMBERS)] == [200]
    assert org.membership(workspace.id, outsider.ls_user_id).id == created.id


def test_a_write_whose_connection_timed_out_on_every_attempt_is_said_unsent():
    # No connection was ever made (a full accept queue drops the SYN): no byte of the write left
    # this machine, so the caller is told nothing was applied, with no re-read needed first.
    jammed, queued, port = a_port_that_accepts_no_connection()
    settings = ClientSettings(
        api_key=Secret("lsv2_sk_" + "e" * 32), organization_id="00000000-0000-4000-8000-000000000001",
        endpoint=f"http://127.0.0.1:{port}", connect_timeout_seconds=0.3, read_timeout_seconds=5.0, max_retries=1,
    )
    workspace_id, identity_id, role_id = ("00000000-0000-4000-8000-00000000000" + n for n in "234")
    try:
        with LangSmithClient(settings, sleep=RecordingSleep()) as client:
            with pytest.raises(TransientError, match="connection timed out") as raised:
                client.add_workspace_member(workspace_id, org_identity_id=identity_id, role_id=role_id)
            assert client.stats.connection_errors == 2 and client.stats.retries == 1
    finally:
        queued.close()
        jammed.close()
    assert raised.value.maybe_applied is False and "may or may not" not in str(raised.value)
    assert raised.value.fix == TransientError.fix


def test_every_attempt_a_retry_included_takes_a_slot_of_the_rate_limiter(monkeypatch):
    # Requests stay under the org's rate limit: an attempt sent again after a 429 or a 5xx is a
    # request like any other, and goes through the limiter too.
    taken: list[float] = []

    class CountingLimiter(RateLimiter):
        def acquire(self) -> float:
            taken.append(1.0)
            return super().acquire()

    monkeypatch.setattr(client_module, "RateLimiter", CountingLimiter)
    with SandboxServer(generate_org(seed=7, members=40, workspaces=5)) as sandbox:
        answers = [ApiResponse(429, {"detail": "Too many requests"}, {"Retry-After": "0"}),
                   ApiResponse(503, {"detail": "Service Unavailable"}, {"Retry-After": "0"})]
        wrap_respond(sandbox, lambda respond, request: answers.pop(0) if answers else respond(request))
        with client_for(sandbox, sleep=RecordingSleep()) as client:
            assert client.list_roles()
            assert client.stats.retries == 2
        sent = sandbox.requests_matching("GET", ROLES)
    assert [e.status for e in sent] == [429, 503, 200]
    assert len(taken) == len(sent) == client.stats.calls


def test_the_client_sends_no_more_requests_than_its_requests_per_minute():
    # LANGSMITH_ACCESS_REQUESTS_PER_MINUTE is the client's budget: 6 a minute (3 in any 10 s)
    # sends a 7th request a minute after the first, and the time waited is counted. (The
    # client's clock is a fake one, advanced by its sleeps: the limiter keeps time by it.)
    now = [0.0]
    sent_at: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with SandboxServer(generate_org(seed=7, members=40, workspaces=5)) as sandbox:
        def note_the_time(respond, request):
            sent_at.append(now[0])
            return respond(request)

        wrap_respond(sandbox, note_the_time)
        with client_for(sandbox, sleep=sleep, clock=lambda: now[0], requests_per_minute=6) as client:
            for _ in range(7):
                assert client.list_roles()
            assert client.stats.wait_seconds == pytest.approx(60.0)
    assert sent_at == pytest.approx([0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 60.0])


def test_a_read_that_found_nothing_listening_says_the_connection_was_refused(refused_port):
    key = "lsv2_sk_" + "c" * 32
    settings = ClientSettings(
        api_key=Secret(key), organization_id="00000000-0000-4000-8000-000000000001",
        endpoint=f"http://127.0.0.1:{refused_port}", connect_timeout_seconds=2.0, max_retries=1,
    )
    sleep = RecordingSleep()
    with LangSmithClient(settings, sleep=sleep) as client:
        error = expect_error(TransientError, client.list_roles, keys=[key],
                             contains=[ROLES, "no connection: connection refused", "gave up after 2 attempts"])
        assert client.stats.connection_errors == 2 and len(sleep.waits) == 1
    assert error.maybe_applied is False
    # Told not to retry (LANGSMITH_ACCESS_MAX_RETRIES=0): one attempt, said so.
    with LangSmithClient(replace(settings, max_retries=0), sleep=sleep) as client:
        once = expect_error(TransientError, client.list_roles, keys=[key],
                            contains=["no connection: connection refused", "gave up after 1 attempt"])
        assert "attempts" not in str(once)


def test_a_write_that_found_nothing_listening_is_sent_again_and_said_unsent(refused_port):
    # Refused at connect: no byte of the write left this machine, so it is retried as after a
    # connect timeout, and the caller is told nothing was applied (no re-read needed).
    key = "lsv2_sk_" + "d" * 32
    settings = ClientSettings(
        api_key=Secret(key), organization_id="00000000-0000-4000-8000-000000000001",
        endpoint=f"http://127.0.0.1:{refused_port}", connect_timeout_seconds=2.0, max_retries=1,
    )
    sleep = RecordingSleep()
    workspace_id, identity_id, role_id = ("00000000-0000-4000-8000-00000000000" + n for n in "234")
    with LangSmithClient(settings, sleep=sleep) as client:
        error = expect_error(
            TransientError,
            lambda: client.add_workspace_member(workspace_id, org_identity_id=identity_id, role_id=role_id),
            keys=[key], contains=["no connection (workspace", "connection refused", "gave up after 2 attempts"])
        assert client.stats.connection_errors == 2 and len(sleep.waits) == 1
    assert error.maybe_applied is False and error.method == "POST"
    assert "may or may not" not in str(error)


class _Jitter(random.Random):
    """Draws the jitter at one end of its span."""

    def __init__(self, at_top: bool):
        super().__init__(0)
        self.at_top = at_top

    def uniform(self, a, b):
        return b if self.at_top else a


@pytest.mark.parametrize("at_top, waits", [(False, [0.25, 0.5, 1.0]), (True, [0.5, 1.0, 2.0])])
def test_the_backoff_after_a_5xx_is_half_fixed_and_half_random(at_top, waits):
    with SandboxServer(generate_org(seed=7, members=40, workspaces=5)) as sandbox:
        sandbox.faults.error_rate = 1.0
        sleep = heal_after(sandbox, 3, error_rate=0.0)
        settings = ClientSettings(
            api_key=Secret(sandbox.api_key), organization_id=sandbox.organization_id, endpoint=sandbox.url,
            requests_per_minute=60_000, max_retries=3,
        )
        with LangSmithClient(settings, sleep=sleep, rng=_Jitter(at_top)) as client:
            assert client.list_roles()
    assert sleep.waits == waits


@pytest.mark.parametrize("status, headers, said", [
    (429, {"Retry-After": "1"}, "rate limited"), (408, {}, "not taken"), (425, {}, "not taken")])
def test_a_write_the_server_did_not_take_on_every_attempt_surely_was_not_applied(status, headers, said):
    # 429, 408 and 425 mean the request was not processed: when every retry of a write is
    # answered so, the caller may send it again later without re-reading (maybe_applied is false).
    org, workspace, outsider, role = org_with_an_outsider()
    with SandboxServer(org) as sandbox:
        wrap_respond(sandbox, lambda respond, request: (
            ApiResponse(status, {"detail": "Not now"}, headers) if request.method == "POST" else respond(request)))
        sleep = RecordingSleep()
        with client_for(sandbox, sleep=sleep) as client:
            with pytest.raises(TransientError, match=said) as raised:
                client.add_workspace_member(workspace.id, org_identity_id=outsider.id, role_id=role.id)
    assert raised.value.maybe_applied is False
    if "Retry-After" in headers:
        assert sleep.waits and set(sleep.waits) == {1.0}  # each retry waited what Retry-After asked
    assert org.membership(workspace.id, outsider.ls_user_id) is None


def test_a_probe_whose_connection_was_never_made_says_connect_timeout_not_read_timeout():
    # A full accept queue drops the SYN: the connection times out before anything is sent.
    # Its fix (a firewall, a wrong host) differs from a server that took too long to answer.
    jammed, queued, port = a_port_that_accepts_no_connection()
    settings = ClientSettings(
        api_key=Secret("lsv2_sk_" + "c" * 32), organization_id="00000000-0000-4000-8000-000000000001",
        endpoint=f"http://127.0.0.1:{port}", connect_timeout_seconds=0.3, read_timeout_seconds=5.0,
    )
    try:
        with LangSmithClient(settings, sleep=RecordingSleep()) as client:
            with pytest.raises(ConnectionFailedError) as raised:
                client.probe()
            stats = client.stats.snapshot()
    finally:
        queued.close()
        jammed.close()
    assert raised.value.cause == "connect-timeout" and "no connection within 0.3 s" in str(raised.value)
    # Sent once, never retried, and counted as the connection error it was.
    assert (stats["calls"], stats["retries"], stats["connection_errors"]) == (1, 0, 1)


@pytest.mark.parametrize("status, method", [(503, "GET"), (429, "GET"), (429, "POST")])
def test_retries_exhausted_keep_the_last_answers_status(status, method):
    # The provisioning audit and the sync's section errors record error.status_code: a request
    # answered 503 or 429 on every attempt must not be recorded as one that got no answer.
    org, workspace, outsider, role = org_with_an_outsider()
    with SandboxServer(org) as sandbox:
        wrap_respond(sandbox, lambda respond, request: (
            ApiResponse(status, {"detail": "busy"}, {"Retry-After": "1"})
            if request.method == method else respond(request)))
        with client_for(sandbox, sleep=RecordingSleep(), max_retries=1) as client:
            call = (client.list_roles if method == "GET" else lambda: client.add_workspace_member(
                workspace.id, org_identity_id=outsider.id, role_id=role.id))
            with pytest.raises(TransientError, match="gave up after 2 attempts") as raised:
                call()
    assert raised.value.status_code == status and raised.value.maybe_applied is False


def test_the_backoff_of_a_late_retry_is_the_cap_not_an_overflow():
    # LANGSMITH_ACCESS_MAX_RETRIES takes any whole number: the 1025th retry of a long outage
    # raised OverflowError (0.5 * 2**1024 as a float) instead of waiting the 30 s cap.
    settings = ClientSettings(api_key=Secret("lsv2_sk_" + "0" * 32), organization_id="00000000-0000-4000-8000-000000000001",
                              endpoint="http://127.0.0.1:9", max_retries=100_000)
    with LangSmithClient(settings, rng=_Jitter(at_top=True)) as client:
        assert [client._backoff(attempt) for attempt in (1, 7, 1025, 100_000)] == [0.5, 30.0, 30.0, 30.0]


def _probe_settings(endpoint: str) -> ClientSettings:
    return ClientSettings(
        api_key=Secret("lsv2_sk_" + "e" * 32), organization_id="00000000-0000-4000-8000-000000000001",
        endpoint=endpoint, connect_timeout_seconds=2.0, read_timeout_seconds=2.0, max_retries=0,
    )


def test_an_answer_cut_short_is_told_apart_from_a_dropped_connection():
    # A body shorter than its Content-Length: something on the way cut it (the doctor's fix for
    # "broken" points at a proxy), not a connection that closed before any answer.
    def cut_short(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        handler.wfile.write(b'{"id": "')
        handler.wfile.flush()
        handler.close_connection = True

    server = _Server(cut_short)
    try:
        with LangSmithClient(_probe_settings(server.url)) as client, \
                pytest.raises(ConnectionFailedError) as failed:
            client.probe()
    finally:
        server.stop()
    assert failed.value.cause == "broken", failed.value
    assert "broke off" in str(failed.value)


def test_an_answer_in_no_http_is_told_apart_from_a_dropped_connection():
    # Another service on the endpoint's port answers bytes with no HTTP status line: "the
    # connection closed without an answer" is untrue, and sends the operator nowhere. The doctor's
    # probe gets its own cause, and a sync's read gives up saying why.
    def not_http(handler) -> None:
        handler.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        handler.wfile.flush()
        handler.close_connection = True

    server = _Server(not_http)
    try:
        with LangSmithClient(_probe_settings(server.url)) as client:
            with pytest.raises(ConnectionFailedError) as failed:
                client.probe()
            with pytest.raises(TransientError) as read_failed:
                client.list_roles()
    finally:
        server.stop()
    assert failed.value.cause == "not-http", failed.value
    assert "what answered is not HTTP" in str(failed.value) and "SSH" not in str(failed.value)
    assert "the connection dropped: what answered is not HTTP" in str(read_failed.value), read_failed.value


def test_a_proxy_that_fails_is_named_not_the_endpoints_host(refused_port, monkeypatch):
    # HTTP_PROXY set, and nothing listens there: the fix is the proxy setting, not the endpoint
    # ("connection refused: nothing listens at that host and port" would send the operator to
    # LANGSMITH_ENDPOINT, which is right).
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{refused_port}")
    with LangSmithClient(_probe_settings("http://langsmith.example.com")) as client, \
            pytest.raises(ConnectionFailedError) as failed:
        client.probe()
    assert failed.value.cause == "proxy", failed.value
    assert "HTTPS_PROXY / HTTP_PROXY" in str(failed.value)


_WRITE_WORKSPACE, _WRITE_IDENTITY, _WRITE_ROLE = ("00000000-0000-4000-8000-00000000000" + n for n in "234")


def _failed_write(endpoint: str, *, max_retries: int, contains: list[str]):
    """A membership write to ``endpoint`` that fails with a ``TransientError`` holding ``contains``
    and no piece of the key: the error, the client's stats and the waits between attempts."""
    key = "lsv2_sk_" + "f" * 32
    settings = replace(_probe_settings(endpoint), api_key=Secret(key), max_retries=max_retries)
    sleep = RecordingSleep()
    with LangSmithClient(settings, sleep=sleep) as client:
        error = expect_error(
            TransientError,
            lambda: client.add_workspace_member(_WRITE_WORKSPACE, org_identity_id=_WRITE_IDENTITY, role_id=_WRITE_ROLE),
            keys=[key], contains=contains)
    return error, client.stats, sleep.waits


def test_a_write_through_a_proxy_that_fails_is_sent_once_and_said_maybe_applied(refused_port, monkeypatch):
    # A proxy's failure may come after it forwarded the write: it is never sent again, and the
    # error says the write may have been applied, not "no connection" (which says it was not).
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{refused_port}")
    error, stats, waits = _failed_write("http://langsmith.example.com", max_retries=3, contains=[
        f"the connection dropped (workspace {_WRITE_WORKSPACE}): the proxy this machine is set to use "
        "(HTTPS_PROXY / HTTP_PROXY) failed; the write may or may not"])
    assert stats.calls == 1 and stats.retries == 0 and waits == []
    assert error.maybe_applied is True and "no connection" not in str(error)


def test_a_write_to_a_host_name_that_does_not_resolve_is_sent_again_and_said_unsent(monkeypatch):
    # No address, so no byte of the write left this machine: retried as after a refused
    # connection, and the caller is told nothing was applied (no re-read needed). (.invalid
    # never resolves; no proxy, which would be asked to resolve it instead.)
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    error, stats, waits = _failed_write("http://langsmith-access-test.invalid", max_retries=1,
                                        contains=["its host name does not resolve (DNS)", "gave up after 2 attempts"])
    assert stats.calls == 2 and stats.connection_errors == 2 and len(waits) == 1
    assert error.maybe_applied is False and "may or may not" not in str(error)

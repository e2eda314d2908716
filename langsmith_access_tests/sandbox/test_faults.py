"""Injected faults: latency, 429s, rate limit, 5xx, failing routes and workspaces, hangs,
dropped connections, page drift and writes whose answer is lost."""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import pytest
import requests

from langsmith_access.sandbox import FaultConfig
from langsmith_access.sandbox import faults as sandbox_faults
from langsmith_access.sandbox.faults import RandomFault

INFO = "/api/v1/orgs/current/info"
ACTIVE = "/api/v1/orgs/current/members/active"
MEMBERS = "/api/v1/workspaces/current/members"


class RecordedWaits(threading.Event):
    """The sandbox's stop event (latency and hangs wait on it, so stop() cuts them short),
    recording how long the server asked to wait: the tests check the waits, not a stopwatch.
    ``hold`` (optional) is set when a wait of that length begins. ``slow_wake_seconds`` makes a
    thread woken by stop() take that long to go on (a busy machine)."""

    def __init__(self, hold_seconds: float | None = None):
        super().__init__()
        self.waits: list[float] = []
        self.hold_seconds = hold_seconds
        self.holding = threading.Event()
        self.slow_wake_seconds = 0.0

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if timeout == self.hold_seconds:
            self.holding.set()
        woken = super().wait(timeout)
        if woken and self.slow_wake_seconds:
            time.sleep(self.slow_wake_seconds)
        return woken


def eventually(condition, timeout_seconds: float = 60):
    """The condition's value once truthy; falsy only if it stays so for the whole (generous)
    timeout, which bounds a hang and times nothing."""
    deadline = time.monotonic() + timeout_seconds
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def record_waits(sandbox, hold_seconds: float | None = None) -> RecordedWaits:
    waits = RecordedWaits(hold_seconds)
    sandbox._stopping = waits
    return waits


def test_latency_is_added_to_every_response(sandbox, caller):
    waits = record_waits(sandbox)
    sandbox.faults.latency_ms = 150
    assert caller.get(INFO).status_code == 200
    assert caller.get(ACTIVE).status_code == 200
    assert waits.waits == [0.15, 0.15]  # the server held each answer 150 ms


def test_throttle_answers_429_with_retry_after_seconds(sandbox, caller):
    sandbox.faults = FaultConfig(throttle_rate=1.0, retry_after_seconds=2)
    response = caller.get(INFO)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert "detail" in response.json()


def test_retry_after_as_http_date(sandbox, caller):
    sandbox.faults = FaultConfig(
        throttle_rate=1.0, retry_after_seconds=3, retry_after_as_http_date=True
    )
    asked = time.time()
    response = caller.get(INFO)
    answered = time.time()
    assert response.status_code == 429
    # The date is 3 s after the server's clock, rounded up to a whole second: never too early.
    retry_at = parsedate_to_datetime(response.headers["Retry-After"]).timestamp()
    assert math.ceil(asked) + 3 <= retry_at <= math.ceil(answered) + 3


def test_rate_limit_per_minute_counts_per_key(sandbox, caller):
    sandbox.faults = FaultConfig(rate_limit_per_minute=3)
    statuses = [caller.get(INFO).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = caller.get(INFO)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Another key has its own window (and is then refused for being wrong).
    assert caller.get(INFO, headers={"X-API-Key": "lsv2_sk_other"}).status_code == 401


class SteppedClock:
    """The sandbox's rate-limit clock, moved by the test only: a busy machine's pause between two
    requests (a second and more) must not end a window the test counts on."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    @staticmethod
    def time() -> float:
        return time.time()


def test_rate_limit_per_10_seconds_counts_beside_the_minute(sandbox, caller, monkeypatch):
    # Windows of 6 s and 1 s: the short one holds 2 requests, the minute's 4.
    clock = SteppedClock()
    monkeypatch.setattr(sandbox_faults, "time", clock)
    sandbox.faults = FaultConfig(rate_limit_per_minute=4, rate_limit_per_10_seconds=2,
                                 rate_limit_window_seconds=6)
    assert [caller.get(INFO).status_code for _ in range(2)] == [200, 200]
    limited = caller.get(INFO)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    clock.now += 1.05  # the short window ended; the refused request counted in the minute's
    assert caller.get(INFO).status_code == 200
    limited = caller.get(INFO)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "5"  # 6 - 1.05, rounded up


def test_the_short_window_is_a_sixth_and_a_429_waits_for_the_last_window_it_is_over(sandbox, caller, monkeypatch):
    clock = SteppedClock()
    monkeypatch.setattr(sandbox_faults, "time", clock)
    # A 6 s minute makes a 1 s short window: still over 0.7 s later, over once it ended.
    sandbox.faults = FaultConfig(rate_limit_per_10_seconds=2, rate_limit_window_seconds=6)
    assert [caller.get(INFO).status_code for _ in range(3)] == [200, 200, 429]
    clock.now += 0.7
    limited = caller.get(INFO)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    clock.now += 0.35
    assert caller.get(INFO).status_code == 200
    # Over both limits: Retry-After is when the minute's window ends, not the short one's.
    sandbox.faults = FaultConfig(rate_limit_per_minute=3, rate_limit_per_10_seconds=1, rate_limit_window_seconds=6)
    assert [caller.get(INFO).status_code for _ in range(3)] == [200, 429, 429]
    limited = caller.get(INFO)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "6"


def test_random_errors_are_5xx_with_detail(sandbox, caller):
    sandbox.faults = FaultConfig(error_rate=1.0, seed=3)
    statuses = set()
    for _ in range(20):
        response = caller.get(INFO)
        assert isinstance(response.json()["detail"], str)
        statuses.add(response.status_code)
    assert statuses <= {500, 502, 503, 504} and len(statuses) > 1


def test_random_error_on_a_write_is_not_applied(sandbox, caller, org):
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.members.values() if m.ls_user_id not in workspace.memberships)
    sandbox.faults = FaultConfig(error_rate=1.0)
    response = caller.post(
        MEMBERS,
        tenant_id=workspace.id,
        json={"org_identity_id": outsider.id, "role_id": org.role_by_name("Viewer").id},
    )
    assert response.status_code >= 500
    assert org.membership(workspace.id, outsider.ls_user_id) is None


def test_random_faults_repeat_with_the_seed():
    def draws(seed):
        faults = FaultConfig(error_rate=0.3, throttle_rate=0.3, seed=seed)
        return [faults.draw_random_fault() for _ in range(50)]

    assert draws(5) == draws(5)
    assert None in draws(5)
    # The rates are shares of one draw: rates summing to 1 fault every request, with each kind.
    shared = FaultConfig(throttle_rate=0.5, error_rate=0.5, seed=5)
    drawn = [shared.draw_random_fault() for _ in range(200)]
    assert set(drawn) == {RandomFault.THROTTLE, RandomFault.ERROR}


def test_failing_routes_prefix_and_exact(sandbox, caller):
    sandbox.faults = FaultConfig(failing_routes=("/api/v1/orgs/current/members",))
    assert caller.get(ACTIVE).status_code == 500
    assert caller.get("/api/v1/orgs/current/members").status_code == 500
    assert caller.get(INFO).status_code == 200
    sandbox.faults = FaultConfig(failing_routes=("/api/v1/orgs/current/members$",))
    assert caller.get("/api/v1/orgs/current/members").status_code == 500
    assert caller.get(ACTIVE).status_code == 200


def test_failing_workspaces(sandbox, caller, org):
    broken, working = org.shared_workspaces()[:2]
    sandbox.faults = FaultConfig(failing_workspaces=(broken.id,))
    assert caller.get(MEMBERS, tenant_id=broken.id).status_code == 500
    assert caller.get(MEMBERS + "/active", tenant_id=broken.id).status_code == 500
    assert caller.get(MEMBERS, tenant_id=broken.id.upper()).status_code == 500  # ids compare case-insensitively
    assert caller.get(MEMBERS, tenant_id=working.id).status_code == 200


def test_hang_is_cut_by_a_client_timeout_and_by_stop(sandbox, caller):
    # An hour: only the client's timeout, then stop(), can end it.
    waits = record_waits(sandbox, hold_seconds=3600)
    waits.slow_wake_seconds = 0.5
    sandbox.faults = FaultConfig(hang_rate=1.0, hang_seconds=3600)
    with pytest.raises(requests.Timeout):
        caller.get(INFO, timeout=0.3)
    assert waits.holding.wait(60), "the request reached the hang"
    assert sandbox.request_log.snapshot() == [], "the hanging request has no answer yet"
    stopper = threading.Thread(target=sandbox.stop)
    stopper.start()
    stopper.join(120)  # bounds a hang only: an hour's wait would show here
    assert not stopper.is_alive(), "stop() must not wait for the hanging request"
    # stop() woke the hanging handler thread and waited for it to log the request, slow as it
    # was: once stop() returns, every request the sandbox received is in its log.
    [hung] = sandbox.request_log.snapshot()
    assert (hung.path, hung.status) == (INFO, None), "ended by stop(), without an answer"


def test_short_hang_then_normal_answer(sandbox, caller):
    waits = record_waits(sandbox)
    sandbox.faults = FaultConfig(hang_rate=1.0, hang_seconds=0.2)
    assert caller.get(INFO).status_code == 200
    assert waits.waits == [0.2]  # held 0.2 s, then served


def test_drop_closes_the_connection_without_answer(sandbox, caller):
    sandbox.faults = FaultConfig(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        caller.get(INFO)
    assert sandbox.request_log[-1].status is None
    sandbox.faults = FaultConfig()
    assert caller.get(INFO).status_code == 200


def test_page_drift_adds_members_while_paging(sandbox, caller, org):
    before = len(org.members)
    sandbox.faults = FaultConfig(page_drift_members=2)
    rows = caller.scan(ACTIVE, limit=10)
    assert len(org.members) == before + 2
    assert sandbox.faults.page_drift_members == 0
    ids = [row["id"] for row in rows]
    assert len(ids) > len(set(ids)), "shifted offsets repeat rows across pages"
    # The newcomers sort first, so a scan that started before they joined missed them.
    newcomers = {member.id for member in org.active_members()[:2]}
    assert not newcomers & set(ids)
    assert set(ids) | newcomers == set(org.members[m].id for m in org.members)


def test_page_drift_on_the_enriched_route(sandbox, caller, org):
    before = len(org.members)
    sandbox.faults = FaultConfig(page_drift_members=5)
    caller.get("/v1/platform/orgs/current/members", params={"limit": 10})
    assert len(org.members) == before, "the first page does not drift"
    caller.get("/v1/platform/orgs/current/members", params={"limit": 10, "offset": 10})
    assert len(org.members) == before + 1


def test_fail_writes_after_apply(sandbox, caller, org):
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.members.values() if m.ls_user_id not in workspace.memberships)
    body = {"org_identity_id": outsider.id, "role_id": org.role_by_name("Viewer").id}
    sandbox.faults = FaultConfig(fail_writes_after_apply=1)

    lost = caller.post(MEMBERS, tenant_id=workspace.id, json=body)
    assert lost.status_code == 502
    assert org.membership(workspace.id, outsider.ls_user_id) is not None, "applied despite the 502"
    assert sandbox.faults.fail_writes_after_apply == 0

    retried = caller.post(MEMBERS, tenant_id=workspace.id, json=body)
    assert retried.status_code == 409
    assert caller.get(INFO).status_code == 200


def test_fail_writes_after_apply_skips_reads_and_rejected_writes(sandbox, caller, org):
    workspace = org.shared_workspaces()[0]
    sandbox.faults = FaultConfig(fail_writes_after_apply=1)
    assert caller.get(INFO).status_code == 200
    rejected = caller.post(
        MEMBERS, tenant_id=workspace.id, json={"role_id": org.role_by_name("Viewer").id}
    )
    assert rejected.status_code == 422
    assert sandbox.faults.fail_writes_after_apply == 1


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_write_whose_body_never_fully_arrives_is_not_served(sandbox, caller, org, framing):
    """A client killed while sending its body: a real server never hands the request to the API,
    so nothing is applied, answered or logged (the sandbox once answered it 422)."""
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.members.values() if m.ls_user_id not in workspace.memberships)
    body = json.dumps({"org_identity_id": outsider.id, "role_id": org.role_by_name("Viewer").id}).encode()
    url = urlsplit(sandbox.url)
    framed = (f"Content-Length: {len(body)}\r\n\r\n" if framing == "content-length"
              else f"Transfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n")
    head = (f"POST {MEMBERS} HTTP/1.1\r\nHost: {url.netloc}\r\nX-API-Key: {sandbox.api_key}\r\n"
            f"X-Tenant-Id: {workspace.id}\r\nContent-Type: application/json\r\n{framed}").encode()
    logged_before = len(sandbox.request_log)
    with socket.create_connection((url.hostname, url.port), timeout=30) as client:
        client.sendall(head + body[:10])
        client.shutdown(socket.SHUT_WR)  # the sender is gone; the rest of the body never comes
        assert client.recv(1024) == b"", "no answer: the server closed the connection"
    assert len(sandbox.request_log) == logged_before
    assert org.membership(workspace.id, outsider.ls_user_id) is None
    # The whole body on a fresh connection is applied as usual.
    assert caller.post(MEMBERS, tenant_id=workspace.id, json=json.loads(body)).status_code == 200


@pytest.mark.parametrize("framing", ["Content-Length: abc\r\n\r\n", "Transfer-Encoding: chunked\r\n\r\nzz\r\n"])
def test_a_body_framed_unreadably_is_a_400_that_reaches_no_route(sandbox, org, framing):
    """A Content-Length or chunk size that is no number: the HTTP server answers 400 (not JSON:
    it never reached the API) and closes the connection, as uvicorn does; nothing is applied or
    logged. (The sandbox's handler used to crash on it and close without an answer.)"""
    url = urlsplit(sandbox.url)
    head = (f"POST {MEMBERS} HTTP/1.1\r\nHost: {url.netloc}\r\nX-API-Key: {sandbox.api_key}\r\n"
            f"X-Tenant-Id: {org.shared_workspaces()[0].id}\r\nContent-Type: application/json\r\n{framing}")
    logged_before, members_before = len(sandbox.request_log), org.membership_count()
    with socket.create_connection((url.hostname, url.port), timeout=30) as client:
        client.sendall(head.encode())
        answer = b""
        while chunk := client.recv(4096):  # the server closes the connection after answering
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400"), answer
    assert b"content-type: text/plain" in rest.lower()
    assert len(sandbox.request_log) == logged_before and org.membership_count() == members_before


def test_a_chunked_body_with_trailer_fields_leaves_the_next_request_intact(sandbox, org):
    """The trailer section after the last chunk belongs to the request: read past it, the next
    request on the connection is served as sent (not read from the trailer's lines)."""
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.members.values() if m.ls_user_id not in workspace.memberships)
    body = json.dumps({"org_identity_id": outsider.id, "role_id": org.role_by_name("Viewer").id}).encode()
    url = urlsplit(sandbox.url)
    first = (f"POST {MEMBERS} HTTP/1.1\r\nHost: {url.netloc}\r\nX-API-Key: {sandbox.api_key}\r\n"
             f"X-Tenant-Id: {workspace.id}\r\nContent-Type: application/json\r\n"
             f"Transfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n").encode() + body + b"\r\n0\r\nX-Checksum: 1\r\n\r\n"
    second = (f"GET /api/v1/orgs/current/info HTTP/1.1\r\nHost: {url.netloc}\r\nX-API-Key: {sandbox.api_key}\r\n"
              f"X-Organization-Id: {org.organization_id}\r\n\r\n").encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as client:
        client.sendall(first + second)
        client.shutdown(socket.SHUT_WR)
        answers = b""
        while chunk := client.recv(65536):
            answers += chunk
    # Each answer's status line follows the previous answer's body (JSON without a line end).
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answers) == [b"200", b"200"], answers
    assert org.membership(workspace.id, outsider.ls_user_id) is not None


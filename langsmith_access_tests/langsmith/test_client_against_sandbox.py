"""The LangSmith client against the sandbox server, over real HTTP.

Reads return exactly the sandbox's org; headers are right on every request; paging, page drift
and inconsistent servers; retries of 5xx, 429 (Retry-After in seconds and as an HTTP date),
dropped connections and hangs; the done-when (~10% faults read the same org); the client-side
rate limiter; bounded fan-out; key refusal and auth errors (the key never appears in an error);
and the write routes, including writes whose answer is lost.

Waits are recorded with a fake ``sleep`` (``RecordingSleep``) unless a test is about real time.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import uuid
from dataclasses import replace

import pytest

from langsmith_access import __version__
from langsmith_access.langsmith import (
    AuthenticationError,
    ConflictError,
    IncompleteListingError,
    LangSmithClient,
    LangSmithError,
    NotFoundError,
    PermissionDeniedError,
    ProxyLoginError,
    ProxyRefusalError,
    RequestRejectedError,
    RouteNotAvailableError,
    TransientError,
    pacing,
)
from langsmith_access.langsmith import client as client_module
from langsmith_access.sandbox import FaultConfig, SandboxServer, generate_org
from langsmith_access.sandbox import faults as sandbox_faults
from langsmith_access.sandbox.api import ApiResponse
from langsmith_access.sandbox.routing import HtmlPage
from langsmith_access.settings import ClientSettings, Secret, SettingsError
from langsmith_access_tests.langsmith.sandbox_client_support import (
    ACTIVE,
    ENRICHED,
    INFO,
    PENDING,
    ROLES,
    WORKSPACES,
    WS_ACTIVE,
    WS_MEMBERS,
    WS_ROUTES,
    RecordingSleep,
    client_for,
    expect_error,
    expected_from_org,
    heal_after,
    ids_in_capitals,
    no_duplicates,
    project_read,
    query_int,
    read_everything,
    with_query,
    wrap_respond,
)

PAGE = 500
ORG_ROUTES = (ROLES, WORKSPACES, ACTIVE, PENDING, ENRICHED, INFO)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def small_org_args():
    return {"seed": 7, "members": 40, "workspaces": 5}


@pytest.fixture
def sandbox(small_org_args):
    """A small org (40 members, 5 shared + personal + deleted workspaces), fault-free."""
    with SandboxServer(generate_org(**small_org_args)) as server:
        yield server


@pytest.fixture
def big_sandbox():
    """1,234 active members + 32 pending: three pages of 500 on the member routes."""
    with SandboxServer(generate_org(seed=3, members=1234, workspaces=6)) as server:
        yield server


@pytest.fixture
def start_sandbox():
    """``start_sandbox(org, **options)``: a sandbox stopped after the test."""
    started: list[SandboxServer] = []

    def start(org=None, **options) -> SandboxServer:
        server = SandboxServer(org or generate_org(seed=7, members=40, workspaces=5), **options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def offsets_and_limits(sb: SandboxServer, path: str) -> list[tuple[int, int]]:
    """(offset, limit) of every request for ``path``, each scan in offset order: a scan starts
    at offset 0 and reads its later pages concurrently, so they may arrive in any order."""
    requested = [
        (int(e.query["offset"][-1]), int(e.query["limit"][-1]))
        for e in sb.requests_matching("GET", path)
        if e.path == path
    ]
    scans: list[list[tuple[int, int]]] = []
    for offset_and_limit in requested:
        if offset_and_limit[0] == 0 or not scans:
            scans.append([])
        scans[-1].append(offset_and_limit)
    return [pair for scan in scans for pair in sorted(scan)]


def shared(sb: SandboxServer):
    return sb.org.shared_workspaces()


def outsider_of(sb: SandboxServer, workspace):
    return next(m for m in sb.org.active_members() if m.ls_user_id not in workspace.memberships)


def insider_of(workspace):
    return next(iter(sorted(workspace.memberships.values(), key=lambda m: m.id)))


# ------------------------------------------------------------------ reads return exactly the org


def test_every_read_method_returns_exactly_the_org(sandbox):
    with client_for(sandbox) as client:
        read = read_everything(client)
    expected = expected_from_org(sandbox.org)
    got = project_read(read)
    for part in expected:
        assert got[part] == expected[part], part
    # Sanity: the org has what makes the comparison mean something.
    assert any(w.is_personal for w in read["workspaces"]) and any(w.is_deleted for w in read["workspaces"])
    assert any(m.is_disabled for m in read["members"]) and read["pending"]
    assert any(r.name == "CUSTOM" for r in read["roles"])  # a custom role
    for part in ("roles", "workspaces", "members", "pending", "enriched"):
        assert no_duplicates(read[part]), part


def test_a_row_listed_twice_is_read_once(sandbox):
    def doubled(respond, request):
        response = respond(request)
        if request.path in (ROLES, WORKSPACES) and response.status == 200:
            response.body = response.body + response.body[:1]
        return response

    wrap_respond(sandbox, doubled)
    with client_for(sandbox) as client:
        roles, workspaces = client.list_roles(), client.list_workspaces()
    assert no_duplicates(roles) and len(roles) == len(sandbox.org.roles)
    assert no_duplicates(workspaces) and len(workspaces) == len(sandbox.org.all_workspaces())


@pytest.mark.parametrize("content_type", ["", "Application/JSON; charset=utf-8", "application/vnd.api+json"])
def test_a_json_answer_is_read_whatever_json_content_type_it_names_or_none(sandbox, content_type):
    def undeclared(respond, request):
        response = respond(request)
        if request.path == ROLES and response.status == 200:
            return ApiResponse(200, HtmlPage(text=json.dumps(response.body), content_type=content_type))
        return response

    with client_for(sandbox) as client:
        expected = client.list_roles()
        wrap_respond(sandbox, undeclared)
        assert client.list_roles() == expected


def test_a_pending_invite_names_its_workspaces_in_tenant_ids_when_workspace_ids_is_null(sandbox):
    # OrgPendingIdentity carries both; `workspace_ids` (the invite request's field) is nullable,
    # `tenant_ids` is not, and is what LangChain's Terraform provider reads on pending rows.
    def tenant_ids_only(respond, request):
        response = respond(request)
        if request.path == PENDING and response.status == 200:
            response.body = [{**row, "workspace_ids": None} for row in response.body]
        return response

    wrap_respond(sandbox, tenant_ids_only)
    with client_for(sandbox) as client:
        pending = client.list_pending_invites()
    expected = {i.id: tuple(i.workspace_ids or ()) for i in sandbox.org.pending_org_invites()}
    assert {p.id: p.workspace_ids for p in pending} == expected
    assert any(expected.values())  # some invite offers workspaces: the test means something


def test_list_workspaces_can_leave_out_deleted_ones(sandbox):
    with client_for(sandbox) as client:
        without = {w.id for w in client.list_workspaces(include_deleted=False)}
    assert without == {w.id for w in sandbox.org.all_workspaces() if not w.is_deleted}
    assert without != {w.id for w in sandbox.org.all_workspaces()}


def test_headers_on_every_request(sandbox):
    ws = shared(sandbox)[0]
    member = insider_of(ws)
    with client_for(sandbox) as client:
        read_everything(client)
        client.list_workspace_members(ws.id)
        client.find_org_member(email=sandbox.org.members[member.ls_user_id].email)
        client.find_workspace_member(ws.id, member.ls_user_id)
        outsider = outsider_of(sandbox, ws)
        client.add_workspace_member(ws.id, org_identity_id=outsider.id, role_id=member.role_id)
    log = sandbox.request_log.snapshot()
    assert len(log) > 10
    for entry in log:
        assert entry.has_api_key, entry
        assert entry.organization_id == sandbox.organization_id, entry
        assert entry.status is not None and entry.status < 400, entry
        if entry.path.startswith(WS_ROUTES):
            assert entry.tenant_id is not None, entry
            assert uuid.UUID(entry.tenant_id)
        else:
            assert entry.tenant_id is None, entry
    paths = {e.path for e in log}
    assert set(ORG_ROUTES) <= paths and WS_ACTIVE in paths and WS_MEMBERS in paths
    # Every readable workspace was asked for under its own X-Tenant-Id.
    tenants = {e.tenant_id for e in log if e.path == WS_ACTIVE}
    assert tenants == {w.id for w in sandbox.org.all_workspaces() if not w.is_deleted}


def test_every_request_asks_for_json_and_names_the_client(sandbox):
    seen = set()
    lock = threading.Lock()

    def record(respond, request):
        with lock:
            seen.add((request.headers.get("Accept"), request.headers.get("User-Agent")))
        return respond(request)

    wrap_respond(sandbox, record)
    with client_for(sandbox) as client:
        read_everything(client)  # the fan-out's threads each have a session of their own
        client.probe()
    assert seen == {("application/json", f"langsmith-access/{__version__}")}


def test_member_listing_of_a_deleted_workspace_is_not_found(sandbox):
    deleted = next(w for w in sandbox.org.all_workspaces() if w.is_deleted)
    with client_for(sandbox) as client:
        expect_error(
            NotFoundError,
            lambda: client.list_workspace_members(deleted.id),
            keys=[sandbox.api_key],
            contains=[deleted.id, WS_ACTIVE],
        )


# ------------------------------------------------------------------ paging


def test_paging_over_three_pages(big_sandbox):
    sb = big_sandbox
    with client_for(sb) as client:
        members = client.list_org_members()
        enriched = client.list_enriched_members()
        pending = client.list_pending_invites()
    assert len(sb.org.members) == 1234
    assert {m.id for m in members} == {m.id for m in sb.org.active_members()}
    assert len(members) == 1234 and no_duplicates(members)
    assert (members.pages, members.reported_total, members.scans) == (3, 1234, 1)
    # limit=500 at offsets 0/500/1000, and no request after the short page.
    assert offsets_and_limits(sb, ACTIVE) == [(0, PAGE), (500, PAGE), (1000, PAGE)]

    total = 1234 + len(sb.org.pending_invites)
    assert len(enriched) == total == enriched.reported_total and enriched.pages == 3
    assert offsets_and_limits(sb, ENRICHED) == [(0, PAGE), (500, PAGE), (1000, PAGE)]
    assert enriched.headers == {"X-Members-List-All-Workspaces": "true"}
    assert {p.id for p in pending} == set(sb.org.pending_invites) and pending.pages == 1


def test_paging_a_listing_of_exactly_two_pages_reads_an_empty_third(start_sandbox):
    sb = start_sandbox(generate_org(seed=4, members=1000, workspaces=2))
    with client_for(sb) as client:
        members = client.list_org_members()
    assert len(members) == 1000 and members.reported_total == 1000
    assert offsets_and_limits(sb, ACTIVE) == [(0, PAGE), (500, PAGE), (1000, PAGE)]
    assert members.pages == 3


def test_a_null_page_past_the_end_of_the_enriched_listing_reads_as_empty(start_sandbox):
    # The platform routes are Go, which encodes a list it never appended to as `null`: the page
    # at offset == X-Pagination-Total (1000 rows here) may come so, and it ends the listing.
    sb = start_sandbox(generate_org(seed=4, members=1000 - 27, workspaces=2, pending_invites=27))

    def null_when_empty(respond, request):
        response = respond(request)
        if request.path == ENRICHED and response.status == 200 and response.body == []:
            response.body = None  # sent as `null`
        return response

    wrap_respond(sb, null_when_empty)
    with client_for(sb) as client:
        enriched = client.list_enriched_members()
    assert len(enriched) == enriched.reported_total == 1000
    assert offsets_and_limits(sb, ENRICHED) == [(0, PAGE), (500, PAGE), (1000, PAGE)]


def test_a_null_page_in_the_middle_of_a_listing_is_never_read_as_its_end(big_sandbox):
    def null_at_500(respond, request):
        response = respond(request)
        if request.path in (ENRICHED, ACTIVE) and query_int(request, "offset", 0) == 500:
            response.body = None
        return response

    wrap_respond(big_sandbox, null_at_500)
    with client_for(big_sandbox) as client:
        for read in (client.list_enriched_members, client.list_org_members):
            with pytest.raises(IncompleteListingError):
                read()


def test_overlapping_pages_are_deduplicated(big_sandbox):
    """A server whose pages overlap by one row: the client keeps each id once."""
    sb = big_sandbox

    def overlap(respond, request):
        offset = query_int(request, "offset", 0)
        if request.path == ACTIVE and offset > 0:
            request = with_query(request, offset=offset - 1)
        return respond(request)

    wrap_respond(sb, overlap)
    with client_for(sb) as client:
        members = client.list_org_members()
    assert len(members) == 1234 and no_duplicates(members)
    assert {m.id for m in members} == {m.id for m in sb.org.active_members()}
    assert members.pages == 3 and members.scans == 1


@pytest.mark.parametrize("path", [ACTIVE, ENRICHED])
def test_page_drift_is_read_again_until_consistent(big_sandbox, path):
    sb = big_sandbox
    before = len(sb.org.members)
    sb.faults.page_drift_members = 2
    with client_for(sb) as client:
        listing = client.list_org_members() if path == ACTIVE else client.list_enriched_members()
    assert sb.faults.page_drift_members == 0
    assert len(sb.org.members) == before + 2  # the drift really happened
    assert listing.scans == 2
    assert no_duplicates(listing)
    expected = {m.id for m in sb.org.active_members()}
    if path == ENRICHED:
        expected |= set(sb.org.pending_invites)
    assert {row.id for row in listing} == expected
    assert listing.reported_total == len(expected)
    # Two full scans of three pages each.
    assert [o for o, _ in offsets_and_limits(sb, path)] == [0, 500, 1000, 0, 500, 1000]


def without_total(respond, request):
    """A listing as LangSmith documents most of them: no X-Pagination-Total."""
    response = respond(request)
    if isinstance(response, ApiResponse):
        response.headers.pop("X-Pagination-Total", None)
    return response


def test_without_a_total_pages_overlap_by_a_row_and_read_the_listing_once(big_sandbox):
    sb = big_sandbox
    wrap_respond(sb, without_total)
    with client_for(sb) as client:
        members = client.list_org_members()
    assert {m.id for m in members} == {m.id for m in sb.org.active_members()} and no_duplicates(members)
    assert members.scans == 1 and members.reported_total is None
    assert [o for o, _ in offsets_and_limits(sb, ACTIVE)] == [0, 499, 998]


def test_without_a_total_a_row_removed_mid_scan_makes_the_listing_read_again(big_sandbox):
    """1,234 members, newest first: one of the first page's is removed while the second page is
    asked for, so every later row moves up one offset. Without a total nothing else shows it: the
    row that was at 500 would slip past between two pages, unseen, and read as a member gone."""
    sb = big_sandbox
    with client_for(sb) as client:
        in_api_order = list(client.list_org_members())
    sb.reset_log()
    removed = in_api_order[10]
    at_the_seam = in_api_order[500]

    def removing_mid_scan(respond, request):
        if request.path == ACTIVE and query_int(request, "offset", 0) > 0 and removed.ls_user_id in sb.org.members:
            sb.org.remove_member(removed.ls_user_id)
        return without_total(respond, request)

    wrap_respond(sb, removing_mid_scan)
    with client_for(sb) as client:
        members = client.list_org_members()
    assert members.scans == 2
    ids = {m.id for m in members}
    assert ids == {m.id for m in sb.org.active_members()} and no_duplicates(members)
    assert removed.id not in ids and at_the_seam.id in ids
    assert [o for o, _ in offsets_and_limits(sb, ACTIVE)] == [0, 499, 998] * 2


def test_without_a_total_rows_added_mid_scan_lose_nothing_and_need_no_second_read(big_sandbox):
    sb = big_sandbox
    before = {m.id for m in sb.org.active_members()}
    sb.faults.page_drift_members = 2  # a new member, newest of all, before each later page
    wrap_respond(sb, without_total)
    with client_for(sb) as client:
        members = client.list_org_members()
    assert sb.faults.page_drift_members == 0
    assert before <= {m.id for m in members} and no_duplicates(members)
    assert members.scans == 1


@pytest.mark.parametrize("path", [ACTIVE, ENRICHED])
def test_drift_that_never_stops_raises_incomplete_listing(big_sandbox, path):
    sb = big_sandbox
    sb.faults.page_drift_members = 1000
    with client_for(sb) as client:
        call = client.list_org_members if path == ACTIVE else client.list_enriched_members
        error = expect_error(IncompleteListingError, call, keys=[sb.api_key], contains=[path, "X-Pagination-Total"])
    assert error.path == path
    # The totals in the order the pages told them: the listing grew while it was read.
    reported = re.search(r"reported (\d+) then (\d+) \(X-Pagination-Total\)", str(error))
    assert reported and int(reported[1]) < int(reported[2]), str(error)
    assert [o for o, _ in offsets_and_limits(sb, path)] == [0, 500, 1000] * 3


def test_a_total_that_never_matches_raises_incomplete_listing(big_sandbox):
    sb = big_sandbox

    def wrong_total(respond, request):
        response = respond(request)
        if request.path == ACTIVE and isinstance(response, ApiResponse):
            response.headers["X-Pagination-Total"] = str(int(response.headers["X-Pagination-Total"]) + 7)
        return response

    wrap_respond(sb, wrong_total)
    with client_for(sb) as client:
        expect_error(
            IncompleteListingError, client.list_org_members, keys=[sb.api_key], contains=[ACTIVE, "1241"]
        )
    assert len(offsets_and_limits(sb, ACTIVE)) == 9  # three scans of three pages


def test_a_server_that_pages_short_raises_incomplete_listing(big_sandbox):
    """A server that caps pages at 100 rows: the client stops on the short page, sees the total
    disagree, and refuses to return 100 of 1,234 members."""
    sb = big_sandbox

    def capped(respond, request):
        if request.path == ACTIVE:
            request = with_query(request, limit=min(100, query_int(request, "limit", 50)))
        return respond(request)

    wrap_respond(sb, capped)
    with client_for(sb) as client:
        expect_error(IncompleteListingError, client.list_org_members, keys=[sb.api_key], contains=[ACTIVE])


@pytest.mark.parametrize("total", [True, False], ids=["with a total", "without a total"])
def test_a_server_that_ignores_the_offset_raises_incomplete_listing_instead_of_reading_forever(
        big_sandbox, total):
    """A server (or a proxy) that drops the offset serves the first page at every offset: full
    pages of rows already read, without end. Each scan stops at the first such page."""
    sb = big_sandbox

    def first_page_always(respond, request):
        if request.path == ACTIVE:
            request = with_query(request, offset=0)
        return respond(request) if total else without_total(respond, request)

    wrap_respond(sb, first_page_always)
    with client_for(sb) as client:
        expect_error(IncompleteListingError, client.list_org_members, keys=[sb.api_key],
                     contains=[ACTIVE, "only rows already read"])
    assert len(sb.requests_matching("GET", ACTIVE)) <= 3 * 3  # three scans of at most three pages


def test_a_server_that_ignores_the_offset_is_read_whole_when_its_total_matches(start_sandbox):
    """One full page, then that page again where the confirming (empty) one belongs: a full
    page of rows already read, but the total says they are all the listing has."""
    sb = start_sandbox(generate_org(seed=3, members=PAGE, workspaces=2))

    def first_page_always(respond, request):
        return respond(with_query(request, offset=0) if request.path == ACTIVE else request)

    wrap_respond(sb, first_page_always)
    with client_for(sb) as client:
        members = client.list_org_members()
    assert {m.id for m in members} == {m.id for m in sb.org.active_members()} and len(members) == PAGE
    assert (members.reported_total, members.scans, members.pages) == (PAGE, 1, 2)


@pytest.mark.parametrize("total", [True, False], ids=["with a total", "without a total"])
def test_a_server_that_ignores_the_limit_is_read_once(big_sandbox, total):
    """Every row from the offset on, whatever the limit: the first page holds the whole listing,
    the next ones, ever shorter, only rows already read."""
    sb = big_sandbox

    def everything_from_the_offset(respond, request):
        response = respond(request)
        if request.path != ACTIVE or not isinstance(response, ApiResponse):
            return response
        offset, rows = query_int(request, "offset", 0), list(response.body)
        more = rows
        while len(more) == 500:
            more = respond(with_query(request, offset=offset + len(rows), limit=500)).body
            rows += more
        answer = ApiResponse(response.status, rows, response.headers)
        if not total:
            answer.headers.pop("X-Pagination-Total", None)
        return answer

    wrap_respond(sb, everything_from_the_offset)
    with client_for(sb) as client:
        members = client.list_org_members()
    assert {m.id for m in members} == {m.id for m in sb.org.active_members()} and no_duplicates(members)
    assert members.scans == 1


def test_incomplete_workspace_listing_names_the_workspace(sandbox):
    ws = shared(sandbox)[1]

    def wrong_total(respond, request):
        response = respond(request)
        if request.path == WS_ACTIVE and isinstance(response, ApiResponse):
            response.headers["X-Pagination-Total"] = "99999"
        return response

    wrap_respond(sandbox, wrong_total)
    with client_for(sandbox) as client:
        expect_error(
            IncompleteListingError,
            lambda: client.list_workspace_members(ws.id),
            keys=[sandbox.api_key],
            contains=[WS_ACTIVE, ws.id],
        )


# ------------------------------------------------------------------ retries


def test_5xx_is_retried_with_backoff(big_sandbox):
    sb = big_sandbox
    with client_for(sb) as client:
        baseline = client.list_org_members().items
    sb.reset_log()
    sb.faults.error_rate = 1.0
    sleep = heal_after(sb, 2, error_rate=0.0)
    with client_for(sb, sleep=sleep) as client:
        members = client.list_org_members()
        stats = client.stats.snapshot()
    assert members.items == baseline
    statuses = [e.status for e in sb.request_log]
    assert statuses[:2] and all(s in (500, 502, 503, 504) for s in statuses[:2])
    assert statuses[2:] == [200, 200, 200]
    assert stats["server_errors"] == 2 and stats["retries"] == 2 and stats["calls"] == 5
    # Exponential backoff with jitter: half fixed, half random.
    assert 0.25 <= sleep.waits[0] <= 0.5 and 0.5 <= sleep.waits[1] <= 1.0
    assert stats["wait_seconds"] == pytest.approx(sum(sleep.waits), abs=0.01)


def test_429_waits_the_retry_after_seconds(sandbox):
    with client_for(sandbox) as client:
        baseline = client.list_roles()
    sandbox.reset_log()
    sandbox.faults.throttle_rate = 1.0
    sandbox.faults.retry_after_seconds = 7
    sleep = heal_after(sandbox, 1, throttle_rate=0.0)
    with client_for(sandbox, sleep=sleep) as client:
        roles = client.list_roles()
        stats = client.stats.snapshot()
    assert roles == baseline
    assert sleep.waits == [7.0]
    assert [e.status for e in sandbox.request_log] == [429, 200]
    assert stats["rate_limited"] == 1 and stats["retries"] == 1 and stats["wait_seconds"] == 7.0


def test_429_retry_after_as_http_date(sandbox):
    sandbox.faults = FaultConfig(throttle_rate=1.0, retry_after_seconds=5, retry_after_as_http_date=True)
    sleep = heal_after(sandbox, 1, throttle_rate=0.0)
    before = time.time()
    with client_for(sandbox, sleep=sleep) as client:
        members = client.list_org_members()
        assert client.stats.rate_limited == 1
    after = time.time()
    assert {m.id for m in members} == set(m.id for m in sandbox.org.active_members())
    assert len(sleep.waits) == 1
    # The date is 5 s after the server's clock, rounded up to a whole second; the wait runs from
    # when the client read it, both between `before` and `after` (a busy machine can hold an
    # answer a second and more: a fixed 4.5 s floor failed then).
    assert math.ceil(before) + 5 - after <= sleep.waits[0] <= math.ceil(after) + 5 - before


def test_a_huge_retry_after_is_capped(sandbox):
    sandbox.faults = FaultConfig(throttle_rate=1.0, retry_after_seconds=3600)
    sleep = heal_after(sandbox, 1, throttle_rate=0.0)
    with client_for(sandbox, sleep=sleep) as client:
        client.list_roles()
    assert sleep.waits == [120.0]


def test_dropped_connection_is_retried(big_sandbox):
    sb = big_sandbox
    with client_for(sb) as client:
        baseline = client.list_enriched_members().items
    sb.reset_log()
    sb.faults.drop_rate = 1.0
    sleep = heal_after(sb, 1, drop_rate=0.0)
    with client_for(sb, sleep=sleep) as client:
        enriched = client.list_enriched_members()
        stats = client.stats.snapshot()
    assert enriched.items == baseline
    assert [e.status for e in sb.request_log] == [None, 200, 200, 200]
    assert stats["connection_errors"] == 1 and stats["retries"] == 1 and stats["calls"] == 4


def test_hang_longer_than_the_read_timeout_is_retried(sandbox):
    ws = shared(sandbox)[0]
    with client_for(sandbox) as client:
        baseline = client.list_workspace_members(ws.id).items
    sandbox.faults.hang_rate = 1.0
    # An hour: only the client's read timeout can end the first call (the suite's pytest
    # timeout would stop a client that waited it out); stop() ends the hang at teardown.
    sandbox.faults.hang_seconds = 3600
    sleep = heal_after(sandbox, 1, hang_rate=0.0)
    # The read timeout every test here has (2 s), not a shorter one: the retry's own answer must
    # come within it, and a busy machine held one past 0.3 s (a second timeout, a second retry).
    with client_for(sandbox, sleep=sleep) as client:
        members = client.list_workspace_members(ws.id)
        stats = client.stats.snapshot()
        [retried] = client.take_retried_attempts()
    assert members.items == baseline
    # Said as a timeout (the server is slow), not a dropped connection (something cut it).
    assert retried["status_code"] is None and retried["problem"] == f"the connection timed out (workspace {ws.id})"
    # The client gave up on the hang at its read timeout and retried once.
    assert stats["connection_errors"] == 1 and stats["retries"] == 1 and stats["calls"] == 2
    assert len(sleep.waits) == 1


@pytest.mark.parametrize(
    "faults",
    [
        {"error_rate": 0.3},
        {"throttle_rate": 0.3},
        {"drop_rate": 0.3},
        {"hang_rate": 0.2, "hang_seconds": 5},
    ],
    ids=["5xx", "429", "drop", "hang"],
)
def test_random_faults_mid_paging_give_the_fault_free_result(big_sandbox, faults):
    sb = big_sandbox
    workspaces = [w.id for w in shared(sb)]
    with client_for(sb) as client:
        baseline = (
            client.list_org_members().items,
            client.list_enriched_members().items,
            {w: l.items for w, l in client.list_members_of_workspaces(workspaces).items()},
        )
    sb.faults = FaultConfig(seed=5, **faults)
    sleep = RecordingSleep()
    # A short read timeout only where hangs are the fault: elsewhere a page that is merely slow
    # on a loaded machine must not add a timeout retry to the count of the fault's own.
    timeout = 0.3 if "hang_rate" in faults else 30
    # Retries enough that no request plausibly draws a fault on every attempt: with 9 attempts
    # a 30% rate gives up on a request once in ~50,000, and the order in which concurrent
    # requests draw from the seeded generator varies, so that did happen in a CI run.
    # (The sleeps are recorded, not slept.)
    with client_for(sb, sleep=sleep, max_retries=16, read_timeout_seconds=timeout) as client:
        faulty = (
            client.list_org_members().items,
            client.list_enriched_members().items,
            {w: l.items for w, l in client.list_members_of_workspaces(workspaces).items()},
        )
        stats = client.stats.snapshot()
    assert faulty == baseline
    assert stats["retries"] > 0 and stats["retries"] == len(sleep.waits)
    counter = {"error_rate": "server_errors", "throttle_rate": "rate_limited"}.get(
        next(iter(faults)), "connection_errors"
    )
    assert stats[counter] == stats["retries"]


@pytest.mark.parametrize("fault", ["error_rate", "throttle_rate", "drop_rate", "hang_rate"])
def test_retries_exhausted_raise_transient_error_naming_path_and_workspace(sandbox, fault):
    ws = shared(sandbox)[2]
    setattr(sandbox.faults, fault, 1.0)
    sandbox.faults.hang_seconds = 5
    sleep = RecordingSleep()
    with client_for(sandbox, sleep=sleep, max_retries=2, read_timeout_seconds=0.3) as client:
        error = expect_error(
            TransientError,
            lambda: client.list_workspace_members(ws.id),
            keys=[sandbox.api_key],
            contains=[WS_ACTIVE, ws.id, "gave up after 3 attempts"],
        )
        assert client.stats.retries == 2 and client.stats.calls == 3
    assert error.maybe_applied is False and error.path == WS_ACTIVE
    assert len(sleep.waits) == 2
    if fault != "hang_rate":  # hung requests are logged only when the hang ends
        assert len(sandbox.requests_matching("GET", WS_ACTIVE)) == 3


def test_retries_exhausted_on_an_org_route(sandbox):
    sandbox.faults.failing_routes = (ROLES + "$",)
    with client_for(sandbox, sleep=RecordingSleep(), max_retries=1) as client:
        error = expect_error(
            TransientError, client.list_roles, keys=[sandbox.api_key], contains=[ROLES, "server error 500"]
        )
        assert "workspace" not in str(error)
        assert client.list_workspaces()  # other routes still answer


# ------------------------------------------------------------------ THE DONE-WHEN


def test_done_when_ten_percent_faults_read_exactly_the_same_org():
    """~10% injected faults (5% 5xx, 5% 429): the client reads the same roles, workspaces,
    members, pending invites, enriched members and every workspace's members as without
    faults (and as the sandbox's own state), retrying with the real sleep."""
    org = generate_org(seed=11, members=1100, workspaces=30)
    with SandboxServer(org) as sb:
        with client_for(sb) as clean:
            baseline = read_everything(clean)
        assert project_read(baseline) == expected_from_org(sb.org)
        assert len(baseline["members"]) == 1100

        sb.reset_log()
        sb.faults = FaultConfig(error_rate=0.05, throttle_rate=0.05, seed=10)
        sleep = RecordingSleep(real=True)
        with client_for(sb, sleep=sleep, max_retries=6) as faulty:
            faulty_read = read_everything(faulty)
            stats = faulty.stats.snapshot()
        log = sb.request_log.snapshot()

    assert faulty_read == baseline  # every record, every field
    statuses = [e.status for e in log]
    throttled = statuses.count(429)
    errors = sum(1 for s in statuses if s is not None and s >= 500)
    print(
        f"\ndone-when: {stats['calls']} calls, {stats['retries']} retries "
        f"({throttled} x 429, {errors} x 5xx), waited {stats['wait_seconds']:.2f}s"
    )
    assert stats["retries"] > 0
    assert stats["retries"] == throttled + errors == len(sleep.waits)
    assert stats["rate_limited"] == throttled and stats["server_errors"] == errors
    assert stats["calls"] == len(log)
    assert throttled > 0 and errors > 0
    # Every 429 wait was the Retry-After (1 s); every 5xx wait a backoff under 30 s.
    assert sleep.waits.count(1.0) >= throttled


@pytest.mark.parametrize("status, headers, wait", [
    (503, {"Retry-After": "3"}, 3.0),  # a 5xx that says when to come back is believed
    (500, {"Retry-After": "4"}, 4.0),  # any 5xx, not only a 503
    (429, {"Retry-After-Ms": "250", "Retry-After": "9"}, 0.25),  # milliseconds first, as the Go SDK
    (429, {"Retry-After": "0"}, 0.0),  # come back now: asked again at once, not after a backoff
    (503, {"Retry-After": "nan"}, None),  # nothing usable: the backoff decides
])
def test_the_servers_retry_hint_sets_the_wait(sandbox, status, headers, wait):
    answered = []

    def once(respond, request):
        if not answered:
            answered.append(request.path)
            return ApiResponse(status, {"detail": "come back later"}, headers=dict(headers))
        return respond(request)

    wrap_respond(sandbox, once)
    sleep = RecordingSleep()
    with client_for(sandbox, sleep=sleep) as client:
        assert client.list_roles()
    assert len(sleep.waits) == 1
    if wait is not None:
        assert sleep.waits == [wait]
    else:
        assert 0 < sleep.waits[0] < 30


# ------------------------------------------------------------------ client-side rate limit


class FakeClock:
    """A monotonic clock that moves only when someone sleeps on it (wall time stays real)."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    @staticmethod
    def time() -> float:
        return time.time()


def test_client_rate_limiter_keeps_under_the_server_limit(start_sandbox, monkeypatch):
    """Both minute windows shortened from 60 s to 3 s (the short ones, a sixth, to 0.5 s), on
    one fake clock that moves only when the client waits: the client's budget of 80 requests a
    minute is 4 per 3-second window and 2 per half second; the sandbox allows 6 and 3. 8 calls:
    2 at once, 2 after half a second, 2 when the minute window ends, 2 half a second after;
    none is refused."""
    clock = FakeClock()
    monkeypatch.setattr(sandbox_faults, "RATE_LIMIT_WINDOW_SECONDS", 3)
    monkeypatch.setattr(sandbox_faults, "time", clock)  # the sandbox's rate-limit windows
    monkeypatch.setattr(pacing, "WINDOW_SECONDS", 3.0)
    calls = 8
    limits = FaultConfig(rate_limit_per_minute=6, rate_limit_per_10_seconds=3)
    sb = start_sandbox(faults=limits)
    with client_for(sb, requests_per_minute=80, max_retries=0, clock=clock.monotonic, sleep=clock.sleep) as client:
        for _ in range(calls):
            client.get_organization_info()
        stats = client.stats.snapshot()
    assert clock.sleeps == [0.5, 2.5, 0.5]  # the short window twice, the minute's once
    assert stats["wait_seconds"] == 3.5
    assert [e.status for e in sb.request_log] == [200] * calls
    assert stats["rate_limited"] == 0 and stats["calls"] == calls

    # Control: the same sandbox limits with the client's limiter out of the way: the short
    # window's is hit first.
    control = start_sandbox(faults=FaultConfig(rate_limit_per_minute=6, rate_limit_per_10_seconds=3))
    with client_for(control, max_retries=0) as fast:
        with pytest.raises(TransientError, match="rate limited"):
            for _ in range(calls):
                fast.get_organization_info()
    assert [e.status for e in control.request_log] == [200] * 3 + [429]


# ------------------------------------------------------------------ bounded concurrency


class InFlight:
    """Counts the sandbox's requests being answered at once; ``peak``: the most at any moment."""

    def __init__(self, sandbox):
        self.now = self.peak = 0
        self._lock = threading.Lock()
        wrap_respond(sandbox, self._counting)

    def _counting(self, respond, request):
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            return respond(request)
        finally:
            with self._lock:
                self.now -= 1


@pytest.mark.parametrize("max_concurrency", [1, 3])
def test_fan_out_keeps_at_most_max_concurrency_requests_in_flight(start_sandbox, max_concurrency):
    sb = start_sandbox(generate_org(seed=9, members=60, workspaces=24))
    in_flight = InFlight(sb)
    sb.faults.latency_ms = 40  # inside the counted span, so calls overlap when they can
    workspaces = [w.id for w in sb.org.all_workspaces() if not w.is_deleted]
    assert len(workspaces) >= 24
    with client_for(sb, max_concurrency=max_concurrency) as client:
        result = client.list_members_of_workspaces(workspaces)
    assert list(result) == workspaces
    for ws in workspaces:
        assert {m.id for m in result[ws]} == {m.id for m in sb.org.workspace(ws).memberships.values()}
    assert in_flight.peak <= max_concurrency
    if max_concurrency > 1:
        assert in_flight.peak >= 2, "the fan-out ran one workspace at a time"
    assert {e.tenant_id for e in sb.request_log} == set(workspaces)


def test_fan_out_over_workspaces_of_many_pages_keeps_at_most_max_concurrency_requests_in_flight(start_sandbox):
    """Workspaces of four pages each: within a workspace the pages are read one at a time, or
    the workspaces' page read-ahead would multiply the requests in flight."""
    sb = start_sandbox(generate_org(seed=3, members=2600, workspaces=2))
    in_flight = InFlight(sb)
    sb.faults.latency_ms = 40
    workspaces = [w.id for w in shared(sb)]
    assert all(len(sb.org.workspace(w).memberships) > 3 * PAGE for w in workspaces)
    with client_for(sb, max_concurrency=2) as client:
        result = client.list_members_of_workspaces(workspaces)
    for ws in workspaces:
        assert len(result[ws]) == len(sb.org.workspace(ws).memberships)
    assert in_flight.peak <= 2


def test_the_pages_a_total_implies_are_read_ahead_together_up_to_the_one_that_confirms_the_end(start_sandbox):
    """1,000 members: the first page says so, and the pages at 500 and 1,000 (the empty one that
    confirms the end) are then asked for at once, not one after the other."""
    sb = start_sandbox(generate_org(seed=4, members=1000, workspaces=2))
    in_flight = InFlight(sb)
    sb.faults.latency_ms = 150  # inside the counted span, so the two reads overlap when they can
    with client_for(sb, max_concurrency=3) as client:
        members = client.list_org_members()
    assert len(members) == 1000 and (members.pages, members.scans) == (3, 1)
    assert offsets_and_limits(sb, ACTIVE) == [(0, PAGE), (500, PAGE), (1000, PAGE)]
    assert in_flight.peak == 2


def test_fan_outs_leave_no_connections_open_behind_them(big_sandbox):
    """Each fan-out over workspaces, and each listing's read-ahead, runs in a new thread pool
    whose threads open their own connections: those are closed when the pool ends, not kept
    until the client closes (a long-lived client leaked max_concurrency sockets per fan-out)."""
    sb = big_sandbox
    workspaces = [w.id for w in shared(sb)]

    def open_files() -> int:
        return len(os.listdir(f"/proc/{os.getpid()}/fd"))

    with client_for(sb, max_concurrency=4) as client:
        client.list_org_members()
        client.list_members_of_workspaces(workspaces)
        before = open_files()
        for _ in range(4):
            assert len(client.list_org_members()) == 1234
            client.list_members_of_workspaces(workspaces)
        after = open_files()
    assert after - before < 8, f"{after - before} more files open after four more fan-outs"


def test_fan_out_raises_the_error_of_a_failing_workspace(sandbox):
    workspaces = [w.id for w in shared(sandbox)]
    bad = workspaces[3]
    sandbox.faults.failing_workspaces = (bad,)
    with client_for(sandbox, sleep=RecordingSleep(), max_retries=1, max_concurrency=3) as client:
        expect_error(
            TransientError,
            lambda: client.list_members_of_workspaces(workspaces),
            keys=[sandbox.api_key],
            contains=[bad, WS_ACTIVE, "server error 500"],
        )
    failed = {e.tenant_id for e in sandbox.request_log if e.status == 500}
    assert failed == {bad}


def test_fan_out_reads_a_workspace_named_twice_once(sandbox):
    ws = shared(sandbox)[0]
    with client_for(sandbox) as client:
        result = client.list_members_of_workspaces([ws.id, ws.id.upper(), ws.id])
    assert list(result) == [ws.id]
    assert len(sandbox.requests_matching("GET", WS_ACTIVE)) == 1


def test_fan_out_stops_reading_workspaces_at_the_first_failure(sandbox, monkeypatch):
    workspaces = [w.id for w in shared(sandbox)]
    sandbox.faults.failing_workspaces = (workspaces[0],)

    def wait_waking_late(*args, **kwargs):
        # A busy machine: the calling thread wakes to cancel the rest well after the failure.
        # The one worker must not read the other workspaces meanwhile (CI saw it read three).
        result = real_wait(*args, **kwargs)
        time.sleep(0.5)
        return result

    real_wait = client_module.wait
    monkeypatch.setattr(client_module, "wait", wait_waking_late)
    with client_for(sandbox, sleep=RecordingSleep(), max_retries=0, max_concurrency=1) as client:
        expect_error(TransientError, lambda: client.list_members_of_workspaces(workspaces),
                     keys=[sandbox.api_key], contains=[workspaces[0]])
    read = [e.tenant_id for e in sandbox.requests_matching("GET", WS_ACTIVE)]
    assert read == [workspaces[0]] and len(workspaces) > 1


def test_fan_out_raises_not_found_naming_a_deleted_workspace(sandbox):
    deleted = next(w.id for w in sandbox.org.all_workspaces() if w.is_deleted)
    workspaces = [w.id for w in shared(sandbox)] + [deleted]
    with client_for(sandbox, max_concurrency=2) as client:
        expect_error(
            NotFoundError,
            lambda: client.list_members_of_workspaces(workspaces),
            keys=[sandbox.api_key],
            contains=[deleted],
        )


# ------------------------------------------------------------------ keys, ids and auth


def test_personal_access_token_is_refused_before_any_request(sandbox):
    pat = "lsv2_pt_" + uuid.uuid4().hex
    settings = ClientSettings(api_key=Secret(pat), organization_id=sandbox.organization_id, endpoint=sandbox.url)
    error = expect_error(SettingsError, lambda: LangSmithClient(settings), keys=[pat])
    assert "personal access token" in str(error) and "organization-scoped service key" in str(error)
    assert len(sandbox.request_log) == 0


@pytest.mark.parametrize("organization_id", ["not-a-uuid", "", "12345"])
def test_non_uuid_organization_id_is_refused_before_any_request(sandbox, organization_id):
    settings = ClientSettings(api_key=Secret(sandbox.api_key), organization_id=organization_id, endpoint=sandbox.url)
    error = expect_error(SettingsError, lambda: LangSmithClient(settings), keys=[sandbox.api_key])
    assert "LANGSMITH_ORGANIZATION_ID" in str(error)
    assert len(sandbox.request_log) == 0


def test_wrong_key_is_an_authentication_error(sandbox):
    wrong = "lsv2_sk_" + uuid.uuid4().hex + "_wrong"
    ws = shared(sandbox)[0]
    with client_for(sandbox, api_key=wrong, sleep=RecordingSleep()) as client:
        for call in (client.list_roles, client.list_org_members, lambda: client.list_workspace_members(ws.id)):
            error = expect_error(AuthenticationError, call, keys=[wrong, sandbox.api_key], contains=["API key"])
            assert error.status_code == 401
        assert client.stats.retries == 0
    assert [e.status for e in sandbox.request_log] == [401, 401, 401]


def test_workspace_scoped_key_is_refused_on_org_routes(start_sandbox):
    ws_key = "lsv2_sk_" + uuid.uuid4().hex + "_ws"
    sb = start_sandbox(workspace_scoped_key=ws_key)
    ws = sb.org.workspace(sb.api.key_workspace_id())
    with client_for(sb, api_key=ws_key) as client:
        for call in (client.list_roles, client.list_workspaces, client.list_org_members, client.list_enriched_members):
            error = expect_error(
                PermissionDeniedError, call, keys=[ws_key, sb.api_key], contains=["organization scope"]
            )
            assert error.status_code == 403
        # The same key may read a workspace route.
        assert {m.id for m in client.list_workspace_members(ws.id)} == {m.id for m in ws.memberships.values()}


def test_a_refused_workspace_read_names_the_permission_a_read_needs(start_sandbox):
    sb = start_sandbox(key_role="workspace")  # a key of one workspace: others refuse it
    other = next(w for w in sb.org.shared_workspaces() if w.id != sb.api.key_workspace_id())
    with client_for(sb) as client:
        # LangSmith answers a deleted workspace, or another org's, with 403 too: both causes named.
        read = expect_error(PermissionDeniedError, lambda: client.list_workspace_members(other.id),
                            keys=[sb.api_key], contains=[other.id, "workspaces:read",
                                                         "deleted or belongs to another organization"])
        assert "manage-members" not in str(read)
        member = next(iter(other.memberships.values()))
        write = expect_error(PermissionDeniedError,
                             lambda: client.remove_workspace_member(other.id, member.id),
                             keys=[sb.api_key], contains=[other.id, "workspaces:manage-members"])
        assert write.status_code == read.status_code == 403


def test_wrong_organization_id_is_permission_denied(sandbox):
    other = str(uuid.uuid4())
    with client_for(sandbox, organization_id=other) as client:
        expect_error(PermissionDeniedError, client.list_roles, keys=[sandbox.api_key],
                     contains=[other, f"another region or install than {sandbox.url}"])


@pytest.mark.parametrize("body", ["Forbidden", ["forbidden"], None])
def test_a_403_whose_body_is_no_json_object_is_a_proxys_refusal(sandbox, body):
    """LangSmith's 403s carry a JSON object; a bare string, a list or JSON null is not one."""
    wrap_respond(sandbox, lambda respond, request: ApiResponse(403, body))
    with client_for(sandbox) as client:
        error = expect_error(ProxyRefusalError, client.list_roles, keys=[sandbox.api_key], contains=["proxy"])
    assert error.status_code == 403


@pytest.mark.parametrize("body", ["<html>Sign in</html>", ["unauthorized"], None])
def test_a_401_whose_body_is_no_json_object_is_a_gateways_login_not_a_refused_key(sandbox, body):
    """LangSmith refuses a key with a JSON object (as the doctor reads it, langsmith-api.md): a
    page is a proxy or single sign-on gateway asking for its own login, whose fix is not a new key."""
    wrap_respond(sandbox, lambda respond, request: ApiResponse(401, body))
    with client_for(sandbox) as client:
        error = expect_error(ProxyLoginError, client.list_roles, keys=[sandbox.api_key],
                             contains=["401: refused with no JSON body", "asks for its own login"])
    assert error.fix == ProxyLoginError.fix != AuthenticationError.fix


NGINX_404 = ("<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1>"
             "</center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n")


@pytest.mark.parametrize("content_type", ["text/html", "text/plain"])
def test_an_error_answered_with_a_web_page_is_said_by_its_title_not_its_markup(sandbox, content_type):
    """A proxy's or a frontend's 404 page (a self-hosted install's path prefix missing): the
    error, and so the sync's failure, sync_runs and the sync.failed notification, name the page
    by its title, not a few hundred characters of HTML; a page served as text/plain is known by
    its markup."""
    wrap_respond(sandbox, lambda respond, request: ApiResponse(404, HtmlPage(NGINX_404, content_type=content_type)))
    with client_for(sandbox) as client:
        error = expect_error(LangSmithError, client.list_workspaces, keys=[sandbox.api_key],
                             contains=["an HTML page titled '404 Not Found', not LangSmith's JSON"])
    assert "<" not in str(error) and "nginx" not in str(error)


def test_an_error_answered_with_plain_text_keeps_its_text(sandbox):
    wrap_respond(sandbox, lambda respond, request: ApiResponse(502, HtmlPage("upstream connect error",
                                                                             content_type="text/plain")))
    with client_for(sandbox, max_retries=0) as client:
        expect_error(LangSmithError, client.list_workspaces, keys=[sandbox.api_key],
                     contains=["upstream connect error"])


def test_a_401_with_langsmiths_json_is_a_refused_key(sandbox):
    wrap_respond(sandbox, lambda respond, request: ApiResponse(401, {"detail": "Invalid token"}))
    with client_for(sandbox) as client:
        error = expect_error(AuthenticationError, client.list_roles, keys=[sandbox.api_key],
                             contains=["LangSmith refused the API key"])
    assert not isinstance(error, ProxyLoginError) and error.detail == "Invalid token"


def test_a_workspace_route_that_got_no_tenant_header_says_so(sandbox):
    """As LangSmith answers an org-scoped key whose X-Tenant-Id did not arrive (a proxy may drop it)."""
    ws = shared(sandbox)[0]

    def without_tenant(respond, request):
        if request.path.startswith(WS_ROUTES):
            return ApiResponse(403, {"error": "org_scoped_key_requires_workspace"})
        return respond(request)

    wrap_respond(sandbox, without_tenant)
    with client_for(sandbox) as client:
        error = expect_error(PermissionDeniedError, lambda: client.list_workspace_members(ws.id),
                             keys=[sandbox.api_key], contains=["needs an X-Tenant-Id header", ws.id])
    assert not isinstance(error, ProxyRefusalError) and error.status_code == 403


def test_a_key_echoed_by_the_server_is_scrubbed(sandbox):
    def echo(respond, request):
        return ApiResponse(400, {"detail": f"bad key {request.headers.get('X-API-Key')}"})

    wrap_respond(sandbox, echo)
    with client_for(sandbox) as client:
        error = expect_error(RequestRejectedError, client.list_roles, keys=[sandbox.api_key], contains=["***"])
    assert error.status_code == 400


def test_a_piece_of_the_key_quoted_without_its_prefix_is_cut_from_the_error(sandbox):
    # The key's secret part, or a piece of it, has no prefix to be recognised by: the client,
    # which knows its key, cuts any run of 12 of its characters (as the doctor does) from what
    # the server said, before it reaches a sync's failure, a log or Dagster.
    secret = sandbox.api_key.removeprefix("lsv2_sk_")
    for piece in (secret[:32], secret[-20:], secret[7:19]):
        wrap_respond(sandbox, lambda respond, request, piece=piece: ApiResponse(
            400, {"detail": f"no key {piece} here"}))
        with client_for(sandbox) as client:
            error = expect_error(RequestRejectedError, client.list_roles, keys=[sandbox.api_key])
        shown = f"{error} {error.detail}"
        assert piece[:12] not in shown and piece[-12:] not in shown, shown
        assert error.detail == "no key *** here"
        sandbox.respond = type(sandbox).respond.__get__(sandbox)


@pytest.mark.parametrize("body, shown", [
    ({"detail": "bad filter"}, "bad filter"),
    ({"error": "unauthorized"}, "unauthorized"),  # the platform routes' form
    ({"type": "about:blank", "title": "Bad Request", "status": 400}, "Bad Request"),  # RFC 7807
    ({"type": "about:blank", "title": "Bad Request", "detail": "offset too large"}, "offset too large"),
    ({"message": "quota exceeded"}, "quota exceeded"),  # a gateway's form
])
def test_each_error_form_langsmith_uses_is_shown_by_its_message(sandbox, body, shown):
    wrap_respond(sandbox, lambda respond, request: ApiResponse(400, body))
    with client_for(sandbox) as client:
        error = expect_error(RequestRejectedError, client.list_roles, keys=[sandbox.api_key], contains=[shown])
    assert "{" not in str(error.detail), error.detail


@pytest.mark.parametrize("body, detail", [
    ({"detail": "x" * 1000}, "x" * 300 + "…"),  # a page of HTML, a stack trace: shortened
    (HtmlPage(text="", content_type="text/plain"), "(empty body)"),
    # A proxy's or gateway's words in plain text are the detail (not JSON, still what it said).
    (HtmlPage(text="  upstream connect error\n", content_type="text/plain"), "upstream connect error"),
    ({"detail": [{"loc": ["query", "limit"], "msg": "too large", "type": "x"}, "and more"]},
     "query.limit: too large; and more"),  # 422's list of problems, one by one
    # One line, no terminal escapes: quoted in a sync's failure, a line break forged a line of
    # output of its own and an ESC sequence reached the terminal.
    ({"detail": "no\nok: forged\x1b[2J\r\n"}, "no ok: forged [2J"),
    ({"detail": "\n\t"}, "(empty body)"),
])
def test_an_error_detail_is_shortened_and_never_empty(sandbox, body, detail):
    wrap_respond(sandbox, lambda respond, request: ApiResponse(400, body))
    with client_for(sandbox) as client:
        error = expect_error(RequestRejectedError, client.list_roles, keys=[sandbox.api_key])
    assert error.detail == detail and str(error).endswith(detail)


def test_enriched_route_missing_is_not_found(start_sandbox):
    sb = start_sandbox(enriched_route=False)
    with client_for(sb) as client:
        error = expect_error(NotFoundError, client.list_enriched_members, keys=[sb.api_key], contains=[ENRICHED])
        assert error.status_code == 404
        # The sync's cue to read each workspace instead (extract.enriched_route_fallback), with why.
        assert isinstance(error, RouteNotAvailableError) and "answered 404" in error.reason
        assert client.stats.retries == 0
        assert len(client.list_org_members()) == 40  # the other routes are there


# ------------------------------------------------------------------ find


def test_find_org_member_by_email_is_case_insensitive(sandbox):
    member = next(m for m in sandbox.org.active_members() if m.email != m.email.lower())
    with client_for(sandbox) as client:
        for email in (member.email, member.email.lower(), member.email.upper(), member.email.swapcase()):
            found = client.find_org_member(email=email)
            assert found is not None and found.id == member.id and found.ls_user_id == member.ls_user_id
        by_id = client.find_org_member(ls_user_id=member.ls_user_id)
        assert by_id is not None and by_id.id == member.id and by_id.role_id == member.org_role_id
        assert client.find_org_member(email="nobody.at.all@example.com") is None
        assert client.find_org_member(ls_user_id=str(uuid.uuid4())) is None
        with pytest.raises(ValueError):
            client.find_org_member()
        with pytest.raises(ValueError):
            client.find_org_member(email=member.email, ls_user_id=member.ls_user_id)
    # The server filtered: one request per lookup, never a scan of the whole listing.
    assert all(e.query["offset"] == ["0"] for e in sandbox.requests_matching("GET", ACTIVE))
    assert len(sandbox.requests_matching("GET", ACTIVE)) == 7


def test_ids_spelt_in_capitals_are_read_in_one_spelling_and_found_by_the_find_helpers(sandbox):
    """An answer may spell LangSmith's UUIDs in capitals: every record reads them in LangSmith's
    own spelling (the org's info is a dict as sent, not a record), and the find helpers, which
    compare ids, find the member in one filtered request each."""
    ids_in_capitals(sandbox)
    ws = shared(sandbox)[0]
    member = insider_of(ws)
    with client_for(sandbox) as client:
        got = project_read(read_everything(client))
        by_id = client.find_org_member(ls_user_id=member.ls_user_id.upper())
        in_workspace = client.find_workspace_member(ws.id.upper(), member.ls_user_id)
    expected = expected_from_org(sandbox.org)
    assert got["info_id"] == expected["info_id"].upper()  # the ids below are not: they come as it does
    for part in set(expected) - {"info_id"}:
        assert got[part] == expected[part], part
    assert by_id is not None and (by_id.id, by_id.ls_user_id) == (sandbox.org.members[member.ls_user_id].id,
                                                                  member.ls_user_id)
    assert in_workspace is not None and (in_workspace.id, in_workspace.workspace_id) == (member.id, ws.id)
    # Found in the filtered answers: never a scan of the whole listing (offset 0 only).
    assert all(e.query["offset"] == ["0"] for e in sandbox.requests_matching("GET", ACTIVE))
    assert len([e for e in sandbox.requests_matching("GET", WS_ACTIVE) if "ls_user_ids" in e.query]) == 1


def test_find_org_member_reads_the_whole_listing_when_the_server_ignores_the_filter(big_sandbox):
    sb = big_sandbox
    member = sb.org.active_members()[-1]

    def unfiltered(respond, request):
        query = {k: v for k, v in request.query.items() if k not in ("emails", "ls_user_ids")}
        return respond(replace(request, query=query))

    wrap_respond(sb, unfiltered)
    with client_for(sb) as client:
        by_email = client.find_org_member(email=member.email.upper())
        by_id = client.find_org_member(ls_user_id=member.ls_user_id)
    assert by_email is not None and by_id is not None and by_email.id == by_id.id == member.id


def test_a_probe_tells_an_answer_and_an_error_detail_only_for_an_error(sandbox):
    with client_for(sandbox) as client:
        answered = client.probe()
        missing = client.probe("/api/v1/no-such-route")
        assert client.stats.calls == 2
    assert (answered.status_code, answered.is_json, answered.detail, answered.retry_after) == (200, True, "", None)
    assert answered.body["id"] == sandbox.organization_id
    assert missing.status_code == 404 and missing.detail and missing.retry_after is None


def test_a_probe_reads_a_json_body_that_names_no_content_type(sandbox):
    def undeclared(respond, request):
        response = respond(request)
        return ApiResponse(response.status, HtmlPage(text=json.dumps(response.body), content_type=""))

    wrap_respond(sandbox, undeclared)
    with client_for(sandbox) as client:
        answered = client.probe()
    assert answered.content_type == "" and answered.body["id"] == sandbox.organization_id


def test_a_key_echoed_into_a_probes_error_detail_is_scrubbed(sandbox):
    wrap_respond(sandbox, lambda respond, request: ApiResponse(
        400, {"detail": f"bad key {request.headers.get('X-API-Key')}"}))
    with client_for(sandbox) as client:
        refused = client.probe()
    assert refused.detail == "bad key ***"


def test_a_key_echoed_into_a_probes_answer_is_cut_from_its_body(sandbox):
    """The doctor keeps a probe's body (the org info) and shows its name: a server that put the
    key it was sent there hands it to nobody, as for every other answer the client reads."""

    def echo(respond, request):
        response = respond(request)
        return ApiResponse(response.status, {**response.body, "display_name": f"org of {request.headers.get('X-API-Key')}"})

    wrap_respond(sandbox, echo)
    with client_for(sandbox) as client:
        answered = client.probe()
    assert sandbox.api_key[len("lsv2_sk_"):] not in json.dumps(answered.body)
    assert answered.body["id"] == sandbox.organization_id
    assert answered.body["display_name"] == "org of lsv2_***"


def test_a_blank_total_is_no_total(sandbox):
    def blank_total(respond, request):
        response = respond(request)
        if request.path == ACTIVE and response.status == 200:
            response.headers["X-Pagination-Total"] = " "
        return response

    wrap_respond(sandbox, blank_total)
    with client_for(sandbox) as client:
        members = client.list_org_members()
    assert members.reported_total is None and len(members) == len(sandbox.org.active_members())


def test_the_first_page_is_one_row_and_the_total(sandbox):
    with client_for(sandbox) as client:
        first = client.first_page_of_org_members()
    assert len(first) == 1 and first.reported_total == len(sandbox.org.active_members())
    assert [e.query["limit"] for e in sandbox.requests_matching("GET", ACTIVE)] == [["1"]]


def test_find_workspace_member(sandbox):
    ws = shared(sandbox)[0]
    membership = insider_of(ws)
    outsider = outsider_of(sandbox, ws)
    with client_for(sandbox) as client:
        found = client.find_workspace_member(ws.id, membership.ls_user_id)
        assert found is not None
        assert (found.id, found.workspace_id, found.role_id) == (membership.id, ws.id, membership.role_id)
        assert client.find_workspace_member(ws.id, outsider.ls_user_id) is None
    assert {e.tenant_id for e in sandbox.requests_matching("GET", WS_ACTIVE)} == {ws.id}


# ------------------------------------------------------------------ writes


def test_add_workspace_member(sandbox):
    ws = shared(sandbox)[0]
    member = outsider_of(sandbox, ws)
    role = sandbox.org.role_by_name("WORKSPACE_USER")
    with client_for(sandbox) as client:
        created = client.add_workspace_member(ws.id, org_identity_id=member.id, role_id=role.id)
        membership = sandbox.org.membership(ws.id, member.ls_user_id)
        assert membership is not None and membership.role_id == role.id
        assert created.id == membership.id != member.id
        assert (created.workspace_id, created.ls_user_id, created.role_id) == (ws.id, member.ls_user_id, role.id)
        found = client.find_workspace_member(ws.id, member.ls_user_id)
        assert found is not None and found.id == created.id and found.role_id == role.id
    posts = sandbox.requests_matching("POST", WS_MEMBERS)
    assert [(e.status, e.tenant_id) for e in posts] == [(200, ws.id)]


def test_add_existing_member_is_a_conflict(sandbox):
    ws = shared(sandbox)[0]
    membership = insider_of(ws)
    member = sandbox.org.members[membership.ls_user_id]
    other_role = next(r for r in sandbox.org.roles_by_scope("workspace") if r.id != membership.role_id)
    with client_for(sandbox) as client:
        error = expect_error(
            ConflictError,
            lambda: client.add_workspace_member(ws.id, org_identity_id=member.id, role_id=other_role.id),
            keys=[sandbox.api_key],
            contains=[ws.id],
        )
    assert error.status_code == 409
    assert sandbox.org.membership(ws.id, member.ls_user_id).role_id == membership.role_id


def test_add_unknown_or_pending_identity_is_not_found(sandbox):
    ws = shared(sandbox)[0]
    role = sandbox.org.role_by_name("WORKSPACE_VIEWER")
    pending = next(iter(sandbox.org.pending_invites.values()))
    before = dict(ws.memberships)
    with client_for(sandbox) as client:
        for identity in (str(uuid.uuid4()), pending.id):
            expect_error(
                NotFoundError,
                lambda: client.add_workspace_member(ws.id, org_identity_id=identity, role_id=role.id),
                keys=[sandbox.api_key],
                contains=[ws.id],
            )
    assert ws.memberships == before


def test_add_with_an_org_scoped_role_is_rejected(sandbox):
    ws = shared(sandbox)[0]
    member = outsider_of(sandbox, ws)
    org_role = sandbox.org.role_by_name("ORGANIZATION_ADMIN")
    with client_for(sandbox) as client:
        error = expect_error(
            RequestRejectedError,
            lambda: client.add_workspace_member(ws.id, org_identity_id=member.id, role_id=org_role.id),
            keys=[sandbox.api_key],
            contains=["not a workspace role"],
        )
    assert error.status_code == 400
    assert sandbox.org.membership(ws.id, member.ls_user_id) is None


def test_set_workspace_member_role(sandbox):
    ws = shared(sandbox)[0]
    membership = insider_of(ws)
    new_role = next(r for r in sandbox.org.roles_by_scope("workspace") if r.id != membership.role_id)
    with client_for(sandbox) as client:
        assert client.set_workspace_member_role(ws.id, membership.id, new_role.id) is None
        assert sandbox.org.membership(ws.id, membership.ls_user_id).role_id == new_role.id
        assert client.find_workspace_member(ws.id, membership.ls_user_id).role_id == new_role.id
        # An unknown identity, and the member's org identity id (not their workspace one): 404.
        org_identity = sandbox.org.members[membership.ls_user_id].id
        for identity in (str(uuid.uuid4()), org_identity):
            error = expect_error(
                NotFoundError,
                lambda: client.set_workspace_member_role(ws.id, identity, new_role.id),
                keys=[sandbox.api_key],
                contains=[ws.id],
            )
            assert error.status_code == 404
    assert [e.tenant_id for e in sandbox.requests_matching("PATCH")] == [ws.id] * 3


@pytest.mark.parametrize("delete_response", ["json_object", "null", "no_content"])
def test_remove_workspace_member(start_sandbox, delete_response):
    sb = start_sandbox(delete_response=delete_response)
    ws = sb.org.shared_workspaces()[0]
    membership = insider_of(ws)
    with client_for(sb) as client:
        assert client.remove_workspace_member(ws.id, membership.id) is None
        assert sb.org.membership(ws.id, membership.ls_user_id) is None
        assert client.find_workspace_member(ws.id, membership.ls_user_id) is None
        assert sb.org.members[membership.ls_user_id]  # still an org member
        expect_error(
            NotFoundError,
            lambda: client.remove_workspace_member(ws.id, membership.id),
            keys=[sb.api_key],
            contains=[ws.id],
        )
    expected_first = 204 if delete_response == "no_content" else 200
    assert [e.status for e in sb.requests_matching("DELETE")] == [expected_first, 404]


@pytest.mark.parametrize("operation", ["add", "set_role", "remove"])
def test_a_write_whose_answer_is_lost_is_not_resent(sandbox, operation):
    ws = shared(sandbox)[0]
    outsider = outsider_of(sandbox, ws)
    membership = insider_of(ws)
    new_role = next(r for r in sandbox.org.roles_by_scope("workspace") if r.id != membership.role_id)
    sandbox.faults.fail_writes_after_apply = 1
    sleep = RecordingSleep()
    with client_for(sandbox, sleep=sleep) as client:
        write = {
            "add": lambda: client.add_workspace_member(ws.id, org_identity_id=outsider.id, role_id=new_role.id),
            "set_role": lambda: client.set_workspace_member_role(ws.id, membership.id, new_role.id),
            "remove": lambda: client.remove_workspace_member(ws.id, membership.id),
        }[operation]
        error = expect_error(TransientError, write, keys=[sandbox.api_key], contains=[ws.id, "re-read"])
        assert client.stats.retries == 0
    assert error.maybe_applied is True and error.status_code == 502
    assert sleep.waits == []
    writes = [e for e in sandbox.request_log if e.method != "GET"]
    assert [e.status for e in writes] == [502]  # sent exactly once
    # ... and it was applied.
    if operation == "add":
        assert sandbox.org.membership(ws.id, outsider.ls_user_id).role_id == new_role.id
    elif operation == "set_role":
        assert sandbox.org.membership(ws.id, membership.ls_user_id).role_id == new_role.id
    else:
        assert sandbox.org.membership(ws.id, membership.ls_user_id) is None


@pytest.mark.parametrize("fault", ["error_rate", "drop_rate"])
def test_a_write_that_fails_in_transit_is_not_resent(sandbox, fault):
    ws = shared(sandbox)[0]
    outsider = outsider_of(sandbox, ws)
    role = sandbox.org.role_by_name("WORKSPACE_VIEWER")
    setattr(sandbox.faults, fault, 1.0)
    with client_for(sandbox, sleep=RecordingSleep()) as client:
        error = expect_error(
            TransientError,
            lambda: client.add_workspace_member(ws.id, org_identity_id=outsider.id, role_id=role.id),
            keys=[sandbox.api_key],
            contains=[ws.id, WS_MEMBERS],
        )
        assert client.stats.retries == 0
    assert error.maybe_applied is True
    assert len(sandbox.requests_matching("POST")) == 1
    # The sandbox answered before applying: nothing changed (the caller must re-read to know).
    assert sandbox.org.membership(ws.id, outsider.ls_user_id) is None


def test_a_throttled_write_is_retried_and_applied_once(sandbox):
    ws = shared(sandbox)[0]
    outsider = outsider_of(sandbox, ws)
    role = sandbox.org.role_by_name("WORKSPACE_ADMIN")
    sandbox.faults.throttle_rate = 1.0
    sandbox.faults.retry_after_seconds = 2
    sleep = heal_after(sandbox, 1, throttle_rate=0.0)
    with client_for(sandbox, sleep=sleep) as client:
        created = client.add_workspace_member(ws.id, org_identity_id=outsider.id, role_id=role.id)
        assert client.stats.rate_limited == 1 and client.stats.retries == 1
    assert sleep.waits == [2.0]
    assert [e.status for e in sandbox.requests_matching("POST")] == [429, 200]
    assert sandbox.org.membership(ws.id, outsider.ls_user_id).id == created.id
    assert sum(1 for m in sandbox.org.memberships_of(outsider.ls_user_id) if m.workspace_id == ws.id) == 1


def _answer_once(sandbox, status):
    """``status`` once, before the API sees the request. 408: "Client took too long to send
    request" (LangSmith's Python SDK); 425: Too Early. LangChain's Python SDK (urllib3
    ``status_forcelist``, every method) and JS client (``STATUS_RETRYABLE``) retry both."""
    answered = []

    def once(respond, request):
        if not answered:
            answered.append(request.path)
            return ApiResponse(status, {"detail": "try again"})
        return respond(request)

    wrap_respond(sandbox, once)


@pytest.mark.parametrize("status", [408, 425])
def test_a_request_the_server_did_not_take_is_retried_on_a_read(sandbox, status):
    _answer_once(sandbox, status)
    sleep = RecordingSleep()
    with client_for(sandbox, sleep=sleep) as client:
        assert client.list_roles()
        assert client.stats.retries == 1
    assert len(sleep.waits) == 1 and 0 < sleep.waits[0] < 30
    assert [e.status for e in sandbox.requests_matching("GET", ROLES)] == [status, 200]


@pytest.mark.parametrize("status", [408, 425])
def test_a_request_the_server_did_not_take_is_retried_on_a_write_and_applied_once(sandbox, status):
    ws = shared(sandbox)[0]
    outsider = outsider_of(sandbox, ws)
    role = sandbox.org.role_by_name("WORKSPACE_ADMIN")
    _answer_once(sandbox, status)
    with client_for(sandbox, sleep=RecordingSleep()) as client:
        created = client.add_workspace_member(ws.id, org_identity_id=outsider.id, role_id=role.id)
        assert client.stats.retries == 1
    assert [e.status for e in sandbox.requests_matching("POST")] == [status, 200]
    assert sandbox.org.membership(ws.id, outsider.ls_user_id).id == created.id


def test_non_uuid_ids_are_refused_before_any_request(sandbox):
    ws = shared(sandbox)[0]
    good = str(uuid.uuid4())
    bad_values = ["not-a-uuid", "../../orgs/current/members", "", good + "/x"]
    with client_for(sandbox) as client:
        for bad in bad_values:
            calls = [
                lambda: client.add_workspace_member(bad, org_identity_id=good, role_id=good),
                lambda: client.add_workspace_member(ws.id, org_identity_id=bad, role_id=good),
                lambda: client.add_workspace_member(ws.id, org_identity_id=good, role_id=bad),
                lambda: client.set_workspace_member_role(bad, good, good),
                lambda: client.set_workspace_member_role(ws.id, bad, good),
                lambda: client.set_workspace_member_role(ws.id, good, bad),
                lambda: client.remove_workspace_member(bad, good),
                lambda: client.remove_workspace_member(ws.id, bad),
                lambda: client.list_workspace_members(bad),
                lambda: client.list_members_of_workspaces([ws.id, bad]),
                lambda: client.find_workspace_member(bad, good),
                lambda: client.find_workspace_member(ws.id, bad),
                lambda: client.find_org_member(ls_user_id=bad),
            ]
            for call in calls:
                with pytest.raises(ValueError, match="must be a UUID"):
                    call()
    assert len(sandbox.request_log) == 0


def test_a_sandbox_that_sends_totals_only_where_documented_is_read_exactly():
    """X-Pagination-Total only on the enriched route (as LangSmith's schemas document it): the
    other listings are read by overlapping pages, and the read equals the org."""
    with SandboxServer(generate_org(seed=3, members=1234, workspaces=6), pagination_totals="enriched-only") as sb:
        with client_for(sb) as client:
            everything = read_everything(client)
            active, enriched = client.list_org_members(), client.list_enriched_members()
        assert project_read(everything) == expected_from_org(sb.org)
        assert active.reported_total is None and enriched.reported_total == len(enriched)
        assert [o for o, _ in offsets_and_limits(sb, ACTIVE)][:3] == [0, 499, 998]


def test_a_removal_answered_200_with_an_empty_body_is_done(sandbox):
    # A DELETE may answer 204, or 200 with {} or null (langsmith-api.md); a proxy or another
    # version may send 200 with no body at all: still a success, never "not a LangSmith API".
    ws = shared(sandbox)[0]
    membership = insider_of(ws)

    def emptied(respond, request):
        answer = respond(request)
        if request.method == "DELETE" and answer.status == 200:
            return ApiResponse(200, headers={"Content-Length": "0"})
        return answer

    wrap_respond(sandbox, emptied)
    with client_for(sandbox) as client:
        assert client.remove_workspace_member(ws.id, membership.id) is None
    assert sandbox.org.membership(ws.id, membership.ls_user_id) is None

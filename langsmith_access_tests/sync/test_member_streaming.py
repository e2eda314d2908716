"""A sync streams the member listings into the raw tables: it never holds every member.

Each test runs the whole sync (sandbox over HTTP, Dagster job in-process, dbt on DuckDB) on an
org of 6,000 members. The client's record classes are replaced by subclasses that count their
live instances, and the sandbox notes that count every time it serves a page of a member
listing: how many member records the sync has parsed and still holds. A sync that kept every
record until the load holds a growing share of the org while it reads, and fails here.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import duckdb
import pytest

from langsmith_access.langsmith import LangSmithClient, records
from langsmith_access.langsmith import client as client_module
from langsmith_access.langsmith.client import PAGE_SIZE
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.settings import ClientSettings, Secret
from langsmith_access.store.raw_rows import RawTableAppender
from langsmith_access.store.schema import ensure_schema
from langsmith_access.sync.extract import PER_WORKSPACE_ROUTE, load_members
from langsmith_access_tests.helpers import (
    actual_workspace_grants,
    expected_workspace_grants,
    listings_read_before_the_members,
    point_at,
    query,
    run_sync,
)
from langsmith_access_tests.reliability.tampering_proxy import Answer, TamperingProxy

CONCURRENCY = 2
# What a reading client may hold at once, whatever the org's size: the pages in flight (read
# ahead, or one per workspace read at the same time), the page being written, and the one a
# reading thread still refers to while it parses the next.
HELD_PAGES = CONCURRENCY + 2
MEMBERS = 6_000  # 13 pages of enriched members, 12 pages of active members
ENRICHED = "/api/v1/platform/orgs/current/members"
ACTIVE = "/api/v1/orgs/current/members/active"
WORKSPACE_ACTIVE = "/api/v1/workspaces/current/members/active"


@pytest.fixture(scope="module")
def org():
    return generate_org(seed=21, members=MEMBERS, workspaces=12)


def counted(monkeypatch, record_type: type) -> tuple[type, list, list]:
    """Make the client parse ``record_type`` rows into a subclass that notes each instance made
    and freed (list appends: atomic across threads). Returns (subclass, made, freed)."""
    made: list[None] = []
    freed: list[None] = []

    class Counted(record_type):  # type: ignore[misc, valid-type]
        __slots__ = ()

        def __new__(cls, *args, **kwargs):
            made.append(None)
            return super().__new__(cls)

        def __del__(self):
            freed.append(None)

    monkeypatch.setattr(client_module, record_type.__name__, Counted)
    return Counted, made, freed


def note_held(sandbox: SandboxServer, route_suffix: str, made: list, freed: list) -> list[int]:
    """Make the sandbox note, before serving each GET of that route, how many counted records
    are alive. Returns the list it appends to."""
    samples: list[int] = []
    for route in sandbox.api.routes:
        if route.method == "GET" and route.template.endswith(route_suffix):
            serve = route.handler

            def noting(*args, _serve=serve, **kwargs):
                samples.append(len(made) - len(freed))
                return _serve(*args, **kwargs)

            route.handler = noting
    return samples


def members_loaded(client: LangSmithClient, org, path):
    """``load_members`` with ``client`` (closed after) into a new raw database at ``path``, after
    the listings a sync reads first: what the read says, and the memberships it left (workspace,
    user, workspace identity, role, and the route each came from)."""
    with client, duckdb.connect(str(path)) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, org)
        read = load_members(client, conn, sync_id="sync-1",
                            shared_workspace_ids=[w.id for w in org.shared_workspaces()])
        memberships = conn.execute(
            "SELECT workspace_id, ls_user_id, workspace_identity_id, role_id, source "
            "FROM raw.workspace_memberships").fetchall()
    return read, memberships


def test_the_enriched_route_holds_a_few_pages_even_when_the_listing_moves(monkeypatch, tmp_path, org):
    database = tmp_path / "access.duckdb"
    expected_users = {m.ls_user_id for m in org.active_members()}
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        monkeypatch.setenv("LANGSMITH_ACCESS_MAX_CONCURRENCY", str(CONCURRENCY))
        _, made, freed = counted(monkeypatch, records.EnrichedMember)
        held = note_held(sandbox, "/platform/orgs/current/members", made, freed)
        # Two people join while the listing is read: it moves, and is read again from page one.
        sandbox.faults.page_drift_members = 2
        outcome = run_sync()
        log = sandbox.request_log.snapshot()
        joined = {m.ls_user_id for m in org.active_members()} - expected_users
    assert outcome.success, outcome.failure

    first_pages = [e for e in log if e.path == ENRICHED and e.query.get("offset") == ["0"]]
    assert len(first_pages) >= 2, "the drift should have made the sync read the listing again"
    assert len(held) >= 2 * MEMBERS // PAGE_SIZE
    assert len(made) > 2 * MEMBERS  # the counting saw every record parsed, in every scan
    assert max(held) <= HELD_PAGES * PAGE_SIZE, held

    # What a scan that was read again had written was taken back: every member once, the
    # newcomers included, and every grant.
    users = [r[0] for r in query(database, "SELECT user_id FROM main.users")]
    assert len(users) == len(set(users)) == len(expected_users) + len(joined) == MEMBERS + 2
    assert set(users) == expected_users | joined
    assert actual_workspace_grants(database) == expected_workspace_grants(org)


def test_the_per_workspace_route_holds_a_few_pages_of_members_and_memberships(monkeypatch, tmp_path, org):
    database = tmp_path / "access.duckdb"
    with SandboxServer(org, enriched_route=False) as sandbox:
        point_at(monkeypatch, sandbox, database)
        monkeypatch.setenv("LANGSMITH_ACCESS_MAX_CONCURRENCY", str(CONCURRENCY))
        _, members_made, members_freed = counted(monkeypatch, records.OrgMember)
        held_members = note_held(sandbox, "/orgs/current/members/active", members_made, members_freed)
        _, made, freed = counted(monkeypatch, records.WorkspaceMember)
        held_memberships = note_held(sandbox, "/workspaces/current/members/active", made, freed)
        outcome = run_sync()
        log = sandbox.request_log.snapshot()
    assert outcome.success, outcome.failure

    assert len(held_members) == Counter(e.path for e in log)[ACTIVE] > MEMBERS // PAGE_SIZE
    assert len(members_made) >= MEMBERS
    assert max(held_members) <= HELD_PAGES * PAGE_SIZE, held_members
    grants = expected_workspace_grants(org)
    assert len(grants) > 5 * HELD_PAGES * PAGE_SIZE
    assert len(held_memberships) == Counter(e.path for e in log)[WORKSPACE_ACTIVE]
    assert len(made) >= len(grants)
    assert max(held_memberships) <= HELD_PAGES * PAGE_SIZE, held_memberships

    assert {r[0] for r in query(database, "SELECT user_id FROM main.users")} == {
        m.ls_user_id for m in org.active_members()
    }
    assert actual_workspace_grants(database) == grants


def test_a_partial_enriched_answer_costs_one_call_and_leaves_nothing_behind(tmp_path):
    """A key without organization:manage: the enriched route's first page says it did not list
    every workspace, the reading stops there (not after the whole listing), and the tables hold
    exactly what the per-workspace route read."""
    org = generate_org(seed=5, members=1_600, workspaces=6)  # 4 pages of enriched members
    with SandboxServer(org, key_role="org-user") as sandbox:
        client = LangSmithClient(
            ClientSettings(api_key=Secret(sandbox.api_key), organization_id=sandbox.organization_id,
                           endpoint=sandbox.url)
        )
        with client, duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
            ensure_schema(conn)
            listings_read_before_the_members(conn, org)
            # Rows of an earlier sync, which the load replaces.
            conn.execute("INSERT INTO raw.workspace_memberships (workspace_id) VALUES ('stale')")
            read = load_members(
                client, conn, sync_id="sync-1",
                shared_workspace_ids=[w.id for w in org.shared_workspaces()], batch_rows=700,
            )
            users = conn.execute("SELECT ls_user_id FROM raw.org_members").fetchall()
            memberships = conn.execute(
                "SELECT workspace_id, ls_user_id, workspace_identity_id, role_id, source "
                "FROM raw.workspace_memberships").fetchall()
        log = sandbox.request_log.snapshot()

    assert [e.path for e in log].count(ENRICHED) == 1
    assert read.route == PER_WORKSPACE_ROUTE and "X-Members-List-All-Workspaces" in read.route_reason
    assert sorted(u for (u,) in users) == sorted(m.ls_user_id for m in org.active_members())
    assert len(memberships) == len(set(memberships))
    assert {row[:4] for row in memberships} == set(org.workspace_membership_rows(shared_only=True))
    assert {row[4] for row in memberships} == {PER_WORKSPACE_ROUTE}


def test_a_later_enriched_page_that_lists_only_some_workspaces_is_not_trusted_either(tmp_path):
    """The key loses organization:manage while the enriched route is read: its first page lists
    every workspace, its second says it did not (``X-Members-List-All-Workspaces: false``).
    Every page is checked, not the first alone: the second page's people would otherwise lose
    the grants it left out. The sync reads each workspace instead, and nothing of the enriched
    pages stays."""
    org = generate_org(seed=5, members=1_100, workspaces=6)  # 3 pages of enriched members
    said: list[str] = []
    with SandboxServer(org) as sandbox:
        serve = sandbox.respond

        def demoted_after_the_first_page(request):
            response = serve(request)
            if request.path == ENRICHED:
                said.append(response.headers.get("X-Members-List-All-Workspaces"))
                sandbox.api.key_role = "org-user"  # no organization:manage from now on
            return response

        sandbox.respond = demoted_after_the_first_page  # type: ignore[method-assign]
        client = LangSmithClient(ClientSettings(
            api_key=Secret(sandbox.api_key), organization_id=sandbox.organization_id, endpoint=sandbox.url,
            max_concurrency=1,  # one page at a time: the second is read after the demotion
        ))
        read, memberships = members_loaded(client, org, tmp_path / "scratch.duckdb")

    assert said == ["true", "false"]  # the reading stopped at the page that said so
    assert read.route == PER_WORKSPACE_ROUTE and "X-Members-List-All-Workspaces: false" in read.route_reason
    assert sorted(row[:4] for row in memberships) == sorted(org.workspace_membership_rows(shared_only=True))
    assert {row[4] for row in memberships} == {PER_WORKSPACE_ROUTE}


def test_an_enriched_listing_that_breaks_off_leaves_nothing_behind_for_the_per_workspace_route(tmp_path):
    """The enriched route's second page does not parse: the sync reads each workspace instead,
    and what the first page delivered (memberships of personal and deleted workspaces too,
    which the per-workspace route never reads) is gone from the raw tables."""
    org = generate_org(seed=5, members=520, workspaces=4)  # 2 pages of enriched members

    def second_page_garbled(answer: Answer) -> Answer:
        if answer.path == ENRICHED and answer.query.get("offset") == [str(PAGE_SIZE)]:
            return answer.replace(body=answer.body[: len(answer.body) // 2])
        return answer

    with SandboxServer(org) as sandbox, TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = second_page_garbled
        client = LangSmithClient(ClientSettings(
            api_key=Secret(sandbox.api_key), organization_id=sandbox.organization_id, endpoint=proxy.url,
            max_retries=0,  # no retry to hide the garbled page behind a good one
        ))
        read, memberships = members_loaded(client, org, tmp_path / "scratch.duckdb")
    assert proxy.tampered and read.route == PER_WORKSPACE_ROUTE
    assert "does not parse as JSON" in read.route_reason
    assert sorted(row[:4] for row in memberships) == sorted(org.workspace_membership_rows(shared_only=True))
    assert {row[4] for row in memberships} == {PER_WORKSPACE_ROUTE}


def test_a_listing_read_again_takes_back_only_its_own_rows(tmp_path):
    """What a workspace's earlier scan wrote (held or already written) goes; other workspaces'
    rows stay."""
    with duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        memberships = RawTableAppender(conn, "workspace_memberships", batch_rows=4)

        def rows(workspace: str, count: int) -> list[dict]:
            return [{"workspace_id": workspace, "ls_user_id": f"{workspace}-user-{n}"} for n in range(count)]

        memberships.add(rows("ws-a", 4))  # written: over the batch size
        memberships.add(rows("ws-b", 2))  # held
        memberships.add(rows("ws-a", 1))  # held
        assert conn.execute("SELECT count(*) FROM raw.workspace_memberships").fetchone() == (4,)
        memberships.discard("workspace_id", "ws-a")  # ws-a's listing moved: read again
        memberships.add(rows("ws-a", 2))
        memberships.flush()
        stored = conn.execute(
            "SELECT workspace_id, ls_user_id FROM raw.workspace_memberships ORDER BY ALL").fetchall()
        with pytest.raises(ValueError, match="no column 'workspace'"):
            memberships.discard("workspace", "ws-a")
    assert stored == [("ws-a", "ws-a-user-0"), ("ws-a", "ws-a-user-1"),
                      ("ws-b", "ws-b-user-0"), ("ws-b", "ws-b-user-1")]


def test_rows_of_one_write_tagged_by_different_runs_each_keep_their_own_tag(tmp_path):
    """A tag (sync_id, fetched_at) is sent once only when every row holds that very object: rows
    of one batch tagged by different runs (or at different times) are each written with their own,
    never with the first row's (an event would be credited to the wrong run)."""
    earlier, later = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    with duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        events = RawTableAppender(conn, "audit_events", batch_rows=3)
        events.add([{"sync_id": "run-1", "fetched_at": earlier, "event_id": "e1"},
                    {"sync_id": "run-1", "fetched_at": earlier, "event_id": "e2"},
                    {"sync_id": "run-2", "fetched_at": later, "event_id": "e3"}])
        stored = conn.execute("SELECT event_id, sync_id, fetched_at FROM raw.audit_events ORDER BY 1").fetchall()
    assert stored == [("e1", "run-1", earlier), ("e2", "run-1", earlier), ("e3", "run-2", later)]

"""Pure parts of the sync: the guards, and the transforms on recorded payloads."""

import json
from datetime import datetime, timezone

import duckdb
import pytest

from langsmith_access.langsmith import EnrichedMember, LoginMethod, Role, Workspace, WorkspaceMember
from langsmith_access.langsmith.client import ANONYMITY_RESTRICTED_HEADER, LISTS_ALL_WORKSPACES_HEADER
from langsmith_access.store.schema import (
    ensure_schema,
    known_member_values,
    previous_sync,
    record_membership_read,
    workspaces_no_longer_shared,
)
from langsmith_access.sync.extract import (
    ENRICHED_ROUTE,
    PER_WORKSPACE_ROUTE,
    ListingReport,
    MemberCounts,
    RawMemberTables,
    count_members,
    first_rows,
    load_raw,
    login_methods_json,
    transform_enriched_members,
    transform_roles,
    transform_workspace_members,
    transform_workspaces,
)
from langsmith_access.sync.guards import check_completeness, check_shrink

AT = datetime(2026, 11, 28, tzinfo=timezone.utc)


def test_completeness_passes_only_when_every_listing_and_workspace_was_read():
    good = [ListingReport("org_members", 1200, 1200, 3, 1), ListingReport("pending", 4, None, 1, 1)]
    assert check_completeness(good, 10, 10).passed
    short = check_completeness([ListingReport("org_members", 1199, 1200, 3, 1)], 10, 10)
    assert not short.passed and "org_members: read 1199 rows, server reported 1200" in short.description
    missing = check_completeness(good, 10, 9)
    assert not missing.passed and "9 of 10 shared workspaces" in missing.description


def test_shrink_guard():
    previous = {"sync_id": "s1", "users": 100, "workspace_grants": 1000}
    assert check_shrink(None, 0, 0).passed  # first sync
    assert check_shrink(previous, 80, 800).passed  # exactly 20% is allowed
    blocked = check_shrink(previous, 79, 1000)
    assert not blocked.passed
    assert "users fell from 100 to 79 (21%)" in blocked.description and "--accept-shrink" in blocked.description
    # The operator in the Dagster UI sets it in the Launchpad, where the CLI's flag is no help.
    assert "in the Launchpad ops.raw_members.config.accept_shrink: true" in blocked.description
    assert not check_shrink(previous, 100, 0).passed  # an emptied org is the outage case
    assert check_shrink(previous, 100, 0, accept_shrink=True).passed
    assert check_shrink(previous, 50, 1000, max_shrink_share=0.6).passed
    # Never rounded down to the allowed share, which is shown as set.
    just_over = check_shrink(previous, 100, 799)
    assert "fell from 1000 to 799 (20.1%), more than the allowed 20% since" in just_over.description
    assert "(25%), more than the allowed 12.5% " in check_shrink(previous, 75, 1000, max_shrink_share=0.125).description
    with pytest.raises(ValueError):
        check_shrink(previous, 1, 1, max_shrink_share=2)
    # Workspaces no longer listed as shared are named where the workspace grants dropped.
    gone = [(f"ws{n}", 10) for n in range(7)]
    named = check_shrink(previous, 100, 500, workspaces_gone=gone)
    assert not named.passed and "7 workspace(s) shared at that sync are no longer listed" in named.description
    assert "'ws0' (10 grants)" in named.description and "and 2 more" in named.description
    assert named.metadata["workspaces_gone"] == [name for name, _ in gone]
    assert "'ws0'" in check_shrink(previous, 100, 500, accept_shrink=True, workspaces_gone=gone).description
    assert "no longer listed" not in check_shrink(previous, 50, 1000, workspaces_gone=gone).description


def test_the_guard_counts_the_workspace_grants_the_tool_itself_revoked_since_the_last_sync():
    conn = duckdb.connect()
    ensure_schema(conn)
    conn.execute("INSERT INTO main.sync_runs (sync_id, started_at, finished_at, status, users, workspace_grants) "
                 "VALUES ('s1', now(), now(), 'succeeded', 30, 37)")
    # Before the first build there is no grants table: the sync's own count.
    assert previous_sync(conn) == {"sync_id": "s1", "users": 30, "workspace_grants": 37}
    # An access review's 12 revokes, applied, verified and rebuilt into grants by provisioning.
    conn.execute("CREATE TABLE main.grants AS SELECT 'workspace_role' AS entitlement_type FROM range(25) "
                 "UNION ALL SELECT 'organization_role' FROM range(30)")
    previous = previous_sync(conn)
    assert previous == {"sync_id": "s1", "users": 30, "workspace_grants": 25}
    assert check_shrink(previous, 30, 25).passed
    assert not check_shrink(previous, 30, 19).passed  # an outage still looks like one


def test_the_guard_compares_with_the_latest_sync_that_succeeded_never_a_failed_one_nor_an_inventory():
    conn = duckdb.connect()
    ensure_schema(conn)
    runs = [  # sync_id, finished (hours after AT), status, job (null: a row from before jobs were recorded), users
        ("old", 1, "succeeded", None, 10), ("sync", 2, "succeeded", "langsmith_access_sync", 20),
        ("failed", 3, "failed", "langsmith_access_sync", 1), ("inventory", 4, "succeeded", "langsmith_access_inventory", 2)]
    for sync_id, hours, status, job, users in runs:
        conn.execute("INSERT INTO main.sync_runs (sync_id, started_at, finished_at, status, job, users, workspace_grants) "
                     "VALUES (?, ?, ? + to_hours(?), ?, ?, ?, 5)", [sync_id, AT, AT, hours, status, job, users])
    assert previous_sync(conn) == {"sync_id": "sync", "users": 20, "workspace_grants": 5}
    conn.execute("DELETE FROM main.sync_runs WHERE sync_id = 'sync'")
    assert previous_sync(conn) == {"sync_id": "old", "users": 10, "workspace_grants": 5}


def test_the_workspaces_a_drop_may_come_from_are_the_shared_ones_this_listing_no_longer_shares():
    conn = duckdb.connect()
    ensure_schema(conn)
    conn.execute("CREATE TABLE main.workspaces AS SELECT * FROM (VALUES ('w1', 'Kept'), ('w2', 'Personal now'), "
                 "('w3', 'Deleted'), ('w4', 'Gone')) AS t(workspace_id, display_name)")
    assert workspaces_no_longer_shared(conn) == []  # a build cut short before main.grants: no answer, no error
    conn.execute("CREATE TABLE main.grants AS SELECT * FROM (VALUES ('g1', 'w1'), ('g2', 'w2'), ('g3', 'w3'), "
                 "('g4', 'w3'), ('g5', NULL)) AS t(grant_id, workspace_id)")
    conn.execute("ALTER TABLE main.grants ADD COLUMN entitlement_type VARCHAR DEFAULT 'workspace_role'")
    conn.execute("INSERT INTO raw.workspaces (workspace_id, is_personal, is_deleted) VALUES "
                 "('w1', false, false), ('w2', true, false), ('w3', false, true)")
    assert workspaces_no_longer_shared(conn) == [("Deleted", 2), ("Personal now", 1), ("Gone", 0)]  # most first


def test_each_sync_replaces_the_membership_read_on_file():
    conn = duckdb.connect()
    ensure_schema(conn)
    for sync_id, route in (("s1", "enriched_members"), ("s2", "workspace_members")):
        record_membership_read(conn, sync_id=sync_id, membership_route=route, route_reason=None,
                               anonymity_restricted=False, withheld_values_kept=3)
    assert conn.execute("SELECT sync_id, membership_route, withheld_values_kept FROM raw.membership_read").fetchall() == [
        ("s2", "workspace_members", 3)]


def test_enriched_transform_splits_members_invites_and_memberships():
    people = [
        EnrichedMember.from_api({
            "id": "org-identity-1", "ls_user_id": "user-1", "email": "Ada@Example.com",
            "display_name": "Ada", "is_pending": False, "is_disabled": True, "role_id": "org-user",
            "role_name": "Organization User", "created_at": "2026-01-01T00:00:00Z",
            "workspace_memberships": [
                {"workspace_id": "ws-1", "workspace_name": "One", "role_id": "viewer", "role_name": "Viewer"},
                {"workspace_id": "ws-personal", "workspace_name": "Mine", "role_id": "admin", "role_name": "Admin"},
            ],
        }),
        EnrichedMember.from_api({
            "id": "pending-1", "email": "new@example.com", "is_pending": True, "role_id": "org-user",
            "created_at": "2026-01-02T00:00:00Z",
            "workspace_memberships": [{"workspace_id": "ws-1", "role_id": "viewer"}],
        }),
        EnrichedMember.from_api({  # its workspaces not said: unknown, not none
            "id": "pending-2", "email": "other@example.com", "is_pending": True, "role_id": "org-user",
            "created_at": "2026-01-03T00:00:00Z", "workspace_memberships": [],
        }),
    ]
    rows = transform_enriched_members(people, "sync-1", AT)
    assert [r["ls_user_id"] for r in rows.org_members] == ["user-1"]
    assert rows.org_members[0]["is_disabled"] is True
    assert rows.org_members[0]["org_identity_id"] == "org-identity-1"
    assert [(r["invite_id"], r["workspace_ids"], r["workspace_role_id"]) for r in rows.pending_invites] == [
        ("pending-1", ["ws-1"], "viewer"), ("pending-2", None, None)]
    # The pending invite's workspace is not a membership; personal ones are kept raw for dbt.
    assert {(r["workspace_id"], r["ls_user_id"]) for r in rows.workspace_memberships} == {
        ("ws-1", "user-1"), ("ws-personal", "user-1")
    }
    assert all(r["sync_id"] == "sync-1" and r["fetched_at"] == AT for r in rows.workspace_memberships)


@pytest.mark.parametrize("shared_tag", [True, False], ids=["one tag object", "a tag per row"])
def test_load_raw_stores_every_value_whether_the_sync_tag_is_shared_or_not(tmp_path, shared_tag):
    """load_raw sends a column that holds one object in every row (the sync's tag) once, as a
    parameter; rows that differ there must still land exactly as given."""
    import duckdb

    from langsmith_access.store.raw_tables import RAW_SCHEMA, RAW_TABLES, create_table_sql
    from langsmith_access.sync.extract import load_raw

    tag = {"sync_id": "sync-1", "fetched_at": AT}
    rows = []
    for n in range(3):
        row_tag = tag if shared_tag else {"sync_id": f"sync-{n}", "fetched_at": AT.replace(hour=n)}
        rows.append({**row_tag, "workspace_id": f"ws-{n}", "ls_user_id": None if n == 2 else f"u-{n}",
                     "workspace_identity_id": None, "role_id": "r-1", "role_name": "Editor",
                     "source": ENRICHED_ROUTE})
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        conn.execute(f"CREATE SCHEMA {RAW_SCHEMA}")
        for table in RAW_TABLES:
            conn.execute(create_table_sql(table))
        conn.execute(f"INSERT INTO {RAW_SCHEMA}.workspace_memberships (workspace_id) VALUES ('stale')")
        assert load_raw(conn, "workspace_memberships", rows) == 3
        stored = conn.execute(f"""
            SELECT sync_id, fetched_at, workspace_id, ls_user_id, role_name, source
            FROM {RAW_SCHEMA}.workspace_memberships ORDER BY workspace_id""").fetchall()
    assert stored == [
        (row["sync_id"], row["fetched_at"], row["workspace_id"], row["ls_user_id"], "Editor",
         ENRICHED_ROUTE)
        for row in rows
    ]


def test_a_previous_sync_with_nothing_to_lose_never_blocks_nor_divides_by_zero():
    # An org whose last sync had no workspace grants (no shared workspace yet): nothing can shrink.
    previous = {"sync_id": "s1", "users": 3, "workspace_grants": 0}
    result = check_shrink(previous, 3, 0)
    assert result.passed and result.metadata["previous_workspace_grants"] == 0


def test_the_allowed_shrink_share_may_be_anything_from_none_to_all():
    previous = {"sync_id": "s1", "users": 100, "workspace_grants": 1000}
    assert check_shrink(previous, 0, 0, max_shrink_share=1).passed  # 1: any shrink allowed
    assert not check_shrink(previous, 99, 1000, max_shrink_share=0).passed  # 0: none allowed
    assert check_shrink(previous, 100, 1000, max_shrink_share=0).passed
    with pytest.raises(ValueError, match="between 0 and 1"):
        check_shrink(previous, 100, 1000, max_shrink_share=-0.1)


def test_a_listing_longer_than_the_total_the_server_reported_is_incomplete_too():
    # More rows than reported: rows were read twice, or the listing moved; either way not trusted.
    longer = check_completeness([ListingReport("org_members", 1201, 1200, 3, 1)], 1, 1)
    assert not longer.passed and "read 1201 rows, server reported 1200" in longer.description


def test_the_known_values_of_a_page_of_members_are_those_of_its_members_only():
    # A page's members only: the members route is read page by page, never the whole org at once.
    conn = duckdb.connect()
    ensure_schema(conn)
    assert known_member_values(conn) == {}  # before the first sync
    conn.execute("CREATE TABLE main.users AS SELECT * FROM (VALUES ('u1', 'a@x.io', 'Ada', 'A'), "
                 "('u2', 'b@x.io', NULL, 'B')) AS t(user_id, email, full_name, display_name)")
    assert known_member_values(conn, ["u2", "u9"]) == {"u2": {"email": "b@x.io", "full_name": None, "display_name": "B"}}
    assert known_member_values(conn, []) == {}
    assert set(known_member_values(conn)) == {"u1", "u2"}


def test_withheld_values_are_put_back_but_values_the_answer_gives_are_never_replaced():
    from langsmith_access.sync.extract import keep_withheld_values

    rows = [  # someone first seen comes first: the people after them are still put back
        {"ls_user_id": "u3", "email": None, "full_name": None, "display_name": None},  # first seen
        {"ls_user_id": "u1", "email": None, "full_name": None, "display_name": "Ada L."},
        {"ls_user_id": "u2", "email": "new@example.com", "full_name": None, "display_name": None},
    ]
    known = {
        "u1": {"email": "ada@example.com", "full_name": "Ada Lovelace", "display_name": "Ada"},
        "u2": {"email": "old@example.com", "full_name": None, "display_name": "Bob"},
    }
    assert keep_withheld_values(rows, known) == 3
    assert rows == [
        {"ls_user_id": "u3", "email": None, "full_name": None, "display_name": None},
        {"ls_user_id": "u1", "email": "ada@example.com", "full_name": "Ada Lovelace", "display_name": "Ada L."},
        {"ls_user_id": "u2", "email": "new@example.com", "full_name": None, "display_name": "Bob"},
    ]


def withheld(n: int) -> EnrichedMember:
    """Enriched member ``user-{n}``, whose email and names the org's anonymity setting withheld."""
    return EnrichedMember.from_api({
        "id": f"org-identity-{n}", "ls_user_id": f"user-{n}", "email": None, "display_name": None,
        "is_pending": False, "is_disabled": False, "role_id": "org-user", "created_at": "2026-01-01T00:00:00Z",
        "workspace_memberships": []})


def member_tables_after_a_sync_that_knew_ada(conn) -> RawMemberTables:
    """Raw member tables for a sync whose previous one knew user-1 as Ada (email and both names:
    the three values an anonymity-restricted answer withholds and the sync puts back)."""
    ensure_schema(conn)
    conn.execute("CREATE TABLE main.users AS SELECT 'user-1' AS user_id, 'ada@example.com' AS email, "
                 "'Ada Lovelace' AS full_name, 'Ada' AS display_name")
    return RawMemberTables(conn, "sync-1", AT)


def test_an_enriched_listing_read_again_says_what_its_last_scan_said_of_anonymity(tmp_path):
    """The enriched listing moved while it was read and is read again: its first scan's
    restricted answer is taken back with that scan's rows, so the sync records what the scan it
    kept said (not restricted: no value was withheld, none was put back)."""
    person = withheld(1)
    with duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        tables = member_tables_after_a_sync_that_knew_ada(conn)
        sink = tables.enriched_sink(None)  # type: ignore[arg-type]  # the header says: no org info asked
        sink.begin_scan()
        sink.add_page([person], {LISTS_ALL_WORKSPACES_HEADER: "true", ANONYMITY_RESTRICTED_HEADER: "true"})
        assert (tables.anonymity_restricted, tables.withheld_values_kept) == (True, 3)
        sink.begin_scan()
        sink.add_page([person], {LISTS_ALL_WORKSPACES_HEADER: "true"})
        tables.flush()
        assert (tables.anonymity_restricted, tables.withheld_values_kept) == (False, 0)
        assert conn.execute("SELECT ls_user_id, email FROM raw.org_members").fetchall() == [("user-1", None)]


def test_an_enriched_listing_is_anonymity_restricted_when_any_page_of_its_scan_says_so(tmp_path):
    """Pages of one scan disagree (the org's anonymity setting changed while it was read): the
    first page is restricted, the second is not. The listing is restricted, whatever its last
    page said: the first page's withheld values were put back from the previous sync, and the
    sync must say so (its summary, ``sync_runs.anonymity_restricted``)."""
    with duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        tables = member_tables_after_a_sync_that_knew_ada(conn)
        sink = tables.enriched_sink(None)  # type: ignore[arg-type]  # the header says: no org info asked
        sink.begin_scan()
        sink.add_page([withheld(1)], {LISTS_ALL_WORKSPACES_HEADER: "true", ANONYMITY_RESTRICTED_HEADER: "true"})
        sink.add_page([withheld(2)], {LISTS_ALL_WORKSPACES_HEADER: "true", ANONYMITY_RESTRICTED_HEADER: "false"})
        tables.flush()
        assert (tables.anonymity_restricted, tables.withheld_values_kept) == (True, 3)
        assert conn.execute("SELECT ls_user_id, email FROM raw.org_members ORDER BY 1").fetchall() == [
            ("user-1", "ada@example.com"), ("user-2", None)]


@pytest.mark.parametrize("said", ["false", "False", " FALSE "])
def test_an_enriched_page_that_says_it_lists_only_some_workspaces_is_refused_however_spelled(said):
    from langsmith_access.langsmith.client import LISTS_ALL_WORKSPACES_HEADER
    from langsmith_access.sync.extract import NotEveryWorkspaceListed, require_every_workspace_listed

    class NoOrgInfo:  # the header decides: the org info must not be asked
        def organization_info(self):
            raise AssertionError("the org info was read although the header said")

    with pytest.raises(NotEveryWorkspaceListed) as refused:
        require_every_workspace_listed({LISTS_ALL_WORKSPACES_HEADER: said}, NoOrgInfo())  # type: ignore[arg-type]
    # The message says what to fix: it is the sync's error where the run asked for this route.
    assert str(refused.value).endswith(
        "the key lacks organization:manage; give it the Organization Admin role to read every workspace in one listing")
    require_every_workspace_listed({LISTS_ALL_WORKSPACES_HEADER: " True"}, NoOrgInfo())  # type: ignore[arg-type]


@pytest.mark.parametrize(("said", "restricted"), [("true", True), (" True ", True), ("TRUE", True),
                                                   ("false", False), ("", False), (None, False)])
def test_an_anonymity_restricted_answer_is_recognised_however_spelled(said, restricted):
    from langsmith_access.langsmith.client import ANONYMITY_RESTRICTED_HEADER
    from langsmith_access.sync.extract import answers_anonymity_restricted

    headers = {} if said is None else {ANONYMITY_RESTRICTED_HEADER: said}
    assert answers_anonymity_restricted(headers) is restricted


@pytest.mark.parametrize("headers", [{}, {"X-Members-List-All-Workspaces": ""},
                                     {"X-Members-List-All-Workspaces": "1"},
                                     {"X-Members-List-All-Workspaces": "yes"}])
@pytest.mark.parametrize(("permissions", "trusted"), [
    (("organization:manage", "organization:read"), True),
    (("organization:read",), False),
    (None, False),  # the org info does not say: not trusted either
])
def test_an_enriched_page_without_the_header_is_trusted_only_for_a_key_with_organization_manage(
        permissions, trusted, headers):
    # A value other than true or false (the spec's header is "true if caller has
    # organization:manage") says nothing either: it is not taken for true.
    from types import SimpleNamespace

    from langsmith_access.sync.extract import NotEveryWorkspaceListed, require_every_workspace_listed

    client = SimpleNamespace(organization_info=lambda: SimpleNamespace(permissions=permissions))
    if trusted:
        require_every_workspace_listed(headers, client)  # type: ignore[arg-type]
        return
    with pytest.raises(NotEveryWorkspaceListed) as refused:
        require_every_workspace_listed(headers, client)  # type: ignore[arg-type]
    assert ("does not say whether" in refused.value.why) is (permissions is None)
    assert str(refused.value).endswith("give it the Organization Admin role to read every workspace in one listing")


def test_completeness_metadata_counts_the_pages_and_the_scans_read_again():
    listings = [ListingReport("org_members", 1200, 1200, 3, 2), ListingReport("workspace_members:ws-1", 4, None, 1, 1)]
    result = check_completeness(listings, 1, 1)
    assert result.passed and result.description == "All 2 listings read completely (4 pages)"
    assert result.metadata == {"listings": 2, "pages": 4, "rescans": 1, "workspaces_expected": 1, "workspaces_read": 1}
    # More workspaces read than the sync set out to read is no complete read either.
    assert not check_completeness(listings, 1, 2).passed


def test_an_incomplete_read_names_at_most_ten_problems():
    listings = [ListingReport(f"workspace_members:ws-{n:02}", 0, 1, 1, 1) for n in range(12)]
    result = check_completeness(listings, 12, 12)
    assert not result.passed
    assert result.description.count("server reported 1") == 10
    assert "ws-09" in result.description and "ws-10" not in result.description


def test_an_incomplete_read_says_what_to_do_about_it():
    """The failed check, as the Dagster UI shows it: what is wrong, then what the operator does."""
    listings = [ListingReport("org_members", 99, 100, 1, 2)]
    for result in (check_completeness(listings, 1, 1), check_completeness([], 3, 2)):
        assert not result.passed
        assert "previous tables are kept" in result.description
        assert "run the sync again" in result.description and "langsmith-access doctor" in result.description


def test_the_shrink_guard_names_the_previous_sync_and_says_when_the_run_accepted_the_drop():
    previous = {"sync_id": "s1", "users": 100, "workspace_grants": 1000}
    blocked = check_shrink(previous, 50, 1000)
    assert "users fell from 100 to 50 (50%), more than the allowed 20% since sync s1." in blocked.description
    assert blocked.metadata["accepted_by_run_config"] is False
    accepted = check_shrink(previous, 50, 1000, accept_shrink=True)
    assert accepted.passed
    assert accepted.description == (
        "Accepted for this run: users fell from 100 to 50 (50%), more than the allowed 20% since sync s1")
    assert accepted.metadata["accepted_by_run_config"] is True
    # Five workspaces gone are all named, with nothing "more".
    five = [(f"ws{n}", 10) for n in range(5)]
    named = check_shrink(previous, 100, 500, workspaces_gone=five)
    assert named.description.split(". If this is real")[0].endswith(
        "(5 workspace(s) shared at that sync are no longer listed as shared, deleted or made personal: "
        + ", ".join(f"'ws{n}' (10 grants)" for n in range(5)) + ")")


def test_role_and_workspace_rows_keep_every_field_of_the_listing(tmp_path):
    roles = [
        Role.from_api({"id": "r-admin", "name": "ORGANIZATION_ADMIN", "display_name": "Organization Admin",
                       "description": "Full access.", "organization_id": None, "access_scope": "organization",
                       "permissions": ["organization:manage", "organization:read"]}),
        Role.from_api({"id": "r-auditor", "name": "CUSTOM", "display_name": "Deployment Auditor",
                       "description": "Reads deployments.", "organization_id": "org-1", "access_scope": "workspace",
                       "permissions": ["workspaces:read"], "is_restricted": True}),
    ]
    workspaces = [
        Workspace.from_api({"id": f"ws-{kind}", "display_name": kind.title(), "tenant_handle": f"h-{kind}",
                            "organization_id": "org-1", "created_at": "2026-01-01T00:00:00Z",
                            "is_personal": kind == "personal", "is_deleted": kind == "deleted"})
        for kind in ("shared", "personal", "deleted")
    ]
    with duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        assert load_raw(conn, "roles", transform_roles(roles, "sync-1", AT)) == 2
        assert load_raw(conn, "workspaces", transform_workspaces(workspaces, "sync-1", AT)) == 3
        stored_roles = conn.execute(
            "SELECT sync_id, fetched_at, role_id, name, display_name, description, access_scope, organization_id, "
            "permissions, is_restricted FROM raw.roles ORDER BY role_id").fetchall()
        stored_workspaces = conn.execute(
            "SELECT workspace_id, display_name, tenant_handle, is_personal, is_deleted, organization_id, created_at "
            "FROM raw.workspaces ORDER BY workspace_id").fetchall()
    assert stored_roles == [
        ("sync-1", AT, "r-admin", "ORGANIZATION_ADMIN", "Organization Admin", "Full access.", "organization", None,
         ["organization:manage", "organization:read"], None),
        ("sync-1", AT, "r-auditor", "CUSTOM", "Deployment Auditor", "Reads deployments.", "workspace", "org-1",
         ["workspaces:read"], True),
    ]
    created = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert stored_workspaces == [
        ("ws-deleted", "Deleted", "h-deleted", False, True, "org-1", created),
        ("ws-personal", "Personal", "h-personal", True, False, "org-1", created),
        ("ws-shared", "Shared", "h-shared", False, False, "org-1", created),
    ]


def test_member_counts_count_disabled_members_and_grants_of_shared_workspaces_only(tmp_path):
    workspaces = [
        Workspace.from_api({"id": f"ws-{kind}", "display_name": kind, "created_at": "2026-01-01T00:00:00Z",
                            "is_personal": kind == "personal", "is_deleted": kind == "deleted"})
        for kind in ("shared", "personal", "deleted")
    ]
    with duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        load_raw(conn, "workspaces", transform_workspaces(workspaces, "sync-1", AT))
        load_raw(conn, "org_members", [{"ls_user_id": "u1", "is_disabled": True},
                                       {"ls_user_id": "u2", "is_disabled": False},
                                       {"ls_user_id": "u3", "is_disabled": False}])
        load_raw(conn, "pending_invites", [{"invite_id": "p1"}])
        load_raw(conn, "workspace_memberships", [
            {"workspace_id": workspace, "ls_user_id": user}
            for workspace, user in (("ws-shared", "u1"), ("ws-shared", "u2"), ("ws-personal", "u2"),
                                    ("ws-deleted", "u3"), ("ws-deleted", "u1"))
        ])
        counts = count_members(conn)
    assert counts == MemberCounts(org_members=3, disabled=1, pending_invites=1, workspace_memberships=5,
                                  workspace_grants=2)


def test_a_load_that_fails_leaves_the_table_as_it_was_and_the_connection_usable(tmp_path):
    with duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        load_raw(conn, "pending_invites", [{"invite_id": "p1", "email": "kept@example.com"}])
        with pytest.raises(duckdb.Error):
            load_raw(conn, "pending_invites", [{"invite_id": "p2", "created_at": "not a time"}])
        assert conn.execute("SELECT invite_id, email FROM raw.pending_invites").fetchall() == [
            ("p1", "kept@example.com")]


def test_a_preview_reads_the_columns_asked_for_and_refuses_unknown_ones(tmp_path):
    with duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        load_raw(conn, "pending_invites", [{"invite_id": f"p{n}", "email": f"{n}@example.com"} for n in range(12)])
        assert len(first_rows(conn, "pending_invites", ["invite_id", "email"])) == 10
        assert first_rows(conn, "pending_invites", ["email"], limit=1)[0].keys() == {"email"}
        with pytest.raises(ValueError, match="raw.pending_invites has no column nickname"):
            first_rows(conn, "pending_invites", ["email", "nickname"])


def test_a_pending_invite_offers_the_first_workspace_role_it_names():
    # The enriched route may leave the role out of a pending invite's first workspace.
    invite = EnrichedMember.from_api({
        "id": "pending-1", "email": "new@example.com", "is_pending": True, "created_at": "2026-01-02T00:00:00Z",
        "workspace_memberships": [{"workspace_id": "ws-1"}, {"workspace_id": "ws-2", "role_id": "viewer"}],
    })
    [row] = transform_enriched_members([invite], "sync-1", AT).pending_invites
    assert (row["workspace_ids"], row["workspace_role_id"]) == (["ws-1", "ws-2"], "viewer")


def test_an_invite_offering_two_workspace_roles_offers_the_first():
    # Two workspaces, each with its own role: the invite's one workspace_role_id is the first named.
    invite = EnrichedMember.from_api({
        "id": "pending-1", "email": "new@example.com", "is_pending": True, "created_at": "2026-01-02T00:00:00Z",
        "workspace_memberships": [{"workspace_id": "ws-1", "role_id": "editor"},
                                  {"workspace_id": "ws-2", "role_id": "viewer"}],
    })
    [row] = transform_enriched_members([invite], "sync-1", AT).pending_invites
    assert (row["workspace_ids"], row["workspace_role_id"]) == (["ws-1", "ws-2"], "editor")


def test_each_membership_row_names_the_route_it_was_read_from():
    # raw.workspace_memberships.source is documented as the route of the row; the per-workspace
    # route's rows carry the workspace identity id, the enriched route's have none.
    member = WorkspaceMember(id="wi-1", workspace_id="ws-1", ls_user_id="user-1", email="ada@example.com",
                             full_name="Ada", is_disabled=False, role_id="viewer", role_name="Viewer",
                             org_role_id="org-user", created_at=AT)
    [per_workspace] = transform_workspace_members("ws-1", [member], "sync-1", AT)
    assert (per_workspace["source"], per_workspace["workspace_identity_id"]) == (PER_WORKSPACE_ROUTE, "wi-1")
    enriched = EnrichedMember.from_api({
        "id": "org-identity-1", "ls_user_id": "user-1", "email": "ada@example.com", "is_pending": False,
        "created_at": "2026-01-01T00:00:00Z", "workspace_memberships": [{"workspace_id": "ws-1", "role_id": "viewer"}],
    })
    [row] = transform_enriched_members([enriched], "sync-1", AT).workspace_memberships
    assert (row["source"], row["workspace_identity_id"]) == (ENRICHED_ROUTE, None)


def test_login_methods_keep_the_user_name_a_keys_creator_may_be_named_by():
    # credentials.created_by may be a login's user name at its provider (a GitHub handle): the
    # credentials model matches it against raw.org_members.login_methods.
    methods = [LoginMethod("supabase:non-sso", None, "AdaGH"), LoginMethod("email", "scim")]
    assert json.loads(login_methods_json(methods)) == [
        {"provider": "supabase:non-sso", "provisioning_method": None, "username": "AdaGH"},
        {"provider": "email", "provisioning_method": "scim", "username": None},
    ]


def test_a_lone_member_or_grant_lost_is_a_shrink_too():
    # Small orgs: one of one gone is 100%, as much an outage as an emptied big org.
    previous = {"sync_id": "s1", "users": 1, "workspace_grants": 1}
    blocked = check_shrink(previous, 0, 0)
    assert not blocked.passed
    assert "users fell from 1 to 0 (100%)" in blocked.description
    assert "workspace_grants fell from 1 to 0 (100%)" in blocked.description


def test_a_previous_sync_without_counts_is_compared_as_zero():
    # A succeeded sync_runs row may lack the counts (written by an older release): nothing to lose.
    previous = {"sync_id": "s0", "users": None, "workspace_grants": None}
    result = check_shrink(previous, 5, 7)
    assert result.passed
    assert (result.metadata["previous_users"], result.metadata["previous_workspace_grants"]) == (0, 0)


def test_a_shrink_names_five_workspaces_gone_and_counts_the_rest():
    previous = {"sync_id": "s1", "users": 100, "workspace_grants": 1000}
    six = [(f"ws{n}", 10) for n in range(6)]
    named = check_shrink(previous, 100, 500, workspaces_gone=six).description
    assert "'ws4' (10 grants) and 1 more)" in named and "'ws5'" not in named


def test_the_share_lost_is_counted_against_the_previous_count_itself():
    # A small org: 9 members to 7 is 22% lost, over the default 20%; 5 to 4 is exactly 20%.
    previous = {"sync_id": "s1", "users": 9, "workspace_grants": 5}
    blocked = check_shrink(previous, 7, 4)
    assert not blocked.passed and "users fell from 9 to 7 (22%)" in blocked.description
    assert "workspace_grants" not in blocked.description.split(", more than")[0]


def test_a_drop_just_past_the_allowed_share_of_a_large_org_shows_the_decimals_that_say_so():
    # One grant past 20% of 250,000 is 20.0004%: fewer decimals would show the allowed share
    # itself ("20.000%, more than the allowed 20%"), which reads as a guard that is wrong.
    previous = {"sync_id": "s1", "users": 100_000, "workspace_grants": 250_000}
    blocked = check_shrink(previous, 100_000, 199_999).description
    assert "workspace_grants fell from 250000 to 199999 (20.0004%), more than the allowed 20% " in blocked
    assert "(20.001%)" in check_shrink(previous, 79_999, 250_000).description


def test_a_drop_of_workspace_grants_with_no_workspace_gone_names_none():
    previous = {"sync_id": "s1", "users": 100, "workspace_grants": 1000}
    blocked = check_shrink(previous, 100, 500)
    assert not blocked.passed and "workspace(s)" not in blocked.description
    assert "workspaces_gone" not in blocked.metadata

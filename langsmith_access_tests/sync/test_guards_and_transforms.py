"""Pure parts of the sync: the guards, and the transforms on recorded payloads."""

from datetime import datetime, timezone

import duckdb
import pytest

from langsmith_access.langsmith import EnrichedMember
from langsmith_access.store.schema import ensure_schema, previous_sync
from langsmith_access.sync.extract import (
    ENRICHED_ROUTE,
    ListingReport,
    transform_enriched_members,
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
    assert not check_shrink(previous, 100, 0).passed  # an emptied org is the outage case
    assert check_shrink(previous, 100, 0, accept_shrink=True).passed
    assert check_shrink(previous, 50, 1000, max_shrink_share=0.6).passed
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


def test_withheld_values_are_put_back_but_values_the_answer_gives_are_never_replaced():
    from langsmith_access.sync.extract import keep_withheld_values

    rows = [
        {"ls_user_id": "u1", "email": None, "full_name": None, "display_name": "Ada L."},
        {"ls_user_id": "u2", "email": "new@example.com", "full_name": None, "display_name": None},
        {"ls_user_id": "u3", "email": None, "full_name": None, "display_name": None},  # first seen
    ]
    known = {
        "u1": {"email": "ada@example.com", "full_name": "Ada Lovelace", "display_name": "Ada"},
        "u2": {"email": "old@example.com", "full_name": None, "display_name": "Bob"},
    }
    assert keep_withheld_values(rows, known) == 3
    assert rows == [
        {"ls_user_id": "u1", "email": "ada@example.com", "full_name": "Ada Lovelace", "display_name": "Ada L."},
        {"ls_user_id": "u2", "email": "new@example.com", "full_name": None, "display_name": "Bob"},
        {"ls_user_id": "u3", "email": None, "full_name": None, "display_name": None},
    ]


@pytest.mark.parametrize("said", ["false", "False", " FALSE "])
def test_an_enriched_page_that_says_it_lists_only_some_workspaces_is_refused_however_spelled(said):
    from langsmith_access.langsmith.client import LISTS_ALL_WORKSPACES_HEADER
    from langsmith_access.sync.extract import NotEveryWorkspaceListed, require_every_workspace_listed

    class NoOrgInfo:  # the header decides: the org info must not be asked
        def organization_info(self):
            raise AssertionError("the org info was read although the header said")

    with pytest.raises(NotEveryWorkspaceListed):
        require_every_workspace_listed({LISTS_ALL_WORKSPACES_HEADER: said}, NoOrgInfo())  # type: ignore[arg-type]
    require_every_workspace_listed({LISTS_ALL_WORKSPACES_HEADER: " True"}, NoOrgInfo())  # type: ignore[arg-type]


@pytest.mark.parametrize(("permissions", "trusted"), [
    (("organization:manage", "organization:read"), True),
    (("organization:read",), False),
    (None, False),  # the org info does not say: not trusted either
])
def test_an_enriched_page_without_the_header_is_trusted_only_for_a_key_with_organization_manage(
        permissions, trusted):
    from types import SimpleNamespace

    from langsmith_access.sync.extract import NotEveryWorkspaceListed, require_every_workspace_listed

    client = SimpleNamespace(organization_info=lambda: SimpleNamespace(permissions=permissions))
    if trusted:
        require_every_workspace_listed({}, client)  # type: ignore[arg-type]
        return
    with pytest.raises(NotEveryWorkspaceListed) as refused:
        require_every_workspace_listed({}, client)  # type: ignore[arg-type]
    assert ("does not say whether" in refused.value.why) is (permissions is None)

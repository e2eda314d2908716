"""Which workspaces existed at a time T, under which name, and when they next stopped being
listed (``queries.WORKSPACES_AT_SQL`` over ``workspace_history``): cases a few real syncs do not
reach, on hand-made intervals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from langsmith_access.store.queries import WORKSPACES_AT_SQL, implicit_admin_access_at, resolve_workspace


def day(n: int) -> datetime:
    return datetime(2026, 3, n, tzinfo=UTC)


# (workspace, name, created_at, valid_from, valid_to): syncs on days 10, 12, 14, 16, 18.
INTERVALS = [
    ("renamed", "A", day(1), day(10), day(12)),  # renamed twice: A, B, C
    ("renamed", "B", day(1), day(12), day(14)),
    ("renamed", "C", day(1), day(14), None),
    ("restored", "R", day(1), day(10), day(12)),  # deleted (not listed on day 12), restored on 16
    ("restored", "R", day(1), day(16), None),
    ("deleted", "D", day(1), day(10), day(14)),  # not listed from day 14 on
    ("late", "L", day(11), day(12), None),  # created between two syncs
    ("undated", "U", None, day(10), None),  # LangSmith gave no created_at
    ("undated-late", "V", None, day(14), None),  # ... and first listed after the history began
]


@pytest.fixture(scope="module")
def conn():
    conn = duckdb.connect()
    conn.execute("CREATE TABLE main.workspace_history (workspace_id VARCHAR, display_name VARCHAR, "
                 "created_at TIMESTAMPTZ, valid_from TIMESTAMPTZ, valid_to TIMESTAMPTZ)")
    conn.executemany("INSERT INTO main.workspace_history VALUES (?, ?, ?, ?, ?)", INTERVALS)
    yield conn
    conn.close()


def at(conn, when: datetime) -> dict[str, tuple]:
    """workspace -> (name, existed, gone_at) at ``when``."""
    rows = conn.execute(f"SELECT workspace_id, display_name, existed, gone_at FROM ({WORKSPACES_AT_SQL})",
                        {"at": when}).fetchall()
    return {workspace: (name, existed, gone) for workspace, name, existed, gone in rows}


def test_before_the_history_began_a_workspace_existed_since_its_creation(conn):
    seen = at(conn, day(5))
    assert seen["renamed"] == ("A", True, None)  # its first name; the renames end nothing
    assert seen["restored"] == ("R", True, day(12))
    assert seen["deleted"] == ("D", True, day(14))
    assert seen["late"][1] is False  # created on day 11
    assert seen["undated"][:2] == ("U", True)
    assert seen["undated-late"][1] is False  # the history began without it: it came later


def test_names_follow_the_renames_and_a_boundary_belongs_to_the_next_interval(conn):
    assert at(conn, day(11))["renamed"][0] == "A"
    assert at(conn, day(12))["renamed"][0] == "B"  # valid_from <= T < valid_to
    assert at(conn, day(20))["renamed"] == ("C", True, None)


def test_a_deleted_then_restored_workspace_did_not_exist_in_between(conn):
    assert at(conn, day(11))["restored"] == ("R", True, day(12))
    assert at(conn, day(13))["restored"][1] is False
    assert at(conn, day(16))["restored"] == ("R", True, None)
    assert at(conn, day(13))["deleted"] == ("D", True, day(14))
    assert at(conn, day(14))["deleted"][1] is False
    assert at(conn, day(11))["late"] == ("L", True, None)  # created, not listed yet
    assert at(conn, day(13))["undated-late"][1] is False
    assert at(conn, day(14))["undated-late"][1] is True


def test_a_restored_workspace_is_dated_from_its_restoration(conn):
    def restored_at(when):
        return dict(conn.execute(f"SELECT workspace_id, restored_at FROM ({WORKSPACES_AT_SQL})",
                                 {"at": when}).fetchall())

    assert restored_at(day(11))["restored"] is None
    assert restored_at(day(17))["restored"] == day(16)
    assert restored_at(day(20))["renamed"] is None  # renames are no gap

    # An Organization Admin since day 1 holds the implicit Admin there from the restoration on.
    conn.execute("CREATE TABLE main.roles AS SELECT * FROM (VALUES ('org-admin', 'ORGANIZATION_ADMIN', "
                 "'Organization Admin'), ('admin', 'WORKSPACE_ADMIN', 'Admin')) AS r(role_id, name, display_name)")
    conn.execute("CREATE TABLE main.users (user_id VARCHAR, email VARCHAR)")
    conn.execute("CREATE TABLE main.grant_history AS SELECT 'g' AS grant_id, 'organization_role' AS entitlement_type, "
                 "'ada' AS user_id, 'ada@example.com' AS email, NULL AS workspace_id, 'org-admin' AS role_id, "
                 "'Organization Admin' AS role_name, ?::TIMESTAMPTZ AS valid_from, NULL::TIMESTAMPTZ AS valid_to",
                 [day(1)])
    try:
        since = {g.workspace_id: g.valid_from for g in implicit_admin_access_at(conn, day(17))}
        assert since["restored"] == day(16)
        assert since["renamed"] == day(1)
    finally:
        conn.execute("DROP TABLE main.roles; DROP TABLE main.users; DROP TABLE main.grant_history")


def test_an_organization_admin_demoted_holds_no_implicit_admin_from_the_demotion_on(conn):
    # bob was Organization Admin from day 1 until the sync of day 18 (valid_from <= T < valid_to).
    conn.execute("CREATE TABLE main.roles AS SELECT * FROM (VALUES ('org-admin', 'ORGANIZATION_ADMIN', "
                 "'Organization Admin'), ('admin', 'WORKSPACE_ADMIN', 'Admin')) AS r(role_id, name, display_name)")
    conn.execute("CREATE TABLE main.users (user_id VARCHAR, email VARCHAR)")
    conn.execute("CREATE TABLE main.grant_history AS SELECT 'g' AS grant_id, 'organization_role' AS entitlement_type, "
                 "'bob' AS user_id, 'bob@example.com' AS email, NULL AS workspace_id, 'org-admin' AS role_id, "
                 "'Organization Admin' AS role_name, ?::TIMESTAMPTZ AS valid_from, ?::TIMESTAMPTZ AS valid_to",
                 [day(1), day(18)])
    try:
        before = implicit_admin_access_at(conn, day(18) - timedelta(microseconds=1))
        assert {g.workspace_id for g in before} == {"renamed", "restored", "late", "undated", "undated-late"}
        assert {g.valid_to for g in before} == {day(18)}
        assert implicit_admin_access_at(conn, day(18)) == []
    finally:
        conn.execute("DROP TABLE main.roles; DROP TABLE main.users; DROP TABLE main.grant_history")


def test_a_name_given_to_another_workspace_since_means_at_a_past_time_the_one_that_bore_it():
    # "old" was Prod until day 14 (then "Prod (old)"); "new", created on day 15, is Prod since 16.
    conn = duckdb.connect()
    conn.execute("CREATE TABLE main.workspace_history (workspace_id VARCHAR, display_name VARCHAR, "
                 "tenant_handle VARCHAR, created_at TIMESTAMPTZ, valid_from TIMESTAMPTZ, valid_to TIMESTAMPTZ)")
    conn.executemany("INSERT INTO main.workspace_history VALUES (?, ?, NULL, ?, ?, ?)", [
        ("old", "Prod", day(1), day(10), day(14)),
        ("old", "Prod (old)", day(1), day(14), None),
        ("new", "Prod", day(15), day(16), None),
        ("gone", "Scratch", day(1), day(10), day(12)),
    ])
    conn.execute("CREATE TABLE main.workspaces AS SELECT workspace_id, display_name, tenant_handle, created_at "
                 "FROM main.workspace_history WHERE valid_to IS NULL")
    conn.execute("CREATE TABLE main.grant_history (workspace_id VARCHAR)")

    def resolve(name, when=None):
        return resolve_workspace(conn, name, past_names=True, at=when)

    assert resolve("Prod", day(11)) == "old"
    assert resolve("prod", day(11)) == "old"  # case-insensitive, as for current names
    assert resolve("Prod", day(5)) == "old"  # before the history: its first recorded name
    assert resolve("Prod", day(17)) == "new"
    assert resolve("Prod") == "new"  # no time: today's name first
    assert resolve("Prod (old)", day(11)) == "old"  # not its name then, but no other's either
    assert resolve("Scratch", day(20)) == "gone"  # deleted since: a past name still finds it
    assert resolve_workspace(conn, "Prod", at=day(11)) == "new"  # past names not asked for

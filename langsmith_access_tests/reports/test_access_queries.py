"""``store.queries`` on a small hand-made analysts' database: who holds the implicit Admin, under
which names, since when, and how names a person typed are found: cases the three-sync history of
``support.py`` does not reach."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import duckdb
import pytest

from langsmith_access.store.queries import (
    LookupFailed,
    first_recorded_at,
    grants_held_at,
    implicit_admin_access_at,
    last_synced_at,
    resolve_user,
    resolve_workspace,
    user_history_began_at,
)


def day(n: int) -> datetime:
    return datetime(2026, 3, n, tzinfo=UTC)


# (workspace, name, created_at, valid_from, valid_to): syncs on days 10, 12, 14, 16, 21.
WORKSPACES = [
    ("ws-a", "Alpha", day(1), day(10), None),
    ("ws-e", "\u00c9quipe", day(1), day(10), None),  # stored composed
    ("ws-lower", "prod", day(1), day(10), None),
    ("ws-upper", "Prod", day(1), day(10), None),
    ("ws-gone", "Gone", day(1), day(10), day(12)),  # deleted; nobody was ever listed in it
    ("ws-back", "Back", day(1), day(10), day(12)),  # deleted, then restored on day 16
    ("ws-back", "Back", day(1), day(16), None),
    ("ws-late", "Late", day(20), day(21), None),  # created on day 20
]

# ada: Organization Admin, since renamed her email; bob: Organization User, disabled on day 16;
# carl: a past member (in grant_history only).
GRANTS = [
    ("g-ada", "organization_role", "ada", "ada@example.com", None, "org-admin", "Organization Admin", day(10), None),
    ("g-ada-a", "workspace_role", "ada", "ada@example.com", "ws-a", "editor", "Writer", day(10), None),
    ("g-bob", "organization_role", "bob", "bob@example.com", None, "org-user", "Organization User", day(10), None),
    ("g-carl", "organization_role", "carl", "carl@example.com", None, "org-user", "Organization User",
     day(10), day(12)),
]


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("queries") / "access.duckdb")
    with duckdb.connect(path) as conn:
        conn.execute("CREATE TABLE main.roles AS SELECT * FROM (VALUES "
                     "('org-admin', 'ORGANIZATION_ADMIN', 'Organization Admin'), "
                     "('org-user', 'ORGANIZATION_USER', 'Organization User'), "
                     "('admin', 'WORKSPACE_ADMIN', 'Admin'), ('editor', 'WORKSPACE_USER', 'Editor')) "
                     "AS r(role_id, name, display_name)")
        conn.execute("CREATE TABLE main.users AS SELECT * FROM (VALUES ('ada', 'ada.new@example.com'), "
                     "('bob', 'bob@example.com')) AS u(user_id, email)")
        conn.execute("CREATE TABLE main.workspace_history (workspace_id VARCHAR, display_name VARCHAR, "
                     "tenant_handle VARCHAR, created_at TIMESTAMPTZ, valid_from TIMESTAMPTZ, valid_to TIMESTAMPTZ)")
        conn.executemany("INSERT INTO main.workspace_history VALUES (?, ?, NULL, ?, ?, ?)", WORKSPACES)
        conn.execute("CREATE TABLE main.workspaces AS SELECT workspace_id, display_name, tenant_handle, created_at "
                     "FROM main.workspace_history WHERE valid_to IS NULL")
        conn.execute("CREATE TABLE main.grant_history (grant_id VARCHAR, entitlement_type VARCHAR, user_id VARCHAR, "
                     "email VARCHAR, workspace_id VARCHAR, role_id VARCHAR, role_name VARCHAR, "
                     "valid_from TIMESTAMPTZ, valid_to TIMESTAMPTZ)")
        conn.executemany("INSERT INTO main.grant_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", GRANTS)
        conn.execute("CREATE TABLE main.user_history (user_id VARCHAR, is_disabled BOOLEAN, "
                     "valid_from TIMESTAMPTZ, valid_to TIMESTAMPTZ)")
        conn.executemany("INSERT INTO main.user_history VALUES (?, ?, ?, ?)", [
            ("ada", False, day(10), None), ("bob", False, day(10), day(16)), ("bob", True, day(16), None)])
        conn.execute("CREATE TABLE main.sync_runs (sync_id VARCHAR, finished_at TIMESTAMPTZ, status VARCHAR)")
        conn.executemany("INSERT INTO main.sync_runs VALUES (?, ?, ?)", [
            ("s1", day(10), "succeeded"), ("s2", day(12), "succeeded"), ("s3", day(14), "failed")])
    return path


@pytest.fixture
def conn(database):
    with duckdb.connect(database, read_only=True) as conn:
        yield conn


def test_only_organization_admins_hold_the_implicit_admin(conn):
    implicit = implicit_admin_access_at(conn, day(17))
    assert {g.user_id for g in implicit} == {"ada"}  # bob is an Organization User
    assert {g.workspace_id for g in implicit} == {"ws-a", "ws-e", "ws-lower", "ws-upper", "ws-back"}
    assert {(g.role_id, g.source) for g in implicit} == {("admin", "organization_admin")}


def test_the_implicit_admin_narrowed_to_a_workspace_is_the_one_there(conn):
    [implicit] = implicit_admin_access_at(conn, day(17), workspace_id="ws-a")
    assert (implicit.user_id, implicit.workspace_id, implicit.workspace_name) == ("ada", "ws-a", "Alpha")


def test_the_implicit_admin_starts_with_the_workspace_created_or_restored_after_the_role(conn):
    since = {g.workspace_id: g.valid_from for g in implicit_admin_access_at(conn, day(22))}
    assert since["ws-late"] == day(20)  # created after ada became Organization Admin on day 10
    assert since["ws-a"] == day(10)
    # At the very instant of the restoration (valid_from <= T): dated from it.
    assert {g.workspace_id: g.valid_from for g in implicit_admin_access_at(conn, day(16))}["ws-back"] == day(16)


def test_without_workspace_history_a_workspace_created_after_the_time_asked_did_not_exist(tmp_path, database):
    older = tmp_path / "older.duckdb"
    shutil.copyfile(database, older)
    with duckdb.connect(str(older)) as conn:
        conn.execute("DROP TABLE main.workspace_history")
        assert {g.workspace_id for g in implicit_admin_access_at(conn, day(15))} == {
            "ws-a", "ws-e", "ws-lower", "ws-upper", "ws-back"}
        assert "ws-late" in {g.workspace_id for g in implicit_admin_access_at(conn, day(20))}
        # A workspace whose creation time the listing did not give: taken to have existed.
        conn.execute("UPDATE main.workspaces SET created_at = NULL WHERE workspace_id = 'ws-late'")
        assert "ws-late" in {g.workspace_id for g in implicit_admin_access_at(conn, day(15))}


def test_grants_carry_the_members_current_email_and_the_roles_current_name(conn):
    held = {g.grant_id: g for g in grants_held_at(conn, day(17), user_ids=["ada"])}
    assert {g.email for g in held.values()} == {"ada.new@example.com"}
    assert held["g-ada-a"].role_name == "Editor"  # renamed since the grant began ("Writer")
    assert {g.email for g in implicit_admin_access_at(conn, day(17), user_ids=["ada"])} == {"ada.new@example.com"}
    # A past member is named as the history recorded them.
    assert [(g.email, g.user_id) for g in grants_held_at(conn, day(11), user_ids=["carl"])] == [
        ("carl@example.com", "carl")]


def test_a_grant_of_a_role_deleted_since_keeps_the_name_the_history_recorded(tmp_path, database):
    # A custom role deleted from LangSmith is gone from main.roles: the grant held before still
    # says which role it was, as grant_history named it, not a blank.
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(database, copy)
    with duckdb.connect(str(copy)) as conn:
        conn.execute("INSERT INTO main.grant_history VALUES ('g-bob-a', 'workspace_role', 'bob', 'bob@example.com', "
                     "'ws-a', 'custom-gone', 'Auditor', ?, ?)", [day(10), day(12)])
        [grant] = grants_held_at(conn, day(11), user_ids=["bob"], workspace_id="ws-a")
    assert (grant.role_id, grant.role_name) == ("custom-gone", "Auditor")


def test_each_implicit_admin_has_a_grant_id_of_its_own(conn):
    # One per workspace, each its own row for whoever keys rows by grant_id (the CLI's --json).
    implicit = implicit_admin_access_at(conn, day(17))
    assert sorted(g.grant_id for g in implicit) == sorted(f"g-ada:{g.workspace_id}" for g in implicit)
    assert len({g.grant_id for g in implicit}) == len(implicit) == 5


def test_times_are_written_in_utc_whatever_the_sessions_time_zone(database):
    with duckdb.connect(database, read_only=True) as conn:
        conn.execute("SET TimeZone = 'America/New_York'")
        [grant] = grants_held_at(conn, day(17), user_ids=["bob"])
        assert grant.to_json()["valid_from"] == "2026-03-10T00:00:00Z"


def test_names_typed_with_spaces_or_decomposed_accents_and_past_members_are_found(conn):
    assert resolve_workspace(conn, "  Alpha \n") == "ws-a"
    assert resolve_workspace(conn, "E\u0301quipe") == "ws-e"  # typed decomposed, stored composed
    assert resolve_workspace(conn, "e\u0301quipe") == "ws-e"
    assert resolve_user(conn, "  CARL@example.com ") == ["carl"]  # left the org: in grant_history only
    assert resolve_user(conn, "ada.new@example.com") == ["ada"]


def test_a_user_id_names_that_one_user_in_any_spelling_of_its_uuid(tmp_path, database):
    dan = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(database, copy)
    with duckdb.connect(str(copy)) as conn:
        conn.execute("INSERT INTO main.users VALUES (?, 'dan@example.com')", [dan])
        assert resolve_user(conn, "bob") == ["bob"]
        assert resolve_user(conn, dan.upper()) == [dan]
        assert resolve_user(conn, "{" + dan.replace("-", "") + "}") == [dan]
        with pytest.raises(LookupFailed, match="no user with the email or user id 'nobody@example.com'"):
            resolve_user(conn, "nobody@example.com")


def test_a_workspace_id_names_that_workspace_in_any_spelling_of_its_uuid(tmp_path, database):
    team = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(database, copy)
    with duckdb.connect(str(copy)) as conn:
        conn.execute("INSERT INTO main.workspaces VALUES (?, 'Team', NULL, ?)", [team, day(1)])
        assert resolve_workspace(conn, team.upper()) == team
        assert resolve_workspace(conn, team.replace("-", "")) == team


def test_an_exact_name_wins_over_one_in_another_case(conn):
    assert resolve_workspace(conn, "Prod") == "ws-upper"
    assert resolve_workspace(conn, "prod") == "ws-lower"
    with pytest.raises(LookupFailed, match="2 workspaces are named 'PROD'"):
        resolve_workspace(conn, "PROD")


def test_a_deleted_workspace_nobody_was_listed_in_is_found_by_its_id_among_past_names(conn):
    assert resolve_workspace(conn, "ws-gone", past_names=True) == "ws-gone"
    with pytest.raises(LookupFailed, match="no workspace with the name or id 'ws-gone'"):
        resolve_workspace(conn, "ws-gone")


def test_a_deleted_workspace_someone_held_access_in_is_found_by_its_id_without_past_names(tmp_path, database):
    # Its grants are in grant_history: "who had access to <its id>" names it, history or not.
    older = tmp_path / "older.duckdb"
    shutil.copyfile(database, older)
    with duckdb.connect(str(older)) as conn:
        conn.execute("DROP TABLE main.workspace_history")
        conn.execute("INSERT INTO main.grant_history VALUES ('g-old', 'workspace_role', 'bob', 'bob@example.com', "
                     "'ws-old', 'editor', 'Editor', ?, ?)", [day(10), day(12)])
        assert resolve_workspace(conn, "ws-old") == "ws-old"
        assert resolve_workspace(conn, "ws-old", past_names=True) == "ws-old"


def test_workspaces_sharing_a_name_are_listed_oldest_first(tmp_path, database):
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(database, copy)
    with duckdb.connect(str(copy)) as conn:
        conn.executemany("INSERT INTO main.workspaces VALUES (?, 'Dup', ?, ?)",
                         [("ws-b", "newer", day(5)), ("ws-z", "older", day(1))])
        with pytest.raises(LookupFailed) as refused:
            resolve_workspace(conn, "Dup")
    assert str(refused.value).splitlines()[1:] == ["  ws-z  Dup (older)", "  ws-b  Dup (newer)"]


def test_when_the_history_and_the_syncs_began_and_ended(conn):
    assert first_recorded_at(conn) == day(10)
    assert user_history_began_at(conn) == day(10)  # bob's later interval is no beginning
    assert last_synced_at(conn) == day(12)  # the failed run of day 14 is no sync

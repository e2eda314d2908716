"""The access-review tables after real syncs, against expectations computed from the org."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from langsmith_access.sandbox.org_state import parse_timestamp
from langsmith_access_tests.reports.support import History, rows

REPORTS = (
    "report_privileged_access",
    "report_disabled_members_with_grants",
    "report_members_without_workspace",
    "report_workspaces_without_admin",
    "report_grant_changes",
    "report_custom_role_holders",
    "report_stale_pending_invites",
    "report_unused_access",
    "report_credential_hygiene",
    "report_implicit_admins",
    "report_unexplained_changes",
    "report_access_policy_reach",
)


def _role_name(history: History, role_id: str) -> str:
    return history.org.roles[role_id].name


def _shared_memberships(history: History):
    """(workspace_id, user_id, role_id) of every membership of a shared workspace."""
    return [(ws, user, role) for ws, user, _, role in history.org.workspace_membership_rows(shared_only=True)]


def test_reports_are_tables_in_main(history):
    tables = rows(history.database, """
        SELECT table_name, table_type FROM information_schema.tables
        WHERE table_schema = 'main' AND table_name LIKE 'report_%'""")
    assert {t["table_name"]: t["table_type"] for t in tables} == {
        name: "BASE TABLE" for name in REPORTS}


def test_privileged_access(history):
    org = history.org
    members = {m.ls_user_id: m for m in org.active_members()}
    workspace_names = {ws.id: ws.display_name for ws in org.shared_workspaces()}
    expected = {
        (m.ls_user_id, m.email, m.is_disabled, "organization", None, None, "Organization Admin")
        for m in members.values()
        if _role_name(history, m.org_role_id) == "ORGANIZATION_ADMIN"
    } | {
        (user, members[user].email, members[user].is_disabled, "workspace", ws, workspace_names[ws], "Admin")
        for ws, user, role in _shared_memberships(history)
        if _role_name(history, role) == "WORKSPACE_ADMIN"
    }
    actual = rows(history.database, "SELECT * FROM main.report_privileged_access")
    assert {
        (r["user_id"], r["email"], r["is_disabled"], r["scope"], r["workspace_id"],
         r["workspace_display_name"], r["role_name"])
        for r in actual
    } == expected
    assert len(actual) == len(expected)  # one row per (user, scope)
    promoted = history.changes.promoted[0]
    assert (promoted, "organization") in {(r["user_id"], r["scope"]) for r in actual}
    changed_ws, changed_user, _, _ = history.changes.role_changed
    assert (changed_user, changed_ws) in {(r["user_id"], r["workspace_id"]) for r in actual}
    # Every row is a grant of the right role.
    assert {r["grant_id"] for r in actual} <= {
        g["grant_id"] for g in rows(history.database, "SELECT grant_id FROM main.grants")}
    # Only core syncs ran: no inventory has read the access policies, and nothing fails for it.
    assert all(r["deny_policy_names"] == [] for r in actual)


def test_disabled_members_with_grants(history):
    org = history.org
    disabled = {m.ls_user_id: m for m in org.active_members() if m.is_disabled}
    expected = {
        (user, ws, org.roles[role].display_name, org.roles[disabled[user].org_role_id].display_name)
        for ws, user, role in _shared_memberships(history)
        if user in disabled
    }
    assert history.changes.disabled in {e[0] for e in expected}
    actual = rows(history.database, "SELECT * FROM main.report_disabled_members_with_grants")
    assert {
        (r["user_id"], r["workspace_id"], r["role_name"], r["org_role_name"]) for r in actual
    } == expected
    assert len(actual) == len(expected)
    for r in actual:
        assert r["member_workspace_grant_count"] == sum(1 for e in expected if e[0] == r["user_id"])


def test_members_without_workspace(history):
    org = history.org
    in_a_workspace = {user for _, user, _ in _shared_memberships(history)}
    expected = {
        (m.ls_user_id, m.email, _role_name(history, m.org_role_id) == "ORGANIZATION_ADMIN")
        for m in org.active_members()
        if not m.is_disabled and m.ls_user_id not in in_a_workspace
    }
    assert history.changes.loner in {e[0] for e in expected}
    actual = rows(history.database, "SELECT * FROM main.report_members_without_workspace")
    assert {(r["user_id"], r["email"], r["is_org_admin"]) for r in actual} == expected
    assert len(actual) == len(expected)


def test_workspaces_without_admin(history):
    org = history.org
    expected = {
        ws.id: len(ws.memberships)
        for ws in org.shared_workspaces()
        if not any(_role_name(history, m.role_id) == "WORKSPACE_ADMIN" for m in ws.memberships.values())
    }
    assert history.changes.without_admin in expected
    assert len(expected) < len(org.shared_workspaces())  # others keep their Admins
    actual = rows(history.database, "SELECT * FROM main.report_workspaces_without_admin")
    assert {r["workspace_id"]: r["member_count"] for r in actual} == expected


def test_custom_role_holders(history):
    org = history.org
    members = {m.ls_user_id: m for m in org.active_members()}
    custom = {role.id for role in org.custom_roles()}
    holders = {
        (role, user, ws) for ws, user, role in _shared_memberships(history) if role in custom
    }
    held = {role for role, _, _ in holders}
    expected = holders | {(role, None, None) for role in custom - held}
    assert history.changes.unused_custom_role in custom - held
    assert held, "the generated org has custom role holders"
    actual = rows(history.database, "SELECT * FROM main.report_custom_role_holders")
    assert {(r["role_id"], r["user_id"], r["workspace_id"]) for r in actual} == expected
    assert len(actual) == len(expected)
    for r in actual:
        assert r["role_name"] == org.roles[r["role_id"]].display_name
        assert r["holder_count"] == sum(1 for h in holders if h[0] == r["role_id"])
        assert r["permissions"] == ", ".join(sorted(set(org.roles[r["role_id"]].permissions)))
        if r["user_id"] is not None:
            assert r["email"] == members[r["user_id"]].email
            assert r["is_disabled"] == members[r["user_id"]].is_disabled


def test_stale_pending_invites(history):
    """Expected from the sandbox's invites and the clock around sync 3 (which read them), never
    from the pipeline's own pending_invites table."""
    org = history.org
    stale_after = timedelta(days=30)
    read_from, read_until = history.third_sync_window  # sync 3 read the invites in between
    invites = {i.id: i for i in org.pending_org_invites()}
    created = {i.id: datetime.fromtimestamp(parse_timestamp(i.created_at), timezone.utc)
               for i in invites.values()}
    # Stale whenever sync 3 read it / never stale; an invite crossing the threshold during the
    # sync's few seconds could be either (none does unless a run straddles that instant).
    always = {i for i, at in created.items() if at < read_from - stale_after}
    never = {i for i, at in created.items() if at >= read_until - stale_after}
    ages = {i: {(read_from - created[i]).days, (read_until - created[i]).days} for i in always}
    emails = {invites[i].email for i in always}
    assert "old.invite@example.com" in emails
    assert not emails & {"recent.invite@example.com", "brand.new@example.com"}
    assert {invites[i].email for i in never} >= {"recent.invite@example.com", "brand.new@example.com"}

    listed = rows(history.database, "SELECT invite_id FROM main.pending_invites")
    assert {r["invite_id"] for r in listed} == set(invites)
    actual = {r["invite_id"]: r for r in rows(history.database, "SELECT * FROM main.report_stale_pending_invites")}
    assert always <= set(actual) and not set(actual) & never
    assert set(actual) <= set(invites)
    for invite_id, row in actual.items():
        assert row["email"] == invites[invite_id].email
        assert row["created_at"] == created[invite_id]
        assert read_from <= row["synced_at"] <= read_until, "the age is measured when sync 3 read it"
        assert row["age_days"] in ages.get(invite_id, {(read_until - created[invite_id]).days})
        assert row["age_days"] >= 30 and row["stale_after_days"] == 30
        assert row["org_role_id"] == invites[invite_id].org_role_id


def test_report_models_are_in_the_reports_group():
    from langsmith_access.definitions import defs

    graph = defs().resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert {name: groups[f"main/{name}"] for name in REPORTS} == {name: "reports" for name in REPORTS}
    assert groups["main/grants"] == groups["main/grant_history"] == "transform"
    assert groups["snapshots/grants_snapshot"] == "transform"
    # The reports' schema tests are asset checks, like every dbt test.
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("main/report_grant_changes", "report_grant_changes_row_rules") in checks

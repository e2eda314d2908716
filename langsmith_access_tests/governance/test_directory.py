"""What the latest sync says about people (``store.directory``): who may approve in a workspace.

Against a copy of the synced template (real dbt tables), edited where a case needs a member the
generated org does not have (a disabled admin, two accounts sharing one email).
"""

from __future__ import annotations

import uuid

import pytest

from langsmith_access.store.database import AccessDatabase
from langsmith_access.store.directory import admin_emails, is_synced, member_standing, synced_roles
from langsmith_access_tests.helpers import copy_synced_database
from langsmith_access_tests.synced import new_org


@pytest.fixture
def directory(template, tmp_path):
    """A writable connection to a copy of the synced template, the org it was synced from, a
    shared workspace of a unique name and the org's role names by id."""
    database = AccessDatabase(copy_synced_database(template.path, tmp_path / "access.duckdb"))
    org = new_org()
    workspace = next(w for w in org.shared_workspaces() if len(org.workspaces_named(w.display_name)) == 1)
    role_name = {role.id: role.name for role in org.roles.values()}
    with database.connect() as conn:
        yield conn, org, workspace, role_name


def _admins(org, workspace, role_name, *, disabled=()):
    """The emails that may approve there, from the generated org: enabled Organization Admins
    and enabled holders of the built-in Admin role in ``workspace``."""
    return sorted(
        m.email for m in org.active_members()
        if not m.is_disabled and m.ls_user_id not in disabled and m.email
        and (role_name[m.org_role_id] == "ORGANIZATION_ADMIN"
             or (m.ls_user_id in workspace.memberships
                 and role_name[workspace.memberships[m.ls_user_id].role_id] == "WORKSPACE_ADMIN"))
    )


def test_admin_emails_are_the_enabled_admins_of_that_workspace_only(directory):
    conn, org, workspace, role_name = directory
    expected = _admins(org, workspace, role_name)
    # Admins of the other workspaces are no approvers here (the org has some that are not here).
    elsewhere = {m.email for w in org.shared_workspaces() if w.id != workspace.id
                 for uid, mm in w.memberships.items() if role_name[mm.role_id] == "WORKSPACE_ADMIN"
                 for m in org.active_members() if m.ls_user_id == uid}
    assert elsewhere - set(expected), "the generated org should have an admin of another workspace only"
    assert admin_emails(conn, workspace.id) == expected
    # A workspace Admin disabled since: no longer an approver.
    admin = next(uid for uid, mm in workspace.memberships.items() if role_name[mm.role_id] == "WORKSPACE_ADMIN"
                 and role_name[next(m for m in org.active_members() if m.ls_user_id == uid).org_role_id]
                 != "ORGANIZATION_ADMIN")
    conn.execute("UPDATE main.users SET is_disabled = true WHERE user_id = ?", [admin])
    assert admin_emails(conn, workspace.id) == _admins(org, workspace, role_name, disabled={admin})


def test_an_account_disabled_keeps_its_admin_roles_from_its_enabled_twin_with_the_same_email(directory):
    conn, org, workspace, role_name = directory
    members = [m for m in org.active_members() if not m.is_disabled]
    org_admin = next(m for m in members if role_name[m.org_role_id] == "ORGANIZATION_ADMIN")
    workspace_admin = next(
        m for m in members if role_name[m.org_role_id] != "ORGANIZATION_ADMIN"
        and m.ls_user_id in workspace.memberships
        and role_name[workspace.memberships[m.ls_user_id].role_id] == "WORKSPACE_ADMIN")
    plain_org_role = workspace_admin.org_role_id
    for admin in (org_admin, workspace_admin):
        # A second, enabled account with the same email, no admin role and no org identity id;
        # the admin's own account disabled.
        twin = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO main.users SELECT * REPLACE (? AS user_id, false AS is_disabled, "
            "? AS org_role_id, NULL AS org_identity_id) FROM main.users WHERE user_id = ?",
            [twin, plain_org_role, admin.ls_user_id])
        conn.execute("UPDATE main.users SET is_disabled = true WHERE user_id = ?", [admin.ls_user_id])
        standing = member_standing(conn, admin.email.upper(), workspace.id)
        assert sorted(standing.user_ids) == sorted([admin.ls_user_id, twin])
        assert standing.identity_ids == (admin.id,)  # the twin has none to name
        assert not standing.disabled  # one of them is enabled
        assert not standing.org_admin and not standing.workspace_admin, admin.email


def test_someone_the_sync_never_saw_is_no_member_and_not_disabled(directory):
    conn, _, workspace, _ = directory
    stranger = member_standing(conn, "nobody@example.com", workspace.id)
    assert not stranger.is_member and not stranger.disabled and not stranger.pending_invite
    assert stranger.identity_ids == () and not stranger.org_admin and not stranger.workspace_admin


def test_roles_of_both_scopes_are_listed_and_a_missing_table_is_not_synced(directory):
    conn, *_ = directory
    assert {role.access_scope for role in synced_roles(conn)} == {"organization", "workspace"}
    assert is_synced(conn)
    conn.execute("DROP TABLE main.grants")
    assert not is_synced(conn)


def test_an_admin_without_an_email_is_named_by_no_one(directory):
    # An account LangSmith lists without an email (a service account, say) cannot approve by
    # email: no None among the approvers' emails.
    conn, org, workspace, role_name = directory
    org_admin = next(m for m in org.active_members() if not m.is_disabled
                     and role_name[m.org_role_id] == "ORGANIZATION_ADMIN")
    conn.execute("UPDATE main.users SET email = NULL WHERE user_id = ?", [org_admin.ls_user_id])
    emails = admin_emails(conn, workspace.id)
    assert None not in emails and org_admin.email not in emails
    assert emails == [email for email in _admins(org, workspace, role_name) if email != org_admin.email]


def test_an_admin_of_another_workspace_only_is_no_workspace_admin_here(directory):
    # Workspace Admin is per workspace: Admin elsewhere gives no say over this one's grants.
    conn, org, workspace, role_name = directory
    org_admins = {m.ls_user_id for m in org.active_members() if role_name[m.org_role_id] == "ORGANIZATION_ADMIN"}
    elsewhere, there = next(
        (m, w) for w in org.shared_workspaces() if w.id != workspace.id
        for m in org.active_members() if not m.is_disabled and m.email and m.ls_user_id not in org_admins
        and m.ls_user_id in w.memberships and role_name[w.memberships[m.ls_user_id].role_id] == "WORKSPACE_ADMIN"
        and not (m.ls_user_id in workspace.memberships
                 and role_name[workspace.memberships[m.ls_user_id].role_id] == "WORKSPACE_ADMIN")
        and len([o for o in org.active_members() if o.email == m.email]) == 1)
    assert member_standing(conn, elsewhere.email, there.id).workspace_admin
    here = member_standing(conn, elsewhere.email, workspace.id)
    assert here.is_member and not here.workspace_admin and not here.org_admin


def test_a_pending_invite_is_found_by_its_email_in_any_case(directory):
    conn, _, workspace, _ = directory
    [(email,)] = conn.execute("SELECT email FROM main.pending_invites WHERE email IS NOT NULL "
                              "ORDER BY email LIMIT 1").fetchall()
    for spelling in (email, email.upper()):
        invited = member_standing(conn, spelling, workspace.id)
        assert invited.pending_invite and not invited.is_member, spelling

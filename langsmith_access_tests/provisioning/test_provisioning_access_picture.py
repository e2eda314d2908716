"""Provisioning knows the rest of the access picture (DESIGN.md section 9): a change to a member
SCIM provisions is applied with a warning that SCIM may overwrite it, and a revoke for an
Organization Admin settles saying Admin access remains through the organization role."""

import json

from langsmith_access.api import list_requests, provision, request_grant, request_revoke
from langsmith_access.provisioning.executor import ADMIN_ACCESS_REMAINS, SCIM_WARNING
from langsmith_access_tests.helpers import query


def provisioned_by(org, member, method):
    return any(m.provisioning_method == method for m in org.members[member.ls_user_id].linked_login_methods)


def events(database, request_id):
    return query(database.path,
                 'SELECT kind, detail FROM main.provisioning_events WHERE request_id = ? ORDER BY "at"',
                 [request_id])


def test_a_change_to_a_scim_managed_member_is_applied_with_a_warning(env):
    sandbox, org, database = env
    workspace = org.shared_workspaces()[0]
    outsiders = [m for m in org.active_members()
                 if m.ls_user_id not in workspace.memberships and not m.is_disabled]
    scim_member = next(m for m in outsiders if provisioned_by(org, m, "scim"))
    other = next(m for m in outsiders if not provisioned_by(org, m, "scim"))
    scim_request = request_grant(scim_member.ls_user_id, workspace.id, "Viewer")
    other_request = request_grant(other.ls_user_id, workspace.id, "Viewer")
    assert scim_request.accepted and other_request.accepted

    outcome = provision()
    assert outcome.success, outcome.failure
    assert {r["request_id"]: r["status"] for r in list_requests()} == {
        scim_request.request_id: "applied", other_request.request_id: "applied"}
    assert org.membership(workspace.id, scim_member.ls_user_id) is not None  # applied all the same
    kinds = [kind for kind, _ in events(database, scim_request.request_id)]
    assert kinds.index("planned") < kinds.index("scim_warning") < kinds.index("write_sent")
    [detail] = [json.loads(d) for kind, d in events(database, scim_request.request_id) if kind == "scim_warning"]
    assert detail == {"detail": SCIM_WARNING} and "overwrite" in SCIM_WARNING
    assert "scim_warning" not in [kind for kind, _ in events(database, other_request.request_id)]


def test_revoking_an_organization_admins_workspace_role_says_admin_access_remains(env):
    sandbox, org, database = env
    admin_role = org.role_by_name("ORGANIZATION_ADMIN").id
    admin, membership = next(
        (m, ms) for m in org.active_members() if m.org_role_id == admin_role and not m.is_disabled
        for ms in org.memberships_of(m.ls_user_id) if org.workspaces[ms.workspace_id].is_shared
    )
    role_name = org.role(membership.role_id).display_name
    revoke = request_revoke(admin.ls_user_id, membership.workspace_id, role_name)
    # An ordinary member's revoke says nothing of the kind.
    member, member_ms = next(
        (m, ms) for m in org.active_members() if m.org_role_id != admin_role and not m.is_disabled
        for ms in org.memberships_of(m.ls_user_id) if org.workspaces[ms.workspace_id].is_shared
    )
    plain = request_revoke(member.ls_user_id, member_ms.workspace_id, org.role(member_ms.role_id).display_name)
    assert revoke.accepted and plain.accepted

    outcome = provision()
    assert outcome.success, outcome.failure
    assert org.membership(membership.workspace_id, admin.ls_user_id) is None  # the listed role is gone
    requests = {r["request_id"]: r for r in list_requests()}
    assert requests[revoke.request_id]["status"] == "applied"
    assert requests[revoke.request_id]["status_detail"].endswith(ADMIN_ACCESS_REMAINS)
    assert "organization role" in ADMIN_ACCESS_REMAINS
    assert requests[plain.request_id]["status"] == "applied"
    assert ADMIN_ACCESS_REMAINS not in requests[plain.request_id]["status_detail"]
    # The admin's implicit Admin there shows in the tables right after the run.
    assert query(database.path,
                 "SELECT count(*) FROM main.report_implicit_admins WHERE user_id = ? AND workspace_id = ?",
                 [admin.ls_user_id, membership.workspace_id]) == [(1,)]


def test_a_grant_to_a_disabled_member_is_queued_and_applied_with_a_note(env):
    # LangSmith keeps a disabled member's roles, so the grant is valid; the requester is told it
    # is dormant access, and the queued event says so for the audit.
    sandbox, org, database = env
    # The generated org's one disabled member belongs to the shared workspaces: a role change.
    disabled, workspace = next((m, w) for w in org.shared_workspaces() for m in org.active_members()
                               if m.is_disabled and m.ls_user_id in w.memberships)
    other_role = next(r.display_name for r in org.roles_by_scope("workspace")
                      if r.id != w_role(workspace, disabled) and r.display_name != "Admin")
    active = next(m for m in org.active_members()
                  if not m.is_disabled and m.ls_user_id not in workspace.memberships)
    to_disabled = request_grant(disabled.ls_user_id, workspace.id, other_role)
    to_active = request_grant(active.ls_user_id, workspace.id, "Viewer")
    assert to_disabled.accepted and to_active.accepted
    assert "is disabled in LangSmith" in to_disabled.message and "disabled" not in to_active.message
    [queued] = [json.loads(d) for kind, d in events(database, to_disabled.request_id) if kind == "queued"]
    assert queued["member_disabled"] is True
    assert "member_disabled" not in [json.loads(d) for kind, d in events(database, to_active.request_id)
                                     if kind == "queued"][0]
    assert provision().success
    assert {r["request_id"]: r["status"] for r in list_requests()} == {
        to_disabled.request_id: "applied", to_active.request_id: "applied"}


def w_role(workspace, member) -> str:
    return workspace.memberships[member.ls_user_id].role_id

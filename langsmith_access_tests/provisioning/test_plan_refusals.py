"""A write LangSmith refuses for the org's plan or the key's permissions ends ``failed`` with the
cause and the fix, in ``status_detail`` and in the audit event; ``reason`` stays the requester's."""

import json
from datetime import UTC, datetime, timedelta

from langsmith_access.api import list_requests, provision, request_grant
from langsmith_access.provisioning.expiry import queue_due_expiries
from langsmith_access_tests.helpers import query
from langsmith_access_tests.provisioning.test_provisioning_end_to_end import pick


def settled_detail(database, request_id: str) -> str:
    [(detail,)] = query(database.path, "SELECT detail FROM main.provisioning_events "
                        "WHERE request_id = ? AND kind = 'settled'", [request_id])
    return json.loads(detail)["detail"]


def test_a_non_admin_grant_on_a_plan_without_rbac_fails_as_not_in_plan(env):
    sandbox, org, database = env
    sandbox.api.plan = "plus"  # config.can_use_rbac false; non-Admin workspace roles refused
    workspace, outsider, member, _, roles = pick(org)
    editor = request_grant(outsider.ls_user_id, workspace.id, "Editor", reason="needs to edit prompts")
    admin_role = next(r.id for r in org.roles_by_scope("workspace") if r.name == "WORKSPACE_ADMIN")
    other = next(m for m in org.active_members()
                 if m.ls_user_id not in workspace.memberships and m.ls_user_id != outsider.ls_user_id
                 and not m.is_disabled)
    admin = request_grant(other.ls_user_id, workspace.id, "Admin")
    outcome = provision()
    assert outcome.success, outcome.failure
    rows = {r["request_id"]: r for r in list_requests()}
    failed = rows[editor.request_id]
    assert failed["status"] == "failed"
    assert failed["status_detail"].startswith("not in plan")
    assert "can_use_rbac" in failed["status_detail"] and "Fix:" in failed["status_detail"]
    assert "workspaces:manage-members" not in failed["status_detail"]  # not blamed on the key
    assert failed["reason"] == "needs to edit prompts"
    assert settled_detail(database, editor.request_id) == failed["status_detail"]
    # Admin is granted on every plan.
    assert rows[admin.request_id]["status"] == "applied"
    assert org.membership(workspace.id, other.ls_user_id).role_id == admin_role
    assert org.membership(workspace.id, outsider.ls_user_id) is None


def test_a_write_refused_on_an_enterprise_plan_is_the_keys_permissions(env):
    sandbox, org, database = env
    workspace, outsider, _, _, roles = pick(org)
    respond = sandbox.respond

    def refuse_writes(request):
        if request.method == "POST":
            from langsmith_access.sandbox.api import ApiResponse
            return ApiResponse(403, {"detail": "Forbidden"})
        return respond(request)

    sandbox.respond = refuse_writes
    queued = request_grant(outsider.ls_user_id, workspace.id, "Viewer")
    assert provision().success
    [row] = [r for r in list_requests() if r["request_id"] == queued.request_id]
    assert row["status"] == "failed"
    assert row["status_detail"].startswith("permission")
    assert "workspaces:manage-members" in row["status_detail"] and "Workspace Admin" in row["status_detail"]
    assert sandbox.api_key not in row["status_detail"]


def test_a_restricted_role_needs_a_key_holding_the_built_in_workspace_admin(env):
    """langsmith-api.md: a restricted role (Enterprise) is granted, and its holders changed or
    removed, only by a holder of the built-in Workspace Admin role; a key with a custom role
    that may manage members is refused, and the request says why and what fixes it."""
    sandbox, org, database = env
    sandbox.api.key_role = "member-manager"  # a key given a custom member-managing role
    workspace, outsider, holder, _, roles = pick(org)
    restricted = next(r for r in org.roles_by_scope("workspace")
                      if r.is_custom and r.id != holder.role_id)
    restricted.is_restricted = True
    org.set_workspace_role(workspace.id, holder.ls_user_id, restricted.id)  # someone holds it
    others = [m for m in org.active_members()
              if m.ls_user_id not in workspace.memberships and not m.is_disabled][:2]

    given = request_grant(outsider.ls_user_id, workspace.id, restricted.id, reason="audit duty")
    taken = request_grant(holder.ls_user_id, workspace.id, "Viewer")  # changes a holder's role
    plain = request_grant(others[1].ls_user_id, workspace.id, "Viewer")  # no restricted role
    assert provision().success
    rows = {r["request_id"]: r for r in list_requests()}
    for request, restricted_by in ((given, "grant"), (taken, "held")):
        row = rows[request.request_id]
        assert row["status"] == "failed", (restricted_by, row)
        detail = row["status_detail"]
        assert detail.startswith("restricted role:"), detail
        assert repr(restricted.display_name) in detail and "'Member Manager'" in detail
        assert "built-in Workspace Admin" in detail and "Fix:" in detail and "403" in detail
        assert settled_detail(database, request.request_id) == detail
    assert rows[given.request_id]["reason"] == "audit duty"
    assert rows[plain.request_id]["status"] == "applied"  # the key does manage members
    assert org.membership(workspace.id, outsider.ls_user_id) is None
    assert org.membership(workspace.id, holder.ls_user_id).role_id == restricted.id

    # An Organization Admin's key grants it.
    sandbox.api.key_role = "org-admin"
    again = request_grant(others[0].ls_user_id, workspace.id, restricted.id)
    assert provision().success
    assert {r["request_id"]: r for r in list_requests()}[again.request_id]["status"] == "applied"
    assert org.membership(workspace.id, others[0].ls_user_id).role_id == restricted.id


def test_the_end_of_a_grant_that_would_restore_a_restricted_role_says_so(env):
    """The end of Admin for 8 hours given to a holder of a restricted role restores that role:
    a key holding a custom role may not, and the failed end names the role it would write."""
    sandbox, org, database = env
    workspace, _, holder, _, roles = pick(org)
    restricted = next(r for r in org.roles_by_scope("workspace") if r.is_custom)
    restricted.is_restricted = True
    org.set_workspace_role(workspace.id, holder.ls_user_id, restricted.id)
    granted = request_grant(holder.ls_user_id, workspace.id, "Admin", duration="8h")
    assert provision().success  # an Organization Admin's key (the sandbox's default) applies it
    assert org.membership(workspace.id, holder.ls_user_id).role_id == roles["Admin"]

    sandbox.api.key_role = "member-manager"
    with database.writer_lease("test: the grant is due"), database.connect() as conn:
        [end] = queue_due_expiries(conn, datetime.now(UTC) + timedelta(hours=9))
    assert provision().success
    row = {r["request_id"]: r for r in list_requests()}[end]
    assert row["status"] == "failed", row
    assert row["status_detail"].startswith(f"restricted role: {restricted.display_name!r}"), row["status_detail"]
    assert org.membership(workspace.id, holder.ls_user_id).role_id == roles["Admin"]
    assert granted.request_id == row["parent_request_id"]

"""After a provisioning run, without a sync, every table built on `grants` shows what
provisioning verified: the real op job against the sandbox, then the analysts' copy.

Provisioning records what it verified in `raw.provisioning_observations`; dbt lays that over the
latest sync in `grants` and rebuilds every model downstream (reports, grant_history). History
dates each change when provisioning verified it.
"""

from langsmith_access.api import (
    list_requests,
    provision,
    request_grant,
    request_revoke,
)
from langsmith_access_tests.helpers import query, run_sync


def rows(database, sql, params=None) -> list[dict]:
    import duckdb

    with duckdb.connect(str(database.path), read_only=True) as conn:
        cursor = conn.execute(sql, params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def verified_at(database) -> dict[str, object]:
    """request_id -> when provisioning verified it (its latest observation)."""
    return dict(query(database.path, "SELECT request_id, max(verified_at) FROM raw.provisioning_observations "
                                     "GROUP BY request_id"))


def privileged(database) -> set[tuple]:
    return {(r["user_id"], r["workspace_id"]) for r in rows(
        database, "SELECT user_id, workspace_id FROM main.report_privileged_access WHERE scope = 'workspace'")}


def test_provisioning_rebuilds_grants_every_report_and_history_at_once(env):
    _sandbox, org, database = env
    admin = org.role_by_name("WORKSPACE_ADMIN")
    viewer = org.role_by_name("WORKSPACE_VIEWER")
    # A workspace with a single listed Admin, who is revoked: it has no Admin any more.
    lone = next(w for w in org.shared_workspaces()
                if sum(m.role_id == admin.id for m in w.memberships.values()) == 1)
    [lone_admin] = [m.ls_user_id for m in lone.memberships.values() if m.role_id == admin.id]
    # A member taken out of every workspace: listed in none any more.
    leaver = min((m for m in org.active_members() if not m.is_disabled and m.ls_user_id != lone_admin),
                 key=lambda m: (len(org.memberships_of(m.ls_user_id)), m.ls_user_id))
    leaver_workspaces = sorted(ms.workspace_id for ms in org.memberships_of(leaver.ls_user_id)
                               if org.workspace(ms.workspace_id).is_shared)
    # A member promoted to Admin in another workspace (a role change).
    other = next(w for w in org.shared_workspaces() if w.id != lone.id)
    promoted = next(m for m in other.memberships.values()
                    if m.role_id != admin.id and m.ls_user_id not in (leaver.ls_user_id, lone_admin))
    promoted_old_role = promoted.role_id  # the sandbox edits memberships in place

    assert lone.id not in {r["workspace_id"] for r in rows(database, "SELECT workspace_id FROM main.report_workspaces_without_admin")}
    assert (lone_admin, lone.id) in privileged(database)
    assert (promoted.ls_user_id, other.id) not in privileged(database)
    assert leaver.ls_user_id not in {r["user_id"] for r in rows(database, "SELECT user_id FROM main.report_members_without_workspace")}
    members_of_lone = len(lone.memberships)

    revoke_admin = request_revoke(lone_admin, lone.id, admin.id)
    revokes = [request_revoke(leaver.ls_user_id, w, org.membership(w, leaver.ls_user_id).role_id)
               for w in leaver_workspaces if not (w == lone.id and leaver.ls_user_id == lone_admin)]
    promote = request_grant(promoted.ls_user_id, other.id, admin.id)
    assert all(r.accepted for r in [revoke_admin, promote, *revokes])

    outcome = provision()
    assert outcome.success, outcome.failure
    assert {r["status"] for r in list_requests()} == {"applied"}

    # The reports changed at once, without a sync.
    without_admin = {r["workspace_id"]: r for r in rows(database, "SELECT * FROM main.report_workspaces_without_admin")}
    leaver_left_lone = leaver.ls_user_id in lone.memberships or lone.id in leaver_workspaces
    assert without_admin[lone.id]["member_count"] == members_of_lone - 1 - (1 if leaver_left_lone else 0)
    assert (lone_admin, lone.id) not in privileged(database)
    assert (promoted.ls_user_id, other.id) in privileged(database)
    assert leaver.ls_user_id in {r["user_id"] for r in rows(database, "SELECT user_id FROM main.report_members_without_workspace")}

    # grants: LangSmith's state, each changed row carrying its verification.
    when = verified_at(database)
    promoted_grant = rows(database, "SELECT * FROM main.grants WHERE user_id = ? AND workspace_id = ?",
                          [promoted.ls_user_id, other.id])
    assert [(g["role_id"], g["verified_by_request_id"], g["verified_at"]) for g in promoted_grant] == [
        (admin.id, promote.request_id, when[promote.request_id])]
    assert rows(database, "SELECT * FROM main.grants WHERE user_id = ? AND entitlement_type = 'workspace_role'",
                [leaver.ls_user_id]) == []

    # History: each change dated when provisioning verified it, the old interval ending at the
    # instant the new one begins.
    def intervals(user_id, workspace_id):
        return [(r["role_id"], r["valid_from"], r["valid_to"]) for r in rows(
            database, "SELECT role_id, valid_from, valid_to FROM main.grant_history "
                      "WHERE user_id = ? AND workspace_id = ? ORDER BY valid_from", [user_id, workspace_id])]

    [(old_role, _, old_end), (new_role, new_start, new_end)] = intervals(promoted.ls_user_id, other.id)
    assert (old_role, new_role, new_end) == (promoted_old_role, admin.id, None)
    assert old_end == new_start == when[promote.request_id]
    [(_, _, admin_end)] = intervals(lone_admin, lone.id)
    assert admin_end == when[revoke_admin.request_id]

    # report_grant_changes lists provisioning's changes at their verification times.
    changes = {(r["user_id"], r["workspace_id"]): r for r in rows(
        database, "SELECT * FROM main.report_grant_changes WHERE entitlement_type = 'workspace_role'")}
    assert changes[(promoted.ls_user_id, other.id)]["change_type"] == "role_changed"
    assert changes[(promoted.ls_user_id, other.id)]["changed_at"] == when[promote.request_id]
    assert changes[(lone_admin, lone.id)]["change_type"] == "removed"
    assert changes[(lone_admin, lone.id)]["changed_at"] == when[revoke_admin.request_id]
    assert {w for (u, w), c in changes.items() if u == leaver.ls_user_id and c["change_type"] == "removed"} == set(leaver_workspaces)

    # A second run grants the leaver a role again: they leave report_members_without_workspace.
    back = request_grant(leaver.ls_user_id, lone.id, viewer.id)
    assert back.accepted
    again = provision()
    assert again.success, again.failure
    assert leaver.ls_user_id not in {r["user_id"] for r in rows(database, "SELECT user_id FROM main.report_members_without_workspace")}
    [(role, start, _open)] = [i for i in intervals(leaver.ls_user_id, lone.id) if i[2] is None]
    assert (role, start) == (viewer.id, verified_at(database)[back.request_id])

    # A sync that finds LangSmith as provisioning left it: same grants, no new history; its own
    # listing now stands in for the observations (which it supersedes).
    grants_before = {g["grant_id"] for g in rows(database, "SELECT grant_id FROM main.grants")}
    history_before = rows(database, "SELECT * FROM main.grant_history ORDER BY grant_interval_id")
    # Each interval a request's write opened names it (kept by the sync below); a sync's, none.
    opened = {(h["user_id"], h["workspace_id"], h["is_current"]): h["opened_by_request_id"] for h in history_before}
    assert opened[(promoted.ls_user_id, other.id, True)] == promote.request_id
    assert opened[(leaver.ls_user_id, lone.id, True)] == back.request_id
    assert opened[(promoted.ls_user_id, other.id, False)] is None
    synced = run_sync()
    assert synced.success, synced.failure
    assert {g["grant_id"] for g in rows(database, "SELECT grant_id FROM main.grants")} == grants_before
    assert rows(database, "SELECT * FROM main.grant_history ORDER BY grant_interval_id") == history_before
    assert rows(database, "SELECT * FROM main.grants WHERE verified_at IS NOT NULL") == []
    assert rows(database, "SELECT * FROM main.report_grant_changes") == []

"""``langsmith-access demo``: the story end to end on the embedded defaults.

Starts the sandbox (a generated LangSmith org on 127.0.0.1), syncs it into a demo DuckDB file
with the same Dagster definitions the schedule runs, answers three questions in SQL, then queues
a grant, a role change and a revoke, provisions them, syncs again and prints the audit trail.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEMO_DATABASE = Path("data/demo/langsmith_access.duckdb")

QUESTIONS = [
    (
        "Who holds an organization admin role?",
        """SELECT u.email, u.full_name, u.is_disabled
FROM main.users u
JOIN main.roles r ON r.role_id = u.org_role_id
WHERE r.name = 'ORGANIZATION_ADMIN'
ORDER BY u.email""",
    ),
    (
        "Which workspaces have the most members, and how many admins?",
        """SELECT w.display_name, count(*) AS members,
       count(*) FILTER (WHERE r.name = 'WORKSPACE_ADMIN') AS admins
FROM main.grants g
JOIN main.workspaces w USING (workspace_id)
JOIN main.roles r USING (role_id)
WHERE g.entitlement_type = 'workspace_role'
GROUP BY w.workspace_id, w.display_name
ORDER BY members DESC, w.display_name
LIMIT 5""",
    ),
    (
        "Which disabled members still hold workspace roles?",
        """SELECT u.email, count(*) AS workspace_roles
FROM main.users u
JOIN main.grants g ON g.user_id = u.user_id AND g.entitlement_type = 'workspace_role'
WHERE u.is_disabled
GROUP BY u.email
ORDER BY workspace_roles DESC, u.email""",
    ),
]


def run_demo(seed: int = 42, members: int = 50, workspaces: int = 8) -> int:
    from langsmith_access import runner
    from langsmith_access.sandbox import SandboxServer, generate_org

    database = Path(os.environ.get("LANGSMITH_ACCESS_DUCKDB") or DEMO_DATABASE)
    org = generate_org(seed=seed, members=members, workspaces=workspaces)
    with SandboxServer(org) as sandbox:
        print(f"Sandbox LangSmith org {sandbox.organization_id} at {sandbox.url}")
        print(
            f"  {len(org.active_members())} members, {len(org.pending_org_invites())} pending "
            f"invites, {len(org.shared_workspaces())} shared workspaces "
            f"(+{len(org.all_workspaces()) - len(org.shared_workspaces())} personal or deleted)"
        )
        os.environ.update(sandbox.environment(database))
        print(f"\nSyncing into {database} …")
        outcome = runner.run_job(
            runner.SYNC_JOB, runner.sync_run_config(), progress=runner.print_progress(sys.stdout)
        )
        if not outcome.success:
            print(f"Sync failed: {outcome.failure}", file=sys.stderr)
            return 1
        _show_sync(database, outcome.run_id)
        if not _provisioning_story(org, database):
            return 1
    print(f"\nOpen it yourself: duckdb -readonly {database}")
    return 0


def _show_sync(database: Path, run_id: str) -> None:
    from langsmith_access.store.database import AccessDatabase

    with AccessDatabase(database).read_published() as conn:
        counts = conn.execute(
            "SELECT users, pending_invites, workspaces, roles, entitlements, grants, "
            "api_calls, api_retries, duration_seconds FROM main.sync_runs WHERE sync_id = ?",
            [run_id],
        ).fetchone()
        print(
            f"\nSynced in {counts[8]:.1f} s with {counts[6]} API calls ({counts[7]} retries): "
            f"{counts[0]} users, {counts[1]} pending invites, {counts[2]} workspaces, "
            f"{counts[3]} roles, {counts[4]} entitlements, {counts[5]} grants."
        )
        for number, (question, sql) in enumerate(QUESTIONS, start=1):
            print(f"\n{number}. {question}\n")
            print("   " + sql.replace("\n", "\n   "))
            cursor = conn.execute(sql)
            columns = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
            print()
            print(_table(columns, rows))


def _provisioning_story(org, database: Path) -> bool:
    """Queue a grant, a role change and a revoke; provision them; sync again; show the audit."""
    from langsmith_access import runner
    from langsmith_access.api import provision, request_grant, request_revoke
    from langsmith_access.store.database import AccessDatabase

    workspace = next(w for w in org.shared_workspaces() if len(org.workspaces_named(w.display_name)) == 1)
    members = [m for m in org.active_members() if not m.is_disabled]
    newcomer = next(m for m in members if m.ls_user_id not in workspace.memberships)
    current = list(workspace.memberships.values())
    editor = org.role_by_name("Editor").id
    changer = next(m for m in current if m.role_id != editor)
    leaver = next(m for m in current if m is not changer)
    requests = [
        request_grant(newcomer.email, workspace.display_name, "Viewer",
                      reason="joins the team", requested_by="demo"),
        request_grant(org.member(changer.ls_user_id).email, workspace.display_name, "Editor",
                      reason="needs to edit prompts", requested_by="demo"),
        request_revoke(org.member(leaver.ls_user_id).email, workspace.display_name,
                       org.role(leaver.role_id).display_name, reason="left the team", requested_by="demo"),
    ]
    print(f"\nQueued 3 requests for workspace {workspace.display_name!r}:")
    for queued in requests:
        print(f"   {queued.request_id}  {queued.status:<8} {queued.message}")
    dry = provision(dry_run=True)
    print("\nDry run (no writes):")
    for item in dry.outputs.get("apply_requests", {}).get("outcomes", []):
        print(f"   {item['request_id']}  would {item['detail']}")
    outcome = provision()
    if not outcome.success:
        print(f"Provisioning failed: {outcome.failure}", file=sys.stderr)
        return False
    print("\nProvisioned:")
    for item in outcome.outputs["apply_requests"]["outcomes"]:
        print(f"   {item['request_id']}  {item['status']:<17} {item['detail']}")
    print("\nSyncing again to confirm LangSmith agrees …")
    resync = runner.run_job(runner.SYNC_JOB, runner.sync_run_config())
    if not resync.success:
        print(f"Sync failed: {resync.failure}", file=sys.stderr)
        return False
    with AccessDatabase(database).read_published() as conn:
        ids = [r.request_id for r in requests]
        audit = conn.execute(
            'SELECT e."at", e.request_id, e.kind, e.detail FROM main.provisioning_events e '
            f"WHERE e.request_id IN ({', '.join('?' for _ in ids)}) ORDER BY e.\"at\"",
            ids,
        ).fetchall()
        print("\nAudit trail (provisioning_events):")
        print(_table(["at", "request", "kind", "detail"],
                     [(a.strftime("%H:%M:%S.%f")[:-3], r[:8], k, (d or "")[:90]) for a, r, k, d in audit]))
        history = conn.execute(
            "SELECT u.email, r.display_name, h.valid_from, h.valid_to FROM main.grant_history h "
            "JOIN main.users u USING (user_id) JOIN main.roles r USING (role_id) "
            "WHERE h.workspace_id = ? AND h.user_id IN (?, ?, ?) ORDER BY u.email, h.valid_from",
            [workspace.id, newcomer.ls_user_id, changer.ls_user_id, leaver.ls_user_id],
        ).fetchall()
        print(f"\ngrant_history for those three people in {workspace.display_name!r}:")
        print(_table(["email", "role", "valid_from", "valid_to"],
                     [(e, r, f.strftime("%H:%M:%S"), t.strftime("%H:%M:%S") if t else "(current)")
                      for e, r, f, t in history]))
    return True


def _table(columns: list[str], rows: list[tuple]) -> str:
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["   " + "  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "   " + "  ".join("-" * w for w in widths))
    if not rows:
        lines.append("   (no rows)")
    return "\n".join(lines)

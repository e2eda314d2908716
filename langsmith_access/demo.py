"""``langsmith-access demo``: the story end to end on the embedded defaults.

Starts the sandbox (a generated LangSmith org on 127.0.0.1), syncs it into a demo DuckDB file
with the same Dagster definitions the schedule runs, and answers three questions in SQL.
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
    from langsmith_access.store.database import AccessDatabase

    database = Path(os.environ.get("LANGSMITH_ACCESS_DUCKDB") or DEMO_DATABASE)
    org = generate_org(seed=seed, members=members, workspaces=workspaces)
    with SandboxServer(org) as sandbox:
        print(f"Sandbox LangSmith org {sandbox.organization_id} at {sandbox.url}")
        print(
            f"  {len(org.active_members())} members, {len(org.pending_org_invites())} pending "
            f"invites, {len(org.shared_workspaces())} shared workspaces "
            f"(+{len(org.all_workspaces()) - len(org.shared_workspaces())} personal or deleted)"
        )
        os.environ.update(
            LANGSMITH_API_KEY=sandbox.api_key,
            LANGSMITH_ORGANIZATION_ID=sandbox.organization_id,
            LANGSMITH_ENDPOINT=sandbox.url,
            LANGSMITH_ACCESS_DUCKDB=str(database),
        )
        print(f"\nSyncing into {database} …")
        outcome = runner.run_job(
            runner.SYNC_JOB, runner.sync_run_config(), progress=runner.print_progress(sys.stdout)
        )
        if not outcome.success:
            print(f"Sync failed: {outcome.failure}", file=sys.stderr)
            return 1
    with AccessDatabase(database).read_published() as conn:
        counts = conn.execute(
            "SELECT users, pending_invites, workspaces, roles, entitlements, grants, "
            "api_calls, api_retries, duration_seconds FROM main.sync_runs WHERE sync_id = ?",
            [outcome.run_id],
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
    print(f"\nOpen it yourself: duckdb -readonly {database}")
    return 0


def _table(columns: list[str], rows: list[tuple]) -> str:
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["   " + "  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "   " + "  ".join("-" * w for w in widths))
    if not rows:
        lines.append("   (no rows)")
    return "\n".join(lines)

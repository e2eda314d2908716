"""``langsmith-access demo``: the story end to end on the embedded defaults.

Starts the sandbox (a generated LangSmith org on 127.0.0.1), syncs it into a demo DuckDB file
with the same Dagster definitions the schedule runs, answers three questions in SQL, then queues
a grant, a role change and a revoke, provisions them, syncs again and prints the audit trail.
Last, access governance: under a demo policy an 8-hour Admin grant waits for an approver, is
approved and applied, and when its hours are up (the clock moved on, not waited for) its revoke
gives the member back the role they had.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb

from langsmith_access import runner
from langsmith_access.api import list_requests, provision, request_grant, request_revoke
from langsmith_access.names import APPLY_REQUESTS_OP
from langsmith_access.provisioning.approvals import APPROVED, decide
from langsmith_access.provisioning.expiry import queue_due_expiries
from langsmith_access.provisioning.queue import ChangeRequest, submit
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.sandbox.org_state import OrgMember, OrgState, Workspace, WorkspaceMembership
from langsmith_access.settings import DEFAULT_ORG_SLUG, ORGS_FILE_VARIABLE, Org, Secret, Settings, named
from langsmith_access.store.database import AccessDatabase
from langsmith_access.store.sql import quote_identifier, scalar
from langsmith_access.store.sync_runs import organization_of, succeeded_sync_run

# Outside data/: a folder there is an org's (the README's question across every org reads each
# data/*/ folder), and "demo" is a valid slug.
DEMO_DATABASE = Path("demo-data/langsmith_access.duckdb")
# The demo's access policy, written beside its database (README "Governing access").
DEMO_POLICY = """\
approval:
  required: ["Admin"]          # granting Admin needs an approver
  approvers: workspace_admins  # the workspace's Admins and the Organization Admins
duration:
  max: {"Admin": 8h}           # Admin for at most 8 hours
"""
WIDE = 1_000  # characters: the tables keep every column, whatever the terminal's width

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
    if os.environ.get(ORGS_FILE_VARIABLE):
        # A deployment's shell: the definitions the demo's runs load are partitioned by that
        # file's slugs and would refuse the demo's own org. Said before anything starts; the
        # environment is the user's, never changed here (not even for the demo's length).
        print(f"error: {ORGS_FILE_VARIABLE} is set ({named(os.environ[ORGS_FILE_VARIABLE].strip())}): the demo runs "
              "its own generated org, which that file's orgs are not.\n  fix: run it without the "
              f"file: env -u {ORGS_FILE_VARIABLE} langsmith-access demo", file=sys.stderr)
        return 1
    # Every variable checked (LANGSMITH_ACCESS_DUCKDB naming a directory, say) before the
    # sandbox starts; the runs take these settings with the sandbox's endpoint, key and org.
    settings = Settings.from_env()
    chosen = os.environ.get("LANGSMITH_ACCESS_DUCKDB")
    database = settings.duckdb_path if chosen else Path(DEMO_DATABASE)
    state = generate_org(seed=seed, members=members, workspaces=workspaces)
    # The demo's own file is the demo's to overwrite (another --seed is another generated org).
    other = _synced_organization(database) if chosen else None
    if other is not None and other != state.organization_id:
        # A shell set up for a real org: the demo would sync its generated org over that org's data.
        print(f"error: {database} (LANGSMITH_ACCESS_DUCKDB) holds organization {other}, not the demo's "
              f"generated one: the demo does not write over another org's data.\n  fix: unset "
              f"LANGSMITH_ACCESS_DUCKDB (the demo then writes {DEMO_DATABASE}), or point it at a new file",
              file=sys.stderr)
        return 1
    cast = _cast(state)
    if cast is None:
        print(f"error: the generated org (--members {members}, --workspaces {workspaces}, --seed {seed}) is too "
              "small for the demo's stories: they need a shared workspace with a name of its own, two "
              "active members in it (one not an Editor), an active member outside it, and an active "
              "Organization Admin besides them.\n  fix: use more members and workspaces, e.g. the "
              "defaults (--members 50 --workspaces 8)", file=sys.stderr)
        return 1
    with SandboxServer(state) as sandbox:
        print(f"Sandbox LangSmith org {sandbox.organization_id} at {sandbox.url}")
        print(
            f"  {len(state.active_members())} members, {len(state.pending_org_invites())} pending "
            f"invites, {len(state.shared_workspaces())} shared workspaces "
            f"(+{len(state.all_workspaces()) - len(state.shared_workspaces())} personal or deleted)"
        )
        # The sandbox's settings go to the runs as they are: the environment is left alone.
        org = Org(DEFAULT_ORG_SLUG, replace(
            settings, endpoint=sandbox.url, api_key=Secret(sandbox.api_key),
            organization_id=sandbox.organization_id, duckdb_path=database,
        ))
        print(f"\nSyncing into {database} …")
        outcome = runner.run_job(
            runner.SYNC_JOB, runner.sync_run_config(settings=org.settings), org=org,
            progress=runner.print_progress(sys.stdout),
        )
        if not outcome.success:
            print(f"Sync failed: {outcome.failure}", file=sys.stderr)
            return 1
        _show_sync(database, outcome.run_id)
        if not _provisioning_story(state, org, cast):
            return 1
        if not _governance_story(state, org, cast):
            return 1
    print(f"\nOpen it yourself: duckdb -readonly {database}")
    return 0


def _synced_organization(database: Path) -> str | None:
    """The organization whose data ``database`` holds; None for a new file, or one no sync
    has filled."""
    if not database.exists():
        return None
    try:
        with AccessDatabase(database).read_published() as conn:
            return organization_of(conn)
    except duckdb.Error:
        return None


def _show_sync(database: Path, run_id: str) -> None:
    with AccessDatabase(database).read_published() as conn:
        run = succeeded_sync_run(conn, run_id)
        print(
            f"\nSynced in {run['duration_seconds']:.1f} s with {run['api_calls']} API calls "
            f"({run['api_retries']} retries): {run['users']} users, {run['pending_invites']} "
            f"pending invites, {run['workspaces']} workspaces, {run['roles']} roles, "
            f"{run['entitlements']} entitlements, {run['grants']} grants."
        )
        for number, (question, sql) in enumerate(QUESTIONS, start=1):
            print(f"\n{number}. {question}\n")
            print("   " + sql.replace("\n", "\n   "))
            print()
            conn.sql(sql).show(max_width=WIDE, null_value="")


@dataclass(frozen=True)
class _Cast:
    """Who the demo's stories are about: in ``workspace`` (its name its own, so requests can
    name it), ``newcomer`` is given Viewer, ``changer`` Editor and ``leaver`` loses their role;
    then ``changer`` asks for Admin for 8 hours and ``approver`` approves it."""

    workspace: Workspace
    newcomer: OrgMember
    changer: OrgMember
    leaver: WorkspaceMembership
    approver: OrgMember


def _cast(org: OrgState) -> _Cast | None:
    """The first shared workspace with everyone the stories need; None if the generated org
    (a small one) has none."""
    editor = org.role_by_name("Editor").id
    active = [m for m in org.active_members() if not m.is_disabled]
    admins = [m for m in active if org.role(m.org_role_id).name == "ORGANIZATION_ADMIN"]
    for workspace in org.shared_workspaces():
        if len(org.workspaces_named(workspace.display_name)) != 1:
            continue
        current = [m for m in workspace.memberships.values() if not org.member(m.ls_user_id).is_disabled]
        newcomer = next((m for m in active if m.ls_user_id not in workspace.memberships), None)
        changer = next((m for m in current if m.role_id != editor), None)
        leaver = next((m for m in current if m is not changer), None)
        approver = next((m for m in admins if changer and m.ls_user_id != changer.ls_user_id), None)
        if newcomer and changer and leaver and approver:
            return _Cast(workspace, newcomer, org.member(changer.ls_user_id), leaver, approver)
    return None


def _provisioning_story(org: OrgState, access: Org, cast: _Cast) -> bool:
    """Queue a grant, a role change and a revoke; provision them; sync again; show the audit.
    ``org``: the sandbox's org state; ``access``: the settings that reach it."""
    database = access.duckdb_path
    workspace, newcomer, changer, leaver = cast.workspace, cast.newcomer, cast.changer, cast.leaver
    requests = [
        request_grant(newcomer.email, workspace.display_name, "Viewer",
                      reason="joins the team", requested_by="demo", org=access),
        request_grant(changer.email, workspace.display_name, "Editor",
                      reason="needs to edit prompts", requested_by="demo", org=access),
        request_revoke(org.member(leaver.ls_user_id).email, workspace.display_name,
                       org.role(leaver.role_id).display_name, reason="left the team", requested_by="demo",
                       org=access),
    ]
    print(f"\nQueued 3 requests for workspace {workspace.display_name!r}:")
    for queued in requests:
        print(f"   {queued.request_id}  {queued.status:<8} {queued.message}")
    dry = provision(dry_run=True, org=access)
    if not dry.success:  # the real run would fail the same way: said once, and nothing is written
        print(f"Provisioning dry run failed: {dry.failure}", file=sys.stderr)
        return False
    print("\nDry run (no writes):")
    for item in dry.outputs.get(APPLY_REQUESTS_OP, {}).get("outcomes", []):
        print(f"   {item['request_id']}  would {item['detail']}")
    outcome = provision(org=access)
    if not outcome.success:
        print(f"Provisioning failed: {outcome.failure}", file=sys.stderr)
        return False
    print("\nProvisioned:")
    outcomes = {item["request_id"]: item for item in outcome.outputs[APPLY_REQUESTS_OP]["outcomes"]}
    for item in outcomes.values():
        print(f"   {item['request_id']}  {item['status']:<17} {item['detail']}")
    # The stories go on from what these three did: one not applied (rejected when queued, or
    # refused by LangSmith) stops the demo, said, rather than a re-sync and an exit 0.
    unapplied = [f"{queued.request_id} {done['status']}, {done['detail']}" if (done := outcomes.get(queued.request_id))
                 else f"{queued.request_id} {queued.status}, {queued.message}"
                 for queued in requests if outcomes.get(queued.request_id, {}).get("status") != "applied"]
    if unapplied:
        print(f"error: the demo's requests were not all applied: {'; '.join(unapplied)}", file=sys.stderr)
        return False
    print("\nSyncing again to confirm LangSmith agrees …")
    resync = runner.run_job(runner.SYNC_JOB, runner.sync_run_config(settings=access.settings), org=access)
    if not resync.success:
        print(f"Sync failed: {resync.failure}", file=sys.stderr)
        return False
    with AccessDatabase(database).read_published() as conn:
        ids = [r.request_id for r in requests]
        # Times show in DuckDB's session time zone (the host's): the column headings name it.
        zone = scalar(conn, "SELECT current_setting('TimeZone')")
        at, valid_from, valid_to = (quote_identifier(f"{name} ({zone})") for name in ("at", "valid_from", "valid_to"))
        print("\nAudit trail (provisioning_events):")
        conn.sql(
            f'SELECT strftime(e."at", \'%H:%M:%S.%g\') AS {at}, left(e.request_id, 8) AS request, e.kind, '
            "left(coalesce(e.detail, ''), 90) AS detail FROM main.provisioning_events e "
            'WHERE list_contains($ids, e.request_id) ORDER BY e."at"',
            params={"ids": ids},
        ).show(max_width=WIDE)
        print(f"\ngrant_history for those three people in {workspace.display_name!r}:")
        conn.sql(
            f"SELECT u.email, r.display_name AS role, strftime(h.valid_from, '%H:%M:%S') AS {valid_from}, "
            f"coalesce(strftime(h.valid_to, '%H:%M:%S'), '(current)') AS {valid_to} "
            "FROM main.grant_history h JOIN main.users u USING (user_id) JOIN main.roles r USING (role_id) "
            "WHERE h.workspace_id = $workspace AND list_contains($people, h.user_id) "
            "ORDER BY u.email, h.valid_from",
            params={"workspace": workspace.id,
                    "people": [newcomer.ls_user_id, changer.ls_user_id, leaver.ls_user_id]},
        ).show(max_width=WIDE)
    return True


def _approve_and_apply(access: AccessDatabase, request_id: str, approver: OrgMember, settings: Org,
                       policy: Path) -> bool:
    """``approver`` approves the request awaiting approval, then provisioning applies it. False,
    said on stderr, when the approval is not recorded (nothing is provisioned then), the
    provisioning run fails, or the run leaves the request other than applied."""
    approved = decide(access, request_id, APPROVED, approver.email, "on call", policy_path=policy)
    print(f"   {approver.email} (Organization Admin) approves: {approved.message}")
    if not approved.recorded:
        print(f"error: {approver.email}'s approval of request {request_id} was not recorded: {approved.message}\n"
              f"  nothing was provisioned (the request is {approved.status or 'not found'})", file=sys.stderr)
        return False
    outcome = provision(org=settings)
    if not outcome.success:
        print(f"Provisioning failed: {outcome.failure}", file=sys.stderr)
        return False
    [request] = [r for r in list_requests(database=access.path) if r["request_id"] == request_id]
    if request["status"] != "applied":
        print(f"error: request {request_id} was approved but not applied: {request['status']}, "
              f"{request['status_detail']}", file=sys.stderr)
        return False
    return True


def _governance_story(org: OrgState, settings: Org, cast: _Cast) -> bool:
    """Under the demo policy: an 8-hour Admin grant awaits approval, is approved and applied,
    then expires and gives back the role the member had. The policy is passed to the calls, not
    set in the environment, so nothing outside the demo is governed by it. ``org``: the
    sandbox's org state; ``settings``: the settings that reach it."""
    database = settings.duckdb_path
    access = AccessDatabase(database)
    policy = database.with_name("demo-policy.yaml")
    policy.write_text(DEMO_POLICY)
    # The member the provisioning story made an Editor there.
    workspace, member, approver = cast.workspace, cast.changer, cast.approver
    print(f"\nAccess governance, under this policy ({policy}):\n")
    print("   " + DEMO_POLICY.rstrip().replace("\n", "\n   "))
    asked = submit(access, ChangeRequest("grant", member.email, workspace.id, "Admin", reason="incident 7",
                                         requested_by=member.email, duration="8h"), policy_path=policy)
    print(f"\n{member.email} asks for Admin in {workspace.display_name!r} for 8 hours:")
    print(f"   {asked.request_id}  {asked.status}: {asked.message}")
    if asked.status != "awaiting_approval":
        print(f"error: the demo's Admin grant was not sent for approval: it is {asked.status}: {asked.message}\n"
              "  nothing was approved or provisioned", file=sys.stderr)
        return False
    own = decide(access, asked.request_id, APPROVED, member.email, policy_path=policy)
    print(f"   they try to approve it themselves: {'recorded' if own.recorded else 'refused'}: {own.message}")
    if not _approve_and_apply(access, asked.request_id, approver, settings, policy):
        return False
    [grant] = [r for r in list_requests(database=database) if r["request_id"] == asked.request_id]
    print(f"   applied: Admin until {grant['expires_at']:%Y-%m-%d %H:%M %Z} (8 hours from now); "
          f"the role before it is kept ({org.role(grant['prior_role_id']).display_name}).")
    print("\n8 hours later (the demo moves the clock instead of waiting), provisioning queues the revoke:")
    with access.writer_lease("demo: the grant's 8 hours are up"), access.connect() as conn:
        revokes = queue_due_expiries(conn, grant["expires_at"])
    outcome = provision(org=settings)
    if not outcome.success:
        print(f"Provisioning failed: {outcome.failure}", file=sys.stderr)
        return False
    revoked = [row for row in list_requests(database=database) if row["request_id"] in revokes]
    for row in revoked:
        print(f"   {row['request_id']}  revoke by {row['requested_by']} ({row['reason']}): "
              f"{row['status']}, {row['status_detail']}")
    if not revoked or any(row["status"] != "applied" for row in revoked):
        # The member may still hold Admin: the story's last line would not be true.
        why = "; ".join(f"revoke {row['request_id']} is {row['status']}, {row['status_detail']}" for row in revoked)
        print(f"error: the expired Admin grant {asked.request_id} was not revoked: "
              f"{why or 'no revoke was queued for it'}", file=sys.stderr)
        return False
    role_now = org.membership(workspace.id, member.ls_user_id)
    print(f"   {member.email} is {org.role(role_now.role_id).display_name if role_now else 'not a member'} "
          f"in {workspace.display_name!r} again.")
    return True

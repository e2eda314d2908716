"""The dbt project end to end: a hand-made org in the raw tables, real `dbt build` runs, and the
exact contents of every mart, the grant history across syncs, and the blocking checks.

Expected rows are written out by hand from the rules in langsmith-api.md, never by re-running
the models' SQL.

The module keeps builds few: one of the first sync (shared by the mart tests), two more for the
history on the same database path, and one for a sync that breaks two checks. The first
sync's build runs as a developer runs dbt by hand (the dbt command line, the packaged profile
reading the file's path from its environment variable); the others through the product's
in-process runner (``transform.run_dbt``), which spares each one dbt's start-up and a full
parse.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dbt.cli.main import dbtRunner

import langsmith_access
from langsmith_access.store.raw_tables import RAW_SCHEMA, column_names, create_table_sql
from langsmith_access.store.schema import ensure_schema
from langsmith_access.transform import run_dbt
from langsmith_access.transform.invocation import close_dbt_connection

# The project ships inside the package (package data): found wherever the package is installed.
DBT_PROJECT_DIR = Path(langsmith_access.__file__).resolve().parent / "dbt_project"
# dbt's command line, run by the interpreter running the tests: no assumption on where a
# virtualenv or a `dbt` script lives (dbt.cli.main is what the `dbt` console script calls).

UTC = dt.timezone.utc
ORG_ID = "00000000-0000-4000-8000-000000000001"

# --- the hand-made org -------------------------------------------------------------------------

ORG_ADMIN = "role-org-admin"
ORG_USER = "role-org-user"
WS_ADMIN = "role-ws-admin"
WS_EDITOR = "role-ws-editor"
WS_VIEWER = "role-ws-viewer"
WS_AUDITOR = "role-custom-auditor"  # a custom workspace role

RESEARCH = "ws-research"  # shared
RESEARCH_TWO = "ws-research-two"  # shared, same display name as RESEARCH
PERSONAL = "ws-personal-ada"  # personal: its memberships never become grants
DELETED = "ws-deleted"  # deleted: its memberships never become grants

ADA = "user-ada"  # active, Organization Admin
BOB = "user-bob"  # active, Organization User, no full name
CY = "user-cy"  # disabled, Organization User

ROLES = [
    {
        "role_id": ORG_ADMIN,
        "name": "ORGANIZATION_ADMIN",
        "display_name": "Organization Admin",
        "description": "Full access to the organization.",
        "access_scope": "organization",
        "organization_id": None,
        "permissions": ["organization:manage", "organization:read"],
    },
    {
        "role_id": ORG_USER,
        "name": "ORGANIZATION_USER",
        "display_name": "Organization User",
        "description": "Member of the organization.",
        "access_scope": "organization",
        "organization_id": None,
        "permissions": ["organization:read"],
    },
    {
        "role_id": WS_ADMIN,
        "name": "WORKSPACE_ADMIN",
        "display_name": "Admin",
        "description": "Manages a workspace.",
        "access_scope": "workspace",
        "organization_id": None,
        "permissions": ["workspaces:read", "workspaces:manage-members"],
    },
    {
        "role_id": WS_EDITOR,
        "name": "WORKSPACE_USER",
        "display_name": "Editor",
        "description": "Edits a workspace.",
        "access_scope": "workspace",
        "organization_id": None,
        "permissions": ["workspaces:read", "runs:create"],
    },
    {
        "role_id": WS_VIEWER,
        "name": "WORKSPACE_VIEWER",
        "display_name": "Viewer",
        "description": "Read-only access to a workspace.",
        "access_scope": "workspace",
        "organization_id": None,
        "permissions": ["workspaces:read"],
    },
    {
        "role_id": WS_AUDITOR,
        "name": "CUSTOM",
        "display_name": "Deployment Auditor",
        "description": "Reads deployments.",
        "access_scope": "workspace",
        "organization_id": ORG_ID,
        # listed twice by the API: one row in role_permissions
        "permissions": ["workspaces:read", "deployments:read", "deployments:read"],
        "is_restricted": True,  # Enterprise; the other rows do not say (older LangSmith)
    },
]


def ts(day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, tzinfo=UTC)


WORKSPACES = [
    {"workspace_id": RESEARCH, "display_name": "Research", "tenant_handle": "research",
     "is_personal": False, "is_deleted": False, "organization_id": ORG_ID, "created_at": ts(1)},
    {"workspace_id": RESEARCH_TWO, "display_name": "Research", "tenant_handle": "research-2",
     "is_personal": False, "is_deleted": False, "organization_id": ORG_ID, "created_at": ts(2)},
    {"workspace_id": PERSONAL, "display_name": "Ada's workspace", "tenant_handle": None,
     "is_personal": True, "is_deleted": False, "organization_id": ORG_ID, "created_at": ts(3)},
    {"workspace_id": DELETED, "display_name": "Old project", "tenant_handle": "old",
     "is_personal": False, "is_deleted": True, "organization_id": ORG_ID, "created_at": ts(4)},
]

ORG_MEMBERS = [
    {"org_identity_id": "org-identity-ada", "ls_user_id": ADA, "user_id": "legacy-ada",
     "email": "ada@example.com", "full_name": "Ada Lovelace", "display_name": "Ada",
     "is_disabled": False, "org_role_id": ORG_ADMIN, "org_role_name": "Organization Admin",
     "created_at": ts(5), "login_methods": '[{"provider": "email", "provisioning_method": "bootstrap"}]'},
    # no full name: users.full_name falls back to the display name; stray spaces are trimmed
    {"org_identity_id": "org-identity-bob", "ls_user_id": BOB, "user_id": None,
     "email": " bob@example.com ", "full_name": None, "display_name": "Bob B.",
     "is_disabled": False, "org_role_id": ORG_USER, "org_role_name": "Organization User",
     "created_at": ts(6),
     # SCIM (and an earlier SAML login) provision Bob; his group names Editor in "Research", a
     # name two workspaces share: it names both (he is Editor in one of them).
     "login_methods": '[{"provider": "supabase:sso", "provisioning_method": "saml:jit"}, '
                      '{"provider": "supabase:sso", "provisioning_method": "scim"}]',
     "scim_groups": ["LS:Organization User:Research:Editor"]},
    {"org_identity_id": "org-identity-cy", "ls_user_id": CY, "user_id": "legacy-cy",
     "email": "cy@example.com", "full_name": "Cy Young", "display_name": "Cy",
     "is_disabled": True, "org_role_id": ORG_USER, "org_role_name": "Organization User",
     "created_at": ts(7)},
]

PENDING_INVITES = [
    {"invite_id": "invite-dee", "email": "dee@example.com", "org_role_id": ORG_USER,
     "org_role_name": "Organization User", "workspace_ids": [RESEARCH],
     "workspace_role_id": WS_EDITOR, "created_at": ts(8)},
]


def membership(workspace_id, ls_user_id, role_id, identity=None, source="workspace_members"):
    role_names = {r["role_id"]: r["display_name"] for r in ROLES}
    return {"workspace_id": workspace_id, "ls_user_id": ls_user_id,
            "workspace_identity_id": identity, "role_id": role_id,
            "role_name": role_names.get(role_id), "source": source}


MEMBERSHIPS_SYNC_1 = [
    membership(RESEARCH, ADA, WS_ADMIN, "ws-identity-research-ada"),
    membership(RESEARCH, BOB, WS_EDITOR, "ws-identity-research-bob"),
    # the same assignment read again from the enriched route (no identity id): one grant
    membership(RESEARCH, BOB, WS_EDITOR, None, "enriched_members"),
    membership(RESEARCH, CY, WS_VIEWER, "ws-identity-research-cy"),
    membership(RESEARCH_TWO, BOB, WS_AUDITOR, None, "enriched_members"),
    membership(PERSONAL, ADA, WS_ADMIN, "ws-identity-personal-ada"),
    membership(DELETED, BOB, WS_EDITOR, "ws-identity-deleted-bob"),
    # a pending identity listed as a member (no ls_user_id yet): an invite, never a grant
    membership(RESEARCH, None, WS_VIEWER, "ws-identity-research-pending"),
]

# sync 2: Bob's role in Research changes, Cy is removed from Research, Ada joins Research Two.
MEMBERSHIPS_SYNC_2 = [
    membership(RESEARCH, ADA, WS_ADMIN, "ws-identity-research-ada"),
    membership(RESEARCH, BOB, WS_VIEWER, "ws-identity-research-bob"),
    membership(RESEARCH_TWO, BOB, WS_AUDITOR, None, "enriched_members"),
    membership(RESEARCH_TWO, ADA, WS_EDITOR, "ws-identity-research-two-ada"),
    membership(PERSONAL, ADA, WS_ADMIN, "ws-identity-personal-ada"),
    membership(DELETED, BOB, WS_EDITOR, "ws-identity-deleted-bob"),
]

# sync 3: Cy is back in Research with the role they had before.
MEMBERSHIPS_SYNC_3 = MEMBERSHIPS_SYNC_2 + [
    membership(RESEARCH, CY, WS_VIEWER, "ws-identity-research-cy-2"),
]


def ws_entitlement(workspace_id, role_id):
    return f"workspace_role:{workspace_id}:{role_id}"


def ws_grant(workspace_id, role_id, user):
    return f"{ws_entitlement(workspace_id, role_id)}:{user}"


ORG_GRANTS = {
    f"organization_role:{ORG_ADMIN}:{ADA}",
    f"organization_role:{ORG_USER}:{BOB}",
    f"organization_role:{ORG_USER}:{CY}",
}
GRANTS_SYNC_1 = ORG_GRANTS | {
    ws_grant(RESEARCH, WS_ADMIN, ADA),
    ws_grant(RESEARCH, WS_EDITOR, BOB),
    ws_grant(RESEARCH, WS_VIEWER, CY),
    ws_grant(RESEARCH_TWO, WS_AUDITOR, BOB),
}
GRANTS_SYNC_2 = ORG_GRANTS | {
    ws_grant(RESEARCH, WS_ADMIN, ADA),
    ws_grant(RESEARCH, WS_VIEWER, BOB),
    ws_grant(RESEARCH_TWO, WS_AUDITOR, BOB),
    ws_grant(RESEARCH_TWO, WS_EDITOR, ADA),
}
GRANTS_SYNC_3 = GRANTS_SYNC_2 | {ws_grant(RESEARCH, WS_VIEWER, CY)}


# --- helpers -----------------------------------------------------------------------------------


def write_raw_sync(
    db_path: Path, sync_id: str, fetched_at: dt.datetime, memberships, members: list[dict] = ORG_MEMBERS,
    workspaces: list[dict] = WORKSPACES,
) -> None:
    """Replace every raw table with one sync's rows (``members``: the org members listed;
    ``workspaces``: the workspaces listed), as the extract assets do."""
    tables = {
        "org_members": members,
        "pending_invites": PENDING_INVITES,
        "workspaces": workspaces,
        "roles": ROLES,
        "workspace_memberships": memberships,
    }
    with duckdb.connect(str(db_path)) as con:
        # Every table Python owns exists in a real database: the raw tables (the inventory's
        # too, empty until it runs; provisioning's observations are never replaced), the
        # queue and sync_runs, which report_unexplained_changes reads.
        ensure_schema(con)
        for table, rows in tables.items():
            con.execute(create_table_sql(table))
            con.execute(f'DELETE FROM {RAW_SCHEMA}."{table}"')
            insert_rows(con, table, [{"sync_id": sync_id, "fetched_at": fetched_at, **r} for r in rows])


def insert_rows(con, table: str, rows: list[dict]) -> None:
    columns = column_names(table)
    placeholders = ", ".join("?" for _ in columns)
    con.executemany(
        f'INSERT INTO {RAW_SCHEMA}."{table}" VALUES ({placeholders})',
        [[row.get(c) for c in columns] for row in rows],
    )


def query(db_path: Path, sql: str, params=None) -> list[dict]:
    with duckdb.connect(str(db_path), read_only=True) as con:
        cursor = con.execute(sql, params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


@dataclass
class DbtResult:
    returncode: int
    output: str
    results: dict[str, str]  # node name -> status ('success', 'pass', 'fail', 'skipped', ...)
    failures: dict[str, int]  # test name -> number of failing rows


def dbt_build(
    db_path: Path, work_dir: Path, command: tuple[str, ...] = ("build",), *, by_hand: bool = False,
    on_event: Callable[[Any], None] | None = None,
) -> DbtResult:
    """Run a real `dbt build` (or ``command``) against db_path, with ``work_dir/target`` as its
    target directory; runs with the same db_path share work_dir. ``by_hand``: the dbt command
    line with the packaged profile, as a developer runs it; otherwise the product's runner.
    ``on_event`` (by hand only): called with each of dbt's events."""
    if not by_hand:
        with run_dbt(list(command), database_file=db_path, dbt_dir=work_dir / "target") as invocation:
            invocation.wait()
        return DbtResult(
            invocation.returncode or 0,
            "" if invocation.success else invocation.failure_message(),
            {r.name: r.status for r in invocation.results},
            {r.name: r.failures or 0 for r in invocation.results if r.resource_type == "test"},
        )
    # dbt's command line, through dbt's programmatic runner in this process (a second Python
    # loading dbt cost ~8 s of CPU more), with the packaged profile reading the variable.
    run_results_path = work_dir / "target" / "run_results.json"
    run_results_path.unlink(missing_ok=True)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("LANGSMITH_ACCESS_DBT_DUCKDB_PATH", str(db_path))
        monkeypatch.chdir(work_dir)
        try:
            outcome = dbtRunner(callbacks=[on_event] if on_event else []).invoke([
                *command,
                "--project-dir", str(DBT_PROJECT_DIR),
                "--profiles-dir", str(DBT_PROJECT_DIR),
                "--target-path", str(work_dir / "target"),
                "--log-path", str(work_dir / "logs"),
                "--log-level", "warn",
            ])
        finally:
            close_dbt_connection()  # the packaged profile keeps one connection per invocation
    output = f"dbt {' '.join(command)}: {outcome.exception or 'see ' + str(work_dir / 'logs' / 'dbt.log')}"
    assert run_results_path.exists(), f"dbt did not get to run anything:\n{output}"
    # unique_id: "<resource type>.langsmith_access.<name>[.<hash>]"
    run_results = json.loads(run_results_path.read_text())["results"]
    results = {r["unique_id"].split(".")[2]: r["status"] for r in run_results}
    failures = {r["unique_id"].split(".")[2]: r["failures"] for r in run_results
                if r["unique_id"].startswith("test.")}
    return DbtResult(0 if outcome.success else 1, output, results, failures)


def failed_nodes(result: DbtResult) -> set[str]:
    """Tests that failed and models that errored."""
    return {name for name, status in result.results.items() if status in ("fail", "error")}


def copy_database(source: Path, destination: Path) -> None:
    """Copy a closed DuckDB database file (and its write-ahead log, if one was left)."""
    shutil.copy(source, destination)
    wal = source.with_name(source.name + ".wal")
    destination_wal = destination.with_name(destination.name + ".wal")
    destination_wal.unlink(missing_ok=True)
    if wal.exists():
        shutil.copy(wal, destination_wal)


def rows_by(db_path: Path, table: str, key: str) -> list[dict]:
    return query(db_path, f"SELECT * FROM main.{table} ORDER BY {key}")


def keyed(rows: list[dict], key: str) -> dict[str, dict]:
    """Rows by their id (asserting it is unique), so comparisons do not depend on sort order."""
    by_key = {row[key]: row for row in rows}
    assert len(by_key) == len(rows), f"duplicate {key}"
    return by_key


def assert_table(db_path: Path, table: str, key: str, expected: list[dict]) -> None:
    assert keyed(rows_by(db_path, table, key), key) == keyed(expected, key)


# --- the first sync, built once ----------------------------------------------------------------

SYNC_1 = "sync-1"
FETCHED_1 = dt.datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


@dataclass
class FirstSync:
    db_path: Path  # the working database: only the history test builds on it again
    baseline: Path  # a copy right after the first build, for the read-only tests
    work_dir: Path
    result: DbtResult
    built_before: dt.datetime
    built_after: dt.datetime


def add_rows_of_an_older_sync(db_path: Path) -> None:
    """Leftovers of an earlier sync: staging keeps only the latest sync, so none may show up."""
    older = {"sync_id": "sync-0", "fetched_at": FETCHED_1 - dt.timedelta(days=1)}
    with duckdb.connect(str(db_path)) as con:
        insert_rows(con, "org_members", [{**older, **ORG_MEMBERS[0], "ls_user_id": "user-gone",
                                          "org_identity_id": "org-identity-gone"}])
        insert_rows(con, "workspace_memberships",
                    [{**older, **membership(RESEARCH, "user-gone", WS_ADMIN, "ws-identity-gone")}])
        insert_rows(con, "roles", [{**older, **ROLES[0], "role_id": "role-gone"}])
        insert_rows(con, "workspaces", [{**older, **WORKSPACES[0], "workspace_id": "ws-gone"}])
        insert_rows(con, "pending_invites", [{**older, **PENDING_INVITES[0],
                                              "invite_id": "invite-gone"}])


@pytest.fixture(scope="module")
def first_sync(tmp_path_factory) -> FirstSync:
    tmp = tmp_path_factory.mktemp("dbt_sync")
    db_path = tmp / "working.duckdb"
    write_raw_sync(db_path, SYNC_1, FETCHED_1, MEMBERSHIPS_SYNC_1)
    add_rows_of_an_older_sync(db_path)
    built_before = dt.datetime.now(UTC)
    result = dbt_build(db_path, tmp, by_hand=True)
    built_after = dt.datetime.now(UTC)
    assert result.returncode == 0, result.output
    baseline = tmp / "baseline" / "after_first_sync.duckdb"
    baseline.parent.mkdir()
    copy_database(db_path, baseline)
    return FirstSync(db_path, baseline, tmp, result, built_before, built_after)


def test_build_runs_every_model_test_and_the_snapshot(first_sync):
    results = first_sync.result.results
    for node in ("users", "pending_invites", "workspaces", "roles", "role_permissions",
                 "entitlements", "grants", "grants_snapshot", "grant_history",
                 "grants_user_id_is_an_active_org_member", "one_role_per_user_and_workspace_grants_",
                 "no_grants_in_personal_or_deleted_workspaces"):
        assert results[node] in ("success", "pass"), (node, results[node])
    assert not failed_nodes(first_sync.result)


def test_tables_land_in_main_staging_and_snapshots_and_only_effective_permissions_is_a_view(first_sync):
    tables = query(first_sync.baseline, """
        SELECT table_schema, table_name, table_type FROM information_schema.tables
        WHERE table_schema <> 'raw' ORDER BY 1, 2""")
    assert {(t["table_schema"], t["table_name"]) for t in tables} == {
        ("main", name) for name in ("users", "pending_invites", "workspaces", "roles",
                                    "role_permissions", "entitlements", "grants", "grant_history",
                                    "report_privileged_access", "report_disabled_members_with_grants",
                                    "report_members_without_workspace", "report_workspaces_without_admin",
                                    "report_grant_changes", "report_custom_role_holders",
                                    "report_stale_pending_invites", "review_sheet",
                                    # the whole access picture (DESIGN.md section 9)
                                    "effective_access", "effective_permissions", "user_login_methods",
                                    "user_scim_groups", "org_settings", "org_settings_history",
                                    "access_policies", "credentials", "service_accounts", "sso_settings",
                                    "resource_tags", "access_policy_resources", "report_access_policy_reach",
                                    "audit_events", "user_activity", "report_unused_access",
                                    "report_credential_hygiene", "report_implicit_admins",
                                    "report_unexplained_changes", "workspace_history", "user_history")
    } | {("main", name) for name in (  # Python's, from ensure_schema
        "sync_runs", "provisioning_requests", "provisioning_approvals", "provisioning_events",
        "notifications")} | {("staging", f"stg_langsmith__{name}") for name in (
        "org_members", "pending_invites", "workspaces", "roles", "workspace_memberships",
        "provisioning_observations")} | {
        ("snapshots", "grants_snapshot"), ("snapshots", "org_settings_snapshot"),
        ("snapshots", "workspaces_snapshot"), ("snapshots", "users_snapshot")}
    # effective_permissions is computed when read (its model says why); everything else is a table.
    assert {t["table_name"] for t in tables if t["table_type"] != "BASE TABLE"} == {"effective_permissions"}
    assert {t["table_type"] for t in tables} == {"BASE TABLE", "VIEW"}


def test_users(first_sync):
    synced = {"sync_id": SYNC_1, "synced_at": FETCHED_1}
    assert_table(first_sync.baseline, "users", "user_id", [
        {"user_id": ADA, "org_identity_id": "org-identity-ada", "email": "ada@example.com",
         "full_name": "Ada Lovelace", "display_name": "Ada", "is_disabled": False,
         "org_role_id": ORG_ADMIN, "org_role_name": "Organization Admin", "created_at": ts(5),
         "legacy_user_id": "legacy-ada", **synced,
         "provisioning_method": "bootstrap", "is_scim_managed": False},
        {"user_id": BOB, "org_identity_id": "org-identity-bob", "email": "bob@example.com",
         "full_name": "Bob B.", "display_name": "Bob B.", "is_disabled": False,
         "org_role_id": ORG_USER, "org_role_name": "Organization User", "created_at": ts(6),
         "legacy_user_id": None, **synced,
         "provisioning_method": "scim", "is_scim_managed": True},  # scim wins over saml:jit
        {"user_id": CY, "org_identity_id": "org-identity-cy", "email": "cy@example.com",
         "full_name": "Cy Young", "display_name": "Cy", "is_disabled": True,
         "org_role_id": ORG_USER, "org_role_name": "Organization User", "created_at": ts(7),
         "legacy_user_id": "legacy-cy", **synced,
         "provisioning_method": None, "is_scim_managed": False},  # no login method listed
    ])


def test_login_methods_scim_groups_and_effective_access(first_sync):
    db = first_sync.baseline
    assert {(r["user_id"], r["provider"], r["provisioning_method"])
            for r in query(db, "SELECT * FROM main.user_login_methods")} == {
        (ADA, "email", "bootstrap"), (BOB, "supabase:sso", "saml:jit"), (BOB, "supabase:sso", "scim")}
    [group] = query(db, "SELECT * FROM main.user_scim_groups")
    assert (group["user_id"], group["group_kind"], group["org_role_id"], group["workspace_name"],
            sorted(group["workspace_ids"]), group["workspace_role_id"]) == (
        BOB, "workspace", ORG_USER, "Research", sorted([RESEARCH, RESEARCH_TWO]), WS_EDITOR)
    # Ada, an Organization Admin, is implicitly Admin of both shared workspaces; listed Admin of
    # one of them. Never in a personal or deleted workspace.
    paths = {(r["user_id"], r["workspace_id"], r["role_id"], r["source"])
             for r in query(db, "SELECT * FROM main.effective_access")}
    assert paths == {
        (ADA, RESEARCH, WS_ADMIN, "direct"), (BOB, RESEARCH, WS_EDITOR, "direct"),
        (CY, RESEARCH, WS_VIEWER, "direct"), (BOB, RESEARCH_TWO, WS_AUDITOR, "direct"),
        (ADA, RESEARCH, WS_ADMIN, "organization_admin"), (ADA, RESEARCH_TWO, WS_ADMIN, "organization_admin"),
    }
    # Each path names its member (Cy, disabled, flagged), workspace and role, and says how it is held.
    listed = "listed member of the workspace"
    implicit = "implicit Admin of an Organization Admin (organization role Organization Admin)"
    assert {r["effective_access_id"]: (r["email"], r["is_disabled"], r["workspace_display_name"], r["role_name"],
                                       r["source_detail"])
            for r in query(db, "SELECT * FROM main.effective_access")} == {
        f"{ADA}:{RESEARCH}:{WS_ADMIN}:direct": ("ada@example.com", False, "Research", "Admin", listed),
        f"{BOB}:{RESEARCH}:{WS_EDITOR}:direct": ("bob@example.com", False, "Research", "Editor", listed),
        f"{CY}:{RESEARCH}:{WS_VIEWER}:direct": ("cy@example.com", True, "Research", "Viewer", listed),
        f"{BOB}:{RESEARCH_TWO}:{WS_AUDITOR}:direct": ("bob@example.com", False, "Research", "Deployment Auditor",
                                                      listed),
        f"{ADA}:{RESEARCH}:{WS_ADMIN}:organization_admin": ("ada@example.com", False, "Research", "Admin", implicit),
        f"{ADA}:{RESEARCH_TWO}:{WS_ADMIN}:organization_admin": ("ada@example.com", False, "Research", "Admin",
                                                                implicit),
    }
    assert [(r["user_id"], r["workspace_id"]) for r in query(db, "SELECT * FROM main.report_implicit_admins")] == [
        (ADA, RESEARCH_TWO)]
    permissions = {(r["user_id"], r["workspace_id"], r["permission"]): sorted(r["sources"])
                   for r in query(db, "SELECT * FROM main.effective_permissions")}
    role_permissions = {r["role_id"]: r["permissions"] for r in ROLES}
    expected: dict = {}
    for user, workspace, role, source in paths:
        for permission in role_permissions[role]:
            expected.setdefault((user, workspace, permission), set()).add(source)
    assert permissions == {key: sorted(sources) for key, sources in expected.items()}


def test_a_scim_group_names_roles_and_workspaces_in_either_unicode_form(first_sync, tmp_path):
    """An identity provider and LangSmith each keep a name as it was typed: "É" as one character
    (NFC) or "E" + U+0301 (NFD, as macOS keyboards type it). Bob's group spells the workspace
    decomposed and the role composed; LangSmith has them the other way round: the same names."""
    db_path = tmp_path / "working.duckdb"
    copy_database(first_sync.baseline, db_path)
    with duckdb.connect(str(db_path)) as con:
        con.execute(f"UPDATE {RAW_SCHEMA}.workspaces SET display_name = '\u00c9quipe' WHERE workspace_id = ?",
                    [RESEARCH])
        con.execute(f"UPDATE {RAW_SCHEMA}.roles SET display_name = 'E\u0301diteur' WHERE role_id = ?", [WS_EDITOR])
        con.execute(f"UPDATE {RAW_SCHEMA}.org_members SET scim_groups = ? WHERE ls_user_id = ?",
                    [["LS:Organization User:E\u0301quipe:\u00c9diteur"], BOB])

    result = dbt_build(db_path, tmp_path, ("run", "--select", "+user_scim_groups"))

    assert result.returncode == 0, result.output
    [group] = query(db_path, "SELECT * FROM main.user_scim_groups")
    assert (group["group_kind"], group["org_role_id"], group["workspace_ids"], group["workspace_role_id"]) == (
        "workspace", ORG_USER, [RESEARCH], WS_EDITOR)
    assert group["scim_group"] == "LS:Organization User:E\u0301quipe:\u00c9diteur"  # as LangSmith sent it


def test_reports_that_show_a_role_build_before_any_inventory_with_no_deny_policies(first_sync):
    """The core sync builds before the inventory ever ran (raw.access_policies exists, empty):
    the reports that flag deny policies are built, every row with an empty list, never null.
    (With policies: the dbt unit tests of models/reports/_reports_unit_tests.yml, and
    sync/test_access_picture.py against the sandbox.)"""
    db = first_sync.baseline
    assert query(db, "SELECT count(*) FROM main.access_policies") == [{"count_star()": 0}]
    privileged = query(db, "SELECT grant_id, deny_policy_names FROM main.report_privileged_access")
    assert {r["grant_id"] for r in privileged} == {
        f"organization_role:{ORG_ADMIN}:{ADA}", ws_grant(RESEARCH, WS_ADMIN, ADA)}
    sheet = query(db, "SELECT grant_id, deny_policy_names FROM main.review_sheet")
    assert {r["grant_id"] for r in sheet} == GRANTS_SYNC_1
    custom = query(db, "SELECT grant_id, deny_policy_names FROM main.report_custom_role_holders")
    assert {r["grant_id"] for r in custom} == {ws_grant(RESEARCH_TWO, WS_AUDITOR, BOB)}
    assert all(r["deny_policy_names"] == [] for r in privileged + sheet + custom)


def test_pending_invites(first_sync):
    assert_table(first_sync.baseline, "pending_invites", "invite_id", [
        {"invite_id": "invite-dee", "email": "dee@example.com", "org_role_id": ORG_USER,
         "org_role_name": "Organization User", "workspace_ids": [RESEARCH],
         "workspace_role_id": WS_EDITOR, "created_at": ts(8), "sync_id": SYNC_1,
         "synced_at": FETCHED_1},
    ])


def test_workspaces_leave_out_personal_and_deleted(first_sync):
    synced = {"organization_id": ORG_ID, "sync_id": SYNC_1, "synced_at": FETCHED_1}
    assert_table(first_sync.baseline, "workspaces", "workspace_id", [
        {"workspace_id": RESEARCH, "display_name": "Research", "tenant_handle": "research",
         "created_at": ts(1), **synced},
        {"workspace_id": RESEARCH_TWO, "display_name": "Research", "tenant_handle": "research-2",
         "created_at": ts(2), **synced},
    ])


def test_roles(first_sync):
    def role(role_id, name, display_name, description, scope, is_custom, org, count):
        return {"role_id": role_id, "name": name, "display_name": display_name,
                "description": description, "access_scope": scope, "is_custom": is_custom,
                "organization_id": org, "permission_count": count,
                "is_restricted": True if role_id == WS_AUDITOR else None, "sync_id": SYNC_1,
                "synced_at": FETCHED_1}

    assert_table(first_sync.baseline, "roles", "role_id", [
        # a permission the API lists twice counts once, as in role_permissions
        role(WS_AUDITOR, "CUSTOM", "Deployment Auditor", "Reads deployments.", "workspace",
             True, ORG_ID, 2),
        role(ORG_ADMIN, "ORGANIZATION_ADMIN", "Organization Admin",
             "Full access to the organization.", "organization", False, None, 2),
        role(ORG_USER, "ORGANIZATION_USER", "Organization User", "Member of the organization.",
             "organization", False, None, 1),
        role(WS_ADMIN, "WORKSPACE_ADMIN", "Admin", "Manages a workspace.", "workspace", False,
             None, 2),
        role(WS_EDITOR, "WORKSPACE_USER", "Editor", "Edits a workspace.", "workspace", False,
             None, 2),
        role(WS_VIEWER, "WORKSPACE_VIEWER", "Viewer", "Read-only access to a workspace.",
             "workspace", False, None, 1),
    ])


def test_role_permissions(first_sync):
    rows = rows_by(first_sync.baseline, "role_permissions", "role_id, permission")
    assert [(r["role_id"], r["permission"]) for r in rows] == [
        (WS_AUDITOR, "deployments:read"),
        (WS_AUDITOR, "workspaces:read"),
        (ORG_ADMIN, "organization:manage"),
        (ORG_ADMIN, "organization:read"),
        (ORG_USER, "organization:read"),
        (WS_ADMIN, "workspaces:manage-members"),
        (WS_ADMIN, "workspaces:read"),
        (WS_EDITOR, "runs:create"),
        (WS_EDITOR, "workspaces:read"),
        (WS_VIEWER, "workspaces:read"),
    ]


def test_entitlements(first_sync):
    def org_role(role_id, name):
        return {"entitlement_id": f"organization_role:{role_id}",
                "entitlement_type": "organization_role", "role_id": role_id,
                "workspace_id": None, "role_name": name, "display_name": name,
                "is_provisionable": False, "workspace_display_name": None,
                "is_custom_role": False}

    def ws_role(workspace_id, role_id, role_name, is_custom=False):
        return {"entitlement_id": f"workspace_role:{workspace_id}:{role_id}",
                "entitlement_type": "workspace_role", "role_id": role_id,
                "workspace_id": workspace_id, "role_name": role_name,
                # both workspaces are called "Research": display names repeat, ids do not
                "display_name": f"Research / {role_name}", "is_provisionable": True,
                "workspace_display_name": "Research", "is_custom_role": is_custom}

    assert_table(first_sync.baseline, "entitlements", "entitlement_id", [
        org_role(ORG_ADMIN, "Organization Admin"),
        org_role(ORG_USER, "Organization User"),
        ws_role(RESEARCH, WS_AUDITOR, "Deployment Auditor", is_custom=True),
        ws_role(RESEARCH, WS_ADMIN, "Admin"),
        ws_role(RESEARCH, WS_EDITOR, "Editor"),
        ws_role(RESEARCH, WS_VIEWER, "Viewer"),
        ws_role(RESEARCH_TWO, WS_AUDITOR, "Deployment Auditor", is_custom=True),
        ws_role(RESEARCH_TWO, WS_ADMIN, "Admin"),
        ws_role(RESEARCH_TWO, WS_EDITOR, "Editor"),
        ws_role(RESEARCH_TWO, WS_VIEWER, "Viewer"),
    ])


def test_grants(first_sync):
    def org_role(user, email, role_id, role_name, scim=False):
        entitlement = f"organization_role:{role_id}"
        return {"grant_id": f"{entitlement}:{user}", "entitlement_id": entitlement,
                "entitlement_type": "organization_role", "user_id": user, "email": email,
                "workspace_id": None, "role_id": role_id, "role_name": role_name,
                "is_provisionable": False, "workspace_identity_id": None,
                "verified_at": None, "verified_by_request_id": None, "is_scim_managed": scim}

    def ws_role(workspace_id, user, email, role_id, role_name, identity, scim=False):
        entitlement = ws_entitlement(workspace_id, role_id)
        return {"grant_id": f"{entitlement}:{user}", "entitlement_id": entitlement,
                "entitlement_type": "workspace_role", "user_id": user, "email": email,
                "workspace_id": workspace_id, "role_id": role_id, "role_name": role_name,
                "is_provisionable": True, "workspace_identity_id": identity,
                # nothing provisioned yet: every grant is as the sync listed it
                "verified_at": None, "verified_by_request_id": None, "is_scim_managed": scim}

    # Not here: Ada's personal workspace, Bob's deleted workspace, Dee's pending invite.
    # Ada (an Organization Admin) has implicit rights in Research Two, but no listed row there.
    assert_table(first_sync.baseline, "grants", "grant_id", [
        org_role(ADA, "ada@example.com", ORG_ADMIN, "Organization Admin"),
        # Bob's SCIM group names his org role, and Editor in a workspace named Research.
        org_role(BOB, "bob@example.com", ORG_USER, "Organization User", scim=True),
        org_role(CY, "cy@example.com", ORG_USER, "Organization User"),
        ws_role(RESEARCH, ADA, "ada@example.com", WS_ADMIN, "Admin", "ws-identity-research-ada"),
        ws_role(RESEARCH, BOB, "bob@example.com", WS_EDITOR, "Editor", "ws-identity-research-bob", scim=True),
        ws_role(RESEARCH, CY, "cy@example.com", WS_VIEWER, "Viewer", "ws-identity-research-cy"),
        ws_role(RESEARCH_TWO, BOB, "bob@example.com", WS_AUDITOR, "Deployment Auditor", None),
    ])
    assert {r["grant_id"] for r in rows_by(first_sync.baseline, "grants", "grant_id")} == GRANTS_SYNC_1


def test_grant_history_after_first_sync(first_sync):
    rows = rows_by(first_sync.baseline, "grant_history", "grant_id")
    assert {r["grant_id"] for r in rows} == GRANTS_SYNC_1
    current = {r["grant_id"]: r for r in rows_by(first_sync.baseline, "grants", "grant_id")}
    for row in rows:
        grant = current[row["grant_id"]]
        for column in ("entitlement_id", "entitlement_type", "user_id", "email", "workspace_id",
                       "role_id", "role_name", "is_provisionable"):
            assert row[column] == grant[column]
        assert first_sync.built_before <= row["valid_from"] <= first_sync.built_after
        assert row["valid_to"] is None
        assert row["is_current"] is True


# --- history across syncs ----------------------------------------------------------------------


def clock_past(moment: dt.datetime) -> None:
    """Return once the clock reads later than ``moment`` (microseconds: a few iterations), so the
    next build's timestamps are strictly after it."""
    while dt.datetime.now(UTC) <= moment:
        pass


def access_at(db_path: Path, at: dt.datetime) -> set[str]:
    rows = query(db_path, """
        SELECT grant_id FROM main.grant_history
        WHERE valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)""", [at, at])
    return {r["grant_id"] for r in rows}


def test_grant_history_across_syncs(first_sync):
    db_path, work_dir = first_sync.db_path, first_sync.work_dir  # the first sync's database
    history_1 = {r["grant_id"]: r for r in rows_by(db_path, "grant_history", "grant_id")}
    between_1_and_2 = dt.datetime.now(UTC)
    clock_past(between_1_and_2)

    # sync 2: a role change, a revoke, a new grant
    write_raw_sync(db_path, "sync-2", dt.datetime(2026, 2, 2, 9, tzinfo=UTC), MEMBERSHIPS_SYNC_2)
    before_2 = dt.datetime.now(UTC)
    result = dbt_build(db_path, work_dir)
    after_2 = dt.datetime.now(UTC)
    assert result.returncode == 0, result.output
    assert {r["grant_id"] for r in rows_by(db_path, "grants", "grant_id")} == GRANTS_SYNC_2

    history_2 = rows_by(db_path, "grant_history", "grant_id, valid_from")
    by_grant = {}
    for row in history_2:
        by_grant.setdefault(row["grant_id"], []).append(row)
    assert set(by_grant) == GRANTS_SYNC_1 | GRANTS_SYNC_2
    assert all(len(intervals) == 1 for intervals in by_grant.values())
    intervals = {grant: rows[0] for grant, rows in by_grant.items()}

    closed = {ws_grant(RESEARCH, WS_EDITOR, BOB), ws_grant(RESEARCH, WS_VIEWER, CY)}
    opened = {ws_grant(RESEARCH, WS_VIEWER, BOB), ws_grant(RESEARCH_TWO, WS_EDITOR, ADA)}
    unchanged = GRANTS_SYNC_1 - closed
    for grant in unchanged:  # untouched: the same interval, still open
        assert intervals[grant] == history_1[grant]
    for grant in closed:
        assert intervals[grant]["valid_from"] == history_1[grant]["valid_from"]
        assert before_2 <= intervals[grant]["valid_to"] <= after_2
        assert intervals[grant]["is_current"] is False
    for grant in opened:
        assert before_2 <= intervals[grant]["valid_from"] <= after_2
        assert intervals[grant]["valid_to"] is None
    # Bob's role change: the old role's interval ends exactly when the new one starts
    assert (intervals[ws_grant(RESEARCH, WS_EDITOR, BOB)]["valid_to"]
            == intervals[ws_grant(RESEARCH, WS_VIEWER, BOB)]["valid_from"])

    # who had access: between the builds, the first state; now, the second
    assert access_at(db_path, between_1_and_2) == GRANTS_SYNC_1
    assert access_at(db_path, dt.datetime.now(UTC)) == GRANTS_SYNC_2
    assert access_at(db_path, first_sync.built_before - dt.timedelta(seconds=1)) == set()
    # No provisioning request: every change of sync 2 is drift, seen by its build.
    unexplained_2 = {
        (r["change"], r["user_id"], r["workspace_id"], r["role_id"], r["previous_role_id"], r["sync_id"])
        for r in rows_by(db_path, "report_unexplained_changes", "user_id")}
    assert unexplained_2 == {
        ("role_changed", BOB, RESEARCH, WS_VIEWER, WS_EDITOR, "sync-2"),
        ("removed", CY, RESEARCH, WS_VIEWER, None, "sync-2"),
        ("added", ADA, RESEARCH_TWO, WS_EDITOR, None, "sync-2"),
    }
    assert {r["seen_at"] for r in rows_by(db_path, "report_unexplained_changes", "user_id")} == {
        intervals[ws_grant(RESEARCH, WS_VIEWER, BOB)]["valid_from"]}
    between_2_and_3 = dt.datetime.now(UTC)
    clock_past(between_2_and_3)

    # sync 3: Cy's revoked grant comes back, as a new interval
    write_raw_sync(db_path, "sync-3", dt.datetime(2026, 2, 3, 9, tzinfo=UTC), MEMBERSHIPS_SYNC_3)
    before_3 = dt.datetime.now(UTC)
    result = dbt_build(db_path, work_dir)
    after_3 = dt.datetime.now(UTC)
    assert result.returncode == 0, result.output

    cy_grant = ws_grant(RESEARCH, WS_VIEWER, CY)
    cy_intervals = query(db_path, """
        SELECT valid_from, valid_to, is_current FROM main.grant_history
        WHERE grant_id = ? ORDER BY valid_from""", [cy_grant])
    assert cy_intervals == [
        {"valid_from": history_1[cy_grant]["valid_from"],
         "valid_to": intervals[cy_grant]["valid_to"], "is_current": False},
        {"valid_from": cy_intervals[1]["valid_from"], "valid_to": None, "is_current": True},
    ]
    assert before_3 <= cy_intervals[1]["valid_from"] <= after_3
    history_3 = rows_by(db_path, "grant_history", "grant_interval_id")
    assert len(history_3) == len(history_2) + 1
    assert {r["grant_id"] for r in history_3 if r["is_current"]} == GRANTS_SYNC_3
    assert access_at(db_path, between_1_and_2) == GRANTS_SYNC_1
    assert access_at(db_path, between_2_and_3) == GRANTS_SYNC_2
    assert access_at(db_path, dt.datetime.now(UTC)) == GRANTS_SYNC_3
    # The drift report keeps sync 2's changes and appends sync 3's.
    unexplained_3 = {
        (r["change"], r["user_id"], r["workspace_id"], r["role_id"], r["previous_role_id"], r["sync_id"])
        for r in rows_by(db_path, "report_unexplained_changes", "user_id")}
    assert unexplained_3 == unexplained_2 | {("added", CY, RESEARCH, WS_VIEWER, None, "sync-3")}


def test_a_member_who_left_the_org_ends_in_user_history_when_their_grants_end(first_sync, tmp_path):
    """A member no sync lists any more has left the org: users_snapshot closes their
    user_history interval at the build that no longer saw them, the very instant their grants
    end in grant_history (one instant per build, macros/snapshot_get_time.sql), so "was this
    member in the org at T" and "who had access at T" agree. Coming back opens a new interval."""
    db_path = tmp_path / "working.duckdb"
    copy_database(first_sync.baseline, db_path)

    def intervals(table: str) -> list[dict]:
        return query(db_path, f"""
            SELECT valid_from, valid_to, is_current FROM main.{table} WHERE user_id = ?
            ORDER BY valid_from, valid_to""", [CY])

    [joined] = intervals("user_history")
    clock_past(joined["valid_from"])
    # sync 2: Cy has left the org, and so every workspace
    write_raw_sync(db_path, "sync-2", dt.datetime(2026, 2, 2, 9, tzinfo=UTC),
                   [m for m in MEMBERSHIPS_SYNC_1 if m["ls_user_id"] != CY],
                   members=[m for m in ORG_MEMBERS if m["ls_user_id"] != CY])
    before_2 = dt.datetime.now(UTC)
    result = dbt_build(db_path, tmp_path)
    after_2 = dt.datetime.now(UTC)
    assert result.returncode == 0, result.output

    [left] = intervals("user_history")
    assert left["valid_from"] == joined["valid_from"] and left["is_current"] is False
    assert before_2 <= left["valid_to"] <= after_2
    assert {(r["valid_to"], r["is_current"]) for r in intervals("grant_history")} == {(left["valid_to"], False)}

    # sync 3: Cy is back, with the org role and the workspace role they had
    clock_past(after_2)
    write_raw_sync(db_path, "sync-3", dt.datetime(2026, 2, 3, 9, tzinfo=UTC), MEMBERSHIPS_SYNC_1)
    result = dbt_build(db_path, tmp_path)
    assert result.returncode == 0, result.output
    first, back = intervals("user_history")
    assert first == left and back["valid_to"] is None and back["is_current"] is True
    assert {(r["valid_from"], r["is_current"]) for r in intervals("grant_history") if r["valid_to"] is None} == {
        (back["valid_from"], True)}


def test_a_sync_opens_an_interval_only_where_a_value_the_history_watches_changed(first_sync, tmp_path):
    """Each history opens a new interval for what it watches only (check_cols in snapshots/*.yml):
    user_history a member disabled or enabled, workspace_history a rename, org_settings_history a
    setting's value. A new email or full name, a new workspace handle or another sync reading the
    same value leaves every interval as it was, grant_history's too (its rows carry the member's
    email): "who could act at T" counts intervals, not edits."""
    db_path = tmp_path / "working.duckdb"
    copy_database(first_sync.baseline, db_path)
    histories = {"user_history": "user_id", "grant_history": "grant_id", "workspace_history": "workspace_id",
                 "org_settings_history": "setting"}

    def write_org_settings(sync_id: str, fetched_at: dt.datetime, settings: dict[str, str]) -> None:
        with duckdb.connect(str(db_path)) as con:
            con.execute(f"DELETE FROM {RAW_SCHEMA}.org_settings")
            insert_rows(con, "org_settings", [{"sync_id": sync_id, "fetched_at": fetched_at, "setting": setting,
                                               "value": value} for setting, value in settings.items()])

    def intervals() -> dict[str, set[tuple]]:
        return {table: {tuple(r.values()) for r in query(
                    db_path, f"SELECT {key}, valid_from, valid_to FROM main.{table}")}
                for table, key in histories.items()}

    # The baseline read no org settings: a build of sync 1's opens their intervals first.
    write_org_settings(SYNC_1, FETCHED_1, {"sso_only": "false", "tier": "plus"})
    assert dbt_build(db_path, tmp_path).returncode == 0
    before = intervals()
    clock_past(dt.datetime.now(UTC))
    # sync 2: Ada has a new email and full name, Cy is enabled again; Research has a new handle,
    # Research Two a new name; sso_only is now true, the tier as it was.
    members = [{**m, "email": "ada.king@example.com", "full_name": "Ada King"} if m["ls_user_id"] == ADA
               else {**m, "is_disabled": False} if m["ls_user_id"] == CY else m for m in ORG_MEMBERS]
    workspaces = [{**w, "tenant_handle": "research-one"} if w["workspace_id"] == RESEARCH
                  else {**w, "display_name": "Research Two"} if w["workspace_id"] == RESEARCH_TWO else w
                  for w in WORKSPACES]
    write_raw_sync(db_path, "sync-2", dt.datetime(2026, 2, 2, 9, tzinfo=UTC), MEMBERSHIPS_SYNC_1,
                   members=members, workspaces=workspaces)
    write_org_settings("sync-2", dt.datetime(2026, 2, 2, 9, tzinfo=UTC), {"sso_only": "true", "tier": "plus"})
    result = dbt_build(db_path, tmp_path)
    assert result.returncode == 0, result.output
    after = intervals()

    changed = {table: {row[0] for row in before[table] ^ after[table]} for table in histories}
    assert changed == {"user_history": {CY}, "grant_history": set(), "workspace_history": {RESEARCH_TWO},
                       "org_settings_history": {"sso_only"}}
    # the changed ones: the interval closed, and the next one opened at that instant
    for table, key in (("user_history", CY), ("workspace_history", RESEARCH_TWO), ("org_settings_history", "sso_only")):
        [(_, opened, closed), (_, reopened, still_open)] = sorted(r for r in after[table] if r[0] == key)
        assert closed == reopened and still_open is None, table


def test_a_setting_the_org_info_no_longer_gives_ends_in_org_settings_history(first_sync, tmp_path):
    """A setting the latest sync's org info no longer gives is closed in org_settings_history at
    that build's instant (hard deletes invalidated, snapshots/org_settings_snapshot.yml): "what
    was the setting at T" finds no value after it, and org_settings no longer lists it."""
    db_path = tmp_path / "working.duckdb"
    copy_database(first_sync.baseline, db_path)

    def write_org_settings(sync_id: str, fetched_at: dt.datetime, settings: dict[str, str]) -> None:
        with duckdb.connect(str(db_path)) as con:
            con.execute(f"DELETE FROM {RAW_SCHEMA}.org_settings")
            insert_rows(con, "org_settings", [{"sync_id": sync_id, "fetched_at": fetched_at, "setting": setting,
                                               "value": value} for setting, value in settings.items()])

    write_org_settings(SYNC_1, FETCHED_1, {"sso_only": "false", "invites_enabled": "true"})
    assert dbt_build(db_path, tmp_path).returncode == 0
    [opened] = query(db_path, "SELECT valid_from FROM main.org_settings_history WHERE setting = 'invites_enabled'")
    clock_past(opened["valid_from"])
    # sync 2: the org info gives sso_only alone
    write_org_settings("sync-2", dt.datetime(2026, 2, 2, 9, tzinfo=UTC), {"sso_only": "false"})
    before_2 = dt.datetime.now(UTC)
    result = dbt_build(db_path, tmp_path)
    after_2 = dt.datetime.now(UTC)
    assert result.returncode == 0, result.output

    history = query(db_path, "SELECT setting, value, valid_from, valid_to, is_current FROM main.org_settings_history "
                             "ORDER BY setting, valid_from")
    [invites, sso_only] = history
    assert (invites["setting"], invites["value"], invites["valid_from"], invites["is_current"]) == (
        "invites_enabled", "true", opened["valid_from"], False)
    assert before_2 <= invites["valid_to"] <= after_2
    assert (sso_only["setting"], sso_only["valid_from"], sso_only["valid_to"]) == (
        "sso_only", opened["valid_from"], None)
    assert query(db_path, "SELECT setting FROM main.org_settings") == [{"setting": "sso_only"}]


# --- the blocking checks -----------------------------------------------------------------------


STRANGER = "user-stranger"  # listed in a workspace, but not an active org member
UNLISTED = "ws-unlisted"  # a workspace with members that the workspace listing did not return

# Three independent integrity errors in one sync (one dbt build for all, to keep the module fast);
# each must fail its own check, with exactly one failing row (the unlisted workspace fails two).
BROKEN_MEMBERSHIPS = [
    membership(RESEARCH, STRANGER, WS_EDITOR, "ws-identity-stranger"),
    membership(RESEARCH, BOB, WS_ADMIN, "ws-identity-bob-2"),  # Bob is already Editor there
    membership(UNLISTED, ADA, WS_VIEWER, "ws-identity-unlisted-ada"),  # a workspace the listing lacks
]


@dataclass
class BrokenSync:
    db_path: Path
    result: DbtResult


@pytest.fixture(scope="module")
def broken_sync(first_sync, tmp_path_factory) -> BrokenSync:
    """The first sync's database, renamed (its catalog name changes), then a broken sync built on it."""
    work_dir = tmp_path_factory.mktemp("dbt_broken_sync")
    db_path = work_dir / "broken_sync.duckdb"
    copy_database(first_sync.baseline, db_path)
    write_raw_sync(db_path, "sync-broken", dt.datetime(2026, 2, 4, 9, tzinfo=UTC),
                   MEMBERSHIPS_SYNC_1 + BROKEN_MEMBERSHIPS)
    return BrokenSync(db_path, dbt_build(db_path, work_dir))


def test_a_broken_sync_fails_the_build_and_leaves_history_untouched(first_sync, broken_sync):
    result = broken_sync.result
    assert result.returncode != 0
    assert failed_nodes(result) == {
        "grants_user_id_is_an_active_org_member",
        "one_role_per_user_and_workspace_grants_",
        "grants_workspace_id_is_a_shared_workspace",
        "grants_entitlement_id_is_a_known_entitlement",  # the unlisted workspace's, again
    }
    # the snapshot runs only after grants passed its checks
    assert result.results["grants"] == "success"
    assert result.results["grants_snapshot"] == "skipped"
    assert result.results["grant_history"] == "skipped"
    assert rows_by(broken_sync.db_path, "grant_history", "grant_interval_id") == rows_by(
        first_sync.baseline, "grant_history", "grant_interval_id")


def test_a_workspace_member_who_is_not_an_org_member_fails_the_build(broken_sync):
    result = broken_sync.result
    assert result.results["grants_user_id_is_an_active_org_member"] == "fail"
    assert result.failures["grants_user_id_is_an_active_org_member"] == 1
    assert "FAIL test grants_user_id_is_an_active_org_member (1 rows)" in result.output
    # the stranger's grant was kept so that the check could see it, not silently dropped
    assert query(broken_sync.db_path, "SELECT grant_id, email FROM main.grants WHERE user_id = ?",
                 [STRANGER]) == [
        {"grant_id": ws_grant(RESEARCH, WS_EDITOR, STRANGER), "email": None}]


def test_two_roles_for_one_user_in_one_workspace_fail_the_build(broken_sync):
    result = broken_sync.result
    assert result.results["one_role_per_user_and_workspace_grants_"] == "fail"
    assert result.failures["one_role_per_user_and_workspace_grants_"] == 1
    assert "FAIL test one_role_per_user_and_workspace_grants_ (1 rows)" in result.output
    bob_in_research = query(broken_sync.db_path, """
        SELECT role_id FROM main.grants WHERE user_id = ? AND workspace_id = ? ORDER BY 1""",
        [BOB, RESEARCH])
    assert bob_in_research == [{"role_id": WS_ADMIN}, {"role_id": WS_EDITOR}]


def test_a_membership_in_a_workspace_the_listing_lacks_fails_the_build(broken_sync):
    # Neither shared nor known to be personal or deleted: kept, so that the check sees it.
    result = broken_sync.result
    assert result.results["grants_workspace_id_is_a_shared_workspace"] == "fail"
    assert result.failures["grants_workspace_id_is_a_shared_workspace"] == 1
    assert result.failures["grants_entitlement_id_is_a_known_entitlement"] == 1
    assert query(broken_sync.db_path, "SELECT grant_id FROM main.grants WHERE workspace_id = ?", [UNLISTED]) == [
        {"grant_id": ws_grant(UNLISTED, WS_VIEWER, ADA)}]


def test_a_table_rebuilt_in_place_keeps_its_rows_when_the_rebuild_fails(first_sync, tmp_path):
    """The project's own `table` materialization (macros/materialization_table.sql) drops the
    old table and creates the new one in one transaction: a rebuild that fails after the drop
    (here on a login methods value that is not JSON, met while the rows are inserted) rolls
    back to the old table, and no intermediate or backup table is left behind."""
    db_path = tmp_path / "working.duckdb"
    copy_database(first_sync.baseline, db_path)
    before = query(db_path, "SELECT * FROM staging.stg_langsmith__org_members ORDER BY ls_user_id")
    assert before
    with duckdb.connect(str(db_path)) as con:
        con.execute(f"UPDATE {RAW_SCHEMA}.org_members SET login_methods = '[{{not json'")

    result = dbt_build(db_path, tmp_path, ("run", "--select", "stg_langsmith__org_members"))

    assert result.results == {"stg_langsmith__org_members": "error"}, result.output
    assert "Malformed JSON" in result.output
    assert query(db_path, "SELECT * FROM staging.stg_langsmith__org_members ORDER BY ls_user_id") == before
    assert query(db_path, "SELECT table_schema, table_name FROM information_schema.tables "
                          "WHERE table_name LIKE '%__dbt_%'") == []


def test_a_view_is_rebuilt_in_one_statement_and_a_failed_rebuild_keeps_the_old_one(first_sync, tmp_path):
    """The project's own `view` materialization (macros/materialization_view.sql) drops the old
    view and creates the new one in one transaction, with no work or backup relation (dbt's own
    creates `<model>__dbt_tmp` and renames twice); a rebuild that fails rolls back to the old view."""
    db_path = tmp_path / "working.duckdb"
    copy_database(first_sync.baseline, db_path)
    work_dir = tmp_path / "dbt"
    work_dir.mkdir()
    sql: list[str] = []

    def keep_sql(event) -> None:
        if event.info.name == "SQLQuery" and event.data.node_info.node_name == "effective_permissions":
            sql.append(event.data.sql)

    result = dbt_build(db_path, work_dir, ("run", "--select", "effective_permissions"), by_hand=True,
                       on_event=keep_sql)

    assert result.results == {"effective_permissions": "success"}, result.output
    assert [s for s in sql if "effective_permissions__dbt_" in s or "rename" in s.lower()] == []
    assert any("create view" in s for s in sql), sql
    permissions = "SELECT * FROM main.effective_permissions ORDER BY ALL"
    assert query(db_path, permissions) == query(first_sync.baseline, permissions)
    views = ("SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW' "
             "OR table_name LIKE '%__dbt_%' ORDER BY 1")
    assert query(db_path, views) == [{"table_name": "effective_permissions"}]

    with duckdb.connect(str(db_path)) as con:  # the view's query no longer binds: its rebuild fails
        con.execute("ALTER TABLE main.role_permissions RENAME COLUMN permission TO renamed")
    failed = dbt_build(db_path, work_dir, ("run", "--select", "effective_permissions"), by_hand=True)

    assert failed.results == {"effective_permissions": "error"}, failed.output
    assert query(db_path, views) == [{"table_name": "effective_permissions"}]


def test_a_repeated_or_missing_key_and_a_missing_required_value_fail_their_checks(
    first_sync, tmp_path
):
    """users_row_rules (its keys, user_id and org_identity_id, never null or repeated; its
    required columns filled) counts each bad key and each missing value, and says which rule."""
    db_path = tmp_path / "bad_users.duckdb"
    copy_database(first_sync.baseline, db_path)
    users = [row["user_id"] for row in rows_by(db_path, "users", "user_id")]
    assert len(users) >= 3
    repeated, keyless, undecided = users[:3]
    with duckdb.connect(str(db_path)) as con:
        con.execute("INSERT INTO main.users SELECT * FROM main.users WHERE user_id = ?", [repeated])
        con.execute("""
            INSERT INTO main.users
            SELECT * REPLACE (NULL AS user_id, 'identity-without-user' AS org_identity_id)
            FROM main.users WHERE user_id = ?""", [keyless])
        con.execute("UPDATE main.users SET is_disabled = NULL WHERE user_id = ?", [undecided])

    result = dbt_build(db_path, tmp_path, ("test", "--select", "users"))

    assert result.returncode != 0
    assert failed_nodes(result) == {"users_row_rules"}
    # the repeated user_id and the null one, the repeated org_identity_id, the missing is_disabled
    assert result.failures["users_row_rules"] == 4
    repeated_identity = next(r["org_identity_id"] for r in rows_by(first_sync.baseline, "users", "user_id")
                             if r["user_id"] == repeated)
    found = [(v["rule"], v["column_name"], v["value"]) for v in
             violations(db_path, tmp_path, "users_row_rules")]
    assert sorted(found, key=str) == sorted([
        ("not_null", "is_disabled", None),
        ("primary_key", "org_identity_id", repeated_identity),
        ("primary_key", "user_id", None),
        ("primary_key", "user_id", repeated),
    ], key=str)
    assert result.results["users_org_role_id_is_a_known_role"] == "pass"


def violations(db_path: Path, work_dir: Path, test_name: str) -> list[dict]:
    """The rows a test's compiled SQL (as dbt last compiled it in ``work_dir``) returns."""
    manifest = json.loads((work_dir / "target" / "manifest.json").read_text())
    # dbt names the file of a test whose name is long after a hash of the name: the node's path
    [path] = {node["path"] for node in manifest["nodes"].values()
              if node["resource_type"] == "test" and node["name"] == test_name}
    [compiled] = (work_dir / "target" / "compiled").rglob(path)
    return query(db_path, compiled.read_text())


def row_rules_tests(work_dir: Path) -> dict[str, tuple[str, dict]]:
    """Every row_rules test of the project: name -> (the table it checks, its arguments)."""
    manifest = json.loads((work_dir / "target" / "manifest.json").read_text())
    tests = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] == "test" and (node.get("test_metadata") or {}).get("name") == "row_rules":
            model = manifest["nodes"][node["attached_node"]]
            tests[node["name"]] = (f'{model["schema"]}.{model["alias"]}', node["test_metadata"]["kwargs"])
    return tests


def test_every_rule_of_every_row_rules_test_fails_the_build_on_a_planted_violation(first_sync, tmp_path):
    """row_rules stands for several tests in one query (a node and an asset check less for each
    rule folded in). Here every rule of every such test is broken at once, each by a row of its
    own: a repeated row (keys, unique combinations), then per rule a copy of a row with the
    required column null, the value not accepted, the reference unknown. Every row_rules test
    fails the build, and its rows name exactly the rules it declares, no fewer."""
    db_path = tmp_path / "planted.duckdb"
    copy_database(first_sync.baseline, db_path)
    tests = row_rules_tests(first_sync.work_dir)
    assert len(tests) >= 15
    expected: dict[str, set[tuple[str, str]]] = {}
    with duckdb.connect(str(db_path)) as con:
        for name, (table, rules) in tests.items():
            [(rows,)] = con.execute(f"SELECT count(*) FROM {table}").fetchall()
            if rows == 0:  # an empty report (nothing to report in the hand-made org)
                con.execute(f"INSERT INTO {table} DEFAULT VALUES")
            con.execute(f"INSERT INTO {table} SELECT * FROM {table} LIMIT 1")  # repeated keys
            planted = {"not_null": "NULL", "accepted_values": "'planted-value'",
                       "references": "'planted-unknown-id'"}
            for rule, value in planted.items():
                for column in rules.get(rule, []):
                    con.execute(f"INSERT INTO {table} SELECT * REPLACE ({value} AS {column}) "
                                f"FROM {table} LIMIT 1")
            expected[name] = (
                {("primary_key", column) for column in rules.get("primary_key", [])}
                | {(rule, column) for rule in planted for column in rules.get(rule, [])}
                | ({("unique_combination", ", ".join(rules["unique_combination"]))}
                   if rules.get("unique_combination") else set())
            )

    result = dbt_build(db_path, tmp_path, ("test", "--select", "test_name:row_rules"))

    assert result.returncode != 0
    assert {name: result.results[name] for name in tests} == {name: "fail" for name in tests}
    for name in tests:
        found = violations(db_path, tmp_path, name)
        assert {(v["rule"], v["column_name"]) for v in found} == expected[name], name
        assert result.failures[name] == len(found)


def test_each_generic_test_of_the_project_fails_on_its_own_planted_violations(first_sync, tmp_path):
    """The project's own generic tests (tests/generic/) other than row_rules, each fed rows that
    break it beside rows that only come close: each flags exactly the breaking rows. A null key;
    a membership missing its role, or its workspace and role; a grant in a personal and one in a
    deleted workspace; intervals of one grant that overlap (a closed and an open one, two open
    ones) or run backwards, beside intervals that only touch, belong to another grant or end as
    they start; and changes of the latest sync that give or take away a watched role, beside a
    change to an unwatched role and one an older sync saw."""
    db_path = tmp_path / "planted.duckdb"
    copy_database(first_sync.baseline, db_path)

    def interval(interval_id: str, grant_id: str, valid_from: str, valid_to: str | None) -> str:
        return (f"INSERT INTO main.grant_history SELECT * REPLACE ('{interval_id}' AS grant_interval_id, "
                f"'{grant_id}' AS grant_id, TIMESTAMPTZ '{valid_from}' AS valid_from, "
                f"{f'TIMESTAMPTZ {valid_to!r}' if valid_to else 'NULL'} AS valid_to) "
                "FROM main.grant_history LIMIT 1")

    with duckdb.connect(str(db_path)) as con:
        con.execute("INSERT INTO main.pending_invites SELECT * REPLACE (NULL AS invite_id) "
                    "FROM main.pending_invites LIMIT 1")
        for workspace_id, role_id in (("ws-planted", None), (None, None)):
            con.execute("INSERT INTO staging.stg_langsmith__workspace_memberships SELECT * REPLACE "
                        "(? AS workspace_id, ? AS role_id) FROM staging.stg_langsmith__workspace_memberships "
                        "LIMIT 1", [workspace_id, role_id])
        for workspace_id in (PERSONAL, DELETED):
            con.execute("INSERT INTO main.grants SELECT * REPLACE (? AS workspace_id) FROM main.grants "
                        "WHERE grant_id = ? AND workspace_id = ?",
                        [workspace_id, ws_grant(RESEARCH, WS_ADMIN, ADA), RESEARCH])
        for planted in (
            interval("planted-1", "planted-grant", "2026-01-01", "2026-01-10"),
            interval("planted-2", "planted-grant", "2026-01-10", "2026-01-20"),  # touches planted-1
            interval("planted-3", "planted-grant", "2026-01-15", None),  # overlaps planted-2
            interval("planted-4", "planted-grant", "2026-02-01", None),  # a second open one
            interval("planted-5", "planted-other-grant", "2026-01-01", "2026-01-10"),
            interval("planted-6", "planted-backwards-grant", "2026-01-10", "2026-01-05"),
            interval("planted-7", "planted-other-grant", "2025-12-20", "2026-01-01"),  # touches planted-5
            interval("planted-8", "planted-instant-grant", "2026-01-10", "2026-01-10"),  # ends as it starts
        ):
            con.execute(planted)
        con.executemany(
            "INSERT INTO main.report_unexplained_changes (change, user_id, workspace_id, role_id, "
            "previous_role_id, seen_at, sync_id) VALUES (?, ?, ?, ?, ?, TIMESTAMPTZ '2026-02-01 10:00+00', ?)", [
                ("role_changed", BOB, RESEARCH, WS_VIEWER, WS_ADMIN, SYNC_1),  # an Admin taken away
                ("role_changed", CY, None, ORG_ADMIN, ORG_USER, SYNC_1),  # an Organization Admin given
                ("added", CY, RESEARCH_TWO, WS_EDITOR, None, SYNC_1),  # not a watched role
                ("added", ADA, RESEARCH_TWO, WS_ADMIN, None, "sync-0"),  # seen by an older sync
            ])
    tests = {
        "primary_key_pending_invites_invite_id": "fail",
        "not_null_columns_stg_langsmith__workspace_memberships_workspace_id__role_id": "fail",
        "no_grants_in_personal_or_deleted_workspaces": "fail",
        "intervals_do_not_overlap_grant_history_grant_interval_id__grant_id": "fail",
        "unexplained_privileged_changes": "warn",  # severity warn: the sync still publishes
    }

    result = dbt_build(db_path, tmp_path, ("test", "--select", *tests))

    assert result.results == tests, result.output

    def found(test_name: str, *columns: str) -> list[tuple]:
        rows = violations(db_path, tmp_path, test_name)
        assert result.failures[test_name] == len(rows)
        return sorted((tuple(row[c] for c in columns) for row in rows), key=str)

    assert found("primary_key_pending_invites_invite_id", "key_value", "occurrences") == [(None, 1)]
    assert found("not_null_columns_stg_langsmith__workspace_memberships_workspace_id__role_id",
                 "workspace_id", "null_columns") == sorted([
                     ("ws-planted", "role_id"), (None, "workspace_id, role_id")], key=str)
    assert found("no_grants_in_personal_or_deleted_workspaces", "workspace_id", "is_personal", "is_deleted") == [
        (DELETED, False, True), (PERSONAL, True, False)]
    assert found("intervals_do_not_overlap_grant_history_grant_interval_id__grant_id",
                 "interval_key", "interval_id", "overlapping_interval_id") == [
        ("planted-backwards-grant", "planted-6", None),
        ("planted-grant", "planted-2", "planted-3"),
        ("planted-grant", "planted-3", "planted-4"),
    ]
    assert found("unexplained_privileged_changes", "user_id", "role_id", "previous_role_id") == [
        (BOB, WS_VIEWER, WS_ADMIN), (CY, ORG_ADMIN, ORG_USER)]

"""The shared history of the report tests: one org, three real syncs against the sandbox.

A sync takes ~15 s, so the whole package runs on one module-scoped history:

1. sync 1 on the generated org (copy kept: ``after_first``);
2. changes to the org (role changes, a revoke, a newcomer, an org-role change, a disabled
   member, a workspace left without Admin, a new unused custom role, fresh and old invites, a
   workspace deleted and one renamed), then sync 2, accepting the shrink (copy kept:
   ``after_second``);
3. sync 3 with nothing changed (the analysts' database: ``database``).

Expected tables are computed from the sandbox's ``OrgState``, never from the pipeline.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from langsmith_access.sandbox import OrgState, SandboxServer, generate_org
from langsmith_access.sandbox.org_state import (
    CUSTOM_ROLE_NAME,
    WORKSPACE_SCOPE,
    PendingOrgInvite,
    Role,
    format_timestamp,
)
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.helpers import point_at, run_sync

GrantKey = tuple[str, str, str | None]  # (entitlement_type, user_id, workspace_id)


def grant_map(org: OrgState) -> dict[GrantKey, str]:
    """Every grant the tables should hold for ``org``: key -> role_id."""
    grants: dict[GrantKey, str] = {
        ("organization_role", member.ls_user_id, None): member.org_role_id
        for member in org.active_members()
    }
    for workspace_id, user_id, _identity, role_id in org.workspace_membership_rows(shared_only=True):
        grants[("workspace_role", user_id, workspace_id)] = role_id
    return grants


def parquet_counts(directory: Path) -> dict[str, int]:
    import duckdb

    with duckdb.connect() as conn:
        return {
            path.stem: conn.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()[0]
            for path in sorted(directory.glob("*.parquet"))
        }


@dataclass
class Changes:
    role_changed: tuple[str, str, str, str]  # workspace, user, old role, new role
    revoked: tuple[str, str, str]  # workspace, user, role
    newcomer: str  # user id, added with an org role and one workspace role
    newcomer_workspace: tuple[str, str]  # workspace, role
    loner: str  # user id of a new member in no workspace
    promoted: tuple[str, str, str]  # user, old org role, new org role
    disabled: str  # user id of a member disabled while holding workspace grants
    without_admin: str  # workspace whose Admins all became Viewers
    unused_custom_role: str  # role id
    deleted_workspace: str  # a shared workspace with members, deleted
    renamed_workspace: tuple[str, str]  # workspace id, its name before


@dataclass
class History:
    org: OrgState
    api_key: str
    database: Path  # the analysts' database after sync 3
    after_first: Path  # copy of the analysts' database after sync 1
    after_second: Path  # copy after sync 2
    grants_first: dict[GrantKey, str]
    grants_second: dict[GrantKey, str]
    between_first_and_second: datetime
    third_sync_window: tuple[datetime, datetime]  # the clock just before and just after sync 3
    parquet_after_first: dict[str, int]
    changes: Changes
    run_ids: list[str]


def _change_the_org(org: OrgState) -> Changes:
    role = {name: org.role_by_name(name) for name in (
        "WORKSPACE_ADMIN", "WORKSPACE_USER", "WORKSPACE_VIEWER", "ORGANIZATION_ADMIN")}
    shared = org.shared_workspaces()
    # A workspace with a unique name and at least one Admin loses all of its Admins.
    names = [ws.display_name for ws in shared]
    without_admin = next(
        ws for ws in shared
        if names.count(ws.display_name) == 1
        and any(m.role_id == role["WORKSPACE_ADMIN"].id for m in ws.memberships.values())
    )
    for membership in list(without_admin.memberships.values()):
        if membership.role_id == role["WORKSPACE_ADMIN"].id:
            org.set_workspace_role(without_admin.id, membership.ls_user_id, role["WORKSPACE_VIEWER"].id)

    rows = [row for row in org.workspace_membership_rows(shared_only=True) if row[0] != without_admin.id]
    # An Editor becomes an Admin somewhere else.
    changed_ws, changed_user, _, old_role = next(r for r in rows if r[3] == role["WORKSPACE_USER"].id)
    org.set_workspace_role(changed_ws, changed_user, role["WORKSPACE_ADMIN"].id)
    # Someone loses a workspace.
    revoked_ws, revoked_user, _, revoked_role = next(
        r for r in rows if (r[0], r[1]) != (changed_ws, changed_user) and r[1] != changed_user
    )
    org.remove_workspace_membership(revoked_ws, revoked_user)
    # A newcomer joins with a workspace role; another member joins no workspace.
    newcomer = org.add_member("New.Comer@Example.com", "Nouveau Venu")
    org.add_workspace_membership(shared[1].id, newcomer.ls_user_id, role["WORKSPACE_USER"].id)
    loner = org.add_member("lone.wolf@example.org", "Lone Wolf")
    # An Organization User is promoted to Organization Admin.
    promoted = next(
        m for m in org.active_members()
        if org.roles[m.org_role_id].name == "ORGANIZATION_USER" and not m.is_disabled
        and m.ls_user_id not in (changed_user, revoked_user, newcomer.ls_user_id, loner.ls_user_id)
    )
    old_org_role = promoted.org_role_id
    org.set_org_role(promoted.ls_user_id, role["ORGANIZATION_ADMIN"].id)
    # A member holding workspace grants since the first sync is disabled (their grants stay), in
    # a workspace already changed above (the one deleted below is another).
    kept = {without_admin.id, changed_ws, revoked_ws, shared[1].id}
    disabled = next(
        m for m in org.active_members()
        if not m.is_disabled
        and m.ls_user_id not in (promoted.ls_user_id, newcomer.ls_user_id, loner.ls_user_id)
        and any(ms.workspace_id in kept for ms in org.memberships_of(m.ls_user_id))
    )
    org.set_disabled(disabled.ls_user_id, True)
    # A custom role nobody holds.
    unused = org.put_role(Role(
        org.new_id(), CUSTOM_ROLE_NAME, "Unused Reviewer", "Held by nobody.", WORKSPACE_SCOPE,
        ["workspaces:read"], organization_id=org.organization_id,
    ))
    # Invites: one 31 days old (stale), one 29 days old and one new (not stale).
    now = int(time.time())
    for days, email in ((31, "old.invite@example.com"), (29, "recent.invite@example.com")):
        org.put_pending_invite(PendingOrgInvite(
            id=org.new_id(), email=email, org_role_id=org.role_by_name("ORGANIZATION_USER").id,
            created_at=format_timestamp(now - days * 86400),
        ))
    org.add_pending_invite("brand.new@example.com")
    # A workspace untouched by the changes above, its name unique, is deleted (its members keep
    # their memberships in LangSmith); another is renamed.
    touched = kept
    deleted = next(ws for ws in shared if ws.id not in touched and names.count(ws.display_name) == 1
                   and ws.memberships)
    org.delete_workspace(deleted.id)
    renamed = org.workspace(changed_ws)
    renamed_from = renamed.display_name
    renamed.display_name = renamed_from + " (EU)"
    return Changes(
        role_changed=(changed_ws, changed_user, old_role, role["WORKSPACE_ADMIN"].id),
        revoked=(revoked_ws, revoked_user, revoked_role),
        newcomer=newcomer.ls_user_id,
        newcomer_workspace=(shared[1].id, role["WORKSPACE_USER"].id),
        loner=loner.ls_user_id,
        promoted=(promoted.ls_user_id, old_org_role, role["ORGANIZATION_ADMIN"].id),
        disabled=disabled.ls_user_id,
        without_admin=without_admin.id,
        unused_custom_role=unused.id,
        deleted_workspace=deleted.id,
        renamed_workspace=(renamed.id, renamed_from),
    )


def make_history(root: Path) -> History:
    org = generate_org(seed=23, members=40, workspaces=5, custom_roles=3)
    database = root / "data" / "access.duckdb"
    run_ids = []
    with pytest.MonkeyPatch.context() as monkeypatch, SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        first = run_sync()
        assert first.success, first.failure
        run_ids.append(first.run_id)
        after_first = root / "after_first.duckdb"
        shutil.copyfile(database, after_first)
        parquet_after_first = parquet_counts(AccessDatabase(database).parquet_path)
        grants_first = grant_map(org)
        between = datetime.now(timezone.utc)
        while datetime.now(timezone.utc) <= between:
            pass  # sync 2's timestamps come strictly after `between` (microseconds)

        changes = _change_the_org(org)
        # The deleted workspace's memberships are more than the shrink guard lets go unasked.
        second = run_sync(accept_shrink=True)
        assert second.success, second.failure
        run_ids.append(second.run_id)
        after_second = root / "after_second.duckdb"
        shutil.copyfile(database, after_second)

        before_third = datetime.now(timezone.utc)
        third = run_sync()  # nothing changed
        after_third = datetime.now(timezone.utc)
        assert third.success, third.failure
        run_ids.append(third.run_id)
        api_key = sandbox.api_key
    return History(
        org=org, api_key=api_key, database=database, after_first=after_first,
        after_second=after_second, grants_first=grants_first, grants_second=grant_map(org),
        between_first_and_second=between, third_sync_window=(before_third, after_third), parquet_after_first=parquet_after_first,
        changes=changes, run_ids=run_ids,
    )


def rows(database: Path, sql: str, params=None) -> list[dict]:
    """Read-only query of a database file, rows as dicts."""
    import duckdb

    with duckdb.connect(str(database), read_only=True) as conn:
        cursor = conn.execute(sql, params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

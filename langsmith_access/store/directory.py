"""Roles, workspaces and members as the latest sync has them: what governance checks names and
approvers against.

Each function takes an open connection (the working file, or a published copy) and reads
schema ``main`` only. ``grants`` there is the latest sync's listing plus every change
provisioning verified after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from langsmith_access.store.sql import email_key, scalar, table_exists

# Built-in role names (LangSmith's ``Role.name``; custom roles are all named CUSTOM).
WORKSPACE_ADMIN_ROLE = "WORKSPACE_ADMIN"
ORGANIZATION_ADMIN_ROLE = "ORGANIZATION_ADMIN"


@dataclass(frozen=True)
class RoleEntry:
    role_id: str
    name: str
    display_name: str
    access_scope: str  # 'organization' | 'workspace'


@dataclass(frozen=True)
class WorkspaceEntry:
    workspace_id: str
    display_name: str


@dataclass(frozen=True)
class MemberStanding:
    """What the latest sync says about one email, for deciding whether its owner may approve a
    request in one workspace."""

    email: str
    user_ids: tuple[str, ...]  # active (accepted) org members with this email, disabled ones too
    identity_ids: tuple[str, ...]  # their org identity ids (a request's --user may name one)
    disabled: bool  # every one of them is disabled
    pending_invite: bool  # an org invite to this email is still pending
    org_admin: bool  # an enabled one holds the Organization Admin org role
    workspace_admin: bool  # an enabled one holds the built-in Admin role in the workspace

    @property
    def is_member(self) -> bool:
        return bool(self.user_ids)


def is_synced(conn: duckdb.DuckDBPyConnection) -> bool:
    """True once a sync has built the tables names are checked against."""
    return all(table_exists(conn, "main", table) for table in ("users", "workspaces", "roles", "grants"))


def synced_roles(conn: duckdb.DuckDBPyConnection) -> list[RoleEntry]:
    """Every role definition, organization and workspace scoped, built-in and custom."""
    rows = conn.execute(
        "SELECT role_id, name, display_name, access_scope FROM main.roles "
        "ORDER BY access_scope DESC, display_name, role_id"
    ).fetchall()
    return [RoleEntry(*row) for row in rows]


def synced_workspaces(conn: duckdb.DuckDBPyConnection) -> list[WorkspaceEntry]:
    """Every shared, live workspace (personal and deleted ones are not in ``main.workspaces``)."""
    rows = conn.execute(
        "SELECT workspace_id, display_name FROM main.workspaces ORDER BY display_name, workspace_id"
    ).fetchall()
    return [WorkspaceEntry(*row) for row in rows]


def member_standing(conn: duckdb.DuckDBPyConnection, email: str, workspace_id: str | None) -> MemberStanding:
    """The standing of the org member(s) with ``email`` (compared as ``email_key`` says: in any case,
    and composed or decomposed alike)."""
    members = conn.execute(
        "SELECT users.user_id, users.is_disabled, roles.name = ? AS is_org_admin, users.org_identity_id "
        "FROM main.users AS users LEFT JOIN main.roles AS roles ON roles.role_id = users.org_role_id "
        f"WHERE {email_key('users.email')} = {email_key('?')} ORDER BY users.user_id",
        [ORGANIZATION_ADMIN_ROLE, email],
    ).fetchall()
    enabled = [user_id for user_id, is_disabled, _, _ in members if not is_disabled]
    org_admin = any(is_org_admin and not is_disabled for _, is_disabled, is_org_admin, _ in members)
    workspace_admin = bool(enabled and workspace_id is not None and scalar(
        conn,
        "SELECT count(*) FROM main.grants AS grants JOIN main.roles AS roles USING (role_id) "
        "WHERE grants.entitlement_type = 'workspace_role' AND grants.workspace_id = ? "
        "AND roles.name = ? AND list_contains(?, grants.user_id)",
        [workspace_id, WORKSPACE_ADMIN_ROLE, enabled],
    ))
    invited = scalar(
        conn,
        f"SELECT count(*) FROM main.pending_invites WHERE {email_key('email')} = {email_key('?')}",
        [email],
    )
    return MemberStanding(
        email=email,
        user_ids=tuple(user_id for user_id, _, _, _ in members),
        identity_ids=tuple(identity_id for _, _, _, identity_id in members if identity_id),
        disabled=bool(members) and not enabled,
        pending_invite=bool(invited),
        org_admin=org_admin,
        workspace_admin=workspace_admin,
    )


def admin_emails(conn: duckdb.DuckDBPyConnection, workspace_id: str | None) -> list[str]:
    """The emails of the enabled Organization Admins and, given ``workspace_id``, of the
    enabled holders of the built-in Admin role there: who ``org_admins`` / ``workspace_admins``
    name, as of the latest sync."""
    rows = conn.execute(
        "SELECT DISTINCT users.email FROM main.users AS users "
        "LEFT JOIN main.roles AS org_roles ON org_roles.role_id = users.org_role_id "
        "WHERE NOT users.is_disabled AND users.email IS NOT NULL AND (org_roles.name = $org_admin "
        "OR ($workspace_id IS NOT NULL AND users.user_id IN (SELECT grants.user_id FROM main.grants AS grants "
        "JOIN main.roles AS roles USING (role_id) WHERE grants.entitlement_type = 'workspace_role' "
        "AND grants.workspace_id = $workspace_id AND roles.name = $workspace_admin))) ORDER BY 1",
        {"org_admin": ORGANIZATION_ADMIN_ROLE, "workspace_id": workspace_id, "workspace_admin": WORKSPACE_ADMIN_ROLE},
    ).fetchall()
    return [email for (email,) in rows]

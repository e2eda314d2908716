"""Why LangSmith refused a workspace-member write, and what fixes it: for a failed request's
``status_detail`` and its audit event.

A refusal has two usual causes that the status code alone does not tell apart
(``langsmith-api.md``, "Key permissions and plan limits"): the key lacks
``workspaces:manage-members`` in that workspace, or the org's plan has no workspace RBAC
(``config.can_use_rbac`` false: below Enterprise, a workspace role is Admin or nothing). The
org's flags decide which; when they cannot be read, the message says both, as possibilities.
A third applies to restricted roles (Enterprise, ``Role.is_restricted``): only a holder of the
built-in Workspace Admin role may grant one, or change or remove a member who holds one; the
code LangSmith answers then is undocumented, so any refusal involving such a role is explained
by it.
"""

from __future__ import annotations

from typing import Any

from langsmith_access.langsmith.errors import (
    LangSmithError,
    PermissionDeniedError,
    RequestRejectedError,
)
from langsmith_access.langsmith.records import Role

WRITE_METHODS = ("POST", "PATCH", "DELETE")
WORKSPACE_ADMIN = "WORKSPACE_ADMIN"
MANAGE_MEMBERS = "workspaces:manage-members"
WORKSPACES_READ = "workspaces:read"  # what reading a workspace's member listing needs there


def workspace_rbac(org_info: dict[str, Any] | None) -> bool | None:
    """``config.can_use_rbac`` of the org info: True, False, or None when not said."""
    config = (org_info or {}).get("config")
    value = config.get("can_use_rbac") if isinstance(config, dict) else None
    return value if isinstance(value, bool) else None


def is_write_refusal(error: LangSmithError) -> bool:
    """A write LangSmith refused (403, or another 4xx that is not a conflict or a missing id)."""
    return error.method in WRITE_METHODS and isinstance(
        error, (PermissionDeniedError, RequestRejectedError)
    )


def explain_write_refusal(
    error: LangSmithError,
    *,
    role: Role | None,
    org_info: dict[str, Any] | None,
    held_role: Role | None = None,
    key_role_there: Role | None = None,
) -> str | None:
    """Cause and fix for a refused write, or None when ``error`` is not a refusal (a conflict, a
    missing id, a transient fault: their own messages already say what happened). ``role``: the
    role the write gives (or, for a removal, the one revoked); ``held_role``: the member's role
    before it; ``key_role_there``: the key's own role in that workspace, as the workspace
    listing names it (None where it names none: an Organization Admin's key)."""
    if not is_write_refusal(error):
        return None
    server_said = f"LangSmith answered {error.status_code}: {error.detail or error}"
    restricted = next((r for r in (role, held_role) if r is not None and r.is_restricted), None)
    # A key that may manage members there through a role other than the built-in Admin (one that
    # may not is refused for that, below).
    if (restricted is not None and key_role_there is not None and key_role_there.name != WORKSPACE_ADMIN
            and MANAGE_MEMBERS in key_role_there.permissions):
        return (
            f"restricted role: {restricted.display_name!r} is a restricted role, which only a "
            "holder of the built-in Workspace Admin role in the workspace (or an Organization "
            "Admin) may grant, or change or remove a member who holds it; the API key holds "
            f"{key_role_there.display_name!r} there. Fix: give the service key the built-in "
            "Workspace Admin role in that workspace (a custom role with "
            "workspaces:manage-members is not enough), or the Organization Admin role. "
            f"({server_said})"
        )
    role_name = role.display_name if role else "this"
    grants_non_admin = error.method != "DELETE" and role is not None and role.name != WORKSPACE_ADMIN
    rbac = workspace_rbac(org_info)
    if grants_non_admin and rbac is False:
        return (
            f"not in plan: this organization's plan has no workspace RBAC "
            f"(config.can_use_rbac is false), so a workspace role other than Admin, such as "
            f"{role_name!r}, cannot be granted. Fix: request the Admin role instead, or move the "
            f"organization to the Enterprise plan. ({server_said})"
        )
    if isinstance(error, PermissionDeniedError):
        maybe_plan = (
            " If the organization is not on the Enterprise plan, only the Admin role can be "
            "granted (its plan flags could not be read to tell)."
            if grants_non_admin and rbac is None
            else ""
        )
        return (
            "permission: the API key may not manage this workspace's members (it needs "
            "workspaces:manage-members there). Fix: give the service key the Workspace Admin role "
            f"in that workspace, or the Organization Admin role.{maybe_plan} ({server_said})"
        )
    return (
        f"rejected: LangSmith refused the request as invalid. Fix: check the role and member it "
        f"names still exist ({server_said})"
    )

"""Decide what one request needs, from the member's live state in that workspace. Pure.

A user holds at most one role per workspace, so a grant of another role is a role change (a
replacement), not a revoke plus a grant; a revoke removes the member only when they hold that
very role.
"""

from __future__ import annotations

from dataclasses import dataclass

ADD = "add"
CHANGE_ROLE = "change_role"
REMOVE = "remove"
NOTHING = "nothing"


@dataclass(frozen=True)
class Plan:
    kind: str  # add | change_role | remove | nothing
    current_role_id: str | None  # the live role before the change (None: not a member)
    target_role_id: str | None  # the role after the change (None: not a member)
    workspace_identity_id: str | None  # needed by change_role and remove
    explanation: str

    @property
    def needs_write(self) -> bool:
        return self.kind != NOTHING

    def role_to_write(self) -> str:
        """The role an add or a role change writes."""
        if self.target_role_id is None:
            raise ValueError(f"a {self.kind} plan without a target role cannot be written")
        return self.target_role_id

    def member_to_write(self) -> str:
        """The workspace identity a role change or a removal writes to."""
        if self.workspace_identity_id is None:
            raise ValueError(f"a {self.kind} plan without the member's workspace identity id cannot be written")
        return self.workspace_identity_id


def plan_change(
    action: str,
    role_id: str,
    current_role_id: str | None,
    workspace_identity_id: str | None,
    role_names: dict[str, str] | None = None,
) -> Plan:
    """``current_role_id`` None means the user is not a member of the workspace now."""
    names = role_names or {}
    role = names.get(role_id, role_id)
    current = names.get(current_role_id, current_role_id) if current_role_id else None
    if action == "grant":
        if current_role_id is None:
            return Plan(ADD, None, role_id, None, f"add to the workspace as {role}")
        if current_role_id == role_id:
            return Plan(NOTHING, current_role_id, role_id, workspace_identity_id, f"already {role}")
        return Plan(
            CHANGE_ROLE, current_role_id, role_id, workspace_identity_id,
            f"change role from {current} to {role}",
        )
    if action == "revoke":
        if current_role_id is None:
            return Plan(NOTHING, None, None, None, "not a member of the workspace")
        if current_role_id != role_id:
            return Plan(
                NOTHING, current_role_id, current_role_id, workspace_identity_id,
                f"holds {current}, not {role}: nothing to remove",
            )
        return Plan(REMOVE, current_role_id, None, workspace_identity_id, f"remove {role} from the workspace")
    raise ValueError(f"action must be 'grant' or 'revoke', got {action!r}")


def plan_expiry(
    role_id: str,
    restore_role_id: str | None,
    current_role_id: str | None,
    workspace_identity_id: str | None,
    role_names: dict[str, str] | None = None,
    granted_identity_id: str | None = None,
) -> Plan:
    """The revoke that ends a time-bound grant of ``role_id``: it undoes only what the grant
    did. ``restore_role_id``: the member's role before the grant (None: the grant added them).
    ``granted_identity_id``: the workspace identity the grant's write left (None: not known).

    Still holding the granted role: removed (the grant added them) or given back the role they
    had (the grant changed it). Holding another role, no longer a member, or holding the role
    through another workspace identity than the grant left (LangSmith gives a member removed
    and added again a new one): someone changed their access since the grant, so it is left
    alone, and the plan says so.
    """
    names = role_names or {}
    role = names.get(role_id, role_id)
    if current_role_id is None:
        return Plan(NOTHING, None, None, None,
                    f"no longer a member of the workspace: removed since the grant of {role}; nothing to undo")
    current = names.get(current_role_id, current_role_id)
    if granted_identity_id and workspace_identity_id and workspace_identity_id != granted_identity_id:
        # Whatever role it holds now, that membership is not the one the grant left.
        return Plan(NOTHING, current_role_id, current_role_id, workspace_identity_id,
                    f"holds {current} through a membership added since the grant (removed and added again "
                    "by someone): not the grant's to undo; left alone")
    if current_role_id != role_id:
        return Plan(NOTHING, current_role_id, current_role_id, workspace_identity_id,
                    f"holds {current}, not the granted {role}: changed by someone since the grant; left alone")
    if restore_role_id == role_id:
        return Plan(NOTHING, current_role_id, current_role_id, workspace_identity_id,
                    f"held {role} before the grant too (it extended a grant of {role}); nothing to undo")
    if restore_role_id is None:
        return Plan(REMOVE, current_role_id, None, workspace_identity_id,
                    f"remove {role} from the workspace (the grant added them)")
    restored = names.get(restore_role_id, restore_role_id)
    return Plan(CHANGE_ROLE, current_role_id, restore_role_id, workspace_identity_id,
                f"restore {restored}, the role before the grant of {role}")


def desired_role(
    action: str, role_id: str, current_role_id: str | None, restore_role_id: str | None = None
) -> str | None:
    """The live role that means the request is done (None = not a member). ``restore_role_id``:
    for the revoke that ends a time-bound grant, the role it gives back."""
    if action == "grant":
        return role_id
    return restore_role_id if current_role_id == role_id else current_role_id

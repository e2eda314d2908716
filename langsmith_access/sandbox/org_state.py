"""The sandbox's in-memory LangSmith organization: records, indexes and the ways to change them.

An ``OrgState`` is what the sandbox server serves. ``generate_org`` (generator.py) builds one;
tests change it between syncs with the methods below and compute the tables they expect from its
fields. Every method that changes or scans the org takes ``state.lock``; code that reads several
fields and needs them to agree (for example while the server runs) should hold ``state.lock`` too.

Conventions:

- Every id is a lowercase UUID string.
- Timestamps (``created_at``) are UTC strings of one fixed shape, ``"2025-03-04T10:00:00Z"``, so
  comparing the strings compares the times.
- "API order" is the real service's default order for member lists: ``created_at`` descending,
  then ``id`` ascending for records created in the same second.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

ORGANIZATION_SCOPE = "organization"
WORKSPACE_SCOPE = "workspace"

# The `name` shared by every custom role; custom roles differ by id and display_name.
CUSTOM_ROLE_NAME = "CUSTOM"

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_timestamp(epoch_seconds: int) -> str:
    """``1735689600`` -> ``"2025-01-01T00:00:00Z"``."""
    return time.strftime(TIMESTAMP_FORMAT, time.gmtime(epoch_seconds))


def parse_timestamp(timestamp: str) -> int:
    """The inverse of ``format_timestamp``."""
    return int(datetime.fromisoformat(timestamp).timestamp())


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID string drawn from ``rng``, so a seeded ``rng`` gives the same ids."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass(slots=True)
class Role:
    """A role definition, as ``GET /api/v1/orgs/current/roles`` lists it.

    ``name`` is ``ORGANIZATION_ADMIN``, ``ORGANIZATION_OPERATOR``, ``ORGANIZATION_USER``,
    ``ORGANIZATION_VIEWER``, ``WORKSPACE_ADMIN``, ``WORKSPACE_USER``, ``WORKSPACE_VIEWER``, or
    ``CUSTOM`` for every custom role. ``access_scope`` is ``"organization"`` or ``"workspace"``.
    ``organization_id`` is None for built-in roles and the org id for custom roles.
    API rows call ``display_name`` the ``role_name`` of a member.
    """

    id: str
    name: str
    display_name: str
    description: str
    access_scope: str
    permissions: list[str]
    organization_id: str | None = None

    @property
    def is_custom(self) -> bool:
        return self.name == CUSTOM_ROLE_NAME


@dataclass(slots=True)
class OrgMember:
    """An active (accepted) organization member; disabled members are still members.

    ``id`` is the org identity id (the ``id`` of org member rows), ``ls_user_id`` the stable user
    key, ``user_id`` the deprecated legacy user id: three different UUIDs. ``org_role_id`` is the
    member's one organization role. ``avatar_url`` is always None and ``linked_login_methods``
    always empty in generated orgs.
    """

    id: str
    ls_user_id: str
    user_id: str
    email: str
    full_name: str
    display_name: str
    org_role_id: str
    created_at: str
    is_disabled: bool = False
    avatar_url: str | None = None
    linked_login_methods: list = field(default_factory=list)


@dataclass(slots=True)
class WorkspaceMembership:
    """One member's single role in one workspace.

    ``id`` is the workspace identity id: the ``id`` of workspace member rows, which PATCH and
    DELETE on ``/api/v1/workspaces/current/members/{id}`` take. It differs from the member's org
    identity id.
    """

    id: str
    workspace_id: str
    ls_user_id: str
    role_id: str
    created_at: str


@dataclass(slots=True)
class PendingWorkspaceInvite:
    """An invitation to a workspace, listed in that workspace's ``pending`` members.

    ``role_id`` is the workspace role offered. ``org_invite_id`` is the org invite it came with.
    """

    id: str
    workspace_id: str
    email: str
    role_id: str
    created_at: str
    org_invite_id: str | None = None


@dataclass(slots=True)
class Workspace:
    """A workspace ("tenant" in older API names).

    Shared workspaces have ``is_personal`` False. A personal workspace belongs to one member,
    ``owner_ls_user_id``, who is its only member. A deleted workspace (``is_deleted`` True) keeps
    its memberships here but the API stops serving its member routes.
    ``memberships`` maps ``ls_user_id`` to that member's ``WorkspaceMembership``;
    ``pending_invites`` maps invite id to ``PendingWorkspaceInvite``.
    """

    id: str
    display_name: str
    tenant_handle: str
    created_at: str
    is_personal: bool = False
    is_deleted: bool = False
    owner_ls_user_id: str | None = None
    memberships: dict[str, WorkspaceMembership] = field(default_factory=dict)
    pending_invites: dict[str, PendingWorkspaceInvite] = field(default_factory=dict)

    @property
    def is_shared(self) -> bool:
        """Neither personal nor deleted: the workspaces the synced tables keep."""
        return not self.is_personal and not self.is_deleted


@dataclass(slots=True)
class PendingOrgInvite:
    """A pending invitation to the organization: not a user, has no ``ls_user_id``.

    ``org_role_id`` is the org role offered. When ``workspace_ids`` is set, the invite also
    offers those workspaces with ``workspace_role_id``, and each of them lists a
    ``PendingWorkspaceInvite`` for it.
    """

    id: str
    email: str
    org_role_id: str
    created_at: str
    workspace_ids: list[str] | None = None
    workspace_role_id: str | None = None

    def offered_workspaces(self) -> list[tuple[str, str]]:
        """(workspace id, workspace role id) for each workspace the invite offers."""
        if not self.workspace_ids:
            return []
        if self.workspace_role_id is None:
            raise ValueError(f"invite {self.id} offers workspaces without a workspace role")
        return [(workspace_id, self.workspace_role_id) for workspace_id in self.workspace_ids]


Record = TypeVar("Record", OrgMember, PendingOrgInvite, WorkspaceMembership, PendingWorkspaceInvite)


def sorted_by(
    records: Iterable[Record], key: Callable[[Record], Any], descending: bool = True
) -> list[Record]:
    """Sorted by ``key``, records with equal keys by ``id`` ascending."""
    by_id = sorted(records, key=lambda record: record.id)
    # A reverse sort is still stable, so equal keys keep their id order.
    return sorted(by_id, key=key, reverse=descending)


# Orderings of large listings, by the (id, created_at) of their records: a paged listing of
# 20,000 members is otherwise sorted again for every 500-row page it serves.
# fingerprint -> (the records as given, the same records in API order); of any Record type.
_API_ORDER_CACHE: dict[tuple, tuple[list[Any], list[Any]]] = {}
_API_ORDER_CACHE_SIZE = 8
_API_ORDER_CACHE_MIN_RECORDS = 1000
_api_order_cache_lock = threading.Lock()


def in_api_order(records: Iterable[Record]) -> list[Record]:
    """Sorted as the API lists members: ``created_at`` descending, then ``id`` ascending.

    The order depends only on each record's ``id`` and ``created_at``, so a large listing
    whose records still have the same ones (in the same order) reuses its last ordering.
    """
    records = list(records)
    if len(records) < _API_ORDER_CACHE_MIN_RECORDS:
        return sorted_by(records, key=lambda record: record.created_at)
    fingerprint = tuple((record.id, record.created_at) for record in records)
    with _api_order_cache_lock:
        cached = _API_ORDER_CACHE.get(fingerprint)
    if cached is None or any(a is not b for a, b in zip(cached[0], records, strict=False)):
        ordered = sorted_by(records, key=lambda record: record.created_at)
        with _api_order_cache_lock:
            while len(_API_ORDER_CACHE) >= _API_ORDER_CACHE_SIZE:
                _API_ORDER_CACHE.pop(next(iter(_API_ORDER_CACHE)))
            _API_ORDER_CACHE[fingerprint] = (records, ordered)
        return ordered
    return list(cached[1])


class OrgState:
    """A whole LangSmith organization, mutable and guarded by ``lock`` (a ``threading.RLock``).

    Fields (read them freely; change them through the methods so the indexes stay in step):

    - ``organization_id``, ``display_name``: the organization.
    - ``roles``: role id -> ``Role``, organization and workspace roles, built-in and custom.
    - ``members``: ``ls_user_id`` -> ``OrgMember``, the active members (disabled included).
    - ``pending_invites``: invite id -> ``PendingOrgInvite``.
    - ``workspaces``: workspace id -> ``Workspace`` (shared, personal and deleted ones), each with
      its memberships and pending workspace invites.

    Objects added after generation get ids from a random generator seeded by the organization id
    and ``created_at`` values newer than anything already in the org (so they are listed first).
    """

    def __init__(self, organization_id: str, display_name: str) -> None:
        self.lock = threading.RLock()
        self.organization_id = organization_id
        self.display_name = display_name
        self.roles: dict[str, Role] = {}
        self.members: dict[str, OrgMember] = {}
        self.pending_invites: dict[str, PendingOrgInvite] = {}
        self.workspaces: dict[str, Workspace] = {}
        # Indexes kept in step by the methods below.
        self._member_by_identity_id: dict[str, OrgMember] = {}
        self._memberships_by_user: dict[str, dict[str, WorkspaceMembership]] = {}
        self._ids_for_additions = random.Random(f"additions:{organization_id}")
        self._latest_created_at = format_timestamp(0)

    # ----------------------------------------------------------------- building blocks

    def new_id(self) -> str:
        with self.lock:
            return random_uuid(self._ids_for_additions)

    def next_created_at(self) -> str:
        """A timestamp for a new record: now, or one second after the newest record if later."""
        with self.lock:
            latest = parse_timestamp(self._latest_created_at)
            self._latest_created_at = format_timestamp(max(int(time.time()), latest + 1))
            return self._latest_created_at

    def _saw_timestamp(self, created_at: str) -> None:
        # Timestamps of one fixed shape compare as strings.
        self._latest_created_at = max(self._latest_created_at, created_at)

    def put_role(self, role: Role) -> Role:
        with self.lock:
            self.roles[role.id] = role
            return role

    def put_member(self, member: OrgMember) -> OrgMember:
        """Add a fully built member (the generator uses this; tests use ``add_member``)."""
        with self.lock:
            self.members[member.ls_user_id] = member
            self._member_by_identity_id[member.id] = member
            self._memberships_by_user.setdefault(member.ls_user_id, {})
            self._saw_timestamp(member.created_at)
            return member

    def put_workspace(self, workspace: Workspace) -> Workspace:
        with self.lock:
            self.workspaces[workspace.id] = workspace
            self._saw_timestamp(workspace.created_at)
            return workspace

    def put_membership(self, membership: WorkspaceMembership) -> WorkspaceMembership:
        with self.lock:
            self.workspaces[membership.workspace_id].memberships[membership.ls_user_id] = membership
            by_workspace = self._memberships_by_user.setdefault(membership.ls_user_id, {})
            by_workspace[membership.workspace_id] = membership
            self._saw_timestamp(membership.created_at)
            return membership

    def put_pending_invite(self, invite: PendingOrgInvite) -> PendingOrgInvite:
        with self.lock:
            self.pending_invites[invite.id] = invite
            self._saw_timestamp(invite.created_at)
            return invite

    def put_workspace_invite(self, invite: PendingWorkspaceInvite) -> PendingWorkspaceInvite:
        with self.lock:
            self.workspaces[invite.workspace_id].pending_invites[invite.id] = invite
            self._saw_timestamp(invite.created_at)
            return invite

    # ----------------------------------------------------------------- lookups

    def role(self, role_id: str) -> Role:
        """The role with that id; KeyError if there is none."""
        return self.roles[role_id]

    def role_by_name(self, name: str) -> Role:
        """The role whose ``name`` (for built-in roles) or ``display_name`` is ``name``.

        ``role_by_name("WORKSPACE_VIEWER")`` and ``role_by_name("Viewer")`` give the same role;
        custom roles are found by display name. KeyError if none matches.
        """
        with self.lock:
            for role in self.roles.values():
                if not role.is_custom and role.name == name:
                    return role
            for role in self.roles.values():
                if role.display_name == name:
                    return role
        raise KeyError(f"no role named {name!r}")

    def roles_by_scope(self, access_scope: str) -> list[Role]:
        """Roles whose ``access_scope`` is ``"organization"`` or ``"workspace"``."""
        with self.lock:
            return [role for role in self.roles.values() if role.access_scope == access_scope]

    def custom_roles(self) -> list[Role]:
        with self.lock:
            return [role for role in self.roles.values() if role.is_custom]

    def member(self, ls_user_id: str) -> OrgMember:
        """The active member with that ``ls_user_id``; KeyError if there is none."""
        return self.members[ls_user_id]

    def member_by_identity_id(self, org_identity_id: str) -> OrgMember | None:
        with self.lock:
            return self._member_by_identity_id.get(org_identity_id)

    def member_by_email(self, email: str) -> OrgMember | None:
        """The active member with that email, compared case-insensitively."""
        wanted = email.casefold()
        with self.lock:
            for member in self.members.values():
                if member.email.casefold() == wanted:
                    return member
        return None

    def workspace(self, workspace_id: str) -> Workspace:
        """The workspace with that id (personal and deleted ones too); KeyError if none."""
        return self.workspaces[workspace_id]

    def workspaces_named(self, display_name: str) -> list[Workspace]:
        with self.lock:
            return [ws for ws in self.workspaces.values() if ws.display_name == display_name]

    def memberships_of(self, ls_user_id: str) -> list[WorkspaceMembership]:
        """Every workspace membership of a member, personal and deleted workspaces included."""
        with self.lock:
            return list(self._memberships_by_user.get(ls_user_id, {}).values())

    def membership(self, workspace_id: str, ls_user_id: str) -> WorkspaceMembership | None:
        with self.lock:
            return self.workspaces[workspace_id].memberships.get(ls_user_id)

    def membership_by_identity_id(
        self, workspace_id: str, workspace_identity_id: str
    ) -> WorkspaceMembership | None:
        with self.lock:
            for membership in self.workspaces[workspace_id].memberships.values():
                if membership.id == workspace_identity_id:
                    return membership
        return None

    # ----------------------------------------------------------------- read helpers

    def active_members(self) -> list[OrgMember]:
        """All active members (disabled included), in API order."""
        with self.lock:
            return in_api_order(self.members.values())

    def pending_org_invites(self) -> list[PendingOrgInvite]:
        """All pending org invites, in API order."""
        with self.lock:
            return in_api_order(self.pending_invites.values())

    def shared_workspaces(self) -> list[Workspace]:
        """Non-personal, non-deleted workspaces, oldest first."""
        with self.lock:
            return [ws for ws in self.all_workspaces() if ws.is_shared]

    def all_workspaces(self) -> list[Workspace]:
        """Every workspace, personal and deleted ones included, oldest first."""
        with self.lock:
            return sorted(self.workspaces.values(), key=lambda ws: (ws.created_at, ws.id))

    def workspace_membership_rows(
        self, *, shared_only: bool = False
    ) -> list[tuple[str, str, str, str]]:
        """``(workspace_id, ls_user_id, workspace_identity_id, role_id)`` for every membership.

        All workspaces by default (personal and deleted ones included); ``shared_only=True``
        keeps the rows the ``grants`` table should hold.
        """
        with self.lock:
            return [
                (ws.id, membership.ls_user_id, membership.id, membership.role_id)
                for ws in self.all_workspaces()
                if ws.is_shared or not shared_only
                for membership in ws.memberships.values()
            ]

    def membership_count(self) -> int:
        with self.lock:
            return sum(len(ws.memberships) for ws in self.workspaces.values())

    def to_dict(self) -> dict:
        """The whole org as plain JSON-able data (used to compare two orgs)."""

        def record(obj) -> dict:
            return {name: getattr(obj, name) for name in obj.__slots__}

        with self.lock:
            workspaces = []
            for ws in self.all_workspaces():
                row = record(ws)
                row["memberships"] = [record(m) for m in in_api_order(ws.memberships.values())]
                row["pending_invites"] = [
                    record(i) for i in in_api_order(ws.pending_invites.values())
                ]
                workspaces.append(row)
            return {
                "organization_id": self.organization_id,
                "display_name": self.display_name,
                "roles": [record(role) for role in self.roles.values()],
                "members": [record(member) for member in self.active_members()],
                "pending_invites": [record(invite) for invite in self.pending_org_invites()],
                "workspaces": workspaces,
            }

    # ----------------------------------------------------------------- changes

    def _require_role(self, role_id: str, access_scope: str) -> Role:
        role = self.roles.get(role_id)
        if role is None:
            raise KeyError(f"unknown role {role_id}")
        if role.access_scope != access_scope:
            raise ValueError(f"role {role.display_name!r} is not a {access_scope} role")
        return role

    def add_member(
        self,
        email: str,
        full_name: str,
        org_role_id: str | None = None,
        is_disabled: bool = False,
    ) -> OrgMember:
        """Add an active org member (default org role: Organization User) and return it.

        ValueError if an active member already has that email (case-insensitively).
        """
        with self.lock:
            if self.member_by_email(email) is not None:
                raise ValueError(f"{email} is already a member")
            if org_role_id is None:
                org_role_id = self.role_by_name("ORGANIZATION_USER").id
            self._require_role(org_role_id, ORGANIZATION_SCOPE)
            member = OrgMember(
                id=self.new_id(),
                ls_user_id=self.new_id(),
                user_id=self.new_id(),
                email=email,
                full_name=full_name,
                display_name=full_name,
                org_role_id=org_role_id,
                created_at=self.next_created_at(),
                is_disabled=is_disabled,
            )
            return self.put_member(member)

    def remove_member(self, ls_user_id: str) -> OrgMember:
        """Remove an active member from the org and from every workspace; returns the member."""
        with self.lock:
            member = self.members.pop(ls_user_id)
            del self._member_by_identity_id[member.id]
            for workspace_id in self._memberships_by_user.pop(ls_user_id, {}):
                del self.workspaces[workspace_id].memberships[ls_user_id]
            return member

    def set_disabled(self, ls_user_id: str, is_disabled: bool) -> OrgMember:
        with self.lock:
            member = self.members[ls_user_id]
            member.is_disabled = is_disabled
            return member

    def set_org_role(self, ls_user_id: str, org_role_id: str) -> OrgMember:
        """Replace a member's single org role."""
        with self.lock:
            self._require_role(org_role_id, ORGANIZATION_SCOPE)
            member = self.members[ls_user_id]
            member.org_role_id = org_role_id
            return member

    def add_workspace_membership(
        self, workspace_id: str, ls_user_id: str, role_id: str
    ) -> WorkspaceMembership:
        """Give an active member a role in a workspace; returns the new workspace identity.

        KeyError for an unknown workspace, member or role; ValueError if the role is not a
        workspace role, the member is already in the workspace, or the workspace is someone
        else's personal workspace.
        """
        with self.lock:
            workspace = self.workspaces[workspace_id]
            if ls_user_id not in self.members:
                raise KeyError(f"{ls_user_id} is not an active org member")
            self._require_role(role_id, WORKSPACE_SCOPE)
            if ls_user_id in workspace.memberships:
                raise ValueError(f"{ls_user_id} is already a member of {workspace_id}")
            if workspace.is_personal and workspace.owner_ls_user_id != ls_user_id:
                raise ValueError(f"{workspace_id} is a personal workspace")
            membership = WorkspaceMembership(
                id=self.new_id(),
                workspace_id=workspace_id,
                ls_user_id=ls_user_id,
                role_id=role_id,
                created_at=self.next_created_at(),
            )
            return self.put_membership(membership)

    def set_workspace_role(
        self, workspace_id: str, ls_user_id: str, role_id: str
    ) -> WorkspaceMembership:
        """Replace a member's single role in a workspace (KeyError if not a member there)."""
        with self.lock:
            self._require_role(role_id, WORKSPACE_SCOPE)
            membership = self.workspaces[workspace_id].memberships[ls_user_id]
            membership.role_id = role_id
            return membership

    def remove_workspace_membership(
        self, workspace_id: str, ls_user_id: str
    ) -> WorkspaceMembership:
        """Remove a member from one workspace (KeyError if not a member there)."""
        with self.lock:
            membership = self.workspaces[workspace_id].memberships.pop(ls_user_id)
            del self._memberships_by_user[ls_user_id][workspace_id]
            return membership

    def add_workspace(
        self,
        display_name: str,
        is_personal: bool = False,
        owner_ls_user_id: str | None = None,
    ) -> Workspace:
        """Create a workspace. A personal one needs its owner, who becomes its only member."""
        with self.lock:
            if is_personal and owner_ls_user_id is None:
                raise ValueError("a personal workspace needs owner_ls_user_id")
            owner = owner_ls_user_id if is_personal else None
            workspace_id = self.new_id()
            workspace = Workspace(
                id=workspace_id,
                display_name=display_name,
                tenant_handle=f"ws-{workspace_id[:8]}",
                created_at=self.next_created_at(),
                is_personal=is_personal,
                owner_ls_user_id=owner,
            )
            self.put_workspace(workspace)
            if owner is not None:  # a personal workspace
                admin = self.role_by_name("WORKSPACE_ADMIN")
                self.add_workspace_membership(workspace_id, owner, admin.id)
            return workspace

    def delete_workspace(self, workspace_id: str) -> Workspace:
        """Mark a workspace deleted. Its memberships stay (the real service keeps them too)."""
        with self.lock:
            workspace = self.workspaces[workspace_id]
            workspace.is_deleted = True
            return workspace

    def add_pending_invite(
        self,
        email: str,
        org_role_id: str | None = None,
        workspace_ids: list[str] | None = None,
        workspace_role_id: str | None = None,
    ) -> PendingOrgInvite:
        """Invite someone to the org (default org role: Organization User), maybe to workspaces."""
        with self.lock:
            if org_role_id is None:
                org_role_id = self.role_by_name("ORGANIZATION_USER").id
            self._require_role(org_role_id, ORGANIZATION_SCOPE)
            if workspace_ids:
                if workspace_role_id is None:
                    workspace_role_id = self.role_by_name("WORKSPACE_VIEWER").id
                self._require_role(workspace_role_id, WORKSPACE_SCOPE)
                for workspace_id in workspace_ids:
                    self.workspaces[workspace_id]  # KeyError for an unknown workspace
            invite = PendingOrgInvite(
                id=self.new_id(),
                email=email,
                org_role_id=org_role_id,
                created_at=self.next_created_at(),
                workspace_ids=list(workspace_ids) if workspace_ids else None,
                workspace_role_id=workspace_role_id if workspace_ids else None,
            )
            self.put_pending_invite(invite)
            for workspace_id, role_id in invite.offered_workspaces():
                self.put_workspace_invite(
                    PendingWorkspaceInvite(
                        id=self.new_id(),
                        workspace_id=workspace_id,
                        email=email,
                        role_id=role_id,
                        created_at=invite.created_at,
                        org_invite_id=invite.id,
                    )
                )
            return invite

    def remove_pending_invite(self, invite_id: str) -> PendingOrgInvite:
        """Withdraw an org invite and the workspace invites that came with it."""
        with self.lock:
            invite = self.pending_invites.pop(invite_id)
            for workspace in self.workspaces.values():
                for workspace_invite in list(workspace.pending_invites.values()):
                    if workspace_invite.org_invite_id == invite_id:
                        del workspace.pending_invites[workspace_invite.id]
            return invite

    def accept_invite(self, invite_id: str, full_name: str) -> OrgMember:
        """The invitee signs up: the invite becomes an active member with the offered roles."""
        with self.lock:
            invite = self.remove_pending_invite(invite_id)
            member = self.add_member(invite.email, full_name, org_role_id=invite.org_role_id)
            for workspace_id, role_id in invite.offered_workspaces():
                self.add_workspace_membership(workspace_id, member.ls_user_id, role_id)
            return member

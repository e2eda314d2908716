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
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from langsmith_access.sandbox.access_records import (
    API_KEY_KINDS,
    PERSONAL_ACCESS_TOKEN,
    SERVICE_KEY,
    TAG_RESOURCE_TYPES,
    WORKSPACE_SERVICE_KEY,
    AccessPolicy,
    ApiKey,
    AuditActor,
    AuditEvent,
    LoginMethod,
    OrgSettings,
    ScimGroup,
    ScimToken,
    ServiceAccount,
    SsoProvider,
    Tagging,
    TagKey,
    TagValue,
)
from langsmith_access.sandbox.audit_log import AuditLog

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
    # Enterprise: only a holder of the built-in Workspace Admin role (or an Organization Admin)
    # may grant it or change or remove its holders (langsmith-api.md).
    is_restricted: bool = False

    @property
    def is_custom(self) -> bool:
        return self.name == CUSTOM_ROLE_NAME


@dataclass(slots=True)
class OrgMember:
    """An active (accepted) organization member; disabled members are still members.

    ``id`` is the org identity id (the ``id`` of org member rows), ``ls_user_id`` the stable user
    key, ``user_id`` the deprecated legacy user id: three different UUIDs. ``org_role_id`` is the
    member's one organization role. ``avatar_url`` is always None in generated orgs.
    ``linked_login_methods``: how the member logs in and how they were provisioned (several
    methods are possible); ``scim_groups``: the identity-provider groups SCIM pushed for them.
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
    linked_login_methods: list[LoginMethod] = field(default_factory=list)
    scim_groups: list[ScimGroup] = field(default_factory=list)


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
    ``pending_invites`` maps invite id to ``PendingWorkspaceInvite``; ``tag_keys`` are its tags
    (keys, their values, and the resources tagged with each).
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
    tag_keys: dict[str, TagKey] = field(default_factory=dict)  # tag key id -> TagKey

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
    - The rest of the access picture (DESIGN.md section 9): ``settings`` (``OrgSettings``),
      ``api_keys`` (service keys, workspace service keys and personal access tokens),
      ``scim_tokens``, ``service_accounts``, ``access_policies``, ``sso_providers`` (each id ->
      record), and ``audit_log``, which every change below appends to (member added, role
      changed, key created, ...; ``record_login`` records a login, for which the API has no
      route). ``clock`` (epoch seconds) dates what happens from now on; tests may replace it.

    Objects added after generation get ids from a random generator seeded by the organization id
    and ``created_at`` values newer than anything already in the org (so they are listed first).
    Each change takes an optional ``actor`` (``AuditActor``): who the audit log says did it
    (default: the oldest Organization Admin, in the web UI).
    """

    def __init__(self, organization_id: str, display_name: str) -> None:
        self.lock = threading.RLock()
        self.organization_id = organization_id
        self.display_name = display_name
        self.roles: dict[str, Role] = {}
        self.members: dict[str, OrgMember] = {}
        self.pending_invites: dict[str, PendingOrgInvite] = {}
        self.workspaces: dict[str, Workspace] = {}
        self.settings = OrgSettings()
        self.api_keys: dict[str, ApiKey] = {}
        self.scim_tokens: dict[str, ScimToken] = {}
        self.service_accounts: dict[str, ServiceAccount] = {}
        self.access_policies: dict[str, AccessPolicy] = {}
        self.sso_providers: dict[str, SsoProvider] = {}
        self.audit_log = AuditLog()
        self.clock: Callable[[], float] = time.time
        # Indexes kept in step by the methods below.
        self._member_by_identity_id: dict[str, OrgMember] = {}
        self._memberships_by_user: dict[str, dict[str, WorkspaceMembership]] = {}
        # A person who left keeps their account: rejoining (same email) brings back their
        # ls_user_id and user_id ("one per person", langsmith-api.md), with a new org identity.
        self._former_accounts: dict[str, tuple[str, str]] = {}
        self._ids_for_additions = random.Random(f"additions:{organization_id}")
        # A generator of its own, so recording events leaves the ids of other additions as they were.
        self._ids_for_events = random.Random(f"audit:{organization_id}")
        self._latest_created_at = format_timestamp(0)

    def __getstate__(self) -> dict:
        # Pickled by tests that build one org's history once and share it between test processes.
        state = dict(self.__dict__)
        del state["lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()

    # ----------------------------------------------------------------- building blocks

    def new_id(self) -> str:
        with self.lock:
            return random_uuid(self._ids_for_additions)

    def next_created_at(self) -> str:
        """A timestamp for a new record: now, or one second after the newest record if later."""
        with self.lock:
            latest = parse_timestamp(self._latest_created_at)
            self._latest_created_at = format_timestamp(max(int(self.clock()), latest + 1))
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

    def put_api_key(self, key: ApiKey) -> ApiKey:
        with self.lock:
            if key.kind not in API_KEY_KINDS:
                raise ValueError(f"unknown key kind {key.kind!r}")
            self.api_keys[key.id] = key
            return key

    def put_scim_token(self, token: ScimToken) -> ScimToken:
        with self.lock:
            self.scim_tokens[token.id] = token
            return token

    def put_service_account(self, account: ServiceAccount) -> ServiceAccount:
        with self.lock:
            self.service_accounts[account.id] = account
            return account

    def put_access_policy(self, policy: AccessPolicy) -> AccessPolicy:
        with self.lock:
            self.access_policies[policy.id] = policy
            return policy

    def tag_resource(
        self,
        workspace_id: str,
        key: str,
        value: str,
        resource_type: str,
        resource_id: str,
        resource_name: str,
        *,
        created_at: str | None = None,
        ids: Callable[[], str] | None = None,
    ) -> Tagging:
        """Put the tag ``key``=``value`` on a resource of a workspace, creating the key and the
        value when the workspace has neither (tags are per workspace). ``ids`` and
        ``created_at``: the generator's, so a seeded org gets the same ones."""
        if resource_type not in TAG_RESOURCE_TYPES:
            raise ValueError(f"resource_type must be one of {', '.join(TAG_RESOURCE_TYPES)}")
        new_id = ids or self.new_id
        with self.lock:
            workspace = self.workspaces[workspace_id]
            at = created_at or self.next_created_at()
            tag_key = next((k for k in workspace.tag_keys.values() if k.key == key), None)
            if tag_key is None:
                tag_key = TagKey(new_id(), key, at)
                workspace.tag_keys[tag_key.id] = tag_key
            tag_value = next((v for v in tag_key.values.values() if v.value == value), None)
            if tag_value is None:
                tag_value = TagValue(new_id(), tag_key.id, value, at)
                tag_key.values[tag_value.id] = tag_value
            tagging = Tagging(new_id(), tag_value.id, resource_type, resource_id, resource_name, at)
            tag_value.taggings[tagging.id] = tagging
            return tagging

    def put_sso_provider(self, provider: SsoProvider) -> SsoProvider:
        with self.lock:
            self.sso_providers[provider.id] = provider
            return provider

    def put_audit_events(self, events: list[AuditEvent]) -> None:
        """Add events as they are (the generator's history); changes use ``record``."""
        with self.lock:
            self.audit_log.extend(events)

    # ----------------------------------------------------------------- the audit log

    def now(self) -> str:
        """The current time as a record timestamp."""
        return format_timestamp(int(self.clock()))

    def default_actor(self) -> AuditActor:
        """Who changes the org when a change names nobody: the oldest Organization Admin, in the
        web UI (no credential)."""
        with self.lock:
            admin_role = next(
                (r.id for r in self.roles.values() if r.name == "ORGANIZATION_ADMIN"), None
            )
            admins = [m for m in self.members.values() if m.org_role_id == admin_role]
            if not admins:
                return AuditActor()
            oldest = min(admins, key=lambda m: (m.created_at, m.id))
            return AuditActor(ls_user_id=oldest.ls_user_id, user_id=oldest.user_id)

    def record(
        self,
        operation: str,
        *,
        actor: AuditActor | None = None,
        workspace_id: str | None = None,
        resource_ids: Iterable[str] = (),
        http_method: str = "POST",
        path: str = "/api/v1",
        status_code: int = 200,
        succeeded: bool | None = True,
        time_ms: int | None = None,
    ) -> AuditEvent:
        """Append an audit event for ``operation`` (any name: LangSmith's set is open) now, or at
        ``time_ms``; returns it."""
        with self.lock:
            event = AuditEvent(
                id=random_uuid(self._ids_for_events),
                operation=operation,
                time_ms=int(self.clock() * 1000) if time_ms is None else time_ms,
                actor=actor if actor is not None else self.default_actor(),
                succeeded=succeeded,
                workspace_id=workspace_id,
                resource_ids=tuple(resource_ids),
                http_method=http_method,
                path=path,
                status_code=status_code,
            )
            return self.audit_log.append(event)

    def record_login(
        self,
        ls_user_id: str,
        *,
        time_ms: int | None = None,
        succeeded: bool = True,
        ip: str = "198.51.100.7",
    ) -> AuditEvent:
        """A member logged in (the test hook for logins: LangSmith logs them, no route makes one)."""
        with self.lock:
            member = self.members[ls_user_id]
            actor = AuditActor(ls_user_id=member.ls_user_id, user_id=member.user_id, ip=ip)
            return self.record(
                "login",
                actor=actor,
                resource_ids=[member.ls_user_id],
                path="/api/v1/login",
                status_code=200 if succeeded else 401,
                succeeded=succeeded,
                time_ms=time_ms,
            )

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
            return asdict(obj)

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
                "settings": record(self.settings),
                "api_keys": [record(key) for key in self.api_keys.values()],
                "scim_tokens": [record(token) for token in self.scim_tokens.values()],
                "service_accounts": [record(a) for a in self.service_accounts.values()],
                "access_policies": [record(p) for p in self.access_policies.values()],
                "sso_providers": [record(p) for p in self.sso_providers.values()],
                "audit_log": [record(event) for event in self.audit_log],
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
        *,
        actor: AuditActor | None = None,
    ) -> OrgMember:
        """Add an active org member (default org role: Organization User) and return it.

        ValueError if an active member already has that email (case-insensitively). The audit
        log says the member claimed an invite (the usual way in; the sandbox skips the invite).
        """
        with self.lock:
            member = self._add_member(email, full_name, org_role_id, is_disabled)
            self.record(
                "claim_pending_organization_invite",
                actor=actor or AuditActor(ls_user_id=member.ls_user_id, user_id=member.user_id),
                resource_ids=[member.id],
                path="/api/v1/orgs/pending/claim",
            )
            return member

    def _add_member(
        self, email: str, full_name: str, org_role_id: str | None, is_disabled: bool
    ) -> OrgMember:
        if self.member_by_email(email) is not None:
            raise ValueError(f"{email} is already a member")
        if org_role_id is None:
            org_role_id = self.role_by_name("ORGANIZATION_USER").id
        self._require_role(org_role_id, ORGANIZATION_SCOPE)
        created_at = self.next_created_at()
        identity_id = self.new_id()
        former = self._former_accounts.pop(email.lower(), None)
        ls_user_id, user_id = former if former is not None else (self.new_id(), self.new_id())
        member = OrgMember(
            id=identity_id,
            ls_user_id=ls_user_id,
            user_id=user_id,
            email=email,
            full_name=full_name,
            display_name=full_name,
            org_role_id=org_role_id,
            created_at=created_at,
            is_disabled=is_disabled,
            linked_login_methods=[
                LoginMethod(id=self.new_id(), provider="email", provisioning_method=None,
                            created_at=created_at)
            ],
        )
        return self.put_member(member)

    def remove_member(self, ls_user_id: str, *, actor: AuditActor | None = None) -> OrgMember:
        """Remove an active member from the org and from every workspace; returns the member."""
        with self.lock:
            member = self.members.pop(ls_user_id)
            del self._member_by_identity_id[member.id]
            self._former_accounts[member.email.lower()] = (member.ls_user_id, member.user_id)
            for workspace_id in self._memberships_by_user.pop(ls_user_id, {}):
                del self.workspaces[workspace_id].memberships[ls_user_id]
            # A personal access token dies when its user leaves the org (langsmith-api.md,
            # Credentials); revoked keys stay listed here, with revoked_at.
            now = self.now()
            for key in self.api_keys.values():
                if key.kind == PERSONAL_ACCESS_TOKEN and key.owner_ls_user_id == ls_user_id and key.revoked_at is None:
                    key.revoked_at = now
            self.record(
                "delete_org_member",
                actor=actor,
                resource_ids=[member.id],
                http_method="DELETE",
                path=f"/api/v1/orgs/current/members/{member.id}",
            )
            return member

    def set_disabled(
        self, ls_user_id: str, is_disabled: bool, *, actor: AuditActor | None = None
    ) -> OrgMember:
        with self.lock:
            member = self.members[ls_user_id]
            member.is_disabled = is_disabled
            self._record_member_update(member, actor)
            return member

    def set_full_name(self, ls_user_id: str, full_name: str, *, actor: AuditActor | None = None) -> OrgMember:
        with self.lock:
            member = self.members[ls_user_id]
            member.full_name = full_name
            self._record_member_update(member, actor)
            return member

    def set_org_role(
        self, ls_user_id: str, org_role_id: str, *, actor: AuditActor | None = None
    ) -> OrgMember:
        """Replace a member's single org role."""
        with self.lock:
            self._require_role(org_role_id, ORGANIZATION_SCOPE)
            member = self.members[ls_user_id]
            member.org_role_id = org_role_id
            self._record_member_update(member, actor)
            return member

    def _record_member_update(self, member: OrgMember, actor: AuditActor | None) -> None:
        self.record(
            "update_org_member",
            actor=actor,
            resource_ids=[member.id],
            http_method="PATCH",
            path=f"/api/v1/orgs/current/members/{member.id}",
        )

    def add_workspace_membership(
        self,
        workspace_id: str,
        ls_user_id: str,
        role_id: str,
        *,
        actor: AuditActor | None = None,
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
            self.put_membership(membership)
            self.record(
                "add_member_to_workspace",
                actor=actor,
                workspace_id=workspace_id,
                resource_ids=[membership.id],
                path="/api/v1/workspaces/current/members",
            )
            return membership

    def set_workspace_role(
        self,
        workspace_id: str,
        ls_user_id: str,
        role_id: str,
        *,
        actor: AuditActor | None = None,
    ) -> WorkspaceMembership:
        """Replace a member's single role in a workspace (KeyError if not a member there)."""
        with self.lock:
            self._require_role(role_id, WORKSPACE_SCOPE)
            membership = self.workspaces[workspace_id].memberships[ls_user_id]
            membership.role_id = role_id
            self.record(
                "update_workspace_member",
                actor=actor,
                workspace_id=workspace_id,
                resource_ids=[membership.id],
                http_method="PATCH",
                path=f"/api/v1/workspaces/current/members/{membership.id}",
            )
            return membership

    def remove_workspace_membership(
        self, workspace_id: str, ls_user_id: str, *, actor: AuditActor | None = None
    ) -> WorkspaceMembership:
        """Remove a member from one workspace (KeyError if not a member there)."""
        with self.lock:
            membership = self.workspaces[workspace_id].memberships.pop(ls_user_id)
            del self._memberships_by_user[ls_user_id][workspace_id]
            self.record(
                "delete_workspace_member",
                actor=actor,
                workspace_id=workspace_id,
                resource_ids=[membership.id],
                http_method="DELETE",
                path=f"/api/v1/workspaces/current/members/{membership.id}",
            )
            return membership

    def add_workspace(
        self,
        display_name: str,
        is_personal: bool = False,
        owner_ls_user_id: str | None = None,
        *,
        actor: AuditActor | None = None,
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
            self.record(
                "create_workspace",
                actor=actor,
                workspace_id=workspace_id,
                resource_ids=[workspace_id],
                path="/api/v1/workspaces",
            )
            if owner is not None:  # a personal workspace
                admin = self.role_by_name("WORKSPACE_ADMIN")
                self.add_workspace_membership(workspace_id, owner, admin.id, actor=actor)
            return workspace

    def delete_workspace(self, workspace_id: str, *, actor: AuditActor | None = None) -> Workspace:
        """Mark a workspace deleted. Its memberships stay (the real service keeps them too)."""
        with self.lock:
            workspace = self.workspaces[workspace_id]
            workspace.is_deleted = True
            self.record(
                "delete_workspace",
                actor=actor,
                workspace_id=workspace_id,
                resource_ids=[workspace_id],
                http_method="DELETE",
                path=f"/api/v1/workspaces/{workspace_id}",
            )
            return workspace

    def add_pending_invite(
        self,
        email: str,
        org_role_id: str | None = None,
        workspace_ids: list[str] | None = None,
        workspace_role_id: str | None = None,
        *,
        actor: AuditActor | None = None,
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
            self.record(
                "invite_user_to_org",
                actor=actor,
                resource_ids=[invite.id],
                path="/api/v1/orgs/current/members",
            )
            return invite

    def remove_pending_invite(
        self, invite_id: str, *, actor: AuditActor | None = None
    ) -> PendingOrgInvite:
        """Withdraw an org invite and the workspace invites that came with it."""
        with self.lock:
            invite = self._remove_pending_invite(invite_id)
            self.record(
                "delete_org_pending_member",
                actor=actor,
                resource_ids=[invite.id],
                http_method="DELETE",
                path=f"/api/v1/orgs/current/members/{invite.id}/pending",
            )
            return invite

    def _remove_pending_invite(self, invite_id: str) -> PendingOrgInvite:
        invite = self.pending_invites.pop(invite_id)
        for workspace in self.workspaces.values():
            for workspace_invite in list(workspace.pending_invites.values()):
                if workspace_invite.org_invite_id == invite_id:
                    del workspace.pending_invites[workspace_invite.id]
        return invite

    def accept_invite(self, invite_id: str, full_name: str) -> OrgMember:
        """The invitee signs up: the invite becomes an active member with the offered roles (one
        ``claim_pending_organization_invite`` event, by the new member)."""
        with self.lock:
            invite = self._remove_pending_invite(invite_id)
            member = self._add_member(invite.email, full_name, invite.org_role_id, False)
            for workspace_id, role_id in invite.offered_workspaces():
                self.put_membership(
                    WorkspaceMembership(
                        id=self.new_id(),
                        workspace_id=workspace_id,
                        ls_user_id=member.ls_user_id,
                        role_id=role_id,
                        created_at=self.next_created_at(),
                    )
                )
            self.record(
                "claim_pending_organization_invite",
                actor=AuditActor(ls_user_id=member.ls_user_id, user_id=member.user_id),
                resource_ids=[invite.id],
                path="/api/v1/orgs/pending/claim",
            )
            return member

    # ----------------------------------------------------------------- credentials and policies

    def create_api_key(
        self,
        kind: str,
        description: str,
        *,
        secret: str | None = None,
        workspace_ids: list[str] | None = None,
        role_id: str | None = None,
        org_role_id: str | None = None,
        owner_ls_user_id: str | None = None,
        service_account_id: str | None = None,
        expires_at: str | None = None,
        default_workspace_id: str | None = None,
        actor: AuditActor | None = None,
        read_only: bool = False,
    ) -> ApiKey:
        """Create a service key (``kind`` ``service_key``: org-wide when ``workspace_ids`` is
        None), a workspace service key (one workspace in ``workspace_ids``) or a personal access
        token (``owner_ls_user_id``); the audit log records ``create_service_key``,
        ``create_api_key`` or ``create_personal_access_token``."""
        with self.lock:
            if kind not in API_KEY_KINDS:
                raise ValueError(f"kind must be one of {', '.join(API_KEY_KINDS)}, got {kind!r}")
            if kind == WORKSPACE_SERVICE_KEY and (not workspace_ids or len(workspace_ids) != 1):
                raise ValueError("a workspace service key belongs to exactly one workspace")
            if kind == PERSONAL_ACCESS_TOKEN and owner_ls_user_id not in self.members:
                raise KeyError(f"a personal access token needs an active member, got {owner_ls_user_id}")
            for workspace_id in workspace_ids or []:
                self.workspaces[workspace_id]  # KeyError for an unknown workspace
            if role_id is not None:
                self._require_role(role_id, WORKSPACE_SCOPE)
            if org_role_id is not None:
                self._require_role(org_role_id, ORGANIZATION_SCOPE)
            key = ApiKey(
                id=self.new_id(),
                kind=kind,
                secret=secret or self._new_secret(kind),
                description=description,
                created_at=self.now(),
                expires_at=expires_at,
                workspace_ids=list(workspace_ids) if workspace_ids is not None else None,
                default_workspace_id=default_workspace_id,
                role_id=role_id,
                org_role_id=org_role_id,
                owner_ls_user_id=owner_ls_user_id,
                service_account_id=service_account_id,
                created_by=(actor or self.default_actor()).ls_user_id,
                read_only=read_only,
            )
            self.put_api_key(key)
            operation, path = _KEY_ROUTES[kind]
            self.record(
                f"create_{operation}",
                actor=actor,
                workspace_id=key.workspace_ids[0] if kind == WORKSPACE_SERVICE_KEY and key.workspace_ids else None,
                resource_ids=[key.id],
                path=path,
            )
            return key

    def _new_secret(self, kind: str) -> str:
        prefix = "lsv2_pt_" if kind == PERSONAL_ACCESS_TOKEN else "lsv2_sk_"
        bits = self._ids_for_additions.getrandbits(168)
        return f"{prefix}{bits >> 40:032x}_{bits & (2**40 - 1):010x}"

    def revoke_api_key(self, key_id: str, *, actor: AuditActor | None = None) -> ApiKey:
        """Revoke a key (KeyError if unknown): it stays listed, with ``revoked_at``."""
        with self.lock:
            key = self.api_keys[key_id]
            if key.revoked_at is None:
                key.revoked_at = self.now()
            operation, path = _KEY_ROUTES[key.kind]
            self.record(
                f"delete_{operation}",
                actor=actor,
                workspace_id=key.workspace_ids[0] if key.kind == WORKSPACE_SERVICE_KEY and key.workspace_ids else None,
                resource_ids=[key.id],
                http_method="DELETE",
                path=f"{path}/{key.id}",
            )
            return key

    def set_service_key_roles(
        self, key_id: str, *, role_id: str | None = None, org_role_id: str | None = None,
    ) -> ApiKey:
        """Change an org service key's workspace role and/or org role without rotating it
        (KeyError if unknown). Not audited: LangSmith logs ``update_service_key`` since a later
        spec, but the vendored ``AuditLogOperation`` enum lacks it and every audit item the
        sandbox serves must fit the vendored schema."""
        with self.lock:
            key = self.api_keys[key_id]
            if key.kind != SERVICE_KEY:
                raise ValueError(f"only a service key's roles change this way, not a {key.kind}")
            if role_id is not None:
                self._require_role(role_id, WORKSPACE_SCOPE)
                key.role_id = role_id
            if org_role_id is not None:
                self._require_role(org_role_id, ORGANIZATION_SCOPE)
                key.org_role_id = org_role_id
            return key

    def api_key_by_secret(self, secret: str) -> ApiKey | None:
        with self.lock:
            return next((k for k in self.api_keys.values() if k.secret == secret), None)

    def mark_key_used(self, key_id: str) -> None:
        """The key authenticated a request: its ``last_used_at`` is now (not an audited event)."""
        with self.lock:
            key = self.api_keys.get(key_id)
            if key is not None:
                key.last_used_at = self.now()

    def create_scim_token(self, description: str, *, actor: AuditActor | None = None) -> ScimToken:
        with self.lock:
            now = self.now()
            bits = self._ids_for_additions.getrandbits(192)
            token = self.put_scim_token(
                ScimToken(id=self.new_id(), token=f"lsv2_scim_{bits:048x}", description=description,
                          created_at=now, updated_at=now)
            )
            self.record("create_scim_token", actor=actor, resource_ids=[token.id],
                        path="/api/v1/platform/orgs/current/scim/tokens")
            return token

    def delete_scim_token(self, token_id: str, *, actor: AuditActor | None = None) -> ScimToken:
        with self.lock:
            token = self.scim_tokens.pop(token_id)
            self.record("delete_scim_token", actor=actor, resource_ids=[token.id], http_method="DELETE",
                        path=f"/api/v1/platform/orgs/current/scim/tokens/{token.id}")
            return token

    def create_service_account(
        self, name: str, *, default_workspace_id: str | None = None, actor: AuditActor | None = None
    ) -> ServiceAccount:
        with self.lock:
            if default_workspace_id is not None:
                self.workspaces[default_workspace_id]  # KeyError for an unknown workspace
            now = self.now()
            account = self.put_service_account(
                ServiceAccount(id=self.new_id(), name=name, created_at=now, updated_at=now,
                               organization_identity_id=self.new_id(),
                               default_workspace_id=default_workspace_id)
            )
            self.record("create_service_account", actor=actor, resource_ids=[account.id],
                        path="/api/v1/service-accounts")
            return account

    def delete_service_account(
        self, service_account_id: str, *, actor: AuditActor | None = None
    ) -> ServiceAccount:
        with self.lock:
            account = self.service_accounts.pop(service_account_id)
            self.record("delete_service_account", actor=actor, resource_ids=[account.id],
                        http_method="DELETE", path=f"/api/v1/service-accounts/{account.id}")
            return account

    def create_access_policy(
        self,
        name: str,
        effect: str,
        condition_groups: list,
        *,
        description: str = "",
        role_ids: list[str] | None = None,
        actor: AuditActor | None = None,
    ) -> AccessPolicy:
        """A new ABAC policy (``effect`` ``allow`` or ``deny``), attached to ``role_ids``."""
        with self.lock:
            for role_id in role_ids or []:
                self._require_role(role_id, WORKSPACE_SCOPE)
            now = self.now()
            policy = self.put_access_policy(
                AccessPolicy(id=self.new_id(), name=name, description=description, effect=effect,
                             role_ids=list(role_ids or []), condition_groups=list(condition_groups),
                             created_at=now, updated_at=now)
            )
            self.record("create_access_policy", actor=actor, resource_ids=[policy.id],
                        path="/api/v1/platform/orgs/current/access-policies")
            return policy

    def delete_access_policy(self, policy_id: str, *, actor: AuditActor | None = None) -> AccessPolicy:
        with self.lock:
            policy = self.access_policies.pop(policy_id)
            self.record("delete_access_policy", actor=actor, resource_ids=[policy.id],
                        http_method="DELETE",
                        path=f"/api/v1/platform/orgs/current/access-policies/{policy.id}")
            return policy

    def attach_access_policies(
        self, role_id: str, policy_ids: list[str], *, actor: AuditActor | None = None
    ) -> None:
        """Attach policies to a workspace role (KeyError for an unknown policy or role)."""
        with self.lock:
            self._require_role(role_id, WORKSPACE_SCOPE)
            policies = [self.access_policies[policy_id] for policy_id in policy_ids]
            for policy in policies:
                if role_id not in policy.role_ids:
                    policy.role_ids.append(role_id)
                    policy.updated_at = self.now()
            self.record("attach_access_policies", actor=actor, resource_ids=[role_id, *policy_ids],
                        path=f"/api/v1/platform/orgs/current/access-policies/roles/{role_id}/access-policies")

    def add_login_method(
        self,
        ls_user_id: str,
        provider: str,
        provisioning_method: str | None = None,
        *,
        saml_provider_id: str | None = None,
    ) -> LoginMethod:
        """Link another login method to a member (as a first SSO login or a SCIM push does)."""
        with self.lock:
            member = self.members[ls_user_id]
            method = LoginMethod(id=self.new_id(), provider=provider,
                                 provisioning_method=provisioning_method, created_at=self.now(),
                                 saml_provider_id=saml_provider_id)
            member.linked_login_methods.append(method)
            return method

    def add_scim_group(self, ls_user_id: str, name: str, *, actor: AuditActor | None = None) -> ScimGroup:
        """SCIM pushed the member into an identity-provider group named ``name``."""
        with self.lock:
            member = self.members[ls_user_id]
            group = ScimGroup(name=name, created_at=self.now())
            member.scim_groups.append(group)
            self.record("update_scim_group", actor=actor, resource_ids=[member.id],
                        http_method="PATCH", path="/scim/v2/Groups")
            return group


# Each key kind's audit operation suffix and route.
_KEY_ROUTES = {
    SERVICE_KEY: ("service_key", "/api/v1/orgs/current/service-keys"),
    WORKSPACE_SERVICE_KEY: ("api_key", "/api/v1/api-key"),
    PERSONAL_ACCESS_TOKEN: ("personal_access_token", "/api/v1/orgs/current/personal-access-tokens"),
}

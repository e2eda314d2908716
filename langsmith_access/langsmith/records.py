"""Typed records for what the LangSmith API returns, parsed leniently but never silently wrong.

Each ``from_api`` takes one JSON object and raises ``UnexpectedResponseError`` naming the field
when a field the schema requires is missing or has the wrong type. Unknown fields are ignored,
as the API may add fields at any time.
"""

from __future__ import annotations

import builtins
import re
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, overload

from langsmith_access.langsmith.errors import UnexpectedResponseError


class _Fields:
    """Reads fields from one API object, naming the record and field in every error.

    Its methods are named after the types they read (``f.str``, ``f.bool``), which shadows those
    builtins inside the class body: annotations here spell them ``builtins.str`` and ``builtins.bool``.
    """

    def __init__(self, record: builtins.str, data: Any):
        if not isinstance(data, dict):
            raise UnexpectedResponseError(
                f"expected a JSON object for {record}, got {type(data).__name__}"
            )
        self.record = record
        self.data = data

    def _bad(self, name: builtins.str, expected: builtins.str) -> UnexpectedResponseError:
        value = self.data.get(name)
        return UnexpectedResponseError(
            f"{self.record}.{name}: expected {expected}, got {type(value).__name__}"
            + (f" (record id {self.data.get('id')!r})" if "id" in self.data else "")
        )

    def str(self, name: builtins.str, *, required: builtins.bool = False) -> builtins.str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self._bad(name, "a string")
            return None
        if not isinstance(value, str):
            raise self._bad(name, "a string")
        return value

    def req_str(self, name: builtins.str) -> builtins.str:
        value = self.str(name, required=True)
        assert value is not None
        if not value:
            raise self._bad(name, "a non-empty string")
        return value

    @overload
    def uuid(self, name: builtins.str, *, required: Literal[True]) -> builtins.str: ...
    @overload
    def uuid(self, name: builtins.str, *, required: builtins.bool = False) -> builtins.str | None: ...
    def uuid(self, name: builtins.str, *, required: builtins.bool = False) -> builtins.str | None:
        """An id: read as ``str`` (``req_str`` when required: refused the same way), then a UUID
        in its one spelling (``canonical_uuid``)."""
        value = self.req_str(name) if required else self.str(name)
        return None if value is None else canonical_uuid(value)

    def uuid_list(self, name: builtins.str) -> tuple[builtins.str, ...]:
        """A list of ids, read as ``str_list``, each UUID in its one spelling."""
        return tuple(canonical_uuid(value) for value in self.str_list(name))

    def bool(
        self, name: builtins.str, default: builtins.bool | None = None, *, required: builtins.bool = False
    ) -> builtins.bool:
        value = self.data.get(name)
        if value is None:
            if required or default is None:
                raise self._bad(name, "a boolean")
            return default
        if not isinstance(value, bool):
            raise self._bad(name, "a boolean")
        return value

    def str_list(self, name: builtins.str, *, required: builtins.bool = False) -> tuple[builtins.str, ...]:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self._bad(name, "a list of strings")
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._bad(name, "a list of strings")
        return tuple(value)

    def optional_str_list(self, name: builtins.str) -> tuple[builtins.str, ...] | None:
        """A list of strings, or None where the field is absent or null (the API does not say,
        which differs from an empty list)."""
        return None if self.data.get(name) is None else self.str_list(name)

    def optional_bool(self, name: builtins.str) -> builtins.bool | None:
        """A boolean, or None where the field is absent or null (the API does not say)."""
        return None if self.data.get(name) is None else self.bool(name)

    def object(self, name: builtins.str) -> dict:
        """A nested JSON object ({} where absent or null)."""
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._bad(name, "an object")
        return value

    @overload
    def timestamp(self, name: builtins.str, *, required: Literal[True]) -> datetime: ...
    @overload
    def timestamp(self, name: builtins.str, *, required: builtins.bool = False) -> datetime | None: ...
    def timestamp(self, name: builtins.str, *, required: builtins.bool = False) -> datetime | None:
        value = self.str(name, required=required)
        if value is None or value == "":
            if required:
                raise self._bad(name, "an ISO 8601 date-time")
            return None
        return parse_timestamp(value, f"{self.record}.{name}")


@overload
def _shared(value: str) -> str: ...
@overload
def _shared(value: str | None) -> str | None: ...
def _shared(value: str | None) -> str | None:
    return None if value is None else sys.intern(value)


# A UUID as LangSmith writes it (lower case, hyphenated): taken as it is, without parsing it.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_uuid(value: str) -> str:
    """``value`` in the one spelling of a UUID (lower case, hyphenated) when it is one in any
    spelling (capitals, braces, no hyphens), else as sent. Every id a record parses goes
    through here, so the client's comparisons, the raw tables and the dbt models see one
    spelling of each id."""
    if _CANONICAL_UUID.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value  # not a UUID: kept as sent, as every other text field is


def parse_timestamp(value: str, what: str) -> datetime:
    """ISO 8601 (``Z``, ``z`` or an offset; naive means UTC) to an aware UTC datetime. A moment that is
    no date-time in UTC (``0001-01-01T00:00:00+01:00``: before year 1 there) is refused as any
    other bad date-time, not raised as Python's ``OverflowError``."""
    try:
        # RFC 3339 (the spec's date-time) allows a small "z" as it does a small "t".
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise UnexpectedResponseError(f"{what}: {value!r} is not an ISO 8601 date-time") from None


ORGANIZATION_SCOPE = "organization"
WORKSPACE_SCOPE = "workspace"


@dataclass(frozen=True, slots=True)
class LoginMethod:
    """How a member logs in, and how they were provisioned.

    ``provider``: ``email``, ``supabase:non-sso``, ``supabase:sso``, ``oidc``, ``custom-oidc``
    or any newer value, kept as sent. ``provisioning_method``: ``scim``, ``saml:jit``,
    ``bootstrap``, None, or any newer value. Org member rows send a ``ProviderUserSlim``
    (``provisioning_method``); the enriched members route ``{provider, provisioning}``.
    """

    provider: str | None
    provisioning_method: str | None
    # The login's user name at its provider, where it has one (``ProviderUserSlim.username``): a
    # key's ``created_by`` may name its creator so (langsmith-api.md leaves that format open).
    username: str | None = None

    @classmethod
    def from_api(cls, data: Any) -> LoginMethod:
        f = _Fields("LoginMethod", data)
        provisioning = f.str("provisioning_method")
        if provisioning is None:
            provisioning = f.str("provisioning")  # the enriched route's name for it
        # A few distinct values on every member of a large org: one string each.
        return cls(
            provider=_shared(f.str("provider") or None),
            provisioning_method=_shared(provisioning or None),
            username=(f.str("username") or "").strip() or None,
        )


@dataclass(frozen=True, slots=True)
class ScimGroup:
    """An identity-provider group SCIM pushed the member into (``orgs.SCIMGroup``); its name
    follows LangSmith's group-name rule (``langsmith-api.md``, "User groups")."""

    name: str
    created_at: datetime | None

    @classmethod
    def from_api(cls, data: Any) -> ScimGroup:
        f = _Fields("orgs.SCIMGroup", data)
        return cls(name=f.req_str("name"), created_at=f.timestamp("created_at"))


def _objects(f: _Fields, name: builtins.str, parse) -> tuple:
    """A list of JSON objects parsed one by one (absent or null: empty)."""
    value = f.data.get(name)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise f._bad(name, "a list")
    return tuple(parse(item) for item in value)


@dataclass(frozen=True, slots=True)
class Role:
    id: str
    name: str  # ORGANIZATION_ADMIN, ..., WORKSPACE_VIEWER, or CUSTOM for every custom role
    display_name: str
    description: str
    permissions: tuple[str, ...]
    organization_id: str | None  # null for built-in roles
    access_scope: str  # 'organization' | 'workspace'
    # Enterprise: only a holder of the built-in Workspace Admin role may grant a restricted role
    # or manage its holders (langsmith-api.md). None: the listing does not say (older LangSmith).
    is_restricted: bool | None = None

    @classmethod
    def from_api(cls, data: Any) -> Role:
        f = _Fields("Role", data)
        name = f.req_str("name")
        scope = f.str("access_scope")
        if scope is None:
            # Older payloads omit access_scope; built-in names carry it, custom roles are
            # workspace roles (LangSmith's custom roles are defined for workspaces).
            scope = ORGANIZATION_SCOPE if name.startswith("ORGANIZATION_") else WORKSPACE_SCOPE
        if scope not in (ORGANIZATION_SCOPE, WORKSPACE_SCOPE):
            raise UnexpectedResponseError(
                f"Role.access_scope: expected 'organization' or 'workspace', got {scope!r}"
            )
        return cls(
            id=f.uuid("id", required=True),
            name=name,
            display_name=f.str("display_name", required=True) or name,
            description=f.str("description") or "",
            permissions=f.str_list("permissions", required=True),
            organization_id=f.uuid("organization_id"),
            access_scope=scope,
            is_restricted=f.optional_bool("is_restricted"),
        )


@dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    display_name: str
    created_at: datetime
    is_personal: bool
    is_deleted: bool
    tenant_handle: str | None
    organization_id: str | None
    # The caller's own permissions there (None when the API does not say).
    permissions: tuple[str, ...] | None = None
    # The caller's own role there (None when the API does not say).
    role_id: str | None = None
    role_name: str | None = None

    @property
    def is_shared(self) -> bool:
        """A workspace this project syncs and provisions: neither personal nor deleted."""
        return not self.is_personal and not self.is_deleted

    @classmethod
    def from_api(cls, data: Any) -> Workspace:
        f = _Fields("TenantForUser", data)
        return cls(
            id=f.uuid("id", required=True),
            display_name=f.str("display_name", required=True) or "",
            created_at=f.timestamp("created_at", required=True),
            is_personal=f.bool("is_personal", required=True),
            is_deleted=f.bool("is_deleted", required=True),
            tenant_handle=f.str("tenant_handle"),
            organization_id=f.uuid("organization_id"),
            permissions=f.optional_str_list("permissions"),
            role_id=f.uuid("role_id"),
            role_name=f.str("role_name"),
        )


@dataclass(frozen=True, slots=True)
class OrgMember:
    """An active (accepted) org member. ``id`` is the org identity id, ``ls_user_id`` the user key."""

    id: str
    ls_user_id: str
    user_id: str | None
    email: str | None
    full_name: str | None
    display_name: str | None
    is_disabled: bool
    role_id: str | None  # the org role
    role_name: str | None
    created_at: datetime | None
    login_methods: tuple[LoginMethod, ...] = ()

    @classmethod
    def from_api(cls, data: Any) -> OrgMember:
        f = _Fields("OrgMemberIdentity", data)
        return cls(
            id=f.uuid("id", required=True),
            ls_user_id=f.uuid("ls_user_id", required=True),
            user_id=f.uuid("user_id"),
            email=f.str("email"),
            full_name=f.str("full_name"),
            display_name=f.str("display_name"),
            is_disabled=f.bool("is_disabled", default=False),
            # LangChain's clients read role_id; a third-party fixture has only org_role_id.
            role_id=f.uuid("role_id") or f.uuid("org_role_id"),
            role_name=f.str("role_name") or f.str("org_role_name"),
            created_at=f.timestamp("created_at", required=True),
            login_methods=_objects(f, "linked_login_methods", LoginMethod.from_api),
        )


@dataclass(frozen=True, slots=True)
class PendingInvite:
    """A pending org (or workspace) invite: not a user, holds no grants."""

    id: str
    email: str
    created_at: datetime | None
    role_id: str | None  # the org role the invite will give
    role_name: str | None
    workspace_ids: tuple[str, ...]
    workspace_role_id: str | None

    @classmethod
    def from_api(cls, data: Any) -> PendingInvite:
        f = _Fields("OrgPendingIdentity", data)
        return cls(
            id=f.uuid("id", required=True),
            email=f.req_str("email"),
            created_at=f.timestamp("created_at", required=True),
            role_id=f.uuid("role_id") or f.uuid("org_role_id"),
            role_name=f.str("role_name") or f.str("org_role_name"),
            # `workspace_ids` is the invite request's field and may come back null; `tenant_ids`
            # (never null in the spec) lists the same workspaces, and is the one LangChain's
            # Terraform provider reads on pending rows.
            workspace_ids=f.uuid_list("workspace_ids") or f.uuid_list("tenant_ids"),
            workspace_role_id=f.uuid("workspace_role_id"),
        )


@dataclass(frozen=True, slots=True)
class WorkspaceMember:
    """A member row of one workspace. ``id`` is the workspace identity id (used by PATCH/DELETE)."""

    id: str
    workspace_id: str
    ls_user_id: str
    email: str | None
    full_name: str | None
    is_disabled: bool
    role_id: str | None  # the workspace role
    role_name: str | None
    org_role_id: str | None
    created_at: datetime | None

    @classmethod
    def from_api(cls, data: Any, workspace_id: str) -> WorkspaceMember:
        f = _Fields("MemberIdentity", data)
        workspace_id = canonical_uuid(workspace_id)
        listed_workspace = f.uuid("tenant_id")
        if listed_workspace and listed_workspace != workspace_id:
            raise UnexpectedResponseError(
                f"MemberIdentity.tenant_id: asked for workspace {workspace_id}, got a row of "
                f"{listed_workspace} (record id {data.get('id')!r})"
            )
        return cls(
            id=f.uuid("id", required=True),
            workspace_id=workspace_id,
            ls_user_id=f.uuid("ls_user_id", required=True),
            email=f.str("email"),
            full_name=f.str("full_name"),
            is_disabled=f.bool("is_disabled", default=False),
            role_id=f.uuid("role_id"),
            role_name=f.str("role_name"),
            org_role_id=f.uuid("org_role_id"),
            created_at=f.timestamp("created_at", required=True),
        )


@dataclass(frozen=True, slots=True)
class WorkspaceMembership:
    """One entry of an enriched member's ``workspace_memberships``."""

    workspace_id: str
    workspace_name: str | None
    role_id: str | None
    role_name: str | None

    @classmethod
    def from_api(cls, data: Any) -> WorkspaceMembership:
        f = _Fields("orgs.WorkspaceMembership", data)
        # A large org lists the same few thousand workspace and role names and ids on every
        # one of its ~100,000 memberships: share one string each instead of one per mention.
        return cls(
            workspace_id=_shared(f.uuid("workspace_id", required=True)),
            workspace_name=_shared(f.str("workspace_name")),
            role_id=_shared(f.uuid("role_id") or None),
            role_name=_shared(f.str("role_name")),
        )


@dataclass(frozen=True, slots=True)
class EnrichedMember:
    """A row of ``/api/v1/platform/orgs/current/members``: an active member or a pending invite."""

    id: str  # org identity id, or pending identity id
    ls_user_id: str | None  # absent for pending invites
    email: str | None
    display_name: str | None
    is_disabled: bool
    is_pending: bool
    role_id: str | None  # the org role
    role_name: str | None
    created_at: datetime | None
    workspace_memberships: tuple[WorkspaceMembership, ...]
    login_methods: tuple[LoginMethod, ...] = ()
    scim_groups: tuple[ScimGroup, ...] = ()

    @classmethod
    def from_api(cls, data: Any) -> EnrichedMember:
        f = _Fields("orgs.OrgMemberEnriched", data)
        is_pending = f.bool("is_pending", default=False)
        ls_user_id = f.uuid("ls_user_id") or None
        if not is_pending and ls_user_id is None:
            raise UnexpectedResponseError(
                f"orgs.OrgMemberEnriched.ls_user_id: missing on an active member "
                f"(record id {data.get('id')!r})"
            )
        return cls(
            id=f.uuid("id", required=True),
            ls_user_id=ls_user_id,
            # An anonymity-restricted answer withholds these: left out, or (Go's zero value for
            # a plain string field) empty. Either way unknown, never a new email or name.
            email=f.str("email") or None,
            display_name=f.str("display_name") or None,
            is_disabled=f.bool("is_disabled", default=False),
            is_pending=is_pending,
            role_id=f.uuid("role_id") or None,
            role_name=f.str("role_name"),
            created_at=f.timestamp("created_at"),
            workspace_memberships=_objects(f, "workspace_memberships", WorkspaceMembership.from_api),
            login_methods=_objects(f, "linked_login_methods", LoginMethod.from_api),
            scim_groups=_objects(f, "scim_groups", ScimGroup.from_api),
        )

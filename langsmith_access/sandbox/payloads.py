"""How the sandbox turns ``OrgState`` records into the JSON rows LangSmith sends.

One function per schema of ``langsmith-openapi-subset.json``; field names and nullability follow
those schemas. Callers hold ``state.lock``.
"""

from __future__ import annotations

from langsmith_access.sandbox.access_records import LoginMethod, OrgSettings
from langsmith_access.sandbox.org_state import (
    ORGANIZATION_SCOPE,
    WORKSPACE_SCOPE,
    OrgMember,
    OrgState,
    PendingOrgInvite,
    PendingWorkspaceInvite,
    Role,
    Workspace,
    WorkspaceMembership,
)


def role_json(role: Role) -> dict:
    """A ``Role``."""
    return {
        "id": role.id,
        "name": role.name,
        "display_name": role.display_name,
        "description": role.description,
        "organization_id": role.organization_id,
        "permissions": list(role.permissions),
        "access_scope": role.access_scope,
        "is_restricted": role.is_restricted,  # in LangChain's later spec, not the vendored one
    }


def organization_info_json(
    state: OrgState, *, plan: str = "enterprise", permissions: list[str] | None = None
) -> dict:
    """An ``OrganizationInfo``, as the calling key sees it: ``permissions`` are the key's own
    (default: an Organization Admin's); ``config`` has the flags of the plan (``enterprise`` or
    ``plus``: no workspace RBAC, ABAC, audit logs, SAML SSO (nor SCIM) or key expiry caps); the
    security settings are the org's (``state.settings``)."""
    enterprise = plan == "enterprise"
    settings = state.settings
    return {
        "id": state.organization_id,
        "display_name": state.display_name,
        "config": {
            "plan_tier": plan,
            "can_use_rbac": enterprise,
            "can_use_abac": enterprise,
            "can_use_audit_logs": enterprise,
            "can_use_saml_sso": enterprise,
            "can_set_api_key_max_expiry": enterprise,
            "max_identities": 100_000 if enterprise else 100,
            "max_workspaces": 10_000 if enterprise else 10,
            "can_add_seats": True,
        },
        "is_personal": False,
        "tier": "enterprise" if enterprise else "plus",
        "reached_max_workspaces": False,
        "permissions": (
            list(permissions)
            if permissions is not None
            else list(state.role_by_name("ORGANIZATION_ADMIN").permissions)
        ),
        "disabled": False,
        "member_disabled": False,
        **org_settings_json(settings),
    }


def org_settings_json(settings: OrgSettings) -> dict:
    """The security settings fields of ``OrganizationInfo``."""
    return {
        "sso_only": settings.sso_only,
        "jit_provisioning_enabled": settings.jit_provisioning_enabled,
        "invites_enabled": settings.invites_enabled,
        "sso_login_slug": settings.sso_login_slug,
        "default_sso_provision": settings.default_sso_provision,
        "pat_creation_disabled": settings.pat_creation_disabled,
        "public_sharing_disabled": settings.public_sharing_disabled,
        "workspace_admin_can_invite_to_org": settings.workspace_admin_can_invite_to_org,
        "max_api_key_expiry_days": settings.max_api_key_expiry_days,
        "max_pat_expiry_days": settings.max_pat_expiry_days,
        "max_service_key_expiry_days": settings.max_service_key_expiry_days,
        "security_contact": settings.security_contact,
        "scim_group_name_separator": settings.scim_group_name_separator,
        "ip_allowlist": list(settings.ip_allowlist),
        "ip_allowlist_enabled": settings.ip_allowlist_enabled,
    }


def workspace_json(state: OrgState, workspace: Workspace, own_role: Role | None = None) -> dict:
    """A ``TenantForUser``. ``role_id``/``role_name``/``permissions`` are the caller's own role
    there: ``own_role``, or null (an Organization Admin's key has no workspace role of its own)."""
    return {
        "id": workspace.id,
        "organization_id": state.organization_id,
        "created_at": workspace.created_at,
        "display_name": workspace.display_name,
        "is_personal": workspace.is_personal,
        "is_deleted": workspace.is_deleted,
        "tenant_handle": workspace.tenant_handle,
        "data_plane_url": None,
        "read_only": False,
        "role_id": own_role.id if own_role else None,
        "role_name": own_role.display_name if own_role else None,
        "permissions": list(own_role.permissions) if own_role else None,
    }


def _person_fields(state: OrgState, member: OrgMember) -> dict:
    """Fields that org and workspace member rows share."""
    org_role = state.roles[member.org_role_id]
    return {
        "organization_id": state.organization_id,
        "user_id": member.user_id,
        "ls_user_id": member.ls_user_id,
        "read_only": False,
        "email": member.email,
        "full_name": member.full_name,
        "display_name": member.display_name,
        "avatar_url": member.avatar_url,
        "linked_login_methods": [
            login_method_json(member, method) for method in member.linked_login_methods
        ],
        "is_disabled": member.is_disabled,
        "org_role_id": org_role.id,
        "org_role_name": org_role.display_name,
    }


def org_member_json(state: OrgState, member: OrgMember) -> dict:
    """An ``OrgMemberIdentity``: ``id`` is the org identity id, ``role_id`` the org role,
    ``tenant_ids`` every workspace the member belongs to (personal and deleted ones too)."""
    org_role = state.roles[member.org_role_id]
    return {
        "id": member.id,
        "tenant_id": None,
        "created_at": member.created_at,
        **_person_fields(state, member),
        "role_id": org_role.id,
        "role_name": org_role.display_name,
        "access_scope": ORGANIZATION_SCOPE,
        "tenant_ids": [m.workspace_id for m in state.memberships_of(member.ls_user_id)],
    }


def workspace_member_json(state: OrgState, membership: WorkspaceMembership) -> dict:
    """A ``MemberIdentity``: ``id`` is the workspace identity id, ``role_id`` the workspace
    role, ``org_role_id`` the org role."""
    member = state.members[membership.ls_user_id]
    workspace_role = state.roles[membership.role_id]
    return {
        "id": membership.id,
        "tenant_id": membership.workspace_id,
        "created_at": membership.created_at,
        **_person_fields(state, member),
        "role_id": workspace_role.id,
        "role_name": workspace_role.display_name,
        "access_scope": WORKSPACE_SCOPE,
    }


def identity_json(state: OrgState, membership: WorkspaceMembership) -> dict:
    """An ``Identity``: what adding a member to a workspace returns."""
    member = state.members[membership.ls_user_id]
    workspace_role = state.roles[membership.role_id]
    return {
        "id": membership.id,
        "organization_id": state.organization_id,
        "tenant_id": membership.workspace_id,
        "created_at": membership.created_at,
        "user_id": member.user_id,
        "ls_user_id": member.ls_user_id,
        "read_only": False,
        "role_id": workspace_role.id,
        "role_name": workspace_role.display_name,
        "access_scope": WORKSPACE_SCOPE,
    }


def org_pending_json(state: OrgState, invite: PendingOrgInvite) -> dict:
    """An ``OrgPendingIdentity``: ``role_id`` is the org role offered; no ``ls_user_id``."""
    org_role = state.roles[invite.org_role_id]
    return {
        "id": invite.id,
        "email": invite.email,
        "read_only": False,
        "role_id": org_role.id,
        "role_name": org_role.display_name,
        "org_role_id": org_role.id,
        "org_role_name": org_role.display_name,
        "workspace_ids": list(invite.workspace_ids) if invite.workspace_ids else None,
        "workspace_role_id": invite.workspace_role_id,
        "full_name": None,
        "access_scope": ORGANIZATION_SCOPE,
        "user_id": None,
        "tenant_id": None,
        "organization_id": state.organization_id,
        "created_at": invite.created_at,
        "tenant_ids": list(invite.workspace_ids or []),
    }


def workspace_pending_json(state: OrgState, invite: PendingWorkspaceInvite) -> dict:
    """A ``PendingIdentity`` in a workspace: ``role_id`` is the workspace role offered."""
    workspace_role = state.roles[invite.role_id]
    return {
        "id": invite.id,
        "email": invite.email,
        "read_only": False,
        "role_id": workspace_role.id,
        "role_name": workspace_role.display_name,
        "access_scope": WORKSPACE_SCOPE,
        "full_name": None,
        "user_id": None,
        "tenant_id": invite.workspace_id,
        "organization_id": state.organization_id,
        "created_at": invite.created_at,
        "workspace_ids": None,
        "workspace_role_id": None,
        "org_role_id": None,
        "org_role_name": None,
    }


def login_method_json(member: OrgMember, method: LoginMethod) -> dict:
    """A ``ProviderUserSlim``: one of the member's linked login methods."""
    return {
        "id": method.id,
        "provider": method.provider,
        "ls_user_id": member.ls_user_id,
        "saml_provider_id": method.saml_provider_id,
        "provider_user_id": method.provider_user_id,
        "created_at": method.created_at,
        "updated_at": method.created_at,
        "email": member.email,
        "full_name": member.full_name,
        "first_name": None,
        "last_name": None,
        "username": method.username,
        "is_disabled": member.is_disabled,
        "provisioning_method": method.provisioning_method,
        "email_confirmed_at": method.email_confirmed_at,
    }


def enriched_member_json(
    state: OrgState,
    member: OrgMember,
    *,
    visible_workspaces: set[str] | None = None,
    anonymous: bool = False,
) -> dict:
    """An ``orgs.OrgMemberEnriched`` for an active member (the Go service omits empty fields,
    so ``avatar_url`` only appears when set). ``visible_workspaces``: list only memberships of
    these (None: all). ``anonymous``: leave out email, display name and avatar, as an
    anonymity-restricted answer may."""
    org_role = state.roles[member.org_role_id]
    memberships = [
        m
        for m in state.memberships_of(member.ls_user_id)
        if visible_workspaces is None or m.workspace_id in visible_workspaces
    ]
    row = {
        "id": member.id,
        "ls_user_id": member.ls_user_id,
        "email": member.email,
        "display_name": member.display_name,
        "created_at": member.created_at,
        "is_disabled": member.is_disabled,
        "is_pending": False,
        "role_id": org_role.id,
        "role_name": org_role.display_name,
        "linked_login_methods": [
            {"provider": method.provider, "provisioning": method.provisioning_method}
            if method.provisioning_method
            else {"provider": method.provider}  # the Go service omits empty fields
            for method in member.linked_login_methods
        ],
        "scim_groups": [
            {"name": group.name, "created_at": group.created_at} for group in member.scim_groups
        ],
        "workspace_memberships": [
            {
                "workspace_id": membership.workspace_id,
                "workspace_name": state.workspaces[membership.workspace_id].display_name,
                "role_id": membership.role_id,
                "role_name": state.roles[membership.role_id].display_name,
            }
            for membership in memberships
        ],
    }
    if anonymous:
        del row["email"], row["display_name"]
    elif member.avatar_url:
        row["avatar_url"] = member.avatar_url
    return row


def enriched_pending_json(state: OrgState, invite: PendingOrgInvite) -> dict:
    """An ``orgs.OrgMemberEnriched`` for a pending invite: no ``ls_user_id``, no memberships."""
    org_role = state.roles[invite.org_role_id]
    return {
        "id": invite.id,
        "email": invite.email,
        "created_at": invite.created_at,
        "is_disabled": False,
        "is_pending": True,
        "role_id": org_role.id,
        "role_name": org_role.display_name,
        "linked_login_methods": [],
        "scim_groups": [],
        "workspace_memberships": [],
    }

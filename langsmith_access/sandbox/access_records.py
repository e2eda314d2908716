"""The sandbox's records for the rest of the access picture (DESIGN.md section 9): how members
log in, their SCIM groups, credentials, service accounts, access policies and the workspace tags
their conditions name, SSO settings, the organization's settings and the audit log's events.

Plain data, like the member and workspace records of org_state.py; ``OrgState`` holds them and
changes them through its methods, and payloads turn them into the JSON LangSmith sends
(``langsmith-api.md``, "Credentials", "Member origin and organization security settings",
"Access policies (ABAC)", "Audit logs"). Timestamps are the fixed-shape UTC strings of
org_state.py, except audit events, which keep milliseconds since the epoch (OCSF's ``time``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Credential kinds, as the `credentials` table names them (DESIGN.md section 9).
SERVICE_KEY = "service_key"  # org-scoped service key: GET /api/v1/orgs/current/service-keys
WORKSPACE_SERVICE_KEY = "workspace_service_key"  # GET /api/v1/api-key with X-Tenant-Id
PERSONAL_ACCESS_TOKEN = "personal_access_token"  # GET /api/v1/orgs/current/personal-access-tokens
API_KEY_KINDS = (SERVICE_KEY, WORKSPACE_SERVICE_KEY, PERSONAL_ACCESS_TOKEN)

# What each kind's secret starts with: service keys `lsv2_sk_`, personal access tokens `lsv2_pt_`.
KEY_PREFIXES = {
    SERVICE_KEY: "lsv2_sk_",
    WORKSPACE_SERVICE_KEY: "lsv2_sk_",
    PERSONAL_ACCESS_TOKEN: "lsv2_pt_",
}
SCIM_TOKEN_PREFIX = "lsv2_scim_"


def short_form(secret: str, prefix: str) -> str:
    """What a listing shows of a secret: its prefix and last four characters, never the rest."""
    return f"{prefix}...{secret[-4:]}"


@dataclass(slots=True)
class LoginMethod:
    """One linked login method of a member (a ``ProviderUserSlim``).

    ``provider``: ``email``, ``supabase:non-sso`` (Google, GitHub), ``supabase:sso`` (SAML),
    ``oidc`` or ``custom-oidc``. ``provisioning_method``: ``scim``, ``saml:jit``, ``bootstrap``
    or None (signed up, or joined by invite). ``saml_provider_id`` is the SSO provider's
    ``provider_id`` for SAML logins; ``username`` the login's user name at a provider that has
    one (a GitHub login).
    """

    id: str
    provider: str
    provisioning_method: str | None
    created_at: str
    provider_user_id: str | None = None
    saml_provider_id: str | None = None
    email_confirmed_at: str | None = None
    username: str | None = None


@dataclass(slots=True)
class ScimGroup:
    """An identity-provider group a member belongs to, pushed by SCIM. Its name follows
    LangSmith's rule: ``<prefix>Organization Admin(s)``, or ``<prefix><org role><sep><workspace
    name><sep><workspace role>`` with ``sep`` the org's ``scim_group_name_separator``."""

    name: str
    created_at: str


@dataclass(slots=True)
class ApiKey:
    """A service key, a workspace service key or a personal access token.

    ``secret`` is the full key: the API returns it once, when the key is created, and lists only
    ``short_key``. ``workspace_ids`` is None for an org-wide service key, else the workspaces it
    reaches (a workspace service key: its one workspace). ``role_id``/``org_role_id`` are the
    roles it acts with (a personal access token acts as its owner: None). ``owner_ls_user_id``:
    the member a personal access token belongs to. ``service_account_id``: the service account a
    service key acts for (the API documents no link, so it is never served). ``created_by``: the
    ``ls_user_id`` of whoever created it (its format is undocumented). ``revoked_at``: set once
    deleted; revoked keys stay listed, as one third-party client saw.
    """

    id: str
    kind: str
    secret: str
    description: str
    created_at: str
    last_used_at: str | None = None
    expires_at: str | None = None
    revoked_at: str | None = None
    workspace_ids: list[str] | None = None
    default_workspace_id: str | None = None
    role_id: str | None = None
    org_role_id: str | None = None
    owner_ls_user_id: str | None = None
    service_account_id: str | None = None
    created_by: str | None = None
    read_only: bool = False

    @property
    def short_key(self) -> str:
        return short_form(self.secret, KEY_PREFIXES[self.kind])


@dataclass(slots=True)
class ScimToken:
    """A SCIM bearer token: the identity provider's credential for SCIM pushes. ``token`` is the
    secret, returned once at creation; listings show ``short_token``."""

    id: str
    token: str
    description: str
    created_at: str
    updated_at: str
    last_used_at: str | None = None

    @property
    def short_token(self) -> str:
        return short_form(self.token, SCIM_TOKEN_PREFIX)


@dataclass(slots=True)
class ServiceAccount:
    """A service account: what service keys act for. ``organization_identity_id`` is its org
    identity (creation returns it); service accounts are not listed as members here (whether
    LangSmith lists them is not settled)."""

    id: str
    name: str
    created_at: str
    updated_at: str
    organization_identity_id: str
    default_workspace_id: str | None = None


@dataclass(slots=True)
class PolicyCondition:
    """``resource_tag_key`` ``attribute_key`` ``operator`` ``attribute_value``: tag keys and
    values are named as strings."""

    attribute_key: str
    operator: str
    attribute_value: str
    attribute_name: str = "resource_tag_key"


@dataclass(slots=True)
class PolicyConditionGroup:
    """Conditions AND-ed, for one permission on one resource type."""

    permission: str
    resource_type: str
    conditions: list[PolicyCondition]


@dataclass(slots=True)
class AccessPolicy:
    """An ABAC access policy: ``effect`` ``allow`` or ``deny`` on top of the workspace roles in
    ``role_ids`` (attached roles), when any of its condition groups matches (groups OR-ed)."""

    id: str
    name: str
    description: str
    effect: str
    role_ids: list[str]
    condition_groups: list[PolicyConditionGroup]
    created_at: str
    updated_at: str


# What a policy's conditions and condition groups may name, as authz_internal.AccessPolicy
# serves them (the enums AbacOperator, AbacAttributeName and Permission of the official spec).
ABAC_OPERATORS = (
    "equals", "not_equals", "equals_ignore_case", "not_equals_ignore_case", "matches", "not_matches",
    "equals_if_exists", "not_equals_if_exists", "equals_ignore_case_if_exists",
    "not_equals_ignore_case_if_exists", "matches_if_exists", "not_matches_if_exists",
)
ABAC_ATTRIBUTE_NAMES = ("resource_tag_key",)
ABAC_PERMISSIONS = (
    "annotation-queues:create", "annotation-queues:delete", "annotation-queues:read", "annotation-queues:update",
    "charts:create", "charts:delete", "charts:read", "charts:update",
    "datasets:create", "datasets:delete", "datasets:read", "datasets:share", "datasets:update",
    "deployments:create", "deployments:delete", "deployments:read", "deployments:update",
    "feedback:create", "feedback:delete", "feedback:read", "feedback:update", "experiments:run",
    "issues:create", "issues:delete", "issues:read", "issues:update",
    "projects:create", "projects:delete", "projects:read", "projects:update",
    "projects:increase-trace-tier", "projects:decrease-trace-tier",
    "prompts:create", "prompts:delete", "prompts:read", "prompts:update", "prompts:share",
    "rules:create", "rules:delete", "rules:read", "rules:update",
    "runs:create", "runs:read", "runs:share", "runs:delete",
    "sandboxes:create", "sandboxes:delete", "sandboxes:read", "sandboxes:update", "sandboxes:exec",
    "workspaces:manage-members", "workspaces:manage-secrets", "workspaces:manage",
    "workspaces:manage-model-configs", "workspaces:read",
    "alerts:create", "alerts:update", "alerts:delete", "alerts:read", "bulk-exports:read", "bulk-exports:manage",
    "mcp-servers:create", "mcp-servers:delete", "mcp-servers:invoke", "mcp-servers:read", "mcp-servers:update",
    "gateway:invoke", "fleet:read-admin-config", "fleet:write-admin-config",
    "organization:pats:create", "organization:read", "organization:manage",
)


# Resource types a tag may be put on (ResourceType) and the bucket of TaggingsByResourceType
# that lists them; ``evaluator`` has no bucket in the official schema.
TAG_RESOURCE_TYPES = (
    "dashboard", "dataset", "deployment", "evaluator", "experiment", "fleet_integration",
    "mcp_server", "project", "prompt", "queue", "sandbox",
)
TAGGING_BUCKETS = {
    "dashboard": "dashboards", "dataset": "datasets", "deployment": "deployments",
    "experiment": "experiments", "fleet_integration": "fleet_integrations",
    "mcp_server": "mcp_servers", "project": "projects", "prompt": "prompts", "queue": "queues",
    "sandbox": "sandboxes",
}


@dataclass(slots=True)
class Tagging:
    """One tag value put on one resource of the workspace (what ABAC conditions match)."""

    id: str
    tag_value_id: str
    resource_type: str
    resource_id: str
    resource_name: str
    created_at: str


@dataclass(slots=True)
class TagValue:
    id: str
    tag_key_id: str
    value: str
    created_at: str
    description: str | None = None
    taggings: dict[str, Tagging] = field(default_factory=dict)  # tagging id -> Tagging


@dataclass(slots=True)
class TagKey:
    """A workspace's tag key (tags are per workspace) and its values."""

    id: str
    key: str
    created_at: str
    description: str | None = None
    values: dict[str, TagValue] = field(default_factory=dict)  # value id -> TagValue


@dataclass(slots=True)
class SsoProvider:
    """A SAML SSO configuration: where just-in-time provisioning puts new users
    (``default_workspace_ids`` with ``default_workspace_role_id``) and SSO Groups Sync. The
    identity provider's metadata is given by URL (``metadata_url``) or pasted as XML
    (``metadata_xml``); ``attribute_mapping_load_error``: why LangSmith could not load the
    attribute mapping (a misconfigured SSO), None when it loaded."""

    id: str
    provider_id: str
    default_workspace_role_id: str
    default_workspace_ids: list[str]
    metadata_url: str | None = None
    metadata_xml: str | None = None
    sso_groups_enabled: bool = False
    sso_groups_claim_field: str = "groups"
    sso_groups_required: bool = False
    sso_groups_role_sync_enabled: bool = True
    attribute_mapping_keys: dict[str, bool] | None = None  # claim name -> is an array
    attribute_mapping_load_error: str | None = None


@dataclass(slots=True)
class OrgSettings:
    """The organization's security settings, as ``GET /api/v1/orgs/current/info`` shows them
    (``None`` expiry caps: no cap)."""

    sso_only: bool = False
    jit_provisioning_enabled: bool = True
    invites_enabled: bool = True
    sso_login_slug: str | None = None
    default_sso_provision: bool = False
    pat_creation_disabled: bool = False
    public_sharing_disabled: bool = False
    workspace_admin_can_invite_to_org: bool = False
    max_api_key_expiry_days: int | None = None
    max_pat_expiry_days: int | None = None
    max_service_key_expiry_days: int | None = None
    security_contact: str | None = None
    scim_group_name_separator: str = ":"
    ip_allowlist: list[str] = field(default_factory=list)
    ip_allowlist_enabled: bool = False


@dataclass(frozen=True, slots=True)
class AuditActor:
    """Who did something: a member (``ls_user_id``/``user_id``), through a credential
    (``api_key_id``; None for a UI session), from ``ip``."""

    ls_user_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    ip: str = "203.0.113.10"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit-log record. ``time_ms``: milliseconds since the epoch. ``operation``: one of
    LangSmith's audit operations (an open set). ``resource_ids``: what it acted on."""

    id: str
    operation: str
    time_ms: int
    actor: AuditActor
    succeeded: bool | None = True
    workspace_id: str | None = None
    resource_ids: tuple[str, ...] = ()
    http_method: str = "POST"
    path: str = "/api/v1"
    status_code: int = 200

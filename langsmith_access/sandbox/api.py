"""The LangSmith API as the sandbox serves it: routing, authentication, headers, validation and
one handler per route, over an ``OrgState``. No HTTP plumbing here (that is server.py), so the
rules read top to bottom. The behaviour follows ``langsmith-api.md``.

The routes of the rest of the access picture (DESIGN.md section 9) are in access_api.py; the
request and response types and the parsing helpers in routing.py.

Order of checks for a request: route (404/405; 404 too for a section the install lacks), API
key (401), then organization scope (``X-Organization-Id``, 403) on org routes or the workspace
(``X-Tenant-Id``, 403/404) on workspace routes, then query/body validation (422), then the
handler's own 4xx (the plan's and the key role's 403s of the access picture's sections).
The 401 and 403s of these checks carry ``{"error": ...}`` on the Go platform routes
(``/v1/platform/...``, ``/api/v1/platform/...``) and ``{"detail": ...}`` on the others.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from langsmith_access.sandbox import payloads
from langsmith_access.sandbox.access_api import ROUTED_SECTIONS, AccessRoutes
from langsmith_access.sandbox.access_records import SERVICE_KEY, WORKSPACE_SERVICE_KEY, ApiKey
from langsmith_access.sandbox.faults import FaultConfig
from langsmith_access.sandbox.org_state import (
    CUSTOM_ROLE_NAME,
    ORGANIZATION_SCOPE,
    WORKSPACE_SCOPE,
    OrgMember,
    OrgState,
    PendingOrgInvite,
    Role,
    Workspace,
    WorkspaceMembership,
    in_api_order,
    sorted_by,
)
from langsmith_access.sandbox.routing import (
    ApiError,
    ApiRequest,
    ApiResponse,
    HtmlPage,
    Route,
    body_bool,
    body_str,
    body_uuid,
    detail_error,
    json_object_body,
    last_value,
    paged,
    parse_uuid,
    path_uuid,
    query_bool,
    query_int,
    query_uuids,
    route_error,
    validation_error,
)

# What PATCH /api/v1/orgs/current/info changes of OrgSettings (OrganizationUpdate's fields).
ORG_SETTING_FLAGS = ("public_sharing_disabled", "pat_creation_disabled", "jit_provisioning_enabled",
                     "workspace_admin_can_invite_to_org", "invites_enabled")
UNMODELLED_ORG_FLAGS = ("unshare_all", "llm_auth_proxy_enabled", "restrict_browser_secrets", "engine_enabled")
ORG_SETTING_DAY_CAPS = ("max_api_key_expiry_days", "max_pat_expiry_days", "max_service_key_expiry_days")
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
PAGINATION_TOTALS = ("all", "enriched-only")
DELETE_RESPONSES = ("json_object", "null", "no_content")
WRITE_METHODS = ("POST", "PATCH", "DELETE")

DEPLOYMENTS = ("cloud", "self-hosted")
KEY_ROLES = ("org-admin", "org-user", "org-viewer", "workspace", "member-manager")
# A custom workspace role that may manage members without being the built-in Admin: what a key
# of key role "member-manager" holds (the sandbox adds it to the org when it is missing).
MEMBER_MANAGER = "Member Manager"
# The org role and the workspace role each kind of key acts with.
KEY_ROLE_ROLES = {
    "org-admin": ("ORGANIZATION_ADMIN", "WORKSPACE_ADMIN"),  # Admin everywhere, implicitly
    "org-user": ("ORGANIZATION_USER", "WORKSPACE_ADMIN"),  # a key made with default roles
    "org-viewer": ("ORGANIZATION_VIEWER", "WORKSPACE_VIEWER"),  # a read-only key
    "workspace": ("ORGANIZATION_USER", "WORKSPACE_ADMIN"),  # refused on org routes anyway
    "member-manager": ("ORGANIZATION_USER", MEMBER_MANAGER),  # Enterprise: a chosen custom role
}
PLANS = ("enterprise", "plus")


# ------------------------------------------------------------------ paging, sorting, filters


def glob_matcher(patterns: list[str]) -> Callable[[str], bool]:
    """Case-insensitive globs where ``*`` is the only wildcard; matches if any pattern does."""
    regexes = [
        re.compile("^" + ".*".join(map(re.escape, pattern.split("*"))) + "$", re.IGNORECASE)
        for pattern in patterns
    ]
    return lambda text: any(regex.match(text or "") for regex in regexes)


@dataclass
class MemberFilters:
    """The filters of the ``/members/active`` routes."""

    emails: set[str]
    ls_user_ids: set[str]
    user_ids: set[str]
    is_disabled: bool | None
    search: str | None

    @classmethod
    def from_query(cls, query) -> MemberFilters:
        return cls(
            emails={email.casefold() for email in query.get("emails", [])},
            ls_user_ids=query_uuids(query, "ls_user_ids"),
            user_ids=query_uuids(query, "user_ids"),
            is_disabled=query_bool(query, "is_disabled", None),
            search=(last_value(query, "q") or "").casefold() or None,
        )

    def keep(self, member: OrgMember) -> bool:
        if self.emails and member.email.casefold() not in self.emails:
            return False
        if self.ls_user_ids and member.ls_user_id not in self.ls_user_ids:
            return False
        if self.user_ids and member.user_id not in self.user_ids:
            return False
        if self.is_disabled is not None and member.is_disabled != self.is_disabled:
            return False
        if self.search:
            searched = f"{member.email}\n{member.full_name}\n{member.display_name}".casefold()
            if self.search not in searched:
                return False
        return True


SORT_FIELDS = ("name", "email", "role", "created_at")


def sort_field(query) -> str:
    value = last_value(query, "sort_by") or "created_at"
    if value not in SORT_FIELDS:
        raise validation_error(
            ["query", "sort_by"],
            "Input should be 'name', 'email', 'role' or 'created_at'",
            "enum",
        )
    return value


# ------------------------------------------------------------------ routing


ENRICHED_MEMBERS_PATH = "/v1/platform/orgs/current/members"  # the form the vendored spec names
# The form LangChain's Go SDK, Terraform and API docs call; Cloud answers both, a self-hosted
# install only this one (nginx sends /api/v1/platform/X to the platform backend's /v1/platform/X).
API_ENRICHED_MEMBERS_PATH = "/api" + ENRICHED_MEMBERS_PATH

# Routes of the web UI's session that API keys are refused (403) on (langsmith-api.md, "Key
# permissions and plan limits").
SESSION_ONLY_PATHS = ("/api/v1/orgs", "/api/v1/orgs/permissions", "/api/v1/me/ls_user_id")
# The deprecated personal-access-token routes of the signed-in user ("user-session only",
# langsmith-api.md, "Credentials"): they exist, so a key is refused (403), not told 405 or 404.
SESSION_ONLY_ROUTES = (
    ("GET", "/api/v1/api-key/current"),
    ("POST", "/api/v1/api-key/current"),
    ("DELETE", "/api/v1/api-key/current/{pat_id}"),
)


class SandboxApi(AccessRoutes):
    """Answers ``ApiRequest``s from an ``OrgState`` as LangSmith would.

    ``api_key`` is the organization-scoped service key; ``workspace_scoped_key``, when set, is a
    second accepted key that org routes refuse with 403. ``enriched_route=False`` makes the
    platform route answer 404 (older and self-hosted installs). ``delete_response`` picks what a
    successful DELETE answers: ``"json_object"`` (200 ``{}``), ``"null"`` (200 ``null``) or
    ``"no_content"`` (204).

    The deployment and limits it plays (DESIGN.md section 8, ``langsmith-api.md``):

    - ``deployment``: ``"cloud"`` serves platform routes under ``/v1/platform/`` and
      ``/api/v1/platform/``; ``"self-hosted"`` only under ``/api/v1/platform/``, reads ``/api/X``
      as ``/api/v1/X``, and answers every other path outside ``/api`` (``/v1/platform/``
      included) with the web UI's HTML page and status 200, as its nginx does.
    - ``key_role``: what ``api_key`` is. ``"org-admin"``: an org-scoped key with Organization
      Admin. ``"org-user"``: an org-scoped key created with default roles (Organization User,
      Workspace Admin in every workspace): no ``organization:manage``, so the enriched route
      answers ``X-Members-List-All-Workspaces: false`` with only some workspaces' memberships.
      ``"org-viewer"``: an org-scoped read-only key (Organization Viewer, Workspace Viewer):
      no member writes, no personal access token listing. ``"workspace"``: a key scoped to the
      first shared workspace: 403 on organization routes and on other workspaces.
    - ``plan``: ``"enterprise"`` (workspace RBAC) or ``"plus"`` (``config.can_use_rbac`` false:
      adding a member with, or changing a member to, a workspace role other than Admin is
      refused with 403; no ABAC, audit logs, SAML SSO or SCIM either: those sections' routes
      answer 403, access_api.py).
    - ``anonymity_restricted``: the enriched route answers ``X-Members-Anonymity-Restricted:
      true`` and leaves out active members' email and display name.
    - ``missing_sections``: sections of DESIGN.md section 9 (``ROUTED_SECTIONS``) whose routes
      answer 404, as an older self-hosted version without them does.
    - ``pagination_totals``: ``"all"`` sends ``X-Pagination-Total`` on every member listing
      (LangSmith "may"); ``"enriched-only"`` only on the enriched members route, the one
      listing the official schemas document it on.

    Its keys are credentials of the org too: ``api_key`` is listed as a service key (a
    workspace service key for ``key_role="workspace"``), by its ``short_key`` only, and every
    request it authenticates updates its ``last_used_at`` and is the credential the audit log
    names for what the request changes.
    """

    def __init__(
        self,
        state: OrgState,
        *,
        api_key: str,
        workspace_scoped_key: str | None = None,
        enriched_route: bool = True,
        delete_response: str = "json_object",
        deployment: str = "cloud",
        key_role: str = "org-admin",
        plan: str = "enterprise",
        anonymity_restricted: bool = False,
        missing_sections: tuple[str, ...] | frozenset[str] = (),
        pagination_totals: str = "all",
    ) -> None:
        if pagination_totals not in PAGINATION_TOTALS:
            raise ValueError(f"pagination_totals must be one of {', '.join(PAGINATION_TOTALS)}, "
                             f"got {pagination_totals!r}")
        self.pagination_totals = pagination_totals
        if delete_response not in DELETE_RESPONSES:
            raise ValueError(f"delete_response must be one of {DELETE_RESPONSES}")
        for name, value, allowed in (
            ("deployment", deployment, DEPLOYMENTS),
            ("key_role", key_role, KEY_ROLES),
            ("plan", plan, PLANS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        self.state = state
        self.api_key = api_key
        self.workspace_scoped_key = workspace_scoped_key
        self.enriched_route = enriched_route
        self.delete_response = delete_response
        self.deployment = deployment
        self.key_role = key_role
        self.plan = plan
        self.anonymity_restricted = anonymity_restricted
        unknown = sorted(set(missing_sections) - set(ROUTED_SECTIONS))
        if unknown:
            raise ValueError(
                f"missing_sections must name sections among {', '.join(ROUTED_SECTIONS)}; "
                f"got {', '.join(unknown)}"
            )
        self.missing_sections = frozenset(missing_sections)
        # secret -> the id of the ApiKey record it is in the org.
        self._key_ids = self._register_keys()
        self.routes = [
            Route("GET", "/api/v1/orgs/current/info", self.get_org_info, "organization"),
            Route("PATCH", "/api/v1/orgs/current/info", self.patch_org_info, "organization"),
            Route("PATCH", "/api/v1/orgs/current/login-methods", self.patch_login_methods, "organization"),
            Route("GET", "/api/v1/orgs/current/roles", self.list_roles, "organization"),
            Route("GET", "/api/v1/workspaces", self.list_workspaces, "organization"),
            Route("GET", "/api/v1/orgs/current/members", self.list_org_members, "organization"),
            Route(
                "GET",
                "/api/v1/orgs/current/members/active",
                self.list_active_org_members,
                "organization",
            ),
            Route(
                "GET",
                "/api/v1/orgs/current/members/pending",
                self.list_pending_org_members,
                "organization",
            ),
            # Org member writes (organization:manage): this project never makes them (org roles
            # are read-only to it), but they are documented and change what it reads.
            Route("POST", "/api/v1/orgs/current/members", self.invite_org_member, "organization"),
            Route("PATCH", "/api/v1/orgs/current/members/{identity_id}", self.patch_org_member, "organization"),
            Route("DELETE", "/api/v1/orgs/current/members/{identity_id}", self.delete_org_member, "organization"),
            Route("DELETE", "/api/v1/orgs/current/members/{identity_id}/pending", self.delete_org_pending_member,
                  "organization"),
            Route("GET", ENRICHED_MEMBERS_PATH, self.list_enriched_members, "organization"),
            Route("GET", API_ENRICHED_MEMBERS_PATH, self.list_enriched_members, "organization"),
            Route(
                "GET",
                "/api/v1/workspaces/current/members",
                self.list_workspace_members,
                "workspace",
            ),
            Route(
                "POST", "/api/v1/workspaces/current/members", self.add_workspace_member, "workspace"
            ),
            Route(
                "GET",
                "/api/v1/workspaces/current/members/active",
                self.list_active_workspace_members,
                "workspace",
            ),
            Route(
                "PATCH",
                "/api/v1/workspaces/current/members/{identity_id}",
                self.patch_workspace_member,
                "workspace",
            ),
            Route(
                "DELETE",
                "/api/v1/workspaces/current/members/{identity_id}",
                self.delete_workspace_member,
                "workspace",
            ),
            *self.access_routes(),
            *(Route("GET", path, self.refuse_api_keys, "organization") for path in SESSION_ONLY_PATHS),
            *(Route(method, path, self.refuse_api_keys, "organization") for method, path in SESSION_ONLY_ROUTES),
        ]

    def _register_keys(self) -> dict[str, str]:
        """Put the keys this API accepts into the org's credentials (once per secret)."""
        state = self.state
        registered: dict[str, str] = {}
        with state.lock:
            shared = sorted(w.id for w in state.shared_workspaces())
            for secret, scoped in ((self.api_key, self.key_role == "workspace"),
                                   (self.workspace_scoped_key, True)):
                if secret is None:
                    continue
                existing = state.api_key_by_secret(secret)
                if existing is None:
                    org_role, _ = KEY_ROLE_ROLES[self.key_role if not scoped else "workspace"]
                    workspace_role = self._key_workspace_role("workspace" if scoped else self.key_role)
                    kind = WORKSPACE_SERVICE_KEY if scoped and shared else SERVICE_KEY
                    existing = state.put_api_key(
                        ApiKey(
                            id=state.new_id(),
                            kind=kind,
                            secret=secret,
                            description="langsmith-access sandbox key",
                            created_at=state.now(),
                            workspace_ids=[shared[0]] if kind == WORKSPACE_SERVICE_KEY else None,
                            role_id=workspace_role.id,
                            org_role_id=None if kind == WORKSPACE_SERVICE_KEY else state.role_by_name(org_role).id,
                        )
                    )
                registered[secret] = existing.id
        return registered

    # -------------------------------------------------------------- entry point

    def handle(self, request: ApiRequest, faults: FaultConfig) -> ApiResponse:
        if self.deployment == "self-hosted":
            if self._served_by_web_ui(request.path):
                return ApiResponse(200, HtmlPage())
            if request.path.startswith("/api/platform/"):
                # nginx sends /api/X to the Python backend's /api/v1/X; only /api/v1/platform/
                # reaches the platform backend, so the backend has no such route.
                return detail_error(404, "Not Found").response
            request = self._as_nginx_forwards(request)
        try:
            route, path_params = self._route(request)
            key_is_workspace_scoped, key_id = self._authenticate(request)
            request = replace(request, caller_key_id=key_id)
            if route.scope == "organization":
                self._check_organization(request, key_is_workspace_scoped)
                response = route.handler(request, faults, **path_params)
            else:
                self._check_organization_header_if_sent(request)
                workspace = self._current_workspace(request, key_is_workspace_scoped)
                if key_is_workspace_scoped:  # either key: ``api_key`` of key_role "workspace", or the second
                    self._check_key_workspace(workspace)
                response = route.handler(request, faults, workspace, **path_params)
        except ApiError as error:
            return error.response
        if request.method in WRITE_METHODS and faults.take_write_failure():
            # The write happened; only its answer is lost.
            return ApiResponse(502, {"detail": "Bad Gateway"})
        return response

    @staticmethod
    def _served_by_web_ui(path: str) -> bool:
        """Self-hosted nginx: whatever is not under /api (nor /v2/, /scim/) is the UI's page."""
        return not (path == "/api" or path.startswith(("/api/", "/v2/", "/scim/")))

    @staticmethod
    def _as_nginx_forwards(request: ApiRequest) -> ApiRequest:
        """Self-hosted nginx sends /api/X (other than /api/v1/ and /api/v2/) to /api/v1/X."""
        path = request.path
        if path.startswith("/api/") and not path.startswith(("/api/v1/", "/api/v2/")):
            # Only the path changes: who sent it (client_ip) stays, as nginx passes it on.
            return replace(request, path="/api/v1/" + path[len("/api/") :])
        return request

    def _route(self, request: ApiRequest) -> tuple[Route, dict[str, str]]:
        if request.path in (ENRICHED_MEMBERS_PATH, API_ENRICHED_MEMBERS_PATH) and not self.enriched_route:
            raise detail_error(404, "Not Found")
        allowed: set[str] = set()
        for route in self.routes:
            match = route.pattern.match(request.path)
            if match is None:
                continue
            if route.section in self.missing_sections:
                raise detail_error(404, "Not Found")  # this install has no such route
            allowed.add(route.method)
            if route.method == request.method:
                return route, match.groupdict()
        if allowed:
            # As Starlette answers: the methods the path takes, in Allow (RFC 9110 requires it).
            refusal = detail_error(405, "Method Not Allowed")
            refusal.response.headers["Allow"] = ", ".join(sorted(allowed))
            raise refusal
        raise detail_error(404, "Not Found")

    def _authenticate(self, request: ApiRequest) -> tuple[bool, str]:
        """Check X-API-Key: (whether it is workspace-scoped, the id of its key record). The key
        was used: its ``last_used_at`` moves to now."""
        presented = (request.headers.get("X-API-Key") or "").encode()
        # Compare against every accepted key, in constant time, before deciding.
        is_org_key = hmac.compare_digest(presented, self.api_key.encode())
        is_workspace_key = self.workspace_scoped_key is not None and hmac.compare_digest(
            presented, self.workspace_scoped_key.encode()
        )
        if not (is_org_key or is_workspace_key):
            raise route_error(request.path, 401, "Invalid token")
        key_id = self._key_ids[self.api_key if is_org_key else str(self.workspace_scoped_key)]
        with self.state.lock:
            record = self.state.api_keys.get(key_id)
            # A revoked key stays listed but is a bad key, and so is one past its expires_at
            # (fixed-shape timestamps compare as strings).
            if record is not None and (
                record.revoked_at is not None
                or (record.expires_at is not None and record.expires_at <= self.state.now())
            ):
                raise route_error(request.path, 401, "Invalid token")
        self.state.mark_key_used(key_id)
        if is_org_key and self.key_role == "workspace":
            return True, key_id
        return is_workspace_key and not is_org_key, key_id

    def _check_organization(self, request: ApiRequest, key_is_workspace_scoped: bool) -> None:
        if key_is_workspace_scoped:
            raise route_error(
                request.path,
                403,
                "This API key is workspace-scoped; this route requires organization scope "
                "(use an organization-scoped service key)",
            )
        if not request.headers.get("X-Organization-Id"):
            raise route_error(
                request.path, 403, "X-Organization-Id header is required for organization routes"
            )
        self._check_organization_header_if_sent(request)

    def _check_organization_header_if_sent(self, request: ApiRequest) -> None:
        sent = request.headers.get("X-Organization-Id")
        if sent and parse_uuid(sent) != self.state.organization_id:
            raise route_error(request.path, 403, "Not authorized for this organization")

    def key_workspace_id(self) -> str | None:
        """The workspace a workspace-scoped key (``api_key`` with ``key_role="workspace"``, or
        ``workspace_scoped_key``) belongs to."""
        with self.state.lock:
            shared = sorted(w.id for w in self.state.shared_workspaces())
        return shared[0] if shared else None

    def _paged(self, rows: list, offset: int, limit: int) -> tuple[list, dict[str, str]]:
        """A page of a listing other than the enriched route's: its ``X-Pagination-Total``
        only where this sandbox sends it on every listing (``pagination_totals="all"``)."""
        page, headers = paged(rows, offset, limit)
        return page, headers if self.pagination_totals == "all" else {}

    def _check_key_workspace(self, workspace: Workspace) -> None:
        if workspace.id != self.key_workspace_id():
            raise detail_error(403, "This API key is not scoped to this workspace")

    def _caller_key_role(self, request: ApiRequest) -> str:
        """What the key that sent ``request`` is: the second key (``workspace_scoped_key``) is a
        workspace key whatever ``key_role`` makes the first one."""
        second = self._key_ids.get(self.workspace_scoped_key) if self.workspace_scoped_key else None
        return "workspace" if second is not None and request.caller_key_id == second else self.key_role

    def _caller_permissions(self, request: ApiRequest) -> list[str]:
        """The org permissions of the key that sent ``request`` (its org role's)."""
        role = KEY_ROLE_ROLES[self._caller_key_role(request)][0]
        return list(self.state.role_by_name(role).permissions)

    @property
    def key_role(self) -> str:
        return self._key_role

    @key_role.setter
    def key_role(self, key_role: str) -> None:
        # (Tests switch it on a running sandbox.) The custom role a key holds exists in the org
        # before anything lists the roles, as it would in LangSmith.
        self._key_role = key_role
        self._key_workspace_role()

    def _key_workspace_role(self, key_role: str | None = None) -> Role:
        """The workspace role a key of ``key_role`` (this sandbox's) holds where it reaches."""
        name = KEY_ROLE_ROLES[key_role or self.key_role][1]
        if name != MEMBER_MANAGER:
            return self.state.role_by_name(name)
        with self.state.lock:
            existing = next((r for r in self.state.roles.values()
                             if r.is_custom and r.display_name == MEMBER_MANAGER), None)
            return existing or self.state.put_role(Role(
                self.state.new_id(), CUSTOM_ROLE_NAME, MEMBER_MANAGER,
                "Manages the workspace's members; not the built-in Admin.", WORKSPACE_SCOPE,
                ["workspaces:read", "workspaces:manage-members"],
                organization_id=self.state.organization_id,
            ))

    def _workspace_role_permissions(self, request: ApiRequest) -> list[str]:
        """The permissions the key that sent ``request`` holds in the workspaces it reaches (its
        workspace role's)."""
        return list(self._key_workspace_role(self._caller_key_role(request)).permissions)

    def _require_manage_members(self, request: ApiRequest) -> None:
        if "workspaces:manage-members" not in self._workspace_role_permissions(request):
            raise detail_error(
                403, "This API key may not manage workspace members (needs workspaces:manage-members)"
            )

    def _require_may_manage_restricted(self, request: ApiRequest, *role_ids: str | None) -> None:
        """A restricted role, granted or held by the member changed, needs the built-in Workspace
        Admin (or an Organization Admin); the code LangSmith answers is undocumented: 403 here."""
        restricted = [self.state.roles[r] for r in role_ids
                      if r in self.state.roles and self.state.roles[r].is_restricted]
        key_role = self._caller_key_role(request)
        if not restricted or key_role == "org-admin":
            return
        if self._key_workspace_role(key_role).name != "WORKSPACE_ADMIN":
            raise detail_error(
                403, f"Only a Workspace Admin can assign or change the restricted role "
                f"{restricted[0].display_name!r}",
            )

    def _caller_sees_all_workspaces(self, request: ApiRequest) -> bool:
        return "organization:manage" in self._caller_permissions(request)

    def _require_plan_allows(self, role_id: str) -> None:
        """Without workspace RBAC (plans below Enterprise) a workspace role is Admin or nothing."""
        if self.plan == "enterprise":
            return
        role = self.state.roles.get(role_id)
        if role is not None and role.name != "WORKSPACE_ADMIN":
            raise detail_error(
                403,
                "Role-based access control is not enabled for this organization: "
                "workspace members can only be given the Admin role",
            )

    def _current_workspace(self, request: ApiRequest, key_is_workspace_scoped: bool = False) -> Workspace:
        tenant_id = request.headers.get("X-Tenant-Id")
        if not tenant_id and key_is_workspace_scoped:
            # LangSmith: without the header, a key that is not organization-scoped works in the
            # workspace it was created in.
            tenant_id = self.key_workspace_id()
        if not tenant_id:
            raise ApiError(
                403,
                {
                    "error": "org_scoped_key_requires_workspace",
                    "detail": "An organization-scoped API key must send X-Tenant-Id "
                    "on workspace routes",
                },
            )
        workspace = self.state.workspaces.get(parse_uuid(tenant_id) or "")
        if workspace is None or workspace.is_deleted:
            raise detail_error(404, "Workspace not found")
        return workspace

    # -------------------------------------------------------------- organization routes

    def refuse_api_keys(self, request, faults, **path_params) -> ApiResponse:
        """Routes of the web UI's own session (langsmith-api.md: keys get 403 there)."""
        raise detail_error(403, "This route requires a user session; API keys are not accepted")

    def get_org_info(self, request, faults) -> ApiResponse:
        with self.state.lock:
            return ApiResponse(
                200,
                payloads.organization_info_json(
                    self.state, plan=self.plan, permissions=self._caller_permissions(request)
                ),
            )

    def patch_org_info(self, request, faults) -> ApiResponse:
        """``OrganizationUpdate``: the settings given (null or absent: unchanged) -> the new
        ``OrganizationInfo``. Fields the sandbox does not model (``unshare_all``, the LLM auth
        proxy's, ...) are validated when they are booleans and otherwise ignored."""
        body = json_object_body(request)
        changes: dict[str, Any] = {}
        for name in ORG_SETTING_FLAGS:
            if body.get(name) is not None:
                changes[name] = body_bool(body, name, False)
        for name in UNMODELLED_ORG_FLAGS:
            body_bool(body, name, False)  # a 422 when it is no boolean; nothing to change here
        for name in ORG_SETTING_DAY_CAPS:
            if name in body:
                value = body[name]
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise validation_error(["body", name], "Input should be a valid integer", "int_type")
                changes[name] = value
        display_name = body.get("display_name")
        if display_name is not None and (
            not isinstance(display_name, str) or not re.fullmatch(r"[a-zA-Z0-9\-_ ]+", display_name)
        ):
            raise validation_error(["body", "display_name"],
                                   "String should match pattern '^[a-zA-Z0-9\\-_ ]+$'", "string_pattern_mismatch")
        separator = body.get("scim_group_name_separator")
        if separator is not None:
            if not isinstance(separator, str) or len(separator) != 1:
                raise validation_error(["body", "scim_group_name_separator"],
                                       "String should have exactly 1 character", "string_too_long")
            changes["scim_group_name_separator"] = separator
        contact = body.get("security_contact")
        if contact is not None:
            if not isinstance(contact, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", contact):
                raise validation_error(["body", "security_contact"],
                                       "value is not a valid email address", "value_error")
            changes["security_contact"] = contact
        allowlist = body.get("ip_allowlist")
        if allowlist is not None:
            if not isinstance(allowlist, list) or not all(isinstance(ip, str) for ip in allowlist):
                raise validation_error(["body", "ip_allowlist"], "Input should be a valid list", "list_type")
            changes["ip_allowlist"] = list(allowlist)
        with self.state.lock:
            self._require_manage_org(request)
            if display_name is not None:
                self.state.display_name = display_name
            for name, value in changes.items():
                setattr(self.state.settings, name, value)
            self.state.record("update_organization_info", actor=self._actor(request), http_method="PATCH",
                              path=request.path, resource_ids=[self.state.organization_id])
            return ApiResponse(200, payloads.organization_info_json(
                self.state, plan=self.plan, permissions=self._caller_permissions(request)))

    def patch_login_methods(self, request, faults) -> ApiResponse:
        """``AllowedLoginMethodsUpdate``: ``sso_only``. Turning it on needs SAML SSO (the plan's
        ``can_use_saml_sso``; the refusal's code is undocumented: 403 here)."""
        body = json_object_body(request)
        sso_only = body_bool(body, "sso_only", False) if body.get("sso_only") is not None else None
        with self.state.lock:
            self._require_manage_org(request)
            if sso_only and not self.plan_flags()["can_use_saml_sso"]:
                raise detail_error(403, "SSO-only login needs SAML SSO, which this organization's plan lacks")
            if sso_only is not None:
                self.state.settings.sso_only = sso_only
            self.state.record("update_login_methods", actor=self._actor(request), http_method="PATCH",
                              path=request.path, resource_ids=[self.state.organization_id])
            return ApiResponse(200, {"sso_only": self.state.settings.sso_only})

    def list_roles(self, request, faults) -> ApiResponse:
        with self.state.lock:
            return ApiResponse(
                200, [payloads.role_json(role) for role in self.state.roles.values()]
            )

    def list_workspaces(self, request, faults) -> ApiResponse:
        include_deleted = query_bool(request.query, "include_deleted", False)
        with self.state.lock:
            # A default-role org key is Workspace Admin in every workspace; an Org Admin's key has
            # no workspace role of its own (implicit Admin), so its rows say none.
            key_role = self._caller_key_role(request)
            own_role = None if key_role == "org-admin" else self._key_workspace_role(key_role)
            rows = [
                payloads.workspace_json(self.state, workspace, own_role=own_role)
                for workspace in self.state.all_workspaces()
                if include_deleted or not workspace.is_deleted
            ]
        return ApiResponse(200, rows)

    def list_org_members(self, request, faults) -> ApiResponse:
        with self.state.lock:
            body = {
                "organization_id": self.state.organization_id,
                "members": [
                    payloads.org_member_json(self.state, member)
                    for member in self.state.active_members()
                ],
                "pending": [
                    payloads.org_pending_json(self.state, invite)
                    for invite in self.state.pending_org_invites()
                ],
            }
        return ApiResponse(200, body)

    def list_active_org_members(self, request, faults) -> ApiResponse:
        query = request.query
        limit = query_int(query, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        offset = query_int(query, "offset", 0, 0)
        filters = MemberFilters.from_query(query)
        sort_by = sort_field(query)
        descending = query_bool(query, "sort_by_desc", True)
        with self.state.lock:
            self._maybe_drift(offset, faults)
            members = [m for m in self.state.members.values() if filters.keep(m)]
            members = sorted_by(members, self._member_sort_key(sort_by), descending)
            page, headers = self._paged(members, offset, limit)
            rows = [payloads.org_member_json(self.state, member) for member in page]
        return ApiResponse(200, rows, headers)

    def list_pending_org_members(self, request, faults) -> ApiResponse:
        query = request.query
        limit = query_int(query, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        offset = query_int(query, "offset", 0, 0)
        emails = {email.casefold() for email in query.get("emails", [])}
        search = (last_value(query, "q") or "").casefold()
        # The same sort parameters as /active (MemberSortField, sort_by_desc): validated and honoured.
        sort_by = sort_field(query)
        descending = query_bool(query, "sort_by_desc", True)
        with self.state.lock:
            invites = [
                invite
                for invite in self.state.pending_org_invites()
                if (not emails or invite.email.casefold() in emails)
                and search in invite.email.casefold()
            ]
            invites = sorted_by(invites, self._invite_sort_key(sort_by), descending)
            page, headers = self._paged(invites, offset, limit)
            rows = [payloads.org_pending_json(self.state, invite) for invite in page]
        return ApiResponse(200, rows, headers)

    def list_enriched_members(self, request, faults) -> ApiResponse:
        """The Go platform route: its errors are 400 ``{"error": ...}``, not FastAPI 422s."""
        query = request.query
        limit = self._platform_int(query, "limit", DEFAULT_PAGE_SIZE)
        offset = self._platform_int(query, "offset", 0)
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ApiError(400, {"error": f"limit must be between 1 and {MAX_PAGE_SIZE}"})
        if offset < 0:
            raise ApiError(400, {"error": "offset must not be negative"})
        want_active = self._platform_bool(query, "active_is")
        want_pending = self._platform_bool(query, "pending_is")
        include_active = want_active is not False and want_pending is not True
        include_pending = want_active is not True and want_pending is not False
        globs = {
            name: glob_matcher(query[name])
            for name in (
                "name_like",
                "email_like",
                "workspace_name_like",
                "organization_role_like",
                "workspace_role_like",
            )
            if query.get(name)
        }

        with self.state.lock:
            self._maybe_drift(offset, faults)
            people: list[OrgMember | PendingOrgInvite] = []
            if include_active:
                people.extend(self.state.members.values())
            if include_pending:
                people.extend(self.state.pending_invites.values())
            if globs:
                people = [person for person in people if self._matches_globs(person, globs)]
            page, headers = paged(in_api_order(people), offset, limit)
            sees_all = self._caller_sees_all_workspaces(request)
            visible = None if sees_all else self._partially_visible_workspaces()
            rows = [
                payloads.enriched_member_json(
                    self.state,
                    person,
                    visible_workspaces=visible,
                    anonymous=self.anonymity_restricted,
                )
                if isinstance(person, OrgMember)
                else payloads.enriched_pending_json(self.state, person)
                for person in page
            ]
        headers["X-Members-List-All-Workspaces"] = "true" if sees_all else "false"
        if self.anonymity_restricted:
            headers["X-Members-Anonymity-Restricted"] = "true"
        return ApiResponse(200, rows, headers)

    def _partially_visible_workspaces(self) -> set[str]:
        """What a key without organization:manage sees of memberships on the enriched route is
        undocumented ("partial"): here, every other workspace, so that trusting it is wrong."""
        return {w.id for w in sorted(self.state.all_workspaces(), key=lambda w: w.id)[::2]}

    def _matches_globs(self, person: OrgMember | PendingOrgInvite, globs: dict) -> bool:
        """The platform route's ``*_like`` filters; each given filter must match."""
        member = person if isinstance(person, OrgMember) else None
        memberships = self.state.memberships_of(member.ls_user_id) if member is not None else []
        workspaces = [self.state.workspaces[m.workspace_id] for m in memberships]
        checks = {
            "name_like": lambda match: match(member.display_name if member is not None else ""),
            "email_like": lambda match: match(person.email),
            "organization_role_like": lambda match: match(
                self.state.roles[person.org_role_id].display_name
            ),
            "workspace_name_like": lambda match: any(
                match(ws.display_name) or match(ws.id) for ws in workspaces
            ),
            "workspace_role_like": lambda match: any(
                match(self.state.roles[m.role_id].display_name) for m in memberships
            ),
        }
        return all(checks[name](match) for name, match in globs.items())

    @staticmethod
    def _platform_int(query, name: str, default: int) -> int:
        raw = last_value(query, name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise ApiError(400, {"error": f"invalid {name}: {raw!r} is not an integer"}) from None

    @staticmethod
    def _platform_bool(query, name: str) -> bool | None:
        """Go's strconv.ParseBool: 1, t, T, TRUE, true, True and the same for false."""
        raw = last_value(query, name)
        if raw is None or raw == "":
            return None
        if raw in ("1", "t", "T", "TRUE", "true", "True"):
            return True
        if raw in ("0", "f", "F", "FALSE", "false", "False"):
            return False
        raise ApiError(400, {"error": f"invalid {name}: {raw!r} is not a boolean"})

    def _member_sort_key(self, sort_by: str) -> Callable[[OrgMember], Any]:
        if sort_by == "name":
            return lambda member: member.full_name.casefold()
        if sort_by == "email":
            return lambda member: member.email.casefold()
        if sort_by == "role":
            return lambda member: self.state.roles[member.org_role_id].display_name
        return lambda member: member.created_at

    def _invite_sort_key(self, sort_by: str) -> Callable[[PendingOrgInvite], Any]:
        """Pending rows have no name: "name" sorts them by email (undocumented, as is the rest)."""
        if sort_by in ("name", "email"):
            return lambda invite: invite.email.casefold()
        if sort_by == "role":
            return lambda invite: self.state.roles[invite.org_role_id].display_name
        return lambda invite: invite.created_at

    def _membership_sort_key(self, sort_by: str) -> Callable[[WorkspaceMembership], Any]:
        """Workspace rows sort by their own role and date, and by the member's name or email."""
        if sort_by == "role":
            return lambda membership: self.state.roles[membership.role_id].display_name
        if sort_by == "created_at":
            return lambda membership: membership.created_at
        member_key = self._member_sort_key(sort_by)
        return lambda membership: member_key(self.state.members[membership.ls_user_id])

    def _maybe_drift(self, offset: int, faults: FaultConfig) -> None:
        """Page drift: someone joins the org while a client pages through its members."""
        if offset > 0 and faults.take_page_drift():
            suffix = self.state.new_id()[:8]
            self.state.add_member(f"late.joiner.{suffix}@example.com", f"Late Joiner {suffix}")

    # -------------------------------------------------------------- workspace routes

    def list_workspace_members(self, request, faults, workspace: Workspace) -> ApiResponse:
        with self.state.lock:
            body = {
                "tenant_id": workspace.id,
                "members": [
                    payloads.workspace_member_json(self.state, membership)
                    for membership in in_api_order(workspace.memberships.values())
                ],
                "pending": [
                    payloads.workspace_pending_json(self.state, invite)
                    for invite in in_api_order(workspace.pending_invites.values())
                ],
            }
        return ApiResponse(200, body)

    def list_active_workspace_members(self, request, faults, workspace: Workspace) -> ApiResponse:
        query = request.query
        limit = query_int(query, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        offset = query_int(query, "offset", 0, 0)
        filters = MemberFilters.from_query(query)
        sort_by = sort_field(query)
        descending = query_bool(query, "sort_by_desc", True)
        with self.state.lock:
            memberships = [
                membership
                for membership in workspace.memberships.values()
                if filters.keep(self.state.members[membership.ls_user_id])
            ]
            memberships = sorted_by(memberships, self._membership_sort_key(sort_by), descending)
            page, headers = self._paged(memberships, offset, limit)
            rows = [payloads.workspace_member_json(self.state, m) for m in page]
        return ApiResponse(200, rows, headers)

    def add_workspace_member(self, request, faults, workspace: Workspace) -> ApiResponse:
        body = json_object_body(request)
        # Unknown fields (such as the docs' `workspace_role_id`) are ignored, as the real API does.
        org_identity_id = body_uuid(body, "org_identity_id", required=False)
        ls_user_id = body_uuid(body, "ls_user_id", required=False)
        legacy_user_id = body_uuid(body, "user_id", required=False)
        # IdentityCreate.role_id is optional: a body without it (the docs' sample, whose
        # `workspace_role_id` is dropped) is accepted, not a 422.
        role_id = body_uuid(body, "role_id", required=False)
        # IdentityCreate.read_only is a boolean or null: pydantic's lax reading, or a 422.
        read_only = body_bool(body, "read_only", False)
        if not (org_identity_id or ls_user_id or legacy_user_id):
            raise validation_error(
                ["body"],
                "Value error, one of org_identity_id, ls_user_id or user_id is required",
                "value_error",
            )
        with self.state.lock:
            if role_id is None:
                # The default is undocumented: here the legacy `read_only` flag's meaning.
                default = "WORKSPACE_VIEWER" if read_only else "WORKSPACE_ADMIN"
                role_id = self.state.role_by_name(default).id
            self._require_manage_members(request)
            self._require_role(role_id, WORKSPACE_SCOPE)
            self._require_plan_allows(role_id)
            self._require_may_manage_restricted(request, role_id)
            member = self._find_active_member(org_identity_id, ls_user_id, legacy_user_id)
            if member is None:
                raise detail_error(404, "Organization member not found")
            if workspace.is_personal:
                raise detail_error(400, "Members cannot be added to a personal workspace")
            if member.ls_user_id in workspace.memberships:
                raise detail_error(409, "User is already a member of this workspace")
            membership = self.state.add_workspace_membership(
                workspace.id, member.ls_user_id, role_id, actor=self._actor(request)
            )
            return ApiResponse(200, payloads.identity_json(self.state, membership))

    def patch_workspace_member(
        self, request, faults, workspace: Workspace, identity_id: str
    ) -> ApiResponse:
        identity_id = path_uuid(identity_id, "identity_id")
        body = json_object_body(request)
        role_id = body_uuid(body, "role_id", required=True)
        body_bool(body, "read_only", False)  # IdentityPatch's (deprecated) flag: validated, role_id rules
        with self.state.lock:
            self._require_manage_members(request)
            membership = self._find_membership(workspace, identity_id)
            self._require_role(role_id, WORKSPACE_SCOPE)
            self._require_plan_allows(role_id)
            self._require_may_manage_restricted(request, role_id, membership.role_id)
            self.state.set_workspace_role(
                workspace.id, membership.ls_user_id, role_id, actor=self._actor(request)
            )
            return ApiResponse(200, payloads.workspace_member_json(self.state, membership))

    def delete_workspace_member(
        self, request, faults, workspace: Workspace, identity_id: str
    ) -> ApiResponse:
        identity_id = path_uuid(identity_id, "identity_id")
        with self.state.lock:
            self._require_manage_members(request)
            membership = self._find_membership(workspace, identity_id)
            self._require_may_manage_restricted(request, membership.role_id)
            self.state.remove_workspace_membership(
                workspace.id, membership.ls_user_id, actor=self._actor(request)
            )
        return self._deleted()

    def _deleted(self) -> ApiResponse:
        if self.delete_response == "no_content":
            return ApiResponse(204)
        return ApiResponse(200, {} if self.delete_response == "json_object" else None)

    # -------------------------------------------------------------- org member writes

    def _require_manage_org(self, request: ApiRequest) -> None:
        if "organization:manage" not in self._caller_permissions(request):
            raise detail_error(403, "This API key may not manage organization members (needs organization:manage)")

    def invite_org_member(self, request, faults) -> ApiResponse:
        """``PendingIdentityCreate`` -> the org's ``PendingIdentity``. ``role_id`` is the org role
        (default Organization User); ``workspace_ids`` with ``workspace_role_id`` offer workspaces."""
        body = json_object_body(request)
        email = body.get("email")
        if email is None:
            raise validation_error(["body", "email"], "Field required", "missing")
        if not isinstance(email, str):
            raise validation_error(["body", "email"], "Input should be a valid string", "string_type")
        role_id = body_uuid(body, "role_id", required=False)
        workspace_role_id = body_uuid(body, "workspace_role_id", required=False)
        # PendingIdentityCreate's other fields: validated as it types them, not modelled here.
        body_bool(body, "read_only", False)
        body_str(body, "full_name", "")
        body_str(body, "password", "")
        raw_workspaces = body.get("workspace_ids")
        if raw_workspaces is not None and not isinstance(raw_workspaces, list):
            raise validation_error(["body", "workspace_ids"], "Input should be a valid list", "list_type")
        workspace_ids = []
        for index, raw in enumerate(raw_workspaces or []):
            parsed = parse_uuid(raw)
            if parsed is None:
                raise validation_error(["body", "workspace_ids", index], "Input should be a valid UUID", "uuid_parsing")
            workspace_ids.append(parsed)
        with self.state.lock:
            self._require_manage_org(request)
            settings = self.state.settings
            if settings.sso_only or not settings.invites_enabled:
                raise detail_error(403, "Invites are disabled for this organization (SSO-only, or invites_enabled "
                                   "is false)")
            folded = email.strip().casefold()
            if self.state.member_by_email(folded) is not None or any(
                i.email.casefold() == folded for i in self.state.pending_invites.values()
            ):
                raise detail_error(409, f"{email} is already a member of, or invited to, this organization")
            roles = self.state.roles
            for wanted, scope in ((role_id, ORGANIZATION_SCOPE), (workspace_role_id, WORKSPACE_SCOPE)):
                if wanted is not None and (roles.get(wanted) is None or roles[wanted].access_scope != scope):
                    raise detail_error(404, f"{scope.capitalize()} role {wanted} not found")
            for workspace_id in workspace_ids:
                offered = self.state.workspaces.get(workspace_id)
                if offered is None or not offered.is_shared:
                    raise detail_error(404, f"Workspace {workspace_id} not found")
            invite = self.state.add_pending_invite(
                email.strip(), role_id, workspace_ids or None, workspace_role_id, actor=self._actor(request)
            )
            return ApiResponse(200, payloads.org_pending_json(self.state, invite))

    def patch_org_member(self, request, faults, identity_id: str) -> ApiResponse:
        """``OrgIdentityPatch``: ``role_id`` replaces the single org role; ``full_name``; a
        ``password`` (basic-auth installs only) is accepted and ignored."""
        identity_id = path_uuid(identity_id, "identity_id")
        body = json_object_body(request)
        role_id = body_uuid(body, "role_id", required=False)
        full_name = body_str(body, "full_name", None)  # None: not changed
        body_str(body, "password", "")  # OrgIdentityPatch types it: validated, then ignored
        with self.state.lock:
            self._require_manage_org(request)
            member = self.state.member_by_identity_id(identity_id)
            if member is None:
                raise detail_error(404, "Organization member not found")
            if role_id is not None:
                self._require_role(role_id, ORGANIZATION_SCOPE)
                self.state.set_org_role(member.ls_user_id, role_id, actor=self._actor(request))
            if full_name is not None:
                self.state.set_full_name(member.ls_user_id, full_name, actor=self._actor(request))
            return ApiResponse(200, payloads.org_member_json(self.state, member))

    def delete_org_member(self, request, faults, identity_id: str) -> ApiResponse:
        """Removes the member from the org and every workspace (their PATs die with it)."""
        identity_id = path_uuid(identity_id, "identity_id")
        with self.state.lock:
            self._require_manage_org(request)
            member = self.state.member_by_identity_id(identity_id)
            if member is None:
                raise detail_error(404, "Organization member not found")
            self.state.remove_member(member.ls_user_id, actor=self._actor(request))
        return self._deleted()

    def delete_org_pending_member(self, request, faults, identity_id: str) -> ApiResponse:
        identity_id = path_uuid(identity_id, "identity_id")
        with self.state.lock:
            self._require_manage_org(request)
            if identity_id not in self.state.pending_invites:
                raise detail_error(404, "Pending organization member not found")
            self.state.remove_pending_invite(identity_id, actor=self._actor(request))
        return self._deleted()

    def _require_role(self, role_id: str, scope: str) -> None:
        """One of this org's roles (404), of ``scope`` (400)."""
        role = self.state.roles.get(role_id)
        if role is None:
            raise detail_error(404, f"Role {role_id} not found")
        if role.access_scope != scope:
            kind = "a workspace" if scope == WORKSPACE_SCOPE else "an organization"
            raise detail_error(400, f"Role {role_id} ({role.display_name}) is not {kind} role")

    def _find_active_member(
        self, org_identity_id: str | None, ls_user_id: str | None, legacy_user_id: str | None
    ) -> OrgMember | None:
        """The member named by the first id given; pending invites are not members."""
        if org_identity_id:
            return self.state.member_by_identity_id(org_identity_id)
        if ls_user_id:
            return self.state.members.get(ls_user_id)
        return next((m for m in self.state.members.values() if m.user_id == legacy_user_id), None)

    def _find_membership(self, workspace: Workspace, identity_id: str):
        membership = self.state.membership_by_identity_id(workspace.id, identity_id)
        if membership is None:
            raise detail_error(404, "Workspace member not found")
        return membership

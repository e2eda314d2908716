"""The routes of the rest of the access picture (DESIGN.md section 9), as the sandbox serves them:
access policies, credentials, service accounts, SSO settings, the audit log and the platform org
info, with the rules of ``langsmith-api.md`` ("Key permissions and plan limits", "Credentials",
"Access policies (ABAC)", "Audit logs").

``AccessRoutes`` is a part of ``SandboxApi`` (api.py), kept apart so each file reads top to
bottom. Every route belongs to a section of DESIGN.md section 9; for each request, in order:

1. a section the install lacks (``SandboxApi(missing_sections=...)``, an older self-hosted
   version) answers 404, like any unknown route;
2. a section the plan lacks answers 403 (``langsmith-api.md``: the answer outside the plan is
   undocumented; the access-policy and SCIM routes list 403 ``{"error": ...}``): the Go platform
   routes with ``{"error": ...}``, the others with ``{"detail": ...}``;
3. a key whose role lacks the permission answers 403 the same way.

Listings never carry a full secret unless ``FaultConfig.leak_full_keys`` asks the sandbox to
misbehave; creations answer the secret once, as LangSmith does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from langsmith_access.sandbox import access_payloads
from langsmith_access.sandbox.access_records import (
    ABAC_ATTRIBUTE_NAMES,
    ABAC_OPERATORS,
    ABAC_PERMISSIONS,
    PERSONAL_ACCESS_TOKEN,
    SERVICE_KEY,
    TAG_RESOURCE_TYPES,
    WORKSPACE_SERVICE_KEY,
    AuditActor,
    PolicyCondition,
    PolicyConditionGroup,
    TagKey,
    TagValue,
)
from langsmith_access.sandbox.audit_log import decode_cursor, encode_cursor, oldest_served_ms, operations_filter
from langsmith_access.sandbox.faults import FaultConfig
from langsmith_access.sandbox.org_state import (
    ORGANIZATION_SCOPE,
    WORKSPACE_SCOPE,
    OrgState,
    Workspace,
    format_timestamp,
)
from langsmith_access.sandbox.payloads import organization_info_json
from langsmith_access.sandbox.routing import (
    ApiError,
    ApiRequest,
    ApiResponse,
    Route,
    body_bool,
    body_str,
    body_uuid,
    detail_error,
    json_object_body,
    last_value,
    parse_uuid,
    path_uuid,
    query_int,
    route_error,
    validation_error,
)

# The sections of DESIGN.md section 9 that have routes of their own (`scim_groups` comes with
# the enriched members route).
ROUTED_SECTIONS = (
    "access_policies",
    "audit_events",
    "service_keys",
    "personal_access_tokens",
    "workspace_service_keys",
    "scim_tokens",
    "service_accounts",
    "sso_settings",
    "resource_tags",
)
# Plan flag each section needs (None: every plan has it). SCIM comes with SAML SSO (LangSmith
# requires SAML SSO to be configurable for SCIM), which has no flag of its own.
SECTION_FLAGS = {
    "access_policies": "can_use_abac",
    "audit_events": "can_use_audit_logs",
    "scim_tokens": "can_use_saml_sso",
    "sso_settings": "can_use_saml_sso",
}
PLATFORM = "/v1/platform/orgs/current"
AUDIT_MAX_PAGE = 100
AUDIT_DEFAULT_PAGE = 10
ABAC_EFFECTS = ("allow", "deny")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AccessRoutes:
    """Handlers of the access picture's routes; mixed into ``SandboxApi``."""

    # Provided by SandboxApi.
    state: OrgState
    plan: str
    missing_sections: frozenset[str]

    def _caller_permissions(self, request: ApiRequest) -> list[str]:
        raise NotImplementedError  # SandboxApi's: the calling key's organization permissions

    def _workspace_role_permissions(self, request: ApiRequest) -> list[str]:
        raise NotImplementedError  # SandboxApi's: the calling key's permissions in a workspace

    def access_routes(self) -> list[Route]:

        def platform(method: str, tail: str, handler, section: str | None) -> list[Route]:
            # Cloud answers the Go platform routes at /v1/platform/... and /api/v1/platform/....
            return [
                Route(method, PLATFORM + tail, handler, ORGANIZATION_SCOPE, section),
                Route(method, "/api" + PLATFORM + tail, handler, ORGANIZATION_SCOPE, section),
            ]

        org, ws = ORGANIZATION_SCOPE, WORKSPACE_SCOPE
        return [
            *platform("GET", "/info", self.get_platform_org_info, None),
            *platform("GET", "/access-policies", self.list_access_policies, "access_policies"),
            *platform("POST", "/access-policies", self.create_access_policy, "access_policies"),
            *platform("GET", "/access-policies/{access_policy_id}", self.get_access_policy,
                      "access_policies"),
            *platform("DELETE", "/access-policies/{access_policy_id}", self.delete_access_policy,
                      "access_policies"),
            *platform("POST", "/access-policies/roles/{role_id}/access-policies",
                      self.attach_access_policies, "access_policies"),
            *platform("GET", "/scim/tokens", self.list_scim_tokens, "scim_tokens"),
            *platform("POST", "/scim/tokens", self.create_scim_token, "scim_tokens"),
            *platform("GET", "/scim/tokens/{scim_token_id}", self.get_scim_token, "scim_tokens"),
            *platform("PATCH", "/scim/tokens/{scim_token_id}", self.patch_scim_token, "scim_tokens"),
            *platform("DELETE", "/scim/tokens/{scim_token_id}", self.delete_scim_token,
                      "scim_tokens"),
            Route("GET", "/api/v1/audit-logs", self.list_audit_logs, org, "audit_events"),
            Route("GET", "/api/v1/orgs/current/service-keys", self.list_service_keys, org,
                  "service_keys"),
            Route("POST", "/api/v1/orgs/current/service-keys", self.create_service_key, org,
                  "service_keys"),
            Route("DELETE", "/api/v1/orgs/current/service-keys/{api_key_id}",
                  self.delete_service_key, org, "service_keys"),
            # In LangChain's later spec (S2) and Terraform, not the vendored one.
            Route("PATCH", "/api/v1/orgs/current/service-keys/{api_key_id}",
                  self.patch_service_key, org, "service_keys"),
            Route("GET", "/api/v1/orgs/current/personal-access-tokens",
                  self.list_personal_access_tokens, org, "personal_access_tokens"),
            Route("DELETE", "/api/v1/orgs/current/personal-access-tokens/{pat_id}",
                  self.delete_personal_access_token, org, "personal_access_tokens"),
            Route("GET", "/api/v1/api-key", self.list_workspace_keys, ws, "workspace_service_keys"),
            Route("POST", "/api/v1/api-key", self.create_workspace_key, ws,
                  "workspace_service_keys"),
            Route("DELETE", "/api/v1/api-key/{api_key_id}", self.delete_workspace_key, ws,
                  "workspace_service_keys"),
            Route("GET", "/api/v1/service-accounts", self.list_service_accounts, org,
                  "service_accounts"),
            Route("GET", "/api/v1/orgs/current/sso-settings", self.list_sso_settings, org,
                  "sso_settings"),
            # Workspace tags, what ABAC conditions name (every plan has them).
            Route("GET", "/api/v1/workspaces/current/tags", self.list_tags, ws, "resource_tags"),
            Route("GET", "/api/v1/workspaces/current/taggings", self.list_taggings, ws, "resource_tags"),
            Route("GET", "/api/v1/workspaces/current/tags/resource", self.list_tags_for_resource, ws,
                  "resource_tags"),
        ]

    # -------------------------------------------------------------- gates

    def plan_flags(self) -> dict[str, bool]:
        """The ``config.can_use_*`` flags of the plan (what org info says)."""
        enterprise = self.plan == "enterprise"
        return {
            "can_use_rbac": enterprise,
            "can_use_abac": enterprise,
            "can_use_audit_logs": enterprise,
            "can_use_saml_sso": enterprise,
            "can_set_api_key_max_expiry": enterprise,
        }

    def _gate(self, request: ApiRequest, section: str, permission: str | tuple[str, ...],
              what: str) -> None:
        """403 when the plan lacks the section or the key's role lacks ``permission`` (any of
        them, for a tuple)."""
        flag = SECTION_FLAGS.get(section)
        if flag is not None and not self.plan_flags()[flag]:
            raise route_error(request.path, 403, f"{what} is not available on this organization's plan "
                                       f"(config.{flag} is false)")
        wanted = (permission,) if isinstance(permission, str) else permission
        held = (
            self._workspace_role_permissions(request)
            if section == "workspace_service_keys"
            else self._caller_permissions(request)
        )
        if not any(p in held for p in wanted):
            raise route_error(request.path, 403, f"the API key's role may not {what} (needs {' or '.join(wanted)})")

    @staticmethod
    def _actor(request: ApiRequest) -> AuditActor:
        return AuditActor(api_key_id=request.caller_key_id, ip=request.client_ip)

    # -------------------------------------------------------------- org info (platform twin)

    def get_platform_org_info(self, request, faults: FaultConfig) -> ApiResponse:

        with self.state.lock:
            info = organization_info_json(
                self.state, plan=self.plan, permissions=self._caller_permissions(request)
            )
            return ApiResponse(200, access_payloads.platform_org_info_json(self.state, info))

    # -------------------------------------------------------------- access policies

    def list_access_policies(self, request, faults) -> ApiResponse:

        self._gate(request, "access_policies", "organization:read", "list access policies")
        with self.state.lock:
            policies = sorted(self.state.access_policies.values(), key=lambda p: (p.created_at, p.id))
            body = {"access_policies": [access_payloads.access_policy_json(p) for p in policies]}
        return ApiResponse(200, body)

    def get_access_policy(self, request, faults, access_policy_id: str) -> ApiResponse:

        self._gate(request, "access_policies", "organization:read", "read access policies")
        policy_id = _platform_uuid(access_policy_id, "access policy id")
        with self.state.lock:
            policy = self.state.access_policies.get(policy_id)
            if policy is None:
                raise ApiError(404, {"error": "access policy not found"})
            return ApiResponse(200, access_payloads.access_policy_json(policy))

    def create_access_policy(self, request, faults) -> ApiResponse:

        self._gate(request, "access_policies", "organization:manage", "create access policies")
        body = _platform_json_object(request)
        name, effect = body.get("name"), body.get("effect")
        if not isinstance(name, str) or not name:
            raise ApiError(400, {"error": "name is required"})
        if effect not in ABAC_EFFECTS:
            raise ApiError(400, {"error": f"effect must be one of {', '.join(ABAC_EFFECTS)}"})
        groups = _condition_groups(body.get("condition_groups") or [])
        description = _platform_str(body, "description", "")
        # CreateAccessPolicyPayload.role_ids is an array of strings: anything else is the body's
        # 400 (the spec's "Bad request"), not a role that is not found.
        role_ids = body.get("role_ids") or []
        if not isinstance(role_ids, list) or not all(isinstance(r, str) for r in role_ids):
            raise ApiError(400, {"error": "role_ids must be a list of ids"})
        # Parsed as every id of these routes: any case names the role, a malformed one is a 400.
        role_ids = [_platform_uuid(role_id, "role id") for role_id in role_ids]
        with self.state.lock:
            for role_id in role_ids:
                role = self.state.roles.get(role_id)
                if role is None or role.access_scope != WORKSPACE_SCOPE:
                    raise ApiError(404, {"error": f"workspace role {role_id} not found"})
            policy = self.state.create_access_policy(
                name, effect, groups, description=description,
                role_ids=list(role_ids), actor=self._actor(request),
            )
        return ApiResponse(201, {"id": policy.id})

    def delete_access_policy(self, request, faults, access_policy_id: str) -> ApiResponse:

        self._gate(request, "access_policies", "organization:manage", "delete access policies")
        policy_id = _platform_uuid(access_policy_id, "access policy id")  # as GET: 400, not 204
        with self.state.lock:
            if policy_id in self.state.access_policies:
                self.state.delete_access_policy(policy_id, actor=self._actor(request))
        return ApiResponse(204)  # also when it was not there, like the user-group routes

    def attach_access_policies(self, request, faults, role_id: str) -> ApiResponse:

        self._gate(request, "access_policies", "organization:manage", "attach access policies")
        policy_ids = _platform_json_object(request).get("access_policy_ids")
        if not isinstance(policy_ids, list) or not all(isinstance(p, str) for p in policy_ids):
            raise ApiError(400, {"error": "access_policy_ids must be a list of ids"})
        role_id = _platform_uuid(role_id, "role id")
        policy_ids = [_platform_uuid(policy_id, "access policy id") for policy_id in policy_ids]
        with self.state.lock:
            role = self.state.roles.get(role_id)
            if role is None or role.access_scope != WORKSPACE_SCOPE:
                raise ApiError(404, {"error": f"workspace role {role_id} not found"})
            missing = [p for p in policy_ids if p not in self.state.access_policies]
            if missing:
                raise ApiError(404, {"error": f"access policy {missing[0]} not found"})
            self.state.attach_access_policies(role_id, policy_ids, actor=self._actor(request))
        return ApiResponse(204)

    # -------------------------------------------------------------- SCIM tokens

    def list_scim_tokens(self, request, faults: FaultConfig) -> ApiResponse:

        self._gate(request, "scim_tokens", "organization:read", "list SCIM tokens")
        with self.state.lock:
            tokens = sorted(self.state.scim_tokens.values(), key=lambda t: (t.created_at, t.id))
            rows = [access_payloads.scim_token_json(t, leak=faults.leak_full_keys) for t in tokens]
        return ApiResponse(200, rows)

    def get_scim_token(self, request, faults: FaultConfig, scim_token_id: str) -> ApiResponse:

        self._gate(request, "scim_tokens", "organization:read", "read SCIM tokens")
        with self.state.lock:
            token = self._scim_token(scim_token_id)
            return ApiResponse(200, access_payloads.scim_token_json(token, leak=faults.leak_full_keys))

    def create_scim_token(self, request, faults) -> ApiResponse:

        self._gate(request, "scim_tokens", "organization:manage", "create SCIM tokens")
        description = _platform_str(_platform_json_object(request), "description", "")
        with self.state.lock:
            token = self.state.create_scim_token(description, actor=self._actor(request))
            return ApiResponse(201, access_payloads.scim_token_created_json(token))

    def patch_scim_token(self, request, faults, scim_token_id: str) -> ApiResponse:

        self._gate(request, "scim_tokens", "organization:manage", "update SCIM tokens")
        body = _platform_json_object(request)
        # Only the description can change; null or absent leaves it, another type is a 400.
        description = _platform_str(body, "description", "") if body.get("description") is not None else None
        with self.state.lock:
            token = self._scim_token(scim_token_id)
            if description is not None:
                token.description = description
                token.updated_at = self.state.now()
                self.state.record("update_scim_token", actor=self._actor(request),
                                  resource_ids=[token.id], http_method="PATCH", path=request.path)
            return ApiResponse(200, access_payloads.scim_token_json(token))

    def delete_scim_token(self, request, faults, scim_token_id: str) -> ApiResponse:

        self._gate(request, "scim_tokens", "organization:manage", "delete SCIM tokens")
        with self.state.lock:
            token = self._scim_token(scim_token_id)
            self.state.delete_scim_token(token.id, actor=self._actor(request))
        return ApiResponse(204)

    def _scim_token(self, scim_token_id: str):

        # The platform parses the id (any case, as Go's uuid.Parse does): a malformed one is its 400.
        token = self.state.scim_tokens.get(_platform_uuid(scim_token_id, "SCIM token id"))
        if token is None:
            raise ApiError(404, {"error": "SCIM token not found"})
        return token

    # -------------------------------------------------------------- keys and tokens

    def list_service_keys(self, request, faults: FaultConfig) -> ApiResponse:
        self._gate(request, "service_keys", "organization:read", "list service keys")
        return self._key_listing(faults, lambda key: key.kind == SERVICE_KEY)

    def list_personal_access_tokens(self, request, faults: FaultConfig) -> ApiResponse:
        # Refused to Organization Viewers: every other org role holds more than organization:read.
        self._gate(request, "personal_access_tokens", ("organization:manage", "organization:pats:create"),
                   "list personal access tokens")
        return self._key_listing(faults, lambda key: key.kind == PERSONAL_ACCESS_TOKEN)

    def list_workspace_keys(self, request, faults: FaultConfig, workspace: Workspace) -> ApiResponse:
        self._gate(request, "workspace_service_keys", "workspaces:read", "list this workspace's keys")
        return self._key_listing(
            faults,
            lambda key: key.kind == WORKSPACE_SERVICE_KEY and key.workspace_ids == [workspace.id],
        )

    def _key_listing(self, faults: FaultConfig, keep) -> ApiResponse:

        with self.state.lock:
            keys = sorted((k for k in self.state.api_keys.values() if keep(k)),
                          key=lambda k: (k.created_at, k.id), reverse=True)
            rows = [access_payloads.api_key_json(self.state, k, leak=faults.leak_full_keys) for k in keys]
        return ApiResponse(200, rows)

    def create_service_key(self, request, faults) -> ApiResponse:
        self._gate(request, "service_keys", "organization:manage", "create service keys")
        return self._create_key(request, SERVICE_KEY, None)

    def create_workspace_key(self, request, faults, workspace: Workspace) -> ApiResponse:
        self._gate(request, "workspace_service_keys", "workspaces:manage", "create workspace keys")
        return self._create_key(request, WORKSPACE_SERVICE_KEY, workspace)

    def _create_key(self, request: ApiRequest, kind: str, workspace: Workspace | None) -> ApiResponse:
        # The spec makes only the workspace route's body optional (its defaults: below).
        body = json_object_body(request, required=workspace is None)
        description = body_str(body, "description", "Default API key")
        read_only = body_bool(body, "read_only", False)
        role_id = body_uuid(body, "role_id", required=False)
        org_role_id = body_uuid(body, "org_role_id", required=False)
        default_workspace_id = body_uuid(body, "default_workspace_id", required=False)
        expires_at = _body_datetime(body, "expires_at")
        workspace_ids = [workspace.id] if workspace is not None else _body_uuid_list(body, "workspaces")
        with self.state.lock:
            chosen_role = role_id is not None
            if role_id is None:
                # APIKeyCreateRequest: without role_id, WORKSPACE_ADMIN, or the reader (Viewer)
                # when the deprecated read_only is true.
                role_id = self.state.role_by_name("WORKSPACE_VIEWER" if read_only else "WORKSPACE_ADMIN").id
            if kind != SERVICE_KEY:
                org_role_id = None
            elif org_role_id is None:
                org_role_id = self.state.role_by_name("ORGANIZATION_USER").id
            # (read_only's reader predates workspace RBAC: every plan may ask for it.)
            self._check_key_roles(role_id, org_role_id, chosen=chosen_role)
            for workspace_id in workspace_ids or []:
                if workspace_id not in self.state.workspaces:
                    raise detail_error(404, f"Workspace {workspace_id} not found")
            self._check_expiry(kind, expires_at)
            key = self.state.create_api_key(
                kind,
                description,
                workspace_ids=workspace_ids,
                read_only=read_only,
                role_id=role_id,
                org_role_id=org_role_id,
                expires_at=expires_at,
                default_workspace_id=default_workspace_id,
                actor=self._actor(request),
            )
            return ApiResponse(200, access_payloads.api_key_created_json(self.state, key))

    def _check_key_roles(self, role_id: str | None, org_role_id: str | None, *, chosen: bool) -> None:
        """A key's roles, as creating and changing a key check them: each one of this org's roles
        of its scope (404), and a ``chosen`` workspace role other than Workspace Admin only on a
        plan with RBAC (403)."""
        roles = self.state.roles
        if role_id is not None:
            if roles.get(role_id) is None or roles[role_id].access_scope != WORKSPACE_SCOPE:
                raise detail_error(404, f"Workspace role {role_id} not found")
            if chosen and not self.plan_flags()["can_use_rbac"] and roles[role_id].name != "WORKSPACE_ADMIN":
                raise detail_error(403, "Choosing a key's workspace role needs the Enterprise plan")
        if org_role_id is not None and (
            roles.get(org_role_id) is None or roles[org_role_id].access_scope != ORGANIZATION_SCOPE
        ):
            raise detail_error(404, f"Organization role {org_role_id} not found")

    def _check_expiry(self, kind: str, expires_at: str | None) -> None:
        """The org's maximum expiry (``max_*_expiry_days``) caps new keys."""

        settings = self.state.settings
        cap = settings.max_service_key_expiry_days if kind == SERVICE_KEY else settings.max_api_key_expiry_days
        if cap is None:
            return
        if expires_at is None:
            raise detail_error(400, f"expires_at is required: this organization caps keys at {cap} days")
        latest = format_timestamp(int(self.state.clock()) + cap * 86400)
        if expires_at > latest:
            raise detail_error(400, f"expires_at is beyond this organization's maximum of {cap} days")

    def patch_service_key(self, request, faults, api_key_id: str) -> ApiResponse:
        """Change a service key's roles (``role_id``, ``org_role_id``) without rotating it; only
        an Org Admin may (langsmith-api.md, "Key permissions and plan limits")."""
        key_id = path_uuid(api_key_id, "api_key_id")
        body = json_object_body(request)
        role_id = body_uuid(body, "role_id", required=False)
        org_role_id = body_uuid(body, "org_role_id", required=False)
        self._gate(request, "service_keys", "organization:manage", "change service keys' roles")
        with self.state.lock:
            key = self.state.api_keys.get(key_id)
            if key is None or key.kind != SERVICE_KEY or key.revoked_at is not None:
                raise detail_error(404, "API key not found")
            self._check_key_roles(role_id, org_role_id, chosen=True)
            self.state.set_service_key_roles(key.id, role_id=role_id, org_role_id=org_role_id)
            return ApiResponse(200, access_payloads.api_key_json(self.state, key))

    def delete_service_key(self, request, faults, api_key_id: str) -> ApiResponse:
        self._gate(request, "service_keys", "organization:manage", "delete service keys")
        return self._revoke(request, api_key_id, "api_key_id", lambda key: key.kind == SERVICE_KEY)

    def delete_personal_access_token(self, request, faults, pat_id: str) -> ApiResponse:
        self._gate(request, "personal_access_tokens", "organization:manage",
                   "revoke members' personal access tokens")
        return self._revoke(request, pat_id, "pat_id", lambda key: key.kind == PERSONAL_ACCESS_TOKEN)

    def delete_workspace_key(self, request, faults, workspace: Workspace, api_key_id: str) -> ApiResponse:
        self._gate(request, "workspace_service_keys", "workspaces:manage", "delete workspace keys")
        return self._revoke(
            request, api_key_id, "api_key_id",
            lambda key: key.kind == WORKSPACE_SERVICE_KEY and key.workspace_ids == [workspace.id],
        )

    def _revoke(self, request: ApiRequest, key_id: str, param: str, matches) -> ApiResponse:
        """Revoke the key ``key_id`` (the path parameter the spec names ``param``, which a
        malformed id's 422 names) when ``matches`` accepts it; 404 otherwise."""
        key_id = path_uuid(key_id, param)
        with self.state.lock:
            key = self.state.api_keys.get(key_id)
            if key is None or not matches(key):
                raise detail_error(404, "API key not found")
            self.state.revoke_api_key(key.id, actor=self._actor(request))
            return ApiResponse(200, access_payloads.api_key_json(self.state, key))

    # -------------------------------------------------------------- service accounts

    def list_service_accounts(self, request, faults) -> ApiResponse:

        self._gate(request, "service_accounts", "organization:read", "list service accounts")
        with self.state.lock:
            accounts = sorted(self.state.service_accounts.values(), key=lambda a: (a.created_at, a.id))
            rows = [access_payloads.service_account_json(self.state, a) for a in accounts]
        return ApiResponse(200, rows)

    # -------------------------------------------------------------- SSO settings

    def list_sso_settings(self, request, faults) -> ApiResponse:

        self._gate(request, "sso_settings", "organization:read", "read SSO settings")
        with self.state.lock:
            providers = sorted(self.state.sso_providers.values(), key=lambda p: p.id)
            rows = [access_payloads.sso_provider_json(self.state, p) for p in providers]
        return ApiResponse(200, rows)

    # -------------------------------------------------------------- workspace tags

    def _require_workspace_read(self, request: ApiRequest) -> None:
        if "workspaces:read" not in self._workspace_role_permissions(request):
            raise detail_error(403, "the API key's role may not read this workspace (needs workspaces:read)")

    def list_tags(self, request, faults, workspace: Workspace) -> ApiResponse:
        """``TagKeyWithValues[]``: the workspace's tag keys, each with its values."""
        self._require_workspace_read(request)
        with self.state.lock:
            rows = [
                access_payloads.tag_key_json(
                    key, [access_payloads.tag_value_json(value) for value in _values_in_order(key.values)]
                )
                for key in _keys_in_order(workspace.tag_keys)
            ]
        return ApiResponse(200, rows)

    def list_taggings(self, request, faults, workspace: Workspace) -> ApiResponse:
        """``TaggingsResponse[]``: per tag value, the resources it is on; ``tag_value_id`` keeps
        one value (none when it is not this workspace's)."""
        wanted = None
        if last_value(request.query, "tag_value_id") is not None:  # one UUID, optional
            wanted = parse_uuid(last_value(request.query, "tag_value_id"))
            if wanted is None:
                raise validation_error(["query", "tag_value_id"], "Input should be a valid UUID", "uuid_parsing")
        self._require_workspace_read(request)
        with self.state.lock:
            rows = [
                access_payloads.taggings_json(key, value)
                for key in _keys_in_order(workspace.tag_keys)
                for value in _values_in_order(key.values)
                if wanted is None or value.id == wanted
            ]
        return ApiResponse(200, rows)

    def list_tags_for_resource(self, request, faults, workspace: Workspace) -> ApiResponse:
        """``TagKeyWithValuesAndTaggings[]``: the keys and values on one resource, with its taggings."""
        query = request.query
        resource_type = last_value(query, "resource_type")
        if resource_type is None:
            raise validation_error(["query", "resource_type"], "Field required", "missing")
        if resource_type not in TAG_RESOURCE_TYPES:
            *others, last = (repr(name) for name in TAG_RESOURCE_TYPES)
            raise validation_error(["query", "resource_type"],
                                   f"Input should be {', '.join(others)} or {last}", "enum")
        if last_value(query, "resource_id") is None:
            raise validation_error(["query", "resource_id"], "Field required", "missing")
        resource_id = parse_uuid(last_value(query, "resource_id"))
        if resource_id is None:
            raise validation_error(["query", "resource_id"], "Input should be a valid UUID", "uuid_parsing")
        self._require_workspace_read(request)
        with self.state.lock:
            rows = []
            for key in _keys_in_order(workspace.tag_keys):
                values = []
                for value in _values_in_order(key.values):
                    on_it = sorted((t for t in value.taggings.values()
                                    if t.resource_type == resource_type and t.resource_id == resource_id),
                                   key=lambda t: (t.created_at, t.id))
                    if on_it:
                        values.append(access_payloads.tag_value_json(value, taggings=on_it))
                if values:
                    rows.append(access_payloads.tag_key_json(key, values))
        return ApiResponse(200, rows)

    # -------------------------------------------------------------- audit log

    def list_audit_logs(self, request, faults) -> ApiResponse:

        query = request.query
        start_us = _query_datetime(query, "start_time")
        end_us = _query_datetime(query, "end_time")
        limit = query_int(query, "limit", AUDIT_DEFAULT_PAGE, 1, AUDIT_MAX_PAGE)
        workspace_id = None
        if query.get("workspace_id"):
            workspace_id = parse_uuid(query["workspace_id"][-1])
            if workspace_id is None:
                raise validation_error(["query", "workspace_id"], "Input should be a valid UUID",
                                       "uuid_parsing")
        operations = operations_filter(query.get("operations", []))
        cursor = query.get("cursor", [None])[-1]
        self._gate(request, "audit_events", "organization:manage", "read the audit log")
        if start_us > end_us:
            raise validation_error(["query", "start_time"], "start_time must not be after end_time",
                                   "value_error")
        # Events carry whole milliseconds: those within the inclusive bounds as given.
        start, end = -(-start_us // 1000), end_us // 1000
        after = None
        if cursor:
            try:
                after = decode_cursor(cursor)
            except ValueError:
                raise detail_error(400, "Invalid cursor") from None

        def keep(event) -> bool:
            if workspace_id is not None and event.workspace_id != workspace_id:
                return False
            return not operations or event.operation in operations

        with self.state.lock:
            # Retention ("up to 400 days"), counted from the sandbox's clock at this request. The
            # doc is silent on a window reaching past it: answered like any window (200 with what
            # is still kept, empty when nothing is), never a 422 the spec does not list. Least
            # likely to hide a client bug: a client must not take that emptiness for "no activity"
            # (inventory.AUDIT_RETENTION), and an invented error would keep tests from seeing it.
            start = max(start, oldest_served_ms(int(self.state.clock() * 1000)))
            page, next_position = self.state.audit_log.page(start, end, limit=limit, after=after, keep=keep)
            items = [access_payloads.audit_event_json(self.state, event) for event in page]
        return ApiResponse(200, {
            "items": items,
            "cursor": encode_cursor(next_position) if next_position is not None else None,
        })


# ------------------------------------------------------------------ helpers


def _platform_json_object(request: ApiRequest) -> dict[str, Any]:
    """A Go platform route's JSON body: its errors are 400 ``{"error": ...}``."""

    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise ApiError(400, {"error": "invalid JSON body"}) from None
    if not isinstance(body, dict):
        raise ApiError(400, {"error": "the body must be a JSON object"})
    return body


def _keys_in_order(keys: dict[str, TagKey]) -> list[TagKey]:
    """Tag keys by key, then id (the order is undocumented)."""
    return sorted(keys.values(), key=lambda k: (k.key, k.id))


def _values_in_order(values: dict[str, TagValue]) -> list[TagValue]:
    return sorted(values.values(), key=lambda v: (v.value, v.id))


def _platform_uuid(raw: str, what: str) -> str:
    """A Go platform route's UUID (path or body): a malformed one is its 400 ``{"error": ...}``."""
    parsed = parse_uuid(raw)
    if parsed is None:
        raise ApiError(400, {"error": f"invalid {what} {raw!r}"})
    return parsed


def _condition_groups(raw: Any) -> list[PolicyConditionGroup]:

    if not isinstance(raw, list):
        raise ApiError(400, {"error": "condition_groups must be a list"})
    groups = []
    for group in raw:
        conditions = group.get("conditions") or [] if isinstance(group, dict) else None
        # A condition that is no object is the body's 400: dropping it would widen the policy.
        if not isinstance(conditions, list) or not all(isinstance(c, dict) for c in conditions):
            raise ApiError(400, {"error": "each condition group needs permission, resource_type, conditions"})
        groups.append(PolicyConditionGroup(
            _platform_choice(group, "permission", ABAC_PERMISSIONS),
            _platform_str(group, "resource_type", ""),
            [
                PolicyCondition(
                    attribute_key=_platform_str(c, "attribute_key", ""),
                    operator=_platform_choice(c, "operator", ABAC_OPERATORS),
                    attribute_value=_platform_str(c, "attribute_value", ""),
                    attribute_name=_platform_choice(c, "attribute_name", ABAC_ATTRIBUTE_NAMES, "resource_tag_key"),
                )
                for c in conditions
            ],
        ))
    return groups


def _platform_choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str = "") -> str:
    """A field the policy serves as one of the spec's enum values (``allowed``): another value,
    or none without a ``default``, is the body's 400 ``{"error": ...}``, never a policy whose
    every later answer falls outside ``authz_internal.AccessPolicy``."""
    value = _platform_str(body, name, default)
    if value not in allowed:
        raise ApiError(400, {"error": f"{name} {value!r} is not one of the documented values"})
    return value


def _platform_str(body: dict[str, Any], name: str, default: str) -> str:
    """A string field of a Go platform route's body: null or absent is ``default`` (Go's zero
    value), another JSON type is the body's 400 ``{"error": ...}``."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ApiError(400, {"error": f"{name} must be a string"})
    return value


# FastAPI reads a datetime parameter with pydantic's lax mode: RFC 3339 with or without a zone, a
# date alone, or Unix time (seconds, or milliseconds past 2e10) as a number or a string of digits.
_DATETIME = TypeAdapter(datetime)


def _parse_datetime(raw: Any, loc: list) -> datetime:
    """``raw`` as FastAPI reads it (a naive time is taken as UTC), or its 422 naming ``loc``."""
    try:
        parsed = _DATETIME.validate_python(raw)
    except ValidationError as invalid:
        error = invalid.errors()[0]
        raise validation_error(loc, error["msg"], error["type"]) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _query_datetime(query: dict[str, list[str]], name: str) -> int:
    """A required datetime query parameter, as epoch microseconds, exactly (FastAPI's 422s
    otherwise)."""

    values = query.get(name)
    if not values:
        raise validation_error(["query", name], "Field required", "missing")
    parsed = _parse_datetime(values[-1], ["query", name])
    return (parsed - _EPOCH) // timedelta(microseconds=1)  # no float on the way


def _body_datetime(body: dict[str, Any], name: str) -> str | None:

    raw = body.get(name)
    if raw is None:
        return None
    return format_timestamp(int(_parse_datetime(raw, ["body", name]).timestamp()))


def _body_uuid_list(body: dict[str, Any], name: str) -> list[str] | None:

    raw = body.get(name)
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise validation_error(["body", name], "Input should be a valid list", "list_type")
    parsed = [parse_uuid(value) for value in raw]
    for index, value in enumerate(parsed):
        if value is None:
            raise validation_error(["body", name, index], "Input should be a valid UUID", "uuid_parsing")
    return [value for value in parsed if value is not None]

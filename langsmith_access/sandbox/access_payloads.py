"""How the sandbox turns the access picture's records into the JSON LangSmith sends: one function
per schema of ``langsmith-openapi-subset.json`` (``APIKeyGetResponse``, ``scim.ScimTokenResponse``,
``ServiceAccount``, ``authz_internal.AccessPolicy``, ``SSOProvider``, ``OCSFApiActivity``,
``orgs.OrganizationInfo``, and the tag schemas ``TagKeyWithValues``, ``TaggingsResponse``,
``TagKeyWithValuesAndTaggings``). Callers hold ``state.lock``.

Secrets: listings carry ``short_key``/``short_token`` only. The full secret appears in a
creation answer (``key``, ``token``), and in a listing only when ``leak`` is set: the fault
mode ``FaultConfig.leak_full_keys``, a misbehaving server.
"""

from __future__ import annotations

from langsmith_access.sandbox.access_records import (
    PERSONAL_ACCESS_TOKEN,
    TAGGING_BUCKETS,
    WORKSPACE_SERVICE_KEY,
    AccessPolicy,
    ApiKey,
    AuditEvent,
    ScimToken,
    ServiceAccount,
    SsoProvider,
    Tagging,
    TagKey,
    TagValue,
)
from langsmith_access.sandbox.org_state import OrgState, format_timestamp
from langsmith_access.sandbox.payloads import org_settings_json


def api_key_json(state: OrgState, key: ApiKey, *, leak: bool = False) -> dict:
    """An ``APIKeyGetResponse`` (with the fields later specs and clients add: ``role_id``,
    ``org_role_id``, ``access_scope``, ``created_by``, ``revoked_at``)."""
    workspaces = [state.workspaces[w] for w in key.workspace_ids or [] if w in state.workspaces]
    default = state.workspaces.get(key.default_workspace_id or "")
    row = {
        "id": key.id,
        "short_key": key.secret if leak else key.short_key,
        "description": key.description,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "expires_at": key.expires_at,
        "read_only": key.read_only,
        "workspace_names": None if key.workspace_ids is None else [w.display_name for w in workspaces],
        "default_workspace_name": default.display_name if default else None,
        "role_id": key.role_id,
        "org_role_id": key.org_role_id,
        "access_scope": "workspace" if key.kind == WORKSPACE_SERVICE_KEY else "organization",
        "created_by": key.created_by,
        "revoked_at": key.revoked_at,
    }
    if key.kind == PERSONAL_ACCESS_TOKEN:
        row["access_scope"] = None  # a personal access token acts with its owner's roles
    if leak:
        row["key"] = key.secret
    return row


def api_key_created_json(state: OrgState, key: ApiKey) -> dict:
    """An ``APIKeyCreateResponse``: the one answer that carries the full ``key``."""
    return {**api_key_json(state, key), "key": key.secret}


def scim_token_json(token: ScimToken, *, leak: bool = False) -> dict:
    """A ``scim.ScimTokenResponse`` (the Go service omits empty fields: a token never used has
    no ``last_used_at``)."""
    row = {
        "id": token.id,
        "short_token": token.token if leak else token.short_token,
        "description": token.description,
        "created_at": token.created_at,
        "updated_at": token.updated_at,
    }
    if token.last_used_at:
        row["last_used_at"] = token.last_used_at
    if leak:
        row["token"] = token.token
    return row


def scim_token_created_json(token: ScimToken) -> dict:
    """A ``scim.ScimTokenSensitiveResponse``: the one answer with the full ``token``."""
    return {**scim_token_json(token), "token": token.token}


def service_account_json(state: OrgState, account: ServiceAccount) -> dict:
    """A ``ServiceAccount`` (also the shape ``DELETE`` answers)."""
    return {
        "id": account.id,
        "name": account.name,
        "organization_id": state.organization_id,
        "default_workspace_id": account.default_workspace_id,
        "created_at": account.created_at,
        "updated_at": account.updated_at,
    }


def access_policy_json(policy: AccessPolicy) -> dict:
    """An ``authz_internal.AccessPolicy``."""
    return {
        "id": policy.id,
        "name": policy.name,
        "description": policy.description,
        "effect": policy.effect,
        "role_ids": list(policy.role_ids),
        "condition_groups": [
            {
                "permission": group.permission,
                "resource_type": group.resource_type,
                "conditions": [
                    {
                        "attribute_name": condition.attribute_name,
                        "attribute_key": condition.attribute_key,
                        "operator": condition.operator,
                        "attribute_value": condition.attribute_value,
                    }
                    for condition in group.conditions
                ],
            }
            for group in policy.condition_groups
        ],
        "created_at": policy.created_at,
        "updated_at": policy.updated_at,
    }


def sso_provider_json(state: OrgState, provider: SsoProvider) -> dict:
    """An ``SSOProvider``."""
    mapping = provider.attribute_mapping_keys
    return {
        "id": provider.id,
        "organization_id": state.organization_id,
        "provider_id": provider.provider_id,
        "default_workspace_role_id": provider.default_workspace_role_id,
        "default_workspace_ids": list(provider.default_workspace_ids),
        "metadata_url": provider.metadata_url,
        "metadata_xml": provider.metadata_xml,
        "sso_groups_enabled": provider.sso_groups_enabled,
        "sso_groups_claim_field": provider.sso_groups_claim_field,
        "sso_groups_required": provider.sso_groups_required,
        "sso_groups_role_sync_enabled": provider.sso_groups_role_sync_enabled,
        "attribute_mapping": (
            None
            if mapping is None
            else {"keys": {name: {"name": name, "array": array} for name, array in mapping.items()}}
        ),
        "attribute_mapping_load_error": provider.attribute_mapping_load_error,
    }


# OCSF API Activity: activity_id by what the operation does (1 create, 2 read, 3 update,
# 4 delete, 99 other).
_ACTIVITIES = (
    (("create_", "add_", "invite_", "claim_"), 1, "Create"),
    (("get_", "list_", "read_"), 2, "Read"),
    (("update_", "attach_", "set_", "upsert_"), 3, "Update"),
    (("delete_", "remove_", "revoke_"), 4, "Delete"),
)
_STATUSES = {True: (1, "Success"), False: (2, "Failure"), None: (0, "Unknown")}


def _activity(operation: str) -> tuple[int, str]:
    for prefixes, activity_id, name in _ACTIVITIES:
        if operation.startswith(prefixes):
            return activity_id, name
    return 99, "Other"


def audit_event_json(state: OrgState, event: AuditEvent) -> dict:
    """An ``OCSFApiActivity`` (OCSF 1.7.0, class 6003) with LangSmith's own record in
    ``unmapped.original_audit_log``. ``time`` is in milliseconds since the epoch, as OCSF's
    timestamps are."""
    activity_id, activity_name = _activity(event.operation)
    status_id, status = _STATUSES[event.succeeded]
    actor = event.actor
    seconds, millis = divmod(event.time_ms, 1000)
    request_time = f"{format_timestamp(seconds)[:-1]}.{millis:03d}Z"
    return {
        "class_uid": 6003,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        "severity_id": 99,
        "type_uid": 600300 + activity_id,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "status_id": status_id,
        "status": status,
        "time": event.time_ms,
        "metadata": {"uid": event.id, "product": {"name": "LangSmith", "vendor_name": "LangChain"}},
        "api": {"operation": event.operation},
        "http_request": {"http_method": event.http_method, "url": {"path": event.path}},
        "http_response": {"code": event.status_code},
        "actor": {"user": {"uid": actor.ls_user_id, "credential_uid": actor.api_key_id}},
        "src_endpoint": {"ip": actor.ip, "port": None, "intermediate_ips": None},
        "resources": [{"uid": uid} for uid in event.resource_ids],
        "unmapped": {
            "original_audit_log": {
                "id": event.id,
                "operation_name": event.operation,
                "operation_succeeded": event.succeeded,
                "request_time": request_time,
                "api_key_id": actor.api_key_id,
                "user_id": actor.user_id,
                "ls_user_id": actor.ls_user_id,
                "organization_id": state.organization_id,
                "workspace_id": event.workspace_id,
                "enrichments": {
                    "request_method": event.http_method,
                    "request_path": event.path,
                    "client_host": actor.ip,
                    "client_port": None,
                    "x_forwarded_for": None,
                    "response_status_code": event.status_code,
                    "resource_ids": list(event.resource_ids),
                },
            }
        },
    }


def platform_org_info_json(state: OrgState, info: dict) -> dict:
    """An ``orgs.OrganizationInfo`` (the platform twin of ``/api/v1/orgs/current/info``): the
    same fields from ``organization_info_json``'s ``info``, none nullable, so the Go service
    leaves out the null ones."""
    fields = {**info, **org_settings_json(state.settings)}
    fields["config"] = {k: v for k, v in info["config"].items() if v is not None}
    return {name: value for name, value in fields.items() if value is not None}


# ------------------------------------------------------------------ workspace tags


def _tag_fields(record: TagKey | TagValue, name: str, text: str) -> dict:
    # Tags here are never edited: updated_at is created_at.
    return {name: text, "description": record.description, "id": record.id,
            "created_at": record.created_at, "updated_at": record.created_at}


def tag_value_json(value: TagValue, *, taggings: list[Tagging] | None = None) -> dict:
    """A ``TagValue``, or a ``TagValueWithTaggings`` when ``taggings`` is given."""
    row = {**_tag_fields(value, "value", value.value), "tag_key_id": value.tag_key_id}
    if taggings is not None:
        row["taggings"] = [
            {"tag_value_id": t.tag_value_id, "resource_type": t.resource_type, "resource_id": t.resource_id,
             "id": t.id, "created_at": t.created_at}
            for t in taggings
        ]
    return row


def tag_key_json(key: TagKey, values: list[dict]) -> dict:
    """A ``TagKeyWithValues`` (or ``...AndTaggings``) with the value rows given."""
    return {**_tag_fields(key, "key", key.key), "values": values}


def taggings_json(key: TagKey, value: TagValue) -> dict:
    """A ``TaggingsResponse``: the resources one tag value is on, by resource type (an
    ``evaluator`` has no bucket in ``TaggingsByResourceType``)."""
    resources: dict[str, list[dict]] = {bucket: [] for bucket in TAGGING_BUCKETS.values()}
    resources["alerts"] = []
    for tagging in sorted(value.taggings.values(), key=lambda t: (t.created_at, t.id)):
        bucket = TAGGING_BUCKETS.get(tagging.resource_type)
        if bucket is not None:
            resources[bucket].append({"tagging_id": tagging.id, "resource_name": tagging.resource_name,
                                      "resource_id": tagging.resource_id})
    return {"tag_key": key.key, "tag_key_id": key.id, "tag_value": value.value, "tag_value_id": value.id,
            "resources": dict(sorted(resources.items()))}

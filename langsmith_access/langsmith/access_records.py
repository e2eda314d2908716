"""Typed records for the rest of the access picture (DESIGN.md section 9): the org's info with its
plan flags and settings, credentials, service accounts, access policies, SSO settings and audit
events. Parsed like records.py: a field the schema requires that is missing or of the wrong
type raises ``UnexpectedResponseError`` naming it; unknown fields are ignored; values of open
sets (providers, operations, effects, ...) are kept as sent, never rejected.

No secret is ever kept: a listing's ``key``/``token`` field (which LangSmith only sends when a
key is created) is not read, and a ``short_key`` that holds a whole secret (a misbehaving
server) is cut to its prefix and last four characters, with ``secret_redacted`` set.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langsmith_access.langsmith.errors import UnexpectedResponseError
from langsmith_access.langsmith.records import _Fields, _objects, _shared, canonical_uuid, parse_timestamp

# Credential kinds (the `credentials` table's `kind`).
SERVICE_KEY = "service_key"
WORKSPACE_SERVICE_KEY = "workspace_service_key"
PERSONAL_ACCESS_TOKEN = "personal_access_token"
SCIM_TOKEN = "scim_token"
CREDENTIAL_KINDS = (SERVICE_KEY, WORKSPACE_SERVICE_KEY, PERSONAL_ACCESS_TOKEN, SCIM_TOKEN)

# A key's visible prefix (`lsv2_sk_`, `lsv2_pt_`, `lsv2_scim_`, the older `ls__`), then the rest.
_PREFIX = re.compile(r"^(lsv2_[a-z]+_|ls__)?(.*)$", re.DOTALL)
# A redacted key shows a few characters; a whole secret has 32 or more random ones.
_SECRET_MIN_CHARS = 20


def redact_short_key(value: str) -> tuple[str, bool]:
    """``(short form, whether value was a whole secret)``. LangSmith's listings send a short,
    redacted key; a value with ``_SECRET_MIN_CHARS`` letters and digits or more after its
    prefix is a whole secret, and is cut to its prefix and last four characters."""
    match = _PREFIX.match(value)
    prefix, rest = (match.group(1) or "", match.group(2)) if match else ("", value)
    if sum(char.isalnum() for char in rest) < _SECRET_MIN_CHARS:
        return value, False
    return f"{prefix}...{value[-4:]}", True


def _epoch_to_datetime(value: int | float) -> datetime:
    """OCSF ``time``: milliseconds since the epoch (seconds if that small: LangSmith does not
    document the unit, and any date after 1973 in milliseconds is above 1e11)."""
    seconds = value / 1000 if value >= 1e11 else value
    return datetime.fromtimestamp(seconds, tz=UTC)


@dataclass(frozen=True, slots=True)
class OrganizationInfo:
    """``GET /api/v1/orgs/current/info`` as the calling key sees it.

    ``permissions``: the key's own organization permissions (None when not said). ``flags``:
    the plan's ``config`` booleans (``can_use_rbac``, ``can_use_abac``, ``can_use_audit_logs``,
    ``can_use_saml_sso``, ...) as given. ``settings``: the org's name and the security settings
    present in the answer (``ORG_SETTINGS``), values as sent.
    """

    id: str | None
    display_name: str | None
    tier: str | None
    plan_tier: str | None
    permissions: tuple[str, ...] | None
    flags: dict[str, bool]
    settings: dict[str, Any]

    ORG_SETTINGS = (
        # The name people know the org by (the orgs file has only a slug); renames get history.
        "display_name",
        "sso_only",
        "jit_provisioning_enabled",
        "invites_enabled",
        "sso_login_slug",
        "default_sso_provision",
        "pat_creation_disabled",
        "public_sharing_disabled",
        "workspace_admin_can_invite_to_org",
        "max_api_key_expiry_days",
        "max_pat_expiry_days",
        "max_service_key_expiry_days",
        "security_contact",
        "scim_group_name_separator",
        "ip_allowlist",
        "ip_allowlist_enabled",
        "disabled",
        "member_disabled",
    )

    @classmethod
    def from_api(cls, data: Any) -> OrganizationInfo:
        f = _Fields("OrganizationInfo", data)
        config = f.object("config")
        return cls(
            id=f.uuid("id"),
            display_name=f.str("display_name"),
            tier=f.str("tier"),
            plan_tier=config.get("plan_tier") if isinstance(config.get("plan_tier"), str) else None,
            permissions=f.optional_str_list("permissions"),
            flags={k: v for k, v in config.items() if isinstance(v, bool)},
            settings={name: data[name] for name in cls.ORG_SETTINGS if name in data},
        )

    def flag(self, name: str) -> bool | None:
        """A ``config`` flag: True, False, or None when the answer does not say."""
        return self.flags.get(name)

    def setting_rows(self) -> list[tuple[str, str | None]]:
        """``(setting, value as text)`` for the ``org_settings`` table: the settings, the tier
        and the plan's flags (as ``config.<flag>``); lists as JSON, booleans ``true``/``false``."""

        def text(value: Any) -> str | None:
            if value is None:
                return None
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, (list, dict)):
                return json.dumps(value, sort_keys=True)
            return str(value)

        rows = [(name, text(value)) for name, value in self.settings.items()]
        rows.append(("tier", self.tier))
        rows.extend((f"config.{name}", text(value)) for name, value in sorted(self.flags.items()))
        return rows


@dataclass(frozen=True, slots=True)
class Credential:
    """A service key, workspace service key, personal access token or SCIM token, as listed.

    ``short_key`` is what the API shows of it (``short_token`` for SCIM tokens), never the
    secret; None for a SCIM token listed without one. ``workspace_names``: None for an org-wide
    key. ``workspace_id``: the workspace whose listing it came from (workspace service keys).
    ``revoked_at``/``created_by``: sent by newer versions only. ``secret_redacted``: the server
    sent a whole secret as the short key, which was cut (see ``redact_short_key``).
    """

    id: str
    kind: str
    short_key: str | None
    description: str | None
    created_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    workspace_names: tuple[str, ...] | None
    default_workspace_name: str | None
    role_id: str | None
    org_role_id: str | None
    access_scope: str | None
    created_by: str | None
    read_only: bool
    workspace_id: str | None = None
    secret_redacted: bool = False

    @classmethod
    def from_api(cls, data: Any, kind: str, workspace_id: str | None = None) -> Credential:
        """An ``APIKeyGetResponse`` of a service key, workspace service key or personal access
        token listing."""
        if kind not in (SERVICE_KEY, WORKSPACE_SERVICE_KEY, PERSONAL_ACCESS_TOKEN):
            raise ValueError(f"not an API key kind: {kind!r}")
        f = _Fields("APIKeyGetResponse", data)
        short_key, redacted = redact_short_key(f.req_str("short_key"))
        return cls(
            id=f.uuid("id", required=True),
            kind=kind,
            short_key=short_key,
            description=f.str("description", required=True),
            created_at=f.timestamp("created_at"),
            last_used_at=f.timestamp("last_used_at"),
            expires_at=f.timestamp("expires_at"),
            revoked_at=f.timestamp("revoked_at"),
            workspace_names=f.optional_str_list("workspace_names"),
            default_workspace_name=f.str("default_workspace_name"),
            role_id=f.uuid("role_id"),
            org_role_id=f.uuid("org_role_id"),
            access_scope=f.str("access_scope"),
            created_by=f.str("created_by"),  # its format is not settled (langsmith-api.md): as sent
            read_only=f.bool("read_only", default=False),
            workspace_id=workspace_id,
            secret_redacted=redacted,
        )

    @classmethod
    def from_scim_token(cls, data: Any) -> Credential:
        """A ``scim.ScimTokenResponse`` (the Go service leaves out empty fields)."""
        f = _Fields("scim.ScimTokenResponse", data)
        # Optional in its schema, and the Go service drops an empty one: the token is still a way
        # in, so it is kept, with no short form, rather than failing the whole inventory.
        sent = f.str("short_token")
        short_token, redacted = redact_short_key(sent) if sent else (None, False)
        return cls(
            id=f.uuid("id", required=True),
            kind=SCIM_TOKEN,
            short_key=short_token,
            description=f.str("description"),
            created_at=f.timestamp("created_at"),
            last_used_at=f.timestamp("last_used_at"),
            expires_at=None,
            revoked_at=None,
            workspace_names=None,
            default_workspace_name=None,
            role_id=None,
            org_role_id=None,
            access_scope=None,
            created_by=None,
            read_only=False,
            secret_redacted=redacted,
        )


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    id: str
    name: str
    organization_id: str | None
    default_workspace_id: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_api(cls, data: Any) -> ServiceAccount:
        f = _Fields("ServiceAccount", data)
        return cls(
            id=f.uuid("id", required=True),
            name=f.str("name", required=True) or "",
            organization_id=f.uuid("organization_id"),
            default_workspace_id=f.uuid("default_workspace_id"),
            created_at=f.timestamp("created_at"),
            updated_at=f.timestamp("updated_at"),
        )


@dataclass(frozen=True, slots=True)
class PolicyCondition:
    attribute_name: str | None  # "resource_tag_key"
    attribute_key: str | None
    operator: str | None  # equals, not_equals, ..._if_exists, matches: an open set
    attribute_value: str | None

    @classmethod
    def from_api(cls, data: Any) -> PolicyCondition:
        f = _Fields("authz_internal.Condition", data)
        return cls(
            attribute_name=f.str("attribute_name"),
            attribute_key=f.str("attribute_key"),
            operator=f.str("operator"),
            attribute_value=f.str("attribute_value"),
        )


@dataclass(frozen=True, slots=True)
class PolicyConditionGroup:
    """Conditions AND-ed, for one permission on one resource type; groups are OR-ed."""

    permission: str | None
    resource_type: str | None
    conditions: tuple[PolicyCondition, ...]

    @classmethod
    def from_api(cls, data: Any) -> PolicyConditionGroup:
        f = _Fields("authz_internal.ConditionGroup", data)
        return cls(
            permission=f.str("permission"),
            resource_type=f.str("resource_type"),
            conditions=_objects(f, "conditions", PolicyCondition.from_api),
        )


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """An ABAC policy: ``effect`` (``allow`` / ``deny``, kept as sent) for the workspace roles
    in ``role_ids`` when one of its condition groups matches."""

    id: str
    name: str | None
    description: str | None
    effect: str | None
    role_ids: tuple[str, ...]
    condition_groups: tuple[PolicyConditionGroup, ...]
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def from_api(cls, data: Any) -> AccessPolicy:
        f = _Fields("authz_internal.AccessPolicy", data)
        return cls(
            id=f.uuid("id", required=True),
            name=f.str("name"),
            description=f.str("description"),
            effect=f.str("effect"),
            role_ids=f.uuid_list("role_ids"),
            condition_groups=_objects(f, "condition_groups", PolicyConditionGroup.from_api),
            created_at=f.timestamp("created_at"),
            updated_at=f.timestamp("updated_at"),
        )

    def condition_groups_json(self) -> str:
        """The condition groups as JSON text (the ``access_policies.condition_groups`` column)."""
        return json.dumps(
            [
                {
                    "permission": group.permission,
                    "resource_type": group.resource_type,
                    "conditions": [
                        {
                            "attribute_name": c.attribute_name,
                            "attribute_key": c.attribute_key,
                            "operator": c.operator,
                            "attribute_value": c.attribute_value,
                        }
                        for c in group.conditions
                    ],
                }
                for group in self.condition_groups
            ],
            sort_keys=True,
        )


# ``TaggingsResponse.resources``' buckets (plural) and the resource type each holds, as
# ``ResourceType`` and the access policies' conditions name it. A bucket LangSmith adds later is
# kept under its own name (an open set, like every other).
TAGGING_BUCKET_TYPES = {
    "alerts": "alert",
    "dashboards": "dashboard",
    "datasets": "dataset",
    "deployments": "deployment",
    "experiments": "experiment",
    "fleet_integrations": "fleet_integration",
    "mcp_servers": "mcp_server",
    "projects": "project",
    "prompts": "prompt",
    "queues": "queue",
    "sandboxes": "sandbox",
}


@dataclass(frozen=True, slots=True)
class ResourceTagging:
    """One tag value on one resource of a workspace (``id``: the tagging's): what an access
    policy's conditions are evaluated against (tags are per workspace)."""

    id: str
    workspace_id: str
    tag_key_id: str
    tag_key: str
    tag_value_id: str
    tag_value: str
    resource_type: str
    resource_id: str
    resource_name: str

    @classmethod
    def from_taggings(cls, data: Any, workspace_id: str) -> list[ResourceTagging]:
        """One ``TaggingsResponse`` (a tag value and the resources it is on, by resource type):
        a record per resource."""
        f = _Fields("TaggingsResponse", data)
        key_id, key = f.uuid("tag_key_id", required=True), f.req_str("tag_key")
        value_id, value = f.uuid("tag_value_id", required=True), f.req_str("tag_value")
        if data.get("resources") is None:  # required: never read as "on no resource"
            raise f._bad("resources", "an object")
        buckets = f.object("resources")
        taggings = []
        for bucket, resources in buckets.items():
            if resources is None:
                continue
            if not isinstance(resources, list):
                if bucket not in TAGGING_BUCKET_TYPES:
                    # A field LangSmith added that holds no list is no bucket of resources (a count,
                    # a flag): ignored like any unknown field. A new bucket is a list, read below.
                    continue
                raise UnexpectedResponseError(  # the bucket's type, not the resources object's
                    f"TaggingsResponse.resources: expected a list of resources in {bucket!r}, "
                    f"got {type(resources).__name__}"
                )
            for resource in resources:
                r = _Fields("Resource", resource)
                taggings.append(
                    cls(
                        id=r.uuid("tagging_id", required=True),
                        workspace_id=workspace_id,
                        tag_key_id=key_id,
                        tag_key=key,
                        tag_value_id=value_id,
                        tag_value=value,
                        resource_type=TAGGING_BUCKET_TYPES.get(bucket, bucket),
                        resource_id=r.uuid("resource_id", required=True),
                        resource_name=r.str("resource_name", required=True) or "",
                    )
                )
        return taggings


@dataclass(frozen=True, slots=True)
class SsoProvider:
    """A SAML SSO configuration: just-in-time provisioning puts new users in
    ``default_workspace_ids`` with ``default_workspace_role_id``.

    ``has_metadata_xml``: the identity provider's metadata was pasted as XML (``metadata_xml``)
    instead of given by URL; the XML itself is never kept. ``attribute_mapping_load_error``:
    why LangSmith could not load the attribute mapping (a misconfigured SSO), as sent. Older
    versions send neither: False and None.
    """

    id: str
    provider_id: str | None
    default_workspace_role_id: str | None
    default_workspace_ids: tuple[str, ...]
    metadata_url: str | None
    sso_groups_enabled: bool
    sso_groups_claim_field: str
    sso_groups_required: bool
    sso_groups_role_sync_enabled: bool
    attribute_mapping_keys: tuple[str, ...]
    has_metadata_xml: bool
    attribute_mapping_load_error: str | None

    @classmethod
    def from_api(cls, data: Any) -> SsoProvider:
        f = _Fields("SSOProvider", data)
        mapping = data.get("attribute_mapping")
        keys = mapping.get("keys") if isinstance(mapping, dict) else None
        return cls(
            id=f.uuid("id", required=True),
            provider_id=f.uuid("provider_id"),
            default_workspace_role_id=f.uuid("default_workspace_role_id"),
            default_workspace_ids=f.uuid_list("default_workspace_ids"),
            metadata_url=f.str("metadata_url"),
            sso_groups_enabled=f.bool("sso_groups_enabled", default=False),
            # SSOProvider's default: the claim LangSmith reads groups from when none is set.
            sso_groups_claim_field=f.str("sso_groups_claim_field") or "groups",
            sso_groups_required=f.bool("sso_groups_required", default=False),
            sso_groups_role_sync_enabled=f.bool("sso_groups_role_sync_enabled", default=True),
            attribute_mapping_keys=tuple(sorted(keys)) if isinstance(keys, dict) else (),
            # Read only to know it is there: the XML (certificates, endpoints) is not kept.
            has_metadata_xml=bool((f.str("metadata_xml") or "").strip()),
            attribute_mapping_load_error=f.str("attribute_mapping_load_error"),
        )


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit-log event (an OCSF ``OCSFApiActivity``), flattened.

    ``event_id``: ``metadata.uid``, the key to de-duplicate on. ``at``: when it happened (OCSF
    ``time``). ``operation``: ``api.operation``, kept as sent (the set grows). ``succeeded``:
    ``operation_succeeded`` (else from ``status``; None when unknown). ``actor_user_id``: the
    acting user's ``ls_user_id`` (``unmapped.original_audit_log.ls_user_id``, else
    ``actor.user.uid``); ``credential_id``: the key or token used (None for a UI session).
    ``target_ids``: ``resources[].uid``. ``detail``: the whole event as compact JSON text.
    """

    event_id: str
    at: datetime
    operation: str
    succeeded: bool | None
    actor_user_id: str | None
    credential_id: str | None
    workspace_id: str | None
    target_ids: tuple[str, ...]
    source_ip: str | None
    http_method: str | None
    path: str | None
    status_code: int | None
    detail: str

    @classmethod
    def from_api(cls, data: Any) -> AuditEvent:
        f = _Fields("OCSFApiActivity", data)

        def part(*names: str) -> dict:
            """A nested object, or {} where absent (every part is optional here but the id)."""
            value: Any = data
            for name in names:
                value = value.get(name) if isinstance(value, dict) else None
            return value if isinstance(value, dict) else {}

        original = part("unmapped", "original_audit_log")
        event_id = part("metadata").get("uid") or original.get("id")
        if not isinstance(event_id, str) or not event_id:
            raise f._bad("metadata.uid", "an event id")
        event_id = canonical_uuid(event_id)
        operation = part("api").get("operation") or original.get("operation_name")
        if not operation:
            raise UnexpectedResponseError(f"OCSFApiActivity.api.operation: missing (event {event_id!r})")
        if not isinstance(operation, str):  # sent, but no name: say what came, not "missing"
            raise UnexpectedResponseError(
                f"OCSFApiActivity.api.operation: expected an operation name, got {type(operation).__name__} "
                f"(event {event_id!r})"
            )
        return cls(
            event_id=event_id,
            at=cls._time(f, original, event_id),
            operation=_shared(operation),
            succeeded=cls._succeeded(data, original),
            actor_user_id=_id(original.get("ls_user_id")) or _id(part("actor", "user").get("uid")),
            credential_id=_id(part("actor", "user").get("credential_uid")) or _id(original.get("api_key_id")),
            workspace_id=_id(original.get("workspace_id")),
            target_ids=tuple(
                canonical_uuid(uid) for r in data.get("resources") or [] if isinstance(r, dict)
                for uid in [r.get("uid")] if isinstance(uid, str)
            ),
            source_ip=_text(part("src_endpoint").get("ip")),
            http_method=_text(part("http_request").get("http_method")),
            path=_text(part("http_request", "url").get("path")),
            status_code=_int(part("http_response").get("code")),
            detail=json.dumps(data, sort_keys=True, separators=(",", ":")),
        )

    @staticmethod
    def _time(f: _Fields, original: dict, event_id: str) -> datetime:
        value = f.data.get("time")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return _epoch_to_datetime(value)
            except (ValueError, OverflowError, OSError):  # NaN, or no moment the platform can hold
                raise UnexpectedResponseError(
                    f"OCSFApiActivity.time: {value!r} is no moment (event {event_id!r})"
                ) from None
        request_time = original.get("request_time")
        if isinstance(request_time, str) and request_time:
            return parse_timestamp(request_time, "OCSFApiActivity.unmapped.original_audit_log.request_time")
        raise UnexpectedResponseError(f"OCSFApiActivity.time: missing (event {event_id!r})")

    @staticmethod
    def _succeeded(data: dict, original: dict) -> bool | None:
        value = original.get("operation_succeeded")
        if isinstance(value, bool):
            return value
        return {"Success": True, "Failure": False}.get(data.get("status"))  # type: ignore[arg-type]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _id(value: Any) -> str | None:
    text = _text(value)
    return None if text is None else canonical_uuid(text)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

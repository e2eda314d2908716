"""Which sections of the access picture (DESIGN.md section 9) an org and a key should read, and
why not the others: a pure function of the org info (``config.can_use_*`` and the key's own
``permissions``) and the membership route the sync used.

    plan = plan_sections(client.organization_info_once(), membership_route="enriched_members")
    plan.read          # ("access_policies", "audit_events", ...)
    plan.skipped       # {"scim_tokens": "not in plan: ..."}: sync_runs.skipped_sections

The rules (``langsmith-api.md``, "Key permissions and plan limits"):

- The plan: ABAC (``can_use_abac``), audit logs (``can_use_audit_logs``), SAML SSO
  (``can_use_saml_sso``, which SSO settings, SCIM tokens and SCIM groups need: SCIM requires
  SAML SSO) are Enterprise features. A flag that is false rules its sections out; a flag the
  answer leaves out decides nothing (the section is read, and a refusal then fails the run).
- The key: every section needs ``organization:read``; the audit log ``organization:manage``
  (Organization Admin or Operator); the personal access token listing is refused to
  Organization Viewers, taken here as a key whose permissions are all ``...:read``. A key
  whose permissions the answer leaves out (or sends as the schema's default, an empty list) is
  not ruled out. Workspace service keys and resource tags are read per workspace with the
  key's role there, which the org info does not tell: never ruled out by the key.
- Resource tags decide access only through access policies: without ABAC they are not read
  (and the inventory skips them too when the org has no access policy with a condition).
- SCIM groups come only with the enriched members route: when the sync read members
  workspace by workspace, ``scim_groups`` is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langsmith_access.langsmith.access_records import OrganizationInfo

SECTIONS = (
    "access_policies",
    "resource_tags",
    "audit_events",
    "service_keys",
    "personal_access_tokens",
    "workspace_service_keys",
    "scim_tokens",
    "service_accounts",
    "sso_settings",
    "scim_groups",
)
ENRICHED_MEMBERS_ROUTE = "enriched_members"


@dataclass(frozen=True)
class _Rule:
    what: str  # the section in words, for reasons
    flag: str | None = None  # the config flag the plan needs
    feature: str = ""  # what the plan lacks, in words
    permissions: tuple[str, ...] = ("organization:read",)  # any one of them
    org_scoped: bool = True  # read with the key's organization permissions
    not_for_read_only_keys: bool = False


RULES: dict[str, _Rule] = {
    "access_policies": _Rule(
        "access policies", "can_use_abac", "access policies (ABAC) are an Enterprise feature"
    ),
    # Tags decide access only through access policies: read per workspace (``workspaces:read``
    # there), where the plan has ABAC.
    "resource_tags": _Rule(
        "resource tags (what access policies match)", "can_use_abac",
        "access policies (ABAC), the only way tags decide access, are an Enterprise feature", org_scoped=False,
    ),
    "audit_events": _Rule(
        "audit events", "can_use_audit_logs", "audit logs are an Enterprise feature",
        permissions=("organization:manage",),
    ),
    "service_keys": _Rule("service keys"),
    "personal_access_tokens": _Rule("personal access tokens", not_for_read_only_keys=True),
    "workspace_service_keys": _Rule("workspace service keys", org_scoped=False),
    "scim_tokens": _Rule("SCIM tokens", "can_use_saml_sso", "SCIM needs SAML SSO, an Enterprise feature"),
    "service_accounts": _Rule("service accounts"),
    "sso_settings": _Rule("SSO settings", "can_use_saml_sso", "SAML SSO is an Enterprise feature"),
    "scim_groups": _Rule("SCIM groups", "can_use_saml_sso", "SCIM needs SAML SSO, an Enterprise feature"),
}


@dataclass(frozen=True)
class SectionPlan:
    """The sections to read, in ``SECTIONS`` order, and for each one not read, why."""

    read: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)

    def should_read(self, section: str) -> bool:
        if section not in RULES:
            raise ValueError(f"unknown section {section!r}; sections: {', '.join(SECTIONS)}")
        return section in self.read

    def skipped_sections_json(self) -> str:
        """``sync_runs.skipped_sections``: JSON text ``{"<section>": "<reason>"}``."""
        return json.dumps(self.skipped, sort_keys=True)


def plan_sections(
    org_info: OrganizationInfo | Mapping[str, Any] | None,
    *,
    membership_route: str | None = None,
    membership_route_reason: str | None = None,
) -> SectionPlan:
    """Which sections to read for this org info (``GET /api/v1/orgs/current/info``, raw or
    parsed; None: nothing known, read everything) and why each other one is skipped.

    ``membership_route``: the route the sync read members by (``enriched_members`` or
    ``workspace_members``; None: not decided yet, SCIM groups are not ruled out by it);
    ``membership_route_reason`` is added to the reason when it rules SCIM groups out.
    """
    info = _as_info(org_info)
    read, skipped = [], {}
    for section in SECTIONS:
        reason = skip_reason(section, info)
        if reason is None and section == "scim_groups" and membership_route not in (None, ENRICHED_MEMBERS_ROUTE):
            why = f" ({membership_route_reason})" if membership_route_reason else ""
            reason = (
                f"membership route: SCIM groups come only with the enriched members route, and "
                f"this sync read members by the {membership_route} route{why}"
            )
        if reason is None:
            read.append(section)
        else:
            skipped[section] = reason
    return SectionPlan(tuple(read), skipped)


def skip_reason(section: str, org_info: OrganizationInfo | Mapping[str, Any] | None) -> str | None:
    """Why the plan or the key rules ``section`` out, or None when they do not."""
    rule = RULES.get(section)
    if rule is None:
        raise ValueError(f"unknown section {section!r}; sections: {', '.join(SECTIONS)}")
    info = _as_info(org_info)
    if info is None:
        return None
    if rule.flag is not None and info.flag(rule.flag) is False:
        return f"not in plan: config.{rule.flag} is false ({rule.feature}), so there are no {rule.what} to read"
    permissions = info.permissions
    # An empty list is the schema's default (``permissions: []``), not a key's role: every org
    # role has organization:read, which the org info answer itself needs. Not said, like None.
    if not permissions or not rule.org_scoped:
        return None
    if not any(p in permissions for p in rule.permissions):
        needs = " or ".join(rule.permissions)
        return f"key permission: the API key's organization role lacks {needs}, which reading {rule.what} needs"
    if rule.not_for_read_only_keys and all(p.endswith(":read") for p in permissions):
        return (
            f"key permission: the API key's organization role is read-only (Organization Viewer), "
            f"and LangSmith refuses it the listing of {rule.what}"
        )
    return None


def _as_info(org_info: OrganizationInfo | Mapping[str, Any] | None) -> OrganizationInfo | None:
    if org_info is None or isinstance(org_info, OrganizationInfo):
        return org_info
    return OrganizationInfo.from_api(dict(org_info))

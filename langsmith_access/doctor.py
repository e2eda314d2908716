"""The connection doctor: "will this work, and if not, what do I fix?" (DESIGN.md section 8).

Nine checks, in order, with read-only calls only; each ends ``ok``, ``warn``, ``fail`` or
``skip`` (not run because an earlier check it needs failed), with a detail and, for warn and
fail, a one-line fix. Plain Python: the CLI (``langsmith-access doctor``) and the op job
``check_langsmith_connection`` both call ``run_checks``. The API key is never shown.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from langsmith_access.langsmith import (
    LangSmithClient,
    LangSmithError,
    RouteNotAvailableError,
    TransientError,
)
from langsmith_access.langsmith.client import (
    ANONYMITY_RESTRICTED_HEADER,
    LISTS_ALL_WORKSPACES_HEADER,
    ORGANIZATION_INFO_PATH,
)
from langsmith_access.langsmith.refusals import workspace_rbac
from langsmith_access.settings import DEFAULT_ENDPOINT, Settings, SettingsError

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
CHECK_NAMES = (
    "configuration",
    "endpoint",
    "authentication",
    "organization",
    "read_members",
    "read_all_workspaces",
    "read_roles",
    "manage_workspace_members",
    "workspace_rbac",
)
MANAGE_MEMBERS = "workspaces:manage-members"
ORG_MANAGE = "organization:manage"
ENDPOINT_FIX = (
    f"set LANGSMITH_ENDPOINT to your LangSmith API: {DEFAULT_ENDPOINT} (US), "
    "https://eu.api.smith.langchain.com (EU), or https://<your-host>/api/v1 (self-hosted)"
)
KEY_FIX = (
    "create an organization-scoped service key (Settings > API Keys > Service Keys, "
    "organization scope, Organization Admin role) and set LANGSMITH_API_KEY to it"
)
# A doctor answers promptly: one retry at most, short timeouts.
DOCTOR_MAX_RETRIES = 1
DOCTOR_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str | None = None

    def lines(self) -> list[str]:
        out = [f"{self.status} {self.name}: {self.detail}"]
        if self.fix and self.status in (WARN, FAIL):
            out.append(f"  fix: {self.fix}")
        return out


@dataclass(frozen=True)
class Diagnosis:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.status != FAIL for check in self.checks)

    def text(self) -> str:
        return "\n".join(line for check in self.checks for line in check.lines())

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def run_checks(
    environ: Mapping[str, str] | None = None,
    *,
    settings: Settings | None = None,
    client_factory: Callable[..., LangSmithClient] = LangSmithClient,
) -> Diagnosis:
    """Run the nine checks against the LangSmith that ``settings`` (one org's) or else
    ``environ`` (default: the process environment) configures."""
    doctor = _Doctor()
    try:
        settings = settings if settings is not None else Settings.from_env(environ)
        client_settings = replace(
            settings.client(),
            max_retries=DOCTOR_MAX_RETRIES,
            read_timeout_seconds=min(settings.read_timeout_seconds, DOCTOR_TIMEOUT_SECONDS),
        )
    except SettingsError as error:
        return configuration_failure(error)
    doctor.add(
        "configuration",
        OK,
        f"service key set (not shown), organization {client_settings.organization_id}, "
        f"endpoint {client_settings.endpoint}",
    )
    with client_factory(client_settings) as client:
        doctor.run(client)
    return doctor.finish()


def configuration_failure(error: SettingsError) -> Diagnosis:
    """The diagnosis of settings that cannot be used (a bad orgs file too): the configuration
    check fails with the message, and every other check is skipped."""
    doctor = _Doctor()
    doctor.add("configuration", FAIL, str(error), _configuration_fix(str(error)))
    return doctor.finish()


class _Doctor:
    def __init__(self) -> None:
        self.checks: list[Check] = []
        self.org_info: dict[str, Any] | None = None
        self.probe_status: int | None = None
        self.probe_detail = ""

    def add(self, name: str, status: str, detail: str, fix: str | None = None) -> None:
        self.checks.append(Check(name, status, detail, fix))

    def finish(self) -> Diagnosis:
        done = {check.name for check in self.checks}
        failed = next((c.name for c in self.checks if c.status == FAIL), None)
        for name in CHECK_NAMES:
            if name not in done:
                self.add(name, SKIP, f"not run: {failed} failed" if failed else "not run")
        order = {name: index for index, name in enumerate(CHECK_NAMES)}
        return Diagnosis(sorted(self.checks, key=lambda c: order[c.name]))

    # ------------------------------------------------------------------ the checks

    def run(self, client: LangSmithClient) -> None:
        if not self.endpoint_and_key(client):
            return
        if not self.organization(client):
            self.read_members(client)  # shows what the key is refused, for the record
            return
        if self.read_members(client):
            self.read_all_workspaces(client)
        self.read_roles(client)
        self.manage_workspace_members(client)
        self.workspace_rbac()

    def endpoint_and_key(self, client: LangSmithClient) -> bool:
        """``endpoint`` and ``authentication`` from one GET of the org info: any JSON answer,
        a 401 included, proves a LangSmith API."""
        try:
            probe = client.probe(ORGANIZATION_INFO_PATH)
        except TransientError as error:
            self.add("endpoint", FAIL, f"cannot reach {client.endpoint}: {error}", ENDPOINT_FIX)
            return False
        if not probe.is_json:
            self.add(
                "endpoint",
                FAIL,
                f"not a LangSmith API: GET {ORGANIZATION_INFO_PATH} at {client.endpoint} answered "
                f"{probe.status_code} with {probe.content_type or 'no content type'}, not JSON",
                ENDPOINT_FIX,
            )
            return False
        self.add("endpoint", OK, f"{client.endpoint} answers as a LangSmith API")
        if probe.status_code == 401:
            self.add(
                "authentication",
                FAIL,
                f"LangSmith refused the API key (401: {probe.detail})",
                "check the key is a current, unrevoked service key of this LangSmith "
                "(region or self-hosted install); " + KEY_FIX,
            )
            return False
        if probe.status_code >= 500 or probe.status_code == 429:
            self.add(
                "authentication",
                FAIL,
                f"LangSmith answered {probe.status_code} ({probe.detail}): could not tell",
                "run the doctor again in a minute; if it persists, check LangSmith's status",
            )
            return False
        self.add("authentication", OK, "the API key is accepted")
        self.probe_status = probe.status_code
        self.probe_detail = probe.detail
        self.org_info = probe.body if probe.status_code == 200 and isinstance(probe.body, dict) else None
        return True

    def organization(self, client: LangSmithClient) -> bool:
        if self.org_info is None:
            self.add(
                "organization",
                FAIL,
                f"organization routes refuse the key ({self.probe_status}: {self.probe_detail}): "
                "it is a workspace-scoped key, or LANGSMITH_ORGANIZATION_ID is not its "
                "organization",
                "use an organization-scoped service key of organization "
                f"{client.organization_id} (or set LANGSMITH_ORGANIZATION_ID to the key's "
                "organization; check the region too)",
            )
            return False
        found = str(self.org_info.get("id") or "")
        if found and found.lower() != client.organization_id:
            self.add(
                "organization",
                FAIL,
                f"the key answers for organization {found}, not LANGSMITH_ORGANIZATION_ID "
                f"{client.organization_id}",
                "set LANGSMITH_ORGANIZATION_ID to the key's organization, or use a key of yours",
            )
            return False
        name = self.org_info.get("display_name") or "(no name)"
        tier = self.org_info.get("tier")
        self.add(
            "organization",
            OK,
            f"{name} ({client.organization_id})" + (f", plan {tier}" if tier else ""),
        )
        return True

    def read_members(self, client: LangSmithClient) -> bool:
        try:
            page = client.first_page_of_org_members()
        except LangSmithError as error:
            self.add(
                "read_members",
                FAIL,
                f"cannot list organization members: {error}",
                "give the key a role with organization:read (any organization role), on an "
                "organization-scoped service key",
            )
            return False
        total = page.reported_total
        self.add(
            "read_members",
            OK,
            f"organization members can be listed ({total} active)"
            if total is not None
            else "organization members can be listed",
        )
        return True

    def read_all_workspaces(self, client: LangSmithClient) -> None:
        slow_fix = (
            "give the key the Organization Admin role so one listing covers every workspace; "
            "without it the sync reads each workspace: complete, slower"
        )
        try:
            page = client.list_enriched_members(first_page_only=True)
        except RouteNotAvailableError as error:
            self.add(
                "read_all_workspaces",
                WARN,
                f"{error.reason}; the sync reads each workspace instead: complete, slower",
                "nothing is wrong; a newer LangSmith (self-hosted: a newer chart) has the "
                "faster route",
            )
            return
        except LangSmithError as error:
            self.add(
                "read_all_workspaces",
                WARN,
                f"the enriched members route failed ({error}); the sync reads each workspace",
                slow_fix,
            )
            return
        restricted = page.headers.get(ANONYMITY_RESTRICTED_HEADER, "").lower() == "true"
        note = (
            "; answers are anonymity-restricted (emails and names may be withheld: the sync "
            "keeps the values it knew)"
            if restricted
            else ""
        )
        if page.headers.get(LISTS_ALL_WORKSPACES_HEADER, "true").lower() == "false":
            self.add(
                "read_all_workspaces",
                WARN,
                f"the key lacks {ORG_MANAGE}: one listing does not show every workspace "
                f"({LISTS_ALL_WORKSPACES_HEADER}: false), so the sync reads each workspace"
                + note,
                slow_fix,
            )
            return
        self.add("read_all_workspaces", OK, "one listing shows every workspace's members" + note)

    def read_roles(self, client: LangSmithClient) -> None:
        try:
            roles = client.list_roles()
        except LangSmithError as error:
            self.add(
                "read_roles",
                FAIL,
                f"cannot list roles: {error}",
                "give the key a role with organization:read (any organization role)",
            )
            return
        workspace_roles = sum(1 for role in roles if role.access_scope == "workspace")
        self.add("read_roles", OK, f"{len(roles)} roles ({workspace_roles} workspace roles)")

    def manage_workspace_members(self, client: LangSmithClient) -> None:
        fix = (
            "give the service key the Workspace Admin role in every workspace (the default for "
            "an organization-scoped key) or the Organization Admin role"
        )
        permissions = (self.org_info or {}).get("permissions") or []
        if ORG_MANAGE in permissions:
            self.add(
                "manage_workspace_members",
                OK,
                f"the key has {ORG_MANAGE} (Organization Admin: Admin in every workspace)",
            )
            return
        try:
            workspaces = [
                w for w in client.list_workspaces(include_deleted=False) if not w.is_personal
            ]
        except LangSmithError as error:
            self.add(
                "manage_workspace_members",
                FAIL,
                f"cannot list workspaces: {error}",
                "give the key a role with organization:read",
            )
            return
        if not workspaces:
            self.add("manage_workspace_members", OK, "the organization has no shared workspace yet")
            return
        unknown = [w for w in workspaces if w.permissions is None]
        allowed = [w for w in workspaces if w.permissions and MANAGE_MEMBERS in w.permissions]
        if len(allowed) == len(workspaces):
            self.add(
                "manage_workspace_members",
                OK,
                f"the key has {MANAGE_MEMBERS} in all {len(workspaces)} workspaces",
            )
        elif unknown and not allowed:
            self.add(
                "manage_workspace_members",
                WARN,
                "cannot tell: LangSmith does not say the key's permissions in its workspaces",
                fix,
            )
        elif allowed:
            missing = [w.display_name for w in workspaces if w not in allowed]
            self.add(
                "manage_workspace_members",
                WARN,
                f"the key has {MANAGE_MEMBERS} in {len(allowed)} of {len(workspaces)} "
                f"workspaces; not in: {', '.join(missing[:5])}"
                + (" ..." if len(missing) > 5 else ""),
                fix,
            )
        else:
            self.add(
                "manage_workspace_members",
                FAIL,
                f"the key has {MANAGE_MEMBERS} in none of the {len(workspaces)} workspaces: "
                "provisioning cannot change any membership",
                fix,
            )

    def workspace_rbac(self) -> None:
        rbac = workspace_rbac(self.org_info)
        tier = (self.org_info or {}).get("tier")
        if rbac is True:
            self.add("workspace_rbac", OK, "workspace roles other than Admin can be granted")
        elif rbac is False:
            self.add(
                "workspace_rbac",
                FAIL,
                f"this organization's plan{f' ({tier})' if tier else ''} has no workspace RBAC "
                "(config.can_use_rbac is false): only the Admin workspace role can be granted; "
                "requests for other workspace roles will fail",
                "request only the Admin role, or move the organization to the Enterprise plan",
            )
        else:
            self.add(
                "workspace_rbac",
                WARN,
                "unknown: the organization info does not say config.can_use_rbac",
                "if requests for non-Admin roles fail with 'not in plan', the plan lacks "
                "workspace RBAC (Enterprise only)",
            )


def _configuration_fix(message: str) -> str:
    if "LANGSMITH_ENDPOINT" in message:
        return ENDPOINT_FIX
    if "LANGSMITH_ORGANIZATION_ID" in message:
        return "set LANGSMITH_ORGANIZATION_ID to your organization's UUID (Settings > Organization)"
    if "LANGSMITH_API_KEY" in message:
        return KEY_FIX
    return "fix the variable named above"

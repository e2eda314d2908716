"""The rest of a generated org's access picture (DESIGN.md section 9): login methods and SCIM
groups on members, org settings, SSO, service accounts, credentials of every kind, access
policies, and an audit log with a history.

``add_access_picture(state, seed=..., plan=..., now=...)`` runs after the members and workspaces
exist. It draws from a random generator of its own (seeded by ``seed``), so the records
generate_org made before it keep their ids, and the same arguments give the same picture.
``now`` (epoch seconds) is when the org is "seen": logins, key use, expiries and the audit
history are placed around it, so an org generated with today's date has recent and stale
activity as a real one does.

Mixes, chosen to exercise the reports (``report_unused_access``,
``report_credential_hygiene``):

- Members (Enterprise): about 45% pushed by SCIM (``supabase:sso`` + ``scim``), 20% added at
  their first SAML login (``saml:jit``), the oldest Organization Admin set up at ``bootstrap``,
  the rest signed up by email or Google (no provisioning method); some have a second method.
  Plus plan: no SAML, no SCIM. SCIM members carry SCIM groups named by LangSmith's rule, most
  naming a workspace and role they hold (a few name a role they no longer hold).
- SAML SSO (Enterprise): two identity providers, the one members sign in with (metadata by
  URL) and one being set up (metadata pasted as XML, attribute mapping not loaded).
- Credentials: some never used, some without expiry, some revoked, some expired (each at least
  once when there are four keys or more).
- Audit log: about 12% of members never logged in, about 20% not in the last 90 days.
"""

from __future__ import annotations

import random

from langsmith_access.sandbox.access_records import (
    PERSONAL_ACCESS_TOKEN,
    SERVICE_KEY,
    WORKSPACE_SERVICE_KEY,
    AccessPolicy,
    ApiKey,
    AuditActor,
    AuditEvent,
    LoginMethod,
    OrgSettings,
    PolicyCondition,
    PolicyConditionGroup,
    ScimGroup,
    ScimToken,
    ServiceAccount,
    SsoProvider,
)
from langsmith_access.sandbox.audit_log import AUDIT_RETENTION_DAYS
from langsmith_access.sandbox.org_state import (
    WORKSPACE_SCOPE,
    OrgMember,
    OrgState,
    format_timestamp,
    parse_timestamp,
    random_uuid,
)

DAY = 86400
# When a generated org is "seen" unless told otherwise: two months after its newest member.
ACTIVITY_REFERENCE = 1788220800  # 2026-09-01T00:00:00Z
# After every generated member (created before 2026-07-01) and membership (up to 30 days after
# its member joined): an org seen earlier would hold grants made in its future.
EARLIEST_ACTIVITY_REFERENCE = 1782864000 + 31 * DAY  # 2026-08-01
SCIM_GROUP_PREFIX = "LS"
SCIM_GROUP_SEPARATORS = (":", "-", "_", " ", "&")  # what LangSmith accepts
PLANS = ("enterprise", "plus")

SERVICE_ACCOUNT_NAMES = [
    "ci-pipeline", "eval-runner", "prod-tracer", "data-export", "alerting-bot",
    "batch-annotator", "dashboard-sync", "release-bot",
]  # fmt: skip
KEY_DESCRIPTIONS = [
    "CI tracing", "Nightly evals", "Production tracer", "Notebook", "Backfill job",
    "Dashboard", "Local development", "Annotation import", "Migration script",
]  # fmt: skip
EXPIRY_DAYS = (30, 90, 180, 365, 730)


def add_access_picture(
    state: OrgState,
    *,
    seed: int,
    plan: str = "enterprise",
    now: int | None = None,
    scim_group_name_separator: str = ":",
) -> None:
    """Give ``state`` (members, roles and workspaces already in place) the rest of the picture."""
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {', '.join(PLANS)}, got {plan!r}")
    if scim_group_name_separator not in SCIM_GROUP_SEPARATORS:
        raise ValueError(
            f"scim_group_name_separator must be one of {SCIM_GROUP_SEPARATORS!r}, "
            f"got {scim_group_name_separator!r}"
        )
    now = ACTIVITY_REFERENCE if now is None else now
    if now < EARLIEST_ACTIVITY_REFERENCE:
        raise ValueError(
            "now must be after every generated member and membership "
            f"({format_timestamp(EARLIEST_ACTIVITY_REFERENCE)})"
        )
    picture = _Picture(state, random.Random(f"access:{seed}"), plan == "enterprise", now)
    picture.settings(scim_group_name_separator)
    picture.sso(random.Random(f"sso:{seed}"))
    picture.member_origins()
    picture.service_accounts_and_keys()
    picture.personal_access_tokens()
    picture.scim_tokens()
    picture.access_policies()
    picture.tags(random.Random(f"tags:{seed}"))
    picture.lifecycle_mix()
    picture.audit_history()


class _Picture:
    """One generation run: the state, its random generator and the shared facts."""

    def __init__(self, state: OrgState, rng: random.Random, enterprise: bool, now: int) -> None:
        self.state = state
        self.rng = rng
        self.enterprise = enterprise
        self.now = now
        self.shared = state.shared_workspaces()
        self.members = sorted(state.members.values(), key=lambda m: (m.created_at, m.id))
        self.role = {r.name: r for r in state.roles.values() if not r.is_custom}
        org_admin = self.role["ORGANIZATION_ADMIN"].id
        admins = [m for m in self.members if m.org_role_id == org_admin]
        self.founder = admins[0] if admins else (self.members[0] if self.members else None)
        self.saml_provider_id: str | None = None
        self.keys: list[ApiKey] = []

    # ------------------------------------------------------------------ helpers

    def uuid(self) -> str:
        """``random_uuid(self.rng)``, without building a ``uuid.UUID`` (~100,000 per large org)."""
        bits = self.rng.getrandbits(128)
        bits = (bits & ~(0xF000 << 64) & ~(0xC000 << 48)) | (4 << 76) | (0x8000 << 48)
        text = f"{bits:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def secret(self, prefix: str) -> str:
        bits = self.rng.getrandbits(168)
        return f"{prefix}{bits >> 40:032x}_{bits & (2**40 - 1):010x}"

    def between(self, start: int, end: int) -> int:
        return start if end <= start else self.rng.randrange(start, end)

    def actor(self, member: OrgMember | None) -> AuditActor:
        if member is None:
            return AuditActor()
        return AuditActor(ls_user_id=member.ls_user_id, user_id=member.user_id)

    # ------------------------------------------------------------------ settings and SSO

    def settings(self, separator: str) -> None:
        if not self.enterprise:
            # Without Enterprise: no SSO, no expiry caps (can_set_api_key_max_expiry is false).
            self.state.settings = OrgSettings(scim_group_name_separator=separator)
            return
        self.state.settings = OrgSettings(
            jit_provisioning_enabled=self.rng.random() < 0.5,
            sso_login_slug=f"sandbox-{self.state.organization_id[:8]}",
            default_sso_provision=True,
            pat_creation_disabled=False,
            public_sharing_disabled=self.rng.random() < 0.5,
            workspace_admin_can_invite_to_org=self.rng.random() < 0.3,
            max_api_key_expiry_days=self.rng.choice((None, 365)),
            max_pat_expiry_days=self.rng.choice((90, 180)),
            max_service_key_expiry_days=self.rng.choice((None, 365)),
            security_contact="security@example.com",
            scim_group_name_separator=separator,
        )

    def sso(self, rng: random.Random) -> None:
        """The identity provider members sign in with (metadata by URL), and a second one being
        set up: its metadata pasted as XML, its attribute mapping not loaded. The second draws
        from ``rng``, so the first and everything after keep the ids they had before it."""
        if not self.enterprise:
            return
        self.saml_provider_id = self.uuid()
        self.state.put_sso_provider(
            SsoProvider(
                id=self.uuid(),
                provider_id=self.saml_provider_id,
                default_workspace_role_id=self.role["WORKSPACE_VIEWER"].id,
                default_workspace_ids=[ws.id for ws in self.shared[:1]],
                metadata_url="https://idp.example.com/app/langsmith/sso/saml/metadata",
                sso_groups_enabled=self.rng.random() < 0.5,
                attribute_mapping_keys={"groups": True},
            )
        )
        entity = f"https://idp2.example.com/{random_uuid(rng)}"
        certificate = f"MIIC{rng.getrandbits(384):096x}"
        self.state.put_sso_provider(
            SsoProvider(
                id=random_uuid(rng),
                provider_id=random_uuid(rng),
                default_workspace_role_id=self.role["WORKSPACE_VIEWER"].id,
                default_workspace_ids=[ws.id for ws in self.shared[-1:]],
                metadata_xml=(
                    '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
                    f'entityID="{entity}"><md:IDPSSODescriptor><md:KeyDescriptor use="signing">'
                    '<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data>'
                    f"<ds:X509Certificate>{certificate}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>"
                    "</md:KeyDescriptor></md:IDPSSODescriptor></md:EntityDescriptor>"
                ),
                sso_groups_enabled=rng.random() < 0.5,
                sso_groups_claim_field="memberOf",
                attribute_mapping_keys={"memberOf": True},
                attribute_mapping_load_error="attribute 'memberOf' not found in the identity provider's assertion",
            )
        )

    # ------------------------------------------------------------------ members

    def member_origins(self) -> None:
        for member in self.members:
            methods = self._login_methods(member)
            member.linked_login_methods = methods
            if any(m.provisioning_method == "scim" for m in methods):
                member.scim_groups = self._scim_groups(member)

    def _login_methods(self, member: OrgMember) -> list[LoginMethod]:
        def method(provider: str, provisioning: str | None) -> LoginMethod:
            sso = provider == "supabase:sso"
            return LoginMethod(
                id=self.uuid(),
                provider=provider,
                provisioning_method=provisioning,
                created_at=member.created_at,
                provider_user_id=self.uuid() if sso else None,
                saml_provider_id=self.saml_provider_id if sso else None,
                email_confirmed_at=member.created_at if provider == "email" else None,
                # Google and GitHub logins: a GitHub user name, made of the email's (no draw,
                # so the rest of the org is what the seed always gave).
                username=member.email.split("@")[0] if provider == "supabase:non-sso" else None,
            )

        if member is self.founder:
            return [method("email", "bootstrap")]
        draw = self.rng.random()
        if self.enterprise and draw < 0.45:
            methods = [method("supabase:sso", "scim")]
        elif self.enterprise and draw < 0.65:
            methods = [method("supabase:sso", "saml:jit")]
        else:
            return [method("email" if self.rng.random() < 0.6 else "supabase:non-sso", None)]
        if self.rng.random() < 0.12:
            # Also signed up by email before SSO came.
            methods.append(method("email", None))
        return methods

    def _scim_groups(self, member: OrgMember) -> list[ScimGroup]:
        state, separator = self.state, self.state.settings.scim_group_name_separator
        org_role = state.roles[member.org_role_id]
        if org_role.name == "ORGANIZATION_ADMIN":
            suffix = "Organization Admins" if self.rng.random() < 0.5 else "Organization Admin"
            return [ScimGroup(f"{SCIM_GROUP_PREFIX}{separator}{suffix}", member.created_at)]
        groups = []
        workspace_roles = state.roles_by_scope(WORKSPACE_SCOPE)
        for membership in sorted(state.memberships_of(member.ls_user_id), key=lambda m: m.workspace_id):
            workspace = state.workspaces[membership.workspace_id]
            if not workspace.is_shared or self.rng.random() >= 0.85:
                continue  # added by hand, not by a group
            role = state.roles[membership.role_id]
            if self.rng.random() < 0.05:
                role = self.rng.choice(workspace_roles)  # a group that names another role
            name = separator.join(
                (org_role.display_name, workspace.display_name, role.display_name)
            )
            groups.append(ScimGroup(f"{SCIM_GROUP_PREFIX}{separator}{name}", membership.created_at))
        return groups

    # ------------------------------------------------------------------ credentials

    def _key_created_at(self, not_before: str | None = None) -> int:
        start = parse_timestamp(not_before) if not_before else 1735689600  # 2025-01-01
        return self.between(start, self.now - DAY)

    def _workspace_role(self) -> str:
        if not self.enterprise:
            return self.role["WORKSPACE_ADMIN"].id  # a chosen workspace role is Enterprise only
        name = self.rng.choices(
            ("WORKSPACE_ADMIN", "WORKSPACE_VIEWER", "WORKSPACE_USER"), (0.5, 0.3, 0.2)
        )[0]
        return self.role[name].id

    def _add_key(self, kind: str, **fields) -> ApiKey:
        prefix = "lsv2_pt_" if kind == PERSONAL_ACCESS_TOKEN else "lsv2_sk_"
        key = ApiKey(id=self.uuid(), kind=kind, secret=self.secret(prefix), **fields)
        self.keys.append(key)
        return self.state.put_api_key(key)

    def service_accounts_and_keys(self) -> None:
        state = self.state
        creator = self.founder.ls_user_id if self.founder else None
        count = min(len(SERVICE_ACCOUNT_NAMES), 2 + len(self.members) // 200)
        for name in SERVICE_ACCOUNT_NAMES[:count]:
            created = self._key_created_at()
            default = self.rng.choice(self.shared).id if self.shared and self.rng.random() < 0.6 else None
            account = state.put_service_account(
                ServiceAccount(
                    id=self.uuid(), name=name, created_at=format_timestamp(created),
                    updated_at=format_timestamp(created), organization_identity_id=self.uuid(),
                    default_workspace_id=default,
                )
            )
            for _ in range(self.rng.randint(1, 2)):
                reach = None
                if self.shared and self.rng.random() < 0.4:
                    sample = self.rng.sample(self.shared, min(len(self.shared), self.rng.randint(1, 3)))
                    reach = [ws.id for ws in sample]
                org_role = "ORGANIZATION_ADMIN" if self.rng.random() < 0.2 else "ORGANIZATION_USER"
                self._add_key(
                    SERVICE_KEY,
                    description=f"{name}: {self.rng.choice(KEY_DESCRIPTIONS)}",
                    created_at=format_timestamp(self.between(created, self.now - DAY)),
                    workspace_ids=reach,
                    default_workspace_id=reach[0] if reach else default,
                    role_id=self._workspace_role(),
                    org_role_id=self.role[org_role].id,
                    service_account_id=account.id,
                    created_by=creator,
                )
        for index, workspace in enumerate(self.shared):
            count = self.rng.choices((0, 1, 2), (0.5, 0.35, 0.15))[0]
            for _ in range(max(count, 1) if index == 0 else count):  # at least one in the org
                self._add_key(
                    WORKSPACE_SERVICE_KEY,
                    description=f"{workspace.display_name}: {self.rng.choice(KEY_DESCRIPTIONS)}",
                    created_at=format_timestamp(self._key_created_at(workspace.created_at)),
                    workspace_ids=[workspace.id],
                    default_workspace_id=workspace.id,
                    role_id=self._workspace_role(),
                    created_by=creator,
                )

    def personal_access_tokens(self) -> None:
        for member in self.members:
            draw = self.rng.random()
            count = 2 if draw < 0.08 else 1 if draw < 0.33 else 0
            memberships = [
                m for m in self.state.memberships_of(member.ls_user_id)
                if self.state.workspaces[m.workspace_id].is_shared
            ]
            for _ in range(count):
                default = self.rng.choice(memberships).workspace_id if memberships else None
                self._add_key(
                    PERSONAL_ACCESS_TOKEN,
                    description=self.rng.choice(KEY_DESCRIPTIONS),
                    created_at=format_timestamp(self._key_created_at(member.created_at)),
                    default_workspace_id=default,
                    owner_ls_user_id=member.ls_user_id,
                    created_by=member.ls_user_id,
                )

    def scim_tokens(self) -> None:
        if not self.enterprise:
            return
        for description in ("Okta provisioning", "Entra ID provisioning")[: self.rng.randint(1, 2)]:
            created = self._key_created_at()
            used = self.between(created, self.now)
            self.state.put_scim_token(
                ScimToken(
                    id=self.uuid(), token=f"lsv2_scim_{self.rng.getrandbits(192):048x}",
                    description=description, created_at=format_timestamp(created),
                    updated_at=format_timestamp(created), last_used_at=format_timestamp(used),
                )
            )

    def lifecycle_mix(self) -> None:
        """Use, expiry and revocation for every key: the first four of each org are one of each
        kind of trouble (never used, no expiry, revoked, expired), the rest drawn."""
        for index, key in enumerate(self.keys):
            created = parse_timestamp(key.created_at)
            trouble = index if index < 4 else None
            never_used = trouble == 0 or (trouble is None and self.rng.random() < 0.25)
            no_expiry = trouble == 1 or (trouble is None and self.rng.random() < 0.4)
            revoked = trouble == 2 or (trouble is None and self.rng.random() < 0.08)
            expired = trouble == 3
            if not never_used:
                key.last_used_at = format_timestamp(self.between(created, self.now))
            if expired:
                key.expires_at = format_timestamp(self.between(created + DAY, self.now))
            elif not no_expiry:
                key.expires_at = format_timestamp(created + self.rng.choice(EXPIRY_DAYS) * DAY)
            if revoked:
                key.revoked_at = format_timestamp(self.between(created + 1, self.now))
            # LangSmith refuses a revoked or expired key, so its last use comes before either
            # end (clamped, not redrawn: the draws that follow stay the same).
            ends = [end for end in (key.revoked_at, key.expires_at) if end is not None]
            if key.last_used_at is not None and ends:
                key.last_used_at = min(key.last_used_at, *ends)

    # ------------------------------------------------------------------ access policies

    def access_policies(self) -> None:
        if not self.enterprise:
            return
        state = self.state
        workspace_roles = state.roles_by_scope(WORKSPACE_SCOPE)
        by_name = {r.display_name: r for r in workspace_roles}
        editor, viewer = by_name["Editor"], by_name["Viewer"]
        custom = [r for r in workspace_roles if r.is_custom]

        def group(permission, resource_type, *conditions) -> PolicyConditionGroup:
            return PolicyConditionGroup(permission, resource_type, [PolicyCondition(*c) for c in conditions])

        policies = [
            ("Deny production prompts to viewers", "deny", [viewer.id],
             [group("prompts:read", "prompt", ("env", "equals", "production"))]),
            ("Editors may not delete tagged datasets", "deny", [editor.id],
             [group("datasets:delete", "dataset", ("retention", "equals_if_exists", "legal-hold")),
              group("datasets:update", "dataset", ("owner", "not_equals_ignore_case", "data-team"))]),
            ("Team projects", "allow", [c.id for c in custom[:1]] or [viewer.id],
             [group("projects:read", "project", ("team", "matches", "search-*"),
                    ("env", "not_equals", "production"))]),
            ("Unattached draft", "allow", [],
             [group("deployments:read", "deployment", ("stage", "equals", "staging"))]),
        ]
        for name, effect, role_ids, groups in policies:
            created = format_timestamp(self._key_created_at())
            state.put_access_policy(
                AccessPolicy(id=self.uuid(), name=name, description=f"{name}.", effect=effect,
                             role_ids=role_ids, condition_groups=groups, created_at=created,
                             updated_at=created)
            )

    # Tags the access policies' conditions name, put on resources of a few workspaces (tags are
    # per workspace; every plan has them).
    TAG_CHOICES = (
        ("env", ("production", "staging", "dev")),
        ("team", ("search-ranking", "search-infra", "growth")),
        ("retention", ("legal-hold", "standard")),
        ("owner", ("data-team", "Data-Team", "ml-platform")),
        ("stage", ("staging", "canary")),
    )
    TAGGED_RESOURCES = (("project", "traces"), ("dataset", "golden-set"), ("prompt", "router"),
                        ("deployment", "agent"), ("queue", "review"), ("evaluator", "judge"))
    TAGGED_WORKSPACES = 20  # at most: large orgs stay quick to generate

    def tags(self, rng: random.Random) -> None:
        """Its own random generator, so the rest of the org is the same with or without tags."""

        def uuid() -> str:
            return random_uuid(rng)

        for workspace in sorted(self.shared, key=lambda w: w.id)[: self.TAGGED_WORKSPACES]:
            for resource_type, stem in rng.sample(self.TAGGED_RESOURCES, rng.randint(1, 4)):
                resource_id, name = uuid(), f"{workspace.tenant_handle}-{stem}"
                for key, values in rng.sample(self.TAG_CHOICES, rng.randint(1, 3)):
                    latest = self.now - DAY
                    at = format_timestamp(rng.randint(min(parse_timestamp(workspace.created_at), latest), latest))
                    self.state.tag_resource(workspace.id, key, rng.choice(values), resource_type,
                                            resource_id, name, created_at=at, ids=uuid)

    # ------------------------------------------------------------------ the audit log

    def audit_history(self) -> None:
        """Logins of each member and the creation of what was made within retention."""
        state, now = self.state, self.now
        oldest = now - AUDIT_RETENTION_DAYS * DAY
        events: list[AuditEvent] = []

        def event(operation: str, at: int, actor: AuditActor, *, path: str, resources=(),
                  workspace_id=None, method="POST") -> None:
            if at < oldest or at > now:
                return
            events.append(
                AuditEvent(
                    id=self.uuid(), operation=operation, time_ms=at * 1000 + self.rng.randrange(1000),
                    actor=actor, workspace_id=workspace_id, resource_ids=tuple(resources),
                    http_method=method, path=path,
                )
            )

        for member in self.members:
            joined = parse_timestamp(member.created_at)
            draw = self.rng.random()
            if draw < 0.12:
                continue  # never logged in
            if draw < 0.32:
                last = self.between(max(joined, now - 300 * DAY), now - 91 * DAY)
            else:
                last = self.between(max(joined, now - 89 * DAY), now)
            actor = self.actor(member)
            event("login", last, actor, path="/api/v1/login", resources=[member.ls_user_id])
            for _ in range(self.rng.randint(0, 2)):
                event("login", self.between(joined, last), actor, path="/api/v1/login",
                      resources=[member.ls_user_id])

        founder = self.actor(self.founder)
        members_by_user = state.members
        for key in self.keys:
            operation, path = {
                SERVICE_KEY: ("create_service_key", "/api/v1/orgs/current/service-keys"),
                WORKSPACE_SERVICE_KEY: ("create_api_key", "/api/v1/api-key"),
                PERSONAL_ACCESS_TOKEN: ("create_personal_access_token",
                                        "/api/v1/orgs/current/personal-access-tokens"),
            }[key.kind]
            owner = members_by_user.get(key.owner_ls_user_id or "")
            workspace = key.workspace_ids[0] if key.kind == WORKSPACE_SERVICE_KEY and key.workspace_ids else None
            event(operation, parse_timestamp(key.created_at), self.actor(owner) if owner else founder,
                  path=path, resources=[key.id], workspace_id=workspace)
            if key.revoked_at:
                event(operation.replace("create_", "delete_"), parse_timestamp(key.revoked_at),
                      founder, path=f"{path}/{key.id}", resources=[key.id], workspace_id=workspace,
                      method="DELETE")
        for account in state.service_accounts.values():
            event("create_service_account", parse_timestamp(account.created_at), founder,
                  path="/api/v1/service-accounts", resources=[account.id])
        for policy in state.access_policies.values():
            event("create_access_policy", parse_timestamp(policy.created_at), founder,
                  path="/api/v1/platform/orgs/current/access-policies", resources=[policy.id])
        for token in state.scim_tokens.values():
            event("create_scim_token", parse_timestamp(token.created_at), founder,
                  path="/api/v1/platform/orgs/current/scim/tokens", resources=[token.id])
        # A sample of role changes, not one event per membership (large orgs have 100,000).
        oldest_text = format_timestamp(oldest)  # fixed-shape timestamps compare as strings
        recent = [
            (ws.id, m) for ws in self.shared for m in ws.memberships.values()
            if m.created_at >= oldest_text
        ]
        for workspace_id, membership in self.rng.sample(recent, min(len(recent), 50)):
            event("add_member_to_workspace", parse_timestamp(membership.created_at), founder,
                  path="/api/v1/workspaces/current/members", resources=[membership.id],
                  workspace_id=workspace_id)
        state.put_audit_events(events)

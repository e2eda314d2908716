"""A deterministic generator of LangSmith organizations for the sandbox server.

``generate_org(seed=42, members=50, workspaces=8)`` returns an ``OrgState`` with everything a
sync has to cope with: built-in and custom roles, shared workspaces (two of them with the same
display name), personal and deleted workspaces, members with unicode names and mixed-case
emails, disabled members, a few org admins, and pending org and workspace invites.

It also holds the rest of the access picture (access_generator.py): login methods and SCIM
groups, org settings, SSO, service accounts, credentials, access policies and an audit log,
as the plan (``enterprise`` or ``plus``) has them, with activity placed around ``now``. Workspace
RBAC is Enterprise only (``langsmith-api.md``, "Key permissions and plan limits"): a ``plus`` org
lists the built-in roles but has no custom roles, and everyone is Admin in their workspaces.

The same arguments always give the same org: every id and timestamp is drawn from seeded
random generators. 20,000 members in 1,000 workspaces take a couple of seconds.
"""

from __future__ import annotations

import random
import unicodedata

from langsmith_access.sandbox.access_generator import PLANS, add_access_picture
from langsmith_access.sandbox.org_state import (
    CUSTOM_ROLE_NAME,
    ORGANIZATION_SCOPE,
    WORKSPACE_SCOPE,
    OrgMember,
    OrgState,
    PendingOrgInvite,
    PendingWorkspaceInvite,
    Role,
    Workspace,
    WorkspaceMembership,
    format_timestamp,
    parse_timestamp,
    random_uuid,
)

__all__ = ["OrgState", "generate_org"]

# Generated timestamps fall in 2025-2026 (epoch seconds, UTC).
JAN_2025 = 1735689600
JUL_2025 = 1751328000
JAN_2026 = 1767225600
JUL_2026 = 1782864000
DAY = 86400

# (name, display_name, description, permissions) of the built-in roles.
BUILT_IN_ORG_ROLES = [
    (
        "ORGANIZATION_ADMIN",
        "Organization Admin",
        "Full access to the organization and every workspace.",
        [
            "organization:read",
            "organization:manage",
            "organization:pats:create",
            "workspaces:read",
            "workspaces:manage",
            "workspaces:manage-members",
        ],
    ),
    (
        "ORGANIZATION_OPERATOR",
        "Organization Operator",
        "Manages workspaces and members, not billing or SSO.",
        # organization:manage: langsmith-api.md's audit logs (Org Admin or Operator) and member
        # writes (an Operator cannot touch Org Admins).
        ["organization:read", "organization:manage", "workspaces:read", "workspaces:manage-members"],
    ),
    (
        "ORGANIZATION_USER",
        "Organization User",
        "Member of the organization.",
        ["organization:read", "organization:pats:create"],
    ),
    (
        "ORGANIZATION_VIEWER",
        "Organization Viewer",
        "Read-only access to the organization.",
        ["organization:read"],
    ),
]
BUILT_IN_WORKSPACE_ROLES = [
    (
        "WORKSPACE_ADMIN",
        "Admin",
        "Full access to a workspace.",
        [
            "workspaces:read",
            "workspaces:manage",
            "workspaces:manage-members",
            "projects:read",
            "projects:create",
            "projects:update",
            "projects:delete",
            "datasets:read",
            "datasets:create",
            "prompts:read",
            "prompts:create",
        ],
    ),
    (
        "WORKSPACE_USER",
        "Editor",
        "Reads and writes the resources of a workspace.",
        [
            "workspaces:read",
            "projects:read",
            "projects:create",
            "projects:update",
            "datasets:read",
            "datasets:create",
            "prompts:read",
            "prompts:create",
        ],
    ),
    (
        "WORKSPACE_VIEWER",
        "Viewer",
        "Read-only access to a workspace.",
        ["workspaces:read", "projects:read", "datasets:read", "prompts:read"],
    ),
]
CUSTOM_WORKSPACE_ROLES = [
    ("Deployment Auditor", "Reads deployments.", ["workspaces:read", "deployments:read"]),
    (
        "Prompt Engineer",
        "Edits prompts, reads everything else.",
        ["workspaces:read", "prompts:read", "prompts:create", "prompts:update", "projects:read"],
    ),
    (
        "Annotator",
        "Works through annotation queues.",
        [
            "workspaces:read",
            "annotation-queues:read",
            "annotation-queues:update",
            "feedback:create",
        ],
    ),
    (
        "Dataset Curator",
        "Maintains datasets.",
        ["workspaces:read", "datasets:read", "datasets:create", "datasets:update"],
    ),
    ("Évaluateur", "Runs evaluations.", ["workspaces:read", "datasets:read", "evaluators:create"]),
]

WORKSPACE_NAMES = [
    "Platform",
    "Data Science",
    "Search Relevance",
    "Customer Support Bots",
    "Équipe Données",
    "研究チーム",
    "Growth",
    "Risk & Compliance",
    "Agents Lab",
    "Evaluation",
    "Infra",
    "Mobile",
    "Sales Engineering",
    "Knowledge Base",
    "Recommendations",
    "Security",
    "Ops 🚀",
    "Marketing Copy",
    "Legal Review",
    "Finance Automation",
]

FIRST_NAMES = [
    "Ada", "Grace", "Alan", "José", "Zoë", "Łukasz", "Søren", "François", "Ingrid", "Mateo",
    "Amélie", "Björn", "Chloé", "Dmitri", "Émile", "Fatima", "Giulia", "Håkon", "Iñaki", "Jürgen",
    "Kateřina", "Leïla", "Miłosz", "Noémie", "Oğuz", "Priya", "Raphaël", "Siân", "Thuy", "Yusuf",
]  # fmt: skip
LAST_NAMES = [
    "Lovelace", "Hopper", "Turing", "García", "Müller", "Nowak", "Kierkegaard", "Dubois", "Berg",
    "Núñez", "Lefèvre", "Østergaard", "O'Brien", "Ivanović", "Çelik", "Rossi", "Novák", "Şahin",
    "Smith", "Nakamura", "Kowalczyk", "Fernández", "Schröder", "Jensen", "Ólafsson", "Patel",
]  # fmt: skip
# (full name, ASCII spelling for the email address)
CJK_NAMES = [
    ("王芳", "wang.fang"),
    ("李伟", "li.wei"),
    ("佐藤 健", "sato.ken"),
    ("鈴木 花子", "suzuki.hanako"),
    ("김민준", "kim.minjun"),
    ("陈静", "chen.jing"),
]
EMOJI = ["🚀", "🌱", "🦜", "✨", "🐍"]
EMAIL_DOMAINS = ["example.com", "example.org", "Example.com", "corp.example.net"]


def ascii_slug(text: str) -> str:
    """``"Łukasz Müller"`` -> ``"lukasz.muller"``: the part of an email address before the @."""
    text = text.replace("ł", "l").replace("Ł", "L").replace("ø", "o").replace("Ø", "O")
    decomposed = unicodedata.normalize("NFKD", text)
    letters = "".join(c for c in decomposed if c.isascii() and (c.isalnum() or c == " "))
    return ".".join(letters.lower().split())


def mixed_case(rng: random.Random, local_part: str) -> str:
    """Capitalize some addresses (``Ada.Lovelace``): emails must compare case-insensitively."""
    if rng.random() < 0.2:
        return ".".join(part.capitalize() for part in local_part.split("."))
    return local_part


class _EmailBook:
    """Hands out unique email addresses: ``ada.lovelace@…``, then ``ada.lovelace2@…``."""

    def __init__(self) -> None:
        self.times_used: dict[str, int] = {}

    def email(self, rng: random.Random, local_part: str, domain: str) -> str:
        key = f"{local_part}@{domain}".lower()
        count = self.times_used.get(key, 0) + 1
        self.times_used[key] = count
        numbered = local_part if count == 1 else f"{local_part}{count}"
        return f"{mixed_case(rng, numbered)}@{domain}"


def _random_person(rng: random.Random) -> tuple[str, str]:
    """(full name, ASCII local part of the email) of a made-up person."""
    if rng.random() < 0.08:
        return rng.choice(CJK_NAMES)
    full_name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    local_part = ascii_slug(full_name)
    if rng.random() < 0.03:
        full_name = f"{full_name} {rng.choice(EMOJI)}"
    return full_name, local_part


def generate_org(
    seed: int = 42,
    members: int = 50,
    workspaces: int = 8,
    *,
    pending_invites: int | None = None,
    memberships_per_member: float = 5.0,
    organization_id: str | None = None,
    custom_roles: int = 2,
    personal_workspaces: int | None = None,
    deleted_workspaces: int | None = None,
    disabled_share: float = 0.03,
    plan: str = "enterprise",
    now: int | None = None,
    scim_group_name_separator: str = ":",
) -> OrgState:
    """Build a deterministic organization.

    - ``members``: active org members (disabled ones included); a few are org admins and about
      ``disabled_share`` of them are disabled (at least one when some member is not an org
      admin: the org admins, ``2 + members // 100`` of them, are never disabled).
    - ``workspaces``: shared workspaces (neither personal nor deleted). When there are two or
      more, the first and the last share a display name.
    - ``memberships_per_member``: average number of shared or deleted workspaces a member
      belongs to (each member draws between 0 and twice that, capped by the workspace count).
    - ``pending_invites``: pending org invites (default ``members // 40 + 2``); about 40% of them
      also offer workspaces, which then list a pending workspace invite.
    - ``personal_workspaces``: members who own a personal workspace (default
      ``2 + members // 100``).
    - ``deleted_workspaces``: deleted workspaces that still hold memberships (default 5% of
      ``workspaces``, at least 1).
    - ``custom_roles``: custom workspace roles (name ``CUSTOM``, distinct display names);
      Enterprise only, so a ``plus`` org has none.
    - ``organization_id``: default derived from the seed; passing one changes nothing else.
    - ``plan``: ``"enterprise"`` (workspace RBAC, custom roles, SAML SSO, SCIM, access
      policies, chosen key roles) or ``"plus"`` (none of those: every workspace membership and
      pending workspace invite has the built-in Admin role); serve it with the same ``plan`` for
      a consistent sandbox. A plus org has the same ids, members, workspaces and memberships as
      the enterprise org of the same arguments; only the workspace roles differ.
    - ``now``: epoch seconds the org's activity (logins, key use and expiry, the audit
      history) is placed around; default a fixed date (2026-09-01), so the org is the same on
      any day. Pass ``int(time.time())`` for an org whose activity is recent today.
    - ``scim_group_name_separator``: the org's separator in SCIM group names (``:`` default).
    """
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {', '.join(PLANS)}, got {plan!r}")
    workspace_rbac = plan == "enterprise"
    rng = random.Random(seed)
    # Always drawn, so choosing an organization_id leaves every other id unchanged.
    seeded_org_id = random_uuid(rng)
    org_id = organization_id or seeded_org_id
    if pending_invites is None:
        pending_invites = members // 40 + 2
    if personal_workspaces is None:
        personal_workspaces = 2 + members // 100
    personal_workspaces = min(personal_workspaces, members)
    if deleted_workspaces is None:
        deleted_workspaces = max(1, round(workspaces * 0.05))

    state = OrgState(org_id, display_name=f"Sandbox Org {seed}")
    _add_roles(state, rng, custom_roles, workspace_rbac)
    workspace_role_ids, workspace_role_weights = _workspace_role_mix(state, workspace_rbac)
    shared = _add_workspaces(state, rng, workspaces, deleted_workspaces)
    org_members = _add_members(state, rng, members, disabled_share)
    _add_personal_workspaces(state, rng, org_members, personal_workspaces)

    # Random memberships in shared and deleted workspaces (never in personal ones).
    membership_pool = [ws for ws in state.workspaces.values() if not ws.is_personal]
    created_epoch = {ws.id: parse_timestamp(ws.created_at) for ws in membership_pool}
    upper = 2 * memberships_per_member
    for member in org_members:
        count = min(len(membership_pool), round(rng.uniform(0, upper)))
        joined = rng.sample(membership_pool, count)
        roles = rng.choices(workspace_role_ids, workspace_role_weights, k=count)
        member_epoch = parse_timestamp(member.created_at)
        for workspace, role_id in zip(joined, roles, strict=True):
            start = max(member_epoch, created_epoch[workspace.id])
            membership = WorkspaceMembership(
                id=random_uuid(rng),
                workspace_id=workspace.id,
                ls_user_id=member.ls_user_id,
                role_id=role_id,
                created_at=format_timestamp(start + rng.randrange(30 * DAY)),
            )
            state.put_membership(membership)

    _add_pending_invites(state, rng, pending_invites, shared, workspace_rbac)
    add_access_picture(
        state, seed=seed, plan=plan, now=now, scim_group_name_separator=scim_group_name_separator
    )
    return state


def _add_roles(
    state: OrgState, rng: random.Random, custom_roles: int, workspace_rbac: bool
) -> None:
    """The built-in roles (every plan has them) and, with workspace RBAC, the custom ones."""
    # Each role gets its own copy of the permissions: a change to one org's role (the sandbox's
    # and the tests' edit them in place) must not reach the tables here, nor the next org.
    for name, display_name, description, permissions in BUILT_IN_ORG_ROLES:
        state.put_role(
            Role(random_uuid(rng), name, display_name, description, ORGANIZATION_SCOPE, list(permissions))
        )
    for name, display_name, description, permissions in BUILT_IN_WORKSPACE_ROLES:
        state.put_role(
            Role(random_uuid(rng), name, display_name, description, WORKSPACE_SCOPE, list(permissions))
        )
    for index in range(custom_roles):
        display_name, description, permissions = CUSTOM_WORKSPACE_ROLES[
            index % len(CUSTOM_WORKSPACE_ROLES)
        ]
        if index >= len(CUSTOM_WORKSPACE_ROLES):
            display_name = f"{display_name} {index // len(CUSTOM_WORKSPACE_ROLES) + 1}"
        # Always drawn, so the plan leaves every other id unchanged.
        role_id = random_uuid(rng)
        if not workspace_rbac:
            continue  # custom roles are Enterprise only
        state.put_role(
            Role(
                role_id,
                CUSTOM_ROLE_NAME,
                display_name,
                description,
                WORKSPACE_SCOPE,
                list(permissions),
                organization_id=state.organization_id,
            )
        )


def _workspace_role_mix(state: OrgState, workspace_rbac: bool) -> tuple[list[str], list[float]]:
    """Workspace role ids and how often members get each: mostly Editors and Viewers with
    workspace RBAC, only Admins without it ("other plans make everyone Admin")."""
    if not workspace_rbac:
        # random.choices draws once per pick whatever the weights, so the rest of the org
        # stays the same as with RBAC.
        return [state.role_by_name("WORKSPACE_ADMIN").id], [1.0]
    weights = {"WORKSPACE_ADMIN": 0.1, "WORKSPACE_USER": 0.5, "WORKSPACE_VIEWER": 0.3}
    customs = state.custom_roles()
    role_ids, role_weights = [], []
    for role in state.roles_by_scope(WORKSPACE_SCOPE):
        role_ids.append(role.id)
        role_weights.append(0.1 / len(customs) if role.is_custom else weights[role.name])
    return role_ids, role_weights


def _add_workspaces(
    state: OrgState, rng: random.Random, shared_count: int, deleted_count: int
) -> list[Workspace]:
    """Shared and deleted workspaces; returns the shared ones."""
    names = []
    for index in range(shared_count + deleted_count):
        name = WORKSPACE_NAMES[index % len(WORKSPACE_NAMES)]
        if index >= len(WORKSPACE_NAMES):
            name = f"{name} {index // len(WORKSPACE_NAMES) + 1}"
        names.append(name)
    if shared_count >= 2:
        # Display names are not unique in LangSmith: workspaces must be keyed by id.
        names[shared_count - 1] = names[0]

    shared = []
    for index, display_name in enumerate(names):
        workspace_id = random_uuid(rng)
        handle_base = ascii_slug(display_name).replace(".", "-")
        workspace = Workspace(
            id=workspace_id,
            display_name=display_name,
            tenant_handle=f"{handle_base or 'ws'}-{workspace_id[:4]}",
            created_at=format_timestamp(rng.randrange(JAN_2025, JUL_2025)),
            is_deleted=index >= shared_count,
        )
        state.put_workspace(workspace)
        if not workspace.is_deleted:
            shared.append(workspace)
    return shared


def _add_members(
    state: OrgState, rng: random.Random, count: int, disabled_share: float
) -> list[OrgMember]:
    org_role = {role.name: role.id for role in state.roles_by_scope(ORGANIZATION_SCOPE)}
    admin_indexes = set(rng.sample(range(count), min(count, 2 + count // 100)))
    others = [index for index in range(count) if index not in admin_indexes]
    disabled_count = round(count * disabled_share)
    if disabled_share > 0 and count >= 2:
        disabled_count = max(1, disabled_count)
    disabled_indexes = set(rng.sample(others, min(len(others), disabled_count)))

    emails = _EmailBook()
    members = []
    for index in range(count):
        full_name, local_part = _random_person(rng)
        if index in admin_indexes:
            role_name = "ORGANIZATION_ADMIN"
        else:
            draw = rng.random()
            role_name = (
                "ORGANIZATION_OPERATOR"
                if draw < 0.05
                else "ORGANIZATION_VIEWER"
                if draw < 0.2
                else "ORGANIZATION_USER"
            )
        member = OrgMember(
            id=random_uuid(rng),
            ls_user_id=random_uuid(rng),
            user_id=random_uuid(rng),
            email=emails.email(rng, local_part, rng.choice(EMAIL_DOMAINS)),
            full_name=full_name,
            display_name=full_name,
            org_role_id=org_role[role_name],
            created_at=format_timestamp(rng.randrange(JAN_2025, JUL_2026)),
            is_disabled=index in disabled_indexes,
        )
        members.append(state.put_member(member))
    return members


def _add_personal_workspaces(
    state: OrgState, rng: random.Random, members: list[OrgMember], count: int
) -> None:
    admin_role_id = state.role_by_name("WORKSPACE_ADMIN").id
    for owner in rng.sample(members, count):
        workspace_id = random_uuid(rng)
        state.put_workspace(
            Workspace(
                id=workspace_id,
                display_name=f"{owner.full_name}'s workspace",
                tenant_handle=f"personal-{workspace_id[:8]}",
                created_at=owner.created_at,
                is_personal=True,
                owner_ls_user_id=owner.ls_user_id,
            )
        )
        state.put_membership(
            WorkspaceMembership(
                id=random_uuid(rng),
                workspace_id=workspace_id,
                ls_user_id=owner.ls_user_id,
                role_id=admin_role_id,
                created_at=owner.created_at,
            )
        )


def _add_pending_invites(
    state: OrgState, rng: random.Random, count: int, shared: list[Workspace], workspace_rbac: bool
) -> None:
    admin_role_id = state.role_by_name("WORKSPACE_ADMIN").id
    user_role_id = state.role_by_name("ORGANIZATION_USER").id
    viewer_role_id = state.role_by_name("ORGANIZATION_VIEWER").id
    offered_workspace_roles = [
        state.role_by_name("WORKSPACE_VIEWER").id,
        state.role_by_name("WORKSPACE_USER").id,
    ]
    emails = _EmailBook()
    for index in range(count):
        _, local_part = _random_person(rng)
        # "+invite" keeps invitee emails apart from member emails.
        email = emails.email(rng, f"{local_part}+invite", rng.choice(EMAIL_DOMAINS))
        workspace_ids = None
        workspace_role_id = None
        # The first invite always offers a workspace, so every org has a pending workspace invite.
        if shared and (index == 0 or rng.random() < 0.4):
            offered = rng.sample(shared, min(len(shared), rng.randint(1, 2)))
            workspace_ids = [ws.id for ws in offered]
            # Always drawn, so the plan leaves the rest of the org unchanged.
            workspace_role_id = rng.choice(offered_workspace_roles)
            if not workspace_rbac:
                workspace_role_id = admin_role_id
        invite = PendingOrgInvite(
            id=random_uuid(rng),
            email=email,
            org_role_id=viewer_role_id if rng.random() < 0.2 else user_role_id,
            created_at=format_timestamp(rng.randrange(JAN_2026, JUL_2026)),
            workspace_ids=workspace_ids,
            workspace_role_id=workspace_role_id,
        )
        state.put_pending_invite(invite)
        # Each offered workspace lists the invite among its own pending members.
        for workspace_id, role_id in invite.offered_workspaces():
            state.put_workspace_invite(
                PendingWorkspaceInvite(
                    id=random_uuid(rng),
                    workspace_id=workspace_id,
                    email=email,
                    role_id=role_id,
                    created_at=invite.created_at,
                    org_invite_id=invite.id,
                )
            )

"""The generated access picture (DESIGN.md section 9): deterministic, plan-aware, and with the
mixes the reports need (credentials never used, without expiry, revoked, expired; members of
every origin; SCIM groups that follow LangSmith's naming rule)."""

from __future__ import annotations

import pytest

from langsmith_access.sandbox import generate_org
from langsmith_access.sandbox.access_generator import ACTIVITY_REFERENCE, EARLIEST_ACTIVITY_REFERENCE
from langsmith_access.sandbox.access_records import (
    PERSONAL_ACCESS_TOKEN,
    SERVICE_KEY,
    WORKSPACE_SERVICE_KEY,
)
from langsmith_access.sandbox.org_state import format_timestamp

DAY = 86400


@pytest.fixture(scope="module")
def org():
    return generate_org(seed=7, members=120, workspaces=6)


@pytest.fixture(scope="module")
def plus_org():
    return generate_org(seed=7, members=120, workspaces=6, plan="plus")


def test_the_picture_is_deterministic_and_leaves_the_core_org_as_it_was():
    first = generate_org(seed=3, members=60, workspaces=4).to_dict()
    again = generate_org(seed=3, members=60, workspaces=4).to_dict()
    assert first == again
    assert first["api_keys"] and first["audit_log"] and first["access_policies"]
    plus = generate_org(seed=3, members=60, workspaces=4, plan="plus").to_dict()
    # Members and workspaces do not depend on the plan, only the picture around them and the
    # workspace roles (Plus has no custom roles and makes everyone Admin: test_generator.py).
    assert plus["roles"] == [r for r in first["roles"] if r["name"] != "CUSTOM"]
    assert [w["id"] for w in plus["workspaces"]] == [w["id"] for w in first["workspaces"]]
    assert [i["id"] for i in plus["pending_invites"]] == [i["id"] for i in first["pending_invites"]]
    assert [m["id"] for m in plus["members"]] == [m["id"] for m in first["members"]]


def test_credentials_of_every_kind_with_every_kind_of_trouble(org):
    now = format_timestamp(ACTIVITY_REFERENCE)
    keys = list(org.api_keys.values())
    assert {k.kind for k in keys} == {SERVICE_KEY, WORKSPACE_SERVICE_KEY, PERSONAL_ACCESS_TOKEN}
    assert any(k.last_used_at is None for k in keys), "some never used"
    assert any(k.expires_at is None for k in keys), "some without expiry"
    assert any(k.revoked_at is not None for k in keys), "some revoked"
    assert any(k.expires_at is not None and k.expires_at < now for k in keys), "some expired"
    assert any(k.expires_at is not None and k.expires_at > now for k in keys), "some valid"
    for key in keys:
        assert key.secret.startswith("lsv2_pt_" if key.kind == PERSONAL_ACCESS_TOKEN else "lsv2_sk_")
        assert key.secret[-4:] in key.short_key and key.secret not in key.short_key
        assert key.created_at <= now
        assert key.last_used_at is None or key.created_at <= key.last_used_at <= now
        assert key.revoked_at is None or key.created_at < key.revoked_at <= now
        if key.workspace_ids:
            assert key.default_workspace_id == key.workspace_ids[0], "a key's default is among its workspaces"
        if key.kind == PERSONAL_ACCESS_TOKEN:
            assert key.owner_ls_user_id in org.members and key.role_id is None
            assert key.created_by == key.owner_ls_user_id
            if key.default_workspace_id:  # a shared workspace its owner belongs to
                assert org.workspaces[key.default_workspace_id].is_shared
                assert org.membership(key.default_workspace_id, key.owner_ls_user_id)
        if key.kind == WORKSPACE_SERVICE_KEY:
            assert len(key.workspace_ids) == 1 and org.workspaces[key.workspace_ids[0]].is_shared
    accounts = set(org.service_accounts)
    assert accounts and all(
        k.service_account_id in accounts for k in keys if k.kind == SERVICE_KEY
    )
    assert any(k.workspace_ids is None for k in keys if k.kind == SERVICE_KEY), "an org-wide key"
    tokens = [k for k in keys if k.kind == PERSONAL_ACCESS_TOKEN]
    assert any(k.default_workspace_id for k in tokens), "a token whose owner chose a default workspace"


@pytest.mark.parametrize("seed", [1, 7, 13])
def test_no_credential_is_used_after_it_was_revoked_or_expired(seed):
    # LangSmith refuses a revoked or expired key: its last use comes before either end.
    org = generate_org(seed=seed, members=120, workspaces=8)
    used = [k for k in org.api_keys.values() if k.last_used_at is not None]
    assert any(k.revoked_at for k in used) and any(k.expires_at for k in used)
    for key in used:
        assert key.revoked_at is None or key.last_used_at <= key.revoked_at, key
        assert key.expires_at is None or key.last_used_at <= key.expires_at, key


def test_an_organization_admin_pushed_by_scim_comes_from_the_admin_group_alone():
    # LangSmith's rule: the org's admin group ("LS:Organization Admin(s)") makes an Organization
    # Admin, who then needs no workspace group (they reach every workspace).
    org = generate_org(seed=7, members=1000, workspaces=6)
    admin = org.role_by_name("ORGANIZATION_ADMIN").id
    scim_admins = [m for m in org.members.values() if m.org_role_id == admin
                   and any(login.provisioning_method == "scim" for login in m.linked_login_methods)]
    admin_groups = (["LS:Organization Admin"], ["LS:Organization Admins"])
    assert scim_admins and all([g.name for g in m.scim_groups] in admin_groups for m in scim_admins)


def test_member_origins_and_scim_groups_follow_langsmiths_rule(org):
    separator = org.settings.scim_group_name_separator
    methods = {
        m.provisioning_method for member in org.members.values() for m in member.linked_login_methods
    }
    assert methods == {"scim", "saml:jit", "bootstrap", None}
    # The mix the module docstring promises: about 45% pushed by SCIM, 20% JIT at first SAML
    # login, one bootstrap (the oldest Organization Admin), the rest by email or Google.
    first = {member.ls_user_id: member.linked_login_methods[0] for member in org.members.values()}
    share = {
        method: sum(m.provisioning_method == method for m in first.values()) / len(first)
        for method in ("scim", "saml:jit", None)
    }
    assert 0.35 < share["scim"] < 0.55 and 0.1 < share["saml:jit"] < 0.3 and 0.25 < share[None] < 0.45
    (bootstrapped,) = [org.members[u] for u, m in first.items() if m.provisioning_method == "bootstrap"]
    admins = [m for m in org.members.values() if org.roles[m.org_role_id].name == "ORGANIZATION_ADMIN"]
    assert bootstrapped is min(admins, key=lambda m: (m.created_at, m.id)), "the oldest Organization Admin"
    assert {m.provider for m in first.values() if m.provisioning_method is None} == {"email", "supabase:non-sso"}
    assert any(len(member.linked_login_methods) > 1 for member in org.members.values())
    workspace_names = {ws.display_name for ws in org.shared_workspaces()}
    role_names = {role.display_name for role in org.roles.values()}
    named_their_grant = workspace_groups = 0
    for member in org.members.values():
        scim = any(m.provisioning_method == "scim" for m in member.linked_login_methods)
        assert bool(member.scim_groups) <= scim, "only SCIM members have SCIM groups"
        for group in member.scim_groups:
            prefix, _, rest = group.name.partition(separator)
            assert prefix == "LS"
            if rest in ("Organization Admin", "Organization Admins"):
                assert org.roles[member.org_role_id].name == "ORGANIZATION_ADMIN"
                continue
            org_role, workspace, workspace_role = rest.split(separator)
            assert org_role == org.roles[member.org_role_id].display_name
            assert workspace in workspace_names and workspace_role in role_names
            held = {
                (org.workspaces[m.workspace_id].display_name, org.roles[m.role_id].display_name)
                for m in org.memberships_of(member.ls_user_id)
            }
            named_their_grant += (workspace, workspace_role) in held
            workspace_groups += 1
    # Most groups name a grant the member holds; a few name a role they no longer hold.
    assert named_their_grant > 10 and 0 < workspace_groups - named_their_grant < 0.15 * workspace_groups


def test_login_methods_carry_the_fields_of_their_provider(org):
    # SSO logins name the identity provider members sign in with (the one by metadata URL);
    # email logins are confirmed when the member joined; Google/GitHub ones carry a user name.
    (signed_in_with,) = [p.provider_id for p in org.sso_providers.values() if p.metadata_url]
    for member in org.members.values():
        for method in member.linked_login_methods:
            sso = method.provider == "supabase:sso"
            assert method.saml_provider_id == (signed_in_with if sso else None)
            assert (method.provider_user_id is not None) == sso
            assert method.email_confirmed_at == (member.created_at if method.provider == "email" else None)
            non_sso = method.provider == "supabase:non-sso"
            assert method.username == (member.email.partition("@")[0] if non_sso else None)


def test_a_chosen_scim_separator_is_used_and_a_bad_one_refused():
    org = generate_org(seed=7, members=60, workspaces=3, scim_group_name_separator="-")
    names = [g.name for m in org.members.values() for g in m.scim_groups]
    assert names and all(name.startswith("LS-") for name in names)
    with pytest.raises(ValueError, match="scim_group_name_separator"):
        generate_org(seed=7, members=5, workspaces=1, scim_group_name_separator="/")


def test_enterprise_has_sso_scim_policies_and_plus_has_none(org, plus_org):
    assert org.sso_providers and org.scim_tokens and org.access_policies
    # One identity provider by metadata URL, one pasted as XML whose attribute mapping did not load.
    assert sorted((p.metadata_url is not None, p.metadata_xml is not None, p.attribute_mapping_load_error is not None)
                  for p in org.sso_providers.values()) == [(False, True, True), (True, False, False)]
    # Each says where JIT puts new users: a shared workspace, as Viewer.
    shared = {ws.id for ws in org.shared_workspaces()}
    viewer = org.role_by_name("WORKSPACE_VIEWER").id
    for provider in org.sso_providers.values():
        assert len(provider.default_workspace_ids) == 1 and set(provider.default_workspace_ids) <= shared
        assert provider.default_workspace_role_id == viewer
    assert {p.effect for p in org.access_policies.values()} == {"allow", "deny"}
    # Policies apply to built-in and custom workspace roles; one is attached to no role yet.
    attached = [org.roles[r] for p in org.access_policies.values() for r in p.role_ids]
    assert any(role.is_custom for role in attached) and any(not role.is_custom for role in attached)
    assert any(not p.role_ids for p in org.access_policies.values())
    # Every plan tags resources in its shared workspaces (up to 20 of them).
    assert all(ws.tag_keys for ws in org.shared_workspaces())
    assert all(ws.tag_keys for ws in plus_org.shared_workspaces())
    assert org.settings.max_pat_expiry_days is not None and org.settings.sso_login_slug
    now = format_timestamp(ACTIVITY_REFERENCE)
    assert all(t.created_at <= t.last_used_at <= now for t in org.scim_tokens.values())
    assert not plus_org.sso_providers and not plus_org.scim_tokens and not plus_org.access_policies
    assert plus_org.settings.max_pat_expiry_days is None and plus_org.settings.sso_login_slug is None
    plus_methods = {
        (m.provider, m.provisioning_method)
        for member in plus_org.members.values()
        for m in member.linked_login_methods
    }
    assert all(provider != "supabase:sso" and method in (None, "bootstrap") for provider, method in plus_methods)
    assert not any(member.scim_groups for member in plus_org.members.values())
    # Chosen workspace roles on keys are Enterprise only.
    admin = plus_org.role_by_name("WORKSPACE_ADMIN").id
    assert all(k.role_id in (None, admin) for k in plus_org.api_keys.values())


def test_activity_is_placed_around_now(org):
    now_ms = ACTIVITY_REFERENCE * 1000
    events = org.audit_log.events()
    assert all(now_ms - 400 * DAY * 1000 <= e.time_ms <= now_ms for e in events)
    last_login = {}
    for event in events:
        if event.operation == "login":
            last_login[event.actor.ls_user_id] = max(last_login.get(event.actor.ls_user_id, 0), event.time_ms)
    recent = [t for t in last_login.values() if t >= now_ms - 90 * DAY * 1000]
    stale = [t for t in last_login.values() if t < now_ms - 90 * DAY * 1000]
    never = set(org.members) - set(last_login)
    assert recent and stale and never
    later = generate_org(seed=7, members=120, workspaces=6, now=ACTIVITY_REFERENCE + 30 * DAY)
    shift = [e.time_ms for e in later.audit_log.events() if e.operation == "login"]
    assert max(shift) > now_ms, "a later now moves the activity"
    with pytest.raises(ValueError, match="now"):
        generate_org(seed=7, members=5, workspaces=1, now=ACTIVITY_REFERENCE - 365 * DAY)


def test_every_small_org_has_a_workspace_key_and_every_kind_of_trouble():
    # "each at least once when there are four keys or more", in orgs too small to draw them.
    now = format_timestamp(ACTIVITY_REFERENCE)
    for seed in range(12):
        org = generate_org(seed=seed, members=3, workspaces=1)
        keys = list(org.api_keys.values())
        assert len(keys) >= 4 and any(k.kind == WORKSPACE_SERVICE_KEY for k in keys), seed
        assert any(k.last_used_at is None for k in keys), seed
        assert any(k.expires_at is None for k in keys), seed
        assert any(k.revoked_at is not None for k in keys), seed
        assert any(k.expires_at is not None and k.expires_at < now for k in keys), seed


def test_the_audit_history_records_what_was_made_and_revoked_and_by_whom(org):
    oldest = format_timestamp(ACTIVITY_REFERENCE - 400 * DAY)
    events = org.audit_log.events()
    about: dict[str, list] = {}
    for event in events:
        for resource_id in event.resource_ids:
            about.setdefault(resource_id, []).append(event)
    founder = min(
        (m for m in org.members.values() if org.roles[m.org_role_id].name == "ORGANIZATION_ADMIN"),
        key=lambda m: (m.created_at, m.id),
    )
    operation = {
        SERVICE_KEY: "service_key", WORKSPACE_SERVICE_KEY: "api_key", PERSONAL_ACCESS_TOKEN: "personal_access_token"
    }
    for key in org.api_keys.values():
        by_operation = {e.operation: e for e in about.get(key.id, [])}
        if key.created_at >= oldest:
            created = by_operation[f"create_{operation[key.kind]}"]
            maker = key.owner_ls_user_id or founder.ls_user_id
            assert created.actor.ls_user_id == maker
            assert created.workspace_id == (key.workspace_ids[0] if key.kind == WORKSPACE_SERVICE_KEY else None)
        if key.revoked_at and key.revoked_at >= oldest:
            deleted = by_operation[f"delete_{operation[key.kind]}"]
            assert deleted.http_method == "DELETE" and deleted.path.endswith(key.id)
    made = [*org.service_accounts.values(), *org.access_policies.values(), *org.scim_tokens.values()]
    for record in made:
        if record.created_at >= oldest:
            assert [e.actor.ls_user_id for e in about[record.id]] == [founder.ls_user_id]
    added = [e for e in events if e.operation == "add_member_to_workspace"]
    assert added and all(org.workspaces[e.workspace_id].is_shared for e in added)


def test_an_org_seen_at_the_earliest_now_has_nothing_from_its_future():
    # now is when the org is seen: no member, membership (nor the SCIM group naming it),
    # invite or key may be created after it, even at the earliest now accepted.
    org = generate_org(seed=7, members=200, workspaces=8, now=EARLIEST_ACTIVITY_REFERENCE)
    created = [m.created_at for m in org.members.values()]
    created += [m.created_at for ws in org.workspaces.values() for m in ws.memberships.values()]
    created += [g.created_at for m in org.members.values() for g in m.scim_groups]
    created += [i.created_at for i in org.pending_invites.values()] + [k.created_at for k in org.api_keys.values()]
    assert max(created) <= format_timestamp(EARLIEST_ACTIVITY_REFERENCE)
    with pytest.raises(ValueError, match="now must be after"):
        generate_org(seed=7, members=5, workspaces=1, now=EARLIEST_ACTIVITY_REFERENCE - 1)


def test_a_large_org_keeps_the_audit_history_bounded():
    org = generate_org(seed=1, members=2000, workspaces=50)
    # Logins (at most three per member) and creations: not one event per membership.
    assert len(org.audit_log) < 4 * len(org.members) + len(org.api_keys) + 100

"""The org generator: determinism, the invariants of a LangSmith org, and OrgState's changes."""

from __future__ import annotations

import re
import uuid
from collections import Counter

import pytest

from langsmith_access.sandbox import generate_org
from langsmith_access.sandbox.org_state import in_api_order
from langsmith_access_tests.sandbox.helpers import assert_in_api_order

TIMESTAMP = re.compile(r"^20(25|26)-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_same_seed_same_org_and_other_seed_other_org():
    first = generate_org(seed=3, members=60, workspaces=6)
    again = generate_org(seed=3, members=60, workspaces=6)
    other = generate_org(seed=4, members=60, workspaces=6)
    assert first.to_dict() == again.to_dict()
    assert first.to_dict() != other.to_dict()


def test_changing_one_generated_org_leaves_the_next_one_as_its_seed_gives_it():
    # Same seed, same org, also later in the same process: tests and the sandbox change a
    # generated org's roles in place (test_access_routes takes workspaces:read from Viewer),
    # and an org generated after that must not inherit the change.
    changed = generate_org(seed=3, members=10, workspaces=2)
    expected = generate_org(seed=3, members=10, workspaces=2).to_dict()
    for role in changed.roles.values():
        role.permissions.clear()
    assert generate_org(seed=3, members=10, workspaces=2).to_dict() == expected


def test_another_seed_gives_an_access_picture_of_its_own():
    # Ids are unique across LangSmith: the sandboxes of two orgs (tests of many orgs run one per
    # seed) share no key, SCIM token, service account, access policy or SSO provider.
    first = generate_org(seed=3, members=20, workspaces=2).to_dict()
    other = generate_org(seed=4, members=20, workspaces=2).to_dict()
    for records in ("api_keys", "scim_tokens", "service_accounts", "access_policies", "sso_providers"):
        ids = {record["id"] for record in first[records]}
        assert ids and not ids & {record["id"] for record in other[records]}, records


def test_choosing_the_organization_id_changes_nothing_else():
    chosen = str(uuid.uuid4())
    default = generate_org(seed=3).to_dict()
    custom = generate_org(seed=3, organization_id=chosen).to_dict()
    assert custom["organization_id"] == chosen != default["organization_id"]
    assert [m["id"] for m in custom["members"]] == [m["id"] for m in default["members"]]
    assert [w["id"] for w in custom["workspaces"]] == [w["id"] for w in default["workspaces"]]


def test_built_in_and_custom_roles(org):
    built_in = {role.name: role for role in org.roles.values() if not role.is_custom}
    assert built_in["ORGANIZATION_ADMIN"].display_name == "Organization Admin"
    assert {"ORGANIZATION_OPERATOR", "ORGANIZATION_USER", "ORGANIZATION_VIEWER"} <= set(built_in)
    # langsmith-api.md: audit logs and member writes need organization:manage, which an
    # Operator has (an Admin too); a User or Viewer does not.
    assert [n for n in ("ORGANIZATION_ADMIN", "ORGANIZATION_OPERATOR", "ORGANIZATION_USER", "ORGANIZATION_VIEWER")
            if "organization:manage" in built_in[n].permissions] == ["ORGANIZATION_ADMIN", "ORGANIZATION_OPERATOR"]
    assert [
        built_in[n].display_name for n in ("WORKSPACE_ADMIN", "WORKSPACE_USER", "WORKSPACE_VIEWER")
    ] == [
        "Admin",
        "Editor",
        "Viewer",
    ]
    for role in built_in.values():
        assert role.organization_id is None
        expected_scope = "organization" if role.name.startswith("ORGANIZATION_") else "workspace"
        assert role.access_scope == expected_scope
    custom = org.custom_roles()
    assert len(custom) == 2
    assert {role.name for role in custom} == {"CUSTOM"}
    assert len({role.display_name for role in custom}) == 2
    assert all(role.organization_id == org.organization_id for role in custom)
    assert all(role.access_scope == "workspace" and role.permissions for role in custom)
    # Members hold custom roles too, not only the built-in ones.
    held = {m.role_id for ws in org.workspaces.values() for m in ws.memberships.values()}
    assert {role.id for role in custom} <= held


def test_a_plus_org_has_no_custom_roles_and_only_admin_workspace_roles():
    # langsmith-api.md: workspace roles other than Admin and custom roles are Enterprise only;
    # "other plans make everyone Admin". The built-in roles are there on every plan.
    enterprise = generate_org(seed=3, members=60, workspaces=6)
    plus = generate_org(seed=3, members=60, workspaces=6, plan="plus")
    assert plus.custom_roles() == []
    assert [r.name for r in plus.roles.values()] == [
        r.name for r in enterprise.roles.values() if not r.is_custom
    ]
    admin = plus.role_by_name("WORKSPACE_ADMIN").id
    workspaces = plus.all_workspaces()
    memberships = [m for ws in workspaces for m in ws.memberships.values()]
    invites = [i for ws in workspaces for i in ws.pending_invites.values()]
    assert memberships and invites
    assert {m.role_id for m in memberships} == {admin}
    assert {i.role_id for i in invites} == {admin}
    offered = [i for i in plus.pending_org_invites() if i.workspace_ids]
    assert offered and {i.workspace_role_id for i in offered} == {admin}
    # The enterprise org of the same arguments has the other roles; the plan changes only them.
    assert len({m.role_id for ws in enterprise.all_workspaces() for m in ws.memberships.values()}) > 1

    def without_roles(state) -> list:
        return sorted((m.id, m.workspace_id, m.ls_user_id, m.created_at)
                      for ws in state.all_workspaces() for m in ws.memberships.values())

    assert without_roles(plus) == without_roles(enterprise)
    assert plus.to_dict() == generate_org(seed=3, members=60, workspaces=6, plan="plus").to_dict()


def test_an_unknown_plan_is_refused():
    with pytest.raises(ValueError, match="plan must be one of"):
        generate_org(seed=1, members=2, workspaces=1, plan="developer")


def test_many_custom_roles_keep_distinct_display_names():
    state = generate_org(seed=1, members=5, workspaces=2, custom_roles=12)
    assert len({role.display_name for role in state.custom_roles()}) == 12


def test_workspaces_shared_personal_and_deleted(org):
    shared = org.shared_workspaces()
    assert len(shared) == 5
    names = Counter(ws.display_name for ws in shared)
    assert max(names.values()) == 2, "two shared workspaces share a display name"

    personal = [ws for ws in org.workspaces.values() if ws.is_personal]
    assert personal
    for ws in personal:
        assert list(ws.memberships) == [ws.owner_ls_user_id]
        assert not ws.is_deleted

    deleted = [ws for ws in org.workspaces.values() if ws.is_deleted]
    assert len(deleted) >= 1
    assert any(ws.memberships for ws in deleted), "deleted workspaces still hold memberships"
    # Handles are slugs, also for a display name without ASCII letters (研究チーム).
    for ws in org.workspaces.values():
        assert re.match(r"^[a-z0-9]+(-[a-z0-9]+)+$", ws.tenant_handle), ws.tenant_handle


def test_two_shared_workspaces_already_share_a_display_name():
    shared = generate_org(seed=1, members=5, workspaces=2).shared_workspaces()
    assert len(shared) == 2 and shared[0].display_name == shared[1].display_name


def test_more_workspaces_than_names_number_them_and_still_only_two_share_one():
    # Past the list of names they come back numbered ("Platform 2"): one name shared, no more.
    state = generate_org(seed=1, members=5, workspaces=45)
    names = Counter(ws.display_name for ws in state.shared_workspaces())
    assert len(state.shared_workspaces()) == 45 and "Platform 2" in names and "Platform 3" in names
    assert [count for count in names.values() if count > 1] == [2]


def test_members(org):
    members = list(org.members.values())
    assert len(members) == 40
    org_roles = {role.id: role for role in org.roles_by_scope("organization")}
    assert all(member.org_role_id in org_roles for member in members)
    admins = [m for m in members if org_roles[m.org_role_id].name == "ORGANIZATION_ADMIN"]
    assert 1 <= len(admins) <= 5
    assert any(member.is_disabled for member in members)
    assert len({member.email.lower() for member in members}) == len(members)
    # Members joined over 2025 and the first half of 2026 (activity is placed after that).
    assert {member.created_at[:4] for member in members} == {"2025", "2026"}
    assert max(member.created_at for member in members) < "2026-07-01"
    for member in members:
        assert len({member.id, member.ls_user_id, member.user_id}) == 3
        assert TIMESTAMP.match(member.created_at)
        assert member.display_name == member.full_name
        assert member.avatar_url is None
        assert member.linked_login_methods, "every member logs in some way"


def test_names_and_emails_are_varied():
    members = generate_org(seed=5, members=400, workspaces=3).members.values()
    assert any(not member.full_name.isascii() for member in members)
    assert any(any("\u4e00" <= char <= "\u9fff" for char in m.full_name) for m in members)
    assert any(any(ord(char) > 0xFFFF for char in m.full_name) for m in members), "a name with an emoji"
    # Addresses spell names in ASCII, also letters NFKD does not take apart (Ł, Ø).
    lukasz = [m.email.lower() for m in members if m.full_name.startswith("Łukasz ")]
    assert lukasz and all(email.startswith("lukasz.") for email in lukasz), lukasz
    assert any(member.email != member.email.lower() for member in members)
    # Some local parts are capitalized (Ada.Lovelace@...), not only the Example.com domain.
    local_parts = [member.email.partition("@")[0] for member in members]
    assert any(part != part.lower() for part in local_parts)
    # Namesakes at one domain get numbered addresses (ada.lovelace, then ada.lovelace2): unique
    # even compared case-insensitively, as LangSmith compares emails.
    emails = {member.email.lower() for member in members}
    assert len(emails) == len(members)
    numbered = [email for email in emails if re.match(r"^[a-z.]+\d+@", email)]
    assert numbered
    for email in numbered:
        local_part, _, domain = email.partition("@")
        assert f"{local_part.rstrip('0123456789')}@{domain}" in emails, email


def test_one_role_per_workspace_and_identity_ids(org):
    rows = org.workspace_membership_rows()
    assert len(rows) == org.membership_count()
    assert len({(workspace, user) for workspace, user, _, _ in rows}) == len(rows)
    org_identity_ids = {member.id for member in org.members.values()}
    workspace_identity_ids = {identity_id for _, _, identity_id, _ in rows}
    assert len(workspace_identity_ids) == len(rows)
    assert not org_identity_ids & workspace_identity_ids
    workspace_roles = {role.id for role in org.roles_by_scope("workspace")}
    assert all(role_id in workspace_roles for _, _, _, role_id in rows)
    shared_ids = {ws.id for ws in org.shared_workspaces()}
    assert {row[0] for row in org.workspace_membership_rows(shared_only=True)} <= shared_ids
    # Nobody joins a workspace before they joined the org or before the workspace existed.
    for workspace in org.workspaces.values():
        for membership in workspace.memberships.values():
            assert membership.created_at >= org.members[membership.ls_user_id].created_at
            assert membership.created_at >= workspace.created_at


def test_default_counts_and_org_roles_follow_the_org_size():
    # generate_org's docstring: pending invites members // 40 + 2, personal workspaces
    # 2 + members // 100, deleted workspaces 5% of the shared ones (at least 1); a few org
    # admins (2 + members // 100) and every other org role held by someone.
    state = generate_org(seed=11, members=250, workspaces=40)
    assert len(state.pending_invites) == 250 // 40 + 2
    assert sum(ws.is_personal for ws in state.workspaces.values()) == 2 + 250 // 100
    assert sum(ws.is_deleted for ws in state.workspaces.values()) == 2
    held = Counter(state.roles[m.org_role_id].name for m in state.members.values())
    assert held["ORGANIZATION_ADMIN"] == 2 + 250 // 100
    assert {"ORGANIZATION_OPERATOR", "ORGANIZATION_USER", "ORGANIZATION_VIEWER"} <= set(held)
    assert held["ORGANIZATION_USER"] > held["ORGANIZATION_VIEWER"] > held["ORGANIZATION_OPERATOR"]


def test_a_small_org_still_has_a_disabled_member():
    # "at least one when some member is not an org admin", even when 3% rounds to none.
    state = generate_org(seed=1, members=10, workspaces=1)
    assert sum(member.is_disabled for member in state.members.values()) == 1


def test_workspace_roles_are_mostly_editors_then_viewers_then_admins():
    # Workspace RBAC as orgs use it: most members edit or view, few administer a workspace.
    state = generate_org(seed=9, members=400, workspaces=10)
    held = Counter(state.roles[m.role_id].name for ws in state.all_workspaces() if not ws.is_personal
                   for m in ws.memberships.values())
    assert held["WORKSPACE_USER"] > held["WORKSPACE_VIEWER"] > held["WORKSPACE_ADMIN"] > 0


def test_a_member_may_belong_to_every_shared_and_deleted_workspace():
    # The draw is capped by the workspace count, not below it: in a small org some member
    # belongs to each shared and deleted workspace there is.
    state = generate_org(seed=1, members=10, workspaces=1)
    pool = {ws.id for ws in state.all_workspaces() if not ws.is_personal}
    assert len(pool) == 2
    assert any({m.workspace_id for m in state.memberships_of(member.ls_user_id)} >= pool
               for member in state.members.values())


def test_org_admins_are_never_disabled():
    # Disabled members are drawn among the others: an org keeps admins who can manage it (the
    # sandbox's default actor, the demo's approver), however many members are disabled.
    state = generate_org(seed=2, members=200, workspaces=2, disabled_share=0.5)
    admin = state.role_by_name("ORGANIZATION_ADMIN").id
    admins = [m for m in state.members.values() if m.org_role_id == admin]
    assert len(admins) == 2 + 200 // 100 and not any(m.is_disabled for m in admins)
    assert sum(m.is_disabled for m in state.members.values()) == 100


def test_average_memberships_per_member():
    state = generate_org(seed=9, members=2000, workspaces=50, memberships_per_member=4.0)
    shared_and_deleted = [ws for ws in state.workspaces.values() if not ws.is_personal]
    random_memberships = sum(len(ws.memberships) for ws in shared_and_deleted)
    assert 3.5 < random_memberships / 2000 < 4.5


def test_pending_invites(org):
    invites = org.pending_org_invites()
    assert len(invites) == 40 // 40 + 2
    member_emails = {member.email.lower() for member in org.members.values()}
    for invite in invites:
        assert not hasattr(invite, "ls_user_id")
        assert invite.email.lower() not in member_emails
        assert org.roles[invite.org_role_id].access_scope == "organization"
    with_workspaces = [invite for invite in invites if invite.workspace_ids]
    assert with_workspaces
    for invite in with_workspaces:
        assert org.roles[invite.workspace_role_id].access_scope == "workspace"
        for workspace_id in invite.workspace_ids:
            listed = org.workspaces[workspace_id].pending_invites.values()
            assert invite.email in {workspace_invite.email for workspace_invite in listed}
            # Made with the org invite: linked to it (withdrawn or accepted with it), the same moment.
            [made] = [i for i in listed if i.email == invite.email]
            assert (made.org_invite_id, made.created_at) == (invite.id, invite.created_at)


def test_invitee_emails_are_never_a_members():
    # A pending invite is for someone not yet in the org: many invites among many members never
    # reuse a member's address (compared case-insensitively, as LangSmith compares emails).
    state = generate_org(seed=5, members=400, workspaces=3, pending_invites=100)
    member_emails = {member.email.lower() for member in state.members.values()}
    invitee_emails = {invite.email.lower() for invite in state.pending_org_invites()}
    assert len(invitee_emails) == 100 and not invitee_emails & member_emails


def test_pending_invites_offer_both_org_roles_and_one_or_two_workspaces():
    state = generate_org(seed=11, members=40, workspaces=5, pending_invites=40)
    invites = state.pending_org_invites()
    assert {state.roles[i.org_role_id].name for i in invites} == {"ORGANIZATION_USER", "ORGANIZATION_VIEWER"}
    assert {len(i.workspace_ids or []) for i in invites} == {0, 1, 2}
    offered = {state.roles[i.workspace_role_id].name for i in invites if i.workspace_ids}
    assert offered == {"WORKSPACE_VIEWER", "WORKSPACE_USER"}
    # The first invite always offers a workspace: every org with one has a pending workspace invite.
    for seed in range(8):
        small = generate_org(seed=seed, members=5, workspaces=2, pending_invites=1)
        assert any(ws.pending_invites for ws in small.shared_workspaces()), seed


def test_api_order_is_newest_first_then_id():
    state = generate_org(seed=2, members=300, workspaces=2)
    assert_in_api_order([(member.created_at, member.id) for member in state.active_members()])


def test_counts_can_be_chosen():
    state = generate_org(
        seed=1,
        members=30,
        workspaces=4,
        pending_invites=7,
        personal_workspaces=5,
        deleted_workspaces=3,
        custom_roles=0,
        disabled_share=0.0,
    )
    assert len(state.pending_invites) == 7
    assert sum(ws.is_personal for ws in state.workspaces.values()) == 5
    assert sum(ws.is_deleted for ws in state.workspaces.values()) == 3
    assert not state.custom_roles()
    assert not any(member.is_disabled for member in state.members.values())


def test_tiny_orgs_do_not_break():
    assert len(generate_org(members=0, workspaces=0).members) == 0
    assert len(generate_org(members=1, workspaces=1).shared_workspaces()) == 1


# ------------------------------------------------------------------ changing the org


def test_add_member_is_listed_first(org):
    member = org.add_member("New.Person@Example.com", "Nouvelle Personne")
    assert org.active_members()[0] is member
    assert org.member_by_email("new.person@example.com") is member
    assert org.roles[member.org_role_id].name == "ORGANIZATION_USER"
    with pytest.raises(ValueError):
        org.add_member("NEW.PERSON@example.com", "Twin")
    with pytest.raises(ValueError):
        org.add_member("x@example.com", "X", org_role_id=org.role_by_name("Viewer").id)


def test_records_added_in_the_same_second_are_still_newer_than_the_last(org):
    # OrgState's rule: a new record's created_at is newer than anything already in the org, so
    # it is listed first even when the clock has not moved since the last addition.
    org.clock = lambda: 1_900_000_000
    first = org.add_member("first@example.com", "First")
    second = org.add_member("second@example.com", "Second")
    assert first.created_at < second.created_at
    assert org.active_members()[:2] == [second, first]


def test_keys_made_in_the_org_name_their_creator_and_a_token_needs_its_owner(org):
    # created_by (what Terraform reads) is whoever made the key: by default the oldest
    # Organization Admin; a personal access token belongs to an active member.
    key = org.create_api_key("service_key", "made by hand")
    assert key.created_by == org.default_actor().ls_user_id is not None
    with pytest.raises(KeyError):
        org.create_api_key("personal_access_token", "nobody's", owner_ls_user_id="not-a-member")


def test_remove_member_drops_their_memberships(org):
    member = next(m for m in org.members.values() if org.memberships_of(m.ls_user_id))
    org.remove_member(member.ls_user_id)
    assert member.ls_user_id not in org.members
    assert member.ls_user_id not in {row[1] for row in org.workspace_membership_rows()}
    assert org.member_by_identity_id(member.id) is None


def test_workspace_membership_changes(org):
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.members.values() if m.ls_user_id not in workspace.memberships)
    viewer = org.role_by_name("WORKSPACE_VIEWER")
    editor = org.role_by_name("Editor")

    membership = org.add_workspace_membership(workspace.id, outsider.ls_user_id, viewer.id)
    assert membership.id != outsider.id
    assert (
        workspace.id,
        outsider.ls_user_id,
        membership.id,
        viewer.id,
    ) in org.workspace_membership_rows()
    with pytest.raises(ValueError):
        org.add_workspace_membership(workspace.id, outsider.ls_user_id, editor.id)
    with pytest.raises(KeyError):  # only active org members join workspaces
        org.add_workspace_membership(workspace.id, "00000000-0000-4000-8000-00000000abcd", viewer.id)
    assert "00000000-0000-4000-8000-00000000abcd" not in workspace.memberships
    with pytest.raises(ValueError):
        org.set_workspace_role(
            workspace.id, outsider.ls_user_id, org.role_by_name("ORGANIZATION_ADMIN").id
        )

    org.set_workspace_role(workspace.id, outsider.ls_user_id, editor.id)
    assert org.membership(workspace.id, outsider.ls_user_id).role_id == editor.id

    org.remove_workspace_membership(workspace.id, outsider.ls_user_id)
    assert org.membership(workspace.id, outsider.ls_user_id) is None
    assert workspace.id not in {m.workspace_id for m in org.memberships_of(outsider.ls_user_id)}


def test_org_role_changes_take_only_organization_roles(org):
    # "A user holds one org role" (langsmith-api.md): a workspace role is no org role, and the
    # member keeps the one they had.
    member = org.active_members()[0]
    before = member.org_role_id
    with pytest.raises(ValueError):
        org.set_org_role(member.ls_user_id, org.role_by_name("WORKSPACE_ADMIN").id)
    assert org.members[member.ls_user_id].org_role_id == before
    operator = org.role_by_name("ORGANIZATION_OPERATOR").id
    org.set_org_role(member.ls_user_id, operator)
    assert org.members[member.ls_user_id].org_role_id == operator

def test_workspace_lifecycle(org):
    owner = org.active_members()[0]
    added = org.add_workspace("Nouvel Espace")
    assert added in org.shared_workspaces()
    # An owner means something for a personal workspace only: a shared one gets no member.
    shared = org.add_workspace("Partagé", owner_ls_user_id=owner.ls_user_id)
    assert shared.owner_ls_user_id is None and shared.memberships == {}
    personal = org.add_workspace("Mine", is_personal=True, owner_ls_user_id=owner.ls_user_id)
    assert list(personal.memberships) == [owner.ls_user_id]
    other = next(m for m in org.members.values() if m is not owner)
    with pytest.raises(ValueError):
        org.add_workspace_membership(personal.id, other.ls_user_id, org.role_by_name("Viewer").id)
    org.delete_workspace(added.id)
    assert added not in org.shared_workspaces()
    assert org.workspaces[added.id].is_deleted
    # A deleted workspace keeps its memberships, as the real service does (the API stops serving them).
    staffed = next(ws for ws in org.shared_workspaces() if ws.memberships)
    kept = dict(staffed.memberships)
    org.delete_workspace(staffed.id)
    assert staffed.memberships == kept
    assert all(staffed.id in {m.workspace_id for m in org.memberships_of(user)} for user in kept)


def test_disable_invite_and_accept(org):
    member = org.active_members()[0]
    org.set_disabled(member.ls_user_id, True)
    assert org.members[member.ls_user_id].is_disabled

    workspace = org.shared_workspaces()[0]
    invite = org.add_pending_invite("invitee@example.com", workspace_ids=[workspace.id])
    assert invite in org.pending_org_invites()
    assert any(i.org_invite_id == invite.id for i in workspace.pending_invites.values())
    # The workspace invite is made with the org invite: the same moment.
    assert {i.created_at for i in workspace.pending_invites.values() if i.org_invite_id == invite.id} == {
        invite.created_at}
    joined = org.accept_invite(invite.id, "Invitee")
    assert invite.id not in org.pending_invites
    assert not any(i.org_invite_id == invite.id for i in workspace.pending_invites.values())
    assert org.membership(workspace.id, joined.ls_user_id).role_id == org.role_by_name("Viewer").id


def test_a_member_who_rejoins_keeps_their_user_ids(org):
    """ls_user_id is one per person (langsmith-api.md): removed, then invited again and
    accepted, a member comes back as the same user, under a new org identity, so the history
    of who had access follows them across the gap."""
    member = next(m for m in org.active_members() if not m.is_disabled)
    org.remove_member(member.ls_user_id)
    invite = org.add_pending_invite(member.email.upper())
    rejoined = org.accept_invite(invite.id, member.full_name)
    assert (rejoined.ls_user_id, rejoined.user_id) == (member.ls_user_id, member.user_id)
    assert rejoined.id != member.id
    assert org.member_by_identity_id(member.id) is None
    newcomer = org.add_member("someone.else@example.com", "Someone Else")
    assert newcomer.ls_user_id != member.ls_user_id


def test_role_lookups(org):
    assert org.role_by_name("WORKSPACE_VIEWER") is org.role_by_name("Viewer")
    custom = org.custom_roles()[0]
    assert org.role_by_name(custom.display_name) is custom
    with pytest.raises(KeyError):
        org.role_by_name("CUSTOM")
    assert {role.access_scope for role in org.roles_by_scope("organization")} == {"organization"}
    assert len(org.roles_by_scope("workspace")) == 3 + 2


def test_in_api_order_breaks_ties_by_id(org):
    members = list(org.members.values())[:3]
    for member in members:
        member.created_at = "2025-05-05T05:05:05Z"
    assert [m.id for m in in_api_order(members)] == sorted(m.id for m in members)


def test_a_large_listing_is_of_the_orgs_own_records_even_when_another_has_the_same_ids():
    # in_api_order reuses the last ordering of a large listing whose ids and created_at are the
    # same; an org generated again from the same seed has those ids, but records of its own.
    first = generate_org(seed=5, members=1200, workspaces=2)
    again = generate_org(seed=5, members=1200, workspaces=2)
    assert len(first.active_members()) >= 1000
    listed = again.active_members()
    assert all(member is again.members[member.ls_user_id] for member in listed)

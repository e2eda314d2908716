"""Workspace role provisioning routes: POST, PATCH and DELETE on workspace members."""

from __future__ import annotations

import uuid

import pytest

from langsmith_access_tests.sandbox.schema import validate_response

MEMBERS = "/api/v1/workspaces/current/members"


@pytest.fixture
def workspace(org):
    return org.shared_workspaces()[0]


@pytest.fixture
def outsider(org, workspace):
    """An active org member who is not in ``workspace``."""
    return next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships)


@pytest.fixture
def insider(org, workspace):
    """A member of ``workspace`` and their workspace identity."""
    membership = next(iter(workspace.memberships.values()))
    return org.members[membership.ls_user_id], membership


def role_id(org, name):
    return org.role_by_name(name).id


def assert_422_at(response, loc):
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc


# ------------------------------------------------------------------ POST


@pytest.mark.parametrize("identity_field", ["org_identity_id", "ls_user_id", "user_id"])
def test_add_member(caller, org, workspace, outsider, identity_field):
    viewer = role_id(org, "Viewer")
    body = {
        identity_field: getattr(
            outsider, "id" if identity_field == "org_identity_id" else identity_field
        )
    }
    response = caller.post(MEMBERS, tenant_id=workspace.id, json={**body, "role_id": viewer})
    assert response.status_code == 200, response.text
    identity = response.json()
    membership = org.membership(workspace.id, outsider.ls_user_id)
    assert identity["id"] == membership.id != outsider.id
    assert identity["ls_user_id"] == outsider.ls_user_id
    assert identity["tenant_id"] == workspace.id
    assert identity["role_id"] == membership.role_id == viewer

    listed = caller.get(
        MEMBERS + "/active", tenant_id=workspace.id, params={"ls_user_ids": outsider.ls_user_id}
    )
    assert [row["id"] for row in listed.json()] == [identity["id"]]


def test_add_member_twice_is_409(caller, org, workspace, insider):
    member, _ = insider
    response = caller.post(
        MEMBERS,
        tenant_id=workspace.id,
        json={"ls_user_id": member.ls_user_id, "role_id": role_id(org, "Editor")},
    )
    assert response.status_code == 409
    assert isinstance(response.json()["detail"], str)


def test_add_member_unknown_role_is_404(caller, workspace, outsider):
    response = caller.post(
        MEMBERS,
        tenant_id=workspace.id,
        json={"org_identity_id": outsider.id, "role_id": str(uuid.uuid4())},
    )
    assert response.status_code == 404
    assert "detail" in response.json()


def test_add_member_with_org_role_is_400(caller, org, workspace, outsider):
    response = caller.post(
        MEMBERS,
        tenant_id=workspace.id,
        json={"org_identity_id": outsider.id, "role_id": role_id(org, "ORGANIZATION_ADMIN")},
    )
    assert response.status_code == 400
    assert "not a workspace role" in response.json()["detail"]
    assert org.membership(workspace.id, outsider.ls_user_id) is None


@pytest.mark.parametrize("who", ["unknown", "pending invite", "workspace identity"])
def test_add_non_member_is_404(caller, org, workspace, who):
    identity_id = {
        "unknown": str(uuid.uuid4()),
        "pending invite": next(iter(org.pending_invites)),
        "workspace identity": next(iter(workspace.memberships.values())).id,
    }[who]
    response = caller.post(
        MEMBERS,
        tenant_id=workspace.id,
        json={"org_identity_id": identity_id, "role_id": role_id(org, "Viewer")},
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "Organization member not found"}


def test_workspace_role_id_field_is_dropped(caller, org, workspace, outsider):
    # The docs' sample sends `workspace_role_id`: the server ignores it, and IdentityCreate's
    # role_id is optional, so the member is added, silently, with the default role, not Viewer.
    response = caller.post(
        MEMBERS,
        tenant_id=workspace.id,
        json={"org_identity_id": outsider.id, "workspace_role_id": role_id(org, "Viewer")},
    )
    assert response.status_code == 200, response.text
    admin = role_id(org, "WORKSPACE_ADMIN")
    assert response.json()["role_id"] == admin
    assert org.membership(workspace.id, outsider.ls_user_id).role_id == admin


def test_add_member_without_role_id_read_only_gives_viewer(caller, org, workspace, outsider):
    response = caller.post(
        MEMBERS, tenant_id=workspace.id, json={"org_identity_id": outsider.id, "read_only": True}
    )
    assert response.status_code == 200, response.text
    assert org.membership(workspace.id, outsider.ls_user_id).role_id == role_id(org, "WORKSPACE_VIEWER")


def test_a_read_only_that_is_no_boolean_is_a_422_on_add_and_patch(caller, org, workspace, outsider, insider):
    # IdentityCreate.read_only and IdentityPatch.read_only are booleans (or null): FastAPI answers
    # 422 naming the field, and nothing changes. (Words pydantic reads as booleans still pass.)
    _, membership = insider
    viewer = role_id(org, "Viewer")
    held = membership.role_id
    for method, path, body in (
        ("POST", MEMBERS, {"org_identity_id": outsider.id, "read_only": "perhaps"}),
        ("PATCH", f"{MEMBERS}/{membership.id}", {"role_id": viewer, "read_only": "perhaps"}),
    ):
        response = caller.request(method, path, tenant_id=workspace.id, json=body)
        assert response.status_code == 422, (method, response.text)
        assert response.json()["detail"][0]["loc"] == ["body", "read_only"]
    assert outsider.ls_user_id not in workspace.memberships
    assert membership.role_id == held
    added = caller.post(MEMBERS, tenant_id=workspace.id, json={"org_identity_id": outsider.id, "read_only": "true"})
    assert added.status_code == 200 and added.json()["role_id"] == role_id(org, "WORKSPACE_VIEWER")


def test_a_read_only_of_0_or_1_is_a_boolean_and_any_other_number_a_422(caller, org, workspace, outsider, insider):
    # Pydantic's lax mode reads the JSON numbers 0 and 1 as booleans (and no other number): a
    # client sending read_only: 1 adds a Viewer, as LangSmith would, and 2 names the field.
    _, membership = insider
    two = caller.patch(f"{MEMBERS}/{membership.id}", tenant_id=workspace.id,
                       json={"role_id": role_id(org, "Viewer"), "read_only": 2})
    assert two.status_code == 422 and two.json()["detail"][0]["loc"] == ["body", "read_only"]
    added = caller.post(MEMBERS, tenant_id=workspace.id, json={"org_identity_id": outsider.id, "read_only": 1})
    assert added.status_code == 200, added.text
    assert added.json()["role_id"] == role_id(org, "WORKSPACE_VIEWER")


def test_add_member_ignores_unknown_fields(caller, org, workspace, outsider):
    response = caller.post(
        MEMBERS,
        tenant_id=workspace.id,
        json={"org_identity_id": outsider.id, "role_id": role_id(org, "Viewer"), "note": "hello"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "payload, loc",
    [
        ({"org_identity_id": "not-a-uuid", "role_id": "ROLE"}, ["body", "org_identity_id"]),
        ({"org_identity_id": "OUTSIDER", "role_id": "nope"}, ["body", "role_id"]),
        ({"role_id": "ROLE"}, ["body"]),
        ([1, 2], ["body"]),
        ("not json", ["body", 0]),
    ],
)
def test_add_member_malformed_is_422(caller, org, workspace, outsider, payload, loc):
    viewer = role_id(org, "Viewer")
    if isinstance(payload, dict):
        payload = {
            k: {"ROLE": viewer, "OUTSIDER": outsider.id}.get(v, v) for k, v in payload.items()
        }
        response = caller.post(MEMBERS, tenant_id=workspace.id, json=payload)
    elif isinstance(payload, list):
        response = caller.post(MEMBERS, tenant_id=workspace.id, json=payload)
    else:
        response = caller.post(
            MEMBERS,
            tenant_id=workspace.id,
            data=payload,
            headers={"Content-Type": "application/json"},
        )
    assert_422_at(response, loc)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_not_sent_as_json_is_a_422_and_changes_nothing(caller, org, workspace, outsider, insider,
                                                               content_type):
    # FastAPI reads a model body as JSON only under application/json (or application/*+json);
    # any other Content-Type leaves it raw bytes, which the model refuses at ["body"].
    viewer = role_id(org, "Viewer")
    sent = {"Content-Type": content_type}
    added = caller.post(MEMBERS, tenant_id=workspace.id, headers=sent,
                        data=f'{{"org_identity_id": "{outsider.id}", "role_id": "{viewer}"}}')
    assert_422_at(added, ["body"])
    assert added.json()["detail"][0]["type"] == "model_attributes_type"
    assert outsider.ls_user_id not in workspace.memberships
    _, membership = insider
    before = membership.role_id
    patched = caller.patch(f"{MEMBERS}/{membership.id}", tenant_id=workspace.id, headers=sent,
                           data=f'{{"role_id": "{viewer if before != viewer else role_id(org, "Admin")}"}}')
    assert_422_at(patched, ["body"])
    assert membership.role_id == before


def test_json_media_types_with_parameters_or_suffixes_are_read_as_json(caller, org, workspace, outsider):
    body = f'{{"org_identity_id": "{outsider.id}", "role_id": "{role_id(org, "Viewer")}"}}'
    added = caller.post(MEMBERS, tenant_id=workspace.id, data=body,
                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert added.status_code == 200, added.text
    other = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships)
    also = caller.post(MEMBERS, tenant_id=workspace.id, json={"org_identity_id": other.id},
                       headers={"Content-Type": "application/vnd.api+json"})
    assert also.status_code == 200, also.text
    # No Content-Type at all: FastAPI (without strict_content_type) still reads the body as JSON.
    third = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships)
    untyped = caller.post(MEMBERS, tenant_id=workspace.id, data=f'{{"org_identity_id": "{third.id}"}}')
    assert "Content-Type" not in untyped.request.headers
    assert untyped.status_code == 200, untyped.text


def test_a_chunked_body_is_read_whole_and_the_connection_stays_usable(caller, org, workspace, outsider):
    # HTTP/1.1 lets a client send its body in chunks, without Content-Length (requests does for
    # an iterable body): the sandbox reads it as LangSmith's server would, instead of serving an
    # empty body and then reading the chunks as the next request on the connection.
    body = f'{{"org_identity_id": "{outsider.id}", "role_id": "{role_id(org, "Viewer")}"}}'.encode()
    added = caller.post(MEMBERS, tenant_id=workspace.id, data=iter([body[:20], body[20:]]),
                        headers={"Content-Type": "application/json"})
    assert added.request.headers.get("Transfer-Encoding") == "chunked"
    assert added.status_code == 200, added.text
    assert org.membership(workspace.id, outsider.ls_user_id).role_id == role_id(org, "Viewer")
    assert caller.get("/api/v1/orgs/current/info").status_code == 200  # same keep-alive connection


def test_a_write_without_a_body_is_field_required(caller, org, workspace, insider):
    # An empty body is no body: FastAPI's "Field required" at ["body"], not a JSON decode error.
    missing = caller.post(MEMBERS, tenant_id=workspace.id)
    assert_422_at(missing, ["body"])
    assert missing.json()["detail"][0]["type"] == "missing"
    _, membership = insider
    assert_422_at(caller.patch(f"{MEMBERS}/{membership.id}", tenant_id=workspace.id), ["body"])


def test_add_member_to_personal_workspace_is_400(caller, org):
    personal = next(ws for ws in org.workspaces.values() if ws.is_personal)
    other = next(m for m in org.members.values() if m.ls_user_id != personal.owner_ls_user_id)
    response = caller.post(
        MEMBERS,
        tenant_id=personal.id,
        json={"org_identity_id": other.id, "role_id": role_id(org, "Viewer")},
    )
    assert response.status_code == 400


def test_writes_to_a_deleted_workspace_are_404(caller, org, outsider):
    deleted = next(ws for ws in org.workspaces.values() if ws.is_deleted and ws.memberships)
    response = caller.post(
        MEMBERS,
        tenant_id=deleted.id,
        json={"org_identity_id": outsider.id, "role_id": role_id(org, "Viewer")},
    )
    assert response.status_code == 404
    identity = next(iter(deleted.memberships.values())).id
    assert caller.delete(f"{MEMBERS}/{identity}", tenant_id=deleted.id).status_code == 404


def test_disabled_members_can_be_added(caller, org, workspace):
    # Disabled members are still members (langsmith-api.md), whichever id names them.
    disabled = org.add_member("gone@example.com", "Gone Away", is_disabled=True)
    response = caller.post(
        MEMBERS,
        tenant_id=workspace.id,
        json={"org_identity_id": disabled.id, "role_id": role_id(org, "Viewer")},
    )
    assert response.status_code == 200
    also = org.add_member("away@example.com", "Also Away", is_disabled=True)
    by_ls_user_id = caller.post(
        MEMBERS, tenant_id=workspace.id, json={"ls_user_id": also.ls_user_id, "role_id": role_id(org, "Viewer")}
    )
    assert by_ls_user_id.status_code == 200, by_ls_user_id.text
    assert org.membership(workspace.id, also.ls_user_id) is not None


# ------------------------------------------------------------------ PATCH


def test_patch_replaces_the_role(caller, org, workspace, insider):
    member, membership = insider
    new_role = next(r.id for r in org.roles_by_scope("workspace") if r.id != membership.role_id)
    response = caller.patch(
        f"{MEMBERS}/{membership.id}", tenant_id=workspace.id, json={"role_id": new_role}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    validate_response("/api/v1/workspaces/current/members/active", "GET", 200, [body])
    assert body["id"] == membership.id and body["role_id"] == new_role
    assert org.membership(workspace.id, member.ls_user_id).role_id == new_role
    assert [
        m.role_id for m in org.memberships_of(member.ls_user_id) if m.workspace_id == workspace.id
    ] == [new_role]


def test_patch_errors(caller, org, workspace, insider):
    member, membership = insider
    path = f"{MEMBERS}/{membership.id}"
    viewer = role_id(org, "Viewer")

    unknown_role = caller.patch(path, tenant_id=workspace.id, json={"role_id": str(uuid.uuid4())})
    assert unknown_role.status_code == 404
    org_role = caller.patch(
        path, tenant_id=workspace.id, json={"role_id": role_id(org, "ORGANIZATION_USER")}
    )
    assert org_role.status_code == 400
    assert_422_at(caller.patch(path, tenant_id=workspace.id, json={}), ["body", "role_id"])
    assert_422_at(
        caller.patch(path, tenant_id=workspace.id, json={"role_id": "admin"}), ["body", "role_id"]
    )
    assert_422_at(
        caller.patch(f"{MEMBERS}/not-a-uuid", tenant_id=workspace.id, json={"role_id": viewer}),
        ["path", "identity_id"],
    )
    # The org identity id is not a workspace identity id.
    by_org_identity = caller.patch(
        f"{MEMBERS}/{member.id}", tenant_id=workspace.id, json={"role_id": viewer}
    )
    assert by_org_identity.status_code == 404
    # A workspace identity only exists in its own workspace.
    other_workspace = next(ws for ws in org.shared_workspaces() if ws is not workspace)
    elsewhere = caller.patch(path, tenant_id=other_workspace.id, json={"role_id": viewer})
    assert elsewhere.status_code == 404
    assert org.membership(workspace.id, member.ls_user_id).role_id == membership.role_id


# ------------------------------------------------------------------ DELETE


@pytest.mark.parametrize(
    "delete_response, status, body",
    [("json_object", 200, {}), ("null", 200, None), ("no_content", 204, None)],
)
def test_delete_removes_the_member(make_sandbox, delete_response, status, body):
    server, caller = make_sandbox(delete_response=delete_response)
    org = server.org
    workspace = org.shared_workspaces()[0]
    membership = next(iter(workspace.memberships.values()))
    response = caller.delete(f"{MEMBERS}/{membership.id}", tenant_id=workspace.id)
    assert response.status_code == status
    assert (response.json() if response.content else None) == body
    assert org.membership(workspace.id, membership.ls_user_id) is None
    again = caller.delete(f"{MEMBERS}/{membership.id}", tenant_id=workspace.id)
    assert again.status_code == 404


def test_delete_with_a_bad_id_is_422(caller, workspace):
    assert_422_at(
        caller.delete(f"{MEMBERS}/12345", tenant_id=workspace.id), ["path", "identity_id"]
    )


def test_write_without_tenant_is_403(caller, org, outsider):
    response = caller.post(
        MEMBERS, json={"org_identity_id": outsider.id, "role_id": role_id(org, "Viewer")}
    )
    assert response.status_code == 403
    assert response.json()["error"] == "org_scoped_key_requires_workspace"


@pytest.mark.parametrize("key_role, allowed", [("member-manager", False), ("org-user", True), ("org-admin", True)])
def test_restricted_roles_need_the_built_in_workspace_admin(make_sandbox, key_role, allowed):
    """langsmith-api.md: a restricted role is granted, and its holders changed or removed, only
    by a holder of the built-in Workspace Admin role (or an Organization Admin's key)."""
    server, caller = make_sandbox(key_role=key_role)
    org = server.org
    workspace = org.shared_workspaces()[0]
    restricted = next(r for r in org.roles.values()
                      if r.is_custom and r.access_scope == "workspace" and r.display_name != "Member Manager")
    restricted.is_restricted = True
    assert next(r for r in caller.get("/api/v1/orgs/current/roles").json()
                if r["id"] == restricted.id)["is_restricted"] is True
    members = list(workspace.memberships.values())
    holder, other = members[0], members[1]
    org.set_workspace_role(workspace.id, holder.ls_user_id, restricted.id)
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships)
    viewer = role_id(org, "Viewer")
    answers = [
        caller.post(MEMBERS, tenant_id=workspace.id, json={"ls_user_id": outsider.ls_user_id, "role_id": restricted.id}),
        caller.patch(f"{MEMBERS}/{other.id}", tenant_id=workspace.id, json={"role_id": restricted.id}),
        caller.patch(f"{MEMBERS}/{holder.id}", tenant_id=workspace.id, json={"role_id": viewer}),
        caller.delete(f"{MEMBERS}/{holder.id}", tenant_id=workspace.id),
    ]
    for response in answers:
        if allowed:
            assert response.status_code in (200, 204), response.text
        else:
            assert response.status_code == 403, response.text
            assert repr(restricted.display_name) in response.json()["detail"]
    if not allowed:  # nothing changed; roles that are not restricted are still managed
        assert org.membership(workspace.id, outsider.ls_user_id) is None
        assert org.membership(workspace.id, holder.ls_user_id).role_id == restricted.id
        assert caller.patch(f"{MEMBERS}/{other.id}", tenant_id=workspace.id,
                            json={"role_id": viewer}).status_code == 200


def test_a_read_only_key_may_not_change_or_remove_members(make_sandbox):
    """workspaces:manage-members guards PATCH and DELETE as it guards POST (langsmith-api.md):
    an org-viewer key's role change and removal are refused, and nothing changes."""
    server, caller = make_sandbox(key_role="org-viewer")
    org = server.org
    workspace = org.shared_workspaces()[0]
    membership = next(iter(workspace.memberships.values()))
    held = membership.role_id
    other = next(r.id for r in org.roles_by_scope("workspace") if r.id != held)
    for response in (
        caller.patch(f"{MEMBERS}/{membership.id}", tenant_id=workspace.id, json={"role_id": other}),
        caller.delete(f"{MEMBERS}/{membership.id}", tenant_id=workspace.id),
    ):
        assert response.status_code == 403, response.text
        assert "workspaces:manage-members" in response.json()["detail"]
    assert org.membership(workspace.id, membership.ls_user_id).role_id == held


def test_each_key_acts_with_its_own_role(make_sandbox):
    """The second key is a workspace key (Workspace Admin in its workspace) whatever the first
    key is: with a read-only first key, the second one still adds and removes members in its
    workspace, and the first is still refused."""
    server, caller = make_sandbox(key_role="org-viewer", workspace_scoped_key="lsv2_sk_workspace_only")
    org = server.org
    workspace = org.workspaces[server.api.key_workspace_id()]
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships)
    add = {"ls_user_id": outsider.ls_user_id, "role_id": role_id(org, "Viewer")}
    refused = caller.post(MEMBERS, tenant_id=workspace.id, json=add)
    assert refused.status_code == 403 and "workspaces:manage-members" in refused.json()["detail"]

    second_key = {"X-API-Key": "lsv2_sk_workspace_only"}
    added = caller.post(MEMBERS, tenant_id=workspace.id, json=add, headers=second_key)
    assert added.status_code == 200, added.text
    assert org.membership(workspace.id, outsider.ls_user_id).role_id == add["role_id"]
    removed = caller.delete(f"{MEMBERS}/{added.json()['id']}", tenant_id=workspace.id, headers=second_key)
    assert removed.status_code in (200, 204), removed.text
    assert org.membership(workspace.id, outsider.ls_user_id) is None
    assert caller.post(MEMBERS, tenant_id=workspace.id, json=add).status_code == 403


ORG_MEMBERS = "/api/v1/orgs/current/members"


def test_org_member_writes_change_what_the_listings_show(caller, org, insider):
    # Documented (langsmith-api.md, "Write endpoints", permissions table; in the spec): PATCH and
    # DELETE on an org member, DELETE on an org pending member. Before: 405 or 404. (A workspace's
    # pending routes are in the spec only: the sandbox serves only what langsmith-api.md documents.)
    member, _ = insider
    org_viewer = role_id(org, "ORGANIZATION_VIEWER")
    patched = caller.patch(f"{ORG_MEMBERS}/{member.id}", json={"role_id": org_viewer, "full_name": "Renamed"})
    assert patched.status_code == 200, patched.text
    row = next(r for r in caller.get(ORG_MEMBERS + "/active", params={"limit": 500}).json() if r["id"] == member.id)
    assert row["role_id"] == org_viewer and row["full_name"] == "Renamed"
    assert org.audit_log.events()[-1].operation == "update_org_member"
    wrong_scope = caller.patch(f"{ORG_MEMBERS}/{member.id}", json={"role_id": role_id(org, "WORKSPACE_VIEWER")})
    assert wrong_scope.status_code == 400
    assert caller.patch(f"{ORG_MEMBERS}/{uuid.uuid4()}", json={"role_id": org_viewer}).status_code == 404
    assert_422_at(caller.patch(f"{ORG_MEMBERS}/not-an-id", json={}), ["path", "identity_id"])

    removed = caller.delete(f"{ORG_MEMBERS}/{member.id}")
    assert removed.status_code == 200 and removed.json() == {}
    assert member.id not in {r["id"] for r in caller.get(ORG_MEMBERS + "/active", params={"limit": 500}).json()}
    assert all(member.ls_user_id not in ws.memberships for ws in org.all_workspaces())
    assert caller.delete(f"{ORG_MEMBERS}/{member.id}").status_code == 404

    invite = next(i for i in org.pending_org_invites() if i.workspace_ids)
    workspace = org.workspaces[invite.workspace_ids[0]]
    assert caller.delete(f"{ORG_MEMBERS}/{invite.id}/pending").status_code == 200
    # The org invite withdrawn withdraws the workspaces' offers too.
    assert not [w for w in workspace.pending_invites.values() if w.org_invite_id == invite.id]
    assert invite.id not in {r["id"] for r in caller.get(ORG_MEMBERS + "/pending", params={"limit": 500}).json()}
    assert caller.delete(f"{ORG_MEMBERS}/{invite.id}/pending").status_code == 404


def test_org_member_writes_need_organization_manage(make_sandbox):
    server, caller = make_sandbox(key_role="org-user")  # Organization User
    member = server.org.active_members()[0]
    refused = caller.patch(f"{ORG_MEMBERS}/{member.id}", json={"full_name": "x"})
    assert refused.status_code == 403 and "organization:manage" in refused.json()["detail"]
    assert caller.delete(f"{ORG_MEMBERS}/{member.id}").status_code == 403
    assert member.ls_user_id in server.org.members
    # Invites and their withdrawal need it too.
    server.org.settings.sso_only, server.org.settings.invites_enabled = False, True
    pending_before = set(server.org.pending_invites)
    assert caller.post(ORG_MEMBERS, json={"email": "new.hire@example.com"}).status_code == 403
    invite_id = next(iter(pending_before))
    assert caller.delete(f"{ORG_MEMBERS}/{invite_id}/pending").status_code == 403
    assert set(server.org.pending_invites) == pending_before


def test_org_member_bodies_are_validated_as_the_spec_types_them(caller, org, insider):
    # PendingIdentityCreate (read_only a boolean; full_name, password strings) and OrgIdentityPatch
    # (password a string): another JSON type is FastAPI's 422 naming the field, and nothing
    # changes, even where the sandbox models none of them.
    org.settings.sso_only, org.settings.invites_enabled = False, True
    pending_before = set(org.pending_invites)
    for field, value in (("read_only", "perhaps"), ("full_name", 7), ("password", ["x"])):
        refused = caller.post(ORG_MEMBERS, json={"email": "typed@example.com", field: value})
        assert_422_at(refused, ["body", field])
    assert set(org.pending_invites) == pending_before
    member, _ = insider
    held = member.org_role_id
    refused = caller.patch(f"{ORG_MEMBERS}/{member.id}",
                           json={"role_id": role_id(org, "ORGANIZATION_VIEWER"), "password": 12345678})
    assert_422_at(refused, ["body", "password"])
    assert member.org_role_id == held


def test_inviting_to_the_org_adds_a_pending_member(caller, org, workspace):
    # POST /api/v1/orgs/current/members (PendingIdentityCreate -> PendingIdentity, checked by the
    # caller): the invite is listed pending in the org and in the workspaces it offers.
    org.settings.sso_only, org.settings.invites_enabled = False, True
    viewer, org_user = role_id(org, "WORKSPACE_VIEWER"), role_id(org, "ORGANIZATION_USER")
    made = caller.post(ORG_MEMBERS, json={"email": "new.hire@example.com", "role_id": org_user,
                                          "workspace_ids": [workspace.id], "workspace_role_id": viewer})
    assert made.status_code == 200, made.text
    assert made.json()["email"] == "new.hire@example.com" and made.json()["user_id"] is None
    assert made.json()["id"] in {r["id"] for r in caller.get(ORG_MEMBERS + "/pending", params={"limit": 500}).json()}
    offered = caller.get(MEMBERS, tenant_id=workspace.id).json()["pending"]
    assert {(r["email"], r["role_id"]) for r in offered} >= {("new.hire@example.com", viewer)}
    assert org.audit_log.events()[-1].operation == "invite_user_to_org"
    again = caller.post(ORG_MEMBERS, json={"email": "New.Hire@example.com"})
    assert again.status_code == 409
    member = org.active_members()[0]
    assert caller.post(ORG_MEMBERS, json={"email": member.email}).status_code == 409
    assert_422_at(caller.post(ORG_MEMBERS, json={"role_id": org_user}), ["body", "email"])
    wrong_scope = caller.post(ORG_MEMBERS, json={"email": "x@example.com", "role_id": viewer})
    assert wrong_scope.status_code == 404
    # Only shared workspaces are offered: a deleted or personal one is not found.
    for unshared in (next(w for w in org.workspaces.values() if w.is_deleted),
                     next(w for w in org.workspaces.values() if w.is_personal)):
        offered_there = caller.post(ORG_MEMBERS, json={"email": "w@example.com", "workspace_ids": [unshared.id]})
        assert offered_there.status_code == 404, offered_there.text
    assert not any(i.email == "w@example.com" for i in org.pending_invites.values())
    org.settings.invites_enabled = False  # invites turned off in the org's settings
    assert caller.post(ORG_MEMBERS, json={"email": "z@example.com"}).status_code == 403
    org.settings.invites_enabled = True
    org.settings.sso_only = True  # SSO-only orgs take no invites
    assert caller.post(ORG_MEMBERS, json={"email": "y@example.com"}).status_code == 403


def test_org_settings_change_by_patch_and_show_in_org_info(caller, org):
    # langsmith-api.md: the settings of GET /api/v1/orgs/current/info are "set by PATCH there,
    # sso_only by PATCH /api/v1/orgs/current/login-methods" (both in the spec; were 405 and 404).
    changed = caller.patch("/api/v1/orgs/current/info", json={
        "invites_enabled": False, "max_pat_expiry_days": 30, "display_name": "Renamed Org",
        "security_contact": "sec@example.com", "unshare_all": None,
    })
    assert changed.status_code == 200, changed.text
    info = caller.get("/api/v1/orgs/current/info").json()
    assert (info["invites_enabled"], info["max_pat_expiry_days"], info["display_name"]) == (False, 30, "Renamed Org")
    assert info["security_contact"] == "sec@example.com"
    assert org.audit_log.events()[-1].operation == "update_organization_info"
    for body, name in (({"max_pat_expiry_days": "soon"}, "max_pat_expiry_days"),
                       ({"invites_enabled": "perhaps"}, "invites_enabled"),
                       ({"unshare_all": "perhaps"}, "unshare_all"),  # validated, not modelled
                       ({"display_name": "bad/name"}, "display_name"),
                       ({"scim_group_name_separator": "::"}, "scim_group_name_separator"),
                       ({"security_contact": "nobody"}, "security_contact")):
        assert_422_at(caller.patch("/api/v1/orgs/current/info", json=body), ["body", name])

    sso = caller.patch("/api/v1/orgs/current/login-methods", json={"sso_only": True})
    assert sso.status_code == 200, sso.text
    assert caller.get("/api/v1/orgs/current/info").json()["sso_only"] is True
    assert org.audit_log.events()[-1].operation == "update_login_methods"


def test_org_settings_need_organization_manage_and_sso_only_needs_saml(make_sandbox):
    _, user_caller = make_sandbox(key_role="org-user")
    assert user_caller.patch("/api/v1/orgs/current/info", json={"invites_enabled": False}).status_code == 403
    plus, plus_caller = make_sandbox(plan="plus")
    assert plus_caller.patch("/api/v1/orgs/current/login-methods", json={"sso_only": True}).status_code == 403
    assert plus.org.settings.sso_only is False

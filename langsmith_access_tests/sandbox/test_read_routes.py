"""Read routes: shapes (checked against the spec by the caller fixture), paging, order, filters."""

from __future__ import annotations

import re

import pytest

from langsmith_access.sandbox import generate_org
from langsmith_access.sandbox.org_state import in_api_order
from langsmith_access_tests.sandbox.conftest import spec_path_template
from langsmith_access_tests.sandbox.helpers import assert_in_api_order
from langsmith_access_tests.sandbox.schema import load_spec

ACTIVE = "/api/v1/orgs/current/members/active"
PENDING = "/api/v1/orgs/current/members/pending"
ENRICHED = "/v1/platform/orgs/current/members"
WORKSPACE_MEMBERS = "/api/v1/workspaces/current/members"
WORKSPACE_ACTIVE = "/api/v1/workspaces/current/members/active"


def busiest_workspace(org):
    return max(org.shared_workspaces(), key=lambda ws: len(ws.memberships))


def test_org_info(caller, org):
    response = caller.get("/api/v1/orgs/current/info")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["id"] == org.organization_id
    assert body["is_personal"] is False


def test_roles_lists_org_and_workspace_roles(caller, org):
    roles = caller.get("/api/v1/orgs/current/roles").json()
    assert {role["id"] for role in roles} == set(org.roles)
    assert {role["access_scope"] for role in roles} == {"organization", "workspace"}
    custom = [role for role in roles if role["name"] == "CUSTOM"]
    assert custom and all(role["organization_id"] == org.organization_id for role in custom)
    for row in roles:
        role = org.roles[row["id"]]
        assert (row["name"], row["display_name"], row["description"], row["permissions"], row["access_scope"]) == (
            role.name, role.display_name, role.description, list(role.permissions), role.access_scope
        )


def test_workspaces_hide_deleted_unless_asked(caller, org):
    listed = caller.get("/api/v1/workspaces").json()
    assert {ws["id"] for ws in listed} == {
        ws.id for ws in org.workspaces.values() if not ws.is_deleted
    }
    assert any(ws["is_personal"] for ws in listed)
    with_deleted = caller.get("/api/v1/workspaces", params={"include_deleted": "true"}).json()
    assert {ws["id"] for ws in with_deleted} == set(org.workspaces)
    assert any(ws["is_deleted"] for ws in with_deleted)
    assert caller.get("/api/v1/workspaces", params={"include_deleted": "false"}).json() == listed
    for row in with_deleted:
        ws = org.workspaces[row["id"]]
        fields = ("display_name", "tenant_handle", "created_at", "is_personal", "is_deleted")
        assert [row[name] for name in fields] == [getattr(ws, name) for name in fields]


def test_workspaces_bad_include_deleted_is_422(caller):
    response = caller.get("/api/v1/workspaces", params={"include_deleted": "maybe"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "include_deleted"]


@pytest.mark.parametrize(("word", "with_deleted"), [
    ("yes", True), ("on", True), ("t", True), ("y", True), ("1", True), ("TRUE", True),
    ("no", False), ("off", False), ("f", False), ("n", False), ("0", False), ("False", False),
])
def test_a_boolean_query_parameter_takes_every_word_pydantic_reads(caller, org, word, with_deleted):
    # FastAPI reads a boolean parameter as pydantic does: these words too, any case, not only
    # true/false; a client sending one must get what LangSmith would answer.
    listed = caller.get("/api/v1/workspaces", params={"include_deleted": word})
    assert listed.status_code == 200, listed.text
    deleted = {ws.id for ws in org.workspaces.values() if ws.is_deleted}
    assert deleted and bool(deleted & {row["id"] for row in listed.json()}) is with_deleted


def test_a_query_parameter_given_twice_is_read_by_its_last_value(caller):
    # FastAPI hands a single-valued parameter the last of its repeated values (Starlette's
    # query_params.get): limit=2&limit=3 is a page of 3, and a bad last value is the 422.
    page = caller.get(ACTIVE, params=[("limit", "2"), ("limit", "3")])
    assert page.status_code == 200 and len(page.json()) == 3
    refused = caller.get(ACTIVE, params=[("limit", "2"), ("limit", "0")])
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "limit"]


def test_org_members_envelope(caller, org):
    body = caller.get("/api/v1/orgs/current/members").json()
    assert body["organization_id"] == org.organization_id
    assert [row["id"] for row in body["members"]] == [m.id for m in org.active_members()]
    assert [row["id"] for row in body["pending"]] == [i.id for i in org.pending_org_invites()]
    assert all(not row.get("ls_user_id") for row in body["pending"])
    # An invite offering no workspace has workspace_ids null (not []), and no tenant_ids.
    for row in body["pending"]:
        invite = org.pending_invites[row["id"]]
        assert row["workspace_ids"] == invite.workspace_ids and row["workspace_role_id"] == invite.workspace_role_id
        assert row["tenant_ids"] == list(invite.workspace_ids or [])
    assert {row["workspace_ids"] is None for row in body["pending"]} == {True, False}


@pytest.mark.parametrize("limit", ["0", "501", "-3", "ten"])
def test_active_members_bad_limit_is_422(caller, limit):
    response = caller.get(ACTIVE, params={"limit": limit})
    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["loc"] == ["query", "limit"]
    assert error["msg"] and error["type"]


def test_active_members_bad_offset_is_422(caller):
    response = caller.get(ACTIVE, params={"offset": "-1"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "offset"]


def test_active_members_full_scan_equals_the_org_in_api_order(caller, org):
    rows = caller.scan(ACTIVE, limit=7)
    assert [row["id"] for row in rows] == [member.id for member in org.active_members()]
    assert_in_api_order([(row["created_at"], row["id"]) for row in rows])


def test_active_members_default_limit_and_total(make_sandbox):
    server, caller = make_sandbox(generate_org(seed=1, members=120, workspaces=3))
    response = caller.get(ACTIVE)
    assert len(response.json()) == 50
    assert response.headers["X-Pagination-Total"] == "120"
    last = caller.get(ACTIVE, params={"limit": 500, "offset": 100})
    assert len(last.json()) == 20
    assert last.headers["X-Pagination-Total"] == "120"
    assert caller.get(ACTIVE, params={"offset": 500}).json() == []
    # A workspace's /active pages alike: 50 rows by default, at most 500.
    workspace = server.org.shared_workspaces()[0]
    for member in server.org.active_members():
        if member.ls_user_id not in workspace.memberships:
            server.org.add_workspace_membership(workspace.id, member.ls_user_id, server.org.role_by_name("Viewer").id)
    in_workspace = caller.get(WORKSPACE_ACTIVE, tenant_id=workspace.id)
    assert len(in_workspace.json()) == 50
    assert in_workspace.headers["X-Pagination-Total"] == "120"
    too_many = caller.get(WORKSPACE_ACTIVE, tenant_id=workspace.id, params={"limit": 501})
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["query", "limit"]


def test_active_member_rows(caller, org):
    for row in caller.scan(ACTIVE, limit=500):
        member = org.members[row["ls_user_id"]]
        assert row["id"] == member.id
        assert row["role_id"] == row["org_role_id"] == member.org_role_id
        assert row["role_name"] == row["org_role_name"] == org.roles[member.org_role_id].display_name
        assert row["access_scope"] == "organization"
        assert row["tenant_ids"] == [m.workspace_id for m in org.memberships_of(member.ls_user_id)]
        assert row["email"] == member.email and row["full_name"] == member.full_name
        assert row["is_disabled"] == member.is_disabled


def test_active_member_filters(caller, org):
    members = org.active_members()
    first, second = members[0], members[1]

    by_email = caller.get(ACTIVE, params={"emails": [first.email.upper(), second.email.lower()]})
    assert {row["id"] for row in by_email.json()} == {first.id, second.id}
    assert by_email.headers["X-Pagination-Total"] == "2"

    by_user = caller.get(ACTIVE, params={"ls_user_ids": [first.ls_user_id]}).json()
    assert [row["id"] for row in by_user] == [first.id]

    disabled = caller.get(ACTIVE, params={"is_disabled": "true", "limit": 500}).json()
    assert disabled and {row["id"] for row in disabled} == {m.id for m in members if m.is_disabled}

    word = first.full_name.split()[0].lower()
    searched = caller.get(ACTIVE, params={"q": word, "limit": 500}).json()
    assert first.id in {row["id"] for row in searched}
    assert all(word in (row["email"] + row["full_name"]).lower() for row in searched)

    bad = caller.get(ACTIVE, params={"ls_user_ids": ["not-a-uuid"]})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "ls_user_ids", 0]


def test_emails_filter_ignores_case_on_both_sides(caller, org):
    # Emails are matched whatever their case, the member's stored one included: a member
    # recorded as "Ada@Example.com" is found by "ada@example.com".
    member = next(m for m in org.active_members() if m.email != m.email.lower())
    found = caller.get(ACTIVE, params={"emails": member.email.lower()}).json()
    assert [row["id"] for row in found] == [member.id]

def test_active_members_sort_by_email_ascending(caller, org):
    rows = caller.get(
        ACTIVE, params={"sort_by": "email", "sort_by_desc": "false", "limit": 500}
    ).json()
    assert [row["email"].casefold() for row in rows] == sorted(
        m.email.casefold() for m in org.members.values()
    )
    assert caller.get(ACTIVE, params={"sort_by": "shoe_size"}).status_code == 422


def test_pending_members_paged(caller, org):
    response = caller.get(PENDING, params={"limit": 2})
    assert response.headers["X-Pagination-Total"] == str(len(org.pending_invites))
    rows = caller.scan(PENDING, limit=2)
    assert [row["id"] for row in rows] == [invite.id for invite in org.pending_org_invites()]
    for row in rows:
        assert "ls_user_id" not in row and row["user_id"] is None
        assert row["role_id"] == org.pending_invites[row["id"]].org_role_id
    assert caller.get(PENDING, params={"limit": 501}).status_code == 422
    assert caller.get(PENDING, params={"limit": 0}).status_code == 422


def test_pending_members_filter_by_emails_and_q(caller, org):
    # The spec gives /members/pending the `emails` (repeat the key) and `q` ("Search query for
    # email or name") filters of /active: each keeps only the invites it names.
    invites = org.pending_org_invites()
    first, second = invites[0], invites[-1]
    by_email = caller.get(PENDING, params={"emails": [first.email.upper(), second.email], "limit": 500})
    assert {row["id"] for row in by_email.json()} == {first.id, second.id}
    assert by_email.headers["X-Pagination-Total"] == "2"
    word = first.email.split("@")[0].casefold()
    searched = caller.get(PENDING, params={"q": word.upper(), "limit": 500}).json()
    assert first.id in {row["id"] for row in searched}
    assert {row["id"] for row in searched} == {i.id for i in invites if word in i.email.casefold()}
    assert len(searched) < len(invites)

def test_pending_members_sort_like_active_ones(caller, org):
    # The route takes sort_by and sort_by_desc as /active does (MemberSortField, a boolean):
    # honoured, and a value outside them is FastAPI's 422.
    rows = caller.get(PENDING, params={"sort_by": "email", "sort_by_desc": "false", "limit": 500}).json()
    assert [row["email"].casefold() for row in rows] == sorted(
        invite.email.casefold() for invite in org.pending_invites.values()
    )
    oldest_first = caller.get(PENDING, params={"sort_by_desc": "false", "limit": 500}).json()
    assert [row["id"] for row in oldest_first] == [
        invite.id for invite in sorted(org.pending_invites.values(), key=lambda i: (i.created_at, i.id))
    ]
    for params, name in (({"sort_by": "shoe_size"}, "sort_by"), ({"sort_by_desc": "maybe"}, "sort_by_desc")):
        bad = caller.get(PENDING, params=params)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", name], bad.text


def test_workspace_members_envelope(caller, org):
    invite = next(i for i in org.pending_org_invites() if i.workspace_ids)
    workspace = org.workspaces[invite.workspace_ids[0]]
    body = caller.get(WORKSPACE_MEMBERS, tenant_id=workspace.id).json()
    assert body["tenant_id"] == workspace.id
    assert {row["ls_user_id"] for row in body["members"]} == set(workspace.memberships)
    for row in body["members"]:
        membership = workspace.memberships[row["ls_user_id"]]
        member = org.members[row["ls_user_id"]]
        assert row["id"] == membership.id != member.id
        assert row["role_id"] == membership.role_id
        assert row["role_name"] == org.roles[membership.role_id].display_name
        assert row["org_role_id"] == member.org_role_id
        assert row["tenant_id"] == workspace.id
    pending = {row["email"]: row for row in body["pending"]}
    assert invite.email in pending
    assert pending[invite.email]["role_id"] == invite.workspace_role_id
    assert pending[invite.email]["tenant_id"] == workspace.id


def test_workspace_active_members_paging_and_filters(caller, org):
    workspace = busiest_workspace(org)
    rows = caller.scan(WORKSPACE_ACTIVE, limit=3, tenant_id=workspace.id)
    assert [row["id"] for row in rows] == [
        m.id for m in in_api_order(workspace.memberships.values())
    ]
    first = caller.get(WORKSPACE_ACTIVE, tenant_id=workspace.id, params={"limit": 1})
    assert first.headers["X-Pagination-Total"] == str(len(workspace.memberships))
    member = org.members[first.json()[0]["ls_user_id"]]
    by_user = caller.get(
        WORKSPACE_ACTIVE, tenant_id=workspace.id, params={"ls_user_ids": member.ls_user_id}
    )
    assert [row["ls_user_id"] for row in by_user.json()] == [member.ls_user_id]
    by_email = caller.get(
        WORKSPACE_ACTIVE, tenant_id=workspace.id, params={"emails": member.email.swapcase()}
    )
    assert [row["ls_user_id"] for row in by_email.json()] == [member.ls_user_id]
    assert (
        caller.get(WORKSPACE_ACTIVE, tenant_id=workspace.id, params={"limit": 0}).status_code == 422
    )


def test_personal_workspace_members_are_readable(caller, org):
    personal = next(ws for ws in org.workspaces.values() if ws.is_personal)
    body = caller.get(WORKSPACE_MEMBERS, tenant_id=personal.id).json()
    assert [row["ls_user_id"] for row in body["members"]] == [personal.owner_ls_user_id]


def test_enriched_members_full_scan(caller, org):
    rows = caller.scan(ENRICHED, limit=9)
    active = [row for row in rows if not row["is_pending"]]
    pending = [row for row in rows if row["is_pending"]]
    assert {row["id"] for row in active} == {m.id for m in org.members.values()}
    assert {row["id"] for row in pending} == set(org.pending_invites)
    assert all(not row.get("ls_user_id") for row in pending)
    assert_in_api_order([(row["created_at"], row["id"]) for row in rows])

    listed_workspaces = set()
    for row in active:
        member = org.members[row["ls_user_id"]]
        assert row["role_id"] == member.org_role_id
        assert row["role_name"] == org.roles[member.org_role_id].display_name
        memberships = {m["workspace_id"]: m for m in row["workspace_memberships"]}
        assert memberships.keys() == {m.workspace_id for m in org.memberships_of(member.ls_user_id)}
        for workspace_id, membership in memberships.items():
            workspace = org.workspaces[workspace_id]
            assert membership["workspace_name"] == workspace.display_name
            assert membership["role_id"] == workspace.memberships[member.ls_user_id].role_id
            assert membership["role_name"] == org.roles[membership["role_id"]].display_name
        listed_workspaces |= memberships.keys()
    # Personal and deleted workspaces are listed too: consumers must filter them.
    assert any(org.workspaces[ws].is_personal for ws in listed_workspaces)
    assert any(org.workspaces[ws].is_deleted for ws in listed_workspaces)


def test_enriched_members_header_and_filters(caller, org):
    everyone = len(org.members) + len(org.pending_invites)
    response = caller.get(ENRICHED, params={"limit": 5})
    assert len(response.json()) == 5
    assert response.headers["X-Pagination-Total"] == str(everyone)

    only_active = caller.get(ENRICHED, params={"active_is": "true", "limit": 500}).json()
    assert len(only_active) == len(org.members) and not any(r["is_pending"] for r in only_active)
    only_pending = caller.get(ENRICHED, params={"pending_is": "true", "limit": 500}).json()
    assert len(only_pending) == len(org.pending_invites) and all(
        r["is_pending"] for r in only_pending
    )
    assert len(caller.get(ENRICHED, params={"active_is": "false", "limit": 500}).json()) == len(
        org.pending_invites
    )

    member = org.active_members()[0]
    by_email = caller.get(ENRICHED, params={"email_like": member.email.upper()}).json()
    assert [row["id"] for row in by_email] == [member.id]
    admins = caller.get(ENRICHED, params={"organization_role_like": "*admin*", "limit": 500}).json()
    admin_role = org.role_by_name("ORGANIZATION_ADMIN").id
    assert {row["id"] for row in admins} == {
        m.id for m in org.members.values() if m.org_role_id == admin_role
    }


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "x"},
        {"offset": "-1"},
        {"active_is": "yes please"},
    ],
)
def test_enriched_members_bad_params_are_400(caller, params):
    response = caller.get(ENRICHED, params=params)
    assert response.status_code == 400
    assert set(response.json()) == {"error"}


def test_enriched_route_off_answers_404(make_sandbox):
    _, caller = make_sandbox(enriched_route=False)
    response = caller.get(ENRICHED)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
    assert caller.get(ACTIVE).status_code == 200


def test_unknown_route_and_wrong_method(caller):
    response = caller.get("/api/v1/nothing/here")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
    response = caller.request("PUT", "/api/v1/orgs/current/roles")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    assert response.headers["Allow"] == "GET"  # a 405 names the methods the path takes
    members = caller.request("PUT", "/api/v1/workspaces/current/members")
    assert members.status_code == 405 and members.headers["Allow"] == "GET, POST"


# The one route langsmith-api.md documents outside the vendored spec ("Key permissions and plan
# limits": an Org Admin changes a service key's roles without rotating it).
DOCUMENTED_OUTSIDE_THE_SPEC = {("PATCH", "/api/v1/orgs/current/service-keys/{api_key_id}")}


def test_every_route_the_sandbox_serves_is_a_documented_one(sandbox):
    """DESIGN.md section 6: the sandbox serves only routes langsmith-api.md documents: those of the
    official spec it validates against (``/api/v1/platform/...`` being the spec's ``/v1/platform/...``),
    and the one named above. A route made up here would let the client come to rely on an answer
    LangSmith never gives."""
    paths = load_spec()["paths"]
    undocumented = []
    for route in sandbox.api.routes:
        template = spec_path_template(re.sub(r"\{\w+\}", "some-id", route.template))
        in_the_spec = template is not None and route.method.lower() in paths[template]
        if not in_the_spec and (route.method, route.template) not in DOCUMENTED_OUTSIDE_THE_SPEC:
            undocumented.append(f"{route.method} {route.template}")
    assert undocumented == []
    # Every exception is served, so the list never keeps a route the sandbox dropped.
    assert DOCUMENTED_OUTSIDE_THE_SPEC <= {(route.method, route.template) for route in sandbox.api.routes}


def test_active_members_q_searches_names_as_well_as_emails(caller, org):
    # The spec's `q`: "Search query for email or name". A name that is nowhere in the email is
    # found by it, and so is an email that is nowhere in the name; case does not matter.
    named = org.add_member("qx-7741@example.com", "Philippa Marvolo-Sandon")
    mailed = org.add_member("ursula.brackenridge@example.com", "Ulla B")
    by_name = caller.get(ACTIVE, params={"q": "MARVOLO", "limit": 500}).json()
    assert [row["id"] for row in by_name] == [named.id]
    by_email = caller.get(ACTIVE, params={"q": "brackenridge", "limit": 500}).json()
    assert [row["id"] for row in by_email] == [mailed.id]
    workspace = busiest_workspace(org)
    org.add_workspace_membership(workspace.id, named.ls_user_id, org.role_by_name("Viewer").id)
    in_workspace = caller.get(WORKSPACE_ACTIVE, tenant_id=workspace.id, params={"q": "marvolo"}).json()
    assert [row["ls_user_id"] for row in in_workspace] == [named.ls_user_id]

"""API key, organization and workspace headers, and what the request log keeps."""

from __future__ import annotations

import uuid

import pytest

ORG_ROUTES = [
    "/api/v1/orgs/current/info",
    "/api/v1/orgs/current/roles",
    "/api/v1/workspaces",
    "/api/v1/orgs/current/members",
    "/api/v1/orgs/current/members/active",
    "/api/v1/orgs/current/members/pending",
    "/v1/platform/orgs/current/members",
    "/api/v1/platform/orgs/current/members",
    "/api/v1/platform/orgs/current/info",
    # The access picture's org routes (DESIGN.md section 9): the key and org checks come before
    # the plan's and the role's (so the audit log's missing window is no 422 here).
    "/api/v1/orgs/current/service-keys",
    "/api/v1/orgs/current/personal-access-tokens",
    "/api/v1/service-accounts",
    "/api/v1/orgs/current/sso-settings",
    "/api/v1/audit-logs",
    "/v1/platform/orgs/current/access-policies",
    "/api/v1/platform/orgs/current/access-policies",
    "/v1/platform/orgs/current/scim/tokens",
    "/api/v1/platform/orgs/current/scim/tokens",
]
WORKSPACE_MEMBERS = "/api/v1/workspaces/current/members"
# Workspace routes (X-Tenant-Id) other than the member listings.
WORKSPACE_KEYS = "/api/v1/api-key"
WORKSPACE_TAGS = "/api/v1/workspaces/current/tags"
# Platform routes refuse with {"error": ...}, the others with {"detail": ...} (langsmith-api.md,
# "Hosts, headers, errors").
PLATFORM_ROUTES = [
    "/v1/platform/orgs/current/members",
    "/api/v1/platform/orgs/current/members",
    "/v1/platform/orgs/current/info",
    "/api/v1/platform/orgs/current/info",
    "/api/v1/platform/orgs/current/access-policies",
    "/v1/platform/orgs/current/access-policies",
    "/v1/platform/orgs/current/scim/tokens",
    "/api/v1/platform/orgs/current/scim/tokens",
]


def refusal_key(path: str) -> str:
    """The field a refusal's message is in on that route."""
    return "error" if path.startswith(("/v1/platform/", "/api/v1/platform/")) else "detail"


@pytest.mark.parametrize("path", ORG_ROUTES + [WORKSPACE_MEMBERS, WORKSPACE_KEYS, WORKSPACE_TAGS])
def test_missing_or_wrong_key_is_401(caller, org, path):
    tenant_id = org.shared_workspaces()[0].id
    missing = caller.get(path, tenant_id=tenant_id, omit=("X-API-Key",))
    wrong = caller.get(path, tenant_id=tenant_id, headers={"X-API-Key": "lsv2_sk_wrong"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json() == {refusal_key(path): "Invalid token"}


@pytest.mark.parametrize("path", ORG_ROUTES)
def test_org_routes_need_this_org(caller, path):
    missing = caller.get(path, omit=("X-Organization-Id",))
    other = caller.get(path, headers={"X-Organization-Id": str(uuid.uuid4())})
    for response in (missing, other):
        assert response.status_code == 403
        assert list(response.json()) == [refusal_key(path)]
        assert isinstance(response.json()[refusal_key(path)], str)


@pytest.mark.parametrize("path", PLATFORM_ROUTES)
def test_platform_routes_refuse_with_error_not_detail(make_sandbox, path):
    _, caller = make_sandbox(workspace_scoped_key="lsv2_sk_workspace_only")
    refusals = {
        401: [
            caller.get(path, omit=("X-API-Key",)),
            caller.get(path, headers={"X-API-Key": "lsv2_sk_wrong"}),
        ],
        403: [
            caller.get(path, omit=("X-Organization-Id",)),
            caller.get(path, headers={"X-Organization-Id": str(uuid.uuid4())}),
            caller.get(path, headers={"X-API-Key": "lsv2_sk_workspace_only"}),
        ],
    }
    for status, responses in refusals.items():
        for response in responses:
            assert response.status_code == status
            body = response.json()
            assert list(body) == ["error"], body
            assert isinstance(body["error"], str) and body["error"]


def test_org_id_header_is_compared_as_a_uuid(caller, org):
    response = caller.get(
        "/api/v1/orgs/current/info", headers={"X-Organization-Id": org.organization_id.upper()}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("path", ORG_ROUTES)
def test_workspace_scoped_key_is_refused_on_org_routes(make_sandbox, path):
    server, caller = make_sandbox(workspace_scoped_key="lsv2_sk_workspace_only")
    response = caller.get(path, headers={"X-API-Key": "lsv2_sk_workspace_only"})
    assert response.status_code == 403
    assert "requires organization scope" in response.json()[refusal_key(path)]
    own = server.api.key_workspace_id()
    allowed = caller.get(WORKSPACE_MEMBERS, tenant_id=own, headers={"X-API-Key": "lsv2_sk_workspace_only"})
    assert allowed.status_code == 200


def test_a_workspace_scoped_key_reaches_its_own_workspace_only(make_sandbox):
    """Another workspace refuses it; without X-Tenant-Id it works in its own (LangSmith: a key
    that is not organization-scoped defaults to the workspace it was created in)."""
    server, caller = make_sandbox(workspace_scoped_key="lsv2_sk_workspace_only")
    own = server.api.key_workspace_id()
    other = next(w.id for w in server.org.shared_workspaces() if w.id != own)
    key = {"X-API-Key": "lsv2_sk_workspace_only"}
    refused = caller.get(WORKSPACE_MEMBERS, tenant_id=other, headers=key)
    assert refused.status_code == 403 and "not scoped to this workspace" in refused.json()["detail"]
    defaulted = caller.get(WORKSPACE_MEMBERS, headers=key)
    assert defaulted.status_code == 200
    assert defaulted.json()["tenant_id"] == own


@pytest.mark.parametrize("path", [WORKSPACE_MEMBERS, WORKSPACE_KEYS, WORKSPACE_TAGS])
def test_workspace_routes_need_x_tenant_id(caller, path):
    response = caller.get(path)
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "org_scoped_key_requires_workspace"
    assert body["detail"]


@pytest.mark.parametrize("tenant", ["unknown", "deleted", "not-a-uuid"])
def test_unknown_or_deleted_workspace_is_404(caller, org, tenant):
    tenant_id = {
        "unknown": str(uuid.uuid4()),
        "deleted": next(ws.id for ws in org.workspaces.values() if ws.is_deleted),
        "not-a-uuid": "workspace-1",
    }[tenant]
    for path in (WORKSPACE_MEMBERS, WORKSPACE_MEMBERS + "/active", WORKSPACE_KEYS, WORKSPACE_TAGS):
        response = caller.get(path, tenant_id=tenant_id)
        assert response.status_code == 404
        assert response.json() == {"detail": "Workspace not found"}


@pytest.mark.parametrize("path", [WORKSPACE_MEMBERS, WORKSPACE_KEYS, WORKSPACE_TAGS])
def test_workspace_routes_refuse_another_org_header(caller, org, path):
    response = caller.get(
        path,
        tenant_id=org.shared_workspaces()[0].id,
        headers={"X-Organization-Id": str(uuid.uuid4())},
    )
    assert response.status_code == 403
    assert list(response.json()) == ["detail"]


def test_workspace_routes_work_without_org_header(caller, org):
    response = caller.get(
        WORKSPACE_MEMBERS, tenant_id=org.shared_workspaces()[0].id, omit=("X-Organization-Id",)
    )
    assert response.status_code == 200


def test_unknown_route_is_404_before_auth(caller):
    assert caller.get("/api/v1/nope", omit=("X-API-Key",)).status_code == 404


def test_request_log_never_keeps_the_key(sandbox, caller, org):
    workspace = org.shared_workspaces()[0]
    caller.get("/api/v1/orgs/current/members/active", params={"limit": 3, "emails": ["a@x", "b@x"]})
    caller.get(WORKSPACE_MEMBERS, tenant_id=workspace.id)
    caller.get("/api/v1/orgs/current/info", omit=("X-API-Key",))

    log = sandbox.request_log.snapshot()
    assert len(log) == 3
    assert sandbox.api_key not in repr(log)
    first, second, third = log
    assert first.method == "GET" and first.path == "/api/v1/orgs/current/members/active"
    assert first.query == {"limit": ["3"], "emails": ["a@x", "b@x"]}
    assert first.status == 200 and first.has_api_key
    assert first.organization_id == org.organization_id and first.tenant_id is None
    assert second.tenant_id == workspace.id
    assert third.status == 401 and not third.has_api_key

    assert [
        entry.path for entry in sandbox.requests_matching(path_prefix="/api/v1/workspaces/")
    ] == [WORKSPACE_MEMBERS]
    assert len(sandbox.requests_matching(method="get")) == 3
    assert sandbox.requests_matching(method="POST") == []
    sandbox.reset_log()
    assert len(sandbox.request_log) == 0


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/orgs"), ("GET", "/api/v1/orgs/permissions"), ("GET", "/api/v1/me/ls_user_id"),
    # The deprecated PAT routes of the signed-in user ("user-session only"): before, 405 and 404.
    ("GET", "/api/v1/api-key/current"), ("POST", "/api/v1/api-key/current"),
    ("DELETE", "/api/v1/api-key/current/0f0f0f0f-0000-4000-8000-000000000001"),
])
def test_routes_of_the_web_uis_session_refuse_every_api_key(make_sandbox, method, path):
    # langsmith-api.md: UI bearer token only; keys get 403 (not a 404: the route exists).
    for key_role in ("org-admin", "workspace"):
        _, caller = make_sandbox(key_role=key_role)
        response = caller.request(method, path)
        assert response.status_code == 403, (key_role, response.text)
        if key_role == "org-admin":  # a workspace key is refused as on every org route
            assert "user session" in response.json()["detail"]
        assert caller.request(method, path, headers={"X-API-Key": "lsv2_sk_wrong"}).status_code == 401

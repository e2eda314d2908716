"""The deployments and limits the sandbox plays (DESIGN.md sections 6 and 8): self-hosted routing,
key roles, plans, the fixed rate-limit window and anonymity-restricted answers. Every JSON answer
is checked against the official schemas."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from langsmith_access.sandbox import FaultConfig, SandboxServer, generate_org
from langsmith_access.sandbox.api import SandboxApi
from langsmith_access.sandbox.routing import ApiRequest
from langsmith_access_tests.sandbox.conftest import SandboxCaller
from langsmith_access_tests.sandbox.schema import validate_response
from langsmith_access_tests.sandbox.test_cli import CLI

SPEC_ENRICHED = "/v1/platform/orgs/current/members"  # the form the vendored spec names
API_ENRICHED = "/api/v1/platform/orgs/current/members"
INFO = "/api/v1/orgs/current/info"


def start(**options) -> SandboxServer:
    return SandboxServer(generate_org(seed=11, members=30, workspaces=6), **options).start()


@pytest.fixture
def running():
    servers: list[SandboxServer] = []

    def make(**options) -> tuple[SandboxServer, SandboxCaller]:
        server = start(**options)
        servers.append(server)
        return server, SandboxCaller(server)

    yield make
    for server in servers:
        server.stop()


def enriched(caller: SandboxCaller, path: str = API_ENRICHED) -> requests.Response:
    response = caller.get(path, params={"limit": 500})
    assert response.status_code == 200, response.text
    validate_response(SPEC_ENRICHED, "GET", 200, response.json())
    return response


def test_cloud_serves_both_platform_forms_alike(running):
    sandbox, caller = running()
    assert enriched(caller, SPEC_ENRICHED).json() == enriched(caller, API_ENRICHED).json()


def test_self_hosted_serves_platform_routes_only_under_api_and_the_ui_elsewhere(running):
    sandbox, caller = running(deployment="self-hosted")
    assert len(enriched(caller, API_ENRICHED).json()) > 30  # members and invites
    for path in (SPEC_ENRICHED, "/", "/settings/workspaces", "/v1/platform/orgs/current/info"):
        page = requests.get(sandbox.url + path, headers={"X-API-Key": sandbox.api_key}, timeout=10)
        assert page.status_code == 200, path
        assert page.headers["Content-Type"].startswith("text/html"), path
        assert page.text.lstrip().lower().startswith("<!doctype html"), path
    # nginx reads /api/X as /api/v1/X.
    short = caller.get("/api/orgs/current/info")
    assert short.status_code == 200 and short.json()["id"] == sandbox.organization_id
    # Cloud answers an unknown path with a JSON 404, not a page.
    cloud, _ = running()
    assert requests.get(cloud.url + "/settings", timeout=10).status_code == 404


def test_self_hosted_has_no_platform_routes_under_the_short_api_prefix(running):
    """nginx sends /api/X to the Python backend's /api/v1/X: only /api/v1/platform/ reaches the
    platform backend, so /api/platform/... is an unknown route there."""
    sandbox, caller = running(deployment="self-hosted")
    for path in ("/api/platform/orgs/current/members", "/api/platform/orgs/current/info"):
        response = caller.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not Found"}


def test_self_hosted_sends_a_bare_api_path_to_the_backend_not_the_ui(running):
    """The chart's nginx matches ``/api`` with an unanchored ``location ~ /api``: a bare ``/api``
    (an endpoint set to ``https://<host>/api`` and called as is) reaches the backend, which has
    no such route, so it is a JSON 404, never the UI's page a client could read as an answer."""
    sandbox, caller = running(deployment="self-hosted")
    response = requests.get(sandbox.url + "/api", headers={"X-API-Key": sandbox.api_key}, timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("path", ["/api/workspaces/current/members", "/api/v1/workspaces/current/members"])
def test_self_hosted_short_api_paths_keep_who_sent_the_request(path):
    # nginx rewrites /api/X to /api/v1/X and nothing else: the client's address is still what
    # the audit log records as the change's source, as for the long form.
    org = generate_org(seed=11, members=30, workspaces=6)
    api = SandboxApi(org, api_key="lsv2_sk_" + "a" * 32 + "_" + "b" * 10, deployment="self-hosted")
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships)
    headers = CaseInsensitiveDict({"X-API-Key": api.api_key, "X-Organization-Id": org.organization_id,
                                   "X-Tenant-Id": workspace.id, "Content-Type": "application/json"})
    body = json.dumps({"org_identity_id": outsider.id, "role_id": org.role_by_name("WORKSPACE_VIEWER").id})
    response = api.handle(ApiRequest("POST", path, {}, headers, body.encode(), client_ip="203.0.113.9"),
                          FaultConfig())
    assert response.status == 200, response.body
    event = org.audit_log.events()[-1]
    assert event.operation == "add_member_to_workspace"
    assert event.actor.ip == "203.0.113.9"


def test_org_user_key_sees_partial_memberships_and_lacks_organization_manage(running):
    admin, admin_caller = running()
    user, user_caller = running(key_role="org-user")
    full = enriched(admin_caller)
    partial = enriched(user_caller)
    assert full.headers["X-Members-List-All-Workspaces"] == "true"
    assert partial.headers["X-Members-List-All-Workspaces"] == "false"
    count = lambda rows: sum(len(r["workspace_memberships"]) for r in rows)  # noqa: E731
    assert 0 < count(partial.json()) < count(full.json())

    info = user_caller.get(INFO).json()
    validate_response(INFO, "GET", 200, info)
    assert "organization:read" in info["permissions"]
    assert "organization:manage" not in info["permissions"]
    assert "organization:manage" in admin_caller.get(INFO).json()["permissions"]
    # Its own role in each workspace: Admin, with workspaces:manage-members.
    workspaces = user_caller.get("/api/v1/workspaces").json()
    assert workspaces and all(w["role_name"] == "Admin" for w in workspaces)
    assert all("workspaces:manage-members" in w["permissions"] for w in workspaces)


def test_workspace_scoped_key_is_refused_on_organization_routes(running):
    sandbox, caller = running(key_role="workspace")
    for path in (INFO, "/api/v1/orgs/current/roles", "/api/v1/workspaces", API_ENRICHED):
        response = caller.get(path)
        assert response.status_code == 403, path
        # The platform route refuses with {"error": ...}, the FastAPI ones with {"detail": ...}.
        message_key = "error" if path == API_ENRICHED else "detail"
        assert "workspace-scoped" in response.json()[message_key]
    own = sandbox.api.key_workspace_id()
    members = caller.get("/api/v1/workspaces/current/members/active", tenant_id=own)
    assert members.status_code == 200
    other = next(w.id for w in sandbox.org.shared_workspaces() if w.id != own)
    assert caller.get("/api/v1/workspaces/current/members/active", tenant_id=other).status_code == 403


def test_plus_plan_has_no_rbac_and_refuses_non_admin_workspace_roles(running):
    sandbox, caller = running(plan="plus")
    info = caller.get(INFO).json()
    validate_response(INFO, "GET", 200, info)
    assert info["config"]["can_use_rbac"] is False and info["tier"] == "plus"
    org = sandbox.org
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if org.membership(workspace.id, m.ls_user_id) is None)
    editor = org.role_by_name("WORKSPACE_USER")
    admin = org.role_by_name("WORKSPACE_ADMIN")
    refused = caller.post("/api/v1/workspaces/current/members", tenant_id=workspace.id,
                          json={"org_identity_id": outsider.id, "role_id": editor.id})
    assert refused.status_code == 403 and "Admin" in refused.json()["detail"]
    assert org.membership(workspace.id, outsider.ls_user_id) is None
    added = caller.post("/api/v1/workspaces/current/members", tenant_id=workspace.id,
                        json={"org_identity_id": outsider.id, "role_id": admin.id})
    assert added.status_code == 200
    identity = added.json()["id"]
    demoted = caller.patch(f"/api/v1/workspaces/current/members/{identity}", tenant_id=workspace.id,
                           json={"role_id": editor.id})
    assert demoted.status_code == 403
    assert org.membership(workspace.id, outsider.ls_user_id).role_id == admin.id
    enterprise, enterprise_caller = running()
    assert enterprise_caller.get(INFO).json()["config"]["can_use_rbac"] is True


def test_an_org_generated_on_plus_lists_built_in_roles_and_only_admin_memberships():
    org = generate_org(seed=11, members=30, workspaces=6, plan="plus")
    with SandboxServer(org, plan="plus") as sandbox:
        caller = SandboxCaller(sandbox)
        roles = caller.get("/api/v1/orgs/current/roles").json()
        # The built-in roles exist on every plan; custom roles are Enterprise only.
        assert sorted(r["name"] for r in roles) == sorted(
            ["ORGANIZATION_ADMIN", "ORGANIZATION_OPERATOR", "ORGANIZATION_USER",
             "ORGANIZATION_VIEWER", "WORKSPACE_ADMIN", "WORKSPACE_USER", "WORKSPACE_VIEWER"])
        assert all(r["organization_id"] is None for r in roles)
        members, pending = set(), set()
        for workspace in org.shared_workspaces():
            listing = caller.get("/api/v1/workspaces/current/members", tenant_id=workspace.id).json()
            members |= {row["role_name"] for row in listing["members"]}
            pending |= {row["role_name"] for row in listing["pending"]}
        assert members == pending == {"Admin"}
        rows = enriched(caller).json()
        held = {m["role_name"] for row in rows for m in row.get("workspace_memberships") or []}
        assert held == {"Admin"}
        caller.session.close()


def test_anonymity_restricted_answers_withhold_emails_and_names(running):
    sandbox, caller = running(anonymity_restricted=True)
    response = enriched(caller)
    assert response.headers["X-Members-Anonymity-Restricted"] == "true"
    active = [row for row in response.json() if not row["is_pending"]]
    assert active and all("email" not in row and "display_name" not in row for row in active)
    plain, plain_caller = running()
    assert "X-Members-Anonymity-Restricted" not in enriched(plain_caller).headers


def test_fixed_window_answers_429_without_retry_after_until_the_window_ends(running):
    sandbox, caller = running(faults=FaultConfig(rate_limit_per_minute=2, rate_limit_mode="fixed-window",
                                                 rate_limit_window_seconds=30))
    statuses = [caller.get(INFO) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 429, 429]
    assert all("Retry-After" not in r.headers for r in statuses[2:])
    rolling, rolling_caller = running(faults=FaultConfig(rate_limit_per_minute=2))
    answers = [rolling_caller.get(INFO) for _ in range(3)]
    assert answers[2].status_code == 429 and int(answers[2].headers["Retry-After"]) >= 1


def test_unknown_options_are_refused():
    for option, value in (("deployment", "moon"), ("key_role", "root"), ("plan", "free")):
        with pytest.raises(ValueError, match=option):
            SandboxServer(generate_org(seed=1, members=2, workspaces=1), **{option: value})
    with pytest.raises(ValueError, match="rate_limit_mode"):
        FaultConfig(rate_limit_mode="sometimes")


def test_cli_flags_play_the_deployment():
    process = subprocess.Popen(
        [CLI, "sandbox", "--members", "10", "--workspaces", "3", "--deployment", "self-hosted",
         "--key-role", "org-user", "--plan", "plus", "--anonymity-restricted",
         "--rate-limit-mode", "fixed-window", "--rate-limit-per-minute", "100",
         "--rate-limit-window-seconds", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = json.loads(process.stdout.readline())
        headers = {"X-API-Key": first["api_key"], "X-Organization-Id": first["organization_id"]}
        info = requests.get(first["url"] + INFO, headers=headers, timeout=10).json()
        assert info["config"]["can_use_rbac"] is False
        assert "organization:manage" not in info["permissions"]
        members = requests.get(first["url"] + API_ENRICHED, headers=headers, timeout=10)
        assert members.headers["X-Members-List-All-Workspaces"] == "false"
        assert members.headers["X-Members-Anonymity-Restricted"] == "true"
        page = requests.get(first["url"] + SPEC_ENRICHED, headers=headers, timeout=10)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    refused = subprocess.run([CLI, "sandbox", "--plan", "free"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--plan" in refused.stderr

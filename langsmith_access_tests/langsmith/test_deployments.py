"""The client on every real deployment: endpoints as users write them, platform routes under
/api/v1, answers that are not JSON, the fixed rate-limit window, and refused writes explained."""

from __future__ import annotations

from dataclasses import replace

import pytest

from langsmith_access.langsmith import (
    ConflictError,
    LangSmithClient,
    NotFoundError,
    NotLangSmithAPIError,
    PermissionDeniedError,
    RequestRejectedError,
    RouteNotAvailableError,
    TransientError,
)
from langsmith_access.langsmith.records import Role
from langsmith_access.langsmith.refusals import explain_write_refusal
from langsmith_access.sandbox import FaultConfig, SandboxServer, generate_org
from langsmith_access.sandbox.api import ApiResponse, HtmlPage
from langsmith_access.settings import ClientSettings, Settings, SettingsError

ENRICHED = "/api/v1/platform/orgs/current/members"


@pytest.fixture
def start_sandbox():
    started: list[SandboxServer] = []

    def start(**options) -> SandboxServer:
        server = SandboxServer(generate_org(seed=5, members=30, workspaces=4), **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def client(sandbox: SandboxServer, endpoint: str | None = None, **options) -> LangSmithClient:
    settings = Settings.from_env({
        "LANGSMITH_API_KEY": sandbox.api_key,
        "LANGSMITH_ORGANIZATION_ID": sandbox.organization_id,
        "LANGSMITH_ENDPOINT": endpoint if endpoint is not None else sandbox.url,
    }).client()
    defaults = {"read_timeout_seconds": 5.0, "connect_timeout_seconds": 2.0}
    return LangSmithClient(ClientSettings(**{**settings.__dict__, **defaults, **options}))


@pytest.mark.parametrize("written", [
    "{url}", "{url}/", "{url}/api/v1", "{url}/api/v1/", "{url}/api", " '{url}/api/v1/' ", '"{url}"',
])
def test_every_endpoint_form_reaches_the_same_api_on_a_self_hosted_install(start_sandbox, written):
    sandbox = start_sandbox(deployment="self-hosted")
    with client(sandbox, written.format(url=sandbox.url)) as api:
        assert api.endpoint == sandbox.url
        people = api.list_enriched_members()
        assert len([p for p in people if not p.is_pending]) == 30
        assert len(api.list_roles()) > 0
    paths = {entry.path for entry in sandbox.request_log}
    assert ENRICHED in paths
    assert not any(p.startswith("/v1/") or p.startswith("/api/v1/api") for p in paths), paths
    assert {entry.status for entry in sandbox.request_log} == {200}


def test_a_base_path_is_kept():
    settings = Settings.from_env({"LANGSMITH_ENDPOINT": "https://ls.example.com/langsmith/api/v1/"})
    assert settings.endpoint == "https://ls.example.com/langsmith"
    assert Settings.from_env({"LANGSMITH_ENDPOINT": "https://h.example/v1"}).endpoint == "https://h.example/v1"
    # One suffix is stripped, not every one: a basePath that ends in /api stays.
    assert Settings.from_env({"LANGSMITH_ENDPOINT": "https://h.example/api/api/v1"}).endpoint == "https://h.example/api"
    # The API suffix in any case (as pasted from a browser or a doc) is the suffix all the same.
    assert Settings.from_env({"LANGSMITH_ENDPOINT": "https://ls.example.com/API/V1"}).endpoint == "https://ls.example.com"
    for bad in ("api.smith.langchain.com", "ftp://h.example", "https://h.example/?q=1"):
        with pytest.raises(SettingsError, match="LANGSMITH_ENDPOINT"):
            Settings.from_env({"LANGSMITH_ENDPOINT": bad})


def test_an_html_page_with_200_is_a_configuration_error_never_data(start_sandbox):
    sandbox = start_sandbox(deployment="self-hosted")
    # The UI's address instead of the API's: every path lands on the web page.
    with client(sandbox, sandbox.url + "/ui") as api:
        for read in (api.list_roles, api.list_workspaces, api.list_org_members, api.get_organization_info):
            with pytest.raises(NotLangSmithAPIError, match="not a LangSmith API: check LANGSMITH_ENDPOINT") as raised:
                read()
            assert "text/html" in str(raised.value) and raised.value.status_code == 200


def test_an_html_page_on_the_enriched_route_means_route_not_available(start_sandbox):
    sandbox = start_sandbox(deployment="self-hosted")
    respond = sandbox.respond
    sandbox.respond = lambda request: (  # an install whose proxy has no platform rule
        ApiResponse(200, HtmlPage()) if request.path == ENRICHED else respond(request))
    with client(sandbox) as api:
        with pytest.raises(RouteNotAvailableError) as raised:
            api.list_enriched_members()
    assert "not JSON" in raised.value.reason
    sandbox.respond = respond
    sandbox.api.enriched_route = False
    with client(sandbox) as api:
        with pytest.raises(RouteNotAvailableError) as raised:
            api.list_enriched_members()
    assert "404" in raised.value.reason


def test_an_empty_2xx_that_is_not_json_is_a_configuration_error_never_an_applied_write(start_sandbox):
    """Rule 3 of langsmith-api.md ("Deployments and base URLs"): a 2xx whose Content-Type is not
    JSON is never LangSmith's answer, empty or not. An empty ``text/html`` 200 (a proxy's or a
    web UI's page) to a role change or a removal read as a write applied; to a listing, as a
    malformed page instead of a wrong LANGSMITH_ENDPOINT; on the enriched route, it failed the
    sync instead of falling back to the per-workspace routes."""
    sandbox = start_sandbox()
    org = sandbox.org
    workspace = org.shared_workspaces()[0]
    membership = next(iter(workspace.memberships.values()))
    held_role = membership.role_id
    viewer = org.role_by_name("WORKSPACE_VIEWER").id
    respond = sandbox.respond
    sandbox.respond = lambda request: (
        ApiResponse(200, HtmlPage(text="", content_type="text/html"))
        if request.method != "GET" or request.path in ("/api/v1/orgs/current/roles", ENRICHED)
        else respond(request))
    with client(sandbox) as api:
        for write in (lambda: api.set_workspace_member_role(workspace.id, membership.id, viewer),
                      lambda: api.remove_workspace_member(workspace.id, membership.id)):
            with pytest.raises(NotLangSmithAPIError, match="not a LangSmith API: check LANGSMITH_ENDPOINT") as raised:
                write()
            assert "text/html" in str(raised.value) and raised.value.status_code == 200
        with pytest.raises(NotLangSmithAPIError, match="text/html"):
            api.list_roles()
        with pytest.raises(RouteNotAvailableError) as unavailable:
            api.list_enriched_members()
        assert "not JSON" in unavailable.value.reason
    assert org.membership(workspace.id, membership.ls_user_id).role_id == held_role  # nothing was applied
    # LangSmith's own empty answers stay successes: 204, and 200 without a Content-Type.
    for answer in (ApiResponse(204), ApiResponse(200, HtmlPage(text="", content_type=""))):
        sandbox.respond = lambda request, answer=answer: answer if request.method == "DELETE" else respond(request)
        with client(sandbox) as api:
            assert api.remove_workspace_member(workspace.id, membership.id) is None


def test_a_429_without_retry_after_is_waited_out_to_the_end_of_the_window(start_sandbox):
    """The sandbox's window is 1 s (3 requests); the client's window setting matches. With one
    retry allowed, every refused call succeeds on its retry: the client waited out the window."""
    sandbox = start_sandbox(faults=FaultConfig(rate_limit_per_minute=3, rate_limit_mode="fixed-window",
                                               rate_limit_window_seconds=1))
    with client(sandbox, max_retries=1, rate_limit_window_seconds=1.0) as api:
        for _ in range(7):
            api.get_organization_info()
        stats = api.stats.snapshot()
    statuses = [entry.status for entry in sandbox.request_log]
    assert statuses.count(429) >= 2 and stats["rate_limited"] == statuses.count(429)
    assert all(after == 200 for before, after in zip(statuses, statuses[1:]) if before == 429)
    assert stats["retries"] == statuses.count(429) and stats["wait_seconds"] > 0


def test_retrying_inside_the_window_gives_up(start_sandbox):
    """Control: the same refusals with a client that waits far less than the window."""
    sandbox = start_sandbox(faults=FaultConfig(rate_limit_per_minute=2, rate_limit_mode="fixed-window",
                                               rate_limit_window_seconds=60))
    with client(sandbox, max_retries=2, rate_limit_window_seconds=0.01) as api:
        api.get_organization_info()
        api.get_organization_info()
        with pytest.raises(TransientError, match="rate limited"):
            api.get_organization_info()
    assert [e.status for e in sandbox.request_log] == [200, 200, 429, 429, 429]


def test_the_window_length_is_a_setting():
    assert Settings.from_env({}).rate_limit_window_seconds == 60
    env = {"LANGSMITH_ACCESS_RATE_LIMIT_WINDOW_SECONDS": "5"}
    assert Settings.from_env(env).rate_limit_window_seconds == 5
    with pytest.raises(SettingsError, match="LANGSMITH_ACCESS_RATE_LIMIT_WINDOW_SECONDS"):
        Settings.from_env({"LANGSMITH_ACCESS_RATE_LIMIT_WINDOW_SECONDS": "0"})


EDITOR = Role(id="r-editor", name="WORKSPACE_USER", display_name="Editor", description="",
              permissions=("workspaces:read",), organization_id=None, access_scope="workspace")
ADMIN = Role(id="r-admin", name="WORKSPACE_ADMIN", display_name="Admin", description="",
             permissions=("workspaces:manage-members",), organization_id=None, access_scope="workspace")


def refused(status: int = 403, method: str = "POST"):
    kind = PermissionDeniedError if status == 403 else RequestRejectedError
    return kind("refused", method=method, path="/api/v1/workspaces/current/members",
                status_code=status, detail="Forbidden")


def test_a_refused_non_admin_grant_on_a_plan_without_rbac_is_not_blamed_on_the_key():
    plus = {"config": {"can_use_rbac": False}}
    text = explain_write_refusal(refused(), role=EDITOR, org_info=plus)
    assert text.startswith("not in plan") and "can_use_rbac" in text and "Fix:" in text
    assert "Enterprise" in text and "Admin" in text and "403" in text
    # Admin is allowed on every plan: a refusal of Admin is the key's permissions.
    assert explain_write_refusal(refused(), role=ADMIN, org_info=plus).startswith("permission")
    enterprise = {"config": {"can_use_rbac": True}}
    text = explain_write_refusal(refused(), role=EDITOR, org_info=enterprise)
    assert text.startswith("permission") and "workspaces:manage-members" in text and "Fix:" in text
    # Flags unknown: both causes are named, as possibilities.
    unknown = explain_write_refusal(refused(), role=EDITOR, org_info=None)
    assert "workspaces:manage-members" in unknown and "Enterprise" in unknown
    # A read, or a conflict, is not a refusal to explain.
    assert explain_write_refusal(refused(method="GET"), role=EDITOR, org_info=plus) is None


def test_a_refusal_involving_a_restricted_role_names_the_built_in_admin_rule():
    restricted = replace(EDITOR, id="r-auditor", name="CUSTOM", display_name="Auditor", is_restricted=True)
    manager = replace(EDITOR, id="r-manager", name="CUSTOM", display_name="Member Manager",
                      permissions=("workspaces:read", "workspaces:manage-members"))
    enterprise = {"config": {"can_use_rbac": True}}
    for status in (403, 400):  # LangSmith documents no code for it
        for role, held in ((restricted, None), (EDITOR, restricted), (None, restricted)):
            text = explain_write_refusal(refused(status), role=role, org_info=enterprise,
                                         held_role=held, key_role_there=manager)
            assert text.startswith("restricted role: 'Auditor'"), text
            assert "'Member Manager'" in text and "built-in Workspace Admin" in text and "Fix:" in text
    # Holding the built-in Admin there, or where the listing names no role of the key's (an
    # Organization Admin's key), the refusal has another cause.
    for key_role in (ADMIN, None):
        text = explain_write_refusal(refused(), role=restricted, org_info=enterprise, key_role_there=key_role)
        assert text.startswith("permission"), text
    # A key that may not manage members there at all is refused for that.
    text = explain_write_refusal(refused(), role=restricted, org_info=enterprise, key_role_there=EDITOR)
    assert text.startswith("permission"), text
    # Not restricted: as before.
    assert explain_write_refusal(refused(), role=EDITOR, org_info=enterprise,
                                 key_role_there=manager).startswith("permission")


def test_a_refused_removal_or_admin_grant_is_the_keys_permissions_on_every_plan():
    # Removing a member and granting Admin need no workspace RBAC: never blamed on the plan.
    plus = {"config": {"can_use_rbac": False}}
    removal = explain_write_refusal(refused(method="DELETE"), role=EDITOR, org_info=plus)
    assert removal.startswith("permission: the API key may not manage this workspace's members"), removal
    for org_info in (None, plus):
        text = explain_write_refusal(refused(method="DELETE"), role=EDITOR, org_info=org_info)
        assert "Enterprise" not in text, text
        text = explain_write_refusal(refused(), role=ADMIN, org_info=org_info)
        assert text.startswith("permission") and "Enterprise" not in text, text
    # On Enterprise the plan is no possibility either.
    text = explain_write_refusal(refused(), role=EDITOR, org_info={"config": {"can_use_rbac": True}})
    assert "Enterprise" not in text, text


@pytest.mark.parametrize("error", [
    ConflictError("already a member", method="POST", path="/api/v1/workspaces/current/members", status_code=409),
    NotFoundError("no such member", method="DELETE", path="/api/v1/workspaces/current/members/m", status_code=404),
    TransientError("server error 502", method="PATCH", path="/api/v1/workspaces/current/members/m",
                   status_code=502, maybe_applied=True),
])
def test_a_write_that_failed_for_another_reason_than_a_refusal_is_not_explained_as_one(error):
    # A conflict, a missing id or a transient fault says what happened itself: explained as a
    # refusal ("rejected: ... invalid", "permission: ..."), it would send the operator after
    # the key's roles or the request's ids, and hide a write that may have been applied.
    for org_info in (None, {"config": {"can_use_rbac": False}}, {"config": {"can_use_rbac": True}}):
        assert explain_write_refusal(error, role=EDITOR, org_info=org_info) is None


def test_the_plan_is_blamed_by_name_and_the_servers_words_are_quoted():
    text = explain_write_refusal(refused(), role=EDITOR, org_info={"config": {"can_use_rbac": False}})
    assert "such as 'Editor'" in text and text.endswith("(LangSmith answered 403: Forbidden)"), text
    # The fix is the plan's or the request's: no role given to the key makes the plan grant it.
    assert ("Fix: request the Admin role instead, or move the organization to the Enterprise plan." in text
            and "service key" not in text), text


@pytest.mark.parametrize("org_info", [{"config": {"can_use_rbac": "false"}}, {"config": ["can_use_rbac"]},
                                      {"config": None}, {}])
def test_plan_flags_that_are_not_a_boolean_are_unknown(org_info):
    text = explain_write_refusal(refused(), role=EDITOR, org_info=org_info)
    assert text.startswith("permission") and "plan flags could not be read" in text, text


def test_a_request_refused_as_invalid_is_not_blamed_on_the_key():
    text = explain_write_refusal(refused(400), role=EDITOR, org_info={"config": {"can_use_rbac": True}})
    assert text.startswith("rejected: LangSmith refused the request as invalid. Fix: check the role and member")
    assert "manage-members" not in text and "400" in text


def test_of_two_restricted_roles_the_one_the_write_gives_is_named():
    auditor = replace(EDITOR, id="r-auditor", name="CUSTOM", display_name="Auditor", is_restricted=True)
    owner = replace(auditor, id="r-owner", display_name="Owner")
    manager = replace(EDITOR, name="CUSTOM", display_name="Member Manager",
                      permissions=("workspaces:manage-members",))
    text = explain_write_refusal(refused(), role=auditor, held_role=owner, org_info=None, key_role_there=manager)
    assert text.startswith("restricted role: 'Auditor'"), text


def test_a_refusal_the_server_gave_no_words_for_quotes_the_error_and_never_a_key():
    key = "lsv2_sk_" + "0123456789abcdef" * 2
    silent = PermissionDeniedError(f"refused {key}", method="POST", path="/api/v1/workspaces/current/members",
                                   status_code=403, detail="")
    text = explain_write_refusal(silent, role=EDITOR, org_info=None)
    assert text.endswith("(LangSmith answered 403: POST /api/v1/workspaces/current/members -> 403: refused lsv2_***)")
    echoed = PermissionDeniedError("refused", method="PATCH", path="/api/v1/workspaces/current/members/m",
                                   status_code=403, detail=f"key {key} lacks permission")
    text = explain_write_refusal(echoed, role=EDITOR, org_info=None)
    assert text.endswith("(LangSmith answered 403: key lsv2_*** lacks permission)") and key not in text

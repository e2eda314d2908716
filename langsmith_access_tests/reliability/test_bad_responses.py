"""Answers that are not what the API documents: truncated or invalid JSON, other shapes, required
fields missing, nulls, wrong types, extra fields. Each gives a clear error naming the request
and the field, or is tolerated exactly as the schema allows; none becomes a silently wrong row.

A ``TamperingProxy`` between the client and a sandbox rewrites answers byte for byte.
(test_records_and_pacing.py checks the record parsers on single payloads; here the same faults
arrive over HTTP, through the client, a sync and a provisioning run.)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest

from langsmith_access.api import list_requests, provision, request_grant
from langsmith_access.langsmith import LangSmithClient, NotLangSmithAPIError, UnexpectedResponseError
from langsmith_access.langsmith.errors import (
    IncompleteListingError,
    ProxyLoginError,
    ProxyRefusalError,
    RouteNotAvailableError,
)
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.settings import ClientSettings, Secret
from langsmith_access_tests.helpers import (
    actual_org_grants,
    actual_workspace_grants,
    cli_in_this_process,
    expected_org_grants,
    expected_workspace_grants,
    query,
    run_sync,
)
from langsmith_access_tests.langsmith.sandbox_client_support import read_everything
from langsmith_access_tests.reliability.conftest import database_state, writes
from langsmith_access_tests.reliability.tampering_proxy import Answer, TamperingProxy

ROLES = "/api/v1/orgs/current/roles"
WORKSPACES = "/api/v1/workspaces"
ACTIVE = "/api/v1/orgs/current/members/active"
PENDING = "/api/v1/orgs/current/members/pending"
ENRICHED = "/api/v1/platform/orgs/current/members"  # platform routes are called under /api/v1
WS_ACTIVE = "/api/v1/workspaces/current/members/active"
WS_MEMBERS = "/api/v1/workspaces/current/members"


@pytest.fixture(scope="module")
def sandbox():
    with SandboxServer(generate_org(seed=7, members=40, workspaces=5)) as server:
        yield server


@pytest.fixture
def proxy(sandbox):
    with TamperingProxy(sandbox.url) as proxy:
        yield proxy


def client_via(proxy: TamperingProxy, sandbox: SandboxServer) -> LangSmithClient:
    return LangSmithClient(ClientSettings(
        api_key=Secret(sandbox.api_key), organization_id=sandbox.organization_id, endpoint=proxy.url,
        requests_per_minute=60_000, read_timeout_seconds=5, max_retries=0,
    ))


# ------------------------------------------------------------------ ways to garble an answer


def truncated(answer: Answer) -> Answer:
    return answer.replace(body=answer.body[: len(answer.body) // 2])


def html_page(answer: Answer) -> Answer:
    return answer.replace(body=b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                          headers={**answer.headers, "Content-Type": "text/html"})


def empty(answer: Answer) -> Answer:
    return answer.replace(body=b"")


def wrapped_in_object(answer: Answer) -> Answer:
    return answer.with_json({"items": answer.json()})


def strings(answer: Answer) -> Answer:
    return answer.with_json(["admin", "viewer"])


def in_row(index: int, change):
    """Apply ``change(row)`` to one row of a JSON array answer."""
    def tamper(answer: Answer) -> Answer:
        rows = answer.json()
        change(rows[min(index, len(rows) - 1)])
        return answer.with_json(rows)
    return tamper


def without(field: str, index: int = 0):
    return in_row(index, lambda row: row.pop(field))


def set_to(field: str, value, index: int = 0):
    return in_row(index, lambda row: row.__setitem__(field, value))


def header(name: str, value: str):
    return lambda answer: answer.replace(headers={**answer.headers, name: value})


def on(path: str, change):
    """Tamper only with successful answers to ``path``."""
    return lambda answer: change(answer) if answer.path == path and answer.status == 200 else answer


@contextlib.contextmanager
def one_try_through_a_tampering_proxy(sandbox, monkeypatch, route: str, change) -> Iterator[TamperingProxy]:
    """The environment's runs reach the sandbox through a proxy that applies ``change`` to the
    answers on ``route``, with no retry to hide a garbled answer behind a good one."""
    with TamperingProxy(sandbox.url) as proxy:
        monkeypatch.setenv("LANGSMITH_ENDPOINT", proxy.url)
        monkeypatch.setenv("LANGSMITH_ACCESS_MAX_RETRIES", "0")
        proxy.tamper = on(route, change)
        yield proxy


def first_workspace(sandbox):
    return sandbox.org.shared_workspaces()[0].id


CALLS = {
    ROLES: lambda client, sb: client.list_roles(),
    WORKSPACES: lambda client, sb: client.list_workspaces(),
    ACTIVE: lambda client, sb: client.list_org_members(),
    PENDING: lambda client, sb: client.list_pending_invites(),
    ENRICHED: lambda client, sb: client.list_enriched_members(),
    WS_ACTIVE: lambda client, sb: client.list_workspace_members(first_workspace(sb)),
}

# A 2xx that is not JSON, or does not parse, is a configuration error (langsmith-api.md rule 3).
NOT_A_LANGSMITH_API = ["not a LangSmith API: check LANGSMITH_ENDPOINT", "answered 200"]
NOT_PARSED = [*NOT_A_LANGSMITH_API, "does not parse as JSON", "'application/json'", "bytes",
              "a proxy cutting answers short"]

# (id, route, tamper, error type, what the message must say)
GARBLED = [
    ("truncated-json-roles", ROLES, truncated, NotLangSmithAPIError, NOT_PARSED),
    ("truncated-json-members-page", ACTIVE, truncated, NotLangSmithAPIError, NOT_PARSED),
    ("truncated-json-workspace-members", WS_ACTIVE, truncated, NotLangSmithAPIError, NOT_PARSED),
    ("html-instead-of-json", WORKSPACES, html_page, NotLangSmithAPIError, [*NOT_A_LANGSMITH_API, "not JSON", "'text/html'"]),
    # The enriched route alone reads it as "not available here" (DESIGN.md section 8).
    ("truncated-json-enriched", ENRICHED, truncated, RouteNotAvailableError, NOT_PARSED),
    ("empty-200-body", ROLES, empty, UnexpectedResponseError, ["expected a JSON list, got NoneType"]),
    ("object-instead-of-array", ACTIVE, wrapped_in_object, UnexpectedResponseError, ["expected a JSON array page, got dict"]),
    ("strings-instead-of-records", ROLES, strings, UnexpectedResponseError, ["expected a JSON object for Role, got str"]),
    ("role-missing-permissions", ROLES, without("permissions", 2), UnexpectedResponseError, ["Role.permissions"]),
    ("role-permissions-a-string", ROLES, set_to("permissions", "a,b"), UnexpectedResponseError, ["Role.permissions", "a list of strings"]),
    ("role-unknown-scope", ROLES, set_to("access_scope", "galaxy"), UnexpectedResponseError, ["Role.access_scope", "galaxy"]),
    ("workspace-missing-is_deleted", WORKSPACES, without("is_deleted", 3), UnexpectedResponseError, ["TenantForUser.is_deleted"]),
    ("workspace-null-is_personal", WORKSPACES, set_to("is_personal", None), UnexpectedResponseError, ["TenantForUser.is_personal", "got NoneType"]),
    ("member-missing-ls_user_id", ACTIVE, without("ls_user_id", 17), UnexpectedResponseError, ["OrgMemberIdentity.ls_user_id", "record id"]),
    ("member-null-id", ACTIVE, set_to("id", None, 5), UnexpectedResponseError, ["OrgMemberIdentity.id"]),
    ("member-null-created_at", ACTIVE, set_to("created_at", None), UnexpectedResponseError, ["OrgMemberIdentity.created_at"]),
    ("member-bad-date", ACTIVE, set_to("created_at", "yesterday"), UnexpectedResponseError, ["OrgMemberIdentity.created_at", "ISO 8601"]),
    ("member-is_disabled-a-string", ACTIVE, set_to("is_disabled", "false"), UnexpectedResponseError, ["OrgMemberIdentity.is_disabled", "got str"]),
    ("member-email-a-number", ACTIVE, set_to("email", 42), UnexpectedResponseError, ["OrgMemberIdentity.email", "got int"]),
    ("invite-missing-email", PENDING, without("email"), UnexpectedResponseError, ["OrgPendingIdentity.email"]),
    ("workspace-member-missing-id", WS_ACTIVE, without("id"), UnexpectedResponseError, ["MemberIdentity.id", "(workspace "]),
    ("workspace-member-of-another-workspace", WS_ACTIVE, set_to("tenant_id", "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"), UnexpectedResponseError, ["MemberIdentity.tenant_id", "aaaaaaaa-1111"]),
    ("enriched-active-without-ls_user_id", ENRICHED, in_row(0, lambda r: r.update(is_pending=False, ls_user_id=None)), UnexpectedResponseError, ["OrgMemberEnriched.ls_user_id", "active member"]),
    ("enriched-memberships-not-a-list", ENRICHED, set_to("workspace_memberships", {"ws": "Admin"}), UnexpectedResponseError, ["workspace_memberships", "a list"]),
    ("enriched-membership-missing-workspace", ENRICHED, in_row(0, lambda r: r.update(workspace_memberships=[*(r.get("workspace_memberships") or []), {"role_id": "x"}])), UnexpectedResponseError, ["WorkspaceMembership.workspace_id"]),
    ("pagination-total-not-a-number", ACTIVE, header("X-Pagination-Total", "many"), UnexpectedResponseError, ["X-Pagination-Total is not a number"]),
    ("pagination-total-wrong", ACTIVE, header("X-Pagination-Total", "41"), IncompleteListingError, ["40 distinct rows", "reported 41"]),
]


@pytest.mark.parametrize("route, tamper, error_type, says", [case[1:] for case in GARBLED],
                         ids=[case[0] for case in GARBLED])
def test_a_garbled_answer_is_a_clear_error_naming_the_request(sandbox, proxy, route, tamper, error_type, says):
    proxy.tamper = on(route, tamper)
    with client_via(proxy, sandbox) as client, pytest.raises(error_type) as caught:
        CALLS[route](client, sandbox)
    assert proxy.tampered, "the answer was garbled"
    message = str(caught.value)
    assert f"GET {route}" in message and caught.value.path == route
    for text in says:
        assert text in message, message
    assert sandbox.api_key not in message
    # What came back is described, never quoted.
    assert not any(answer.body[:24].decode(errors="replace") in message
                   for answer in proxy.tampered if len(answer.body) >= 24), message


def with_extra_fields(value):
    """Every JSON object, nested ones included, gains fields the client does not know."""
    if isinstance(value, dict):
        return {**{k: with_extra_fields(v) for k, v in value.items()},
                "brand_new_field": {"nested": [1, None]}, "zz_flag": True}
    if isinstance(value, list):
        return [with_extra_fields(v) for v in value]
    return value


def test_extra_fields_everywhere_change_nothing(sandbox, proxy):
    with LangSmithClient(ClientSettings(api_key=Secret(sandbox.api_key), organization_id=sandbox.organization_id,
                                        endpoint=sandbox.url, requests_per_minute=60_000)) as direct:
        expected = read_everything(direct)
    proxy.tamper = lambda answer: answer.with_json(with_extra_fields(answer.json())) if answer.status == 200 else answer
    with client_via(proxy, sandbox) as client:
        assert read_everything(client) == expected
    assert len(proxy.tampered) >= 7


OPTIONAL_NULLS = {ACTIVE: ("email", "full_name", "display_name", "user_id", "tenant_ids", "avatar_url"),
                  WORKSPACES: ("tenant_handle", "organization_id"),
                  ROLES: ("description", "organization_id"),
                  PENDING: ("workspace_ids", "workspace_role_id")}


def test_nulls_the_schema_allows_are_read_as_nulls_and_nothing_else_changes(sandbox, proxy):
    with client_via(proxy, sandbox) as client:
        expected = read_everything(client)

    def nulls(answer: Answer) -> Answer:
        fields = OPTIONAL_NULLS.get(answer.path)
        if not fields or answer.status != 200:
            return answer
        return answer.with_json([{**row, **{f: None for f in fields}} for row in answer.json()])

    proxy.tamper = nulls
    with client_via(proxy, sandbox) as client:
        got = read_everything(client)
    assert [(m.email, m.full_name, m.user_id) for m in got["members"]] == [(None, None, None)] * 40
    assert [(m.id, m.ls_user_id, m.role_id, m.is_disabled, m.created_at) for m in got["members"]] == [
        (m.id, m.ls_user_id, m.role_id, m.is_disabled, m.created_at) for m in expected["members"]]
    assert [(w.id, w.tenant_handle, w.is_shared) for w in got["workspaces"]] == [
        (w.id, None, w.is_shared) for w in expected["workspaces"]]
    assert [(r.id, r.description, r.access_scope, r.permissions) for r in got["roles"]] == [
        (r.id, "", r.access_scope, r.permissions) for r in expected["roles"]]
    # A null workspace_ids is read from tenant_ids, the same workspaces (never null in the spec).
    assert [(p.id, p.email, p.workspace_ids) for p in got["pending"]] == [
        (p.id, p.email, p.workspace_ids) for p in expected["pending"]]
    assert any(p.workspace_ids for p in got["pending"])
    assert got["workspace_members"] == expected["workspace_members"]


# ------------------------------------------------------------------ through a whole sync


def missing_role_on_a_workspace_member(answer: Answer) -> Answer:
    """The schema lets MemberIdentity.role_id be null; a grant without a role must not be built."""
    rows = answer.json()
    if rows:
        rows[0]["role_id"] = rows[0]["role_name"] = None
    return answer.with_json(rows)


SYNC_CASES = [
    ("truncated-json-on-page-2", ACTIVE,
     lambda a: truncated(a) if a.query.get("offset") == ["500"] else a, [f"GET {ACTIVE}", *NOT_PARSED]),
    ("member-missing-ls_user_id", ACTIVE, without("ls_user_id", 250), [f"GET {ACTIVE}", "OrgMemberIdentity.ls_user_id"]),
    ("workspaces-not-an-array", WORKSPACES, wrapped_in_object, [f"GET {WORKSPACES}", "expected a JSON list, got dict"]),
    ("workspace-member-with-null-role", WS_ACTIVE, missing_role_on_a_workspace_member, ["role_id"]),
]


@pytest.mark.parametrize("route, tamper, says", [case[1:] for case in SYNC_CASES],
                         ids=[case[0] for case in SYNC_CASES])
def test_a_sync_fed_a_garbled_answer_fails_and_publishes_nothing(start_env, monkeypatch, route, tamper, says):
    sandbox, org, database = start_env(enriched_route=False)
    before = database_state(database)
    with one_try_through_a_tampering_proxy(sandbox, monkeypatch, route, tamper) as proxy:
        outcome = run_sync()
    assert proxy.tampered
    assert not outcome.success
    reported = " ".join([outcome.failure or "", *outcome.failed_checks, *outcome.dbt_errors])
    for text in says:
        assert text in reported, reported
    assert database_state(database) == before


# ------------------------------------------------------------------ JSON that does not parse, by route

ON_PAGE_2 = {"first-page": truncated,
             "page-2": lambda a: truncated(a) if a.query.get("offset") == ["500"] else a}


@pytest.mark.parametrize("tamper", ON_PAGE_2.values(), ids=ON_PAGE_2.keys())
def test_garbled_json_on_the_enriched_route_falls_back_to_each_workspace_and_says_why(start_env, monkeypatch,
                                                                                       tamper):
    """"Route not available here": the sync reads each workspace instead, drops what the enriched
    pages before the garbled one delivered, and records why in route_reason."""
    sandbox, org, database = start_env()
    with one_try_through_a_tampering_proxy(sandbox, monkeypatch, ENRICHED, tamper) as proxy:
        outcome = run_sync()
    assert proxy.tampered
    assert outcome.success, outcome.failure
    [(route, reason)] = query(database.path, "SELECT membership_route, route_reason FROM main.sync_runs "
                                             "ORDER BY finished_at DESC LIMIT 1")
    assert route == "workspace_members"
    assert "the enriched members route answered 200 with a body that does not parse as JSON" in reason, reason
    assert "'application/json'" in reason and "bytes" in reason
    assert actual_workspace_grants(database.path) == expected_workspace_grants(org)
    assert actual_org_grants(database.path) == expected_org_grants(org)
    assert query(database.path, "SELECT count(*) - count(DISTINCT grant_id) FROM main.grants") == [(0,)]


def proxy_refusal(answer: Answer) -> Answer:
    return answer.replace(status=403, headers={"Content-Type": "text/html"}, body=b"<html>Access denied</html>")


def gateway_login(answer: Answer) -> Answer:
    return answer.replace(status=401, headers={"Content-Type": "text/html"}, body=b"<html>Sign in</html>")


@pytest.mark.parametrize("tamper, says, fix", [
    (truncated, f"GET {ROLES} -> 200: not a LangSmith API: check LANGSMITH_ENDPOINT", NotLangSmithAPIError.fix),
    # Not LangSmith refusing the key: the fix is the proxy's, not the key's roles.
    (proxy_refusal, f"GET {ROLES} -> 403: refused with no JSON body", ProxyRefusalError.fix),
    # A single sign-on gateway's login page: not LangSmith refusing the key (AuthenticationError's fix).
    (gateway_login, f"GET {ROLES} -> 401: refused with no JSON body", ProxyLoginError.fix),
], ids=["garbled-json", "proxy-403", "gateway-login-401"])
def test_an_answer_langsmith_never_sent_stops_the_sync_with_its_own_fix(start_env, monkeypatch, tamper, says, fix):
    """A configuration error, exit 1: the fix says what to change (LANGSMITH_ENDPOINT, the proxy),
    and nothing is published."""
    sandbox, org, database = start_env()
    before = database_state(database)
    with one_try_through_a_tampering_proxy(sandbox, monkeypatch, ROLES, tamper) as proxy:
        result = cli_in_this_process("sync", "--quiet")
    assert proxy.tampered
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Sync failed: " in result.stderr, result.stderr
    assert says in result.stderr, result.stderr
    assert f"fix: {fix}" in result.stderr, result.stderr
    if tamper is proxy_refusal:  # the proxy's words, not the key's roles (PermissionDeniedError's)
        assert "fix: a proxy or firewall" in result.stderr and "roles it needs" not in result.stderr
    if tamper is gateway_login:  # the gateway's login, not a new key (AuthenticationError's)
        assert "LANGSMITH_API_KEY" not in result.stderr
    assert sandbox.api_key not in result.stdout + result.stderr
    assert database_state(database) == before


# ------------------------------------------------------------------ the answer to a write


def test_a_garbled_answer_to_an_applied_write_is_verified_not_resent(start_env, monkeypatch):
    """LangSmith applied the POST but its answer arrived truncated: the request is settled by
    reading live state (applied, verified), the POST is not sent again."""
    sandbox, org, database = start_env()
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships)
    request = request_grant(outsider.ls_user_id, workspace.id, "Editor")
    assert request.accepted
    with TamperingProxy(sandbox.url) as proxy:
        monkeypatch.setenv("LANGSMITH_ENDPOINT", proxy.url)
        proxy.tamper = lambda a: truncated(a) if a.method == "POST" else a
        outcome = provision()
    assert outcome.success, outcome.failure
    [result] = outcome.outputs["apply_requests"]["outcomes"]
    assert (result["status"], result["detail"].startswith("verified")) == ("applied", True), result
    assert [w.method for w in writes(sandbox)] == ["POST"]
    assert org.membership(workspace.id, outsider.ls_user_id) is not None
    assert [r["status"] for r in list_requests()] == ["applied"]
    events = query(database.path, "SELECT kind, detail FROM main.provisioning_events WHERE request_id = ? "
                                  'ORDER BY "at"', [request.request_id])
    uncertain = [json.loads(detail) for kind, detail in events if kind == "write_uncertain"]
    assert uncertain and "does not parse as JSON" in uncertain[0]["error"]

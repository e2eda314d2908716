"""The client's reads of the access picture (DESIGN.md section 9) against the sandbox, over real
HTTP: each route gives exactly the sandbox's records; workspace keys take one call per
workspace; the audit log is read by an explicit, inclusive window, oldest first, across pages;
a section the plan, the key or the install lacks is a skip with its reason, and every other
failure stays a failure; no secret is ever kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from langsmith_access.langsmith import (
    IncompleteListingError,
    NotFoundError,
    NotLangSmithAPIError,
    PermissionDeniedError,
    ProxyRefusalError,
    SectionUnavailableError,
    TransientError,
    UnexpectedResponseError,
    WorkspaceGoneError,
)
from langsmith_access.langsmith.access_records import redact_short_key
from langsmith_access.sandbox import FaultConfig, SandboxServer, generate_org
from langsmith_access.sandbox.access_records import (
    PERSONAL_ACCESS_TOKEN,
    SERVICE_KEY,
    WORKSPACE_SERVICE_KEY,
)
from langsmith_access.sandbox.api import ApiResponse, HtmlPage
from langsmith_access.sync.inventory import get_inventory
from langsmith_access_tests.langsmith.sandbox_client_support import (
    RecordingSleep,
    client_for,
    expect_error,
    heal_after,
    ids_in_capitals,
    wrap_respond,
)

T0 = 1_900_000_000  # 2030-03-17T17:46:40Z: after every generated event
AUDIT = "/api/v1/audit-logs"
EVERYTHING = (datetime(2024, 1, 1, tzinfo=UTC), datetime.fromtimestamp(T0 + 3600, tz=UTC))


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@pytest.fixture
def serve():
    """``serve(plan=..., **server_options)``: a sandbox (org generated for that plan, its clock
    at T0) and a client for it."""
    started = []

    def make(plan: str = "enterprise", *, members: int = 40, sleep=None, **options):
        # Seen a second before T0, so its audit history is still kept (400 days) at T0.
        org = generate_org(seed=7, members=members, workspaces=5, plan=plan, now=T0 - 1)
        org.clock = lambda: T0
        server = SandboxServer(org, plan=plan, **options).start()
        client = client_for(server, sleep=sleep or RecordingSleep())
        started.append((server, client))
        return server, client

    yield make
    for server, client in started:
        client.close()
        server.stop()


def test_each_listing_is_the_sandboxs_records(serve):
    sandbox, client = serve()
    org = sandbox.org
    keys = {k.id: k for k in org.api_keys.values()}

    service_keys = client.list_service_keys()
    assert {c.id for c in service_keys} == {k.id for k in keys.values() if k.kind == SERVICE_KEY}
    for credential in service_keys:
        key = keys[credential.id]
        assert credential.kind == "service_key" and credential.short_key == key.short_key
        assert credential.role_id == key.role_id and credential.org_role_id == key.org_role_id
        assert (credential.revoked_at is None) == (key.revoked_at is None)
        assert (credential.expires_at is None) == (key.expires_at is None)
        assert (credential.last_used_at is None) == (key.last_used_at is None)
        assert credential.workspace_names is None if key.workspace_ids is None else credential.workspace_names
        assert not credential.secret_redacted

    tokens = client.list_personal_access_tokens()
    assert {c.id for c in tokens} == {k.id for k in keys.values() if k.kind == PERSONAL_ACCESS_TOKEN}
    scim = client.list_scim_tokens()
    assert {c.id for c in scim} == set(org.scim_tokens) and {c.kind for c in scim} == {"scim_token"}
    assert client.get_scim_token(scim[0].id) == scim[0]
    assert {a.id for a in client.list_service_accounts()} == set(org.service_accounts)
    sso = client.list_sso_settings()
    assert sorted((s.id, s.provider_id, s.has_metadata_xml, s.attribute_mapping_load_error) for s in sso) == sorted(
        (p.id, p.provider_id, bool(p.metadata_xml), p.attribute_mapping_load_error) for p in org.sso_providers.values())
    policies = {p.id: p for p in client.list_access_policies()}
    assert set(policies) == set(org.access_policies)
    for policy_id, policy in policies.items():
        expected = org.access_policies[policy_id]
        assert policy.effect == expected.effect and list(policy.role_ids) == expected.role_ids
        assert len(policy.condition_groups) == len(expected.condition_groups)
        assert client.get_access_policy(policy_id) == policy
    with pytest.raises(NotFoundError) as unknown:
        client.get_access_policy(org.organization_id)  # a 404 on an id is an unknown id, not a skip
    assert not isinstance(unknown.value, SectionUnavailableError)


def test_workspace_keys_take_one_call_per_workspace(serve):
    sandbox, client = serve()
    org = sandbox.org
    workspaces = [w.id for w in org.shared_workspaces()]
    sandbox.reset_log()
    by_workspace = client.list_service_keys_of_workspaces(workspaces)
    calls = sandbox.requests_matching("GET", "/api/v1/api-key")
    assert sorted(c.tenant_id for c in calls) == sorted(workspaces)
    for workspace_id, credentials in by_workspace.items():
        assert {c.id for c in credentials} == {
            k.id for k in org.api_keys.values()
            if k.kind == WORKSPACE_SERVICE_KEY and k.workspace_ids == [workspace_id]
        }
        assert all(c.workspace_id == workspace_id and c.kind == "workspace_service_key" for c in credentials)
    assert any(by_workspace.values())


def test_resource_tags_are_every_tagging_of_each_workspace_in_one_call_each(serve):
    """Every tag value on every resource, read from /taggings with each workspace's X-Tenant-Id:
    the sandbox's taggings, but an evaluator's (``TaggingsByResourceType`` has no bucket for it,
    and no access policy names that type), with the resource type as the policies name it."""
    sandbox, client = serve()
    org = sandbox.org
    shared = [w.id for w in org.shared_workspaces()]
    sandbox.reset_log()
    by_workspace = client.list_resource_tags_of_workspaces(shared)
    calls = sandbox.requests_matching("GET", "/api/v1/workspaces/current/taggings")
    assert sorted(c.tenant_id for c in calls) == sorted(shared) and len(sandbox.request_log) == len(shared)
    for workspace_id in shared:
        expected = {
            (tagging.id, key.id, key.key, value.id, value.value, tagging.resource_type, tagging.resource_id,
             tagging.resource_name)
            for key in org.workspaces[workspace_id].tag_keys.values()
            for value in key.values.values()
            for tagging in value.taggings.values()
            if tagging.resource_type != "evaluator"
        }
        assert {(t.id, t.tag_key_id, t.tag_key, t.tag_value_id, t.tag_value, t.resource_type, t.resource_id,
                 t.resource_name) for t in by_workspace[workspace_id]} == expected
        assert all(t.workspace_id == workspace_id for t in by_workspace[workspace_id])
    assert sum(map(len, by_workspace.values())) > 5


def test_a_go_routes_empty_list_sent_as_null_reads_as_empty(serve):
    # The platform routes are Go, which encodes a list it never appended to as `null`: an org
    # without SCIM tokens yet may get that for its token listing.
    sandbox, client = serve()
    with sandbox.org.lock:
        sandbox.org.scim_tokens.clear()

    def null_when_empty(respond, request):
        response = respond(request)
        if request.path.endswith("/scim/tokens") and response.status == 200 and response.body == []:
            response.body = None  # sent as `null`
        return response

    wrap_respond(sandbox, null_when_empty)
    assert client.list_scim_tokens() == []
    assert sandbox.requests_matching("GET", "/api/v1/platform/orgs/current/scim/tokens")


def test_login_methods_and_scim_groups_reach_the_member_records(serve):
    sandbox, client = serve()
    org = sandbox.org
    for member in client.list_org_members():
        expected = org.members[member.ls_user_id].linked_login_methods
        assert [(m.provider, m.provisioning_method) for m in member.login_methods] == [
            (m.provider, m.provisioning_method) for m in expected
        ]
    enriched = [m for m in client.list_enriched_members() if not m.is_pending]
    assert any(m.scim_groups for m in enriched)
    for member in enriched:
        source = org.members[member.ls_user_id]
        assert [g.name for g in member.scim_groups] == [g.name for g in source.scim_groups]
        assert [m.provisioning_method for m in member.login_methods] == [
            m.provisioning_method for m in source.linked_login_methods
        ]


def test_the_audit_window_is_inclusive_ordered_and_paged(serve):
    sandbox, client = serve()
    org = sandbox.org
    members = org.active_members()
    start_ms = T0 * 1000
    # 250 logins a millisecond apart (three pages of 100), and one on each side just outside.
    for offset in range(-1, 251):
        org.record_login(members[offset % len(members)].ls_user_id, time_ms=start_ms + offset)
    sandbox.reset_log()
    window = client.list_audit_events(at(start_ms), at(start_ms + 249))
    assert [e.at for e in window.events] == [at(start_ms + n) for n in range(250)]
    assert window.pages == 3 == len(sandbox.requests_matching("GET", AUDIT))
    assert window.start == at(start_ms) and window.end == at(start_ms + 249)
    first = sandbox.requests_matching("GET", AUDIT)[0].query
    assert first["start_time"] == ["2030-03-17T17:46:40.000Z"] and first["limit"] == ["100"]
    # Overlapping windows both hold the overlap: de-duplicating across windows is the caller's.
    earlier = client.list_audit_events(at(start_ms - 1), at(start_ms + 10))
    later = client.list_audit_events(at(start_ms + 5), at(start_ms + 20))
    overlap = {e.event_id for e in earlier} & {e.event_id for e in later}
    assert len(overlap) == 6 and len(earlier) == 12


def test_events_of_one_millisecond_across_a_page_boundary_are_each_read_once(serve):
    # 150 logins in the same millisecond: the first page ends among them, and the next must start
    # right after the last one read (the order is time, then id), neither repeating nor skipping.
    sandbox, client = serve()
    org = sandbox.org
    members = org.active_members()
    same_ms = T0 * 1000 - 500
    logged = {org.record_login(members[n % len(members)].ls_user_id, time_ms=same_ms).id for n in range(150)}
    sandbox.reset_log()
    window = client.list_audit_events(at(same_ms), at(same_ms))
    assert window.pages == 2 and len(window.events) == 150
    assert {e.event_id for e in window.events} == logged


def member_added_who_then_logged_in(sandbox, client):
    """Through ``client``, a member added to the first shared workspace as Viewer, who then logs
    in: two audit events at T0. Returns (the workspace, T0 as a datetime)."""
    org = sandbox.org
    workspace = org.shared_workspaces()[0]
    member = next(m for m in org.active_members() if org.membership(workspace.id, m.ls_user_id) is None)
    client.add_workspace_member(workspace.id, org_identity_id=member.id,
                                role_id=org.role_by_name("WORKSPACE_VIEWER").id)
    org.record_login(member.ls_user_id)
    return workspace, datetime.fromtimestamp(T0, tz=UTC)


def test_the_audit_window_filters_and_validates(serve):
    sandbox, client = serve()
    org = sandbox.org
    workspace, now = member_added_who_then_logged_in(sandbox, client)
    changes = client.list_audit_events(now, now, operations=["add_member_to_workspace"])
    assert [e.operation for e in changes] == ["add_member_to_workspace"]
    change = changes.events[0]
    assert change.workspace_id == workspace.id and change.succeeded is True
    assert change.credential_id == org.api_key_by_secret(sandbox.api_key).id
    assert [e.operation for e in client.list_audit_events(now, now, workspace_id=workspace.id)] == [
        "add_member_to_workspace"
    ]
    assert {e.operation for e in client.list_audit_events(now, now)} == {"add_member_to_workspace", "login"}
    with pytest.raises(ValueError, match="timezone-aware"):
        client.list_audit_events(datetime(2030, 1, 1), now)
    with pytest.raises(ValueError, match="after end"):
        client.list_audit_events(now, now - timedelta(seconds=1))


def test_the_generated_history_reads_back_whole(serve):
    sandbox, client = serve(members=150)
    history = sandbox.org.audit_log.events()
    window = client.list_audit_events(*EVERYTHING)
    assert {e.event_id for e in window} == {e.id for e in history}
    assert window.pages == len(history) // 100 + 1


def test_an_audit_log_whose_pages_do_not_move_on_stops_instead_of_looping(serve):
    sandbox, client = serve(members=80)
    assert len(sandbox.org.audit_log) > 100  # more than one page: the first one has a cursor

    first_cursor: list[str] = []

    def same_cursor_forever(original, request):
        response = original(request)
        if request.path == AUDIT and response.status == 200:
            first_cursor.append(first_cursor[0] if first_cursor else response.body["cursor"])
            response.body["cursor"] = first_cursor[0]  # every page points back at page two
        return response

    wrap_respond(sandbox, same_cursor_forever)
    with pytest.raises(IncompleteListingError, match="do not move on"):
        client.list_audit_events(*EVERYTHING)
    assert len(sandbox.requests_matching("GET", AUDIT)) == 2


@pytest.mark.parametrize(
    ("plan", "key_role", "section", "read", "reason"),
    [
        ("plus", "org-admin", "access_policies", lambda c: c.list_access_policies(), "config.can_use_abac is false"),
        ("plus", "org-admin", "audit_events", lambda c: c.list_audit_events(*EVERYTHING),
         "config.can_use_audit_logs is false"),
        ("plus", "org-admin", "scim_tokens", lambda c: c.list_scim_tokens(), "config.can_use_saml_sso is false"),
        ("plus", "org-admin", "sso_settings", lambda c: c.list_sso_settings(), "config.can_use_saml_sso is false"),
        ("enterprise", "org-user", "audit_events", lambda c: c.list_audit_events(*EVERYTHING),
         "lacks organization:manage"),
        ("enterprise", "org-viewer", "personal_access_tokens", lambda c: c.list_personal_access_tokens(),
         "read-only"),
    ],
)
def test_a_403_the_plan_or_key_explains_is_a_skip_with_its_reason(serve, plan, key_role, section, read, reason):
    sandbox, client = serve(plan, key_role=key_role)
    refused = expect_error(SectionUnavailableError, lambda: read(client), keys=[sandbox.api_key])
    assert refused.section == section and reason in refused.reason
    assert "403" in refused.reason and refused.status_code == 403
    assert client.section_plan().skipped[section] in refused.reason


@pytest.mark.parametrize(
    ("section", "read"),
    [
        ("access_policies", lambda c, w: c.list_access_policies()),
        ("audit_events", lambda c, w: c.list_audit_events(*EVERYTHING)),
        ("service_keys", lambda c, w: c.list_service_keys()),
        ("personal_access_tokens", lambda c, w: c.list_personal_access_tokens()),
        ("workspace_service_keys", lambda c, w: c.list_service_keys_of_workspaces(w)),
        ("scim_tokens", lambda c, w: c.list_scim_tokens()),
        ("service_accounts", lambda c, w: c.list_service_accounts()),
        ("sso_settings", lambda c, w: c.list_sso_settings()),
        ("resource_tags", lambda c, w: c.list_resource_tags_of_workspaces(w)),
    ],
)
def test_a_section_an_older_install_lacks_is_a_skip(serve, section, read):
    sandbox, client = serve(missing_sections=(section,))
    workspaces = [w.id for w in sandbox.org.shared_workspaces()]
    with pytest.raises(SectionUnavailableError) as missing:
        read(client, workspaces)
    assert missing.value.section == section and "answered 404" in missing.value.reason
    assert client.section_plan().should_read(section), "the plan did not know: the install told"


def test_a_workspace_gone_since_it_was_listed_is_a_failure_not_a_skip(serve):
    sandbox, client = serve()
    workspace = sandbox.org.shared_workspaces()[0]
    sandbox.org.delete_workspace(workspace.id)
    with pytest.raises(NotFoundError, match="gone") as gone:
        client.list_workspace_service_keys(workspace.id)
    assert not isinstance(gone.value, SectionUnavailableError)
    assert isinstance(gone.value, WorkspaceGoneError) and gone.value.workspace_id == workspace.id


@pytest.mark.parametrize("answered", [404, 403])
def test_the_inventory_reads_past_a_workspace_deleted_since_it_was_listed(serve, answered):
    """Its keys went with it: the inventory reads the other workspaces' keys and goes on (it
    failed its run on this before; deleting a workspace is routine). LangSmith may answer the
    deleted workspace's route with 404 (as the sandbox does) or 403. Its resource tags too: the
    others' are read, the section is not skipped for an install without the route."""
    sandbox, client = serve()
    org = sandbox.org
    if answered == 403:
        def forbidden_for_gone(original, request):
            response = original(request)
            gone = request.path in ("/api/v1/api-key", "/api/v1/workspaces/current/taggings") and response.status == 404
            return ApiResponse(403, {"error": "Forbidden"}) if gone else response

        wrap_respond(sandbox, forbidden_for_gone)
    shared = [w.id for w in org.shared_workspaces()]
    deleted = next(w for w in shared if any(k.workspace_ids == [w] for k in org.api_keys.values()))
    kept = {k.id for k in org.api_keys.values() if k.kind == WORKSPACE_SERVICE_KEY and k.workspace_ids != [deleted]}
    org.delete_workspace(deleted)  # after the listing the inventory was handed
    plan = client.section_plan()
    with pytest.raises(WorkspaceGoneError):  # without skip_gone, all or nothing
        client.list_service_keys_of_workspaces(shared)
    logged = len(sandbox.request_log)
    read = get_inventory(client, plan, shared)
    assert {c.id for c in read.of("credentials") if c.kind == WORKSPACE_SERVICE_KEY} == kept and kept
    [keys_read] = [r for r in read.reads if r.section == "workspace_service_keys"]
    assert keys_read.status == "read" and keys_read.rows == len(kept)
    # Named beside its rows, in the run's log, the summary and raw.section_reads.
    assert keys_read.reason == f"1 workspace(s) deleted since they were listed, their keys with them: {deleted}"
    assert keys_read.describe().endswith(f" ({keys_read.reason})")
    # Each workspace's keys read once: the others were not read again without the deleted one.
    key_reads = [r for r in sandbox.request_log[logged:] if r.path == "/api/v1/api-key" and r.tenant_id]
    assert sorted(r.tenant_id for r in key_reads) == sorted(shared)
    [tags_read] = [r for r in read.reads if r.section == "resource_tags"]
    assert tags_read.status == "read" and tags_read.rows == len(read.of("resource_tags")) > 0
    assert tags_read.reason == f"1 workspace(s) deleted since they were listed, their tags with them: {deleted}"
    assert {t.workspace_id for t in read.of("resource_tags")} <= set(shared) - {deleted}


def test_a_key_two_routes_list_is_one_credential_of_the_kind_its_own_route_gives(serve):
    """Should a workspace's key listing also show an org service key that reaches it, the key is
    one row, a service key (its org listing is read first), not a workspace service key."""
    sandbox, client = serve()
    org = sandbox.org
    shared = [w.id for w in org.shared_workspaces()]
    org_key = next(k for k in org.api_keys.values() if k.kind == SERVICE_KEY)
    org_key_row = None  # as the org listing sends it

    def also_listed_in_workspaces(original, request):
        response = original(request)
        nonlocal org_key_row
        if request.path == "/api/v1/orgs/current/service-keys" and response.status == 200:
            org_key_row = next(row for row in response.body if row["id"] == org_key.id)
        elif request.path == "/api/v1/api-key" and response.status == 200 and org_key_row is not None:
            return ApiResponse(200, [*response.body, org_key_row])
        return response

    wrap_respond(sandbox, also_listed_in_workspaces)
    read = get_inventory(client, client.section_plan(), shared)
    listed = [c for c in read.of("credentials") if c.id == org_key.id]
    assert [(c.kind, c.workspace_id) for c in listed] == [("service_key", None)]


def test_every_other_failure_stays_a_failure(serve):
    sandbox, client = serve()
    # A 403 that neither the plan nor the key explains: LangSmith refuses an admin key on Enterprise.
    wrap_respond(sandbox, lambda original, request: (
        ApiResponse(403, {"error": "forbidden"}) if request.path.endswith("access-policies")
        else original(request)))
    refused = expect_error(PermissionDeniedError, client.list_access_policies, keys=[sandbox.api_key],
                           contains=["plan flags and the key's permissions say it may"])
    assert not isinstance(refused, SectionUnavailableError)

    plus, plus_client = serve("plus")
    # A proxy's 403 (no JSON body) is never read as "not in plan", even where the plan lacks it.
    wrap_respond(plus, lambda original, request: (
        ApiResponse(403, HtmlPage("<html>blocked</html>")) if request.path == AUDIT else original(request)))
    with pytest.raises(ProxyRefusalError):
        plus_client.list_audit_events(*EVERYTHING)

    failing, failing_client = serve(faults=FaultConfig(failing_routes=("/api/v1/orgs/current/service-keys",)))
    with pytest.raises(TransientError):
        failing_client.list_service_keys()

    html, html_client = serve()
    wrap_respond(html, lambda original, request: (
        ApiResponse(200, HtmlPage()) if request.path == "/api/v1/service-accounts" else original(request)))
    with pytest.raises(NotLangSmithAPIError):
        html_client.list_service_accounts()


def test_section_reads_are_retried_like_every_read():
    faults = FaultConfig(throttle_rate=1.0, retry_after_seconds=3)
    with SandboxServer(generate_org(seed=7, members=20, workspaces=3), faults=faults) as sandbox:
        healing = heal_after(sandbox, 2, throttle_rate=0.0)  # two 429s, then answers
        with client_for(sandbox, sleep=healing) as client:
            assert {a.id for a in client.list_service_accounts()} == set(sandbox.org.service_accounts)
            assert healing.waits == [3.0, 3.0] and client.stats.rate_limited == 2


def test_a_leaking_server_leaves_no_secret_in_any_record(serve):
    sandbox, client = serve(faults=FaultConfig(leak_full_keys=True))
    org = sandbox.org
    credentials = [
        *client.list_service_keys(),
        *client.list_personal_access_tokens(),
        *client.list_scim_tokens(),
        *[c for cs in client.list_service_keys_of_workspaces([w.id for w in org.shared_workspaces()]).values()
          for c in cs],
    ]
    secrets = [k.secret for k in org.api_keys.values()] + [t.token for t in org.scim_tokens.values()]
    text = repr(credentials)
    # Each flagged as leaked, but the key the client calls with: cut from every answer before
    # any record is read (LangSmithClient._without_key), it arrives as LangSmith shows it.
    own = [c for c in credentials if not c.secret_redacted]
    assert credentials and [c.short_key for c in own] == [redact_short_key(sandbox.api_key)[0]], own
    assert not any(secret in text for secret in secrets)
    # Cut to what LangSmith itself shows of each: its prefix and last four characters.
    shown = {k.id: k.short_key for k in org.api_keys.values()}
    shown.update({t.id: t.short_token for t in org.scim_tokens.values()})
    assert all(credential.short_key == shown[credential.id] for credential in credentials)


def test_the_section_plan_comes_from_the_org_info_once(serve):
    sandbox, client = serve("plus", key_role="org-user")
    sandbox.reset_log()
    plan = client.section_plan(membership_route="workspace_members")
    again = client.section_plan()
    assert len(sandbox.requests_matching("GET", "/api/v1/orgs/current/info")) == 1
    assert set(plan.skipped) == {"access_policies", "resource_tags", "audit_events", "scim_tokens", "sso_settings",
                                 "scim_groups"}
    assert "scim_groups" in again.skipped  # the plan already rules it out, whatever the route
    info = client.organization_info()
    assert info.flag("can_use_rbac") is False and "organization:manage" not in (info.permissions or ())
    platform = client.get_platform_organization_info()
    assert platform.id == sandbox.organization_id and platform.flag("can_use_abac") is False


@pytest.mark.parametrize("org_info_answer", [ApiResponse(404, {"detail": "Not Found"}),
                                             ApiResponse(403, {"error": "no org info for you"})])
def test_a_refusal_stays_the_sections_own_error_when_the_org_info_cannot_tell_why(serve, org_info_answer):
    sandbox, client = serve()
    # The org info, read to explain the 403, cannot be read either (whatever its error): the
    # section's refusal is what the caller hears about, not the org info's failure.
    wrap_respond(sandbox, lambda original, request: (
        ApiResponse(403, {"error": "forbidden"}) if request.path.endswith("access-policies")
        else org_info_answer if request.path == "/api/v1/orgs/current/info"
        else original(request)))
    refused = expect_error(PermissionDeniedError, client.list_access_policies, keys=[sandbox.api_key],
                           contains=["access_policies", "Server said: forbidden"])
    assert not isinstance(refused, SectionUnavailableError) and refused.status_code == 403


@pytest.mark.parametrize("body", [{}, {"access_policies": None}])
def test_an_org_without_access_policies_may_leave_the_list_out(serve, body):
    sandbox, client = serve()
    wrap_respond(sandbox, lambda original, request: (
        ApiResponse(200, body) if request.path.endswith("access-policies") else original(request)))
    assert client.list_access_policies() == []


def test_an_empty_audit_page_ends_the_window_whatever_its_cursor(serve):
    sandbox, client = serve()

    def one_empty_page_more(original, request):
        if request.path == AUDIT and request.query.get("cursor") == ["beyond"]:
            return ApiResponse(200, {"items": [], "cursor": "beyond-that"})
        response = original(request)
        if request.path == AUDIT and response.status == 200 and response.body["cursor"] is None:
            response.body["cursor"] = "beyond"
        return response

    wrap_respond(sandbox, one_empty_page_more)
    window = client.list_audit_events(*EVERYTHING)
    history = sandbox.org.audit_log.events()
    assert {e.event_id for e in window} == {e.id for e in history}
    assert window.pages == len(history) // 100 + 2


def test_an_audit_log_whose_fresh_cursors_bring_only_events_already_read_stops(serve):
    sandbox, client = serve()
    first_page: list = []

    def the_first_page_again(original, request):
        if request.path != AUDIT:
            return original(request)
        if not first_page:
            response = original(request)
            first_page.extend(response.body["items"])
        # Always a new cursor (up to ten pages), and always the first page's events.
        pages = len(sandbox.requests_matching("GET", AUDIT)) + 1
        return ApiResponse(200, {"items": first_page, "cursor": f"c{pages}" if pages < 10 else None})

    wrap_respond(sandbox, the_first_page_again)
    with pytest.raises(IncompleteListingError, match="only events already read"):
        client.list_audit_events(*EVERYTHING)
    assert len(sandbox.requests_matching("GET", AUDIT)) == 2


def test_an_empty_cursor_ends_the_audit_log_as_a_null_one_does(serve):
    sandbox, client = serve()

    def empty_for_null(original, request):
        response = original(request)
        if request.path == AUDIT and response.status == 200 and response.body["cursor"] is None:
            response.body["cursor"] = ""
        return response

    wrap_respond(sandbox, empty_for_null)
    window = client.list_audit_events(*EVERYTHING)
    assert {e.event_id for e in window} == {e.id for e in sandbox.org.audit_log.events()}


def test_a_proxys_refusal_of_a_workspaces_keys_is_no_reason_to_look_for_the_workspace(serve):
    sandbox, client = serve()
    workspace = sandbox.org.shared_workspaces()[0]
    wrap_respond(sandbox, lambda original, request: (
        ApiResponse(403, HtmlPage("<html>blocked</html>")) if request.path == "/api/v1/api-key"
        else original(request)))
    with pytest.raises(ProxyRefusalError):
        client.list_workspace_service_keys(workspace.id)
    assert sandbox.requests_matching("GET", "/api/v1/workspaces") == []


def test_workspaces_listed_in_capitals_have_their_keys_read_and_none_is_called_deleted(serve):
    """A UUID in capitals is the same workspace: listed in capitals, its keys are read, and it is
    not named as deleted since it was listed."""
    sandbox, client = serve()
    org = sandbox.org
    ids_in_capitals(sandbox)
    shared = [w.id for w in client.list_workspaces(include_deleted=False) if w.is_shared]
    assert sorted(shared) == sorted(w.id for w in org.shared_workspaces())
    expected = {k.id for k in org.api_keys.values() if k.kind == WORKSPACE_SERVICE_KEY}
    read = get_inventory(client, client.section_plan(), shared)
    assert {c.id for c in read.of("credentials") if c.kind == WORKSPACE_SERVICE_KEY} == expected and expected
    [keys_read] = [r for r in read.reads if r.section == "workspace_service_keys"]
    assert (keys_read.status, keys_read.rows, keys_read.reason) == ("read", len(expected), None)


def test_several_audit_operations_are_sent_as_a_repeated_key(serve):
    # langsmith-api.md: `operations` (repeat the key), not one comma-separated value.
    sandbox, client = serve()
    _, now = member_added_who_then_logged_in(sandbox, client)
    sandbox.reset_log()
    window = client.list_audit_events(now, now, operations=["add_member_to_workspace", "login"])
    assert {e.operation for e in window} == {"add_member_to_workspace", "login"}
    [request] = sandbox.requests_matching("GET", AUDIT)
    assert request.query["operations"] == ["add_member_to_workspace", "login"]


@pytest.mark.parametrize("items", [None, {"0": {}}, "[]"])
def test_an_audit_page_whose_items_are_no_list_is_an_unexpected_answer_not_an_empty_window(serve, items):
    sandbox, client = serve()
    wrap_respond(sandbox, lambda original, request: (
        ApiResponse(200, {"items": items, "cursor": None}) if request.path == AUDIT else original(request)))
    with pytest.raises(UnexpectedResponseError, match="items: expected a list"):
        client.list_audit_events(*EVERYTHING)


@pytest.mark.parametrize("cursor", [7, {"page": 2}, ["next"]])
def test_an_audit_cursor_that_is_no_string_is_an_unexpected_answer_never_sent_back(serve, cursor):
    # The cursor is opaque base64 text (langsmith-api.md): anything else is not LangSmith's
    # answer, and sent back as a query parameter it would ask for a page nobody issued.
    sandbox, client = serve()
    wrap_respond(sandbox, lambda original, request: (
        ApiResponse(200, {"items": [], "cursor": cursor}) if request.path == AUDIT else original(request)))
    with pytest.raises(UnexpectedResponseError, match="cursor: expected a string or null"):
        client.list_audit_events(*EVERYTHING)
    assert len(sandbox.requests_matching("GET", AUDIT)) == 1


@pytest.mark.parametrize(("read", "path"), [
    (lambda client: client.organization_info(), "/api/v1/orgs/current/info"),
    (lambda client: client.section_plan(), "/api/v1/orgs/current/info"),
    (lambda client: client.get_platform_organization_info(), "/api/v1/platform/orgs/current/info"),
])
def test_an_org_info_answer_that_does_not_fit_its_schema_is_refused_naming_its_route_and_field(serve, read, path):
    """As every other record (``_parse_record``): the error says which request gave the bad answer,
    not only the field, so the admin knows which route (the org info or its platform twin) to check."""
    sandbox, client = serve()

    def permissions_as_text(original, request):
        answer = original(request)
        if request.path != path:
            return answer
        return ApiResponse(200, {**answer.body, "permissions": "organization:read"})

    wrap_respond(sandbox, permissions_as_text)
    with pytest.raises(UnexpectedResponseError, match=rf"^GET {path}: OrganizationInfo\.permissions: expected a list"):
        read(client)

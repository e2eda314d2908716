"""The sandbox's audit log: it grows whenever the org changes (member added, role changed, key
created, login), and ``GET /api/v1/audit-logs`` reads it by time window (both ends inclusive)
and cursor, with the official shapes (checked by the caller fixture)."""

from __future__ import annotations

import base64
import itertools

import pytest

from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.sandbox.access_records import PERSONAL_ACCESS_TOKEN, AuditActor, AuditEvent
from langsmith_access.sandbox.audit_log import (
    AUDIT_LOG_OPERATIONS,
    AUDIT_RETENTION_MS,
    NEWER_AUDIT_LOG_OPERATIONS,
    AuditLog,
    decode_cursor,
    encode_cursor,
)
from langsmith_access.sandbox.org_state import format_timestamp
from langsmith_access_tests.sandbox.conftest import SandboxCaller
from langsmith_access_tests.sandbox.schema import load_spec

AUDIT = "/api/v1/audit-logs"
T0 = 1_900_000_000_000  # 2030-03-17T17:46:40Z, after every generated event, in milliseconds


def iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return f"{format_timestamp(seconds)[:-1]}.{millis:03d}Z"


@pytest.fixture
def sandbox():
    # Seen a second before T0, so its audit history is still kept (400 days) at T0.
    org = generate_org(seed=7, members=40, workspaces=5, now=T0 // 1000 - 1)
    org.clock = lambda: T0 / 1000  # what happens from now on happens at T0
    with SandboxServer(org) as server:
        yield server


@pytest.fixture
def caller(sandbox):
    caller = SandboxCaller(sandbox)
    yield caller
    caller.session.close()


def window(caller: SandboxCaller, start_ms: int, end_ms: int, **params) -> list[dict]:
    """Every item of a window, page after page, following the cursor."""
    items, cursor = [], None
    while True:
        query = {"start_time": iso(start_ms), "end_time": iso(end_ms), **params}
        if cursor:
            query["cursor"] = cursor
        response = caller.get(AUDIT, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["cursor"]
        if cursor is None:
            return items


def test_every_change_of_the_org_appends_an_event(sandbox):
    org = sandbox.org
    ticks = itertools.count(T0)
    org.clock = lambda: next(ticks) / 1000  # a millisecond per reading: events keep their order
    workspace = org.shared_workspaces()[0]
    member = org.add_member("new.person@example.com", "New Person")
    org.add_workspace_membership(workspace.id, member.ls_user_id, org.role_by_name("WORKSPACE_VIEWER").id)
    org.set_workspace_role(workspace.id, member.ls_user_id, org.role_by_name("WORKSPACE_USER").id)
    org.set_org_role(member.ls_user_id, org.role_by_name("ORGANIZATION_VIEWER").id)
    key = org.create_api_key(PERSONAL_ACCESS_TOKEN, "laptop", owner_ls_user_id=member.ls_user_id,
                             actor=AuditActor(ls_user_id=member.ls_user_id, user_id=member.user_id))
    org.record_login(member.ls_user_id)
    org.remove_workspace_membership(workspace.id, member.ls_user_id)
    invite = org.add_pending_invite("invitee@example.com", workspace_ids=[workspace.id])
    joined = org.accept_invite(invite.id, "Invitee")
    org.remove_member(member.ls_user_id)
    recent = [e for e in org.audit_log.events() if e.time_ms >= T0]
    assert [e.operation for e in recent] == [
        "claim_pending_organization_invite", "add_member_to_workspace", "update_workspace_member",
        "update_org_member", "create_personal_access_token", "login", "delete_workspace_member",
        "invite_user_to_org", "claim_pending_organization_invite", "delete_org_member",
    ]
    founder = org.default_actor()
    assert recent[1].actor == founder and recent[1].workspace_id == workspace.id
    # Every workspace-member change names its workspace.
    assert [e.workspace_id for e in recent[1:3]] + [recent[6].workspace_id] == [workspace.id] * 3
    # A change that names nobody is the oldest Organization Admin's, in the web UI (no key).
    admin = org.role_by_name("ORGANIZATION_ADMIN").id
    admins = [m for m in org.members.values() if m.org_role_id == admin]
    oldest = min(admins, key=lambda m: (m.created_at, m.id))
    assert len(admins) > 1 and (founder.ls_user_id, founder.api_key_id) == (oldest.ls_user_id, None)
    assert recent[4].actor.ls_user_id == member.ls_user_id and recent[4].resource_ids == (key.id,)
    assert recent[5].actor.ls_user_id == member.ls_user_id and recent[5].actor.api_key_id is None
    # Claiming an invite is the invitee's own act, on the invite.
    assert (recent[8].actor.ls_user_id, recent[8].resource_ids) == (joined.ls_user_id, (invite.id,))


def test_api_writes_are_logged_with_the_key_that_made_them(sandbox, caller):
    org = sandbox.org
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if org.membership(workspace.id, m.ls_user_id) is None)
    added = caller.post("/api/v1/workspaces/current/members", tenant_id=workspace.id,
                        json={"org_identity_id": outsider.id, "role_id": org.role_by_name("WORKSPACE_VIEWER").id})
    assert added.status_code == 200
    items = window(caller, T0, T0)
    assert len(items) == 1
    item = items[0]
    own_key = org.api_key_by_secret(sandbox.api_key)
    assert item["api"]["operation"] == "add_member_to_workspace"
    assert item["actor"]["user"]["credential_uid"] == own_key.id
    assert item["unmapped"]["original_audit_log"]["workspace_id"] == workspace.id
    assert item["resources"] == [{"uid": added.json()["id"]}]
    assert item["src_endpoint"]["ip"] == "127.0.0.1"
    assert item["time"] == T0 and item["status"] == "Success"


KEY_ID, RESOURCE = "5f0c6a55-0000-4000-8000-00000000000a", "5f0c6a55-0000-4000-8000-00000000000b"
# OCSF API Activity: activity_id 1 create, 2 read, 3 update, 4 delete, 99 other.
ACTIVITIES = {
    "create_api_key": (1, "Create"), "add_member_to_workspace": (1, "Create"), "invite_user_to_org": (1, "Create"),
    "claim_pending_organization_invite": (1, "Create"), "list_org_members": (2, "Read"),
    "get_audit_logs": (2, "Read"), "update_org_member": (3, "Update"), "attach_access_policies": (3, "Update"),
    "delete_api_key": (4, "Delete"), "remove_annotation_queue_reviewer": (4, "Delete"), "login": (99, "Other"),
    "set_tenant_handle": (3, "Update"), "upsert_feature_default_model": (3, "Update"),
}


def test_items_carry_their_events_as_ocsf_says(sandbox, caller):
    org = sandbox.org
    member = org.active_members()[0]
    actor = AuditActor(ls_user_id=member.ls_user_id, user_id=member.user_id, api_key_id=KEY_ID, ip="198.51.100.7")
    workspace = org.shared_workspaces()[0].id
    outcomes = itertools.cycle([True, False, None])
    made = [
        AuditEvent(id=f"{n:08d}-0000-4000-8000-00000000abcd", operation=operation, time_ms=T0 + n, actor=actor,
                   succeeded=next(outcomes), workspace_id=workspace, resource_ids=(RESOURCE, KEY_ID),
                   http_method="PATCH", path=f"/api/v1/{operation}", status_code=200 + n)
        for n, operation in enumerate(ACTIVITIES)
    ]
    org.put_audit_events(made)
    items = {item["metadata"]["uid"]: item for item in window(caller, T0, T0 + len(made))}
    status = {True: (1, "Success"), False: (2, "Failure"), None: (0, "Unknown")}
    for event in made:
        item = items[event.id]
        activity_id, activity_name = ACTIVITIES[event.operation]
        assert (item["activity_id"], item["activity_name"], item["type_uid"]) == (
            activity_id, activity_name, 600300 + activity_id
        ), event.operation
        assert (item["status_id"], item["status"]) == status[event.succeeded]
        assert item["time"] == event.time_ms and item["api"] == {"operation": event.operation}
        assert item["actor"] == {"user": {"uid": member.ls_user_id, "credential_uid": KEY_ID}}
        assert item["src_endpoint"]["ip"] == "198.51.100.7"
        assert item["http_request"] == {"http_method": "PATCH", "url": {"path": event.path}}
        assert item["http_response"] == {"code": event.status_code}
        assert item["resources"] == [{"uid": RESOURCE}, {"uid": KEY_ID}]
        original = item["unmapped"]["original_audit_log"]
        assert original["request_time"] == iso(event.time_ms) and original["operation_succeeded"] is event.succeeded
        assert (original["user_id"], original["ls_user_id"], original["api_key_id"]) == (
            member.user_id, member.ls_user_id, KEY_ID
        )
        assert (original["workspace_id"], original["organization_id"]) == (workspace, org.organization_id)
        assert original["enrichments"]["resource_ids"] == [RESOURCE, KEY_ID]


def test_a_window_includes_both_ends_and_pages_cover_it_once_newest_first(sandbox, caller):
    org = sandbox.org
    members = org.active_members()
    # 25 logins one millisecond apart, and one on each side just outside the window.
    for offset in range(-1, 26):
        org.record_login(members[offset % len(members)].ls_user_id, time_ms=T0 + offset)
    items = window(caller, T0, T0 + 24, limit=7)
    times = [item["time"] for item in items]
    assert times == sorted(range(T0, T0 + 25), reverse=True)
    assert len({item["metadata"]["uid"] for item in items}) == 25
    # A cursor marks a position: an event recorded meanwhile, behind it, does not shift pages.
    first = caller.get(AUDIT, params={"start_time": iso(T0), "end_time": iso(T0 + 24), "limit": 10}).json()
    org.record_login(members[0].ls_user_id, time_ms=T0 + 24)
    rest = caller.get(AUDIT, params={"start_time": iso(T0), "end_time": iso(T0 + 24), "limit": 100,
                                     "cursor": first["cursor"]}).json()
    assert [i["time"] for i in rest["items"]] == list(range(T0 + 14, T0 - 1, -1))
    assert rest["cursor"] is None


def test_window_bounds_finer_than_a_millisecond_stay_inclusive_and_exact(sandbox, caller):
    # Events carry whole milliseconds; a bound given in microseconds keeps what lies within it
    # and nothing before its start (the start used to be truncated to the millisecond below).
    org = sandbox.org
    member = org.active_members()[0]
    for offset in range(3):
        org.record_login(member.ls_user_id, time_ms=T0 + offset)
    half_past = lambda ms: iso(ms)[:-1] + "500Z"  # noqa: E731 - ms + 0.5 ms
    body = caller.get(AUDIT, params={"start_time": half_past(T0), "end_time": half_past(T0 + 1)}).json()
    assert [item["time"] for item in body["items"]] == [T0 + 1]
    # A window inside one millisecond holds no whole millisecond: empty, and no 422 for it.
    inside = caller.get(AUDIT, params={"start_time": iso(T0)[:-1] + "200Z", "end_time": half_past(T0)})
    assert inside.status_code == 200 and inside.json()["items"] == [], inside.text


def test_window_bounds_are_read_as_fastapi_reads_a_datetime(sandbox, caller):
    # pydantic's lax mode: Unix time as digits (seconds; milliseconds past 2e10), a date alone and
    # a time without a zone (UTC) are datetimes, where the sandbox answered 422 to each.
    org = sandbox.org
    org.record_login(org.active_members()[0].ls_user_id, time_ms=T0)
    for start, end in [(str(T0 // 1000), str(T0 // 1000)), (str(T0), str(T0)),
                       (iso(T0)[:-1], iso(T0)[:-1]), ("2030-03-17", "2030-03-18")]:
        response = caller.get(AUDIT, params={"start_time": start, "end_time": end})
        assert response.status_code == 200, (start, response.text)
        assert [item["time"] for item in response.json()["items"]] == [T0], start
    # What pydantic refuses is its 422, with its own message ("...valid datetime or date, ...").
    refused = caller.get(AUDIT, params={"start_time": "2030-13-01", "end_time": "2030-03-18"})
    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert error["loc"] == ["query", "start_time"] and error["type"] == "datetime_from_date_parsing"
    assert "month value is outside expected range" in error["msg"]


def test_filters_by_operation_and_workspace(sandbox, caller):
    org = sandbox.org
    workspace, other = org.shared_workspaces()[:2]
    members = org.active_members()
    org.record_login(members[0].ls_user_id)
    newcomer = next(m for m in members if org.membership(workspace.id, m.ls_user_id) is None)
    org.add_workspace_membership(workspace.id, newcomer.ls_user_id, org.role_by_name("WORKSPACE_ADMIN").id)
    logins = window(caller, T0, T0, operations=["login"])
    assert [i["api"]["operation"] for i in logins] == ["login"]
    both = window(caller, T0, T0, operations=["login", "add_member_to_workspace"])
    assert len(both) == 2
    assert len(window(caller, T0, T0, workspace_id=workspace.id)) == 1
    assert window(caller, T0, T0, workspace_id=other.id) == []


def test_operations_outside_the_official_enum_are_a_422(sandbox, caller):
    # `operations` is a list of AuditLogOperation: FastAPI refuses any other value (naming the
    # offending index) instead of answering an empty, plausible-looking page.
    enum = load_spec()["components"]["schemas"]["AuditLogOperation"]["enum"]
    assert list(AUDIT_LOG_OPERATIONS) == enum
    sandbox.org.record_login(sandbox.org.active_members()[0].ls_user_id)
    known = {"start_time": iso(T0), "end_time": iso(T0)}
    response = caller.get(AUDIT, params={**known, "operations": ["login", "log_in"]})
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["query", "operations", 1] and error["type"] == "enum"
    assert "'login'" in error["msg"]
    # Every official name is accepted, including ones this org never logged, and the names later
    # docs add (langsmith-api.md, "Audit logs").
    everything = caller.get(AUDIT, params={**known, "operations": [*enum, *NEWER_AUDIT_LOG_OPERATIONS], "limit": 100})
    assert everything.status_code == 200, everything.text
    assert [item["api"]["operation"] for item in everything.json()["items"]] == ["login"]


@pytest.mark.parametrize(
    ("params", "status", "where"),
    [
        ({"end_time": "2030-01-01T00:00:00Z"}, 422, ["query", "start_time"]),
        ({"start_time": "2030-01-01T00:00:00Z"}, 422, ["query", "end_time"]),
        ({"start_time": "yesterday", "end_time": "2030-01-01T00:00:00Z"}, 422, ["query", "start_time"]),
        ({"start_time": "2030-01-01T00:00:00Z", "end_time": "2030-01-02T00:00:00Z", "limit": "101"},
         422, ["query", "limit"]),
        ({"start_time": "2030-01-02T00:00:00Z", "end_time": "2030-01-01T00:00:00Z"}, 422,
         ["query", "start_time"]),
        # workspace_id is a UUID (FastAPI's 422), an empty one too: not a filter silently dropped.
        ({"start_time": "2030-01-01T00:00:00Z", "end_time": "2030-01-02T00:00:00Z", "workspace_id": "ws-1"},
         422, ["query", "workspace_id"]),
        ({"start_time": "2030-01-01T00:00:00Z", "end_time": "2030-01-02T00:00:00Z", "workspace_id": ""},
         422, ["query", "workspace_id"]),
        ({"start_time": "2030-01-01T00:00:00Z", "end_time": "2030-01-02T00:00:00Z", "cursor": "nope"},
         400, None),
        # A cursor of the right encoding whose fields have the wrong types is no cursor either.
        ({"start_time": "2030-01-01T00:00:00Z", "end_time": "2030-01-02T00:00:00Z",
          "cursor": base64.urlsafe_b64encode(b'{"time_ms":"1","id":2}').decode()}, 400, None),
        ({"start_time": "2030-01-01T00:00:00Z", "end_time": "2030-01-02T00:00:00Z",
          "cursor": base64.urlsafe_b64encode(b'[1, "id"]').decode()}, 400, None),
    ],
)
def test_bad_windows_are_refused(caller, params, status, where):
    response = caller.get(AUDIT, params=params)
    assert response.status_code == status
    if where is not None:
        assert response.json()["detail"][0]["loc"] == where


def test_the_default_page_is_ten_and_the_generated_history_is_served(caller, sandbox):
    history = sandbox.org.audit_log.events()
    assert len(history) > 10
    page = caller.get(AUDIT, params={"start_time": "2024-01-01T00:00:00Z", "end_time": iso(T0)}).json()
    assert len(page["items"]) == 10 and page["cursor"]
    everything = window(caller, 0, T0, limit=100)
    assert {i["metadata"]["uid"] for i in everything} == {e.id for e in history}
    assert [i["time"] for i in everything] == sorted((e.time_ms for e in history), reverse=True)


def test_events_older_than_the_400_days_kept_are_not_served(sandbox, caller):
    # langsmith-api.md, "Audit logs": retention up to 400 days, counted from the sandbox's clock.
    org = sandbox.org
    assert AUDIT_RETENTION_MS == 400 * 86_400_000
    edge = T0 - AUDIT_RETENTION_MS
    member = org.active_members()[0].ls_user_id
    older, at_edge, inside = (org.record_login(member, time_ms=edge + offset) for offset in (-1, 0, 1))
    # A window reaching past the retention answers what is kept (and is no error).
    served = {item["metadata"]["uid"] for item in window(caller, edge - 100 * 86_400_000, edge + 1)}
    assert served == {at_edge.id, inside.id}
    # One wholly past it answers nothing, though the org still holds the event.
    assert window(caller, edge - 1, edge - 1) == [] and older in org.audit_log.events()
    # The edge moves with the clock: a millisecond later, the event 400 days old is gone too.
    org.clock = lambda: (T0 + 1) / 1000
    assert [item["metadata"]["uid"] for item in window(caller, edge - 1, edge + 1)] == [inside.id]


def test_the_log_and_its_cursor_on_their_own():
    log = AuditLog()
    events = [AuditEvent(id=f"{n:08d}-0000-4000-8000-000000000000", operation="login", time_ms=n // 2,
                         actor=AuditActor()) for n in range(10)]
    for event in reversed(events):
        log.append(event)
    assert log.events() == events
    page, after = log.page(1, 3, limit=3)
    assert [e.time_ms for e in page] == [3, 3, 2] and after is not None
    page, after = log.page(1, 3, limit=3, after=after)
    assert [e.time_ms for e in page] == [2, 1, 1] and after is None
    assert decode_cursor(encode_cursor((5, "x"))) == (5, "x")
    with pytest.raises(ValueError):
        decode_cursor("bm90IGpzb24=")

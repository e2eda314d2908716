"""How a batch reads live state: two listings of the whole org (before the first write and
after the last) when that is cheaper than three reads per request, one read per request
otherwise, and the same closed loop either way."""

import pytest

from langsmith_access.api import list_requests, provision, request_grant, request_revoke
from langsmith_access.provisioning import executor
from langsmith_access_tests.helpers import query
from langsmith_access_tests.provisioning.conftest import WRITES

ENRICHED = "/api/v1/platform/orgs/current/members"  # platform routes are called under /api/v1
ORG_MEMBER_LOOKUP = "/api/v1/orgs/current/members/active"
WORKSPACE_MEMBER_READ = "/api/v1/workspaces/current/members/active"


@pytest.fixture(autouse=True)
def org_listing_for_any_batch(monkeypatch):
    """These tests queue three requests: let the org listing serve batches that small."""
    monkeypatch.setattr(executor, "MIN_REQUESTS_FOR_ORG_LISTING", 1)


def calls(sandbox, path):
    return [r for r in sandbox.request_log.snapshot() if r.method == "GET" and r.path == path]


def writes(sandbox):
    return [r.method for r in sandbox.request_log.snapshot() if r.method in WRITES]


def queue_three(org):
    """A grant that adds, a grant that changes a role, a revoke that removes, in one workspace."""
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members()
                    if m.ls_user_id not in workspace.memberships and not m.is_disabled)
    changer, leaver = list(workspace.memberships.values())[:2]
    roles = {r.display_name: r.id for r in org.roles_by_scope("workspace")}
    new_role = next(name for name, rid in roles.items() if rid != changer.role_id)
    leaver_role = org.role(leaver.role_id).display_name
    requests = [
        request_grant(outsider.ls_user_id, workspace.id, "Viewer"),
        request_grant(changer.ls_user_id, workspace.id, new_role),
        request_revoke(leaver.ls_user_id, workspace.id, leaver_role),
    ]
    assert all(r.accepted for r in requests), requests
    wanted = {outsider.ls_user_id: roles["Viewer"], changer.ls_user_id: roles[new_role],
              leaver.ls_user_id: None}
    return workspace, requests, wanted


def assert_applied(org, database, workspace, requests, wanted):
    assert {r["request_id"]: r["status"] for r in list_requests()} == {
        r.request_id: "applied" for r in requests}
    for user_id, role_id in wanted.items():
        membership = org.membership(workspace.id, user_id)
        assert (membership.role_id if membership else None) == role_id
    grants = dict(query(database.path,
        "SELECT user_id, role_id FROM main.grants WHERE workspace_id = ? AND entitlement_type = 'workspace_role'",
        [workspace.id]))
    for user_id, role_id in wanted.items():
        assert grants.get(user_id) == role_id


def provision_and_assert_applied(sandbox, org, database, workspace, requests, wanted):
    """Run provisioning with a fresh request log: all three applied, one write each, in order."""
    sandbox.reset_log()
    outcome = provision()
    assert outcome.success, outcome.failure
    assert_applied(org, database, workspace, requests, wanted)
    assert writes(sandbox) == ["POST", "PATCH", "DELETE"]


def test_a_batch_reads_the_org_twice_and_each_workspace_identity_once(env):
    sandbox, org, database = env
    workspace, requests, wanted = queue_three(org)
    provision_and_assert_applied(sandbox, org, database, workspace, requests, wanted)
    # One listing before the writes, one after (a page each in this small org); no member
    # lookups; one workspace read for each write that needs the member's workspace identity.
    assert len(calls(sandbox, ENRICHED)) == 2
    assert calls(sandbox, ORG_MEMBER_LOOKUP) == []
    assert len(calls(sandbox, WORKSPACE_MEMBER_READ)) == 2
    # (The changer is a member SCIM provisions: a warning precedes the write.)
    for request, expected in zip(requests, [
        ["queued", "claimed", "validated_live", "read_live", "planned", "write_sent",
         "write_answered", "verified", "settled"],
        ["queued", "claimed", "validated_live", "read_live", "read_live", "planned", "scim_warning",
         "write_sent", "write_answered", "verified", "settled"],
        ["queued", "claimed", "validated_live", "read_live", "read_live", "planned", "write_sent",
         "write_answered", "verified", "settled"],
    ]):
        kinds = [k for (k,) in query(database.path,
            'SELECT kind FROM main.provisioning_events WHERE request_id = ? ORDER BY "at"',
            [request.request_id])]
        assert kinds == expected


def test_without_the_org_listing_each_request_is_read_on_its_own(env):
    sandbox, org, database = env
    sandbox.api.enriched_route = False  # an install without the enriched members route
    workspace, requests, wanted = queue_three(org)
    provision_and_assert_applied(sandbox, org, database, workspace, requests, wanted)
    # Per request: a member lookup, a read before the write and a read after it.
    assert len(calls(sandbox, ORG_MEMBER_LOOKUP)) == 3
    assert len(calls(sandbox, WORKSPACE_MEMBER_READ)) == 6


def test_a_write_the_second_listing_does_not_show_is_read_back_before_it_is_judged(env, monkeypatch):
    """A listing that lags the writes (here: the second listing returns the first one's state)
    does not fail the requests: each unconfirmed one is read back directly."""
    sandbox, org, database = env
    workspace, requests, wanted = queue_three(org)
    real_read = executor.OrgSnapshot.read
    first: list = []

    def stale_after_the_first(client):
        if not first:
            first.append(real_read(client))
        return first[0]

    monkeypatch.setattr(executor.OrgSnapshot, "read", staticmethod(stale_after_the_first))
    provision_and_assert_applied(sandbox, org, database, workspace, requests, wanted)
    # Two identity reads before the writes, three read-backs after them.
    assert len(calls(sandbox, WORKSPACE_MEMBER_READ)) == 5


def test_a_write_that_did_not_take_is_failed_by_the_read_back(env):
    """A role change LangSmith answers 200 but does not keep: the second listing shows the old
    role, the read-back confirms it, and that request (only) fails verification."""
    sandbox, org, database = env
    workspace, requests, wanted = queue_three(org)
    changer = list(workspace.memberships.values())[0].ls_user_id
    old_role = org.membership(workspace.id, changer).role_id
    original = sandbox.respond

    def patch_not_kept(request):
        response = original(request)
        if request.method == "PATCH":
            org.set_workspace_role(workspace.id, changer, old_role)
        return response

    sandbox.respond = patch_not_kept
    outcome = provision()
    assert outcome.success, outcome.failure
    statuses = {r["request_id"]: (r["status"], r["status_detail"]) for r in list_requests()}
    status, detail = statuses[requests[1].request_id]
    assert status == "failed" and detail.startswith("verification failed")
    assert statuses[requests[0].request_id][0] == statuses[requests[2].request_id][0] == "applied"
    assert writes(sandbox) == ["POST", "PATCH", "DELETE"]


@pytest.mark.parametrize("people, requests, by_listing", [
    (20_500, 28, False),  # 42 pages twice = 84 calls, against 84 reads
    (20_500, 29, True),
    (30, 1, True),  # one page twice, against three reads
    (None, 500, False),  # never synced: the org's size is unknown
])
def test_the_cheaper_way_to_read_is_chosen_from_the_last_sync(people, requests, by_listing):
    import duckdb

    conn = duckdb.connect()
    if people is not None:
        conn.execute("CREATE TABLE main.users AS SELECT range AS user_id FROM range(?)", [people - 500 if people > 500 else people])
        conn.execute("CREATE TABLE main.pending_invites AS SELECT range AS invite_id FROM range(?)", [500 if people > 500 else 0])
    provisioner = executor.Provisioner(client=None, conn=conn, run_id="r")
    assert provisioner._org_listing_is_cheaper(requests) is by_listing


def test_small_batches_read_per_request(monkeypatch):
    """Below MIN_REQUESTS_FOR_ORG_LISTING each request settles as soon as it is verified."""
    import duckdb

    monkeypatch.undo()  # the module's autouse fixture lowered the minimum
    conn = duckdb.connect()
    conn.execute("CREATE TABLE main.users AS SELECT range AS user_id FROM range(30)")
    conn.execute("CREATE TABLE main.pending_invites AS SELECT range AS invite_id FROM range(2)")
    provisioner = executor.Provisioner(client=None, conn=conn, run_id="r")
    assert not provisioner._org_listing_is_cheaper(executor.MIN_REQUESTS_FOR_ORG_LISTING - 1)
    assert provisioner._org_listing_is_cheaper(executor.MIN_REQUESTS_FOR_ORG_LISTING)

"""The org changes while a sync reads it: listings read earlier do not know what the members
name. ``load_members`` against the sandbox over HTTP, on a scratch database (no Dagster, no dbt):
what it leaves in the raw tables is what dbt's checks will see."""

from __future__ import annotations

import threading
from dataclasses import replace

import duckdb
import pytest

from langsmith_access.langsmith import LangSmithClient, ListingsDisagreeError
from langsmith_access.langsmith.client import PAGE_SIZE
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.sandbox.org_state import Role
from langsmith_access.settings import ClientSettings, Secret
from langsmith_access.store.schema import ensure_schema
from langsmith_access.sync.extract import ENRICHED_ROUTE, PER_WORKSPACE_ROUTE, load_members
from langsmith_access.sync.guards import check_completeness
from langsmith_access_tests.helpers import listings_read_before_the_members
from langsmith_access_tests.reliability.tampering_proxy import Answer, TamperingProxy

WORKSPACE_ACTIVE = "/api/v1/workspaces/current/members/active"


def before_first_request(sandbox: SandboxServer, route_suffix: str, change) -> None:
    """Make the sandbox apply ``change()`` once, just before it serves the first GET of that route.
    The route's requests are served side by side: each waits until the change is made, so none
    is answered from the state before it (that raced, and a deleted workspace was once listed)."""
    done: list[None] = []
    changed = threading.Lock()
    for route in sandbox.api.routes:
        if route.method == "GET" and route.template.endswith(route_suffix):
            serve = route.handler

            def changing(*args, _serve=serve, **kwargs):
                with changed:
                    if not done:
                        done.append(None)
                        change()
                return _serve(*args, **kwargs)

            route.handler = changing


def load(sandbox: SandboxServer, org, conn, route: str = "auto", endpoint: str | None = None):
    client = LangSmithClient(ClientSettings(api_key=Secret(sandbox.api_key), organization_id=sandbox.organization_id,
                                            endpoint=endpoint or sandbox.url))
    with client:
        return load_members(client, conn, sync_id="sync-1", route=route,
                            shared_workspace_ids=[w.id for w in org.shared_workspaces()])


def test_someone_who_joins_while_the_workspaces_are_read_is_a_member_not_an_orphan_grant(tmp_path):
    """Per-workspace route: the org member listing is read before the workspaces' member
    listings, so a person who joins the org and a workspace in between is in a workspace's
    listing only. The sync adds them from a second read of the org member listing."""
    org = generate_org(seed=5, members=12, workspaces=3)
    viewer = org.role_by_name("WORKSPACE_VIEWER").id
    joined = []

    def join():
        member = org.add_member("late.joiner@example.com", "Late Joiner")
        org.add_workspace_membership(org.shared_workspaces()[0].id, member.ls_user_id, viewer)
        joined.append(member.ls_user_id)

    with SandboxServer(org) as sandbox, duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, org)
        before_first_request(sandbox, WORKSPACE_ACTIVE, join)
        read = load(sandbox, org, conn, PER_WORKSPACE_ROUTE)
        members = [u for (u,) in conn.execute("SELECT ls_user_id FROM raw.org_members").fetchall()]
        orphans = conn.execute(
            "SELECT ls_user_id FROM raw.workspace_memberships "
            "WHERE ls_user_id NOT IN (SELECT ls_user_id FROM raw.org_members)").fetchall()

    assert joined and orphans == []
    assert sorted(members) == sorted(m.ls_user_id for m in org.active_members())
    assert len(members) == len(set(members)) == 13
    assert read.members_joined_meanwhile == 1


def workspaces_and_roles(conn) -> list[tuple]:
    return conn.execute("SELECT 'workspace', workspace_id FROM raw.workspaces UNION ALL "
                        "SELECT 'role', role_id FROM raw.roles ORDER BY ALL").fetchall()


def refusal_when_changed_while_the_members_are_read(tmp_path, org, change) -> str:
    """The members' step's refusal when ``change()`` happens just before the members are read
    (enriched route), after the role and workspace listings were: it writes nothing, and leaves
    those listings as their own assets wrote them."""
    with SandboxServer(org) as sandbox, duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, org)
        before = workspaces_and_roles(conn)
        before_first_request(sandbox, "/platform/orgs/current/members", change)
        with pytest.raises(ListingsDisagreeError) as refused:
            load(sandbox, org, conn)
        assert workspaces_and_roles(conn) == before
        assert conn.execute("SELECT count(*) FROM raw.workspace_memberships").fetchone() == (0,)
    return str(refused.value)


def test_a_workspace_created_while_the_members_are_read_is_named_and_left_to_the_next_sync(tmp_path):
    """Enriched route: the workspace listing is read before the members, whose memberships then
    name a workspace created in between. The step refuses, naming it as created meanwhile (read
    again to tell that from a workspace the key cannot list), and writes nothing: the workspace
    listing is its own asset's table, never written by the members' step."""
    org = generate_org(seed=5, members=12, workspaces=3)
    admin = org.role_by_name("WORKSPACE_ADMIN").id
    created = []

    def create():
        workspace = org.add_workspace("Created mid-sync")
        org.add_workspace_membership(workspace.id, org.active_members()[0].ls_user_id, admin)
        created.append(workspace.id)

    message = refusal_when_changed_while_the_members_are_read(tmp_path, org, create)
    assert created and (f"1 workspace(s) were created while the sync read the members: workspace {created[0]} "
                        "('Created mid-sync'), 1 member(s) (nothing is wrong in LangSmith") in message
    assert message.endswith("Then sync again")


def test_a_workspace_the_listing_lacks_even_read_again_is_named(tmp_path):
    """Memberships name a workspace the workspace listing never has (a key that cannot list it):
    refused, naming the workspace and the key's fix."""
    org = generate_org(seed=5, members=12, workspaces=3)
    hidden = org.shared_workspaces()[0]

    def without_hidden(answer: Answer) -> Answer:
        if answer.path == "/api/v1/workspaces" and answer.status == 200:
            return answer.with_json([w for w in answer.json() if w["id"] != hidden.id])
        return answer

    with SandboxServer(org) as sandbox, TamperingProxy(sandbox.url) as proxy, \
            duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, org)
        conn.execute("DELETE FROM raw.workspaces WHERE workspace_id = ?", [hidden.id])
        proxy.tamper = without_hidden
        with pytest.raises(ListingsDisagreeError) as refused:
            load(sandbox, org, conn, endpoint=proxy.url)
    message = str(refused.value)
    assert (f"members belong to 1 workspace(s) the workspace listing does not have, even read again: "
            f"workspace {hidden.id}, {len(hidden.memberships)} member(s)") in message
    assert ("Give the key access to every workspace (an organization-scoped key; see `langsmith-access doctor`)"
            in message)


def test_a_role_created_and_given_while_the_members_are_read_is_named_and_left_to_the_next_sync(tmp_path):
    """The role listing is read before the members: a custom role created and given to a member
    in between is named as created meanwhile, and the role listing is left as its asset wrote it."""
    org = generate_org(seed=5, members=12, workspaces=3)
    workspace = org.shared_workspaces()[0]
    newcomer = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships)
    created = []

    def create():
        role = org.put_role(Role(id=org.new_id(), name="CUSTOM", display_name="Created mid-sync",
                                 description="", access_scope="workspace", permissions=["workspaces:read"],
                                 organization_id=org.organization_id))
        org.add_workspace_membership(workspace.id, newcomer.ls_user_id, role.id)
        created.append(role.id)

    message = refusal_when_changed_while_the_members_are_read(tmp_path, org, create)
    assert created and (f"1 role(s) were created and given while the sync read the members: role {created[0]} "
                        f"(Created mid-sync), held 1 time(s), e.g. in workspace {workspace.id}") in message
    assert "deleted while still held" not in message


def test_a_role_still_held_but_no_longer_listed_is_refused_by_name(tmp_path):
    """A custom role deleted while members still hold it: the role listing, read again, still
    lacks it. The sync refuses, naming the role and what to change, and writes nothing."""
    org = generate_org(seed=5, members=12, workspaces=3)
    held = {m.role_id for w in org.shared_workspaces() for m in w.memberships.values()}
    gone = next(r for r in org.custom_roles() if r.id in held)

    def without_gone(answer: Answer) -> Answer:
        if answer.path == "/api/v1/orgs/current/roles" and answer.status == 200:
            return answer.with_json([r for r in answer.json() if r["id"] != gone.id])
        return answer

    with SandboxServer(org) as sandbox, TamperingProxy(sandbox.url) as proxy, \
            duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, org, roles_left_out={gone.id})
        proxy.tamper = without_gone
        with pytest.raises(ListingsDisagreeError) as refused:
            load(sandbox, org, conn, endpoint=proxy.url)
        assert conn.execute("SELECT count(*) FROM raw.org_members").fetchone() == (0,)
    message = str(refused.value)
    assert f"role {gone.id} ({gone.display_name})" in message
    assert "Give their holders another role in LangSmith" in message


def test_a_workspace_member_who_is_no_org_member_is_refused_by_name(tmp_path):
    """A workspace lists someone the org member listing lacks, even read again: the sync
    refuses, naming the person, the workspace and what to change, and writes nothing."""
    org = generate_org(seed=5, members=12, workspaces=3)
    workspace = org.shared_workspaces()[0]
    outsider = next(iter(workspace.memberships.values()))

    def without_outsider(answer: Answer) -> Answer:
        if answer.path == "/api/v1/orgs/current/members/active" and answer.status == 200:
            rows = [m for m in answer.json() if m["ls_user_id"] != outsider.ls_user_id]
            return answer.with_json(rows).replace(headers={**answer.headers, "X-Pagination-Total": str(len(rows))})
        return answer

    with SandboxServer(org) as sandbox, TamperingProxy(sandbox.url) as proxy, \
            duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, org)
        proxy.tamper = without_outsider
        with pytest.raises(ListingsDisagreeError) as refused:
            load(sandbox, org, conn, PER_WORKSPACE_ROUTE, endpoint=proxy.url)
        assert conn.execute("SELECT count(*) FROM raw.workspace_memberships").fetchone() == (0,)
    message = str(refused.value)
    assert (f"user {outsider.ls_user_id} in workspace {workspace.id} ({workspace.display_name!r}, "
            f"workspace identity {outsider.id})") in message
    assert "Remove them from those workspaces in LangSmith" in message


@pytest.mark.parametrize("status", [404, 403])
def test_a_workspace_deleted_while_the_members_are_read_is_named_as_such(tmp_path, status):
    """Per-workspace route: a workspace deleted after the workspace listing was read answers its
    member listing with 404 (or 403), as a key without the permission would be answered. Read
    again, the workspace listing tells which: the refusal names the deleted workspace and asks
    for nothing but another sync, not for the key's permissions."""
    org = generate_org(seed=5, members=12, workspaces=3)
    deleted = org.shared_workspaces()[-1]

    def answered_with_status(answer: Answer) -> Answer:
        if answer.path == WORKSPACE_ACTIVE and answer.tenant_id == deleted.id and answer.status == 404:
            return answer.replace(status=status).with_json({"detail": "Forbidden" if status == 403 else "Not Found"})
        return answer

    with SandboxServer(org) as sandbox, TamperingProxy(sandbox.url) as proxy, \
            duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, org)
        # Deleted when the org member listing, read before the workspaces', is first asked for:
        # on the first request of the workspaces' own route, the sandbox has looked the
        # workspace up before the change, and that request may be the deleted workspace's.
        before_first_request(sandbox, "/orgs/current/members/active", lambda: org.delete_workspace(deleted.id))
        proxy.tamper = answered_with_status
        with pytest.raises(ListingsDisagreeError) as refused:
            load(sandbox, org, conn, PER_WORKSPACE_ROUTE, endpoint=proxy.url)
        assert [a.status for a in proxy.tampered] == [status]
        assert conn.execute("SELECT count(*) FROM raw.workspace_memberships").fetchone() == (0,)
    message = str(refused.value)
    assert f"1 workspace(s) were deleted while the sync read the members: {deleted.id} (nothing is wrong" in message
    assert "nothing, for what changed while the sync read" in refused.value.fix


def test_the_enriched_route_asked_for_by_the_run_never_falls_back_to_reading_each_workspace(tmp_path):
    from langsmith_access.langsmith import NotFoundError

    org = generate_org(seed=8, members=20, workspaces=3)
    with SandboxServer(org, key_role="org-user") as sandbox, duckdb.connect(str(tmp_path / "s.duckdb")) as conn:
        ensure_schema(conn)
        with pytest.raises(NotFoundError, match="X-Members-List-All-Workspaces"):
            load(sandbox, org, conn, route="enriched_members")
        assert [e.path for e in sandbox.request_log.snapshot() if "workspaces/current/members" in e.path] == []


def test_a_role_held_only_in_deleted_or_personal_workspaces_stops_nothing(tmp_path):
    """The enriched route lists memberships of deleted and personal workspaces too, and dbt
    leaves them out: a role that only they hold and the role listing lacks (a custom role
    deleted after its workspace was) is no disagreement to refuse the sync for."""
    org = generate_org(seed=5, members=12, workspaces=3)
    deleted = next(w for w in org.all_workspaces() if w.is_deleted and w.memberships)
    personal = next(w for w in org.all_workspaces() if w.is_personal and w.memberships)
    retired = org.put_role(Role(id=org.new_id(), name="CUSTOM", display_name="Retired", description="",
                                access_scope="workspace", permissions=["workspaces:read"],
                                organization_id=org.organization_id))
    for workspace in (deleted, personal):
        org.put_membership(replace(next(iter(workspace.memberships.values())), role_id=retired.id))

    def without_retired(answer: Answer) -> Answer:
        if answer.path == "/api/v1/orgs/current/roles" and answer.status == 200:
            return answer.with_json([r for r in answer.json() if r["id"] != retired.id])
        return answer

    with SandboxServer(org) as sandbox, TamperingProxy(sandbox.url) as proxy, \
            duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, org, roles_left_out={retired.id})
        proxy.tamper = without_retired
        read = load(sandbox, org, conn, endpoint=proxy.url)
        held = conn.execute("SELECT workspace_id FROM raw.workspace_memberships WHERE role_id = ? ORDER BY ALL",
                            [retired.id]).fetchall()
    assert read.route == ENRICHED_ROUTE
    assert held == sorted([(deleted.id,), (personal.id,)])


def test_an_organization_role_the_role_listing_lacks_is_refused_by_name(tmp_path):
    """Members' org roles are checked against the role listing too, not only workspace roles."""
    org = generate_org(seed=5, members=12, workspaces=3)
    role = org.role(org.active_members()[0].org_role_id)
    holders = sum(1 for m in org.active_members() if m.org_role_id == role.id)

    def without_role(answer: Answer) -> Answer:
        if answer.path == "/api/v1/orgs/current/roles" and answer.status == 200:
            return answer.with_json([r for r in answer.json() if r["id"] != role.id])
        return answer

    with SandboxServer(org) as sandbox, TamperingProxy(sandbox.url) as proxy, \
            duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, org, roles_left_out={role.id})
        proxy.tamper = without_role
        with pytest.raises(ListingsDisagreeError) as refused:
            load(sandbox, org, conn, endpoint=proxy.url)
    assert (f"members hold 1 role(s) the role listing does not have, even read again (deleted while still "
            f"held?): role {role.id} ({role.display_name}), held {holders} time(s) as an organization role.") \
        in str(refused.value)


@pytest.mark.parametrize("more", [False, True], ids=["five rows", "more rows"])
def test_a_refusal_names_five_rows_and_counts_the_rest(tmp_path, more):
    """Workspace member rows that name people the org member listing lacks: the first five (by
    user, then workspace) are named, any more counted."""
    org = generate_org(seed=5, members=30, workspaces=3)
    shared_memberships = {m.ls_user_id: sum(m.ls_user_id in w.memberships for w in org.shared_workspaces())
                          for m in org.active_members()}
    outsiders = sorted(shared_memberships)[:7] if more else []
    for user, held in sorted(shared_memberships.items()):  # people with five shared memberships in all
        if not more and 0 < held <= 5 - sum(shared_memberships[u] for u in outsiders):
            outsiders.append(user)
    rows = sorted((user, workspace.id, workspace.memberships[user].id) for workspace in org.shared_workspaces()
                  for user in workspace.memberships if user in outsiders)

    def without_outsiders(answer: Answer) -> Answer:
        if answer.path == "/api/v1/orgs/current/members/active" and answer.status == 200:
            kept = [m for m in answer.json() if m["ls_user_id"] not in outsiders]
            return answer.with_json(kept).replace(headers={**answer.headers, "X-Pagination-Total": str(len(kept))})
        return answer

    with SandboxServer(org) as sandbox, TamperingProxy(sandbox.url) as proxy, \
            duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, org)
        proxy.tamper = without_outsiders
        with pytest.raises(ListingsDisagreeError) as refused:
            load(sandbox, org, conn, PER_WORKSPACE_ROUTE, endpoint=proxy.url)
    message = str(refused.value)
    assert (len(rows) > 6 if more else len(rows) == 5)
    assert f"{len(rows)} workspace member row(s) name people who are not active org members" in message
    assert [f"user {user} in workspace {workspace_id} (" in message for user, workspace_id, _ in rows] == (
        [True] * 5 + [False] * (len(rows) - 5))
    counted = f", and {len(rows) - 5} more" if more else ""
    assert f"workspace identity {rows[4][2]}){counted}. Remove them" in message


def test_a_workspace_listing_read_again_takes_back_its_own_rows_only(tmp_path):
    """Per-workspace route: someone leaves a large workspace while its second page is read, so
    its listing is read again. What its first scan wrote goes; the rows of the workspaces read
    before it stay."""
    org = generate_org(seed=5, members=520, workspaces=3)
    large, *others = org.shared_workspaces()
    viewer = org.role_by_name("WORKSPACE_VIEWER").id
    for member in org.active_members():
        if member.ls_user_id not in large.memberships:
            org.add_workspace_membership(large.id, member.ls_user_id, viewer)
    leaver = max(large.memberships.values(), key=lambda m: m.created_at)  # on the first page
    assert len(large.memberships) > PAGE_SIZE

    with SandboxServer(org) as sandbox, duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        left = []
        for route in sandbox.api.routes:
            if route.method == "GET" and route.template.endswith("/workspaces/current/members/active"):
                serve = route.handler

                def leaving(request, faults, workspace, *args, _serve=serve, **kwargs):
                    if workspace.id == large.id and request.query.get("offset") != ["0"] and not left:
                        left.append(org.remove_workspace_membership(large.id, leaver.ls_user_id))
                    return _serve(request, faults, workspace, *args, **kwargs)

                route.handler = leaving
        ensure_schema(conn)
        listings_read_before_the_members(conn, org)
        client = LangSmithClient(ClientSettings(
            api_key=Secret(sandbox.api_key), organization_id=sandbox.organization_id, endpoint=sandbox.url,
            max_concurrency=1,  # the workspaces one by one, in the order given
        ))
        with client:
            read = load_members(client, conn, sync_id="sync-1", route=PER_WORKSPACE_ROUTE,
                                shared_workspace_ids=[w.id for w in others] + [large.id])
        memberships = conn.execute(
            "SELECT workspace_id, ls_user_id, workspace_identity_id, role_id FROM raw.workspace_memberships").fetchall()
    assert left and {r.name: r.scans for r in read.listings}[f"workspace_members:{large.id}"] == 2
    assert sorted(memberships) == sorted(org.workspace_membership_rows(shared_only=True))


@pytest.mark.parametrize("restricted", [True, False], ids=["restricted", "not restricted"])
def test_values_withheld_from_a_listing_that_moved_are_put_back_and_counted_once(tmp_path, restricted):
    """Enriched route, two pages, someone joins while they are read: the listing is read again.
    An anonymity-restricted answer withholds emails and names; the previous sync's are put back
    and counted for the scan that was kept only. An answer that is not restricted keeps nothing."""
    org = generate_org(seed=5, members=600, workspaces=3)
    known = org.active_members()
    with SandboxServer(org, anonymity_restricted=restricted) as sandbox, \
            duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, org)
        # What the previous sync published.
        conn.execute("CREATE TABLE main.users "
                     "(user_id VARCHAR, email VARCHAR, full_name VARCHAR, display_name VARCHAR)")
        conn.executemany("INSERT INTO main.users VALUES (?, ?, ?, ?)",
                         [(m.ls_user_id, m.email, m.full_name, m.display_name) for m in known])
        sandbox.faults.page_drift_members = 1
        read = load(sandbox, org, conn)
        rows = conn.execute("SELECT ls_user_id, email, full_name, display_name FROM raw.org_members").fetchall()
    [joined] = [m for m in org.active_members() if m.ls_user_id not in {k.ls_user_id for k in known}]
    assert read.route == ENRICHED_ROUTE and read.listings[0].scans == 2
    assert read.anonymity_restricted is restricted
    if restricted:
        assert read.withheld_values_kept == sum(
            value is not None for m in known for value in (m.email, m.full_name, m.display_name))
        expected = [(m.ls_user_id, m.email, m.full_name, m.display_name) for m in known] + [
            (joined.ls_user_id, None, None, None)]
    else:
        assert read.withheld_values_kept == 0
        # The enriched route has no full names: none is taken from the previous sync.
        expected = [(m.ls_user_id, m.email, None, m.display_name) for m in org.active_members()]
    assert sorted(rows) == sorted(expected)


def test_a_membership_route_that_does_not_exist_is_refused_before_anything_is_read(tmp_path):
    org = generate_org(seed=5, members=12, workspaces=3)
    with SandboxServer(org) as sandbox, duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        with pytest.raises(ValueError,
                           match="must be one of auto, enriched_members, workspace_members, got 'enriched'"):
            load(sandbox, org, conn, route="enriched")
        assert sandbox.request_log.snapshot() == []


def test_member_and_invite_listings_read_again_leave_each_once(tmp_path):
    """Per-workspace route: someone joins the org while its member listing is read, and an
    invite is withdrawn while the invite listing is: both are read again, and what their first
    scans wrote is taken back (nobody twice, the withdrawn invite gone)."""
    org = generate_org(seed=5, members=520, workspaces=2, pending_invites=510)
    withdrawn = []
    with SandboxServer(org) as sandbox, duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        for route in sandbox.api.routes:
            if route.method == "GET" and route.template.endswith("/orgs/current/members/pending"):
                serve = route.handler

                def withdrawing(request, faults, *args, _serve=serve, **kwargs):
                    if request.query.get("offset") != ["0"] and not withdrawn:
                        withdrawn.append(org.remove_pending_invite(org.pending_org_invites()[0].id))
                    return _serve(request, faults, *args, **kwargs)

                route.handler = withdrawing
        ensure_schema(conn)
        listings_read_before_the_members(conn, org)
        sandbox.faults.page_drift_members = 1
        read = load(sandbox, org, conn, PER_WORKSPACE_ROUTE)
        members = [u for (u,) in conn.execute("SELECT ls_user_id FROM raw.org_members").fetchall()]
        invites = [i for (i,) in conn.execute("SELECT invite_id FROM raw.pending_invites").fetchall()]
    scans = {listing.name: listing.scans for listing in read.listings}
    assert withdrawn and scans["org_members"] == scans["pending_invites"] == 2
    assert sorted(members) == sorted(m.ls_user_id for m in org.active_members())  # the newcomer too
    assert sorted(invites) == sorted(invite.id for invite in org.pending_org_invites())


@pytest.mark.parametrize("route", [ENRICHED_ROUTE, PER_WORKSPACE_ROUTE])
def test_each_route_writes_what_its_listings_say_of_members_and_invites(tmp_path, route):
    """What each member route gives lands in the raw tables as given: the org member listing's
    legacy user id and full name, the invite listing's offered workspaces and role; the enriched
    route has none of these (null: not said) and marks its memberships as its own."""
    org = generate_org(seed=5, members=12, workspaces=3)
    assert any(invite.workspace_ids for invite in org.pending_org_invites())
    org.active_members()[0].display_name = "Ada L."  # a display name apart from the full name
    with SandboxServer(org) as sandbox, duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, org)
        read = load(sandbox, org, conn, route)
        members = conn.execute("SELECT ls_user_id, org_identity_id, user_id, email, full_name, display_name, "
                               "is_disabled, org_role_id FROM raw.org_members").fetchall()
        invites = conn.execute("SELECT invite_id, email, org_role_id, workspace_ids, workspace_role_id "
                               "FROM raw.pending_invites").fetchall()
        sources = conn.execute("SELECT DISTINCT source FROM raw.workspace_memberships").fetchall()
        # SCIM groups come with the enriched route only: elsewhere not said (null), never "none" ([]).
        [(groups_not_said,)] = conn.execute("SELECT count(*) FILTER (WHERE scim_groups IS NULL) "
                                            "FROM raw.org_members").fetchall()
    each = route == PER_WORKSPACE_ROUTE
    assert groups_not_said == (len(members) if each else 0)
    assert read.route == route and sources == [(route,)]
    # Every shared workspace counts as read: one listing covers them all on the enriched route.
    assert (read.workspaces_expected, read.workspaces_read) == (3, 3)
    assert check_completeness(read.listings, read.workspaces_expected, read.workspaces_read).passed
    assert read.route_reason == "asked for by the run (membership_route)"
    assert sorted(members) == sorted(
        (m.ls_user_id, m.id, m.user_id if each else None, m.email, m.full_name if each else None, m.display_name,
         m.is_disabled, m.org_role_id) for m in org.active_members())
    assert sorted(invites) == sorted(
        (i.id, i.email, i.org_role_id, list(i.workspace_ids or []) if each else None,
         i.workspace_role_id if each else None) for i in org.pending_org_invites())


def test_an_invite_accepted_between_the_member_and_invite_listings_leaves_nobody_out(tmp_path):
    """Per-workspace route: an invitee (offered no workspace) accepts their invite after the org
    member listing was read and before the invite listing is. They were in the org all along:
    the sync finds them as a member or as an invite, never as neither."""
    org = generate_org(seed=5, members=12, workspaces=3)
    invite = org.add_pending_invite("invitee@example.com")
    accepted = []

    def accept():
        accepted.append(org.accept_invite(invite.id, "Just Joined").ls_user_id)

    with SandboxServer(org) as sandbox, duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, org)
        before_first_request(sandbox, "/orgs/current/members/pending", accept)
        load(sandbox, org, conn, PER_WORKSPACE_ROUTE)
        members = [u for (u,) in conn.execute("SELECT ls_user_id FROM raw.org_members").fetchall()]
        invites = [i for (i,) in conn.execute("SELECT invite_id FROM raw.pending_invites").fetchall()]

    assert accepted
    assert accepted[0] in members or invite.id in invites

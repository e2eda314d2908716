"""Time-bound grants on one membership, one after another (DESIGN.md section 10: "the revoke
undoes only what the grant did"): a later grant of the same role extends the access, a grant on
top of a time-bound one inherits what it replaced, a later revoke or grant is never undone by an
earlier grant's end; an end that fails is tried again; an end time that passed before the grant
was applied applies nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from langsmith_access.api import approve, deliver_notifications, list_requests, provision, request_grant, request_revoke
from langsmith_access.provisioning import executor
from langsmith_access.provisioning.expiry import expiry_work_due, queue_due_expiries
from langsmith_access_tests.governance.support import WORKSPACE, request_row


def expire_due(database, at: datetime) -> list[str]:
    """Queue the revokes of the grants due at ``at`` (as a provisioning run would then)."""
    with database.writer_lease("test: expiry due"), database.connect() as conn:
        return queue_due_expiries(conn, at)


def children(database) -> dict[str, dict]:
    """The expiry revokes, by the grant each ends."""
    return {r["parent_request_id"]: r for r in list_requests(database=database.path) if r["parent_request_id"]}


def test_grants_on_one_membership_stack_and_each_end_undoes_only_its_own(governed, monkeypatch):
    sandbox, org, database, people, receiver = governed
    # The runs below warn of nothing: which grants are due a warning is checked on its own.
    monkeypatch.setenv("LANGSMITH_ACCESS_EXPIRY_WARNING", "1m")
    workspace, roles = people.workspace, people.roles
    extended, stacked, revoked, departed, too_late = people.outsiders[:5]
    now = datetime.now(UTC)

    first = {
        "extended": request_grant(extended.email, WORKSPACE, "Editor", duration="1h"),
        "stacked": request_grant(stacked.email, WORKSPACE, "Editor", duration="1h"),
        "revoked": request_grant(revoked.email, WORKSPACE, "Editor", duration="1h"),
        "departed": request_grant(departed.email, WORKSPACE, "Editor", duration="1h"),
        "too_late": request_grant(too_late.email, WORKSPACE, "Editor", until=(now + timedelta(hours=1)).isoformat()),
    }
    # Its end time passes before a run applies it (say it waited for an approval).
    with database.writer_lease("test: until passed"), database.connect() as conn:
        conn.execute("UPDATE main.provisioning_requests SET access_until = ? WHERE request_id = ?",
                     [now - timedelta(minutes=1), first["too_late"].request_id])
    assert provision().success
    rows = {name: request_row(database, g.request_id) for name, g in first.items()}
    assert {name: row["status"] for name, row in rows.items()} == {
        "extended": "applied", "stacked": "applied", "revoked": "applied", "departed": "applied",
        "too_late": "rejected"}
    assert "has passed: nothing applied" in rows["too_late"]["status_detail"]
    assert org.membership(workspace.id, too_late.ls_user_id) is None

    # Then: the same role for 30 days (already held: it extends the hour), Admin on top of the
    # hour of Editor (approved), and a revoke followed by a grant for as long as the policy allows.
    extension = request_grant(extended.email, WORKSPACE, "Editor", duration="30d")
    on_top = request_grant(stacked.email, WORKSPACE, "Admin", duration="2h", requested_by="ops@example.com")
    assert approve(on_top.request_id, by=people.admin.email).recorded
    revoke = request_revoke(revoked.email, WORKSPACE, "Editor", reason="left the project")
    regrant = request_grant(revoked.email, WORKSPACE, "Editor", reason="back on the project")
    assert provision().success
    later = {name: request_row(database, r.request_id) for name, r in
             (("extension", extension), ("on_top", on_top), ("revoke", revoke), ("regrant", regrant))}
    assert {name: row["status"] for name, row in later.items()} == {
        "extension": "already_satisfied", "on_top": "applied", "revoke": "applied", "regrant": "applied"}
    assert later["extension"]["expires_at"] is not None  # it extends a time-bound grant of its role
    assert later["extension"]["prior_role_id"] == roles["Editor"]
    assert later["on_top"]["prior_role_id"] == roles["Editor"]
    assert later["regrant"]["expires_at"] > now + timedelta(days=89)  # the policy's max for Editor: 90d
    org.remove_member(departed.ls_user_id)

    # Within three hours only the grants whose end is the member's are due a warning.
    with database.connect(read_only=True) as conn:
        warned = set(expiry_work_due(conn, now, timedelta(hours=3)))
    assert warned == {first["departed"].request_id, on_top.request_id}

    # An hour on (and some: a slow machine takes a while to apply them): the four hour-long grants end.
    due = expire_due(database, now + timedelta(minutes=75))
    assert len(due) == 4
    assert provision().success
    ends = children(database)
    end = {name: ends[first[name].request_id] for name in ("extended", "stacked", "revoked", "departed")}
    assert {name: row["status"] for name, row in end.items()} == dict.fromkeys(end, "already_satisfied")
    assert end["extended"]["status_detail"].startswith(
        f"continued by request {extension.request_id} (grant of Editor), which took over this grant's Editor: "
        "when it ends (")
    assert end["extended"]["status_detail"].endswith("it removes the member")
    assert f"continued by request {on_top.request_id} (grant of Admin)" in end["stacked"]["status_detail"]
    assert (f"request {revoke.request_id} (revoke of Editor) changed this membership since the grant; "
            "nothing to undo") in end["revoked"]["status_detail"]
    assert end["departed"]["status_detail"].endswith("is not an active org member any more: nothing to undo")
    # Nobody lost access they were given later.
    assert org.membership(workspace.id, extended.ls_user_id).role_id == roles["Editor"]
    assert org.membership(workspace.id, stacked.ls_user_id).role_id == roles["Admin"]
    assert org.membership(workspace.id, revoked.ls_user_id).role_id == roles["Editor"]
    # What the hour of Editor replaced (nothing: it added them) is now the later grants'.
    assert request_row(database, extension.request_id)["prior_role_id"] is None
    assert request_row(database, on_top.request_id)["prior_role_id"] is None

    # Thirty-one days on: the Admin hours and the 30 days end; each removes the member it added.
    assert len(expire_due(database, now + timedelta(days=31))) == 2
    assert provision().success
    assert org.membership(workspace.id, stacked.ls_user_id) is None
    assert org.membership(workspace.id, extended.ls_user_id) is None
    assert org.membership(workspace.id, revoked.ls_user_id).role_id == roles["Editor"]  # its own end is 90 days on

    deliver_notifications()
    expired = sorted(b["request_id"] for b in receiver.bodies() if b["event"] == "access.expired")
    # An end that ended nothing (the access went on, or a revoke had ended it) is not news.
    assert expired == sorted([first["departed"].request_id, on_top.request_id, extension.request_id])


def test_a_failed_end_is_queued_again_after_a_growing_wait(env):
    sandbox, org, database = env
    member = next(m for m in org.active_members() if not m.is_disabled)
    grant = request_grant(member.email, org.shared_workspaces()[0].display_name, "Viewer", duration="1h")
    ended_at = datetime.now(UTC) + timedelta(hours=2)
    with database.writer_lease("test: failed ends"), database.connect() as conn:
        # As if applied an hour ago (the run itself is not what this test is about).
        conn.execute("UPDATE main.provisioning_requests SET status = 'applied', updated_at = ?, expires_at = ? "
                     "WHERE request_id = ?", [ended_at - timedelta(hours=1), ended_at, grant.request_id])
        [revoke] = queue_due_expiries(conn, ended_at)
        waits, failed_at = [], ended_at
        for _ in range(4):
            # LangSmith refused it: the request failed.
            conn.execute("UPDATE main.provisioning_requests SET status = 'failed', updated_at = ? WHERE request_id = ?",
                         [failed_at, revoke])
            wait = timedelta(minutes=1)
            while grant.request_id not in expiry_work_due(conn, failed_at + wait, None) and wait < timedelta(hours=7):
                wait += timedelta(minutes=1)
            waits.append(wait)
            failed_at += wait
            [revoke] = queue_due_expiries(conn, failed_at)
        assert waits == [timedelta(minutes=5), timedelta(minutes=10), timedelta(minutes=20), timedelta(minutes=40)]
        # While one is pending none follows; once one is applied, none ever does.
        assert queue_due_expiries(conn, failed_at + timedelta(days=30)) == []
        conn.execute("UPDATE main.provisioning_requests SET status = 'applied' WHERE request_id = ?", [revoke])
        assert queue_due_expiries(conn, failed_at + timedelta(days=30)) == []


def test_two_grants_on_one_membership_in_a_batch_read_from_the_org_listing_stack_too(governed, monkeypatch):
    sandbox, org, database, people, receiver = governed
    monkeypatch.setenv("LANGSMITH_ACCESS_EXPIRY_WARNING", "1m")
    # As a batch of 50 requests or more does: one listing of the org before the first write.
    monkeypatch.setattr(executor, "MIN_REQUESTS_FOR_ORG_LISTING", 1)
    member, roles, workspace = people.outsiders[0], people.roles, people.workspace
    now = datetime.now(UTC)
    editor = request_grant(member.email, WORKSPACE, "Editor", duration="8h")
    viewer = request_grant(member.email, WORKSPACE, "Viewer", duration="1h")
    assert provision().success
    # The second saw what the first did, not the listing taken before it.
    rows = {name: request_row(database, r.request_id) for name, r in (("editor", editor), ("viewer", viewer))}
    assert [(r["status"], r["prior_role_id"]) for r in rows.values()] == [("applied", None), ("applied", roles["Editor"])]
    assert expire_due(database, now + timedelta(minutes=75))
    assert provision().success
    # The hour of Viewer is over; the 8 hours of Editor are not.
    assert org.membership(workspace.id, member.ls_user_id).role_id == roles["Editor"]


def test_only_an_end_that_ends_the_members_access_is_warned_of(governed, monkeypatch):
    """Editor for 2 hours, then Editor for 30 minutes (already held: it gets its end). The short
    grant's end ends nothing, so it is not warned of; the 2 hours' end is the member's, so it is,
    though a later grant is in force (it ends first). Found by a fuzz of the governance rules."""
    sandbox, org, database, people, receiver = governed
    monkeypatch.setenv("LANGSMITH_ACCESS_EXPIRY_WARNING", "1m")  # the runs warn of nothing themselves
    member, roles = people.outsiders[0], people.roles
    now = datetime.now(UTC)
    longer = request_grant(member.email, WORKSPACE, "Editor", duration="2h")
    assert provision().success
    shorter = request_grant(member.email, WORKSPACE, "Editor", duration="30m")
    assert provision().success
    row = request_row(database, shorter.request_id)
    assert row["status"] == "already_satisfied" and row["prior_role_id"] == roles["Editor"]
    assert row["expires_at"] < request_row(database, longer.request_id)["expires_at"]

    def warned_of(at: datetime) -> set[str]:
        with database.connect(read_only=True) as conn:
            return set(expiry_work_due(conn, at, timedelta(hours=3))) - set(expiry_work_due(conn, at, None))

    assert warned_of(now) == {longer.request_id}
    # The short grant ends: nothing changes, and the long one is still the one to warn of.
    [end] = expire_due(database, now + timedelta(minutes=40))
    assert provision().success
    assert set(children(database)) == {shorter.request_id}
    assert children(database)[shorter.request_id]["request_id"] == end
    assert children(database)[shorter.request_id]["status"] == "already_satisfied"
    assert org.membership(people.workspace.id, member.ls_user_id).role_id == roles["Editor"]
    assert warned_of(now + timedelta(minutes=40)) == {longer.request_id}
    # With a webhook, a run sends the one warning.
    monkeypatch.setenv("LANGSMITH_ACCESS_EXPIRY_WARNING", "3h")
    assert provision().success
    deliver_notifications()
    assert [b["request_id"] for b in receiver.bodies() if b["event"] == "access.expiring"] == [longer.request_id]


def test_a_revoke_asked_while_a_grants_end_is_queued_is_its_own_request(env):
    """A grant's end is queued but not applied yet (LangSmith stopped answering, say) when
    someone asks to revoke the same role. The end undoes only what its grant did (here nothing:
    a later grant took the role over), so folding the revoke into it would leave the access in
    place: the revoke is a request of its own, and removes the member."""
    sandbox, org, database = env
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members()
                    if m.ls_user_id not in workspace.memberships and not m.is_disabled)
    timed = request_grant(outsider.ls_user_id, workspace.id, "Editor", duration="1h")
    assert provision().success
    lasting = request_grant(outsider.ls_user_id, workspace.id, "Editor")  # takes the hour over
    assert provision().success
    assert request_row(database, lasting.request_id)["status"] == "already_satisfied"
    [end] = expire_due(database, datetime.now(UTC) + timedelta(minutes=61))

    revoke = request_revoke(outsider.email, workspace.id, "Editor", reason="security: remove now")
    assert revoke.accepted, revoke
    assert provision().success
    assert org.membership(workspace.id, outsider.ls_user_id) is None
    assert revoke.duplicate_of is None and revoke.request_id != end, revoke
    assert request_row(database, end)["status"] == "already_satisfied"
    assert request_row(database, revoke.request_id)["status"] == "applied"
    assert request_row(database, timed.request_id)["status"] == "applied"


def test_a_grant_whose_end_found_nothing_to_undo_is_over(governed, monkeypatch):
    """An hour of Editor; someone removes the member by hand, so its end finds nothing to undo
    (already satisfied). Later the member is given Editor by hand, and a two-hour grant of Editor
    finds it held: the ended grant is over, so there is no time-bound access to extend. The new
    grant gets no end (the role is the hand-given one's) and no end of it is ever queued."""
    sandbox, org, database, people, receiver = governed
    monkeypatch.setenv("LANGSMITH_ACCESS_EXPIRY_WARNING", "1m")
    member, roles, workspace = people.outsiders[0], people.roles, people.workspace
    now = datetime.now(UTC)
    hour = request_grant(member.email, WORKSPACE, "Editor", duration="1h")
    assert provision().success
    org.remove_workspace_membership(workspace.id, member.ls_user_id)
    assert expire_due(database, now + timedelta(minutes=75))
    assert provision().success
    assert children(database)[hour.request_id]["status"] == "already_satisfied"

    org.add_workspace_membership(workspace.id, member.ls_user_id, role_id=roles["Editor"])
    later = request_grant(member.email, WORKSPACE, "Editor", duration="2h")
    assert provision().success
    row = request_row(database, later.request_id)
    assert row["status"] == "already_satisfied"
    assert row["expires_at"] is None  # no time-bound grant of Editor in force: it extends none
    assert expire_due(database, now + timedelta(hours=4)) == []
    assert org.membership(workspace.id, member.ls_user_id).role_id == roles["Editor"]


def _an_hour_of_editor_then_added_again_by_hand(governed, monkeypatch):
    """An hour of Editor adds a member; someone then removes them and adds them again by hand,
    with Editor (a new workspace identity). (org, database, people, member, the hour's request, when it began)."""
    sandbox, org, database, people, receiver = governed
    monkeypatch.setenv("LANGSMITH_ACCESS_EXPIRY_WARNING", "1m")
    member, roles, workspace = people.outsiders[0], people.roles, people.workspace
    now = datetime.now(UTC)
    hour = request_grant(member.email, WORKSPACE, "Editor", duration="1h")
    assert provision().success
    granted_identity = org.membership(workspace.id, member.ls_user_id).id
    org.remove_workspace_membership(workspace.id, member.ls_user_id)
    assert org.add_workspace_membership(workspace.id, member.ls_user_id, roles["Editor"]).id != granted_identity
    return org, database, people, member, hour, now


def test_a_grant_that_finds_a_membership_added_again_by_hand_extends_no_earlier_grant(governed, monkeypatch):
    """An hour of Editor adds the member; someone removes them and adds them again by hand, with
    Editor (a new workspace identity: that access is not the grant's). A two-hour grant of Editor
    then finds Editor held, but through the hand-made membership: it extends nothing (no end of
    its own), so neither end takes the hand-made access away. Before the fix it extended the
    hour, took over what the hour had added, and its end removed the hand-made membership."""
    org, database, people, member, hour, now = _an_hour_of_editor_then_added_again_by_hand(governed, monkeypatch)
    roles, workspace = people.roles, people.workspace

    later = request_grant(member.email, WORKSPACE, "Editor", duration="2h")
    assert provision().success
    row = request_row(database, later.request_id)
    assert row["status"] == "already_satisfied"
    assert row["expires_at"] is None  # the Editor it found is not the hour's: nothing to extend

    # Both ends pass: only the hour's is queued, and it leaves the hand-made membership alone.
    assert children(database) == {}
    assert len(expire_due(database, now + timedelta(hours=3))) == 1
    assert provision().success
    assert set(children(database)) == {hour.request_id}
    assert children(database)[hour.request_id]["status"] == "already_satisfied"
    assert expire_due(database, now + timedelta(hours=4)) == []
    assert org.membership(workspace.id, member.ls_user_id).role_id == roles["Editor"]


def test_a_grants_end_hands_nothing_over_once_its_membership_was_added_again_by_hand(governed, monkeypatch):
    """An hour of Editor adds the member; someone removes them and adds them again by hand, with
    Editor; then two hours of Admin change that hand-made membership's role (it replaced Editor).
    The hour's end finds its membership gone (another workspace identity) and leaves it alone,
    handing nothing over: at the two hours' end the member gets back the hand-given Editor.
    Before the fix the hour's end handed "it added them" to the Admin grant, whose end then
    removed the hand-made membership."""
    org, database, people, member, hour, now = _an_hour_of_editor_then_added_again_by_hand(governed, monkeypatch)
    roles, workspace = people.roles, people.workspace
    on_top = request_grant(member.email, WORKSPACE, "Admin", duration="2h", requested_by="ops@example.com")
    assert approve(on_top.request_id, by=people.admin.email).recorded
    assert provision().success
    assert request_row(database, on_top.request_id)["prior_role_id"] == roles["Editor"]

    assert len(expire_due(database, now + timedelta(minutes=75))) == 1
    assert provision().success
    hour_end = children(database)[hour.request_id]
    assert hour_end["status"] == "already_satisfied"
    assert hour_end["status_detail"] == ("holds Admin through a membership added since the grant (removed and "
                                         "added again by someone): not the grant's to undo; left alone")
    assert request_row(database, on_top.request_id)["prior_role_id"] == roles["Editor"]  # nothing handed over

    assert len(expire_due(database, now + timedelta(hours=3))) == 1
    assert provision().success
    assert children(database)[on_top.request_id]["status"] == "applied"
    assert org.membership(workspace.id, member.ls_user_id).role_id == roles["Editor"]

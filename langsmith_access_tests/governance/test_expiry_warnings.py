"""Which time-bound grants get an ``access.expiring`` warning: those whose end will change the
member's access as the executor will end them (``expiry.end_changes_access``), played forward
on hand-made queues of one membership. The cases come from a review's model of the executor's
rules (a grant taken over, a role held on through another grant, a takeover before the end).
The same hand-made queues check the rules those ends are built on: which request takes a grant
over (``successor``) and which grants an already-satisfied grant extends."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from langsmith_access.governance.notifications import Notifier
from langsmith_access.provisioning.expiry import (
    due_grants,
    end_changes_access,
    extends_a_time_bound_grant,
    successor,
    to_warn,
    warn_expiring,
)
from langsmith_access.provisioning.queue import fetch_requests, record_event
from langsmith_access.store.schema import ensure_schema

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def queue():
    """Settle requests one after another on one membership: ``settle(action, role, prior,
    hours)`` (hours None: no end); ``warned(within)``: the grants ``to_warn`` keeps."""
    conn = duckdb.connect()
    ensure_schema(conn)
    counter = itertools.count(1)

    def settle(action: str, role: str, prior: str | None = None, hours: float | None = None,
               status: str = "applied", ends: str | None = None) -> str:
        """``ends``: the grant an expiry revoke ends (its ``parent_request_id``)."""
        n = next(counter)
        request_id = f"r{n}"
        conn.execute(
            "INSERT INTO main.provisioning_requests (request_id, action, user_id, workspace_id, role_id, "
            "status, requested_at, updated_at, expires_at, prior_role_id, parent_request_id) "
            "VALUES (?, ?, 'u', 'w', ?, ?, ?, ?, ?, ?, ?)",
            [request_id, action, role, status, NOW, NOW + n * timedelta(seconds=1),
             None if hours is None else NOW + hours * HOUR, prior, ends],
        )
        return request_id

    def changes(request_id: str) -> bool:
        [grant] = fetch_requests(conn, "request_id = ?", [request_id])
        return end_changes_access(conn, grant)

    def warned(within_hours: float) -> set[str]:
        return {g["request_id"] for g in to_warn(conn, NOW, within_hours * HOUR)}

    yield settle, changes, warned
    conn.close()


@pytest.fixture
def membership():
    """A queue of one membership, and the connection to read and warn with."""
    conn = duckdb.connect()
    ensure_schema(conn)

    def settle(request_id: str, role: str, prior: str | None, hours: float | None, settled_at: datetime,
               status: str = "applied") -> dict:
        conn.execute(
            "INSERT INTO main.provisioning_requests (request_id, action, user_id, workspace_id, role_id, status, "
            "requested_at, updated_at, expires_at, prior_role_id) VALUES (?, 'grant', 'u', 'w', ?, ?, ?, ?, ?, ?)",
            [request_id, role, status, NOW, settled_at, None if hours is None else NOW + hours * HOUR, prior])
        [row] = fetch_requests(conn, "request_id = ?", [request_id])
        return row

    yield conn, settle
    conn.close()


def test_a_grant_that_added_or_changed_the_role_is_warned_of(queue):
    settle, changes, warned = queue
    added = settle("grant", "Editor", None, 2)
    assert changes(added) and warned(3) == {added}
    assert warned(1) == set()  # not within the hour


def test_a_shorter_grant_of_a_role_held_through_a_longer_one_ends_nothing(queue):
    settle, changes, warned = queue
    longer = settle("grant", "Editor", None, 10)
    shorter = settle("grant", "Editor", "Editor", 2, status="already_satisfied")
    assert not changes(shorter) and changes(longer)
    assert warned(24) == {longer}


def test_a_grant_taken_over_by_a_later_one_that_outlasts_it_ends_nothing(queue):
    settle, changes, warned = queue
    first = settle("grant", "Editor", None, 8)
    extension = settle("grant", "Editor", "Editor", 12, status="already_satisfied")
    middle = settle("grant", "Editor", "Editor", 10, status="already_satisfied")
    # At 8h the 12h grant takes over what the first replaced (nothing); the 10h one ends nothing.
    assert not changes(first) and not changes(middle) and changes(extension)
    assert warned(24) == {extension}


def test_a_grant_without_end_keeps_the_role_past_every_end(queue):
    settle, changes, warned = queue
    first = settle("grant", "Editor", None, 4)
    settle("grant", "Editor", "Editor", None, status="already_satisfied")  # no end
    later = settle("grant", "Editor", "Editor", 10, status="already_satisfied")
    assert not changes(first) and not changes(later)
    assert warned(24) == set()


def test_a_takeover_before_the_end_changes_what_it_restores(queue):
    settle, changes, warned = queue
    # The member is Editor (by hand); Admin for 4h, then Editor for 8h on top of the Admin.
    admin = settle("grant", "Admin", "Editor", 4)
    editor = settle("grant", "Editor", "Admin", 8)
    # At 4h the Editor grant takes over the Admin's: what it will restore is Editor, its own role.
    assert not changes(admin) and not changes(editor)
    assert warned(24) == set()


def test_a_later_grant_that_ends_first_hands_the_role_back(queue):
    settle, changes, warned = queue
    editor = settle("grant", "Editor", None, 8)
    admin = settle("grant", "Admin", "Editor", 2)  # Admin on top, ends first: Editor back
    assert changes(admin) and changes(editor)
    assert warned(24) == {editor, admin}


def test_a_later_grant_over_a_role_set_by_hand_inherits_nothing_from_an_earlier_end(queue):
    settle, changes, warned = queue
    # Admin -> Editor for 1h; then someone made her Viewer by hand, and Admin was granted for 8h
    # over that Viewer. The Editor grant's end takes nothing from the Admin one (which was not
    # built on its Editor: the executor hands over only then), so Admin's end gives back Viewer.
    editor = settle("grant", "Editor", "Admin", 1)
    admin = settle("grant", "Admin", "Viewer", 8)
    assert not changes(editor) and changes(admin)
    assert warned(24) == {admin}


def test_a_later_revoke_ended_the_grants_access_already(queue):
    settle, changes, warned = queue
    granted = settle("grant", "Editor", None, 8)
    settle("revoke", "Editor")
    assert not changes(granted) and warned(24) == set()


def test_a_later_revoke_that_found_nothing_to_remove_takes_nothing_over(queue):
    settle, changes, warned = queue
    viewer = settle("grant", "Viewer", None, 2)
    settle("revoke", "Editor", status="already_satisfied")  # holds Viewer, not Editor: changed nothing
    assert changes(viewer) and warned(3) == {viewer}


def test_the_end_of_another_grant_takes_nothing_over(queue):
    settle, changes, warned = queue
    # Viewer for 3h; Editor for 1h on top, already ended (Viewer given back): the 3h end removes Viewer.
    viewer = settle("grant", "Viewer", None, 3)
    editor = settle("grant", "Editor", "Viewer", 1)
    settle("revoke", "Editor", ends=editor)
    assert changes(viewer) and warned(4) == {viewer}


def test_the_warning_window_includes_its_far_edge(queue):
    settle, changes, warned = queue
    at_the_edge = settle("grant", "Editor", None, 2)
    assert warned(2) == {at_the_edge}


def test_a_grant_due_now_is_ended_not_warned_of(queue):
    settle, changes, warned = queue
    settle("grant", "Editor", None, 0)
    assert warned(1) == set()


def test_of_two_grants_settled_at_one_time_the_one_queued_later_is_the_successor(membership):
    # One batch settles its requests at one time, in queue order.
    conn, settle = membership
    editor = settle("r1", "Editor", None, 8, NOW)
    admin = settle("r2", "Admin", "Editor", 2, NOW)
    viewer = settle("r3", "Viewer", "Admin", 1, NOW + HOUR)  # a later batch
    assert [successor(conn, grant) for grant in (editor, admin, viewer)] == [admin, viewer, None]


def test_a_grant_ending_soon_is_warned_of_once(membership):
    conn, settle = membership
    settle("r1", "Editor", None, 2, NOW)
    assert warn_expiring(conn, NOW, 3 * HOUR, Notifier.off()) == []  # without a webhook: not sent, not marked
    conn.execute("UPDATE main.provisioning_requests SET user_email = 'ada@example.com', workspace_name = 'Platform', "
                 "role_name = 'Editor' WHERE request_id = 'r1'")
    notifier = Notifier("default", enabled=True)
    assert warn_expiring(conn, NOW, 3 * HOUR, notifier) == ["r1"]
    assert warn_expiring(conn, NOW + HOUR, 3 * HOUR, notifier) == []
    # The mark keeps the end it warned of; the notification says when, about the grant.
    [(kind, detail)] = conn.execute("SELECT kind, detail FROM main.provisioning_events").fetchall()
    assert kind == "expiry_warned" and datetime.fromisoformat(json.loads(detail)["expires_at"]) == NOW + 2 * HOUR
    [(event, payload)] = conn.execute("SELECT event, payload FROM main.notifications").fetchall()
    payload = json.loads(payload)
    # When, and what to do to keep it (read in a chat channel): the command by ids, no quoting needed.
    assert (event, payload["request_id"], payload["detail"]) == ("access.expiring", "r1", (
        "expires at 2026-06-01T14:00Z: to keep it, ask for it again before then (`langsmith-access request grant "
        "--user u --workspace w --role Editor`, with --duration or --until as the policy allows)")), payload["detail"]
    # An org of an orgs file: the command names it (one without --org is refused where there are several).
    conn.execute("DELETE FROM main.provisioning_events WHERE kind = 'expiry_warned'")
    assert warn_expiring(conn, NOW, 3 * HOUR, Notifier("eu", enabled=True)) == ["r1"]
    [eu] = conn.execute("SELECT payload FROM main.notifications WHERE payload LIKE '%\"org\": \"eu\"%'").fetchall()
    assert "--role Editor --org eu`" in json.loads(eu[0])["detail"], eu
    assert (payload["user"], payload["workspace"], payload["role"]) == ("ada@example.com", "Platform", "Editor")


def test_only_a_time_bound_grant_in_force_is_extended_by_a_grant_that_finds_its_role(membership):
    conn, settle = membership
    settle("r1", "Editor", None, None, NOW)  # Editor for good
    found = settle("r2", "Editor", "Editor", 2, NOW + HOUR, status="already_satisfied")
    assert not extends_a_time_bound_grant(conn, found)  # its end must not take the lasting Editor away
    settle("r3", "Viewer", None, 8, NOW)  # another role's grant extends nothing either
    assert not extends_a_time_bound_grant(conn, found)
    settle("r4", "Editor", None, 8, NOW)
    assert extends_a_time_bound_grant(conn, found)


def test_the_successor_is_the_request_that_settled_first_not_the_one_queued_first(membership):
    # r2 was queued before r3 but settled after it (it waited for an approval): r3 is what
    # took r1 over, and r2 took over from r3.
    conn, settle = membership
    first = settle("r1", "Editor", None, 8, NOW)
    settled_last = settle("r2", "Admin", "Viewer", 2, NOW + 2 * HOUR)
    settled_next = settle("r3", "Viewer", "Editor", 4, NOW + HOUR)
    assert [successor(conn, grant) for grant in (first, settled_next, settled_last)] == [
        settled_next, settled_last, None]


def test_a_grants_end_is_played_forward_in_the_order_the_membership_settled_not_the_queue_order(membership):
    # Ada was Admin. r1 made her Editor for 1h; r3 (queued last, settled second) made her Admin
    # again for 8h, built on r1's Editor; r2 (queued second, settled last, after an approval)
    # made her Viewer for 2h, built on r3's Admin. r1's end is taken over by r3 (the first to
    # settle after it), which inherits the Admin r1 replaced: r3's end gives back Admin, its own
    # role, and changes nothing, so it is not warned of. Read in queue order, r2 would take r1
    # over and r3's end would seem to restore Editor.
    conn, settle = membership
    settle("r1", "Editor", "Admin", 1, NOW)
    settle("r2", "Viewer", "Admin", 2, NOW + 2 * timedelta(minutes=1))
    admin = settle("r3", "Admin", "Editor", 8, NOW + timedelta(minutes=1))
    assert not end_changes_access(conn, admin)
    assert "r3" not in {g["request_id"] for g in to_warn(conn, NOW, 9 * HOUR)}


def test_a_grants_own_queue_and_apply_events_do_not_count_as_its_warning(membership):
    # Every applied grant has events ('queued', 'applied'): only 'expiry_warned' marks it warned.
    conn, settle = membership
    settle("r1", "Editor", None, 2, NOW)
    for kind in ("queued", "applied"):
        record_event(conn, "r1", kind, {}, at=NOW - HOUR)
    notifier = Notifier("default", enabled=True)
    assert warn_expiring(conn, NOW, 3 * HOUR, notifier) == ["r1"]
    assert warn_expiring(conn, NOW + HOUR, 3 * HOUR, notifier) == []


def test_a_grant_is_due_to_end_at_its_expires_at_not_after(membership):
    # DESIGN.md section 10: "At expires_at the system queues a revoke".
    conn, settle = membership
    settle("r1", "Editor", None, 2, NOW)
    ends = NOW + 2 * HOUR
    assert due_grants(conn, ends - timedelta(microseconds=1)) == []
    assert [g["request_id"] for g in due_grants(conn, ends)] == ["r1"]


def test_a_grant_whose_end_found_nothing_to_undo_is_extended_by_nothing(membership):
    # r1's end found Editor gone already (already_satisfied): r1 is over, and an Editor grant
    # that finds the role later (given by hand since) extends nothing: it holds on with no end.
    conn, settle = membership
    settle("r1", "Editor", None, 2, NOW)
    conn.execute(
        "INSERT INTO main.provisioning_requests (request_id, action, user_id, workspace_id, role_id, status, "
        "requested_at, updated_at, parent_request_id) VALUES ('r1-end', 'revoke', 'u', 'w', 'Editor', "
        "'already_satisfied', ?, ?, 'r1')", [NOW + 2 * HOUR, NOW + 2 * HOUR])
    found = settle("r2", "Editor", "Editor", None, NOW + 3 * HOUR, status="already_satisfied")
    assert not extends_a_time_bound_grant(conn, found)

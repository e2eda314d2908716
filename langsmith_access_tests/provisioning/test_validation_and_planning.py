"""Queue-time validation (against a hand-made synced database) and every plan branch."""

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
import yaml

from langsmith_access.governance.notifications import Notifier
from langsmith_access.provisioning import queue
from langsmith_access.provisioning.expiry import queue_due_expiries
from langsmith_access.provisioning.planner import (
    ADD,
    CHANGE_ROLE,
    NOTHING,
    REMOVE,
    desired_role,
    plan_change,
    plan_expiry,
)
from langsmith_access.provisioning.queue import (
    ChangeRequest,
    RequestRejected,
    claim,
    fetch_requests,
    iso_minutes,
    list_requests,
    record_rejection,
    resolve_change,
    set_statuses,
    submit_on,
)
from langsmith_access.settings import Secret
from langsmith_access.store.database import AccessDatabase
from langsmith_access.store.schema import ensure_schema

ADMIN, EDITOR, VIEWER, AUDITOR = (
    "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b",
    "00000000-0000-4000-8000-00000000000c", "00000000-0000-4000-8000-00000000000d",
)
ORG_ADMIN = "00000000-0000-4000-8000-0000000000aa"
ADA, BOB, TWIN1, TWIN2 = (
    "10000000-0000-4000-8000-000000000001", "10000000-0000-4000-8000-000000000002",
    "10000000-0000-4000-8000-000000000003", "10000000-0000-4000-8000-000000000004",
)
PLATFORM, SHARED_A, SHARED_B, PERSONAL, DELETED = (
    "20000000-0000-4000-8000-000000000001", "20000000-0000-4000-8000-000000000002",
    "20000000-0000-4000-8000-000000000003", "20000000-0000-4000-8000-000000000004",
    "20000000-0000-4000-8000-000000000005",
)
def test_a_grant_to_an_active_member_is_queued_without_the_disabled_note(conn):
    # The note is for a disabled member only: said of everyone, it would be noise nobody reads.
    grant = submit_on(conn, change(user=ADA))
    assert grant.message == "queued: grant Editor in Platform for Ada@Example.com with no expiry", grant.message
    [(detail,)] = conn.execute("SELECT detail FROM main.provisioning_events WHERE kind = 'queued'").fetchall()
    assert "member_disabled" not in json.loads(detail)


BOB_IDENTITY = "30000000-0000-4000-8000-000000000002"  # Bob's org identity id (not his user id)
CAROL, GUS = "10000000-0000-4000-8000-000000000005", "10000000-0000-4000-8000-000000000006"


@pytest.fixture
def conn():
    """The tables of a finished sync, as small as the rules need."""
    conn = duckdb.connect()
    ensure_schema(conn)
    conn.execute("""
        CREATE TABLE main.users AS SELECT * FROM (VALUES
            (?, 'oi-1', 'Ada@Example.com', false), (?, ?, 'bob@example.com', false),
            (?, 'oi-3', 'twin@example.com', false), (?, 'oi-4', 'TWIN@example.com', false)
        ) t(user_id, org_identity_id, email, is_disabled)""", [ADA, BOB, BOB_IDENTITY, TWIN1, TWIN2])
    conn.execute("ALTER TABLE main.users ADD COLUMN org_role_id VARCHAR")  # no Organization Admin here
    conn.execute("CREATE TABLE main.pending_invites AS SELECT 'inv-1' AS invite_id, 'newbie@example.com' AS email")
    conn.execute("""
        CREATE TABLE main.workspaces AS SELECT * FROM (VALUES
            (?, 'Platform'), (?, 'Research'), (?, 'Research')
        ) t(workspace_id, display_name)""", [PLATFORM, SHARED_A, SHARED_B])
    conn.execute("""
        INSERT INTO raw.workspaces (workspace_id, display_name, is_personal, is_deleted) VALUES
            (?, 'Platform', false, false), (?, 'Research', false, false), (?, 'Research', false, false),
            (?, 'Ada''s space', true, false), (?, 'Old', false, true)""",
        [PLATFORM, SHARED_A, SHARED_B, PERSONAL, DELETED])
    conn.execute("""
        CREATE TABLE main.roles AS SELECT * FROM (VALUES
            (?, 'WORKSPACE_ADMIN', 'Admin', 'workspace'), (?, 'WORKSPACE_USER', 'Editor', 'workspace'),
            (?, 'WORKSPACE_VIEWER', 'Viewer', 'workspace'), (?, 'CUSTOM', 'Auditor', 'workspace'),
            (?, 'ORGANIZATION_ADMIN', 'Organization Admin', 'organization')
        ) t(role_id, name, display_name, access_scope)""", [ADMIN, EDITOR, VIEWER, AUDITOR, ORG_ADMIN])
    yield conn
    conn.close()


def change(user="ada@example.com", workspace="Platform", role="Editor", action="grant"):
    return ChangeRequest(action, user, workspace, role)


def test_resolves_email_any_case_names_and_ids(conn):
    resolved = resolve_change(conn, change(user="ADA@EXAMPLE.COM", workspace="platform", role="editor"))
    assert (resolved.user_id, resolved.workspace_id, resolved.role_id) == (ADA, PLATFORM, EDITOR)
    assert resolve_change(conn, change(user=BOB, workspace=SHARED_A, role=AUDITOR)).role_name == "Auditor"
    assert resolve_change(conn, change(role="WORKSPACE_VIEWER")).role_id == VIEWER


@pytest.mark.parametrize(
    "request_, message",
    [
        (change(user="nobody@example.com"), "unknown user"),
        (change(user="twin@example.com"), "ambiguous user: 2 org members"),
        (change(user="10000000-0000-4000-8000-0000000000ff"), "unknown user: no active org member has id"),
        (change(user="newbie@example.com"), "pending invite but is not yet an accepted org member"),
        (change(user="NewBie@Example.com"), "pending invite but is not yet an accepted org member"),
        (change(workspace="Nowhere"), "unknown workspace"),
        (change(workspace="Research"), f"ambiguous workspace: 2 workspaces are named 'Research': Research ({SHARED_A}); Research ({SHARED_B})"),
        (change(workspace=PERSONAL), "is a personal workspace"),
        (change(workspace="Old"), "is a deleted workspace"),
        (change(workspace="OLD"), "is a deleted workspace"),
        (change(workspace="20000000-0000-4000-8000-0000000000ff"), "unknown workspace: no workspace has id"),
        (change(role="Owner"), "unknown role 'Owner'. Workspace roles: Admin, Auditor, Editor, Viewer"),
        (change(role="custom"), "'CUSTOM' is LangSmith's name for every custom role: give one's display name "
                                "or id. Custom workspace roles: "),
        (change(role="Organization Admin"), "is an organization role. Organization roles are read-only"),
        (change(role=ORG_ADMIN), "is an organization role"),
        (change(action="promote"), "action must be 'grant' or 'revoke'"),
        (change(user=""), "user is empty"),
        (change(workspace="   "), "workspace is empty"),
        (change(role="x" * 400), "at most 320 are allowed"),
        (change(role="x" * 321), "role is 321 characters long; at most 320 are allowed"),
        (change(role="x" * 320), "unknown role 'xxxx"),  # at the limit: looked up, not refused for its length
        (change(user="ada@example.com\n; DROP TABLE users"), "control or invisible characters"),
        (change(user="ada\u200b@example.com"), "control or invisible characters"),
        (change(workspace="Plat\u2028form"), "control or invisible characters"),  # line separator
        (change(role="Edi\u2029tor"), "control or invisible characters"),  # paragraph separator
        (ChangeRequest("grant", 42, "Platform", "Editor"), "user must be text"),
    ],
)
def test_every_rejection_names_the_problem(conn, request_, message):
    with pytest.raises(RequestRejected, match=None) as caught:
        resolve_change(conn, request_)
    assert message in str(caught.value)


def test_a_name_or_id_that_matches_nothing_is_refused_with_what_to_give_instead(conn):
    with pytest.raises(RequestRejected) as caught:
        resolve_change(conn, change(workspace="Platfrom"))
    assert "check the spelling" in str(caught.value) and "sync again" in str(caught.value)
    assert "Shared workspaces: Platform, Research, Research." in str(caught.value)
    with pytest.raises(RequestRejected) as caught:
        resolve_change(conn, change(workspace="20000000-0000-4000-8000-0000000000ff"))
    assert "check the id" in str(caught.value) and "Shared workspaces: Platform" in str(caught.value)
    with pytest.raises(RequestRejected, match="give their email or ls_user_id"):
        resolve_change(conn, change(user="10000000-0000-4000-8000-0000000000ff"))
    # The deprecated user_id LangSmith still lists: said so, with the id to give.
    legacy = "90000000-0000-4000-8000-000000000001"
    conn.execute("ALTER TABLE main.users ADD COLUMN legacy_user_id VARCHAR")
    conn.execute("UPDATE main.users SET legacy_user_id = ? WHERE user_id = ?", [legacy, ADA])
    with pytest.raises(RequestRejected, match=f"is the legacy user_id of Ada@Example.com: give their ls_user_id "
                                               f"\\({ADA}\\) or their email instead"):
        resolve_change(conn, change(user=legacy))


def test_an_unknown_user_is_told_apart_from_a_value_that_is_no_email_nor_id(conn):
    with pytest.raises(RequestRejected) as caught:
        resolve_change(conn, change(user="ada"))
    assert str(caught.value).startswith("unknown user: 'ada' is neither an email address nor a user id (a UUID)")
    with pytest.raises(RequestRejected) as caught:
        resolve_change(conn, change(user="nobody@example.com"))
    assert str(caught.value) == ("unknown user: no active org member has the email 'nobody@example.com' in the "
                                 "latest sync (check the spelling, or sync again if they joined recently).")


def test_a_personal_workspace_since_deleted_is_refused_as_deleted(conn):
    gone = "20000000-0000-4000-8000-0000000000e1"
    conn.execute("INSERT INTO raw.workspaces (workspace_id, display_name, is_personal, is_deleted) VALUES "
                 "(?, 'Gone', true, true)", [gone])
    for typed in (gone, "gone"):
        with pytest.raises(RequestRejected, match=f"workspace 'Gone' \\({gone}\\) is a deleted workspace: this tool "
                                                  "provisions only shared, live workspaces."):
            resolve_change(conn, change(workspace=typed))


def test_rejections_are_recorded_and_duplicates_are_not_queued_twice(conn):
    rejected = submit_on(conn, change(role="Organization Admin"))
    assert rejected.status == "rejected"
    first = submit_on(conn, change())
    again = submit_on(conn, change(user="ADA@example.com"))
    assert first.accepted and again.accepted and again.request_id == first.request_id
    rows = conn.execute(
        "SELECT request_id, status, requested_role FROM main.provisioning_requests ORDER BY request_seq"
    ).fetchall()
    assert rows == [(rejected.request_id, "rejected", "Organization Admin"), (first.request_id, "pending", "Editor")]
    kinds = conn.execute("SELECT kind FROM main.provisioning_events ORDER BY \"at\"").fetchall()
    assert kinds == [("rejected",), ("queued",)]


def test_no_sync_yet_is_a_clear_rejection():
    conn = duckdb.connect()
    ensure_schema(conn)
    with pytest.raises(RequestRejected, match="run `langsmith-access sync` first"):
        resolve_change(conn, change())


def test_a_sync_that_left_only_some_of_its_tables_is_no_sync(conn):
    conn.execute("DROP TABLE main.roles")
    with pytest.raises(RequestRejected, match="run `langsmith-access sync` first"):
        resolve_change(conn, change())


def test_what_was_typed_is_trimmed_and_normalised_before_it_is_looked_up(conn):
    cafe = "20000000-0000-4000-8000-0000000000c1"
    conn.execute("INSERT INTO main.workspaces VALUES (?, 'Caf\u00e9')", [cafe])  # as LangSmith spells it (NFC)
    typed = resolve_change(conn, change(user=" ada@example.com\u3000", workspace="Cafe\u0301", role=" Editor "))
    assert (typed.user_id, typed.workspace_id, typed.role_id) == (ADA, cafe, EDITOR)
    # An id in capitals is the same id; a member may be named by their org identity id too.
    assert resolve_change(conn, change(user=ADA.upper(), workspace=PLATFORM.upper(), role=VIEWER.upper())) == \
        resolve_change(conn, change(user=ADA, workspace=PLATFORM, role=VIEWER))
    assert resolve_change(conn, change(user=BOB_IDENTITY)).user_id == BOB


def test_names_langsmith_sends_decomposed_match_what_was_typed_composed(conn):
    # LangSmith keeps names and emails as they were typed: a decomposed "e" + U+0301 (as macOS
    # input gives) looks the same as the composed "\u00e9" someone types in a request.
    live, gone = "20000000-0000-4000-8000-0000000000d1", "20000000-0000-4000-8000-0000000000d2"
    conn.execute("INSERT INTO main.workspaces VALUES (?, 'E\u0301quipe Donne\u0301es')", [live])
    conn.execute("INSERT INTO raw.workspaces (workspace_id, display_name, is_personal, is_deleted) VALUES "
                 "(?, 'E\u0301quipe Donne\u0301es', false, false), (?, '\u00c9quipe Donn\u00e9es', false, true)",
                 [live, gone])
    conn.execute("INSERT INTO main.users VALUES (?, 'oi-7', 'Rene\u0301@example.com', false, NULL)", [CAROL])
    conn.execute("INSERT INTO main.roles VALUES (?, 'CUSTOM', 'Re\u0301viseur', 'workspace')", [GUS])
    for workspace in ("\u00c9quipe Donn\u00e9es", "\u00e9quipe donn\u00e9es"):
        # Not the deleted namesake spelled composed: the live workspace of that name.
        resolved = resolve_change(conn, change(user="ren\u00e9@example.com", workspace=workspace, role="r\u00e9viseur"))
        assert (resolved.user_id, resolved.workspace_id, resolved.role_id) == (CAROL, live, GUS)
    conn.execute("INSERT INTO main.pending_invites VALUES ('inv-2', 'Jose\u0301@example.com')")
    with pytest.raises(RequestRejected, match="has a pending invite"):
        resolve_change(conn, change(user="jos\u00e9@example.com"))


def test_a_name_typed_exactly_wins_over_names_that_differ_only_in_case(conn):
    lab, lab_caps = "20000000-0000-4000-8000-0000000000a1", "20000000-0000-4000-8000-0000000000a2"
    conn.execute("INSERT INTO main.workspaces VALUES (?, 'Lab'), (?, 'LAB')", [lab, lab_caps])
    assert resolve_change(conn, change(workspace="Lab")).workspace_id == lab
    assert resolve_change(conn, change(workspace="LAB")).workspace_id == lab_caps
    with pytest.raises(RequestRejected, match="ambiguous workspace: 2 workspaces are named 'lab'"):
        resolve_change(conn, change(workspace="lab"))


def test_a_long_list_of_namesakes_shows_ten_and_counts_the_rest(conn):
    ids = [f"20000000-0000-4000-8000-{n:012d}" for n in range(100, 112)]
    conn.execute("INSERT INTO main.workspaces SELECT unnest(?), 'Sandbox'", [ids])
    with pytest.raises(RequestRejected) as caught:
        resolve_change(conn, change(workspace="Sandbox"))
    message = str(caught.value)
    assert message.startswith("ambiguous workspace: 12 workspaces are named 'Sandbox': Sandbox (")
    assert [i for i in ids if i in message] == ids[:10]
    assert message.endswith("; and 2 more. Give the workspace id instead.")


def test_exactly_ten_namesakes_are_all_listed_with_no_count_of_more(conn):
    ids = [f"20000000-0000-4000-8000-{n:012d}" for n in range(100, 110)]
    conn.execute("INSERT INTO main.workspaces SELECT unnest(?), 'Sandbox'", [ids])
    with pytest.raises(RequestRejected) as caught:
        resolve_change(conn, change(workspace="Sandbox"))
    assert str(caught.value).endswith(f"Sandbox ({ids[-1]}). Give the workspace id instead."), caught.value


def test_an_ambiguous_role_names_every_match_in_id_order(conn):
    # In a stable order, as ambiguous users and workspaces are: the same request is refused in the same words.
    namesake = "00000000-0000-4000-8000-0000000000ee"
    conn.execute("INSERT INTO main.roles VALUES (?, 'CUSTOM', 'editor', 'workspace')", [namesake])
    with pytest.raises(RequestRejected) as caught:
        resolve_change(conn, change(role="Editor"))
    assert str(caught.value) == (f"ambiguous role: 2 workspace roles match 'Editor': Editor ({EDITOR}); "
                                 f"editor ({namesake}). Give the role id instead.")


def test_a_custom_role_named_like_a_built_in_one_is_ambiguous_by_name_but_not_by_id(conn):
    namesake = "00000000-0000-4000-8000-0000000000ee"
    conn.execute("INSERT INTO main.roles VALUES (?, 'CUSTOM', 'editor', 'workspace')", [namesake])
    with pytest.raises(RequestRejected, match="ambiguous role: 2 workspace roles match 'Editor'"):
        resolve_change(conn, change(role="Editor"))
    assert resolve_change(conn, change(role=namesake)).role_id == namesake
    assert resolve_change(conn, change(role="WORKSPACE_USER")).role_id == EDITOR


def test_custom_lists_the_custom_workspace_roles_only(conn):
    conn.execute("INSERT INTO main.roles VALUES (?, 'CUSTOM', 'Billing', 'organization')",
                 ["00000000-0000-4000-8000-0000000000ef"])
    with pytest.raises(RequestRejected) as caught:
        resolve_change(conn, change(role="CUSTOM"))
    assert str(caught.value).endswith(f"give one's display name or id. Custom workspace roles: Auditor ({AUDITOR}).")


def test_asking_again_says_whether_the_reason_given_is_kept(conn):
    first = submit_on(conn, change())
    blank = submit_on(conn, ChangeRequest("grant", "ada@example.com", "Platform", "Editor", reason=" "))
    reasoned = submit_on(conn, ChangeRequest("grant", "ada@example.com", "Platform", "Editor", reason="ticket 9"))
    said = f"the same change is already queued as {first.request_id} (pending)"
    assert (blank.request_id, blank.message) == (first.request_id, said)
    assert reasoned.message == f"{said}; it has no reason, and yours is not added to it"
    bob = submit_on(conn, ChangeRequest("grant", BOB, "Platform", "Editor", reason="ticket 1"))
    same = submit_on(conn, ChangeRequest("grant", BOB, "Platform", "Editor", reason="ticket 1"))
    assert (same.request_id, same.message) == (bob.request_id, f"the same change is already queued as {bob.request_id} "
                                                                "(pending)")


def test_only_a_grant_to_a_disabled_member_is_queued_with_the_note(conn):
    conn.execute("UPDATE main.users SET is_disabled = true WHERE user_id = ?", [BOB])
    grant = submit_on(conn, change(user=BOB))
    revoke = submit_on(conn, change(user=BOB, workspace=SHARED_A, role="Viewer", action="revoke"))
    assert "Note: bob@example.com is disabled in LangSmith" in grant.message
    assert revoke.message == "queued: revoke Viewer in Research for bob@example.com"
    queued = {rid: json.loads(detail) for rid, detail in conn.execute(
        "SELECT request_id, detail FROM main.provisioning_events WHERE kind = 'queued'").fetchall()}
    assert queued[grant.request_id]["member_disabled"] is True and "member_disabled" not in queued[revoke.request_id]
    # What was queued, as the audit trail keeps it: the ids it resolved to, and a grant's terms.
    assert queued[revoke.request_id] == {"action": "revoke", "user_id": BOB, "workspace_id": SHARED_A,
                                         "role_id": VIEWER}
    assert queued[grant.request_id] == {"action": "grant", "user_id": BOB, "workspace_id": PLATFORM,
                                        "role_id": EDITOR, "terms": "with no expiry", "member_disabled": True}


def test_a_rejected_requests_overlong_values_are_recorded_clipped(conn):
    rejected = submit_on(conn, change(user="u" * 100_000, workspace="w" * 1000, role="Editor"))
    assert rejected.status == "rejected"
    row = conn.execute("SELECT requested_user, requested_workspace, requested_role FROM main.provisioning_requests "
                       "WHERE request_id = ?", [rejected.request_id]).fetchone()
    assert row == ("u" * 1000 + "\u2026", "w" * 1000, "Editor")


def test_listing_requests_by_an_unknown_status_is_refused_and_before_any_sync_finds_none(tmp_path):
    database = AccessDatabase(tmp_path / "access.duckdb")
    with pytest.raises(RequestRejected, match="status must be one of awaiting_approval, pending, in_progress, "
                                              "applied, .*, got 'done'"):
        list_requests(database, "done")
    assert list_requests(database) == list_requests(database, "pending") == []
    assert list(tmp_path.iterdir()) == []  # looking created nothing


def test_requests_are_listed_by_status_oldest_first_even_from_a_copy_an_older_version_published(tmp_path):
    database = AccessDatabase(tmp_path / "access.duckdb")
    database.ensure_working()
    with database.connect() as conn:
        conn.execute("INSERT INTO main.provisioning_requests (request_id, action, status, requested_at, updated_at) "
                     "SELECT 'r' || i, 'grant', CASE WHEN i % 2 = 0 THEN 'pending' ELSE 'applied' END, now(), now() "
                     "FROM range(6) t(i)")
        assert queue.request_ids_with_status(conn, "pending") == ["r0", "r2", "r4"]
        conn.execute("ALTER TABLE main.provisioning_requests DROP COLUMN approval_deadline")  # not there yet
    database.publish()
    pending = list_requests(database, "pending")
    assert [(r["request_id"], r["approval_deadline"]) for r in pending] == [("r0", None), ("r2", None), ("r4", None)]
    assert [r["request_id"] for r in list_requests(database)] == [f"r{i}" for i in range(6)]
    with database.connect() as conn:
        assert queue.unknown_request_ids(conn, ["r5", "nope", "r0"]) == ["nope"]


def test_a_request_named_twice_when_statuses_are_set_ends_with_its_last(conn):
    queued = submit_on(conn, change())
    set_statuses(conn, [(queued.request_id, "in_progress", None), (queued.request_id, "applied", "added")], "run-1")
    row = conn.execute("SELECT status, status_detail, run_id FROM main.provisioning_requests").fetchone()
    assert row == ("applied", "added", "run-1")


@pytest.fixture
def policy_of(conn, tmp_path):
    """``policy_of(approvers) -> path``: a policy sending Admin grants to ``approvers`` (the
    policy's words), waiting 72 hours at most; Carol is an active member, Gus a disabled one."""
    conn.execute("CREATE TABLE main.grants (user_id VARCHAR, workspace_id VARCHAR, role_id VARCHAR, "
                 "entitlement_type VARCHAR)")
    conn.execute("INSERT INTO main.users VALUES (?, 'oi-5', 'carol@example.com', false, NULL), "
                 "(?, 'oi-6', 'gus@example.com', true, NULL)", [CAROL, GUS])

    def policy(approvers: str) -> Path:
        path = tmp_path / "policy.yaml"
        path.write_text(f'approval:\n  required: ["Admin"]\n  approvers: {approvers}\n  wait_at_most: 72h\n')
        return path

    return policy


@pytest.mark.parametrize("approvers, said", [
    ("[Carol@Example.COM]", "one of Carol@Example.COM"),  # an email is the member's in any case
    ("org_admins", "an Organization Admin"),
    ("workspace_admins", "an Admin of Platform or an Organization Admin"),
])
def test_a_grant_for_approval_says_who_approves_and_how_long_it_waits(conn, policy_of, approvers, said):
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    waiting = submit_on(conn, change(role="Admin"), policy_path=policy_of(approvers), now=at,
                        notifier=Notifier("acme", enabled=True))
    notified = conn.execute("SELECT event, payload FROM main.notifications").fetchall()
    assert [(event, json.loads(payload)["request_id"]) for event, payload in notified] == [
        ("request.awaiting_approval", waiting.request_id)]
    assert waiting.status == "awaiting_approval" and waiting.accepted, waiting
    [(detail,)] = conn.execute("SELECT detail FROM main.provisioning_events WHERE request_id = ? AND "
                               "kind = 'approval_requested'", [waiting.request_id]).fetchall()
    assert json.loads(detail) == {"approvers": said, "deadline": "2026-12-04 09:30:00+00:00"}
    [row] = fetch_requests(conn, "request_id = ?", [waiting.request_id])  # what expire_overdue reads
    assert (row["approval_deadline"], row["access_until"], row["access_duration_seconds"]) == (
        at + timedelta(hours=72), None, None)
    assert waiting.message == (
        f"awaiting approval: grant Admin in Platform for Ada@Example.com with no expiry. Approvers ({said}) decide "
        f"with `langsmith-access approve {waiting.request_id} --by EMAIL` (or deny); it waits until 2026-12-04T09:30Z.")


def test_a_grant_the_policy_does_not_send_for_approval_is_recorded_with_no_approval_deadline(conn, policy_of):
    # The policy waits 72h for an approval of Admin only: an Editor grant waits for nobody, and a
    # deadline on it would read as one it could miss.
    queued = submit_on(conn, change(role="Editor"), policy_path=policy_of("org_admins"),
                       now=datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
    assert queued.status == "pending", queued
    [row] = fetch_requests(conn, "request_id = ?", [queued.request_id])
    assert row["approval_deadline"] is None, row


def test_a_grant_only_disabled_or_unknown_members_could_approve_is_refused_when_queued(conn, policy_of):
    refused = submit_on(conn, change(role="Admin"), policy_path=policy_of("[gus@example.com, nobody@example.com]"))
    assert refused.status == "rejected" and "are none of them active members of the org" in refused.message


def test_a_policy_or_terms_refusing_a_grant_are_recorded_rejections_that_echo_no_key(conn, policy_of, tmp_path):
    key = "lsv2_sk_" + "7e57ab1e" * 4 + "_0123456789"
    unreadable = tmp_path / "pasted.yaml"
    unreadable.write_text(f'approval:\n  required: ["{key}"]\n')
    by_policy = submit_on(conn, change(), policy_path=unreadable)
    by_terms = submit_on(conn, replace(change(), duration="forever"), policy_path=policy_of("org_admins"))
    assert (by_policy.status, by_terms.status) == ("rejected", "rejected")
    assert "lsv2_***" in by_policy.message and key not in by_policy.message, by_policy.message
    assert "forever" in by_terms.message, by_terms.message
    # A dry run says the same, in the same masked words.
    for dry in (lambda: queue.check_change(conn, change(), policy_path=unreadable),
                lambda: queue.check_change(conn, change(workspace=key))):
        with pytest.raises(RequestRejected) as caught:
            dry()
        assert "lsv2_***" in str(caught.value) and key not in str(caught.value), caught.value
    assert [(r["request_id"], r["status"]) for r in fetch_requests(conn)] == [
        (by_policy.request_id, "rejected"), (by_terms.request_id, "rejected")]


NAMES = {ADMIN: "Admin", EDITOR: "Editor", VIEWER: "Viewer"}


def assert_writes(plan) -> None:
    """An add or a role change writes its target role; a role change or a removal writes to the
    member's workspace identity (``wi-1`` here); a plan asked for what it has not refuses."""
    if plan.kind in (ADD, CHANGE_ROLE):
        assert plan.role_to_write() == plan.target_role_id
    elif plan.target_role_id is None:  # a removal, or nothing to do for a non-member
        with pytest.raises(ValueError, match="without a target role"):
            plan.role_to_write()
    if plan.kind in (CHANGE_ROLE, REMOVE):
        assert plan.member_to_write() == "wi-1"
    elif plan.workspace_identity_id is None:  # an add, or nothing to do for a non-member
        with pytest.raises(ValueError, match="without the member's workspace identity id"):
            plan.member_to_write()


@pytest.mark.parametrize(
    "action, role, current, kind, explanation",
    [
        ("grant", EDITOR, None, ADD, "add to the workspace as Editor"),
        ("grant", EDITOR, EDITOR, NOTHING, "already Editor"),
        ("grant", EDITOR, VIEWER, CHANGE_ROLE, "change role from Viewer to Editor"),
        ("revoke", EDITOR, EDITOR, REMOVE, "remove Editor from the workspace"),
        ("revoke", EDITOR, None, NOTHING, "not a member of the workspace"),
        ("revoke", EDITOR, ADMIN, NOTHING, "holds Admin, not Editor: nothing to remove"),
    ],
)
def test_every_plan_branch(action, role, current, kind, explanation):
    plan = plan_change(action, role, current, "wi-1" if current else None, NAMES)
    assert (plan.kind, plan.explanation) == (kind, explanation)
    assert plan.needs_write == (kind != NOTHING)
    # The state that means "done" is the plan's target.
    assert desired_role(action, role, current) == plan.target_role_id
    assert_writes(plan)


@pytest.mark.parametrize(
    "restore, current, kind, target, explanation",
    [
        (None, EDITOR, REMOVE, None, "remove Editor from the workspace (the grant added them)"),
        (VIEWER, EDITOR, CHANGE_ROLE, VIEWER, "restore Viewer, the role before the grant of Editor"),
        (VIEWER, None, NOTHING, None, "no longer a member of the workspace: removed since the grant of Editor; "
         "nothing to undo"),
        (VIEWER, ADMIN, NOTHING, ADMIN, "holds Admin, not the granted Editor: changed by someone since the grant; "
         "left alone"),
        # A grant that found the role already given by a time-bound grant (it extended it).
        (EDITOR, EDITOR, NOTHING, EDITOR, "held Editor before the grant too (it extended a grant of Editor); "
         "nothing to undo"),
    ],
)
def test_every_expiry_plan_branch(restore, current, kind, target, explanation):
    plan = plan_expiry(EDITOR, restore, current, "wi-1" if current else None, NAMES)
    assert (plan.kind, plan.target_role_id, plan.explanation) == (kind, target, explanation)
    # The state that means "done" is the plan's target: the role given back, or none.
    assert desired_role("revoke", EDITOR, current, restore) == plan.target_role_id
    assert_writes(plan)


@pytest.mark.parametrize(
    "restore, identity, kind",
    [
        (None, "wi-1", REMOVE),  # the membership the grant made: its end removes it
        (VIEWER, "wi-1", CHANGE_ROLE),
        (None, "wi-2", NOTHING),  # removed and added again by someone since: not the grant's
        (VIEWER, "wi-2", NOTHING),
        (None, None, REMOVE),  # not known yet: the executor reads it before it writes
    ],
)
def test_an_expiry_undoes_only_the_membership_the_grant_left(restore, identity, kind):
    plan = plan_expiry(EDITOR, restore, EDITOR, identity, NAMES, granted_identity_id="wi-1")
    assert plan.kind == kind
    if kind == NOTHING:
        assert plan.target_role_id == EDITOR and plan.explanation == (
            "holds Editor through a membership added since the grant (removed and added again by someone): "
            "not the grant's to undo; left alone")


def test_an_expiry_finding_another_membership_with_another_role_says_the_membership_is_not_the_grants():
    # Removed and added again by someone, then given Admin (by hand or by a later request): the
    # role is not what was changed since the grant, the membership is.
    plan = plan_expiry(EDITOR, None, ADMIN, "wi-2", NAMES, granted_identity_id="wi-1")
    assert (plan.kind, plan.target_role_id) == (NOTHING, ADMIN)
    assert plan.explanation == ("holds Admin through a membership added since the grant (removed and added again "
                                "by someone): not the grant's to undo; left alone")


def test_unknown_action_is_refused():
    with pytest.raises(ValueError):
        plan_change("promote", EDITOR, None, None)


# ---- mutation survivors of queue.py: behaviour no test above pinned down


def test_a_time_in_a_message_is_shown_in_utc_whatever_zone_it_came_in():
    # DuckDB hands a TIMESTAMPTZ back in the session's zone; messages always say UTC.
    assert iso_minutes(datetime(2026, 12, 1, 19, 0, tzinfo=timezone(timedelta(hours=1)))) == "2026-12-01T18:00Z"
    assert iso_minutes(datetime(2026, 12, 1, 18, 0, 49, 5, tzinfo=UTC)) == "2026-12-01T18:00:49Z"
    # Only a fraction of a second past the minute: not cut to the minute either (it would read earlier).
    assert iso_minutes(datetime(2026, 12, 1, 18, 0, 0, 5, tzinfo=UTC)) == "2026-12-01T18:00:00Z"


def test_an_ambiguous_email_names_every_member_in_id_order(conn):
    twin0 = "10000000-0000-4000-8000-000000000000"  # synced last, listed first
    conn.execute("INSERT INTO main.users VALUES (?, 'oi-0', 'Twin@Example.com', false, NULL)", [twin0])
    with pytest.raises(RequestRejected) as caught:
        resolve_change(conn, change(user="twin@example.com"))
    assert str(caught.value) == (f"ambiguous user: 3 org members have the email 'twin@example.com' "
                                 f"({twin0}, {TWIN1}, {TWIN2}): give the user id instead.")


def test_an_unknown_workspace_lists_five_shared_ones_by_name_cut_short(conn):
    conn.execute("DELETE FROM main.workspaces")
    with pytest.raises(RequestRejected) as caught:
        resolve_change(conn, change(workspace="Nowhere"))
    assert str(caught.value).endswith("if it was created since. The latest sync found no shared workspace.")
    # Synced in another order than their names'; 40 characters are shown whole, 41 are cut.
    names = ["Zeta", "Echo", "B" * 41, "Yew", "A" * 40, "Delta", "Cedar"]
    conn.execute("INSERT INTO main.workspaces SELECT unnest(?), unnest(?)",
                 [[f"20000000-0000-4000-8000-{n:012d}" for n in range(200, 207)], names])
    with pytest.raises(RequestRejected) as caught:
        resolve_change(conn, change(workspace="Nowhere"))
    shown = f"{'A' * 40}, {'B' * 39}\u2026, Cedar, Delta, Echo and 2 more"
    assert str(caught.value).endswith(f"Shared workspaces: {shown}.")


def test_exactly_five_shared_workspaces_are_all_listed_with_no_count_of_more(conn):
    # The count is of workspaces left out: with none left out, saying "and 0 more" is noise.
    conn.execute("DELETE FROM main.workspaces")
    conn.execute("INSERT INTO main.workspaces SELECT unnest(?), unnest(?)",
                 [[f"20000000-0000-4000-8000-{n:012d}" for n in range(200, 205)],
                  ["Echo", "Alder", "Delta", "Birch", "Cedar"]])
    with pytest.raises(RequestRejected) as caught:
        resolve_change(conn, change(workspace="Nowhere"))
    assert str(caught.value).endswith("Shared workspaces: Alder, Birch, Cedar, Delta, Echo."), caught.value


def test_a_revoke_with_an_end_is_refused_and_recorded(conn):
    refused = [submit_on(conn, ChangeRequest("revoke", "ada@example.com", "Platform", "Editor", **terms))
               for terms in ({"until": "2027-01-01T00:00Z"}, {"duration": "1h"})]
    assert [(r.status, r.message) for r in refused] == 2 * [
        ("rejected", "--duration and --until are for grants: a revoke takes effect when applied.")]
    recorded = conn.execute("SELECT request_id, status FROM main.provisioning_requests ORDER BY request_seq")
    assert recorded.fetchall() == [(r.request_id, "rejected") for r in refused]


def test_the_same_grant_ending_at_another_time_is_refused_not_folded_into_the_queued_one(conn):
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    ending = ChangeRequest("grant", "ada@example.com", "Platform", "Editor", until="2027-01-01T00:00Z")
    first = submit_on(conn, ending, now=at)
    assert first.status == "pending", first
    # Its end is kept with it: the executor counts from it.
    [row] = fetch_requests(conn, "request_id = ?", [first.request_id])
    assert (row["access_until"], row["access_duration_seconds"]) == (datetime(2027, 1, 1, tzinfo=UTC), None)
    assert submit_on(conn, ending, now=at).duplicate_of == first.request_id
    later = submit_on(conn, replace(ending, until="2027-02-01T00:00Z"), now=at)
    assert (later.status, later.duplicate_of) == ("rejected", first.request_id)
    assert ("with other terms: the queued grant lasts until 2027-01-01T00:00:00Z, this one asks until "
            "2027-02-01T00:00:00Z") in later.message
    assert submit_on(conn, replace(ending, until=None), now=at).status == "rejected"  # no end at all: other terms too
    # Refused, it is recorded with its reason and requester trimmed, as a queued one's are.
    padded = submit_on(conn, replace(ending, until=None, reason=" ticket 9 ", requested_by=" carol@example.com "),
                       now=at)
    [row] = fetch_requests(conn, "request_id = ?", [padded.request_id])
    assert (row["status"], row["reason"], row["requested_by"]) == ("rejected", "ticket 9", "carol@example.com")


def test_a_queued_requests_reason_and_requester_are_kept_without_surrounding_blanks(conn):
    reasoned = submit_on(conn, ChangeRequest("grant", "ada@example.com", "Platform", "Editor",
                                             reason="  ticket 9\u3000", requested_by=" carol@example.com "))
    blank = submit_on(conn, ChangeRequest("grant", BOB, "Platform", "Editor", reason="   ", requested_by=" "))
    assert reasoned.accepted and blank.accepted
    rows = conn.execute("SELECT reason, requested_by FROM main.provisioning_requests ORDER BY request_seq").fetchall()
    assert rows == [("ticket 9", "carol@example.com"), (None, None)]


def test_a_rejection_recorded_for_a_review_row_stores_no_key_and_names_whom_it_can(conn):
    # A review sheet's cells are typed like a request's fields: a key pasted into one is cut to
    # its prefix here too, as submit_on does.
    key = "lsv2_sk_" + "7e57ab1e" * 4 + "_0123456789"
    named = record_rejection(conn, ChangeRequest("revoke", "ada@example.com", "Platform", "Editor",
                                                 reason=f"pasted {key}", requested_by=key), f"grant {key!r} is gone")
    unnamed = record_rejection(conn, ChangeRequest("revoke", "ada@example.com", "Platform", key), "unknown grant")
    assert named.status == unnamed.status == "rejected" and key not in named.message
    rows = fetch_requests(conn)
    assert key not in json.dumps(rows, default=str)
    assert [r["user_id"] for r in rows] == [ADA, None]  # resolved where it names what exists
    assert rows[0]["reason"] == "pasted lsv2_***" and rows[1]["requested_role"] == "lsv2_***"
    assert key not in json.dumps(conn.execute("SELECT detail FROM main.provisioning_events").fetchall())


WEBHOOK = "https://hooks.slack.com/services/T000/B000/s3cr3tPathToken"


def test_the_orgs_webhook_url_pasted_into_a_field_is_never_stored_nor_echoed(conn):
    # No key shape finds a Slack URL: the org's notifier knows it and cuts it from what was typed.
    notifier = Notifier("acme", enabled=False, secrets=(Secret(WEBHOOK),))
    key = "lsv2_sk_" + "7e57ab1e" * 4 + "_0123456789"
    queued = submit_on(conn, replace(change(), reason=f"see {WEBHOOK} {key}", requested_by=WEBHOOK),
                       notifier=notifier)
    rejected = submit_on(conn, change(workspace=WEBHOOK), notifier=notifier)
    assert queued.status == "pending" and rejected.status == "rejected"
    assert WEBHOOK not in rejected.message and "<secret>" in rejected.message
    stored = json.dumps([fetch_requests(conn), conn.execute("SELECT * FROM main.provisioning_events").fetchall()],
                        default=str)
    assert WEBHOOK not in stored and key not in stored and "see <secret> lsv2_***" in stored
    # A dry run (the Launchpad's) says what queueing would: the URL is not in its words either.
    with pytest.raises(RequestRejected) as caught:
        queue.check_change(conn, change(workspace=WEBHOOK), notifier=notifier)
    assert str(caught.value) == rejected.message


def test_a_run_launched_by_one_person_queues_only_in_their_name(conn):
    # Dagster tags the launcher by email: asking in another's name is refused (and recorded);
    # asking as themself, in any case, or a launcher that is no email (a schedule), is not.
    refused = submit_on(conn, replace(change(), requested_by="carol@example.com"), launched_by="ada@example.com ",
                        run_id="run-7")
    assert (refused.status, refused.message) == ("rejected", (
        "this run was launched by ada@example.com, who asks only as themself: leave requested_by out (the launcher "
        "is then the requester), or set it to ada@example.com."))
    [row] = fetch_requests(conn, "request_id = ?", [refused.request_id])
    assert (row["status"], row["run_id"], row["requested_by"]) == ("rejected", "run-7", "carol@example.com")
    # Whom it was for, as LangSmith knows them, as for any rejection of a change that resolves.
    assert (row["user_id"], row["workspace_id"], row["role_id"]) == (ADA, PLATFORM, EDITOR)
    as_themself = submit_on(conn, replace(change(), requested_by="Ada@Example.com"), launched_by="ada@example.com",
                            run_id="run-8")
    assert as_themself.status == "pending", as_themself
    by_schedule = submit_on(conn, replace(change(user=BOB), requested_by="carol@example.com"), launched_by="scheduler")
    assert by_schedule.accepted
    assert submit_on(conn, change(user=BOB, role="Viewer"), launched_by="ada@example.com").accepted  # nobody named
    # The run each was typed into is kept with the request and its events.
    events = conn.execute("SELECT request_id, kind, run_id FROM main.provisioning_events WHERE request_id IN (?, ?) "
                          "ORDER BY kind", [refused.request_id, as_themself.request_id]).fetchall()
    assert events == [(as_themself.request_id, "queued", "run-8"), (refused.request_id, "rejected", "run-7")]
    assert fetch_requests(conn, "request_id = ?", [as_themself.request_id])[0]["run_id"] == "run-8"


def test_an_action_typed_with_blanks_is_recorded_as_the_action_and_no_event_stores_a_key(conn):
    queued = submit_on(conn, ChangeRequest(" grant ", "ada@example.com", "Platform", "Editor"))
    assert queued.status == "pending"  # the action is kept as the planner reads it
    assert fetch_requests(conn, "request_id = ?", [queued.request_id])[0]["action"] == "grant"
    key = "lsv2_sk_" + "7e57ab1e" * 4 + "_0123456789"
    queue.record_event(conn, queued.request_id, "failed", {"error": f"401 for {key}"})
    [(detail,)] = conn.execute("SELECT detail FROM main.provisioning_events WHERE kind = 'failed'").fetchall()
    assert json.loads(detail) == {"error": "401 for lsv2_***"}


def test_a_claim_that_fails_midway_takes_nothing_and_the_next_claim_takes_it(conn, monkeypatch):
    queued = submit_on(conn, change())

    def full_disk(*args, **kwargs):
        raise duckdb.IOException("could not write: no space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(queue, "record_events", full_disk)  # after the statuses were set
        with pytest.raises(duckdb.IOException):
            claim(conn, "run-1", None)
    assert fetch_requests(conn)[0]["status"] == "pending"
    assert [r["request_id"] for r in claim(conn, "run-2", None)] == [queued.request_id]
    assert fetch_requests(conn)[0]["status"] == "in_progress"


def test_a_grant_asked_again_while_it_awaits_approval_is_the_one_awaiting(conn, policy_of):
    policy = policy_of("[carol@example.com]")
    waiting = submit_on(conn, change(role="Admin"), policy_path=policy)
    again = submit_on(conn, change(user="ADA@example.com", role="admin"), policy_path=policy)
    assert (again.request_id, again.status, again.duplicate_of) == (waiting.request_id, "awaiting_approval",
                                                                    waiting.request_id)
    assert again.accepted and len(fetch_requests(conn)) == 1


def test_a_grant_its_only_approver_asked_for_is_refused_when_queued_not_left_to_expire(conn, policy_of):
    # Carol may not approve what she asked for: nobody else could, so it is refused at once.
    policy = policy_of("[carol@example.com, carol@example.com]")  # named twice: said once
    refused = submit_on(conn, replace(change(role="Admin"), requested_by=" Carol@example.com"), policy_path=policy)
    assert (refused.status, refused.message) == ("rejected", (
        "nobody could approve this request (one of carol@example.com): self-approval: "
        "carol@example.com asked for this request, and the policy does not allow self-approval. Have someone else "
        "ask for it, or fix approval.approvers (or approval.self_approval) in the policy file."))
    assert submit_on(conn, replace(change(role="Admin"), requested_by="ada@example.com"),
                     policy_path=policy).status == "awaiting_approval"
    # Carol is Admin of Platform, its only one: the workspace's admins could not approve it either.
    conn.execute("INSERT INTO main.grants VALUES (?, ?, ?, 'workspace_role')", [CAROL, PLATFORM, ADMIN])
    refused = submit_on(conn, replace(change(user=BOB, role="Admin"), requested_by="carol@example.com"),
                        policy_path=policy_of("workspace_admins"))
    assert refused.message.startswith("nobody could approve this request (an Admin of Platform or an Organization "
                                      "Admin): self-approval: carol@example.com asked for this request"), refused


def test_a_dry_run_says_what_queueing_would_do_and_records_nothing(conn, policy_of):
    policy = policy_of("[carol@example.com]")
    admin = queue.check_change(conn, change(role="Admin"), policy_path=policy)
    assert (admin.needs_approval, admin.approvers, admin.terms, admin.queued_as) == (
        True, "one of carol@example.com", "with no expiry", None)
    editor = queue.check_change(conn, change(), policy_path=policy)
    assert (editor.needs_approval, editor.approvers, editor.terms) == (False, None, "with no expiry")
    assert fetch_requests(conn) == []
    waiting = submit_on(conn, change(role="Admin"), policy_path=policy)
    again = queue.check_change(conn, change(role="Admin"), policy_path=policy)
    assert (again.needs_approval, again.queued_as, again.folded) == (
        True, (waiting.request_id, "awaiting_approval"),
        f"the same change is already queued as {waiting.request_id} (awaiting_approval)")


def test_org_admins_approve_alone_even_where_a_workspace_admin_could_otherwise(conn, policy_of):
    # Ada, the only Organization Admin, asks for herself; Carol is only Admin of Platform.
    conn.execute("UPDATE main.users SET org_role_id = ? WHERE user_id = ?", [ORG_ADMIN, ADA])
    conn.execute("INSERT INTO main.grants VALUES (?, ?, ?, 'workspace_role')", [CAROL, PLATFORM, ADMIN])
    refused = submit_on(conn, change(role="Admin"), policy_path=policy_of("org_admins"))
    assert refused.status == "rejected"
    assert refused.message == (
        "nobody could approve this request (an Organization Admin): self-approval: the request is for "
        "Ada@Example.com, and the policy does not allow self-approval. Have someone else ask for it, or fix "
        "approval.approvers (or approval.self_approval) in the policy file.")


def test_an_accepted_reason_is_recorded_whole(conn):
    reason = "Needs access for the Q3 audit. " * 50  # 1,550 characters: within the 2,000 allowed
    queued = submit_on(conn, replace(change(), reason=reason.strip()))
    assert queued.status == "pending"
    [row] = fetch_requests(conn, "request_id = ?", [queued.request_id])
    assert row["reason"] == reason.strip()
    again = submit_on(conn, replace(change(), reason=reason.strip()))
    assert again.duplicate_of == queued.request_id and "reason stays" not in again.message


def test_a_revoke_asked_while_a_grants_end_is_queued_is_its_own_request(conn):
    # The revoke that ends a time-bound grant undoes only what the grant did (maybe nothing):
    # a person's revoke of the role, asked meanwhile, is not folded into it.
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    grant = submit_on(conn, ChangeRequest("grant", "ada@example.com", "Platform", "Editor", duration="1h"), now=at)
    set_statuses(conn, [(grant.request_id, "applied", "added")], "run-1")
    queue.set_grant_terms(conn, [(grant.request_id, None, at + timedelta(hours=1))])  # it added Ada
    [end] = queue_due_expiries(conn, at + timedelta(hours=1))
    revoke = submit_on(conn, change(action="revoke"), now=at + timedelta(hours=1))
    assert (revoke.status, revoke.duplicate_of) == ("pending", None) and revoke.request_id != end, revoke


def test_a_change_asked_again_after_one_that_overturns_it_is_queued_again(conn):
    # Grant, revoke, grant: the last grant is the last word, not a duplicate of the first (folded
    # into it, the revoke queued after it would run last).
    first = submit_on(conn, change())
    revoke = submit_on(conn, change(action="revoke"))
    again = submit_on(conn, change())
    assert (first.status, revoke.status, again.status) == ("pending", "pending", "pending")
    assert again.duplicate_of is None and again.request_id != first.request_id, again
    assert submit_on(conn, change()).duplicate_of == again.request_id


def test_only_the_same_role_asked_again_is_folded_and_a_request_in_progress_still_takes_it(conn):
    # Another role for the membership is another change, queued after the first (the last word).
    editor = submit_on(conn, change())
    viewer = submit_on(conn, change(role="Viewer"))
    assert (viewer.status, viewer.duplicate_of) == ("pending", None) and viewer.request_id != editor.request_id
    # A run has taken the Viewer grant: asked again meanwhile, it is that request, not a second one.
    claim(conn, "run-1", [viewer.request_id])
    again = submit_on(conn, change(role="viewer"))
    assert (again.request_id, again.status, again.duplicate_of) == (viewer.request_id, "in_progress", viewer.request_id)
    assert again.accepted and again.message == f"the same change is already queued as {viewer.request_id} (in_progress)"
    assert len(fetch_requests(conn)) == 2


def test_a_run_takes_over_what_a_dead_run_left_in_progress_but_never_its_own(conn):
    first, second = submit_on(conn, change()), submit_on(conn, change(user=BOB))
    assert [r["request_id"] for r in claim(conn, "run-1", None)] == [first.request_id, second.request_id]
    assert claim(conn, "run-1", None) == [] and claim(conn, "run-1", [first.request_id]) == []
    # run-1 died: the next run takes them, named or not, and says it recovered them.
    assert [r["request_id"] for r in claim(conn, "run-2", [second.request_id])] == [second.request_id]
    assert [r["request_id"] for r in claim(conn, "run-3", None)] == [first.request_id, second.request_id]
    recovered = conn.execute("SELECT request_id, detail FROM main.provisioning_events WHERE kind = 'recovered' "
                             "ORDER BY \"at\", request_id").fetchall()
    assert sorted((rid, json.loads(detail)["previous_run_id"]) for rid, detail in recovered) == sorted(
        [(second.request_id, "run-1"), (first.request_id, "run-1"), (second.request_id, "run-2")])
    assert {r[0] for r in conn.execute("SELECT run_id FROM main.provisioning_requests").fetchall()} == {"run-3"}
    # What a run said of the request before (why a write is left to settle) stays with it when taken.
    said = "a write went out before the run failed; the next provisioning run settles it from LangSmith's state"
    set_statuses(conn, [(first.request_id, "in_progress", said)], "run-3")
    claim(conn, "run-4", None)
    assert [(r["status"], r["status_detail"]) for r in fetch_requests(conn)] == [("in_progress", said),
                                                                                  ("in_progress", None)]


def test_an_argument_whose_bytes_are_not_utf8_is_refused_and_its_rejection_recorded(conn):
    # Python hands a command an argument's bytes that are not UTF-8 as lone surrogates
    # (os.fsdecode): refused, saying so, and recorded with the bytes shown, never a crash.
    typed = {"user": "ada\udcff@example.com", "reason": "ticket \udcff", "requested_by": "ops\udcff"}
    for field, value in typed.items():
        rejected = submit_on(conn, replace(change(), **{field: value}))
        assert rejected.status == "rejected" and "not UTF-8" in rejected.message, rejected
    rows = conn.execute("SELECT requested_user, reason, requested_by FROM main.provisioning_requests "
                        "ORDER BY request_seq").fetchall()
    assert rows == [("ada\\xff@example.com", None, None), ("ada@example.com", "ticket \\xff", None),
                    ("ada@example.com", None, "ops\\xff")]
    # Every byte os.fsdecode escapes (0x80-0xff) is shown as itself; any other lone surrogate by its code.
    assert queue.storable("\udc80\udcff\ud800 ok") == "\\x80\\xff\\ud800 ok"


def test_every_kind_of_audit_event_a_run_records_is_documented(conn):
    # README's `provisioning_events` row and the column's description in the dbt sources list the
    # kinds an analyst filters on: a request taken over from a dead run is `recovered`.
    submit_on(conn, change())
    claim(conn, "run-1", None)
    claim(conn, "run-2", None)  # run-1 died
    kinds = {kind for (kind,) in conn.execute("SELECT DISTINCT kind FROM main.provisioning_events").fetchall()}
    assert kinds == {"queued", "claimed", "recovered"}
    root = Path(__file__).resolve().parents[2]
    [row] = [line for line in (root / "README.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("| `provisioning_events` |")]
    in_readme = set(re.findall(r"`([a-z_]+)`", row.split("Kinds:")[1]))
    sources = yaml.safe_load((root / "langsmith_access/dbt_project/models/staging/sources.yml").read_text())
    [events] = [t for s in sources["sources"] if s["name"] == "main" for t in s["tables"]
                if t["name"] == "provisioning_events"]
    [kind] = [column for column in events["columns"] if column["name"] == "kind"]
    in_sources = set(re.findall(r"[a-z_]+", kind["description"])) - {"or"}
    assert kinds <= in_readme and in_readme == in_sources, (kinds - in_readme, in_readme ^ in_sources)


@pytest.mark.parametrize("settled", ["applied", "already_satisfied", "failed"])
def test_a_change_asked_again_after_the_first_one_settled_is_queued_anew(conn, settled):
    # Only a request still to happen absorbs the same change: once the first one has settled,
    # asking again (the role was taken away by hand since, or the first one failed) must queue.
    first = submit_on(conn, change())
    set_statuses(conn, [(first.request_id, settled, "done")], "run-1")
    again = submit_on(conn, change())
    assert (again.status, again.duplicate_of) == ("pending", None) and again.request_id != first.request_id, again
    assert [r["status"] for r in fetch_requests(conn)] == [settled, "pending"]


def test_a_batch_folds_a_change_only_into_the_memberships_latest_open_request(conn):
    # Settled, rejected or overturned requests for the same change are no place to fold it into:
    # a batch (a review's import) queues what one-by-one queueing would, and its own requests count.
    applied = submit_on(conn, change())
    set_statuses(conn, [(applied.request_id, "applied", "added")], "run-1")
    rejected = record_rejection(conn, change(user=BOB), "the sheet's grant is gone")  # names Bob: resolved
    assert fetch_requests(conn, "request_id = ?", [rejected.request_id])[0]["user_id"] == BOB
    [(detail,)] = conn.execute("SELECT detail FROM main.provisioning_events WHERE request_id = ? AND kind = 'rejected'",
                               [rejected.request_id]).fetchall()
    assert json.loads(detail) == {"stage": "queue", "reason": "the sheet's grant is gone"}
    waiting_revoke = submit_on(conn, change(user=BOB, workspace=SHARED_A, action="revoke"))
    # Looked up together up front: an email two members share (in any case) is still ambiguous.
    batch = queue.SubmitBatch(conn, users=["ada@example.com", BOB, "twin@example.com", BOB_IDENTITY.upper()])
    twins = submit_on(conn, change(user="twin@example.com"), batch=batch)
    assert (twins.status, twins.message) == ("rejected", f"ambiguous user: 2 org members have the email "
                                             f"'twin@example.com' ({TWIN1}, {TWIN2}): give the user id instead.")
    ada = submit_on(conn, change(), batch=batch)
    bob = submit_on(conn, change(user=BOB), batch=batch)
    assert (ada.status, ada.duplicate_of, bob.status, bob.duplicate_of) == ("pending", None, "pending", None)
    assert submit_on(conn, change(user=BOB, workspace=SHARED_A, action="revoke"), batch=batch).duplicate_of == \
        waiting_revoke.request_id
    assert submit_on(conn, change(user="ADA@example.com"), batch=batch).duplicate_of == ada.request_id
    assert submit_on(conn, change(user=BOB, action="revoke"), batch=batch).duplicate_of is None
    again = submit_on(conn, change(user=BOB), batch=batch)
    assert (again.status, again.duplicate_of) == ("pending", None)  # after the revoke, the last word
    assert submit_on(conn, change(user=BOB_IDENTITY.upper()), batch=batch).duplicate_of == again.request_id
    assert [r["status"] for r in fetch_requests(conn)] == ["applied", "rejected", "pending", "rejected",
                                                          "pending", "pending", "pending", "pending"]


def test_a_run_never_takes_a_request_awaiting_approval_nor_one_that_ended(conn, policy_of):
    # Only approval moves a request to pending: a run claiming all (or naming it) leaves it alone.
    waiting = submit_on(conn, change(role="Admin"), policy_path=policy_of("[carol@example.com]"))
    denied = submit_on(conn, change(user=BOB, role="Admin"), policy_path=policy_of("[carol@example.com]"))
    set_statuses(conn, [(denied.request_id, "denied", "no")], "run-0")
    pending = submit_on(conn, change(user=BOB))
    assert (waiting.status, pending.status) == ("awaiting_approval", "pending")
    assert claim(conn, "run-1", [waiting.request_id, denied.request_id]) == []
    assert [r["request_id"] for r in claim(conn, "run-2", None)] == [pending.request_id]
    assert [r["status"] for r in fetch_requests(conn)] == ["awaiting_approval", "denied", "in_progress"]

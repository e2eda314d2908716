"""Requests queued as one batch (``queue.SubmitBatch``, as a review's import queues its rows) get
exactly what the same requests get queued one by one: statuses, messages, duplicates, and the
requests and events recorded. Each side runs on its own copy of the same synced database, under
the policy (``governed``), with the same clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from langsmith_access.api import request_grant, request_revoke
from langsmith_access.provisioning import queue
from langsmith_access.provisioning.queue import ChangeRequest
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.governance.support import WORKSPACE
from langsmith_access_tests.helpers import by_queue_place, copy_of

AT = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)


def queued(database: AccessDatabase, changes: list[ChangeRequest], policy: Path, *, batched: bool) -> tuple:
    """Queue ``changes`` on ``database`` in one lease; what each returned and what was recorded,
    request ids written as their place in the queue (R1, R2...)."""
    with database.writer_lease("test"), database.connect() as conn:
        batch = queue.SubmitBatch(conn) if batched else None
        results = [queue.submit_on(conn, change, policy_path=policy, now=AT, batch=batch) for change in changes]
        requests = conn.execute(
            "SELECT * EXCLUDE (request_id) FROM main.provisioning_requests ORDER BY request_seq").fetchall()
        order = [r for (r,) in conn.execute(
            "SELECT request_id FROM main.provisioning_requests ORDER BY request_seq").fetchall()]
        events = conn.execute(
            "SELECT e.request_id, e.kind, e.detail, e.at FROM main.provisioning_events AS e "
            "JOIN main.provisioning_requests AS r USING (request_id) ORDER BY r.request_seq, e.kind").fetchall()
    named = by_queue_place(order)

    answers = [(named(r.request_id), r.status, named(r.message), named(r.duplicate_of), r.resolved) for r in results]
    return (answers, [tuple(named(v) for v in request) for request in requests],
            [tuple(named(v) for v in event) for event in events])


def test_a_batch_queues_exactly_what_the_same_requests_queued_one_by_one_do(governed, tmp_path):
    sandbox, org, database, people, receiver = governed
    policy = tmp_path / "policy.yaml"
    role_here = {user: org.role(m.role_id).display_name for user, m in people.workspace.memberships.items()}
    editor, other_editor = people.editors[0], people.editors[1]
    outsider = people.outsiders[0]
    # Queued before the batch: a revoke the batch asks again; a grant awaiting approval on a
    # membership whose role the batch then revokes (another change: not a duplicate); and a grant
    # awaiting approval then its revoke, on one membership (the revoke is the last word there).
    assert request_revoke(editor.email, WORKSPACE, role_here[editor.ls_user_id]).status == "pending"
    waiting = request_grant(other_editor.email, WORKSPACE, "Admin", requested_by=editor.email)
    assert waiting.status == "awaiting_approval", waiting
    later = people.outsiders[1]
    assert request_grant(later.email, WORKSPACE, "Admin", requested_by=editor.email).status == "awaiting_approval"
    assert request_revoke(later.email, WORKSPACE, "Admin").status == "pending"
    ask_admin = ChangeRequest("grant", outsider.email, WORKSPACE, "Admin", "on call", other_editor.email,
                              duration="8h")
    changes = [
        ChangeRequest("revoke", editor.ls_user_id, people.workspace.id, role_here[editor.ls_user_id]),
        ChangeRequest("revoke", other_editor.email.upper(), WORKSPACE.lower(), role_here[other_editor.ls_user_id],
                      "review"),
        ChangeRequest("revoke", other_editor.ls_user_id, people.workspace.id, role_here[other_editor.ls_user_id],
                      "another reason"),
        ask_admin,
        ask_admin,
        ChangeRequest("grant", outsider.email, WORKSPACE, "Admin", "on call", other_editor.email, duration="1h"),
        ChangeRequest("revoke", outsider.email, WORKSPACE, "Admin"),
        ask_admin,  # after the revoke: the last word is the revoke's, so not folded into the first
        ChangeRequest("grant", people.disabled.email, WORKSPACE, "Viewer", duration="1d"),
        ChangeRequest("revoke", "nobody@nowhere.example", WORKSPACE, "Viewer"),
        ChangeRequest("revoke", "nobody@nowhere.example", WORKSPACE, "Viewer"),
        ChangeRequest("revoke", outsider.email, "No Such Workspace", "Viewer"),
        ChangeRequest("revoke", outsider.email, WORKSPACE, "No Such Role"),
        ChangeRequest("revoke", outsider.email, WORKSPACE, "Viewer", duration="8h"),
        ChangeRequest("revoke", later.ls_user_id, WORKSPACE, "Admin"),
        ChangeRequest("grant", later.email, WORKSPACE, "Admin", requested_by=editor.email),
        # Typed as a role above, here as a workspace: what a role resolved to is no workspace.
        ChangeRequest("revoke", outsider.email, "Viewer", "Viewer"),
    ]
    one_by_one = queued(copy_of(database, tmp_path / "one-by-one"), changes, policy, batched=False)
    batched = queued(copy_of(database, tmp_path / "batched"), changes, policy, batched=True)
    assert batched == one_by_one
    statuses = [answer[1] for answer in batched[0]]
    assert statuses == ["pending", "pending", "pending", "awaiting_approval", "awaiting_approval", "rejected",
                        "pending", "awaiting_approval", "pending", "rejected", "rejected", "rejected", "rejected",
                        "rejected", "pending", "awaiting_approval", "rejected"], batched[0]
    answers = batched[0]
    assert answers[0][3] == "R1" and answers[2][3] == answers[1][0] and answers[4][3] == answers[3][0]
    assert answers[5][3] == answers[3][0] and answers[7][3] is None
    assert answers[14][3] == "R4" and answers[15][3] is None  # the revoke queued last, not the grant before it
    assert answers[16][2].startswith("unknown workspace"), answers[16]

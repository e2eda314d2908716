"""Queue-time validation (against a hand-made synced database) and every plan branch."""

import duckdb
import pytest

from langsmith_access.provisioning.planner import (
    ADD,
    CHANGE_ROLE,
    NOTHING,
    REMOVE,
    desired_role,
    plan_change,
    plan_expiry,
)
from langsmith_access.provisioning.queue import ChangeRequest, RequestRejected, resolve_change, submit_on
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


@pytest.fixture
def conn():
    """The tables of a finished sync, as small as the rules need."""
    conn = duckdb.connect()
    ensure_schema(conn)
    conn.execute("""
        CREATE TABLE main.users AS SELECT * FROM (VALUES
            (?, 'oi-1', 'Ada@Example.com', false), (?, 'oi-2', 'bob@example.com', false),
            (?, 'oi-3', 'twin@example.com', false), (?, 'oi-4', 'TWIN@example.com', false)
        ) t(user_id, org_identity_id, email, is_disabled)""", [ADA, BOB, TWIN1, TWIN2])
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
        (change(workspace="Nowhere"), "unknown workspace"),
        (change(workspace="Research"), f"ambiguous workspace: 2 workspaces are named 'Research': Research ({SHARED_A}); Research ({SHARED_B})"),
        (change(workspace=PERSONAL), "is a personal workspace"),
        (change(workspace="Old"), "is a deleted workspace"),
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
        (change(user="ada@example.com\n; DROP TABLE users"), "control or invisible characters"),
        (change(user="ada\u200b@example.com"), "control or invisible characters"),
        (ChangeRequest("grant", 42, "Platform", "Editor"), "user must be text"),
    ],
)
def test_every_rejection_names_the_problem(conn, request_, message):
    with pytest.raises(RequestRejected, match=None) as caught:
        resolve_change(conn, request_)
    assert message in str(caught.value)


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


def test_unknown_action_is_refused():
    with pytest.raises(ValueError):
        plan_change("promote", EDITOR, None, None)

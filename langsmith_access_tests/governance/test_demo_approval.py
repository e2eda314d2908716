"""The demo's approval step (``langsmith-access demo``, its access governance story) against the
synced env: provisioning follows only an approval that was recorded, and says why it stops."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from langsmith_access import demo
from langsmith_access.demo import DEMO_POLICY, _approve_and_apply, _cast, _governance_story
from langsmith_access.provisioning.expiry import queue_due_expiries
from langsmith_access.provisioning.queue import ChangeRequest, submit
from langsmith_access.settings import DEFAULT_ORG_SLUG, Org, Secret, Settings
from langsmith_access_tests.helpers import query


def _asked_for_admin(org, database, tmp_path):
    policy = tmp_path / "demo-policy.yaml"
    policy.write_text(DEMO_POLICY)
    cast = _cast(org)
    assert cast is not None
    asked = submit(database, ChangeRequest("grant", cast.changer.email, cast.workspace.id, "Admin",
                                           reason="incident 7", requested_by=cast.changer.email, duration="8h"),
                   policy_path=policy)
    assert asked.status == "awaiting_approval", asked.message
    return cast, asked.request_id, policy


def _status(database, request_id):
    [(status,)] = query(database.path, "SELECT status FROM main.provisioning_requests WHERE request_id = ?",
                        [request_id])
    return status


def test_an_approval_not_recorded_stops_the_demo_before_provisioning_and_says_why(env, tmp_path, capsys):
    sandbox, org, database = env
    cast, request_id, policy = _asked_for_admin(org, database, tmp_path)
    sandbox.reset_log()
    # The requester approving their own request: refused, so not recorded.
    applied = _approve_and_apply(database, request_id, cast.changer, Org(DEFAULT_ORG_SLUG, Settings.from_env()),
                                 policy)
    err = capsys.readouterr().err
    assert not applied
    assert f"approval of request {request_id} was not recorded" in err
    assert "nothing was provisioned (the request is awaiting_approval)" in err
    assert "Provisioning failed" not in err and "None" not in err
    assert _status(database, request_id) == "awaiting_approval"
    assert not sandbox.request_log.snapshot()  # no provisioning run: LangSmith was not even read


def test_a_recorded_approval_is_provisioned(env, tmp_path, capsys):
    sandbox, org, database = env
    cast, request_id, policy = _asked_for_admin(org, database, tmp_path)
    applied = _approve_and_apply(database, request_id, cast.approver, Org(DEFAULT_ORG_SLUG, Settings.from_env()),
                                 policy)
    assert applied, capsys.readouterr().err
    assert _status(database, request_id) == "applied"


def test_an_approved_grant_that_provisioning_does_not_apply_stops_the_demo_and_says_why(env, tmp_path, capsys):
    sandbox, org, database = env
    cast, request_id, policy = _asked_for_admin(org, database, tmp_path)
    org.workspace(cast.workspace.id).is_deleted = True  # deleted after the approval was asked for: rejected
    applied = _approve_and_apply(database, request_id, cast.approver, Org(DEFAULT_ORG_SLUG, Settings.from_env()),
                                 policy)
    err = capsys.readouterr().err
    assert not applied
    assert f"error: request {request_id} was approved but not applied: rejected, " in err, err
    assert _status(database, request_id) == "rejected"


def test_an_approved_grant_whose_provisioning_run_fails_stops_the_demo_and_says_why(env, tmp_path, capsys):
    # A key LangSmith refuses: the approval is recorded (that needs no key), the run fails, and
    # the demo says so rather than report the request as merely not applied.
    sandbox, org, database = env
    cast, request_id, policy = _asked_for_admin(org, database, tmp_path)
    refused = Org(DEFAULT_ORG_SLUG, replace(Settings.from_env(), api_key=Secret("lsv2_sk_" + "0" * 32)))
    applied = _approve_and_apply(database, request_id, cast.approver, refused, policy)
    err = capsys.readouterr().err
    assert not applied
    assert "Provisioning failed: " in err and "approved but not applied" not in err, err
    assert _status(database, request_id) == "pending"


def test_the_governance_story_ends_with_the_member_back_in_the_role_they_had(env, capsys):
    sandbox, org, database = env
    cast = _cast(org)
    assert cast is not None
    before = org.role(org.membership(cast.workspace.id, cast.changer.ls_user_id).role_id).display_name
    started = datetime.now(UTC)
    told = _governance_story(org, Org(DEFAULT_ORG_SLUG, Settings.from_env()), cast)
    ended = datetime.now(UTC)
    out, err = capsys.readouterr()
    assert told, err
    # The Admin grant is for the 8 hours the story tells (the policy's most), from when it was applied.
    [(expires_at,)] = query(database.path, "SELECT expires_at FROM main.provisioning_requests "
                                           "WHERE action = 'grant' AND expires_at IS NOT NULL")
    assert started + timedelta(hours=8) <= expires_at <= ended + timedelta(hours=8)
    assert "they try to approve it themselves: refused: self-approval" in out
    assert f"revoke by langsmith-access (expired): applied, restore {before}" in out, out
    assert f"{cast.changer.email} is {before} in {cast.workspace.display_name!r} again." in out


def test_an_expiry_revoke_that_provisioning_does_not_apply_stops_the_demo_and_says_why(env, capsys, monkeypatch):
    # The workspace deleted in LangSmith while the grant ran: its revoke is not applied, and the
    # demo must not say the member has their role back (nor end with success).
    sandbox, org, database = env
    cast = _cast(org)
    assert cast is not None

    def deleted_then_due(conn, now):
        org.workspace(cast.workspace.id).is_deleted = True
        return queue_due_expiries(conn, now)

    monkeypatch.setattr(demo, "queue_due_expiries", deleted_then_due)
    told = _governance_story(org, Org(DEFAULT_ORG_SLUG, Settings.from_env()), cast)
    out, err = capsys.readouterr()
    assert not told
    assert "again." not in out
    assert "error: the expired Admin grant " in err and " was not revoked: " in err, err


def test_an_expiry_that_queues_no_revoke_stops_the_demo_and_says_why(env, capsys, monkeypatch):
    sandbox, org, database = env
    cast = _cast(org)
    assert cast is not None
    monkeypatch.setattr(demo, "queue_due_expiries", lambda conn, now: [])
    told = _governance_story(org, Org(DEFAULT_ORG_SLUG, Settings.from_env()), cast)
    out, err = capsys.readouterr()
    assert not told
    assert "again." not in out
    assert "was not revoked: no revoke was queued for it" in err, err


def test_a_grant_that_does_not_wait_for_approval_stops_the_demo_and_says_why(env, capsys):
    # Here the requester is unknown to the org, so the grant is rejected when queued.
    sandbox, org, database = env
    cast = _cast(org)
    assert cast is not None
    stranger = replace(cast, changer=replace(cast.changer, email="stranger@example.com"))
    sandbox.reset_log()
    told = _governance_story(org, Org(DEFAULT_ORG_SLUG, Settings.from_env()), stranger)
    err = capsys.readouterr().err
    assert not told
    assert "error: the demo's Admin grant was not sent for approval: it is rejected: " in err, err
    assert not sandbox.request_log.snapshot()  # nothing provisioned

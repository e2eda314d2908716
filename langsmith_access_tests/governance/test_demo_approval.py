"""The demo's approval step (``langsmith-access demo``, its access governance story) against the
synced env: provisioning follows only an approval that was recorded, and says why it stops."""

from langsmith_access.demo import DEMO_POLICY, _approve_and_apply, _cast
from langsmith_access.provisioning.queue import ChangeRequest, submit
from langsmith_access.settings import DEFAULT_ORG_SLUG, Org, Settings
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

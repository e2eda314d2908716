"""When ``access.expiring`` is sent, for real: grants queued with the Python API, applied by
provisioning runs in this process (a real Dagster run) against the sandbox, and the outbox and
a webhook receiver on 127.0.0.1 read back.

DESIGN.md section 10: the warning is due ``LANGSMITH_ACCESS_EXPIRY_WARNING`` (default 24h)
before ``expires_at``. A grant shorter than that is inside its window the moment it is applied,
so the run that applies it sends it, once; a later run never sends it again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from langsmith_access import runner
from langsmith_access.api import deliver_notifications, provision, request_grant
from langsmith_access.provisioning import expiry, queue
from langsmith_access_tests.governance.support import WORKSPACE, events, request_row
from langsmith_access_tests.helpers import query, tick_sensor


def expiring(database) -> list[dict]:
    """The outbox's ``access.expiring`` payloads (the analysts' copy, as the run published it)."""
    return [json.loads(payload) for (payload,) in query(
        database.path, "SELECT payload FROM main.notifications WHERE event = 'access.expiring' "
        "ORDER BY notification_seq")]


def test_a_grant_shorter_than_the_warning_window_is_warned_of_by_the_run_that_applies_it(governed):
    sandbox, org, database, people, receiver = governed
    short = request_grant(people.outsiders[0].email, WORKSPACE, "Editor", duration="8h")  # < 24h window
    long = request_grant(people.outsiders[1].email, WORKSPACE, "Editor", duration="3d")  # warned later
    assert short.status == long.status == "pending"
    outcome = provision()
    assert outcome.success, outcome.failure
    short_row = request_row(database, short.request_id)
    assert short_row["status"] == "applied" and short_row["expires_at"] is not None

    [warning] = expiring(database)
    assert warning["request_id"] == short.request_id and warning["user"] == people.outsiders[0].email
    assert [kind for kind, _ in events(database, short.request_id)].count("expiry_warned") == 1
    assert "expiry_warned" not in [kind for kind, _ in events(database, long.request_id)]

    # A later run (nothing pending) sends it again to nobody; the receiver gets it once.
    assert provision().success
    assert [w["request_id"] for w in expiring(database)] == [short.request_id]
    deliver_notifications()
    assert [b["request_id"] for b in receiver.bodies() if b["event"] == "access.expiring"] == [short.request_id]


def test_a_run_that_dies_after_the_apply_loses_no_warning_and_doubles_none(governed, monkeypatch):
    sandbox, org, database, people, receiver = governed
    calls = []
    real_warn = expiry.warn_expiring

    def dies_after_the_apply(*args, **kwargs):
        # The first call is before the queue; the second, after the apply, dies before writing.
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed between the apply and the warning")
        return real_warn(*args, **kwargs)

    monkeypatch.setattr(expiry, "warn_expiring", dies_after_the_apply)
    grant = request_grant(people.outsiders[0].email, WORKSPACE, "Editor", duration="8h")
    assert not provision().success
    assert len(calls) == 2  # it got as far as the warning after the apply
    assert request_row(database, grant.request_id)["status"] == "applied"
    assert expiring(database) == []
    monkeypatch.setattr(expiry, "warn_expiring", real_warn)
    # The next run (as the expiry sensor launches for a due warning) sends it, once.
    assert provision().success and provision().success
    assert [w["request_id"] for w in expiring(database)] == [grant.request_id]


@pytest.mark.parametrize("warning, warned", [("1h", False), ("9h", True)])
def test_the_warning_window_is_the_setting(governed, monkeypatch, warning, warned):
    sandbox, org, database, people, receiver = governed
    monkeypatch.setenv("LANGSMITH_ACCESS_EXPIRY_WARNING", warning)
    grant = request_grant(people.outsiders[0].email, WORKSPACE, "Editor", duration="8h")
    assert provision().success
    assert [w["request_id"] for w in expiring(database)] == ([grant.request_id] if warned else [])


def test_a_warning_that_comes_due_between_runs_makes_the_expiry_sensor_launch_the_run_that_sends_it(
        governed, instance, monkeypatch):
    sandbox, org, database, people, receiver = governed
    grant = request_grant(people.outsiders[0].email, WORKSPACE, "Editor", duration="30h")
    assert runner.run_job(runner.PROVISION_JOB, {}, dagster_instance=instance).success
    assert request_row(database, grant.request_id)["status"] == "applied" and expiring(database) == []
    result, cursor = tick_sensor("access_expiry_sensor", instance)
    assert not result.run_requests and result.skip_message.startswith("No access due to end")

    # Seven hours on, the 30h grant is inside the 24h window: nothing else is due, no run is
    # coming, and only the expiry sensor can get the warning out before the end.
    later = datetime.now(UTC) + timedelta(hours=7)
    monkeypatch.setattr(queue, "now_utc", lambda: later)
    result, cursor = tick_sensor("access_expiry_sensor", instance, cursor)
    [run] = result.run_requests
    assert run.tags["langsmith_access/due"] == "1" and run.run_config == {}
    assert runner.run_job(runner.PROVISION_JOB, run.run_config, dagster_instance=instance).success
    [warning] = expiring(database)
    assert warning["request_id"] == grant.request_id
    assert warning["at"].startswith(later.strftime("%Y-%m-%dT%H:%M"))
    # Sent: the next tick has nothing to launch for it.
    result, _ = tick_sensor("access_expiry_sensor", instance, cursor)
    assert not result.run_requests

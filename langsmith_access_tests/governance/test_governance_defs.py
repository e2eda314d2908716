"""Access governance in Dagster: decide_access_request (a real run of the job against the synced
env and its policy), access_expiry_sensor and notification_outbox_sensor against a real Dagster
instance, a real DuckDB file and a webhook receiver on 127.0.0.1."""

import json
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.test_utils import create_run_for_test

from langsmith_access import runner
from langsmith_access.api import request_grant
from langsmith_access.definitions import defs
from langsmith_access.defs.orgs import org_tags
from langsmith_access.defs.provisioning.governance import evaluate_outbox, expiry_due
from langsmith_access.defs.resources import org_resources
from langsmith_access.governance.notifications import Notifier
from langsmith_access.provisioning import queue
from langsmith_access.settings import Org, Orgs, Secret, Settings, load_orgs
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.governance.receiver import WebhookReceiver
from langsmith_access_tests.governance.support import (
    WORKSPACE,
    events,
    queued_before_admin_had_a_max,
    request_row,
)
from langsmith_access_tests.helpers import lease_held_elsewhere, query, tick_sensor

DAY = timedelta(days=1)


def test_the_job_and_sensors_are_defined_and_the_sensors_run_by_default():
    definitions = defs()
    assert definitions.resolve_job_def("decide_access_request").name == "decide_access_request"
    expiry = definitions.resolve_sensor_def("access_expiry_sensor")
    outbox = definitions.resolve_sensor_def("notification_outbox_sensor")
    assert expiry.job_name == "provision_workspace_roles" and outbox.targets == []
    assert {expiry.default_status, outbox.default_status} == {dg.DefaultSensorStatus.RUNNING}


def test_every_sensor_ticks_at_the_configured_interval(monkeypatch):
    # README: LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS sets how often all three tick.
    monkeypatch.setenv("LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS", "17")
    definitions = defs()
    for name in ("provisioning_queue_sensor", "access_expiry_sensor", "notification_outbox_sensor"):
        assert definitions.resolve_sensor_def(name).minimum_interval_seconds == 17, name


def decide(request_id: str, decision: str, by: str, comment: str | None = None):
    config = {"request_id": request_id, "decision": decision, "by": by}
    if comment:
        config["comment"] = comment
    return runner.run_job("decide_access_request", {"ops": {"decide_request": {"config": config}}})


def test_decide_access_request_records_a_decision_or_fails_saying_why(governed):
    _, _, database, people, _ = governed
    waiting = request_grant(people.outsiders[0].email, WORKSPACE, "Admin", requested_by="ops@example.com")
    assert waiting.status == "awaiting_approval"

    refused = decide(waiting.request_id, "approve", people.editors[0].email)
    assert not refused.success and "is neither an Admin of Search Relevance" in refused.failure
    assert [kind for kind, _ in events(database, waiting.request_id)][-1] == "decision_refused"
    assert request_row(database, waiting.request_id)["status"] == "awaiting_approval"

    approved = decide(waiting.request_id, "approve", people.admin.email, "from the Launchpad")
    assert approved.success, approved.failure
    row = request_row(database, waiting.request_id)
    assert (row["status"], row["approved_by"]) == ("pending", people.admin.email)

    second = request_grant(people.outsiders[1].email, WORKSPACE, "Admin")
    # The table's word (provisioning_approvals.decision) is taken as well as the command's.
    assert decide(second.request_id, "Denied", people.admin.email).success
    assert request_row(database, second.request_id)["status"] == "denied"
    # The org's webhook is told, as for the command's deny.
    assert [json.loads(payload)["request_id"] for (payload,) in query(
        database.path, "SELECT payload FROM main.notifications WHERE event = 'request.denied'")] == [second.request_id]
    # The command's verb, as typed in the Launchpad (any case, stray spaces): a deny never approves.
    third = request_grant(people.outsiders[2].email, WORKSPACE, "Admin")
    assert decide(third.request_id, " Deny ", people.admin.email).success
    assert request_row(database, third.request_id)["status"] == "denied"
    assert "must be 'approve' or 'deny'" in decide(second.request_id, "maybe", people.admin.email).failure


def test_a_launchpad_decision_is_judged_by_the_orgs_policy(governed, tmp_path, monkeypatch):
    # Queued when Admin had no max (so with no end); the org's policy now gives Admin 8h: the
    # decision run reads that policy, as the command does, and refuses the approval.
    _, _, database, people, _ = governed
    grant = queued_before_admin_had_a_max(tmp_path, monkeypatch, people.outsiders[0].email,
                                          requested_by="ops@example.com")

    refused = decide(grant.request_id, "approve", people.admin.email)
    assert not refused.success and "the policy now gives Admin grants one" in refused.failure, refused.failure
    assert request_row(database, grant.request_id)["status"] == "awaiting_approval"


def test_a_launchpad_decision_refused_names_the_launchpads_fields_not_the_commands_flags(governed):
    """The Launchpad has fields ``by`` and ``comment``; a refusal naming ``--by`` sends the operator
    looking for a flag the form does not have."""
    _, _, database, people, _ = governed
    waiting = request_grant(people.outsiders[0].email, WORKSPACE, "Admin", requested_by="ops@example.com")
    for by, comment, says in (
        ("  ", None, "by is empty: fill it in"),
        ("ops", None, "by must be the approver's email as LangSmith knows it, got 'ops'"),
        (people.admin.email, "x" * 5000, "comment is 5000 characters long"),
    ):
        refused = decide(waiting.request_id, "approve", by, comment)
        assert not refused.success and says in refused.failure, refused.failure
        assert "--by" not in refused.failure and "--comment" not in refused.failure
    assert request_row(database, waiting.request_id)["status"] == "awaiting_approval"


def test_a_decision_launched_with_the_launchpads_scaffold_names_every_field_to_fill_in(governed):
    """The Launchpad scaffolds the required fields as empty text: one run names them all (not one
    per run), and records nothing, as for a field left out of the config."""
    _, _, database, people, _ = governed
    blank = decide("", " ", "")
    assert not blank.success
    assert ("request_id, decision, by are empty: fill them in (request_id: `langsmith-access requests --status "
            "awaiting_approval` lists them; decision: approve or deny; by: the approver's email). Nothing was "
            "recorded.") in blank.failure, blank.failure
    assert query(database.path, "SELECT count(*) FROM main.provisioning_events") == [(0,)]


def test_a_dry_run_of_a_launchpad_change_says_what_the_policy_would_make_of_it(governed):
    """A dry run of ``change`` says what the real run would do: a grant the policy sends for
    approval is not planned as applied, and one the policy refuses fails as the real run would,
    naming the Launchpad's field; nothing is queued or written either way."""
    sandbox, org, database, people, _ = governed

    def dry(**fields):
        change = {"action": "grant", "user": people.outsiders[0].email, "workspace": WORKSPACE, **fields}
        return runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": {
            "change": change, "dry_run": True}}}})

    awaiting = dry(role="Admin")
    assert awaiting.success, awaiting.failure
    result = awaiting.outputs["apply_requests"]
    assert result["outcomes"] == []
    [said] = result["policy_changes"]
    assert said["status"] == "awaiting_approval" and "approv" in said["detail"], said
    too_long = dry(role="Editor", duration="400d")
    assert not too_long.success and "The change would be rejected: change.duration" in too_long.failure, \
        too_long.failure
    assert dry(role="Editor").outputs["apply_requests"]["outcomes"][0]["status"] == "planned"
    assert query(database.path, "SELECT count(*) FROM main.provisioning_requests") == [(0,)]
    assert [r for r in sandbox.request_log.snapshot() if r.method in ("POST", "PATCH", "DELETE")] == []


def test_a_key_pasted_into_the_decision_field_is_not_echoed(governed):
    pasted = "lsv2_sk_" + "0123456789abcdef" * 2 + "_pastedhere"
    refused = decide("a-request", pasted, "ops@example.com")
    assert not refused.success and "decision must be 'approve' or 'deny'" in refused.failure
    assert "0123456789abcdef" not in refused.failure, refused.failure


def test_a_dry_run_of_a_change_already_queued_says_what_the_real_run_makes_of_it(governed):
    """The real run folds a change already queued into that request (awaiting approval: nothing
    applied), or refuses it when it asks other terms; its dry run says the same, not "planned"."""
    sandbox, org, database, people, _ = governed

    def launch(dry_run, **fields):
        change = {"action": "grant", "user": people.outsiders[0].email, "workspace": WORKSPACE, "role": "Admin",
                  **fields}
        return runner.run_job("provision_workspace_roles", {"ops": {"select_requests": {"config": {
            "change": change, "dry_run": dry_run}}}})

    assert launch(False).success
    [(request_id, status)] = query(database.path, "SELECT request_id, status FROM main.provisioning_requests")
    assert status == "awaiting_approval"
    again = launch(True)
    assert again.success, again.failure
    assert again.outputs["apply_requests"]["outcomes"] == []
    [said] = again.outputs["apply_requests"]["policy_changes"]
    assert said["status"] == "awaiting_approval", said
    assert f"already queued as {request_id} (awaiting_approval): nothing is applied" in said["detail"], said
    # A reason of its own would not be kept: the dry run says so, as the real run's queueing does.
    [said] = launch(True, reason="quarterly audit").outputs["apply_requests"]["policy_changes"]
    assert (f"already queued as {request_id} (awaiting_approval); it has no reason, and yours is not added to "
            "it: nothing is applied") in said["detail"], said
    other_terms = launch(True, duration="2h")  # the queued grant lasts the policy's 8 hours
    assert not other_terms.success
    assert f"The change would be rejected: the same change is already queued as {request_id}" in other_terms.failure
    assert "with other terms" in other_terms.failure, other_terms.failure
    assert query(database.path, "SELECT count(*) FROM main.provisioning_requests") == [(1,)]
    assert [r for r in sandbox.request_log.snapshot() if r.method in ("POST", "PATCH", "DELETE")] == []


def test_a_launchpad_decision_is_the_launchers_and_its_events_name_the_run(governed, instance):
    """Anyone who can launch the job types ``by``: a run whose launcher Dagster tagged (Dagster+
    tags ``dagster/user``) decides only as that launcher, so a requester cannot approve their own
    request in an approver's name; and the decision's events name the run it was made in."""
    _, _, database, people, _ = governed
    requester = people.editors[0].email
    waiting = request_grant(people.outsiders[0].email, WORKSPACE, "Admin", requested_by=requester)
    org = load_orgs().get()
    job = defs().resolve_job_def("decide_access_request")

    def launch(by: str, launcher: str):
        config = {"request_id": waiting.request_id, "decision": "approve", "by": by}
        return job.execute_in_process(
            run_config={"ops": {"decide_request": {"config": config}}}, instance=instance, raise_on_error=False,
            partition_key=org.slug, tags={**org_tags(org.slug), "dagster/user": launcher},
            resources=org_resources(Orgs((org,))))

    impersonated = launch(people.admin.email, requester.upper())
    assert not impersonated.success
    assert request_row(database, waiting.request_id)["status"] == "awaiting_approval"
    [refused] = [d for kind, d in events(database, waiting.request_id) if kind == "decision_refused"]
    assert f"launched by {requester.upper()}, who decides only as themself" in refused["reason"]
    assert refused["launched_by"] == requester.upper()

    approved = launch(people.admin.email, people.admin.email.upper())
    assert approved.success
    assert request_row(database, waiting.request_id)["status"] == "pending"
    run_ids = dict(query(database.path, "SELECT kind, run_id FROM main.provisioning_events WHERE request_id = ? "
                                        "AND kind IN ('approved', 'decision_refused')", [waiting.request_id]))
    assert run_ids == {"decision_refused": impersonated.run_id, "approved": approved.run_id}


def test_a_user_tag_typed_in_the_launchpad_does_not_make_a_tagged_launcher_someone_else(governed, instance):
    """Dagster itself sets ``dagster/user`` (a reserved tag nobody types), while a plain ``user``
    tag is any launcher's to add in the Launchpad: a requester Dagster tagged who adds
    ``user: <an approver>`` must still decide only as themself, not approve their own request as
    that approver. The refusal names the real launcher, and nothing is approved."""
    _, _, database, people, _ = governed
    requester = people.editors[0].email
    waiting = request_grant(people.outsiders[0].email, WORKSPACE, "Admin", requested_by=requester)
    org = load_orgs().get()
    config = {"request_id": waiting.request_id, "decision": "approve", "by": people.admin.email}

    forged = defs().resolve_job_def("decide_access_request").execute_in_process(
        run_config={"ops": {"decide_request": {"config": config}}}, instance=instance, raise_on_error=False,
        partition_key=org.slug,
        tags={**org_tags(org.slug), "dagster/user": requester, "user": people.admin.email},
        resources=org_resources(Orgs((org,))))

    assert not forged.success
    assert request_row(database, waiting.request_id)["status"] == "awaiting_approval"
    assert query(database.path, "SELECT count(*) FROM main.provisioning_approvals WHERE request_id = ?",
                 [waiting.request_id]) == [(0,)]
    [refused] = [d for kind, d in events(database, waiting.request_id) if kind == "decision_refused"]
    assert f"launched by {requester}, who decides only as themself" in refused["reason"], refused
    assert refused["launched_by"] == requester


def test_a_launchpad_request_is_the_launchers_so_they_cannot_approve_it_as_someone_elses(governed, instance):
    """A grant typed in the Launchpad is asked by whoever launched the run: with a launcher Dagster
    tagged, a ``requested_by`` naming someone else is rejected (recorded, saying why), since the
    launcher, an approver, could otherwise approve the grant they asked for as though another had."""
    _, _, database, people, _ = governed
    org = load_orgs().get()
    job = defs().resolve_job_def("provision_workspace_roles")
    launcher = people.admin.email
    change = {"action": "grant", "user": people.outsiders[0].email, "workspace": WORKSPACE, "role": "Admin"}

    def launch(dry_run: bool = False, **fields):
        config = {"change": {**change, **fields}, **({"dry_run": True} if dry_run else {})}
        return job.execute_in_process(
            run_config={"ops": {"select_requests": {"config": config}}},
            instance=instance, raise_on_error=False, partition_key=org.slug,
            tags={**org_tags(org.slug), "dagster/user": launcher}, resources=org_resources(Orgs((org,))))

    def latest() -> tuple:
        return query(database.path, "SELECT request_id, status, status_detail, requested_by FROM "
                                    "main.provisioning_requests ORDER BY requested_at DESC LIMIT 1")[0]

    def queued() -> int:
        return query(database.path, "SELECT count(*) FROM main.provisioning_requests")[0][0]

    before = queued()
    assert not launch(dry_run=True, requested_by=people.editors[0].email).success  # a dry run says so, queues nothing
    assert queued() == before
    in_anothers_name = launch(requested_by=people.editors[0].email)
    assert not in_anothers_name.success
    request_id, status, detail, _ = latest()
    assert status == "rejected" and detail.startswith(f"this run was launched by {launcher}, who asks only as themself")
    assert [kind for kind, _ in events(database, request_id)] == ["rejected"]

    # As themself (any case), or leaving requested_by out: queued, and the launcher cannot approve it.
    for fields in ({"requested_by": launcher.upper()}, {}):
        assert launch(**fields).success
        request_id, status, _, requested_by = latest()
        assert status == "awaiting_approval" and requested_by.lower() == launcher.lower()
        assert "self-approval" in decide(request_id, "approve", launcher).failure
        assert decide(request_id, "deny", launcher).success


# ------------------------------------------------------------------ the sensors


def add_request(database: AccessDatabase, status: str, **columns) -> str:
    """A request as the queue stores it, with the governance columns given."""
    request_id = queue.new_id()
    names = ["request_id", "action", "status", "requested_at", "updated_at", *columns]
    with database.writer_lease("test"):
        database.ensure_working()
        with database.connect() as conn:
            conn.execute(
                f"INSERT INTO main.provisioning_requests ({', '.join(names)}) "
                f"VALUES (?, 'grant', ?, now(), now(){', ?' * len(columns)})",
                [request_id, status, *columns.values()],
            )
        database.publish()
    return request_id


def tick(instance, name: str, cursor=None):
    return tick_sensor(name, instance, cursor)


def test_the_expiry_sensor_launches_a_provisioning_run_only_when_something_is_due(database, instance):
    result, _ = tick(instance, "access_expiry_sensor")
    assert "No analysts' database yet" in result.skip_message
    now = datetime.now(UTC)
    add_request(database, "applied", expires_at=now + DAY)  # later
    add_request(database, "awaiting_approval", approval_deadline=now + DAY)
    add_request(database, "already_satisfied")
    result, _ = tick(instance, "access_expiry_sensor")
    assert not result.run_requests and result.skip_message.startswith("No access due to end")

    due = add_request(database, "applied", expires_at=now - timedelta(minutes=1))
    overdue = add_request(database, "awaiting_approval", approval_deadline=now - timedelta(minutes=1))
    result, cursor = tick(instance, "access_expiry_sensor")
    [run] = result.run_requests
    assert run.job_name in (None, "provision_workspace_roles") and run.run_config == {}
    assert run.tags["langsmith_access/due"] == "2"
    assert run.partition_key == "default" and run.tags["langsmith_access/org"] == "default"
    again, _ = tick(instance, "access_expiry_sensor", cursor)
    assert again.run_requests[0].run_key != run.run_key  # a later tick may launch again

    # A grant whose revoke is already queued is not due again.
    add_request(database, "pending", parent_request_id=due)
    with database.writer_lease("test"), database.connect() as conn:
        conn.execute("UPDATE main.provisioning_requests SET status = 'approval_expired' WHERE request_id = ?",
                     [overdue])
    database.publish()
    result, _ = tick(instance, "access_expiry_sensor")
    assert not result.run_requests

    add_request(database, "applied", expires_at=now - timedelta(minutes=1))
    # Another org's run in flight does not hold this one back; this org's does.
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.STARTED,
                        tags={"langsmith_access/org": "other"})
    assert len(tick(instance, "access_expiry_sensor")[0].run_requests) == 1
    create_run_for_test(instance, job_name="provision_workspace_roles", status=dg.DagsterRunStatus.STARTED,
                        tags={"langsmith_access/org": "default"})
    result, _ = tick(instance, "access_expiry_sensor")
    assert not result.run_requests and "in progress" in result.skip_message


def test_the_expiry_sensor_asks_for_a_run_when_a_warning_is_due_only_with_a_webhook(database, instance, monkeypatch):
    # A grant that added the member (no prior role), ending in two hours.
    add_request(database, "applied", user_id="u-1", workspace_id="w-1", role_id="r-editor",
                expires_at=datetime.now(UTC) + timedelta(hours=2))
    assert not tick(instance, "access_expiry_sensor")[0].run_requests
    monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    assert len(tick(instance, "access_expiry_sensor")[0].run_requests) == 1


def test_an_org_whose_own_webhook_cannot_be_used_yet_still_has_its_expiry_warnings_due(database):
    # Its notifications are queued and wait until its variable is set (Org.webhook_problem, as
    # Notifier.of_org has it): a sensor that looked for a URL launched no run to raise the
    # warning, and the access.expiring it would have sent once fixed was never raised at all.
    warned_about = add_request(database, "applied", user_id="u-1", workspace_id="w-1", role_id="r-editor",
                               expires_at=datetime.now(UTC) + timedelta(hours=2))
    settings = Settings(duckdb_path=database.path)
    waiting = Org("default", settings, webhook_problem="The variable LANGSMITH_ACCESS_WEBHOOK_URL_EU is not set.")
    with database.connect(read_only=True) as conn:
        assert expiry_due(Org("default", settings), conn) == []  # no webhook at all: nothing to warn
        assert expiry_due(waiting, conn) == [warned_about]


def test_the_outbox_sensor_delivers_what_is_due_and_never_fails(database, instance, monkeypatch):
    result, _ = tick(instance, "notification_outbox_sensor")
    assert "LANGSMITH_ACCESS_WEBHOOK_URL is not set" in result.skip_message
    with database.writer_lease("test"):
        database.ensure_working()
        with database.connect() as conn:
            Notifier("default", enabled=True).notify(conn, "access.expiring", at=datetime.now(UTC),
                                                     request_id="r-1", detail="expires soon")
    receiver = WebhookReceiver()
    monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", receiver.url)
    down, _ = tick(instance, "notification_outbox_sensor")  # nothing listens yet
    assert "1 not delivered (could not connect: connection refused" in down.skip_message
    with database.writer_lease("test"), database.connect() as conn:  # the retry is due (no waiting)
        conn.execute("UPDATE main.notifications SET next_attempt_at = now()")
    with receiver:
        up, _ = tick(instance, "notification_outbox_sensor")
        assert up.skip_message == "Delivered 1 notification(s)."
        assert tick(instance, "notification_outbox_sensor")[0].skip_message == "No notification due."
    assert [(b["event"], b["request_id"]) for b in receiver.bodies()] == [("access.expiring", "r-1")]
    assert receiver.path not in down.skip_message + up.skip_message


def test_the_outbox_sensor_says_why_it_could_not_deliver(database, instance, monkeypatch):
    # A working file it cannot read: the tick says so (not "No notification due") and never fails.
    database.path.parent.mkdir(parents=True, exist_ok=True)
    database.working_path.write_bytes(b"not a database" * 300)
    monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", "http://127.0.0.1:9/hook-path-not-said")
    said = tick(instance, "notification_outbox_sensor")[0].skip_message
    assert said.startswith("notifications not delivered this time: "), said
    assert "hook-path-not-said" not in said


def test_the_outbox_tick_says_each_reason_a_notification_was_not_delivered_once(tmp_path):
    # Every row refused alike: the tick reads as one reason, not the same one per row.
    database = AccessDatabase(tmp_path / "acme" / "langsmith_access.duckdb")
    with database.writer_lease("test"):
        database.ensure_working()
        with database.connect() as conn:
            for n in range(3):
                Notifier("acme", enabled=True).notify(conn, "sync.failed", at=datetime.now(UTC), detail=f"run {n}")
    with WebhookReceiver() as receiver:
        receiver.status = 503
        org = Org("acme", Settings(duckdb_path=database.path, webhook_url=Secret(receiver.url)))
        said = evaluate_outbox(Orgs((org,)), budget_seconds=5.0).skip_message
    assert said == ("Delivered 0 notification(s); 3 not delivered (the receiver answered HTTP 503), "
                    "retried later."), said


def test_the_outbox_tick_gives_up_on_a_lease_a_run_holds_within_seconds(database, instance, monkeypatch):
    # A sync holds the writer lease for its whole run (minutes): with a notification due, each
    # tick waits for the lease a short while only, says so and ends, well inside Dagster's 60-s
    # sensor timeout, not one failed tick after another for as long as the sync runs.
    with database.writer_lease("test"):
        database.ensure_working()
        with database.connect() as conn:
            Notifier("default", enabled=True).notify(conn, "access.expiring", at=datetime.now(UTC),
                                                     request_id="r-1", detail="expires soon")
    monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    definitions = defs()
    with lease_held_elsewhere(database, "a long sync"):
        started = time.monotonic()
        said = tick_sensor("notification_outbox_sensor", instance, definitions=definitions)[0].skip_message
        assert time.monotonic() - started < 12
    assert said.startswith("notifications not delivered this time: DatabaseBusyError"), said
    assert "a long sync" in said


def test_a_slow_receiver_costs_the_outbox_tick_one_delivery_budget_however_many_orgs(tmp_path):
    # DESIGN 10/11: the sensor delivers every org's outbox, and a slow receiver must not hold
    # the tick (Dagster's sensor timeout is 60 s; without use_threads the daemon evaluates the
    # sensors one after another, so a long outbox tick delays provisioning_queue_sensor too).
    # Each org's delivery has its budget: the orgs share the tick, side by side.
    from langsmith_access.defs.provisioning.governance import evaluate_outbox
    from langsmith_access.settings import Org, Orgs, Secret, Settings

    with WebhookReceiver() as receiver:
        receiver.delay_seconds = 2.0  # answers, slowly (well within the 10 s a POST gets)
        # Once the three orgs' POSTs are in at once: side by side, however long each org's
        # database work takes on a busy machine (a stopwatch of 4 s failed when one took 2 s more).
        receiver.hold_until_in_flight = 3
        orgs = []
        for slug in ("acme", "beta", "gamma"):
            database = AccessDatabase(tmp_path / slug / "langsmith_access.duckdb")
            with database.writer_lease("test"):
                database.ensure_working()
                with database.connect() as conn:
                    for n in range(2):
                        Notifier(slug, enabled=True).notify(conn, "sync.failed", at=datetime.now(UTC),
                                                            detail=f"run {n}")
            orgs.append(Org(slug, Settings(duckdb_path=database.path, webhook_url=Secret(receiver.url))))
        said = evaluate_outbox(Orgs(tuple(orgs)), budget_seconds=1.0).skip_message
    # Each org: one POST (2 s) spends its budget; the other waits its turn, due at once.
    assert said.startswith("acme, beta, gamma: Delivered 1 notification(s); 1 not delivered (not tried this time"), said
    assert sorted(body["org"] for body in receiver.bodies()) == ["acme", "beta", "gamma"]
    assert receiver.peak_in_flight == 3, "one slow delivery per org, one after another"

"""The notification outbox against a real HTTP receiver on 127.0.0.1 and a real DuckDB file.

The clock is passed in (``now=``): backoff is checked by asking at chosen times, never by
waiting.
"""

import argparse
import base64
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from langsmith_access.cli.common import deliver_notifications
from langsmith_access.governance import notifications
from langsmith_access.governance.notifications import (
    CLAIM_WINDOW,
    DELIVERY_BUDGET_SECONDS,
    DETAIL_MAX_CHARS,
    EVENTS,
    NOT_TRIED,
    PAYLOAD_KEYS,
    SLACK_NAME_MAX_CHARS,
    Notifier,
    Webhook,
    deliver_due,
    enqueue,
    notification,
    post,
    retry_delay,
    slack_text,
    without_secrets,
)
from langsmith_access.settings import Org, Secret, Settings
from langsmith_access.store.database import AccessDatabase
from langsmith_access.store.sync_runs import ABANDONED_DRAFT_SECONDS
from langsmith_access_tests.governance.receiver import WebhookReceiver
from langsmith_access_tests.helpers import cli_in_this_process, lease_held_elsewhere

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
SECRET = "s3cr3t-token"


@pytest.fixture
def database(tmp_path):
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
    return database


def add(database, event="request.applied", at=T0, **fields):
    with database.writer_lease("test: raise an event"), database.connect() as conn:
        return Notifier("acme", enabled=True).notify(conn, event, at=at, **fields)


def rows(database):
    with database.connect(read_only=True) as conn:
        cursor = conn.execute(
            "SELECT notification_id, event, payload, status, attempts, next_attempt_at, last_error "
            "FROM main.notifications ORDER BY notification_seq")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def webhook(receiver, fmt="json"):
    return Webhook(url=Secret(receiver.url), format=fmt, timeout_seconds=5)


def test_a_command_says_once_per_reason_what_it_could_not_deliver(database, monkeypatch):
    add(database)
    add(database, event="request.failed")
    for name in [n for n in os.environ if n.startswith("LANGSMITH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(database.path))
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", "00000000-0000-4000-8000-000000000001")
    with WebhookReceiver() as receiver:
        receiver.status = 503
        monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", receiver.url)
        done = cli_in_this_process("requests")
    assert done.returncode == 0, done.stderr  # never fails the command
    [line] = [line for line in done.stderr.splitlines() if line.startswith("notifications: ")]
    assert line == ("notifications: 2 not delivered yet (the receiver answered HTTP 503); 0 delivered. "
                    "Retried later, with backoff."), done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert [row["status"] for row in rows(database)] == ["pending", "pending"]


def test_with_every_org_each_line_of_what_was_not_delivered_names_its_org(tmp_path, monkeypatch, capsys):
    # `sync --all-orgs`: one line per org, led by its slug, or the operator cannot tell whose.
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text("".join(
        f"- slug: {slug}\n  organization_id: 00000000-0000-4000-8000-00000000000{n}\n"
        f"  endpoint: http://127.0.0.1:9\n  api_key_env: LANGSMITH_API_KEY_{slug.upper()}\n"
        for n, slug in enumerate(("us", "eu"), start=1)))
    for name in [n for n in os.environ if n.startswith("LANGSMITH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LANGSMITH_ACCESS_ORGS_FILE", str(orgs_file))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "data" / "langsmith_access.duckdb"))
    for slug in ("us", "eu"):
        database = AccessDatabase(tmp_path / "data" / slug / "langsmith_access.duckdb")
        database.path.parent.mkdir(parents=True)
        with database.writer_lease("test set-up"):
            database.ensure_working()
        with database.writer_lease("test: raise an event"), database.connect() as conn:
            Notifier(slug, enabled=True).notify(conn, "request.applied", at=T0)
    with WebhookReceiver() as receiver:
        receiver.status = 503
        monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", receiver.url)
        deliver_notifications(argparse.Namespace(all_orgs=True, org=None))
    lines = sorted(capsys.readouterr().err.splitlines())
    assert lines == [f"[{slug}] notifications: 1 not delivered yet (the receiver answered HTTP 503); 0 delivered. "
                     "Retried later, with backoff." for slug in ("eu", "us")], lines


def test_due_notifications_are_posted_once_as_their_documented_json(database):
    first = add(database, request_id="r-1", user="ada@example.com", workspace="Platform", role="Editor",
                detail="add to the workspace as Editor")
    second = add(database, "sync.failed", at=T0 + timedelta(seconds=1), detail="the members listing kept failing")
    with WebhookReceiver() as receiver:
        report = deliver_due(database, webhook(receiver), now=T0 + timedelta(seconds=2))
        again = deliver_due(database, webhook(receiver), now=T0 + timedelta(hours=2))
    assert report.delivered == [first, second] and report.failed == {} and report.problem is None
    assert again.attempted == 0 and again.problem is None
    assert [r.path for r in receiver.received] == [receiver.path] * 2
    assert {r.content_type for r in receiver.received} == {"application/json"}
    # A receiver that gets one twice (delivery is at least once) can tell: the same key.
    assert [r.idempotency_key for r in receiver.received] == [first, second]
    assert receiver.bodies() == [
        {"event": "request.applied", "at": "2026-11-29T09:00:00Z", "org": "acme", "request_id": "r-1",
         "user": "ada@example.com", "workspace": "Platform", "role": "Editor", "detail": "add to the workspace as Editor"},
        {"event": "sync.failed", "at": "2026-11-29T09:00:01Z", "org": "acme", "request_id": None, "user": None,
         "workspace": None, "role": None, "detail": "the members listing kept failing"},
    ]
    assert [(r["status"], r["attempts"], r["last_error"]) for r in rows(database)] == [("delivered", 1, None)] * 2


def test_slack_format_sends_a_plain_text_body(database):
    # Names are what members typed: "*Admin*" and "_staging_" must read as typed (formatting
    # off), and "<!channel>" must ping nobody (escaped as Slack asks of every text).
    add(database, "request.awaiting_approval", request_id="r-2", user="ada_l@example.com",
        workspace="R&D <!channel> _staging_", role="*Admin*", detail="needs approval by an Admin of the workspace")
    with WebhookReceiver() as receiver:
        assert len(deliver_due(database, webhook(receiver, "slack"), now=T0).delivered) == 1
    [body] = receiver.bodies()
    assert body == {
        "text": "[acme] request.awaiting_approval: *Admin* in R&amp;D &lt;!channel&gt; _staging_ for "
                "ada_l@example.com (request r-2)\nneeds approval by an Admin of the workspace",
        "mrkdwn": False,
    }
    assert slack_text(notification("sync.failed", at=T0, org="acme")) == "[acme] sync.failed"


def test_a_slack_line_cuts_a_very_long_name_and_keeps_whom_and_which_request(database):
    # Slack cuts a text past 40,000 characters: a workspace named with 100,000 (LangSmith takes
    # it) pushed the user, the request id and the detail past the cut. The name is cut instead;
    # the json format still sends it whole.
    long_name = "W" * 100_000
    payload = notification("request.applied", at=T0, org="acme", request_id="r-3", user="ada@example.com",
                           workspace=long_name, role="R" * 300, detail="add to the workspace as Editor")
    text = slack_text(payload)
    assert len(text) < 1000, len(text)
    cut = "W" * (SLACK_NAME_MAX_CHARS - 1) + "…"
    assert text == (f"[acme] request.applied: {'R' * (SLACK_NAME_MAX_CHARS - 1)}… in {cut} for ada@example.com "
                    "(request r-3)\nadd to the workspace as Editor")
    assert json.loads(Webhook(url=Secret("http://127.0.0.1:9/hook")).body(payload))["workspace"] == long_name


def test_a_url_with_a_user_and_password_is_sent_with_basic_auth_and_without_them(database):
    add(database, "sync.failed", detail="the sync failed")
    with WebhookReceiver() as receiver:
        url = receiver.url.replace("http://", "http://hook%40ops:pa%3Ass@")  # user hook@ops, password pa:ss
        hook = Webhook(url=Secret(url), timeout_seconds=5)
        outcome = deliver_due(database, hook, now=T0)
        assert len(outcome.delivered) == 1, outcome
    [got] = receiver.received
    assert got.path == receiver.path
    assert got.authorization == "Basic " + base64.b64encode(b"hook@ops:pa:ss").decode()


def test_credentials_come_off_an_ipv6_address_with_its_brackets_and_port_kept():
    # urlsplit's hostname drops the brackets; put back without them the URL would name no host.
    # (Tests serve on 127.0.0.1 only, so the rebuilt URL is checked, not a delivery.)
    url, authorization = notifications._without_credentials("https://bot:s%40cret@[2001:db8::1]:8443/hook?x=1")
    assert url == "https://[2001:db8::1]:8443/hook?x=1"
    assert authorization == "Basic " + base64.b64encode(b"bot:s@cret").decode()
    assert notifications._without_credentials("https://[2001:db8::1]/hook") == ("https://[2001:db8::1]/hook", None)


def test_a_url_with_credentials_and_a_port_that_is_no_port_is_a_reason_not_an_exception():
    hook = Webhook(url=Secret("https://bot:hunter2@hooks.example.com:70000/x"))
    reason = post(hook, notification("sync.failed", at=T0, org="acme"))
    assert reason is not None and "port" in reason and "hunter2" not in reason


def test_a_url_urllib_cannot_send_to_is_a_reason_not_a_traceback(capfd):
    # A Webhook built in Python (Settings refuses such a URL): urllib's ValueError names the URL;
    # raised in the posting thread it went to stderr whole and read as a receiver not answering.
    hook = Webhook(url=Secret(f"hooks.example.com/T0/B0/{SECRET}"), timeout_seconds=5)
    reason = post(hook, notification("sync.failed", at=T0, org="acme"))
    assert reason == "could not send (ValueError: check LANGSMITH_ACCESS_WEBHOOK_URL)"
    assert SECRET not in capfd.readouterr().err


def test_a_receiver_that_is_down_for_a_while_delays_and_loses_nothing(database, caplog):
    caplog.set_level(logging.DEBUG)
    ids = [add(database, "access.expiring", request_id=f"r-{i}") for i in range(3)]  # one time: kept in order
    receiver = WebhookReceiver()  # not started: nothing listens on its port
    hook = webhook(receiver)

    down = deliver_due(database, hook, now=T0 + timedelta(minutes=1))
    assert down.delivered == [] and set(down.failed) == set(ids) and down.problem is None
    # The first one finds the receiver down; the others are not tried against it, and wait as long.
    assert [down.failed[i] for i in ids] == ["could not connect: connection refused (is the receiver up?)",
                                             NOT_TRIED, NOT_TRIED]
    first_retry = T0 + timedelta(minutes=1) + retry_delay(1)
    assert [(r["status"], r["attempts"], r["next_attempt_at"]) for r in rows(database)] == [
        ("pending", 1, first_retry), ("pending", 0, first_retry), ("pending", 0, first_retry)]

    # Still down at the next attempt: the wait doubles.
    again = deliver_due(database, hook, now=first_retry)
    assert len(again.failed) == 3
    second_retry = first_retry + retry_delay(2)
    assert retry_delay(2) == 2 * retry_delay(1)
    assert [(r["attempts"], r["next_attempt_at"]) for r in rows(database)] == [
        (2, second_retry), (0, second_retry), (0, second_retry)]

    with receiver:  # up again, on the same port
        early = deliver_due(database, hook, now=second_retry - timedelta(seconds=1))
        assert early.attempted == 0 and early.problem is None and receiver.bodies() == []  # not due: not sent
        late = deliver_due(database, hook, now=second_retry)
        assert late.delivered == ids
        later = deliver_due(database, hook, now=second_retry + timedelta(hours=5))
        assert later.attempted == 0 and later.problem is None
    assert [b["request_id"] for b in receiver.bodies()] == ["r-0", "r-1", "r-2"]  # each once, in order
    assert [(r["status"], r["attempts"], r["last_error"]) for r in rows(database)] == [
        ("delivered", 3, None), ("delivered", 1, None), ("delivered", 1, None)]

    # The URL is a secret: not in the table, the reports, or any log line.
    with database.connect(read_only=True) as conn:
        table = json.dumps(conn.execute("SELECT * FROM main.notifications").fetchall(), default=str)
    shown = table + repr([down, again, early, late]) + repr(hook) + caplog.text
    assert SECRET not in shown and str(receiver.port) not in table


def test_a_slow_or_trickling_receiver_is_cut_off_and_the_rest_wait_their_turn(database):
    ids = [add(database, "access.expiring", request_id=f"r-{i}") for i in range(8)]
    with WebhookReceiver() as receiver:
        hook = Webhook(url=Secret(receiver.url), timeout_seconds=1)
        receiver.delay_seconds = 3.0
        slow = deliver_due(database, hook, now=T0)
        # One timeout, not one per row: no second POST (the first may still be on its way in).
        # A stopwatch of 5 s here failed when the database work took 4 s longer on a busy machine.
        assert receiver.posts <= 1
        assert [slow.failed[i] for i in ids] == ["the receiver did not answer within 1 s"] + [NOT_TRIED] * 7
        assert [(r["attempts"], r["next_attempt_at"]) for r in rows(database)] == [(1, T0 + retry_delay(1))] + [
            (0, T0 + retry_delay(1))] * 7
        # One byte of the answer every 0.3 s: no read ever waits a second, the whole takes ~11 s.
        receiver.delay_seconds, receiver.trickle_seconds = 0.0, 0.3
        started = time.monotonic()
        assert post(hook, {"event": "sync.failed"}) == "the receiver did not answer within 1 s"
        assert time.monotonic() - started < 9  # cut at 1 s, not read to its end (slack for a busy machine)


def test_a_delivery_stops_when_its_time_is_spent_and_the_rest_stay_due(database):
    ids = [add(database, "access.expiring", request_id=f"r-{i}") for i in range(5)]
    with WebhookReceiver() as receiver:
        receiver.delay_seconds = 0.4
        first = deliver_due(database, webhook(receiver), now=T0, budget_seconds=1.0)
        sent = first.delivered
        assert 1 <= len(sent) < 5 and sent == ids[:len(sent)]
        assert set(first.failed.values()) == {NOT_TRIED}
        # Not an attempt: due at once, as if never claimed.
        assert [(r["status"], r["attempts"], r["next_attempt_at"]) for r in rows(database)][len(sent):] == [
            ("pending", 0, T0)] * (5 - len(sent))
        receiver.delay_seconds = 0.0
        rest = deliver_due(database, webhook(receiver), now=T0)
    assert rest.delivered == ids[len(sent):]
    assert [b["request_id"] for b in receiver.bodies()] == [f"r-{i}" for i in range(5)]


def test_an_error_answer_is_retried_with_backoff_and_recorded(database):
    add(database, "request.failed", request_id="r-9")
    with WebhookReceiver() as receiver:
        receiver.status = 503
        failed = deliver_due(database, webhook(receiver), now=T0)
        assert list(failed.failed.values()) == ["the receiver answered HTTP 503"]
        assert rows(database)[0]["last_error"] == "the receiver answered HTTP 503"
        receiver.status = 302
        redirected = deliver_due(database, webhook(receiver), now=T0 + timedelta(days=1))
        assert "HTTP 302 (redirects are not followed" in next(iter(redirected.failed.values()))
        receiver.status = 204
        assert len(deliver_due(database, webhook(receiver), now=T0 + timedelta(days=2)).delivered) == 1
    assert [b["request_id"] for b in receiver.bodies()] == ["r-9"]


def test_the_backoff_doubles_up_to_an_hour():
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert retry_delay(8) == timedelta(hours=1) and retry_delay(50) == timedelta(hours=1)


def test_a_busy_database_is_reported_not_raised(database):
    add(database)
    with lease_held_elsewhere(database, "a long sync"), WebhookReceiver() as receiver:
        report = deliver_due(database, webhook(receiver), now=T0, lease_timeout_seconds=0.05)
    assert report.attempted == 0 and "DatabaseBusyError" in report.problem
    assert receiver.bodies() == [] and rows(database)[0]["status"] == "pending"


def test_a_working_file_another_program_holds_open_delays_a_delivery_by_seconds_not_a_minute(database):
    # A session someone opened read-write on the working file (a real process: DuckDB's lock is
    # per process) keeps the file from every writer; the lease is free, so a delivery takes it
    # and then waits for the file. Every command delivers as it ends and the outbox sensor's tick
    # has 60 s: the wait must be a few seconds, not a connection's usual minute, and say why.
    add(database)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('open', flush=True); time.sleep(120)", str(database.working_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with WebhookReceiver() as receiver:
            started = time.monotonic()
            report = deliver_due(database, webhook(receiver), now=T0, lease_timeout_seconds=0.05)
            waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert waited < notifications.FILE_OPEN_WAIT_SECONDS + 10, waited
    assert report.attempted == 0 and "DatabaseBusyError" in report.problem
    assert f"(PID {holder.pid})" in report.problem  # the program to close is named
    assert receiver.bodies() == [] and rows(database)[0]["status"] == "pending"  # retried later


def test_another_orgs_outbox_is_not_sent_to_this_orgs_webhook(database):
    add(database)
    ours, theirs = "6b0404f2-b094-40b8-ab01-a1c12a3a2107", "3e1c26d3-23ef-423e-a848-f808f54d35bf"
    with database.writer_lease("test: a sync of ours"), database.connect() as conn:
        conn.execute("INSERT INTO main.sync_runs (sync_id, started_at, finished_at, status, organization_id) "
                     "VALUES ('s1', ?, ?, 'succeeded', ?)", [T0, T0, ours])
    with WebhookReceiver() as receiver:
        report = deliver_due(AccessDatabase(database.path, theirs), webhook(receiver), now=T0)
        assert report.attempted == 0 and f"holds organization {ours}'s data" in report.problem
        assert receiver.bodies() == [] and rows(database)[0]["status"] == "pending"
        assert deliver_due(AccessDatabase(database.path, ours), webhook(receiver), now=T0).delivered


def test_with_nothing_due_a_busy_database_is_not_waited_for(database):
    # A sync holds the lease for its whole run (it writes a scratch copy): a command run
    # meanwhile, or the outbox sensor, finds nothing due without waiting for it or warning.
    add(database)  # due at T0
    with lease_held_elsewhere(database, "a long sync"), WebhookReceiver() as receiver:
        early = deliver_due(database, webhook(receiver), now=T0 - timedelta(minutes=1), lease_timeout_seconds=0.05)
        due = deliver_due(database, webhook(receiver), now=T0, lease_timeout_seconds=0.05)
    assert (early.attempted, early.problem) == (0, None)
    assert "DatabaseBusyError" in (due.problem or "")  # something due: the lease decides, as before
    assert receiver.bodies() == [] and rows(database)[0]["status"] == "pending"
    # Once it is delivered, nothing is due again: a later command does not wait for the lease either.
    with WebhookReceiver() as receiver:
        assert len(deliver_due(database, webhook(receiver), now=T0).delivered) == 1
    with lease_held_elsewhere(database, "a long sync"), WebhookReceiver() as receiver:
        later = deliver_due(database, webhook(receiver), now=T0 + timedelta(days=1), lease_timeout_seconds=0.05)
    assert (later.attempted, later.problem) == (0, None)


def test_nothing_to_do_without_a_webhook_or_a_database(tmp_path, database):
    add(database)
    assert deliver_due(database, None, now=T0).attempted == 0
    assert deliver_due(AccessDatabase(tmp_path / "nothing" / "x.duckdb"), Webhook(Secret("http://127.0.0.1:9/x")),
                       now=T0).attempted == 0
    assert not (tmp_path / "nothing" / "x.working.duckdb").exists()


def test_without_a_webhook_nothing_is_enqueued(database):
    notifier = Notifier.of_org(Org("default", Settings()))
    with database.writer_lease("test"), database.connect() as conn:
        assert notifier.notify(conn, "request.applied", at=T0, request_id="r") is None
    assert rows(database) == []
    assert Notifier.of_org(Org("default", Settings(webhook_url=Secret("http://127.0.0.1:9/h")))).enabled


@pytest.mark.parametrize(("event", "payload", "message"), [
    ("request.exploded", None, "unknown notification event 'request.exploded'"),
    ("request.applied", {**notification("request.applied", at=T0, org="acme"), "api_key": "lsv2_sk_x"},
     "exactly the keys"),
    ("request.applied", {key: value for key, value in notification("request.applied", at=T0, org="acme").items()
                         if key != "detail"}, "exactly the keys"),
    ("request.applied", notification("request.failed", at=T0, org="acme"), "is for 'request.failed'"),
    # The documented keys in another order: a receiver reads them in PAYLOAD_KEYS' order.
    ("request.applied", dict(reversed(notification("request.applied", at=T0, org="acme").items())),
     "exactly the keys"),
    ("request.applied", {**notification("request.applied", at=T0, org="acme"), "detail": {"nested": 1}},
     "must be text or null"),
])
def test_enqueue_refuses_anything_but_the_documented_payload(database, event, payload, message):
    with database.writer_lease("test"), database.connect() as conn, pytest.raises(ValueError, match=message):
        enqueue(conn, event, payload or {})
    assert rows(database) == []


def test_enqueue_itself_cuts_credentials_from_a_detail(database):
    # enqueue is the one way into the outbox: a payload built without a Notifier (which scrubs
    # first) still loses a key or a URL's password before it is stored.
    token = "lsv2_sk_0123456789abcdef0123456789abcdef"
    payload = notification("sync.failed", at=T0, org="acme",
                           detail=f"key {token} refused at https://ops:hunter2@proxy.example/x")
    with database.writer_lease("test"), database.connect() as conn:
        enqueue(conn, "sync.failed", payload, now=T0)
    [row] = rows(database)
    assert token not in row["payload"] and "hunter2" not in row["payload"], row["payload"]
    assert json.loads(row["payload"])["detail"] == "key <key> refused at https://<credentials>@proxy.example/x"


def test_the_documented_events_and_keys():
    assert EVENTS == ("request.awaiting_approval", "request.applied", "request.failed", "request.denied",
                      "request.approval_expired", "access.expiring", "access.expired", "change.unexplained",
                      "sync.failed")
    assert PAYLOAD_KEYS == ("event", "at", "org", "request_id", "user", "workspace", "role", "detail")
    with pytest.raises(ValueError, match=r"unknown notification event 'request\.exploded'"):
        notification("request.exploded", at=T0, org="acme")


def test_a_time_given_in_another_zone_is_written_as_the_same_instant_in_utc():
    # A schedule's tick time comes in the schedule's own zone: the payload says the instant in UTC.
    paris = timezone(timedelta(hours=1))
    payload = notification("sync.failed", at=datetime(2026, 11, 29, 10, 0, tzinfo=paris), org="acme")
    assert payload["at"] == "2026-11-29T09:00:00Z"


def test_the_outbox_survives_a_sync_that_fails(database):
    """A sync writes only its scratch copy: one that fails leaves the outbox as it was, and the
    event it raises after discarding its copy (sync.failed) is kept in the working file."""
    before = add(database)
    with database.writer_lease("a sync that fails"):
        scratch = database.begin_scratch()
        with database.connect(scratch) as conn:
            conn.execute("DELETE FROM main.notifications")  # whatever the failed run did
        database.discard_scratch(scratch)
        with database.connect() as conn:
            failed = Notifier("acme", enabled=True).notify(conn, "sync.failed", at=T0, detail="members kept failing")
    assert [r["notification_id"] for r in rows(database)] == [before, failed]


def test_an_event_raised_again_about_the_same_thing_is_enqueued_once(database):
    notifier = Notifier("acme", enabled=True)
    with database.writer_lease("test"), database.connect() as conn:
        first = notifier.notify(conn, "change.unexplained", at=T0, once_for="added|u1|w1|admin|t0", user="u1")
        again = notifier.notify(conn, "change.unexplained", at=T0 + timedelta(hours=1),
                                once_for="added|u1|w1|admin|t0", user="u1")
        other = notifier.notify(conn, "change.unexplained", at=T0, once_for="added|u2|w1|admin|t0", user="u2")
        elsewhere = Notifier("other-org", enabled=True).notify(
            conn, "change.unexplained", at=T0, once_for="added|u1|w1|admin|t0", user="u1")
    assert first is not None and again is None and len({first, other, elsewhere}) == 3
    assert [json.loads(r["payload"])["user"] for r in rows(database)] == ["u1", "u2", "u1"]


def test_error_text_loses_its_secrets_before_it_becomes_a_payload():
    api_key, hook = "lsv2_sk_0123456789abcdef0123456789abcdef", f"https://hooks.example.com/T0/B0/{SECRET}"
    text = (f"GET https://ops:hunter2@ls.example.com/api/v1/orgs/current/roles?token=abc failed with "
            f"key {api_key} (posting to {hook}); another key lsv2_pt_feedfacefeedface was seen")
    clean = without_secrets(text, [Secret(api_key), Secret(hook), None])
    assert clean == ("GET https://<credentials>@ls.example.com/api/v1/orgs/current/roles?<query> failed with "
                     "key <secret> (posting to <secret>); another key <key> was seen")
    assert len(without_secrets("x" * 5000)) == DETAIL_MAX_CHARS


def test_every_shape_of_langsmith_credential_is_cut_from_error_text():
    # The product's own key shapes (settings.KEY_PREFIXES, the sandbox's SCIM tokens): a SCIM
    # bearer token, a legacy ls__ key, a key quoted whole with a '-' in it, a key without prefix.
    scim, legacy = "lsv2_scim_" + "ab12" * 12, "ls__0123456789abcdef0123456789abcdef"
    body = "0123456789abcdef0123456789abcdef_0123456789"
    text = f"SCIM said Bearer {scim}; old key {legacy}; lsv2_pt_ab-{body}; pasted {body}"
    clean = without_secrets(text)
    for secret in (scim, legacy, body, "ab12ab12"):
        assert secret not in clean, clean
    assert clean.startswith("SCIM said Bearer ")


def test_a_key_named_by_its_shape_in_a_fix_is_left_and_any_key_is_still_cut():
    # The product's own help text names a key by its shape: no key, and the fix a detail gives.
    fix = "set it to an organization-scoped service key (lsv2_sk_...) or a token (lsv2_pt_...)."
    assert without_secrets(fix) == fix
    # A key, or a piece of one, followed by dots (a server quoting it cut short) is still a key.
    quoted = "LangSmith saw lsv2_sk_0123456789abcdef... and lsv2_pt_ab... and ls__0123456789abcdef..."
    assert without_secrets(quoted) == "LangSmith saw <key>... and <key>... and <key>..."


def test_no_event_carries_a_credential_its_detail_quoted(database):
    # request.failed's detail is LangSmith's (or a proxy's) error text, request.denied's holds an
    # approver's comment: not only sync.failed's text may quote a token or a URL's credentials.
    token = "lsv2_pt_0123456789abcdef0123456789abcdef_0123456789"
    add(database, "request.failed", request_id="r-1",
        detail=f"LangSmith refused it: HTTP 400: token {token} has no access (https://ops:hunter2@proxy.example/x)")
    add(database, "request.denied", request_id="r-2", detail=f"denied by bob@example.com: use {token} instead")
    with WebhookReceiver() as receiver:
        assert len(deliver_due(database, webhook(receiver), now=T0).delivered) == 2
    stored = json.dumps([r["payload"] for r in rows(database)])
    for shown in (stored, json.dumps(receiver.bodies())):
        assert token not in shown and "hunter2" not in shown
    assert receiver.bodies()[1]["detail"] == "denied by bob@example.com: use <key> instead"


def test_the_webhook_url_quoted_in_a_comment_is_neither_stored_nor_sent(database):
    # A Slack incoming-webhook URL carries its credential in its path (no query string to cut):
    # pasted into an approver's comment, it would be stored in the outbox and shown to the channel.
    url = f"https://hooks.slack.com/services/T000/B000/{SECRET}"
    notifier = Notifier.of_org(Org("us", Settings(webhook_url=Secret(url))))
    with database.writer_lease("test: a denial"), database.connect() as conn:
        notifier.notify(conn, "request.denied", at=T0, request_id="r-1", detail=f"denied by bob: post to {url}")
    [row] = rows(database)
    assert SECRET not in row["payload"], row["payload"]
    assert json.loads(row["payload"])["detail"] == "denied by bob: post to <secret>"


@pytest.mark.parametrize("pasted", [
    "hooks.slack.com/services/T000/B000/s3cr3t-token",  # as a browser's address bar shows it
    "/services/T000/B000/s3cr3t-token",  # its path, where the token is
])
def test_the_webhook_url_pasted_without_its_scheme_or_host_is_cut_too(database, pasted):
    # The exact URL alone was cut: pasted without "https://", its token was stored and sent.
    url = f"https://hooks.slack.com/services/T000/B000/{SECRET}"
    notifier = Notifier.of_org(Org("us", Settings(webhook_url=Secret(url))))
    assert notifier.hidden(f"see {pasted} (ours)") == "see <secret> (ours)"
    with database.writer_lease("test: a denial"), database.connect() as conn:
        notifier.notify(conn, "request.denied", at=T0, request_id="r-1", detail=f"denied: post to {pasted}")
    [row] = rows(database)
    assert SECRET not in row["payload"] and json.loads(row["payload"])["detail"] == "denied: post to <secret>"


def test_a_short_webhook_path_alone_is_left_as_typed():
    # "/hook" is a word anybody may type: only the whole URL, or it without its scheme, is cut.
    notifier = Notifier.of_org(Org("us", Settings(webhook_url=Secret("https://ops.example.com/hook"))))
    assert notifier.hidden("the /hook route of ops.example.com/hook") == "the /hook route of <secret>"


def test_a_password_with_an_at_sign_is_cut_whole():
    # urllib reads the userinfo up to the authority's last '@', so a password may hold one unencoded.
    assert without_secrets("GET https://ops:hunt@r2@ls.example.com/api/v1 failed") == (
        "GET https://<credentials>@ls.example.com/api/v1 failed")
    assert without_secrets("mail ops@example.com about https://ls.example.com/x?a=b@c") == (
        "mail ops@example.com about https://ls.example.com/x?<query>")


def test_rows_another_delivery_claimed_are_left_to_it_until_the_claim_window_passes(database):
    # The sensor and a command deliver at once: rows one claimed are not sent again by the other,
    # unless the claimer never records them (it died): then after the claim window, at least once.
    [row] = [add(database)]
    claimed = notifications._claim_due(database, T0, 100, 5.0)
    assert [row_id for row_id, _, _ in claimed] == [row]
    with WebhookReceiver() as receiver:
        meanwhile = deliver_due(database, webhook(receiver), now=T0 + CLAIM_WINDOW - timedelta(seconds=1))
        assert (meanwhile.attempted, meanwhile.problem, receiver.bodies()) == (0, None, [])
        after = deliver_due(database, webhook(receiver), now=T0 + CLAIM_WINDOW)
    assert after.delivered == [row] and len(receiver.bodies()) == 1


# A command's delivery, in a process of its own, killed by SIGKILL after the receiver accepted a
# notification and before the answer reached it (an OOM kill, a `timeout`): nothing records it.
_DELIVERY = """
import sys
from datetime import datetime
from pathlib import Path
from langsmith_access.governance.notifications import Webhook, deliver_due
from langsmith_access.settings import Secret
from langsmith_access.store.database import AccessDatabase

webhook = Webhook(url=Secret(sys.argv[2]), format="json", timeout_seconds=120)
print(deliver_due(AccessDatabase(Path(sys.argv[1])), webhook, now=datetime.fromisoformat(sys.argv[3])))
"""


def test_a_delivery_killed_after_the_receiver_accepted_is_sent_again_once_with_the_same_key(database):
    # At least once: the receiver got the first notification, the process died before recording
    # it. The row is neither lost nor sent again while the dead delivery's claim lasts; after it,
    # it goes once more under the same Idempotency-Key (so a receiver can drop it), is recorded
    # delivered, and the rows the dead delivery never reached go with it, each once.
    first, second = add(database), add(database, event="request.failed")
    with WebhookReceiver() as receiver:
        receiver.hold_answers = held = threading.Event()
        delivery = subprocess.Popen(
            [sys.executable, "-c", _DELIVERY, str(database.path), receiver.url, T0.isoformat()],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        try:
            accepted = receiver.wait_until_received(1)
            assert accepted, delivery.communicate(timeout=60)[0]
            delivery.kill()  # SIGKILL
            assert delivery.wait(60) == -signal.SIGKILL
        finally:
            if delivery.poll() is None:
                delivery.kill()
                delivery.wait(60)
            receiver.hold_answers = None
            held.set()  # the held answer goes to the dead process
        assert [r.idempotency_key for r in receiver.received] == [first]
        assert [row["status"] for row in rows(database)] == ["pending", "pending"]

        meanwhile = deliver_due(database, webhook(receiver), now=T0 + CLAIM_WINDOW - timedelta(seconds=1))
        assert (meanwhile.attempted, meanwhile.problem) == (0, None)
        after = deliver_due(database, webhook(receiver), now=T0 + CLAIM_WINDOW)
        assert (after.delivered, after.failed, after.problem) == ([first, second], {}, None)
        later = deliver_due(database, webhook(receiver), now=T0 + CLAIM_WINDOW + timedelta(hours=2))
        assert later.attempted == 0
    assert [r.idempotency_key for r in receiver.received] == [first, first, second]
    assert receiver.bodies()[0] == receiver.bodies()[1]
    # (attempts counts claims: the second row's includes the dead delivery's, which never sent it)
    assert [row["status"] for row in rows(database)] == ["delivered", "delivered"]
    assert rows(database)[0]["attempts"] == 2


@pytest.mark.parametrize("late", ["failed", "delivered", "not tried"])
def test_a_delivery_that_records_after_another_delivered_its_row_changes_nothing(database, late):
    """A delivery stalls past the claim window; another claims the row and delivers it. When the
    stalled one then records what its own post came to (a failure, a second delivery, or no
    try), the delivered row keeps its delivery: no error, attempt or later time over it."""
    row = add(database)
    [(_, attempts, _)] = notifications._claim_due(database, T0, 100, 5.0)
    with WebhookReceiver() as receiver:
        assert deliver_due(database, webhook(receiver), now=T0 + CLAIM_WINDOW).delivered == [row]
    before = rows(database)
    answer = notifications._Answer("answered 500" if late == "failed" else None)
    stalled = notifications._Attempt(row, attempts, answer, tried=late != "not tried")

    notifications._record(database, T0 + CLAIM_WINDOW + timedelta(minutes=1), [stalled], 5.0)

    assert rows(database) == before
    assert before[0]["status"] == "delivered"
    with database.connect(read_only=True) as conn:
        assert conn.execute("SELECT delivered_at FROM main.notifications").fetchall() == [(T0 + CLAIM_WINDOW,)]


def test_a_file_that_cannot_be_read_now_is_delivered_from_under_the_lease(database):
    # A provisioning run writing the working file: the read-only look fails, the lease decides.
    row = add(database)
    with database.connect() as writing, WebhookReceiver() as receiver:
        writing.execute("SELECT 1")
        report = deliver_due(database, webhook(receiver), now=T0)
    assert report.delivered == [row], report


@pytest.mark.parametrize("url", [
    f"https://hooks.example.com/T0/B0/{SECRET}",
    # Named whole before credentials and query strings are cut: cut first, the URL would no longer
    # be found whole, and its path (a Slack URL's token) would be shown.
    f"https://hooks.example.com/T0/B0/{SECRET}?channel=ops",
    f"https://bot:pw@hooks.example.com/T0/B0/{SECRET}",
], ids=["path", "query", "credentials"])
def test_an_unexpected_error_is_reported_without_the_webhook_url(database, monkeypatch, url):
    add(database)
    hook = Webhook(url=Secret(url))

    def failing(webhook, due, budget_seconds):
        raise RuntimeError(f"cannot post to {webhook.url.reveal()}")

    monkeypatch.setattr(notifications, "_post_while_worthwhile", failing)
    report = deliver_due(database, hook, now=T0)
    assert report.problem == "notifications not delivered this time: RuntimeError: cannot post to <webhook URL>"
    assert SECRET not in repr(report)


def test_an_unexpected_error_quoting_the_webhook_url_in_part_is_reported_without_it(database, monkeypatch):
    # An error that quotes the request line (the path alone) or the address without its scheme:
    # the URL was looked for whole only, and its path (where a Slack URL's token is) was shown.
    add(database)
    hook = Webhook(url=Secret(f"https://hooks.example.com/T0/B0/{SECRET}"))

    def quoting(webhook, due, budget_seconds):
        raise RuntimeError(f"POST /T0/B0/{SECRET} HTTP/1.1 to hooks.example.com/T0/B0/{SECRET} went wrong")

    monkeypatch.setattr(notifications, "_post_while_worthwhile", quoting)
    report = deliver_due(database, hook, now=T0)
    assert SECRET not in repr(report)
    assert report.problem == ("notifications not delivered this time: RuntimeError: POST <secret> HTTP/1.1 to "
                              "<secret> went wrong")


def test_an_unexpected_error_quoting_another_secret_is_reported_without_it(database, monkeypatch):
    # A key, or another URL's password, the error happens to quote.
    add(database)
    hook = Webhook(url=Secret("https://hooks.example.com/T0/B0/other"))
    key = "lsv2_sk_0123456789abcdef0123456789abcdef"

    def quoting(webhook, due, budget_seconds):
        raise RuntimeError(f"proxy https://user:{SECRET}@proxy.example.com refused key {key}")

    monkeypatch.setattr(notifications, "_post_while_worthwhile", quoting)
    report = deliver_due(database, hook, now=T0)
    assert SECRET not in repr(report) and key not in repr(report)
    assert "proxy.example.com refused key" in report.problem


def test_a_payload_refused_is_retried_alone_and_the_rest_are_still_posted(database):
    # An error answer is about one payload, not the receiver being away: the next rows are sent.
    ids = [add(database, "request.failed", request_id=f"r-{i}") for i in range(3)]
    with WebhookReceiver() as receiver:
        receiver.status = 503
        report = deliver_due(database, webhook(receiver), now=T0)
    assert [report.failed[i] for i in ids] == ["the receiver answered HTTP 503"] * 3
    assert [(r["attempts"], r["next_attempt_at"]) for r in rows(database)] == [(1, T0 + retry_delay(1))] * 3


def test_rows_a_delivery_had_no_time_for_after_a_refused_one_are_due_at_once(database):
    # A refusal (503) is about that payload: only a receiver away or rate limiting makes the rows
    # after it wait. Refused rows, then the budget spent: the rows not tried keep no attempt and
    # are due at once, not held back by the refused row's backoff.
    ids = [add(database, "request.failed", request_id=f"r-{i}") for i in range(3)]
    with WebhookReceiver() as receiver:
        receiver.status, receiver.delay_seconds = 503, 0.6  # the second POST ends past the 1 s budget
        report = deliver_due(database, webhook(receiver), now=T0, budget_seconds=1.0)
    tried = [i for i in ids if report.failed[i] != NOT_TRIED]
    assert 1 <= len(tried) < 3 and tried == ids[:len(tried)] and report.failed[ids[-1]] == NOT_TRIED, report
    assert [(r["attempts"], r["next_attempt_at"]) for r in rows(database)] == (
        [(1, T0 + retry_delay(1))] * len(tried) + [(0, T0)] * (3 - len(tried)))


def test_a_receiver_that_rate_limits_is_sent_nothing_more_until_it_asked_and_loses_nothing(database):
    # Slack answers a burst with 429 and Retry-After: the rest of the batch would only be refused
    # too (each counting an attempt and pushing its own retry back), so they wait with it.
    ids = [add(database, "request.applied", request_id=f"r-{i}") for i in range(4)]
    with WebhookReceiver() as receiver:
        receiver.status, receiver.retry_after = 429, "600"
        limited = deliver_due(database, webhook(receiver), now=T0)
        assert receiver.posts == 1
        assert [limited.failed[i] for i in ids] == [
            "the receiver answered HTTP 429 (rate limited); it asked to wait 600 s"] + [NOT_TRIED] * 3
        asked = T0 + timedelta(seconds=600)  # longer than the first backoff (30 s): the receiver's wait
        assert [(r["attempts"], r["next_attempt_at"]) for r in rows(database)] == [(1, asked)] + [(0, asked)] * 3
        assert deliver_due(database, webhook(receiver), now=asked - timedelta(seconds=1)).attempted == 0
        # Without Retry-After: the backoff, and still nothing more posted now.
        receiver.retry_after = None
        again = deliver_due(database, webhook(receiver), now=asked)
        assert receiver.posts == 2 and again.failed[ids[0]] == "the receiver answered HTTP 429 (rate limited)"
        assert {r["next_attempt_at"] for r in rows(database)} == {asked + retry_delay(2)}
        receiver.status = 200
        done = deliver_due(database, webhook(receiver), now=asked + retry_delay(2))
    assert done.delivered == ids
    assert [b["request_id"] for b in receiver.bodies()] == [f"r-{i}" for i in range(4)]


@pytest.mark.parametrize(("retry_after", "wait"), [
    ("120", timedelta(seconds=120)),  # longer than the backoff: as asked
    ("5", retry_delay(1)),  # shorter: the backoff
    ("86400", timedelta(hours=1)),  # a day: at most the longest backoff
    ("Wed, 21 Oct 2015 07:28:00 GMT", retry_delay(1)),  # a date gone by: the backoff
    ("soon", retry_delay(1)),
])
def test_a_retry_after_on_any_error_answer_is_waited_up_to_the_longest_backoff(database, retry_after, wait):
    # A 503 is about the receiver's moment, not a reason to hold back the other rows: they are posted.
    ids = [add(database, "request.failed", request_id=f"r-{i}") for i in range(2)]
    with WebhookReceiver() as receiver:
        receiver.status, receiver.retry_after = 503, retry_after
        report = deliver_due(database, webhook(receiver), now=T0)
    assert receiver.posts == 2 and set(report.failed) == set(ids)
    assert [(r["attempts"], r["next_attempt_at"]) for r in rows(database)] == [(1, T0 + wait)] * 2


def test_the_webhook_format_setting_is_the_format_posted():
    url = Secret("https://hooks.example.com/T0/B0/x")
    slack = Webhook.from_settings(Settings(webhook_url=url, webhook_format="slack"))
    assert slack is not None and slack.format == "slack"
    assert list(json.loads(slack.body(notification("sync.failed", at=T0, org="acme")))) == ["text", "mrkdwn"]
    plain = Webhook.from_settings(Settings(webhook_url=url))
    assert plain is not None and plain.format == "json"
    assert Webhook.from_settings(Settings()) is None


def test_a_redirect_is_a_failure_and_never_followed(database):
    # Followed, a POST arrives elsewhere as a GET (without the body, with the Authorization
    # header) and the notification would count as delivered although its receiver has nothing.
    add(database, "request.failed", request_id="r-1")
    with WebhookReceiver() as elsewhere, WebhookReceiver() as receiver:
        receiver.status, receiver.location = 302, elsewhere.url
        url = receiver.url.replace("http://", "http://hook:pa55@")
        report = deliver_due(database, Webhook(url=Secret(url), timeout_seconds=5), now=T0)
    assert list(report.failed.values()) == [
        "the receiver answered HTTP 302 (redirects are not followed: set the final URL)"]
    assert elsewhere.gets == [] and elsewhere.received == []
    assert [(r["status"], r["next_attempt_at"]) for r in rows(database)] == [("pending", T0 + retry_delay(1))]


def test_a_client_error_answer_is_retried_and_says_only_its_status(database):
    add(database, "request.failed", request_id="r-1")
    with WebhookReceiver() as receiver:
        receiver.status = 400
        report = deliver_due(database, webhook(receiver), now=T0)
    assert list(report.failed.values()) == ["the receiver answered HTTP 400"]
    assert [(r["status"], r["attempts"], r["next_attempt_at"]) for r in rows(database)] == [
        ("pending", 1, T0 + retry_delay(1))]


def test_a_url_with_a_user_and_no_password_is_sent_with_basic_auth(database):
    # Some receivers take their token as the URL's user name alone (https://TOKEN@host/path).
    add(database, "sync.failed", detail="the sync failed")
    with WebhookReceiver() as receiver:
        hook = Webhook(url=Secret(receiver.url.replace("http://", f"http://{SECRET}@")), timeout_seconds=5)
        assert len(deliver_due(database, hook, now=T0).delivered) == 1
    [got] = receiver.received
    assert got.authorization == "Basic " + base64.b64encode(f"{SECRET}:".encode()).decode()


def test_one_delivery_posts_at_most_its_limit_and_the_rest_stay_due(database):
    ids = [add(database, "access.expiring", request_id=f"r-{i}") for i in range(3)]
    with WebhookReceiver() as receiver:
        first = deliver_due(database, webhook(receiver), now=T0, limit=2)
        assert first.delivered == ids[:2] and first.failed == {}
        assert [(r["status"], r["attempts"], r["next_attempt_at"]) for r in rows(database)][2] == ("pending", 0, T0)
        assert deliver_due(database, webhook(receiver), now=T0, limit=2).delivered == ids[2:]


def test_notifications_are_posted_in_the_order_raised_not_by_the_time_they_carry(database):
    # An event may carry a time earlier than one raised before it (when the change happened, read
    # back later): the receiver reads them in the order raised, and a delivery that takes fewer
    # than are due takes the first raised.
    raised_first = add(database, "request.applied", at=T0 + timedelta(seconds=5), request_id="r-first")
    raised_second = add(database, "request.failed", at=T0, request_id="r-second")
    with WebhookReceiver() as receiver:
        first = deliver_due(database, webhook(receiver), now=T0 + timedelta(minutes=1), limit=1)
        rest = deliver_due(database, webhook(receiver), now=T0 + timedelta(minutes=1))
    assert (first.delivered, rest.delivered) == ([raised_first], [raised_second])
    assert [b["request_id"] for b in receiver.bodies()] == ["r-first", "r-second"]


def test_a_delivered_notification_records_when(database):
    add(database)
    with WebhookReceiver() as receiver:
        deliver_due(database, webhook(receiver), now=T0 + timedelta(seconds=5))
    with database.connect(read_only=True) as conn:
        assert conn.execute("SELECT delivered_at FROM main.notifications").fetchall() == [
            (T0 + timedelta(seconds=5),)]


def test_a_file_without_an_outbox_is_not_waited_for(database):
    # A working file from before notifications existed, while a sync holds the lease: nothing is due.
    with database.writer_lease("test"), database.connect() as conn:
        conn.execute("DROP TABLE main.notifications")
    with lease_held_elsewhere(database, "a long sync"), WebhookReceiver() as receiver:
        report = deliver_due(database, webhook(receiver), now=T0, lease_timeout_seconds=0.05)
    assert (report.attempted, report.problem) == (0, None)


def test_the_documented_delivery_timings():
    # README: a POST gets 10 s, a delivery posts for 30 s; the sensor's tick must end within
    # Dagster's 60 s, and a claim must outlast the longest delivery, or a second deliverer
    # (a command while the sensor posts) sends the same rows again meanwhile.
    timeout = Webhook(url=Secret("https://hooks.example.com/x")).timeout_seconds
    assert (timeout, DELIVERY_BUDGET_SECONDS) == (10.0, 30.0)
    assert DELIVERY_BUDGET_SECONDS + timeout < 60
    assert CLAIM_WINDOW > timedelta(seconds=DELIVERY_BUDGET_SECONDS + timeout)


def test_a_receiver_that_fails_tls_is_unreachable_and_the_rest_wait_with_it(database):
    # An https URL whose receiver speaks plain HTTP (or presents a certificate that does not
    # verify): every row would fail the same way, so the rest of the batch is not posted now.
    ids = [add(database, "request.applied", request_id=f"r-{i}") for i in range(3)]
    with WebhookReceiver() as receiver:
        hook = Webhook(url=Secret(receiver.url.replace("http://", "https://")), timeout_seconds=5)
        report = deliver_due(database, hook, now=T0)
    assert report.failed[ids[0]].startswith("could not connect: TLS failed (")  # the class, never the URL
    assert [report.failed[i] for i in ids[1:]] == [NOT_TRIED, NOT_TRIED]
    assert receiver.bodies() == []
    assert [(r["attempts"], r["next_attempt_at"]) for r in rows(database)] == [(1, T0 + retry_delay(1))] + [
        (0, T0 + retry_delay(1))] * 2


def test_a_receiver_that_drops_the_connection_is_said_so_and_the_rest_wait_with_it(database):
    # A receiver (or a proxy before it) that reads the POST and closes the connection without an
    # answer: last_error said "could not connect (RemoteDisconnected)", which is untrue (it
    # connected, and may have read the payload) and sends whoever reads it to look at a firewall.
    ids = [add(database, "request.applied", request_id=f"r-{i}") for i in range(3)]
    with WebhookReceiver() as receiver:
        receiver.close_without_answer = True
        dropped = deliver_due(database, webhook(receiver), now=T0)
        assert [dropped.failed[i] for i in ids] == [
            "the receiver closed the connection without answering", NOT_TRIED, NOT_TRIED]
        assert receiver.posts == 1  # it would only drop the rest the same way
        assert [(r["attempts"], r["next_attempt_at"], r["last_error"]) for r in rows(database)] == [
            (1, T0 + retry_delay(1), "the receiver closed the connection without answering"),
            (0, T0 + retry_delay(1), None), (0, T0 + retry_delay(1), None)]
        receiver.close_without_answer = False
        assert deliver_due(database, webhook(receiver), now=T0 + retry_delay(1)).delivered == ids
    assert [b["request_id"] for b in receiver.bodies()] == ["r-0", "r-1", "r-2"]


def test_a_blank_secret_or_a_detail_of_exactly_the_limit_is_left_as_it_is():
    # A blank LANGSMITH_API_KEY (a secret file holding only a newline) is Secret(""): replacing
    # "" would put a marker between every character of a sync.failed detail.
    blank = Settings.from_env({"LANGSMITH_API_KEY": " \n"}).api_key
    assert blank is not None and blank.reveal() == ""
    assert without_secrets("members kept failing", [blank]) == "members kept failing"
    # At most DETAIL_MAX_CHARS: a detail of exactly that many is whole, one more is cut.
    assert without_secrets("x" * DETAIL_MAX_CHARS) == "x" * DETAIL_MAX_CHARS
    assert without_secrets("x" * (DETAIL_MAX_CHARS + 1)) == "x" * (DETAIL_MAX_CHARS - 1) + "…"


def test_a_delivery_posts_only_what_is_due_not_what_was_delivered_or_waits_its_retry(database):
    # Something new is due: the delivery takes it alone, not a row delivered before (its claim
    # long past) nor one whose retry is not due yet (each would be posted twice, or early).
    delivered = add(database, "request.applied", request_id="r-delivered")
    with WebhookReceiver() as receiver:
        assert deliver_due(database, webhook(receiver), now=T0).delivered == [delivered]
        receiver.status, receiver.retry_after = 503, "3600"
        waiting = add(database, "request.failed", request_id="r-waiting", at=T0 + timedelta(seconds=1))
        assert list(deliver_due(database, webhook(receiver), now=T0 + timedelta(seconds=1)).failed) == [waiting]
        receiver.status, receiver.retry_after = 200, None
        later = T0 + CLAIM_WINDOW + timedelta(minutes=1)  # the retry is due an hour after T0 + 1 s
        fresh = add(database, "request.denied", request_id="r-fresh", at=later)
        report = deliver_due(database, webhook(receiver), now=later)
    assert (report.delivered, report.failed) == ([fresh], {})
    assert [b["request_id"] for b in receiver.bodies()] == ["r-delivered", "r-fresh"]
    assert [(r["status"], r["attempts"]) for r in rows(database)] == [
        ("delivered", 1), ("pending", 1), ("delivered", 1)]


def test_the_same_thing_raised_as_two_events_is_two_notifications(database):
    # ``once_for`` makes one notification per event about a thing, not one per thing.
    notifier = Notifier("acme", enabled=True)
    with database.writer_lease("test"), database.connect() as conn:
        failed = notifier.notify(conn, "sync.failed", at=T0, once_for="run-1")
        unexplained = notifier.notify(conn, "change.unexplained", at=T0, once_for="run-1")
    assert failed is not None and unexplained is not None and failed != unexplained
    assert [r["event"] for r in rows(database)] == ["sync.failed", "change.unexplained"]


def test_a_host_name_that_does_not_resolve_is_said_so_and_holds_the_rest_back():
    # (Tests make no DNS look-ups: the failure urllib reports for such a host is given directly.)
    answer = notifications._Answer(notifications._network_failure(socket.gaierror(-2, "Name or service not known"), 10))
    assert answer.failure == "could not connect: the receiver's host name does not resolve"
    assert answer.stops_delivery


def test_a_row_no_receiver_can_be_sent_fails_alone_and_holds_nothing_back(database, capfd):
    # A payload edited by hand into something that is no JSON object: it raised in the posting
    # thread (a traceback on stderr), read as the receiver not answering, and, first in line,
    # held every later notification back at each delivery.
    # Text that is no JSON at all failed the claim itself: every row claimed with it, every time.
    number, garbled, fine = (add(database, "request.applied"), add(database, "request.denied"),
                             add(database, "request.failed"))
    with database.writer_lease("test: a row edited by hand"), database.connect() as conn:
        conn.execute("UPDATE main.notifications SET payload = '5' WHERE notification_id = ?", [number])
        conn.execute("UPDATE main.notifications SET payload = '{\"event\": ' WHERE notification_id = ?", [garbled])
    with WebhookReceiver() as receiver:
        report = deliver_due(database, webhook(receiver), now=T0)
    said = "could not send this notification: its stored payload is not a JSON object"
    assert report.failed == {number: said, garbled: said}
    assert report.delivered == [fine] and "Traceback" not in capfd.readouterr().err


def test_a_hand_edited_object_slack_cannot_word_fails_alone(database, capfd):
    # A JSON object, but a role that is a number: the Slack line cannot be written from it.
    odd, fine = add(database, "request.applied"), add(database, "request.failed")
    with database.writer_lease("test: a row edited by hand"), database.connect() as conn:
        conn.execute("UPDATE main.notifications SET payload = '{\"event\": \"request.applied\", \"role\": 5}' "
                     "WHERE notification_id = ?", [odd])
    with WebhookReceiver() as receiver:
        report = deliver_due(database, webhook(receiver, "slack"), now=T0)
    assert report.failed == {odd: "could not send this notification (TypeError)"}
    assert report.delivered == [fine] and "Traceback" not in capfd.readouterr().err


def delivered_while_a_run_takes_the_lease(database, monkeypatch, receiver, after_each_post=lambda: None):
    """``deliver_due`` at T0 whose first post the receiver answers, after which a run takes the
    writer lease and holds it past the delivery's wait (until the delivery has returned)."""
    posted, held, release = threading.Event(), threading.Event(), threading.Event()
    real_post = notifications._post_within_timeout

    def post_then_a_run_starts(webhook, payload, notification_id):
        answer = real_post(webhook, payload, notification_id)
        after_each_post()
        posted.set()
        assert held.wait(timeout=60), "the run never took the lease"
        return answer

    def a_run():
        posted.wait(timeout=60)
        with database.writer_lease("a provisioning run"):
            held.set()
            release.wait(timeout=120)

    monkeypatch.setattr(notifications, "_post_within_timeout", post_then_a_run_starts)
    run = threading.Thread(target=a_run)
    run.start()
    try:
        return deliver_due(database, webhook(receiver), now=T0, lease_timeout_seconds=0.05)
    finally:
        release.set()
        run.join()
        monkeypatch.setattr(notifications, "_post_within_timeout", real_post)


def test_a_delivery_a_run_keeps_from_being_recorded_is_not_sent_again(database, monkeypatch):
    # A provisioning run or a sync takes the writer lease while the receiver is answering, and
    # holds it past the delivery's wait: the receiver has the notification, so it is recorded
    # as delivered by the next delivery, never sent again once its claim lapses.
    row = add(database)
    with WebhookReceiver() as receiver:
        report = delivered_while_a_run_takes_the_lease(database, monkeypatch, receiver)
        later = deliver_due(database, webhook(receiver), now=T0 + CLAIM_WINDOW + timedelta(hours=2))
    assert report.delivered == [row] and report.failed == {}, report
    assert len(receiver.bodies()) == 1, "sent again though the receiver had it"
    assert later.attempted == 0 and later.problem is None, later
    assert [(r["status"], r["attempts"]) for r in rows(database)] == [("delivered", 1)]


def test_a_refused_row_a_run_keeps_from_being_recorded_is_sent_again_not_taken_as_delivered(database, monkeypatch):
    # As above, with the receiver refusing the second row: only what it accepted is left for the
    # next claim to record; the refused row is retried once its claim lapses, never marked delivered.
    accepted = add(database, request_id="r-accepted")
    refused = add(database, request_id="r-refused")
    with database.writer_lease("test: an earlier attempt failed"), database.connect() as conn:
        conn.execute("UPDATE main.notifications SET last_error = 'the receiver answered HTTP 503' "
                     "WHERE notification_id = ?", [accepted])
    with WebhookReceiver() as receiver:
        # The rows after the first are refused.
        report = delivered_while_a_run_takes_the_lease(
            database, monkeypatch, receiver, after_each_post=lambda: setattr(receiver, "status", 500))
        receiver.status = 200
        later = deliver_due(database, webhook(receiver), now=T0 + CLAIM_WINDOW + timedelta(hours=2))
    assert report.delivered == [accepted] and report.failed == {refused: "the receiver answered HTTP 500"}, report
    assert later.delivered == [refused] and later.failed == {}, later
    assert [b["request_id"] for b in receiver.bodies()] == ["r-accepted", "r-refused"]
    assert [(r["status"], r["attempts"], r["last_error"]) for r in rows(database)] == [
        ("delivered", 1, None), ("delivered", 2, None)]
    # What was left aside is gone once recorded: not read again by every later claim.
    assert list(database.unrecorded_deliveries_path.iterdir()) == []
    # Recorded late, dated when the receiver accepted it, not when the next claim recorded it.
    with database.connect(read_only=True) as conn:
        assert conn.execute("SELECT delivered_at FROM main.notifications WHERE notification_id = ?",
                            [accepted]).fetchall() == [(T0,)]


@pytest.mark.parametrize("line_break", ["\n", "\r\n", "\r", "\u2028", "\u2029", "\x85", "\v", "\f", "\x1c", "\x1e"])
def test_a_slack_message_is_its_header_and_one_detail_line_whatever_a_name_holds(line_break):
    # A shared channel reads "[org] event: ..." as what happened in that org: a workspace name
    # or an approver's comment with a line break must not start a line that looks like another
    # org's notification.
    forged = f"{line_break}[eu] request.applied: Admin in Production for mallory@example.com"
    text = slack_text(notification("request.denied", at=T0, org="us", request_id="r-1", user=f"ada@example.com{forged}",
                                   workspace=f"Prod{forged}", role=f"Viewer{forged}", detail=f"denied by bob: no{forged}"))
    header, detail = text.split("\n")
    assert header.startswith("[us] request.denied: Viewer ") and header.endswith(" (request r-1)"), header
    assert detail == "denied by bob: no [eu] request.applied: Admin in Production for mallory@example.com", detail
    assert not any(c in text for c in "\r\u2028\u2029\x85\v\f\x1c\x1d\x1e")


def test_what_a_delivery_left_unrecorded_never_stops_the_next_claim(database):
    # A file left beside the database that is empty, not ours or half-written holds nothing back.
    row = add(database)
    left = database.unrecorded_deliveries_path
    left.mkdir()
    (left / "empty.json").write_text(json.dumps({"delivered_at": "2026-11-29T09:00:00Z", "delivered": []}))
    (left / "text.json").write_text(json.dumps({"delivered_at": "2026-11-29T09:00:00Z", "delivered": "abc"}))
    (left / "cut.json").write_text('{"delivered_at": "2026-11-29T09:00:00Z", "deliv')
    # Drafts leave_aside writes before renaming: one a process died writing long ago goes; a young
    # one may be another delivery's, about to be renamed, and stays.
    abandoned, young = left / ".gone.0123abcd.tmp", left / ".busy.4567cdef.tmp"
    for draft in (abandoned, young):
        draft.write_text("{}")
    long_ago = time.time() - ABANDONED_DRAFT_SECONDS - 60
    os.utime(abandoned, (long_ago, long_ago))
    with WebhookReceiver() as receiver:
        report = deliver_due(database, webhook(receiver), now=T0)
    assert report.delivered == [row] and report.problem is None, report
    # The one recorded is gone; those that could not be read stay, as they were, and record nothing.
    assert sorted(p.name for p in left.iterdir()) == [young.name, "cut.json", "text.json"]

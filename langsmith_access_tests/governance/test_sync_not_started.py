"""``sync.failed`` for a scheduled sync not launched because its org has no usable key
(``notify_sync_not_started``), on a real DuckDB file; the schedule's tick is in test_many_orgs.py."""

import json
from datetime import UTC, datetime, timedelta

from langsmith_access.governance.notifications import notify_sync_not_started
from langsmith_access.settings import load_orgs
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.helpers import lease_held_elsewhere, query

TICK = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
WEBHOOK = "https://hooks.example.com/services/T0/B0/s3cr3t"


def keyless_org(tmp_path, **variables):
    """The single org of the variables, loaded as a deployment loads it: no LANGSMITH_API_KEY."""
    environ = {"LANGSMITH_ACCESS_DUCKDB": str(tmp_path / "data" / "langsmith_access.duckdb"),
               "LANGSMITH_ORGANIZATION_ID": "00000000-0000-4000-8000-000000000001", **variables}
    [org] = load_orgs(refuse_unusable_keys=False, environ=environ)
    assert org.key_problem and "LANGSMITH_API_KEY" in org.key_problem
    return org


def synced_before(org) -> AccessDatabase:
    database = AccessDatabase.of_org(org)
    with database.writer_lease("test set-up"):
        database.ensure_working()
    return database


def outbox(database: AccessDatabase) -> list[dict]:
    return [json.loads(payload) for (payload,) in query(
        database.working_path, "SELECT payload FROM main.notifications WHERE event = 'sync.failed' "
        "ORDER BY notification_seq")]


def test_each_scheduled_sync_not_started_raises_one_sync_failed_naming_the_key_and_the_fix(tmp_path):
    org = keyless_org(tmp_path, LANGSMITH_ACCESS_WEBHOOK_URL=WEBHOOK)
    database = synced_before(org)
    assert notify_sync_not_started(org, org.key_problem, scheduled_at=TICK) is None
    # The same tick evaluated again (a daemon restarted mid-tick) raises nothing new.
    assert notify_sync_not_started(org, org.key_problem, scheduled_at=TICK) is None
    [payload] = outbox(database)
    assert payload["org"] == "default" and payload["event"] == "sync.failed"
    assert "2026-12-06T03:00:00Z was not started" in payload["detail"]
    # The key's problem and its fix, as the command prints them: the fix names a key by its shape
    # ("lsv2_sk_..."), which is no key (cut as one, it read "a service key (<key>...)").
    assert org.key_problem == ("LANGSMITH_API_KEY is not set: set it to an organization-scoped service key "
                               "(lsv2_sk_...).")
    assert payload["detail"].endswith(f": {org.key_problem}"), payload["detail"]
    assert "s3cr3t" not in json.dumps(payload)
    # The next tick, still without the key: another, as a run failing every hour would raise.
    assert notify_sync_not_started(org, org.key_problem, scheduled_at=TICK + timedelta(hours=1)) is None
    assert len(outbox(database)) == 2


def test_an_org_never_synced_or_without_a_webhook_gets_nothing_and_no_file(tmp_path):
    # An org added before its key: nothing of it has gone stale, and the tick says why it waits.
    never_synced = keyless_org(tmp_path, LANGSMITH_ACCESS_WEBHOOK_URL=WEBHOOK)
    assert notify_sync_not_started(never_synced, never_synced.key_problem, scheduled_at=TICK) is None
    assert not (tmp_path / "data").exists()
    # No webhook: the outbox never fills with notifications nobody reads.
    unwatched = keyless_org(tmp_path)
    database = synced_before(unwatched)
    assert notify_sync_not_started(unwatched, unwatched.key_problem, scheduled_at=TICK) is None
    # Nor does it wait for a run that holds its database, to say it could record nothing.
    with lease_held_elsewhere(database, "a request being queued"):
        assert notify_sync_not_started(unwatched, unwatched.key_problem, scheduled_at=TICK,
                                       lease_timeout_seconds=0.2) is None
    assert outbox(database) == []


def test_a_busy_database_is_said_and_the_next_tick_records_it(tmp_path):
    org = keyless_org(tmp_path, LANGSMITH_ACCESS_WEBHOOK_URL=WEBHOOK)
    database = synced_before(org)
    with lease_held_elsewhere(database, "a request being queued"):
        said = notify_sync_not_started(org, org.key_problem, scheduled_at=TICK, lease_timeout_seconds=0.2)
    assert said is not None and said.startswith("Its sync.failed is not recorded")
    assert "the next sync asked for tries again" in said
    assert outbox(database) == []
    assert notify_sync_not_started(org, org.key_problem, scheduled_at=TICK + timedelta(hours=1)) is None
    assert len(outbox(database)) == 1


def test_a_database_that_cannot_be_used_is_said_not_raised(tmp_path):
    # The tick goes on for every other org: what went wrong is said after this org's reason.
    org = keyless_org(tmp_path, LANGSMITH_ACCESS_WEBHOOK_URL=WEBHOOK)
    database = AccessDatabase.of_org(org)
    database.path.parent.mkdir(parents=True)
    database.working_path.write_text("not a database")
    said = notify_sync_not_started(org, org.key_problem, scheduled_at=TICK)
    assert said is not None and said.startswith("Its sync.failed is not recorded (")
    assert "s3cr3t" not in said


def test_an_error_that_quotes_the_webhook_url_or_a_key_is_said_without_them(tmp_path, monkeypatch):
    # Whatever raised while recording (a proxy's text, a driver's message quoting its settings):
    # what the tick says loses the org's webhook URL (its token is in its path) and any key.
    org = keyless_org(tmp_path, LANGSMITH_ACCESS_WEBHOOK_URL=WEBHOOK)
    synced_before(org)
    key = "lsv2_sk_0123456789abcdef0123456789abcdef_0123456789"

    def failing(self):
        raise RuntimeError(f"could not reach {WEBHOOK} with {key}")

    monkeypatch.setattr(AccessDatabase, "ensure_working", failing)
    said = notify_sync_not_started(org, org.key_problem, scheduled_at=TICK)
    assert said is not None and said.startswith("Its sync.failed is not recorded (RuntimeError: could not reach ")
    assert "s3cr3t" not in said and key not in said, said

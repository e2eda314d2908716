"""The audit log's incremental load against the sandbox over HTTP, run after run: an event that
LangSmith logs late (after a run read past its time) is still found by the next run, which
starts an hour before where the last one stopped; events are kept once by id, and what a run
says it loaded (the section's rows in ``sync_runs``, the asset's metadata, ``raw.audit_windows``)
counts the events it added, apart from those it read again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb

from langsmith_access.langsmith import SectionPlan
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.store.schema import ensure_schema
from langsmith_access.store.sections import SectionRead, earliest_audit_window_start
from langsmith_access.sync.inventory import AuditLoad, read_audit_log
from langsmith_access_tests.langsmith.sandbox_client_support import RecordingSleep, client_for

T0 = 1_900_000_000  # 2030-03-17T17:46:40Z: after every generated event


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def test_an_event_logged_late_is_found_by_the_next_run():
    org = generate_org(seed=7, members=20, workspaces=3)
    # The sandbox's clock at T0 too: on its real clock, the route's 400-day retention would drop
    # these events once the day the tests run is 400 days past T0.
    org.clock = lambda: T0
    first_run = datetime.fromtimestamp(T0, tz=UTC)
    with SandboxServer(org) as sandbox, client_for(sandbox, sleep=RecordingSleep()) as client:
        conn = duckdb.connect()
        ensure_schema(conn)

        def run(sync_id: str, now: datetime) -> tuple[SectionRead, AuditLoad | None]:
            return read_audit_log(client, conn, SectionPlan(read=("audit_events",)), sync_id=sync_id, now=now,
                                  unused_days=2, fetched_at=now)

        member = org.active_members()[0]
        on_time = org.record_login(member.ls_user_id, time_ms=(T0 - 3600) * 1000)
        run("s1", first_run)
        # Logged after the first run read past it: half an hour before where that run stopped.
        late = org.record_login(member.ls_user_id, time_ms=(T0 - 1800) * 1000)
        second_run = first_run + timedelta(days=1, hours=2)
        read, load = run("s2", second_run)
        loaded = [event_id for (event_id,) in conn.execute(
            "SELECT event_id FROM raw.audit_events WHERE event_id IN (?, ?) ORDER BY sync_id",
            [on_time.id, late.id]).fetchall()]
        # Each once: the overlap reads the on-time event again, and keeps the row it had.
        assert loaded == [on_time.id, late.id]
        # The second run read both (from an hour before the first stopped, a day at a time: two
        # windows of a page each) and added one.
        assert load == AuditLoad(start=first_run - timedelta(hours=1), end=second_run, windows=2, pages=2,
                                 events_read=2, events_new=1)
        assert read == SectionRead.read("audit_events", 1)
        assert conn.execute("SELECT events_read, events_new, pages FROM raw.audit_windows "
                            "WHERE sync_id = 's2' ORDER BY window_start").fetchall() == [(2, 1, 1), (0, 0, 1)]


def test_a_first_load_past_the_retention_reads_exactly_what_the_sandbox_still_keeps():
    # LANGSMITH_ACCESS_UNUSED_DAYS=500: the load reaches back 400 days (inventory.AUDIT_RETENTION),
    # where the sandbox's retention starts, both counted from the same clock. Every event kept is
    # loaded, and the log is not said to be known from before what the sandbox can still serve.
    org = generate_org(seed=7, members=20, workspaces=3, now=T0 - 1)
    org.clock = lambda: T0
    now = datetime.fromtimestamp(T0, tz=UTC)
    edge_ms = (T0 - 400 * 86_400) * 1000
    member = org.active_members()[0]
    older, at_edge, inside = (org.record_login(member.ls_user_id, time_ms=edge_ms + offset) for offset in (-1, 0, 1))
    with SandboxServer(org) as sandbox, client_for(sandbox, sleep=RecordingSleep()) as client:
        conn = duckdb.connect()
        ensure_schema(conn)
        read_audit_log(client, conn, SectionPlan(read=("audit_events",)), sync_id="s1", now=now,
                       unused_days=500, fetched_at=now)
    loaded = {event_id for (event_id,) in conn.execute("SELECT event_id FROM raw.audit_events").fetchall()}
    assert {at_edge.id, inside.id} <= loaded and older.id not in loaded
    assert loaded == {e.id for e in org.audit_log.events() if e.time_ms >= edge_ms}
    assert earliest_audit_window_start(conn) == at(edge_ms)

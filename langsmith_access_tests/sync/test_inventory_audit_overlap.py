"""The audit log's incremental load against the sandbox over HTTP, run after run: an event that
LangSmith logs late (after a run read past its time) is still found by the next run, which
starts an hour before where the last one stopped; events are kept once by id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb

from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.store.schema import ensure_schema
from langsmith_access.sync.inventory import load_audit_events
from langsmith_access_tests.langsmith.sandbox_client_support import RecordingSleep, client_for

T0 = 1_900_000_000  # 2030-03-17T17:46:40Z: after every generated event


def test_an_event_logged_late_is_found_by_the_next_run():
    org = generate_org(seed=7, members=20, workspaces=3)
    first_run = datetime.fromtimestamp(T0, tz=UTC)
    with SandboxServer(org) as sandbox, client_for(sandbox, sleep=RecordingSleep()) as client:
        conn = duckdb.connect()
        ensure_schema(conn)

        def run(sync_id: str, now: datetime) -> None:
            load_audit_events(client, conn, sync_id=sync_id, now=now, unused_days=2, fetched_at=now)

        member = org.active_members()[0]
        on_time = org.record_login(member.ls_user_id, time_ms=(T0 - 3600) * 1000)
        run("s1", first_run)
        # Logged after the first run read past it: half an hour before where that run stopped.
        late = org.record_login(member.ls_user_id, time_ms=(T0 - 1800) * 1000)
        run("s2", first_run + timedelta(hours=2))
        loaded = [event_id for (event_id,) in conn.execute(
            "SELECT event_id FROM raw.audit_events WHERE event_id IN (?, ?) ORDER BY sync_id",
            [on_time.id, late.id]).fetchall()]
        # Each once: the overlap reads the on-time event again, and keeps the row it had.
        assert loaded == [on_time.id, late.id]

"""The wait before a failed end of a time-bound grant is queued again doubles, but never beyond
6 hours: the access must end (``expiry._RETRY_DUE``). On the queue alone, in memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb

from langsmith_access.provisioning import queue
from langsmith_access.provisioning.expiry import due_grants
from langsmith_access.store.schema import ensure_schema

ENDED = datetime(2026, 1, 1, tzinfo=UTC)


def insert(conn, status, updated_at, **columns) -> str:
    request_id = queue.new_id()
    values = {"request_id": request_id, "action": "grant", "user_id": "u", "workspace_id": "w", "role_id": "r",
              "status": status, "requested_at": updated_at, "updated_at": updated_at, **columns}
    conn.execute(f"INSERT INTO main.provisioning_requests ({', '.join(values)}) "
                 f"VALUES ({', '.join('?' for _ in values)})", list(values.values()))
    return request_id


def test_after_many_failed_ends_the_next_is_due_six_hours_after_the_last():
    conn = duckdb.connect()
    ensure_schema(conn)
    grant = insert(conn, "applied", ENDED - timedelta(hours=1), expires_at=ENDED)
    last_failed = ENDED + timedelta(days=3)
    for n in range(10):  # 300 s * 2**9 is 42 hours: well past the cap
        insert(conn, "failed", last_failed - timedelta(hours=9 - n), action="revoke", parent_request_id=grant)

    def due(at):
        return grant in [g["request_id"] for g in due_grants(conn, at)]

    assert not due(last_failed + timedelta(hours=6) - timedelta(seconds=1))
    assert due(last_failed + timedelta(hours=6))

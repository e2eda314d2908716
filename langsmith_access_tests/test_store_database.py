"""The writer lease (``AccessDatabase.writer_lease``): a writer kept waiting says who holds the
lease, and gives up naming them. And when a database counts as synced."""

from __future__ import annotations

import fcntl
import json
import logging
import os
from datetime import UTC, datetime

import duckdb
import pytest

from langsmith_access.store.database import AccessDatabase, DatabaseBusyError, DatabaseUnusableError
from langsmith_access.store.schema import ensure_schema
from langsmith_access.store.sync_runs import has_published_sync, record_failed_run


def test_a_writer_kept_waiting_says_who_holds_the_lease_then_gives_up_naming_them(tmp_path, caplog):
    database = AccessDatabase(tmp_path / "access.duckdb")
    database.path.parent.mkdir(parents=True, exist_ok=True)
    held = os.open(database.lock_path, os.O_RDWR | os.O_CREAT, 0o644)  # another writer's lease
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        os.pwrite(held, json.dumps({"pid": 4242, "purpose": "sync run abc", "since": "2026-12-01T10:00:00+00:00"})
                  .encode(), 0)
        with caplog.at_level(logging.WARNING, logger="langsmith_access.store.database"):
            with pytest.raises(DatabaseBusyError) as busy:
                with database.writer_lease("queue a request", timeout_seconds=0.3):
                    pass
    finally:
        os.close(held)
    [waiting] = [r.getMessage() for r in caplog.records if r.name == "langsmith_access.store.database"]
    assert waiting.startswith("waiting to queue a request: sync run abc (pid 4242, since 2026-12-01T10:00:00")
    assert "(up to 0.3 s)" in waiting
    assert "could not queue a request: sync run abc (pid 4242" in str(busy.value)
    assert "another program has the file open for writing" in DatabaseBusyError.fix


def test_a_database_is_synced_once_any_run_succeeded_in_it(tmp_path):
    # The sync's job, or the same assets launched from the asset catalog (Dagster's
    # __ASSET_JOB); failed runs do not count, and a file without sync_runs has no sync.
    with duckdb.connect(str(tmp_path / "bare.duckdb")) as conn:
        assert not has_published_sync(conn)
        ensure_schema(conn)
        at = datetime(2026, 12, 1, tzinfo=UTC)
        record_failed_run(conn, sync_id="r1", started_at=at, finished_at=at, api_stats=None,
                          job="langsmith_access_sync", failure="refused")
        assert not has_published_sync(conn)
        conn.execute("INSERT INTO main.sync_runs (sync_id, started_at, finished_at, status, job) "
                     "VALUES ('r2', ?, ?, 'succeeded', '__ASSET_JOB')", [at, at])
        assert has_published_sync(conn)


def test_a_damaged_file_is_unusable_at_once_whatever_its_folder_is_called(tmp_path):
    # DuckDB's message names the path; "lock" in it (a folder "blockstore") is no other writer.
    damaged = tmp_path / "blockstore" / "access.duckdb"
    damaged.parent.mkdir()
    damaged.write_bytes(b"not a database" * 300)
    with pytest.raises(DatabaseUnusableError), AccessDatabase(damaged).connect(damaged, read_only=True, timeout_seconds=30):
        pass

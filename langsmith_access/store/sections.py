"""What each run read of the access picture's sections (DESIGN.md section 9), and where the audit
log's incremental load stands. Python-owned tables of schema ``raw`` (not dbt sources): they
live in the run's scratch copy like everything it writes, so they are committed with the data
they describe, or not at all.

- ``raw.section_reads``: one row per (run, section): ``read`` with the rows it gave (and what it
  left out, such as a workspace deleted while it was read), or ``skipped`` with the reason (the
  plan, the key or the install has no such section).
  ``sync_runs.skipped_sections`` and ``section_rows`` are made from it.
- ``raw.audit_windows`` (a raw table of ``raw_tables.py``: ``user_activity`` reads how far back
  the log reaches): one row per audit-log window an inventory run read completely. The next
  run starts from the latest ``window_end`` (less an overlap). A window that failed is never
  recorded (its run publishes nothing), so it is read again next time, never skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import duckdb

from langsmith_access.store.raw_tables import RAW_SCHEMA

READ = "read"
SKIPPED = "skipped"

SECTION_READS_DDL = f"""
CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.section_reads (
    sync_id VARCHAR,
    job VARCHAR,            -- the Dagster job of the run
    section VARCHAR,        -- access_policies, audit_events, ..., scim_groups
    status VARCHAR,         -- 'read' | 'skipped'
    reason VARCHAR,         -- why skipped (the plan, the key or the install); when read, what
                            -- the read left out and why (null: nothing)
    rows BIGINT             -- rows the section gave (null when skipped)
)
"""



@dataclass(frozen=True)
class SectionRead:
    """How one run fared with one section: read (with its row count, and what it left out and
    why, if anything) or skipped (with why)."""

    section: str
    status: str
    reason: str | None = None
    rows: int | None = None

    @classmethod
    def read(cls, section: str, rows: int, left_out: str | None = None) -> SectionRead:
        return cls(section, READ, left_out, rows)

    @classmethod
    def skipped(cls, section: str, reason: str) -> SectionRead:
        return cls(section, SKIPPED, reason, None)

    def describe(self) -> str:
        """One line for a summary: ``access_policies: read 4 rows`` or ``...: skipped (why)``."""
        if self.status == READ:
            left_out = f" ({self.reason})" if self.reason else ""
            return f"{self.section}: read {self.rows} row{'s' * (self.rows != 1)}{left_out}"
        return f"{self.section}: skipped ({self.reason})"


def ensure_section_tables(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(SECTION_READS_DDL)


def record_section_reads(
    conn: duckdb.DuckDBPyConnection, *, sync_id: str, job: str, reads: Iterable[SectionRead]
) -> None:
    """Replace this run's rows for these sections (a step retried within the run writes again)."""
    reads = list(reads)
    if not reads:
        return
    conn.execute("BEGIN")
    try:
        conn.execute(
            f"DELETE FROM {RAW_SCHEMA}.section_reads WHERE sync_id = ? AND list_contains(?, section)",
            [sync_id, [r.section for r in reads]],
        )
        conn.executemany(
            f"INSERT INTO {RAW_SCHEMA}.section_reads VALUES (?, ?, ?, ?, ?, ?)",
            [[sync_id, job, r.section, r.status, r.reason, r.rows] for r in reads],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def section_reads(conn: duckdb.DuckDBPyConnection, sync_id: str) -> list[SectionRead]:
    """What the run read of each section, in section order of recording."""
    rows = conn.execute(
        f"SELECT section, status, reason, rows FROM {RAW_SCHEMA}.section_reads "
        "WHERE sync_id = ? ORDER BY rowid",
        [sync_id],
    ).fetchall()
    return [SectionRead(*row) for row in rows]


def skipped_sections_json(reads: Iterable[SectionRead]) -> str:
    """``sync_runs.skipped_sections``: JSON text ``{"<section>": "<reason>"}`` (``{}``: none)."""
    return json.dumps({r.section: r.reason for r in reads if r.status == SKIPPED}, sort_keys=True)


def section_rows_json(reads: Iterable[SectionRead]) -> str:
    """``sync_runs.section_rows``: JSON text ``{"<section>": <rows read>}`` of the sections read."""
    return json.dumps({r.section: r.rows for r in reads if r.status == READ}, sort_keys=True)


def latest_audit_window_end(conn: duckdb.DuckDBPyConnection) -> datetime | None:
    """Where the audit log has been read up to (None: never read)."""
    [(end,)] = conn.execute(f"SELECT max(window_end) FROM {RAW_SCHEMA}.audit_windows").fetchall()
    return end


def earliest_audit_window_start(conn: duckdb.DuckDBPyConnection) -> datetime | None:
    """How far back the loaded audit log reaches (None: never read)."""
    [(start,)] = conn.execute(f"SELECT min(window_start) FROM {RAW_SCHEMA}.audit_windows").fetchall()
    return start


def forget_audit_log(conn: duckdb.DuckDBPyConnection) -> None:
    """Drop the audit events loaded so far and where their load stood: a run that cannot read
    the audit log any more (the plan or the key lost it) must not go on showing the old events
    as the activity of today. Should it come back, its first load reaches back as a first one."""
    conn.execute(f"DELETE FROM {RAW_SCHEMA}.audit_events")
    conn.execute(f"DELETE FROM {RAW_SCHEMA}.audit_windows")


def forget_audit_windows(conn: duckdb.DuckDBPyConnection) -> None:
    """Forget where the audit log's load stood, keeping the events loaded: the log read no longer
    runs unbroken from its first window (LangSmith deleted what came after the last one before
    it was read), so the next load starts again as a first one."""
    conn.execute(f"DELETE FROM {RAW_SCHEMA}.audit_windows")


def record_audit_window(
    conn: duckdb.DuckDBPyConnection,
    *,
    sync_id: str,
    window_start: datetime,
    window_end: datetime,
    events_read: int,
    events_new: int,
    pages: int,
) -> None:
    conn.execute(
        f"INSERT INTO {RAW_SCHEMA}.audit_windows "
        "(sync_id, window_start, window_end, events_read, events_new, pages) VALUES (?, ?, ?, ?, ?, ?)",
        [sync_id, window_start, window_end, events_read, events_new, pages],
    )

"""Putting rows into the raw tables: all at once (``insert_rows``), or in batches as they arrive
(``RawTableAppender``), so a listing read page by page is never held in memory whole.

A row is a dict of column name to value, in the shapes ``raw_tables.RAW_TABLES`` declares
(missing columns are NULL).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import numpy as np

from langsmith_access.store.raw_tables import RAW_SCHEMA, column_names

Row = dict[str, Any]

# Columns every raw row carries with the same value for the whole sync.
SYNC_TAG_COLUMNS = ("sync_id", "fetched_at")

# Rows an appender holds before it writes them: large enough that DuckDB's cost per INSERT
# (a few milliseconds) stays small beside the rows', small enough to be a few MB.
BATCH_ROWS = 10_000


def insert_rows(conn: duckdb.DuckDBPyConnection, table: str, rows: Sequence[Row]) -> int:
    """Append ``rows`` to one raw table, in one INSERT. Returns the count.

    The rows reach DuckDB column by column, as NumPy object arrays (which DuckDB scans
    directly: ``None`` is NULL, lists are lists, aware datetimes are TIMESTAMPTZ). A column
    holding the same object in every row (the sync's tag: sync_id, fetched_at) is sent once, as
    a parameter: converting 100,000 identical datetimes costs more than the rest of the row.
    """
    if not rows:
        return 0
    columns = column_names(table)
    quoted = ", ".join(f'"{name}"' for name in columns)
    constants = {
        name: rows[0].get(name)
        for name in columns
        if name in SYNC_TAG_COLUMNS and all(row.get(name) is rows[0].get(name) for row in rows)
    }
    # fromiter, not np.array: a column of equally long lists must stay one-dimensional.
    frame = {
        name: np.fromiter((row.get(name) for row in rows), dtype=object, count=len(rows))
        for name in columns
        if name not in constants
    }
    selected = ", ".join("?" if name in constants else f'"{name}"' for name in columns)
    conn.register("incoming_rows", frame)
    try:
        conn.execute(
            f'INSERT INTO {RAW_SCHEMA}."{table}" ({quoted}) SELECT {selected} FROM incoming_rows',
            list(constants.values()),
        )
    finally:
        conn.unregister("incoming_rows")
    return len(rows)


class RawTableAppender:
    """Rows for one raw table, written ``batch_rows`` at a time as they are added.

    ``discard`` takes back rows added so far (all of them, or those with one column's value),
    whether still held or already written: what a listing read again must do with what its
    earlier scan delivered. Not thread-safe: callers adding from several threads hold a lock.
    """

    def __init__(
        self, conn: duckdb.DuckDBPyConnection, table: str, *, batch_rows: int = BATCH_ROWS
    ):
        column_names(table)  # an unknown table fails here, not at the first write
        self.conn = conn
        self.table = table
        self.batch_rows = batch_rows
        self._held: list[Row] = []

    def add(self, rows: Iterable[Row]) -> None:
        self._held.extend(rows)
        if len(self._held) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        """Write the rows held so far."""
        held, self._held = self._held, []
        insert_rows(self.conn, self.table, held)

    def discard(self, column: str | None = None, value: Any = None) -> None:
        """Take back every row added so far, or those whose ``column`` equals ``value``."""
        if column is None:
            self._held = []
            self.conn.execute(f'DELETE FROM {RAW_SCHEMA}."{self.table}"')
            return
        if column not in column_names(self.table):
            raise ValueError(f"raw.{self.table} has no column {column!r}")
        self._held = [row for row in self._held if row.get(column) != value]
        self.conn.execute(
            f'DELETE FROM {RAW_SCHEMA}."{self.table}" WHERE "{column}" = ?', [value]
        )

"""Reading back the one row a query always returns (``count(*)``, an aggregate, a ``COPY``).

DuckDB's ``fetchone()`` says the row may be missing, which is true of a lookup but never of
``SELECT count(*)``. These helpers say which kind a query is: a lookup keeps ``fetchone()`` and
handles ``None``; a query that always returns a row reads it here, and a missing row is an error
that names the query instead of a ``TypeError`` on ``None``.
"""

from __future__ import annotations

from typing import Any

import duckdb


class NoRowReturned(RuntimeError):
    """A query that always returns a row returned none."""


def one_row(conn: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> tuple[Any, ...]:
    """The row of a query that always returns one row."""
    row = conn.execute(sql, params).fetchone()
    if row is None:
        raise NoRowReturned(f"expected one row, got none from: {sql}")
    return row


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> Any:
    """The first column of the row of a query that always returns one row."""
    return one_row(conn, sql, params)[0]

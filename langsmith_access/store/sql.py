"""Quoting names and text into SQL, and reading back one row: of a query that always returns one
(``count(*)``, an aggregate, a ``COPY``), or of a lookup that finds one row or none.

DuckDB's ``fetchone()`` says the row may be missing, which is true of a lookup but never of
``SELECT count(*)``. These helpers say which kind a query is: a lookup reads ``first_row`` and
handles ``None``; a query that always returns a row reads it with ``one_row``, and a missing row
is an error that names the query instead of a ``TypeError`` on ``None``.

Both read the result to its end. DuckDB keeps a result that ``fetchone()`` left unfinished open
on the connection, and refuses ``register()`` and ``sql()`` there until it is ("connection has an
unfinished result from execute()"): a lookup before a raw-rows write would fail the write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb


def quote_identifier(name: str) -> str:
    """``name`` as a SQL identifier, whatever it holds (a table or column name, a heading)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: Path | str) -> str:
    """``text`` as a SQL string literal: for statements that take no parameters (``ATTACH``,
    ``COPY ... TO``)."""
    return "'" + str(text).replace("'", "''") + "'"


class NoRowReturned(RuntimeError):
    """A query that always returns a row returned none."""


def first_row(
    conn: duckdb.DuckDBPyConnection, sql: str, params: object = None
) -> tuple[Any, ...] | None:
    """The first row of a lookup, None when it finds none. For a lookup by key or with
    ``LIMIT 1``: every row it returns is read."""
    rows = conn.execute(sql, params).fetchall()
    return rows[0] if rows else None


def one_row(conn: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> tuple[Any, ...]:
    """The row of a query that always returns one row."""
    row = first_row(conn, sql, params)
    if row is None:
        raise NoRowReturned(f"expected one row, got none from: {sql}")
    return row


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> Any:
    """The first column of the row of a query that always returns one row."""
    return one_row(conn, sql, params)[0]


def table_exists(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether the connection's own database has table ``schema.table``."""
    return scalar(
        conn,
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ?",
        [schema, table],
    ) > 0


def column_names(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> set[str]:
    """The columns of ``schema.table`` (empty when there is no such table): for a table an older
    version built without a column the current code reads."""
    return {name for (name,) in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
        [schema, table]).fetchall()}


def email_key(expression: str) -> str:
    """The SQL of ``expression`` (a column, or ``?`` for a parameter) as emails are matched: the
    one rule, applied to both sides. NFC, because LangSmith keeps an email as it was typed and may
    send it decomposed (e + U+0301) where a person types it composed (é); trimmed; any case. Its
    Python twin is ``store.queries.typed_email``."""
    return f"lower(nfc_normalize(trim({expression})))"

"""The reviewer's own DuckDB file: table names, opening it with clear messages."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from langsmith_access.provisioning.review.format import ReviewError
from langsmith_access.store.sql import quote_identifier, scalar

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def check_table_name(table: str) -> None:
    if not _TABLE_NAME.fullmatch(table or ""):  # match() would let "$" pass a trailing newline
        raise ReviewError(
            f"table name {table!r} is not a plain name: use letters, digits and _ "
            "(optionally schema.table)."
        )


def quoted_table(table: str) -> str:
    return ".".join(quote_identifier(part) for part in table.split("."))


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".") if "." in table else ("main", table)
    return scalar(
        conn,
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND lower(table_schema) = lower(?) AND lower(table_name) = lower(?)",
        [schema, name],
    ) > 0


def table_names(conn) -> list[str]:
    """The tables and views of the file (``schema.name`` outside schema main)."""
    return [
        f"{schema}.{name}" if schema != "main" else name
        for schema, name in conn.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() ORDER BY 1, 2"
        ).fetchall()
    ] + [
        f"{schema}.{name}" if schema != "main" else name
        for schema, name in conn.execute(
            "SELECT schema_name, view_name FROM duckdb_views() "
            "WHERE database_name = current_database() AND NOT internal ORDER BY 1, 2"
        ).fetchall()
    ]


class open_reviewer_db:
    """The reviewer's own DuckDB file, with a clear message when their session holds it."""

    def __init__(self, path: Path, *, read_only: bool):
        self.path, self.read_only = path, read_only

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        try:
            self.conn = duckdb.connect(str(self.path), read_only=self.read_only)
        except duckdb.IOException as error:
            if "lock" in str(error).lower():
                raise ReviewError(
                    f"{self.path} is open for writing in another DuckDB session: close that "
                    "session (or open it read-only) and run again."
                ) from None
            raise ReviewError(f"cannot open {self.path} as a DuckDB file: {error}") from None
        except duckdb.Error as error:
            raise ReviewError(f"cannot open {self.path} as a DuckDB file: {error}") from None
        return self.conn

    def __exit__(self, *exc) -> None:
        self.conn.close()

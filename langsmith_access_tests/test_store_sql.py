"""The one-row helpers leave the connection free: DuckDB refuses ``register()`` on a connection
whose last result was not read to its end, which failed the first anonymity-restricted sync."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from langsmith_access.store.sql import (
    NoRowReturned,
    first_row,
    one_row,
    quote_identifier,
    quote_literal,
    scalar,
    table_exists,
)

# Each read and what it returns. The lookups of several rows are the ones ``fetchone()`` would
# leave unfinished: a helper that stopped reading after the first row fails the register below.
QUERIES = {
    "scalar": (lambda conn: scalar(conn, "SELECT count(*) FROM range(3)"), 3),
    "one_row": (lambda conn: one_row(conn, "SELECT 1, 2"), (1, 2)),
    "first_row, found": (lambda conn: first_row(conn, "SELECT 1 LIMIT 1"), (1,)),
    "first_row, of several": (lambda conn: first_row(conn, "SELECT * FROM range(5000) ORDER BY 1"), (0,)),
    "first_row, none": (lambda conn: first_row(conn, "SELECT 1 WHERE false"), None),
}


@pytest.mark.parametrize("read, returns", QUERIES.values(), ids=QUERIES.keys())
def test_a_helper_returns_its_row_and_leaves_no_result_open(read, returns):
    with duckdb.connect() as conn:
        assert read(conn) == returns
        conn.register("incoming_rows", {"a": np.array([1, 2])})
        assert conn.execute("SELECT sum(a) FROM incoming_rows").fetchall() == [(3,)]


def test_a_query_that_must_return_a_row_and_did_not_names_itself():
    with duckdb.connect() as conn, pytest.raises(NoRowReturned, match="WHERE false"):
        one_row(conn, "SELECT 1 WHERE false")


def test_a_quoted_name_and_text_reach_duckdb_as_written(tmp_path):
    # A heading with a time zone name, a reviewer's table and a path can hold either quote.
    name = 'at (America/"New York")'
    target = tmp_path / "it's here.csv"
    with duckdb.connect() as conn:
        conn.execute(f"CREATE TABLE {quote_identifier(name)} AS SELECT {quote_literal(chr(39) + 'x')} AS v")
        assert conn.execute(f"SELECT v FROM {quote_identifier(name)}").fetchall() == [("'x",)]
        conn.execute(f"COPY {quote_identifier(name)} TO {quote_literal(target)} (HEADER false)")
    assert target.read_text() == "'x\n"


def test_a_table_of_an_attached_database_is_not_a_table_of_the_connections_own(tmp_path):
    # A run attaches another file (the analysts' copy, a published history) beside its own: a
    # table found there must not make code believe its own database has it (and skip creating it).
    with duckdb.connect(str(tmp_path / "other.duckdb")) as other:
        other.execute("CREATE SCHEMA raw; CREATE TABLE raw.workspaces (x INTEGER)")
    with duckdb.connect(str(tmp_path / "own.duckdb")) as conn:
        conn.execute(f"ATTACH {quote_literal(tmp_path / 'other.duckdb')} AS other (READ_ONLY)")
        assert not table_exists(conn, "raw", "workspaces")
        conn.execute("CREATE SCHEMA raw; CREATE TABLE raw.workspaces (x INTEGER)")
        assert table_exists(conn, "raw", "workspaces")

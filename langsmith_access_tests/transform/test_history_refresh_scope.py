"""Which users a provisioning refresh rewrites (transform/history.py): the users of the
observations dbt has not built yet, each once, on a real DuckDB file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from langsmith_access.store.schema import ensure_schema
from langsmith_access.transform import DbtRunError, build, history, run_dbt
from langsmith_access.transform.project import built_by_this_project
from langsmith_access_tests.helpers import duckdb_openings
from langsmith_access_tests.transform.test_dbt_invocation import _raw_database

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _observations(conn: duckdb.DuckDBPyConnection, users: list[str | None], *, built: int) -> None:
    """One observation per entry of ``users`` (an hour apart); dbt has built the first ``built``."""
    ensure_schema(conn)
    for n, user in enumerate(users):
        conn.execute("INSERT INTO raw.provisioning_observations (observation_id, verified_at, workspace_id, "
                     "ls_user_id) VALUES (?, ?, 'ws-1', ?)", [f"o{n}", AT + timedelta(hours=n), user])
    conn.execute("CREATE SCHEMA IF NOT EXISTS staging")
    conn.execute("CREATE TABLE staging.stg_langsmith__provisioning_observations AS "
                 f"SELECT observation_id FROM raw.provisioning_observations ORDER BY observation_id LIMIT {built}")


def _scope(conn: duckdb.DuckDBPyConnection) -> list[str]:
    return [user for (user,) in conn.execute(f"SELECT user_id FROM {history.REFRESH_SCOPE} ORDER BY ALL").fetchall()]


def _scope_exists(conn: duckdb.DuckDBPyConnection) -> bool:
    return conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'refresh_scope'").fetchone() != (0,)


def test_the_refresh_rewrites_each_user_of_the_unbuilt_observations_once(tmp_path):
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        # u-0 was built already; u-1 changed twice since; a blank id names nobody.
        _observations(conn, ["u-0", "u-1", " u-2 ", "u-1", "  ", None], built=1)
        assert history.unbuilt_observations(conn) == 5
        assert history.first_unbuilt_observation_at(conn) == AT + timedelta(hours=1)
        assert history._write_refresh_scope(conn)
        assert _scope(conn) == ["u-1", "u-2"]


def test_nothing_unbuilt_writes_no_scope(tmp_path):
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        _observations(conn, ["u-0", "u-1"], built=2)
        assert history.unbuilt_observations(conn) == 0 and history.first_unbuilt_observation_at(conn) is None
        assert not history._write_refresh_scope(conn)
        assert not _scope_exists(conn)


def test_more_users_than_a_scoped_refresh_is_worth_rebuild_the_tables_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(history, "MAX_REFRESH_SCOPE_USERS", 2)
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        _observations(conn, ["u-1", "u-2"], built=0)
        assert history._write_refresh_scope(conn) and _scope(conn) == ["u-1", "u-2"]
        conn.execute("INSERT INTO raw.provisioning_observations (observation_id, verified_at, ls_user_id) "
                     "VALUES ('o9', ?, 'u-3')", [AT])
        assert not history._write_refresh_scope(conn)  # the earlier scope is gone too
        assert not _scope_exists(conn)


def test_a_database_dbt_built_without_observations_gets_no_scope(tmp_path):
    # A release before observations built it: every model is rebuilt whole, for every user.
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        _observations(conn, ["u-1"], built=0)
        conn.execute("DROP TABLE staging.stg_langsmith__provisioning_observations")
        assert history.unbuilt_observations(conn) == 1
        assert not history._write_refresh_scope(conn) and not _scope_exists(conn)


def test_a_rebuild_whose_dbt_build_fails_raises_naming_what_failed(tmp_path):
    # The caller commits the scratch copy only if this returns: a failed build must raise, and
    # its message (what the provisioning run reports) names every test that failed, not the first.
    database = tmp_path / "access.sync-scratch.duckdb"
    _raw_database(database, duplicate_role=True)
    with duckdb.connect(str(database)) as conn:
        for _ in range(2):
            conn.execute("INSERT INTO raw.workspaces (sync_id, fetched_at, workspace_id) "
                         "VALUES ('sync-1', '2026-01-01 00:00:00+00', 'ws-1')")
    with pytest.raises(DbtRunError) as raised:
        history.rebuild_history(database, tmp_path / "access.dbt", unused_days=90)
    message = str(raised.value)
    assert ": 2 node(s) failed, " in message.splitlines()[0], message
    assert "FAIL test primary_key_stg_langsmith__roles_role_id (1 rows)" in message, message
    assert "FAIL test primary_key_stg_langsmith__workspaces_workspace_id (1 rows)" in message, message


def test_a_rebuild_opens_the_file_once_before_dbt_and_once_after_and_records_the_project(tmp_path):
    # Each opening of a synced file reads its catalog (~20 ms of CPU at 2,000 members): the
    # project's hash, which the build records first, is written on the refresh's own connection.
    database = tmp_path / "access.sync-scratch.duckdb"
    _raw_database(database, duplicate_role=False)
    with duckdb_openings() as opened:
        history.rebuild_history(database, tmp_path / "access.dbt", unused_days=90)

    # the refresh's scope and drift before and after dbt, and dbt's own connection
    assert [path for path in opened if Path(path).resolve() == database.resolve()] == [str(database)] * 3, opened
    with duckdb.connect(str(database)) as conn:
        assert built_by_this_project(conn)


def built_whole(tmp_path) -> Path:
    """A file holding a sync's raw tables, with the whole project built on it."""
    database = tmp_path / "access.sync-scratch.duckdb"
    _raw_database(database, duplicate_role=False)
    with build(database, tmp_path / "access.dbt") as whole:
        whole.raise_on_failure()
    return database


def test_a_rebuild_of_a_file_this_project_built_leaves_what_provisioning_cannot_change_as_it_is(tmp_path):
    # A provisioning refresh builds what the verified changes reach (REFRESH_SELECT), not the whole
    # project: a table upstream of grants (roles) keeps its rows, even one no query would give.
    database = built_whole(tmp_path)
    with duckdb.connect(str(database)) as conn:
        conn.execute("UPDATE main.roles SET display_name = 'kept by the refresh'")
        conn.execute("DROP TABLE main.grants")

    history.rebuild_history(database, tmp_path / "access.dbt", unused_days=30)

    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT display_name FROM main.roles").fetchall() == [("kept by the refresh",)]
        assert conn.execute("SELECT count(*) FROM main.grants").fetchone() == (0,)  # rebuilt (no listings)
    # With the org's LANGSMITH_ACCESS_UNUSED_DAYS, not the models' default of 90.
    compiled = tmp_path / "access.dbt" / "run" / "langsmith_access" / "models" / "reports" / "report_unused_access.sql"
    assert "30 as unused_after_days" in compiled.read_text()


def test_a_full_refresh_writes_a_scoped_table_whole_though_a_refresh_scope_is_there(tmp_path):
    # A refresh's scope lets a table this project wrote whole replace only its users' rows
    # (macros/refresh_scope.sql); `dbt build --full-refresh`, run by hand on such a file, must not:
    # it writes the table whole, and a row no query gives (planted, of a user outside the scope) goes.
    database = built_whole(tmp_path)
    with duckdb.connect(str(database)) as conn:
        conn.execute(f"CREATE TABLE {history.REFRESH_SCOPE} (user_id VARCHAR PRIMARY KEY)")
        conn.execute(f"INSERT INTO {history.REFRESH_SCOPE} VALUES ('u-1')")
        conn.execute("INSERT INTO main.grants (grant_id, user_id) VALUES ('planted', 'u-outside')")

    def planted_rows() -> int:
        with duckdb.connect(str(database), read_only=True) as conn:
            return conn.execute("SELECT count(*) FROM main.grants WHERE grant_id = 'planted'").fetchone()[0]

    def run_grants(*flags: str) -> None:  # `dbt run`: the planted row would fail grants' checks
        with run_dbt(["run", *flags, "--select", "grants"], database_file=database,
                     dbt_dir=tmp_path / "access.dbt") as ran:
            ran.raise_on_failure()

    run_grants()  # the scoped refresh: the scope's users' rows only
    assert planted_rows() == 1
    run_grants("--full-refresh")
    assert planted_rows() == 0

"""dbt's DuckDB memory: the packaged profile's memory_limit reaches the connection dbt builds
with, and a query that needs more than the limit still succeeds by spilling to disk beside the
database (dbt runs inside the sync's process, so its DuckDB must not grow with the org)."""

import duckdb
import pytest
import yaml
from dbt.cli.main import dbtRunner

from langsmith_access.store.database import AccessDatabase
from langsmith_access.transform import project
from langsmith_access.transform.invocation import close_dbt_connection, dbt_command
from langsmith_access.transform.project import PROFILE_NAME, PROFILE_TEMPLATE, write_profile

# ~2 million distinct strings: a hash table far larger than the 32 MB limit below.
LARGE_DISTINCT = (
    "select count(distinct member) as members from ("
    "select 'member-' || range::varchar || '-of-a-large-organization' as member"
    " from range(2000000))"
)


def _dbt_show(dbt_dir, sql: str):
    """``dbt show --inline sql`` on the database of ``dbt_dir``'s profile, through dbt's own
    connection: (succeeded, first row or None, error message)."""
    try:
        outcome = dbtRunner().invoke(dbt_command(["show", "--inline", sql], dbt_dir))
    finally:
        close_dbt_connection()  # as every invocation of langsmith-access does (keep_open)
    if outcome.success:
        return True, tuple(outcome.result.results[0].agate_table.rows[0].values()), ""
    return False, None, str(outcome.exception)


def _config_options(template) -> dict:
    profile = yaml.safe_load(template.read_text())[PROFILE_NAME]
    return profile["outputs"][profile["target"]]["config_options"]


def _as_duckdb_shows_it(memory_limit: str) -> str:
    with duckdb.connect(":memory:", config={"memory_limit": memory_limit}) as conn:
        return conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_the_packaged_memory_limit_reaches_dbts_connection_and_spills_beside_the_database(tmp_path):
    database = tmp_path / "access.sync-scratch.duckdb"
    duckdb.connect(str(database)).close()
    packaged_limit = _config_options(PROFILE_TEMPLATE)["memory_limit"]
    write_profile(tmp_path / "access.dbt", database)

    ok, row, error = _dbt_show(
        tmp_path / "access.dbt",
        "select current_setting('memory_limit') as memory_limit,"
        " current_setting('temp_directory') as temp_directory,"
        " current_setting('preserve_insertion_order') as preserve_insertion_order,"
        " current_setting('TimeZone') as time_zone",
    )

    assert ok, error
    # Not DuckDB's default (80% of the machine's RAM), the profile's figure.
    assert row[0] == _as_duckdb_shows_it(packaged_limit)
    assert row[0] != _as_duckdb_shows_it("80%")
    # DuckDB's default temp directory for a file: beside it, on the database's own disk.
    assert row[1] == f"{database}.tmp"
    # The profile's other settings reach it too (config options once, TimeZone per cursor).
    assert row[2:] == (False, "UTC")


@pytest.mark.parametrize("spilling", [True, False], ids=["spills", "no-temp-directory"])
def test_a_query_that_needs_more_than_the_limit_succeeds_by_spilling(tmp_path, monkeypatch, spilling):
    database = tmp_path / "access.sync-scratch.duckdb"
    duckdb.connect(str(database)).close()
    template = yaml.safe_load(PROFILE_TEMPLATE.read_text())
    output = template[PROFILE_NAME]["outputs"][template[PROFILE_NAME]["target"]]
    output["config_options"]["memory_limit"] = "32MB"
    if not spilling:
        output["config_options"]["temp_directory"] = ""  # DuckDB's way to say: never spill
    small = tmp_path / "profiles-template.yml"
    small.write_text(yaml.safe_dump(template))
    monkeypatch.setattr(project, "PROFILE_TEMPLATE", small)
    write_profile(tmp_path / "access.dbt", database)

    ok, row, error = _dbt_show(tmp_path / "access.dbt", LARGE_DISTINCT)

    if spilling:
        assert ok, error
        assert row == (2_000_000,)
        assert not (tmp_path / f"{database.name}.tmp").exists() or not any(
            (tmp_path / f"{database.name}.tmp").iterdir()
        )  # DuckDB removed what it spilled
    else:
        # The same query without a place to spill: it does need more than the limit.
        assert not ok
        assert "Out of Memory" in error


def test_a_spill_directory_left_by_a_killed_build_does_not_stop_the_next_sync(tmp_path):
    """DuckDB removes `<scratch file>.tmp` when a build ends; a process killed mid-spill leaves
    it, and the next sync's scratch copy clears it with the scratch file's other leftovers."""
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
    left = database.scratch_path.with_name(database.scratch_path.name + ".tmp")
    left.mkdir()
    (left / "duckdb_temp_storage_DEFAULT-0.tmp").write_bytes(b"\0" * 4096)
    # And a parse made ahead by an older version (it ran dbt parse in a second process).
    ahead = database.dbt_target_path.with_name(database.dbt_target_path.name + "-ahead-abc123")
    ahead.mkdir()
    (ahead / "partial_parse.msgpack").write_bytes(b"old")

    with database.writer_lease("the next sync"):
        scratch = database.begin_scratch()
        database.discard_scratch(scratch)

    assert not left.exists() and not ahead.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("access.sync-")) == []

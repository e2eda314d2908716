"""dbt's parse made ahead for a database's first sync (store/dbt_runner.py): started only when
the database has no saved parse, taken only by the lease holder, cleaned up in every case."""

from langsmith_access.store import dbt_runner


def test_no_parse_ahead_when_the_database_already_has_one(tmp_path):
    target = tmp_path / "access.dbt"
    target.mkdir()
    (target / dbt_runner.PARTIAL_PARSE_FILE).write_bytes(b"saved parse")
    assert not dbt_runner.start_parse_ahead(tmp_path / "access.sync-scratch.duckdb", target)
    assert not dbt_runner.adopt_parse_ahead(target)  # nothing was started: nothing to wait for
    assert (target / dbt_runner.PARTIAL_PARSE_FILE).read_bytes() == b"saved parse"


def test_a_parse_ahead_that_is_not_needed_is_stopped_and_leaves_nothing(tmp_path):
    target = tmp_path / "access.dbt"
    assert dbt_runner.start_parse_ahead(tmp_path / "access.sync-scratch.duckdb", target)
    process, ahead = dbt_runner._parses_ahead[target]
    assert ahead.parent == tmp_path and ahead.is_dir()
    assert not dbt_runner.start_parse_ahead(tmp_path / "access.sync-scratch.duckdb", target)

    dbt_runner.discard_parse_ahead(target)  # e.g. the run failed before its dbt step

    assert process.poll() is not None
    assert not ahead.exists() and not target.exists()
    assert target not in dbt_runner._parses_ahead


def test_the_lease_holder_takes_the_parse_made_ahead(tmp_path):
    target = tmp_path / "access.dbt"
    assert dbt_runner.start_parse_ahead(tmp_path / "access.sync-scratch.duckdb", target)
    try:
        assert dbt_runner.adopt_parse_ahead(target)
        assert (target / dbt_runner.PARTIAL_PARSE_FILE).stat().st_size > 0
    finally:
        dbt_runner.discard_parse_ahead(target)
    assert not list(tmp_path.glob("*-ahead-*"))

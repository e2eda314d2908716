"""This version on a database an older release made (the same file, upgraded in place).

Old code never runs here: each older release's tables are a small captured fixture under
data/upgrade/<release>/ (DDL and a few of the rows it wrote), loaded into a fresh DuckDB file.
"""

from pathlib import Path

import duckdb

from langsmith_access.api import list_requests
from langsmith_access_tests.helpers import cli_in_this_process

UPGRADE_DATA = Path(__file__).parent / "data" / "upgrade"


def database_of(release: str, fixture: str, database: Path) -> Path:
    """A fresh DuckDB file holding ``data/upgrade/<release>/<fixture>.sql``."""
    with duckdb.connect(str(database)) as conn:
        conn.execute((UPGRADE_DATA / release / f"{fixture}.sql").read_text())
    return database


def test_requests_lists_a_queue_the_first_release_wrote_before_anything_upgraded_it(tmp_path, monkeypatch):
    # `requests` reads the analysts' copy read-only: right after an upgrade it still lacks the
    # governance columns (expires_at, ...) that the next write adds.
    database = database_of("36525be", "queue", tmp_path / "langsmith_access.duckdb")
    rows = list_requests(database=database)
    assert [(r["request_seq"], r["action"], r["status"]) for r in rows] == [
        (1, "grant", "applied"), (2, "grant", "rejected"), (3, "revoke", "pending")]
    assert {r["expires_at"] for r in rows} == {None} and {r["approval_deadline"] for r in rows} == {None}
    assert [r["request_id"] for r in list_requests("pending", database=database)] == [rows[2]["request_id"]]

    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(database))
    listed = cli_in_this_process("requests")
    assert listed.returncode == 0, listed.stderr
    assert "pending           revoke Editor in Data Science for alan.turing@Example.com" in listed.stdout

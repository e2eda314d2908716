"""dbt's parse made ahead for a database's first sync (transform/parse_ahead.py): started only
when the database has no saved parse, handed to the lease holder through the file system, and
cleaned up by its owner in every case."""

import fcntl
import os

from langsmith_access.transform import parse_ahead
from langsmith_access.transform.parse_ahead import PARTIAL_PARSE_FILE, RUNNING_LOCK, ParseAhead


def test_no_parse_ahead_when_the_database_already_has_one(tmp_path):
    target = tmp_path / "access.dbt"
    target.mkdir()
    (target / PARTIAL_PARSE_FILE).write_bytes(b"saved parse")
    assert ParseAhead.start(tmp_path / "access.sync-scratch.duckdb", target) is None
    assert not parse_ahead.adopt(target)  # nothing was started: nothing to wait for
    assert (target / PARTIAL_PARSE_FILE).read_bytes() == b"saved parse"
    assert parse_ahead.ahead_directories(target) == []


def test_a_parse_ahead_that_is_not_needed_is_stopped_and_leaves_nothing(tmp_path):
    target = tmp_path / "access.dbt"
    ahead = ParseAhead.start(tmp_path / "access.sync-scratch.duckdb", target)
    assert ahead is not None
    assert ahead.directory.parent == tmp_path and ahead.directory.is_dir()
    assert parse_ahead.ahead_directories(target) == [ahead.directory]

    ahead.close()  # e.g. the run failed before its dbt step

    assert ahead.process.poll() is not None
    assert not ahead.directory.exists() and not target.exists()
    assert not parse_ahead.adopt(target)


def test_the_lease_holder_takes_the_parse_made_ahead_without_a_handle(tmp_path):
    target = tmp_path / "access.dbt"
    with ParseAhead.start(tmp_path / "access.sync-scratch.duckdb", target) as ahead:
        # adopt() knows only the dbt directory: it finds the parse on disk and waits for the
        # process to finish (its lock), however long the parse takes.
        assert parse_ahead.adopt(target)
        # It waited for the parse to end: the process no longer holds its lock (the kernel lets
        # go of it as the process exits, an instant before the process can be reaped, so
        # poll() may still say "running" here), and it ends successfully.
        lock = os.open(ahead.directory / RUNNING_LOCK, os.O_RDONLY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if still held
        finally:
            os.close(lock)
        assert ahead.process.wait(timeout=60) == 0
        assert (target / PARTIAL_PARSE_FILE).stat().st_size > 0
        assert not parse_ahead.adopt(target)  # has its own parse now
    assert not list(tmp_path.glob("*-ahead-*"))


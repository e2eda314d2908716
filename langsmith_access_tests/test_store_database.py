"""The writer lease (``AccessDatabase.writer_lease``): a writer kept waiting says who holds the
lease, and gives up naming them. How the files are opened, published and copied for a run, and
what each leaves behind when it fails. And when a database counts as synced."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from langsmith_access.store import database as database_module
from langsmith_access.store import export
from langsmith_access.store.database import (
    ANALYSTS_COPY_HELD_FIX,
    UNWRITABLE_FOLDER_FIX,
    AccessDatabase,
    DatabaseBusyError,
    DatabaseNotPermittedError,
    DatabaseNotReadyError,
    DatabaseUnusableError,
    LeftoverWalError,
    PublishFailedError,
    full_disk_fix,
    unwritable_fix,
)
from langsmith_access.store.schema import ensure_schema
from langsmith_access.store.sync_runs import (
    OtherOrganizationError,
    PredatesTablesError,
    has_published_sync,
    leave_aside,
    record_failed_run,
    require_tables,
)
from langsmith_access_tests.helpers import lease_held_elsewhere, query


def write_and_die(path: Path, table: str, value: int = 7) -> None:
    """A writer killed (``os._exit``) right after committing ``main.<table>`` (``x = value``): the
    write is in ``<path>.wal``, not yet folded into the file."""
    subprocess.run([sys.executable, "-c", "import duckdb, os, sys; c = duckdb.connect(sys.argv[1]); "
                    f"c.execute('CREATE TABLE main.{table} AS SELECT {value} AS x'); os._exit(0)", str(path)],
                   check=True)


@contextlib.contextmanager
def on_message(start: str, do: Callable[[], object]) -> Iterator[None]:
    """``do()`` when the database module logs a message beginning with ``start``: another process
    answering a writer's wait as soon as the writer says it waits, on no timer of its own."""

    class Doing(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith(start):
                do()

    logger, handler = logging.getLogger("langsmith_access.store.database"), Doing()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


class WaitingClock:
    """The database module's clock, moved by its own sleeps only: a writer's time to wait is spent
    in its polls, never by a pause of this process (a busy machine's pause of 0.3 s before its
    first look gave up without saying whom it waited for)."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def __getattr__(self, name: str):
        return getattr(time, name)


def test_a_writer_kept_waiting_says_who_holds_the_lease_then_gives_up_naming_them(tmp_path, caplog, monkeypatch):
    clock = WaitingClock()
    monkeypatch.setattr(database_module, "time", clock)
    database = AccessDatabase(tmp_path / "access.duckdb")
    database.path.parent.mkdir(parents=True, exist_ok=True)
    held = os.open(database.lock_path, os.O_RDWR | os.O_CREAT, 0o644)  # another writer's lease
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        os.pwrite(held, json.dumps({"pid": 4242, "purpose": "sync run abc", "since": "2026-12-01T10:00:00+00:00"})
                  .encode(), 0)
        with caplog.at_level(logging.WARNING, logger="langsmith_access.store.database"):
            with pytest.raises(DatabaseBusyError) as busy:
                with database.writer_lease("queue a request", timeout_seconds=0.3):
                    pass
    finally:
        os.close(held)
    [waiting] = [r.getMessage() for r in caplog.records if r.name == "langsmith_access.store.database"]
    assert waiting.startswith("waiting to queue a request: sync run abc (pid 4242, since 2026-12-01T10:00:00")
    assert "(up to 0.3 s)" in waiting
    assert "could not queue a request: sync run abc (pid 4242" in str(busy.value)
    assert clock.now - 1000.0 < 0.3 + 0.1  # gave up once its 0.3 s were spent, not later
    assert "another program has the file open for writing" in DatabaseBusyError.fix


def test_a_database_is_synced_once_any_run_succeeded_in_it(tmp_path):
    # The sync's job, or the same assets launched from the asset catalog (Dagster's
    # __ASSET_JOB); failed runs do not count, and a file without sync_runs has no sync.
    with duckdb.connect(str(tmp_path / "bare.duckdb")) as conn:
        assert not has_published_sync(conn)
        ensure_schema(conn)
        at = datetime(2026, 12, 1, tzinfo=UTC)
        record_failed_run(conn, sync_id="r1", started_at=at, finished_at=at, api_stats=None,
                          job="langsmith_access_sync", failure="refused")
        assert not has_published_sync(conn)
        conn.execute("INSERT INTO main.sync_runs (sync_id, started_at, finished_at, status, job) "
                     "VALUES ('r2', ?, ?, 'succeeded', '__ASSET_JOB')", [at, at])
        assert has_published_sync(conn)


def test_tables_a_later_release_added_are_named_only_when_missing_with_what_reads_them(tmp_path):
    # A database an older release published lacks the tables of later options: the refusal names
    # each missing table and the option that reads it, in words that agree with their number.
    tables = {"--credentials": "credentials", "--settings": "workspace_settings", "--users": "users"}
    with duckdb.connect(str(tmp_path / "older.duckdb")) as conn:
        conn.execute("CREATE TABLE main.users (user_id VARCHAR)")
        require_tables(conn, "older.duckdb", {"--users": "users"})
        with pytest.raises(PredatesTablesError) as both:
            require_tables(conn, "older.duckdb", tables)
        assert str(both.value).startswith("the analysts' database older.duckdb predates main.credentials and "
                                          "main.workspace_settings, which --credentials and --settings read: ")
        with pytest.raises(PredatesTablesError, match="predates main.credentials, which --credentials reads: "):
            require_tables(conn, "older.duckdb", {"--credentials": "credentials"})


def test_a_damaged_file_is_unusable_at_once_whatever_its_folder_is_called(tmp_path):
    # DuckDB's message names the path; "lock" in it (a folder "blockstore") is no other writer.
    damaged = tmp_path / "blockstore" / "access.duckdb"
    damaged.parent.mkdir()
    damaged.write_bytes(b"not a database" * 300)
    with pytest.raises(DatabaseUnusableError), AccessDatabase(damaged).connect(damaged, read_only=True, timeout_seconds=30):
        pass


def test_a_file_whose_checksum_fails_is_unusable_at_once_and_no_working_file_is_made_of_it(tmp_path):
    # A bad disk block, or a copy another tool cut short: DuckDB refuses the file with "Corrupt
    # database file" (no IOException), which waiting cannot cure and which the fix must follow.
    database = AccessDatabase(tmp_path / "access.duckdb")
    duckdb.connect(str(database.path)).execute("CREATE TABLE main.kept AS SELECT 42 AS x").close()
    with open(database.path, "r+b") as handle:  # inside the checksummed part of the file's header
        handle.seek(100)
        handle.write(b"\xff" * 64)
    damaged = database.path.read_bytes()
    with pytest.raises(DatabaseUnusableError, match=f"could not open {database.path}: .*Corrupt database file"):
        with database.read_published(timeout_seconds=30):
            pass
    with database.writer_lease("a sync"), pytest.raises(DatabaseUnusableError) as refused:
        database.ensure_working()
    assert f"could not open {database.path}: " in str(refused.value)
    assert not database.working_path.exists() and database.path.read_bytes() == damaged
    # No working file beside it: perhaps not this tool's file at all, never called one to publish over.
    assert refused.value.fix == DatabaseUnusableError.fix


def test_a_database_file_this_user_may_not_open_is_not_called_damaged(tmp_path):
    # A working file made by a run as another account (root, then the daemon's user): the fix is
    # the owner or the modes, never to move a sound file aside as if it were damaged.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("a first sync"):
        database.ensure_working()
    database.working_path.chmod(0o444)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from langsmith_access.store.database import AccessDatabase, DatabaseUnusableError\n"
        "database = AccessDatabase(Path(sys.argv[1]))\n"
        "try:\n"
        "    with database.writer_lease('queue a request'):\n"
        "        database.ensure_working()\n"
        "except DatabaseUnusableError as error:\n"
        "    print(type(error).__name__, error.fix, sep='\\n')\n"
    )
    command = [sys.executable, "-c", script, str(database.path)]
    if os.geteuid() == 0:  # root ignores modes: run without the capabilities that let it
        command = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["DatabaseNotPermittedError", DatabaseNotPermittedError.fix], done

def test_an_error_of_this_process_own_making_is_not_called_a_damaged_file(tmp_path):
    # Only "Corrupt database file" is a damaged file: a second connection of this process with
    # another configuration is refused by DuckDB as it is, not with a fix to move the file aside.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("a sync"):
        database.ensure_working()
        with database.connect(), pytest.raises(duckdb.ConnectionException) as refused:
            with database.connect(read_only=True):
                pass
    assert not isinstance(refused.value, DatabaseUnusableError)


@pytest.mark.parametrize("name", ["memory.duckdb", "Memory.duckdb", "system.duckdb", "access.duckdb"])
def test_a_read_only_connection_reads_the_file_whatever_it_is_called(name, tmp_path):
    # A read-only connection attaches the file to an in-memory database of its own (so that it
    # reads the file as it is now): a file whose name is that in-memory database's ("memory") is
    # read too, as a duckdb.connect of it would, with main.* and current_database() its own.
    database = AccessDatabase(tmp_path / name)
    with database.writer_lease("test set-up"):
        database.ensure_working()
        with database.connect() as conn:
            conn.execute("CREATE TABLE main.notes AS SELECT 42 AS answer")
        database.publish()
    with database.read_published() as conn:
        assert conn.execute("SELECT answer FROM main.notes").fetchall() == [(42,)]
        assert conn.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                            "AND table_name = 'notes'").fetchall() == [(1,)]


def test_a_writer_makes_the_database_folder_when_there_is_none_yet(tmp_path):
    # Queueing a request before the first sync: nothing has made the folder yet.
    database = AccessDatabase(tmp_path / "data" / "org" / "access.duckdb")
    with database.writer_lease("queue a provisioning request", timeout_seconds=1):
        database.ensure_working()
    assert database.lock_path.is_file() and database.working_path.is_file()


def test_a_session_that_wrote_to_the_analysts_copy_never_makes_it_unreadable(tmp_path):
    # An analyst opened the published file read-write and made a table: DuckDB keeps the write in
    # `<file>.wal` while the session is open, and a log beside a replaced file stops every open.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    analyst = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "c.execute('CREATE TABLE main.my_notes AS SELECT 42 AS x'); print('wrote', flush=True); time.sleep(60)",
         str(database.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert analyst.stdout.readline().strip() == "wrote"
        wal = database.path.with_name(database.path.name + ".wal")
        assert wal.exists()
        # What a publish used to leave: the new file (a run changed it) beside the old one's log.
        with database.writer_lease("a run"), database.connect() as conn:
            conn.execute("CREATE TABLE main.written_by_a_run AS SELECT 1 AS x")
        shutil.copyfile(database.working_path, tmp_path / "new.duckdb")
        os.replace(tmp_path / "new.duckdb", database.path)
        with pytest.raises(LeftoverWalError) as refused, database.read_published(timeout_seconds=1):
            pass
        assert wal.name in str(refused.value) and "read-only" in refused.value.fix and str(wal) in refused.value.fix
        # A publish removes the log that belongs to the file it replaces.
        with database.writer_lease("a provisioning run"):
            database.publish()
        with database.read_published(timeout_seconds=1) as conn:
            assert conn.execute("SELECT count(*) FROM main.sync_runs").fetchone() == (0,)
        analyst.kill()  # a notebook that crashed: nothing is left to stop the next readers
        analyst.wait()
        with database.read_published(timeout_seconds=1) as conn:
            assert not conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'my_notes'").fetchone()[0]
    finally:
        analyst.kill()
        analyst.wait()


def test_a_working_file_put_back_beside_another_files_log_says_to_move_the_log_aside(tmp_path):
    # A writer died leaving the working file's log; the operator restored an older working file by
    # hand. No run removes that log (only a publish removes the analysts' copy's): the fix says so.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
    write_and_die(database.working_path, "in_the_log")
    wal = database.working_path.with_name(database.working_path.name + ".wal")
    restored = tmp_path / "restored.duckdb"
    duckdb.connect(str(restored)).execute("CREATE TABLE main.restored AS SELECT 1 AS x").close()
    os.replace(restored, database.working_path)
    with pytest.raises(LeftoverWalError) as refused, database.writer_lease("the next run"), database.connect():
        pass
    assert str(wal) in refused.value.fix and "no run removes it" in refused.value.fix
    assert "read-only" not in refused.value.fix and "next sync or provisioning run removes" not in refused.value.fix
    os.replace(wal, tmp_path / "aside.wal")  # the fix, followed
    with database.writer_lease("the next run"), database.connect() as conn:
        assert conn.execute("SELECT x FROM main.restored").fetchall() == [(1,)]


def copy_cut_short_by_a_full_disk(source, destination):
    """``shutil.copyfile`` on a disk that fills up: part of the copy written, then ENOSPC."""
    Path(destination).write_bytes(b"the first megabytes")
    raise OSError(errno.ENOSPC, "No space left on device", str(destination))


def test_a_scratch_copy_cut_short_by_a_full_disk_is_removed(tmp_path, monkeypatch):
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()

    monkeypatch.setattr(shutil, "copyfile", copy_cut_short_by_a_full_disk)
    with database.writer_lease("a sync"), pytest.raises(OSError, match="No space left"):
        database.begin_scratch()
    assert not database.scratch_path.exists()
    assert database.working_path.exists()


def test_a_working_file_copy_cut_short_by_a_full_disk_or_a_kill_never_passes_for_the_working_file(tmp_path, monkeypatch):
    # The working file was moved aside (damaged), so ensure_working starts again from the analysts'
    # copy; a copy cut short would be taken for a damaged working file by every run after it.
    database = published_then_working_file_removed(tmp_path)
    real_copyfile = shutil.copyfile

    monkeypatch.setattr(shutil, "copyfile", copy_cut_short_by_a_full_disk)
    with database.writer_lease("a sync"), pytest.raises(OSError, match="No space left"):
        database.ensure_working()
    assert not database.working_path.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if "copy" in p.name) == []

    # Killed mid-copy (kill -9: nothing cleans up): the part copied never has the working file's
    # name, and the next run removes it and copies again.
    def killed(source, destination):
        Path(destination).write_bytes(b"the first megabytes")
        assert not database.working_path.exists()
        raise SystemExit("killed")

    monkeypatch.setattr(shutil, "copyfile", killed)
    with database.writer_lease("a sync"), pytest.raises(SystemExit):
        database.ensure_working()
    left = tmp_path / f".{database.working_path.name}.copy-4242.tmp"
    left.write_bytes(b"the first megabytes")  # as a killed process's copy stays
    monkeypatch.setattr(shutil, "copyfile", real_copyfile)
    with database.writer_lease("the next sync"):
        database.ensure_working()
        with database.connect() as conn:
            assert conn.execute("SELECT x FROM main.kept").fetchall() == [(42,)]
    assert not left.exists()


def test_a_publish_removes_the_copy_a_publish_killed_while_staging_left(tmp_path):
    # A publish killed (kill -9, an OOM kill) between copying the working file and renaming the
    # copy leaves `.<file>.publish-<its pid>.tmp`, as large as the database.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    left = tmp_path / f".{database.path.name}.publish-4242.tmp"
    shutil.copyfile(database.path, left)
    with database.writer_lease("the next run"):
        database.publish()
    assert not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_publish_keeps_the_permissions_the_operator_gave_the_published_files(tmp_path):
    # An operator made the analysts' files readable by their group only: a publish writes new
    # files (with the umask's mode) and renames them over the old ones, which must not make
    # them world-readable again.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    parquet_files = sorted(database.parquet_path.iterdir())
    assert parquet_files
    os.chmod(database.path, 0o640)
    os.chmod(database.parquet_path, 0o750)
    for path in parquet_files:
        os.chmod(path, 0o640)
    with database.writer_lease("the next run"):
        database.publish()
    assert database.path.stat().st_mode & 0o777 == 0o640
    assert database.parquet_path.stat().st_mode & 0o777 == 0o750
    assert {path.name: path.stat().st_mode & 0o777 for path in database.parquet_path.iterdir()} == {
        path.name: 0o640 for path in parquet_files}
    # A directory stays its owner's to empty (the next publish removes the copy it replaces),
    # whatever mode it was given; and the group given to the files is kept, where this user may
    # set it (root may set any; others a group of their own).
    os.chmod(database.parquet_path, 0o550)
    group = next((g for g in os.getgroups() if g != os.getegid()), 1 if os.geteuid() == 0 else None)
    if group is not None:
        os.chown(database.path, -1, group)
    with database.writer_lease("a third run"):
        database.publish()
    assert database.parquet_path.stat().st_mode & 0o777 == 0o750
    if group is not None:
        assert database.path.stat().st_gid == group
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_parquet_file_new_to_a_publish_is_no_more_readable_than_the_files_the_operator_restricted(
    tmp_path
):
    # An upgrade adds a table: its Parquet file has no published file to take the mode from, and
    # the umask's mode (0644 here) would make it world-readable beside the operator's files.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    for path in database.parquet_path.iterdir():
        os.chmod(path, 0o640)
    sorted(database.parquet_path.iterdir())[0].chmod(0o600)  # one stricter still: 0640 & 0600
    given = {path.name: path.stat().st_mode & 0o777 for path in database.parquet_path.iterdir()}
    with database.connect() as conn:
        conn.execute("CREATE TABLE main.added_by_an_upgrade AS SELECT 1 AS x")
    old_umask = os.umask(0o022)
    try:
        with database.writer_lease("the next run"):
            database.publish()
    finally:
        os.umask(old_umask)
    assert (database.parquet_path / "added_by_an_upgrade.parquet").stat().st_mode & 0o777 == 0o600
    # The files published before keep each the mode it was given, not the strictest of them.
    assert {path.name: path.stat().st_mode & 0o777 for path in database.parquet_path.iterdir()
            if path.name in given} == given


def test_a_parquet_file_new_to_a_publish_takes_the_group_the_operator_gave_the_others(tmp_path):
    # The operator gave the Parquet files one group (readers of that group), not the directory's:
    # a table an upgrade adds is published in that group too, where this user may set it.
    group = next((g for g in os.getgroups() if g != os.getegid()), 1 if os.geteuid() == 0 else None)
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    if group is not None:
        for path in database.parquet_path.iterdir():
            os.chown(path, -1, group)
    assert database.parquet_path.stat().st_gid == os.getegid()
    with database.connect() as conn:
        conn.execute("CREATE TABLE main.added_by_an_upgrade AS SELECT 1 AS x")
    with database.writer_lease("the next run"):
        database.publish()
    expected = os.getegid() if group is None else group
    assert {path.stat().st_gid for path in database.parquet_path.iterdir()} == {expected}


def test_an_analysts_copy_linked_to_a_file_elsewhere_stays_linked_and_that_file_is_published(tmp_path):
    # The analysts' file is a symlink to a share the BI tools read: a publish replaces the share's
    # file, never the link with a local file.
    share = tmp_path / "share"
    share.mkdir()
    database = AccessDatabase(tmp_path / "data" / "access.duckdb")
    database.path.parent.mkdir()
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    os.replace(database.path, share / "access.duckdb")
    database.path.symlink_to(share / "access.duckdb")
    with database.connect() as conn:
        conn.execute("CREATE TABLE main.published_now AS SELECT 1 AS x")
    with database.writer_lease("the next run"):
        database.publish()
    assert database.path.is_symlink() and database.path.resolve() == (share / "access.duckdb").resolve()
    assert query(share / "access.duckdb", "SELECT x FROM main.published_now") == [(1,)]
    assert not [p for p in (*database.path.parent.iterdir(), *share.iterdir()) if p.name.startswith(".")]


def test_an_analysts_copy_linked_to_a_share_before_the_first_sync_is_published_there(tmp_path):
    # The operator links the analysts' path to the share's file before anything was published:
    # the link points to no file yet. The first publish must create the share's file, never
    # replace the link with a local file (the share would never change, and nothing would say so).
    share = tmp_path / "share"
    share.mkdir()
    database = AccessDatabase(tmp_path / "data" / "access.duckdb")
    database.path.parent.mkdir()
    database.path.symlink_to(share / "access.duckdb")
    with database.writer_lease("the first run"):
        database.ensure_working()
        with database.connect() as conn:
            conn.execute("CREATE TABLE main.published_now AS SELECT 1 AS x")
        database.publish()
    assert database.path.is_symlink() and database.path.resolve() == (share / "access.duckdb").resolve()
    assert query(share / "access.duckdb", "SELECT x FROM main.published_now") == [(1,)]
    assert not [p for p in (*database.path.parent.iterdir(), *share.iterdir()) if p.name.startswith(".")]


def test_a_parquet_copy_linked_to_another_directory_stays_linked_and_that_directory_is_published(tmp_path):
    # The operator put the Parquet copy on a share: access_parquet is a symlink to it. Each
    # publish must replace the share's files, not the link with a local directory (the share
    # would silently stop changing).
    share = tmp_path / "share" / "parquet"
    share.mkdir(parents=True)
    database = AccessDatabase(tmp_path / "data" / "access.duckdb")
    database.path.parent.mkdir()
    link = database.path.with_name("access_parquet")
    link.symlink_to(share, target_is_directory=True)
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    assert link.is_symlink() and link.resolve() == share.resolve()
    first = sorted(p.name for p in share.iterdir())
    assert "sync_runs.parquet" in first
    (share / "sync_runs.parquet").write_bytes(b"stale")
    with database.writer_lease("the next run"):
        database.publish()
    assert link.is_symlink() and (share / "sync_runs.parquet").read_bytes() != b"stale"
    assert sorted(p.name for p in share.iterdir()) == first
    assert not [p for p in (*database.path.parent.iterdir(), *share.parent.iterdir()) if p.name.startswith(".")]


def test_a_parquet_copy_linked_to_a_share_before_the_first_sync_is_published_there(tmp_path):
    # Linked before anything was published: the link points to no directory yet. The first
    # publish must create it on the share, not replace the link with a local directory.
    share = tmp_path / "share"
    share.mkdir()
    database = AccessDatabase(tmp_path / "data" / "access.duckdb")
    database.path.parent.mkdir()
    link = database.path.with_name("access_parquet")
    link.symlink_to(share / "parquet", target_is_directory=True)
    with database.writer_lease("the first run"):
        database.ensure_working()
        database.publish()
    assert link.is_symlink() and "sync_runs.parquet" in [p.name for p in (share / "parquet").iterdir()]
    assert not [p for p in (*database.path.parent.iterdir(), *share.iterdir()) if p.name.startswith(".")]


def test_leftovers_are_found_by_the_exact_name_whatever_characters_it_holds(tmp_path):
    # "[eu]" in a file name is no character class: the leftovers of this database are removed,
    # and those of "accesse.duckdb" beside it (which "access[eu]" would match) are not touched.
    database = AccessDatabase(tmp_path / "access[eu].duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    ours = [tmp_path / ".access[eu].duckdb.publish-4242.tmp", tmp_path / ".access[eu]_parquet.4242-deadbeef",
            tmp_path / "access[eu].sync-4242.duckdb"]
    theirs = [tmp_path / ".accesse.duckdb.publish-4242.tmp", tmp_path / ".accesse_parquet.4242-deadbeef",
              tmp_path / "accesse.sync-4242.duckdb"]
    for path in ours + theirs:
        path.mkdir() if path.name.endswith("deadbeef") else path.write_bytes(b"left")
    with database.writer_lease("the next run"):
        database.publish()
        database.discard_scratch(database.begin_scratch())
    assert [path.name for path in ours if path.exists()] == []
    assert [path.name for path in theirs if path.exists()] == [path.name for path in theirs]


def test_the_lease_is_reentrant_in_its_thread_and_keeps_other_threads_out_until_released(tmp_path):
    import threading

    database = AccessDatabase(tmp_path / "access.duckdb")
    outcome: list[str] = []

    def other_thread(timeout: float) -> None:
        try:
            with database.writer_lease("another thread", timeout_seconds=timeout):
                outcome.append("took it")
        except DatabaseBusyError:
            outcome.append("busy")

    with database.writer_lease("a sync", timeout_seconds=0.5):
        with database.writer_lease("the sync's publish", timeout_seconds=0.5):
            pass
        thread = threading.Thread(target=other_thread, args=(0.2,))
        thread.start()
        thread.join()
        assert outcome == ["busy"]  # still held: the inner lease's end did not release it
    thread = threading.Thread(target=other_thread, args=(2.0,))
    thread.start()
    thread.join()
    assert outcome == ["busy", "took it"]


@pytest.mark.parametrize("timeout", [0, -1])
def test_a_writer_told_to_wait_no_time_gives_up_at_once_while_another_thread_holds_the_lease(tmp_path, timeout):
    # A lease timeout of zero or less (resources.*.config.lease_timeout_seconds is any number) is
    # "do not wait": a thread lock read -1 as "wait forever", and refused other negative values.
    database = AccessDatabase(tmp_path / "access.duckdb")
    outcome: list[object] = []

    def other_thread() -> None:
        try:
            with database.writer_lease("another thread", timeout_seconds=timeout):
                outcome.append("took it")
        except (DatabaseBusyError, ValueError) as error:
            outcome.append(type(error))

    with database.writer_lease("a sync"):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(timeout=5)
        assert outcome == [DatabaseBusyError]


def test_a_thread_kept_waiting_takes_the_lease_once_its_holder_lets_go(tmp_path):
    # A sync and a provisioning run in one process take turns: the one that comes second waits.
    database = AccessDatabase(tmp_path / "access.duckdb")
    taken, outcome = threading.Event(), []

    def second() -> None:
        taken.wait()
        try:
            with database.writer_lease("a provisioning run", timeout_seconds=10):
                outcome.append(time.monotonic())
        except DatabaseBusyError as error:
            outcome.append(error)

    thread = threading.Thread(target=second)
    thread.start()
    with database.writer_lease("a sync", timeout_seconds=1):
        taken.set()
        time.sleep(0.3)
        released = time.monotonic()
    thread.join()
    assert len(outcome) == 1 and isinstance(outcome[0], float) and outcome[0] >= released, outcome


def test_a_writer_kept_waiting_by_another_process_takes_the_lease_once_it_lets_go(tmp_path, caplog):
    database = AccessDatabase(tmp_path / "access.duckdb")
    database.path.parent.mkdir(parents=True, exist_ok=True)
    held = os.open(database.lock_path, os.O_RDWR | os.O_CREAT, 0o644)  # another process's lease
    fcntl.flock(held, fcntl.LOCK_EX)
    # It lets go once the writer says it waits (not after a fixed 0.3 s: a pause of the writer's
    # process that long, on a busy machine, found the lease free and nothing to wait for).
    closed = []
    try:
        with caplog.at_level(logging.WARNING), on_message("waiting to a sync", lambda: closed.append(os.close(held))):
            with database.writer_lease("a sync", timeout_seconds=30):
                assert database.is_busy()
    finally:
        if not closed:
            os.close(held)
    # It waited, and said so.
    assert closed and any(r.getMessage().startswith("waiting to a sync") for r in caplog.records)


def descriptors_open_on(path: Path) -> int:
    """How many file descriptors of this process are open on ``path`` (Linux: ``/proc/self/fd``)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            count += os.readlink(f"/proc/self/fd/{name}") == str(path)
    return count


def test_a_writer_that_gave_up_waiting_can_take_the_lease_once_it_is_free(tmp_path):
    database = AccessDatabase(tmp_path / "access.duckdb")
    database.path.parent.mkdir(parents=True, exist_ok=True)
    held = os.open(database.lock_path, os.O_RDWR | os.O_CREAT, 0o644)  # another process's lease
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        for _ in range(3):
            with pytest.raises(DatabaseBusyError), database.writer_lease("a sync", timeout_seconds=0.1):
                pass
        # A sensor or a daemon gives up on a held lease again and again: each try that kept its
        # descriptor of the lock file open would run the process out of descriptors over the days.
        assert descriptors_open_on(database.lock_path) == 1  # ``held`` only
    finally:
        os.close(held)
    with database.writer_lease("the next sync", timeout_seconds=2):
        assert database.is_busy()
    assert not database.is_busy()
    # Released, the lease is this thread's no more: taking it again takes the lock again.
    with database.writer_lease("the sync after", timeout_seconds=2):
        assert database.is_busy()


def test_a_writer_killed_holding_the_lease_is_named_by_the_next_one_which_takes_it_at_once(tmp_path, caplog):
    # A real process takes the lease and is SIGKILLed holding it (as `kill -9` of a sync or of
    # the daemon's run would): the kernel frees the flock, so the next writer must take it at once,
    # and say which writer died holding it, or a run killed mid-way goes unnoticed. A lease let go
    # normally must say nothing to the next one.
    database = AccessDatabase(tmp_path / "access.duckdb")
    killed = subprocess.run(
        [sys.executable, "-c", "import os, signal, sys; from langsmith_access.store.database import AccessDatabase\n"
         "with AccessDatabase(sys.argv[1]).writer_lease('run the sync of a test'):\n"
         "    print(os.getpid(), flush=True); os.kill(os.getpid(), signal.SIGKILL)", str(database.path)],
        capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with caplog.at_level(logging.WARNING, logger="langsmith_access.store.database"):
        started = time.monotonic()
        with database.writer_lease("queue a provisioning request", timeout_seconds=30):
            assert time.monotonic() - started < 5  # not waited for: the kernel let go of its flock
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 1 and said[0].startswith(
            f"run the sync of a test (pid {killed.stdout.strip()}, since "), said
        assert "ended without letting go of the writer lease of access.working.duckdb (killed or crashed)" in said[0]
        caplog.clear()
        with database.writer_lease("the next writer", timeout_seconds=30):
            pass
        assert caplog.records == []  # the request's lease was let go normally
        # An older release left its record at every release: the first writer after an upgrade
        # must not report that writer as killed.
        database.lock_path.write_text('{"pid": 42, "purpose": "run a sync", "since": "2026-01-01T00:00:00+00:00"}')
        with database.writer_lease("the first writer of this release", timeout_seconds=30):
            pass
        assert caplog.records == []


def published_once(tmp_path) -> AccessDatabase:
    """A database published once: its analysts' copy (and its Parquet copy) holds main.kept (42)."""
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        with database.connect() as conn:
            conn.execute("CREATE TABLE main.kept AS SELECT 42 AS x")
        database.publish()
    return database


def published_then_working_file_removed(tmp_path) -> AccessDatabase:
    """A database whose analysts' copy holds main.kept (42) and whose working file is gone."""
    database = published_once(tmp_path)
    database.working_path.unlink()
    return database


def test_a_removed_working_file_starts_again_from_the_analysts_copy(tmp_path):
    database = published_then_working_file_removed(tmp_path)
    with database.writer_lease("the next run"):
        database.ensure_working()
        with database.connect() as conn:
            assert conn.execute("SELECT x FROM main.kept").fetchall() == [(42,)]


def test_a_removed_working_files_log_is_set_aside_not_replayed_onto_the_analysts_copy(tmp_path, caplog):
    # A writer died (kill -9) leaving its writes in the working file's log; the operator moved the
    # damaged working file aside, as the fix says, but not its log. DuckDB replays a log it finds
    # beside a file: onto the copy of the analysts' database it would apply another file's writes.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    write_and_die(database.working_path, "of_the_lost_file")
    log = database.working_path.with_name(database.working_path.name + ".wal")
    assert log.stat().st_size > 0
    database.working_path.rename(tmp_path / "damaged.duckdb")
    with caplog.at_level(logging.WARNING), database.writer_lease("the next run"):
        database.ensure_working()
        with database.connect() as conn:
            assert conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'of_the_lost_file'"
                                ).fetchone() == (0,)
    [aside] = tmp_path.glob(f"{log.name}.orphaned-*")
    assert aside.stat().st_size > 0 and not log.exists()  # kept, not lost
    assert f"set aside as {aside.name}" in caplog.text


def test_a_working_file_holding_another_orgs_data_is_refused_naming_the_database_configured(tmp_path):
    # What the run would write is checked: here a run committed the working file and died before
    # it published, so there is no analysts' copy to tell.
    ours, theirs = "0a1b2c3d-0000-4000-8000-00000000cafe", "0a1b2c3d-0000-4000-8000-00000000beef"
    database = AccessDatabase(tmp_path / "access.duckdb", organization_id=ours)
    with database.writer_lease("a sync"):
        database.ensure_working()
        with database.connect() as conn:
            conn.execute("INSERT INTO main.sync_runs (sync_id, started_at, finished_at, status, organization_id) "
                         "VALUES ('s1', now(), now(), 'succeeded', ?)", [ours])
    assert not database.path.exists()
    before = database.working_path.read_bytes()
    other = AccessDatabase(database.path, organization_id=theirs)
    with other.writer_lease("a sync for another org"), pytest.raises(OtherOrganizationError) as refused:
        other.ensure_working()
    assert f"{database.path} holds organization {ours}'s data" in str(refused.value)
    assert database.working_path.read_bytes() == before
    with database.writer_lease("the same org, spelled otherwise"):
        AccessDatabase(database.path, organization_id=ours.upper()).ensure_working()


def test_an_analysts_copy_that_is_no_database_leaves_no_working_file_behind(tmp_path):
    database = AccessDatabase(tmp_path / "access.duckdb")
    database.path.write_bytes(b"not a database" * 300)
    with database.writer_lease("a sync"), pytest.raises(DatabaseUnusableError) as refused:
        database.ensure_working()
    assert not database.working_path.exists()
    assert database.path.read_bytes() == b"not a database" * 300
    # The error names the file to move aside (the analysts' copy), not the copy made of it, now gone.
    assert type(refused.value) is DatabaseUnusableError
    assert f"could not open {database.path}: " in str(refused.value)
    assert str(database.working_path) not in str(refused.value)


def test_a_scratch_copy_holds_what_the_working_files_log_still_held(tmp_path):
    # A writer that died (kill -9) left its committed writes in `<working file>.wal`: the scratch
    # copy must hold them, or the sync would publish without them.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
    write_and_die(database.working_path, "in_the_log")
    assert database.working_path.with_name(database.working_path.name + ".wal").stat().st_size > 0
    with database.writer_lease("a sync"):
        scratch = database.begin_scratch()
        try:
            with duckdb.connect(str(scratch), read_only=True) as conn:
                assert conn.execute("SELECT x FROM main.in_the_log").fetchall() == [(7,)]
        finally:
            database.discard_scratch(scratch)


def test_the_holder_named_is_the_latest_one_not_a_longer_earlier_ones_leftovers(tmp_path):
    # Each holder writes its name over the last one's: a shorter record must not leave the end
    # of a longer one behind it, or the lock file is no JSON and the holder goes unnamed.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("queue a provisioning request for someone with a very long purpose"):
        pass
    with lease_held_elsewhere(database, "sync"), pytest.raises(DatabaseBusyError) as busy:
        with database.writer_lease("queue a request", timeout_seconds=0.1):
            pass
    assert f"could not queue a request: sync (pid {os.getpid()}, since " in str(busy.value)


def test_a_key_pasted_into_a_writers_purpose_is_never_written_to_the_lock_file_nor_told_to_other_writers(tmp_path):
    # The purpose names what a writer does, with a request id someone typed: a key pasted there
    # must reach neither the lock file (on disk, readable by every writer) nor their messages.
    key = "lsv2_sk_" + "0123456789abcdef" * 2 + "_0123456789"
    database = AccessDatabase(tmp_path / "access.duckdb")
    with lease_held_elsewhere(database, f"record a decision on request {key}"):
        assert key not in database.lock_path.read_text()
        assert "record a decision on request lsv2_***" in database.lock_path.read_text()
        with pytest.raises(DatabaseBusyError) as busy, database.writer_lease(f"approve {key}", timeout_seconds=0.1):
            pass
    assert key not in str(busy.value) and "0123456789abcdef" not in str(busy.value)
    assert str(busy.value).startswith("could not approve lsv2_***: record a decision on request lsv2_*** (pid ")


def test_a_lease_whose_holder_record_could_not_be_written_is_let_go(tmp_path, monkeypatch):
    # The flock is taken, then writing who holds it fails (a full disk, a quota): the lease must be
    # let go, or this process (a code server, the daemon) keeps every later writer out until it ends.
    database = AccessDatabase(tmp_path / "access.duckdb")
    real_pwrite = os.pwrite

    def disk_full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", disk_full)
    with pytest.raises(OSError, match="No space left"), database.writer_lease("a sync", timeout_seconds=0.2):
        pass
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert not database.is_busy()
    with database.writer_lease("the next sync", timeout_seconds=0.2):
        assert database.is_busy()


def test_a_lock_file_that_is_no_holder_record_says_another_writer(tmp_path):
    database = AccessDatabase(tmp_path / "access.duckdb")
    database.path.parent.mkdir(parents=True, exist_ok=True)
    held = os.open(database.lock_path, os.O_RDWR | os.O_CREAT, 0o644)  # an older writer's lease, cut short
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        os.pwrite(held, b'{"pid": 42', 0)
        with pytest.raises(DatabaseBusyError) as busy, database.writer_lease("run a sync", timeout_seconds=0.1):
            pass
    finally:
        os.close(held)
    assert str(busy.value).startswith("could not run a sync: another writer is writing access.working.duckdb")


def test_an_analysts_copy_held_for_writing_is_named_whole_with_the_fix_for_an_analysts_session(tmp_path):
    # No run opens the analysts' copy to write, so "another sync or provisioning run holds the
    # database" cannot be why; and with one folder per org, the file's name alone (every org's is
    # langsmith_access.duckdb) did not say whose copy was held.
    database = AccessDatabase(tmp_path / "acme" / "langsmith_access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    with another_process_writing(database, database.path):
        with pytest.raises(DatabaseBusyError) as busy, database.read_published(timeout_seconds=0.2):
            pass
    assert str(busy.value).startswith(f"could not open {database.path} read-only: ")
    assert busy.value.fix == ANALYSTS_COPY_HELD_FIX and "read_only=True" in busy.value.fix
    assert DatabaseBusyError.fix != ANALYSTS_COPY_HELD_FIX  # the class's, for the working file, is as it was


def test_a_damaged_working_file_is_refused_and_left_where_it_is(tmp_path):
    # Only a copy ensure_working made itself is removed: the working file holds the queue and the
    # history, and the fix tells the operator to move it aside, not that it was deleted.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    database.working_path.write_bytes(b"not a database" * 300)
    with database.writer_lease("a sync"), pytest.raises(DatabaseUnusableError):
        database.ensure_working()
    assert database.working_path.read_bytes() == b"not a database" * 300


@contextlib.contextmanager
def another_process_writing(database: AccessDatabase, path: Path | None = None) -> Iterator[subprocess.Popen]:
    """Another process holding ``database``'s working file (or ``path``, another of its files)
    open for writing (a program an operator left open: DuckDB refuses every other process
    meanwhile) until a line reaches its stdin; stopped at the end whatever happened."""
    with database.writer_lease("test set-up"):
        database.ensure_working()
    writer = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('open', flush=True); "
         "sys.stdin.readline(); c.close()", str(path or database.working_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "open"
        yield writer
    finally:
        writer.kill()
        writer.wait()


def test_a_file_another_process_writes_is_waited_for_then_opened(tmp_path, caplog):
    # Another process writes the file until the writer here says it is waiting for it: a writer
    # waits for it rather than failing at once. (It used to close after 3 s of its own: a pause of
    # this process that long, on a busy machine, left nothing to wait for.)
    database = AccessDatabase(tmp_path / "access.duckdb")
    with another_process_writing(database) as writer:
        def let_go() -> None:
            assert writer.stdin is not None
            writer.stdin.write("close\n")
            writer.stdin.flush()

        with pytest.raises(DatabaseBusyError, match=f"could not open {tmp_path}/access.working.duckdb read-only: "):
            with database.connect(read_only=True, timeout_seconds=0.2):
                pass
        with caplog.at_level(logging.WARNING, logger="langsmith_access.store.database"):
            # A sensor's look (2 s) gives up saying why itself: no warning of its own, 600 a tick
            # where every org's copy is held.
            with pytest.raises(DatabaseBusyError), database.connect(read_only=True, timeout_seconds=2.0):
                pass
            assert [r.getMessage() for r in caplog.records if r.name == "langsmith_access.store.database"] == []
            with on_message("waiting for ", let_go), database.connect(timeout_seconds=30) as conn:
                assert conn.execute("SELECT count(*) FROM main.provisioning_requests").fetchone() == (0,)
    # A wait of seconds (or minutes) says so, once: it must not look like a hang.
    [waiting] = [r.getMessage() for r in caplog.records if r.name == "langsmith_access.store.database"]
    assert waiting.startswith("waiting for access.working.duckdb: ") and waiting.endswith("(up to 30 s)")


def test_a_file_held_for_a_moment_is_opened_without_a_word(tmp_path, caplog, monkeypatch):
    # Only a wait that lasts (~0.6 s of retries) says so: a file another process closes after a
    # retry or two is opened quietly, or every run's log fills with waits of milliseconds.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with another_process_writing(database) as writer:
        class LetGoAtTheSecondRetry(WaitingClock):
            retries = 0

            def sleep(self, seconds: float) -> None:
                super().sleep(seconds)
                self.retries += 1
                if self.retries == 2:  # 0.06 s of retries: the writer closes the file and exits
                    writer.communicate("close\n", timeout=30)

        monkeypatch.setattr(database_module, "time", LetGoAtTheSecondRetry())
        with caplog.at_level(logging.WARNING, logger="langsmith_access.store.database"):
            with database.connect(timeout_seconds=30) as conn:
                assert conn.execute("SELECT count(*) FROM main.provisioning_requests").fetchone() == (0,)
    assert [r.getMessage() for r in caplog.records if r.name == "langsmith_access.store.database"] == []


def test_a_short_look_at_a_held_file_gives_up_without_a_warning_however_long_it_retried(tmp_path, caplog, monkeypatch):
    # A sensor's 2-s look at each org's copy says why itself when it gives up: past ~0.6 s of
    # retries it must still log nothing of its own (600 held copies were 600 warnings a tick).
    # The module's clock moves by its sleeps only, so the look always retries past that point.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with another_process_writing(database):
        clock = WaitingClock()
        monkeypatch.setattr(database_module, "time", clock)
        with caplog.at_level(logging.WARNING, logger="langsmith_access.store.database"):
            with pytest.raises(DatabaseBusyError), database.connect(read_only=True, timeout_seconds=2.0):
                pass
        assert clock.now - 1000.0 >= 2.0  # it waited the whole look, well past ~0.6 s of retries
    assert [r.getMessage() for r in caplog.records if r.name == "langsmith_access.store.database"] == []


def test_reading_a_file_that_does_not_exist_yet_is_refused_and_creates_nothing(tmp_path):
    database = AccessDatabase(tmp_path / "data" / "access.duckdb")
    with pytest.raises(DatabaseNotReadyError, match="run `langsmith-access sync` first"), database.read_published():
        pass
    assert not database.path.exists()


def test_a_publish_that_fails_while_staging_leaves_no_copy_and_the_analysts_file_as_it_was(tmp_path, monkeypatch):
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    before = database.path.read_bytes()

    def disk_full(database_file, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "stage_parquet_directory", disk_full)
    with database.writer_lease("a run"):
        with database.connect() as conn:
            conn.execute("CREATE TABLE main.new_rows AS SELECT 1 AS x")
        with pytest.raises(OSError, match="No space left"):
            database.publish()
    assert database.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_publish_whose_renames_fail_leaves_no_copy_beside_the_analysts_file(tmp_path, monkeypatch):
    # Staged whole, then a rename fails (the folder turned read-only, a share that went away):
    # the copy (as large as the database) and the staged Parquet directory must not stay behind
    # in the analysts' folder, hidden, until some later publish happens to remove them.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    before = database.path.read_bytes()

    def read_only(*_args):
        raise OSError(errno.EROFS, "Read-only file system")

    with database.writer_lease("a run"):
        staged = database.stage_publish(database.working_path)
        monkeypatch.setattr(os, "replace", read_only)
        with pytest.raises(OSError, match="Read-only"):
            database.swap_in(staged)
        monkeypatch.undo()
        assert database.path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
        # The analysts' file replaced, then the Parquet copy's swap fails: its staged directory goes too.
        staged = database.stage_publish(database.working_path)
        monkeypatch.setattr(export, "replace_directory", read_only)
        with pytest.raises(OSError, match="Read-only"):
            database.swap_in(staged)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def replace_refused_for(path: Path):
    """``os.replace`` refusing, as a read-only file system would, to replace ``path``."""
    real_replace = os.replace

    def replace(source, target):
        if Path(target) == path:
            raise OSError(errno.EROFS, "Read-only file system")
        real_replace(source, target)

    return replace


def test_a_publish_whose_analysts_file_cannot_be_replaced_leaves_the_parquet_copy_as_it_was(tmp_path, monkeypatch):
    # The analysts' file is replaced first, the Parquet copy after it: where the first rename
    # fails, an analyst reading Parquet must not see tables the database does not have.
    database = published_once(tmp_path)
    before = sorted(p.name for p in database.parquet_path.iterdir())
    assert "kept.parquet" in before
    analysts_file_read_only = replace_refused_for(database.path)
    with database.writer_lease("a run"):
        with database.connect() as conn:
            conn.execute("CREATE TABLE main.added AS SELECT 2 AS x")
        monkeypatch.setattr(os, "replace", analysts_file_read_only)
        with pytest.raises(OSError, match="Read-only"):
            database.publish()
    monkeypatch.undo()
    assert sorted(p.name for p in database.parquet_path.iterdir()) == before
    with database.read_published() as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'added'").fetchone() == (0,)


def test_a_scratch_copy_starts_clean_of_what_dead_runs_left_and_its_discard_leaves_nothing(tmp_path):
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
    ahead = tmp_path / f"{database.dbt_target_path.name}-ahead-4242"  # a parse made ahead by an older version
    ahead.mkdir()
    (ahead / "partial_parse.msgpack").write_bytes(b"parse")
    spill = database.scratch_path.with_name(database.scratch_path.name + ".tmp")  # DuckDB's, of a build that died
    spill.mkdir()
    (spill / "duckdb_temp_storage-0.tmp").write_bytes(b"spilled")
    named_after_its_run = tmp_path / "access.sync-3f2a.duckdb"  # an older version's scratch file
    named_after_its_run.write_bytes(b"copy")
    with database.writer_lease("a sync"):
        scratch = database.begin_scratch()
        assert not ahead.exists() and not spill.exists() and not named_after_its_run.exists()
        scratch.with_name(scratch.name + ".wal").write_bytes(b"log")  # a run that died mid-write
        database.discard_scratch(scratch)
    assert sorted(p.name for p in tmp_path.iterdir() if ".sync-" in p.name) == []


def test_the_database_folder_that_cannot_be_made_or_written_gets_the_folders_fix(tmp_path):
    # Making the folder itself fails naming it (mkdir /srv/access): that is the database's folder,
    # fixed by pointing LANGSMITH_ACCESS_DUCKDB elsewhere, like a file in it; any other path has its own fix.
    database = Path("/srv/access/langsmith_access.duckdb")
    for path in ("/srv/access", "/srv/access/langsmith_access.lock", "/srv/access/langsmith_access_parquet/x"):
        assert unwritable_fix(path, database) == UNWRITABLE_FOLDER_FIX, path
    assert unwritable_fix("/srv/exports", database) == (
        "this user may not write /srv/exports: choose a path in a folder this user may write")
    assert unwritable_fix("/srv/exports", None).startswith("this user may not write /srv/exports")
    assert unwritable_fix(None, database) == UNWRITABLE_FOLDER_FIX
    # An export's staging folder, which the error names: the fix names the folder the user chose.
    assert unwritable_fix("/srv/exports/.langsmith-access-export.host.1.ab12/users.csv", database) == (
        "this user may not write /srv/exports: choose a path in a folder this user may write")
    assert unwritable_fix("/srv/.exports/users.csv", None).startswith("this user may not write /srv/.exports/users.csv")



def test_a_lease_whose_record_cannot_be_written_names_the_lock_file(tmp_path):
    # A full disk refuses the holder's record; an error of a write names no file, so it would
    # say "No space left on device" and nothing else. A file size limit of 0 refuses that write
    # for real here (EFBIG), where no small file system can be mounted.
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from langsmith_access.store.database import AccessDatabase\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    with AccessDatabase(Path(sys.argv[1])).writer_lease('queue a request'):\n"
        "        pass\n"
        "except OSError as error:\n"
        "    print(repr((error.errno, error.filename)))\n"
    )
    database = tmp_path / "langsmith_access.duckdb"
    done = subprocess.run([sys.executable, "-c", script, str(database)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == repr((errno.EFBIG, str(tmp_path / "langsmith_access.lock"))), done
    # Let go at once: the next writer takes the lease without waiting.
    with AccessDatabase(database).writer_lease("the next writer", timeout_seconds=0.5):
        pass


def test_a_full_disk_gets_the_database_folders_fix_or_that_paths(tmp_path):
    database = Path("/srv/access/langsmith_access.duckdb")
    for path in ("/srv/access/langsmith_access.lock", "/srv/access/langsmith_access.dbt/run/x", None):
        fix = full_disk_fix(path, database)
        assert fix.startswith("the file system holding /srv/access is full") and "scratch copy" in fix, (path, fix)
    # An export's hidden staging folder: named by the folder the user chose.
    assert full_disk_fix("/srv/out/.langsmith-access-export.x.1/users.csv", database) == (
        "the file system holding /srv/out is full (or this user's disk quota is used up): free space there, "
        "then run again")
    assert full_disk_fix("/srv/.out/users.csv", database).startswith("the file system holding /srv/.out is full")


def test_a_publish_that_ran_out_of_room_names_the_copy_it_wrote_not_the_working_file_it_read(tmp_path):
    # shutil's copy of the working file onto a full file system raises ENOSPC naming the source
    # first and the copy as filename2 (_fastcopy_sendfile): read as "the working file is broken".
    database = AccessDatabase(tmp_path / "access.duckdb")
    staged = tmp_path / ".access.duckdb.publish.tmp"
    full = OSError(errno.ENOSPC, "No space left on device", str(database.working_path), None, str(staged))
    said = str(PublishFailedError("request r1 was queued (pending)", None, full, database))
    assert f"failed ({staged}: No space left on device)" in said and str(database.working_path) not in said
    unreadable = OSError(errno.EIO, "Input/output error", str(database.working_path), None, str(staged))
    assert f"failed ({database.working_path}: Input/output error)" in str(
        PublishFailedError("request r1 was queued (pending)", None, unreadable, database))


def test_the_lock_file_logs_and_deferred_runs_are_the_databases_own_files(tmp_path):
    # An export or review sheet written over the lock would end every writer's lease; over a
    # DuckDB log, break the file's next open; over the deferred runs, lose a failed run's row.
    database = AccessDatabase(tmp_path / "access.duckdb")
    logs = [p.with_name(p.name + ".wal") for p in (database.path, database.working_path, database.scratch_path)]
    assert all(database.owns(p) for p in (database.path, database.working_path, database.scratch_path,
                                          database.lock_path, database.deferred_runs_path,
                                          database.unfinished_publish_path, *logs))
    assert not database.owns(tmp_path / "access.csv")
    assert not database.owns(tmp_path / "access.duckdb.csv")


def test_a_reader_never_meets_the_log_of_the_copy_a_publish_replaced(tmp_path, monkeypatch):
    # A session that wrote to the analysts' copy and died left its log beside the file. The publish
    # removes it before the rename (a reader may open the new file at once) and again after it
    # (the session may still have written one in between).
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    wal = database.path.with_name(database.path.name + ".wal")
    write_and_die(database.path, "my_notes", value=1)
    stale = wal.read_bytes()
    assert stale
    real_replace, read_at_once = os.replace, []

    def reader_right_after_the_rename(source, destination):
        real_replace(source, destination)
        if Path(destination) == database.path:
            with database.read_published(timeout_seconds=1) as conn:
                read_at_once.append(conn.execute("SELECT count(*) FROM main.written_by_a_run").fetchone())

    def log_written_just_before_the_rename(source, destination):
        if Path(destination) == database.path:
            wal.write_bytes(stale)
        real_replace(source, destination)

    for n, replace in enumerate((reader_right_after_the_rename, log_written_just_before_the_rename)):
        with database.writer_lease("a run"):
            with database.connect() as conn:
                conn.execute("CREATE OR REPLACE TABLE main.written_by_a_run AS SELECT range AS x FROM range(?)", [n])
            monkeypatch.setattr(os, "replace", replace)
            try:
                database.publish()
            finally:
                monkeypatch.setattr(os, "replace", real_replace)
        with database.read_published(timeout_seconds=1) as conn:
            assert conn.execute("SELECT count(*) FROM main.written_by_a_run").fetchone() == (n,)
    assert read_at_once == [(0,)] and not wal.exists()


def test_a_scratch_file_whose_log_was_not_folded_in_never_becomes_the_working_file(tmp_path, monkeypatch):
    # Its log is removed when it becomes the working file: with writes still in it, they would be lost.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
    working = database.working_path.read_bytes()
    with database.writer_lease("a sync"):
        scratch = database.begin_scratch()
        write_and_die(scratch, "in_the_log")
        monkeypatch.setattr(AccessDatabase, "_checkpoint", lambda self, path: None)  # a CHECKPOINT that left it
        with pytest.raises(RuntimeError, match="still has a write-ahead log after CHECKPOINT"):
            database.commit_scratch(scratch)
    assert database.working_path.read_bytes() == working
    assert scratch.with_name(scratch.name + ".wal").stat().st_size > 0


def test_a_publish_copies_what_the_files_log_still_held(tmp_path):
    # A run that died left its last writes in the log beside the file it wrote: the analysts'
    # copy and its Parquet are written from the file with those writes folded in, not without them.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
    write_and_die(database.working_path, "in_the_log")
    assert database.working_path.with_name(database.working_path.name + ".wal").stat().st_size > 0
    with database.writer_lease("a provisioning run"):
        database.publish()
    with database.read_published(timeout_seconds=1) as conn:
        assert conn.execute("SELECT x FROM main.in_the_log").fetchall() == [(7,)]
    assert (database.parquet_path / "in_the_log.parquet").exists()


def test_a_scratch_file_with_writes_still_in_its_log_becomes_the_working_file_with_them(tmp_path):
    # A provisioning run commits its scratch copy without publishing it first: the commit folds
    # the log in itself, rather than refusing the file or dropping what the log held.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
    with database.writer_lease("a provisioning run"):
        scratch = database.begin_scratch()
        write_and_die(scratch, "in_the_log")
        database.commit_scratch(scratch)
    assert not scratch.exists()
    with database.connect() as conn:
        assert conn.execute("SELECT x FROM main.in_the_log").fetchall() == [(7,)]


def test_the_renames_that_keep_state_are_on_disk_before_they_return(tmp_path, monkeypatch):
    # A power cut is not simulated (RELIABILITY.md); what makes a rename survive one is: the new
    # file's data synced before it takes the name, the directory synced after. Checked here for
    # each rename that keeps the org's state: the working file copied from the analysts' copy,
    # a run's scratch file committed, a file left aside for the next lease holder, a publish.
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("sync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source, target):
        events.append(("rename", f"{source} -> {target}"))
        real_replace(source, target)

    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        database.publish()
    database.working_path.unlink()  # the next run starts again from the analysts' copy

    def renames_on_disk(target: Path) -> None:
        [(at, (_, what))] = [(i, e) for i, e in enumerate(events) if e[0] == "rename" and e[1].endswith(f"-> {target}")]
        source = what.split(" -> ")[0]
        assert ("sync", source) in events[:at], f"{source} was not synced before it was renamed: {events}"
        assert ("sync", str(target.parent)) in events[at + 1:], f"{target.parent} was not synced after: {events}"
        events.clear()

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with database.writer_lease("a sync"):
        database.ensure_working()
        renames_on_disk(database.working_path)
        scratch = database.begin_scratch()
        with duckdb.connect(str(scratch)) as conn:
            conn.execute("CREATE TABLE main.made_by_the_run AS SELECT 1 AS x")
        database.commit_scratch(scratch)
        renames_on_disk(database.working_path)
        database.publish()
        renames_on_disk(database.path)
    left = leave_aside(tmp_path / "aside", "run-1", {"x": 1})
    renames_on_disk(left)


def test_a_writer_in_another_process_keeps_this_one_out_until_it_lets_go(tmp_path):
    # One writer at a time across processes: a sync in one process and a provisioning run in
    # another never both hold the lease (DuckDB allows one writing process, and the working file
    # is replaced by whoever commits: a second holder would lose the first one's writes).
    database = AccessDatabase(tmp_path / "access.duckdb")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from langsmith_access.store.database import AccessDatabase\n"
         "with AccessDatabase(sys.argv[1]).writer_lease('a provisioning run'):\n"
         "    print('held', flush=True); sys.stdin.read()", str(database.path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})  # this checkout's code
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert database.is_busy()
        with pytest.raises(DatabaseBusyError, match=r"a provisioning run \(pid \d+"):
            with database.writer_lease("a sync", timeout_seconds=0.3):
                pass
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    with database.writer_lease("a sync", timeout_seconds=5):
        assert database.is_busy()


def test_a_publish_never_publishes_what_a_dead_run_left_in_its_scratch_file(tmp_path):
    # A sync killed mid-build leaves its scratch file; a publish without a run of its own (a
    # request queued) publishes the working file, never what that run had written.
    database = AccessDatabase(tmp_path / "access.duckdb")
    with database.writer_lease("test set-up"):
        database.ensure_working()
        with database.connect() as conn:
            conn.execute("CREATE TABLE main.kept AS SELECT 1 AS x")
    with database.writer_lease("a sync that dies"):
        scratch = database.begin_scratch()
        with duckdb.connect(str(scratch)) as conn:
            conn.execute("CREATE TABLE main.half_built AS SELECT 2 AS x")
    assert scratch.exists()
    with database.writer_lease("queue a request"):
        database.publish()
    tables = query(database.path, "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'")
    assert ("kept",) in tables and ("half_built",) not in tables


# A publish killed by SIGKILL (an OOM kill, a `timeout`) right after the analysts' file took its
# new name, before the Parquet copy was swapped in: nothing in the dying process cleans up.
_PUBLISH_KILLED_AFTER_THE_ANALYSTS_FILE = """
import os, signal, sys
from pathlib import Path
from langsmith_access.store.database import AccessDatabase

database = AccessDatabase(Path(sys.argv[1]))
real_replace = os.replace

def replace_then_die(source, target):
    real_replace(source, target)
    if Path(target) == database.published_file:
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace_then_die
with database.writer_lease("a publish killed half-way"):
    database.publish()
"""


def test_a_publish_killed_between_the_analysts_file_and_its_parquet_copy_is_completed_by_the_next_writer(tmp_path):
    # The analysts' file and its Parquet copy change together (publish's promise), but they are two
    # renames: a kill between them left the Parquet copy one publish behind the file until some
    # later run happened to publish (a sync failing meanwhile never does). The next writer, whatever
    # it is there for, publishes again first: both show the working file, nothing staged is left.
    database = published_once(tmp_path)
    with database.writer_lease("a run"), database.connect() as conn:
        conn.execute("INSERT INTO main.kept VALUES (43)")
    killed = subprocess.run([sys.executable, "-c", _PUBLISH_KILLED_AFTER_THE_ANALYSTS_FILE, str(database.path)],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    parquet = database.parquet_path / "kept.parquet"

    def published() -> tuple[list, list]:
        file_rows = query(database.path, "SELECT x FROM main.kept ORDER BY x")
        return file_rows, duckdb.sql(f"SELECT x FROM '{parquet}' ORDER BY x").fetchall()

    assert published() == ([(42,), (43,)], [(42,)])  # what the kill left: the file new, its Parquet not

    with database.writer_lease("the next writer (a sync about to fail, a notification claim)"):
        database.ensure_working()
    assert published() == ([(42,), (43,)], [(42,), (43,)])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    with database.writer_lease("the writer after it"):
        database.ensure_working()
    assert published() == ([(42,), (43,)], [(42,), (43,)])


@pytest.mark.parametrize("command_committed", [False, True])
def test_a_publish_that_could_not_replace_the_analysts_file_leaves_a_publish_due_only_for_a_commands_commits(
        tmp_path, monkeypatch, command_committed):
    # A publish whose first rename fails changed nothing, so it leaves nothing to finish, unless a
    # command committed before it (publish_pending): that stays due, for the next writer (and the
    # queue sensor), or the analysts' copy would lag those commits with nothing saying so.
    database = published_once(tmp_path)
    analysts_file_read_only = replace_refused_for(database.path)
    with database.writer_lease("a command"):
        database.ensure_working()
        if command_committed:
            database.publish_pending()
        with database.connect() as conn:
            conn.execute("INSERT INTO main.kept VALUES (43)")
        monkeypatch.setattr(os, "replace", analysts_file_read_only)
        with pytest.raises(OSError, match="Read-only"):
            database.publish()
    monkeypatch.undo()
    assert database.unfinished_publish_path.exists() == command_committed
    with database.writer_lease("the next writer"):
        database.ensure_working()
    assert query(database.path, "SELECT x FROM main.kept ORDER BY x") == (
        [(42,), (43,)] if command_committed else [(42,)])
    assert not database.unfinished_publish_path.exists()

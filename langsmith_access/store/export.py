"""Files for tools that do not read DuckDB: the analysts' tables as Parquet or CSV.

Only the analysts' tables are exported: every table and view of schema ``main`` (the marts,
``grant_history``, the ``report_*`` tables, ``sync_runs``, and the provisioning tables when they
exist). Schemas ``raw``, ``staging`` and ``snapshots`` never are, and no table holds a secret.

Two uses:

- ``export_tables``: one file per table into a directory (``langsmith-access export``).
- ``stage_parquet_directory`` + ``replace_directory``: the Parquet copy written on every publish,
  ``<db stem>_parquet/`` beside the analysts' file. It is written into a hidden temporary
  directory first, then swapped in by rename (an atomic exchange on Linux), so a reader never
  sees a half-written directory or files of two different syncs.

Plain Python, no Dagster: ``AccessDatabase.publish()`` calls it, so every publisher gets it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import ctypes
import errno
import functools
import glob
import operator
import os
import re
import shutil
import socket
import stat
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb

from langsmith_access.processes import is_running
from langsmith_access.store.sql import one_row, quote_identifier, quote_literal

EXPORT_FORMATS = ("parquet", "csv")
EXPORTED_SCHEMA = "main"
# Tables a publish writes side by side (see export_database).
PUBLISH_PARALLEL_TABLES = 2

# Leftovers of a dbt table build that was interrupted; never an analysts' table.
_DBT_WORK_SUFFIXES = ("__dbt_tmp", "__dbt_backup")
# A cell a spreadsheet would run as a formula starts with one of these: a name a member chose
# in LangSmith (``=HYPERLINK(...)``) must not run in the spreadsheet of whoever opens a CSV.
# Such text is written with a leading apostrophe, which spreadsheets show as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_TEXT_TYPES = ("VARCHAR", "JSON")
# The hidden directory an export writes into before renaming its files into place:
# ``<out_dir>/.langsmith-access-export.<host>.<pid>.<random>``.
_EXPORT_STAGING = ".langsmith-access-export"



def outside_staging(path: Path) -> Path:
    """``path``, or the folder the user chose when it lies in an export's staging directory
    (which an error names, and the user never did)."""
    for folder in (path, *path.parents):
        if folder.name.startswith(_EXPORT_STAGING + "."):
            return folder.parent
    return path

def analysts_tables(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the tables and views of schema ``main`` in the connection's database: the views
    first (``effective_permissions`` is one, and the largest to write), then the tables, the
    largest first (DuckDB's estimate), then by name."""
    rows = conn.execute(
        "SELECT view_name AS name, 0 AS is_table, 0 AS size FROM duckdb_views() "
        "WHERE database_name = current_database() AND schema_name = $schema AND NOT internal "
        "AND NOT temporary "
        "UNION ALL SELECT table_name, 1, estimated_size FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = $schema AND NOT temporary "
        "ORDER BY is_table, size DESC, name",
        {"schema": EXPORTED_SCHEMA},
    ).fetchall()
    return [name for (name, _, _) in rows if not name.endswith(_DBT_WORK_SUFFIXES)]


def export_tables(
    conn: duckdb.DuckDBPyConnection, out_dir: Path, file_format: str, *, parallel: int = 1
) -> dict[str, int]:
    """Write every analysts' table to ``out_dir/<table>.<format>``; returns rows per table.

    Existing files of the same names are replaced; other files in ``out_dir`` are left alone.

    All or nothing: the tables are written into a hidden directory inside ``out_dir`` first and
    renamed into place once every one is written, so an export that fails or is killed leaves the
    files as they were (never a truncated file under a table's name, nor some tables of this
    export beside others of the last one). A killed export's hidden directory is removed by the
    next export on the same host.

    Timestamps are written as UTC instants (CSV: ``2026-11-01 12:00:00+00``). In CSV, text gets
    an apostrophe wherever a spreadsheet would start a formula cell (``as_text_cell``, as the
    review sheet writes it); Parquet keeps every value as it is.

    ``parallel``: how many tables are written at once, each by a cursor of its own in a thread
    of its own (DuckDB runs the cursors' queries side by side), the largest tables first so the
    longest ``COPY`` never starts last.
    """
    if file_format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {file_format!r}; use one of {', '.join(EXPORT_FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = analysts_tables(conn)
    for table in tables:  # refused before anything is written, not after
        if (out_dir / f"{table}.{file_format}").is_dir():
            raise IsADirectoryError(errno.EISDIR, "a directory, where this export writes a file",
                                    str(out_dir / f"{table}.{file_format}"))
    _remove_killed_exports(out_dir)
    staged = out_dir / f"{_EXPORT_STAGING}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    staged.mkdir()
    try:
        written = _write_tables(conn, tables, staged, file_format, parallel)
        for table in written:
            name = f"{table}.{file_format}"
            keep_permissions(out_dir / name, staged / name)
            os.replace(staged / name, out_dir / name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return written


def _remove_killed_exports(out_dir: Path) -> None:
    """Remove the hidden directories of exports into ``out_dir`` that were killed: only this
    host's, and only those whose process is gone (another export may be writing its own)."""
    host = socket.gethostname()
    for leftover in out_dir.glob(f"{glob.escape(_EXPORT_STAGING)}.*"):
        try:
            leftover_host, pid, _ = leftover.name.removeprefix(f"{_EXPORT_STAGING}.").rsplit(".", 2)
            if leftover_host != host or not leftover.is_dir() or leftover.is_symlink() or is_running(int(pid)):
                continue
        except ValueError:
            continue  # not a name an export gave
        shutil.rmtree(leftover, ignore_errors=True)


def _write_tables(
    conn: duckdb.DuckDBPyConnection, tables: list[str], out_dir: Path, file_format: str, parallel: int
) -> dict[str, int]:
    """``export_tables``' writing: each of ``tables``, in that order, straight into ``out_dir``
    (a new, empty directory)."""
    conn.execute("SET TimeZone = 'UTC'")
    options = "FORMAT parquet, COMPRESSION zstd" if file_format == "parquet" else "FORMAT csv, HEADER"
    if file_format == "csv":
        # The connection's cursors (one per writer) share it; removed when the export ends.
        conn.create_function(_TEXT_CELL_FUNCTION, as_text_cell, ["VARCHAR"], "VARCHAR")
    pending = collections.deque(tables)
    pending_lock = threading.Lock()
    written: dict[str, int] = {}

    def write_tables(cursor: duckdb.DuckDBPyConnection) -> None:
        # A cursor is a connection of its own: the session's time zone is set on each.
        cursor.execute("SET TimeZone = 'UTC'")
        while True:
            with pending_lock:
                if not pending:
                    return
                table = pending.popleft()
            target = out_dir / f"{table}.{file_format}"
            source = _csv_source(cursor, table) if file_format == "csv" else _qualified(table)
            try:
                (rows,) = one_row(cursor, f"COPY {source} TO {quote_literal(target)} ({options})")
            except BaseException:
                with pending_lock:
                    pending.clear()  # the others stop after their current table
                raise
            written[table] = int(rows)

    try:
        if parallel <= 1:
            write_tables(conn)
        else:
            cursors = [conn.cursor() for _ in range(parallel)]
            try:
                with concurrent.futures.ThreadPoolExecutor(parallel, thread_name_prefix="export") as pool:
                    for future in [pool.submit(write_tables, cursor) for cursor in cursors]:
                        future.result()
            finally:
                for cursor in cursors:
                    cursor.close()
    finally:
        if file_format == "csv":
            conn.remove_function(_TEXT_CELL_FUNCTION)
    return dict(sorted(written.items()))


def _qualified(table: str) -> str:
    return f"{EXPORTED_SCHEMA}.{quote_identifier(table)}"


def _csv_source(conn: duckdb.DuckDBPyConnection, table: str) -> str:
    """A query of ``table`` whose text, list and struct columns are written as ``as_text_cell``
    writes them (lists and structs start with a bracket: only their inside may need a guard)."""
    columns = conn.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = $schema AND table_name = $table ORDER BY column_index",
        {"schema": EXPORTED_SCHEMA, "table": table},
    ).fetchall()
    selected = []
    for name, data_type in columns:
        column = quote_identifier(name)
        # An ENUM's values are text too (``ENUM('a', 'b')``; a list of them ends with "]").
        is_text = data_type in _TEXT_TYPES or (data_type.startswith("ENUM(") and not data_type.endswith("]"))
        if is_text or data_type.endswith("]") or data_type.startswith(_NESTED_TYPES):
            # JSON too: '-5 with an apostrophe is no JSON. Only a cell that needs a guard (a few
            # names, if any) goes through Python; the others are matched by DuckDB and kept.
            text = f"CAST({column} AS VARCHAR)"
            column = (f"CASE WHEN regexp_matches({text}, {quote_literal(_UNSAFE_SQL)}) "
                      f"THEN {_TEXT_CELL_FUNCTION}({text}) ELSE {text} END AS {column}")
        selected.append(column)
    return f"(SELECT {', '.join(selected)} FROM {_qualified(table)})"


_NESTED_TYPES = ("STRUCT", "MAP", "UNION")

# Where a spreadsheet may start a cell inside a value: at its start, and after a ';' (Excel in a
# locale whose list separator is ';' splits a .csv line there, quoted or not), a line break (which
# then ends the row) or a tab. An apostrophe goes at each such place where a formula would start
# (after any apostrophes already there, so that a name starting with its own "'=" reads back as
# it was): ``from_text_cell`` takes one away. A tab or a carriage return is both: each of a run
# of them gets one ("x;\t\t=1" is "x;'\t'\t'=1").
_CELL_SEPARATORS = ";\t\r\n"
_FORMULA_AHEAD = "'*[" + re.escape("".join(FORMULA_STARTS)) + "]"
_UNSAFE = re.compile(f"(?:^|(?<=[{_CELL_SEPARATORS}]))(?={_FORMULA_AHEAD})")
_GUARD = re.compile(f"(?:^|(?<=[{_CELL_SEPARATORS}]))'(?={_FORMULA_AHEAD})")
# The same places for DuckDB (RE2 has no lookaround): whether a cell holds one.
_UNSAFE_SQL = f"(^|[{_CELL_SEPARATORS}]){_FORMULA_AHEAD}"
# The name ``as_text_cell`` has in the connection of a CSV export.
_TEXT_CELL_FUNCTION = "langsmith_access_text_cell"


def as_text_cell(value: str) -> str:
    """``value`` as a spreadsheet shows it as text, never runs it (``FORMULA_STARTS``), in any
    locale's split of the line: the CSV export's cells and the review sheet's."""
    return _UNSAFE.sub("'", value)


def from_text_cell(cell: str) -> str:
    """A cell ``as_text_cell`` wrote, as it was."""
    return _GUARD.sub("", cell)


def export_database(database_file: Path, out_dir: Path, file_format: str) -> dict[str, int]:
    """``export_tables`` from a DuckDB file opened read-only (nobody else may be writing it),
    two tables at a time.

    One DuckDB thread per ``COPY``: each thread of a ``COPY`` holds a row group of the table
    before writing it, and a ``COPY`` does not get faster with more (at 50,000 members the
    Parquet copy took ~340 MB with two threads, ~220 MB with one, in no more time on two cores).
    Two tables written side by side do: at 20,000 members the 37 tables took 1.9 s rather than
    2.6 s on a loaded 2-core machine; ``effective_permissions`` alone is ~0.9 s of it."""
    with duckdb.connect(str(database_file), read_only=True, config={"threads": 1}) as conn:
        return export_tables(conn, out_dir, file_format, parallel=PUBLISH_PARALLEL_TABLES)


def parquet_directory(analysts_path: Path) -> Path:
    """Where publishing writes the Parquet copy: ``<db stem>_parquet/`` beside the database
    (``_followed``: the directory a symlink there points to)."""
    analysts_path = Path(analysts_path)
    stem = analysts_path.name.removesuffix(".duckdb")
    return _followed(analysts_path.with_name(f"{stem}_parquet"))


def docs_directory(analysts_path: Path) -> Path:
    """Where a sync publishes the dbt docs site: ``<db stem>_docs/`` beside the database
    (``_followed``: the directory a symlink there points to)."""
    analysts_path = Path(analysts_path)
    stem = analysts_path.name.removesuffix(".duckdb")
    return _followed(analysts_path.with_name(f"{stem}_docs"))


def _followed(path: Path) -> Path:
    """``path``, or the directory it points to when it is a symlink to one: an operator who
    linked the Parquet copy to a share keeps the link (a publish stages beside the directory it
    replaces, on its file system, and swaps that one; it would otherwise replace the link with a
    local directory, and the share would silently stop changing). A link to nothing yet (made
    before the first publish) is followed too: that directory is created, the link kept (a
    directory cannot be renamed over a link: every publish failed there, after the database's)."""
    return followed_link(path, Path.is_dir)


def followed_link(path: Path, is_kind: Callable[[Path], bool]) -> Path:
    """Where the symlink ``path`` points, when that is ``is_kind`` (``Path.is_file``,
    ``Path.is_dir``) or nothing yet; ``path`` itself when it is no link, a link to something
    else, or a loop of links (nothing to follow). What a publish replaces: the analysts' file,
    its Parquet and docs directories."""
    if not path.is_symlink():
        return path
    try:
        target = path.resolve()
    except (OSError, RuntimeError):  # a loop of links (RuntimeError before Python 3.13)
        return path
    return target if is_kind(target) or not target.exists() else path


def stage_parquet_directory(database_file: Path, target: Path) -> Path:
    """Write Parquet of every analysts' table of ``database_file`` into a new hidden directory
    beside ``target`` (same file system, so it can be renamed into place); returns it.

    The caller holds the writer lease; leftovers of an interrupted earlier publish are removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
    staged = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        export_database(database_file, staged, "parquet")
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


def replace_directory(staged: Path, target: Path) -> None:
    """Put the directory ``staged`` in the place of ``target`` and remove the old one.

    On Linux the two are exchanged in one atomic step (``renameat2(RENAME_EXCHANGE)``);
    elsewhere the old directory is renamed aside first, which leaves ``target`` missing for an
    instant (never half-written).
    """
    staged, target = Path(staged), Path(target)
    if not target.exists():
        os.rename(staged, target)
        return
    keep_permissions(target, staged)
    like_the_others = _strictest_file_status(target)
    for path in staged.iterdir():
        if (target / path.name).exists() or like_the_others is None or not path.is_file():
            keep_permissions(target / path.name, path)
        else:
            # New to this publish (a table an upgrade added): no more readable than any file
            # the operator already restricted there, not the umask's mode.
            _give_status(path, *like_the_others)
    if _exchange(staged, target):
        shutil.rmtree(staged, ignore_errors=True)  # now holds the old files
        return
    aside = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}-old")
    os.rename(target, aside)
    os.rename(staged, target)
    shutil.rmtree(aside, ignore_errors=True)


def keep_permissions(published: Path, replacement: Path) -> None:
    """Give ``replacement`` the mode and group of the ``published`` path it is about to replace:
    a copy is created with the umask's mode, and an operator who made the analysts' files
    readable by one group only (``chmod 640``, ``chgrp``) must not find them world-readable
    after the next publish. The group is kept where this user may set it; nothing published
    yet (or removed by hand): the umask's mode stays."""
    try:
        status = os.stat(published)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(status.st_mode)
    # A directory stays the owner's to empty: the next publish removes the copy it replaces.
    _give_status(replacement, mode | stat.S_IRWXU if stat.S_ISDIR(status.st_mode) else mode, status.st_gid)


def _strictest_file_status(directory: Path) -> tuple[int, int] | None:
    """The mode every file directly in ``directory`` allows (the AND of their modes) and their
    group (the directory's when they differ); None when it holds no file."""
    files = [p.stat() for p in directory.iterdir() if p.is_file() and not p.is_symlink()]
    if not files:
        return None
    mode = functools.reduce(operator.and_, (stat.S_IMODE(f.st_mode) for f in files))
    groups = {f.st_gid for f in files}
    return mode, groups.pop() if len(groups) == 1 else directory.stat().st_gid


def _give_status(path: Path, mode: int, gid: int) -> None:
    """Mode ``mode`` and group ``gid`` for ``path``, as far as this user may set them: a mount that
    refuses chmod (some network shares) publishes with the mode it gives, and a group is kept
    only where this user may set it."""
    with contextlib.suppress(PermissionError):
        os.chmod(path, mode)
    if os.stat(path).st_gid != gid:
        with contextlib.suppress(PermissionError):
            os.chown(path, -1, gid)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(first: Path, second: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # the kernel or the file system cannot exchange: fall back
    raise OSError(error, os.strerror(error), str(second))

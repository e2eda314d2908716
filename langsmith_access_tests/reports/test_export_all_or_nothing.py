"""`langsmith-access export` into a directory that already holds an export: a run that fails or is
killed half-way leaves the files as they were, never a truncated file under a table's name, a
stray temporary file, or some tables of this export beside others of the last one."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from langsmith_access.store import export

# Killed by SIGKILL in the middle of writing `grants` (a `timeout`, the OOM killer, a reboot):
# what a kill leaves is what a reader of the directory finds.
_KILLED_EXPORT = """
import os, signal, sys
import duckdb
from langsmith_access.store import export

def die_at(n):
    if n == 150_000:
        os.kill(os.getpid(), signal.SIGKILL)
    return n

conn = duckdb.connect(config={"threads": 1})
conn.create_function("die_at", die_at, ["BIGINT"], "BIGINT", side_effects=True)
conn.execute("CREATE TABLE main.users AS SELECT range AS n FROM range(3)")
conn.execute("CREATE VIEW main.grants AS SELECT die_at(range) AS n, repeat('x', 40) AS s FROM range(300000)")
export.export_tables(conn, sys.argv[1], sys.argv[2])
"""


def _visible(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir() if not path.name.startswith(".")}


@pytest.mark.parametrize("exported_before", [False, True])
@pytest.mark.parametrize("file_format", export.EXPORT_FORMATS)
def test_an_export_killed_half_way_leaves_no_partial_or_temporary_file(tmp_path, file_format, exported_before):
    out = tmp_path / "exports"
    out.mkdir()
    (out / f"users.{file_format}").write_bytes(b"users of the last export")
    if exported_before:
        (out / f"grants.{file_format}").write_bytes(b"grants of the last export")
    before = _visible(out)
    killed = subprocess.run([sys.executable, "-c", _KILLED_EXPORT, str(out), file_format],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _visible(out) == before
    # The next export removes what the killed one left aside (its process is gone).
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE main.users AS SELECT range AS n FROM range(3)")
        export.export_tables(conn, out, file_format)
    assert sorted(path.name for path in out.iterdir()) == sorted(before)


def test_an_export_removes_no_hidden_directory_another_export_may_still_be_writing(tmp_path):
    out = tmp_path / "exports"
    host = socket.gethostname()
    kept = [
        f".langsmith-access-export.{host}.{os.getpid()}.0000aaaa",  # a process that is running
        f".langsmith-access-export.another-host.{_a_finished_process()}.0000bbbb",  # another machine's
        ".langsmith-access-export.notes",  # not a name an export gives
        "my-exports-backup",
    ]
    for name in kept:
        (out / name).mkdir(parents=True)
        (out / name / "users.csv").write_text("kept")
    gone = out / f".langsmith-access-export.{host}.{_a_finished_process()}.0000cccc"
    gone.mkdir()
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE main.users AS SELECT 1 AS n")
        export.export_tables(conn, out, "csv")
    assert sorted(path.name for path in out.iterdir()) == sorted([*kept, "users.csv"])
    assert all((out / name / "users.csv").read_text() == "kept" for name in kept)


def test_an_export_removes_no_hidden_directory_of_another_users_running_export(tmp_path, monkeypatch):
    # Signalling another user's process is refused (EPERM): it is running, and its export with it.
    out = tmp_path / "exports"
    theirs = out / f".langsmith-access-export.{socket.gethostname()}.{_a_finished_process()}.0000dddd"
    theirs.mkdir(parents=True)
    (theirs / "users.csv").write_text("theirs")
    real_kill, other_user = os.kill, int(theirs.name.split(".")[-2])

    def kill(pid, sig):
        if pid == other_user:
            raise PermissionError(1, "Operation not permitted")
        return real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE main.users AS SELECT 1 AS n")
        export.export_tables(conn, out, "csv")
    assert (theirs / "users.csv").read_text() == "theirs"


def _a_finished_process() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    return int(finished.stdout)


def test_an_export_that_fails_half_way_leaves_every_file_as_it_was(tmp_path):
    out = tmp_path / "exports"
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE main.users AS SELECT range AS n FROM range(3)")
        conn.execute("CREATE VIEW main.a_roles AS SELECT 1 AS n")  # written before the broken one
        conn.execute("CREATE VIEW main.b_broken AS SELECT range AS n FROM range(10000)")
        export.export_tables(conn, out, "csv")
        old = _visible(out)
        conn.execute("INSERT INTO main.users VALUES (3)")
        conn.execute("CREATE OR REPLACE VIEW main.a_roles AS SELECT 2 AS n")
        conn.execute("CREATE OR REPLACE VIEW main.b_broken AS SELECT CASE WHEN range > 5000 THEN error('no disk') "
                     "ELSE range END AS n FROM range(10000)")
        with pytest.raises(duckdb.Error, match="no disk"):
            export.export_tables(conn, out, "csv")
    # Not a_roles of this export beside users of the last one: the last export, whole.
    assert _visible(out) == old
    assert sorted(path.name for path in out.iterdir()) == sorted(old)  # nothing hidden left either


def test_a_file_an_export_replaces_keeps_the_mode_it_was_given(tmp_path):
    # An operator who made an export readable by the owner only must not find the next one
    # world-readable: a file renamed into place would have the umask's mode.
    out = tmp_path / "exports"
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE main.users AS SELECT 1 AS n")
        conn.execute("CREATE TABLE main.roles AS SELECT 1 AS n")
        export.export_tables(conn, out, "csv")
        os.chmod(out / "users.csv", 0o600)
        umask_mode = stat.S_IMODE((out / "roles.csv").stat().st_mode)
        assert umask_mode != 0o600
        conn.execute("INSERT INTO main.users VALUES (2)")
        export.export_tables(conn, out, "csv")
    assert (out / "users.csv").read_text() == "n\n1\n2\n"
    assert stat.S_IMODE((out / "users.csv").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "roles.csv").stat().st_mode) == umask_mode

"""dbt's parse of the project, made ahead for a database's first sync.

dbt reuses its parse of the project (``partial_parse.msgpack`` in the database's dbt directory)
only for the same profile, and the profile names the file dbt builds: a database's first sync
(or its first after an upgrade of dbt or of the project) parses everything, about 3 s more. So
the CLI starts that parse in a second process when a sync begins, beside Dagster's start-up and
the API reads, and the sync's dbt step takes the result before it builds.

Who owns what:

- ``ParseAhead.start`` (the runner, before the run) starts ``dbt parse`` into a directory of its
  own beside the dbt directory, ``<dbt dir>-ahead-<token>/``, and holds the process: closing it
  stops the process if it still runs and removes that directory.
- ``adopt`` (the dbt step, writer lease held: only the lease holder writes the dbt directory)
  finds such a directory through the file system, waits until its parse has finished, and
  moves the parse in. No handle, registry or environment variable passes between the two.

"Finished" is told by an exclusive ``flock`` on ``<ahead>/running.lock``: taken by the starter
before the process starts, handed to the process as an open file descriptor, released by the
kernel when the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from langsmith_access.transform.invocation import dbt_command
from langsmith_access.transform.project import write_profile

PARTIAL_PARSE_FILE = "partial_parse.msgpack"
RUNNING_LOCK = "running.lock"

# dbt itself, in a child of this very interpreter (any venv works, activated or not).
_DBT_MAIN = "import sys; from dbt.cli.main import cli; sys.exit(cli())"


def ahead_directories(dbt_dir: Path) -> list[Path]:
    """The parse-ahead directories of ``dbt_dir`` (running, finished or left by a dead run)."""
    dbt_dir = Path(dbt_dir)
    return sorted(dbt_dir.parent.glob(f"{dbt_dir.name}-ahead-*"))


class ParseAhead:
    """A ``dbt parse`` running for ``dbt_dir`` in a second process. A context manager."""

    def __init__(self, process: subprocess.Popen, directory: Path):
        self.process = process
        self.directory = directory

    @classmethod
    def start(cls, database_file: Path, dbt_dir: Path) -> ParseAhead | None:
        """Start the parse if ``dbt_dir`` has no saved parse; None when it has one."""
        dbt_dir = Path(dbt_dir)
        if (dbt_dir / PARTIAL_PARSE_FILE).exists():
            return None
        dbt_dir.parent.mkdir(parents=True, exist_ok=True)
        # Beside the dbt directory (same file system: the result is moved in by rename).
        directory = Path(tempfile.mkdtemp(prefix=f"{dbt_dir.name}-ahead-", dir=dbt_dir.parent))
        # Its own profile: the same text as the build's, so the parse is valid for the build.
        write_profile(directory, database_file)
        lock = os.open(directory / RUNNING_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            process = subprocess.Popen(
                [sys.executable, "-c", _DBT_MAIN,
                 *dbt_command(["parse", "--quiet", "--no-write-json"], directory)],
                cwd=directory, env=_parse_environment(), pass_fds=(lock,),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        finally:
            os.close(lock)  # the process holds the lock from here on
        return cls(process, directory)

    def close(self) -> None:
        """Stop the parse if it still runs (the run failed before its dbt step, say) and
        remove its directory."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ParseAhead:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def adopt(dbt_dir: Path, *, timeout_seconds: float = 120) -> bool:
    """Give ``dbt_dir`` the parse made ahead for it, if it has none of its own: wait (up to
    ``timeout_seconds``) for a parse-ahead to finish and move its result in. Returns whether a
    parse was adopted. Writer lease holder only."""
    dbt_dir = Path(dbt_dir)
    if (dbt_dir / PARTIAL_PARSE_FILE).exists():
        return False
    deadline = time.monotonic() + timeout_seconds
    for directory in ahead_directories(dbt_dir):
        if not _wait_until_finished(directory, deadline):
            continue  # still parsing after the timeout: dbt parses for itself
        parsed = directory / PARTIAL_PARSE_FILE
        if parsed.exists():
            dbt_dir.mkdir(parents=True, exist_ok=True)
            os.replace(parsed, dbt_dir / PARTIAL_PARSE_FILE)
            return True
    return False


def _wait_until_finished(directory: Path, deadline: float) -> bool:
    try:
        lock = os.open(directory / RUNNING_LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return False  # removed by its owner meanwhile
    try:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
    finally:
        os.close(lock)


def _parse_environment() -> dict[str, str]:
    """The parse process's environment: ours without the LangSmith settings (dbt needs none,
    and the API key has no business in a process that logs)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("LANGSMITH_")}

"""Run dbt against one DuckDB file, outside Dagster (provisioning refreshes history this way)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"
# profiles.yml reads the file dbt should build in from this variable.
DBT_DUCKDB_PATH_ENV = "LANGSMITH_ACCESS_DBT_DUCKDB_PATH"


class DbtRunError(RuntimeError):
    pass


def run_dbt(
    args: list[str],
    duckdb_path: Path,
    *,
    target_path: Path | None = None,
    timeout_seconds: float = 600,
) -> str:
    """``dbt <args>`` on ``duckdb_path``; returns the output, raises ``DbtRunError`` with the
    failing lines. The caller must not hold a connection to that file (dbt opens it).

    ``target_path``: dbt's target (and log) directory. A stable one lets dbt reuse its parse of
    the project from the previous run on the same file; by default a temporary directory.
    """
    with contextlib.ExitStack() as stack:
        if target_path is None:
            temporary = tempfile.TemporaryDirectory(prefix="langsmith-access-dbt-")
            target = Path(stack.enter_context(temporary))
        else:
            target = Path(target_path)
            target.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            _dbt_command(args, target), env=_dbt_env(duckdb_path),
            capture_output=True, text=True, timeout=timeout_seconds,
        )
    if done.returncode != 0:
        failing = [line for line in done.stdout.splitlines() if "ERROR" in line or "FAIL" in line]
        raise DbtRunError(
            f"dbt {' '.join(args)} failed (exit {done.returncode}): "
            + ("; ".join(failing[-10:]) or done.stderr.strip()[-500:])
        )
    return done.stdout


def _dbt_command(args: list[str], target: Path) -> list[str]:
    """``dbt <args>`` on this project, with ``target`` as its target and log directory."""
    return [str(Path(sys.executable).with_name("dbt")), *args,
            "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target-path", str(target), "--log-path", str(target)]


def _dbt_env(duckdb_path: Path) -> dict[str, str]:
    """Our environment, with profiles.yml pointed at ``duckdb_path``."""
    return {**os.environ, DBT_DUCKDB_PATH_ENV: str(duckdb_path),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


# --------------------------------------------------------------------- parsing ahead
#
# dbt reuses its parse of the project (``partial_parse.msgpack`` in the database's target
# directory) only for the same profile, and the profile names the file dbt builds: a database's
# first sync (or its first after an upgrade of dbt or the project) parses everything, about 3 s
# more on this project. The CLI starts that parse in a second process when the sync begins, so it
# runs beside Dagster's start-up and the API reads; the sync's dbt step, which holds the writer
# lease, takes the result into the target directory before dbt builds. Only the lease holder ever
# writes the target directory: the parse ahead writes a directory of its own.

PARTIAL_PARSE_FILE = "partial_parse.msgpack"
_parses_ahead: dict[Path, tuple[subprocess.Popen, Path]] = {}


def start_parse_ahead(duckdb_path: Path, target_path: Path) -> bool:
    """Start ``dbt parse`` for a build on ``duckdb_path`` if ``target_path`` has no saved parse.
    Returns whether one was started. Call ``adopt_parse_ahead`` (lease held) before the build,
    and ``discard_parse_ahead`` when the run is over."""
    target_path = Path(target_path)
    if target_path in _parses_ahead or (target_path / PARTIAL_PARSE_FILE).exists():
        return False
    target_path.parent.mkdir(parents=True, exist_ok=True)
    # Beside the target directory (same file system: the result is moved in by rename).
    ahead = Path(tempfile.mkdtemp(prefix=f"{target_path.name}-ahead-", dir=target_path.parent))
    process = subprocess.Popen(
        _dbt_command(["parse", "--quiet", "--no-write-json"], ahead), env=_dbt_env(duckdb_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _parses_ahead[target_path] = (process, ahead)
    return True


def adopt_parse_ahead(target_path: Path, timeout_seconds: float = 120) -> bool:
    """Wait for the parse started for ``target_path`` and move its result in, unless the target
    has a parse of its own by now. Returns whether a parse was adopted. Lease holder only."""
    target_path = Path(target_path)
    entry = _parses_ahead.get(target_path)
    if entry is None:
        return False
    process, ahead = entry
    try:
        process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        return False  # dbt parses for itself; discard_parse_ahead stops this one
    parsed = ahead / PARTIAL_PARSE_FILE
    if process.returncode != 0 or not parsed.exists() or (target_path / PARTIAL_PARSE_FILE).exists():
        return False
    target_path.mkdir(parents=True, exist_ok=True)
    os.replace(parsed, target_path / PARTIAL_PARSE_FILE)
    return True


def discard_parse_ahead(target_path: Path) -> None:
    """Stop the parse started for ``target_path`` if it still runs, and remove its directory."""
    entry = _parses_ahead.pop(Path(target_path), None)
    if entry is None:
        return
    process, ahead = entry
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    shutil.rmtree(ahead, ignore_errors=True)

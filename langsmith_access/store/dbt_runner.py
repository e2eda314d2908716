"""Run dbt against one DuckDB file, outside Dagster (provisioning refreshes history this way)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
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
    dbt = str(Path(sys.executable).with_name("dbt"))
    with contextlib.ExitStack() as stack:
        if target_path is None:
            target = stack.enter_context(tempfile.TemporaryDirectory(prefix="langsmith-access-dbt-"))
        else:
            Path(target_path).mkdir(parents=True, exist_ok=True)
            target = str(target_path)
        env = {
            **os.environ,
            DBT_DUCKDB_PATH_ENV: str(duckdb_path),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        done = subprocess.run(
            [dbt, *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
             str(DBT_PROJECT_DIR), "--target-path", target, "--log-path", target],
            env=env, capture_output=True, text=True, timeout=timeout_seconds,
        )
    if done.returncode != 0:
        failing = [line for line in done.stdout.splitlines() if "ERROR" in line or "FAIL" in line]
        raise DbtRunError(
            f"dbt {' '.join(args)} failed (exit {done.returncode}): "
            + ("; ".join(failing[-10:]) or done.stderr.strip()[-500:])
        )
    return done.stdout

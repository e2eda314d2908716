"""dbt's unit tests (``unit_tests:`` in models/*/_*_unit_tests.yml) run here, so `make test` runs
them; syncs and provisioning runs leave them out (``--exclude-resource-type unit_test``).

dbt reads the column types of a unit test's inputs from the database, so the models are first
built empty (``--empty``: every model with its columns and no rows) on a fresh file holding the
raw tables; then ``dbt test`` runs the unit tests alone.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import duckdb

from langsmith_access.store.raw_tables import RAW_SCHEMA, RAW_TABLES, create_table_sql

REPO = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO / "langsmith_access" / "dbt_project"
DBT_EXECUTABLE = REPO / ".venv" / "bin" / "dbt"

# Every unit test of the project: a new one is added here, so none is silently skipped.
UNIT_TESTS = {
    "grants_lay_changes_verified_after_the_sync_over_its_listing",
    "grants_of_a_sync_after_the_observations_are_its_listing_alone",
    "grant_history_ends_provisioned_removals_when_they_were_verified",
    "report_grant_changes_lists_the_latest_sync_and_later_provisioning",
    "report_grant_changes_after_the_first_sync_lists_only_provisioning",
}


def dbt(db_path: Path, work_dir: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    env = {**os.environ, "LANGSMITH_ACCESS_DBT_DUCKDB_PATH": str(db_path)}
    target = work_dir / "target"
    (target / "run_results.json").unlink(missing_ok=True)
    done = subprocess.run(
        [str(DBT_EXECUTABLE), *args, "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(target),
         "--log-path", str(work_dir / "logs")],
        check=False, env=env, capture_output=True, text=True, timeout=300, cwd=work_dir,
    )
    results_file = target / "run_results.json"
    results = json.loads(results_file.read_text())["results"] if results_file.exists() else []
    return done, results


def test_dbt_unit_tests_pass(tmp_path):
    db_path = tmp_path / "unit.duckdb"
    with duckdb.connect(str(db_path)) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
        for table in RAW_TABLES:
            conn.execute(create_table_sql(table))

    built, _ = dbt(db_path, tmp_path, "build", "--empty", "--exclude-resource-type", "unit_test")
    assert built.returncode == 0, built.stdout[-3000:]

    done, results = dbt(db_path, tmp_path, "test", "--resource-type", "unit_test")
    statuses = {r["unique_id"].rsplit(".", 1)[-1]: r["status"] for r in results}
    assert statuses == {name: "pass" for name in UNIT_TESTS}, done.stdout[-6000:]
    assert done.returncode == 0


def test_builds_exclude_the_unit_tests(tmp_path):
    """The refresh after provisioning selects grants and everything downstream, where the unit
    tests of grants, grant_history and report_grant_changes live: its flags leave them out."""
    from langsmith_access.defs.provisioning.definitions import (
        REFRESH_SELECT,
        REFRESH_SELECTION,
    )

    env = {**os.environ, "LANGSMITH_ACCESS_DBT_DUCKDB_PATH": str(tmp_path / "x.duckdb")}

    def listed(*selection: str) -> set[str]:
        done = subprocess.run(
            [str(DBT_EXECUTABLE), "ls", *selection, "--output", "json", "--output-keys", "resource_type",
             "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
             "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"), "--quiet"],
            check=False, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return {json.loads(line)["resource_type"] for line in done.stdout.splitlines() if line.startswith("{")}

    assert "unit_test" in listed("--select", *REFRESH_SELECT)  # what the flag must drop
    refreshed = listed(*REFRESH_SELECTION)
    assert "unit_test" not in refreshed and {"model", "snapshot", "test"} <= refreshed

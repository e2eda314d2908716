"""The core sync leaves the inventory's tables as the last inventory built them, for real.

The models tagged ``inventory`` (access policies, audit events, credentials, service accounts,
SSO settings) are rebuilt by the inventory job; the core sync's ``dbt build`` leaves them out
(ten dbt nodes fewer an hour), unless the working file lacks one or holds one with other
columns than the project's contract (``transform/selection.py``). Against the sandbox over
HTTP, both jobs in-process, dbt on DuckDB files: a first sync builds them (empty), the
inventory fills them, later core syncs neither lose nor empty nor rebuild them while still
rebuilding what reads them, and a table gone from the working file is built again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from langsmith_access import runner
from langsmith_access.names import INVENTORY_JOB, SYNC_JOB
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.helpers import copy_synced_database, point_at, query

INVENTORY_TABLES = ("access_policies", "access_policy_resources", "audit_events", "credentials", "resource_tags",
                    "service_accounts", "sso_settings")


def run(job: str) -> tuple[runner.RunOutcome, set[str]]:
    """Run ``job`` for the environment's org; the outcome and the assets it materialized."""
    instance = runner.ephemeral_instance()
    config = runner.sync_run_config() if job == SYNC_JOB else {}
    outcome = runner.run_job(job, config, dagster_instance=instance)
    assert outcome.success, (outcome.failure, outcome.dbt_errors)
    materialized = {
        event.asset_key.to_user_string()
        for record in instance.get_records_for_run(
            outcome.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        if (event := record.event_log_entry.dagster_event) is not None and event.asset_key
    }
    return outcome, materialized


def table_rows(database, table: str) -> list[tuple]:
    return sorted(query(database, f"SELECT * FROM main.{table}"), key=repr)


NOW = int(time.time())  # one generated org for the module: the fixtures' and every test's


def new_org():
    return generate_org(seed=7, members=30, workspaces=4, now=NOW)


@pytest.fixture
def org():
    return new_org()


@dataclass(frozen=True)
class SyncedThenInventoried:
    """A new database's first core sync, then the inventory, run once for the module."""

    database: Path
    first_sync: set[str]  # the assets the first sync materialized
    inventory: set[str]  # the assets the inventory materialized
    empty_after_first_sync: dict[str, list[tuple]]  # the inventory's tables' rows then
    filled: dict[str, list[tuple]]  # and after the inventory


@pytest.fixture(scope="module")
def synced_then_inventoried(tmp_path_factory) -> SyncedThenInventoried:
    database = tmp_path_factory.mktemp("synced-then-inventoried") / "access.duckdb"
    with pytest.MonkeyPatch.context() as monkeypatch, SandboxServer(new_org()) as sandbox:
        point_at(monkeypatch, sandbox, database)
        _, first = run(SYNC_JOB)
        empty = {table: table_rows(database, table) for table in INVENTORY_TABLES}
        _, inventory = run(INVENTORY_JOB)
        filled = {table: table_rows(database, table) for table in INVENTORY_TABLES}
    return SyncedThenInventoried(database, first, inventory, empty, filled)


@pytest.fixture
def database(synced_then_inventoried, tmp_path) -> Path:
    """A copy of the module's synced-then-inventoried database, for this test's syncs."""
    return copy_synced_database(synced_then_inventoried.database, tmp_path / "data" / "access.duckdb")


def test_core_syncs_leave_the_inventorys_tables_as_it_built_them(monkeypatch, org, synced_then_inventoried,
                                                                 database):
    # A database's first sync builds them, empty: what reads them builds too.
    assert {f"main/{table}" for table in INVENTORY_TABLES} <= synced_then_inventoried.first_sync
    assert all(rows == [] for rows in synced_then_inventoried.empty_after_first_sync.values())
    # The inventory fills them.
    assert {f"main/{table}" for table in INVENTORY_TABLES} <= synced_then_inventoried.inventory
    filled = synced_then_inventoried.filled
    assert all(filled[table] for table in ("audit_events", "credentials", "resource_tags", "service_accounts")), filled
    assert {table: table_rows(database, table) for table in INVENTORY_TABLES} == filled  # the copy holds them

    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        # The org changes, then a core sync: the core tables follow, the inventory's stay.
        # (A core sync after a core sync leaves them too: the next test's last sync.)
        member = next(m for m in org.active_members() if not m.is_disabled)
        org.remove_member(member.ls_user_id)
        _, core = run(SYNC_JOB)
        assert not {f"main/{table}" for table in INVENTORY_TABLES} & core
        # ... while what reads them and changes with the core data is rebuilt.
        assert {"main/users", "main/grants", "main/user_activity",
                "main/report_credential_hygiene", "main/report_unused_access", "main/report_access_policy_reach"} <= core
        assert {table: table_rows(database, table) for table in INVENTORY_TABLES} == filled
        assert query(database, "SELECT count(*) FROM main.users WHERE user_id = ?",
                     [member.ls_user_id]) == [(0,)]
        assert query(database, "SELECT count(*) FROM main.user_activity WHERE user_id = ?",
                     [member.ls_user_id]) == [(0,)]


def test_a_core_sync_builds_an_inventory_table_the_working_file_lacks_or_holds_otherwise(
    monkeypatch, org, database
):
    """A table missing (say, a first sync before an upgrade added it) or holding other columns
    than the contract (an upgrade changed it) is built by the next core sync, from the raw
    tables the last inventory left."""
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        filled = {table: table_rows(database, table) for table in ("credentials", "sso_settings")}
        assert filled["credentials"]

        working = AccessDatabase(database).working_path
        with duckdb.connect(str(working)) as connection:
            connection.execute("DROP TABLE main.sso_settings")
        _, rebuilt = run(SYNC_JOB)
        assert {f"main/{table}" for table in INVENTORY_TABLES} <= rebuilt
        assert {table: table_rows(database, table) for table in filled} == filled

        with duckdb.connect(str(working)) as connection:
            connection.execute("ALTER TABLE main.credentials DROP COLUMN short_key")
        _, rebuilt = run(SYNC_JOB)
        assert "main/credentials" in rebuilt
        assert {table: table_rows(database, table) for table in filled} == filled

        _, left = run(SYNC_JOB)  # and from then on they are left alone again
        assert not {f"main/{table}" for table in INVENTORY_TABLES} & left
        assert {table: table_rows(database, table) for table in filled} == filled

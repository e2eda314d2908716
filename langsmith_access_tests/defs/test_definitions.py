"""The Dagster definitions load and carry the public names of DESIGN.md section 3."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from langsmith_access.definitions import defs
from langsmith_access.defs.resources import DUCKDB_WRITER_POOL

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_sync_job_schedule_and_assets():
    definitions = defs()
    job = definitions.resolve_job_def("langsmith_access_sync")
    schedule = definitions.resolve_schedule_def("langsmith_access_sync_schedule")
    assert schedule.job_name == "langsmith_access_sync"
    assert schedule.cron_schedule == "0 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    keys = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    for table in ("users", "pending_invites", "workspaces", "roles", "role_permissions",
                  "entitlements", "grants", "grant_history"):
        assert f"main/{table}" in keys
    for raw in ("roles", "workspaces", "org_members", "pending_invites", "workspace_memberships"):
        assert f"raw/{raw}" in keys
    assert "analysts_database" in keys


def test_guards_are_blocking_checks_and_dbt_tests_are_checks():
    graph = defs().resolve_asset_graph()
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    for asset in ("raw/org_members", "raw/workspace_memberships"):
        assert (asset, "complete_read") in checks
        assert (asset, "shrink_guard") in checks
    assert ("main/grants", "grants_user_id_is_an_active_org_member") in checks
    assert any(name.startswith("one_role_per_user_and_workspace") for asset, name in checks)
    blocking = {
        (spec.asset_key.to_user_string(), spec.name)
        for assets_def in defs().assets
        if isinstance(assets_def, dg.AssetsDefinition)
        for spec in assets_def.check_specs
        if spec.blocking
    }
    assert ("raw/org_members", "shrink_guard") in blocking


def test_every_duckdb_writer_is_in_one_pool():
    job = defs().resolve_job_def("langsmith_access_sync")
    pools = {node.name: node.definition.pool for node in job.graph.node_dict.values()}
    assert pools and set(pools.values()) == {DUCKDB_WRITER_POOL}, pools


def test_the_schedule_cron_is_configurable(monkeypatch):
    monkeypatch.setenv("LANGSMITH_ACCESS_SYNC_CRON", "*/15 * * * *")
    schedule = defs().resolve_schedule_def("langsmith_access_sync_schedule")
    assert schedule.cron_schedule == "*/15 * * * *"


def test_dg_check_defs_passes():
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dg")), "check", "defs"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr

"""The Dagster definitions load and carry the public names of DESIGN.md section 3."""

import itertools
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import duckdb
import pytest
from dagster._utils.schedules import cron_string_iterator

from langsmith_access.definitions import defs
from langsmith_access.defs.inventory.definitions import longest_cron_interval
from langsmith_access.defs.provisioning.definitions import run_launcher
from langsmith_access.defs.resources import DUCKDB_WRITER_POOL, org_resources
from langsmith_access.settings import Settings, SettingsError
from langsmith_access.store.schema import ensure_schema

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
    # One process for the whole run: it holds the writer lease and its scratch copy throughout.
    assert job.executor_def is dg.in_process_executor
    graph = definitions.resolve_asset_graph()
    # The members step reads which workspaces are shared from the workspace listing of its run.
    for raw in ("org_members", "pending_invites", "workspace_memberships"):
        assert dg.AssetKey(["raw", "workspaces"]) in graph.get(dg.AssetKey(["raw", raw])).parent_keys, raw
    # The access-review models (models/reports/) have a group of their own.
    assert graph.get(dg.AssetKey(["main", "report_credential_hygiene"])).group_name == "reports"
    assert graph.get(dg.AssetKey(["main", "users"])).group_name == "transform"


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
    # An incomplete read or a shrink beyond the share withholds the publish, on either table.
    for asset in ("raw/org_members", "raw/workspace_memberships"):
        for guard in ("complete_read", "shrink_guard"):
            assert (asset, guard) in blocking, (asset, guard)
    assert ("main/grants", "grants_user_id_is_an_active_org_member") in blocking
    # Drift warns and never withholds a sync: the one dbt test that is not blocking.
    drift = ("main/report_unexplained_changes", "unexplained_privileged_changes")
    assert drift in checks and drift not in blocking
    assert {check for check in checks if check[0].startswith("main/")} - blocking == {drift}


def test_every_check_says_what_it_checks():
    """The UI shows a check's description beside its result: each dbt test's says its rules
    (dagster-dbt left them empty), as do the Python guards'."""
    described = {
        (spec.asset_key.to_user_string(), spec.name): spec.description
        for assets_def in defs().assets
        if isinstance(assets_def, dg.AssetsDefinition)
        for spec in assets_def.check_specs
    }
    assert len(described) > 50 and [check for check, text in described.items() if not text] == []
    assert described[("main/users", "users_row_rules")] == (
        "each of user_id, org_identity_id is filled in and never repeated; is_disabled, org_role_id are "
        "filled in on every row. Fails with a row per violation (the rule, the column, the value).")
    assert described[("main/grants", "grants_user_id_is_an_active_org_member")] == (
        "Every user_id is a user_id of users (none points at nothing).")
    assert "The intervals of one grant_id never overlap" in described[
        ("main/grant_history", "intervals_do_not_overlap_grant_history_grant_interval_id__grant_id")]
    assert "WORKSPACE_ADMIN, ORGANIZATION_ADMIN" in described[
        ("main/report_unexplained_changes", "unexplained_privileged_changes")]


def test_every_duckdb_writer_is_in_one_pool():
    job = defs().resolve_job_def("langsmith_access_sync")
    pools = {node.name: node.definition.pool for node in job.graph.node_dict.values()}
    assert pools and set(pools.values()) == {DUCKDB_WRITER_POOL}, pools


def test_every_op_of_the_provisioning_and_decision_jobs_is_in_the_writers_pool():
    # They write the org's DuckDB file as a sync does: a limit on the pool holds them too.
    definitions = defs()
    for name in ("provision_workspace_roles", "decide_access_request"):
        pools = {op.name: op.pool for op in definitions.resolve_job_def(name).graph.iterate_op_defs()}
        assert pools and set(pools.values()) == {DUCKDB_WRITER_POOL}, (name, pools)


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


def test_inventory_job_schedule_and_assets():
    definitions = defs()
    job = definitions.resolve_job_def("langsmith_access_inventory")
    schedule = definitions.resolve_schedule_def("langsmith_access_inventory_schedule")
    assert schedule.job_name == "langsmith_access_inventory"
    assert schedule.cron_schedule == "30 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    keys = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    for raw in ("access_policies", "resource_tags", "credentials", "service_accounts", "sso_settings", "audit_events"):
        assert f"raw/{raw}" in keys
    for table in ("access_policies", "resource_tags", "access_policy_resources", "report_access_policy_reach",
                  "credentials", "service_accounts", "sso_settings", "audit_events", "user_activity",
                  "report_unused_access", "report_credential_hygiene",
                  # they flag the deny policies the inventory reads
                  "report_privileged_access", "review_sheet", "report_custom_role_holders"):
        assert f"main/{table}" in keys
    assert "analysts_database" in keys
    # The core sync's tables are not rebuilt by the inventory, and it reads no members.
    assert not keys & {"main/users", "main/grants", "main/grant_history", "raw/org_members"}
    # The dbt tests of what it builds are its checks.
    checks = {(key.asset_key.to_user_string(), key.name) for key in job.asset_layer.asset_graph.asset_check_keys}
    assert ("main/credentials", "primary_key_credentials_credential_id") in checks
    assert ("main/user_activity", "primary_key_user_activity_user_id") in checks
    pools = {node.name: node.definition.pool for node in job.graph.node_dict.values()}
    assert pools and set(pools.values()) == {DUCKDB_WRITER_POOL}, pools


@pytest.mark.parametrize("cron", ["30 * * * *", "15 4 * * 1-5", "0 * * * 1-5", "*/15 * * * 1-5", "@monthly",
                                  "0 3,21 * * *", "0 0 31 * *", "0 0 13 * fri", "45 23 * * sat,sun", "0 12 * 2 *",
                                  "30 6 * * 6,7"])  # 7: Sunday too
def test_the_freshness_interval_is_the_crons_longest_gap_whenever_the_definitions_load(cron):
    # Dagster's own ticks over two years from a fixed Monday (a month for the frequent ones):
    # the longest gap between two of them is what the freshness windows follow.
    start = datetime(2026, 1, 5, tzinfo=UTC)
    end = start + timedelta(days=30 if cron.startswith(("30 ", "0 * ", "*/15")) else 730)
    ticks = list(itertools.takewhile(lambda tick: tick <= end,
                                     cron_string_iterator(start.timestamp(), cron, "UTC")))
    assert longest_cron_interval(cron) == max(later - earlier for earlier, later in itertools.pairwise(ticks))


def test_a_cron_of_29_february_alone_is_fresh_for_four_years_not_an_hour():
    # A day only leap years have (the settings accept it): one tick every four years, which the
    # freshness windows follow; an hour would show the inventory failing freshness all the time.
    assert longest_cron_interval("0 0 29 2 *") == datetime(2028, 2, 29) - datetime(2024, 2, 29)
    assert Settings.from_env({"LANGSMITH_ACCESS_INVENTORY_CRON": "0 0 29 2 *"}).inventory_cron == "0 0 29 2 *"


def test_the_sync_reads_the_org_settings_and_builds_the_core_picture():
    keys = {key.to_user_string() for key in defs().resolve_job_def("langsmith_access_sync").asset_layer.executable_asset_keys}
    assert "raw/org_settings" in keys
    # Read after the members: whether their SCIM groups were read depends on the route they took
    # (raw.membership_read, which the members' step writes).
    parents = defs().resolve_asset_graph().get(dg.AssetKey(["raw", "org_settings"])).parent_keys
    assert dg.AssetKey(["raw", "org_members"]) in parents
    for table in ("effective_access", "effective_permissions", "user_login_methods", "user_scim_groups",
                  "org_settings", "org_settings_history", "report_implicit_admins", "workspace_history",
                  "user_history"):
        assert f"main/{table}" in keys


def test_the_inventory_shows_its_freshness_and_its_cron_is_configurable(monkeypatch):
    def policy(definitions):
        spec = next(
            spec for assets_def in definitions.assets if isinstance(assets_def, dg.AssetsDefinition)
            for spec in assets_def.specs if spec.key == dg.AssetKey(["raw", "credentials"])
        )
        return spec.freshness_policy

    hourly = policy(defs())
    assert hourly is not None and hourly.fail_window.to_timedelta().total_seconds() == 2.5 * 3600
    monkeypatch.setenv("LANGSMITH_ACCESS_INVENTORY_CRON", "15 4 * * *")
    daily = defs()
    assert daily.resolve_schedule_def("langsmith_access_inventory_schedule").cron_schedule == "15 4 * * *"
    assert policy(daily).fail_window.to_timedelta().total_seconds() == (48 + 0.5) * 3600
    # On weekdays only: a weekend without a run is no failure (the windows follow the longest gap).
    monkeypatch.setenv("LANGSMITH_ACCESS_INVENTORY_CRON", "15 4 * * 1-5")
    weekdays = policy(defs())
    assert weekdays.warn_window.to_timedelta().total_seconds() == (72 + 0.5) * 3600
    assert weekdays.fail_window.to_timedelta().total_seconds() == (144 + 0.5) * 3600


def test_the_runner_builds_the_provisioning_job_as_the_code_location_serves_it(monkeypatch, tmp_path):
    # `langsmith-access provision` builds the provisioning job on its own, without the asset graph.
    from langsmith_access import runner
    from langsmith_access.names import PROVISION_JOB

    orgs_file = tmp_path / "orgs.yaml"  # two orgs: two partitions, as the code location has
    orgs_file.write_text("".join(
        f"- slug: {slug}\n  organization_id: {org_id}\n  endpoint: https://eu.api.smith.langchain.com\n"
        f"  api_key_env: KEY_OF_{slug.upper()}\n"
        for slug, org_id in (("acme", "11111111-1111-4111-8111-111111111111"),
                             ("beta", "22222222-2222-4222-8222-222222222222"))))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    monkeypatch.setenv("LANGSMITH_ACCESS_ORGS_FILE", str(orgs_file))
    served, built = defs().resolve_job_def(PROVISION_JOB), runner.job_definition(PROVISION_JOB)
    assert (built.name, built.description, built.tags) == (served.name, served.description, served.tags)
    assert [node.name for node in built.graph.nodes] == [node.name for node in served.graph.nodes]
    assert {node.name for node in built.graph.nodes} == {"select_requests", "apply_requests", "refresh_access_history"}
    assert built.partitions_def.get_partition_keys() == served.partitions_def.get_partition_keys() == ["acme", "beta"]
    assert (built.partitioned_config.get_run_config_for_partition_key("beta")
            == served.partitioned_config.get_run_config_for_partition_key("beta"))
    assert built.executor_def is served.executor_def
    assert built.run_tags == served.run_tags  # the run's time limit among them
    # The same ops (their config, pool, resources), and every resource the served job binds,
    # but the I/O manager Dagster gives both, is one the runner hands the run itself.
    assert all(b.definition is s.definition for b, s in zip(built.graph.nodes, served.graph.nodes, strict=True))
    assert set(served.resource_defs) - set(built.resource_defs) == set(org_resources())

    # ...and building it loads neither dagster-dbt nor the dbt assets' module.
    loaded = subprocess.run(
        [sys.executable, "-W", "ignore", "-c",
         "import sys; from langsmith_access import runner; runner.job_definition('provision_workspace_roles'); "
         "print(sorted(m for m in sys.modules if m.startswith(('dagster_dbt', 'langsmith_access.defs.transform'))))"],
        capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def _config_fields(config_type, path: str):
    """(path, field) of every field of a run config schema, nested shapes included."""
    for name, field in (getattr(config_type, "fields", None) or {}).items():
        yield f"{path}.{name}", field
        inner = field.config_type
        while getattr(inner, "inner_type", None) is not None:  # Noneable, Array
            inner = inner.inner_type
        yield from _config_fields(inner, f"{path}.{name}")


@pytest.mark.parametrize("job_name", ["langsmith_access_sync", "langsmith_access_inventory",
                                      "provision_workspace_roles", "decide_access_request"])
def test_every_launchpad_config_field_says_what_it_does(job_name):
    # The Launchpad shows a field's description beside it: the only help an operator has there.
    root = defs().resolve_job_def(job_name).run_config_schema.config_type
    ours = [(path, field) for section in ("ops", "resources")
            for path, field in _config_fields(root.fields[section].config_type, section)
            if path.count(".") >= 3 and path.split(".")[2] == "config" and "io_manager" not in path]
    assert ours, job_name
    undocumented = [path for path, field in ours if not field.description]
    assert undocumented == []


def test_a_bad_membership_route_is_refused_at_launch_naming_the_field():
    job = defs().resolve_job_def("langsmith_access_sync")
    with pytest.raises(dg.DagsterInvalidConfigError, match=r"raw_members:config:membership_route"):
        dg.validate_run_config(job, {"ops": {"raw_members": {"config": {"membership_route": "per_workspace"}}}})


def test_a_mistyped_action_is_refused_at_launch_naming_the_field():
    # The Launchpad marks it before the run starts, as it does a bad membership_route; the run
    # would otherwise queue a rejected request for a typo.
    job = defs().resolve_job_def("provision_workspace_roles")
    change = {"action": "grnt", "user": "ada@example.com", "workspace": "Platform", "role": "Editor"}
    with pytest.raises(dg.DagsterInvalidConfigError, match=r"select_requests:config:change:action"):
        dg.validate_run_config(job, {"ops": {"select_requests": {"config": {"change": change}}}})
    dg.validate_run_config(job, {"ops": {"select_requests": {"config": {"change": {**change, "action": "revoke"}}}}})


def test_every_asset_in_the_catalog_says_what_it_is():
    # The queue, the run history and where the inventory's reads stand are dbt sources no asset
    # materializes: the catalog still describes them (from sources.yml), in a group of their own.
    graph = defs().resolve_asset_graph()
    undescribed = [key.to_user_string() for key in graph.get_all_asset_keys() if not graph.get(key).description]
    assert undescribed == []
    records = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).group_name == "records"}
    assert records == {"raw/provisioning_observations", "raw/section_reads", "raw/audit_windows",
                       "main/provisioning_requests", "main/sync_runs"}
    assert graph.get(dg.AssetKey(["main", "sync_runs"])).description.startswith("One row per run of the sync")


def test_effective_access_says_why_it_has_no_group_path():
    # DESIGN.md section 9: LangSmith publishes no route listing user groups or their members, so
    # effective_access has no 'group' rows, and its model description (what the catalog shows an
    # analyst) must say so rather than let an empty path read as "nobody gets access by group".
    graph = defs().resolve_asset_graph()
    description = " ".join(graph.get(dg.AssetKey(["main", "effective_access"])).description.split())
    assert "user groups ('group')" in description
    assert "documents no route that lists user groups or their members" in description
    assert "that path has no rows" in description


def test_every_table_in_the_catalog_shows_its_columns():
    # The catalog's Columns tab: the dbt models' from dbt, and the raw tables' and the records'
    # (written by Python, the models' inputs) from their descriptions in sources.yml.
    graph = defs().resolve_asset_graph()
    without = []
    for key in graph.get_all_asset_keys():
        if key.path[0] not in ("raw", "main"):
            continue
        schema = graph.get(key).metadata.get("dagster/column_schema")
        if schema is None or not schema.columns or any(not column.description for column in schema.columns):
            without.append(key.to_user_string())
    assert without == []
    members = graph.get(dg.AssetKey(["raw", "org_members"])).metadata["dagster/column_schema"]
    assert {"ls_user_id", "email", "is_disabled"} <= {column.name for column in members.columns}
    # Every column of the tables Python writes, as the schema creates them: none left off the tab.
    with duckdb.connect() as conn:
        ensure_schema(conn)
        created: dict[tuple[str, str], set[str]] = {}
        for schema, table, column in conn.execute(
                "SELECT table_schema, table_name, column_name FROM information_schema.columns").fetchall():
            created.setdefault((schema, table), set()).add(column)
    shown = {tuple(key.path): {column.name for column in graph.get(key).metadata["dagster/column_schema"].columns}
             for key in graph.get_all_asset_keys() if tuple(key.path) in created}
    missing = {key: created[key] - columns for key, columns in shown.items() if created[key] - columns}
    assert len(shown) >= 15 and missing == {}


@pytest.mark.parametrize(("variable", "value"), [
    ("LANGSMITH_ACCESS_SYNC_CRON", "every hour"),
    ("LANGSMITH_ACCESS_PROVISIONING_INTERVAL_SECONDS", "0"),
    ("LANGSMITH_ACCESS_ORGS_FILE", "/nonexistent/orgs.yaml"),
])
def test_a_bad_variable_stops_the_load_with_its_own_message_first(monkeypatch, variable, value):
    """What the webserver and `dg check defs` show first is the variable and what to set it to,
    not a module of defs/ that happened to read it first."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        defs()
    assert str(refused.value).startswith(variable)


def test_the_readme_dagster_section_names_every_snapshot_and_raw_asset():
    # README "## Dagster" lists the asset groups' assets by key: the snapshots in `transform`, the
    # raw tables of `extract`, `inventory` and `records`. A key added to the catalog must be there.
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Dagster\n")
    section = text[start:text.index("\n## ", start + 1)]
    named = set(re.findall(r"`((?:raw|snapshots|main)/[a-z_]+)`", section))
    graph = defs().resolve_asset_graph()
    catalog = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    listed = {key for key, group in catalog.items()
              if key.startswith("snapshots/") or group in ("extract", "inventory", "records")}
    assert listed - named == set()
    assert {key for key in named if key.startswith("snapshots/")} <= set(catalog)


@pytest.mark.parametrize("tags, launcher", [
    ({"user": "ada@example.com"}, "ada@example.com"),
    ({"dagster/user": "bob@example.com"}, "bob@example.com"),
    # Dagster's own tag wins: anyone may type a "user" tag in the Launchpad; Dagster+ sets "dagster/user".
    ({"user": "ada@example.com", "dagster/user": "bob@example.com"}, "bob@example.com"),
    ({}, None),
])
def test_the_launcher_of_a_run_is_read_from_either_tag_deployments_give_it(tags, launcher):
    # Who asks and who decides in a Launchpad run: a deployment tagging "user" is held to it too.
    assert run_launcher(SimpleNamespace(run=SimpleNamespace(tags=tags))) == launcher


def test_the_jobs_schedules_sensors_and_ops_carry_the_names_design_and_the_readme_give():
    # Public names (DESIGN.md section 3, the README's Launchpad config, deployments' run configs
    # and alerts): names.py is where they are spelled, and the definitions must answer to them.
    repository = defs().get_repository_def()
    jobs = {job.name: {node.name for node in job.graph.nodes} for job in repository.get_all_jobs()
            if not job.name.startswith("__")}
    assert set(jobs) == {"langsmith_access_sync", "langsmith_access_inventory", "provision_workspace_roles",
                         "decide_access_request", "check_langsmith_connection"}
    assert "raw_members" in jobs["langsmith_access_sync"] and "raw_inventory" in jobs["langsmith_access_inventory"]
    assert jobs["provision_workspace_roles"] == {"select_requests", "apply_requests", "refresh_access_history"}
    assert jobs["decide_access_request"] == {"decide_request"}
    assert {schedule.name: schedule.job_name for schedule in repository.schedule_defs} == {
        "langsmith_access_sync_schedule": "langsmith_access_sync",
        "langsmith_access_inventory_schedule": "langsmith_access_inventory"}
    assert {sensor.name for sensor in repository.sensor_defs} == {
        "provisioning_queue_sensor", "access_expiry_sensor", "notification_outbox_sensor"}

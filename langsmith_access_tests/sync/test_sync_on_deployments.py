"""The whole sync on each deployment the sandbox plays: self-hosted behind an endpoint ending in
/api/v1, a default-role key, an anonymity-restricted org, and a database from before
route_reason and anonymity_restricted existed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from langsmith_access import cli, runner
from langsmith_access.langsmith.client import ACCESS_POLICIES_PATH, SCIM_TOKENS_PATH
from langsmith_access.names import INVENTORY_JOB
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access_tests.helpers import (
    actual_workspace_grants,
    copy_synced_database,
    expected_workspace_grants,
    point_at,
    query,
    run_sync,
)
from langsmith_access_tests.langsmith.sandbox_client_support import wrap_respond

# Differ between two syncs of the same org by nature: ids and times of the run.
RUN_COLUMNS = {"sync_id", "run_id", "synced_at", "fetched_at", "started_at", "finished_at",
               "valid_from", "valid_to", "duration_seconds", "api_wait_seconds", "updated_at",
               "dbt_updated_at", "dbt_valid_from", "dbt_valid_to", "dbt_scd_id",
               "grant_interval_id", "setting_interval_id", "workspace_interval_id",  # dbt_scd_id: id and time
               "user_interval_id",
               "held_since"}  # review_sheet: when the current interval opened


def new_org():
    """The same generated org every time: a fresh copy matches the module's Cloud sync."""
    return generate_org(seed=11, members=40, workspaces=5)


def sync_into(monkeypatch, database: Path, **sandbox_options) -> tuple[SandboxServer, object]:
    org = new_org()
    with SandboxServer(org, **sandbox_options) as sandbox:
        point_at(monkeypatch, sandbox, database)
        if sandbox_options.get("deployment") == "self-hosted":
            # What LangSmith's self-hosted docs tell people to set.
            monkeypatch.setenv("LANGSMITH_ENDPOINT", f"{sandbox.url}/api/v1/")
        outcome = run_sync()
        log = sandbox.request_log.snapshot()
    assert outcome.success, outcome.failure
    return sandbox, log


def main_tables(database: Path) -> dict[str, list[tuple]]:
    """Every table of schema main, rows sorted, without the run's ids and times."""
    with duckdb.connect(str(database), read_only=True) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
        ).fetchall()]
        tables = {}
        for name in names:
            columns = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position", [name]
            ).fetchall() if r[0] not in RUN_COLUMNS]
            quoted = ", ".join(f'"{c}"' for c in columns)
            rows = conn.execute(f'SELECT {quoted} FROM main."{name}"').fetchall()
            tables[name] = sorted(rows, key=repr)
    return tables


@pytest.fixture(scope="module")
def cloud_sync(tmp_path_factory) -> Path:
    """The org's first sync on Cloud's paths, run once for the module: compared with, or copied."""
    database = tmp_path_factory.mktemp("cloud") / "access.duckdb"
    with pytest.MonkeyPatch.context() as monkeypatch:
        sync_into(monkeypatch, database)
    return database


def test_self_hosted_through_an_api_v1_endpoint_yields_exactly_the_cloud_tables(monkeypatch, tmp_path,
                                                                               cloud_sync):
    cloud_db = cloud_sync
    hosted_db = tmp_path / "hosted" / "access.duckdb"
    hosted, hosted_log = sync_into(monkeypatch, hosted_db, deployment="self-hosted")

    hosted_paths = {entry.path for entry in hosted_log}
    assert "/api/v1/platform/orgs/current/members" in hosted_paths
    assert not any(p.startswith(("/v1/", "/api/v1/api/")) for p in hosted_paths), hosted_paths
    assert {entry.status for entry in hosted_log} == {200}

    cloud, self_hosted = main_tables(cloud_db), main_tables(hosted_db)
    assert set(cloud) == set(self_hosted) and {"users", "grants", "grant_history", "sync_runs"} <= set(cloud)
    for name in cloud:
        assert self_hosted[name] == cloud[name], name
    assert len(cloud["grants"]) > 40


def inventory_on(monkeypatch, database: Path, **sandbox_options) -> tuple[runner.RunOutcome, list]:
    """The inventory job run for ``new_org()`` served with ``sandbox_options`` (an endpoint as
    self-hosted docs say for a self-hosted one); its outcome and the requests the sandbox got."""
    with SandboxServer(new_org(), **sandbox_options) as sandbox:
        point_at(monkeypatch, sandbox, database)
        if sandbox_options.get("deployment") == "self-hosted":
            monkeypatch.setenv("LANGSMITH_ENDPOINT", f"{sandbox.url}/api/v1/")
        outcome = runner.run_job(INVENTORY_JOB, {})
        return outcome, sandbox.request_log.snapshot()


def test_the_inventory_on_a_self_hosted_install_reads_every_section_cloud_reads(monkeypatch, tmp_path,
                                                                                cloud_sync):
    """DESIGN.md section 8: self-hosted works unchanged, the inventory's platform routes (access
    policies, SCIM tokens) included: they are called under /api/v1/platform/, never /v1/platform/
    (a self-hosted install's web UI page there would fail the run as "not a LangSmith API")."""
    sections = {}
    for deployment in ("cloud", "self-hosted"):
        database = copy_synced_database(cloud_sync, tmp_path / deployment / "access.duckdb")
        outcome, log = inventory_on(monkeypatch, database, deployment=deployment)
        assert outcome.success, (deployment, outcome.failure)
        assert {entry.status for entry in log} == {200}, deployment
        sections[deployment] = query(database, "SELECT skipped_sections, section_rows FROM main.sync_runs "
                                               f"WHERE job = '{INVENTORY_JOB}'")
        paths = {entry.path for entry in log}
    # The last log is the self-hosted one.
    assert {ACCESS_POLICIES_PATH, SCIM_TOKENS_PATH} <= paths
    assert not any(p.startswith(("/v1/", "/api/v1/api/")) for p in paths), paths
    [(skipped, section_rows)] = sections["self-hosted"]
    read = json.loads(section_rows)
    assert skipped == "{}" and read["access_policies"] > 0 and read["scim_tokens"] > 0, section_rows
    assert sections["self-hosted"] == sections["cloud"]


def test_a_default_role_key_reads_each_workspace_and_says_why(monkeypatch, tmp_path):
    database = tmp_path / "access.duckdb"
    org = new_org()
    with SandboxServer(org, key_role="org-user") as sandbox:
        point_at(monkeypatch, sandbox, database)
        outcome = run_sync()
    assert outcome.success, outcome.failure
    # The enriched route's partial memberships were not trusted: every grant is there.
    assert actual_workspace_grants(database) == expected_workspace_grants(org)
    [(route, reason, restricted)] = query(
        database, "SELECT membership_route, route_reason, anonymity_restricted FROM main.sync_runs")
    assert route == "workspace_members"
    assert "X-Members-List-All-Workspaces: false" in reason and "Organization Admin" in reason
    assert restricted is False


def test_an_anonymity_restricted_answer_is_recorded_and_never_read_as_a_change(monkeypatch, tmp_path,
                                                                               cloud_sync):
    database = copy_synced_database(cloud_sync, tmp_path / "access.duckdb")
    org = new_org()
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        before = dict(query(database, "SELECT user_id, email FROM main.users"))
        grants_before = actual_workspace_grants(database)
        newcomer = org.add_member("new.person@example.com", "New Person")
        sandbox.api.anonymity_restricted = True
        outcome = run_sync()
    assert outcome.success, outcome.failure
    after = dict(query(database, "SELECT user_id, email FROM main.users"))
    # Known members keep their email; the one first seen behind the restriction has none.
    assert {u: e for u, e in after.items() if u != newcomer.ls_user_id} == before
    assert after[newcomer.ls_user_id] is None
    assert actual_workspace_grants(database) == grants_before
    [(restricted, route)] = query(
        database, "SELECT anonymity_restricted, membership_route FROM main.sync_runs "
                  "ORDER BY finished_at DESC LIMIT 1")
    assert restricted is True and route == "enriched_members"


def test_an_org_member_listing_read_after_a_restricted_enriched_page_is_never_read_as_a_change(
        monkeypatch, tmp_path, cloud_sync):
    """The enriched route says the org is anonymity-restricted, and (a default-role key) that it
    did not list every workspace: the sync reads each workspace, and the org member listing. What
    that listing withholds is undocumented (and it may say nothing): its missing emails and names
    are put back from the previous sync as the enriched page's would be, and counted."""
    database = copy_synced_database(cloud_sync, tmp_path / "access.duckdb")
    org = new_org()
    before = dict(query(database, "SELECT user_id, email FROM main.users"))
    with SandboxServer(org, key_role="org-user", anonymity_restricted=True) as sandbox:
        point_at(monkeypatch, sandbox, database)

        def org_members_withheld(respond, r):
            response = respond(r)
            if r.path == "/api/v1/orgs/current/members/active" and isinstance(response.body, list):
                return replace(response, body=[
                    {**row, "email": None, "full_name": None, "display_name": None} for row in response.body])
            return response

        wrap_respond(sandbox, org_members_withheld)
        outcome = run_sync()
    assert outcome.success, outcome.failure
    assert dict(query(database, "SELECT user_id, email FROM main.users")) == before
    assert actual_workspace_grants(database) == expected_workspace_grants(org)
    [(route, restricted)] = query(database, "SELECT membership_route, anonymity_restricted FROM main.sync_runs "
                                            "ORDER BY finished_at DESC LIMIT 1")
    assert (route, restricted) == ("workspace_members", True)
    [(kept,)] = query(database, "SELECT withheld_values_kept FROM raw.membership_read")
    assert kept >= len(before)


def test_a_first_sync_of_an_anonymity_restricted_org_succeeds_and_says_so(monkeypatch, tmp_path):
    # An empty database: no previous sync to take withheld values from (the case above has one).
    database = tmp_path / "access.duckdb"
    sync_into(monkeypatch, database, anonymity_restricted=True)
    org = new_org()
    assert actual_workspace_grants(database) == expected_workspace_grants(org)
    emails = query(database, "SELECT email FROM main.users")
    assert emails and all(email is None for (email,) in emails)
    [(restricted, route)] = query(
        database, "SELECT anonymity_restricted, membership_route FROM main.sync_runs")
    assert restricted is True and route == "enriched_members"


def test_an_older_sync_runs_table_gains_the_new_columns(tmp_path):
    from langsmith_access.store.schema import ensure_schema

    database = tmp_path / "old.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute("""CREATE TABLE main.sync_runs (sync_id VARCHAR PRIMARY KEY, started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ NOT NULL, status VARCHAR NOT NULL, membership_route VARCHAR)""")
        conn.execute("INSERT INTO main.sync_runs VALUES ('old', now(), now(), 'succeeded', 'enriched_members')")
        ensure_schema(conn)
        ensure_schema(conn)  # idempotent
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'sync_runs'").fetchall()}
        kept = conn.execute("SELECT sync_id, route_reason, anonymity_restricted FROM main.sync_runs").fetchall()
    assert {"route_reason", "anonymity_restricted"} <= columns
    assert kept == [("old", None, None)]


def test_the_cli_summary_prints_the_route_and_why(tmp_path, monkeypatch, capsys):
    """``langsmith-access sync`` in this process (the console script's own run is
    test_cli.py's and test_installed_package.py's)."""
    database = tmp_path / "access.duckdb"
    with SandboxServer(generate_org(seed=3, members=12, workspaces=3), key_role="org-user",
                       anonymity_restricted=True) as sandbox:
        point_at(monkeypatch, sandbox, database)
        code = cli.main(["sync", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "route: workspace_members, because the enriched members route did not list every workspace" in out
    assert "anonymity-restricted" in out
    assert sandbox.api_key not in out + err

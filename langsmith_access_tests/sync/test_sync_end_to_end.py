"""The whole sync, for real: sandbox over HTTP, Dagster job in-process, dbt on DuckDB files.

Expected tables are computed from the sandbox's generated org, never from the pipeline.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import duckdb
import pytest

from langsmith_access import runner
from langsmith_access.defs.extract import assets as extract_assets
from langsmith_access.defs.transform import assets as transform_assets
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.helpers import (
    actual_org_grants,
    actual_workspace_grants,
    copy_synced_database,
    expected_org_grants,
    expected_workspace_grants,
    file_digest,
    point_at,
    query,
    run_sync,
)


def new_org():
    """The same generated org every time: a fresh copy matches the first sync's tables."""
    return generate_org(seed=11, members=40, workspaces=5)


@pytest.fixture
def org():
    return new_org()


@pytest.fixture(scope="module")
def first_sync(tmp_path_factory):
    """The org's first sync into a new database, run once for the module: (database, outcome)."""
    database = tmp_path_factory.mktemp("first-sync") / "access.duckdb"
    with pytest.MonkeyPatch.context() as monkeypatch, SandboxServer(new_org()) as sandbox:
        point_at(monkeypatch, sandbox, database)
        outcome = run_sync()
    assert outcome.success, outcome.failure
    return database, outcome


@pytest.fixture
def database(first_sync, tmp_path):
    """A copy of the first sync's database for this test: the state its next sync starts from."""
    return copy_synced_database(first_sync[0], tmp_path / "data" / "access.duckdb")


def test_first_sync_builds_every_table_from_the_org(org, first_sync):
    database, outcome = first_sync
    assert {r[0] for r in query(database, "SELECT user_id FROM main.users")} == {
        m.ls_user_id for m in org.active_members()
    }
    disabled = {m.ls_user_id for m in org.active_members() if m.is_disabled}
    assert disabled, "the generated org has disabled members"
    assert {r[0] for r in query(database, "SELECT user_id FROM main.users WHERE is_disabled")} == disabled
    assert {r[0] for r in query(database, "SELECT workspace_id FROM main.workspaces")} == {
        w.id for w in org.shared_workspaces()
    }
    assert {r[0] for r in query(database, "SELECT invite_id FROM main.pending_invites")} == {
        i.id for i in org.pending_org_invites()
    }
    # The enriched route (this sandbox's, like LangSmith's may) lists the invites without the
    # workspaces they offer: the table says it does not know, never that they offer none.
    assert any(i.workspace_ids for i in org.pending_org_invites())
    assert query(database, "SELECT count(*) FROM main.pending_invites WHERE workspace_ids IS NOT NULL") == [(0,)]
    assert {r[0] for r in query(database, "SELECT role_id FROM main.roles")} == set(org.roles)
    assert actual_workspace_grants(database) == expected_workspace_grants(org)
    assert actual_org_grants(database) == expected_org_grants(org)
    # Personal and deleted workspaces hold memberships in the org, never grants in the tables.
    hidden = {w.id for w in org.all_workspaces() if not w.is_shared and w.memberships}
    assert hidden
    assert not query(
        database,
        f"SELECT 1 FROM main.grants WHERE workspace_id IN ({','.join('?' * len(hidden))})",
        list(hidden),
    )
    # Entitlements: every org role, and every shared workspace x workspace role.
    workspace_roles = [r for r in org.roles.values() if r.access_scope == "workspace"]
    org_roles = [r for r in org.roles.values() if r.access_scope == "organization"]
    assert query(database, "SELECT count(*) FROM main.entitlements")[0][0] == len(org_roles) + len(
        workspace_roles
    ) * len(org.shared_workspaces())
    # sync_runs records the run with its API calls (enriched route: roles, workspaces, 1 page,
    # and the org info).
    runs = query(database, "SELECT sync_id, status, api_calls, membership_route, users FROM main.sync_runs")
    assert runs == [(outcome.run_id, "succeeded", 4, "enriched_members", len(org.active_members()))]
    # The raw tables carry the sync id and the fetch time.
    assert query(database, "SELECT DISTINCT sync_id FROM raw.org_members") == [(outcome.run_id,)]
    # The run's row spans its reads: started before the first listing was fetched (when the run
    # started, not when it published), finished after the last.
    assert query(database, "SELECT started_at <= (SELECT min(fetched_at) FROM raw.roles), "
                           "finished_at >= (SELECT max(fetched_at) FROM raw.org_members) FROM main.sync_runs") == [
        (True, True)]


def test_second_sync_records_history_and_point_in_time(monkeypatch, org, database):
    shared = org.shared_workspaces()
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        first_grants = actual_workspace_grants(database)
        between = datetime.now(timezone.utc)
        while datetime.now(timezone.utc) <= between:
            pass  # the next sync's timestamps come strictly after `between` (microseconds)

        # Change the org: a role change, a revoke, a new grant.
        changed_ws, changed_user, _, old_role = next(
            row for row in org.workspace_membership_rows(shared_only=True)
        )
        new_role = next(
            r.id for r in org.roles_by_scope("workspace") if r.id != old_role
        )
        org.set_workspace_role(changed_ws, changed_user, new_role)
        revoked_ws, revoked_user, _, revoked_role = next(
            row
            for row in org.workspace_membership_rows(shared_only=True)
            if (row[0], row[1]) != (changed_ws, changed_user)
        )
        org.remove_workspace_membership(revoked_ws, revoked_user)
        newcomer = org.add_member("New.Comer@Example.com", "Nouveau Venu")
        org.add_workspace_membership(shared[0].id, newcomer.ls_user_id, new_role)

        assert run_sync().success

    assert actual_workspace_grants(database) == expected_workspace_grants(org)
    history = {
        (w, u, r): (valid_from, valid_to)
        for w, u, r, valid_from, valid_to in query(
            database,
            "SELECT workspace_id, user_id, role_id, valid_from, valid_to FROM main.grant_history "
            "WHERE entitlement_type = 'workspace_role'",
        )
    }
    # The old role and the revoked grant were closed; the new ones opened; others untouched.
    assert history[(changed_ws, changed_user, old_role)][1] is not None
    assert history[(changed_ws, changed_user, new_role)][1] is None
    assert history[(revoked_ws, revoked_user, revoked_role)][1] is not None
    assert history[(shared[0].id, newcomer.ls_user_id, new_role)][1] is None
    untouched = first_grants - {(changed_ws, changed_user, old_role), (revoked_ws, revoked_user, revoked_role)}
    assert all(history[g][1] is None for g in untouched)

    # Who had access between the two syncs: exactly the first state.
    at_between = set(
        query(
            database,
            "SELECT workspace_id, user_id, role_id FROM main.grant_history "
            "WHERE entitlement_type = 'workspace_role' AND valid_from <= ? "
            "AND (valid_to IS NULL OR valid_to > ?)",
            [between, between],
        )
    )
    assert at_between == first_grants


def test_failed_sync_leaves_data_and_history_untouched_then_recovers(monkeypatch, org, database):
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        before = file_digest(database)
        org.remove_workspace_membership(*next(iter(org.workspace_membership_rows(shared_only=True)))[:2])

        # The members route fails on every attempt: the sync must fail and publish nothing.
        sandbox.faults.failing_routes = ("/api/v1/platform/orgs/current/members",)
        monkeypatch.setenv("LANGSMITH_ACCESS_MAX_RETRIES", "1")
        failed = run_sync()
        assert not failed.success
        assert "/api/v1/platform/orgs/current/members" in failed.failure
        assert file_digest(database) == before
        assert len(query(database, "SELECT * FROM main.sync_runs")) == 1

        sandbox.faults.failing_routes = ()
        assert run_sync().success
    assert actual_workspace_grants(database) == expected_workspace_grants(org)
    # The good sync's row, and the failed one's, published with it.
    runs = query(database, "SELECT sync_id, status FROM main.sync_runs")
    assert len(runs) == 3 and (failed.run_id, "failed") in runs


def test_a_sync_given_another_database_file_in_the_launchpad_writes_that_file(monkeypatch, org, database, tmp_path):
    """The Launchpad's resources.sync_database.config.duckdb_path: the sync builds and publishes
    that file; the org's own file is left as it was."""
    elsewhere = copy_synced_database(database, tmp_path / "elsewhere" / "access.duckdb")
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        before = file_digest(database)
        gone = org.active_members()[0]
        org.remove_member(gone.ls_user_id)
        config = {**runner.sync_run_config(),
                  "resources": {"sync_database": {"config": {"duckdb_path": str(elsewhere)}}}}
        outcome = runner.run_job(runner.SYNC_JOB, config)
        assert outcome.success, outcome.failure
    assert file_digest(database) == before
    assert {r[0] for r in query(elsewhere, "SELECT user_id FROM main.users")} == {
        m.ls_user_id for m in org.active_members()}
    assert gone.ls_user_id in {r[0] for r in query(database, "SELECT user_id FROM main.users")}


def test_shrink_guard_stops_a_large_drop_unless_accepted(monkeypatch, org, database):
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        before = file_digest(database)
        for member in org.active_members()[: len(org.active_members()) // 2]:
            org.remove_member(member.ls_user_id)

        blocked = run_sync()
        assert not blocked.success
        assert any("shrink_guard" in check and "users fell from 40" in check for check in blocked.failed_checks)
        assert file_digest(database) == before

        accepted = run_sync(accept_shrink=True)
        assert accepted.success, accepted.failure
    assert query(database, "SELECT count(*) FROM main.users")[0][0] == len(org.active_members())


def test_a_read_that_missed_a_workspace_fails_complete_read_on_both_tables_and_publishes_nothing(
        monkeypatch, org, database):
    # The client raises on a listing that does not hold together, so complete_read is the last
    # line: the guard itself, told one shared workspace's memberships were not read, must stop
    # the publish as the shrink guard does. (Only the count it is given is changed here.)
    guard = extract_assets.check_completeness
    monkeypatch.setattr(extract_assets, "check_completeness",
                        lambda listings, expected, read: guard(listings, expected, read - 1))
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        before = file_digest(database)
        outcome = run_sync()
    assert not outcome.success
    shared = len(org.shared_workspaces())
    incomplete = [check for check in outcome.failed_checks if ":complete_read: Incomplete read" in check]
    assert sorted(check.split(":complete_read")[0] for check in incomplete) == [
        "raw/org_members", "raw/workspace_memberships"]
    assert all(f"read the memberships of {shared - 1} of {shared} shared workspaces" in c for c in incomplete)
    assert not [check for check in outcome.failed_checks if "shrink_guard" in check]
    assert file_digest(database) == before


def test_the_shrink_guard_names_the_workspaces_no_longer_listed_as_shared(monkeypatch, org, database):
    # Deleting two workspaces drops most of the workspace grants: maybe real, so the guard says
    # which workspaces went, with their grants, for the operator to decide.
    gone = sorted(org.shared_workspaces(), key=lambda ws: -len(ws.memberships))[:2]
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        for workspace in gone:
            org.delete_workspace(workspace.id)
        blocked = run_sync()
    assert not blocked.success
    check = next(check for check in blocked.failed_checks if "shrink_guard" in check and "workspace_grants fell" in check)
    assert "2 workspace(s) shared at that sync are no longer listed as shared" in check
    for workspace in gone:
        assert f"{workspace.display_name!r} ({len(workspace.memberships)} grants)" in check


def test_per_workspace_route_gives_the_same_tables(monkeypatch, org, tmp_path, first_sync):
    enriched_db = first_sync[0]  # the enriched members route, as every sync takes when it can
    fallback_db = tmp_path / "fallback" / "access.duckdb"
    with SandboxServer(org, enriched_route=False) as sandbox:
        point_at(monkeypatch, sandbox, fallback_db)
        outcome = run_sync()
        assert outcome.success, outcome.failure
        # One listing each for members and invites, then one per shared workspace.
        workspace_calls = sandbox.requests_matching(
            method="GET", path_prefix="/api/v1/workspaces/current/members"
        )
        assert len(workspace_calls) == len(org.shared_workspaces())
        assert all(call.tenant_id for call in workspace_calls)
    compared = {
        # The enriched route has display names only (full_name falls back to them).
        "users": "user_id, org_identity_id, email, is_disabled, org_role_id, created_at",
        "workspaces": "workspace_id, display_name, tenant_handle, created_at",
        "pending_invites": "invite_id, email, org_role_id, created_at",
        "entitlements": "entitlement_id, entitlement_type, role_id, workspace_id, is_provisionable",
    }
    for table, columns in compared.items():
        sql = f"SELECT {columns} FROM main.{table} ORDER BY ALL"
        assert query(enriched_db, sql) == query(fallback_db, sql), table
    assert actual_workspace_grants(enriched_db) == actual_workspace_grants(fallback_db)
    assert query(fallback_db, "SELECT membership_route FROM main.sync_runs") == [("workspace_members",)]


ANALYST = """
import sys, duckdb
conn = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read_only")
print(conn.execute("SELECT count(*) FROM main.users").fetchone()[0], flush=True)
sys.stdin.readline()
print(conn.execute("SELECT count(*) FROM main.users").fetchone()[0], flush=True)
"""


# Read-write is what `duckdb <file>` and a notebook's `duckdb.connect(file)` open by default: the
# session holds DuckDB's exclusive lock on the file, so no other process can even open it read-only.
@pytest.mark.parametrize("mode", ["read_only", "read_write"])
def test_sync_while_an_analyst_holds_the_database_open(monkeypatch, org, database, mode):
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        # Another process, as an analyst's notebook would be, holds the database open.
        analyst = subprocess.Popen(
            [sys.executable, "-c", ANALYST, str(database), mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            users_before = int(analyst.stdout.readline())
            org.add_member("late.joiner@example.com", "Late Joiner")
            outcome = run_sync()
            assert outcome.success, outcome.failure
            # The open session keeps reading its copy; a new one sees the new sync.
            out, _ = analyst.communicate("\n", timeout=30)
            assert int(out.strip()) == users_before
        finally:
            analyst.kill()
    assert query(database, "SELECT count(*) FROM main.users")[0][0] == users_before + 1


def test_a_sync_stopped_by_the_shrink_guard_records_why_and_the_fix(monkeypatch, org, database):
    # What the sync_runs row and sync.failed say of a run the Dagster UI or the schedule
    # launched: Dagster's own failure for a blocking check names only the check.
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        for member in org.active_members()[: len(org.active_members()) // 2]:
            org.remove_member(member.ls_user_id)
        blocked = run_sync()
    assert not blocked.success
    [(failure,)] = query(AccessDatabase(database).working_path,
                         "SELECT failure FROM main.sync_runs WHERE sync_id = ?", [blocked.run_id])
    assert failure.startswith("raw_members: raw/org_members:shrink_guard, raw/workspace_memberships:shrink_guard: ")
    assert "users fell from 40" in failure and "accept_shrink" in failure


def test_the_organization_id_is_recorded_as_langsmith_writes_it_however_it_was_set(monkeypatch, tmp_path):
    # A secret file's newline, quotes and capitals: the same org, recorded in one spelling (the
    # workspaces' own), so analysts can join on it and the database's owner reads as the org.
    with SandboxServer(generate_org(seed=3, members=5, workspaces=1)) as sandbox:
        database = tmp_path / "access.duckdb"
        point_at(monkeypatch, sandbox, database)
        monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", f'"{sandbox.organization_id.upper()}"\n')
        outcome = run_sync()
    assert outcome.success, outcome.failure
    assert query(database, "SELECT DISTINCT organization_id FROM main.sync_runs") == [(sandbox.organization_id,)]
    assert query(database, "SELECT DISTINCT organization_id FROM main.workspaces") == [(sandbox.organization_id,)]


def test_a_dbt_build_that_fails_in_a_sync_fails_the_run_and_publishes_nothing(monkeypatch, org, database):
    # dbt failing a model inside the sync's transform step (here a raw table lost from the
    # scratch copy before dbt starts): the step fails saying so, nothing is published, and the
    # run's sync_runs row says why. Without the step's own failure, the run would read as a
    # success while the analysts' tables silently stopped changing.
    real_build = transform_assets.build

    def build_after_losing_a_raw_table(scratch_path, *args, **kwargs):
        with duckdb.connect(str(scratch_path)) as conn:
            conn.execute("DROP TABLE raw.roles")
        return real_build(scratch_path, *args, **kwargs)

    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        before = file_digest(database)
        monkeypatch.setattr(transform_assets, "build", build_after_losing_a_raw_table)
        failed = run_sync()
    assert not failed.success
    assert failed.failure.startswith("access_tables: dbt build") and "1 node(s) failed" in failed.failure
    assert any("raw.roles" in error or "roles does not exist" in error for error in failed.dbt_errors), failed
    # The catalog shows the model that failed, and what dbt skipped after it, as not
    # materialized by this run; the extracts and the models that built, as materialized.
    materialized = {event.asset_key.to_user_string() for event in failed.events
                    if event.event_type_value == "ASSET_MATERIALIZATION"}
    assert {"raw/roles", "main/workspaces"} <= materialized, materialized
    assert not {"staging/stg_langsmith__roles", "main/roles", "main/grants"} & materialized, materialized
    assert file_digest(database) == before
    [(status, failure)] = query(AccessDatabase(database).working_path,
                                "SELECT status, failure FROM main.sync_runs WHERE sync_id = ?", [failed.run_id])
    assert status == "failed" and failure.startswith("access_tables: "), failure

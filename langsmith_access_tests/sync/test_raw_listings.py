"""The sync's read steps on their own, against the sandbox over HTTP, on a scratch database (no
Dagster, no dbt): the workspace listing and the org info, as the raw tables dbt reads hold them."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import duckdb
import pytest

from langsmith_access.langsmith import LangSmithClient
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.settings import ClientSettings, Secret
from langsmith_access.store.schema import ensure_schema, record_membership_read
from langsmith_access.store.sections import ensure_section_tables, section_reads
from langsmith_access.sync.extract import (
    ENRICHED_ROUTE,
    PER_WORKSPACE_ROUTE,
    count_members,
    get_roles,
    get_workspaces,
    load_members,
    load_raw,
    transform_roles,
    transform_workspaces,
)
from langsmith_access.sync.org_info import load_org_info
from langsmith_access_tests.helpers import expected_workspace_grants, point_at, query, run_sync

AT = datetime(2026, 11, 28, tzinfo=UTC)


def client_of(sandbox: SandboxServer) -> LangSmithClient:
    return LangSmithClient(ClientSettings(api_key=Secret(sandbox.api_key), organization_id=sandbox.organization_id,
                                          endpoint=sandbox.url))


def test_deleted_and_personal_workspaces_are_read_and_their_memberships_are_no_grants(tmp_path):
    """The workspace listing keeps deleted and personal workspaces (dbt filters them, visibly),
    so memberships the members' listing still gives there are known rows, never a refusal, and
    never counted as grants by the shrink guard."""
    org = generate_org(seed=7, members=15, workspaces=3, personal_workspaces=2, deleted_workspaces=1)
    deleted = [w.id for w in org.all_workspaces() if w.is_deleted]
    assert deleted and any(w.is_personal for w in org.all_workspaces())
    with SandboxServer(org) as sandbox, client_of(sandbox) as client, \
            duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        load_raw(conn, "roles", transform_roles(get_roles(client), "sync-1", AT))
        load_raw(conn, "workspaces", transform_workspaces(get_workspaces(client), "sync-1", AT))
        load_members(client, conn, sync_id="sync-1", route=ENRICHED_ROUTE,
                     shared_workspace_ids=[w.id for w in org.shared_workspaces()])
        listed = set(conn.execute("SELECT workspace_id, is_personal, is_deleted FROM raw.workspaces").fetchall())
        in_deleted = conn.execute("SELECT count(*) FROM raw.workspace_memberships WHERE list_contains(?, workspace_id)",
                                  [deleted]).fetchone()[0]
        counts = count_members(conn)
        with_logins = conn.execute("SELECT ls_user_id FROM raw.org_members WHERE login_methods <> '[]'").fetchall()
    # The enriched route's rows keep each member's login methods.
    assert {u for (u,) in with_logins} == {m.ls_user_id for m in org.active_members() if m.linked_login_methods}
    assert listed == {(w.id, w.is_personal, w.is_deleted) for w in org.all_workspaces()}
    assert in_deleted > 0
    grants = sum(len(w.memberships) for w in org.shared_workspaces())
    assert counts.workspace_grants == grants < counts.workspace_memberships


def org_info_read(tmp_path, org, route: str, route_reason: str, sync_id: str = "sync-1"):
    """``load_org_info`` in sync ``sync_id`` after the members were read by ``route`` (and
    recorded so) in sync ``sync-1``."""
    with SandboxServer(org) as sandbox, client_of(sandbox) as client, \
            duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        ensure_section_tables(conn)
        load_raw(conn, "roles", transform_roles(get_roles(client), "sync-1", AT))
        load_raw(conn, "workspaces", transform_workspaces(get_workspaces(client), "sync-1", AT))
        load_members(client, conn, sync_id="sync-1", route=route,
                     shared_workspace_ids=[w.id for w in org.shared_workspaces()])
        record_membership_read(conn, sync_id="sync-1", membership_route=route, route_reason=route_reason,
                               anonymity_restricted=False, withheld_values_kept=0)
        read = load_org_info(client, conn, sync_id=sync_id, job="sync", fetched_at=AT)
        settings = dict(conn.execute("SELECT setting, value FROM raw.org_settings").fetchall())
        return read, settings, section_reads(conn, sync_id)


@pytest.mark.parametrize("route", [ENRICHED_ROUTE, PER_WORKSPACE_ROUTE])
def test_the_org_info_loads_the_settings_and_says_what_became_of_scim_groups(tmp_path, route):
    org = generate_org(seed=8, members=15, workspaces=3)
    pairs = sum(len(m.scim_groups) for m in org.active_members())
    # (member, group) pairs, neither members nor members with a group.
    assert pairs not in (len(org.active_members()), len([m for m in org.active_members() if m.scim_groups]))
    read, settings, recorded = org_info_read(tmp_path, org, route, "asked for by the test")
    assert read.settings == len(settings) and settings["tier"] == read.info.tier
    assert settings["scim_group_name_separator"] == org.settings.scim_group_name_separator
    assert recorded == [read.scim_groups]
    if route == ENRICHED_ROUTE:
        assert (read.scim_groups.status, read.scim_groups.rows) == ("read", pairs)
    else:
        assert read.scim_groups.status == "skipped"
        assert "workspace_members route (asked for by the test)" in read.scim_groups.reason


def test_a_run_reading_the_org_info_alone_judges_scim_groups_by_the_route_of_the_members_on_file(tmp_path):
    # A run that materializes raw/org_settings without raw/org_members (a partial run) reads no
    # members: the members on file, and the route they were read by, are an earlier sync's.
    # Their per-workspace rows carry no groups, so the section was not read, not "read, 0 rows".
    org = generate_org(seed=8, members=15, workspaces=3)
    read, _, recorded = org_info_read(tmp_path, org, PER_WORKSPACE_ROUTE, "asked for by the test", sync_id="sync-2")
    assert recorded == [read.scim_groups]
    assert read.scim_groups.status == "skipped", read.scim_groups
    assert "workspace_members route (asked for by the test)" in read.scim_groups.reason


def test_a_run_reading_the_org_info_before_any_members_read_says_scim_groups_were_not_read(tmp_path):
    # A partial run on a new database: no members, no route on file. "read, 0 rows" would say
    # the org has no SCIM groups.
    org = generate_org(seed=8, members=15, workspaces=3)
    assert any(m.scim_groups for m in org.active_members())
    with SandboxServer(org) as sandbox, client_of(sandbox) as client, \
            duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        ensure_section_tables(conn)
        read = load_org_info(client, conn, sync_id="sync-1", job="sync", fetched_at=AT)
        recorded = section_reads(conn, "sync-1")
    assert recorded == [read.scim_groups]
    assert read.scim_groups.status == "skipped", read.scim_groups
    assert "no read of the members is on file" in read.scim_groups.reason


@pytest.mark.parametrize("restricted", [True, False])
def test_a_restricted_partial_enriched_answer_is_recorded_on_the_per_workspace_read(tmp_path, restricted):
    """The enriched route's one page said both that it did not list every workspace and whether
    it was anonymity-restricted: the per-workspace read that follows carries the latter on."""
    org = generate_org(seed=7, members=10, workspaces=2)
    with SandboxServer(org, key_role="org-user", anonymity_restricted=restricted) as sandbox, \
            client_of(sandbox) as client, duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        load_raw(conn, "roles", transform_roles(get_roles(client), "sync-1", AT))
        load_raw(conn, "workspaces", transform_workspaces(get_workspaces(client), "sync-1", AT))
        read = load_members(client, conn, sync_id="sync-1",
                            shared_workspace_ids=[w.id for w in org.shared_workspaces()])
    assert read.route == PER_WORKSPACE_ROUTE and read.fallback_reason
    assert read.anonymity_restricted is restricted


def test_the_per_workspace_route_asked_for_replaces_every_membership_of_the_previous_sync(tmp_path):
    """Each workspace's listing takes back only its own rows: rows of a workspace this sync does
    not read (deleted since) must still go, or the last sync's grants outlive the workspace."""
    org = generate_org(seed=7, members=10, workspaces=2)
    with SandboxServer(org) as sandbox, client_of(sandbox) as client, \
            duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        load_raw(conn, "roles", transform_roles(get_roles(client), "sync-1", AT))
        load_raw(conn, "workspaces", transform_workspaces(get_workspaces(client), "sync-1", AT))
        conn.execute("INSERT INTO raw.workspace_memberships (workspace_id, ls_user_id) VALUES ('gone', 'someone')")
        load_members(client, conn, sync_id="sync-1", route=PER_WORKSPACE_ROUTE,
                     shared_workspace_ids=[w.id for w in org.shared_workspaces()])
        left = conn.execute("SELECT count(*) FROM raw.workspace_memberships WHERE workspace_id = 'gone'").fetchone()
    assert left == (0,)


def test_a_sync_through_dagster_records_that_the_members_answer_was_anonymity_restricted(tmp_path, monkeypatch):
    """What the members' step read reaches the run's sync_runs row (the route, and whether the
    answer withheld emails and names) and its assets' metadata (each raw table's row count)."""
    org = generate_org(seed=7, members=10, workspaces=2, personal_workspaces=2, deleted_workspaces=1)
    database = tmp_path / "access.duckdb"
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # a real instance: the run metadata is read back
    with SandboxServer(org, anonymity_restricted=True) as sandbox:
        point_at(monkeypatch, sandbox, database)
        outcome = run_sync()
    assert outcome.success, outcome.failure
    assert query(database, "SELECT membership_route, anonymity_restricted FROM main.sync_runs") == [
        (ENRICHED_ROUTE, True)]
    # Each raw table's asset counts its own rows (the Dagster UI's row count).
    instance = dg.DagsterInstance.get()
    for table in ("org_members", "pending_invites", "workspace_memberships"):
        [latest] = instance.fetch_materializations(dg.AssetKey(["raw", table]), limit=1).records
        [(rows,)] = query(database, f"SELECT count(*) FROM raw.{table}")
        assert latest.asset_materialization.metadata["dagster/row_count"] == dg.IntMetadataValue(rows), table
    # The workspace listing's asset says how many it keeps: shared ones apart from personal and deleted.
    [latest] = instance.fetch_materializations(dg.AssetKey(["raw", "workspaces"]), limit=1).records
    metadata = latest.asset_materialization.metadata
    assert {kind: metadata[kind] for kind in ("shared", "personal", "deleted")} == {
        "shared": dg.IntMetadataValue(len(org.shared_workspaces())),
        "personal": dg.IntMetadataValue(sum(w.is_personal for w in org.all_workspaces())),
        "deleted": dg.IntMetadataValue(sum(w.is_deleted for w in org.all_workspaces())),
    }
    assert len(org.shared_workspaces()) == 2 < len(org.all_workspaces())
    assert metadata["personal"] != metadata["deleted"]  # told apart
    # The members' three assets say how they were read; the members' and the memberships' what
    # the shrink guard counts: the disabled members, the grants in shared workspaces.
    [(route,)] = query(database, "SELECT membership_route FROM main.sync_runs")
    for table in ("org_members", "pending_invites", "workspace_memberships"):
        [latest] = instance.fetch_materializations(dg.AssetKey(["raw", table]), limit=1).records
        metadata = latest.asset_materialization.metadata
        assert metadata["membership_route"] == dg.TextMetadataValue(route), table
        assert metadata["anonymity_restricted"] == dg.BoolMetadataValue(True), table
    [latest] = instance.fetch_materializations(dg.AssetKey(["raw", "org_members"]), limit=1).records
    disabled = sum(m.is_disabled for m in org.active_members())
    assert disabled and latest.asset_materialization.metadata["disabled"] == dg.IntMetadataValue(disabled)
    [latest] = instance.fetch_materializations(dg.AssetKey(["raw", "workspace_memberships"]), limit=1).records
    grants = len(expected_workspace_grants(org))
    [(memberships,)] = query(database, "SELECT count(*) FROM raw.workspace_memberships")
    assert grants < memberships  # the personal and deleted workspaces' members are no grants
    assert latest.asset_materialization.metadata["in_shared_workspaces"] == dg.IntMetadataValue(grants)
    [latest] = instance.fetch_materializations(dg.AssetKey(["raw", "roles"]), limit=1).records
    assert latest.asset_materialization.metadata["dagster/row_count"] == dg.IntMetadataValue(len(org.roles))
    # The org info is the last request: its asset's API numbers are the run's, as sync_runs has them.
    [latest] = instance.fetch_materializations(dg.AssetKey(["raw", "org_settings"]), limit=1).records
    metadata = latest.asset_materialization.metadata
    [(calls, retries)] = query(database, "SELECT api_calls, api_retries FROM main.sync_runs")
    assert calls > 0 and (metadata["api_calls_so_far"], metadata["api_retries_so_far"]) == (
        dg.IntMetadataValue(calls), dg.IntMetadataValue(retries))


def test_a_sync_through_dagster_takes_the_membership_route_its_run_config_asks_for(tmp_path, monkeypatch):
    org = generate_org(seed=7, members=10, workspaces=2)
    database = tmp_path / "access.duckdb"
    with SandboxServer(org) as sandbox:  # the enriched route answers: "auto" would take it
        point_at(monkeypatch, sandbox, database)
        outcome = run_sync(membership_route=PER_WORKSPACE_ROUTE)
    assert outcome.success, outcome.failure
    assert query(database, "SELECT membership_route, route_reason FROM main.sync_runs") == [
        (PER_WORKSPACE_ROUTE, "asked for by the run (membership_route)")]

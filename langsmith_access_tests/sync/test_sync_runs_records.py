"""What a run writes into ``main.sync_runs`` (store/sync_runs.py), on a real DuckDB file: the
membership route it names, a row recorded twice, the rows a run that never got the writer
lease left for the next one, and which spellings name one organization."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from langsmith_access.names import INVENTORY_JOB, SYNC_JOB
from langsmith_access.settings import SettingsError
from langsmith_access.store.schema import ensure_schema, record_membership_read
from langsmith_access.store.sections import SectionRead, record_section_reads
from langsmith_access.store.sync_runs import (
    COUNTED_TABLES,
    OtherOrganizationError,
    check_organization,
    database_elsewhere,
    defer_failed_run,
    deferred_failed_runs,
    organization_of,
    record_failed_run,
    record_sync_run,
    recorded_sync_run,
    remove_abandoned_drafts,
    same_organization,
    succeeded_sync_run,
)

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ORG_ID = "0a1b2c3d-0000-4000-8000-00000000cafe"


def _published(conn: duckdb.DuckDBPyConnection) -> None:
    """The Python-owned tables, and the counted marts as dbt would leave them (one row each)."""
    ensure_schema(conn)
    for table in COUNTED_TABLES:
        conn.execute(f"CREATE TABLE main.{table} AS SELECT 'workspace_role' AS entitlement_type")


def _record(conn: duckdb.DuckDBPyConnection, sync_id: str, job: str = SYNC_JOB) -> dict:
    record_sync_run(conn, sync_id=sync_id, started_at=AT, finished_at=AT + timedelta(seconds=3),
                    api_stats={"calls": 4}, job=job)
    return recorded_sync_run(conn, sync_id)


def test_a_sync_that_listed_no_workspace_member_still_names_its_route_and_why(tmp_path):
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        _published(conn)
        record_membership_read(conn, sync_id="s1", membership_route="workspace_members",
                               route_reason="the key may not list every workspace's members",
                               anonymity_restricted=True, withheld_values_kept=0)
        run = _record(conn, "s1")
    assert (run["membership_route"], run["route_reason"], run["anonymity_restricted"]) == (
        "workspace_members", "the key may not list every workspace's members", True)
    assert (run["users"], run["grants"], run["workspace_grants"], run["duration_seconds"]) == (1, 1, 1, 3.0)


def test_an_inventory_run_names_no_membership_route_of_its_own(tmp_path):
    # The inventory reads no members: the memberships and the route on file are the last sync's.
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        _published(conn)
        conn.execute("INSERT INTO raw.workspace_memberships (sync_id, workspace_id, ls_user_id, source) "
                     "VALUES ('s1', 'ws-1', 'u-1', 'enriched_members')")
        record_membership_read(conn, sync_id="s1", membership_route="enriched_members", route_reason=None,
                               anonymity_restricted=False, withheld_values_kept=0)
        inventory = _record(conn, "inventory-1", job=INVENTORY_JOB)
        assert (inventory["membership_route"], inventory["route_reason"], inventory["job"]) == (
            None, None, INVENTORY_JOB)
        # A sync recorded by a release that kept no membership_read is named by its memberships.
        conn.execute("DELETE FROM raw.membership_read")
        assert _record(conn, "s0")["membership_route"] == "enriched_members"


def test_a_run_recorded_again_keeps_one_row_the_last_one(tmp_path):
    # A deferred row whose file could not be removed is recorded again by the next run.
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        ensure_schema(conn)
        for failure in ("first words", "last words"):
            record_failed_run(conn, sync_id="r1", started_at=AT, finished_at=AT, api_stats=None,
                              job=INVENTORY_JOB, failure=failure)
        assert conn.execute("SELECT sync_id, status, job, failure FROM main.sync_runs").fetchall() == [
            ("r1", "failed", INVENTORY_JOB, "last words")]


def test_a_database_whose_last_sync_listed_no_workspace_is_known_by_its_runs(tmp_path):
    ours, theirs = "0a1b2c3d-0000-4000-8000-00000000cafe", "0a1b2c3d-0000-4000-8000-00000000beef"
    path = tmp_path / "access.duckdb"
    with duckdb.connect(str(path)) as conn:
        _published(conn)
        conn.execute("CREATE OR REPLACE TABLE main.workspaces (organization_id VARCHAR)")  # none shared
        record_sync_run(conn, sync_id="s1", started_at=AT, finished_at=AT, api_stats={}, organization_id=ours)
        assert organization_of(conn) == ours
        check_organization(conn, path, ours.upper())
        with pytest.raises(OtherOrganizationError, match=f"holds organization {ours}'s data"):
            check_organization(conn, path, theirs)


def test_deferred_runs_are_read_oldest_first_and_files_that_are_not_ones_are_left_alone(tmp_path):
    directory = tmp_path / "deferred"
    later = defer_failed_run(directory, sync_id="a-later", started_at=AT, finished_at=AT + timedelta(hours=2),
                             job=SYNC_JOB, failure="busy")
    earlier = defer_failed_run(directory, sync_id="b-earlier", started_at=AT, finished_at=AT + timedelta(hours=1),
                               job=INVENTORY_JOB, failure="busy too", organization_id=ORG_ID)
    # A row written without an offset (by hand, or an older release) is a UTC time.
    naive = directory / "c-naive.json"
    naive.write_text(json.dumps({"sync_id": "c-naive", "job": SYNC_JOB, "failure": "x",
                                 "started_at": "2026-12-01T11:00:00", "finished_at": "2026-12-01T11:30:00"}))
    broken = [directory / "broken.json", directory / "missing-keys.json", directory / "a-list.json"]
    broken[0].write_text("{")
    broken[1].write_text(json.dumps({"sync_id": "x"}))
    broken[2].write_text("[]")

    found = deferred_failed_runs(directory)

    assert [(path, row["sync_id"]) for path, row in found] == [
        (naive, "c-naive"), (earlier, "b-earlier"), (later, "a-later")]
    assert found[0][1]["finished_at"] == datetime(2026, 12, 1, 11, 30, tzinfo=UTC)
    assert found[1][1] == {"sync_id": "b-earlier", "job": INVENTORY_JOB, "failure": "busy too",
                           "started_at": AT, "finished_at": AT + timedelta(hours=1), "organization_id": ORG_ID}
    # The org a row was for; not said by a row an older release left, nor by one deferred without it.
    assert found[0][1]["organization_id"] is None and found[2][1]["organization_id"] is None
    assert all(path.exists() for path in broken)
    assert deferred_failed_runs(tmp_path / "none") == []


def test_one_organization_spelled_two_ways_is_one_organization():
    canonical = "0a1b2c3d-0000-4000-8000-00000000cafe"
    for spelling in ("{0A1B2C3D-0000-4000-8000-00000000CAFE}", " 0a1b2c3d00004000800000000000cafe ",
                     "urn:uuid:0a1b2c3d-0000-4000-8000-00000000cafe"):
        assert same_organization(spelling, canonical), spelling
    assert same_organization(" Acme-Org ", "acme-org")  # not a UUID: compared as text, any case
    assert not same_organization("0a1b2c3d-0000-4000-8000-00000000caff", canonical)
    assert not same_organization("acme-org", "acme-org-2")


def test_a_succeeded_sync_without_its_row_is_an_error_naming_it(tmp_path):
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        ensure_schema(conn)
        assert recorded_sync_run(conn, "s1") is None
        with pytest.raises(RuntimeError, match="sync s1 succeeded but main.sync_runs has no row for it"):
            succeeded_sync_run(conn, "s1")


def test_removing_abandoned_drafts_never_raises_for_a_file_it_cannot_read(tmp_path):
    directory = tmp_path / "deferred"
    directory.mkdir()
    dangling = directory / ".gone-run.0a1b2c3d.tmp"
    dangling.symlink_to(tmp_path / "removed meanwhile")  # stat() fails, as for a file removed meanwhile
    old = directory / ".died-run.4e5f6a7b.tmp"
    old.write_text("{")
    os.utime(old, (0, 0))
    assert remove_abandoned_drafts(directory) == [old]
    assert dangling.is_symlink() and not old.exists()


def test_a_failed_run_whose_api_use_is_not_known_leaves_those_columns_null(tmp_path):
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        ensure_schema(conn)
        record_failed_run(conn, sync_id="r1", started_at=AT, finished_at=AT, api_stats=None,
                          job=SYNC_JOB, failure="never got the lease")
        run = recorded_sync_run(conn, "r1")
    assert run is not None
    assert [run[c] for c in ("api_calls", "api_retries", "api_rate_limited", "api_wait_seconds")] == [None] * 4


def test_the_database_belongs_to_the_org_of_its_latest_successful_run_else_its_workspaces(tmp_path):
    first, latest, failed = (f"0a1b2c3d-0000-4000-8000-00000000000{n}" for n in (1, 2, 3))
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        _published(conn)
        conn.execute("CREATE OR REPLACE TABLE main.workspaces (organization_id UUID)")
        conn.execute("INSERT INTO main.workspaces VALUES (?)", [first])
        # No run has named its org yet (a database from before runs recorded it): the workspaces'.
        assert organization_of(conn) == first
        record_sync_run(conn, sync_id="s1", started_at=AT, finished_at=AT, api_stats={}, organization_id=first)
        record_sync_run(conn, sync_id="s2", started_at=AT, finished_at=AT + timedelta(hours=1), api_stats={},
                        organization_id=latest)
        # A run that failed wrote nothing of its org's data: it names no owner.
        record_failed_run(conn, sync_id="f3", started_at=AT, finished_at=AT + timedelta(hours=2), api_stats=None,
                          job=SYNC_JOB, failure="refused", organization_id=failed)
        assert organization_of(conn) == latest
        # Its row still says which org it was for (README: every run's row names its org).
        assert [r["organization_id"] for r in [recorded_sync_run(conn, "f3")] if r] == [failed]


def test_a_draft_younger_than_the_cutoff_may_be_another_runs_about_to_be_renamed(tmp_path):
    directory = tmp_path / "deferred"
    directory.mkdir()
    young = directory / ".busy-run.0a1b2c3d.tmp"
    young.write_text("{")
    assert remove_abandoned_drafts(directory) == []
    assert young.exists()


def test_a_runs_api_use_and_duration_are_recorded_each_in_its_column(tmp_path):
    stats = {"calls": 41, "retries": 3, "rate_limited": 2, "wait_seconds": 7.25}
    columns = ("api_calls", "api_retries", "api_rate_limited", "api_wait_seconds", "duration_seconds")
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        _published(conn)
        record_sync_run(conn, sync_id="s1", started_at=AT, finished_at=AT + timedelta(seconds=2.5), api_stats=stats)
        record_failed_run(conn, sync_id="f1", started_at=AT, finished_at=AT + timedelta(seconds=1.25),
                          api_stats=stats, job=SYNC_JOB, failure="members: 503 after 5 tries")
        succeeded, failed = recorded_sync_run(conn, "s1"), recorded_sync_run(conn, "f1")
    assert succeeded is not None and failed is not None
    assert [succeeded[c] for c in columns] == [41, 3, 2, 7.25, 2.5]
    assert [failed[c] for c in columns] == [41, 3, 2, 7.25, 1.25]


def test_a_later_run_that_named_no_organization_leaves_the_database_to_the_one_named_before(tmp_path):
    # A row without an organization (one an older release wrote) says nothing of whose data it is:
    # neither it nor a workspace row without one hides the organization that is named.
    ours = "0a1b2c3d-0000-4000-8000-00000000cafe"
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        _published(conn)
        conn.execute("CREATE OR REPLACE TABLE main.workspaces (organization_id VARCHAR)")
        conn.execute("INSERT INTO main.workspaces VALUES (NULL), (?)", [ours])
        assert organization_of(conn) == ours
        record_sync_run(conn, sync_id="s1", started_at=AT, finished_at=AT, api_stats={}, organization_id=ours)
        record_sync_run(conn, sync_id="s2", started_at=AT, finished_at=AT + timedelta(hours=1), api_stats={})
        conn.execute("DELETE FROM main.workspaces")
        assert organization_of(conn) == ours


def test_an_organization_id_that_is_a_pasted_key_is_refused_as_no_uuid_and_never_quoted(tmp_path):
    # Commands that call no API leave LANGSMITH_ORGANIZATION_ID unchecked: a key pasted there must
    # not be printed as "not organization lsv2_sk_...'s" by the refusal of another org's database.
    key = "lsv2_sk_" + "0123456789abcdef" * 2 + "_0123456789"
    path = tmp_path / "access.duckdb"
    with duckdb.connect(str(path)) as conn:
        _published(conn)
        record_sync_run(conn, sync_id="s1", started_at=AT, finished_at=AT, api_stats={},
                        organization_id="0a1b2c3d-0000-4000-8000-00000000cafe")
        with pytest.raises(SettingsError, match="LANGSMITH_ORGANIZATION_ID must be the organization's UUID") as refused:
            check_organization(conn, path, key)
    assert "0123456789abcdef" not in str(refused.value)


def test_a_runs_row_says_which_sections_it_skipped_and_what_it_read_of_the_others_and_only_its_own(tmp_path):
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        _published(conn)
        record_section_reads(conn, sync_id="inv-1", job=INVENTORY_JOB, reads=[
            SectionRead.read("credentials", 7), SectionRead.skipped("sso_settings", "no SSO"),
            SectionRead.skipped("audit_events", "the plan has no audit log"), SectionRead.read("access_policies", 0)])
        # Another run's reads are not this run's.
        record_section_reads(conn, sync_id="inv-0", job=INVENTORY_JOB, reads=[
            SectionRead.skipped("sso_settings", "no SSO"), SectionRead.read("resource_tags", 3)])
        run = _record(conn, "inv-1", job=INVENTORY_JOB)
    # As JSON text with sorted keys: the same reads give the same text, run after run.
    assert run["skipped_sections"] == json.dumps(
        {"audit_events": "the plan has no audit log", "sso_settings": "no SSO"})
    assert run["section_rows"] == json.dumps({"access_policies": 0, "credentials": 7})


def test_an_old_deferred_row_is_never_taken_for_an_abandoned_draft_nor_a_draft_for_a_deferred_row(tmp_path):
    # A run deferred hours ago (the next writer has not come yet) keeps its row until recorded;
    # a draft left aside is no deferred row, even one whose JSON is whole.
    directory = tmp_path / "deferred"
    deferred = defer_failed_run(directory, sync_id="r1", started_at=AT, finished_at=AT, job=SYNC_JOB,
                                failure="busy")
    draft = directory / ".r2.0a1b2c3d.tmp"
    draft.write_text(deferred.read_text().replace("r1", "r2"))
    os.utime(deferred, (0, 0))
    assert [row["sync_id"] for _, row in deferred_failed_runs(directory)] == ["r1"]
    # A row without its failure says nothing of why the run failed: not one of ours.
    (directory / "no-failure.json").write_text(json.dumps(
        {"sync_id": "r3", "job": SYNC_JOB, "started_at": AT.isoformat(), "finished_at": AT.isoformat()}))
    assert [row["sync_id"] for _, row in deferred_failed_runs(directory)] == ["r1"]
    os.utime(draft, (0, 0))
    assert remove_abandoned_drafts(directory) == [draft]
    assert deferred.exists()


def test_ensuring_the_schema_again_keeps_every_run_and_every_raw_row(tmp_path):
    # Every run starts with ensure_schema: the history it keeps is never replaced by it.
    with duckdb.connect(str(tmp_path / "access.duckdb")) as conn:
        ensure_schema(conn)
        record_failed_run(conn, sync_id="r1", started_at=AT, finished_at=AT, api_stats=None, job=SYNC_JOB,
                          failure="busy")
        conn.execute("INSERT INTO raw.provisioning_observations (observation_id, ls_user_id) VALUES ('o1', 'u1')")
        record_membership_read(conn, sync_id="s1", membership_route="enriched_members", route_reason=None,
                               anonymity_restricted=False, withheld_values_kept=0)
        record_section_reads(conn, sync_id="s1", job=SYNC_JOB, reads=[SectionRead.read("scim_groups", 2)])
        ensure_schema(conn)
        assert [r["failure"] for r in [recorded_sync_run(conn, "r1")] if r] == ["busy"]
        assert conn.execute("SELECT observation_id FROM raw.provisioning_observations").fetchall() == [("o1",)]
        assert conn.execute("SELECT sync_id FROM raw.membership_read").fetchall() == [("s1",)]
        assert conn.execute("SELECT section, rows FROM raw.section_reads").fetchall() == [("scim_groups", 2)]


def test_the_org_held_elsewhere_is_found_in_another_folder_only_whatever_its_spelling(tmp_path):
    # An orgs file's layout, <root>/<slug>/<file>: the org's own folder is never "elsewhere" (a
    # refusal would tell the org to take its own slug), a file that is no database is passed
    # over, and the id is matched in any spelling (an older release's database kept it as it was).
    ours = "0a1b2c3d-0000-4000-8000-00000000cafe"
    own, other, damaged = (tmp_path / slug / "access.duckdb" for slug in ("us", "us-old", "broken"))
    for path in (own, other):
        path.parent.mkdir()
        with duckdb.connect(str(path)) as conn:
            _published(conn)
            record_sync_run(conn, sync_id="s1", started_at=AT, finished_at=AT, api_stats={}, organization_id=ours)
    damaged.parent.mkdir()
    damaged.write_bytes(b"not a database" * 300)
    assert database_elsewhere(own, tmp_path, ours.upper()) == (other, ours)
    other.unlink()
    assert database_elsewhere(own, tmp_path, ours) is None

"""This version on a database an older release made (the same file, upgraded in place).

Old code never runs here: each older release's tables are a small captured fixture under
data/upgrade/<release>/ (DDL and a few of the rows it wrote), loaded into a fresh DuckDB file;
00211ee's folder also holds the review sheet that release exported of the same org.
"""

import csv
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from langsmith_access import runner
from langsmith_access.api import list_requests, provision, resolve_org
from langsmith_access.defs.inventory.definitions import waits_for_first_sync
from langsmith_access.names import INVENTORY_JOB, SYNC_JOB
from langsmith_access.provisioning.queue import ChangeRequest, submit
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.store import schema
from langsmith_access.store.database import AccessDatabase
from langsmith_access.store.schema import ensure_schema, previous_sync
from langsmith_access.store.sql import table_exists
from langsmith_access.store.sync_runs import database_elsewhere, organization_of
from langsmith_access_tests.helpers import cli_in_this_process, point_at, query

UPGRADE_DATA = Path(__file__).parent / "data" / "upgrade"


def database_of(release: str, fixture: str, database: Path) -> Path:
    """A fresh DuckDB file holding ``data/upgrade/<release>/<fixture>.sql``."""
    with duckdb.connect(str(database)) as conn:
        conn.execute((UPGRADE_DATA / release / f"{fixture}.sql").read_text())
    return database


def exported_database(release: str, database: Path) -> Path:
    """A fresh DuckDB file holding ``data/upgrade/<release>/``: that release's ``EXPORT DATABASE
    (FORMAT csv)`` of a database it synced, kept to the raw tables, the snapshots, the queue and
    sync_runs, and what grants read (staging, users, roles): the rest a build makes again."""
    folder = UPGRADE_DATA / release
    with duckdb.connect(str(database)) as conn:
        conn.execute((folder / "schema.sql").read_text())
        conn.execute((folder / "load.sql").read_text().replace("FROM '", f"FROM '{folder}/"))
    return database


def test_requests_lists_a_queue_the_first_release_wrote_before_anything_upgraded_it(tmp_path, monkeypatch):
    # `requests` reads the analysts' copy read-only: right after an upgrade it still lacks the
    # governance columns (expires_at, ...) that the next write adds.
    database = database_of("36525be", "queue", tmp_path / "langsmith_access.duckdb")
    rows = list_requests(database=database)
    assert [(r["request_seq"], r["action"], r["status"]) for r in rows] == [
        (1, "grant", "applied"), (2, "grant", "rejected"), (3, "revoke", "pending")]
    assert {r["expires_at"] for r in rows} == {None} and {r["approval_deadline"] for r in rows} == {None}
    assert [r["request_id"] for r in list_requests("pending", database=database)] == [rows[2]["request_id"]]

    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(database))
    listed = cli_in_this_process("requests")
    assert listed.returncode == 0, listed.stderr
    assert "pending           revoke Editor in Data Science for alan.turing@Example.com" in listed.stdout


def columns(database: Path, table: str) -> list[tuple[str, str]]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
                            [table]).fetchall()


def test_the_first_write_gives_the_first_releases_queue_every_column_and_keeps_its_rows(tmp_path):
    # The first write after an upgrade (here a request queued before any sync) adds in place what
    # this version's tables have that the first release's lacked, and keeps what that release wrote.
    database = database_of("36525be", "queue", tmp_path / "langsmith_access.duckdb")
    before = [(r["request_id"], r["request_seq"], r["status"], r["updated_at"]) for r in list_requests(database=database)]
    queued = submit(AccessDatabase(database), ChangeRequest("grant", "ada@example.com", "Data Science", "Editor"))
    assert queued.status == "rejected" and "run `langsmith-access sync` first" in queued.message

    fresh, later = tmp_path / "fresh.duckdb", exported_database("00211ee", tmp_path / "later.duckdb")
    with duckdb.connect(str(fresh)) as conn:
        ensure_schema(conn)
    # What a later release's tables had (the governance columns...), and the org a run was for.
    expected = {"provisioning_requests": set(columns(later, "provisioning_requests")),
                "sync_runs": set(columns(later, "sync_runs")) | {("organization_id", "VARCHAR")}}
    for table, wanted in expected.items():
        assert columns(database, table) == columns(fresh, table), table
        assert wanted <= set(columns(database, table)), (table, wanted - set(columns(database, table)))
    rows = list_requests(database=database)
    assert [(r["request_id"], r["request_seq"], r["status"], r["updated_at"]) for r in rows[:3]] == before
    assert (rows[3]["request_id"], rows[3]["request_seq"]) == (queued.request_id, 4)  # the sequence goes on
    assert {r["expires_at"] for r in rows} == {None} and {r["approval_deadline"] for r in rows} == {None}
    with duckdb.connect(str(database), read_only=True) as conn:  # its sync counts for the shrink guard
        assert previous_sync(conn) == {"sync_id": "2b77ad87-b8d3-4326-a74b-9c50a4ef9f86", "users": 40,
                                       "workspace_grants": 140}


def test_a_request_the_last_release_queued_is_applied_and_dated_when_verified_before_any_sync(tmp_path, monkeypatch):
    # 00211ee synced generate_org(seed=5, members=4, workspaces=2) and queued one grant (a role
    # change). Provisioning first, before any sync of this version: its history refresh must not
    # read tables that version never built (user_scim_groups...), and the change is dated when
    # it was verified, not at the next sync's build.
    database = exported_database("00211ee", tmp_path / "langsmith_access.duckdb")
    with SandboxServer(generate_org(seed=5, members=4, workspaces=2)) as sandbox:
        point_at(monkeypatch, sandbox, database)
        outcome = provision()
    assert outcome.success, outcome.failure
    assert query(database, "SELECT status FROM main.provisioning_requests") == [("applied",)]
    [(verified_at, valid_from)] = query(database, """
        SELECT observation.verified_at, history.valid_from
        FROM raw.provisioning_observations AS observation
        LEFT JOIN main.grant_history AS history
            ON history.user_id = observation.ls_user_id AND history.workspace_id = observation.workspace_id
            AND history.role_id = observation.role_id AND history.is_current""")
    assert valid_from == verified_at


def test_the_inventory_waits_for_this_versions_first_sync(tmp_path, monkeypatch):
    # Its build reads what this version's sync builds (effective_access, user_login_methods...),
    # which an older release's database lacks: it said "3 node(s) failed" and nothing else.
    database = exported_database("00211ee", tmp_path / "langsmith_access.duckdb")
    with SandboxServer(generate_org(seed=5, members=4, workspaces=2)) as sandbox:
        point_at(monkeypatch, sandbox, database)
        assert "the inventory waits for this version's first sync" in waits_for_first_sync(resolve_org())
        refused = runner.run_job(INVENTORY_JOB, {})
        assert not refused.success
        assert "last synced by another version of langsmith-access" in refused.failure
        assert f"launch {SYNC_JOB} for this partition first" in refused.failure
        synced = runner.run_job(SYNC_JOB, runner.sync_run_config())
        assert synced.success, synced.failure
        assert waits_for_first_sync(resolve_org()) is None
        inventory = runner.run_job(INVENTORY_JOB, {})
    assert inventory.success, inventory.failure
    # Its raw SSO settings lacked the columns a later version added: added in place, and filled.
    [(raw_columns,)] = query(database, "SELECT list(column_name) FROM information_schema.columns "
                                       "WHERE table_schema = 'raw' AND table_name = 'sso_settings'")
    assert {"has_metadata_xml", "attribute_mapping_load_error"} <= set(raw_columns)
    assert query(database, "SELECT count(*) FROM raw.sso_settings WHERE has_metadata_xml IS NOT NULL") != [(0,)]


def test_what_a_release_before_observations_provisioned_after_its_last_sync_stays_granted(tmp_path, monkeypatch):
    # 36525be wrote provisioning's changes into main.grants itself (no raw.provisioning_observations):
    # after its sync it added fatima.schroder as Viewer and removed lukasz.nowak's Editor in one
    # workspace, and left a grant pending. This version's first write is a provisioning run, whose
    # rebuild lays observations over the sync's listing: without the changes that release made
    # since, fatima's grant was taken away and lukasz's given back, both closed and reopened in
    # grant_history and listed as drift.
    database = exported_database("36525be", tmp_path / "langsmith_access.duckdb")
    workspace = "c30d8b76-28db-425e-a3b2-29f1c4069545"
    held = """SELECT g.email, g.role_id FROM main.grants AS g WHERE g.workspace_id = ? ORDER BY 1"""
    history = "SELECT grant_id, valid_from FROM main.grant_history WHERE valid_to IS NULL ORDER BY 1"
    before = query(database, held, [workspace])
    with duckdb.connect(str(database), read_only=True) as conn:
        opened = sorted(conn.execute("SELECT grant_id, dbt_valid_from FROM snapshots.grants_snapshot "
                                     "WHERE dbt_valid_to IS NULL").fetchall())
    with SandboxServer(generate_org(seed=5, members=4, workspaces=2)) as sandbox:
        point_at(monkeypatch, sandbox, database)
        outcome = provision()
    assert outcome.success, outcome.failure
    assert query(database, "SELECT status FROM main.provisioning_requests ORDER BY request_seq") == [
        ("applied",), ("applied",), ("applied",)]
    after = dict(query(database, held, [workspace]))
    assert after.pop("milosz.nowak@Example.com") != dict(before)["milosz.nowak@Example.com"]  # the new grant
    assert after == {email: role for email, role in before if email != "milosz.nowak@Example.com"}
    assert "fatima.schroder@corp.example.net" in after and "lukasz.nowak@corp.example.net" not in after
    # Every interval that was open stays open, from when it opened; only milosz's in that workspace changed.
    def not_milosz(rows):
        return [(grant_id, at) for grant_id, at in rows if not (
            grant_id.startswith(f"workspace_role:{workspace}:") and grant_id.endswith(milosz))]
    milosz = "f129c8c6-d1ca-4dc4-adfd-e4163eff8b3f"
    assert not_milosz(query(database, history)) == not_milosz(opened)
    assert query(database, "SELECT count(*) FROM main.report_unexplained_changes") == [(0,)]


def test_a_role_an_older_release_changed_after_its_last_sync_leaves_no_gap_in_grant_history(tmp_path, monkeypatch):
    # 36525be changed lukasz.nowak from Editor to Viewer after its sync (here its revoke made a
    # role change: the request, main.grants and its snapshot as that release wrote them). Its
    # snapshot dated both ends by its own build; the change was recorded at the request's settling,
    # seconds before, which closed the Editor interval there while Viewer still opened at the
    # build: lukasz held no role in between (access-at missed him), and the published end moved.
    database = exported_database("36525be", tmp_path / "langsmith_access.duckdb")
    workspace, viewer = "c30d8b76-28db-425e-a3b2-29f1c4069545", "3fd42359-92ed-4f45-9a1a-fe878b33e968"
    lukasz, fatima = "2e81d66d-346c-4e2b-a02f-daa1ad864c44", "04a012e8-677f-4139-984a-1d3a5b8e8fb2"
    with duckdb.connect(str(database)) as conn:
        conn.execute("UPDATE main.provisioning_requests SET action = 'grant', role_id = ?, role_name = 'Viewer' "
                     "WHERE request_seq = 2", [viewer])
        for table in ("main.grants", "snapshots.grants_snapshot"):  # fatima's Viewer row there, as lukasz's
            conn.execute(f"""INSERT INTO {table} SELECT * REPLACE (replace(grant_id, user_id, ?) AS grant_id,
                             ? AS user_id, 'lukasz.nowak@corp.example.net' AS email)
                             FROM {table} WHERE workspace_id = ? AND role_id = ? AND user_id = ?""",
                         [lukasz, lukasz, workspace, viewer, fatima])
        conn.execute("UPDATE snapshots.grants_snapshot SET dbt_scd_id = md5(grant_id) WHERE user_id = ? "
                     "AND role_id = ? AND workspace_id = ?", [lukasz, viewer, workspace])
        [(published_end,)] = conn.execute("SELECT dbt_valid_to FROM snapshots.grants_snapshot WHERE user_id = ? "
                                          "AND workspace_id = ? AND role_name = 'Editor'", [lukasz, workspace]).fetchall()
    with SandboxServer(generate_org(seed=5, members=4, workspaces=2)) as sandbox:
        point_at(monkeypatch, sandbox, database)
        outcome = provision()
    assert outcome.success, outcome.failure
    assert query(database, "SELECT role_name, valid_from, valid_to FROM main.grant_history WHERE user_id = ? "
                           "AND workspace_id = ? ORDER BY valid_from", [lukasz, workspace]) == [
        ("Editor", datetime(2026, 12, 5, 9, 26, 24, 461502, UTC), published_end),
        ("Viewer", published_end, None)]


def test_a_database_from_before_runs_recorded_their_org_is_known_by_its_workspaces_read_only(tmp_path):
    # 36525be's sync_runs has no organization_id column. Read as it is (another org folder of an
    # orgs file, which nothing here writes), it is known by its workspaces, like one whose column
    # is null: the query of the column failed, and a slug renamed after the upgrade started a
    # second, empty database of the org beside the old folder's queue and history.
    organization = "5bc8fbbc-bde5-4099-8164-d8399f767c45"
    (tmp_path / "us-old").mkdir()
    old = exported_database("36525be", tmp_path / "us-old" / "langsmith_access.duckdb")
    with duckdb.connect(str(old), read_only=True) as conn:
        assert organization_of(conn) == organization
    assert database_elsewhere(tmp_path / "us" / "langsmith_access.duckdb", tmp_path, organization.upper()) == (
        old, organization)


def has_observations_table(database) -> bool:
    with duckdb.connect(str(database), read_only=True) as conn:
        return table_exists(conn, "raw", "provisioning_observations")


def test_what_a_release_before_observations_provisioned_is_recorded_whole_or_not_at_all(tmp_path, monkeypatch):
    # The observations of 36525be's changes are recorded with the table that holds them: a first
    # write cut short half-way (here an error on the first row) leaves no table, so the next write
    # records them all (a table left without them would never get them).
    database = exported_database("36525be", tmp_path / "langsmith_access.duckdb")
    monkeypatch.setattr(schema, "_OLDER_RELEASE_OBSERVATIONS_SQL",
                        schema._OLDER_RELEASE_OBSERVATIONS_SQL + " AND error('cut short')")
    with duckdb.connect(str(database)) as conn, pytest.raises(duckdb.Error, match="cut short"):
        ensure_schema(conn)
    assert not has_observations_table(database)
    monkeypatch.undo()
    with duckdb.connect(str(database)) as conn:
        ensure_schema(conn)
        ensure_schema(conn)  # once only
    # fatima.schroder added as Viewer, lukasz.nowak's Editor removed: each the request's own write,
    # dated as 36525be's snapshot dated it (its build after the run), a few seconds after the settling.
    assert query(database, """
        SELECT o.request_id, o.ls_user_id, o.role_id, o.observed,
            o.verified_at = TIMESTAMPTZ '2026-12-05 09:26:52.740899+00' AND o.verified_at > r.updated_at
        FROM raw.provisioning_observations AS o JOIN main.provisioning_requests AS r USING (request_id)
        ORDER BY r.request_seq""") == [
        ("38c11342-b51b-4add-ac05-f02c15bb8532", "04a012e8-677f-4139-984a-1d3a5b8e8fb2",
         "3fd42359-92ed-4f45-9a1a-fe878b33e968", "verified", True),
        ("e5aca80f-68ce-4639-9ca2-29b9934d6d48", "2e81d66d-346c-4e2b-a02f-daa1ad864c44", None, "verified", True)]


def test_a_first_write_stopped_between_making_the_observations_table_and_filling_it_leaves_no_table(
        tmp_path, monkeypatch):
    # Not only a failed statement: a process stopped (Ctrl-C, a signal turned into an exception)
    # after the table is made and before its rows are written must not leave it committed empty,
    # or 36525be's changes are never recorded (the next write finds the table and skips them).
    database = exported_database("36525be", tmp_path / "langsmith_access.duckdb")
    real_table_exists = schema.table_exists

    def stopped_when_the_grants_are_looked_for(conn, schema_name, table):
        if table == "grants":
            raise KeyboardInterrupt
        return real_table_exists(conn, schema_name, table)

    monkeypatch.setattr(schema, "table_exists", stopped_when_the_grants_are_looked_for)
    with duckdb.connect(str(database)) as conn, pytest.raises(KeyboardInterrupt):
        ensure_schema(conn)
    assert not has_observations_table(database)
    monkeypatch.undo()
    with duckdb.connect(str(database)) as conn:
        ensure_schema(conn)
    assert query(database, "SELECT count(*) FROM raw.provisioning_observations") == [(2,)]


def test_a_grant_asked_again_after_the_older_release_applied_it_leaves_the_grant_that_releases_own_write(tmp_path):
    # 36525be added fatima.schroder as Viewer after its sync; someone then asked for the same grant
    # again, which found it done (already_satisfied). The change since the listing is the first
    # request's own write: recorded as the second's finding ('found'), main.grants said a change
    # made outside langsmith-access had been found, and drift could not be told from it.
    database = exported_database("36525be", tmp_path / "langsmith_access.duckdb")
    with duckdb.connect(str(database)) as conn:
        [(applied, fatima)] = conn.execute(
            "SELECT request_id, user_id FROM main.provisioning_requests WHERE request_seq = 1").fetchall()
        conn.execute("""
            INSERT INTO main.provisioning_requests SELECT * REPLACE (
                'a5a1e4d5-0000-4000-8000-000000000004' AS request_id, 4 AS request_seq,
                'already_satisfied' AS status, requested_at + INTERVAL 10 SECOND AS requested_at,
                updated_at + INTERVAL 4 SECOND AS updated_at)
            FROM main.provisioning_requests WHERE request_seq = 1""")
        ensure_schema(conn)
        recorded = conn.execute("SELECT request_id, observed FROM raw.provisioning_observations WHERE ls_user_id = ?",
                                [fatima]).fetchall()
    assert recorded == [(applied, "verified")]


def test_of_several_changes_an_older_release_made_to_one_membership_the_last_is_recorded(tmp_path):
    # 36525be added fatima.schroder as Viewer after its sync, then changed her to Editor (each
    # written into main.grants): what the listing lacks is the last change, the Editor grant's
    # own write, recorded once (not the Viewer grant's, nor both with the Editor role).
    database = exported_database("36525be", tmp_path / "langsmith_access.duckdb")
    editor = "617959ce-3f1f-45a8-9e52-71007814e8a2"
    with duckdb.connect(str(database)) as conn:
        [(fatima, workspace)] = conn.execute(
            "SELECT user_id, workspace_id FROM main.provisioning_requests WHERE request_seq = 1").fetchall()
        conn.execute("""
            INSERT INTO main.provisioning_requests SELECT * REPLACE (
                'a5a1e4d5-0000-4000-8000-000000000005' AS request_id, 4 AS request_seq, ? AS role_id,
                'Editor' AS role_name, requested_at + INTERVAL 10 SECOND AS requested_at,
                updated_at + INTERVAL 4 SECOND AS updated_at)
            FROM main.provisioning_requests WHERE request_seq = 1""", [editor])
        conn.execute("UPDATE main.grants SET role_id = ? WHERE user_id = ? AND workspace_id = ?",
                     [editor, fatima, workspace])
        ensure_schema(conn)
        recorded = conn.execute("SELECT request_id, role_id, observed FROM raw.provisioning_observations "
                                "WHERE ls_user_id = ?", [fatima]).fetchall()
    assert recorded == [("a5a1e4d5-0000-4000-8000-000000000005", editor, "verified")]


def test_a_change_an_older_releases_request_found_made_by_hand_is_recorded_as_found(tmp_path):
    # The request found fatima.schroder already Viewer (given by hand after the sync): no write
    # of langsmith-access made it, so it is recorded as found, and drift can still list it.
    database = exported_database("36525be", tmp_path / "langsmith_access.duckdb")
    with duckdb.connect(str(database)) as conn:
        conn.execute("UPDATE main.provisioning_requests SET status = 'already_satisfied' WHERE request_seq = 1")
        [(found, fatima)] = conn.execute(
            "SELECT request_id, user_id FROM main.provisioning_requests WHERE request_seq = 1").fetchall()
        ensure_schema(conn)
        recorded = conn.execute("SELECT request_id, observed FROM raw.provisioning_observations WHERE ls_user_id = ?",
                                [fatima]).fetchall()
    assert recorded == [(found, "found")]


def test_a_review_sheet_the_last_release_exported_is_queued_after_this_versions_first_sync(tmp_path, monkeypatch):
    # A review round trip can span the upgrade: the sheet was exported by 00211ee (its own export
    # of this org: no is_scim_managed or organization_id column, no byte order mark, CRLF; its
    # held_since cut to the second, as the fixture's history dates the grants), the reviewer marks
    # a grant while this version is installed and has synced once, and the import queues that
    # revoke. Read as another tool's sheet, or its grant as given again since the export, the
    # review would be left undone.
    database = exported_database("00211ee", tmp_path / "langsmith_access.duckdb")
    raw = (UPGRADE_DATA / "00211ee" / "review_sheet.csv").read_bytes().decode("utf-8")
    header, *rows = list(csv.reader(raw.splitlines()))
    assert raw.endswith("\r\n") and "organization_id" not in header and "is_scim_managed" not in header
    marked = rows[0]
    marked[header.index("decision")] = "revoke"
    sheet = tmp_path / "review.csv"
    with sheet.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file, lineterminator="\r\n").writerows([header, *rows])
    with SandboxServer(generate_org(seed=5, members=4, workspaces=2)) as sandbox:
        point_at(monkeypatch, sandbox, database)
        synced = runner.run_job(SYNC_JOB, runner.sync_run_config())
        assert synced.success, synced.failure
        imported = cli_in_this_process("review", "queue-revokes", "--file", str(sheet))
    assert imported.returncode == 0, imported.stderr
    assert f"{len(rows)} rows, 1 marked revoke: 1 queued, 0 already queued or done, 0 rejected" in imported.stdout
    cell = dict(zip(header, marked))
    assert query(database, """
        SELECT user_id, workspace_id, role_id FROM main.provisioning_requests
        WHERE action = 'revoke' AND status = 'pending'""") == [(cell["user_id"], cell["workspace_id"], cell["role_id"])]


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry_run", "queued"])
def test_a_review_imported_before_this_versions_first_sync_on_a_database_before_scim_says_to_sync(
        tmp_path, monkeypatch, dry_run):
    # 36525be's grants has no is_scim_managed column, which a review import reads: before this
    # version's first sync rebuilt the table, `review queue-revokes` (the dry run too) exited 1
    # with DuckDB's Binder Error. It says what to do, as `review export` does, and queues nothing.
    database = exported_database("36525be", tmp_path / "langsmith_access.duckdb")
    with duckdb.connect(str(database)) as conn:  # grant_history as 36525be's dbt model built it
        conn.execute("""
            CREATE TABLE main.grant_history AS SELECT dbt_scd_id AS grant_interval_id, grant_id, entitlement_id,
                entitlement_type, user_id, email, workspace_id, role_id, role_name, is_provisionable,
                CAST(dbt_valid_from AS TIMESTAMPTZ) AS valid_from, CAST(dbt_valid_to AS TIMESTAMPTZ) AS valid_to,
                dbt_valid_to IS NULL AS is_current
            FROM snapshots.grants_snapshot""")
    [(grant_id,)] = query(database, "SELECT min(grant_id) FROM main.grants WHERE entitlement_type = 'workspace_role'")
    sheet = tmp_path / "review.csv"
    sheet.write_text(f"grant_id,decision\n{grant_id},revoke\n", encoding="utf-8")
    before = query(database, "SELECT request_id, status FROM main.provisioning_requests ORDER BY ALL")
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(database))
    imported = cli_in_this_process("review", "queue-revokes", "--file", str(sheet), *(["--dry-run"] * dry_run))
    assert imported.returncode == 2, imported.stderr
    assert imported.stderr == (
        "error: the analysts' database's grants has no is_scim_managed column yet (it was built by an older "
        "version): run `langsmith-access sync` to rebuild it.\n")
    assert query(database, "SELECT request_id, status FROM main.provisioning_requests ORDER BY ALL") == before

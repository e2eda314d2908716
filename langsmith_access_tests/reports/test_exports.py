"""`langsmith-access export`, and the Parquet copy every publish writes beside the database."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from langsmith_access.provisioning.review.format import as_text_cell
from langsmith_access.store import export
from langsmith_access.store.database import AccessDatabase
from langsmith_access.store.raw_tables import RAW_TABLES
from langsmith_access_tests.helpers import cli_in_this_process
from langsmith_access_tests.reports.support import History, parquet_counts, rows

CLI = str(Path(sys.executable).with_name("langsmith-access"))


def main_tables(database: Path) -> dict[str, int]:
    names = [r["table_name"] for r in rows(database, """
        SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'""")]
    return {name: rows(database, f'SELECT count(*) AS n FROM main."{name}"')[0]["n"] for name in names}


def file_values(path: Path) -> str:
    """Every value of an exported file as text (Parquet is compressed: read it back)."""
    with duckdb.connect() as conn:
        reader = "read_parquet" if path.suffix == ".parquet" else "read_csv"
        options = "" if path.suffix == ".parquet" else ", all_varchar = true, header = true"
        return repr(conn.execute(f"SELECT * FROM {reader}(?{options})", [str(path)]).fetchall())


def run_export(database: Path, *args: str, **environment: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "DAGSTER_"))}
    env["LANGSMITH_ACCESS_DUCKDB"] = str(database)
    env.update(environment)
    return subprocess.run([CLI, "export", *args], env=env, capture_output=True, text=True, timeout=120)


def _assert_no_secret_and_no_raw(history: History, directory: Path, tables: dict[str, int]) -> None:
    files = sorted(p for p in directory.iterdir())
    assert {p.stem for p in files} == set(tables)
    # Only schema main: no raw-only or staging table (the file set equals main's tables).
    assert not {p.stem for p in files} & {"org_members", "workspace_memberships"}
    assert {"org_members", "workspace_memberships"} <= set(RAW_TABLES)
    assert not any(p.stem.startswith("stg_") for p in files)
    for path in files:
        assert history.api_key.encode() not in path.read_bytes()
        assert history.api_key not in file_values(path)


def test_export_parquet_writes_every_analysts_table(history, tmp_path):
    out = tmp_path / "parquet"
    done = run_export(history.database, "--format", "parquet", "--out", str(out))
    assert done.returncode == 0, done.stderr
    tables = main_tables(history.database)
    expected = {"users", "pending_invites", "workspaces", "roles", "role_permissions", "entitlements",
                "grants", "grant_history", "sync_runs", "report_privileged_access",
                "report_grant_changes", "report_stale_pending_invites"}
    assert expected <= set(tables)
    assert parquet_counts(out) == tables
    _assert_no_secret_and_no_raw(history, out, tables)
    # Same columns as the tables.
    with duckdb.connect() as conn:
        columns = [d[0] for d in conn.execute("SELECT * FROM read_parquet(?) LIMIT 0", [str(out / "users.parquet")]).description]
    assert columns == [d["column_name"] for d in rows(history.database, """
        SELECT column_name FROM information_schema.columns
        WHERE table_schema = 'main' AND table_name = 'users' ORDER BY ordinal_position""")]
    assert "Exported" in done.stdout and f"{len(tables)} tables" in done.stdout
    assert history.api_key not in done.stdout + done.stderr


def test_export_csv_writes_every_analysts_table(history, tmp_path):
    out = tmp_path / "csv"
    done = run_export(history.database, "--format", "csv", "--out", str(out))
    assert done.returncode == 0, done.stderr
    tables = main_tables(history.database)
    counts = {}
    for path in out.glob("*.csv"):
        with path.open(newline="", encoding="utf-8") as handle:
            counts[path.stem] = sum(1 for _ in csv.reader(handle)) - 1  # minus the header
    assert counts == tables
    _assert_no_secret_and_no_raw(history, out, tables)
    with (out / "users.csv").open(newline="", encoding="utf-8") as handle:
        assert {r["user_id"] for r in csv.DictReader(handle)} == {
            m.ls_user_id for m in history.org.active_members()}


def test_the_parquet_copy_and_both_exports_hold_the_databases_values_and_types(history, tmp_path):
    """What an analyst reads from the Parquet copy or an export is what the database holds: in
    Parquet every table's columns, their DuckDB types (TIMESTAMPTZ, BOOLEAN, lists) and every
    row; in CSV every value as DuckDB writes it as text in UTC (``+00``), whatever the time zone
    of the machine that exports (here New York's): an analyst comparing a CSV with the database
    or with a colleague's export finds the same instants."""
    out = tmp_path / "exports"
    for file_format in ("parquet", "csv"):
        done = run_export(history.database, "--format", file_format, "--out", str(out), TZ="America/New_York")
        assert done.returncode == 0, done.stderr
    copy = AccessDatabase(history.database).parquet_path
    with duckdb.connect(str(history.database), read_only=True) as conn, duckdb.connect() as files:
        conn.execute("SET TimeZone = 'UTC'")
        files.execute("SET TimeZone = 'UTC'")
        tables = [name for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1").fetchall()]
        for table in tables:
            typed = conn.execute(f'SELECT * FROM main."{table}" LIMIT 0')
            columns = [(d[0], str(d[1])) for d in typed.description]
            held = sorted(map(repr, conn.execute(f'SELECT * FROM main."{table}"').fetchall()))
            for path in (copy / f"{table}.parquet", out / f"{table}.parquet"):
                read = files.execute("SELECT * FROM read_parquet(?)", [str(path)])
                assert [(d[0], str(d[1])) for d in read.description] == columns, path
                assert sorted(map(repr, read.fetchall())) == held, path
            as_text = ", ".join(f'CAST("{name}" AS VARCHAR)' for name, _ in columns)
            held_as_text = sorted(map(repr, conn.execute(f'SELECT {as_text} FROM main."{table}"').fetchall()))
            read = files.execute("SELECT * FROM read_csv(?, all_varchar = true, header = true)",
                                 [str(out / f"{table}.csv")])
            assert [d[0] for d in read.description] == [name for name, _ in columns], table
            assert sorted(map(repr, read.fetchall())) == held_as_text, table
    assert "grant_history" in tables and "effective_permissions" in tables


def test_export_errors(history, tmp_path):
    missing = run_export(tmp_path / "none.duckdb", "--format", "csv", "--out", str(tmp_path / "x"))
    assert missing.returncode == 1 and "run langsmith-access sync first" in missing.stderr
    a_file = tmp_path / "file"
    a_file.write_text("")
    refused = run_export(history.database, "--format", "csv", "--out", str(a_file))
    assert refused.returncode == 2 and "not a directory" in refused.stderr
    bad_format = run_export(history.database, "--format", "xml", "--out", str(tmp_path / "y"))
    assert bad_format.returncode == 2
    # An unset shell variable ("--out $DIR") would write into the current directory: refused.
    empty = run_export(history.database, "--format", "csv", "--out", "")
    assert empty.returncode == 2 and "--out: empty: name the directory" in empty.stderr, empty.stderr
    # The live Parquet copy and docs site are the publish's: an export there is refused, untouched.
    published = AccessDatabase(history.database)
    before = parquet_counts(published.parquet_path)
    for inside in (published.parquet_path, published.docs_path / "tables"):
        into = run_export(history.database, "--format", "parquet", "--out", str(inside))
        assert into.returncode == 2 and "which every publish replaces" in into.stderr, into.stderr
    assert parquet_counts(published.parquet_path) == before and not (published.docs_path / "tables").exists()


def test_an_out_directory_given_with_a_tilde_is_under_home(history, tmp_path, monkeypatch):
    # `--out=~/exports` reaches the command as typed: a shell expands ~ only at a word's start.
    home, elsewhere = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    elsewhere.mkdir()
    for name in [n for n in os.environ if n.startswith("LANGSMITH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(history.database))
    monkeypatch.chdir(elsewhere)
    done = cli_in_this_process("export", "--format", "csv", "--out=~/exports")
    assert done.returncode == 0, done.stderr
    assert (home / "exports" / "users.csv").is_file() and list(elsewhere.iterdir()) == []
    assert done.stdout.endswith(f" to {home / 'exports'}\n"), done.stdout


def test_publish_writes_parquet_beside_the_database(history):
    parquet_dir = AccessDatabase(history.database).parquet_path
    assert parquet_dir == history.database.with_name("access_parquet")
    # After the first sync: every table of the first publish.
    assert history.parquet_after_first["sync_runs"] == 1
    assert set(history.parquet_after_first) == set(main_tables(history.after_first))
    assert history.parquet_after_first == main_tables(history.after_first)
    # After the third: refreshed, equal to the published tables.
    tables = main_tables(history.database)
    assert tables["sync_runs"] == 3
    assert parquet_counts(parquet_dir) == tables
    _assert_no_secret_and_no_raw(history, parquet_dir, tables)
    # No staging directory or temporary file left beside the database.
    assert sorted(p.name for p in history.database.parent.iterdir() if p.name.startswith(".")) == []


def test_replace_directory_swaps_whole_directories(tmp_path, monkeypatch):
    target = tmp_path / "db_parquet"
    for use_exchange in (True, False):
        staged = tmp_path / f".db_parquet.new-{use_exchange}"
        staged.mkdir()
        (staged / f"{use_exchange}.parquet").write_text("new")
        if target.exists():
            (target / "stale.parquet").write_text("old")
        if not use_exchange:
            monkeypatch.setattr(export, "_exchange", lambda first, second: False)
        export.replace_directory(staged, target)
        assert sorted(p.name for p in target.iterdir()) == [f"{use_exchange}.parquet"]
        assert not staged.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db_parquet"]


def test_a_file_new_to_the_directory_allows_no_more_than_every_file_there_allows(tmp_path):
    # The operator restricted the Parquet files unevenly (one readable by the group, another by
    # others): a table new to this publish gets only what all of them allow, never the union.
    target = tmp_path / "db_parquet"
    target.mkdir()
    for name, mode in (("users.parquet", 0o640), ("grants.parquet", 0o604)):
        (target / name).write_text("old")
        os.chmod(target / name, mode)
    staged = tmp_path / ".db_parquet.new"
    staged.mkdir()
    for name in ("users.parquet", "grants.parquet", "added.parquet"):
        (staged / name).write_text("new")
        os.chmod(staged / name, 0o666)
    export.replace_directory(staged, target)
    assert {p.name: p.stat().st_mode & 0o777 for p in target.iterdir()} == {
        "users.parquet": 0o640, "grants.parquet": 0o604, "added.parquet": 0o600}


def test_stage_parquet_directory_removes_leftovers(tmp_path):
    database = tmp_path / "db.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE SCHEMA raw")
        conn.execute("CREATE TABLE raw.secret AS SELECT 'lsv2_sk_x' AS key")
        conn.execute("CREATE TABLE main.users AS SELECT 1 AS user_id")
        conn.execute("CREATE TABLE main.users__dbt_tmp AS SELECT 1 AS user_id")
    target = export.parquet_directory(database)
    leftover = tmp_path / f".{target.name}.123-abc"
    leftover.mkdir()
    staged = export.stage_parquet_directory(database, target)
    assert not leftover.exists()
    assert sorted(p.name for p in staged.iterdir()) == ["users.parquet"]
    export.replace_directory(staged, target)
    assert parquet_counts(target) == {"users": 1}


@pytest.mark.parametrize("file_format", ["json", ""])
def test_export_tables_refuses_unknown_formats(tmp_path, file_format):
    with duckdb.connect() as conn, pytest.raises(ValueError):
        export.export_tables(conn, tmp_path, file_format)


def _tables_of_several_sizes(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("CREATE TABLE main.big AS SELECT range AS n, TIMESTAMPTZ '2026-11-01 12:00:00+00' "
                 "+ range * INTERVAL 1 MINUTE AS at FROM range(200000)")
    for name in ("users", "grants", "roles", "workspaces", "sync_runs"):
        conn.execute(f"CREATE TABLE main.{name} AS SELECT range AS n, "
                     f"TIMESTAMPTZ '2026-11-01 12:00:00+00' AS at FROM range({len(name)})")


def test_tables_written_side_by_side_equal_those_written_one_by_one(tmp_path):
    # The database's default zone is not UTC: every cursor must set UTC for its own session.
    with duckdb.connect() as conn:
        conn.execute("SET GLOBAL TimeZone = 'America/New_York'")
        _tables_of_several_sizes(conn)
        one_by_one = export.export_tables(conn, tmp_path / "one", "csv")
        side_by_side = export.export_tables(conn, tmp_path / "two", "csv", parallel=2)
    assert side_by_side == one_by_one == {
        "big": 200000, "grants": 6, "roles": 5, "sync_runs": 9, "users": 5, "workspaces": 10}
    for table in one_by_one:
        written = (tmp_path / "two" / f"{table}.csv").read_text()
        assert written == (tmp_path / "one" / f"{table}.csv").read_text()
        assert "2026-11-01 12:00:00+00" in written


def test_an_export_directory_named_with_quotes_is_written_as_named(tmp_path):
    # A directory an analyst named (apostrophes and double quotes included) is where the files go.
    out = tmp_path / "Q4 'final' \"review\""
    with duckdb.connect() as conn:
        _tables_of_several_sizes(conn)
        for file_format in export.EXPORT_FORMATS:
            written = export.export_tables(conn, out, file_format)
            assert written["users"] == 5
            assert sorted(p.name for p in out.glob(f"*.{file_format}")) == sorted(f"{t}.{file_format}" for t in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_a_table_that_cannot_be_written_fails_the_side_by_side_export(tmp_path):
    with duckdb.connect() as conn:
        _tables_of_several_sizes(conn)
        conn.execute("CREATE VIEW main.broken AS SELECT CAST('not a number' AS INTEGER) AS n")
        with pytest.raises(duckdb.ConversionException):
            export.export_tables(conn, tmp_path, "parquet", parallel=2)
    assert list(tmp_path.iterdir()) == []  # all or nothing


def test_a_directory_where_a_table_goes_is_refused_before_anything_is_written(tmp_path):
    with duckdb.connect() as conn:
        _tables_of_several_sizes(conn)
        (tmp_path / "roles.parquet").mkdir()
        with pytest.raises(IsADirectoryError, match="roles.parquet"):
            export.export_tables(conn, tmp_path, "parquet", parallel=2)
    assert [path.name for path in tmp_path.iterdir()] == ["roles.parquet"]


def test_the_effective_permissions_view_reads_the_file_that_holds_it_under_any_name(history, tmp_path):
    # effective_permissions is a view; DuckDB stores its query without the name of the database
    # it was built in (the scratch file's stem), so a renamed copy, or one attached under an
    # alias, answers it from its own tables.
    expected = rows(history.database, "SELECT count(*) AS n FROM main.effective_permissions")[0]["n"]
    assert expected > 0
    renamed = tmp_path / "renamed copy.duckdb"
    renamed.write_bytes(history.database.read_bytes())
    with duckdb.connect(str(renamed), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM main.effective_permissions").fetchone() == (expected,)
    with duckdb.connect() as conn:
        conn.execute(f"ATTACH '{renamed}' AS elsewhere (READ_ONLY)")
        assert conn.execute("SELECT count(*) FROM elsewhere.main.effective_permissions").fetchone() == (expected,)
    # It reads the copy's own tables, not the file it was built from: empty them in the copy.
    with duckdb.connect(str(renamed)) as conn:
        conn.execute("DELETE FROM main.effective_access")
    with duckdb.connect() as conn:
        conn.execute(f"ATTACH '{renamed}' AS elsewhere (READ_ONLY)")
        assert conn.execute("SELECT count(*) FROM elsewhere.main.effective_permissions").fetchone() == (0,)


def test_csv_writes_text_that_starts_like_a_formula_as_text_and_parquet_keeps_it(tmp_path):
    # A display name or workspace name is whatever a member typed in LangSmith: opened in a
    # spreadsheet, "=HYPERLINK(...)" would run. CSV cells get a leading apostrophe; lists, numbers
    # and the Parquet copy keep their values.
    names = ["=HYPERLINK(\"http://evil\",\"x\")", "+1", "-2", "@SUM(A1)", "\tcmd", "\rcmd", "plain", "a=b", None]
    with duckdb.connect() as conn:
        conn.execute("""CREATE TABLE main.users ("display name" VARCHAR, n INTEGER, tags VARCHAR[], doc JSON)""")
        conn.executemany("INSERT INTO main.users VALUES (?, ?, ?, ?)",
                         [(name, -1, [name or "x"], None) for name in names])
        conn.execute("""INSERT INTO main.users VALUES ('ok', -3, [], '-5')""")
        conn.execute("CREATE VIEW main.named AS SELECT \"display name\" AS who FROM main.users")
        assert export.export_tables(conn, tmp_path / "csv", "csv") == {"named": 10, "users": 10}
        export.export_tables(conn, tmp_path / "parquet", "parquet")
    with open(tmp_path / "csv" / "users.csv", newline="", encoding="utf-8") as handle:
        written = list(csv.reader(handle))
    assert written[0] == ["display name", "n", "tags", "doc"]
    assert [row[0] for row in written[1:]] == [
        "'=HYPERLINK(\"http://evil\",\"x\")", "'+1", "'-2", "'@SUM(A1)", "'\tcmd", "'\rcmd", "plain", "a=b", "", "ok"]
    assert {row[1] for row in written[1:]} == {"-1", "-3"}  # numbers are numbers
    assert written[1][2].startswith("[") and "=HYPERLINK" in written[1][2]  # a list cell starts with its bracket
    assert written[-1][3] == "'-5"
    with open(tmp_path / "csv" / "named.csv", newline="", encoding="utf-8") as handle:
        assert [row[:1] for row in csv.reader(handle)][1:3] == [["'=HYPERLINK(\"http://evil\",\"x\")"], ["'+1"]]
    with duckdb.connect() as conn:
        kept = conn.execute("SELECT \"display name\" FROM read_parquet(?)",
                            [str(tmp_path / "parquet" / "users.parquet")]).fetchall()
    assert [name for (name,) in kept] == [*names, "ok"]


def test_tables_an_interrupted_dbt_build_left_are_never_exported(tmp_path):
    # dbt builds a table as <name>__dbt_tmp and keeps the old one as <name>__dbt_backup until
    # the swap: a build interrupted in between leaves either, and neither is an analysts' table.
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE main.users AS SELECT 1 AS user_id")
        conn.execute("CREATE TABLE main.users__dbt_tmp AS SELECT 2 AS user_id")
        conn.execute("CREATE TABLE main.grants__dbt_backup AS SELECT 3 AS user_id")
        assert export.export_tables(conn, tmp_path, "csv") == {"users": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.csv"]


def test_the_parquet_files_are_zstd_compressed(tmp_path):
    with duckdb.connect() as conn:
        _tables_of_several_sizes(conn)
        export.export_tables(conn, tmp_path, "parquet")
        codecs = conn.execute("SELECT DISTINCT compression FROM parquet_metadata(?)",
                              [str(tmp_path / "big.parquet")]).fetchall()
    assert codecs == [("ZSTD",)]


def test_a_table_that_cannot_be_written_stops_the_other_writers_after_their_current_table(tmp_path):
    # Views are written first: the one that fails is taken at once while the other writer takes
    # the large table; once that one is written, no further table is started.
    with duckdb.connect() as conn:
        _tables_of_several_sizes(conn)
        conn.execute("CREATE TABLE main.huge AS SELECT range AS n FROM range(3000000)")
        conn.execute("CREATE VIEW main.broken AS SELECT CAST('not a number' AS INTEGER) AS n")
        tables = export.analysts_tables(conn)
        assert tables[:2] == ["broken", "huge"]
        # (export_tables writes them aside and keeps none of them: what its writers started shows here)
        with pytest.raises(duckdb.ConversionException):
            export._write_tables(conn, tables, tmp_path, "csv", parallel=2)
    assert not {"grants.csv", "roles.csv", "sync_runs.csv", "users.csv", "workspaces.csv"} & {
        p.name for p in tmp_path.iterdir()}


def test_a_parquet_copy_that_cannot_be_written_leaves_no_staging_directory(tmp_path):
    database = tmp_path / "db.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE TABLE main.users AS SELECT 1 AS user_id")
        conn.execute("CREATE VIEW main.broken AS SELECT CAST('not a number' AS INTEGER) AS n")
    with pytest.raises(duckdb.ConversionException):
        export.stage_parquet_directory(database, export.parquet_directory(database))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.duckdb"]


def test_replacing_a_published_directory_by_exchange_leaves_only_the_new_one(tmp_path):
    target = tmp_path / "db_parquet"
    target.mkdir()
    (target / "old.parquet").write_text("old")
    staged = tmp_path / ".db_parquet.new"
    staged.mkdir()
    (staged / "new.parquet").write_text("new")
    export.replace_directory(staged, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db_parquet"]


def test_an_exchange_that_fails_for_another_reason_raises_rather_than_falling_back(tmp_path):
    # Only "the kernel or file system cannot exchange" falls back to renaming the old directory
    # aside; any other failure would fail that rename too, after the old one was moved away.
    target = tmp_path / "db_parquet"
    target.mkdir()
    with pytest.raises(FileNotFoundError, match="db_parquet"):
        export._exchange(tmp_path / ".db_parquet.gone", target)
    assert target.is_dir()


def test_only_the_connections_own_tables_are_exported_and_listed_by_name(tmp_path):
    # A database the session attached besides (another org's copy, say) is none of this export's.
    with duckdb.connect() as conn:
        _tables_of_several_sizes(conn)
        conn.execute("ATTACH ':memory:' AS elsewhere")
        conn.execute("CREATE TABLE elsewhere.main.other_org AS SELECT 1 AS n")
        conn.execute("CREATE VIEW elsewhere.main.other_view AS SELECT 1 AS n")
        written = export.export_tables(conn, tmp_path, "csv")
    # The command prints one line per table in this order: by name, not by size.
    assert list(written) == ["big", "grants", "roles", "sync_runs", "users", "workspaces"]
    assert sorted(p.stem for p in tmp_path.iterdir()) == list(written)


def test_csv_guards_each_place_a_semicolon_locale_starts_a_cell(tmp_path):
    # Excel in a locale whose list separator is ';' splits a .csv line at every ';', quoted or
    # not, and a line break ends the row: "x;=HYPERLINK(...)" made a formula cell of its own, in a
    # text cell and inside a list or a struct cell alike. The apostrophe goes after the separator
    # (a tab after a ';' starts a cell too: it gets one, and so does the formula after it).
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE main.t (name VARCHAR, tags VARCHAR[], info STRUCT(note VARCHAR), n INTEGER)")
        conn.execute("INSERT INTO main.t VALUES (?, ?, ?, -1)",
                     ["x;=HYPERLINK(1);\t+2\n@3;'=4;-5;a=b", ["q;=SUM(1)", "ok"], {"note": "r;+1"}])
        conn.execute("INSERT INTO main.t VALUES ('=start;=mid', [], NULL, 2)")
        export.export_tables(conn, tmp_path, "csv")
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as handle:
        written = list(csv.reader(handle))[1:]
    assert written == [
        ["x;'=HYPERLINK(1);'\t'+2\n'@3;''=4;'-5;a=b", "['q;'=SUM(1)', ok]", "{'note': r;'+1}", "-1"],
        ["'=start;'=mid", "[]", "", "2"],
    ]


# Names a member may choose, each of which a spreadsheet would run or split into a cell that runs.
HOSTILE_NAMES = [
    '=HYPERLINK("http://evil","x")', "+1", "-2", "@SUM(A1)", "\tcmd", "\r=1", "x;\t+2", "x\t\t\t=1",
    "x;\r\t\r-1", "x\n\t@2", "'=own", "x;'=own", "x;'\t=1", "plain", "a=b", "Ω 😀 \u202eevil",
]


def test_csv_guards_text_as_the_review_sheet_does(tmp_path):
    # The CSV export and the review sheet open in the same spreadsheets: a text cell is written as
    # the sheet writes it (as_text_cell), or a tab after a ';' ("x;\t+2") left Excel, splitting the
    # line at the ';', a cell that starts with a tab, and a run of tabs ("x\t\t\t=1") a tab-led one
    # unguarded. Lists are written as their text, guarded inside as a text cell is.
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE main.t (name VARCHAR, tags VARCHAR[])")
        conn.executemany("INSERT INTO main.t VALUES (?, ?)", [(name, [name]) for name in HOSTILE_NAMES])
        export.export_tables(conn, tmp_path, "csv")
        lists = [text for (text,) in conn.execute("SELECT CAST(tags AS VARCHAR) FROM main.t").fetchall()]
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as handle:
        written = list(csv.reader(handle))[1:]
    assert [row[0] for row in written] == [as_text_cell(name) for name in HOSTILE_NAMES]
    assert [row[1] for row in written] == [as_text_cell(text) for text in lists]


def test_csv_guards_the_inside_of_a_map_cell_as_of_a_list_or_a_struct(tmp_path):
    # A MAP is written as its text ("{k=v}"), which starts with its brace: only its inside, after
    # a separator, can start a formula cell.
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE main.t (labels MAP(VARCHAR, VARCHAR))")
        conn.execute("INSERT INTO main.t VALUES (MAP {'team': 'x;=HYPERLINK(1)'})")
        export.export_tables(conn, tmp_path, "csv")
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle))[1:] == [["{team='x;'=HYPERLINK(1)'}"]]


def test_csv_guards_an_enum_cell_that_starts_like_a_formula(tmp_path):
    # An ENUM's values are text a model chose (a CASE ... ::ENUM of names): written as text, they
    # start a formula cell as a VARCHAR's would.
    with duckdb.connect() as conn:
        conn.execute("CREATE TYPE main.kind AS ENUM ('=HYPERLINK(1)', 'plain')")
        conn.execute("CREATE TABLE main.t (k main.kind)")
        conn.execute("INSERT INTO main.t VALUES ('=HYPERLINK(1)'), ('plain')")
        export.export_tables(conn, tmp_path, "csv")
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as handle:
        assert list(csv.reader(handle))[1:] == [["'=HYPERLINK(1)"], ["plain"]]


def test_replace_directory_never_leaves_the_target_missing_on_linux(tmp_path, monkeypatch):
    # Analysts (and tools reading the Parquet copy) may list the directory at any moment of a
    # publish: on Linux the old and new directories are exchanged in one step, so there is no
    # instant at which the directory is missing (the rename-aside fallback has one).
    target = tmp_path / "db_parquet"
    target.mkdir()
    (target / "users.parquet").write_text("old")
    staged = tmp_path / ".db_parquet.new"
    staged.mkdir()
    (staged / "users.parquet").write_text("new")
    missing_after: list[str] = []
    real_rename = os.rename

    def rename(source, destination):
        real_rename(source, destination)
        if not target.is_dir():
            missing_after.append(f"{source} -> {destination}")

    monkeypatch.setattr(os, "rename", rename)
    export.replace_directory(staged, target)
    assert missing_after == []
    assert (target / "users.parquet").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db_parquet"]

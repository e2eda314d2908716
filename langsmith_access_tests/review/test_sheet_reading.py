"""Reading a marked review sheet back (``read_csv_sheet``, ``read_table_sheet``): the shapes
spreadsheets and reviewers' own DuckDB files really come in, read without a synced database."""

import csv
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from langsmith_access.provisioning.review import ReviewError, read_csv_sheet, read_table_sheet
from langsmith_access.provisioning.review.format import as_text_cell, from_text_cell


def csv_sheet(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "review.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def marked_ids(sheet) -> list[str | None]:
    return [row.grant_id for row in sheet.marked]


def test_excels_csv_utf8_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    # Excel's "CSV UTF-8" starts the file with a BOM: the first column is still grant_id
    # (titled as people title it).
    sheet = read_csv_sheet(csv_sheet(tmp_path, "\ufeffGrant-ID,decision\ng1,revoke\ng2,\n".encode()))
    assert marked_ids(sheet) == ["g1"] and sheet.rows == 2


def test_blank_lines_tabs_and_spreadsheet_style_headers_are_read(tmp_path):
    # Blank lines before the header and between rows, tab separated, "Grant ID" as people title it.
    sheet = read_csv_sheet(csv_sheet(tmp_path, "\n\nGrant ID\tDecision\n\ng1\trevoke\n\ng2\tkeep\n\n"))
    assert marked_ids(sheet) == ["g1"] and sheet.rows == 2
    assert sheet.marked[0].where == "line 5"


@pytest.mark.parametrize("separator", [";", ",", "\t", "|"])
def test_excels_separator_line_names_the_delimiter_and_is_no_header(tmp_path, separator):
    # "sep=;" as the first line makes Excel split the file right in any locale: it was read as the
    # header (no grant_id column), and its ';' as the delimiter of a ',' sheet.
    rows = ["grant_id,email;x,decision", "g1,ada@example.com;x,revoke", "g2,bo@example.com;x,"]
    text = f"\ufeffsep={separator}\r\n" + "\r\n".join(row.replace(",", separator) for row in rows) + "\r\n"
    sheet = read_csv_sheet(csv_sheet(tmp_path, text.encode()))
    assert marked_ids(sheet) == ["g1"] and sheet.rows == 2
    assert sheet.marked[0].where == "line 3"


def test_empty_trailing_columns_a_spreadsheet_adds_are_no_repeated_column(tmp_path):
    sheet = read_csv_sheet(csv_sheet(tmp_path, "grant_id,decision,,\ng1,revoke,,\ng2,,,\n"))
    assert marked_ids(sheet) == ["g1"]


def test_an_empty_cell_falls_back_to_the_next_column_naming_the_user(tmp_path):
    # A pending invite has no user_id yet: its email names the member.
    text = "user_id,email,workspace,role,revoke\n,ada@example.com,Platform,Editor,yes\n"
    sheet = read_csv_sheet(csv_sheet(tmp_path, text))
    [row] = sheet.marked
    assert (row.user, row.workspace, row.role) == ("ada@example.com", "Platform", "Editor")


def test_a_row_with_too_few_fields_is_reported_not_a_crash(tmp_path):
    path = csv_sheet(tmp_path, "grant_id,email,workspace_name,role_name,decision\ng1,revoke\n")
    with pytest.raises(ReviewError, match="line 2: 2 fields where the header has 5"):
        read_csv_sheet(path)


def test_every_bad_line_up_to_twenty_is_listed_then_counted(tmp_path):
    rows = "".join(f"g{n},revok\n" for n in range(25))
    with pytest.raises(ReviewError) as error:
        read_csv_sheet(csv_sheet(tmp_path, "grant_id,decision\n" + rows))
    message = str(error.value)
    assert "25 rows cannot be read" in message and "nothing was queued" in message
    assert all(f"line {n}: decision 'revok'" in message for n in range(2, 22)), message
    assert "line 22:" not in message and "... and 5 more" in message
    # Twenty: all listed, nothing said of more; one: "row", not "rows".
    with pytest.raises(ReviewError) as error:
        read_csv_sheet(csv_sheet(tmp_path, "grant_id,decision\n" + "".join(f"g{n},revok\n" for n in range(20))))
    assert "20 rows cannot be read" in str(error.value) and "line 21: decision 'revok'" in str(error.value)
    assert "more" not in str(error.value), error.value
    with pytest.raises(ReviewError, match=r": 1 row cannot be read, so nothing was queued"):
        read_csv_sheet(csv_sheet(tmp_path, "grant_id,decision\ng1,revok\n"))


def test_a_utf16_file_is_refused_as_not_csv(tmp_path):
    # UTF-16 without a byte order mark decodes as UTF-8 when it is all ASCII, one NUL per letter.
    path = csv_sheet(tmp_path, "grant_id,decision\ng1,revoke\n".encode("utf-16-le"))
    with pytest.raises(ReviewError, match="not a CSV file"):
        read_csv_sheet(path)


@pytest.mark.parametrize("name", ["review.duckdb", "Review.DUCKDB", "review.db", "review.ddb"])
def test_a_boolean_revoke_column_in_a_schema_table_of_the_reviewers_file(tmp_path, name):
    """`CREATE TABLE q4.Review AS SELECT grant_id, true AS revoke ...`: a table in a schema of
    its own, named in another case, in any of the DuckDB file names; true marks, false keeps."""
    review_db = tmp_path / name
    with duckdb.connect(str(review_db)) as conn:
        conn.execute("CREATE SCHEMA q4")
        conn.execute("CREATE TABLE q4.Review AS SELECT * FROM (VALUES ('g1', true), ('g2', false), ('g3', NULL)) "
                     "AS t(grant_id, revoke)")
    sheet = read_table_sheet(review_db, "q4.review")
    assert marked_ids(sheet) == ["g1"] and sheet.rows == 3
    assert sheet.marked[0].where == "row 1"


def test_a_reviewers_file_open_elsewhere(tmp_path):
    """The reviewer's own `duckdb review.duckdb` session: read-only it does not stop the
    queueing; writing, it gets a message saying what to close, not DuckDB's lock error."""
    review_db = tmp_path / "review.duckdb"
    with duckdb.connect(str(review_db)) as conn:
        conn.execute("CREATE TABLE grant_review AS SELECT 'g1' AS grant_id, 'revoke' AS decision")
    for read_only in (True, False):
        holder = subprocess.Popen(
            [sys.executable, "-c", "import duckdb, sys, time\n"
             f"conn = duckdb.connect({str(review_db)!r}, read_only={read_only})\n"
             "print('open', flush=True)\ntime.sleep(60)"],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert holder.stdout.readline().strip() == "open"
            if read_only:
                assert marked_ids(read_table_sheet(review_db, "grant_review")) == ["g1"]
            else:
                with pytest.raises(ReviewError, match="open for writing in another DuckDB session: close that"):
                    read_table_sheet(review_db, "grant_review")
        finally:
            holder.kill()
            holder.wait()


def test_a_table_not_in_the_reviewers_file_is_refused_naming_every_table_and_view_it_has(tmp_path):
    # The reviewer typed the name wrong: the message lists what the file has, as --table takes it
    # (schema.name outside main), its views too, and none of DuckDB's own.
    review_db = tmp_path / "review.duckdb"
    with duckdb.connect(str(review_db)) as conn:
        conn.execute("CREATE TABLE notes (text VARCHAR)")
        conn.execute("CREATE SCHEMA q4")
        conn.execute("CREATE TABLE q4.review AS SELECT 'g1' AS grant_id, 'revoke' AS decision")
        conn.execute("CREATE VIEW marked AS SELECT * FROM q4.review")
    with pytest.raises(ReviewError) as refused:
        read_table_sheet(review_db, "grant_review")
    assert str(refused.value) == f"no table grant_review in {review_db}; it has: notes, q4.review, marked."
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    with pytest.raises(ReviewError, match=r"; it has: no tables\.$"):
        read_table_sheet(empty, "grant_review")


def test_a_file_named_like_a_duckdb_file_that_is_none_is_refused_in_plain_words(tmp_path):
    review_db = tmp_path / "review.duckdb"
    review_db.write_text("grant_id,decision\ng1,revoke\n", encoding="utf-8")  # a CSV saved under that name
    with pytest.raises(ReviewError, match=f"cannot open {review_db} as a DuckDB file: .*not a valid DuckDB"):
        read_table_sheet(review_db, "grant_review")


def test_a_view_over_a_database_no_longer_attached_says_so_not_run_a_sync(tmp_path):
    """README's example attaches the analysts' database to build the reviewer's table: made a
    view instead, it cannot run in a later session. The error names the view and the fix (a
    table), not DuckDB's catalog error, which the command would answer with "run a sync"."""
    analysts = tmp_path / "analysts.duckdb"
    with duckdb.connect(str(analysts)) as conn:
        conn.execute("CREATE TABLE disabled_grants AS SELECT 'g1' AS grant_id")
    review_db = tmp_path / "review.duckdb"
    with duckdb.connect(str(review_db)) as conn:
        conn.execute(f"ATTACH '{analysts}' AS access (READ_ONLY)")
        conn.execute("CREATE VIEW to_revoke AS SELECT grant_id, 'revoke' AS decision FROM access.main.disabled_grants")
        assert conn.execute("SELECT grant_id FROM to_revoke").fetchall() == [("g1",)]
    with pytest.raises(ReviewError, match=r"to_revoke in .*review.duckdb cannot be read: .*make it a table"):
        read_table_sheet(review_db, "to_revoke")


@pytest.mark.parametrize("name", ["grant_review\n", "grant_review\n; DROP TABLE x", 'a"b', "a.b.c", ""])
def test_a_table_name_that_is_not_plain_is_refused_whole(tmp_path, name):
    # A name with a trailing newline is no plain name either (a regex's "$" matches before one).
    review_db = tmp_path / "review.duckdb"
    with duckdb.connect(str(review_db)) as conn:
        conn.execute("CREATE TABLE grant_review AS SELECT 'g1' AS grant_id, 'revoke' AS decision")
    with pytest.raises(ReviewError, match="is not a plain name"):
        read_table_sheet(review_db, name)


NAMES = ["Ada", "=1+1", "-1", "@x", "\t=1", "\r=1", "x;=1+1;", "Team\n=1", "'s-Hertogenbosch", "'=own", "''=x",
         ";\t=1", "a;b", "x;'=y", "';=", "'", ""]


@pytest.mark.parametrize("name", NAMES)
def test_a_guarded_cell_starts_no_formula_wherever_a_spreadsheet_splits_it_and_reads_back_exactly(tmp_path, name):
    cell = as_text_cell(name)
    pieces = [piece for line in cell.replace("\r", "\n").split("\n") for part in line.split(";")
              for piece in part.split("\t")]
    assert not any(piece.startswith(("=", "+", "-", "@")) for piece in pieces), cell
    assert from_text_cell(cell) == name
    # And through a sheet, as a workspace's name: a name's own apostrophes stay.
    if name.strip() == name and name:
        path = tmp_path / "sheet.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([["user", "workspace", "role", "decision"],
                                          ["a@b.c", cell, "Editor", "revoke"]])
        assert read_csv_sheet(path).marked[0].workspace == name


@pytest.mark.parametrize("name", ["review.duckdb", "review.csv"])
def test_a_duckdb_file_given_as_the_csv_sheet_points_to_review_db(tmp_path, name):
    # `review export --out review.duckdb`, then `--file review.duckdb`: not "save it as CSV UTF-8".
    # Known by its content, whatever it is called.
    path = tmp_path / name
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE grant_review AS SELECT 'g1' AS grant_id, 'revoke' AS decision")
    with pytest.raises(ReviewError, match=f"is a DuckDB file, not a CSV sheet: queue from its table with --review-db "
                                          f".*{name} --table grant_review"):
        read_csv_sheet(path)


def test_a_quote_left_open_is_reported_at_the_line_it_opens_on(tmp_path):
    # The open quote swallows the lines after it: csv stops at the end of the file, two lines on
    # from the row to fix.
    path = csv_sheet(tmp_path, 'grant_id,decision\ng1,keep\ng2,keep\n"g3,revoke\ng4,keep\ng5,keep\n')
    with pytest.raises(ReviewError, match=r"line 4: not valid CSV \(unexpected end of data\)\. Check the quotes"):
        read_csv_sheet(path)
    # A quote inside a cell that is not quoted whole: the line of that row.
    path = csv_sheet(tmp_path, 'grant_id,decision\ng1,keep\n"g2"x,revoke\ng3,keep\n')
    with pytest.raises(ReviewError, match=r"line 3: not valid CSV"):
        read_csv_sheet(path)


def test_a_row_is_reported_at_the_line_it_starts_on_after_a_comment_on_several_lines(tmp_path):
    # A reason on three lines (a quoted cell, as Excel and Google Sheets save Alt+Enter) ran the
    # row on: it was reported at the line it ends on, in the middle of the comment, not where a
    # reviewer looking for "line 2" finds its grant_id.
    path = csv_sheet(tmp_path, 'grant_id,decision,reason\r\ng1,revoke,"left\r\nthe\r\nteam"\r\n'
                               'g2,revoke,moved\r\ng3,revok,typo\r\n')
    with pytest.raises(ReviewError, match=r"line 6: decision 'revok'"):
        read_csv_sheet(path)
    path.write_text(path.read_text().replace("revok,", "keep,"))
    assert [row.where for row in read_csv_sheet(path).marked] == ["line 2", "line 5"]


def test_a_grant_one_row_revokes_and_another_keeps_is_refused_naming_both_rows(tmp_path):
    # Two reviewers' rows of one grant, or the next day's export pasted below this one: the revoke
    # was queued and the explicit "keep" ignored. Which decision stands is not guessed. A row left
    # blank decides nothing (a sheet pasted below a marked one), so it contradicts no revoke.
    path = csv_sheet(tmp_path, "grant_id,revoke\ng1,yes\ng2,x\ng3,\nG1,no\ng2,\ng3,y\n")
    with pytest.raises(ReviewError, match=r"1 row cannot be read, so nothing was queued") as refused:
        read_csv_sheet(path)
    assert "line 2: revokes grant g1, which line 5 keeps: make the rows agree" in str(refused.value)
    path.write_text(path.read_text().replace("G1,no", "G1,"))
    assert marked_ids(read_csv_sheet(path)) == ["g1", "g2", "g3"]


@pytest.mark.parametrize(("flag", "marked"), [
    *[(flag, True) for flag in ("revoke", "yes", "y", "true", "1", "x", "YES", "True", "X")],
    *[(flag, False) for flag in ("", "keep", "no", "n", "false", "0", "NO", "False")],
])
def test_every_revoke_flag_marks_and_every_keep_flag_keeps(tmp_path, flag, marked):
    sheet = read_csv_sheet(csv_sheet(tmp_path, f"grant_id,revoke\ng1,{flag}\n"))
    assert marked_ids(sheet) == (["g1"] if marked else []) and sheet.rows == 1


@pytest.mark.parametrize("decision", ["yes", "no", "x", "true", "0"])
def test_a_decision_column_takes_revoke_or_keep_not_the_revoke_columns_flags(tmp_path, decision):
    # A 'decision' column says what to do in words: "no" could be "no, keep it" or "no access",
    # and "yes" the opposite. Read as either, a reviewer's meaning is guessed; the sheet is refused.
    with pytest.raises(ReviewError, match=f"line 2: decision '{decision}' is not 'revoke', 'keep' or nothing"):
        read_csv_sheet(csv_sheet(tmp_path, f"grant_id,decision\ng1,{decision}\n"))


@pytest.mark.parametrize("decision", ["revoke ", " revoke", " REVOKE\t", "keep ", "  "])
def test_spaces_around_a_decision_a_spreadsheet_kept_are_no_other_decision(tmp_path, decision):
    sheet = read_csv_sheet(csv_sheet(tmp_path, f'grant_id,decision\ng1,"{decision}"\n'))
    assert marked_ids(sheet) == (["g1"] if "revoke" in decision.lower() else [])


def test_a_cell_of_spaces_falls_back_to_the_next_column_naming_the_user(tmp_path):
    # A space typed over a cleared user_id is no user id: the email names the member.
    text = 'user_id,email,workspace_id,workspace,role,revoke\n" ",ada@example.com,"  ",Platform,Editor,yes\n'
    [row] = read_csv_sheet(csv_sheet(tmp_path, text)).marked
    assert (row.user, row.workspace, row.role) == ("ada@example.com", "Platform", "Editor")
    assert row.named == (("email", "ada@example.com"), ("workspace", "Platform"), ("role", "Editor"))


def test_a_requested_by_column_is_the_rows_reviewer(tmp_path):
    text = "grant_id,requested_by,decision\ng1,alice@sec,revoke\n"
    assert [row.reviewer for row in read_csv_sheet(csv_sheet(tmp_path, text)).marked] == ["alice@sec"]


def test_a_row_is_shown_by_the_names_the_sheet_gives_else_by_its_grant_id(tmp_path):
    # An exported row names its grant with ids beside the names: people read the names.
    text = ("grant_id,email,user_id,workspace_name,workspace_id,role_name,role_id,decision\n"
            "g1,ada@example.com,u1,Platform,w1,Editor,r1,revoke\n")
    assert [row.target() for row in read_csv_sheet(csv_sheet(tmp_path, text)).marked] == [
        "Editor in Platform for ada@example.com"]
    # A row that does not name all three is shown by its grant_id, not as "... for None".
    text = "grant_id,workspace,role,decision\ng1,Platform,Editor,revoke\n"
    assert [row.target() for row in read_csv_sheet(csv_sheet(tmp_path, text)).marked] == ["g1"]



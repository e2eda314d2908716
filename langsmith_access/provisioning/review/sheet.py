"""The sheet back: the rows a reviewer marked for revocation, from a CSV file or a table.

The format (CSV, UTF-8, header row; ``,`` ``;`` or tab separated; column names are
case-insensitive):

- a decision column: ``decision`` (``revoke``; ``keep`` or empty) or ``revoke`` (``yes``/``y``/
  ``true``/``1``/``x``/``revoke``; ``no``/``n``/``false``/``0``/``keep`` or empty). Any other
  value is an error: a typo must never silently keep access.
- what to revoke: ``grant_id`` (as in ``main.grants``), or ``user`` + ``workspace`` + ``role``
  columns (``user_id``/``email``/``user``; ``workspace_id``/``workspace_name``/``workspace``;
  ``role_id``/``role_name``/``role``). When a row has a ``grant_id``, it decides; the row's
  other user, workspace and role cells must then still describe that grant (an edited row is
  rejected, not read as the grant it names). Without a ``grant_id``, the first filled column of
  each group names it, and the others must agree (``queueing`` rejects a row whose cells differ).
- optional ``reviewer`` (or ``requested_by``) and ``reason``; the caller's values fill in the
  empty ones. A reason written on several lines is read as one, its lines joined by spaces.

A sheet that cannot be read as a whole (missing columns, ragged rows, unknown decisions, a grant
one row revokes and another keeps) raises ``ReviewError``; nothing is queued from it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from langsmith_access.provisioning.review.format import (
    DEFAULT_TABLE,
    DUCKDB_SUFFIXES,
    ORGANIZATION_COLUMN,
    ReviewError,
    from_text_cell,
)
from langsmith_access.provisioning.review.reviewer_db import (
    check_table_name,
    open_reviewer_db,
    quoted_table,
    table_exists,
    table_names,
)
from langsmith_access.settings import mask_keys

DECISION_COLUMNS = ("decision", "revoke")
REVOKE_DECISIONS = {"revoke"}
KEEP_DECISIONS = {"", "keep"}
REVOKE_FLAGS = {"revoke", "yes", "y", "true", "1", "x"}
KEEP_FLAGS = {"", "keep", "no", "n", "false", "0"}
USER_COLUMNS = ("user_id", "email", "user")
WORKSPACE_COLUMNS = ("workspace_id", "workspace_name", "workspace")
ROLE_COLUMNS = ("role_id", "role_name", "role")
REVIEWER_COLUMNS = ("reviewer", "requested_by")
MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class MarkedRow:
    """One row marked for revocation, as the reviewer wrote it."""

    where: str  # "line 7" (CSV) or "row 3" (table)
    grant_id: str | None
    user: str | None
    workspace: str | None
    role: str | None
    reviewer: str | None
    reason: str | None
    label: str = ""  # for people: "Editor in Platform for ada@example.com", from the sheet's names
    # Every user, workspace and role cell the row fills, as (column, value): checked against
    # the grant a grant_id names (an edited row must not revoke what its grant_id says).
    named: tuple[tuple[str, str], ...] = ()
    # The sheet's held_since as written (the export's UTC time, or the table's value): a grant
    # revoked and granted again since the export has the same grant_id, not the same start.
    held_since: str | None = None
    # The organization the sheet was exported from (its organization_id cell), when it says.
    organization_id: str | None = None

    def target(self) -> str:
        """The row for people; a key typed into a cell shown as the queue records it (lsv2_***)."""
        return mask_keys(self.label or self.grant_id or f"{self.role} in {self.workspace} for {self.user}")

    def with_text_cut(self, hide: Callable[[str], str]) -> MarkedRow:
        """The row with ``hide`` applied to every cell read from the sheet (``Notifier.hidden``:
        the org's own secrets, which no key shape finds, pasted into one): nothing queued,
        recorded or shown from the row then holds them."""
        cut = {field.name: hide(value) for field in dataclasses.fields(self)
               if isinstance(value := getattr(self, field.name), str)}
        return dataclasses.replace(self, **cut, named=tuple((column, hide(value)) for column, value in self.named))


@dataclass(frozen=True)
class ReviewSheet:
    source: str  # the CSV file, or "<DuckDB file>:<table>"
    rows: int  # data rows read (marked or not)
    marked: list[MarkedRow]
    # The file read (the CSV sheet, or the reviewer's DuckDB file): ``source`` cannot be split at
    # its ':' to find it, since a path may hold one ("review 12:00/review.csv").
    file: Path


def read_csv_sheet(path: Path) -> ReviewSheet:
    """The rows of a CSV review sheet marked for revocation; ``ReviewError`` if it is unusable."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ReviewError(f"{path} is a directory: give the review sheet's CSV file.")
    if not path.is_file():
        raise ReviewError(f"{path}: no such file.")
    with open(path, "rb") as handle:
        start = handle.read(12)
    if start[8:12] == b"DUCK":  # where every DuckDB file says what it is
        # `review export --out review.duckdb` wrote a table: "save it as CSV" would be no fix.
        raise ReviewError(
            f"{path} is a DuckDB file, not a CSV sheet: queue from its table with --review-db {path} "
            f"--table {DEFAULT_TABLE} (or the table you named)."
        )
    try:
        # Decoded, not read as text: Python's newline translation would turn a "\r" inside a
        # quoted cell (a name LangSmith sent with one) into "\n", and the row no longer name its grant.
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ReviewError(
            f"{path} is not UTF-8 text (byte {error.start}): save it as 'CSV UTF-8'."
        ) from None
    if "\x00" in text:
        raise ReviewError(f"{path} is not a CSV file (it contains NUL bytes).")
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max((",", ";", "\t"), key=first_line.count) if first_line else ","
    # Excel's own first line naming the separator ("sep=;"), which some reviewers add so that
    # Excel splits the file right in any locale: it names the delimiter and is no header.
    separator_hint = re.fullmatch(r"sep=([,;\t|])", first_line.strip(" \r\n"))
    if separator_hint:
        delimiter = separator_hint[1]
    # Rows end at \n, \r\n or \r only, as CSV writes them (newline=""): str.splitlines would also
    # end one at a U+2028, a form feed or a NEL inside a member's name, which CSV leaves unquoted.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)

    def records() -> Iterator[tuple[str, list[str]]]:
        hint_left = bool(separator_hint)
        # Where the row being read starts: a quote left open runs it on to the end of the file,
        # where reader.line_num then is.
        start = 1
        try:
            for cells in reader:
                if hint_left and any(cell.strip() for cell in cells):  # the first line that is not blank
                    hint_left = False
                else:
                    # The line the row starts on: a quoted cell's line breaks (a comment on
                    # several lines) run it on, and reader.line_num is where it ends.
                    yield f"line {start}", cells
                start = reader.line_num + 1
        except csv.Error as error:
            raise ReviewError(
                f"{path} line {start}: not valid CSV ({error}). Check the quotes from there: a cell with "
                'a quote (") in it is quoted whole, each of its own quotes doubled ("").'
            ) from None

    return _marked_rows(str(path), path, records(), guarded=True)


def read_table_sheet(review_db: Path, table: str) -> ReviewSheet:
    """The rows of a review table in the reviewer's own DuckDB file marked for revocation."""
    review_db = Path(review_db).expanduser()
    check_table_name(table)
    if review_db.is_dir():
        raise ReviewError(f"{review_db} is a directory: give your DuckDB file that holds the table (review.duckdb).")
    if not review_db.is_file():
        raise ReviewError(f"{review_db}: no such DuckDB file.")
    if review_db.suffix.lower() not in DUCKDB_SUFFIXES:
        raise ReviewError(
            f"{review_db} is not a DuckDB file ({', '.join(DUCKDB_SUFFIXES)}): a CSV sheet goes "
            f"with --file {review_db}."
        )
    with open_reviewer_db(review_db, read_only=True) as conn:
        if not table_exists(conn, table):
            tables = table_names(conn)
            raise ReviewError(
                f"no table {table} in {review_db}; it has: {', '.join(tables) or 'no tables'}."
            )
        try:
            cursor = conn.execute(f"SELECT * FROM {quoted_table(table)}")
            header = [d[0] for d in cursor.description]
            data = cursor.fetchall()
        except duckdb.Error as error:
            # A view over a database attached when it was made (the analysts', say) is not
            # attached in a new session: the error is the reviewer's file's, not a sync's to fix.
            raise ReviewError(
                f"{table} in {review_db} cannot be read: {str(error).splitlines()[0]} "
                "(a view over another database works only while that database is attached: make it "
                f"a table, CREATE TABLE ... AS SELECT, in {review_db.name})."
            ) from None

    def records() -> Iterator[tuple[str, list[str]]]:
        yield "header", header
        for number, values in enumerate(data, start=1):
            yield f"row {number}", [_table_cell(value) for value in values]

    return _marked_rows(f"{review_db}:{table}", review_db, records(), guarded=False)


def _table_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _one_line(text: str | None) -> str | None:
    """A reason cell's lines (Alt+Enter in Excel, a line break in a Google Sheets comment) joined
    by spaces: the queue takes a single-line reason, and a comment's layout must not cost the row
    its revoke."""
    if text is None:
        return None
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _normalize(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _marked_rows(source: str, file: Path, records: Iterable[tuple[str, list[str]]], *, guarded: bool) -> ReviewSheet:
    """``guarded``: the cells are a CSV sheet's, with the apostrophes ``as_text_cell`` puts before
    formulas (a table holds every name exactly, its own apostrophes included)."""
    records = iter(records)
    unguarded = from_text_cell if guarded else str
    header = None
    for _, cells in records:
        if any(cell.strip() for cell in cells):
            header = [_normalize(cell) for cell in cells]
            break
    if header is None:
        raise ReviewError(f"{source} is empty: expected a header row and one row per grant.")
    duplicated = sorted({name for name in header if name and header.count(name) > 1})
    if duplicated:
        raise ReviewError(f"{source}: the header names {', '.join(duplicated)} more than once.")
    columns = {name: index for index, name in enumerate(header) if name}
    found = ", ".join(name for name in header if name) or "none"
    decision_columns = [name for name in DECISION_COLUMNS if name in columns]
    if not decision_columns:
        raise ReviewError(
            f"{source} has no 'decision' column (or 'revoke'): add one and write 'revoke' in the "
            f"rows of the grants to take away. Columns found: {found}."
        )
    if len(decision_columns) > 1:
        raise ReviewError(f"{source} has both a 'decision' and a 'revoke' column: keep one.")
    decision_column = decision_columns[0]
    by_columns = all(any(c in columns for c in group) for group in (USER_COLUMNS, WORKSPACE_COLUMNS, ROLE_COLUMNS))
    if "grant_id" not in columns and not by_columns:
        raise ReviewError(
            f"{source} cannot say which grants to revoke: it needs a 'grant_id' column, or "
            "'user' (or user_id/email), 'workspace' (or workspace_id/workspace_name) and 'role' "
            f"(or role_id/role_name) columns. Columns found: {found}."
        )

    def value(cells: list[str], *names: str) -> str | None:
        for name in names:
            if name in columns and cells[columns[name]].strip():
                return unguarded(cells[columns[name]].strip())
        return None

    problems: list[str] = []
    marked: list[MarkedRow] = []
    kept: dict[str, str] = {}  # lower(grant_id) -> the first row that says keep it
    rows = 0
    for where, cells in records:
        if not any(cell.strip() for cell in cells):
            continue  # a blank line
        rows += 1
        if len(cells) != len(header):
            problems.append(
                f"{where}: {len(cells)} fields where the header has {len(header)} "
                "(an unquoted separator, or a missing one?)"
            )
            continue
        decision = cells[columns[decision_column]].strip()
        lowered = decision.lower()
        if decision_column == "decision":
            revoke, keep = lowered in REVOKE_DECISIONS, lowered in KEEP_DECISIONS
            allowed = "'revoke', 'keep' or nothing"
        else:
            revoke, keep = lowered in REVOKE_FLAGS, lowered in KEEP_FLAGS
            allowed = "yes/no (or revoke/keep) or nothing"
        if not (revoke or keep):
            problems.append(f"{where}: {decision_column} {decision!r} is not {allowed}")
            continue
        if keep:
            if lowered and (kept_id := value(cells, "grant_id")):  # kept in words, not left blank
                kept.setdefault(kept_id.lower(), where)
            continue
        row = MarkedRow(
            where=where,
            grant_id=value(cells, "grant_id"),
            user=value(cells, *USER_COLUMNS),
            workspace=value(cells, *WORKSPACE_COLUMNS),
            role=value(cells, *ROLE_COLUMNS),
            reviewer=value(cells, *REVIEWER_COLUMNS),
            reason=_one_line(value(cells, "reason")),
            held_since=value(cells, "held_since"),
            organization_id=value(cells, ORGANIZATION_COLUMN),
            named=tuple(
                (name, given) for name in (*USER_COLUMNS, *WORKSPACE_COLUMNS, *ROLE_COLUMNS)
                if (given := value(cells, name))
            ),
        )
        role = value(cells, "role_name", "role", "role_id")
        workspace = value(cells, "workspace_name", "workspace", "workspace_id")
        user = value(cells, "email", "user", "user_id")
        if role and workspace and user:
            row = dataclasses.replace(row, label=f"{role} in {workspace} for {user}")
        if not row.grant_id and not (row.user and row.workspace and row.role):
            missing = [
                what for what, given in (("user", row.user), ("workspace", row.workspace), ("role", row.role))
                if not given
            ]
            problems.append(
                f"{where}: marked revoke but has no grant_id, and no {', '.join(missing)} either"
            )
            continue
        marked.append(row)
    # One grant both kept and revoked (two reviewers' rows, or another export pasted below this
    # one): which decision stands is not guessed.
    problems += [
        f"{row.where}: revokes grant {row.grant_id}, which {kept[row.grant_id.lower()]} keeps: "
        "make the rows agree, or delete one"
        for row in marked if row.grant_id and row.grant_id.lower() in kept
    ]
    if problems:
        shown = "\n  ".join(problems[:MAX_LISTED_PROBLEMS])
        more = f"\n  ... and {len(problems) - MAX_LISTED_PROBLEMS} more" if len(problems) > MAX_LISTED_PROBLEMS else ""
        raise ReviewError(
            f"{source}: {len(problems)} row{'s' * (len(problems) != 1)} cannot be read, so nothing "
            f"was queued; fix them and run again:\n  {shown}{more}"
        )
    return ReviewSheet(source, rows, marked, file)

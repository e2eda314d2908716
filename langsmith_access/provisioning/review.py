"""Access-review round trip: a sheet of grants out, the reviewer's revokes back into the queue.

1. ``export_review_sheet`` writes the current workspace grants, one row per grant, with empty
   ``decision``, ``reviewer`` and ``reason`` columns: a CSV file, or a table in a DuckDB file of
   the reviewer's own (never the analysts' database, which every publish replaces).
2. The reviewer writes ``revoke`` in the ``decision`` column of each grant to take away
   (``keep`` or empty keeps it), optionally with a per-row ``reviewer`` and ``reason``.
3. ``queue_revokes`` reads the marked rows and queues one revoke per row through the normal
   queue (``queue.submit_on``): validation, de-duplication and the recording of rejections all
   apply; the sensor (or ``langsmith-access provision``) then applies them.

The sheet format (CSV, UTF-8, header row; ``,`` ``;`` or tab separated; column names are
case-insensitive):

- a decision column: ``decision`` (``revoke``; ``keep`` or empty) or ``revoke`` (``yes``/``y``/
  ``true``/``1``/``x``/``revoke``; ``no``/``n``/``false``/``0``/``keep`` or empty). Any other
  value is an error: a typo must never silently keep access.
- what to revoke: ``grant_id`` (as in ``main.grants``), or ``user`` + ``workspace`` + ``role``
  columns (``user_id``/``email``/``user``; ``workspace_id``/``workspace_name``/``workspace``;
  ``role_id``/``role_name``/``role``). When a row has a ``grant_id``, it decides.
- optional ``reviewer`` (or ``requested_by``) and ``reason``; the caller's values fill in the
  empty ones.

A sheet that cannot be read as a whole (missing columns, ragged rows, unknown decisions) raises
``ReviewError`` and queues nothing. Rows that are well formed but cannot be revoked (a grant id
that is not a current grant, an organization role, an unknown user) are recorded as rejected
requests, like any rejected request, and reported.

Plain Python, no Dagster.
"""

from __future__ import annotations

import csv
import dataclasses
import getpass
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import duckdb

from langsmith_access.provisioning import queue
from langsmith_access.store.database import AccessDatabase, DatabaseNotReadyError

DECISION_COLUMNS = ("decision", "revoke")
REVOKE_DECISIONS = {"revoke"}
KEEP_DECISIONS = {"", "keep"}
REVOKE_FLAGS = {"revoke", "yes", "y", "true", "1", "x"}
KEEP_FLAGS = {"", "keep", "no", "n", "false", "0"}
USER_COLUMNS = ("user_id", "email", "user")
WORKSPACE_COLUMNS = ("workspace_id", "workspace_name", "workspace")
ROLE_COLUMNS = ("role_id", "role_name", "role")
REVIEWER_COLUMNS = ("reviewer", "requested_by")
DEFAULT_TABLE = "grant_review"
DUCKDB_SUFFIXES = (".duckdb", ".db", ".ddb")
MAX_LISTED_PROBLEMS = 20

READ_ONLY_REASON = (
    "Organization roles are read-only here: LangSmith replaces a member's single organization "
    "role on update, so change it in LangSmith itself."
)

# The sheet: current grants with who, where, what and since when, then the reviewer's columns.
SHEET_COLUMNS = (
    "grant_id", "email", "full_name", "user_id", "is_disabled", "org_role_name",
    "workspace_name", "workspace_id", "role_name", "role_id", "entitlement_type", "held_since",
    "decision", "reviewer", "reason",
)
SHEET_SQL = """
SELECT
    g.grant_id,
    coalesce(u.email, g.email) AS email,
    u.full_name,
    g.user_id,
    u.is_disabled,
    u.org_role_name,
    w.display_name AS workspace_name,
    g.workspace_id,
    g.role_name,
    g.role_id,
    g.entitlement_type,
    h.held_since,
    CAST(NULL AS VARCHAR) AS decision,
    CAST(NULL AS VARCHAR) AS reviewer,
    CAST(NULL AS VARCHAR) AS reason
FROM {db}main.grants AS g
LEFT JOIN {db}main.users AS u ON u.user_id = g.user_id
LEFT JOIN {db}main.workspaces AS w ON w.workspace_id = g.workspace_id
LEFT JOIN (
    SELECT grant_id, min(valid_from) AS held_since
    FROM {db}main.grant_history WHERE valid_to IS NULL GROUP BY grant_id
) AS h ON h.grant_id = g.grant_id
WHERE ({include_org_roles} OR g.entitlement_type = 'workspace_role')
    AND ($workspace_id IS NULL OR g.workspace_id = $workspace_id)
ORDER BY g.entitlement_type DESC, w.display_name, g.workspace_id, lower(coalesce(u.email, g.email)), g.user_id
"""


class ReviewError(ValueError):
    """The sheet (or the request to read or write it) cannot be used as a whole; nothing was
    queued. The message says what is wrong and where."""


# ------------------------------------------------------------------------------- the sheet out


def export_review_sheet(
    database: AccessDatabase,
    out: Path,
    *,
    workspace: str | None = None,
    include_org_roles: bool = False,
    table: str = DEFAULT_TABLE,
    force: bool = False,
) -> tuple[Path, int]:
    """Write the review sheet to ``out``: a CSV file, or (``out`` ending in .duckdb/.db/.ddb)
    table ``table`` in that DuckDB file. Reads the analysts' copy read-only. Returns the path
    and the number of grants. Refuses to overwrite a sheet unless ``force``."""
    out = Path(out).expanduser()
    to_duckdb = out.suffix.lower() in DUCKDB_SUFFIXES
    if to_duckdb:
        _check_table_name(table)
    elif out.exists() and not force:
        raise ReviewError(f"{out} exists: a reviewer's marks may be in it. Pass --force to replace it.")
    if out.exists() and out.is_dir():
        raise ReviewError(f"{out} is a directory; give a file name (review.csv or review.duckdb).")
    if not database.path.exists():
        raise DatabaseNotReadyError(f"{database.path} does not exist yet: run `langsmith-access sync` first.")
    with database.read_published() as conn:
        _require_synced(conn)
        workspace_id = _resolve_workspace(conn, workspace) if workspace else None
        if not to_duckdb:
            cursor = conn.execute(
                SHEET_SQL.format(db="", include_org_roles=str(include_org_roles).upper()),
                {"workspace_id": workspace_id},
            )
            rows = cursor.fetchall()
            out.parent.mkdir(parents=True, exist_ok=True)
            temporary = out.with_name(f".{out.name}.tmp")
            with open(temporary, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(SHEET_COLUMNS)
                writer.writerows([_csv_cell(value) for value in row] for row in rows)
            temporary.replace(out)
            return out, len(rows)
    return out, _export_to_duckdb(database, out, table, workspace_id, include_org_roles, force)


def _export_to_duckdb(database, out: Path, table: str, workspace_id, include_org_roles, force) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    target = _quoted_table(table)
    with _open_reviewer_db(out, read_only=False) as conn:
        if _table_exists(conn, table) and not force:
            raise ReviewError(
                f"table {table} exists in {out}: a reviewer's marks may be in it. Pass --force to "
                "replace it, or name another table with --table."
            )
        conn.execute(f"ATTACH {_literal(database.path)} AS review_source (READ_ONLY)")
        try:
            schema = table.split(".")[-2] if table.count(".") == 1 else None
            if schema:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}")
            conn.execute(
                f"CREATE OR REPLACE TABLE {target} AS "
                + SHEET_SQL.format(db="review_source.", include_org_roles=str(include_org_roles).upper()),
                {"workspace_id": workspace_id},
            )
        finally:
            conn.execute("DETACH review_source")
        return conn.execute(f"SELECT count(*) FROM {target}").fetchone()[0]


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def _require_synced(conn) -> None:
    present = {
        name for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
    }
    missing = {"grants", "users", "workspaces", "grant_history"} - present
    if missing:
        raise ReviewError(
            f"the analysts' database has no {', '.join(sorted(missing))} yet: run "
            "`langsmith-access sync` first."
        )


def _resolve_workspace(conn, text: str) -> str:
    from langsmith_access.reports_cli import UsageError, resolve_workspace

    try:
        return resolve_workspace(conn, text)
    except UsageError as error:
        raise ReviewError(str(error)) from None


# ------------------------------------------------------------------------------ the sheet back


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

    def target(self) -> str:
        return self.label or self.grant_id or f"{self.role} in {self.workspace} for {self.user}"


@dataclass(frozen=True)
class ReviewSheet:
    source: str
    rows: int  # data rows read (marked or not)
    marked: list[MarkedRow]


@dataclass(frozen=True)
class RowOutcome:
    row: MarkedRow
    status: str  # queued | duplicate | rejected | would_queue (dry run)
    message: str
    request_id: str | None = None
    duplicate_of: str | None = None

    def to_json(self) -> dict:
        return {
            "where": self.row.where,
            "grant_id": self.row.grant_id,
            "user": self.row.user,
            "workspace": self.row.workspace,
            "role": self.row.role,
            "status": self.status,
            "request_id": self.request_id,
            "duplicate_of": self.duplicate_of,
            "message": self.message,
        }


@dataclass
class ReviewResult:
    source: str
    rows: int
    dry_run: bool
    outcomes: list[RowOutcome] = field(default_factory=list)

    def with_status(self, *statuses: str) -> list[RowOutcome]:
        return [o for o in self.outcomes if o.status in statuses]

    @property
    def all_accepted(self) -> bool:
        return not self.with_status("rejected")

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "marked": len(self.outcomes),
            "queued": len(self.with_status("queued", "would_queue")),
            "duplicates": len(self.with_status("duplicate")),
            "rejected": len(self.with_status("rejected")),
            "outcomes": [o.to_json() for o in self.outcomes],
        }


def read_csv_sheet(path: Path) -> ReviewSheet:
    """The rows of a CSV review sheet marked for revocation; ``ReviewError`` if it is unusable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ReviewError(f"{path}: no such file.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ReviewError(
            f"{path} is not UTF-8 text (byte {error.start}): save it as 'CSV UTF-8'."
        ) from None
    if "\x00" in text:
        raise ReviewError(f"{path} is not a CSV file (it contains NUL bytes).")
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max((",", ";", "\t"), key=first_line.count) if first_line else ","
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter, strict=True)

    def records() -> Iterator[tuple[str, list[str]]]:
        try:
            for cells in reader:
                yield f"line {reader.line_num}", cells
        except csv.Error as error:
            raise ReviewError(f"{path} line {reader.line_num}: not valid CSV ({error}).") from None

    return _marked_rows(str(path), records())


def read_table_sheet(review_db: Path, table: str) -> ReviewSheet:
    """The rows of a review table in the reviewer's own DuckDB file marked for revocation."""
    review_db = Path(review_db).expanduser()
    _check_table_name(table)
    if not review_db.is_file():
        raise ReviewError(f"{review_db}: no such DuckDB file.")
    with _open_reviewer_db(review_db, read_only=True) as conn:
        if not _table_exists(conn, table):
            tables = [
                f"{schema}.{name}" if schema != "main" else name
                for schema, name in conn.execute(
                    "SELECT schema_name, table_name FROM duckdb_tables() "
                    "WHERE database_name = current_database() ORDER BY 1, 2"
                ).fetchall()
            ] + [
                f"{schema}.{name}" if schema != "main" else name
                for schema, name in conn.execute(
                    "SELECT schema_name, view_name FROM duckdb_views() "
                    "WHERE database_name = current_database() AND NOT internal ORDER BY 1, 2"
                ).fetchall()
            ]
            raise ReviewError(
                f"no table {table} in {review_db}; it has: {', '.join(tables) or 'no tables'}."
            )
        cursor = conn.execute(f"SELECT * FROM {_quoted_table(table)}")
        header = [d[0] for d in cursor.description]
        data = cursor.fetchall()

    def records() -> Iterator[tuple[str, list[str]]]:
        yield "header", header
        for number, values in enumerate(data, start=1):
            yield f"row {number}", [_table_cell(value) for value in values]

    return _marked_rows(f"{review_db}:{table}", records())


def _table_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _normalize(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _marked_rows(source: str, records: Iterable[tuple[str, list[str]]]) -> ReviewSheet:
    records = iter(records)
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
                return cells[columns[name]].strip()
        return None

    problems: list[str] = []
    marked: list[MarkedRow] = []
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
            continue
        row = MarkedRow(
            where=where,
            grant_id=value(cells, "grant_id"),
            user=value(cells, *USER_COLUMNS),
            workspace=value(cells, *WORKSPACE_COLUMNS),
            role=value(cells, *ROLE_COLUMNS),
            reviewer=value(cells, *REVIEWER_COLUMNS),
            reason=value(cells, "reason"),
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
    if problems:
        shown = "\n  ".join(problems[:MAX_LISTED_PROBLEMS])
        more = f"\n  ... and {len(problems) - MAX_LISTED_PROBLEMS} more" if len(problems) > MAX_LISTED_PROBLEMS else ""
        raise ReviewError(
            f"{source}: {len(problems)} row{'s' * (len(problems) != 1)} cannot be read, so nothing "
            f"was queued; fix them and run again:\n  {shown}{more}"
        )
    return ReviewSheet(source, rows, marked)


# --------------------------------------------------------------------------------- queueing


def queue_revokes(
    database: AccessDatabase,
    sheet: ReviewSheet,
    *,
    reviewer: str | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    lease_timeout_seconds: float = 600.0,
) -> ReviewResult:
    """Queue one revoke per marked row, with the row's reviewer and reason or these.

    All rows go in under one writer lease and one publish. With ``dry_run`` the rows are only
    checked against the latest sync (the analysts' copy, read-only) and nothing is recorded.
    """
    reviewer = reviewer or getpass.getuser()
    reason = reason or f"access review ({Path(sheet.source.split(':')[0]).name})"
    result = ReviewResult(sheet.source, sheet.rows, dry_run)
    if not database.path.exists():
        raise DatabaseNotReadyError(f"{database.path} does not exist yet: run `langsmith-access sync` first.")
    if not sheet.marked:
        return result
    if dry_run:
        with database.read_published() as conn:
            _require_synced(conn)
            seen: dict[tuple, str] = {}
            for row in sheet.marked:
                result.outcomes.append(_check_row(conn, row, reviewer, reason, seen))
        return result
    with database.writer_lease("queue the revokes of an access review", timeout_seconds=lease_timeout_seconds):
        database.ensure_working()
        with database.connect() as conn:
            _require_synced(conn)
            for row in sheet.marked:
                result.outcomes.append(_queue_row(conn, row, reviewer, reason))
        database.publish()
    return result


def _change_for(conn, row: MarkedRow, reviewer: str, reason: str) -> tuple[queue.ChangeRequest, str | None]:
    """The revoke a row asks for, and a rejection message when it cannot be asked at all."""
    requested_by = row.reviewer or reviewer
    why = row.reason or reason
    if not row.grant_id:
        return queue.ChangeRequest("revoke", row.user, row.workspace, row.role, why, requested_by), None
    grant = conn.execute(
        "SELECT g.entitlement_type, g.user_id, g.workspace_id, g.role_id, g.role_name, "
        "coalesce(g.email, g.user_id) FROM main.grants AS g WHERE g.grant_id = ?",
        [row.grant_id],
    ).fetchone()
    if grant is None:
        change = queue.ChangeRequest(
            "revoke", row.user or row.grant_id, row.workspace or "", row.role or "", why, requested_by
        )
        # A grant that no longer holds is still in grant_history (ids are never parsed here).
        former = conn.execute(
            "SELECT entitlement_type FROM main.grant_history WHERE grant_id = ? LIMIT 1", [row.grant_id]
        ).fetchone()
        if former is not None and former[0] == "organization_role":
            return change, f"grant {row.grant_id} is an organization role. {READ_ONLY_REASON}"
        return change, (
            f"unknown grant id {row.grant_id!r}: it is not a current grant in the latest sync "
            "(revoked or changed since the sheet was exported, or mistyped). Export a new sheet "
            "with `langsmith-access review export`."
        )
    entitlement_type, user_id, workspace_id, role_id, role_name, who = grant
    if entitlement_type != "workspace_role":
        change = queue.ChangeRequest("revoke", user_id, row.workspace or "", role_id, why, requested_by)
        return change, (
            f"grant {row.grant_id} is the organization role {role_name!r} of {who}. {READ_ONLY_REASON}"
        )
    return queue.ChangeRequest("revoke", user_id, workspace_id, role_id, why, requested_by), None


def _queue_row(conn, row: MarkedRow, reviewer: str, reason: str) -> RowOutcome:
    change, rejection = _change_for(conn, row, reviewer, reason)
    if rejection is not None:
        result = queue.record_rejection(conn, change, rejection)
    else:
        result = queue.submit_on(conn, change)
    if not result.accepted:
        return RowOutcome(row, "rejected", result.message, request_id=result.request_id)
    if result.duplicate_of:
        return RowOutcome(row, "duplicate", result.message, request_id=result.request_id,
                          duplicate_of=result.duplicate_of)
    return RowOutcome(row, "queued", result.message, request_id=result.request_id)


def _check_row(conn, row: MarkedRow, reviewer: str, reason: str, seen: dict[tuple, str]) -> RowOutcome:
    change, rejection = _change_for(conn, row, reviewer, reason)
    try:
        if rejection is not None:
            raise queue.RequestRejected(rejection)
        queue.check_text(change.reason, "reason", required=False, limit=queue.MAX_TEXT_CHARS)
        queue.check_text(change.requested_by, "requested_by", required=False)
        resolved = queue.resolve_change(conn, change)
    except queue.RequestRejected as error:
        return RowOutcome(row, "rejected", str(error))
    key = (resolved.action, resolved.user_id, resolved.workspace_id, resolved.role_id)
    duplicate = queue.pending_duplicate(conn, resolved)
    if duplicate:
        return RowOutcome(row, "duplicate", f"the same change is already queued as {duplicate}",
                          duplicate_of=duplicate)
    if key in seen:
        return RowOutcome(row, "duplicate", f"the same change as {seen[key]} of this sheet")
    seen[key] = row.where
    return RowOutcome(
        row, "would_queue",
        f"would queue: revoke {resolved.role_name} in {resolved.workspace_name} for "
        f"{resolved.user_email or resolved.user_id}",
    )


# ----------------------------------------------------------------------------------- helpers

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def _check_table_name(table: str) -> None:
    if not _TABLE_NAME.match(table or ""):
        raise ReviewError(
            f"table name {table!r} is not a plain name: use letters, digits and _ "
            "(optionally schema.table)."
        )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quoted_table(table: str) -> str:
    return ".".join(_quote(part) for part in table.split("."))


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _table_exists(conn, table: str) -> bool:
    schema, name = table.split(".") if "." in table else ("main", table)
    return conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND lower(table_schema) = lower(?) AND lower(table_name) = lower(?)",
        [schema, name],
    ).fetchone()[0] > 0


class _ReviewerDb:
    """The reviewer's own DuckDB file, with a clear message when their session holds it."""

    def __init__(self, path: Path, read_only: bool):
        self.path, self.read_only = path, read_only

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        try:
            self.conn = duckdb.connect(str(self.path), read_only=self.read_only)
        except duckdb.IOException as error:
            if "lock" in str(error).lower():
                raise ReviewError(
                    f"{self.path} is open for writing in another DuckDB session: close that "
                    "session (or open it read-only) and run again."
                ) from None
            raise ReviewError(f"cannot open {self.path} as a DuckDB file: {error}") from None
        except duckdb.Error as error:
            raise ReviewError(f"cannot open {self.path} as a DuckDB file: {error}") from None
        return self.conn

    def __exit__(self, *exc) -> None:
        self.conn.close()


def _open_reviewer_db(path: Path, *, read_only: bool) -> _ReviewerDb:
    return _ReviewerDb(path, read_only)

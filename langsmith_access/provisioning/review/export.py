"""The sheet out: the dbt model ``review_sheet`` as a CSV file or a table in the reviewer's own
DuckDB file, with empty reviewer columns."""

from __future__ import annotations

import csv
import os
from datetime import UTC, datetime
from pathlib import Path

from langsmith_access.provisioning.review.format import (
    CSV_LIST_SEPARATOR,
    DEFAULT_TABLE,
    DUCKDB_SUFFIXES,
    GRANT_COLUMNS,
    ORGANIZATION_COLUMN,
    REVIEWER_SHEET_COLUMNS,
    SHEET_COLUMNS,
    ReviewError,
    as_text_cell,
    require_columns,
    require_tables,
)
from langsmith_access.provisioning.review.reviewer_db import (
    check_table_name,
    open_reviewer_db,
    quoted_table,
    table_exists,
)
from langsmith_access.store.database import AccessDatabase, DatabaseNotReadyError
from langsmith_access.store.queries import LookupFailed, resolve_workspace
from langsmith_access.store.sql import quote_identifier, quote_literal, scalar
from langsmith_access.store.sync_runs import organization_of, require_synced

# The rows of the model the reviewer asked for, in the sheet's order: workspace roles by
# workspace, then email (organization roles last, when asked for; with a workspace, those of
# the people with access there, as effective_access has it: its listed members and every
# Organization Admin, an implicit Admin of each workspace whom its member list does not show).
SHEET_SQL = (
    "SELECT " + ", ".join(GRANT_COLUMNS) + f", CAST($organization_id AS VARCHAR) AS {ORGANIZATION_COLUMN}, "
    + ", ".join(f"CAST(NULL AS VARCHAR) AS {name}" for name in REVIEWER_SHEET_COLUMNS)
    + """
FROM {db}main.review_sheet
WHERE ($include_org_roles OR entitlement_type = 'workspace_role')
    AND ($workspace_id IS NULL OR workspace_id = $workspace_id
         -- with --workspace, the organization roles of the people with access there
         OR (entitlement_type = 'organization_role' AND user_id IN (
             SELECT user_id FROM {db}main.effective_access WHERE workspace_id = $workspace_id)))
ORDER BY entitlement_type DESC, workspace_name, workspace_id, lower(email), user_id
"""
)


# Spreadsheet formats a CSV written under their name would pass for (and fail to open as).
NOT_CSV_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers", ".tsv", ".json", ".parquet")


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
    if out.suffix.lower() in NOT_CSV_SUFFIXES:
        raise ReviewError(
            f"{out}: the sheet is written as CSV (or, to a .duckdb file, as a table), not as "
            f"{out.suffix}: name it {out.with_suffix('.csv').name}; any spreadsheet opens it."
        )
    to_duckdb = out.suffix.lower() in DUCKDB_SUFFIXES
    # First: "exists ... Pass --force" would send the user to a --force that refuses a directory too.
    if out.is_dir():
        raise ReviewError(f"{out} is a directory; give a file name (review.csv or review.duckdb).")
    if to_duckdb:
        check_table_name(table)
    elif out.exists() and not force:
        raise ReviewError(f"{out} exists: a reviewer's marks may be in it. Pass --force to replace it.")
    if database.owns(out):
        raise ReviewError(
            f"{out} is one of langsmith-access's own database files, which every sync and request "
            "replaces: write the sheet to a file of your own (review.csv or review.duckdb)."
        )
    for published in (database.parquet_path, database.docs_path):
        # Every publish swaps these directories whole: a sheet there, marks and all, would vanish.
        if out.resolve().is_relative_to(published.resolve()):
            raise ReviewError(
                f"{out} is inside {published}, which every publish replaces: write the sheet to a "
                "file of your own (review.csv or review.duckdb)."
            )
    if not database.path.exists():
        raise DatabaseNotReadyError(f"{database.path} does not exist yet: run `langsmith-access sync` first.")
    with database.read_published() as conn:
        require_synced(conn, database.path)
        require_tables(conn, "review_sheet", "effective_access")
        require_columns(conn, "review_sheet", GRANT_COLUMNS)
        workspace_id = _workspace_id(conn, workspace)
        parameters = {"workspace_id": workspace_id, "include_org_roles": include_org_roles,
                      "organization_id": organization_of(conn) or database.organization_id}
        if not to_duckdb:
            rows = conn.execute(SHEET_SQL.format(db=""), parameters).fetchall()
            _write_csv(out, rows)
            return out, len(rows)
    return out, _write_duckdb_table(database, out, table, parameters, force)


def organization_admins_left_out(database: AccessDatabase, workspace: str | None = None) -> int:
    """How many Organization Admins hold an implicit Admin (in ``workspace``, or anywhere) that
    no workspace grant on the sheet shows (report_implicit_admins): a reviewer should know who is
    not on it."""
    with database.read_published() as conn:
        require_tables(conn, "report_implicit_admins")
        workspace_id = _workspace_id(conn, workspace)
        return scalar(conn, "SELECT count(DISTINCT user_id) FROM main.report_implicit_admins "
                            "WHERE $workspace_id IS NULL OR workspace_id = $workspace_id",
                      {"workspace_id": workspace_id})


def _workspace_id(conn, workspace: str | None) -> str | None:
    """The id of the workspace ``--workspace`` names (None: every workspace); a ReviewError
    saying why when it names none, or several."""
    try:
        return resolve_workspace(conn, workspace) if workspace else None
    except LookupFailed as error:
        raise ReviewError(str(error)) from None


def _write_csv(out: Path, rows: list[tuple]) -> None:
    """Written aside and renamed, so a reader never sees half a sheet. The file aside is this
    process's own (two exports at once each rename a whole sheet), is removed when the write
    fails (a full disk), and its name stays within the 255 bytes a file name may have whatever
    the sheet's own name."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.name.encode("utf-8")[:200].decode("utf-8", "ignore")
    temporary = out.with_name(f".{stem}.{os.getpid()}.tmp")
    try:
        # With a byte order mark, as Excel's own "CSV UTF-8" is: without one, Excel opens the file
        # as the machine's ANSI code page, "José" shows as "JosÃ©", and saving it again wrote
        # that into the row, which queue-revokes then refused as edited.
        with open(temporary, "w", newline="", encoding="utf-8-sig") as handle:
            writer = csv.writer(handle)
            writer.writerow(SHEET_COLUMNS)
            writer.writerows([_csv_cell(value) for value in row] for row in rows)
        temporary.replace(out)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_duckdb_table(database: AccessDatabase, out: Path, table: str, parameters: dict, force: bool) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    target = quoted_table(table)
    with open_reviewer_db(out, read_only=False) as conn:
        if table_exists(conn, table) and not force:
            raise ReviewError(
                f"table {table} exists in {out}: a reviewer's marks may be in it. Pass --force to "
                "replace it, or name another table with --table."
            )
        conn.execute(f"ATTACH {quote_literal(database.path)} AS review_source (READ_ONLY)")
        try:
            schema = table.split(".")[-2] if table.count(".") == 1 else None
            if schema:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
            conn.execute(
                f"CREATE OR REPLACE TABLE {target} AS " + SHEET_SQL.format(db="review_source."),
                parameters,
            )
        finally:
            conn.execute("DETACH review_source")
        return scalar(conn, f"SELECT count(*) FROM {target}")


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, list):
        return as_text_cell(CSV_LIST_SEPARATOR.join(str(item) for item in value))
    if isinstance(value, str):
        return as_text_cell(value)
    return value

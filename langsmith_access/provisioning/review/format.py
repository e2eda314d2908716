"""The review sheet's columns and names, and the error for a sheet that cannot be used."""

from __future__ import annotations

# A cell that starts like a formula (at its start, or after a ';', a tab or a line break) is
# written with an apostrophe there, as `export --format csv` writes it, which spreadsheets show
# as text; the sheet is read back without it.
from langsmith_access.store.export import as_text_cell as as_text_cell
from langsmith_access.store.export import from_text_cell as from_text_cell
from langsmith_access.store.sql import column_names

DEFAULT_TABLE = "grant_review"
DUCKDB_SUFFIXES = (".duckdb", ".db", ".ddb")

# The sheet: the dbt model review_sheet's columns (current grants with who, where, what, since
# when, and the deny access policies the role carries), then the reviewer's columns. README
# "Review round trip" documents this order; new columns go after the existing ones.
GRANT_COLUMNS = (
    "grant_id", "email", "full_name", "user_id", "is_disabled", "org_role_name",
    "workspace_name", "workspace_id", "role_name", "role_id", "entitlement_type", "held_since",
    "deny_policy_names", "is_scim_managed",
)
# How a list (deny_policy_names) is written in one CSV cell; a spreadsheet shows it as is.
CSV_LIST_SEPARATOR = "; "
# The LangSmith organization the sheet was exported from (not a column of the model): a sheet
# queued against another org's database is refused whole.
ORGANIZATION_COLUMN = "organization_id"
REVIEWER_SHEET_COLUMNS = ("decision", "reviewer", "reason")
SHEET_COLUMNS = (*GRANT_COLUMNS, ORGANIZATION_COLUMN, *REVIEWER_SHEET_COLUMNS)

READ_ONLY_REASON = (
    "Organization roles are read-only here: LangSmith replaces a member's single organization "
    "role on update, so change it in LangSmith itself."
)


class ReviewError(ValueError):
    """The sheet (or the request to read or write it) cannot be used as a whole; nothing was
    queued. The message says what is wrong and where."""


def require_tables(conn, *tables: str) -> None:
    """Refuse a database whose latest sync did not build ``tables`` (schema main)."""
    present = {
        name for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
    }
    missing = set(tables) - present
    if missing:
        raise ReviewError(
            f"the analysts' database has no {', '.join(sorted(missing))} yet: run "
            "`langsmith-access sync` first."
        )


def require_columns(conn, table: str, columns: tuple[str, ...]) -> None:
    """Refuse a table (schema main) built by an older version that lacks some of ``columns``:
    the next sync rebuilds it with them."""
    present = column_names(conn, "main", table)
    missing = [column for column in columns if column not in present]
    if missing:
        raise ReviewError(
            f"the analysts' database's {table} has no {', '.join(missing)} column yet (it was "
            "built by an older version): run `langsmith-access sync` to rebuild it."
        )

"""Access-review round trip: a sheet of grants out, the reviewer's revokes back into the queue.

1. ``export_review_sheet`` (``export.py``) writes the current workspace grants from the dbt
   model ``review_sheet``, one row per grant, with empty ``decision``, ``reviewer`` and
   ``reason`` columns: a CSV file, or a table in a DuckDB file of the reviewer's own (never the
   analysts' database, which every publish replaces).
2. The reviewer writes ``revoke`` in the ``decision`` column of each grant to take away
   (``keep`` or empty keeps it), optionally with a per-row ``reviewer`` and ``reason``.
3. ``read_csv_sheet`` / ``read_table_sheet`` (``sheet.py``) read the marked rows back, and
   ``queue_revokes`` (``queueing.py``) queues one revoke per row through the normal queue
   (``queue.submit_on``): validation, de-duplication and the recording of rejections all apply;
   the sensor (or ``langsmith-access provision``) then applies them.

The sheet's format and rules are in ``sheet.py``. A sheet that cannot be read as a whole raises
``ReviewError`` and queues nothing; rows that are well formed but cannot be revoked are recorded
as rejected requests, like any rejected request, and reported.

Plain Python, no Dagster.
"""

from langsmith_access.provisioning.review.export import export_review_sheet, organization_admins_left_out
from langsmith_access.provisioning.review.format import (
    DEFAULT_TABLE,
    DUCKDB_SUFFIXES,
    SHEET_COLUMNS,
    ReviewError,
)
from langsmith_access.provisioning.review.queueing import (
    ADMIN_NOTE,
    SCIM_NOTE,
    ReviewResult,
    RowOutcome,
    SheetOfAnotherOrganization,
    queue_revokes,
)
from langsmith_access.provisioning.review.sheet import (
    MarkedRow,
    ReviewSheet,
    read_csv_sheet,
    read_table_sheet,
)

__all__ = [
    "ADMIN_NOTE",
    "DEFAULT_TABLE",
    "DUCKDB_SUFFIXES",
    "SCIM_NOTE",
    "SHEET_COLUMNS",
    "MarkedRow",
    "ReviewError",
    "ReviewResult",
    "ReviewSheet",
    "RowOutcome",
    "SheetOfAnotherOrganization",
    "export_review_sheet",
    "organization_admins_left_out",
    "queue_revokes",
    "read_csv_sheet",
    "read_table_sheet",
]

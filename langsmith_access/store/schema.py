"""Tables Python owns: the raw tables (the sync's, and provisioning's observations),
``sync_runs``, the provisioning queue and the notification outbox.

dbt owns every other table (the marts, the reports and ``grant_history``) and is their only
writer. ``sync_runs`` is written by Python because it records the outcome of the whole run, dbt
step included.
"""

from __future__ import annotations

from collections.abc import Collection

import duckdb

from langsmith_access.names import SYNC_JOB
from langsmith_access.store.raw_tables import RAW_SCHEMA, RAW_TABLES, create_table_sql
from langsmith_access.store.sections import ensure_section_tables
from langsmith_access.store.sql import first_row, scalar, table_exists

SYNC_RUNS_DDL = """
CREATE TABLE IF NOT EXISTS main.sync_runs (
    sync_id VARCHAR PRIMARY KEY,        -- the Dagster run id
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    status VARCHAR NOT NULL,            -- 'succeeded', or 'failed' (see store/sync_runs.py)
    membership_route VARCHAR,           -- 'enriched_members' | 'workspace_members'
    users BIGINT,
    pending_invites BIGINT,
    workspaces BIGINT,
    roles BIGINT,
    entitlements BIGINT,
    grants BIGINT,
    workspace_grants BIGINT,
    api_calls BIGINT,
    api_retries BIGINT,
    api_rate_limited BIGINT,
    api_wait_seconds DOUBLE,
    duration_seconds DOUBLE,
    route_reason VARCHAR,               -- why that membership route (e.g. the key's roles)
    anonymity_restricted BOOLEAN        -- the members answer was anonymity-restricted
)
"""

# Columns added to sync_runs after its first release: CREATE TABLE IF NOT EXISTS leaves an older
# table as it was, so these are added to it.
SYNC_RUNS_ADDED_COLUMNS = (
    ("route_reason", "VARCHAR"),
    ("anonymity_restricted", "BOOLEAN"),
    # The Dagster job of the run: langsmith_access_sync or langsmith_access_inventory (null in
    # rows written before the inventory existed: those are syncs).
    ("job", "VARCHAR"),
    # JSON text {"<section>": "<reason>"}: sections of the access picture the plan, the key or
    # the install does not have, left empty by this run (DESIGN.md section 9).
    ("skipped_sections", "VARCHAR"),
    # JSON text {"<section>": <rows>}: what this run read of the sections it read.
    ("section_rows", "VARCHAR"),
    # A failed run's cause, "<step>: <message>" (null for a run that succeeded).
    ("failure", "VARCHAR"),
    # The LangSmith organization the run was for (null in rows written before it was recorded):
    # the database holds that org's data, and no run for another org may write it
    # (store/sync_runs.py, check_organization).
    ("organization_id", "VARCHAR"),
)

# How this sync read memberships, written by the members extract and read into sync_runs:
# one row, replaced by each sync. Not a dbt source.
MEMBERSHIP_READ_DDL = f"""
CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.membership_read (
    sync_id VARCHAR,
    membership_route VARCHAR,
    route_reason VARCHAR,
    anonymity_restricted BOOLEAN,
    withheld_values_kept BIGINT         -- values kept from the previous sync (see extract.py)
)
"""


# The provisioning queue. `request_seq` orders requests; statuses go
# pending -> in_progress -> applied | already_satisfied | rejected | failed, and a grant the
# access policy sends for approval starts awaiting_approval -> pending | denied | approval_expired.
PROVISIONING_REQUESTS_DDL = """
CREATE SEQUENCE IF NOT EXISTS main.provisioning_request_seq START 1;
CREATE TABLE IF NOT EXISTS main.provisioning_requests (
    request_id VARCHAR PRIMARY KEY,
    request_seq BIGINT NOT NULL DEFAULT nextval('main.provisioning_request_seq'),
    action VARCHAR NOT NULL,            -- 'grant' | 'revoke'
    user_id VARCHAR,                    -- ls_user_id, once resolved
    user_email VARCHAR,
    workspace_id VARCHAR,
    workspace_name VARCHAR,
    role_id VARCHAR,
    role_name VARCHAR,                  -- the role's display name
    status VARCHAR NOT NULL,
    status_detail VARCHAR,              -- why rejected or failed, or what was done
    reason VARCHAR,
    requested_by VARCHAR,
    requested_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    run_id VARCHAR,                     -- the provisioning run that claimed it
    requested_user VARCHAR,             -- the values as they were asked for
    requested_workspace VARCHAR,
    requested_role VARCHAR
)
"""

# Columns added to provisioning_requests after its first release (access governance, DESIGN.md
# section 10), added in place to an older table like SYNC_RUNS_ADDED_COLUMNS.
PROVISIONING_REQUESTS_ADDED_COLUMNS = (
    ("expires_at", "TIMESTAMPTZ"),          # a time-bound grant: when its access ends (set when applied)
    ("parent_request_id", "VARCHAR"),       # an expiry revoke: the grant it ends
    ("approved_by", "VARCHAR"),             # the approver's email
    ("approved_at", "TIMESTAMPTZ"),
    ("prior_role_id", "VARCHAR"),           # an applied grant: the member's role before it (null: not a member)
    ("access_duration_seconds", "BIGINT"),  # a time-bound grant's length, counted from when it is applied
    ("access_until", "TIMESTAMPTZ"),        # or its fixed end (--until)
    ("approval_deadline", "TIMESTAMPTZ"),   # awaiting approval past this: approval_expired
)

# Decisions on requests awaiting approval. A refused decision (not an approver, self-approval,
# not awaiting) is not a decision: it is a `decision_refused` event in provisioning_events.
PROVISIONING_APPROVALS_DDL = """
CREATE TABLE IF NOT EXISTS main.provisioning_approvals (
    approval_id VARCHAR PRIMARY KEY,
    request_id VARCHAR NOT NULL,
    decision VARCHAR NOT NULL,          -- 'approved' | 'denied'
    decided_by VARCHAR NOT NULL,        -- the approver's email
    decided_at TIMESTAMPTZ NOT NULL,
    comment VARCHAR
)
"""

# The audit trail: one row per decision and per API call. `detail` is JSON (method, path,
# status code, roles...); it never holds a secret.
PROVISIONING_EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS main.provisioning_events (
    event_id VARCHAR PRIMARY KEY,
    request_id VARCHAR NOT NULL,
    "at" TIMESTAMPTZ NOT NULL,          -- "at" is an SQL keyword: quote it in queries
    kind VARCHAR NOT NULL,
    detail VARCHAR,
    run_id VARCHAR
)
"""


# The notification outbox (DESIGN.md section 10): one row per event to POST to the webhook,
# delivered at least once (``governance/notifications.py``). It lives in the working file, like
# the queue: a sync writes only its scratch copy, so a failed sync loses none of it, and the
# event a failed sync raises is written here after its scratch copy is discarded.
NOTIFICATIONS_DDL = """
CREATE SEQUENCE IF NOT EXISTS main.notification_seq START 1;
CREATE TABLE IF NOT EXISTS main.notifications (
    notification_id VARCHAR PRIMARY KEY,
    notification_seq BIGINT NOT NULL DEFAULT nextval('main.notification_seq'),  -- delivery order
    event VARCHAR NOT NULL,             -- 'request.applied', 'access.expiring', ...
    payload VARCHAR NOT NULL,           -- the JSON body (event, at, org, request_id, user, ...)
    status VARCHAR NOT NULL,            -- 'pending' | 'delivered'
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error VARCHAR,                 -- why the last attempt failed (never the URL)
    created_at TIMESTAMPTZ NOT NULL,
    delivered_at TIMESTAMPTZ
)
"""


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """Create every Python-owned table that does not exist yet (idempotent)."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
    if not table_exists(conn, RAW_SCHEMA, OBSERVATIONS):
        _create_observations_of_an_older_release(conn)
    for table in RAW_TABLES:
        conn.execute(create_table_sql(table))
    _add_missing_raw_columns(conn)
    ensure_section_tables(conn)
    conn.execute(SYNC_RUNS_DDL)
    for column, sql_type in SYNC_RUNS_ADDED_COLUMNS:
        conn.execute(f"ALTER TABLE main.sync_runs ADD COLUMN IF NOT EXISTS {column} {sql_type}")
    conn.execute(MEMBERSHIP_READ_DDL)
    conn.execute(PROVISIONING_REQUESTS_DDL)
    for column, sql_type in PROVISIONING_REQUESTS_ADDED_COLUMNS:
        conn.execute(f"ALTER TABLE main.provisioning_requests ADD COLUMN IF NOT EXISTS {column} {sql_type}")
    conn.execute(PROVISIONING_APPROVALS_DDL)
    conn.execute(PROVISIONING_EVENTS_DDL)
    conn.execute(NOTIFICATIONS_DDL)


OBSERVATIONS = "provisioning_observations"

# What a release from before raw.provisioning_observations (before 7814239) provisioned since its
# last sync: it wrote each change into main.grants itself, so a membership provisioning settled
# after that sync's listing whose grant differs from the listing is one it verified. Without
# these, the first rebuild (a provisioning run before this version's first sync) lays no change
# over the listing: a grant that release added is taken away, one it removed given back, each
# closed and reopened in grant_history and listed as drift. Each is dated as that release's own
# snapshot dated it (its build after the run), else when its request settled: dated at the
# settling while the snapshot opened the new role at the build, a role change ended the old
# role seconds before the new one began, and the member held neither in grant_history between.
_OLDER_RELEASE_OBSERVATIONS_SQL = f"""
INSERT INTO {RAW_SCHEMA}.{OBSERVATIONS}
    (observation_id, request_id, run_id, verified_at, workspace_id, ls_user_id, role_id,
     workspace_identity_id, observed)
WITH listed AS (
    SELECT ls_user_id AS user_id, workspace_id, any_value(role_id) AS role_id
    FROM {RAW_SCHEMA}.workspace_memberships WHERE ls_user_id IS NOT NULL
    GROUP BY ALL
),
granted AS (
    SELECT user_id, workspace_id, any_value(role_id) AS role_id,
        any_value(workspace_identity_id) AS workspace_identity_id
    FROM main.grants WHERE entitlement_type = 'workspace_role'
    GROUP BY ALL
),
since_sync AS (
    SELECT request_id, run_id, status, updated_at, user_id, workspace_id, request_seq,
        action || ':' || coalesce(role_id, '') AS change,
        -- The change the last request applied before this one on the membership made.
        last_value(CASE WHEN status = 'applied' THEN action || ':' || coalesce(role_id, '') END IGNORE NULLS) OVER (
            PARTITION BY user_id, workspace_id ORDER BY request_seq
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS applied_before
    FROM main.provisioning_requests
    WHERE status IN ('applied', 'already_satisfied') AND user_id IS NOT NULL AND workspace_id IS NOT NULL
        AND updated_at > (SELECT max(fetched_at) FROM {RAW_SCHEMA}.workspace_memberships)
),
settled AS (
    -- A request that found done what the one applied before it did (asked again) is not the
    -- last word on the membership: that one's own write is.
    SELECT * FROM since_sync
    WHERE NOT (status = 'already_satisfied' AND change IS NOT DISTINCT FROM applied_before)
    QUALIFY row_number() OVER (PARTITION BY user_id, workspace_id ORDER BY updated_at DESC, request_seq DESC) = 1
),
snapshot_changes AS ({{snapshot_changes}})
SELECT 'upgrade:' || settled.request_id, settled.request_id, settled.run_id,
    coalesce((SELECT min(changed_at) FROM snapshot_changes AS snapshot
              WHERE snapshot.user_id = settled.user_id AND snapshot.workspace_id = settled.workspace_id
                  AND snapshot.changed_at >= settled.updated_at), settled.updated_at),
    settled.workspace_id, settled.user_id, granted.role_id, granted.workspace_identity_id,
    CASE settled.status WHEN 'applied' THEN 'verified' ELSE 'found' END
FROM settled
LEFT JOIN granted ON granted.user_id = settled.user_id AND granted.workspace_id = settled.workspace_id
LEFT JOIN listed ON listed.user_id = settled.user_id AND listed.workspace_id = settled.workspace_id
WHERE granted.role_id IS DISTINCT FROM listed.role_id
"""
# When that release's snapshot opened or closed each workspace grant (none: it had built none).
_SNAPSHOT_CHANGES_SQL = """
SELECT user_id, workspace_id, changed_at
FROM snapshots.grants_snapshot, unnest([dbt_valid_from, dbt_valid_to]) AS changes(changed_at)
WHERE entitlement_type = 'workspace_role' AND changed_at IS NOT NULL
"""
_NO_SNAPSHOT_CHANGES_SQL = (
    "SELECT NULL::VARCHAR AS user_id, NULL::VARCHAR AS workspace_id, NULL::TIMESTAMPTZ AS changed_at")


def _create_observations_of_an_older_release(conn: duckdb.DuckDBPyConnection) -> None:
    """Create ``raw.provisioning_observations`` and, in a database an older release published
    (``main.grants`` written by its provisioning), record in it what that release provisioned
    since its last sync. One transaction: a run killed half-way leaves no table, and the next
    run does it all again (a table without those rows would never get them)."""
    conn.execute("BEGIN")
    try:
        conn.execute(create_table_sql(OBSERVATIONS))
        if all(table_exists(conn, schema, table) for schema, table in (
                ("main", "grants"), ("main", "provisioning_requests"), (RAW_SCHEMA, "workspace_memberships"))):
            snapshotted = table_exists(conn, "snapshots", "grants_snapshot")
            conn.execute(_OLDER_RELEASE_OBSERVATIONS_SQL.format(
                snapshot_changes=_SNAPSHOT_CHANGES_SQL if snapshotted else _NO_SNAPSHOT_CHANGES_SQL))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _add_missing_raw_columns(conn: duckdb.DuckDBPyConnection) -> None:
    """Columns added to a raw table after a database was created (CREATE TABLE IF NOT EXISTS
    leaves the older table as it was): added in place, null in the rows already there."""
    existing = set(
        conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = ?",
            [RAW_SCHEMA],
        ).fetchall()
    )
    for table, columns in RAW_TABLES.items():
        for name, sql_type in columns:
            if (table, name) not in existing:
                conn.execute(f'ALTER TABLE {RAW_SCHEMA}."{table}" ADD COLUMN "{name}" {sql_type}')


def record_membership_read(
    conn: duckdb.DuckDBPyConnection,
    *,
    sync_id: str,
    membership_route: str,
    route_reason: str | None,
    anonymity_restricted: bool,
    withheld_values_kept: int,
) -> None:
    conn.execute(MEMBERSHIP_READ_DDL)
    conn.execute("BEGIN")
    try:
        conn.execute(f"DELETE FROM {RAW_SCHEMA}.membership_read")
        conn.execute(
            f"INSERT INTO {RAW_SCHEMA}.membership_read VALUES (?, ?, ?, ?, ?)",
            [sync_id, membership_route, route_reason, anonymity_restricted, withheld_values_kept],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def known_member_values(
    conn: duckdb.DuckDBPyConnection, user_ids: Collection[str] | None = None
) -> dict[str, dict]:
    """ls_user_id -> email, full_name, display_name as the last published sync had them (empty
    before the first sync); only those of ``user_ids`` when given (a page of members)."""
    if not table_exists(conn, "main", "users") or (user_ids is not None and not user_ids):
        return {}
    sql = "SELECT user_id, email, full_name, display_name FROM main.users"
    if user_ids is None:
        rows = conn.execute(sql).fetchall()
    else:
        rows = conn.execute(
            f"{sql} WHERE user_id IN (SELECT unnest(?))", [list(user_ids)]
        ).fetchall()
    return {
        user_id: {"email": email, "full_name": full_name, "display_name": display_name}
        for user_id, email, full_name, display_name in rows
    }


def previous_sync(conn: duckdb.DuckDBPyConnection) -> dict | None:
    """The latest successful sync's counts, for the shrink guard; None before the first sync.

    Its workspace grants are as ``main.grants`` holds them now: the provisioning runs since that
    sync rebuilt them with what they verified, so revokes the tool made itself (an access
    review's, say) are not taken for an outage by the next sync."""
    # The core sync's rows only (an inventory run's row counts the same tables, unchanged).
    row = first_row(
        conn,
        "SELECT sync_id, users, workspace_grants FROM main.sync_runs "
        "WHERE status = 'succeeded' AND coalesce(job, ?) = ? ORDER BY finished_at DESC LIMIT 1",
        [SYNC_JOB, SYNC_JOB],
    )
    if row is None:
        return None
    workspace_grants = row[2]
    if table_exists(conn, "main", "grants"):
        workspace_grants = scalar(conn, "SELECT count(*) FROM main.grants WHERE entitlement_type = 'workspace_role'")
    return {"sync_id": row[0], "users": row[1], "workspace_grants": workspace_grants}


def workspaces_no_longer_shared(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """The shared workspaces of the last build (``main.workspaces``) that this sync's listing
    (``raw.workspaces``) shows deleted, personal, or not at all, each with the workspace grants
    ``main.grants`` holds there, most first: what a drop in workspace grants may come from.
    Empty before the first build."""
    if not table_exists(conn, "main", "workspaces") or not table_exists(conn, "main", "grants"):
        return []
    return [(name, grants) for name, grants in conn.execute(
        "SELECT w.display_name, count(g.grant_id) FROM main.workspaces AS w "
        "LEFT JOIN main.grants AS g ON g.workspace_id = w.workspace_id "
        "AND g.entitlement_type = 'workspace_role' "
        f"WHERE w.workspace_id NOT IN (SELECT workspace_id FROM {RAW_SCHEMA}.workspaces "
        "WHERE NOT is_personal AND NOT is_deleted) "
        "GROUP BY w.workspace_id, w.display_name ORDER BY 2 DESC, 1"
    ).fetchall()]

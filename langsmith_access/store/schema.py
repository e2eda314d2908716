"""Tables Python owns: the raw tables (the sync's, and provisioning's observations),
``sync_runs`` and the provisioning queue.

dbt owns every other table (the marts, the reports and ``grant_history``) and is their only
writer. ``sync_runs`` is written by Python because it records the outcome of the whole run, dbt
step included.
"""

from __future__ import annotations

import duckdb

from langsmith_access.store.raw_tables import RAW_SCHEMA, RAW_TABLES, create_table_sql

SYNC_RUNS_DDL = """
CREATE TABLE IF NOT EXISTS main.sync_runs (
    sync_id VARCHAR PRIMARY KEY,        -- the Dagster run id
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    status VARCHAR NOT NULL,            -- 'succeeded' (failed syncs publish nothing)
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
    duration_seconds DOUBLE
)
"""


# The provisioning queue. `request_seq` orders requests; statuses go
# pending -> in_progress -> applied | already_satisfied | rejected | failed.
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


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """Create every Python-owned table that does not exist yet (idempotent)."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
    for table in RAW_TABLES:
        conn.execute(create_table_sql(table))
    conn.execute(SYNC_RUNS_DDL)
    conn.execute(PROVISIONING_REQUESTS_DDL)
    conn.execute(PROVISIONING_EVENTS_DDL)


def previous_sync(conn: duckdb.DuckDBPyConnection) -> dict | None:
    """The latest successful sync's counts, for the shrink guard; None before the first sync."""
    row = conn.execute(
        "SELECT sync_id, users, workspace_grants FROM main.sync_runs "
        "WHERE status = 'succeeded' ORDER BY finished_at DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return {"sync_id": row[0], "users": row[1], "workspace_grants": row[2]}

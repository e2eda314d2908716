"""Rebuilding ``grants`` and everything downstream of it (the reports, ``grants_snapshot`` ->
``grant_history``) from what provisioning verified, outside a sync's own build.

Provisioning records each verified change in ``raw.provisioning_observations``; dbt lays those
over the latest sync's listings in ``grants`` and the snapshot dates each change by its
verification. A provisioning run does this itself once its requests settle. One that died in
between leaves observations dbt has not built: the next run to take the database (a
provisioning run, or a sync before it replaces the listings those observations were laid over)
builds them first, so the history dates the changes when they were verified, not at a later
build, with no gap between the role that ended and the one that began.

A refresh rewrites only the changed users' rows of the models configured with ``refresh_key``
when every other user's rows are already what the models' queries give: no run may commit a
build that rebuilt what such a model reads without rebuilding the model (a subset of the sync
job launched from the Dagster UI, ``users`` alone say, publishes nothing: ``defs/sync/publish.py``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

from langsmith_access.governance.drift import UnexplainedChange, notify_unexplained_changes, unexplained_changes
from langsmith_access.governance.notifications import Notifier
from langsmith_access.store.raw_tables import BUILT_OBSERVATIONS, RAW_SCHEMA, unbuilt_observations_query
from langsmith_access.store.sql import scalar, table_exists
from langsmith_access.transform.invocation import build
from langsmith_access.transform.project import built_by_this_project, dbt_vars, write_project_hash

# The observations' staging, grants and every model downstream of it, each with its tests.
# dbt's unit tests are not part of any run (make test runs them).
REFRESH_SELECT = ["stg_langsmith__provisioning_observations+", "grants+"]
# The users a refresh's scoped models rebuild (macros/refresh_scope.sql reads it by this name).
REFRESH_SCOPE = f"{RAW_SCHEMA}.refresh_scope"
# Above this many users, replacing their rows costs about what writing the tables whole does.
MAX_REFRESH_SCOPE_USERS = 2_000


def rebuild_history(
    database_file: Path, target: Path, *, unused_days: int, notifier: Notifier | None = None,
    timeout_seconds: float = 600,
) -> list[UnexplainedChange]:
    """Build ``REFRESH_SELECT`` in ``database_file`` (a scratch copy: the caller commits it
    only if this returns); raises ``DbtRunError`` naming what failed.

    The models configured with ``refresh_key`` (the access picture's largest tables) replace
    only the rows of the users whose changes are not built yet, listed for dbt in
    ``raw.refresh_scope`` (see macros/refresh_scope.sql for when a model does so); the table
    is dropped again before this returns, so the committed file never holds it.

    Returns the unexplained changes the build found: what a request found changed in
    LangSmith (by hand, by SCIM) and recorded, before its write or instead of one, each
    ``change.unexplained`` through ``notifier`` in the same file (so notified exactly when it is
    committed, once however often this runs)."""
    with duckdb.connect(str(database_file)) as conn:
        since = first_unbuilt_observation_at(conn)
        scoped = _write_refresh_scope(conn)
        # What REFRESH_SELECT's models read and do not rebuild may be missing, or hold other
        # columns, in a file another version of the project built last (an older release's,
        # not synced since the upgrade): build the whole project over its latest listings then.
        select = REFRESH_SELECT if built_by_this_project(conn) else []
        # What the build records first, written here: one opening of the file less.
        write_project_hash(conn)
    with build(database_file, target, select=select, timeout_seconds=timeout_seconds,
               variables=dbt_vars(unused_days=unused_days), project_hash_written=True) as invocation:
        invocation.raise_on_failure()
    with duckdb.connect(str(database_file)) as conn:
        if scoped:
            conn.execute(f"DROP TABLE {REFRESH_SCOPE}")
        if since is None:
            return []
        changes = unexplained_changes(conn, seen_since=since)
        if notifier is not None:
            notify_unexplained_changes(conn, notifier, changes)
        return changes


def _write_refresh_scope(conn: duckdb.DuckDBPyConnection) -> bool:
    """``raw.refresh_scope``: the users of the observations dbt has not built yet, when there are
    some and not so many that rebuilding whole tables is as cheap. False: none written."""
    conn.execute(f"DROP TABLE IF EXISTS {REFRESH_SCOPE}")
    if not table_exists(conn, *BUILT_OBSERVATIONS):
        return False  # built by a version without observations: everything is rebuilt
    users = conn.execute(
        "SELECT DISTINCT nullif(trim(ls_user_id), '') AS user_id "
        f"FROM ({unbuilt_observations_query(conn)}) WHERE nullif(trim(ls_user_id), '') IS NOT NULL"
    ).fetchall()
    if not users or len(users) > MAX_REFRESH_SCOPE_USERS:
        return False
    conn.execute(f"CREATE TABLE {REFRESH_SCOPE} (user_id VARCHAR PRIMARY KEY)")
    conn.executemany(f"INSERT INTO {REFRESH_SCOPE} VALUES (?)", users)
    return True


def first_unbuilt_observation_at(conn: duckdb.DuckDBPyConnection) -> datetime | None:
    """When the earliest observation dbt has not built yet was made (None: none): a change the
    refresh dates by one of them is seen at that time or later."""
    return scalar(conn, f"SELECT min(verified_at) FROM ({unbuilt_observations_query(conn)})")


def unbuilt_observations(conn: duckdb.DuckDBPyConnection) -> int:
    """How many recorded observations dbt has not built into ``grants`` yet (a run may have died
    between settling its requests and rebuilding)."""
    return scalar(conn, f"SELECT count(*) FROM ({unbuilt_observations_query(conn)})")

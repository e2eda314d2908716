"""Rebuilding ``grants`` and everything downstream of it (the reports, ``grants_snapshot`` ->
``grant_history``) from what provisioning verified, outside a sync's own build.

Provisioning records each verified change in ``raw.provisioning_observations``; dbt lays those
over the latest sync's listings in ``grants`` and the snapshot dates each change by its
verification. A provisioning run does this itself once its requests settle. One that died in
between leaves observations dbt has not built: the next run to take the database (a
provisioning run, or a sync before it replaces the listings those observations were laid over)
builds them first, so the history dates the changes when they were verified, not at a later
build, with no gap between the role that ended and the one that began.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from langsmith_access.store.raw_tables import RAW_SCHEMA
from langsmith_access.store.sql import scalar
from langsmith_access.transform.invocation import build
from langsmith_access.transform.project import dbt_vars

# The observations' staging, grants and every model downstream of it, each with its tests.
# dbt's unit tests are not part of any run (make test runs them).
REFRESH_SELECT = ["stg_langsmith__provisioning_observations+", "grants+"]


def rebuild_history(database_file: Path, target: Path, *, unused_days: int, timeout_seconds: float = 600) -> None:
    """Build ``REFRESH_SELECT`` in ``database_file`` (a scratch copy: the caller commits it
    only if this returns); raises ``DbtRunError`` naming what failed."""
    with build(database_file, target, select=REFRESH_SELECT, timeout_seconds=timeout_seconds,
               variables=dbt_vars(unused_days=unused_days)) as invocation:
        invocation.raise_on_failure()


def unbuilt_observations(conn: duckdb.DuckDBPyConnection) -> int:
    """How many recorded observations dbt has not built into ``grants`` yet (a run may have died
    between settling its requests and rebuilding): the raw rows against dbt's staged rows."""
    recorded = scalar(conn, f"SELECT count(*) FROM {RAW_SCHEMA}.provisioning_observations")
    try:
        built = scalar(conn, "SELECT count(*) FROM staging.stg_langsmith__provisioning_observations")
    except duckdb.CatalogException:  # built by a version without observations
        built = 0
    return recorded - built

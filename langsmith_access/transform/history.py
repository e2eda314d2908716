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
when every other user's rows are already what the models' queries give. A build that rebuilt an
input of such a model but not the model itself (a subset of the sync job launched from the
Dagster UI, e.g. ``users`` alone) breaks that: ``record_build`` then blocks scoped refreshes
until a build rewrites those models whole (the next sync, or the next refresh, written whole).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb

from langsmith_access.store.raw_tables import RAW_SCHEMA
from langsmith_access.store.sql import scalar, table_exists
from langsmith_access.transform.invocation import build
from langsmith_access.transform.project import dbt_vars

# The observations' staging, grants and every model downstream of it, each with its tests.
# dbt's unit tests are not part of any run (make test runs them).
REFRESH_SELECT = ["stg_langsmith__provisioning_observations+", "grants+"]
GRANTS_MODEL = "model.langsmith_access.grants"  # its unique id in dbt's manifest
# The users a refresh's scoped models rebuild (macros/refresh_scope.sql reads it by this name).
REFRESH_SCOPE = f"{RAW_SCHEMA}.refresh_scope"
# Above this many users, replacing their rows costs about what writing the tables whole does.
MAX_REFRESH_SCOPE_USERS = 2_000
# The models a build left behind an input it rebuilt (see record_build); while it exists every
# refresh is written whole. Written by langsmith-access only, in the raw schema it owns.
REFRESH_SCOPE_BLOCKED = f"{RAW_SCHEMA}.refresh_scope_blocked"


def rebuild_history(database_file: Path, target: Path, *, unused_days: int, timeout_seconds: float = 600) -> None:
    """Build ``REFRESH_SELECT`` in ``database_file`` (a scratch copy: the caller commits it
    only if this returns); raises ``DbtRunError`` naming what failed.

    The models configured with ``refresh_key`` (the access picture's largest tables) replace
    only the rows of the users whose changes are not built yet, listed for dbt in
    ``raw.refresh_scope`` (see macros/refresh_scope.sql for when a model does so); the table
    is dropped again before this returns, so the committed file never holds it."""
    scoped = _write_refresh_scope(database_file)
    with build(database_file, target, select=REFRESH_SELECT, timeout_seconds=timeout_seconds,
               variables=dbt_vars(unused_days=unused_days)) as invocation:
        invocation.raise_on_failure()
    with duckdb.connect(str(database_file)) as conn:
        if scoped:
            conn.execute(f"DROP TABLE {REFRESH_SCOPE}")
        else:  # every guarded node is grants or below it: all of them were written whole
            conn.execute(f"DROP TABLE IF EXISTS {REFRESH_SCOPE_BLOCKED}")


def _write_refresh_scope(database_file: Path) -> bool:
    """``raw.refresh_scope``: the users of the observations dbt has not built yet, when there are
    some and not so many that rebuilding whole tables is as cheap. False: none written."""
    with duckdb.connect(str(database_file)) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {REFRESH_SCOPE}")
        if not table_exists(conn, "staging", "stg_langsmith__provisioning_observations"):
            return False  # built by a version without observations: everything is rebuilt
        if refresh_blocked(conn):
            return False  # a build left a scoped model behind its inputs: see record_build
        users = conn.execute(
            f"SELECT DISTINCT nullif(trim(raw.ls_user_id), '') AS user_id "
            f"FROM {RAW_SCHEMA}.provisioning_observations AS raw "
            "WHERE nullif(trim(raw.ls_user_id), '') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
            "staging.stg_langsmith__provisioning_observations AS built "
            "WHERE built.observation_id = raw.observation_id)"
        ).fetchall()
        if not users or len(users) > MAX_REFRESH_SCOPE_USERS:
            return False
        conn.execute(f"CREATE TABLE {REFRESH_SCOPE} (user_id VARCHAR PRIMARY KEY)")
        conn.executemany(f"INSERT INTO {REFRESH_SCOPE} VALUES (?)", users)
    return True


def refresh_blocked(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether a build left the refreshed tables behind what they read (see record_build): a
    provisioning run then rebuilds them even with no new change of its own."""
    return table_exists(conn, *REFRESH_SCOPE_BLOCKED.split("."))


def unbuilt_observations(conn: duckdb.DuckDBPyConnection) -> int:
    """How many recorded observations dbt has not built into ``grants`` yet (a run may have died
    between settling its requests and rebuilding): the raw rows against dbt's staged rows."""
    recorded = scalar(conn, f"SELECT count(*) FROM {RAW_SCHEMA}.provisioning_observations")
    try:
        built = scalar(conn, "SELECT count(*) FROM staging.stg_langsmith__provisioning_observations")
    except duckdb.CatalogException:  # built by a version without observations
        built = 0
    return recorded - built


def scoped_models(manifest: Mapping[str, Any]) -> set[str]:
    """The unique ids of the models a refresh may rewrite for some users only (``refresh_key``)."""
    return {uid for uid, node in manifest["nodes"].items()
            if node["resource_type"] == "model" and node["config"].get("refresh_key")}


def _upstream(manifest: Mapping[str, Any], uid: str) -> set[str]:
    """Every node ``uid`` reads, directly or further upstream."""
    nodes, found, frontier = manifest["nodes"], set(), [uid]
    while frontier:
        for parent in nodes.get(frontier.pop(), {}).get("depends_on", {}).get("nodes", []):
            if parent not in found:
                found.add(parent)
                frontier.append(parent)
    return found


def guarded_nodes(manifest: Mapping[str, Any]) -> set[str]:
    """The scoped models, and what they read that a refresh rebuilds for every user (the grants
    snapshot and grant_history, below grants): a scoped refresh is right only while each of
    these is up to date with what it reads."""
    scoped = scoped_models(manifest)
    read_by_scoped = set().union(*(_upstream(manifest, model) for model in scoped))
    return scoped | {uid for uid in read_by_scoped if GRANTS_MODEL in _upstream(manifest, uid)}


def models_left_behind(manifest: Mapping[str, Any], built: Iterable[str]) -> set[str]:
    """The guarded nodes a build of ``built`` (unique ids) did not rebuild although it rebuilt
    one of their inputs, directly or further upstream: their rows may no longer be what their
    queries give from the tables as they are now (a snapshot left behind catches up at the next
    refresh, for every user, under a scoped model that reads it)."""
    return _left_behind(manifest, guarded_nodes(manifest), set(built))


def _left_behind(manifest: Mapping[str, Any], guarded: set[str], built: set[str]) -> set[str]:
    return {uid for uid in guarded if uid not in built and _upstream(manifest, uid) & built}


def record_build(database_file: Path, manifest: Mapping[str, Any], built: Iterable[str]) -> None:
    """After a successful build of ``built`` (the unique ids of the models and snapshots it
    built) in ``database_file`` (a scratch copy): block scoped refreshes when it left a guarded
    node behind an input it rebuilt, and lift the block when it rebuilt every guarded node."""
    built, guarded = set(built), guarded_nodes(manifest)
    behind = _left_behind(manifest, guarded, built)
    if not behind and not guarded <= built:
        return  # nothing it rebuilt feeds a scoped model it left: the block, if any, stays
    with duckdb.connect(str(database_file)) as conn:
        if not behind:
            conn.execute(f"DROP TABLE IF EXISTS {REFRESH_SCOPE_BLOCKED}")
            return
        conn.execute(f"CREATE TABLE IF NOT EXISTS {REFRESH_SCOPE_BLOCKED} (model VARCHAR PRIMARY KEY)")
        conn.executemany(f"INSERT OR IGNORE INTO {REFRESH_SCOPE_BLOCKED} VALUES (?)",
                         [[manifest["nodes"][uid]["name"]] for uid in sorted(behind)])

"""What a build leaves out: the models the inventory fills, which the core sync's ``dbt build``
leaves as they are, and the tables a partial run left behind what it rebuilt.

The models tagged ``inventory`` (``dbt_project.yml``: access policies and the resources they
match, resource tags, audit events, credentials, service accounts, SSO settings) hold one row per
record the inventory read; the core sync's data changes only the names they show (a role's, a
member's email, a workspace's), as of the inventory that read them. Rebuilding them in every core
sync cost a dbt node per model and per test for nothing the inventory had not already built, so
the core sync leaves them as they are in its scratch copy of the working file, which publishing
copies whole.

It builds them itself while the file does not hold them as the project now defines them: a
table missing (a database's first sync, before any inventory) or with other columns than its
model's contract, or a column of another type (a new version of the project), since models the
core sync does build read them (``user_activity``, ``report_credential_hygiene``).

A run of some of a job's assets only (the Dagster UI's "Materialize selected") may rebuild what
a table reads and not the table: ``left_behind`` names those tables, and the publish refuses to
give analysts such a picture (``defs/sync/publish.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import duckdb

INVENTORY_TAG = "inventory"
# dbt's selector for them (``--exclude``).
INVENTORY_SELECTOR = f"tag:{INVENTORY_TAG}"

Node = TypeVar("Node")


# A table's columns: (name, data type); the type is None where the contract declares none.
Columns = list[tuple[str, str | None]]


def inventory_models(manifest: Mapping[str, Any]) -> dict[tuple[str, str], Columns]:
    """The models the inventory fills: (schema, table) -> their contract's columns."""
    return {
        (node["schema"], node["alias"]): [(name, column.get("data_type"))
                                          for name, column in (node.get("columns") or {}).items()]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and INVENTORY_TAG in (node.get("tags") or [])
    }


def holds_current_tables(database_file: Path | str, tables: Mapping[tuple[str, str], Columns]) -> bool:
    """Whether ``database_file`` holds every one of ``tables`` with exactly those columns, in
    that order, each of its declared type (a new version of the project may change a column's
    type and keep its name). Opens the file read-only; nobody may be writing it (the lease
    holder asks)."""
    if not Path(database_file).exists():
        return False
    with duckdb.connect(str(database_file), read_only=True) as connection:
        found: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, table, column, data_type in connection.execute(
            "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() "
            "WHERE database_name = current_database() ORDER BY schema_name, table_name, column_index"
        ).fetchall():
            found.setdefault((schema, table), []).append((column, data_type))
    return all(_same_columns(found.get(key), columns) for key, columns in tables.items())


def _same_columns(found: list[tuple[str, str]] | None, declared: Columns) -> bool:
    """DuckDB's names of the types are the contracts' (``VARCHAR``, ``TIMESTAMP WITH TIME ZONE``).
    ``found`` None: no such table."""
    return found is not None and len(found) == len(declared) and all(
        name == declared_name and (declared_type is None or data_type.upper() == declared_type.upper())
        for (name, data_type), (declared_name, declared_type) in zip(found, declared, strict=True)
    )


def core_sync_exclusions(manifest: Mapping[str, Any], database_file: Path | str) -> list[str]:
    """dbt's ``--exclude`` for a core sync's build of the whole project on ``database_file``:
    the inventory's models (and so their tests) when the file holds them as the project
    defines them, else nothing."""
    tables = inventory_models(manifest)
    if tables and holds_current_tables(database_file, tables):
        return [INVENTORY_SELECTOR]
    return []


def left_behind(inputs: Mapping[Node, Iterable[Node]], rebuilt: Collection[Node],
                tables: Iterable[Node], kept: Collection[Node] = ()) -> set[Node]:
    """The ``tables`` a run did not rebuild although it rebuilt something they read, directly or
    further upstream (``inputs``: what each node reads): their rows may no longer be what their
    queries give from the tables as they are now. ``kept``: tables a run may leave as they are
    (the inventory's, in a core sync): what reads one of them reads it as it is, so what it was
    built from does not count unless it was rebuilt itself."""
    return {table for table in tables
            if table not in rebuilt and not upstream(inputs, table, kept).isdisjoint(rebuilt)}


def upstream(inputs: Mapping[Node, Iterable[Node]], node: Node, kept: Collection[Node] = ()) -> set[Node]:
    """Every node ``node`` reads, directly or further upstream; not what a ``kept`` node reads."""
    found: set[Node] = set()
    frontier = [node]
    while frontier:
        for parent in inputs.get(frontier.pop(), ()):
            if parent not in found:
                found.add(parent)
                if parent not in kept:
                    frontier.append(parent)
    return found

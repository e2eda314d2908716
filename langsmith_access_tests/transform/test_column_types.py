"""Every column of the dbt project's sources, models and snapshots declares its DuckDB type
(``data_type`` in ``sources.yml``, ``_staging.yml``, ``_marts.yml``, ``_reports.yml`` and
``snapshots/*.yml``), spelled as DuckDB reports it.

dbt's docs and the Dagster catalog (dagster-dbt's ``dagster/column_schema``, and
``defs/sources.py`` for the sources) show a column's type only from that declaration: without
it they show "?". Only the marts Python reads have enforced contracts (``dbt_project.yml``); for
every other table nothing but this test keeps the declarations true, so it holds them against a
real build: the session's synced template (a sync of the sandbox org, dbt build included).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb

from langsmith_access.definitions import defs
from langsmith_access.defs.sources import COLUMN_SCHEMA
from langsmith_access.transform import prepare_manifest

Columns = dict[str, str | None]  # column name -> data_type (None: declares no type)


def declared_tables(manifest: Mapping[str, Any]) -> dict[tuple[str, str], Columns]:
    """(schema, table) -> its columns as the yml files declare them, for every model, snapshot and
    source."""
    models = {(node["schema"], node["alias"]): node["columns"]
              for node in manifest["nodes"].values() if node["resource_type"] in ("model", "snapshot")}
    sources = {(source["schema"], source["identifier"]): source["columns"] for source in manifest["sources"].values()}
    return {table: {name: column.get("data_type") for name, column in columns.items()}
            for table, columns in (models | sources).items()}


def built_tables(database: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(schema, table) -> its columns and their types, as DuckDB reports them."""
    built: dict[tuple[str, str], dict[str, str]] = {}
    with duckdb.connect(str(database), read_only=True) as conn:
        for schema, table, column, data_type in conn.execute(
                "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
                "ORDER BY table_schema, table_name, ordinal_position").fetchall():
            built.setdefault((schema, table), {})[column] = data_type
    return built


def declaration_errors(declared: Mapping[tuple[str, str], Columns],
                       built: Mapping[tuple[str, str], Mapping[str, str]]) -> list[str]:
    """What the declarations get wrong about the built tables, one line each."""
    errors = []
    for (schema, table), columns in sorted(declared.items()):
        name = f"{schema}.{table}"
        if (schema, table) not in built:
            errors.append(f"{name}: declared, but the build made no such table")
            continue
        actual = built[(schema, table)]
        for column, data_type in columns.items():
            if column not in actual:
                errors.append(f"{name}.{column}: declared, but the table has no such column")
            elif data_type != actual[column]:
                errors.append(f"{name}.{column}: declared data_type {data_type!r}, built {actual[column]!r}")
        errors += [f"{name}.{column}: built ({actual[column]}), but not declared" for column in actual
                   if column not in columns]
    return errors


def test_every_declared_column_has_the_type_the_build_gives_it_and_dagster_shows_it(template):
    manifest = json.loads(prepare_manifest().read_text())
    declared = declared_tables(manifest)
    # The raw tables, the tables Python writes in main, staging, the marts, the reports and the
    # snapshots that keep the history.
    assert {schema for schema, _ in declared} == {"raw", "main", "staging", "snapshots"}
    assert len(declared) >= 60 and ("main", "report_privileged_access") in declared

    errors = declaration_errors(declared, built_tables(template.path))
    assert errors == [], ("declare each column of the table in its yml (models/*/_*.yml, sources.yml), with "
                          "data_type spelled as DuckDB's information_schema reports it")

    # The catalog's Columns tab shows the same types (the asset keys are <schema>/<table>), for
    # every model and every source a model reads: dagster-dbt makes no asset of the others.
    graph = defs().resolve_asset_graph()
    shown = {tuple(key.path): {column.name: column.type for column in graph.get(key).metadata[COLUMN_SCHEMA].columns}
             for key in graph.get_all_asset_keys() if tuple(key.path) in declared}
    unread = {(source["schema"], source["identifier"]) for unique_id, source in manifest["sources"].items()
              if not any(child.startswith("model.") for child in manifest["child_map"][unique_id])}
    assert set(declared) - set(shown) == unread
    assert shown == {table: columns for table, columns in declared.items() if table in shown}

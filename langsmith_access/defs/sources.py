"""The columns of the tables Python writes (the raw tables, the records), for the catalog.

dbt's models carry their columns into the catalog through dagster-dbt; the tables they read
are described in ``sources.yml`` and, without this, shown with no columns. Read from dbt's
manifest as JSON: the runner builds the provisioning job through ``definitions.py`` without
loading dagster-dbt.
"""

import json
import warnings

import dagster as dg

from langsmith_access.transform import prepare_manifest

COLUMN_SCHEMA = "dagster/column_schema"


def source_columns() -> dict[dg.AssetKey, dg.TableSchema]:
    """Each dbt source's columns as sources.yml describes them, by the source's asset key
    (``<schema>/<table>``, dagster-dbt's key for it: the extract assets' keys)."""
    manifest = json.loads(prepare_manifest().read_text())
    return {
        dg.AssetKey([source["source_name"], source["name"]]): dg.TableSchema(columns=[
            dg.TableColumn(name, type=column.get("data_type") or "?", description=column.get("description") or None)
            for name, column in source["columns"].items()
        ])
        for source in manifest["sources"].values() if source.get("columns")
    }


def with_source_columns(defs: dg.Definitions) -> dg.Definitions:
    """``defs`` with each source's columns on the asset of that key, where it has none."""
    columns = source_columns()

    def described(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key not in columns or COLUMN_SCHEMA in spec.metadata:
            return spec
        return spec.merge_attributes(metadata={COLUMN_SCHEMA: columns[spec.key]})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # map_asset_specs, as in defs/orgs.py
        return defs.map_asset_specs(func=described)

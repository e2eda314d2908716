"""Which inventory models a core sync's build leaves out, decided from the manifest and the file
(``transform/selection.py``), without dbt: the end-to-end runs are in
sync/test_core_sync_leaves_inventory_tables.py."""

import duckdb

from langsmith_access.transform.selection import INVENTORY_SELECTOR, core_sync_exclusions, inventory_models

MANIFEST = {"nodes": {
    "model.p.credentials": {"resource_type": "model", "schema": "main", "alias": "credentials",
                            "tags": ["inventory"], "columns": {"credential_id": {}, "kind": {}}},
    "test.p.credentials_key": {"resource_type": "test", "schema": "main", "alias": "credentials_key",
                               "tags": ["inventory"], "columns": {}},
    "model.p.grants": {"resource_type": "model", "schema": "main", "alias": "grants", "tags": [],
                       "columns": {"grant_id": {}}},
}}


def test_only_inventory_models_held_exactly_as_their_contract_says_are_left_out(tmp_path):
    assert inventory_models(MANIFEST) == {("main", "credentials"): [("credential_id", None), ("kind", None)]}
    database = tmp_path / "working.duckdb"
    assert core_sync_exclusions(MANIFEST, database) == []  # no file yet: build them
    for columns, left_out in (("credential_id VARCHAR, kind VARCHAR", True),
                              ("kind VARCHAR, credential_id VARCHAR", False),  # another order
                              ("credential_id VARCHAR", False),
                              ("credential_id VARCHAR, kind VARCHAR, short_key VARCHAR", False)):
        with duckdb.connect(str(database)) as connection:
            connection.execute(f"CREATE OR REPLACE TABLE main.credentials ({columns})")
        assert core_sync_exclusions(MANIFEST, database) == ([INVENTORY_SELECTOR] if left_out else []), columns
    with duckdb.connect(str(database)) as connection:
        connection.execute("DROP TABLE main.credentials")
        connection.execute("CREATE SCHEMA other")
        connection.execute("CREATE TABLE other.credentials (credential_id VARCHAR, kind VARCHAR)")
    assert core_sync_exclusions(MANIFEST, database) == []  # in another schema: not the model's table


def exclusions_as_the_file_changes(manifest, database, *statements):
    """``core_sync_exclusions`` after each statement has run on ``database``, in turn."""
    seen = []
    for statement in statements:
        with duckdb.connect(str(database)) as connection:
            connection.execute(statement)
        seen.append(core_sync_exclusions(manifest, database))
    return seen


def test_the_inventory_models_are_left_out_only_when_the_file_holds_every_one_of_them(tmp_path):
    # One current table is not enough: a core sync leaving out a model whose table is missing would
    # leave what reads it (user_activity, report_credential_hygiene) failing or stale.
    manifest = {"nodes": {**MANIFEST["nodes"], "model.p.sso_settings": {
        "resource_type": "model", "schema": "main", "alias": "sso_settings", "tags": ["inventory"],
        "columns": {"setting": {}}}}}
    assert exclusions_as_the_file_changes(
        manifest, tmp_path / "working.duckdb",
        "CREATE TABLE main.credentials (credential_id VARCHAR, kind VARCHAR)",
        "CREATE TABLE main.sso_settings (setting VARCHAR)",
    ) == [[], [INVENTORY_SELECTOR]]


def test_a_table_whose_column_has_another_type_than_its_contract_is_built_again(tmp_path):
    # A new version of the project may change a column's type and keep its name (a time kept as
    # text, now a timestamp): a core sync that left the old table would have what reads it
    # (user_activity, report_credential_hygiene) read the old type.
    manifest = {"nodes": {"model.p.credentials": {
        "resource_type": "model", "schema": "main", "alias": "credentials", "tags": ["inventory"],
        "columns": {"credential_id": {"data_type": "VARCHAR"}, "last_used_at": {"data_type": "TIMESTAMP WITH TIME ZONE"}},
    }}}
    database = tmp_path / "working.duckdb"
    assert exclusions_as_the_file_changes(
        manifest, database,
        "CREATE TABLE main.credentials (credential_id VARCHAR, last_used_at VARCHAR)",
        "CREATE OR REPLACE TABLE main.credentials (credential_id VARCHAR, last_used_at TIMESTAMPTZ)",
    ) == [[], [INVENTORY_SELECTOR]]
    # A model whose contract lists no columns is still a table the file must hold.
    empty = {"nodes": {"model.p.nothing": {"resource_type": "model", "schema": "main", "alias": "nothing",
                                           "tags": ["inventory"], "columns": {}}}}
    assert core_sync_exclusions(empty, database) == []

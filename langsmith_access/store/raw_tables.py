"""The raw tables Python writes and the dbt sources read (schema ``raw``).

One place for their shape: the extract code and the provisioning executor insert rows in
exactly these columns, and ``dbt_project/models/staging/sources.yml`` declares the same tables.

- The sync's tables (``org_members`` ... ``workspace_memberships``): each sync replaces their
  rows, so they always hold the latest complete sync, tagged with its ``sync_id`` (the Dagster
  run id) and the time it was fetched.
- ``provisioning_observations``: what provisioning verified in LangSmith, one row per settled
  change, appended in the same transaction as the request's status and never replaced by a
  sync. dbt lays the observations made after the latest sync over that sync's listing to build
  ``grants`` (provisioning never writes ``grants`` itself: dbt is the only writer of the marts).
"""

RAW_SCHEMA = "raw"

# table name -> ordered (column, DuckDB type) pairs
RAW_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    # Active (accepted) org members, disabled ones included.
    "org_members": (
        ("sync_id", "VARCHAR"),
        ("fetched_at", "TIMESTAMPTZ"),
        ("org_identity_id", "VARCHAR"),  # `id` of the org member row
        ("ls_user_id", "VARCHAR"),  # the stable user key
        ("user_id", "VARCHAR"),  # legacy id, may be null on the enriched route
        ("email", "VARCHAR"),
        ("full_name", "VARCHAR"),
        ("display_name", "VARCHAR"),
        ("is_disabled", "BOOLEAN"),
        ("org_role_id", "VARCHAR"),
        ("org_role_name", "VARCHAR"),
        ("created_at", "TIMESTAMPTZ"),
    ),
    # Pending org invites: not users, never granted anything.
    "pending_invites": (
        ("sync_id", "VARCHAR"),
        ("fetched_at", "TIMESTAMPTZ"),
        ("invite_id", "VARCHAR"),
        ("email", "VARCHAR"),
        ("org_role_id", "VARCHAR"),
        ("org_role_name", "VARCHAR"),
        ("workspace_ids", "VARCHAR[]"),
        ("workspace_role_id", "VARCHAR"),
        ("created_at", "TIMESTAMPTZ"),
    ),
    # Every workspace the API lists, personal and deleted ones included (filtered in dbt).
    "workspaces": (
        ("sync_id", "VARCHAR"),
        ("fetched_at", "TIMESTAMPTZ"),
        ("workspace_id", "VARCHAR"),
        ("display_name", "VARCHAR"),
        ("tenant_handle", "VARCHAR"),
        ("is_personal", "BOOLEAN"),
        ("is_deleted", "BOOLEAN"),
        ("organization_id", "VARCHAR"),
        ("created_at", "TIMESTAMPTZ"),
    ),
    # Organization and workspace role definitions, built-in and custom.
    "roles": (
        ("sync_id", "VARCHAR"),
        ("fetched_at", "TIMESTAMPTZ"),
        ("role_id", "VARCHAR"),
        ("name", "VARCHAR"),  # ORGANIZATION_ADMIN, WORKSPACE_USER, ..., CUSTOM
        ("display_name", "VARCHAR"),
        ("description", "VARCHAR"),
        ("access_scope", "VARCHAR"),  # 'organization' | 'workspace'
        ("organization_id", "VARCHAR"),  # null for built-in roles
        ("permissions", "VARCHAR[]"),
    ),
    # One row per (workspace, member) as listed by the API: the member's workspace role.
    # May include personal and deleted workspaces; dbt keeps only listed, live, shared ones.
    "workspace_memberships": (
        ("sync_id", "VARCHAR"),
        ("fetched_at", "TIMESTAMPTZ"),
        ("workspace_id", "VARCHAR"),
        ("ls_user_id", "VARCHAR"),
        ("workspace_identity_id", "VARCHAR"),  # null on the enriched route, which omits it
        ("role_id", "VARCHAR"),
        ("role_name", "VARCHAR"),
        ("source", "VARCHAR"),  # 'enriched_members' | 'workspace_members'
    ),
    # Written by provisioning, not by the sync: a member's role in a workspace as provisioning
    # verified it after applying a request (role_id null: verified not a member any more).
    "provisioning_observations": (
        ("observation_id", "VARCHAR"),
        ("request_id", "VARCHAR"),
        ("run_id", "VARCHAR"),  # the provisioning run (Dagster run id)
        ("verified_at", "TIMESTAMPTZ"),
        ("workspace_id", "VARCHAR"),
        ("ls_user_id", "VARCHAR"),
        ("role_id", "VARCHAR"),  # null: not a member of the workspace
        ("workspace_identity_id", "VARCHAR"),  # the member row's id, when known
    ),
}


def create_table_sql(table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS raw.<table> (...)`` for one raw table."""
    columns = ", ".join(f'"{name}" {sql_type}' for name, sql_type in RAW_TABLES[table])
    return f'CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}."{table}" ({columns})'


def column_names(table: str) -> list[str]:
    return [name for name, _ in RAW_TABLES[table]]

"""The raw tables Python writes and the dbt sources read (schema ``raw``).

One place for their shape: the extract code and the provisioning executor insert rows in
exactly these columns, and ``dbt_project/models/staging/sources.yml`` declares the same tables.

- The sync's tables (``org_members`` ... ``workspace_memberships``): each sync replaces their
  rows, so they always hold the latest complete sync, tagged with its ``sync_id`` (the Dagster
  run id) and the time it was fetched.
- The rest of the access picture (DESIGN.md section 9): ``org_settings`` (read by the core sync
  with the org info), and the inventory's ``access_policies``, ``resource_tags``, ``credentials``,
  ``service_accounts``, ``sso_settings`` (each replaced by the inventory run that read it) and
  ``audit_events`` (appended to, window by window, de-duplicated by event id) with
  ``audit_windows`` (where that load stands). Login methods and SCIM groups are columns of
  ``org_members``.
- ``provisioning_observations``: what provisioning verified in LangSmith, one row per settled
  change, appended in the same transaction as the request's status and never replaced by a
  sync. dbt lays the observations made after the latest sync over that sync's listing to build
  ``grants`` (provisioning never writes ``grants`` itself: dbt is the only writer of the marts).

Two more raw tables are no data, only what a build needs to know, and are not declared here:
``dbt_project`` (the project's hash, written before each build by ``transform.build``) and
``refresh_scope`` (the users a provisioning refresh replaces, in its scratch copy only; see
``transform/history.py`` and ``dbt_project/macros/refresh_scope.sql``).
"""

import duckdb

from langsmith_access.store.sql import table_exists

RAW_SCHEMA = "raw"
# dbt's staged copy of raw.provisioning_observations: the observations it has built.
BUILT_OBSERVATIONS = ("staging", "stg_langsmith__provisioning_observations")

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
        # How the member logs in and was provisioned: JSON text, a list of
        # {"provider", "provisioning_method"} (values kept as sent).
        ("login_methods", "VARCHAR"),
        # Names of the SCIM groups the member is in; null where the route does not say (only
        # the enriched members route lists them).
        ("scim_groups", "VARCHAR[]"),
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
        ("is_restricted", "BOOLEAN"),  # null where the listing does not say (older LangSmith)
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
        # 'verified': what the request's own write made (null in rows from before this column);
        # 'found': what a request found in LangSmith and did not cause (a change made by hand
        # since what grants shows), before its write or instead of one (already satisfied).
        ("observed", "VARCHAR"),
    ),
    # The rest of the access picture (DESIGN.md section 9). Read by the core sync: the org's
    # settings, its tier and its plan's flags (``config.<flag>``), one row per setting.
    "org_settings": (
        ("sync_id", "VARCHAR"),
        ("fetched_at", "TIMESTAMPTZ"),
        ("setting", "VARCHAR"),
        ("value", "VARCHAR"),  # as text: booleans 'true'/'false', lists JSON, null when unset
    ),
    # Read by the inventory job (``langsmith_access_inventory``), each replaced by its run.
    "access_policies": (
        ("sync_id", "VARCHAR"),
        ("fetched_at", "TIMESTAMPTZ"),
        ("policy_id", "VARCHAR"),
        ("name", "VARCHAR"),
        ("description", "VARCHAR"),
        ("effect", "VARCHAR"),  # 'allow' | 'deny', kept as sent
        ("role_ids", "VARCHAR[]"),
        ("condition_groups", "VARCHAR"),  # JSON text
        ("created_at", "TIMESTAMPTZ"),
        ("updated_at", "TIMESTAMPTZ"),
    ),
    # Service keys, workspace service keys, personal access tokens, SCIM tokens: never a
    # secret, only the short key the API shows.
    "credentials": (
        ("sync_id", "VARCHAR"),
        ("fetched_at", "TIMESTAMPTZ"),
        ("credential_id", "VARCHAR"),
        ("kind", "VARCHAR"),
        ("short_key", "VARCHAR"),
        ("description", "VARCHAR"),
        ("workspace_names", "VARCHAR[]"),  # null for an org-wide key
        ("listed_in_workspace_id", "VARCHAR"),  # the workspace whose listing had it
        ("default_workspace_name", "VARCHAR"),
        ("role_id", "VARCHAR"),
        ("org_role_id", "VARCHAR"),
        ("access_scope", "VARCHAR"),
        ("created_by", "VARCHAR"),
        ("read_only", "BOOLEAN"),
        ("created_at", "TIMESTAMPTZ"),
        ("last_used_at", "TIMESTAMPTZ"),
        ("expires_at", "TIMESTAMPTZ"),
        ("revoked_at", "TIMESTAMPTZ"),
    ),
    # Every tag value on a resource of a shared workspace (tags are per workspace): what access
    # policies' conditions are evaluated against.
    "resource_tags": (
        ("sync_id", "VARCHAR"),
        ("fetched_at", "TIMESTAMPTZ"),
        ("tagging_id", "VARCHAR"),
        ("workspace_id", "VARCHAR"),
        ("tag_key_id", "VARCHAR"),
        ("tag_key", "VARCHAR"),
        ("tag_value_id", "VARCHAR"),
        ("tag_value", "VARCHAR"),
        ("resource_type", "VARCHAR"),  # project, prompt, dataset, ...: an open set
        ("resource_id", "VARCHAR"),
        ("resource_name", "VARCHAR"),
    ),
    "service_accounts": (
        ("sync_id", "VARCHAR"),
        ("fetched_at", "TIMESTAMPTZ"),
        ("service_account_id", "VARCHAR"),
        ("name", "VARCHAR"),
        ("organization_id", "VARCHAR"),
        ("default_workspace_id", "VARCHAR"),
        ("created_at", "TIMESTAMPTZ"),
        ("updated_at", "TIMESTAMPTZ"),
    ),
    # SAML SSO configurations.
    "sso_settings": (
        ("sync_id", "VARCHAR"),
        ("fetched_at", "TIMESTAMPTZ"),
        ("sso_provider_id", "VARCHAR"),
        ("provider_id", "VARCHAR"),
        ("default_workspace_role_id", "VARCHAR"),
        ("default_workspace_ids", "VARCHAR[]"),
        ("metadata_url", "VARCHAR"),
        ("sso_groups_enabled", "BOOLEAN"),
        ("sso_groups_claim_field", "VARCHAR"),
        ("sso_groups_required", "BOOLEAN"),
        ("sso_groups_role_sync_enabled", "BOOLEAN"),
        ("attribute_mapping_keys", "VARCHAR[]"),
        ("has_metadata_xml", "BOOLEAN"),  # the metadata pasted as XML (never kept) instead of a URL
        ("attribute_mapping_load_error", "VARCHAR"),
    ),
    # The audit log, loaded incrementally: each inventory run appends the events of its time
    # window it did not have yet (by event id) and never replaces the others.
    "audit_events": (
        ("sync_id", "VARCHAR"),  # the inventory run that first loaded the event
        ("fetched_at", "TIMESTAMPTZ"),
        ("event_id", "VARCHAR"),
        ("at", "TIMESTAMPTZ"),
        ("operation", "VARCHAR"),  # kept as sent: the set grows
        ("succeeded", "BOOLEAN"),
        ("actor_user_id", "VARCHAR"),
        ("credential_id", "VARCHAR"),
        ("workspace_id", "VARCHAR"),
        ("target_ids", "VARCHAR[]"),
        ("source_ip", "VARCHAR"),
        ("http_method", "VARCHAR"),
        ("path", "VARCHAR"),
        ("status_code", "INTEGER"),
        ("detail", "VARCHAR"),  # the whole event as JSON text
    ),
    # Written by the inventory with the events: each audit-log window one of its runs read
    # whole. The next run starts from the latest window_end (less an overlap); a window that
    # failed is never recorded, since its run publishes nothing (see store/sections.py).
    "audit_windows": (
        ("sync_id", "VARCHAR"),
        ("window_start", "TIMESTAMPTZ"),  # both ends inclusive, as the audit-log route reads them
        ("window_end", "TIMESTAMPTZ"),
        ("events_read", "BIGINT"),  # events the window returned
        ("events_new", "BIGINT"),  # of those, events not loaded before (by event id)
        ("pages", "BIGINT"),
    ),
}


def create_table_sql(table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS raw.<table> (...)`` for one raw table."""
    columns = ", ".join(f'"{name}" {sql_type}' for name, sql_type in RAW_TABLES[table])
    return f'CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}."{table}" ({columns})'


def column_names(table: str) -> list[str]:
    return [name for name, _ in RAW_TABLES[table]]


def unbuilt_observations_query(conn: duckdb.DuckDBPyConnection) -> str:
    """A ``SELECT`` of the ``raw.provisioning_observations`` rows dbt has not built yet (a run
    may die between settling its requests and its refresh): all of them in a database built by
    a version without observations."""
    everything = f"SELECT * FROM {RAW_SCHEMA}.provisioning_observations AS observation"
    if not table_exists(conn, *BUILT_OBSERVATIONS):
        return everything
    return (f"{everything} WHERE NOT EXISTS (SELECT 1 FROM {'.'.join(BUILT_OBSERVATIONS)} AS built "
            "WHERE built.observation_id = observation.observation_id)")

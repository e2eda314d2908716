"""The analysts' tables as DESIGN.md sections 4 and 9 name them: schema ``main`` of the file
``LANGSMITH_ACCESS_DUCKDB`` names, each table with at least its columns and its rules, read from
the session's synced template (no sync of its own)."""

from langsmith_access_tests.helpers import query
from langsmith_access_tests.synced import new_org

# DESIGN.md section 4, "Columns (at least)", table by table.
DESIGN_COLUMNS = {
    "users": "user_id org_identity_id email full_name is_disabled org_role_id org_role_name created_at",
    "pending_invites": "invite_id email org_role_id created_at",
    "workspaces": "workspace_id display_name tenant_handle created_at",
    "roles": "role_id name display_name description access_scope is_custom",
    "role_permissions": "role_id permission",
    "entitlements": "entitlement_id entitlement_type role_id workspace_id display_name is_provisionable",
    "grants": "grant_id entitlement_id entitlement_type user_id email workspace_id role_id is_provisionable",
    "grant_history": "grant_id entitlement_type user_id workspace_id role_id valid_from valid_to",
    # "row counts, API calls, retries": the counts of what it read, and its calls and retries.
    "sync_runs": "sync_id started_at finished_at status users pending_invites workspaces roles grants "
                 "api_calls api_retries api_wait_seconds",
    "provisioning_requests": "request_id action user_id user_email workspace_id role_id status status_detail "
                             "reason requested_by requested_at updated_at run_id",
    "provisioning_events": "event_id request_id at kind detail",
}


def main_columns(database) -> dict[str, set[str]]:
    """Each table (or view) of schema main, with its columns."""
    columns: dict[str, set[str]] = {}
    for table, column in query(database.path, "SELECT table_name, column_name FROM information_schema.columns "
                                              "WHERE table_schema = 'main'"):
        columns.setdefault(table, set()).add(column)
    return columns


def test_every_table_of_the_design_is_in_schema_main_with_at_least_its_columns(template):
    columns = main_columns(template)
    missing = {table: sorted(set(wanted.split()) - columns.get(table, set()))
               for table, wanted in DESIGN_COLUMNS.items()}
    assert {table: names for table, names in missing.items() if names} == {}


# DESIGN.md sections 8 and 9: the columns the access picture adds to section 4's tables, and its
# own tables and reports (built by every sync, empty until an inventory reads their sections).
DESIGN_ACCESS_PICTURE_COLUMNS = {
    "users": "provisioning_method is_scim_managed",
    "grants": "is_scim_managed",
    "sync_runs": "job skipped_sections membership_route route_reason anonymity_restricted",
    "effective_access": "user_id email workspace_id role_id role_name source source_detail",
    "effective_permissions": "user_id workspace_id permission sources",
    "access_policies": "policy_id name description effect role_ids condition_groups created_at updated_at",
    "credentials": "credential_id kind short_key description workspace_names role_id org_role_id created_by "
                   "created_at last_used_at expires_at revoked_at",
    "service_accounts": "service_account_id name default_workspace_id created_at",
    "user_login_methods": "user_id provider provisioning_method",
    "user_scim_groups": "user_id scim_group",
    "org_settings": "setting value",
    "org_settings_history": "setting value valid_from valid_to",
    "audit_events": "event_id at operation succeeded actor_user_id credential_id workspace_id target_ids "
                    "source_ip detail",
    "user_activity": "user_id last_login_at last_audited_action_at",
    "report_unused_access": "",
    "report_credential_hygiene": "",
    "report_implicit_admins": "",
}


def test_every_table_of_the_access_picture_is_in_schema_main_with_at_least_its_columns(template):
    columns = main_columns(template)
    assert set(DESIGN_ACCESS_PICTURE_COLUMNS) - set(columns) == set()
    missing = {table: sorted(set(wanted.split()) - columns[table])
               for table, wanted in DESIGN_ACCESS_PICTURE_COLUMNS.items()}
    assert {table: names for table, names in missing.items() if names} == {}


def test_entitlements_and_grants_follow_the_designs_rules(template):
    org = new_org()
    database = template.path
    # Two kinds: an org role (no workspace, never provisionable) and a workspace role in a workspace.
    assert set(query(database, "SELECT entitlement_type, workspace_id IS NULL, is_provisionable "
                               "FROM main.entitlements")) == {("organization_role", True, False),
                                                              ("workspace_role", False, True)}
    assert set(query(database, "SELECT access_scope FROM main.roles")) == {("organization",), ("workspace",)}
    assert set(query(database, "SELECT role_id, is_custom FROM main.roles")) == {
        (role.id, role.is_custom) for role in org.roles.values()}
    # Every grant is one of the entitlements, for one of the users, under the user's email.
    assert query(database, """
        SELECT count(*) FROM main.grants AS g
        LEFT JOIN main.entitlements AS e
          ON e.entitlement_id = g.entitlement_id AND e.entitlement_type = g.entitlement_type
         AND e.role_id = g.role_id AND e.workspace_id IS NOT DISTINCT FROM g.workspace_id
         AND e.is_provisionable = g.is_provisionable
        LEFT JOIN main.users AS u ON u.user_id = g.user_id AND u.email IS NOT DISTINCT FROM g.email
        WHERE e.entitlement_id IS NULL OR u.user_id IS NULL""") == [(0,)]
    # Each active member's org role is a grant, never provisionable; pending invites hold none.
    assert set(query(database, "SELECT user_id, role_id, is_provisionable FROM main.grants "
                               "WHERE entitlement_type = 'organization_role'")) == {
        (m.ls_user_id, m.org_role_id, False) for m in org.active_members()}
    invited = [invite.email.lower() for invite in org.pending_org_invites()]
    assert invited and query(database, "SELECT count(*) FROM main.grants WHERE lower(email) IN "
                                       f"({', '.join('?' * len(invited))})", invited) == [(0,)]
    # A grant that holds now is an open interval of grant_history (valid_to null while current).
    assert set(query(database, "SELECT grant_id FROM main.grant_history WHERE valid_to IS NULL")) == set(
        query(database, "SELECT grant_id FROM main.grants"))

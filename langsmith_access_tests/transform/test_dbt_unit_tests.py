"""dbt's unit tests (``unit_tests:`` in models/*/_*_unit_tests.yml) run here, so `make test` runs
them; syncs and provisioning runs leave them out (``--exclude-resource-type unit_test``).

dbt reads the column types of a unit test's inputs from the database, so the models are first
built empty (``--empty``: every model with its columns and no rows) on a fresh file holding the
tables Python owns (the raw tables, the queue, sync_runs: ``ensure_schema``); then ``dbt test``
runs the unit tests alone.
"""

from __future__ import annotations

import json

import duckdb

from langsmith_access.store.schema import ensure_schema
from langsmith_access.transform import build_selection, run_dbt
from langsmith_access.transform.invocation import dbt_command
from langsmith_access.transform.project import write_profile

# Every unit test of the project: a new one is added here, so none is silently skipped.
UNIT_TESTS = {
    "users_take_the_provisioning_method_that_ranks_first",
    "users_name_the_org_role_as_the_role_listing_does_and_keep_members_of_an_unknown_one",
    "user_login_methods_list_a_method_listed_twice_once",
    "roles_count_each_permission_once_and_know_a_custom_role_by_its_name_alone",
    "role_permissions_lists_each_trimmed_permission_once_and_no_blank_one",
    "pending_invites_keep_every_invite_and_name_its_org_role_as_the_role_listing_does",
    "grants_lay_changes_verified_after_the_sync_over_its_listing",
    "grants_of_a_sync_after_the_observations_are_its_listing_alone",
    "grants_keep_observations_made_after_the_memberships_were_read",
    "grants_of_a_sync_that_listed_no_membership_keep_later_observations",
    "grants_are_scim_managed_only_where_a_group_names_that_role_there",
    "grants_keep_a_role_the_role_listing_lacks_for_the_checks_to_see",
    "grant_history_ends_provisioned_removals_when_they_were_verified",
    "grant_history_names_the_request_that_opened_each_interval",
    "grant_history_keeps_roles_provisioning_gave_and_took_within_one_run",
    "user_history_keeps_each_interval_open_until_a_sync_saw_the_member_change_or_leave",
    "user_history_joins_an_email_change_into_the_interval_it_happened_in",
    "workspace_history_keeps_each_interval_open_until_a_sync_saw_the_workspace_renamed_or_gone",
    "org_settings_history_keeps_each_value_open_until_a_sync_saw_another",
    "org_settings_are_the_latest_syncs_with_trimmed_names",
    "effective_access_keeps_a_disabled_members_paths_flagged",
    "effective_access_gives_no_implicit_admin_row_where_the_role_listing_has_no_workspace_admin",
    "effective_permissions_gives_each_permission_once_with_every_path_to_it",
    "user_scim_groups_reads_what_each_group_name_grants",
    "user_scim_groups_reads_names_whose_roles_and_workspaces_hold_the_separator",
    "user_scim_groups_match_each_role_in_its_own_scope_and_list_a_group_once",
    "user_activity_dates_each_members_last_login_and_last_audited_action",
    "report_grant_changes_lists_the_latest_sync_and_later_provisioning",
    "report_grant_changes_after_the_first_sync_lists_only_provisioning",
    "report_grant_changes_pairs_a_closing_and_an_opening_of_one_user_and_scope",
    "report_grant_changes_of_a_sync_that_staged_no_member_are_its_builds",
    "report_unexplained_changes_lists_what_no_applied_request_explains",
    "report_unexplained_changes_matches_requests_by_workspace_role_and_what_followed",
    "review_sheet_lists_the_deny_policies_of_each_grants_role",
    "report_privileged_access_lists_the_deny_policies_of_the_admin_role",
    "report_privileged_access_keeps_disabled_admins_flagged_with_who_and_where",
    "report_custom_role_holders_lists_the_deny_policies_of_each_custom_role",
    "report_custom_role_holders_names_each_holder_and_counts_each_roles_grants",
    "report_credential_hygiene_holds_each_kind_to_its_own_maximum",
    "report_unused_access_lists_workspace_grants_unused_for_the_whole_period",
    "report_unused_access_counts_the_period_up_to_where_the_loaded_log_ends",
    "report_workspaces_without_admin_counts_only_listed_workspace_admins",
    "report_disabled_members_with_grants_lists_each_workspace_grant_of_a_disabled_member",
    "report_members_without_workspace_lists_enabled_members_in_no_workspace",
    "report_stale_pending_invites_lists_invites_older_than_the_threshold",
    "report_credential_hygiene_flags_each_problem_alone",
    "report_credential_hygiene_flags_service_keys_whose_creator_is_no_longer_an_enabled_member",
    "report_credential_hygiene_counts_unused_by_the_unused_days_var",
    "report_credential_hygiene_counts_unused_up_to_when_the_inventory_listed_the_key",
    "report_credential_hygiene_leaves_out_a_key_that_expired_after_the_inventory_listed_it",
    "credentials_finds_the_one_person_created_by_names_whatever_its_format",
    "credentials_read_blank_text_as_none_and_a_revoked_key_as_revoked_even_when_expired",
    "credentials_name_the_workspaces_they_reach_by_id_where_each_name_is_one_workspaces",
    "sso_settings_reads_a_missing_metadata_flag_as_false_and_a_blank_load_error_as_none",
    "service_accounts_keep_every_account_of_the_latest_inventory_named_where_its_workspace_is",
    "sso_settings_read_missing_flags_and_lists_as_langsmiths_defaults_and_blank_ids_as_none",
    "audit_events_read_blank_ids_as_none_and_name_the_acting_member",
    "review_sheet_holds_each_grant_since_its_current_interval_began",
    "review_sheet_shows_who_holds_each_grant_and_whether_scim_manages_it",
    "report_implicit_admins_lists_org_admin_rights_no_workspace_listing_shows",
    "report_implicit_admins_carries_an_empty_list_where_the_admin_role_carries_no_deny",
    "access_policies_names_each_attached_role_in_role_ids_order",
    "access_policies_read_names_and_descriptions_trimmed_and_a_blank_one_as_none",
    "access_policy_resources_evaluate_each_operator_on_the_tags_of_each_resource",
    "report_access_policy_reach_counts_what_each_group_matches_and_whom_it_acts_on",
    "report_access_policy_reach_reads_a_groups_permission_and_type_trimmed_and_a_blank_one_as_none",
    "resource_tags_are_the_latest_inventorys_with_their_resource_type_in_lower_case",
    "stg_provisioning_observations_read_rows_from_before_the_observed_column_as_verified",
    "stg_workspaces_trim_ids_and_read_blanks_as_none_and_missing_flags_as_false",
    "stg_roles_trim_names_lower_the_scope_and_read_missing_permissions_as_none",
    "stg_workspace_memberships_collapse_an_assignment_read_twice_but_never_two_roles",
    "stg_pending_invites_trim_ids_and_read_blanks_as_none",
    "stg_org_members_leave_scim_groups_unknown_where_the_sync_skipped_them_for_the_route",
    "stg_org_members_trim_ids_read_blanks_as_none_and_keep_the_groups_the_sync_read",
    "stg_org_members_read_no_scim_groups_where_the_plan_has_no_scim",
    "grant_history_leaves_out_the_time_a_role_was_taken_and_given_back_within_one_run",
}


def test_dbt_unit_tests_pass(tmp_path):
    db_path = tmp_path / "unit.duckdb"
    with duckdb.connect(str(db_path)) as conn:
        ensure_schema(conn)
    dbt_dir = tmp_path / "unit.dbt"

    with run_dbt(["build", "--empty", *build_selection()], database_file=db_path, dbt_dir=dbt_dir) as built:
        built.wait()
    assert built.success, built.failure_message()

    with run_dbt(["test", "--resource-type", "unit_test"], database_file=db_path, dbt_dir=dbt_dir) as tested:
        tested.wait()
    statuses = {result.name: result.status for result in tested.results}
    assert statuses == {name: "pass" for name in UNIT_TESTS}, tested.failure_message()
    assert tested.success


def test_builds_exclude_the_unit_tests(tmp_path):
    """The refresh after provisioning selects grants and everything downstream, where the unit
    tests of grants, grant_history and report_grant_changes live: its flags leave them out."""
    from langsmith_access.transform.history import REFRESH_SELECT

    dbt_dir = tmp_path / "ls.dbt"
    write_profile(dbt_dir, tmp_path / "x.duckdb")

    def listed(*selection: str) -> set[str]:
        from dbt.cli.main import dbtRunner

        done = dbtRunner().invoke(dbt_command(
            ["ls", *selection, "--output", "json", "--output-keys", "resource_type"], dbt_dir
        ))
        assert done.success, done.exception
        return {json.loads(line)["resource_type"] for line in done.result}

    assert "unit_test" in listed("--select", *REFRESH_SELECT)  # what the flag must drop
    refreshed = listed(*build_selection(REFRESH_SELECT))
    assert "unit_test" not in refreshed and {"model", "snapshot", "test"} <= refreshed

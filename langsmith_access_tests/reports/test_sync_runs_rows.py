"""What ``main.sync_runs`` says of each sync, and the numbers a published picture carries into
the Dagster UI: counted from the org the sandbox served, never from the pipeline's own queries."""

from __future__ import annotations

import json

import duckdb

from langsmith_access.store.sync_runs import picture_metrics
from langsmith_access_tests.reports.support import rows


def test_each_sync_runs_row_counts_what_its_sync_published(history):
    published = [(history.after_first, history.grants_first), (history.after_second, history.grants_second),
                 (history.database, history.grants_second)]
    for (database, grants), run_id in zip(published, history.run_ids, strict=True):
        [run] = rows(database, "SELECT * FROM main.sync_runs WHERE sync_id = ?", [run_id])
        members = sum(kind == "organization_role" for kind, _, _ in grants)
        assert (run["users"], run["grants"], run["workspace_grants"]) == (
            members, len(grants), len(grants) - members), run_id
        for table in ("pending_invites", "workspaces", "roles", "entitlements"):
            [counted] = rows(database, f"SELECT count(*) AS n FROM main.{table}")
            assert run[table] == counted["n"] > 0, (run_id, table)
        assert run["membership_route"] == "enriched_members"
        took = (run["finished_at"] - run["started_at"]).total_seconds()
        assert run["duration_seconds"] == round(took, 3) > 0


def test_the_published_pictures_numbers_count_what_its_tables_hold():
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE main.roles AS SELECT * FROM (VALUES ('r-org-admin', 'ORGANIZATION_ADMIN'), "
                     "('r-org-user', 'ORGANIZATION_USER'), ('r-ws-admin', 'WORKSPACE_ADMIN'), "
                     "('r-ws-viewer', 'WORKSPACE_VIEWER')) AS t(role_id, name)")
        conn.execute("CREATE TABLE main.users AS SELECT * FROM (VALUES ('ann', 'r-org-admin'), "
                     "('bob', 'r-org-user'), ('cy', 'r-org-user')) AS t(user_id, org_role_id)")
        # bob is a listed Admin of two workspaces (one person), cy a Viewer; the org roles are
        # grants too, and ann's Organization Admin role is no workspace Admin's.
        conn.execute("CREATE TABLE main.grants AS SELECT * FROM (VALUES "
                     "('organization_role', 'ann', 'r-org-admin'), ('organization_role', 'bob', 'r-org-user'), "
                     "('organization_role', 'cy', 'r-org-user'), ('workspace_role', 'bob', 'r-ws-admin'), "
                     "('workspace_role', 'bob', 'r-ws-admin'), ('workspace_role', 'cy', 'r-ws-viewer')) "
                     "AS t(entitlement_type, user_id, role_id)")
        conn.execute("CREATE TABLE main.report_implicit_admins AS SELECT * FROM (VALUES ('ann', 'ws-1'), "
                     "('ann', 'ws-2')) AS t(user_id, workspace_id)")
        conn.execute("CREATE TABLE main.report_credential_hygiene AS SELECT * FROM (VALUES "
                     "(true, false, false, false), (false, true, false, false), (false, false, true, true), "
                     "(false, false, false, true), (false, false, false, false)) "
                     "AS t(no_expiry, never_used, unused, creator_inactive)")
        # One attached policy's group matches nothing; a draft's (attached to no role) does not count.
        conn.execute("CREATE TABLE main.report_access_policy_reach AS SELECT * FROM (VALUES "
                     "(true, true), (true, false), (false, true)) AS t(matches_nothing, is_attached)")
        recorded = {"skipped_sections": json.dumps({"scim_groups": "not on this plan", "audit_events": "key"})}
        assert picture_metrics(conn, recorded) == {
            "members": 3, "organization_admins": 1, "workspace_admins": 1, "grants": 6, "implicit_admins": 2,
            "credentials_without_expiry": 1, "unused_credentials": 2, "keys_of_inactive_creators": 2,
            "policy_groups_matching_nothing": 1, "skipped_sections": 2}
        assert picture_metrics(conn, {"skipped_sections": None})["skipped_sections"] == 0

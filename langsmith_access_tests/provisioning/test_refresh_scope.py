"""A provisioning refresh replaces only the changed users' rows of the access picture's largest
tables (models with ``refresh_key``, macros/refresh_scope.sql), and that gives exactly the
tables a whole rebuild gives; a table another version of the project wrote, or one without this
project's mark, is written whole."""

import json
import shutil

import dagster as dg
import duckdb

from langsmith_access import runner
from langsmith_access.api import provision, request_grant, request_revoke
from langsmith_access.definitions import defs
from langsmith_access.defs.orgs import org_tags
from langsmith_access.defs.resources import org_resources
from langsmith_access.settings import Orgs, load_orgs
from langsmith_access.store.sql import table_exists
from langsmith_access.transform import prepare_manifest
from langsmith_access.transform.history import (
    REFRESH_SCOPE_BLOCKED,
    REFRESH_SELECT,
    guarded_nodes,
    models_left_behind,
    record_build,
    scoped_models,
)
from langsmith_access.transform.invocation import build
from langsmith_access_tests.helpers import query

SCOPED = ("grants", "effective_access", "report_implicit_admins", "review_sheet")
# Every table the refresh rebuilds, scoped or whole, compared with a whole rebuild (and the view
# effective_permissions, which reads effective_access).
COMPARED = (*SCOPED, "effective_permissions", "grant_history", "report_privileged_access", "report_workspaces_without_admin",
            "report_members_without_workspace", "report_custom_role_holders", "report_unused_access",
            "report_grant_changes", "report_unexplained_changes", "report_disabled_members_with_grants")
# The scoped models and what a refresh rebuilds for every user under them (transform/history.py).
GUARDED = sorted((*SCOPED, "grants_snapshot", "grant_history"))
# A value no query gives, set on one row of a user no request touches (a column no check reads),
# or a row of that user's no query gives: only a refresh that left the other users' rows as they
# were keeps it.
MARKED = {table: ("email", "kept-by-the-refresh@example.org") for table in SCOPED}
# This org's admins are listed in every workspace (no implicit-only row to mark): one is added.
MARKED["report_implicit_admins"] = ("implicit_admin_id", "kept-by-the-refresh")


def mark(database, tables, untouched_user) -> None:
    with duckdb.connect(str(database.working_path)) as conn:
        for table in tables:
            column, value = MARKED[table]
            if column != "email":  # a row of its own, removed again by unmark
                conn.execute(f"INSERT INTO main.{table} BY NAME SELECT ? AS {column}, ? AS user_id, "
                             "workspace_id FROM main.effective_access LIMIT 1", [value, untouched_user])
                continue
            conn.execute(f"UPDATE main.{table} SET {column} = ? WHERE rowid = "
                         f"(SELECT min(rowid) FROM main.{table} WHERE user_id = ?)", [value, untouched_user])


def marked_in(path, table) -> int:
    column, value = MARKED[table]
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(f"SELECT count(*) FROM main.{table} WHERE {column} = ?", [value]).fetchone()[0]


def unmark(database, untouched_user) -> None:
    # Put back what the query gives: the user's email where it was changed; the added rows gone.
    # The marked email reaches the tables the refresh rebuilds whole from a marked one (the
    # reports reading grants' email): put back there too.
    with duckdb.connect(str(database.working_path)) as conn:
        email = conn.execute("SELECT email FROM main.users WHERE user_id = ?", [untouched_user]).fetchone()[0]
        with_email = [table for (table,) in conn.execute(
            "SELECT table_name FROM duckdb_columns() WHERE schema_name = 'main' AND column_name = 'email' "
            "AND table_name IN (SELECT table_name FROM duckdb_tables())").fetchall()]
        for table in with_email:
            conn.execute(f"UPDATE main.{table} SET email = ? WHERE email = ?", [email, MARKED["grants"][1]])
        for table in SCOPED:
            column, value = MARKED[table]
            if column != "email":
                conn.execute(f"DELETE FROM main.{table} WHERE {column} = ?", [value])


def differences(left, right, table) -> int:
    with duckdb.connect() as conn:
        conn.execute(f"ATTACH '{left}' AS l (READ_ONLY)")
        conn.execute(f"ATTACH '{right}' AS r (READ_ONLY)")
        return conn.execute(
            f"SELECT (SELECT count(*) FROM (SELECT * FROM l.main.{table} EXCEPT ALL SELECT * FROM r.main.{table})) "
            f"+ (SELECT count(*) FROM (SELECT * FROM r.main.{table} EXCEPT ALL SELECT * FROM l.main.{table}))"
        ).fetchone()[0]


def differences_from_a_whole_rebuild(database, tmp_path) -> dict[str, int]:
    """Rows that differ, per table of COMPARED, between the working file and a copy of it with
    the refresh's models written whole (the copy holds no raw.refresh_scope)."""
    whole = tmp_path / "whole.duckdb"
    shutil.copyfile(database.working_path, whole)
    with build(whole, tmp_path / "whole.dbt", select=REFRESH_SELECT) as rebuilt:
        rebuilt.raise_on_failure()
    return {table: differences(database.working_path, whole, table) for table in COMPARED}


def test_a_refresh_replaces_the_changed_users_rows_and_equals_a_whole_rebuild(env, tmp_path):
    sandbox, org, database = env
    admin_role = org.role_by_name("ORGANIZATION_ADMIN").id
    workspace = org.shared_workspaces()[0]
    outsiders = [m for m in org.active_members() if m.ls_user_id not in workspace.memberships and not m.is_disabled]
    members = [m for m in org.active_members() if m.ls_user_id in workspace.memberships and not m.is_disabled
               and m.org_role_id != admin_role]
    admin = next(m for m in org.active_members() if m.org_role_id == admin_role and not m.is_disabled
                 and m.ls_user_id in workspace.memberships)
    changer, leaver = members[0], members[1]

    def another_role(member) -> str:
        return next(r.display_name for r in org.roles_by_scope("workspace")
                    if r.id != workspace.memberships[member.ls_user_id].role_id)

    other_role, admin_role_name = another_role(changer), another_role(admin)
    queued = [
        request_grant(outsiders[0].ls_user_id, workspace.id, "Viewer"),  # a new membership
        request_grant(changer.ls_user_id, workspace.id, other_role),  # a role change
        request_revoke(leaver.ls_user_id, workspace.id,
                       org.role(workspace.memberships[leaver.ls_user_id].role_id).display_name),
        # An Organization Admin's listed role: the implicit Admin and the listed role overlap.
        request_grant(admin.ls_user_id, workspace.id, admin_role_name),
    ]
    assert all(r.accepted for r in queued), [r.message for r in queued]
    untouched = next(m for m in org.active_members() if m.org_role_id == admin_role and m is not admin).ls_user_id
    mark(database, SCOPED, untouched)

    outcome = provision()
    assert outcome.success, outcome.failure
    # Each scoped table kept the other users' rows as they were (the marked one included)...
    assert {table: marked_in(database.working_path, table) for table in SCOPED} == dict.fromkeys(SCOPED, 1)
    # ...and the refresh's list of users never reaches the committed or the analysts' file.
    for path in (database.working_path, database.path):
        with duckdb.connect(str(path), read_only=True) as conn:
            assert conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'refresh_scope'"
                                ).fetchone()[0] == 0

    # With the marked rows as the query gives them, every table is what a whole rebuild of the
    # same file gives.
    unmark(database, untouched)
    assert differences_from_a_whole_rebuild(database, tmp_path) == dict.fromkeys(COMPARED, 0)
    # The changes are there: the new member, the new role, the revoke, the admin's listed role.
    with duckdb.connect(str(database.working_path), read_only=True) as conn:
        listed = dict(conn.execute(
            "SELECT user_id, role_name FROM main.effective_access WHERE workspace_id = ? AND source = 'direct'",
            [workspace.id]).fetchall())
    assert listed[outsiders[0].ls_user_id] == "Viewer" and listed[changer.ls_user_id] == other_role
    assert leaver.ls_user_id not in listed and listed[admin.ls_user_id] == admin_role_name


def grant_one_and_pick_an_untouched_member(org) -> str:
    """Queue Viewer in a workspace for someone outside it; return a member of that workspace
    whom no request touches (``ls_user_id``)."""
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships and not m.is_disabled)
    assert request_grant(outsider.ls_user_id, workspace.id, "Viewer").accepted
    return next(m for m in org.active_members() if m.ls_user_id in workspace.memberships).ls_user_id


def test_a_table_another_project_wrote_is_rebuilt_whole(env):
    # Another version of the project (any model or macro, upstream ones included), or a writer
    # that leaves no mark (an older version, dbt's own materialization), wrote the table: its rows
    # for users outside the refresh may differ from what this project gives. It is written whole.
    sandbox, org, database = env
    untouched = grant_one_and_pick_an_untouched_member(org)
    mark(database, ("effective_access", "report_implicit_admins", "review_sheet"), untouched)
    with duckdb.connect(str(database.working_path)) as conn:
        marks = dict(conn.execute("SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'main' "
                                  "AND table_name IN ('effective_access', 'report_implicit_admins')").fetchall())
        assert marks["effective_access"] == marks["report_implicit_admins"]
        assert marks["effective_access"].startswith("langsmith-access: written whole by project ")
        conn.execute("COMMENT ON TABLE main.report_implicit_admins IS "
                     "'langsmith-access: written whole by project 0123456789abcdef'")
        conn.execute("COMMENT ON TABLE main.review_sheet IS NULL")

    assert provision().success
    assert marked_in(database.working_path, "report_implicit_admins") == 0  # another project's: whole
    assert marked_in(database.working_path, "review_sheet") == 0  # no mark: whole
    assert marked_in(database.working_path, "effective_access") == 1  # this project's: its users' rows
    with duckdb.connect(str(database.working_path), read_only=True) as conn:
        after = dict(conn.execute("SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'main' "
                                  f"AND table_name IN {SCOPED}").fetchall())
    assert set(after.values()) == {marks["effective_access"]}  # each whole write marked its table


def test_a_changed_project_writes_every_scoped_table_whole(env):
    # An upgrade that changes only an upstream model (grants.sql, say) is a new project hash:
    # every scoped table below it is written whole, not just the model whose SQL changed.
    sandbox, org, database = env
    untouched = grant_one_and_pick_an_untouched_member(org)
    mark(database, SCOPED, untouched)
    with duckdb.connect(str(database.working_path)) as conn:
        for table in SCOPED:  # as the version before the upgrade left them
            conn.execute(f"COMMENT ON TABLE main.{table} IS 'langsmith-access: written whole by project 0123456789abcdef'")

    assert provision().success
    assert {table: marked_in(database.working_path, table) for table in SCOPED} == dict.fromkeys(SCOPED, 0)


def test_a_database_with_effective_permissions_as_a_table_gets_the_view_with_the_same_rows(env):
    # Versions before 201bd37 wrote effective_permissions as a table: the next refresh (or sync)
    # replaces it with the view, which gives the rows the table would hold after the change.
    sandbox, org, database = env
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships and not m.is_disabled)
    with duckdb.connect(str(database.working_path)) as conn:
        conn.execute("CREATE TABLE main.permissions_then AS SELECT * FROM main.effective_permissions")
        conn.execute("DROP VIEW main.effective_permissions")
        conn.execute("ALTER TABLE main.permissions_then RENAME TO effective_permissions")
    assert request_grant(outsider.ls_user_id, workspace.id, "Viewer").accepted

    assert provision().success
    for path in (database.working_path, database.path):
        with duckdb.connect(str(path), read_only=True) as conn:
            assert conn.execute("SELECT table_type FROM information_schema.tables "
                                "WHERE table_name = 'effective_permissions'").fetchall() == [("VIEW",)]
            granted = conn.execute("SELECT count(*) FROM main.effective_permissions WHERE user_id = ? "
                                   "AND workspace_id = ?", [outsider.ls_user_id, workspace.id]).fetchone()[0]
            assert granted > 0
            assert conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'effective_permissions%'"
                                ).fetchone()[0] == 0  # no table, nor a backup of it, is left


def run_part_of_the_sync(*keys: str) -> None:
    """The sync job for some of its assets only, as the Dagster UI's "Materialize selected" runs it."""
    the_org = load_orgs().get()
    job = defs().resolve_job_def(runner.SYNC_JOB).get_subset(
        asset_selection={dg.AssetKey(key.split("/")) for key in keys})
    result = job.execute_in_process(
        run_config=runner.sync_run_config(), instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False, partition_key=the_org.slug, tags=org_tags(the_org.slug),
        resources=org_resources(Orgs((the_org,))))
    assert result.success


def promote_a_member_and_rebuild_users_alone(org):
    """Make a member Organization Admin in LangSmith, then materialize the members' assets and
    `users` alone, as the UI can: `users` says Admin, effective_access (not rebuilt) does not."""
    promoted = next(m for m in org.active_members()
                    if m.org_role_id == org.role_by_name("ORGANIZATION_USER").id and not m.is_disabled)
    org.set_org_role(promoted.ls_user_id, org.role_by_name("ORGANIZATION_ADMIN").id)
    run_part_of_the_sync("raw/org_members", "raw/pending_invites", "raw/workspace_memberships",
                         "staging/stg_langsmith__org_members", "main/users", "analysts_database")
    return promoted


def blocked_models(path) -> list[str] | None:
    with duckdb.connect(str(path), read_only=True) as conn:
        if not table_exists(conn, *REFRESH_SCOPE_BLOCKED.split(".")):
            return None
        return [name for (name,) in conn.execute(f"SELECT model FROM {REFRESH_SCOPE_BLOCKED} ORDER BY 1").fetchall()]


def test_a_partial_sync_that_left_the_scoped_tables_behind_makes_the_next_refresh_whole(env, tmp_path):
    # An operator materializes the members' assets and `users` alone from the UI: `users` now says
    # a member became an Organization Admin, while effective_access (not rebuilt) lacks their
    # implicit Admin rows. Replacing only the next request's users' rows would keep that gap;
    # the next refresh is written whole instead, and the one after it is scoped again.
    sandbox, org, database = env
    promoted = promote_a_member_and_rebuild_users_alone(org)
    assert blocked_models(database.working_path) == GUARDED  # users feeds every one of them

    def implicit_admin_rows() -> int:
        return query(database.working_path, "SELECT count(*) FROM main.effective_access WHERE user_id = ? "
                     "AND source = 'organization_admin'", [promoted.ls_user_id])[0][0]

    assert implicit_admin_rows() == 0
    untouched = grant_one_and_pick_an_untouched_member(org)
    mark(database, SCOPED, untouched)
    assert provision().success
    assert {table: marked_in(database.working_path, table) for table in SCOPED} == dict.fromkeys(SCOPED, 0)
    assert implicit_admin_rows() == len(org.shared_workspaces())
    assert blocked_models(database.working_path) is None and blocked_models(database.path) is None
    unmark(database, untouched)
    assert differences_from_a_whole_rebuild(database, tmp_path) == dict.fromkeys(COMPARED, 0)

    # The block is lifted: the next refresh replaces only its users' rows again.
    mark(database, SCOPED, untouched)
    workspace = org.shared_workspaces()[1]
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships
                    and not m.is_disabled and m.ls_user_id != untouched)
    assert request_grant(outsider.ls_user_id, workspace.id, "Viewer").accepted
    assert provision().success
    assert {table: marked_in(database.working_path, table) for table in SCOPED} == dict.fromkeys(SCOPED, 1)


def test_which_builds_leave_scoped_models_behind():
    manifest = json.loads(prepare_manifest().read_text())
    ids = {node["name"]: uid for uid, node in manifest["nodes"].items()}
    scoped = {ids[name] for name in SCOPED}
    assert scoped_models(manifest) == scoped
    # What a refresh rebuilds for every user under a scoped model: review_sheet reads grant_history.
    guarded = scoped | {ids["grants_snapshot"], ids["grant_history"]}
    assert guarded_nodes(manifest) == guarded
    assert models_left_behind(manifest, [ids["users"]]) == guarded
    assert models_left_behind(manifest, [ids["access_policies"]]) == {ids["report_implicit_admins"], ids["review_sheet"]}
    assert models_left_behind(manifest, [ids["grants"], ids["effective_access"]]) == {
        ids["report_implicit_admins"], ids["review_sheet"], ids["grants_snapshot"], ids["grant_history"]}
    assert models_left_behind(manifest, [ids["grants_snapshot"]]) == {ids["review_sheet"], ids["grant_history"]}
    # Every scoped model rebuilt, but not the snapshot: the next refresh's snapshot catches up
    # for every user, under review_sheet's rows of users outside its scope.
    assert models_left_behind(manifest, [ids["users"], *scoped]) == {ids["grants_snapshot"], ids["grant_history"]}
    assert models_left_behind(manifest, [ids["users"], *guarded]) == set()
    # workspaces feeds grants too, through user_scim_groups (SCIM group names name workspaces).
    assert models_left_behind(manifest, [ids["workspaces"], ids["report_workspaces_without_admin"]]) == guarded
    assert models_left_behind(manifest, [ids["report_privileged_access"]]) == set()
    # A refresh written whole lifts the block: REFRESH_SELECT ("grants+") holds every scoped model.
    downstream, frontier = {ids["grants"]}, [ids["grants"]]
    while frontier:
        children = [c for c in manifest["child_map"][frontier.pop()] if c not in downstream]
        downstream.update(children)
        frontier.extend(children)
    assert "grants+" in REFRESH_SELECT and guarded <= downstream


def test_a_build_blocks_scoped_refreshes_until_one_rebuilds_every_scoped_model(tmp_path):
    manifest = json.loads(prepare_manifest().read_text())
    ids = {node["name"]: uid for uid, node in manifest["nodes"].items()}
    database_file = tmp_path / "scratch.duckdb"
    with duckdb.connect(str(database_file)) as conn:
        conn.execute("CREATE SCHEMA raw")

    record_build(database_file, manifest, [ids["access_policies"]])  # an inventory model alone
    assert blocked_models(database_file) == ["report_implicit_admins", "review_sheet"]
    record_build(database_file, manifest, [ids["users"]])  # adds to what is blocked
    assert blocked_models(database_file) == GUARDED
    record_build(database_file, manifest, [ids["report_privileged_access"]])  # feeds none: stays
    assert blocked_models(database_file) == GUARDED
    record_build(database_file, manifest, [ids["grants"], ids["effective_access"]])  # some, the rest left behind
    assert blocked_models(database_file) == GUARDED
    record_build(database_file, manifest, [ids["users"], *(ids[name] for name in SCOPED)])  # not the snapshot
    assert blocked_models(database_file) == GUARDED
    record_build(database_file, manifest, [ids["users"], *(ids[name] for name in GUARDED)])  # a whole sync's
    assert blocked_models(database_file) is None


def test_a_partial_sync_that_left_the_history_behind_makes_the_next_refresh_whole(env, tmp_path):
    # Every scoped model rebuilt from the UI after a role change made in LangSmith, but not the
    # grants snapshot: the next refresh's snapshot records that change, for a user outside its
    # scope, in grant_history, which review_sheet reads. That refresh is written whole.
    sandbox, org, database = env
    # Not an Admin role, before or after: the reports of privileged access (not rebuilt by this
    # subset) would fail their checks against the new grants, and the subset publish nothing.
    user_role = org.role_by_name("ORGANIZATION_USER").id
    plain = {r.id for r in org.roles_by_scope("workspace") if r.display_name in ("Viewer", "Editor")}
    changed, workspace = next((m, w) for w in org.shared_workspaces() for m in org.active_members()
                              if not m.is_disabled and m.org_role_id == user_role and m.ls_user_id in w.memberships
                              and w.memberships[m.ls_user_id].role_id in plain)
    old = workspace.memberships[changed.ls_user_id].role_id
    org.set_workspace_role(workspace.id, changed.ls_user_id, next(iter(plain - {old})))
    run_part_of_the_sync("raw/org_members", "raw/pending_invites", "raw/workspace_memberships",
                         "staging/stg_langsmith__workspace_memberships", "main/grants", "main/effective_access",
                         "main/report_implicit_admins", "main/review_sheet", "analysts_database")
    assert blocked_models(database.working_path) == ["grant_history", "grants_snapshot"]

    grant_one_and_pick_an_untouched_member(org)
    assert provision().success
    assert blocked_models(database.working_path) is None
    assert differences_from_a_whole_rebuild(database, tmp_path) == dict.fromkeys(COMPARED, 0)


def test_a_blocked_refresh_is_rebuilt_by_the_next_provisioning_run_even_with_nothing_to_apply(env):
    # A partial build left the refreshed tables behind what they read, and the queue is empty:
    # nothing is "unbuilt" by the staging table's count (as after a build that staged observations
    # without building them into grants), yet the block makes the next provisioning run rebuild.
    sandbox, org, database = env
    promoted = promote_a_member_and_rebuild_users_alone(org)
    assert blocked_models(database.working_path) == GUARDED
    assert provision().success  # an empty queue
    assert blocked_models(database.working_path) is None
    assert query(database.path, "SELECT count(*) FROM main.effective_access WHERE user_id = ? "
                 "AND source = 'organization_admin'", [promoted.ls_user_id]) == [(len(org.shared_workspaces()),)]

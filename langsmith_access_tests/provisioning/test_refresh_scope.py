"""A provisioning refresh replaces only the changed users' rows of the access picture's largest
tables (models with ``refresh_key``, macros/refresh_scope.sql), and that gives exactly the
tables a whole rebuild gives; a table another version of the project wrote, or one without this
project's mark, is written whole."""

import shutil
from pathlib import Path

import dagster as dg
import duckdb

from langsmith_access import runner
from langsmith_access.api import provision, request_grant, request_revoke
from langsmith_access.definitions import defs
from langsmith_access.defs.orgs import org_tags
from langsmith_access.defs.resources import org_resources
from langsmith_access.settings import Orgs, load_orgs
from langsmith_access.transform.history import REFRESH_SELECT
from langsmith_access.transform.invocation import build
from langsmith_access_tests.helpers import duckdb_openings, query

SCOPED = ("grants", "effective_access", "report_implicit_admins", "review_sheet")
# Every table the refresh rebuilds, scoped or whole, compared with a whole rebuild (and the view
# effective_permissions, which reads effective_access).
COMPARED = (*SCOPED, "effective_permissions", "grant_history", "report_privileged_access", "report_workspaces_without_admin",
            "report_members_without_workspace", "report_custom_role_holders", "report_unused_access",
            "report_grant_changes", "report_unexplained_changes", "report_disabled_members_with_grants")
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


def run_part_of_the_sync(selection: dg.AssetSelection) -> dg.ExecuteInProcessResult:
    """The sync job for some of its assets only, as the Dagster UI's "Materialize selected" runs it."""
    the_org = load_orgs().get()
    definitions = defs()
    keys = selection.resolve(definitions.resolve_asset_graph())
    job = definitions.resolve_job_def(runner.SYNC_JOB).get_subset(asset_selection=keys)
    config = runner.sync_run_config()  # the config of the ops the subset runs, as the UI fills it
    config["ops"] = {op: value for op, value in config["ops"].items() if job.graph.has_node_named(op)}
    return job.execute_in_process(
        run_config=config, instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False, partition_key=the_org.slug, tags=org_tags(the_org.slug),
        resources=org_resources(Orgs((the_org,))))


def implicit_admin_rows(path, user_id) -> int:
    return query(path, "SELECT count(*) FROM main.effective_access WHERE user_id = ? "
                 "AND source = 'organization_admin'", [user_id])[0][0]


def test_a_partial_sync_that_would_leave_the_scoped_tables_behind_publishes_nothing(env, tmp_path):
    # An operator materializes the members' assets and `users` alone from the UI after a member
    # became an Organization Admin in LangSmith: `users` would say Admin while effective_access
    # (not rebuilt) lacks their implicit Admin rows, and a refresh replacing only its own users'
    # rows would keep that gap. The publish refuses; the same selection with everything
    # downstream of it publishes, and the next refresh, scoped, equals a whole rebuild.
    sandbox, org, database = env
    user, admin = (org.role_by_name(name).id for name in ("ORGANIZATION_USER", "ORGANIZATION_ADMIN"))
    promoted = next(m for m in org.active_members() if m.org_role_id == user and not m.is_disabled)
    org.set_org_role(promoted.ls_user_id, admin)
    role_of_promoted = "SELECT org_role_id FROM main.users WHERE user_id = ?"
    before = {path: query(path, role_of_promoted, [promoted.ls_user_id]) for path in (database.working_path, database.path)}

    partial = run_part_of_the_sync(dg.AssetSelection.assets(
        dg.AssetKey(["raw", "org_members"])).required_multi_asset_neighbors() | dg.AssetSelection.assets(
        dg.AssetKey(["staging", "stg_langsmith__org_members"]), dg.AssetKey(["main", "users"]),
        dg.AssetKey("analysts_database")))
    assert not partial.success
    failure = next(e for e in partial.all_events if e.is_step_failure).step_failure_data.user_failure_data
    assert failure.description.startswith("Nothing published: this run rebuilt main/users, raw/org_members, ")
    assert {"main/effective_access", "main/grants", "snapshots/grants_snapshot", "main/grant_history",
            "main/report_implicit_admins", "main/review_sheet"} <= set(failure.metadata["left_behind"].data)
    fix = failure.metadata["fix"].text
    assert fix == '(key:"raw/org_members" or key:"raw/pending_invites" or key:"raw/workspace_memberships")+'
    assert f"`{fix}`" in failure.description
    for path, rows in before.items():  # nothing committed, nothing published
        assert query(path, role_of_promoted, [promoted.ls_user_id]) == rows == [(user,)]
    # The failed run's own row says why, as for any failed sync.
    [(status, why)] = query(database.working_path, "SELECT status, failure FROM main.sync_runs WHERE sync_id = ?",
                            [partial.run_id])
    assert status == "failed" and failure.description in why

    # The selection the failure suggests, as the UI would parse it: everything downstream.
    assert run_part_of_the_sync(dg.AssetSelection.from_string(fix)).success
    for path in (database.working_path, database.path):
        assert query(path, role_of_promoted, [promoted.ls_user_id]) == [(admin,)]
        assert implicit_admin_rows(path, promoted.ls_user_id) == len(org.shared_workspaces())
    untouched = grant_one_and_pick_an_untouched_member(org)
    mark(database, SCOPED, untouched)
    assert provision().success
    assert {table: marked_in(database.working_path, table) for table in SCOPED} == dict.fromkeys(SCOPED, 1)
    unmark(database, untouched)
    assert differences_from_a_whole_rebuild(database, tmp_path) == dict.fromkeys(COMPARED, 0)


def test_a_partial_sync_that_reads_the_roles_again_keeps_what_provisioning_verified(env):
    # Provisioning granted a role after the latest sync; then the roles are read again with
    # everything downstream of them, but not the memberships (a selection the publish accepts):
    # only a later read of the memberships supersedes what provisioning verified, so the grant
    # stays, its history interval stays open, and nothing counts as an unexplained change.
    sandbox, org, database = env
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships and not m.is_disabled)
    assert request_grant(outsider.ls_user_id, workspace.id, "Viewer").accepted
    assert provision().success
    membership = [outsider.ls_user_id, workspace.id]
    held = "SELECT role_name, verified_by_request_id IS NOT NULL FROM main.grants WHERE user_id = ? AND workspace_id = ?"
    intervals = "SELECT count(*), count(*) FILTER (WHERE valid_to IS NULL) FROM main.grant_history " \
                "WHERE user_id = ? AND workspace_id = ?"
    changes = "SELECT change_type, new_role_name FROM main.report_grant_changes WHERE user_id = ? AND workspace_id = ?"
    assert query(database.path, held, membership) == [("Viewer", True)]
    assert query(database.path, changes, membership) == [("added", "Viewer")]

    assert run_part_of_the_sync(dg.AssetSelection.from_string('key:"raw/roles"+')).success
    for path in (database.working_path, database.path):
        assert query(path, held, membership) == [("Viewer", True)]
        assert query(path, intervals, membership) == [(1, 1)]
        # Still a change since the latest read of the memberships, listed until the next one.
        assert query(path, changes, membership) == [("added", "Viewer")]
        assert query(path, "SELECT count(*) FROM main.report_unexplained_changes WHERE user_id = ?",
                     [outsider.ls_user_id]) == [(0,)]


def test_a_provisioning_run_opens_the_working_file_once_per_op_and_counts_its_changes_on_the_applying_one(env):
    # Each opening of a synced file reads its catalog (~20 ms of CPU at 2,000 members): the
    # refresh counts the changes to build on apply_requests' connection, not on one of its own.
    sandbox, org, database = env
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships and not m.is_disabled)
    assert request_grant(outsider.ls_user_id, workspace.id, "Viewer").accepted
    with duckdb_openings() as opened:
        outcome = provision()

    assert outcome.success, outcome.failure
    assert [o["status"] for o in outcome.outputs["apply_requests"]["outcomes"]] == ["applied"]
    # the lease's ensure_working, select_requests, apply_requests
    working = database.working_path.resolve()
    assert sum(Path(path).resolve() == working for path in opened) == 3, opened
    with duckdb.connect(str(database.path), read_only=True) as conn:  # the change was rebuilt and published
        assert conn.execute("SELECT count(*) FROM main.grants WHERE user_id = ? AND workspace_id = ?",
                            [outsider.ls_user_id, workspace.id]).fetchone()[0] == 1

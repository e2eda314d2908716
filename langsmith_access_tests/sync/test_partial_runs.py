"""A run of some of a job's assets (the Dagster UI's "Materialize selected") publishes only a
picture whose tables hold together: never one with a table left behind what it reads
(``defs/sync/publish.py``). The end-to-end run is in provisioning/test_refresh_scope.py."""

import dagster as dg
import pytest

from langsmith_access import names
from langsmith_access.definitions import defs
from langsmith_access.defs.extract.keys import job_of_run
from langsmith_access.defs.resources import org_resources
from langsmith_access.defs.sync.publish import ANALYSTS_DATABASE, refuse_a_partial_picture
from langsmith_access.transform.selection import left_behind, upstream


def test_left_behind_names_the_tables_downstream_of_what_a_run_rebuilt():
    inputs = {"b": ["a"], "c": ["b"], "d": ["x"], "e": ["c", "d"]}
    assert upstream(inputs, "e") == {"a", "b", "c", "d", "x"} and upstream(inputs, "a") == set()
    assert left_behind(inputs, {"a"}, "bcde") == {"b", "c", "e"}
    assert left_behind(inputs, {"b"}, "bcde") == {"c", "e"}
    assert left_behind(inputs, {"x", "d"}, "bcd") == set()  # e, which reads d, is no candidate
    assert left_behind(inputs, {"a", "b", "c", "e"}, "bcde") == set()  # d reads none of them
    assert left_behind(inputs, set(), "bcde") == set()
    # What reads a table a run may leave as it is (kept) reads it as it is: what that table was
    # built from does not count, unless it was rebuilt itself.
    assert left_behind(inputs, {"a"}, "ce", kept={"b"}) == set()
    assert left_behind(inputs, {"a", "b"}, "ce", kept={"b"}) == {"c", "e"}


def keys(*names_: str) -> set[dg.AssetKey]:
    return {dg.AssetKey(name.split("/")) for name in names_}


def job_assets(job: str) -> set[dg.AssetKey]:
    return set(defs().resolve_job_def(job).asset_layer.selected_asset_keys)


def refusal(rebuilt: set[dg.AssetKey], job: str = names.SYNC_JOB) -> dg.Failure | None:
    try:
        refuse_a_partial_picture(rebuilt, job)
    except dg.Failure as failure:
        return failure
    return None


def downstream_of(selection: str, job: str) -> set[dg.AssetKey]:
    """A selection typed in the UI, resolved as Dagster does, within the job."""
    return dg.AssetSelection.from_string(selection).resolve(defs().resolve_asset_graph()) & job_assets(job)


@pytest.mark.parametrize("job", [names.SYNC_JOB, names.INVENTORY_JOB])
def test_whole_jobs_a_republish_and_any_selection_with_everything_downstream_publish(job):
    assert refusal(job_assets(job), job) is None
    assert refusal({ANALYSTS_DATABASE}, job) is None  # publishes again what the last run built
    raw = sorted(key for key in job_assets(job) if key.path[0] == "raw")
    assert raw
    for key in raw:
        assert refusal(downstream_of(f'key:"{key.to_user_string()}"+', job), job) is None


def test_a_run_may_leave_the_inventorys_tables_but_not_what_also_reads_a_rebuilt_table():
    # The roles read again with everything downstream but the inventory's credentials: the
    # credential report, rebuilt, reads credentials as they are, so it holds what its query gives.
    rebuilt = downstream_of('key:"raw/roles"+', names.SYNC_JOB)
    assert refusal(rebuilt - keys("main/credentials")) is None
    # Left out too, the report would not: it reads the members (whose creators are gone), rebuilt.
    refused = refusal(rebuilt - keys("main/credentials", "main/report_credential_hygiene"))
    assert refused is not None and "main/report_credential_hygiene" in refused.description
    # The inventory's extract alone: its tables stay as the last inventory built them, and the
    # reports that read them (implicit admins, unused access...) read them as they are.
    extract = {key for key in job_assets(names.INVENTORY_JOB) if key.path[0] == "raw"}
    assert keys("raw/access_policies", "raw/audit_events") <= extract
    assert refusal(extract | {ANALYSTS_DATABASE}, names.INVENTORY_JOB) is None


PARTIAL = {
    # A member's row rebuilt, not what reads it: users would name an Admin effective_access lacks.
    "users alone": (names.SYNC_JOB, keys("raw/org_members", "raw/pending_invites", "raw/workspace_memberships",
                                         "staging/stg_langsmith__org_members", "main/users", "analysts_database"),
                    {"main/grants", "main/effective_access", "main/report_implicit_admins", "main/review_sheet",
                     "snapshots/grants_snapshot", "main/grant_history", "main/user_activity", "main/pending_invites"},
                    '(key:"raw/org_members" or key:"raw/pending_invites" or key:"raw/workspace_memberships")+'),
    # Every table a provisioning refresh scopes, not the snapshot: the history would miss the change.
    "the scoped tables without the snapshot": (
        names.SYNC_JOB, keys("staging/stg_langsmith__workspace_memberships", "main/grants", "main/effective_access",
                             "main/report_implicit_admins", "main/review_sheet", "analysts_database"),
        {"snapshots/grants_snapshot", "main/grant_history", "main/report_privileged_access"},
        'key:"staging/stg_langsmith__workspace_memberships"+'),
    # Observations staged, not laid into grants.
    "observations staged alone": (names.SYNC_JOB, keys("staging/stg_langsmith__provisioning_observations",
                                                       "analysts_database"),
                                  {"main/grants", "main/grant_history", "main/report_unexplained_changes"},
                                  'key:"staging/stg_langsmith__provisioning_observations"+'),
    # The inventory's access policies, not the reports that read them.
    "access policies alone": (names.INVENTORY_JOB, keys("raw/access_policies", "raw/credentials", "raw/service_accounts",
                                                        "raw/sso_settings", "raw/audit_events", "main/access_policies",
                                                        "analysts_database"),
                              {"main/report_implicit_admins", "main/review_sheet", "main/report_privileged_access"},
                              '(key:"raw/access_policies" or key:"raw/audit_events" or key:"raw/credentials" '
                              'or key:"raw/service_accounts" or key:"raw/sso_settings")+'),
    # The members read again with what is downstream of one of their three tables only: the
    # selection to launch instead names all three (one multi-asset, never selected in part), and
    # the org info, which the run read after them.
    "downstream of org_members only": (
        names.SYNC_JOB,
        keys("raw/pending_invites", "raw/workspace_memberships") | downstream_of('key:"raw/org_members"+', names.SYNC_JOB),
        {"staging/stg_langsmith__pending_invites", "staging/stg_langsmith__workspace_memberships"},
        '(key:"raw/org_members" or key:"raw/org_settings" or key:"raw/pending_invites" '
        'or key:"raw/workspace_memberships")+'),
}


@pytest.mark.parametrize("case", PARTIAL)
def test_a_run_that_left_a_table_behind_publishes_nothing_and_says_what_to_select(case):
    job, rebuilt, expected, expected_fix = PARTIAL[case]
    assert rebuilt <= job_assets(job)
    failure = refusal(rebuilt, job)
    assert failure is not None
    left = set(failure.metadata["left_behind"].data)
    assert expected <= left
    # The inventory's own tables stay as the last inventory built them, as in every core sync;
    # a view reads its inputs as they are.
    assert not left & {"main/credentials", "main/audit_events", "main/access_policies", "main/service_accounts",
                       "main/effective_permissions"}
    assert failure.description.startswith("Nothing published: this run rebuilt ")
    # The tables it names, as the metadata lists them: the first six, then how many more.
    tables = failure.metadata["left_behind"].data
    assert tables == sorted(left)
    more = f" and {len(tables) - 6} more" if len(tables) > 6 else ""
    assert f"but not {len(tables)} table(s) that read them ({', '.join(tables[:6])}{more})" in failure.description
    assert f"launch the whole {job} job" in failure.description
    # What the failure tells the operator to select, parsed as the UI does, publishes.
    # Only the rebuilt assets nothing else rebuilt is upstream of.
    fix = failure.metadata["fix"].text
    assert fix == expected_fix and f"`{fix}`" in failure.description
    assert refusal(rebuilt | downstream_of(fix, job), job) is None


# Reports that read grants and that no other table reads.
GRANT_REPORTS = ["report_access_policy_reach", "report_custom_role_holders", "report_disabled_members_with_grants",
                 "report_grant_changes", "report_implicit_admins", "report_members_without_workspace",
                 "report_privileged_access", "report_unexplained_changes", "report_unused_access",
                 "report_workspaces_without_admin"]


@pytest.mark.parametrize("left_out", [2, 3, 4])
def test_the_refusal_names_what_the_tables_left_behind_read_and_every_table_up_to_six_of_them(left_out):
    # grants rebuilt, and all but some of the reports that read it: the failure names grants as
    # what the run rebuilt (not the reports it rebuilt too, nor the publish), and lists the
    # tables left behind whole up to six, then the first six "and N more": none goes unsaid.
    rebuilt = keys("main/grants", *(f"main/{report}" for report in GRANT_REPORTS[left_out:])) | {ANALYSTS_DATABASE}
    failure = refusal(rebuilt)
    assert failure is not None
    tables = failure.metadata["left_behind"].data
    assert {f"main/{report}" for report in GRANT_REPORTS[:left_out]} <= set(tables)
    assert len(tables) == 4 + left_out, tables  # and effective_access, grant_history, review_sheet, the snapshot
    listed = ", ".join(tables) if len(tables) <= 6 else f"{', '.join(tables[:6])} and {len(tables) - 6} more"
    assert failure.description.startswith(
        f"Nothing published: this run rebuilt main/grants but not {len(tables)} table(s) that read them ({listed}), "
    ), failure.description


def test_a_run_of_dagsters_implicit_job_is_told_which_job_to_launch():
    # "Materialize" in the asset graph runs Dagster's own asset job, which nobody launches whole.
    job, rebuilt, _, _ = PARTIAL["users alone"]
    failure = refusal(rebuilt, "__ASSET_JOB")
    assert failure is not None
    assert f"launch the whole {names.SYNC_JOB} (or {names.INVENTORY_JOB}) job" in failure.description


def test_a_run_of_dagsters_implicit_job_is_recorded_as_the_job_whose_reads_it_made():
    # sync_runs.job names the sync or the inventory: the shrink guard and the drift report find
    # the previous sync by it, a sync launched from the asset catalog included.
    for job in (names.SYNC_JOB, names.INVENTORY_JOB):
        assert job_of_run(job, job_assets(job)) == job
        assert job_of_run("__ASSET_JOB", job_assets(job)) == job
        assert job_of_run(job, {ANALYSTS_DATABASE}) == job
    implicit = "__ASSET_JOB"
    assert job_of_run(implicit, downstream_of('key:"raw/roles"+', names.SYNC_JOB)) == names.SYNC_JOB
    assert job_of_run(implicit, downstream_of('key:"raw/credentials"+', names.INVENTORY_JOB)) == names.INVENTORY_JOB
    # Both jobs' reads in one run: it rebuilt the core tables, a sync.
    assert job_of_run(implicit, job_assets(names.SYNC_JOB) | job_assets(names.INVENTORY_JOB)) == names.SYNC_JOB
    # The org info is one of the sync's reads: read with the inventory's, it is a sync too.
    assert job_of_run(implicit, keys("raw/org_settings", "raw/credentials")) == names.SYNC_JOB
    # A run that read nothing from LangSmith (dbt tables rebuilt, or the last sync published
    # again) rebuilt the core tables from the sync's extracts: a sync, never the inventory.
    assert job_of_run(implicit, {ANALYSTS_DATABASE}) == names.SYNC_JOB
    assert job_of_run(implicit, downstream_of('key:"main/grants"+', names.SYNC_JOB)) == names.SYNC_JOB


def failure_shown(job) -> str:
    """What the Dagster UI shows for the first failed step of ``job`` run for org ``default``: a
    Failure's description (an exception of any other kind shows a stack trace)."""
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False, partition_key="default",
                                        resources=org_resources())
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    assert failure.user_failure_data is not None, failure.error.to_string()
    return failure.user_failure_data.description


def test_publishing_alone_before_any_sync_says_to_sync_first(database):
    # "Materialize" on analysts_database alone, for an org never synced: nothing to publish again.
    job = defs().resolve_job_def(names.SYNC_JOB).get_subset(asset_selection={ANALYSTS_DATABASE})
    description = failure_shown(job)
    assert "no sync" in description and f"Launch the whole {names.SYNC_JOB} job" in description
    assert not database.path.exists()  # nothing published


def test_the_inventory_before_any_sync_says_which_job_to_launch(database):
    # Launched by hand from the Launchpad for an org never synced (the schedule waits instead).
    description = failure_shown(defs().resolve_job_def(names.INVENTORY_JOB))
    assert "has no sync yet" in description and f"launch {names.SYNC_JOB} for this partition" in description

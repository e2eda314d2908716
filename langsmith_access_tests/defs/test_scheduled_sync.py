"""The scheduled sync honours the settings the README gives it, with no run config of its own."""

import dagster as dg

from langsmith_access import names
from langsmith_access.definitions import defs
from langsmith_access_tests.helpers import query


def test_the_scheduled_sync_takes_the_shrink_share_from_its_variable(env, instance, monkeypatch):
    _, org, database = env
    members = org.active_members()
    for member in members[: len(members) * 3 // 10]:  # 30% of the members leave: more than 0.2
        org.remove_member(member.ls_user_id)
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_SHRINK_SHARE", "0.5")

    definitions = defs()
    with dg.build_schedule_context(instance=instance, repository_def=definitions.get_repository_def()) as context:
        [request] = definitions.resolve_schedule_def(names.SYNC_SCHEDULE).evaluate_tick(context).run_requests
    job = definitions.resolve_job_def(names.SYNC_JOB)
    result = job.execute_in_process(run_config=request.run_config, partition_key=request.partition_key,
                                    tags=request.tags, instance=instance, raise_on_error=False)

    assert result.success
    guards = [evaluation for evaluation in result.get_asset_check_evaluations()
              if evaluation.check_name == "shrink_guard"]
    assert guards and all(guard.passed and guard.metadata["max_shrink_share"].value == 0.5 for guard in guards)
    assert query(database.path, "SELECT count(*) FROM main.users")[0][0] == len(org.active_members())

"""A sync's run config is checked when its step starts, before that step reads from LangSmith."""

from langsmith_access import names
from langsmith_access.definitions import defs


def test_a_shrink_share_outside_0_to_1_is_refused_before_anything_is_read(env, instance):
    sandbox, _org, _database = env
    sandbox.reset_log()
    job = defs().resolve_job_def(names.SYNC_JOB)
    result = job.execute_in_process(
        run_config={"ops": {names.MEMBERS_OP: {"config": {"max_shrink_share": 1.5}}}},
        partition_key="default", instance=instance, raise_on_error=False)
    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "max_shrink_share" in message and "less than or equal to 1" in message, message
    # Refused when the members step starts: not after reading every member.
    assert not [r for r in sandbox.request_log.snapshot() if "members" in r.path]


def test_a_shrink_share_in_the_run_config_outranks_the_variable(env, instance, monkeypatch):
    # An operator's Launchpad config for one run (a known offboarding) over the deployment's 0.2.
    _, org, database = env
    monkeypatch.delenv("LANGSMITH_ACCESS_MAX_SHRINK_SHARE", raising=False)
    members = org.active_members()
    for member in members[: len(members) * 3 // 10]:  # 30% of the members leave: more than 0.2
        org.remove_member(member.ls_user_id)
    job = defs().resolve_job_def(names.SYNC_JOB)
    result = job.execute_in_process(
        run_config={"ops": {names.MEMBERS_OP: {"config": {"max_shrink_share": 0.5}}}},
        partition_key="default", instance=instance, raise_on_error=False)
    assert result.success
    guards = [evaluation for evaluation in result.get_asset_check_evaluations()
              if evaluation.check_name == "shrink_guard"]
    assert guards and all(guard.passed and guard.metadata["max_shrink_share"].value == 0.5 for guard in guards)

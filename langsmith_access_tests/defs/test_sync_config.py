"""A sync's run config is checked when its step starts, before that step reads from LangSmith."""

import dagster as dg

from langsmith_access import names
from langsmith_access.definitions import defs
from langsmith_access.defs.extract.keys import RAW_ORG_MEMBERS, RAW_WORKSPACE_MEMBERSHIPS
from langsmith_access.defs.sync.publish import ANALYSTS_DATABASE
from langsmith_access_tests.helpers import file_digest


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


def test_a_shrink_share_of_0_in_the_run_config_lets_no_drop_through_whatever_the_variable(env, instance,
                                                                                           monkeypatch):
    # 0 is a share the Launchpad accepts ("no drop at all"), not a field left out: it outranks
    # the deployment's 0.5, and the one member who left fails both guards, as errors that block.
    _, org, database = env
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_SHRINK_SHARE", "0.5")
    before = file_digest(database.path)
    org.remove_member(org.active_members()[0].ls_user_id)
    job = defs().resolve_job_def(names.SYNC_JOB)
    result = job.execute_in_process(
        run_config={"ops": {names.MEMBERS_OP: {"config": {"max_shrink_share": 0}}}},
        partition_key="default", instance=instance, raise_on_error=False)
    assert not result.success
    guards = {evaluation.asset_key: evaluation for evaluation in result.get_asset_check_evaluations()
              if evaluation.check_name == "shrink_guard"}
    assert guards.keys() == {RAW_ORG_MEMBERS, RAW_WORKSPACE_MEMBERSHIPS}
    for guard in guards.values():
        assert not guard.passed and guard.severity == dg.AssetCheckSeverity.ERROR
        assert guard.metadata["max_shrink_share"].value == 0
    assert not [event for event in result.get_asset_materialization_events()
                if event.asset_key == ANALYSTS_DATABASE]
    assert file_digest(database.path) == before


def test_a_negative_lease_timeout_is_refused_before_anything_is_read(env, instance):
    """A lease timeout below 0 (a typo in the Launchpad) is refused naming the setting, not run as
    "busy within -1 s" the first time another run holds the database."""
    sandbox, _org, _database = env
    sandbox.reset_log()
    job = defs().resolve_job_def(names.SYNC_JOB)
    result = job.execute_in_process(
        run_config={"resources": {"sync_database": {"config": {"lease_timeout_seconds": -1}}}},
        partition_key="default", instance=instance, raise_on_error=False)
    assert not result.success
    said = " ".join(str(event.event_specific_data) for event in result.all_events if event.is_failure)
    assert "lease_timeout_seconds" in said and "greater than or equal to 0" in said, said
    assert sandbox.request_log.snapshot() == []

"""A schedule's tick asks for one run per org, and the daemon launches each only if no run of that
schedule and tick has its run key yet (dagster/_scheduler/scheduler.py,
``_get_existing_run_for_request``): two orgs sharing a key would get one run between them, the
second org never synced by its schedule."""

import uuid

import dagster as dg
import pytest

from langsmith_access.definitions import defs
from langsmith_access.names import INVENTORY_JOB, INVENTORY_SCHEDULE, ORG_TAG, SYNC_JOB, SYNC_SCHEDULE
from langsmith_access.settings import ORGS_FILE_VARIABLE

SLUGS = ("us", "eu", "eu-2", "apac")


@pytest.fixture
def four_orgs(tmp_path, monkeypatch):
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text("".join(
        f"- slug: {slug}\n  organization_id: 00000000-0000-4000-8000-00000000000{i}\n"
        f"  endpoint: http://127.0.0.1:9\n  api_key_env: LANGSMITH_API_KEY_{i}\n" for i, slug in enumerate(SLUGS)))
    monkeypatch.setenv(ORGS_FILE_VARIABLE, str(orgs_file))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "data" / "langsmith_access.duckdb"))
    for i in range(len(SLUGS)):
        monkeypatch.setenv(f"LANGSMITH_API_KEY_{i}", "lsv2_sk_" + "0" * 32 + "_ticksonly")


def test_each_orgs_scheduled_run_has_a_run_key_of_its_own(four_orgs):
    definitions = defs()
    with dg.build_schedule_context(repository_def=definitions.get_repository_def()) as context:
        tick = definitions.resolve_schedule_def(SYNC_SCHEDULE).evaluate_tick(context)
    assert [request.partition_key for request in tick.run_requests] == list(SLUGS)
    keys = [request.run_key for request in tick.run_requests]
    assert all(keys) and len(set(keys)) == len(SLUGS), keys


def _run_of(instance: dg.DagsterInstance, job_name: str, slug: str, status: dg.DagsterRunStatus) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name=job_name, run_id=run_id, status=status, tags={ORG_TAG: slug}))
    return run_id


def test_a_tick_launches_no_second_run_for_an_org_whose_last_one_is_still_queued_or_running(four_orgs, instance):
    # One org's runs never run two at once (the per-org limit): a run launched while the last is
    # in flight only queued behind it, and a cron shorter than a sync grew the queue without end.
    running = _run_of(instance, SYNC_JOB, "eu", dg.DagsterRunStatus.STARTED)
    _run_of(instance, SYNC_JOB, "apac", dg.DagsterRunStatus.NOT_STARTED)
    _run_of(instance, SYNC_JOB, "us", dg.DagsterRunStatus.SUCCESS)  # over: no reason to wait
    _run_of(instance, INVENTORY_JOB, "eu-2", dg.DagsterRunStatus.STARTED)  # another job: not the sync's
    definitions = defs()
    with dg.build_schedule_context(instance=instance, repository_def=definitions.get_repository_def()) as context:
        tick = definitions.resolve_schedule_def(SYNC_SCHEDULE).evaluate_tick(context)
    assert [request.partition_key for request in tick.run_requests] == ["us", "eu-2"]
    # Every org in flight: the tick's skip reason names each one's run.
    _run_of(instance, SYNC_JOB, "us", dg.DagsterRunStatus.STARTING)
    _run_of(instance, SYNC_JOB, "eu-2", dg.DagsterRunStatus.CANCELING)
    with dg.build_schedule_context(instance=instance, repository_def=definitions.get_repository_def()) as context:
        none = definitions.resolve_schedule_def(SYNC_SCHEDULE).evaluate_tick(context)
    assert not none.run_requests
    assert f"eu: its {SYNC_JOB} run {running} is still started: this tick launches no other" in none.skip_message, (
        none.skip_message)
    assert all(f"{slug}: its {SYNC_JOB} run " in none.skip_message for slug in SLUGS), none.skip_message
    # The inventory's schedule looks at its own job: eu-2's inventory is in flight; the others wait
    # for their first sync (none here), each said.
    with dg.build_schedule_context(instance=instance, repository_def=definitions.get_repository_def()) as context:
        inventory = definitions.resolve_schedule_def(INVENTORY_SCHEDULE).evaluate_tick(context)
    assert not inventory.run_requests
    assert (f"eu-2: its {INVENTORY_JOB} run " in inventory.skip_message
            and "is still started: this tick launches no other" in inventory.skip_message), inventory.skip_message
    assert "us: no sync published yet" in inventory.skip_message, inventory.skip_message

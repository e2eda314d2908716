"""A schedule's tick asks for one run per org, and the daemon launches each only if no run of that
schedule and tick has its run key yet (dagster/_scheduler/scheduler.py,
``_get_existing_run_for_request``): two orgs sharing a key would get one run between them, the
second org never synced by its schedule."""

import dagster as dg
import pytest

from langsmith_access.definitions import defs
from langsmith_access.names import SYNC_SCHEDULE
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

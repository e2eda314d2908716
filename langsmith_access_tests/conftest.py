"""Test session set-up: the dbt manifest must exist before the definitions are imported."""

import os

# A test Dagster instance and an empty database the environment points at, for the sensor tests.
from langsmith_access_tests.dagster_fixtures import database, instance  # noqa: F401

# One synced template database per session and the per-test `env` (sandbox + database copy),
# shared by the provisioning, review and UI tests.
from langsmith_access_tests.synced import env, template  # noqa: F401


def pytest_sessionstart(session):
    # Tests never talk to a real LangSmith org or a user's database by accident.
    for name in ("LANGSMITH_API_KEY", "LANGSMITH_ORGANIZATION_ID", "LANGSMITH_ENDPOINT",
                 "LANGSMITH_ACCESS_DUCKDB", "DAGSTER_HOME"):
        os.environ.pop(name, None)
    from langsmith_access.transform import prepare_manifest

    prepare_manifest()  # in the cache, keyed by the project's content hash: never stale


# The longest test files (wall time on the 2-core machine, most of each one end-to-end scenario
# or a few), started first. `make test` hands whole files to its workers (`--dist loadfile`) in
# collection order (`--no-loadscope-reorder`: xdist would otherwise start the files with the
# most tests first, which hands these single long scenarios out last, and the run then ends
# with one worker running a long file alone while the others have nothing left). Only the order
# changes: a file missing from this list runs where it always did.
LONGEST_FILES_FIRST = (
    "deploy/test_smoke_deploy.py",  # mostly waiting for the schedule's minute: overlaps well
    "reliability/test_secret_hygiene.py",
    "ui/test_dagster_ui.py",
    "sync/test_sync_end_to_end.py",
    "reliability/test_provisioning_crash.py",
    "sync/test_core_sync_leaves_inventory_tables.py",
    "test_cli.py",
    "sync/test_sync_on_deployments.py",
    "test_many_orgs.py",
    "transform/test_dbt_models.py",
    "sync/test_access_picture.py",
    "reliability/test_bad_responses.py",
    "reliability/test_bad_requests.py",
    "test_installed_package.py",
)


def pytest_collection_modifyitems(session, config, items):
    tests_dir = os.path.dirname(__file__)

    def rank(item) -> int:
        relative = os.path.relpath(str(item.path), tests_dir)
        return LONGEST_FILES_FIRST.index(relative) if relative in LONGEST_FILES_FIRST else len(LONGEST_FILES_FIRST)

    items.sort(key=rank)  # stable: each file's tests, and the other files, keep their order

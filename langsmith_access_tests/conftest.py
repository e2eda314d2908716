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


# The longest test files (wall time on the 2-core machine, most of it one end-to-end scenario
# each), started first. `make test` hands whole files to its two workers in collection order
# (`--dist loadfile`); a long file handed out last keeps one worker busy while the other has
# nothing left. Only the order changes: a file missing from this list runs where it always did.
LONGEST_FILES_FIRST = (
    "deploy/test_smoke_deploy.py",  # mostly waiting for the schedule's minute: overlaps well
    "reliability/test_provisioning_crash.py",
    "sync/test_sync_end_to_end.py",
    "reliability/test_secret_hygiene.py",
    "sync/test_core_sync_leaves_inventory_tables.py",
    "transform/test_dbt_models.py",
    "sync/test_sync_on_deployments.py",
    "test_cli.py",
    "ui/test_dagster_ui.py",
    "test_installed_package.py",
)


def pytest_collection_modifyitems(session, config, items):
    tests_dir = os.path.dirname(__file__)

    def rank(item) -> int:
        relative = os.path.relpath(str(item.path), tests_dir)
        return LONGEST_FILES_FIRST.index(relative) if relative in LONGEST_FILES_FIRST else len(LONGEST_FILES_FIRST)

    items.sort(key=rank)  # stable: each file's tests, and the other files, keep their order

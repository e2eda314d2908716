"""Test session set-up: the dbt manifest must exist before the definitions are imported; the
longest files start first."""

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


# The files that each run one long end-to-end scenario (minutes each on the 2-core machine,
# BENCHMARKS.md), longest first. `make test` hands whole files to its two workers in collection
# order (`--dist loadfile --no-loadscope-reorder`: xdist would otherwise hand out the files with
# the most tests first and these last, where a /proc/stat sample of a full run found the machine
# at 0.1-1.0 of its 2 cores for ~6 minutes: two of them side by side, each waiting on its
# services, or one alone). Only the order changes: every other file keeps its place after them.
LONGEST_FILES_FIRST = (
    "deploy/test_smoke_deploy.py",  # mostly waiting for the schedule's minute: overlaps well
    "test_installed_package.py",
    "reliability/test_provisioning_crash.py",
    "ui/test_dagster_ui.py",
    "reliability/test_concurrent_sessions.py",
    "reliability/test_secret_hygiene.py",
)


def pytest_collection_modifyitems(session, config, items):
    tests_dir = os.path.dirname(__file__)

    def rank(item) -> int:
        relative = os.path.relpath(str(item.path), tests_dir)
        return LONGEST_FILES_FIRST.index(relative) if relative in LONGEST_FILES_FIRST else len(LONGEST_FILES_FIRST)

    items.sort(key=rank)  # stable: each file's tests, and the other files, keep their order

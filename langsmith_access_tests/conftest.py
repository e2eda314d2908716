"""Test session set-up: the dbt manifest must exist before the definitions are imported."""

import os

import pytest

# A test Dagster instance and an empty database the environment points at, for the sensor tests.
from langsmith_access_tests.dagster_fixtures import database, instance  # noqa: F401

# One synced template database per session and the per-test `env` (sandbox + database copy),
# shared by the provisioning, review and UI tests.
from langsmith_access_tests.helpers import refused_port as _refused_port
from langsmith_access_tests.synced import env, template  # noqa: F401


@pytest.fixture
def refused_port():
    """A port on 127.0.0.1 that refuses connections for the whole test (helpers.refused_port)."""
    with _refused_port() as port:
        yield port


def pytest_sessionstart(session):
    # Tests never talk to a real LangSmith org or a user's database by accident.
    for name in ("LANGSMITH_API_KEY", "LANGSMITH_ORGANIZATION_ID", "LANGSMITH_ENDPOINT",
                 "LANGCHAIN_ENDPOINT", "LANGSMITH_ACCESS_DUCKDB", "DAGSTER_HOME"):
        os.environ.pop(name, None)
    from langsmith_access.transform import prepare_manifest

    prepare_manifest()  # in the cache, keyed by the project's content hash: never stale


@pytest.hookimpl(optionalhook=True)  # a hook of xdist's: only with -n
def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") == "loadfile":  # `make test`'s
        from langsmith_access_tests.scheduling import HeaviestFirstScheduling

        return HeaviestFirstScheduling(config, log)
    return None

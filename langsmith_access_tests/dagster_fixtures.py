"""Fixtures for the tests that tick sensors and read runs (``helpers.tick_sensor``): a test
Dagster instance and an empty database the environment points at. Registered for the whole tree
by the root ``conftest.py``; a module that needs another kind of ``database`` defines its own.
"""

import dagster as dg
import pytest

from langsmith_access.store.database import AccessDatabase


@pytest.fixture
def database(tmp_path, monkeypatch):
    """An access database not yet created, at the path ``LANGSMITH_ACCESS_DUCKDB`` names, for an
    org the settings can reach: a key and an org id that no tick uses (a tick reads only the
    database; without them the sensors launch nothing and say which variable is missing)."""
    path = tmp_path / "access.duckdb"
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(path))
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_sk_" + "0" * 32 + "_ticksonly")
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", "00000000-0000-4000-8000-00000000000f")
    return AccessDatabase(path)


@pytest.fixture
def instance(tmp_path):
    """A Dagster instance of its own under the test's temp dir (runs, events, sensor ticks)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance

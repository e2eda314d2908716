"""A synced database plus a sandbox serving the same org: the fixtures ``template`` and ``env``.

Registered for the whole test tree by the root ``conftest.py``, so the provisioning, review and
UI tests share one synced template per session (a package may still override ``template``, as
``reliability/`` does). Each test copies the template and serves a fresh copy of the same
generated org, so tests start from identical, independent states.
"""

import shutil
from pathlib import Path

import pytest

from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.built_once import built_once
from langsmith_access_tests.helpers import copy_synced_database, point_at, run_sync

SEED, MEMBERS, WORKSPACES = 21, 30, 4
# Shaped as LangSmith makes them (random hex): the client cuts any 12-character piece of the key
# from what a server answers, so a key of words ("provisioning") would cut them from the data too.
API_KEY = "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"
WRITES = ("POST", "PATCH", "DELETE")


def new_org():
    """The same generated org every time: it matches the template's synced tables."""
    return generate_org(seed=SEED, members=MEMBERS, workspaces=WORKSPACES)


def sync_template(folder: Path) -> Path:
    database = folder / "access.duckdb"
    with pytest.MonkeyPatch.context() as monkeypatch, SandboxServer(new_org(), api_key=API_KEY) as sandbox:
        point_at(monkeypatch, sandbox, database)
        outcome = run_sync()
        assert outcome.success, outcome.failure
    return database


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    """The synced database every test copies: one sync per session, shared by the test processes."""
    return AccessDatabase(built_once(tmp_path_factory, "synced-template", sync_template))


@pytest.fixture
def env(template, tmp_path_factory, monkeypatch):
    """A synced database and a sandbox serving the same org, with the environment pointing at them.

    Every test gets a fresh copy of the template at the same path, in a folder emptied before
    each test except for the database's dbt directory: dbt's saved parse of the project is tied
    to the path of the file it builds, so keeping the path lets each provisioning run's history
    refresh reuse it as it is (a new path would start from a kept parse, ~0.5 s, or parse in
    full where none is kept, ~3 s).
    """
    folder = tmp_path_factory.getbasetemp() / "synced-env"
    folder.mkdir(exist_ok=True)
    database = AccessDatabase(folder / "access.duckdb")
    for leftover in folder.iterdir():
        if leftover == database.dbt_target_path:
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    copy_synced_database(template.path, database.path)
    org = new_org()
    with SandboxServer(org, api_key=API_KEY) as sandbox:
        point_at(monkeypatch, sandbox, database.path)
        yield sandbox, org, database

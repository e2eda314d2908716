"""A database holds one LangSmith organization's data: a sync, inventory or provisioning run for
another org (LANGSMITH_ORGANIZATION_ID changed under the same LANGSMITH_ACCESS_DUCKDB, or two
slugs swapped in the orgs file) is refused before it reads or writes anything, naming both orgs
and the fix; the database stays as its own org's last run left it."""

from __future__ import annotations

import time

import duckdb

from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.helpers import cli_in_this_process, point_at, query


def test_a_run_for_another_org_is_refused_and_the_database_is_left_as_it_was(tmp_path, monkeypatch):
    now = int(time.time())
    first, other = generate_org(seed=21, members=12, workspaces=3, now=now), generate_org(
        seed=22, members=16, workspaces=3, now=now)
    database = tmp_path / "data" / "access.duckdb"
    with SandboxServer(first) as first_sandbox, SandboxServer(other) as other_sandbox:
        assert first_sandbox.organization_id != other_sandbox.organization_id
        point_at(monkeypatch, first_sandbox, database)
        assert cli_in_this_process("sync", "--quiet").returncode == 0
        member = next(m for m in first.active_members() if not m.is_disabled)
        workspace = first.shared_workspaces()[0]
        queued = cli_in_this_process("request", "grant", "--user", member.email, "--workspace", workspace.id,
                                     "--role", "Viewer")
        assert queued.returncode == 0, queued.stderr
        before = {table: query(database, f"SELECT * FROM main.{table} ORDER BY ALL")
                  for table in ("users", "grant_history", "sync_runs", "provisioning_requests")}
        assert query(database, "SELECT DISTINCT organization_id FROM main.sync_runs") == [
            (first_sandbox.organization_id,)]

        # The other org's settings, the same file: every writing run is refused.
        point_at(monkeypatch, other_sandbox, database)
        asked_before = len(other_sandbox.request_log)
        for command in (("sync",), ("sync", "--all-sections"), ("provision",)):
            done = cli_in_this_process(*command)
            assert done.returncode == 1, (command, done.stdout, done.stderr)
            said = done.stdout + done.stderr
            assert f"holds organization {first_sandbox.organization_id}'s data" in said, said
            assert f"not organization {other_sandbox.organization_id}'s" in said, said
            assert "LANGSMITH_ACCESS_DUCKDB" in said and other_sandbox.api_key not in said
        # Nor may a request, a decision or a review be queued there for it.
        other_member = next(m for m in other.active_members() if not m.is_disabled)
        for command in (("request", "grant", "--user", member.email, "--workspace", workspace.id, "--role", "Editor"),
                        ("request", "revoke", "--user", other_member.email, "--workspace",
                         other.shared_workspaces()[0].id, "--role", "Viewer")):
            done = cli_in_this_process(*command)
            assert done.returncode == 1, (command, done.stdout, done.stderr)
            assert f"holds organization {first_sandbox.organization_id}'s data" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr
        assert len(other_sandbox.request_log) == asked_before  # nothing read from the other org
        after = {table: query(database, f"SELECT * FROM main.{table} ORDER BY ALL") for table in before}
        assert after == before
        with duckdb.connect(str(AccessDatabase(database).working_path), read_only=True) as conn:
            assert conn.execute("SELECT count(*) FROM main.sync_runs").fetchone() == (len(before["sync_runs"]),)

        # A database written before runs recorded their org is known by its workspaces.
        for path in (database, AccessDatabase(database).working_path):
            with duckdb.connect(str(path)) as conn:
                conn.execute("UPDATE main.sync_runs SET organization_id = NULL")
        assert cli_in_this_process("sync").returncode == 1

        # Its own org's runs go on as before.
        point_at(monkeypatch, first_sandbox, database)
        assert cli_in_this_process("sync", "--quiet").returncode == 0
        assert query(database, "SELECT count(*) FROM main.users") == [(len(first.active_members()),)]
        assert query(database, "SELECT status FROM main.provisioning_requests") == [("pending",)]


def test_an_org_id_that_is_no_uuid_is_named_as_such_and_a_key_there_never_shown(env, monkeypatch):
    """Commands that call no API (request, approve) leave LANGSMITH_ORGANIZATION_ID unchecked until
    it is compared with the database's org: an id that is no UUID (a key pasted into the wrong
    variable, say) is refused as such, naming the variable, never printed, nothing recorded."""
    sandbox, org, database = env
    member = next(m for m in org.active_members() if not m.is_disabled)
    workspace = org.shared_workspaces()[0]
    before = query(database.path, "SELECT * FROM main.provisioning_requests ORDER BY ALL")
    for wrong in (sandbox.api_key, "acme-prod"):
        monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", wrong)
        for command in (("request", "grant", "--user", member.email, "--workspace", workspace.id, "--role", "Viewer"),
                        ("approve", "0" * 32, "--by", member.email)):
            done = cli_in_this_process(*command)
            said = done.stdout + done.stderr
            assert done.returncode == 1, (command, said)
            assert "LANGSMITH_ORGANIZATION_ID must be the organization's UUID" in said, said
            assert sandbox.api_key not in said and "Traceback" not in said
    assert query(database.path, "SELECT * FROM main.provisioning_requests ORDER BY ALL") == before

"""The API key appears nowhere: not in the DuckDB files (WAL and Parquet included), not in
``DAGSTER_HOME`` (run storage, event log, compute logs), not in dbt's files, logs or CLI output;
after syncs and provisioning runs that succeed and that fail, including failures where the
server echoes the key back in its error. A ``lsv2_pt_`` key is refused with zero requests sent.

(test_client_against_sandbox.py checks exceptions for the key; test_cli.py refuses a personal
token for `sync`. Here whole runs are searched, byte for byte.)
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from langsmith_access import runner
from langsmith_access.api import request_grant
from langsmith_access.doctor import KEY_FIX
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.sandbox.api import ApiResponse
from langsmith_access.transform import DBT_PROJECT_DIR
from langsmith_access_tests.helpers import cli_in_this_process

CLI = str(Path(sys.executable).with_name("langsmith-access"))
MARKER = "RELIABILITYSECRET" + secrets.token_hex(12)
KEY = f"lsv2_sk_{MARKER}_{secrets.token_hex(5)}"
PERSONAL_TOKEN = f"lsv2_pt_{MARKER}_personal"


def files_containing(marker: bytes, roots: list[Path], since: float = 0.0) -> tuple[list[Path], int, int]:
    """(files, modified since ``since``, whose bytes contain the marker; files scanned; bytes scanned)."""
    found, files, size = [], 0, 0
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if not path.is_file() or path.stat().st_mtime < since:
                continue
            data = path.read_bytes()
            files, size = files + 1, size + len(data)
            if marker in data:
                found.append(path)
    return found, files, size


def test_the_key_is_nowhere_after_good_and_failed_runs(tmp_path, monkeypatch, caplog):
    started = time.time() - 2
    caplog.set_level(logging.DEBUG)
    data, home, outputs = tmp_path / "data", tmp_path / "dagster_home", tmp_path / "outputs"
    for folder in (data, home, outputs):
        folder.mkdir()
    database = data / "access.duckdb"
    org = generate_org(seed=5, members=25, workspaces=3)
    with SandboxServer(org, api_key=KEY) as sandbox:
        echo_on: set[str] = set()
        original = sandbox.respond

        def echo_the_key(request):
            # A misbehaving server that puts the key it received into its error answers.
            if request.path in echo_on:
                presented = request.headers.get("X-API-Key")
                status = 500 if request.path == "/api/v1/workspaces" else 400
                return ApiResponse(status, {"detail": f"upstream refused X-API-Key={presented}",
                                            "echo": {"key": presented}})
            return original(request)

        sandbox.respond = echo_the_key
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "DAGSTER_"))}
        env.update(LANGSMITH_API_KEY=KEY, LANGSMITH_ORGANIZATION_ID=sandbox.organization_id,
                   LANGSMITH_ENDPOINT=sandbox.url, LANGSMITH_ACCESS_DUCKDB=str(database),
                   LANGSMITH_ACCESS_MAX_RETRIES="1", DAGSTER_HOME=str(home))
        for name in ("LANGSMITH_ORGANIZATION_ID", "LANGSMITH_ENDPOINT", "LANGSMITH_ACCESS_DUCKDB",
                     "LANGSMITH_ACCESS_MAX_RETRIES", "DAGSTER_HOME"):
            monkeypatch.setenv(name, env[name])
        transcript = []

        def cli(*args, api_key=KEY, console_script=False):
            # In this process (caplog sees every record it logs), and once through the console
            # script: the failing sync, whose key the server echoes, as an operator runs it.
            if console_script:
                done = subprocess.run([CLI, *args], env={**env, "LANGSMITH_API_KEY": api_key},
                                      capture_output=True, text=True, timeout=300)
            else:
                monkeypatch.setenv("LANGSMITH_API_KEY", api_key)
                done = cli_in_this_process(*args)
            transcript.append(f"$ {' '.join(args)}\n{done.stdout}\n{done.stderr}")
            (outputs / f"{len(transcript):02d}.txt").write_text(transcript[-1])
            return done

        workspace = org.shared_workspaces()[0]
        outsiders = [m for m in org.active_members() if m.ls_user_id not in workspace.memberships]

        assert cli("sync").returncode == 0, transcript[-1]
        assert request_grant(outsiders[0].email, workspace.id, "Editor", requested_by="hygiene").accepted
        provisioned = cli("provision", "--json")
        assert provisioned.returncode == 0, transcript[-1]
        assert json.loads(provisioned.stdout)["requests"][0]["status"] == "applied"

        # Failed runs, with the key echoed back by the server.
        echo_on.add("/api/v1/orgs/current/roles")
        assert request_grant(outsiders[1].email, workspace.id, "Viewer").accepted
        failed_provision = cli("provision")
        assert failed_provision.returncode == 1, transcript[-1]
        assert "/api/v1/orgs/current/roles" in failed_provision.stderr and "***" in failed_provision.stderr
        assert "no pending requests" not in failed_provision.stderr  # there was one; the run failed
        # ...and it is pending again, saying why (the failing call, the key scrubbed).
        [waiting] = [r for r in json.loads(cli("requests", "--json").stdout) if r["status"] != "applied"]
        assert waiting["status"] == "pending", waiting
        assert "the run failed" in waiting["status_detail"] and "/api/v1/orgs/current/roles" in waiting["status_detail"]
        echo_on.add("/api/v1/workspaces")
        failed_sync = cli("sync", console_script=True)
        assert failed_sync.returncode == 1 and "Sync failed" in failed_sync.stderr, transcript[-1]
        # The summary names the first failing call, scrubbed; every failing call is in the
        # run's log file (searched for the key below with everything else).
        assert "/api/v1/orgs/current/roles" in failed_sync.stderr and "***" in failed_sync.stderr
        sync_logs = list((data / "logs").glob("langsmith_access_sync-*.log"))
        assert sync_logs and "/api/v1/workspaces" in sync_logs[0].read_text()
        echo_on.clear()
        assert cli("requests", "--json").returncode == 0

        # A personal access token: refused before any request, by the CLI and by a Dagster run.
        requests_so_far = len(sandbox.request_log)
        # (test_cli.py refuses one for `sync`.)
        refused = cli("provision", api_key=PERSONAL_TOKEN)
        assert refused.returncode == 1 and "personal access token" in refused.stderr, transcript[-1]
        monkeypatch.setenv("LANGSMITH_API_KEY", PERSONAL_TOKEN)
        in_process = runner.run_job(runner.SYNC_JOB, runner.sync_run_config())
        assert not in_process.success and "personal access token" in in_process.failure
        # The fix names the variable to set and what to put in it, as the doctor's does.
        assert in_process.fix == KEY_FIX, in_process.fix
        assert len(sandbox.request_log) == requests_so_far, "a lsv2_pt_ key sent no request"
        request_count = len(sandbox.request_log)

    # Every run is in DAGSTER_HOME's storage: the search below is not vacuous.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) >= 5
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
        assert not any(MARKER in json.dumps(r.run_config) or MARKER in json.dumps(r.tags) for r in runs)

    marker = MARKER.encode()
    canary = tmp_path / "canary.bin"
    canary.write_bytes(b"\x00prefix" + KEY.encode() + b"suffix\x00")
    assert files_containing(marker, [canary])[0] == [canary], "the search finds the key where it is"
    canary.unlink()

    # Everything this test created, and whatever dbt wrote in the project while it ran.
    found, files, size = files_containing(marker, [tmp_path])
    dbt_dirs = [DBT_PROJECT_DIR / d for d in ("target", "logs") if (DBT_PROJECT_DIR / d).exists()]
    found_dbt, dbt_files, dbt_size = files_containing(marker, dbt_dirs, since=started)
    assert found == [] and found_dbt == [], found + found_dbt
    files, size = files + dbt_files, size + dbt_size
    assert {p.suffix for p in data.iterdir()} >= {".duckdb", ".lock"}
    assert MARKER not in "\n".join(transcript)
    assert MARKER not in caplog.text
    print(f"\nsecret hygiene: {len(runs)} Dagster runs ({sum(r.status == dg.DagsterRunStatus.FAILURE for r in runs)} "
          f"failed), {len(transcript)} CLI commands, {request_count} API requests; "
          f"{files} files / {size / 1e6:.1f} MB searched, key found in none")


def test_a_run_config_reading_the_key_into_a_resource_is_refused_and_the_key_is_nowhere(tmp_path, monkeypatch):
    """Dagster accepts ``{env: VAR}`` for any text field of a resource's config: read into
    ``duckdb_path``, the key of the run worker became the name of the database's files (in the
    working directory) and was shown in the run's event log, to whoever may launch a run from
    the Launchpad. Refused before anything is read or written, naming the field and never the
    value; the run config keeps only the variable's name."""
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    monkeypatch.chdir(tmp_path)  # where a relative duckdb_path's files went
    org = generate_org(seed=5, members=10, workspaces=2)
    with SandboxServer(org, api_key=KEY) as sandbox:
        for name, value in sandbox.environment(data / "access.duckdb").items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        synced = runner.run_job(runner.SYNC_JOB, {
            **runner.sync_run_config(),
            "resources": {"sync_database": {"config": {"duckdb_path": {"env": "LANGSMITH_API_KEY"}}}}})
        provisioned = runner.run_job("provision_workspace_roles", {
            "resources": {"provisioning_database": {"config": {"duckdb_path": {"env": "LANGSMITH_API_KEY"}}}}})
        requests_sent = len(sandbox.request_log)
    for outcome, resource in ((synced, "sync_database"), (provisioned, "provisioning_database")):
        assert not outcome.success
        assert (f"The run config reads resources.{resource}.config.duckdb_path from the environment ({{env: ...}})"
                in outcome.failure), outcome.failure
        assert outcome.fix == "type the value itself in the run config's resources, or leave it out for the org's own"
        assert MARKER not in outcome.failure
    assert requests_sent == 0
    assert not data.exists(), "nothing was written where the org's own database goes either"
    assert files_containing(MARKER.encode(), [tmp_path])[0] == []
    assert not [p for p in tmp_path.rglob("*") if MARKER in p.name]

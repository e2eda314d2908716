"""The connection doctor against the sandbox in each deployment it plays, through the CLI, and
as the op job ``check_langsmith_connection`` executed in-process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from langsmith_access.doctor import CHECK_NAMES, run_checks
from langsmith_access.sandbox import SandboxServer, generate_org

CLI = str(Path(sys.executable).with_name("langsmith-access"))


@pytest.fixture
def sandbox_env(tmp_path):
    servers: list[SandboxServer] = []

    def make(**options) -> tuple[SandboxServer, dict[str, str]]:
        server = SandboxServer(generate_org(seed=4, members=20, workspaces=4), **options).start()
        servers.append(server)
        return server, server.environment(tmp_path / "access.duckdb")

    yield make
    for server in servers:
        server.stop()


def statuses(environ) -> dict[str, str]:
    diagnosis = run_checks(environ)
    assert [c.name for c in diagnosis.checks] == list(CHECK_NAMES)
    for check in diagnosis.checks:
        assert check.detail
        assert (check.fix is not None) == (check.status in ("warn", "fail")), check
    return {c.name: c.status for c in diagnosis.checks}


def test_org_admin_on_cloud_is_all_ok(sandbox_env):
    sandbox, environ = sandbox_env()
    assert set(statuses(environ).values()) == {"ok"}
    # Read-only: nothing but GETs.
    assert {entry.method for entry in sandbox.request_log} == {"GET"}


def test_self_hosted_through_api_v1_is_all_ok(sandbox_env):
    sandbox, environ = sandbox_env(deployment="self-hosted")
    environ["LANGSMITH_ENDPOINT"] = sandbox.url + "/api/v1"
    assert set(statuses(environ).values()) == {"ok"}


def test_a_default_role_key_warns_read_all_workspaces(sandbox_env):
    _, environ = sandbox_env(key_role="org-user")
    result = statuses(environ)
    assert result.pop("read_all_workspaces") == "warn"
    assert set(result.values()) == {"ok"}
    check = next(c for c in run_checks(environ).checks if c.name == "read_all_workspaces")
    assert "Organization Admin" in check.fix and "complete, slower" in check.fix
    assert "manage" in next(c for c in run_checks(environ).checks if c.name == "manage_workspace_members").detail


def test_a_plan_without_rbac_fails_workspace_rbac(sandbox_env):
    _, environ = sandbox_env(plan="plus")
    result = statuses(environ)
    assert result.pop("workspace_rbac") == "fail"
    assert set(result.values()) == {"ok"}


def test_a_workspace_scoped_key_fails_organization_and_members(sandbox_env):
    _, environ = sandbox_env(key_role="workspace")
    result = statuses(environ)
    assert result["organization"] == "fail" and result["read_members"] == "fail"
    assert [result[n] for n in CHECK_NAMES[:3]] == ["ok", "ok", "ok"]
    assert {result[n] for n in CHECK_NAMES[5:]} == {"skip"}


def test_a_wrong_endpoint_fails_endpoint_and_skips_the_rest(sandbox_env):
    sandbox, environ = sandbox_env(deployment="self-hosted")
    environ["LANGSMITH_ENDPOINT"] = sandbox.url + "/settings"  # the web UI: HTML with 200
    result = statuses(environ)
    assert result["configuration"] == "ok" and result["endpoint"] == "fail"
    assert {result[n] for n in CHECK_NAMES[2:]} == {"skip"}
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    environ["LANGSMITH_ENDPOINT"] = f"http://127.0.0.1:{closed}"
    result = statuses(environ)
    assert result["endpoint"] == "fail" and {result[n] for n in CHECK_NAMES[2:]} == {"skip"}


def test_bad_configuration_fails_configuration(sandbox_env):
    _, environ = sandbox_env()
    for name, value in (("LANGSMITH_API_KEY", "lsv2_pt_personal_token"),
                        ("LANGSMITH_ORGANIZATION_ID", "not-a-uuid"),
                        ("LANGSMITH_ENDPOINT", "api.smith.langchain.com")):
        result = statuses({**environ, name: value})
        assert result["configuration"] == "fail", name
        assert {result[n] for n in CHECK_NAMES[1:]} == {"skip"}


def test_a_wrong_key_fails_authentication(sandbox_env):
    _, environ = sandbox_env()
    result = statuses({**environ, "LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32})
    assert result["endpoint"] == "ok" and result["authentication"] == "fail"


def run_cli(environ, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGSMITH")} | environ
    return subprocess.run([CLI, "doctor", *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_lines_json_and_exit_codes(sandbox_env):
    sandbox, environ = sandbox_env(key_role="org-user")
    done = run_cli(environ)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ok configuration: ")
    assert "warn read_all_workspaces: " in done.stdout
    fix = lines[lines.index(next(l for l in lines if l.startswith("warn read_all_workspaces"))) + 1]
    assert fix.startswith("  fix: give the key the Organization Admin role")
    assert sandbox.api_key not in done.stdout + done.stderr

    as_json = json.loads(run_cli(environ, "--json").stdout)
    assert as_json["ok"] is True
    assert [c["name"] for c in as_json["checks"]] == list(CHECK_NAMES)
    assert set(as_json["checks"][0]) == {"name", "status", "detail", "fix"}

    failing = run_cli({**environ, "LANGSMITH_ORGANIZATION_ID": "nope"}, "--json")
    assert failing.returncode == 1
    assert json.loads(failing.stdout)["ok"] is False
    plus, plus_env = sandbox_env(plan="plus")
    assert run_cli(plus_env).returncode == 1


def test_the_op_job_runs_the_checks_and_fails_when_one_fails(sandbox_env, monkeypatch):
    from langsmith_access.definitions import defs

    job = defs().resolve_job_def("check_langsmith_connection")
    _, environ = sandbox_env()
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key="default")
    assert result.success
    [output_event] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output_event.event_specific_data.metadata
    assert metadata["ok"].value is True
    assert metadata["check/workspace_rbac"].value.startswith("ok")
    assert result.output_for_node("check_connection")["ok"] is True

    monkeypatch.setenv("LANGSMITH_ENDPOINT", "http://127.0.0.1:9")
    failed = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                                    partition_key="default")
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "endpoint" in failure.event_specific_data.error.message
    assert environ["LANGSMITH_API_KEY"] not in str([e.message for e in failed.all_events])

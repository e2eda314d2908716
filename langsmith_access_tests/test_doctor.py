"""The connection doctor against the sandbox in each deployment it plays, through the CLI, and
as the op job ``check_langsmith_connection`` executed in-process."""

from __future__ import annotations

import contextlib
import datetime
import http.server
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import duckdb
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from langsmith_access import doctor
from langsmith_access.defs.doctor import definitions as doctor_definitions
from langsmith_access.doctor import (
    CHECK_NAMES,
    ENDPOINT_FIX,
    ENDPOINT_PATH_FIX,
    GARBLED_FIX,
    HELD_PERMISSION_REFUSED_FIX,
    ORG_SELECTION_FIX,
    ROUTE_MISSING_FIX,
    TRANSIENT_FIX,
    UNREADABLE_ANSWER_FIX,
    _in_the_clear,
    run_checks,
)
from langsmith_access.langsmith import (
    AuthenticationError,
    LangSmithClient,
    LangSmithError,
    NotLangSmithAPIError,
    ProxyRefusalError,
    TransientError,
)
from langsmith_access.provisioning.executor import OrgSnapshot
from langsmith_access.sandbox import FaultConfig, SandboxServer, generate_org
from langsmith_access.settings import ORGS_FILE_VARIABLE, ClientSettings, Secret, SettingsError, load_orgs
from langsmith_access.store.schema import ensure_schema
from langsmith_access.sync.extract import ENRICHED_ROUTE, PER_WORKSPACE_ROUTE, load_members
from langsmith_access_tests.helpers import cli_in_this_process, listings_read_before_the_members
from langsmith_access_tests.reliability.tampering_proxy import Answer, TamperingProxy

CLI = str(Path(sys.executable).with_name("langsmith-access"))
ORG_ID = "00000000-0000-4000-8000-000000000001"


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


def test_a_rate_limit_on_the_first_request_is_waited_out_not_blamed_on_the_key(sandbox_env):
    # LangSmith's fixed window answers 429 without Retry-After until the window ends: the
    # doctor waits it out as a sync would, and every check still passes (a 2-second window
    # here; LangSmith's is a minute).
    sandbox, environ = sandbox_env(faults=FaultConfig(
        rate_limit_per_minute=4, rate_limit_mode="fixed-window", rate_limit_window_seconds=2.0))
    environ = {**environ, "LANGSMITH_ACCESS_RATE_LIMIT_WINDOW_SECONDS": "2"}
    headers = {"X-API-Key": sandbox.api_key, "X-Organization-Id": sandbox.organization_id}
    answers = [requests.get(f"{sandbox.url}/api/v1/orgs/current/info", headers=headers, timeout=5).status_code
               for _ in range(5)]
    assert answers[-1] == 429  # the window is used up when the doctor starts
    assert set(statuses(environ).values()) == {"ok"}
    info = [entry for entry in sandbox.request_log if entry.path == "/api/v1/orgs/current/info"]
    assert len(info) >= 7  # ours, then the doctor's refused probe and its second one


def test_self_hosted_through_api_v1_is_all_ok(sandbox_env):
    sandbox, environ = sandbox_env(deployment="self-hosted")
    environ["LANGSMITH_ENDPOINT"] = sandbox.url + "/api/v1"
    assert set(statuses(environ).values()) == {"ok"}


def test_the_configuration_check_names_the_endpoint_it_reaches_as_normalised(sandbox_env):
    # What the operator set (a trailing /api/v1/) is not what requests go to: the doctor says which.
    sandbox, environ = sandbox_env(deployment="self-hosted")
    configuration = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": sandbox.url + "/api/v1/"}), "configuration")
    assert configuration.status == "ok", configuration
    assert configuration.detail == (f"service key set (not shown), organization {sandbox.organization_id}, "
                                    f"endpoint {sandbox.url}")


def test_a_default_role_key_warns_read_all_workspaces(sandbox_env):
    _, environ = sandbox_env(key_role="org-user")
    result = statuses(environ)
    assert result.pop("read_all_workspaces") == "warn"
    assert set(result.values()) == {"ok"}
    check = next(c for c in run_checks(environ).checks if c.name == "read_all_workspaces")
    assert "Organization Admin" in check.fix and "complete, slower" in check.fix
    assert "manage" in next(c for c in run_checks(environ).checks if c.name == "manage_workspace_members").detail


def test_a_plan_without_rbac_fails_workspace_rbac(sandbox_env):
    sandbox, environ = sandbox_env(plan="plus")
    result = statuses(environ)
    assert result.pop("workspace_rbac") == "fail"
    assert set(result.values()) == {"ok"}
    # The organization check names the org the key answers for, and its plan: the plan is why
    # workspace_rbac fails, so the operator reads it beside the org's name.
    organization = check_of(run_checks(environ), "organization")
    assert organization.detail == f"{sandbox.org.display_name} ({sandbox.organization_id}), plan plus", organization


def test_a_workspace_scoped_key_fails_organization_and_members(sandbox_env):
    sandbox, environ = sandbox_env(key_role="workspace")
    result = statuses(environ)
    assert result["organization"] == "fail" and result["read_members"] == "fail"
    assert [result[n] for n in CHECK_NAMES[:3]] == ["ok", "ok", "ok"]
    assert {result[n] for n in CHECK_NAMES[5:]} == {"skip"}
    # Skipped for the first check that failed: the members' refusal is the organization's.
    skipped = {c.detail for c in run_checks(environ).checks if c.status == "skip"}
    assert skipped == {"not run: organization failed"}
    # What to fix: the key's scope, or the org id (a key of another org, or region, is refused alike).
    organization = check_of(run_checks(environ), "organization")
    assert "it is a workspace-scoped key, or LANGSMITH_ORGANIZATION_ID is not its organization" in (
        organization.detail), organization
    assert organization.fix == (f"use an organization-scoped service key of organization {sandbox.organization_id} "
                                "(or set LANGSMITH_ORGANIZATION_ID to the key's organization; check the region too)")


def test_a_wrong_endpoint_fails_endpoint_and_skips_the_rest(sandbox_env, refused_port):
    sandbox, environ = sandbox_env(deployment="self-hosted")
    environ["LANGSMITH_ENDPOINT"] = sandbox.url + "/settings"  # the web UI: HTML with 200
    result = statuses(environ)
    assert result["configuration"] == "ok" and result["endpoint"] == "fail"
    assert {result[n] for n in CHECK_NAMES[2:]} == {"skip"}
    environ["LANGSMITH_ENDPOINT"] = f"http://127.0.0.1:{refused_port}"
    diagnosis = run_checks(environ)
    assert check_of(diagnosis, "endpoint").status == "fail"
    # Each skipped check says which failure it waits on.
    assert {(c.status, c.detail) for c in diagnosis.checks[2:]} == {("skip", "not run: endpoint failed")}
    assert "skip authentication: not run: endpoint failed" in diagnosis.text()


def test_bad_configuration_fails_configuration(sandbox_env):
    _, environ = sandbox_env()
    for name, value, fix in (("LANGSMITH_API_KEY", "lsv2_pt_personal_token", "and set LANGSMITH_API_KEY to it"),
                             ("LANGSMITH_ORGANIZATION_ID", "not-a-uuid",
                              "set LANGSMITH_ORGANIZATION_ID to your organization's UUID"),
                             ("LANGSMITH_ENDPOINT", "api.smith.langchain.com", ENDPOINT_FIX)):
        result = statuses({**environ, name: value})
        assert result["configuration"] == "fail", name
        assert {result[n] for n in CHECK_NAMES[1:]} == {"skip"}
        assert fix in check_of(run_checks({**environ, name: value}), "configuration").fix, name


def test_the_fixes_name_each_regions_api_host_and_the_key_to_create(sandbox_env):
    # The hosts as langsmith-api.md lists them: an operator copies them from the fix.
    _, environ = sandbox_env()
    regions = ("https://api.smith.langchain.com (US)", "https://eu.api.smith.langchain.com (EU)",
               "https://apac.api.smith.langchain.com (APAC)", "https://aws.api.smith.langchain.com (AWS US)")
    bad_url = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": "api.smith.langchain.com"}), "configuration")
    assert all(region in bad_url.fix for region in regions), bad_url
    unresolved = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": "https://langsmith.example.invalid"}),
                          "endpoint")
    assert ("US: api.smith.langchain.com, EU: eu.api.smith.langchain.com, APAC: apac.api.smith.langchain.com, "
            "AWS US: aws.api.smith.langchain.com") in unresolved.fix, unresolved
    refused = check_of(run_checks({**environ, "LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32}), "authentication")
    assert ("create an organization-scoped service key (Settings > API Keys > Service Keys, organization "
            "scope, Organization Admin role) and set LANGSMITH_API_KEY to it") in refused.fix, refused
    # A key of another region (a US key sent to the EU host) or of another install is refused
    # alike (401): the fix says to check which LangSmith the key belongs to, before making one.
    assert refused.fix.startswith("check the key is a current, unrevoked service key of this LangSmith "
                                  "(region or self-hosted install), and that LANGSMITH_ENDPOINT names the "
                                  "LangSmith the key belongs to"), refused
    assert refused.detail.startswith("LangSmith refused the API key (401: "), refused


def test_every_problem_of_the_variables_is_named_in_one_run(sandbox_env, monkeypatch):
    # Settings stop at the first problem; the doctor names them all, each with its fix, so one
    # run shows everything to correct rather than one problem a run.
    _, environ = sandbox_env()
    for name in [n for n in os.environ if n.startswith(("LANGSMITH", "LANGCHAIN"))]:
        monkeypatch.delenv(name)
    key_and_org = {**environ, "LANGSMITH_API_KEY": "lsv2_pt_personal_token", "LANGSMITH_ORGANIZATION_ID": "not-a-uuid"}
    everything = {**key_and_org, "LANGSMITH_ENDPOINT": "api.smith.langchain.com",
                  "LANGSMITH_ACCESS_TIMEOUT_SECONDS": "soon"}
    for broken, named in ((key_and_org, ["LANGSMITH_API_KEY", "LANGSMITH_ORGANIZATION_ID"]),
                          (everything, ["LANGSMITH_ENDPOINT", "LANGSMITH_API_KEY", "LANGSMITH_ORGANIZATION_ID",
                                        "LANGSMITH_ACCESS_TIMEOUT_SECONDS"])):
        for name, value in broken.items():
            monkeypatch.setenv(name, value)
        for diagnosis in (run_checks(broken), run_checks()):
            configuration = check_of(diagnosis, "configuration")
            assert configuration.status == "fail" and not diagnosis.ok
            assert all(name in configuration.detail for name in named), configuration.detail
            assert "and set LANGSMITH_API_KEY to it" in configuration.fix
            assert "set LANGSMITH_ORGANIZATION_ID to your organization's UUID" in configuration.fix
            assert "personal_token" not in configuration.detail + configuration.fix
        done = cli_in_this_process("doctor", "--json")  # through the org the CLI chooses
        assert done.returncode == 1, done.stderr
        [configuration, *rest] = json.loads(done.stdout)["checks"]
        assert configuration["status"] == "fail" and {check["status"] for check in rest} == {"skip"}
        assert all(name in configuration["detail"] for name in named), configuration["detail"]
        if "LANGSMITH_ENDPOINT" in named:
            assert ENDPOINT_FIX in configuration["fix"]
            assert "correct LANGSMITH_ACCESS_TIMEOUT_SECONDS as the message says" in configuration["fix"]


def test_the_doctor_answers_promptly_whatever_the_sync_waits(monkeypatch):
    # One retry at most and a 10 s read timeout, however patient the sync is configured to be.
    seen = []

    def factory(settings):
        seen.append(settings)
        raise RuntimeError("no call needed")

    environ = {"LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32, "LANGSMITH_ORGANIZATION_ID": ORG_ID,
               "LANGSMITH_ACCESS_TIMEOUT_SECONDS": "120", "LANGSMITH_ACCESS_MAX_RETRIES": "9"}
    with pytest.raises(RuntimeError, match="no call needed"):
        run_checks(environ, client_factory=factory)
    assert (seen[0].read_timeout_seconds, seen[0].max_retries) == (10.0, 1)
    # A shorter timeout is kept: a server slower than it fails the sync, so the doctor must see it fail.
    with pytest.raises(RuntimeError, match="no call needed"):
        run_checks({**environ, "LANGSMITH_ACCESS_TIMEOUT_SECONDS": "2.5"}, client_factory=factory)
    assert seen[1].read_timeout_seconds == 2.5


def test_a_langsmith_slower_than_the_doctor_waits_is_told_the_sync_waits_longer(sandbox_env, monkeypatch):
    # The doctor waits 10 s for an answer, a sync LANGSMITH_ACCESS_TIMEOUT_SECONDS (30 s unset): a
    # LangSmith answering in between fails the doctor yet syncs. "Run the doctor again in a minute"
    # alone would send the operator round in circles: the fix says both waits. (Shortened here.)
    monkeypatch.setattr(doctor, "DOCTOR_TIMEOUT_SECONDS", 0.3)
    sandbox, environ = sandbox_env(faults=FaultConfig(hang_rate=1.0, hang_seconds=1.0))
    check = check_of(run_checks(environ), "endpoint")
    assert check.status == "fail" and "no answer within 0.3 s" in check.detail, check
    assert "the doctor waits 0.3 s for an answer, a sync 30 s (LANGSMITH_ACCESS_TIMEOUT_SECONDS)" in check.fix, check
    # A sync no more patient than the doctor fails alike: nothing more to say.
    patient_as_the_doctor = {**environ, "LANGSMITH_ACCESS_TIMEOUT_SECONDS": "0.3"}
    assert check_of(run_checks(patient_as_the_doctor), "endpoint").fix == TRANSIENT_FIX


@pytest.mark.parametrize(("endpoint", "warned"), [
    ("http://langsmith.example.com", True), ("http://10.0.0.5:1984", True), ("https://langsmith.example.com", False),
    ("http://localhost:1984", False), ("http://127.0.0.1:1984", False), ("http://[::1]:1984", False),
])
def test_plain_http_is_warned_of_only_where_it_crosses_a_network(endpoint, warned):
    assert _in_the_clear(endpoint) is warned


def test_a_wrong_key_fails_authentication(sandbox_env):
    _, environ = sandbox_env()
    result = statuses({**environ, "LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32})
    assert result["endpoint"] == "ok" and result["authentication"] == "fail"


def test_an_api_that_answers_only_errors_fails_the_endpoint_not_the_key(sandbox_env):
    # LangSmith overloaded or down behind a working frontend: a 503 (or 429) on every try says
    # nothing about the key, so authentication is not judged.
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/orgs/current/info", unavailable)
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    endpoint = check_of(diagnosis, "endpoint")
    assert endpoint.status == "fail" and "503" in endpoint.detail and endpoint.fix == TRANSIENT_FIX, endpoint
    assert {c.status for c in diagnosis.checks if c.name not in ("configuration", "endpoint")} == {"skip"}


def run_cli(environ, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGSMITH")} | environ
    return subprocess.run([CLI, "doctor", *args], capture_output=True, text=True, env=env, timeout=120)


def test_an_endpoint_read_from_langchain_endpoint_is_said_to_come_from_there(sandbox_env):
    # LANGSMITH_ENDPOINT unset, LANGCHAIN_ENDPOINT (a tracing setup's) is read, as LangChain's
    # SDKs do. An operator who never set an endpoint must see where the one checked came from,
    # or a wrong one looks like the doctor's invention; with LANGSMITH_ENDPOINT set, nothing is said.
    sandbox, environ = sandbox_env(deployment="self-hosted")
    tracing = {k: v for k, v in environ.items() if k != "LANGSMITH_ENDPOINT"} | {
        "LANGCHAIN_ENDPOINT": sandbox.url + "/foo"}
    said = "from LANGCHAIN_ENDPOINT (LANGSMITH_ENDPOINT is unset)"
    configuration = check_of(run_checks(tracing), "configuration")
    assert configuration.status == "ok" and f"endpoint {sandbox.url}/foo {said}" in configuration.detail, configuration
    result = run_cli(tracing, "--json")  # the CLI reads the variables as the default org's
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert result.returncode == 1 and said in checks["configuration"]["detail"], result.stdout
    assert checks["endpoint"]["status"] == "fail" and "set LANGSMITH_ENDPOINT" in checks["endpoint"]["fix"]
    both = {**tracing, "LANGSMITH_ENDPOINT": sandbox.url}
    assert "LANGCHAIN_ENDPOINT" not in check_of(run_checks(both), "configuration").detail


BASE_PATH = "/langsmith"


@pytest.fixture
def under_a_base_path(sandbox_env):
    """A self-hosted sandbox served under ``BASE_PATH`` of a host whose other paths answer a web
    page (Helm's ``basePath``: the install's nginx serves everything under it, another site the
    rest). Yields the host's root URL and the sandbox's environment."""
    sandbox, environ = sandbox_env(deployment="self-hosted")
    upstream = requests.Session()

    class UnderABasePath(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith(BASE_PATH + "/"):
                answer = upstream.get(sandbox.url + self.path[len(BASE_PATH):], timeout=10,
                                      headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                status, content_type, body = answer.status_code, answer.headers["Content-Type"], answer.content
                headers = {k: v for k, v in answer.headers.items() if k.lower().startswith("x-")}
            else:
                status, content_type, body, headers = 200, "text/html", b"<html>another site</html>", {}
            self.send_response(status)
            for name, value in {"Content-Type": content_type, **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), UnderABasePath)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", environ
    server.shutdown()
    server.server_close()
    upstream.close()


def test_a_self_hosted_install_under_a_base_path_passes_with_it_and_is_named_without_it(under_a_base_path):
    root, environ = under_a_base_path
    for endpoint in (f"{root}{BASE_PATH}/api/v1", f"{root}{BASE_PATH}/api/", f"{root}{BASE_PATH}"):
        assert set(statuses({**environ, "LANGSMITH_ENDPOINT": endpoint}).values()) == {"ok"}, endpoint
    # Without the base path the host's other site answers its page: the fix must say a base path
    # belongs in LANGSMITH_ENDPOINT, or an operator who wrote https://<host>/api/v1 as told is stuck.
    for endpoint in (root, f"{root}/api/v1"):
        check = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": endpoint}), "endpoint")
        assert check.status == "fail" and "not a LangSmith API" in check.detail, check
        assert "/<basePath>/api/v1" in check.fix, check


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


# The checks DESIGN.md section 8 names, in its order: written out here, not taken from
# doctor.CHECK_NAMES, so that a renamed or reordered check breaks the public interface loudly.
DOCUMENTED_CHECKS = ["configuration", "endpoint", "authentication", "organization", "read_members",
                     "read_all_workspaces", "read_roles", "manage_workspace_members", "workspace_rbac"]


def test_the_cli_tells_the_documented_checks_in_the_documented_order(sandbox_env):
    # Operators and scripts read the lines (and the JSON list) by name and position: one line per
    # check, each of DESIGN.md's checks once, in its order, in both forms.
    _, environ = sandbox_env()
    done = run_cli(environ)
    assert done.returncode == 0, done.stderr
    told = [line.split(":")[0].split()[1] for line in done.stdout.splitlines() if not line.startswith(" ")]
    assert told == DOCUMENTED_CHECKS
    as_json = json.loads(run_cli(environ, "--json").stdout)
    assert [check["name"] for check in as_json["checks"]] == DOCUMENTED_CHECKS


def test_all_orgs_with_the_one_org_of_the_variables_counts_it_as_one(sandbox_env):
    sandbox, environ = sandbox_env()
    done = run_cli(environ, "--all-orgs")
    assert done.returncode == 0 and done.stdout.startswith("== default ==\nok configuration: "), done
    assert done.stderr.strip().endswith("No check failed for the 1 org."), done.stderr
    failing = run_cli({**environ, "LANGSMITH_ORGANIZATION_ID": "nope"}, "--all-orgs")
    assert failing.returncode == 1 and failing.stderr.strip().endswith("A check failed for 1 of 1 org: default.")


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
    # The run page's failure says what failed and what to do, not only the check's name.
    described = failure.event_specific_data.user_failure_data.description
    assert "127.0.0.1:9" in described and "Fix: " in described, described


# ------------------------------------------------------------------ answers a proxy puts in place

ENRICHED = "/api/v1/platform/orgs/current/members"
ROLES = "/api/v1/orgs/current/roles"
ACTIVE = "/api/v1/orgs/current/members/active"
PERMISSION_FIX_WORDS = "organization:read"


def json_answer(status: int, body: bytes):
    """A tamper that puts this JSON answer in place of the server's."""
    def tamper(answer: Answer) -> Answer:
        return answer.replace(status=status, headers={"Content-Type": "application/json"}, body=body)
    return tamper


refused = json_answer(403, b'{"error":"forbidden"}')
unavailable = json_answer(503, b'{"detail":"Service Unavailable"}')
missing = json_answer(404, b'{"detail":"Not Found"}')


def web_page(answer: Answer) -> Answer:
    return answer.replace(status=200, headers={"Content-Type": "text/html"},
                          body=b"<!doctype html><html><body>LangSmith</body></html>")


def garbled(answer: Answer) -> Answer:
    return answer.replace(body=answer.body[: len(answer.body) // 2])


def partial(answer: Answer) -> Answer:
    return answer.replace(headers={**answer.headers, "X-Members-List-All-Workspaces": "false"})


def on(path: str, tamper):
    return lambda answer: tamper(answer) if answer.path == path else answer


def check_of(diagnosis, name: str):
    return next(c for c in diagnosis.checks if c.name == name)


def sync_reads_members_via(proxy: TamperingProxy, sandbox: SandboxServer, tmp_path) -> str:
    """How the sync's member read ends through ``proxy``: the route it used, or "fails"."""
    client = LangSmithClient(ClientSettings(
        api_key=Secret(sandbox.api_key), organization_id=sandbox.organization_id, endpoint=proxy.url,
        read_timeout_seconds=5, max_retries=0,
    ))
    with client, duckdb.connect(str(tmp_path / "scratch.duckdb")) as conn:
        ensure_schema(conn)
        listings_read_before_the_members(conn, sandbox.org, sync_id="doctor-check")
        try:
            read = load_members(client, conn, sync_id="doctor-check",
                                shared_workspace_ids=[w.id for w in sandbox.org.shared_workspaces()])
        except LangSmithError:
            return "fails"
    return read.route


@pytest.mark.parametrize("tamper, verdict, fix_says", [
    (refused, "fail", PERMISSION_FIX_WORDS),  # the sync stops on a 403: not a reason to fall back
    (unavailable, "fail", TRANSIENT_FIX),
    (missing, "warn", "newer LangSmith"),  # the route is not there: the sync reads each workspace
    (web_page, "warn", "newer LangSmith"),
    (partial, "warn", "Organization Admin"),
], ids=["403", "503", "404", "html", "partial"])
def test_read_all_workspaces_warns_exactly_where_the_sync_falls_back(sandbox_env, tmp_path, tamper,
                                                                     verdict, fix_says):
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on(ENRICHED, tamper)
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
        sync_read = sync_reads_members_via(proxy, sandbox, tmp_path)
    check = check_of(diagnosis, "read_all_workspaces")
    assert check.status == verdict, check
    assert fix_says in check.fix, check
    assert sync_read == ("fails" if verdict == "fail" else PER_WORKSPACE_ROUTE)
    assert diagnosis.ok is (verdict == "warn")
    if verdict == "fail":
        assert "newer LangSmith" not in check.fix and "the sync fails" in check.detail


def without_the_all_workspaces_header(answer: Answer) -> Answer:
    """An install that does not say whether the page lists every workspace."""
    return answer.replace(headers={k: v for k, v in answer.headers.items()
                                   if k != "X-Members-List-All-Workspaces"})


@pytest.mark.parametrize("key_role, verdict, route", [
    ("org-admin", "ok", ENRICHED_ROUTE),
    ("org-user", "warn", PER_WORKSPACE_ROUTE),  # its listing shows only some workspaces' roles
])
def test_a_listing_that_does_not_say_it_is_whole_is_trusted_only_with_organization_manage(
        sandbox_env, tmp_path, key_role, verdict, route):
    sandbox, environ = sandbox_env(key_role=key_role)
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on(ENRICHED, without_the_all_workspaces_header)
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
        sync_read = sync_reads_members_via(proxy, sandbox, tmp_path)
        with LangSmithClient(ClientSettings(
            api_key=Secret(sandbox.api_key), organization_id=sandbox.organization_id,
            endpoint=proxy.url, read_timeout_seconds=5, max_retries=0,
        )) as client:
            snapshot = OrgSnapshot.read(client)  # provisioning's whole-org read, same rule
    check = check_of(diagnosis, "read_all_workspaces")
    assert check.status == verdict, check
    assert sync_read == route
    assert (snapshot is not None) is (route == ENRICHED_ROUTE)
    if verdict == "warn":
        assert "no X-Members-List-All-Workspaces header" in check.detail, check
        assert "the key lacks organization:manage" in check.detail, check


def test_a_wrong_base_path_fails_the_endpoint_and_names_langsmith_endpoint(sandbox_env):
    sandbox, environ = sandbox_env()
    environ["LANGSMITH_ENDPOINT"] = sandbox.url + "/foo"  # a JSON API answering 404 {"detail": "Not Found"}
    diagnosis = run_checks(environ)
    result = {c.name: c.status for c in diagnosis.checks}
    assert result["configuration"] == "ok" and result["endpoint"] == "fail"
    assert {result[n] for n in CHECK_NAMES[2:]} == {"skip"}
    endpoint = check_of(diagnosis, "endpoint")
    assert "404" in endpoint.detail and sandbox.url + "/foo" in endpoint.detail
    assert endpoint.fix == ENDPOINT_PATH_FIX
    assert "LANGSMITH_ENDPOINT" in endpoint.fix and "/api/v1" in endpoint.fix
    # Beside the US host: the EU one (an EU org's key works only there) and a self-hosted install's
    # address, with and without a base path; and /api, which is accepted below, is not "no other path".
    for example in ("https://api.smith.langchain.com (US)", "https://eu.api.smith.langchain.com (EU)",
                    "https://langsmith.example.com/api/v1", "https://example.com/<basePath>/api/v1", "(or /api)"):
        assert example in endpoint.fix, endpoint.fix
    # The accepted forms still pass: the host root and the root with /api/v1 or /api, slash or not.
    for accepted in (sandbox.url, sandbox.url + "/api/v1/", sandbox.url + "/api"):
        assert check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": accepted}), "endpoint").status == "ok"


@pytest.mark.parametrize("check, path, tamper, fix", [
    ("read_roles", ROLES, web_page, NotLangSmithAPIError.fix),
    ("read_roles", ROLES, garbled, NotLangSmithAPIError.fix),  # rule 3: a body that does not parse
    ("read_roles", ROLES, unavailable, TRANSIENT_FIX),
    # The organization info answered at this endpoint: a 404 later is a route missing behind a
    # right base path, so changing LANGSMITH_ENDPOINT is not the fix.
    ("read_roles", ROLES, missing, ROUTE_MISSING_FIX),
    ("read_members", ACTIVE, web_page, NotLangSmithAPIError.fix),
    ("read_members", ACTIVE, garbled, NotLangSmithAPIError.fix),  # rule 3: a body that does not parse
    ("read_members", ACTIVE, missing, ROUTE_MISSING_FIX),
    ("read_all_workspaces", "/api/v1/workspaces", missing, ROUTE_MISSING_FIX),
], ids=["roles-html", "roles-garbled", "roles-503", "roles-404", "members-html", "members-garbled", "members-404",
        "workspaces-404"])
def test_a_read_that_fails_for_another_reason_than_permission_gets_that_fix(sandbox_env, check, path,
                                                                            tamper, fix):
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on(path, tamper)
        failed = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url}), check)
    assert failed.status == "fail" and failed.fix == fix, failed
    assert PERMISSION_FIX_WORDS not in failed.fix


def test_a_key_managing_members_through_a_custom_role_warns_of_restricted_roles(sandbox_env):
    sandbox, environ = sandbox_env(key_role="member-manager")
    assert check_of(run_checks(environ), "manage_workspace_members").status == "ok"  # none restricted
    restricted = next(r for r in sandbox.org.roles.values() if r.is_custom and r.display_name != "Member Manager")
    restricted.is_restricted = True
    check = check_of(run_checks(environ), "manage_workspace_members")
    assert check.status == "warn", check
    assert "'Member Manager', not the built-in Workspace Admin" in check.detail
    assert repr(restricted.display_name) in check.detail and "built-in Workspace Admin" in check.fix
    # Where the key may manage members in some workspaces only, the warn of those says it too.
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/workspaces", lambda answer: answer.with_json(
            [{**w, "permissions": []} if i == 0 else w for i, w in enumerate(answer.json())]))
        partial = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url}), "manage_workspace_members")
    assert partial.status == "warn" and "not in: " in partial.detail, partial
    assert "'Member Manager', not the built-in Workspace Admin" in partial.detail, partial
    assert repr(restricted.display_name) in partial.detail
    # A key holding the built-in Admin there (the default) has nothing to warn of.
    sandbox.api.key_role = "org-user"
    assert check_of(run_checks(environ), "manage_workspace_members").status == "ok"


def test_a_key_in_what_langsmith_names_never_reaches_the_doctors_output(sandbox_env):
    # Names come from the org's own data: a key pasted into the organization's name (or sent back
    # there by something on the way) is cut to its prefix in every line and in --json.
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/orgs/current/info",
                          lambda answer: answer.with_json({**answer.json(), "display_name": f"Acme {sandbox.api_key}"}))
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    check = check_of(diagnosis, "organization")
    assert check.status == "ok" and "Acme lsv2_***" in check.detail, check
    shown = diagnosis.text() + diagnosis.to_json()
    assert sandbox.api_key not in shown and sandbox.api_key[8:24] not in shown


def test_a_piece_of_the_key_quoted_without_its_prefix_never_reaches_the_doctors_output(sandbox_env):
    # The key's secret part, or its tail, quoted on its own: no prefix to recognise it by, yet a
    # piece of the key all the same.
    sandbox, environ = sandbox_env()
    secret = sandbox.api_key.removeprefix("lsv2_sk_")
    # The last: 12 characters, the shortest run cut (shorter ones occur by chance in ids).
    for piece in (secret[:32], secret[-20:], secret[7:19]):
        with TamperingProxy(sandbox.url) as proxy:
            proxy.tamper = on("/api/v1/orgs/current/info",
                              lambda answer, piece=piece: answer.with_json({**answer.json(),
                                                                            "display_name": f"Acme {piece}"}))
            diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
        check = check_of(diagnosis, "organization")
        assert check.status == "ok" and check.detail.startswith("Acme *** ("), check
        shown = diagnosis.text() + diagnosis.to_json()
        assert piece[:12] not in shown and piece[-12:] not in shown


def test_an_org_info_without_an_id_warns_that_the_org_could_not_be_confirmed(sandbox_env):
    # The schema lets OrganizationInfo.id be null: nothing to compare the configured id with.
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/orgs/current/info",
                          lambda answer: answer.with_json({**answer.json(), "id": None}))
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    result = {c.name: c.status for c in diagnosis.checks}
    assert result.pop("organization") == "warn"
    assert set(result.values()) == {"ok"}  # the other checks still run: the key is accepted
    check = check_of(diagnosis, "organization")
    assert "names no id" in check.detail and sandbox.organization_id in check.detail
    assert "LANGSMITH_ORGANIZATION_ID" in check.fix


@pytest.mark.parametrize("check, path", [("read_roles", ROLES), ("read_members", ACTIVE)])
def test_a_refused_read_gets_the_permission_fix(sandbox_env, check, path):
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on(path, refused)
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    failed = check_of(diagnosis, check)
    assert failed.status == "fail" and PERMISSION_FIX_WORDS in failed.fix, failed
    if check == "read_members":  # the members listing every sync starts with: its route is not judged
        assert check_of(diagnosis, "read_all_workspaces").detail == "not run: read_members failed"


def test_checks_are_told_in_their_order_when_one_in_the_middle_is_skipped(sandbox_env):
    # The members listing refused: the workspace check after it is skipped while the later ones
    # run, and every line still comes in the order of CHECK_NAMES.
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on(ACTIVE, refused)
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    assert check_of(diagnosis, "read_all_workspaces").status == "skip"
    assert check_of(diagnosis, "workspace_rbac").status == "ok"
    told = [line.split(":")[0].split()[1] for line in diagnosis.text().splitlines() if not line.startswith(" ")]
    assert told == [c["name"] for c in diagnosis.to_dict()["checks"]] == list(CHECK_NAMES)


def test_members_are_counted_only_when_langsmith_says_how_many(sandbox_env):
    sandbox, environ = sandbox_env()
    active = len(sandbox.org.members)
    assert check_of(run_checks(environ), "read_members").detail == (
        f"organization members can be listed ({active} active)")
    with TamperingProxy(sandbox.url) as proxy:  # an install that sends no X-Pagination-Total
        proxy.tamper = on(ACTIVE, lambda answer: answer.replace(
            headers={k: v for k, v in answer.headers.items() if k != "X-Pagination-Total"}))
        check = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url}), "read_members")
    assert check.status == "ok" and check.detail == "organization members can be listed", check


def test_an_organization_without_shared_workspaces_has_no_membership_to_manage_yet(sandbox_env):
    sandbox, environ = sandbox_env(key_role="org-user")  # no organization:manage: the listing decides
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/workspaces",
                          lambda answer: answer.with_json([w for w in answer.json() if w.get("is_personal")]))
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    check = check_of(diagnosis, "manage_workspace_members")
    assert check.status == "ok" and "no shared workspace" in check.detail, check
    assert diagnosis.ok


@pytest.fixture
def orgs_file(sandbox_env, tmp_path, monkeypatch):
    """This process's environment as the CLI's, with an orgs file of two orgs (both entries on one
    sandbox) and their keys, no other LANGSMITH_ variable; the file, for tests to rewrite."""
    sandbox, _ = sandbox_env()
    path = tmp_path / "orgs.yaml"
    path.write_text(
        f"- slug: us\n  organization_id: {sandbox.organization_id}\n  endpoint: {sandbox.url}\n"
        "  api_key_env: LANGSMITH_API_KEY_US\n"
        f"- slug: eu\n  organization_id: 00000000-0000-4000-8000-000000000002\n  endpoint: {sandbox.url}\n"
        "  api_key_env: LANGSMITH_API_KEY_EU\n"
    )
    for name in list(os.environ):
        if name.startswith("LANGSMITH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(ORGS_FILE_VARIABLE, str(path))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "data" / "langsmith_access.duckdb"))
    monkeypatch.setenv("LANGSMITH_API_KEY_US", sandbox.api_key)
    monkeypatch.setenv("LANGSMITH_API_KEY_EU", sandbox.api_key)
    return path


@pytest.mark.parametrize("org_args", [[], ["--org", "apac"]], ids=["no-org", "unknown-org"])
def test_an_org_that_cannot_be_chosen_fails_configuration_as_json(orgs_file, org_args):
    done = cli_in_this_process("doctor", "--json", *org_args)
    assert done.returncode == 1, done.stderr
    diagnosis = json.loads(done.stdout)
    assert diagnosis["ok"] is False
    [configuration, *rest] = diagnosis["checks"]
    assert configuration["name"] == "configuration" and configuration["status"] == "fail"
    assert "us, eu" in configuration["detail"] and configuration["fix"] == ORG_SELECTION_FIX
    assert {c["status"] for c in rest} == {"skip"}
    lines = cli_in_this_process("doctor", *org_args)
    assert lines.returncode == 1 and lines.stdout.startswith("fail configuration: ")
    assert f"  fix: {ORG_SELECTION_FIX}" in lines.stdout.splitlines()


def test_all_orgs_as_json_keeps_its_shape_when_the_orgs_file_is_refused(orgs_file):
    # `doctor --all-orgs --json` promises {"ok", "orgs": [...]}: a file it cannot use lists no
    # org, and its configuration check says why.
    orgs_file.write_text(orgs_file.read_text().replace("slug: eu", "slug: us"))
    done = cli_in_this_process("doctor", "--all-orgs", "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["orgs"] == []
    [configuration, *_] = report["checks"]
    assert configuration["status"] == "fail" and "already used" in configuration["detail"]


def test_doctor_help_names_every_key_its_json_prints(orgs_file):
    # README: --json prints {"ok", "checks", "warnings"}; a script's author reads `--help` for that.
    help_text = " ".join(cli_in_this_process("doctor", "--help").stdout.split())
    for args in (["--org", "us"], ["--all-orgs"]):
        report = json.loads(cli_in_this_process("doctor", "--json", *args).stdout)
        assert [key for key in report if f'"{key}"' not in help_text] == [], (args, help_text)


def test_an_orgs_file_error_gets_a_fix_naming_the_entry_or_the_org_s_key_variable(orgs_file, monkeypatch):
    def configuration_fix(slug: str = "us") -> str:
        done = cli_in_this_process("doctor", "--json", "--org", slug)
        assert done.returncode == 1, done.stderr
        return json.loads(done.stdout)["checks"][0]["fix"]

    def configuration_of(slug: str) -> str:
        done = cli_in_this_process("doctor", "--json", "--org", slug)
        return json.loads(done.stdout)["checks"][0]["status"]

    # One org's key variable, unset or holding the wrong kind of key, is that org's problem only.
    text = orgs_file.read_text()
    orgs_file.write_text(text.replace("LANGSMITH_API_KEY_EU", "LANGSMITH_API_KEY_APAC"))
    unset = configuration_fix("eu")
    assert "LANGSMITH_API_KEY_APAC" in unset and "set LANGSMITH_API_KEY " not in unset
    assert configuration_of("us") == "ok"

    orgs_file.write_text(text)
    monkeypatch.setenv("LANGSMITH_API_KEY_EU", "lsv2_pt_" + "0" * 32)  # a personal token
    assert "set LANGSMITH_API_KEY_EU to it" in configuration_fix("eu")
    assert configuration_of("us") == "ok"

    monkeypatch.setenv("LANGSMITH_API_KEY_EU", "lsv2_sk_" + "0" * 32)
    orgs_file.write_text(text.replace("00000000-0000-4000-8000-000000000002", "not-a-uuid"))
    entry = configuration_fix()
    assert "entry of the orgs file" in entry and "variable" not in entry

    monkeypatch.setenv(ORGS_FILE_VARIABLE, str(orgs_file.with_name("missing.yaml")))  # a file not there
    assert configuration_fix() == f"point {ORGS_FILE_VARIABLE} at the YAML list of your orgs, or unset it"


@pytest.mark.parametrize("status, authentication", [(200, "ok"), (400, "skip"), (422, "skip"), (405, "skip")])
def test_an_organization_info_that_is_no_refusal_does_not_blame_the_key(sandbox_env, status, authentication):
    # A 200 that is no organization still accepted the key; a 400, 422 or 405 neither accepts nor refuses it.
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/orgs/current/info", lambda answer: answer.with_json([]).replace(status=status))
        checks = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    organization = check_of(checks, "organization")
    assert organization.status == "fail" and organization.fix == GARBLED_FIX, organization
    assert "workspace-scoped" not in organization.detail
    assert check_of(checks, "authentication").status == authentication


def test_an_orgs_checks_name_its_own_key_variable_and_entry(orgs_file, monkeypatch):
    monkeypatch.setenv("LANGSMITH_API_KEY_EU", "lsv2_sk_" + "0" * 32)  # a key the sandbox refuses
    done = cli_in_this_process("doctor", "--json", "--org", "eu")
    assert done.returncode == 1, done.stderr
    authentication = next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "authentication")
    assert authentication["status"] == "fail" and "LANGSMITH_API_KEY_EU" in authentication["fix"], authentication
    # Written for the single-org variables, every line names eu's own instead.
    assert not re.search(r"\bLANGSMITH_(API_KEY|ENDPOINT|ORGANIZATION_ID)\b", done.stdout), done.stdout


def test_the_op_job_names_the_partition_org_s_own_settings(orgs_file, monkeypatch):
    # From the UI, as on the command line: an org of an orgs file is told of its own key variable
    # and entry, not of the single-org variables it does not use.
    from langsmith_access.definitions import defs

    monkeypatch.setenv("LANGSMITH_API_KEY_EU", "lsv2_sk_" + "0" * 32)  # a key the sandbox refuses
    job = defs().resolve_job_def("check_langsmith_connection")
    failed = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                                    partition_key="eu")
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    report = failure.event_specific_data.error.message + str(
        {k: getattr(v, "value", v) for k, v in failure.step_failure_data.user_failure_data.metadata.items()})
    assert "authentication" in report and "LANGSMITH_API_KEY_EU" in report, report
    assert not re.search(r"\bLANGSMITH_(API_KEY|ENDPOINT|ORGANIZATION_ID)\b", report), report


def test_the_op_job_warns_of_an_org_folder_the_orgs_file_no_longer_names_that_holds_work(orgs_file, tmp_path,
                                                                                       monkeypatch):
    # data/gone/ holds an org's open request, and no entry of the orgs file names it: the doctor
    # run of a listed org says so (a warning: the run's own org is fine, so the run succeeds).
    from langsmith_access.definitions import defs

    gone = tmp_path / "data" / "gone"
    gone.mkdir(parents=True)
    with duckdb.connect(str(gone / "langsmith_access.duckdb")) as conn:
        conn.execute("CREATE TABLE main.sync_runs (status VARCHAR, organization_id VARCHAR, finished_at TIMESTAMPTZ)")
        conn.execute("INSERT INTO main.sync_runs VALUES ('succeeded', '00000000-0000-4000-8000-0000000000cc', now())")
        conn.execute("CREATE TABLE main.provisioning_requests (request_id VARCHAR, action VARCHAR, status VARCHAR, "
                     "expires_at TIMESTAMPTZ, parent_request_id VARCHAR)")
        conn.execute("INSERT INTO main.provisioning_requests VALUES ('p1', 'grant', 'pending', NULL, NULL)")
    job = defs().resolve_job_def("check_langsmith_connection")
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(instance=instance, partition_key="us")
    assert result.success
    [warning] = result.output_for_node("check_connection")["warnings"]
    assert warning.startswith(f"{gone} holds organization 00000000-0000-4000-8000-0000000000cc's database"), warning
    assert "with 1 open request" in warning, warning
    logged = [entry for entry in instance.all_logs(result.run_id) if entry.user_message == f"warning: {warning}"]
    assert [entry.level for entry in logged] == [logging.WARNING]
    [output_event] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output_event.event_specific_data.metadata
    assert metadata["ok"].value is True
    assert metadata["warnings"].value == f"- {warning}"

    # The orgs file broken after the run took its org (between its resource and its op): the run's
    # own org is still checked, and the look beside it is passed over.
    def broken():
        raise SettingsError(f"The orgs file {orgs_file} is not valid YAML")

    monkeypatch.setattr(doctor_definitions, "deployment_orgs", broken)
    again = job.execute_in_process(instance=instance, partition_key="us")
    assert again.success and again.output_for_node("check_connection")["warnings"] == []


def test_a_proxy_refusal_gets_the_proxy_fix_not_the_keys_roles(sandbox_env):
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on(ROLES, lambda answer: answer.replace(
            status=403, headers={"Content-Type": "text/html"}, body=b"<html>Access denied</html>"))
        failed = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url}), "read_roles")
    assert failed.status == "fail" and failed.fix.startswith("a proxy or firewall"), failed
    assert PERMISSION_FIX_WORDS not in failed.fix


def test_an_orgs_unreachable_endpoint_is_named_as_its_entry(orgs_file, refused_port):
    us, eu = orgs_file.read_text().split("- slug: eu")
    eu = re.sub(r"endpoint: \S+", f"endpoint: http://127.0.0.1:{refused_port}", eu)
    orgs_file.write_text(f"{us}- slug: eu{eu}")
    done = cli_in_this_process("doctor", "--org", "eu")
    assert done.returncode == 1 and done.stdout.startswith("ok configuration"), done.stdout + done.stderr
    assert f"the endpoint of org 'eu' in {orgs_file}" in done.stdout, done.stdout
    assert not re.search(r"\bLANGSMITH_(API_KEY|ENDPOINT|ORGANIZATION_ID)\b", done.stdout), done.stdout


def test_the_workspace_listing_every_sync_reads_is_checked_whatever_the_key(sandbox_env):
    # An Organization Admin's key needs no workspace roles, but the sync still lists workspaces.
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/workspaces", web_page)
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    check = check_of(diagnosis, "read_all_workspaces")
    assert check.status == "fail" and "cannot list workspaces" in check.detail, check
    assert check.fix == NotLangSmithAPIError.fix
    assert not diagnosis.ok


def test_a_failed_workspace_listing_is_asked_once_and_fails_both_checks_that_need_it(sandbox_env):
    sandbox, environ = sandbox_env(key_role="org-user")  # no organization:manage: both checks list
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/workspaces", web_page)
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    for name in ("read_all_workspaces", "manage_workspace_members"):
        check = check_of(diagnosis, name)
        assert check.status == "fail" and "cannot list workspaces" in check.detail, check
    listings = [r for r in sandbox.request_log.snapshot() if r.path == "/api/v1/workspaces"]
    assert len(listings) == 1


def test_a_workspace_the_key_may_not_read_fails_where_the_sync_reads_each_workspace(sandbox_env):
    sandbox, environ = sandbox_env(key_role="org-user")  # no all-workspaces listing: the per-workspace route
    assert check_of(run_checks(environ), "read_all_workspaces").status == "warn"
    hidden = sandbox.org.shared_workspaces()[0]

    def no_permissions_in_hidden(answer: Answer) -> Answer:
        return answer.with_json([{**w, "permissions": []} if w["id"] == hidden.id else w for w in answer.json()])

    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/workspaces", no_permissions_in_hidden)
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    check = check_of(diagnosis, "read_all_workspaces")
    assert check.status == "fail", check
    assert hidden.display_name in check.detail and "may not read 1 of them" in check.detail, check
    assert "workspaces:read" in check.fix and "Organization Admin" in check.fix
    assert not diagnosis.ok
    # A workspace the key may read but not manage: the sync reads it (a warning, as before); only
    # provisioning cannot change its members, which the manage check names.

    def read_only_in_hidden(answer: Answer) -> Answer:
        return answer.with_json([{**w, "permissions": ["workspaces:read"]} if w["id"] == hidden.id else w
                                 for w in answer.json()])

    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/workspaces", read_only_in_hidden)
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    assert check_of(diagnosis, "read_all_workspaces").status == "warn"
    manage = check_of(diagnosis, "manage_workspace_members")
    assert manage.status == "warn" and f"not in: {hidden.display_name}" in manage.detail, manage
    assert diagnosis.ok
    # With an Organization Admin's key one listing covers every workspace: nothing to read each.
    sandbox.api.key_role = "org-admin"
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/workspaces", no_permissions_in_hidden)
        assert check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url}), "read_all_workspaces").status == "ok"


@pytest.mark.parametrize("permissions, status, says", [
    (["workspaces:read"], "fail", "in none of the 4 workspaces: provisioning cannot change any membership"),
    (None, "warn", "cannot tell: LangSmith does not say the key's permissions"),
    # Not said for one workspace, allowed in the others: that one is named, not "cannot tell", and
    # not as one where LangSmith refused.
    ("unsaid in the first", "warn", "has workspaces:manage-members in 3 of 4 workspaces; not said in: "),
    # Not said for one, refused in the others: the refusals are named as such, a warning (the one
    # not said may allow it).
    ("unsaid in the first, refused in the rest", "warn",
     "has workspaces:manage-members in none of the 3 workspaces LangSmith says its permissions in; not in: "),
])
def test_a_key_that_may_manage_members_nowhere_fails_and_one_not_told_warns(sandbox_env, permissions, status, says):
    sandbox, environ = sandbox_env(key_role="org-user")  # no organization:manage: the listing decides

    def with_permissions(answer: Answer) -> Answer:
        if permissions == "unsaid in the first":
            first, *others = answer.json()
            return answer.with_json([{**first, "permissions": None}, *others])
        if permissions == "unsaid in the first, refused in the rest":
            first, *others = answer.json()
            return answer.with_json([{**first, "permissions": None},
                                     *({**w, "permissions": ["workspaces:read"]} for w in others)])
        return answer.with_json([{**w, "permissions": permissions} for w in answer.json()])

    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/workspaces", with_permissions)
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    check = check_of(diagnosis, "manage_workspace_members")
    assert check.status == status and says in check.detail, check
    if isinstance(permissions, str):  # the one workspace not said is named as such, and only it
        assert check.detail.split("not said in: ")[1].count(",") == 0, check.detail
        refused = re.search(r"not in: ([^;]*)", check.detail)  # the three that said no, if any did
        assert (refused.group(1).count(",") == 2) if "refused" in permissions else refused is None, check.detail
    assert "Workspace Admin role in every workspace" in check.fix
    assert diagnosis.ok is (status != "fail")


# ------------------------------------------------------------------ connections that get no answer

@contextlib.contextmanager
def https_server(tmp_path: Path, handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """An https server on 127.0.0.1 answering with ``handler``, under a certificate of its own
    for 127.0.0.1 (``tmp_path / "cert.pem"``, which nothing trusts unless told to); its URL."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def self_signed_https(tmp_path):
    """An https server on 127.0.0.1 whose certificate nothing trusts (an install with a private
    CA, or a proxy inspecting TLS)."""
    with https_server(tmp_path, http.server.BaseHTTPRequestHandler) as url:
        yield url


def test_an_endpoint_that_gets_no_answer_says_why_and_what_to_change(sandbox_env, self_signed_https, refused_port):
    # A refused port, a name that does not resolve, https:// to a plain http port and a
    # certificate this machine does not trust each need their own change; "set LANGSMITH_ENDPOINT
    # to your LangSmith API" is wrong for a private CA, where the endpoint is right.
    sandbox, environ = sandbox_env()
    cases = {
        f"http://127.0.0.1:{refused_port}": ("connection refused", "host and port"),
        "https://langsmith.example.invalid": ("does not resolve", "host name"),
        sandbox.url.replace("http://", "https://"): ("TLS handshake failed", "scheme and port"),
        self_signed_https: ("certificate is not trusted", "REQUESTS_CA_BUNDLE"),
    }
    for endpoint, (detail_says, fix_says) in cases.items():
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": endpoint})
        check = check_of(diagnosis, "endpoint")
        assert check.status == "fail" and detail_says in check.detail, (endpoint, check)
        assert fix_says in check.fix, (endpoint, check)
        assert {c.status for c in diagnosis.checks[2:]} == {"skip"}


@pytest.fixture
def not_http_server():
    """A port on 127.0.0.1 where something other than a web server answers (an SSH daemon, a
    database, a proxy's other port): bytes, but no HTTP status line."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_in_no_http() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener closed: the test is over
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    threading.Thread(target=answer_in_no_http, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_a_wrong_scheme_or_port_that_gets_no_http_answer_says_to_check_them(sandbox_env, self_signed_https,
                                                                             not_http_server):
    # Two mistakes an operator makes with a self-hosted install: http:// to the port that serves
    # https:// (the TLS server closes the plain request unanswered), and a port where another
    # service listens (it answers, but not in HTTP). "Set LANGSMITH_ENDPOINT to your LangSmith
    # API" does not say what to change, and "closed without an answer" is untrue of the second.
    sandbox, environ = sandbox_env()
    cases = {
        self_signed_https.replace("https://", "http://"): ("closed without an answer", "https://"),
        not_http_server: ("not HTTP", "another service"),
    }
    for endpoint, (detail_says, fix_says) in cases.items():
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": endpoint})
        check = check_of(diagnosis, "endpoint")
        assert check.status == "fail" and detail_says in check.detail, (endpoint, check)
        assert fix_says in check.fix and "scheme" in check.fix, (endpoint, check)
        assert {c.status for c in diagnosis.checks[2:]} == {"skip"}
        assert sandbox.api_key not in diagnosis.to_json()


@pytest.mark.parametrize("web_app, api", [
    ("smith.langchain.com", "https://api.smith.langchain.com"),
    ("eu.smith.langchain.com", "https://eu.api.smith.langchain.com"),
])
def test_the_web_apps_address_in_place_of_the_api_gets_its_regions_api_as_the_fix(sandbox_env, monkeypatch,
                                                                                 web_app, api):
    # The address in the browser's bar is the first one an operator copies. LangSmith Cloud's web
    # app answers its own page (langsmith-sdk issue #637: HTML at eu.smith.langchain.com), mocked
    # here by resolving its name to a local server that answers so: the fix names the API of the
    # web app's own region, not a list of every region's.
    sandbox, environ = sandbox_env()
    resolve = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda host, *rest, **kw: resolve("127.0.0.1" if host == web_app else host, *rest, **kw))
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = web_page
        port = proxy.url.rsplit(":", 1)[1]
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": f"http://{web_app}:{port}"})
    check = check_of(diagnosis, "endpoint")
    assert check.status == "fail" and "not a LangSmith API" in check.detail, check
    assert check.fix.startswith(f"{web_app} is LangSmith's web app"), check
    assert f"set LANGSMITH_ENDPOINT to {api}" in check.fix and "(EU)" not in check.fix, check
    # A self-hosted install's own host (or any other) keeps the fix it had.
    assert "web app" not in check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": sandbox.url + "/foo"}),
                                     "endpoint").fix


def test_a_write_refused_at_the_tls_handshake_is_sent_again_and_said_unsent(self_signed_https):
    # This machine refused the certificate before a byte of the request went out: nothing can
    # have been applied, so the write is retried like one refused at connect, and the caller is
    # not told to re-read before retrying.
    settings = ClientSettings(api_key=Secret("lsv2_sk_" + "f" * 32),
                              organization_id="00000000-0000-4000-8000-000000000001",
                              endpoint=self_signed_https, connect_timeout_seconds=2.0, max_retries=1)
    waits: list[float] = []
    workspace_id, identity_id, role_id = ("00000000-0000-4000-8000-00000000000" + n for n in "234")
    with LangSmithClient(settings, sleep=waits.append) as client, pytest.raises(TransientError) as failed:
        client.add_workspace_member(workspace_id, org_identity_id=identity_id, role_id=role_id)
    assert failed.value.maybe_applied is False and len(waits) == 1, failed.value
    assert "certificate is not trusted" in str(failed.value) and "may or may not" not in str(failed.value)


def test_a_private_cas_fix_keeps_the_roots_every_other_org_needs(sandbox_env, self_signed_https):
    # REQUESTS_CA_BUNDLE replaces every root requests trusts, for every org the process serves:
    # set to the self-hosted install's CA alone, it would cut off the Cloud orgs beside it.
    sandbox, environ = sandbox_env()
    fix = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": self_signed_https}), "endpoint").fix
    assert "REQUESTS_CA_BUNDLE" in fix and "python -m certifi" in fix and "every org" in fix, fix


def page(status: int):
    """A tamper that puts a gateway's or a proxy's HTML page with ``status`` in place of the answer."""
    def tamper(answer: Answer) -> Answer:
        return answer.replace(status=status, headers={"Content-Type": "text/html"},
                              body=b"<html><body><h1>%d</h1></body></html>" % status)
    return tamper


@pytest.mark.parametrize("status, detail_says, fix", [
    (502, "LangSmith API behind it is not answering now", TRANSIENT_FIX),
    (503, "LangSmith API behind it is not answering now", TRANSIENT_FIX),
    (403, "a proxy or firewall refused the request", ProxyRefusalError.fix),
    # LangSmith's 401 is JSON: a page is a login gateway in front of it, not the key refused.
    (401, "refused the request before it reached LangSmith (one that asks for its own login)",
     ProxyRefusalError.fix),
    # A gateway's own rate-limit page: asked again once, then told to wait, not to move.
    (429, "LangSmith API behind it is not answering now", TRANSIENT_FIX),
    (407, "a proxy or firewall refused the request", ProxyRefusalError.fix),  # a proxy wanting its login
    (200, "not a LangSmith API", "set LANGSMITH_ENDPOINT"),  # only a 2xx page is a wrong endpoint
    # nginx (and an ingress built on it) answers a plain http:// request to its https:// port with
    # a 400 page ("The plain HTTP request was sent to HTTPS port"): the scheme is what to change.
    (400, "as a port that serves https:// answers a plain http:// request", "check the scheme in LANGSMITH_ENDPOINT"),
])
def test_a_page_in_place_of_the_org_info_is_told_by_its_status(sandbox_env, status, detail_says, fix):
    # A load balancer's 502/503 page says the LangSmith behind it is down, and a 403 page says a
    # proxy refused: neither is a reason to change LANGSMITH_ENDPOINT (langsmith-api.md: only a
    # 2xx that is not JSON is "not a LangSmith API").
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/orgs/current/info", page(status))
        # (A 429 page without Retry-After is waited out to the end of the rate-limit window: 2 s
        # here, not a minute.)
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url,
                                "LANGSMITH_ACCESS_RATE_LIMIT_WINDOW_SECONDS": "2"})
    check = check_of(diagnosis, "endpoint")
    assert check.status == "fail" and detail_says in check.detail, check
    assert check.fix.startswith(fix), check
    assert {c.status for c in diagnosis.checks[2:]} == {"skip"}


def test_a_rate_limit_longer_than_the_doctor_waits_is_reported_as_it_is(sandbox_env):
    # A 429 asking for an hour is not waited for, nor asked again: the detail must not claim it
    # was, and the fix names the wait LangSmith gave, not "in a minute".
    sandbox, environ = sandbox_env(faults=FaultConfig(throttle_rate=1.0, retry_after_seconds=90))
    check = check_of(run_checks(environ), "endpoint")
    assert check.status == "fail" and "429" in check.detail, check
    assert "asked again" not in check.detail.replace("before asking again", ""), check
    assert "wait 90 s (Retry-After)" in check.detail and "again in 90 s" in check.fix, check
    assert len([r for r in sandbox.request_log.snapshot() if r.path == "/api/v1/orgs/current/info"]) == 1


def test_a_rate_limit_longer_than_the_client_reads_says_the_wait_may_be_longer(sandbox_env):
    # The client reads a Retry-After up to its cap: beyond it, the doctor cannot say the wait
    # LangSmith gave, only that it is at least the cap.
    sandbox, environ = sandbox_env(faults=FaultConfig(throttle_rate=1.0, retry_after_seconds=3600))
    check = check_of(run_checks(environ), "endpoint")
    assert check.status == "fail" and "429" in check.detail, check
    assert "wait 120 s or more (Retry-After)" in check.detail, check
    assert "again in 120 s or more" in check.fix, check


def undecodable(answer: Answer) -> Answer:
    """An answer a proxy garbled: it says gzip, and is not."""
    return answer.replace(headers={**answer.headers, "Content-Encoding": "gzip"}, body=b"not gzip at all")


@pytest.mark.parametrize("path, check", [("/api/v1/orgs/current/info", "endpoint"), (ROLES, "read_roles")])
def test_an_answer_that_cannot_be_decoded_fails_its_check_not_the_doctor(sandbox_env, path, check):
    # requests raises ContentDecodingError (ChunkedEncodingError for a body cut short), neither
    # of them a ConnectionError: the doctor crashed, --json printed nothing, the op job failed
    # with a traceback instead of its checks.
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on(path, undecodable)
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    assert check_of(diagnosis, check).status == "fail", diagnosis
    assert [c.name for c in diagnosis.checks] == list(CHECK_NAMES)


def test_members_refused_with_the_organization_get_the_organization_s_fix(sandbox_env):
    # Another org's id: the member listing is refused for the same reason as the org info, so
    # its fix must not send the operator to the key's roles ("give the key organization:read").
    _, environ = sandbox_env()
    diagnosis = run_checks({**environ, "LANGSMITH_ORGANIZATION_ID": "11111111-2222-4333-8444-555555555555"})
    organization, members = check_of(diagnosis, "organization"), check_of(diagnosis, "read_members")
    assert organization.status == "fail" and members.status == "fail", diagnosis
    assert members.fix == organization.fix and "LANGSMITH_ORGANIZATION_ID" in members.fix, members


def test_an_orgs_refusal_reads_as_a_sentence_in_its_own_terms(orgs_file):
    # eu's organization_id is not the sandbox's: organization routes refuse its key. The
    # client's message, rewritten to name eu's entry, read "at its org's the endpoint of org ...".
    done = cli_in_this_process("doctor", "--org", "eu")
    assert done.returncode == 1 and "fail read_members" in done.stdout, done.stdout
    assert "'s the endpoint" not in done.stdout, done.stdout
    assert f"the endpoint of org 'eu' in {orgs_file} set to" in done.stdout, done.stdout


def test_an_org_info_naming_another_organization_fails_and_stops_there(sandbox_env):
    # The key answers for another org than LANGSMITH_ORGANIZATION_ID: a sync would read (and
    # provisioning change) an org nobody configured, so nothing after the members listing is run.
    sandbox, environ = sandbox_env()
    other = "11111111-2222-4333-8444-555555555555"
    with TamperingProxy(sandbox.url) as proxy:
        for answered_id in (other, sandbox.organization_id.upper()):
            proxy.tamper = on("/api/v1/orgs/current/info", lambda answer, answered_id=answered_id:
                              answer.with_json({**answer.json(), "id": answered_id}))
            diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
            organization = check_of(diagnosis, "organization")
            if answered_id == other:
                assert organization.status == "fail" and not diagnosis.ok, organization
                assert other in organization.detail and sandbox.organization_id in organization.detail, organization
                assert "LANGSMITH_ORGANIZATION_ID" in organization.fix
                assert {c.status for c in diagnosis.checks[5:]} == {"skip"}, diagnosis
            else:  # the same UUID in capitals: the same organization
                assert {c.status for c in diagnosis.checks} == {"ok"}, diagnosis


def test_an_org_info_that_does_not_say_whether_rbac_is_on_warns_and_says_how_to_tell(sandbox_env):
    # Without config.can_use_rbac nothing is known of the plan: not a failure, but not "ok" either.
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/orgs/current/info", lambda answer: answer.with_json(
            {k: v for k, v in answer.json().items() if k != "config"}))
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    rbac = check_of(diagnosis, "workspace_rbac")
    assert rbac.status == "warn" and "can_use_rbac" in rbac.detail, rbac
    assert "Enterprise" in rbac.fix and diagnosis.ok
    # A plan without it names the plan, so the operator knows which one to change.
    _, plus_env = sandbox_env(plan="plus")
    rbac = check_of(run_checks(plus_env), "workspace_rbac")
    assert rbac.status == "fail" and "(plus)" in rbac.detail and "Enterprise" in rbac.fix, rbac


def test_a_rate_limit_of_the_whole_fixed_window_is_waited_out(sandbox_env, monkeypatch):
    # LangSmith's window is a minute: a Retry-After of exactly 60 s is what the doctor waits for
    # (only a longer one is reported unwaited). The wait itself is recorded, not slept.
    waits: list[float] = []
    monkeypatch.setattr(doctor, "time", SimpleNamespace(sleep=waits.append))
    sandbox, environ = sandbox_env(faults=FaultConfig(throttle_rate=1.0, retry_after_seconds=60))
    check = check_of(run_checks(environ), "endpoint")
    assert waits == [60.0], waits
    assert len([r for r in sandbox.request_log.snapshot() if r.path == "/api/v1/orgs/current/info"]) == 2
    assert check.status == "fail" and "again when asked again" in check.detail, check


def test_a_server_error_of_500_on_the_first_request_is_asked_again_not_reported(sandbox_env, monkeypatch):
    # A 500 is a server error like a 502 or 503 (the boundary of "5xx"): one of them on the
    # first request is asked again after the short wait, and a LangSmith that then answers
    # passes every check. The wait is recorded, not slept.
    waits: list[float] = []
    monkeypatch.setattr(doctor, "time", SimpleNamespace(sleep=waits.append))
    sandbox, environ = sandbox_env()
    first = []

    def once_a_500(answer: Answer) -> Answer:
        if answer.path != "/api/v1/orgs/current/info" or first:
            return answer
        first.append(answer)
        return json_answer(500, b'{"detail":"Internal Server Error"}')(answer)

    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = once_a_500
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    assert first and waits == [doctor.TRANSIENT_RETRY_SECONDS], waits
    assert {c.status for c in diagnosis.checks} == {"ok"}, diagnosis.text()


def test_plain_http_to_another_machine_is_warned_of_end_to_end(sandbox_env, monkeypatch):
    # The key crosses the network in the clear: the endpoint check says so, and it is no failure.
    # The sandbox plays the remote host through HTTP_PROXY, so nothing leaves this machine.
    sandbox, environ = sandbox_env()
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", sandbox.url)
    monkeypatch.setenv("http_proxy", sandbox.url)
    diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": "http://langsmith.example.com"})
    endpoint = check_of(diagnosis, "endpoint")
    assert endpoint.status == "warn" and "plain http" in endpoint.detail, diagnosis
    assert "https://" in endpoint.fix and diagnosis.ok
    assert {c.status for c in diagnosis.checks if c.name != "endpoint"} == {"ok"}, diagnosis


PLAIN_HOOK = "http://hooks.example.com/notify/s3cret"


def test_a_plain_http_webhook_to_another_machine_warns_the_configuration_check_in_text_and_json(
        sandbox_env, monkeypatch, tmp_path):
    # Every notification (who was granted which role) crossed the network in the clear and the
    # doctor said nothing, while it warns of the endpoint's plain http. Warned, not refused: an
    # internal receiver on http may be deliberate. The URL is a secret: never shown.
    sandbox, environ = sandbox_env()
    for name, value in {**environ, "LANGSMITH_ACCESS_WEBHOOK_URL": PLAIN_HOOK}.items():
        monkeypatch.setenv(name, value)
    warned = ("; but the webhook (LANGSMITH_ACCESS_WEBHOOK_URL, not shown: a secret) is plain http to another "
              "machine: every notification (who was granted or refused which role, where) crosses the network "
              "unencrypted")
    fix = ("set LANGSMITH_ACCESS_WEBHOOK_URL to the receiver's https:// address (plain http is for a receiver on "
           "this machine, or on a network you trust)")
    text = cli_in_this_process("doctor")
    assert text.returncode == 0, text.stdout + text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == (f"warn configuration: service key set (not shown), organization {sandbox.organization_id}, "
                        f"endpoint {sandbox.url}{warned}"), lines
    assert lines[1] == f"  fix: {fix}"
    done = cli_in_this_process("doctor", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    [configuration, *rest] = report["checks"]
    assert report["ok"] is True and {c["status"] for c in rest} == {"ok"}, report
    assert configuration["status"] == "warn" and configuration["detail"].endswith(warned)
    assert configuration["fix"] == fix
    assert "s3cret" not in text.stdout + text.stderr + done.stdout + done.stderr

    # https, or plain http on this machine, is no warning.
    for url in ("https://hooks.example.com/notify/s3cret", "http://127.0.0.1:9/notify", "http://localhost/hook"):
        monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", url)
        assert check_of(run_checks(), "configuration").status == "ok", url

    # An org's own webhook: its variable is the one named. With an access policy that cannot be
    # read too, both are told, each with its fix (neither warning hides the other).
    orgs = tmp_path / "orgs.yaml"
    orgs.write_text(f"- slug: eu\n  organization_id: {sandbox.organization_id}\n  endpoint: {sandbox.url}\n"
                    "  api_key_env: KEY_EU\n  webhook_url_env: HOOK_EU\n  policy: missing.yaml\n")
    org = load_orgs({ORGS_FILE_VARIABLE: str(orgs), "KEY_EU": sandbox.api_key, "HOOK_EU": PLAIN_HOOK,
                     "LANGSMITH_ACCESS_DUCKDB": str(tmp_path / "data" / "access.duckdb")}).get("eu")
    configuration = check_of(run_checks(org=org), "configuration")
    assert configuration.status == "warn", configuration
    assert "; but the webhook (HOOK_EU, not shown: a secret) is plain http to another machine" in configuration.detail
    assert f"; but the access policy {tmp_path / 'missing.yaml'} is refused" in configuration.detail
    assert configuration.fix.startswith("set HOOK_EU to the receiver's https:// address")
    assert configuration.fix.endswith("; " + doctor.PolicyError.fix), configuration.fix
    assert "s3cret" not in configuration.detail + configuration.fix


@pytest.mark.parametrize("key_role, status", [("org-admin", "ok"), ("org-user", "warn")])
def test_anonymity_restricted_answers_are_told_in_the_members_route_check(sandbox_env, key_role, status):
    # Emails and names may be withheld there (langsmith-api.md): the operator learns it before a
    # sync, whichever way the sync will read the members.
    _, environ = sandbox_env(anonymity_restricted=True, key_role=key_role)
    check = check_of(run_checks(environ), "read_all_workspaces")
    assert check.status == status and "anonymity-restricted" in check.detail, check
    _, plain = sandbox_env(key_role=key_role)
    assert "anonymity" not in check_of(run_checks(plain), "read_all_workspaces").detail


def test_a_read_answered_with_json_of_the_wrong_shape_gets_the_garbled_answer_fix(sandbox_env):
    # JSON, but not what LangSmith sends there: something on the way rewrote it (or a bug), not a
    # rejected request and not the key's permissions.
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on(ROLES, lambda answer: answer.with_json({"roles": "none"}))
        failed = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url}), "read_roles")
    assert failed.status == "fail" and failed.fix == UNREADABLE_ANSWER_FIX, failed


def test_a_value_a_newer_langsmith_sends_that_this_version_cannot_read_gets_a_fix_that_says_upgrade(sandbox_env):
    # A newer LangSmith with a role scope this version does not know: no proxy is to blame, so a
    # fix that only sends the operator to look for one would leave them stuck.
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on(ROLES, lambda answer: answer.with_json(
            [{**role, "access_scope": "project"} if index == 0 else role for index, role in enumerate(answer.json())]))
        failed = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url}), "read_roles")
    assert failed.status == "fail" and "Role.access_scope" in failed.detail and "'project'" in failed.detail, failed
    assert "upgrade langsmith-access" in failed.fix, failed

def test_a_read_refused_as_unauthenticated_gets_the_key_fix(sandbox_env):
    # A 401 on a later read (the key revoked meanwhile, or a proxy's own login): the fix its kind
    # names, the key's, not "try again".
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on(ROLES, json_answer(401, b'{"detail":"Invalid token"}'))
        failed = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url}), "read_roles")
    assert failed.status == "fail" and failed.fix == AuthenticationError.fix, failed


def test_what_the_server_says_cannot_break_the_one_line_per_check_format(sandbox_env):
    # Details quote LangSmith's answers (or whatever is on the way): a line break there forged a
    # line of its own ("ok workspace_rbac: forged" under the real read_roles failure), and an
    # escape sequence reached the operator's terminal as it was.
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on(ROLES, json_answer(403, b'{"detail":"no\\nok workspace_rbac: forged\\u001b[2J\\r\\u2028!"}'))
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    lines = diagnosis.text().splitlines()
    assert [line for line in lines if not line.startswith("  fix: ")] == [
        f"{c.status} {c.name}: {c.detail}" for c in diagnosis.checks], lines
    assert "forged" in check_of(diagnosis, "read_roles").detail
    assert not re.search(r"[\x00-\x1f\x7f]", "".join(lines) + diagnosis.to_json()), lines


def test_a_name_langsmith_answers_with_cannot_break_the_one_line_per_check_format(sandbox_env):
    # Not only errors: the organization's own name goes into the organization check's detail.
    sandbox, environ = sandbox_env()
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/orgs/current/info", lambda answer: answer.with_json(
            {**answer.json(), "display_name": "Acme\nfail workspace_rbac: forged\u001b[2J"}))
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url})
    lines = diagnosis.text().splitlines()
    assert lines == [f"{c.status} {c.name}: {c.detail}" for c in diagnosis.checks], lines
    assert diagnosis.ok and "forged" in check_of(diagnosis, "organization").detail
    assert not re.search(r"[\x00-\x1f\x7f]", "".join(lines) + diagnosis.to_json()), lines


@pytest.mark.parametrize("check, path", [("read_roles", ROLES), ("read_members", ACTIVE),
                                         ("read_all_workspaces", "/api/v1/workspaces"),
                                         ("read_all_workspaces", ENRICHED)])
def test_a_refusal_the_key_s_permissions_do_not_explain_is_not_blamed_on_its_roles(sandbox_env, check, path):
    # The organization info answered and lists organization:read among the key's permissions:
    # all these reads need (langsmith-api.md). "Give the key a role with organization:read" is
    # then no fix, the key has one; where the info does not list it, that is the fix.
    sandbox, environ = sandbox_env()

    def without_organization_read(answer: Answer) -> Answer:
        if answer.path == "/api/v1/orgs/current/info":
            return answer.with_json({**answer.json(), "permissions": ["organization:pats:create"]})
        return refused(answer) if answer.path == path else answer

    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on(path, refused)
        held = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url}), check)
        proxy.tamper = without_organization_read
        lacking = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url}), check)
    assert held.status == "fail" and held.fix == HELD_PERMISSION_REFUSED_FIX, held
    assert lacking.status == "fail" and lacking.fix.startswith("give the key a role with organization:read"), lacking


def test_roles_are_counted_with_the_workspace_roles_among_them(sandbox_env):
    sandbox, environ = sandbox_env()
    roles = sandbox.org.roles.values()
    workspace_roles = [r for r in roles if r.access_scope == "workspace"]
    assert 0 < len(workspace_roles) < len(roles)
    assert check_of(run_checks(environ), "read_roles").detail == (
        f"{len(roles)} roles ({len(workspace_roles)} workspace roles)")


def test_a_members_route_failure_that_fails_the_sync_is_not_told_as_reading_each_workspace(sandbox_env):
    # A 503 on the members route fails the sync (no fallback): a workspace the key may not read
    # does not change that, and the check must not say the sync reads each workspace.
    sandbox, environ = sandbox_env(key_role="org-user")
    hidden = sandbox.org.shared_workspaces()[0]

    def tamper(answer: Answer) -> Answer:
        if answer.path == "/api/v1/workspaces":
            return answer.with_json([{**w, "permissions": []} if w["id"] == hidden.id else w for w in answer.json()])
        return unavailable(answer) if answer.path == ENRICHED else answer

    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = tamper
        check = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url}), "read_all_workspaces")
    assert check.status == "fail" and "the sync fails with it" in check.detail, check
    assert "reads each workspace" not in check.detail and check.fix == TRANSIENT_FIX, check


def test_the_op_job_logs_each_check_at_its_level_and_keeps_the_report_a_table(sandbox_env, monkeypatch):
    # From the UI the log level is what an operator filters on, and the report is a markdown
    # table: a "|" in what LangSmith names (here the org's name) must not add a column.
    from langsmith_access.definitions import defs

    sandbox, environ = sandbox_env(key_role="org-user")  # read_all_workspaces warns
    job = defs().resolve_job_def("check_langsmith_connection")
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = lambda answer: (
            answer.with_json({**answer.json(), "display_name": "Acme | Ops\nEU"})
            if answer.path == "/api/v1/orgs/current/info" else refused(answer) if answer.path == ROLES else answer)
        for name, value in {**environ, "LANGSMITH_ENDPOINT": proxy.url}.items():
            monkeypatch.setenv(name, value)
        instance = dg.DagsterInstance.ephemeral()
        failed = job.execute_in_process(instance=instance, raise_on_error=False, partition_key="default")
    assert not failed.success
    levels = {entry.user_message.split(":")[0]: entry.level for entry in instance.all_logs(failed.run_id)
              if entry.user_message.startswith(("ok ", "warn ", "fail ", "skip "))}
    assert levels["fail read_roles"] == logging.ERROR, levels
    assert levels["warn read_all_workspaces"] == logging.WARNING, levels
    assert levels["ok organization"] == logging.INFO, levels
    [failure] = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    report = failure.step_failure_data.user_failure_data.metadata["report"].value
    rows = report.splitlines()
    assert len(rows) == 2 + len(CHECK_NAMES), rows
    assert all(len(re.split(r"(?<!\\)\|", row)) == 6 for row in rows), rows  # 4 cells between 5 bars
    assert "Acme \\| Ops" in report
    # The run page's failure names the check that failed, not the one that only warned.
    described = failure.step_failure_data.user_failure_data.description
    assert described.startswith("connection checks failed: read_roles. read_roles: "), described
    assert "read_all_workspaces" not in described, described
    assert failure.step_failure_data.user_failure_data.metadata["ok"].value is False


def test_the_default_org_without_key_or_id_names_both_with_their_fixes():
    # As loaded for the Dagster definitions (the op job check_langsmith_connection): one round
    # of fixes, not the key first and the org id on the next run.
    org = load_orgs({}, refuse_unusable_keys=False).get()
    configuration = run_checks(org=org).checks[0]
    assert configuration.status == "fail"
    assert "LANGSMITH_API_KEY is not set" in configuration.detail
    assert "LANGSMITH_ORGANIZATION_ID is not set" in configuration.detail
    assert "set LANGSMITH_ORGANIZATION_ID to your organization's UUID" in configuration.fix


@pytest.mark.parametrize("variable", ["LANGSMITH_API_KEY_EU", "EU_SERVICE_KEY", "eu_key"])
@pytest.mark.parametrize("key", ["lsv2_pt_" + "0" * 32, "lsv2_sk_..."])
def test_an_orgs_unusable_key_gets_the_key_fix_whatever_its_variable_is_called(tmp_path, variable, key):
    # api_key_env may name any variable: the fix for a personal token (or a key's short form)
    # in it was "correct EU_SERVICE_KEY as the message says" unless its name began with
    # LANGSMITH_API_KEY.
    orgs = tmp_path / "orgs.yaml"
    orgs.write_text("- slug: eu\n  organization_id: 00000000-0000-4000-8000-000000000002\n"
                    f"  endpoint: https://eu.api.smith.langchain.com\n  api_key_env: {variable}\n")
    env = {ORGS_FILE_VARIABLE: str(orgs), "LANGSMITH_ACCESS_DUCKDB": str(tmp_path / "data" / "x.duckdb"), variable: key}
    configuration = run_checks(org=load_orgs(env, refuse_unusable_keys=False).get("eu")).checks[0]
    assert configuration.status == "fail" and configuration.detail.startswith(f"{variable} (the key of org 'eu'")
    assert configuration.fix == doctor.key_fix(variable)


def test_an_unusable_webhook_never_turns_a_failed_configuration_into_a_warning():
    # An org's webhook problem is told on a passing configuration check (LangSmith works, its
    # notifications wait); on one that failed it must not replace the failure with a warn, which
    # would make the doctor exit 0 for settings that cannot reach LangSmith.
    failed = doctor.configuration_failure("LANGSMITH_ENDPOINT 'nowhere' is not a URL")
    told = failed.with_webhook_problem("the variable HOOK named by webhook_url_env is not set")
    assert told.checks[0] == failed.checks[0] and told.ok is False, told.checks[0]


def test_a_webhook_problem_and_a_policy_problem_read_as_one_sentence_on_the_configuration_line(tmp_path):
    # An org's webhook problem is written as sentences of its own ("The orgs file ... until
    # then."): joined after "; but" it read "; but The orgs file" and "until then.; but the access
    # policy".
    orgs = tmp_path / "orgs.yaml"
    orgs.write_text("- slug: eu\n  organization_id: 00000000-0000-4000-8000-000000000002\n"
                    "  endpoint: http://localhost:18002\n  api_key_env: KEY_EU\n  webhook_url_env: HOOK_EU\n"
                    "  policy: policy.yaml\n")
    (tmp_path / "policy.yaml").write_text("approval: [unclosed\n")
    org = load_orgs({ORGS_FILE_VARIABLE: str(orgs), "KEY_EU": "lsv2_sk_" + "a" * 32 + "_x", "HOOK_EU": "not-a-url",
                     "LANGSMITH_ACCESS_DUCKDB": str(tmp_path / "data" / "x.duckdb")},
                    refuse_unusable_keys=False).get("eu")
    passed = doctor.Diagnosis([doctor.Check("configuration", "ok", "endpoint http://localhost:18002")])
    told = passed.with_webhook_problem(org.webhook_problem).with_policy_problem(doctor.policy_problem(org))
    detail = told.checks[0].detail
    assert detail.startswith(f"endpoint http://localhost:18002; but the orgs file {orgs}, entry 1 (line 1)"), detail
    assert "Its notifications wait until then; but the access policy" in detail, detail
    assert detail.endswith("every grant is rejected until it is fixed"), detail
    # A problem that starts with a name in capitals keeps it.
    named = passed.with_webhook_problem("LANGSMITH_ACCESS_WEBHOOK_URL is not set.").checks[0].detail
    assert named == "endpoint http://localhost:18002; but LANGSMITH_ACCESS_WEBHOOK_URL is not set", named


@pytest.mark.parametrize(("written", "said"), [
    (None, "is refused (the file does not exist: create it, or correct the path that names it"),
    ("aproval:\n  required: [Admin]\n", "is refused (line 1: unknown key 'aproval' in the policy (did you mean "
                                        "'approval'?)"),
    ("duration:\n  default: 1y\n", "is refused (line 2: duration.default '1y' is not a duration"),
    # A file an older release read and misread (README "Upgrading": doctor after an upgrade).
    ("approval:\n  workspaces: [Production]\n", "is refused (line 2: approval.workspaces lists where grants need "
                                                 "approval, but approval.required names no role"),
])
def test_a_policy_file_that_cannot_be_read_warns_the_configuration_check(sandbox_env, tmp_path, written, said):
    # Every check passed while LANGSMITH_ACCESS_POLICY named a file that is not there (or does
    # not parse), and then every grant was rejected: the doctor says so, with the policy's fix.
    # The connection is fine (and revokes are not governed): a warning, exit 0.
    sandbox, environ = sandbox_env()
    policy = tmp_path / "policy.yaml"
    if written is not None:
        policy.write_text(written)
    environ = {**environ, "LANGSMITH_ACCESS_POLICY": str(policy)}
    diagnosis = run_checks(org=load_orgs(environ, refuse_unusable_keys=False).get())
    configuration = check_of(diagnosis, "configuration")
    assert configuration.status == "warn" and diagnosis.ok, configuration
    assert f"; but the access policy {policy} {said}" in configuration.detail, configuration.detail
    assert configuration.detail.endswith("): every grant is rejected until it is fixed")
    assert configuration.fix.startswith("correct the policy file at the lines named")
    assert {c.status for c in diagnosis.checks if c.name != "configuration"} == {"ok"}
    # A policy that reads is no warning; nor is a failed configuration ever turned into one.
    policy.write_text("approval:\n  required: [Admin]\n")
    assert check_of(run_checks(org=load_orgs(environ, refuse_unusable_keys=False).get()), "configuration").status == "ok"
    failed = doctor.configuration_failure("LANGSMITH_ENDPOINT 'nowhere' is not a URL")
    assert failed.with_policy_problem("the access policy p.yaml is refused (...)").checks[0] == failed.checks[0]


def _database_of(path: Path, organization_id: str) -> None:
    """A database whose last successful sync was for ``organization_id`` (what the org check reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE TABLE main.sync_runs (status VARCHAR, organization_id VARCHAR, finished_at TIMESTAMPTZ)")
        conn.execute("INSERT INTO main.sync_runs VALUES ('succeeded', ?, now())", [organization_id])


@pytest.mark.parametrize("mistake", ["another_orgs_database", "renamed_slug"])
def test_a_database_that_will_refuse_the_orgs_runs_is_warned_of(orgs_file, tmp_path, mistake):
    # The connection is fine, but every sync and provisioning run of 'us' would be refused by its
    # database: the doctor ("will this work?") must not answer all-ok and say nothing.
    from langsmith_access.definitions import defs

    us_id = load_orgs().get("us").organization_id
    data = tmp_path / "data"
    if mistake == "another_orgs_database":  # data/us/ holds another org's data (an id changed)
        _database_of(data / "us" / "langsmith_access.duckdb", "00000000-0000-4000-8000-0000000000cc")
        said = f"{data / 'us' / 'langsmith_access.duckdb'} holds organization 00000000-0000-4000-8000-0000000000cc's"
    else:  # 'us' was 'old' before: its data is in data/old/, and data/us/ does not exist
        _database_of(data / "old" / "langsmith_access.duckdb", us_id)
        said = f"but {data / 'old' / 'langsmith_access.duckdb'} holds this organization's data"
    done = cli_in_this_process("doctor", "--json", "--org", "us")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    [warning] = [w for w in report["warnings"] if w.startswith("org 'us': ")]
    assert "its sync, provisioning runs and requests will be refused: " in warning and said in warning, warning
    assert "Fix: " in warning and "Nothing was asked of LangSmith" not in warning, warning
    # Every org's doctor says it too; and the UI's op job, as its warnings.
    assert warning in json.loads(cli_in_this_process("doctor", "--json", "--all-orgs").stdout)["warnings"]
    result = defs().resolve_job_def("check_langsmith_connection").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), partition_key="us")
    assert warning.removeprefix("org 'us': ") in result.output_for_node("check_connection")["warnings"]
    assert not (data / "us").exists() or mistake == "another_orgs_database"  # the doctor made nothing
    # What the warning promises is what a request does.
    refused = cli_in_this_process("request", "grant", "--org", "us", "--user", "a@example.com",
                                  "--workspace", "W", "--role", "Viewer")
    assert refused.returncode == 1 and said in refused.stderr, refused.stderr


def test_a_400_page_over_https_is_not_blamed_on_the_scheme(sandbox_env, tmp_path, monkeypatch):
    # The 400 page of a plain http:// request sent to an https:// port only happens over http://:
    # an https:// endpoint answering a 400 page is no reason to "write https://" (it already is).
    class BadRequestPage(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body><h1>400 Bad Request</h1></body></html>"
            self.send_response(400)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    _, environ = sandbox_env()
    with https_server(tmp_path, BadRequestPage) as endpoint:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "cert.pem"))  # trusted: the page is read
        check = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": endpoint}), "endpoint")
    assert check.status == "fail" and "not a LangSmith API" in check.detail and "answered 400" in check.detail, check
    assert "plain http://" not in check.detail and check.fix == ENDPOINT_FIX, check


def test_the_web_apps_address_answering_a_json_404_gets_only_its_regions_api_as_the_fix(sandbox_env, monkeypatch):
    # A JSON 404 at the web app's address is the wrong host, not a wrong path under the right one:
    # the fix names its region's API alone, not that and then "the host root ... with a base path".
    sandbox, environ = sandbox_env()
    resolve = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *rest, **kw: resolve(
        "127.0.0.1" if host == "smith.langchain.com" else host, *rest, **kw))
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with TamperingProxy(sandbox.url) as proxy:
        proxy.tamper = on("/api/v1/orgs/current/info", lambda answer: answer.replace(
            status=404, headers={"Content-Type": "application/json"}, body=b'{"detail": "Not Found"}'))
        port = proxy.url.rsplit(":", 1)[1]
        diagnosis = run_checks({**environ, "LANGSMITH_ENDPOINT": f"http://smith.langchain.com:{port}"})
    check = check_of(diagnosis, "endpoint")
    assert check.status == "fail" and "answered 404" in check.detail, check
    assert check.fix == ("smith.langchain.com is LangSmith's web app (the browser's address), not its API: set "
                         "LANGSMITH_ENDPOINT to https://api.smith.langchain.com"), check


def test_more_than_five_unreadable_workspaces_are_named_five_and_an_ellipsis(tmp_path):
    # Six workspaces the key may not read: the detail names five and says there are more, never
    # five names that read as the whole list.
    sandbox = SandboxServer(generate_org(seed=4, members=20, workspaces=6), key_role="org-user").start()
    try:
        shared = sandbox.org.shared_workspaces()
        assert len(shared) == 6
        with TamperingProxy(sandbox.url) as proxy:
            proxy.tamper = on("/api/v1/workspaces", lambda answer: answer.with_json(
                [{**w, "permissions": []} for w in answer.json()]))
            environ = sandbox.environment(tmp_path / "access.duckdb")
            check = check_of(run_checks({**environ, "LANGSMITH_ENDPOINT": proxy.url}), "read_all_workspaces")
    finally:
        sandbox.stop()
    assert check.status == "fail" and "may not read 6 of them" in check.detail, check
    named = [w.display_name for w in shared if w.display_name in check.detail]
    assert len(named) == 5 and " ...): every sync fails there" in check.detail, check

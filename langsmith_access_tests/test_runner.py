"""The runner's own choices: the sync's run config and which Dagster instance runs land in."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from langsmith_access import runner
from langsmith_access.defs.orgs import RunWithoutOrg
from langsmith_access.defs.provisioning.definitions import (
    fail_runs_of_ended_processes,
    orgs_with_provisioning_run_in_flight,
)
from langsmith_access.langsmith import errors
from langsmith_access.names import MEMBERS_OP, ORG_TAG, PROCESS_TAG, PROVISION_JOB
from langsmith_access.processes import has_ended, this_process
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.settings import Settings, SettingsError, load_orgs
from langsmith_access.store.database import UNWRITABLE_FOLDER_FIX, DatabaseUnusableError, LeftoverWalError
from langsmith_access.transform import DBT_FAILURES_METADATA


def test_the_syncs_shrink_share_is_the_settings_unless_one_is_given(monkeypatch):
    # DESIGN.md section 5: the share is configurable (LANGSMITH_ACCESS_MAX_SHRINK_SHARE): `sync`
    # and the demo hand their org's settings, tests and scripts the environment.
    config = runner.sync_run_config(settings=Settings(max_shrink_share=0.5))["ops"][MEMBERS_OP]["config"]
    assert config == {"accept_shrink": False, "max_shrink_share": 0.5}
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_SHRINK_SHARE", "0.35")
    assert runner.sync_run_config()["ops"][MEMBERS_OP]["config"]["max_shrink_share"] == 0.35
    given = runner.sync_run_config(accept_shrink=True, max_shrink_share=0.1, membership_route="workspace_members",
                                   settings=Settings(max_shrink_share=0.5))
    assert given["ops"][MEMBERS_OP]["config"] == {"accept_shrink": True, "max_shrink_share": 0.1,
                                                  "membership_route": "workspace_members"}
    # A share of 0 (no drop allowed at all) is a share given, not one left out: never the settings' 0.5.
    strict = runner.sync_run_config(max_shrink_share=0.0, settings=Settings(max_shrink_share=0.5))
    assert strict["ops"][MEMBERS_OP]["config"]["max_shrink_share"] == 0.0


def test_runs_land_in_dagster_homes_instance_when_it_is_set(monkeypatch, tmp_path):
    # Module docstring and README: with DAGSTER_HOME set, the CLI's runs are in that instance's
    # history (the webserver shows them); without it, in an ephemeral one.
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with runner.instance() as ephemeral:
        assert not ephemeral.is_persistent
    monkeypatch.setenv("DAGSTER_HOME", "")  # `export DAGSTER_HOME=`: unset, not Dagster's error
    with runner.instance() as ephemeral:
        assert not ephemeral.is_persistent
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with runner.instance() as persistent:
        assert persistent.is_persistent and persistent.root_directory == str(tmp_path)


def test_a_dagster_home_dagster_cannot_use_is_refused_naming_the_variable_and_the_fix(monkeypatch, tmp_path):
    # Dagster's own refusal of DAGSTER_HOME (a relative path, no such folder, a dagster.yaml it
    # cannot load) came out of every command that runs a job as a traceback; now the CLI's
    # "error: ..." of a setting, with what to set.
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    broken, unknown_key = tmp_path / "broken", tmp_path / "unknown_key"
    broken.mkdir()
    (broken / "dagster.yaml").write_text("run_coordinator: [\n")
    unknown_key.mkdir()
    (unknown_key / "dagster.yaml").write_text("no_such_setting: 1\n")
    unset = "or unset DAGSTER_HOME for a run kept in memory (not in the Dagster UI's run history)."
    cases = [
        ("relative/home", "DAGSTER_HOME is relative/home, not an absolute path: set it to the absolute path of "
                          f"the Dagster instance's directory (the one holding its dagster.yaml), {unset}"),
        (str(tmp_path / "missing"), f"DAGSTER_HOME is {tmp_path / 'missing'}, a directory that does not exist: "),
        (str(a_file), f"DAGSTER_HOME is {a_file}, a file, not a directory: "),
        (str(broken), f"DAGSTER_HOME is {broken}, whose Dagster instance cannot be loaded (ParserError: "),
        (str(unknown_key), f"DAGSTER_HOME is {unknown_key}, whose Dagster instance cannot be loaded "
                           "(DagsterInvalidConfigError: "),
    ]
    for home, message in cases:
        monkeypatch.setenv("DAGSTER_HOME", home)
        with pytest.raises(SettingsError) as refused:
            runner.instance()
        assert str(refused.value).startswith(message), refused.value
        assert str(refused.value).endswith(unset), refused.value
    assert "no_such_setting" in str(refused.value)  # what Dagster found wrong in the file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "notes.txt", "unknown_key"]  # nothing made


@dg.asset(check_specs=[dg.AssetCheckSpec("complete", asset="members"), dg.AssetCheckSpec("drift", asset="members"),
                       dg.AssetCheckSpec("unique", asset="members"), dg.AssetCheckSpec("fresh", asset="members")])
def members():
    yield dg.Output(1)
    yield dg.AssetCheckResult(check_name="complete", passed=False, description="2 of 5 members missing")
    yield dg.AssetCheckResult(check_name="drift", passed=False, severity=dg.AssetCheckSeverity.WARN,
                              description="1 change no request explains")
    yield dg.AssetCheckResult(check_name="unique", passed=True)
    yield dg.AssetCheckResult(check_name="fresh", passed=True, severity=dg.AssetCheckSeverity.WARN)


@dg.asset
def roles() -> int:
    raise errors.AuthenticationError("the key was refused", method="GET", path="/orgs/current/roles",
                                     status_code=401)


@dg.asset(deps=[members])
def zz_workspaces() -> int:
    raise errors.PermissionDeniedError("not allowed", status_code=403)


FAILING_SYNC = dg.Definitions(assets=[members, roles, zz_workspaces],
                              jobs=[dg.define_asset_job("failing_sync")]).resolve_job_def("failing_sync")


def test_a_failed_runs_summary_is_its_first_error_the_checks_that_failed_and_that_errors_fix():
    # What `sync` prints under "failed:": the first step's error without its type's name, each
    # check that failed ("failed check ..."), not one that only warns (the drift check: it never
    # withholds a sync), and the fix of the first error whose type names one.
    with runner.ephemeral_instance() as instance:
        result = FAILING_SYNC.execute_in_process(instance=instance, raise_on_error=False)
        failure, failed_checks, dbt_errors, fix = runner._failure_summary(result)
    assert not result.success
    assert failure == "roles: GET /orgs/current/roles -> 401: the key was refused"
    assert failed_checks == ["members:complete: 2 of 5 members missing"]
    assert dbt_errors == []
    assert fix == errors.AuthenticationError.fix


@dg.resource
def refused_api(_):
    raise errors.AuthenticationError("the key was refused", method="GET", path="/orgs/current", status_code=401)


@dg.asset(required_resource_keys={"api"})
def needs_api() -> int:
    return 1


def test_a_resource_that_cannot_start_is_named_with_the_step_that_needed_it_and_its_fix():
    with runner.ephemeral_instance() as instance:
        result = dg.materialize([needs_api], resources={"api": refused_api}, instance=instance, raise_on_error=False)
        failure, _, _, fix = runner._failure_summary(result)
    assert failure == "needs_api: GET /orgs/current -> 401: the key was refused", failure
    assert fix == errors.AuthenticationError.fix


def test_progress_lines_say_which_steps_ran_and_which_checks_failed_or_only_warn():
    heard: list[str] = []
    with runner.ephemeral_instance() as instance:
        run_id = str(uuid.uuid4())
        instance.add_event_listener(run_id, lambda event: runner._report(event, heard.append))
        FAILING_SYNC.execute_in_process(instance=instance, run_id=run_id, raise_on_error=False)
    assert heard == ["  … members", "  ✗ check members:complete failed", "  ! check members:drift warns",
                     "  ✓ members", "  … roles", "  ✗ roles", "  … zz_workspaces", "  ✗ zz_workspaces"]


def test_a_run_that_succeeds_writes_no_failure_log(tmp_path):
    # log_dir is where a *failed* run's events go (RunOutcome.log_path): a good run leaves no file.
    with SandboxServer(generate_org(seed=3, members=5, workspaces=1)) as sandbox:
        org = load_orgs(sandbox.environment(tmp_path / "access.duckdb")).get()
        outcome = runner.run_job("check_langsmith_connection", {}, org=org, log_dir=tmp_path / "logs")
    assert outcome.success, outcome.failure
    assert outcome.log_path is None and not (tmp_path / "logs").exists()


DBT_NODES = [{"unique_id": f"test.x.not_null_users_{n}", "resource_type": "test", "name": f"not_null_users_{n}",
              "status": "fail", "message": "Got 3 results, configured to fail if != 0", "failures": 3}
             for n in range(21)]


@dg.asset
def access_tables() -> int:
    raise dg.Failure(description="dbt build: 22 node(s) failed", metadata={DBT_FAILURES_METADATA: dg.MetadataValue.json(
        [{"unique_id": "model.x.users", "resource_type": "model", "name": "users", "status": "error",
          "message": "Binder Error: no column role_id", "failures": None}, *DBT_NODES])})


@dg.asset
def organization() -> int:
    raise SettingsError("LANGSMITH_ORGANIZATION_ID must be a UUID, got 'acme'")


def test_a_failed_builds_summary_lists_its_dbt_nodes_and_a_settings_error_gets_the_doctors_fix():
    with runner.ephemeral_instance() as instance:
        built = dg.materialize([access_tables], instance=instance, raise_on_error=False)
        configured = dg.materialize([organization], instance=instance, raise_on_error=False)
        failure, _, dbt_errors, fix = runner._failure_summary(built)
        settings_failure, _, _, settings_fix = runner._failure_summary(configured)
    assert failure == "access_tables: dbt build: 22 node(s) failed" and fix is None
    # One line per node, as `sync` prints them after "dbt: ", the first 20 of them.
    assert dbt_errors == ["ERROR model users: Binder Error: no column role_id"] + [
        f"FAIL test not_null_users_{n} (3 rows): Got 3 results, configured to fail if != 0" for n in range(19)]
    assert settings_failure == "organization: LANGSMITH_ORGANIZATION_ID must be a UUID, got 'acme'"
    assert settings_fix == "set LANGSMITH_ORGANIZATION_ID to your organization's UUID (Settings > Organization)"


@dg.asset
def working_copy() -> int:
    raise LeftoverWalError(Path("/data/langsmith_access.working.duckdb"), "WAL does not match database file",
                           analysts_copy=False)


@dg.asset
def run_without_org() -> int:
    raise RunWithoutOrg("Run r1 of provision_workspace_roles names no org, and 2 are configured (acme, beta)")


def test_a_failure_of_a_subclass_of_an_advised_error_gets_its_own_fix_not_none():
    # A leftover DuckDB log beside the working file fails a run as LeftoverWalError (a
    # DatabaseUnusableError): the operator is told to move the log aside, not left without a fix,
    # nor told to move the database itself aside.
    with runner.ephemeral_instance() as instance:
        wal = dg.materialize([working_copy], instance=instance, raise_on_error=False)
        orgless = dg.materialize([run_without_org], instance=instance, raise_on_error=False)
        _, _, _, wal_fix = runner._failure_summary(wal)
        _, _, _, orgless_fix = runner._failure_summary(orgless)
    assert wal_fix is not None and "move" in wal_fix and ".wal" in wal_fix, wal_fix
    assert wal_fix != DatabaseUnusableError.fix
    assert orgless_fix == RunWithoutOrg.fix


@dg.asset
def long_query() -> int:
    # Rows enough to run for a long while: the signal lands while DuckDB computes them. One thread:
    # with more, a worker thread could take the whole scan as one task and the main thread, the one
    # that checks for signals, would see the Ctrl-C only when the query ended, a minute later.
    with duckdb.connect(config={"threads": 1}) as conn:
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        return conn.execute("SELECT count(*) FROM range(10000000000) AS t(a) WHERE a % 7 = 3").fetchone()[0]


def _stop() -> int:
    raise KeyboardInterrupt  # where Ctrl-C lands between Dagster's checkpoints, in plain Python


stopped_in_our_code = dg.asset(name="stopped_in_our_code")(_stop)


# In a DuckDB query: DuckDB takes the exception Dagster's SIGINT handler raises and fails the
# query with its own RuntimeError("Query interrupted"): the run was not taken as interrupted, so
# `sync --all-orgs` went on to the next org, and the failure read "Query interrupted" with no fix.
# In our own code: Dagster records the KeyboardInterrupt itself, not its own interruption error.
@pytest.mark.parametrize("stopped_asset", [long_query, stopped_in_our_code], ids=["duckdb-query", "our-code"])
def test_ctrl_c_is_an_interruption_wherever_it_lands(stopped_asset):
    """The run is taken as interrupted (`sync --all-orgs` stops there), said in words, with the fix."""
    with runner.ephemeral_instance() as instance:
        stopped = dg.materialize([stopped_asset], instance=instance, raise_on_error=False)
    assert not stopped.success
    assert runner._interrupted(stopped.all_events)
    message, _, _, fix = runner._failure_summary(stopped)
    name = stopped_asset.key.to_user_string()
    assert message == f"{name}: interrupted (Ctrl-C or a signal) before it finished", message
    assert fix == runner.INTERRUPTED_FIX


def _serve_as_the_only_job(monkeypatch, org, name: str, compute) -> None:
    """run_job of any job name runs one asset computed by ``compute``, partitioned by ``org``."""
    asset = dg.asset(name=name, partitions_def=dg.StaticPartitionsDefinition([org.slug]))(compute)
    job = dg.Definitions(assets=[asset], jobs=[dg.define_asset_job("only_job")]).resolve_job_def("only_job")
    monkeypatch.setattr(runner, "job_definition", lambda job_name: job)


def _endpoint_refused() -> int:
    raise SettingsError("LANGSMITH_ENDPOINT must start with https://, got 'ftp://example.org'")


def test_a_failure_of_an_org_of_the_orgs_file_names_its_entry_not_the_single_org_variables(tmp_path, monkeypatch):
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text(f"- slug: eu\n  organization_id: {uuid.uuid4()}\n  endpoint: http://127.0.0.1:9\n"
                         "  api_key_env: LANGSMITH_API_KEY_EU\n")
    org = load_orgs({"LANGSMITH_ACCESS_ORGS_FILE": str(orgs_file), "LANGSMITH_API_KEY_EU": "lsv2_sk_" + "0" * 32,
                     "LANGSMITH_ACCESS_DUCKDB": str(tmp_path / "a.duckdb")}).get("eu")
    _serve_as_the_only_job(monkeypatch, org, "endpoint", _endpoint_refused)

    outcome = runner.run_job("sync", {}, org=org)

    assert not outcome.success
    where = f"the endpoint of org 'eu' in {orgs_file}"
    assert outcome.failure == f"endpoint: {where} must start with https://, got 'ftp://example.org'", outcome.failure
    assert outcome.fix is not None and where in outcome.fix and "LANGSMITH_ENDPOINT" not in outcome.fix, outcome.fix


def _unwritable_export() -> int:
    raise PermissionError(errno.EACCES, "Permission denied", "/elsewhere/exports/users.csv")


def _unwritable_database_folder() -> int:
    raise PermissionError(errno.EACCES, "Permission denied", "/srv/access/langsmith_access.lock")


@pytest.mark.parametrize(("compute", "fix"), [
    (_unwritable_export, "this user may not write /elsewhere/exports/users.csv"),
    (_unwritable_database_folder, UNWRITABLE_FOLDER_FIX),
], ids=["another-path", "the-databases-folder"])
def test_a_run_that_cannot_write_a_path_gets_the_fix_for_that_path(compute, fix, tmp_path, monkeypatch):
    """The run's fix tells the org's database folder (LANGSMITH_ACCESS_DUCKDB's) from any other
    path: run_job hands the summary the org's database, as the CLI's own errors are told apart."""
    org = load_orgs({"LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32, "LANGSMITH_ORGANIZATION_ID": str(uuid.uuid4()),
                     "LANGSMITH_ENDPOINT": "http://127.0.0.1:9",
                     "LANGSMITH_ACCESS_DUCKDB": "/srv/access/langsmith_access.duckdb"}).get()
    _serve_as_the_only_job(monkeypatch, org, "unwritable", compute)

    outcome = runner.run_job("sync", {}, org=org)

    assert not outcome.success and not outcome.interrupted
    assert outcome.fix is not None and outcome.fix.startswith(fix), outcome.fix


def test_a_log_folder_that_cannot_be_made_still_returns_the_failure(tmp_path, monkeypatch):
    # The log is a convenience: a log_dir that cannot be made (a file in its way, a read-only
    # folder) must not turn the failed run's summary and fix into a traceback.
    org = load_orgs({"LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32, "LANGSMITH_ORGANIZATION_ID": str(uuid.uuid4()),
                     "LANGSMITH_ENDPOINT": "http://127.0.0.1:9", "LANGSMITH_ACCESS_DUCKDB": str(tmp_path / "a.duckdb")}).get()
    _serve_as_the_only_job(monkeypatch, org, "endpoint", _endpoint_refused)
    in_the_way = tmp_path / "logs"
    in_the_way.write_text("a file where the log folder would go\n")

    outcome = runner.run_job("sync", {}, org=org, log_dir=in_the_way / "runs")

    assert not outcome.success and outcome.log_path is None
    assert outcome.failure == "endpoint: LANGSMITH_ENDPOINT must start with https://, got 'ftp://example.org'"
    assert outcome.fix is not None and "LANGSMITH_ENDPOINT" in outcome.fix, outcome.fix


def test_an_org_the_definitions_do_not_serve_is_refused_before_anything_runs(tmp_path, monkeypatch):
    # The orgs file changed after the definitions were loaded: a run for an org they do not serve
    # is refused with the orgs they do and the fix, not left to Dagster's unknown-partition error.
    served = load_orgs({"LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32, "LANGSMITH_ORGANIZATION_ID": str(uuid.uuid4()),
                        "LANGSMITH_ENDPOINT": "http://127.0.0.1:9",
                        "LANGSMITH_ACCESS_DUCKDB": str(tmp_path / "a.duckdb")}).get()
    ran: list[str] = []
    _serve_as_the_only_job(monkeypatch, served, "one", lambda: ran.append("one") or 1)
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text(f"- slug: eu\n  organization_id: {uuid.uuid4()}\n  endpoint: http://127.0.0.1:9\n"
                         "  api_key_env: LANGSMITH_API_KEY_EU\n")
    eu = load_orgs({"LANGSMITH_ACCESS_ORGS_FILE": str(orgs_file), "LANGSMITH_API_KEY_EU": "lsv2_sk_" + "0" * 32,
                    "LANGSMITH_ACCESS_DUCKDB": str(tmp_path / "a.duckdb")}).get("eu")

    with pytest.raises(SettingsError, match=r"^Org 'eu' is not one of the orgs the definitions serve \(default\): "
                                            r"add it to the orgs file \(LANGSMITH_ACCESS_ORGS_FILE\)"):
        runner.run_job("sync", {}, org=eu, log_dir=tmp_path / "logs")
    assert ran == [] and not (tmp_path / "logs").exists()


def _one() -> int:
    return 1


def test_a_progress_display_that_fails_never_fails_the_run(tmp_path, monkeypatch):
    # The CLI prints progress to stderr: a closed pipe (`langsmith-access sync 2>&1 | head`) must
    # not turn a sync that succeeded into a failure.
    org = load_orgs({"LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32, "LANGSMITH_ORGANIZATION_ID": str(uuid.uuid4()),
                     "LANGSMITH_ENDPOINT": "http://127.0.0.1:9", "LANGSMITH_ACCESS_DUCKDB": str(tmp_path / "a.duckdb")}).get()
    _serve_as_the_only_job(monkeypatch, org, "one", _one)
    shown: list[str] = []

    def closed_pipe(line: str) -> None:
        shown.append(line)
        raise BrokenPipeError(32, "Broken pipe")

    outcome = runner.run_job("sync", {}, org=org, progress=closed_pipe)

    assert outcome.success, outcome.failure
    assert shown  # it was called, and failed


def test_a_run_stopped_under_way_says_so_writes_its_log_and_gives_sigterm_back(tmp_path, monkeypatch):
    # What `sync --all-orgs` reads to stop at the org Ctrl-C stopped (RunOutcome.interrupted), and
    # what the operator reads: the fix, and the run's events with the interruption's traceback.
    org = load_orgs({"LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32, "LANGSMITH_ORGANIZATION_ID": str(uuid.uuid4()),
                     "LANGSMITH_ENDPOINT": "http://127.0.0.1:9", "LANGSMITH_ACCESS_DUCKDB": str(tmp_path / "a.duckdb")}).get()
    _serve_as_the_only_job(monkeypatch, org, "stopped_in_our_code", _stop)
    before = signal.getsignal(signal.SIGTERM)
    # A Python caller's own logging of Dagster: quiet during the run only.
    monkeypatch.setattr(logging.getLogger("dagster"), "level", logging.INFO)

    outcome = runner.run_job("stopped_job", {}, org=org, log_dir=tmp_path / "logs")

    assert not outcome.success and outcome.interrupted
    assert outcome.failure == "stopped_in_our_code: interrupted (Ctrl-C or a signal) before it finished"
    assert outcome.fix == runner.INTERRUPTED_FIX
    assert outcome.log_path is not None and "KeyboardInterrupt" in outcome.log_path.read_text()
    assert signal.getsignal(signal.SIGTERM) is before
    assert logging.getLogger("dagster").level == logging.INFO


def test_a_run_gives_sigterm_back_the_handler_it_had(tmp_path):
    # Dagster maps SIGTERM to SIGINT's handler for a run and leaves it so: in a process started in
    # the background (SIGINT ignored) a `kill` after the first run did nothing.
    def on_sigterm(signum, frame):
        raise SystemExit(143)

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, on_sigterm)
        with SandboxServer(generate_org(seed=3, members=5, workspaces=1)) as sandbox:
            org = load_orgs(sandbox.environment(tmp_path / "access.duckdb")).get()
            outcome = runner.run_job("check_langsmith_connection", {}, org=org)
        assert outcome.success, outcome.failure
        assert signal.getsignal(signal.SIGTERM) is on_sigterm
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


def _run_in_a_process_of_its_own(tmp_path: Path, script: str, **options) -> subprocess.CompletedProcess:
    """``script`` run by this Python with a persistent instance (DAGSTER_HOME under ``tmp_path``)
    and a database path under ``tmp_path`` as its argument."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp_path / "script.py").write_text(script)
    return subprocess.run([sys.executable, str(tmp_path / "script.py"), str(tmp_path / "access.duckdb")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "DAGSTER_HOME": str(home)},
                          **options)


# A run whose only asset hangs up on itself (as a closed terminal or a dropped ssh session does),
# run by runner.run_job in a process of its own on a persistent instance (DAGSTER_HOME).
_HANGS_UP = """
import os, signal, sys, time, uuid
import dagster as dg
from langsmith_access import runner
from langsmith_access.settings import load_orgs

org = load_orgs({"LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32, "LANGSMITH_ORGANIZATION_ID": str(uuid.uuid4()),
                 "LANGSMITH_ENDPOINT": "http://127.0.0.1:9", "LANGSMITH_ACCESS_DUCKDB": sys.argv[1]}).get()

def hang_up() -> int:
    os.kill(os.getpid(), signal.SIGHUP)
    time.sleep(1)  # the signal lands here (ignored under nohup: the run goes on)
    return 1

asset = dg.asset(name="hung_up", partitions_def=dg.StaticPartitionsDefinition([org.slug]))(hang_up)
job = dg.Definitions(assets=[asset], jobs=[dg.define_asset_job("only_job")]).resolve_job_def("only_job")
runner.job_definition = lambda job_name: job
with dg.DagsterInstance.get() as instance:
    outcome = runner.run_job("only_job", {}, org=org, dagster_instance=instance)
    status = instance.get_run_by_id(outcome.run_id).status.value
print(outcome.success, outcome.interrupted, status, signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)
"""


@pytest.mark.parametrize("nohup", [False, True], ids=["terminal", "nohup"])
def test_a_hangup_stops_a_run_as_interrupted_and_recorded_unless_ignored(tmp_path, nohup):
    # SIGHUP's default ended the process at once: the run stayed STARTED in DAGSTER_HOME, and the
    # sensors took the org's provisioning as in flight until run monitoring failed it an hour later.
    done = _run_in_a_process_of_its_own(
        tmp_path, _HANGS_UP, preexec_fn=(lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if nohup else None)
    assert done.returncode == 0, done.stderr[-2000:]
    if nohup:  # ignored before the run, ignored during it, and still ignored after
        assert done.stdout.split() == ["True", "False", "SUCCESS", "True"], done.stdout
    else:  # interrupted, the run recorded as failed, SIGHUP's default given back
        assert done.stdout.split() == ["False", "True", "FAILURE", "False"], done.stdout


# A provisioning run whose only asset is killed (SIGKILL: no handler runs, as under the OOM
# killer), run by runner.run_job in a process of its own on a persistent instance.
_KILLED = """
import os, signal, sys, uuid
import dagster as dg
from langsmith_access import runner
from langsmith_access.names import PROVISION_JOB
from langsmith_access.settings import load_orgs

org = load_orgs({"LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32, "LANGSMITH_ORGANIZATION_ID": str(uuid.uuid4()),
                 "LANGSMITH_ENDPOINT": "http://127.0.0.1:9", "LANGSMITH_ACCESS_DUCKDB": sys.argv[1]}).get()

def killed() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 1

asset = dg.asset(name="killed", partitions_def=dg.StaticPartitionsDefinition([org.slug]))(killed)
job = dg.Definitions(assets=[asset], jobs=[dg.define_asset_job(PROVISION_JOB)]).resolve_job_def(PROVISION_JOB)
runner.job_definition = lambda job_name: job
with dg.DagsterInstance.get() as instance:
    runner.run_job(PROVISION_JOB, {}, org=org, dagster_instance=instance)
"""


def test_a_run_whose_process_was_killed_is_failed_by_the_next_tick_not_left_in_flight(tmp_path, monkeypatch):
    # It stayed STARTED in DAGSTER_HOME: the sensors took the org's provisioning as in flight (and
    # the org's run slot as taken) until run monitoring failed it, an hour later.
    done = _run_in_a_process_of_its_own(tmp_path, _KILLED)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED and run.tags[PROCESS_TAG].split(":")[0] == socket.gethostname()
        # A run of a process that still runs, or that this host cannot see, is left alone.
        alive = instance.add_run(run.with_status(dg.DagsterRunStatus.STARTED)._replace(
            run_id=str(uuid.uuid4()), tags={**run.tags, ORG_TAG: "live", PROCESS_TAG: this_process()}))
        elsewhere = instance.add_run(run._replace(
            run_id=str(uuid.uuid4()), tags={**run.tags, ORG_TAG: "far", PROCESS_TAG: "another-host:1:1:1"}))

        assert orgs_with_provisioning_run_in_flight(instance) == {"live", "far"}

        failed = instance.get_run_by_id(run.run_id)
        assert failed.status == dg.DagsterRunStatus.FAILURE
        [failure] = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
        assert "ended without finishing it (killed, or its machine stopped)" in failure.event_log_entry.message
        assert {instance.get_run_by_id(r.run_id).status for r in (alive, elsewhere)} == {dg.DagsterRunStatus.STARTED}
        assert fail_runs_of_ended_processes(instance) == []  # once


# A run the code server started (no CLI process tag at launch: Dagster's run worker executes it)
# whose worker is killed with SIGKILL, as when the code server and its runs die with kill -9.
_WORKER_KILLED = """
import os, signal, sys, uuid
import dagster as dg
from langsmith_access.defs.orgs import RunOrganization, org_run_config
from langsmith_access.settings import load_orgs

orgs = load_orgs({"LANGSMITH_API_KEY": "lsv2_sk_" + "0" * 32, "LANGSMITH_ORGANIZATION_ID": str(uuid.uuid4()),
                  "LANGSMITH_ENDPOINT": "http://127.0.0.1:9", "LANGSMITH_ACCESS_DUCKDB": sys.argv[1]})

@dg.op
def killed(organization: RunOrganization) -> None:
    os.kill(os.getpid(), signal.SIGKILL)

@dg.job(config=org_run_config(orgs=orgs), executor_def=dg.in_process_executor,
        resource_defs={"organization": RunOrganization(orgs=orgs)})
def started_by_the_code_server():
    killed()

with dg.DagsterInstance.get() as instance:
    # sys.argv[2]: a process tag the run already carries (a re-execution copies its parent's).
    started_by_the_code_server.execute_in_process(
        partition_key="default", instance=instance,
        tags={"langsmith_access/process": sys.argv[2]} if len(sys.argv) > 2 else None)
"""


def test_a_code_server_run_whose_worker_was_killed_is_failed_by_the_next_tick(tmp_path, monkeypatch):
    # Its worker gone with the code server (kill -9 of the service, its machine stopped), the run
    # stayed STARTED: its org's next runs queued behind it, and its provisioning counted as in
    # flight, until run monitoring's max_runtime_seconds (an hour) failed it. The run's resources
    # tag it with the process that runs it, as the CLI does, so the sensors' tick fails it.
    done = _run_in_a_process_of_its_own(tmp_path, _WORKER_KILLED)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED and run.tags[ORG_TAG] == "default"
        assert run.tags[PROCESS_TAG].split(":")[0] == socket.gethostname()
        orgs_with_provisioning_run_in_flight(instance)
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE


def test_a_re_executed_run_is_judged_by_its_own_process_not_its_parents(tmp_path, monkeypatch):
    # The UI's re-execution copies the parent run's tags, its process tag among them: a healthy
    # re-execution must not be failed because its parent's process ended, and one whose own
    # worker died must be, whatever process the copied tag names (here one that still runs).
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp_path / "script.py").write_text(_WORKER_KILLED)
    done = subprocess.run([sys.executable, str(tmp_path / "script.py"), str(tmp_path / "access.duckdb"), this_process()],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "DAGSTER_HOME": str(home)})
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert run.tags[PROCESS_TAG] != this_process()  # its worker's own, not the copied one
        orgs_with_provisioning_run_in_flight(instance)
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        # Its re-execution, started but not yet tagged by its worker: the copied tag names the
        # ended worker of its parent, and says nothing of the process running it.
        child = instance.add_run(run.with_status(dg.DagsterRunStatus.STARTED)._replace(
            run_id=str(uuid.uuid4()), parent_run_id=run.run_id, root_run_id=run.run_id))
        orgs_with_provisioning_run_in_flight(instance)
        assert instance.get_run_by_id(child.run_id).status == dg.DagsterRunStatus.STARTED


def test_a_process_is_told_ended_only_where_that_can_be_told():
    host, namespace, pid, started = this_process().rsplit(":", 3)
    assert (host, pid) == (socket.gethostname(), str(os.getpid())) and namespace and started
    assert not has_ended(this_process())
    exited = subprocess.Popen(["true"])
    exited.wait()
    assert has_ended(f"{host}:{namespace}:{exited.pid}:{started}")
    assert has_ended(f"{host}:{namespace}:{pid}:{int(started) + 1}")  # this pid, given to another process
    for unknown in (f"elsewhere:{namespace}:{exited.pid}:1", f"{host}:1:{exited.pid}:1",  # another host, namespace
                    f"{host}::{exited.pid}:1", "not a process", f"{host}:{namespace}:x:1"):
        assert not has_ended(unknown), unknown


def test_a_run_on_another_thread_leaves_signal_handlers_alone(tmp_path):
    # Only the main thread may set a signal handler: a run from any other thread (a Python
    # caller's worker) must neither touch SIGTERM's nor fail trying to give it back.
    before = signal.getsignal(signal.SIGTERM)
    ended: list = []

    def run(org):
        try:
            ended.append(runner.run_job("check_langsmith_connection", {}, org=org))
        except BaseException as error:
            ended.append(error)

    with SandboxServer(generate_org(seed=3, members=5, workspaces=1)) as sandbox:
        org = load_orgs(sandbox.environment(tmp_path / "access.duckdb")).get()
        worker = threading.Thread(target=run, args=(org,))
        worker.start()
        worker.join()
    [outcome] = ended
    assert isinstance(outcome, runner.RunOutcome) and outcome.success, outcome
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_provisioning_run_tagged_only_with_its_partition_counts_as_its_orgs_run_in_flight():
    # The schedules read a run's org from ORG_TAG, else its partition key (a run launched before
    # runs carried the tag, or with the tag removed in the Launchpad); the provisioning sensors
    # read ORG_TAG only, and launched a second run beside such a run, which found the first one's
    # requests claimed.
    with dg.DagsterInstance.ephemeral() as instance:
        for status, tags in [(dg.DagsterRunStatus.STARTED, {"dagster/partition": "acme"}),
                             (dg.DagsterRunStatus.STARTING, {ORG_TAG: "globex"}),
                             (dg.DagsterRunStatus.SUCCESS, {"dagster/partition": "initech"}),
                             (dg.DagsterRunStatus.STARTED, {})]:
            instance.add_run(dg.DagsterRun(job_name=PROVISION_JOB, run_id=str(uuid.uuid4()), status=status, tags=tags))

        assert orgs_with_provisioning_run_in_flight(instance) == {"acme", "globex"}

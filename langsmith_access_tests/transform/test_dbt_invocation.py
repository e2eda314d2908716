"""The one dbt wiring (langsmith_access/transform/): a real `dbt build` on a real DuckDB file,
told which file to build by a profile of its own, and reporting structured node results."""

import os
import signal

import duckdb
import pytest
from dbt.cli.main import dbtRunner

from langsmith_access.store.schema import ensure_schema
from langsmith_access.transform import DbtRunError, build, build_selection, project_hash, run_dbt, write_profile
from langsmith_access.transform.invocation import dbt_command
from langsmith_access.transform.project import PROFILES_FILE, built_by_this_project


def _raw_database(path, *, duplicate_role: bool):
    with duckdb.connect(str(path)) as conn:
        ensure_schema(conn)
        role = ["sync-1", "2026-01-01 00:00:00+00", "role-a", "ROLE_A", "Role A", "", "workspace",
                None, []]
        columns = [row[1] for row in conn.execute("PRAGMA table_info('raw.roles')").fetchall()]
        row = dict(zip(["sync_id", "fetched_at", "role_id", "name", "display_name", "description",
                        "access_scope", "organization_id", "permissions"], role))
        values = [row.get(column) for column in columns]
        for _ in range(2 if duplicate_role else 1):
            conn.execute(f"INSERT INTO raw.roles VALUES ({', '.join('?' for _ in values)})", values)


def test_a_failing_test_is_reported_with_its_node_status_and_message(tmp_path, monkeypatch):
    database = tmp_path / "access.sync-scratch.duckdb"
    _raw_database(database, duplicate_role=True)
    # dbt masks the values of DBT_ENV_SECRET_* variables in its log; so does langsmith-access's.
    monkeypatch.setenv("DBT_ENV_SECRET_EXAMPLE", "stg_langsmith__pending")
    # dbt's own file logger stays off whatever the environment asks (it would write the SQL).
    monkeypatch.setenv("DBT_LOG_LEVEL_FILE", "debug")
    environment_before = dict(os.environ)

    with build(database, tmp_path / "access.dbt") as invocation:
        streamed = list(invocation)

    assert os.environ == environment_before  # nothing process-wide was touched
    assert not invocation.success and invocation.returncode == 1
    (failed,) = invocation.failed_nodes
    assert failed.resource_type == "test" and failed.status == "fail"
    assert failed.name == "primary_key_stg_langsmith__roles_role_id"
    assert failed.failures == 1
    assert failed.message == "Got 1 result, configured to fail if != 0"
    assert failed.unique_id.startswith("test.langsmith_access.primary_key_stg_langsmith__roles")
    # Streamed as they finished (the message arrives with dbt's summary, after the stream).
    assert [result.unique_id for result in streamed if result.failed] == [failed.unique_id]
    # Everything downstream of the failure was skipped, not run.
    skipped = {result.name for result in invocation.results if result.status == "skipped"}
    assert {"roles", "grants", "grant_history"} <= skipped
    message = invocation.failure_message()
    assert message.startswith(f"dbt build --exclude-resource-type unit_test --no-write-json failed (exit 1): "
                              f"1 node(s) failed, {len(skipped)} skipped\n"), message
    assert "FAIL test primary_key_stg_langsmith__roles_role_id (1 rows)" in message
    assert "configured to fail if != 0" in message
    # dbt keeps one connection for the whole invocation; a failed one lets go of the file too.
    assert _open_for_writing_in_another_process(database) == "ok"
    # The run's dbt.log (written from dbt's events, not by dbt's own file logger): dbt's info
    # and error lines, no debug ones (the SQL), a secret masked.
    log = (tmp_path / "access.dbt" / "dbt.log").read_text()
    assert "[info ] [dbt       ]: Running with dbt=" in log
    assert "[error] " in log and "FAIL 1 primary_key_stg_langsmith__roles_role_id" in log
    assert "START sql table model staging.*****_invites" in log
    assert "stg_langsmith__pending" not in log
    assert "[debug]" not in log and "create or replace" not in log.lower()
    # Each invocation's lines start under dbt's separator, as in dbt's own log.
    assert log.index(f"\n\n{'=' * 30} ") < log.index("Running with dbt="), log[:300]


def test_a_build_names_its_database_in_a_profile_of_its_own_and_skips_unit_tests(tmp_path):
    database = tmp_path / "access.sync-scratch.duckdb"
    _raw_database(database, duplicate_role=False)
    dbt_dir = tmp_path / "access.dbt"

    with build(database, dbt_dir) as invocation:
        invocation.raise_on_failure()

    assert invocation.success and invocation.failed_nodes == []
    # Its results are the one run's: iterating it again would run dbt a second time.
    with pytest.raises(RuntimeError, match="a dbt invocation can be iterated once"):
        next(iter(invocation))
    assert "--exclude-resource-type" in invocation.args and "unit_test" in invocation.args
    kinds = {result.resource_type for result in invocation.results}
    assert kinds == {"model", "snapshot", "test"}
    assert all(result.status in ("success", "pass") for result in invocation.results)
    profile = (dbt_dir / PROFILES_FILE).read_text()
    assert str(database) in profile
    # The same database always gets the same profile (dbt keeps its saved parse).
    before = profile
    write_profile(dbt_dir, database)
    assert (dbt_dir / PROFILES_FILE).read_text() == before
    assert (dbt_dir / "partial_parse.msgpack").exists()
    # Results came as events: dbt wrote no run_results.json (only a build with write_json does).
    assert not (dbt_dir / "run_results.json").exists()
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT role_id FROM main.roles").fetchall() == [("role-a",)]
        # The file says which project built it (a provisioning refresh rebuilds only part of it then).
        assert built_by_this_project(conn)
    assert len(project_hash()) == 16


def _open_for_writing_in_another_process(database) -> str:
    """What a second process gets when it opens ``database`` read-write ("ok" or its error)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c",
         "import duckdb, sys\n"
         "try:\n"
         "    duckdb.connect(sys.argv[1]).execute('CREATE TABLE IF NOT EXISTS probe (x INT)').close()\n"
         "    print('ok')\n"
         "except Exception as error:\n"
         "    print(error)\n", str(database)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return done.stdout.strip()


def test_dbt_runs_in_this_process_and_lets_go_of_the_file_when_it_ends(tmp_path):
    """dbt runs inside the calling process (dbt's programmatic runner); when a build ends, no
    handle on the database is left: another process can open it for writing at once."""
    import threading

    database = tmp_path / "access.sync-scratch.duckdb"
    _raw_database(database, duplicate_role=False)
    threads_before = threading.active_count()

    with build(database, tmp_path / "access.dbt") as invocation:
        invocation.raise_on_failure()

    assert _open_for_writing_in_another_process(database) == "ok"
    assert threading.active_count() == threads_before  # dbt's worker thread is gone
    # A second build in the same process works the same (nothing left over from the first).
    with build(database, tmp_path / "access.dbt", select=["roles"]) as again:
        again.raise_on_failure()
    assert [result.name for result in again.results if result.resource_type == "model"] == ["roles"]
    assert _open_for_writing_in_another_process(database) == "ok"


def test_leaving_a_build_early_waits_for_dbt_and_frees_the_file(tmp_path, monkeypatch):
    """A caller that stops reading (its own error, Ctrl-C) leaves no dbt thread and no handle
    on the file behind, and the build never counts as a success."""
    import threading

    from langsmith_access.transform import invocation as dbt_invocation

    database = tmp_path / "access.sync-scratch.duckdb"
    _raw_database(database, duplicate_role=False)
    threads_before = threading.active_count()
    cancelled = []
    cancel = dbt_invocation._cancel_queries
    monkeypatch.setattr(dbt_invocation, "_cancel_queries", lambda: (cancelled.append(1), cancel()))

    with build(database, tmp_path / "access.dbt") as invocation:
        first = next(iter(invocation))
    assert first.unique_id
    assert not invocation.success
    # dbt was stopped, not left to finish: the marts at the end of the graph were never built.
    with duckdb.connect(str(database), read_only=True) as conn:
        built = {name for (name,) in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()}
    assert not {"grants", "effective_access"} & built, built
    # Stopped at once: the nodes dbt started after the caller left failed before any query.
    assert "not run: the build was stopped" in (tmp_path / "access.dbt" / "dbt.log").read_text()
    # And the queries running when the caller left were interrupted, not left to run to their end
    # (a large org's model can take a minute).
    assert cancelled
    assert threading.active_count() == threads_before
    assert _open_for_writing_in_another_process(database) == "ok"
    with build(database, tmp_path / "access.dbt") as whole:
        whole.raise_on_failure()
    assert len(whole.results) > 10


def test_an_error_outside_any_node_fails_the_run_and_is_named_in_its_message(tmp_path):
    invocation = run_dbt(["run-operation", "no_such_macro"], database_file=tmp_path / "access.duckdb",
                         dbt_dir=tmp_path / "access.dbt")
    with pytest.raises(DbtRunError) as raised:
        invocation.raise_on_failure()
    assert invocation.returncode == 1 and invocation.results == [] and not invocation.success
    message = str(raised.value)
    assert message.startswith("dbt run-operation no_such_macro failed (exit 1): 0 node(s) failed\n"), message
    assert 'could not find a macro with the name "no_such_macro"' in message


def test_a_database_dbt_cannot_open_is_named_once_and_without_dbts_stack_trace(tmp_path):
    # The failure message is for a person (the CLI prints it line by line): dbt's stack trace
    # stays in dbt.log, and the error dbt both logged and raised is said once.
    database = tmp_path / "access.duckdb"
    database.write_bytes(b"not a database" * 1000)
    invocation = run_dbt(["build", "--select", "roles"], database_file=database,
                         dbt_dir=tmp_path / "access.dbt").wait()
    assert not invocation.success and invocation.returncode == 1
    message = invocation.failure_message()
    assert message.count("is not a valid DuckDB database file") == 1, message
    assert "Traceback" not in message, message
    assert "Traceback (most recent call last)" in (tmp_path / "access.dbt" / "dbt.log").read_text()


def test_dbts_warnings_reach_the_runs_log(tmp_path):
    # A build that selects nothing succeeds and builds nothing; dbt says why only as a warning,
    # and dbt.log is where an operator looks for it.
    invocation = run_dbt(["build", "--select", "no_such_model"], database_file=tmp_path / "access.duckdb",
                         dbt_dir=tmp_path / "access.dbt").wait()
    assert invocation.success and invocation.results == []
    log = (tmp_path / "access.dbt" / "dbt.log").read_text()
    assert "[warn ] [dbt       ]: The selection criterion 'no_such_model' does not match any enabled nodes" in log, log


def test_a_command_dbt_refuses_before_it_starts_is_a_failure_saying_why(tmp_path):
    invocation = run_dbt(["build", "--no-such-flag"], database_file=tmp_path / "access.duckdb",
                         dbt_dir=tmp_path / "access.dbt").wait()
    assert not invocation.success and invocation.returncode == 1
    assert invocation.failure_message() == (
        "dbt build --no-such-flag failed (exit 1): 0 node(s) failed\n"
        "  DbtUsageException: No such option '--no-such-flag'.")


def test_an_error_on_dbts_thread_after_dbt_returned_fails_the_run_saying_what(tmp_path, monkeypatch):
    # dbt returns its own outcome; what fails around it on the worker thread (here: letting go of
    # the file) must not be taken for a success.
    from langsmith_access.transform import invocation as dbt_invocation

    def cannot_close() -> None:
        raise OSError("the file could not be closed")

    monkeypatch.setattr(dbt_invocation, "close_dbt_connection", cannot_close)
    invocation = run_dbt(["parse"], database_file=tmp_path / "access.duckdb", dbt_dir=tmp_path / "access.dbt").wait()
    assert not invocation.success and invocation.returncode == 1
    assert invocation.failure_message().endswith("\n  OSError: the file could not be closed"), invocation.failure_message()


def test_a_model_that_errors_is_named_as_failed_with_dbts_message(tmp_path):
    database = tmp_path / "access.sync-scratch.duckdb"
    _raw_database(database, duplicate_role=False)
    with duckdb.connect(str(database)) as conn:
        conn.execute("ALTER TABLE raw.roles DROP COLUMN access_scope")  # the staging model selects it

    with build(database, tmp_path / "access.dbt", select=["stg_langsmith__roles"]) as invocation:
        invocation.wait()

    assert not invocation.success
    (failed,) = invocation.failed_nodes
    assert (failed.resource_type, failed.name, failed.status) == ("model", "stg_langsmith__roles", "error")
    assert "access_scope" in (failed.message or "")
    assert "ERROR model stg_langsmith__roles: " in invocation.failure_message()
    assert invocation.errors == []  # only errors outside any node are listed on their own


def test_a_build_past_its_timeout_stops_at_once_fails_and_frees_the_file(tmp_path, monkeypatch):
    """The timeout is a deadline for the whole build, not for the query running when it passes:
    a timer that fires between two queries (here: with nothing to interrupt, as if every query
    were between) still stops the build, every node dbt starts after it fails at once, and the
    run says why."""
    import threading

    from langsmith_access.transform import invocation as dbt_invocation

    database = tmp_path / "access.sync-scratch.duckdb"
    _raw_database(database, duplicate_role=False)
    monkeypatch.setattr(dbt_invocation, "_cancel_queries", lambda: None)  # no query running, ever
    threads_before = set(threading.enumerate())

    with build(database, tmp_path / "access.dbt", timeout_seconds=0.01) as invocation:
        invocation.wait()

    assert not invocation.success and invocation.returncode == 1
    assert "dbt was stopped at its timeout, after 0.01 s" in invocation.failure_message(), invocation.failure_message()
    started = [result for result in invocation.results if result.status != "skipped"]
    assert started and all(result.status == "error" and "not run: the build was stopped" in result.message
                           for result in started), [(r.name, r.status, r.message) for r in started]
    # Neither dbt's thread nor the timer's is left (threads of earlier tests may have ended meanwhile).
    assert set(threading.enumerate()) - threads_before == set()
    assert _open_for_writing_in_another_process(database) == "ok"


def test_a_build_waiting_for_another_spends_none_of_its_timeout_and_never_stops_the_others_queries(
        tmp_path, monkeypatch):
    """dbt runs one invocation at a time per process, and its adapters are the process's: a build
    queued behind another neither counts the wait against its deadline nor, when its deadline
    passes, interrupts the other build's queries."""
    import threading
    import time

    from langsmith_access.transform import invocation as dbt_invocation

    database = tmp_path / "access.sync-scratch.duckdb"
    _raw_database(database, duplicate_role=False)
    cancels: list[float] = []
    monkeypatch.setattr(dbt_invocation, "_cancel_queries", lambda: cancels.append(time.monotonic()))
    outcome: list = []

    def queued_build() -> None:
        with build(database, tmp_path / "access.dbt", timeout_seconds=0.3) as invocation:
            invocation.wait()
        outcome.append(invocation)

    with dbt_invocation._DBT_LOCK:  # another invocation's build, as far as this one can tell
        queued = threading.Thread(target=queued_build)
        queued.start()
        time.sleep(0.8)
        released_at = time.monotonic()
    queued.join(timeout=120)

    (invocation,) = outcome
    assert cancels, "the build's own deadline passed once dbt ran, and stopped it"
    assert min(cancels) >= released_at + 0.3 - 0.05, (min(cancels) - released_at)
    assert not invocation.success
    assert "dbt was stopped at its timeout, after 0.3 s" in invocation.failure_message()


class _CallerLeft(Exception):
    """What a caller's Ctrl-C or own error is to a build it was reading."""


def test_a_build_left_while_it_waits_for_another_never_stops_the_others_queries(tmp_path, monkeypatch):
    """A caller that leaves a build still queued behind another invocation (Ctrl-C while it waits)
    waits for its own dbt to come and go, and interrupts no query until its own dbt holds the
    adapters: until then, the queries running are the other build's."""
    import threading
    import time

    from langsmith_access.transform import invocation as dbt_invocation

    database = tmp_path / "access.sync-scratch.duckdb"
    _raw_database(database, duplicate_role=False)
    cancels: list[float] = []
    monkeypatch.setattr(dbt_invocation, "_cancel_queries", lambda: cancels.append(time.monotonic()))
    held, release = threading.Event(), threading.Event()
    released_at: list[float] = []

    def another_build() -> None:  # another invocation's build, as far as this one can tell
        with dbt_invocation._DBT_LOCK:
            held.set()
            release.wait(timeout=120)
            released_at.append(time.monotonic())

    def caller_leaves(*_) -> None:
        raise _CallerLeft

    other = threading.Thread(target=another_build)
    other.start()
    assert held.wait(timeout=10)
    # The caller leaves 0.3 s into its wait; the other build ends 0.8 s after that.
    threading.Timer(1.1, release.set).start()
    previous = signal.signal(signal.SIGALRM, caller_leaves)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(_CallerLeft), build(database, tmp_path / "access.dbt") as invocation:
            for _ in invocation:
                pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    other.join(timeout=120)

    assert not invocation.success
    assert released_at and all(at >= released_at[0] for at in cancels), [at - released_at[0] for at in cancels]
    assert _open_for_writing_in_another_process(database) == "ok"


def test_a_build_selects_and_excludes_every_node_it_is_given(tmp_path):
    """Each of several selectors counts (a subset launched from the UI, the refresh's two), and so
    does each exclusion (the core sync's inventory models)."""
    dbt_dir = tmp_path / "ls.dbt"
    write_profile(dbt_dir, tmp_path / "x.duckdb")

    def models(*selection: str, resource_type: str = "model") -> set[str]:
        done = dbtRunner().invoke(dbt_command(["ls", *selection, "--resource-type", resource_type, "--output", "name"],
                                              dbt_dir))
        assert done.success, done.exception
        return set(done.result)

    assert models(*build_selection(["roles", "workspaces"])) == {"roles", "workspaces"}
    everything = models(*build_selection())
    assert {"credentials", "grants", "roles"} <= everything
    assert models(*build_selection(exclude=["tag:inventory", "grants"])) == everything - {
        "access_policies", "access_policy_resources", "audit_events", "credentials", "resource_tags",
        "service_accounts", "sso_settings", "grants"}
    # A subset launched without its checks (dagster-dbt's "empty" indirect selection) runs none of
    # the selected models' tests; by default each selected model's tests run with it.
    assert models(*build_selection(["roles"]), resource_type="test")
    assert models(*build_selection(["roles"], indirect_selection="empty"), resource_type="test") == set()

"""The Python API's own checks, made before anything runs (langsmith_access/api.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from langsmith_access import api, runner
from langsmith_access.governance.notifications import Notifier
from langsmith_access.settings import Org, Secret, Settings, SettingsError
from langsmith_access.store.database import AccessDatabase, DatabaseNotReadyError, HeldInThisProcessError
from langsmith_access_tests.helpers import lease_held_elsewhere

ORGANIZATION_ID = "00000000-0000-4000-8000-0000000000aa"


@pytest.mark.parametrize("key", [None, "lsv2_pt_0123456789abcdef0123456789abcdef_0123456789"])
def test_provision_refuses_a_missing_or_personal_key_before_any_run(key, monkeypatch, tmp_path):
    # As `langsmith-access provision` does: a SettingsError naming the variable, not a run that
    # starts and fails (queueing and listing need no key, and resolve_org accepts the org).
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", ORGANIZATION_ID)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    if key is None:
        monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    else:
        monkeypatch.setenv("LANGSMITH_API_KEY", key)
    runs: list[tuple] = []
    monkeypatch.setattr(runner, "run_job", lambda *args, **kwargs: runs.append(args))
    assert api.resolve_org().slug == "default"
    with pytest.raises(SettingsError, match="LANGSMITH_API_KEY") as refused:
        api.provision()
    assert runs == []
    assert key is None or key not in str(refused.value)


def test_an_org_whose_key_variable_is_unset_can_still_queue_and_list(monkeypatch, tmp_path):
    # An org added to the orgs file before its key is set: from Python, as from the CLI, its
    # queue is readable and writable (no request needs the key); only provision() refuses.
    orgs = tmp_path / "orgs.yaml"
    orgs.write_text(f"- slug: eu\n  organization_id: {ORGANIZATION_ID}\n"
                    "  endpoint: https://eu.api.smith.langchain.com\n  api_key_env: LANGSMITH_API_KEY_EU\n")
    monkeypatch.setenv("LANGSMITH_ACCESS_ORGS_FILE", str(orgs))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "data" / "langsmith_access.duckdb"))
    monkeypatch.delenv("LANGSMITH_API_KEY_EU", raising=False)
    assert api.resolve_org("eu").settings.organization_id == ORGANIZATION_ID
    assert api.list_requests(org="eu") == []
    with pytest.raises(SettingsError, match="LANGSMITH_API_KEY_EU named by api_key_env is not set"):
        api.provision(org="eu")


SERVICE_KEY = "lsv2_sk_" + "0" * 32


def _configured(monkeypatch, tmp_path) -> list[tuple]:
    """One org from the single-org variables, a usable key; run_job recorded, not run."""
    monkeypatch.delenv("LANGSMITH_ACCESS_ORGS_FILE", raising=False)
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", ORGANIZATION_ID)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    monkeypatch.setenv("LANGSMITH_API_KEY", SERVICE_KEY)
    runs: list[tuple] = []
    monkeypatch.setattr(runner, "run_job", lambda *args, **kwargs: runs.append((args, kwargs)) or _OUTCOME)
    return runs


# What the recorded run_job answers: a run that succeeded and published.
_OUTCOME = runner.RunOutcome(success=True, run_id="run-1", duration_seconds=0.0)


def test_provision_refuses_an_empty_selection_or_one_id_as_a_string_before_anything_runs(monkeypatch, tmp_path):
    # An empty selection must never be taken for "every pending request" (the whole queue).
    runs = _configured(monkeypatch, tmp_path)
    with pytest.raises(ValueError, match=r"^provision\(request_ids=\[\]\) names no request, so nothing was run"):
        api.provision(request_ids=[])
    with pytest.raises(ValueError, match=r"is a string, not a list of request ids: pass request_ids=\['r-1'\]$"):
        api.provision(request_ids="r-1")
    assert runs == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("request_ids", "refusal"), [
    (5, r"^provision\(request_ids=5\) is not a list of request ids: pass request_ids=\['<request id>', ...\]$"),
    ([None], r"^provision\(request_ids=\[None\]\): request ids are text, got None: pass the ids"),
    (["r-1", ""], r"^provision\(request_ids=\['r-1', ''\]\): request ids are text, got ''"),
    ([b"r-1"], r"request ids are text, got b'r-1'"),
])
def test_provision_refuses_request_ids_that_are_not_a_list_of_ids_before_anything_runs(
        request_ids, refusal, monkeypatch, tmp_path):
    # A number, or a list holding None, an empty id or bytes: refused as provision's own
    # ValueError before the run, not a TypeError or Dagster's config error from the runner.
    runs = _configured(monkeypatch, tmp_path)
    with pytest.raises(ValueError, match=refusal):
        api.provision(request_ids=request_ids)
    assert runs == [] and list(tmp_path.iterdir()) == []


def test_provision_hands_the_job_its_selection_dry_run_log_folder_and_verbosity(monkeypatch, tmp_path):
    runs = _configured(monkeypatch, tmp_path)
    assert api.provision(request_ids=(i for i in ("r-1", "r-2")), log_dir=str(tmp_path / "logs"),
                         verbose=True) is _OUTCOME
    assert api.provision() is _OUTCOME
    [(selected_args, selected), (every_args, every)] = runs
    assert selected_args[:1] == every_args[:1] == ("provision_workspace_roles",)
    assert selected_args[1:] == ({"ops": {"select_requests": {"config": {"dry_run": False,
                                                                         "request_ids": ["r-1", "r-2"]}}}},)
    assert (selected["log_dir"], selected["verbose"]) == (tmp_path / "logs", True)
    assert selected["org"].settings.organization_id == ORGANIZATION_ID
    assert every_args[1:] == ({"ops": {"select_requests": {"config": {"dry_run": False}}}},)
    assert (every["log_dir"], every["verbose"]) == (None, False)


def test_a_dry_run_needs_a_database_and_is_handed_on_as_one(monkeypatch, tmp_path):
    # A dry run writes nothing: without the database (analysts' copy or working file) it says
    # to sync first rather than create one; with either file there, the run is a dry one.
    runs = _configured(monkeypatch, tmp_path)
    with pytest.raises(DatabaseNotReadyError, match="does not exist yet: run `langsmith-access sync` first"):
        api.provision(dry_run=True)
    assert runs == [] and list(tmp_path.iterdir()) == []
    for present in ("access.working.duckdb", "access.duckdb"):
        (tmp_path / present).touch()
        api.provision(dry_run=True)
        assert runs.pop()[0][1] == {"ops": {"select_requests": {"config": {"dry_run": True}}}}
        (tmp_path / present).unlink()


def test_notifications_for_an_org_whose_webhook_cannot_be_used_say_why_and_send_nothing(tmp_path):
    problem = "LANGSMITH_ACCESS_WEBHOOK_URL_EU named by webhook_url_env is not set"
    org = Org("eu", Settings(organization_id=ORGANIZATION_ID, duckdb_path=tmp_path / "access.duckdb"),
              webhook_problem=problem)
    report = api.deliver_notifications(org=org)
    assert (report.problem, report.attempted) == (problem, 0)
    assert list(tmp_path.iterdir()) == []


def test_notifications_wait_for_a_busy_database_no_longer_than_the_lease_timeout_given(tmp_path):
    # A sync or a provisioning run holds the writer lease: a notebook's deliver_notifications(
    # lease_timeout_seconds=...) gives up after that long (not the library's default wait), says
    # the database was busy, and leaves the notification due for the next delivery.
    org = Org("default", Settings(organization_id=ORGANIZATION_ID, duckdb_path=tmp_path / "access.duckdb",
                                  webhook_url=Secret("http://127.0.0.1:9/hook")))
    database = AccessDatabase.of_org(org)
    with database.writer_lease("test set-up"):
        database.ensure_working()
    with database.writer_lease("test: raise an event"), database.connect() as conn:
        Notifier.of_org(org).notify(conn, "request.applied", at=datetime.now(UTC) - timedelta(minutes=1))
    with lease_held_elsewhere(database, "a long sync"):
        started = time.monotonic()
        report = api.deliver_notifications(org=org, lease_timeout_seconds=0.05)
        waited = time.monotonic() - started
    assert report.attempted == 0 and report.problem is not None and "DatabaseBusyError" in report.problem, report
    assert waited < 2.5, waited


def _single_org(monkeypatch, tmp_path) -> str:
    """One org from the single-org variables, its database in ``tmp_path``; returns that file."""
    monkeypatch.delenv("LANGSMITH_ACCESS_ORGS_FILE", raising=False)
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", ORGANIZATION_ID)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    return str(tmp_path / "access.duckdb")


def test_a_notebook_holding_the_analysts_copy_open_read_only_lists_the_request_it_just_queued(
        monkeypatch, tmp_path):
    # A notebook keeps `conn = duckdb.connect(path, read_only=True)` open while it queues. DuckDB
    # keeps one database per file per process for as long as a connection holds it, so a
    # list_requests that opened the same path got the copy the publish had replaced, without
    # the request just queued (a rejected one is recorded too: no sync is needed here).
    analysts_copy = _single_org(monkeypatch, tmp_path)
    first = api.request_grant("ada@example.com", "Platform", "Editor")
    with duckdb.connect(analysts_copy, read_only=True) as notebook:
        second = api.request_grant("grace@example.com", "Platform", "Editor")
        assert [r["request_id"] for r in api.list_requests()] == [first.request_id, second.request_id]
        assert [r["status"] for r in api.list_requests("rejected")] == ["rejected", "rejected"]
        # The notebook's own connection is untouched (it reads the copy it opened).
        assert notebook.sql("SELECT count(*) FROM main.provisioning_requests").fetchall() == [(1,)]


def test_a_read_write_connection_to_the_analysts_copy_in_the_same_process_is_named_with_the_fix(
        monkeypatch, tmp_path):
    # duckdb.connect(path) without read_only=True in the same notebook: DuckDB's own "Can't open a
    # connection to same database file with a different configuration" named neither the file
    # nor the fix. The kernel keeps going: once that connection is closed, listing works.
    analysts_copy = _single_org(monkeypatch, tmp_path)
    queued = api.request_grant("ada@example.com", "Platform", "Editor")
    notebook = duckdb.connect(analysts_copy)
    try:
        with pytest.raises(HeldInThisProcessError, match=(
                r"this process holds a connection to .*access\.duckdb that can write: close it "
                r"\(or open it with duckdb\.connect\(path, read_only=True\)\), then try again")):
            api.list_requests()
    finally:
        notebook.close()
    assert [r["request_id"] for r in api.list_requests()] == [queued.request_id]


def _two_orgs(monkeypatch, tmp_path) -> None:
    orgs = tmp_path / "orgs.yaml"
    orgs.write_text(f"- slug: us\n  organization_id: {ORGANIZATION_ID}\n  endpoint: https://api.smith.langchain.com\n"
                    "  api_key_env: LANGSMITH_API_KEY_US\n"
                    "- slug: eu\n  organization_id: 00000000-0000-4000-8000-0000000000bb\n"
                    "  endpoint: https://eu.api.smith.langchain.com\n  api_key_env: LANGSMITH_API_KEY_EU\n")
    monkeypatch.setenv("LANGSMITH_ACCESS_ORGS_FILE", str(orgs))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "data" / "langsmith_access.duckdb"))


def test_with_several_orgs_a_call_without_org_says_to_pass_org_and_names_them(monkeypatch, tmp_path):
    # A notebook's call, not a command line: the fix names the argument (org=) as well as --org.
    _two_orgs(monkeypatch, tmp_path)
    with pytest.raises(SettingsError, match=r"2 orgs are configured .*\(us, eu\): name one with --org SLUG "
                                            r"\(from Python: org='us'\)"):
        api.list_requests()
    assert api.list_requests(org="eu") == []


@pytest.mark.parametrize("org", [5, ["us"], b"us"])
def test_an_org_that_is_neither_a_slug_nor_an_org_is_named_before_anything_is_read(org, monkeypatch, tmp_path):
    # Was "argument of type 'int' is not iterable" (or an unknown org b'us') from deep inside.
    _two_orgs(monkeypatch, tmp_path)
    with pytest.raises(TypeError, match=rf"^org= takes an org's slug \(text\) or an Org, got {type(org).__name__}: "
                                        r"pass org='us' \(the orgs configured: us, eu\)$"):
        api.request_grant("ada@example.com", "Platform", "Editor", org=org)
    assert not (tmp_path / "data").exists()

"""Many organizations (DESIGN.md section 11): two sandbox orgs in one orgs file.

Every job, the schedule and the sensor are partitioned by org and every run carries the org's
tag; the CLI's ``--org`` and ``sync --all-orgs`` (one org with a refused key fails, naming it,
and the other syncs); a run uses the settings handed to it, not the environment; a request is
applied in its own org only; the README's question across every org runs on both databases.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import duckdb
import pytest

from langsmith_access import cli
from langsmith_access.doctor import run_checks
from langsmith_access.governance.notifications import Notifier
from langsmith_access.langsmith.client import LangSmithClient
from langsmith_access.names import ORG_TAG
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.settings import ORG_SLUG_PATTERN, ORGS_FILE_VARIABLE, Org, SettingsError, load_orgs
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.governance.receiver import WebhookReceiver
from langsmith_access_tests.helpers import cli_in_this_process, query, tick_sensor

CLI = str(Path(sys.executable).with_name("langsmith-access"))
README = Path(__file__).resolve().parents[1] / "README.md"
REFUSED_KEY = "lsv2_sk_refused0000000000000000000000_notthekey"
SIZES = {"us": (31, 9, 2), "eu": (32, 7, 2)}  # seed, members, workspaces: small and different


@dataclass
class TwoOrgs:
    sandboxes: dict[str, SandboxServer]
    data: Path  # the directory of LANGSMITH_ACCESS_DUCKDB
    orgs_file: Path
    environment: dict[str, str]  # the orgs file and both keys, nothing else of LANGSMITH_*

    def database(self, slug: str) -> Path:
        return self.data / slug / "langsmith_access.duckdb"

    def cli(self, *args: str, **overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run([CLI, *args], env={**self.environment, **overrides},
                              capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def two_orgs(tmp_path_factory):
    root = tmp_path_factory.mktemp("many-orgs")
    sandboxes = {slug: SandboxServer(generate_org(seed=seed, members=members, workspaces=workspaces))
                 for slug, (seed, members, workspaces) in SIZES.items()}
    # One person in both orgs (the README's question counts them), written differently in each.
    sandboxes["eu"].org.active_members()[0].email = sandboxes["us"].org.active_members()[0].email.upper()
    for sandbox in sandboxes.values():
        sandbox.start()
    try:
        orgs_file = root / "orgs.yaml"
        orgs_file.write_text("".join(
            f"- slug: {slug}\n  organization_id: {sandbox.organization_id}\n  endpoint: {sandbox.url}\n"
            f"  api_key_env: LANGSMITH_API_KEY_{slug.upper()}\n"
            for slug, sandbox in sandboxes.items()
        ))
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "DAGSTER_"))}
        environment.update({
            ORGS_FILE_VARIABLE: str(orgs_file),
            "LANGSMITH_ACCESS_DUCKDB": str(root / "data" / "langsmith_access.duckdb"),
            "LANGSMITH_ACCESS_TIMEOUT_SECONDS": "5",
            **{f"LANGSMITH_API_KEY_{slug.upper()}": sandbox.api_key for slug, sandbox in sandboxes.items()},
        })
        yield TwoOrgs(sandboxes, root / "data", orgs_file, environment)
    finally:
        for sandbox in sandboxes.values():
            sandbox.stop()


def use_the_cli_environment(monkeypatch: pytest.MonkeyPatch, two_orgs: TwoOrgs, **overrides: str) -> None:
    """This process's environment as the CLI's: the orgs file and both keys (``overrides``
    replacing some), no other LANGSMITH_ or DAGSTER_ variable."""
    for name in list(os.environ):
        if name.startswith(("LANGSMITH_", "DAGSTER_")):
            monkeypatch.delenv(name)
    for name, value in {**two_orgs.environment, **overrides}.items():
        if name.startswith("LANGSMITH_"):
            monkeypatch.setenv(name, value)


@pytest.fixture
def org_environment(two_orgs, monkeypatch):
    use_the_cli_environment(monkeypatch, two_orgs)
    return two_orgs


def test_every_job_schedule_and_asset_is_partitioned_by_org(org_environment):
    from langsmith_access.definitions import defs

    definitions = defs()
    for job_name in ("langsmith_access_sync", "langsmith_access_inventory", "provision_workspace_roles",
                     "decide_access_request", "check_langsmith_connection"):
        job = definitions.resolve_job_def(job_name)
        assert job.partitions_def.get_partition_keys() == ["us", "eu"], job_name
        # Every run of an org carries its tag, however it is launched (UI, backfill, CLI).
        assert job.partitioned_config.get_tags_for_partition_key("eu", job_name=job_name)[ORG_TAG] == "eu"
    graph = definitions.resolve_asset_graph()
    assert all(graph.get(key).partitions_def.get_partition_keys() == ["us", "eu"]
               for key in graph.materializable_asset_keys)

    # The inventory's schedule does the same for synced orgs (test_the_inventory_waits_...).
    assert [(r.partition_key, r.tags[ORG_TAG]) for r in tick_schedule(definitions, "langsmith_access_sync_schedule")
            .run_requests] == [("us", "us"), ("eu", "eu")]


def tick_schedule(definitions: dg.Definitions, name: str) -> dg.ScheduleExecutionData:
    schedule = definitions.resolve_schedule_def(name)
    with dg.build_schedule_context(repository_def=definitions.get_repository_def()) as context:
        return schedule.evaluate_tick(context)


def test_an_unknown_or_missing_org_is_a_usage_error_naming_the_known_ones(two_orgs):
    unknown = two_orgs.cli("requests", "--org", "apac")
    assert unknown.returncode == 2
    assert f"unknown org 'apac': the orgs configured in the orgs file {two_orgs.orgs_file} are us, eu." in (
        unknown.stderr), unknown.stderr
    several = two_orgs.cli("requests")
    assert several.returncode == 2 and "--org" in several.stderr and "us, eu" in several.stderr
    # A slug typed in capitals or with spaces around it is named as meant (slugs are lower case).
    for typed in ("EU", " eu "):
        near = two_orgs.cli("requests", "--org", typed)
        assert near.returncode == 2 and near.stderr.rstrip().endswith(
            "are us, eu. Did you mean --org eu? (a slug is lower case, without spaces)"), near.stderr
    assert "Did you mean" not in unknown.stderr
    both = two_orgs.cli("sync", "--org", "us", "--all-orgs")
    assert both.returncode == 2
    # --org before the command's name: where it goes, with the command line meant.
    for misplaced in (("--org", "eu", "requests", "--status", "pending"), ("--org=eu", "requests", "--status", "pending")):
        done = cli_in_this_process(*misplaced)
        assert done.returncode == 2 and "--org goes after the command's name" in done.stderr, done.stderr
        assert "langsmith-access requests --status pending --org eu" in done.stderr


def test_the_commands_a_message_suggests_carry_its_org(org_environment, monkeypatch, tmp_path):
    # A database of its own: no sync, and the refusal recorded below stays out of the others.
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "langsmith_access.duckdb"))
    not_synced = cli_in_this_process("requests", "--org", "us", "--json")
    assert not_synced.returncode == 0 and json.loads(not_synced.stdout) == []  # nothing queued yet
    # Before eu has a database: nothing to look the id up in, and its sync is the command to run.
    refused = cli_in_this_process("approve", "no-such-request", "--by", "ana@example.com", "--org", "eu")
    assert refused.returncode == 2 and "run `langsmith-access sync --org eu` first" in refused.stderr, refused.stderr
    eu = AccessDatabase.of_org(load_orgs().get("eu"))
    with eu.writer_lease("test set-up"):  # eu's database, with an empty queue
        eu.ensure_working()
        eu.publish()
    refused = cli_in_this_process("approve", "no-such-request", "--by", "ana@example.com", "--org", "eu")
    assert refused.returncode == 2
    assert "`langsmith-access requests --org eu --status awaiting_approval`" in refused.stderr, refused.stderr
    # The same advice in --json output, where scripts and chat bots read it.
    refused = cli_in_this_process("approve", "no-such-request", "--by", "ana@example.com", "--org", "eu", "--json")
    assert "`langsmith-access requests --org eu --status awaiting_approval`" in json.loads(refused.stdout)["message"]
    # And in the Dagster UI: the decision job's refusal.
    from langsmith_access.definitions import defs

    with dg.instance_for_test() as instance:
        run = defs().resolve_job_def("decide_access_request").execute_in_process(
            partition_key="eu", instance=instance, raise_on_error=False, run_config={"ops": {"decide_request": {
                "config": {"request_id": "no-such-request", "decision": "approve", "by": "ana@example.com"}}}})
    [failed] = [event.step_failure_data for event in run.all_events if event.is_step_failure]
    assert "`langsmith-access requests --org eu --status awaiting_approval`" in failed.error.message, failed.error
    # The run's failure metadata (the run page's step failure) says the same, not the CLI's words.
    said = failed.user_failure_data.metadata["message"].text
    assert "`langsmith-access requests --org eu --status awaiting_approval`" in said, said
    with dg.instance_for_test() as instance:  # the form as the Launchpad scaffolds it: left blank
        run = defs().resolve_job_def("decide_access_request").execute_in_process(
            partition_key="eu", instance=instance, raise_on_error=False, run_config={"ops": {"decide_request": {
                "config": {"request_id": "", "decision": "", "by": ""}}}})
    [failure] = [event.step_failure_data.error for event in run.all_events if event.is_step_failure]
    assert "`langsmith-access requests --org eu --status awaiting_approval` lists them" in failure.message, \
        failure.message
    change = ("request", "grant", "--org", "us", "--user", "ana@example.com", "--workspace", "Research",
              "--role", "Viewer", "--reason", "r", "--json")
    queued = cli_in_this_process(*change)  # us has no database: refused, not recorded
    assert "`langsmith-access sync --org us` first" in json.loads(queued.stdout)["message"], queued.stdout
    us = AccessDatabase.of_org(load_orgs().get("us"))
    with us.writer_lease("test set-up"):  # a database never synced: the rejection is recorded
        us.ensure_working()
        us.publish()
    queued = cli_in_this_process(*change)
    assert "`langsmith-access sync --org us` first" in json.loads(queued.stdout)["message"], queued.stdout
    # And in the recorded rejection as `requests` lists it, the way the org runs the command.
    [listed] = json.loads(cli_in_this_process("requests", "--org", "us", "--json").stdout)
    assert "`langsmith-access sync --org us` first" in listed["status_detail"], listed
    shown = cli_in_this_process("requests", "--org", "us").stdout
    assert "`langsmith-access sync --org us` first" in shown, shown
    # An id of another org's queue: refused in this org, naming the org that holds it.
    for verb in ("approve", "deny"):
        elsewhere = cli_in_this_process(verb, listed["request_id"], "--by", "ana@example.com", "--org", "eu")
        assert elsewhere.returncode == 2, elsewhere.stderr
        assert f"It is a request of org 'us': {verb} it with --org us." in elsewhere.stderr, elsewhere.stderr
        assert f"unknown request id {listed['request_id']}" in elsewhere.stderr  # the reason, then whose it is
    nowhere_id = str(uuid.uuid4())
    nowhere = cli_in_this_process("approve", nowhere_id, "--by", "ana@example.com", "--org", "eu")
    assert nowhere.returncode == 2 and "It is a request of org" not in nowhere.stderr, nowhere.stderr
    # The same from the decision job's Launchpad, launched for eu's partition with us's request.
    with dg.instance_for_test() as instance:
        run = defs().resolve_job_def("decide_access_request").execute_in_process(
            partition_key="eu", instance=instance, raise_on_error=False, run_config={"ops": {"decide_request": {
                "config": {"request_id": listed["request_id"], "decision": "approve", "by": "ana@example.com"}}}})
    [failed] = [event.step_failure_data for event in run.all_events if event.is_step_failure]
    failure = failed.error
    assert "It is a request of org 'us': launch decide_access_request for partition 'us'." in failure.message, \
        failure.message
    # The failure's metadata, which the UI shows beside it: no such request here, not the text "None".
    assert failed.user_failure_data.metadata["status"].value == "no such request"
    # None of those wrong-org decisions left us's request id (nor its approver) in eu's audit; an id
    # no org holds is still recorded there as a refusal.
    refusals = "SELECT request_id FROM main.provisioning_events WHERE kind = 'decision_refused'"
    for copy in (eu.working_path, eu.path):
        recorded = {request_id for (request_id,) in query(copy, refusals)}
        assert listed["request_id"] not in recorded and nowhere_id in recorded, (copy, recorded)
    # And from provision_workspace_roles's Launchpad, naming it among request_ids.
    with dg.instance_for_test() as instance:
        run = defs().resolve_job_def("provision_workspace_roles").execute_in_process(
            partition_key="eu", instance=instance, raise_on_error=False,
            run_config={"ops": {"select_requests": {"config": {"request_ids": [listed["request_id"]]}}}})
    [failure] = [event.step_failure_data.error for event in run.all_events if event.is_step_failure]
    assert (f"{listed['request_id']} is a request of org 'us': launch provision_workspace_roles for partition 'us'."
            in failure.message), failure.message
    # An ad-hoc change from provision_workspace_roles's Launchpad, refused: its advice is the org's.
    with dg.instance_for_test() as instance:
        run = defs().resolve_job_def("provision_workspace_roles").execute_in_process(
            partition_key="us", instance=instance, raise_on_error=False, run_config={"ops": {"select_requests": {
                "config": {"change": {"action": "grant", "user": "ana@example.com", "workspace": "Research",
                                      "role": "Viewer"}}}}})
    [failure] = [event.step_failure_data.error for event in run.all_events if event.is_step_failure]
    assert "`langsmith-access sync --org us` first" in failure.message, failure.message


def test_an_unknown_id_is_refused_in_its_org_though_another_orgs_queue_cannot_be_read(
        org_environment, monkeypatch, tmp_path):
    # approve and deny look for an id this org does not know in the other orgs' queues, to say
    # whose it is. One that cannot be read (its file damaged, its key not set in this shell) is
    # passed over: the refusal is still this org's (exit 2), not an error about another org.
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "langsmith_access.duckdb"))
    (tmp_path / "us").mkdir()
    (tmp_path / "us" / "langsmith_access.duckdb").write_text("not a database")
    for unset in ((), ("LANGSMITH_API_KEY_US",)):
        for name in unset:
            monkeypatch.delenv(name)
        for verb in ("approve", "deny"):
            refused = cli_in_this_process(verb, "no-such-request", "--by", "ana@example.com", "--org", "eu")
            assert refused.returncode == 2, (unset, refused.stderr)
            assert refused.stderr.startswith("refused: unknown request id no-such-request"), (unset, refused.stderr)
            assert "It is a request of org" not in refused.stderr


def shrunk_since_the_last_sync(two_orgs: TwoOrgs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of us's database (``LANGSMITH_ACCESS_DUCKDB`` pointing there) whose last sync
    counted ten times the users and grants: the next sync's shrink guard trips."""
    copy = tmp_path / "us" / "langsmith_access.duckdb"
    copy.parent.mkdir()
    source = AccessDatabase(two_orgs.database("us"))
    for file, into in ((source.path, copy), (source.working_path, AccessDatabase(copy).working_path)):
        shutil.copyfile(file, into)
        with duckdb.connect(str(into)) as conn:
            conn.execute("UPDATE main.sync_runs SET users = 10 * users, workspace_grants = 10 * workspace_grants")
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "langsmith_access.duckdb"))


def test_a_failed_checks_advice_carries_the_org_too(org_environment, synced, monkeypatch, tmp_path):
    shrunk_since_the_last_sync(org_environment, tmp_path, monkeypatch)
    shrunk = cli_in_this_process("sync", "--org", "us")
    assert shrunk.returncode == 1
    assert "failed check" in shrunk.stderr and "`langsmith-access sync --org us --accept-shrink`" in shrunk.stderr, \
        shrunk.stderr


def test_a_failed_checks_advice_in_the_dagster_ui_carries_the_org_too(org_environment, synced, monkeypatch, tmp_path):
    # The check's result on the run page and the asset's Checks tab, for a sync the UI or the
    # schedule launched: the command it suggests is the org's, as the CLI prints it.
    from langsmith_access.definitions import defs

    shrunk_since_the_last_sync(org_environment, tmp_path, monkeypatch)
    with dg.instance_for_test() as instance:
        run = defs().resolve_job_def("langsmith_access_sync").execute_in_process(
            partition_key="us", instance=instance, raise_on_error=False)
    shown = [event.event_specific_data.description for event in run.all_events
             if event.event_type_value == "ASSET_CHECK_EVALUATION" and not event.event_specific_data.passed]
    assert shown and all("`langsmith-access sync --org us --accept-shrink`" in text for text in shown), shown


def test_an_adhoc_grant_awaiting_approval_tells_the_launchpad_operator_how_to_decide_it(
        org_environment, synced, monkeypatch, tmp_path):
    # A grant queued from provision_workspace_roles's Launchpad that the policy sends for
    # approval: the run succeeds having applied nothing, and its log is where the operator learns
    # what to do. It said `langsmith-access approve <id> --by EMAIL`, which with several orgs
    # exits 2 (no --org), and nothing of the decision job a Dagster operator would launch.
    copy = tmp_path / "us" / "langsmith_access.duckdb"
    copy.parent.mkdir()
    source = AccessDatabase(org_environment.database("us"))
    for file, into in ((source.path, copy), (source.working_path, AccessDatabase(copy).working_path)):
        shutil.copyfile(file, into)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "langsmith_access.duckdb"))
    (tmp_path / "policy.yaml").write_text('approval:\n  required: ["*"]\n  approvers: org_admins\n')
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text(org_environment.orgs_file.read_text().replace(
        "api_key_env: LANGSMITH_API_KEY_US\n", "api_key_env: LANGSMITH_API_KEY_US\n  policy: policy.yaml\n"))
    monkeypatch.setenv(ORGS_FILE_VARIABLE, str(orgs_file))
    [(email, workspace_id)] = query(copy, "SELECT u.email, w.workspace_id FROM main.users u, main.workspaces w "
                                          "WHERE NOT u.is_disabled AND NOT EXISTS (SELECT 1 FROM main.grants g "
                                          "WHERE g.user_id = u.user_id AND g.workspace_id = w.workspace_id) "
                                          "ORDER BY u.email, w.workspace_id LIMIT 1")
    from langsmith_access.definitions import defs

    with dg.instance_for_test() as instance:
        run = defs().resolve_job_def("provision_workspace_roles").execute_in_process(
            partition_key="us", instance=instance, raise_on_error=False, run_config={"ops": {"select_requests": {
                "config": {"change": {"action": "grant", "user": email, "workspace": workspace_id,
                                      "role": "Viewer", "requested_by": "ops@example.com"}}}}})
        logged = [entry.user_message for entry in instance.all_logs(run.run_id) if "Queued " in entry.user_message]
    assert run.success
    [queued] = logged
    [(request_id, status)] = query(AccessDatabase(copy).working_path,
                                   "SELECT request_id, status FROM main.provisioning_requests")
    assert status == "awaiting_approval"
    assert f"`langsmith-access approve --org us {request_id} --by EMAIL`" in queued, queued
    assert "From the Dagster UI: launch decide_access_request for partition 'us'." in queued, queued


def test_a_bad_orgs_file_stops_every_command_before_any_request(two_orgs, tmp_path):
    broken = tmp_path / "orgs.yaml"
    eu_id = two_orgs.sandboxes["eu"].organization_id
    broken.write_text(two_orgs.orgs_file.read_text().replace(eu_id, "eu-org-id"))
    requests_before = {slug: len(s.request_log) for slug, s in two_orgs.sandboxes.items()}
    files_before = sorted(two_orgs.data.rglob("*")) if two_orgs.data.exists() else []
    for command in (["sync", "--all-orgs"], ["sync", "--org", "us"], ["provision", "--org", "us"],
                    ["requests", "--org", "us"]):
        done = two_orgs.cli(*command, **{ORGS_FILE_VARIABLE: str(broken)})
        assert done.returncode == 1, (command, done.stderr)
        assert "slug 'eu': organization_id must be the organization's UUID" in done.stderr, done.stderr
        assert str(broken) in done.stderr, done.stderr
    doctor = two_orgs.cli("doctor", "--org", "us", **{ORGS_FILE_VARIABLE: str(broken)})
    assert doctor.returncode == 1 and doctor.stdout.startswith("fail configuration")
    assert {slug: len(s.request_log) for slug, s in two_orgs.sandboxes.items()} == requests_before
    assert (sorted(two_orgs.data.rglob("*")) if two_orgs.data.exists() else []) == files_before


def test_doctor_all_orgs_checks_each_org_and_names_those_that_failed(two_orgs, tmp_path):
    # An operator of many orgs asks once, not once per --org; a bad orgs file still fails the
    # configuration check, and --org goes with it no more than with sync --all-orgs.
    checked = sync_in_this_process(two_orgs, "doctor", "--all-orgs", LANGSMITH_API_KEY_EU=REFUSED_KEY)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    us_part, eu_part = checked.stdout.split("== eu ==\n")
    assert us_part.startswith("== us ==\nok configuration") and "\nfail " not in us_part, us_part
    assert "\nok authentication" in us_part and "fail authentication" in eu_part, eu_part
    assert "LANGSMITH_API_KEY_EU" in eu_part and REFUSED_KEY not in checked.stdout + checked.stderr
    assert checked.stderr.strip().endswith("A check failed for 1 of 2 orgs: eu."), checked.stderr

    shown = sync_in_this_process(two_orgs, "doctor", "--all-orgs", "--json", LANGSMITH_API_KEY_EU=REFUSED_KEY)
    report = json.loads(shown.stdout)
    assert shown.returncode == 1 and report["ok"] is False
    assert [(org["org"], org["ok"]) for org in report["orgs"]] == [("us", True), ("eu", False)]
    assert {check["name"] for check in report["orgs"][0]["checks"]} >= {"configuration", "authentication"}

    healthy = sync_in_this_process(two_orgs, "doctor", "--all-orgs")
    assert healthy.returncode == 0 and "No check failed for any of the 2 orgs." in healthy.stderr, healthy.stderr
    both = sync_in_this_process(two_orgs, "doctor", "--all-orgs", "--org", "us")
    assert both.returncode == 2 and "--org and --all-orgs do not go together" in both.stderr
    broken = tmp_path / "orgs.yaml"
    broken.write_text(two_orgs.orgs_file.read_text().replace(two_orgs.sandboxes["eu"].organization_id, "eu-org-id"))
    refused = sync_in_this_process(two_orgs, "doctor", "--all-orgs", **{ORGS_FILE_VARIABLE: str(broken)})
    assert refused.returncode == 1 and refused.stdout.startswith("fail configuration"), refused.stdout


def sync_in_this_process(two_orgs: TwoOrgs, *args: str, **overrides: str) -> subprocess.CompletedProcess:
    """``TwoOrgs.cli`` run in this process (``cli_in_this_process``), with the same environment."""
    # A module-scoped fixture (``synced``) calls this: it cannot use ``org_environment``.
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_the_cli_environment(monkeypatch, two_orgs, **overrides)
        return cli_in_this_process(*args)


@pytest.fixture(scope="module")
def synced(two_orgs):
    """``sync --all-orgs`` with eu's key refused, then ``sync --org eu`` with its own key."""
    refused = sync_in_this_process(two_orgs, "sync", "--all-orgs", "--quiet", LANGSMITH_API_KEY_EU=REFUSED_KEY)
    eu_exists_after_refusal = two_orgs.database("eu").exists()
    eu = sync_in_this_process(two_orgs, "sync", "--org", "eu", "--quiet")
    return refused, eu_exists_after_refusal, eu


def test_sync_all_orgs_goes_on_past_a_refused_key_and_names_the_org(two_orgs, synced):
    refused, eu_exists_after_refusal, eu = synced
    assert refused.returncode == 1, refused.stderr
    assert "Sync failed for 1 of 2 orgs: eu" in refused.stderr
    assert "[us] Sync " in refused.stdout and "succeeded" in refused.stdout
    assert "Syncing " not in refused.stderr  # --quiet: the summary and what failed, no progress
    assert "[eu] Sync failed" in refused.stderr
    # The fix names eu's own key variable and entry, not the single-org variables.
    assert "set LANGSMITH_API_KEY_EU to a valid" in refused.stderr, refused.stderr
    assert f"for the endpoint of org 'eu' in {two_orgs.orgs_file}" in refused.stderr
    assert not re.search(r"\bLANGSMITH_(API_KEY|ENDPOINT)\b", refused.stderr), refused.stderr
    for output in (refused, eu):
        assert REFUSED_KEY not in output.stdout + output.stderr
        assert all(s.api_key not in output.stdout + output.stderr for s in two_orgs.sandboxes.values())
    # us synced into its own database; eu's was never created (nothing half-written).
    us = two_orgs.sandboxes["us"].org
    assert query(two_orgs.database("us"), "SELECT count(*) FROM main.users")[0][0] == len(us.active_members())
    assert not eu_exists_after_refusal

    # The same org with its own key, through --org, into its own database.
    assert eu.returncode == 0, eu.stderr
    eu_org = two_orgs.sandboxes["eu"].org
    emails = {row[0] for row in query(two_orgs.database("eu"), "SELECT email FROM main.users")}
    assert emails == {m.email for m in eu_org.active_members()}


def ctrl_c_in_requests_to(monkeypatch: pytest.MonkeyPatch, sandbox: SandboxServer, path_part: str) -> None:
    """A KeyboardInterrupt, as Ctrl-C raises wherever it lands, in every request to ``sandbox``
    whose path holds ``path_part``."""
    request = LangSmithClient._request

    def interrupted(client, method, path, **kwargs):
        if client.endpoint == sandbox.url and path_part in path:
            raise KeyboardInterrupt
        return request(client, method, path, **kwargs)

    monkeypatch.setattr(LangSmithClient, "_request", interrupted)


def test_ctrl_c_during_one_orgs_sync_stops_sync_all_orgs(two_orgs, monkeypatch, tmp_path):
    # Dagster takes the interrupt and fails the run like any other failure: `sync --all-orgs` went
    # on to sync the next org, though Ctrl-C (or a `kill`) was meant for the whole command.
    ctrl_c_in_requests_to(monkeypatch, two_orgs.sandboxes["us"], "members")
    eu_requests_before = len(two_orgs.sandboxes["eu"].request_log)
    stopped = sync_in_this_process(two_orgs, "sync", "--all-orgs", "--quiet",
                                   LANGSMITH_ACCESS_DUCKDB=str(tmp_path / "data" / "langsmith_access.duckdb"))
    assert stopped.returncode == 1, stopped.stderr
    assert "[us] Sync failed: raw_members: interrupted (Ctrl-C or a signal) before it finished" in stopped.stderr
    assert "fix: the run was interrupted (Ctrl-C or a signal)" in stopped.stderr, stopped.stderr
    assert "Interrupted while syncing us; not synced: eu. Each org's database was left as its last finished " \
           "sync published it." in stopped.stderr, stopped.stderr
    assert len(two_orgs.sandboxes["eu"].request_log) == eu_requests_before  # not one request to eu
    assert not (tmp_path / "data" / "eu").exists()


def test_a_sync_stopped_under_way_records_its_failed_row_in_words(two_orgs, monkeypatch, tmp_path):
    # Ctrl-C, a signal or Terminate in the Dagster UI: the run's sync_runs row (and its
    # sync.failed) read "raw_members: KeyboardInterrupt" or "raw_members:
    # dagster._core.errors.DagsterExecutionInterruptedError", Dagster's class names, where the
    # command's own output said what happened.
    ctrl_c_in_requests_to(monkeypatch, two_orgs.sandboxes["us"], "members")
    data = tmp_path / "data"
    stopped = sync_in_this_process(two_orgs, "sync", "--org", "us", "--quiet",
                                   LANGSMITH_ACCESS_DUCKDB=str(data / "langsmith_access.duckdb"))
    assert stopped.returncode == 1, stopped.stderr
    working = AccessDatabase(data / "us" / "langsmith_access.duckdb").working_path
    assert query(working, "SELECT status, failure FROM main.sync_runs") == [
        ("failed", "raw_members: interrupted (Ctrl-C or a signal) before it finished")]


def test_ctrl_c_during_one_orgs_inventory_stops_sync_all_orgs_all_sections(two_orgs, monkeypatch, tmp_path):
    # The same for the inventory that --all-sections runs after an org's sync: the sync stays
    # published, and the next org is not started.
    ctrl_c_in_requests_to(monkeypatch, two_orgs.sandboxes["us"], "service-accounts")
    eu_requests_before = len(two_orgs.sandboxes["eu"].request_log)
    data = tmp_path / "data"
    stopped = sync_in_this_process(two_orgs, "sync", "--all-orgs", "--all-sections", "--quiet",
                                   LANGSMITH_ACCESS_DUCKDB=str(data / "langsmith_access.duckdb"))
    assert stopped.returncode == 1, stopped.stderr
    assert "[us] Sync " in stopped.stdout and "succeeded" in stopped.stdout, stopped.stdout
    assert "[us] Inventory failed: " in stopped.stderr and "interrupted (Ctrl-C or a signal)" in stopped.stderr
    assert ("The sync above was published; the inventory's tables were left as the previous inventory "
            "published them.") in stopped.stderr, stopped.stderr
    assert "Interrupted while syncing us; not synced: eu." in stopped.stderr, stopped.stderr
    assert len(two_orgs.sandboxes["eu"].request_log) == eu_requests_before  # not one request to eu
    assert not (data / "eu").exists()


def test_ctrl_c_during_a_single_orgs_sync_ends_it_with_the_interrupted_fix(two_orgs, monkeypatch, tmp_path):
    # `sync --org us` (one org): the interrupted run's failure and fix, exit 1, nothing else.
    ctrl_c_in_requests_to(monkeypatch, two_orgs.sandboxes["us"], "members")
    stopped = sync_in_this_process(two_orgs, "sync", "--org", "us", "--quiet",
                                   LANGSMITH_ACCESS_DUCKDB=str(tmp_path / "data" / "langsmith_access.duckdb"))
    assert stopped.returncode == 1, stopped.stderr
    assert stopped.stderr.startswith(
        "[us] Sync failed: raw_members: interrupted (Ctrl-C or a signal) before it finished\n"), stopped.stderr
    assert "fix: the run was interrupted (Ctrl-C or a signal)" in stopped.stderr, stopped.stderr
    assert stopped.stderr.endswith("Nothing was published: there is no analysts' database yet.\n"), stopped.stderr


def test_an_unset_key_variable_stops_only_what_needs_that_orgs_key(two_orgs, synced):
    # An org added to the orgs file before its key (or whose key went missing): the other org
    # syncs, provisions and reads as usual, `sync --all-orgs` syncs it and names the one it could
    # not, and that org's own queue and reports stay readable; only what needs its key stops,
    # naming the variable. A sync not started raises the org's sync.failed, as the schedule's tick
    # does: a cron running the CLI is the schedule of an install without Dagster's daemon.
    missing = "the variable LANGSMITH_API_KEY_EU named by api_key_env is not set"
    eu_requests_before = len(two_orgs.sandboxes["eu"].request_log)
    unset = {"LANGSMITH_API_KEY_EU": ""}
    with WebhookReceiver() as receiver:
        watched = {**unset, "LANGSMITH_ACCESS_WEBHOOK_URL": receiver.url}
        every = sync_in_this_process(two_orgs, "sync", "--all-orgs", "--quiet", **watched)
        assert every.returncode == 1, every.stderr
        assert "[us] Sync " in every.stdout and "succeeded" in every.stdout, every.stdout
        assert f"[eu] error: The orgs file {two_orgs.orgs_file}" in every.stderr and missing in every.stderr
        assert "Sync failed for 1 of 2 orgs: eu" in every.stderr
        for command in (["sync", "--org", "eu"], ["provision", "--org", "eu"]):
            refused = sync_in_this_process(two_orgs, *command, **watched)
            assert refused.returncode == 1 and missing in refused.stderr, (command, refused.stderr)
        not_started = [body for body in receiver.bodies() if body["event"] == "sync.failed"]
    # One per sync asked for (`sync --all-orgs`, `sync --org eu`); provisioning raises none.
    assert [body["org"] for body in not_started] == ["eu", "eu"], not_started
    for body in not_started:
        assert "the sync asked for by `langsmith-access sync` at " in body["detail"], body["detail"]
        assert "was not started" in body["detail"] and missing in body["detail"], body["detail"]
    for command in (["requests", "--org", "eu"], ["requests", "--org", "us"], ["provision", "--org", "us"]):
        fine = sync_in_this_process(two_orgs, *command, **unset)
        assert fine.returncode == 0, (command, fine.stderr)
    assert len(two_orgs.sandboxes["eu"].request_log) == eu_requests_before  # not one request to eu


def test_a_run_uses_the_org_it_is_handed_not_the_environment(org_environment, monkeypatch, tmp_path):
    from langsmith_access import runner

    two_orgs = org_environment
    us = load_orgs(two_orgs.environment).get("us")
    # The environment now names a key the sandbox refuses: the run must use the one it is handed.
    monkeypatch.setenv("LANGSMITH_API_KEY_US", REFUSED_KEY)
    environment = dict(os.environ)
    home = tmp_path / "dagster_home"
    home.mkdir()
    # An org removed from the orgs file left a pending request behind: the doctor's run says so.
    gone = AccessDatabase(two_orgs.data / "gone" / "langsmith_access.duckdb")
    gone.path.parent.mkdir(parents=True)
    try:
        gone.ensure_working()
        with duckdb.connect(str(gone.working_path)) as conn:
            conn.execute("INSERT INTO main.provisioning_requests (request_id, action, status, requested_at, "
                         "updated_at) VALUES ('r', 'grant', 'pending', now(), now())")
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            outcome = runner.run_job("check_langsmith_connection", {}, org=us, dagster_instance=instance)
            assert outcome.success, outcome.failure
            run = instance.get_run_by_id(outcome.run_id)
            said = [entry.user_message for entry in instance.all_logs(outcome.run_id)]
    finally:
        shutil.rmtree(gone.path.parent)
    assert any(message.startswith(f"warning: {gone.path.parent} holds organization (unknown)'s database")
               and "1 open request:" in message for message in said), said
    assert run.tags[ORG_TAG] == "us" and run.tags["dagster/partition"] == "us"
    assert dict(os.environ) == environment  # nothing was written there
    # An org the definitions do not serve is refused before any run.
    apac = Org("apac", us.settings)
    with pytest.raises(SettingsError, match="not one of the orgs"):
        runner.run_job("check_langsmith_connection", {}, org=apac)


def test_a_request_is_applied_in_its_own_org_only(org_environment, synced):
    from langsmith_access import api

    two_orgs = org_environment
    us = two_orgs.sandboxes["us"].org
    eu_before = two_orgs.sandboxes["eu"].org.workspace_membership_rows()
    workspace = us.shared_workspaces()[0]
    outsider = next(m for m in us.active_members() if m.ls_user_id not in workspace.memberships)
    queued = api.request_grant(outsider.email, workspace.id, "Editor", requested_by="test", org="us")
    assert queued.accepted, queued.message
    assert api.list_requests(org="eu") == []

    # The sensor offers us's queue, and only us's.
    with dg.instance_for_test() as instance:
        [run_request] = tick_sensor("provisioning_queue_sensor", instance)[0].run_requests
    assert run_request.partition_key == "us" and run_request.tags[ORG_TAG] == "us"

    outcome = api.provision(org="us")
    assert outcome.success, outcome.failure
    assert [item["status"] for item in outcome.outputs["apply_requests"]["outcomes"]] == ["applied"]
    assert us.membership(workspace.id, outsider.ls_user_id) is not None
    assert two_orgs.sandboxes["eu"].org.workspace_membership_rows() == eu_before
    assert not [e for e in two_orgs.sandboxes["eu"].request_log if e.method in ("POST", "PATCH", "DELETE")]


def test_a_run_of_the_deployed_definitions_reads_and_writes_its_partitions_database_only(
        org_environment, synced, monkeypatch, tmp_path):
    # The code location serves every org, its resources reading the orgs when a run starts: a
    # sync or provisioning run of eu (the file's second org) opens eu's database, never the
    # first org's, whichever resource opens it.
    from langsmith_access.definitions import defs

    data = copies_of_the_synced_databases(org_environment, tmp_path, monkeypatch)
    us_folder_before = sorted((path.name, path.stat().st_mtime_ns) for path in (data / "us").iterdir())
    definitions = defs()
    with dg.instance_for_test() as instance:
        runs = {job: definitions.resolve_job_def(job).execute_in_process(
            partition_key="eu", instance=instance, raise_on_error=False)
            for job in ("langsmith_access_sync", "provision_workspace_roles")}
    assert all(run.success for run in runs.values()), {job: run.success for job, run in runs.items()}
    sync_id = runs["langsmith_access_sync"].run_id
    assert query(data / "eu" / "langsmith_access.duckdb",
                 "SELECT count(*) FROM main.sync_runs WHERE sync_id = ?", [sync_id]) == [(1,)]
    assert sorted((path.name, path.stat().st_mtime_ns) for path in (data / "us").iterdir()) == us_folder_before


def test_the_inventory_schedule_waits_for_each_orgs_first_sync(org_environment, synced, monkeypatch, tmp_path):
    # The inventory adds to a synced database: launched before an org's first sync (a new
    # deployment whose first inventory tick comes before the first sync's), its run would fail.
    from langsmith_access.definitions import defs

    two_orgs = org_environment
    data = tmp_path / "data"
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(data / "langsmith_access.duckdb"))
    nothing = tick_schedule(defs(), "langsmith_access_inventory_schedule")
    assert nothing.run_requests == [] and not data.exists()  # looking creates nothing
    assert nothing.skip_message == (
        "us: no sync published yet: the inventory waits for the first one (the sync schedule, or "
        "`langsmith-access sync --org us`); eu: no sync published yet: the inventory waits for the "
        "first one (the sync schedule, or `langsmith-access sync --org eu`)."), nothing.skip_message

    # us synced; eu's file holds no sync (a request queued before any sync creates one).
    (data / "us").mkdir(parents=True)
    shutil.copyfile(two_orgs.database("us"), data / "us" / "langsmith_access.duckdb")
    (data / "eu").mkdir()
    duckdb.connect(str(data / "eu" / "langsmith_access.duckdb")).close()
    [us_only] = tick_schedule(defs(), "langsmith_access_inventory_schedule").run_requests
    assert (us_only.partition_key, us_only.tags[ORG_TAG]) == ("us", "us")

    # Both synced (the fixture's databases): one run each.
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", two_orgs.environment["LANGSMITH_ACCESS_DUCKDB"])
    both = tick_schedule(defs(), "langsmith_access_inventory_schedule").run_requests
    assert [(r.partition_key, r.tags[ORG_TAG]) for r in both] == [("us", "us"), ("eu", "eu")]


def copies_of_the_synced_databases(two_orgs: TwoOrgs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Both orgs' synced databases copied under ``tmp_path/data`` (a test may damage or queue into
    them), ``LANGSMITH_ACCESS_DUCKDB`` pointing there; returns that directory."""
    data = tmp_path / "data"
    for slug in ("us", "eu"):
        (data / slug).mkdir(parents=True)
        shutil.copyfile(two_orgs.database(slug), data / slug / "langsmith_access.duckdb")
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(data / "langsmith_access.duckdb"))
    return data


def queue_a_grant(two_orgs: TwoOrgs, slug: str) -> None:
    """An Editor grant in ``slug``'s first shared workspace, for a member outside it."""
    from langsmith_access import api

    org = two_orgs.sandboxes[slug].org
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members() if m.ls_user_id not in workspace.memberships)
    assert api.request_grant(outsider.email, workspace.id, "Editor", requested_by="test", org=slug).accepted


def test_one_orgs_unusable_database_holds_no_other_orgs_sensor_tick_back(org_environment, synced, monkeypatch, tmp_path):
    two_orgs = org_environment
    data = copies_of_the_synced_databases(two_orgs, tmp_path, monkeypatch)
    queue_a_grant(two_orgs, "eu")
    (data / "us" / "langsmith_access.duckdb").write_bytes(b"not a database" * 300)  # damaged

    with dg.instance_for_test() as instance:
        provisioning = tick_sensor("provisioning_queue_sensor", instance)[0]
        expiry = tick_sensor("access_expiry_sensor", instance)[0]
    assert [(r.partition_key, r.tags[ORG_TAG]) for r in provisioning.run_requests] == [("eu", "eu")]
    assert expiry.run_requests == []
    assert expiry.skip_message.startswith("us: Database unusable, trying again next tick: could not open "), \
        expiry.skip_message
    assert "eu: No access due to end" in expiry.skip_message


def test_a_sensor_tick_names_the_old_folder_of_a_renamed_slug_not_nothing_synced(
        org_environment, synced, monkeypatch, tmp_path):
    # 'us' was 'us-old' until the orgs file was edited: data/us-old/ holds the org's database, and
    # every run of 'us' is refused naming it. The sensors' skip reason, what the Dagster UI shows
    # each tick, must say so too: "nothing has been synced" sent the operator after a sync that
    # never failed.
    two_orgs = org_environment
    data = copies_of_the_synced_databases(two_orgs, tmp_path, monkeypatch)
    (data / "us").rename(data / "us-old")

    with dg.instance_for_test() as instance:
        provisioning = tick_sensor("provisioning_queue_sensor", instance)[0]
        expiry = tick_sensor("access_expiry_sensor", instance)[0]
    for tick in (provisioning, expiry):
        assert tick.run_requests == []
        assert tick.skip_message.startswith(
            f"us: No analysts' database yet, but {data / 'us-old' / 'langsmith_access.duckdb'} holds this "
            "organization's data (a slug renamed in the orgs file)"), tick.skip_message
        assert f"move the files of {data / 'us-old'}" in tick.skip_message
        assert "nothing has been synced" not in tick.skip_message
        assert "; eu: No " in tick.skip_message  # the other org as before
    # An org with no database anywhere has simply not been synced yet.
    (data / "us-old").rename(tmp_path / "elsewhere")
    with dg.instance_for_test() as instance:
        unsynced = tick_sensor("provisioning_queue_sensor", instance)[0]
    assert unsynced.skip_message.startswith("us: No analysts' database yet: nothing has been synced or queued;"), \
        unsynced.skip_message


def test_one_orgs_missing_key_stops_only_that_orgs_runs(org_environment, synced, monkeypatch, tmp_path):
    # The code location loads without eu's key (Kubernetes: the orgs file names an org whose
    # secret is not there yet): us's sensor ticks go on, eu gets no run until its key is set,
    # and a run of eu launched anyway fails at its start naming the variable.
    from langsmith_access.definitions import defs

    two_orgs = org_environment
    copies_of_the_synced_databases(two_orgs, tmp_path, monkeypatch)
    queue_a_grant(two_orgs, "eu")
    monkeypatch.delenv("LANGSMITH_API_KEY_EU")
    definitions = defs()
    missing = "the variable LANGSMITH_API_KEY_EU named by api_key_env is not set"
    for schedule in ("langsmith_access_sync_schedule", "langsmith_access_inventory_schedule"):
        # The schedules launch no run that would only fail at its start, tick after tick.
        assert [r.partition_key for r in tick_schedule(definitions, schedule).run_requests] == ["us"], schedule
    with dg.instance_for_test() as instance:
        waiting = tick_sensor("provisioning_queue_sensor", instance, definitions=definitions)[0]
        assert waiting.run_requests == [] and "us: No pending requests; eu: The orgs file " in waiting.skip_message
        assert missing in waiting.skip_message and waiting.skip_message.endswith("No run until then.")
        with monkeypatch.context() as us_key:  # queuing reads every entry, as every command does
            us_key.setenv("LANGSMITH_API_KEY_EU", two_orgs.sandboxes["eu"].api_key)
            queue_a_grant(two_orgs, "us")
        [launched] = tick_sensor("provisioning_queue_sensor", instance, definitions=definitions)[0].run_requests
        assert launched.partition_key == "us"

        eu_requests_before = len(two_orgs.sandboxes["eu"].request_log)
        eu_sync = definitions.resolve_job_def("langsmith_access_sync").execute_in_process(
            partition_key="eu", instance=instance, raise_on_error=False)
    assert not eu_sync.success
    failure = next(e for e in eu_sync.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    assert missing in failure.event_specific_data.error.message
    assert len(two_orgs.sandboxes["eu"].request_log) == eu_requests_before  # refused before any request


def test_a_scheduled_sync_an_orgs_missing_key_keeps_from_starting_raises_its_sync_failed(
        org_environment, synced, monkeypatch, tmp_path):
    # eu's secret is gone from the deployment: the schedule launches none of its runs, so no run
    # fails and nothing would say its tables stopped changing. Each tick raises eu's sync.failed
    # instead (once per tick), which the outbox sensor delivers under eu's slug.
    from langsmith_access.definitions import defs

    two_orgs = org_environment
    copies_of_the_synced_databases(two_orgs, tmp_path, monkeypatch)
    monkeypatch.delenv("LANGSMITH_API_KEY_EU")
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", receiver.url)
        definitions = defs()
        schedule = definitions.resolve_schedule_def("langsmith_access_sync_schedule")
        tick_at = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
        for _ in range(2):  # the same tick evaluated again raises nothing new
            with dg.build_schedule_context(repository_def=definitions.get_repository_def(),
                                           scheduled_execution_time=tick_at) as context:
                assert [r.partition_key for r in schedule.evaluate_tick(context).run_requests] == ["us"]
        with dg.instance_for_test() as instance:
            said = tick_sensor("notification_outbox_sensor", instance, definitions=definitions)[0].skip_message
        assert said == "us: No notification due; eu: Delivered 1 notification(s).", said
        [body] = receiver.bodies()
    assert (body["org"], body["event"]) == ("eu", "sync.failed")
    assert "the sync scheduled for 2026-12-06T03:00:00Z was not started" in body["detail"], body["detail"]
    assert "the variable LANGSMITH_API_KEY_EU named by api_key_env is not set" in body["detail"], body["detail"]
    assert receiver.path not in body["detail"]


def raise_an_event_in_each_org(orgs) -> None:
    """An ``access.expiring`` in each org's outbox, written as its runs write them (its own
    settings decide whether and for which webhook)."""
    for org in orgs:
        database = AccessDatabase.of_org(org)
        with database.writer_lease("test"):
            database.ensure_working()
            with database.connect() as conn:
                Notifier.of_org(org).notify(
                    conn, "access.expiring", at=datetime.now(UTC), request_id=f"r-{org.slug}", detail="soon")


def test_each_orgs_notifications_go_to_its_own_webhook_when_its_entry_names_one(
        org_environment, synced, monkeypatch, tmp_path):
    # eu's entry names its own webhook (its team's channel, in Slack's format); us keeps the shared one.
    from langsmith_access.definitions import defs

    two_orgs = org_environment
    copies_of_the_synced_databases(two_orgs, tmp_path, monkeypatch)
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text(two_orgs.orgs_file.read_text().replace(
        "api_key_env: LANGSMITH_API_KEY_EU\n",
        "api_key_env: LANGSMITH_API_KEY_EU\n  webhook_url_env: LANGSMITH_ACCESS_WEBHOOK_URL_EU\n"
        "  webhook_format: slack\n"))
    monkeypatch.setenv(ORGS_FILE_VARIABLE, str(orgs_file))
    with WebhookReceiver() as shared, WebhookReceiver(path="/hooks/T000/B000/eu-own") as eu_own:
        monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", shared.url)
        monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL_EU", eu_own.url)
        raise_an_event_in_each_org(load_orgs())
        with dg.instance_for_test() as instance:
            said = tick_sensor("notification_outbox_sensor", instance, definitions=defs())[0].skip_message
        assert said == "us, eu: Delivered 1 notification(s).", said
        assert [(b["org"], b["request_id"]) for b in shared.bodies()] == [("us", "r-us")]
        [eu_body] = eu_own.bodies()
    assert set(eu_body) == {"text", "mrkdwn"} and eu_body["text"].startswith("[eu] access.expiring")

    # A deployment without eu's variable (its secret not there yet): eu's events wait, and
    # never reach the shared webhook another team reads; the tick says why.
    monkeypatch.delenv("LANGSMITH_ACCESS_WEBHOOK_URL_EU")
    with WebhookReceiver() as shared:
        monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", shared.url)
        raise_an_event_in_each_org(load_orgs(refuse_unusable_keys=False))
        with dg.instance_for_test() as instance:
            said = tick_sensor("notification_outbox_sensor", instance, definitions=defs())[0].skip_message
        assert said.startswith("us: Delivered 1 notification(s); eu: The orgs file "), said
        assert "the variable LANGSMITH_ACCESS_WEBHOOK_URL_EU named by webhook_url_env is not set" in said
        assert [b["org"] for b in shared.bodies()] == ["us"]
    eu = load_orgs(refuse_unusable_keys=False).get("eu")
    [(waiting,)] = query(AccessDatabase.of_org(eu).working_path,
                         "SELECT count(*) FROM main.notifications WHERE status = 'pending'")
    assert waiting == 1
    # The doctor: LangSmith works for eu, so it passes, its configuration check warning why
    # eu's notifications wait.
    diagnosis = run_checks(org=eu)
    assert diagnosis.ok and [c.status for c in diagnosis.checks] == ["warn"] + ["ok"] * 8, diagnosis.text()
    [configuration] = [c for c in diagnosis.checks if c.name == "configuration"]
    assert "LANGSMITH_ACCESS_WEBHOOK_URL_EU named by webhook_url_env is not set" in configuration.detail
    assert "webhook_url_env" in configuration.fix


def readme_cross_org_queries() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("### One question across every org")
    end = text.index("\n## ", start)
    return re.findall(r"```sql\n(.*?)```", text[start:end], re.S)


def test_the_readme_question_across_every_org_runs(two_orgs, synced):
    across, attached = readme_cross_org_queries()
    cwd = Path.cwd()
    os.chdir(two_orgs.data)  # the README says: run it from the directory of the databases
    try:
        with duckdb.connect() as conn:
            rows = conn.execute(across).fetchall()
            conn.execute(attached.split("SELECT", 1)[0])  # the ATTACH lines
            per_grant = conn.execute("SELECT" + attached.split("SELECT", 1)[1]).fetchall()
    finally:
        os.chdir(cwd)
    by_org = {row[0]: row for row in rows}
    assert set(by_org) == {"us", "eu"}
    for slug, sandbox in two_orgs.sandboxes.items():
        org = sandbox.org
        expected_grants = len(org.workspace_membership_rows(shared_only=True))
        org_admins = {m.email.lower() for m in org.active_members()
                      if org.role(m.org_role_id).name == "ORGANIZATION_ADMIN"}
        assert by_org[slug][1] == len(org.active_members()), slug
        assert by_org[slug][2] == expected_grants, slug
        assert by_org[slug][3] == len(org_admins), slug
        assert sum(1 for row in per_grant if row[0] == slug) == expected_grants
        assert by_org[slug][4] == 1, slug  # the one person in both orgs



def test_the_readme_attach_example_runs_for_slugs_duckdb_would_read_as_sql(two_orgs, synced, tmp_path):
    """The README's attach example, with the slugs ``us-east`` and ``2eu`` in place of ``us`` and
    ``eu``, runs: the orgs file allows a ``-`` and a leading digit, which DuckDB reads as SQL in
    an unquoted alias (a syntax error on the analyst's first line, as the example once was)."""
    _, attached = readme_cross_org_queries()
    for slug, other in {"us": "us-east", "eu": "2eu"}.items():
        assert ORG_SLUG_PATTERN.fullmatch(other)
        (tmp_path / other).mkdir()
        shutil.copyfile(two_orgs.database(slug), tmp_path / other / "langsmith_access.duckdb")
        # Every standalone `us`: the folder, the alias, the org column's literal.
        attached, replaced = re.subn(rf"(?<![\w-]){slug}(?![\w-])", other, attached)
        assert replaced >= 4, (slug, attached)
    cwd = Path.cwd()
    os.chdir(tmp_path)  # the README says: run it from the directory of the databases
    try:
        with duckdb.connect() as conn:
            conn.execute(attached.split("SELECT", 1)[0])  # the ATTACH lines
            per_grant = conn.execute("SELECT" + attached.split("SELECT", 1)[1]).fetchall()
    finally:
        os.chdir(cwd)
    for slug, other in {"us": "us-east", "eu": "2eu"}.items():
        expected_grants = len(two_orgs.sandboxes[slug].org.workspace_membership_rows(shared_only=True))
        assert sum(1 for row in per_grant if row[0] == other) == expected_grants, other

def test_each_org_has_its_own_policy_and_notifications_under_its_slug(org_environment, synced, tmp_path, monkeypatch):
    """Placed last: it leaves requests in both orgs' queues."""
    from langsmith_access import api

    two_orgs = org_environment
    policy = tmp_path / "eu-policy.yaml"
    policy.write_text('approval:\n  required: ["*"]\n  approvers: org_admins\n')
    orgs_file = tmp_path / "orgs.yaml"  # eu, the file's last entry, under the policy; us under none
    orgs_file.write_text(two_orgs.orgs_file.read_text() + f"  policy: {policy}\n")
    monkeypatch.setenv(ORGS_FILE_VARIABLE, str(orgs_file))
    receiver = WebhookReceiver()
    monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", receiver.url)

    queued = {}
    for slug, sandbox in two_orgs.sandboxes.items():
        org = sandbox.org
        # A member outside a workspace; the last such pair (the test above took the first).
        workspace, outsider = [(w, m) for w in org.shared_workspaces() for m in org.active_members()
                               if m.ls_user_id not in w.memberships and not m.is_disabled][-1]
        if slug == "us":
            queued[slug] = api.request_grant(outsider.email, workspace.id, "Viewer", requested_by="test", org=slug)
            continue
        # eu's from the command line, whose advice names the command as this org runs it.
        with monkeypatch.context() as later:
            later.setattr(cli, "deliver_notifications", lambda args: None)  # the sensor delivers it below
            done = cli_in_this_process("request", "grant", "--org", "eu", "--user", outsider.email,
                                       "--workspace", workspace.id, "--role", "Viewer", "--requested-by", "test")
        assert done.returncode == 0 and "`langsmith-access approve --org eu " in done.stderr, done.stderr
        [queued[slug]] = [SimpleNamespace(request_id=row["request_id"], status=row["status"], message=done.stderr)
                          for row in api.list_requests(org=slug) if row["request_id"] == done.stdout.strip()]
    assert queued["eu"].status == "awaiting_approval", queued["eu"].message
    assert queued["us"].status == "pending", queued["us"].message

    # us has no notification of its own yet: one written under its slug, as its runs would.
    us_database = AccessDatabase(two_orgs.database("us"))
    with us_database.writer_lease("test"):
        us_database.ensure_working()
        with us_database.connect() as conn:
            Notifier("us", enabled=True).notify(conn, "access.expiring", at=datetime.now(UTC),
                                                request_id="r-us", detail="expires soon")

    # One tick of the outbox sensor delivers both orgs' notifications, each under its slug.
    with receiver, dg.instance_for_test() as instance:
        said = tick_sensor("notification_outbox_sensor", instance)[0].skip_message
    assert said == "us, eu: Delivered 1 notification(s).", said
    delivered = {(b["org"], b["event"], b["request_id"]) for b in receiver.bodies()}
    assert delivered == {("us", "access.expiring", "r-us"),
                         ("eu", "request.awaiting_approval", queued["eu"].request_id)}


def test_a_failed_syncs_notification_names_its_orgs_own_key_variable(two_orgs, synced):
    # DESIGN 10/11: sync.failed says why, for the org it names: with an orgs file, the fix is
    # that org's key variable (api_key_env) and entry, as the CLI says, not LANGSMITH_API_KEY.
    with WebhookReceiver() as receiver:
        failed = sync_in_this_process(two_orgs, "sync", "--org", "eu", "--quiet",
                                      LANGSMITH_API_KEY_EU=REFUSED_KEY, LANGSMITH_ACCESS_WEBHOOK_URL=receiver.url)
        assert failed.returncode == 1, failed.stderr
        [body] = [b for b in receiver.bodies() if b["event"] == "sync.failed"]
    assert body["org"] == "eu"
    assert "LANGSMITH_API_KEY_EU" in body["detail"], body["detail"]
    assert not re.search(r"\bLANGSMITH_(API_KEY|ENDPOINT|ORGANIZATION_ID)\b", body["detail"]), body["detail"]
    assert REFUSED_KEY not in body["detail"] and receiver.path not in body["detail"]
    # The run's sync_runs row says the same.
    [(failure,)] = query(two_orgs.database("eu"), "SELECT failure FROM main.sync_runs WHERE status = 'failed' "
                         "ORDER BY finished_at DESC LIMIT 1")
    assert "LANGSMITH_API_KEY_EU" in failure and not re.search(r"\bLANGSMITH_API_KEY\b", failure), failure


def step_failures_of_a_refused_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list:
    """The step failures of eu's sync, run in Dagster with a key LangSmith refuses (at least one)."""
    from langsmith_access.definitions import defs

    monkeypatch.setenv("LANGSMITH_API_KEY_EU", REFUSED_KEY)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "data" / "langsmith_access.duckdb"))
    with dg.instance_for_test() as instance:
        run = defs().resolve_job_def("langsmith_access_sync").execute_in_process(
            partition_key="eu", instance=instance, raise_on_error=False)
    assert not run.success
    failures = [e.step_failure_data for e in run.all_events if e.is_step_failure]
    assert failures
    return failures


def test_a_steps_failure_in_the_dagster_ui_names_its_orgs_own_key_variable(org_environment, monkeypatch, tmp_path):
    # What the run's page shows for eu's refused key: eu's variable, as the CLI and sync_runs
    # say it, not LANGSMITH_API_KEY (which no process here reads); the fix beside it.
    failures = step_failures_of_a_refused_key(monkeypatch, tmp_path)
    for failure in failures:
        assert failure.user_failure_data is not None, failure.error.to_string()
        shown = failure.user_failure_data.description
        assert "401" in shown and "LANGSMITH_API_KEY_EU" in shown, shown
        assert not re.search(r"\bLANGSMITH_API_KEY\b", shown), shown
        fix = failure.user_failure_data.metadata["fix"].text
        assert "LANGSMITH_API_KEY_EU" in fix and not re.search(r"\bLANGSMITH_API_KEY\b", fix), fix
        assert REFUSED_KEY not in shown + fix


def test_a_steps_failure_in_the_dagster_ui_says_it_once_in_its_orgs_terms(org_environment, monkeypatch, tmp_path):
    # The run's page prints the step's error, then its cause with the cause's stack trace: the
    # cause must not name LANGSMITH_API_KEY where the failure names eu's variable, nor add the
    # frames of an error raised on purpose. Its type stays: the CLI finds the fix by it.
    failures = step_failures_of_a_refused_key(monkeypatch, tmp_path)
    for failure in failures:
        cause = failure.error.cause
        assert cause is not None and cause.cls_name == "AuthenticationError", failure.error.to_string()
        assert "LANGSMITH_API_KEY_EU" in cause.message, cause.message
        assert not re.search(r"\bLANGSMITH_(API_KEY|ENDPOINT)\b", cause.message), cause.message
        assert cause.stack == [] and cause.cause is None, failure.error.to_string()


def test_a_run_stopped_before_its_first_step_says_why_in_its_log(org_environment, monkeypatch, tmp_path):
    # Dagster's own words for a resource's failure are "Error executing resource_fn ...", with
    # ours only under them: the run's log says what stops it and the fix.
    from langsmith_access.definitions import defs

    monkeypatch.setenv("LANGSMITH_API_KEY_EU", "")
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "data" / "langsmith_access.duckdb"))
    job = defs().resolve_job_def("langsmith_access_sync")
    with dg.instance_for_test() as instance:
        unset_key = job.execute_in_process(partition_key="eu", instance=instance, raise_on_error=False)
        no_org = job.execute_in_process(instance=instance, raise_on_error=False)  # several orgs, no partition
        said = {run.run_id: [entry.user_message for entry in instance.all_logs(run.run_id)
                             if entry.level == logging.ERROR and "Fix: " in entry.user_message]
                for run in (unset_key, no_org)}
    assert not unset_key.success and not no_org.success
    assert not [event for event in unset_key.all_events + no_org.all_events if event.is_step_start]
    [key] = said[unset_key.run_id]
    assert "the variable LANGSMITH_API_KEY_EU named by api_key_env is not set" in key, key
    assert key.endswith(f"Fix: {SettingsError.fix}."), key
    [org] = said[no_org.run_id]
    assert "names no org, and 2 are configured (us, eu)" in org, org
    assert org.endswith("Fix: launch the run again with one org's slug as its partition."), org


def test_a_review_sheet_never_goes_into_another_orgs_database(org_environment, synced):
    """One org's command must not write another org's data (DESIGN.md section 11), nor put a
    table into an analysts' database that only dbt and the sync write (section 12)."""
    two_orgs = org_environment
    eu = AccessDatabase(two_orgs.database("eu"))
    for own in (eu.path, eu.working_path):
        before = own.read_bytes()
        exported = cli_in_this_process("review", "export", "--org", "us", "--out", str(own),
                                       "--table", "q4_review")
        assert exported.returncode == 2, exported.stdout + exported.stderr
        assert "org 'eu'" in exported.stderr, exported.stderr
        assert own.read_bytes() == before
        queued = cli_in_this_process("review", "queue-revokes", "--org", "us", "--review-db", str(own),
                                     "--table", "q4_review")
        assert queued.returncode == 2 and "org 'eu'" in queued.stderr, queued.stdout + queued.stderr


def test_a_review_sheets_advice_carries_its_org_in_text_and_json(org_environment, synced, tmp_path):
    sheet = tmp_path / "review.csv"
    sheet.write_text("grant_id,decision\nno-such-grant,revoke\n", encoding="utf-8")
    advice = "`langsmith-access review export --org us`"
    shown = cli_in_this_process("review", "queue-revokes", "--org", "us", "--file", str(sheet), "--dry-run")
    assert shown.returncode == 2 and advice in shown.stdout, shown.stdout + shown.stderr
    done = cli_in_this_process("review", "queue-revokes", "--org", "us", "--file", str(sheet), "--dry-run", "--json")
    [outcome] = json.loads(done.stdout)["outcomes"]
    assert done.returncode == 2 and advice in outcome["message"], outcome


def test_another_orgs_review_sheet_is_refused_naming_the_slug_it_came_from(org_environment, synced, tmp_path):
    # The refusal's fix must be the command that works: the sheet's org by the slug --org takes,
    # not a UUID the operator has to look up in the orgs file.
    sheet = tmp_path / "us-review.csv"
    exported = cli_in_this_process("review", "export", "--org", "us", "--out", str(sheet))
    assert exported.returncode == 0, exported.stderr
    header, first, *_ = sheet.read_text(encoding="utf-8-sig").splitlines()
    assert header.endswith(",decision,reviewer,reason") and first.endswith(",,,")
    sheet.write_text(f"{header}\n{first[:-3]},revoke,,\n", encoding="utf-8")
    queued = cli_in_this_process("review", "queue-revokes", "--org", "eu", "--file", str(sheet), "--dry-run")
    assert queued.returncode == 2, queued.stdout + queued.stderr
    assert "nothing was queued. Queue it for the org it came from (--org us)." in queued.stderr, queued.stderr


def test_an_export_never_goes_into_another_orgs_published_copies(org_environment, synced):
    """``export --org us`` into eu's Parquet copy would give eu's analysts us's grants."""
    two_orgs = org_environment
    eu = AccessDatabase(two_orgs.database("eu"))
    for published in (eu.parquet_path, eu.docs_path):
        before = sorted((p.name, p.read_bytes()) for p in published.rglob("*") if p.is_file())
        exported = cli_in_this_process("export", "--org", "us", "--format", "parquet", "--out", str(published))
        assert exported.returncode == 2, exported.stdout + exported.stderr
        assert "org 'eu'" in exported.stderr, exported.stderr
        assert sorted((p.name, p.read_bytes()) for p in published.rglob("*") if p.is_file()) == before


def test_an_export_or_sheet_never_goes_into_another_orgs_folder(org_environment, synced):
    """``export --org us --out data/eu`` put us's grants and users beside eu's database, where they
    pass for eu's; its own folder and a directory of its own are fine."""
    two_orgs = org_environment
    eu_folder = two_orgs.database("eu").parent
    before = sorted(p.name for p in eu_folder.iterdir())
    for command in (("export", "--format", "csv", "--out", str(eu_folder)),
                    ("export", "--format", "parquet", "--out", str(eu_folder / "exports")),
                    ("review", "export", "--out", str(eu_folder / "review.csv"))):
        refused = cli_in_this_process(*command[:-2], "--org", "us", *command[-2:])
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "the folder of org 'eu': the data of org 'us' there would pass for that org's" in refused.stderr
    assert sorted(p.name for p in eu_folder.iterdir()) == before
    own = two_orgs.database("us").parent / "review.csv"
    assert cli_in_this_process("review", "export", "--org", "us", "--out", str(own)).returncode == 0
    own.unlink()


def test_a_failed_runs_summary_and_fix_name_its_orgs_own_key_variable(org_environment, monkeypatch, tmp_path):
    # What `sync --org eu` prints under a failed run: the fix comes from the error's type, in
    # single-org words (LANGSMITH_API_KEY), and must name eu's variable, which is what is read.
    from langsmith_access import runner

    monkeypatch.setenv("LANGSMITH_API_KEY_EU", REFUSED_KEY)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "data" / "langsmith_access.duckdb"))
    eu = load_orgs().get("eu")
    with dg.instance_for_test() as instance:
        outcome = runner.run_job("langsmith_access_sync", runner.sync_run_config(settings=eu.settings), org=eu,
                                 dagster_instance=instance, log_dir=tmp_path / "logs")
    assert not outcome.success and outcome.org == "eu"
    # "details (stack traces): <log>": the run's events with the failure's stack trace, no key.
    assert outcome.log_path is not None and outcome.log_path.parent == tmp_path / "logs"
    log = outcome.log_path.read_text(encoding="utf-8")
    assert "STEP_FAILURE" in log and 'File "' in log and REFUSED_KEY not in log, log
    for said in (outcome.failure or "", outcome.fix or ""):
        assert "LANGSMITH_API_KEY_EU" in said and not re.search(r"\bLANGSMITH_API_KEY\b", said), said
        assert REFUSED_KEY not in said

"""`request grant|revoke`, `requests` and `provision` as scripts read them (DESIGN.md section 2,
README "Provisioning workspace roles"): what each records, its --json keys and its exit code,
against the synced env, in this process."""

import errno
import getpass
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from langsmith_access.api import request_grant, request_revoke
from langsmith_access.cli.provisioning import report_provisioning
from langsmith_access.names import APPLY_REQUESTS_OP, REFRESH_OP
from langsmith_access.runner import RunOutcome
from langsmith_access.store import export
from langsmith_access.store.sync_runs import OtherOrganizationError
from langsmith_access_tests.helpers import cli_in_this_process, copy_synced_database, query


def _outsider_and_member(org):
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members()
                    if m.ls_user_id not in workspace.memberships and not m.is_disabled)
    member = next(m for m in org.active_members() if m.ls_user_id in workspace.memberships and not m.is_disabled)
    return workspace, outsider, member


def test_a_request_keeps_its_reason_and_a_duplicate_names_the_queued_one_in_json(env):
    sandbox, org, database = env
    workspace, outsider, member = _outsider_and_member(org)
    role = org.role(workspace.memberships[member.ls_user_id].role_id).display_name
    grant = ("request", "grant", "--user", outsider.email, "--workspace", workspace.id, "--role", "Viewer")
    first = cli_in_this_process(*grant, "--reason", "on-call", "--json")
    assert first.returncode == 0, first.stderr
    queued = json.loads(first.stdout)
    assert set(queued) == {"request_id", "status", "message", "duplicate_of"}
    assert (queued["status"], queued["duplicate_of"]) == ("pending", None)
    revoke = cli_in_this_process("request", "revoke", "--user", member.email, "--workspace", workspace.id,
                                 "--role", role, "--reason", "left the team")
    assert revoke.returncode == 0, revoke.stderr
    recorded = query(database.path, "SELECT request_id, action, reason, requested_by FROM main.provisioning_requests")
    assert {r[0]: r[1:] for r in recorded} == {queued["request_id"]: ("grant", "on-call", getpass.getuser()),
                                               revoke.stdout.strip(): ("revoke", "left the team", getpass.getuser())}

    # The same grant again: one request, its id and status, and its id in duplicate_of.
    again = cli_in_this_process(*grant, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) | {"message": ""} == {
        "request_id": queued["request_id"], "status": "pending", "message": "", "duplicate_of": queued["request_id"]}
    assert query(database.path, "SELECT count(*) FROM main.provisioning_requests") == [(2,)]


def test_requests_lists_only_the_status_asked_for(env):
    sandbox, org, database = env
    workspace, outsider, _ = _outsider_and_member(org)
    # Asked by user id: the listing names the member by email, the workspace and role by name.
    queued = cli_in_this_process("request", "grant", "--user", outsider.ls_user_id, "--workspace", workspace.id,
                                 "--role", "Viewer")
    rejected = cli_in_this_process("request", "grant", "--user", "nobody@nowhere.example", "--workspace",
                                   workspace.id, "--role", "Viewer", "--json")
    assert (queued.returncode, rejected.returncode) == (0, 2), (queued.stderr, rejected.stderr)
    rejected_id = json.loads(rejected.stdout)["request_id"]
    listed = cli_in_this_process("requests", "--status", "REJECTED", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["request_id"], r["status"]) for r in json.loads(listed.stdout)] == [(rejected_id, "rejected")]
    # Times in UTC with a Z, as access-at prints them (not Python's "2026-12-01 10:00:00+00:00").
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", json.loads(listed.stdout)[0]["requested_at"])
    shown = cli_in_this_process("requests", "--status", "pending")
    assert shown.stdout.splitlines() == [
        f"{queued.stdout.strip()}  pending           grant  Viewer in {workspace.display_name} for {outsider.email}"]


def test_provision_with_nothing_pending_exits_0_and_says_so(env):
    sandbox, org, database = env
    done = cli_in_this_process("provision", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    # A real run's keys (README): `before_the_queue` is a dry run's word only, `done_first` a real run's.
    assert set(answer) == {"run_id", "success", "failure", "requests", "policy_changes", "unexplained_changes",
                           "privileged_unexplained_changes", "done_first"}
    assert answer["done_first"] == {"approvals_expired": [], "expiry_warnings_sent": [], "expiry_revokes_queued": []}
    assert (answer["success"], answer["failure"], answer["requests"]) == (True, None, [])
    said = cli_in_this_process("provision")
    assert (said.returncode, said.stdout, said.stderr) == (0, "", "no pending requests\n")


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_provision_where_there_is_no_database_yet_creates_none_and_names_the_path(tmp_path, monkeypatch, dry_run):
    """A mistyped LANGSMITH_ACCESS_DUCKDB is no empty queue, as `requests` says (section 2:
    still exit 0, no request was left short of a final status). The run used to create an empty
    database, its folder and working files at the typo, and say only "no pending requests";
    after that, `requests` there could no longer tell the path was wrong either. A dry run says
    what the run would (it exited 1, "run sync first", while the run it previews exits 0)."""
    database = tmp_path / "typo" / "access.duckdb"
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(database))
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_sk_" + "a" * 32)
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", "00000000-0000-4000-8000-000000000001")
    monkeypatch.setenv("LANGSMITH_ENDPOINT", "http://127.0.0.1:9")  # never asked: nothing runs
    absent = (f"no pending requests: there is no database at {database} yet (nothing synced or queued there): "
              "check LANGSMITH_ACCESS_DUCKDB, or run `langsmith-access sync` first\n")
    said = cli_in_this_process("provision", *dry_run)
    assert (said.returncode, said.stdout, said.stderr) == (0, "", absent)
    answer = cli_in_this_process("provision", *dry_run, "--json")
    assert answer.returncode == 0 and answer.stderr == absent, answer
    nothing_ahead = {"before_the_queue": {"expiries_due": [], "approvals_overdue": [], "expiry_warnings_due": []}}
    nothing_first = {"done_first": {"approvals_expired": [], "expiry_warnings_sent": [], "expiry_revokes_queued": []}}
    assert json.loads(answer.stdout) == {"run_id": None, "success": True, "failure": None, "requests": [],
                                         "policy_changes": [], "unexplained_changes": 0,
                                         "privileged_unexplained_changes": 0,
                                         **(nothing_ahead if dry_run else nothing_first)}
    assert not database.parent.exists()
    listed = cli_in_this_process("requests")
    assert listed.returncode == 0 and f"there is no database at {database} yet" in listed.stderr


def test_provision_says_the_drift_it_found_in_json_as_in_text(capsys):
    """The counts of changes made outside langsmith-access that a run's requests found reach
    both outputs (here from a finished run's op outputs, as api.provision returns them)."""
    applied = {"outcomes": [{"request_id": "r1", "status": "already_satisfied", "detail": "found Admin",
                             "plan": [], "writes": 0}],
               "policy_changes": [{"request_id": "r2", "status": "rejected", "detail": "Admin is not granted"}]}
    outcome = RunOutcome(success=True, run_id="run-1", duration_seconds=1.0, outputs={
        APPLY_REQUESTS_OP: applied,
        REFRESH_OP: {"unexplained_changes": 3, "privileged_unexplained_changes": 2}})

    assert report_provisioning(outcome, dry_run=False, as_json=True) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["unexplained_changes"], answer["privileged_unexplained_changes"]) == (3, 2)
    assert answer["policy_changes"] == applied["policy_changes"]
    assert [item["request_id"] for item in answer["requests"]] == ["r1"]

    assert report_provisioning(outcome, dry_run=False, as_json=False) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[:2] == ["rejected          r2  Admin is not granted", "already_satisfied r1  found Admin"]
    assert said[2] == ("drift: 3 change(s) made outside langsmith-access, found by these requests, 2 of them "
                       "to Admin rights: see main.report_unexplained_changes")

    # A request left short of a final status makes the run exit 1, even beside one that reached
    # its own (DESIGN.md section 2: 0 only when every request did); a dry run's planned ones do not.
    applied["outcomes"].append({"request_id": "r3", "status": "planned", "detail": "", "plan": [], "writes": 0})
    assert report_provisioning(outcome, dry_run=False, as_json=True) == 1
    capsys.readouterr()
    applied["outcomes"][:] = applied["outcomes"][1:]
    assert report_provisioning(outcome, dry_run=False, as_json=True) == 1
    assert report_provisioning(outcome, dry_run=True, as_json=True) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["before_the_queue"] == {}


def test_a_dry_run_says_in_text_what_the_real_run_does_first_and_policy_changes_are_no_empty_queue(capsys):
    ahead = {"expiries_due": ["g1"], "approvals_overdue": ["a1"], "expiry_warnings_due": ["w1"]}
    changes = [{"request_id": "r2", "status": "awaiting_approval", "detail": "Admin needs approval"}]
    outcome = RunOutcome(success=True, run_id="run-1", duration_seconds=1.0, outputs={
        APPLY_REQUESTS_OP: {"outcomes": [], "policy_changes": changes, "ahead": ahead}})
    assert report_provisioning(outcome, dry_run=True, as_json=False) == 0
    said = capsys.readouterr()
    assert said.out.splitlines() == [
        "would expire      g1  its end is due: the real run queues the revoke that ends it, first",
        "would expire      a1  past its approval deadline or its --until: approval_expired",
        "would warn        w1  its end is near (LANGSMITH_ACCESS_EXPIRY_WARNING): access.expiring",
        "would be awaiting_approval r2  Admin needs approval"]
    assert said.err == ""  # the run had work (the policy's), so not "no pending requests"



def test_a_dry_run_with_only_expiries_ahead_does_not_say_the_queue_is_empty(capsys):
    """A dry run whose only work is what the real run does first (end a due grant, expire an
    approval, warn of an end) lists it as `would ...`; "no pending requests" beside those lines
    told the operator nothing would happen, while the real run queues and applies the revoke."""
    for ahead in ({"expiries_due": ["g1"], "approvals_overdue": [], "expiry_warnings_due": []},
                  {"expiries_due": [], "approvals_overdue": ["a1"], "expiry_warnings_due": []},
                  {"expiries_due": [], "approvals_overdue": [], "expiry_warnings_due": ["w1"]}):
        outcome = RunOutcome(success=True, run_id="run-1", duration_seconds=1.0, outputs={
            APPLY_REQUESTS_OP: {"outcomes": [], "policy_changes": [], "ahead": ahead}})
        assert report_provisioning(outcome, dry_run=True, as_json=False) == 0
        said = capsys.readouterr()
        assert len(said.out.splitlines()) == 1 and said.out.startswith("would "), said.out
        assert said.err == "", (ahead, said.err)
    # Nothing ahead and nothing queued: said so, as before.
    empty = {"expiries_due": [], "approvals_overdue": [], "expiry_warnings_due": []}
    outcome = RunOutcome(success=True, run_id="run-1", duration_seconds=1.0, outputs={
        APPLY_REQUESTS_OP: {"outcomes": [], "policy_changes": [], "ahead": empty}})
    assert report_provisioning(outcome, dry_run=True, as_json=False) == 0
    assert capsys.readouterr() == ("", "no pending requests\n")

def test_a_failed_provisioning_run_exits_1_and_shows_its_traces_only_with_verbose(env, tmp_path, monkeypatch):
    sandbox, org, database = env
    workspace, outsider, _ = _outsider_and_member(org)
    assert cli_in_this_process("request", "grant", "--user", outsider.email, "--workspace", workspace.id,
                               "--role", "Viewer").returncode == 0
    policy = tmp_path / "policy.yaml"
    policy.write_text("approval: [unclosed\n")  # the run holds the grant and fails, naming the file
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", str(policy))
    for extra in ((), ("--verbose",)):
        done = cli_in_this_process("provision", *extra)
        assert done.returncode == 1, (extra, done.stderr)
        assert "Provisioning run failed: " in done.stderr and str(policy) in done.stderr, done.stderr
        assert "no pending requests" not in done.stderr
        assert ("Stack Trace" in done.stderr) == bool(extra), (extra, done.stderr)
        # The traces are always in the log file the summary names, beside the database.
        [log] = re.findall(r"details \(stack traces\): (\S+) \(or run again with --verbose\)", done.stderr)
        assert Path(log).parent == database.logs_path and "Stack Trace" in Path(log).read_text(encoding="utf-8")


def test_a_revoke_from_python_into_another_orgs_database_file_is_refused_like_a_grant(env, monkeypatch):
    # api.request_grant/request_revoke(database=...) write for the configured org: a file holding
    # another org's data is refused for either, before anything is recorded.
    sandbox, org, database = env
    workspace, outsider, member = _outsider_and_member(org)
    role = org.role(workspace.memberships[member.ls_user_id].role_id).display_name
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", "00000000-0000-4000-8000-0000000000aa")
    with pytest.raises(OtherOrganizationError, match="holds organization"):
        request_grant(outsider.email, workspace.id, "Viewer", database=database.path)
    with pytest.raises(OtherOrganizationError, match="holds organization"):
        request_revoke(member.email, workspace.id, role, database=database.path)
    assert query(database.path, "SELECT count(*) FROM main.provisioning_requests") == [(0,)]


def test_approve_and_deny_json_say_what_was_asked_and_that_nothing_was_recorded(env):
    # README: `approve|deny --json` is {"request_id", "decision", "recorded", "status", "message"}; an
    # unknown id is refused (exit 2), its status null, the refusal recorded.
    for command, decision in (("approve", "approved"), ("deny", "denied")):
        done = cli_in_this_process(command, "no-such-request", "--by", "ops@example.com", "--json")
        assert done.returncode == 2, done.stderr
        answer = json.loads(done.stdout)
        assert answer | {"message": ""} == {"request_id": "no-such-request", "decision": decision, "recorded": False,
                                            "status": None, "message": ""}
        assert "unknown request id no-such-request" in answer["message"]


def _no_database_where_the_variable_points(tmp_path, monkeypatch) -> tuple[Path, str]:
    """LANGSMITH_ACCESS_DUCKDB naming a file in a folder that does not exist (a typo), a usable
    key and org id; the path, and how the commands say there is no database there."""
    database = tmp_path / "typo" / "access.duckdb"
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(database))
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_sk_" + "a" * 32)
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", "00000000-0000-4000-8000-000000000001")
    return database, (f"there is no database at {database} yet (nothing synced or queued there): "
                      "check LANGSMITH_ACCESS_DUCKDB, or run `langsmith-access sync` first.")


@pytest.mark.parametrize("command", ["approve", "deny"])
def test_a_decision_where_there_is_no_database_yet_creates_none_and_names_the_path(tmp_path, monkeypatch, command):
    """No queue holds the id where LANGSMITH_ACCESS_DUCKDB names no database (often a typo, or
    a shell in another directory than the one synced, with the default relative path): refused
    (exit 2) as an unknown id, naming the path, as `requests` and `provision` do. Recording the
    refusal used to create a database, its working files and Parquet copies there, after which
    `requests` could no longer tell the path was wrong either."""
    database, absent = _no_database_where_the_variable_points(tmp_path, monkeypatch)
    said = cli_in_this_process(command, "no-such-request", "--by", "ops@example.com")
    assert (said.returncode, said.stdout) == (2, "")
    assert said.stderr == f"refused: unknown request id no-such-request: {absent}\n"
    # A key pasted as the id is not echoed, as a recorded refusal would not store it.
    answer = cli_in_this_process(command, "lsv2_sk_" + "b" * 32, "--by", "ops@example.com", "--json")
    assert answer.returncode == 2 and "b" * 32 not in answer.stdout + answer.stderr, answer
    assert json.loads(answer.stdout)["recorded"] is False
    assert not database.parent.exists()
    listed = cli_in_this_process("requests")
    assert listed.returncode == 0 and f"there is no database at {database} yet" in listed.stderr


@pytest.mark.parametrize("action", ["grant", "revoke"])
def test_a_request_where_there_is_no_database_yet_creates_none_and_names_the_path(tmp_path, monkeypatch, action):
    """As a decision: nothing synced where LANGSMITH_ACCESS_DUCKDB points, so nothing to check the
    request against; recording its rejection created a database (its folder, working files,
    Parquet copy) at what is often a mistyped path. Refused (exit 2), not recorded, naming it."""
    database, absent = _no_database_where_the_variable_points(tmp_path, monkeypatch)
    absent = absent.removesuffix(".")  # said mid-sentence here
    change = ("request", action, "--user", "ada@example.com", "--workspace", "Platform", "--role", "Editor")
    said = cli_in_this_process(*change)
    assert (said.returncode, said.stdout) == (2, "")
    assert said.stderr == f"rejected (not recorded): {absent}\n"
    answer = cli_in_this_process(*change, "--json")
    assert answer.returncode == 2
    assert json.loads(answer.stdout) == {"request_id": None, "status": "rejected", "message": absent,
                                         "duplicate_of": None}
    assert not database.parent.exists()


def test_a_recorded_decision_exits_0_and_says_so_on_stdout(env, tmp_path, monkeypatch):
    sandbox, org, database = env
    workspace, outsider, member = _outsider_and_member(org)
    other = next(m for m in org.active_members() if not m.is_disabled and m.ls_user_id not in workspace.memberships
                 and m.ls_user_id != outsider.ls_user_id)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f'approval:\n  required: ["Admin"]\n  approvers: ["{member.email}"]\n')
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", str(policy))
    waiting = {}
    for grantee in (outsider, other):
        done = cli_in_this_process("request", "grant", "--user", grantee.email, "--workspace", workspace.id,
                                   "--role", "Admin", "--requested-by", "ops@example.com")
        assert done.returncode == 0 and "awaiting approval" in done.stderr, done.stderr
        waiting[grantee.ls_user_id] = done.stdout.strip()
    approved = cli_in_this_process("approve", waiting[outsider.ls_user_id], "--by", member.email, "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout) | {"message": ""} == {
        "request_id": waiting[outsider.ls_user_id], "decision": "approved", "recorded": True, "status": "pending",
        "message": ""}
    denied = cli_in_this_process("deny", waiting[other.ls_user_id], "--by", member.email, "--comment", "not now")
    assert (denied.returncode, denied.stderr) == (0, ""), denied.stderr
    assert denied.stdout.startswith(f"denied: Admin in {workspace.display_name} for "), denied.stdout
    assert dict(query(database.path, "SELECT request_id, status FROM main.provisioning_requests")) == {
        waiting[outsider.ls_user_id]: "pending", waiting[other.ls_user_id]: "denied"}


def test_a_request_and_a_decision_whose_publish_fails_say_they_were_recorded_and_who_publishes_them(
        env, tmp_path, monkeypatch):
    # A full disk while publishing, after the change was committed: said as a plain error, it read
    # as "nothing happened", and the same request again was "already queued as" the same id.
    sandbox, org, database = env
    workspace, outsider, member = _outsider_and_member(org)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f'approval:\n  required: ["Admin"]\n  approvers: ["{member.email}"]\n')
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", str(policy))
    room = export.stage_parquet_directory

    def no_space(staged, parquet):
        raise OSError(errno.ENOSPC, "No space left on device", str(parquet))

    monkeypatch.setattr(export, "stage_parquet_directory", no_space)
    queued = cli_in_this_process("request", "grant", "--user", outsider.email, "--workspace", workspace.id,
                                 "--role", "Admin")
    request_id = queued.stdout.strip()
    assert queued.returncode == 1 and request_id, queued.stderr
    assert f"error: request {request_id} was queued (awaiting_approval), but publishing it" in queued.stderr
    assert "nothing needs doing again" in queued.stderr, queued.stderr
    assert f"fix: free space on the file system holding {database.path.parent}" in queued.stderr, queued.stderr
    status = "SELECT status FROM main.provisioning_requests WHERE request_id = ?"
    assert query(database.working_path, status, [request_id]) == [("awaiting_approval",)]
    assert query(database.path, status, [request_id]) == []  # not published: the disk is full
    assert database.unfinished_publish_path.exists()

    approved = cli_in_this_process("approve", request_id, "--by", member.email, "--json")
    assert approved.returncode == 1 and json.loads(approved.stdout)["recorded"] is True, approved.stderr
    assert f"error: request {request_id} was approved (pending), but publishing it" in approved.stderr

    # The next writer (here another request) publishes both.
    monkeypatch.setattr(export, "stage_parquet_directory", room)
    other = cli_in_this_process("request", "revoke", "--user", member.email, "--workspace", workspace.id,
                                "--role", org.role(workspace.memberships[member.ls_user_id].role_id).display_name)
    assert other.returncode == 0, other.stderr
    assert query(database.path, status, [request_id]) == [("pending",)]
    assert not database.unfinished_publish_path.exists()


def test_requests_says_when_the_analysts_copy_may_be_behind_what_was_recorded(env, monkeypatch):
    # `requests` reads the analysts' copy: after a publish failed (a full disk) it showed what was
    # published before, and said nothing of what was recorded since.
    sandbox, org, database = env
    workspace, outsider, member = _outsider_and_member(org)
    published = cli_in_this_process("request", "grant", "--user", outsider.email, "--workspace", workspace.id,
                                    "--role", "Viewer").stdout.strip()
    assert cli_in_this_process("requests").stderr == ""
    room = export.stage_parquet_directory

    def no_space(staged, parquet):
        raise OSError(errno.ENOSPC, "No space left on device", str(parquet))

    monkeypatch.setattr(export, "stage_parquet_directory", no_space)
    role = org.role(workspace.memberships[member.ls_user_id].role_id).display_name
    recorded = cli_in_this_process("request", "revoke", "--user", member.email, "--workspace", workspace.id,
                                   "--role", role)
    assert recorded.returncode == 1 and "but publishing it" in recorded.stderr, recorded.stderr
    monkeypatch.setattr(export, "stage_parquet_directory", room)

    note = (f"note: the analysts' copy may be behind what was recorded ({database.unfinished_publish_path.name} "
            "is there: a publish failed or is under way); nothing needs doing: the next writer publishes it\n")
    text = cli_in_this_process("requests")
    assert (text.returncode, text.stderr) == (0, note), text.stderr
    assert [line.split()[0] for line in text.stdout.splitlines()] == [published]  # what the copy holds
    as_json = cli_in_this_process("requests", "--json")
    assert (as_json.returncode, as_json.stderr) == (0, note), as_json.stderr
    assert [row["request_id"] for row in json.loads(as_json.stdout)] == [published]
    none_failed = cli_in_this_process("requests", "--status", "failed")  # an empty listing says both
    assert (none_failed.returncode, none_failed.stdout, none_failed.stderr) == (0, "", note + "no requests\n")

    with database.writer_lease("the next writer"):  # publishes what is due, and the note goes
        database.ensure_working()
    listed = cli_in_this_process("requests", "--json")
    assert (listed.returncode, listed.stderr) == (0, ""), listed.stderr
    assert [row["request_id"] for row in json.loads(listed.stdout)] == [published, recorded.stdout.strip()]


def test_a_provisioning_run_whose_publish_fails_says_what_it_applied_and_who_publishes_it(env, monkeypatch):
    # A full disk as the run publishes, after it applied and recorded its requests: it said success
    # (exit 0) while `requests` showed them pending.
    sandbox, org, database = env
    workspace, outsider, member = _outsider_and_member(org)
    grant = request_grant(outsider.ls_user_id, workspace.id, "Viewer")
    revoke = request_revoke(member.ls_user_id, workspace.id,
                            org.role(workspace.memberships[member.ls_user_id].role_id).display_name)
    assert grant.accepted and revoke.accepted, (grant, revoke)
    room = export.stage_parquet_directory

    def no_space(staged, parquet):
        raise OSError(errno.ENOSPC, "No space left on device", str(parquet))

    monkeypatch.setattr(export, "stage_parquet_directory", no_space)
    done = cli_in_this_process("provision", "--json")
    assert done.returncode == 1, done.stderr
    answer = json.loads(done.stdout)  # as for a run that published: done, not failed
    assert (answer["success"], answer["failure"]) == (True, None), answer
    assert {item["request_id"]: item["status"] for item in answer["requests"]} == {
        grant.request_id: "applied", revoke.request_id: "applied"}
    assert re.search(r"^error: run provision_workspace_roles \S+ recorded what it did, but publishing it to the "
                     rf"analysts' copy {re.escape(database.path.name)} failed \(.*No space left on device\)\. "
                     "Nothing was lost and nothing needs doing again", done.stderr, re.M), done.stderr
    assert f"  fix: free space on the file system holding {database.path.parent} (a publish" in done.stderr
    assert "failed:" not in done.stderr and "Provisioning run failed" not in done.stderr, done.stderr
    status = "SELECT request_id, status FROM main.provisioning_requests"
    assert set(query(database.working_path, status)) == {(grant.request_id, "applied"), (revoke.request_id, "applied")}
    assert database.unfinished_publish_path.exists()

    listed = cli_in_this_process("requests", "--json")  # the analysts' copy lags: the disk is full
    assert {r["request_id"]: r["status"] for r in json.loads(listed.stdout)} == {
        grant.request_id: "pending", revoke.request_id: "pending"}
    assert listed.stderr.startswith("note: the analysts' copy may be behind what was recorded"), listed.stderr

    # A run with nothing to apply whose publish fails says the same, in text: exit 1, no request failed.
    again = cli_in_this_process("provision")
    assert again.returncode == 1 and again.stdout == "", again.stdout
    assert "recorded what it did, but publishing it" in again.stderr and "  fix: free space" in again.stderr

    monkeypatch.setattr(export, "stage_parquet_directory", room)  # the next writer publishes it all
    assert cli_in_this_process("provision").returncode == 0
    listed = cli_in_this_process("requests", "--status", "applied")
    assert (listed.returncode, len(listed.stdout.splitlines())) == (0, 2), listed.stderr
    assert not database.unfinished_publish_path.exists()


# An analyst's session as `duckdb <file>` or a notebook's `duckdb.connect(file)` opens it: read-write,
# holding DuckDB's exclusive lock on the file (no other process can open it, even read-only).
ANALYST_READ_WRITE = """
import sys, duckdb
conn = duckdb.connect(sys.argv[1])
print(conn.execute("SELECT count(*) FROM main.provisioning_requests").fetchone()[0], flush=True)
sys.stdin.readline()
print(conn.execute("SELECT count(*) FROM main.provisioning_requests").fetchone()[0], flush=True)
"""


def test_queueing_and_provisioning_go_on_while_an_analyst_holds_the_database_read_write(env):
    """DESIGN.md section 5, "Analysts never block the pipeline": a queued request and a
    provisioning run publish a new analysts' copy beside the one an analyst's read-write session
    holds; the session keeps reading its own copy, and a new one sees the applied request."""
    sandbox, org, database = env
    workspace, outsider, _ = _outsider_and_member(org)
    analyst = subprocess.Popen([sys.executable, "-c", ANALYST_READ_WRITE, str(database.path)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert analyst.stdout.readline().strip() == "0"
        queued = cli_in_this_process("request", "grant", "--user", outsider.email, "--workspace", workspace.id,
                                     "--role", "Viewer")
        assert queued.returncode == 0, queued.stderr
        provisioned = cli_in_this_process("provision", "--json")
        assert provisioned.returncode == 0, provisioned.stderr
        assert [r["status"] for r in json.loads(provisioned.stdout)["requests"]] == ["applied"]
        out, _ = analyst.communicate("\n", timeout=30)
        assert out.strip() == "0"  # its own copy, as it was when it opened
    finally:
        analyst.kill()
    assert query(database.path, "SELECT request_id, status FROM main.provisioning_requests") == [
        (queued.stdout.strip(), "applied")]


README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_python_example_queues_and_applies_as_written(env):
    """DESIGN.md section 12: the Python API that runs jobs is ``langsmith_access.api``, and the
    README's Python examples move with it. Its provisioning example runs as written (its member
    and workspace swapped for the synced org's): the grant is queued with its reason and
    requester, planned by the dry run, and applied by the run."""
    sandbox, org, database = env
    workspace, outsider, _ = _outsider_and_member(org)
    [example] = [block for block in re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
                 if "langsmith_access.api" in block]
    assert '"ada@example.com"' in example and '"Platform"' in example, example
    example = example.replace('"ada@example.com"', repr(outsider.email)).replace('"Platform"', repr(workspace.id))
    exec(compile(example, str(README), "exec"), {})
    assert query(database.path, "SELECT user_id, workspace_id, status, reason, requested_by "
                                "FROM main.provisioning_requests") == [
        (outsider.ls_user_id, workspace.id, "applied", "on-call", "sec-team")]
    assert query(database.path, "SELECT role_id FROM main.grants WHERE user_id = ? AND workspace_id = ?",
                 [outsider.ls_user_id, workspace.id]) == [(org.role_by_name("WORKSPACE_USER").id,)]


def test_a_request_that_ends_failed_is_final_so_provision_exits_0_and_the_run_is_recorded_on_each(env):
    # DESIGN.md section 2: `provision` exits 0 when every request reached a final status, and
    # `failed` is one; section 4: each request names the run that settled it, and when.
    sandbox, org, database = env
    sandbox.api.plan = "plus"  # no workspace RBAC: Editor is refused, Admin is granted
    workspace, outsider, _ = _outsider_and_member(org)
    other = next(m for m in org.active_members() if not m.is_disabled and m.ls_user_id not in workspace.memberships
                 and m.ls_user_id != outsider.ls_user_id)
    queued = {}
    for grantee, role in ((outsider, "Editor"), (other, "Admin")):
        done = cli_in_this_process("request", "grant", "--user", grantee.email, "--workspace", workspace.id,
                                   "--role", role, "--json")
        assert done.returncode == 0, done.stderr
        queued[role] = json.loads(done.stdout)["request_id"]
    run = cli_in_this_process("provision", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    answer = json.loads(run.stdout)
    assert {item["request_id"]: item["status"] for item in answer["requests"]} == {
        queued["Editor"]: "failed", queued["Admin"]: "applied"}
    rows = query(database.path, "SELECT request_id, status, run_id, updated_at >= requested_at "
                                "FROM main.provisioning_requests")
    assert set(rows) == {(queued["Editor"], "failed", answer["run_id"], True),
                         (queued["Admin"], "applied", answer["run_id"], True)}


def test_without_langsmith_access_duckdb_every_command_uses_data_langsmith_access_duckdb_here(
        env, tmp_path, monkeypatch):
    # DESIGN.md section 1: the analysts' database defaults to data/langsmith_access.duckdb,
    # relative to the working directory: queued, listed, provisioned (its Dagster run and dbt
    # refresh included) and read back there, nowhere else.
    sandbox, org, database = env
    monkeypatch.delenv("LANGSMITH_ACCESS_DUCKDB")
    monkeypatch.chdir(tmp_path)
    default = tmp_path / "data" / "langsmith_access.duckdb"
    copy_synced_database(database.path, default)
    workspace, outsider, _ = _outsider_and_member(org)
    queued = cli_in_this_process("request", "grant", "--user", outsider.email, "--workspace", workspace.id,
                                 "--role", "Viewer")
    assert queued.returncode == 0, queued.stderr
    request_id = queued.stdout.strip()
    listed = cli_in_this_process("requests", "--json")
    assert [row["request_id"] for row in json.loads(listed.stdout)] == [request_id]
    provisioned = cli_in_this_process("provision", "--json")
    assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
    assert query(default, "SELECT status FROM main.provisioning_requests") == [("applied",)]
    assert query(default, "SELECT role_id FROM main.grants WHERE user_id = ? AND workspace_id = ?",
                 [outsider.ls_user_id, workspace.id]) == [(org.role_by_name("WORKSPACE_VIEWER").id,)]
    assert query(database.path, "SELECT count(*) FROM main.provisioning_requests") == [(0,)]

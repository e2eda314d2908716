"""The console script as users run it: a subprocess against a sandbox."""

import argparse
import errno
import getpass
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest
from dagster_shared.error import SerializableErrorInfo

from langsmith_access import cli, console, demo, runner
from langsmith_access.cli import build_parser, common
from langsmith_access.cli import sync as sync_command
from langsmith_access.cli.common import INTERRUPTED, deliver_notifications, org_size, run_handler
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.store.database import (
    DAMAGED_ANALYSTS_COPY_FIX,
    UNWRITABLE_FOLDER_FIX,
    AccessDatabase,
    LeftoverWalError,
    full_disk_fix_of,
)
from langsmith_access_tests.helpers import cli_in_this_process, query

CLI = str(Path(sys.executable).with_name("langsmith-access"))


def _env(sandbox, database, **overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "DAGSTER_"))}
    env.update(sandbox.environment(database), **overrides)
    return env


def test_sync_command_summarises_and_publishes(tmp_path):
    database = tmp_path / "access.duckdb"
    org = generate_org(seed=5, members=25, workspaces=3)
    with SandboxServer(org) as sandbox:
        done = subprocess.run(
            [CLI, "sync"], env=_env(sandbox, database), capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        assert "succeeded" in done.stdout and "users 25" in done.stdout
        assert "API calls 4, retries 0" in done.stdout  # roles, workspaces, members, the org info
        assert "scim_groups: read " in done.stdout
        assert "✓ analysts_database" in done.stderr
        assert done.stderr.startswith("Syncing ") and f" into {database}\n" in done.stderr
        assert sandbox.api_key not in done.stdout + done.stderr
    assert query(database, "SELECT count(*) FROM main.users")[0][0] == 25
    # A first sync: the build started from the parse kept for databases of this name
    # (transform/parse_seed.py) or, on a machine where none is kept yet, parsed the project
    # itself; never from a parse dbt then refused. Its parse is saved in the database's dbt
    # directory, where the next sync's build takes it.
    dbt_dir = tmp_path / "access.dbt"
    assert (dbt_dir / "partial_parse.msgpack").exists()
    build_log = (dbt_dir / "dbt.log").read_text()
    assert "Running with dbt" in build_log  # the sync's build wrote this log
    full_parse_reasons = re.findall(r"Unable to do partial parsing because (.*)", build_log)
    assert full_parse_reasons in ([], ["saved manifest not found. Starting full parse."])
    assert not list(tmp_path.glob("*-ahead-*"))  # no second process parsed ahead


def test_sync_command_refuses_a_personal_token_before_any_request(tmp_path):
    database = tmp_path / "access.duckdb"
    with SandboxServer(generate_org(seed=5, members=5, workspaces=1)) as sandbox:
        token = "lsv2_pt_" + "a" * 32
        done = subprocess.run(
            [CLI, "sync"],
            env=_env(sandbox, database, LANGSMITH_API_KEY=token),
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 1
        assert "personal access token" in done.stderr and "lsv2_sk_" in done.stderr
        assert token not in done.stdout + done.stderr
        assert len(sandbox.request_log) == 0
    assert not database.exists()


def test_a_shrink_share_outside_0_to_1_is_a_usage_error_before_anything_runs(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("LANGSMITH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    for share in ("1.5", "-0.1"):
        done = cli_in_this_process("sync", "--max-shrink-share", share)
        assert done.returncode == 2, done.stderr
        assert done.stderr == "error: --max-shrink-share must be between 0 and 1 (0.2 = 20%)\n"
    assert list(tmp_path.iterdir()) == []
    for edge in ("0", "1"):  # both ends are shares: the command goes on (to refuse the missing key)
        done = cli_in_this_process("sync", "--max-shrink-share", edge)
        assert done.returncode == 1 and "--max-shrink-share" not in done.stderr, done.stderr


@pytest.mark.parametrize("command, option, left_out", [
    (["access-at", "--time", "now", "--user"], "--user", "every user"),
    (["access-at", "--time", "now", "--workspace"], "--workspace", "every workspace"),
    (["review", "export", "--out", "review.csv", "--workspace"], "--workspace", "every workspace"),
    (["review", "export", "--out", "review.duckdb", "--table"], "--table", "table grant_review"),
])
def test_an_empty_value_that_would_mean_all_is_a_usage_error(tmp_path, monkeypatch, command, option, left_out):
    # `--user "$EMAIL"` with the variable unset: one user's access asked for, everyone's listed.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    for empty in ("", " "):
        done = cli_in_this_process(*command, empty)
        assert done.returncode == 2, done.stderr
        assert f"argument {option}: empty: give " in done.stderr and f"leave the option out ({left_out})" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_option_given_twice_with_different_values_is_a_usage_error_and_queues_nothing(tmp_path, monkeypatch):
    # argparse keeps the last value: `--user alice ... --user bob` would queue bob's grant.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    key = "lsv2_sk_" + "0123456789abcdef" * 2 + "_0123456789"
    done = cli_in_this_process("request", "grant", "--user", "alice@example.com", "--workspace", "Platform",
                               "--role", "Editor", "--user", "bob@example.com")
    assert done.returncode == 2, done.stderr
    assert "argument --user: given twice, as 'alice@example.com' and 'bob@example.com': give it once" in done.stderr
    pasted = cli_in_this_process("approve", "some-request", "--by", "ops@example.com", "--by", key)
    assert pasted.returncode == 2 and "argument --by: given twice" in pasted.stderr and key not in pasted.stderr
    # The same value twice says the same thing: not refused (a ready command line with the option repeated).
    paths = cli_in_this_process("export", "--format", "csv", "--out", "one", "--out", "two")
    assert paths.returncode == 2 and "argument --out: given twice, as 'one' and 'two'" in paths.stderr, paths.stderr
    same = cli_in_this_process("requests", "--status", "pending", "--status", "PENDING")
    assert same.returncode == 0, same.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_option_right_after_duration_is_not_taken_for_its_value(tmp_path, monkeypatch):
    # `--duration -1h` reaches the queue's own check (a negative duration, refused with the reason);
    # `--duration --json` forgot the value: argparse's usage error, and nothing is recorded.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    done = cli_in_this_process("request", "grant", "--user", "alice@example.com", "--workspace", "Platform",
                               "--role", "Editor", "--duration", "--json")
    assert done.returncode == 2 and "argument --duration: expected one argument" in done.stderr, done.stderr
    assert done.stdout == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [
    ("request", "--org", "apac", "grant", "--user", "a@example.com", "--workspace", "Platform", "--role", "Editor"),
    ("request", "--org=apac", "revoke", "--user", "a@example.com", "--workspace", "Platform", "--role", "Editor"),
    ("review", "--org", "apac", "export", "--out", "sheet.csv"),
])
def test_org_right_after_a_command_with_actions_is_its_org(tmp_path, monkeypatch, command):
    # DESIGN.md section 11: every command takes --org SLUG after the command's name; for
    # `request` and `review` that is before their action too (argparse called the slug an action).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    done = cli_in_this_process(*command)
    assert done.returncode == 2, done.stderr
    assert "unknown org 'apac'" in done.stderr and "are default" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_option_is_never_taken_for_the_start_of_another_ones_name(tmp_path, monkeypatch):
    # `sandbox` serves no org and takes no --org: argparse read it as --organization-id, and the
    # slug was refused as "not a UUID", naming an option the user never typed.
    monkeypatch.chdir(tmp_path)
    done = cli_in_this_process("sandbox", "--org", "apac")
    assert done.returncode == 2
    assert "unrecognized arguments: --org apac" in done.stderr and "organization" not in done.stderr, done.stderr


def test_review_export_to_a_directory_says_so_without_sending_the_user_to_force(tmp_path, monkeypatch):
    # "exists: ... Pass --force" sent the user to a --force that is refused for a directory too.
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    (tmp_path / "reviews").mkdir()
    for force in ([], ["--force"]):
        done = cli_in_this_process("review", "export", "--out", str(tmp_path / "reviews"), *force)
        assert done.returncode == 2, done.stderr
        assert done.stderr == (f"error: {tmp_path / 'reviews'} is a directory; give a file name "
                               "(review.csv or review.duckdb).\n")
    assert [path.name for path in tmp_path.iterdir()] == ["reviews"]


def test_requests_status_with_spaces_around_is_the_status(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    done = cli_in_this_process("requests", "--status", " Pending ")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("no requests: there is no database at")


@pytest.mark.parametrize("source", [["--file"], ["--table", "grant_review", "--review-db"]])
def test_an_empty_review_sheet_to_read_is_a_usage_error_naming_it(tmp_path, monkeypatch, source):
    # An unset shell variable: read as ".", which "is a directory" or "no such DuckDB file".
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    for empty in ("", " "):
        done = cli_in_this_process("review", "queue-revokes", *source, empty)
        assert done.returncode == 2, done.stderr
        assert f"argument {source[-1]}: empty: name " in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_review_db_that_is_a_directory_is_named_as_one(tmp_path, monkeypatch):
    # It said "no such DuckDB file" of a path that exists.
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    (tmp_path / "reviews").mkdir()
    done = cli_in_this_process("review", "queue-revokes", "--table", "grant_review",
                               "--review-db", str(tmp_path / "reviews"))
    assert done.returncode == 2, done.stderr
    assert f"error: {tmp_path / 'reviews'} is a directory: give your DuckDB file" in done.stderr, done.stderr


def test_sync_all_orgs_with_the_one_default_org_failing_says_none_synced(tmp_path, monkeypatch):
    """Without an orgs file there are no "others" to have synced; a key's secret part never shows."""
    for name in [n for n in os.environ if n.startswith("LANGSMITH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", "00000000-0000-4000-8000-000000000001")
    secret = "0123456789abcdef0123456789abcdef_0123456789"
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_pt_" + secret)  # a personal token: refused
    done = cli_in_this_process("sync", "--all-orgs")
    assert done.returncode == 1
    assert "Sync failed for 1 of 1 org: default (none synced;" in done.stderr, done.stderr
    assert "Syncing" not in done.stderr  # refused before its run started, as a single org's sync is
    assert "the others synced" not in done.stderr
    assert secret not in done.stdout + done.stderr
    assert not (tmp_path / "access.duckdb").exists()


def test_sync_all_orgs_never_shows_a_key_one_orgs_error_quotes(tmp_path, monkeypatch):
    # An org's own trouble (an OS error quoting a path a key was pasted into) is said, masked.
    for name in [n for n in os.environ if n.startswith("LANGSMITH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", "00000000-0000-4000-8000-000000000001")
    secret = "0123456789abcdef0123456789abcdef_0123456789"
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_sk_" + secret)

    def fails(org, args, *, named):
        raise OSError(errno.ENAMETOOLONG, "File name too long", str(tmp_path / ("lsv2_sk_" + secret)))

    monkeypatch.setattr(sync_command, "sync_org", fails)
    done = cli_in_this_process("sync", "--all-orgs")
    assert done.returncode == 1, done.stderr
    assert f"[default] error: {tmp_path}/lsv2_***" in done.stderr and ": File name too long" in done.stderr
    assert "Errno" not in done.stderr
    assert secret not in done.stdout + done.stderr


def test_sync_all_orgs_that_all_succeed_exits_0_naming_each_in_the_file_s_order(tmp_path, monkeypatch):
    # DESIGN.md section 11: `sync --all-orgs` syncs each org (its lines led by its slug) and
    # exits 1 only if one failed; when none did, 0 and the orgs synced, in the orgs file's order.
    for name in [n for n in os.environ if n.startswith("LANGSMITH_")]:
        monkeypatch.delenv(name)
    (tmp_path / "orgs.yaml").write_text(
        "- slug: us\n  organization_id: 00000000-0000-4000-8000-0000000000aa\n  api_key_env: KEY_US\n"
        "  endpoint: https://api.smith.langchain.com\n"
        "- slug: eu\n  organization_id: 00000000-0000-4000-8000-0000000000bb\n  api_key_env: KEY_EU\n"
        "  endpoint: https://eu.api.smith.langchain.com\n",
        encoding="utf-8")
    monkeypatch.setenv("LANGSMITH_ACCESS_ORGS_FILE", str(tmp_path / "orgs.yaml"))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "data" / "langsmith_access.duckdb"))
    monkeypatch.setenv("KEY_US", "lsv2_sk_" + "a" * 32)
    monkeypatch.setenv("KEY_EU", "lsv2_sk_" + "b" * 32)
    synced = []
    monkeypatch.setattr(sync_command, "sync_org", lambda org, args, *, named: synced.append((org.slug, named)) or True)
    done = cli_in_this_process("sync", "--all-orgs")
    assert done.returncode == 0, done.stderr
    assert synced == [("us", True), ("eu", True)]
    assert done.stderr == "All 2 orgs synced: us, eu.\n"


@pytest.fixture
def three_orgs(tmp_path, monkeypatch):
    """An orgs file of us, eu and apac (in that order), their keys set, nothing else of LangSmith's."""
    for name in [n for n in os.environ if n.startswith("LANGSMITH_")]:
        monkeypatch.delenv(name)
    (tmp_path / "orgs.yaml").write_text("".join(
        f"- slug: {slug}\n  organization_id: 00000000-0000-4000-8000-0000000000{suffix}\n"
        f"  api_key_env: KEY_{slug.upper()}\n  endpoint: https://api.smith.langchain.com\n"
        for slug, suffix in (("us", "aa"), ("eu", "bb"), ("apac", "cc"))), encoding="utf-8")
    monkeypatch.setenv("LANGSMITH_ACCESS_ORGS_FILE", str(tmp_path / "orgs.yaml"))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "data" / "langsmith_access.duckdb"))
    for slug in ("US", "EU", "APAC"):
        monkeypatch.setenv(f"KEY_{slug}", "lsv2_sk_" + "a" * 32)


def test_sync_all_orgs_names_every_org_that_failed_after_trying_every_one(three_orgs, monkeypatch):
    # DESIGN.md section 11: `sync --all-orgs` exits 1 if any failed, naming them (all of them, in
    # the orgs file's order), after trying all of them: a failure first does not stop the rest.
    tried = []

    def only_eu_syncs(org, args, *, named):
        tried.append(org.slug)
        return org.slug == "eu"

    monkeypatch.setattr(sync_command, "sync_org", only_eu_syncs)
    done = cli_in_this_process("sync", "--all-orgs")
    assert done.returncode == 1, done.stderr
    assert tried == ["us", "eu", "apac"]
    assert done.stderr == ("Sync failed for 2 of 3 orgs: us, apac (the others synced; each failed org's database "
                           "was left as it was).\n"), done.stderr


def test_sync_all_orgs_stopped_by_ctrl_c_names_the_org_it_stopped_in_those_not_synced_and_those_failed(
        three_orgs, monkeypatch):
    # Ctrl-C ends the whole command (exit 1): the operator reads which org's sync it stopped,
    # which orgs were never started, and which had failed before it.
    started = []

    def us_fails_then_eu_is_interrupted(org, args, *, named):
        started.append(org.slug)
        if org.slug == "us":
            return False
        raise sync_command._Interrupted

    monkeypatch.setattr(sync_command, "sync_org", us_fails_then_eu_is_interrupted)
    done = cli_in_this_process("sync", "--all-orgs")
    assert done.returncode == 1, done.stderr
    assert started == ["us", "eu"]
    assert done.stderr == ("Interrupted while syncing eu; not synced: apac; failed before: us. Each org's database "
                           "was left as its last finished sync published it.\n"), done.stderr


def test_sync_all_orgs_warns_of_an_org_folder_the_orgs_file_no_longer_names_with_work_left(tmp_path, monkeypatch,
                                                                                            refused_port):
    # 'old' was removed from the orgs file while its queue held a time-bound grant still in force
    # and a pending request: no run settles them any more, so the grant's access would never end.
    for name in [n for n in os.environ if n.startswith("LANGSMITH_")]:
        monkeypatch.delenv(name)
    data = tmp_path / "data"
    (tmp_path / "orgs.yaml").write_text(
        "- slug: us\n  organization_id: 00000000-0000-4000-8000-0000000000aa\n  api_key_env: KEY_US\n"
        f"  endpoint: http://127.0.0.1:{refused_port}\n",
        encoding="utf-8")
    monkeypatch.setenv("LANGSMITH_ACCESS_ORGS_FILE", str(tmp_path / "orgs.yaml"))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(data / "langsmith_access.duckdb"))
    monkeypatch.setenv("KEY_US", "lsv2_sk_" + "a" * 32 + "_secret")
    monkeypatch.setattr(sync_command, "sync_org", lambda org, args, *, named: True)
    old_org = "00000000-0000-4000-8000-0000000000cc"
    row = ("INSERT INTO main.provisioning_requests (request_id, action, status, requested_at, updated_at, "
           "expires_at, parent_request_id) VALUES (?, ?, ?, now(), now(), ?, NULL)")
    settled_only = data / "settled" / "langsmith_access.working.duckdb"
    for folder, rows in (("old", [("g1", "grant", "applied", "2099-01-01"), ("p1", "grant", "pending", None)]),
                         ("settled", [("g2", "grant", "applied", None), ("r1", "revoke", "failed", None)])):
        database = AccessDatabase(data / folder / "langsmith_access.duckdb")
        database.path.parent.mkdir(parents=True)
        database.ensure_working()
        with duckdb.connect(str(database.working_path)) as conn:
            conn.executemany(row, rows)
            conn.execute("INSERT INTO main.sync_runs (sync_id, job, status, started_at, finished_at, "
                         "organization_id) VALUES ('s', 'sync', 'succeeded', now(), now(), ?)", [old_org])
    (data / "no-database").mkdir()
    (data / "us").mkdir()

    done = cli_in_this_process("sync", "--all-orgs")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {data / 'old'} holds organization {old_org}'s database, which no entry of "
        f"{tmp_path / 'orgs.yaml'} names, with 1 open request and 1 time-bound grant still to end: no run "
        "settles them now (a time-bound grant's access does not end). Fix: give that org its entry back with "
        f"slug 'old' (then run `langsmith-access provision --org old`), or, if it was renamed, move "
        f"{data / 'old'}'s files into its new slug's folder."], done.stderr
    assert settled_only.exists()  # a folder whose work is all settled is not worth a warning

    # The doctor says it too, under its checks (nothing answers at the endpoint: it fails).
    doctor = cli_in_this_process("doctor")
    assert doctor.returncode == 1 and "fail endpoint" in doctor.stdout, doctor
    assert [line for line in doctor.stderr.splitlines() if line.startswith("warning:")] == warnings
    doctor = cli_in_this_process("doctor", "--json")
    assert json.loads(doctor.stdout)["warnings"] == [warning.removeprefix("warning: ") for warning in warnings]
    # And `doctor --all-orgs`, which checks every org the file names, in text and in --json.
    every_org = cli_in_this_process("doctor", "--all-orgs")
    assert [line for line in every_org.stderr.splitlines() if line.startswith("warning:")] == warnings, every_org
    every_org = cli_in_this_process("doctor", "--all-orgs", "--json")
    assert json.loads(every_org.stdout)["warnings"] == [warning.removeprefix("warning: ") for warning in warnings]


def test_an_expected_failure_reads_like_advice_and_the_traces_go_to_a_log_file(tmp_path, monkeypatch, refused_port):
    database = tmp_path / "access.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "DAGSTER_"))}
    env.update(
        LANGSMITH_API_KEY="lsv2_sk_" + "b" * 32,
        LANGSMITH_ORGANIZATION_ID="00000000-0000-4000-8000-000000000001",
        LANGSMITH_ENDPOINT=f"http://127.0.0.1:{refused_port}",
        LANGSMITH_ACCESS_DUCKDB=str(database),
        LANGSMITH_ACCESS_MAX_RETRIES="0",
    )
    done = subprocess.run([CLI, "sync"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    # What failed and why, the fix, where the details are: a few lines, no stack trace.
    assert len(lines) <= 12, done.stderr
    assert "Traceback" not in done.stderr and "Stack Trace" not in done.stderr
    failure = next(line for line in lines if line.startswith("Sync failed: "))
    assert "GET /api/v1/" in failure and "TransientError" not in failure
    assert "connection refused: nothing listens at that host and port" in failure  # why, not only "dropped"
    assert any(line.startswith("  fix: ") and "LANGSMITH_ENDPOINT" in line for line in lines)
    detail = next(line for line in lines if line.startswith("  details (stack traces): "))
    log = Path(detail.split(": ", 1)[1].split(" (or run again")[0])
    assert log.parent == tmp_path / "logs" and log.name.startswith("langsmith_access_sync-")
    assert "Stack Trace" in log.read_text() and "TransientError" in log.read_text()
    assert env["LANGSMITH_API_KEY"] not in done.stderr + log.read_text()
    # A first sync: nothing to have left as it was, and it says so.
    assert "Nothing was published: there is no analysts' database yet." in lines
    assert "left as they were" not in done.stderr and not database.exists()

    # --verbose in this process (what reaches the terminal is the same; the console script's
    # own behaviour is checked above).
    for name in list(os.environ):  # a copy: the loop removes names from it
        if name not in env:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    verbose = cli_in_this_process("sync", "--verbose")
    assert verbose.returncode == 1
    assert "Stack Trace" in verbose.stderr and "fix: " in verbose.stderr


def test_a_database_path_that_is_no_duckdb_file_is_named_with_the_fix(tmp_path, monkeypatch):
    """Not "another run holds the database" (waiting would not help): the file, DuckDB's reason,
    and LANGSMITH_ACCESS_DUCKDB to change; for a read command and for a sync's run alike."""
    notes = tmp_path / "notes.duckdb"
    notes.write_text("meeting notes, not a database\n" * 100)
    with SandboxServer(generate_org(seed=5, members=5, workspaces=1)) as sandbox:
        for name, value in sandbox.environment(notes).items():
            monkeypatch.setenv(name, value)
        for command in (["requests"], ["sync", "--quiet"], ["request", "grant", "--user", "a@b.c",
                                                           "--workspace", "w", "--role", "Editor"]):
            done = cli_in_this_process(*command)
            assert done.returncode == 1, (command, done.stderr)
            assert "not a valid DuckDB database file" in done.stderr, (command, done.stderr)
            # The file that is there, not the working copy made of it (removed again at once).
            assert f"could not open {notes}:" in done.stderr and "notes.working" not in done.stderr, done.stderr
            assert "fix: point LANGSMITH_ACCESS_DUCKDB at" in done.stderr, (command, done.stderr)
            assert "another sync or provisioning run holds" not in done.stderr
    assert notes.read_text().startswith("meeting notes")  # nothing written over it
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["notes.duckdb", "notes.lock"]  # nor beside it


def test_a_database_path_that_is_a_directory_or_under_a_file_is_refused_before_anything_is_written(
        tmp_path, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    a_file = tmp_path / "hostname"
    a_file.write_text("not a folder\n")
    cases = [(folder, f"names the directory {folder}: point it at the database file in it, like "
                      f"{folder / 'langsmith_access.duckdb'}"),
             (a_file / "x.duckdb", f"is {a_file / 'x.duckdb'}, but {a_file} is a file, not a directory")]
    with SandboxServer(generate_org(seed=5, members=5, workspaces=1)) as sandbox:
        for path, fix in cases:
            for name, value in sandbox.environment(path).items():
                monkeypatch.setenv(name, value)
            for command in (["sync", "--quiet"], ["provision"], ["requests"],
                            ["request", "grant", "--user", "a@b.c", "--workspace", "w", "--role", "Editor"]):
                done = cli_in_this_process(*command)
                assert done.returncode == 1, (command, done.stderr)
                assert f"LANGSMITH_ACCESS_DUCKDB {fix}" in done.stderr, (command, done.stderr)
                assert "Errno" not in done.stderr, (command, done.stderr)
        assert len(sandbox.request_log) == 0  # refused before any request
    # Nothing made beside either path: no lock file, no logs folder, no working copy.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "hostname"]
    assert list(folder.iterdir()) == []


def test_a_database_path_ending_in_a_slash_is_a_directory_even_before_it_exists(tmp_path, monkeypatch):
    # "data/" (a folder not made yet) was read as a database file named "data": every command
    # wrote it, and its lock and working files, beside where the user meant, and said nothing.
    monkeypatch.delenv("LANGSMITH_ACCESS_ORGS_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", "data/")
    for command in (["requests"], ["provision"],
                    ["request", "grant", "--user", "a@b.c", "--workspace", "w", "--role", "Editor"]):
        done = cli_in_this_process(*command)
        assert done.returncode == 1, (command, done.stderr)
        assert ("LANGSMITH_ACCESS_DUCKDB is data/, a directory (it ends in '/'): point it at the database "
                "file in it, like data/langsmith_access.duckdb.") in done.stderr, (command, done.stderr)
    assert list(tmp_path.iterdir()) == []  # no file named "data", no lock, no working copy


def test_a_blank_requester_is_the_os_user_not_nobody(tmp_path, monkeypatch):
    # DESIGN.md section 2: --requested-by defaults to the OS user name; a blank one is not given.
    database = tmp_path / "access.duckdb"
    unsynced = AccessDatabase(database)
    with unsynced.writer_lease("test set-up"):  # a database, never synced: the request is recorded
        unsynced.ensure_working()
        unsynced.publish()
    with SandboxServer(generate_org(seed=5, members=5, workspaces=1)) as sandbox:
        for name, value in sandbox.environment(database).items():
            monkeypatch.setenv(name, value)
        done = cli_in_this_process("request", "grant", "--user", "a@b.c", "--workspace", "w", "--role", "Editor",
                                   "--requested-by", "  ")
    assert done.returncode == 2, done.stderr  # no synced data to check it against: rejected, recorded
    assert query(database, "SELECT requested_by FROM main.provisioning_requests") == [(getpass.getuser(),)]


def test_ctrl_c_ends_a_command_with_130_and_a_sentence_not_a_traceback(capsys):
    def interrupted(args):
        raise KeyboardInterrupt  # as Ctrl-C does, anywhere in a handler (an import, a wait)

    assert run_handler(interrupted, argparse.Namespace()) == INTERRUPTED == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: ") and "Traceback" not in err


# Ctrl-C while the command line is still being imported, made certain: the import of one of its
# modules raises KeyboardInterrupt, as the signal does wherever it lands.
_CTRL_C_DURING_IMPORT = """
import sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "langsmith_access.cli.sync":
            raise KeyboardInterrupt
sys.meta_path.insert(0, CtrlC())
from langsmith_access.console import run
run()
"""


def test_ctrl_c_while_the_console_script_imports_ends_with_130_and_a_sentence_not_a_traceback():
    ended = subprocess.run([sys.executable, "-c", _CTRL_C_DURING_IMPORT, "requests"], capture_output=True,
                           text=True, timeout=60)
    assert ended.returncode == INTERRUPTED == console.INTERRUPTED, ended.stderr
    assert ended.stderr == "interrupted before the command started: nothing was read or changed\n"


def test_the_console_script_runs_the_command_line():
    # The installed `langsmith-access` is console.run (pyproject.toml): the whole CLI behind the guard.
    script = Path(sys.executable).with_name("langsmith-access")
    assert "from langsmith_access.console import run" in script.read_text(encoding="utf-8")
    shown = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "request" in shown.stdout, shown.stderr
    # The command's exit code is the script's: scripts and schedulers act on it.
    misplaced = subprocess.run([str(script), "--org", "us", "requests"], capture_output=True, text=True, timeout=60)
    assert misplaced.returncode == 2, (misplaced.stdout, misplaced.stderr)
    assert "error: --org goes after the command's name" in misplaced.stderr


def test_a_run_interrupted_under_way_fails_with_the_interrupted_fix():
    recorded = SerializableErrorInfo(  # as Dagster records a step stopped by Ctrl-C
        message="dagster._core.errors.DagsterExecutionInterruptedError\n", stack=[],
        cls_name="DagsterExecutionInterruptedError", cause=None)
    assert runner._fix_for(recorded) == runner.INTERRUPTED_FIX
    # Said in words, not as Dagster's class name.
    assert runner._without_type_name(recorded) == "interrupted (Ctrl-C or a signal) before it finished"


def test_a_database_no_sync_built_yet_gets_the_fix_not_a_catalog_error(tmp_path, monkeypatch):
    database = tmp_path / "queued-only.duckdb"
    duckdb.connect(str(database)).close()  # exists, as queueing a request leaves it, with no tables
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(database))
    for command in (["access-at", "--time", "now"], ["export", "--format", "csv", "--out", str(tmp_path / "out")],
                    ["review", "export", "--out", str(tmp_path / "review.csv")]):
        done = cli_in_this_process(*command)
        assert done.returncode == 1, (command, done.stderr)
        assert done.stderr == f"error: no sync has been published to {database} yet: run `langsmith-access sync` first.\n"
    assert not (tmp_path / "out").exists() and not (tmp_path / "review.csv").exists()  # nothing half-made


def test_a_table_an_older_version_never_built_gets_the_fix_in_one_line(tmp_path, monkeypatch):
    # A sync was published, but by a version without the tables this command reads.
    database = tmp_path / "older.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE TABLE main.sync_runs AS SELECT 'succeeded' AS status")
    monkeypatch.delenv("LANGSMITH_ACCESS_ORGS_FILE", raising=False)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(database))
    done = cli_in_this_process("access-at", "--time", "now")
    assert done.returncode == 1, done.stderr
    error, fix = done.stderr.splitlines()
    assert error == ("error: the database has no table grant_history, which this command reads: no sync of this "
                     "release has built it (an older release's database, or one a request was queued in before any "
                     "sync)"), done.stderr
    assert fix == "  fix: run langsmith-access sync: it builds every table the commands read"


def test_a_reader_gone_before_a_write_around_the_guard_is_no_error(capfd):
    # `... | head -1`: a write that bypassed ReaderMayLeave met the closed pipe. Not a failure.
    def reader_gone(args):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    assert run_handler(reader_gone, argparse.Namespace()) == 0
    assert capfd.readouterr().err == ""


def test_a_folder_this_user_cannot_write_gets_the_fix_in_the_cli_and_in_a_failed_run(capsys, monkeypatch):
    # Root writes anywhere and nothing here may mount a read-only file system: the error is raised.
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", "/srv/access/langsmith_access.duckdb")

    def unwritable(path):
        def handler(args):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return handler

    assert run_handler(unwritable("/srv/access/langsmith_access.lock"), argparse.Namespace(org=None)) == 1
    assert f"fix: {UNWRITABLE_FOLDER_FIX}" in capsys.readouterr().err
    # Another path (an export's) is not the database's folder: its own fix.
    assert run_handler(unwritable("/sys/exports"), argparse.Namespace(org=None)) == 1
    err = capsys.readouterr().err
    assert "fix: this user may not write /sys/exports" in err and "LANGSMITH_ACCESS_DUCKDB" not in err
    # Said as mkdir says it, "<path>: <what happened>", not as Python's "[Errno 13] ...: '<path>'".
    assert err.startswith("error: /sys/exports: Permission denied\n"), err

    def recorded(path):  # as Dagster records the same error in a run's failure
        return SerializableErrorInfo(message=f"OSError: [Errno 30] Read-only file system: '{path}'\n",
                                     stack=[], cls_name="OSError", cause=None)

    database = Path("/srv/access/langsmith_access.duckdb")
    assert runner._fix_for(recorded("/srv/access/langsmith_access.lock"), database) == UNWRITABLE_FOLDER_FIX
    assert runner._fix_for(recorded("/elsewhere/x.csv"), database).startswith("this user may not write /elsewhere")



def test_a_full_disk_gets_the_fix_in_the_cli_and_in_a_failed_run(capsys, monkeypatch):
    # Nothing here may mount a small file system: the OS error is raised as a write to a full
    # one raises it, and DuckDB's own wording comes from a real write to /dev/full.
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", "/srv/access/langsmith_access.duckdb")

    def lock_not_written(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/srv/access/langsmith_access.lock")

    assert run_handler(lock_not_written, argparse.Namespace(org=None)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: /srv/access/langsmith_access.lock: No space left on device\n"
                          "  fix: the file system holding /srv/access is full (or this user's disk quota is used "
                          "up): free space there, then run again (a sync needs room"), err

    def duckdb_write(args):
        with duckdb.connect() as conn:
            conn.execute("COPY (SELECT range AS x FROM range(100000)) TO '/dev/full' (FORMAT csv)")

    assert run_handler(duckdb_write, argparse.Namespace(org=None)) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "\n  fix: the file system holding /dev is full" in err, err

    def recorded(text):  # as Dagster records the same errors in a run's failure
        return SerializableErrorInfo(message=f"OSError: {text}\n", stack=[], cls_name="OSError", cause=None)

    database = Path("/srv/access/langsmith_access.duckdb")
    copy = ("[Errno 28] No space left on device: '/srv/access/langsmith_access.working.duckdb' -> "
            "'/srv/access/langsmith_access.sync-scratch.duckdb'")
    assert runner._fix_for(recorded(copy), database).startswith("the file system holding /srv/access is full")
    assert runner._fix_for(recorded("[Errno 122] Disk quota exceeded: '/elsewhere/x.csv'"), database) == (
        "the file system holding /elsewhere is full (or this user's disk quota is used up): free space there, "
        "then run again")
    # A dbt model that found no room fails its node, not the step's own error: its message says it.
    node = ('ERROR model review_sheet: Runtime Error in model review_sheet (models/reports/review_sheet.sql)\n'
            '  TransactionContext Error: Failed to commit: Could not write file '
            '"/srv/access/langsmith_access.sync-scratch.duckdb.wal": No space left on device')
    assert full_disk_fix_of(node, database).startswith("the file system holding /srv/access is full")
    assert full_disk_fix_of("ERROR model users: Binder Error", database) is None


def test_a_damaged_analysts_copy_gets_its_own_fix_and_provision_publishes_it_again(tmp_path, monkeypatch,
                                                                                   refused_port):
    # Only the analysts' copy is damaged (a bad block, a copy cut short by a backup tool): the
    # working file beside it holds everything, and a provisioning run with nothing queued, which
    # sends LangSmith nothing, publishes it again.
    organization_id = "5b4c7a5e-0c6d-4f7e-9a39-1d2a3b4c5d6e"
    database = AccessDatabase(tmp_path / "langsmith_access.duckdb", organization_id)
    with database.writer_lease("a first sync"):
        database.ensure_working()
        database.publish()
    with open(database.path, "r+b") as handle:  # inside the checksummed part of the file's header
        handle.seek(100)
        handle.write(b"\xff" * 64)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(database.path))
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", organization_id)
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_sk_" + "0" * 32)
    monkeypatch.setenv("LANGSMITH_ENDPOINT", f"http://127.0.0.1:{refused_port}")

    refused = cli_in_this_process("requests")
    assert refused.returncode == 1 and f"could not open {database.path}: " in refused.stderr, refused
    assert f"  fix: {DAMAGED_ANALYSTS_COPY_FIX}" in refused.stderr, refused
    provisioned = cli_in_this_process("provision")
    assert provisioned.returncode == 0 and "no pending requests" in provisioned.stderr, provisioned
    assert cli_in_this_process("requests").returncode == 0

def test_the_demo_never_syncs_its_generated_org_over_another_orgs_database(tmp_path, monkeypatch):
    # A shell set up for a real org (LANGSMITH_ACCESS_DUCKDB exported) that runs the demo.
    database = tmp_path / "real.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute("CREATE TABLE main.workspaces AS SELECT '00000000-0000-4000-8000-00000000cafe' AS organization_id")
    before = database.read_bytes()
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(database))
    done = cli_in_this_process("demo")
    assert done.returncode == 1
    assert (f"error: {database} (LANGSMITH_ACCESS_DUCKDB) holds organization 00000000-0000-4000-8000-00000000cafe, "
            "not the demo's generated one") in done.stderr
    assert "fix: unset LANGSMITH_ACCESS_DUCKDB" in done.stderr
    assert database.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["real.duckdb"]


def test_the_demo_beside_an_exported_orgs_file_says_how_to_run_it(tmp_path, monkeypatch):
    # A deployment's shell (README "Many organizations"): the demo's runs would load definitions
    # partitioned by the file's slugs, which refuse the demo's org. Refused before anything
    # starts, with the command that works; the environment is left as the user set it.
    orgs_file = tmp_path / "orgs.yaml"
    orgs_file.write_text("- slug: us\n  organization_id: 00000000-0000-4000-8000-000000000001\n"
                         "  endpoint: https://api.smith.langchain.com\n  api_key_env: LANGSMITH_API_KEY_US\n")
    monkeypatch.setenv("LANGSMITH_ACCESS_ORGS_FILE", str(orgs_file))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "demo" / "langsmith_access.duckdb"))
    done = cli_in_this_process("demo", "--members", "3", "--workspaces", "1")
    assert done.returncode == 1
    assert f"LANGSMITH_ACCESS_ORGS_FILE is set ({orgs_file})" in done.stderr
    assert "fix: run it without the file: env -u LANGSMITH_ACCESS_ORGS_FILE langsmith-access demo" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orgs.yaml"]
    assert os.environ["LANGSMITH_ACCESS_ORGS_FILE"] == str(orgs_file)


def test_the_demo_does_not_echo_a_key_pasted_into_the_orgs_file_variable(tmp_path, monkeypatch):
    key = "lsv2_sk_" + "c" * 32 + "_pasted"
    monkeypatch.setenv("LANGSMITH_ACCESS_ORGS_FILE", key)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "demo" / "langsmith_access.duckdb"))
    done = cli_in_this_process("demo", "--members", "3", "--workspaces", "1")
    assert done.returncode == 1
    assert "LANGSMITH_ACCESS_ORGS_FILE is set (" in done.stderr
    assert key not in done.stderr + done.stdout


def test_the_demo_on_an_org_too_small_for_its_stories_says_so_before_it_starts(tmp_path, monkeypatch):
    # Its stories need a workspace with members to change and people to approve: a small
    # generated org has none (it stopped with a traceback half-way through before).
    monkeypatch.delenv("LANGSMITH_ACCESS_ORGS_FILE", raising=False)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "demo" / "langsmith_access.duckdb"))
    done = cli_in_this_process("demo", "--members", "12", "--workspaces", "2")
    assert done.returncode == 1, done.stderr
    assert "the generated org (--members 12, --workspaces 2, --seed 42) is too small" in done.stderr
    assert "fix: use more members and workspaces, e.g. the defaults (--members 50 --workspaces 8)" in done.stderr
    assert done.stdout == "" and list(tmp_path.iterdir()) == []  # no sandbox, no sync, no file
    negative = cli_in_this_process("demo", "--members", "-5")
    assert negative.returncode == 2
    assert "argument --members: -5 is below 0: give 0 or more" in negative.stderr
    assert "'many' is not a whole number" in cli_in_this_process("sandbox", "--workspaces", "many").stderr


def test_the_demo_runs_the_org_its_options_name_and_the_readmes_defaults(monkeypatch):
    # `make demo` and the README's story: seed 42, 50 members, 8 workspaces unless told otherwise;
    # the demo's exit code is the command's.
    asked: list[dict] = []
    monkeypatch.setattr(demo, "run_demo", lambda **options: asked.append(options) or len(asked) - 1)
    assert cli.main(["demo"]) == 0
    assert cli.main(["demo", "--seed", "7", "--members", "20", "--workspaces", "3"]) == 1
    assert asked == [{"seed": 42, "members": 50, "workspaces": 8}, {"seed": 7, "members": 20, "workspaces": 3}]


def test_a_count_may_be_zero_and_no_less():
    # "give 0 or more", as the message says: an org of no pending invites is a real one.
    assert org_size("0") == 0 and org_size("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match=r"^-1 is below 0: give 0 or more$"):
        org_size("-1")


def test_an_org_too_big_to_generate_is_refused_before_the_sandbox_builds_it():
    # The sandbox (and the demo's) builds the whole org in memory: --members 1000000000 was
    # accepted and ran until the machine had no memory left.
    for command in ("sandbox", "demo"):
        done = cli_in_this_process(command, "--members", "1000000000")
        assert done.returncode == 2, done.stderr
        assert ("argument --members: 1000000000 is above 200,000: the sandbox holds its whole org in memory "
                "(~5 GB a million members); give 200,000 or fewer") in done.stderr
    assert "argument --workspaces: 200001 is above 200,000" in cli_in_this_process(
        "sandbox", "--workspaces", "200001").stderr
    assert "argument --pending-invites: 200001 is above" in cli_in_this_process(
        "sandbox", "--pending-invites", "200001").stderr
    assert org_size("200000") == 200_000 and org_size("0") == 0


def test_the_demo_with_a_bad_variable_says_which_before_the_sandbox_starts(tmp_path, monkeypatch):
    # LANGSMITH_ACCESS_DUCKDB naming a directory: the variable's own message, as every other
    # command gives it (it was DuckDB's "Is a directory", with the fix for a damaged file).
    monkeypatch.delenv("LANGSMITH_ACCESS_ORGS_FILE", raising=False)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path))
    done = cli_in_this_process("demo", "--members", "12", "--workspaces", "2")
    assert done.returncode == 1, done.stderr  # a setting's error, as every command exits with it
    assert f"LANGSMITH_ACCESS_DUCKDB names the directory {tmp_path}" in done.stderr, done.stderr
    assert done.stdout == "" and list(tmp_path.iterdir()) == []  # no sandbox, no file


def test_a_published_sync_whose_summary_cannot_be_read_still_exits_0(tmp_path, monkeypatch):
    # The run published; the analysts' copy then would not open (here: a session that wrote to it
    # left DuckDB's log of the file it replaced). The sync is no less done: exit 0, and say why.
    def unreadable(conn, run_id):
        raise LeftoverWalError(tmp_path / "access.duckdb", "WAL does not match database file")

    monkeypatch.setattr(sync_command, "succeeded_sync_run", unreadable)
    database = tmp_path / "access.duckdb"
    with SandboxServer(generate_org(seed=5, members=5, workspaces=1)) as sandbox:
        for name, value in sandbox.environment(database).items():
            monkeypatch.setenv(name, value)
        done = cli_in_this_process("sync", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "succeeded in" in done.stderr and f"was published to {database}" in done.stderr
    assert "summary could not be read there" in done.stderr and "fix: close the session" in done.stderr
    assert "Syncing " not in done.stderr and "✓" not in done.stderr  # --quiet: no progress lines
    assert query(database, "SELECT count(*) FROM main.users")[0][0] == 5


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((action.choices for action in parser._actions if isinstance(action, argparse._SubParsersAction)), {})


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")} - {"--help"}


def test_the_readme_command_line_synopsis_is_the_parsers():
    """README "## Command line": its block names every command, and each command's options
    exactly as `--help` has them (the review commands' in "Access reviews": only a subset here)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Command line\n")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S).group(1)
    lines: list[str] = []
    for line in block.splitlines():
        if line.startswith("langsmith-access "):
            lines.append(line)
        else:  # a continuation line of the command above
            lines[-1] += " " + line
    parsers = _subcommands(build_parser())
    documented: set[str] = set()
    for line in lines:
        words = line.split("#")[0].replace("\\", " ").split()
        flags = set(re.findall(r"--[a-z][a-z0-9-]*", " ".join(words)))
        for name in words[1].split("|"):
            documented.add(name)
            subcommands = _subcommands(parsers[name])
            for sub in (words[2].split("|") if subcommands else []):
                assert sub in subcommands, f"README: no command `{name} {sub}`"
                options = _options(subcommands[sub])
                assert flags <= options, (name, sub, flags - options)
                if name != "review":
                    assert options <= flags, (name, sub, options - flags)
            if not subcommands:
                assert flags == _options(parsers[name]), (name, flags ^ _options(parsers[name]))
    assert documented == set(parsers)


def test_a_command_delivers_notifications_when_it_ends_but_not_after_ctrl_c(monkeypatch):
    # DESIGN.md section 10: each command that serves an org delivers what is due when it is done;
    # after Ctrl-C the user asked to stop, so nothing more is sent (the next command sends it).
    delivered = []
    monkeypatch.setattr(cli, "deliver_notifications", lambda args: delivered.append(args.command))
    for code in (0, 1, 2):
        monkeypatch.setattr(cli, "run_handler", lambda handler, args, code=code: code)
        assert cli.main(["requests"]) == code
    assert delivered == ["requests"] * 3
    monkeypatch.setattr(cli, "run_handler", lambda handler, args: INTERRUPTED)
    assert cli.main(["requests"]) == INTERRUPTED
    monkeypatch.setattr(cli, "run_handler", lambda handler, args: 0)
    assert cli.main(["sandbox"]) == 0  # serves no org: nothing of an org's to deliver
    assert delivered == ["requests"] * 3


def test_org_before_the_command_never_echoes_a_key_in_the_command_line_it_suggests():
    key = "lsv2_sk_" + "0123456789abcdef" * 2 + "_0123456789"
    done = cli_in_this_process("--org", "eu", "request", "grant", "--user", key, "--workspace", "W", "--role", "Editor")
    assert done.returncode == 2
    assert "--org goes after the command's name" in done.stderr and "--user lsv2_***" in done.stderr, done.stderr
    assert key not in done.stdout + done.stderr
    # Written as one word, --org=SLUG, it is the same mistake, with the same command line meant.
    joined = cli_in_this_process("--org=eu", "requests", "--status", "pending")
    assert joined.returncode == 2 and joined.stdout == "", joined
    assert joined.stderr == ("error: --org goes after the command's name (DESIGN.md section 11): "
                             "langsmith-access requests --status pending --org eu\n"), joined.stderr


def test_a_duckdb_error_is_exit_1_with_its_message(capsys):
    def fails(args):
        raise duckdb.IOException("IO Error: Could not read from file \"x.duckdb\": Input/output error")

    assert run_handler(fails, argparse.Namespace()) == 1
    assert capsys.readouterr().err == 'error: IO Error: Could not read from file "x.duckdb": Input/output error\n'


def test_an_os_error_about_two_paths_names_both(capsys):
    # A rename (publishing a copy, replacing an export) fails naming where from and where to.
    def fails(args):
        raise OSError(errno.EXDEV, "Invalid cross-device link", "/tmp/a.duckdb", None, "/mnt/b.duckdb")

    assert run_handler(fails, argparse.Namespace()) == 1
    assert capsys.readouterr().err == "error: /tmp/a.duckdb -> /mnt/b.duckdb: Invalid cross-device link\n"


def test_an_os_error_about_no_path_is_said_without_python_s_errno(capsys):
    # A full disk while writing names no path: what happened, not "[Errno 28] No space left on device".
    def fails(args):
        raise OSError(errno.ENOSPC, "No space left on device")

    assert run_handler(fails, argparse.Namespace()) == 1
    said, fix = capsys.readouterr().err.split("\n", 1)
    assert said == "error: No space left on device" and fix.startswith("  fix: the file system holding "), fix


def test_notifications_that_cannot_go_now_are_said_on_stderr(tmp_path, monkeypatch, capsys):
    # DESIGN.md section 10: a receiver or a database that holds them back delays notifications and
    # never fails the command; the operator reads why, and that they go later.
    monkeypatch.delenv("LANGSMITH_ACCESS_ORGS_FILE", raising=False)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", "00000000-0000-4000-8000-000000000001")
    held_back = SimpleNamespace(problem="the database is busy", failed={}, delivered=[])
    monkeypatch.setattr(common, "deliver_due_for_orgs", lambda orgs, lease_timeout_seconds: {"default": held_back})
    deliver_notifications(argparse.Namespace(org=None))
    assert capsys.readouterr().err == (
        "notifications: the database is busy (retried by the next command or the sensor)\n")
    # A receiver that refused some: how many wait, why (each reason once), and how many went.
    refused = SimpleNamespace(problem=None, failed={"n1": "HTTP 500", "n2": "timed out", "n3": "HTTP 500"},
                              delivered=["n4"])
    monkeypatch.setattr(common, "deliver_due_for_orgs", lambda orgs, lease_timeout_seconds: {"default": refused})
    deliver_notifications(argparse.Namespace(org=None))
    assert capsys.readouterr().err == (
        "notifications: 3 not delivered yet (HTTP 500; timed out); 1 delivered. Retried later, with backoff.\n")

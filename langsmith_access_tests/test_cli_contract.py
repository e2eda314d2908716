"""The command line as scripts use it: exit codes, stdout, --help, against a synced sandbox."""

import argparse
import contextlib
import io
import json
import os
from pathlib import Path

import duckdb
import pytest

from langsmith_access import cli
from langsmith_access.cli.common import run_handler
from langsmith_access.store.database import DatabaseBusyError
from langsmith_access_tests.helpers import cli_in_this_process, query


@contextlib.contextmanager
def stdout_to_a_closed_pipe():
    """stdout as ``... | head -1`` leaves it once head has gone: every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w", buffering=1) as closed, contextlib.redirect_stdout(closed):
        yield


def test_sync_all_sections_into_a_closed_pipe_still_runs_the_inventory(env):
    _sandbox, _org, database = env
    inventories = "SELECT count(*) FROM main.sync_runs WHERE job = 'langsmith_access_inventory' AND status = 'succeeded'"
    before = query(database.path, inventories)[0][0]
    err = io.StringIO()
    with stdout_to_a_closed_pipe(), contextlib.redirect_stderr(err):
        code = cli.main(["sync", "--all-sections", "--quiet"])
    assert code == 0, err.getvalue()
    assert query(database.path, inventories)[0][0] == before + 1  # not stopped by the summary's EPIPE


def test_sync_all_sections_fails_when_the_inventory_fails_after_the_sync_succeeded(env, monkeypatch):
    # `sync --all-sections` is one command for the whole picture (DESIGN.md section 9): a core
    # sync that succeeded must not hide an inventory that failed, or a cron running it reports
    # the credentials and audit log fresh while they are not.
    sandbox, _org, database = env
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_RETRIES", "1")  # a route that fails for good fails fast
    runs = "SELECT job, count(*) FROM main.sync_runs WHERE status = 'succeeded' GROUP BY job"
    before = dict(query(database.path, runs))
    sandbox.faults.failing_routes = ("/api/v1/orgs/current/service-keys",)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main(["sync", "--all-sections", "--quiet"])
    assert code == 1, err.getvalue()
    assert "service-keys" in err.getvalue()
    after = dict(query(database.path, runs))
    assert after["langsmith_access_sync"] == before.get("langsmith_access_sync", 0) + 1
    assert after.get("langsmith_access_inventory", 0) == before.get("langsmith_access_inventory", 0)


def _options_without_help(parser: argparse.ArgumentParser, command: str = "langsmith-access"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options_without_help(sub, f"{command} {name}")
        elif action.help is None:
            yield f"{command} {'/'.join(action.option_strings) or action.metavar or action.dest}"


def test_every_option_and_argument_says_what_it_is_in_help():
    assert list(_options_without_help(cli.build_parser())) == []


def test_an_unknown_status_is_a_usage_error_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["requests", "--status", "bogus"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --status: invalid choice: 'bogus'" in err and "awaiting_approval" in err
    assert cli.build_parser().parse_args(["requests", "--status", "Pending"]).status == "pending"


def test_a_closed_stdout_keeps_the_exit_code_and_the_stderr_of_the_command(env, tmp_path):
    """``review queue-revokes sheet.csv | head -1`` with a rejected row: still exit 2, still said."""
    sheet = tmp_path / "review.csv"
    sheet.write_text("user,workspace,role,decision\nnobody@example.com,Anywhere,Viewer,revoke\n"
                     "nobody.else@example.com,Anywhere,Viewer,revoke\n")
    err = io.StringIO()
    with stdout_to_a_closed_pipe(), contextlib.redirect_stderr(err):
        code = cli.main(["review", "queue-revokes", "--file", str(sheet)])
    assert code == 2
    assert "Rejected rows are recorded" in err.getvalue()


def test_a_busy_database_gets_the_fix_like_an_unusable_one(capsys):
    def busy(args):
        raise DatabaseBusyError("could not open access.duckdb read-only: Conflicting lock is held (PID 4242)")

    assert run_handler(busy, argparse.Namespace()) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: could not open access.duckdb") and f"\n  fix: {DatabaseBusyError.fix}" in err


def test_a_key_pasted_as_an_option_value_or_a_path_is_never_echoed(env, tmp_path):
    """argparse's usage errors and an OS error quote what was typed: a key there shows as its prefix."""
    sandbox, _org, _database = env
    key = sandbox.api_key
    for args in (("requests", "--status", key), ("export", "--format", key, "--out", str(tmp_path)),
                 ("sync", "--max-shrink-share", key), (key,)):
        done = cli_in_this_process(*args)
        assert done.returncode == 2 and "lsv2_***" in done.stderr, (args, done.stderr)
        assert key not in done.stdout + done.stderr, args
    # A name longer than the file system takes: the OS error quotes the path, the refusal does not.
    done = cli_in_this_process("export", "--format", "csv", "--out", str(tmp_path / (key + "x" * 300)))
    assert done.returncode == 2 and "(File name too long)" in done.stderr, done.stderr
    assert done.stderr.startswith("error: --out a value holding what looks like an API key (not shown): "), done.stderr
    assert key not in done.stdout + done.stderr and "lsv2_" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("name", "escaped", "unprinted"), [
    # An ESC sequence in a name recoloured the terminal.
    ("Gr\x1b[31mowth\x07\x9b2J\x7f", "Gr\\u001b[31mowth\\u0007\\u009b2J\\u007f", "\x1b\x07\x9b\x7f\r"),
    # U+202E (RIGHT-TO-LEFT OVERRIDE) made a terminal that lays out right-to-left text show the rest
    # of the line reversed: the email after the name read backwards, another person's.
    ("Gro\u2028wth\u202e\u2066", "Gro\\u2028wth\\u202e\\u2066", "\u202e\u2066\u2028"),
], ids=["control-characters", "bidirectional-overrides"])
def test_text_a_command_prints_carries_no_terminal_control_character(env, tmp_path, name, escaped, unprinted):
    # A name quoted back (here a sheet's; a workspace's or member's from LangSmith alike): each such
    # character shows as its escape, and JSON output still holds the very name.
    email = query(env[2].path, "SELECT email FROM main.users WHERE NOT is_disabled LIMIT 1")[0][0]
    sheet = tmp_path / "review.csv"
    sheet.write_text(f"grant_id,user,workspace,role,decision\n,{email},{name},Viewer,revoke\n", encoding="utf-8")
    done = cli_in_this_process("review", "queue-revokes", "--file", str(sheet), "--dry-run")
    assert done.returncode == 2, done
    assert f"Viewer in {escaped} for {email}" in done.stdout, done.stdout
    as_json = cli_in_this_process("review", "queue-revokes", "--file", str(sheet), "--dry-run", "--json")
    assert json.loads(as_json.stdout)["outcomes"][0]["workspace"] == name, as_json.stdout
    for output in (done, as_json):
        assert not any(c in output.stdout + output.stderr for c in unprinted), output


def test_a_name_holding_a_line_break_stays_on_its_records_line(env, tmp_path):
    # `requests` and `review queue-revokes` print one record a line, and scripts read them so
    # (`requests | grep pending`). A name holding a line feed (a workspace LangSmith sent, a
    # sheet's cell) went out as it was: the rest of the name printed a line that read as a
    # request of its own. The line feed shows as its escape; --json keeps the very name.
    email = query(env[2].path, "SELECT email FROM main.users WHERE NOT is_disabled LIMIT 1")[0][0]
    forged = "00000000-0000-0000-0000-000000000000  applied           grant  Admin in Prod for boss@example.com"
    name = f"Growth\n{forged}"
    sheet = tmp_path / "review.csv"
    sheet.write_text(f'grant_id,user,workspace,role,decision\n,{email},"{name}",Viewer,revoke\n', encoding="utf-8")
    reviewed = cli_in_this_process("review", "queue-revokes", "--file", str(sheet))
    assert reviewed.returncode == 2, reviewed
    assert f"Viewer in Growth\\u000a{forged} for {email}" in reviewed.stdout, reviewed.stdout
    listed = cli_in_this_process("requests")
    assert listed.returncode == 0, listed
    [line] = listed.stdout.splitlines()  # the rejected row, recorded: one request, one line
    assert line.endswith(f"Viewer in Growth\\u000a{forged} for {email}  "
                         "(workspace contains control or invisible characters: type it again plainly.)"), line
    for done in (reviewed, listed):
        assert not any(line.startswith("00000000-") for line in done.stdout.splitlines()), done.stdout
    as_json = cli_in_this_process("requests", "--json")
    assert json.loads(as_json.stdout)[0]["requested_workspace"] == name, as_json.stdout


def test_a_role_name_holding_a_line_break_stays_on_its_requests_line_in_provision(env):
    # `provision` prints one line a request. A custom role's name (LangSmith's, as synced)
    # holding a line feed, quoted in a request's detail, printed a line of its own that read as
    # another request applied.
    sandbox, org, database = env
    role = next(role for role in org.custom_roles() if role.access_scope == "workspace")
    forged = "00000000-0000-0000-0000-000000000000  applied"
    database.ensure_working()  # where requests are queued
    with duckdb.connect(str(database.working_path)) as conn:
        conn.execute("UPDATE main.roles SET display_name = ? WHERE role_id = ?", [f"Reviewer\n{forged}", role.id])
        email, workspace = conn.execute(
            "SELECT u.email, w.workspace_id FROM main.users u, main.workspaces w "
            "WHERE NOT u.is_disabled ORDER BY u.email LIMIT 1").fetchone()
    queued = cli_in_this_process("request", "grant", "--user", email, "--workspace", workspace, "--role", role.id)
    assert queued.returncode == 0, queued
    with org.lock:
        del org.roles[role.id]  # gone from LangSmith since the sync: the run rejects the grant
    done = cli_in_this_process("provision")
    assert done.returncode == 0, done
    [line] = done.stdout.splitlines()
    assert line.endswith(f"role Reviewer\\u000a{forged} no longer exists in LangSmith"), line


def test_a_usage_error_quotes_a_typed_argument_without_its_terminal_control_characters():
    """argparse's refusals (an unknown option, a value not among the choices) and the misplaced
    --org one quote what was typed, and were printed before the command's output was made
    printable: an ESC sequence pasted into an argument (from a sheet, a chat) reached the
    terminal as it was and could clear or retitle it. Each shows as its escape, as elsewhere."""
    pasted = "x\x1b]0;owned\x07\x1b[2J\x9b"
    unknown = cli_in_this_process("requests", "--by", pasted)
    assert "unrecognized arguments: --by x\\u001b]0;owned\\u0007\\u001b[2J\\u009b" in unknown.stderr, unknown
    grant = ("request", "grant", "--user", "a@example.com", "--workspace", "w", "--role", "Viewer")
    for args in ((*grant, "--by", pasted), ("requests", "--status", pasted), ("--org", pasted, "requests")):
        done = cli_in_this_process(*args)
        assert done.returncode == 2, (args, done)
        assert "owned" in done.stderr, (args, done.stderr)
        assert not any(c in done.stdout + done.stderr for c in "\x1b\x07\x9b"), (args, done.stderr)


def test_an_output_path_under_a_file_is_refused_naming_that_file(env, tmp_path):
    """mkdir said only "[Errno 17] File exists: '<the file>'": which path, and what to do."""
    in_the_way = tmp_path / "notes.txt"
    in_the_way.write_text("mine")
    for args in (("export", "--format", "csv", "--out", str(in_the_way / "exports")),
                 ("review", "export", "--out", str(in_the_way / "q4" / "review.csv")),
                 ("review", "export", "--out", str(in_the_way / "review.duckdb"))):
        done = cli_in_this_process(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert f"{in_the_way} is a file, not a folder" in done.stderr, (args, done.stderr)
        assert "Errno" not in done.stderr and "Traceback" not in done.stderr
    assert in_the_way.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_an_export_folder_the_file_system_will_not_make_is_refused_with_the_fix(env, tmp_path):
    """A folder under /proc gave only "error: /proc/...: No such file or directory" (of a path the
    user asked to create), a name too long only "File name too long": neither said what to do."""
    for out, reason in ((Path("/proc") / f"langsmith-access-{tmp_path.name}", "No such file or directory"),
                        (tmp_path / ("x" * 300), "File name too long")):
        done = cli_in_this_process("export", "--format", "csv", "--out", str(out))
        assert done.returncode == 2, (out, done.stderr)
        assert (f"error: --out {out}: the folder cannot be made there ({reason}): choose a folder this user may "
                "create and write, with no name longer than 255 bytes (e.g. --out exports).") in done.stderr
        assert "Errno" not in done.stderr and out.name not in os.listdir(out.parent)
        sheet = cli_in_this_process("review", "export", "--out", str(out / "q4.csv"))
        assert sheet.returncode == 2, (out, sheet.stderr)
        assert (f"error: --out {out / 'q4.csv'}: the folder cannot be made there ({reason}): choose a folder this "
                "user may create and write, with no name longer than 255 bytes (e.g. --out reviews/q4.csv).") \
            in sheet.stderr, sheet.stderr


def test_requests_from_a_database_that_is_not_there_says_so(env, tmp_path, monkeypatch):
    # A mistyped LANGSMITH_ACCESS_DUCKDB is no empty queue: still exit 0 and no rows (DESIGN), but
    # stderr names the missing file; an existing database with no requests just says none.
    missing = tmp_path / "typo" / "langsmith_access.duckdb"
    with monkeypatch.context() as typo:
        typo.setenv("LANGSMITH_ACCESS_DUCKDB", str(missing))
        done = cli_in_this_process("requests")
    assert done.returncode == 0 and done.stdout == "", done
    assert f"no requests: there is no database at {missing} yet" in done.stderr, done.stderr
    assert "check LANGSMITH_ACCESS_DUCKDB" in done.stderr and not missing.parent.exists()
    done = cli_in_this_process("requests", "--status", "denied")
    assert done.returncode == 0 and done.stderr == "no requests\n", done.stderr


def test_a_failed_sync_over_a_published_database_says_it_was_left_as_it_was(env, monkeypatch):
    """DESIGN.md section 2: a failed sync exits 1, says why, and the previous good data is
    untouched: the operator reads that the analysts' database was left (not that nothing exists)."""
    _sandbox, _org, database = env
    users = query(database.path, "SELECT * FROM main.users ORDER BY ALL")
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_sk_" + "0" * 32)  # a key the sandbox refuses
    done = cli_in_this_process("sync", "--quiet")
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("Sync failed: "), done.stderr
    assert "\nThe analysts' database and its history were left as they were.\n" in done.stderr, done.stderr
    assert "Nothing was published" not in done.stderr
    assert query(database.path, "SELECT * FROM main.users ORDER BY ALL") == users

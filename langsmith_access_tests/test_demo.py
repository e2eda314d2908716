"""`langsmith-access demo`'s parts (langsmith_access/demo.py) against the synced env: who its
stories are about, what it shows of a sync, the file it refuses to write over, and its
provisioning story. The whole demo runs once, in test_installed_package.py; its approval and
expiry story in governance/test_demo_approval.py."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from langsmith_access import demo
from langsmith_access.demo import QUESTIONS, _cast, _provisioning_story, _show_sync, _synced_organization
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.sandbox.server import generate_api_key
from langsmith_access.settings import DEFAULT_ORG_SLUG, Org, Secret, Settings
from langsmith_access.store.database import DatabaseUnusableError
from langsmith_access_tests.helpers import query


@pytest.mark.parametrize(("seed", "members", "workspaces"), [(42, 50, 8), (21, 30, 4), (7, 40, 6)])
def test_the_cast_is_who_the_stories_need(seed, members, workspaces):
    org = generate_org(seed=seed, members=members, workspaces=workspaces)
    cast = _cast(org)
    assert cast is not None
    workspace = cast.workspace
    assert workspace in org.shared_workspaces() and org.workspaces_named(workspace.display_name) == [workspace]
    enabled = {m.ls_user_id for m in org.active_members() if not m.is_disabled}
    # Given Viewer: an enabled member outside the workspace.
    assert cast.newcomer.ls_user_id in enabled and cast.newcomer.ls_user_id not in workspace.memberships
    # Made Editor (so not one already), then asks for Admin: an enabled member of it.
    changer = workspace.memberships[cast.changer.ls_user_id]
    assert cast.changer.ls_user_id in enabled and changer.role_id != org.role_by_name("Editor").id
    # Loses their role: another enabled member of it.
    assert cast.leaver.ls_user_id in enabled and cast.leaver.ls_user_id != cast.changer.ls_user_id
    assert workspace.memberships[cast.leaver.ls_user_id] is cast.leaver
    # Approves: an enabled Organization Admin who is not the requester.
    assert cast.approver.ls_user_id in enabled and cast.approver.ls_user_id != cast.changer.ls_user_id
    assert org.role(cast.approver.org_role_id).name == "ORGANIZATION_ADMIN"


def test_an_org_too_small_for_the_stories_has_no_cast():
    assert _cast(generate_org(seed=42, members=12, workspaces=2)) is None


def test_the_sync_summary_answers_the_three_questions_from_the_synced_tables(env, capsys):
    sandbox, org, database = env
    [(run_id, users)] = query(database.path, "SELECT sync_id, users FROM main.sync_runs WHERE status = 'succeeded'")
    _show_sync(database.path, run_id)
    out = capsys.readouterr().out
    assert f": {users} users, " in out and users == len(org.active_members())
    for number, (question, sql) in enumerate(QUESTIONS, start=1):
        assert f"\n{number}. {question}\n" in out
        assert "   " + sql.replace("\n", "\n   ") in out
    admins = query(database.path, "SELECT u.email FROM main.users u JOIN main.roles r ON r.role_id = u.org_role_id "
                                  "WHERE r.name = 'ORGANIZATION_ADMIN'")
    assert admins and all(email in out for (email,) in admins)
    # A run that wrote no row is no summary to show.
    with pytest.raises(RuntimeError, match="has no row"):
        _show_sync(database.path, "no-such-run")


def test_the_three_questions_answer_what_the_synced_org_holds(env):
    # The summary's answers, checked against the org the sandbox served: its Organization
    # Admins, its busiest shared workspaces with their Admins, and its disabled members who
    # still belong to shared workspaces, with how many (grants leave out personal and deleted ones).
    sandbox, org, database = env
    admins, busiest, disabled = (query(database.path, sql) for _, sql in QUESTIONS)
    org_admin = org.role_by_name("ORGANIZATION_ADMIN").id
    assert sorted(admins) == sorted((m.email, m.full_name, m.is_disabled) for m in org.active_members()
                                    if m.org_role_id == org_admin)
    admin = org.role_by_name("WORKSPACE_ADMIN").id
    served = org.shared_workspaces()
    by_size = sorted(((ws.display_name, len(ws.memberships), sum(m.role_id == admin for m in ws.memberships.values()))
                      for ws in served), key=lambda row: (-row[1], row[0]))
    assert busiest == by_size[:5]
    held = Counter(m.ls_user_id for ws in served for m in ws.memberships.values())
    expected = [(m.email, held[m.ls_user_id]) for m in org.active_members() if m.is_disabled and held[m.ls_user_id]]
    assert disabled and sorted(disabled) == sorted(expected)


def test_the_org_a_database_holds_is_read_and_a_new_file_holds_none(env, tmp_path):
    sandbox, org, database = env
    assert _synced_organization(database.path) == org.organization_id
    assert _synced_organization(tmp_path / "new.duckdb") is None
    # A file that is no DuckDB database is not taken for a new one (the demo would write over it):
    # the CLI says it cannot open it, with the fix.
    not_duckdb = tmp_path / "notes.duckdb"
    not_duckdb.write_text("not a database")
    with pytest.raises(DatabaseUnusableError, match="not a valid DuckDB database file"):
        _synced_organization(not_duckdb)
    assert not_duckdb.read_text() == "not a database"


def test_the_provisioning_story_applies_its_three_requests_and_shows_the_audit(env, capsys):
    sandbox, org, database = env
    cast = _cast(org)
    assert cast is not None
    told = _provisioning_story(org, Org(DEFAULT_ORG_SLUG, Settings.from_env()), cast)
    out, err = capsys.readouterr()
    assert told, err
    applied = query(database.path, "SELECT request_id FROM main.provisioning_requests WHERE status = 'applied'")
    assert len(applied) == 3
    for (request_id,) in applied:
        assert f"   {request_id}  applied " in out
    assert "Dry run (no writes):" in out and out.count("  would ") == 3
    assert "Audit trail (provisioning_events):" in out
    role = {m.ls_user_id: org.role(m.role_id).display_name for m in org.workspace(cast.workspace.id).memberships.values()}
    assert role[cast.newcomer.ls_user_id] == "Viewer" and role[cast.changer.ls_user_id] == "Editor"
    assert cast.leaver.ls_user_id not in role


def test_the_provisioning_story_revokes_the_role_the_leaver_holds(env, capsys):
    # The revoke names the leaver's own role: here a leaver who is no Viewer (the env's first
    # cast is one), so a revoke naming any other role would not remove them.
    sandbox, org, database = env
    cast = _cast(org)
    assert cast is not None
    viewer = org.role_by_name("Viewer").id
    leaver = next(m for m in cast.workspace.memberships.values() if m.role_id != viewer
                  and m.ls_user_id not in (cast.changer.ls_user_id, cast.newcomer.ls_user_id)
                  and not org.member(m.ls_user_id).is_disabled)
    told = _provisioning_story(org, Org(DEFAULT_ORG_SLUG, Settings.from_env()), replace(cast, leaver=leaver))
    out, err = capsys.readouterr()
    assert told, err
    assert leaver.ls_user_id not in org.workspace(cast.workspace.id).memberships


def test_a_provisioning_story_whose_run_fails_stops_the_demo_and_says_why(env, capsys):
    # A key LangSmith refuses: the requests are queued (that needs no key), the runs fail.
    sandbox, org, database = env
    cast = _cast(org)
    assert cast is not None
    refused = Org(DEFAULT_ORG_SLUG, replace(Settings.from_env(), api_key=Secret("lsv2_sk_" + "0" * 32)))
    told = _provisioning_story(org, refused, cast)
    out, err = capsys.readouterr()
    assert not told
    # The dry run fails first: the demo stops there, and no run is sent to write anything.
    assert "Provisioning dry run failed: " in err and "Provisioning failed: " not in err, err
    assert "Dry run (no writes):" not in out and "Provisioned:" not in out and "Audit trail" not in out
    assert {status for (status,) in query(database.path, "SELECT status FROM main.provisioning_requests")} == {
        "pending"}


@pytest.mark.parametrize(("provisioning", "governance", "code"), [
    (True, True, 0), (False, True, 1), (True, False, 1),
], ids=["both-told", "provisioning-stopped", "governance-stopped"])
def test_the_demo_exits_1_when_a_story_stops_and_0_only_when_both_are_told(
        provisioning, governance, code, tmp_path, monkeypatch, capsys):
    # A real sandbox and sync (a small org that still has a cast); the stories stand in.
    monkeypatch.delenv("LANGSMITH_ACCESS_ORGS_FILE", raising=False)
    database = tmp_path / "demo" / "langsmith_access.duckdb"
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(database))
    told: list[str] = []

    def story(name: str, ends: bool):
        def tell(state, org, cast) -> bool:
            assert org.duckdb_path == database and cast is not None
            told.append(name)
            return ends
        return tell

    monkeypatch.setattr(demo, "_provisioning_story", story("provisioning", provisioning))
    monkeypatch.setattr(demo, "_governance_story", story("governance", governance))
    assert demo.run_demo(seed=42, members=15, workspaces=3) == code
    out = capsys.readouterr().out
    assert told == (["provisioning"] if not provisioning else ["provisioning", "governance"])
    assert ("Open it yourself: duckdb -readonly " in out) == (code == 0)
    assert "\n1. Who holds an organization admin role?\n" in out  # the sync was shown first


def test_the_demo_writes_its_own_file_and_runs_again_over_the_org_it_holds(tmp_path, monkeypatch, capsys):
    # Without LANGSMITH_ACCESS_DUCKDB the demo syncs into demo-data/ (outside data/, whose folders
    # are orgs'); pointed at that file, it runs again: the same seed's org is the demo's own, not
    # another org's data to refuse. The stories stand in.
    monkeypatch.delenv("LANGSMITH_ACCESS_ORGS_FILE", raising=False)
    monkeypatch.delenv("LANGSMITH_ACCESS_DUCKDB", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "_provisioning_story", lambda *args: True)
    monkeypatch.setattr(demo, "_governance_story", lambda *args: True)
    assert demo.run_demo(seed=42, members=15, workspaces=3) == 0, capsys.readouterr().err
    database = tmp_path / "demo-data" / "langsmith_access.duckdb"
    assert database.exists() and not (tmp_path / "data").exists()
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(database))
    assert demo.run_demo(seed=42, members=15, workspaces=3) == 0, capsys.readouterr().err
    assert "holds organization" not in capsys.readouterr().err


def test_a_provisioning_story_whose_requests_are_not_applied_stops_the_demo_and_says_why(env, capsys, monkeypatch):
    # The newcomer removed from the org in LangSmith between the dry run and the run: the run
    # succeeds, their grant is not applied, and the demo must not go on as if it were.
    sandbox, org, database = env
    cast = _cast(org)
    assert cast is not None
    real_provision = demo.provision

    def deleted_before_the_run(**options):
        if not options.get("dry_run"):
            org.remove_member(cast.newcomer.ls_user_id)
        return real_provision(**options)

    monkeypatch.setattr(demo, "provision", deleted_before_the_run)
    told = _provisioning_story(org, Org(DEFAULT_ORG_SLUG, Settings.from_env()), cast)
    out, err = capsys.readouterr()
    assert not told
    assert "Provisioned:" in out  # what happened to each is shown, then why the demo stops
    assert "error: the demo's requests were not all applied: " in err, err
    [(request_id, status)] = query(database.path, "SELECT request_id, status FROM main.provisioning_requests "
                                                  "WHERE user_id = ?", [cast.newcomer.ls_user_id])
    assert status != "applied" and f"{request_id} {status}, " in err, err
    assert "Syncing again" not in out


def test_a_disabled_member_is_never_cast():
    # Each person the first cast chose, disabled in turn: the next cast passes over them (a
    # disabled member cannot sign in, approve, or show the story's effect).
    org = generate_org(seed=42, members=50, workspaces=8)
    first = _cast(org)
    assert first is not None
    for person in (first.newcomer.ls_user_id, first.changer.ls_user_id, first.leaver.ls_user_id,
                   first.approver.ls_user_id):
        org.set_disabled(person, True)
        cast = _cast(org)
        assert cast is not None
        chosen = (cast.newcomer.ls_user_id, cast.changer.ls_user_id, cast.leaver.ls_user_id, cast.approver.ls_user_id)
        assert not any(org.member(who).is_disabled for who in chosen), (person, chosen)


def test_the_approver_is_never_the_requester():
    # The first cast's changer made the org's only enabled Organization Admin: the demo's request
    # for Admin would need them to approve their own request, so another cast is chosen (or none).
    org = generate_org(seed=42, members=50, workspaces=8)
    first = _cast(org)
    assert first is not None
    admin_role = org.role_by_name("ORGANIZATION_ADMIN").id
    org.set_org_role(first.changer.ls_user_id, admin_role)
    for member in org.active_members():
        if member.org_role_id == admin_role and member.ls_user_id != first.changer.ls_user_id:
            org.set_disabled(member.ls_user_id, True)
    cast = _cast(org)
    if cast is not None:
        assert cast.approver is not None and cast.approver.ls_user_id != cast.changer.ls_user_id
        assert org.role(cast.approver.org_role_id).name == "ORGANIZATION_ADMIN"


def test_a_first_sync_that_fails_ends_the_demo_with_exit_1_and_says_why(tmp_path, monkeypatch, capsys):
    # The demo handed a key its sandbox refuses: the sync fails, and nothing after it runs.
    monkeypatch.delenv("LANGSMITH_ACCESS_ORGS_FILE", raising=False)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "demo" / "langsmith_access.duckdb"))

    class RefusingTheKeyItGives(SandboxServer):
        def __enter__(self):
            started = super().__enter__()
            self.api_key = generate_api_key()  # what the demo reads: not the key the server accepts
            return started

    monkeypatch.setattr(demo, "SandboxServer", RefusingTheKeyItGives)
    monkeypatch.setattr(demo, "_provisioning_story", lambda *args: pytest.fail("told after a failed sync"))
    assert demo.run_demo(seed=42, members=15, workspaces=3) == 1
    out, err = capsys.readouterr()
    assert "Sync failed: " in err, err
    assert "Synced in" not in out and "Open it yourself" not in out


def test_a_provisioning_story_whose_resync_fails_stops_the_demo_and_says_why(env, capsys, monkeypatch):
    # The workspace deleted in LangSmith after provisioning: the re-sync's shrink guard stops it,
    # and the story must not show the audit trail as if LangSmith agreed.
    sandbox, org, database = env
    cast = _cast(org)
    assert cast is not None
    real_run_job = demo.runner.run_job

    def deleted_then_run(job_name, *args, **kwargs):
        if job_name == demo.runner.SYNC_JOB:
            org.workspace(cast.workspace.id).is_deleted = True
        return real_run_job(job_name, *args, **kwargs)

    monkeypatch.setattr(demo.runner, "run_job", deleted_then_run)
    told = _provisioning_story(org, Org(DEFAULT_ORG_SLUG, Settings.from_env()), cast)
    out, err = capsys.readouterr()
    assert not told
    assert "Syncing again to confirm LangSmith agrees" in out and "Sync failed: " in err, err
    assert "Audit trail" not in out

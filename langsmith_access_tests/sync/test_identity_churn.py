"""People change while the history is kept: real syncs against the sandbox over HTTP, dbt on a
DuckDB file. A member whose email changed and who then left is still known by every email they
had: a service key they made under their later email names them, and is flagged as made by
someone who left."""

from __future__ import annotations

import time

from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access.sandbox.access_records import SERVICE_KEY
from langsmith_access_tests.helpers import point_at, query, run_sync
from langsmith_access_tests.sync.test_access_picture import sync_all_sections


def test_a_former_member_is_named_by_the_email_they_changed_to_before_leaving(tmp_path, monkeypatch):
    org = generate_org(seed=7, members=8, workspaces=2, now=int(time.time()))
    database = tmp_path / "data" / "access.duckdb"
    leaver = next(m for m in org.active_members() if not m.is_disabled)
    first_email = leaver.email
    with SandboxServer(org) as sandbox:
        point_at(monkeypatch, sandbox, database)
        assert run_sync().success
        # The email changes while they are a member (no other change), and a later sync sees it.
        later_email = "renamed." + first_email.lower()
        org.members[leaver.ls_user_id].email = later_email
        assert run_sync().success
        # They make a service key under their later email, and leave the org.
        key = org.create_api_key(SERVICE_KEY, "made before leaving")
        key.created_by = later_email.upper()
        org.remove_member(leaver.ls_user_id)
        sync_all_sections(monkeypatch, sandbox, database)

    assert query(database, "SELECT created_by_user_id, created_by_email FROM main.credentials "
                           "WHERE credential_id = ?", [key.id]) == [(leaver.ls_user_id, later_email)]
    [(problems,)] = query(database, "SELECT problems FROM main.report_credential_hygiene WHERE credential_id = ?",
                          [key.id])
    assert "creator_inactive" in problems
    # user_history keeps one interval for the membership: an email change is no new interval.
    assert query(database, "SELECT email, valid_to IS NOT NULL FROM main.user_history WHERE user_id = ?",
                 [leaver.ls_user_id]) == [(first_email, True)]

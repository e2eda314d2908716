"""report_grant_changes: exactly the changes made between two syncs, and none otherwise; and
report_unexplained_changes, which lists them all here (nothing was provisioned) and keeps them."""

from __future__ import annotations

import shutil

from langsmith_access.transform.history import rebuild_history
from langsmith_access_tests.reports.support import History, rows


def _expected_changes(history: History) -> set[tuple]:
    """(change_type, entitlement_type, user, workspace, old role, new role) from the org diff."""
    before, after = history.grants_first, history.grants_second
    changes = set()
    for key in before.keys() | after.keys():
        entitlement_type, user, workspace = key
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        change_type = "added" if old is None else "removed" if new is None else "role_changed"
        changes.add((change_type, entitlement_type, user, workspace, old, new))
    return changes


def _actual_changes(database) -> list[dict]:
    return rows(database, "SELECT * FROM main.report_grant_changes")


def test_the_first_sync_reports_no_change(history):
    assert _actual_changes(history.after_first) == []


def test_the_second_sync_reports_exactly_the_changes_made(history):
    actual = _actual_changes(history.after_second)
    expected = _expected_changes(history)
    assert {
        (r["change_type"], r["entitlement_type"], r["user_id"], r["workspace_id"],
         r["old_role_id"], r["new_role_id"])
        for r in actual
    } == expected
    assert len(actual) == len(expected)

    by_kind = {(r["change_type"], r["user_id"], r["workspace_id"]): r for r in actual}
    c = history.changes
    org = history.org
    # The role change is one row, with both roles and their display names.
    changed_ws, changed_user, old_role, new_role = c.role_changed
    row = by_kind[("role_changed", changed_user, changed_ws)]
    assert (row["old_role_name"], row["new_role_name"]) == ("Editor", "Admin")
    assert row["old_grant_id"] == f"workspace_role:{changed_ws}:{old_role}:{changed_user}"
    assert row["new_grant_id"] == f"workspace_role:{changed_ws}:{new_role}:{changed_user}"
    assert row["workspace_display_name"] == org.workspace(changed_ws).display_name
    # The revoke, the newcomer's two grants, the org-role promotion.
    revoked_ws, revoked_user, revoked_role = c.revoked
    row = by_kind[("removed", revoked_user, revoked_ws)]
    assert (row["old_role_id"], row["new_role_id"], row["new_grant_id"]) == (revoked_role, None, None)
    assert by_kind[("added", c.newcomer, c.newcomer_workspace[0])]["new_role_id"] == c.newcomer_workspace[1]
    assert by_kind[("added", c.newcomer, None)]["email"] == "New.Comer@Example.com"
    assert by_kind[("added", c.loner, None)]["entitlement_type"] == "organization_role"
    promoted_user, old_org_role, new_org_role = c.promoted
    row = by_kind[("role_changed", promoted_user, None)]
    assert (row["old_role_id"], row["new_role_id"]) == (old_org_role, new_org_role)
    assert row["new_role_name"] == "Organization Admin"
    # The workspace that lost its Admins: each became a Viewer.
    assert any(k[0] == "role_changed" and k[2] == c.without_admin for k in by_kind)

    # All changes carry the second build's instant, measured from the first build's.
    history_rows = rows(history.after_second, "SELECT valid_from, valid_to FROM main.grant_history")
    first_build = min(r["valid_from"] for r in history_rows)
    second_build = max(r["valid_from"] for r in history_rows)
    assert first_build < history.between_first_and_second < second_build
    assert {r["changed_at"] for r in actual} == {second_build}
    assert {r["previous_sync_at"] for r in actual} == {first_build}
    assert len({r["change_id"] for r in actual}) == len(actual)


def test_a_sync_without_changes_reports_none(history):
    assert _actual_changes(history.database) == []
    # ... while the history still holds the second sync's changes.
    closed = rows(history.database, "SELECT count(*) AS n FROM main.grant_history WHERE valid_to IS NOT NULL")
    assert closed[0]["n"] > 0


def _unexplained(database) -> set[tuple]:
    return {
        (r["change"], r["user_id"], r["workspace_id"], r["role_id"], r["previous_role_id"], r["sync_id"])
        for r in rows(database, "SELECT * FROM main.report_unexplained_changes")
    }


def test_every_change_made_by_hand_is_unexplained_and_kept(history):
    """No request was provisioned: each change of the second sync is drift, org roles included,
    with the second sync's id; the third sync (no change) keeps them and adds none."""
    expected = {
        (change, user, workspace, new if new is not None else old,
         old if change == "role_changed" else None, history.run_ids[1])
        for change, _, user, workspace, old, new in _expected_changes(history)
    }
    assert _unexplained(history.after_first) == set()
    assert _unexplained(history.after_second) == expected
    promoted_user, old_org_role, new_org_role = history.changes.promoted
    assert ("role_changed", promoted_user, None, new_org_role, old_org_role, history.run_ids[1]) in expected
    assert _unexplained(history.database) == expected
    assert len(rows(history.database, "SELECT * FROM main.report_unexplained_changes")) == len(expected)
    seen = {r["seen_at"] for r in rows(history.database, "SELECT seen_at FROM main.report_unexplained_changes")}
    assert seen == {r["changed_at"] for r in _actual_changes(history.after_second)}


def test_rebuilding_after_the_sync_adds_no_change_twice(history, tmp_path):
    """The refresh after a provisioning run rebuilds report_unexplained_changes while
    report_grant_changes still lists the latest sync's changes: each is listed already, and is
    not appended again, the organization-role changes (no workspace to compare) included."""
    database = tmp_path / "access.duckdb"
    shutil.copyfile(history.after_second, database)
    listed = rows(database, "SELECT * FROM main.report_unexplained_changes")
    assert any(r["workspace_id"] is None for r in listed)  # an organization-role change

    rebuild_history(database, tmp_path / "access.dbt", unused_days=90)

    rebuilt = rows(database, "SELECT * FROM main.report_unexplained_changes")
    assert sorted(rebuilt, key=repr) == sorted(listed, key=repr)


def _readme_question(number: int) -> str:
    from langsmith_access_tests.test_readme_analyst_guide import analyst_guide, blocks

    return blocks(analyst_guide(), "sql")[number - 1]


def test_the_guides_last_30_days_question_lists_the_changes_not_the_first_syncs_grants(history):
    """Question 9 ("what was granted or taken away in the last 30 days") answers with the
    changes the syncs saw: the grants the first sync found were held when the history began,
    not granted then."""
    sql = _readme_question(9)
    assert "What was granted" not in sql and "grant_history" in sql
    assert rows(history.after_first, sql) == []
    answered = rows(history.after_second, sql)
    expected = _expected_changes(history)
    granted = [r for r in answered if r["event"] == "granted"]
    ended = [r for r in answered if r["event"] == "ended"]
    assert len(granted) == sum(1 for c in expected if c[0] in ("added", "role_changed"))
    assert len(ended) == sum(1 for c in expected if c[0] in ("removed", "role_changed"))
    second_build = {r["changed_at"] for r in _actual_changes(history.after_second)}
    assert {r["happened_at"] for r in answered} == second_build


def test_one_build_dates_every_history_table_at_one_instant(history):
    """A sync's build stamps what it saw change with one instant in every history table: a
    member disabled, a workspace deleted or renamed and the grants that changed with them all
    change at the same time, as do the intervals the first sync opened."""
    boundaries = rows(history.database, """
        SELECT boundary, list(DISTINCT history ORDER BY history) AS histories FROM (
            SELECT 'grant' AS history, unnest([valid_from, valid_to]) AS boundary FROM main.grant_history
            UNION ALL SELECT 'user', unnest([valid_from, valid_to]) FROM main.user_history
            UNION ALL SELECT 'workspace', unnest([valid_from, valid_to]) FROM main.workspace_history
            UNION ALL SELECT 'setting', unnest([valid_from, valid_to]) FROM main.org_settings_history
        ) WHERE boundary IS NOT NULL GROUP BY boundary ORDER BY boundary""")
    # The first sync opened every table's history; the second changed grants, users and
    # workspaces (the third changed nothing, and no setting ever changed).
    assert [b["histories"] for b in boundaries] == [
        ["grant", "setting", "user", "workspace"], ["grant", "user", "workspace"]], boundaries
    assert history.between_first_and_second < boundaries[1]["boundary"] < history.third_sync_window[0]

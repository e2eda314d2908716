"""The README's analyst guide answers right: its questions, run against a small org built by hand
whose answers are known (who holds what, through which path; disabled members; a pending invite;
a deleted and a personal workspace; Organization Admins' implicit Admin; two workspaces sharing a
name), synced twice with changes between, return exactly the rows they should, in the order they
say. test_readme_analyst_guide.py checks only that every question runs and returns something on a
generated org."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access_tests.helpers import point_at, run_sync
from langsmith_access_tests.synced import API_KEY
from langsmith_access_tests.test_readme_analyst_guide import analyst_guide, blocks


@dataclass
class SmallOrg:
    database: Path
    between_syncs: datetime  # a time after the first sync's build and before the second's
    ids: dict[str, str]  # person or workspace -> ls_user_id or workspace id


@pytest.fixture(scope="module")
def small_org(tmp_path_factory) -> SmallOrg:
    """A hand-built org, synced, changed, synced again.

    - alice: Organization Admin, also listed as Viewer in Platform A; ola: Organization Admin
      in no listed workspace; hank: Organization Admin, disabled.
    - bob: Editor in Platform A (Admin after the change), Admin in Platform B, Admin in the
      deleted workspace Old.
    - carol: disabled, Admin in Platform A. dan: in no workspace. eve: in her personal
      workspace only. frank: a pending invite. gus: joins after the first sync, Viewer in B.
    - Platform A and Platform B are two workspaces named "Platform".
    """
    org = generate_org(seed=7, members=0, workspaces=0, pending_invites=0, personal_workspaces=0,
                       deleted_workspaces=0, custom_roles=0)
    role = {r.name: r.id for r in org.roles.values()}
    org_admin, workspace_admin = role["ORGANIZATION_ADMIN"], role["WORKSPACE_ADMIN"]
    alice = org.add_member("alice@example.com", "Alice", org_admin)
    hank = org.add_member("hank@example.com", "Hank", org_admin, is_disabled=True)
    ola = org.add_member("ola@example.com", "Ola", org_admin)
    bob = org.add_member("bob@example.com", "Bob")
    carol = org.add_member("carol@example.com", "Carol", is_disabled=True)
    dan = org.add_member("dan@example.com", "Dan")
    eve = org.add_member("eve@example.com", "Eve")
    platform_a, platform_b = org.add_workspace("Platform"), org.add_workspace("Platform")
    old = org.add_workspace("Old")
    org.add_workspace("Eve's", is_personal=True, owner_ls_user_id=eve.ls_user_id)
    org.add_workspace_membership(platform_a.id, alice.ls_user_id, role["WORKSPACE_VIEWER"])
    org.add_workspace_membership(platform_a.id, bob.ls_user_id, role["WORKSPACE_USER"])
    org.add_workspace_membership(platform_b.id, bob.ls_user_id, workspace_admin)
    org.add_workspace_membership(platform_a.id, carol.ls_user_id, workspace_admin)
    org.add_workspace_membership(old.id, bob.ls_user_id, workspace_admin)
    org.delete_workspace(old.id)
    org.add_pending_invite("frank@example.com", workspace_ids=[platform_b.id])
    database = tmp_path_factory.mktemp("small-org") / "access.duckdb"
    with pytest.MonkeyPatch.context() as monkeypatch, SandboxServer(org, api_key=API_KEY) as sandbox:
        point_at(monkeypatch, sandbox, database)
        outcome = run_sync()
        assert outcome.success, outcome.failure
        between_syncs = datetime.now().astimezone()
        org.set_workspace_role(platform_a.id, bob.ls_user_id, workspace_admin)
        gus = org.add_member("gus@example.com", "Gus")
        org.add_workspace_membership(platform_b.id, gus.ls_user_id, role["WORKSPACE_VIEWER"])
        outcome = run_sync()
        assert outcome.success, outcome.failure
    people = {"alice": alice, "hank": hank, "ola": ola, "bob": bob, "carol": carol, "dan": dan, "eve": eve, "gus": gus}
    ids = {name: member.ls_user_id for name, member in people.items()}
    ids.update(A=platform_a.id, B=platform_b.id)
    return SmallOrg(database, between_syncs, ids)


def answer(database: Path, number: int, **replace: str) -> list[tuple]:
    """Question ``number``'s rows, with its literals replaced as ``replace`` says (old=new)."""
    sql = blocks(analyst_guide(), "sql")[number - 1]
    for old, new in replace.items():
        assert old in sql, f"question {number} has no {old!r}"
        sql = sql.replace(old, new)
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def columns(database: Path, number: int) -> list[str]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return [c[0] for c in conn.execute(blocks(analyst_guide(), "sql")[number - 1]).description]


def by_workspace(rows: list[tuple], ids: dict[str, str]) -> list[tuple]:
    """``rows`` with each workspace id written as the test's name for it (A, B)."""
    names = {ids["A"]: "A", ids["B"]: "B"}
    return [tuple(names.get(value, value) if isinstance(value, str) else value for value in row) for row in rows]


def a_then_b(small_org: SmallOrg) -> tuple[str, str]:
    """The two 'Platform's in the order the guide lists them: by name, then by id."""
    return ("A", "B") if small_org.ids["A"] < small_org.ids["B"] else ("B", "A")


def test_every_question_that_names_a_workspace_gives_its_id_too(small_org):
    """Two workspaces may share a name (here two 'Platform's): a question that lists workspaces by
    name also returns their ids, right after the name, so the analyst can tell the two apart
    (question 2 did; 5, 8, 11, 12 and the others listed both Platforms' members as one)."""
    for number in range(1, 19):
        names = columns(small_org.database, number)
        for named in ("workspace", "scope"):
            if named in names:
                assert names[names.index(named) + 1] == "workspace_id", f"question {number}: {names}"


def test_the_organization_admins_disabled_ones_flagged(small_org):
    rows = answer(small_org.database, 3)
    assert [(email, disabled) for email, _, disabled, _ in rows] == [
        ("alice@example.com", False), ("hank@example.com", True), ("ola@example.com", False)]


def test_how_many_hold_each_role_in_each_workspace(small_org):
    first, second = a_then_b(small_org)
    counts = {"A": [("Admin", 2), ("Viewer", 1)], "B": [("Admin", 1), ("Viewer", 1)]}
    rows = by_workspace(answer(small_org.database, 2), small_org.ids)
    assert rows == [("Platform", w, role, n) for w in (first, second) for role, n in counts[w]]


def test_everything_one_person_can_do(small_org):
    """Question 4 for bob, asked with another case: his org role, then each workspace role (the
    deleted workspace's grant is gone)."""
    first, second = a_then_b(small_org)
    rows = by_workspace(answer(small_org.database, 4, **{"'ada@example.com'": "'Bob@Example.COM'"}),
                        small_org.ids)
    assert [row[:4] for row in rows] == [
        ("organization_role", "(organization)", None, "Organization User"),
        ("workspace_role", "Platform", first, "Admin"),
        ("workspace_role", "Platform", second, "Admin")]


def test_who_can_delete_projects_through_a_listed_role(small_org):
    """bob, an Admin in both Platforms; not carol (disabled), not alice (her listed Viewer cannot;
    her implicit Admin is question 12's)."""
    first, second = a_then_b(small_org)
    rows = by_workspace(answer(small_org.database, 5), small_org.ids)
    assert rows == [("bob@example.com", "Platform", first, "Admin"), ("bob@example.com", "Platform", second, "Admin")]


def test_disabled_members_with_workspace_roles(small_org):
    rows = by_workspace(answer(small_org.database, 6), small_org.ids)
    assert rows == [("carol@example.com", "Carol", "Platform", "A", "Admin")]


def test_members_in_no_shared_workspace(small_org):
    """dan, and eve (her personal workspace is not shared); not ola (an Organization Admin
    reaches every workspace), not carol (disabled), in the order they joined."""
    rows = answer(small_org.database, 7)
    assert [row[0] for row in rows] == ["dan@example.com", "eve@example.com"]


def test_who_had_access_to_each_workspace_now_and_between_the_syncs(small_org):
    first, second = a_then_b(small_org)
    now = by_workspace(answer(small_org.database, 8), small_org.ids)
    held = {"A": [("alice@example.com", "Viewer"), ("bob@example.com", "Admin"), ("carol@example.com", "Admin")],
            "B": [("bob@example.com", "Admin"), ("gus@example.com", "Viewer")]}
    assert [row[:4] for row in now] == [("Platform", w, *g) for w in (first, second) for g in held[w]]
    then = by_workspace(answer(small_org.database, 8, **{"now()": f"TIMESTAMPTZ '{small_org.between_syncs}'"}),
                        small_org.ids)
    held = {"A": [("alice@example.com", "Viewer"), ("bob@example.com", "Editor"), ("carol@example.com", "Admin")],
            "B": [("bob@example.com", "Admin")]}
    assert [row[:4] for row in then] == [("Platform", w, *g) for w in (first, second) for g in held[w]]


def test_who_can_act_as_admin_in_each_workspace_through_any_path(small_org):
    """The listed Admins and alice's implicit Admin in both Platforms; not hank (a disabled
    Organization Admin) nor carol (disabled)."""
    first, second = a_then_b(small_org)
    rows = by_workspace(answer(small_org.database, 11), small_org.ids)
    assert [row[:4] for row in rows] == [
        ("Platform", w, email, source) for w in (first, second)
        for email, source in (("bob@example.com", "direct"), ("alice@example.com", "organization_admin"),
                              ("ola@example.com", "organization_admin"))]


def test_who_can_read_projects_and_through_which_paths(small_org):
    """Question 12 for projects:read: alice's listed Viewer and her implicit Admin both give it
    in Platform A."""
    first, second = a_then_b(small_org)
    rows = by_workspace(answer(small_org.database, 12, **{"'projects:delete'": "'projects:read'"}), small_org.ids)
    paths = {"A": [("alice@example.com", ["direct", "organization_admin"]), ("bob@example.com", ["direct"]),
                   ("ola@example.com", ["organization_admin"])],
             "B": [("alice@example.com", ["organization_admin"]), ("bob@example.com", ["direct"]),
                   ("gus@example.com", ["direct"]), ("ola@example.com", ["organization_admin"])]}
    assert rows == [("Platform", w, email, sources) for w in (first, second) for email, sources in paths[w]]

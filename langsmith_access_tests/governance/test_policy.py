"""The policy file: read, checked, and its names checked against a real synced database.

Every refusal names the file, the line and the reason; a file with several problems lists all
of them.
"""

from datetime import timedelta
from textwrap import dedent

import duckdb
import pytest

from langsmith_access.governance.policy import (
    NAMED_EMAILS,
    NO_POLICY,
    ORG_ADMINS,
    WORKSPACE_ADMINS,
    Named,
    PolicyError,
    PolicyFile,
    governing_policy,
    load_policy,
)
from langsmith_access.store import directory
from langsmith_access.store.directory import RoleEntry, WorkspaceEntry

EXAMPLE = """\
approval:
  required: ["Admin"]
  workspaces: ["Search Relevance"]
  approvers: workspace_admins
  self_approval: false
  wait_at_most: 72h
duration:
  default: null
  max: {"Admin": 8h, "*": 90d}
"""


def write(tmp_path, text, name="policy.yaml"):
    path = tmp_path / name
    path.write_text(dedent(text))
    return path


def refusal(path) -> PolicyError:
    with pytest.raises(PolicyError) as error:
        load_policy(path)
    return error.value


@pytest.fixture(scope="module")
def synced(template):
    """A read-only connection to a synced database (the session's template), and its tables."""
    with template.connect(read_only=True) as conn:
        yield conn, {r.display_name: r for r in directory.synced_roles(conn)}, directory.synced_workspaces(conn)


def test_the_design_example_reads_as_written(tmp_path):
    written = load_policy(write(tmp_path, EXAMPLE))
    assert [n.text for n in written.required] == ["Admin"]
    assert [(n.text, n.line) for n in written.workspaces] == [("Search Relevance", 3)]
    assert (written.approvers, written.self_approval, written.wait_at_most) == (WORKSPACE_ADMINS, False, timedelta(hours=72))
    assert written.default_duration is None
    assert [(n.text, n.line, d) for n, d in written.max_durations] == [
        ("Admin", 9, timedelta(hours=8)), ("*", 9, timedelta(days=90))]


def test_an_empty_file_and_missing_keys_take_the_defaults(tmp_path):
    for text in ("", "# nothing yet\n", "approval:\nduration:\n"):
        written = load_policy(write(tmp_path, text))
        assert (written.required, written.workspaces, written.approvers) == ((), None, WORKSPACE_ADMINS)
        assert (written.self_approval, written.wait_at_most, written.default_duration) == (False, timedelta(hours=72), None)
    explicit = load_policy(write(tmp_path, "approval:\n  wait_at_most: null\n  approvers: [sec@example.com]\n"))
    assert explicit.wait_at_most is None
    assert (explicit.approvers, [n.text for n in explicit.approver_emails]) == (NAMED_EMAILS, ["sec@example.com"])
    # One approver named twice, in two cases: one approver, in the first spelling.
    twice = load_policy(write(tmp_path, "approval:\n  approvers: [Sec@Example.com, ops@example.com, sec@example.com]\n"))
    assert [n.text for n in twice.approver_emails] == ["Sec@Example.com", "ops@example.com"]
    assert load_policy(write(tmp_path, "approval:\n  approvers: org_admins\n")).approvers == ORG_ADMINS
    # A key left empty (null) is a key not given: no roles need approval, no role has a max.
    emptied = load_policy(write(tmp_path, "approval:\n  required:\nduration:\n  max:\n"))
    assert (emptied.required, emptied.max_durations) == ((), ())


def test_a_missing_file_is_refused_naming_it(tmp_path):
    error = refusal(tmp_path / "nowhere.yaml")
    assert str(tmp_path / "nowhere.yaml") in str(error)
    assert "does not exist" in str(error)
    assert [line for line, _ in error.problems] == [None]  # no line of a file that is not there
    # Either place may have named it: an org's own `policy` in the orgs file, or the variable.
    assert "`policy` in the orgs file (LANGSMITH_ACCESS_ORGS_FILE)" in str(error)
    assert "LANGSMITH_ACCESS_POLICY" in str(error)
    # The header claims neither; the fix names both ways to stop naming the file.
    assert str(error).startswith(f"the access policy {tmp_path / 'nowhere.yaml'} is refused:")
    assert "orgs file" in error.fix and "LANGSMITH_ACCESS_POLICY" in error.fix


def test_a_directory_or_bytes_that_are_not_utf8_are_refused_for_what_they_are(tmp_path):
    # Not "cannot be read as UTF-8 text: [Errno 21] Is a directory": the fix for each.
    error = refusal(tmp_path)
    assert "it is a directory, not a file" in str(error) and "LANGSMITH_ACCESS_POLICY" in str(error)
    assert "UTF-8" not in str(error)
    binary = tmp_path / "policy.yaml"
    binary.write_bytes(b"\xff\xfeapproval: {}\n")
    error = refusal(binary)
    assert "the file is not UTF-8 text" in str(error) and "save it as UTF-8" in str(error)


def test_yaml_that_does_not_parse_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, """\
        approval:
          required: ["Admin"
          approvers: workspace_admins
        """)
    error = refusal(path)
    assert str(path) in str(error)
    assert error.problems[0][0] == 3
    assert "not valid YAML" in error.problems[0][1]
    tabs = refusal(write(tmp_path, "approval:\n\trequired: [Admin]\n"))
    assert tabs.problems[0][0] == 2
    # Found at the end of the file: YAML marks the line after the last newline, which is not there.
    unclosed = refusal(write(tmp_path, "approval: [unclosed\n"))
    assert unclosed.problems[0][0] == 1 and "<stream end>" in unclosed.problems[0][1]


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("aproval:\n  required: [Admin]\n", 1, "unknown key 'aproval' in the policy (did you mean 'approval'?)"),
    ("approval:\n  required: [Admin]\n  approver: org_admins\n", 3,
     "unknown key 'approver' in approval (did you mean 'approvers'?)"),
    ("duration:\n  maximum: {Admin: 8h}\n", 2, "unknown key 'maximum' in duration"),
    ("approval:\n  wait_at_most: 0s\n", 2, "approval.wait_at_most '0s' is zero"),
    ("approval:\n  wait_at_most: -1h\n", 2, "approval.wait_at_most '-1h' is not a duration"),
    ("duration:\n  default: 9999d\n", 2, "duration.default '9999d' is longer than the ceiling of 365d"),
    ("duration:\n  default: abc\n", 2, "duration.default 'abc' is not a duration"),
    ("duration:\n  max:\n    Admin: 72\n", 3, "duration.max['Admin'] '72' is not a duration"),
    ("duration:\n  max:\n    Admin: null\n", 3, "duration.max['Admin'] must be a duration like 8h or 90d, not null"),
    ("approval:\n  self_approval: maybe\n", 2, "approval.self_approval must be true or false, got 'maybe'"),
    ("approval:\n  approvers: workspace_admin\n", 2,
     "approval.approvers must be workspace_admins, org_admins or a list of emails, got 'workspace_admin'"),
    ("approval:\n  approvers: [sec@example.com, not-an-email]\n", 2, "approval.approvers: 'not-an-email' is not an email"),
    # DESIGN writes the choice as `emails`: the refusal says it means a list of them.
    ("approval:\n  approvers: sec@example.com\n", 2, "approval.approvers must be workspace_admins, org_admins or a "
     "list of emails, got 'sec@example.com': one approver is a list of one, [sec@example.com]"),
    ("approval:\n  approvers: emails\n", 2, "got 'emails': list the approvers' emails themselves, e.g. "
     "[security@example.com, ops@example.com]"),
    ("approval:\n  approvers: []\n", 2, "approval.approvers is an empty list: nobody could approve"),
    ("approval:\n  required: [Admin, [Editor]]\n", 2, "approval.required must list roles"),
    ("approval:\n  required: [Admin, yes]\n", 2, "approval.required must list roles (or \"*\") as text, got 'yes'"),
    ("approval:\n  approvers: [sec@example.com, 'ops @example.com']\n", 2,
     "approval.approvers: 'ops @example.com' is not an email"),
    ("approval: [Admin]\n", 1, "approval must be a mapping of required, workspaces"),
    ("- approval\n", 1, "the policy must be a mapping of approval, duration"),
    ("approval:\n  required: [Admin]\napproval:\n  required: [Editor]\n", 3, "approval is given twice (first on line 1)"),
    ("approval:\n  wait_at_most: 8h\n  wait_at_most: 9h\n", 3, "approval.wait_at_most is given twice (first on line 2)"),
    ("duration:\n  max: {Admin: 8h, Admin: 9h}\n", 2, "duration.max gives 'Admin' twice"),
    ("duration:\n  max:\n    yes: 8h\n", 3, "duration.max keys must be role names (or \"*\"), got 'yes'"),
    # A role named Yes, No, On or Off reads as a boolean unless quoted: the refusal says how to write it.
    ("approval:\n  required: [Admin, No]\n", 2, "approval.required must list roles (or \"*\") as text, got 'No', "
     "which YAML reads as true or false: if it is a name, quote it (\"No\")"),
    ("duration:\n  max:\n    On: 8h\n", 3, "duration.max keys must be role names (or \"*\"), got 'On', which YAML "
     "reads as true or false: if it is a name, quote it (\"On\")"),
    ("approval: &shared\n  required: [Admin]\nduration:\n  <<: *shared\n", 4,
     "a YAML merge key (<<) in duration is not read: write its keys out in full"),
    ("duration:\n  max:\n    <<: {Admin: 8h}\n", 3, "a YAML merge key (<<) in duration.max is not read"),
    ("approval:\n  workspaces: []\n", 2, "approval.workspaces lists no workspace: list the workspaces whose grants "
     "need approval, or remove the key for every workspace"),
    # Approval is for the roles `required` names: workspaces without them would need it for no grant.
    ("approval:\n  workspaces: [Production]\n  approvers: org_admins\n", 2, "approval.workspaces lists where "
     'grants need approval, but approval.required names no role, so no grant there would: list the roles in '
     'approval.required ("*" for every role), or remove approval.workspaces'),
    ("approval:\n  required: []\n  workspaces: [Production]\n", 3, "approval.required names no role"),
    ("approval:\n  required:\n  workspaces: [Production]\n", 3, "approval.required names no role"),
    # A blank name names no role, and a duration or a max of the wrong shape is no duration.
    ("approval:\n  required: [Admin, '  ']\n", 2, "approval.required must list roles (or \"*\") as text, got '  '"),
    ("approval:\n  wait_at_most: [72h]\n", 2, "approval.wait_at_most must be a duration like 8h or 90d, got a list"),
    ("duration:\n  default: {Admin: 8h}\n", 2, "duration.default must be a duration like 8h or 90d, got a mapping"),
    ("duration:\n  max: [Admin]\n", 2, 'duration.max must map roles (or "*") to durations, got a list'),
])
def test_each_bad_value_is_refused_with_its_line_and_reason(tmp_path, text, line, reason):
    path = write(tmp_path, text)
    error = refusal(path)
    assert [problem for problem in error.problems if reason in problem[1]] == [(line, error.problems[0][1])], error.problems
    assert str(path) in str(error) and f"line {line}: " in str(error)


def test_self_approval_true_is_read_as_allowed(tmp_path):
    for text in ("true", "yes", "True", "on"):
        assert load_policy(write(tmp_path, f"approval:\n  self_approval: {text}\n")).self_approval is True, text
    assert load_policy(write(tmp_path, "approval:\n  self_approval: no\n")).self_approval is False


def test_a_single_name_is_a_list_of_one(tmp_path):
    # `required: Admin` (no brackets) must not read as no role at all: that would govern nothing.
    assert [(n.text, n.line) for n in load_policy(write(tmp_path, "approval:\n  required: Admin\n")).required] == [
        ("Admin", 2)]
    written = load_policy(write(tmp_path, "approval:\n  required: '*'\n  workspaces: Search Relevance\n"))
    assert [(n.text, n.line) for n in written.workspaces] == [("Search Relevance", 3)]


def test_every_problem_of_a_file_is_listed(tmp_path):
    error = refusal(write(tmp_path, """\
        approval:
          required: [Admin]
          wait_at_most: 0s
          colour: blue
        duration:
          default: 400d
        """))
    assert [line for line, _ in error.problems] == [3, 4, 6]


def test_names_are_resolved_against_the_latest_sync(tmp_path, synced):
    conn, roles, workspaces = synced
    search = next(w for w in workspaces if w.display_name == "Search Relevance")
    policy = governing_policy(write(tmp_path, f"""\
        approval:
          required: [admin, WORKSPACE_USER, {roles['Viewer'].role_id}]
          workspaces: [search relevance, {workspaces[0].workspace_id}]
        duration:
          max: {{"Deployment Auditor": 2h, "*": 30d}}
        """), conn)
    assert policy.approval_role_ids == {roles["Admin"].role_id, roles["Editor"].role_id, roles["Viewer"].role_id}
    assert not policy.approval_any_role
    assert policy.approval_workspace_ids == {search.workspace_id, workspaces[0].workspace_id}
    assert policy.max_duration(roles["Deployment Auditor"].role_id) == timedelta(hours=2)
    assert policy.max_duration(roles["Admin"].role_id) == timedelta(days=30)
    everything = governing_policy(write(tmp_path, 'approval:\n  required: ["*"]\n'), conn)
    assert everything.approval_any_role and everything.approval_workspace_ids is None


def test_every_setting_of_the_file_is_in_force_once_resolved(tmp_path, synced):
    # What a user writes besides names (self-approval, approvers, wait, default) reaches the
    # Policy the decisions use, not only the file as read.
    conn, roles, workspaces = synced
    policy = governing_policy(write(tmp_path, f"""\
        approval:
          required: [{roles['Admin'].role_id.upper()}]
          workspaces: [{workspaces[0].workspace_id.upper()}]
          approvers: [Sec@Example.com]
          self_approval: true
          wait_at_most: 2d
        duration:
          default: 12h
        """), conn)
    # Ids in any case.
    assert (policy.approval_role_ids, policy.approval_workspace_ids) == (
        {roles["Admin"].role_id}, {workspaces[0].workspace_id})
    assert (policy.approvers, policy.approver_emails) == (NAMED_EMAILS, ("Sec@Example.com",))
    assert (policy.self_approval, policy.wait_at_most, policy.default_duration) == (
        True, timedelta(days=2), timedelta(hours=12))


def test_unknown_organization_and_ambiguous_names_are_refused_with_their_lines(tmp_path, synced):
    conn, _, _ = synced
    path = write(tmp_path, """\
        approval:
          required:
            - Admn
            - Organization Admin
          workspaces: [Platform, Nowhere]
        duration:
          max: {Ghost: 8h}
        """)
    with pytest.raises(PolicyError) as error:
        governing_policy(path, conn)
    by_line: dict[int | None, list[str]] = {}
    for line, reason in error.value.problems:
        by_line.setdefault(line, []).append(reason)
    assert sorted(by_line) == [3, 4, 5, 7]
    assert by_line[3][0].startswith("approval.required: unknown role 'Admn'") and "Admin, " in by_line[3][0]
    assert "'Organization Admin' is an organization role" in by_line[4][0]
    platform, nowhere = by_line[5]
    assert platform.startswith("approval.workspaces: ambiguous workspace 'Platform': 2 workspaces")
    assert nowhere.startswith("approval.workspaces: unknown workspace 'Nowhere'")
    assert by_line[7][0].startswith("duration.max: unknown role 'Ghost'")
    assert str(path) in str(error.value)


def test_two_names_of_one_role_cannot_each_give_it_a_max(tmp_path, synced):
    conn, _, _ = synced
    path = write(tmp_path, """\
        duration:
          max:
            Admin: 8h
            "*": 90d
            WORKSPACE_ADMIN: 90d
        """)
    with pytest.raises(PolicyError) as error:
        governing_policy(path, conn)
    assert error.value.problems == [
        (5, "duration.max: 'WORKSPACE_ADMIN' is the role 'Admin' names (line 3): give each role one max")]


def test_bad_values_and_unknown_names_are_refused_together(tmp_path, synced):
    # One refusal lists both: fixing the values first would only reveal the names next time.
    conn, _, _ = synced
    path = write(tmp_path, """\
        approval:
          required: [Admn]
          colour: blue
        duration:
          max: {Admin: 8x, Ghost: 2h}
        """)
    with pytest.raises(PolicyError) as error:
        governing_policy(path, conn)
    problems = error.value.problems
    assert [line for line, _ in problems] == [2, 3, 5, 5], problems
    reasons = " | ".join(reason for _, reason in problems)
    assert "unknown role 'Admn'" in reasons and "unknown key 'colour'" in reasons
    assert "'8x' is not a duration" in reasons and "unknown role 'Ghost'" in reasons


def test_a_bad_value_is_refused_even_when_every_name_resolves(tmp_path, synced):
    # Nothing is queued under a half-read policy: names that all resolve do not let a file
    # whose values did not read through (its wait dropped, its default lost) be used.
    conn, _, _ = synced
    path = write(tmp_path, EXAMPLE.replace("wait_at_most: 72h", "wait_at_most: 0s").replace("default: null",
                                                                                             "default: 30x"))
    with pytest.raises(PolicyError) as error:
        governing_policy(path, conn)
    assert [line for line, _ in error.value.problems] == [6, 8], error.value.problems
    assert "approval.wait_at_most '0s' is zero" in str(error.value) and str(path) in str(error.value)


def test_no_file_means_no_policy(synced):
    conn, _, _ = synced
    assert governing_policy(None, conn) is NO_POLICY


def test_a_policy_cannot_be_checked_before_the_first_sync(tmp_path):
    path = write(tmp_path, EXAMPLE)
    with duckdb.connect(str(tmp_path / "empty.duckdb")) as conn, pytest.raises(PolicyError, match="run `langsmith-access sync` first"):
        governing_policy(path, conn)
    # The file's own problems are in the same refusal.
    path = write(tmp_path, EXAMPLE.replace("wait_at_most: 72h", "wait_at_most: 0s"))
    with duckdb.connect(str(tmp_path / "empty.duckdb")) as conn, pytest.raises(PolicyError) as error:
        governing_policy(path, conn)
    assert [line for line, _ in error.value.problems] == [None, 6], error.value.problems


def resolved(tmp_path, roles, workspaces, *, required=(), workspace_names=None):
    """``PolicyFile.resolve`` against the given tables (line 2 for every name)."""
    written = PolicyFile(tmp_path / "policy.yaml", required=tuple(Named(n, 2) for n in required),
                         workspaces=None if workspace_names is None else tuple(Named(n, 2) for n in workspace_names))
    return written.resolve(roles, workspaces)


def test_two_workspace_roles_of_one_name_are_ambiguous_and_custom_names_no_role(tmp_path):
    roles = [RoleEntry("r-1", "CUSTOM", "Reviewer", "workspace"), RoleEntry("r-2", "CUSTOM", "Reviewer", "workspace"),
             RoleEntry("r-3", "CUSTOM", "Auditor", "workspace"), RoleEntry("r-4", "WORKSPACE_ADMIN", "Admin", "workspace")]
    with pytest.raises(PolicyError) as error:
        resolved(tmp_path, roles, [], required=["Reviewer"])
    [(line, reason)] = error.value.problems
    assert line == 2 and reason.startswith("approval.required: ambiguous role 'Reviewer': 2 workspace roles match")
    assert resolved(tmp_path, roles, [], required=["auditor"]).approval_role_ids == {"r-3"}
    # Every custom role's name is CUSTOM: "custom" names none of them (only its display name does).
    with pytest.raises(PolicyError, match="unknown role 'custom'"):
        resolved(tmp_path, roles[2:], [], required=["custom"])


def test_a_workspace_name_matches_exactly_before_it_matches_in_any_case(tmp_path):
    workspaces = [WorkspaceEntry("w-1", "Prod"), WorkspaceEntry("w-2", "prod"), WorkspaceEntry("w-3", "Staging")]
    assert resolved(tmp_path, [], workspaces, workspace_names=["Prod"]).approval_workspace_ids == {"w-1"}
    assert resolved(tmp_path, [], workspaces, workspace_names=["prod"]).approval_workspace_ids == {"w-2"}
    assert resolved(tmp_path, [], workspaces, workspace_names=["STAGING"]).approval_workspace_ids == {"w-3"}
    with pytest.raises(PolicyError, match="ambiguous workspace 'PROD': 2 workspaces"):
        resolved(tmp_path, [], workspaces, workspace_names=["PROD"])


def test_a_star_among_the_workspaces_says_that_leaving_them_out_means_every_workspace(tmp_path):
    workspaces = [WorkspaceEntry("w-1", "Prod"), WorkspaceEntry("w-2", "Staging")]
    with pytest.raises(PolicyError) as error:
        resolved(tmp_path, [], workspaces, workspace_names=["*"])
    assert error.value.problems == [(2, 'approval.workspaces: "*" names no workspace: to need approval in every '
                                        "workspace, remove approval.workspaces (workspaces: Prod, Staging)")]


def test_an_unknown_name_lists_a_dozen_of_the_known_ones_and_counts_the_rest(tmp_path):
    workspaces = [WorkspaceEntry(f"w-{n}", f"Team {n:02}") for n in range(15)]
    with pytest.raises(PolicyError) as error:
        resolved(tmp_path, [], workspaces, workspace_names=["Team 99"])
    [(_, reason)] = error.value.problems
    assert reason.endswith("(workspaces: Team 00, Team 01, Team 02, Team 03, Team 04, Team 05, Team 06, Team 07, "
                           "Team 08, Team 09, Team 10, Team 11, and 3 more)"), reason
    # A dozen exactly are all listed, with nothing counted ("and 0 more" would be noise).
    with pytest.raises(PolicyError) as error:
        resolved(tmp_path, [], workspaces[:12], workspace_names=["Team 99"])
    [(_, reason)] = error.value.problems
    assert reason.endswith("Team 10, Team 11)"), reason


def test_names_the_sync_stored_decomposed_match_the_policys_typed_composed(tmp_path):
    # LangSmith keeps names as they were typed: it may send "E" + U+0301 (decomposed, as macOS
    # input gives) where the policy's author typed the composed "\u00c9" that looks the same.
    conn = duckdb.connect()
    for table, columns in (("users", "user_id VARCHAR"), ("grants", "user_id VARCHAR"),
                           ("workspaces", "workspace_id VARCHAR, display_name VARCHAR"),
                           ("roles", "role_id VARCHAR, name VARCHAR, display_name VARCHAR, access_scope VARCHAR")):
        conn.execute(f"CREATE TABLE main.{table} ({columns})")
    conn.execute("INSERT INTO main.workspaces VALUES ('w-1', 'E\u0301quipe Donne\u0301es'), "
                 "('w-2', 'e\u0301quipe donne\u0301es')")
    conn.execute("INSERT INTO main.roles VALUES ('r-1', 'CUSTOM', 'Re\u0301viseur', 'workspace'), "
                 "('r-2', 'WORKSPACE_ADMIN', 'Admin', 'workspace')")
    path = write(tmp_path, """\
        approval:
          required: ["R\u00e9viseur"]
          workspaces: ["\u00c9quipe Donn\u00e9es"]
          approvers: ["Rene\u0301@example.com"]
        duration:
          max: {"r\u00c9viseur": 8h}
        """)

    policy = governing_policy(path, conn)

    assert policy.approval_role_ids == {"r-1"}
    assert policy.approval_workspace_ids == {"w-1"}  # the exact name, before the one in another case
    assert dict(policy.max_by_role) == {"r-1": timedelta(hours=8)}
    # The approvers' emails are compared as a person types them: composed.
    assert policy.approver_emails == ("Ren\u00e9@example.com",)


def test_a_role_name_matches_in_any_case_as_a_display_name_does(tmp_path):
    # As --role takes them: WORKSPACE_USER, workspace_user and Workspace_User are one role.
    roles = [RoleEntry("r-1", "WORKSPACE_ADMIN", "Admin", "workspace"),
             RoleEntry("r-2", "WORKSPACE_USER", "Editor", "workspace")]
    for name in ("WORKSPACE_USER", "workspace_user", "Workspace_User", "EDITOR"):
        assert resolved(tmp_path, roles, [], required=[name]).approval_role_ids == {"r-2"}, name

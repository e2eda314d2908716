"""The policy's decisions: approval needed, a grant's terms and expiry, who may approve.

Approvers are checked against a real synced database (the session's template); the people are
picked from the generated org it was synced from, so the expectations do not come from the
code under test.
"""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from langsmith_access.governance.decisions import (
    AccessTerms,
    AccessTermsRefused,
    Grantee,
    access_terms,
    approval_deadline,
    approver_refusal,
    needs_approval,
)
from langsmith_access.governance.durations import CEILING
from langsmith_access.governance.policy import NAMED_EMAILS, NO_POLICY, ORG_ADMINS, Policy
from langsmith_access.provisioning.queue import terms_of
from langsmith_access.store.directory import MemberStanding, member_standing
from langsmith_access_tests.synced import new_org

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
ADMIN, EDITOR, VIEWER = "role-admin", "role-editor", "role-viewer"
PROD, DEV = "ws-prod", "ws-dev"

ADMIN_IN_PROD = Policy(source="p.yaml", approval_role_ids=frozenset({ADMIN}), approval_workspace_ids=frozenset({PROD}))
LIMITS = Policy(source="p.yaml", max_by_role=((ADMIN, timedelta(hours=8)),), max_any_role=timedelta(days=90))


def test_needs_approval_when_the_role_matches_and_the_workspace_is_listed_or_none_are():
    assert needs_approval(ADMIN_IN_PROD, ADMIN, PROD)
    assert not needs_approval(ADMIN_IN_PROD, ADMIN, DEV)
    assert not needs_approval(ADMIN_IN_PROD, EDITOR, PROD)
    everywhere = Policy(source="p.yaml", approval_role_ids=frozenset({ADMIN}))
    assert needs_approval(everywhere, ADMIN, DEV) and not needs_approval(everywhere, VIEWER, DEV)
    every_role = Policy(source="p.yaml", approval_any_role=True, approval_workspace_ids=frozenset({PROD}))
    assert needs_approval(every_role, VIEWER, PROD) and not needs_approval(every_role, VIEWER, DEV)
    assert not needs_approval(NO_POLICY, ADMIN, PROD)


def terms(policy=LIMITS, role=ADMIN, **asked) -> AccessTerms:
    return access_terms(policy, role, "Admin" if role == ADMIN else "Editor", now=NOW, **asked)


def test_asked_terms_within_the_roles_max_are_kept_and_expire_from_when_applied():
    applied = NOW + timedelta(hours=3)
    assert terms(duration="8h").expires_at(applied) == applied + timedelta(hours=8)
    assert terms(duration=timedelta(minutes=5)).duration == timedelta(minutes=5)
    assert terms(role=EDITOR, duration="90d").duration == timedelta(days=90)
    until = terms(until="2026-11-29T18:00Z")
    assert until.expires_at(applied) == datetime(2026, 11, 29, 18, 0, tzinfo=UTC)
    assert terms(until="2026-11-29T19:00+02:00").until == datetime(2026, 11, 29, 17, 0, tzinfo=UTC)
    assert terms(until="2026-11-29T19:00+02:00").describe() == "until 2026-11-29T17:00:00Z"
    # As --duration's text is: blanks around it (a pasted value, a Dagster config) are not part of it.
    assert terms(until=" 2026-11-29T18:00Z\n").until == datetime(2026, 11, 29, 18, 0, tzinfo=UTC)
    # RFC 3339's lower-case z is UTC too, not "no time zone".
    assert terms(until="2026-11-29T18:00z").until == datetime(2026, 11, 29, 18, 0, tzinfo=UTC)
    assert terms(duration="2h").describe() == "for 2h from when it is applied"


@pytest.mark.parametrize(("asked", "reason"), [
    ({"duration": "9h"}, "--duration 9h is longer than the policy's maximum for Admin (8h): ask for at most 8h"),
    ({"duration": "0s"}, "--duration '0s' is zero"),
    ({"duration": "-1h"}, "--duration '-1h' is not a duration"),
    ({"duration": "9999d"}, "longer than the ceiling of 365d"),
    ({"duration": "abc"}, "--duration 'abc' is not a duration"),
    ({"duration": timedelta(0)}, "--duration must be positive"),
    # Stored as whole seconds: half a second would be stored as none, a permanent grant.
    ({"duration": timedelta(milliseconds=500)}, "--duration must be a whole number of seconds, at least 1"),
    ({"duration": timedelta(seconds=90.5)}, "--duration must be a whole number of seconds"),
    ({"until": "2026-11-29T11:59Z"}, "--until 2026-11-29T11:59Z is in the past"),
    ({"until": "2026-11-29T20:01Z"}, "longer than the policy's maximum for Admin (8h): give a time before 2026-11-29T20:00Z"),
    ({"until": "2026-11-30T20:00Z"}, "--until 2026-11-30T20:00Z is 32.0 hours from now, longer than"),
    ({"until": "2026-12-02T12:00Z"}, "--until 2026-12-02T12:00Z is 3 days from now, longer than"),
    ({"until": "2026-12-01T12:00Z"}, "--until 2026-12-01T12:00Z is 2 days from now, longer than"),
    ({"until": "2026-12-01T11:59Z"}, "--until 2026-12-01T11:59Z is 48.0 hours from now, longer than"),
    ({"until": "2026-11-29T18:00"}, "has no time zone"),
    ({"until": "tomorrow"}, "is not a time"),
    # From Python (langsmith_access.api): what is neither text nor a datetime is refused, and so
    # recorded, naming what was given, not an AttributeError out of the notebook's call.
    ({"until": date(2026, 11, 30)}, "--until '2026-11-30' (date) is not a time: give a datetime with a time zone"),
    ({"until": 1764460800}, "--until '1764460800' (int) is not a time"),
    ({"until": datetime(2026, 11, 29, 18, 0)}, "--until 2026-11-29 18:00:00 has no time zone"),
    # ISO 8601 that UTC cannot hold: refused (and so recorded), not an OverflowError traceback.
    ({"until": "9999-12-31T23:59-01:00"}, "--until 9999-12-31T23:59-01:00 is out of range in UTC"),
    ({"until": "0001-01-01T00:00+01:00"}, "is out of range in UTC"),
    ({"duration": "1h", "until": "2026-11-29T18:00Z"}, "either --duration or --until, not both"),
])
def test_bad_terms_are_refused_saying_why(asked, reason):
    with pytest.raises(AccessTermsRefused) as error:
        terms(**asked)
    assert reason in str(error.value)


NEW_YORK, LORD_HOWE = ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe")


@pytest.mark.parametrize(("until", "reason"), [
    # 2027-03-14: New York's clocks go from 02:00 EST to 03:00 EDT; 02:30 is no time there.
    (datetime(2027, 3, 14, 2, 30, tzinfo=NEW_YORK),
     "--until 2027-03-14 02:30:00 (America/New_York) does not exist there (the clocks go forward over it): "
     "it could be 2027-03-14T06:30Z or 2027-03-14T07:30Z. Give the end in UTC or with a fixed offset"),
    # 2027-11-07: back from 02:00 EDT to 01:00 EST; 01:30 happens twice, whichever fold is set.
    (datetime(2027, 11, 7, 1, 30, tzinfo=NEW_YORK),
     "--until 2027-11-07 01:30:00 (America/New_York) happens twice there (the clocks go back over it): "
     "it could be 2027-11-07T05:30Z or 2027-11-07T06:30Z."),
    (datetime(2027, 11, 7, 1, 30, tzinfo=NEW_YORK, fold=1), "happens twice there"),
    # Lord Howe moves its clocks by half an hour: 02:00 -> 02:30 in October, 02:00 -> 01:30 in April.
    (datetime(2027, 10, 3, 2, 15, tzinfo=LORD_HOWE), "it could be 2027-10-02T15:15Z or 2027-10-02T15:45Z"),
    (datetime(2027, 4, 4, 1, 45, tzinfo=LORD_HOWE), "it could be 2027-04-03T14:45Z or 2027-04-03T15:15Z"),
])
def test_an_end_from_python_at_a_wall_time_its_zone_skips_or_repeats_is_refused_not_shifted(until, reason):
    # A datetime with a ZoneInfo names no single instant there: taken as it comes (fold=0), the
    # grant would end up to an hour away from any time the requester meant, without a word.
    with pytest.raises(AccessTermsRefused) as error:
        terms(NO_POLICY, role=EDITOR, until=until)
    assert reason in str(error.value)


def test_an_end_from_python_in_a_zone_with_daylight_saving_time_is_kept_when_it_names_one_instant():
    assert terms(NO_POLICY, role=EDITOR, until=datetime(2027, 3, 14, 3, 30, tzinfo=NEW_YORK)).until == \
        datetime(2027, 3, 14, 7, 30, tzinfo=UTC)
    assert terms(NO_POLICY, role=EDITOR, until=datetime(2027, 11, 7, 2, 30, tzinfo=NEW_YORK)).until == \
        datetime(2027, 11, 7, 7, 30, tzinfo=UTC)
    assert terms(NO_POLICY, role=EDITOR, until=datetime(2027, 4, 4, 2, 0, tzinfo=LORD_HOWE)).until == \
        datetime(2027, 4, 3, 15, 30, tzinfo=UTC)


def test_a_day_of_duration_is_24_hours_even_across_a_clock_change():
    # README: a day is 24 hours, counted in UTC. A stored time (a dead run's write, settled later)
    # comes back from DuckDB in the host's zone, a ZoneInfo, and Python adds to that by the wall
    # clock: applied at 12:00 in New York the day before the clocks go forward, 1d must end at
    # 13:00 there the next day (24 hours), not at 12:00 (23 hours).
    applied = datetime(2027, 3, 13, 12, 0, tzinfo=NEW_YORK)
    ends = terms(NO_POLICY, role=EDITOR, duration="1d").expires_at(applied)
    assert ends == datetime(2027, 3, 14, 17, 0, tzinfo=UTC)
    assert ends.astimezone(NEW_YORK).replace(tzinfo=None) == datetime(2027, 3, 14, 13, 0)
    # And when they go back in November: 24 hours from 12:00 EDT is 11:00 EST, not 12:00 (25 hours).
    assert terms(NO_POLICY, role=EDITOR, duration="1d").expires_at(datetime(2027, 11, 6, 12, 0, tzinfo=NEW_YORK)) \
        == datetime(2027, 11, 7, 16, 0, tzinfo=UTC)


def test_an_approval_deadline_is_the_wait_in_hours_even_across_a_clock_change():
    asked = datetime(2027, 3, 13, 12, 0, tzinfo=NEW_YORK)  # as DuckDB hands a requested_at back there
    waits = Policy(source="p.yaml", wait_at_most=timedelta(hours=72))
    assert approval_deadline(waits, asked) == datetime(2027, 3, 16, 17, 0, tzinfo=UTC)


def test_without_a_policy_only_the_ceiling_limits():
    assert terms(NO_POLICY, duration="365d").duration == timedelta(days=365)
    with pytest.raises(AccessTermsRefused, match="ceiling of 365d"):
        terms(NO_POLICY, until=(NOW + timedelta(days=366)).isoformat())
    assert terms(NO_POLICY) == AccessTerms()
    assert AccessTerms().expires_at(NOW) is None


def test_unasked_terms_take_the_default_cut_to_the_max_else_the_max_else_none():
    with_default = Policy(source="p.yaml", default_duration=timedelta(days=30),
                          max_by_role=((ADMIN, timedelta(hours=8)),))
    # The default cut to Admin's 8h is the role's maximum, and said so (not "the policy's default").
    assert terms(with_default) == AccessTerms(duration=timedelta(hours=8), source="max")
    assert terms(with_default).describe() == "for 8h from when it is applied (the role's maximum)"
    assert terms(with_default, role=EDITOR) == AccessTerms(duration=timedelta(days=30), source="default")
    assert terms(LIMITS) == AccessTerms(duration=timedelta(hours=8), source="max")
    assert terms(LIMITS).describe() == "for 8h from when it is applied (the role's maximum)"
    assert terms(with_default, role=EDITOR).describe() == "for 30d from when it is applied (the policy's default)"
    assert terms(Policy(source="p.yaml", max_by_role=((ADMIN, timedelta(hours=8)),)), role=EDITOR) == AccessTerms()


def test_an_end_time_of_now_is_refused_and_one_exactly_at_the_max_is_kept():
    with pytest.raises(AccessTermsRefused, match="is in the past"):
        terms(until=NOW)
    assert terms(until=NOW + timedelta(hours=8)).until == NOW + timedelta(hours=8)
    assert terms(duration="8h").duration == timedelta(hours=8)


def test_a_max_beyond_the_ceiling_in_a_policy_built_in_code_is_cut_to_the_ceiling():
    beyond = Policy(source="p.yaml", max_any_role=timedelta(days=400))
    with pytest.raises(AccessTermsRefused, match="longer than the ceiling of 365d"):
        terms(beyond, duration=timedelta(days=366))
    with pytest.raises(AccessTermsRefused, match="longer than the ceiling of 365d"):
        terms(beyond, until=NOW + timedelta(days=366))
    assert terms(beyond) == AccessTerms(duration=CEILING, source="max")


def test_the_approval_deadline_follows_wait_at_most():
    assert approval_deadline(NO_POLICY, NOW) == NOW + timedelta(hours=72)
    assert approval_deadline(Policy(source="p.yaml", wait_at_most=None), NOW) is None
    assert approval_deadline(Policy(source="p.yaml", wait_at_most=timedelta(days=2)), NOW) == NOW + timedelta(days=2)


# ------------------------------------------------------------------ approvers


@pytest.fixture(scope="module")
def people(template):
    """Emails of people in each standing, from the generated org; a connection to its sync."""
    org = new_org()
    workspace = next(w for w in org.shared_workspaces() if len(org.workspaces_named(w.display_name)) == 1)
    role_name = {role.id: role.name for role in org.roles.values()}
    enabled = [m for m in org.active_members() if not m.is_disabled]
    in_workspace = {user_id: role_name[m.role_id] for user_id, m in workspace.memberships.items()}
    chosen = {
        # An Organization Admin who is not an Admin of the workspace: approves through the org role.
        "org_admin": next(m for m in enabled if role_name[m.org_role_id] == "ORGANIZATION_ADMIN"
                          and in_workspace.get(m.ls_user_id) != "WORKSPACE_ADMIN"),
        "workspace_admin": next(m for m in enabled if in_workspace.get(m.ls_user_id) == "WORKSPACE_ADMIN"
                                and role_name[m.org_role_id] != "ORGANIZATION_ADMIN"),
        "editor": next(m for m in enabled if in_workspace.get(m.ls_user_id) == "WORKSPACE_USER"
                       and role_name[m.org_role_id] != "ORGANIZATION_ADMIN"),
        "disabled": next(m for m in org.active_members() if m.is_disabled),
    }
    emails = {kind: member.email for kind, member in chosen.items()}
    emails["invitee"] = org.pending_org_invites()[0].email
    ids = {kind: m.ls_user_id for kind, m in chosen.items()}
    ids.update({f"{kind}_identity": m.id for kind, m in chosen.items()})  # the org identity ids
    with template.connect(read_only=True) as conn:
        yield conn, workspace, emails, ids


def refusal(people, who, policy=NO_POLICY, *, requested_by="someone-else", grantee="editor", approving=True):
    conn, workspace, emails, ids = people
    standing = member_standing(conn, emails.get(who, who), workspace.id)
    request = Grantee(ids.get(grantee), emails.get(grantee), requested_by, workspace.display_name)
    return approver_refusal(policy, standing, request, approving=approving)


def test_workspace_admins_means_the_workspaces_admins_and_the_organization_admins(people):
    assert refusal(people, "workspace_admin") is None
    assert refusal(people, "org_admin") is None
    _, workspace, _, _ = people
    assert f"is neither an Admin of {workspace.display_name} nor" in refusal(people, "editor", grantee="disabled")


def test_org_admins_and_named_emails(people):
    _, _, emails, _ = people
    org_admins = Policy(source="p.yaml", approvers=ORG_ADMINS)
    assert refusal(people, "org_admin", org_admins) is None
    assert "is not an Organization Admin" in refusal(people, "workspace_admin", org_admins)
    named = Policy(source="p.yaml", approvers=NAMED_EMAILS, approver_emails=(emails["editor"].upper(),))
    assert refusal(people, "editor", named, grantee="workspace_admin") is None
    # The refusal names who may decide, so the one refused knows whom to ask.
    assert f"is not one of the approvers the policy names ({emails['editor'].upper()})" in refusal(
        people, "org_admin", named)


def test_disabled_members_invitees_and_strangers_never_approve(people):
    _, _, emails, _ = people
    everyone_named = Policy(source="p.yaml", approvers=NAMED_EMAILS,
                            approver_emails=(emails["disabled"], emails["invitee"], "nobody@example.com"))
    assert "disabled member" in refusal(people, "disabled", everyone_named)
    assert "only a pending invite" in refusal(people, "invitee", everyone_named)
    stranger = refusal(people, "nobody@example.com", everyone_named)
    assert "not a member of the organization" in stranger
    assert "check the approver's email (--by" in stranger and "sync again" in stranger  # the fix


def test_self_approval_compares_requester_and_grantee_case_insensitively(people):
    _, _, emails, _ = people
    asked_by_admin = refusal(people, "workspace_admin", requested_by=f"  {emails['workspace_admin'].swapcase()} ")
    assert asked_by_admin.startswith("self-approval:") and "asked for this request" in asked_by_admin
    for_admin = refusal(people, "workspace_admin", grantee="workspace_admin")
    assert for_admin.startswith("self-approval:") and "is for" in for_admin
    allowed = Policy(source="p.yaml", self_approval=True)
    assert refusal(people, "workspace_admin", allowed, grantee="workspace_admin") is None
    # Denying a request for yourself is not self-approval.
    assert refusal(people, "workspace_admin", grantee="workspace_admin", approving=False) is None


def test_a_requester_named_by_user_id_or_org_identity_id_is_the_same_person(people):
    # `request grant --requested-by` is free text: an approver who queued a request under their
    # user id (or org identity id, which --user also takes) asked for it as much as by email.
    _, _, _, ids = people
    for alias in (ids["workspace_admin"], ids["workspace_admin_identity"].upper(), f" {ids['workspace_admin']} "):
        refused = refusal(people, "workspace_admin", requested_by=alias)
        assert refused is not None and refused.startswith("self-approval:"), alias
        assert "asked for this request" in refused
    assert refusal(people, "workspace_admin", requested_by=ids["editor"]) is None


def test_a_recorded_duration_of_zero_is_a_duration_not_no_expiry():
    # A row written by anything but access_terms (an older version, a hand edit) must not turn a
    # time-bound grant into a permanent one: zero seconds ends at once.
    applied = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert terms_of({"access_duration_seconds": 0, "access_until": None}).expires_at(applied) == applied
    assert terms_of({"access_duration_seconds": None, "access_until": None}).expires_at(applied) is None


def test_a_recorded_end_read_in_another_time_zone_is_described_in_utc():
    # DuckDB hands access_until back in the process's zone: a refusal quoting a stored request's
    # terms (terms_of) reads the same in Paris as under the UTC daemon.
    in_paris = datetime(2026, 11, 29, 18, 0, tzinfo=ZoneInfo("Europe/Paris"))
    described = terms_of({"access_duration_seconds": None, "access_until": in_paris}).describe()
    assert described == "until 2026-11-29T17:00:00Z"


def standing(email="ada@example.com", user_ids=("u-ada",), **facts) -> MemberStanding:
    """An enabled Organization Admin (by default), without the database: for the rules alone."""
    known = {"identity_ids": (), "disabled": False, "pending_invite": False, "org_admin": True,
             "workspace_admin": False}
    return MemberStanding(email, tuple(user_ids), **{**known, **facts})


def test_a_request_for_the_approver_named_by_user_id_alone_is_self_approval():
    # A grant queued with --user <user id> records no email: the approver is still its grantee.
    for_ada = Grantee(user_id="u-ada", email=None, requested_by="bob@example.com", workspace_name="Prod")
    refused = approver_refusal(NO_POLICY, standing(), for_ada, approving=True)
    assert refused is not None and refused.startswith("self-approval:") and "the request is for" in refused
    for_bob = Grantee(user_id="u-bob", email=None, requested_by="bob@example.com", workspace_name="Prod")
    assert approver_refusal(NO_POLICY, standing(), for_bob, approving=True) is None


def test_an_email_two_members_share_never_approves():
    request = Grantee(user_id="u-bob", email="bob@example.com", requested_by="bob@example.com", workspace_name="Prod")
    refused = approver_refusal(NO_POLICY, standing(user_ids=("u-1", "u-2")), request, approving=True)
    assert refused == "2 org members have the email ada@example.com: an approver must be one person."


def test_a_request_for_the_approvers_email_in_another_case_or_form_is_self_approval():
    # The grantee recorded by email alone (no user id): compared as emails are, in any case and
    # composed or decomposed alike.
    for email in ("ADA@Example.com", "  ada@example.com "):
        for_ada = Grantee(user_id=None, email=email, requested_by="bob@example.com", workspace_name="Prod")
        refused = approver_refusal(NO_POLICY, standing(), for_ada, approving=True)
        assert refused is not None and "the request is for" in refused, email
    rene = Grantee(user_id=None, email="Rene\u0301@example.com", requested_by="bob@example.com", workspace_name="Prod")
    refused = approver_refusal(NO_POLICY, standing(email="ren\u00e9@example.com"), rene, approving=True)
    assert refused is not None and "the request is for" in refused

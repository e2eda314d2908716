"""Pure parts of the client: typed records, Retry-After, the rate limiter, settings."""

import email.utils
from datetime import datetime, timedelta, timezone

import pytest

from langsmith_access.langsmith import (
    EnrichedMember,
    LoginMethod,
    OrgMember,
    PendingInvite,
    Role,
    ScimGroup,
    UnexpectedResponseError,
    Workspace,
    WorkspaceMember,
)
from langsmith_access.langsmith.client import MAX_RETRY_AFTER_SECONDS
from langsmith_access.langsmith.pacing import CallStats, RateLimiter, retry_after_seconds
from langsmith_access.settings import Secret, Settings, SettingsError, check_api_key
from langsmith_access_tests.helpers import in_time_zone

# The payloads of ../shared/langsmith-api.md's examples.
ORG_MEMBER = {
    "id": "d2d2d2d2-0002-4002-8002-d2d2d2d2d2d2", "organization_id": "00000000-0000-4000-8000-000000000001",
    "tenant_id": None, "created_at": "2026-01-04T10:00:00Z", "user_id": "99999999-0002-4002-8002-999999999999",
    "ls_user_id": "c2c2c2c2-0002-4002-8002-c2c2c2c2c2c2", "read_only": False,
    "role_id": "11111111-1111-4111-8111-111111111111", "role_name": "Organization Admin",
    "access_scope": "organization", "email": "ada@example.com", "full_name": "Ada Lovelace",
    "display_name": "Ada Lovelace", "avatar_url": None, "linked_login_methods": [], "is_disabled": False,
    "org_role_id": "11111111-1111-4111-8111-111111111111", "org_role_name": "Organization Admin",
    "tenant_ids": ["aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"],
}


def test_org_member_reads_the_documented_payload():
    member = OrgMember.from_api(ORG_MEMBER)
    assert member.id == ORG_MEMBER["id"]
    assert member.ls_user_id == ORG_MEMBER["ls_user_id"]
    assert member.role_id == "11111111-1111-4111-8111-111111111111"
    assert member.created_at == datetime(2026, 1, 4, 10, tzinfo=timezone.utc)


def test_org_role_falls_back_to_org_role_id():
    payload = {**ORG_MEMBER, "role_id": None, "role_name": None}
    assert OrgMember.from_api(payload).role_id == "11111111-1111-4111-8111-111111111111"
    assert OrgMember.from_api(payload).role_name == "Organization Admin"


@pytest.mark.parametrize("field", ["id", "ls_user_id", "created_at"])
def test_missing_required_field_is_named(field):
    payload = {k: v for k, v in ORG_MEMBER.items() if k != field}
    with pytest.raises(UnexpectedResponseError, match=f"OrgMemberIdentity.{field}"):
        OrgMember.from_api(payload)


def test_wrong_types_are_refused_not_coerced():
    with pytest.raises(UnexpectedResponseError, match="is_disabled"):
        OrgMember.from_api({**ORG_MEMBER, "is_disabled": "no"})
    with pytest.raises(UnexpectedResponseError, match="created_at"):
        OrgMember.from_api({**ORG_MEMBER, "created_at": "yesterday"})
    with pytest.raises(UnexpectedResponseError, match="JSON object"):
        OrgMember.from_api(["not", "an", "object"])


def test_extra_fields_and_nulls_the_schema_allows_are_tolerated():
    member = OrgMember.from_api({**ORG_MEMBER, "brand_new_field": 1, "email": None, "full_name": None})
    assert member.email is None and member.full_name is None


def test_role_scope_inferred_when_missing():
    org_role = Role.from_api({"id": "1", "name": "ORGANIZATION_ADMIN", "display_name": "Organization Admin",
                              "description": "", "permissions": ["organization:manage"]})
    custom = Role.from_api({"id": "3", "name": "CUSTOM", "display_name": "Deployment Auditor",
                            "description": "Reads deployments.", "permissions": ["workspaces:read"],
                            "organization_id": "00000000-0000-4000-8000-000000000001"})
    assert org_role.access_scope == "organization"
    assert custom.access_scope == "workspace"
    with pytest.raises(UnexpectedResponseError, match="access_scope"):
        Role.from_api({"id": "1", "name": "X", "display_name": "X", "description": "",
                       "permissions": [], "access_scope": "galaxy"})


def test_workspace_shared_flag():
    base = {"id": "w", "created_at": "2026-01-01T00:00:00Z", "display_name": "W", "is_personal": False,
            "is_deleted": False}
    assert Workspace.from_api(base).is_shared
    assert not Workspace.from_api({**base, "is_personal": True}).is_shared
    assert not Workspace.from_api({**base, "is_deleted": True}).is_shared
    with pytest.raises(UnexpectedResponseError, match="is_deleted"):
        Workspace.from_api({k: v for k, v in base.items() if k != "is_deleted"})


def test_optional_lists_and_objects_tell_absent_from_empty_and_refuse_other_types():
    """The shared readers of records.py that access_records.py uses too: a list the API may
    leave out is None when absent (it does not say), () when empty; a nested object is {} when
    absent; any other type is refused, naming the field."""
    from langsmith_access.langsmith.access_records import SERVICE_KEY, Credential, OrganizationInfo

    base = {"id": "w", "created_at": "2026-01-01T00:00:00Z", "display_name": "W", "is_personal": False,
            "is_deleted": False}
    assert Workspace.from_api(base).permissions is None
    assert Workspace.from_api({**base, "permissions": None}).permissions is None
    assert Workspace.from_api({**base, "permissions": []}).permissions == ()
    assert Workspace.from_api({**base, "permissions": ["workspaces:read"]}).permissions == ("workspaces:read",)
    with pytest.raises(UnexpectedResponseError, match="TenantForUser.permissions: expected a list of strings"):
        Workspace.from_api({**base, "permissions": "workspaces:read"})

    key = {"id": "k", "short_key": "lsv2_sk_...abcd", "description": "ci"}
    assert Credential.from_api(key, SERVICE_KEY).workspace_names is None  # org-wide
    assert Credential.from_api({**key, "workspace_names": ["Alpha"]}, SERVICE_KEY).workspace_names == ("Alpha",)
    with pytest.raises(UnexpectedResponseError, match="APIKeyGetResponse.workspace_names"):
        Credential.from_api({**key, "workspace_names": [1]}, SERVICE_KEY)

    info = OrganizationInfo.from_api({"id": "o", "permissions": ["organization:read"],
                                      "config": {"can_use_abac": True, "plan_tier": "enterprise"}})
    assert (info.permissions, info.flags, info.plan_tier) == (("organization:read",), {"can_use_abac": True}, "enterprise")
    bare = OrganizationInfo.from_api({"id": "o"})
    assert (bare.permissions, bare.flags, bare.plan_tier) == (None, {}, None)
    with pytest.raises(UnexpectedResponseError, match="OrganizationInfo.config: expected an object"):
        OrganizationInfo.from_api({"id": "o", "config": ["can_use_abac"]})


def test_enriched_member_pending_and_active():
    pending = EnrichedMember.from_api({"id": "p", "email": "new@example.com", "is_pending": True,
                                       "ls_user_id": "", "role_id": "r"})
    assert pending.is_pending and pending.ls_user_id is None
    with pytest.raises(UnexpectedResponseError, match="ls_user_id"):
        EnrichedMember.from_api({"id": "a", "email": "a@example.com", "is_pending": False})
    # Withheld (anonymity-restricted) as Go's zero value: unknown, as when left out, so the
    # sync keeps the previous sync's values instead of reading "" as a new email or name.
    withheld = EnrichedMember.from_api({"id": "a", "ls_user_id": "u", "email": "", "display_name": ""})
    assert (withheld.email, withheld.display_name) == (None, None)


def test_a_string_field_of_another_type_or_an_empty_id_is_refused_naming_field_and_record():
    with pytest.raises(UnexpectedResponseError,
                       match=r"^OrgMemberIdentity.email: expected a string, got int \(record id 'd2d2d2d2-0002"):
        OrgMember.from_api({**ORG_MEMBER, "email": 5})
    with pytest.raises(UnexpectedResponseError, match="OrgMemberIdentity.ls_user_id: expected a non-empty string"):
        OrgMember.from_api({**ORG_MEMBER, "ls_user_id": ""})
    with pytest.raises(UnexpectedResponseError, match="Role.permissions: expected a list of strings"):
        Role.from_api({"id": "1", "name": "X", "display_name": "X", "description": "", "permissions": ["a", 1]})
    with pytest.raises(UnexpectedResponseError, match="OrgMemberIdentity.linked_login_methods: expected a list"):
        OrgMember.from_api({**ORG_MEMBER, "linked_login_methods": {"provider": "email"}})


def test_timestamps_are_read_as_utc_and_an_empty_optional_one_as_not_said():
    east = OrgMember.from_api({**ORG_MEMBER, "created_at": "2026-01-04T12:00:00+02:00"}).created_at
    naive = OrgMember.from_api({**ORG_MEMBER, "created_at": "2026-01-04T10:00:00"}).created_at
    # RFC 3339, the spec's date-time: "t" and "z" may be small letters; fractions of any length.
    small = OrgMember.from_api({**ORG_MEMBER, "created_at": "2026-01-04t10:00:00z"}).created_at
    nanos = OrgMember.from_api({**ORG_MEMBER, "created_at": "2026-01-04T10:00:00.000000999Z"}).created_at
    for at in (east, naive, small, nanos):
        assert at == datetime(2026, 1, 4, 10, tzinfo=timezone.utc) and at.utcoffset() == timedelta(0)
    assert ScimGroup.from_api({"name": "LS:Research", "created_at": ""}).created_at is None
    with pytest.raises(UnexpectedResponseError, match="OrgMemberIdentity.created_at: expected an ISO 8601"):
        OrgMember.from_api({**ORG_MEMBER, "created_at": ""})


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"])
def test_a_timestamp_that_is_no_moment_in_utc_is_refused_naming_the_field(moment):
    """Go's zero time in a zone east of UTC (or the last day of year 9999 west of it) is no
    date-time in UTC: refused as a bad answer, never Python's OverflowError out of the parser."""
    with pytest.raises(UnexpectedResponseError, match="OrgMemberIdentity.created_at: .* is not an ISO 8601"):
        OrgMember.from_api({**ORG_MEMBER, "created_at": moment})
    with pytest.raises(UnexpectedResponseError, match="orgs.OrgMemberEnriched.created_at"):
        EnrichedMember.from_api({"id": "a", "ls_user_id": "u", "created_at": moment})


def test_login_methods_read_either_name_of_the_provisioning_method_and_empty_values_as_none():
    member = OrgMember.from_api({**ORG_MEMBER, "linked_login_methods": [
        {"provider": "supabase:sso", "provisioning_method": "saml:jit"},
        {"provider": "custom-oidc", "provisioning": "scim"},  # the enriched route's name for it
        {"provider": "", "provisioning_method": ""},
        {"provider": "supabase:non-sso", "provisioning_method": None, "username": " octocat "},
        {"provider": "email", "username": "  "},
    ]})
    assert member.login_methods == (LoginMethod("supabase:sso", "saml:jit"), LoginMethod("custom-oidc", "scim"),
                                    LoginMethod(None, None), LoginMethod("supabase:non-sso", None, "octocat"),
                                    LoginMethod("email", None))


def test_a_pending_invite_reads_its_org_role_from_either_field():
    invite = PendingInvite.from_api({
        "id": "e1e1e1e1-0009-4009-8009-e1e1e1e1e1e1", "email": "new@example.com", "created_at": "2026-01-08T10:00:00Z",
        "org_role_id": "44444444-4444-4444-8444-444444444444", "org_role_name": "Organization User",
        "workspace_ids": ["aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"],
        "workspace_role_id": "22222222-2222-4222-8222-222222222222",
    })
    assert (invite.role_id, invite.role_name) == ("44444444-4444-4444-8444-444444444444", "Organization User")
    assert invite.workspace_ids == ("aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa",)
    assert invite.workspace_role_id == "22222222-2222-4222-8222-222222222222"


def test_a_workspace_member_row_of_another_workspace_is_refused():
    row = {"id": "f1f1f1f1-0001-4001-8001-f1f1f1f1f1f1", "tenant_id": "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa",
           "created_at": "2026-01-04T10:00:00Z", "ls_user_id": "c2c2c2c2-0002-4002-8002-c2c2c2c2c2c2",
           "role_id": "33333333-3333-4333-8333-333333333333", "role_name": "Deployment Auditor"}
    assert WorkspaceMember.from_api(row, "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa").role_id == row["role_id"]
    assert WorkspaceMember.from_api({**row, "tenant_id": None}, "bbbbbbbb").workspace_id == "bbbbbbbb"
    # Named by record and field, as every other refusal of a row.
    with pytest.raises(UnexpectedResponseError,
                       match="^MemberIdentity.tenant_id: asked for workspace bbbbbbbb, got a row of aaaaaaaa-1111"):
        WorkspaceMember.from_api(row, "bbbbbbbb")


def test_a_workspace_member_row_naming_its_workspace_in_capitals_is_of_that_workspace():
    """A UUID in capitals is the same UUID: the row is read, under the id the caller asked for."""
    asked = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"
    row = {"id": "f1f1f1f1-0001-4001-8001-f1f1f1f1f1f1", "tenant_id": asked.upper(),
           "created_at": "2026-01-04T10:00:00Z", "ls_user_id": "c2c2c2c2-0002-4002-8002-c2c2c2c2c2c2"}
    assert WorkspaceMember.from_api(row, asked).workspace_id == asked


def test_every_id_a_record_reads_is_in_langsmiths_spelling_whatever_the_answer_spelt_it_in():
    """A UUID in capitals, braces or without hyphens is that UUID: each record keeps it lower
    case and hyphenated, so ids compare, store and join as one. An id that is no UUID is kept as
    sent; an id of the wrong type or a required one left empty is refused, naming the field."""
    spellings = (str.upper, lambda u: "{" + u.upper() + "}", lambda u: u.replace("-", ""))
    user, role, workspace = ORG_MEMBER["ls_user_id"], ORG_MEMBER["role_id"], "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"
    for spell in spellings:
        ids = {key: spell(value) for key, value in ORG_MEMBER.items() if key.endswith("id") and value}
        member = OrgMember.from_api({**ORG_MEMBER, **ids})
        assert (member.id, member.ls_user_id, member.user_id, member.role_id) == (
            ORG_MEMBER["id"], user, ORG_MEMBER["user_id"], role)
        assert OrgMember.from_api({**ORG_MEMBER, **ids, "role_id": None}).role_id == role  # org_role_id
        assert Role.from_api({"id": spell(role), "name": "ORGANIZATION_ADMIN", "display_name": "Admin",
                              "permissions": [], "organization_id": spell(ORG_MEMBER["organization_id"])}
                             ) == Role.from_api({"id": role, "name": "ORGANIZATION_ADMIN", "display_name": "Admin",
                                                 "permissions": [], "organization_id": ORG_MEMBER["organization_id"]})
        listed = Workspace.from_api({"id": spell(workspace), "created_at": "2026-01-01T00:00:00Z", "display_name": "W",
                                     "is_personal": False, "is_deleted": False, "role_id": spell(role),
                                     "organization_id": spell(ORG_MEMBER["organization_id"])})
        assert (listed.id, listed.role_id, listed.organization_id) == (workspace, role, ORG_MEMBER["organization_id"])
        invite = PendingInvite.from_api({"id": spell(user), "email": "new@example.com", "created_at": "2026-01-08T10:00:00Z",
                                         "org_role_id": spell(role), "workspace_ids": [spell(workspace)],
                                         "workspace_role_id": spell(role)})
        assert (invite.id, invite.role_id, invite.workspace_ids, invite.workspace_role_id) == (
            user, role, (workspace,), role)
        row = WorkspaceMember.from_api({"id": spell(user), "tenant_id": spell(workspace), "ls_user_id": spell(user),
                                        "role_id": spell(role), "org_role_id": spell(role),
                                        "created_at": "2026-01-04T10:00:00Z"}, spell(workspace))
        assert (row.id, row.workspace_id, row.ls_user_id, row.role_id, row.org_role_id) == (
            user, workspace, user, role, role)
        enriched = EnrichedMember.from_api({"id": spell(user), "ls_user_id": spell(user), "role_id": spell(role),
                                            "workspace_memberships": [{"workspace_id": spell(workspace),
                                                                       "role_id": spell(role)}]})
        assert (enriched.id, enriched.ls_user_id, enriched.role_id) == (user, user, role)
        assert (enriched.workspace_memberships[0].workspace_id, enriched.workspace_memberships[0].role_id) == (
            workspace, role)
    # A capital in any one part of a UUID is read as its small letter.
    for part in range(5):
        parts = ["00000000", "0000", "4000", "8000", "000000000000"]
        parts[part] = "b" + parts[part][1:]
        lower = "-".join(parts)
        assert Role.from_api({"id": lower.upper(), "name": "X", "display_name": "X", "permissions": []}).id == lower
    assert Role.from_api({"id": "r-admin", "name": "X", "display_name": "X", "permissions": []}).id == "r-admin"
    with pytest.raises(UnexpectedResponseError, match=r"^OrgMemberIdentity.role_id: expected a string, got int"):
        OrgMember.from_api({**ORG_MEMBER, "role_id": 7})
    with pytest.raises(UnexpectedResponseError, match=r"^MemberIdentity.id: expected a non-empty string"):
        WorkspaceMember.from_api({"id": "", "ls_user_id": user, "created_at": "2026-01-04T10:00:00Z"}, workspace)


def test_empty_role_ids_and_names_are_not_said_and_a_role_without_a_display_name_shows_its_name():
    member = EnrichedMember.from_api({"id": "a", "ls_user_id": "u", "role_id": "", "workspace_memberships": [
        {"workspace_id": "ws-1", "role_id": ""}]})
    assert member.role_id is None and member.workspace_memberships[0].role_id is None
    role = Role.from_api({"id": "1", "name": "WORKSPACE_VIEWER", "display_name": "", "description": None,
                          "permissions": []})
    assert (role.display_name, role.description) == ("WORKSPACE_VIEWER", "")


def test_a_member_row_that_does_not_say_whether_it_is_disabled_is_not():
    assert OrgMember.from_api({k: v for k, v in ORG_MEMBER.items() if k != "is_disabled"}).is_disabled is False


def _retry_after_seconds(raw, now=None):
    return retry_after_seconds(raw, longest=MAX_RETRY_AFTER_SECONDS, now=now)


def test_retry_after_seconds_and_http_date():
    assert _retry_after_seconds("3") == 3.0
    assert _retry_after_seconds(None) is None
    assert _retry_after_seconds("soon") is None
    assert _retry_after_seconds("100000") == 120.0  # capped
    # Not a number of seconds to sleep (time.sleep refuses NaN; infinity is no wait either).
    for not_a_wait in ("nan", "inf", "-inf", "  "):
        assert _retry_after_seconds(not_a_wait) is None, not_a_wait
    # An HTTP date counts from the moment the answer is read (a fixed clock here).
    now = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)
    in_five_seconds = email.utils.format_datetime(datetime(2026, 3, 1, 12, 0, 5, tzinfo=timezone.utc), usegmt=True)
    assert _retry_after_seconds(in_five_seconds, now=now) == 4.75
    fifty_seconds_ago = email.utils.format_datetime(now - timedelta(seconds=50), usegmt=True)
    assert _retry_after_seconds(fifty_seconds_ago, now=now) == 0.0
    in_a_day = email.utils.format_datetime(now + timedelta(days=1), usegmt=True)
    assert _retry_after_seconds(in_a_day, now=now) == 120.0  # capped
    # Without a time zone, an HTTP date is GMT.
    assert _retry_after_seconds("Sun, 01 Mar 2026 12:00:10", now=now) == 9.75


def test_rate_limiter_never_exceeds_the_rate_in_any_minute_or_any_ten_seconds():
    now = [0.0]
    sent = []

    def sleep(seconds):
        now[0] += seconds

    limiter = RateLimiter(600, clock=lambda: now[0], sleep=sleep)
    waited = []
    for _ in range(2000):
        waited.append(limiter.acquire())
        sent.append(now[0])
    # Any 60-second window holds at most the budget, any 10-second window at most half of it
    # (LangSmith counts 2000 a minute and 1000 per 10 s).
    for length, budget in ((60, 600), (10, 300)):
        start = 0
        for end, t in enumerate(sent):
            while sent[start] <= t - length:
                start += 1
            assert end - start + 1 <= budget, (length, t)
    # Within the budget nothing waits; past it, each request waits for a slot: half a minute's
    # budget goes at once, the other half 10 s later, and 2,000 requests take three full minutes.
    assert sent[299] == 0.0 and sent[300] == 10.0
    assert sent[599] == 10.0 and sent[600] == 60.0
    assert sent[-1] == 180.0
    # Each request says how long it waited (the run's wait_seconds counts it): the slept time.
    assert waited[299] == 0.0 and waited[300] == 10.0 and waited[600] == 50.0
    assert sum(waited) == sum(later - earlier for earlier, later in zip([0.0, *sent], sent))


def send_times(requests_per_minute: int, requests: int) -> list[float]:
    """When each of ``requests`` requests goes under a limiter of ``requests_per_minute``, on a
    clock that moves only by the limiter's sleeps."""
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    limiter = RateLimiter(requests_per_minute, clock=lambda: now[0], sleep=sleep)
    sent = []
    for _ in range(requests):
        limiter.acquire()
        sent.append(now[0])
    return sent


def test_a_rate_limiter_of_one_request_a_minute_sends_one_a_minute():
    # The smallest budget LANGSMITH_ACCESS_REQUESTS_PER_MINUTE takes is kept to the letter.
    assert send_times(1, 3) == [0.0, 60.0, 120.0]


def test_an_odd_budget_sends_at_most_half_of_it_in_any_ten_seconds():
    # Half of 7 is 3.5: no 10 seconds may hold 4 requests (rounded up, 4 went at once), so 3 go
    # at once, 3 more 10 s later, the 7th after another 10 s, and the 8th once the minute is over.
    assert send_times(7, 8) == [0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 20.0, 60.0]


def test_the_time_waited_is_reported_to_the_millisecond():
    # sync_runs records wait_seconds from the snapshot: a run that waited 0.25 s in backoff and
    # 1.0004 s for the limiter waited 1.25 s, not "1" nor "0".
    stats = CallStats()
    stats.add(wait_seconds=0.25, retries=1)
    stats.add(wait_seconds=1.0004, calls=2)
    assert stats.snapshot() == {"calls": 2, "retries": 1, "rate_limited": 0, "server_errors": 0,
                                "connection_errors": 0, "wait_seconds": 1.25}


@pytest.mark.parametrize("rate", [0, -1])
def test_a_rate_limiter_without_a_positive_rate_is_refused(rate):
    """Never read as "one request a minute": a rate of 0 or less is a mistake, said at once."""
    with pytest.raises(ValueError, match="requests_per_minute must be positive"):
        RateLimiter(rate)


def test_secret_never_shows_itself():
    secret = Secret("lsv2_sk_supersecret")
    assert "supersecret" not in repr(secret) + str(secret) + f"{secret}" + repr([secret])
    settings = Settings.from_env({"LANGSMITH_API_KEY": "lsv2_sk_supersecret",
                                  "LANGSMITH_ORGANIZATION_ID": "00000000-0000-4000-8000-000000000001"})
    assert "supersecret" not in repr(settings) + repr(settings.client())
    with pytest.raises(TypeError):
        import pickle
        pickle.dumps(secret)


def test_personal_token_and_bad_org_id_are_refused_with_a_reason():
    with pytest.raises(SettingsError, match="personal access token.*lsv2_sk_"):
        check_api_key("lsv2_pt_abc")
    with pytest.raises(SettingsError, match="service key"):
        check_api_key("sk-something")
    settings = Settings.from_env({"LANGSMITH_API_KEY": "lsv2_sk_x", "LANGSMITH_ORGANIZATION_ID": "not-a-uuid"})
    with pytest.raises(SettingsError, match="LANGSMITH_ORGANIZATION_ID must be the organization's UUID"):
        settings.client()
    with pytest.raises(SettingsError, match="LANGSMITH_API_KEY is not set"):
        Settings.from_env({}).client()
    with pytest.raises(SettingsError, match="LANGSMITH_ENDPOINT"):
        Settings.from_env({"LANGSMITH_ENDPOINT": "ftp://x"})
    with pytest.raises(SettingsError, match="LANGSMITH_ACCESS_MAX_SHRINK_SHARE"):
        Settings.from_env({"LANGSMITH_ACCESS_MAX_SHRINK_SHARE": "1.5"})


def test_defaults():
    settings = Settings.from_env({})
    assert settings.endpoint == "https://api.smith.langchain.com"
    assert str(settings.duckdb_path) == "data/langsmith_access.duckdb"
    assert settings.requests_per_minute < 2000


def test_the_backoff_doubles_from_half_a_second_and_stops_growing_at_thirty():
    from types import SimpleNamespace

    from langsmith_access.langsmith.client import LangSmithClient

    class Highest:  # the jitter at its top: the whole ceiling
        def uniform(self, low, high):
            return high

    waits = [LangSmithClient._backoff(SimpleNamespace(_rng=Highest()), attempt)  # type: ignore[arg-type]
             for attempt in (1, 2, 3, 7, 8, 20)]
    assert waits == [0.5, 1.0, 2.0, 30.0, 30.0, 30.0]


@pytest.mark.parametrize(("headers", "wait"), [
    ({"Retry-After-Ms": "1500", "Retry-After": "9"}, 1.5),  # milliseconds first
    ({"Retry-After-Ms": "0"}, 0.0),
    ({"Retry-After-Ms": "99999999"}, 120.0),  # capped as Retry-After is
    ({"Retry-After-Ms": "-5", "Retry-After": "9"}, 9.0),
    ({"Retry-After-Ms": "nan", "Retry-After": "9"}, 9.0),
    ({"Retry-After-Ms": "inf", "Retry-After": "9"}, 9.0),  # no number of milliseconds either
    ({}, None),
])
def test_the_servers_retry_hint_prefers_milliseconds_and_is_capped(headers, wait):
    from types import SimpleNamespace

    from langsmith_access.langsmith.client import _server_retry_hint

    assert _server_retry_hint(SimpleNamespace(headers=headers)) == wait  # type: ignore[arg-type]


def test_a_429_without_a_hint_waits_out_the_rest_of_the_window_the_request_fell_in():
    from types import SimpleNamespace

    from langsmith_access.langsmith.client import LangSmithClient

    client = SimpleNamespace(settings=SimpleNamespace(rate_limit_window_seconds=60.0), _clock=lambda: 100.0)
    throttled = SimpleNamespace(status_code=429, headers={})
    # Sent at 90 s, answered at 100 s: the window began before 90 s and is over by 150 s.
    assert LangSmithClient._retry_wait(client, throttled, 90.0) == 50.0  # type: ignore[arg-type]
    assert LangSmithClient._retry_wait(client, throttled, 10.0) == 0.0  # type: ignore[arg-type]
    assert LangSmithClient._retry_wait(client, SimpleNamespace(status_code=503, headers={}), 90.0) is None  # type: ignore[arg-type]
    assert LangSmithClient._retry_wait(client, SimpleNamespace(status_code=404, headers={"Retry-After": "5"}),  # type: ignore[arg-type]
                                       90.0) is None


def test_a_timestamp_without_an_offset_is_utc_whatever_the_machines_time_zone():
    """Naive means UTC (records.py), not the local time of the machine the sync runs on."""
    with in_time_zone():
        at = OrgMember.from_api({**ORG_MEMBER, "created_at": "2026-01-04T10:00:00"}).created_at
    assert at == datetime(2026, 1, 4, 10, tzinfo=timezone.utc)


def test_each_record_keeps_its_documented_fields_and_refuses_rows_without_required_ones():
    workspace = Workspace.from_api({"id": "w", "created_at": "2026-01-01T00:00:00Z", "display_name": "W",
                                    "is_personal": False, "is_deleted": False,
                                    "role_id": "11111111-1111-4111-8111-111111111111", "role_name": "Admin"})
    assert (workspace.role_id, workspace.role_name) == ("11111111-1111-4111-8111-111111111111", "Admin")
    assert OrgMember.from_api(ORG_MEMBER).user_id == "99999999-0002-4002-8002-999999999999"
    row = {"id": "f1", "tenant_id": None, "created_at": "2026-01-04T10:00:00Z", "ls_user_id": "u",
           "org_role_id": "11111111-1111-4111-8111-111111111111", "is_disabled": True}
    member = WorkspaceMember.from_api(row, "w")
    assert (member.org_role_id, member.is_disabled) == ("11111111-1111-4111-8111-111111111111", True)
    enriched = EnrichedMember.from_api({
        "id": "a", "ls_user_id": "u", "created_at": "2026-01-04T12:00:00+02:00",
        "workspace_memberships": [{"workspace_id": "ws-1", "workspace_name": "Alpha"}]})
    assert enriched.created_at == datetime(2026, 1, 4, 10, tzinfo=timezone.utc)
    assert enriched.workspace_memberships[0].workspace_name == "Alpha"
    # Any other type is refused, an empty one too: never read as "in no workspace".
    for not_a_list in ({"workspace_id": "ws-1"}, {}, "", 0, False):
        with pytest.raises(UnexpectedResponseError,
                           match="orgs.OrgMemberEnriched.workspace_memberships: expected a list"):
            EnrichedMember.from_api({"id": "a", "ls_user_id": "u", "workspace_memberships": not_a_list})
    assert EnrichedMember.from_api({"id": "a", "ls_user_id": "u", "workspace_memberships": None}
                                   ).workspace_memberships == ()
    with pytest.raises(UnexpectedResponseError, match="orgs.SCIMGroup.name: expected a string"):
        ScimGroup.from_api({"created_at": "2026-01-04T10:00:00Z"})
    with pytest.raises(UnexpectedResponseError, match="OrgPendingIdentity.email: expected a string"):
        PendingInvite.from_api({"id": "e1", "created_at": "2026-01-08T10:00:00Z"})


ROLE = {"id": "33333333-3333-4333-8333-333333333333", "name": "CUSTOM", "display_name": "Deployment Auditor",
        "description": "Reads deployments.", "permissions": ["workspaces:read"]}
WORKSPACE = {"id": "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa", "created_at": "2026-01-01T00:00:00Z", "display_name": "W",
             "is_personal": False, "is_deleted": False}
INVITE = {"id": "e1e1e1e1-0009-4009-8009-e1e1e1e1e1e1", "email": "new@example.com",
          "created_at": "2026-01-08T10:00:00Z"}
WORKSPACE_ROW = {"id": "f1f1f1f1-0001-4001-8001-f1f1f1f1f1f1", "ls_user_id": "c2c2c2c2-0002-4002-8002-c2c2c2c2c2c2",
                 "created_at": "2026-01-04T10:00:00Z"}


@pytest.mark.parametrize(("parse", "payload", "field", "record"), [
    (Role.from_api, ROLE, "name", "Role"),  # CUSTOM or a built-in name: how a role's scope is told
    (Role.from_api, ROLE, "display_name", "Role"),
    (Role.from_api, ROLE, "permissions", "Role"),
    (Workspace.from_api, WORKSPACE, "display_name", "TenantForUser"),
    (Workspace.from_api, WORKSPACE, "created_at", "TenantForUser"),
    (Workspace.from_api, WORKSPACE, "is_personal", "TenantForUser"),
    (PendingInvite.from_api, INVITE, "created_at", "OrgPendingIdentity"),
    (lambda row: WorkspaceMember.from_api(row, "w"), WORKSPACE_ROW, "created_at", "MemberIdentity"),
    (lambda row: WorkspaceMember.from_api(row, "w"), WORKSPACE_ROW, "ls_user_id", "MemberIdentity"),
])
def test_a_field_the_spec_requires_is_refused_when_left_out_or_null(parse, payload, field, record):
    """The spec's required fields (langsmith-openapi-subset.json): a row without one is no row of
    that record, refused naming it, never read with a made-up value ("", False, now)."""
    parse(payload)
    for missing in ({k: v for k, v in payload.items() if k != field}, {**payload, field: None}):
        with pytest.raises(UnexpectedResponseError, match=rf"^{record}\.{field}: expected"):
            parse(missing)


def test_every_optional_field_a_record_keeps_is_read_as_sent():
    role = Role.from_api({**ROLE, "is_restricted": True})
    assert role.is_restricted is True
    assert Role.from_api({**ROLE, "is_restricted": False}).is_restricted is False
    assert Role.from_api(ROLE).is_restricted is None  # older LangSmith: not said, not "unrestricted"
    assert Workspace.from_api({**WORKSPACE, "tenant_handle": "alpha"}).tenant_handle == "alpha"
    assert OrgMember.from_api(ORG_MEMBER).display_name == "Ada Lovelace"
    row = WorkspaceMember.from_api({**WORKSPACE_ROW, "email": "ada@example.com", "full_name": "Ada Lovelace",
                                    "role_name": "Deployment Auditor"}, "w")
    assert (row.email, row.full_name, row.role_name) == ("ada@example.com", "Ada Lovelace", "Deployment Auditor")
    enriched = EnrichedMember.from_api({
        "id": "a", "ls_user_id": "u", "is_disabled": True, "role_name": "Organization User",
        "workspace_memberships": [{"workspace_id": "ws-1", "role_name": "Editor"}],
        "linked_login_methods": [{"provider": "oidc", "provisioning": "scim"}],
        "scim_groups": [{"name": "LS:Research", "created_at": "2026-01-04T10:00:00Z"}]})
    assert (enriched.is_disabled, enriched.role_name) == (True, "Organization User")
    assert enriched.workspace_memberships[0].role_name == "Editor"
    assert enriched.login_methods == (LoginMethod("oidc", "scim"),)
    assert enriched.scim_groups == (ScimGroup("LS:Research", datetime(2026, 1, 4, 10, tzinfo=timezone.utc)),)


def test_an_answer_that_is_no_json_object_is_refused_naming_the_record_it_should_be():
    with pytest.raises(UnexpectedResponseError, match=r"^expected a JSON object for OrgMemberIdentity, got list$"):
        OrgMember.from_api([ORG_MEMBER])
    with pytest.raises(UnexpectedResponseError,
                       match=r"^expected a JSON object for orgs.WorkspaceMembership, got str$"):
        EnrichedMember.from_api({"id": "a", "ls_user_id": "u", "workspace_memberships": ["ws-1"]})


def test_a_role_keeps_its_organization_and_an_unknown_scope_is_refused_showing_it():
    custom = Role.from_api({**ROLE, "organization_id": ORG_MEMBER["organization_id"]})
    assert custom.organization_id == ORG_MEMBER["organization_id"]
    assert Role.from_api({**ROLE, "organization_id": None}).organization_id is None  # a built-in role
    with pytest.raises(UnexpectedResponseError,
                       match=r"^Role.access_scope: expected 'organization' or 'workspace', got 'tenant'$"):
        Role.from_api({**ROLE, "access_scope": "tenant"})


def test_a_member_rows_email_and_name_are_read_each_from_its_own_field():
    member = OrgMember.from_api({**ORG_MEMBER, "full_name": "Augusta Ada King", "display_name": "Ada"})
    assert (member.email, member.full_name, member.display_name) == ("ada@example.com", "Augusta Ada King", "Ada")


def test_a_workspace_member_row_that_does_not_say_whether_it_is_disabled_is_not():
    assert WorkspaceMember.from_api(WORKSPACE_ROW, "w").is_disabled is False
    assert WorkspaceMember.from_api({**WORKSPACE_ROW, "is_disabled": True}, "w").is_disabled is True


def test_an_id_that_is_no_uuid_is_kept_as_sent_capitals_and_all():
    assert Workspace.from_api({**WORKSPACE, "id": "WS-Alpha"}).id == "WS-Alpha"
    assert Role.from_api({**ROLE, "id": "Role-X"}).id == "Role-X"


def test_an_enriched_row_is_an_active_member_unless_it_says_it_is_pending():
    active = EnrichedMember.from_api({"id": "a", "ls_user_id": "u"})
    assert active.is_pending is False
    # An active row without its user key names the row it came from.
    with pytest.raises(UnexpectedResponseError,
                       match=r"^orgs.OrgMemberEnriched.ls_user_id: missing on an active member \(record id 'a'\)$"):
        EnrichedMember.from_api({"id": "a", "email": "a@example.com"})
    # A membership without its workspace is no grant: refused, never read as a workspace "".
    with pytest.raises(UnexpectedResponseError, match=r"^orgs.WorkspaceMembership.workspace_id: expected a string"):
        EnrichedMember.from_api({"id": "a", "ls_user_id": "u", "workspace_memberships": [{"role_id": "r"}]})

"""What the policy decides about one request. Pure: a ``Policy``, ids and facts in, answers out.

- ``needs_approval``: does a grant of this role in this workspace wait for an approver?
- ``access_terms``: how long a grant lasts (``--duration`` / ``--until``, else the policy's
  default, else the role's max, else no expiry), or why it is refused; ``expires_at`` turns the
  terms into a time once the grant is applied (the clock starts then).
- ``approval_deadline``: when a request still awaiting approval becomes ``approval_expired``.
- ``approver_refusal``: why this person may not approve (or deny) this request, or None.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from langsmith_access.governance.durations import CEILING, DurationError, format_duration, parse_duration
from langsmith_access.governance.policy import NAMED_EMAILS, ORG_ADMINS, WORKSPACE_ADMINS, Policy
from langsmith_access.quoting import shown
from langsmith_access.store.directory import MemberStanding
from langsmith_access.store.queries import as_uuid, typed_email


class AccessTermsRefused(ValueError):
    """A requested duration or end time the policy (or the 365-day ceiling) does not allow."""


def needs_approval(policy: Policy, role_id: str, workspace_id: str) -> bool:
    """A grant needs approval when its role matches ``required`` and (``workspaces`` is absent
    or lists its workspace). Revokes never do: callers ask only for grants."""
    role_matches = policy.approval_any_role or role_id in policy.approval_role_ids
    workspace_matches = policy.approval_workspace_ids is None or workspace_id in policy.approval_workspace_ids
    return role_matches and workspace_matches


@dataclass(frozen=True)
class AccessTerms:
    """How long a grant lasts once applied: a duration, or an end time, or neither (no expiry)."""

    duration: timedelta | None = None
    until: datetime | None = None
    source: str = "none"  # 'duration' | 'until' | 'default' | 'max' | 'none': where they came from

    def expires_at(self, applied_at: datetime) -> datetime | None:
        if self.until is not None:
            return self.until
        if self.duration is not None:
            # In UTC: DuckDB hands a stored time back in the host's zone (a ZoneInfo), and Python
            # adds to such a time by the wall clock, so 1d across a clock change would be 23h or 25h.
            return applied_at.astimezone(UTC) + self.duration
        return None

    def describe(self) -> str:
        if self.until is not None:
            return f"until {self.until.astimezone(UTC).isoformat().replace('+00:00', 'Z')}"
        if self.duration is not None:
            origin = {"default": " (the policy's default)", "max": " (the role's maximum)"}.get(self.source, "")
            return f"for {format_duration(self.duration)} from when it is applied{origin}"
        return "with no expiry"


def utc_designator(text: str) -> str:
    """``2026-12-01T18:00z`` as ``...Z``: RFC 3339 allows the lower-case z, which Python's
    ``fromisoformat`` refuses; refused, it read as a time with no zone at all."""
    return text[:-1] + "Z" if text.endswith("z") and text[-2:-1].isdigit() else text


def parse_until(text: str | datetime) -> datetime:
    """An end time as ``--until`` takes it: ISO 8601 with a time zone (``2026-12-01T18:00Z``)."""
    if isinstance(text, datetime):
        moment = text
    elif not isinstance(text, str):  # from Python: a date (no time, no zone), a number
        raise AccessTermsRefused(
            f"--until {shown(str(text))} ({type(text).__name__}) is not a time: give a datetime with a time "
            "zone, e.g. datetime(2026, 12, 1, 18, 0, tzinfo=UTC), or text such as 2026-12-01T18:00Z."
        )
    else:
        try:
            moment = datetime.fromisoformat(utc_designator(text.strip()))
        except ValueError:
            raise AccessTermsRefused(
                f"--until {text!r} is not a time: write ISO 8601 with a time zone, e.g. 2026-12-01T18:00Z."
            ) from None
    if moment.tzinfo is None:
        raise AccessTermsRefused(
            f"--until {text!s} has no time zone: add one (Z for UTC, or +02:00), e.g. 2026-12-01T18:00Z."
        )
    _refuse_a_wall_time_that_is_not_one_moment(moment)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # the first or last day datetime knows, shifted past it by the offset
        raise AccessTermsRefused(
            f"--until {text!s} is out of range in UTC: give a time within the next year, e.g. 2026-12-01T18:00Z."
        ) from None


def _refuse_a_wall_time_that_is_not_one_moment(moment: datetime) -> None:
    """From Python, a datetime in a zone with daylight saving time (``ZoneInfo``) may name a wall
    time the clocks skip (2027-03-14 02:30 in New York) or show twice (2027-11-07 01:30): either
    would silently become one of two instants an hour apart, so the grant would end at a time
    nobody chose. Text is never refused here: ISO 8601 carries a fixed offset, one instant."""
    first, second = moment.replace(fold=0), moment.replace(fold=1)
    try:
        if first.utcoffset() == second.utcoffset():
            return
        earlier, later = sorted((first.astimezone(UTC), second.astimezone(UTC)))
    except OverflowError:  # the first or last day datetime knows: out of range, said below
        return
    wall = f"{moment.replace(tzinfo=None).isoformat(sep=' ')} ({moment.tzinfo})"
    skipped = earlier.astimezone(moment.tzinfo).replace(tzinfo=None) != moment.replace(tzinfo=None)
    what = "does not exist there (the clocks go forward over it)" if skipped else \
        "happens twice there (the clocks go back over it)"
    raise AccessTermsRefused(
        f"--until {wall} {what}: it could be {_iso(earlier)} or {_iso(later)}. Give the end in UTC "
        f"or with a fixed offset, e.g. {_iso(earlier)}."
    )


def access_terms(
    policy: Policy,
    role_id: str,
    role_name: str,
    *,
    now: datetime,
    duration: str | timedelta | None = None,
    until: str | datetime | None = None,
) -> AccessTerms:
    """The terms of a grant of ``role_id``, or ``AccessTermsRefused`` saying why not.

    Asked terms longer than the role's max (or the 365-day ceiling), an end time not in the
    future, or a zero or negative duration are refused. Unasked, a grant gets the policy's
    default (cut to the role's max), else the role's max, else no expiry.
    """
    longest = policy.max_duration(role_id)
    # The policy's durations are within the ceiling (``parse_duration``); a Policy built in code
    # may not be.
    limit = min(longest, CEILING) if longest is not None else CEILING
    if longest is not None and longest <= CEILING:
        limit_text = f"the policy's maximum for {role_name} ({format_duration(longest)})"
    else:
        limit_text = f"the ceiling of {format_duration(CEILING)}"

    if duration is not None and until is not None:
        raise AccessTermsRefused("give either --duration or --until, not both.")
    if duration is not None:
        asked = _duration(duration)
        if asked > limit:
            raise AccessTermsRefused(
                f"--duration {format_duration(asked)} is longer than {limit_text}: ask for at most "
                f"{format_duration(limit)}."
            )
        return AccessTerms(duration=asked, source="duration")
    if until is not None:
        end = parse_until(until)
        if end <= now:
            raise AccessTermsRefused(
                f"--until {_iso(end)} is in the past (now is {_iso(now)}): give a later time."
            )
        if end - now > limit:
            raise AccessTermsRefused(
                f"--until {_iso(end)} is {_span(end - now)} from now, longer than {limit_text}: "
                f"give a time before {_iso(now + limit)}."
            )
        return AccessTerms(until=end, source="until")
    if policy.default_duration is not None:
        # A default longer than the role's max gives the max, and is said so: not "the policy's default".
        if policy.default_duration > limit:
            return AccessTerms(duration=limit, source="max")
        return AccessTerms(duration=policy.default_duration, source="default")
    if longest is not None:
        return AccessTerms(duration=limit, source="max")
    return AccessTerms()


def _duration(value: str | timedelta) -> timedelta:
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise AccessTermsRefused(f"--duration must be positive, got {value}.")
        # Stored as whole seconds: a fraction would be cut, and under a second would read as none.
        if value < timedelta(seconds=1) or value % timedelta(seconds=1):
            raise AccessTermsRefused(f"--duration must be a whole number of seconds, at least 1, got {value}.")
        return value
    try:
        return parse_duration(value, "--duration")
    except DurationError as error:
        raise AccessTermsRefused(str(error)) from None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="minutes").replace("+00:00", "Z")


def _span(span: timedelta) -> str:
    return f"{span.days} days" if span.days >= 2 else f"{span.total_seconds() / 3600:.1f} hours"


def approval_deadline(policy: Policy, requested_at: datetime) -> datetime | None:
    """When a request awaiting approval expires (None: it waits until decided)."""
    # In UTC, as expires_at: added by the wall clock of the host's zone, 72h could be 71h or 73h.
    return requested_at.astimezone(UTC) + policy.wait_at_most if policy.wait_at_most is not None else None


@dataclass(frozen=True)
class Grantee:
    """Who a request is for, and who asked, as recorded on the request."""

    user_id: str | None
    email: str | None
    requested_by: str | None
    workspace_name: str | None


def approver_refusal(policy: Policy, approver: MemberStanding, grantee: Grantee, *, approving: bool) -> str | None:
    """Why ``approver`` may not decide this request (None: they may).

    Approvers are never disabled members or pending invitees; who else may decide follows the
    policy's ``approvers``. Unless the policy allows self-approval, nobody approves a request
    they asked for or that is for them (emails compared as ``typed_email`` does: in any case, and
    composed or decomposed alike, as LangSmith may send them; a requester or
    grantee named by user id or org identity id is the same person); denying is never
    self-approval.
    """
    who = approver.email
    if approving and not policy.self_approval:
        if grantee.requested_by and _names_member(grantee.requested_by, approver):
            return f"self-approval: {who} asked for this request, and the policy does not allow self-approval."
        is_grantee = (grantee.email and typed_email(grantee.email) == typed_email(who)) or (
            grantee.user_id is not None and grantee.user_id in approver.user_ids
        )
        if is_grantee:
            return f"self-approval: the request is for {who}, and the policy does not allow self-approval."
    if not approver.is_member:
        if approver.pending_invite:
            return f"{who} has only a pending invite to the organization: invitees never approve."
        return (f"{who} is not a member of the organization in the latest sync: check the approver's "
                "email (--by, as LangSmith knows it), or sync again if they joined since.")
    if approver.disabled:
        return f"{who} is a disabled member of the organization: disabled members never approve."
    if len(approver.user_ids) > 1:
        return f"{len(approver.user_ids)} org members have the email {who}: an approver must be one person."
    workspace = grantee.workspace_name or "the workspace"
    if policy.approvers == WORKSPACE_ADMINS and not (approver.workspace_admin or approver.org_admin):
        return (f"{who} is neither an Admin of {workspace} nor an Organization Admin, who are the approvers "
                f"(approvers: {WORKSPACE_ADMINS}).")
    if policy.approvers == ORG_ADMINS and not approver.org_admin:
        return f"{who} is not an Organization Admin, who are the approvers (approvers: {ORG_ADMINS})."
    if policy.approvers == NAMED_EMAILS and typed_email(who) not in {
        typed_email(email) for email in policy.approver_emails
    }:
        return f"{who} is not one of the approvers the policy names ({', '.join(policy.approver_emails)})."
    return None


def _names_member(text: str, member: MemberStanding) -> bool:
    """Does ``text`` (a request's ``requested_by``) name ``member``: their email in any case, or,
    as ``--user`` takes them, their user id or org identity id (another name for the same person)."""
    as_id = as_uuid(text.strip())
    if as_id is None:
        return typed_email(text) == typed_email(member.email)
    return as_id in member.user_ids or as_id in member.identity_ids

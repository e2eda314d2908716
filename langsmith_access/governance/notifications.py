"""Notifications: an outbox table, delivered to a webhook at least once, with backoff.

Whoever raises an event writes it to ``main.notifications`` in the working file with
``enqueue`` (through a ``Notifier``, which does nothing when no webhook is set), in the same
transaction as the change it reports. ``deliver_due`` POSTs what is due and records the outcome:

- A delivered row is ``delivered``. A failed attempt keeps the row ``pending`` with
  ``last_error`` and ``next_attempt_at`` pushed back (30 s, doubling, at most an hour; longer
  if the receiver's ``Retry-After`` asks so, up to the hour): a receiver that is down delays
  notifications and loses none. A receiver that is away or answers 429 is not sent the rest of
  the batch now: they wait as long as the row that found it so.
- ``deliver_due`` never raises into its caller (a CLI command, a sensor): a sync or a provisioning
  run never fails because of a notification. Problems are in the ``DeliveryReport`` it returns.
- Rows are claimed under the writer lease (``next_attempt_at`` moved past the claim window) and
  POSTed after the lease is released, so a slow receiver never holds up a sync. A process that
  dies between claiming and recording sends those rows again after the claim window: at least
  once, never lost. A run that takes the lease while the receiver answers (and keeps it past the
  wait) does not make the receiver get them twice: what it accepted is left beside the file
  (``AccessDatabase.unrecorded_deliveries_path``) and recorded by the next claim.

The webhook URL is a secret (a Slack incoming-webhook URL is its own credential): it is held
as a ``Secret``, never written to the table, never logged, never in an error (errors name the
kind of failure, not the address). Requests go through ``urllib``, which logs nothing.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from langsmith_access.langsmith.pacing import retry_after_seconds
from langsmith_access.quoting import NOT_A_KEY_SHAPE
from langsmith_access.settings import KEY_PREFIXES, Org, Secret, Settings, mask_keys, mask_url_credentials
from langsmith_access.side_by_side import each_org_side_by_side
from langsmith_access.store.database import AccessDatabase, DatabaseBusyError
from langsmith_access.store.sql import scalar
from langsmith_access.store.sync_runs import leave_aside, left_aside, remove_abandoned_drafts

# Every event a notification may report (DESIGN.md section 10).
EVENTS = (
    "request.awaiting_approval",
    "request.applied",
    "request.failed",
    "request.denied",
    "request.approval_expired",
    "access.expiring",
    "access.expired",
    "change.unexplained",
    "sync.failed",
)
# The keys of every payload, in order; absent values are null.
PAYLOAD_KEYS = ("event", "at", "org", "request_id", "user", "workspace", "role", "detail")

FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)
# A claimed row is left alone this long by other deliverers; past it, it is sent again.
CLAIM_WINDOW = timedelta(minutes=5)
DELIVERED, PENDING = "delivered", "pending"
# One delivery (a command's, the sensor's) spends at most this long posting: a slow receiver
# delays notifications, never the command or the sensor's tick. What it did not get to stays due.
DELIVERY_BUDGET_SECONDS = 30.0
# How long a delivery waits for the working file once it holds the lease: only a program outside
# this project (a session someone opened on the working file) keeps it then. A delivery runs at the
# end of every command and in the outbox sensor's tick (Dagster's timeout: 60 s): a connection's
# usual minute would add that minute to each, for notifications that can wait for the next try.
FILE_OPEN_WAIT_SECONDS = 5.0
# The failures that say the receiver is unreachable (not that it refused one payload): the
# delivery stops there instead of waiting on it again for every row.
_UNREACHABLE = ("the receiver did not answer", "could not connect", "the receiver closed the connection")
NOT_TRIED = "not tried this time: the receiver was unreachable or the delivery ran out of time"


@dataclass(frozen=True)
class _Answer:
    """What one POST came to: ``failure`` None when the receiver accepted it. ``wait``: how long
    the receiver asked to be left alone (``Retry-After``). ``rate_limited``: it answered 429."""

    failure: str | None
    wait: timedelta | None = None
    rate_limited: bool = False

    @property
    def stops_delivery(self) -> bool:
        """The receiver is away or asks to slow down: the rows after this one are not posted
        now (each would only fail the same way, and a 429 asks for fewer requests, not more)."""
        return self.rate_limited or (self.failure is not None and self.failure.startswith(_UNREACHABLE))


@dataclass(frozen=True)
class _Attempt:
    """One claimed row after a delivery: ``answer.failure`` None when delivered; ``tried`` False
    when the delivery stopped before it (the attempt its claim counted is given back)."""

    row_id: str
    attempts: int
    answer: _Answer
    tried: bool = True

    @property
    def failure(self) -> str | None:
        return self.answer.failure

    def retry_delay(self) -> timedelta:
        """The backoff of its attempts, or longer if the receiver asked so."""
        backoff = retry_delay(self.attempts)
        return max(backoff, self.answer.wait) if self.answer.wait is not None else backoff


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def notification(
    event: str,
    *,
    at: datetime,
    org: str,
    request_id: str | None = None,
    user: str | None = None,
    workspace: str | None = None,
    role: str | None = None,
    detail: str | None = None,
) -> dict:
    """A payload: exactly ``PAYLOAD_KEYS``, absent ones null."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}: one of {', '.join(EVENTS)}")
    return {"event": event, "at": iso(at), "org": org, "request_id": request_id, "user": user,
            "workspace": workspace, "role": role, "detail": detail}


def enqueue(
    conn: duckdb.DuckDBPyConnection,
    event: str,
    payload: Mapping,
    *,
    now: datetime | None = None,
    once_for: str | None = None,
) -> str | None:
    """Add one notification to the outbox (in the caller's transaction; the caller holds the
    writer lease on the working file). Returns its id. Refuses a payload that is not exactly
    the documented keys, so nothing else (a secret, a stray field) can reach a receiver, and
    stores its ``detail`` through ``without_secrets``.

    ``once_for``: what the notification is about, for an event that may be raised again for
    the same thing (a drift report rebuilt, a sync re-run): its id is derived from it, and a
    notification already in the outbox with that id is not added again (returns None)."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}: one of {', '.join(EVENTS)}")
    if tuple(payload) != PAYLOAD_KEYS:
        raise ValueError(
            f"a notification payload has exactly the keys {', '.join(PAYLOAD_KEYS)}, got {', '.join(payload)}"
        )
    if payload["event"] != event:
        raise ValueError(f"the payload is for {payload['event']!r}, not {event!r}")
    for key in PAYLOAD_KEYS:
        if payload[key] is not None and not isinstance(payload[key], str):
            raise ValueError(f"notification field {key!r} must be text or null, got {type(payload[key]).__name__}")
    # The one way into the outbox: free text (LangSmith's or a proxy's error, an approver's
    # comment) loses what looks like a credential here, whichever event carries it.
    if payload["detail"] is not None:
        payload = {**payload, "detail": without_secrets(payload["detail"])}
    notification_id = str(uuid.uuid4()) if once_for is None else once_id(event, once_for)
    if once_for is not None and scalar(
        conn, "SELECT count(*) FROM main.notifications WHERE notification_id = ?", [notification_id]
    ):
        return None
    at = now or datetime.now(UTC)
    conn.execute(
        "INSERT INTO main.notifications (notification_id, event, payload, status, attempts, next_attempt_at, "
        "last_error, created_at, delivered_at) VALUES (?, ?, ?, ?, 0, ?, NULL, ?, NULL)",
        [notification_id, event, json.dumps(dict(payload)), PENDING, at, at],
    )
    return notification_id


def once_id(event: str, about: str) -> str:
    """The id of the one notification of ``event`` about ``about`` (see ``enqueue``)."""
    return str(uuid.uuid5(_ONCE_NAMESPACE, f"{event}\n{about}"))


_ONCE_NAMESPACE = uuid.UUID("6f1d3c0e-5a43-4d55-9a43-2f0c6f6f7a51")
# Longest ``detail`` a notification built from an error message carries.
DETAIL_MAX_CHARS = 1000


def without_secrets(text: str, secrets: Iterable[Secret | None] = ()) -> str:
    """``text`` (an error message) fit for a payload: each of ``secrets`` replaced (the API key,
    the webhook URL; the client's messages never hold the key, this is a second line of
    defence), credentials and query strings cut from URLs, LangSmith key shapes cut to a
    marker, and at most ``DETAIL_MAX_CHARS`` characters."""
    text = mask_url_credentials(_replaced(text, secrets))
    text = mask_keys(_LANGSMITH_KEY.sub("<key>", text))
    if len(text) > DETAIL_MAX_CHARS:
        text = text[: DETAIL_MAX_CHARS - 1] + "…"
    return text


def _replaced(text: str, secrets: Iterable[Secret | None]) -> str:
    for secret in secrets:
        if secret is not None and secret.reveal():
            for form in _as_pasted(secret.reveal()):
                text = text.replace(form, "<secret>")
    return text


# The shortest path (and query) of a webhook URL cut on its own: a Slack URL's is some 60
# characters; a short one ("/hook") is a word anybody may type.
_PATH_CUT_ALONE_CHARS = 16


def _as_pasted(secret: str) -> list[str]:
    """``secret`` in the forms a person pastes it, longest first: whole, and for a URL also without
    its scheme (as a browser's address bar shows it) and its path alone (where a Slack URL's
    token is), when that is long enough to be no common word."""
    forms = [secret]
    scheme, separator, rest = secret.partition("://")
    if scheme and separator and rest:
        forms.append(rest)
        slash = rest.find("/")
        if slash != -1 and len(rest[slash:].strip("/")) >= _PATH_CUT_ALONE_CHARS:
            forms.append(rest[slash:])
    return forms


# A LangSmith key or token of any kind settings knows (lsv2_sk_, lsv2_pt_, lsv2_scim_, legacy
# ls__), never in a payload, whoever's it is; mask_keys then cuts a key pasted without prefix.
_LANGSMITH_KEY = re.compile(rf"\b(?:{'|'.join(map(re.escape, KEY_PREFIXES))}){NOT_A_KEY_SHAPE}[A-Za-z0-9_\-]+")


@dataclass(frozen=True)
class Notifier:
    """What code that raises events holds: the org's slug, and whether a webhook is set (no
    webhook: nothing is written, so the outbox never fills with notifications nobody reads).
    ``secrets``: the org's own (its API key, the webhook URL), cut from any detail: a Slack URL
    holds its credential in its path, which no pattern of ``without_secrets`` would find."""

    org: str
    enabled: bool
    secrets: tuple[Secret | None, ...] = field(default=(), repr=False)

    @classmethod
    def of_org(cls, org: Org) -> Notifier:
        """The org's notifier: on while it has a webhook, or names its own that cannot be used
        yet (``Org.webhook_problem``: its notifications are queued and wait)."""
        return cls(org=org.slug, enabled=org.notifies, secrets=(org.settings.webhook_url, org.settings.api_key))

    def hidden(self, text: str) -> str:
        """``text`` typed by a person (a reason, a decision's comment) with the org's own secrets
        replaced, before it is stored, shown or sent: no key shape finds a pasted webhook URL."""
        return _replaced(text, self.secrets)

    @classmethod
    def off(cls) -> Notifier:
        return cls(org="", enabled=False)

    def notify(
        self, conn: duckdb.DuckDBPyConnection, event: str, *, at: datetime, once_for: str | None = None,
        **fields: str | None,
    ) -> str | None:
        """Enqueue ``event`` with ``fields`` (request_id, user, workspace, role, detail);
        ``once_for``: at most one such notification about that (see ``enqueue``)."""
        if not self.enabled:
            return None
        detail = fields.get("detail")
        if detail is not None:
            fields["detail"] = without_secrets(detail, self.secrets)
        return enqueue(conn, event, notification(event, at=at, org=self.org, **fields), now=at,
                       once_for=None if once_for is None else f"{self.org}\n{once_for}")


def notify_sync_not_started(org: Org, reason: str, *, scheduled_at: datetime, now: datetime | None = None,
                            lease_timeout_seconds: float = 1.0, asked: str = "scheduled for") -> str | None:
    """``sync.failed`` for a scheduled sync of ``org`` that was not launched because the org has
    no usable key (``reason``, the org's ``key_problem``): without it a key gone from the
    deployment (a Kubernetes secret deleted) would leave the org's tables, and the drift and
    expiry alerts they drive, silently as they were. Once per ``scheduled_at`` (a tick evaluated
    again raises nothing new). Nothing for an org without a webhook, or without a database yet:
    an org added before its key has nothing gone stale, and the tick says why it waits.
    ``asked``: how the detail says the sync was asked for ("the sync <asked> <time>"); the CLI's
    ``sync`` (a cron's) raises it too.

    The schedule's tick takes the org's writer lease briefly, as the outbox sensor does. Returns
    why the notification could not be recorded this time (the next tick, or command, tries again),
    or None."""
    notifier = Notifier.of_org(org)
    database = AccessDatabase.of_org(org)
    try:
        # Inside: a folder that cannot be looked at is this org's to report, not the tick's.
        if not notifier.enabled or not (database.working_path.exists() or database.path.exists()):
            return None
        with database.writer_lease("record a scheduled sync that could not start",
                                   timeout_seconds=lease_timeout_seconds):
            database.ensure_working()
            with database.connect() as conn:
                notifier.notify(
                    conn, "sync.failed", at=now or datetime.now(UTC), once_for=f"not started\n{iso(scheduled_at)}",
                    detail=f"the sync {asked} {iso(scheduled_at)} was not started (the analysts' "
                    f"database is as the last good run left it): {reason}",
                )
    except DatabaseBusyError:
        return ("Its sync.failed is not recorded: another process writes its database; the next sync asked for "
                "tries again.")
    except Exception as error:
        text = without_secrets(str(error), notifier.secrets)
        return f"Its sync.failed is not recorded ({type(error).__name__}: {text})."
    return None


# ------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class Webhook:
    """Where and how to POST: ``json`` sends the payload itself, ``slack`` a Slack
    incoming-webhook body (``{"text": ...}``)."""

    url: Secret = field(repr=False)
    format: str = "json"
    timeout_seconds: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Webhook | None:
        if settings.webhook_url is None:
            return None
        return cls(url=settings.webhook_url, format=settings.webhook_format)

    def body(self, payload: Mapping) -> bytes:
        if self.format == "slack":
            # Plain text: a name a member chose (``*Admin*``, ``_staging_``) shows as typed, not bold.
            return json.dumps({"text": slack_text(payload), "mrkdwn": False}).encode()
        return json.dumps(dict(payload)).encode()


def slack_text(payload: Mapping) -> str:
    """One readable line, sent with formatting off (``&``, ``<`` and ``>`` escaped as Slack
    asks of every text, so a name such as ``<!channel>`` pings nobody), and the detail on a
    second. A line break in a value (a workspace name, an approver's comment) is a space: in a
    channel several orgs share, no value starts a line that reads as another org's notification."""
    payload = {key: _within(key, _LINE_BREAKS.sub(" ", value)) if isinstance(value, str) else value
               for key, value in payload.items()}
    what = " ".join(
        part for part in (
            payload.get("role"),
            f"in {payload['workspace']}" if payload.get("workspace") else None,
            f"for {payload['user']}" if payload.get("user") else None,
        ) if part
    )
    text = f"[{payload.get('org')}] {payload['event']}"
    if what:
        text += f": {what}"
    if payload.get("request_id"):
        text += f" (request {payload['request_id']})"
    if payload.get("detail"):
        text += f"\n{payload['detail']}"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Whatever a Slack client may show as a new line (str.splitlines' breaks).
_LINE_BREAKS = re.compile(r"[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]+")
# The most of a name (workspace, role, user) a Slack line quotes. Slack cuts a text past 40,000
# characters: a workspace LangSmith sent with a 100,000-character name left a message without
# whom and which request it was about, and without its detail. (The json format sends it whole.)
SLACK_NAME_MAX_CHARS = 200


def _within(key: str, value: str) -> str:
    """A name of the payload (not its detail: ``DETAIL_MAX_CHARS`` bounds that) cut for a Slack line."""
    if key == "detail" or len(value) <= SLACK_NAME_MAX_CHARS:
        return value
    return value[: SLACK_NAME_MAX_CHARS - 1] + "…"


def retry_delay(attempts: int) -> timedelta:
    """How long after a failed attempt the next one is due: 30 s, 1 min, 2 min, ... 1 h."""
    # The exponent stops at 7 (30 s * 2**7 > 1 h): a row retried for weeks never overflows.
    return min(FIRST_RETRY * (2 ** min(max(attempts - 1, 0), 7)), LONGEST_RETRY)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect answers a POST with a GET elsewhere: report it as a failure instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def _without_credentials(url: str) -> tuple[str, str | None]:
    """A URL with ``user:password@`` (a receiver behind basic auth) as the URL without them and
    the ``Authorization`` header they stand for: urllib sends neither on its own."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    credentials = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password or '')}"
    token = base64.b64encode(credentials.encode()).decode("ascii")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"


def post(webhook: Webhook, payload: Mapping, notification_id: str | None = None) -> str | None:
    """POST one payload, all of it within ``webhook.timeout_seconds`` (a receiver that trickles
    its answer byte by byte is cut off too). None when the receiver accepted it (2xx), else why
    not: the kind of failure, never the address (exception texts may hold the URL, so none is
    passed on). ``notification_id`` goes as the ``Idempotency-Key`` header: a notification sent
    twice (at least once means sometimes twice) carries the same key."""
    return _post_within_timeout(webhook, payload, notification_id).failure


def _post_within_timeout(webhook: Webhook, payload: Mapping, notification_id: str | None) -> _Answer:
    answer: list[_Answer] = []
    # urllib's timeout bounds each socket operation, not the whole exchange: the POST runs on a
    # daemon thread, waited for at most the timeout; one cut off ends on its own socket timeout.
    worker = threading.Thread(target=lambda: answer.append(_post(webhook, payload, notification_id)),
                              name="webhook-post", daemon=True)
    worker.start()
    worker.join(webhook.timeout_seconds)
    if not answer:
        return _Answer(_network_failure(TimeoutError(), webhook.timeout_seconds))
    return answer[0]


def _post(webhook: Webhook, payload: Mapping, notification_id: str | None) -> _Answer:
    if not isinstance(payload, Mapping):  # enqueue stores objects only: this row was edited by hand
        return _Answer("could not send this notification: its stored payload is not a JSON object")
    headers = {"Content-Type": "application/json", "User-Agent": "langsmith-access"}
    if notification_id is not None:
        headers["Idempotency-Key"] = notification_id
    try:
        url, authorization = _without_credentials(webhook.url.reveal())
    except ValueError:  # a port that is no port (the text is not shown: it holds the URL)
        return _Answer("the webhook URL cannot be used (its port is not a number from 1 to 65535)")
    if authorization:
        headers["Authorization"] = authorization
    try:
        # In the try: a URL urllib cannot use raises here, its message holding the URL.
        request = urllib.request.Request(url, data=webhook.body(payload), method="POST", headers=headers)
        with _OPENER.open(request, timeout=webhook.timeout_seconds) as response:
            response.read(65536)
            status = response.status
    except urllib.error.HTTPError as error:
        return _error_answer(error.code, error.headers.get("Retry-After") if error.headers else None)
    except urllib.error.URLError as error:
        return _Answer(_network_failure(error.reason, webhook.timeout_seconds))
    except (OSError, http.client.HTTPException) as error:
        # A receiver that closes the connection mid-answer raises http.client's errors.
        return _Answer(_network_failure(error, webhook.timeout_seconds))
    except ValueError as error:
        return _Answer(f"could not send ({type(error).__name__}: check LANGSMITH_ACCESS_WEBHOOK_URL)")
    except Exception as error:  # an object edited by hand that cannot be worded: that row's failure only
        return _Answer(f"could not send this notification ({type(error).__name__})")
    if not 200 <= status < 300:
        return _Answer(f"the receiver answered HTTP {status}")
    return _Answer(None)


def _error_answer(status: int, retry_after: str | None) -> _Answer:
    """An error answer: its status, and the wait a ``Retry-After`` asked for (at most the
    longest backoff, so a receiver cannot park the outbox for days)."""
    redirect = " (redirects are not followed: set the final URL)" if 300 <= status < 400 else ""
    seconds = retry_after_seconds(retry_after, longest=LONGEST_RETRY.total_seconds())
    asked = f"; it asked to wait {seconds:g} s" if seconds else ""
    limited = " (rate limited)" if status == 429 else ""
    return _Answer(f"the receiver answered HTTP {status}{redirect}{limited}{asked}",
                   wait=timedelta(seconds=seconds) if seconds else None, rate_limited=status == 429)


def _network_failure(reason: object, timeout_seconds: float) -> str:
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"the receiver did not answer within {timeout_seconds:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "could not connect: connection refused (is the receiver up?)"
    if isinstance(reason, (ConnectionResetError, BrokenPipeError)):
        # Connected, and the receiver (or a proxy before it) dropped the connection without an
        # answer (http.client's RemoteDisconnected is a ConnectionResetError): not "could not
        # connect", which would send whoever reads last_error looking for a firewall.
        return "the receiver closed the connection without answering"
    if isinstance(reason, socket.gaierror):
        return "could not connect: the receiver's host name does not resolve"
    if isinstance(reason, ssl.SSLError):
        return f"could not connect: TLS failed ({type(reason).__name__})"
    return f"could not connect ({type(reason).__name__})"


@dataclass
class DeliveryReport:
    """What one ``deliver_due`` did. ``problem``: why it could not run at all (it never raises)."""

    delivered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # notification id -> why
    problem: str | None = None

    @property
    def attempted(self) -> int:
        return len(self.delivered) + len(self.failed)


def deliver_due(
    database: AccessDatabase,
    webhook: Webhook | None,
    *,
    now: datetime | None = None,
    limit: int = 100,
    lease_timeout_seconds: float = 5.0,
    budget_seconds: float = DELIVERY_BUDGET_SECONDS,
) -> DeliveryReport:
    """POST every notification due at ``now`` (in the order raised, at most ``limit``) and record each
    outcome. Never raises: a busy database or an unreachable receiver is reported and retried
    later. Stops posting once the receiver is unreachable or ``budget_seconds`` are spent: the
    rest stay due, as they were."""
    report = DeliveryReport()
    at = now or datetime.now(UTC)
    if webhook is None:
        return report
    try:
        # Inside: a folder that cannot be looked at (no permission) is this org's problem to report.
        if not database.working_path.exists() or not _any_due(database, at):
            return report
        due = _claim_due(database, at, limit, lease_timeout_seconds)
        outcomes = _post_while_worthwhile(webhook, due, budget_seconds)
        _record_or_leave(database, at, outcomes, lease_timeout_seconds)
    except Exception as error:  # never into the caller: report it; the rows are retried later
        problem = f"notifications not delivered this time: {type(error).__name__}: {error}"
        # Printed and logged: the URL by its name, then cut as every detail is (keys, URL credentials,
        # and the URL as pasted in part: its path alone is where a Slack URL's token is).
        report.problem = without_secrets(problem.replace(webhook.url.reveal(), "<webhook URL>"), [webhook.url])
        return report
    for outcome in outcomes:
        if outcome.failure is None:
            report.delivered.append(outcome.row_id)
        else:
            report.failed[outcome.row_id] = outcome.failure
    return report


def deliver_due_for_orgs(orgs: Iterable[Org], **options) -> dict[str, DeliveryReport | None]:
    """``deliver_due`` for each org with a webhook (None for an org without one), by slug, all
    at once (a thread each): one delivery's time budget bounds them all, however many orgs
    there are, so the outbox sensor's tick stays within Dagster's sensor timeout (60 s) and
    never holds up the other sensors, and ``sync --all-orgs`` waits one budget."""
    orgs = list(orgs)
    webhooks = {org.slug: Webhook.from_settings(org.settings) for org in orgs}
    reports: dict[str, DeliveryReport | None] = {
        # An org whose own webhook cannot be used yet: its rows wait, and every delivery says why.
        org.slug: DeliveryReport(problem=org.webhook_problem) if org.webhook_problem else None
        for org in orgs
    }
    delivering = [org for org in orgs if webhooks[org.slug] is not None]
    reports.update(each_org_side_by_side(
        delivering, lambda org: deliver_due(AccessDatabase.of_org(org), webhooks[org.slug], **options),
        at_once=len(delivering)))
    return reports


def _post_while_worthwhile(webhook: Webhook, due: list[tuple[str, int, dict]], budget_seconds: float) -> list[_Attempt]:
    """Post the claimed rows in order until the receiver proves unreachable, asks to slow down
    (429) or the budget is spent; the rows after that are not tried."""
    deadline = time.monotonic() + budget_seconds
    outcomes: list[_Attempt] = []
    stopped = False
    for row_id, attempts, payload in due:
        if stopped or time.monotonic() >= deadline:
            outcomes.append(_Attempt(row_id, attempts, _Answer(NOT_TRIED), tried=False))
            continue
        answer = _post_within_timeout(webhook, payload, row_id)
        outcomes.append(_Attempt(row_id, attempts, answer))
        stopped = answer.stops_delivery
    return outcomes


def _any_due(database: AccessDatabase, now: datetime) -> bool:
    """Whether the working file may hold a notification due at ``now``, looked at read-only and
    without the writer lease: a sync holds the lease for its whole run but writes its scratch
    copy, so with nothing due a command run meanwhile neither waits for the lease nor warns.
    True when the file cannot be read now (a provisioning run writing it): the lease decides."""
    try:
        with database.connect(read_only=True, timeout_seconds=0.5) as conn:
            [(due,)] = conn.execute(
                "SELECT count(*) FROM main.notifications WHERE status = ? AND next_attempt_at <= ?",
                [PENDING, now],
            ).fetchall()
    except duckdb.CatalogException:  # a file no notification was ever recorded in
        return False
    except Exception:
        return True
    return due > 0


def _claim_due(
    database: AccessDatabase, now: datetime, limit: int, lease_timeout_seconds: float
) -> list[tuple[str, int, dict]]:
    """(id, attempts including this one, payload) of each due row, claimed for this attempt."""
    with database.writer_lease("claim due notifications", timeout_seconds=lease_timeout_seconds):
        database.ensure_working(open_timeout_seconds=FILE_OPEN_WAIT_SECONDS)
        left = _left_delivered(database.unrecorded_deliveries_path)
        with database.connect(timeout_seconds=FILE_OPEN_WAIT_SECONDS) as conn:
            conn.execute("BEGIN")
            try:
                for _, delivered_at, row_ids in left:  # before the claim: none of them is sent again
                    if not row_ids:  # DuckDB refuses an executemany of nothing
                        continue
                    conn.executemany(
                        "UPDATE main.notifications SET status = ?, delivered_at = ?, last_error = NULL "
                        "WHERE notification_id = ? AND status = ?",
                        [[DELIVERED, delivered_at, row_id, PENDING] for row_id in row_ids],
                    )
                rows = conn.execute(
                    "SELECT notification_id, attempts + 1, payload FROM main.notifications "
                    "WHERE status = ? AND next_attempt_at <= ? ORDER BY notification_seq LIMIT ?",
                    [PENDING, now, limit],
                ).fetchall()
                if rows:  # DuckDB refuses an executemany of nothing
                    conn.executemany(
                        "UPDATE main.notifications SET attempts = attempts + 1, next_attempt_at = ? "
                        "WHERE notification_id = ?",
                        [[now + CLAIM_WINDOW, row_id] for row_id, _, _ in rows],
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    for path, _, _ in left:  # recorded: a second recording would change nothing, so gone after the commit
        path.unlink(missing_ok=True)
    return [(row_id, attempts, _stored_payload(payload)) for row_id, attempts, payload in rows]


def _leave_delivered(directory: Path, row_ids: list[str], delivered_at: datetime) -> None:
    """Leave the ids of rows the receiver accepted, and when, in ``directory`` (``leave_aside``)
    for the next claim to record; for a delivery the lease kept from recording them."""
    leave_aside(directory, uuid.uuid4().hex, {"delivered_at": iso(delivered_at), "delivered": row_ids})


def _left_delivered(directory: Path) -> list[tuple[Path, datetime, list[str]]]:
    """What ``_leave_delivered`` left: (its file, when delivered, the ids). A file that cannot be
    read is skipped and stays (its rows are sent again: at least once)."""
    def delivered(text: Any) -> tuple[datetime, list[str]]:
        row_ids = text["delivered"]
        if not isinstance(row_ids, list):
            raise TypeError("not a list of ids")
        return datetime.fromisoformat(text["delivered_at"]), [str(i) for i in row_ids]

    remove_abandoned_drafts(directory)
    return [(path, at, row_ids) for path, (at, row_ids) in left_aside(directory, delivered)]


def _stored_payload(text: str) -> Any:
    """A claimed row's payload. Text that is no JSON (a row edited by hand) is kept as it is:
    it fails alone when sent, where raising here would fail every row claimed with it, at
    every delivery."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _record_or_leave(
    database: AccessDatabase, now: datetime, outcomes: list[_Attempt], lease_timeout_seconds: float
) -> None:
    """``_record``, or, when a run holds the writer lease past the wait (it took it while the
    receiver answered), the ids the receiver accepted left for the next claim to record: their
    claim lapses meanwhile, and sending them again would be a second Slack message per row. The
    rest are retried when their claim lapses, as after a process that died."""
    try:
        _record(database, now, outcomes, lease_timeout_seconds)
    except DatabaseBusyError:
        delivered = [outcome.row_id for outcome in outcomes if outcome.failure is None]
        if delivered:
            _leave_delivered(database.unrecorded_deliveries_path, delivered, now)


def _record(database: AccessDatabase, now: datetime, outcomes: list[_Attempt], lease_timeout_seconds: float) -> None:
    """Each claimed row's outcome. A row not tried waits as long as the row before it that found
    the receiver away or rate limiting (the rows stay in order), or is due at once when the
    budget ran out. A row another delivery delivered meanwhile (this one stalled past its claim)
    keeps that delivery."""
    if not outcomes:
        return
    stopper = next((o for o in outcomes if o.tried and o.answer.stops_delivery), None)
    not_tried_until = now + stopper.retry_delay() if stopper is not None else now
    with database.writer_lease("record notification deliveries", timeout_seconds=lease_timeout_seconds):
        with database.connect(timeout_seconds=FILE_OPEN_WAIT_SECONDS) as conn:
            conn.execute("BEGIN")
            try:
                for outcome in outcomes:
                    if not outcome.tried:
                        conn.execute(
                            "UPDATE main.notifications SET attempts = attempts - 1, next_attempt_at = ? "
                            "WHERE notification_id = ? AND status = ?",
                            [not_tried_until, outcome.row_id, PENDING],
                        )
                    elif outcome.failure is None:
                        conn.execute(
                            "UPDATE main.notifications SET status = ?, delivered_at = ?, last_error = NULL "
                            "WHERE notification_id = ? AND status = ?",
                            [DELIVERED, now, outcome.row_id, PENDING],
                        )
                    else:
                        conn.execute(
                            "UPDATE main.notifications SET last_error = ?, next_attempt_at = ? "
                            "WHERE notification_id = ? AND status = ?",
                            [outcome.failure, now + outcome.retry_delay(), outcome.row_id, PENDING],
                        )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

"""The few exception types the LangSmith client raises.

Every message names the request (method and path, never the key or headers), and anything in
it that looks like an API key is cut to its prefix: a server can echo the key anywhere (an
error body, a redirect's path, a header the message quotes). Each type's
``fix`` is the one line an operator needs when a run fails with it; the CLI prints it under the
failure (``runner.RunOutcome.fix``).
"""

from __future__ import annotations

import re

from langsmith_access.settings import mask_keys

# Control characters (line breaks, ESC, ...) and the Unicode line and paragraph separators.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text: str) -> str:
    """``text`` with every run of control characters (a line break included) cut to one space:
    what a server said, quoted in a message, forges no line of its own and sends the terminal
    no escape sequence."""
    return _CONTROL_CHARACTERS.sub(" ", text)


def first_line(text: str) -> str:
    """The first line of a multi-line message (DuckDB's names the problem, then the query, then
    candidates); an empty text as it is."""
    return text.strip().splitlines()[0] if text.strip() else text


class LangSmithError(Exception):
    """Base class. ``method``/``path``/``status_code`` say which call failed, when one did."""

    fix = "run `langsmith-access doctor` to check the endpoint, the key and its permissions"

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        status_code: int | None = None,
        detail: object = None,
    ):
        where = f"{method} {path}" if method and path else None
        code = f" -> {status_code}" if status_code is not None else ""
        super().__init__(mask_keys(f"{where}{code}: {message}" if where else message))
        self.method = method
        self.path = mask_keys(path) if path is not None else None
        self.status_code = status_code
        self.detail = mask_keys(detail) if isinstance(detail, str) else detail


class AuthenticationError(LangSmithError):
    """401: the key is wrong, expired or revoked."""

    fix = (
        "LangSmith refused the key: set LANGSMITH_API_KEY to a valid organization-scoped service "
        "key (lsv2_sk_...) of this organization and region"
    )


class ProxyLoginError(AuthenticationError):
    """401 with no JSON body: a proxy or single sign-on gateway in front of LangSmith asks for its
    own login. LangSmith refuses a key with JSON; this page never judged the key."""

    fix = (
        "a proxy or single sign-on gateway between here and LANGSMITH_ENDPOINT asked for its own "
        "login: let this host through it to the LangSmith API (LangSmith checks the API key itself)"
    )


class PermissionDeniedError(LangSmithError):
    """403: the key may not do this (for example a workspace-scoped key on an organization route)."""

    fix = (
        "give the key the roles it needs (an organization-scoped service key with Organization "
        "Admin; see README 'Connect your LangSmith'), check LANGSMITH_ORGANIZATION_ID and the "
        "region, then run `langsmith-access doctor`"
    )


class NotFoundError(LangSmithError):
    """404: unknown id, or a route this LangSmith install does not have."""


class ConflictError(LangSmithError):
    """409: the thing already exists (for example the user is already a workspace member)."""


class RequestRejectedError(LangSmithError):
    """Any other 4xx, 422 validation errors included: the request itself is wrong."""


class TransientError(LangSmithError):
    """5xx, 429, timeouts or dropped connections that outlasted every retry.

    On a write, ``maybe_applied`` is true when the request may have reached the server: the
    caller must re-read the state before deciding anything (never blindly send it again), and
    the error's ``fix`` says so instead of "nothing was changed".
    """

    fix = (
        "LangSmith did not answer usefully after every retry: check that LANGSMITH_ENDPOINT is "
        "reachable from here (`langsmith-access doctor`), then run again; nothing was changed"
    )
    maybe_applied_fix = (
        "LangSmith gave no usable answer to a write, which may or may not have been applied: check "
        "that LANGSMITH_ENDPOINT is reachable (`langsmith-access doctor`), then read the live state "
        "(`langsmith-access sync`) before sending the change again"
    )

    def __init__(self, message: str, *, maybe_applied: bool = False, **kwargs):
        super().__init__(message, **kwargs)
        self.maybe_applied = maybe_applied
        if maybe_applied:
            self.fix = self.maybe_applied_fix


class ConnectionFailedError(TransientError):
    """No answer came at all. ``cause`` says why, as far as the connection tells: ``dns`` (the
    host name does not resolve), ``refused`` (nothing listens at that port), ``tls-untrusted``
    (a certificate this machine does not trust), ``tls`` (another TLS failure, such as https://
    to a plain http port), ``proxy`` (the proxy of HTTPS_PROXY failed), ``connect-timeout``,
    ``read-timeout`` (connected, no answer in time), ``broken`` (an answer cut short or that
    cannot be decoded), ``not-http`` (an answer in no HTTP: another service on that port) or
    ``dropped`` (anything else, such as a connection closed unanswered): each has
    its own fix, and the connection doctor names it."""

    def __init__(self, message: str, *, cause: str, **kwargs):
        super().__init__(message, **kwargs)
        self.cause = cause


class ProvisioningInterruptedError(TransientError):
    """LangSmith stopped answering during a provisioning run (every retry of a read or a write
    that did not go out failed): the run stops there instead of failing each request in turn.
    Requests it did not reach are pending again; one whose write went out stays in progress,
    and the next run settles it from LangSmith's state."""

    fix = (
        "LangSmith stopped answering during the run: check LANGSMITH_ENDPOINT is reachable "
        "(`langsmith-access doctor`), then run `langsmith-access provision` again; the requests "
        "the run did not settle are pending again (`langsmith-access requests`), none was lost"
    )


class UnexpectedResponseError(LangSmithError):
    """The server answered 2xx with something that is not what the API documents."""


class NotLangSmithAPIError(UnexpectedResponseError):
    """A 2xx answer that is not JSON (for example a web UI's HTML page served with status 200)
    or does not parse as JSON: ``LANGSMITH_ENDPOINT`` points at something that is not the
    LangSmith API (or a proxy on the way mangles its answers). ``answer`` says what came back:
    content type and size, never the body."""

    fix = (
        "set LANGSMITH_ENDPOINT to the LangSmith API: https://api.smith.langchain.com (US), "
        "https://eu.api.smith.langchain.com (EU), https://apac.api.smith.langchain.com (APAC), "
        "https://aws.api.smith.langchain.com (AWS US) or https://<your-host>/api/v1 (self-hosted), "
        "https://<your-host>/<basePath>/api/v1 for an install served under a base path"
    )

    def __init__(self, message: str, *, answer: str = "a body that is not JSON", **kwargs):
        super().__init__(message, **kwargs)
        self.answer = mask_keys(answer)  # it quotes the answer's Content-Type


class EndpointRedirectError(LangSmithError):
    """A 3xx answer: ``LANGSMITH_ENDPOINT`` is not the address the API answers at (``http://``
    on an install that sends everyone to ``https://``, a moved host). The client never follows
    a redirect: a POST would arrive as a GET, and the key would travel to wherever it points.
    ``location`` is where the server pointed (scheme, host and path only)."""

    fix = (
        "set LANGSMITH_ENDPOINT to the address the redirect names (often the same URL with "
        "https://), then run `langsmith-access doctor`; nothing was sent there, nothing was changed"
    )

    def __init__(self, message: str, *, location: str, **kwargs):
        super().__init__(message, **kwargs)
        self.location = mask_keys(location)


class RouteNotAvailableError(NotFoundError):
    """This LangSmith install does not serve the route (404, or a self-hosted install's UI page
    answering in its place). ``reason`` says which, for the operator."""

    def __init__(self, message: str, *, reason: str, **kwargs):
        super().__init__(message, **kwargs)
        self.reason = mask_keys(reason)


class WorkspaceGoneError(NotFoundError):
    """A workspace-scoped route answered 404 or 403 for a workspace the workspace listing no
    longer has: deleted since it was listed. ``workspace_id`` names it."""

    fix = "nothing to fix: the workspace was deleted while it was read; the next run no longer reads it"

    def __init__(self, message: str, *, workspace_id: str, **kwargs):
        super().__init__(message, **kwargs)
        self.workspace_id = workspace_id


class IncompleteListingError(LangSmithError):
    """A paged listing could not be read completely and consistently."""


class ListingsDisagreeError(LangSmithError):
    """LangSmith's listings contradict each other: members hold a role or belong to a workspace
    the listings read before them do not have (created or deleted while the sync read, or not
    listed at all), or a workspace lists someone who is no org member. The message names them
    and, for each, what to change in LangSmith (nothing, for what changed while the sync read)."""

    fix = ("do what the message says for each thing it names (nothing, for what changed while the "
           "sync read), then sync again")


class ProxyRefusalError(PermissionDeniedError):
    """403 with no JSON body: a proxy or firewall refused the request, not LangSmith."""

    # Not the key's roles (PermissionDeniedError's fix): LangSmith never saw the request.
    fix = (
        "a proxy or firewall between here and LANGSMITH_ENDPOINT refused the request: let this host "
        "through it to LangSmith (or set HTTPS_PROXY to the proxy it must use)"
    )


class SectionUnavailableError(LangSmithError):
    """A section of the access picture (DESIGN.md section 9) that this org, key or install does
    not have: a 403 on a route the plan's flags or the key's permissions rule out, or a 404 on a
    section route (an older self-hosted version). Not a failure: the sync leaves the section
    empty and records ``reason`` in ``sync_runs.skipped_sections``. Any other error of a section
    route stays what it is, and fails the run."""

    fix = "nothing to fix for the run: the section is skipped, and the reason says why"

    def __init__(self, message: str, *, section: str, reason: str, **kwargs):
        super().__init__(message, **kwargs)
        self.section = section
        self.reason = mask_keys(reason)  # stored in sync_runs.skipped_sections

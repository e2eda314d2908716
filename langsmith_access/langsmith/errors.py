"""The few exception types the LangSmith client raises.

Every message names the request (method and path, never the key or headers) and what to do.
"""

from __future__ import annotations


class LangSmithError(Exception):
    """Base class. ``method``/``path``/``status_code`` say which call failed, when one did."""

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
        super().__init__(f"{where}{code}: {message}" if where else message)
        self.method = method
        self.path = path
        self.status_code = status_code
        self.detail = detail


class AuthenticationError(LangSmithError):
    """401: the key is wrong, expired or revoked."""


class PermissionDeniedError(LangSmithError):
    """403: the key may not do this (for example a workspace-scoped key on an organization route)."""


class NotFoundError(LangSmithError):
    """404: unknown id, or a route this LangSmith install does not have."""


class ConflictError(LangSmithError):
    """409: the thing already exists (for example the user is already a workspace member)."""


class RequestRejectedError(LangSmithError):
    """Any other 4xx, 422 validation errors included: the request itself is wrong."""


class TransientError(LangSmithError):
    """5xx, 429, timeouts or dropped connections that outlasted every retry.

    On a write, ``maybe_applied`` is true when the request may have reached the server: the
    caller must re-read the state before deciding anything (never blindly send it again).
    """

    def __init__(self, message: str, *, maybe_applied: bool = False, **kwargs):
        super().__init__(message, **kwargs)
        self.maybe_applied = maybe_applied


class UnexpectedResponseError(LangSmithError):
    """The server answered 2xx with something that is not what the API documents."""


class NotLangSmithAPIError(UnexpectedResponseError):
    """A 2xx answer that is not JSON (for example a web UI's HTML page served with status 200):
    ``LANGSMITH_ENDPOINT`` points at something that is not the LangSmith API."""


class RouteNotAvailableError(NotFoundError):
    """This LangSmith install does not serve the route (404, or a self-hosted install's UI page
    answering in its place). ``reason`` says which, for the operator."""

    def __init__(self, message: str, *, reason: str, **kwargs):
        super().__init__(message, **kwargs)
        self.reason = reason


class IncompleteListingError(LangSmithError):
    """A paged listing could not be read completely and consistently."""

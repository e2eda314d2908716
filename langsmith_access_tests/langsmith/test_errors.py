"""What an operator reads when a call fails: the request it was, what LangSmith said (never a key)
and the one-line fix the CLI prints under the failure."""

from __future__ import annotations

import pytest

from langsmith_access.langsmith import (
    AuthenticationError,
    ConflictError,
    ConnectionFailedError,
    EndpointRedirectError,
    IncompleteListingError,
    LangSmithError,
    ListingsDisagreeError,
    NotFoundError,
    NotLangSmithAPIError,
    PermissionDeniedError,
    ProvisioningInterruptedError,
    ProxyLoginError,
    ProxyRefusalError,
    RequestRejectedError,
    RouteNotAvailableError,
    SectionUnavailableError,
    TransientError,
    UnexpectedResponseError,
    WorkspaceGoneError,
)
from langsmith_access.langsmith.errors import one_line

KEY = "lsv2_sk_" + "0123456789abcdef" * 2 + "_0123456789"


def test_the_message_names_the_request_and_the_answer_but_never_a_key():
    error = NotFoundError(f"no such workspace (sent {KEY})", method="GET", path="/api/v1/workspaces/w1",
                          status_code=404, detail=f"Not found for key {KEY}")
    assert str(error) == "GET /api/v1/workspaces/w1 -> 404: no such workspace (sent lsv2_***)"
    assert error.detail == "Not found for key lsv2_***"
    # Without a whole request to name (no call was made, or no path), the message alone.
    assert str(LangSmithError("gave up", method="GET")) == "gave up"
    assert str(TransientError("timed out", method="GET", path="/api/v1/x")) == "GET /api/v1/x: timed out"


def test_what_a_server_said_is_quoted_on_one_line_without_any_control_character():
    # Not only ASCII's: NEL (U+0085) and the Unicode line and paragraph separators break a line
    # in a log viewer, and C1's CSI (U+009B) starts a terminal escape sequence as ESC [ does.
    said = "denied\r\n\x1b[31mforged\x85line\u2028two\u2029three\x9b2Jend\x7f"
    assert one_line(said) == "denied [31mforged line two three 2Jend "


def test_only_a_write_that_may_have_reached_the_server_is_maybe_applied():
    assert TransientError("x").maybe_applied is False
    assert TransientError("x", maybe_applied=True).maybe_applied is True
    assert ConnectionFailedError("x", cause="read-timeout", maybe_applied=True).maybe_applied is True


@pytest.mark.parametrize("error", [
    TransientError("server error 502", maybe_applied=True),
    ConnectionFailedError("the connection dropped", cause="dropped", maybe_applied=True),
])
def test_the_fix_for_a_write_that_may_have_been_applied_never_says_nothing_was_changed(error):
    assert "nothing was changed" not in error.fix
    assert "may or may not have been applied" in error.fix and "before sending the change again" in error.fix
    # A read, or a write that surely never arrived, changed nothing: that fix stands.
    assert "nothing was changed" in TransientError("server error 502").fix
    assert "nothing was changed" in TransientError("rate limited (429)", maybe_applied=False).fix


@pytest.mark.parametrize(("error", "caught_as"), [
    # Callers catch the general kind: a failed connection is retried and re-read as any
    # transient fault, a UI page is an unexpected answer, a route or workspace gone is a 404.
    (ConnectionFailedError("x", cause="dns"), TransientError),
    (ProvisioningInterruptedError("x"), TransientError),
    (NotLangSmithAPIError("x"), UnexpectedResponseError),
    (RouteNotAvailableError("x", reason="r"), NotFoundError),
    (WorkspaceGoneError("x", workspace_id="w1"), NotFoundError),
    (ProxyRefusalError("x"), PermissionDeniedError),
    (ProxyLoginError("x"), AuthenticationError),
])
def test_each_error_is_caught_as_its_kind(error, caught_as):
    assert isinstance(error, caught_as)


@pytest.mark.parametrize(("error_type", "says"), [
    (LangSmithError, ["langsmith-access doctor"]),
    (AuthenticationError, ["LANGSMITH_API_KEY", "lsv2_sk_", "region"]),
    (PermissionDeniedError, ["Organization Admin", "LANGSMITH_ORGANIZATION_ID", "langsmith-access doctor"]),
    (ProxyRefusalError, ["proxy or firewall", "HTTPS_PROXY"]),
    (ProxyLoginError, ["single sign-on gateway", "its own login", "LANGSMITH_ENDPOINT"]),
    (TransientError, ["LANGSMITH_ENDPOINT", "nothing was changed"]),
    (ProvisioningInterruptedError, ["langsmith-access provision", "pending again"]),
    (NotLangSmithAPIError, ["https://api.smith.langchain.com (US)", "https://eu.api.smith.langchain.com (EU)",
                            "https://<your-host>/api/v1 (self-hosted)", "https://<your-host>/<basePath>/api/v1"]),
    (EndpointRedirectError, ["the address the redirect names", "https://"]),
    (WorkspaceGoneError, ["nothing to fix", "deleted"]),
    (ListingsDisagreeError, ["sync again"]),
    (SectionUnavailableError, ["nothing to fix", "skipped"]),
])
def test_each_error_says_its_own_fix(error_type, says):
    for words in says:
        assert words in error_type.fix, (error_type.__name__, error_type.fix)
    # Its own, not its parent's (the proxy refused, not the key's roles; nothing to fix, not "retry").
    parent = error_type.__mro__[1]
    assert error_type is LangSmithError or error_type.fix != parent.fix


def test_what_an_error_keeps_for_the_operator_never_holds_a_key_and_says_why():
    # Where a redirect pointed is shown to the operator: a key the server put in it is cut.
    redirect = EndpointRedirectError("moved", location=f"https://example.com/api/v1/{KEY}")
    assert redirect.location == "https://example.com/api/v1/lsv2_***"
    # Why a route is missing, and which section a skip is about, reach the operator as given.
    assert RouteNotAvailableError("x", reason="a UI page answered").reason == "a UI page answered"
    skip = SectionUnavailableError("x", section="audit_events", reason="not in plan")
    assert (skip.section, skip.reason) == ("audit_events", "not in plan")
    # A key in the request's path or a reason (built from the path and the server's words, and
    # stored in sync_runs.skipped_sections) is cut as it is in the message.
    assert NotFoundError("x", method="GET", path=f"/api/v1/x/{KEY}").path == "/api/v1/x/lsv2_***"
    assert RouteNotAvailableError("x", reason=f"GET /api/v1/{KEY} answered 404").reason == (
        "GET /api/v1/lsv2_*** answered 404")
    assert SectionUnavailableError("x", section="s", reason=f"refused ({KEY})").reason == "refused (lsv2_***)"
    # What each kind names for the operator's fix is kept as given.
    assert ConnectionFailedError("x", cause="tls-untrusted").cause == "tls-untrusted"
    assert NotLangSmithAPIError("x", answer="text/html, 2 kB").answer == "text/html, 2 kB"
    # What came back quotes its Content-Type, where a server may have put a key.
    assert NotLangSmithAPIError("x", answer=f"content-type 'text/html; s={KEY}'").answer == (
        "content-type 'text/html; s=lsv2_***'")
    assert WorkspaceGoneError("x", workspace_id="w1").workspace_id == "w1"


@pytest.mark.parametrize(("error", "not_caught_as"), [
    # A conflict is no "not found" (a caller treating a 404 as "already gone" must not swallow
    # it), and no refusal or 404 is a transient fault to retry.
    (ConflictError("x"), NotFoundError),
    (ConflictError("x"), RequestRejectedError),
    (NotFoundError("x"), TransientError),
    (PermissionDeniedError("x"), TransientError),
    (SectionUnavailableError("x", section="s", reason="r"), PermissionDeniedError),
    (SectionUnavailableError("x", section="s", reason="r"), NotFoundError),
    # A wrong key, a request LangSmith rejected, a conflict, an answer that is not the API's or
    # a listing that does not hold together is no fault that passes: retried or said to have
    # "changed nothing, run again", the run would only fail again the same way.
    (AuthenticationError("x"), TransientError),
    (RequestRejectedError("x"), TransientError),
    (ConflictError("x"), TransientError),
    (UnexpectedResponseError("x"), TransientError),
    (NotLangSmithAPIError("x"), TransientError),
    (EndpointRedirectError("x", location="https://example.com"), TransientError),
    (IncompleteListingError("x"), TransientError),
    (ListingsDisagreeError("x"), TransientError),
])
def test_no_error_is_caught_as_another_kind(error, not_caught_as):
    assert not isinstance(error, not_caught_as)

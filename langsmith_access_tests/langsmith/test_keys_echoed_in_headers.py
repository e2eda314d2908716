"""A server can send the key it was given back anywhere, not only in an error body: in the path a
redirect points to (an SSO proxy in front of an install), in a header the client quotes when it
makes no sense. No message built from an answer carries it, whole or in part: not the client's
errors, not the doctor's lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import requests

from langsmith_access.doctor import run_checks
from langsmith_access.langsmith import (
    EndpointRedirectError,
    LangSmithError,
    NotLangSmithAPIError,
    RouteNotAvailableError,
    UnexpectedResponseError,
)
from langsmith_access.langsmith.access_records import redact_short_key
from langsmith_access.langsmith.client import _without_key
from langsmith_access_tests.langsmith.test_redirects import KEY, ORG_ID, _client, _Server


def fragments_of(key: str) -> list[str]:
    """Every 16-character piece of the key past its prefix: none may appear anywhere."""
    return [key[start:start + 16] for start in range(len("lsv2_sk_"), len(key) - 15)]


def leaked(text: str) -> list[str]:
    return [piece for piece in fragments_of(KEY) if piece in text]


def echoing_server(echoed: Callable[[str], str] = lambda key: key) -> _Server:
    """A server that sends back ``echoed`` of the X-API-Key it received: in a redirect's path for
    the org info, and as X-Pagination-Total on every other answer (a JSON list)."""

    def answer(handler) -> None:
        presented = echoed(handler.headers.get("X-API-Key") or "")
        if handler.path.startswith("/api/v1/orgs/current/info"):
            handler.send_response(307)
            handler.send_header("Location", f"https://sso.example.invalid/auth/{presented}/start")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        body = json.dumps([]).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("X-Pagination-Total", presented)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return _Server(answer)


@pytest.fixture
def echoing():
    """``echoing_server`` sending the key back whole."""
    server = echoing_server()
    yield server
    server.stop()


def test_the_clients_errors_never_quote_an_echoed_key(echoing):
    with _client(echoing.url) as client:
        with pytest.raises(EndpointRedirectError) as redirected:
            client.organization_info()
        with pytest.raises(UnexpectedResponseError) as garbled:
            list(client.list_org_members())
    for error in (redirected.value, garbled.value):
        shown = " ".join(str(part) for part in (error, error.detail, getattr(error, "location", "")))
        assert leaked(shown) == [], shown
    # Still useful: where it pointed, and what made no sense.
    assert "sso.example.invalid/auth/lsv2_***/start" in str(redirected.value)
    assert "X-Pagination-Total is not a number" in str(garbled.value)


def test_the_doctor_never_prints_an_echoed_key(echoing):
    diagnosis = run_checks({"LANGSMITH_API_KEY": KEY, "LANGSMITH_ORGANIZATION_ID": ORG_ID,
                            "LANGSMITH_ENDPOINT": echoing.url})
    text = diagnosis.text() + json.dumps(diagnosis.to_dict())
    assert "redirect to https://sso.example.invalid/auth/lsv2_***/start" in text, text
    assert leaked(text) == [], text


OTHER_KEY = "lsv2_sk_" + "q" * 32  # a key the client never sent: another service key of the org (errors mask any key)


def test_a_key_a_server_quotes_in_an_error_is_cut_to_its_prefix_even_one_it_was_not_sent():
    def answer(handler) -> None:
        body = json.dumps({"detail": f"service key {OTHER_KEY} may not list members"}).encode()
        handler.send_response(403)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server = _Server(answer)
    try:
        with _client(server.url) as client, pytest.raises(LangSmithError) as refused:
            list(client.list_org_members())
    finally:
        server.stop()
    shown = f"{refused.value} {refused.value.detail}"
    assert "q" * 16 not in shown, shown
    assert "service key lsv2_*** may not list members" in refused.value.detail


def test_the_keys_secret_echoed_without_its_prefix_is_cut_from_the_clients_errors():
    # Its prefix is how mask_keys knows a key: the secret alone, in a redirect's path or as
    # X-Pagination-Total, is cut by the client, which knows its key.
    server = echoing_server(lambda key: key.removeprefix("lsv2_sk_"))
    try:
        with _client(server.url) as client:
            with pytest.raises(EndpointRedirectError) as redirected:
                client.organization_info()
            with pytest.raises(UnexpectedResponseError) as garbled:
                list(client.list_org_members())
    finally:
        server.stop()
    for error in (redirected.value, garbled.value):
        shown = " ".join(str(part) for part in (error, error.detail, getattr(error, "location", "")))
        assert leaked(shown) == [], shown
    assert "sso.example.invalid/auth/***/start" in str(redirected.value)
    assert "X-Pagination-Total is not a number" in str(garbled.value)


@pytest.mark.parametrize("echoed", [lambda key: key, lambda key: key.removeprefix("lsv2_sk_")],
                         ids=["whole key", "secret without its prefix"])
def test_a_key_echoed_in_the_content_type_of_a_page_that_is_not_json_is_never_quoted(echoed):
    # The content type is how the client and the doctor tell a web page from the API: both quote
    # it, and the error keeps it in ``answer``. A key the server put in it is cut, as in any
    # header the client quotes.
    def answer(handler) -> None:
        body = b"<!doctype html><html></html>"
        handler.send_response(200)
        handler.send_header("Content-Type", f"text/html; session={echoed(handler.headers.get('X-API-Key') or '')}")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server = _Server(answer)
    try:
        with _client(server.url) as client:
            with pytest.raises(NotLangSmithAPIError) as not_the_api:
                client.organization_info()
            with pytest.raises(RouteNotAvailableError) as ui_page:
                client.list_enriched_members()
            probe = client.probe()
        diagnosis = run_checks({"LANGSMITH_API_KEY": KEY, "LANGSMITH_ORGANIZATION_ID": ORG_ID,
                                "LANGSMITH_ENDPOINT": server.url})
    finally:
        server.stop()
    for error in (not_the_api.value, ui_page.value):
        shown = " ".join(str(part) for part in (error, error.detail, getattr(error, "answer", ""),
                                                  getattr(error, "reason", "")))
        assert leaked(shown) == [], shown
    assert leaked(probe.content_type) == [], probe.content_type
    doctor_said = diagnosis.text() + json.dumps(diagnosis.to_dict())
    assert leaked(doctor_said) == [], doctor_said
    # Still useful: what came back instead of JSON.
    assert "a body that is not JSON (content-type 'text/html; session=" in str(not_the_api.value)
    assert probe.content_type.startswith("text/html; session=")


def test_the_key_spelt_in_json_escapes_is_found_and_every_other_escape_reads_as_before():
    # JSON may spell any character as \uXXXX: the client writes a key's characters plainly
    # before it looks for the key (test_inventory_free_text_secrets.py runs a whole sync so),
    # and nothing a JSON reader reads changes: an escaped backslash before "u006c" is text, an
    # escaped quote or non-ASCII letter stays escaped.
    spelt = "".join(f"\\u{ord(char):04x}" for char in KEY)
    page = rf'["{spelt}", "\\u006c", "\\\u006c", "caf\u00e9 \u0022quoted\u0022", "\u002D\u0041\u007a"]'
    response = requests.Response()
    response.status_code, response._content = 200, page.encode()
    response.headers["Content-Type"] = "application/json"
    read = json.loads(_without_key(response, KEY).content)
    assert read == [redact_short_key(KEY)[0], "\\u006c", "\\l", 'café "quoted"', "-Az"], read
    assert read[1:] == json.loads(page)[1:]

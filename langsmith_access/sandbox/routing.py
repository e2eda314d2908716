"""What every sandbox route is made of: the request and response, the errors that become
responses, query and body parsing with FastAPI's validation errors, paging, and the route
table's entries. api.py and access_api.py build their handlers from these."""

from __future__ import annotations

import email.message
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, overload

# Marks a response without a body (204).
NO_BODY = object()



@dataclass(frozen=True)
class HtmlPage:
    """A non-JSON body: what a self-hosted install's web UI (nginx ``try_files ... /index.html``)
    answers, with status 200, on paths its API does not own."""

    text: str = (
        "<!doctype html><html><head><title>LangSmith</title></head>"
        '<body><div id="root"></div><script src="/assets/index.js"></script></body></html>'
    )
    content_type: str = "text/html"


class Headers(Protocol):
    """What the sandbox reads of a request's headers: one value by name, None when absent."""

    def get(self, name: str, /) -> str | None: ...


@dataclass
class ApiRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Headers  # case-insensitive lookups (an http.client.HTTPMessage)
    body: bytes = b""
    client_ip: str = "127.0.0.1"
    # The id of the API key that authenticated it (set once the key is checked): the audit
    # log's credential for what the request changes.
    caller_key_id: str | None = None


@dataclass
class ApiResponse:
    status: int
    body: Any = NO_BODY
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Raised by checks and handlers; becomes the response."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.response = ApiResponse(status, body)


def detail_error(status: int, detail: str) -> ApiError:
    return ApiError(status, {"detail": detail})


PLATFORM_PREFIXES = ("/v1/platform/", "/api/v1/platform/")


def is_platform_path(path: str) -> bool:
    """Whether ``path`` is a Go platform route (``/v1/platform/...``, ``/api/v1/platform/...``)."""
    return path.startswith(PLATFORM_PREFIXES)


def route_error(path: str, status: int, message: str) -> ApiError:
    """An error in the shape of the backend that owns ``path``: platform routes answer
    ``{"error": ...}``, the others ``{"detail": ...}`` (langsmith-api.md, "Hosts, headers,
    errors")."""
    return ApiError(status, {"error": message} if is_platform_path(path) else {"detail": message})


def validation_error(loc: list, msg: str, error_type: str) -> ApiError:
    """A FastAPI-style 422."""
    return ApiError(422, {"detail": [{"loc": loc, "msg": msg, "type": error_type}]})


# ------------------------------------------------------------------ query and body parsing

TRUE_WORDS = {"true", "1", "yes", "on", "t", "y"}
FALSE_WORDS = {"false", "0", "no", "off", "f", "n"}


def last_value(query: dict[str, list[str]], name: str) -> str | None:
    """The last value a query parameter was given (None when absent)."""
    values = query.get(name)
    return values[-1] if values else None


def query_int(query, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = last_value(query, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_error(
            ["query", name],
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
        ) from None
    if value < minimum:
        raise validation_error(
            ["query", name],
            f"Input should be greater than or equal to {minimum}",
            "greater_than_equal",
        )
    if maximum is not None and value > maximum:
        raise validation_error(
            ["query", name], f"Input should be less than or equal to {maximum}", "less_than_equal"
        )
    return value


@overload
def query_bool(query, name: str, default: bool) -> bool: ...
@overload
def query_bool(query, name: str, default: bool | None) -> bool | None: ...
def query_bool(query, name: str, default: bool | None) -> bool | None:
    raw = last_value(query, name)
    if raw is None:
        return default
    if raw.lower() in TRUE_WORDS:
        return True
    if raw.lower() in FALSE_WORDS:
        return False
    raise validation_error(
        ["query", name],
        "Input should be a valid boolean, unable to interpret input",
        "bool_parsing",
    )


def query_uuids(query, name: str) -> set[str]:
    result = set()
    for index, raw in enumerate(query.get(name, [])):
        parsed = parse_uuid(raw)
        if parsed is None:
            raise validation_error(
                ["query", name, index], "Input should be a valid UUID", "uuid_parsing"
            )
        result.add(parsed)
    return result


def parse_uuid(value: Any) -> str | None:
    """The canonical form of a UUID string, or None if ``value`` is not one."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def path_uuid(value: str, name: str) -> str:
    parsed = parse_uuid(value)
    if parsed is None:
        raise validation_error(["path", name], "Input should be a valid UUID", "uuid_parsing")
    return parsed


def is_json_media_type(content_type: str | None) -> bool:
    """Whether FastAPI reads a body sent with this ``Content-Type`` as JSON: none given,
    ``application/json`` or ``application/*+json`` (parameters such as charset aside)."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def json_object_body(request: ApiRequest, *, required: bool = True) -> dict:
    """The JSON object a route's body model reads, as FastAPI hands it over: an empty body is no
    body ("Field required" at ["body"], or ``{}`` where the spec makes the body optional), a
    body sent under another media type stays bytes that no model accepts, malformed JSON is a
    decode error."""
    if not request.body:
        if required:
            raise validation_error(["body"], "Field required", "missing")
        return {}
    if not is_json_media_type(request.headers.get("Content-Type")):
        raise validation_error(
            ["body"],
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type",
        )
    try:
        body = json.loads(request.body)
    except ValueError:
        raise validation_error(["body", 0], "JSON decode error", "json_invalid") from None
    if not isinstance(body, dict):
        raise validation_error(
            ["body"],
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type",
        )
    return body


@overload
def body_uuid(body: dict, name: str, *, required: Literal[True]) -> str: ...
@overload
def body_uuid(body: dict, name: str, *, required: bool) -> str | None: ...
def body_uuid(body: dict, name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise validation_error(["body", name], "Field required", "missing")
        return None
    parsed = parse_uuid(value)
    if parsed is None:
        raise validation_error(["body", name], "Input should be a valid UUID", "uuid_parsing")
    return parsed


def body_bool(body: dict, name: str, default: bool) -> bool:
    """A boolean body field as pydantic's lax mode reads JSON: true/false, 0/1, or the words
    query_bool accepts; anything else is a 422."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in TRUE_WORDS | FALSE_WORDS:
        return value.lower() in TRUE_WORDS
    raise validation_error(["body", name], "Input should be a valid boolean", "bool_parsing")


@overload
def body_str(body: dict, name: str, default: str) -> str: ...
@overload
def body_str(body: dict, name: str, default: None) -> str | None: ...
def body_str(body: dict, name: str, default: str | None) -> str | None:
    """A string body field, ``default`` when null or absent (pydantic does not turn numbers into
    strings): 422 otherwise."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise validation_error(["body", name], "Input should be a valid string", "string_type")
    return value


def paged(rows: list, offset: int, limit: int) -> tuple[list, dict[str, str]]:
    """One page of ``rows`` and its ``X-Pagination-Total`` header."""
    return rows[offset : offset + limit], {"X-Pagination-Total": str(len(rows))}



@dataclass
class Route:
    method: str
    template: str  # e.g. "/api/v1/workspaces/current/members/{identity_id}"
    handler: Callable
    scope: str  # "organization" | "workspace": which headers it needs
    # The section of DESIGN.md section 9 it serves (None: the core routes); an install without
    # that section answers 404 there.
    section: str | None = None
    pattern: re.Pattern = field(init=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        self.pattern = re.compile(f"^{regex}$")

"""Validate API responses against the official LangSmith OpenAPI subset.

    validate_response("/api/v1/orgs/current/members/active", "GET", 200, response.json())

looks up the response schema the spec documents for that path, method and status, resolves its
``$ref``s within the spec, and raises ``jsonschema.ValidationError`` if the body does not fit
(formats such as ``uuid`` and ``date-time`` are checked too).

Statuses the spec does not document for a route (most 4xx and 5xx) are checked against
``UNDOCUMENTED_ERROR_SCHEMA``: LangSmith's error bodies carry a string ``detail``, and the 403
for a missing ``X-Tenant-Id`` also carries ``error``. The Go platform routes (``/v1/platform/``)
refuse a key or an organization (401, 403) with a string ``error`` instead
(``PLATFORM_REFUSAL_SCHEMA``), and answer their other undocumented statuses with a string
``error`` or ``detail``; their documented errors, whose schemas require no field, are held to
the same. A 204 must have no body.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS31Validator

SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "langsmith-openapi-subset.json"

UNDOCUMENTED_ERROR_SCHEMA = {
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"type": "string"}, "error": {"type": "string"}},
}
# langsmith-api.md, "Hosts, headers, errors": "platform routes answer {"error": "..."}".
PLATFORM_REFUSAL_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
# A status the spec leaves out on a Go platform route (a SCIM-token body it cannot read, an
# install without the route): the Go service's {"error": ...} or the router's {"detail": ...}.
PLATFORM_UNDOCUMENTED_ERROR_SCHEMA = {"anyOf": [PLATFORM_REFUSAL_SCHEMA, UNDOCUMENTED_ERROR_SCHEMA]}
PLATFORM_PREFIX = "/v1/platform/"
PLATFORM_REFUSALS = (401, 403)
# FastAPI's validation errors, for routes whose 422 the spec leaves out (they take no params).
VALIDATION_ERROR_SCHEMA = {"$ref": "#/components/schemas/HTTPValidationError"}


@functools.cache
def load_spec() -> dict:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


def response_schema(path_template: str, method: str, status: int) -> dict | None:
    """The JSON schema of that response; None when the response must have no body (204).

    KeyError if the spec has no such path or method.
    """
    spec = load_spec()
    operation = spec["paths"][path_template][method.lower()]
    if status == 204:
        return None
    documented = operation.get("responses", {}).get(str(status))
    if documented is not None:
        schema = documented.get("content", {}).get("application/json", {}).get("schema", {})
        if path_template.startswith(PLATFORM_PREFIX) and status >= 400:
            # The platform routes document their errors as abac.ErrorResponse,
            # scim.ErrorResponse or a map of strings, none of which requires a field: {} or
            # {"message": ...} would pass. Hold them to what the undocumented ones must carry.
            carries = PLATFORM_REFUSAL_SCHEMA if status in PLATFORM_REFUSALS else PLATFORM_UNDOCUMENTED_ERROR_SCHEMA
            return {"allOf": [schema, carries]}
        return schema
    if status == 422:
        return VALIDATION_ERROR_SCHEMA
    if path_template.startswith(PLATFORM_PREFIX) and status in PLATFORM_REFUSALS:
        return PLATFORM_REFUSAL_SCHEMA
    if path_template.startswith(PLATFORM_PREFIX):
        return PLATFORM_UNDOCUMENTED_ERROR_SCHEMA
    return UNDOCUMENTED_ERROR_SCHEMA


@functools.cache
def _validator(path_template: str, method: str, status: int) -> OAS31Validator | None:
    schema = response_schema(path_template, method, status)
    if schema is None:
        return None
    # Put the spec's components beside the schema so "#/components/schemas/..." resolves.
    rooted = dict(copy.deepcopy(schema), components=load_spec()["components"])
    return OAS31Validator(rooted, format_checker=OAS31Validator.FORMAT_CHECKER)


def validate_response(path_template: str, method: str, status: int, body: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` fits the documented response.

    ``body`` is the parsed JSON (None for a response without a body).
    """
    validator = _validator(path_template, method.upper(), status)
    if validator is None:
        if body is not None:
            raise AssertionError(f"a {status} response must have no body, got {body!r}")
        return
    validator.validate(body)

"""The schema helper itself: it must reject what the spec rejects."""

from __future__ import annotations

import jsonschema
import pytest

from langsmith_access_tests.sandbox.schema import response_schema, validate_response

ROLE = {
    "id": "23b8c1e9-3924-46de-beb1-3b9046685257",
    "name": "WORKSPACE_VIEWER",
    "display_name": "Viewer",
    "description": "Read-only access to a workspace.",
    "permissions": ["workspaces:read"],
}


def test_accepts_a_valid_body():
    validate_response("/api/v1/orgs/current/roles", "GET", 200, [ROLE])


@pytest.mark.parametrize(
    "bad_role",
    [
        {**ROLE, "id": "not-a-uuid"},
        {k: v for k, v in ROLE.items() if k != "display_name"},
        {**ROLE, "permissions": "x"},
    ],
)
def test_rejects_a_body_that_breaks_the_schema(bad_role):
    with pytest.raises(jsonschema.ValidationError):
        validate_response("/api/v1/orgs/current/roles", "GET", 200, [bad_role])


def test_checks_date_times():
    workspace = {
        "id": ROLE["id"],
        "created_at": "yesterday",
        "display_name": "a",
        "is_personal": False,
        "is_deleted": False,
    }
    with pytest.raises(jsonschema.ValidationError):
        validate_response("/api/v1/workspaces", "GET", 200, [workspace])


def test_documented_and_undocumented_errors():
    # Documented: FastAPI's 422 and the platform route's 400.
    validate_response(
        "/api/v1/orgs/current/members/active",
        "GET",
        422,
        {"detail": [{"loc": ["query", "limit"], "msg": "m", "type": "t"}]},
    )
    with pytest.raises(jsonschema.ValidationError):
        validate_response("/api/v1/orgs/current/members/active", "GET", 422, {"detail": "bad"})
    validate_response("/v1/platform/orgs/current/members", "GET", 400, {"error": "bad limit"})
    # Undocumented statuses need a string detail.
    validate_response("/api/v1/orgs/current/info", "GET", 403, {"detail": "Forbidden"})
    with pytest.raises(jsonschema.ValidationError):
        validate_response("/api/v1/orgs/current/info", "GET", 403, {"message": "Forbidden"})
    # ...except the platform routes' refusals, which carry a string error.
    validate_response("/v1/platform/orgs/current/members", "GET", 403, {"error": "Forbidden"})
    with pytest.raises(jsonschema.ValidationError):
        validate_response("/v1/platform/orgs/current/members", "GET", 403, {"detail": "Forbidden"})
    # ...and their other undocumented statuses a string error (or detail), nothing else.
    validate_response("/v1/platform/orgs/current/scim/tokens", "POST", 400, {"error": "invalid JSON body"})
    validate_response("/v1/platform/orgs/current/scim/tokens", "GET", 404, {"detail": "Not Found"})
    with pytest.raises(jsonschema.ValidationError):
        validate_response("/v1/platform/orgs/current/scim/tokens", "POST", 400, {"message": "bad"})
    # Their documented errors too: the spec's schemas for them require no field.
    validate_response("/v1/platform/orgs/current/access-policies", "GET", 403, {"error": "Forbidden"})
    validate_response("/v1/platform/orgs/current/scim/tokens/{scim_token_id}", "GET", 404, {"error": "not found"})
    validate_response("/v1/platform/orgs/current/scim/tokens", "GET", 503, {"detail": "Service Unavailable"})
    for status, body in ((403, {}), (403, {"message": "Forbidden"}), (403, {"detail": "Forbidden"}),
                         (404, {"message": "not found"}), (500, {})):
        path = "/v1/platform/orgs/current/access-policies/{access_policy_id}"
        with pytest.raises(jsonschema.ValidationError):
            validate_response(path, "GET", status, body)
    with pytest.raises(jsonschema.ValidationError):
        validate_response("/v1/platform/orgs/current/members", "GET", 401, {"message": "Unauthorized"})


def test_no_content_has_no_body():
    assert (
        response_schema("/api/v1/workspaces/current/members/{identity_id}", "DELETE", 204) is None
    )
    validate_response("/api/v1/workspaces/current/members/{identity_id}", "DELETE", 204, None)
    with pytest.raises(AssertionError):
        validate_response("/api/v1/workspaces/current/members/{identity_id}", "DELETE", 204, {})


def test_unknown_route_is_a_key_error():
    with pytest.raises(KeyError):
        response_schema("/api/v1/nowhere", "GET", 200)

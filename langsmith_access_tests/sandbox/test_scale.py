"""A large org: 20,000 members in 1,000 workspaces, served in 500-row pages."""

from __future__ import annotations

import pytest
import requests

from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access_tests.sandbox.schema import validate_response


@pytest.fixture(scope="module")
def large_sandbox():
    org = generate_org(seed=11, members=20_000, workspaces=1_000)
    with SandboxServer(org) as server:
        yield server


def test_large_org_shape(large_sandbox):
    org = large_sandbox.org
    assert len(org.members) == 20_000
    assert len(org.shared_workspaces()) == 1_000
    assert 90_000 <= org.membership_count() <= 110_000


@pytest.mark.parametrize(
    "path", ["/api/v1/orgs/current/members/active", "/v1/platform/orgs/current/members"]
)
def test_large_org_serves_500_row_pages(large_sandbox, path):
    org = large_sandbox.org
    headers = {
        "X-API-Key": large_sandbox.api_key,
        "X-Organization-Id": large_sandbox.organization_id,
    }
    response = requests.get(
        large_sandbox.url + path,
        params={"limit": 500, "offset": 10_000},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200
    rows = response.json()
    assert len(rows) == 500
    validate_response(path, "GET", 200, rows)
    is_enriched = path.startswith("/v1/platform")
    total = len(org.members) + (len(org.pending_invites) if is_enriched else 0)
    assert response.headers["X-Pagination-Total"] == str(total)

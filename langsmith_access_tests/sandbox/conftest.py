"""Fixtures for the sandbox tests: a small generated org, a running server, and a caller that
sends requests with the right headers and checks every response against the official spec."""

from __future__ import annotations

import re

import pytest
import requests

from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access_tests.sandbox.schema import load_spec, validate_response


def spec_path_template(path: str) -> str | None:
    """The spec's path template for a concrete path: exact paths win over templated ones. The
    spec names the Go platform routes ``/v1/platform/...``; ``/api/v1/platform/...`` is the same
    route (langsmith-api.md, "Deployments and base URLs")."""
    paths = load_spec()["paths"]
    if path.startswith("/api/v1/platform/"):
        path = path[len("/api"):]
    if path in paths:
        return path
    for template in paths:
        regex = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(regex, path):
            return template
    return None


def check_against_spec(method: str, path: str, response: requests.Response) -> None:
    """Validate the response body against the spec, when the spec knows the route."""
    template = spec_path_template(path)
    if template is None or method.lower() not in load_spec()["paths"][template]:
        return
    body = response.json() if response.content else None
    validate_response(template, method, response.status_code, body)


class SandboxCaller:
    """``requests`` with the sandbox's URL and headers; every response is checked against the spec.

    ``headers`` adds or overrides headers; ``omit`` drops default ones (``X-API-Key``,
    ``X-Organization-Id``).
    """

    def __init__(self, sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self.session = requests.Session()

    def request(
        self,
        method: str,
        path: str,
        *,
        tenant_id: str | None = None,
        params=None,
        json=None,
        data: bytes | str | None = None,
        headers: dict | None = None,
        omit: tuple[str, ...] = (),
        timeout: float = 10,
    ) -> requests.Response:
        sent_headers = {
            "X-API-Key": self.sandbox.api_key,
            "X-Organization-Id": self.sandbox.organization_id,
        }
        if tenant_id is not None:
            sent_headers["X-Tenant-Id"] = tenant_id
        sent_headers.update(headers or {})
        for name in omit:
            sent_headers.pop(name, None)
        response = self.session.request(
            method,
            self.sandbox.url + path,
            params=params,
            json=json,
            data=data,
            headers=sent_headers,
            timeout=timeout,
        )
        check_against_spec(method, path, response)
        return response

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def scan(self, path: str, *, limit: int, params=None, **kwargs) -> list[dict]:
        """Every row of a paged route, page after page until a short page."""
        rows, offset = [], 0
        while True:
            response = self.get(
                path, params={**(params or {}), "limit": limit, "offset": offset}, **kwargs
            )
            assert response.status_code == 200, response.text
            page = response.json()
            rows.extend(page)
            if len(page) < limit:
                return rows
            offset += limit


@pytest.fixture
def org():
    """A small org: 40 members, 5 shared workspaces, plus personal and deleted ones."""
    return generate_org(seed=7, members=40, workspaces=5)


@pytest.fixture
def sandbox(org):
    with SandboxServer(org) as server:
        yield server


@pytest.fixture
def caller(sandbox):
    caller = SandboxCaller(sandbox)
    yield caller
    caller.session.close()


@pytest.fixture
def make_sandbox():
    """Start a sandbox with custom options: ``make_sandbox(org, delete_response="null")``.
    Returns ``(server, caller)``; both are stopped/closed after the test."""
    started = []

    def start(org=None, **options):
        server = SandboxServer(org or generate_org(seed=7, members=40, workspaces=5), **options)
        server.start()
        caller = SandboxCaller(server)
        started.append((server, caller))
        return server, caller

    yield start
    for server, caller in started:
        caller.session.close()
        server.stop()

"""Provisioning fixtures: ``template`` (one synced database per session) and ``env`` (a copy of
it with a sandbox serving the same org) live in ``langsmith_access_tests/synced.py`` and are
registered for every test package by the root conftest."""

from langsmith_access_tests.synced import API_KEY, MEMBERS, SEED, WORKSPACES, WRITES, new_org  # noqa: F401

"""Small assertions shared by the sandbox tests."""

from __future__ import annotations

from itertools import pairwise


def assert_in_api_order(keys: list[tuple[str, str]]) -> None:
    """``(created_at, id)`` pairs are newest first, ties broken by id ascending."""
    for newer, older in pairwise(keys):
        assert newer[0] > older[0] or (newer[0] == older[0] and newer[1] < older[1]), (newer, older)

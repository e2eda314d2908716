"""What each dbt test checks, in words: the description of the asset check Dagster shows for it
(an asset's Checks tab, a failed check's page). A test's own ``description`` in the project
wins; otherwise it is said from the generic test and its arguments, so every check has one
without repeating each rule in prose beside its YAML."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Arguments = Mapping[str, Any]


def describe_test(node: Mapping[str, Any]) -> str | None:
    """The description of a dbt test node of the manifest; None for a test this module does
    not know and that has no description of its own."""
    own = (node.get("description") or "").strip()
    if own:
        return own
    metadata = node.get("test_metadata") or {}
    describe = _GENERIC_TESTS.get(metadata.get("name") or "")
    return describe(metadata.get("kwargs") or {}) if describe else None


def _model(reference: str) -> str:
    """``ref('roles')`` -> ``roles``."""
    found = re.fullmatch(r"\s*ref\(\s*['\"]([^'\"]+)['\"]\s*\)\s*", reference or "")
    return found.group(1) if found else reference


def _columns(columns: list[str]) -> str:
    return ", ".join(columns)


def _row_rules(arguments: Arguments) -> str:
    rules = []
    if arguments.get("primary_key"):
        rules.append(f"each of {_columns(arguments['primary_key'])} is filled in and never repeated")
    if arguments.get("not_null"):
        rules.append(f"{_columns(arguments['not_null'])} are filled in on every row")
    for column, values in (arguments.get("accepted_values") or {}).items():
        rules.append(f"{column} is one of {', '.join(map(str, values))}")
    for column, target in (arguments.get("references") or {}).items():
        rules.append(f"every {column} is a {target['field']} of {_model(target['to'])}")
    if arguments.get("unique_combination"):
        rules.append(f"no two rows share {_columns(arguments['unique_combination'])}")
    return "; ".join(rules) + ". Fails with a row per violation (the rule, the column, the value)."


_GENERIC_TESTS: dict[str, Callable[[Arguments], str]] = {
    "primary_key": lambda a: f"{a['column_name']} identifies rows: filled in and never repeated.",
    "relationships": lambda a: (
        f"Every {a['column_name']} is a {a['field']} of {_model(a['to'])} (none points at nothing)."),
    "not_null_columns": lambda a: f"{_columns(a['columns'])} are filled in on every row.",
    "row_rules": _row_rules,
    "one_role_per_user_and_workspace": lambda a: (
        "A member holds at most one role in a workspace (LangSmith's rule)."),
    "not_in_personal_or_deleted_workspace": lambda a: (
        f"No {a['column_name']} names a personal or a deleted workspace."),
    "intervals_do_not_overlap": lambda a: (
        f"The intervals of one {a['key']} never overlap (at most one open), and none ends "
        "before it starts."),
    "no_unexplained_changes_to_roles": lambda a: (
        f"The latest sync saw no change to {', '.join(a['role_names'])} that provisioning did not "
        "make (a warning: the sync still publishes; report_unexplained_changes lists them)."),
}

"""One writer per table (DESIGN.md section 12, STYLE.md "Learned in this codebase").

dbt is the only writer of the modelled tables: everything dbt models and snapshots build. Python
writes the raw tables, the provisioning queue and audit, ``sync_runs`` and the notification
outbox, and nothing else. If Python wrote ``grants`` too, every report built on it would go
stale the moment it did. Checked twice: what a real sync leaves in the database (each relation
is dbt's or one of Python's few), and the package's SQL (no statement writes a relation dbt
builds).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from langsmith_access.transform import prepare_manifest
from langsmith_access_tests.helpers import query

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "langsmith_access"
# Section 12: the tables of the analysts' schema that Python owns: the provisioning queue and its
# audit (requests, approvals, events), sync_runs and the outbox. Everything else in main is dbt's.
PYTHON_OWNED_MAIN = {"provisioning_requests", "provisioning_approvals", "provisioning_events", "sync_runs",
                     "notifications"}
RAW_SCHEMA = "raw"
# A SQL statement that writes a relation, and the relation it writes (schema-qualified or not,
# quoted or not). Keywords in capitals, as the package writes its SQL: prose ("update grants
# without waiting") is no statement. Statements whose target is built at run time (an
# f-string's {name}) are not matched: the first test below still sees what they leave behind.
SQL_WRITE = re.compile(
    r"""\b(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?|ALTER\s+TABLE|
           DROP\s+(?:TABLE|VIEW)(?:\s+IF\s+EXISTS)?|
           CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+)?(?:TABLE|VIEW)(?:\s+IF\s+NOT\s+EXISTS)?)
        \s+((?:"?\w+"?\.){0,2}"?\w+"?)(?=[\s(;"']|$)""",
    re.VERBOSE,
)


def dbt_relations() -> set[tuple[str, str]]:
    """(schema, name) of every relation the dbt project's models and snapshots build."""
    manifest = json.loads(prepare_manifest().read_text())
    return {(node["schema"], node["alias"] or node["name"]) for node in manifest["nodes"].values()
            if node["resource_type"] in ("model", "snapshot", "seed")}


def written_relations(source: str) -> list[tuple[int, str, str]]:
    """(line, schema, name) of every relation a module's SQL writes; an unqualified name is main's."""
    written = []
    for match in SQL_WRITE.finditer(source):
        parts = match.group(1).replace('"', "").split(".")
        schema = parts[-2] if len(parts) > 1 else "main"
        written.append((source.count("\n", 0, match.start()) + 1, schema, parts[-1]))
    return written


def test_every_relation_a_sync_leaves_is_dbts_or_one_python_owns(template):
    built_by_dbt = dbt_relations()
    assert {schema for schema, _ in built_by_dbt} <= {"main", "staging", "snapshots"}, built_by_dbt
    assert not any(name in PYTHON_OWNED_MAIN for _, name in built_by_dbt), "dbt models a table Python owns"
    relations = set(query(template.path, "SELECT table_schema, table_name FROM information_schema.tables "
                                         "WHERE table_schema <> 'information_schema'"))
    owned_by_python = {("main", name) for name in PYTHON_OWNED_MAIN}
    neither = {(schema, name) for schema, name in relations
               if schema != RAW_SCHEMA and (schema, name) not in built_by_dbt | owned_by_python}
    assert neither == set(), "a table in the analysts' database that neither dbt builds nor section 12 gives Python"
    # ...and each of them is there, so the rule is checked against a real sync, not an empty file.
    assert owned_by_python <= relations and ("main", "grants") in relations


def test_the_package_sql_never_writes_a_relation_dbt_builds():
    built_by_dbt = dbt_relations()
    offending = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        for line, schema, name in written_relations(path.read_text(encoding="utf-8")):
            if (schema, name) in built_by_dbt:
                offending.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{line} writes {schema}.{name}")
    assert offending == []


@pytest.mark.parametrize(("sql", "written"), [
    ("INSERT INTO main.grants (grant_id) VALUES (?)", ("main", "grants")),
    ('UPDATE "main"."grants" SET role_id = ?', ("main", "grants")),
    ("DELETE FROM grant_history WHERE user_id = ?", ("main", "grant_history")),
    ("CREATE OR REPLACE TABLE staging.stg_langsmith__roles AS SELECT 1", ("staging", "stg_langsmith__roles")),
    ("INSERT INTO raw.roles SELECT * FROM incoming", ("raw", "roles")),
])
def test_the_check_sees_a_write_however_it_is_spelled(sql, written):
    assert [found[1:] for found in written_relations(f'conn.execute("{sql}")')] == [written]


def test_the_check_takes_no_prose_for_a_statement():
    assert written_relations('"""Provisioning should update grants without waiting."""') == []

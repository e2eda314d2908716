"""The README's analyst guide runs: every ```sql block of its "## Analyst guide" section runs
against a synced database, and returns rows unless it says it may not."""

import re
import shutil
from pathlib import Path

import duckdb
import pytest

from langsmith_access import runner
from langsmith_access.names import INVENTORY_JOB
from langsmith_access.sandbox import SandboxServer
from langsmith_access.store.database import AccessDatabase
from langsmith_access_tests.helpers import point_at
from langsmith_access_tests.synced import API_KEY, new_org

README = Path(__file__).resolve().parents[1] / "README.md"
MAY_BE_EMPTY = "-- may return no rows"


def analyst_guide() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Analyst guide\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def test_sixteen_questions_with_sql():
    section = analyst_guide()
    assert len(blocks(section, "sql")) == 16
    numbers = [int(n) for n in re.findall(r"^(\d+)\. \*\*", section, re.M)]
    assert numbers == list(range(1, 17))
    assert "(#tables)" in section  # the table reference links to the Tables section
    # Six of them answer with the whole access picture (DESIGN.md section 9).
    picture = ("effective_access", "effective_permissions", "report_unused_access",
               "report_credential_hygiene", "is_scim_managed", "skipped_sections")
    assert all(any(name in sql for sql in blocks(section, "sql")) for name in picture)


@pytest.fixture(scope="module")
def whole_picture(template, tmp_path_factory):
    """The synced template with the inventory read too (credentials, audit log, ...): what
    `sync --all-sections` publishes."""
    database = AccessDatabase(tmp_path_factory.mktemp("whole-picture") / "access.duckdb")
    shutil.copyfile(template.path, database.path)
    shutil.copyfile(template.working_path, database.working_path)
    with pytest.MonkeyPatch.context() as monkeypatch, SandboxServer(new_org(), api_key=API_KEY) as sandbox:
        point_at(monkeypatch, sandbox, database.path)
        outcome = runner.run_job(INVENTORY_JOB, {})
        assert outcome.success, outcome.failure
    return database


def test_every_query_runs_against_a_synced_database(whole_picture):
    with duckdb.connect(str(whole_picture.path), read_only=True) as conn:
        for number, sql in enumerate(blocks(analyst_guide(), "sql"), start=1):
            try:
                rows = conn.execute(sql).fetchall()
            except duckdb.Error as error:
                raise AssertionError(f"question {number} fails: {error}\n{sql}") from None
            if MAY_BE_EMPTY not in sql:
                assert rows, f"question {number} returned no rows on a synced database:\n{sql}"


def test_the_python_example_runs(template, monkeypatch, tmp_path):
    [example] = [b for b in blocks(analyst_guide(), "python") if "duckdb.connect" in b]
    code = example.replace('"data/langsmith_access.duckdb"', repr(str(template.path)))
    assert code != example
    namespace: dict = {}
    exec(compile(code, "README analyst guide", "exec"), namespace)
    assert len(namespace["grants"]) > 0 and "grant_id" in namespace["grants"].columns


def test_the_parquet_copy_is_where_the_guide_says(template):
    # "<db stem>_parquet/ beside the database", one file per table of schema main.
    parquet = template.path.with_name(template.path.name.removesuffix(".duckdb") + "_parquet")
    assert (parquet / "grants.parquet").is_file() and (parquet / "users.parquet").is_file()
    with duckdb.connect() as conn:
        (rows,) = conn.execute(f"SELECT count(*) FROM read_parquet('{parquet / 'grants.parquet'}')").fetchone()
    assert rows > 0

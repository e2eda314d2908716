"""The README's analyst guide runs: every ```sql block of its "## Analyst guide" section runs
against a synced database, and returns rows unless it says it may not; so do the README's other
one-org SQL ("Tables", "Drift") and the snippets that attach the database to a file of one's own."""

import json
import re
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

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


def test_eighteen_questions_with_sql():
    section = analyst_guide()
    assert len(blocks(section, "sql")) == 18
    numbers = [int(n) for n in re.findall(r"^(\d+)\. \*\*", section, re.M)]
    assert numbers == list(range(1, 19))
    # The guide's heading and the Tables section's pointer to it count them too (the heading once
    # said "Sixteen" after two questions were added).
    assert "\n### Eighteen questions, with their SQL\n" in section
    assert "with eighteen example questions, in the\n[Analyst guide]" in README.read_text(encoding="utf-8")
    assert "(#tables)" in section  # the table reference links to the Tables section
    # Eight of them answer with the whole access picture (DESIGN.md section 9).
    picture = ("effective_access", "effective_permissions", "report_unused_access",
               "report_credential_hygiene", "is_scim_managed", "report_access_policy_reach",
               "access_policy_resources", "skipped_sections")
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


def section(heading: str) -> str:
    """The README's text under ``heading`` up to the next heading of its level or above (a line
    starting with ``#`` inside a code block is no heading)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(heading)
    level = len(heading.split(" ")[0])
    fenced = False
    for end in range(start + 1, len(lines)):
        fenced ^= lines[end].lstrip().startswith("```")
        if not fenced and re.match(rf"#{{1,{level}}} ", lines[end]):
            break
    else:
        end = len(lines)
    return "\n".join(lines[start:end]) + "\n"


def test_the_other_sql_of_the_readme_runs_against_a_synced_database(whole_picture):
    # The ```sql blocks outside the analyst guide that read one org's database: "Tables" (who had
    # access at a time; everyone in the generated org's two 'Platform's) and "Drift".
    tables = blocks(section("## Tables"), "sql")
    drift = [sql for sql in blocks(section("## Governing access"), "sql") if "report_unexplained_changes" in sql]
    assert len(tables) == 2 and len(drift) == 1
    with duckdb.connect(str(whole_picture.path), read_only=True) as conn:
        for sql in tables + drift:
            try:
                rows = conn.execute(sql).fetchall()
            except duckdb.Error as error:
                raise AssertionError(f"fails: {error}\n{sql}") from None
            if "'Platform'" in sql:
                assert len({row[0] for row in rows}) == 2, "the two 'Platform' workspaces, told apart by id"


def test_the_readme_snippets_that_attach_the_database_run(template, tmp_path):
    # The analyst guide's own table beside the database, and the review's table of revokes: each
    # in a DuckDB file of one's own, with the analysts' database attached read-only.
    [own] = [b for b in blocks(analyst_guide(), "sh") if "ATTACH" in b]
    [to_revoke] = re.findall(r"`(ATTACH [^`]*to_revoke[^`]*)`", section("## Access reviews"))
    for snippet in (re.search(r'-c "(.*)"', own, re.S).group(1), to_revoke):
        sql = snippet.replace("'data/langsmith_access.duckdb'", repr(str(template.path)))
        assert sql != snippet
        with duckdb.connect(str(tmp_path / "my_analysis.duckdb")) as conn:
            conn.execute(sql)
            table = re.search(r"CREATE (?:OR REPLACE )?TABLE (\w+)", sql).group(1)
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table


def test_the_table_reference_names_the_files_that_describe_every_column(whole_picture):
    # "Table reference": every column of every table of schema main is described in the files it names.
    text = section("### Table reference")
    files = re.findall(r"`(langsmith_access/dbt_project/models/[\w/]+[.]yml)`", text)
    described: dict[str, set[str]] = {}
    for name in files:
        document = yaml.safe_load((README.parent / name).read_text(encoding="utf-8"))
        tables = document.get("models", []) + [table for source in document.get("sources", [])
                                                if source["name"] == "main" for table in source["tables"]]
        for table in tables:
            described.setdefault(table["name"], set()).update(
                column["name"] for column in table.get("columns", []) if column.get("description"))
    with duckdb.connect(str(whole_picture.path), read_only=True) as conn:
        columns = conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                               "WHERE table_schema = 'main'").fetchall()
    undescribed = sorted(f"{table}.{column}" for table, column in columns if column not in described.get(table, ()))
    assert undescribed == [], f"README's Table reference names no file describing {undescribed}"


def embedded_artifacts(page: str) -> dict[str, dict]:
    """The dbt manifest and catalog a static docs page carries inline, by kind."""
    decoder = json.JSONDecoder()
    found = {}
    for start in re.finditer(r'\{"metadata": ?\{"dbt_schema_version": ?"[^"]*/(manifest|catalog)/', page):
        found[start.group(1)] = decoder.raw_decode(page, start.start())[0]
    return found


def test_the_docs_site_describes_every_published_table_as_it_is(template, whole_picture):
    # "Beside them, <db stem>_docs/index.html is the dbt docs site ... with every table": the page
    # an analyst opens lists every table and view of schema main with the columns and types the
    # database has (its catalog), and a description of each table and column (its manifest). The
    # first sync makes it (the core sync: the inventory's tables are there, empty) and later runs
    # keep it while the project is unchanged; here also one the inventory made.
    for database in (template, whole_picture):
        page = database.docs_path / "index.html"
        artifacts = embedded_artifacts(page.read_text(encoding="utf-8"))
        catalog, manifest = artifacts["catalog"], artifacts["manifest"]
        shown = {node["metadata"]["name"]: {name: column["type"] for name, column in node["columns"].items()}
                 for node in [*catalog["nodes"].values(), *catalog["sources"].values()]
                 if node["metadata"]["schema"] == "main"}
        described = {node.get("alias") or node["name"]: node for node in [*manifest["nodes"].values(),
                                                                          *manifest["sources"].values()]
                     if node.get("schema") == "main" and node["resource_type"] in ("model", "snapshot", "source")}
        with duckdb.connect(str(database.path), read_only=True) as conn:
            published: dict[str, dict[str, str]] = {}
            for table, column, data_type in conn.execute(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'main'").fetchall():
                published.setdefault(table, {})[column] = data_type
        assert {"grants", "effective_permissions", "credentials", "sync_runs"} <= set(published)
        assert {table: shown.get(table) for table in published} == published, page
        assert sorted(table for table in published if not described[table]["description"].strip()) == []
        assert sorted(f"{table}.{column}" for table, columns in published.items() for column in columns
                      if not described[table]["columns"].get(column, {}).get("description", "").strip()) == []

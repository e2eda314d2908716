"""A sync whose dbt build fails reports the failed checks and the failing dbt nodes with their
messages, from dbt's structured results and Dagster's run events (no captured output), and
`langsmith-access sync` prints them."""

from langsmith_access import cli
from langsmith_access.sandbox import SandboxServer, generate_org
from langsmith_access_tests.helpers import point_at
from langsmith_access_tests.reliability.tampering_proxy import Answer, TamperingProxy

WS_ACTIVE = "/api/v1/workspaces/current/members/active"


def _role_missing_on_first_member(answer: Answer) -> Answer:
    if answer.path != WS_ACTIVE or answer.status != 200:
        return answer
    rows = answer.json()
    if rows:
        rows[0]["role_id"] = rows[0]["role_name"] = None  # a grant without a role: a dbt test fails
    return answer.with_json(rows)


def test_a_failing_dbt_test_is_printed_with_its_node_and_message(tmp_path, monkeypatch, capsys):
    database = tmp_path / "access.duckdb"
    with SandboxServer(generate_org(seed=11, members=10, workspaces=2)) as sandbox:
        point_at(monkeypatch, sandbox, database)
        with TamperingProxy(sandbox.url) as proxy:
            monkeypatch.setenv("LANGSMITH_ENDPOINT", proxy.url)
            proxy.tamper = _role_missing_on_first_member
            code = cli.main(["sync", "--quiet", "--membership-route", "workspace_members"])
        assert proxy.tampered
    err = capsys.readouterr().err
    assert code == 1
    assert "Sync failed: access_tables:" in err and "node(s) failed" in err
    dbt_lines = [line.strip() for line in err.splitlines() if line.strip().startswith("dbt: ")]
    assert dbt_lines, err
    # "dbt: FAIL test <name> (<n> rows): Got <n> result(s), configured to fail if != 0"
    assert all(line.startswith(("dbt: FAIL test ", "dbt: ERROR ")) for line in dbt_lines), dbt_lines
    assert any("role_id" in line and "configured to fail" in line for line in dbt_lines), dbt_lines
    assert any(line.strip().startswith("failed check ") for line in err.splitlines()), err
    assert not database.exists()  # nothing published

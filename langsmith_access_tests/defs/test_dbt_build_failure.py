"""The step failure of a dbt build that did not pass (defs/transform/project.py): what the CLI
prints one line per failed node reaches it through the failure's metadata, an error dbt hit
outside any node included."""

from langsmith_access.defs.transform.project import build_failure
from langsmith_access.transform import DBT_FAILURES_METADATA, run_dbt


def test_an_error_outside_any_node_is_carried_in_the_failures_metadata(tmp_path):
    invocation = run_dbt(["run-operation", "no_such_macro"], database_file=tmp_path / "access.duckdb",
                         dbt_dir=tmp_path / "access.dbt").wait()
    assert not invocation.success and invocation.failed_nodes == []

    failure = build_failure(invocation)

    assert failure.description == "dbt run-operation no_such_macro failed (exit 1): 0 node(s) failed"
    carried = failure.metadata[DBT_FAILURES_METADATA].data
    assert carried and all(entry["unique_id"] is None and entry["status"] == "error" for entry in carried)
    assert any('could not find a macro with the name "no_such_macro"' in entry["message"] for entry in carried), carried

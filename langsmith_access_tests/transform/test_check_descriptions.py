"""What each dbt test checks, in words (transform/check_descriptions.py): the Dagster UI shows it
beside the check's result. The packaged project's own checks are in defs/test_definitions.py."""

from langsmith_access.transform import describe_test


def test_a_tests_own_description_wins_over_the_generic_one():
    node = {"description": "  Bob's rule.  ",
            "test_metadata": {"name": "primary_key", "kwargs": {"column_name": "user_id"}}}
    assert describe_test(node) == "Bob's rule."
    assert describe_test({**node, "description": ""}) == "user_id identifies rows: filled in and never repeated."
    assert describe_test({"test_metadata": {"name": "a_test_nobody_described", "kwargs": {}}}) is None


def test_row_rules_say_every_rule_they_hold():
    node = {"test_metadata": {"name": "row_rules", "kwargs": {
        "accepted_values": {"entitlement_type": ["organization_role", "workspace_role"]},
        "references": {"role_id": {"to": "ref('roles')", "field": "role_id"}},
        "unique_combination": ["user_id", "workspace_id"],
    }}}
    assert describe_test(node) == (
        "entitlement_type is one of organization_role, workspace_role; every role_id is a role_id of roles; "
        "no two rows share user_id, workspace_id. Fails with a row per violation (the rule, the column, the value).")

"""The runner's own choices: the sync's run config and which Dagster instance runs land in."""

from __future__ import annotations

from langsmith_access import runner
from langsmith_access.names import MEMBERS_OP
from langsmith_access.settings import Settings


def test_the_syncs_shrink_share_is_the_settings_unless_one_is_given(monkeypatch):
    # DESIGN.md section 5: the share is configurable (LANGSMITH_ACCESS_MAX_SHRINK_SHARE): `sync`
    # and the demo hand their org's settings, tests and scripts the environment.
    config = runner.sync_run_config(settings=Settings(max_shrink_share=0.5))["ops"][MEMBERS_OP]["config"]
    assert config == {"accept_shrink": False, "max_shrink_share": 0.5}
    monkeypatch.setenv("LANGSMITH_ACCESS_MAX_SHRINK_SHARE", "0.35")
    assert runner.sync_run_config()["ops"][MEMBERS_OP]["config"]["max_shrink_share"] == 0.35
    given = runner.sync_run_config(accept_shrink=True, max_shrink_share=0.1, membership_route="workspace_members",
                                   settings=Settings(max_shrink_share=0.5))
    assert given["ops"][MEMBERS_OP]["config"] == {"accept_shrink": True, "max_shrink_share": 0.1,
                                                  "membership_route": "workspace_members"}


def test_runs_land_in_dagster_homes_instance_when_it_is_set(monkeypatch, tmp_path):
    # Module docstring and README: with DAGSTER_HOME set, the CLI's runs are in that instance's
    # history (the webserver shows them); without it, in an ephemeral one.
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with runner.instance() as ephemeral:
        assert not ephemeral.is_persistent
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with runner.instance() as persistent:
        assert persistent.is_persistent and persistent.root_directory == str(tmp_path)

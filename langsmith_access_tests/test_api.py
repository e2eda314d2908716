"""The Python API's own checks, made before anything runs (langsmith_access/api.py)."""

from __future__ import annotations

import pytest

from langsmith_access import api, runner
from langsmith_access.settings import SettingsError

ORGANIZATION_ID = "00000000-0000-4000-8000-0000000000aa"


@pytest.mark.parametrize("key", [None, "lsv2_pt_0123456789abcdef0123456789abcdef_0123456789"])
def test_provision_refuses_a_missing_or_personal_key_before_any_run(key, monkeypatch, tmp_path):
    # As `langsmith-access provision` does: a SettingsError naming the variable, not a run that
    # starts and fails (queueing and listing need no key, and resolve_org accepts the org).
    monkeypatch.setenv("LANGSMITH_ORGANIZATION_ID", ORGANIZATION_ID)
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "access.duckdb"))
    if key is None:
        monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    else:
        monkeypatch.setenv("LANGSMITH_API_KEY", key)
    runs: list[tuple] = []
    monkeypatch.setattr(runner, "run_job", lambda *args, **kwargs: runs.append(args))
    assert api.resolve_org().slug == "default"
    with pytest.raises(SettingsError, match="LANGSMITH_API_KEY") as refused:
        api.provision()
    assert runs == []
    assert key is None or key not in str(refused.value)


def test_an_org_whose_key_variable_is_unset_can_still_queue_and_list(monkeypatch, tmp_path):
    # An org added to the orgs file before its key is set: from Python, as from the CLI, its
    # queue is readable and writable (no request needs the key); only provision() refuses.
    orgs = tmp_path / "orgs.yaml"
    orgs.write_text(f"- slug: eu\n  organization_id: {ORGANIZATION_ID}\n"
                    "  endpoint: https://eu.api.smith.langchain.com\n  api_key_env: LANGSMITH_API_KEY_EU\n")
    monkeypatch.setenv("LANGSMITH_ACCESS_ORGS_FILE", str(orgs))
    monkeypatch.setenv("LANGSMITH_ACCESS_DUCKDB", str(tmp_path / "data" / "langsmith_access.duckdb"))
    monkeypatch.delenv("LANGSMITH_API_KEY_EU", raising=False)
    assert api.resolve_org("eu").settings.organization_id == ORGANIZATION_ID
    assert api.list_requests(org="eu") == []
    with pytest.raises(SettingsError, match="LANGSMITH_API_KEY_EU named by api_key_env is not set"):
        api.provision(org="eu")

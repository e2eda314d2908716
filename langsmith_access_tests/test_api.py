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

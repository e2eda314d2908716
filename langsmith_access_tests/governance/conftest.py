"""Governance fixtures: ``governed`` is the synced ``env`` under an access policy, with a webhook
receiver on 127.0.0.1."""

import pytest

from langsmith_access_tests.governance.receiver import WebhookReceiver
from langsmith_access_tests.governance.support import POLICY, People


@pytest.fixture
def governed(env, tmp_path, monkeypatch):
    """The synced env with the policy above, and a webhook receiver."""
    sandbox, org, database = env
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    monkeypatch.setenv("LANGSMITH_ACCESS_POLICY", str(policy))
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("LANGSMITH_ACCESS_WEBHOOK_URL", receiver.url)
        yield sandbox, org, database, People(org), receiver

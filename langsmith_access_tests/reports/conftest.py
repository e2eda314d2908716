"""The report tests share one history of three real syncs (see support.py): ~45 s in all, built
once per test session for every test process (``built_once``)."""

import pytest

from langsmith_access_tests.built_once import built_once
from langsmith_access_tests.reports.support import History, make_history


@pytest.fixture(scope="session")
def history(tmp_path_factory) -> History:
    return built_once(tmp_path_factory, "reports-history", make_history)

"""The report tests share one history of three real syncs (see support.py): ~45 s in all."""

import pytest

from langsmith_access_tests.reports.support import History, make_history


@pytest.fixture(scope="package")
def history(tmp_path_factory) -> History:
    return make_history(tmp_path_factory.mktemp("reports"))

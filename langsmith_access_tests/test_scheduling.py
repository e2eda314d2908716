"""The order `make test` hands out its files in (scheduling.py) names files that exist."""

from pathlib import Path

from langsmith_access_tests.scheduling import HEAVIEST_FIRST, SHARED_FIXTURE_PACKAGE, HeaviestFirstScheduling, rank

ROOT = Path(__file__).resolve().parents[1]


def test_every_listed_file_exists_and_is_listed_once():
    assert [prefix for prefix in HEAVIEST_FIRST if not (ROOT / prefix).exists()] == []
    assert len(set(HEAVIEST_FIRST)) == len(HEAVIEST_FIRST)


def test_the_shared_fixture_package_is_one_unit_and_goes_first():
    split = HeaviestFirstScheduling.__new__(HeaviestFirstScheduling)._split_scope  # needs no config
    units = {split(f"{SHARED_FIXTURE_PACKAGE}{name}::test_x") for name in ("test_a.py", "test_b.py")}
    assert units == {SHARED_FIXTURE_PACKAGE}
    assert split("langsmith_access_tests/test_cli.py::test_x") == "langsmith_access_tests/test_cli.py"
    assert rank(SHARED_FIXTURE_PACKAGE) == 0
    assert rank(HEAVIEST_FIRST[1]) == 1 < rank("langsmith_access_tests/test_settings.py") == len(HEAVIEST_FIRST)

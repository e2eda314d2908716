"""How `make test` shares the test files between its xdist workers (``--dist loadfile``).

xdist hands out whole files, those with the most tests first. The files that take longest here
have one or a few tests (a server, a daemon, a browser, processes killed mid-write, a fresh
install), so they came last and the run ended with one worker busy and the other idle. Here
they go first, the heaviest first, and the many small files fill the end.

``reliability/`` is one unit, on one worker: its session fixture ``fault_run`` syncs an org
twice, once through injected faults (~40 s), and each worker running a file of the package paid
for it again.
"""

from __future__ import annotations

from collections import OrderedDict

from xdist.scheduler import LoadFileScheduling

SHARED_FIXTURE_PACKAGE = "langsmith_access_tests/reliability/"

# Heaviest first: wall seconds on this machine, measured 2026-12-01 (each changes as the files do).
HEAVIEST_FIRST = (
    SHARED_FIXTURE_PACKAGE,  # ~330 s together
    "langsmith_access_tests/ui/test_dagster_ui.py",  # ~85 s: webserver and a browser
    "langsmith_access_tests/test_installed_package.py",  # ~60 s: pip install, then the demo
    "langsmith_access_tests/sync/test_access_picture.py",  # ~55 s
    "langsmith_access_tests/sync/test_sync_end_to_end.py",  # ~50 s
    "langsmith_access_tests/sync/test_sync_on_deployments.py",  # ~50 s
    "langsmith_access_tests/transform/test_dbt_models.py",  # ~50 s
    "langsmith_access_tests/sync/test_core_sync_leaves_inventory_tables.py",  # ~50 s
    "langsmith_access_tests/provisioning/test_sensor.py",  # ~45 s: a daemon
    "langsmith_access_tests/governance/test_drift.py",  # ~40 s
    "langsmith_access_tests/provisioning/test_provisioning_end_to_end.py",  # ~40 s
    "langsmith_access_tests/reports/test_access_at_cli.py",  # ~40 s
    "langsmith_access_tests/test_many_orgs.py",  # ~40 s
)


def rank(unit: str) -> int:
    """Where a unit (a file, or the shared-fixture package) goes: the listed ones in their order,
    then every other one."""
    return HEAVIEST_FIRST.index(unit) if unit in HEAVIEST_FIRST else len(HEAVIEST_FIRST)


class HeaviestFirstScheduling(LoadFileScheduling):
    """``--dist loadfile``, with the units ordered by ``rank`` (ties keep xdist's order: most
    tests first) and ``reliability/`` as one unit."""

    def _split_scope(self, nodeid: str) -> str:
        if nodeid.startswith(SHARED_FIXTURE_PACKAGE):
            return SHARED_FIXTURE_PACKAGE
        return super()._split_scope(nodeid)

    def _assign_work_unit(self, node) -> None:
        # The first assignment comes right after the queue is built (in ``schedule``).
        if not getattr(self, "_ordered", False):
            self.workqueue = OrderedDict(sorted(self.workqueue.items(), key=lambda unit: rank(unit[0])))
            self._ordered = True
        super()._assign_work_unit(node)

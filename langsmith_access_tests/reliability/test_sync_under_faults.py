"""A sync through random 5xx, bursts of 429, hangs, dropped connections and page drift builds
exactly the tables a fault-free sync of the same org builds, and counts its retries.

Both syncs run once per session (``fault_run`` in conftest.py); these tests examine them.
"""

from __future__ import annotations

from langsmith_access_tests.helpers import expected_org_grants, expected_workspace_grants, query
from langsmith_access_tests.reliability.conftest import FaultRun

# Columns that legitimately differ between two syncs of the same org: which sync wrote the
# row, and when (history intervals open at the sync's build time; ages in whole days counted
# up to the read or the build, which differ when a day boundary falls between two syncs).
RUN_COLUMNS = {"sync_id", "synced_at", "fetched_at", "valid_from", "valid_to", "grant_interval_id", "setting_interval_id",
               "workspace_interval_id", "user_interval_id",
               "changed_at", "previous_sync_at", "held_since",
               "age_days", "days_since_last_use", "days_since_last_login"}
# Tables that describe runs rather than the org.
RUN_TABLES = {("main", "sync_runs")}


def comparable_tables(database) -> dict[tuple[str, str], list[str]]:
    rows = query(
        database,
        "SELECT table_schema, table_name, list(column_name ORDER BY ordinal_position) "
        "FROM information_schema.columns WHERE table_schema IN ('main', 'raw') "
        "GROUP BY ALL ORDER BY ALL",
    )
    return {
        (schema, table): [c for c in columns if c not in RUN_COLUMNS]
        for schema, table, columns in rows
        if (schema, table) not in RUN_TABLES
    }


def test_faulty_sync_builds_exactly_the_fault_free_tables(fault_run: FaultRun):
    faulty, clean = fault_run.faulty.path, fault_run.clean.path
    tables = comparable_tables(clean)
    assert tables == comparable_tables(faulty)
    assert ("main", "grants") in tables and ("main", "grant_history") in tables
    compared_rows = 0
    for (schema, table), columns in tables.items():
        select = ", ".join(f'"{c}"' for c in columns)
        sql = f'SELECT {select} FROM {schema}."{table}" ORDER BY ALL'
        expected = query(clean, sql)
        assert query(faulty, sql) == expected, f"{schema}.{table} differs"
        compared_rows += len(expected)
    assert compared_rows > 5000
    print(f"\nfaulty vs fault-free sync: {len(tables)} tables, {compared_rows} rows compared, 0 differ")

    # And both equal the org itself, late joiners included.
    org = fault_run.org
    assert query(faulty, "SELECT count(*) FROM main.users")[0][0] == len(org.active_members())
    assert query(faulty, "SELECT count(*) FROM main.users WHERE email LIKE 'late.joiner.%'")[0][0] \
        == fault_run.drift_members == 2
    assert set(query(faulty, "SELECT workspace_id, user_id, role_id FROM main.grants "
                             "WHERE entitlement_type = 'workspace_role'")) == expected_workspace_grants(org)
    assert set(query(faulty, "SELECT user_id, role_id FROM main.grants "
                             "WHERE entitlement_type = 'organization_role'")) == expected_org_grants(org)


def test_every_injected_fault_was_retried_and_counted_in_sync_runs(fault_run: FaultRun):
    statuses, injected = fault_run.statuses, fault_run.injected
    server_errors = sum(n for status, n in statuses.items() if status is not None and status >= 500)
    throttled = statuses[429]
    faults = server_errors + throttled + injected["drop"] + injected["hang"]
    # Every kind of fault struck.
    assert server_errors == injected["error"] > 0
    assert throttled >= 3, "the rate limit answered bursts of 429s"
    assert injected["drop"] > 0 and injected["hang"] > 0

    [(calls, retries, rate_limited, waited, route)] = query(
        fault_run.faulty.path,
        "SELECT api_calls, api_retries, api_rate_limited, api_wait_seconds, membership_route "
        "FROM main.sync_runs WHERE sync_id = ?", [fault_run.faulty_run_id])
    assert route == "workspace_members"
    # Each fault cost exactly one retry: none was missed, none was counted twice. A hung
    # request answers (200) only after 20 s: had the client waited one out instead of cutting
    # it at its read timeout (3 s), that fault would have cost no retry and this would be short.
    assert retries == faults
    assert rate_limited == throttled
    assert calls == fault_run.requests_logged
    assert waited >= throttled * 0.5  # Retry-After was honoured (rounded up to whole seconds)

    [(clean_retries,)] = query(fault_run.clean.path,
                               "SELECT api_retries FROM main.sync_runs ORDER BY finished_at DESC LIMIT 1")
    assert clean_retries == 0
    print(f"\nfaulty sync: {calls} calls, {retries} retries: {server_errors} x 5xx, {throttled} x 429, "
          f"{injected['hang']} hangs, {injected['drop']} drops; {fault_run.drift_members} members "
          f"joined while paging; waited {waited:.1f} s")


"""The inventory (DESIGN.md section 9): its extract asset, its job and its schedule.

Thin wiring around ``langsmith_access.sync.inventory``. The job reads access policies and the
resource tags they match, credentials of every kind, service accounts, SSO settings and the
audit log, builds the dbt models downstream of them (with their tests, as asset checks) and
publishes the analysts' database, on the sync's scratch-copy, writer-pool and ``sync_runs``
rules: all or nothing.
"""

import itertools
from datetime import date, timedelta
from typing import Any

import dagster as dg
import duckdb
from pydantic import Field

from langsmith_access import names
from langsmith_access.defs.extract.keys import INVENTORY_KEYS
from langsmith_access.defs.orgs import TICK_READ_TIMEOUT_SECONDS, deployment_orgs, org_run_config, schedule_tick
from langsmith_access.defs.resources import DUCKDB_WRITER_POOL, LangSmithAPI, SyncDatabase
from langsmith_access.settings import MAX_UNUSED_DAYS, Org, Settings, cron_field_values
from langsmith_access.store.database import (
    AccessDatabase,
    DatabaseBusyError,
    DatabaseNotReadyError,
    DatabaseUnusableError,
)
from langsmith_access.store.sections import record_section_reads
from langsmith_access.store.sync_runs import has_published_sync
from langsmith_access.sync import inventory
from langsmith_access.sync.extract import now_utc
from langsmith_access.transform.project import built_by_this_project

GROUP = "inventory"
TABLE_DESCRIPTIONS = {
    "access_policies": "Access policies (ABAC): allow or deny by resource tag, per workspace role.",
    "resource_tags": (
        "Every tag value on a resource of a shared workspace (one call per workspace), what access "
        "policies match: read where some access policy has a condition."
    ),
    "credentials": (
        "Service keys, workspace service keys (one call per workspace), personal access tokens "
        "the key can see, SCIM tokens: short keys only, never a secret."
    ),
    "service_accounts": "Service accounts (what service keys act for).",
    "sso_settings": "SAML SSO configurations (where just-in-time provisioning puts new users).",
    "audit_events": (
        "The audit log, loaded incrementally by overlapping time windows, de-duplicated by event id."
    ),
}


class InventoryConfig(dg.Config):
    """Run config of the inventory's extract (every field optional)."""

    # The reports keep counting LANGSMITH_ACCESS_UNUSED_DAYS.
    unused_days: int | None = Field(
        default=None,
        description="How many days back the audit log's first load reaches (at least 1); leave it "
        "out for LANGSMITH_ACCESS_UNUSED_DAYS.",
    )


def freshness_policy(cron: str) -> dg.FreshnessPolicy:
    """Fresh while the last materialization is at most the schedule's longest gap between two
    ticks (and half an hour to run) old; failing after two such gaps. The longest, not the
    shortest: a weekday cron leaves a weekend between two runs, which is no failure. Shown on
    the inventory's assets in the Dagster UI."""
    interval = longest_cron_interval(cron)
    grace = timedelta(minutes=30)
    return dg.FreshnessPolicy.time_window(fail_window=2 * interval + grace, warn_window=interval + grace)


def longest_cron_interval(cron: str) -> timedelta:
    """The longest time between two consecutive ticks of ``cron`` (UTC), over the eight years from
    2024 (every month length, two leap years): a weekend for a weekday cron, 31 days for a monthly
    one, 18 h for ``0 3,21 * * *``, four years for ``0 0 29 2 *``. Worked out from the fields,
    not by iterating ticks from now, so it is the same whenever the definitions load. An hour for
    a cron it cannot read."""
    parsed = cron_field_values(cron)
    if parsed is None:
        return timedelta(hours=1)
    (minutes, hours, days, months, weekdays), written = parsed
    weekdays = {day % 7 for day in weekdays}
    times = sorted(hour * 60 + minute for hour in hours for minute in minutes)  # minutes of a day
    # As Dagster's cron (croniter) reads them: with the day of month and the weekday both
    # restricted, either one fires; otherwise the restricted one must match (an unrestricted
    # field matches every day).
    both_restricted = not (written[2] in ("*", "?") or written[4] in ("*", "?"))
    fire_days = []
    # Two leap days: a cron of 29 February alone fires twice, four years apart.
    first = date(2024, 1, 1)
    for offset in range((date(2032, 1, 1) - first).days + 1):
        day = first + timedelta(days=offset)
        by_day, by_weekday = day.day in days, day.isoweekday() % 7 in weekdays
        if day.month in months and ((by_day or by_weekday) if both_restricted else (by_day and by_weekday)):
            fire_days.append(offset)
    if not times or len(fire_days) < 2:
        return timedelta(hours=1)
    within_a_day = max((later - earlier for earlier, later in itertools.pairwise(times)), default=0)
    between_days = max((later - earlier) * 1440 - times[-1] + times[0]
                       for earlier, later in itertools.pairwise(fire_days))
    return timedelta(minutes=max(within_a_day, between_days))


def _specs(cron: str) -> list[dg.AssetSpec]:
    return [
        dg.AssetSpec(key, group_name=GROUP, kinds={"python", "duckdb"}, description=TABLE_DESCRIPTIONS[table],
                     freshness_policy=freshness_policy(cron))
        for table, key in INVENTORY_KEYS.items()
    ]


def inventory_asset(cron: str) -> dg.AssetsDefinition:
    @dg.multi_asset(specs=_specs(cron), name=names.INVENTORY_OP, pool=DUCKDB_WRITER_POOL)
    def raw_inventory(
        context: dg.AssetExecutionContext,
        config: InventoryConfig,
        langsmith: LangSmithAPI,
        sync_database: SyncDatabase,
    ):
        if config.unused_days is not None and not 1 <= config.unused_days <= MAX_UNUSED_DAYS:
            raise dg.Failure(f"unused_days must be a whole number of days from 1 to {MAX_UNUSED_DAYS}, got "
                             f"{config.unused_days}: leave it out to reach back LANGSMITH_ACCESS_UNUSED_DAYS.")
        client = langsmith.client
        unused_days = config.unused_days or sync_database.org.settings.unused_days
        sync_id, fetched_at = context.run.run_id, now_utc()
        with langsmith.failures_in_its_orgs_terms(), sync_database.connect() as conn:
            # Only a run launched by hand gets past the schedule's wait for this version's first
            # sync: said in the Launchpad's terms, without a stack trace.
            if not has_published_sync(conn):
                why = "has no sync yet, and the inventory adds to a synced database"
            elif not built_by_this_project(conn):
                # Its build reads what this version's sync builds (effective_access...), which
                # a database an older release built lacks until then.
                why = ("was last synced by another version of langsmith-access (an upgrade), and the "
                       "inventory adds to what this version's sync builds")
            else:
                why = None
            if why is not None:
                raise dg.Failure(
                    f"Org {sync_database.org.slug!r} (this run's partition) {why}: launch {names.SYNC_JOB} "
                    f"for this partition first (or `langsmith-access sync --all-sections --org "
                    f"{sync_database.org.slug}` for both)."
                )
            plan = client.section_plan()
            shared = sorted(w.id for w in client.list_workspaces(include_deleted=False) if w.is_shared)
            read = inventory.get_inventory(client, plan, shared)
            rows = inventory.load_inventory(conn, read, sync_id, fetched_at)
            audit, load = inventory.read_audit_log(
                client, conn, plan, sync_id=sync_id, now=fetched_at, unused_days=unused_days,
                fetched_at=fetched_at,
            )
            reads = [*read.reads, audit]
            record_section_reads(conn, sync_id=sync_id, job=context.job_name, reads=reads)
            [(total_events,)] = conn.execute("SELECT count(*) FROM raw.audit_events").fetchall()
        for section_read in reads:
            context.log.info(section_read.describe())
        sections = {r.section: r.describe().split(": ", 1)[1] for r in reads}
        stats = client.stats.snapshot()
        common = {"api_calls_so_far": stats["calls"], "api_retries_so_far": stats["retries"]}
        for table, key in INVENTORY_KEYS.items():
            metadata: dict[str, Any]
            if table == "audit_events":
                metadata = {
                    "dagster/row_count": int(total_events),
                    "events_new": load.events_new if load else 0,
                    "events_read": load.events_read if load else 0,
                    "window_start": load.start.isoformat() if load else "",
                    "window_end": load.end.isoformat() if load else "",
                    "section": sections["audit_events"],
                }
            else:
                metadata = {
                    "dagster/row_count": rows[table],
                    "sections": dg.MetadataValue.json(
                        {s: sections[s] for s in inventory.TABLE_SECTIONS[table]}
                    ),
                }
            yield dg.MaterializeResult(
                asset_key=key,
                metadata={**metadata, "read_at": dg.MetadataValue.timestamp(fetched_at), **common},
            )

    return raw_inventory


def waits_for_first_sync(org: Org) -> str | None:
    """Why the schedule launches no inventory for ``org`` now: its analysts' copy holds no
    sync yet (the inventory adds to a synced database, and its run would only fail). None when
    a sync is published, or when that cannot be told now (a busy or unreadable file): the run
    then checks for itself, under the writer lease."""
    try:
        # The analysts' copy, for two seconds at most: runs never hold it.
        with AccessDatabase(org.duckdb_path).read_published(timeout_seconds=TICK_READ_TIMEOUT_SECONDS) as conn:
            if not has_published_sync(conn):
                return org.in_its_own_terms(
                    "no sync published yet: the inventory waits for the first one (the sync schedule, or "
                    "`langsmith-access sync`)"
                )
            if not built_by_this_project(conn):
                return org.in_its_own_terms(
                    "last synced by another version of langsmith-access (an upgrade): the inventory waits "
                    "for this version's first sync (the sync schedule, or `langsmith-access sync`)"
                )
            return None
    except DatabaseNotReadyError:
        pass
    # (OSError: its folder cannot even be looked at, e.g. no permission: one org's trouble, not the tick's.)
    except (DatabaseBusyError, DatabaseUnusableError, duckdb.Error, OSError):  # the run reports it
        return None
    return org.in_its_own_terms(
        "no sync published yet: the inventory waits for the first one (the sync schedule, or "
        "`langsmith-access sync`)"
    )


@dg.definitions
def inventory_definitions() -> dg.Definitions:
    settings = Settings.from_env()
    orgs = deployment_orgs()
    raw_inventory = inventory_asset(settings.inventory_cron)
    # The inventory's extract, every dbt model and test downstream of it, and the publish; one
    # org per run (its partition), like the sync.
    job = dg.define_asset_job(
        names.INVENTORY_JOB,
        selection=dg.AssetSelection.assets(raw_inventory).downstream(),
        executor_def=dg.in_process_executor,
        tags=names.RUN_TIME_LIMIT_TAGS,
        config=org_run_config(orgs=orgs),
        description=(
            "Read one org's (the partition's) credentials, access policies and resource tags, service "
            "accounts, SSO settings and audit log, build the tables that use them, publish them atomically."
        ),
    )

    @dg.schedule(
        name=names.INVENTORY_SCHEDULE,
        job=job,
        cron_schedule=settings.inventory_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Keeps every org's inventory fresh: one run per synced org on each tick "
            "(LANGSMITH_ACCESS_INVENTORY_CRON, hourly at minute 30 by default); an org with no "
            "sync published yet waits for its first."
        ),
    )
    def langsmith_access_inventory_schedule(context: dg.ScheduleEvaluationContext):
        # The orgs of the definitions' load, as the sync schedule's.
        return schedule_tick(context, orgs, waits=waits_for_first_sync, job_name=names.INVENTORY_JOB)

    return dg.Definitions(assets=[raw_inventory], jobs=[job], schedules=[langsmith_access_inventory_schedule])

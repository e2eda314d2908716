"""Partitions by org (DESIGN.md section 11): the one place that makes a job, schedule or sensor
serve every org of the orgs file.

- ``org_partitions()``: a ``StaticPartitionsDefinition`` of the slugs, read when the definitions
  load (``settings.load_orgs``: the orgs file, else one org ``default``).
- ``org_run_config()``: the partitioned config every job takes, so every run of an org carries
  ``ORG_TAG=<slug>`` beside its partition key, however it was launched (schedule, sensor,
  Launchpad, backfill, the CLI): ``deploy/dagster.yaml``'s queue lets one run per value of that
  tag run at a time.
- ``partition_assets_by_org(defs)``: every asset of the definitions partitioned by org, so the
  UI shows each org's sync status; ``definitions.py`` applies it once, to everything.
- ``OrgScopedResource``: the base of every resource that serves one org. When a run starts it
  takes the org of the run's partition key, with that org's settings (key, endpoint, database);
  nothing reads or writes ``os.environ`` for it. The runner hands the orgs in (``orgs=``) for
  runs it executes itself; otherwise they are read from the environment when the run starts.

A new job joins in a few lines: build it with ``config=org_run_config()`` (an asset job's
assets are partitioned already), give its resources ``OrgScopedResource`` as their base, and
launch it per org with ``org_run_requests`` (a schedule) or ``RunRequest(partition_key=slug)``.
"""


import contextlib
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import dagster as dg
from pydantic import PrivateAttr

from langsmith_access.langsmith import LangSmithError
from langsmith_access.names import ORG_TAG, PROCESS_TAG, REFUSED_INPUT_TAG
from langsmith_access.processes import this_process
from langsmith_access.settings import Org, Orgs, SettingsError, load_orgs
from langsmith_access.side_by_side import each_org_side_by_side

# The tag Dagster gives a run of one partition (dagster._core.storage.tags.PARTITION_NAME_TAG).
PARTITION_TAG = "dagster/partition"


def deployment_orgs() -> Orgs:
    """The orgs the definitions serve (``settings.load_orgs``), read when they load. A bad orgs
    file stops the load, naming the entry and the fix; an org whose key variable is unset or
    holds no service key does not: its runs fail at their start saying so (``Org.key_problem``),
    and the sensors launch none for it, while the other orgs' schedules and sensors go on (a
    code location that fails to load would stop every org)."""
    return load_orgs(refuse_unusable_keys=False)


def org_partitions(orgs: Orgs | None = None) -> dg.StaticPartitionsDefinition:
    """One partition per org, its key the org's slug, in the order of the orgs file."""
    return dg.StaticPartitionsDefinition(list((orgs or deployment_orgs()).slugs))


def org_tags(slug: str) -> dict[str, str]:
    """The tags every run of one org carries (the per-org concurrency limit acts on ORG_TAG)."""
    return {ORG_TAG: slug}


def org_run_config(
    run_config: Mapping[str, Any] | None = None, orgs: Orgs | None = None
) -> dg.PartitionedConfig:
    """A job's config, partitioned by org: the same ``run_config`` for every org (empty: the
    job's defaults) and ``org_tags(slug)`` on every run."""
    config = dict(run_config or {})
    return dg.PartitionedConfig(
        partitions_def=org_partitions(orgs),
        run_config_for_partition_key_fn=lambda _slug: config,
        tags_for_partition_key_fn=org_tags,
    )


def skip_reasons(by_org: list[tuple[str, str]], *, named: bool = False) -> str:
    """One org: its reason as it is (``named``: led by its slug too); several: each reason once,
    led by the slugs of the orgs it is theirs (in the order given): a tick of fifty orgs with
    nothing due says so once, and the one org that differs stands out."""
    if len(by_org) == 1 and not named:
        return by_org[0][1]
    slugs_by_reason: dict[str, list[str]] = {}
    for slug, reason in by_org:
        slugs_by_reason.setdefault(reason.rstrip("."), []).append(slug)
    return "; ".join(f"{', '.join(slugs)}: {reason}" for reason, slugs in slugs_by_reason.items()) + "."


def partition_assets_by_org(defs: dg.Definitions, orgs: Orgs | None = None) -> dg.Definitions:
    """``defs`` with every asset partitioned by org (an asset job takes its assets' partitions)."""
    partitions = org_partitions(orgs)

    def by_org(spec: dg.AssetSpec) -> dg.AssetSpec:
        return spec.replace_attributes(partitions_def=partitions)

    with warnings.catch_warnings():
        # Dagster marks Definitions.map_asset_specs as a preview; it is the documented way to
        # change every asset of a Definitions at once.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return defs.map_asset_specs(func=by_org)


def org_run_requests(orgs: Orgs | None = None, run_key_prefix: str = "") -> list[dg.RunRequest]:
    """One run request per org (a schedule's tick): each an org's partition, tagged with it."""
    return [
        dg.RunRequest(run_key=f"{run_key_prefix}{slug}", partition_key=slug, tags=org_tags(slug))
        for slug in (orgs or deployment_orgs()).slugs
    ]


def no_key_reason(org: Org) -> str | None:
    """Why no run is launched for ``org`` (a schedule's or a sensor's): it has no usable key, and
    its run would fail at its start, tick after tick. None when it has one."""
    return f"{org.key_problem} No run until then." if org.key_problem else None


T = TypeVar("T")

# Sensors and schedules look at the orgs' analysts' copies side by side, this many at once: a
# copy an analyst holds read-write costs its look TICK_READ_TIMEOUT_SECONDS, so a tick where
# every copy is held takes about that times orgs / TICK_READERS; one after the other, 31 such
# orgs took it past Dagster's 60-s timeout, and the tick failed for every org. A reader waiting
# on a held copy sleeps between its tries (9 tries in its 2 s), so 64 cost the 2 cores
# little: 600 held orgs were all looked at in 25 s, against 262 of them in 39 s with 16 readers
# (128 readers: 21 s; BENCHMARKS.md "Sensor ticks with many orgs").
TICK_READ_TIMEOUT_SECONDS = 2.0
TICK_READERS = 64
# The most one look takes: its read's wait, the last retry's sleep past it (store.database's
# retries sleep up to 0.5 s) and the read itself. A look starts only while it can end by the
# tick's deadline.
TICK_LOOK_SECONDS = TICK_READ_TIMEOUT_SECONDS + 1.0
# How long a sensor's or schedule's tick may spend on its orgs, whatever their number: Dagster's
# daemon fails a tick past 60 s, for every org, and a tick where every copy is held costs
# TICK_READ_TIMEOUT_SECONDS and a little more per TICK_READERS orgs (600 orgs: 25 s). The orgs a
# tick cannot look at by then wait for the next tick, which starts with them; the 20 s left are
# for what a tick does before and after its looks (the instance's queries, the run requests) on
# a loaded machine.
TICK_BUDGET_SECONDS = 40.0


# What a schedule's tick says of an org without its key whose ``on_no_key`` it had no time for.
NO_KEY_NOT_REACHED = "Not acted on: the tick's budget was spent on other orgs; the next tick tries."


def tick_deadline(budget_seconds: float = TICK_BUDGET_SECONDS) -> float:
    """The ``time.monotonic()`` reading by which a tick begun now stops looking at orgs."""
    return time.monotonic() + budget_seconds


def look_at_each_org(
    orgs: Sequence[Org], look: Callable[[Org], T], *, deadline: float | None = None
) -> dict[str, T]:
    """``look(org)`` of each org for a tick, by slug in the orgs' order, TICK_READERS at a time
    (``each_org_side_by_side``). ``look`` reads only the org's own files: a Dagster instance is
    not shared across threads. ``deadline`` (``tick_deadline``): no look starts that could end
    past it; the orgs not looked at are left out of the results."""
    start_by = None if deadline is None else deadline - TICK_LOOK_SECONDS
    return each_org_side_by_side(orgs, look, at_once=TICK_READERS, start_by=start_by)


def starting_with(orgs: Sequence[Org], slug: str | None) -> list[Org]:
    """``orgs`` in their order, but starting with org ``slug`` (those before it come last): the
    order of a tick that left that org and those after it to this one. The orgs' own order when
    ``slug`` is None or names none of them (removed from the orgs file since)."""
    start = next((index for index, org in enumerate(orgs) if org.slug == slug), 0)
    return [*orgs[start:], *orgs[:start]]


def first_left(order: Sequence[Org], left: Collection[str]) -> str | None:
    """The org the next tick starts with: the first in this tick's ``order`` that it ``left``
    (did not get to within its budget), or None when it left none."""
    return next((org.slug for org in order if org.slug in left), None)


def not_looked_at(left: Sequence[str], budget_seconds: float, then: str) -> str:
    """What a tick says of the orgs it left: how many, which, and what ``then`` happens to them."""
    return (f"{len(left)} org(s) not reached within the tick's {budget_seconds:g}-s budget ({TICK_READERS} copies "
            f"read at once, each copy an analyst's session holds costing {TICK_READ_TIMEOUT_SECONDS:g} s); "
            f"{then}: {', '.join(left)}.")


def slug_tagged_on(run: dg.DagsterRun) -> str | None:
    """The org a run's tags name: ``ORG_TAG``, else its partition key (a run launched before
    runs were tagged with their org, or with the tag removed in the Launchpad). None: no org."""
    return run.tags.get(ORG_TAG) or run.tags.get(PARTITION_TAG)


# A run in these is not over: CANCELING included, a run asked to stop still runs its step until it notices.
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
             dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def previous_runs_in_flight(context: dg.ScheduleEvaluationContext, job_name: str) -> dict[str, str]:
    """Why an org gets no run of ``job_name`` from this tick: its last one is still queued or
    running. One org's runs never run two at once (the per-org limit), so another would only
    queue behind it, and a cron shorter than a run would grow the queue without end. A run whose
    process was killed is failed by the provisioning sensors' next tick (or run monitoring), and
    the org is launched again from the tick after. Nothing when the tick has no instance (a test's)."""
    if context.instance_ref is None:
        return {}
    runs = context.instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT))
    return {
        slug: (f"its {job_name} run {run.run_id} is still {run.status.value.lower()}: this tick launches no "
               "other (it would only queue behind it)")
        for run in reversed(runs)  # the instance lists newest first: reversed, the newest one is said
        if (slug := slug_tagged_on(run))
    }


def schedule_tick(context: dg.ScheduleEvaluationContext, orgs: Orgs,
                  waits: Callable[[Org], str | None] = lambda org: None,
                  budget_seconds: float = TICK_BUDGET_SECONDS,
                  on_no_key: Callable[[Org, str], str | None] | None = None,
                  job_name: str | None = None):
    """One tick of a schedule: a run per org (``org_run_requests``), but none for an org with no
    usable key (its run would fail at its start, every tick), one whose last run of ``job_name``
    is still in flight (``previous_runs_in_flight``), or one ``waits`` gives a reason for
    (looked at side by side: ``look_at_each_org``); those are named with why (logged beside
    the runs, or the tick's skip reason). ``on_no_key(org, reason)`` is called for each org
    without a usable key (side by side too); what it returns is said after that org's reason.
    An org the tick could not look at within ``budget_seconds`` is launched, as one whose copy
    cannot be read now: its run checks for itself (a schedule keeps no cursor to start its next
    tick with it, which may be an hour away); the tick names those orgs."""
    deadline = tick_deadline(budget_seconds)
    no_key = {org.slug: reason for org in orgs if (reason := no_key_reason(org))}
    if on_no_key is not None:
        keyless = [org for org in orgs if org.slug in no_key]
        said = look_at_each_org(keyless, lambda org: on_no_key(org, no_key[org.slug]), deadline=deadline)
        no_key.update({slug: f"{no_key[slug]} {problem}" for slug, problem in said.items() if problem})
        # Its call would have started past the budget: said, as a looked-at org not reached is.
        no_key.update({org.slug: f"{no_key[org.slug]} {NO_KEY_NOT_REACHED}" for org in keyless if org.slug not in said})
    busy = previous_runs_in_flight(context, job_name) if job_name is not None else {}
    to_look_at = [org for org in orgs if org.slug not in no_key and org.slug not in busy]
    looked = look_at_each_org(to_look_at, waits, deadline=deadline)
    left = [org.slug for org in to_look_at if org.slug not in looked]
    waiting = [(slug, reason) for slug in orgs.slugs
               if (reason := no_key.get(slug) or busy.get(slug) or looked.get(slug))]
    waits_now = {slug for slug, _ in waiting}
    requests = [request for request in org_run_requests(orgs) if request.partition_key not in waits_now]
    if not requests:
        return dg.SkipReason(skip_reasons(waiting))
    for slug, reason in waiting:
        context.log.info(f"{slug}: {reason}")
    if left:
        context.log.warning(not_looked_at(left, budget_seconds, "launched, each run checks for itself"))
    return requests


@contextlib.contextmanager
def said_in_the_run(context: dg.InitResourceContext) -> Iterator[None]:
    """A ``SettingsError`` that stops a run before its first step, said as a log line of the run
    with its fix: Dagster shows a resource's failure as "Error executing resource_fn ...", with
    the error only under it (the CLI prints message and fix)."""
    try:
        yield
    except SettingsError as error:
        if context.log is not None:  # (built outside a run: nowhere to say it)
            context.log.error(f"{error} Fix: {error.fix}.")
        raise


class EnvironmentInResourceConfig(SettingsError):
    """A run config whose resource config reads a variable of the run worker ({env: VAR})."""

    fix = "type the value itself in the run config's resources, or leave it out for the org's own"


def environment_references(config: object, path: str = "") -> list[str]:
    """The fields of ``config`` (a part of a run config) that Dagster reads from the environment
    (``{env: VAR}``), by their dotted path."""
    if isinstance(config, dict):
        if set(config) == {"env"}:
            return [path or "config"]
        return [found for key, value in config.items()
                for found in environment_references(value, f"{path}.{key}" if path else str(key))]
    if isinstance(config, list):
        return [found for i, value in enumerate(config) for found in environment_references(value, f"{path}[{i}]")]
    return []


def refuse_resources_reading_the_environment(run: dg.DagsterRun | None) -> None:
    """Raise when the run config's resources read a field from the environment. Dagster accepts
    ``{env: VAR}`` for any text field, and the run worker's variables hold this deployment's
    secrets (a LangSmith key, the webhook URL, the Postgres password): read into ``duckdb_path``,
    one became the name of files on disk and was shown in the run's log to whoever can launch a
    run. The run config keeps only the variable's name; the refusal names the fields, never a
    value."""
    resources = run.run_config.get("resources") if run is not None else None
    read = sorted(environment_references(resources, "resources") if resources else [])
    if read:
        raise EnvironmentInResourceConfig(
            f"The run config reads {', '.join(read)} from the environment ({{env: ...}}): not accepted for "
            "langsmith-access's resources (it could copy a secret of this deployment into a file's name and "
            "the run's log). Type the value itself. Nothing was read or written."
        )


class RunWithoutOrg(SettingsError):
    """A run without a partition where several orgs are configured."""

    fix = "launch the run again with one org's slug as its partition"


class RunOfUnlistedOrg(SettingsError):
    """A run for an org the orgs file no longer lists (removed or renamed since it was launched)."""

    fix = ("launch the run again for one of the orgs it lists, or add it back to the orgs file "
           "(LANGSMITH_ACCESS_ORGS_FILE) and reload the code location")


class RunOfTwoOrgs(SettingsError):
    """A run whose partition and org tag name different orgs (a tag edited in the Launchpad)."""

    fix = ("launch the run again with the org picked as its partition and no langsmith_access/org tag of "
           "your own: the partition picker sets that tag to the same org")


def org_of_run(run: dg.DagsterRun | None, orgs: Orgs | None = None) -> Org:
    """The org a run serves: the one its partition key names. ``orgs``: the orgs the caller
    handed in; None reads them from the environment (the orgs file, else one org ``default``).
    Outside a run, or for a run without a partition, the only org (an error naming them when
    there are several)."""
    orgs = orgs if orgs is not None else deployment_orgs()
    slug = run.tags.get(PARTITION_TAG) if run is not None else None
    if run is not None and slug is None and len(orgs) > 1:
        raise RunWithoutOrg(
            f"Run {run.run_id} of {run.job_name} names no org, and {len(orgs)} are configured "
            f"({', '.join(orgs.slugs)}): launch one run per org, each with its org's slug as the "
            "partition (the Launchpad's partition picker, or a backfill of one run per partition)."
        )
    if run is not None and slug is not None and slug not in orgs.slugs:
        where = f"the orgs file {orgs.source}" if orgs.source else "the single-org variables"
        raise RunOfUnlistedOrg(
            f"Run {run.run_id} of {run.job_name} is for org {slug!r}, which is not one of the orgs "
            f"configured in {where} ({', '.join(orgs.slugs)}): "
            "it was removed or renamed since the run was launched. Nothing was read or written."
        )
    tagged = run.tags.get(ORG_TAG) if run is not None else None
    if run is not None and slug is not None and tagged is not None and tagged != slug:
        # Served as its partition's org, it would count as the tag's: that org's sensors would
        # wait on it as their run in flight (or after its failure), while the partition's org
        # got a second provisioning run beside it.
        raise RunOfTwoOrgs(
            f"Run {run.run_id} of {run.job_name} names two orgs: {slug!r} as its partition and {tagged!r} "
            f"in its tag {ORG_TAG}. Nothing was read or written."
        )
    return orgs.get(slug)


def tag_the_process_running_it(context: dg.InitResourceContext) -> None:
    """Tag the run with the process that executes it (``PROCESS_TAG``, as the CLI tags its runs).
    Every job runs in one process (the in-process executor): a run the code server started whose
    worker died with it (the code server killed with ``kill -9``, its machine stopped) stayed
    STARTED, holding its org's run slot (and its org's provisioning as in flight) for run
    monitoring's hour; the sensors' ticks now fail it at once (``fail_runs_of_ended_processes``),
    where this host can tell the process ended (a Kubernetes run pod is another host's: left to
    run monitoring). A tag already there that names another process is replaced: the UI's
    re-execution copies its parent run's tags, the ended process of the parent run among them."""
    run, instance = context.run, context.instance
    if run is None or instance is None or run.tags.get(PROCESS_TAG) == (process := this_process()):
        return
    instance.add_run_tags(run.run_id, {PROCESS_TAG: process})


# (No ``from __future__ import annotations`` in this module: Dagster must see the field's
# ResourceDependency annotation as a type, not as text.)
class OrgScopedResource(dg.ConfigurableResource):
    """A resource that serves the run's org. ``orgs``: the orgs to choose from, handed in by
    whoever runs the job in its own process (the runner, with the key already read); None
    (the deployed definitions): read from the environment when the run starts."""

    # A resource dependency, not config: Dagster hands the object over as it is (the keys stay
    # Secrets in memory), never into run config or the event log.
    orgs: dg.ResourceDependency[Orgs | None] = None  # type: ignore[assignment]  # Dagster's descriptor

    _org: Org | None = PrivateAttr(default=None)

    def take_org_of_run(self, context: dg.InitResourceContext) -> Org:
        """Called first by ``setup_for_execution``: the org of the run's partition key."""
        with said_in_the_run(context):
            refuse_resources_reading_the_environment(context.run)
            try:
                self._org = org_of_run(context.run, self.orgs)
            except RunOfTwoOrgs:
                # Its org tag names another org, whose sensors would wait after this failure.
                if context.instance is not None and context.run is not None:
                    context.instance.add_run_tags(context.run.run_id, {REFUSED_INPUT_TAG: "true"})
                raise
        tag_the_process_running_it(context)
        return self._org

    @property
    def org(self) -> Org:
        """The run's org; outside a run (a test, a script), the only org."""
        if self._org is None:
            self._org = org_of_run(None, self.orgs)
        return self._org

    @contextlib.contextmanager
    def failures_in_its_orgs_terms(self) -> Iterator[None]:
        """A LangSmith error of the step as its ``Failure``: the message, and its ``fix`` as
        metadata, naming where the run's org's settings come from (its key variable, its orgs
        file entry), as the CLI and ``sync_runs`` say it. What the Dagster UI shows for the step;
        the error stays its cause (the runner reads its type)."""
        try:
            yield
        except LangSmithError as error:
            description = self.org.in_its_own_terms(str(error))
            raise dg.Failure(
                description=description,
                metadata={"fix": dg.MetadataValue.text(self.org.in_its_own_terms(error.fix))},
            ) from _as_cause(error, description)


def _as_cause(error: LangSmithError, description: str) -> LangSmithError:
    """``error`` as the failure's cause: its type (the runner finds the fix by it) and fields,
    the failure's own words and no frames. The UI prints the cause under the failure: as raised,
    it repeats the message in the single-org variables' terms (LANGSMITH_API_KEY where the orgs
    file names another), under a stack trace of an error the client raised on purpose."""
    cause = type(error).__new__(type(error), description)
    cause.__dict__.update(error.__dict__)
    return cause


class RunOrganization(OrgScopedResource):
    """The run's org itself, for ops that need its settings (the connection doctor)."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.take_org_of_run(context)

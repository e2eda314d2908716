"""Resources shared by the sync, inventory and provisioning definitions.

Each serves the run's org (``defs/orgs.py``: the org its partition key names, with that org's
key, endpoint and database). None takes a secret as configuration: the key is read from the
environment by ``settings.py`` when a run starts (or handed in, already read, by the runner),
so it never enters run config or the event log.
"""


import contextlib
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
from dagster._utils.error import SerializableErrorInfo
from pydantic import Field, PrivateAttr

from langsmith_access.defs.extract.keys import job_of_run
from langsmith_access.defs.orgs import OrgScopedResource, RunOrganization, said_in_the_run
from langsmith_access.governance.notifications import Notifier, without_secrets
from langsmith_access.langsmith import CallStats, LangSmithClient
from langsmith_access.settings import Orgs
from langsmith_access.store.database import AccessDatabase, DatabaseBusyError, PublishFailedError, RunIfKilled
from langsmith_access.store.sync_runs import (
    SUCCEEDED,
    defer_failed_run,
    deferred_failed_runs,
    record_failed_run,
    recorded_sync_run,
    remove_abandoned_drafts,
    same_organization,
)
from langsmith_access.transform import docs_site
from langsmith_access.transform.history import rebuild_history, unbuilt_observations

# Every op that writes DuckDB runs in this Dagster concurrency pool.
DUCKDB_WRITER_POOL = "langsmith_access_duckdb"

# The database resources' config, as the Launchpad describes it.
_DUCKDB_PATH_HELP = ("The analysts' DuckDB file this run writes; leave it out for the org's own "
                     "(the partition's database).")
_LEASE_HELP = ("How long, in seconds, the run waits for another run (a sync, inventory or "
               "provisioning run of this org) to release the database before it fails (0: not at all).")



def _lease_purpose(context: dg.InitResourceContext) -> str:
    """What the run holds the writer lease for, as the lease words it both ways: ``could not
    <purpose>: ...`` for this run, ``<purpose> (pid N, since T) is writing ...`` for others.
    The job and the run id, as the UI names them (no run outside a job, e.g. in a test)."""
    run = context.run
    return f"run {run.job_name} {run.run_id}" if run is not None else "run a job outside Dagster"


def _say_how_to_fix(context: dg.InitResourceContext, error: DatabaseBusyError, key: str, waited: float) -> None:
    """The fix, as a log line of the run: Dagster shows a resource's failure as "Error executing
    resource_fn ...", with the error under it but not its ``fix`` (the CLI prints it)."""
    if context.log is None:  # built outside a run: nowhere to say it
        return
    context.log.error(
        f"{error}. Fix: {error.fix}. Or let the run wait longer than {waited:g} s: set "
        f"resources.{key}.config.lease_timeout_seconds in the Launchpad."
    )


# The API counters of each run under way in this process, by run id: LangSmithAPI puts its
# client's here when the run starts and takes them out when it ends. SyncDatabase, torn down
# before it (Dagster tears resources down in the reverse order of their keys), reads them for a
# failed run's sync_runs row. A run whose steps ran in other processes finds none (null counts).
_API_STATS_OF_RUN: dict[str, CallStats] = {}


class LangSmithAPI(OrgScopedResource):
    """One LangSmith client per run, for the run's org, so its call/retry/wait counters cover
    the whole run."""

    _client: LangSmithClient | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        org = self.take_org_of_run(context)
        with said_in_the_run(context):
            self._client = LangSmithClient(org.client())
        if context.run is not None:
            _API_STATS_OF_RUN[context.run.run_id] = self._client.stats

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if context.run is not None:
            _API_STATS_OF_RUN.pop(context.run.run_id, None)
        if self._client is not None:
            self._client.close()

    @property
    def client(self) -> LangSmithClient:
        if self._client is None:  # used outside a run (tests, scripts)
            self._client = LangSmithClient(self.org.client())
        return self._client


class SyncDatabase(OrgScopedResource):
    """A sync run's private copy of the run's org's working database: all or nothing.

    When a run that uses it starts, it takes the writer lease and copies the working file to a
    scratch file; every sync step writes there. The final publish step commits the scratch file
    (it becomes the working file) and publishes the analysts' copy. A run that fails or stops
    before that leaves the working file and the analysts' copy exactly as they were.
    """

    duckdb_path: str | None = Field(default=None, description=_DUCKDB_PATH_HELP)
    lease_timeout_seconds: float = Field(default=600.0, ge=0, description=_LEASE_HELP)

    _stack: contextlib.ExitStack | None = PrivateAttr(default=None)
    _scratch: Path | None = PrivateAttr(default=None)
    _committed: bool = PrivateAttr(default=False)
    _staged_docs: Path | None = PrivateAttr(default=None)

    @property
    def database(self) -> AccessDatabase:
        if self.duckdb_path:
            return AccessDatabase(Path(self.duckdb_path), self.org.settings.organization_id)
        return AccessDatabase.of_org(self.org)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.take_org_of_run(context)
        database = self.database
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(
                database.writer_lease(
                    _lease_purpose(context), timeout_seconds=self.lease_timeout_seconds,
                    run_if_killed=self._run_if_killed(context),
                )
            )
        except DatabaseBusyError as error:
            self._defer_failure(context, str(error))
            _say_how_to_fix(context, error, "sync_database", self.lease_timeout_seconds)
            raise
        try:
            database.ensure_working()
            self._record_deferred_failures(context)
            self._scratch = database.begin_scratch()
            self._scratch = self._build_unbuilt_observations(context, database, self._scratch)
        except BaseException:
            if self._scratch is not None:
                database.discard_scratch(self._scratch)
                self._scratch = None
            stack.close()
            raise
        self._stack = stack
        self._committed = False
        self._staged_docs = None

    def _build_unbuilt_observations(
        self, context: dg.InitResourceContext, database: AccessDatabase, scratch: Path
    ) -> Path:
        """Changes a provisioning run verified but died before building into the history: built
        now, before this run replaces the listings they were laid over, so they are dated when
        they were verified (``transform.history``). Returns the scratch file to go on with."""
        with database.connect(scratch) as conn:
            unbuilt = unbuilt_observations(conn)
        if not unbuilt:
            return scratch
        try:
            rebuild_history(scratch, database.dbt_target_path, unused_days=self.org.settings.unused_days,
                            notifier=Notifier.of_org(self.org))
        except Exception as error:
            # The run goes on as if nothing were unbuilt (its own build lays the changes over the
            # listings, dated at its build): a failure here must not stop every sync after it.
            if context.log is not None:
                context.log.warning(f"{unbuilt} change(s) provisioning verified could not be built into the "
                                    f"history first ({type(error).__name__}: {error}); this sync's build "
                                    "dates them instead")
            database.discard_scratch(scratch)
            return database.begin_scratch()
        return scratch

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        try:
            if self._scratch is not None and not self._committed:
                self.database.discard_scratch(self._scratch)
                # Written now, in the working file, still under the lease: the failed run's row
                # and event survive the scratch copy it wrote everything else to.
                self._record_failure(context)
            if self._staged_docs is not None:  # not published: the run failed after staging
                shutil.rmtree(self._staged_docs, ignore_errors=True)
        finally:
            if self._stack is not None:
                self._stack.close()

    def _record_failure(self, context: dg.InitResourceContext) -> None:
        """For a run (sync or inventory) a step of which failed: its ``sync_runs`` row and
        ``sync.failed``; nothing for a run that published nothing because it was asked for part
        of its assets only, without ``analysts_database`` (nothing failed; a subset the publish
        refused did fail, and gets its row). Never raises: the run's own failure is what it reports."""
        if context.run is None or context.instance is None:
            return
        run = context.run
        try:
            failure = run_failure(context)
            if failure is None:
                return
            stats = _API_STATS_OF_RUN.get(run.run_id)
            with self.database.connect() as conn:
                self._record_failed_run(
                    conn, sync_id=run.run_id, job=job_of_run(run.job_name, run.asset_selection), failure=failure,
                    started_at=run_started_at(context.instance, run.run_id), finished_at=datetime.now(UTC),
                    api_stats=stats.snapshot() if stats is not None else None,
                )
        except Exception as error:  # the run's own failure is what matters
            if context.log is not None:
                context.log.warning(f"the failed run could not be recorded: {type(error).__name__}")

    def _record_failed_run(self, conn: duckdb.DuckDBPyConnection, *, sync_id: str, job: str, failure: str,
                           started_at: datetime, finished_at: datetime, api_stats: dict | None) -> None:
        """A failed run's ``sync_runs`` row and its ``sync.failed`` (once per run), secrets removed."""
        org = self.org
        secrets = (org.settings.api_key, org.settings.webhook_url)
        # In the org's own terms: with an orgs file, its key variable and entry, not the
        # single-org variables a reader of another org's row or alert would check.
        failure = org.in_its_own_terms(failure)
        record_failed_run(conn, sync_id=sync_id, started_at=started_at, finished_at=finished_at,
                          api_stats=api_stats, job=job, failure=without_secrets(failure, secrets),
                          organization_id=org.settings.organization_id)
        notifier = Notifier.of_org(org)
        if notifier.enabled:
            detail = without_secrets(
                f"{job} run {sync_id} failed and published nothing (the analysts' database is as "
                f"the last good run left it): {failure}", secrets)
            notifier.notify(conn, "sync.failed", at=finished_at, detail=detail, once_for=sync_id)

    def _run_if_killed(self, context: dg.InitResourceContext) -> RunIfKilled | None:
        """This run, for the lease's record: should its process be killed holding the lease, the
        next writer leaves its failed row, which the next sync records and announces."""
        if context.run is None or context.instance is None:
            return None
        run = context.run
        return RunIfKilled(sync_id=run.run_id, job=job_of_run(run.job_name, run.asset_selection),
                           started_at=run_started_at(context.instance, run.run_id),
                           organization_id=self.org.settings.organization_id)

    def _defer_failure(self, context: dg.InitResourceContext, failure: str) -> None:
        """A run that could not take the writer lease cannot write its row: it leaves it for the
        next run that does (``_record_deferred_failures``). Never raises."""
        if context.run is None or context.instance is None:
            return
        run = context.run
        org = self.org
        try:
            defer_failed_run(
                self.database.deferred_runs_path, sync_id=run.run_id, job=job_of_run(run.job_name, run.asset_selection),
                started_at=run_started_at(context.instance, run.run_id), finished_at=datetime.now(UTC),
                failure=without_secrets(failure, (org.settings.api_key, org.settings.webhook_url)),
                organization_id=org.settings.organization_id,
            )
        except Exception as error:
            if context.log is not None:
                context.log.warning(f"the failed run could not be recorded: {type(error).__name__}")

    def _record_deferred_failures(self, context: dg.InitResourceContext) -> None:
        """The rows (and ``sync.failed``) of earlier runs that could not take the lease, into the
        working file; each file is removed once recorded, and so are the drafts of rows whose
        writer died before renaming them. Never raises: they wait for a later run."""
        remove_abandoned_drafts(self.database.deferred_runs_path)
        ours = self.org.settings.organization_id
        for path, row in deferred_failed_runs(self.database.deferred_runs_path):
            theirs = row.pop("organization_id")
            if theirs is not None and ours is not None and not same_organization(theirs, ours):
                # A run of another org pointed at this database: its row and alert are not this org's.
                if context.log is not None:
                    context.log.warning(
                        f"{path} holds a failed run of another organization ({theirs}), which was pointed at "
                        "this database: left unrecorded (this org's sync_runs and alerts are its own); "
                        "remove the file once read")
                continue
            try:
                with self.database.connect() as conn:
                    recorded = recorded_sync_run(conn, row["sync_id"])
                    # A run killed after its success was committed, before it let go of the lease:
                    # it did succeed.
                    if recorded is None or recorded["status"] != SUCCEEDED:
                        self._record_failed_run(conn, api_stats=None, **row)
                path.unlink(missing_ok=True)
            except Exception as error:
                if context.log is not None:
                    context.log.warning(f"an earlier failed run could not be recorded yet: {type(error).__name__}")

    @property
    def scratch_path(self) -> Path:
        if self._scratch is None:
            raise RuntimeError("SyncDatabase is only usable inside a sync run")
        return self._scratch

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.database.connect(self.scratch_path) as conn:
            yield conn

    @property
    def dbt_target_path(self) -> Path:
        return self.database.dbt_target_path

    def docs_site_due(self) -> bool:
        """Whether the published docs site was built from another version of the project (or
        there is none): this sync's build then writes its manifest for the site."""
        return not docs_site.is_current(self.database.docs_path)

    def stage_docs_site(self) -> None:
        """Generate the dbt docs site from the scratch database and the manifest its build just
        wrote (when ``docs_site_due``); ``commit_and_publish`` swaps it in."""
        self._staged_docs = docs_site.stage(
            self.scratch_path, self.dbt_target_path, self.database.docs_path
        )

    def commit_and_publish(self) -> None:
        """The run passed: publish its scratch file and make it the working file. The analysts'
        copy and its Parquet are written from the scratch file first: if that fails (a full
        disk), nothing is committed, and the run fails with the working file as it was."""
        database = self.database
        staged = database.stage_publish(self.scratch_path)
        try:
            database.commit_scratch(self.scratch_path)
        except BaseException:
            staged.discard()
            raise
        self._committed = True
        database.swap_in(staged, docs_site=self._staged_docs)
        self._staged_docs = None


# The runs in this process whose publish at teardown failed, by run id: ``unpublished_run`` gives the
# runner (``runner.run_job``) the error, which Dagster records only as a failed teardown.
_UNPUBLISHED_RUNS: dict[str, PublishFailedError] = {}


def unpublished_run(run_id: str) -> PublishFailedError | None:
    """The ``PublishFailedError`` of run ``run_id`` of this process, whose publish at teardown
    failed (None when it published); taken: asked again, None."""
    return _UNPUBLISHED_RUNS.pop(run_id, None)


class ProvisioningDatabase(OrgScopedResource):
    """The run's org's working database for a provisioning run, held for the whole run.

    Taking the writer lease for the run serializes provisioning runs with each other and with
    syncs, so a request found ``in_progress`` at the start belongs to a run that died. When the
    run ends, successful or not, the analysts' copy is published: statuses there always reflect
    what was done.
    """

    duckdb_path: str | None = Field(default=None, description=_DUCKDB_PATH_HELP)
    lease_timeout_seconds: float = Field(default=600.0, ge=0, description=_LEASE_HELP)

    _stack: contextlib.ExitStack | None = PrivateAttr(default=None)

    @property
    def database(self) -> AccessDatabase:
        if self.duckdb_path:
            return AccessDatabase(Path(self.duckdb_path), self.org.settings.organization_id)
        return AccessDatabase.of_org(self.org)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.take_org_of_run(context)
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(
                self.database.writer_lease(
                    _lease_purpose(context), timeout_seconds=self.lease_timeout_seconds
                )
            )
        except DatabaseBusyError as error:
            _say_how_to_fix(context, error, "provisioning_database", self.lease_timeout_seconds)
            raise
        try:
            self.database.ensure_working()
            # Claims and outcomes are committed from the first op on, and published only at
            # teardown: a publish that fails there (a full disk) or a run killed before it leaves
            # the marker, so the next writer publishes them rather than `requests` showing the
            # requests pending until some run happens to publish.
            self.database.publish_pending()
        except BaseException:
            stack.close()
            raise
        self._stack = stack

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._stack is None:
            return
        try:
            self.database.publish()
        except Exception as error:
            # Dagster logs a teardown's error but the run still succeeds (the sensor and a
            # re-execution must not take it for a failure: everything was applied and recorded).
            # Said in the run's event log with its fix, and handed to the runner for the CLI.
            unpublished = PublishFailedError(f"{_lease_purpose(context)} recorded what it did", None, error,
                                             self.database)
            if context.log is not None:
                context.log.error(str(unpublished) + (f". Fix: {unpublished.fix}" if unpublished.fix else ""))
            if context.run is not None:
                _UNPUBLISHED_RUNS[context.run.run_id] = unpublished
            raise unpublished from error
        finally:
            self._stack.close()

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.database.connect() as conn:
            yield conn


def run_started_at(instance: dg.DagsterInstance, run_id: str) -> datetime:
    """When the run started, as its instance recorded it (now, where it recorded none yet)."""
    stats = instance.get_run_stats(run_id)
    return datetime.fromtimestamp(stats.start_time, UTC) if stats and stats.start_time else datetime.now(UTC)


def run_failure(context: dg.InitResourceContext) -> str | None:
    """What made the run fail, as far as its event log says by the time resources are torn
    down: ``<step>: <message>`` of the first failed step (or resource), None when nothing failed."""
    if context.run is None or context.instance is None:
        return None
    records = context.instance.get_records_for_run(
        context.run.run_id,
        of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RESOURCE_INIT_FAILURE},
        limit=1,
    ).records
    if not records:
        return None
    event = records[0].event_log_entry.dagster_event
    data = event.event_specific_data if event is not None else None
    user_failure = getattr(data, "user_failure_data", None)
    error = getattr(data, "error", None)
    # Dagster wraps the step's own exception: its message is the cause's.
    while error is not None and error.cause is not None and "dagster" in (error.cls_name or "").lower():
        error = error.cause
    if user_failure is not None and user_failure.description:
        message = user_failure.description
    elif error is not None:
        message = without_type_name(error)
    else:
        message = "see the Dagster event log"
    step = event.step_key if event is not None and event.step_key else "run"
    if error is not None and error.cls_name == "DagsterAssetCheckFailedError":
        # Dagster's failure for a blocking check names only the check: the why and the fix
        # (shrink_guard's counts and accept_shrink) are in the check's own result.
        message = "; ".join(_failed_checks(context)) or message
    return f"{step}: {message}"


# What Dagster records for a run stopped under way (Terminate in the UI, Ctrl-C, a signal): its
# interruption at a step's checkpoint, or the KeyboardInterrupt itself where it landed in our code.
# Neither has a message of its own: sync_runs.failure and sync.failed read
# "dagster._core.errors.DagsterExecutionInterruptedError".
_INTERRUPTIONS = ("DagsterExecutionInterruptedError", "KeyboardInterrupt")
# And where it landed in a DuckDB query: DuckDB takes the exception the signal handler raised and
# raises this instead (a query stopped by ``interrupt()`` is an InterruptException, not this).
_INTERRUPTED_QUERY = ("RuntimeError", "Query interrupted")
INTERRUPTED = "interrupted (Ctrl-C or a signal) before it finished"


def without_type_name(error: SerializableErrorInfo) -> str:
    """The recorded error's message without the ``package.module.ClassName: `` Python puts
    before it (an error with no message of its own, Dagster's interruption, said in words)."""
    if is_interruption(error):
        return INTERRUPTED
    return stated(error)


def stated(error: SerializableErrorInfo) -> str:
    return re.sub(rf"^[\w.]*\b{re.escape(error.cls_name or '')}: ", "", error.message.strip())


def is_interruption(error: SerializableErrorInfo) -> bool:
    """Whether the recorded ``error`` is the run being stopped (Terminate, Ctrl-C or a signal)."""
    return error.cls_name in _INTERRUPTIONS or (error.cls_name, stated(error)) == _INTERRUPTED_QUERY


def _failed_checks(context: dg.InitResourceContext) -> list[str]:
    """``<asset>:<check>[, ...]: <description>`` of the run's checks that failed with ERROR
    severity, the checks of one description (a guard over two assets) together."""
    assert context.run is not None and context.instance is not None
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    by_description: dict[str, list[str]] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event is not None else None
        if (isinstance(evaluation, dg.AssetCheckEvaluation) and not evaluation.passed
                and evaluation.severity == dg.AssetCheckSeverity.ERROR):
            by_description.setdefault(evaluation.description or "", []).append(
                f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
    return [", ".join(checks) + (f": {description}" if description else "")
            for description, checks in by_description.items()]


def org_resources(orgs: Orgs | None = None) -> dict[str, OrgScopedResource]:
    """Every resource, by key, serving the orgs given (None: the orgs of the environment, read
    when a run starts). The runner passes its own, so a run uses exactly the settings it was
    handed (the demo's sandbox, an org of the CLI's choosing)."""
    def serving(resource: type[OrgScopedResource]) -> OrgScopedResource:
        return resource() if orgs is None else resource(orgs=orgs)  # the field refuses an explicit None

    return {
        "organization": serving(RunOrganization),
        "langsmith": serving(LangSmithAPI),
        "sync_database": serving(SyncDatabase),
        "provisioning_database": serving(ProvisioningDatabase),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=org_resources())

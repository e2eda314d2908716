"""deploy/, checked statically: what an operator runs in production (DESIGN.md section 11).

Kubernetes, containers and systemd cannot run on this machine, so these files are validated
without running them: every file parses; ``dagster.yaml`` and ``workspace.yaml`` validate
against Dagster's own config schemas (the ones ``DagsterInstance`` and the workspace loader
apply), and every configurable class in ``dagster.yaml`` against its own; every key of the Helm
values exists in the official chart's values schema (an excerpt in
``langsmith_access_tests/data``, its source noted there); the systemd units pass
``systemd-analyze verify`` where systemd is installed; the Containerfile's instructions are
read and checked against the repository. The Postgres-backed instance itself runs for real in
``test_smoke_deploy.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import itertools
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes
import pytest
import yaml
from dagster._cli import cli as dagster_cli
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.workspace.config_schema import process_workspace_config
from dagster._serdes.config_class import ConfigurableClassData
from dagster._utils.tags import TagConcurrencyLimitsCounter
from dagster_k8s.models import k8s_snake_case_dict

from langsmith_access.names import ORG_TAG
from langsmith_access.settings import (
    ENVIRONMENT,
    FALLBACK_VARIABLES,
    ORGS_FILE_VARIABLE,
    POLICY_VARIABLE,
    cache_directory,
    load_orgs,
)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
UNITS = DEPLOY / "systemd"
README = REPO / "README.md"
HELM_SCHEMA = REPO / "langsmith_access_tests" / "data" / "dagster-helm-values.schema.excerpt.json"
# Where the units expect the product installed (README "Running it for real").
INSTALL_PREFIX = "/opt/langsmith-access/venv"
# The Postgres variables dagster.yaml reads, with harmless values for validation.
PG_VARIABLES = {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USER": "dagster",
                "DAGSTER_PG_PASSWORD": "not-a-real-password", "DAGSTER_PG_DB": "dagster"}
# The dagsterDaemon.runMonitoring keys the chart's instance template reads
# (helm/dagster/templates/configmap-instance.yaml, dagster-io/dagster@835892b4): the values
# schema types runMonitoring as a free object, so a misspelt key would be silently ignored.
CHART_RUN_MONITORING_KEYS = {"enabled", "startTimeoutSeconds", "cancelTimeoutSeconds", "maxResumeRunAttempts",
                             "pollIntervalSeconds", "freeSlotsAfterRunEndSeconds"}
# The run queue: the chart's queuedRunCoordinator values have no key for the coordinator's
# max_user_code_failure_retries and user_code_failure_retry_delay (the "queued" template of
# templates/helpers/instance/_run-coordinator.tpl, dagster-io/dagster@7b875469, writes only
# max_concurrent_runs, tag_concurrency_limits, dequeue_* and block_op_concurrency_limited_runs),
# but its "custom" template writes module, class and config as they are
# (``config: {{ $customRunCoordinatorConfig.config | toYaml }}``), for type CustomRunCoordinator
# (schema/charts/dagster/subschema/daemon.py: RunCoordinatorType.CUSTOM, a ConfigurableClass).
# So the values name Dagster's QueuedRunCoordinator there with deploy/dagster.yaml's whole config.
HELM_RUN_COORDINATOR = "dagsterDaemon.runCoordinator.config.customRunCoordinator"
# Where each setting of deploy/dagster.yaml's run monitoring and tick retention goes in the Helm
# values: what the chart's instance template writes from them (templates/configmap-instance.yaml,
# dagster-io/dagster@835892b4). Dotted paths, from deploy/dagster.yaml to the values.
HELM_EQUIVALENTS = {
    "run_monitoring.enabled": "dagsterDaemon.runMonitoring.enabled",
    "run_monitoring.start_timeout_seconds": "dagsterDaemon.runMonitoring.startTimeoutSeconds",
    "run_monitoring.cancel_timeout_seconds": "dagsterDaemon.runMonitoring.cancelTimeoutSeconds",
    "run_monitoring.max_resume_run_attempts": "dagsterDaemon.runMonitoring.maxResumeRunAttempts",
    "run_monitoring.poll_interval_seconds": "dagsterDaemon.runMonitoring.pollIntervalSeconds",
    "run_monitoring.free_slots_after_run_end_seconds": "dagsterDaemon.runMonitoring.freeSlotsAfterRunEndSeconds",
    "retention.schedule.purge_after_days": "retention.schedule.purgeAfterDays",
    "retention.sensor.purge_after_days": "retention.sensor.purgeAfterDays",
}
# The settings the chart cannot write: the Helm values and the README must say so.
NO_HELM_EQUIVALENT = {"run_monitoring.max_runtime_seconds"}
# ... of which the jobs' own tags carry one everywhere (test_every_job_carries_the_run_time_limit).
HELD_BY_JOB_TAGS = {"run_monitoring.max_runtime_seconds": "dagster/max_runtime"}
# Dagster's values for what deploy/dagster.yaml leaves out (DagsterInstance.run_monitoring_*).
DAGSTER_DEFAULTS = {"run_monitoring.max_resume_run_attempts": 0}


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values]}} (a key may repeat, as EnvironmentFile does)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"{path.name}:{number}: not 'Key=value' in a section: {raw!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def containerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile: continuation lines joined, comments dropped
    (also inside a continuation, as the builders do)."""
    instructions = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        instruction, _, arguments = whole.partition(" ")
        instructions.append((instruction.upper(), arguments.strip()))
    assert not pending, f"{path.name} ends inside a continued instruction"
    return instructions


def code_server_arguments(argv: list[str]) -> dict[str, str]:
    """The options of a `dagster code-server start` command line, long names."""
    aliases = {"-h": "--host", "-p": "--port", "-m": "--module-name", "-a": "--attribute"}
    options = {}
    for flag, value in itertools.pairwise(argv):
        if flag.startswith("-"):
            options[aliases.get(flag, flag)] = value
    return options


# ------------------------------------------------------------------ every file parses


def test_every_deploy_file_parses():
    files = sorted(path for path in DEPLOY.rglob("*") if path.is_file())
    assert files, "deploy/ is empty"
    for path in files:
        if path.suffix == ".yaml":
            assert load_yaml(path) is not None, path
        elif path.suffix == ".service":
            unit = read_unit(path)
            assert {"Unit", "Service", "Install"} <= set(unit), path
        elif path.name == "Containerfile":
            assert containerfile_instructions(path)[0][0] == "FROM"
        elif path.suffix == ".py":  # a housekeeping script an operator runs (prune_dagster_runs.py)
            compile(path.read_text(encoding="utf-8"), str(path), "exec")
        elif path.name.endswith(".env.example"):
            for line in path.read_text(encoding="utf-8").splitlines():
                assert not line or line.startswith("#") or re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", line), (path, line)
        else:
            pytest.fail(f"{path.relative_to(REPO)}: this test does not know how to check it: add it here")


# ------------------------------------------------------------------ dagster.yaml


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    """deploy/dagster.yaml as a DAGSTER_HOME, with the Postgres variables it reads set."""
    for name, value in PG_VARIABLES.items():
        monkeypatch.setenv(name, value)
    shutil.copyfile(DEPLOY / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path


def configured_classes(home: Path) -> dict[str, object]:
    """Each configurable class of the instance in ``home`` with its config validated against
    the class's own schema (as ``ConfigurableClassData.rehydrate`` does, without connecting)."""
    ref = InstanceRef.from_dir(str(home))  # validates the file against Dagster's instance schema
    classes = {}
    for field in ("storage_data", "run_storage_data", "event_storage_data", "schedule_storage_data",
                  "run_coordinator_data", "run_launcher_data", "scheduler_data", "compute_logs_data"):
        data = getattr(ref, field)
        if data is None:
            continue
        klass = getattr(importlib.import_module(data.module_name), data.class_name)
        result = process_config(klass.config_type(), data.config_dict)
        assert result.success, f"{field} ({data.class_name}): {[error.message for error in result.errors]}"
        classes[field] = klass
    return classes


def test_dagster_yaml_validates_against_dagsters_own_schema(dagster_home):
    config, custom_instance_class = dagster_instance_config(str(dagster_home))
    assert custom_instance_class is None
    classes = configured_classes(dagster_home)
    # Runs, the event log and schedules in Postgres.
    for field in ("storage_data", "run_storage_data", "event_storage_data", "schedule_storage_data"):
        assert classes[field].__module__.startswith("dagster_postgres"), (field, classes[field])
    assert classes["run_coordinator_data"] is QueuedRunCoordinator
    assert config["run_monitoring"]["enabled"] is True
    assert config["telemetry"]["enabled"] is False


def test_dagster_yaml_limits_each_org_to_one_run_at_a_time(dagster_home):
    from langsmith_access.definitions import defs

    coordinator = InstanceRef.from_dir(str(dagster_home)).run_coordinator_data.rehydrate(QueuedRunCoordinator)
    queue = coordinator.get_run_queue_config()
    # The Helm values' coordinator, loaded as Dagster loads the one the chart writes into the
    # instance (class and config validated), is the same, with the same limits.
    helm = dotted(load_yaml(DEPLOY / "helm" / "values.yaml"), HELM_RUN_COORDINATOR)
    helm_coordinator = ConfigurableClassData(helm["module"], helm["class"], yaml.safe_dump(helm["config"])).rehydrate(
        QueuedRunCoordinator)
    assert type(helm_coordinator) is QueuedRunCoordinator
    assert helm_coordinator.get_run_queue_config() == queue
    assert queue.max_concurrent_runs > 1  # different orgs side by side
    # The tags Dagster gives the runs of one org's partition: a scheduled sync, and a run
    # launched from the asset catalog (the implicit asset job: no org tag of ours).
    repository = defs().get_repository_def()
    [slug] = load_orgs().slugs

    def run_tags(job_name: str, org: str) -> dict[str, str]:
        tags = repository.get_job(job_name).partitioned_config.get_tags_for_partition_key(slug, job_name=job_name)
        return {key: org if value == slug else value for key, value in tags.items()}

    sync, from_catalog = (run_tags(name, "us") for name in ("langsmith_access_sync", "__ASSET_JOB"))
    assert sync[ORG_TAG] == "us" and ORG_TAG not in from_catalog
    # Each limit dagster.yaml (and the README) names is on a tag the org's runs carry: no limit
    # of a tag nobody sets (the README's `langsmith_access/org=<slug>` renamed in names.py, say).
    assert {limit["key"] for limit in queue.tag_concurrency_limits} == {"langsmith_access/org", "dagster/partition"}
    assert {"langsmith_access/org", "dagster/partition"} <= set(sync)

    def blocked(running: dict[str, str], queued: dict[str, str]) -> bool:
        counter = TagConcurrencyLimitsCounter(queue.tag_concurrency_limits, [_Tagged(running)])
        return counter.is_blocked(_Tagged(queued))

    for running, queued in itertools.permutations([sync, from_catalog, run_tags("provision_workspace_roles", "us")], 2):
        assert blocked(running, queued), (running, queued)  # one org: one run at a time
    assert not blocked(sync, run_tags("langsmith_access_sync", "eu"))  # another org: side by side
    assert not blocked(from_catalog, run_tags("__ASSET_JOB", "eu"))


@dataclasses.dataclass
class _Tagged:
    """What the queue's tag limits look at in a run: its tags."""

    tags: dict[str, str]


def test_a_mistake_in_dagster_yaml_is_caught(dagster_home):
    """The validation above can fail: a misspelt instance key, and a misspelt coordinator key."""
    original = (dagster_home / "dagster.yaml").read_text(encoding="utf-8")
    (dagster_home / "dagster.yaml").write_text(original.replace("run_monitoring:", "run_monitorng:"))
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(dagster_home))
    (dagster_home / "dagster.yaml").write_text(original.replace("tag_concurrency_limits:", "tag_concurency_limits:"))
    with pytest.raises(AssertionError, match="run_coordinator_data"):
        configured_classes(dagster_home)


def test_every_variable_dagster_yaml_reads_is_in_the_example_environment_file():
    referenced = set(re.findall(r"env:\s*(\w+)", (DEPLOY / "dagster.yaml").read_text(encoding="utf-8")))
    assert referenced == set(PG_VARIABLES)
    example = (UNITS / "dagster.env.example").read_text(encoding="utf-8")
    assert referenced <= set(re.findall(r"^(\w+)=", example, flags=re.MULTILINE))


# A generated Postgres password: characters the shell reads otherwise than systemd when unquoted
# ('$' expands, '&' and ';' end the command, a space ends the assignment, '"' opens a quote).
AWKWARD_PASSWORD = 'p@ss w0rd$HOME&x;y#z"'


def test_a_postgres_password_with_shell_characters_reaches_the_upgrade_shell_as_the_units_read_it(tmp_path):
    """dagster.env is read by systemd (the units' EnvironmentFile) and by ``sh``: README's upgrade
    sources it before ``dagster instance migrate``. Unquoted, the two read a value differently:
    systemd keeps a ``$`` and everything up to the line's end, the shell expands the ``$`` and
    ends the assignment at a space, ``&`` or ``;`` (running the rest as a command), so the
    migration would log in with another password than the units. Inside single quotes both take
    every character but ``'`` and ``\\`` literally (systemd's env-file.c, SINGLE_QUOTE_VALUE; POSIX
    sh), so the example quotes the placeholder an operator replaces with the password."""
    example = (UNITS / "dagster.env.example").read_text(encoding="utf-8")
    (line,) = [line for line in example.splitlines() if line.startswith("DAGSTER_PG_PASSWORD=")]
    placeholder = line.partition("=")[2].strip("'")
    operators_file = tmp_path / "dagster.env"
    operators_file.write_text(example.replace(line, line.replace(placeholder, AWKWARD_PASSWORD)), encoding="utf-8")
    # README's upgrade command, with the operator's file and the variable printed instead of migrating.
    upgrade = readme_commands(readme_section("### Upgrading"))
    (script,) = [words[5] for words in upgrade if words[:5] == ["sudo", "-u", "langsmith-access", "sh", "-c"]
                 and ". /etc/langsmith-access/dagster.env;" in words[5]]
    migrate = f"{INSTALL_PREFIX}/bin/dagster instance migrate"
    assert migrate in script, script
    script = script.replace("/etc/langsmith-access/dagster.env", str(operators_file))
    done = subprocess.run(["sh", "-c", script.replace(migrate, "printenv DAGSTER_PG_PASSWORD")], cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True, text=True,
                          timeout=30, check=False)
    assert (done.returncode, done.stdout) == (0, AWKWARD_PASSWORD + "\n"), done.stdout + done.stderr
    # What systemd reads from the same line: the text between the single quotes, as it is.
    (operators_line,) = [line for line in operators_file.read_text(encoding="utf-8").splitlines()
                         if line.startswith("DAGSTER_PG_PASSWORD=")]
    assert operators_line == f"DAGSTER_PG_PASSWORD='{AWKWARD_PASSWORD}'", operators_line


# ------------------------------------------------------------------ workspace.yaml and the units


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    return read_unit(UNITS / f"langsmith-access-{name}.service")


def exec_start(name: str) -> list[str]:
    (command,) = unit(name)["Service"]["ExecStart"]
    return shlex.split(command)


def test_workspace_yaml_validates_and_points_at_the_code_server_unit():
    workspace = load_yaml(DEPLOY / "workspace.yaml")
    result = process_workspace_config(workspace)
    assert result.success, [error.message for error in result.errors]
    (location,) = workspace["load_from"]
    server = location["grpc_server"]
    code_server = code_server_arguments(exec_start("code-server"))
    assert (server["host"], str(server["port"])) == (code_server["--host"], code_server["--port"])
    assert server["location_name"] == code_server["--location-name"]


def test_the_code_server_serves_the_definitions_the_repository_workspace_loads():
    (target,) = load_yaml(REPO / "workspace.yaml")["load_from"]
    module, attribute = target["python_module"]["module_name"], target["python_module"]["attribute"]
    argv = exec_start("code-server")
    assert argv[:3] == [f"{INSTALL_PREFIX}/bin/dagster", "code-server", "start"]
    options = code_server_arguments(argv)
    assert (options["--module-name"], options["--attribute"]) == (module, attribute)
    assert callable(getattr(importlib.import_module(module), attribute))


def test_only_the_code_server_unit_gets_the_langsmith_keys():
    workspace_path = "/etc/langsmith-access/workspace.yaml"
    for name, command in (("daemon", ["dagster-daemon", "run"]), ("webserver", ["dagster-webserver"])):
        argv = exec_start(name)
        assert argv[0] == f"{INSTALL_PREFIX}/bin/{command[0]}" and argv[1:len(command)] == command[1:]
        assert argv[argv.index("--workspace") + 1] == workspace_path
        assert unit(name)["Service"]["EnvironmentFile"] == ["/etc/langsmith-access/dagster.env"]
    assert unit("code-server")["Service"]["EnvironmentFile"] == [
        "/etc/langsmith-access/dagster.env", "/etc/langsmith-access/langsmith.env"]
    for name in ("code-server", "daemon", "webserver"):
        service = unit(name)["Service"]
        assert service["Restart"] == ["always"], name  # a killed daemon comes back by itself
        assert service["User"] == ["langsmith-access"], name
        assert "DAGSTER_HOME=/var/lib/langsmith-access/dagster_home" in service["Environment"], name
        assert unit(name)["Install"]["WantedBy"] == ["multi-user.target"], name


def test_the_ui_and_the_code_server_listen_on_this_host_only():
    """Neither the UI nor the code server asks who calls: whoever reaches the code server's gRPC
    port can launch runs, which hold the LangSmith keys, and whoever reaches the UI can launch
    them too. So both listen on the loopback interface only (the README sends remote users
    through an SSH tunnel or an authenticating proxy), at the address the README gives."""
    webserver = code_server_arguments(exec_start("webserver"))
    assert webserver["--host"] == "127.0.0.1", webserver
    assert f"The UI listens on `{webserver['--host']}:{webserver['--port']}`" in readme_section(
        "### One host, with systemd").replace("\n", " ")
    assert code_server_arguments(exec_start("code-server"))["--host"] == "127.0.0.1"


def under(path: Path, directories: list[str]) -> bool:
    return any(path == Path(directory) or path.is_relative_to(directory) for directory in directories)


def test_every_unit_can_write_where_it_writes():
    """``ProtectSystem=strict`` makes the whole file system read-only for a unit but its
    ``ReadWritePaths``: the Dagster instance's directory (every unit: the daemon's and the
    webserver's state, the runs' local artifacts and compute logs), and for the code server and
    its runs the databases' folder and the cache (dbt's manifest) that langsmith.env names.
    A path outside them fails at the first write, after ``systemd-analyze verify`` passed."""
    settings = environment_file(UNITS / "langsmith.env.example")
    for name in ("code-server", "daemon", "webserver"):
        service = unit(name)["Service"]
        if service.get("ProtectSystem") != ["strict"]:
            continue
        writable = service.get("ReadWritePaths", [])
        environment = dict(entry.split("=", 1) for entry in service["Environment"])
        written = [Path(environment["DAGSTER_HOME"])]
        if name == "code-server":
            written += [Path(settings["LANGSMITH_ACCESS_DUCKDB"]).parent, Path(settings["LANGSMITH_ACCESS_CACHE_DIR"])]
        for path in written:
            assert path.is_absolute() and under(path, writable), f"{name}: {path} is not in ReadWritePaths {writable}"


def test_systemd_analyze_verifies_the_units_against_an_installed_product(tmp_path):
    """``systemd-analyze verify`` where systemd is installed (it checks each unit's syntax and
    that its commands exist): the units' install prefix is pointed at this test's virtualenv,
    where the product and Dagster's commands are installed."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here: the units are only parsed (above)")
    copies = []
    for path in sorted(UNITS.glob("*.service")):
        copy_path = tmp_path / path.name
        copy_path.write_text(path.read_text(encoding="utf-8").replace(INSTALL_PREFIX, sys.prefix))
        copies.append(str(copy_path))
    done = subprocess.run([analyze, "verify", *copies], capture_output=True, text=True, timeout=120, check=False)
    # Not even a warning (an unknown key is only a warning, and would be silently ignored).
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


# ------------------------------------------------------------------ the Containerfile


def test_the_containerfile_installs_the_product_with_a_plain_pip_install():
    instructions = containerfile_instructions(DEPLOY / "Containerfile")
    kinds = [kind for kind, _ in instructions]
    assert kinds[0] == "FROM" and set(kinds) <= {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "VOLUME",
                                                 "EXPOSE", "HEALTHCHECK", "CMD"}
    python = re.search(r"python:(\d+\.\d+)", instructions[0][1]).group(1)
    requires = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    assert f">={python}" in requires, (python, requires)
    runs = " && ".join(arguments for kind, arguments in instructions if kind == "RUN")
    installs = re.findall(r"pip install[^&]*", runs)
    assert [install.strip() for install in installs] == ["pip install ."], installs  # not editable, nothing else
    for module, name in re.findall(r"from ([\w.]+) import (\w+)", runs):  # what the build calls exists
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"
    for kind, arguments in instructions:
        if kind == "COPY":
            *sources, _destination = arguments.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
    users = [arguments for kind, arguments in instructions if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    # The build context is only what it copies: never the virtualenv or data/ (access databases).
    ignored = [line for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
               if line and not line.startswith("#")]
    copied = {source for kind, arguments in instructions if kind == "COPY" for source in arguments.split()[:-1]}
    assert ignored[0] == "*" and {line[1:] for line in ignored if line.startswith("!")} == copied
    assert not any(line.startswith("!") for line in ignored[1:] if line[1:].split("/")[0] in (".venv", "data", ".git"))
    command = json.loads(next(arguments for kind, arguments in instructions if kind == "CMD"))
    code_server = code_server_arguments(command)
    unit_server = code_server_arguments(exec_start("code-server"))
    assert command[:3] == ["dagster", "code-server", "start"]
    for option in ("--port", "--module-name", "--attribute", "--location-name"):
        assert code_server[option] == unit_server[option], option
    exposed = next(arguments for kind, arguments in instructions if kind == "EXPOSE")
    assert exposed == code_server["--port"]


def test_the_image_runs_as_a_numeric_non_root_user_and_checks_its_code_server():
    """USER is numeric: a pod with ``runAsNonRoot: true`` (the "restricted" Pod Security Standard)
    refuses an image whose user is a name, since the kubelet cannot tell it is not root ("image
    has non-numeric user ..., cannot verify user is non-root", kubelet verifyRunAsNonRoot). Its
    group is the fsGroup the Helm values give the code server and run pods, which makes the data
    volume writable for it; both pods set ``runAsNonRoot``, which the numeric user lets the kubelet
    verify. The HEALTHCHECK is the chart's own readiness probe of a code server
    (charts/dagster-user-deployments/templates/deployment-user.yaml, dagster-io/dagster@36f72b17:
    ``dagster api grpc-health-check -p <port>``), for a container run outside Kubernetes."""
    instructions = containerfile_instructions(DEPLOY / "Containerfile")
    user = [arguments for kind, arguments in instructions if kind == "USER"][-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit(), f"USER {user}: a numeric uid:gid, not root"
    runs = " && ".join(arguments for kind, arguments in instructions if kind == "RUN")
    assert re.search(rf"groupadd\b[^&]*--gid {gid}\b", runs) and re.search(rf"useradd\b[^&]*--uid {uid}\b", runs)
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    run_pods = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]
    assert deployment["podSecurityContext"]["fsGroup"] == run_pods["securityContext"]["fsGroup"] == int(gid)
    # And the pods ask the kubelet to check it (the numeric USER is what lets it): an image built
    # or pulled with a root user is refused instead of running the keys' holder as root.
    assert [deployment["podSecurityContext"].get("runAsNonRoot"), run_pods["securityContext"].get("runAsNonRoot")] == [
        True, True]
    healthchecks = [arguments for kind, arguments in instructions if kind == "HEALTHCHECK"]
    assert len(healthchecks) == 1, "no HEALTHCHECK"
    command = json.loads(healthchecks[0].split("CMD", 1)[1])
    port = code_server_arguments(json.loads(next(arguments for kind, arguments in instructions if kind == "CMD")))
    assert command == ["dagster", "api", "grpc-health-check", "-p", port["--port"]]
    assert "--format docker" in readme_section("### The container image")  # podman's OCI format drops it


def test_the_images_instance_is_in_its_dagster_home_and_its_databases_on_its_volume():
    """The image's ENV, COPY and VOLUME agree: ``deploy/dagster.yaml`` is copied into the
    ``DAGSTER_HOME`` the image sets (elsewhere, Dagster would find no instance there and keep
    runs in a SQLite database inside the container, without a word), and the databases'
    folder (``LANGSMITH_ACCESS_DUCKDB``'s) is on the declared volume (else every org's database
    would live in the container's own layer, and go with it)."""
    instructions = containerfile_instructions(DEPLOY / "Containerfile")
    environment = dict(word.split("=", 1) for kind, arguments in instructions if kind == "ENV"
                       for word in shlex.split(arguments))
    copies = {Path(arguments.split()[-1]) for kind, arguments in instructions
              if kind == "COPY" and arguments.split()[0] == "deploy/dagster.yaml"}
    assert copies == {Path(environment["DAGSTER_HOME"]) / "dagster.yaml"}, (copies, environment["DAGSTER_HOME"])
    volumes = [Path(path) for kind, arguments in instructions if kind == "VOLUME" for path in json.loads(arguments)]
    database = Path(environment["LANGSMITH_ACCESS_DUCKDB"])
    assert any(database.parent == volume or database.parent.is_relative_to(volume) for volume in volumes), (
        database, volumes)


# ------------------------------------------------------------------ the Helm values


def strict_chart_schema() -> dict:
    """The chart's values schema made to check an override file's keys: ``required`` dropped
    (the chart's own values.yaml provides them) except for list items (a list in our values
    replaces the chart's whole list); an unknown key refused wherever the chart lists an
    object's keys (the chart's schema lets many objects take any key, and a misspelt key would
    then be ignored without a word); Kubernetes objects ($refs to kubernetesjsonschema.dev)
    accepted as they are."""
    raw = json.loads(HELM_SCHEMA.read_text(encoding="utf-8"))
    schema = copy.deepcopy(raw)
    list_items = set(re.findall(r'"items": \{"\$ref": "#/definitions/(\w+)"\}', json.dumps(raw)))
    schema.pop("required")
    schema["additionalProperties"] = False
    for name, definition in schema["definitions"].items():
        kubernetes = not definition.get("$ref", "#").startswith("#")
        if kubernetes:
            del definition["$ref"]
        if name not in list_items:
            definition.pop("required", None)
        if definition.get("properties") and "additionalProperties" not in definition and not kubernetes:
            definition["additionalProperties"] = False
    return schema


def helm_errors(values: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(strict_chart_schema())
    try:
        errors = list(validator.iter_errors(values))
    except Exception as error:  # a $ref the excerpt lacks
        pytest.fail(f"{HELM_SCHEMA.name} lacks a definition the values need ({error}): copy it from the "
                    "chart's values.schema.json named in the excerpt's $comment")
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in errors]


def test_every_helm_value_is_a_key_of_the_official_chart():
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    assert helm_errors(values) == []
    assert set(values["dagsterDaemon"]["runMonitoring"]) <= CHART_RUN_MONITORING_KEYS


# The Kubernetes objects the Helm values may hold, by key: the chart's values schema takes them as
# they are, so the Kubernetes client's models check them (kubernetes.client, as dagster-k8s does).
KUBERNETES_DEPLOYMENT_OBJECTS = {
    "volumes": [kubernetes.client.V1Volume], "volumeMounts": [kubernetes.client.V1VolumeMount],
    "podSecurityContext": kubernetes.client.V1PodSecurityContext,
    "securityContext": kubernetes.client.V1SecurityContext, "resources": kubernetes.client.V1ResourceRequirements,
    "affinity": kubernetes.client.V1Affinity, "tolerations": [kubernetes.client.V1Toleration],
    "initContainers": [kubernetes.client.V1Container], "sidecarContainers": [kubernetes.client.V1Container],
}
KUBERNETES_RUN_OBJECTS = {  # runLauncher.config.k8sRunLauncher.runK8sConfig (dagster-k8s's run_k8s_config)
    "containerConfig": kubernetes.client.V1Container, "podSpecConfig": kubernetes.client.V1PodSpec,
    "podTemplateSpecMetadata": kubernetes.client.V1ObjectMeta, "jobConfig": kubernetes.client.V1Job,
    "jobMetadata": kubernetes.client.V1ObjectMeta, "jobSpecConfig": kubernetes.client.V1JobSpec,
}


def kubernetes_errors(values: dict) -> list[str]:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    run_k8s_config = values["runLauncher"]["config"]["k8sRunLauncher"].get("runK8sConfig", {})
    assert set(run_k8s_config) <= set(KUBERNETES_RUN_OBJECTS), sorted(run_k8s_config)
    objects = [(key, KUBERNETES_DEPLOYMENT_OBJECTS[key], deployment[key])
               for key in KUBERNETES_DEPLOYMENT_OBJECTS if key in deployment]
    objects += [(key, KUBERNETES_RUN_OBJECTS[key], value) for key, value in run_k8s_config.items()]
    errors = []
    for key, model, value in objects:
        for item in value if isinstance(model, list) else [value]:
            try:
                k8s_snake_case_dict(model[0] if isinstance(model, list) else model, item)
            except Exception as error:  # dagster-k8s raises a bare Exception naming the keys
                errors.append(f"{key}: {error}")
    return errors


def test_every_kubernetes_object_in_the_helm_values_has_only_kubernetes_keys():
    """The chart's values schema takes the Kubernetes objects of the values (volumes, mounts,
    security contexts, the run pods' spec) as they are, and Kubernetes drops a field it does not
    know with a warning at most: a misspelt ``readOnly`` would mount the orgs file writable, a
    misspelt ``fsGroup`` would leave the data volume unwritable for the runs, without a word. So
    each one is read with the Kubernetes client's own models, as dagster-k8s reads those it passes
    on to the run pods (an unknown key at any depth is an error)."""
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    assert kubernetes_errors(values) == []
    misspelt = copy.deepcopy(values)
    mount = misspelt["dagster-user-deployments"]["deployments"][0]["volumeMounts"][1]
    mount["readonly"] = mount.pop("readOnly")
    assert any("readonly" in error for error in kubernetes_errors(misspelt))
    misspelt = copy.deepcopy(values)
    misspelt["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]["securityContext"] = {
        "fsgroup": 10001}
    assert any("fsgroup" in error for error in kubernetes_errors(misspelt))


def test_a_misspelt_helm_key_is_caught():
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    misspelt = copy.deepcopy(values)
    coordinator = misspelt["dagsterDaemon"]["runCoordinator"]
    coordinator["config"]["customRunCoordinater"] = coordinator["config"].pop("customRunCoordinator")
    assert any("customRunCoordinater" in error for error in helm_errors(misspelt))
    misspelt = copy.deepcopy(values)
    deployment = misspelt["dagster-user-deployments"]["deployments"][0]
    deployment["envSecret"] = deployment.pop("envSecrets")
    assert any("envSecret" in error for error in helm_errors(misspelt))
    misspelt = copy.deepcopy(values)
    del misspelt["dagster-user-deployments"]["deployments"][0]["port"]  # a list item must be whole
    assert any("'port' is a required property" in error for error in helm_errors(misspelt))


def readme_section(heading: str) -> str:
    """The README's text under ``heading``, up to the next heading of its level or above (a
    ``#`` line inside a code block is not a heading)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert heading in lines, f"README: no heading {heading!r}"
    level = len(heading.split()[0])
    section, fenced = [], False
    for line in lines[lines.index(heading) + 1:]:
        fenced ^= line.startswith("```")
        heading_level = len(line) - len(line.lstrip("#"))
        if not fenced and 0 < heading_level <= level and line[heading_level:].startswith(" "):
            break
        section.append(line)
    return "\n".join(section)


def dotted(tree: dict, path: str, default=KeyError):
    node = tree
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            if default is KeyError:
                raise KeyError(path)
            return default
        node = node[key]
    return node


def instance_settings(instance: dict) -> set[str]:
    """The run monitoring and tick retention settings of a dagster.yaml, dotted."""
    settings = {f"run_monitoring.{key}" for key in instance["run_monitoring"]}
    settings |= {f"retention.{kind}.{key}" for kind, retention in instance["retention"].items() for key in retention}
    return settings


def test_helm_values_match_the_single_host_instance():
    """The run queue of deploy/dagster.yaml is the Helm values' run coordinator, whole (every
    setting, the retries of a dequeue while the code server restarts included); every run
    monitoring and tick retention setting the chart can write is the same in the values; the ones
    it cannot are named in the values' comments and in the README's Kubernetes section, which must
    not claim they hold there."""
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    instance = load_yaml(DEPLOY / "dagster.yaml")
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "CustomRunCoordinator"
    assert dotted(values, HELM_RUN_COORDINATOR) == instance["run_coordinator"]
    settings = instance_settings(instance)
    assert settings <= set(HELM_EQUIVALENTS) | NO_HELM_EQUIVALENT, (
        f"{sorted(settings - set(HELM_EQUIVALENTS) - NO_HELM_EQUIVALENT)}: add them to HELM_EQUIVALENTS "
        "(where the chart's instance template takes them from) or to NO_HELM_EQUIVALENT")
    for setting, value_path in HELM_EQUIVALENTS.items():
        expected = dotted(instance, setting, default=DAGSTER_DEFAULTS.get(setting, KeyError))
        assert dotted(values, value_path) == expected, (setting, value_path)
    assert values["retention"]["enabled"] is True  # else the chart writes no retention at all
    values_text = (DEPLOY / "helm" / "values.yaml").read_text(encoding="utf-8")
    kubernetes = readme_section("### Kubernetes, with Dagster's Helm chart")
    for setting in NO_HELM_EQUIVALENT & settings:
        name = setting.rpartition(".")[2]
        assert name in values_text and name in kubernetes, f"{setting}: the chart cannot write it; say so"
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is instance["run_monitoring"]["enabled"] is True
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]


def test_a_dead_run_never_holds_a_pool_slot_for_ever():
    """The DuckDB writers run in a concurrency pool, to which an operator may give a limit (the
    UI's Deployment > Concurrency). A run whose worker dies inside such an op (a killed process, a
    lost pod) keeps its slot: Dagster frees the slots of finished runs only when run monitoring's
    ``free_slots_after_run_end_seconds`` is set (dagster/_daemon/monitoring/concurrency.py,
    ``execute_concurrency_slots_iteration`` returns at once without it; Dagster's run monitoring
    docs: "required ... to prevent cancelled runs from permanently blocking the concurrency
    pool"), and the pool counts every org together. So both instances set it; the chart writes it
    from dagsterDaemon.runMonitoring.freeSlotsAfterRunEndSeconds (templates/configmap-instance.yaml,
    dagster-io/dagster@835892b4)."""
    from langsmith_access.definitions import defs

    pools = {op.pool for job in defs().resolve_all_job_defs() for op in job.graph.iterate_op_defs() if op.pool}
    assert pools, "no op runs in a pool: nothing to check"
    instance = load_yaml(DEPLOY / "dagster.yaml")
    assert instance["run_monitoring"].get("free_slots_after_run_end_seconds", 0) > 0
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    assert values["dagsterDaemon"]["runMonitoring"].get("freeSlotsAfterRunEndSeconds", 0) > 0


def test_every_job_carries_the_run_time_limit_of_dagster_yaml():
    """deploy/dagster.yaml's max_runtime_seconds is also Dagster's ``dagster/max_runtime`` tag on
    every job, which run monitoring enforces: a run that hangs is failed on Kubernetes too, whose
    chart cannot write the setting."""
    from langsmith_access.definitions import defs

    instance = load_yaml(DEPLOY / "dagster.yaml")
    jobs = [job for job in defs().resolve_all_job_defs() if not job.name.startswith("__")]  # not Dagster's own
    assert len(jobs) >= 5
    for setting, tag in HELD_BY_JOB_TAGS.items():
        limit = str(dotted(instance, setting))
        assert {job.name: job.tags.get(tag) for job in jobs} == {job.name: limit for job in jobs}, setting


def test_helm_values_take_the_keys_from_secrets_and_mount_the_data_volume():
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["envSecrets"] == [{"name": "langsmith-access-keys"}]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}  # the run pods get them too
    # Keys reach only the code server: not the webserver or the daemon, not a plain value.
    assert "dagsterWebserver" not in values and "envSecrets" not in values["dagsterDaemon"]
    assert not re.search(r"lsv2_sk_\w{4,}", (DEPLOY / "helm" / "values.yaml").read_text(encoding="utf-8"))
    volumes = {volume["name"]: volume for volume in deployment["volumes"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in deployment["volumeMounts"]}
    claim = load_yaml(DEPLOY / "helm" / "data-volume.yaml")
    assert claim["kind"] == "PersistentVolumeClaim"
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert Path(deployment["env"]["LANGSMITH_ACCESS_DUCKDB"]).parent == Path(mounts["data"])
    assert Path(deployment["env"]["LANGSMITH_ACCESS_ORGS_FILE"]).parent == Path(mounts["orgs"])
    assert code_server_arguments(["x", *deployment["codeServerArgs"]]) == {
        option: value for option, value in code_server_arguments(exec_start("code-server")).items()
        if option in ("--module-name", "--attribute", "--location-name")}


def test_helm_values_use_the_operators_postgres_through_the_secret_the_readme_creates():
    """The chart's own Postgres and its own password secret are both off: with
    ``postgresql.enabled`` the chart deploys a database of its own beside the one the values name;
    with ``generatePostgresqlPasswordSecret`` it writes the secret itself from
    ``postgresql.postgresqlPassword`` (the chart's placeholder), over the one the README creates.
    The secret the values name is the one the README creates, with the key the chart reads
    (``postgresql-password``); and the instance the chart writes sends no telemetry, as
    deploy/dagster.yaml."""
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["postgresqlHost"] and "postgresqlPassword" not in values["postgresql"]
    commands = readme_commands(readme_section("### Kubernetes, with Dagster's Helm chart"))
    secrets = {words[4]: words[5:] for words in commands if words[:4] == ["kubectl", "create", "secret", "generic"]}
    name = values["global"]["postgresqlSecretName"]
    assert name in secrets, f"the README never creates secret {name}"
    assert any(word.startswith("--from-literal=postgresql-password=") for word in secrets[name]), secrets[name]
    assert values["telemetry"]["enabled"] is load_yaml(DEPLOY / "dagster.yaml")["telemetry"]["enabled"] is False


def prune_cronjob_container(cronjob: dict) -> dict:
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return container


def image_path_of(source: str) -> Path:
    """Where deploy/Containerfile copies the repository's ``source`` in the image."""
    (destination,) = [arguments.split()[-1] for kind, arguments in containerfile_instructions(DEPLOY / "Containerfile")
                      if kind == "COPY" and arguments.split()[:-1] == [source]]
    return Path(destination)


def test_the_prune_cronjob_runs_the_images_script_on_the_charts_postgres():
    """deploy/helm/prune-runs-cronjob.yaml is a CronJob Kubernetes takes as written (the client's
    models refuse any unknown key: a misspelt ``env`` would run the script without Postgres), of
    the image the values name, running the script where the image has it, with every variable the
    image's instance file (deploy/dagster.yaml) reads, set to the values' Postgres and the
    password secret the chart reads; and no LangSmith key. Its command runs on a real Postgres in
    test_prune_dagster_runs.py."""
    cronjob = load_yaml(DEPLOY / "helm" / "prune-runs-cronjob.yaml")
    assert cronjob["kind"] == "CronJob" and cronjob["apiVersion"] == "batch/v1"
    k8s_snake_case_dict(kubernetes.client.V1CronJob, cronjob)  # raises naming an unknown key
    misspelt = copy.deepcopy(cronjob)
    prune_cronjob_container(misspelt)["evn"] = prune_cronjob_container(misspelt).pop("env")
    with pytest.raises(Exception, match="evn"):
        k8s_snake_case_dict(kubernetes.client.V1CronJob, misspelt)
    container = prune_cronjob_container(cronjob)
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert container["image"] == f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    assert container["command"][:2] == ["python", str(image_path_of("deploy/prune_dagster_runs.py"))]
    environment = {variable["name"]: variable.get("value", variable.get("valueFrom")) for variable in container["env"]}
    storage = load_yaml(DEPLOY / "dagster.yaml")["storage"]["postgres"]["postgres_db"]
    assert set(environment) == {setting["env"] for setting in storage.values() if isinstance(setting, dict)}
    postgres = values["postgresql"]
    assert [environment["DAGSTER_PG_HOST"], environment["DAGSTER_PG_PORT"], environment["DAGSTER_PG_USER"],
            environment["DAGSTER_PG_DB"]] == [postgres["postgresqlHost"], str(postgres["service"]["port"]),
                                              postgres["postgresqlUsername"], postgres["postgresqlDatabase"]]
    assert environment["DAGSTER_PG_PASSWORD"] == {"secretKeyRef": {
        "name": values["global"]["postgresqlSecretName"], "key": "postgresql-password"}}
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and "volumes" not in pod and "envFrom" not in container
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert "kubectl apply -f deploy/helm/prune-runs-cronjob.yaml" in README.read_text(encoding="utf-8")


def test_no_deploy_file_holds_a_key():
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            assert not re.search(r"lsv2_(sk|pt)_\w{4,}", path.read_text(encoding="utf-8")), path


def test_every_variable_a_deploy_file_names_is_one_the_product_reads():
    """Every LANGSMITH_*/LANGCHAIN_* variable deploy/ sets or names (the environment files, the
    Helm values' env and their comments, the image's ENV) is one langsmith_access.settings reads,
    or an org's key variable the example orgs file names: a misspelt name (a
    LANGSMITH_ACCESS_POLICY_FILE) would be set, ignored, and the default used without a word."""
    read = {variable for _field, variable, _parse in ENVIRONMENT} | set(FALLBACK_VARIABLES.values())
    read |= {ORGS_FILE_VARIABLE, POLICY_VARIABLE}
    # The cache's variable, read by cache_directory rather than through ENVIRONMENT.
    assert cache_directory({"LANGSMITH_ACCESS_CACHE_DIR": "/srv/cache"}) == Path("/srv/cache")
    read.add("LANGSMITH_ACCESS_CACHE_DIR")
    keys = {org.api_key_env for org in example_orgs()}
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file():
            named = set(re.findall(r"\b(LANG(?:SMITH|CHAIN)_[A-Z0-9_]+)\b", path.read_text(encoding="utf-8")))
            assert named <= read | keys, f"{path.relative_to(REPO)}: {sorted(named - read - keys)} read by nothing"


def example_orgs():
    """deploy/orgs.example.yaml read by ``load_orgs``, with stand-in keys."""
    return load_orgs({"LANGSMITH_ACCESS_ORGS_FILE": str(DEPLOY / "orgs.example.yaml"),
                      "LANGSMITH_API_KEY_US": "lsv2_sk_example_us", "LANGSMITH_API_KEY_EU": "lsv2_sk_example_eu"})


def test_the_example_orgs_file_is_a_valid_orgs_file():
    orgs = example_orgs()
    assert orgs.slugs == ("us", "eu")
    keys = set(re.findall(r"^(LANGSMITH_API_KEY_\w+)=", (UNITS / "langsmith.env.example").read_text(encoding="utf-8"),
                          flags=re.MULTILINE))
    assert {org.api_key_env for org in orgs} == keys


def readme_commands(section: str) -> list[list[str]]:
    """The shell commands of a README section's ```sh blocks, continuation lines joined,
    comments dropped."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def configmap_keys(commands: list[list[str]]) -> dict[str, dict[str, str]]:
    """{configmap: {key: source file}} of the ``kubectl create configmap`` commands."""
    configmaps = {}
    for words in commands:
        if words[:3] == ["kubectl", "create", "configmap"]:
            keys = configmaps.setdefault(words[3], {})
            for word in words[4:]:
                if word.startswith("--from-file="):
                    key, _, source = word.removeprefix("--from-file=").partition("=")
                    keys[key] = source
    return configmaps


def test_the_kubernetes_setup_ships_every_policy_file_the_example_orgs_file_names():
    """The code server's pods (and its run pods) hold the orgs file and every policy file it
    names, at the path ``load_orgs`` resolves (relative to the orgs file), from a configmap key
    the README creates; the webhook URL, a secret, comes from the secret of the keys."""
    values = load_yaml(DEPLOY / "helm" / "values.yaml")
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    commands = readme_commands(readme_section("### Kubernetes, with Dagster's Helm chart"))
    created = configmap_keys(commands)
    volumes = {volume["name"]: volume for volume in deployment["volumes"]}
    shipped = {}  # path in the pod -> (configmap key, the README's source file)
    for mount in deployment["volumeMounts"]:
        config_map = volumes[mount["name"]].get("configMap")
        if config_map is None:
            continue
        assert "subPath" not in mount, mount
        keys = created.get(config_map["name"], {})
        assert keys, f"the README never creates configmap {config_map['name']}"
        items = config_map.get("items") or [{"key": key, "path": key} for key in keys]
        for item in items:
            assert item["key"] in keys, f"configmap {config_map['name']}: the README creates no key {item['key']}"
            shipped[Path(mount["mountPath"]) / item["path"]] = (item["key"], keys[item["key"]])
    orgs_file = Path(deployment["env"]["LANGSMITH_ACCESS_ORGS_FILE"])
    assert orgs_file in shipped
    policies = [org.policy_path for org in example_orgs() if org.policy_path is not None]
    assert policies, "the example orgs file names no policy: nothing to check"
    for policy in policies:
        in_pod = orgs_file.parent / policy.relative_to(DEPLOY) if policy.is_relative_to(DEPLOY) else policy
        assert in_pod in shipped, f"{in_pod}: the orgs file names it, the pods do not have it"
        _key, source = shipped[in_pod]
        assert source.endswith(str(policy.relative_to(DEPLOY))), (in_pod, source)
    if "LANGSMITH_ACCESS_POLICY" in deployment["env"]:
        assert Path(deployment["env"]["LANGSMITH_ACCESS_POLICY"]) in shipped
    # The webhook URL is a secret: in the secret of the keys, never a plain value.
    assert "LANGSMITH_ACCESS_WEBHOOK_URL" not in deployment["env"]
    secrets = {words[4]: words[5:] for words in commands if words[:4] == ["kubectl", "create", "secret", "generic"]}
    [env_file] = [word.removeprefix("--from-env-file=") for word in secrets[deployment["envSecrets"][0]["name"]]
                  if word.startswith("--from-env-file=")]
    section = readme_section("### Kubernetes, with Dagster's Helm chart")
    assert env_file in section.split("--from-env-file=")[0], f"the README never says what {env_file} holds"
    assert re.search(r"^#\s+LANGSMITH_ACCESS_WEBHOOK_URL=", section, flags=re.MULTILINE)


def test_the_readme_puts_no_secret_on_a_kubectl_command_line():
    """Shell history keeps a command line: the README's ``kubectl create secret`` commands take
    the keys from a file and the Postgres password from a variable read without echo, never a
    value typed into the command (``--from-literal=LANGSMITH_API_KEY_US=lsv2_sk_...``)."""
    commands = readme_commands(readme_section("### Kubernetes, with Dagster's Helm chart"))
    secrets = [words for words in commands if words[:4] == ["kubectl", "create", "secret", "generic"]]
    assert len(secrets) == 2, secrets
    for words in secrets:
        for word in words:
            if word.startswith("--from-literal="):
                _key, _, value = word.removeprefix("--from-literal=").partition("=")
                assert value.startswith("$"), f"{word}: a secret typed on the command line"


def helm_installs(text: str) -> list[list[str]]:
    """The ``helm upgrade --install`` commands of a text (continuation lines joined)."""
    lines = [line for line in text.replace("\\\n", " ").splitlines() if line.lstrip().startswith("helm upgrade")]
    return [words for words in map(shlex.split, lines) if words[:3] == ["helm", "upgrade", "--install"]]


def test_the_helm_install_installs_the_chart_of_the_pinned_dagster_in_one_namespace():
    """The chart is versioned with Dagster: its daemon and webserver images and its instance
    template are those of ``--version``. So the README's ``helm upgrade --install`` and the one in
    the values' header install the chart of the Dagster release pyproject.toml pins (the one the
    image's code server and run pods run), and are the same command: the values' header once
    installed into a namespace of its own while the README creates the secrets, the configmap
    and the volume's claim in the current one, where the release's pods never find them."""
    pins = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    (dagster_pin,) = [pin.removeprefix("dagster==") for pin in pins if pin.startswith("dagster==")]
    values_header = "\n".join(line.removeprefix("#").strip() for line in
                              (DEPLOY / "helm" / "values.yaml").read_text(encoding="utf-8").splitlines()
                              if line.startswith("#"))
    (in_values,) = helm_installs(values_header)
    (in_readme,) = helm_installs(readme_section("### Kubernetes, with Dagster's Helm chart"))
    assert in_values == in_readme, (in_values, in_readme)
    assert in_readme[4] == "dagster/dagster" and in_readme[in_readme.index("--version") + 1] == dagster_pin, in_readme
    assert f"version {dagster_pin}, the" in readme_section("### Kubernetes, with Dagster's Helm chart")


def test_the_upgrade_instructions_cover_a_release_that_pins_a_newer_dagster():
    """A new release may pin a newer Dagster (pyproject.toml). The daemon and the webserver run
    from the code server's virtualenv: restarting the code server alone leaves them running the
    old Dagster, importing the new one's modules on demand beside it. And a newer Dagster may
    change the schema of its Postgres storage, which only ``dagster instance migrate`` upgrades
    (its storages refuse to work on an outdated schema, naming that command). So the README's
    upgrade, on one host, stops all three units, migrates the instance as the units see it
    (their DAGSTER_HOME and Postgres variables), then starts them; on Kubernetes, the chart's
    migration job runs."""
    upgrading = readme_section("### Upgrading")
    commands = readme_commands(upgrading)
    units = {f"langsmith-access-{name}" for name in ("code-server", "daemon", "webserver")}
    stopped = [index for index, words in enumerate(commands) if words[:3] == ["sudo", "systemctl", "stop"]
               and units <= set(words[3:])]
    started = [index for index, words in enumerate(commands) if words[:3] == ["sudo", "systemctl", "start"]
               and units <= set(words[3:])]
    installs = [index for index, words in enumerate(commands) if words[-2:] == ["install", "."]]
    as_the_units = ["sudo", "-u", "langsmith-access", "sh", "-c"]
    migrations = [index for index, words in enumerate(commands) if words[:5] == as_the_units
                  and f"{INSTALL_PREFIX}/bin/dagster instance migrate" in words[5]]
    assert stopped and installs and migrations and started, commands
    assert stopped[0] < installs[0] < migrations[0] < started[0], commands
    script = commands[migrations[0]][5]
    service = unit("daemon")["Service"]
    for path in service["EnvironmentFile"]:
        assert re.search(rf"(^|;)\s*\.\s+{re.escape(path)}\s*;", script), (script, path)
    assert re.search(rf"(^|[;\s]){re.escape(service['Environment'][0])}\s", script), script
    assert "instance" in dagster_cli.commands and "migrate" in dagster_cli.commands["instance"].commands
    kubernetes = readme_section("### Kubernetes, with Dagster's Helm chart") + upgrading
    assert "migrate.enabled=true" in kubernetes


def environment_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
                if line and not line.startswith("#"))


def test_an_operators_shell_gets_the_settings_the_code_server_gets():
    """The README's shell commands on the host read the product's settings from the file the
    code server reads them from, so ``request``, ``approve`` or ``deny`` from a shell use the same
    orgs, databases and policies as the runs: the unit sets none of them itself, and the file
    names the orgs file and the databases where the README installs and creates them."""
    commands = readme_commands(readme_section("### One host, with systemd"))
    installs = [words for words in commands if words[:2] == ["sudo", "install"] and "-d" not in words]
    installed = {words[-1]: words[-2] for words in installs}  # where -> from which file
    created = {word for words in commands if words[:3] == ["sudo", "install", "-d"] for word in words
               if word.startswith("/")}
    shells = [words[5] for words in commands
              if words[:5] == ["sudo", "-u", "langsmith-access", "sh", "-c"] and "bin/langsmith-access " in words[5]]
    assert shells, "README: no shell command running the CLI on the host"
    code_server = unit("code-server")["Service"]
    for script in shells:
        sourced = re.findall(r"(?:^|;)\s*\.\s+(\S+?)\s*;", script)
        assert sourced and all(path in installed for path in sourced), script
        shell = {name: value for path in sourced for name, value in environment_file(REPO / installed[path]).items()}
        # The code server's own settings: none in the unit, all from files the shell reads too.
        in_unit = [entry for entry in code_server["Environment"] if entry.startswith("LANGSMITH")]
        assert not in_unit, f"{in_unit}: set in the unit only, a shell would not have them; use langsmith.env"
        for path in code_server["EnvironmentFile"]:
            for name, value in environment_file(REPO / installed[path]).items():
                if name.startswith("LANGSMITH"):
                    assert shell.get(name) == value, (script, name)
        assert Path(shell["LANGSMITH_ACCESS_ORGS_FILE"]).as_posix() in installed
        database = Path(shell["LANGSMITH_ACCESS_DUCKDB"])
        assert database.is_absolute() and database.parent.as_posix() in created, database
        assert Path(shell["LANGSMITH_ACCESS_CACHE_DIR"]).is_absolute()
    # The policy files the example orgs file names, installed beside it at the paths it gives.
    orgs_file = Path(environment_file(UNITS / "langsmith.env.example")["LANGSMITH_ACCESS_ORGS_FILE"])
    for org in example_orgs():
        if org.policy_path is not None and org.policy_path.is_relative_to(DEPLOY):
            assert (orgs_file.parent / org.policy_path.relative_to(DEPLOY)).as_posix() in installed, org.slug

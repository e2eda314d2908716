"""The Dagster UI in a real browser: headless Chromium (Debian's, driven by Playwright) against
`dagster-webserver -w workspace.yaml`, with the sandbox and a synced database behind it.

An operator's view: the catalog lists the assets, the raw members asset has its checks, the
jobs, the sensor and the schedules are listed, and `provision_workspace_roles` launched from the
Launchpad with an ad-hoc change grants the role in LangSmith (the sandbox). Then the inventory:
its raw assets with their freshness policies, and `langsmith_access_inventory` launched from the
Launchpad for the org's partition, which reads the sandbox's access policies and credentials and
publishes them. One webserver serves both (it takes a while to start).

Screenshots of every step go to ``langsmith_access_tests/ui/screenshots/`` (git-ignored).
Chromium must be installed (`make browser`, part of `make test`): without it this test fails,
it never skips.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import requests

from langsmith_access.api import list_requests
from langsmith_access_tests.helpers import query
from langsmith_access_tests.services import Service, start_on_a_free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = os.environ.get("LANGSMITH_ACCESS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOCATION = "langsmith_access.definitions:defs"  # workspace.yaml's python_module, as Dagster names it
REPOSITORY = f"__repository__@{LOCATION}"
# Sandbox runs need no daemon: the default coordinator launches a run as soon as it is submitted.
DAGSTER_YAML = """\
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
telemetry:
  enabled: false
nux:
  enabled: false
"""
STARTUP_SECONDS = 120
RUN_SECONDS = 120
INVENTORY_RUN_SECONDS = 300  # the inventory reads the audit log a day at a time, then runs dbt
# The inventory's raw assets (group `inventory`), each with a freshness policy.
INVENTORY_ASSETS = ("raw/access_policies", "raw/resource_tags", "raw/credentials", "raw/service_accounts",
                    "raw/sso_settings", "raw/audit_events")

LOCATION_STATUS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
RUN_STATUS = """
query RunStatus($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status tags { key value } } } }
"""


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=10)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


@pytest.fixture
def webserver(env, tmp_path):
    """`dagster-webserver -w workspace.yaml` on a free port, its DAGSTER_HOME a fresh temp dir,
    the LANGSMITH_* variables (set by ``env``) pointing at the sandbox and the synced database."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)

    def webserver_on(port: int) -> Service:
        return Service("dagster-webserver", [str(Path(sys.executable).with_name("dagster-webserver")), "-w",
                                             "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                       {**os.environ, "DAGSTER_HOME": str(home)}, tmp_path / "webserver.log", cwd=PROJECT_ROOT)

    process, port = start_on_a_free_port(f"dagster-webserver to load {LOCATION}", webserver_on, location_loaded,
                                         STARTUP_SECONDS, every=1)
    try:
        url = f"http://127.0.0.1:{port}"
        status = location_loaded(port)
        assert status is not None, f"dagster-webserver stopped answering once it had loaded {LOCATION}"
        error = status["locationOrLoadError"]
        assert error["__typename"] == "RepositoryLocation", f"{LOCATION} failed to load: {error}"
        yield url
    finally:
        process.stop()


def location_loaded(port: int) -> dict | None:
    """The location's entry once the webserver has loaded it (with its definitions or its error)."""
    try:
        entries = graphql(f"http://127.0.0.1:{port}", LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
    except (requests.RequestException, ValueError):
        return None
    status = {e["name"]: e for e in entries}.get(LOCATION)
    return status if status and status["loadStatus"] == "LOADED" else None


@pytest.fixture
def page(tmp_path):
    assert Path(CHROMIUM).is_file(), (
        f"Chromium is not installed ({CHROMIUM}): the browser test needs Debian's chromium. "
        "`make browser` (part of `make test`) installs it: apt-get install -y chromium."
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh user-data-dir
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000},
        )
        try:
            context.set_default_timeout(60_000)
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def wait_for_run(url: str, run_id: str, seconds: float) -> tuple[str | None, dict[str, str]]:
    """The run's final status (None if it did not end within ``seconds``) and its tags."""
    deadline = time.monotonic() + seconds
    while True:
        run = graphql(url, RUN_STATUS, {"runId": run_id})["runOrError"]
        status = run.get("status")
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        if time.monotonic() >= deadline:
            status = None
            break
        time.sleep(1)
    return status, {tag["key"]: tag["value"] for tag in run["tags"]}


def pick_partition(page, partition_key: str) -> None:
    """The jobs are partitioned by org: pick the org's partition on the Launchpad."""
    from playwright.sync_api import expect

    partition = page.get_by_placeholder("Partition")
    option = page.get_by_role("menuitem").filter(has_text=re.compile(f"^{re.escape(partition_key)}$")).first
    expect(partition).to_be_enabled()
    # A click that lands while the Launchpad is still loading the partitions opens no menu (seen
    # on a busy machine): close whatever opened and click again, a few times at most.
    for _attempt in range(3):
        partition.click()
        try:
            expect(option).to_be_visible(timeout=15_000)
            break
        except AssertionError:
            page.keyboard.press("Escape")
    option.click()
    expect(partition).to_have_value(partition_key)


def shoot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def launchpad_yaml(email: str, workspace_id: str) -> str:
    return (
        "ops:\n"
        "  select_requests:\n"
        "    config:\n"
        "      change:\n"
        "        action: grant\n"
        f"        user: {email}\n"
        f"        workspace: {workspace_id}\n"
        "        role: Editor\n"
        "        reason: incident-42, granted from the Launchpad\n"
        "        requested_by: ui-operator\n"
    )


# Two runs launched from the UI (a provisioning run, then the inventory: RUN_SECONDS and
# INVENTORY_RUN_SECONDS) and the pages between them: more than the suite's 300 s on a slow CI
# machine (it hit that limit once while its runs were still going, with the whole suite ~2.5
# times slower than here), as the other long single-scenario tests allow for.
@pytest.mark.timeout(900)
def test_operator_sees_the_definitions_and_launches_provisioning(env, webserver, page):
    from playwright.sync_api import expect

    sandbox, org, database = env
    url = webserver
    expect.set_options(timeout=30_000)  # a busy 2-core CI machine renders slowly
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()

    # The asset catalog: the publish asset and the dbt models, and (by search) the raw assets.
    # The catalog lists only the rows in view (a virtual list): tall enough for every asset.
    page.set_viewport_size({"width": 1600, "height": 4000})
    page.goto(f"{url}/assets")
    for key in ("analysts_database", "main/grants", "main/users", "main/grant_history", *INVENTORY_ASSETS):
        expect(page.locator(f'a[href="/assets/{key}"]').first).to_be_visible()
    shoot(page, "01_asset_catalog")
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.get_by_label("Search and filter assets").focus()  # a CodeMirror line, not an <input>
    page.keyboard.type("org_members")
    page.keyboard.press("Enter")
    page.mouse.click(900, 900)  # an empty spot: closes the suggestions over the first row
    expect(page.get_by_text("to navigate")).to_be_hidden()
    expect(page.locator('a[href="/assets/raw/org_members"]').first).to_be_visible()
    expect(page.locator('a[href="/assets/main/grants"]')).to_have_count(0)
    shoot(page, "02_asset_search_raw")

    # The checks of raw/org_members: completeness and the shrink guard.
    page.goto(f"{url}/assets/raw/org_members?view=checks")
    for check in ("complete_read", "shrink_guard"):
        expect(page.get_by_text(check, exact=True).first).to_be_visible()
    shoot(page, "03_asset_checks_raw")
    # dbt tests are checks too: one role per user and workspace, no grants from hidden workspaces.
    page.goto(f"{url}/assets/main/grants?view=checks")
    expect(page.get_by_text(re.compile(r"^Checks \(\d+\)$")).first).to_be_visible()
    for check in ("no_grants_in_personal_or_deleted_workspaces", "grants_row_rules",
                  "one_role_per_user_and_workspace_grants_"):
        # Long names are shown middle-truncated; the full name is in the list item's text.
        expect(page.get_by_text(check, exact=True).first).to_be_attached()
    shoot(page, "04_asset_checks_grants")

    # The jobs.
    page.goto(f"{url}/jobs")
    for job in ("langsmith_access_sync", "langsmith_access_inventory", "provision_workspace_roles"):
        expect(page.locator(f'a[href$="/jobs/{job}"]').first).to_be_visible()
    shoot(page, "05_jobs")

    # The sensor and the schedules.
    page.goto(f"{url}/automation")
    for kind, name in (("sensors", "provisioning_queue_sensor"), ("schedules", "langsmith_access_sync_schedule"),
                       ("schedules", "langsmith_access_inventory_schedule")):
        expect(page.locator(f'a[href$="/{kind}/{name}"]').first).to_be_visible()
    shoot(page, "06_automation")

    # The Launchpad: an operator types an ad-hoc grant and launches the run.
    workspace = org.shared_workspaces()[0]
    outsider = next(m for m in org.active_members()
                    if m.ls_user_id not in workspace.memberships and not m.is_disabled)
    editor = next(r.id for r in org.roles_by_scope("workspace") if r.display_name == "Editor")
    assert org.membership(workspace.id, outsider.ls_user_id) is None
    config = launchpad_yaml(outsider.email, workspace.id)
    page.goto(f"{url}/locations/{REPOSITORY}/jobs/provision_workspace_roles/playground")
    editor_box = page.locator(".CodeMirror.cm-s-config-editor")
    expect(editor_box).to_be_visible()
    expect(page.get_by_text("request_ids", exact=False).first).to_be_visible()  # the scaffolded config
    # The job is partitioned by org: the operator picks the org (the single org is 'default').
    pick_partition(page, "default")
    editor_box.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(config)  # as typed or pasted: no auto-indent in between
    assert page.evaluate("() => document.querySelector('.CodeMirror.cm-s-config-editor').CodeMirror.getValue()").strip() == config.strip()
    expect(page.get_by_text("No errors").first).to_be_visible()
    shoot(page, "07_launchpad_config")
    run_id, status = launch_and_wait(page, url, RUN_SECONDS)
    if status == "SUCCESS":
        expect(page.get_by_text("add to the workspace as Editor").first).to_be_visible()  # its log
    shoot(page, "08_run_succeeded")
    assert status == "SUCCESS", f"run {run_id} ended {status}"

    # The change landed in LangSmith and in the queue's record.
    membership = org.membership(workspace.id, outsider.ls_user_id)
    assert membership is not None and membership.role_id == editor
    [request] = [r for r in list_requests() if r["requested_by"] == "ui-operator"]
    assert (request["status"], request["action"], request["user_id"], request["run_id"]) == (
        "applied", "grant", outsider.ls_user_id, run_id)
    assert request["reason"] == "incident-42, granted from the Launchpad"

    operator_launches_the_inventory(url, page, org, database)
    assert len(list(SCREENSHOTS.glob("*.png"))) == 12


def launch_and_wait(page, url: str, seconds: float) -> tuple[str, str]:
    """Click the Launchpad's Launch Run, follow to the run's page and wait (up to ``seconds``)
    until the run ends: its id and status. The run is of the single org's partition, tagged
    with it; once it succeeded, its page shows the Success badge."""
    from playwright.sync_api import expect

    launch = page.get_by_role("button", name="Launch Run")
    expect(launch).to_be_enabled()
    launch.click()
    page.wait_for_url("**/runs/*", timeout=60_000)
    run_id = page.url.rstrip("/").split("/runs/")[1].split("?")[0]
    status, tags = wait_for_run(url, run_id, seconds)
    assert tags["dagster/partition"] == "default" and tags["langsmith_access/org"] == "default"
    page.reload()
    if status == "SUCCESS":
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()  # the run's badge
    return run_id, status


def operator_launches_the_inventory(url: str, page, org, database) -> None:
    """The inventory's raw assets show their freshness policy (warn and fail after how long
    without a materialization); the operator launches `langsmith_access_inventory` for the org's
    partition from the Launchpad, the run succeeds, and the assets and the analysts' tables show
    what it read. (Whether an asset is fresh right now is the freshness daemon's to evaluate:
    no daemon runs here, so the test reads the policy, not its state.)"""
    from playwright.sync_api import expect

    for key in INVENTORY_ASSETS:
        page.goto(f"{url}/assets/{key}")
        expect(page.get_by_text("Freshness policy", exact=True).first).to_be_visible()
        for verdict in ("Warns", "Fails"):
            expect(page.get_by_text(re.compile(
                rf"^{verdict} if more than \d+ hours? since last materialization$")).first).to_be_visible()
        expect(page.get_by_text("langsmith_access_inventory", exact=True).first).to_be_visible()  # its job
    shoot(page, "09_inventory_asset_freshness")

    page.goto(f"{url}/locations/{REPOSITORY}/jobs/langsmith_access_inventory/playground")
    expect(page.locator(".CodeMirror.cm-s-config-editor")).to_be_visible()
    pick_partition(page, "default")
    expect(page.get_by_text("No errors").first).to_be_visible()  # the scaffolded config is enough
    shoot(page, "10_inventory_launchpad")
    run_id, status = launch_and_wait(page, url, INVENTORY_RUN_SECONDS)
    shoot(page, "11_inventory_run_succeeded")
    assert status == "SUCCESS", f"inventory run {run_id} ended {status}"

    # The raw asset now has a materialization of the org's partition, with the rows it read.
    page.goto(f"{url}/assets/raw/access_policies")
    expect(page.get_by_text("Latest materialization", exact=True).first).to_be_visible()
    expect(page.get_by_text("Never materialized", exact=True)).to_have_count(0)
    expect(page.get_by_text("Row count", exact=True).first).to_be_visible()
    expect(page.get_by_text(f'"access_policies": "read {len(org.access_policies)} rows"').first).to_be_visible()
    shoot(page, "12_inventory_asset_materialized")
    # The run published what it read: the org's policies, and its row in sync_runs.
    assert {policy_id for (policy_id,) in query(database.path, "SELECT policy_id FROM main.access_policies")} == set(
        org.access_policies)
    assert query(database.path, "SELECT sync_id FROM main.sync_runs WHERE job = 'langsmith_access_inventory'") == [
        (run_id,)]

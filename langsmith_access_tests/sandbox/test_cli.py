"""``langsmith-access sandbox`` run as a real process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from langsmith_access.settings import SettingsError, check_api_key

CLI = str(Path(sys.executable).with_name("langsmith-access"))


def test_sandbox_command_serves_until_sigterm():
    process = subprocess.Popen(
        [CLI, "sandbox", "--port", "0", "--members", "30", "--workspaces", "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = json.loads(process.stdout.readline())
        assert set(first_line) == {"url", "organization_id", "api_key"}
        assert first_line["url"].startswith("http://127.0.0.1:")
        assert first_line["api_key"].startswith("lsv2_sk_")
        response = requests.get(
            first_line["url"] + "/api/v1/orgs/current/members/active",
            params={"limit": 500},
            headers={
                "X-API-Key": first_line["api_key"],
                "X-Organization-Id": first_line["organization_id"],
            },
            timeout=10,
        )
        assert response.status_code == 200
        assert len(response.json()) == 30
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "sandbox", *args], capture_output=True, text=True, timeout=30)


def test_chosen_key_and_org_are_served():
    process = subprocess.Popen(
        [
            CLI,
            "sandbox",
            "--members",
            "3",
            "--workspaces",
            "1",
            "--api-key",
            "lsv2_sk_chosen",
            "--organization-id",
            "00000000-0000-4000-8000-000000000001",
            "--seed",
            "5",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = json.loads(process.stdout.readline())
        assert first_line["api_key"] == "lsv2_sk_chosen"
        assert first_line["organization_id"] == "00000000-0000-4000-8000-000000000001"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_bad_organization_id_exits_2():
    result = run_cli("--organization-id", "not-a-uuid")
    assert result.returncode == 2
    assert "UUID" in result.stderr
    assert result.stdout == ""


def test_personal_access_token_is_refused_without_echoing_it():
    result = run_cli("--api-key", "lsv2_pt_secret_value")
    assert result.returncode == 2
    assert "lsv2_sk_" in result.stderr
    assert "secret_value" not in result.stderr + result.stdout


@pytest.mark.parametrize("key", ["lsv2_sk_", "lsv2_sk_secret.value", "lsv2_sk_secret value", "lsv2_sk_...x9z"])
def test_a_key_langsmith_access_would_refuse_is_refused_without_echoing_it(key):
    # The first line's api_key is what goes into LANGSMITH_API_KEY: a key that variable refuses
    # would make a sandbox nothing can sync from.
    with pytest.raises(SettingsError):
        check_api_key(key)
    result = run_cli("--api-key", key)
    assert result.returncode == 2, result.stdout
    assert result.stdout == ""
    assert "--api-key" in result.stderr
    assert "secret" not in result.stderr


def test_pending_invites_and_rate_limit_flags():
    process = subprocess.Popen(
        [CLI, "sandbox", "--members", "12", "--workspaces", "2", "--pending-invites", "3",
         "--rate-limit-per-minute", "6", "--rate-limit-per-10-seconds", "4", "--pagination-totals", "enriched-only"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = json.loads(process.stdout.readline())
        headers = {"X-API-Key": first_line["api_key"], "X-Organization-Id": first_line["organization_id"]}
        pending = requests.get(
            first_line["url"] + "/api/v1/orgs/current/members/pending",
            params={"limit": 500}, headers=headers, timeout=10,
        )
        assert pending.status_code == 200 and len(pending.json()) == 3
        assert "X-Pagination-Total" not in pending.headers  # --pagination-totals enriched-only
        statuses = [
            requests.get(first_line["url"] + "/api/v1/orgs/current/info", headers=headers, timeout=10)
            for _ in range(4)
        ]
        # 4 allowed in the 10-second window (6 in the minute's): the listing above and three
        # more, then 429 with Retry-After, at most the short window's length.
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        assert 0 < int(statuses[-1].headers["Retry-After"]) <= 10
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_bad_pending_invites_and_rate_limit_exit_2():
    for args, flag in (
        (("--pending-invites", "-1"), "--pending-invites"),
        (("--rate-limit-per-minute", "0"), "--rate-limit-per-minute"),
        (("--rate-limit-per-10-seconds", "0"), "--rate-limit-per-10-seconds"),
        (("--port", "70000"), "--port must be between 0 and 65535"),
    ):
        result = run_cli(*args)
        assert result.returncode == 2
        assert flag in result.stderr


@pytest.mark.parametrize(("flag", "value"), [
    ("--latency-ms", "inf"), ("--latency-ms", "nan"), ("--latency-ms", "-5"),
    ("--rate-limit-window-seconds", "inf"), ("--rate-limit-window-seconds", "nan"),
    ("--rate-limit-window-seconds", "0"),  # was served with a 60 s window, as if not given
])
def test_a_number_that_is_no_finite_amount_is_refused(flag, value):
    # Accepted, inf made every answer a traceback and a dropped connection (the sleep overflows)
    # and nan passed every comparison.
    result = run_cli(flag, value)
    assert result.returncode == 2 and result.stdout == ""
    assert flag in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("host", ["", "  "])
def test_an_empty_host_is_refused(host):
    # Served on every interface, with http://:PORT as the url to put in LANGSMITH_ENDPOINT.
    result = run_cli("--host", host)
    assert result.returncode == 2 and result.stdout == ""
    assert "--host is empty: give the address to listen on" in result.stderr


def test_a_port_in_use_is_named_with_the_fix():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--port", str(port))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "choose another --port" in result.stderr


def test_a_member_manager_key_needs_the_enterprise_plan():
    # Its key holds a custom role, which plans below Enterprise do not have.
    result = run_cli("--key-role", "member-manager", "--plan", "plus")
    assert result.returncode == 2
    assert "--key-role member-manager needs --plan enterprise" in result.stderr


def test_a_key_given_as_the_organization_id_is_not_echoed():
    key = "lsv2_sk_" + "0123456789abcdef" * 2 + "_0123456789"
    result = run_cli("--organization-id", key)
    assert result.returncode == 2 and "--organization-id must be a UUID" in result.stderr
    assert key not in result.stdout + result.stderr

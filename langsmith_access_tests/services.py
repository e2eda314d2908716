"""Processes a test starts and waits on (a Dagster daemon, a webserver, a code server): each in
its own process group with its output in a log file (read when a wait fails; a pipe nobody
reads would stall the process once full), and waits that each have their own bound and name
what they waited for."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class Service:
    """One process, in its own process group, its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path | None = None  # the log's folder unless given
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> Service:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd or self.log_path.parent, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} ({self.log_path}):\n" + "\n".join(text.splitlines()[-lines:])

    def kill_hard(self) -> None:
        """``kill -9`` of the process itself, then of anything it left in its group."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        _signal_group(self.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop the process and its group (children: the code server's gRPC server and runs)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        _signal_group(self.process.pid, signal.SIGKILL)  # children that outlived it


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def wait_for(what: str, condition: Callable[[], object], services: list[Service], timeout: float,
             every: float = 0.5):
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` (with the
    services' logs) when a service died or the bound passed. Looks every ``every`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        dead = [s for s in services if not s.running()]
        if dead or time.monotonic() > deadline:
            reason = f"{', '.join(s.name for s in dead)} exited" if dead else f"not within {timeout:.0f} s"
            pytest.fail(f"waiting for {what}: {reason}\n" + "\n".join(s.log_tail() for s in services))
        time.sleep(every)

"""Processes a test starts and waits on (a Dagster daemon, a webserver, a code server): each in
its own process group with its output in a log file (read when a wait fails; a pipe nobody
reads would stall the process once full), and waits that each have their own bound and name
what they waited for; one handed a free port is started again on another when a process
took its port first."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest


@dataclass
class Service:
    """One process, in its own process group, its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path | None = None  # the log's folder unless given
    popen_options: dict = field(default_factory=dict)  # e.g. the account to run as
    stop_signal: int = signal.SIGTERM
    process: subprocess.Popen | None = field(default=None, repr=False)
    log_start: int = field(default=0, repr=False)  # the log's size when last started

    def start(self) -> Service:
        with open(self.log_path, "a") as log, _terminable_children():
            self.log_start = log.tell()
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd or self.log_path.parent, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True, **self.popen_options)
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output_since_start(self) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(self.log_start)
            return log.read().decode(errors="replace")

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
            _signal_group(self.process.pid, self.stop_signal)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        _signal_group(self.process.pid, signal.SIGKILL)  # children that outlived it


@contextlib.contextmanager
def _terminable_children():
    """SIGTERM at its default action while a child is started: an ignored signal is inherited
    through exec, and a Dagster run in this process leaves SIGTERM with SIGINT's handler, which
    is SIG_IGN in a test run started in the background (CI's). ``stop`` then waited 60 s for a
    child that ignored its SIGTERM (``python -m http.server``) before it killed it."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def wait_for(what: str, condition: Callable[[], object], services: list[Service], timeout: float,
             every: float = 0.5, shown: list[Service] | None = None):
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` (with the
    services' logs, and those of ``shown``) when a service died or the bound passed. Looks every
    ``every`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        dead = [s for s in services if not s.running()]
        if dead or time.monotonic() > deadline:
            _fail(what, f"{', '.join(s.name for s in dead)} exited" if dead else f"not within {timeout:.0f} s",
                  [*(shown or []), *services])
        time.sleep(every)


def _fail(what: str, reason: str, services: list[Service]) -> NoReturn:
    pytest.fail(f"waiting for {what}: {reason}\n" + "\n".join(s.log_tail() for s in services))


# How a server says its port was taken: Python's and PostgreSQL's "Address already in use",
# uvicorn's (dagster-webserver) "address already in use", gRPC's (a Dagster code server)
# "Failed to bind to address".
PORT_TAKEN = re.compile(r"address already in use|failed to bind to address", re.IGNORECASE)
PORT_ATTEMPTS = 5


def free_port() -> int:
    """A port nothing is bound to on 127.0.0.1 now. The probe is closed before the port is
    handed to the program that binds it, so another process may bind it in between:
    ``start_on_a_free_port`` starts a program again on another port when that happened."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_on_a_free_port(what: str, service_on: Callable[[int], Service], ready: Callable[[int], object],
                         timeout: float, others: list[Service] | None = None, every: float = 0.5,
                         attempts: int = PORT_ATTEMPTS) -> tuple[Service, int]:
    """Start ``service_on(port)`` on a free port and wait until ``ready(port)`` and the port's
    listener is the service's own (another program given the port could answer ``ready``).
    When the service exits saying its port was taken, start it again on another port, up to
    ``attempts`` times. Fails as ``wait_for`` does (``others`` are the services it relies on)."""
    for _attempt in range(attempts):
        port = free_port()
        service = service_on(port).start()

        def started(service: Service = service, port: int = port) -> str | None:
            # Its exit is looked at here, not by wait_for: one that exits on a taken port just
            # after a probe (PostgreSQL does within milliseconds) is started again.
            if not service.running():
                if PORT_TAKEN.search(service.output_since_start()):
                    return "taken"
                _fail(what, f"{service.name} exited", [service, *(others or [])])
            return "ready" if _listens(service, port) and ready(port) else None

        outcome = None
        try:
            outcome = wait_for(what, started, others or [], timeout, every, shown=[service])
        finally:
            if outcome != "ready":
                service.stop()  # given up on (the caller never gets it), or what it left in its group
        if outcome == "ready":
            return service, port
    _fail(what, f"its port was taken {attempts} times", [service])


def _listens(service: Service, port: int) -> bool:
    """Whether a process of the service's group listens on ``port`` (Linux: /proc)."""
    assert service.process is not None
    listeners = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()  # sl, local address:port (hex), remote, state (0A: LISTEN), ..., inode
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                listeners.add(f"socket:[{fields[9]}]")
    if not listeners:
        return False
    for process in Path("/proc").iterdir():
        try:
            # The group is the third field after the command's closing parenthesis.
            if not process.name.isdigit() or int((process / "stat").read_text().rsplit(")", 1)[1].split()[2]) \
                    != service.process.pid:
                continue
            if any(os.readlink(fd) in listeners for fd in (process / "fd").iterdir()):
                return True
        except OSError:  # the process ended meanwhile, or is another account's
            continue
    return False

"""The test helpers that other tests' verdicts rest on."""

import errno
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from langsmith_access_tests import services
from langsmith_access_tests.governance.receiver import WebhookReceiver
from langsmith_access_tests.services import Service, start_on_a_free_port


def assert_refused_and_not_taken(port: int) -> None:
    # Another xdist worker's server given the same port (a bind to port 0 hands out any free
    # one) would answer where the test expects a refusal.
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server's servers bind
        with pytest.raises(OSError) as taken:
            other.bind(("127.0.0.1", port))
        assert taken.value.errno == errno.EADDRINUSE
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_refused_port_cannot_be_taken_while_the_test_uses_it(refused_port):
    assert_refused_and_not_taken(refused_port)


def test_a_receiver_not_started_yet_keeps_its_port_and_answers_there_once_started():
    receiver = WebhookReceiver()
    assert_refused_and_not_taken(receiver.port)
    with receiver:
        request = urllib.request.Request(receiver.url, data=b"{}", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    assert receiver.bodies() == [{}]
    with pytest.raises(ConnectionRefusedError):  # stopped: down again
        socket.create_connection(("127.0.0.1", receiver.port), timeout=5).close()


def _answers(port: int) -> bool:
    """Any HTTP answer: as little as the real waits know (a gRPC ping any code server answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _http_server_on(tmp_path: Path, started: list[Service]):
    """A tiny server a test starts: ``python -m http.server`` serving ``tmp_path``."""
    def service_on(port: int) -> Service:
        started.append(Service(f"http.server {port}", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                                       str(port)], dict(os.environ), tmp_path / "server.log"))
        return started[-1]
    return service_on


@pytest.fixture
def first_port_taken(monkeypatch):
    """The first port chosen is already taken, by a server that answers any GET (another worker's
    server given the port between the choice and the program's bind); free ones after it."""
    with WebhookReceiver() as thief:
        chosen = iter([thief.port])
        monkeypatch.setattr(services, "free_port", lambda real=services.free_port: next(chosen, None) or real())
        yield thief


def test_a_service_whose_port_was_taken_starts_again_on_another_port(first_port_taken, tmp_path):
    (tmp_path / "marker.txt").write_text("the service's own")
    started: list[Service] = []
    service, port = start_on_a_free_port("the http.server", _http_server_on(tmp_path, started), _answers, 60)
    try:
        assert port != first_port_taken.port and len(started) == 2
        assert "Address already in use" in started[0].output_since_start()
        assert not started[0].running()
        assert "Address already in use" not in service.output_since_start()  # its own log's part
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/marker.txt", timeout=10) as answer:
            assert answer.read() == b"the service's own"
        assert first_port_taken.gets == []  # the taken port's server was never taken for the service
    finally:
        service.stop()


def test_a_service_whose_every_port_was_taken_fails_naming_it(first_port_taken, tmp_path):
    started: list[Service] = []
    with pytest.raises(pytest.fail.Exception, match="port was taken 1 times") as failed:
        start_on_a_free_port("the http.server", _http_server_on(tmp_path, started), _answers, 60, attempts=1)
    assert "Address already in use" in str(failed.value) and len(started) == 1


def test_a_service_that_fails_for_another_reason_is_not_started_again(tmp_path):
    started: list[Service] = []

    def service_on(port: int) -> Service:
        started.append(Service("a broken server", [sys.executable, "-c", "raise SystemExit('no such settings')"],
                               dict(os.environ), tmp_path / "broken.log"))
        return started[-1]

    with pytest.raises(pytest.fail.Exception, match="a broken server exited") as failed:
        start_on_a_free_port("the broken server", service_on, _answers, 60)
    assert "no such settings" in str(failed.value) and len(started) == 1


def test_a_service_given_up_on_is_stopped(tmp_path):
    started: list[Service] = []
    with pytest.raises(pytest.fail.Exception, match="not within 1 s") as failed:
        start_on_a_free_port("an answer that never comes", _http_server_on(tmp_path, started), lambda port: False, 1)
    assert len(started) == 1 and not started[0].running()
    assert f"--- {started[0].name} (" in str(failed.value)  # its log


def test_a_service_that_exits_on_its_taken_port_while_it_is_probed_is_started_again(first_port_taken, tmp_path,
                                                                                    monkeypatch):
    # PostgreSQL exits within milliseconds of a failed bind: between a poll's probe and the look
    # at which services died (seen: the fixture failed with "PostgreSQL exited").
    real_listens = services._listens

    def listens_as_it_exits(service: Service, port: int) -> bool:
        if port == first_port_taken.port:
            assert service.process is not None
            service.process.wait(timeout=30)
            return False
        return real_listens(service, port)

    monkeypatch.setattr(services, "_listens", listens_as_it_exits)
    started: list[Service] = []
    service, port = start_on_a_free_port("the http.server", _http_server_on(tmp_path, started), _answers, 60)
    service.stop()
    assert port != first_port_taken.port and len(started) == 2


@dg.op
def _nothing() -> None:
    pass


@dg.job
def _a_job() -> None:
    _nothing()


def test_a_service_started_after_a_dagster_run_in_the_background_stops_on_its_sigterm(tmp_path):
    # A test run started in the background (CI's) ignores SIGINT; a Dagster run in this process
    # then leaves SIGTERM with SIGINT's handler (ignored), which every child inherited: stopping
    # one that keeps the default action (http.server) waited 60 s, then killed it.
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert _a_job.execute_in_process().success
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # what Dagster leaves
        service, _port = start_on_a_free_port("the http.server", _http_server_on(tmp_path, []), _answers, 60)
        service.stop()
        assert service.process is not None and service.process.returncode == -signal.SIGTERM  # not SIGKILL
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # this process's own left as it was
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])

"""The test helpers that other tests' verdicts rest on."""

import errno
import socket
import urllib.request

import pytest

from langsmith_access_tests.governance.receiver import WebhookReceiver


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

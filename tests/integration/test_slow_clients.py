"""Slow clients against a gateway of its own (no service behind it, short timeouts): 300
connections that never finish their headers and 55 that send a body one byte at a time once
held every worker and froze /health and /graphql. Now the gateway answers others within a
second meanwhile, and closes the slow ones when their time is up."""
import socket
import threading
import time

import pytest
import requests

from tests.conftest import lone_gateway

HEADER_SECONDS, BODY_SECONDS = 2, 3
UNFINISHED_HEADERS, SLOW_BODIES = 300, 55


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with lone_gateway(tmp_path_factory.mktemp("slow"), GATEWAY_HEADER_TIMEOUT_SECONDS=str(HEADER_SECONDS),
                      GATEWAY_BODY_TIMEOUT_SECONDS=str(BODY_SECONDS), GATEWAY_MAX_WORKERS="10",
                      GATEWAY_MAX_CONNECTIONS="500") as running:
        yield running


def _connect(site):
    host, port = site.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=30)
    connection.settimeout(30)
    return connection


def _closed_within(connection, seconds):
    """Whether the gateway closed ``connection`` (after an answer or none) within ``seconds``."""
    connection.settimeout(seconds)
    try:
        while connection.recv(4096):
            pass
        return True
    except (socket.timeout, TimeoutError):
        return False
    except OSError:   # reset: closed as well
        return True


def _timed_get(url):
    started = time.monotonic()
    response = requests.get(url, timeout=10)
    return response, time.monotonic() - started


def test_slow_clients_do_not_hold_the_gateway_and_are_closed_in_time(gateway):
    site = gateway["site"]
    stalled = []
    for _ in range(UNFINISHED_HEADERS):
        connection = _connect(site)
        connection.sendall(b"POST /graphql HTTP/1.1\r\nHost: mantelzorg\r\nX-Slow: ")
        stalled.append(connection)
    body = b'{"query": "{ __typename }"}'
    trickling = []
    for _ in range(SLOW_BODIES):
        connection = _connect(site)
        connection.sendall(b"POST /graphql HTTP/1.1\r\nHost: mantelzorg\r\n"
                           b"Content-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body))
        trickling.append(connection)
    stop = threading.Event()

    def trickle():   # one byte a connection every half second, for longer than allowed
        for offset in range(len(body)):
            for connection in trickling:
                try:
                    connection.sendall(body[offset:offset + 1])
                except OSError:
                    pass
            if stop.wait(0.5):
                return

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    opened = time.monotonic()
    try:
        time.sleep(0.5)
        health, seconds = _timed_get(f"{site}/health")
        assert health.status_code == 200 and seconds < 1.0, seconds
        started = time.monotonic()
        answer = requests.post(f"{site}/graphql", json={"query": "{ __typename }"}, timeout=10)
        assert answer.json() == {"data": {"__typename": "Query"}}
        assert time.monotonic() - started < 1.0

        for connection in stalled:
            assert _closed_within(connection, HEADER_SECONDS + 2 - (time.monotonic() - opened))
        for connection in trickling:
            assert _closed_within(connection, BODY_SECONDS + 2 - (time.monotonic() - opened))
        assert time.monotonic() - opened < BODY_SECONDS + 2
    finally:
        stop.set()
        for connection in stalled + trickling:
            connection.close()
    health, seconds = _timed_get(f"{site}/health")
    assert health.status_code == 200 and seconds < 1.0


def test_a_request_that_stalls_in_its_headers_is_answered_408(gateway):
    connection = _connect(gateway["site"])
    connection.sendall(b"GET /health HTTP/1.1\r\nHost: mantelzorg\r\n")
    connection.settimeout(HEADER_SECONDS + 2)
    answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408") and b"Connection: close" in answer
    assert b"BAD_USER_INPUT" in answer
    connection.close()


def test_a_body_sent_in_time_but_in_pieces_is_read_whole(gateway):
    connection = _connect(gateway["site"])
    body = b'{"query": "{ __typename }"}'
    connection.sendall(b"POST /graphql HTTP/1.1\r\nHost: mantelzorg\r\nConnection: close\r\n"
                       b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    for piece in (body[:5], body[5:15], body[15:]):
        time.sleep(0.2)
        connection.sendall(piece)
    answer = b""
    while chunk := connection.recv(4096):
        answer += chunk
    connection.close()
    assert answer.startswith(b"HTTP/1.1 200") and b'"__typename": "Query"' in answer


def test_more_connections_than_allowed_are_refused_not_queued(tmp_path_factory):
    with lone_gateway(tmp_path_factory.mktemp("few"), GATEWAY_MAX_CONNECTIONS="5",
                      GATEWAY_HEADER_TIMEOUT_SECONDS="5") as running:
        held = [_connect(running["site"]) for _ in range(5)]
        for connection in held:
            connection.sendall(b"GET /health HTTP/1.1\r\n")
        time.sleep(0.3)
        one_more = _connect(running["site"])
        one_more.settimeout(5)
        assert one_more.recv(4096).startswith(b"HTTP/1.1 503")
        for connection in held + [one_more]:
            connection.close()
        time.sleep(0.3)
        assert requests.get(f"{running['site']}/health", timeout=5).status_code == 200

"""A call carries its deadline, on the real broker: a service paused (SIGSTOP, as a long
garbage collection, a CPU-starved container or a frozen VM does) while a request waits for it
answers UNAVAILABLE within the gateway's timeout, and when it resumes (SIGCONT) after that
timeout it refuses the call it finds: nothing stored, nothing published, the refusal counted.
A call that is merely slow, and done before its deadline, answers normally. A platform of its
own (its own virtual host), because the tests stop its processes."""
import contextlib
import signal
import time
import uuid

import eventlet
import pytest
import requests
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from common.config import SERVICE_NAMES
from common.topology import declare_topology
from ops import reference
from ops.broker import create_vhost, delete_vhost
from ops.platform import PROCESSES, metrics_address
from tests.conftest import running_platform
from tests.integration.test_campaign import ORDER, ORDERS
from tests.integration.test_declaration import DECIDE, request_input
from tests.integration.test_faults import known_to_declarations
from tests.support import (Caregiver, GraphQLClient, drain, error_codes, eventually,
                           fund_knows_areas, random_bsn, token, trip)

RPC_TIMEOUT_SECONDS = 3
CLOCK_SKEW_SECONDS = 1
AMSTERDAM = "GM0363"
STAFF = token("municipality", "staff-deadline", municipality=AMSTERDAM)
EVERY_EVENT = "test.call-deadlines.events"
REQUEST = """mutation($input: DeclarationRequestInput!) {
  requestDeclaration(input: $input) { id reference status } }"""
MINE = "{ myDeclarations { id } }"


@pytest.fixture(scope="module")
def own_platform(amqp_uri, tmp_path_factory):
    base = amqp_uri.rsplit("/", 1)[0] + "/"
    vhost = f"mantelzorg-deadline-{uuid.uuid4().hex[:8]}"
    uri = create_vhost(base, vhost)
    try:
        declare_topology({"AMQP_URI": uri})
        with Connection(uri) as connection:   # every event of every service, from now on
            channel = connection.channel()
            for service in SERVICE_NAMES:
                exchange = get_event_exchange(service, {})
                exchange(channel).declare()
                Queue(EVERY_EVENT, exchange, routing_key="#")(channel).declare()
        with running_platform(uri, tmp_path_factory, GATEWAY_RPC_TIMEOUT_SECONDS=str(
                RPC_TIMEOUT_SECONDS), RPC_CLOCK_SKEW_SECONDS=str(CLOCK_SKEW_SECONDS)) as running:
            with running.rpc(timeout=60) as rpc:
                reference.import_reference(rpc, reference.DEMO_DIR)
                assert eventually(lambda: known_to_declarations(rpc, AMSTERDAM), timeout=30)
                assert fund_knows_areas(rpc, reference.DEMO_DIR / "pc4.csv")
            published(uri)   # what the set-up published
            yield running, uri, GraphQLClient(f"{running.gateway_url()}/graphql")
    finally:
        delete_vhost(base, vhost)


def published(uri):
    """The types of the events published since the last look."""
    with Connection(uri) as connection:
        return [body["type"] for body in drain(Queue(EVERY_EVENT)(connection.channel()))]


def expired_calls(platform, service, method):
    process = next(p for p in PROCESSES if p.name == service)
    text = requests.get(f"http://{metrics_address(process, platform.environ)}/metrics",
                        timeout=5).text
    sample = (f'mantelzorg_rpc_calls_expired_total{{method="{method}",service="{service}"}}')
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


@contextlib.contextmanager
def paused(platform, service):
    """The service's process stopped (SIGSTOP) inside the block, resumed (SIGCONT) after."""
    child = platform.children[service]
    child.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        child.send_signal(signal.SIGCONT)


def outlived_by_its_service(platform, uri, service, method, ask):
    """``ask()`` while ``service`` is paused: UNAVAILABLE within the gateway's timeout. The
    service resumes after the call's deadline (and the allowed clock skew) and refuses the
    call before doing anything: counted, and nothing published."""
    before = expired_calls(platform, service, method)
    with paused(platform, service):
        started = time.monotonic()
        answer = ask()
        waited = time.monotonic() - started
        assert error_codes(answer) == ["UNAVAILABLE"], answer
        assert waited < RPC_TIMEOUT_SECONDS + 2
        time.sleep(CLOCK_SKEW_SECONDS + 1)
    assert eventually(lambda: expired_calls(platform, service, method) == before + 1,
                      timeout=20)
    time.sleep(1)   # anything it would have published has been by now
    assert published(uri) == []


def test_a_declaration_request_outlived_by_its_caller_is_not_stored(own_platform):
    platform, uri, gql = own_platform
    bsn = random_bsn()
    caregiver = token("caregiver", f"cg-{uuid.uuid4().hex[:8]}", bsn=bsn)
    outlived_by_its_service(platform, uri, "declaration", "request_declaration", lambda: gql(
        REQUEST, {"input": request_input(AMSTERDAM, bsn=bsn)}, token=caregiver))
    assert gql(MINE, token=caregiver) == {"data": {"myDeclarations": []}}


def test_a_decision_outlived_by_its_caller_is_not_made(own_platform):
    platform, uri, gql = own_platform
    bsn = random_bsn()
    caregiver = token("caregiver", f"cg-{uuid.uuid4().hex[:8]}", bsn=bsn)
    requested = gql(REQUEST, {"input": request_input(AMSTERDAM, bsn=bsn)},
                    token=caregiver)["data"]["requestDeclaration"]
    eventlet.sleep(1)
    published(uri)
    outlived_by_its_service(platform, uri, "declaration", "decide_declaration", lambda: gql(
        DECIDE, {"id": requested["id"], "decision": "ISSUE"}, token=STAFF))
    again = gql(DECIDE, {"id": requested["id"], "decision": "ISSUE"}, token=STAFF)
    assert again["data"]["decideDeclaration"]["status"] == "ISSUED", again   # once, now


def test_a_travel_claim_outlived_by_its_caller_is_not_stored(own_platform):
    platform, uri, gql = own_platform
    caregiver = Caregiver(gql)
    eventlet.sleep(1)
    published(uri)
    outlived_by_its_service(platform, uri, "travel_costs", "submit_travel_claim",
                            lambda: caregiver.claim(trip()))
    assert caregiver.mine() == []


def test_a_bag_order_outlived_by_its_caller_is_not_stored(own_platform):
    platform, uri, gql = own_platform
    municipality = token("municipality", "staff-bags", municipality=AMSTERDAM)
    before = gql(ORDERS, {"m": AMSTERDAM}, token=municipality)["data"]["bagOrders"]
    outlived_by_its_service(platform, uri, "campaign", "order_bags", lambda: gql(
        ORDER, {"m": AMSTERDAM, "q": 5}, token=municipality))
    assert gql(ORDERS, {"m": AMSTERDAM}, token=municipality)["data"]["bagOrders"] == before


def test_a_slow_call_done_before_its_deadline_answers_normally(own_platform):
    platform, _uri, gql = own_platform
    bsn = random_bsn()
    caregiver = token("caregiver", f"cg-{uuid.uuid4().hex[:8]}", bsn=bsn)
    with paused(platform, "declaration"):
        asked = eventlet.spawn(gql, REQUEST, {"input": request_input(AMSTERDAM, bsn=bsn)},
                               token=caregiver)
        eventlet.sleep(RPC_TIMEOUT_SECONDS / 2)
    answer = asked.wait()
    assert "errors" not in answer, answer
    assert answer["data"]["requestDeclaration"]["status"] == "REQUESTED"
    assert gql(MINE, token=caregiver)["data"]["myDeclarations"] == [
        {"id": answer["data"]["requestDeclaration"]["id"]}]

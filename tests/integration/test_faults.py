"""Faults as an operator meets them, on a platform and RabbitMQ node of these tests' own: a
service killed with SIGKILL in the middle of its work, the broker restarted under load.
Whatever a caller was told succeeded exists exactly once afterwards, with exactly one event;
whatever failed failed with UNAVAILABLE; the services reconnect by themselves."""
import collections
import contextlib
import os
import signal
import uuid

import eventlet
import pytest
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from common.errors import BadUserInput
from common.messaging import declare_topology
from ops import reference
from ops.platform import process_named
from tests.conftest import free_port, running_platform
from tests.integration.test_declaration import DECIDE, request_input
from tests.rabbit_node import RabbitNode, installed
from tests.support import GraphQLClient, drain, error_codes, eventually, token

pytestmark = pytest.mark.skipif(not installed(), reason="needs rabbitmq-server to start a node")

AMSTERDAM = "GM0363"
STAFF = {"sub": "staff-fault", "role": "municipality", "municipality": AMSTERDAM}
REGISTER = """mutation($input: SupportPointInput!) {
  registerSupportPoint(input: $input) { id name } }"""
HEALTH = "{ health { status services { name status } } }"


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    with RabbitNode(tmp_path_factory.mktemp("rabbit"), free_port(), free_port()) as node:
        yield node


@pytest.fixture(scope="module")
def faulty(rabbit, tmp_path_factory):
    """Every service and the gateway on the tests' own broker; the gateway gives up on a
    call after 3 s, so that failed calls answer quickly."""
    declare_topology({"AMQP_URI": rabbit.amqp_uri})
    with running_platform(rabbit.amqp_uri, tmp_path_factory,
                          GATEWAY_RPC_TIMEOUT_SECONDS="3") as running:
        with running.rpc(timeout=60) as rpc:
            reference.import_reference(rpc, reference.DEMO_DIR)
            assert eventually(lambda: known_to_declarations(rpc, AMSTERDAM), timeout=30)
        yield running


def known_to_declarations(rpc, code):
    """The declaration service has had the municipality's event."""
    try:
        return rpc.declaration.municipality_settings(code)
    except BadUserInput:
        return None


@pytest.fixture(scope="module")
def clients(faulty):
    """An RPC proxy into the tests' own platform and a GraphQL client of its gateway."""
    with faulty.rpc(timeout=30) as rpc:
        yield rpc, GraphQLClient(f"{faulty.gateway_url()}/graphql")


@contextlib.contextmanager
def event_listener(amqp_uri, source, event):
    """A queue of the test's own that receives every ``event`` of ``source`` from now on."""
    with Connection(amqp_uri) as connection:
        queue = Queue(f"fault-probe-{uuid.uuid4().hex[:8]}", routing_key=event,
                      exchange=get_event_exchange(source, {}))(connection.channel())
        queue.declare()
        try:
            yield queue
        finally:
            queue.delete()


def outcome(answer, field):
    """("ok", data) or ("failed", the error codes)."""
    if answer.get("errors"):
        return "failed", tuple(error_codes(answer))
    return "ok", answer["data"][field]


def test_a_decision_killed_with_sigkill_is_done_exactly_once(faulty, clients, rabbit):
    rpc, gateway = clients
    declarations = [rpc.declaration.request_declaration(request_input(AMSTERDAM), STAFF)
                    for _ in range(60)]
    staff = token("municipality", STAFF["sub"], municipality=AMSTERDAM)
    first_answer = eventlet.Event()

    def decide(declaration_id):
        answer = outcome(gateway(DECIDE, {"id": declaration_id, "decision": "ISSUE"},
                                 token=staff), "decideDeclaration")
        if not first_answer.ready():
            first_answer.send()
        return declaration_id, answer

    with event_listener(rabbit.amqp_uri, "declaration", "declaration.issued") as issued:
        answers = eventlet.GreenPool(len(declarations)).imap(decide, [d["id"] for d in declarations])
        first_answer.wait()
        os.kill(faulty.children["declaration"].pid, signal.SIGKILL)   # the others at work
        results = dict(answers)
        faulty.children["declaration"].wait()
        faulty.start_process(process_named("declaration"))
        faulty.wait_until_healthy(names=["declaration"])

        failed = {id_: codes for id_, (kind, codes) in results.items() if kind == "failed"}
        assert failed and len(failed) < len(results), "the kill fell outside the decisions"
        assert set(failed.values()) == {("UNAVAILABLE",)}
        # A failed call was done before the kill, is run after it, or not at all. Asked again
        # it is done now, or found done (CONFLICT): never twice.
        for id_ in failed:
            kind, answer = outcome(gateway(DECIDE, {"id": id_, "decision": "ISSUE"},
                                           token=staff), "decideDeclaration")
            assert kind == "ok" or answer == ("CONFLICT",), answer

        for declaration in declarations:
            stored = rpc.declaration.declaration(declaration["reference"], STAFF)
            assert stored["status"] == "ISSUED", results[declaration["id"]]
            assert [h["action"] for h in stored["history"]] == ["request", "issue"]

        # One event per declaration; an outbox relay killed between publishing and
        # forgetting an event may send that same event again, which consumers drop.
        events = collections.defaultdict(set)

        def all_announced():
            for body in drain(issued):
                events[body["payload"]["reference"]].add(body["event_id"])
            return len(events) == len(declarations)
        assert eventually(all_announced, timeout=45)
        eventlet.sleep(1)
        all_announced()
        assert all(len(event_ids) == 1 for event_ids in events.values())


def support_point_input(name):
    return {"name": name, "kind": "LOCAL", "municipalityCode": AMSTERDAM,
            "areas": ["INFORMATION"],
            "address": {"street": "Dam", "houseNumber": "1", "postcode": "1012 JS",
                        "city": "Amsterdam"}}


def registered_names(rpc, prefix):
    """Every support point whose name starts with ``prefix``, with how often it exists."""
    names, cursor = collections.Counter(), None
    while True:
        page = rpc.registry.search_support_points(municipality_code=AMSTERDAM, first=100,
                                                  after=cursor, include_inactive=True)
        names.update(item["name"] for item in page["items"] if item["name"].startswith(prefix))
        cursor = page["next_cursor"]
        if not cursor:
            return names


def test_a_broker_restart_under_load_loses_nothing_that_was_accepted(clients, rabbit):
    rpc, gateway = clients
    prefix = f"Herstart {uuid.uuid4().hex[:6]}"
    admin = token("admin")
    answered = []

    def register(name):
        answer = outcome(gateway(REGISTER, {"input": support_point_input(name)}, token=admin),
                         "registerSupportPoint")
        answered.append(name)
        return name, answer

    def restart_when_under_way():
        eventually(lambda: len(answered) >= 40, timeout=60)
        rabbit.stop_app()
        eventlet.sleep(1)
        rabbit.start_app()

    restart = eventlet.spawn(restart_when_under_way)
    names = [f"{prefix} {number:03d}" for number in range(200)]
    results = dict(eventlet.GreenPool(10).imap(register, names))
    restart.wait()

    succeeded = [name for name, (kind, _) in results.items() if kind == "ok"]
    failures = collections.Counter(codes for kind, codes in results.values() if kind == "failed")
    assert set(failures) <= {("UNAVAILABLE",)}, failures

    # The services and the gateway reconnected by themselves.
    health = []
    assert eventually(lambda: health.append(gateway(HEALTH)) or
                      health[-1].get("data", {}).get("health", {}).get("status") == "ok",
                      timeout=60), health[-1]
    assert register(f"{prefix} after")[1][0] == "ok"

    stored = registered_names(rpc, prefix)
    assert [name for name in succeeded if stored[name] != 1] == []
    assert [name for name, count in stored.items() if count > 1] == [], "a call ran twice"
    # Their events reached the campaign service: the outbox relays reconnected too.
    assert eventually(lambda: rpc.campaign.support_point_reach([AMSTERDAM]) >= len(stored),
                      timeout=60)

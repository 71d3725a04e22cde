"""A service that is down, on the real broker: the gateway answers UNAVAILABLE within its RPC
timeout, and the request it gave up on expires in the service's queue instead of running
when the service comes back. A platform of its own (its own virtual host), because the test
stops one of its processes."""
import json
import signal
import time
import uuid

import pytest
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from common.topology import declare_topology
from ops.broker import create_vhost, delete_vhost
from ops.platform import PROCESSES
from ops.reference import import_municipalities, import_pc4_areas
from tests.conftest import running_platform
from tests.integration.test_registry import REGISTER, point_input
from tests.support import GraphQLClient, error_codes, eventually, token

RPC_TIMEOUT_SECONDS = 3
REGISTRY = next(process for process in PROCESSES if process.name == "registry")
REGISTRY_EVENTS = "test.expired-calls.registry-events"


@pytest.fixture(scope="module")
def own_platform(amqp_uri, tmp_path_factory, reference_data):
    base = amqp_uri.rsplit("/", 1)[0] + "/"
    vhost = f"mantelzorg-expiry-{uuid.uuid4().hex[:8]}"
    uri = create_vhost(base, vhost)
    try:
        declare_topology({"AMQP_URI": uri})
        with Connection(uri) as connection:
            channel = connection.channel()
            exchange = get_event_exchange("registry", {})
            exchange(channel).declare()
            Queue(REGISTRY_EVENTS, exchange, routing_key="support_point.#")(channel).declare()
        gateway = {"gateway": {"GATEWAY_RPC_TIMEOUT_SECONDS": str(RPC_TIMEOUT_SECONDS)}}
        with running_platform(uri, tmp_path_factory, gateway) as running:
            with running.rpc(timeout=60) as rpc:
                import_municipalities(rpc, reference_data / "municipalities.csv")
                import_pc4_areas(rpc, reference_data / "pc4.csv")
            yield running, uri
    finally:
        delete_vhost(base, vhost)


def registry_events(uri):
    with Connection(uri) as connection:
        queue = connection.SimpleQueue(REGISTRY_EVENTS)
        events = []
        while True:
            try:
                message = queue.get(block=False)
            except queue.Empty:
                return events
            events.append(json.loads(message.body) if isinstance(message.body, (str, bytes))
                          else message.body)
            message.ack()


def test_a_call_the_gateway_gave_up_on_does_not_run_when_its_service_returns(own_platform):
    platform, uri = own_platform
    gql = GraphQLClient(f"{platform.gateway_url()}/graphql")
    admin = token("admin")
    registry = platform.children["registry"]
    registry.send_signal(signal.SIGTERM)
    registry.wait(30)

    given_up = point_input()
    started = time.monotonic()
    answer = gql(REGISTER, {"input": given_up}, token=admin)
    waited = time.monotonic() - started
    assert error_codes(answer) == ["UNAVAILABLE"]
    assert waited < RPC_TIMEOUT_SECONDS + 2
    # the other services keep answering meanwhile
    settings = gql('{ declarationSettings(municipalityCode: "GM0096") { municipalityCode } }',
                   token=admin)
    assert "errors" not in settings, settings

    platform.start_process(REGISTRY)
    platform.wait_until_healthy()
    control = point_input()
    answer = gql(REGISTER, {"input": control}, token=admin)
    assert "errors" not in answer, answer
    control_id = answer["data"]["registerSupportPoint"]["id"]

    events = eventually(lambda: registry_events(uri), timeout=15)
    time.sleep(1)   # an event of the expired call would have come before the control's
    events += registry_events(uri)
    assert [event["payload"]["id"] for event in events] == [control_id]
    found = gql('{ supportPoints(municipalityCode: "GM0096", first: 50) { items { name } } }')
    names = {point["name"] for point in found["data"]["supportPoints"]["items"]}
    assert control["name"] in names
    assert given_up["name"] not in names

"""The RabbitMQ users of deploy/k8s on the real broker: the whole platform runs with each
process's own user and the permissions its Permission resource grants, the queue topology is
declared with the operator's user, calls and events still cross between every process, and
a process cannot touch another's queues."""
import uuid

import pytest
from amqp.exceptions import AccessRefused
from kombu import Connection

from common.dead_letters import list_dead_letters

from common.topology import declare_topology
from ops import reference
from ops.broker import create_user, create_vhost, delete_user, delete_vhost
from ops.platform import PROCESSES
from tests.conftest import running_platform
from tests.integration.test_declaration import READ_SETTINGS, decide, request, request_input
from tests.support import GraphQLClient, eventually, log_lines
from tests.unit.test_k8s import k8s_name, objects

AMSTERDAM = "GM0363"


@pytest.fixture(scope="module")
def users(amqp_uri):
    """Every user of deploy/k8s/base/rabbitmq-users.yaml in a throwaway virtual host."""
    base = amqp_uri.rsplit("/", 1)[0] + "/"
    vhost = f"mantelzorg-users-{uuid.uuid4().hex[:8]}"
    create_vhost(base, vhost)
    uris, made = {}, []
    try:
        for permission in objects("base", "Permission").values():
            name = permission["spec"]["userReference"]["name"]
            made.append(f"{vhost}-{name}")
            uris[name] = create_user(base, vhost, made[-1], uuid.uuid4().hex,
                                     permission["spec"]["permissions"])
        yield uris
    finally:
        for user in made:
            delete_user(base, user)
        delete_vhost(base, vhost)


def broker_users_setting(users):
    """BROKER_USERS of the processes that each connect with their own user."""
    names = {**{process.name: k8s_name(process) for process in PROCESSES}, "operator": "operator"}
    return ",".join(f"{name}={Connection(users[user]).userid}" for name, user in names.items())


@pytest.fixture(scope="module")
def restricted_platform(users, tmp_path_factory):
    """The operator's user declares the queues (as the declare-queues Job does) and makes
    the calls of the tests; each process runs with its own user."""
    declare_topology({"AMQP_URI": users["operator"]})
    own_users = {process.name: {"AMQP_URI": users[k8s_name(process)],
                                "BROKER_USERS": broker_users_setting(users)}
                 for process in PROCESSES}
    with running_platform(users["operator"], tmp_path_factory, own_users) as running:
        yield running


def test_calls_and_events_cross_every_process_with_its_own_user(restricted_platform, users):
    platform = restricted_platform
    with platform.rpc(timeout=60) as rpc:
        # registry publishes; declaration and campaign consume
        gql = GraphQLClient(f"{platform.gateway_url()}/graphql")
        reference.import_reference(rpc, reference.DEMO_DIR)
        assert eventually(lambda: "errors" not in gql(READ_SETTINGS, {"code": AMSTERDAM}),
                          timeout=30)
        reach = rpc.campaign.support_point_reach([AMSTERDAM])
        rpc.registry.register_support_point({
            "name": "Steunpunt De Pijp", "kind": "LOCAL", "municipalityCode": AMSTERDAM,
            "address": {"street": "Ferdinand Bolstraat", "houseNumber": "1",
                        "postcode": "1072 LA", "city": "Amsterdam"},
            "areas": ["INFORMATION"]}, {"sub": "test", "role": "admin"})
        assert eventually(lambda: rpc.campaign.support_point_reach([AMSTERDAM]) == reach + 1,
                          timeout=30)
        # the gateway calls declaration, which publishes to travel_costs
        requested = request(gql, request_input(AMSTERDAM))
        issued = decide(gql, requested)
        assert issued["status"] == "ISSUED"
        assert eventually(lambda: rpc.travel_costs.declaration_status(issued["reference"]),
                          timeout=30)
    assert list_dead_letters({"AMQP_URI": users["operator"]}) == []
    for process in PROCESSES:
        refused = [line for line in log_lines(platform, process.name)
                   if "ACCESS_REFUSED" in str(line)]
        assert refused == [], process.name


@pytest.mark.parametrize("user, queue", [
    ("campaign", "rpc-declaration"),
    ("gateway", "evt-declaration-declaration.issued--travel_costs.on_declaration_changed"),
    ("keda", "rpc-registry"),
])
def test_a_process_cannot_consume_another_ones_queue(restricted_platform, users, user, queue):
    with Connection(users[user]) as connection:
        channel = connection.channel()
        with pytest.raises(AccessRefused):
            channel.basic_consume(queue, callback=lambda message: None)


def test_a_process_cannot_publish_another_ones_events(restricted_platform, users):
    with Connection(users["campaign"], transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        with pytest.raises(AccessRefused):
            producer.publish({"forged": True}, exchange="declaration.events",
                             routing_key="declaration.issued", retry=False)

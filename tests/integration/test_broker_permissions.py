"""The RabbitMQ users of deploy/k8s on the real broker: the whole platform runs with each
process's own user and the permissions its Permission resource grants, the queue topology is
declared with the operator's user, calls and events still cross between every process, and
a process cannot touch another's queues.

And the attacks a compromised process tried, refused with nothing changed: a forged
``declaration.revoked`` sent to the fund's queue (by the default exchange, by the events
exchange, and, from a broker user that is not the declaration service's, straight into it),
and RPC calls that name a caregiver's BSN as their actor (unsigned, signed with a key that is
not the gateway's, and a captured assertion replayed to another method or a second time)."""
import time
import uuid
from datetime import datetime, timezone

import pytest
from amqp.exceptions import AccessRefused
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kombu import Connection

from common.calls import CallSigner, EnvelopedClusterRpcProxy
from common.consumers import ATTEMPTS_HEADER, ORIGIN_HEADER
from common.dead_letters import list_dead_letters, replay_dead_letters
from common.errors import Forbidden, Unauthenticated
from common.events import new_envelope, subscription
from common.publishing import CORRELATION_HEADER, publish
from common.topology import DEAD_LETTER_QUEUE, dead_letter_exchange, declare_topology
from ops import reference
from ops.broker import create_user, create_vhost, delete_user, delete_vhost
from ops.platform import PROCESSES
from tests.conftest import running_platform
from tests.integration.test_declaration import READ_SETTINGS, decide, request, request_input
from tests.support import (Caregiver, GraphQLClient, Handled, eventually, fund_knows_areas,
                           log_lines, random_bsn, token)
from tests.unit.test_k8s import k8s_name, objects

AMSTERDAM = "GM0363"


@pytest.fixture(scope="module")
def users(amqp_uri):
    """Every user of deploy/k8s/base/rabbitmq-users.yaml in a throwaway virtual host."""
    base = amqp_uri.rsplit("/", 1)[0] + "/"
    vhost = f"mantelzorg-users-{uuid.uuid4().hex[:8]}"
    uris, made = {"administrator": create_vhost(base, vhost)}, []
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
        registered = Handled(platform, "campaign", "support_point.registered")
        issued = Handled(platform, "travel_costs", "declaration.issued")
        rpc.registry.register_support_point({
            "name": "Steunpunt De Pijp", "kind": "LOCAL", "municipalityCode": AMSTERDAM,
            "address": {"street": "Ferdinand Bolstraat", "houseNumber": "1",
                        "postcode": "1072 LA", "city": "Amsterdam"},
            "areas": ["INFORMATION"]}, {"sub": "test", "role": "admin"})
        assert registered.grown_by(1, timeout=30)
        # the gateway calls declaration, which publishes to travel_costs
        requested = request(gql, request_input(AMSTERDAM))
        assert decide(gql, requested)["status"] == "ISSUED"
        assert issued.grown_by(1, timeout=30)
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


# --- the attacks -----------------------------------------------------------------------------

FUND_QUEUE = subscription("declaration.revoked", "travel_costs", "on_declaration_changed").queue
CLAIM_STATUS = "query($id: ID!) { travelClaim(id: $id) { status } }"


@pytest.fixture(scope="module")
def claimant(restricted_platform):
    """A caregiver with an issued declaration and a submitted travel claim."""
    gql = GraphQLClient(f"{restricted_platform.gateway_url()}/graphql")
    with restricted_platform.rpc(timeout=60) as rpc:
        reference.import_reference(rpc, reference.DEMO_DIR)
        assert fund_knows_areas(rpc, reference.DEMO_DIR / "pc4.csv")
    caregiver = Caregiver(gql)
    assert eventually(lambda: "errors" not in caregiver.claim(operation=PREVIEW), timeout=30)
    claim = caregiver.submitted()
    return gql, caregiver, claim


PREVIEW = """query($input: TravelClaimInput!) {
  travelClaimPreview(input: $input) { amountEuros } }"""


def forged_revocation(reference_):
    """What the attacker sent: the caregiver's declaration revoked, dated 2099."""
    return new_envelope("declaration.revoked", {
        "id": "0" * 24, "reference": reference_, "municipality_code": AMSTERDAM,
        "status": "REVOKED", "purposes": ["TRAVEL_COST_FUND"], "valid_until": "2099-12-31"},
        "forged", "declaration", datetime(2099, 1, 1, tzinfo=timezone.utc)).model_dump(mode="json")


def claim_status(gql, caregiver, claim):
    return gql(CLAIM_STATUS, {"id": claim["id"]}, token=caregiver.token)["data"]["travelClaim"]


@pytest.mark.parametrize("exchange", ["", "declaration.events", "travel_costs.retries"])
def test_a_forged_event_cannot_reach_another_services_queue(restricted_platform, users,
                                                           claimant, exchange):
    gql, caregiver, claim = claimant
    with Connection(users["campaign"], transport_options={"confirm_publish": True}) as connection:
        with pytest.raises(AccessRefused):
            connection.Producer().publish(forged_revocation(caregiver.reference),
                                          exchange=exchange, routing_key=FUND_QUEUE,
                                          retry=False)
    with Connection(users["campaign"]) as connection:   # nor bind it to its own exchange
        with pytest.raises(AccessRefused):
            connection.channel().queue_bind(FUND_QUEUE, "campaign.retries", FUND_QUEUE)
    time.sleep(1)
    assert claim_status(gql, caregiver, claim) == {"status": "SUBMITTED"}


def test_an_event_not_from_its_owner_is_refused_and_never_replayed(restricted_platform, users,
                                                                   claimant):
    """A broker user that may write to the declaration's exchange but is not the declaration
    service's (here the virtual host's administrator) reaches the fund's queue: the fund
    sees by the validated user_id that the event is not its owner's, and parks it."""
    gql, caregiver, claim = claimant
    with Connection(users["administrator"]) as connection:
        publish(connection, forged_revocation(caregiver.reference), "declaration.events",
                "declaration.revoked", {CORRELATION_HEADER: "forged"})
    operator = {"AMQP_URI": users["operator"]}
    assert eventually(lambda: [p for p in list_dead_letters(operator)
                               if p["queue"] == FUND_QUEUE], timeout=30)
    assert claim_status(gql, caregiver, claim) == {"status": "SUBMITTED"}
    assert replay_dead_letters(operator) == []
    time.sleep(1)
    assert claim_status(gql, caregiver, claim) == {"status": "SUBMITTED"}
    assert any("event.publisher_refused" in str(line)
               for line in log_lines(restricted_platform, "travel_costs"))
    parked = [p for p in list_dead_letters(operator) if p["queue"] == FUND_QUEUE]
    assert len(parked) == 1
    clear_dead_letters(users)


def test_a_dead_letter_forged_by_another_process_is_never_replayed(restricted_platform, users,
                                                                    claimant):
    """Every consumer may park events; a process that parks a forged one naming the fund's
    queue does not get it replayed there: only what the queue's own consumer parked is."""
    gql, caregiver, claim = claimant
    with Connection(users["campaign"]) as connection:
        publish(connection, forged_revocation(caregiver.reference), dead_letter_exchange(), "",
                {ORIGIN_HEADER: FUND_QUEUE, ATTEMPTS_HEADER: 14, CORRELATION_HEADER: "forged"})
    operator = {"AMQP_URI": users["operator"]}
    assert eventually(lambda: [p for p in list_dead_letters(operator)
                               if p["queue"] == FUND_QUEUE], timeout=30)
    assert replay_dead_letters(operator) == []
    time.sleep(1)
    assert claim_status(gql, caregiver, claim) == {"status": "SUBMITTED"}
    clear_dead_letters(users)


def clear_dead_letters(users):
    """Empties the dead letters, for the tests after."""
    with Connection(users["operator"]) as connection:
        channel = connection.channel()
        while (message := channel.basic_get(DEAD_LETTER_QUEUE)) is not None:
            channel.basic_ack(message.delivery_tag)


def as_campaign(users, envelope, with_user_id=True):
    """An RPC client with the campaign process's broker user and reply queues, sending what
    ``envelope`` gives in its headers."""
    class CampaignContainer(EnvelopedClusterRpcProxy.ServiceContainer):
        service_name = "campaign"

    class AsCampaign(EnvelopedClusterRpcProxy):
        ServiceContainer = CampaignContainer

    uri = users["campaign"]
    options = {"user_id": Connection(uri).userid} if with_user_id else {}
    return AsCampaign({"AMQP_URI": uri}, envelope, timeout=20, options=options)


def victim_actor(bsn):
    return {"sub": "someone", "role": "caregiver", "bsn": bsn, "municipality": None,
            "support_point": None}


def nothing(*_args):
    return {}


@pytest.mark.parametrize("with_user_id", [False, True])
def test_an_unsigned_call_cannot_name_its_actor(restricted_platform, users, with_user_id):
    gql = GraphQLClient(f"{restricted_platform.gateway_url()}/graphql")
    bsn = random_bsn()
    with as_campaign(users, nothing, with_user_id) as rpc:
        with pytest.raises((Unauthenticated, Forbidden)):
            rpc.declaration.request_declaration(request_input(AMSTERDAM, bsn=bsn),
                                                victim_actor(bsn))
        with pytest.raises((Unauthenticated, Forbidden)):
            rpc.declaration.my_declarations(victim_actor(bsn))
    mine = gql("{ myDeclarations { id } }", token=token("caregiver", "v", bsn=bsn))
    assert mine == {"data": {"myDeclarations": []}}


def test_a_call_signed_with_another_key_is_refused(restricted_platform, users):
    forger = CallSigner("gateway", Ed25519PrivateKey.generate())
    bsn = random_bsn()

    def envelope(service, method, *_rest):
        return forger.headers(service, method, 10, actor=victim_actor(bsn))

    with as_campaign(users, envelope) as rpc:
        with pytest.raises(Unauthenticated):
            rpc.declaration.request_declaration(request_input(AMSTERDAM, bsn=bsn), None)
        with pytest.raises(Unauthenticated):
            rpc.declaration.my_declarations(None)


def test_a_captured_assertion_is_refused_for_another_method_and_a_second_time(
        restricted_platform, users):
    """An assertion the gateway really signed (with the development key of the platform's
    data folder), taken from a call of ``my_declarations``."""
    gateway = CallSigner.load("gateway", {"DATA_DIR": restricted_platform.environ[
        "MANTELZORG_DATA_DIR"]}, restricted_platform.environ)
    bsn = random_bsn()
    captured = gateway.headers("declaration", "my_declarations", 10, actor=victim_actor(bsn))

    with as_campaign(users, lambda *_: captured) as rpc:
        with pytest.raises(Unauthenticated):
            rpc.declaration.request_declaration(request_input(AMSTERDAM, bsn=bsn), None)
        assert rpc.declaration.my_declarations(None) == []   # the call it was made for
        with pytest.raises(Unauthenticated):
            rpc.declaration.my_declarations(None)            # once

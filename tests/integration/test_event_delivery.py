"""No event is lost for want of a queue, a failing event is retried with growing delays and
then parked while the next ones flow, and consumers read what they know of a newer event."""
import time
import uuid
from datetime import date, datetime, timedelta

import pytest
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from common import clock, events
from common.events import Envelope, Subscription, new_envelope
from common.consumers import handles_event
from common.dead_letters import list_dead_letters
from common.outbox import Outbox
from common.publishing import CORRELATION_HEADER, publish
from common.topology import declare_topology, subscription_queue, subscription_queues
from ops import cli
from ops.platform import process_named
from tests.integration.test_declaration import decide, request, request_input, staff
from tests.support import Caregiver, Handled, drain, eventually, operator_of

EVENT = "support_point.updated"
HISTORY = """query($reference: String!) {
  declaration(reference: $reference) { history { action at } } }"""


def point(name, **extra):
    return {"id": str(uuid.uuid4()), "name": name, "kind": "LOCAL", "municipality_code": "GM0363",
            "serves_municipality_codes": ["GM0363"], "areas": ["INFORMATION"], "active": True,
            "version": 2, **extra}


class Probe:
    """Records every attempt; "poison" always fails, "flaky" fails its first two attempts."""
    attempts = []
    handled = []


class ProbeService:
    name = "delivery_probe"

    @handles_event(EVENT)
    def on_changed(self, event):
        payload = event.parsed_payload()
        Probe.attempts.append((payload.name, time.monotonic()))
        tries = sum(1 for name, _ in Probe.attempts if name == payload.name)
        if payload.name == "poison" or (payload.name == "flaky" and tries < 3):
            raise RuntimeError(f"{payload.name} fails")
        Probe.handled.append((payload.name, time.monotonic()))


PROBE = Subscription(EVENT, ProbeService.name, "on_changed")


@pytest.fixture
def probe_subscribed(monkeypatch):
    monkeypatch.setattr(events, "SUBSCRIPTIONS", events.SUBSCRIPTIONS + (PROBE,))
    Probe.attempts, Probe.handled = [], []


@pytest.fixture
def start_probe(container_factory, probe_subscribed):
    def start(amqp_uri, **config):
        container = container_factory(ProbeService, {"AMQP_URI": amqp_uri, **config})
        container.start()
        return container
    return start


@pytest.fixture
def store(outbox_store):
    return outbox_store


def record(store, outbox, payload):
    return store.in_transaction(lambda session: outbox.add(session, EVENT, payload, "corr"))


def queued(amqp_uri, entry):
    """The bodies waiting in a subscription's queue (taken out)."""
    with Connection(amqp_uri) as connection:
        return drain(subscription_queue(entry)(connection.channel()))


def handled_names():
    return [name for name, _ in Probe.handled]


def test_an_event_no_queue_takes_stays_in_the_outbox_until_one_does(store, empty_amqp_uri,
                                                                     probe_subscribed, monkeypatch):
    outbox = Outbox(store, "registry", {"AMQP_URI": empty_amqp_uri})
    envelope = record(store, outbox, point("early"))
    # As if the consumers' queues could not be declared: the broker returns the event.
    monkeypatch.setattr(outbox, "ensure_consumer_queues", lambda: None)
    assert outbox.relay() == 0
    assert outbox.pending() == 1

    monkeypatch.undo()
    monkeypatch.setattr(events, "SUBSCRIPTIONS", events.SUBSCRIPTIONS + (PROBE,))
    store["outbox"].update_one({}, {"$set": {"claimed_until": clock.now() - timedelta(seconds=1)}})
    assert outbox.relay() == 1     # declares the consumers' queues, then they take it
    assert outbox.pending() == 0
    campaign = events.subscription(EVENT, "campaign", "on_support_point_changed")
    for entry in (PROBE, campaign):
        assert [body["event_id"] for body in queued(empty_amqp_uri, entry)] == [
            str(envelope.event_id)]


def test_an_event_published_before_its_consumer_first_started_reaches_it(store, empty_amqp_uri,
                                                                         start_probe):
    outbox = Outbox(store, "registry", {"AMQP_URI": empty_amqp_uri})
    record(store, outbox, point("before the consumer"))
    assert outbox.relay() == 1
    start_probe(empty_amqp_uri)
    assert eventually(lambda: handled_names() == ["before the consumer"])


def test_a_consumer_ignores_fields_it_does_not_know(empty_amqp_uri, start_probe):
    start_probe(empty_amqp_uri)
    envelope = new_envelope(EVENT, point("newer publisher"), "corr", "registry")
    body = envelope.model_dump(mode="json")
    body["payload"]["opening_hours"] = "9-17"        # a field added by a newer publisher
    body["schema_hint"] = "a newer envelope field"
    with Connection(empty_amqp_uri) as connection:
        publish(connection, body, get_event_exchange("registry", {}), EVENT,
                {CORRELATION_HEADER: "corr"})
    assert eventually(lambda: handled_names() == ["newer publisher"])


def test_a_poison_event_is_parked_after_growing_delays_while_the_next_ones_flow(
        empty_amqp_uri, start_probe):
    config = {"AMQP_URI": empty_amqp_uri}
    start_probe(empty_amqp_uri, EVENT_MAX_ATTEMPTS=4, EVENT_RETRY_DELAY_MS=200,
                EVENT_RETRY_MAX_DELAY_MS=400)
    names = ["poison", "flaky", "next 1", "next 2", "next 3"]
    with Connection(empty_amqp_uri, transport_options={"confirm_publish": True}) as connection:
        for name in names:
            envelope = new_envelope(EVENT, point(name), "corr", "registry")
            publish(connection, envelope.model_dump(mode="json"),
                    get_event_exchange("registry", {}), EVENT, {CORRELATION_HEADER: "corr"})
    started = time.monotonic()

    parked = eventually(lambda: [d for d in list_dead_letters(config) if d["attempts"] == 4],
                        timeout=20)
    assert len(parked) == 1 and "RuntimeError: poison fails" in parked[0]["error"]
    assert parked[0]["queue"] == PROBE.queue
    parked_after = time.monotonic() - started

    # The next events did not wait for the poison one: all handled before it was parked.
    assert sorted(handled_names()) == sorted(names[1:])
    assert all(at - started < parked_after for name, at in Probe.handled if name != "flaky")
    # Four attempts, the waits between them growing: 200 ms, 400 ms, then at most 400 ms.
    poison = [at for name, at in Probe.attempts if name == "poison"]
    assert len(poison) == 4
    waits = [later - earlier for earlier, later in zip(poison, poison[1:])]
    assert waits[0] >= 0.18 and waits[1] >= 0.36 and waits[2] >= 0.36, waits
    # The flaky one succeeded on its third attempt, and is not parked.
    assert [name for name, _ in Probe.attempts].count("flaky") == 3


# --- on the running platform ---------------------------------------------------------------

def test_a_consumer_down_for_a_while_catches_up(platform, rpc, municipalities):
    seat = "GM0153"
    platform.stop_process(process_named("campaign"))
    for number in range(3):
        rpc.registry.register_support_point({
            "name": f"Steunpunt terwijl campagne stil lag {number}", "kind": "LOCAL",
            "municipalityCode": seat, "areas": ["INFORMATION"],
            "address": {"street": "Markt", "houseNumber": str(number + 1),
                        "postcode": "7511 AA", "city": "Enschede"}},
            {"sub": "test", "role": "admin"})
    platform.start_process(process_named("campaign"))
    platform.wait_until_healthy(names=["campaign"])
    # the process started again counts from zero: the three waited in its queue
    assert eventually(lambda: platform.events_handled("campaign", "support_point.registered")
                      == 3)


# The declaration events the tests below send to the fund themselves, as the declaration
# service would: an issue again, or a revocation the declaration service has not made. The
# declaration service still says issued, so what a claim's preview says of an ended
# declaration is the fund's own copy of it.
DECLARATION_EVENT = {"ISSUED": "declaration.issued", "REVOKED": "declaration.revoked"}
REVOKED_HOLD = "the declaration was revoked"


def _declaration_event(status, caregiver, occurred_at):
    return new_envelope(DECLARATION_EVENT[status], {
        "id": caregiver.declaration["id"], "reference": caregiver.reference, "status": status,
        "municipality_code": "GM0363", "purposes": ["TRAVEL_COST_FUND"],
        "valid_from": date.today().isoformat(),
        "valid_until": (date.today() + timedelta(days=365)).isoformat()},
        "corr-order", "declaration", occurred_at=occurred_at)


def _send_to_the_fund(amqp_uri, *envelopes):
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        for envelope in envelopes:
            publish(connection, envelope.model_dump(mode="json"),
                    get_event_exchange("declaration", {}), envelope.type,
                    {CORRELATION_HEADER: envelope.correlation_id})


def _fund_holds_as_revoked(caregiver):
    return REVOKED_HOLD in (caregiver.previewed()["reason"] or "")


def test_a_fund_down_for_a_while_applies_an_issue_and_its_revocation_in_that_order(
        platform, gql, pc4_areas, amqp_uri):
    fund = process_named("travel_costs")
    platform.stop_process(fund)
    caregiver = Caregiver(gql)    # its declaration.issued waits in the fund's queue
    _send_to_the_fund(amqp_uri, _declaration_event("REVOKED", caregiver, clock.now()))
    platform.start_process(fund)
    platform.wait_until_healthy(names=["travel_costs"])
    # Both events waited in the fund's queue and are handled now (the process counts from
    # zero); the revocation, the later of the two, is what holds, whichever of them its
    # workers finish first.
    assert eventually(lambda: platform.events_handled("travel_costs", "declaration.issued")
                      == platform.events_handled("travel_costs", "declaration.revoked") == 1,
                      timeout=30)
    assert _fund_holds_as_revoked(caregiver)


def test_a_revocation_after_its_issue_stays_applied_whatever_order_they_arrive_in(
        platform, gql, pc4_areas, amqp_uri):
    issued = Handled(platform, "travel_costs", "declaration.issued")
    in_order, reversed_order = Caregiver(gql), Caregiver(gql)
    now = clock.now()
    _send_to_the_fund(
        amqp_uri,
        _declaration_event("ISSUED", in_order, now + timedelta(minutes=1)),
        _declaration_event("REVOKED", in_order, now + timedelta(minutes=2)),
        # the revocation arrives first, as when the issue's delivery was retried
        _declaration_event("REVOKED", reversed_order, now + timedelta(minutes=2)),
        _declaration_event("ISSUED", reversed_order, now + timedelta(minutes=1)))
    assert issued.grown_by(4)     # both issues, and both sent again
    for caregiver in (in_order, reversed_order):
        assert eventually(lambda: _fund_holds_as_revoked(caregiver)), caregiver.reference


@pytest.fixture
def newcomer(platform):
    """The queue of a consumer of declaration.issued that subscribes only now."""
    entry = Subscription("declaration.issued", "newcomer", "on_declaration_issued")
    config = {"AMQP_URI": platform.environ["AMQP_URI"]}
    declare_topology(config, [entry])
    yield entry.queue
    with Connection(config["AMQP_URI"]) as connection:
        for queue in subscription_queues(entry, config):
            queue(connection.channel()).delete()


def test_republished_state_keeps_the_time_of_its_last_change(platform, gql, municipalities,
                                                              newcomer, monkeypatch, capsys):
    issued = decide(gql, request(gql, request_input("GM0363")))
    operator_of(platform, monkeypatch)
    assert cli.main(["republish", "declaration.issued", "--to", newcomer]) == 0
    with Connection(platform.environ["AMQP_URI"]) as connection:
        received = [Envelope.received(body) for body in
                    drain(Queue(newcomer)(connection.channel()))]
    sent = [e for e in received if e.correlation_id.startswith("republish-")
            and e.payload["reference"] == issued["reference"]]
    assert len(sent) == 1
    # The issue's time, not the time it was sent: a consumer ordering by event time never
    # takes it for newer than a revocation made while the command ran.
    history = gql(HISTORY, {"reference": issued["reference"]},
                  token=staff())["data"]["declaration"]["history"]
    issue = next(entry for entry in history if entry["action"] == "issue")
    assert sent[0].occurred_at == datetime.fromisoformat(issue["at"])


def test_republishing_to_a_queue_that_does_not_exist_sends_nothing(platform, monkeypatch,
                                                                   capsys):
    operator_of(platform, monkeypatch)
    missing = "evt-declaration-declaration.issued--nobody.on_declaration_issued"
    assert cli.main(["republish", "declaration.issued", "--to", missing]) == 2
    assert "does not exist" in capsys.readouterr().err

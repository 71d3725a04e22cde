"""The transactional outbox: an event written with its change is published even when the
process that wrote it died before publishing."""
from datetime import datetime, timedelta

import pytest
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from common.messaging import Outbox, StateSource, record_current_state
from common.storage import utcnow
from tests.support import drain

PAYLOAD = {"code": "GM0363", "name": "Amsterdam", "province": "Noord-Holland", "population": 1}


@pytest.fixture
def store(outbox_store):
    return outbox_store


@pytest.fixture
def listener(amqp_uri):
    """A queue bound to the registry's exchange, as a consumer's would be."""
    with Connection(amqp_uri) as connection:
        queue = Queue("outbox-probe", exchange=get_event_exchange("registry", {}),
                      routing_key="municipality.imported", auto_delete=False)(connection.channel())
        queue.declare()
        queue.purge()
        yield queue
        queue.delete()


def test_an_event_left_behind_by_a_crash_is_published_by_the_next_relay(store, listener, amqp_uri):
    config = {"AMQP_URI": amqp_uri}
    crashed = Outbox(store, "registry", config)

    def change(session):
        store["municipalities"].insert_one({"_id": "GM0363"}, session=session)
        return crashed.add(session, "municipality.imported", PAYLOAD, "corr-outbox")

    envelope = store.in_transaction(change)
    assert drain(listener) == []          # the writer died before its relay ran

    restarted = Outbox(store, "registry", config)
    assert restarted.relay() == 1
    bodies = drain(listener)
    assert [b["event_id"] for b in bodies] == [str(envelope.event_id)]
    assert bodies[0]["correlation_id"] == "corr-outbox"
    assert restarted.pending() == 0
    assert restarted.relay() == 0             # sent once, not again


def test_a_rolled_back_change_publishes_nothing(store, listener, amqp_uri):
    outbox = Outbox(store, "registry", {"AMQP_URI": amqp_uri})

    def change(session):
        outbox.add(session, "municipality.imported", PAYLOAD, "corr")
        raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        store.in_transaction(change)
    assert outbox.relay() == 0 and drain(listener) == []


def test_an_event_claimed_by_a_relay_that_died_is_published_after_its_lease(store, listener, amqp_uri):
    outbox = Outbox(store, "registry", {"AMQP_URI": amqp_uri})
    envelope = store.in_transaction(
        lambda session: outbox.add(session, "municipality.imported", PAYLOAD, "corr"))
    store["outbox"].update_one({"_id": str(envelope.event_id)},
                               {"$set": {"claimed_until": utcnow() + timedelta(seconds=30)}})
    assert outbox.relay() == 0                # another relay holds it
    store["outbox"].update_one({"_id": str(envelope.event_id)},
                               {"$set": {"claimed_until": utcnow() - timedelta(seconds=1)}})
    assert outbox.relay() == 1
    assert [b["event_id"] for b in drain(listener)] == [str(envelope.event_id)]


def test_the_current_state_is_recorded_again_in_batches_with_the_time_of_each_last_change(
        store, amqp_uri):
    outbox = Outbox(store, "registry", {"AMQP_URI": amqp_uri})
    changed = (utcnow() - timedelta(days=3)).replace(microsecond=0)   # as the store keeps it
    store["municipalities"].insert_many(
        [{"_id": f"GM00{n:02d}", "name": f"Gemeente {n}", "changed": changed} for n in range(5)])

    def municipality_event(document):
        return "municipality.imported", {"code": document["_id"], "name": document["name"],
                                         "province": "Utrecht"}, document["changed"]

    class Recording:   # what a worker's outbox offers: record in the caller's transaction
        def record_many(self, session, events):
            return outbox.add_many(session, events, "corr-republish")

    sources = [StateSource("municipalities", "municipalities", municipality_event),
               StateSource("nothing yet", "support_points", municipality_event)]
    batches, cursor = [], None
    while True:
        batch = record_current_state(store, Recording(), sources, cursor, limit=2)
        batches.append((batch["source"], batch["recorded"]))
        cursor = batch["next"]
        if cursor is None:
            break
    assert batches == [("municipalities", 2), ("municipalities", 2), ("municipalities", 1),
                       ("nothing yet", 0)]
    recorded = [entry["envelope"] for entry in store["outbox"].find({})]
    assert sorted(e["payload"]["code"] for e in recorded) == [f"GM00{n:02d}" for n in range(5)]
    assert {datetime.fromisoformat(e["occurred_at"]) for e in recorded} == {changed}

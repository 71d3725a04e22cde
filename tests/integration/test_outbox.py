"""The transactional outbox: an event written with its change is published even when the
process that wrote it died before publishing."""
from datetime import timedelta

import pytest
from kombu import Connection, Queue
from nameko.standalone.events import get_event_exchange

from common import clock
from common.outbox import Outbox
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
                               {"$set": {"claimed_until": clock.now() + timedelta(seconds=30)}})
    assert outbox.relay() == 0                # another relay holds it
    store["outbox"].update_one({"_id": str(envelope.event_id)},
                               {"$set": {"claimed_until": clock.now() - timedelta(seconds=1)}})
    assert outbox.relay() == 1
    assert [b["event_id"] for b in drain(listener)] == [str(envelope.event_id)]



def _record_due(store, outbox):
    """An event its worker did not publish, now due to the relay holding the lease."""
    envelope = store.in_transaction(
        lambda session: outbox.add(session, "municipality.imported", PAYLOAD, "corr"))
    store["outbox"].update_one({"_id": str(envelope.event_id)},
                               {"$set": {"claimed_until": clock.now() - timedelta(seconds=1)}})
    return envelope


def test_only_the_relay_holding_the_lease_publishes_what_is_due(store, listener, amqp_uri):
    holder = Outbox(store, "registry", {"AMQP_URI": amqp_uri})
    other = Outbox(store, "registry", {"AMQP_URI": amqp_uri})
    assert holder.relay() == 0                 # takes the lease (nothing waits yet)
    envelope = _record_due(store, other)
    assert other.relay() == 0                  # another replica holds the lease
    assert holder.relay() == 1
    assert [b["event_id"] for b in drain(listener)] == [str(envelope.event_id)]
    store["outbox_relay"].update_one({}, {"$set": {"until": clock.now() - timedelta(seconds=1)}})
    _record_due(store, other)
    assert other.relay() == 1                  # the holder's lease ran out: taken over


def test_a_workers_relay_leaves_an_event_that_is_due_to_the_lease_holder(store, listener,
                                                                       amqp_uri):
    outbox = Outbox(store, "registry", {"AMQP_URI": amqp_uri})
    envelope = _record_due(store, outbox)
    assert outbox.relay_own([str(envelope.event_id)]) == 0
    assert drain(listener) == []
    assert outbox.relay() == 1
    assert [b["event_id"] for b in drain(listener)] == [str(envelope.event_id)]


def test_a_relay_that_found_nothing_for_long_still_publishes(store, listener, amqp_uri):
    outbox = Outbox(store, "registry", {"AMQP_URI": amqp_uri})
    for _ in range(60):                        # a minute of its timer with nothing to do
        assert outbox.relay() == 0
    envelope = _record_due(store, outbox)
    assert outbox.relay() == 1
    assert [b["event_id"] for b in drain(listener)] == [str(envelope.event_id)]

"""The event publisher's confirms (common/publishing.py), against a channel that confirms or
nacks as told: what counts as published, and when the publisher starts on a fresh
connection."""
import uuid

from common.publishing import EventPublisher


class ConfirmingChannel:
    """Confirms every publish when asked to wait, nacking the event ids in ``nacked``."""

    def __init__(self, publisher, nacked=()):
        self.publisher = publisher
        self.nacked = set(nacked)

    def wait(self, _methods, timeout):
        for tag, event_id in list(self.publisher.unconfirmed.items()):
            if event_id in self.nacked:
                self.publisher._on_nack(tag, False)
            else:
                self.publisher._on_ack(tag, False)


class Producer:
    def publish(self, *_args, **_kwargs):
        pass


def publisher_on(nacked=()):
    """A publisher whose channels nack ``nacked``; the list of its connections dropped."""
    publisher = EventPublisher("travel_costs", {"AMQP_URI": "memory://"})
    dropped = []

    def open_channel():
        if publisher.producer is None:
            publisher.channel, publisher.producer = ConfirmingChannel(publisher, nacked), Producer()
            publisher.next_tag = 0
        return publisher.producer

    publisher._open = open_channel
    publisher.connection.collect = lambda: dropped.append(publisher.connection)
    return publisher, dropped


def envelope():
    return {"event_id": str(uuid.uuid4()), "type": "travel_claim.submitted",
            "correlation_id": "corr"}


def test_a_confirmed_batch_is_published_on_the_same_connection():
    publisher, dropped = publisher_on()
    batch = [envelope(), envelope()]
    assert publisher.publish_many(batch) == {e["event_id"] for e in batch}
    assert publisher.publish_many([envelope()]) and dropped == []


def test_a_batch_nacked_in_part_publishes_the_rest_and_the_next_starts_on_a_fresh_connection():
    confirmed, nacked = envelope(), envelope()
    publisher, dropped = publisher_on(nacked=[nacked["event_id"]])
    assert publisher.publish_many([confirmed, nacked]) == {confirmed["event_id"]}
    assert publisher.refused == {nacked["event_id"]: "nacked"}
    assert len(dropped) == 1 and publisher.producer is None

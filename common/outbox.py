"""The transactional outbox: events written in the same transaction as the change they
announce, and the relay that publishes them (right after the worker, and from a timer) and
removes them once a queue has taken them."""
import time
from datetime import timedelta
from weakref import WeakKeyDictionary

from kombu.exceptions import ChannelError
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING

from common import clock, metrics
from common.events import new_envelope, subscriptions_from
from common.logging import CORRELATION_KEY, get_logger
from common.publishing import EventPublisher
from common.storage import Storage
from common.topology import broker, queue_exists, subscription_queue

OUTBOX = "outbox"
CLAIM_SECONDS = 15
# How often the relay measures its outbox for the metrics. The embedded store counts a
# collection by reading it, which with a large payout's events waiting cost more than
# relaying them; an alert looks at minutes, not seconds.
MEASURE_SECONDS = 5.0
# An event no queue took stays in the outbox and is tried again after this long.
UNROUTABLE_RETRY_SECONDS = 5

log = get_logger()


def ensure_outbox_indexes(db):
    db[OUTBOX].create_index([("created_at", ASCENDING)])


class Outbox:
    """Events written in the same transaction as the change they announce. An entry stays
    in the collection until the broker has confirmed that a queue took it, then it is
    removed: the outbox only ever holds what is still to be published, so relaying stays
    cheap."""

    def __init__(self, store, service, config):
        self.collection = store[OUTBOX]
        self.service = service
        self.config = config
        self.publisher = EventPublisher(service, config)
        self.measured_at = None

    def add(self, session, type_name, payload, correlation_id):
        return self.add_many(session, [(type_name, payload)], correlation_id)[0]

    def add_many(self, session, events, correlation_id):
        """Writes ``events`` ((type, payload) pairs) in one insert: a change of many
        documents (an allocation round) announces each without a round trip apiece."""
        now = clock.now()
        envelopes = [new_envelope(type_name, payload, correlation_id, self.service)
                     for type_name, payload in events]
        if envelopes:
            self.collection.insert_many([{
                "_id": str(envelope.event_id), "created_at": now, "claimed_until": now,
                "envelope": envelope.model_dump(mode="json"),
            } for envelope in envelopes], session=session)
        return envelopes

    def ensure_consumer_queues(self):
        """Declares the queues this service's events go to (every subscription the catalogue
        lists) that do not exist yet: the publisher does not rely on anyone else having
        declared them. Where its broker user may not (each process's own user in Kubernetes,
        where the declare-queues Job declares them), an event no queue takes stays in the
        outbox until they exist."""
        with broker(self.config) as connection:
            missing = [entry for entry in subscriptions_from(self.service)
                       if not queue_exists(connection, entry.queue)]
            if not missing:
                return
            channel = connection.channel()
            try:
                for entry in missing:
                    subscription_queue(entry, self.config)(channel).declare()
            except ChannelError:
                log.warning("outbox.consumer_queues_missing",
                            queues=[entry.queue for entry in missing])

    def _claim(self, entry_id, now):
        """Only one relay (of this or another replica) holds an entry at a time; a relay
        that dies lets go when its claim runs out."""
        # A conditional update_one, then a read: the embedded store answers
        # find_one_and_update by scanning the collection, which made relaying the events of
        # a large payout quadratic; update_one and find_one go by the _id index.
        claimed = self.collection.update_one(
            {"_id": entry_id, "claimed_until": {"$lte": now}},
            {"$set": {"claimed_until": now + timedelta(seconds=CLAIM_SECONDS)}})
        return self.collection.find_one({"_id": entry_id}) if claimed.modified_count else None

    def relay(self, limit=500):
        """Publish pending events, oldest first, with publisher confirms, then remove them.
        A crash in between publishes an event again later; consumers drop the duplicate.
        An event that no queue took is kept and tried again later."""
        now = clock.now()
        waiting = self.collection.find({"claimed_until": {"$lte": now}}, {"_id": 1}) \
            .sort("created_at", ASCENDING).limit(limit)
        sent = sum(self._publish(candidate["_id"], now) for candidate in list(waiting))
        self._measure()
        return sent

    def relay_own(self, entry_ids):
        """Publish the events one worker just recorded. Only its own: when many workers end
        at once, each publishing every pending event would have them all compete for the
        same entries. What one cannot publish, the timer's ``relay`` does (and measures the
        outbox, every second)."""
        now = clock.now()
        return sum(self._publish(entry_id, now) for entry_id in entry_ids)

    def _publish(self, entry_id, now):
        """1 when this relay claimed, published and removed the entry, 0 when another had it
        or no queue took it (it stays, and is tried again UNROUTABLE_RETRY_SECONDS later)."""
        entry = self._claim(entry_id, now)
        if entry is None:
            return 0
        envelope = entry["envelope"]
        if not self._routed(envelope):
            self.collection.update_one({"_id": entry["_id"]}, {"$set": {
                "claimed_until": clock.now() + timedelta(seconds=UNROUTABLE_RETRY_SECONDS)}})
            metrics.EVENTS_UNROUTABLE.labels(self.service, envelope["type"]).inc()
            log.warning("outbox.event_unroutable", event_type=envelope["type"],
                        event_id=envelope["event_id"], retry_in_seconds=UNROUTABLE_RETRY_SECONDS)
            return 0
        self.collection.delete_one({"_id": entry["_id"]})
        metrics.EVENTS_PUBLISHED.labels(self.service, envelope["type"]).inc()
        return 1

    def _routed(self, envelope):
        """Publish; when no queue took it, declare the consumers' queues and try once more."""
        if self.publisher.publish(envelope):
            return True
        self.ensure_consumer_queues()
        return self.publisher.publish(envelope)

    def send_to_queue(self, type_name, events, queue, correlation_id):
        """Events into one consumer's queue alone (through the service's own exchange, by
        the queue's name), each confirmed by the broker, bypassing the outbox: a new
        consumer catches up on the current state without every other consumer receiving it
        again. ``events`` are (payload, occurred_at) pairs; occurred_at None means now.
        Returns how many the queue took."""
        sent = 0
        for payload, occurred_at in events:
            envelope = new_envelope(type_name, payload, correlation_id, self.service, occurred_at)
            sent += self.publisher.publish(envelope.model_dump(mode="json"), routing_key=queue)
        return sent

    def queue_exists(self, name):
        with broker(self.config) as connection:
            return queue_exists(connection, name)

    def _measure(self):
        if self.measured_at is not None and time.monotonic() - self.measured_at < MEASURE_SECONDS:
            return
        self.measured_at = time.monotonic()
        metrics.OUTBOX_PENDING.labels(self.service).set(self.pending())
        oldest = self.collection.find_one({}, {"created_at": 1}, sort=[("created_at", ASCENDING)])
        age = (clock.now() - oldest["created_at"]).total_seconds() if oldest else 0
        metrics.OUTBOX_LAG.labels(self.service).set(age)

    def pending(self):
        return self.collection.estimated_document_count()


class EventOutbox(DependencyProvider):
    """Injects ``record(session, type, payload)``-capable outbox bound to the worker's
    correlation id; after the worker, publishes what it recorded."""

    def __init__(self):
        self.outbox = None
        self.recorded = WeakKeyDictionary()   # worker context -> ids of what it recorded

    def _outbox(self):
        if self.outbox is None:
            storage = next(d for d in self.container.dependencies if isinstance(d, Storage))
            self.outbox = Outbox(storage.store, self.container.service_name, self.container.config)
            ensure_outbox_indexes(storage.store.db)
        return self.outbox

    def start(self):
        self._outbox().ensure_consumer_queues()

    def stop(self):
        if self.outbox:
            self.outbox.publisher.release()
        self.outbox = None

    def get_dependency(self, worker_ctx):
        self.recorded[worker_ctx] = recorded = []
        return WorkerOutbox(self._outbox(), worker_ctx, recorded)

    def worker_teardown(self, worker_ctx):
        recorded = self.recorded.pop(worker_ctx, None)
        if recorded:
            try:
                self._outbox().relay_own(recorded)
            except Exception:  # the timer relays it later
                log.warning("outbox.relay_deferred", exc_info=True)


class WorkerOutbox:
    def __init__(self, outbox, worker_ctx, recorded):
        self._outbox = outbox
        self._worker_ctx = worker_ctx
        self._recorded = recorded

    def record(self, session, type_name, payload):
        return self.record_many(session, [(type_name, payload)])[0]

    def record_many(self, session, events):
        """``events``: (type, payload) pairs, written to the outbox in one insert."""
        envelopes = self._outbox.add_many(session, events,
                                          self._worker_ctx.data.get(CORRELATION_KEY) or "none")
        # A retried transaction records again under new ids; the ids of the attempt that
        # did not commit are simply not found by the relay.
        self._recorded.extend(str(envelope.event_id) for envelope in envelopes)
        return envelopes

    def relay(self):
        return self._outbox.relay()

    def send_to_queue(self, type_name, events, queue, correlation_id):
        return self._outbox.send_to_queue(type_name, events, queue, correlation_id)

    def queue_exists(self, name):
        return self._outbox.queue_exists(name)

    def pending(self):
        return self._outbox.pending()

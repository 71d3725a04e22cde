"""Reliable events over RabbitMQ: the transactional outbox and its relay, idempotent
consumers with retries, and the dead-letter queue an operator can list and replay.

Topology (declared by ``declare_topology`` at platform start, by every consumer for its own
subscriptions, and, for the queues its events go to, by every publisher):
- ``<source>.events``: nameko's topic exchange per publishing service;
- ``evt-<source>-<type>--<consumer>.<handler>``: one durable queue per subscription;
- ``<that queue>.retry.<ms>ms``: one queue per retry delay, which holds a failed event for
  its delay (the queue's TTL, so the oldest is always the first due) and then hands it back
  to the subscription's queue;
- ``mantelzorg.dead-letters``: events that failed EVENT_MAX_ATTEMPTS times.

Retry delays start at EVENT_RETRY_DELAY_MS and double with every attempt up to
EVENT_RETRY_MAX_DELAY_MS. The defaults (14 attempts, 1 s, 2 min) keep retrying for about
14 minutes, so that a failing event outlives a 10-minute store outage before it is parked.
"""
import threading
import time
from datetime import timedelta
from weakref import WeakKeyDictionary

from kombu import Connection, Exchange, Producer, Queue
from kombu.exceptions import ChannelError
from kombu.pools import producers
from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.messaging import QueueConsumer
from nameko.standalone.events import get_event_exchange
from pydantic import ValidationError
from pymongo import ASCENDING

from common import config as settings
from common import metrics
from common import events
from common.events import (Envelope, event_type, is_consumed, new_envelope, subscription,
                           subscriptions_from)
from common.logging import CORRELATION_KEY, get_logger, redact_text
from common.storage import Storage, utcnow

DEAD_LETTER_QUEUE = "mantelzorg.dead-letters"
ATTEMPTS_HEADER = "x-mantelzorg-attempts"
ORIGIN_HEADER = "x-mantelzorg-queue"
ERROR_HEADER = "x-mantelzorg-error"
FAILED_AT_HEADER = "x-mantelzorg-failed-at"
CORRELATION_HEADER = f"nameko.{CORRELATION_KEY}"   # nameko turns it into context data
OUTBOX = "outbox"
CLAIM_SECONDS = 15
# How often the relay measures its outbox for the metrics. The embedded store counts a
# collection by reading it, which with a large payout's events waiting cost more than
# relaying them; an alert looks at minutes, not seconds.
MEASURE_SECONDS = 5.0
# An event no queue took stays in the outbox and is tried again after this long.
UNROUTABLE_RETRY_SECONDS = 5
# A publish that cannot reach the broker gives up after a few tries; the relay's timer
# tries again, so no worker waits for the broker's return.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}

DEFAULT_MAX_ATTEMPTS = 14
DEFAULT_RETRY_DELAY_MS = 1000
DEFAULT_RETRY_MAX_DELAY_MS = 120_000
EVENT_OUTCOMES = ("handled", "duplicate", "retried", "dead_lettered")

log = get_logger()


def broker(config=None):
    """A connection whose publishes wait for the broker's confirmation."""
    return Connection(settings.amqp_uri(config), ssl=settings.amqp_ssl(config),
                      transport_options={"confirm_publish": True})


def retry_delays_ms(config=None):
    """The wait before each retry of a failing event, in milliseconds: one entry per attempt
    that may follow a failure."""
    attempts = settings.int_setting(config, "EVENT_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)
    first = settings.int_setting(config, "EVENT_RETRY_DELAY_MS", DEFAULT_RETRY_DELAY_MS)
    longest = settings.int_setting(config, "EVENT_RETRY_MAX_DELAY_MS", DEFAULT_RETRY_MAX_DELAY_MS)
    return [min(first * 2 ** number, longest) for number in range(max(attempts - 1, 0))]


def _dead_letter_queue():
    return Queue(DEAD_LETTER_QUEUE, durable=True, auto_delete=False)


def retry_queue_name(entry, delay_ms):
    return f"{entry.queue}.retry.{delay_ms}ms"


def subscription_queue(entry, config=None):
    """The queue the source's exchange routes the subscription's events to."""
    return Queue(entry.queue, exchange=get_event_exchange(entry.source, config or {}),
                 routing_key=entry.event, durable=True, auto_delete=False, exclusive=False)


def subscription_queues(entry, config=None):
    """The subscription's queue and one retry queue per delay (``retry_delays_ms``): each
    holds what enters it for its delay, then hands it back to the subscription's queue."""
    retries = [Queue(retry_queue_name(entry, delay), durable=True, auto_delete=False,
                     queue_arguments={"x-message-ttl": delay, "x-dead-letter-exchange": "",
                                      "x-dead-letter-routing-key": entry.queue})
               for delay in sorted(set(retry_delays_ms(config)))]
    return (subscription_queue(entry, config), *retries)


def declare_topology(config=None, entries=None):
    """Declare the consumers' queues (every subscription's, or those of ``entries``) with
    their retry queues, and the dead-letter queue, so that no event published before its
    consumer first started is dropped by the exchange."""
    entries = events.SUBSCRIPTIONS if entries is None else entries
    with broker(config) as connection:
        channel = connection.channel()
        _dead_letter_queue()(channel).declare()
        for entry in entries:
            for queue in subscription_queues(entry, config):
                queue(channel).declare()
    return [entry.queue for entry in entries]


def queue_exists(connection, name):
    """Asks passively, which needs no permission."""
    channel = connection.channel()   # a failed passive declare closes its channel
    try:
        channel.queue_declare(name, passive=True)
    except ChannelError:
        return False
    channel.close()
    return True


def missing_queues(config=None, entries=None):
    """The queues of ``declare_topology`` that do not exist (yet): a service's restricted
    user can wait for the topology with it."""
    entries = events.SUBSCRIPTIONS if entries is None else entries
    names = [DEAD_LETTER_QUEUE] + [queue.name for entry in entries
                                   for queue in subscription_queues(entry, config)]
    with broker(config) as connection:
        return [name for name in names if not queue_exists(connection, name)]


def publish(connection, body, exchange, routing_key, headers):
    """One persistent message, confirmed by the broker."""
    with producers[connection].acquire(block=True, timeout=10) as producer:
        producer.publish(body, exchange=exchange, routing_key=routing_key, headers=headers,
                         serializer="json", delivery_mode=2, retry=True,
                         declare=[exchange] if isinstance(exchange, Exchange) and exchange.name else [])


# --- the outbox -------------------------------------------------------------------------

def ensure_outbox_indexes(db):
    db[OUTBOX].create_index([("created_at", ASCENDING)])


class EventPublisher:
    """Publishes a service's events with publisher confirms. An event of a type that has
    consumers goes out ``mandatory``: if no queue takes it, the broker returns it
    (basic.return, before its confirm) instead of dropping it, and ``publish`` says so."""

    def __init__(self, service, config):
        self.connection = broker(config)
        self.exchange = get_event_exchange(service, config)
        self.returned = set()
        self.lock = threading.Lock()   # one producer: one publish and its confirm at a time
        self.producer = None

    def _on_return(self, _error, _exchange, _routing_key, message):
        self.returned.add(message.properties.get("message_id"))

    def publish(self, envelope):
        """Returns whether the broker routed the event (an event nobody consumes counts as
        routed)."""
        event_id = envelope["event_id"]
        with self.lock:
            if self.producer is None:
                self.producer = Producer(self.connection, exchange=self.exchange,
                                         on_return=self._on_return)
            self.returned.discard(event_id)
            self.producer.publish(
                envelope, routing_key=envelope["type"], serializer="json", delivery_mode=2,
                headers={CORRELATION_HEADER: envelope["correlation_id"]}, message_id=event_id,
                mandatory=is_consumed(envelope["type"]), declare=[self.exchange],
                retry=True, retry_policy=PUBLISH_RETRY_POLICY)
            routed = event_id not in self.returned
            self.returned.discard(event_id)
            return routed

    def release(self):
        self.connection.release()


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
        now = utcnow()
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
        now = utcnow()
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
        now = utcnow()
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
                "claimed_until": utcnow() + timedelta(seconds=UNROUTABLE_RETRY_SECONDS)}})
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
        """Events straight into one consumer's queue (through the default exchange), each
        confirmed by the broker, bypassing the outbox: a new consumer catches up on the
        current state without every other consumer receiving it again. ``events`` are
        (payload, occurred_at) pairs; occurred_at None means now."""
        for payload, occurred_at in events:
            envelope = new_envelope(type_name, payload, correlation_id, self.service, occurred_at)
            publish(self.publisher.connection, envelope.model_dump(mode="json"), "", queue,
                    {CORRELATION_HEADER: correlation_id})
        return len(events)

    def queue_exists(self, name):
        with broker(self.config) as connection:
            return queue_exists(connection, name)

    def _measure(self):
        if self.measured_at is not None and time.monotonic() - self.measured_at < MEASURE_SECONDS:
            return
        self.measured_at = time.monotonic()
        metrics.OUTBOX_PENDING.labels(self.service).set(self.pending())
        oldest = self.collection.find_one({}, {"created_at": 1}, sort=[("created_at", ASCENDING)])
        age = (utcnow() - oldest["created_at"]).total_seconds() if oldest else 0
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


# --- consumers ----------------------------------------------------------------------------

class BrokerTolerantQueueConsumer(QueueConsumer):
    """nameko's queue consumer, except that acknowledging on a connection the broker has
    just reset does not stop the service (nameko only expects amqp's own ConnectionError
    there). The message was not acknowledged: the broker hands it out again after the
    consumer reconnects."""

    def ack_message(self, message):
        try:
            super().ack_message(message)
        except OSError:
            log.warning("amqp.ack_lost")

    def requeue_message(self, message):
        try:
            super().requeue_message(message)
        except OSError:
            log.warning("amqp.requeue_lost")


class ReliableEventHandler(EventHandler):
    """A nameko event handler that receives a validated Envelope, retries a failing event
    with growing delays and finally parks it in the dead-letter queue instead of dropping
    it. Fields it does not know are ignored (see common/events.py)."""

    queue_consumer = BrokerTolerantQueueConsumer()

    def __init__(self, event, **kwargs):
        super().__init__(event_type(event).source, event, **kwargs)

    def setup(self):
        self.subscription = subscription(self.event_type, self.container.service_name,
                                         self.method_name)
        self.retry_delays = retry_delays_ms(self.container.config)
        self.connection = broker(self.container.config)
        declare_topology(self.container.config, [self.subscription])
        # Every outcome's series exists from the start at 0: an alert on
        # increase(...dead_lettered...) also sees the first event a process parks.
        for outcome in EVENT_OUTCOMES:
            metrics.EVENTS_HANDLED.labels(self.container.service_name, self.event_type, outcome)
        super().setup()

    def stop(self):
        super().stop()
        self.connection.release()

    def handle_message(self, body, message):
        try:
            envelope = Envelope.received(body)
            envelope.parsed_payload()
        except (ValidationError, ValueError) as exc:
            self._park(message, body, f"invalid envelope: {_reason(exc)}", attempts=1)
            self.queue_consumer.ack_message(message)
            return
        super().handle_message(envelope, message)

    def handle_result(self, message, worker_ctx, result=None, exc_info=None):
        if exc_info is not None:
            self._retry_or_park(message, exc_info)
        elif result is False:
            metrics.EVENTS_HANDLED.labels(self.container.service_name, self.event_type, "duplicate").inc()
        else:
            metrics.EVENTS_HANDLED.labels(self.container.service_name, self.event_type, "handled").inc()
        self.queue_consumer.ack_message(message)
        return result, exc_info

    def _retry_or_park(self, message, exc_info):
        attempts = int((message.headers or {}).get(ATTEMPTS_HEADER, 1))
        error = redact_text(f"{exc_info[0].__name__}: {exc_info[1]}")[:500]
        service = self.container.service_name
        if attempts <= len(self.retry_delays):
            delay = self.retry_delays[attempts - 1]
            headers = {**(message.headers or {}), ATTEMPTS_HEADER: attempts + 1}
            # Into the queue that waits that long, then hands it back to the subscription's.
            publish(self.connection, message.payload, "",
                    retry_queue_name(self.subscription, delay), headers)
            metrics.EVENTS_HANDLED.labels(service, self.event_type, "retried").inc()
            log.warning("event.retry", event_type=self.event_type, attempts=attempts,
                        retry_in_ms=delay, error=error)
        else:
            self._park(message, message.payload, error, attempts)

    def _park(self, message, body, error, attempts):
        headers = {**(message.headers or {}), ATTEMPTS_HEADER: attempts,
                   ORIGIN_HEADER: self.subscription.queue, ERROR_HEADER: error,
                   FAILED_AT_HEADER: utcnow().isoformat()}
        publish(self.connection, body, "", DEAD_LETTER_QUEUE, headers)
        metrics.EVENTS_HANDLED.labels(self.container.service_name, self.event_type,
                                      "dead_lettered").inc()
        log.error("event.dead_lettered", event_type=self.event_type, attempts=attempts, error=error)


def _reason(error):
    """Why a body was refused, without the values it carried."""
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                         for e in error.errors(include_input=False))[:300]
    return redact_text(str(error))[:300]


handles_event = ReliableEventHandler.decorator


# --- operator tools for the dead-letter queue --------------------------------------------

def _drain_dead_letters(channel):
    queue = _dead_letter_queue()(channel)
    queue.declare()
    while True:
        message = queue.get(no_ack=False)
        if message is None:
            return
        yield message


def describe_dead_letter(message):
    headers = message.headers or {}
    body = message.decode() if hasattr(message, "decode") else message.payload
    return {
        "event_id": body.get("event_id") if isinstance(body, dict) else None,
        "type": body.get("type") if isinstance(body, dict) else None,
        "queue": headers.get(ORIGIN_HEADER),
        "attempts": headers.get(ATTEMPTS_HEADER),
        "error": headers.get(ERROR_HEADER),
        "failed_at": headers.get(FAILED_AT_HEADER),
    }


def list_dead_letters(config=None):
    """Every parked event; they stay parked (unacknowledged, then returned to the queue)."""
    with broker(config) as connection:
        channel = connection.channel()
        found = [describe_dead_letter(m) for m in _drain_dead_letters(channel)]
        channel.close()
    return found


def replay_dead_letters(config=None, event_ids=None):
    """Send parked events (all, or those with the given ids) back to their queues with a
    fresh number of attempts. Returns what was replayed."""
    replayed = []
    wanted = {str(e) for e in event_ids} if event_ids else None
    with broker(config) as connection:
        channel = connection.channel()
        for message in _drain_dead_letters(channel):
            info = describe_dead_letter(message)
            if not info["queue"] or (wanted is not None and info["event_id"] not in wanted):
                continue
            headers = {k: v for k, v in (message.headers or {}).items()
                       if not k.startswith("x-mantelzorg-")}
            publish(connection, message.decode(), "", info["queue"], headers)
            message.ack()
            replayed.append(info)
        channel.close()   # what was not replayed returns to the queue
    return replayed

"""Reliable events over RabbitMQ: the transactional outbox and its relay, idempotent
consumers with retries, and the dead-letter queue an operator can list and replay.

Topology (declared by ``declare_topology`` at platform start and again by each service):
- ``<source>.events``: nameko's topic exchange per publishing service;
- ``evt-<source>-<type>--<consumer>.<handler>``: one durable queue per subscription;
- ``<that queue>.retry``: holds a failed event for EVENT_RETRY_DELAY_MS times the attempts
  so far (the message's own expiration), then hands it back to the queue;
- ``mantelzorg.dead-letters``: events that failed EVENT_MAX_ATTEMPTS times.
"""
import threading
import uuid
from datetime import timedelta

from kombu import Connection, Exchange, Queue
from kombu.pools import producers
from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.standalone.events import get_event_exchange
from pydantic import ValidationError
from pymongo import ASCENDING

from common import config as settings
from common import metrics
from common.events import SUBSCRIPTIONS, Envelope, event_type, new_envelope, subscription
from common.logging import CORRELATION_KEY, get_logger, redact_text
from common.storage import Storage, utcnow

DEAD_LETTER_QUEUE = "mantelzorg.dead-letters"
ATTEMPTS_HEADER = "x-mantelzorg-attempts"
ORIGIN_HEADER = "x-mantelzorg-queue"
ERROR_HEADER = "x-mantelzorg-error"
FAILED_AT_HEADER = "x-mantelzorg-failed-at"
CORRELATION_HEADER = f"nameko.{CORRELATION_KEY}"   # nameko turns it into context data
OUTBOX = "outbox"
CLAIM_SECONDS = 30
MAX_PASSES = 10

log = get_logger()


def broker(config=None):
    """A connection whose publishes wait for the broker's confirmation."""
    return Connection(settings.amqp_uri(config), transport_options={"confirm_publish": True})


def _dead_letter_queue():
    return Queue(DEAD_LETTER_QUEUE, durable=True, auto_delete=False)


def subscription_queues(entry, config=None):
    exchange = get_event_exchange(entry.source, config or {})
    return (
        Queue(entry.queue, exchange=exchange, routing_key=entry.event,
              durable=True, auto_delete=False, exclusive=False),
        Queue(entry.retry_queue, durable=True, auto_delete=False, queue_arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": entry.queue,
        }),
    )


def declare_topology(config=None, entries=SUBSCRIPTIONS):
    """Declare every consumer's queue, so that no event published before its consumer
    first started is dropped by the exchange."""
    with broker(config) as connection:
        channel = connection.channel()
        _dead_letter_queue()(channel).declare()
        for entry in entries:
            for queue in subscription_queues(entry, config):
                queue(channel).declare()
    return [entry.queue for entry in entries]


def publish(connection, body, exchange, routing_key, headers, expiration=None):
    with producers[connection].acquire(block=True, timeout=10) as producer:
        producer.publish(body, exchange=exchange, routing_key=routing_key, headers=headers,
                         serializer="json", delivery_mode=2, retry=True, expiration=expiration,
                         declare=[exchange] if isinstance(exchange, Exchange) and exchange.name else [])


# --- the outbox -------------------------------------------------------------------------

def ensure_outbox_indexes(db):
    db[OUTBOX].create_index([("created_at", ASCENDING)])


class Outbox:
    """Events written in the same transaction as the change they announce. An entry stays
    in the collection until the broker has confirmed it, then it is removed: the outbox only
    ever holds what is still to be published, so relaying stays cheap."""

    def __init__(self, store, service, config):
        self.collection = store[OUTBOX]
        self.service = service
        self.config = config
        self.connection = broker(config)
        self.exchange = get_event_exchange(service, config)
        self._relaying = threading.Lock()
        self._again = False

    def add(self, session, type_name, payload, correlation_id):
        return self.add_many(session, [(type_name, payload)], correlation_id)[0]

    def add_many(self, session, events, correlation_id):
        """(type, payload) pairs in one write: a payout batch announces every claim paid."""
        envelopes = [new_envelope(type_name, payload, correlation_id, self.service)
                     for type_name, payload in events]
        now = utcnow()
        if envelopes:
            self.collection.insert_many([{
                "_id": str(envelope.event_id), "created_at": now, "claimed_until": now,
                "envelope": envelope.model_dump(mode="json"),
            } for envelope in envelopes], session=session)
        return envelopes

    def _claim(self, entry_ids, now):
        """Only one relay (of this or another replica) holds an entry at a time; a relay
        that dies lets go when its claim runs out. One update for all, then a read of what
        this relay got (the embedded store answers find_one_and_update by scanning the
        collection). Returns the claimed entries, oldest first."""
        token = uuid.uuid4().hex
        self.collection.update_many(
            {"_id": {"$in": entry_ids}, "claimed_until": {"$lte": now}},
            {"$set": {"claimed_until": now + timedelta(seconds=CLAIM_SECONDS), "claim": token}})
        return list(self.collection.find({"_id": {"$in": entry_ids}, "claim": token},
                                         {"envelope": 1}).sort("created_at", ASCENDING))

    def relay(self, limit=500):
        """Publish pending events, oldest first, with publisher confirms, then remove them.
        A crash in between publishes an event again later; consumers drop the duplicate.

        One relay at a time per process: workers that finish together would otherwise all
        walk the same pending entries. A worker that finds the relay busy asks it for one
        more pass, which picks up its events."""
        if not self._relaying.acquire(blocking=False):
            self._again = True
            return 0
        try:
            sent, self._again = 0, True
            for _pass in range(MAX_PASSES):    # the timer takes over after that
                if not self._again:
                    break
                self._again = False
                sent += self._relay_pass(limit)
        finally:
            self._relaying.release()
        return sent

    def _relay_pass(self, limit):
        now = utcnow()
        waiting = [entry["_id"] for entry in self.collection.find(
            {"claimed_until": {"$lte": now}}, {"_id": 1}).sort("created_at", ASCENDING).limit(limit)]
        sent = []
        for entry in self._claim(waiting, now) if waiting else ():
            envelope = entry["envelope"]
            publish(self.connection, envelope, self.exchange, envelope["type"],
                    {CORRELATION_HEADER: envelope["correlation_id"]})
            metrics.EVENTS_PUBLISHED.labels(self.service, envelope["type"]).inc()
            sent.append(entry["_id"])
        if sent:
            self.collection.delete_many({"_id": {"$in": sent}})
        return len(sent)

    def measure(self):
        """The outbox gauges; from the relay timer, not after every worker: the oldest
        entry's age costs a sorted read."""
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

    def _outbox(self):
        if self.outbox is None:
            storage = next(d for d in self.container.dependencies if isinstance(d, Storage))
            self.outbox = Outbox(storage.store, self.container.service_name, self.container.config)
            ensure_outbox_indexes(storage.store.db)
        return self.outbox

    def start(self):
        self._outbox()

    def stop(self):
        if self.outbox:
            self.outbox.connection.release()
        self.outbox = None

    def get_dependency(self, worker_ctx):
        return WorkerOutbox(self._outbox(), worker_ctx)

    def worker_teardown(self, worker_ctx):
        if worker_ctx.data.get("_outbox_recorded"):
            try:
                self._outbox().relay()
            except Exception:  # the timer relays it later
                log.warning("outbox.relay_deferred", exc_info=True)


class WorkerOutbox:
    def __init__(self, outbox, worker_ctx):
        self._outbox = outbox
        self._worker_ctx = worker_ctx

    def record(self, session, type_name, payload):
        return self.record_many(session, [(type_name, payload)])[0]

    def record_many(self, session, events):
        """(type, payload) pairs, written together."""
        self._worker_ctx.data["_outbox_recorded"] = True
        return self._outbox.add_many(session, events,
                                     self._worker_ctx.data.get(CORRELATION_KEY) or "none")

    def relay(self):
        return self._outbox.relay()

    def measure(self):
        self._outbox.measure()

    def pending(self):
        return self._outbox.pending()


# --- consumers ----------------------------------------------------------------------------

class ReliableEventHandler(EventHandler):
    """A nameko event handler that receives a validated Envelope, retries a failing event
    and finally parks it in the dead-letter queue instead of dropping it."""

    def __init__(self, event, **kwargs):
        super().__init__(event_type(event).source, event, **kwargs)

    def setup(self):
        self.subscription = subscription(self.event_type, self.container.service_name,
                                         self.method_name)
        self.max_attempts = settings.int_setting(self.container.config, "EVENT_MAX_ATTEMPTS", 3)
        self.retry_delay_ms = settings.int_setting(self.container.config, "EVENT_RETRY_DELAY_MS", 1000)
        self.connection = broker(self.container.config)
        declare_topology(self.container.config, [self.subscription])
        super().setup()

    def stop(self):
        super().stop()
        self.connection.release()

    def handle_message(self, body, message):
        try:
            envelope = Envelope.model_validate(body)
            envelope.parsed_payload()
        except (ValidationError, ValueError) as exc:
            self._park(message, body, f"invalid envelope: {type(exc).__name__}", attempts=1)
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
        if attempts < self.max_attempts:
            headers = {**(message.headers or {}), ATTEMPTS_HEADER: attempts + 1}
            publish(self.connection, message.payload, "", self.subscription.retry_queue, headers,
                    expiration=self.retry_delay_ms * attempts / 1000)
            metrics.EVENTS_HANDLED.labels(service, self.event_type, "retried").inc()
            log.warning("event.retry", event_type=self.event_type, attempts=attempts, error=error)
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

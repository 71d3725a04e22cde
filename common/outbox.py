"""The transactional outbox: events written in the same transaction as the change they
announce, and the relay that publishes them (right after the worker, and from a timer) and
removes them once a queue has taken them."""
import time
import uuid
from datetime import timedelta
from weakref import WeakKeyDictionary

from kombu.exceptions import ChannelError
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING

from common import metrics
from common.events import new_envelope, subscriptions_from
from common.logging import CORRELATION_KEY, get_logger
from common.publishing import EventPublisher
from common.storage import Storage, utcnow
from common.topology import broker, queue_exists, subscription_queue

OUTBOX = "outbox"
CLAIM_SECONDS = 15
# How many events the relay claims, publishes and removes at a time: one claim, one batch of
# publishes whose confirms are awaited together, one delete.
BATCH = 500
# How long one run of the relay's timer may go on relaying a backlog before it lets the
# next run continue (well inside the lease of what it claimed).
RELAY_SECONDS = 5.0
# The first window of claim times the relay reads, widened or narrowed so that a window
# holds about a batch.
FIRST_WINDOW = timedelta(seconds=1)
# An event no queue took stays in the outbox and is tried again after this long.
UNROUTABLE_RETRY_SECONDS = 5
MEASURE_SECONDS = 5.0   # how often the relay sets the lag gauge

log = get_logger()


def ensure_outbox_indexes(db):
    db[OUTBOX].create_index([("created_at", ASCENDING)])
    db[OUTBOX].create_index([("claimed_until", ASCENDING)])


class Outbox:
    """Events written in the same transaction as the change they announce. An entry stays
    in the collection until the broker has confirmed that a queue took it, then it is
    removed: the outbox only ever holds what is still to be published.

    Every entry is claimable from its ``claimed_until`` on (its creation; a lease's end; the
    retry of an unroutable one). The embedded store reads every entry of a range it is
    asked for, whatever the limit, so the relay never asks for "all that is due": it walks
    the claim times in windows of about a batch (``frontier`` is where the next window
    starts: every entry due before it has been published or claimed again for later), and
    reads below the frontier only what arrived late there (a transaction that committed
    after the frontier passed its events, a lease let go by hand), which is next to nothing.
    The cost of an event is so the same with 2,000 or 60,000 waiting."""

    def __init__(self, store, service, config):
        self.collection = store[OUTBOX]
        self.store = store
        self.service = service
        self.config = config
        self.publisher = EventPublisher(service, config)
        self.frontier = None           # not known until the first relay
        self.window = FIRST_WINDOW
        self.backlog = None            # the relay's estimate of the events waiting
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
            if self.backlog is not None:
                self.backlog += len(envelopes)
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

    def _claim(self, entries, now):
        """Only one relay (of this or another replica) holds an entry at a time; a relay
        that dies lets go when its claim runs out. One conditional write of them all by
        ``_id`` (each entry is taken by one relay alone), marked with this claim's token;
        only when some were taken by another, or their envelopes are still to be read, a
        read by ``_id`` tells which are this claim's. Returns the claimed entries."""
        ids = [entry["_id"] for entry in entries]
        token = uuid.uuid4().hex
        claimed = self.collection.update_many(
            {"_id": {"$in": ids}, "claimed_until": {"$lte": now}},
            {"$set": {"claimed_until": now + timedelta(seconds=CLAIM_SECONDS),
                      "claimed_by": token}}).modified_count
        if claimed == len(entries) and all("envelope" in entry for entry in entries):
            return entries
        if not claimed:
            return []
        return [entry for entry in self.collection.find({"_id": {"$in": ids}})
                if entry.get("claimed_by") == token]

    def _publish(self, entries, now):
        """Claims, publishes (confirms awaited together) and removes ``entries``; returns
        how many were published. What no queue took stays and is tried again
        UNROUTABLE_RETRY_SECONDS later; what the broker did not confirm stays claimed until
        its lease runs out."""
        claimed = self._claim(entries, now) if entries else []
        if not claimed:
            return 0
        envelopes = [entry["envelope"] for entry in claimed]
        routed = self.publisher.publish_many(envelopes)
        if len(routed) < len(envelopes):
            # Declare the consumers' queues, then try the returned ones once more.
            self.ensure_consumer_queues()
            routed |= self.publisher.publish_many(
                [envelope for envelope in envelopes if envelope["event_id"] not in routed])
        if routed:
            self.collection.delete_many({"_id": {"$in": list(routed)}})
        for envelope in envelopes:
            if envelope["event_id"] in routed:
                metrics.EVENTS_PUBLISHED.labels(self.service, envelope["type"]).inc()
            else:
                metrics.EVENTS_UNROUTABLE.labels(self.service, envelope["type"]).inc()
                log.warning("outbox.event_unroutable", event_type=envelope["type"],
                            event_id=envelope["event_id"],
                            retry_in_seconds=UNROUTABLE_RETRY_SECONDS)
        unroutable = [envelope["event_id"] for envelope in envelopes
                      if envelope["event_id"] not in routed]
        if unroutable:
            self.collection.update_many({"_id": {"$in": unroutable}}, {"$set": {
                "claimed_until": utcnow() + timedelta(seconds=UNROUTABLE_RETRY_SECONDS)}})
        if self.backlog is not None:
            self.backlog = max(self.backlog - len(routed), 0)
        return len(routed)

    def _due(self, query):
        return list(self.collection.find(query))

    def _start(self, now):
        """Once per process: where the oldest waiting entry is, and how many wait. The only
        read of the whole outbox, in claim order."""
        times = [entry["claimed_until"] for entry in self.collection.find(
            {"claimed_until": {"$lte": now + timedelta(days=1)}}, {"claimed_until": 1, "_id": 0})]
        self.backlog = len(times)
        self.frontier = min(times) if times else now

    def relay(self, limit=BATCH):
        """Publish pending events, oldest claim time first, a batch at a time, until every
        due one is out or RELAY_SECONDS have passed. A crash in between publishes an event
        again later; consumers drop the duplicate. Returns how many were published."""
        started = time.monotonic()
        now = utcnow()
        if self.frontier is None:
            self._start(now)
        # What arrived behind the frontier: next to nothing, read whole.
        late = self._due({"claimed_until": {"$lt": self.frontier}})
        sent = sum(self._publish(late[i:i + limit], now) for i in range(0, len(late), limit))
        while time.monotonic() - started < RELAY_SECONDS:
            now = utcnow()
            end = min(self.frontier + self.window, now)
            due = sorted(self._due({"claimed_until": {"$gte": self.frontier, "$lte": end}}),
                         key=lambda entry: entry["claimed_until"])
            if len(due) > limit:       # the window was too wide: take the oldest batch
                due, self.window = due[:limit], max(self.window / 2, timedelta(milliseconds=1))
                end = due[-1]["claimed_until"]
            elif len(due) < limit // 2:
                self.window *= 2
            sent += self._publish(due, now)
            self.frontier = end
            if end >= now:
                self._caught_up(now)
                break
        self._measure()
        return sent

    def _caught_up(self, now):
        """Every due entry is out: what waits now is only what is claimed for later (leases,
        unroutable ones), which is few."""
        self.backlog = len(self._due({"claimed_until": {"$gt": now}}))

    def relay_own(self, entry_ids):
        """Publish the events one worker just recorded. Only its own: when many workers end
        at once, each publishing every pending event would have them all compete for the
        same entries. What one cannot publish, the timer's ``relay`` does."""
        now = utcnow()
        return self._publish([{"_id": entry_id} for entry_id in entry_ids], now)

    def send_to_queue(self, type_name, events, queue, correlation_id):
        """Events into one consumer's queue alone (through the service's own exchange, by
        the queue's name), confirmed by the broker together, bypassing the outbox: a new
        consumer catches up on the current state without every other consumer receiving it
        again. ``events`` are (payload, occurred_at) pairs; occurred_at None means now.
        Returns how many the queue took."""
        envelopes = [new_envelope(type_name, payload, correlation_id, self.service, occurred_at)
                     .model_dump(mode="json") for payload, occurred_at in events]
        return len(self.publisher.publish_many(envelopes, routing_key=queue)) if envelopes else 0

    def queue_exists(self, name):
        with broker(self.config) as connection:
            return queue_exists(connection, name)

    def _measure(self):
        """The gauges: the relay's estimate of what waits, and the age of the oldest entry
        behind the frontier (its window), read at most every MEASURE_SECONDS."""
        metrics.OUTBOX_PENDING.labels(self.service).set(self.pending())
        if self.measured_at is not None and time.monotonic() - self.measured_at < MEASURE_SECONDS:
            return
        self.measured_at = time.monotonic()
        oldest = self.collection.find_one(
            {"claimed_until": {"$gte": self.frontier, "$lte": self.frontier + self.window}},
            {"created_at": 1}, sort=[("claimed_until", ASCENDING)])
        age = (utcnow() - oldest["created_at"]).total_seconds() if oldest else 0
        metrics.OUTBOX_LAG.labels(self.service).set(age)

    def pending(self):
        """The events waiting, as the relay estimates them: counted once when it starts,
        then kept up by what this process records and publishes, and set again whenever
        the relay has caught up. Never a count of the collection per question: on the
        embedded store that reads every entry."""
        return self.backlog or 0


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

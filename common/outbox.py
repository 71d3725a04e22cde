"""The transactional outbox: events written in the same transaction as the change they
announce, and the relay that publishes them (right after the worker, and from a timer) and
removes them once a queue has taken them."""
import time
import uuid
from datetime import timedelta
from weakref import WeakKeyDictionary

from kombu.exceptions import ChannelError
from nameko.extensions import DependencyProvider

from common import clock, metrics
from common.events import new_envelope, subscriptions_from
from common.logging import CORRELATION_KEY, get_logger
from common.publishing import EventPublisher
from common.storage import OutboxStore, Storage
from common.topology import broker, queue_exists, subscription_queue

CLAIM_SECONDS = 15
# How many events the relay publishes and removes at a time: one read, one batch of publishes
# whose confirms are awaited together, one delete.
BATCH = 1000
# How long one run of the relay's timer may go on relaying a backlog before it lets the
# next run continue (its lease is renewed before every batch).
RELAY_SECONDS = 5.0
# The first window of claim times the relay reads, widened or narrowed so that a window
# holds about a batch, never beyond the widest: it doubles on every quiet run of the timer,
# and unbounded it passed the calendar's end (OverflowError) within a minute, which stopped
# the relay for good.
FIRST_WINDOW = timedelta(seconds=1)
WIDEST_WINDOW = timedelta(days=1)
# An event no queue took stays in the outbox and is tried again after this long.
UNROUTABLE_RETRY_SECONDS = 5
UNROUTABLE = "unroutable"   # the claim of an entry waiting to be tried again
# A new entry is its worker's to publish for this long; then it falls due to the relay that
# holds the lease (a worker that died, a broker that was away).
HANDOVER_SECONDS = 10
MEASURE_SECONDS = 5.0   # how often the relay sets the lag gauge

log = get_logger()


class Outbox:
    """Events written in the same transaction as the change they announce. An entry stays
    in the collection until the broker has confirmed that a queue took it, then it is
    removed: the outbox only ever holds what is still to be published.

    Every entry is due to the relay holding the lease from its ``claimed_until`` on
    (HANDOVER_SECONDS after its creation; the end of a worker's claim; the retry of an
    unroutable one). The embedded store reads every entry of a range it is
    asked for, whatever the limit, so the relay never asks for "all that is due": it walks
    the claim times in windows of about a batch (``frontier`` is where the next window
    starts: every entry due before it has been published or claimed again for later), and
    reads below the frontier only what arrived late there (a transaction that committed
    after the frontier passed its events, a lease let go by hand), which is next to nothing.
    The cost of an event is so the same with 2,000 or 60,000 waiting."""

    def __init__(self, store, service, config):
        self.entries = OutboxStore(store)
        self.token = uuid.uuid4().hex   # this relay, as the holder of the lease
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
        now = clock.now()
        envelopes = [new_envelope(type_name, payload, correlation_id, self.service)
                     for type_name, payload in events]
        if envelopes:
            self.entries.add_entries([{
                "_id": str(envelope.event_id), "created_at": now,
                "claimed_until": now + timedelta(seconds=HANDOVER_SECONDS),
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

    def _claim(self, entry_ids, holds, now):
        """Claims the entries that are nobody's and for which ``holds(entry)`` is true, each
        by one relay alone (``OutboxStore.claim_entries``), which holds it for CLAIM_SECONDS;
        a relay that dies lets go when its claim runs out. Returns the claimed entries."""
        return self.entries.claim_entries(entry_ids, holds,
                                          now + timedelta(seconds=CLAIM_SECONDS), uuid.uuid4().hex)

    def _publish(self, entries):
        """Publishes ``entries`` (confirms awaited together) and removes the published ones
        in one write; returns how many were published. What no queue took stays and is due
        again UNROUTABLE_RETRY_SECONDS later; what the broker did not confirm stays as it
        is, due when its claim runs out."""
        if not entries:
            return 0
        envelopes = [entry["envelope"] for entry in entries]
        routed = self.publisher.publish_many(envelopes)
        if len(routed) < len(envelopes):
            # Declare the consumers' queues, then try the returned ones once more.
            self.ensure_consumer_queues()
            routed |= self.publisher.publish_many(
                [envelope for envelope in envelopes if envelope["event_id"] not in routed])
        if routed:
            self.entries.remove_entries(list(routed))
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
            retry_at = clock.now() + timedelta(seconds=UNROUTABLE_RETRY_SECONDS)
            self.entries.claim_for_later(unroutable, retry_at, UNROUTABLE)
        if self.backlog is not None:
            self.backlog = max(self.backlog - len(routed), 0)
        return len(routed)

    def _start(self, now):
        """Once per process: where the oldest waiting entry is, and how many wait. The only
        read of the whole outbox, in claim order."""
        times = self.entries.claim_times(now + timedelta(days=1))
        self.backlog = len(times)
        self.frontier = min(times + [now])

    def _hold_lease(self, now):
        """Whether this relay may walk the due entries: one relay of the service at a time
        holds the lease, renewed before every batch; another replica's relay takes it over
        once it has run out (its holder died or stalls)."""
        return self.entries.take_lease(self.token, now, now + timedelta(seconds=CLAIM_SECONDS))

    def relay(self, limit=BATCH):
        """Publish pending events, oldest due first, a batch at a time, until every due one
        is out or RELAY_SECONDS have passed, then the fresh ones their workers left. A crash
        in between publishes an event again later; consumers drop the duplicate. Returns how
        many were published.

        A due entry (its ``claimed_until`` passed) is published without a claim of its own:
        only the holder of the relay's lease publishes due entries, and a worker's relay
        never takes one (``relay_own`` claims only what has HANDOVER_SECONDS / 2 left)."""
        started = time.monotonic()
        now = clock.now()
        if not self._hold_lease(now):
            self._measure()
            return 0
        if self.frontier is None:
            self._start(now)
        # What became due behind the frontier (a lease run out, a late commit): next to
        # nothing, read whole.
        late = self.entries.due_before(self.frontier)
        sent = sum(self._publish(late[i:i + limit]) for i in range(0, len(late), limit))
        while time.monotonic() - started < RELAY_SECONDS:
            now = clock.now()
            if not self._hold_lease(now):
                break
            end = min(self.frontier + self.window, now)
            due = sorted(self.entries.due_within(self.frontier, end),
                         key=lambda entry: entry["claimed_until"])
            if len(due) > limit:       # the window was too wide: take the oldest batch
                due = due[:limit]
                end = due[-1]["claimed_until"]
                self.window = max(end - self.frontier, timedelta(milliseconds=1))
            elif len(due) < limit // 2:
                self.window = min(self.window * 2, WIDEST_WINDOW)
            sent += self._publish(due)
            self.frontier = end
            if end >= now:
                sent += self._fresh(now, limit)
                break
        self._measure()
        return sent

    def _fresh(self, now, limit):
        """Every due entry is out. What waits now is not due yet: fresh entries whose
        worker has not published them (it died, or the broker was away), claimed one by one
        and published here; and what is claimed for later (leases, unroutable ones)."""
        waiting = self.entries.due_after(now)
        self.backlog = len(waiting)
        handed_over = now + timedelta(seconds=HANDOVER_SECONDS)
        fresh = [entry["_id"] for entry in waiting
                 if entry.get("claimed_by") is None and entry["claimed_until"] <= handed_over]
        return sum(self._publish(self._claim(fresh[i:i + limit], lambda entry: True, now))
                   for i in range(0, len(fresh), limit))

    def relay_own(self, entry_ids):
        """Publish the events one worker just recorded. Only its own: when many workers end
        at once, each publishing every pending event would have them all compete for the
        same entries. Each is claimed first, and only while at least HANDOVER_SECONDS / 2
        remain before it falls due to the lease holder's relay. What one cannot publish,
        the timer's ``relay`` does."""
        now = clock.now()
        fresh_until = now + timedelta(seconds=HANDOVER_SECONDS / 2)
        return self._publish(self._claim(
            list(entry_ids), lambda entry: entry["claimed_until"] >= fresh_until, now))

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
        if self.frontier is None:     # another replica's relay walks the outbox
            return
        if self.measured_at is not None and time.monotonic() - self.measured_at < MEASURE_SECONDS:
            return
        self.measured_at = time.monotonic()
        oldest_created_at = self.entries.first_due_within(self.frontier,
                                                          self.frontier + self.window)
        age = (clock.now() - oldest_created_at).total_seconds() if oldest_created_at else 0
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
            self.outbox.entries.ensure_indexes()
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

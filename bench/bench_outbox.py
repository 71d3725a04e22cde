"""The outbox relay publishes as fast with a large backlog as with a small one.

For each of BENCH_OUTBOX_SIZES (default 2,000 and 60,000) events waiting: a store of this
benchmark's own (the embedded store on disk, every commit synced, as a service keeps it) is
filled through the outbox's own ``add_many`` in transactions of a thousand, as a service's
entrypoints record their events; once they are due to the relay (HANDOVER_SECONDS: no
worker published them, as when the broker was away), a fresh relay (as in a restarted
process) publishes them all to a throwaway vhost whose consumer queue takes them, and is timed until the outbox
is empty. Printed per size: events a second, store operations per event, and what a health
answer costs (the store's ping and the outbox's pending figure, median of
BENCH_OUTBOX_HEALTH_CALLS) with the backlog waiting. Targets: the larger backlog relays at
least 0.9 times as fast as the smaller and at least 1,000 events a second; a health answer
costs at most 1.5 times as much with the larger backlog."""
import functools
import os
import statistics
import tempfile
import time
import uuid

import pymongo
from kombu import Connection
from pymongo import monitoring

import common.storage
from bench.harness import problem, verdict
from common import config as settings
from common.config import DEFAULT_AMQP_URI
from common.events import subscription
from common.outbox import BATCH, HANDOVER_SECONDS, Outbox
from common.storage import DocumentStore, OutboxStore
from common.topology import subscription_queue
from ops.broker import create_vhost, delete_vhost, ensure_broker, ensure_management

SIZES = tuple(int(n) for n in settings.setting(None, "BENCH_OUTBOX_SIZES",
                                               "2000,60000").split(","))
HEALTH_CALLS = settings.int_setting(None, "BENCH_OUTBOX_HEALTH_CALLS", 300)
RECORD_BATCH = 1000
WARM_UP = 200   # events relayed before the measured runs, not measured
EVENT = "support_point.updated"
CONSUMER = subscription(EVENT, "campaign", "on_support_point_changed")


def _point(number):
    return {"id": str(uuid.uuid4()), "name": f"Steunpunt {number}", "kind": "LOCAL",
            "municipality_code": "GM0363", "serves_municipality_codes": ["GM0363"],
            "areas": ["INFORMATION"], "active": True, "version": 2}


class Operations(monitoring.CommandListener):
    """Counts the commands the relay sends to its store."""
    count = 0

    def started(self, event):
        if event.command_name not in ("endSessions", "hello", "isMaster", "ping"):
            Operations.count += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def _fill(store, outbox, count):
    for first in range(0, count, RECORD_BATCH):
        events = [(EVENT, _point(n)) for n in range(first, min(first + RECORD_BATCH, count))]
        store.in_transaction(lambda session, events=events: outbox.add_many(
            session, events, "bench-outbox"))


def _health(store, outbox):
    """What a health answer asks of the store and the outbox, median in milliseconds."""
    times = []
    for _ in range(HEALTH_CALLS):
        started = time.perf_counter()
        store.ping()
        outbox.pending()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _measure(amqp, folder, waiting, quiet=False):
    config = {"AMQP_URI": amqp}
    store = DocumentStore(f"bench_outbox_{waiting}", "", folder)
    try:
        OutboxStore(store).ensure_indexes()
        started = time.monotonic()
        _fill(store, Outbox(store, "registry", config), waiting)
        filled = time.monotonic() - started
        time.sleep(HANDOVER_SECONDS)   # what no worker published is now the relay's
        relay = Outbox(store, "registry", config)   # a process started with the backlog
        relay.ensure_consumer_queues()
        operations = Operations.count
        started = time.monotonic()
        sent = 0
        while True:
            published = relay.relay()
            sent += published
            if not published and not relay.pending():
                break
        seconds = time.monotonic() - started
        operations = Operations.count - operations
        if sent != waiting:
            problem(f"{waiting} events waiting, the relay published {sent}")
        with Connection(amqp) as connection:
            queue = subscription_queue(CONSUMER, config)(connection.channel())
            taken = queue.queue_declare(passive=True).message_count
            queue.purge()
        if taken != waiting:
            problem(f"{waiting} events waiting, the consumer's queue took {taken}")
        # The health answer with the backlog waiting again (filled once more, not relayed).
        _fill(store, relay, waiting)
        health_ms = _health(store, relay)
        relay.publisher.release()
        if not quiet:
            print(f"  {waiting:>6} waiting: filled in {filled:.1f} s; relayed in {seconds:.1f} s: "
                  f"{sent / seconds:,.0f} events/s, {operations / max(sent, 1):.3f} store operations"
                  f" per event (batches of {BATCH}); health answer {health_ms:.2f} ms")
        return sent / seconds, health_ms
    finally:
        store.close()


def run():
    base = os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)
    ensure_broker(base)
    ensure_management(base)
    vhost = f"mantelzorg-bench-outbox-{uuid.uuid4().hex[:8]}"
    amqp = create_vhost(base, vhost)
    original = common.storage.MongoClient
    common.storage.MongoClient = functools.partial(pymongo.MongoClient,
                                                   event_listeners=[Operations()])
    try:
        with tempfile.TemporaryDirectory() as folder:
            # connections, imports, caches; in a folder of its own, so that a measured size
            # equal to WARM_UP finds neither its entries nor its relay's lease
            _measure(amqp, os.path.join(folder, "warm-up"), WARM_UP, quiet=True)
            results = {waiting: _measure(amqp, folder, waiting) for waiting in SIZES}
    finally:
        common.storage.MongoClient = original
        delete_vhost(base, vhost)
    small, large = min(SIZES), max(SIZES)
    rate_ratio = results[large][0] / results[small][0]
    health_ratio = results[large][1] / results[small][1]
    print(f"  relay rate with {large:,} waiting / with {small:,}: {rate_ratio:.2f}")
    print(f"  health answer with {large:,} waiting / with {small:,}: {health_ratio:.2f}")
    verdict(f"relay at {large:,} waiting at least 0.9 x at {small:,}", rate_ratio >= 0.9)
    verdict(f"relay at {large:,} waiting at least 1,000 events/s", results[large][0] >= 1000)
    verdict(f"health answer at {large:,} waiting at most 1.5 x at {small:,}", health_ratio <= 1.5)

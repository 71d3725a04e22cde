"""One MongoDB database per service, through pymongo.

``MONGO_URI`` set: a real mongod (docker-compose, Kubernetes). Unset: the process starts the
embedded MongoDB-wire-protocol server (SecantusDB) on a free local port, with its files in
``$MANTELZORG_DATA_DIR/<database>`` so they survive restarts. Either way the service talks
pymongo over the wire, through the same code.
"""
import contextlib
import contextvars
import functools
import os
import random
import socket
import threading
import time
from datetime import timedelta

import eventlet
from kombu.utils import json as kombu_json
from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, DeleteOne, MongoClient, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from common import clock
from common import config as settings
from common.crypto import data_cipher
from common.errors import Unavailable

PROCESSED_EVENTS = "processed_events"
# The requests a service has done, by the request identity the gateway derives from an
# Idempotency-Key (see RequestsOnce), with their answers; kept for as long as the key.
DONE_REQUESTS = "done_requests"
REQUEST_KEY = "request_id"
REQUESTS_KEPT_FOR = timedelta(hours=24)
# How often a request done once starts again when its transaction met another's writes.
REQUEST_ATTEMPTS = 20
COMMIT_ATTEMPTS = 5
# The transactional outbox's entries and its relay's lease (one document), see OutboxStore.
OUTBOX = "outbox"
OUTBOX_LEASES = "outbox_relay"
RELAY_LEASE = "relay"
# The embedded store matches each document it finds against every id of an ``$in``: the
# outbox's entries are read by id a few dozen at a time.
IDS_A_READ = 50
# Transactions a process runs on its embedded store at once. With 8 or 20 writers the store
# falls from about 100 to 12 transactions' worth of claims a second after a minute or so (its
# lookups sleep in WiredTiger's page-in while every other connection waits on its lock of the
# transactions) and does not recover; with 4 it keeps its rate (bench_store_growth).
EMBEDDED_TRANSACTIONS_AT_ONCE = 4
_HOLDS_TRANSACTION_SLOT = contextvars.ContextVar("holds_transaction_slot", default=False)


class EmbeddedServer:
    """The embedded document store, started in this process: on a free local port, or on
    ``port`` (the launcher's store as a process of its own, ops/store.py)."""

    def __init__(self, storage_path, port=0):
        from secantus import SecantusDBServer  # only needed when no MONGO_URI is given

        durability = {}
        if storage_path != ":memory:":
            os.makedirs(storage_path, exist_ok=True)
            # Every commit reaches the disk before it is acknowledged. Without it a process
            # killed with SIGKILL loses the commits of its last moments, though it had told
            # its callers they succeeded. Costs about 0.3 ms a commit.
            durability["sync_on_commit"] = True
        self.server = SecantusDBServer(storage_path=storage_path, port=port, **durability)
        self.server.start()

    @property
    def uri(self):
        return self.server.uri

    def stop(self):
        # Closing a listening socket does not wake a thread blocked in its accept(); the
        # server would wait two seconds for its accept thread. Shutting the socket down does,
        # but under eventlet that thread is a green one: it only sees the shutdown once this
        # one yields, so it is joined here, before the server closes the socket under it.
        listening = getattr(self.server, "_socket", None)
        if listening is not None:
            with contextlib.suppress(OSError):
                listening.shutdown(socket.SHUT_RDWR)
            accepting = getattr(self.server, "_thread", None)
            if accepting is not None:
                accepting.join(timeout=2.0)
        self.server.stop()


class DocumentStore:
    """A service's database with transactions and the inbox for idempotent consumers.

    Each service subclasses it in its ``storage.py`` as its store class: the named queries
    of that service and its indexes (``ensure_indexes``), the only place that writes a
    pymongo filter for it."""

    def __init__(self, database, mongo_uri="", data_dir=".data"):
        self.database_name = database
        self.embedded = None
        self.transaction_slots = None
        if not mongo_uri:
            if settings.is_production():
                raise settings.missing_in_production(
                    "MONGO_URI", "the embedded store is for development only")
            path = data_dir if data_dir == ":memory:" else os.path.join(data_dir, database)
            self.embedded = EmbeddedServer(path)
            mongo_uri = self.embedded.uri
            self.transaction_slots = threading.BoundedSemaphore(EMBEDDED_TRANSACTIONS_AT_ONCE)
        options = {}
        if self.embedded:
            # The embedded server remembers every retryable write for half an hour and scans
            # that memory on each write, so writes slow down as they add up. Retrying a write
            # only helps against a failover, which a one-process store does not have.
            options["retryWrites"] = False
            # It runs in this process: while it works on a long write, the driver's health
            # check of it waits too. A short check timeout would mark it down and cancel
            # every operation in flight.
            options["connectTimeoutMS"] = 120_000
        else:
            options.update(settings.mongo_tls_options())
        self.client = MongoClient(mongo_uri, tz_aware=True, serverSelectionTimeoutMS=10_000,
                                  uuidRepresentation="standard", **options)
        self.db = self.client.get_database(
            database, write_concern=WriteConcern("majority"), read_concern=ReadConcern("majority"))
        self.db[PROCESSED_EVENTS].create_index([("handled_at", ASCENDING)])
        self.db[DONE_REQUESTS].create_index(
            [("done_at", ASCENDING)], expireAfterSeconds=int(REQUESTS_KEPT_FOR.total_seconds()))

    def ensure_indexes(self):
        """Create the service's indexes; called once when the service starts."""

    def migrate(self):
        """Bring what an earlier release stored to the current shape; called when the
        service starts, after ``ensure_indexes``. Must be idempotent: every replica runs it."""

    def __getitem__(self, collection):
        return self.db[collection]

    def page(self, collection, after=None, limit=500, **equal):
        """Documents of ``collection`` with the given field values, in the order of their
        ids and after the id ``after``: a whole collection walked in batches."""
        query = dict(equal)
        if after is not None:
            query["_id"] = {"$gt": after}
        return list(self.db[collection].find(query).sort("_id", ASCENDING).limit(limit))

    def ping(self):
        return self.db.command("ping").get("ok") == 1

    def in_transaction(self, work):
        """Run ``work(session)`` in one multi-document transaction, retried when transient.
        Inside a request done once (``in_request_transaction``) it joins that request's
        transaction instead, which commits when the request has its answer."""
        joined = _REQUEST_TRANSACTION.get()
        if joined is not None and joined.store is self:
            return joined.run(work)
        return self.in_own_transaction(work)

    def in_own_transaction(self, work):
        """``work(session)`` in a transaction of its own session, never joined to a
        request's; on the embedded store only a few at once (EMBEDDED_TRANSACTIONS_AT_ONCE).
        One that starts inside another of this worker takes no second slot, so a worker never
        waits for a slot it holds itself."""
        with self._transaction_slot(), self.client.start_session() as session:
            return session.with_transaction(work)

    @contextlib.contextmanager
    def _transaction_slot(self):
        if self.transaction_slots is None or _HOLDS_TRANSACTION_SLOT.get():
            yield
            return
        _take_slot(self.transaction_slots)
        holding = _HOLDS_TRANSACTION_SLOT.set(True)
        try:
            yield
        finally:
            _HOLDS_TRANSACTION_SLOT.reset(holding)
            self.transaction_slots.release()

    def apply_once(self, event_id, work):
        """Run ``work(session)`` for an event only the first time its id is seen.

        The inbox entry and the handler's changes commit together, so a redelivered event
        changes nothing twice. Returns False for a duplicate."""

        def once(session):
            # Inside the transaction: a concurrent delivery of the same event conflicts on
            # the insert, is retried by with_transaction, and then finds the entry.
            inbox = self.db[PROCESSED_EVENTS]
            if inbox.find_one({"_id": str(event_id)}, {"_id": 1}, session=session):
                return False
            inbox.insert_one({"_id": str(event_id), "handled_at": clock.now()}, session=session)
            work(session)
            return True

        return self.in_transaction(once)

    def count_up(self, collection, counter_id, field):
        """The next value of a counter that starts at 1, unique across processes. Two first
        uses at once must not both create it: the embedded store answers one of two
        concurrent upserts with nothing. So the counter is created apart (the loser of that
        race gets a duplicate key) and only ever incremented where it exists."""
        counters = self.db[collection]
        while True:
            counter = counters.find_one_and_update(
                {"_id": counter_id}, {"$inc": {field: 1}}, return_document=ReturnDocument.AFTER)
            if counter is not None:
                return counter[field]
            with contextlib.suppress(DuplicateKeyError):
                counters.insert_one({"_id": counter_id, field: 0})

    def change_by_id(self, collection, document_id, holds, update, session=None):
        """Applies ``update`` to the document with this ``_id`` only while ``holds(document)``
        is true. Returns the changed document, or None when there is none or ``holds`` is
        false (another change came first).

        A read, a write and a read, each by ``_id`` alone, in one transaction (the caller's
        ``session``, else one of its own): the embedded store answers a filter of ``_id``
        alone from its ``_id`` index, while it answers every ``find_one_and_update`` by
        reading the whole collection (it re-checks the filter under an ``$and``, which no
        index serves). A concurrent change of the same document makes the write conflict;
        the transaction is then retried and reads the document anew, so the condition holds
        as firmly as it would in the write's filter."""
        def work(session):
            documents = self.db[collection]
            found = documents.find_one({"_id": document_id}, session=session)
            if found is None or not holds(found):
                return None
            documents.update_one({"_id": document_id}, update, session=session)
            return documents.find_one({"_id": document_id}, session=session)

        return work(session) if session is not None else self.in_transaction(work)

    def done_request(self, request_id, now=None):
        """The record of a request done within the last 24 hours, else None. An older record
        still stored counts as forgotten (the TTL index removes it in time)."""
        since = (now or clock.now()) - REQUESTS_KEPT_FOR
        # By _id alone, which the embedded store answers from its index.
        done = self.db[DONE_REQUESTS].find_one({"_id": request_id})
        if done is not None and done["done_at"] <= since:
            def forget(session):   # only the old record, not one recorded meanwhile
                old = self.db[DONE_REQUESTS].find_one({"_id": request_id}, session=session)
                if old is not None and old["done_at"] <= since:
                    self.db[DONE_REQUESTS].delete_one({"_id": request_id}, session=session)
            self.in_transaction(forget)
            return None
        return done

    def in_request_transaction(self, request_id, run, seal, unseal):
        """``run()``'s answer the first time the request ``request_id`` is done; the answer
        recorded then for every later call with that identity (see RequestsOnce).

        Everything ``run`` writes through ``in_transaction`` joins one transaction of the
        request, which also records the request as done with its answer (``seal(answer)``)
        and commits only when ``run`` has answered. So a process killed at any moment either
        did nothing of the request or did all of it and kept its answer; of two calls with
        the same identity at once, one commits and the other answers what it did."""
        for attempt in range(REQUEST_ATTEMPTS):
            done = self.done_request(request_id)
            if done is not None:
                return unseal(done)
            joined = None
            try:
                with self.client.start_session() as session:
                    joined = RequestTransaction(self, session)
                    with joined:
                        answer = run()
                        if joined.failed:   # a step failed and was caught: start again
                            raise RequestTransactionFailed()
                        self.db[DONE_REQUESTS].insert_one(
                            {"_id": request_id, "sealed_answer": seal(answer),
                             "done_at": clock.now()}, session=session)
                        joined.commit()
            except Exception as error:
                done = self.done_request(request_id)
                if done is not None:     # the same request, done at the same moment elsewhere
                    return unseal(done)
                if not _may_try_again(error):
                    raise
                time.sleep(min(0.005 * 2 ** attempt, 0.2) * random.random())
                continue
            for callback in joined.after_commit:
                callback()
            return answer
        raise Unavailable("the request met too many others at once; try again")

    def in_request_steps(self, request_id, run, seal, unseal):
        """``run()``'s answer the first time the request ``request_id`` is done, for work
        that commits in steps of its own: the answer is recorded after its last step."""
        done = self.done_request(request_id)
        if done is not None:
            return unseal(done)
        answer = run()
        try:
            self.db[DONE_REQUESTS].insert_one({"_id": request_id, "sealed_answer": seal(answer),
                                               "done_at": clock.now()})
        except DuplicateKeyError:   # the same request, done at the same moment elsewhere
            return unseal(self.done_request(request_id))
        return answer

    def after_commit(self, callback):
        """Runs ``callback()`` once what the worker wrote is committed: at once, or when the
        transaction of its request (``in_request_transaction``) commits."""
        joined = _REQUEST_TRANSACTION.get()
        if joined is not None and joined.store is self:
            joined.after_commit.append(callback)
        else:
            callback()

    def replace_if_newer(self, collection, document, order_field, session=None):
        """Keep a projection of another service's data: replace the stored copy unless it
        is already as new (events may arrive out of order). Returns whether it replaced."""
        stored = self.db[collection].find_one({"_id": document["_id"]}, {order_field: 1},
                                              session=session)
        if stored is not None and stored.get(order_field) is not None \
                and stored[order_field] >= document[order_field]:
            return False
        self.db[collection].replace_one({"_id": document["_id"]}, document, upsert=True,
                                        session=session)
        return True

    def reencrypt(self, collection, field, cipher, batch):
        """Re-encrypts with the current data key up to ``batch`` documents whose ``field``
        (sealed with the document's ``_id`` as context) an earlier, still configured key
        encrypted. Data under a key that is no longer configured cannot be read: it is
        counted and left as it is. Returns the report of ``reencrypt-personal-data``.
        The collection needs an index on ``<field>.kid``: without it the embedded store reads
        the whole collection for every batch."""
        documents = self.db[collection]
        kid = f"{field}.kid"
        earlier_keys = [key for key in cipher.keys if key != cipher.current_id]
        reencrypted = 0
        for document in documents.find({kid: {"$in": earlier_keys}}, {field: 1}).limit(batch):
            sealed = document[field]
            value = cipher.decrypt(sealed, context=document["_id"])
            # Only if no other replica re-encrypted it meanwhile.
            changed = documents.update_one(
                {"_id": document["_id"], kid: sealed["kid"]},
                {"$set": {field: cipher.encrypt(value, context=document["_id"])}})
            reencrypted += changed.modified_count
        unknown = {kid: {"$exists": True, "$nin": list(cipher.keys)}}
        unknown_keys = sorted(documents.distinct(kid, unknown))
        return {"key_id": cipher.current_id, "reencrypted": reencrypted,
                "remaining": documents.count_documents({kid: {"$in": earlier_keys}}),
                "unreadable": documents.count_documents(unknown) if unknown_keys else 0,
                "unknown_keys": unknown_keys}

    def close(self):
        self.client.close()
        if self.embedded:
            self.embedded.stop()


class OutboxStore:
    """The named queries of the transactional outbox (``common.outbox``) on a service's
    store: its entries, one per event not yet published, and the lease of the relay that
    walks them (one document). It shares the service's client, so that an entry is written
    in the transaction of the change it announces.

    The relay's own transactions run in sessions of their own, never joined to a request's
    transaction (``DocumentStore.in_transaction``): they commit whatever the worker does."""

    def __init__(self, store):
        self.store = store
        self.client = store.client
        self.db = store.db
        self.entries = store.db[OUTBOX]
        self.leases = store.db[OUTBOX_LEASES]

    def ensure_indexes(self):
        self.entries.create_index([("created_at", ASCENDING)])
        self.entries.create_index([("claimed_until", ASCENDING)])

    def add_entries(self, entries, session):
        """Every entry in one insert, in the transaction of the change they announce."""
        self.entries.insert_many(entries, session=session)

    def claim_entries(self, entry_ids, holds, until, holder):
        """Claims the entries with these ids that are nobody's and for which
        ``holds(entry)`` is true, for ``holder`` until ``until``: read and written by ``_id``
        alone in one transaction (one bulk write), so another's claim of the same entry makes
        the write conflict and the transaction reads again. Returns the claimed entries."""
        def claim(session):
            free = [entry for entry in self._by_ids(entry_ids, session)
                    if entry.get("claimed_by") is None and holds(entry)]
            if free:
                self.entries.bulk_write([UpdateOne({"_id": entry["_id"]}, {"$set": {
                    "claimed_until": until, "claimed_by": holder}}) for entry in free],
                    session=session)
            return free

        return self._in_own_transaction(claim)

    def claim_for_later(self, entry_ids, until, holder):
        """Claims these entries for ``holder`` until ``until``, whoever held them."""
        self._write([UpdateOne({"_id": entry_id}, {"$set": {
            "claimed_until": until, "claimed_by": holder}}) for entry_id in entry_ids])

    def remove_entries(self, entry_ids):
        self._write([DeleteOne({"_id": entry_id}) for entry_id in entry_ids])

    def due_before(self, moment):
        return list(self.entries.find({"claimed_until": {"$lt": moment}}))

    def due_within(self, start, end):
        """The entries due from ``start`` to ``end``, both included."""
        return list(self.entries.find({"claimed_until": {"$gte": start, "$lte": end}}))

    def due_after(self, moment):
        return list(self.entries.find({"claimed_until": {"$gt": moment}}))

    def claim_times(self, until):
        """When each entry due by ``until`` falls due (its ``claimed_until``)."""
        return [entry["claimed_until"] for entry in self.entries.find(
            {"claimed_until": {"$lte": until}}, {"claimed_until": 1, "_id": 0})]

    def first_due_within(self, start, end):
        """The ``created_at`` of the first entry due from ``start`` to ``end``, else None."""
        first = self.entries.find_one({"claimed_until": {"$gte": start, "$lte": end}},
                                      {"created_at": 1}, sort=[("claimed_until", ASCENDING)])
        return first["created_at"] if first else None

    def take_lease(self, holder, now, until):
        """Whether ``holder`` holds the relay's lease, renewed until ``until``: taken when
        it is nobody's, ``holder``'s already or run out by ``now``."""
        def take(session):
            lease = self.leases.find_one({"_id": RELAY_LEASE}, session=session)
            if lease and lease["holder"] != holder and lease["until"] > now:
                return False
            self.leases.update_one({"_id": RELAY_LEASE}, {"$set": {
                "holder": holder, "until": until}}, upsert=True, session=session)
            return True

        return self._in_own_transaction(take)

    def _write(self, statements):
        """One bulk write of a statement per ``_id``, committed once (a transaction): the
        store syncs every commit to disk."""
        self._in_own_transaction(
            lambda session: self.entries.bulk_write(statements, session=session))

    def _by_ids(self, ids, session):
        """The entries with these ids, read a few dozen at a time: the embedded store
        matches every document it finds against the whole ``$in`` list."""
        return [entry for first in range(0, len(ids), IDS_A_READ)
                for entry in self.entries.find(
                    {"_id": {"$in": ids[first:first + IDS_A_READ]}}, session=session)]

    def _in_own_transaction(self, work):
        return self.store.in_own_transaction(work)


def _take_slot(slots):
    """Waits for one of ``slots``. In a service every thread is a green one and waits as
    such. Where threads stay threads (the tests) green threads share one: a blocking wait
    there would stop the green thread that holds the slot, so it polls with green sleeps."""
    if eventlet.patcher.is_monkey_patched("thread"):
        slots.acquire()
        return
    while not slots.acquire(blocking=False):
        time.sleep(0.002)


def open_store(config, database, store_class=DocumentStore):
    store = store_class(database, settings.mongo_uri(config), settings.data_dir(config))
    store.ensure_indexes()
    store.migrate()
    return store


class Storage(DependencyProvider):
    """Injects the service's store (its ``storage.py`` class); indexes are created when the
    service starts."""

    def __init__(self, store_class=DocumentStore):
        self.store_class = store_class
        self.store = None

    def setup(self):
        config = self.container.config
        database = settings.setting(config, "DATABASE", f"mantelzorg_{self.container.service_name}")
        with settings.stop_if_misconfigured():
            self.store = open_store(config, database, self.store_class)

    def stop(self):
        if self.store:
            self.store.close()
            self.store = None

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return self.store


class RequestTransactionFailed(Exception):
    """A step of a request's transaction failed and the request went on: the transaction
    holds that step's writes in part, so the whole request starts again."""


_REQUEST_TRANSACTION = contextvars.ContextVar("request_transaction", default=None)


def _may_try_again(error):
    if isinstance(error, RequestTransactionFailed):
        return True
    return isinstance(error, PyMongoError) and error.has_error_label("TransientTransactionError")


class RequestTransaction:
    """The one transaction of a request done once, which every ``in_transaction`` of the
    worker's green thread joins (a context variable: each worker has its own)."""

    def __init__(self, store, session):
        self.store = store
        self.session = session
        self.failed = False
        self.after_commit = []
        self._token = None

    def __enter__(self):
        self.session.start_transaction()
        self._token = _REQUEST_TRANSACTION.set(self)
        return self

    def __exit__(self, *exc):
        _REQUEST_TRANSACTION.reset(self._token)
        if self.session.in_transaction:
            self.session.abort_transaction()

    def run(self, work):
        """``work(session)`` in the request's transaction. A step that raises leaves its
        writes in it, so when the request carries on all the same it starts again."""
        if self.failed:
            raise RequestTransactionFailed()
        try:
            return work(self.session)
        except BaseException:
            self.failed = True
            raise

    def commit(self):
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                self.session.commit_transaction()
                return
            except PyMongoError as error:
                if attempt + 1 == COMMIT_ATTEMPTS or \
                        not error.has_error_label("UnknownTransactionCommitResult"):
                    raise


class OnceRequest:
    """A worker's request identity (None when the caller sent none). See RequestsOnce."""

    def __init__(self, store, request_id, cipher):
        self.store = store
        self.request_id = request_id
        self.cipher = cipher

    def answer(self, run, in_steps=False):
        """``run()``'s answer, done once per request identity."""
        if self.request_id is None:
            return run()
        done = self.store.in_request_steps if in_steps else self.store.in_request_transaction
        return done(self.request_id, run, self._seal, self._unseal)

    def _seal(self, answer):
        # As the RPC reply carries it (times and dates included), so the retry's is the same.
        return self.cipher.encrypt(kombu_json.dumps(answer), context=self.request_id)

    def _unseal(self, done):
        if "sealed_answer" not in done:   # recorded by an earlier release, as it was
            return done["answer"]
        return kombu_json.loads(self.cipher.decrypt(done["sealed_answer"],
                                                    context=self.request_id))


class RequestsOnce(DependencyProvider):
    """Injects the worker's OnceRequest; with ``once_per_request`` on an entrypoint, a
    mutation is done once per request identity. The gateway sends the identity with each
    call of a request sent with an Idempotency-Key (context data ``request_id``, derived
    from the caller's key and body): a retry after a lost reply, a killed service or a
    restarted gateway gets the first answer and nothing is written twice.

    The identity is taken out of the worker's context data, so the worker's own calls and
    events do not carry it on. The answers are sealed with the service's data key: an
    answer may hold personal data or a verification code."""

    MAX_ID_CHARS = 200

    def setup(self):
        with settings.stop_if_misconfigured():
            self.cipher = data_cipher(self.container.config)

    def get_dependency(self, worker_ctx):
        storage = next(d for d in self.container.dependencies if isinstance(d, Storage))
        request_id = worker_ctx.data.pop(REQUEST_KEY, None)
        if not isinstance(request_id, str) or not 0 < len(request_id) <= self.MAX_ID_CHARS:
            request_id = None
        return OnceRequest(storage.store, request_id, self.cipher)


def once_per_request(entrypoint=None, *, in_steps=False):
    """Put under ``@rpc`` of a mutation: done once per request identity, every later call
    with that identity answers what the first one answered (see RequestsOnce). The service
    has ``once = RequestsOnce()`` (every PlatformService has) and writes through its
    store's ``in_transaction``; what must wait for the commit goes to ``after_commit``.

    ``in_steps=True`` for work that commits in steps of its own, each of which a later run
    takes up (a payout batch marks its claims paid a chunk per transaction): the steps
    commit as they go and the answer is recorded after the last one."""
    if entrypoint is None:
        return functools.partial(once_per_request, in_steps=in_steps)

    @functools.wraps(entrypoint)
    def done_once(self, *args, **kwargs):
        return self.once.answer(lambda: entrypoint(self, *args, **kwargs), in_steps)

    return done_once

"""One MongoDB database per service, through pymongo.

``MONGO_URI`` set: a real mongod (docker-compose, Kubernetes). Unset: the process starts the
embedded MongoDB-wire-protocol server (SecantusDB) on a free local port, with its files in
``$MANTELZORG_DATA_DIR/<database>`` so they survive restarts. Either way the service talks
pymongo over the wire, through the same code.
"""
import os
from datetime import timedelta

from nameko.extensions import DependencyProvider
from pymongo import ASCENDING, MongoClient
from pymongo.errors import DuplicateKeyError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from common import clock
from common import config as settings

PROCESSED_EVENTS = "processed_events"
# The requests a service has done, by the request identity the gateway derives from an
# Idempotency-Key (see RequestsOnce), with their answers; kept for as long as the key.
DONE_REQUESTS = "done_requests"
REQUEST_KEY = "request_id"
REQUESTS_KEPT_FOR = timedelta(hours=24)


# The platform's clock (common.clock), under the names the store's callers use.
utcnow = clock.now
utcnow_millis = clock.now_millis


class EmbeddedServer:
    """The embedded document store, started in this process."""

    def __init__(self, storage_path):
        from secantus import SecantusDBServer  # only needed when no MONGO_URI is given

        durability = {}
        if storage_path != ":memory:":
            os.makedirs(storage_path, exist_ok=True)
            # Every commit reaches the disk before it is acknowledged. Without it a process
            # killed with SIGKILL loses the commits of its last moments, though it had told
            # its callers they succeeded. Costs about 0.3 ms a commit.
            durability["sync_on_commit"] = True
        self.server = SecantusDBServer(storage_path=storage_path, port=0, **durability)
        self.server.start()

    @property
    def uri(self):
        return self.server.uri

    def stop(self):
        self.server.stop()


class DocumentStore:
    """A service's database with transactions and the inbox for idempotent consumers.

    Each service subclasses it in its ``storage.py`` as its store class: the named queries
    of that service and its indexes (``ensure_indexes``), the only place that writes a
    pymongo filter for it."""

    def __init__(self, database, mongo_uri="", data_dir=".data"):
        self.database_name = database
        self.embedded = None
        if not mongo_uri:
            if settings.is_production():
                raise settings.missing_in_production(
                    "MONGO_URI", "the embedded store is for development only")
            path = data_dir if data_dir == ":memory:" else os.path.join(data_dir, database)
            self.embedded = EmbeddedServer(path)
            mongo_uri = self.embedded.uri
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
        """Run ``work(session)`` in one multi-document transaction, retried when transient."""
        with self.client.start_session() as session:
            return session.with_transaction(work)

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
            inbox.insert_one({"_id": str(event_id), "handled_at": utcnow()}, session=session)
            work(session)
            return True

        return self.in_transaction(once)

    def answer_of_request(self, request_id, now=None):
        """The answer recorded for a request done within the last 24 hours, else None. An
        older record still stored counts as forgotten (the TTL index removes it in time)."""
        since = (now or utcnow()) - REQUESTS_KEPT_FOR
        self.db[DONE_REQUESTS].delete_one({"_id": request_id, "done_at": {"$lte": since}})
        done = self.db[DONE_REQUESTS].find_one({"_id": request_id, "done_at": {"$gt": since}})
        return None if done is None else done["answer"]

    def record_request(self, session, request_id, answer):
        """Records a request as done with its answer, in the transaction of its write: a
        second execution of the same request conflicts on the unique id and writes nothing."""
        self.db[DONE_REQUESTS].insert_one({"_id": request_id, "answer": answer,
                                           "done_at": utcnow()}, session=session)

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
        counted and left as it is. Returns the report of ``reencrypt-personal-data``."""
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


class OnceRequest:
    """A worker's request identity (None when the caller sent none) and what was recorded
    for it. See RequestsOnce."""

    def __init__(self, store, request_id):
        self.store = store
        self.request_id = request_id
        self.recording = False

    def answer(self, run):
        """``run()``'s answer the first time this request is done; the recorded answer when
        it was done before. ``run`` writes in one transaction that calls ``record``."""
        if self.request_id is None:
            return run()
        earlier = self.store.answer_of_request(self.request_id)
        if earlier is not None:
            return earlier
        self.recording = True
        try:
            return run()
        except DuplicateKeyError:
            # The same request done at the same moment by another worker: its answer.
            earlier = self.store.answer_of_request(self.request_id)
            if earlier is None:
                raise
            return earlier
        finally:
            self.recording = False

    def record(self, session, answer):
        """Inside the transaction of the write under ``answer``: records the request as
        done with ``answer`` (nothing without a request identity or outside ``answer``)."""
        if self.recording:
            self.store.record_request(session, self.request_id, answer)


class RequestsOnce(DependencyProvider):
    """Injects the worker's OnceRequest: a mutation that creates something is done once per
    request identity. The gateway sends the identity with the call (context data
    ``request_id``, derived from the caller's Idempotency-Key and body) when its reply may
    have been lost: the retry gets the first answer and nothing is written twice.

    The identity is taken out of the worker's context data, so the worker's own calls and
    events do not carry it on. Answers are stored as they are, so they must hold no personal
    data; the creating mutations' answers hold none (a public view, an order, a campaign)."""

    MAX_ID_CHARS = 200

    def get_dependency(self, worker_ctx):
        storage = next(d for d in self.container.dependencies if isinstance(d, Storage))
        request_id = worker_ctx.data.pop(REQUEST_KEY, None)
        if not isinstance(request_id, str) or not 0 < len(request_id) <= self.MAX_ID_CHARS:
            request_id = None
        return OnceRequest(storage.store, request_id)

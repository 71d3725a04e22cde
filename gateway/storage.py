"""The gateway's own database (``mantelzorg_gateway``): the idempotency keys
(``gateway/idempotency.py``) and the server's record of each signed-in web session
(``gateway/web/session.py``), which every replica of the gateway reads."""
from datetime import datetime, timedelta, timezone

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from common.storage import DocumentStore
from gateway.web.session import ABSOLUTE_SECONDS

WEB_SESSIONS = "web_sessions"
KEYS = "idempotency_keys"
KEPT_FOR = timedelta(hours=24)
RUNNING, DONE = "running", "done"


class IdempotencyStore(DocumentStore):
    """The gateway's database: the idempotency keys of the last 24 hours."""

    def ensure_indexes(self):
        # The database forgets a key after a day; claim() does not rely on when it does.
        self.db[KEYS].create_index([("created_at", ASCENDING)],
                                   expireAfterSeconds=int(KEPT_FOR.total_seconds()))

    def claim(self, record, body, now, deadline):
        """Records the key as running until ``deadline``; returns None when this request
        may run, else the record that is there (running or done).

        A key still running after its deadline belongs to a request whose gateway died or
        lost its database: nothing of it runs any more (a service refuses a call past its
        deadline), so a retry with the same body takes the key over."""
        self.db[KEYS].delete_one({"_id": record, "created_at": {"$lte": now - KEPT_FOR}})
        try:
            self.db[KEYS].insert_one({"_id": record, "body": body, "state": RUNNING,
                                      "created_at": now, "deadline": deadline})
            return None
        except DuplicateKeyError:
            pass
        taken = self.db[KEYS].update_one(
            {"_id": record, "body": body, "state": RUNNING, "deadline": {"$lt": now}},
            {"$set": {"created_at": now, "deadline": deadline}})
        if taken.modified_count == 1:
            return None
        return self.db[KEYS].find_one({"_id": record})

    def extend(self, record, deadline):
        """The running request takes longer (a long call): its key is held until then."""
        self.db[KEYS].update_one({"_id": record, "state": RUNNING, "deadline": {"$lt": deadline}},
                                 {"$set": {"deadline": deadline}})

    def finish(self, record, sealed_answer):
        self.db[KEYS].update_one({"_id": record, "state": RUNNING},
                                 {"$set": {"state": DONE, "answer": sealed_answer}})

    def release(self, record):
        """Forgets a running key: its request changed nothing, so a retry may run."""
        self.db[KEYS].delete_one({"_id": record, "state": RUNNING})


class GatewayStore(IdempotencyStore):

    def ensure_indexes(self):
        super().ensure_indexes()
        # No session lives longer than the absolute limit; the database then forgets it.
        self.db[WEB_SESSIONS].create_index([("started_at", ASCENDING)],
                                           expireAfterSeconds=ABSOLUTE_SECONDS)

    def open_session(self, record, now):
        self.db[WEB_SESSIONS].insert_one({
            "_id": record, "started_at": datetime.fromtimestamp(now, timezone.utc),
            "seen": now})

    def touch_session(self, record, seen_after, now):
        """Marks the session seen now if it is open and was seen after ``seen_after``;
        whether it was."""
        touched = self.db[WEB_SESSIONS].update_one({"_id": record, "seen": {"$gt": seen_after}},
                                                   {"$set": {"seen": now}})
        return touched.matched_count == 1

    def end_session(self, record):
        self.db[WEB_SESSIONS].delete_one({"_id": record})

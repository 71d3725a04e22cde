"""The gateway's own database (``mantelzorg_gateway``): the idempotency keys
(``gateway/idempotency.py``) and the server's record of each signed-in web session
(``gateway/web/session.py``), which every replica of the gateway reads."""
from datetime import datetime, timezone

from pymongo import ASCENDING

from gateway.idempotency import IdempotencyStore
from gateway.web.session import ABSOLUTE_SECONDS

WEB_SESSIONS = "web_sessions"


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

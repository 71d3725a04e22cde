"""The notifications service's collections, their indexes and its named queries."""
from datetime import timedelta

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import OperationFailure

from common.storage import DocumentStore
from services.notifications.domain import PARKED, PENDING, SENT

MESSAGES = "messages"          # each caregiver's messages, the text encrypted
MAILS = "mail_queue"           # the e-mail of a message: waiting, sent or parked
DECLARATIONS = "declarations"  # projection of declaration.* events: validity, expiry notice
SENT_KEPT_FOR = timedelta(days=30)


class NotificationsStore(DocumentStore):

    def ensure_indexes(self):
        self.db[MESSAGES].create_index([("owner", ASCENDING), ("sent_at", DESCENDING)])
        # The e-mails to try now (``due_mails``): the embedded store answers equalities and
        # then one range from an index, so the index holds the one time the query ranges on.
        self.db[MAILS].create_index([("status", ASCENDING), ("claimed_until", ASCENDING)])
        # A sent e-mail (its address already removed) is kept a while as a record, then goes.
        self.db[MAILS].create_index([("sent_at", ASCENDING)],
                                    expireAfterSeconds=int(SENT_KEPT_FOR.total_seconds()))
        # The notices due: without notice_sent in it, every issued declaration was read.
        self.db[DECLARATIONS].create_index([("status", ASCENDING), ("notice_sent", ASCENDING),
                                            ("valid_until", ASCENDING)])
        # Re-encryption after a new data key finds the texts and addresses sealed with an
        # earlier key.
        self.db[MESSAGES].create_index([("text.kid", ASCENDING)])
        self.db[MAILS].create_index([("to.kid", ASCENDING)])

    def migrate(self):
        """The indexes the e-mails to try and the notices due were found by before."""
        for collection, replaced in ((MAILS, "status_1_due_at_1"),
                                     (DECLARATIONS, "status_1_valid_until_1")):
            try:
                self.db[collection].drop_index(replaced)
            except OperationFailure:   # never made, or dropped by another replica already
                pass

    # --- messages ---------------------------------------------------------------------------

    def has_message(self, message_id, session=None):
        return self.db[MESSAGES].find_one({"_id": message_id}, {"_id": 1},
                                          session=session) is not None

    def save_message(self, message, mail, session):
        """A message and, when the caregiver gave an address, its e-mail, in the caller's
        transaction; nothing when the message is there already (an event sent again).
        Returns whether it was new."""
        if self.has_message(message["_id"], session):
            return False
        self.db[MESSAGES].insert_one(message, session=session)
        if mail is not None:
            self.db[MAILS].insert_one(mail, session=session)
        return True

    def messages_of(self, owner, limit):
        """The newest ``limit`` messages of the caregiver whose BSN has this keyed hash."""
        return list(self.db[MESSAGES].find({"owner": owner})
                    .sort([("sent_at", DESCENDING), ("_id", DESCENDING)]).limit(limit))

    def message(self, message_id):
        return self.db[MESSAGES].find_one({"_id": message_id})

    # --- the mail queue -----------------------------------------------------------------------

    def due_mails(self, now, limit):
        """Ids of the e-mails to try now, oldest due first. An e-mail's claim never ends
        before it is due (a new or retried one has both times the same, a claim moves only
        ``claimed_until`` on), so one whose claim has ended is due."""
        found = self.db[MAILS].find(
            {"status": PENDING, "claimed_until": {"$lte": now}},
            {"_id": 1}).sort("due_at", ASCENDING).limit(limit)
        return [document["_id"] for document in found]

    def claim_mail(self, mail_id, now, lease_seconds):
        """Only one sender (of this or another replica) holds an e-mail at a time; one that
        dies lets go when its lease runs out. Returns the e-mail, or None when another has it."""
        claimed = self.db[MAILS].update_one(
            {"_id": mail_id, "status": PENDING, "claimed_until": {"$lte": now}},
            {"$set": {"claimed_until": now + timedelta(seconds=lease_seconds)}})
        return self.db[MAILS].find_one({"_id": mail_id}) if claimed.modified_count else None

    def mail_sent(self, mail_id, now):
        """Sent: the address is not kept any longer than needed."""
        self.db[MAILS].update_one({"_id": mail_id}, {
            "$set": {"status": SENT, "sent_at": now}, "$unset": {"to": ""},
            "$inc": {"attempts": 1}})

    def mail_retried(self, mail_id, attempts, due_at, error):
        self.db[MAILS].update_one({"_id": mail_id}, {"$set": {
            "attempts": attempts, "due_at": due_at, "claimed_until": due_at, "last_error": error}})

    def mail_parked(self, mail_id, attempts, now, error):
        """Refused for good: kept (the address encrypted) for an operator to look into."""
        self.db[MAILS].update_one({"_id": mail_id}, {"$set": {
            "status": PARKED, "attempts": attempts, "parked_at": now, "last_error": error}})

    def mail_counts(self):
        """{status: number of e-mails} of the waiting and the parked ones."""
        return {status: self.db[MAILS].count_documents({"status": status})
                for status in (PENDING, PARKED)}

    def parked_mails(self, limit=500):
        return list(self.db[MAILS].find({"status": PARKED}, {"to": 0})
                    .sort("parked_at", ASCENDING).limit(limit))

    # --- the projection of declarations ---------------------------------------------------------

    def save_declaration(self, declaration, session):
        """The newest state of a declaration; whether its expiry notice was sent is kept."""
        stored = self.db[DECLARATIONS].find_one({"_id": declaration["_id"]}, {"notice_sent": 1},
                                                session=session)
        document = {**declaration, "notice_sent": bool((stored or {}).get("notice_sent"))}
        return self.replace_if_newer(DECLARATIONS, document, "changed_at", session=session)

    def due_for_expiry_notice(self, until, limit):
        """Issued declarations whose validity ends on or before ``until`` (ISO date) and
        whose notice was not sent yet."""
        return list(self.db[DECLARATIONS].find(
            {"status": "ISSUED", "valid_until": {"$lte": until}, "notice_sent": False})
            .sort("valid_until", ASCENDING).limit(limit))

    def mark_notice_sent(self, declaration_id, session):
        """Claims the notice in the caller's transaction: of two replicas, one changes it."""
        changed = self.db[DECLARATIONS].update_one(
            {"_id": declaration_id, "status": "ISSUED", "notice_sent": False},
            {"$set": {"notice_sent": True}}, session=session)
        return changed.modified_count == 1

"""The declaration service's database: its named queries and its indexes. The only module of
the service that writes a pymongo filter or update."""
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import OperationFailure

from common.storage import DocumentStore
from services.declaration.domain import ISSUED, REQUESTED, SEALED_FIELDS

MUNICIPALITIES = "municipalities"        # projection of municipality.imported
DECLARATIONS = "declarations"            # one document per declaration, with its audit trail
SETTINGS = "municipality_settings"       # local choices; absent values take national defaults
COUNTERS = "counters"                    # per-year reference numbers
CHECK_FAILURES = "check_failures"        # failed checks per client, shared by replicas
# Append-only: every read of an applicant's personal data by someone else than the owner.
# Nothing here updates or removes an entry.
PERSONAL_DATA_READS = "personal_data_reads"

# What a partner's check reads of a declaration: nothing personal.
_CHECKED_FIELDS = {"verification_hash": 1, "reference": 1, "status": 1, "valid_from": 1,
                   "valid_until": 1, "purposes": 1, "municipality_code": 1, "token": 1}


class DeclarationStore(DocumentStore):
    """Declarations, the municipalities and their local choices, reference numbers and the
    failed checks of partners."""

    def ensure_indexes(self):
        self.db[MUNICIPALITIES].create_index("name")
        declarations = self.db[DECLARATIONS]
        declarations.create_index("reference", unique=True)
        # One active (requested or issued) declaration per caregiver, recipient and
        # municipality: the key exists only while the declaration is active.
        # Sparse, not partial: the embedded store answers an equality lookup from a sparse
        # index but scans the collection for a partial one, which an earlier release made.
        if "partialFilterExpression" in declarations.index_information().get("active_key_1", {}):
            declarations.drop_index("active_key_1")
        declarations.create_index("active_key", unique=True, sparse=True)
        declarations.create_index([("municipality_code", ASCENDING), ("status", ASCENDING),
                                   ("reference", ASCENDING)])
        declarations.create_index([("status", ASCENDING), ("valid_until", ASCENDING)])
        # A caregiver's declarations, newest first: the BSN's keyed hash, never the BSN.
        declarations.create_index([("caregiver_key", ASCENDING), ("created_at", DESCENDING)])
        # Re-encryption after a new data key finds the values sealed with an earlier key.
        for field in SEALED_FIELDS:
            declarations.create_index(f"{field}.kid")
        self.db[CHECK_FAILURES].create_index("window_start")
        self.db[PERSONAL_DATA_READS].create_index([("caregiver_key", ASCENDING),
                                                   ("at", DESCENDING)])
        # The reads' sealed reader, found by its key at re-encryption (DocumentStore.reencrypt).
        self.db[PERSONAL_DATA_READS].create_index("reader.kid")

    def migrate(self):
        """Declarations stored before they belonged to the BSN they carry named an ``owner``:
        the caregiver's token subject. Whose a declaration is now follows from the keyed hash
        of its BSN (``caregiver_key``, stored with every declaration from the start), so the
        subject and its index are dropped."""
        self.db[DECLARATIONS].update_many({"owner": {"$exists": True}}, {"$unset": {"owner": ""}})
        for obsolete in ("owner_1_created_at_-1", "caregiver_key_1"):
            try:
                self.db[DECLARATIONS].drop_index(obsolete)
            except OperationFailure:   # never made, or dropped by another replica already
                pass

    # --- municipalities and their choices -------------------------------------------------

    def save_municipality(self, municipality, session=None):
        self.db[MUNICIPALITIES].replace_one({"_id": municipality["_id"]}, municipality,
                                            upsert=True, session=session)

    def municipality(self, code):
        return self.db[MUNICIPALITIES].find_one({"_id": code})

    def knows_municipality(self, code):
        return self.db[MUNICIPALITIES].find_one({"_id": code}, {"_id": 1}) is not None

    def settings_of(self, code):
        """The stored local choices of a municipality, or None."""
        return self.db[SETTINGS].find_one({"_id": code})

    def save_settings(self, document):
        self.db[SETTINGS].replace_one({"_id": document["_id"]}, document, upsert=True)

    # --- declarations ---------------------------------------------------------------------

    def next_reference_number(self, year):
        """The next number of the year's references, unique across replicas."""
        return self.count_up(COUNTERS, f"reference-{year}", "value")

    def find_by_id(self, declaration_id, session=None):
        return self.db[DECLARATIONS].find_one({"_id": str(declaration_id)}, session=session)

    def find_by_reference(self, reference):
        return self.db[DECLARATIONS].find_one({"reference": reference})

    def find_by_ids(self, declaration_ids):
        return list(self.db[DECLARATIONS].find({"_id": {"$in": [str(i) for i in declaration_ids]}}))

    def waiting_per_municipality(self, overdue_before):
        """{municipality code: {"waiting", "oldest" (created_at), "overdue"}} of the requests
        waiting for a decision; overdue: those requested before ``overdue_before``."""
        # One pass over the waiting requests, which the (status, ...) index finds; a second
        # query for the overdue ones with its created_at range made the embedded store scan.
        waiting = self.db[DECLARATIONS].aggregate([
            {"$match": {"status": REQUESTED}},
            {"$group": {"_id": "$municipality_code", "waiting": {"$sum": 1},
                        "oldest": {"$min": "$created_at"},
                        "overdue": {"$sum": {"$cond": [
                            {"$lt": ["$created_at", overdue_before]}, 1, 0]}}}}])
        return {entry["_id"]: {"waiting": entry["waiting"], "oldest": entry["oldest"],
                               "overdue": entry["overdue"]} for entry in waiting}

    # --- the log of reads of personal data (append-only) ----------------------------------

    def record_reads(self, entries):
        if entries:
            self.db[PERSONAL_DATA_READS].insert_many(entries)

    def reads_of(self, caregiver_key):
        """Every recorded read of the personal data of this caregiver, newest first."""
        return list(self.db[PERSONAL_DATA_READS].find({"caregiver_key": caregiver_key})
                    .sort("at", DESCENDING))

    def owned_by(self, caregiver_key):
        """Every declaration of the caregiver whose BSN has this keyed hash, newest first."""
        return list(self.db[DECLARATIONS].find({"caregiver_key": caregiver_key})
                    .sort("created_at", DESCENDING))

    def find_for_check(self, reference):
        """What a partner's check needs of the declaration with this reference, or None."""
        return self.db[DECLARATIONS].find_one({"reference": reference}, _CHECKED_FIELDS)

    def active_reference(self, active_key):
        """The reference of the active declaration holding ``active_key``, or None."""
        found = self.db[DECLARATIONS].find_one({"active_key": active_key}, {"reference": 1})
        return found and found["reference"]

    def page_of_municipality(self, code, status, after, first):
        """A municipality's declarations by reference, those after ``after`` (a reference)."""
        query = {"municipality_code": code}
        if status:
            query["status"] = status
        if after:
            query["reference"] = {"$gt": after}
        return list(self.db[DECLARATIONS].find(query).sort("reference", ASCENDING).limit(first))

    def due_for_expiry(self, today, limit):
        """Ids of issued declarations whose validity ended before ``today`` (ISO date)."""
        found = self.db[DECLARATIONS].find(
            {"status": ISSUED, "valid_until": {"$lt": today}}, {"_id": 1}).limit(limit)
        return [document["_id"] for document in found]

    def insert(self, document, session):
        """A new declaration, in the caller's transaction."""
        self.db[DECLARATIONS].insert_one(document, session=session)

    def change_if_status(self, declaration_id, status, changes, history_entry, release=(),
                         session=None):
        """Applies ``changes``, appends the audit entry and removes the fields ``release``
        names, only while the declaration is still at ``status``: of two workers (or
        replicas) making the same step, one finds nothing. Returns the changed declaration
        or None."""
        update = {"$set": changes, "$push": {"history": history_entry}}
        if release:
            update["$unset"] = {field: "" for field in release}
        return self.change_by_id(DECLARATIONS, declaration_id,
                                 lambda found: found.get("status") == status, update, session)

    def replace_code(self, declaration_id, verification_hash, code_fields, history_entry):
        """A new verification code (``code_fields``) and its audit entry, only while the
        code is still the one with ``verification_hash``: of two renewals at once, one finds
        nothing. Returns the changed declaration or None."""
        return self.change_by_id(
            DECLARATIONS, declaration_id,
            lambda found: found.get("verification_hash") == verification_hash,
            {"$set": code_fields, "$push": {"history": history_entry}})

    # --- encrypted fields under earlier keys ----------------------------------------------

    def sealed_with(self, field, key_ids, limit):
        """(id, ciphertext) of ``field`` of up to ``limit`` declarations where one of
        ``key_ids`` encrypted it."""
        found = self.db[DECLARATIONS].find({f"{field}.kid": {"$in": list(key_ids)}},
                                           {field: 1}).limit(limit)
        return [(document["_id"], document[field]) for document in found]

    def reseal(self, declaration_id, field, sealed_before, sealed_now):
        """Replaces the ciphertext only if no other replica re-encrypted it meanwhile."""
        changed = self.change_by_id(
            DECLARATIONS, declaration_id,
            lambda found: (found.get(field) or {}).get("kid") == sealed_before["kid"],
            {"$set": {field: sealed_now}})
        return int(changed is not None)

    def count_sealed_with(self, field, key_ids):
        return self.db[DECLARATIONS].count_documents({f"{field}.kid": {"$in": list(key_ids)}})

    def unknown_key_ids(self, field, known_key_ids):
        """The key ids that encrypted ``field`` and are none of ``known_key_ids``, and how
        many declarations hold such a ``field``."""
        unknown = {f"{field}.kid": {"$exists": True, "$nin": list(known_key_ids)}}
        key_ids = sorted(self.db[DECLARATIONS].distinct(f"{field}.kid", unknown))
        return key_ids, (self.db[DECLARATIONS].count_documents(unknown) if key_ids else 0)

    # --- failed checks per client ---------------------------------------------------------

    def count_check_failure(self, client, window_opened_after, now):
        """One more failure of ``client`` in its open window (opened after
        ``window_opened_after``), or a new window from ``now``. Returns the window."""
        entry = self.change_by_id(CHECK_FAILURES, client,
                                  lambda found: found["window_start"] > window_opened_after,
                                  {"$inc": {"failures": 1}})
        if entry is None:   # no window open for this client: this failure opens one
            entry = {"_id": client, "window_start": now, "failures": 1}
            self.db[CHECK_FAILURES].replace_one({"_id": client}, entry, upsert=True)
        return entry

    def windows_at_limit(self, window_opened_after, max_failures):
        """{client: window start} of the open windows with ``max_failures`` or more."""
        # By the window alone, which the embedded store answers from its index; the count
        # is compared here (a second condition in the filter makes it plan a scan).
        found = self.db[CHECK_FAILURES].find({"window_start": {"$gt": window_opened_after}},
                                             {"window_start": 1, "failures": 1})
        return {entry["_id"]: entry["window_start"] for entry in found
                if entry["failures"] >= max_failures}

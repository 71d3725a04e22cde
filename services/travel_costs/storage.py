"""The travel-cost fund's collections, their indexes and its named queries."""
import itertools
import time

import gridfs
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from common.schemas.travel_costs import CLAIM_STATUSES
from common.storage import DocumentStore
from services.travel_costs.domain import (APPROVED, LISTED, OPEN, PAID,
                                          PREPARING, RELEASED, RELEASING)

DECLARATIONS = "declarations"            # projection of declaration.* events
DUPLICATE_KEY = 11000                    # MongoDB's error code for a unique key taken
PC4_AREAS = "pc4_areas"                  # projection of pc4_areas.imported: the centroids
CLAIMS = "claims"                        # one document per claim, with its audit trail
TRIP_KEYS = "trip_keys"                  # one per claimed trip: the same trip is claimed once
ANNUAL_GRANTS = "annual_grants"          # cents granted per caregiver and calendar year
PAYOUT_BATCHES = "payout_batches"
PAYOUT_FILE_PARTS = "payout_file_parts"  # the SEPA files, encrypted, in parts of 1 MiB
LEGACY_FILES = "payout_files"            # GridFS bucket of an earlier release's plain files
MIGRATIONS = "migrations"                # which of migrate()'s one-off steps are done
OBJECT_ID_SECOND = 16 ** 16              # an ObjectId read as a number: one second of them


def _object_id_text(number):
    """The 24 hex digits of an ObjectId read as a number: their order is the numbers'."""
    return format(number, "024x")


class TravelCostsStore(DocumentStore):
    """The travel costs service's database: its named queries and indexes."""

    def ensure_indexes(self):
        self.db[CLAIMS].create_index([("caregiver_key", ASCENDING), ("submitted_at", DESCENDING)])
        self.db[CLAIMS].create_index([("status", ASCENDING), ("_id", ASCENDING)])
        # Each of these serves one query's equalities and then its one range or list, the
        # shape the embedded store answers from an index: with a field of the query beside
        # the index it looked up the first field alone (every claim of the declaration or
        # of the caregiver).
        self.db[CLAIMS].create_index([("declaration_reference", ASCENDING),
                                      ("batch_id", ASCENDING), ("status", ASCENDING)])
        self.db[CLAIMS].create_index([("caregiver_key", ASCENDING), ("status", ASCENDING),
                                      ("paid_at", ASCENDING)])
        # The approved claims not in a batch (batch_id null), a batch's claims, and a chunk
        # of them by its range of ids: the embedded store answers each from this index
        # alone; with (batch_id, status) it read the whole batch for every chunk.
        self.db[CLAIMS].create_index([("batch_id", ASCENDING), ("status", ASCENDING),
                                      ("_id", ASCENDING)])
        # Re-encryption after a new data key finds the accounts sealed with an earlier key.
        self.db[CLAIMS].create_index([("account.kid", ASCENDING)])
        self.db[PAYOUT_BATCHES].create_index([("status", ASCENDING), ("lease_until", ASCENDING)])
        self.db[PAYOUT_BATCHES].create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        # Only an earlier release's batches have a plain file: sparse, so the index holds them
        # alone.
        self.db[PAYOUT_BATCHES].create_index([("file_id", ASCENDING)], sparse=True)
        self.db[PAYOUT_FILE_PARTS].create_index([("batch_id", ASCENDING), ("part", ASCENDING)])
        self.db[PAYOUT_FILE_PARTS].create_index([("sealed.kid", ASCENDING)])

    def migrate(self):
        """What earlier releases stored: the owner of a claim and its index (never read),
        claims without a batch field (an approved claim not in a batch has batch_id null, so
        the index finds it), the indexes a batch's claims, a declaration's open claims and a
        caregiver's paid claims were found by before, and batches paid at once (before four
        eyes) shown as released."""
        declarations, claims = self.db[DECLARATIONS], self.db[CLAIMS]
        if "owner_1" in declarations.index_information():
            declarations.drop_index("owner_1")
        for replaced in ("batch_id_1_status_1", "declaration_reference_1_status_1",
                         "caregiver_key_1_paid_at_1"):
            if replaced in claims.index_information():
                claims.drop_index(replaced)
        if self.db[MIGRATIONS].find_one({"_id": "four-eyes"}) is None:
            # Once: each of these reads a whole collection.
            declarations.update_many({"owner": {"$exists": True}}, {"$unset": {"owner": ""}})
            claims.update_many({"owner": {"$exists": True}}, {"$unset": {"owner": ""}})
            claims.update_many({"batch_id": {"$exists": False}}, {"$set": {"batch_id": None}})
            for batch in self.db[PAYOUT_BATCHES].find({"status": "PAID"}):
                self.db[PAYOUT_BATCHES].update_one(
                    {"_id": batch["_id"], "status": "PAID"},
                    {"$set": {"status": RELEASED, "released_at": batch.get("paid_at")}})
            self.db[MIGRATIONS].update_one({"_id": "four-eyes"}, {"$set": {"done": True}},
                                           upsert=True)

    # --- projections of other services' events --------------------------------------------

    def save_declaration(self, declaration, session):
        """Returns whether the stored copy was older and is now replaced."""
        return self.replace_if_newer(DECLARATIONS, declaration, "changed_at", session=session)

    def declaration(self, reference):
        return self.db[DECLARATIONS].find_one({"_id": reference, "status": {"$exists": True}})

    def touch_declaration(self, reference, now, session):
        """The fund's copy of a declaration, written to: a claim submitted while its
        declaration's end is being recorded conflicts with that write, and one of the two
        transactions retries and sees the other."""
        self.db[DECLARATIONS].update_one({"_id": reference}, {"$set": {"claimed_at": now}},
                                         upsert=True, session=session)
        return self.db[DECLARATIONS].find_one({"_id": reference}, session=session)

    def save_pc4_areas(self, areas, session):
        for area in areas:
            self.replace_if_newer(PC4_AREAS, area, "changed_at", session=session)

    def pc4_area_count(self):
        return self.db[PC4_AREAS].estimated_document_count()

    def centroids(self, pc4s=None):
        """PC4 -> (latitude, longitude) of the areas the fund knows (those of ``pc4s`` when
        given, else all)."""
        query = {} if pc4s is None else {"_id": {"$in": sorted(set(pc4s))}}
        return {a["_id"]: (a["lat"], a["lon"])
                for a in self.db[PC4_AREAS].find(query, {"lat": 1, "lon": 1})}

    # --- claims -----------------------------------------------------------------------------

    def claimed_trips(self, trip_keys):
        """Which of these trips some claim already has."""
        return {k["_id"] for k in self.db[TRIP_KEYS].find({"_id": {"$in": list(trip_keys)}}, {"_id": 1})}

    def record_trips(self, trip_keys, claim_id, session):
        """Fails with DuplicateKeyError when a trip is claimed already (also by a claim
        being submitted at the same moment)."""
        try:
            self.db[TRIP_KEYS].insert_many(
                [{"_id": key, "claim_id": claim_id} for key in trip_keys], ordered=True,
                session=session)
        except BulkWriteError as error:   # insert_many reports a duplicate key as a batch error
            if any(e.get("code") == DUPLICATE_KEY for e in error.details.get("writeErrors", [])):
                raise DuplicateKeyError("a trip is claimed already", DUPLICATE_KEY) from None
            raise

    @staticmethod
    def _grant_id(caregiver_key, year):
        return f"{caregiver_key}:{year}"

    def ensure_grant_counters(self, caregiver_key, years):
        """Counters exist before the transactions that add to them: an upsert inside two
        racing transactions would both insert. Only the missing ones are written: a read by
        their ids costs less than a write, and most claims find their counters."""
        missing = set(years) - set(self.granted(caregiver_key, years, None))
        if missing:
            self.db[ANNUAL_GRANTS].bulk_write([
                UpdateOne({"_id": self._grant_id(caregiver_key, year)},
                          {"$setOnInsert": {"cents": 0}}, upsert=True) for year in sorted(missing)])

    def granted(self, caregiver_key, years, session):
        """Cents granted so far per calendar year."""
        found = self.db[ANNUAL_GRANTS].find(
            {"_id": {"$in": [self._grant_id(caregiver_key, year) for year in years]}},
            session=session)
        return {int(d["_id"].rsplit(":", 1)[1]): d["cents"] for d in found}

    def add_grant(self, caregiver_key, year, cents, granted_before, session):
        """Adds to a year's counter only if it still holds what was read; False when another
        claim of this caregiver changed it meanwhile."""
        changed = self.db[ANNUAL_GRANTS].update_one(
            {"_id": self._grant_id(caregiver_key, year), "cents": granted_before},
            {"$inc": {"cents": cents}}, session=session)
        return changed.modified_count == 1

    def release_grants(self, caregiver_key, grants, session):
        for year, cents in grants.items():
            self.db[ANNUAL_GRANTS].update_one({"_id": self._grant_id(caregiver_key, year)},
                                              {"$inc": {"cents": -cents}}, session=session)

    def insert_claim(self, claim, session):
        self.db[CLAIMS].insert_one(claim, session=session)

    def claim(self, claim_id, session=None):
        return self.db[CLAIMS].find_one({"_id": str(claim_id)}, session=session)

    def claims_of(self, caregiver_key):
        """A caregiver's claims, newest first."""
        return list(self.db[CLAIMS].find({"caregiver_key": caregiver_key})
                    .sort("submitted_at", DESCENDING))

    def claims_page(self, status, first, after):
        """Claims in the order they were submitted (ids grow with time); ``after`` is the
        last id of the previous page. Without a status, the pages of every status are read
        through the (status, _id) index and merged: the embedded store reads the whole
        collection for a filter of no field or of a range of ids alone."""
        pages = []
        for each in [status] if status else CLAIM_STATUSES:
            query = {"status": each}
            if after:
                query["_id"] = {"$gt": after}
            pages += self.db[CLAIMS].find(query).sort("_id", ASCENDING).limit(first)
        return sorted(pages, key=lambda claim: claim["_id"])[:first]

    def change_claim(self, claim_id, before, after, entry, session, changes=None, unset=None):
        """One step of a claim with its audit entry, only from the status read: None when
        another step came first."""
        update = {"$set": {"status": after, "updated_at": entry["at"], **(changes or {})},
                  "$push": {"history": entry}}
        if unset:
            update["$unset"] = {name: "" for name in unset}
        # update_one, then a read: the embedded store answers find_one_and_update by
        # scanning the collection, update_one from the _id index.
        changed = self.db[CLAIMS].update_one({"_id": claim_id, "status": before}, update,
                                             session=session)
        return self.claim(claim_id, session) if changed.modified_count else None

    def open_claims_on(self, reference, session):
        """Claims on a declaration that are not decided for good and not in a payout batch."""
        return list(self.db[CLAIMS].find(
            {"declaration_reference": reference, "status": {"$in": list(OPEN)},
             "batch_id": None}, session=session))

    def paid_claims(self, caregiver_key, start, end):
        return list(self.db[CLAIMS].find(
            {"caregiver_key": caregiver_key, "status": PAID, "paid_at": {"$gte": start, "$lt": end}},
            {"declaration_reference": 1, "paid_at": 1, "amount_cents": 1}).sort("paid_at", ASCENDING))

    # --- payout batches -------------------------------------------------------------------

    def insert_batch(self, batch):
        self.db[PAYOUT_BATCHES].insert_one(batch)

    def batch(self, batch_id, session=None):
        return self.db[PAYOUT_BATCHES].find_one({"_id": str(batch_id)}, session=session)

    def batches_page(self, first, after_batch):
        """Proposed and released batches, newest first; after ``after_batch`` (a batch).
        Which come after it is decided here: the embedded store reads the whole collection
        for a filter with an ``$or``, and every listed batch for the status alone."""
        listed = self.db[PAYOUT_BATCHES].find({"status": {"$in": list(LISTED)}}, {"history": 0}) \
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
        if after_batch is None:
            return list(listed.limit(first))
        after = (after_batch["created_at"], after_batch["_id"])
        return list(itertools.islice(
            (batch for batch in listed if (batch["created_at"], batch["_id"]) < after), first))

    def change_batch(self, batch_id, before, after, entry, changes=None, unset=(), session=None,
                     lease_until=None):
        """One step of a batch's lifecycle, only from ``before`` (and, when given, while it
        still holds the lease read): False when another step came first."""
        query = {"_id": batch_id, "status": before}
        if lease_until is not None:
            query["lease_until"] = lease_until
        update = {"$set": {"status": after, **(changes or {})}, "$push": {"history": entry}}
        if unset:
            update["$unset"] = {name: "" for name in unset}
        return self.db[PAYOUT_BATCHES].update_one(query, update, session=session) \
            .modified_count == 1

    def stalled_batches(self, now):
        """Batches being prepared or released whose lease has run out: a status at a time,
        each through the (status, lease_until) index."""
        return [batch for status in (PREPARING, RELEASING) for batch in
                self.db[PAYOUT_BATCHES].find({"status": status, "lease_until": {"$lt": now}})]

    def extend_lease(self, batch, lease_until):
        """Only one request takes up a stalled batch: the one that moves its lease."""
        return self.db[PAYOUT_BATCHES].update_one(
            {"_id": batch["_id"], "status": batch["status"], "lease_until": batch["lease_until"]},
            {"$set": {"lease_until": lease_until}}).modified_count == 1

    def reserve_approved_claims(self, batch_id, chunk):
        """Every approved claim not in a batch is reserved for this one: their ids read a
        window of ids at a time (``free_claim_ids``), then ``chunk`` claims at a time by
        their range of ids, each range read through the index alone (one update of the whole
        set cost the embedded store more per claim the more claims there were). Each claim
        is taken by one update only, so two batches made at once never share a claim. The
        ranges that reserved a claim ({"first", "last"}), in the order of their ids."""
        free = {"batch_id": None, "status": APPROVED}
        ranges = []
        for ids in self.free_claim_ids(chunk):
            for start in range(0, len(ids), chunk):
                part = ids[start:start + chunk]
                if self.db[CLAIMS].update_many(
                        {**free, "_id": {"$gte": part[0], "$lte": part[-1]}},
                        {"$set": {"batch_id": batch_id}}).modified_count:
                    ranges.append({"first": part[0], "last": part[-1]})
        return sorted(ranges, key=lambda reserved: reserved["first"])

    def free_claim_ids(self, about):
        """The ids of the approved claims not in a batch, sorted, a window of ids at a time,
        from the newest down. The embedded store reads every document a query matches, in
        full, before it returns the first: one query of every free claim held them all at
        once (about 3 KiB a claim). So each query asks for a window of ids only, which
        narrows or widens to hold about ``about`` claims. Claim ids are ObjectIds (24 hex
        digits, the first 8 the second each was made), so the windows are ranges of those
        numbers; the newest and oldest windows are open, so an id of any other shape is
        found too, once."""
        free = {"batch_id": None, "status": APPROVED}
        # From a second past now: a wider start would first cross the empty seconds ahead,
        # doubling its window on each, and reach the newest claims with too wide a one. The
        # real time, as in the ids (not the clock a test may set); the first window is open
        # above, so no claim is missed either way.
        high = (int(time.time()) + 2) * OBJECT_ID_SECOND
        window = {"$gte": _object_id_text(high)}
        width = OBJECT_ID_SECOND
        while True:
            ids = sorted(c["_id"] for c in self.db[CLAIMS].find({**free, "_id": window},
                                                                  {"_id": 1}))
            if ids:
                yield ids
            if high == 0:
                return
            # An empty window widens slowly: the first claims past a gap are read in a window
            # about a quarter of the gap, however many claims that gap's end holds.
            width = max(1, min(2 * width, width * about // len(ids))) if ids \
                else width + width // 4 + 1
            low = max(0, high - width)
            window = {"$gte": _object_id_text(low)} if low else {}
            window["$lt"] = _object_id_text(high)
            high = low

    def reserved_amounts(self, batch_id, reserved):
        """The batch's claims in one range of ids it reserved (``reserved``: "first",
        "last"), in the order of their ids, only their id and amount: the light pass that
        counts and sums the file before it is written."""
        return self.db[CLAIMS].find(
            {"batch_id": batch_id, "status": APPROVED,
             "_id": {"$gte": reserved["first"], "$lte": reserved["last"]}},
            {"amount_cents": 1}).sort("_id", ASCENDING)

    def reserved_claims(self, batch_id, chunk):
        """One chunk (a range of ids) of the batch's claims for its file, in the order of
        their ids, read through the (batch_id, status, _id) index: only what the file needs."""
        return self.db[CLAIMS].find(
            {"batch_id": batch_id, "status": APPROVED,
             "_id": {"$gte": chunk["first"], "$lte": chunk["last"]}},
            {"amount_cents": 1, "account": 1}).sort("_id", ASCENDING)

    def release_claims(self, batch_id):
        """The batch's approved claims are free for another batch again; their references."""
        references = self.db[CLAIMS].distinct("declaration_reference",
                                              {"batch_id": batch_id, "status": APPROVED})
        self.db[CLAIMS].update_many({"batch_id": batch_id, "status": APPROVED},
                                    {"$set": {"batch_id": None}})
        return references

    def pay_chunk(self, batch_id, chunk, entry, session):
        """Marks one chunk of the batch's claims paid with the audit entry: the claims of
        the range of ids ``chunk`` still unpaid (read through the (batch_id, status, _id)
        index: only these). Returns what their events need."""
        query = {"batch_id": batch_id, "status": APPROVED,
                 "_id": {"$gte": chunk["first"], "$lte": chunk["last"]}}
        claims = list(self.db[CLAIMS].find(query, {"declaration_reference": 1,
                                                   "amount_cents": 1}, session=session))
        if claims:
            self.db[CLAIMS].update_many(
                query, {"$set": {"status": PAID, "paid_at": entry["at"], "updated_at": entry["at"]},
                        "$push": {"history": entry}}, session=session)
        return [{**c, "status": PAID, "batch_id": batch_id} for c in claims]

    # --- the SEPA files: encrypted parts --------------------------------------------------

    def save_file_part(self, part):
        self.db[PAYOUT_FILE_PARTS].insert_one(part)

    def file_part(self, batch_id, number):
        return self.db[PAYOUT_FILE_PARTS].find_one({"batch_id": batch_id, "part": number})

    def delete_file_parts(self, batch_id):
        self.db[PAYOUT_FILE_PARTS].delete_many({"batch_id": batch_id})

    def batches_with_plain_files(self):
        """Batches of an earlier release whose file lies in GridFS as it was written."""
        return list(self.db[PAYOUT_BATCHES].find({"file_id": {"$exists": True}}, {"file_id": 1}))

    def read_legacy_file(self, file_id):
        with gridfs.GridFSBucket(self.db, bucket_name=LEGACY_FILES).open_download_stream(
                file_id) as stream:
            return stream.read()

    def replace_legacy_file(self, batch_id, file_id, parts, size):
        """The encrypted parts take the plain file's place; the plain file is deleted."""
        self.db[PAYOUT_FILE_PARTS].delete_many({"batch_id": batch_id})
        for part in parts:
            self.save_file_part(part)
        self.db[PAYOUT_BATCHES].update_one(
            {"_id": batch_id}, {"$set": {"file_size": size, "file_parts": len(parts)},
                                "$unset": {"file_id": ""}})
        gridfs.GridFSBucket(self.db, bucket_name=LEGACY_FILES).delete(file_id)

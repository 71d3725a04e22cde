"""The travel-cost fund's collections, their indexes and its named queries."""
import gridfs
from pymongo import ASCENDING, DESCENDING, UpdateOne

from common.storage import DocumentStore
from services.travel_costs.domain import APPROVED, OPEN, PAID

DECLARATIONS = "declarations"            # projection of declaration.* events
PC4_AREAS = "pc4_areas"                  # projection of pc4_areas.imported: the centroids
CLAIMS = "claims"                        # one document per claim, with its audit trail
TRIP_KEYS = "trip_keys"                  # one per claimed trip: the same trip is claimed once
ANNUAL_GRANTS = "annual_grants"          # cents granted per caregiver and calendar year
PAYOUT_BATCHES = "payout_batches"
PAYOUT_FILES = "payout_files"            # GridFS bucket of the SEPA files (they outgrow 16 MB)


class TravelCostsStore(DocumentStore):
    """The travel costs service's database: its named queries and indexes."""

    def ensure_indexes(self):
        self.db[DECLARATIONS].create_index([("owner", ASCENDING)])
        self.db[CLAIMS].create_index([("caregiver_key", ASCENDING), ("submitted_at", DESCENDING)])
        self.db[CLAIMS].create_index([("status", ASCENDING), ("_id", ASCENDING)])
        self.db[CLAIMS].create_index([("declaration_reference", ASCENDING), ("status", ASCENDING)])
        self.db[CLAIMS].create_index([("batch_id", ASCENDING), ("status", ASCENDING)])
        self.db[CLAIMS].create_index([("caregiver_key", ASCENDING), ("paid_at", ASCENDING)])
        self.db[PAYOUT_BATCHES].create_index([("status", ASCENDING), ("lease_until", ASCENDING)])
        self.files = gridfs.GridFSBucket(self.db, bucket_name=PAYOUT_FILES)

    # --- projections of other services' events --------------------------------------------

    def save_declaration(self, declaration, session):
        """Returns whether the stored copy was older and is now replaced."""
        return self.replace_if_newer(DECLARATIONS, declaration, "changed_at", session=session)

    def declaration(self, reference):
        return self.db[DECLARATIONS].find_one({"_id": reference, "status": {"$exists": True}},
                                              {"owner": 0})

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
        self.db[TRIP_KEYS].insert_many([{"_id": key, "claim_id": claim_id} for key in trip_keys],
                                       ordered=True, session=session)

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
        last id of the previous page."""
        query = {}
        if status:
            query["status"] = status
        if after:
            query["_id"] = {"$gt": after}
        return list(self.db[CLAIMS].find(query).sort("_id", ASCENDING).limit(first))

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
        """Claims on a declaration that are not decided for good and not being paid."""
        return list(self.db[CLAIMS].find(
            {"declaration_reference": reference, "status": {"$in": list(OPEN)},
             "batch_id": {"$exists": False}}, session=session))

    def paid_claims(self, caregiver_key, start, end):
        return list(self.db[CLAIMS].find(
            {"caregiver_key": caregiver_key, "status": PAID, "paid_at": {"$gte": start, "$lt": end}},
            {"declaration_reference": 1, "paid_at": 1, "amount_cents": 1}).sort("paid_at", ASCENDING))

    # --- payout batches -------------------------------------------------------------------

    def insert_batch(self, batch):
        self.db[PAYOUT_BATCHES].insert_one(batch)

    def batch(self, batch_id):
        return self.db[PAYOUT_BATCHES].find_one({"_id": str(batch_id)})

    def reserve_approved_claims(self, batch_id):
        """Every approved claim not in a batch is reserved for this one. Each claim is
        taken by one update only, so two batches made at once never share a claim."""
        return self.db[CLAIMS].update_many(
            {"status": APPROVED, "batch_id": {"$exists": False}},
            {"$set": {"batch_id": batch_id}}).modified_count

    def reserved_claims(self, batch_id):
        return self.db[CLAIMS].find({"batch_id": batch_id, "status": APPROVED},
                                    {"amount_cents": 1, "account": 1}).sort("_id", ASCENDING)

    def claims_to_pay(self, batch_id):
        """The batch's claims still to be marked paid, in the order of their ids: read once,
        not a query per chunk, which the embedded store would answer by reading the whole
        batch each time."""
        return list(self.db[CLAIMS].find({"batch_id": batch_id, "status": APPROVED},
                                         {"declaration_reference": 1, "amount_cents": 1})
                    .sort("_id", ASCENDING))

    def release_claims(self, batch_id):
        """The batch's approved claims are free for another batch again; their references."""
        references = self.db[CLAIMS].distinct("declaration_reference",
                                              {"batch_id": batch_id, "status": APPROVED})
        self.db[CLAIMS].update_many({"batch_id": batch_id, "status": APPROVED},
                                    {"$unset": {"batch_id": ""}})
        return references

    def pay_claims(self, claims, batch_id, entry, session):
        """Marks these claims of the batch paid, with the audit entry; the claims this call
        changed (all of them, unless another run of the same batch came first)."""
        claim_ids = [c["_id"] for c in claims]
        # ``claims`` follow each other in the batch by id (``claims_to_pay``), so the range of
        # their ids selects exactly them among its unpaid claims. The embedded store compares
        # every claim with every id of an $in list, which made paying 100,000 quadratic.
        changed = self.db[CLAIMS].update_many(
            {"_id": {"$gte": claim_ids[0], "$lte": claim_ids[-1]}, "batch_id": batch_id,
             "status": APPROVED},
            {"$set": {"status": PAID, "paid_at": entry["at"], "updated_at": entry["at"]},
             "$push": {"history": entry}}, session=session).modified_count
        if changed == len(claims):
            return [{**c, "status": PAID, "batch_id": batch_id} for c in claims]
        return list(self.db[CLAIMS].find(
            {"_id": {"$in": claim_ids}, "batch_id": batch_id, "paid_at": entry["at"]},
            {"declaration_reference": 1, "amount_cents": 1, "status": 1, "batch_id": 1},
            session=session))

    def attach_file(self, batch_id, file_id, claim_count, total_cents):
        """The batch's file is stored; False when the batch was given up meanwhile (its
        lease ran out and another request let its claims go)."""
        return self.db[PAYOUT_BATCHES].update_one(
            {"_id": batch_id, "status": "PREPARING", "file_id": {"$exists": False}},
            {"$set": {"file_id": file_id, "claim_count": claim_count,
                      "total_cents": total_cents}}).modified_count == 1

    def finish_batch(self, batch_id, now):
        self.db[PAYOUT_BATCHES].update_one(
            {"_id": batch_id}, {"$set": {"status": "PAID", "paid_at": now},
                                "$unset": {"lease_until": ""}})
        return self.batch(batch_id)

    def stalled_batches(self, now):
        return list(self.db[PAYOUT_BATCHES].find(
            {"status": "PREPARING", "lease_until": {"$lt": now}}))

    def take_over_batch(self, batch, lease_until):
        """Only one request takes up a stalled batch."""
        return self.db[PAYOUT_BATCHES].update_one(
            {"_id": batch["_id"], "status": "PREPARING", "lease_until": batch["lease_until"]},
            {"$set": {"lease_until": lease_until}}).modified_count == 1

    def give_up_batch(self, batch_id, reason):
        """A batch without a stored file is given up; False if its file came meanwhile."""
        return self.db[PAYOUT_BATCHES].update_one(
            {"_id": batch_id, "status": "PREPARING", "file_id": {"$exists": False}},
            {"$set": {"status": "GIVEN_UP", "reason": reason},
             "$unset": {"lease_until": ""}}).modified_count == 1

    # --- the SEPA files -------------------------------------------------------------------

    def save_file(self, name, content):
        return self.files.upload_from_stream(name, content)

    def delete_file(self, file_id):
        self.files.delete(file_id)

    def read_file(self, file_id, offset, length):
        """(total size, up to ``length`` bytes from ``offset``)."""
        with self.files.open_download_stream(file_id) as stream:
            stream.seek(offset)
            return stream.length, stream.read(length)

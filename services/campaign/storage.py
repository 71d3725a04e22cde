"""The campaign service's collections, their indexes and its named queries: the only place
in the service that writes a pymongo filter or update."""
from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError

from common.errors import Conflict
from common.storage import DocumentStore

MUNICIPALITIES = "municipalities"        # projection of municipality.imported
SUPPORT_POINTS = "support_points"        # projection of support_point.* events
STOCK = "stock"                          # one document: the information bags in stock
PRINT_RUNS = "print_runs"                # every print run that added to the stock
BAG_ORDERS = "bag_orders"                # one document per order, with its audit trail
ALLOCATION_ROUNDS = "allocation_rounds"  # each round with every share and its explanation
CAMPAIGNS = "campaigns"
DISTRIBUTIONS = "distributions"          # material sent: once per campaign and support point

BAGS = "information-bags"                # the stock document's id
DUPLICATE_KEY = 11000


class CampaignStore(DocumentStore):
    """The campaign service's database: its named queries and indexes. A write that goes
    with an event takes the ``session`` of the transaction the service opened for both."""

    def ensure_indexes(self):
        self.db[SUPPORT_POINTS].create_index([("serves_municipality_codes", ASCENDING),
                                              ("active", ASCENDING)])
        self.db[BAG_ORDERS].create_index([("municipality_code", ASCENDING),
                                          ("created_at", ASCENDING)])
        self.db[BAG_ORDERS].create_index([("status", ASCENDING), ("created_at", ASCENDING)])
        self.db[BAG_ORDERS].create_index([("created_at", ASCENDING)])
        self.db[CAMPAIGNS].create_index([("launched", ASCENDING), ("ends_on", ASCENDING)])
        self.db[CAMPAIGNS].create_index([("created_at", ASCENDING)])
        self.db[DISTRIBUTIONS].create_index([("campaign_id", ASCENDING),
                                             ("support_point_id", ASCENDING)], unique=True)

    # --- read models of the registry's events ------------------------------------------------

    def put_municipality(self, document, session=None):
        self.db[MUNICIPALITIES].replace_one({"_id": document["_id"]}, document, upsert=True,
                                            session=session)

    def municipality(self, code):
        return self.db[MUNICIPALITIES].find_one({"_id": code})

    def municipalities(self, codes, session=None):
        """code -> read-model entry, for the given codes that are known."""
        found = self.db[MUNICIPALITIES].find({"_id": {"$in": list(codes)}}, session=session)
        return {document["_id"]: document for document in found}

    def project_support_point(self, document, session=None):
        """Keeps the newest version of a point; an older event changes nothing."""
        return self.replace_if_newer(SUPPORT_POINTS, document, "version", session=session)

    def support_point(self, point_id, session=None):
        if not point_id:
            return None
        return self.db[SUPPORT_POINTS].find_one({"_id": str(point_id)}, session=session)

    @staticmethod
    def _serving(municipality_codes):
        query = {"active": True}
        if municipality_codes is not None:
            query["serves_municipality_codes"] = {"$in": list(municipality_codes)}
        return query

    def point_ids_serving(self, municipality_codes=None):
        found = self.db[SUPPORT_POINTS].find(self._serving(municipality_codes), {"_id": 1})
        return [document["_id"] for document in found]

    def points_serving_each(self, municipality_codes):
        """code -> the active support points that serve it, for every code given."""
        codes = list(municipality_codes)
        serving = {code: [] for code in codes}
        for point in self.db[SUPPORT_POINTS].find(self._serving(codes)):
            for code in point["serves_municipality_codes"]:
                if code in serving:
                    serving[code].append(point)
        return serving

    # --- the stock -----------------------------------------------------------------------------

    def stock(self, session=None):
        return self.db[STOCK].find_one({"_id": BAGS}, session=session)

    def add_print_run(self, run, session):
        """Adds a print run's bags to ``printed`` and ``available``. A run whose id was
        recorded before adds nothing (returns False): a repeated seed or retry."""
        if self.db[PRINT_RUNS].find_one({"_id": run["_id"]}, {"_id": 1}, session=session):
            return False
        self.db[PRINT_RUNS].insert_one(run, session=session)
        self.db[STOCK].update_one(
            {"_id": BAGS},
            {"$inc": {"printed": run["quantity"], "available": run["quantity"]},
             "$setOnInsert": {"allocated": 0, "shipped": 0}},
            upsert=True, session=session)
        return True

    def _move_bags(self, source, target, bags, session, source_holds=None):
        """Moves bags between two stock figures in one conditional update: only while
        ``source`` holds at least ``bags`` (or exactly ``source_holds``), so no figure ever
        goes negative and printed = available + allocated + shipped stays true."""
        condition = {"$gte": bags} if source_holds is None else source_holds
        moved = self.db[STOCK].update_one({"_id": BAGS, source: condition},
                                          {"$inc": {source: -bags, target: bags}},
                                          session=session)
        return moved.matched_count == 1

    # --- bag orders ----------------------------------------------------------------------------

    def place_order(self, waiting, allocated, session):
        """Stores the order allocated in full when the available stock covers it (and takes
        the bags from it), otherwise waiting. Returns the order as stored."""
        taken = self._move_bags("available", "allocated", allocated["quantity_allocated"],
                                session)
        document = allocated if taken else waiting
        self.db[BAG_ORDERS].insert_one(document, session=session)
        return document

    def order(self, order_id):
        return self.db[BAG_ORDERS].find_one({"_id": str(order_id)})

    def orders(self, municipality_code=None):
        query = {} if municipality_code is None else {"municipality_code": municipality_code}
        return list(self.db[BAG_ORDERS].find(query).sort([("created_at", ASCENDING),
                                                          ("_id", ASCENDING)]))

    def change_order(self, change, session):
        """One order change while the order is still as it was read, and its stock move.
        Returns the changed order."""
        changed = self.db[BAG_ORDERS].find_one_and_update(
            {"_id": change.order_id, "status": change.status_before,
             "quantity_allocated": change.allocated_before},
            {"$set": change.changes, "$push": {"history": change.entry}},
            session=session, return_document=ReturnDocument.AFTER)
        if changed is None:
            raise Conflict("the order was changed meanwhile; reload it and try again")
        if change.moves and not self._move_bags(*change.moves, change.bags, session):
            raise Conflict("the stock does not hold these bags")   # only if the data was edited
        return changed

    def round_input(self, session):
        """What an allocation round shares, read in its transaction: the available bags, the
        waiting orders (oldest first) and their municipalities."""
        available = (self.stock(session) or {}).get("available", 0)
        waiting = list(self.db[BAG_ORDERS].find({"status": "REQUESTED"}, session=session)
                       .sort([("created_at", ASCENDING), ("_id", ASCENDING)]))
        return available, waiting, self.municipalities({o["municipality_code"] for o in waiting},
                                                       session)

    def save_round(self, document, changes, available, session):
        """The round's order changes and stock move, only if the orders and the stock are
        still what the round shared (``available``): an order placed or cancelled meanwhile
        makes the round start over instead of sharing bags twice. Returns the changed
        orders, in the order of ``changes``."""
        if changes:
            updates = [UpdateOne({"_id": c.order_id, "status": c.status_before,
                                  "quantity_allocated": c.allocated_before},
                                 {"$set": c.changes, "$push": {"history": c.entry}})
                       for c in changes]
            if self.db[BAG_ORDERS].bulk_write(updates, ordered=False,
                                              session=session).matched_count != len(changes):
                raise Conflict("orders changed during the round; run it again")
            if not self._move_bags("available", "allocated", document["allocated"], session,
                                   source_holds=available):
                raise Conflict("the stock changed during the round; run it again")
        self.db[ALLOCATION_ROUNDS].insert_one(document, session=session)
        ids = [c.order_id for c in changes]
        after = {o["_id"]: o for o in self.db[BAG_ORDERS].find({"_id": {"$in": ids}},
                                                               session=session)}
        return [after[order_id] for order_id in ids]

    # --- campaigns -----------------------------------------------------------------------------

    def insert_campaign(self, campaign, session):
        self.db[CAMPAIGNS].insert_one(campaign, session=session)

    def campaign(self, campaign_id):
        return self.db[CAMPAIGNS].find_one({"_id": str(campaign_id)})

    def campaigns(self, including=None):
        """Every campaign, or (``including`` a CBS code) those that include the municipality:
        the national ones and the regional ones naming it."""
        query = {} if including is None else {
            "$or": [{"scope": "NATIONAL"}, {"municipality_codes": including}]}
        return list(self.db[CAMPAIGNS].find(query).sort([("created_at", ASCENDING)]))

    def mark_launched(self, campaign_id, now):
        """The campaign runs from now on; None when it was launched before."""
        return self.db[CAMPAIGNS].find_one_and_update(
            {"_id": campaign_id, "launched": False},
            {"$set": {"launched": True, "launched_at": now}}, return_document=ReturnDocument.AFTER)

    def mark_launch_announced(self, campaign_id, session):
        """The campaign with its launch marked announced; None when it was before (its
        event is recorded once, after its first distribution: a launch that was interrupted
        before announcing is announced when it is repeated)."""
        return self.db[CAMPAIGNS].find_one_and_update(
            {"_id": campaign_id, "launch_announced": {"$ne": True}},
            {"$set": {"launch_announced": True}}, session=session,
            return_document=ReturnDocument.AFTER)

    def add_opt_out(self, campaign_id, municipality_code, session):
        """The campaign with the municipality opted out; None when it had opted out
        already."""
        return self.db[CAMPAIGNS].find_one_and_update(
            {"_id": campaign_id, "opted_out_municipality_codes": {"$ne": municipality_code}},
            {"$push": {"opted_out_municipality_codes": municipality_code}},
            session=session, return_document=ReturnDocument.AFTER)

    def running_campaigns(self, today, session=None):
        """Launched campaigns that have not ended (``today`` as an ISO date)."""
        return list(self.db[CAMPAIGNS].find({"launched": True, "ends_on": {"$gte": today}},
                                            session=session))

    def distributed_point_ids(self, campaign_id):
        return set(self.db[DISTRIBUTIONS].distinct("support_point_id",
                                                   {"campaign_id": campaign_id}))

    def record_distributions(self, documents):
        """Records many distributions; one recorded before (by a concurrent launch or
        event) is kept as it is. Returns how many were new."""
        if not documents:
            return 0
        try:
            return len(self.db[DISTRIBUTIONS].insert_many(documents, ordered=False).inserted_ids)
        except BulkWriteError as error:
            if any(e["code"] != DUPLICATE_KEY for e in error.details["writeErrors"]):
                raise
            return error.details["nInserted"]

    def record_distribution(self, document, session=None):
        """Records one distribution unless that point had the campaign's material already."""
        recorded = self.db[DISTRIBUTIONS].update_one(
            {"campaign_id": document["campaign_id"],
             "support_point_id": document["support_point_id"]},
            {"$setOnInsert": document}, upsert=True,
            session=session)
        return recorded.upserted_id is not None

    def reached(self, campaign_ids):
        """campaign id -> the support points its material was distributed to."""
        counts = self.db[DISTRIBUTIONS].aggregate([
            {"$match": {"campaign_id": {"$in": list(campaign_ids)}}},
            {"$group": {"_id": "$campaign_id", "count": {"$sum": 1}}}])
        return {entry["_id"]: entry["count"] for entry in counts}

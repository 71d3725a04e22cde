"""The registry's database: its named queries and its indexes. The only module of the
service that writes a pymongo filter or update."""
from pymongo import ASCENDING, ReplaceOne

from common.storage import DocumentStore
from services.registry.domain import earlier_history_entry

MUNICIPALITIES = "municipalities"
PC4_AREAS = "pc4_areas"
SUPPORT_POINTS = "support_points"
HISTORY = "support_point_history"
# One counter per kind of data the in-memory search index is built from ("support_points",
# "pc4_areas"); a change bumps it, so every registry process sees its index is stale.
GENERATIONS = "generations"


class RegistryStore(DocumentStore):
    """Municipalities, PC4 areas, support points with their history, and the generation
    counters of the search index."""

    def ensure_indexes(self):
        points = self.db[SUPPORT_POINTS]
        points.create_index([("serves_municipality_codes", ASCENDING), ("active", ASCENDING),
                             ("name", ASCENDING)])
        points.create_index([("municipality_code", ASCENDING)])
        # The natural key of a point delivered by a bulk import (re-import finds it again).
        # Sparse, not partial: the embedded store answers equality lookups from a sparse index
        # but scans the collection for a partial one.
        points.create_index([("import_key", ASCENDING)], unique=True, sparse=True)
        self.db[HISTORY].create_index([("support_point_id", ASCENDING), ("at", ASCENDING)])
        self.db[PC4_AREAS].create_index([("municipality_code", ASCENDING)])

    def migrate(self):
        """History entries stored before the audit trail was the lifecycle kit's (a
        ``change`` in the past tense and an ``actor``) take its shape (``action``, ``from``,
        ``to``, ``by``); each entry is replaced only while it still has the old shape."""
        for entry in self.db[HISTORY].find({"change": {"$exists": True}}):
            self.db[HISTORY].replace_one({"_id": entry["_id"], "change": {"$exists": True}},
                                         earlier_history_entry(entry))

    # --- reference data -------------------------------------------------------------------

    def stored_as(self, municipality):
        """Whether the municipality is stored exactly like this."""
        return self.db[MUNICIPALITIES].find_one(municipality) is not None

    def save_municipality(self, municipality, session):
        """The municipality, in the caller's transaction."""
        self.db[MUNICIPALITIES].replace_one({"_id": municipality["_id"]}, municipality,
                                            upsert=True, session=session)

    def municipality_codes(self, among=None):
        """The codes of the stored municipalities (only those ``among`` when given)."""
        query = {} if among is None else {"_id": {"$in": list(among)}}
        return set(self.db[MUNICIPALITIES].distinct("_id", query))

    def municipalities(self):
        """Every stored municipality (code and name only)."""
        return list(self.db[MUNICIPALITIES].find({}, {"name": 1}))

    def municipality(self, code):
        return self.db[MUNICIPALITIES].find_one({"_id": code})

    def pc4_area(self, pc4):
        return self.db[PC4_AREAS].find_one({"_id": pc4})

    def pc4_areas(self, pc4s):
        """The stored areas of these PC4s, by PC4."""
        found = self.db[PC4_AREAS].find({"_id": {"$in": list(pc4s)}})
        return {area["_id"]: area for area in found}

    def save_pc4_areas(self, areas, session):
        """The areas, in the caller's transaction."""
        self.db[PC4_AREAS].bulk_write(
            [ReplaceOne({"_id": area["_id"]}, area, upsert=True) for area in areas],
            ordered=True, session=session)

    def all_pc4_areas(self):
        return self.db[PC4_AREAS].find({})

    # --- support points -------------------------------------------------------------------

    def support_point(self, support_point_id, session=None):
        return self.db[SUPPORT_POINTS].find_one({"_id": str(support_point_id)}, session=session)

    def support_point_by_import_key(self, import_key):
        return self.db[SUPPORT_POINTS].find_one({"import_key": import_key})

    def all_support_points(self):
        return self.db[SUPPORT_POINTS].find({})

    def save_support_point(self, point, history_entry, session, replaces_version=None):
        """The point and its history entry, in the caller's transaction. A new point when
        ``replaces_version`` is None; otherwise it replaces the stored point only while that
        is still at ``replaces_version``. Returns the stored point's version when another
        change came first (then nothing is written), else None."""
        points = self.db[SUPPORT_POINTS]
        if replaces_version is None:
            points.insert_one(point, session=session)
        else:
            # Read and replaced by _id alone, which the embedded store answers from its
            # index; a change of the point meanwhile makes the write conflict and the
            # transaction retry.
            stored = self.support_point(point["_id"], session)
            if stored["version"] != replaces_version:
                return stored["version"]
            points.replace_one({"_id": point["_id"]}, point, session=session)
        self.db[HISTORY].insert_one(history_entry, session=session)
        return None

    def history_of(self, support_point_id):
        """The audit trail of a point, oldest first."""
        return list(self.db[HISTORY].find({"support_point_id": support_point_id}, {"_id": 0})
                    .sort([("at", ASCENDING), ("version", ASCENDING)]))

    # --- the search index's generations ---------------------------------------------------

    def bump_generation(self, kind):
        """The next generation of ``kind`` of data, counted in the store."""
        return self.count_up(GENERATIONS, kind, "generation")

    def generations(self):
        return {entry["_id"]: entry["generation"] for entry in self.db[GENERATIONS].find({})}

"""The registry's collections and their indexes."""
from pymongo import ASCENDING

from common.storage import DocumentStore

MUNICIPALITIES = "municipalities"
PC4_AREAS = "pc4_areas"
SUPPORT_POINTS = "support_points"
HISTORY = "support_point_history"
# One counter per kind of data the in-memory search index is built from ("support_points",
# "pc4_areas"); a change bumps it, so every registry process sees its index is stale.
GENERATIONS = "generations"


class RegistryStore(DocumentStore):
    """The registry service's database: its named queries and indexes."""

    def ensure_indexes(self):
        self.db[SUPPORT_POINTS].create_index([("serves_municipality_codes", ASCENDING),
                                         ("active", ASCENDING), ("name", ASCENDING)])
        self.db[SUPPORT_POINTS].create_index([("municipality_code", ASCENDING)])
        # The natural key of a point delivered by a bulk import (re-import finds it again).
        # Sparse, not partial: the embedded store answers equality lookups from a sparse index
        # but scans the collection for a partial one.
        self.db[SUPPORT_POINTS].create_index([("import_key", ASCENDING)], unique=True, sparse=True)
        self.db[HISTORY].create_index([("support_point_id", ASCENDING), ("at", ASCENDING)])
        self.db[PC4_AREAS].create_index([("municipality_code", ASCENDING)])

"""The declaration service's collections and their indexes."""
from pymongo import ASCENDING, DESCENDING

from common.storage import DocumentStore

MUNICIPALITIES = "municipalities"        # projection of municipality.imported
DECLARATIONS = "declarations"            # one document per declaration, with its audit trail
SETTINGS = "municipality_settings"       # local choices; absent values take national defaults
COUNTERS = "counters"                    # per-year reference numbers
CHECK_FAILURES = "check_failures"        # failed checks per client, shared by replicas


class DeclarationStore(DocumentStore):
    """The declaration service's database: its named queries and indexes."""

    def declaration_by_reference(self, reference):
        return self.db[DECLARATIONS].find_one({"reference": reference})

    def ensure_indexes(self):
        self.db[MUNICIPALITIES].create_index("name")
        self.db[DECLARATIONS].create_index("reference", unique=True)
        # One active (requested or issued) declaration per caregiver, recipient and
        # municipality: the key exists only while the declaration is active.
        self.db[DECLARATIONS].create_index("active_key", unique=True,
                                      partialFilterExpression={"active_key": {"$exists": True}})
        self.db[DECLARATIONS].create_index([("municipality_code", ASCENDING), ("status", ASCENDING),
                                       ("reference", ASCENDING)])
        self.db[DECLARATIONS].create_index([("status", ASCENDING), ("valid_until", ASCENDING)])
        self.db[DECLARATIONS].create_index("caregiver_key")
        self.db[DECLARATIONS].create_index([("owner", ASCENDING), ("created_at", DESCENDING)])
        self.db[CHECK_FAILURES].create_index("window_start")

"""The declaration service's collections and their indexes."""
from pymongo import ASCENDING, DESCENDING

MUNICIPALITIES = "municipalities"        # projection of municipality.imported
DECLARATIONS = "declarations"            # one document per declaration, with its audit trail
SETTINGS = "municipality_settings"       # local choices; absent values take national defaults
COUNTERS = "counters"                    # per-year reference numbers
CHECK_FAILURES = "check_failures"        # failed checks per client, shared by replicas


def ensure_indexes(db):
    db[MUNICIPALITIES].create_index("name")
    db[DECLARATIONS].create_index("reference", unique=True)
    # One active (requested or issued) declaration per caregiver, recipient and
    # municipality: the key exists only while the declaration is active.
    db[DECLARATIONS].create_index("active_key", unique=True,
                                  partialFilterExpression={"active_key": {"$exists": True}})
    db[DECLARATIONS].create_index([("municipality_code", ASCENDING), ("status", ASCENDING),
                                   ("reference", ASCENDING)])
    db[DECLARATIONS].create_index([("status", ASCENDING), ("valid_until", ASCENDING)])
    db[DECLARATIONS].create_index("caregiver_key")
    db[DECLARATIONS].create_index([("owner", ASCENDING), ("created_at", DESCENDING)])
    db[CHECK_FAILURES].create_index("window_start")

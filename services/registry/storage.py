"""The registry's collections and their indexes."""
from pymongo import ASCENDING

MUNICIPALITIES = "municipalities"
SUPPORT_POINTS = "support_points"
HISTORY = "support_point_history"


def ensure_indexes(db):
    db[SUPPORT_POINTS].create_index([("serves_municipality_codes", ASCENDING),
                                     ("active", ASCENDING), ("name", ASCENDING)])
    db[SUPPORT_POINTS].create_index([("municipality_code", ASCENDING)])
    db[HISTORY].create_index([("support_point_id", ASCENDING), ("at", ASCENDING)])

"""The campaign service's collections and their indexes."""
from pymongo import ASCENDING

MUNICIPALITIES = "municipalities"        # projection of municipality.imported
SUPPORT_POINTS = "support_points"        # projection of support_point.* events


def ensure_indexes(db):
    db[SUPPORT_POINTS].create_index([("serves_municipality_codes", ASCENDING),
                                     ("active", ASCENDING)])

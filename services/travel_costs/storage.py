"""The travel-cost fund's collections and their indexes."""
from pymongo import ASCENDING

DECLARATIONS = "declarations"            # projection of declaration.* events


def ensure_indexes(db):
    db[DECLARATIONS].create_index([("owner", ASCENDING)])

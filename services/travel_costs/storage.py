"""The travel-cost fund's collections and their indexes."""
from pymongo import ASCENDING

from common.storage import DocumentStore

DECLARATIONS = "declarations"            # projection of declaration.* events


class TravelCostsStore(DocumentStore):
    """The travel costs service's database: its named queries and indexes."""

    def ensure_indexes(self):
        self.db[DECLARATIONS].create_index([("owner", ASCENDING)])

"""The campaign service's collections and their indexes."""
from pymongo import ASCENDING

from common.storage import DocumentStore

MUNICIPALITIES = "municipalities"        # projection of municipality.imported
SUPPORT_POINTS = "support_points"        # projection of support_point.* events


class CampaignStore(DocumentStore):
    """The campaign service's database: its named queries and indexes."""

    def ensure_indexes(self):
        self.db[SUPPORT_POINTS].create_index([("serves_municipality_codes", ASCENDING),
                                         ("active", ASCENDING)])

"""The declaration service's collections and their indexes."""

MUNICIPALITIES = "municipalities"        # projection of municipality.imported


def ensure_indexes(db):
    db[MUNICIPALITIES].create_index("name")

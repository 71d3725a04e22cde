"""Campaign rules, free of I/O."""


def support_point_projection(payload):
    """What the campaign keeps of a support point: where it serves, to reach it."""
    return {
        "_id": payload.id, "name": payload.name, "kind": payload.kind,
        "municipality_code": payload.municipality_code,
        "serves_municipality_codes": payload.serves_municipality_codes,
        "active": payload.active, "version": payload.version,
    }


def reach_filter(municipality_codes):
    """Active support points that a campaign in these municipalities reaches; none given
    means national."""
    query = {"active": True}
    if municipality_codes:
        query["serves_municipality_codes"] = {"$in": list(municipality_codes)}
    return query

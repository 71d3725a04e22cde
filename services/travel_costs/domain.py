"""Travel-cost fund rules, free of I/O."""


def declaration_projection(envelope, payload):
    """What the fund keeps of a declaration to accept claims on it: status, validity.
    Ordered by the event's time, so a late ``issued`` never overwrites ``revoked``."""
    return {
        "_id": payload.reference, "status": payload.status,
        "municipality_code": payload.municipality_code, "purposes": payload.purposes,
        "valid_until": payload.valid_until.isoformat() if payload.valid_until else None,
        "changed_at": envelope.occurred_at,
    }

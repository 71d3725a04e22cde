"""Declaration rules, free of I/O."""


def municipality_projection(payload):
    return {"_id": payload.code, "name": payload.name, "province": payload.province}

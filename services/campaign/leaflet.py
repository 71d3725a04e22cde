"""The local insert that completes every bag of an order with local information: the active
support points that serve the municipality (from the read model of the registry's events),
then the municipality's own lines. Composed when the order is allocated and kept with it,
so that what is printed is what was allocated."""

# Nearest help first: a point of the municipality itself, then regional, then national ones.
KIND_ORDER = {"LOCAL": 0, "REGIONAL": 1, "NATIONAL": 2}


def address_line(address):
    if not address:
        return ""
    return (f"{address['street']} {address['house_number']}, "
            f"{address['postcode']} {address['city']}")


def support_point_line(point):
    """One line of the insert: name, address, phone and website, those that are known."""
    parts = [point["name"], address_line(point.get("address")), point.get("phone") or "",
             point.get("website") or ""]
    return " · ".join(part for part in parts if part)


def compose(municipality_code, municipality, points, own_lines, now):
    """The insert of a municipality's order. ``municipality``: its read-model entry (or
    None); ``points``: the active support points that serve it."""
    ordered = sorted(points, key=lambda p: (KIND_ORDER.get(p["kind"], 3), p["name"].lower()))
    entries = [{"id": p["_id"], "name": p["name"], "kind": p["kind"],
                "address": p.get("address"), "phone": p.get("phone"),
                "website": p.get("website")} for p in ordered]
    return {
        "municipality_code": municipality_code,
        "municipality_name": (municipality or {}).get("name") or municipality_code,
        "support_points": entries, "own_lines": list(own_lines),
        "lines": [support_point_line(p) for p in entries] + list(own_lines),
        "composed_at": now,
    }


def printable(order, insert):
    """What the gateway prints: the insert with the order it belongs to."""
    return {"order_id": order["_id"], "municipality_code": insert["municipality_code"],
            "municipality_name": insert["municipality_name"],
            "quantity": order["quantity_allocated"] or order["quantity_requested"],
            "support_points": [{**p, "address_line": address_line(p.get("address"))}
                               for p in insert["support_points"]],
            "own_lines": insert["own_lines"], "composed_at": insert["composed_at"].isoformat()}

"""The registry's search engine: every support point and PC4 area in memory, so that a
search filters, orders and pages without asking the store; cursors; the nearest points by
the distance between PC4 centroids. Free of I/O: dependencies.py keeps one index per
process and rebuilds it from the store."""
import base64
import binascii
import json
import math
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass

from common.errors import BadUserInput
from common.geo import EARTH_RADIUS_KM, haversine_km
from common.validators import pc4_of
from services.registry.domain import public_view

def encode_cursor(sort_key):
    raw = json.dumps(list(sort_key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor, field="after"):
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        name, point_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if isinstance(name, str) and isinstance(point_id, str):
            return name, point_id
    except (ValueError, TypeError, binascii.Error):
        pass
    raise BadUserInput(f"{field}: not a cursor this search returned", field=field)


# Grid cells for the nearest search. A point two rings of cells away is at least one cell's
# shortest side away; at latitudes below 60 degrees a cell is at least this wide:
CELL_LAT, CELL_LON = 0.1, 0.15
CELL_MIN_KM = min(CELL_LAT, CELL_LON * math.cos(math.radians(60))) * math.pi * EARTH_RADIUS_KM / 180


def cell_of(lat, lon):
    return math.floor(lat / CELL_LAT), math.floor(lon / CELL_LON)


def _ring(centre, radius):
    i0, j0 = centre
    if radius == 0:
        yield centre
        return
    for dj in range(-radius, radius + 1):
        yield i0 - radius, j0 + dj
        yield i0 + radius, j0 + dj
    for di in range(-radius + 1, radius):
        yield i0 + di, j0 - radius
        yield i0 + di, j0 + radius


@dataclass(frozen=True)
class IndexedPoint:
    id: str
    sort_key: tuple
    serves: frozenset
    areas: frozenset
    active: bool
    pc4: str


class SearchIndex:
    """Every support point (its public view) and PC4 area, kept in memory: a search filters,
    orders and pages here without asking the store."""

    def __init__(self, pc4_areas=(), points=(), generations=None):
        self.generations = dict(generations or {})
        self.pc4 = {a["_id"]: (a["lat"], a["lon"], a["municipality_code"]) for a in pc4_areas}
        self.points = {}
        self.documents = {}
        self.by_municipality = defaultdict(set)
        self.cells = defaultdict(set)
        for document in points:
            self.put(document)

    def put(self, document):
        self.remove(document["_id"])
        point = IndexedPoint(
            id=document["_id"], sort_key=(document["name"].casefold(), document["_id"]),
            serves=frozenset(document["serves_municipality_codes"]),
            areas=frozenset(document["areas"]), active=document["active"],
            pc4=document["address"]["postcode"][:4])
        self.points[point.id] = point
        self.documents[point.id] = public_view(document)
        for code in point.serves:
            self.by_municipality[code].add(point.id)
        if point.pc4 in self.pc4:
            self.cells[cell_of(*self.pc4[point.pc4][:2])].add(point.id)

    def remove(self, point_id):
        point = self.points.pop(point_id, None)
        self.documents.pop(point_id, None)
        if point is None:
            return
        for code in point.serves:
            self.by_municipality[code].discard(point_id)
        if point.pc4 in self.pc4:
            self.cells[cell_of(*self.pc4[point.pc4][:2])].discard(point_id)

    def area_of(self, postcode, field="postcode"):
        """(pc4, latitude, longitude, municipality) of a postcode or PC4."""
        try:
            pc4 = pc4_of(postcode)
        except ValueError as exc:
            raise BadUserInput(f"{field}: {exc}", field=field) from None
        if pc4 not in self.pc4:
            raise BadUserInput(f"{field}: the postcode area is not in the PC4 table",
                               field=field)
        return (pc4, *self.pc4[pc4])

    def _matches(self, point, area, include_inactive):
        return (include_inactive or point.active) and (area is None or area in point.areas)

    def search(self, municipality_codes=(), area=None, first=20, after=None,
               include_inactive=False):
        """One page of sort keys (name, id) of the points serving every one of
        ``municipality_codes``, the total, and the key to continue after (or None)."""
        codes = set(municipality_codes)
        if codes:
            ids = set.intersection(*(self.by_municipality.get(c, set()) for c in codes))
            candidates = (self.points[i] for i in ids)
        else:
            candidates = self.points.values()
        keys = sorted(p.sort_key for p in candidates if self._matches(p, area, include_inactive))
        start = bisect_right(keys, tuple(after)) if after else 0
        page = keys[start:start + first]
        following = page[-1] if page and start + first < len(keys) else None
        return page, len(keys), following

    def page(self, municipality_codes=(), area=None, first=20, after=None,
             include_inactive=False):
        """What a search answers: {items (public views), total, next_cursor}."""
        keys, total, following = self.search(municipality_codes, area, first, after,
                                             include_inactive)
        return {"items": [self.documents[point_id] for _, point_id in keys], "total": total,
                "next_cursor": encode_cursor(following) if following else None}

    def nearest(self, postcode, area=None, limit=5):
        """The ``limit`` active points nearest to the PC4 centroid of ``postcode``, by the
        distance between centroids: [(km, point id)], nearest first."""
        _, lat, lon, _ = self.area_of(postcode)
        origin = (lat, lon)
        centre = cell_of(lat, lon)
        reach = max((max(abs(i - centre[0]), abs(j - centre[1])) for i, j in self.cells),
                    default=0)
        found = []
        for radius in range(reach + 1):
            for cell in _ring(centre, radius):
                for point_id in self.cells.get(cell, ()):
                    point = self.points[point_id]
                    if self._matches(point, area, False):
                        found.append((haversine_km(origin, self.pc4[point.pc4][:2]),
                                      point.sort_key, point_id))
            found.sort()
            if len(found) >= limit and found[limit - 1][0] <= radius * CELL_MIN_KM:
                break
        return [(distance, point_id) for distance, _, point_id in found[:limit]]

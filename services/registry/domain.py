"""Registry rules, free of I/O: support point documents, who may change them, their
history, reference data rows, and the in-memory search index."""
import base64
import binascii
import json
import math
import re
import uuid
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass

from pydantic import ValidationError
from pydantic.alias_generators import to_camel, to_snake

from common.errors import BadUserInput, Conflict, Forbidden, NotFound, bad_input_from_validation
from common.geo import EARTH_RADIUS_KM, haversine_km
from common.schemas.registry import SUPPORT_AREAS, SupportPointInput
from common.validators import MUNICIPALITY_CODE, pc4_of

# What a client supplies; everything else in the document the registry keeps itself.
CONTENT_FIELDS = ("name", "kind", "municipality_code", "serves_municipality_codes", "address",
                  "phone", "email", "website", "areas")


def _path(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def parse_support_point(data, field="input"):
    try:
        return SupportPointInput.model_validate(data)
    except ValidationError as exc:
        raise bad_input_from_validation(exc, field) from None


def _content(point):
    document = point.model_dump(mode="json")
    serves = document.pop("serves_municipality_codes") or []
    # The seat always serves itself; a regional point is found from each municipality.
    document["serves_municipality_codes"] = sorted({point.municipality_code, *serves})
    return document


def new_support_point(point, now, import_key=None):
    document = _content(point)
    document.update(_id=str(uuid.uuid4()), active=True, version=1, created_at=now, updated_at=now)
    if import_key:
        document["import_key"] = import_key
    return document


def updated_support_point(stored, point, now):
    return {**stored, **_content(point), "version": stored["version"] + 1, "updated_at": now}


def same_content(stored, point):
    content = _content(point)
    return all(stored.get(name) == content[name] for name in CONTENT_FIELDS)


# What the registry answers about a point: the contract's fields, no import bookkeeping.
PUBLIC_FIELDS = ("_id", *CONTENT_FIELDS, "active", "version", "updated_at")


def public_view(document):
    return {name: document.get(name) for name in PUBLIC_FIELDS}


def event_payload(document):
    return {
        "id": document["_id"], "name": document["name"], "kind": document["kind"],
        "municipality_code": document["municipality_code"],
        "serves_municipality_codes": document["serves_municipality_codes"],
        "areas": document["areas"], "active": document["active"],
        "version": document["version"],
    }


def unknown_municipalities(point_document, known_codes):
    return sorted(set(point_document["serves_municipality_codes"]) - set(known_codes))


def require_known_municipalities(document, known_codes, field="input"):
    unknown = unknown_municipalities(document, known_codes)
    if unknown:
        which = ("municipalityCode" if document["municipality_code"] in unknown
                 else "servesMunicipalityCodes")
        raise BadUserInput(f"{_path(field, which)}: unknown municipality {unknown[0]}",
                           field=_path(field, which))


# --- status workflow and authorisation ---------------------------------------------------

# (state, action) -> the state after it. Anything not in the table is refused.
TRANSITIONS = {
    ("active", "update"): "active",
    ("active", "deactivate"): "inactive",
}
# Who may do what to a support point; ownership is checked in ``authorise``.
EDITORS = {
    "register": ("admin", "municipality"),
    "update": ("admin", "municipality", "support_point"),
    "deactivate": ("admin", "municipality", "support_point"),
}


def state_of(document):
    return "active" if document["active"] else "inactive"


def next_state(document, action):
    state = state_of(document)
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise Conflict(f"an {state} support point cannot be changed by {action}") from None


def authorise(action, actor, seat, point_id=None, new_seat=None):
    """Raises Forbidden unless the actor may do ``action`` to the point seated in ``seat``
    (for ``register``: the point about to be registered there)."""
    actor = actor or {}
    role = actor.get("role")
    if role not in EDITORS[action]:
        raise Forbidden("this operation is not allowed for your role")
    if role == "municipality":
        if actor.get("municipality") != seat:
            raise Forbidden("only support points of your own municipality")
        if new_seat is not None and new_seat != seat:
            raise Forbidden("only your own municipality can be the seat",
                            field="input.municipalityCode")
    elif role == "support_point":
        if point_id is None or actor.get("support_point") != point_id:
            raise Forbidden("a support point may change only itself")
        if new_seat is not None and new_seat != seat:
            raise Forbidden("a support point cannot move its own seat",
                            field="input.municipalityCode")


def require_version(document, expected_version):
    if document["version"] != expected_version:
        raise Conflict(f"the support point was changed meanwhile: it is at version "
                       f"{document['version']}, not {expected_version}; reload and try again")


# --- history -----------------------------------------------------------------------------

def _flatten(document):
    flat = {}
    for name in (*CONTENT_FIELDS, "active"):
        value = document.get(name)
        if isinstance(value, dict):
            flat.update({f"{to_camel(name)}.{to_camel(k)}": v for k, v in value.items()})
        else:
            flat[to_camel(name)] = value
    return flat


def changes(old, new):
    """Field by field, what changed from ``old`` to ``new`` (None for a new point)."""
    before = _flatten(old) if old else {}
    after = _flatten(new)
    return [{"field": name, "old": before.get(name), "new": value}
            for name, value in after.items() if before.get(name) != value]


def history_entry(document, change, old, actor, at, reason=None):
    """Who changed what and when: the actor's role and subject, no more about them."""
    actor = actor or {}
    return {
        "_id": str(uuid.uuid4()), "support_point_id": document["_id"],
        "version": document["version"], "at": at, "change": change,
        "actor": {"role": actor.get("role"), "sub": actor.get("sub")},
        "changes": changes(old, document), "reason": reason,
    }


# --- reference data ----------------------------------------------------------------------

def municipality_row(row):
    """A row of municipalities.csv (CBS columns) as a municipality document."""
    code = (row.get("gemeentecode") or "").strip().upper()
    name = (row.get("gemeentenaam") or "").strip()
    if not MUNICIPALITY_CODE.fullmatch(code):
        raise ValueError("gemeentecode is not a CBS code like GM0363")
    if not name:
        raise ValueError("gemeentenaam is empty")
    population = (row.get("inwoners_2023") or "").strip()
    return {
        "_id": code, "name": name, "province": (row.get("provincie") or "").strip(),
        "population": int(population) if population.isdigit() else None,
    }


# Mainland, islands and a margin: a centroid outside this box is a mistake in the file.
LATITUDES = (50.5, 53.8)
LONGITUDES = (3.2, 7.4)


def _coordinate(row, column, bounds):
    try:
        value = float((row.get(column) or "").strip())
    except ValueError:
        raise ValueError(f"{column} is not a number") from None
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{column} {value} lies outside the Netherlands")
    return value


def pc4_row(row, known_municipalities):
    """A row of pc4.csv as a PC4 area document."""
    pc4 = (row.get("pc4") or "").strip()
    if not re.fullmatch(r"[1-9]\d{3}", pc4):
        raise ValueError("pc4 is not a four-digit postcode area (1012)")
    code = (row.get("gemeentecode") or "").strip().upper()
    if not MUNICIPALITY_CODE.fullmatch(code):
        raise ValueError("gemeentecode is not a CBS code like GM0363")
    if code not in known_municipalities:
        raise ValueError(f"gemeentecode {code} is not an imported municipality")
    return {
        "_id": pc4, "municipality_code": code, "place": (row.get("woonplaats") or "").strip(),
        "lat": _coordinate(row, "latitude", LATITUDES),
        "lon": _coordinate(row, "longitude", LONGITUDES),
    }


def pc4_areas_event(documents):
    """The pc4_areas.imported payload of PC4 area documents."""
    return {"areas": [{"pc4": d["_id"], "municipality_code": d["municipality_code"],
                       "lat": d["lat"], "lon": d["lon"]} for d in documents]}


# --- bulk import of support points -------------------------------------------------------

def _list(value):
    return [v.strip() for v in (value or "").split(";") if v.strip()]


def support_point_row(row):
    """A row of the support point CSV format as the registry's input, and its external id."""
    text = lambda name: (row.get(name) or "").strip()  # noqa: E731
    data = {
        "name": text("name"), "kind": text("kind").upper(),
        "municipalityCode": text("municipality_code"),
        "servesMunicipalityCodes": _list(row.get("serves_municipality_codes")),
        "address": {"street": text("street"), "houseNumber": text("house_number"),
                    "postcode": text("postcode"), "city": text("city")},
        "phone": text("phone") or None, "email": text("email") or None,
        "website": text("website") or None, "areas": [a.upper() for a in _list(row.get("areas"))],
    }
    return data, text("external_id") or None


def import_key(point, external_id=None):
    """The natural key that makes a re-import find the point it created: the partner's own
    id when the file has one, else the name and the postcode."""
    if external_id:
        return f"id:{external_id}"
    return f"np:{' '.join(point.name.casefold().split())}|{point.address.postcode}"


def csv_column(field):
    """The CSV column behind an input field path ('address.houseNumber.0' -> house_number)."""
    names = [part for part in (field or "").split(".") if part and not part.isdigit()]
    return to_snake(names[-1]) if names else "row"


def rejection(number, error):
    reason = error.message.split(": ", 1)[-1] if error.field else error.message
    return {"row": number, "column": csv_column(error.field), "reason": reason}


# --- search ------------------------------------------------------------------------------

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
            raise BadUserInput(f"{field}: postcode area {pc4} is not in the PC4 table",
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


def known_area(value, field="area"):
    if value is not None and value not in SUPPORT_AREAS:
        raise BadUserInput(f"{field}: unknown support area", field=field)
    return value


def require_found(document, what="support point"):
    if document is None:
        raise NotFound(f"{what} not found")
    return document


MAX_PAGE = 100   # the contract's limit on ``first`` and ``limit``


def page_size(value, field):
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PAGE:
        raise BadUserInput(f"{field} must be between 1 and {MAX_PAGE}", field=field)
    return value

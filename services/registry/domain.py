"""Registry rules, free of I/O: support point documents and views, who may change them,
their history, and reference data rows. The search engine is in search.py."""
import re
import uuid

from pydantic.alias_generators import to_camel, to_snake

from common import workflow
from common.errors import BadUserInput, Conflict, Forbidden, NotFound
from common.schemas.registry import SUPPORT_AREAS, SupportPointInput
from common.validators import MUNICIPALITY_CODE
from common.workflow import Transition, Workflow

# What a client supplies; everything else in the document the registry keeps itself.
CONTENT_FIELDS = ("name", "kind", "municipality_code", "serves_municipality_codes", "address",
                  "phone", "email", "website", "areas")


def _path(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def parse_support_point(data, field="input"):
    return SupportPointInput.parsed(data, field)


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


def deactivated_support_point(stored, reason, now):
    """Kept, marked inactive (left out of searches), with the reason."""
    return {**stored, "active": False, "deactivation_reason": reason,
            "version": stored["version"] + 1, "updated_at": now}


def same_content(stored, point):
    content = _content(point)
    return all(stored.get(name) == content[name] for name in CONTENT_FIELDS)


# What the registry answers about a point: the contract's fields, no import bookkeeping.
PUBLIC_FIELDS = (*CONTENT_FIELDS, "active", "version", "updated_at")


def public_view(document):
    return {"id": document["_id"], **{name: document.get(name) for name in PUBLIC_FIELDS}}


def municipality_event_payload(document):
    """The municipality.imported payload."""
    return {"code": document["_id"], "name": document["name"],
            "province": document["province"], "population": document["population"]}


def municipality_view(document):
    """What leaves the service about a municipality: the contract's code and name."""
    return {"code": document["_id"], "name": document["name"]}


def municipality_sort_key(view):
    """Alphabetical as a Dutch reader looks for it: 's-Gravenhage under G, 't Zandt under Z."""
    name = view["name"].casefold()
    for article in ("'s-", "'s ", "'t-", "'t "):
        if name.startswith(article):
            name = name[len(article):]
    return name, view["code"]


def event_payload(document):
    return {
        "id": document["_id"], "name": document["name"], "kind": document["kind"],
        "municipality_code": document["municipality_code"],
        "serves_municipality_codes": document["serves_municipality_codes"],
        "areas": document["areas"], "active": document["active"],
        "version": document["version"], "address": document.get("address"),
        "phone": document.get("phone"), "website": document.get("website"),
    }


def unknown_municipalities(point_document, known_codes):
    return sorted(set(point_document["serves_municipality_codes"]) - set(known_codes))


def require_known_municipalities(document, known_codes, field="input"):
    unknown = unknown_municipalities(document, known_codes)
    if unknown:
        which = ("municipalityCode" if document["municipality_code"] in unknown
                 else "servesMunicipalityCodes")
        raise BadUserInput(f"{_path(field, which)}: not a municipality of the CBS list",
                           field=_path(field, which))


# --- status workflow and authorisation ---------------------------------------------------

# The workflow of a support point, complete: anything else is refused. Whose point an
# editor may change (its own municipality's, itself) is checked in ``may_make``.
EDITORS = ("admin", "municipality", "support_point")
WORKFLOW = Workflow(
    Transition(None, "register", "active", ("admin", "municipality"), "support_point.registered"),
    Transition("active", "update", "active", EDITORS, "support_point.updated"),
    Transition("active", "deactivate", "inactive", EDITORS, "support_point.deactivated",
               needs=("reason",)),
    refused=lambda state, action: f"an {state} support point cannot be changed by {action}",
    reason_missing=lambda t: f"reason: give a reason of at most {MAX_REASON} characters",
)
MAX_REASON = 500


def state_of(document):
    return "active" if document["active"] else "inactive"


def next_state(document, action):
    return WORKFLOW.transition(state_of(document), action).after


def required_reason(action, reason):
    """The reason given, tidied; BAD_USER_INPUT when the step needs one and it is missing or
    longer than MAX_REASON characters."""
    reason = WORKFLOW.reason(action, reason)
    if reason is not None and len(reason) > MAX_REASON:
        raise BadUserInput(f"reason: give a reason of at most {MAX_REASON} characters",
                           field="reason")
    return reason


def may_make(action, actor, seat, point_id=None, new_seat=None):
    """Raises Forbidden unless the actor may do ``action`` to the point seated in ``seat``
    (for ``register``: the point about to be registered there)."""
    WORKFLOW.require_role(action, actor)
    role = actor.get("role")
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
        raise version_conflict()


def version_conflict():
    """A stale expectedVersion; the message names the rule, not the versions."""
    return Conflict("expectedVersion: the support point was changed meanwhile; reload it and "
                    "try again", field="expectedVersion")


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


def history_entry(document, transition, old, actor, at, reason=None):
    """The kit's audit entry of a step (who: the actor's role and subject, no more), with
    the version it made and field by field what changed. Kept in a collection of its own,
    one entry a document, by the point's id."""
    return workflow.audit_entry(
        transition.before, transition.after, transition.action, actor, at, reason,
        _id=str(uuid.uuid4()), support_point_id=document["_id"], version=document["version"],
        changes=changes(old, document))


# How the history names a step: the past tense the event of the step carries.
CHANGE_OF = {t.action: t.event.removeprefix("support_point.") for t in WORKFLOW.rows()}


def history_view(entries):
    """The audit trail of a point as it leaves the service, oldest first."""
    return [{**step, "change": CHANGE_OF[step["action"]]}
            for step in workflow.history_view(entries, "version", "changes", subjects=True)]


def earlier_history_entry(entry):
    """An entry stored before the audit trail was the kit's (``change`` past tense,
    ``actor``) in the kit's shape: the step's states follow from the table."""
    action = {change: action for action, change in CHANGE_OF.items()}[entry["change"]]
    transition = WORKFLOW.rows(action)[0]
    rest = {key: value for key, value in entry.items() if key not in ("change", "actor")}
    return {**rest, "from": transition.before, "to": transition.after, "action": action,
            "by": workflow.actor_trace(entry.get("actor"))}


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


def same_pc4_area(stored, document):
    """Whether a stored area already says what an imported row says (its time aside)."""
    return stored is not None and {k: v for k, v in stored.items() if k != "updated_at"} == document


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


def known_area(value, field="area"):
    if value is not None and value not in SUPPORT_AREAS:
        raise BadUserInput(f"{field}: unknown support area", field=field)
    return value


def require_found(document, what="support point"):
    if document is None:
        raise NotFound(f"{what} not found")
    return document


"""Declaration rules, free of I/O: the lifecycle, the criteria, local choices, references."""
import calendar
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from common.errors import BadUserInput, Conflict, Forbidden
from common.schemas.declaration import DECLARATION_PURPOSES

REQUESTED, ISSUED, REJECTED, REVOKED, EXPIRED = "REQUESTED", "ISSUED", "REJECTED", "REVOKED", "EXPIRED"
ACTIVE = (REQUESTED, ISSUED)

# The lifecycle, complete: (status now, action) -> status after. Anything else is a CONFLICT.
TRANSITIONS = {
    (None, "request"): REQUESTED,
    (REQUESTED, "issue"): ISSUED,
    (REQUESTED, "reject"): REJECTED,
    (ISSUED, "revoke"): REVOKED,
    (ISSUED, "expire"): EXPIRED,
}
# The event each resulting status is published as.
EVENT_OF = {REQUESTED: "declaration.requested", ISSUED: "declaration.issued",
            REJECTED: "declaration.rejected", REVOKED: "declaration.revoked",
            EXPIRED: "declaration.expired"}


def next_status(current, action):
    try:
        return TRANSITIONS[(current, action)]
    except KeyError:
        raise Conflict(f"a {current.lower() if current else 'new'} declaration cannot be "
                       f"{_PAST.get(action, action)}") from None


_PAST = {"request": "requested", "issue": "issued", "reject": "rejected", "revoke": "revoked",
         "expire": "expired"}


# --- local choices with national defaults ------------------------------------------------

@dataclass(frozen=True)
class Criteria:
    """What a municipality asks (room for local choices); the defaults are the national
    approach: care for longer than 3 months, more than 8 hours a week, valid one year, every
    purpose."""
    min_care_months: int = 3
    min_hours_per_week: Decimal = Decimal("8")
    validity_months: int = 12
    purposes: tuple = DECLARATION_PURPOSES

    @classmethod
    def of(cls, stored):
        """The effective criteria of a municipality from its stored settings (or None)."""
        stored = stored or {}
        chosen = {k: stored[k] for k in ("min_care_months", "validity_months") if stored.get(k) is not None}
        if stored.get("min_hours_per_week") is not None:
            chosen["min_hours_per_week"] = Decimal(str(stored["min_hours_per_week"]))
        if stored.get("purposes"):
            chosen["purposes"] = tuple(stored["purposes"])
        return cls(**chosen)

    def as_dict(self):
        return {"min_care_months": self.min_care_months,
                "min_hours_per_week": str(self.min_hours_per_week),
                "validity_months": self.validity_months, "purposes": list(self.purposes)}


def settings_document(code, chosen, actor, now):
    """What is stored of a municipality's choices: only what it chose, the rest defaults."""
    document = {"_id": code, "updated_at": now, "updated_by": actor_trace(actor)}
    for key, value in chosen.items():
        if value is not None:
            document[key] = str(value) if isinstance(value, Decimal) else value
    return document


def add_months(day, months):
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def unmet_criteria(care_since, hours_per_week, criteria, today):
    """The criteria a request does not meet; it may still be filed, the municipality sees
    these when it decides."""
    unmet = []
    if add_months(care_since, criteria.min_care_months) >= today:
        unmet.append("CARE_DURATION")
    if Decimal(str(hours_per_week)) <= criteria.min_hours_per_week:
        unmet.append("HOURS_PER_WEEK")
    return unmet


def unsupported_purposes(purposes, criteria):
    return [p for p in purposes if p not in criteria.purposes]


def validity(criteria, today):
    """(valid from, valid until), both inclusive."""
    return today, add_months(today, criteria.validity_months) - timedelta(days=1)


# --- identity and access -----------------------------------------------------------------

def reference(year, number):
    return f"MZV-{year}-{number:06d}"


def new_verification_code():
    """Twelve characters from an alphabet without look-alikes, in three groups (~60 bits)."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def normalise_code(code):
    return "".join(ch for ch in (code or "").upper() if ch.isalnum())


def recipient_identity(care_recipient):
    """Who the care is for, as compared for 'one active declaration'."""
    return " ".join(care_recipient["name"].lower().split()), care_recipient["postcode"]


def actor_trace(actor):
    """Who did something, for the audit trail (a role and a pseudonymous id)."""
    return {"role": (actor or {}).get("role"), "sub": (actor or {}).get("sub"),
            "municipality": (actor or {}).get("municipality")}


def may_request(actor, municipality_code):
    role = actor.get("role")
    if role == "caregiver":
        return
    if role == "municipality" and actor.get("municipality") == municipality_code:
        return
    raise Forbidden("you may not request a declaration at this municipality")


def may_read(actor, declaration):
    role = actor.get("role")
    if role == "admin":
        return
    if role == "caregiver" and actor.get("sub") and declaration.get("owner") == actor.get("sub"):
        return
    if role == "municipality" and actor.get("municipality") == declaration["municipality_code"]:
        return
    raise Forbidden("only the caregiver it belongs to or the municipality it was requested at")


def may_print(actor, declaration):
    if actor.get("role") == "admin":
        raise Forbidden("only the caregiver it belongs to or the municipality it was requested at")
    may_read(actor, declaration)


def may_decide(actor, municipality_code):
    role = actor.get("role")
    if role == "admin" or (role == "municipality" and actor.get("municipality") == municipality_code):
        return
    raise Forbidden("only the municipality the declaration was requested at")


def may_see_secrets(actor, declaration):
    """The verification code and the token: the owner, the issuing municipality, admin."""
    try:
        may_read(actor, declaration)
        return True
    except Forbidden:
        return False


# --- the check ---------------------------------------------------------------------------

NO_ANSWER = {"valid": False, "status": None, "valid_until": None, "purpose_accepted": False,
             "municipality_code": None}


def check_answer(declaration, purpose, today):
    """What a partner learns of a declaration it holds the code of: nothing personal."""
    valid_until = declaration.get("valid_until")
    valid = declaration["status"] == ISSUED and valid_until is not None \
        and date.fromisoformat(valid_until) >= today \
        and date.fromisoformat(declaration["valid_from"]) <= today
    return {"valid": valid, "status": declaration["status"], "valid_until": valid_until,
            "purpose_accepted": valid and purpose in declaration["purposes"],
            "municipality_code": declaration["municipality_code"]}


def claim_eligibility(declaration, caller_key, trip_dates, same):
    """Whether the travel-cost fund may accept a claim of trips on ``trip_dates`` on this
    declaration, for the caller whose BSN hashes to ``caller_key`` (``same`` compares hashes
    in constant time). A declaration that is not there and one of someone else are refused
    alike, so a claimant learns nothing of references that are not theirs."""
    field = "input.declarationReference"
    if declaration is None or not caller_key or not same(declaration.get("caregiver_key"), caller_key):
        raise Forbidden(f"{field}: you have no declaration with this reference", field=field)
    if declaration["status"] != ISSUED:
        raise BadUserInput(f"{field}: the declaration is {declaration['status'].lower()}, not issued",
                           field=field)
    if "TRAVEL_COST_FUND" not in declaration["purposes"]:
        raise BadUserInput(f"{field}: the declaration is not issued for the travel-cost fund",
                           field=field)
    valid_from = date.fromisoformat(declaration["valid_from"])
    valid_until = date.fromisoformat(declaration["valid_until"])
    for number, day in enumerate(trip_dates):
        if not valid_from <= day <= valid_until:
            trip = f"input.trips.{number}.date"
            raise BadUserInput(f"{trip}: the declaration is valid from {valid_from.isoformat()} "
                               f"until {valid_until.isoformat()}", field=trip)
    return {"reference": declaration["reference"],
            "municipality_code": declaration["municipality_code"],
            "valid_until": declaration["valid_until"]}


def token_claims(declaration):
    """The signed offline token: reference, purposes, validity, municipality; nothing else."""
    valid_until = date.fromisoformat(declaration["valid_until"])
    end = calendar.timegm((valid_until + timedelta(days=1)).timetuple())
    start = calendar.timegm(date.fromisoformat(declaration["valid_from"]).timetuple())
    return {"iss": "mantelzorg-declaration", "reference": declaration["reference"],
            "purposes": declaration["purposes"], "municipality": declaration["municipality_code"],
            "valid_from": declaration["valid_from"], "valid_until": declaration["valid_until"],
            "nbf": start, "exp": end}


def municipality_projection(payload):
    return {"_id": payload.code, "name": payload.name, "province": payload.province}


# --- what leaves the service -------------------------------------------------------------

def event_payload(declaration):
    """The DeclarationStatusChanged payload: no personal data."""
    return {"id": declaration["_id"], "reference": declaration["reference"],
            "status": declaration["status"], "municipality_code": declaration["municipality_code"],
            "purposes": declaration["purposes"], "owner": declaration.get("owner"),
            "valid_from": declaration.get("valid_from"), "valid_until": declaration.get("valid_until")}


def view(declaration, actor, verification_code=None):
    """The contract's Declaration (plus the criteria and audit trail) for a caller that may
    read it. Never the BSN or any other personal data; the token only for the owner, the
    issuing municipality and admin; the verification code only right after the request."""
    secrets_shown = may_see_secrets(actor, declaration)
    return {
        "id": declaration["_id"], "reference": declaration["reference"],
        "status": declaration["status"], "municipality_code": declaration["municipality_code"],
        "purposes": declaration["purposes"], "hours_per_week": declaration["hours_per_week"],
        "care_since": declaration["care_since"], "valid_from": declaration.get("valid_from"),
        "valid_until": declaration.get("valid_until"),
        "decision_reason": declaration.get("decision_reason"),
        "verification_code": verification_code if secrets_shown else None,
        "token": declaration.get("token") if secrets_shown and declaration["status"] == ISSUED else None,
        "created_at": declaration["created_at"].isoformat(),
        "unmet_criteria": declaration.get("unmet_criteria", []),
        "history": [{"from_status": h["from"], "to_status": h["to"], "action": h["action"],
                     "at": h["at"].isoformat(), "actor_role": h["by"].get("role"),
                     "reason": h.get("reason")} for h in declaration.get("history", [])],
    }

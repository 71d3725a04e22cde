"""Declaration rules, free of I/O: the lifecycle table and who may make each step, the
criteria and local choices, who may see what, and the documents and views the service
keeps and answers."""
import calendar
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from common import workflow
from common.errors import BadUserInput, Forbidden, NotFound
from common.schemas.declaration import DECLARATION_PURPOSES
from common.workflow import Transition, Workflow, cannot_be

REQUESTED, ISSUED, REJECTED, REVOKED, EXPIRED = "REQUESTED", "ISSUED", "REJECTED", "REVOKED", "EXPIRED"
ACTIVE = (REQUESTED, ISSUED)

# The service itself, when its timer expires declarations.
SYSTEM = {"role": "system", "sub": "declaration-expiry", "municipality": None}
DECIDERS = ("municipality", "admin")   # a municipality only for its own declarations
# Who did a step, in the audit trail: the role, the pseudonymous subject, the municipality.
ACTOR_FIELDS = ("role", "sub", "municipality")


# What the error says a step without a reason is.
_NAMED = {"reject": "a rejection", "revoke": "a revocation"}


_refused = cannot_be("declaration", {"request": "requested", "issue": "issued",
                                     "reject": "rejected", "revoke": "revoked",
                                     "expire": "expired"})


def _forbidden(action, actor):
    return ("only the municipality the declaration was requested at"
            if action != "request" else "you may not request a declaration")


# The lifecycle, complete. Anything else is a CONFLICT. A municipality decides only on its
# own declarations (``may_make``).
LIFECYCLE = Workflow(
    Transition(None, "request", REQUESTED, ("caregiver", "municipality"),
               "declaration.requested"),
    Transition(REQUESTED, "issue", ISSUED, DECIDERS, "declaration.issued"),
    Transition(REQUESTED, "reject", REJECTED, DECIDERS, "declaration.rejected",
               needs=("reason",)),
    Transition(ISSUED, "revoke", REVOKED, DECIDERS, "declaration.revoked", needs=("reason",)),
    Transition(ISSUED, "expire", EXPIRED, (SYSTEM["role"],), "declaration.expired"),
    refused=_refused, forbidden=_forbidden,
    reason_missing=lambda t: f"reason: {_NAMED[t.action]} needs a reason",
)
# The event each resulting status is published as.
EVENT_OF = {t.after: t.event for t in LIFECYCLE.rows()}


def next_status(current, action):
    return LIFECYCLE.transition(current, action).after


def required_reason(action, reason):
    """The reason given, tidied (None when empty); BAD_USER_INPUT when the step needs one."""
    return LIFECYCLE.reason(action, reason)


def may_make(action, actor, declaration):
    """Raises Forbidden unless ``actor`` may make the step ``action`` on ``declaration``
    (for ``request``: the one about to be filed). A municipality acts only on its own
    declarations, a caregiver only on those that carry its own BSN."""
    LIFECYCLE.require_role(action, actor)
    role = actor.get("role")
    if role == "municipality" and not own_municipality(actor, declaration):
        raise Forbidden("only the municipality the declaration was requested at"
                        if action != "request" else
                        "you may not request a declaration at this municipality")
    if role == "caregiver" and not owns(actor, declaration):
        raise Forbidden("a caregiver may request a declaration only for their own BSN")


def step_changes(declaration, after, action, actor, reason, now):
    """What a step writes: the fields it sets, its audit entry, and the fields it removes
    (the 'one active declaration' key, once the declaration is no longer active)."""
    fields = {"status": after, "updated_at": now}
    entry = audit_entry(declaration["status"], after, action, actor, reason, now)
    return fields, entry, (() if after in ACTIVE else ("active_key",))


def audit_entry(before, after, action, actor, reason, now):
    """The kit's audit entry; a declaration's also says which municipality acted."""
    return workflow.audit_entry(before, after, action, actor, now, reason,
                                actor_fields=ACTOR_FIELDS)


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


def normal_reference(text):
    return str(text or "").strip().upper()


def new_verification_code():
    """Twelve characters from an alphabet without look-alikes, in three groups (~60 bits)."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def normalise_code(code):
    return "".join(ch for ch in (code or "").upper() if ch.isalnum())


def code_hash(keys, reference, code):
    """How a verification code is compared: its keyed hash, bound to the reference."""
    return keys.hash("code", reference, normalise_code(code))


# The encrypted fields of a declaration. Each ciphertext is bound to its declaration and
# field, so that it cannot be moved to another record or read as another field.
SEALED_FIELDS = ("personal", "verification_code")


def sealing_context(field, declaration_id):
    return declaration_id if field == "personal" else f"{declaration_id}:{field}"


def new_code(keys, declaration_id, reference):
    """A fresh verification code, and the fields that keep it: its keyed hash to compare an
    offered code with, and the code encrypted to show it again to whom may see it."""
    code = new_verification_code()
    return code, {"verification_hash": code_hash(keys, reference, code),
                  "verification_code": keys.cipher.encrypt(
                      code, context=sealing_context("verification_code", declaration_id))}


def recipient_identity(care_recipient):
    """Who the care is for, as compared for 'one active declaration'."""
    return " ".join(care_recipient["name"].lower().split()), care_recipient["postcode"]


def active_key(keys, request, municipality_code):
    """The key that makes one active declaration per caregiver, recipient and municipality."""
    recipient = request.care_recipient.model_dump(mode="json")
    return keys.hash("active", request.caregiver.bsn, *recipient_identity(recipient),
                     municipality_code)


def caregiver_key(keys, bsn):
    """How a declaration knows whose it is: the keyed hash of the caregiver's BSN."""
    return keys.hash("bsn", bsn)


def actor_trace(actor):
    """Who did something, for the audit trail (a role, a pseudonymous id, a municipality)."""
    return workflow.actor_trace(actor, ACTOR_FIELDS)


# --- who may see and do what -------------------------------------------------------------
# ``actor`` as the service hands it to these rules: a caregiver's BSN only as its keyed hash
# (``caregiver_key``), compared with the one the declaration carries.

def owns(actor, declaration):
    """Whether ``actor`` is the caregiver whose BSN the declaration carries, whoever filed it."""
    key = actor.get("caregiver_key") if actor.get("role") == "caregiver" else None
    return key is not None and hmac.compare_digest(key, declaration.get("caregiver_key") or "")


def own_municipality(actor, declaration):
    return actor.get("role") == "municipality" \
        and actor.get("municipality") == declaration["municipality_code"]


def can_read(actor, declaration):
    """Whether ``actor`` may read the declaration (a yes or no, not a refusal): the owner
    caregiver, the municipality it was requested at, admin."""
    return actor.get("role") == "admin" or owns(actor, declaration) \
        or own_municipality(actor, declaration)


def can_see_code(actor, declaration):
    """Whether ``actor`` may see the verification code, at any time (a yes or no): the owner
    caregiver and the issuing municipality."""
    return owns(actor, declaration) or own_municipality(actor, declaration)


def readable(actor, declaration):
    """The declaration when ``actor`` may read it; NOT_FOUND otherwise, exactly as for one
    that does not exist, so that an answer never tells that a reference is in use."""
    if declaration is None or not can_read(actor, declaration):
        raise NotFound("no such declaration")
    return declaration


def require_found(declaration):
    if declaration is None:
        raise NotFound("no such declaration")
    return declaration


def require_owner_or_issuer(actor, declaration):
    """Printing it and renewing its code: the owner caregiver and the issuing municipality
    (admin reads it, but neither prints it nor renews its code)."""
    if not can_see_code(actor, declaration):
        raise Forbidden("only the caregiver it belongs to or the municipality it was requested at")


def may_decide(actor, municipality_code):
    role = actor.get("role")
    if role == "admin" or (role == "municipality" and actor.get("municipality") == municipality_code):
        return
    raise Forbidden("only the municipality the declaration was requested at")


# --- documents the service keeps ---------------------------------------------------------

def new_declaration(request, municipality_code, reference, criteria, actor, keys, now):
    """A requested declaration, and its verification code (shown in the answer). The
    personal data and the code are encrypted, bound to the declaration; the BSN and the code
    are also kept as keyed hashes to be found and compared by."""
    declaration_id = str(uuid.uuid4())
    caregiver = request.caregiver.model_dump(mode="json")
    recipient = request.care_recipient.model_dump(mode="json")
    verification_code, code_fields = new_code(keys, declaration_id, reference)
    document = {
        "_id": declaration_id, "reference": reference, "status": REQUESTED,
        "municipality_code": municipality_code, "purposes": request.purposes,
        "hours_per_week": str(request.hours_per_week),
        "care_since": request.care_since.isoformat(),
        "unmet_criteria": unmet_criteria(request.care_since, request.hours_per_week, criteria,
                                         now.date()),
        "caregiver_key": caregiver_key(keys, caregiver["bsn"]),
        "active_key": active_key(keys, request, municipality_code),
        "personal": keys.cipher.encrypt({"caregiver": caregiver, "care_recipient": recipient},
                                        context=sealing_context("personal", declaration_id)),
        **code_fields,
        "created_at": now, "updated_at": now,
        "history": [audit_entry(None, next_status(None, "request"), "request", actor, None, now)],
    }
    return document, verification_code


def renewal_entry(declaration, actor, now):
    """The audit entry of a renewed verification code: the status stays, who renewed is
    recorded."""
    return audit_entry(declaration["status"], declaration["status"], "renew_code", actor, None,
                       now)


def issue_changes(criteria, today, reason):
    """What issuing sets besides the status (the signed token is added by the service)."""
    valid_from, valid_until = validity(criteria, today)
    return {"valid_from": valid_from.isoformat(), "valid_until": valid_until.isoformat(),
            "decision_reason": reason}


def municipality_projection(payload):
    return {"_id": payload.code, "name": payload.name, "province": payload.province}


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


# --- what leaves the service -------------------------------------------------------------

def event_payload(declaration):
    """The DeclarationStatusChanged payload: no personal data."""
    return {"id": declaration["_id"], "reference": declaration["reference"],
            "status": declaration["status"], "municipality_code": declaration["municipality_code"],
            "purposes": declaration["purposes"], "valid_from": declaration.get("valid_from"),
            "valid_until": declaration.get("valid_until")}


def notice_recipient(declaration, personal):
    """Who a message about the declaration goes to: the owner's keyed BSN hash, the
    caregiver's name and e-mail address (None when none was given). Never the BSN, the care
    recipient or the verification code."""
    caregiver = personal["caregiver"]
    return {"caregiver_key": declaration["caregiver_key"], "name": caregiver["name"],
            "email": caregiver.get("email")}


def printable(declaration, municipality, verification_code, holder_name):
    """What the printable declaration shows (``municipality``: the stored one, or None): its
    holder's name as requested (no BSN, address or care recipient), the QR token and beside it
    the verification code, for a desk that checks online."""
    return {"reference": declaration["reference"], "holder_name": holder_name,
            "municipality_code": declaration["municipality_code"],
            "municipality_name": (municipality or {}).get("name"),
            "purposes": declaration["purposes"], "valid_from": declaration["valid_from"],
            "valid_until": declaration["valid_until"], "token": declaration["token"],
            "verification_code": verification_code}


def revealed_code(keys, actor, declaration):
    """The verification code, decrypted, for whom may see it (None for anyone else, and for
    a declaration filed before codes were kept to be shown again: it gets one when renewed)."""
    sealed = declaration.get("verification_code")
    if not sealed or not can_see_code(actor, declaration):
        return None
    return keys.cipher.decrypt(sealed, context=sealing_context("verification_code",
                                                                 declaration["_id"]))


# --- the applicant and who read it ---------------------------------------------------------

DECISION_PERIOD = timedelta(weeks=8)   # Awb 4:13: the decision is due eight weeks after the request
DECISIONS = ("issue", "reject")


def decision_due_on(declaration):
    return (declaration["created_at"].date() + DECISION_PERIOD).isoformat()


def overdue_before(today):
    """Requests made before this moment (UTC) have passed their decision due date today."""
    return datetime.combine(today - DECISION_PERIOD, time(), tzinfo=timezone.utc)


def decided_at(declaration):
    """When the municipality issued or rejected it (None while it waits)."""
    for entry in declaration.get("history", []):
        if entry["action"] in DECISIONS:
            return entry["at"].isoformat()
    return None


def applicant_reader(actor, declaration):
    """Who may see the applicant: the owner caregiver (whose own reads are not recorded) and
    the municipality it was requested at (every read recorded); None for anyone else, admin
    included."""
    if owns(actor, declaration):
        return "owner"
    if own_municipality(actor, declaration):
        return "recorded"
    return None


def applicant_view(personal):
    """The contract's DeclarationApplicant from the decrypted personal data (no BSN)."""
    caregiver, recipient = personal["caregiver"], personal["care_recipient"]
    return {"caregiver_name": caregiver["name"], "caregiver_postcode": caregiver["postcode"],
            "caregiver_email": caregiver.get("email"),
            "care_recipient_name": recipient["name"],
            "care_recipient_postcode": recipient["postcode"],
            "relationship": recipient["relationship"]}


def personal_data_read(declaration, actor, now, cipher, what="aanvraag"):
    """One entry of the append-only log of reads of a caregiver's personal data: when, by
    which role and organisation, what was read. It is found by the caregiver's keyed hash;
    the reader's own subject (it may name a person) is kept encrypted, bound to the entry."""
    entry_id = str(uuid.uuid4())
    role = actor.get("role")
    return {"_id": entry_id, "caregiver_key": declaration["caregiver_key"],
            "declaration_id": declaration["_id"], "at": now, "role": role,
            "organisation": actor.get("municipality") or role,
            "what": f"{what} {declaration['reference']} bekeken",
            "reader": cipher.encrypt({"sub": actor.get("sub")}, context=entry_id)}


def decision_letter(declaration, municipality, caregiver_name):
    """What the decision letter says: the decision and its reason, the validity and
    purposes, the municipality, the date, and to whom (the caregiver's name)."""
    decision = next(entry for entry in declaration["history"] if entry["action"] in DECISIONS)
    later = [entry for entry in declaration["history"] if entry["action"] == "revoke"]
    return {"reference": declaration["reference"], "decision": decision["to"],
            "reason": decision.get("reason"), "decided_at": decision["at"].isoformat(),
            "requested_at": declaration["created_at"].isoformat(),
            "status": declaration["status"], "purposes": declaration["purposes"],
            "valid_from": declaration.get("valid_from"),
            "valid_until": declaration.get("valid_until"),
            "revoked_at": later[0]["at"].isoformat() if later else None,
            "revocation_reason": later[0].get("reason") if later else None,
            "municipality_code": declaration["municipality_code"],
            "municipality_name": (municipality or {}).get("name"),
            "caregiver_name": caregiver_name}


def access_view(entry):
    """The contract's PersonalDataAccess."""
    return {"at": entry["at"].isoformat(), "role": entry["role"],
            "organisation": entry["organisation"], "what": entry["what"]}


def view(declaration, actor, verification_code=None):
    """The contract's Declaration (plus the criteria and audit trail) for a caller that may
    read it. Never the BSN or any other personal data; the token only for the owner, the
    issuing municipality and admin; the verification code (``revealed_code``) only for the
    owner and the issuing municipality."""
    token_shown = can_read(actor, declaration) and declaration["status"] == ISSUED
    return {
        "id": declaration["_id"], "reference": declaration["reference"],
        "status": declaration["status"], "municipality_code": declaration["municipality_code"],
        "purposes": declaration["purposes"], "hours_per_week": declaration["hours_per_week"],
        "care_since": declaration["care_since"], "valid_from": declaration.get("valid_from"),
        "valid_until": declaration.get("valid_until"),
        "decision_reason": declaration.get("decision_reason"),
        "verification_code": verification_code if can_see_code(actor, declaration) else None,
        "token": declaration.get("token") if token_shown else None,
        "created_at": declaration["created_at"].isoformat(),
        "decision_due_on": decision_due_on(declaration), "decided_at": decided_at(declaration),
        "unmet_criteria": declaration.get("unmet_criteria", []),
        "history": workflow.history_view(declaration.get("history")),
    }

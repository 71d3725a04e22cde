"""Travel-cost fund rules, free of I/O: what a trip is paid, the caps, the plausibility of a
stated distance, the claim's lifecycle (who may make each step and what it needs), payout
batches, and what leaves the service."""
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from common.errors import BadUserInput, Conflict, Forbidden, NotFound
from common.geo import haversine_km
from common.schemas.travel_costs import CLAIM_STATUSES, PER_KM_MODES
from common.workflow import (Transition, Workflow, actor_trace, audit_entry, cannot_be,
                             history_view)

SUBMITTED, ON_HOLD, APPROVED, REJECTED, PAID = CLAIM_STATUSES
# Claims not decided for good: a declaration that ends puts these on hold.
OPEN = (SUBMITTED, ON_HOLD, APPROVED)
CENT = Decimal("0.01")

CAREGIVER = ("caregiver",)
FUND_STAFF = ("fund", "admin")
SYSTEM_ONLY = ("system",)
# The fund itself: holds when a declaration ends or a distance is implausible, payment.
SYSTEM = {"role": "system", "sub": "travel-costs", "municipality": None}


# --- the claim's lifecycle ---------------------------------------------------------------

_claim_refused = cannot_be("claim", {"submit": "submitted", "approve": "approved",
                                     "reject": "rejected", "hold": "put on hold", "pay": "paid"})


def _reason_missing(transition):
    return "reason: this step needs a reason"


# The lifecycle, complete: (status now, action) -> the step. Anything else is a CONFLICT.
CLAIM_LIFECYCLE = Workflow(
    Transition(None, "submit", SUBMITTED, CAREGIVER, "travel_claim.submitted"),
    Transition(SUBMITTED, "approve", APPROVED, FUND_STAFF, "travel_claim.approved"),
    Transition(SUBMITTED, "reject", REJECTED, FUND_STAFF, "travel_claim.rejected",
               needs=("reason",)),
    # A hold is lifted only by a new review, which says why the claim can be paid after all.
    Transition(ON_HOLD, "approve", APPROVED, FUND_STAFF, "travel_claim.approved",
               needs=("reason",)),
    Transition(ON_HOLD, "reject", REJECTED, FUND_STAFF, "travel_claim.rejected",
               needs=("reason",)),
    # A declaration that ended, an implausible distance, or an account the SEPA file cannot
    # carry; one more reason for a claim on hold already.
    Transition(SUBMITTED, "hold", ON_HOLD, SYSTEM_ONLY, "travel_claim.on_hold", needs=("reason",)),
    Transition(APPROVED, "hold", ON_HOLD, SYSTEM_ONLY, "travel_claim.on_hold", needs=("reason",)),
    Transition(ON_HOLD, "hold", ON_HOLD, SYSTEM_ONLY, "travel_claim.on_hold", needs=("reason",)),
    # When another fund member releases the payout batch the claim is in.
    Transition(APPROVED, "pay", PAID, SYSTEM_ONLY, "travel_claim.paid"),
    refused=_claim_refused, forbidden="this step of a claim is not yours to make",
    reason_missing=_reason_missing,
)
# The event each resulting status is published as.
EVENT_OF = {t.after: t.event for t in CLAIM_LIFECYCLE.rows()}


def next_status(current, action, actor, reason=None):
    """The status after ``action``, if the table has the step, the actor's role may make it
    and a reason is given where the step needs one."""
    return CLAIM_LIFECYCLE.take(current, action, actor, reason).after


def review_reason(text):
    """A reviewer's reason, tidied; None when there is none."""
    text = (text or "").strip()
    if len(text) > 500:
        raise BadUserInput("reason: at most 500 characters", field="reason")
    return text or None


def may_submit(actor):
    if actor.get("role") != "caregiver" or not actor.get("bsn"):
        raise Forbidden("only a caregiver may claim travel costs, for their own declaration")


def may_review(actor):
    if actor.get("role") not in FUND_STAFF:
        raise Forbidden("only the fund's staff review claims and pay them")


def may_read(actor, claim, caller_key, same):
    """Fund staff, admin, and the caregiver whose BSN the claim was made with; for anyone
    else FORBIDDEN, also when there is no such claim (``claim`` None)."""
    if actor.get("role") in FUND_STAFF:
        return
    if actor.get("role") == "caregiver" and claim and caller_key and \
            same(claim["caregiver_key"], caller_key):
        return
    raise Forbidden("only the caregiver who claimed it and the fund's staff")


# --- the fund's rules, from its configuration --------------------------------------------

def parse_rate_table(text):
    """'2023-01-01=0.21;2024-01-01=0.23' -> ((date, Decimal), ...), oldest first: each rate
    holds for trips from its date until the next one's."""
    rates = []
    for item in str(text).replace(",", ";").split(";"):
        if item.strip():
            since, _, rate = item.partition("=")
            try:
                rates.append((date.fromisoformat(since.strip()), Decimal(rate.strip())))
            except (ValueError, InvalidOperation):
                raise ValueError(f"a km rate is written <date>=<euros>, not {item.strip()!r}") from None
    if not rates:
        raise ValueError("the km rate table is empty")
    return tuple(sorted(rates))


def _decimal(value):
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("a fund setting is not a number") from None


@dataclass(frozen=True)
class FundRules:
    """What the fund pays. The defaults: the tax-free km rates (0.21 in 2023, 0.23 from
    2024), at most 100.00 per public transport or taxi trip, only trips of more than 10 km
    one way (as the tax rule for visiting the sick), at most 1,500.00 per caregiver and
    calendar year, and a stated distance is plausible up to 1.6 x the straight line + 5 km."""
    km_rates: tuple = ((date(2023, 1, 1), Decimal("0.21")), (date(2024, 1, 1), Decimal("0.23")))
    trip_cost_cap: Decimal = Decimal("100.00")
    min_distance_km: Decimal = Decimal("10")
    annual_cap: Decimal = Decimal("1500.00")
    plausibility_factor: Decimal = Decimal("1.6")
    plausibility_margin_km: Decimal = Decimal("5")

    @classmethod
    def from_config(cls, config):
        """From the service's config (``KM_RATES``, ``TRIP_COST_CAP``, ...); a key that is
        not set keeps the default."""
        chosen = {}
        if config.get("KM_RATES"):
            chosen["km_rates"] = parse_rate_table(config["KM_RATES"])
        for key, name in (("TRIP_COST_CAP", "trip_cost_cap"), ("MIN_DISTANCE_KM", "min_distance_km"),
                          ("ANNUAL_CAP", "annual_cap"), ("PLAUSIBILITY_FACTOR", "plausibility_factor"),
                          ("PLAUSIBILITY_MARGIN_KM", "plausibility_margin_km")):
            if config.get(key) not in (None, ""):
                chosen[name] = _decimal(config[key])
        return cls(**chosen)

    def km_rate(self, day, field):
        rate = None
        for since, value in self.km_rates:
            if since <= day:
                rate = value
        if rate is None:
            raise BadUserInput(f"{field}: the fund pays no trips before "
                               f"{self.km_rates[0][0].isoformat()}", field=field)
        return rate


def euros(value):
    """A Decimal rounded half up to cents (2.625 -> 2.63)."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def to_cents(amount):
    return int(euros(amount) * 100)


def from_cents(cents):
    return (Decimal(cents) / 100).quantize(CENT)


# --- what a claim is paid ----------------------------------------------------------------

def trip_identity(trip):
    """What makes two trips the same trip for one caregiver."""
    return (trip.date.isoformat(), trip.from_postcode, trip.to_postcode, trip.mode)


def refuse_repeated_trips(trips):
    """The same trip twice in one claim is a CONFLICT naming the second."""
    seen = {}
    for number, trip in enumerate(trips):
        identity = trip_identity(trip)
        if identity in seen:
            raise repeated_trip(number, f"trip {seen[identity] + 1} of this claim")
        seen[identity] = number


def repeated_trip(number, where):
    """The same date, postcodes and mode claimed again; the message names the trip by its
    place in the claim, never by what the caregiver entered."""
    field = f"input.trips.{number}"
    return Conflict(f"{field}: a trip on the same date, between the same postcodes and by the "
                    f"same means is already claimed as {where}", field=field)


@dataclass(frozen=True)
class Assessment:
    """A claim's trips as the fund pays them, before the annual cap."""
    trip_cents: list          # per trip
    cents_by_year: dict       # calendar year of the trips -> cents
    notes: list               # for the claimant: what is not paid and why
    hold_reasons: list        # for the fund's staff: why the claim waits for a review


def assess_trips(trips, centroids, rules):
    """Amounts per trip (in cents, computed here, never taken from the client) and the
    plausibility of each stated distance. ``centroids``: PC4 -> (latitude, longitude);
    an unknown postcode area is BAD_USER_INPUT on its trip's field."""
    trip_cents, by_year, notes, hold_reasons = [], defaultdict(int), [], []
    for number, trip in enumerate(trips):
        field = f"input.trips.{number}"
        ends = []
        for name, postcode in (("fromPostcode", trip.from_postcode), ("toPostcode", trip.to_postcode)):
            centroid = centroids.get(postcode[:4])
            if centroid is None:
                raise BadUserInput(f"{field}.{name}: the postcode area is unknown to the fund",
                                   field=f"{field}.{name}")
            ends.append(centroid)
        amount, note = trip_amount(number, trip, rules, f"{field}.date")
        trip_cents.append(to_cents(amount))
        by_year[trip.date.year] += to_cents(amount)
        if note:
            notes.append(note)
        straight = Decimal(str(round(haversine_km(*ends), 1)))
        if not plausible(trip.distance_km, straight, rules):
            hold_reasons.append(
                f"trip {number + 1}: {trip.distance_km} km stated, {straight} km in a straight "
                f"line between the postcode areas (more than {rules.plausibility_factor} x that "
                f"+ {rules.plausibility_margin_km} km)")
    if not any(trip_cents):
        raise BadUserInput(f"input.trips: no trip of this claim is longer than "
                           f"{rules.min_distance_km} km one way", field="input.trips")
    return Assessment(trip_cents, dict(by_year), notes, hold_reasons)


def trip_amount(number, trip, rules, date_field):
    """(euros, note): per km for car and bicycle (twice for a return trip) at the rate of the
    trip's date; the stated cost, capped, for public transport and taxi; nothing for a trip
    of the minimum distance or less."""
    if trip.distance_km <= rules.min_distance_km:
        return Decimal("0.00"), (f"trip {number + 1}: {rules.min_distance_km} km one way or "
                                 f"less is not paid")
    if trip.mode in PER_KM_MODES:
        km = trip.distance_km * (2 if trip.return_trip else 1)
        return euros(km * rules.km_rate(trip.date, date_field)), None
    cost = euros(trip.cost_euros)
    if cost > rules.trip_cost_cap:
        return euros(rules.trip_cost_cap), (f"trip {number + 1}: {euros(rules.trip_cost_cap)} "
                                            f"paid, the most per trip")
    return cost, None


def plausible(distance_km, straight_km, rules):
    return distance_km <= rules.plausibility_factor * straight_km + rules.plausibility_margin_km


def annual_grants(cents_by_year, granted_before, annual_cap):
    """What the annual cap leaves of each year's amount: (cents granted per year, notes).
    ``granted_before``: what this caregiver's earlier claims were granted per year."""
    cap = to_cents(annual_cap)
    grants, notes = {}, []
    for year, cents in sorted(cents_by_year.items()):
        room = max(cap - granted_before.get(year, 0), 0)
        grants[year] = min(cents, room)
        if grants[year] < cents:
            notes.append(f"{from_cents(cents - grants[year])} over the annual cap of "
                         f"{euros(annual_cap)} for {year} is not paid")
    if not any(grants.values()):
        raise BadUserInput(f"input.trips: the annual cap of {euros(annual_cap)} is reached for "
                           f"{', '.join(str(y) for y in sorted(grants))}; nothing of this claim "
                           f"can be paid", field="input.trips")
    return grants, notes


# --- documents ---------------------------------------------------------------------------

def mask_iban(iban):
    """Only the country code and the last 4 characters, in groups of four:
    NL91ABNA0417164300 -> 'NL** **** **** **43 00'."""
    shown = "".join(ch if i < 2 or i >= len(iban) - 4 else "*" for i, ch in enumerate(iban))
    return " ".join(shown[i:i + 4] for i in range(0, len(shown), 4))


def trip_documents(request, assessment):
    """A claim's trips as stored, each with what the fund pays for it."""
    return [{"date": t.date.isoformat(), "from_postcode": t.from_postcode,
             "to_postcode": t.to_postcode, "distance_km": str(t.distance_km),
             "return_trip": t.return_trip, "mode": t.mode,
             "cost_euros": None if t.cost_euros is None else str(t.cost_euros),
             "amount_cents": cents}
            for t, cents in zip(request.trips, assessment.trip_cents)]


def new_claim(claim_id, request, caregiver_key, actor, assessment, grants, notes, iban_masked,
              sealed_account, now):
    """A submitted claim. ``sealed_account``: IBAN, BIC and account holder, encrypted."""
    return {
        "_id": claim_id, "status": SUBMITTED, "caregiver_key": caregiver_key,
        "declaration_reference": request.declaration_reference, "batch_id": None,
        "trips": trip_documents(request, assessment), "amount_cents": sum(grants.values()),
        "grants": {str(year): cents for year, cents in grants.items()},
        "notes": "; ".join(notes) or None, "status_reason": None,
        "iban_masked": iban_masked, "account": sealed_account,
        "submitted_at": now, "updated_at": now,
        "history": [audit_entry(None, SUBMITTED, "submit", actor, now)],
    }


def hold_reason(assessment, declaration):
    """Why a claim waits for a review as soon as it is submitted: an implausible distance,
    or a declaration the fund has meanwhile heard has ended."""
    reasons = []
    if assessment.hold_reasons:
        reasons.append("implausible distance: " + "; ".join(assessment.hold_reasons))
    ended = ENDED.get((declaration or {}).get("status"))
    if ended:
        reasons.append(ended)
    return "; ".join(reasons) or None


# Declaration statuses that put the open claims on it on hold, with the reason.
ENDED = {"REVOKED": "the declaration was revoked", "EXPIRED": "the declaration expired"}


def declaration_projection(envelope, payload):
    """What the fund keeps of a declaration to accept claims on it: status, validity.
    Ordered by the event's time, so a late ``issued`` never overwrites ``revoked``."""
    return {
        "_id": payload.reference, "status": payload.status,
        "municipality_code": payload.municipality_code, "purposes": payload.purposes,
        "valid_until": payload.valid_until.isoformat() if payload.valid_until else None,
        "changed_at": envelope.occurred_at,
    }


# Why a claim waits, as the notifications service tells the caregiver what the fund needs.
HOLD_OF_ENDED = {"REVOKED": "DECLARATION_REVOKED", "EXPIRED": "DECLARATION_EXPIRED"}


def claim_notice(claim, declaration):
    """What a message about the claim says the fund needs: a held claim waits for a valid
    declaration when the one it was made on ended, else for a review of its distances."""
    hold = None
    if claim["status"] == ON_HOLD:
        hold = HOLD_OF_ENDED.get((declaration or {}).get("status"), "DISTANCE")
    return {"id": claim["_id"], "status": claim["status"], "hold": hold}


def pc4_projection(area, changed_at):
    return {"_id": area.pc4, "lat": area.lat, "lon": area.lon, "changed_at": changed_at}


# --- payout batches: four eyes ----------------------------------------------------------

# A batch is proposed by one fund member and released by another. PREPARING, RELEASING and
# GIVEN_UP are the service's own: a proposal whose file is being written (or that stopped
# before), a release whose claims are being marked paid.
PREPARING, AWAITING_RELEASE, RELEASING, RELEASED, GIVEN_UP = (
    "PREPARING", "AWAITING_RELEASE", "RELEASING", "RELEASED", "GIVEN_UP")

def _batch_refused(current, action):
    return (f"a payout batch that is {BATCH_STATE_WORDS.get(current, 'new')} "
            f"cannot be {_BATCH_PAST.get(action, action)}")


BATCH_STATE_WORDS = {PREPARING: "being prepared", AWAITING_RELEASE: "awaiting release",
                     RELEASING: "being released", RELEASED: "released", GIVEN_UP: "given up"}
_BATCH_PAST = {"propose": "proposed", "file": "filed", "give_up": "given up",
               "release": "released", "paid": "marked paid"}

# The batch's lifecycle, complete: (status now, action) -> the step. No event of its own:
# its claims' events say what happened to each.
BATCH_LIFECYCLE = Workflow(
    Transition(None, "propose", PREPARING, FUND_STAFF),
    # its file is written and stored; its claims stay APPROVED, reserved for it
    Transition(PREPARING, "file", AWAITING_RELEASE, SYSTEM_ONLY),
    # nothing to pay, a file that could not be written, or a preparation that stopped
    Transition(PREPARING, "give_up", GIVEN_UP, SYSTEM_ONLY, needs=("reason",)),
    # four eyes: by another fund member than the one who proposed it (``may_release``)
    Transition(AWAITING_RELEASE, "release", RELEASING, FUND_STAFF, needs=("four eyes",)),
    # every claim of it PAID, with its event
    Transition(RELEASING, "paid", RELEASED, SYSTEM_ONLY),
    refused=_batch_refused, forbidden="this step of a payout batch is not yours to make",
    reason_missing=_reason_missing,
)
# How a batch shows to its readers; the others are not listed (NOT_FOUND).
SHOWN_AS = {AWAITING_RELEASE: AWAITING_RELEASE, RELEASING: AWAITING_RELEASE, RELEASED: RELEASED}
LISTED = tuple(SHOWN_AS)


def next_batch_status(batch, action, actor, reason=None):
    """The batch's status after ``action``, by its table."""
    return BATCH_LIFECYCLE.take(batch["status"] if batch else None, action, actor, reason).after


def may_release(actor, batch):
    """Four eyes: the fund member who proposed a batch cannot release it."""
    may_review(actor)
    if (actor or {}).get("sub") == batch["created_by"].get("sub"):
        raise Forbidden("a payout batch is released by another fund member than the one "
                        "who proposed it")


def new_batch(batch_id, actor, schema, now, lease_until):
    """A proposed batch being prepared: its claims are reserved for it; a batch whose
    preparation stopped (its lease ran out) is given up and its claims are free again."""
    return {"_id": batch_id, "status": next_batch_status(None, "propose", actor),
            "schema": schema, "created_at": now, "created_by": actor_trace(actor),
            "lease_until": lease_until, "claim_count": 0, "total_cents": 0,
            "history": [audit_entry(None, PREPARING, "propose", actor, now)]}


def pay_chunks(claim_ids, size):
    """The batch's claims (an iterable of their ids, in order) as chunks paid one
    transaction each: the first and last id and how many, so that a chunk reads only its own
    claims. The ids are read one at a time, never held."""
    chunks = []
    for claim_id in claim_ids:
        if chunks and chunks[-1]["count"] < size:
            chunks[-1].update(last=claim_id, count=chunks[-1]["count"] + 1)
        else:
            chunks.append({"first": claim_id, "last": claim_id, "count": 1})
    return chunks


def batch_view(batch, actor=None):
    """A batch as it leaves the service; ``proposed_by_you`` tells ``actor`` whether the
    batch is its own proposal (which it cannot release), without naming who proposed it."""
    released = batch.get("released_at") if batch["status"] == RELEASED else None
    mine = bool(actor and actor.get("sub")) and actor["sub"] == batch["created_by"].get("sub")
    return {"id": batch["_id"], "claim_count": batch["claim_count"], "proposed_by_you": mine,
            "total_euros": str(from_cents(batch["total_cents"])),
            "created_at": batch["created_at"].isoformat(), "schema": batch["schema"],
            "status": SHOWN_AS[batch["status"]],
            "released_at": released.isoformat() if released else None}


def no_claims_to_pay():
    return BadUserInput("there are no approved claims to pay: a payout batch is never empty")


def require_listed(batch):
    """A batch its readers may see: proposed or released (not one being prepared or given up)."""
    if batch is None or batch["status"] not in LISTED:
        raise NotFound("no such payout batch")
    return batch


def require_found(document, what="claim"):
    if document is None:
        raise NotFound(f"no such {what}")
    return document


# --- what leaves the service -------------------------------------------------------------

def event_payload(claim):
    """The TravelClaimChanged payload: no IBAN, account holder, BSN or postcodes."""
    return {"id": claim["_id"], "status": claim["status"],
            "declaration_reference": claim["declaration_reference"],
            "amount_euros": str(from_cents(claim["amount_cents"])),
            "payout_batch_id": claim.get("batch_id") if claim["status"] == PAID else None}


def trip_view(trip):
    return {"date": trip["date"], "from_postcode": trip["from_postcode"],
            "to_postcode": trip["to_postcode"], "distance_km": trip["distance_km"],
            "return_trip": trip["return_trip"], "mode": trip["mode"],
            "amount_euros": str(from_cents(trip["amount_cents"]))}


def joined_reason(*parts):
    """The reason a caregiver reads: the hold or decision first, then what is not paid."""
    return "; ".join(p for p in parts if p) or None


def preview_view(request, assessment, grants, hold, notes):
    """What a claim would be paid, as a submission now would store it (the contract's
    TravelClaimPreview)."""
    return {"trips": [trip_view(t) for t in trip_documents(request, assessment)],
            "amount_euros": str(from_cents(sum(grants.values()))),
            "reason": joined_reason(hold, "; ".join(notes))}


def claim_view(claim):
    """The contract's TravelClaim (and its audit trail): the IBAN masked, nothing else of
    the account."""
    reason = joined_reason(claim.get("status_reason"), claim.get("notes"))
    return {
        "id": claim["_id"], "status": claim["status"],
        "declaration_reference": claim["declaration_reference"],
        "trips": [trip_view(t) for t in claim["trips"]],
        "amount_euros": str(from_cents(claim["amount_cents"])),
        "iban_masked": claim["iban_masked"], "reason": reason,
        "submitted_at": claim["submitted_at"].isoformat(),
        "history": history_view(claim.get("history")),
    }


def statement_view(year, claims):
    """What was paid to a caregiver in a calendar year, per claim, for the tax return."""
    paid = [{"id": c["_id"], "declaration_reference": c["declaration_reference"],
             "paid_on": c["paid_at"].date().isoformat(),
             "amount_euros": str(from_cents(c["amount_cents"]))} for c in claims]
    return {"year": year, "claim_count": len(paid),
            "paid_euros": str(from_cents(sum(c["amount_cents"] for c in claims))), "claims": paid}


def statement_year(year):
    if not isinstance(year, int) or not 2000 <= year <= 2100:
        raise BadUserInput("year: a calendar year between 2000 and 2100", field="year")
    return year

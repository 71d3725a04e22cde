"""Campaign rules, free of I/O: the bag order workflow (who may make each step, what it needs,
how it moves the stock), the allocation arithmetic, campaigns and whom they reach, and the
views that leave the service."""
import math
import uuid
from dataclasses import dataclass
from fractions import Fraction

from pydantic import ValidationError

from common.errors import BadUserInput, Conflict, Forbidden, NotFound, bad_input_from_validation
from common.validators import validate_municipality_code

REQUESTED, ALLOCATED, SHIPPED, DELIVERED, CANCELLED = (
    "REQUESTED", "ALLOCATED", "SHIPPED", "DELIVERED", "CANCELLED")

# The automatic allocation when an order is placed is made by the service itself.
SYSTEM = {"role": "system", "sub": "campaign", "municipality": None, "support_point": None}

ORDERING_ROLES = ("municipality", "support_point", "campaign", "admin")
STOCK_ROLES = ("campaign", "admin")
NATIONAL, REGIONAL = "NATIONAL", "REGIONAL"


def parse(model, data, prefix=""):
    """RPC input checked against its payload schema; BadUserInput names the field."""
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        raise bad_input_from_validation(exc, prefix) from None


# --- the bag order workflow ----------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One allowed change of a bag order."""
    before: str | None
    action: str
    after: str
    roles: tuple            # who may make it; ownership is checked by ``may_order_for``
    event: str
    needs: str | None = None          # "reason": the caller gives one; "stock": bags for it
    moves: tuple | None = None        # the stock figures the order's bags move from, to


# Every change an order can go through, and nothing else (anything else is a CONFLICT).
WORKFLOW = (
    Step(None, "request", REQUESTED, ORDERING_ROLES, "bag_order.requested"),
    Step(REQUESTED, "allocate", ALLOCATED, ("system", *STOCK_ROLES), "bag_order.allocated",
         needs="stock", moves=("available", "allocated")),
    Step(REQUESTED, "allocate_part", REQUESTED, STOCK_ROLES, "bag_order.partly_allocated",
         needs="stock", moves=("available", "allocated")),
    Step(ALLOCATED, "ship", SHIPPED, STOCK_ROLES, "bag_order.shipped",
         moves=("allocated", "shipped")),
    Step(SHIPPED, "deliver", DELIVERED, STOCK_ROLES, "bag_order.delivered"),
    Step(REQUESTED, "cancel", CANCELLED, ORDERING_ROLES, "bag_order.cancelled",
         needs="reason", moves=("allocated", "available")),
    Step(ALLOCATED, "cancel", CANCELLED, ORDERING_ROLES, "bag_order.cancelled",
         needs="reason", moves=("allocated", "available")),
)
STEPS = {(step.before, step.action): step for step in WORKFLOW}
EVENT_OF = {step.action: step.event for step in WORKFLOW}
_DONE = {"ship": "shipped", "deliver": "delivered", "cancel": "cancelled",
         "allocate": "allocated", "allocate_part": "allocated"}


def step(status, action, actor, reason=None):
    """The step ``action`` from ``status`` by ``actor``; Conflict when the workflow has no
    such step, Forbidden when the actor's role may not make it, BadUserInput when it needs a
    reason and none is given."""
    found = STEPS.get((status, action))
    if found is None:
        if action == "ship" and status == REQUESTED:
            raise Conflict("only an allocated order can be shipped: this one still waits for bags")
        raise Conflict(f"a {status.lower() if status else 'new'} order cannot be "
                       f"{_DONE.get(action, action)}")
    if (actor or {}).get("role") not in found.roles:
        raise Forbidden("this operation is not allowed for your role")
    if found.needs == "reason" and not (reason or "").strip():
        raise BadUserInput("reason: give a reason", field="reason")
    return found


def may_order_for(actor, municipality_code, point=None):
    """Ownership behind the contract's table: a municipality its own orders, a support point
    those of its own municipality (``point`` is its read-model entry), the campaign team and
    admin every order."""
    role = (actor or {}).get("role")
    if role in STOCK_ROLES:
        return
    if role == "municipality" and municipality_code \
            and actor.get("municipality") == municipality_code:
        return
    if role == "support_point" and point is not None and point["active"] \
            and point["municipality_code"] == municipality_code:
        return
    raise Forbidden("only orders of your own municipality")


def ordering_point(actor, own_point, chosen_id, chosen, municipality_code):
    """The support point an order is for: a support point orders for itself; others may
    name an active point that serves the municipality, or none."""
    if (actor or {}).get("role") == "support_point":
        if chosen_id not in (None, own_point["_id"]):
            raise Forbidden("a support point orders only for itself", field="supportPointId")
        return own_point["_id"]
    if chosen_id is None:
        return None
    if chosen is None or not chosen["active"] \
            or municipality_code not in chosen["serves_municipality_codes"]:
        raise BadUserInput("supportPointId: no active support point that serves this "
                           "municipality", field="supportPointId")
    return chosen["_id"]


def orders_scope(actor, municipality_code, own_point=None):
    """Whose orders a caller lists: the campaign team and admin any municipality's (None:
    every order), a municipality its own, a support point those of its municipality."""
    role = (actor or {}).get("role")
    if role in STOCK_ROLES:
        return municipality_code
    if role == "municipality":
        code = municipality_code or actor.get("municipality")
    elif role == "support_point" and own_point is not None:
        code = municipality_code or own_point["municipality_code"]
    else:
        raise Forbidden("this operation is not allowed for your role")
    may_order_for(actor, code, own_point)
    return code


def municipality_code(value, field="municipalityCode"):
    try:
        return validate_municipality_code(value)
    except ValueError as exc:
        raise BadUserInput(f"{field}: {exc}", field=field) from None


def require_known_municipalities(codes, known, field="input.municipalityCodes"):
    for index, code in enumerate(codes):
        if code not in known:
            raise BadUserInput(f"{field}.{index}: unknown municipality", field=f"{field}.{index}")


def require_insert(order):
    if not order.get("insert"):
        raise Conflict("the local insert is composed when the order is allocated")
    return order["insert"]


def require_found(document, what="bag order"):
    if document is None:
        raise NotFound(f"no such {what}")
    return document


def actor_trace(actor):
    """Who did something, for the audit trail: a role and a pseudonymous id."""
    return {"role": (actor or {}).get("role"), "sub": (actor or {}).get("sub")}


def audit(before, step_taken, actor, at, quantity=None, reason=None):
    return {"from": before, "to": step_taken.after, "action": step_taken.action, "at": at,
            "by": actor_trace(actor), "quantity": quantity, "reason": reason}


def new_order(order_input, actor, support_point_id, now):
    """A waiting order; ``allocated_in_full`` is the same order when the stock covers it."""
    requested = step(None, "request", actor)
    return {
        "_id": str(uuid.uuid4()), "municipality_code": order_input.municipality_code,
        "support_point_id": support_point_id, "quantity_requested": order_input.quantity,
        "quantity_allocated": 0, "status": REQUESTED,
        "own_lines": list(order_input.local_inserts or []), "insert": None,
        "created_at": now, "updated_at": now,
        "history": [audit(None, requested, actor, now, order_input.quantity)],
    }


def allocated_in_full(order, insert, now):
    allocate = step(REQUESTED, "allocate", SYSTEM)
    return {**order, "status": ALLOCATED, "quantity_allocated": order["quantity_requested"],
            "insert": insert, "updated_at": now,
            "history": [*order["history"],
                        audit(REQUESTED, allocate, SYSTEM, now, order["quantity_requested"])]}


@dataclass(frozen=True)
class OrderChange:
    """What a step does to a stored order: the update (applied only while the order is still
    as read) and the bags that move between stock figures."""
    order_id: str
    status_before: str
    allocated_before: int
    changes: dict
    entry: dict
    moves: tuple | None
    bags: int
    event: str


def order_change(order, step_taken, actor, now, bags=None, insert=None, reason=None):
    """The change ``step_taken`` makes to ``order``. ``bags``: for an allocation the bags
    allocated now; otherwise every bag allocated to the order moves."""
    moved = order["quantity_allocated"] if bags is None else bags
    allocated = order["quantity_allocated"]
    if step_taken.moves == ("available", "allocated"):
        allocated += moved
    elif step_taken.moves == ("allocated", "available"):
        allocated = 0          # the bags are back in stock
    changes = {"status": step_taken.after, "updated_at": now, "quantity_allocated": allocated}
    if insert is not None:
        changes["insert"] = insert
    return OrderChange(order["_id"], order["status"], order["quantity_allocated"], changes,
                       audit(order["status"], step_taken, actor, now, moved,
                             (reason or "").strip() or None),
                       step_taken.moves if moved else None, moved, step_taken.event)


def announced(document, entries=1):
    """(event type, payload) for each of the order's newest ``entries`` audit entries."""
    return [(EVENT_OF[entry["action"]], order_event(document))
            for entry in document["history"][-entries:]]


def order_event(order):
    return {"id": order["_id"], "municipality_code": order["municipality_code"],
            "support_point_id": order.get("support_point_id"),
            "quantity_requested": order["quantity_requested"],
            "quantity_allocated": order["quantity_allocated"], "status": order["status"]}


# --- the stock -----------------------------------------------------------------------------

STOCK_FIGURES = ("printed", "available", "allocated", "shipped")


def stock_view(stock):
    """printed = available + allocated + shipped; every figure zero before the first run."""
    return {figure: (stock or {}).get(figure, 0) for figure in STOCK_FIGURES}


# --- allocation: largest remainder in proportion to population --------------------------------

@dataclass(frozen=True)
class Claim:
    """What one municipality waits for in an allocation round."""
    code: str
    name: str
    population: int          # 0 when unknown
    demand: int              # bags its waiting orders still need
    since: object            # when its oldest waiting order came in: first come, first served


@dataclass(frozen=True)
class Share:
    """A municipality's bags in a round and how the arithmetic got there."""
    claim: Claim
    bags: int
    quota: Fraction          # its exact proportional share of ``pool``
    pool: int                # the bags shared in the stage it was settled in
    pool_population: int     # the population that shared them (0: shared equally)
    pool_size: int           # how many municipalities shared them
    capped: bool             # its quota covered all it needed: it got exactly that
    remainders: int = 0      # bags of that stage given out by largest remainder
    remainder_bag: bool = False
    tied_with: int = 0       # others with the same remainder across the cut-off


def _weights(claims):
    """Population, or equal weights when no one still waiting has a known population."""
    weights = {c.code: max(c.population, 0) for c in claims}
    if any(weights.values()):
        return weights, sum(weights.values())
    return {c.code: 1 for c in claims}, 0


def largest_remainder(available, claims):
    """Shares ``available`` bags over the claims in proportion to population (Hamilton's
    largest-remainder method) without giving anyone more than its demand: a claim whose exact
    quota covers its demand gets its demand, and the rest is shared again over the others.
    The whole bags left after rounding down go to the largest remainders; a tie goes to the
    larger population, then to the municipality that has waited longest, then by code.
    Every bag is given out as long as demand lasts. Returns one Share per claim."""
    remaining = available
    open_claims = [c for c in claims if c.demand > 0]
    shares = {c.code: Share(c, 0, Fraction(0), 0, 0, 0, c.demand == 0) for c in claims}
    while remaining > 0 and open_claims:
        weights, population = _weights(open_claims)
        total = sum(weights.values())
        quotas = {c.code: Fraction(remaining * weights[c.code], total) for c in open_claims}
        capped = [c for c in open_claims if quotas[c.code] >= c.demand]
        stage = dict(pool=remaining, pool_population=population, pool_size=len(open_claims))
        if capped:
            for claim in capped:
                shares[claim.code] = Share(claim, claim.demand, quotas[claim.code],
                                           capped=True, **stage)
            remaining -= sum(c.demand for c in capped)
            open_claims = [c for c in open_claims if c not in capped]
            continue
        floors = {code: math.floor(quota) for code, quota in quotas.items()}
        left = remaining - sum(floors.values())
        ranked = sorted(open_claims, key=lambda c: (-(quotas[c.code] - floors[c.code]),
                                                     -c.population, c.since, c.code))
        cut = quotas[ranked[left - 1].code] - floors[ranked[left - 1].code] if left else None
        after_cut = (quotas[ranked[left].code] - floors[ranked[left].code]
                     if 0 < left < len(ranked) else None)
        tied = ({c.code for c in ranked if quotas[c.code] - floors[c.code] == cut}
                if cut is not None and cut == after_cut else set())
        for position, claim in enumerate(ranked):
            won = position < left
            shares[claim.code] = Share(
                claim, floors[claim.code] + won, quotas[claim.code], capped=False,
                remainders=left, remainder_bag=won,
                tied_with=len(tied) - 1 if claim.code in tied else 0, **stage)
        remaining = 0
    return [shares[c.code] for c in claims]


def split_over_orders(bags, orders):
    """A municipality's bags over its waiting orders, oldest first, each up to what it
    still needs. ``orders``: (order id, still needed) oldest first. Returns bags per order."""
    given = []
    for order_id, needed in orders:
        now = min(bags, needed)
        given.append((order_id, now))
        bags -= now
    return given


def _bags(number):
    return f"{number:,} bag" + ("" if number == 1 else "s")


def _share_words(share, available):
    claim = share.claim
    place = f"{claim.name} ({claim.code})" if claim.name else claim.code
    if share.pool == 0:
        return f"{place}: no bags were left to share in this round."
    pool = _bags(share.pool)
    if share.pool < available:
        pool = (f"the {pool} left once {_bags(available - share.pool)} went to municipalities "
                f"whose share covered all they needed")
    if share.pool_population:
        basis = (f"its population of {claim.population:,} out of {share.pool_population:,} "
                 f"in the {share.pool_size} municipalities sharing {pool}")
    else:
        basis = (f"no population known for the {share.pool_size} municipalities sharing "
                 f"{pool}: an equal part")
    quota = f"{float(share.quota):,.2f}"
    if share.capped:
        return (f"{place} still needed {_bags(claim.demand)}, no more than its exact share "
                f"of {quota} ({basis}): it gets all {claim.demand:,}.")
    whole = share.bags - share.remainder_bag
    fraction = f"{float(share.quota - math.floor(share.quota)):.2f}"
    one = share.remainders == 1
    words = f"{place} gets {_bags(share.bags)}: {basis} gives an exact share of {quota}; "
    if share.remainder_bag:
        largest = "the largest remainder" if one else \
            f"one of the {share.remainders} largest remainders"
        words += f"{whole:,} whole plus 1 for {largest} ({fraction})."
    elif share.remainders:
        largest = "the largest" if one else f"among the {share.remainders} largest"
        words += f"{whole:,} whole; its remainder ({fraction}) was not {largest}."
    else:
        words += f"{whole:,} whole, nothing left over to round."
    if share.tied_with:
        outcome = "got" if share.remainder_bag else "missed"
        words += (f" It tied on that remainder with {share.tied_with} other"
                  f"{'s' if share.tied_with > 1 else ''} and {outcome} the extra bag by the "
                  f"tie rule: larger population first, then the longest waiting.")
    return words


def _order_words(position, count, now, still_needed):
    which = ("its only waiting order" if count == 1
             else f"number {position} of its {count} waiting orders, oldest first")
    if now == 0:
        return f" This order, {which}, gets nothing this round; it waits for {still_needed:,}."
    rest = (": all it still needed." if now == still_needed
            else f"; it waits for {still_needed - now:,} more.")
    return f" This order, {which}, gets {now:,}{rest}"


def allocation_round(available, waiting, municipalities):
    """One round over the waiting orders (oldest first) with ``available`` bags in stock.
    ``municipalities``: code -> read-model entry (name, population). Returns
    [(order, bags now, explanation)] in the order of ``waiting``."""
    by_code = {}
    for order in waiting:
        by_code.setdefault(order["municipality_code"], []).append(order)
    claims = []
    for code, orders in by_code.items():
        known = municipalities.get(code) or {}
        claims.append(Claim(code, known.get("name") or "", known.get("population") or 0,
                            sum(still_needed(o) for o in orders),
                            min(o["created_at"] for o in orders)))
    given, words = {}, {}
    for share in largest_remainder(available, claims):
        orders = by_code[share.claim.code]
        split = split_over_orders(share.bags, [(o["_id"], still_needed(o)) for o in orders])
        for position, (order, (_, now)) in enumerate(zip(orders, split), start=1):
            given[order["_id"]] = now
            words[order["_id"]] = _share_words(share, available) + _order_words(
                position, len(orders), now, still_needed(order))
    return [(order, given[order["_id"]], words[order["_id"]]) for order in waiting]


def still_needed(order):
    return order["quantity_requested"] - order["quantity_allocated"]


def round_step(order, bags):
    """allocate when the bags complete the order, allocate_part when it keeps waiting."""
    return "allocate" if bags == still_needed(order) else "allocate_part"


def completed_municipalities(given):
    """The municipalities of the orders a round completes: their inserts are composed."""
    return {order["municipality_code"] for order, bags, _ in given
            if bags and bags == still_needed(order)}


def round_changes(given, actor, now, insert_for):
    """The order changes of a round; ``insert_for(order)`` composes the local insert of an
    order the round completes."""
    changes = []
    for order, bags, _ in given:
        if not bags:
            continue
        action = round_step(order, bags)
        changes.append(order_change(order, step(REQUESTED, action, actor), actor, now, bags=bags,
                                    insert=insert_for(order) if action == "allocate" else None))
    return changes


def round_document(available_before, given, actor, now):
    """What is kept of a round: per order the bags and the explanation."""
    return {"_id": str(uuid.uuid4()), "available_before": available_before,
            "allocated": sum(bags for _, bags, _ in given), "created_at": now,
            "by": actor_trace(actor),
            "allocations": [{"order_id": order["_id"], "allocated_now": bags,
                             "explanation": words} for order, bags, words in given]}


# --- campaigns -----------------------------------------------------------------------------

CAMPAIGN_EDITORS = STOCK_ROLES


def may_run_campaigns(actor):
    if (actor or {}).get("role") not in CAMPAIGN_EDITORS:
        raise Forbidden("this operation is not allowed for your role")


def campaigns_visible_to(actor):
    """Whose campaigns ``actor`` may list: every one (None) for the campaign team and admin,
    for a municipality only those that include it (its CBS code)."""
    role = (actor or {}).get("role")
    if role == "municipality" and actor.get("municipality"):
        return actor["municipality"]
    may_run_campaigns(actor)
    return None


def may_opt_out(actor, municipality_code):
    role = (actor or {}).get("role")
    if role == "admin" or (role == "municipality" and municipality_code
                           and actor.get("municipality") == municipality_code):
        return
    raise Forbidden("only your own municipality")


def new_campaign(campaign_input, actor, now):
    data = campaign_input.model_dump()
    return {"_id": str(uuid.uuid4()), "name": data["name"], "hashtag": data["hashtag"],
            "scope": data["scope"], "municipality_codes": data["municipality_codes"],
            "starts_on": data["starts_on"].isoformat(), "ends_on": data["ends_on"].isoformat(),
            "materials": data["materials"], "launched": False, "launched_at": None,
            "opted_out_municipality_codes": [], "created_at": now, "created_by": actor_trace(actor)}


def require_launchable(campaign, today):
    if campaign["ends_on"] < today.isoformat():
        raise Conflict("the campaign has ended; it can no longer be launched")


def require_opt_out_allowed(campaign, municipality_code):
    if campaign["scope"] == NATIONAL:
        raise Conflict("a national campaign reaches every municipality; opting out is for "
                       "regional campaigns")
    if municipality_code not in campaign["municipality_codes"]:
        raise BadUserInput("municipalityCode: not in this campaign's region",
                           field="municipalityCode")


def participating(campaign):
    """The municipalities whose support points a campaign reaches; None: every one."""
    if campaign["scope"] == NATIONAL:
        return None
    opted_out = set(campaign["opted_out_municipality_codes"])
    return [code for code in campaign["municipality_codes"] if code not in opted_out]


def reaches(campaign, point):
    """Whether the campaign's material goes to this support point (read-model entry)."""
    if not point["active"]:
        return False
    codes = participating(campaign)
    return codes is None or bool(set(codes) & set(point["serves_municipality_codes"]))


def distribution(campaign, point_id, now, via):
    """The record that a support point received the campaign's material: once per pair."""
    return {"_id": f"{campaign['_id']}:{point_id}", "campaign_id": campaign["_id"],
            "support_point_id": point_id, "materials": campaign["materials"], "at": now,
            "via": via}


def campaign_view(campaign, reached):
    return {"id": campaign["_id"], "name": campaign["name"], "hashtag": campaign["hashtag"],
            "scope": campaign["scope"], "municipality_codes": campaign["municipality_codes"],
            "starts_on": campaign["starts_on"], "ends_on": campaign["ends_on"],
            "materials": campaign["materials"], "launched": campaign["launched"],
            "reached_support_points": reached,
            "opted_out_municipality_codes": campaign["opted_out_municipality_codes"]}


def campaign_event(campaign, reached):
    view = campaign_view(campaign, reached)
    view.pop("materials")
    return view


# --- read models of the registry's events --------------------------------------------------

def municipality_projection(payload):
    return {"_id": payload.code, "name": payload.name, "province": payload.province,
            "population": payload.population}


def support_point_projection(payload):
    """What the campaign keeps of a support point: where it serves, to reach it, and the
    contact details that go into a local insert."""
    return {
        "_id": payload.id, "name": payload.name, "kind": payload.kind,
        "municipality_code": payload.municipality_code,
        "serves_municipality_codes": payload.serves_municipality_codes,
        "active": payload.active, "version": payload.version,
        "address": payload.address.model_dump() if payload.address else None,
        "phone": payload.phone, "website": payload.website,
    }


# --- what leaves the service ---------------------------------------------------------------

def order_view(order):
    """The contract's BagOrder, with its audit trail. ``local_inserts``: the composed insert's
    lines once the order is allocated, until then the municipality's own lines."""
    insert = order.get("insert")
    return {
        "id": order["_id"], "municipality_code": order["municipality_code"],
        "support_point_id": order.get("support_point_id"),
        "quantity_requested": order["quantity_requested"],
        "quantity_allocated": order["quantity_allocated"], "status": order["status"],
        "local_inserts": insert["lines"] if insert else order["own_lines"],
        "created_at": order["created_at"].isoformat(),
        "history": [{"from_status": h["from"], "to_status": h["to"], "action": h["action"],
                     "quantity": h.get("quantity"), "at": h["at"].isoformat(),
                     "actor_role": h["by"].get("role"), "reason": h.get("reason")}
                    for h in order["history"]],
    }


def round_view(document, orders):
    """``orders``: order id -> the order after the round."""
    return {"id": document["_id"], "available_before": document["available_before"],
            "allocated": document["allocated"], "created_at": document["created_at"].isoformat(),
            "allocations": [{"order": order_view(orders[a["order_id"]]),
                             "allocated_now": a["allocated_now"],
                             "explanation": a["explanation"]} for a in document["allocations"]]}

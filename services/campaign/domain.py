"""Campaign rules, free of I/O: the bag order workflow (who may make each step, what it needs,
how it moves the stock), the order changes of an allocation round (its arithmetic is in
allocation.py), campaigns and whom they reach, and the views that leave the service."""
import uuid
from dataclasses import dataclass

from common import workflow
from common.errors import BadUserInput, Conflict, Forbidden, NotFound
from common.validators import validate_municipality_code
from common.workflow import Transition, Workflow, cannot_be
from services.campaign import allocation

REQUESTED, ALLOCATED, SHIPPED, DELIVERED, CANCELLED = (
    "REQUESTED", "ALLOCATED", "SHIPPED", "DELIVERED", "CANCELLED")

# The automatic allocation when an order is placed is made by the service itself.
SYSTEM = {"role": "system", "sub": "campaign", "municipality": None, "support_point": None}

ORDERING_ROLES = ("municipality", "support_point", "campaign", "admin")
STOCK_ROLES = ("campaign", "admin")
NATIONAL, REGIONAL = "NATIONAL", "REGIONAL"


# --- the bag order workflow ----------------------------------------------------------------

_order_cannot_be = cannot_be("order", {"ship": "shipped", "deliver": "delivered",
                                       "cancel": "cancelled", "allocate": "allocated",
                                       "allocate_part": "allocated"})


def _refused(status, action):
    if action == "ship" and status == REQUESTED:
        return "only an allocated order can be shipped: this one still waits for bags"
    return _order_cannot_be(status, action)


# Every change an order can go through, and nothing else (anything else is a CONFLICT).
# Whose orders a role may change is checked by ``may_order_for``. "stock": the step takes
# bags from the available stock.
WORKFLOW = Workflow(
    Transition(None, "request", REQUESTED, ORDERING_ROLES, "bag_order.requested"),
    Transition(REQUESTED, "allocate", ALLOCATED, ("system", *STOCK_ROLES), "bag_order.allocated",
               needs=("stock",)),
    Transition(REQUESTED, "allocate_part", REQUESTED, STOCK_ROLES, "bag_order.partly_allocated",
               needs=("stock",)),
    Transition(ALLOCATED, "ship", SHIPPED, STOCK_ROLES, "bag_order.shipped"),
    Transition(SHIPPED, "deliver", DELIVERED, STOCK_ROLES, "bag_order.delivered"),
    Transition(REQUESTED, "cancel", CANCELLED, ORDERING_ROLES, "bag_order.cancelled",
               needs=("reason",)),
    Transition(ALLOCATED, "cancel", CANCELLED, ORDERING_ROLES, "bag_order.cancelled",
               needs=("reason",)),
    refused=_refused,
)
# The stock figures a step moves the order's bags from and to.
MOVES = {"allocate": ("available", "allocated"), "allocate_part": ("available", "allocated"),
         "ship": ("allocated", "shipped"), "cancel": ("allocated", "available")}
EVENT_OF = {t.action: t.event for t in WORKFLOW.rows()}


def step(status, action, actor, reason=None):
    """The step ``action`` from ``status`` by ``actor``; Conflict when the workflow has no
    such step, Forbidden when the actor's role may not make it, BadUserInput when it needs a
    reason and none is given."""
    return WORKFLOW.take(status, action, actor, reason)


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
    return workflow.actor_trace(actor)


def audit(before, step_taken, actor, at, quantity=None, reason=None):
    """The kit's audit entry of a step, with the bags it was about."""
    return workflow.audit_entry(before, step_taken.after, step_taken.action, actor, at, reason,
                                quantity=quantity)


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
    moves = MOVES.get(step_taken.action)
    if moves == ("available", "allocated"):
        allocated += moved
    elif moves == ("allocated", "available"):
        allocated = 0          # the bags are back in stock
    changes = {"status": step_taken.after, "updated_at": now, "quantity_allocated": allocated}
    if insert is not None:
        changes["insert"] = insert
    return OrderChange(order["_id"], order["status"], order["quantity_allocated"], changes,
                       audit(order["status"], step_taken, actor, now, moved,
                             (reason or "").strip() or None),
                       moves if moved else None, moved, step_taken.event)


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


# --- allocation rounds: the order changes and the record of a round -----------------------

def round_step(order, bags):
    """allocate when the bags complete the order, allocate_part when it keeps waiting."""
    return "allocate" if bags == allocation.still_needed(order) else "allocate_part"


def completed_municipalities(given):
    """The municipalities of the orders a round completes: their inserts are composed."""
    return {order["municipality_code"] for order, bags, _ in given
            if bags and bags == allocation.still_needed(order)}


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
    """What is kept of a round: per order the bags and the explanation (and in Dutch)."""
    return {"_id": str(uuid.uuid4()), "available_before": available_before,
            "allocated": sum(bags for _, bags, _ in given), "created_at": now,
            "by": actor_trace(actor),
            "allocations": [{"order_id": order["_id"], "allocated_now": bags,
                             "explanation": str(words),
                             "explanation_nl": getattr(words, "dutch", None)}
                            for order, bags, words in given]}


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


def may_see_materials(actor):
    """A support point sees the material distributed to itself; the id is its token's."""
    if (actor or {}).get("role") != "support_point" or not actor.get("support_point"):
        raise Forbidden("only a support point sees the material distributed to it")
    return actor["support_point"]


def material_view(distribution, campaign):
    """One campaign's material as a support point received it."""
    return {"campaign_name": campaign["name"], "hashtag": campaign["hashtag"],
            "materials": distribution["materials"], "starts_on": campaign["starts_on"],
            "ends_on": campaign["ends_on"],
            "at": distribution["at"].isoformat()}


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
        "history": workflow.history_view(order["history"], "quantity"),
    }


def round_view(document, orders):
    """``orders``: order id -> the order after the round."""
    return {"id": document["_id"], "available_before": document["available_before"],
            "allocated": document["allocated"], "created_at": document["created_at"].isoformat(),
            "allocations": [{"order": order_view(orders[a["order_id"]]),
                             "allocated_now": a["allocated_now"],
                             "explanation": a["explanation"],
                             "explanation_nl": a.get("explanation_nl")}
                            for a in document["allocations"]]}

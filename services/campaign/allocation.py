"""The allocation arithmetic of information bags, free of I/O: the available bags shared over
the municipalities with waiting orders in proportion to population (the largest-remainder
method, capped at what each still needs), each municipality's share split over its orders
oldest first, and every share explained in plain words."""
import math
from dataclasses import dataclass
from fractions import Fraction


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
